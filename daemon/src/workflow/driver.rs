//! The driver: walks the phase table from the first phase not yet settled, runs each
//! phase's handler, records what it wrote and cost, pauses the run at a gate until an
//! answer arrives, and ends the run. Every step is committed (persisted and announced), so
//! a run paused at a gate, or interrupted, resumes from its `run.json`.

use std::sync::Arc;
use std::time::Instant;

use super::ctx::{stage_size, PhaseCtx, Stop};
use super::slot::RunSlot;
use super::table::{skip_reason, PhaseSpec};
use super::{round3, worker_pool};
use crate::decisions::costs;
use crate::outcome::Outcome;
use crate::record::{EventKind, PhaseRecord, PhaseStatus, PhaseUsage, RunState};

/// Walk `table` for the run in `slot`. Returns when the run ends.
pub async fn drive(slot: Arc<RunSlot>, table: &'static [PhaseSpec]) {
    let record = slot.snapshot();
    let mut index = table
        .iter()
        .position(|spec| !record.phase(spec.label).is_some_and(|p| p.status.is_settled()))
        .unwrap_or(table.len());
    set_state(&slot, RunState::Running, "", "");
    while index < table.len() {
        let spec = &table[index];
        if slot.is_cancelled() {
            return set_state(&slot, RunState::Cancelled, Outcome::Cancelled.code(), "cancelled by request");
        }
        if let Some(note) = skip_reason(spec, &slot.snapshot().route) {
            slot.commit(EventKind::PhaseFinished, spec.label, note, |r| {
                let phase = r.phase_mut(spec.label);
                phase.status = PhaseStatus::Skipped;
                phase.note = note.into();
            });
            index += 1;
            continue;
        }
        // What this phase and the ones after it are expected to take, from what is known of
        // the stage's size now (its bytes, then its prims once profiled): the live view's ETA.
        let size = {
            let record = slot.snapshot();
            stage_size(&record.workspace(), &record.stage_path)
        };
        let expected = |spec: &PhaseSpec| {
            let seconds: f64 = spec.tasks.iter().map(|kind| costs::expected_seconds(kind, size)).sum();
            (seconds * 10.0).round() / 10.0
        };
        slot.commit(EventKind::PhaseStarted, spec.label, "", |r| {
            r.milestone = spec.label.into();
            for later in &table[index..] {
                let phase = r.phase_mut(later.label);
                if !phase.status.is_settled() {
                    phase.expected_seconds = expected(later);
                }
            }
            r.phase_mut(spec.label).status = PhaseStatus::Running;
        });
        let started = Instant::now();
        *slot.usage.lock().unwrap() = PhaseUsage::default();
        crate::resources::reset_own_peak_rss();
        let cpu_before = crate::resources::own_cpu_seconds();
        let outcome = {
            let ctx = PhaseCtx::new(&slot, spec.label);
            (spec.handler)(&ctx).await
        };
        let seconds = round3(started.elapsed().as_secs_f64());
        let usage = {
            let mut usage = slot.usage.lock().unwrap().clone();
            usage.daemon_cpu_seconds =
                crate::resources::own_cpu_seconds().zip(cpu_before).map_or(0.0, |(after, before)| after - before);
            usage.daemon_peak_rss_mb = crate::resources::own_peak_rss_kb().unwrap_or(0) as f64 / 1024.0;
            usage
        };
        match outcome {
            Ok(done) => {
                slot.commit(EventKind::PhaseFinished, spec.label, &done.note, |r| {
                    let expected_seconds = r.phase_mut(spec.label).expected_seconds;
                    *r.phase_mut(spec.label) = PhaseRecord {
                        milestone: spec.label.into(),
                        status: PhaseStatus::Done,
                        note: done.note.clone(),
                        seconds,
                        expected_seconds,
                        artifacts: done.artifacts,
                        usage: Some(usage),
                    };
                });
                index += 1;
            }
            Err(Stop::AwaitDecision(gate)) => {
                let kind = gate.kind().filter(|k| spec.gate == Some(*k));
                let Some(kind) = kind else {
                    let message =
                        format!("{} raised gate '{}', which its table row does not declare", spec.label, gate.id);
                    return fail_phase(
                        &slot,
                        spec,
                        seconds,
                        RunState::Failed,
                        Outcome::ExecutorProtocolError.code(),
                        &message,
                    );
                };
                slot.commit(EventKind::Gate, spec.label, &gate.question, |r| {
                    r.state = RunState::AwaitingDecision;
                    r.code = kind.awaiting().code().into();
                    r.message = gate.question.clone();
                    r.gate = Some((*gate).clone());
                    r.phase_mut(spec.label).status = PhaseStatus::Pending;
                });
                let Some(answer) = slot.next_answer().await else {
                    return set_state(
                        &slot,
                        RunState::Cancelled,
                        Outcome::Cancelled.code(),
                        "cancelled while awaiting a decision",
                    );
                };
                slot.commit(EventKind::Progress, spec.label, &format!("answered: {}", answer.choice), |r| {
                    r.state = RunState::Running;
                    r.code.clear();
                    r.message.clear();
                    r.gate = None;
                    answer.gate.apply(&mut r.route, &answer);
                });
                // Run the same phase again, now with its answer.
            }
            Err(Stop::Fail { code, message }) => {
                return fail_phase(&slot, spec, seconds, RunState::Failed, &code, &message);
            }
            Err(Stop::Block { code, message }) => {
                return fail_phase(&slot, spec, seconds, RunState::Blocked, &code, &message);
            }
        }
    }
    // A completed run may still carry a failed check (e.g. incomplete target coverage).
    let record = slot.snapshot();
    set_state(&slot, RunState::Completed, &record.code, &record.message)
}

