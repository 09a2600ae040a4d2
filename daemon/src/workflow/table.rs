//! The workflow as data: one row per phase, in the seed's milestone order, with the seed
//! phase it carries out, when it is skipped, the gate it may raise, the artifacts it reads
//! and writes, and its handler. The driver walks this table; nothing else encodes phase
//! order. Adding a phase is a row here, a handler in `phases/`, and its decision function
//! in `decisions/`.

use futures::future::BoxFuture;

use super::ctx::{PhaseCtx, PhaseResult};
use super::phases::{assess, iterate, operations, profile, report, restructure, setup, validate, verify};
use crate::outcome::Outcome;
use crate::record::{GateKind, RouteFacts};

pub type Handler = for<'a> fn(&'a PhaseCtx<'a>) -> BoxFuture<'a, PhaseResult>;

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
    /// A route trial for a parent run's gate: it ends after Phase 4.
    Trial,
    /// A later pass (Phase 7) ends with its report: the first pass decides what follows.
    LaterPass,
}

pub struct PhaseSpec {
    /// The exact milestone label of the seed (also the phase's key in `run.json`).
    pub label: &'static str,
    /// Phase number(s) of the seed's 7-phase flow that this milestone carries out.
    pub phase: &'static str,
    pub skip_when: &'static [Skip],
    /// The gate this phase may pause the run at.
    pub gate: Option<GateKind>,
    /// Artifacts the phase reads (written by an earlier phase).
    pub reads: &'static [&'static str],
    /// Artifacts the phase may write.
    pub writes: &'static [&'static str],
    /// The executor tasks it runs, for its expected time (decisions::costs).
    pub tasks: &'static [&'static str],
    pub handler: Handler,
}

/// A handler of the table: an `async fn(&PhaseCtx) -> PhaseResult`, boxed.
macro_rules! handler {
    ($f:path) => {{
        fn run<'a>(ctx: &'a PhaseCtx<'a>) -> BoxFuture<'a, PhaseResult> {
            Box::pin($f(ctx))
        }
        run as Handler
    }};
}
#[cfg(test)]
pub(crate) use handler;

use Skip::*;

