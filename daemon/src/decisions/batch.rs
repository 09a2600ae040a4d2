//! Phase 4b scheduling decisions (batch-mode.md): in which order targets run, how many
//! executor processes run them at once, and how that number changes after each batch.
//! Plain functions over facts; run.rs carries them out.
//!
//! Prototype-first: the dependency groups run one after another (shared prototypes, then
//! independent targets, then the assemblies that depend on both); inside a group the heaviest
//! targets go first so a long tail does not start last. The first batch of a group is the
//! pilot: its observed peak memory, failures and durations size the next batch.

use serde::Serialize;

use crate::decisions::validation::seconds_text;

/// Mesh counts from which a target is heavy (floor-scale) or medium (a sub-asset).
pub const HEAVY_MESHES: u64 = 20_000;
pub const MEDIUM_MESHES: u64 = 1_000;
pub const HEAVY_BYTES: u64 = 1 << 30;
pub const MEDIUM_BYTES: u64 = 50 << 20;
/// Share of the available memory the workers of one batch may plan to use.
pub const MEMORY_SHARE: f64 = 0.7;
/// Memory a worker is assumed to need before any has been observed: an executor with pxr
/// and usd-optimize loaded, plus the target's file size several times over (decompressed).
pub const WORKER_BASE_BYTES: u64 = 400 << 20;
pub const FILE_EXPANSION: u64 = 6;
/// A batch whose slowest target took this many times its median has a long tail.
pub const LONG_TAIL_RATIO: f64 = 4.0;
/// After the pilot, a batch of quick targets holds about this many seconds of them, each lane
/// taking the next target as it frees up: rounds of one target per lane waited on the slower
/// of each pair (a 100k composed set's 5,882 targets of ~11 ms ran in 2,941 rounds), and a
/// cancel or a change of concurrency still comes within seconds.
pub const BATCH_SECONDS: f64 = 2.0;
/// The most targets per lane in one batch.
pub const MAX_TARGETS_PER_LANE: usize = 64;

#[derive(Clone, Debug, PartialEq)]
pub struct TargetWeight {
    pub mesh_count: u64,
    pub file_bytes: u64,
}

impl TargetWeight {
    fn class(&self) -> &'static str {
        if self.mesh_count >= HEAVY_MESHES || self.file_bytes >= HEAVY_BYTES {
            "heavy"
        } else if self.mesh_count >= MEDIUM_MESHES || self.file_bytes >= MEDIUM_BYTES {
            "medium"
        } else {
            "small"
        }
    }

    fn expected_bytes(&self) -> u64 {
        WORKER_BASE_BYTES + self.file_bytes.saturating_mul(FILE_EXPANSION)
    }
}

/// What the daemon may spend: CPU cores, memory now available, and the worker cap the user
/// or the daemon's configuration set.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Budget {
    pub cpu_count: usize,
    pub ram_available_bytes: u64,
    pub max_workers: usize,
}

impl Budget {
    fn cap(&self) -> usize {
        self.max_workers.min(self.cpu_count).max(1)
    }

    /// Workers that fit in memory when each needs `per_worker` bytes.
    fn fit(&self, per_worker: u64) -> usize {
        if self.ram_available_bytes == 0 {
            return 1; // unknown memory: fail safe
        }
        ((self.ram_available_bytes as f64 * MEMORY_SHARE) / per_worker.max(1) as f64).floor().max(1.0) as usize
    }
}

/// Dependency order of a target's group: shared prototypes first, dependents last.
pub fn group_rank(dependency_group: Option<&str>) -> u8 {
    match dependency_group {
        Some("shared_first") => 0,
        Some("dependent_after") => 2,
        _ => 1,
    }
}

