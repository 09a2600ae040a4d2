//! The workflow: one stage through the phases of [`table::PHASES`]. The daemon's core starts
//! a run in a [`RunSlot`] and hands it to [`drive`]; phase handlers (`phases/`) do their
//! work through executor tasks ([`Host`]) and decision functions (`crate::decisions`), and
//! pass each other typed artifacts through the run workspace.
//!
//! Adding a phase: a row in `table.rs` (label, seed phase, skip rules, gate, artifacts, the
//! handler), a handler `async fn(&PhaseCtx) -> PhaseResult` in the `phases/` file of its
//! group, and its decision function in `decisions/`. A new gate is a [`GateKind`] variant
//! (crate::record) and the row that raises it.
//!
//! [`GateKind`]: crate::record::GateKind

pub mod ctx;
pub mod driver;
pub mod host;
mod phases;
pub mod slot;
pub mod table;

use std::sync::Arc;

pub use ctx::{PhaseCtx, PhaseDone, PhaseResult, Stop};
pub use host::{Host, TaskReply, TaskRequest};
pub use slot::RunSlot;

use crate::record::RunRecord;

/// Run a run's phases (the whole table) to its end.
pub async fn drive(slot: Arc<RunSlot>) {
    driver::drive(slot, table::PHASES).await
}

/// Executor ids of a run's Phase 4 workers: `ops<run id prefix>-<n>`.
pub fn worker_pool(record: &RunRecord) -> String {
    format!("ops{}", record.run_id.chars().take(8).collect::<String>())
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
