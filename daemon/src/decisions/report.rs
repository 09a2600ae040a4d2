//! What the optimization report concludes (Phase 6d): the workflow mode, how each compared
//! metric is categorized and scored, the warnings a reader must see, and the options the
//! run left untapped. Plain functions over the run's route and its measured results; the
//! report module (crate::report) assembles the document from them.

use serde::{Deserialize, Serialize};

use super::compare::{Comparison, Footprint, Verdict};
use super::op_chain::{POINT_INSTANCER_MIN_COPIES, POINT_INSTANCER_MIN_COPIES_PER_GEOMETRY};
use super::restructure::Frontier;
use super::score::{self, MetricGroup};
use super::targets::Disposition;

/// The report's `workflow_mode` (upstream optimization-report contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowMode {
    /// Every phase ran that the route called for.
    Full,
    /// usd-optimize could not load: Phases 4-5 did not run.
    StructuralOnly,
    /// Nothing was to change: already optimized, or `exit` at the restructure gate.
    NoOp,
}

impl WorkflowMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::StructuralOnly => "structural_only",
            Self::NoOp => "no_op",
        }
    }
}

/// The route facts the report's conclusions depend on.
#[derive(Clone, Debug, Default)]
pub struct Route<'a> {
    pub so_available: bool,
    pub phase_recommendation: Option<&'a str>,
    /// The restructure branch ("" when the gate was skipped).
    pub branch: &'a str,
    pub classification: &'a str,
}

pub fn workflow_mode(route: &Route) -> WorkflowMode {
    if !route.so_available {
        WorkflowMode::StructuralOnly
    } else if route.phase_recommendation == Some("already_optimized") || route.branch == "exit" {
        WorkflowMode::NoOp
    } else {
        WorkflowMode::Full
    }
}

/// A compared metric as the report categorizes it: (category, evidence type, unit).
pub fn metric_kind(name: &str) -> (&'static str, &'static str, &'static str) {
    let category = match name {
        "cold_open_ms" | "warm_open_ms" => "load_time",
        "total_size_bytes" => "storage_proxy",
        "prim_count" | "prim_count_authored" | "layer_count" => "composition",
        _ => "structure_proxy",
    };
    let evidence = if category == "load_time" { "direct" } else { "proxy" };
    let unit = if name.ends_with("_ms") {
        "ms"
    } else if name.ends_with("_bytes") {
        "bytes"
    } else {
        "count"
    };
    (category, evidence, unit)
}

/// The scored metric groups, each from one representative metric of the comparison. Only a
/// conclusive metric is scored: one that improved or regressed beyond the band scores its
/// change, one that conclusively did not change scores 5; an inconclusive timing is shown
/// as inconclusive and left out of the score.
pub fn metric_groups(comparison: Option<&Comparison>) -> Vec<MetricGroup> {
    let metric = |name: &str| comparison?.metrics.iter().find(|m| m.name == name);
    [
        ("load_time", "Load time", "warm_open_ms", 3.0),
        ("composition", "Composition", "prim_count_authored", 2.0),
        ("storage_proxy", "Storage", "total_size_bytes", 1.0),
    ]
    .into_iter()
    .map(|(id, display_name, name, weight)| {
        let (score, status, summary, caveat) = match metric(name) {
            None => (None, "not_measured", "not measured in this run".to_string(), None),
            // Measured, but the rounds do not settle it: shown, not scored (the contract's
            // statuses have no "inconclusive"; the caveat says it).
            Some(m) if !m.conclusive => {
                (None, "not_measured", format!("{name} inconclusive"), Some(format!("inconclusive: {}", m.notes)))
            }
            Some(m) if m.verdict == Verdict::Neutral => {
                (Some(5.0), "measured", format!("{name} no change beyond 5%"), None)
            }
            Some(m) => {
                (Some(score::group_score(m.change_pct)), "measured", format!("{name} {:+.1}%", m.change_pct), None)
            }
        };
        MetricGroup {
            id: id.into(),
            display_name: display_name.into(),
            score,
            status: status.into(),
            weight,
            summary,
            caveat,
        }
    })
    .collect()
}

/// The overall score, held to the verdict: a mixed run is at most moderate, a regressed one
/// at most mixed, so a score never reads better than what was measured.
pub fn overall_score(groups: &[MetricGroup], verdict: Verdict) -> f64 {
    let score = score::overall(groups);
    match verdict {
        Verdict::Mixed => score.min(MIXED_CAP),
        Verdict::Regressed => score.min(REGRESSED_CAP),
        Verdict::Neutral | Verdict::Improved => score,
    }
}

