//! What the workflow needs from the daemon that runs it, and nothing more: run an executor
//! task, keep Phase 4 workers, persist and announce a run. The daemon's core implements it
//! over its executor hub and event channel; tests implement it with canned replies.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use crate::executors::{TaskFailure, TaskUsage};
use crate::record::{EventKind, RunRecord};

/// One executor task of a run's phase.
pub struct TaskRequest<'a> {
    pub run_id: &'a str,
    /// The submitted run the attempt is recorded under (a child run's parent).
    pub owner_run_id: &'a str,
    /// The phase label, for progress events.
    pub milestone: &'a str,
    /// Run it on this worker pool's executors only (Phase 4 targets), else on any.
    pub pool: Option<&'a str>,
    /// The runtime whose executors may take it (kit | standalone) when the run asked for one;
    /// any executor otherwise. Pool workers are standalone.
    pub runtime: Option<&'a str>,
    pub kind: &'a str,
    pub params: Value,
    /// Past this the task is abandoned and its executor process ended (`task_deadline_exceeded`).
    pub deadline: Duration,
    /// Set when the run is cancelled: the task is abandoned at once, not awaited.
    pub cancel: Arc<AtomicBool>,
}

/// What a task came to: the executor that ran it, its result, and what it cost.
pub struct TaskReply {
    pub executor_id: String,
    pub outcome: Result<Value, TaskFailure>,
    pub usage: TaskUsage,
}

pub trait Host: Send + Sync {
    /// Run one executor task, forwarding its progress as run events.
    fn run_task<'a>(&'a self, task: TaskRequest<'a>) -> BoxFuture<'a, TaskReply>;

    /// Make sure `count` workers of `pool` are running (ids `<pool>-1` … `<pool>-<count>`).
    /// False when this daemon starts no processes of its own (it serves external executors).
    fn ensure_workers(&self, pool: &str, count: usize) -> Result<bool, TaskFailure>;

    /// Stop `pool`'s workers beyond the first `keep` (all of them with 0).
    fn release_workers<'a>(&'a self, pool: &'a str, keep: usize) -> BoxFuture<'a, ()>;

    /// Stop a pool's workers at once: the run ended.
    fn drop_workers(&self, pool: &str);

    /// Persist the run (`run.json`) and tell watchers what happened.
    fn persist_and_announce(&self, record: &RunRecord, kind: EventKind, milestone: &str, message: &str);

    /// Most Phase 4 workers one run may use at once (0: one per CPU core).
    fn max_workers(&self) -> usize;

    /// The pids of the connected executors (each leads its process group): whose GPU memory
    /// a task's [`crate::resources::GpuWatch`] counts as the executors'.
    fn executor_pids(&self) -> Vec<u32> {
        Vec::new()
    }

    /// Every task deadline is multiplied by this (`USDTUNE_TASK_DEADLINE_SCALE`, default 1).
    fn task_deadline_scale(&self) -> f64 {
        1.0
    }

    /// Tell watchers how far a phase of a run is.
    fn announce_progress(&self, run_id: &str, milestone: &str, fraction: f64, message: &str);

    /// Tell watchers something they should know that does not stop the run.
    fn announce_warning(&self, _run_id: &str, _milestone: &str, _message: &str) {}
}
