//! The workflow as data: the milestone order of the seed, when each phase is skipped,
//! and the termination outcomes. The run driver ([`crate::run`]) walks [`PHASES`];
//! nothing else in the daemon encodes phase order.

use serde::{Deserialize, Serialize};

/// The broad-optimization milestone subsequence of the seed, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Milestone {
    Setup,
    ProfileBaseline,
    StructureAssessment,
    ValidationRunner,
    RestructureDecision,
    ApplyRestructure,
    SoRunValidators,
    SoInterpretValidators,
    SoRunOperations,
    ProfileAfter,
    CompareProfiles,
    OptimizationReport,
}

/// Why a phase does not run for a given run. Evaluated by [`skip_reason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// usd-optimize cannot load: the structural-only path (Phases 4–5 skipped).
    StructuralOnly,
    /// The assessment said `already_optimized`: jump to Phase 6 verify.
    AlreadyOptimized,
    /// The user chose `exit` at the restructure gate: diagnosis-only report.
    ExitedAtGate,
    /// `usdtune assess`: a read-only diagnosis that ends with the structure assessment.
    AssessOnly,
}

pub struct PhaseSpec {
    pub milestone: Milestone,
    /// The exact milestone label of the seed.
    pub label: &'static str,
    /// Phase number(s) of the seed's 7-phase flow that this milestone carries out.
    pub phase: &'static str,
    pub skip_when: &'static [Skip],
}

use Skip::*;

pub const PHASES: &[PhaseSpec] = &[
    PhaseSpec { milestone: Milestone::Setup, label: "omniverse-usd-performance-tuning", phase: "0", skip_when: &[] },
    PhaseSpec {
        milestone: Milestone::ProfileBaseline,
        label: "profile-stage:baseline",
        phase: "1a",
        skip_when: &[AssessOnly],
    },
    PhaseSpec {
        milestone: Milestone::StructureAssessment,
        label: "usd-structure-assessment",
        phase: "1b, 2a, 2b, 2d",
        skip_when: &[],
    },
    PhaseSpec {
        milestone: Milestone::ValidationRunner,
        label: "usd-validation-runner",
        phase: "2c",
        skip_when: &[AssessOnly],
    },
    PhaseSpec {
        milestone: Milestone::RestructureDecision,
        label: "restructure-decision",
        phase: "2e",
        skip_when: &[AssessOnly, AlreadyOptimized],
    },
    PhaseSpec {
        milestone: Milestone::ApplyRestructure,
        label: "apply-restructure",
        phase: "2f, 3",
        skip_when: &[AssessOnly, AlreadyOptimized, ExitedAtGate],
    },
    PhaseSpec {
        milestone: Milestone::SoRunValidators,
        label: "so-run-validators",
        phase: "4 (evidence)",
        skip_when: &[AssessOnly, StructuralOnly, AlreadyOptimized, ExitedAtGate],
    },
    PhaseSpec {
        milestone: Milestone::SoInterpretValidators,
        label: "so-interpret-validators",
        phase: "4 (op chain)",
        skip_when: &[AssessOnly, StructuralOnly, AlreadyOptimized, ExitedAtGate],
    },
    PhaseSpec {
        milestone: Milestone::SoRunOperations,
        label: "so-run-operations",
        phase: "4, 4.5, 5",
        skip_when: &[AssessOnly, StructuralOnly, AlreadyOptimized, ExitedAtGate],
    },
    PhaseSpec {
        milestone: Milestone::ProfileAfter,
        label: "profile-stage:after",
        phase: "6a, 6b",
        skip_when: &[AssessOnly, ExitedAtGate],
    },
    PhaseSpec {
        milestone: Milestone::CompareProfiles,
        label: "compare-profiles",
        phase: "6c",
        skip_when: &[AssessOnly, ExitedAtGate],
    },
    PhaseSpec {
        milestone: Milestone::OptimizationReport,
        label: "optimization-report",
        phase: "6d",
        skip_when: &[AssessOnly],
    },
];

/// The run facts that skip rules read. Filled in as phases complete.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RouteFacts {
    /// From the Phase 0 probe; `None` until known.
    pub so_available: Option<bool>,
    /// `phase_recommendation` of the structure assessment.
    pub phase_recommendation: Option<String>,
    /// The answered restructure branch (see [`crate::decisions::restructure::Branch`]).
    pub restructure_branch: Option<String>,
    /// Who answered the gate up front or at the prompt: flag | prompt | api.
    #[serde(default)]
    pub decision_source: Option<String>,
    /// The run ends after the structure assessment (`usdtune assess`).
    #[serde(default)]
    pub assess_only: bool,
    /// The user approved full-stage validation up front (`--approve-full-validation`).
    #[serde(default)]
    pub full_validation_approved: bool,
    /// A named pipeline asked for instead of the evidence chain (`--pipeline`).
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Approvals of gated operations (`--approve`): op keys or safety classes.
    #[serde(default)]
    pub approvals: Vec<String>,
}

pub fn skip_reason(spec: &PhaseSpec, facts: &RouteFacts) -> Option<&'static str> {
    spec.skip_when.iter().find_map(|skip| {
        let applies = match skip {
            StructuralOnly => facts.so_available == Some(false),
            AlreadyOptimized => facts.phase_recommendation.as_deref() == Some("already_optimized"),
            ExitedAtGate => facts.restructure_branch.as_deref() == Some("exit"),
            AssessOnly => facts.assess_only,
        };
        applies.then(|| skip_note(*skip))
    })
}

