//! Phase 4: the op chain from the evidence (so-interpret-validators) and its run on every
//! target (so-run-operations): prototype-first batches (`batches.rs`), Phase 5's remap of
//! the assemblies above optimized children, and the aggregate preservation proof of the
//! whole against the source. An output that fails the proof is set aside, never left
//! looking complete.

use serde_json::{json, Value};

use super::batches;
use super::verify::{prove_preservation, reverify_output};
use crate::artifacts::manifest::{Manifest, RemapResult};
use crate::artifacts::operations::{OperationPlan, OperationsStatus, PlanContext, PlannedTarget, TargetStatus};
use crate::artifacts::setup::Preflight;
use crate::decisions::assessment::Facts;
use crate::decisions::op_chain::{self, Evidence};
use crate::decisions::preservation;
use crate::decisions::targets::{self, Disposition, Phase4Target};
use crate::decisions::validation::ValidationReport;
use crate::outcome::Outcome;
use crate::workflow::{PhaseCtx, PhaseDone, PhaseResult, Stop};

/// so-interpret-validators: evidence → op chain (decisions::op_chain) → operation-plan.json.
pub async fn interpret(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let per_target: ValidationReport = ctx.read("validation-report-targets")?;
    // Whole-stage Tier 1 findings (time samples, materials, empty leaves) come from Phase 2c.
    let whole_stage: ValidationReport = ctx.read("validation-report")?;
    let facts: Facts = ctx.read("stage-facts")?;
    let record = ctx.record();
    let evidence = Evidence {
        meters_per_unit: facts.stage.meters_per_unit,
        prims_missing_extent: facts.geometry.meshes_missing_extent,
        restructured: record.restructured(),
        instancing_in_play: facts.counts.instance_count > 0
            || facts.counts.point_instancer_count > 0
            || record.restructured(),
        instancing_form: record.route.instancing_form,
        ..Evidence::from_reports(&[&whole_stage, &per_target])
    };
    let route = &record.route;
    let chain =
        op_chain::build_chain(&evidence, route.pipeline.as_deref(), &route.approvals, &record.requested_operations)
            .map_err(|e| Stop::fail(Outcome::OrderingInvariantViolated, e))?;
    // Ops the evidence asks for that do not run: the user should hear of each. One asked for
    // by name is never dropped: the run stops, naming the approval it needs.
    for held in chain.skipped.iter().filter(|s| op_chain::is_held_back(s)) {
        if record.requested_operations.iter().any(|r| r == held.operation) {
            return Err(Stop::block(
                Outcome::OperationNotApproved,
                format!("{} was asked for by name and is held back: {}", held.operation, held.reason),
            ));
        }
        ctx.warn(&format!("{} held back: {}", held.operation, held.reason));
    }
    let found = phase4_targets(ctx)?;
    let outputs = targets::output_paths(found.iter().map(|t| t.path.as_str()), &ctx.output_dir("optimized"));
    let planned = found
        .into_iter()
        .zip(outputs)
        .map(|(target, output)| PlannedTarget { target, output_path: output.display().to_string() })
        .collect();
    let output_dir = ctx.output_dir("optimized");
    let context = PlanContext {
        working_stage: record.working_stage(),
        output_dir: &output_dir,
        validation_reports: &[
            &ctx.ws.path_of("validation-report").display().to_string(),
            &ctx.ws.path_of("validation-report-targets").display().to_string(),
        ],
        audit_report: &ctx.ws.path_of("structure-assessment").display().to_string(),
    };
    let plan = OperationPlan::new(&context, planned, record.route.pipeline.clone(), &chain);
    let path = ctx.write("operation-plan", &plan)?;
    let names = plan.operation_names();
    let chain_text =
        if names.is_empty() { "no operation selected by evidence".to_string() } else { names.join(" → ") };
    Ok(PhaseDone::new(vec![path], format!("{chain_text} on {} target(s)", plan.targets.len())))
}

/// Phase 4 targets: the restructure manifest's (shared prototypes first, the assembly root
/// last); a composed stage's referenced files (decisions::targets::composed_targets); or the
/// working stage itself.
fn phase4_targets(ctx: &PhaseCtx<'_>) -> Result<Vec<Phase4Target>, Stop> {
    if let Some(manifest) = ctx.read_opt::<Manifest>("apply-restructure-manifest")? {
        return Ok(targets::in_dependency_order(manifest.phase4_targets));
    }
    let facts: Facts = ctx.read("stage-facts")?;
    if ctx.assessment()?.classification.kind == "composed" {
        let arcs = &facts.composition;
        if let Some(found) = targets::composed_targets(&facts.referenced_layers, arcs.payloads, arcs.variant_sets) {
            return Ok(found);
        }
    }
    Ok(vec![Phase4Target::monolith(ctx.record().working_stage(), facts.counts.mesh_count)])
}

