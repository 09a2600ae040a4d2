//! Following a run to its end on the terminal: progress lines, the gate prompt, the closing
//! lines and the exit code; and `usdtune show`.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use serde_json::json;

use super::live::{self, View};
use super::{quiet, verbose, ShowFormat};
use crate::outcome::{exit_class_of, ExitClass};
use crate::proto::{self, RunState};
use crate::report::OptimizationReport;

pub(super) fn state_name(state: i32) -> &'static str {
    match RunState::try_from(state).unwrap_or(RunState::Unspecified) {
        RunState::Queued => "queued",
        RunState::Running => "running",
        RunState::AwaitingDecision => "awaiting_decision",
        RunState::Completed => "completed",
        RunState::Failed => "failed",
        RunState::Blocked => "blocked",
        RunState::Cancelled => "cancelled",
        RunState::Unspecified => "unknown",
    }
}

pub(super) fn run_json(r: &proto::Run) -> serde_json::Value {
    let opt = |s: &str| if s.is_empty() { serde_json::Value::Null } else { json!(s) };
    json!({
        "run_id": r.run_id, "state": state_name(r.state), "milestone": r.milestone, "stage_path": r.stage_path,
        "workspace": r.output_dir, "report_path": opt(&r.report_path),
        "markdown_report_path": opt(&r.markdown_report_path), "html_report_path": opt(&r.html_report_path),
        "output_path": opt(&r.output_stage_path), "verdict": opt(&r.verdict), "workflow_mode": opt(&r.workflow_mode),
        "code": opt(&r.code), "message": opt(&r.message),
    })
}

/// Follow a run's events to its end (or to a gate nobody here can answer).
pub(super) async fn follow(
    client: &mut super::Client,
    run_id: &str,
    yes: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut stream = client.watch_run(proto::WatchRunRequest { run_id: run_id.into() }).await?.into_inner();
    let view = View::new(quiet(), verbose());
    let mut last: Option<proto::Run> = None;
    let mut asked_gate = false;
    while let Some(event) = stream.message().await? {
        view.event(&event);
        let Some(run) = event.run else { continue };
        let state = RunState::try_from(run.state).unwrap_or(RunState::Unspecified);
        if state == RunState::AwaitingDecision && !asked_gate {
            let gate = run.gate.clone().unwrap_or_default();
            print_route_table(&view, &gate);
            let answer = if yes && !gate.recommended.is_empty() {
                view.note(&format!("{}: taking the recommended branch '{}' (--yes)", gate.id, gate.recommended));
                Some(gate.recommended.clone())
            } else if std::io::stdin().is_terminal() {
                view.suspend(|| prompt(&gate))?
            } else {
                None
            };
            match answer {
                Some(branch) => {
                    asked_gate = true;
                    client
                        .answer_gate(proto::AnswerGateRequest {
                            run_id: run_id.into(),
                            gate_id: gate.id.clone(),
                            branch,
                        })
                        .await?;
                }
                None => {
                    view.finish();
                    err!(
                        "{}",
                        live::error_line(&format!(
                            "{}: run {run_id} stopped at the {} gate: {}",
                            run.code, gate.id, gate.question
                        ))
                    );
                    err!(
                        "  branches: {}{}",
                        gate.branches.join(", "),
                        if gate.recommended.is_empty() {
                            String::new()
                        } else {
                            format!(" (recommended: {})", gate.recommended)
                        }
                    );
                    err!("  resume with: usdtune decide {run_id} BRANCH   (or pass --restructure BRANCH up front)");
                    if json {
                        out!("{}", serde_json::to_string_pretty(&run_json(&run))?);
                    }
                    return Ok(ExitCode::from(3));
                }
            }
        } else if state != RunState::AwaitingDecision {
            asked_gate = false;
        }
        let terminal =
            matches!(state, RunState::Completed | RunState::Failed | RunState::Blocked | RunState::Cancelled);
        last = Some(run);
        if terminal {
            break;
        }
    }
    view.finish();
    let run = last.ok_or_else(|| anyhow::anyhow!("the daemon closed the event stream without a run state"))?;
    if json {
        out!("{}", serde_json::to_string_pretty(&run_json(&run))?);
    }
    let state = RunState::try_from(run.state).unwrap_or(RunState::Unspecified);
    if state == RunState::Completed {
        let report = std::fs::read(&run.report_path)
            .ok()
            .and_then(|text| serde_json::from_slice::<crate::report::OptimizationReport>(&text).ok());
        match report {
            Some(report) => {
                err!("");
                for line in crate::report::summary(&report) {
                    err!("  {line}");
                }
            }
            None => view.note(&format!("artifacts: {}", run.output_dir)),
        }
        if !run.code.is_empty() {
            err!("{}", live::error_line(&format!("{}: {}", run.code, run.message)));
            err!("{}", live::verdict_line("Failed!", "failed"));
            return Ok(ExitCode::from(1));
        }
        err!("{}", live::verdict_line(closing_line(&run.verdict), &run.verdict));
        return Ok(ExitCode::SUCCESS);
    }
    let code = if run.code.is_empty() { state_name(run.state) } else { &run.code };
    err!("{}", live::error_line(&format!("{code}: {}", run.message)));
    err!("{}", live::verdict_line("Failed!", "failed"));
    let exit = if state == RunState::AwaitingDecision {
        ExitClass::Awaiting
    } else {
        exit_class_of(&run.code).max(ExitClass::Failed)
    };
    Ok(ExitCode::from(exit as u8))
}

