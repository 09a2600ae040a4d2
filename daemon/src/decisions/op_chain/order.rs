//! The seed's "Operation ordering invariants": a chain is checked against them before
//! anything runs, and a violation names the rule it breaks.

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

#[cfg(test)]
mod tests {
    use super::*;

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
