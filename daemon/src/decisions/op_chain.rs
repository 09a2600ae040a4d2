//! so-interpret-validators: evidence → op chain, checked against the seed's ordering
//! invariants before anything runs. This build selects lossless ops only; each op carries
//! the evidence that selected it. Hierarchy reuse is not an op here: apply-restructure
//! authors it in Phase 2f.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Safety {
    Lossless,
    BoundedLoss,
    Destructive,
}

/// Who decides that an op runs (operation-safety.md "apply authority"; the `apply_authority`
/// field of the upstream operations catalog).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Authority {
    Auto,
    AutoWithinTolerance,
    IntentGated,
}

/// Safety class and apply authority of every usd-optimize operation, from the upstream
/// operations catalog (`loss_class`, `apply_authority`). Bounded-loss ops that delete prims
/// or collapse identity are classed destructive here; analysis-only ops are lossless (they
/// change nothing by themselves; findOccludedMeshes applies through removePrims).
pub const OP_CATALOG: &[(&str, Safety, Authority)] = &[
    ("boxClip", Safety::Destructive, Authority::IntentGated),
    ("computeExtents", Safety::Lossless, Authority::Auto),
    ("countVertices", Safety::Lossless, Authority::Auto),
    ("decimateMeshes", Safety::BoundedLoss, Authority::AutoWithinTolerance),
    ("deduplicateGeometry", Safety::Lossless, Authority::Auto),
    ("deduplicateHierarchies", Safety::Lossless, Authority::IntentGated),
    ("deleteHiddenPrims", Safety::Destructive, Authority::IntentGated),
    ("deletePrims", Safety::Destructive, Authority::IntentGated),
    ("diceMeshes", Safety::BoundedLoss, Authority::IntentGated),
    ("editStageMetrics", Safety::Lossless, Authority::Auto),
    ("findCoincidingGeometry", Safety::Lossless, Authority::Auto),
    ("findFlatHierarchies", Safety::Lossless, Authority::Auto),
    ("findOccludedMeshes", Safety::Lossless, Authority::IntentGated),
    ("findOverlappingMeshes", Safety::Lossless, Authority::Auto),
    ("fitPrimitives", Safety::BoundedLoss, Authority::AutoWithinTolerance),
    ("flattenHierarchy", Safety::Lossless, Authority::Auto),
    ("generateAtlasUVs", Safety::Lossless, Authority::Auto),
    ("generateNormals", Safety::Lossless, Authority::Auto),
    ("generateProjectionUVs", Safety::Lossless, Authority::Auto),
    ("manifoldMeshes", Safety::BoundedLoss, Authority::IntentGated),
    ("merge", Safety::Destructive, Authority::IntentGated),
    ("mergeVertices", Safety::Lossless, Authority::Auto),
    // Lossless at tolerance 0 without its topology-repair sub-modes (see `classify`).
    ("meshCleanup", Safety::Lossless, Authority::IntentGated),
    ("optimizeMaterials", Safety::Lossless, Authority::Auto),
    ("optimizePrimvars", Safety::Lossless, Authority::Auto),
    ("optimizeSkelRoots", Safety::Lossless, Authority::Auto),
    ("optimizeTimeSamples", Safety::Lossless, Authority::Auto),
    ("organizePrototypes", Safety::Lossless, Authority::Auto),
    ("pivot", Safety::Lossless, Authority::Auto),
    ("primitivesToMeshes", Safety::Lossless, Authority::Auto),
    ("pruneLeaves", Safety::Lossless, Authority::Auto),
    ("pythonScript", Safety::Destructive, Authority::IntentGated),
    ("remeshMeshes", Safety::BoundedLoss, Authority::IntentGated),
    ("removeAttributes", Safety::Destructive, Authority::IntentGated),
    ("removePrims", Safety::Destructive, Authority::IntentGated),
    ("removeSmallGeometry", Safety::Destructive, Authority::IntentGated),
    ("removeUntypedPrims", Safety::Destructive, Authority::IntentGated),
    ("removeUnusedUVs", Safety::Lossless, Authority::Auto),
    ("shrinkwrap", Safety::BoundedLoss, Authority::IntentGated),
    ("sparseMeshes", Safety::BoundedLoss, Authority::IntentGated),
    ("splitMeshes", Safety::Lossless, Authority::Auto),
    ("subdivideMeshes", Safety::Lossless, Authority::Auto),
    ("triangulateMeshes", Safety::Lossless, Authority::Auto),
];

