//! so-interpret-validators: evidence → op chain, checked against the seed's ordering
//! invariants before anything runs. This build selects lossless ops only; each op carries
//! the evidence that selected it. Hierarchy reuse is not an op here: apply-restructure
//! authors it in Phase 2f.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::validation::{self, ValidationReport};

mod catalog;
mod order;
mod pipelines;

pub use catalog::{classify, is_mesh_only, safety, Authority, Safety, OP_CATALOG};
pub use order::{check_order, ORDER_INVARIANTS};
pub use pipelines::{mm_to_stage_units, pipeline_chain, DECIMATE_BAND_MM, PIPELINES};

/// Phase 0 (the seed's termination table): operations the user asked for by name must be
/// runnable here. None of them can run without usd-optimize; each must be in
/// `operationsAvailable` of the usd-optimize that loaded.
pub fn check_requested(
    requested: &[String],
    so_version: Option<&str>,
    available: &[String],
) -> Result<(), (crate::outcome::Outcome, String)> {
    use crate::outcome::Outcome;
    if requested.is_empty() {
        return Ok(());
    }
    let Some(version) = so_version else {
        return Err((
            Outcome::BlockedMissingUsdOptimize,
            format!(
                "operations {} were requested but usd-optimize cannot load in the executor runtime",
                requested.join(", ")
            ),
        ));
    };
    let missing: Vec<&str> = requested.iter().filter(|op| !available.contains(op)).map(String::as_str).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err((
        Outcome::BlockedMissingUsdOptimizeOperation,
        format!(
            "requested operation(s) {} are not in operationsAvailable of usd-optimize {version}",
            missing.join(", ")
        ),
    ))
}

/// Evidence the chain is built from: the sites of every validator concept that found
/// something, keyed by concept once, plus the facts no validator reports.
///
/// The concept table (decisions::validation::CONCEPTS, `op_family`) is the one place that
/// says which operation addresses a concept: the chain reads evidence as (op, concept) and
/// a read that disagrees with the table panics (every chain path runs in the unit tests).
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    pub meters_per_unit: f64,
    /// Sites per concept over the Phase 2c (whole-stage) and Phase 4 (per-target) reports.
    pub sites: BTreeMap<String, u64>,
    /// Findings per concept: for grouping rules (geom_duplicates) one per group.
    pub findings: BTreeMap<String, u64>,
    /// Gprims without an authored extent (stage facts: no validator is needed to count them).
    pub prims_missing_extent: u64,
    /// Roots of the flagged enclosure pairs where the Tier 3 probe found occluded meshes.
    pub occlusion_pairs: Vec<String>,
    /// Copies were turned into shared prototypes in Phase 2f (their insides are instance
    /// proxies: deleting there would have to happen in the prototype).
    pub restructured: bool,
    pub instancing_in_play: bool,
    /// Prims whose reference, payload or sublayer did not resolve (MissingReferenceChecker):
    /// nothing composes under them, so they look like empty leaves, but they are content.
    pub unresolved_arc_prims: Vec<String>,
    /// The form a later pass runs deduplicateGeometry in (decisions::iterate), whatever the
    /// counts would choose.
    pub instancing_form: Option<InstancingForm>,
}

impl Evidence {
    /// Sites and findings of every concept in these reports, counted over every copy.
    pub fn from_reports(reports: &[&ValidationReport]) -> Self {
        let mut e = Self::default();
        for finding in reports.iter().flat_map(|r| r.findings.iter()) {
            *e.sites.entry(finding.concept.clone()).or_default() += finding.site_count;
            *e.findings.entry(finding.concept.clone()).or_default() += 1;
            if finding.concept == UNRESOLVED_ARC_CONCEPT {
                e.unresolved_arc_prims.extend(finding.sites.iter().cloned());
            }
        }
        e.unresolved_arc_prims.sort();
        e.unresolved_arc_prims.dedup();
        if let Some(targets) = reports.last() {
            e.occlusion_pairs = targets.occlusion_roots();
        }
        e
    }

    /// Sites of `concept`, read as evidence for `op`.
    pub fn sites(&self, op: &str, concept: &str) -> u64 {
        check_link(op, concept);
        self.sites.get(concept).copied().unwrap_or(0)
    }

