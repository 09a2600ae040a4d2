//! Phase 6c compare-profiles: the verdict from the paired profile of Phase 6a (the source and
//! the output measured in the same sitting, interleaved), metric by metric.
//!
//! Bands (upstream compare-profiles): improved when better by more than 5 %, neutral within
//! ±5 %, regressed when worse by more than 5 %, critical when worse by more than 20 %.
//! Timings are judged from their paired rounds (decisions::stats): a timing improved or
//! regressed only when its whole confidence interval lies beyond the 5 % band; an interval
//! that includes no change, or reaches into the band, is neutral and marked inconclusive, so
//! the verdict does not follow the machine's load. Counts (prims, layers, bytes) are exact:
//! they are judged by their change alone. Bytes are judged against the source re-encoded
//! (the free crate re-encode any export achieves is not the optimization).

use serde::{Deserialize, Serialize};

use super::stats::{self, PairedRatio};

pub const BAND_PCT: f64 = 5.0;
pub const CRITICAL_PCT: f64 = 20.0;
/// The confidence every paired interval aims for.
pub const CONFIDENCE: f64 = 0.95;
/// Rounds of the paired profile (after one discarded warm-up round): seven reach 95.3 %
/// with the exact signed-rank interval; six would reach 96.9 % only with the widest one.
pub const PAIRED_ROUNDS: usize = 7;
/// Timing differences smaller than this are below what one Python-driven capture resolves.
pub const TIMING_FLOOR_MS: f64 = 1.0;
/// When a timing is still inconclusive after the first rounds and they took no longer than
/// this, the pair is extended once by [`EXTRA_ROUNDS`] (a loaded machine needs more rounds
/// for the same certainty; a second look costs some of the 5% error rate, the band keeps
/// small effects out).
pub const EXTEND_UNDER_SECONDS: f64 = 20.0;
pub const EXTRA_ROUNDS: usize = 8;

/// How many more paired rounds the comparison needs: None when every timing is settled or
/// the first rounds were too costly to repeat.
pub fn extra_rounds(first: &Comparison, seconds: f64) -> Option<usize> {
    let unsettled = first.metrics.iter().any(|m| m.evidence == "paired" && !m.conclusive);
    (unsettled && seconds <= EXTEND_UNDER_SECONDS).then_some(EXTRA_ROUNDS)
}

/// The quick profile of one stage (profile-baseline.json, profile-after.json).
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

/// One capture of the paired protocol (kit-extension/.../tasks/profile_pair.py): timings of
/// one fresh process, and the stage's counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub cold_open_ms: f64,
    pub warm_open_ms: f64,
    pub traverse_ms: f64,
    pub traverse_full_ms: f64,
    pub attribute_resolution_ms: f64,
    pub transform_ms: f64,
    pub prim_count: u64,
    pub prim_count_authored: u64,
    pub prim_count_with_instance_proxies: u64,
    pub layer_count: u64,
    pub instance_count: u64,
    pub prototype_count: u64,
    pub total_attributes: u64,
    pub total_size_bytes: u64,
}

/// The source's bytes as delivered and re-encoded alone, and the output's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sizes {
    pub raw_input_bytes: u64,
    pub repack_normalized_baseline_bytes: u64,
    pub optimized_bytes: u64,
    /// The encoding the source was re-encoded in (the output's: usda, usdc).
    pub encoding: String,
}

/// The upstream report's footprint block: three sizes and where the change came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    pub raw_input_bytes: u64,
    pub repack_normalized_baseline_bytes: u64,
    pub optimized_bytes: u64,
    /// raw → re-encoded: the free re-encode, not the optimization.
    pub repack_delta_pct: f64,
    /// re-encoded → optimized: what the optimization did to the bytes.
    pub structural_delta_pct: f64,
    /// raw → optimized: what the user sees on disk.
    pub raw_delta_pct: f64,
    pub scored_against: String,
}