/// An op's safety class and authority as invoked with `args`. Unknown ops are destructive
/// and intent-gated (fail closed). meshCleanup is lossless and runs unattended at tolerance 0
/// without makeManifold/coorientFaces (weld and degenerate cleanup); its topology repair,
/// or a positive weld tolerance, is bounded loss and needs a decision. deduplicateGeometry
/// stays lossless as a point instancer too: usd-optimize writes half-precision orientations,
/// and the executor re-authors every placement at float precision from the copy it replaced
/// (kit-extension/.../instancer_precision.py), or fails the target.
pub fn classify(operation: &str, args: &serde_json::Value) -> (Safety, Authority) {
    let (safety, authority) = OP_CATALOG
        .iter()
        .find(|(op, ..)| *op == operation)
        .map(|(_, s, a)| (*s, *a))
        .unwrap_or((Safety::Destructive, Authority::IntentGated));
    if operation == "findOccludedMeshes" {
        // Analysis by itself; with an action (1 Delete, 2 Deactivate, 3 Hide) it removes content.
        return match args["action"].as_i64() {
            Some(0) | None => (Safety::Lossless, Authority::IntentGated),
            Some(_) => (Safety::Destructive, Authority::IntentGated),
        };
    }
    if operation == "meshCleanup" {
        let repairs = ["makeManifold", "coorientFaces"].iter().any(|k| args[*k] == true);
        let welds_apart = args["tolerance"].as_f64().unwrap_or(0.0) > 0.0;
        return if repairs || welds_apart {
            (Safety::BoundedLoss, Authority::IntentGated)
        } else {
            (Safety::Lossless, Authority::Auto)
        };
    }
    (safety, authority)
}

/// Ops that only ever touch meshes: a target without meshes has nothing for them. (Time
/// samples, materials, extents of other gprims and empty leaves are work without meshes.)
pub fn is_mesh_only(operation: &str) -> bool {
    matches!(
        operation,
        "meshCleanup"
            | "deduplicateGeometry"
            | "decimateMeshes"
            | "findOccludedMeshes"
            | "removeSmallGeometry"
            | "generateNormals"
            | "mergeVertices"
            | "triangulateMeshes"
            | "splitMeshes"
            | "merge"
            | "sparseMeshes"
            | "remeshMeshes"
    )
}

pub fn safety(operation: &str) -> Safety {
    classify(operation, &serde_json::Value::Null).0
}

/// "A before B" invariants of the seed's "Operation ordering invariants".
pub const ORDER_INVARIANTS: &[(&str, &str, &str)] = &[
    ("findOccludedMeshes", "meshCleanup", "findOccludedMeshes + removePrims BEFORE meshCleanup"),
    ("removePrims", "meshCleanup", "findOccludedMeshes + removePrims BEFORE meshCleanup"),
    ("findOccludedMeshes", "deduplicateGeometry", "findOccludedMeshes + removePrims BEFORE deduplicateGeometry"),
    ("removePrims", "deduplicateGeometry", "findOccludedMeshes + removePrims BEFORE deduplicateGeometry"),
    ("deduplicateHierarchies", "deduplicateGeometry", "hierarchy reuse before mesh-level deduplicateGeometry"),
    ("meshCleanup", "decimateMeshes", "meshCleanup BEFORE decimateMeshes"),
    ("deduplicateGeometry", "decimateMeshes", "deduplicateGeometry BEFORE decimateMeshes"),
    ("generateNormals", "meshCleanup", "generateNormals BEFORE meshCleanup"),
    ("removePrims", "pruneLeaves", "removePrims BEFORE pruneLeaves"),
];

