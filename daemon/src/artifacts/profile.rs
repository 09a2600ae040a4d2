//! Phase 6a's paired profile (profile-pair.json) as the executor's `profile_pair` task
//! returns it, and the output's quick profile (profile-after.json) summarized from its rounds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::decisions::compare::{Sample, Sizes};
use crate::decisions::stats::median;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PairResult {
    pub baseline: String,
    pub output: String,
    pub rounds: usize,
    pub warmup_rounds_discarded: usize,
    /// Capture order of each measured round: "AB" (source first) or "BA".
    pub order: Vec<String>,
    /// How each sitting measured (a pair extended by more rounds has two): the repeats of
    /// each short timing within a round, and the sample of prims large stages timed on.
    pub sittings: Vec<Sitting>,
    pub open_timing_context: String,
    /// fork (from a capture server) | spawn (an interpreter per capture)
    pub process: String,
    pub samples: Samples,
    pub footprint: Sizes,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sitting {
    pub rounds: usize,
    /// open | traverse | attributes | transforms → times per round, the fastest kept (the
    /// same on both sides).
    pub repeats: BTreeMap<String, u32>,
    /// before | after → the random sample of authored prims attribute resolution and
    /// transforms were timed on, scaled to all (only for stages above the sampling size).
    pub timing_sample: BTreeMap<String, TimingSample>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TimingSample {
    pub prims: u64,
    pub of: u64,
    pub seed: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Samples {
    pub before: Vec<Sample>,
    pub after: Vec<Sample>,
}

impl PairResult {
    /// Add the rounds of a later sitting (its own warm-up round discarded too).
    pub fn extend(&mut self, more: PairResult) {
        self.rounds += more.rounds;
        self.warmup_rounds_discarded += more.warmup_rounds_discarded;
        self.order.extend(more.order);
        self.sittings.extend(more.sittings);
        self.samples.before.extend(more.samples.before);
        self.samples.after.extend(more.samples.after);
        self.seconds = ((self.seconds + more.seconds) * 1000.0).round() / 1000.0;
    }

    /// The output's quick profile from its rounds: medians of the timings, one warm sample
    /// per round (each a fresh process), the counts exact.
    pub fn after_profile(&self) -> Value {
        let after = &self.samples.after;
        let series = |f: fn(&Sample) -> f64| after.iter().map(f).collect::<Vec<f64>>();
        let warm = series(|s| s.warm_open_ms);
        let warm_median = median(&warm);
        let spread = if warm_median > 0.0 {
            let (lo, hi) = warm.iter().fold((f64::MAX, f64::MIN), |(lo, hi), w| (lo.min(*w), hi.max(*w)));
            ((hi - lo) / warm_median * 10_000.0).round() / 100.0
        } else {
            0.0
        };
        let first = after.first();
        let count = |f: fn(&Sample) -> u64| first.map_or(0, f);
        json!({
            "mode": "quick",
            "stage_path": self.output,
            "cold_open_ms": median(&series(|s| s.cold_open_ms)),
            "warm_open_ms": warm_median,
            "warm_open_samples_ms": warm,
            "warm_open_sample_count": warm.len(),
            "warm_open_spread_pct": spread,
            "open_timing_context": "fresh_process",
            "traverse_ms": median(&series(|s| s.traverse_ms)),
            "traverse_full_ms": median(&series(|s| s.traverse_full_ms)),
            "attribute_resolution_ms": median(&series(|s| s.attribute_resolution_ms)),
            "transform_ms": median(&series(|s| s.transform_ms)),
            "prim_count": count(|s| s.prim_count),
            "prim_count_authored": count(|s| s.prim_count_authored),
            "prim_count_with_instance_proxies": count(|s| s.prim_count_with_instance_proxies),
            "layer_count": count(|s| s.layer_count),
            "instance_count": count(|s| s.instance_count),
            "prototype_count": count(|s| s.prototype_count),
            "total_attributes": count(|s| s.total_attributes),
            "total_size_bytes": count(|s| s.total_size_bytes),
        })
    }
}
