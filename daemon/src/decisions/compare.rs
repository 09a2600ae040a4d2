//! Phase 6c compare-profiles: before/after deltas per metric and an overall verdict.
//!
//! Bands (upstream compare-profiles): improved when better by more than 5 %, neutral within
//! ±5 %, regressed when worse by more than 5 %, critical when worse by more than 20 %.
//! Timing rows whose change is inside the measured spread, or below the timer's useful
//! resolution, are neutral: that evidence is inconclusive, not a regression.

use serde::{Deserialize, Serialize};

pub const BAND_PCT: f64 = 5.0;
pub const CRITICAL_PCT: f64 = 20.0;
/// Warm samples noisier than this (max-min over median) make warm-open evidence inconclusive.
pub const NOISY_SPREAD_PCT: f64 = 15.0;
/// Timing differences smaller than this are below what one Python-driven capture resolves.
pub const TIMING_FLOOR_MS: f64 = 1.0;

#[derive(Clone, Debug, Deserialize)]
pub struct Profile {
    pub mode: String,
    pub cold_open_ms: f64,
    pub warm_open_ms: f64,
    pub warm_open_spread_pct: f64,
    pub traverse_ms: f64,
    pub attribute_resolution_ms: f64,
    pub transform_ms: f64,
    pub prim_count: u64,
    pub prim_count_authored: u64,
    pub prim_count_with_instance_proxies: u64,
    pub layer_count: u64,
    pub total_size_bytes: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Improved,
    Neutral,
    Regressed,
    Mixed,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Improved => "improved",
            Self::Neutral => "neutral",
            Self::Regressed => "regressed",
            Self::Mixed => "mixed",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MetricDelta {
    pub name: String,
    pub before: f64,
    pub after: f64,
    pub change_pct: f64,
    pub verdict: Verdict,
    /// none | warning | critical
    pub severity: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
}

/// compare-profiles.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    pub verdict: Verdict,
    pub summary: String,
    pub mode: String,
    pub metrics: Vec<MetricDelta>,
    pub regressions: Vec<String>,
    pub recommendations: Vec<String>,
    pub critical: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Timing,
    Count,
}

fn change_pct(before: f64, after: f64) -> f64 {
    if before == 0.0 {
        if after == 0.0 {
            0.0
        } else {
            100.0
        }
    } else {
        ((after - before) / before * 1000.0).round() / 10.0
    }
}

fn delta(name: &'static str, kind: Kind, before: f64, after: f64, inconclusive: Option<String>) -> MetricDelta {
    let pct = change_pct(before, after);
    let mut notes = String::new();
    let mut verdict = if pct < -BAND_PCT {
        Verdict::Improved
    } else if pct > BAND_PCT {
        Verdict::Regressed
    } else {
        Verdict::Neutral
    };
    if kind == Kind::Timing && verdict != Verdict::Neutral && (after - before).abs() < TIMING_FLOOR_MS {
        notes = format!("change of {:.2} ms is below the {TIMING_FLOOR_MS} ms timing floor", after - before);
        verdict = Verdict::Neutral;
    } else if let Some(reason) = inconclusive.filter(|_| verdict != Verdict::Neutral) {
        notes = reason;
        verdict = Verdict::Neutral;
    }
    let severity = match verdict {
        Verdict::Regressed if pct > CRITICAL_PCT => "critical",
        Verdict::Regressed => "warning",
        _ => "none",
    };
    MetricDelta { name: name.into(), before, after, change_pct: pct, verdict, severity: severity.into(), notes }
}