/// Highest score of a mixed run (the top of "moderate") and of a regressed one ("mixed").
pub const MIXED_CAP: f64 = 7.4;
pub const REGRESSED_CAP: f64 = 4.4;

/// The warnings a reader must see first, in the report's `notes`.
pub fn notes(
    mode: WorkflowMode,
    branch: &str,
    comparison: Option<&Comparison>,
    preservation_failed: bool,
) -> Vec<String> {
    let mut notes = Vec::new();
    match mode {
        WorkflowMode::StructuralOnly => notes.push(
            "usd-optimize could not load in the executor runtime: Phases 4-5 (mesh operations) did not run; the \
             verdict covers structural signals only."
                .to_string(),
        ),
        WorkflowMode::NoOp if branch == "exit" => notes.push(
            "exit chosen at the restructure gate: diagnosis-only report, nothing was written besides the artifacts."
                .to_string(),
        ),
        WorkflowMode::NoOp => notes.push("the stage is already optimized: nothing was changed.".to_string()),
        WorkflowMode::Full => {}
    }
    if let Some(c) = comparison.filter(|c| c.metrics.is_empty()) {
        notes.push(format!("{}: no improvement is claimed.", c.summary));
    }
    if comparison.is_some_and(|c| c.critical) {
        notes.push("CRITICAL: a metric regressed by more than 20%: revert, do not publish without review.".into());
    }
    if comparison.is_some_and(|c| c.verdict == Verdict::Mixed) {
        notes.push("mixed verdict: some metrics improved and others regressed; this is not a plain success.".into());
    }
    if preservation_failed {
        notes.push(
            "PRESERVATION FAILED: an output changed the composed geometry beyond what its chain allows, or composes with \
             an error its source does not have; it was set aside (see target_coverage)."
                .into(),
        );
    }
    notes
}

/// A target's coverage in the contract's enum (optimized | skipped_zero_meshes |
/// skipped_user_declined | blocked) and why, where ours is finer. The contract has no "ran and
/// changed nothing": a chain that found nothing to do is declined for that target, since
/// `optimized` would claim a change the output does not have.
pub fn contract_disposition(ours: Disposition) -> (&'static str, Option<&'static str>) {
    match ours {
        Disposition::Optimized => ("optimized", None),
        Disposition::Unchanged => ("skipped_user_declined", Some("the chain ran and changed nothing (no-op)")),
        Disposition::SkippedZeroMeshes => ("skipped_zero_meshes", None),
        Disposition::SkippedUserDeclined => ("skipped_user_declined", None),
        Disposition::Blocked => ("blocked", None),
    }
}

/// The contract's repack rule: a structural change smaller than this (in percent) is no
/// saving of the optimization's own.
pub const STRUCTURAL_EPSILON_PCT: f64 = 1.0;

/// The footprint the contract block may carry: None when the only saving on disk is the
/// free re-encode (the contract forbids presenting it as the optimization's win).
pub fn contract_footprint(footprint: &Footprint) -> Option<Footprint> {
    let repack_only =
        footprint.structural_delta_pct > -STRUCTURAL_EPSILON_PCT && footprint.raw_delta_pct < -STRUCTURAL_EPSILON_PCT;
    (!repack_only).then(|| footprint.clone())
}

/// The de-duplication descent as the report states it (the contract's `frontier_*` keys).
#[derive(Clone, Debug, PartialEq)]
pub struct Convergence {
    pub converged: bool,
    pub rescan_new_groups: u64,
    /// Set when the user's answer at the restructure gate left reuse unshared.
    pub waiver_reason: Option<String>,
}

/// Convergence from what the run measured: a restructure's frontier (manifest or instancing
/// readiness), or, when nothing was authored, the assessment's shareable groups left as they
/// were. Reuse left standing by a branch that does not de-duplicate (optimize-as-is,
/// selective loading, exit) is the user's answer at the gate: recorded as a waiver naming it.
/// A de-duplicating branch that left reuse standing is not waived.
pub fn convergence(frontier: Option<&Frontier>, shareable_groups: u64, branch: &str, answered_by: &str) -> Convergence {
    let (converged, rescan) = match frontier {
        Some(f) => (f.descent_converged, f.final_rescan_new_groups_above_floor),
        None => (shareable_groups == 0, shareable_groups),
    };
    let deduplicating = matches!(branch, "deduplicate-internally" | "extract-as-assets");
    let waiver_reason = (!converged && !deduplicating).then(|| {
        format!(
            "the restructure gate was answered '{}' (by {answered_by}): {rescan} shareable group(s) of repeated subtrees \
             were left unshared",
            if branch.is_empty() { "none" } else { branch }
        )
    });
    Convergence { converged, rescan_new_groups: rescan, waiver_reason }
}

