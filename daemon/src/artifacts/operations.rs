//! Phase 4's operation plan (operation-plan.json, upstream `optimization-plan` contract: the
//! chain, where it runs, what it held back) and what became of every target
//! (operations-status.json, upstream batch-scheduler `status` contract).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::decisions::op_chain::{Chain, PlannedOp, Skipped};
use crate::decisions::targets::{Disposition, Phase4Target};

/// One op of the chain, as the plan records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanOp {
    pub operation: String,
    pub args: Value,
    /// lossless | bounded_loss | destructive
    pub safety: String,
    /// auto | auto-within-tolerance | intent-gated
    pub authority: String,
    /// What selected it: the evidence, or the named pipeline the user asked for.
    pub evidence: String,
    pub approval: String,
}

impl From<&PlannedOp> for PlanOp {
    fn from(op: &PlannedOp) -> Self {
        Self {
            operation: op.operation.to_string(),
            args: op.args.clone(),
            safety: op.safety.as_str().to_string(),
            authority: op.authority.as_str().to_string(),
            evidence: op.evidence.clone(),
            approval: op.approval.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkippedOp {
    pub operation: String,
    pub reason: String,
}

impl From<&Skipped> for SkippedOp {
    fn from(s: &Skipped) -> Self {
        Self { operation: s.operation.to_string(), reason: s.reason.clone() }
    }
}

/// A Phase 4 target with the file its chain writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlannedTarget {
    #[serde(flatten)]
    pub target: Phase4Target,
    pub output_path: String,
}

/// The stage a plan is for (upstream `stage`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanStage {
    pub identifier: String,
    #[serde(rename = "rootLayer")]
    pub root_layer: String,
}

/// What the plan was chosen from (upstream `inputs`): the validation reports whose findings
/// are its evidence.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanInputs {
    #[serde(rename = "targetBottleneck")]
    pub target_bottleneck: String,
    #[serde(rename = "validationReport")]
    pub validation_report: String,
    #[serde(rename = "auditReport")]
    pub audit_report: String,
}

/// The gates around the chain (upstream `gates`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanGates {
    #[serde(rename = "preValidation")]
    pub pre_validation: String,
    #[serde(rename = "postValidation")]
    pub post_validation: String,
    #[serde(rename = "mutationPolicy")]
    pub mutation_policy: String,
}

/// Where the chain writes (upstream `outputs`): new files only, no source layer modified.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanOutputs {
    #[serde(rename = "outputDirectory")]
    pub output_directory: String,
    #[serde(rename = "generatedFiles")]
    pub generated_files: Vec<String>,
    #[serde(rename = "modifiedLayers")]
    pub modified_layers: Vec<String>,
}

/// Mutation policy: every target is written to a new path; source layers are never edited.
pub const MUTATION_POLICY: &str = "new_output_only";

/// Where a plan's inputs and gates come from, besides the chain itself.
pub struct PlanContext<'a> {
    pub working_stage: &'a str,
    pub output_dir: &'a std::path::Path,
    pub validation_reports: &'a [&'a str],
    pub audit_report: &'a str,
}

/// operation-plan.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OperationPlan {
    #[serde(rename = "schemaVersion")]
    pub schema_version: String,
    pub stage: PlanStage,
    pub inputs: PlanInputs,
    pub gates: PlanGates,
    pub outputs: PlanOutputs,
    /// The stage the chain optimizes (the working stage).
    pub target: String,
    /// The first target's class (monolith when the stage itself is the one target).
    pub role: String,
    /// The last target's output (the assembly root's, after restructure).
    pub output_path: Option<String>,
    pub targets: Vec<PlannedTarget>,
    pub pipeline: Option<String>,
    pub operations: Vec<PlanOp>,
    pub skipped: Vec<SkippedOp>,
    pub invariants_checked: Vec<String>,
}

