//! Verification: the preservation proof of every step that writes a stage (2f/3, 4d), the
//! 4d re-verify of the output's findings, and Phase 6 (the output profiled and validated
//! like the source, then compared).

use std::sync::Arc;

use serde_json::json;

use super::{profile, validate};
use crate::artifacts::operations::{ConceptReverify, FindingsReverify};
use crate::decisions::compare::{self, Profile};
use crate::decisions::preservation::{self, GeometryResult, Proof, Signature, Strength};
use crate::decisions::validation::{self, Placement, ValidationPhase, ValidationReport};
use crate::executors::take_records;
use crate::outcome::Outcome;
use crate::workflow::ctx::parse_result;
use crate::workflow::{PhaseCtx, PhaseDone, PhaseResult, Stop};

/// Phases 6a and 6b: the output (or, when none was written, the source) profiled as the
/// baseline was, and validated with the Phase 2c plan.
pub async fn profile_after(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let record = ctx.record();
    let stage = record.output_stage().unwrap_or(&record.stage_path).to_string();
    let mut done = profile::capture(ctx, "profile-after", &stage).await?;
    done.artifacts.extend(validate::whole_stage(ctx, ValidationPhase::After, &stage).await?.0);
    Ok(done)
}

/// Phase 6c: before/after deltas per metric and the verdict (decisions::compare).
pub async fn compare(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let before: Profile = ctx.read("profile-baseline")?;
    let after: Profile = ctx.read("profile-after")?;
    // Files written by apply-restructure (prototypes, sub-assets, an override layer) add layers on purpose.
    let layers_on_purpose = ctx.record().restructured();
    let comparison = compare::compare(&before, &after, layers_on_purpose)
        .map_err(|e| Stop::fail(Outcome::ProfileModeMismatch, e))?;
    let path = ctx.write("compare-profiles", &comparison)?;
    Ok(PhaseDone::new(vec![path], format!("{}: {}", comparison.verdict.as_str(), comparison.summary)))
}

/// Geometry signatures of two stages, compared (decisions::preservation). The source's
/// signature is measured once per run.
pub async fn prove_preservation(
    ctx: &PhaseCtx<'_>,
    phase: &str,
    before: &str,
    after: &str,
    strength: Strength,
) -> Result<Proof, Stop> {
    let source = ctx.record().stage_path;
    let cached = ctx.slot.source_signature.lock().unwrap().clone();
    let before_signature = match cached {
        Some(cached) if before == source => cached,
        _ => {
            let measured = Arc::new(geometry_signature(ctx, before).await?);
            if before == source {
                *ctx.slot.source_signature.lock().unwrap() = Some(measured.clone());
            }
            measured
        }
    };
    let after_signature = geometry_signature(ctx, after).await?;
    let mut proof = preservation::prove(phase, &before_signature, &after_signature, strength);
    proof.before = Some(before.to_string());
    proof.after = Some(after.to_string());
    Ok(proof)
}

async fn geometry_signature(ctx: &PhaseCtx<'_>, stage: &str) -> Result<Signature, Stop> {
    let mut result = ctx.task("geometry", json!({"stage_path": stage})).await?;
    let chunks = take_records(&mut result, "meshes");
    let result: GeometryResult = parse_result("geometry", result)?;
    Signature::from_task(&result, &chunks).map_err(|e| Stop::fail(Outcome::ExecutorProtocolError, e))
}

/// Phase 4d cheap re-verify: the Phase 4 concepts that found something, re-run with the same
/// scope on the output, to show what the operations resolved.
pub async fn reverify_output(ctx: &PhaseCtx<'_>, output: &str) -> Result<FindingsReverify, Stop> {
    let inputs = validate::plan_inputs(ctx)?;
    let baseline: ValidationReport = ctx.read("validation-report-targets")?;
    let plan = validation::reverify(&validation::plan(&inputs, Placement::Target), &baseline);
    if plan.jobs.is_empty() {
        return Ok(FindingsReverify {
            concepts: vec![],
            note: Some("no Phase 4 concept had findings: nothing to re-verify".into()),
        });
    }
    let (after, _) = validate::run_plan(
        ctx,
        &plan,
        &inputs.classes,
        output,
        ValidationPhase::After,
        "validation-scope-note-reverify",
        "validation-report-targets-after",
    )
    .await?;
    let concepts = plan
        .jobs
        .iter()
        .flat_map(|j| j.concepts.iter().map(move |c| (*c, j.target.as_str())))
        .map(|(concept, target)| ConceptReverify {
            concept: concept.into(),
            target: target.into(),
            sites_before: baseline.site_count(concept, Some(target)),
            sites_after: after.site_count(concept, Some(target)),
        })
        .collect();
    Ok(FindingsReverify { concepts, note: None })
}
