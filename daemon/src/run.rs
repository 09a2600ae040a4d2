//! A run: one stage through [`PHASES`]. The driver walks the phases in order, asks each
//! phase's handler to do its work through executor tasks and decision functions, stores
//! every artifact in the run workspace, and persists the run after every step so a run
//! paused at a gate (or interrupted) resumes from the store.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::daemon::Core;
use crate::decisions::assessment::{self, Classification, Facts};
use crate::decisions::batch;
use crate::decisions::compare::{self, Profile};
use crate::decisions::op_chain::{self, Evidence};
use crate::decisions::preservation::{self, Signature, Strength};
use crate::decisions::prims::PrimTable;
use crate::decisions::restructure::{self, Branch, GatePlan, GroupCandidate};
use crate::decisions::validation::{self, GeometryClasses, Placement, Plan, ValidationPhase};
use crate::executors::{take_records, TaskFailure};
use crate::phases::{codes, skip_reason, Milestone, RouteFacts, PHASES};
use crate::report;
use crate::store::Workspace;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Running,
    AwaitingDecision,
    Completed,
    Failed,
    Blocked,
    Cancelled,
}

impl RunState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Blocked | Self::Cancelled)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GateRecord {
    pub id: String,
    pub question: String,
    pub branches: Vec<String>,
    pub recommended: Option<String>,
    pub evidence: Value,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub milestone: String,
    pub status: String,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// What the phase cost; absent for phases that did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<PhaseUsage>,
}

/// CPU and peak memory of a phase, for the daemon (process-wide: concurrent runs share
/// it) and for the executor tasks the phase ran (their worker processes included).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseUsage {
    pub daemon_cpu_seconds: f64,
    pub daemon_peak_rss_mb: f64,
    pub executor_cpu_seconds: f64,
    pub executor_peak_rss_mb: f64,
    pub executor_tasks: u32,
}

impl PhaseUsage {
    pub fn add_task(&mut self, task: crate::executors::TaskUsage) {
        self.executor_cpu_seconds += task.cpu_seconds;
        self.executor_peak_rss_mb = self.executor_peak_rss_mb.max(task.peak_rss_kb as f64 / 1024.0);
        self.executor_tasks += 1;
    }
}

/// The persisted state of a run (`run.json` in its workspace; schemas/run.schema.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub stage_path: String,
    pub output_dir: String,
    pub state: RunState,
    pub milestone: String,
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub gate: Option<GateRecord>,
    #[serde(default)]
    pub report_path: String,
    #[serde(default)]
    pub output_stage_path: String,
    /// The stage Phase 4 optimizes: the restructured root or the instancing override layer
    /// written in Phase 2f/3; empty until then (the source).
    #[serde(default)]
    pub working_stage_path: String,
    #[serde(default)]
    pub verdict: String,
    #[serde(default)]
    pub workflow_mode: String,
    #[serde(default)]
    pub requested_operations: Vec<String>,
    pub route: RouteFacts,
    pub created_at: String,
    pub phases: Vec<PhaseRecord>,
}

impl RunRecord {
    pub fn new(
        run_id: String,
        stage_path: String,
        output_dir: String,
        branch: Option<String>,
        requested: Vec<String>,
    ) -> Self {
        Self {
            run_id,
            stage_path,
            output_dir,
            state: RunState::Queued,
            milestone: PHASES[0].label.to_string(),
            code: String::new(),
            message: String::new(),
            gate: None,
            report_path: String::new(),
            output_stage_path: String::new(),
            working_stage_path: String::new(),
            verdict: String::new(),
            workflow_mode: String::new(),
            requested_operations: requested,
            route: RouteFacts { restructure_branch: branch, ..Default::default() },
            created_at: now_rfc3339(),
            phases: PHASES
                .iter()
                .map(|p| PhaseRecord {
                    milestone: p.label.into(),
                    status: "pending".into(),
                    note: String::new(),
                    seconds: 0.0,
                    artifacts: vec![],
                    usage: None,
                })
                .collect(),
        }
    }

    pub fn workspace(&self) -> Workspace {
        Workspace::new(&self.output_dir)
    }

