//! What the optimization report concludes (Phase 6d): the workflow mode, how each compared
//! metric is categorized and scored, the warnings a reader must see, and the options the
//! run left untapped. Plain functions over the run's route and its measured results; the
//! report module (crate::report) assembles the document from them.

use serde::{Deserialize, Serialize};

use super::compare::{Comparison, Verdict};
use super::op_chain::{POINT_INSTANCER_MIN_COPIES, POINT_INSTANCER_MIN_COPIES_PER_GEOMETRY};
use super::score::{self, MetricGroup};

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

/// The scored metric groups: each group is scored from one representative metric's change.
pub fn metric_groups(comparison: Option<&Comparison>) -> Vec<MetricGroup> {
    let change = |metric: &str| comparison?.metrics.iter().find(|m| m.name == metric).map(|m| m.change_pct);
    [
        ("load_time", "Load time", "warm_open_ms", 3.0),
        ("composition", "Composition", "prim_count_authored", 2.0),
        ("storage_proxy", "Storage", "total_size_bytes", 1.0),
    ]
    .into_iter()
    .map(|(id, display_name, metric, weight)| {
        let change = change(metric);
        MetricGroup {
            id: id.into(),
            display_name: display_name.into(),
            score: change.map(score::group_score),
            status: if change.is_some() { "measured" } else { "not_measured" }.into(),
            weight,
            summary: change.map(|c| format!("{metric} {c:+.1}%")).unwrap_or_else(|| "not measured in this run".into()),
        }
    })
    .collect()
}

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
    if comparison.is_some_and(|c| c.critical) {
        notes.push("CRITICAL: a metric regressed by more than 20%: revert, do not publish without review.".into());
    }
    if comparison.is_some_and(|c| c.verdict == Verdict::Mixed) {
        notes.push("mixed verdict: some metrics improved and others regressed; this is not a plain success.".into());
    }
    if preservation_failed {
        notes.push(
            "PRESERVATION FAILED: the lossless chain changed the composed geometry; its output was discarded (see \
             target_coverage)."
                .into(),
        );
    }
    notes
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
        assert_eq!(score::overall(&groups), 5.0);
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
