//! Phase 1a (and 6a): a quick-mode profile of a stage in a fresh process (the upstream
//! timing protocol: cold open, warm-up, ≥ 5 warm opens, median and spread).

use serde_json::json;

use crate::decisions::compare::Profile;
use crate::workflow::ctx::parse_result;
use crate::workflow::{PhaseCtx, PhaseDone, PhaseResult};

pub async fn baseline(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let stage = ctx.record().stage_path;
    capture(ctx, "profile-baseline", &stage).await
}

/// Profile `stage` and store it as `artifact`.
pub async fn capture(ctx: &PhaseCtx<'_>, artifact: &str, stage: &str) -> PhaseResult {
    let (mut captured, gpu) = ctx.task_watching_gpu("profile", json!({"stage_path": stage, "warm_samples": 5})).await?;
    captured["gpu_memory"] = serde_json::to_value(gpu).expect("GPU samples serialize");
    // Everything compare-profiles reads must be there.
    let _: Profile = parse_result("profile", captured.clone())?;
    let path = ctx.write(artifact, &captured)?;
    let note = format!(
        "warm open {} ms (spread {}%), {} prims",
        captured["warm_open_ms"], captured["warm_open_spread_pct"], captured["prim_count_with_instance_proxies"]
    );
    Ok(PhaseDone::new(vec![path], note))
}
