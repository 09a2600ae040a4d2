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

/// Safety class of the usd-optimize ops the daemon knows (research/usd-optimize-catalog.md §1).
pub const OP_SAFETY: &[(&str, Safety)] = &[
    ("computeExtents", Safety::Lossless),
    ("meshCleanup", Safety::Lossless), // at tolerance 0, without makeManifold/coorientFaces
    ("deduplicateGeometry", Safety::Lossless),
    ("deduplicateHierarchies", Safety::Lossless),
    ("pruneLeaves", Safety::Lossless),
    ("flattenHierarchy", Safety::Lossless),
    ("optimizeTimeSamples", Safety::Lossless),
    ("triangulateMeshes", Safety::Lossless),
    ("decimateMeshes", Safety::BoundedLoss),
    ("mergeVertices", Safety::BoundedLoss),
    ("fitPrimitives", Safety::BoundedLoss),
    ("merge", Safety::Destructive),
    ("removePrims", Safety::Destructive),
    ("removeSmallGeometry", Safety::Destructive),
    ("findOccludedMeshes", Safety::Destructive),
];

pub fn safety(operation: &str) -> Safety {
    OP_SAFETY.iter().find(|(op, _)| *op == operation).map(|(_, s)| *s).unwrap_or(Safety::Destructive)
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
    pub meshes_with_degenerate_or_duplicate_faces: u64,
    pub duplicate_geometry_groups: u64,
    pub prims_missing_extent: u64,
    pub instancing_in_play: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct PlannedOp {
    pub operation: &'static str,
    pub args: serde_json::Value,
    pub safety: Safety,
    pub evidence: String,
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

pub fn lossless_chain(e: &Evidence) -> Result<Chain, String> {
    use serde_json::json;
    let mut operations = Vec::new();
    let mut skipped = Vec::new();
    let mut pick = |op: &'static str, selected: bool, args: serde_json::Value, why: String, why_not: String| {
        if selected {
            operations.push(PlannedOp { operation: op, args, safety: safety(op), evidence: why });
        } else {
            skipped.push(Skipped { operation: op, reason: why_not });
        }
    };
    let tolerance = coincidence_tolerance(e.meters_per_unit);
    let cleanup = e.meshes_with_mergeable_vertices + e.meshes_with_degenerate_or_duplicate_faces;
    pick("meshCleanup", cleanup > 0, json!({"tolerance": 0.0}),
         format!("{} meshes with coincident vertices, {} with degenerate or duplicate faces",
                 e.meshes_with_mergeable_vertices, e.meshes_with_degenerate_or_duplicate_faces),
         "no mergeable vertices, degenerate or duplicate faces found".into());
    pick("deduplicateGeometry", e.duplicate_geometry_groups > 0, json!({"tolerance": tolerance}),
         format!("{} groups of identical meshes (tolerance {tolerance:e} stage units)", e.duplicate_geometry_groups),
         "no duplicate geometry found".into());
    pick("computeExtents", e.prims_missing_extent > 0, json!({}),
         format!("{} gprims without authored extent", e.prims_missing_extent),
         "every gprim has an authored extent".into());
    let names: Vec<&str> = operations.iter().map(|o| o.operation).collect();
    let invariants_checked = check_order(&names, e.instancing_in_play)?;
    Ok(Chain { operations, skipped, invariants_checked })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_selects_each_op_and_records_why() {
        let e = Evidence { meters_per_unit: 1.0, meshes_with_mergeable_vertices: 268, duplicate_geometry_groups: 5,
                           prims_missing_extent: 268, ..Default::default() };
        let chain = lossless_chain(&e).unwrap();
        let ops: Vec<_> = chain.operations.iter().map(|o| o.operation).collect();
        assert_eq!(ops, ["meshCleanup", "deduplicateGeometry", "computeExtents"]);
        assert!(chain.operations[0].evidence.contains("268 meshes"));
        assert!(chain.operations.iter().all(|o| o.safety == Safety::Lossless));
    }

    #[test]
    fn clean_stage_gets_an_empty_chain() {
        let chain = lossless_chain(&Evidence { meters_per_unit: 0.01, ..Default::default() }).unwrap();
        assert!(chain.operations.is_empty());
        assert_eq!(chain.skipped.len(), 3);
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
}