    /// Findings of `concept` (groups, for a grouping rule), read as evidence for `op`.
    pub fn findings(&self, op: &str, concept: &str) -> u64 {
        check_link(op, concept);
        self.findings.get(concept).copied().unwrap_or(0)
    }

    /// The same evidence with `sites` sites (and one finding) of `concept`: for tests and tools.
    pub fn with(mut self, concept: &str, sites: u64) -> Self {
        self.sites.insert(concept.to_string(), sites);
        self.findings.insert(concept.to_string(), u64::from(sites > 0));
        self
    }
}

/// The validation concept whose sites are prims holding an arc that did not resolve.
const UNRESOLVED_ARC_CONCEPT: &str = "composition_missing_ref";

/// The chain reads a concept as evidence for the op the concept table names for it.
fn check_link(op: &str, concept: &str) {
    let family = validation::concept(concept).op_family;
    assert_eq!(family, op, "{concept} is addressed by {family}, not {op} (decisions::validation::CONCEPTS)");
}

#[derive(Clone, Debug, Serialize)]
pub struct PlannedOp {
    pub operation: &'static str,
    pub args: serde_json::Value,
    pub safety: Safety,
    pub authority: Authority,
    /// What selected it: the evidence, or the named pipeline the user asked for.
    pub evidence: String,
    /// "not needed" (lossless, automatic) or the approval that let it run.
    pub approval: String,
}

