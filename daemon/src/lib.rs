//! usdtune: the daemon (`usdtuned`) and CLI (`usdtune`) of the USD performance-tuning workflow.
//!
//! Map of the crate, lower layers first: a module uses only those above it in this list (a
//! test holds the code to it, so there is no import circle).
//! - [`outcome`]    every stable outcome code, with its exit class and meaning
//! - [`auth`]       who may call: a bearer token per role (client, executor), checked per RPC
//! - [`store`]      the run workspace: schema-validated, atomic artifact writes, typed reads
//! - [`executors`]  the executor hub: connections, task leases, heartbeats, loss detection
//! - [`resources`]  host facts: CPU, RAM, GPU through NVML
//! - [`decisions`]  plain functions over facts: assessment, validation plan, restructure,
//!   op chain, targets, preservation, compare, score, report conclusions
//! - [`artifacts`]  the typed artifacts phases hand each other
//! - [`record`]     the run's data model: run record, phases, gates, answers, events
//! - [`rundb`]      durable state: runs, tasks and leases in SQLite (WAL) in the data dir
//! - [`report`]     the optimization report: a type built from a workspace, rendered
//! - [`workflow`]   the phase table, its driver and one handler file per phase group
//! - [`setup`]      the executor's Python 3.12 environment
//! - [`core`]       the daemon core: runs, executor processes, events (the workflow's host)
//! - [`service`]    the gRPC services and server
//! - [`dashboard`]  the web dashboard: a page over the runs, executors and budget
//! - [`cli`]        the `usdtune` command line (also `usdtuned`)

pub mod artifacts;
pub mod auth;
pub mod cli;
pub mod core;
pub mod dashboard;
pub mod decisions;
pub mod executors;
pub mod outcome;
pub mod record;
pub mod report;
pub mod resources;
pub mod rundb;
pub mod service;
pub mod setup;
pub mod store;
pub mod workflow;

/// Generated from proto/usdtune/v1/usdtune.proto.
pub mod proto {
    tonic::include_proto!("usdtune.v1");
}

/// Default address of a long-running `usdtuned`.
pub const DEFAULT_DAEMON_ADDRESS: &str = "127.0.0.1:50777";

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// The crate's modules, lower layers first: a module may use only the ones before it.
    const LAYERS: &[&str] = &[
        "outcome",
        "proto",
        "auth",
        "store",
        "executors",
        "resources",
        "decisions",
        "artifacts",
        "record",
        "rundb",
        "report",
        "workflow",
        "setup",
        "core",
        "service",
        "dashboard",
        "cli",
    ];

    /// `crate::<module>` paths named in a module's files (its `mod.rs` and submodules).
    fn uses(module: &str) -> Vec<String> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.join(format!("{module}.rs")), src.join(module)];
        let mut found = Vec::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                // Code only: a doc comment may point anywhere.
                for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                    for (at, _) in line.match_indices("crate::") {
                        let name: String =
                            line[at + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                        found.push(name);
                    }
                }
            }
        }
        found
    }

    #[test]
    fn modules_use_only_lower_layers_so_there_is_no_import_circle() {
        for (rank, module) in LAYERS.iter().enumerate() {
            // Items of the crate root itself (DEFAULT_DAEMON_ADDRESS) are not modules.
            for used in uses(module).into_iter().filter(|u| !u.starts_with(|c: char| c.is_ascii_uppercase())) {
                let Some(used_rank) = LAYERS.iter().position(|m| *m == used) else {
                    panic!("{module} uses crate::{used}, which is not in LAYERS")
                };
                assert!(
                    used_rank <= rank,
                    "{module} uses crate::{used}, a higher layer: an import circle in the making"
                );
            }
        }
    }
}
