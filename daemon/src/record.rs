//! The run's data model: what `run.json` holds (schemas/run.schema.json) and what the
//! daemon, the workflow and the report read. No behaviour beyond small accessors: the
//! workflow ([`crate::workflow`]) changes a record, the core persists and announces it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub use crate::decisions::compare::Verdict;
pub use crate::decisions::report::WorkflowMode;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhaseStatus {
    Pending,
    Running,
    Done,
    Skipped,
    Failed,
}

impl PhaseStatus {
    /// Done or skipped: the driver goes on after it.
    pub fn is_settled(self) -> bool {
        matches!(self, Self::Done | Self::Skipped)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
        }
    }
}

/// The kinds of gate a run can pause at. Each is a row's `gate` in the phase table
/// ([`crate::workflow::table`]) plus the decision function its phase calls; this enum says
/// how the gate is named, which code a paused run carries, and what an answer changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GateKind {
    /// Phase 2e: which restructure branch (decisions::restructure::gate_plan).
    Restructure,
}

impl GateKind {
    pub const ALL: &'static [GateKind] = &[GateKind::Restructure];

    /// The gate's id, as clients name it (`AnswerGate.gate_id`, `run.json` `gate.id`).
    pub fn id(self) -> &'static str {
        match self {
            Self::Restructure => "restructure-decision",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.id() == id)
    }

    /// The code a run paused at this gate carries.
    pub fn awaiting(self) -> crate::outcome::Outcome {
        match self {
            Self::Restructure => crate::outcome::Outcome::AwaitingRestructureDecision,
        }
    }

    /// The code of an answer that is not one of the gate's choices.
    pub fn invalid_answer(self) -> crate::outcome::Outcome {
        match self {
            Self::Restructure => crate::outcome::Outcome::InvalidRestructureBranch,
        }
    }

    /// Whether `choice` is a word this gate understands at all (offered or not).
    pub fn knows(self, choice: &str) -> bool {
        match self {
            Self::Restructure => crate::decisions::restructure::Branch::parse(choice).is_some(),
        }
    }

    /// Record an answer in the route the phases read.
    pub fn apply(self, route: &mut RouteFacts, answer: &Answer) {
        match self {
            Self::Restructure => {
                route.restructure_branch = Some(answer.choice.clone());
                route.decision_source = Some(answer.answered_by.to_string());
            }
        }
    }
}

/// An open gate: the question, the offered choices and the evidence behind them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GateRecord {
    pub id: String,
    pub question: String,
    pub branches: Vec<String>,
    pub recommended: Option<String>,
    pub evidence: Value,
}

impl GateRecord {
    pub fn kind(&self) -> Option<GateKind> {
        GateKind::from_id(&self.id)
    }
}

/// What a client said at a gate.
#[derive(Clone, Debug)]
pub struct Answer {
    pub gate: GateKind,
    pub choice: String,
    /// flag | prompt | api
    pub answered_by: &'static str,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseRecord {
    pub milestone: String,
    pub status: PhaseStatus,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub seconds: f64,
    /// What the phase was expected to take when it started (decisions::costs), for the live
    /// view's ETA; 0 for phases that run no executor task.
    #[serde(default)]
    pub expected_seconds: f64,
    #[serde(default)]
    pub artifacts: Vec<String>,
    /// What the phase cost; absent for phases that did not run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<PhaseUsage>,
}

impl PhaseRecord {
    pub fn pending(label: &str) -> Self {
        Self {
            milestone: label.into(),
            status: PhaseStatus::Pending,
            note: String::new(),
            seconds: 0.0,
            expected_seconds: 0.0,
            artifacts: vec![],
            usage: None,
        }
    }
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

/// The run facts that skip rules and later phases read. Filled in as phases complete.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RouteFacts {
    /// From the Phase 0 probe; `None` until known.
    pub so_available: Option<bool>,
    /// `phase_recommendation` of the structure assessment.
    pub phase_recommendation: Option<String>,
    /// The answered restructure branch (see [`crate::decisions::restructure::Branch`]).
    pub restructure_branch: Option<String>,
    /// Who answered the gate up front or at the prompt: flag | prompt | api.
    #[serde(default)]
    pub decision_source: Option<String>,
    /// The run ends after the structure assessment (`usdtune assess`).
    #[serde(default)]
    pub assess_only: bool,
    /// The user approved full-stage validation up front (`--approve-full-validation`).
    #[serde(default)]
    pub full_validation_approved: bool,
    /// A named pipeline asked for instead of the evidence chain (`--pipeline`).
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Approvals of gated operations (`--approve`): op keys or safety classes.
    #[serde(default)]
    pub approvals: Vec<String>,
    /// What the restructure gate's recommendation optimizes for (`--goal`; balanced when unset).
    #[serde(default)]
    pub goal: Option<String>,
    /// The run's time budget in seconds (`--budget`; decisions::costs::run_budget when unset).
    #[serde(default)]
    pub budget_seconds: Option<f64>,
    /// Passes the run may take (`--passes`; 0 = decisions::iterate::DEFAULT_PASSES).
    #[serde(default)]
    pub passes: u32,
    /// Which pass this run is (0 or 1: the first; a later pass is a child run in
    /// `passes/<n>/`, decisions::iterate), and the instancing form it was started to try.
    #[serde(default)]
    pub pass: u32,
    #[serde(default)]
    pub instancing_form: Option<crate::decisions::op_chain::InstancingForm>,
    /// A trial of one route for a parent run's gate: it ends after Phase 4 (no after-profile,
    /// no report; the parent profiles every trial in one sitting).
    #[serde(default)]
    pub trial: bool,
    /// The executor runtime every task of the run goes to (kit | standalone; unset: nobody
    /// chose, any executor), and who chose it: flag | prompt (Phase 0's runtime gate).
    #[serde(default)]
    pub runtime: Option<String>,
    #[serde(default)]
    pub runtime_chosen_by: Option<String>,
}

