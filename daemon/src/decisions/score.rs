//! The Stage Optimization Score (0–10) of the optimization report, computed
//! deterministically from measured deltas: each group scores 5 at no change, 10 at a
//! 50 % improvement or better, 0 at a 50 % regression or worse; the overall score is the
//! weighted mean over scored groups, rounded to one decimal.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricGroup {
    pub id: String,
    pub display_name: String,
    pub score: Option<f64>,
    /// measured | not_measured
    pub status: String,
    pub weight: f64,
    pub summary: String,
    /// Why a group is not scored although it was measured (an inconclusive timing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caveat: Option<String>,
}

/// Score of a lower-is-better change in percent.
pub fn group_score(change_pct: f64) -> f64 {
    ((5.0 - change_pct / 10.0).clamp(0.0, 10.0) * 10.0).round() / 10.0
}

pub fn overall(groups: &[MetricGroup]) -> f64 {
    let scored: Vec<(f64, f64)> =
        groups.iter().filter_map(|g| g.score.filter(|_| g.weight > 0.0).map(|s| (s, g.weight))).collect();
    let weight: f64 = scored.iter().map(|(_, w)| w).sum();
    if weight == 0.0 {
        return 5.0;
    }
    (scored.iter().map(|(s, w)| s * w).sum::<f64>() / weight * 10.0).round() / 10.0
}

pub fn label(score: f64) -> &'static str {
    match score {
        s if s >= 9.0 => "excellent",
        s if s >= 7.5 => "strong",
        s if s >= 5.5 => "moderate",
        s if s >= 4.5 => "neutral",
        s if s >= 2.5 => "mixed",
        _ => "regressed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(score: Option<f64>, weight: f64) -> MetricGroup {
        MetricGroup {
            id: "other".into(),
            display_name: "x".into(),
            score,
            status: "measured".into(),
            weight,
            summary: String::new(),
            caveat: None,
        }
    }

    #[test]
    fn scores_map_changes_to_bands() {
        assert_eq!(group_score(0.0), 5.0);
        assert_eq!(group_score(-50.0), 10.0);
        assert_eq!(group_score(-90.0), 10.0);
        assert_eq!(group_score(50.0), 0.0);
        assert_eq!(group_score(-25.0), 7.5);
    }

    #[test]
    fn overall_is_the_weighted_mean_of_scored_groups() {
        let groups = [group(Some(10.0), 3.0), group(Some(5.0), 1.0), group(None, 5.0), group(Some(0.0), 0.0)];
        assert_eq!(overall(&groups), 8.8);
        assert_eq!(label(8.8), "strong");
        assert_eq!(overall(&[]), 5.0);
    }
}
