//! Phase 7: further scoped passes (decisions::iterate decides whether, and what changes).
//!
//! A later pass is a child run in `OUTDIR/passes/<n>/` that starts at Phase 4 from this run's
//! settled phases (their artifacts copied, the restructured stage shared, the first pass's
//! baseline kept) and runs to its own report, measured paired against the same source. The
//! better pass by the paired verdict is final (decisions::iterate::better): when a later one
//! wins, the first pass's report files move to `passes/1/`, the winner's take their place and
//! the run's output is the winner's stage; a failed or worse pass leaves the first pass final.
//! `iterations.json` lists every pass, what it changed and why, and why the passes stopped.

use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use crate::decisions::compare::{Comparison, Verdict};
use crate::decisions::iterate::{self, Iterations, NextPass, PassChange, PassFacts, PassRow, DEFAULT_PASSES};
use crate::decisions::op_chain::InstancingForm;
use crate::outcome::Outcome;
use crate::record::{RunRecord, RunState};
use crate::store::Workspace;
use crate::workflow::table::PHASES;
use crate::workflow::{PhaseCtx, PhaseDone, PhaseResult, Stop};

/// The first phase a later pass runs again: everything before it, Phase 4's validation
/// evidence included, is the first pass's (reused, not re-run).
const REPEATED_FROM: &str = "so-interpret-validators";
/// The files that make up a pass's report, promoted together when a later pass wins.
const REPORT_FILES: [&str; 7] = [
    "optimization-report.json",
    "optimization-report.md",
    "optimization-report.html",
    "report-gate.json",
    "compare-profiles.json",
    "profile-after.json",
    "profile-pair.json",
];

pub async fn run(ctx: &PhaseCtx<'_>) -> PhaseResult {
    let record = ctx.record();
    let passes = if record.route.passes == 0 { DEFAULT_PASSES } else { record.route.passes };
    let first = measured(&ctx.ws, &record, 1)?;
    let mut facts = PassFacts { pass: 1, passes, forms_tried: first.form.into_iter().collect(), ..first.facts.clone() };
    let first_seconds: f64 = record.phases.iter().map(|p| p.seconds).sum();
    let mut rows = vec![first.row(".", None, String::new(), (first_seconds * 10.0).round() / 10.0)];
    let mut best = first;
    let stop_reason = loop {
        let (change, why) = match iterate::next_pass(&facts) {
            NextPass::Stop(reason) => break reason,
            NextPass::Run { change, why } => (change, why),
        };
        let n = facts.pass + 1;
        ctx.warn(&format!("Phase 7: {why}"));
        let PassChange::InstancingForm { form } = change;
        let child = pass_record(ctx, &record, n, form)?;
        let slot = ctx.slot.child(child);
        let started = Instant::now();
        crate::workflow::drive(slot.clone()).await;
        let seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        let done = slot.snapshot();
        if done.state == RunState::Cancelled || ctx.is_cancelled() {
            return Err(Stop::fail(Outcome::Cancelled, format!("cancelled during pass {n}")));
        }
        let folder = format!("passes/{n}");
        if done.state != RunState::Completed || !done.code.is_empty() {
            let state = serde_json::to_value(done.state).ok().and_then(|v| v.as_str().map(String::from));
            let state = state.unwrap_or_default();
            rows.push(PassRow::failed(n, &folder, change, why, &state, &done.code, seconds));
            break format!("pass {n} ended {state} ({}: {}): the best earlier pass stands", done.code, done.message);
        }
        let result = measured(&done.workspace(), &done, n)?;
        rows.push(result.row(&folder, Some(change), why, seconds));
        facts = PassFacts {
            pass: n,
            passes,
            forms_tried: facts.forms_tried.iter().copied().chain(result.form).collect(),
            ..result.facts.clone()
        };
        if iterate::better(result.rank_key(), best.rank_key()) {
            best = result;
        }
    };
    let winner = best.pass;
    if winner > 1 {
        let archived = promote(ctx, winner, &best)?;
        rows[0].report_path = Some(archived.join("optimization-report.json").display().to_string());
    }
    let iterations = Iterations { passes_allowed: passes, final_pass: winner, stop_reason, passes: rows };
    let path = ctx.write("iterations", &iterations)?;
    let note = match (iterations.passes.len(), winner) {
        (1, _) => format!("1 pass: {}", iterations.stop_reason),
        (taken, 1) => format!("{taken} passes, the first stays final: {}", iterations.stop_reason),
        (taken, w) => {
            format!("{taken} passes, pass {w} is final (verdict {}): {}", best.verdict_name(), iterations.stop_reason)
        }
    };
    Ok(PhaseDone::new(vec![path], note))
}

