//! The report from the run record and its workspace's artifacts. What the report concludes
//! (mode, scores, warnings, coverage words, convergence, untapped options) is decided in
//! decisions::report; this file gathers the facts for it and words the result.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;
use crate::artifacts::assessment::{Assessment, Candidates};
use crate::artifacts::manifest::Manifest;
use crate::artifacts::operations::{OperationPlan, OperationsStatus};
use crate::artifacts::setup::Preflight;
use crate::artifacts::ScopeNote;
use crate::decisions::compare::{Comparison, MetricDelta};
use crate::decisions::preservation::Proof;
use crate::decisions::report::{self as conclude, Route, Untapped};
use crate::decisions::restructure::{self, GroupCandidate};
use crate::decisions::score;
use crate::decisions::targets::Disposition;
use crate::decisions::validation::ValidationReport;
use crate::record::{now_rfc3339, RunRecord};
use crate::store::{StoreError, Workspace};

/// What the report quotes of the baseline profile.
#[derive(Deserialize)]
struct ProfileContext {
    mode: String,
    open_timing_context: String,
    warm_open_sample_count: Option<u64>,
}

/// The validation reports a run may write, in workflow order.
const VALIDATION_REPORTS: &[&str] =
    &["validation-report", "validation-report-targets", "validation-report-targets-after", "validation-report-after"];

/// Sample sites listed per concept.
const SAMPLE_SITES: usize = 5;

