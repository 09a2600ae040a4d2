//! The usd-optimize operations catalog as the chain needs it: every op's safety class and
//! apply authority (operation-safety.md, the upstream catalog's `loss_class` and
//! `apply_authority`), refined by the arguments it is invoked with.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Safety {
    Lossless,
    BoundedLoss,
    Destructive,
}

impl Safety {
    /// As the plan writes it (`bounded_loss`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lossless => "lossless",
            Self::BoundedLoss => "bounded_loss",
            Self::Destructive => "destructive",
        }
    }
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

impl Authority {
    /// As the plan writes it (`intent-gated`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::AutoWithinTolerance => "auto-within-tolerance",
            Self::IntentGated => "intent-gated",
        }
    }
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
/// (kit-extension/.../usd/instancer_precision.py), or fails the target.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_written_as_serde_writes_them() {
        for s in [Safety::Lossless, Safety::BoundedLoss, Safety::Destructive] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for a in [Authority::Auto, Authority::AutoWithinTolerance, Authority::IntentGated] {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
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
}
