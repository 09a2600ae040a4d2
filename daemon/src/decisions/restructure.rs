//! Phase 2e: which restructure branches the gate offers for a classification (the upstream
//! decision table), and which it recommends. The gate shows the recommendation; it never
//! pre-selects it.

use super::assessment::Classification;

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

    /// Branches whose authoring (apply-restructure) this build can carry out.
    pub fn implemented(self) -> bool {
        !matches!(self, Self::ExtractAsAssets | Self::DecomposeForSelectiveLoading)
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

pub fn gate_plan(class: Classification, dedupe_recommended: bool, payload_count: u64, clear_boundaries: bool) -> GatePlan {
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
        Classification::MonolithicFineAsIs if payload_count == 0 && clear_boundaries => GatePlan::Ask {
            branches: vec![DecomposeForSelectiveLoading, OptimizeAsIs, Exit],
            recommended: None,
        },
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
        // Nothing is asked: an up-front answer of optimize-as-is/continue/exit still applies.
        GatePlan::Automatic(_) if answer == Branch::Exit => Ok(Branch::Exit),
        GatePlan::Automatic(auto) => Ok(*auto),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Branch::*;

    #[test]
    fn dedupe_candidates_offer_both_strategies_without_preselecting() {
        let plan = gate_plan(Classification::MonolithicNeedsRestructure, true, 0, false);
        assert_eq!(plan, GatePlan::Ask { branches: vec![DeduplicateInternally, ExtractAsAssets, OptimizeAsIs, Exit], recommended: None });
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
    }

    #[test]
    fn branch_names_round_trip() {
        for b in ALL_BRANCHES {
            assert_eq!(Branch::parse(b.as_str()), Some(b));
        }
    }
}