/// Returns the first violated invariant, named as the seed names it.
pub fn check_order(chain: &[&str], instancing_in_play: bool) -> Result<Vec<&'static str>, String> {
    let position = |op: &str| chain.iter().position(|c| *c == op);
    for (before, after, rule) in ORDER_INVARIANTS {
        if let (Some(b), Some(a)) = (position(before), position(after)) {
            if b > a {
                return Err(format!("{after} is placed before {before}: violates \"{rule}\""));
            }
        }
    }
    if instancing_in_play && position("merge").is_some() {
        return Err("merge with instancing in play: violates \"Never merge if scenegraph-instanced / point-instanced geometry is in play\"".into());
    }
    let mut checked: Vec<&'static str> = ORDER_INVARIANTS.iter().map(|(_, _, r)| *r).collect();
    checked.dedup();
    checked.push("never merge with instancing in play");
    Ok(checked)
}

/// Evidence the chain is built from (counts from so-findings and the assessment).
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    pub meters_per_unit: f64,
    pub meshes_with_mergeable_vertices: u64,
    pub meshes_with_degenerate_faces: u64,
    pub meshes_with_duplicate_faces: u64,
    /// Attributes whose time samples repeat their neighbours (perf_redundant_timesamples).
    pub attributes_with_redundant_samples: u64,
    /// Empty grouping leaves (structure_empty_leaf).
    pub empty_leaves: u64,
    /// Sets of materials with identical networks (material_duplicates).
    pub duplicate_material_sets: u64,
    pub duplicate_geometry_groups: u64,
    /// Meshes in those groups (every copy, the first included).
    pub duplicate_geometry_copies: u64,
    pub prims_missing_extent: u64,
    /// Roots of the flagged enclosure pairs where the Tier 3 probe found occluded meshes.
    pub occlusion_pairs: Vec<String>,
    pub occluded_meshes: u64,
    /// Copies were turned into shared prototypes in Phase 2f (their insides are instance
    /// proxies: deleting there would have to happen in the prototype).
    pub restructured: bool,
    pub instancing_in_play: bool,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstancingForm {
    PointInstancer,
    Native,
}

/// The instancing form for duplicate meshes, chosen from their counts, with the reason.
/// Multi-prim assemblies were shared by the restructure already (their insides are instance
/// proxies, which deduplicateGeometry leaves alone): what is left here are mesh copies.
pub fn instancing_form(e: &Evidence) -> (InstancingForm, String) {
    let per_geometry = e.duplicate_geometry_copies / e.duplicate_geometry_groups.max(1);
    if e.duplicate_geometry_copies >= POINT_INSTANCER_MIN_COPIES
        && per_geometry >= POINT_INSTANCER_MIN_COPIES_PER_GEOMETRY
    {
        (InstancingForm::PointInstancer, format!(
            "point instancer: {} copies, {per_geometry} per geometry (at least {POINT_INSTANCER_MIN_COPIES} and {POINT_INSTANCER_MIN_COPIES_PER_GEOMETRY}); \
             placements kept at float precision (orientationsf)", e.duplicate_geometry_copies))
    } else {
        (InstancingForm::Native, format!(
            "native instancing: {} copies, {per_geometry} per geometry (a point instancer needs at least {POINT_INSTANCER_MIN_COPIES} and {POINT_INSTANCER_MIN_COPIES_PER_GEOMETRY})",
            e.duplicate_geometry_copies))
    }
}

