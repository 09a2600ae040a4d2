//! The optimization report (Phase 6d): a type in the shape of the upstream
//! optimization-report contract, built from the run's stored artifacts only (`build`), so it
//! can be rebuilt from a workspace at any time; checked by the daemon's own implementation
//! of the upstream report gate (decisions::report_gate) before the run completes; and
//! rendered as JSON (serde), Markdown, a self-contained HTML page and a terminal summary.
//!
//! Everything the contract has a field for sits in that field. What only we report (the
//! structure we found, the gate's decision, the phase timeline, the paired intervals, the
//! proof's details, findings grouped by concept) lives in `structural_summary.x_usdtune`,
//! the one contract object that admits extensions.

mod build;
mod html;
mod render;

use serde::{Deserialize, Serialize};

pub use build::build;
pub use html::html;
pub use render::{markdown, pretty, summary};

use crate::artifacts::setup::RuntimeContext;
use crate::artifacts::RestructureDecision;
use crate::decisions::compare::Footprint;
use crate::decisions::score::MetricGroup;
use crate::record::{Verdict, WorkflowMode};

/// The files the report is written as, next to each other in the run's folder.
pub const JSON_FILE: &str = "optimization-report.json";
pub const MARKDOWN_FILE: &str = "optimization-report.md";
pub const HTML_FILE: &str = "optimization-report.html";

/// optimization-report.json (upstream optimization-report contract, field for field).
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_profile_capture: Option<String>,
    pub runtime_context: RuntimeContext,
    pub optimization_score: f64,
    pub score_scope: String,
    pub score_label: String,
    pub executive_summary: String,
    pub reasoning: String,
    pub measurement_context: MeasurementContext,
    /// Bytes as delivered, re-encoded and optimized (the contract's repack-normalized
    /// attribution). Absent when no stage was written, or when the only saving is the free
    /// re-encode (the contract forbids presenting that as the optimization's; the figures
    /// stay in `x_usdtune.footprint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footprint: Option<Footprint>,
    pub structural_summary: StructuralSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preservation: Option<PreservationBlock>,
    pub runtime_profiling: RuntimeProfiling,
    pub artifacts: ReportFiles,
    pub metric_groups: Vec<MetricGroup>,
    pub metrics: Vec<MetricRow>,
    pub operations: Vec<OperationRow>,
    pub validators: Vec<ValidatorLine>,
    pub target_coverage: TargetCoverage,
}

/// How the stage was measured (scalars only, as the contract allows).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MeasurementContext {
    pub profiling_mode: String,
    pub open_timing_context: String,
    pub warm_open_sample_count: Option<u64>,
    pub runtime: String,
    pub stage_open_method: String,
    pub after_profiled: bool,
    /// Paired rounds behind each timing (source and output interleaved, fresh process each).
    pub paired_rounds: u64,
    pub timing_method: String,
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

/// One op as it ran on one target. `method` names the tool, the op and its safety class,
/// never its arguments (those are in `x_usdtune.chain`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OperationRow {
    pub order: usize,
    pub name: String,
    pub method: String,
    pub result: String,
}

/// One validator row: a concept and how many sites it found across the run's reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidatorLine {
    pub name: String,
    pub issues: u64,
    pub notes: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetCoverage {
    pub complete: bool,
    /// The restructure manifests this coverage was reconciled against (relative to the report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_manifests: Vec<String>,
    pub entries: Vec<CoverageEntry>,
}

/// One Phase 4 target in the contract's words; our finer disposition is in `x_usdtune.coverage`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CoverageEntry {
    pub path: String,
    pub role: String,
    pub mesh_count: u64,
    /// optimized | skipped_zero_meshes | skipped_user_declined | blocked
    pub disposition: String,
    pub operations: Vec<String>,
    pub notes: String,
}

/// The contract's scene-graph block, with our extension object.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StructuralSummary {
    /// The run counted the reuse it collapsed (a restructure's frontier).
    pub reuse_measured: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authored_prim_delta_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_prototype_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_ratio: Option<f64>,
    pub frontier_descent_converged: bool,
    pub frontier_final_rescan_new_groups_above_floor: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub frontier_convergence_waived: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontier_convergence_waiver_reason: Option<String>,
    pub notes: String,
    pub x_usdtune: Extension,
}

