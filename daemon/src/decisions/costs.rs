//! What an executor task is expected to cost on a stage of a given size, and how long it may
//! run before the daemon gives up on it and ends its process.
//!
//! Expected seconds are a constant (process start, imports, a small stage) plus a cost per
//! 100k prims, fitted to this machine's runs (2 cores, idle): the 600-prim fixture (profile
//! 1.4 s, facts 0.9 s, validation 0.9 s + 1.2 s, Phase 4 1.7 s, paired after-profile 5.1 s)
//! and a 30k-prim hall (3.8 s, 3.2 s, 1.7 s + 2.1 s, 7.6 s, 17.5 s). They feed the live view's
//! expected times and ETA, and the deadlines.
//!
//! A deadline is the expected cost times a wide margin, never under a floor: it catches an
//! executor that heartbeats but never answers (or a native call that spins), never a slow but
//! healthy task (load alone makes a task 3× slower here).
//!
//! The run budget is what a whole run should take (`--budget`, else 2 min per 100k prims, the
//! goal on these 2 cores): open-ended work is sized to it. Each validation task may spend a
//! share of it on its jobs. The plan is sized to that share before it runs: when checking every
//! geometry representative would not fit, the per-geometry rules probe a sample (one masked
//! subtree in every k) and their ledger entries say so. At run time a job not started within
//! the share is recorded `timeout_recorded` in the coverage ledger, one that runs past it is
//! stopped. On the 100k
//! hall (a 106 s run) the source's validation took 11 s and Phase 4's evidence 20 s, inside
//! the 48 s share; the composed set that sat 15 minutes in validation on 58c8553 is now bounded.

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

/// (constant seconds, seconds per 100k prims) of a task kind.
fn cost(kind: &str) -> (f64, f64) {
    match kind {
        "probe" => (0.6, 0.0),
        "nucleus_stat" => (3.0, 0.0),
        "profile" => (1.2, 10.0),
        "profile_pair" => (4.0, 45.0),
        "facts" => (0.8, 9.0),
        "validate" => (0.9, 5.0),
        "operations" => (1.5, 20.0),
        "restructure" | "instancing" | "remap" => (1.0, 10.0),
        "geometry" => (0.5, 5.0),
        _ => (5.0, 30.0),
    }
}

/// The expected seconds of one `kind` task on a stage of `size`.
pub fn expected_seconds(kind: &str, size: StageSize) -> f64 {
    let (constant, per_100k) = cost(kind);
    constant + per_100k * size.prims() / 100_000.0
}

/// The default run budget: seconds per 100k prims (instance proxies counted), and its floor.
pub const RUN_BUDGET_PER_100K_S: f64 = 120.0;
pub const RUN_BUDGET_FLOOR_S: f64 = 120.0;
/// The share of the run budget one validation task may spend on its jobs.
pub const VALIDATION_SHARE: f64 = 0.4;

/// The run's budget in seconds: the one the user gave, else the default for the stage's size.
pub fn run_budget(size: StageSize, given: Option<f64>) -> f64 {
    given
        .filter(|s| *s > 0.0)
        .unwrap_or_else(|| (RUN_BUDGET_PER_100K_S * size.prims() / 100_000.0).max(RUN_BUDGET_FLOOR_S))
}

/// What one validation task may spend on its jobs, in seconds (to the millisecond, so the
/// figure the artifacts state is the one the user can compute: 0.05 × 0.4 is 0.02).
pub fn validation_budget(run_budget: f64) -> f64 {
    (run_budget * VALIDATION_SHARE * 1000.0).round() / 1000.0
}

/// What a validation task's workers spend starting (Python, pxr, both validator packages:
/// 0.65–0.80 s here) before their first job; they start side by side.
pub const VALIDATION_WORKER_START_S: f64 = 0.8;

/// One validation job's fixed cost on a warm worker: its masked open, at least the fit below
/// (0.8 s on a 30k-prim composed set of 1,764 files; the shipped 600-prim factory's 22 jobs
/// took 1.5 s on two workers). A masked open of a many-file stage opens nearly every file, as
/// the baseline profile's warm open does, and that measured figure is the base where it is
/// larger: the 1M-prim composed set of 58,823 files opened warm in 32.7 s where the fit says
/// 24.1 s, and 3 of its 7 Phase 4 jobs were cut at run time (they still were with this base,
/// under load: docs/bench/validation.md). A small stage's warm open (ms) misses the job's own
/// fixed cost, which the fit's constant holds.
pub fn validation_job_base_seconds(prims: u64, warm_open_s: Option<f64>) -> f64 {
    let fit = 0.1 + 2.5 * prims as f64 / 100_000.0;
    warm_open_s.map_or(fit, |open| fit.max(0.1 + open))
}