impl Footprint {
    pub fn of(sizes: &Sizes) -> Self {
        Self {
            raw_input_bytes: sizes.raw_input_bytes,
            repack_normalized_baseline_bytes: sizes.repack_normalized_baseline_bytes,
            optimized_bytes: sizes.optimized_bytes,
            repack_delta_pct: change_pct(sizes.raw_input_bytes as f64, sizes.repack_normalized_baseline_bytes as f64),
            structural_delta_pct: change_pct(
                sizes.repack_normalized_baseline_bytes as f64,
                sizes.optimized_bytes as f64,
            ),
            raw_delta_pct: change_pct(sizes.raw_input_bytes as f64, sizes.optimized_bytes as f64),
            scored_against: "repack_normalized".into(),
        }
    }
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
    /// The source's value (the median of its rounds for a timing).
    pub before: f64,
    pub after: f64,
    /// The estimated change: for a timing, from the paired ratio, not from the two medians.
    pub change_pct: f64,
    pub verdict: Verdict,
    /// none | warning | critical
    pub severity: String,
    /// paired (a timing, from its rounds) | exact (a count)
    pub evidence: String,
    /// Whether the evidence settles the metric: an exact count always does; a timing when
    /// its interval lies beyond the band (improved, regressed) or inside it (no change).
    pub conclusive: bool,
    /// after/before as a ratio: the estimate and its interval (paired evidence only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_interval: Option<[f64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<usize>,
    /// (largest − smallest) per-round ratio over the median one, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub notes: String,
}

/// compare-profiles.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Comparison {
    pub verdict: Verdict,
    pub summary: String,
    pub mode: String,
    /// How the verdict was reached (the statistics, in words).
    pub method: String,
    /// Paired rounds behind the timings (0 when nothing was compared).
    pub rounds: usize,
    pub metrics: Vec<MetricDelta>,
    pub regressions: Vec<String>,
    pub recommendations: Vec<String>,
    pub critical: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub footprint: Option<Footprint>,
}

