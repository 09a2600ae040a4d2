//! The named pipelines a user can ask for instead of the chain the evidence selects
//! (`--pipeline`), with tolerances in real units converted to the stage's.

use super::{coincidence_tolerance, PlannedOp};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::op_chain::{check_order, gate, Authority, Safety};

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
}
