//! usdtune: the daemon (`usdtuned`) and CLI (`usdtune`) of the USD performance-tuning workflow.
//!
//! Map of the crate (one module per concern):
//! - [`phases`]     the workflow as data: milestones, skip rules, gates, termination codes
//! - [`run`]        the run driver: walks the phases, persists state, pauses at gates
//! - [`decisions`]  plain functions over facts: assessment, restructure branches, op chain, compare, score
//! - [`executors`]  the executor hub: connections, task leases, heartbeats, loss detection
//! - [`store`]      the run workspace: schema-validated, atomic artifact writes
//! - [`report`]     optimization-report JSON and its Markdown rendering
//! - [`service`]    the gRPC services (RunService, ExecutorService)
//! - [`setup`]      the executor's Python 3.12 environment
//! - [`resources`]  host facts: CPU, RAM, GPU through NVML
//! - [`cli`]        the `usdtune` command line (also `usdtuned`)
//! - [`daemon`]     wiring: a daemon in its own process or embedded in the CLI

pub mod cli;
pub mod daemon;
pub mod decisions;
pub mod executors;
pub mod phases;
pub mod report;
pub mod resources;
pub mod run;
pub mod service;
pub mod setup;
pub mod store;

/// Generated from proto/usdtune/v1/usdtune.proto.
pub mod proto {
    tonic::include_proto!("usdtune.v1");
}

/// Default address of a long-running `usdtuned`.
pub const DEFAULT_DAEMON_ADDRESS: &str = "127.0.0.1:50777";