/// The pilot's concurrency for a group of targets, with the reason (batch-mode.md table).
pub fn initial_concurrency(group: &[TargetWeight], budget: &Budget) -> (usize, String) {
    if group.len() <= 1 {
        return (1, "a single target".into());
    }
    let heaviest = group.iter().map(TargetWeight::expected_bytes).max().unwrap_or(WORKER_BASE_BYTES);
    let memory_fit = budget.fit(heaviest);
    let (wanted, why) = if group.iter().any(|t| t.class() == "heavy") {
        (1, "heavy targets: one at a time until a pilot is healthy")
    } else if group.iter().any(|t| t.class() == "medium") {
        (2, "medium sub-assets: two at a time")
    } else {
        (budget.cap(), "small parts: as many as the cores allow")
    };
    let n = wanted.min(budget.cap()).min(memory_fit).min(group.len()).max(1);
    (
        n,
        format!(
            "{why}; budget {} cores, {} workers at most, memory fits {memory_fit}",
            budget.cpu_count, budget.max_workers
        ),
    )
}

/// What a finished batch showed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BatchObservation {
    pub concurrency: usize,
    pub failures: usize,
    /// Peak resident memory of each target's worker during the target.
    pub peak_rss_bytes: Vec<u64>,
    pub seconds: Vec<f64>,
}

impl BatchObservation {
    /// The median target's seconds (None before any target finished).
    pub fn median_seconds(&self) -> Option<f64> {
        let mut sorted = self.seconds.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied()
    }
}

/// How many targets the next batch runs through its `lanes`: one per lane for the pilot (no
/// target timed yet) and for targets that take seconds, more per lane for quick ones so the
/// batch holds about BATCH_SECONDS of work.
pub fn batch_size(lanes: usize, median_seconds: Option<f64>, remaining: usize) -> usize {
    let per_lane = match median_seconds {
        Some(s) if s > 0.0 => ((BATCH_SECONDS / s).floor() as usize).clamp(1, MAX_TARGETS_PER_LANE),
        _ => 1,
    };
    (lanes.max(1) * per_lane).min(remaining).max(1)
}

/// Concurrency for the next batch of the same group, with the reason: serial after a
/// failure, fewer when the observed memory says so, more after a healthy batch.
pub fn next_concurrency(observed: &BatchObservation, budget: &Budget, remaining: usize) -> (usize, String) {
    let current = observed.concurrency.max(1);
    if remaining == 0 {
        return (current, "no target left".into());
    }
    if observed.failures > 0 {
        return (1, format!("{} target(s) failed in the last batch: serial from here", observed.failures));
    }
    let peak = observed.peak_rss_bytes.iter().copied().max().unwrap_or(0);
    let memory_fit = if peak > 0 { budget.fit(peak) } else { budget.fit(WORKER_BASE_BYTES) };
    let median = observed.median_seconds().unwrap_or(0.0);
    let slowest = observed.seconds.iter().copied().fold(0.0, f64::max);
    let (wanted, why) = if memory_fit < current {
        (memory_fit, format!("peak worker memory {} MiB: only {memory_fit} fit", peak >> 20))
    } else if median > 0.0 && slowest > LONG_TAIL_RATIO * median {
        (
            current,
            format!(
                "long tail ({} s against a median of {} s): keeping {current}",
                seconds_text(slowest),
                seconds_text(median)
            ),
        )
    } else {
        (current * 2, format!("healthy batch (peak worker memory {} MiB): doubling", peak >> 20))
    };
    let n = wanted.min(budget.cap()).min(memory_fit).min(remaining).max(1);
    (n, format!("{why}; {n} worker(s) next"))
}