/// What one finished pass measured.
#[derive(Clone, Debug)]
struct Measured {
    pass: u32,
    facts: PassFacts,
    form: Option<InstancingForm>,
    output: Option<String>,
    report: String,
}

impl Measured {
    fn rank_key(&self) -> (Verdict, f64) {
        (self.facts.verdict, self.facts.warm_open_change_pct.unwrap_or(0.0))
    }

    fn verdict_name(&self) -> &'static str {
        self.facts.verdict.as_str()
    }

    fn row(&self, folder: &str, change: Option<PassChange>, why: String, seconds: f64) -> PassRow {
        PassRow {
            pass: self.pass,
            workspace: folder.into(),
            change,
            why,
            state: "completed".into(),
            code: String::new(),
            verdict: Some(self.verdict_name().into()),
            warm_open_change_pct: self.facts.warm_open_change_pct,
            instancing_form: self.form,
            output_path: self.output.clone(),
            report_path: Some(self.report.clone()),
            seconds,
        }
    }
}

/// A pass's facts from its workspace: the paired comparison, the mode, the dedupe form.
fn measured(ws: &Workspace, record: &RunRecord, pass: u32) -> Result<Measured, Stop> {
    let read_err = |e: crate::store::StoreError| Stop::fail(Outcome::ArtifactSchemaViolation, e.to_string());
    let comparison: Option<Comparison> = ws.read_opt("compare-profiles").map_err(read_err)?;
    let plan: Option<Value> = ws.read_opt("operation-plan").map_err(read_err)?;
    let warm = comparison.as_ref().and_then(|c| c.metrics.iter().find(|m| m.name == "warm_open_ms"));
    let form = plan.as_ref().and_then(|p| p["operations"].as_array()).and_then(|ops| {
        ops.iter().find(|op| op["operation"] == "deduplicateGeometry").map(|op| {
            if op["args"]["duplicateMethod"] == 4 {
                InstancingForm::PointInstancer
            } else {
                InstancingForm::Native
            }
        })
    });
    Ok(Measured {
        pass,
        facts: PassFacts {
            pass,
            passes: record.route.passes,
            verdict: comparison.as_ref().map_or(Verdict::Neutral, |c| c.verdict),
            workflow_mode: record.workflow_mode.map_or("full", |m| m.as_str()).into(),
            instancing_form: form,
            warm_open_change_pct: warm.map(|m| m.change_pct),
            warm_open_conclusive: warm.is_some_and(|m| m.conclusive),
            forms_tried: Vec::new(),
        },
        form,
        output: record.output_stage().map(String::from),
        report: record.report_path.clone(),
    })
}

/// Pass `n`: a child run in `passes/<n>/` whose phases before Phase 4's op chain are this
/// run's, with the change it was started for.
fn pass_record(ctx: &PhaseCtx<'_>, parent: &RunRecord, n: u32, form: InstancingForm) -> Result<RunRecord, Stop> {
    let dir = ctx.output_dir("passes").join(n.to_string());
    let earlier = PHASES.iter().take_while(|spec| spec.label != REPEATED_FROM);
    let artifacts: Vec<&str> = earlier.flat_map(|spec| spec.writes.iter().copied()).collect();
    super::child_run(ctx, parent, &dir, REPEATED_FROM, &artifacts, |route| {
        route.pass = n;
        route.instancing_form = Some(form);
    })
}

/// A later pass won: the first pass's report files move to `passes/1/` (returned), the
/// winner's take their place, and the run's output and verdict become the winner's.
fn promote(ctx: &PhaseCtx<'_>, winner: u32, best: &Measured) -> Result<std::path::PathBuf, Stop> {
    let root = ctx.ws.root().to_path_buf();
    let archive = root.join("passes").join("1");
    let from = root.join("passes").join(winner.to_string());
    let io =
        |path: &Path, e: std::io::Error| Stop::fail(Outcome::OutputDirUnwritable, format!("{}: {e}", path.display()));
    std::fs::create_dir_all(&archive).map_err(|e| io(&archive, e))?;
    for name in REPORT_FILES {
        let (top, kept, promoted) = (root.join(name), archive.join(name), from.join(name));
        if top.exists() {
            std::fs::rename(&top, &kept).map_err(|e| io(&kept, e))?;
        }
        if promoted.exists() {
            std::fs::copy(&promoted, &top).map_err(|e| io(&top, e))?;
        }
    }
    let verdict = best.facts.verdict;
    let output = best.output.clone().unwrap_or_default();
    ctx.update(|r| {
        r.output_stage_path = output.clone();
        r.verdict = Some(verdict);
    });
    Ok(archive)
}