pub fn build(ws: &Workspace, run: &RunRecord) -> Result<OptimizationReport, StoreError> {
    let preflight: Option<Preflight> = ws.read_opt("setup-preflight")?;
    let runtime = preflight.as_ref().map_or("unknown".to_string(), |p| p.runtime_route.clone());
    let baseline: Option<ProfileContext> = ws.read_opt("profile-baseline")?;
    let comparison: Option<Comparison> = ws.read_opt("compare-profiles")?;
    let assessment = Assessment::from_value(ws.read_artifact("structure-assessment")?)
        .map_err(|source| StoreError::Shape { name: "structure-assessment".into(), source })?;
    let status: Option<OperationsStatus> = ws.read_opt("operations-status")?;
    let plan: Option<OperationPlan> = ws.read_opt("operation-plan")?;
    let decision: Option<RestructureDecision> = ws.read_opt("restructure-decision")?;
    let manifest: Option<Manifest> = ws.read_opt("apply-restructure-manifest")?;
    let candidates: Option<Candidates> = ws.read_opt("dedupe-candidates")?;
    let branch = run.route.restructure_branch.clone().unwrap_or_default();
    let route = Route {
        so_available: run.route.so_available != Some(false),
        phase_recommendation: run.route.phase_recommendation.as_deref(),
        branch: &branch,
        classification: &assessment.classification.kind,
    };
    let workflow_mode = conclude::workflow_mode(&route);
    let verdict = comparison.as_ref().map_or(Verdict::Neutral, |c| c.verdict);
    let metric = |name: &str| comparison.as_ref().and_then(|c| c.metrics.iter().find(|m| m.name == name));

    let metrics: Vec<MetricRow> = comparison.iter().flat_map(|c| c.metrics.iter()).map(metric_row).collect();
    let metric_groups = conclude::metric_groups(comparison.as_ref());
    let optimization_score = conclude::overall_score(&metric_groups, verdict);

    // Operations and coverage, target by target.
    let chain_steps: BTreeMap<&str, (&str, &str)> = plan
        .iter()
        .flat_map(|p| p.operations.iter())
        .map(|o| (o.operation.as_str(), (o.safety.as_str(), o.authority.as_str())))
        .collect();
    let mut operations = Vec::new();
    let mut entries = Vec::new();
    let mut coverage_detail = Vec::new();
    for target in status.iter().flat_map(|s| s.all_targets()) {
        for op in &target.operations {
            let (safety, authority) = chain_steps.get(op.operation.as_str()).copied().unwrap_or(("unknown", "unknown"));
            operations.push(OperationRow {
                order: operations.len() + 1,
                name: op.operation.clone(),
                method: conclude::operation_method(&op.operation, safety, authority),
                result: match (op.ok, op.changed) {
                    (false, _) => format!("failed: {}", op.error),
                    (true, true) => format!("ok in {} s on {}", op.seconds, target.path),
                    (true, false) => format!("ok in {} s on {}, changed nothing", op.seconds, target.path),
                },
            });
        }
        let (disposition, why) = conclude::contract_disposition(target.coverage);
        let notes: Vec<&str> = why.into_iter().chain(target.reason.as_deref()).collect();
        entries.push(CoverageEntry {
            path: target.path.clone(),
            role: target.role.clone(),
            mesh_count: target.mesh_count,
            disposition: disposition.into(),
            operations: target.operations.iter().map(|o| o.operation.clone()).collect(),
            notes: notes.join("; "),
        });
        coverage_detail.push(TargetDetail {
            path: target.path.clone(),
            disposition: disposition_code(target.coverage),
            code: target.code.clone(),
            output_path: target.output_path.clone(),
            seconds: target.duration_seconds,
        });
    }
    let complete = entries.iter().all(|e| e.disposition != "blocked");
    // The manifest the coverage reconciles with: the restructure's, or for a composed stage
    // optimized file by file, the ref-remap manifest that lists those files.
    let remap_targets =
        ws.read_opt::<Manifest>("ref-remap-manifest").ok().flatten().is_some_and(|m| !m.phase4_targets.is_empty());
    let source_manifests = match (manifest.is_some(), remap_targets) {
        (true, _) => vec!["apply-restructure-manifest"],
        (false, true) => vec!["ref-remap-manifest"],
        (false, false) => vec![],
    };
    let source_manifests: Vec<String> = source_manifests
        .into_iter()
        .map(|name| ws.path_of(name).file_name().unwrap_or_default().to_string_lossy().into_owned())
        .collect();

    let chain: Vec<String> =
        plan.iter().flat_map(|p| p.operations.iter()).map(|o| format!("{} ({})", o.operation, o.evidence)).collect();
    let reasoning = format!(
        "The stage was assessed as {} (phase_recommendation {}). At the restructure gate the branch was '{}'{}. {}",
        assessment.classification.kind,
        assessment.phase_recommendation,
        if branch.is_empty() { "none" } else { &branch },
        decision.as_ref().map(|d| format!(" (answered by {})", d.answered_by)).unwrap_or_default(),
        if chain.is_empty() {
            "No mesh operation ran.".to_string()
        } else {
            format!(
                "Operations ({}): {}.",
                plan.as_ref()
                    .and_then(|p| p.pipeline.as_deref())
                    .map_or("chosen from evidence".to_string(), |p| format!("named pipeline {p}")),
                chain.join("; ")
            )
        },
    );

    let proofs: Vec<Proof> = ["preservation-apply-restructure", "preservation-so-run-operations"]
        .into_iter()
        .filter_map(|name| ws.read_opt(name).transpose())
        .collect::<Result<_, _>>()?;
    let proof = proof_summary(&proofs);
    let notes = conclude::notes(workflow_mode, &branch, comparison.as_ref(), proof.as_ref().is_some_and(|p| !p.passed));

    let dedupe = plan.iter().flat_map(|p| p.operations.iter()).find(|o| o.operation == "deduplicateGeometry");
    let scope_note: Option<ScopeNote> = ws.read_opt("validation-scope-note")?;
    let found = Untapped {
        full_sweep_skipped: scope_note.is_some_and(|n| n.full_sweep.status == "skipped"),
        held_back: plan
            .iter()
            .flat_map(|p| p.skipped.iter())
            .map(|s| (s.operation.as_str(), s.reason.as_str()))
            .collect(),
        dedupe_point_instancing: dedupe.map(|d| d.args["duplicateMethod"] == 4),
        warm_open_change_pct: metric("warm_open_ms").map(|m| m.change_pct),
    };
    let untapped_options = conclude::untapped(&route, &found);

    // The descent: a restructure's measured frontier, or the reuse the run left as it was.
    let groups = candidates.as_ref().map(Candidates::plan_groups).unwrap_or_default();
    let frontier = manifest.as_ref().and_then(|m| m.frontier.clone());
    let standing = if frontier.is_some() { 0 } else { standing_groups(ws, &groups, &branch) };
    let answered_by = decision.as_ref().map_or("automatic", |d| d.answered_by.as_str());
    let convergence = conclude::convergence(frontier.as_ref(), standing, &branch, answered_by);
    let footprint = comparison.as_ref().and_then(|c| c.footprint.clone());
    let files = paths(ws);

    let structural_summary = StructuralSummary {
        reuse_measured: frontier.as_ref().is_some_and(|f| f.reuse_measured),
        authored_prim_delta_pct: metric("prim_count_authored").map(|m| m.change_pct),
        unique_prototype_count: frontier.as_ref().map(|f| f.distinct_prototypes),
        instance_ratio: frontier
            .as_ref()
            .filter(|f| f.total_units > 0)
            .map(|f| round3(1.0 - f.distinct_prototypes as f64 / f.total_units as f64)),
        frontier_descent_converged: convergence.converged,
        frontier_final_rescan_new_groups_above_floor: convergence.rescan_new_groups,
        frontier_convergence_waived: convergence.waiver_reason.is_some(),
        frontier_convergence_waiver_reason: convergence.waiver_reason.clone(),
        notes: match &frontier {
            Some(f) => format!(
                "{} prototypes stand for {} occurrences (counted from the restructure plan); {}",
                f.distinct_prototypes,
                f.total_units,
                if f.descent_converged {
                    "the terminal re-scan left no shareable group above the floor".to_string()
                } else {
                    format!("shareable groups left standing: {}", f.unshared_groups.join(", "))
                }
            ),
            None => "no restructure was authored: the scene graph is the source's".into(),
        },
        x_usdtune: Extension {
            run_id: run.run_id.clone(),
            structure: structure_summary(&assessment, candidates.as_ref()),
            // No gate was asked when the assessment found nothing to restructure.
            restructure: decision.map_or_else(
                || RestructureBlock::Skipped { chosen: None, reason: "restructure-decision skipped".into() },
                |d| RestructureBlock::Decided(Box::new(d)),
            ),
            route_trials: ws.read_opt("route-trials")?,
            untapped_options,
            phases: run
                .phases
                .iter()
                .map(|p| PhaseTiming {
                    label: p.milestone.clone(),
                    status: p.status.as_str().into(),
                    seconds: p.seconds,
                    note: p.note.clone(),
                })
                .collect(),
            intervals: comparison.iter().flat_map(|c| c.metrics.iter()).filter_map(interval).collect(),
            chain: plan
                .iter()
                .flat_map(|p| p.operations.iter())
                .map(|o| ChainStep {
                    operation: o.operation.clone(),
                    args: o.args.clone(),
                    safety: o.safety.clone(),
                    authority: o.authority.clone(),
                    evidence: o.evidence.clone(),
                })
                .collect(),
            held_back: plan
                .iter()
                .flat_map(|p| p.skipped.iter())
                .map(|s| HeldBack { operation: s.operation.clone(), reason: s.reason.clone() })
                .collect(),
            proof: proof.clone(),
            findings: concept_findings(ws)?,
            coverage: coverage_detail,
            footprint: footprint.clone(),
            artifacts: crate::store::artifact_names()
                .filter(|n| ws.has_artifact(n))
                .map(|n| (n.to_string(), serde_json::json!(ws.path_of(n).display().to_string())))
                .collect(),
            gpu_memory: gpu_peaks(ws)?,
            kit_error_lines: (run.route.runtime.as_deref() == Some(crate::executors::RUNTIME_KIT)
                || !run.runtime_errors.is_empty())
            .then(|| run.runtime_errors.clone()),
        },
    };

    let rendered_after = proofs.last().map(|p| p.triangles.after);
    let validators = validator_lines(&structural_summary.x_usdtune.findings, ws)?;
    Ok(OptimizationReport {
        asset_name: std::path::Path::new(&run.stage_path)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("stage")
            .to_string(),
        input_path: run.stage_path.clone(),
        output_path: run.output_stage().map(String::from),
        timestamp: now_rfc3339(),
        verdict,
        workflow_mode,
        notes: notes.join(" "),
        next_profile_capture: (workflow_mode == WorkflowMode::StructuralOnly).then(|| {
            "rerun with usd-optimize available in the executor runtime (usdtune setup), then a full-mode Kit profile \
             for FPS/VRAM"
                .to_string()
        }),
        runtime_context: preflight.map_or_else(RuntimeContext::unprobed, |p| p.runtime_context),
        optimization_score,
        score_scope: "stage_optimization".into(),
        score_label: score::label(optimization_score).into(),
        executive_summary: comparison
            .as_ref()
            .map_or("no before/after comparison in this run".to_string(), |c| c.summary.clone()),
        reasoning,
        measurement_context: MeasurementContext {
            profiling_mode: baseline.as_ref().map_or("none".into(), |b| b.mode.clone()),
            open_timing_context: baseline.as_ref().map_or("none".into(), |b| b.open_timing_context.clone()),
            warm_open_sample_count: baseline.as_ref().and_then(|b| b.warm_open_sample_count),
            runtime,
            stage_open_method: "Usd.Stage.Open, payloads loaded".into(),
            after_profiled: ws.has_artifact("profile-after"),
            paired_rounds: comparison.as_ref().map_or(0, |c| c.rounds as u64),
            timing_method: comparison.as_ref().map_or("none".into(), |c| c.method.clone()),
        },
        footprint: footprint.as_ref().and_then(conclude::contract_footprint),
        structural_summary,
        preservation: proof.as_ref().map(|p| PreservationBlock {
            rendered_mesh_count: p.rendered_meshes_after,
            // Bounded ops change geometry within their band: the bytes are not preserved then.
            distinct_geometry_bytes_preserved: p.geometry_passed && proofs.iter().all(|p| p.strength != "bounded"),
            bounds_preserved: p.bounds_preserved,
            dangling: proofs.last().map_or(0, |p| p.dangling_bindings.after),
            rendered_triangle_count: rendered_after.unwrap_or(0),
            notes: format!(
                "measured by the executor's geometry signature of the composed stages, mesh by mesh: {}",
                p.steps.join("; ")
            ),
        }),
        runtime_profiling: RuntimeProfiling {
            status: "not_run".into(),
            recommended_tool: "Omniperf (Kit) on the optimized stage".into(),
            summary: "stage and composition metrics only: open, traverse and attribute timings, prims, bytes".into(),
            caveat: "FPS and frame time need a renderer (a full-mode Kit profile) and were not captured; GPU memory \
                     peaks, where a GPU was present, are in x_usdtune.gpu_memory; none of these is in the score"
                .into(),
        },
        artifacts: files,
        metric_groups,
        metrics,
        operations,
        validators,
        target_coverage: TargetCoverage { complete, source_manifests, entries },
    })
}