/// An op's `method` for the report: the tool, the op, its safety class and who authorised it,
/// never its arguments (an argument named after a geometry op would read as that op ran).
pub fn operation_method(operation: &str, safety: &str, authority: &str) -> String {
    format!("usd-optimize {operation} ({safety}, {authority})")
}

/// What the run could still have done.
#[derive(Clone, Debug, Default)]
pub struct Untapped<'a> {
    /// The full-stage validation sweep was skipped (not approved).
    pub full_sweep_skipped: bool,
    /// Ops the approval gate held back: (op, reason naming the flag that runs it).
    pub held_back: Vec<(&'a str, &'a str)>,
    /// The chain's deduplicateGeometry ran as a point instancer (Some(true)) or natively.
    pub dedupe_point_instancing: Option<bool>,
    /// The after-profile's warm-open change.
    pub warm_open_change_pct: Option<f64>,
}

pub fn untapped(route: &Route, found: &Untapped) -> Vec<String> {
    let mut options =
        vec!["lossy operations (decimateMeshes, mergeVertices with tolerance) were not considered in this pass"
            .to_string()];
    if found.full_sweep_skipped {
        options.push("full-stage validation sweep (usdtune optimize --approve-full-validation)".into());
    }
    for (operation, reason) in found.held_back.iter().filter(|(_, reason)| reason.contains("--approve")) {
        options.push(format!("{operation}: {reason}"));
    }
    // The after-profile must confirm the instancing form the evidence chose.
    if let (Some(point_instancing), Some(change)) = (found.dedupe_point_instancing, found.warm_open_change_pct) {
        if change > 5.0 {
            let form = if point_instancing { "point instancing" } else { "native instancing" };
            let alternative = if point_instancing {
                String::new()
            } else {
                format!(
                    "; point instancing opens single-mesh copies faster, and is chosen from {POINT_INSTANCER_MIN_COPIES} \
                     copies and {POINT_INSTANCER_MIN_COPIES_PER_GEOMETRY} per geometry"
                )
            };
            options.push(format!("the after-profile does not confirm {form}: warm open {change:+.1}%{alternative}"));
        }
    }
    if route.branch == "optimize-as-is" && route.classification == "monolithic-needs-restructure" {
        options.push("restructure (hierarchy dedupe) declined at the gate".into());
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuse_left_by_the_gate_is_a_waiver_and_a_dedupe_branch_never_waives() {
        let converged = Frontier {
            reuse_measured: true,
            distinct_prototypes: 4,
            total_units: 24,
            descent_converged: true,
            final_rescan_new_groups_above_floor: 0,
            unshared_groups: vec![],
        };
        let c = convergence(Some(&converged), 9, "deduplicate-internally", "flag");
        assert_eq!((c.converged, c.rescan_new_groups, c.waiver_reason), (true, 0, None));
        let as_is = convergence(None, 4, "optimize-as-is", "flag");
        assert!(!as_is.converged && as_is.rescan_new_groups == 4);
        assert!(as_is.waiver_reason.unwrap().contains("'optimize-as-is' (by flag)"));
        assert!(convergence(None, 0, "continue", "automatic").converged);
        let left = Frontier { descent_converged: false, final_rescan_new_groups_above_floor: 2, ..converged };
        let dedupe = convergence(Some(&left), 0, "extract-as-assets", "flag");
        assert_eq!((dedupe.converged, dedupe.waiver_reason), (false, None));
    }

    #[test]
    fn a_repack_only_saving_is_not_a_footprint_claim() {
        let footprint = |raw: f64, structural: f64| Footprint {
            raw_input_bytes: 100,
            repack_normalized_baseline_bytes: 40,
            optimized_bytes: 40,
            repack_delta_pct: -60.0,
            structural_delta_pct: structural,
            raw_delta_pct: raw,
            scored_against: "repack_normalized".into(),
        };
        assert!(contract_footprint(&footprint(-60.0, 0.0)).is_none());
        assert!(contract_footprint(&footprint(-60.0, -0.5)).is_none());
        assert!(contract_footprint(&footprint(-70.0, -25.0)).is_some());
        assert!(contract_footprint(&footprint(0.4, 0.4)).is_some(), "no saving claimed at all");
        assert_eq!(contract_disposition(Disposition::Unchanged).0, "skipped_user_declined");
        assert!(!operation_method("meshCleanup", "lossless", "auto").contains('{'));
    }

    #[test]
    fn the_mode_follows_the_route() {
        let route = |so, rec, branch| Route { so_available: so, phase_recommendation: rec, branch, classification: "" };
        assert_eq!(workflow_mode(&route(false, None, "optimize-as-is")), WorkflowMode::StructuralOnly);
        assert_eq!(workflow_mode(&route(true, Some("already_optimized"), "")), WorkflowMode::NoOp);
        assert_eq!(workflow_mode(&route(true, Some("structuring"), "exit")), WorkflowMode::NoOp);
        assert_eq!(workflow_mode(&route(true, Some("optimization"), "continue")), WorkflowMode::Full);
    }

    #[test]
    fn metrics_are_categorized_and_unmeasured_groups_are_not_scored() {
        assert_eq!(metric_kind("warm_open_ms"), ("load_time", "direct", "ms"));
        assert_eq!(metric_kind("total_size_bytes"), ("storage_proxy", "proxy", "bytes"));
        assert_eq!(metric_kind("layer_count"), ("composition", "proxy", "count"));
        let groups = metric_groups(None);
        assert!(groups.iter().all(|g| g.score.is_none() && g.status == "not_measured"));
        assert_eq!(overall_score(&groups, Verdict::Neutral), 5.0);
    }

    fn comparison(load: &[f64], prims_after: u64) -> Comparison {
        use crate::decisions::compare::{paired, Sample, Sizes};
        let sample = |open: f64, prims: u64| Sample {
            cold_open_ms: open,
            warm_open_ms: open,
            traverse_ms: open,
            traverse_full_ms: open,
            attribute_resolution_ms: open,
            transform_ms: open,
            prim_count: prims,
            prim_count_authored: prims,
            prim_count_with_instance_proxies: prims,
            layer_count: 1,
            instance_count: 0,
            prototype_count: 0,
            total_attributes: 1,
            total_size_bytes: 1,
        };
        let before: Vec<Sample> = load.iter().map(|l| sample(100.0 * l, 1000)).collect();
        let after: Vec<Sample> = load.iter().rev().map(|l| sample(100.0 * l, prims_after)).collect();
        let sizes = Sizes {
            raw_input_bytes: 10,
            repack_normalized_baseline_bytes: 10,
            optimized_bytes: 10,
            encoding: "usdc".into(),
        };
        paired(&before, &after, &sizes, false)
    }

    #[test]
    fn inconclusive_timings_are_not_scored_and_a_neutral_run_scores_five() {
        // Same stage, noisy rounds: every timing inconclusive, prims unchanged.
        let c = comparison(&[1.0, 2.0, 1.2, 2.5, 1.1, 2.8, 1.5], 1000);
        assert_eq!(c.verdict, Verdict::Neutral);
        let groups = metric_groups(Some(&c));
        let load = groups.iter().find(|g| g.id == "load_time").unwrap();
        assert_eq!((load.score, load.status.as_str()), (None, "not_measured"));
        assert!(load.summary.contains("inconclusive") && load.caveat.as_ref().unwrap().contains("interval"));
        assert_eq!(overall_score(&groups, c.verdict), 5.0);
        assert_eq!(score::label(overall_score(&groups, c.verdict)), "neutral");
    }

    #[test]
    fn a_mixed_run_is_never_excellent() {
        let groups = vec![
            MetricGroup {
                id: "composition".into(),
                display_name: String::new(),
                score: Some(10.0),
                status: "measured".into(),
                weight: 2.0,
                summary: String::new(),
                caveat: None,
            },
            MetricGroup {
                id: "storage_proxy".into(),
                display_name: String::new(),
                score: Some(10.0),
                status: "measured".into(),
                weight: 1.0,
                summary: String::new(),
                caveat: None,
            },
        ];
        assert_eq!(overall_score(&groups, Verdict::Improved), 10.0);
        assert_eq!(overall_score(&groups, Verdict::Mixed), MIXED_CAP);
        assert_ne!(score::label(MIXED_CAP), "excellent");
        assert_eq!(score::label(overall_score(&groups, Verdict::Regressed)), "mixed");
    }

    #[test]
    fn a_slower_instancing_form_and_a_declined_restructure_are_named() {
        let route = Route {
            so_available: true,
            branch: "optimize-as-is",
            classification: "monolithic-needs-restructure",
            ..Default::default()
        };
        let found = Untapped {
            dedupe_point_instancing: Some(false),
            warm_open_change_pct: Some(12.0),
            held_back: vec![(
                "decimateMeshes",
                "bounded-loss (auto-within-tolerance): not run without approval (--approve decimateMeshes)",
            )],
            ..Default::default()
        };
        let options = untapped(&route, &found);
        assert!(options.iter().any(|o| o.contains("does not confirm native instancing")));
        assert!(options.iter().any(|o| o.starts_with("decimateMeshes:")));
        assert!(options.last().unwrap().contains("declined at the gate"));
    }
}
