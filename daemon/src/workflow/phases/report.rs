//! Phase 6d: the optimization report (crate::report), built from the run's artifacts and
//! written as JSON and Markdown; the run record takes its verdict and workflow mode.

use crate::outcome::Outcome;
use crate::workflow::{PhaseCtx, PhaseDone, PhaseResult};

pub async fn run(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let record = ctx.record();
    let report = crate::report::build(&ctx.ws, &record)?;
    let json_path = ctx.write("optimization-report", &report)?;
    let md_path = crate::report::markdown_path(&ctx.ws);
    crate::store::write_atomic(&md_path, crate::report::markdown(&report).as_bytes())?;
    let (verdict, mode) = (report.verdict, report.workflow_mode);
    ctx.update(|r| {
        r.report_path = json_path.clone();
        r.verdict = Some(verdict);
        r.workflow_mode = Some(mode);
        // A failed preservation proof blocks its target (so-run-operations), so coverage covers it.
        if !report.target_coverage.complete {
            r.code = Outcome::TargetCoverageIncomplete.code().into();
            r.message = "a Phase 4 target was blocked (see the report's target_coverage and preservation)".into();
        }
    });
    Ok(PhaseDone::new(
        vec![json_path, md_path.display().to_string()],
        format!("{}, verdict {}", mode.as_str(), verdict.as_str()),
    ))
}
