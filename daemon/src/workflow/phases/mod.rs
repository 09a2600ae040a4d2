//! Phase handlers, one file per group of the seed's workflow. Each handler is an
//! `async fn(&PhaseCtx) -> PhaseResult` named in the phase table (`table.rs`).

pub mod assess;
pub mod batches;
pub mod iterate;
pub mod operations;
pub mod profile;
pub mod report;
pub mod restructure;
pub mod setup;
pub mod trials;
pub mod validate;
pub mod verify;