impl OperationPlan {
    pub fn new(context: &PlanContext, targets: Vec<PlannedTarget>, pipeline: Option<String>, chain: &Chain) -> Self {
        let working_stage = context.working_stage;
        Self {
            schema_version: "1.0".into(),
            stage: PlanStage { identifier: working_stage.into(), root_layer: working_stage.into() },
            inputs: PlanInputs {
                target_bottleneck: match &pipeline {
                    Some(name) => format!("named pipeline {name}"),
                    None => "validator findings (evidence-selected chain)".into(),
                },
                validation_report: context.validation_reports.join(", "),
                audit_report: context.audit_report.into(),
            },
            gates: PlanGates {
                pre_validation: "validation-report (Phase 2c) and validation-report-targets (Phase 4a)".into(),
                post_validation:
                    "per-target re-verify, preservation proof of the whole, validation-report-targets-after".into(),
                mutation_policy: MUTATION_POLICY.into(),
            },
            outputs: PlanOutputs {
                output_directory: context.output_dir.display().to_string(),
                generated_files: targets.iter().map(|t| t.output_path.clone()).collect(),
                modified_layers: vec![],
            },
            target: working_stage.into(),
            role: targets.first().map_or("monolith".into(), |t| t.target.target_class.clone()),
            output_path: targets.last().map(|t| t.output_path.clone()),
            targets,
            pipeline,
            operations: chain.operations.iter().map(PlanOp::from).collect(),
            skipped: chain.skipped.iter().map(SkippedOp::from).collect(),
            invariants_checked: chain.invariants_checked.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn operation_names(&self) -> Vec<&str> {
        self.operations.iter().map(|o| o.operation.as_str()).collect()
    }

    /// The ops as the executor's `operations` task takes them.
    pub fn task_operations(&self) -> Vec<Value> {
        self.operations.iter().map(|op| serde_json::json!({"operation": op.operation, "args": op.args})).collect()
    }
}

/// One op as the executor ran it, and what it changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpRecord {
    pub operation: String,
    pub args: Value,
    pub ok: bool,
    pub seconds: f64,
    #[serde(default)]
    pub error: String,
    /// What usd-optimize itself printed about the op (its own counts).
    #[serde(default)]
    pub reports: Vec<String>,
    /// What the stage's change notices named while it ran (absent when it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub touched: Option<Touched>,
    /// Whether it changed the target (re-authoring a value equal to the source's does not count).
    #[serde(default)]
    pub changed: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Touched {
    pub prims_resynced: u64,
    pub properties_changed: u64,
}

/// The executor's `operations` task result: what ran, the export, the cheap re-verify. A
/// chain that changed nothing writes no output (`unchanged`, no path, no re-verify).
#[derive(Clone, Debug, Deserialize)]
pub struct OperationsResult {
    pub output_path: Option<String>,
    pub unchanged: bool,
    pub operations: Vec<OpRecord>,
    pub export_seconds: f64,
    pub reanchored: bool,
    #[serde(default)]
    pub point_instancing: Option<Value>,
    pub reverify: Option<TargetReverify>,
}

/// The per-target re-verify: the output opens, composes with no more errors than its
/// source, and its reachable meshes are counted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetReverify {
    pub opens: bool,
    pub composition_errors: Vec<String>,
    pub new_composition_errors: u64,
    pub mesh_count: u64,
    pub seconds: f64,
}

/// The scheduler's state of one target (upstream status `state`): `done` proves only that
/// the worker ran, never that the target was optimized (that is `disposition`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    Queued,
    Done,
    Failed,
}

/// What the before/after says of a target (upstream status `disposition`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeDisposition {
    Optimized,
    NoOp,
    Unknown,
}

/// What became of one target (operations-status `targets[]`, or `skipped[]` when no worker
/// was to run on it).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetStatus {
    pub path: String,
    pub role: String,
    pub mesh_count: u64,
    #[serde(rename = "dep_group")]
    pub dependency_group: String,
    pub state: TargetState,
    pub disposition: ChangeDisposition,
    /// The coverage disposition the report's `target_coverage` reads (ours, finer than
    /// `disposition`: a chain that changed nothing is `unchanged`).
    pub coverage: Disposition,
    /// The outcome code of a blocked target (docs/error-codes.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub output_path: Option<String>,
    /// The ops that ran without failing, in order.
    #[serde(default)]
    pub steps_applied: Vec<String>,
    /// What each op of the chain did (empty until the chain ran).
    pub operations: Vec<OpRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reanchored: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_instancing: Option<Value>,
    /// The daemon's view of the task (dispatch, executor open, ops, export, re-verify, reply):
    /// what the operations benchmark compares with calling usd-optimize directly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverify: Option<TargetReverify>,
    /// Phase 4d: the concepts with findings, re-run on the assembled output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings_reverify: Option<FindingsReverify>,
}

