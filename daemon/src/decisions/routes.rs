//! Phase 2e's recommendation from measurement: every branch the gate offers is tried as a
//! whole route (restructure, Phase 4 chain, proof) in a trial workspace, each trial's output
//! is profiled paired with the source, and the gate recommends the route that wins for the
//! user's goal. Above the trial budget the routes are estimated from the assessment's counts
//! instead, and the table says so. Plain functions over the trials' measured figures.
//!
//! Measured on the generated hall (9,053 prims, 127 stations of nested robots; one full run
//! per branch, 7 paired rounds each): optimize-as-is opens in 0.024× the source's warm-open time but
//! writes 2.65× its re-encoded bytes (point instancers); deduplicate-internally 0.09× and
//! 0.17×; extract-as-assets 0.13× and 0.40×. No route wins every goal, hence `--goal`.

use serde::{Deserialize, Serialize};

use super::compare::{Comparison, Verdict};

/// Stages above this many composed prims (instance proxies counted) are not tried whole: a
/// trial costs a full route per branch plus its paired profile.
pub const TRIAL_MAX_PRIMS: u64 = 30_000;
/// Paired rounds per trial (the run's own verdict takes more).
pub const TRIAL_ROUNDS: usize = 5;
/// Two routes within this fraction of each other's score are a tie; the one offered first wins.
pub const TIE: f64 = 0.02;

/// What the user optimizes for (`--goal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Goal {
    LoadTime,
    Footprint,
    Balanced,
}

impl Goal {
    pub const ALL: [Goal; 3] = [Goal::LoadTime, Goal::Footprint, Goal::Balanced];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoadTime => "load-time",
            Self::Footprint => "footprint",
            Self::Balanced => "balanced",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == text)
    }
}

/// One route as tried, or why it could not be.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouteTrial {
    pub branch: String,
    /// completed | failed | blocked | estimated
    pub outcome: String,
    /// The outcome code of a trial that did not complete cleanly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub seconds: f64,
    /// Whether the route wrote a stage (a route that changed nothing is the source).
    pub wrote_output: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// After/before paired ratio of the warm open (1 when nothing was written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_interval: Option<[f64; 2]>,
    /// Output bytes over the source re-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_ratio: Option<f64>,
    /// Composed prims with instance proxies, after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prims_after: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
}

impl RouteTrial {
    /// A completed trial's figures from its paired comparison (None: nothing was written).
    pub fn completed(branch: &str, seconds: f64, comparison: Option<&Comparison>, prims_after: Option<u64>) -> Self {
        let metric = |name: &str| comparison.and_then(|c| c.metrics.iter().find(|m| m.name == name));
        let warm = metric("warm_open_ms");
        let bytes = comparison.and_then(|c| c.footprint.as_ref());
        Self {
            branch: branch.into(),
            outcome: "completed".into(),
            code: None,
            seconds,
            wrote_output: comparison.is_some(),
            verdict: Some(comparison.map_or(Verdict::Neutral, |c| c.verdict)),
            open_ratio: Some(warm.and_then(|m| m.ratio).unwrap_or(1.0)),
            open_interval: warm.and_then(|m| m.ratio_interval),
            bytes_ratio: Some(
                bytes.map_or(1.0, |f| f.optimized_bytes as f64 / f.repack_normalized_baseline_bytes.max(1) as f64),
            ),
            prims_after,
            notes: String::new(),
        }
    }

    /// A route that ended without an output to measure: failed, or blocked with its code.
    pub fn not_completed(branch: &str, outcome: &str, code: &str, seconds: f64, notes: &str) -> Self {
        Self {
            branch: branch.into(),
            outcome: outcome.into(),
            code: Some(code.into()),
            seconds,
            wrote_output: false,
            verdict: None,
            open_ratio: None,
            open_interval: None,
            bytes_ratio: None,
            prims_after: None,
            notes: notes.into(),
        }
    }

    /// The goal's score: lower is better; None when the route cannot be recommended.
    pub fn score(&self, goal: Goal) -> Option<f64> {
        if self.outcome != "completed" && self.outcome != "estimated" {
            return None;
        }
        match goal {
            Goal::LoadTime => self.open_ratio,
            Goal::Footprint => self.bytes_ratio,
            Goal::Balanced => Some((self.open_ratio? * self.bytes_ratio?).sqrt()),
        }
    }

