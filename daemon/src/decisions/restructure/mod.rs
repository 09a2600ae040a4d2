//! Phase 2e: which restructure branches the gate offers for a classification (the upstream
//! decision table), and which it recommends. The gate shows the recommendation; it never
//! pre-selects it.

use serde::Serialize;

use super::assessment::Classification;

mod frontier;
mod plan;

pub use frontier::*;
pub use plan::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Branch {
    DeduplicateInternally,
    ExtractAsAssets,
    DecomposeForSelectiveLoading,
    OptimizeAsIs,
    /// Composed or already-structured stages: no question to ask, go on to Phase 3.
    Continue,
    Exit,
}

pub const ALL_BRANCHES: [Branch; 6] = [
    Branch::DeduplicateInternally,
    Branch::ExtractAsAssets,
    Branch::DecomposeForSelectiveLoading,
    Branch::OptimizeAsIs,
    Branch::Continue,
    Branch::Exit,
];

impl Branch {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeduplicateInternally => "deduplicate-internally",
            Self::ExtractAsAssets => "extract-as-assets",
            Self::DecomposeForSelectiveLoading => "decompose-for-selective-loading",
            Self::OptimizeAsIs => "optimize-as-is",
            Self::Continue => "continue",
            Self::Exit => "exit",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        ALL_BRANCHES.into_iter().find(|b| b.as_str() == text)
    }
}

/// What the gate does for a stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatePlan {
    /// Ask the user: these branches, this recommendation (None = no recommendation, just ask).
    Ask { branches: Vec<Branch>, recommended: Option<Branch> },
    /// The table has a single outcome; record it and go on.
    Automatic(Branch),
}

pub fn gate_plan(
    class: Classification,
    dedupe_recommended: bool,
    payload_count: u64,
    clear_boundaries: bool,
) -> GatePlan {
    use Branch::*;
    match class {
        Classification::MonolithicNeedsRestructure if dedupe_recommended => GatePlan::Ask {
            branches: vec![DeduplicateInternally, ExtractAsAssets, OptimizeAsIs, Exit],
            recommended: None,
        },
        Classification::MonolithicNeedsRestructure => GatePlan::Ask {
            branches: vec![DecomposeForSelectiveLoading, OptimizeAsIs, Exit],
            recommended: Some(DecomposeForSelectiveLoading),
        },
        Classification::MonolithicFineAsIs if payload_count == 0 && clear_boundaries => {
            GatePlan::Ask { branches: vec![DecomposeForSelectiveLoading, OptimizeAsIs, Exit], recommended: None }
        }
        Classification::MonolithicFineAsIs => GatePlan::Automatic(OptimizeAsIs),
        Classification::Composed | Classification::AlreadyOptimized => GatePlan::Automatic(Continue),
    }
}

/// A branch given up front (CLI flag, API) must be one the gate would offer.
pub fn accept(plan: &GatePlan, answer: Branch) -> Result<Branch, String> {
    match plan {
        GatePlan::Ask { branches, .. } if branches.contains(&answer) => Ok(answer),
        GatePlan::Ask { branches, .. } => Err(format!(
            "'{}' is not offered for this stage; choose one of: {}",
            answer.as_str(),
            branches.iter().map(|b| b.as_str()).collect::<Vec<_>>().join(", ")
        )),
        // Nothing is asked: exit still applies, and optimize-as-is and continue both mean "no
        // restructure". A restructure the table does not offer is refused, as for a gate that asks.
        GatePlan::Automatic(_) if answer == Branch::Exit => Ok(Branch::Exit),
        GatePlan::Automatic(auto) if matches!(answer, Branch::OptimizeAsIs | Branch::Continue) => Ok(*auto),
        GatePlan::Automatic(auto) => Err(format!(
            "'{}' is not offered for this stage (it is {}); choose one of: {}, exit",
            answer.as_str(),
            if *auto == Branch::Continue { "composed or already optimized" } else { "fine as it is" },
            auto.as_str()
        )),
    }
}

impl GatePlan {
    /// The branches offered and the recommendation (an automatic plan offers its one branch).
    pub fn offered(&self) -> (Vec<Branch>, Option<Branch>) {
        match self {
            GatePlan::Ask { branches, recommended } => (branches.clone(), *recommended),
            GatePlan::Automatic(b) => (vec![*b], Some(*b)),
        }
    }
}

/// What the restructure gate comes to for a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// A branch, and who chose it: flag | prompt | api | automatic.
    Chosen { branch: Branch, answered_by: String },
    /// Nobody answered and the table has no single outcome: ask.
    Ask,
}

