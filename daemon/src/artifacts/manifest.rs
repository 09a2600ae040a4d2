//! apply-restructure-manifest.json (Phase 2f, mode `restructure`) and ref-remap-manifest.json
//! (Phase 5, mode `ref_remap`): every file a step wrote and the Phase 4 targets it leaves.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::decisions::restructure::{Frontier, Mode, RestructurePlan};
use crate::decisions::targets::{self, Phase4Target, WrittenOutput};

/// The executor's `restructure` task result.
#[derive(Clone, Debug, Deserialize)]
pub struct RestructureResult {
    pub new_assembly_root: String,
    pub outputs: Vec<WrittenOutput>,
    #[serde(default)]
    pub material_rewrites: serde_json::Value,
}

/// The executor's `instancing` task result (Phase 3 flips in an override layer).
#[derive(Clone, Debug, Deserialize)]
pub struct InstancingResult {
    pub output_path: String,
    pub instances: u64,
    pub prototypes: u64,
}

/// The executor's `remap` task result (Phase 5).
#[derive(Clone, Debug, Deserialize)]
pub struct RemapResult {
    pub new_assembly_root: String,
    pub rewritten: Vec<Rewritten>,
    #[serde(default)]
    pub composition_errors: Vec<String>,
    pub mesh_count: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Rewritten {
    pub source: String,
    pub path: String,
    /// new_root | parent_assembly
    pub kind: String,
}

/// The new assembly root's residual meshes: a default walk of the root opened on its own (the
/// same count as its `phase4_targets[]` entry; prototypes in a class namespace are not seen).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AssemblyRoot {
    pub path: String,
    pub mesh_count: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManifestOutput {
    pub path: String,
    pub kind: String,
    pub provenance: String,
    pub size_bytes: u64,
    pub validate_usd_minimum: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RewriteStep {
    pub step: String,
    pub result: String,
    #[serde(default)]
    pub notes: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// restructure | ref_remap
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub materialization: Option<String>,
    pub input_stage: String,
    pub output_dir: String,
    pub new_assembly_root: String,
    pub assembly_root: AssemblyRoot,
    pub outputs: Vec<ManifestOutput>,
    pub phase4_targets: Vec<Phase4Target>,
    /// The reuse measured and the descent's convergence (restructure mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontier: Option<Frontier>,
    pub rewrite_steps: Vec<RewriteStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material_rewrites: Option<serde_json::Value>,
    /// Path of this step's preservation proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preservation: Option<String>,
    pub warnings: Vec<String>,
}

impl Manifest {
    /// Phase 2f's manifest, from the plan and what the executor wrote.
    pub fn restructure(
        source_stage: &str,
        output_dir: &Path,
        plan: &RestructurePlan,
        result: &RestructureResult,
        proof_path: &str,
        frontier: Frontier,
    ) -> Self {
        let root = result.outputs.iter().find(|o| o.kind == "new_root");
        Self {
            mode: "restructure".into(),
            materialization: Some(plan.mode.as_str().into()),
            input_stage: source_stage.into(),
            output_dir: output_dir.display().to_string(),
            new_assembly_root: result.new_assembly_root.clone(),
            assembly_root: AssemblyRoot {
                path: root.map(|r| r.path.clone()).unwrap_or_default(),
                mesh_count: root.map_or(0, |r| r.mesh_count),
            },
            outputs: result
                .outputs
                .iter()
                .map(|o| ManifestOutput {
                    path: o.path.clone(),
                    kind: o.kind.clone(),
                    provenance: o.provenance.clone(),
                    size_bytes: o.size_bytes,
                    validate_usd_minimum: o.validate_usd_minimum.clone(),
                    notes: Some(o.notes.clone()),
                })
                .collect(),
            phase4_targets: targets::from_restructure(plan, &result.outputs, source_stage),
            frontier: Some(frontier),
            rewrite_steps: vec![RewriteStep {
                step: if plan.mode == Mode::SelectiveLoading {
                    "selective_loading_split"
                } else {
                    "hierarchy_dedupe_rewrite"
                }
                .into(),
                result: "ok".into(),
                notes: format!(
                    "{} prototypes, {} sites, {} sub-assets, {} reference placements flipped",
                    plan.prototypes.len(),
                    plan.sites.len(),
                    plan.subassets.len(),
                    plan.flips.len()
                ),
            }],
            material_rewrites: Some(result.material_rewrites.clone()),
            preservation: Some(proof_path.into()),
            warnings: plan.skipped.iter().map(|s| format!("group {} not shared: {}", s.group, s.reason)).collect(),
        }
    }

    /// Phase 5's manifest: the assemblies above the optimized children, rewritten.
    /// The ref-remap manifest of a composed stage whose targets (its referenced files) changed
    /// nothing: no layer was rewritten, but the targets are on record for target coverage.
    pub fn nothing_remapped(working_stage: &str, output_dir: &Path, phase4_targets: Vec<Phase4Target>) -> Self {
        let nothing = RemapResult {
            new_assembly_root: working_stage.into(),
            rewritten: vec![],
            composition_errors: vec![],
            mesh_count: 0,
        };
        Self {
            phase4_targets,
            rewrite_steps: vec![RewriteStep {
                step: "reference_remap".into(),
                result: "skipped".into(),
                notes: "no target changed: nothing to remap".into(),
            }],
            ..Self::remap(working_stage, output_dir, &nothing, &[])
        }
    }

    pub fn remap(working_stage: &str, output_dir: &Path, remap: &RemapResult, optimized: &[(String, String)]) -> Self {
        let clean = remap.composition_errors.is_empty();
        Self {
            mode: "ref_remap".into(),
            materialization: None,
            input_stage: working_stage.into(),
            output_dir: output_dir.display().to_string(),
            new_assembly_root: remap.new_assembly_root.clone(),
            assembly_root: AssemblyRoot { path: remap.new_assembly_root.clone(), mesh_count: remap.mesh_count },
            outputs: remap
                .rewritten
                .iter()
                .map(|r| ManifestOutput {
                    path: r.path.clone(),
                    kind: r.kind.clone(),
                    provenance: r.source.clone(),
                    size_bytes: std::fs::metadata(&r.path).map_or(0, |m| m.len()),
                    validate_usd_minimum: if clean { "pass" } else { "fail" }.into(),
                    notes: None,
                })
                .collect(),
            phase4_targets: vec![],
            frontier: None,
            rewrite_steps: vec![RewriteStep {
                step: "reference_remap".into(),
                result: "ok".into(),
                notes: format!(
                    "{} optimized children: {}",
                    optimized.len(),
                    optimized.iter().map(|(source, _)| source.as_str()).collect::<Vec<_>>().join(", ")
                ),
            }],
            material_rewrites: None,
            preservation: None,
            warnings: remap.composition_errors.clone(),
        }
    }
}