fn change_pct(before: f64, after: f64) -> f64 {
    if before == 0.0 {
        if after == 0.0 {
            0.0
        } else {
            100.0
        }
    } else {
        round1((after - before) / before * 100.0)
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn severity(verdict: Verdict, change: f64) -> &'static str {
    match verdict {
        Verdict::Regressed if change > CRITICAL_PCT => "critical",
        Verdict::Regressed => "warning",
        _ => "none",
    }
}

/// A timing judged from its paired rounds.
fn timing(name: &str, before: &[f64], after: &[f64]) -> Option<MetricDelta> {
    let p: PairedRatio = stats::paired_ratio(before, after, CONFIDENCE)?;
    let (before_ms, after_ms) = (stats::median(before), stats::median(after));
    let change = round1((p.ratio - 1.0) * 100.0);
    let band = BAND_PCT / 100.0;
    let (mut verdict, mut conclusive, mut notes) = if p.high < 1.0 - band {
        (Verdict::Improved, true, String::new())
    } else if p.low > 1.0 + band {
        (Verdict::Regressed, true, String::new())
    } else if p.low >= 1.0 - band && p.high <= 1.0 + band {
        (Verdict::Neutral, true, "no change beyond the 5% band".to_string())
    } else if p.low <= 1.0 && p.high >= 1.0 {
        (Verdict::Neutral, false, format!("inconclusive: the interval {:.3}–{:.3} includes no change", p.low, p.high))
    } else {
        (
            Verdict::Neutral,
            false,
            format!("inconclusive: the interval {:.3}–{:.3} reaches into the 5% band", p.low, p.high),
        )
    };
    // Below what a Python-driven capture resolves: no change worth a verdict either way, when
    // the estimate of a verdict is that small, or the whole interval is.
    let estimate_ms = (p.ratio - 1.0) * before_ms;
    let widest_ms = (p.low - 1.0).abs().max((p.high - 1.0).abs()) * before_ms;
    if widest_ms < TIMING_FLOOR_MS || (verdict != Verdict::Neutral && estimate_ms.abs() < TIMING_FLOOR_MS) {
        verdict = Verdict::Neutral;
        conclusive = true;
        notes = format!("a change of {estimate_ms:.2} ms is below the {TIMING_FLOOR_MS} ms timing floor");
    }
    Some(MetricDelta {
        name: name.into(),
        before: before_ms,
        after: after_ms,
        change_pct: change,
        verdict,
        severity: severity(verdict, change).into(),
        evidence: "paired".into(),
        conclusive,
        ratio: Some(round4(p.ratio)),
        ratio_interval: Some([round4(p.low), round4(p.high)]),
        confidence: Some(round4(p.confidence)),
        rounds: Some(p.rounds),
        spread_pct: Some(round1(p.spread_pct)),
        notes,
    })
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// A count judged by its exact change.
fn count(name: &str, before: u64, after: u64, on_purpose: Option<&str>) -> MetricDelta {
    let change = change_pct(before as f64, after as f64);
    let mut verdict = if change < -BAND_PCT {
        Verdict::Improved
    } else if change > BAND_PCT {
        Verdict::Regressed
    } else {
        Verdict::Neutral
    };
    let mut notes = String::new();
    if let Some(reason) = on_purpose.filter(|_| verdict != Verdict::Neutral) {
        verdict = Verdict::Neutral;
        notes = reason.to_string();
    }
    MetricDelta {
        name: name.into(),
        before: before as f64,
        after: after as f64,
        change_pct: change,
        verdict,
        severity: severity(verdict, change).into(),
        evidence: "exact".into(),
        conclusive: true,
        ratio: None,
        ratio_interval: None,
        confidence: None,
        rounds: None,
        spread_pct: None,
        notes,
    }
}

pub const METHOD: &str = "paired: the source and the output captured in the same sitting, one discarded warm-up \
round then interleaved rounds (A B, B A, …), a fresh process per capture; per timing, the Hodges–Lehmann estimate \
of the per-round after/before ratio with its exact Wilcoxon signed-rank interval (its confidence stated); a timing \
improved or regressed only when the whole interval lies beyond the 5% band; counts and bytes exact, bytes against \
the source re-encoded without dedupe";

/// One timing of a sample.
type Field = fn(&Sample) -> f64;

/// The comparison of the paired profile. `layers_added_on_purpose`: apply-restructure
/// wrote files of its own (prototypes, sub-assets, an override layer), so more layers is
/// the intent, not a regression.
pub fn paired(before: &[Sample], after: &[Sample], sizes: &Sizes, layers_added_on_purpose: bool) -> Comparison {
    let series = |samples: &[Sample], f: Field| samples.iter().map(f).collect::<Vec<f64>>();
    let timings: [(&str, Field); 5] = [
        ("cold_open_ms", |s| s.cold_open_ms),
        ("warm_open_ms", |s| s.warm_open_ms),
        ("traverse_ms", |s| s.traverse_ms),
        ("attribute_resolution_ms", |s| s.attribute_resolution_ms),
        ("transform_ms", |s| s.transform_ms),
    ];
    let mut metrics: Vec<MetricDelta> =
        timings.iter().filter_map(|(name, f)| timing(name, &series(before, *f), &series(after, *f))).collect();
    if let (Some(b), Some(a)) = (before.first(), after.first()) {
        metrics.push(count("prim_count_authored", b.prim_count_authored, a.prim_count_authored, None));
        metrics.push(count("prim_count", b.prim_count, a.prim_count, None));
        let on_purpose = "layers written by apply-restructure (prototypes, sub-assets or an override layer): intended";
        metrics.push(count("layer_count", b.layer_count, a.layer_count, layers_added_on_purpose.then_some(on_purpose)));
    }
    let mut bytes = count("total_size_bytes", sizes.repack_normalized_baseline_bytes, sizes.optimized_bytes, None);
    bytes.notes = format!(
        "against the source re-encoded as {} ({} bytes as delivered)",
        sizes.encoding,
        fmt_num(sizes.raw_input_bytes as f64)
    );
    metrics.push(bytes);
    conclude(metrics, before.len().min(after.len()), Some(Footprint::of(sizes)))
}

/// No output stage was written (nothing changed, a target was blocked, the run exited):
/// nothing is compared and nothing is claimed.
pub fn without_output(reason: &str) -> Comparison {
    Comparison {
        verdict: Verdict::Neutral,
        summary: format!("nothing compared: {reason}"),
        mode: "quick".into(),
        method: "none: no output stage to compare with the source".into(),
        rounds: 0,
        metrics: vec![],
        regressions: vec![],
        recommendations: vec![],
        critical: false,
        footprint: None,
    }
}

fn conclude(metrics: Vec<MetricDelta>, rounds: usize, footprint: Option<Footprint>) -> Comparison {
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
    let inconclusive = metrics.iter().filter(|m| !m.conclusive).count();
    let mut summary = if improved.is_empty() && regressed.is_empty() {
        "no metric changed beyond the 5% band".to_string()
    } else {
        improved
            .iter()
            .chain(regressed.iter())
            .map(|m| format!("{} {:+.1}%", m.name, m.change_pct))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if inconclusive > 0 {
        summary.push_str(&format!(" ({inconclusive} timing(s) inconclusive over {rounds} paired rounds)"));
    }
    Comparison {
        verdict,
        summary,
        mode: "quick".into(),
        method: METHOD.into(),
        rounds,
        metrics,
        regressions,
        recommendations,
        critical,
        footprint,
    }
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

    /// Rounds of one stage: opens of `open` ms scaled per round by `load`, and `prims` prims.
    fn rounds(open: f64, load: &[f64], prims: u64) -> Vec<Sample> {
        load.iter()
            .map(|l| Sample {
                cold_open_ms: open * 2.0 * l,
                warm_open_ms: open * l,
                traverse_ms: 50.0 * l,
                traverse_full_ms: 50.0 * l,
                attribute_resolution_ms: 100.0 * l,
                transform_ms: 10.0 * l,
                prim_count: prims,
                prim_count_authored: prims,
                prim_count_with_instance_proxies: prims,
                layer_count: 1,
                instance_count: 0,
                prototype_count: 0,
                total_attributes: 10,
                total_size_bytes: 1000,
            })
            .collect()
    }

    const IDLE: [f64; 7] = [1.0, 1.02, 0.99, 1.01, 1.0, 0.98, 1.0];
    /// The same rounds on a loaded machine: everything two to three times slower, unevenly.
    const LOADED: [f64; 7] = [2.1, 3.0, 2.4, 2.9, 2.2, 3.1, 2.6];

    fn sizes(normalized: u64, optimized: u64) -> Sizes {
        Sizes {
            raw_input_bytes: 2 * normalized,
            repack_normalized_baseline_bytes: normalized,
            optimized_bytes: optimized,
            encoding: "usdc".into(),
        }
    }

    #[test]
    fn a_real_change_gets_the_same_verdict_idle_and_loaded() {
        for load in [IDLE, LOADED] {
            let c = paired(&rounds(100.0, &load, 1000), &rounds(50.0, &load, 100), &sizes(1000, 1000), false);
            assert_eq!(c.verdict, Verdict::Improved);
            let warm = c.metrics.iter().find(|m| m.name == "warm_open_ms").unwrap();
            assert_eq!((warm.verdict, warm.conclusive), (Verdict::Improved, true));
            assert!((warm.change_pct + 50.0).abs() < 0.1, "{warm:?}");
        }
    }

    #[test]
    fn noise_is_neutral_and_inconclusive_not_a_regression() {
        // The output is the same stage; one side drew the slow moments of a loaded machine.
        let before = rounds(100.0, &LOADED, 1000);
        let shuffled: Vec<f64> = LOADED.iter().rev().copied().collect();
        let after = rounds(100.0, &shuffled, 1000);
        let c = paired(&before, &after, &sizes(1000, 1000), false);
        assert_eq!(c.verdict, Verdict::Neutral);
        assert!(c.metrics.iter().any(|m| !m.conclusive && m.notes.contains("inconclusive")), "{:?}", c.metrics);
        assert!(!c.critical && c.regressions.is_empty());
    }

    #[test]
    fn a_consistent_slowdown_beyond_20_percent_is_critical() {
        let slower: Vec<f64> = IDLE.iter().map(|l| l * 1.3).collect();
        let c = paired(&rounds(100.0, &IDLE, 1000), &rounds(100.0, &slower, 1000), &sizes(1000, 1000), false);
        assert_eq!(c.verdict, Verdict::Regressed);
        assert!(c.critical);
    }

    #[test]
    fn bytes_are_judged_against_the_source_re_encoded() {
        // Raw 2,000 bytes, 1,000 once re-encoded, 990 optimized: the re-encode is not a win.
        let c = paired(&rounds(100.0, &IDLE, 1000), &rounds(100.0, &IDLE, 1000), &sizes(1000, 990), false);
        let bytes = c.metrics.iter().find(|m| m.name == "total_size_bytes").unwrap();
        assert_eq!((bytes.before, bytes.verdict), (1000.0, Verdict::Neutral));
        let footprint = c.footprint.unwrap();
        assert_eq!(
            (footprint.repack_delta_pct, footprint.structural_delta_pct, footprint.raw_delta_pct),
            (-50.0, -1.0, -50.5)
        );
        assert_eq!(c.verdict, Verdict::Neutral);
    }

    #[test]
    fn layers_written_on_purpose_are_not_a_regression() {
        let mut after = rounds(100.0, &IDLE, 1000);
        after.iter_mut().for_each(|s| s.layer_count = 5);
        let c = paired(&rounds(100.0, &IDLE, 1000), &after, &sizes(1000, 1000), true);
        let layers = c.metrics.iter().find(|m| m.name == "layer_count").unwrap();
        assert_eq!(layers.verdict, Verdict::Neutral);
        assert!(layers.notes.contains("intended"));
    }

    #[test]
    fn sub_millisecond_changes_are_neutral() {
        let before = rounds(0.3, &IDLE, 1000);
        let after = rounds(0.15, &IDLE, 1000);
        let c = paired(&before, &after, &sizes(1000, 1000), false);
        let warm = c.metrics.iter().find(|m| m.name == "warm_open_ms").unwrap();
        assert_eq!(warm.verdict, Verdict::Neutral, "{warm:?}");
    }

    #[test]
    fn an_unsettled_timing_asks_for_more_rounds_when_they_are_cheap() {
        let before = rounds(100.0, &LOADED, 1000);
        let shuffled: Vec<f64> = LOADED.iter().rev().copied().collect();
        let noisy = paired(&before, &rounds(100.0, &shuffled, 1000), &sizes(1000, 1000), false);
        assert_eq!(extra_rounds(&noisy, 3.0), Some(EXTRA_ROUNDS));
        assert_eq!(extra_rounds(&noisy, 60.0), None, "too costly to repeat");
        let clear = paired(&rounds(100.0, &IDLE, 1000), &rounds(50.0, &IDLE, 1000), &sizes(1000, 1000), false);
        assert_eq!(extra_rounds(&clear, 3.0), None);
    }

    #[test]
    fn no_output_claims_nothing() {
        let c = without_output("the only Phase 4 target was blocked");
        assert_eq!((c.verdict, c.metrics.len(), c.rounds), (Verdict::Neutral, 0, 0));
        assert!(c.summary.contains("blocked"));
    }

    #[test]
    fn numbers_print_like_the_usd_tools() {
        assert_eq!(fmt_num(873000.0), "873,000");
        assert_eq!(fmt_num(12.5), "12.50");
    }
}