fn fail_phase(slot: &RunSlot, spec: &PhaseSpec, seconds: f64, state: RunState, code: &str, message: &str) {
    // A task that failed because the run was being cancelled (its executor stopped) is the
    // cancellation's doing: the run stays cancelled.
    let current = slot.snapshot();
    let (state, code, message) = match (slot.is_cancelled(), current.state) {
        (true, RunState::Cancelled) => (RunState::Cancelled, current.code.as_str(), current.message.as_str()),
        (true, _) => (RunState::Cancelled, Outcome::Cancelled.code(), "cancelled by request"),
        (false, _) => (state, code, message),
    };
    slot.update(|r| {
        let phase = r.phase_mut(spec.label);
        phase.status = PhaseStatus::Failed;
        phase.note = format!("{code}: {message}");
        phase.seconds = seconds;
    });
    set_state(slot, state, code, message)
}

fn set_state(slot: &RunSlot, state: RunState, code: &str, message: &str) {
    let record = slot.update(|r| {
        r.state = state;
        r.code = code.into();
        r.message = message.into();
    });
    if state.is_terminal() {
        // A run that ended early may still hold its pre-started Phase 4 worker.
        slot.host().drop_workers(&worker_pool(&record));
    }
    let kind = if state.is_terminal() { EventKind::Finished } else { EventKind::Progress };
    slot.commit(kind, &record.milestone, message, |_| {});
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures::future::BoxFuture;
    use serde_json::json;

    use super::*;
    use crate::executors::TaskFailure;
    use crate::record::{Answer, GateKind, GateRecord, RunRecord, Submission};
    use crate::workflow::ctx::{PhaseCtx, PhaseDone, PhaseResult};
    use crate::workflow::host::{Host, TaskReply, TaskRequest};
    use crate::workflow::table::{handler, Handler, Skip};

    /// A host that runs no task and remembers what was persisted.
    #[derive(Default)]
    struct Recorder {
        persisted: Mutex<Vec<(EventKind, RunRecord)>>,
        dropped_pools: Mutex<Vec<String>>,
    }

    impl Host for Recorder {
        fn run_task<'a>(&'a self, task: TaskRequest<'a>) -> BoxFuture<'a, TaskReply> {
            panic!("no task expected, got {}", task.kind)
        }
        fn ensure_workers(&self, _: &str, _: usize) -> Result<bool, TaskFailure> {
            Ok(false)
        }
        fn release_workers<'a>(&'a self, _: &'a str, _: usize) -> BoxFuture<'a, ()> {
            Box::pin(async {})
        }
        fn drop_workers(&self, pool: &str) {
            self.dropped_pools.lock().unwrap().push(pool.into());
        }
        fn persist_and_announce(&self, record: &RunRecord, kind: EventKind, _: &str, _: &str) {
            self.persisted.lock().unwrap().push((kind, record.clone()));
        }
        fn max_workers(&self) -> usize {
            0
        }
        fn announce_progress(&self, _: &str, _: &str, _: f64, _: &str) {}
    }

    async fn done(ctx: &PhaseCtx<'_>) -> PhaseResult {
        Ok(PhaseDone::new(vec![], format!("{} ran", ctx.milestone)))
    }

    /// Asks the restructure gate until the route holds an answer.
    async fn gated(ctx: &PhaseCtx<'_>) -> PhaseResult {
        match ctx.record().route.restructure_branch {
            Some(branch) => Ok(PhaseDone::new(vec![], format!("answered {branch}"))),
            None => Err(Stop::AwaitDecision(Box::new(GateRecord {
                id: GateKind::Restructure.id().into(),
                question: "which?".into(),
                branches: vec!["exit".into(), "optimize-as-is".into()],
                recommended: None,
                evidence: json!({}),
            }))),
        }
    }

    async fn fails(_: &PhaseCtx<'_>) -> PhaseResult {
        Err(Stop::fail(Outcome::OperationFailed, "boom"))
    }

    const fn row(
        label: &'static str,
        skip_when: &'static [Skip],
        gate: Option<GateKind>,
        handler: Handler,
    ) -> PhaseSpec {
        PhaseSpec { label, phase: "t", skip_when, gate, reads: &[], writes: &[], tasks: &[], handler }
    }

    const WALK: &[PhaseSpec] = &[
        row("a", &[], None, handler!(done)),
        row("b", &[Skip::AssessOnly], None, handler!(done)),
        row("c", &[], Some(GateKind::Restructure), handler!(gated)),
        row("d", &[], None, handler!(done)),
    ];

    const FAILING: &[PhaseSpec] = &[
        row("a", &[], None, handler!(done)),
        row("b", &[], None, handler!(fails)),
        row("c", &[], None, handler!(done)),
    ];

    /// A gate raised by a row that does not declare it.
    const UNDECLARED: &[PhaseSpec] = &[row("a", &[], None, handler!(gated))];

    fn slot(table: &[PhaseSpec], submission: Submission) -> (Arc<RunSlot>, Arc<Recorder>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let labels: Vec<&str> = table.iter().map(|p| p.label).collect();
        let record =
            RunRecord::new("run-test".into(), "/s.usda".into(), dir.path().display().to_string(), &labels, &submission);
        let host = Arc::new(Recorder::default());
        (RunSlot::new(record, host.clone()), host, dir)
    }

    fn statuses(record: &RunRecord) -> Vec<(&str, PhaseStatus)> {
        record.phases.iter().map(|p| (p.milestone.as_str(), p.status)).collect()
    }

    #[tokio::test]
    async fn a_run_walks_its_table_skips_by_rule_and_completes() {
        let submission =
            Submission { assess_only: true, restructure_branch: Some("exit".into()), ..Default::default() };
        let (slot, host, _dir) = slot(WALK, submission);
        drive(slot.clone(), WALK).await;
        let record = slot.snapshot();
        assert_eq!(record.state, RunState::Completed);
        use PhaseStatus::*;
        assert_eq!(statuses(&record), [("a", Done), ("b", Skipped), ("c", Done), ("d", Done)]);
        assert_eq!(record.phase("c").unwrap().note, "answered exit");
        let persisted = host.persisted.lock().unwrap();
        assert_eq!(persisted.last().unwrap().0, EventKind::Finished, "the end is announced");
        assert_eq!(host.dropped_pools.lock().unwrap().as_slice(), ["opsrun-test"], "its workers are stopped");
    }

    #[tokio::test]
    async fn a_gate_pauses_the_run_and_its_answer_reruns_the_phase() {
        let (slot, host, _dir) = slot(WALK, Submission::default());
        let run = tokio::spawn(drive(slot.clone(), WALK));
        let waiting = loop {
            let record = slot.snapshot();
            if record.state == RunState::AwaitingDecision {
                break record;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        assert_eq!(waiting.code, Outcome::AwaitingRestructureDecision.code());
        assert_eq!(waiting.gate.as_ref().unwrap().kind(), Some(GateKind::Restructure));
        assert_eq!(waiting.phase("c").unwrap().status, PhaseStatus::Pending);
        assert!(host.persisted.lock().unwrap().iter().any(|(kind, r)| *kind == EventKind::Gate && r.gate.is_some()));
        slot.answer(Answer { gate: GateKind::Restructure, choice: "optimize-as-is".into(), answered_by: "api" });
        run.await.unwrap();
        let record = slot.snapshot();
        assert_eq!((record.state, record.code.as_str()), (RunState::Completed, ""));
        assert_eq!(record.route.decision_source.as_deref(), Some("api"));
        assert_eq!(record.phase("c").unwrap().note, "answered optimize-as-is");
    }

    #[tokio::test]
    async fn cancelling_at_a_gate_ends_the_run() {
        let (slot, _host, _dir) = slot(WALK, Submission::default());
        let run = tokio::spawn(drive(slot.clone(), WALK));
        while slot.snapshot().state != RunState::AwaitingDecision {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        slot.cancel();
        run.await.unwrap();
        assert_eq!(slot.snapshot().state, RunState::Cancelled);
    }

    #[tokio::test]
    async fn a_failing_phase_ends_the_run_with_its_code() {
        let (slot, _host, _dir) = slot(FAILING, Submission::default());
        drive(slot.clone(), FAILING).await;
        let record = slot.snapshot();
        assert_eq!((record.state, record.code.as_str()), (RunState::Failed, Outcome::OperationFailed.code()));
        use PhaseStatus::*;
        assert_eq!(statuses(&record), [("a", Done), ("b", Failed), ("c", Pending)]);
        assert_eq!(record.phase("b").unwrap().note, format!("{}: boom", Outcome::OperationFailed));
    }

    #[tokio::test]
    async fn a_saved_run_resumes_at_its_first_unsettled_phase_by_label() {
        let (slot, _host, _dir) =
            slot(WALK, Submission { restructure_branch: Some("exit".into()), ..Default::default() });
        slot.update(|r| {
            // Saved by a daemon whose table listed the phases in another order.
            r.phases.reverse();
            r.phase_mut("a").status = PhaseStatus::Done;
            r.phase_mut("a").note = "from the earlier daemon".into();
        });
        drive(slot.clone(), WALK).await;
        let record = slot.snapshot();
        assert_eq!(record.state, RunState::Completed);
        assert_eq!(record.phase("a").unwrap().note, "from the earlier daemon", "a settled phase does not run again");
        assert_eq!(record.phase("b").unwrap().status, PhaseStatus::Done);
    }

    #[tokio::test]
    async fn a_gate_its_row_does_not_declare_fails_the_run() {
        let (slot, _host, _dir) = slot(UNDECLARED, Submission::default());
        drive(slot.clone(), UNDECLARED).await;
        let record = slot.snapshot();
        assert_eq!(record.state, RunState::Failed);
        assert!(record.message.contains("does not declare"), "{}", record.message);
    }
}