    pub fn working_stage(&self) -> &str {
        if self.working_stage_path.is_empty() {
            &self.stage_path
        } else {
            &self.working_stage_path
        }
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// What a client said at a gate.
#[derive(Clone, Debug)]
pub struct Answer {
    pub branch: Branch,
    pub answered_by: &'static str,
}

/// A run the daemon holds in memory: its record plus the channels that steer it.
pub struct RunSlot {
    pub record: Mutex<RunRecord>,
    pub answers: tokio::sync::Mutex<mpsc::UnboundedReceiver<Answer>>,
    pub answer_tx: mpsc::UnboundedSender<Answer>,
    pub cancelled: std::sync::atomic::AtomicBool,
    /// Executor cost of the phase in progress, summed as its tasks finish.
    pub usage: Mutex<PhaseUsage>,
    /// The source stage's geometry signature, measured once for every preservation proof of
    /// the run (the source is never written, so it cannot change under the run).
    pub source_signature: Mutex<Option<Arc<Signature>>>,
}

impl RunSlot {
    pub fn new(record: RunRecord) -> Arc<Self> {
        let (answer_tx, answers) = mpsc::unbounded_channel();
        Arc::new(Self {
            record: Mutex::new(record),
            answers: tokio::sync::Mutex::new(answers),
            answer_tx,
            cancelled: Default::default(),
            usage: Default::default(),
            source_signature: Default::default(),
        })
    }

    pub fn snapshot(&self) -> RunRecord {
        self.record.lock().unwrap().clone()
    }

    fn update(&self, f: impl FnOnce(&mut RunRecord)) -> RunRecord {
        let mut record = self.record.lock().unwrap();
        f(&mut record);
        record.clone()
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Why a phase did not complete.
#[derive(Debug)]
pub enum Stop {
    Fail { code: String, message: String },
    Block { code: String, message: String },
    AwaitDecision(GateRecord),
}

impl Stop {
    fn fail(code: &str, message: impl Into<String>) -> Self {
        Self::Fail { code: code.to_string(), message: message.into() }
    }
}

impl From<TaskFailure> for Stop {
    fn from(f: TaskFailure) -> Self {
        let message = f.to_string();
        if f.code.starts_with("blocked_") {
            Stop::Block { code: f.code, message }
        } else {
            Stop::Fail { code: f.code, message }
        }
    }
}

impl From<crate::store::StoreError> for Stop {
    fn from(e: crate::store::StoreError) -> Self {
        Stop::fail(codes::ARTIFACT_INVALID, e.to_string())
    }
}

/// Walk the phases from the first one not yet done. Returns when the run ends.
pub async fn drive(core: Arc<Core>, slot: Arc<RunSlot>) {
    let mut index = {
        let record = slot.snapshot();
        record.phases.iter().position(|p| p.status != "done" && p.status != "skipped").unwrap_or(PHASES.len())
    };
    set_state(&core, &slot, RunState::Running, "", "");
    while index < PHASES.len() {
        let spec = &PHASES[index];
        if slot.is_cancelled() {
            return set_state(&core, &slot, RunState::Cancelled, codes::CANCELLED, "cancelled by request");
        }
        let route = slot.snapshot().route;
        if let Some(note) = skip_reason(spec, &route) {
            let record = slot.update(|r| {
                r.phases[index].status = "skipped".into();
                r.phases[index].note = note.into();
            });
            core.persist_and_emit(&record, "phase_finished", spec.label, note);
            index += 1;
            continue;
        }
        let record = slot.update(|r| {
            r.milestone = spec.label.into();
            r.phases[index].status = "running".into();
        });
        core.persist_and_emit(&record, "phase_started", spec.label, "");
        let started = Instant::now();
        *slot.usage.lock().unwrap() = PhaseUsage::default();
        crate::resources::reset_own_peak_rss();
        let cpu_before = crate::resources::own_cpu_seconds();
        let outcome = run_phase(&core, &slot, spec.milestone).await;
        let seconds = round3(started.elapsed().as_secs_f64());
        let usage = {
            let mut usage = slot.usage.lock().unwrap().clone();
            usage.daemon_cpu_seconds =
                crate::resources::own_cpu_seconds().zip(cpu_before).map_or(0.0, |(after, before)| after - before);
            usage.daemon_peak_rss_mb = crate::resources::own_peak_rss_kb().unwrap_or(0) as f64 / 1024.0;
            usage
        };
        match outcome {
            Ok((artifacts, note)) => {
                let record = slot.update(|r| {
                    r.phases[index] = PhaseRecord {
                        milestone: spec.label.into(),
                        status: "done".into(),
                        note: note.clone(),
                        seconds,
                        artifacts,
                        usage: Some(usage),
                    };
                });
                core.persist_and_emit(&record, "phase_finished", spec.label, &note);
                index += 1;
            }
            Err(Stop::AwaitDecision(gate)) => {
                let record = slot.update(|r| {
                    r.state = RunState::AwaitingDecision;
                    r.code = codes::AWAITING_RESTRUCTURE_DECISION.into();
                    r.message = gate.question.clone();
                    r.gate = Some(gate.clone());
                    r.phases[index].status = "pending".into();
                });
                core.persist_and_emit(&record, "gate", spec.label, &gate.question);
                let Some(answer) = wait_for_answer(&slot).await else {
                    return set_state(
                        &core,
                        &slot,
                        RunState::Cancelled,
                        codes::CANCELLED,
                        "cancelled while awaiting a decision",
                    );
                };
                let record = slot.update(|r| {
                    r.state = RunState::Running;
                    r.code.clear();
                    r.message.clear();
                    r.gate = None;
                    r.route.restructure_branch = Some(answer.branch.as_str().into());
                    r.route.decision_source = Some(answer.answered_by.into());
                });
                core.persist_and_emit(
                    &record,
                    "progress",
                    spec.label,
                    &format!("answered: {}", answer.branch.as_str()),
                );
                // Run the same phase again, now with its answer.
            }
            Err(stop) => {
                let (state, code, message) = match stop {
                    Stop::Fail { code, message } => (RunState::Failed, code, message),
                    Stop::Block { code, message } => (RunState::Blocked, code, message),
                    Stop::AwaitDecision(_) => unreachable!(),
                };
                slot.update(|r| {
                    r.phases[index].status = "failed".into();
                    r.phases[index].note = format!("{code}: {message}");
                    r.phases[index].seconds = seconds;
                });
                return set_state(&core, &slot, state, &code, &message);
            }
        }
    }
    // A completed run may still carry a failed check (e.g. incomplete target coverage).
    let record = slot.snapshot();
    set_state(&core, &slot, RunState::Completed, &record.code, &record.message)
}

async fn wait_for_answer(slot: &RunSlot) -> Option<Answer> {
    let mut answers = slot.answers.lock().await;
    loop {
        tokio::select! {
            answer = answers.recv() => return answer,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                if slot.is_cancelled() { return None; }
            }
        }
    }
}

fn set_state(core: &Core, slot: &RunSlot, state: RunState, code: &str, message: &str) {
    let record = slot.update(|r| {
        r.state = state;
        r.code = code.into();
        r.message = message.into();
    });
    let milestone = record.milestone.clone();
    if state.is_terminal() {
        core.drop_workers(&worker_pool(&record)); // a run that ended early may still hold its pre-started worker
    }
    core.persist_and_emit(&record, if state.is_terminal() { "finished" } else { "progress" }, &milestone, message);
}

type PhaseResult = Result<(Vec<String>, String), Stop>;

/// Everything a phase handler needs: the run, its workspace, and task dispatch.
struct PhaseCtx<'a> {
    core: &'a Arc<Core>,
    slot: &'a Arc<RunSlot>,
    ws: Workspace,
    milestone: &'static str,
}

impl PhaseCtx<'_> {
    async fn task(&self, kind: &str, params: Value) -> Result<Value, Stop> {
        let (executor_id, outcome, usage) =
            self.core.run_task(&self.slot.snapshot().run_id, self.milestone, kind, params).await;
        self.slot.usage.lock().unwrap().add_task(usage);
        tracing::debug!(%executor_id, kind, "task done");
        Ok(outcome?)
    }

    fn write(&self, name: &str, value: &Value) -> Result<String, Stop> {
        Ok(self.ws.write_artifact(name, value)?.display().to_string())
    }

    fn read<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, Stop> {
        let value = self.ws.read_artifact(name)?;
        serde_json::from_value(value).map_err(|e| Stop::fail(codes::ARTIFACT_INVALID, format!("{name}: {e}")))
    }

    fn record(&self) -> RunRecord {
        self.slot.snapshot()
    }
}

async fn run_phase(core: &Arc<Core>, slot: &Arc<RunSlot>, milestone: Milestone) -> PhaseResult {
    let spec = crate::phases::spec(milestone);
    let ctx = PhaseCtx { core, slot, ws: slot.snapshot().workspace(), milestone: spec.label };
    match milestone {
        Milestone::Setup => setup(&ctx).await,
        Milestone::ProfileBaseline => profile(&ctx, "profile-baseline", &ctx.record().stage_path).await,
        Milestone::StructureAssessment => structure_assessment(&ctx).await,
        Milestone::ValidationRunner => {
            whole_stage_validation(&ctx, ValidationPhase::Baseline, &ctx.record().stage_path).await
        }
        Milestone::RestructureDecision => restructure_decision(&ctx),
        Milestone::ApplyRestructure => apply_restructure(&ctx).await,
        Milestone::SoRunValidators => so_run_validators(&ctx).await,
        Milestone::SoInterpretValidators => so_interpret_validators(&ctx),
        Milestone::SoRunOperations => so_run_operations(&ctx).await,
        Milestone::ProfileAfter => profile_after(&ctx).await,
        Milestone::CompareProfiles => compare_profiles(&ctx),
        Milestone::OptimizationReport => optimization_report(&ctx),
    }
}

// ------------------------------------------------------------------ Phase 0

async fn setup(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let probe = ctx.task("probe", json!({})).await?;
    let preflight = report::preflight(&probe, crate::resources::host_facts());
    let path = ctx.write("setup-preflight", &preflight)?;
    let operations: Vec<String> = preflight["usdOptimize"]["operationsAvailable"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let so_available = !preflight["usdOptimize"].is_null();
    let requested = ctx.record().requested_operations;
    if !requested.is_empty() && !so_available {
        return Err(Stop::Block {
            code: codes::BLOCKED_MISSING_SCENE_OPTIMIZER.into(),
            message: format!(
                "operations {} were requested but usd-optimize cannot load in the executor runtime",
                requested.join(", ")
            ),
        });
    }
    let missing: Vec<&String> = requested.iter().filter(|op| !operations.contains(op)).collect();
    if !missing.is_empty() {
        return Err(Stop::Block {
            code: codes::BLOCKED_MISSING_SO_OPERATION.into(),
            message: format!(
                "requested operation(s) {} are not in operationsAvailable of usd-optimize {}",
                missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                preflight["usdOptimize"]["version"].as_str().unwrap_or("?")
            ),
        });
    }
    ctx.slot.update(|r| r.route.so_available = Some(so_available));
    let note = if so_available {
        format!(
            "{} runtime, usd-optimize {} ({} operations)",
            preflight["runtime_route"].as_str().unwrap_or(""),
            preflight["usdOptimize"]["version"].as_str().unwrap_or(""),
            operations.len()
        )
    } else {
        "usd-optimize unavailable: structural-only path".to_string()
    };
    Ok((vec![path], note))
}

// ------------------------------------------------------------------ Phase 1

async fn profile(ctx: &PhaseCtx<'_>, artifact: &str, stage: &str) -> PhaseResult {
    let captured = ctx.task("profile", json!({"stage_path": stage, "warm_samples": 5})).await?;
    let path = ctx.write(artifact, &captured)?;
    let note = format!(
        "warm open {} ms (spread {}%), {} prims",
        captured["warm_open_ms"], captured["warm_open_spread_pct"], captured["prim_count_with_instance_proxies"]
    );
    Ok((vec![path], note))
}

async fn structure_assessment(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let mut facts_value = ctx.task("facts", json!({"stage_path": ctx.record().stage_path})).await?;
    // The prim table streamed beside the result: decided on here, not stored.
    let chunks = take_records(&mut facts_value, "prims");
    let facts_path = ctx.write("stage-facts", &facts_value)?;
    let facts: Facts = ctx.read("stage-facts")?;
    let started = std::time::Instant::now();
    let table = PrimTable::from_chunks(&chunks).map_err(|e| Stop::fail("executor_protocol_error", e))?;
    let mut result = assessment::assess(&facts, &table);
    let classes = GeometryClasses::from_table(&table);
    let decision_seconds = started.elapsed().as_secs_f64();
    result.structure["timing"] = json!({
        "fact_collection_seconds": facts_value["collection_seconds"], "decision_seconds": decision_seconds,
    });
    let candidates_path = ctx.write("dedupe-candidates", &result.candidates)?;
    let classes_path = ctx.write("geometry-classes", &serde_json::to_value(&classes).expect("classes serialize"))?;
    let path = ctx.write("structure-assessment", &result.structure)?;
    let recommendation = result.structure["phase_recommendation"].as_str().unwrap_or_default().to_string();
    ctx.slot.update(|r| r.route.phase_recommendation = Some(recommendation.clone()));
    let note = format!(
        "{}; phase_recommendation {recommendation}; {} dedupe groups on the frontier; facts {}s (executor), decisions {decision_seconds:.2}s (daemon)",
        result.structure["classification"]["kind"].as_str().unwrap_or(""), result.reuse.selected_groups, facts_value["collection_seconds"]
    );
    Ok((vec![facts_path, candidates_path, classes_path, path], note))
}

// ------------------------------------------------------------------ Phase 2c / 6b

/// The validation plan's inputs: the assessment, its geometry classes, the user's approval.
fn validation_inputs(ctx: &PhaseCtx<'_>) -> Result<validation::PlanInputs, Stop> {
    let assessment = ctx.ws.read_artifact("structure-assessment")?;
    let facts: Facts = ctx.read("stage-facts")?;
    let classes: GeometryClasses = ctx.read("geometry-classes")?;
    let boundaries: std::collections::HashMap<&str, &str> = assessment["asset_boundary_suggestions"]["boundaries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| Some((b["boundary_id"].as_str()?, b["prim_path"].as_str()?)))
        .collect();
    let pairs = assessment["validation_scope"]["cross_component_pairs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(validation::FlaggedPair {
                enclosing: boundaries.get(p["enclosing_boundary_id"].as_str()?)?.to_string(),
                enclosed: boundaries.get(p["enclosed_boundary_id"].as_str()?)?.to_string(),
                enclosure_opaque: p["enclosure_opaque"].as_bool(),
            })
        })
        .collect();
    let hints = facts.stage.authoring_hints.to_lowercase();
    Ok(validation::PlanInputs {
        phase_recommendation: assessment["phase_recommendation"].as_str().unwrap_or_default().to_string(),
        prim_count: facts.counts.prim_count,
        mesh_count: facts.counts.mesh_count,
        stage_bytes: facts.stage.file_size_bytes,
        converted_cad: validation::CONVERTER_WORDS.iter().any(|w| hints.contains(w)),
        simulation_ready: assessment["asset_physical_context"]["physics_prim_count"].as_u64().unwrap_or(0) > 0,
        hierarchy_dedupe_recommended: assessment["hierarchy_dedupe"]["recommended"].as_bool().unwrap_or(false),
        pairs,
        classes,
        full_sweep_approved: ctx.record().route.full_validation_approved,
    })
}