/// What a per-geometry rule costs beyond its job's base: (seconds per representative mesh,
/// seconds per MB of the representatives' authored values). Measured one job per rule on one
/// worker (2 cores, idle): 11,533 representatives of ~42 points on a 30k-prim composed set
/// (the per-mesh figure), 40 meshes of 10k quads (the per-MB figure; only primitive fitting
/// costs by size). A rule not measured gets the largest per-mesh figure.
pub fn per_representative_seconds(concept: &str) -> (f64, f64) {
    let ms = |per_mesh: f64, per_mb: f64| (per_mesh / 1000.0, per_mb);
    match concept {
        "extents_general" => ms(0.45, 0.0),
        "primvar_indexability" => ms(0.03, 0.0),
        "primvar_unused" => ms(0.01, 0.0),
        "vertex_weld" => ms(0.18, 0.006),
        "topology_zero_area_faces" => ms(0.02, 0.002),
        "topology_duplicate_faces" => ms(0.01, 0.001),
        "normals_winding" => ms(0.18, 0.001),
        "geom_duplicates" => ms(0.07, 0.001),
        "primitive_fit" => ms(0.05, 0.17),
        "topology_manifold" => ms(0.015, 0.011),
        "normals_validity" => ms(0.17, 0.001),
        _ => ms(0.45, 0.17),
    }
}

/// A run's expected peak memory on a stage of `size`: 200 MiB plus 5.5 KiB per prim. The
/// executor's share (with the workers it starts), 4.5 KiB per prim, is fitted to the bench
/// history's executor peaks on these 2 cores (10k prims: 227–256 MB for the hall, scatter and
/// composed factories; 100k: 607–833 MB; the 1M scatter: 4.2 GB); the daemon's, 1 KiB per
/// prim, is its prim table during the assessment (0.76 KB per prim on the 100k hall). The 1M
/// hall's executor peaked at 14.3 GB, three times the line (its Phase 4 workers): the estimate
/// orders runs for admission, it is no promise.
pub fn expected_peak_bytes(size: StageSize) -> u64 {
    (200.0 * 1048576.0 + 5.5 * 1024.0 * size.prims()) as u64
}

/// The margin over the expected cost.
const MARGIN: f64 = 20.0;
/// No task is given less than this (times the scale).
const FLOOR_SECONDS: f64 = 120.0;

/// The deadline of a `kind` task on a stage of `size`; `scale` shrinks or stretches every
/// deadline (`USDTUNE_TASK_DEADLINE_SCALE`: slower machines, or tests of the deadline itself).
pub fn task_deadline(kind: &str, size: StageSize, scale: f64) -> Duration {
    let seconds = (expected_seconds(kind, size) * MARGIN).max(FLOOR_SECONDS);
    Duration::from_secs_f64(seconds * scale.max(0.001))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_stages_get_the_floor_and_large_ones_grow_with_their_prims() {
        assert_eq!(task_deadline("probe", StageSize::Prims(600), 1.0), Duration::from_secs(120));
        let at = |prims| task_deadline("operations", StageSize::Prims(prims), 1.0).as_secs_f64();
        assert!((at(100_000) - 430.0).abs() < 1e-6, "{}", at(100_000));
        assert!(at(1_000_000) > 9.0 * at(100_000), "a million prims gets about ten times as long");
    }

    #[test]
    fn the_run_budget_grows_with_the_stage_and_a_given_one_wins() {
        assert_eq!(run_budget(StageSize::Prims(600), None), RUN_BUDGET_FLOOR_S);
        assert_eq!(run_budget(StageSize::Prims(1_000_000), None), 1200.0);
        assert_eq!(run_budget(StageSize::Prims(1_000_000), Some(30.0)), 30.0);
        assert_eq!(run_budget(StageSize::Prims(600), Some(0.0)), RUN_BUDGET_FLOOR_S, "0 means the default");
        assert_eq!(validation_budget(run_budget(StageSize::Prims(100_000), None)), 48.0);
    }

    #[test]
    fn bytes_stand_in_for_prims_before_the_first_count() {
        let by_bytes = expected_seconds("profile", StageSize::Bytes(3_000_000));
        assert_eq!(by_bytes, expected_seconds("profile", StageSize::Prims(100_000)));
    }

    #[test]
    fn the_scale_applies_to_every_deadline_floor_included() {
        assert_eq!(task_deadline("probe", StageSize::Prims(1), 0.01), Duration::from_secs_f64(1.2));
        assert!(task_deadline("unknown-kind", StageSize::Prims(1), 0.0) > Duration::ZERO);
    }
}
