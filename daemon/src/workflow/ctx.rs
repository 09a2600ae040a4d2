//! What a phase handler works with: its run (through the slot), the run workspace with typed
//! reads and writes, and executor tasks; and how it ends ([`PhaseDone`] or a [`Stop`]).

use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::host::TaskRequest;
use super::slot::RunSlot;
use crate::artifacts::assessment::Assessment;
use crate::decisions::costs::{task_deadline, StageSize};
use crate::executors::{TaskFailure, TaskUsage};
use crate::outcome::Outcome;
use crate::record::{GateRecord, RunRecord};
use crate::resources::{GpuMemory, GpuWatch};
use crate::store::{StoreError, Workspace};

/// A phase that completed: the artifacts it wrote and a one-line note.
#[derive(Debug)]
pub struct PhaseDone {
    pub artifacts: Vec<String>,
    pub note: String,
}

impl PhaseDone {
    pub fn new(artifacts: Vec<String>, note: impl Into<String>) -> Self {
        Self { artifacts, note: note.into() }
    }
}

/// Why a phase did not complete.
#[derive(Debug)]
pub enum Stop {
    Fail {
        code: String,
        message: String,
    },
    Block {
        code: String,
        message: String,
    },
    /// The phase raised its gate: the run waits for an answer, then runs the phase again.
    AwaitDecision(Box<GateRecord>),
}

impl Stop {
    pub fn fail(outcome: Outcome, message: impl Into<String>) -> Self {
        Self::Fail { code: outcome.code().to_string(), message: message.into() }
    }

    pub fn block(outcome: Outcome, message: impl Into<String>) -> Self {
        Self::Block { code: outcome.code().to_string(), message: message.into() }
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

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::fail(Outcome::ArtifactSchemaViolation, e.to_string())
    }
}

pub type PhaseResult = Result<PhaseDone, Stop>;

pub struct PhaseCtx<'a> {
    pub slot: &'a RunSlot,
    pub ws: Workspace,
    /// The phase's label.
    pub milestone: &'static str,
}

impl<'a> PhaseCtx<'a> {
    pub fn new(slot: &'a RunSlot, milestone: &'static str) -> Self {
        Self { slot, ws: slot.snapshot().workspace(), milestone }
    }

    pub fn record(&self) -> RunRecord {
        self.slot.snapshot()
    }

    /// Change the run record in memory (the driver persists it when the phase ends).
    pub fn update(&self, f: impl FnOnce(&mut RunRecord)) {
        self.slot.update(f);
    }

    pub fn is_cancelled(&self) -> bool {
        self.slot.is_cancelled()
    }

    /// Tell watchers how far the phase is (a fraction of it and what it is doing).
    pub fn progress(&self, fraction: f64, message: &str) {
        self.slot.host().announce_progress(&self.record().run_id, self.milestone, fraction, message);
    }

    /// Tell watchers something they should know that does not stop the run (one line each:
    /// a held-back op, a blocked target, an output set aside).
    pub fn warn(&self, message: &str) {
        tracing::info!(milestone = self.milestone, "warning: {message}");
        self.slot.host().announce_warning(&self.record().run_id, self.milestone, message);
    }

    /// A task on any capable executor; its result as JSON.
    pub async fn task(&self, kind: &str, params: Value) -> Result<Value, Stop> {
        let (outcome, _) = self.task_in(None, kind, params).await;
        Ok(outcome?)
    }

    /// A task with the GPU's memory sampled while it runs (profile captures): the result and
    /// what the watch saw, or why it saw nothing.
    pub async fn task_watching_gpu(&self, kind: &str, params: Value) -> Result<(Value, GpuMemory), Stop> {
        let watch = GpuWatch::start(self.slot.host().executor_pids());
        let outcome = self.task(kind, params).await;
        let memory = watch.finish();
        Ok((outcome?, memory))
    }

    /// A task whose result is read into its type: a result without a field the type needs is
    /// an `executor_protocol_error`, never a default.
    pub async fn task_as<T: DeserializeOwned>(&self, kind: &str, params: Value) -> Result<T, Stop> {
        let value = self.task(kind, params).await?;
        parse_result(kind, value).map_err(Stop::from)
    }

    /// A task on `pool`'s workers (or any executor), with what it cost; its cost is added to
    /// the phase's usage.
    pub async fn task_in(
        &self,
        pool: Option<&str>,
        kind: &str,
        params: Value,
    ) -> (Result<Value, TaskFailure>, TaskUsage) {
        let record = self.record();
        let started = Instant::now();
        let host = self.slot.host();
        let deadline = task_deadline(kind, stage_size(&self.ws, &record.stage_path), host.task_deadline_scale());
        let request = TaskRequest {
            run_id: &record.run_id,
            owner_run_id: record.owner_run_id(),
            milestone: self.milestone,
            pool,
            runtime: record.route.runtime.as_deref(),
            kind,
            params,
            deadline,
            cancel: self.slot.cancel_flag(),
        };
        let reply = host.run_task(request).await;
        self.slot.usage.lock().unwrap().add_task(reply.usage);
        tracing::debug!(executor = %reply.executor_id, kind, seconds = started.elapsed().as_secs_f64(), "task done");
        (reply.outcome, reply.usage)
    }

    /// Validate and write an artifact; returns its path.
    pub fn write<T: Serialize>(&self, name: &str, value: &T) -> Result<String, Stop> {
        let value = serde_json::to_value(value)
            .map_err(|e| Stop::fail(Outcome::ArtifactSchemaViolation, format!("{name}: {e}")))?;
        Ok(self.ws.write_artifact(name, &value)?.display().to_string())
    }

    /// Read an artifact back into its type (a missing field is an error, not a zero).
    pub fn read<T: DeserializeOwned>(&self, name: &str) -> Result<T, Stop> {
        Ok(self.ws.read(name)?)
    }

    pub fn read_opt<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Stop> {
        Ok(self.ws.read_opt(name)?)
    }

    pub fn assessment(&self) -> Result<Assessment, Stop> {
        Assessment::from_value(self.ws.read_artifact("structure-assessment")?)
            .map_err(|e| Stop::fail(Outcome::ArtifactSchemaViolation, format!("structure-assessment: {e}")))
    }

    /// Where a run writes its outputs: `<workspace>/<folder>`.
    pub fn output_dir(&self, folder: &str) -> std::path::PathBuf {
        self.ws.root().join(folder)
    }
}

/// The stage's size for expected costs and task deadlines: the baseline profile's prim count
/// once there is one, the root layer's bytes before.
pub fn stage_size(ws: &Workspace, stage_path: &str) -> StageSize {
    let counted = ws.read_opt::<Value>("profile-baseline").ok().flatten();
    match counted.and_then(|p| p["prim_count_with_instance_proxies"].as_u64()) {
        Some(prims) => StageSize::Prims(prims),
        None => StageSize::Bytes(std::fs::metadata(stage_path).map_or(0, |m| m.len())),
    }
}

/// An executor result read into its type.
pub fn parse_result<T: DeserializeOwned>(kind: &str, value: Value) -> Result<T, TaskFailure> {
    serde_json::from_value(value).map_err(|e| {
        TaskFailure::new(
            Outcome::ExecutorProtocolError,
            format!("the '{kind}' task's result is not what the daemon expects: {e}"),
        )
    })
}