/// What a client asks for when it submits a run (the gRPC request, without the wire types).
#[derive(Clone, Debug, Default)]
pub struct Submission {
    pub stage_path: String,
    pub output_dir: String,
    pub restructure_branch: Option<String>,
    pub requested_operations: Vec<String>,
    pub assess_only: bool,
    pub approve_full_validation: bool,
    pub pipeline: Option<String>,
    pub approvals: Vec<String>,
    pub goal: Option<String>,
    pub budget_seconds: Option<f64>,
    pub passes: u32,
    /// The executor runtime (`--runtime`: kit | standalone) and who chose it.
    pub runtime: Option<String>,
    pub runtime_chosen_by: Option<String>,
    /// Write into a workspace that holds other files, or another stage's run (`--force`).
    pub force: bool,
    /// Higher runs first when the daemon queues runs (`--max-runs`); then first come.
    pub priority: i32,
}

/// A new run's id: `run-` and 12 hex digits.
pub fn new_run_id() -> String {
    format!("run-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// The persisted state of a run (`run.json` in its workspace; schemas/run.schema.json).
/// Runtime error lines a run record keeps (the rest stay in the executor's log only).
pub const MAX_RUNTIME_ERRORS: usize = 20;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    /// The submitted run a child run (a route trial, a later pass) belongs to: its task
    /// attempts are recorded under that run. Empty for a submitted run.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent_run_id: String,
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
    /// Empty until the report is written.
    #[serde(default, with = "empty_is_none")]
    pub verdict: Option<Verdict>,
    #[serde(default, with = "empty_is_none")]
    pub workflow_mode: Option<WorkflowMode>,
    #[serde(default)]
    pub requested_operations: Vec<String>,
    /// `[Error]` lines the Kit runtime logged while it ran this run's tasks (the first
    /// [`MAX_RUNTIME_ERRORS`]); each was also said as a warning when it appeared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_errors: Vec<String>,
    /// Its place in the daemon's queue (higher first).
    #[serde(default)]
    pub priority: i32,
    /// When the daemon let it start (empty while it waits in the queue).
    #[serde(default)]
    pub started_at: String,
    pub route: RouteFacts,
    pub created_at: String,
    /// One record per phase of the table, found by label (a saved run keeps them by name,
    /// so a table that gains a phase still reads it).
    pub phases: Vec<PhaseRecord>,
}

impl RunRecord {
    /// The submitted run this one is or belongs to.
    pub fn owner_run_id(&self) -> &str {
        if self.parent_run_id.is_empty() {
            &self.run_id
        } else {
            &self.parent_run_id
        }
    }

    pub fn new(
        run_id: String,
        stage_path: String,
        output_dir: String,
        labels: &[&str],
        submission: &Submission,
    ) -> Self {
        Self {
            run_id,
            parent_run_id: String::new(),
            stage_path,
            output_dir,
            state: RunState::Queued,
            milestone: labels.first().copied().unwrap_or_default().to_string(),
            code: String::new(),
            message: String::new(),
            gate: None,
            report_path: String::new(),
            output_stage_path: String::new(),
            working_stage_path: String::new(),
            verdict: None,
            workflow_mode: None,
            requested_operations: submission.requested_operations.clone(),
            runtime_errors: Vec::new(),
            priority: submission.priority,
            started_at: String::new(),
            route: RouteFacts {
                restructure_branch: submission.restructure_branch.clone(),
                assess_only: submission.assess_only,
                full_validation_approved: submission.approve_full_validation,
                pipeline: submission.pipeline.clone(),
                approvals: submission.approvals.clone(),
                goal: submission.goal.clone(),
                budget_seconds: submission.budget_seconds,
                passes: submission.passes,
                runtime: submission.runtime.clone(),
                runtime_chosen_by: submission.runtime_chosen_by.clone(),
                ..Default::default()
            },
            created_at: now_rfc3339(),
            phases: labels.iter().map(|label| PhaseRecord::pending(label)).collect(),
        }
    }

    pub fn workspace(&self) -> Workspace {
        Workspace::new(&self.output_dir)
    }

    /// The stage Phase 4 optimizes: the restructure's output, else the source.
    pub fn working_stage(&self) -> &str {
        if self.working_stage_path.is_empty() {
            &self.stage_path
        } else {
            &self.working_stage_path
        }
    }

    /// The optimized stage, None when the run wrote none.
    pub fn output_stage(&self) -> Option<&str> {
        Some(self.output_stage_path.as_str()).filter(|p| !p.is_empty())
    }

    pub fn phase(&self, label: &str) -> Option<&PhaseRecord> {
        self.phases.iter().find(|p| p.milestone == label)
    }

    /// The phase's record, added (pending) when a saved run predates the phase.
    pub fn phase_mut(&mut self, label: &str) -> &mut PhaseRecord {
        let at = match self.phases.iter().position(|p| p.milestone == label) {
            Some(at) => at,
            None => {
                self.phases.push(PhaseRecord::pending(label));
                self.phases.len() - 1
            }
        };
        &mut self.phases[at]
    }

    pub fn restructured(&self) -> bool {
        !self.working_stage_path.is_empty()
    }
}

pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// `""` in `run.json` for a value not decided yet (the schema's string fields), `None` here.
mod empty_is_none {
    use super::*;

    pub fn serialize<T: Serialize, S: Serializer>(value: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => v.serialize(s),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
        let value = Value::deserialize(d)?;
        match value {
            Value::String(s) if s.is_empty() => Ok(None),
            Value::Null => Ok(None),
            other => T::deserialize(other).map(Some).map_err(serde::de::Error::custom),
        }
    }
}

/// What happened to a run, for watchers (the gRPC `RunEvent`, without the wire types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Snapshot,
    PhaseStarted,
    PhaseFinished,
    Gate,
    Progress,
    /// Something the user should know and the run goes on with (a held-back op, a blocked target).
    Warning,
    Finished,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::PhaseStarted => "phase_started",
            Self::PhaseFinished => "phase_finished",
            Self::Gate => "gate",
            Self::Progress => "progress",
            Self::Warning => "warning",
            Self::Finished => "finished",
        }
    }
}

