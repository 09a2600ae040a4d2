//! Phase 7: whether another scoped pass runs after a report, and what it changes.
//!
//! The seed's posture is up to three passes for a broad run; a later pass starts from what the
//! previous one measured and stops when nothing useful is left for it (7e). An unattended pass
//! here changes only what a measurement of the previous pass contradicts and a lossless
//! alternative exists for: the instancing form deduplicateGeometry used, when the paired
//! after-profile found warm open conclusively slower than the source (native instancing of
//! single-mesh copies opens 1.3–2.1× slower; a point instancer 183× faster, DESIGN.md). What
//! needs the user (bounded-loss ops, a restructure declined at the gate, a full validation
//! sweep) is listed as untapped, never run by a later pass on its own. The final output is the
//! better of the passes by the paired verdict, never a worse one (`better`).

use serde::{Deserialize, Serialize};

use super::compare::Verdict;
use super::op_chain::InstancingForm;

/// Passes a broad run may take when the user says nothing (the seed's posture).
pub const DEFAULT_PASSES: u32 = 3;

/// What a finished pass measured and did, as the next-pass decision reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct PassFacts {
    /// 1 for the first pass.
    pub pass: u32,
    /// Passes the run may take (`--passes`).
    pub passes: u32,
    pub verdict: Verdict,
    /// full | no_op | structural_only.
    pub workflow_mode: String,
    /// The form deduplicateGeometry ran in, None when it did not run.
    pub instancing_form: Option<InstancingForm>,
    /// The paired warm-open change in percent, and whether its interval settles it.
    pub warm_open_change_pct: Option<f64>,
    pub warm_open_conclusive: bool,
    /// Forms earlier passes already ran (a pass never repeats one).
    pub forms_tried: Vec<InstancingForm>,
}

/// The next pass's change to the previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum PassChange {
    /// Run Phase 4 again with deduplicateGeometry in this form.
    InstancingForm { form: InstancingForm },
}

#[derive(Clone, Debug, PartialEq)]
pub enum NextPass {
    Stop(String),
    Run { change: PassChange, why: String },
}

/// A warm-open change beyond this (the compare band) is a regression a pass may correct.
const REGRESSION_PCT: f64 = super::compare::BAND_PCT;

pub fn next_pass(f: &PassFacts) -> NextPass {
    if f.pass >= f.passes {
        return NextPass::Stop(format!("{} of {} pass(es) taken", f.pass, f.passes));
    }
    if f.workflow_mode != "full" {
        return NextPass::Stop(format!("the pass was {}: nothing for another pass to work on", f.workflow_mode));
    }
    let slower = f.warm_open_conclusive && f.warm_open_change_pct.is_some_and(|c| c > REGRESSION_PCT);
    if let (true, Some(form)) = (slower, f.instancing_form) {
        let other = match form {
            InstancingForm::Native => InstancingForm::PointInstancer,
            InstancingForm::PointInstancer => InstancingForm::Native,
        };
        if !f.forms_tried.contains(&other) {
            return NextPass::Run {
                change: PassChange::InstancingForm { form: other },
                why: format!(
                    "warm open {:+.1}% after deduplicateGeometry as {}: pass {} tries {}",
                    f.warm_open_change_pct.unwrap_or_default(),
                    form_name(form),
                    f.pass + 1,
                    form_name(other)
                ),
            };
        }
    }
    if f.verdict == Verdict::Regressed {
        return NextPass::Stop("the pass regressed and no lossless alternative is left to try".into());
    }
    NextPass::Stop("nothing useful is left for an unattended pass (what needs approval is listed as untapped)".into())
}

pub fn form_name(form: InstancingForm) -> &'static str {
    match form {
        InstancingForm::PointInstancer => "a point instancer",
        InstancingForm::Native => "native instancing",
    }
}

/// Whether a later pass's result beats an earlier one's: a better verdict, or the same
/// verdict with a faster warm open (both measured against the same source).
pub fn better(later: (Verdict, f64), earlier: (Verdict, f64)) -> bool {
    let rank = |v: Verdict| match v {
        Verdict::Improved => 3,
        Verdict::Mixed => 2,
        Verdict::Neutral => 1,
        Verdict::Regressed => 0,
    };
    rank(later.0) > rank(earlier.0) || (rank(later.0) == rank(earlier.0) && later.1 < earlier.1)
}