/// Run one plan on `stage`: write its scope note, run its jobs, write the report, apply the
/// ledger gate. Returns the report and the artifact paths. A note that several runs of the
/// same plan share (2c and 6b) lists every report written under it.
async fn run_validation_plan(
    ctx: &PhaseCtx<'_>,
    plan: &Plan,
    classes: &GeometryClasses,
    stage: &str,
    phase: ValidationPhase,
    note_name: &str,
    report_name: &str,
) -> Result<(Value, Vec<String>), Stop> {
    let mut reports: Vec<Value> = match ctx.ws.has_artifact(note_name) {
        true => ctx.ws.read_artifact(note_name)?["artifact_paths"].as_array().cloned().unwrap_or_default(),
        false => Vec::new(),
    };
    let report_path = json!(ctx.ws.path_of(report_name).display().to_string());
    if !reports.contains(&report_path) {
        reports.push(report_path);
    }
    let mut note = plan.note.clone();
    note["artifact_paths"] = json!(reports);
    let note_path = ctx.write(note_name, &note)?;
    let result = ctx.task("validate", plan.task_params(stage, classes)).await?;
    let mut report = validation::report(phase, stage, plan, &result, classes);
    report["artifacts"] = json!({"scope_note": note_path});
    report["generated_at"] = json!(now_rfc3339());
    let report_path = ctx.write(report_name, &report)?;
    validation::ledger_gate(&report).map_err(|e| Stop::fail("coverage_ledger_incomplete", e))?;
    Ok((report, vec![note_path, report_path]))
}

