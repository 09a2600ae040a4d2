//! Whether the daemon starts one more run now: every run driven at once holds a share of the
//! daemon's budget (CPU, memory, disk), and a waiting run starts only when its share fits
//! beside theirs. The highest-priority waiting run is asked first and the rest wait behind it,
//! so a large run is never starved by a stream of small ones.
//!
//! - **CPU**: a run holds one core-share; the budget is two per core. A run's tasks are
//!   mostly single-threaded and wait on the measurement lock and on disk, so some overlap
//!   pays: on these 2 cores, 4 runs at once of the 10k factory finished 7.04 runs/min against
//!   5.71 one at a time (`docs/bench/load.md`).
//! - **Memory**: a run's expected peak ([`crate::decisions::costs::expected_peak_bytes`]),
//!   from the prims the baseline profile counted, or the root layer's bytes before that; the
//!   budget is `usdtune daemon --memory-budget`, else 80 % of what was available when the
//!   daemon started.
//! - **Disk**: a run writes its outputs (restructured layers, optimized layers, route trials)
//!   beside its workspace: four times the root layer plus 64 MiB of artifacts, against the
//!   output folder's free space now.
//! - **GPU memory** (NVML) is shown with the budget but reserved by nobody: no task kind uses
//!   the GPU today.
//!
//! A run always starts when nothing else is driven, whatever its estimate: an estimate that
//! is too high must not keep a machine idle.

use crate::decisions::costs::{expected_peak_bytes, StageSize};

/// What the daemon may spend on runs at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    pub cores: usize,
    pub memory_bytes: u64,
    /// `--max-runs` (0: only the shares above limit).
    pub max_runs: usize,
}

/// Runs a core holds at once.
pub const RUNS_PER_CORE: usize = 2;

impl Budget {
    /// How many runs the CPU budget drives at once.
    pub fn run_shares(&self) -> usize {
        self.cores.max(1) * RUNS_PER_CORE
    }
}

/// What one run is expected to hold while it is driven.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Need {
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

impl Need {
    /// A run of a stage of `size` whose root layer has `root_bytes`.
    pub fn of(size: StageSize, root_bytes: u64) -> Self {
        Self { memory_bytes: expected_peak_bytes(size), disk_bytes: 4 * root_bytes + (64 << 20) }
    }
}

/// Start a run needing `next` beside the `driven` ones, or why it waits. `disk_free` is the
/// free space where it writes, now (what driven runs will still write is held back from it).
pub fn admit(budget: &Budget, driven: &[Need], next: &Need, disk_free: u64) -> Result<(), String> {
    if driven.is_empty() {
        return Ok(());
    }
    let running = driven.len();
    if budget.max_runs > 0 && running >= budget.max_runs {
        return Err(format!("{running} run(s) are running (--max-runs {})", budget.max_runs));
    }
    if running >= budget.run_shares() {
        return Err(format!(
            "{running} run(s) hold the CPU budget ({RUNS_PER_CORE} per core, {} core(s))",
            budget.cores.max(1)
        ));
    }
    let held: u64 = driven.iter().map(|n| n.memory_bytes).sum();
    if held + next.memory_bytes > budget.memory_bytes {
        return Err(format!(
            "it needs about {} of memory and {} of the {} budget is free",
            mib(next.memory_bytes),
            mib(budget.memory_bytes.saturating_sub(held)),
            mib(budget.memory_bytes)
        ));
    }
    let writing: u64 = driven.iter().map(|n| n.disk_bytes).sum();
    if writing + next.disk_bytes > disk_free {
        return Err(format!(
            "it may write about {} and {} of disk is free beside what running runs will write",
            mib(next.disk_bytes),
            mib(disk_free.saturating_sub(writing))
        ));
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    if bytes >= 10 << 30 {
        format!("{:.0} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn need(memory_gib: u64) -> Need {
        Need { memory_bytes: memory_gib * GIB, disk_bytes: GIB }
    }

    fn budget(cores: usize, memory_gib: u64) -> Budget {
        Budget { cores, memory_bytes: memory_gib * GIB, max_runs: 0 }
    }

    #[test]
    fn the_first_run_always_starts_whatever_its_estimate() {
        assert_eq!(admit(&budget(1, 1), &[], &need(64), 0), Ok(()));
    }

    #[test]
    fn memory_held_by_driven_runs_keeps_a_large_run_waiting_and_lets_a_small_one_in() {
        let driven = [need(3), need(3)];
        let why = admit(&budget(8, 8), &driven, &need(4), 100 * GIB).unwrap_err();
        assert!(why.contains("4.0 GiB") && why.contains("2.0 GiB of the 8.0 GiB"), "{why}");
        assert_eq!(admit(&budget(8, 8), &driven, &need(2), 100 * GIB), Ok(()));
    }

    #[test]
    fn two_runs_per_core_then_they_wait() {
        let driven = vec![need(0); 4];
        let why = admit(&budget(2, 64), &driven, &need(0), 100 * GIB).unwrap_err();
        assert!(why.contains("CPU budget") && why.contains("2 core"), "{why}");
        assert_eq!(admit(&budget(2, 64), &driven[..3], &need(0), 100 * GIB), Ok(()));
    }

    #[test]
    fn max_runs_is_said_as_the_reason_before_the_shares() {
        let capped = Budget { max_runs: 1, ..budget(8, 64) };
        assert!(admit(&capped, &[need(0)], &need(0), 100 * GIB).unwrap_err().contains("--max-runs 1"));
    }

    #[test]
    fn what_running_runs_will_write_is_held_back_from_free_disk() {
        let driven = [Need { memory_bytes: 0, disk_bytes: 6 * GIB }];
        let next = Need { memory_bytes: 0, disk_bytes: 5 * GIB };
        let why = admit(&budget(8, 64), &driven, &next, 10 * GIB).unwrap_err();
        assert!(why.contains("4.0 GiB of disk is free"), "{why}");
        assert_eq!(admit(&budget(8, 64), &driven, &next, 11 * GIB), Ok(()));
    }

    #[test]
    fn a_need_follows_the_stage_size() {
        let small = Need::of(StageSize::Prims(10_000), 1 << 20);
        let large = Need::of(StageSize::Prims(1_000_000), 1 << 20);
        assert!(small.memory_bytes < large.memory_bytes);
        assert_eq!(small.disk_bytes, (4 << 20) + (64 << 20));
    }
}