/// One meshCleanup step with the union of the passes the findings call for (config from
/// evidence: one cleanup, not one per checker), every other pass off and tolerance 0 (exact
/// coincidence). Welding can leave degenerate faces and unused points behind, so those passes
/// come with it. None when nothing calls for a cleanup.
pub fn mesh_cleanup_args(e: &Evidence) -> Option<serde_json::Value> {
    let weld = e.meshes_with_mergeable_vertices > 0;
    let degenerate = e.meshes_with_degenerate_faces > 0;
    let duplicate = e.meshes_with_duplicate_faces > 0;
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
            e.occluded_meshes,
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
            e.meshes_with_mergeable_vertices, e.meshes_with_degenerate_faces, e.meshes_with_duplicate_faces
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
    pick(
        "deduplicateGeometry",
        e.duplicate_geometry_groups > 0,
        dedupe_args,
        format!(
            "{} groups of identical meshes, {} copies (tolerance {tolerance:e} stage units); {form_reason}",
            e.duplicate_geometry_groups, e.duplicate_geometry_copies
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
    pick(
        "optimizeTimeSamples",
        e.attributes_with_redundant_samples > 0,
        json!({"removeInterpolated": false}),
        format!("{} attributes hold time samples equal to their neighbours", e.attributes_with_redundant_samples),
        "no redundant time samples found".into(),
    );
    // Mode 0: duplicates are rebound to one survivor with the same network.
    pick(
        "optimizeMaterials",
        e.duplicate_material_sets > 0,
        json!({"optimizeMaterialsMode": 0}),
        format!("{} sets of materials with identical networks", e.duplicate_material_sets),
        "no duplicate materials found".into(),
    );
    // Last: earlier ops can leave grouping prims empty. Unloaded payloads only look empty.
    let emptied_by_instancing = form == InstancingForm::PointInstancer && e.duplicate_geometry_groups > 0;
    pick(
        "pruneLeaves",
        e.empty_leaves > 0 || emptied_by_instancing,
        json!({"pruneMode": 1, "preserveUnloadedPayloads": true}),
        if emptied_by_instancing {
            format!("{} empty grouping leaves, and the Xforms point instancing empties", e.empty_leaves)
        } else {
            format!("{} empty grouping leaves", e.empty_leaves)
        },
        "no empty leaf prims found".into(),
    );
    (operations, skipped)
}

/// The named pipelines a user can ask for (usd-optimize's `pipelines.json`, as the upstream
/// operations catalog lists their members), in an order that keeps every invariant.
pub const PIPELINES: &[&str] =
    &["safe-cleanup", "memory-reduction", "load-time-reduction", "mesh-count-reduction", "data-quality-baseline"];

/// Conservative visual band of decimateMeshes for a component (units-and-tolerances.md).
pub const DECIMATE_BAND_MM: f64 = 0.1;

/// `mm` of real-world length in stage units.
pub fn mm_to_stage_units(mm: f64, meters_per_unit: f64) -> f64 {
    mm / (meters_per_unit.max(1e-12) * 1000.0)
}

pub fn pipeline_chain(name: &str, meters_per_unit: f64) -> Result<Vec<PlannedOp>, String> {
    use serde_json::json;
    let tolerance = coincidence_tolerance(meters_per_unit);
    let why = format!("named pipeline {name} (requested)");
    let op = |operation: &'static str, args: serde_json::Value| PlannedOp::new(operation, args, why.clone());
    // pruneLeaves keeps prims whose payloads are unloaded: they only look like empty leaves.
    let prune = || op("pruneLeaves", json!({"preserveUnloadedPayloads": true}));
    Ok(match name {
        "safe-cleanup" => vec![
            prune(),
            op("deduplicateGeometry", json!({"tolerance": tolerance})),
            op("optimizeMaterials", json!({})),
            op("optimizeTimeSamples", json!({})),
            op("computeExtents", json!({})),
        ],
        "memory-reduction" => vec![
            op("deduplicateHierarchies", json!({"tolerance": tolerance})),
            prune(),
            op("deduplicateGeometry", json!({"tolerance": tolerance})),
            op("optimizeMaterials", json!({})),
        ],
        "load-time-reduction" => vec![
            prune(),
            op("optimizeMaterials", json!({})),
            op("optimizeTimeSamples", json!({})),
            op("computeExtents", json!({})),
        ],
        "mesh-count-reduction" => vec![
            op("meshCleanup", json!({"tolerance": 0.0})),
            op("deduplicateGeometry", json!({"tolerance": tolerance})),
            op("removeSmallGeometry", json!({})),
            // reductionFactor is the percent KEPT: 0 lets maxMeanError alone decide where to stop.
            op(
                "decimateMeshes",
                json!({"reductionFactor": 0.0, "maxMeanError": mm_to_stage_units(DECIMATE_BAND_MM, meters_per_unit), "pinBoundaries": true}),
            ),
        ],
        "data-quality-baseline" => vec![
            op("generateNormals", json!({})),
            op("meshCleanup", json!({"coorientFaces": true, "makeManifold": true})),
            op("computeExtents", json!({})),
        ],
        _ => return Err(format!("unknown pipeline '{name}'; choose one of: {}", PIPELINES.join(", "))),
    })
}

/// Approval gate (operation-safety.md): an op runs unattended only when it is lossless and
/// automatic; anything else needs the user's approval of that op (`--approve OP`) or of its
/// whole class (`--approve bounded-loss`, `--approve destructive`). Unapproved ops are kept
/// out of the chain and listed with what would approve them.
pub fn gate(ops: Vec<PlannedOp>, approvals: &[String]) -> (Vec<PlannedOp>, Vec<Skipped>) {
    let mut kept = Vec::new();
    let mut held = Vec::new();
    for mut op in ops {
        let class =
            serde_json::to_value(op.safety).expect("safety serializes").as_str().unwrap_or("").replace('_', "-");
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
                reason: format!(
                    "{class} ({}): not run without approval (--approve {})",
                    serde_json::to_value(op.authority).expect("authority serializes").as_str().unwrap_or(""),
                    op.operation
                ),
            }),
        }
    }
    (kept, held)
}

