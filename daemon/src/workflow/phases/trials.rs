//! Phase 2e's measured recommendation (decisions::routes): each branch the restructure gate
//! offers is run as a whole route in `OUTDIR/trials/<branch>/` (a child run that starts from
//! this run's assessment and validation, and ends after Phase 4), then every trial's output
//! is profiled paired with the source, one after the other in one sitting. The source is
//! never written; the trials' folders stay, so the table can be checked.

use std::time::Instant;

use serde_json::json;

use crate::artifacts::assessment::Candidates;
use crate::artifacts::profile::PairResult;
use crate::decisions::assessment::Facts;
use crate::decisions::compare;
use crate::decisions::restructure::Branch;
use crate::decisions::routes::{self, Goal, RouteTrial, RouteTrials};
use crate::outcome::Outcome;
use crate::record::{PhaseStatus, RunRecord, RunState};
use crate::workflow::{PhaseCtx, Stop};

/// The artifacts a trial starts from: everything the phases before the gate wrote.
const SEEDED: [&str; 8] = [
    "setup-preflight",
    "profile-baseline",
    "stage-facts",
    "dedupe-candidates",
    "geometry-classes",
    "structure-assessment",
    "validation-scope-note",
    "validation-report",
];

/// Try (or, above the trial budget, estimate) every offered route; writes route-trials.json.
pub async fn run(ctx: &PhaseCtx<'_>, offered: &[Branch]) -> Result<RouteTrials, Stop> {
    let record = ctx.record();
    let goal = record.route.goal.as_deref().and_then(Goal::parse).unwrap_or(Goal::Balanced);
    let branches: Vec<&str> =
        offered.iter().filter(|b| !matches!(b, Branch::Exit | Branch::Continue)).map(|b| b.as_str()).collect();
    let facts: Facts = ctx.read("stage-facts")?;
    let prims = facts.counts.prim_count_with_instance_proxies;
    let exit_offered = offered.contains(&Branch::Exit);
    let table = if prims > routes::TRIAL_MAX_PRIMS {
        let savings = ctx.read::<Candidates>("dedupe-candidates")?.total_prim_savings;
        routes::recommend(goal, "estimated", routes::estimate(&branches, prims, savings), exit_offered)
    } else {
        let mut tried = Vec::new();
        for (n, branch) in branches.iter().enumerate() {
            if ctx.is_cancelled() {
                return Err(Stop::fail(Outcome::Cancelled, "cancelled during the route trials"));
            }
            ctx.progress(
                n as f64 / branches.len() as f64,
                &format!("trying route {branch} ({}/{})", n + 1, branches.len()),
            );
            tried.push(try_route(ctx, &record, branch).await?);
        }
        ctx.progress(1.0, "profiling every route's output paired with the source");
        let mut trials = Vec::new();
        for (branch, done, seconds) in tried {
            trials.push(measure(ctx, &record, branch, &done, seconds).await?);
        }
        routes::recommend(goal, "measured", trials, exit_offered)
    };
    ctx.write("route-trials", &table)?;
    Ok(table)
}

/// One route, run as a child of this run to the end of Phase 4.
async fn try_route<'b>(
    ctx: &PhaseCtx<'_>,
    parent: &RunRecord,
    branch: &'b str,
) -> Result<(&'b str, RunRecord, f64), Stop> {
    let child = trial_record(ctx, parent, branch)?;
    let slot = ctx.slot.child(child);
    let started = Instant::now();
    crate::workflow::drive(slot.clone()).await;
    Ok((branch, slot.snapshot(), (started.elapsed().as_secs_f64() * 10.0).round() / 10.0))
}

/// A child run in `trials/<branch>/`, its phases up to the gate settled from the parent's
/// (their artifacts copied), the branch answered, marked as a trial.
fn trial_record(ctx: &PhaseCtx<'_>, parent: &RunRecord, branch: &str) -> Result<RunRecord, Stop> {
    let dir = ctx.output_dir("trials").join(branch);
    super::child_run(ctx, parent, &dir, ctx.milestone, &SEEDED, |route| {
        route.restructure_branch = Some(branch.into());
        route.decision_source = Some("trial".into());
        route.trial = true;
    })
}

/// A finished trial's row: its output profiled paired with the source, or why it has none.
async fn measure(
    ctx: &PhaseCtx<'_>,
    parent: &RunRecord,
    branch: &str,
    done: &RunRecord,
    seconds: f64,
) -> Result<RouteTrial, Stop> {
    let failed = done.state != RunState::Completed || !done.code.is_empty();
    if failed {
        let outcome = if done.state == RunState::Completed { "blocked" } else { "failed" };
        return Ok(RouteTrial::not_completed(branch, outcome, &done.code, seconds, &done.message));
    }
    // A restructure whose chain changed nothing has the restructured stage as its output.
    let phase4_ran = done.phase("so-run-operations").is_some_and(|p| p.status == PhaseStatus::Done);
    let output = done.output_stage().map(String::from).or_else(|| {
        (done.restructured() && !phase4_ran).then(|| done.working_stage_path.clone()).filter(|p| !p.is_empty())
    });
    let Some(output) = output else {
        return Ok(RouteTrial {
            notes: "the route changed nothing".into(),
            ..RouteTrial::completed(branch, seconds, None, None)
        });
    };
    let params = json!({"baseline": parent.stage_path, "output": output, "rounds": routes::TRIAL_ROUNDS});
    let pair: PairResult = ctx.task_as("profile_pair", params).await?;
    let comparison = compare::paired(&pair.samples.before, &pair.samples.after, &pair.footprint, done.restructured());
    let prims_after = pair.samples.after.first().map(|s| s.prim_count_with_instance_proxies);
    Ok(RouteTrial {
        notes: format!("{} paired rounds; output {output}", pair.rounds),
        ..RouteTrial::completed(branch, seconds, Some(&comparison), prims_after)
    })
}
