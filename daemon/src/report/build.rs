//! The report from the run record and its workspace's artifacts. What the report concludes
//! (mode, scores, warnings, untapped options) is decided in decisions::report; this file
//! gathers the facts for it and words the result.

use serde::Deserialize;

use super::*;
use crate::artifacts::assessment::{Assessment, Candidates};
use crate::artifacts::operations::{OperationPlan, OperationsStatus};
use crate::artifacts::setup::Preflight;
use crate::artifacts::ScopeNote;
use crate::decisions::compare::Comparison;
use crate::decisions::preservation::Proof;
use crate::decisions::report::{self as conclude, Route, Untapped};
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

pub fn build(ws: &Workspace, run: &RunRecord) -> Result<OptimizationReport, StoreError> {
    let preflight: Option<Preflight> = ws.read_opt("setup-preflight")?;
    let runtime = preflight.as_ref().map_or("unknown".to_string(), |p| p.runtime_route.clone());
    let baseline: Option<ProfileContext> = ws.read_opt("profile-baseline")?;
    let after_profiled = ws.has_artifact("profile-after");
    let comparison: Option<Comparison> = ws.read_opt("compare-profiles")?;
    let assessment = Assessment::from_value(ws.read_artifact("structure-assessment")?)
        .map_err(|source| StoreError::Shape { name: "structure-assessment".into(), source })?;
    let status: Option<OperationsStatus> = ws.read_opt("operations-status")?;
    let plan: Option<OperationPlan> = ws.read_opt("operation-plan")?;
    let decision: Option<RestructureDecision> = ws.read_opt("restructure-decision")?;
    let branch = run.route.restructure_branch.clone().unwrap_or_default();
    let route = Route {
        so_available: run.route.so_available != Some(false),
        phase_recommendation: run.route.phase_recommendation.as_deref(),
        branch: &branch,
        classification: &assessment.classification.kind,
    };
    let workflow_mode = conclude::workflow_mode(&route);
    let verdict = comparison.as_ref().map_or(Verdict::Neutral, |c| c.verdict);

    let metrics: Vec<MetricRow> = comparison
        .iter()
        .flat_map(|c| c.metrics.iter())
        .map(|m| {
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
        })
        .collect();
    let metric_groups = conclude::metric_groups(comparison.as_ref());
    let optimization_score = conclude::overall_score(&metric_groups, verdict);

    let mut operations = Vec::new();
    let mut entries = Vec::new();
    for target in status.iter().flat_map(|s| s.targets.iter()) {
        for op in &target.operations {
            operations.push(OperationRow {
                order: operations.len() + 1,
                name: op.operation.clone(),
                method: format!("usd-optimize {} {}", op.operation, op.args),
                result: if op.ok { format!("ok in {:?} s", op.seconds) } else { format!("failed: {}", op.error) },
            });
        }
        entries.push(CoverageEntry {
            path: target.path.clone(),
            role: target.role.clone(),
            mesh_count: target.mesh_count,
            disposition: target.disposition,
            notes: target.reason.clone().unwrap_or_default(),
        });
    }
    let complete = entries.iter().all(|e| e.disposition != Disposition::Blocked);
    let validators = validator_lines(ws)?;

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
    let preservation = preservation(&proofs);
    let notes =
        conclude::notes(workflow_mode, &branch, comparison.as_ref(), preservation.as_ref().is_some_and(|p| !p.passed));

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
        warm_open_change_pct: comparison
            .as_ref()
            .and_then(|c| c.metrics.iter().find(|m| m.name == "warm_open_ms"))
            .map(|m| m.change_pct),
    };
    let untapped_options = conclude::untapped(&route, &found);

    let candidates: Option<Candidates> = ws.read_opt("dedupe-candidates")?;
    let artifacts = crate::store::artifact_names()
        .filter(|n| ws.has_artifact(n))
        .map(|n| (n.to_string(), serde_json::json!(ws.path_of(n).display().to_string())))
        .collect();
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
        runtime_context: preflight.map(|p| p.runtime_context).unwrap_or(RuntimeContext {
            kit: None,
            usd_optimize: None,
            asset_validator: None,
            cuda_available: None,
        }),
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
            after_profiled,
        },
        metric_groups,
        metrics,
        operations,
        validators,
        target_coverage: TargetCoverage { complete, entries },
        untapped_options,
        // No gate was asked when the assessment found nothing to restructure.
        restructure: decision.map_or_else(
            || RestructureBlock::Skipped { chosen: None, reason: "restructure-decision skipped".into() },
            |d| RestructureBlock::Decided(Box::new(d)),
        ),
        structure: structure_summary(&assessment, candidates.as_ref()),
        artifacts,
        preservation,
        footprint: comparison.as_ref().and_then(|c| c.footprint.clone()),
        next_profile_capture: (workflow_mode == WorkflowMode::StructuralOnly).then(|| {
            "rerun with usd-optimize available in the executor runtime (usdtune setup), then a full-mode Kit profile \
             for FPS/VRAM"
                .to_string()
        }),
    })
}

