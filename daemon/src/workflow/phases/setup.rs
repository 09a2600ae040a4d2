//! Phase 0: what the executor's runtime can do (setup-preflight.json), and whether the
//! operations the user asked for by name can run in it.

use serde_json::json;

use crate::artifacts::setup::{Preflight, Probe};
use crate::decisions::op_chain;
use crate::workflow::{PhaseCtx, PhaseDone, PhaseResult, Stop};

pub async fn run(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let probe: Probe = ctx.task_as("probe", json!({})).await?;
    let preflight = Preflight::new(probe, crate::resources::host_facts());
    let path = ctx.write("setup-preflight", &preflight)?;
    let so = preflight.usd_optimize_version();
    op_chain::check_requested(&ctx.record().requested_operations, so, preflight.operations())
        .map_err(|(code, message)| Stop::block(code, message))?;
    ctx.update(|r| r.route.so_available = Some(so.is_some()));
    let note = match so {
        Some(version) => format!(
            "{} runtime, usd-optimize {version} ({} operations)",
            preflight.runtime_route,
            preflight.operations().len()
        ),
        None => "usd-optimize unavailable: structural-only path".to_string(),
    };
    Ok(PhaseDone::new(vec![path], note))
}
