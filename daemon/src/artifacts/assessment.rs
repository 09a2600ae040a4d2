//! The structure assessment as later phases read it: the validation plan, the restructure
//! gate, Phase 2f's boundaries and the report. decisions::assessment writes the whole
//! document (schemas/structure-assessment.schema.json); fields the schema requires are
//! required here too.

use serde::Deserialize;
use serde_json::Value;

#[derive(Clone, Debug, Deserialize)]
pub struct Assessment {
    pub classification: Classification,
    pub phase_recommendation: String,
    pub hierarchy_dedupe: HierarchyDedupe,
    pub summary_counts: SummaryCounts,
    pub asset_boundary_suggestions: BoundarySuggestions,
    pub validation_scope: ValidationScope,
    pub asset_physical_context: PhysicalContext,
    pub kind_hierarchy: KindHierarchy,
    /// Quoted as the gate's evidence.
    pub instancing: Value,
    /// The same blocks as written, for the gate's evidence (clients show them as they are).
    #[serde(skip)]
    pub raw: Value,
}

impl Assessment {
    /// Read from the stored document, keeping the document for evidence.
    pub fn from_value(value: Value) -> Result<Self, serde_json::Error> {
        let mut read: Self = serde_json::from_value(value.clone())?;
        read.raw = value;
        Ok(read)
    }

    /// The blocks the restructure gate shows as its evidence.
    pub fn gate_evidence(&self) -> Value {
        serde_json::json!({
            "classification": self.raw["classification"],
            "hierarchy_dedupe": self.raw["hierarchy_dedupe"],
            "instancing": self.instancing,
            "summary_counts": self.raw["summary_counts"],
        })
    }

    /// Prim path of a boundary id, None when the id names no boundary.
    pub fn boundary_path(&self, id: &str) -> Option<&str> {
        self.asset_boundary_suggestions.boundaries.iter().find(|b| b.boundary_id == id).map(|b| b.prim_path.as_str())
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Classification {
    pub kind: String,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct HierarchyDedupe {
    pub recommended: bool,
    pub reason: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct SummaryCounts {
    pub payload_count: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct BoundarySuggestions {
    pub candidate_levels: Vec<CandidateLevel>,
    pub boundaries: Vec<Boundary>,
    /// The boundaries are clear enough to ask the user about selective loading.
    pub user_choice_required: bool,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CandidateLevel {
    #[serde(default)]
    pub prim_paths: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Boundary {
    pub boundary_id: String,
    pub prim_path: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ValidationScope {
    pub cross_component_pairs: Vec<CrossComponentPair>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CrossComponentPair {
    pub enclosing_boundary_id: String,
    pub enclosed_boundary_id: String,
    #[serde(default)]
    pub enclosure_opaque: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PhysicalContext {
    #[serde(default)]
    pub physics_prim_count: u64,
}

#[derive(Clone, Debug, Deserialize)]
pub struct KindHierarchy {
    pub trust: KindTrust,
}

#[derive(Clone, Debug, Deserialize)]
pub struct KindTrust {
    #[serde(default)]
    pub trusted: Option<bool>,
}

/// dedupe-candidates.json as later phases read it: the groups (the restructure plans from
/// them; the report shows the selected ones).
#[derive(Clone, Debug, Deserialize)]
pub struct Candidates {
    pub total_prim_savings: u64,
    pub groups: Vec<CandidateGroup>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct CandidateGroup {
    #[serde(flatten)]
    pub candidate: crate::decisions::restructure::GroupCandidate,
    pub path_pattern: String,
    pub copies: u64,
    pub subtree_prims: u64,
    pub estimated_prim_savings: u64,
    pub readiness: String,
}

impl Candidates {
    pub fn plan_groups(&self) -> Vec<crate::decisions::restructure::GroupCandidate> {
        self.groups.iter().map(|g| g.candidate.clone()).collect()
    }
}
