//! Validation inside the pipeline (usd-validation-runner), planned by decisions::validation:
//! Phase 2c (openability and whole-stage Tier 1), Phase 4's evidence (per-target Tier 2/3),
//! and the narrower re-runs of 4d and 6b on outputs. Every plan writes its scope note, runs
//! its jobs in one executor task and must leave a complete coverage ledger.

use crate::artifacts::guard::SourceGuard;
use crate::artifacts::ScopeNote;
use crate::decisions::assessment::Facts;
use crate::decisions::costs;
use crate::decisions::validation::{
    self, FlaggedPair, GeometryClasses, Placement, Plan, PlanInputs, ValidateResult, ValidationPhase, ValidationReport,
};
use crate::outcome::Outcome;
use crate::record::now_rfc3339;
use crate::workflow::ctx::stage_size;
use crate::workflow::{worker_pool, PhaseCtx, PhaseDone, PhaseResult, Stop};

/// Phase 2c: minimum openability and the whole-stage Tier 1 concepts on the source, and the
/// source guard over every file the source composes (artifacts::guard): a workspace that
/// holds one of them is refused here, before any stage is written.
pub async fn baseline(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let record = ctx.record();
    let (mut artifacts, note, files) = whole_stage(ctx, ValidationPhase::Baseline, &record.stage_path).await?;
    let mut paths: Vec<&str> = files.iter().map(String::as_str).collect();
    paths.push(&record.stage_path);
    let guard = SourceGuard::capture(paths)
        .map_err(|e| Stop::fail(Outcome::StageUnreadable, format!("a file the source composes cannot be read: {e}")))?;
    if let Some(inside) = guard.inside(ctx.ws.root()) {
        return Err(Stop::fail(
            Outcome::OutputOverlapsSource,
            format!(
                "the workspace {} holds {inside}, which the source composes: choose another folder",
                ctx.ws.root().display()
            ),
        ));
    }
    artifacts.push(ctx.write("source-guard", &guard)?);
    Ok(PhaseDone::new(artifacts, format!("{note}; {} source file(s) guarded", guard.files.len())))
}

/// Phase 4 evidence: the per-target plan (Tier 2 hygiene on one representative per geometry
/// class, Tier 3 on flagged subtrees and pairs) on the optimization target, N=1 the stage.
pub async fn targets(ctx: &PhaseCtx<'_>) -> PhaseResult {
    // Phase 4's first worker starts now, so its interpreter and usd-optimize are loaded by the
    // time the first target runs (a start costs seconds: on a small stage, more than the ops).
    ctx.slot.host().ensure_workers(&worker_pool(&ctx.record()), 1).map_err(Stop::from)?;
    let inputs = plan_inputs(ctx)?;
    let plan = validation::plan(&inputs, Placement::Target);
    let stage = ctx.record().stage_path;
    let (report, artifacts, _) = run_plan(
        ctx,
        &plan,
        &inputs.classes,
        &stage,
        ValidationPhase::Baseline,
        "validation-scope-note-targets",
        "validation-report-targets",
    )
    .await?;
    Ok(PhaseDone::new(artifacts, report.note()))
}