/// `layers_added_on_purpose`: apply-restructure wrote files of its own (prototypes,
/// sub-assets, an instancing override layer), so more layers is the intent, not a regression.
pub fn compare(before: &Profile, after: &Profile, layers_added_on_purpose: bool) -> Result<Comparison, String> {
    if before.mode != after.mode {
        return Err(format!("cannot compare a {} profile with a {} profile", before.mode, after.mode));
    }
    let spread = before.warm_open_spread_pct.max(after.warm_open_spread_pct);
    let warm_change = change_pct(before.warm_open_ms, after.warm_open_ms).abs();
    let warm_inconclusive = if spread > NOISY_SPREAD_PCT {
        Some(format!("warm samples spread {spread:.1}% (> {NOISY_SPREAD_PCT}%): inconclusive"))
    } else if warm_change <= spread {
        Some(format!("change {warm_change:.1}% is within the measured spread {spread:.1}%: inconclusive"))
    } else {
        None
    };
    let metrics = vec![
        delta("cold_open_ms", Kind::Timing, before.cold_open_ms, after.cold_open_ms, None),
        delta("warm_open_ms", Kind::Timing, before.warm_open_ms, after.warm_open_ms, warm_inconclusive),
        delta("traverse_ms", Kind::Timing, before.traverse_ms, after.traverse_ms, None),
        delta(
            "attribute_resolution_ms",
            Kind::Timing,
            before.attribute_resolution_ms,
            after.attribute_resolution_ms,
            None,
        ),
        delta("transform_ms", Kind::Timing, before.transform_ms, after.transform_ms, None),
        delta(
            "prim_count_authored",
            Kind::Count,
            before.prim_count_authored as f64,
            after.prim_count_authored as f64,
            None,
        ),
        delta("prim_count", Kind::Count, before.prim_count as f64, after.prim_count as f64, None),
        delta(
            "layer_count",
            Kind::Count,
            before.layer_count as f64,
            after.layer_count as f64,
            layers_added_on_purpose.then(|| {
                "layers written by apply-restructure (prototypes, sub-assets or an override layer): intended"
                    .to_string()
            }),
        ),
        delta("total_size_bytes", Kind::Count, before.total_size_bytes as f64, after.total_size_bytes as f64, None),
    ];
    let improved: Vec<&MetricDelta> = metrics.iter().filter(|m| m.verdict == Verdict::Improved).collect();
    let regressed: Vec<&MetricDelta> = metrics.iter().filter(|m| m.verdict == Verdict::Regressed).collect();
    let verdict = match (improved.is_empty(), regressed.is_empty()) {
        (false, true) => Verdict::Improved,
        (true, false) => Verdict::Regressed,
        (false, false) => Verdict::Mixed,
        (true, true) => Verdict::Neutral,
    };
    let critical = regressed.iter().any(|m| m.severity == "critical");
    let regressions: Vec<String> = regressed
        .iter()
        .map(|m| {
            format!("{}: {} → {} ({:+.1}%, {})", m.name, fmt_num(m.before), fmt_num(m.after), m.change_pct, m.severity)
        })
        .collect();
    let mut recommendations = Vec::new();
    if critical {
        recommendations.push("critical regression (> 20%): revert, do not publish this output without review".into());
    } else if !regressed.is_empty() {
        recommendations.push("regression above 5%: review the operations before publishing".into());
    }
    let summary = if improved.is_empty() && regressed.is_empty() {
        "no metric changed by more than 5%".to_string()
    } else {
        improved
            .iter()
            .chain(regressed.iter())
            .map(|m| format!("{} {:+.1}%", m.name, m.change_pct))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(Comparison { verdict, summary, mode: before.mode.clone(), metrics, regressions, recommendations, critical })
}

/// `873,000` style thousands separators for counts; two decimals for fractional values.
pub fn fmt_num(value: f64) -> String {
    if value.fract() != 0.0 {
        return format!("{value:.2}");
    }
    let digits = format!("{}", value.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(open: f64, spread: f64, prims: u64) -> Profile {
        Profile {
            mode: "quick".into(),
            cold_open_ms: open * 2.0,
            warm_open_ms: open,
            warm_open_spread_pct: spread,
            traverse_ms: 50.0,
            attribute_resolution_ms: 100.0,
            transform_ms: 10.0,
            prim_count: prims,
            prim_count_authored: prims,
            prim_count_with_instance_proxies: prims,
            layer_count: 1,
            total_size_bytes: 1000,
        }
    }

    #[test]
    fn fewer_prims_and_faster_open_is_improved() {
        let c = compare(&profile(100.0, 2.0, 1000), &profile(50.0, 2.0, 100), false).unwrap();
        assert_eq!(c.verdict, Verdict::Improved);
        assert!(c.regressions.is_empty());
    }

    #[test]
    fn slower_open_beyond_20_percent_is_critical() {
        let c = compare(&profile(100.0, 2.0, 1000), &profile(130.0, 2.0, 1000), false).unwrap();
        assert_eq!(c.verdict, Verdict::Regressed);
        assert!(c.critical);
        let cold = c.metrics.iter().find(|m| m.name == "cold_open_ms").unwrap();
        assert_eq!((cold.change_pct, cold.severity.as_str()), (30.0, "critical"));
    }

    #[test]
    fn regression_between_5_and_20_percent_warns() {
        let c = compare(&profile(100.0, 1.0, 1000), &profile(110.0, 1.0, 1000), false).unwrap();
        assert_eq!(c.verdict, Verdict::Regressed);
        assert!(!c.critical);
        assert!(c.regressions.iter().all(|r| r.ends_with("warning)")));
    }

    #[test]
    fn noisy_warm_samples_are_inconclusive_not_regressed() {
        let c = compare(&profile(100.0, 30.0, 1000), &profile(110.0, 30.0, 1000), false).unwrap();
        let warm = c.metrics.iter().find(|m| m.name == "warm_open_ms").unwrap();
        assert_eq!(warm.verdict, Verdict::Neutral);
        assert!(warm.notes.contains("inconclusive"));
    }

    #[test]
    fn improved_and_regressed_together_is_mixed() {
        let c = compare(&profile(100.0, 1.0, 1000), &profile(150.0, 1.0, 100), false).unwrap();
        assert_eq!(c.verdict, Verdict::Mixed);
    }

    #[test]
    fn sub_millisecond_changes_are_neutral() {
        let mut after = profile(100.0, 1.0, 1000);
        after.transform_ms = 10.5; // +5.0 % but 0.5 ms
        let mut before = profile(100.0, 1.0, 1000);
        before.transform_ms = 9.9;
        let c = compare(&before, &after, false).unwrap();
        assert_eq!(c.verdict, Verdict::Neutral);
    }

    #[test]
    fn modes_must_match() {
        let mut full = profile(1.0, 1.0, 1);
        full.mode = "full".into();
        assert!(compare(&profile(1.0, 1.0, 1), &full, false).is_err());
    }

    #[test]
    fn numbers_print_like_the_usd_tools() {
        assert_eq!(fmt_num(873000.0), "873,000");
        assert_eq!(fmt_num(12.5), "12.50");
    }
}
