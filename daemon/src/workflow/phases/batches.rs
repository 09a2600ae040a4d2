//! Phase 4b: the targets still to optimize, run in dependency groups (prototypes first),
//! each group in batches whose concurrency the pilot and every later batch decide
//! (decisions::batch). Each target runs in a standalone worker process; a target that fails
//! is blocked with its error and the others go on. After the pilot, a batch of quick targets
//! runs several per worker, each worker taking the next as it frees up.

use std::collections::VecDeque;
use std::path::Path;
use std::time::Instant;

use futures::StreamExt;
use serde_json::{json, Value};

use super::restructure::source_asset_paths;
use crate::artifacts::operations::{BatchRecord, OperationsResult, PlannedTarget, Schedule, TargetStatus};
use crate::decisions::batch::{self, BatchObservation, Budget, TargetWeight};
use crate::decisions::targets::{self, Disposition};
use crate::executors::TaskFailure;
use crate::outcome::Outcome;
use crate::workflow::ctx::parse_result;
use crate::workflow::{round3, worker_pool, PhaseCtx, Stop};

/// Run every target whose disposition is still `optimized`; returns the schedule record.
pub async fn run(
    ctx: &PhaseCtx<'_>,
    targets: &[PlannedTarget],
    operations: &[Value],
    statuses: &mut [TargetStatus],
) -> Result<Schedule, Stop> {
    // Each target's weight once: its file size is read from disk.
    let weights: Vec<TargetWeight> = targets
        .iter()
        .map(|t| TargetWeight {
            mesh_count: t.target.reachable_meshes(),
            file_bytes: std::fs::metadata(&t.target.path).map_or(0, |m| m.len()),
        })
        .collect();
    let rank = |i: usize| targets[i].target.group_rank();
    let mut order: Vec<usize> =
        (0..targets.len()).filter(|i| statuses[*i].coverage == Disposition::Optimized).collect();
    order.sort_by_key(|&i| (rank(i), std::cmp::Reverse(weights[i].mesh_count)));
    let host = ctx.slot.host();
    let pool = worker_pool(&ctx.record());
    let max_workers = budget(ctx).max_workers;
    let source_asset_paths = source_asset_paths(ctx);
    let mut batches = Vec::new();
    let mut outcome = Ok(());
    'groups: for group in order.chunk_by(|a, b| rank(*a) == rank(*b)) {
        let group_weights: Vec<TargetWeight> = group.iter().map(|&i| weights[i].clone()).collect();
        let (mut concurrency, mut reason) = batch::initial_concurrency(&group_weights, &budget(ctx));
        let mut size = batch::batch_size(concurrency, None, group.len());
        let mut queue: VecDeque<usize> = group.iter().copied().collect();
        while !queue.is_empty() {
            if ctx.is_cancelled() {
                outcome = Err(Stop::fail(Outcome::Cancelled, "cancelled by request between Phase 4 batches"));
                break 'groups;
            }
            let members: Vec<usize> = queue.drain(..size.min(queue.len())).collect();
            let pooled = host.ensure_workers(&pool, concurrency)?;
            let started = Instant::now();
            // `concurrency` lanes, each taking the next target as soon as its last one ends.
            let lane_pool = pooled.then_some(pool.as_str());
            let mut results: Vec<(usize, _)> = futures::stream::iter(members.iter().copied().enumerate())
                .map(|(k, i)| async move {
                    (k, optimize_target(ctx, lane_pool, &targets[i], operations, source_asset_paths).await)
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
            results.sort_unstable_by_key(|(k, _)| *k);
            let results = results.into_iter().map(|(_, result)| result);
            let mut observed = BatchObservation { concurrency, ..Default::default() };
            for (&i, result) in members.iter().zip(results) {
                let status = &mut statuses[i];
                match result {
                    Ok((result, peak_rss_kb, seconds)) => {
                        observed.peak_rss_bytes.push(u64::try_from(peak_rss_kb).unwrap_or(0) * 1024);
                        observed.seconds.push(seconds);
                        let reverify = result.reverify.clone();
                        status.ran(result, round3(seconds));
                        // An output that composes with new errors is blocked, not optimized.
                        let blocked = reverify.and_then(|r| {
                            targets::blocked_by_reverify(r.new_composition_errors, &r.composition_errors)
                        });
                        if let Some((code, reason)) = blocked {
                            // Nothing that looks complete is left behind.
                            let output = status.output_path.take().map(|p| set_aside(&p));
                            let reason = match &output {
                                Some(path) => format!("{reason}; output set aside as {path}"),
                                None => reason,
                            };
                            status.output_path = output;
                            status.block(code.code(), reason);
                        }
                    }
                    Err(failure) if targets::is_chain_failure(&failure.code) => outcome = Err(Stop::from(failure)),
                    Err(failure) => {
                        observed.failures += 1;
                        status.block(&failure.code, failure.to_string());
                    }
                }
            }
            // Every output a worker said it wrote must be there (or set aside).
            let expected = members.iter().filter(|&&i| statuses[i].output_path.is_some()).count();
            let written = members
                .iter()
                .filter(|&&i| statuses[i].output_path.as_deref().is_some_and(|p| Path::new(p).is_file()))
                .count();
            batches.push(BatchRecord {
                index: batches.len(),
                dependency_group: targets[members[0]]
                    .target
                    .dependency_group
                    .clone()
                    .unwrap_or_else(|| "independent".into()),
                targets: members.iter().map(|&i| targets[i].target.path.clone()).collect(),
                concurrency,
                reason: reason.clone(),
                seconds: round3(started.elapsed().as_secs_f64()),
                failures: observed.failures,
                outputs_expected: expected,
                outputs_written: written,
                peak_worker_rss_bytes: observed.peak_rss_bytes.iter().max().copied(),
            });
            if written != expected {
                outcome = Err(Stop::fail(
                    Outcome::OutputCountMismatch,
                    format!(
                        "batch {} expected {expected} optimized files and found {written}: a collision or a failed write",
                        batches.len() - 1
                    ),
                ));
            }
            if outcome.is_err() {
                break 'groups;
            }
            (concurrency, reason) = batch::next_concurrency(&observed, &budget(ctx), queue.len());
            size = batch::batch_size(concurrency, observed.median_seconds(), queue.len());
            if size > concurrency {
                reason = format!("{reason}, {size} targets through them");
            }
            host.release_workers(&pool, concurrency).await;
        }
    }
    host.release_workers(&pool, 0).await;
    outcome?;
    Ok(Schedule { max_workers, batches })
}

/// Move an output that failed its checks out of the way (`<path>.failed-verify`); returns
/// where it went, or the path itself when it could not be moved.
pub fn set_aside(path: &str) -> String {
    let discarded = format!("{path}.failed-verify");
    match std::fs::rename(path, &discarded) {
        Ok(()) => discarded,
        Err(_) => path.to_string(),
    }
}

/// The daemon's budget for the next batch: cores, memory available now, the worker cap.
fn budget(ctx: &PhaseCtx<'_>) -> Budget {
    // CPU and memory only: the full host facts also load NVML, which a batch does not need.
    let (cpu_count, ram_available_bytes) = crate::resources::cpu_and_available_memory();
    let configured = ctx.slot.host().max_workers();
    Budget { cpu_count, ram_available_bytes, max_workers: if configured == 0 { cpu_count } else { configured } }
}

/// One target through the chain in a worker: (the task's result, its peak memory in KiB, wall seconds).
async fn optimize_target(
    ctx: &PhaseCtx<'_>,
    pool: Option<&str>,
    target: &PlannedTarget,
    operations: &[Value],
    source_asset_paths: Option<u64>,
) -> Result<(OperationsResult, i64, f64), TaskFailure> {
    let started = Instant::now();
    let t = &target.target;
    let params = json!({
        "stage_path": t.path, "output_path": target.output_path, "operations": operations,
        "declass_namespace": t.declass_namespace,
        "load_payloads": t.load_payloads.unwrap_or(true), "mute_layers": t.mute_layers,
        "source_stage": ctx.record().stage_path, "source_asset_paths": source_asset_paths,
    });
    let (outcome, usage) = ctx.task_in(pool, "operations", params).await;
    let result = parse_result("operations", outcome?)?;
    Ok((result, usage.peak_rss_kb, started.elapsed().as_secs_f64()))
}