/// The validation plan's inputs: the assessment, its geometry classes, the user's approval.
pub fn plan_inputs(ctx: &PhaseCtx<'_>) -> Result<PlanInputs, Stop> {
    let record = ctx.record();
    let assessment = ctx.assessment()?;
    let facts: Facts = ctx.read("stage-facts")?;
    let classes: GeometryClasses = ctx.read("geometry-classes")?;
    let pairs = assessment
        .validation_scope
        .cross_component_pairs
        .iter()
        .filter_map(|p| {
            Some(FlaggedPair {
                enclosing: assessment.boundary_path(&p.enclosing_boundary_id)?.to_string(),
                enclosed: assessment.boundary_path(&p.enclosed_boundary_id)?.to_string(),
                enclosure_opaque: p.enclosure_opaque,
            })
        })
        .collect();
    let hints = facts.stage.authoring_hints.to_lowercase();
    Ok(PlanInputs {
        phase_recommendation: assessment.phase_recommendation.clone(),
        prim_count: facts.counts.prim_count,
        mesh_count: facts.counts.mesh_count,
        stage_bytes: facts.stage.file_size_bytes,
        converted_cad: validation::CONVERTER_WORDS.iter().any(|w| hints.contains(w)),
        simulation_ready: assessment.asset_physical_context.physics_prim_count > 0,
        hierarchy_dedupe_recommended: assessment.hierarchy_dedupe.recommended,
        pairs,
        classes,
        full_sweep_approved: record.route.full_validation_approved,
        budget_s: Some(costs::validation_budget(costs::run_budget(
            stage_size(&ctx.ws, &record.stage_path),
            record.route.budget_seconds,
        ))),
        // The executor's own default (tasks/validate.py: one worker per core, at most 8),
        // read on this machine: a remote executor may have more, and its budget still holds.
        workers: crate::resources::cpu_count().min(8) as u32,
        // A structural-only baseline (no pxr timings) has no warm open.
        warm_open_s: ctx
            .read_opt::<serde_json::Value>("profile-baseline")?
            .and_then(|p| p["warm_open_ms"].as_f64())
            .map(|ms| ms / 1000.0),
    })
}

/// Run one plan on `stage`: write its scope note, run its jobs, write the report, apply the
/// ledger gate. Returns the report, the artifact paths and the files the stage composes (when
/// the plan checked openability). A note that several runs of the same plan share (2c and 6b)
/// lists every report written under it.
pub async fn run_plan(
    ctx: &PhaseCtx<'_>,
    plan: &Plan,
    classes: &GeometryClasses,
    stage: &str,
    phase: ValidationPhase,
    note_name: &str,
    report_name: &str,
) -> Result<(ValidationReport, Vec<String>, Vec<String>), Stop> {
    let mut reports = ctx.read_opt::<ScopeNote>(note_name)?.map(|n| n.artifact_paths).unwrap_or_default();
    let report_path = ctx.ws.path_of(report_name).display().to_string();
    if !reports.contains(&report_path) {
        reports.push(report_path);
    }
    let mut note = plan.note.clone();
    note["artifact_paths"] = serde_json::json!(reports);
    let note_path = ctx.write(note_name, &note)?;
    let result: ValidateResult = ctx.task_as("validate", plan.task_params(stage, classes)).await?;
    let mut report = validation::report(phase, stage, plan, &result, classes);
    report.artifacts.scope_note = Some(note_path.clone());
    report.generated_at = Some(now_rfc3339());
    let report_path = ctx.write(report_name, &report)?;
    report.ledger_gate().map_err(|e| Stop::fail(Outcome::CoverageLedgerIncomplete, e))?;
    Ok((report, vec![note_path, report_path], result.openability.files))
}

/// Phase 2c (baseline) and 6b (after, the same plan on the output): openability + Tier 1.
pub async fn whole_stage(
    ctx: &PhaseCtx<'_>,
    phase: ValidationPhase,
    stage: &str,
) -> Result<(Vec<String>, String, Vec<String>), Stop> {
    let inputs = plan_inputs(ctx)?;
    let plan = validation::plan(&inputs, Placement::WholeStage);
    let report_name = match phase {
        ValidationPhase::Baseline => "validation-report",
        ValidationPhase::After => "validation-report-after",
    };
    // 6b re-runs exactly the baseline plan, so both reports share one scope note.
    let (report, artifacts, files) =
        run_plan(ctx, &plan, &inputs.classes, stage, phase, "validation-scope-note", report_name).await?;
    let mut note = report.note();
    if phase == ValidationPhase::Baseline
        && ctx.record().route.phase_recommendation.as_deref() == Some("already_optimized")
    {
        // The assessment sees structure only; what the validators found that a lossless op
        // fixes (redundant time samples, duplicate materials, empty leaves) still deserves Phase 4.
        let fixable = report.lossless_fixes_the_structure_misses();
        if !fixable.is_empty() {
            ctx.update(|r| r.route.phase_recommendation = Some("optimization".into()));
            note.push_str(&format!(
                "; findings a lossless op fixes ({}): on to Phase 4 although the structure is already optimized",
                fixable.join(", ")
            ));
        }
    }
    Ok((artifacts, note, files))
}