pub const PHASES: &[PhaseSpec] = &[
    PhaseSpec {
        label: "omniverse-usd-performance-tuning",
        phase: "0",
        skip_when: &[],
        gate: None,
        reads: &[],
        writes: &["setup-preflight"],
        tasks: &["probe", "nucleus_stat"],
        handler: handler!(setup::run),
    },
    PhaseSpec {
        label: "profile-stage:baseline",
        phase: "1a",
        skip_when: &[AssessOnly],
        gate: None,
        reads: &[],
        writes: &["profile-baseline"],
        tasks: &["profile"],
        handler: handler!(profile::baseline),
    },
    PhaseSpec {
        label: "usd-structure-assessment",
        phase: "1b, 2a, 2b, 2d",
        skip_when: &[],
        gate: None,
        reads: &[],
        writes: &["stage-facts", "dedupe-candidates", "geometry-classes", "structure-assessment"],
        tasks: &["facts"],
        handler: handler!(assess::run),
    },
    PhaseSpec {
        label: "usd-validation-runner",
        phase: "2c",
        skip_when: &[AssessOnly],
        gate: None,
        reads: &["structure-assessment", "stage-facts", "geometry-classes"],
        writes: &["validation-scope-note", "validation-report", "source-guard"],
        tasks: &["validate"],
        handler: handler!(validate::baseline),
    },
    PhaseSpec {
        label: "restructure-decision",
        phase: "2e",
        // Runs on an already-optimized stage too (automatically: continue), so that a branch
        // given up front is held to the same rule on every stage.
        skip_when: &[AssessOnly],
        gate: Some(GateKind::Restructure),
        reads: &["structure-assessment", "stage-facts", "dedupe-candidates"],
        writes: &["route-trials", "restructure-decision"],
        tasks: &[],
        handler: handler!(restructure::decide),
    },
    PhaseSpec {
        label: "apply-restructure",
        phase: "2f, 3",
        skip_when: &[AssessOnly, AlreadyOptimized, ExitedAtGate],
        gate: None,
        reads: &["dedupe-candidates", "structure-assessment", "validation-report"],
        writes: &["apply-restructure-manifest", "instancing-readiness", "preservation-apply-restructure"],
        tasks: &["restructure"],
        handler: handler!(restructure::apply),
    },
    PhaseSpec {
        label: "so-run-validators",
        phase: "4 (evidence)",
        skip_when: &[AssessOnly, StructuralOnly, AlreadyOptimized, ExitedAtGate],
        gate: None,
        reads: &["structure-assessment", "stage-facts", "geometry-classes"],
        writes: &["validation-scope-note-targets", "validation-report-targets"],
        tasks: &["validate"],
        handler: handler!(validate::targets),
    },
    PhaseSpec {
        label: "so-interpret-validators",
        phase: "4 (op chain)",
        skip_when: &[AssessOnly, StructuralOnly, AlreadyOptimized, ExitedAtGate],
        gate: None,
        reads: &["validation-report-targets", "validation-report", "stage-facts", "apply-restructure-manifest"],
        writes: &["operation-plan"],
        tasks: &[],
        handler: handler!(operations::interpret),
    },
    PhaseSpec {
        label: "so-run-operations",
        phase: "4, 4.5, 5",
        skip_when: &[AssessOnly, StructuralOnly, AlreadyOptimized, ExitedAtGate],
        gate: None,
        reads: &["operation-plan", "validation-report", "validation-report-targets"],
        writes: &[
            "operations-status",
            "ref-remap-manifest",
            "preservation-so-run-operations",
            "validation-scope-note-reverify",
            "validation-report-targets-after",
        ],
        tasks: &["geometry", "operations", "geometry"],
        handler: handler!(operations::run),
    },
    PhaseSpec {
        label: "profile-stage:after",
        phase: "6a, 6b",
        skip_when: &[AssessOnly, ExitedAtGate, Trial],
        gate: None,
        reads: &["structure-assessment", "stage-facts", "geometry-classes"],
        writes: &["profile-after", "validation-scope-note", "validation-report-after"],
        tasks: &["profile_pair"],
        handler: handler!(verify::profile_after),
    },
    PhaseSpec {
        label: "compare-profiles",
        phase: "6c",
        skip_when: &[AssessOnly, ExitedAtGate, Trial],
        gate: None,
        reads: &["profile-baseline", "profile-after"],
        writes: &["compare-profiles"],
        tasks: &[],
        handler: handler!(verify::compare),
    },
    PhaseSpec {
        label: "optimization-report",
        phase: "6d",
        skip_when: &[AssessOnly, Trial],
        gate: None,
        reads: &["setup-preflight", "structure-assessment", "dedupe-candidates"],
        writes: &["optimization-report"],
        tasks: &[],
        handler: handler!(report::run),
    },
    PhaseSpec {
        label: "iterate",
        phase: "7",
        skip_when: &[AssessOnly, Trial, ExitedAtGate, StructuralOnly, LaterPass],
        gate: None,
        reads: &["compare-profiles", "optimization-report"],
        writes: &["iterations"],
        tasks: &[],
        handler: handler!(iterate::run),
    },
];

/// The labels of the table, in order.
pub fn labels() -> Vec<&'static str> {
    PHASES.iter().map(|p| p.label).collect()
}