#[derive(Clone, Debug)]
pub struct RunEvent {
    pub run_id: String,
    pub kind: EventKind,
    pub milestone: String,
    pub message: String,
    /// Progress fraction of the task in flight, -1 when the event is not progress.
    pub fraction: f64,
    pub run: Option<RunRecord>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecided_verdicts_persist_as_empty_strings_and_read_back() {
        let submission = Submission { stage_path: "/s.usda".into(), ..Default::default() };
        let mut record = RunRecord::new("r".into(), "/s.usda".into(), "/o".into(), &["a", "b"], &submission);
        let value = serde_json::to_value(&record).unwrap();
        assert_eq!((value["verdict"].as_str(), value["workflow_mode"].as_str()), (Some(""), Some("")));
        assert_eq!(value["phases"][1]["status"], "pending");
        record.verdict = Some(Verdict::Mixed);
        record.workflow_mode = Some(WorkflowMode::StructuralOnly);
        let back: RunRecord = serde_json::from_value(serde_json::to_value(&record).unwrap()).unwrap();
        assert_eq!((back.verdict, back.workflow_mode), (Some(Verdict::Mixed), Some(WorkflowMode::StructuralOnly)));
    }

    #[test]
    fn phases_are_found_by_label_and_a_missing_one_is_added() {
        let mut record = RunRecord::new("r".into(), "/s".into(), "/o".into(), &["a", "b"], &Submission::default());
        record.phase_mut("b").status = PhaseStatus::Done;
        assert_eq!(record.phase("b").unwrap().status, PhaseStatus::Done);
        record.phase_mut("c").status = PhaseStatus::Running;
        assert_eq!(record.phases.len(), 3);
    }

    #[test]
    fn a_gate_answer_lands_in_the_route() {
        let mut route = RouteFacts::default();
        let answer = Answer { gate: GateKind::Restructure, choice: "exit".into(), answered_by: "api" };
        GateKind::Restructure.apply(&mut route, &answer);
        assert_eq!(
            (route.restructure_branch.as_deref(), route.decision_source.as_deref()),
            (Some("exit"), Some("api"))
        );
        assert_eq!(GateKind::from_id("restructure-decision"), Some(GateKind::Restructure));
        assert!(GateKind::Restructure.knows("optimize-as-is") && !GateKind::Restructure.knows("make-it-fast"));
    }
}