impl PlannedOp {
    fn new(operation: &'static str, args: serde_json::Value, evidence: String) -> Self {
        let (safety, authority) = classify(operation, &args);
        Self { operation, args, safety, authority, evidence, approval: String::new() }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Skipped {
    pub operation: &'static str,
    pub reason: String,
}

/// An op the evidence selected that does not run: held back for safety (unresolved content)
/// or for want of an approval. (Other skips mean the evidence did not ask for the op.)
pub fn is_held_back(skipped: &Skipped) -> bool {
    skipped.reason.starts_with(HELD_BACK) || skipped.reason.contains(NOT_APPROVED)
}

const HELD_BACK: &str = "held back:";
const NOT_APPROVED: &str = "not run without approval";

#[derive(Clone, Debug)]
pub struct Chain {
    pub operations: Vec<PlannedOp>,
    pub skipped: Vec<Skipped>,
    pub invariants_checked: Vec<&'static str>,
}

/// Geometric coincidence tolerance for "the same point": one micrometre, in stage units.
fn coincidence_tolerance(meters_per_unit: f64) -> f64 {
    1e-6 / meters_per_unit.max(1e-12)
}

/// Where mesh copies are many and each geometry has many of them, point instancing;
/// otherwise native instancing (measured, DESIGN.md: native instancing of 50,000 single-mesh
/// copies made open 1.3–2.1× slower, a point instancer 183× faster).
pub const POINT_INSTANCER_MIN_COPIES: u64 = 1_000;
pub const POINT_INSTANCER_MIN_COPIES_PER_GEOMETRY: u64 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstancingForm {
    PointInstancer,
    Native,
}

/// The instancing form for duplicate meshes, chosen from their counts, with the reason.
/// Multi-prim assemblies were shared by the restructure already (their insides are instance
/// proxies, which deduplicateGeometry leaves alone): what is left here are mesh copies.
pub fn instancing_form(e: &Evidence) -> (InstancingForm, String) {
    let copies = e.sites("deduplicateGeometry", "geom_duplicates");
    let per_geometry = copies / e.findings("deduplicateGeometry", "geom_duplicates").max(1);
    if let Some(form) = e.instancing_form {
        let reason = format!(
            "{}: {copies} copies, {per_geometry} per geometry; the form of a later pass, after the first pass's \
             after-profile contradicted the other (Phase 7)",
            super::iterate::form_name(form)
        );
        return (form, reason);
    }
    if copies >= POINT_INSTANCER_MIN_COPIES && per_geometry >= POINT_INSTANCER_MIN_COPIES_PER_GEOMETRY {
        (InstancingForm::PointInstancer, format!(
            "point instancer: {} copies, {per_geometry} per geometry (at least {POINT_INSTANCER_MIN_COPIES} and {POINT_INSTANCER_MIN_COPIES_PER_GEOMETRY}); \
             placements kept at float precision (orientationsf)", copies))
    } else {
        (InstancingForm::Native, format!(
            "native instancing: {} copies, {per_geometry} per geometry (a point instancer needs at least {POINT_INSTANCER_MIN_COPIES} and {POINT_INSTANCER_MIN_COPIES_PER_GEOMETRY})",
            copies))
    }
}

/// One meshCleanup step with the union of the passes the findings call for (config from
/// evidence: one cleanup, not one per checker), every other pass off and tolerance 0 (exact
/// coincidence). Welding can leave degenerate faces and unused points behind, so those passes
/// come with it. None when nothing calls for a cleanup.
pub fn mesh_cleanup_args(e: &Evidence) -> Option<serde_json::Value> {
    let weld = e.sites("meshCleanup", "vertex_weld") > 0;
    let degenerate = e.sites("meshCleanup", "topology_zero_area_faces") > 0;
    let duplicate = e.sites("meshCleanup", "topology_duplicate_faces") > 0;
    if !(weld || degenerate || duplicate) {
        return None;
    }
    Some(serde_json::json!({
        "tolerance": 0.0,
        "mergeVertices": weld, "mergeNeighbors": weld, "mergeBoundaries": weld,
        "contractDegenerateEdges": degenerate,
        "removeDegenerateFaces": weld || degenerate,
        "removeIsolatedVertices": weld || degenerate,
        "removeDuplicateFaces": duplicate,
        "coorientFaces": false, "makeManifold": false,
    }))
}

/// The chain evidence selects (config from evidence): lossless ops, each with why.
pub fn evidence_chain(e: &Evidence) -> (Vec<PlannedOp>, Vec<Skipped>) {
    use serde_json::json;
    let mut operations = Vec::new();
    let mut skipped = Vec::new();
    let mut pick = |op: &'static str, selected: bool, args: serde_json::Value, why: String, why_not: String| {
        if selected {
            operations.push(PlannedOp::new(op, args, why));
        } else {
            skipped.push(Skipped { operation: op, reason: why_not });
        }
    };
    let tolerance = coincidence_tolerance(e.meters_per_unit);
    // Internal geometry first: what the scoped probe found hidden inside opaque enclosures is
    // deleted (action 1) by the op itself, which checks occlusion again over the pair roots
    // and leaves transparent occluders out. Destructive: it runs only when approved.
    // Path expressions "<root>//": each pair root and everything below it.
    let occlusion_scope: Vec<String> = e.occlusion_pairs.iter().map(|root| format!("{root}//")).collect();
    pick(
        "findOccludedMeshes",
        !e.occlusion_pairs.is_empty() && !e.restructured,
        json!({"paths": occlusion_scope, "action": 1, "checkTransparency": true, "clustered": true, "useGpu": false}),
        format!(
            "{} meshes occluded inside {} flagged enclosure pair roots (Tier 3 probe)",
            e.sites("findOccludedMeshes", "spatial_occluded"),
            e.occlusion_pairs.len()
        ),
        if e.restructured {
            "occluded meshes lie inside shared prototypes: removing them there is not built yet".into()
        } else {
            "the Tier 3 probe found no occluded mesh".into()
        },
    );
    let cleanup = mesh_cleanup_args(e);
    pick(
        "meshCleanup",
        cleanup.is_some(),
        cleanup.unwrap_or_default(),
        format!(
            "{} meshes with coincident vertices, {} with degenerate faces, {} with duplicate faces",
            e.sites("meshCleanup", "vertex_weld"),
            e.sites("meshCleanup", "topology_zero_area_faces"),
            e.sites("meshCleanup", "topology_duplicate_faces")
        ),
        "no mergeable vertices, degenerate or duplicate faces found".into(),
    );
    let (form, form_reason) = instancing_form(e);
    // Deep transforms off: copies match on their local points, and each keeps its own
    // transform. With them on (the default), usd-optimize 1.3.1 placed copies up to 190
    // units away on its own deduplicateGeometryExample.usd (measured by the preservation proof).
    let dedupe_args = match form {
        InstancingForm::PointInstancer => json!({"tolerance": tolerance, "duplicateMethod": 4, "minimumDuplicates": 2,
                                                 "pointInstancerLocation": 0, "considerDeepTransforms": false}),
        InstancingForm::Native => {
            json!({"tolerance": tolerance, "duplicateMethod": 2, "considerDeepTransforms": false})
        }
    };
    let groups = e.findings("deduplicateGeometry", "geom_duplicates");
    pick(
        "deduplicateGeometry",
        groups > 0,
        dedupe_args,
        format!(
            "{} groups of identical meshes, {} copies (tolerance {tolerance:e} stage units); {form_reason}",
            groups,
            e.sites("deduplicateGeometry", "geom_duplicates")
        ),
        "no duplicate geometry found".into(),
    );
    pick(
        "computeExtents",
        e.prims_missing_extent > 0,
        json!({}),
        format!("{} gprims without authored extent", e.prims_missing_extent),
        "every gprim has an authored extent".into(),
    );
    // Exact repeats only (removeInterpolated off): a sample equal to both neighbours.
    let repeats = e.sites("optimizeTimeSamples", "perf_redundant_timesamples");
    pick(
        "optimizeTimeSamples",
        repeats > 0,
        json!({"removeInterpolated": false}),
        format!("{repeats} attributes hold time samples equal to their neighbours"),
        "no redundant time samples found".into(),
    );
    // Mode 0: duplicates are rebound to one survivor with the same network.
    let material_sets = e.sites("optimizeMaterials", "material_duplicates");
    pick(
        "optimizeMaterials",
        material_sets > 0,
        json!({"optimizeMaterialsMode": 0}),
        format!("{material_sets} sets of materials with identical networks"),
        "no duplicate materials found".into(),
    );
    // Last: earlier ops can leave grouping prims empty. Unloaded payloads only look empty.
    // A prim whose arc did not resolve composes nothing and looks like an empty leaf too: it is
    // kept (pruneLeaves has no way to spare it), and the proof checks its arc survives.
    let emptied_by_instancing = form == InstancingForm::PointInstancer && groups > 0;
    let empty_leaves = e.sites("pruneLeaves", "structure_empty_leaf");
    let unresolved = &e.unresolved_arc_prims;
    pick(
        "pruneLeaves",
        (empty_leaves > 0 || emptied_by_instancing) && unresolved.is_empty(),
        json!({"pruneMode": 1, "preserveUnloadedPayloads": true}),
        if emptied_by_instancing {
            format!("{empty_leaves} empty grouping leaves, and the Xforms point instancing empties")
        } else {
            format!("{empty_leaves} empty grouping leaves")
        },
        match unresolved.first() {
            Some(first) => format!(
                "{HELD_BACK} {} prim(s) hold a reference, payload or sublayer that did not resolve (first: {first}); \
                 they would be pruned as empty",
                unresolved.len()
            ),
            None => "no empty leaf prims found".into(),
        },
    );
    (operations, skipped)
}

/// Approval gate (operation-safety.md): an op runs unattended only when it is lossless and
/// automatic; anything else needs the user's approval of that op (`--approve OP`) or of its
/// whole class (`--approve bounded-loss`, `--approve destructive`). Unapproved ops are kept
/// out of the chain and listed with what would approve them.
pub fn gate(ops: Vec<PlannedOp>, approvals: &[String]) -> (Vec<PlannedOp>, Vec<Skipped>) {
    let mut kept = Vec::new();
    let mut held = Vec::new();
    for mut op in ops {
        let class = op.safety.as_str().replace('_', "-");
        let gated = op.safety != Safety::Lossless || op.authority == Authority::IntentGated;
        let approved_by = approvals.iter().find(|a| a.as_str() == op.operation || a.as_str() == class);
        match (gated, approved_by) {
            (false, _) => {
                op.approval = "not needed".into();
                kept.push(op);
            }
            (true, Some(approval)) => {
                op.approval = format!("approved by --approve {approval}");
                kept.push(op);
            }
            (true, None) => held.push(Skipped {
                operation: op.operation,
                reason: format!("{class} ({}): {NOT_APPROVED} (--approve {})", op.authority.as_str(), op.operation),
            }),
        }
    }
    (kept, held)
}

/// What an explicit request says (`--operation`), where the evidence did not select the op.
pub const REQUESTED_BY_NAME: &str = "requested by name (--operation)";

/// An op the user asked for by name, with the arguments a named pipeline gives it (so
/// decimateMeshes keeps pinBoundaries and stops at the visual band), else usd-optimize's
/// defaults (`{}`).
pub fn requested_op(name: &str, meters_per_unit: f64) -> PlannedOp {
    let from_pipeline = PIPELINES
        .iter()
        .filter_map(|p| pipeline_chain(p, meters_per_unit).ok())
        .flatten()
        .find(|o| o.operation == name);
    let mut op = from_pipeline.unwrap_or_else(|| {
        // PlannedOp names ops by static str: a catalog name, or (an op this build does not
        // classify, which fails closed as destructive) the name kept for the run's lifetime.
        let known = OP_CATALOG.iter().map(|(op, ..)| *op).find(|op| *op == name);
        let operation = known.unwrap_or_else(|| Box::leak(name.to_string().into_boxed_str()));
        PlannedOp::new(operation, serde_json::json!({}), String::new())
    });
    op.evidence = REQUESTED_BY_NAME.into();
    op
}

/// Requested ops of the catalog that would wait for an approval nobody gave (op key or
/// class): what a run asks for by name must run or be refused up front, never be dropped
/// silently. (A name the catalog does not know is Phase 0's to judge against
/// `operationsAvailable`; if it runs there, it is gated as destructive.)
pub fn unapproved_requests(requested: &[String], approvals: &[String]) -> Vec<PlannedOp> {
    let known = requested.iter().filter(|name| OP_CATALOG.iter().any(|(op, ..)| op == name));
    let ops = known.map(|name| requested_op(name, 1.0)).collect();
    gate(ops, approvals).1.iter().map(|held| requested_op(held.operation, 1.0)).collect()
}

/// One line per op for an approval prompt or refusal: its class, authority and the
/// arguments it runs with (tolerances in the units of a 1 m/unit stage; a run converts them).
pub fn guardrails(op: &PlannedOp) -> String {
    format!("{} ({}, {}): {}", op.operation, op.safety.as_str(), op.authority.as_str(), op.args)
}

/// Put `op` in the chain where the ordering invariants want it: after every op that must
/// come before it, and before computeExtents (extents are measured last) when nothing else
/// decides.
fn place(ops: &mut Vec<PlannedOp>, op: PlannedOp) {
    let name = op.operation;
    let at = |other: &str| ops.iter().position(|o| o.operation == other);
    let after = ORDER_INVARIANTS.iter().filter(|(_, a, _)| *a == name).filter_map(|(b, ..)| at(b)).max();
    let before = ORDER_INVARIANTS.iter().filter(|(b, ..)| *b == name).filter_map(|(_, a, _)| at(a)).min();
    let index = match (after, before) {
        (Some(after), _) => after + 1,
        (None, Some(before)) => before,
        (None, None) => at("computeExtents").unwrap_or(ops.len()),
    };
    ops.insert(index.min(ops.len()), op);
}

/// The chain for a run: the named pipeline the user asked for, else what evidence selects,
/// with every op requested by name placed in it; then the approval gate and the ordering
/// invariants (a violation names its rule).
pub fn build_chain(
    e: &Evidence,
    pipeline: Option<&str>,
    approvals: &[String],
    requested: &[String],
) -> Result<Chain, String> {
    let (mut ops, mut skipped) = match pipeline {
        Some(name) => (pipeline_chain(name, e.meters_per_unit)?, Vec::new()),
        None => evidence_chain(e),
    };
    for name in requested {
        match ops.iter_mut().find(|o| o.operation == name) {
            Some(selected) => selected.evidence = format!("{}; also {REQUESTED_BY_NAME}", selected.evidence),
            None => {
                skipped.retain(|s| s.operation != name);
                place(&mut ops, requested_op(name, e.meters_per_unit));
            }
        }
    }
    let (operations, held) = gate(ops, approvals);
    skipped.extend(held);
    let names: Vec<&str> = operations.iter().map(|o| o.operation).collect();
    let invariants_checked = check_order(&names, e.instancing_in_play)?;
    Ok(Chain { operations, skipped, invariants_checked })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Evidence of a stage in `meters_per_unit` with these (concept, sites) findings.
    fn evidence(meters_per_unit: f64, found: &[(&str, u64)]) -> Evidence {
        found.iter().fold(Evidence { meters_per_unit, ..Default::default() }, |e, (c, n)| e.with(c, *n))
    }

    /// `groups` groups of identical meshes with `copies` copies in all.
    fn duplicates(mut e: Evidence, groups: u64, copies: u64) -> Evidence {
        e.sites.insert("geom_duplicates".into(), copies);
        e.findings.insert("geom_duplicates".into(), groups);
        e
    }

    #[test]
    fn evidence_selects_each_op_and_records_why() {
        let e = Evidence { prims_missing_extent: 268, ..duplicates(evidence(1.0, &[("vertex_weld", 268)]), 5, 0) };
        let chain = build_chain(&e, None, &[], &[]).unwrap();
        let ops: Vec<_> = chain.operations.iter().map(|o| o.operation).collect();
        assert_eq!(ops, ["meshCleanup", "deduplicateGeometry", "computeExtents"]);
        assert!(chain.operations[0].evidence.contains("268 meshes"));
        assert!(chain.operations.iter().all(|o| o.safety == Safety::Lossless));
    }

    #[test]
    fn an_op_requested_by_name_runs_in_its_place_or_waits_for_its_approval() {
        let e = Evidence { prims_missing_extent: 3, ..duplicates(evidence(0.01, &[("vertex_weld", 4)]), 2, 6) };
        let asked = ["decimateMeshes".to_string(), "flattenHierarchy".to_string(), "meshCleanup".to_string()];
        let chain = build_chain(&e, None, &["decimateMeshes".into()], &asked).unwrap();
        let ops: Vec<_> = chain.operations.iter().map(|o| o.operation).collect();
        // After meshCleanup and deduplicateGeometry (the invariants), before computeExtents.
        assert_eq!(ops, ["meshCleanup", "deduplicateGeometry", "decimateMeshes", "flattenHierarchy", "computeExtents"]);
        let decimate = &chain.operations[2];
        assert_eq!(decimate.evidence, REQUESTED_BY_NAME);
        assert_eq!(decimate.args["pinBoundaries"], true, "the pipeline's guardrails come with it");
        assert!((decimate.args["maxMeanError"].as_f64().unwrap() - 0.01).abs() < 1e-12, "0.1 mm in centimetres");
        assert!(chain.operations[0].evidence.ends_with(&format!("also {REQUESTED_BY_NAME}")));
        // Without the approval it is held back, and the submission is refused up front.
        let held = build_chain(&e, None, &[], &asked).unwrap();
        assert!(!held.operations.iter().any(|o| o.operation == "decimateMeshes"));
        let unapproved: Vec<_> = unapproved_requests(&asked, &[]).iter().map(|o| o.operation).collect();
        assert_eq!(unapproved, ["decimateMeshes"]);
        assert!(unapproved_requests(&asked, &["bounded-loss".into()]).is_empty());
        // A name the catalog does not know is left to Phase 0 (operationsAvailable); in a
        // chain it fails closed, waiting for an approval.
        assert!(unapproved_requests(&["someNewOp".into()], &[]).is_empty());
        let unknown = build_chain(&e, None, &[], &["someNewOp".into()]).unwrap();
        assert!(unknown.skipped.iter().any(|s| s.operation == "someNewOp" && is_held_back(s)));
    }

    #[test]
    fn clean_stage_gets_an_empty_chain() {
        let chain = build_chain(&Evidence { meters_per_unit: 0.01, ..Default::default() }, None, &[], &[]).unwrap();
        assert!(chain.operations.is_empty());
        assert_eq!(chain.skipped.len(), 7);
    }

    #[test]
    fn one_cleanup_step_carries_the_union_of_what_the_findings_call_for() {
        let weld_only = evidence(1.0, &[("vertex_weld", 3)]);
        let args = mesh_cleanup_args(&weld_only).unwrap();
        assert_eq!(args["mergeVertices"], true);
        assert_eq!(args["removeDegenerateFaces"], true, "welding can collapse faces");
        assert_eq!(args["removeDuplicateFaces"], false);
        assert_eq!(args["contractDegenerateEdges"], false);
        let duplicate_faces = evidence(1.0, &[("topology_duplicate_faces", 1), ("topology_zero_area_faces", 2)]);
        let args = mesh_cleanup_args(&duplicate_faces).unwrap();
        assert_eq!(
            (
                args["mergeVertices"].clone(),
                args["removeDuplicateFaces"].clone(),
                args["contractDegenerateEdges"].clone()
            ),
            (false.into(), true.into(), true.into())
        );
        assert_eq!(classify("meshCleanup", &args), (Safety::Lossless, Authority::Auto));
        assert!(mesh_cleanup_args(&Evidence::default()).is_none());
    }

    #[test]
    fn tier_one_findings_select_their_lossless_ops_with_prune_last() {
        let e = duplicates(
            evidence(
                1.0,
                &[("perf_redundant_timesamples", 4), ("structure_empty_leaf", 2), ("material_duplicates", 1)],
            ),
            1,
            0,
        );
        let chain = build_chain(&e, None, &[], &[]).unwrap();
        let ops: Vec<_> = chain.operations.iter().map(|o| o.operation).collect();
        assert_eq!(ops, ["deduplicateGeometry", "optimizeTimeSamples", "optimizeMaterials", "pruneLeaves"]);
        assert_eq!(chain.operations[1].args["removeInterpolated"], false, "exact repeats only: lossless");
        assert!(chain.operations[3].evidence.contains("2 empty grouping leaves"));
    }

    #[test]
    fn prims_whose_arcs_did_not_resolve_hold_back_pruning() {
        let mut e = evidence(1.0, &[("structure_empty_leaf", 2)]);
        e.unresolved_arc_prims = vec!["/World".into()];
        let chain = build_chain(&e, None, &[], &[]).unwrap();
        assert!(chain.operations.iter().all(|o| o.operation != "pruneLeaves"));
        let held = chain.skipped.iter().find(|s| s.operation == "pruneLeaves").unwrap();
        assert!(held.reason.starts_with("held back: 1 prim(s)") && held.reason.contains("/World"), "{}", held.reason);
        assert!(is_held_back(held));
        assert!(!chain.skipped.iter().any(|s| s.operation == "meshCleanup" && is_held_back(s)), "not asked for");
    }

    #[test]
    fn many_small_copies_choose_a_point_instancer_and_few_choose_native_instancing() {
        let few = duplicates(evidence(1.0, &[]), 5, 40);
        let chain = build_chain(&few, None, &[], &[]).unwrap();
        let dedupe = chain.operations.iter().find(|o| o.operation == "deduplicateGeometry").unwrap();
        assert_eq!(dedupe.args["duplicateMethod"], 2);
        assert_eq!(dedupe.safety, Safety::Lossless);
        let many = duplicates(few.clone(), 20, 50_000);
        assert_eq!(instancing_form(&many).0, InstancingForm::PointInstancer);
        let chain = build_chain(&many, None, &[], &[]).unwrap();
        let ops: Vec<_> = chain.operations.iter().map(|o| o.operation).collect();
        assert_eq!(ops, ["deduplicateGeometry", "pruneLeaves"], "the emptied Xforms go too");
        assert_eq!(chain.operations[0].args["duplicateMethod"], 4);
        assert_eq!(chain.operations[0].safety, Safety::Lossless, "placements are kept at float precision");
        assert!(chain.operations[0].evidence.contains("point instancer"));
        // Many copies of many different geometries: too few per geometry for a point instancer.
        let spread = duplicates(few, 2_000, 5_000);
        assert_eq!(instancing_form(&spread).0, InstancingForm::Native);
    }

    #[test]
    fn tolerance_scales_with_stage_units() {
        assert!((coincidence_tolerance(0.01) - 1e-4).abs() < 1e-15);
        assert!((coincidence_tolerance(1.0) - 1e-6).abs() < 1e-18);
    }

    #[test]
    fn approvals_let_bounded_loss_and_destructive_ops_through() {
        let e = Evidence { meters_per_unit: 0.01, ..Default::default() };
        let chain = build_chain(&e, Some("mesh-count-reduction"), &[], &[]).unwrap();
        assert_eq!(
            chain.operations.iter().map(|o| o.operation).collect::<Vec<_>>(),
            ["meshCleanup", "deduplicateGeometry"]
        );
        let held: Vec<_> = chain.skipped.iter().map(|s| s.operation).collect();
        assert_eq!(held, ["removeSmallGeometry", "decimateMeshes"]);
        let chain =
            build_chain(&e, Some("mesh-count-reduction"), &["decimateMeshes".into(), "destructive".into()], &[])
                .unwrap();
        assert_eq!(chain.operations.len(), 4);
        let decimate = chain.operations.iter().find(|o| o.operation == "decimateMeshes").unwrap();
        assert_eq!(decimate.safety, Safety::BoundedLoss);
        assert_eq!(decimate.approval, "approved by --approve decimateMeshes");
        // 0.1 mm in a centimetre stage is 0.01 stage units.
        assert!((decimate.args["maxMeanError"].as_f64().unwrap() - 0.01).abs() < 1e-12);
    }

    #[test]
    fn occluded_geometry_goes_first_and_only_when_approved() {
        let e = Evidence {
            occlusion_pairs: vec!["/F/M/Housing".into(), "/F/M/Motor".into()],
            ..evidence(1.0, &[("spatial_occluded", 3), ("vertex_weld", 5)])
        };
        let held = build_chain(&e, None, &[], &[]).unwrap();
        assert_eq!(held.operations[0].operation, "meshCleanup");
        assert!(held
            .skipped
            .iter()
            .any(|s| s.operation == "findOccludedMeshes" && s.reason.contains("--approve findOccludedMeshes")));
        let approved = build_chain(&e, None, &["findOccludedMeshes".into()], &[]).unwrap();
        assert_eq!(approved.operations[0].operation, "findOccludedMeshes");
        assert_eq!(approved.operations[0].safety, Safety::Destructive);
        let restructured =
            build_chain(&Evidence { restructured: true, ..e }, None, &["destructive".into()], &[]).unwrap();
        assert!(restructured.operations.iter().all(|o| o.operation != "findOccludedMeshes"));
    }

    #[test]
    fn evidence_is_keyed_by_concept_and_read_for_the_op_the_concept_table_names() {
        let e = evidence(1.0, &[("vertex_weld", 3)]);
        assert_eq!(e.sites("meshCleanup", "vertex_weld"), 3);
        assert_eq!(e.sites("optimizeTimeSamples", "perf_redundant_timesamples"), 0, "nothing found: no sites");
        let misread = std::panic::catch_unwind(|| e.sites("deduplicateGeometry", "vertex_weld"));
        assert!(misread.is_err(), "a concept read as evidence for another op is refused");
    }

    #[test]
    fn requested_operations_block_when_they_cannot_run() {
        use crate::outcome::Outcome;
        let available = vec!["meshCleanup".to_string()];
        assert!(check_requested(&[], None, &[]).is_ok());
        assert!(check_requested(&["meshCleanup".into()], Some("1.3.1"), &available).is_ok());
        assert_eq!(
            check_requested(&["meshCleanup".into()], None, &[]).unwrap_err().0,
            Outcome::BlockedMissingUsdOptimize
        );
        let (code, why) = check_requested(&["decimateMeshes".into()], Some("1.3.1"), &available).unwrap_err();
        assert_eq!(code, Outcome::BlockedMissingUsdOptimizeOperation);
        assert!(why.contains("decimateMeshes") && why.contains("1.3.1"), "{why}");
    }
}
