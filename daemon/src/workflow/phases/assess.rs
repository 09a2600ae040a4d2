//! Phases 1b, 2a, 2b, 2d: the executor collects the stage's facts and streams its prim table;
//! the daemon decides the structure assessment, the dedupe candidates and the geometry
//! classes from them (decisions::assessment, decisions::validation::GeometryClasses).

use std::time::Instant;

use serde_json::json;

use crate::artifacts::assessment::Assessment;
use crate::decisions::assessment::{self, Facts};
use crate::decisions::prims::PrimTable;
use crate::decisions::validation::GeometryClasses;
use crate::executors::take_records;
use crate::outcome::Outcome;
use crate::workflow::{PhaseCtx, PhaseDone, PhaseResult, Stop};

pub async fn run(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let mut facts_value = ctx.task("facts", json!({"stage_path": ctx.record().stage_path})).await?;
    // The prim table streamed beside the result: decided on here, not stored.
    let chunks = take_records(&mut facts_value, "prims");
    let facts_path = ctx.write("stage-facts", &facts_value)?;
    let facts: Facts = ctx.read("stage-facts")?;
    if let Some((outcome, message)) = assessment::input_refusal(&facts).filter(|_| !ctx.record().route.assess_only) {
        return Err(Stop::fail(outcome, format!("{message} (see {facts_path})")));
    }
    let started = Instant::now();
    let table = PrimTable::from_chunks(chunks).map_err(|e| Stop::fail(Outcome::ExecutorProtocolError, e))?;
    let mut result = assessment::assess(&facts, &table);
    let classes = GeometryClasses::from_table(&table);
    let decision_seconds = started.elapsed().as_secs_f64();
    result.structure["timing"] = json!({
        "fact_collection_seconds": facts_value["collection_seconds"], "decision_seconds": decision_seconds,
    });
    let candidates_path = ctx.write("dedupe-candidates", &result.candidates)?;
    let classes_path = ctx.write("geometry-classes", &classes)?;
    let path = ctx.write("structure-assessment", &result.structure)?;
    let written = Assessment::from_value(result.structure)
        .map_err(|e| Stop::fail(Outcome::ArtifactSchemaViolation, format!("structure-assessment: {e}")))?;
    let recommendation = written.phase_recommendation.clone();
    ctx.update(|r| r.route.phase_recommendation = Some(recommendation.clone()));
    if !ctx.record().route.assess_only {
        super::restructure::refuse_unoffered(ctx, &written)?;
    }
    let note = format!(
        "{}; phase_recommendation {recommendation}; {} dedupe groups on the frontier; facts {}s (executor), decisions {decision_seconds:.2}s (daemon)",
        written.classification.kind, result.reuse.selected_groups, facts_value["collection_seconds"]
    );
    Ok(PhaseDone::new(vec![facts_path, candidates_path, classes_path, path], note))
}