/// What only usdtune reports (see the module header).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Extension {
    pub run_id: String,
    pub structure: StructureSummary,
    pub restructure: RestructureBlock,
    /// The routes the gate measured (or estimated) before it recommended one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_trials: Option<crate::decisions::routes::RouteTrials>,
    pub untapped_options: Vec<String>,
    /// Seconds per phase of the workflow table, in order.
    pub phases: Vec<PhaseTiming>,
    /// The paired interval behind each timing metric (for the charts' whiskers).
    pub intervals: Vec<MetricInterval>,
    /// The chain once, with the evidence that chose each op.
    pub chain: Vec<ChainStep>,
    pub held_back: Vec<HeldBack>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<ProofSummary>,
    /// Validator findings grouped by concept across the run's validation reports.
    pub findings: Vec<ConceptFindings>,
    /// Each target's own disposition (finer than the contract's) and outcome code.
    pub coverage: Vec<TargetDetail>,
    /// The byte figures even when the contract block is withheld.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footprint: Option<Footprint>,
    /// Every artifact of the run: name → path.
    pub artifacts: serde_json::Map<String, serde_json::Value>,
    /// Peak GPU memory while the baseline and the after profiles were captured (NVML), or why
    /// there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_memory: Option<GpuPeaks>,
    /// The `[Error]` lines Kit logged during the run's tasks, when the run asked for the Kit
    /// runtime (empty: none); absent for a standalone run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kit_error_lines: Option<Vec<String>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GpuPeaks {
    pub before: GpuPeak,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<GpuPeak>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GpuPeak {
    pub available: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub peak_device_used_bytes: Option<u64>,
    pub peak_executor_bytes: Option<u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseTiming {
    pub label: String,
    pub status: String,
    pub seconds: f64,
    pub note: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricInterval {
    pub name: String,
    pub ratio: f64,
    pub low: f64,
    pub high: f64,
    pub confidence: f64,
    pub rounds: usize,
    pub conclusive: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChainStep {
    pub operation: String,
    pub args: serde_json::Value,
    pub safety: String,
    pub authority: String,
    pub evidence: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HeldBack {
    pub operation: String,
    pub reason: String,
}

/// The geometry and composition proof of the run, in full.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProofSummary {
    pub passed: bool,
    pub geometry_passed: bool,
    pub composition_passed: bool,
    pub new_composition_errors: u64,
    pub rendered_meshes_before: u64,
    pub rendered_meshes_after: u64,
    pub triangles_before: u64,
    pub triangles_after: u64,
    pub triangles_by_material_preserved: bool,
    pub bounds_preserved: bool,
    pub tolerance: f64,
    /// One line per proof (restructure, operations).
    pub steps: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConceptFindings {
    pub concept: String,
    pub severity: String,
    pub findings: u64,
    pub sites: u64,
    pub targets: u64,
    /// The usd-optimize family that addresses it ("" when none).
    pub op_family: String,
    /// Which validation reports found it (baseline, targets, after).
    pub reports: Vec<String>,
    pub message: String,
    /// A few sites, for a first look.
    pub sample_sites: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetDetail {
    pub path: String,
    /// optimized | unchanged | skipped_zero_meshes | skipped_user_declined | blocked
    pub disposition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
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

/// The contract's silent-loss block (its keys only; the proof in full is `x_usdtune.proof`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PreservationBlock {
    pub rendered_mesh_count: u64,
    pub distinct_geometry_bytes_preserved: bool,
    pub bounds_preserved: bool,
    pub dangling: u64,
    pub rendered_triangle_count: u64,
    pub notes: String,
}

/// The contract's runtime-profiling handoff: FPS, VRAM and frame time are not ours to score.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuntimeProfiling {
    /// not_run | external | attached
    pub status: String,
    pub recommended_tool: String,
    pub summary: String,
    pub caveat: String,
}

/// Where the report itself was written (the contract's `artifacts`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReportFiles {
    pub json: String,
    pub markdown: String,
    pub html: String,
}

/// Where a run's report files are written.
pub fn paths(ws: &crate::store::Workspace) -> ReportFiles {
    let at = |name: &str| ws.root().join(name).display().to_string();
    ReportFiles { json: at(JSON_FILE), markdown: at(MARKDOWN_FILE), html: at(HTML_FILE) }
}