/// The chain for a run: the named pipeline the user asked for, else what evidence selects;
/// then the approval gate and the ordering invariants (a violation names its rule).
pub fn build_chain(e: &Evidence, pipeline: Option<&str>, approvals: &[String]) -> Result<Chain, String> {
    let (ops, mut skipped) = match pipeline {
        Some(name) => (pipeline_chain(name, e.meters_per_unit)?, Vec::new()),
        None => evidence_chain(e),
    };
    let (operations, held) = gate(ops, approvals);
    skipped.extend(held);
    let names: Vec<&str> = operations.iter().map(|o| o.operation).collect();
    let invariants_checked = check_order(&names, e.instancing_in_play)?;
    Ok(Chain { operations, skipped, invariants_checked })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_selects_each_op_and_records_why() {
        let e = Evidence {
            meters_per_unit: 1.0,
            meshes_with_mergeable_vertices: 268,
            duplicate_geometry_groups: 5,
            prims_missing_extent: 268,
            ..Default::default()
        };
        let chain = build_chain(&e, None, &[]).unwrap();
        let ops: Vec<_> = chain.operations.iter().map(|o| o.operation).collect();
        assert_eq!(ops, ["meshCleanup", "deduplicateGeometry", "computeExtents"]);
        assert!(chain.operations[0].evidence.contains("268 meshes"));
        assert!(chain.operations.iter().all(|o| o.safety == Safety::Lossless));
    }

    #[test]
    fn clean_stage_gets_an_empty_chain() {
        let chain = build_chain(&Evidence { meters_per_unit: 0.01, ..Default::default() }, None, &[]).unwrap();
        assert!(chain.operations.is_empty());
        assert_eq!(chain.skipped.len(), 7);
    }

    #[test]
    fn one_cleanup_step_carries_the_union_of_what_the_findings_call_for() {
        let weld_only = Evidence { meshes_with_mergeable_vertices: 3, ..Default::default() };
        let args = mesh_cleanup_args(&weld_only).unwrap();
        assert_eq!(args["mergeVertices"], true);
        assert_eq!(args["removeDegenerateFaces"], true, "welding can collapse faces");
        assert_eq!(args["removeDuplicateFaces"], false);
        assert_eq!(args["contractDegenerateEdges"], false);
        let duplicates =
            Evidence { meshes_with_duplicate_faces: 1, meshes_with_degenerate_faces: 2, ..Default::default() };
        let args = mesh_cleanup_args(&duplicates).unwrap();
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
        let e = Evidence {
            meters_per_unit: 1.0,
            attributes_with_redundant_samples: 4,
            empty_leaves: 2,
            duplicate_material_sets: 1,
            duplicate_geometry_groups: 1,
            ..Default::default()
        };
        let chain = build_chain(&e, None, &[]).unwrap();
        let ops: Vec<_> = chain.operations.iter().map(|o| o.operation).collect();
        assert_eq!(ops, ["deduplicateGeometry", "optimizeTimeSamples", "optimizeMaterials", "pruneLeaves"]);
        assert_eq!(chain.operations[1].args["removeInterpolated"], false, "exact repeats only: lossless");
        assert!(chain.operations[3].evidence.contains("2 empty grouping leaves"));
    }

    #[test]
    fn many_small_copies_choose_a_point_instancer_and_few_choose_native_instancing() {
        let few = Evidence {
            meters_per_unit: 1.0,
            duplicate_geometry_groups: 5,
            duplicate_geometry_copies: 40,
            ..Default::default()
        };
        let chain = build_chain(&few, None, &[]).unwrap();
        let dedupe = chain.operations.iter().find(|o| o.operation == "deduplicateGeometry").unwrap();
        assert_eq!(dedupe.args["duplicateMethod"], 2);
        assert_eq!(dedupe.safety, Safety::Lossless);
        let many = Evidence { duplicate_geometry_groups: 20, duplicate_geometry_copies: 50_000, ..few.clone() };
        assert_eq!(instancing_form(&many).0, InstancingForm::PointInstancer);
        let chain = build_chain(&many, None, &[]).unwrap();
        let ops: Vec<_> = chain.operations.iter().map(|o| o.operation).collect();
        assert_eq!(ops, ["deduplicateGeometry", "pruneLeaves"], "the emptied Xforms go too");
        assert_eq!(chain.operations[0].args["duplicateMethod"], 4);
        assert_eq!(chain.operations[0].safety, Safety::Lossless, "placements are kept at float precision");
        assert!(chain.operations[0].evidence.contains("point instancer"));
        // Many copies of many different geometries: too few per geometry for a point instancer.
        let spread = Evidence { duplicate_geometry_groups: 2_000, duplicate_geometry_copies: 5_000, ..few };
        assert_eq!(instancing_form(&spread).0, InstancingForm::Native);
    }

    #[test]
    fn tolerance_scales_with_stage_units() {
        assert!((coincidence_tolerance(0.01) - 1e-4).abs() < 1e-15);
        assert!((coincidence_tolerance(1.0) - 1e-6).abs() < 1e-18);
    }

    #[test]
    fn ordering_violations_are_named() {
        let err = check_order(&["deduplicateGeometry", "deduplicateHierarchies"], false).unwrap_err();
        assert!(err.contains("hierarchy reuse before mesh-level deduplicateGeometry"), "{err}");
        let err = check_order(&["decimateMeshes", "meshCleanup"], false).unwrap_err();
        assert!(err.contains("meshCleanup BEFORE decimateMeshes"), "{err}");
        assert!(check_order(&["merge"], true).unwrap_err().contains("Never merge"));
        assert!(check_order(&["meshCleanup", "deduplicateGeometry", "computeExtents"], false).is_ok());
    }

    #[test]
    fn every_pipeline_keeps_the_invariants_and_only_lossless_ops_run_unapproved() {
        for name in PIPELINES {
            let ops = pipeline_chain(name, 0.01).unwrap();
            let names: Vec<&str> = ops.iter().map(|o| o.operation).collect();
            assert!(check_order(&names, true).is_ok(), "{name}: {names:?}");
            let (kept, held) = gate(ops, &[]);
            assert!(
                kept.iter().all(|o| o.safety == Safety::Lossless && o.authority != Authority::IntentGated),
                "{name}"
            );
            assert!(held.iter().all(|h| h.reason.contains("--approve")), "{name}");
        }
        assert!(pipeline_chain("make-it-fast", 1.0).unwrap_err().contains("safe-cleanup"));
    }

    #[test]
    fn approvals_let_bounded_loss_and_destructive_ops_through() {
        let e = Evidence { meters_per_unit: 0.01, ..Default::default() };
        let chain = build_chain(&e, Some("mesh-count-reduction"), &[]).unwrap();
        assert_eq!(
            chain.operations.iter().map(|o| o.operation).collect::<Vec<_>>(),
            ["meshCleanup", "deduplicateGeometry"]
        );
        let held: Vec<_> = chain.skipped.iter().map(|s| s.operation).collect();
        assert_eq!(held, ["removeSmallGeometry", "decimateMeshes"]);
        let chain =
            build_chain(&e, Some("mesh-count-reduction"), &["decimateMeshes".into(), "destructive".into()]).unwrap();
        assert_eq!(chain.operations.len(), 4);
        let decimate = chain.operations.iter().find(|o| o.operation == "decimateMeshes").unwrap();
        assert_eq!(decimate.safety, Safety::BoundedLoss);
        assert_eq!(decimate.approval, "approved by --approve decimateMeshes");
        // 0.1 mm in a centimetre stage is 0.01 stage units.
        assert!((decimate.args["maxMeanError"].as_f64().unwrap() - 0.01).abs() < 1e-12);
    }

    #[test]
    fn mesh_cleanup_sub_modes_change_its_class() {
        assert_eq!(
            classify("meshCleanup", &serde_json::json!({"tolerance": 0.0})),
            (Safety::Lossless, Authority::Auto)
        );
        assert_eq!(classify("meshCleanup", &serde_json::json!({"makeManifold": true})).0, Safety::BoundedLoss);
        assert_eq!(classify("meshCleanup", &serde_json::json!({"tolerance": 0.01})).1, Authority::IntentGated);
        assert_eq!(classify("somethingNew", &serde_json::Value::Null), (Safety::Destructive, Authority::IntentGated));
    }

    #[test]
    fn occluded_geometry_goes_first_and_only_when_approved() {
        let e = Evidence {
            meters_per_unit: 1.0,
            occlusion_pairs: vec!["/F/M/Housing".into(), "/F/M/Motor".into()],
            occluded_meshes: 3,
            meshes_with_mergeable_vertices: 5,
            ..Default::default()
        };
        let held = build_chain(&e, None, &[]).unwrap();
        assert_eq!(held.operations[0].operation, "meshCleanup");
        assert!(held
            .skipped
            .iter()
            .any(|s| s.operation == "findOccludedMeshes" && s.reason.contains("--approve findOccludedMeshes")));
        let approved = build_chain(&e, None, &["findOccludedMeshes".into()]).unwrap();
        assert_eq!(approved.operations[0].operation, "findOccludedMeshes");
        assert_eq!(approved.operations[0].safety, Safety::Destructive);
        let restructured = build_chain(&Evidence { restructured: true, ..e }, None, &["destructive".into()]).unwrap();
        assert!(restructured.operations.iter().all(|o| o.operation != "findOccludedMeshes"));
    }
}