/// Phase 4 (each target through the chain, to a new path, in prototype-first batches),
/// Phase 5 (the assemblies above optimized children remapped to a new root) and the
/// aggregate preservation proof of the whole against the source.
pub async fn run(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let plan: OperationPlan = ctx.read("operation-plan")?;
    let operations = plan.task_operations();
    let names = plan.operation_names();
    let record = ctx.record();
    let mut statuses: Vec<TargetStatus> = plan
        .targets
        .iter()
        .map(|t| {
            let (disposition, reason) = targets::initial_disposition(&t.target, &names);
            TargetStatus::planned(t, disposition, reason)
        })
        .collect();
    // A composed stage's referenced files as targets: on record in the ref-remap manifest, the
    // coverage's source, whether or not a layer is remapped.
    let composed: Vec<Phase4Target> = match ctx.read_opt::<Manifest>("apply-restructure-manifest")? {
        Some(_) => vec![],
        None => {
            plan.targets.iter().filter(|t| t.target.target_class == "shared_layer").map(|t| t.target.clone()).collect()
        }
    };
    let started = crate::record::now_rfc3339();
    let schedule = batches::run(ctx, &plan.targets, &operations, &mut statuses).await?;
    let optimized: Vec<(String, String)> = statuses
        .iter()
        .filter(|s| s.coverage == Disposition::Optimized)
        .map(|s| (s.path.clone(), s.output_path.clone().unwrap_or_default()))
        .collect();
    let mut artifacts = Vec::new();
    let mut note = format!(
        "{} operation(s) on {} of {} target(s) in {} batch(es)",
        operations.len(),
        optimized.len(),
        statuses.len(),
        schedule.batches.len()
    );
    let dispositions: Vec<Disposition> = statuses.iter().map(|s| s.coverage).collect();
    if !targets::assemble(&dispositions) {
        let blocked = dispositions.iter().filter(|d| **d == Disposition::Blocked).count();
        note.push_str(&format!("; {blocked} target(s) blocked: no assembled output"));
    } else if optimized.is_empty() {
        // Nothing changed: no output of Phase 4. A restructure's output is the run's output then.
        let unchanged = dispositions.iter().filter(|d| **d == Disposition::Unchanged).count();
        if unchanged > 0 {
            note.push_str(&format!("; the chain changed none of {unchanged} target(s): no output written"));
        }
        if record.restructured() {
            ctx.update(|r| r.output_stage_path = r.working_stage_path.clone());
            note.push_str("; the restructured stage is the output");
        }
    } else {
        let working = record.working_stage().to_string();
        let output = match optimized.as_slice() {
            [(path, single)] if *path == working => single.clone(),
            _ => {
                // Phase 5: assemblies above the optimized children, rewritten to a new root.
                let output_dir = ctx.output_dir("optimized");
                let mapping: serde_json::Map<String, Value> =
                    optimized.iter().map(|(source, output)| (source.clone(), json!(output))).collect();
                let remap: RemapResult = ctx
                    .task_as("remap", json!({"root": working, "optimized": mapping, "output_dir": output_dir}))
                    .await?;
                let mut manifest = Manifest::remap(&working, &output_dir, &remap, &optimized);
                if !composed.is_empty() {
                    // The targets hold every mesh (composed_targets): the root keeps none of its own.
                    manifest.assembly_root.mesh_count = 0;
                    manifest.phase4_targets = composed.clone();
                }
                artifacts.push(ctx.write("ref-remap-manifest", &manifest)?);
                note.push_str(&format!("; {} assemblies remapped", remap.rewritten.len()));
                remap.new_assembly_root
            }
        };
        let strength = preservation::strength_for_chain(
            &plan.operations.iter().map(|o| (o.safety.as_str(), o.args["maxMeanError"].as_f64())).collect::<Vec<_>>(),
        );
        let proof = prove_preservation(ctx, "so-run-operations", &record.stage_path, &output, strength).await?;
        artifacts.push(ctx.write("preservation-so-run-operations", &proof)?);
        if proof.passed {
            let reverify = reverify_output(ctx, &output).await?;
            for status in statuses.iter_mut().filter(|s| s.coverage == Disposition::Optimized) {
                status.findings_reverify = Some(reverify.clone());
            }
            ctx.update(|r| r.output_stage_path = output.clone());
            note.push_str("; geometry and composition preservation proof passed");
        } else {
            // Set the output aside so nothing that looks complete is left behind.
            let discarded = batches::set_aside(&output);
            let code =
                if proof.geometry_passed { Outcome::CompositionErrorIntroduced } else { Outcome::GeometryNotPreserved };
            for status in statuses.iter_mut().filter(|s| s.coverage == Disposition::Optimized) {
                status.block(
                    code.code(),
                    format!("the preservation proof failed, output set aside as {discarded}: {}", proof.summary()),
                );
            }
            note = format!("targets blocked: {}", proof.summary());
        }
    }
    if !composed.is_empty() && !artifacts.iter().any(|a| a.ends_with("ref-remap-manifest.json")) {
        let manifest = Manifest::nothing_remapped(record.working_stage(), &ctx.output_dir("optimized"), composed);
        artifacts.push(ctx.write("ref-remap-manifest", &manifest)?);
    }
    for blocked in statuses.iter().filter(|s| s.coverage == Disposition::Blocked) {
        ctx.warn(&format!("target {} blocked: {}", blocked.path, blocked.reason.as_deref().unwrap_or("")));
    }
    let cuda_available = ctx.read_opt::<Preflight>("setup-preflight")?.and_then(|p| p.cuda_available);
    let status = OperationsStatus::new(&record.run_id, started, cuda_available, statuses, schedule);
    artifacts.insert(0, ctx.write("operations-status", &status)?);
    Ok(PhaseDone::new(artifacts, note))
}