    /// Whether the route gains anything over the source on the goal's axes: open time faster
    /// (its paired interval below 1, or, unmeasured, the ratio a tie below) or bytes a tie below.
    pub fn gains(&self, goal: Goal) -> bool {
        let faster = match (self.open_interval, self.open_ratio) {
            (Some([_, high]), _) => high < 1.0,
            (None, Some(ratio)) => ratio < 1.0 - TIE,
            (None, None) => false,
        };
        let smaller = self.bytes_ratio.is_some_and(|r| r < 1.0 - TIE);
        match goal {
            Goal::LoadTime => faster,
            Goal::Footprint => smaller,
            Goal::Balanced => faster || smaller,
        }
    }
}

/// route-trials.json: the table the gate shows and what it recommends.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RouteTrials {
    pub goal: Goal,
    /// measured (each route run on the whole stage) | estimated (above the trial budget)
    pub basis: String,
    pub trials: Vec<RouteTrial>,
    pub recommended: Option<String>,
    pub reason: String,
}

/// The recommendation: the route with the best score for `goal`, a tie going to the one
/// offered first (the simpler); None when no route completed.
/// The route to recommend: the best score for the goal, or, where `exit` is offered and the
/// best measured route gains nothing over the source on the goal's axes ([`RouteTrial::gains`]),
/// exit. On the Duplex BIM scene every route opened 1.06-1.11x slower than the source for no
/// byte gain (its copies already share a library; instancing 46 small groups costs open time).
pub fn recommend(goal: Goal, basis: &str, trials: Vec<RouteTrial>, exit_offered: bool) -> RouteTrials {
    let mut best: Option<(&RouteTrial, f64)> = None;
    for trial in &trials {
        let Some(score) = trial.score(goal) else { continue };
        if best.is_none_or(|(_, b)| score < b * (1.0 - TIE)) {
            best = Some((trial, score));
        }
    }
    let (recommended, reason) = match best {
        Some((trial, score)) if exit_offered && basis == "measured" && !trial.gains(goal) => (
            Some("exit".to_string()),
            format!(
                "no route gains over the source for the {} goal: the best, {}, scores {score:.3} (the source is 1) \
                 and {}: exit writes nothing",
                goal.as_str(),
                trial.branch,
                match goal {
                    Goal::LoadTime => "opens no faster",
                    Goal::Footprint => "writes no fewer bytes",
                    Goal::Balanced => "opens no faster, with no fewer bytes",
                }
            ),
        ),
        Some((trial, score)) => (
            Some(trial.branch.clone()),
            format!(
                "{} has the best {} score ({score:.3}: {}) of the {} route(s) {}",
                trial.branch,
                goal.as_str(),
                match goal {
                    Goal::LoadTime => "warm-open ratio".to_string(),
                    Goal::Footprint => "bytes over the re-encoded source".to_string(),
                    Goal::Balanced => "geometric mean of the warm-open and bytes ratios".to_string(),
                },
                trials.iter().filter(|t| t.score(goal).is_some()).count(),
                if basis == "measured" { "tried on the whole stage" } else { "estimated" }
            ),
        ),
        None => (None, "no route completed: nothing to recommend".into()),
    };
    RouteTrials { goal, basis: basis.into(), trials, recommended, reason }
}

