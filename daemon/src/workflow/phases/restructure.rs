//! Phase 2e (the restructure gate: which branch, decided by decisions::restructure) and
//! Phases 2f/3 (the chosen branch authored with Sdf by the executor, instancing flips), each
//! output held to the per-mesh preservation proof before later phases work on it.

use std::path::Path;

use serde_json::json;

use super::verify::prove_preservation;
use crate::artifacts::assessment::Assessment;
use crate::artifacts::assessment::Candidates;
use crate::artifacts::manifest::{InstancingResult, Manifest, RestructureResult};
use crate::artifacts::{InstancingReadiness, RestructureDecision};
use crate::decisions::assessment::Classification;
use crate::decisions::preservation::Strength;
use crate::decisions::restructure::{self, Branch, GatePlan, Mode, Resolution};
use crate::decisions::routes::RouteTrials;
use crate::outcome::Outcome;
use crate::record::{now_rfc3339, GateKind, GateRecord};
use crate::workflow::{PhaseCtx, PhaseDone, PhaseResult, Stop};

/// The restructure gate the assessment calls for (decisions::restructure's table).
pub fn gate_of(assessment: &Assessment) -> Result<(Classification, GatePlan), Stop> {
    let class = Classification::parse(&assessment.classification.kind).ok_or_else(|| {
        Stop::fail(Outcome::ArtifactSchemaViolation, "structure-assessment has no known classification")
    })?;
    let plan = restructure::gate_plan(
        class,
        assessment.hierarchy_dedupe.recommended,
        assessment.summary_counts.payload_count,
        // The assessment asks the user about selective loading when the boundaries are clear.
        assessment.asset_boundary_suggestions.user_choice_required,
    );
    Ok((class, plan))
}

/// A branch given up front that the gate will not offer, refused as soon as the assessment
/// knows (before validation and the route trials spend any time).
pub fn refuse_unoffered(ctx: &PhaseCtx<'_>, assessment: &Assessment) -> Result<(), Stop> {
    let record = ctx.record();
    let Some(given) = record.route.restructure_branch.as_deref() else { return Ok(()) };
    let (_, plan) = gate_of(assessment)?;
    restructure::resolve(&plan, Some(given), record.route.decision_source.as_deref())
        .map(|_| ())
        .map_err(|e| Stop::fail(Outcome::InvalidRestructureBranch, e))
}

/// Phase 2e: the branch answered (up front or at the gate), the table's single outcome, or
/// the gate raised with its offered branches and evidence.
pub async fn decide(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let assessment = ctx.assessment()?;
    let (class, plan) = gate_of(&assessment)?;
    let mut evidence = assessment.gate_evidence();
    let record = ctx.record();
    let (offered, mut recommended) = plan.offered();
    // Measured (or, above the trial budget, estimated) routes: the gate recommends the winner.
    let measured: Option<RouteTrials> = ctx.read_opt("route-trials")?;
    if let Some(trials) = &measured {
        recommended = trials.recommended.as_deref().and_then(Branch::parse).or(recommended);
        evidence["route_trials"] = serde_json::to_value(trials).expect("the trials serialize");
    }
    let resolution = restructure::resolve(
        &plan,
        record.route.restructure_branch.as_deref(),
        record.route.decision_source.as_deref(),
    )
    .map_err(|e| Stop::fail(Outcome::InvalidRestructureBranch, e))?;
    let reason = &assessment.hierarchy_dedupe.reason;
    let (chosen, answered_by) = match resolution {
        Resolution::Chosen { branch, answered_by } => (branch, answered_by),
        Resolution::Ask => {
            let trials = match measured {
                Some(trials) => trials,
                None => super::trials::run(ctx, &offered).await?,
            };
            recommended = trials.recommended.as_deref().and_then(Branch::parse).or(recommended);
            evidence["route_trials"] = serde_json::to_value(&trials).expect("the trials serialize");
            return Err(Stop::AwaitDecision(Box::new(GateRecord {
                id: GateKind::Restructure.id().into(),
                question: format!("The stage is {}. How should it be optimized? ({reason})", class.as_str()),
                branches: offered.iter().map(|b| b.as_str().to_string()).collect(),
                recommended: recommended.map(|b| b.as_str().to_string()),
                evidence,
            })));
        }
    };
    let decision = RestructureDecision {
        phase: "2e".into(),
        choice: chosen.as_str().into(),
        reasoning: format!("{}; hierarchy dedupe: {reason}", class.as_str()),
        user_confirmed_at: (answered_by != "automatic").then(now_rfc3339),
        classification: class.as_str().into(),
        branches_offered: offered.iter().map(|b| b.as_str().to_string()).collect(),
        recommended: recommended.map(|b| b.as_str().to_string()),
        chosen: chosen.as_str().into(),
        answered_by: answered_by.clone(),
        evidence,
    };
    let path = ctx.write("restructure-decision", &decision)?;
    ctx.update(|r| r.route.restructure_branch = Some(chosen.as_str().into()));
    Ok(PhaseDone::new(vec![path], format!("{} (by {answered_by})", chosen.as_str())))
}