pub fn skip_reason(spec: &PhaseSpec, facts: &RouteFacts) -> Option<&'static str> {
    spec.skip_when.iter().find_map(|skip| {
        let applies = match skip {
            StructuralOnly => facts.so_available == Some(false),
            AlreadyOptimized => facts.phase_recommendation.as_deref() == Some("already_optimized"),
            ExitedAtGate => facts.restructure_branch.as_deref() == Some("exit"),
            AssessOnly => facts.assess_only,
            Trial => facts.trial,
            LaterPass => facts.pass > 1,
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
        Trial => "a route trial ends after Phase 4: its parent profiles every trial in one sitting",
        LaterPass => "a later pass ends with its report: the first pass's Phase 7 decides what follows",
    }
}

/// The seed's termination table as the daemon applies it: (condition, what happens).
pub const TERMINATIONS: &[(&str, Termination)] = &[
    (
        "Phase 0: operations were requested explicitly but usd-optimize cannot load",
        Termination::Stop(Outcome::BlockedMissingUsdOptimize),
    ),
    (
        "Phase 0: a requested operation is absent from operationsAvailable",
        Termination::Stop(Outcome::BlockedMissingUsdOptimizeOperation),
    ),
    (
        "Phase 0: broad request, usd-optimize unavailable",
        Termination::Continue("workflow_mode structural_only, Phases 4-5 skipped"),
    ),
    ("Phase 1a: the stage cannot be opened", Termination::Stop(Outcome::StageOpenFailed)),
    (
        "Phase 2: phase_recommendation = already_optimized",
        Termination::Continue("jump to Phase 6: workflow_mode no_op, verdict neutral"),
    ),
    ("Phase 2e: no answer and no terminal to ask", Termination::Stop(Outcome::AwaitingRestructureDecision)),
    ("Phase 2e: exit", Termination::Continue("diagnosis-only report (Phase 6d)")),
    (
        "Phase 2e: optimize-as-is",
        Termination::Continue(
            "skip Phase 2f, continue with the original stage (Phase 3 flips, if any, in an override layer)",
        ),
    ),
    (
        "Phase 2f/3: the restructured stage fails the per-mesh preservation proof",
        Termination::Stop(Outcome::RestructureNotLossless),
    ),
    ("Phase 6c: regression > 20%", Termination::Continue("the report recommends revert (critical)")),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    /// The run ends (or pauses) with this code.
    Stop(Outcome),
    /// The run goes on as described.
    Continue(&'static str),
}

/// The termination table as Markdown rows (for `usdtune runs --help` and the docs).
pub fn terminations_markdown() -> String {
    let mut md = String::from("| condition | outcome |\n|---|---|\n");
    for (condition, termination) in TERMINATIONS {
        let outcome = match termination {
            Termination::Stop(o) => format!("stops: `{o}`"),
            Termination::Continue(what) => format!("continues: {what}"),
        };
        md += &format!("| {condition} | {outcome} |\n");
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_follow_the_seed_subsequence() {
        assert_eq!(
            labels(),
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
                "iterate",
            ]
        );
    }

    #[test]
    fn every_artifact_a_phase_names_has_a_schema_and_reads_follow_writes() {
        let known: Vec<&str> = crate::store::artifact_names().collect();
        let mut written: Vec<&str> = Vec::new();
        for spec in PHASES {
            for name in spec.reads {
                assert!(known.contains(name), "{}: reads unknown artifact {name}", spec.label);
                assert!(written.contains(name), "{}: reads {name} before any phase writes it", spec.label);
            }
            for name in spec.writes {
                assert!(known.contains(name), "{}: writes unknown artifact {name}", spec.label);
            }
            written.extend(spec.writes.iter());
        }
    }

    #[test]
    fn only_the_restructure_decision_raises_a_gate_and_every_stop_has_a_code() {
        let gated: Vec<&str> = PHASES.iter().filter(|p| p.gate.is_some()).map(|p| p.label).collect();
        assert_eq!(gated, ["restructure-decision"]);
        assert!(terminations_markdown().contains("`restructure_not_lossless`"));
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
        assert!(!phases.contains(&"apply-restructure") && !phases.contains(&"so-run-operations"));
        assert!(phases.contains(&"profile-stage:after") && phases.contains(&"compare-profiles"));
        // The gate still runs (automatically), so a branch given up front meets the one rule.
        assert!(phases.contains(&"restructure-decision"));
    }

    #[test]
    fn exit_at_gate_writes_a_diagnosis_only_report() {
        let facts =
            RouteFacts { so_available: Some(true), restructure_branch: Some("exit".into()), ..Default::default() };
        assert_eq!(ran(&facts).last(), Some(&"optimization-report"), "nothing to iterate on");
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
