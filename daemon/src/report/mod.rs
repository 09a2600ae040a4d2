//! The optimization report (Phase 6d, upstream optimization-report contract): a type built
//! from the run's stored artifacts only (`build`), so it can be rebuilt from a workspace at
//! any time, and rendered as JSON (serde), Markdown and a terminal summary (`render`).

mod build;
mod render;

use serde::{Deserialize, Serialize};

pub use build::build;
pub use render::{markdown, pretty};

/// Where a run's Markdown report is written.
pub fn markdown_path(ws: &crate::store::Workspace) -> std::path::PathBuf {
    ws.root().join(MARKDOWN_FILE)
}

const MARKDOWN_FILE: &str = "optimization-report.md";

use crate::artifacts::setup::RuntimeContext;
use crate::artifacts::RestructureDecision;
use crate::decisions::score::MetricGroup;
use crate::decisions::targets::Disposition;
use crate::record::{Verdict, WorkflowMode};

/// optimization-report.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OptimizationReport {
    pub asset_name: String,
    pub input_path: String,
    /// The optimized stage; null when the run wrote none.
    pub output_path: Option<String>,
    pub timestamp: String,
    pub verdict: Verdict,
    pub workflow_mode: WorkflowMode,
    /// What a reader must see first (warnings), one sentence each.
    pub notes: String,
    pub runtime_context: RuntimeContext,
    pub optimization_score: f64,
    pub score_scope: String,
    pub score_label: String,
    pub executive_summary: String,
    pub reasoning: String,
    pub measurement_context: MeasurementContext,
    pub metric_groups: Vec<MetricGroup>,
    pub metrics: Vec<MetricRow>,
    pub operations: Vec<OperationRow>,
    pub validators: Vec<ValidatorLine>,
    pub target_coverage: TargetCoverage,
    pub untapped_options: Vec<String>,
    pub restructure: RestructureBlock,
    pub structure: StructureSummary,
    /// Artifact name → path, for every artifact the workspace holds.
    pub artifacts: serde_json::Map<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preservation: Option<PreservationBlock>,
    /// Bytes as delivered, re-encoded and optimized (upstream repack-normalized attribution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footprint: Option<crate::decisions::compare::Footprint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_profile_capture: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MeasurementContext {
    pub profiling_mode: String,
    pub open_timing_context: String,
    pub warm_open_sample_count: Option<u64>,
    pub runtime: String,
    pub stage_open_method: String,
    pub after_profiled: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricRow {
    pub name: String,
    pub category: String,
    pub direction: String,
    pub evidence_type: String,
    pub unit: String,
    pub before: f64,
    pub after: f64,
    pub change_pct: f64,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OperationRow {
    pub order: usize,
    pub name: String,
    pub method: String,
    pub result: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidatorLine {
    pub name: String,
    pub issues: u64,
    pub notes: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetCoverage {
    pub complete: bool,
    pub entries: Vec<CoverageEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CoverageEntry {
    pub path: String,
    pub role: String,
    pub mesh_count: u64,
    pub disposition: Disposition,
    pub notes: String,
}

/// The restructure gate's decision, or why there was none.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RestructureBlock {
    Decided(Box<RestructureDecision>),
    /// No gate was asked (the assessment found nothing to restructure).
    Skipped {
        chosen: Option<String>,
        reason: String,
    },
}

/// What the assessment found, in the report's words.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StructureSummary {
    pub classification: String,
    pub reasons: Vec<String>,
    pub hierarchy_dedupe: String,
    pub total_prim_savings: Option<u64>,
    /// The frontier's selected groups, largest first (ten at most).
    pub top_groups: Vec<TopGroup>,
    /// Containment pairs scoped for the occlusion probe.
    pub containment_pairs: usize,
    pub kind_trusted: Option<bool>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TopGroup {
    pub path_pattern: String,
    pub copies: u64,
    pub subtree_prims: u64,
    pub estimated_prim_savings: u64,
    pub readiness: String,
    pub content_flags: Vec<String>,
}

/// The upstream preservation block, from the run's proofs (restructure and operations).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreservationBlock {
    pub rendered_mesh_count: u64,
    pub distinct_geometry_bytes_preserved: bool,
    pub bounds_preserved: bool,
    pub dangling: u64,
    pub triangles_before: u64,
    pub triangles_after: u64,
    pub triangles_by_material_preserved: bool,
    pub tolerance: f64,
    pub passed: bool,
    pub notes: String,
}