/// A short stable tag of a path (FNV-1a 64, hex) that tells apart outputs whose file names
/// would collide (`Body.usd` in two folders).
pub fn path_tag(path: &str) -> String {
    let hash = path.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{:012x}", hash >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn budget(cpus: usize, ram_gib: u64) -> Budget {
        Budget { cpu_count: cpus, ram_available_bytes: ram_gib * GIB, max_workers: 16 }
    }

    fn small(n: usize) -> Vec<TargetWeight> {
        vec![TargetWeight { mesh_count: 20, file_bytes: 100_000 }; n]
    }

    #[test]
    fn pilot_size_follows_target_weight_and_budget() {
        assert_eq!(initial_concurrency(&small(1), &budget(8, 16)).0, 1, "monolith");
        assert_eq!(initial_concurrency(&small(20), &budget(8, 16)).0, 8, "small parts: the cores");
        assert_eq!(initial_concurrency(&small(20), &budget(2, 16)).0, 2);
        let medium = vec![TargetWeight { mesh_count: 5_000, file_bytes: 10 << 20 }; 6];
        assert_eq!(initial_concurrency(&medium, &budget(8, 16)).0, 2);
        let mut mixed = small(6);
        mixed.push(TargetWeight { mesh_count: 50_000, file_bytes: 300 << 20 });
        let (n, why) = initial_concurrency(&mixed, &budget(8, 16));
        assert_eq!(n, 1, "{why}");
        // 1 GiB available, 0.7 of it for workers needing about 1 GiB each (base + 6 × 100 MiB).
        let big_files = vec![TargetWeight { mesh_count: 10, file_bytes: 100 << 20 }; 6];
        assert_eq!(initial_concurrency(&big_files, &budget(8, 1)).0, 1);
        assert_eq!(
            initial_concurrency(&small(20), &Budget { max_workers: 3, ..budget(8, 16) }).0,
            3,
            "the user's cap holds"
        );
    }

    #[test]
    fn concurrency_adapts_to_what_the_pilot_showed() {
        let b = budget(8, 8);
        let healthy = BatchObservation {
            concurrency: 2,
            failures: 0,
            peak_rss_bytes: vec![500 << 20; 2],
            seconds: vec![3.0, 4.0],
        };
        assert_eq!(next_concurrency(&healthy, &b, 30).0, 4);
        assert_eq!(next_concurrency(&healthy, &b, 3).0, 3, "never more than what is left");
        let failed = BatchObservation { failures: 1, ..healthy.clone() };
        assert_eq!(next_concurrency(&failed, &b, 30).0, 1);
        // 3 GiB per worker with 8 GiB available: 0.7 × 8 / 3 = 1.
        let hungry = BatchObservation { peak_rss_bytes: vec![3 * GIB, 2 * GIB], ..healthy.clone() };
        let (n, why) = next_concurrency(&hungry, &b, 30);
        assert_eq!(n, 1, "{why}");
        let tail = BatchObservation {
            concurrency: 4,
            peak_rss_bytes: vec![1 << 20; 4],
            seconds: vec![1.0, 1.0, 1.0, 30.0],
            ..healthy
        };
        assert_eq!(next_concurrency(&tail, &b, 30).0, 4);
    }

    #[test]
    fn quick_targets_run_many_per_lane_after_the_pilot() {
        assert_eq!(batch_size(2, None, 5882), 2, "the pilot: one target per lane");
        assert_eq!(batch_size(2, Some(0.011), 5882), 2 * MAX_TARGETS_PER_LANE, "11 ms targets: the cap");
        assert_eq!(batch_size(2, Some(0.1), 5882), 40, "2 s of 0.1 s targets per lane");
        assert_eq!(batch_size(4, Some(3.0), 5882), 4, "targets of seconds: one per lane, as the pilot");
        assert_eq!(batch_size(2, Some(0.011), 7), 7, "never more than what is left");
        assert_eq!(batch_size(0, Some(0.0), 7), 1);
    }

    #[test]
    fn groups_run_prototype_first() {
        let mut groups = vec![Some("dependent_after"), None, Some("shared_first"), Some("independent")];
        groups.sort_by_key(|g| group_rank(*g));
        assert_eq!(groups, [Some("shared_first"), None, Some("independent"), Some("dependent_after")]);
    }

    #[test]
    fn path_tags_tell_same_named_files_apart() {
        assert_ne!(path_tag("/a/Body.usd"), path_tag("/b/Body.usd"));
        assert_eq!(path_tag("/a/Body.usd"), path_tag("/a/Body.usd"));
        assert_eq!(path_tag("/a/Body.usd").len(), 12);
    }
}
