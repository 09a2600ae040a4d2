//! Phase 6d: the optimization report (crate::report), built from the run's artifacts, put
//! through the report gate (decisions::report_gate) and written as JSON, Markdown and HTML;
//! the run record takes its verdict and workflow mode.
//!
//! First the source guard (artifacts::guard): a source that changed during the run fails it
//! (`source_modified`). The run fails closed when its own report would not pass the gate (`report_gate_failed`,
//! every violation in report-gate.json). A report that is not final because a target was
//! blocked keeps that more specific code (`target_coverage_incomplete`).

use serde::Serialize;

use crate::artifacts::guard::SourceGuard;
use crate::decisions::report_gate::{self, Violation};
use crate::outcome::Outcome;
use crate::store::StoreError;
use crate::workflow::{PhaseCtx, PhaseDone, PhaseResult, Stop};

/// report-gate.json: what the gate checked and what it refused.
#[derive(Serialize)]
struct GateRecord<'a> {
    passed: bool,
    checks: &'a [&'a str],
    manifests: &'a [String],
    violations: &'a [Violation],
}

pub async fn run(ctx: &PhaseCtx<'_>) -> PhaseResult {
    // Nothing measured is trusted if the source changed under the run.
    if let Some(guard) = ctx.read_opt::<SourceGuard>("source-guard")? {
        let changed = guard.changed();
        if !changed.is_empty() {
            return Err(Stop::fail(
                Outcome::SourceModified,
                format!("{} file(s) the source composes changed during the run: {}", changed.len(), changed.join(", ")),
            ));
        }
    }
    let record = ctx.record();
    let report = crate::report::build(&ctx.ws, &record)?;
    let document = serde_json::to_value(&report).expect("the report serializes");
    let manifests = report
        .target_coverage
        .source_manifests
        .iter()
        .map(|name| ctx.ws.read_json_file(name))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let violations = report_gate::check(&document, &manifests);
    let gate = GateRecord {
        passed: violations.is_empty(),
        checks: &report_gate::CHECKS,
        manifests: &report.target_coverage.source_manifests,
        violations: &violations,
    };
    let gate_path = ctx.write("report-gate", &gate)?;
    let json_path = ctx.write("optimization-report", &report)?;
    let files = &report.artifacts;
    crate::store::write_atomic(files.markdown.as_ref(), crate::report::markdown(&report).as_bytes())?;
    let page = crate::report::html(&report).map_err(|e| Stop::fail(Outcome::ReportRenderFailed, e.to_string()))?;
    crate::store::write_atomic(files.html.as_ref(), page.as_bytes())?;
    let (verdict, mode) = (report.verdict, report.workflow_mode);
    // Blocked targets are reported by their own code; anything else the gate refuses is ours.
    let beyond_blocking: Vec<&Violation> = violations
        .iter()
        .filter(|v| report.target_coverage.complete || !v.message.starts_with("target_coverage.complete"))
        .collect();
    ctx.update(|r| {
        r.report_path = json_path.clone();
        r.verdict = Some(verdict);
        r.workflow_mode = Some(mode);
        if !beyond_blocking.is_empty() {
            r.code = Outcome::ReportGateFailed.code().into();
            r.message = format!(
                "the report would not pass the report gate: {}",
                beyond_blocking.iter().map(|v| format!("{}: {}", v.check, v.message)).collect::<Vec<_>>().join("; ")
            );
        } else if !report.target_coverage.complete {
            // A failed preservation proof blocks its target (so-run-operations), so coverage covers it.
            r.code = Outcome::TargetCoverageIncomplete.code().into();
            r.message = "a Phase 4 target was blocked (see the report's target_coverage and preservation)".into();
        }
    });
    Ok(PhaseDone::new(
        vec![json_path, files.markdown.clone(), files.html.clone(), gate_path],
        format!(
            "{}, verdict {}; report gate {}",
            mode.as_str(),
            verdict.as_str(),
            if violations.is_empty() { "passed".to_string() } else { format!("{} violation(s)", violations.len()) }
        ),
    ))
}