/// The branch for a run: the answer given (up front or at the gate; it must be offered),
/// the table's single outcome, or a question for the user.
pub fn resolve(plan: &GatePlan, given: Option<&str>, answered_by: Option<&str>) -> Result<Resolution, String> {
    match (given, plan) {
        (Some(text), _) => {
            let branch = Branch::parse(text).ok_or_else(|| format!("unknown branch '{text}'"))?;
            let branch = accept(plan, branch)?;
            Ok(Resolution::Chosen { branch, answered_by: answered_by.unwrap_or("flag").to_string() })
        }
        (None, GatePlan::Automatic(b)) => Ok(Resolution::Chosen { branch: *b, answered_by: "automatic".into() }),
        (None, GatePlan::Ask { .. }) => Ok(Resolution::Ask),
    }
}

/// How apply-restructure materializes a branch (the upstream `dedupe.mode` / `goal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    InternalReference,
    ExternalPrototype,
    SelectiveLoading,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InternalReference => "internal_reference",
            Self::ExternalPrototype => "external_prototype",
            Self::SelectiveLoading => "selective_loading",
        }
    }
}

impl Branch {
    /// The materialization a branch authors in Phase 2f; None for branches that author none.
    pub fn mode(self) -> Option<Mode> {
        match self {
            Self::DeduplicateInternally => Some(Mode::InternalReference),
            Self::ExtractAsAssets => Some(Mode::ExternalPrototype),
            Self::DecomposeForSelectiveLoading => Some(Mode::SelectiveLoading),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Branch::*;

    #[test]
    fn dedupe_candidates_offer_both_strategies_without_preselecting() {
        let plan = gate_plan(Classification::MonolithicNeedsRestructure, true, 0, false);
        assert_eq!(
            plan,
            GatePlan::Ask {
                branches: vec![DeduplicateInternally, ExtractAsAssets, OptimizeAsIs, Exit],
                recommended: None
            }
        );
    }

    #[test]
    fn no_dedupe_candidates_recommend_selective_loading() {
        let plan = gate_plan(Classification::MonolithicNeedsRestructure, false, 0, false);
        assert!(matches!(plan, GatePlan::Ask { recommended: Some(DecomposeForSelectiveLoading), .. }));
    }

    #[test]
    fn composed_and_fine_stages_are_not_asked() {
        assert_eq!(gate_plan(Classification::Composed, false, 3, false), GatePlan::Automatic(Continue));
        assert_eq!(gate_plan(Classification::MonolithicFineAsIs, false, 1, true), GatePlan::Automatic(OptimizeAsIs));
        assert_eq!(gate_plan(Classification::AlreadyOptimized, false, 0, false), GatePlan::Automatic(Continue));
    }

    #[test]
    fn an_answer_must_be_on_offer() {
        let plan = gate_plan(Classification::MonolithicNeedsRestructure, true, 0, false);
        assert!(accept(&plan, DecomposeForSelectiveLoading).is_err());
        assert_eq!(accept(&plan, OptimizeAsIs), Ok(OptimizeAsIs));
        assert_eq!(accept(&GatePlan::Automatic(Continue), OptimizeAsIs), Ok(Continue));
        assert!(
            accept(&GatePlan::Automatic(Continue), ExtractAsAssets).is_err(),
            "one rule: an unoffered branch is refused"
        );
        assert!(accept(&GatePlan::Automatic(OptimizeAsIs), DeduplicateInternally).is_err());
    }

    #[test]
    fn branch_names_round_trip() {
        for b in ALL_BRANCHES {
            assert_eq!(Branch::parse(b.as_str()), Some(b));
        }
    }

    #[test]
    fn the_gate_resolves_an_answer_the_table_or_a_question() {
        let ask = gate_plan(Classification::MonolithicNeedsRestructure, true, 0, false);
        assert_eq!(resolve(&ask, None, None), Ok(Resolution::Ask));
        assert_eq!(
            resolve(&ask, Some("exit"), Some("api")),
            Ok(Resolution::Chosen { branch: Branch::Exit, answered_by: "api".into() })
        );
        assert!(resolve(&ask, Some("continue"), None).unwrap_err().contains("not offered"));
        assert!(resolve(&ask, Some("make-it-fast"), None).unwrap_err().contains("unknown branch"));
        let automatic = gate_plan(Classification::Composed, false, 0, false);
        assert_eq!(
            resolve(&automatic, None, None),
            Ok(Resolution::Chosen { branch: Branch::Continue, answered_by: "automatic".into() })
        );
        assert_eq!(automatic.offered(), (vec![Branch::Continue], Some(Branch::Continue)));
    }
}
