//! Verification: the preservation proof of every step that writes a stage (2f/3, 4d), the
//! 4d re-verify of the output's findings, and Phase 6 (the output profiled and validated
//! like the source, then compared).

use std::sync::Arc;

use serde_json::json;

use super::validate;
use crate::artifacts::operations::{ConceptReverify, FindingsReverify};
use crate::artifacts::profile::PairResult;
use crate::decisions::compare;
use crate::decisions::preservation::{self, GeometryResult, Proof, Signature, Strength};
use crate::decisions::validation::{self, Placement, ValidationPhase, ValidationReport};
use crate::executors::take_records;
use crate::outcome::Outcome;
use crate::record::{PhaseStatus, RunRecord};
use crate::workflow::ctx::parse_result;
use crate::workflow::{PhaseCtx, PhaseDone, PhaseResult, Stop};

/// Phases 6a and 6b: the output and the source profiled together, interleaved (the paired
/// profile the verdict comes from; profile-after.json summarizes the output's rounds), and
/// the output validated with the Phase 2c plan. A run that wrote no output has nothing to
/// profile: the source is not measured against itself.
pub async fn profile_after(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let mut record = ctx.record();
    let phase4_skipped = record.phase("so-run-operations").is_some_and(|p| p.status == PhaseStatus::Skipped);
    if record.output_stage().is_none() && record.restructured() && phase4_skipped {
        // No mesh operation ran (structural-only): the restructured stage is the output.
        ctx.update(|r| r.output_stage_path = r.working_stage_path.clone());
        record = ctx.record();
    }
    let Some(output) = record.output_stage().map(String::from) else {
        return Ok(PhaseDone::new(vec![], "no output stage was written: nothing to profile or validate"));
    };
    let params = |rounds: usize| json!({"baseline": record.stage_path, "output": output, "rounds": rounds});
    let (first_rounds, gpu) = ctx.task_watching_gpu("profile_pair", params(compare::PAIRED_ROUNDS)).await?;
    let mut pair: PairResult = parse_result("profile_pair", first_rounds)?;
    let first = compare::paired(&pair.samples.before, &pair.samples.after, &pair.footprint, record.restructured());
    if let Some(extra) = compare::extra_rounds(&first, pair.seconds) {
        pair.extend(ctx.task_as("profile_pair", params(extra)).await?);
    }
    // GPU memory over the first paired rounds (both stages, interleaved): what the after
    // profile quotes beside the baseline's own.
    let mut after = serde_json::to_value(pair.after_profile()).expect("the profile serializes");
    after["gpu_memory"] = serde_json::to_value(gpu).expect("GPU samples serialize");
    let mut artifacts = vec![ctx.write("profile-pair", &pair)?, ctx.write("profile-after", &after)?];
    artifacts.extend(validate::whole_stage(ctx, ValidationPhase::After, &output).await?.0);
    Ok(PhaseDone::new(
        artifacts,
        format!(
            "{} paired rounds ({} s, {}), output of {} prims",
            pair.rounds,
            pair.seconds,
            pair.process,
            pair.samples.after.first().map_or(0, |s| s.prim_count_with_instance_proxies)
        ),
    ))
}

/// Phase 6c: the verdict from the paired profile (decisions::compare), or, without an
/// output, a neutral comparison that claims nothing.
pub async fn compare(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let record = ctx.record();
    let comparison = match ctx.read_opt::<PairResult>("profile-pair")? {
        Some(pair) if record.output_stage().is_some() => {
            // Files written by apply-restructure (prototypes, sub-assets, an override layer) add layers on purpose.
            compare::paired(&pair.samples.before, &pair.samples.after, &pair.footprint, record.restructured())
        }
        _ => compare::without_output(&no_output_reason(&record)),
    };
    let path = ctx.write("compare-profiles", &comparison)?;
    Ok(PhaseDone::new(vec![path], format!("{}: {}", comparison.verdict.as_str(), comparison.summary)))
}

/// Why a run has no output stage, in the words of its phases.
fn no_output_reason(record: &RunRecord) -> String {
    let ops = record.phase("so-run-operations");
    match ops.map(|p| p.status) {
        Some(PhaseStatus::Done) if ops.is_some_and(|p| p.note.contains("blocked")) => {
            "a Phase 4 target was blocked, so no output was assembled".into()
        }
        Some(PhaseStatus::Done) => "the chain changed nothing, so no output was written".into(),
        Some(PhaseStatus::Skipped) => ops.map_or(String::new(), |p| p.note.clone()),
        _ => "no output stage was written".into(),
    }
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
    let (after, _, _) = validate::run_plan(
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
