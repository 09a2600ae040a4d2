//! Typed artifacts: what the phases hand each other through the run workspace. Each type
//! serializes to the JSON its schema in `schemas/` describes (the store validates every
//! write), and an artifact read back is deserialized into its type, so a missing or
//! renamed field is an error (`artifact_schema_violation`), never a silent zero.
//!
//! Artifacts a decision function produces are typed beside it (the validation report in
//! `decisions::validation`, the preservation proof in `decisions::preservation`, the
//! comparison in `decisions::compare`); the structure assessment is read through
//! [`assessment::Assessment`], the fields later phases use.

pub mod assessment;
pub mod guard;
pub mod manifest;
pub mod operations;
pub mod profile;
pub mod setup;

use serde::{Deserialize, Serialize};

/// Phase 2e's record of the restructure gate (restructure-decision.json).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RestructureDecision {
    pub phase: String,
    pub choice: String,
    pub reasoning: String,
    /// When a person (flag, prompt, API) chose; null when the branch was automatic.
    pub user_confirmed_at: Option<String>,
    pub classification: String,
    pub branches_offered: Vec<String>,
    pub recommended: Option<String>,
    pub chosen: String,
    pub answered_by: String,
    pub evidence: serde_json::Value,
}

/// Phase 3's instancing readiness (instancing-readiness.json); written, never read back.
#[derive(Clone, Debug, Serialize)]
pub struct InstancingReadiness {
    pub shares: Vec<crate::decisions::restructure::Readiness>,
    pub flipped: usize,
    pub held_back: usize,
    /// The file the flips were authored in; null when nothing was flipped.
    pub authored_in: Option<String>,
    /// restructured_root | override_layer | none
    pub edit_target: String,
}

impl InstancingReadiness {
    pub fn new(
        rows: Vec<crate::decisions::restructure::Readiness>,
        authored_in: Option<&str>,
        edit_target: &str,
    ) -> Self {
        let flipped: usize = rows.iter().map(|r| r.flipped.len()).sum();
        let held_back = rows.iter().map(|r| r.held_back.len()).sum();
        Self {
            shares: rows,
            flipped,
            held_back,
            authored_in: authored_in.filter(|_| flipped > 0).map(String::from),
            edit_target: if flipped > 0 { edit_target } else { "none" }.to_string(),
        }
    }
}

/// The part of a validation scope note later phases read (the note itself is the
/// contract's free-form document, written by decisions::validation).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ScopeNote {
    #[serde(default)]
    pub artifact_paths: Vec<String>,
    pub full_sweep: FullSweep,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct FullSweep {
    pub status: String,
}