/// iterations.json: every pass, what it changed and why, which one is final and why the
/// passes stopped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Iterations {
    pub passes_allowed: u32,
    pub final_pass: u32,
    pub stop_reason: String,
    pub passes: Vec<PassRow>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PassRow {
    pub pass: u32,
    /// The pass's folder, relative to the run's ("." for the first).
    pub workspace: String,
    /// What the pass changed from the previous one (none for the first).
    pub change: Option<PassChange>,
    pub why: String,
    /// completed | failed | blocked.
    pub state: String,
    pub code: String,
    pub verdict: Option<String>,
    pub warm_open_change_pct: Option<f64>,
    pub instancing_form: Option<InstancingForm>,
    pub output_path: Option<String>,
    pub report_path: Option<String>,
    pub seconds: f64,
}

impl PassRow {
    pub fn failed(
        pass: u32,
        workspace: &str,
        change: PassChange,
        why: String,
        state: &str,
        code: &str,
        seconds: f64,
    ) -> Self {
        Self {
            pass,
            workspace: workspace.into(),
            change: Some(change),
            why,
            state: state.into(),
            code: code.into(),
            verdict: None,
            warm_open_change_pct: None,
            instancing_form: None,
            output_path: None,
            report_path: None,
            seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> PassFacts {
        PassFacts {
            pass: 1,
            passes: 3,
            verdict: Verdict::Mixed,
            workflow_mode: "full".into(),
            instancing_form: Some(InstancingForm::Native),
            warm_open_change_pct: Some(40.0),
            warm_open_conclusive: true,
            forms_tried: vec![InstancingForm::Native],
        }
    }

    #[test]
    fn a_measured_instancing_regression_is_corrected_by_the_other_form_once() {
        let NextPass::Run { change, why } = next_pass(&facts()) else { panic!("a second pass") };
        assert_eq!(change, PassChange::InstancingForm { form: InstancingForm::PointInstancer });
        assert!(why.contains("+40.0%") && why.contains("pass 2"), "{why}");
        let both = PassFacts {
            pass: 2,
            instancing_form: Some(InstancingForm::PointInstancer),
            forms_tried: vec![InstancingForm::Native, InstancingForm::PointInstancer],
            ..facts()
        };
        assert!(matches!(next_pass(&both), NextPass::Stop(_)), "never back to a form already run");
    }

    #[test]
    fn noise_no_dedupe_the_last_pass_or_a_no_op_stop() {
        let inconclusive = PassFacts { warm_open_conclusive: false, ..facts() };
        assert!(matches!(next_pass(&inconclusive), NextPass::Stop(r) if r.contains("nothing useful")));
        let faster = PassFacts { warm_open_change_pct: Some(-80.0), ..facts() };
        assert!(matches!(next_pass(&faster), NextPass::Stop(_)));
        let no_dedupe = PassFacts { instancing_form: None, verdict: Verdict::Regressed, ..facts() };
        assert!(matches!(next_pass(&no_dedupe), NextPass::Stop(r) if r.contains("regressed")));
        let last = PassFacts { passes: 1, ..facts() };
        assert!(matches!(next_pass(&last), NextPass::Stop(r) if r.contains("1 of 1")));
        let no_op = PassFacts { workflow_mode: "no_op".into(), ..facts() };
        assert!(matches!(next_pass(&no_op), NextPass::Stop(r) if r.contains("no_op")));
    }

    #[test]
    fn the_better_pass_wins_by_verdict_then_warm_open() {
        assert!(better((Verdict::Improved, 50.0), (Verdict::Mixed, 10.0)));
        assert!(!better((Verdict::Mixed, 10.0), (Verdict::Improved, 50.0)));
        assert!(better((Verdict::Improved, 9.0), (Verdict::Improved, 10.0)));
        assert!(!better((Verdict::Improved, 10.0), (Verdict::Improved, 10.0)), "a tie keeps the earlier pass");
    }
}
