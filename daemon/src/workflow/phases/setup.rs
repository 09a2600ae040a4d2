//! Phase 0: what the executor's runtime can do (setup-preflight.json), and whether the
//! operations the user asked for by name can run in it.

use serde_json::json;

use crate::artifacts::setup::{Preflight, Probe};
use crate::decisions::{op_chain, remote};
use crate::outcome::Outcome;
use crate::workflow::ctx::parse_result;
use crate::workflow::{PhaseCtx, PhaseDone, PhaseResult, Stop};

pub async fn run(ctx: &PhaseCtx<'_>) -> PhaseResult {
    // The stage travels with the probe so that it is placed where the run can go on: on an
    // executor that reaches the stage (executors::Reach), which then says what it can do.
    let probe: Probe = ctx.task_as("probe", json!({"stage_path": ctx.record().stage_path})).await?;
    let mut preflight = Preflight::new(probe, crate::resources::host_facts());
    // The runtime gate: what was asked for, and by whom (upstream runtime_context.chosen_by).
    // Unattended, the daemon starts a standalone executor (the upstream policy:
    // standalone_preferred) unless a Kit one is attached (the upstream's unattended_default).
    let route = ctx.record().route;
    let chosen_by = route.runtime_chosen_by.clone().unwrap_or_else(|| {
        if preflight.runtime_route == crate::executors::RUNTIME_KIT {
            "unattended_default"
        } else {
            "standalone_preferred"
        }
        .into()
    });
    preflight.runtime_context.chosen_by = Some(chosen_by.clone());
    if let Some(kit) = preflight.runtime_context.kit.as_mut().and_then(|k| k.as_object_mut()) {
        kit.insert("chosen_by".into(), json!(chosen_by));
    }
    if let Some(asked) = route.runtime.as_deref().filter(|asked| *asked != preflight.runtime_route) {
        return Err(Stop::fail(
            Outcome::ExecutorProtocolError,
            format!("the {asked} runtime was asked for, but the executor that probed is {}", preflight.runtime_route),
        ));
    }
    // An omniverse:// stage: one omni.client.stat before anything opens it (upstream
    // omniverse-authentication); the run stops here with what it found (decisions::remote).
    let stage = ctx.record().stage_path;
    let remote = if remote::is_nucleus_url(&stage) {
        let found = ctx.task("nucleus_stat", json!({"url": stage})).await?;
        preflight.runtime_context.remote_access = Some(found.clone());
        Some(parse_result::<remote::Preflight>("nucleus_stat", found).map_err(Stop::from)?)
    } else {
        None
    };
    let path = ctx.write("setup-preflight", &preflight)?;
    if let Some(found) = remote {
        let (code, message) = remote::outcome(&found);
        return Err(Stop::fail(code, message));
    }
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
