//! Paired statistics for the verdict: how much a metric changed between the source and the
//! output measured in the same sitting, and how sure that is.
//!
//! Each round measures both stages back to back, so each round gives one after/before ratio
//! in which the machine's load of that moment cancels out. The estimate is the
//! Hodges–Lehmann median of the log ratios (the median of all pairwise means), and its
//! interval is the exact Wilcoxon signed-rank interval: distribution-free, valid for the
//! handful of rounds a run can afford, and stated with the confidence the rounds actually
//! reach (six rounds reach 96.9 %, five only 93.8 %).

/// A change estimated from paired rounds: after/before as a ratio (1.0 = no change).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairedRatio {
    pub ratio: f64,
    pub low: f64,
    pub high: f64,
    /// The interval's actual confidence (exact, from the signed-rank distribution).
    pub confidence: f64,
    pub rounds: usize,
    /// (largest − smallest) per-round ratio over the median one, in percent.
    pub spread_pct: f64,
}

/// Values at or below this many milliseconds are taken as this (a ratio needs a positive base).
pub const FLOOR_MS: f64 = 1e-3;

/// The paired estimate of after/before at `level` (e.g. 0.95), None without a round.
pub fn paired_ratio(before: &[f64], after: &[f64], level: f64) -> Option<PairedRatio> {
    let logs: Vec<f64> = before.iter().zip(after).map(|(b, a)| (a.max(FLOOR_MS) / b.max(FLOOR_MS)).ln()).collect();
    let n = logs.len();
    if n == 0 {
        return None;
    }
    let mut walsh: Vec<f64> =
        (0..n).flat_map(|i| (i..n).map(move |j| (i, j))).map(|(i, j)| (logs[i] + logs[j]) / 2.0).collect();
    walsh.sort_by(f64::total_cmp);
    let m = walsh.len();
    let estimate = median_sorted(&walsh);
    // The k-th smallest and k-th largest Walsh averages bound the interval, k the largest
    // count whose tail probability stays within (1 − level) / 2 (at least 1: the extremes).
    let cdf = signed_rank_cdf(n);
    let alpha_half = (1.0 - level) / 2.0;
    let k = (1..=m / 2).take_while(|k| cdf[k - 1] <= alpha_half).last().unwrap_or(1);
    let confidence = 1.0 - 2.0 * cdf[k - 1];
    let mut ratios: Vec<f64> = logs.iter().map(|l| l.exp()).collect();
    ratios.sort_by(f64::total_cmp);
    let middle = median_sorted(&ratios);
    Some(PairedRatio {
        ratio: estimate.exp(),
        low: walsh[k - 1].exp(),
        high: walsh[m - k].exp(),
        confidence,
        rounds: n,
        spread_pct: if middle > 0.0 { (ratios[n - 1] - ratios[0]) / middle * 100.0 } else { 0.0 },
    })
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    median_sorted(&sorted)
}

fn median_sorted(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// P(T+ ≤ t) for t = 0 ..= n(n+1)/2 under the null (every sign equally likely): the
/// signed-rank statistic's exact distribution, by counting subsets of the ranks 1..n.
fn signed_rank_cdf(n: usize) -> Vec<f64> {
    let m = n * (n + 1) / 2;
    let mut counts = vec![0f64; m + 1];
    counts[0] = 1.0;
    for rank in 1..=n {
        for t in (rank..=m).rev() {
            counts[t] += counts[t - rank];
        }
    }
    let total = 2f64.powi(n as i32);
    let mut running = 0.0;
    counts
        .iter()
        .map(|c| {
            running += c;
            running / total
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_rank_distribution_is_exact() {
        // n = 3: T+ takes 0..6 with counts 1,1,1,2,1,1,1 over 8 sign patterns.
        let cdf = signed_rank_cdf(3);
        let expected = [1.0, 2.0, 3.0, 5.0, 6.0, 7.0, 8.0].map(|c| c / 8.0);
        assert!(cdf.iter().zip(expected).all(|(a, b)| (a - b).abs() < 1e-12), "{cdf:?}");
    }

    #[test]
    fn the_interval_reaches_the_confidence_the_rounds_allow() {
        let before = [100.0; 7];
        let after = [90.0, 91.0, 89.0, 90.5, 92.0, 88.0, 90.0];
        let p = paired_ratio(&before, &after, 0.95).unwrap();
        assert!((p.ratio - 0.9).abs() < 0.01, "{p:?}");
        assert!(p.low <= p.ratio && p.ratio <= p.high && p.high < 0.95, "{p:?}");
        // Seven rounds: k = 3 (P(T+ ≤ 2) = 3/128), confidence 1 − 6/128.
        assert!((p.confidence - (1.0 - 6.0 / 128.0)).abs() < 1e-12);
        // Five rounds cannot reach 95 %: the widest interval, at the confidence it has.
        let p5 = paired_ratio(&before[..5], &after[..5], 0.95).unwrap();
        assert!((p5.confidence - (1.0 - 2.0 / 32.0)).abs() < 1e-12);
        assert!((p5.low - 0.89).abs() < 1e-9, "{p5:?}");
    }

    #[test]
    fn load_that_falls_on_both_sides_of_a_round_cancels() {
        // The machine got three times slower half-way through; the output is 20 % faster throughout.
        let load = [1.0, 1.0, 1.0, 3.0, 3.0, 3.0, 3.0];
        let before: Vec<f64> = load.iter().map(|l| 50.0 * l).collect();
        let after: Vec<f64> = load.iter().map(|l| 40.0 * l).collect();
        let p = paired_ratio(&before, &after, 0.95).unwrap();
        assert!((p.ratio - 0.8).abs() < 1e-9 && (p.high - 0.8).abs() < 1e-9, "{p:?}");
        assert!(p.spread_pct < 1e-9);
    }

    #[test]
    fn noise_around_no_change_straddles_one() {
        let before = [10.0, 11.0, 9.0, 10.5, 9.5, 10.0, 10.2];
        let after = [10.4, 10.1, 9.6, 10.2, 9.9, 10.6, 9.8];
        let p = paired_ratio(&before, &after, 0.95).unwrap();
        assert!(p.low < 1.0 && p.high > 1.0, "{p:?}");
        assert!(paired_ratio(&[], &[], 0.95).is_none());
    }
}
