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

use std::path::Path;

use crate::outcome::Outcome;
use crate::record::{new_run_id, RouteFacts, RunRecord, Submission};
use crate::workflow::{PhaseCtx, Stop};

/// A child run of `parent` in `dir` (route trials, Phase 7's later passes): the parent's phases
/// before `from` settled in it, the `artifacts` they wrote copied in, the parent's restructured
/// stage shared, and the parent's route as `adjust` changes it.
pub(crate) fn child_run(
    ctx: &PhaseCtx<'_>,
    parent: &RunRecord,
    dir: &Path,
    from: &str,
    artifacts: &[&str],
    adjust: impl FnOnce(&mut RouteFacts),
) -> Result<RunRecord, Stop> {
    let unwritable =
        |path: &Path, e: std::io::Error| Stop::fail(Outcome::OutputDirUnwritable, format!("{}: {e}", path.display()));
    std::fs::create_dir_all(dir).map_err(|e| unwritable(dir, e))?;
    let submission = Submission {
        stage_path: parent.stage_path.clone(),
        output_dir: dir.display().to_string(),
        requested_operations: parent.requested_operations.clone(),
        ..Default::default()
    };
    let labels: Vec<&str> = parent.phases.iter().map(|p| p.milestone.as_str()).collect();
    let mut child =
        RunRecord::new(new_run_id(), parent.stage_path.clone(), submission.output_dir.clone(), &labels, &submission);
    child.parent_run_id = parent.owner_run_id().to_string();
    child.route = parent.route.clone();
    adjust(&mut child.route);
    child.working_stage_path = parent.working_stage_path.clone();
    for phase in parent.phases.iter().take_while(|p| p.milestone != from) {
        *child.phase_mut(&phase.milestone) = phase.clone();
    }
    let target = child.workspace();
    for name in artifacts.iter().filter(|name| ctx.ws.has_artifact(name)) {
        let to = target.path_of(name);
        std::fs::copy(ctx.ws.path_of(name), &to).map_err(|e| unwritable(&to, e))?;
    }
    Ok(child)
}
