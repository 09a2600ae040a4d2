//! How long an executor task may run before the daemon gives up on it and ends its process.
//!
//! A deadline is the task kind's expected cost, scaled to the stage, times a wide margin: it
//! catches an executor that heartbeats but never answers (or a native call that spins), never a
//! slow but healthy task. Expected costs per 100k prims are this machine's (2 cores, busy)
//! measurements of the hall-like 100k-prim stage: baseline profile 56 s, assessment 24 s,
//! validation 11 + 20 s, Phase 4 81 s for all of its targets (one target is a fraction of it).

use std::time::Duration;

/// What is known of the stage's size when the task starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StageSize {
    /// Prims counted by the baseline profile (instance proxies included).
    Prims(u64),
    /// Only the root layer's bytes (before the first profile): an upper bound on prims, since a
    /// prim takes at least ~30 bytes even in a crate file.
    Bytes(u64),
}

impl StageSize {
    fn prims(self) -> f64 {
        match self {
            StageSize::Prims(n) => n as f64,
            StageSize::Bytes(b) => b as f64 / 30.0,
        }
    }
}

/// Expected seconds per 100k prims of a task kind, and a constant part (process start, imports).
fn expected(kind: &str) -> (f64, f64) {
    match kind {
        "probe" => (5.0, 0.0),
        "profile" => (10.0, 60.0),
        "profile_pair" => (15.0, 120.0),
        "facts" => (10.0, 30.0),
        "validate" => (15.0, 40.0),
        "operations" => (15.0, 100.0),
        "restructure" | "instancing" | "remap" => (10.0, 60.0),
        "geometry" => (10.0, 30.0),
        _ => (30.0, 120.0),
    }
}

/// The margin over the expected cost: load alone makes a task 3× slower here.
const MARGIN: f64 = 10.0;
/// No task is given less than this (times the scale).
const FLOOR_SECONDS: f64 = 120.0;

/// The deadline of a `kind` task on a stage of `size`; `scale` shrinks or stretches every
/// deadline (`USDTUNE_TASK_DEADLINE_SCALE`: slower machines, or tests of the deadline itself).
pub fn task_deadline(kind: &str, size: StageSize, scale: f64) -> Duration {
    let (constant, per_100k) = expected(kind);
    let seconds = (constant + per_100k * size.prims() / 100_000.0) * MARGIN;
    Duration::from_secs_f64(seconds.max(FLOOR_SECONDS) * scale.max(0.001))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_stages_get_the_floor_and_large_ones_grow_with_their_prims() {
        assert_eq!(task_deadline("probe", StageSize::Prims(600), 1.0), Duration::from_secs(120));
        let at = |prims| task_deadline("operations", StageSize::Prims(prims), 1.0).as_secs_f64();
        assert!((at(100_000) - 1150.0).abs() < 1e-6, "{}", at(100_000));
        assert!(at(1_000_000) > 9.0 * at(100_000) / 1.2, "a million prims gets about ten times as long");
    }

    #[test]
    fn bytes_stand_in_for_prims_before_the_first_count() {
        let by_bytes = task_deadline("profile", StageSize::Bytes(3_000_000), 1.0);
        assert_eq!(by_bytes, task_deadline("profile", StageSize::Prims(100_000), 1.0));
    }

    #[test]
    fn the_scale_applies_to_every_deadline_floor_included() {
        assert_eq!(task_deadline("probe", StageSize::Prims(1), 0.01), Duration::from_secs_f64(1.2));
        assert!(task_deadline("unknown-kind", StageSize::Prims(1), 0.0) > Duration::ZERO);
    }
}