impl TargetStatus {
    pub fn planned(target: &PlannedTarget, coverage: Disposition, reason: Option<&str>) -> Self {
        Self {
            path: target.target.path.clone(),
            role: target.target.target_class.clone(),
            mesh_count: target.target.mesh_count,
            dependency_group: target.target.dependency_group.clone().unwrap_or_else(|| "independent".into()),
            state: TargetState::Queued,
            disposition: ChangeDisposition::Unknown,
            coverage,
            code: None,
            output_path: None,
            steps_applied: vec![],
            operations: vec![],
            reason: reason.map(String::from),
            export_seconds: None,
            reanchored: None,
            point_instancing: None,
            duration_seconds: None,
            reverify: None,
            findings_reverify: None,
        }
    }

    /// A finished chain's record: what ran, its timings (`seconds` as the daemon saw the
    /// task) and its cheap re-verify.
    pub fn ran(&mut self, result: OperationsResult, seconds: f64) {
        self.state = TargetState::Done;
        if result.unchanged {
            self.coverage = Disposition::Unchanged;
            self.disposition = ChangeDisposition::NoOp;
            self.reason = Some("the chain changed nothing: no output written".into());
        } else {
            self.disposition = ChangeDisposition::Optimized;
        }
        self.steps_applied = result.operations.iter().filter(|o| o.ok).map(|o| o.operation.clone()).collect();
        self.operations = result.operations;
        self.export_seconds = Some(result.export_seconds);
        self.reanchored = Some(result.reanchored);
        self.point_instancing = result.point_instancing.filter(Value::is_object);
        self.duration_seconds = Some(seconds);
        self.output_path = result.output_path;
        self.reverify = result.reverify;
    }

    /// Blocked: its worker failed, or what it wrote was refused (re-verify or proof) and set
    /// aside, so no change of it stands.
    pub fn block(&mut self, code: &str, reason: String) {
        self.coverage = Disposition::Blocked;
        self.state = TargetState::Failed;
        self.disposition = ChangeDisposition::Unknown;
        self.code = Some(code.to_string());
        self.reason = Some(reason);
    }

    /// No worker was to run on it (no mesh for a mesh-only chain, or no op selected).
    pub fn is_skipped(&self) -> bool {
        matches!(self.coverage, Disposition::SkippedZeroMeshes | Disposition::SkippedUserDeclined)
    }
}

/// One batch of Phase 4b workers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchRecord {
    pub index: usize,
    pub dependency_group: String,
    pub targets: Vec<String>,
    pub concurrency: usize,
    pub reason: String,
    pub seconds: f64,
    pub failures: usize,
    pub outputs_expected: usize,
    pub outputs_written: usize,
    pub peak_worker_rss_bytes: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Schedule {
    pub max_workers: usize,
    pub batches: Vec<BatchRecord>,
}

/// Target counts by state (upstream status `overall`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Overall {
    pub total: usize,
    pub done: usize,
    pub failed: usize,
    pub running: usize,
    pub queued: usize,
    pub skipped: usize,
}

/// operations-status.json: the targets a worker ran on (or was to), then the ones skipped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OperationsStatus {
    pub run_id: String,
    pub started: String,
    pub max_workers: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_available: Option<bool>,
    pub overall: Overall,
    pub targets: Vec<TargetStatus>,
    #[serde(default)]
    pub skipped: Vec<TargetStatus>,
    pub schedule: Schedule,
}

impl OperationsStatus {
    pub fn new(
        run_id: &str,
        started: String,
        cuda_available: Option<bool>,
        statuses: Vec<TargetStatus>,
        schedule: Schedule,
    ) -> Self {
        let (skipped, targets): (Vec<_>, Vec<_>) = statuses.into_iter().partition(TargetStatus::is_skipped);
        let count = |state| targets.iter().filter(|t| t.state == state).count();
        Self {
            run_id: run_id.into(),
            started,
            max_workers: schedule.max_workers.max(1),
            cuda_available,
            overall: Overall {
                total: targets.len() + skipped.len(),
                done: count(TargetState::Done),
                failed: count(TargetState::Failed),
                running: 0,
                queued: count(TargetState::Queued),
                skipped: skipped.len(),
            },
            targets,
            skipped,
            schedule,
        }
    }

    /// Every target in plan order of kind: the ones a worker ran on, then the skipped.
    pub fn all_targets(&self) -> impl Iterator<Item = &TargetStatus> {
        self.targets.iter().chain(&self.skipped)
    }
}

/// Phase 4d's re-verify of the assembled output: the Phase 4 concepts that found something,
/// re-run with the same scope, site counts before and after.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FindingsReverify {
    pub concepts: Vec<ConceptReverify>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConceptReverify {
    pub concept: String,
    pub target: String,
    pub sites_before: u64,
    pub sites_after: u64,
}