fn validation_note(report: &Value) -> String {
    let by_tier = &report["runtime_context"]["tier_wall_seconds"];
    format!(
        "{}: {} findings, {} ledger entries; wall {}s (jobs: {})",
        report["summary"]["status"].as_str().unwrap_or(""),
        report["findings"].as_array().map_or(0, |f| f.len()),
        report["coverage_ledger"]["entries"].as_array().map_or(0, |e| e.len()),
        report["runtime_context"]["wall_seconds"],
        by_tier
            .as_object()
            .map(|o| o.iter().map(|(k, v)| format!("{k} {v}s")).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
    )
}

/// Phase 2c (baseline) and 6b (after, the same plan on the output): openability + Tier 1.
async fn whole_stage_validation(ctx: &PhaseCtx<'_>, phase: ValidationPhase, stage: &str) -> PhaseResult {
    let inputs = validation_inputs(ctx)?;
    let plan = validation::plan(&inputs, Placement::WholeStage);
    let report_name = match phase {
        ValidationPhase::Baseline => "validation-report",
        ValidationPhase::After => "validation-report-after",
    };
    // 6b re-runs exactly the baseline plan, so both reports share one scope note.
    let (report, artifacts) =
        run_validation_plan(ctx, &plan, &inputs.classes, stage, phase, "validation-scope-note", report_name).await?;
    let mut note = validation_note(&report);
    if phase == ValidationPhase::Baseline
        && ctx.record().route.phase_recommendation.as_deref() == Some("already_optimized")
    {
        // The assessment sees structure only; what the validators found that a lossless op
        // fixes (redundant time samples, duplicate materials, empty leaves) still deserves Phase 4.
        let fixable: Vec<&str> = validation::STRUCTURE_BLIND_LOSSLESS_FIXES
            .iter()
            .copied()
            .filter(|c| validation::site_count(&report, c, None) > 0)
            .collect();
        if !fixable.is_empty() {
            ctx.slot.update(|r| r.route.phase_recommendation = Some("optimization".into()));
            note.push_str(&format!(
                "; findings a lossless op fixes ({}): on to Phase 4 although the structure is already optimized",
                fixable.join(", ")
            ));
        }
    }
    Ok((artifacts, note))
}

// ------------------------------------------------------------------ Phase 2e / 2f

fn restructure_decision(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let assessment = ctx.ws.read_artifact("structure-assessment")?;
    let class = Classification::parse(assessment["classification"]["kind"].as_str().unwrap_or_default())
        .ok_or_else(|| Stop::fail(codes::ARTIFACT_INVALID, "structure-assessment has no known classification"))?;
    let plan = restructure::gate_plan(
        class,
        assessment["hierarchy_dedupe"]["recommended"].as_bool().unwrap_or(false),
        assessment["summary_counts"]["payload_count"].as_u64().unwrap_or(0),
        // The assessment asks the user about selective loading when the boundaries are clear.
        assessment["asset_boundary_suggestions"]["user_choice_required"].as_bool().unwrap_or(false),
    );
    let evidence = json!({
        "classification": assessment["classification"],
        "hierarchy_dedupe": assessment["hierarchy_dedupe"],
        "instancing": assessment["instancing"],
        "summary_counts": assessment["summary_counts"],
    });
    let record = ctx.record();
    let given = record.route.restructure_branch.as_deref();
    let (offered, recommended) = match &plan {
        GatePlan::Ask { branches, recommended } => (branches.clone(), *recommended),
        GatePlan::Automatic(b) => (vec![*b], Some(*b)),
    };
    let (chosen, answered_by) = match (given, &plan) {
        (Some(text), _) => {
            let branch = Branch::parse(text)
                .ok_or_else(|| Stop::fail("invalid_restructure_branch", format!("unknown branch '{text}'")))?;
            let chosen = restructure::accept(&plan, branch).map_err(|e| Stop::fail("invalid_restructure_branch", e))?;
            (chosen, record.route.decision_source.clone().unwrap_or_else(|| "flag".into()))
        }
        (None, GatePlan::Automatic(b)) => (*b, "automatic".into()),
        (None, GatePlan::Ask { .. }) => {
            return Err(Stop::AwaitDecision(GateRecord {
                id: "restructure-decision".into(),
                question: format!(
                    "The stage is {}. How should it be optimized? ({})",
                    class.as_str(),
                    assessment["hierarchy_dedupe"]["reason"].as_str().unwrap_or("")
                ),
                branches: offered.iter().map(|b| b.as_str().to_string()).collect(),
                recommended: recommended.map(|b| b.as_str().to_string()),
                evidence,
            }));
        }
    };
    let decision = json!({
        "phase": "2e",
        "choice": chosen.as_str(),
        "reasoning": format!("{}; hierarchy dedupe: {}", class.as_str(), assessment["hierarchy_dedupe"]["reason"].as_str().unwrap_or("")),
        "user_confirmed_at": (answered_by != "automatic").then(now_rfc3339),
        "classification": class.as_str(),
        "branches_offered": offered.iter().map(|b| b.as_str()).collect::<Vec<_>>(),
        "recommended": recommended.map(|b| b.as_str()),
        "chosen": chosen.as_str(),
        "answered_by": answered_by,
        "evidence": evidence,
    });
    let path = ctx.write("restructure-decision", &decision)?;
    ctx.slot.update(|r| r.route.restructure_branch = Some(chosen.as_str().into()));
    Ok((vec![path], format!("{} (by {answered_by})", chosen.as_str())))
}

/// Phase 2f (the chosen branch's restructure) and Phase 3 (instancing flips), then the
/// per-mesh preservation proof: a restructure that changes the composed geometry fails the
/// run. Later phases work on the result (`working_stage_path`).
async fn apply_restructure(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let record = ctx.record();
    let branch = record.route.restructure_branch.as_deref().and_then(Branch::parse).unwrap_or(Branch::OptimizeAsIs);
    let candidates = ctx.ws.read_artifact("dedupe-candidates")?;
    let groups: Vec<GroupCandidate> = serde_json::from_value(candidates["groups"].clone())
        .map_err(|e| Stop::fail(codes::ARTIFACT_INVALID, format!("dedupe-candidates groups: {e}")))?;
    let stem = Path::new(&record.stage_path).file_stem().and_then(|s| s.to_str()).unwrap_or("stage").to_string();
    let mut artifacts = Vec::new();
    let (new_root, readiness, edit_target, note) = match branch.mode() {
        Some(mode) => {
            let plan = match mode {
                restructure::Mode::SelectiveLoading => {
                    // The shallowest candidate level holding geometry in two or more prims.
                    let assessment = ctx.ws.read_artifact("structure-assessment")?;
                    let level = &assessment["asset_boundary_suggestions"]["candidate_levels"][0];
                    let boundaries: Vec<String> = level["prim_paths"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p.as_str().map(String::from))
                        .collect();
                    restructure::plan_selective(&boundaries)
                }
                _ => restructure::plan_dedupe(mode, &groups),
            };
            if plan.prototypes.is_empty() && plan.sites.is_empty() && plan.subassets.is_empty() {
                return Err(Stop::fail(
                    "restructure_nothing_to_author",
                    format!(
                        "'{}' found nothing to author: no shareable group or boundary (skipped: {})",
                        branch.as_str(),
                        plan.skipped.iter().map(|s| format!("{} {}", s.group, s.reason)).collect::<Vec<_>>().join("; ")
                    ),
                ));
            }
            let output_dir = Path::new(&record.output_dir).join("restructured");
            let root = output_dir.join(format!("{stem}.usdc"));
            let mut params = serde_json::to_value(&plan).expect("plan serializes");
            params["stage_path"] = json!(record.stage_path);
            params["output_dir"] = json!(output_dir);
            params["output_root"] = json!(root);
            params["source_asset_paths"] = json!(source_asset_paths(ctx));
            let result = ctx.task("restructure", params).await?;
            let proof_path = ctx.ws.path_of("preservation-apply-restructure").display().to_string();
            let manifest = restructure_manifest(&record, &plan, &result, &proof_path);
            artifacts.push(ctx.write("apply-restructure-manifest", &manifest)?);
            let flipped = plan.sites.iter().filter(|s| s.instanceable).count() + plan.flips.len();
            let note = format!(
                "{}: {} prototypes, {} sites rewritten ({flipped} instanceable), {} sub-assets",
                mode.as_str(),
                plan.prototypes.len(),
                plan.sites.len(),
                plan.subassets.len()
            );
            (
                result["new_assembly_root"].as_str().unwrap_or_default().to_string(),
                plan.readiness,
                "restructured_root",
                note,
            )
        }
        None => {
            let (flips, readiness) = restructure::plan_flips(&groups);
            if flips.is_empty() {
                let readiness_doc = readiness_artifact(&readiness, None, "none");
                artifacts.push(ctx.write("instancing-readiness", &readiness_doc)?);
                return Ok((
                    artifacts,
                    format!("{}: nothing authored; no placement ready to flip instanceable", branch.as_str()),
                ));
            }
            let output = Path::new(&record.output_dir).join("instancing").join(format!("{stem}.instancing.usda"));
            let result = ctx
                .task("instancing", json!({"stage_path": record.stage_path, "output_path": output, "flips": flips}))
                .await?;
            let note = format!(
                "{} placements flipped instanceable in an override layer ({} instances, {} prototypes)",
                flips.len(),
                result["instances"],
                result["prototypes"]
            );
            (result["output_path"].as_str().unwrap_or_default().to_string(), readiness, "override_layer", note)
        }
    };
    artifacts.push(ctx.write("instancing-readiness", &readiness_artifact(&readiness, Some(&new_root), edit_target))?);
    let proof = prove_preservation(ctx, "apply-restructure", &record.stage_path, &new_root, Strength::PerMesh).await?;
    artifacts.push(ctx.write("preservation-apply-restructure", &proof)?);
    if proof["passed"] != true {
        return Err(Stop::fail(
            "restructure_not_lossless",
            format!(
                "{} changed the composed geometry; its output {new_root} is not used: {}",
                branch.as_str(),
                preservation::summary(&proof)
            ),
        ));
    }
    ctx.slot.update(|r| r.working_stage_path = new_root.clone());
    Ok((artifacts, format!("{note}; {}", preservation::summary(&proof))))
}

fn readiness_artifact(rows: &[restructure::Readiness], authored_in: Option<&str>, edit_target: &str) -> Value {
    let flipped: usize = rows.iter().map(|r| r.flipped.len()).sum();
    json!({
        "shares": rows,
        "flipped": flipped,
        "held_back": rows.iter().map(|r| r.held_back.len()).sum::<usize>(),
        "authored_in": if flipped > 0 { json!(authored_in) } else { Value::Null },
        "edit_target": if flipped > 0 { edit_target } else { "none" },
    })
}

/// The apply-restructure manifest (mode restructure) from the plan and what the executor wrote.
fn restructure_manifest(
    record: &RunRecord,
    plan: &restructure::RestructurePlan,
    result: &Value,
    proof_path: &str,
) -> Value {
    let outputs: Vec<Value> = result["outputs"].as_array().cloned().unwrap_or_default();
    let root_output = outputs.iter().find(|o| o["kind"] == "new_root").cloned().unwrap_or(Value::Null);
    let residual = root_output["mesh_count"].as_u64().unwrap_or(0);
    let copies = |name: &str| plan.sites.iter().filter(|s| s.prototype == name).count();
    let mut targets: Vec<Value> = Vec::new();
    for output in &outputs {
        let mesh_count = output["mesh_count"].as_u64().unwrap_or(0);
        match output["kind"].as_str() {
            Some("prototype") => {
                let name = Path::new(output["path"].as_str().unwrap_or("")).file_stem().and_then(|s| s.to_str()).unwrap_or("");
                let proto = plan.prototypes.iter().find(|p| p.name == name);
                targets.push(json!({
                    "path": output["path"], "target_class": "prototype", "mesh_count": mesh_count, "dependency_group": "shared_first",
                    "source": proto.map_or(String::new(), |p| format!("{} ({})", p.source, p.group)),
                    "identity_disposition": "externalize_shared", "copy_count": copies(name).max(1),
                    "weight_hints": {"size_bytes": output["size_bytes"], "mesh_count": mesh_count},
                }));
            }
            Some("shared_layer") => targets.push(json!({
                "path": output["path"], "target_class": "shared_layer", "mesh_count": mesh_count, "dependency_group": "shared_first",
                "source": output["provenance"], "identity_disposition": "externalize_shared",
                "notes": "the scope holding prototypes the sites already referenced, with the materials it binds",
                "weight_hints": {"size_bytes": output["size_bytes"], "mesh_count": mesh_count},
            })),
            Some("loadable_subasset") => targets.push(json!({
                "path": output["path"], "target_class": "loadable_subasset", "mesh_count": mesh_count, "dependency_group": "independent",
                "source": output["provenance"], "identity_disposition": "keep_local",
                "weight_hints": {"size_bytes": output["size_bytes"], "mesh_count": mesh_count},
            })),
            _ => {}
        }
    }
    // The assembly root is a Phase 4 target whenever it keeps meshes: residual ones, or (internal
    // mode) the prototypes in its class namespace, which the op chain reaches once de-classed.
    let namespace_meshes = root_output["prototype_namespace_meshes"].as_u64().unwrap_or(0);
    if residual + namespace_meshes > 0 {
        let mut target = json!({
            "path": root_output["path"], "target_class": "assembly_root", "mesh_count": residual + namespace_meshes,
            "dependency_group": "dependent_after", "source": record.stage_path,
            "load_payloads": false, "mute_layers": root_output["mute_layers"],
            "weight_hints": {"size_bytes": root_output["size_bytes"], "mesh_count": residual},
        });
        if namespace_meshes > 0 {
            target["identity_disposition"] = json!("internal_share");
            target["declass_namespace"] = json!(plan.namespace);
            target["notes"] = json!(format!(
                "{residual} meshes outside the prototypes, {namespace_meshes} in the class namespace {}",
                plan.namespace
            ));
        }
        targets.push(target);
    }
    json!({
        "mode": "restructure",
        "materialization": plan.mode.as_str(),
        "input_stage": record.stage_path,
        "output_dir": Path::new(&record.output_dir).join("restructured"),
        "new_assembly_root": result["new_assembly_root"],
        "assembly_root": {"path": root_output["path"], "mesh_count": residual},
        "outputs": outputs.iter().map(|o| json!({
            "path": o["path"], "kind": o["kind"], "provenance": o["provenance"], "size_bytes": o["size_bytes"],
            "validate_usd_minimum": o["validate_usd_minimum"], "notes": o["notes"].as_str().unwrap_or(""),
        })).collect::<Vec<_>>(),
        "phase4_targets": targets,
        "rewrite_steps": [{
            "step": if plan.mode == restructure::Mode::SelectiveLoading { "selective_loading_split" } else { "hierarchy_dedupe_rewrite" },
            "result": "ok",
            "notes": format!("{} prototypes, {} sites, {} sub-assets, {} reference placements flipped", plan.prototypes.len(), plan.sites.len(), plan.subassets.len(), plan.flips.len()),
        }],
        "material_rewrites": result["material_rewrites"],
        "preservation": proof_path,
        "warnings": plan.skipped.iter().map(|s| format!("group {} not shared: {}", s.group, s.reason)).collect::<Vec<_>>(),
    })
}

/// Geometry signatures of two stages, compared (decisions::preservation).
async fn prove_preservation(
    ctx: &PhaseCtx<'_>,
    phase: &str,
    before: &str,
    after: &str,
    strength: Strength,
) -> Result<Value, Stop> {
    let cached = ctx.slot.source_signature.lock().unwrap().clone();
    let before_signature = match cached {
        Some(cached) if before == ctx.record().stage_path => cached,
        _ => {
            let measured = Arc::new(geometry_signature(ctx, before).await?);
            if before == ctx.record().stage_path {
                *ctx.slot.source_signature.lock().unwrap() = Some(measured.clone());
            }
            measured
        }
    };
    let after_signature = geometry_signature(ctx, after).await?;
    let mut proof = preservation::prove(phase, &before_signature, &after_signature, strength);
    proof["before"] = json!(before);
    proof["after"] = json!(after);
    Ok(proof)
}

async fn geometry_signature(ctx: &PhaseCtx<'_>, stage: &str) -> Result<Signature, Stop> {
    let mut result = ctx.task("geometry", json!({"stage_path": stage})).await?;
    let chunks = take_records(&mut result, "meshes");
    Signature::from_task(&result, &chunks).map_err(|e| Stop::fail("executor_protocol_error", e))
}

// ------------------------------------------------------------------ Phase 4

/// Phase 4 evidence: the per-target plan (Tier 2 hygiene on one representative per geometry
/// class, Tier 3 on flagged subtrees and pairs) on the optimization target, N=1 the stage.
async fn so_run_validators(ctx: &PhaseCtx<'_>) -> PhaseResult {
    // Phase 4's first worker starts now, so its interpreter and usd-optimize are loaded by the
    // time the first target runs (a start costs seconds: on a small stage, more than the ops).
    ctx.core.ensure_workers(&worker_pool(&ctx.record()), 1).map_err(Stop::from)?;
    let inputs = validation_inputs(ctx)?;
    let plan = validation::plan(&inputs, Placement::Target);
    let stage = ctx.record().stage_path;
    let (report, artifacts) = run_validation_plan(
        ctx,
        &plan,
        &inputs.classes,
        &stage,
        ValidationPhase::Baseline,
        "validation-scope-note-targets",
        "validation-report-targets",
    )
    .await?;
    Ok((artifacts, validation_note(&report)))
}

fn so_interpret_validators(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let findings = ctx.ws.read_artifact("validation-report-targets")?;
    // Whole-stage Tier 1 findings (time samples, materials, empty leaves) come from Phase 2c.
    let whole_stage = ctx.ws.read_artifact("validation-report")?;
    let facts: Facts = ctx.read("stage-facts")?;
    let record = ctx.record();
    let count = |concept: &str| {
        validation::site_count(&findings, concept, None) + validation::site_count(&whole_stage, concept, None)
    };
    let evidence = Evidence {
        meters_per_unit: facts.stage.meters_per_unit,
        meshes_with_mergeable_vertices: count("vertex_weld"),
        meshes_with_degenerate_faces: count("topology_zero_area_faces"),
        meshes_with_duplicate_faces: count("topology_duplicate_faces"),
        attributes_with_redundant_samples: count("perf_redundant_timesamples"),
        empty_leaves: count("structure_empty_leaf"),
        duplicate_material_sets: count("material_duplicates"),
        // Exact copies (geometry classes) and what the validator groups among the distinct ones.
        duplicate_geometry_groups: findings["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["concept"] == "geom_duplicates")
            .count() as u64,
        duplicate_geometry_copies: count("geom_duplicates"),
        prims_missing_extent: facts.geometry.meshes_missing_extent,
        occlusion_pairs: occlusion_pairs(&findings),
        occluded_meshes: count("spatial_occluded"),
        restructured: !record.working_stage_path.is_empty(),
        instancing_in_play: facts.counts.instance_count > 0
            || facts.counts.point_instancer_count > 0
            || !record.working_stage_path.is_empty(),
    };
    let chain = op_chain::build_chain(&evidence, record.route.pipeline.as_deref(), &record.route.approvals)
        .map_err(|e| Stop::fail(codes::ORDERING_INVARIANT_VIOLATED, e))?;
    let targets = phase4_targets(ctx)?;
    let optimized_dir = Path::new(&record.output_dir).join("optimized");
    let outputs = target_output_paths(targets.iter().map(|t| t["path"].as_str().unwrap_or_default()), &optimized_dir);
    let targets: Vec<Value> = targets
        .into_iter()
        .zip(outputs)
        .map(|(mut t, output)| {
            t["output_path"] = json!(output);
            t
        })
        .collect();
    let plan = json!({
        "target": record.working_stage(),
        "role": targets.first().map_or(json!("monolith"), |t| t["target_class"].clone()),
        "output_path": targets.last().map_or(Value::Null, |t| t["output_path"].clone()),
        "targets": targets,
        "pipeline": record.route.pipeline,
        "operations": chain.operations,
        "skipped": chain.skipped,
        "invariants_checked": chain.invariants_checked,
    });
    let path = ctx.write("operation-plan", &plan)?;
    let names: Vec<&str> = chain.operations.iter().map(|o| o.operation).collect();
    let chain_text =
        if names.is_empty() { "no operation selected by evidence".to_string() } else { names.join(" → ") };
    Ok((vec![path], format!("{chain_text} on {} target(s)", plan["targets"].as_array().map_or(0, |t| t.len()))))
}

/// The roots of the enclosure pairs ("enclosing + enclosed") where the Tier 3 occlusion probe
/// found something, each once.
fn occlusion_pairs(report: &Value) -> Vec<String> {
    let mut roots: Vec<String> = report["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["concept"] == "spatial_occluded" && f["site_count"].as_u64().unwrap_or(0) > 0)
        .filter_map(|f| f["target"].as_str())
        .flat_map(|t| t.split(" + ").map(String::from).collect::<Vec<_>>())
        .collect();
    roots.sort();
    roots.dedup();
    roots
}

/// Phase 4 targets: the restructure manifest's (shared prototypes first, the assembly root
/// last), or the working stage itself.
fn phase4_targets(ctx: &PhaseCtx<'_>) -> Result<Vec<Value>, Stop> {
    let record = ctx.record();
    if ctx.ws.has_artifact("apply-restructure-manifest") {
        let manifest = ctx.ws.read_artifact("apply-restructure-manifest")?;
        let mut targets = manifest["phase4_targets"].as_array().cloned().unwrap_or_default();
        targets.sort_by_key(|t| batch::group_rank(t["dependency_group"].as_str()));
        return Ok(targets);
    }
    let facts: Facts = ctx.read("stage-facts")?;
    Ok(vec![json!({"path": record.working_stage(), "target_class": "monolith", "mesh_count": facts.counts.mesh_count})])
}

/// Each target's output in `dir`: `<stem>.optimized.<ext>`, and where two targets share a
/// file name (`Body.usd` in two folders), `<stem>.<path tag>.optimized.<ext>` for each of them.
fn target_output_paths<'a>(paths: impl Iterator<Item = &'a str> + Clone, dir: &Path) -> Vec<PathBuf> {
    let dir = dir.display().to_string();
    let plain: Vec<PathBuf> = paths.clone().map(|p| optimized_output_path(p, &dir)).collect();
    paths
        .zip(&plain)
        .map(|(path, output)| {
            if plain.iter().filter(|o| *o == output).count() == 1 {
                return output.clone();
            }
            let name = output.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let (stem, rest) = name.split_once(".optimized.").unwrap_or((name, "usdc"));
            output.with_file_name(format!("{stem}.{}.optimized.{rest}", batch::path_tag(path)))
        })
        .collect()
}

/// `<outdir>/<stem>.optimized.<ext>`: never the source path.
pub fn optimized_output_path(stage: &str, output_dir: &str) -> PathBuf {
    let source = Path::new(stage);
    let stem = source.file_stem().and_then(|s| s.to_str()).unwrap_or("stage");
    let ext = source.extension().and_then(|s| s.to_str()).filter(|e| *e != "usdz").unwrap_or("usdc");
    Path::new(output_dir).join(format!("{stem}.optimized.{ext}"))
}

/// Phase 4 (each target through the chain, to a new path, in prototype-first batches),
/// Phase 5 (the assemblies above optimized children remapped to a new root) and the
/// aggregate preservation proof of the whole against the source.
async fn so_run_operations(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let plan = ctx.ws.read_artifact("operation-plan")?;
    let operations: Vec<Value> = plan["operations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|op| json!({"operation": op["operation"], "args": op["args"]}))
        .collect();
    let record = ctx.record();
    let targets: Vec<Value> = plan["targets"].as_array().cloned().unwrap_or_default();
    let mut statuses: Vec<Value> = targets.iter().map(|target| {
        let mut status = json!({
            "path": target["path"], "role": target["target_class"], "mesh_count": target["mesh_count"].as_u64().unwrap_or(0),
            "dependency_group": target["dependency_group"].as_str().unwrap_or("independent"),
            "disposition": "optimized", "output_path": null, "operations": [],
        });
        if status["mesh_count"] == 0 && operations.iter().all(|o| op_chain::is_mesh_only(o["operation"].as_str().unwrap_or_default())) {
            status["disposition"] = json!("skipped_zero_meshes");
            status["reason"] = json!("no mesh reachable with the target opened standalone");
        } else if operations.is_empty() {
            status["disposition"] = json!("skipped_user_declined");
            status["reason"] = json!("evidence selected no operation");
        }
        status
    }).collect();
    let schedule = run_batches(ctx, &targets, &operations, &mut statuses).await?;
    let optimized: serde_json::Map<String, Value> = statuses
        .iter()
        .filter(|s| s["disposition"] == "optimized")
        .map(|s| (s["path"].as_str().unwrap_or_default().to_string(), s["output_path"].clone()))
        .collect();
    let mut artifacts = Vec::new();
    let mut note = format!(
        "{} operation(s) on {} of {} target(s) in {} batch(es)",
        operations.len(),
        optimized.len(),
        statuses.len(),
        schedule["batches"].as_array().map_or(0, |b| b.len())
    );
    // The whole is assembled and proven only when every target that had work came through.
    let blocked = statuses.iter().filter(|s| s["disposition"] == "blocked").count();
    if blocked > 0 {
        note.push_str(&format!("; {blocked} target(s) blocked: no assembled output"));
    } else if !optimized.is_empty() {
        let working = record.working_stage().to_string();
        let output = match optimized.get(&working) {
            Some(single) if optimized.len() == 1 => single.as_str().unwrap_or_default().to_string(),
            _ => {
                // Phase 5: assemblies above the optimized children, rewritten to a new root.
                let remap = ctx.task("remap", json!({
                    "root": working, "optimized": optimized, "output_dir": Path::new(&record.output_dir).join("optimized"),
                })).await?;
                let manifest = remap_manifest(&record, &remap, &optimized);
                artifacts.push(ctx.write("ref-remap-manifest", &manifest)?);
                note.push_str(&format!(
                    "; {} assemblies remapped",
                    remap["rewritten"].as_array().map_or(0, |r| r.len())
                ));
                remap["new_assembly_root"].as_str().unwrap_or_default().to_string()
            }
        };
        let proof =
            prove_preservation(ctx, "so-run-operations", &record.stage_path, &output, operations_strength(&plan))
                .await?;
        artifacts.push(ctx.write("preservation-so-run-operations", &proof)?);
        if proof["passed"] == true {
            let reverify = reverify_output(ctx, &output).await?;
            for status in statuses.iter_mut().filter(|s| s["disposition"] == "optimized") {
                status["findings_reverify"] = reverify.clone();
            }
            ctx.slot.update(|r| r.output_stage_path = output.clone());
            note.push_str("; geometry preservation proof passed");
        } else {
            // Set the output aside so nothing that looks complete is left behind.
            let discarded = format!("{output}.failed-verify");
            let _ = std::fs::rename(&output, &discarded);
            for status in statuses.iter_mut().filter(|s| s["disposition"] == "optimized") {
                status["disposition"] = json!("blocked");
                status["reason"] = json!(format!(
                    "geometry preservation proof failed, output set aside as {discarded}: {}",
                    preservation::summary(&proof)
                ));
            }
            note = format!("targets blocked: {}", preservation::summary(&proof));
        }
    }
    artifacts.insert(0, ctx.write("operations-status", &json!({"targets": statuses, "schedule": schedule}))?);
    Ok((artifacts, note))
}

/// Failures of one target that are failures of the chain itself: every other target would
/// fail the same way, so the run stops instead of blocking targets one by one.
const CHAIN_FAILURES: &[&str] =
    &["blocked_missing_scene_optimizer", "blocked_missing_so_operation", "unknown_operation_argument"];

/// Phase 4b: the targets still to optimize, run in dependency groups (prototypes first), each
/// group in batches whose concurrency the pilot and every later batch decide
/// (decisions::batch). Each target runs in a standalone worker process; a target that fails
/// is blocked with its error and the others go on. Returns the schedule record.
async fn run_batches(
    ctx: &PhaseCtx<'_>,
    targets: &[Value],
    operations: &[Value],
    statuses: &mut [Value],
) -> Result<Value, Stop> {
    // Each target's weight once: its file size is read from disk.
    let weights: Vec<batch::TargetWeight> = targets
        .iter()
        .map(|t| batch::TargetWeight {
            mesh_count: t["mesh_count"].as_u64().unwrap_or(0),
            file_bytes: std::fs::metadata(t["path"].as_str().unwrap_or("")).map_or(0, |m| m.len()),
        })
        .collect();
    let rank = |i: usize| batch::group_rank(targets[i]["dependency_group"].as_str());
    let mut order: Vec<usize> = (0..targets.len()).filter(|i| statuses[*i]["disposition"] == "optimized").collect();
    order.sort_by_key(|&i| (rank(i), std::cmp::Reverse(weights[i].mesh_count)));
    let pool = worker_pool(&ctx.record());
    let max_workers = budget(ctx).max_workers;
    let source_asset_paths = source_asset_paths(ctx);
    let mut batches = Vec::new();
    let mut outcome = Ok(());
    'groups: for group in order.chunk_by(|a, b| rank(*a) == rank(*b)) {
        let group_weights: Vec<batch::TargetWeight> = group.iter().map(|&i| weights[i].clone()).collect();
        let (mut concurrency, mut reason) = batch::initial_concurrency(&group_weights, &budget(ctx));
        let mut queue: std::collections::VecDeque<usize> = group.iter().copied().collect();
        while !queue.is_empty() {
            if ctx.slot.is_cancelled() {
                outcome = Err(Stop::fail(codes::CANCELLED, "cancelled by request between Phase 4 batches"));
                break 'groups;
            }
            let members: Vec<usize> = queue.drain(..concurrency.min(queue.len())).collect();
            let pooled = ctx.core.ensure_workers(&pool, concurrency).map_err(Stop::from)?;
            let started = Instant::now();
            let results = futures::future::join_all(members.iter().map(|&i| {
                optimize_target(ctx, pooled.then_some(pool.as_str()), &targets[i], operations, source_asset_paths)
            }))
            .await;
            let mut observed = batch::BatchObservation { concurrency, ..Default::default() };
            for (&i, result) in members.iter().zip(results) {
                let status = &mut statuses[i];
                match result {
                    Ok((value, peak_rss_kb, seconds)) => {
                        observed.peak_rss_bytes.push(u64::try_from(peak_rss_kb).unwrap_or(0) * 1024);
                        observed.seconds.push(seconds);
                        record_target(status, &value, seconds);
                    }
                    Err(failure) if CHAIN_FAILURES.contains(&failure.code.as_str()) => {
                        outcome = Err(Stop::from(failure));
                    }
                    Err(failure) => {
                        observed.failures += 1;
                        status["disposition"] = json!("blocked");
                        status["reason"] = json!(failure.to_string());
                    }
                }
            }
            let written = members
                .iter()
                .filter(|&&i| statuses[i]["output_path"].as_str().is_some_and(|p| Path::new(p).is_file()))
                .count();
            let expected = members.iter().filter(|&&i| statuses[i]["disposition"] == "optimized").count();
            batches.push(json!({
                "index": batches.len(), "dependency_group": targets[members[0]]["dependency_group"].as_str().unwrap_or("independent"),
                "targets": members.iter().map(|&i| targets[i]["path"].clone()).collect::<Vec<_>>(),
                "concurrency": concurrency, "reason": reason, "seconds": round3(started.elapsed().as_secs_f64()),
                "failures": observed.failures, "outputs_expected": expected, "outputs_written": written,
                "peak_worker_rss_bytes": observed.peak_rss_bytes.iter().max(),
            }));
            if written != expected {
                outcome = Err(Stop::fail("output_count_mismatch", format!(
                    "batch {} expected {expected} optimized files and found {written}: a collision or a failed write", batches.len() - 1)));
            }
            if outcome.is_err() {
                break 'groups;
            }
            (concurrency, reason) = batch::next_concurrency(&observed, &budget(ctx), queue.len());
            ctx.core.release_workers(&pool, concurrency).await;
        }
    }
    ctx.core.release_workers(&pool, 0).await;
    outcome?;
    Ok(json!({"max_workers": max_workers, "batches": batches}))
}

/// Asset paths in every layer of the source stage, as Phase 2c's openability counted them
/// (None when it did not): zero lets the restructure and the Phase 4 workers skip
/// re-anchoring what they write.
fn source_asset_paths(ctx: &PhaseCtx<'_>) -> Option<u64> {
    let report = ctx.ws.read_artifact("validation-report").ok()?;
    let validators = report["validators"].as_array()?;
    let counted = &validators.iter().find(|v| v["kind"] == "openability")?["dependencies"];
    ["layers", "assets", "unresolved"].iter().map(|k| counted[*k].as_u64()).sum()
}

/// Executor ids of a run's Phase 4 workers: `ops<run id prefix>-<n>`.
fn worker_pool(record: &RunRecord) -> String {
    format!("ops{}", record.run_id.chars().take(8).collect::<String>())
}

/// The daemon's budget for the next batch: cores, memory available now, the worker cap.
fn budget(ctx: &PhaseCtx<'_>) -> batch::Budget {
    // CPU and memory only: the full host facts also load NVML, which a batch does not need.
    let (cpu_count, ram_available_bytes) = crate::resources::cpu_and_available_memory();
    let configured = ctx.core.config.max_workers;
    batch::Budget { cpu_count, ram_available_bytes, max_workers: if configured == 0 { cpu_count } else { configured } }
}

/// One target through the chain in a worker: (the task's result, its peak memory in KiB, wall seconds).
async fn optimize_target(
    ctx: &PhaseCtx<'_>,
    pool: Option<&str>,
    target: &Value,
    operations: &[Value],
    source_asset_paths: Option<u64>,
) -> Result<(Value, i64, f64), TaskFailure> {
    let started = Instant::now();
    let (_, outcome, usage) = ctx.core.run_task_in(pool, &ctx.record().run_id, ctx.milestone, "operations", json!({
        "stage_path": target["path"], "output_path": target["output_path"], "operations": operations,
        "declass_namespace": target["declass_namespace"],
        "load_payloads": target["load_payloads"].as_bool().unwrap_or(true), "mute_layers": target["mute_layers"],
        "source_stage": ctx.record().stage_path, "source_asset_paths": source_asset_paths,
    })).await;
    ctx.slot.usage.lock().unwrap().add_task(usage);
    Ok((outcome?, usage.peak_rss_kb, started.elapsed().as_secs_f64()))
}

/// A finished target's status: what ran, its timings and its cheap re-verify. An output
/// that composes with new errors is blocked, not optimized.
fn record_target(status: &mut Value, result: &Value, seconds: f64) {
    status["operations"] = result["operations"].clone();
    status["export_seconds"] = result["export_seconds"].clone();
    status["reanchored"] = result["reanchored"].clone();
    if result["point_instancing"].is_object() {
        status["point_instancing"] = result["point_instancing"].clone();
    }
    // The daemon's view of the task (dispatch, executor open, ops, export, re-verify, reply):
    // what the operations benchmark compares with calling usd-optimize directly.
    status["task_seconds"] = json!(round3(seconds));
    status["output_path"] = result["output_path"].clone();
    status["reverify"] = result["reverify"].clone();
    let new_errors = result["reverify"]["new_composition_errors"].as_u64().unwrap_or(0);
    if new_errors > 0 {
        status["disposition"] = json!("blocked");
        status["reason"] = json!(format!(
            "the output composes with {new_errors} new error(s): {}",
            result["reverify"]["composition_errors"]
        ));
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Phase 4d proof strength: lossless ops may weld or re-index, so a lossless chain is held
/// to the aggregate proof; a chain with approved lossy ops is held to the approved band.
fn operations_strength(plan: &Value) -> Strength {
    let ops = plan["operations"].as_array().cloned().unwrap_or_default();
    if ops.iter().all(|o| o["safety"] == "lossless") {
        return Strength::Aggregate;
    }
    Strength::Bounded {
        band: ops.iter().filter_map(|o| o["args"]["maxMeanError"].as_f64()).fold(0.0, f64::max),
        meshes_may_drop: ops.iter().any(|o| o["safety"] == "destructive"),
    }
}

/// The apply-restructure manifest of Phase 5 (mode ref_remap).
fn remap_manifest(record: &RunRecord, remap: &Value, optimized: &serde_json::Map<String, Value>) -> Value {
    let root = remap["new_assembly_root"].clone();
    json!({
        "mode": "ref_remap",
        "input_stage": record.working_stage(),
        "output_dir": Path::new(&record.output_dir).join("optimized"),
        "new_assembly_root": root,
        "assembly_root": {"path": root, "mesh_count": remap["mesh_count"]},
        "outputs": remap["rewritten"].as_array().into_iter().flatten().map(|r| json!({
            "path": r["path"], "kind": r["kind"], "provenance": r["source"],
            "size_bytes": std::fs::metadata(r["path"].as_str().unwrap_or("")).map_or(0, |m| m.len()),
            "validate_usd_minimum": if remap["composition_errors"].as_array().is_some_and(|e| e.is_empty()) { "pass" } else { "fail" },
        })).collect::<Vec<_>>(),
        "phase4_targets": [],
        "rewrite_steps": [{"step": "reference_remap", "result": "ok",
                           "notes": format!("{} optimized children: {}", optimized.len(), optimized.keys().cloned().collect::<Vec<_>>().join(", "))}],
        "warnings": remap["composition_errors"],
    })
}

/// Phase 4d cheap re-verify: the Phase 4 concepts that found something, re-run with the same
/// scope on the output, to show what the operations resolved.
async fn reverify_output(ctx: &PhaseCtx<'_>, output: &str) -> Result<Value, Stop> {
    let inputs = validation_inputs(ctx)?;
    let baseline = ctx.ws.read_artifact("validation-report-targets")?;
    let plan = validation::reverify(&validation::plan(&inputs, Placement::Target), &baseline);
    if plan.jobs.is_empty() {
        return Ok(json!({"concepts": [], "note": "no Phase 4 concept had findings: nothing to re-verify"}));
    }
    let (after, _) = run_validation_plan(
        ctx,
        &plan,
        &inputs.classes,
        output,
        ValidationPhase::After,
        "validation-scope-note-reverify",
        "validation-report-targets-after",
    )
    .await?;
    let concepts: Vec<Value> = plan.jobs.iter().flat_map(|j| j.concepts.iter().map(move |c| (c, &j.target))).map(|(c, target)| json!({
        "concept": c, "target": target,
        "sites_before": validation::site_count(&baseline, c, Some(target)), "sites_after": validation::site_count(&after, c, Some(target)),
    })).collect();
    Ok(json!({"concepts": concepts}))
}

// ------------------------------------------------------------------ Phase 6

async fn profile_after(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let record = ctx.record();
    let stage =
        if record.output_stage_path.is_empty() { record.stage_path.clone() } else { record.output_stage_path.clone() };
    let (mut artifacts, note) = profile(ctx, "profile-after", &stage).await?;
    artifacts.extend(whole_stage_validation(ctx, ValidationPhase::After, &stage).await?.0);
    Ok((artifacts, note))
}

fn compare_profiles(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let before: Profile = ctx.read("profile-baseline")?;
    let after: Profile = ctx.read("profile-after")?;
    // Files written by apply-restructure (prototypes, sub-assets, an override layer) add layers on purpose.
    let layers_on_purpose = !ctx.record().working_stage_path.is_empty();
    let comparison =
        compare::compare(&before, &after, layers_on_purpose).map_err(|e| Stop::fail("profile_mode_mismatch", e))?;
    let value = serde_json::to_value(&comparison).expect("comparison serializes");
    let path = ctx.write("compare-profiles", &value)?;
    Ok((vec![path], format!("{}: {}", comparison.verdict.as_str(), comparison.summary)))
}

fn optimization_report(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let record = ctx.record();
    let built = report::build(&ctx.ws, &record)?;
    let json_path = ctx.write("optimization-report", &built)?;
    let md_path = ctx.ws.write_text("optimization-report.md", &report::markdown(&built))?;
    let verdict = built["verdict"].as_str().unwrap_or_default().to_string();
    let mode = built["workflow_mode"].as_str().unwrap_or_default().to_string();
    let coverage_complete = built["target_coverage"]["complete"] == json!(true);
    ctx.slot.update(|r| {
        r.report_path = json_path.clone();
        r.verdict = verdict.clone();
        r.workflow_mode = mode.clone();
        // A failed preservation proof blocks its target (so_run_operations), so coverage covers it.
        if !coverage_complete {
            r.code = "target_coverage_incomplete".into();
            r.message = "a Phase 4 target was blocked (see the report's target_coverage and preservation)".into();
        }
    });
    Ok((vec![json_path, md_path.display().to_string()], format!("{mode}, verdict {verdict}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_named_targets_get_outputs_of_their_own() {
        let paths = ["/f/a/Body.usd", "/f/b/Body.usd", "/f/Frame.usdc"];
        let outputs = target_output_paths(paths.iter().copied(), Path::new("/out"));
        assert_eq!(outputs[2], PathBuf::from("/out/Frame.optimized.usdc"));
        assert_ne!(outputs[0], outputs[1]);
        let name = outputs[0].file_name().unwrap().to_str().unwrap();
        assert!(name.starts_with("Body.") && name.ends_with(".optimized.usd"), "{name}");
    }
}