fn metric_row(m: &MetricDelta) -> MetricRow {
    let (category, evidence_type, unit) = conclude::metric_kind(&m.name);
    MetricRow {
        name: m.name.clone(),
        category: category.into(),
        direction: "lower_is_better".into(),
        evidence_type: evidence_type.into(),
        unit: unit.into(),
        before: m.before,
        after: m.after,
        change_pct: m.change_pct,
        verdict: m.verdict,
        notes: metric_notes(m),
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn disposition_code(d: Disposition) -> String {
    serde_json::to_value(d).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

/// The shareable groups a run that authored no restructure left standing: all of them, less
/// the reference placements Phase 3 flipped instanceable when it ran.
fn standing_groups(ws: &Workspace, groups: &[GroupCandidate], branch: &str) -> u64 {
    let flipped = ws.has_artifact("instancing-readiness") && branch != "exit";
    let (flips, readiness) = if flipped { restructure::plan_flips(groups) } else { (vec![], vec![]) };
    restructure::unshared_groups(groups, &restructure::RestructurePlan::flips_only(flips, readiness)).len() as u64
}

/// How a metric was judged, for its row: a timing's paired ratio and interval, and why a
/// neutral one is neutral.
fn metric_notes(m: &MetricDelta) -> Option<String> {
    let mut parts = Vec::new();
    if let (Some(ratio), Some([low, high]), Some(confidence), Some(rounds)) =
        (m.ratio, m.ratio_interval, m.confidence, m.rounds)
    {
        parts.push(format!(
            "paired over {rounds} rounds: ratio {ratio:.3} ({:.1}% interval {low:.3}–{high:.3})",
            confidence * 100.0
        ));
    }
    if !m.notes.is_empty() {
        parts.push(m.notes.clone());
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

fn interval(m: &MetricDelta) -> Option<MetricInterval> {
    let (ratio, [low, high], confidence, rounds) = (m.ratio?, m.ratio_interval?, m.confidence?, m.rounds?);
    Some(MetricInterval { name: m.name.clone(), ratio, low, high, confidence, rounds, conclusive: m.conclusive })
}

/// The run's validator findings by concept, across its validation reports (one row per
/// concept, however many targets and rules found it).
fn concept_findings(ws: &Workspace) -> Result<Vec<ConceptFindings>, StoreError> {
    let mut by_concept: BTreeMap<String, (ConceptFindings, std::collections::BTreeSet<String>)> = BTreeMap::new();
    for name in VALIDATION_REPORTS {
        let Some(report) = ws.read_opt::<ValidationReport>(name)? else { continue };
        for finding in &report.findings {
            let (row, targets) = by_concept.entry(finding.concept.clone()).or_insert_with(|| {
                (
                    ConceptFindings {
                        concept: finding.concept.clone(),
                        severity: finding.severity.clone(),
                        findings: 0,
                        sites: 0,
                        targets: 0,
                        op_family: finding.op_family.clone(),
                        reports: vec![],
                        message: finding.message.clone(),
                        sample_sites: vec![],
                    },
                    Default::default(),
                )
            });
            row.findings += 1;
            row.sites += finding.site_count;
            if severity_rank(&finding.severity) > severity_rank(&row.severity) {
                row.severity = finding.severity.clone();
            }
            if !row.reports.iter().any(|r| r == name) {
                row.reports.push(name.to_string());
            }
            for site in &finding.sites {
                if row.sample_sites.len() < SAMPLE_SITES && !row.sample_sites.contains(site) {
                    row.sample_sites.push(site.clone());
                }
            }
            targets.insert(finding.target.clone());
            row.targets = targets.len() as u64;
        }
    }
    let mut rows: Vec<ConceptFindings> = by_concept.into_values().map(|(row, _)| row).collect();
    rows.sort_by(|a, b| severity_rank(&b.severity).cmp(&severity_rank(&a.severity)).then(b.sites.cmp(&a.sites)));
    Ok(rows)
}

fn severity_rank(severity: &str) -> u8 {
    match severity {
        "error" | "failure" => 3,
        "warning" => 2,
        "info" => 1,
        _ => 0,
    }
}

/// One row per validation report (its status and ledger), then one per concept found.
fn validator_lines(findings: &[ConceptFindings], ws: &Workspace) -> Result<Vec<ValidatorLine>, StoreError> {
    let mut lines = Vec::new();
    for name in VALIDATION_REPORTS {
        let Some(report) = ws.read_opt::<ValidationReport>(name)? else { continue };
        lines.push(ValidatorLine {
            name: format!("{name} ({})", report.phase),
            issues: report.findings.iter().map(|f| f.site_count).sum(),
            notes: format!(
                "status {}, {} findings, {} (target, concept) pairs in the coverage ledger, complete {}, wall {:?} s",
                report.summary.status,
                report.findings.len(),
                report.coverage_ledger.entries.len(),
                report.coverage_ledger.complete,
                report.runtime_context.wall_seconds
            ),
        });
    }
    for concept in findings {
        let addressed_by = Some(concept.op_family.as_str()).filter(|o| !o.is_empty()).unwrap_or("no operation");
        lines.push(ValidatorLine {
            name: concept.concept.clone(),
            issues: concept.sites,
            notes: format!(
                "{} finding(s) on {} target(s) in {}; {}; addressed by {addressed_by}",
                concept.findings,
                concept.targets,
                concept.reports.join(", "),
                concept.message
            ),
        });
    }
    Ok(lines)
}

/// The run's proofs (the restructure's, per mesh; the mesh operations', aggregate) in one.
/// None when no phase wrote one.
pub fn proof_summary(proofs: &[Proof]) -> Option<ProofSummary> {
    let (first, last) = (proofs.first()?, proofs.last()?);
    Some(ProofSummary {
        passed: proofs.iter().all(|p| p.passed),
        geometry_passed: proofs.iter().all(|p| p.geometry_passed),
        composition_passed: proofs.iter().all(|p| p.composition.passed),
        new_composition_errors: proofs.iter().map(|p| p.composition.new_errors).sum(),
        rendered_meshes_before: first.rendered_meshes.before,
        rendered_meshes_after: last.rendered_meshes.after,
        triangles_before: first.triangles.before,
        triangles_after: last.triangles.after,
        triangles_by_material_preserved: proofs.iter().all(|p| p.triangles_by_material_preserved),
        bounds_preserved: proofs.iter().all(|p| p.world_bounds_preserved),
        tolerance: last.tolerance,
        steps: proofs.iter().map(|p| format!("{}: {}", p.phase, p.summary())).collect(),
    })
}

/// What the assessment found, in the report's words: class, reasons, the frontier's top
/// groups and the containment pairs scoped for the occlusion probe.
fn structure_summary(assessment: &Assessment, candidates: Option<&Candidates>) -> StructureSummary {
    StructureSummary {
        classification: assessment.classification.kind.clone(),
        reasons: assessment.classification.reasons.clone(),
        hierarchy_dedupe: assessment.hierarchy_dedupe.reason.clone(),
        total_prim_savings: candidates.map(|c| c.total_prim_savings),
        top_groups: candidates
            .iter()
            .flat_map(|c| c.groups.iter())
            .filter(|g| g.candidate.selected)
            .take(10)
            .map(|g| TopGroup {
                path_pattern: g.path_pattern.clone(),
                copies: g.copies,
                subtree_prims: g.subtree_prims,
                estimated_prim_savings: g.estimated_prim_savings,
                readiness: g.readiness.clone(),
                content_flags: g.candidate.content_flags.clone(),
            })
            .collect(),
        containment_pairs: assessment.validation_scope.cross_component_pairs.len(),
        kind_trusted: assessment.kind_hierarchy.trust.trusted,
    }
}

/// The GPU peaks of the two profiles (`gpu_memory` in each), when the baseline has them.
fn gpu_peaks(ws: &Workspace) -> Result<Option<super::GpuPeaks>, crate::store::StoreError> {
    let peak = |name: &str| -> Result<Option<super::GpuPeak>, crate::store::StoreError> {
        let profile = ws.read_opt::<serde_json::Value>(name)?;
        let memory =
            profile.and_then(|p| serde_json::from_value::<crate::resources::GpuMemory>(p["gpu_memory"].clone()).ok());
        Ok(memory.map(|m| super::GpuPeak {
            available: m.available,
            reason: m.reason,
            peak_device_used_bytes: m.peak_device_used_bytes,
            peak_executor_bytes: m.peak_executor_bytes,
        }))
    };
    let Some(before) = peak("profile-baseline")? else { return Ok(None) };
    Ok(Some(super::GpuPeaks { before, after: peak("profile-after").ok().flatten() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::preservation::{BeforeAfter, PrimsWithProxies};

    fn proof(passed: bool) -> Proof {
        let pair = BeforeAfter { before: 10, after: 10 };
        Proof {
            phase: "p".into(),
            strength: "per_mesh".into(),
            passed,
            geometry_passed: passed,
            composition: crate::decisions::preservation::new_composition_errors(
                &Default::default(),
                &Default::default(),
            ),
            tolerance: 1e-6,
            tolerance_basis: String::new(),
            before: None,
            after: None,
            rendered_meshes: BeforeAfter { before: 2, after: 2 },
            triangles: pair,
            surface_triangles: pair,
            triangles_by_material_preserved: passed,
            world_bounds_preserved: true,
            prims_with_instance_proxies: PrimsWithProxies { before: 5, after: 5, material_closure_prims: 0 },
            authored_prim_specs: pair,
            file_bytes: pair,
            dangling_bindings: BeforeAfter::default(),
            differing: 0,
            differences: vec![],
        }
    }

    #[test]
    fn the_proof_fails_when_any_step_failed() {
        assert!(proof_summary(&[]).is_none());
        assert!(proof_summary(&[proof(true), proof(true)]).unwrap().passed);
        let summary = proof_summary(&[proof(true), proof(false)]).unwrap();
        assert!(!summary.passed && !summary.geometry_passed);
        assert!(!summary.triangles_by_material_preserved);
        assert_eq!(summary.steps.len(), 2);
    }
}