/// How a metric was judged, for its row: a timing's paired ratio and interval, and why a
/// neutral one is neutral.
fn metric_notes(m: &crate::decisions::compare::MetricDelta) -> Option<String> {
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

/// One line per validation report, then one per concept that found something.
fn validator_lines(ws: &Workspace) -> Result<Vec<ValidatorLine>, StoreError> {
    let mut lines = Vec::new();
    for name in VALIDATION_REPORTS {
        let Some(report) = ws.read_opt::<ValidationReport>(name)? else { continue };
        lines.push(ValidatorLine {
            name: format!("{name} ({})", report.phase),
            issues: report.findings.len() as u64,
            notes: format!(
                "status {}, {} (target, concept) pairs in the coverage ledger, complete {}, wall {:?} s",
                report.summary.status,
                report.coverage_ledger.entries.len(),
                report.coverage_ledger.complete,
                report.runtime_context.wall_seconds
            ),
        });
        for finding in &report.findings {
            let addressed_by = Some(finding.op_family.as_str()).filter(|o| !o.is_empty()).unwrap_or("no operation");
            lines.push(ValidatorLine {
                name: format!("{} ({name})", finding.concept),
                issues: finding.site_count,
                notes: format!("{}; addressed by {addressed_by}", finding.message),
            });
        }
    }
    Ok(lines)
}

/// The report's preservation block (upstream shape) from the run's proofs: the restructure's
/// (per mesh) and the mesh operations' (aggregate). None when no phase wrote one.
pub fn preservation(proofs: &[Proof]) -> Option<PreservationBlock> {
    let (first, last) = (proofs.first()?, proofs.last()?);
    Some(PreservationBlock {
        rendered_mesh_count: last.rendered_meshes.after,
        distinct_geometry_bytes_preserved: proofs.iter().all(|p| p.geometry_passed),
        bounds_preserved: proofs.iter().all(|p| p.world_bounds_preserved),
        dangling: 0,
        triangles_before: first.triangles.before,
        triangles_after: last.triangles.after,
        triangles_by_material_preserved: proofs.iter().all(|p| p.triangles_by_material_preserved),
        tolerance: last.tolerance,
        passed: proofs.iter().all(|p| p.passed),
        notes: proofs.iter().map(|p| format!("{}: {}", p.phase, p.summary())).collect::<Vec<_>>().join("; "),
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
            differing: 0,
            differences: vec![],
        }
    }

    #[test]
    fn preservation_block_fails_when_any_proof_failed() {
        assert!(preservation(&[]).is_none());
        assert!(preservation(&[proof(true), proof(true)]).unwrap().passed);
        let block = preservation(&[proof(true), proof(false)]).unwrap();
        assert!(!block.passed);
        assert!(!block.triangles_by_material_preserved);
    }
}