/// Above the trial budget: each route estimated from the assessment. A de-duplicating route
/// removes the prims the frontier saves; bytes and open time follow the prims (the measured
/// trials above show both shrink with them for a restructure); optimize-as-is keeps them.
pub fn estimate(branches: &[&str], prims: u64, prim_savings: u64) -> Vec<RouteTrial> {
    branches
        .iter()
        .map(|branch| {
            let after = match *branch {
                "deduplicate-internally" | "extract-as-assets" => prims.saturating_sub(prim_savings),
                _ => prims,
            };
            let ratio = after as f64 / prims.max(1) as f64;
            RouteTrial {
                branch: branch.to_string(),
                outcome: "estimated".into(),
                code: None,
                seconds: 0.0,
                wrote_output: after != prims,
                verdict: None,
                open_ratio: Some(ratio),
                open_interval: None,
                // Extracted prototypes cost a file each: held a step behind the internal form.
                bytes_ratio: Some(if *branch == "extract-as-assets" { (ratio * 1.1).min(1.0) } else { ratio }),
                prims_after: Some(after),
                notes: format!("estimated from the assessment: {prim_savings} of {prims} prims shared"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(branch: &str, open: f64, bytes: f64) -> RouteTrial {
        RouteTrial {
            branch: branch.into(),
            outcome: "completed".into(),
            code: None,
            seconds: 1.0,
            wrote_output: true,
            verdict: Some(Verdict::Improved),
            open_ratio: Some(open),
            open_interval: None,
            bytes_ratio: Some(bytes),
            prims_after: None,
            notes: String::new(),
        }
    }

    /// The hall's measured figures (module header).
    fn hall() -> Vec<RouteTrial> {
        vec![
            trial("deduplicate-internally", 0.09, 0.17),
            trial("extract-as-assets", 0.13, 0.40),
            trial("optimize-as-is", 0.024, 2.65),
        ]
    }

    #[test]
    fn the_goal_decides_between_routes_that_win_different_axes() {
        let pick = |goal| recommend(goal, "measured", hall(), true).recommended.unwrap();
        assert_eq!(pick(Goal::LoadTime), "optimize-as-is");
        assert_eq!(pick(Goal::Footprint), "deduplicate-internally");
        assert_eq!(pick(Goal::Balanced), "deduplicate-internally");
    }

    #[test]
    fn a_failed_route_is_never_recommended_and_a_tie_goes_to_the_first_offered() {
        let mut trials = hall();
        trials[0].outcome = "blocked".into();
        trials[0].code = Some(crate::outcome::Outcome::GeometryNotPreserved.code().into());
        assert_eq!(recommend(Goal::Footprint, "measured", trials, true).recommended.unwrap(), "extract-as-assets");
        let tied = vec![trial("deduplicate-internally", 0.5, 0.5), trial("extract-as-assets", 0.495, 0.5)];
        assert_eq!(recommend(Goal::Balanced, "measured", tied, true).recommended.unwrap(), "deduplicate-internally");
        let none = recommend(Goal::Balanced, "measured", vec![], true);
        assert!(none.recommended.is_none());
    }

    #[test]
    fn when_no_route_beats_the_source_exit_is_recommended() {
        // The Duplex: every route opens slower (intervals above 1) for no fewer bytes.
        let measured = |branch, open: f64, interval: [f64; 2], bytes| RouteTrial {
            open_interval: Some(interval),
            ..trial(branch, open, bytes)
        };
        let slower = vec![
            measured("deduplicate-internally", 1.018, [1.004, 1.04], 1.0),
            measured("optimize-as-is", 1.108, [1.08, 1.13], 1.004),
        ];
        let table = recommend(Goal::Balanced, "measured", slower.clone(), true);
        assert_eq!(table.recommended.as_deref(), Some("exit"));
        assert!(table.reason.contains("deduplicate-internally"), "{}", table.reason);
        // Without exit on offer the best route stands; an estimate is never a reason to exit.
        assert_eq!(
            recommend(Goal::Balanced, "measured", slower.clone(), false).recommended.unwrap(),
            "deduplicate-internally"
        );
        assert_eq!(recommend(Goal::Balanced, "estimated", slower, true).recommended.unwrap(), "deduplicate-internally");
        // A route that gains on one axis of the goal stands, even if it loses a little on the other.
        let smaller = vec![measured("deduplicate-internally", 1.03, [1.01, 1.05], 0.6)];
        assert_eq!(
            recommend(Goal::Balanced, "measured", smaller.clone(), true).recommended.unwrap(),
            "deduplicate-internally"
        );
        let load_time = recommend(Goal::LoadTime, "measured", smaller, true);
        assert_eq!(load_time.recommended.as_deref(), Some("exit"));
        assert!(
            load_time.reason.contains("opens no faster") && !load_time.reason.contains("bytes"),
            "{}",
            load_time.reason
        );
    }

    #[test]
    fn estimates_follow_the_shared_prims() {
        let estimated = estimate(&["deduplicate-internally", "extract-as-assets", "optimize-as-is"], 1000, 900);
        let picked = recommend(Goal::Balanced, "estimated", estimated, true);
        assert_eq!(picked.recommended.unwrap(), "deduplicate-internally");
        assert!(picked.reason.contains("estimated"));
        assert_eq!(picked.trials[2].open_ratio, Some(1.0));
    }
}