/// Phase 2f (the chosen branch's restructure) and Phase 3 (instancing flips), then the
/// per-mesh preservation proof: a restructure that changes the composed geometry fails the
/// run. Later phases work on the result (`working_stage_path`).
pub async fn apply(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let record = ctx.record();
    let branch = record.route.restructure_branch.as_deref().and_then(Branch::parse).unwrap_or(Branch::OptimizeAsIs);
    let groups = ctx.read::<Candidates>("dedupe-candidates")?.plan_groups();
    let stem = Path::new(&record.stage_path).file_stem().and_then(|s| s.to_str()).unwrap_or("stage").to_string();
    let mut artifacts = Vec::new();
    let (new_root, readiness, edit_target, note) = match branch.mode() {
        Some(mode) => {
            let plan = match mode {
                Mode::SelectiveLoading => {
                    // The shallowest candidate level holding geometry in two or more prims.
                    let assessment = ctx.assessment()?;
                    let level = assessment.asset_boundary_suggestions.candidate_levels.first();
                    restructure::plan_selective(level.map_or(&[][..], |l| l.prim_paths.as_slice()))
                }
                _ => restructure::plan_dedupe(mode, &groups),
            };
            if plan.is_empty() {
                return Err(Stop::fail(
                    Outcome::RestructureNothingToAuthor,
                    format!(
                        "'{}' found nothing to author: no shareable group or boundary (skipped: {})",
                        branch.as_str(),
                        plan.skipped.iter().map(|s| format!("{} {}", s.group, s.reason)).collect::<Vec<_>>().join("; ")
                    ),
                ));
            }
            let output_dir = ctx.output_dir("restructured");
            let root = output_dir.join(format!("{stem}.usdc"));
            let mut params = serde_json::to_value(&plan).expect("plan serializes");
            params["stage_path"] = json!(record.stage_path);
            params["output_dir"] = json!(output_dir);
            params["output_root"] = json!(root);
            params["source_asset_paths"] = json!(source_asset_paths(ctx));
            let result: RestructureResult = ctx.task_as("restructure", params).await?;
            let proof_path = ctx.ws.path_of("preservation-apply-restructure").display().to_string();
            let frontier = restructure::frontier(&groups, &plan);
            let manifest =
                Manifest::restructure(&record.stage_path, &output_dir, &plan, &result, &proof_path, frontier);
            artifacts.push(ctx.write("apply-restructure-manifest", &manifest)?);
            let note = format!(
                "{}: {} prototypes, {} sites rewritten ({} instanceable), {} sub-assets",
                mode.as_str(),
                plan.prototypes.len(),
                plan.sites.len(),
                plan.flipped(),
                plan.subassets.len()
            );
            (result.new_assembly_root, plan.readiness, "restructured_root", note)
        }
        None => {
            let (flips, readiness) = restructure::plan_flips(&groups);
            if flips.is_empty() {
                artifacts.push(ctx.write("instancing-readiness", &InstancingReadiness::new(readiness, None, "none"))?);
                return Ok(PhaseDone::new(
                    artifacts,
                    format!("{}: nothing authored; no placement ready to flip instanceable", branch.as_str()),
                ));
            }
            let output = ctx.output_dir("instancing").join(format!("{stem}.instancing.usda"));
            let result: InstancingResult = ctx
                .task_as("instancing", json!({"stage_path": record.stage_path, "output_path": output, "flips": flips}))
                .await?;
            let note = format!(
                "{} placements flipped instanceable in an override layer ({} instances, {} prototypes)",
                flips.len(),
                result.instances,
                result.prototypes
            );
            (result.output_path, readiness, "override_layer", note)
        }
    };
    artifacts
        .push(ctx.write("instancing-readiness", &InstancingReadiness::new(readiness, Some(&new_root), edit_target))?);
    let proof = prove_preservation(ctx, "apply-restructure", &record.stage_path, &new_root, Strength::PerMesh).await?;
    artifacts.push(ctx.write("preservation-apply-restructure", &proof)?);
    if !proof.geometry_passed {
        return Err(Stop::fail(
            Outcome::RestructureNotLossless,
            format!(
                "{} changed the composed geometry; its output {new_root} is not used: {}",
                branch.as_str(),
                proof.summary()
            ),
        ));
    }
    if !proof.composition.passed {
        return Err(Stop::fail(
            Outcome::CompositionErrorIntroduced,
            format!("{}: its output {new_root} is not used: {}", branch.as_str(), proof.composition.summary()),
        ));
    }
    ctx.update(|r| r.working_stage_path = new_root.clone());
    Ok(PhaseDone::new(artifacts, format!("{note}; {}", proof.summary())))
}

/// Asset paths in every layer of the source stage, as Phase 2c's openability counted them
/// (None when it did not): zero lets the restructure and the Phase 4 workers skip
/// re-anchoring what they write.
pub fn source_asset_paths(ctx: &PhaseCtx<'_>) -> Option<u64> {
    let report: crate::decisions::validation::ValidationReport = ctx.read("validation-report").ok()?;
    report.asset_path_count()
}