fn skip_note(skip: Skip) -> &'static str {
    match skip {
        StructuralOnly => "structural-only: usd-optimize is not available in the executor runtime",
        AlreadyOptimized => "already_optimized: the assessment found nothing to restructure or optimize",
        ExitedAtGate => "exit chosen at the restructure gate: diagnosis-only report",
        AssessOnly => "assess only: the run ends with the structure assessment",
    }
}

pub fn spec(milestone: Milestone) -> &'static PhaseSpec {
    PHASES.iter().find(|p| p.milestone == milestone).expect("every milestone has a spec")
}

/// Stable outcome codes of the seed's termination table and of the daemon's own failures.
pub mod codes {
    pub const BLOCKED_MISSING_SCENE_OPTIMIZER: &str = "blocked_missing_scene_optimizer";
    pub const BLOCKED_MISSING_SO_OPERATION: &str = "blocked_missing_so_operation";
    pub const STAGE_OPEN_FAILED: &str = "stage_open_failed";
    pub const AWAITING_RESTRUCTURE_DECISION: &str = "awaiting_restructure_decision";
    pub const EXECUTOR_LOST: &str = "executor_lost";
    pub const NO_EXECUTOR: &str = "no_executor";
    pub const ORDERING_INVARIANT_VIOLATED: &str = "ordering_invariant_violated";
    pub const ARTIFACT_INVALID: &str = "artifact_schema_violation";
    pub const CANCELLED: &str = "cancelled";
}

/// The seed's termination table, as the daemon applies it (rendered into docs and `usdtune runs --help`).
pub const TERMINATIONS: &[(&str, &str)] = &[
    (
        "Phase 0: operations were requested explicitly but usd-optimize cannot load",
        codes::BLOCKED_MISSING_SCENE_OPTIMIZER,
    ),
    ("Phase 0: a requested operation is absent from operationsAvailable", codes::BLOCKED_MISSING_SO_OPERATION),
    ("Phase 0: broad request, usd-optimize unavailable", "continue: workflow_mode structural_only, Phases 4-5 skipped"),
    ("Phase 1a: the stage cannot be opened", codes::STAGE_OPEN_FAILED),
    ("Phase 2: phase_recommendation = already_optimized", "jump to Phase 6: workflow_mode no_op, verdict neutral"),
    ("Phase 2e: no answer and no terminal to ask", codes::AWAITING_RESTRUCTURE_DECISION),
    ("Phase 2e: exit", "diagnosis-only report (Phase 6d)"),
    (
        "Phase 2e: optimize-as-is",
        "skip Phase 2f, continue with the original stage (Phase 3 flips, if any, in an override layer)",
    ),
    ("Phase 2f/3: the restructured stage fails the per-mesh preservation proof", "restructure_not_lossless"),
    ("Phase 6c: regression > 20%", "report recommends revert (critical)"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_follow_the_seed_subsequence() {
        let labels: Vec<_> = PHASES.iter().map(|p| p.label).collect();
        assert_eq!(
            labels,
            [
                "omniverse-usd-performance-tuning",
                "profile-stage:baseline",
                "usd-structure-assessment",
                "usd-validation-runner",
                "restructure-decision",
                "apply-restructure",
                "so-run-validators",
                "so-interpret-validators",
                "so-run-operations",
                "profile-stage:after",
                "compare-profiles",
                "optimization-report",
            ]
        );
    }

    fn ran(facts: &RouteFacts) -> Vec<&'static str> {
        PHASES.iter().filter(|p| skip_reason(p, facts).is_none()).map(|p| p.label).collect()
    }

    #[test]
    fn structural_only_skips_mesh_phases_but_still_reports() {
        let facts = RouteFacts {
            so_available: Some(false),
            restructure_branch: Some("optimize-as-is".into()),
            ..Default::default()
        };
        let phases = ran(&facts);
        assert!(!phases.contains(&"so-run-operations"));
        assert!(phases.contains(&"profile-stage:after") && phases.contains(&"optimization-report"));
    }

    #[test]
    fn already_optimized_jumps_to_verify() {
        let facts = RouteFacts {
            so_available: Some(true),
            phase_recommendation: Some("already_optimized".into()),
            ..Default::default()
        };
        let phases = ran(&facts);
        assert!(!phases.contains(&"restructure-decision") && !phases.contains(&"so-run-operations"));
        assert!(phases.contains(&"profile-stage:after") && phases.contains(&"compare-profiles"));
    }

    #[test]
    fn exit_at_gate_writes_a_diagnosis_only_report() {
        let facts =
            RouteFacts { so_available: Some(true), restructure_branch: Some("exit".into()), ..Default::default() };
        assert_eq!(ran(&facts).last(), Some(&"optimization-report"));
        assert!(!ran(&facts).contains(&"compare-profiles"));
    }

    #[test]
    fn assess_only_runs_setup_and_the_assessment() {
        let facts = RouteFacts { assess_only: true, ..Default::default() };
        assert_eq!(ran(&facts), ["omniverse-usd-performance-tuning", "usd-structure-assessment"]);
    }

    #[test]
    fn apply_restructure_runs_for_every_branch_that_goes_on() {
        // Branches that author no restructure still get Phase 3 (instancing flips).
        for (branch, runs) in
            [("optimize-as-is", true), ("deduplicate-internally", true), ("extract-as-assets", true), ("exit", false)]
        {
            let facts =
                RouteFacts { so_available: Some(true), restructure_branch: Some(branch.into()), ..Default::default() };
            assert_eq!(ran(&facts).contains(&"apply-restructure"), runs, "{branch}");
        }
    }
}