/// The last line of a completed run: its verdict, never a plain "Success!" (a mixed run is
/// not one). A run without a verdict (`usdtune assess`) is done.
fn closing_line(verdict: &str) -> &'static str {
    match verdict {
        "improved" => "Improved.",
        "neutral" => "Neutral.",
        "mixed" => "Mixed: some metrics improved, others regressed; review before publishing.",
        "regressed" => "Regressed: review before publishing.",
        _ => "Done.",
    }
}

/// The measured routes behind a gate's recommendation, one line each.
fn print_route_table(view: &View, gate: &proto::Gate) {
    let Ok(evidence) = serde_json::from_str::<serde_json::Value>(&gate.evidence_json) else { return };
    let trials = &evidence["route_trials"];
    let Some(rows) = trials["trials"].as_array().filter(|r| !r.is_empty()) else { return };
    view.note(&format!(
        "routes ({}, goal {}):",
        trials["basis"].as_str().unwrap_or(""),
        trials["goal"].as_str().unwrap_or("")
    ));
    for row in rows {
        let ratio = |key: &str| row[key].as_f64().map_or("–".to_string(), |r| format!("{r:.2}×"));
        view.note(&format!(
            "  {:<24} {:<10} open {:>6}  bytes {:>6}  prims {:>8}  {:.1}s{}",
            row["branch"].as_str().unwrap_or(""),
            row["outcome"].as_str().unwrap_or(""),
            ratio("open_ratio"),
            ratio("bytes_ratio"),
            row["prims_after"].as_u64().map_or("–".to_string(), |p| p.to_string()),
            row["seconds"].as_f64().unwrap_or(0.0),
            row["code"].as_str().map(|c| format!("  {c}")).unwrap_or_default()
        ));
    }
    view.note(&format!("  {}", trials["reason"].as_str().unwrap_or("")));
}

pub(super) fn prompt(gate: &proto::Gate) -> anyhow::Result<Option<String>> {
    let mut err = std::io::stderr();
    writeln!(err, "\n{}", gate.question)?;
    for (i, b) in gate.branches.iter().enumerate() {
        writeln!(err, "  {}) {}{}", i + 1, b, if *b == gate.recommended { "  (recommended)" } else { "" })?;
    }
    loop {
        write!(err, "choose 1-{}: ", gate.branches.len())?;
        err.flush()?;
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim();
        if let Some(b) = line.parse::<usize>().ok().and_then(|i| gate.branches.get(i.wrapping_sub(1))) {
            return Ok(Some(b.clone()));
        }
        if gate.branches.iter().any(|b| b == line) {
            return Ok(Some(line.to_string()));
        }
    }
}

/// `usdtune show RUN`: the run's report as the user asks for it (the run record when no
/// report was written and a report format was asked for, with exit code 1).
pub(super) fn show(run: &proto::Run, format: ShowFormat) -> anyhow::Result<ExitCode> {
    if format == ShowFormat::Run {
        let mut doc = run_json(run);
        doc["phases"] = json!(run
            .phases
            .iter()
            .map(|p| json!({"milestone": p.milestone, "status": p.status, "note": p.note, "seconds": p.seconds}))
            .collect::<Vec<_>>());
        if let Some(g) = &run.gate {
            doc["gate"] =
                json!({"id": g.id, "question": g.question, "branches": g.branches, "recommended": g.recommended});
        }
        out!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    let report = if run.report_path.is_empty() {
        None
    } else {
        let text = std::fs::read_to_string(&run.report_path)
            .map_err(|e| anyhow::anyhow!("cannot read the report {} here: {e}", run.report_path))?;
        Some(serde_json::from_str::<OptimizationReport>(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {} is not a report this usdtune reads: {e}",
                crate::outcome::Outcome::ArtifactSchemaViolation,
                run.report_path
            )
        })?)
    };
    match (format, report) {
        (ShowFormat::Json, Some(report)) => out!("{}", serde_json::to_string_pretty(&report)?),
        (ShowFormat::Md, Some(report)) => out!("{}", crate::report::markdown(&report).trim_end()),
        (ShowFormat::Pretty, report) => {
            out!("{}  {}  {}  {}", run.run_id, state_name(run.state), run.milestone, run.stage_path);
            if !run.code.is_empty() {
                out!("  {}: {}", run.code, run.message);
            }
            for p in &run.phases {
                out!("{}", live::phase_line(p));
            }
            if let Some(report) = report {
                out!("\n{}", crate::report::pretty(&report).trim_end());
            }
        }
        (_, None) => {
            err!(
                "Error: run {} has no report yet ({}); `--format run` shows its state",
                run.run_id,
                state_name(run.state)
            );
            return Ok(ExitCode::from(1));
        }
        (ShowFormat::Run, _) => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}
