//! Phase 4's operation plan (operation-plan.json: the chain, where it runs, what it held
//! back) and what became of every target (operations-status.json).

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

/// operation-plan.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OperationPlan {
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
    pub fn new(working_stage: &str, targets: Vec<PlannedTarget>, pipeline: Option<String>, chain: &Chain) -> Self {
        Self {
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

/// What became of one target (operations-status `targets[]`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetStatus {
    pub path: String,
    pub role: String,
    pub mesh_count: u64,
    pub dependency_group: String,
    pub disposition: Disposition,
    /// The outcome code of a blocked target (docs/error-codes.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub output_path: Option<String>,
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
    pub task_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverify: Option<TargetReverify>,
    /// Phase 4d: the concepts with findings, re-run on the assembled output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings_reverify: Option<FindingsReverify>,
}

impl TargetStatus {
    pub fn planned(target: &PlannedTarget, disposition: Disposition, reason: Option<&str>) -> Self {
        Self {
            path: target.target.path.clone(),
            role: target.target.target_class.clone(),
            mesh_count: target.target.mesh_count,
            dependency_group: target.target.dependency_group.clone().unwrap_or_else(|| "independent".into()),
            disposition,
            code: None,
            output_path: None,
            operations: vec![],
            reason: reason.map(String::from),
            export_seconds: None,
            reanchored: None,
            point_instancing: None,
            task_seconds: None,
            reverify: None,
            findings_reverify: None,
        }
    }

    /// A finished chain's record: what ran, its timings (`seconds` as the daemon saw the
    /// task) and its cheap re-verify.
    pub fn ran(&mut self, result: OperationsResult, seconds: f64) {
        if result.unchanged {
            self.disposition = Disposition::Unchanged;
            self.reason = Some("the chain changed nothing: no output written".into());
        }
        self.operations = result.operations;
        self.export_seconds = Some(result.export_seconds);
        self.reanchored = Some(result.reanchored);
        self.point_instancing = result.point_instancing.filter(Value::is_object);
        self.task_seconds = Some(seconds);
        self.output_path = result.output_path;
        self.reverify = result.reverify;
    }

    pub fn block(&mut self, code: &str, reason: String) {
        self.disposition = Disposition::Blocked;
        self.code = Some(code.to_string());
        self.reason = Some(reason);
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

/// operations-status.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OperationsStatus {
    pub targets: Vec<TargetStatus>,
    pub schedule: Schedule,
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
