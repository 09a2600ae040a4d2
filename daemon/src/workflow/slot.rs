//! A run the daemon holds in memory: its record, the channel its gate answers arrive on,
//! and what the phase in progress has cost. A slot saves and announces itself: every change
//! that matters to watchers goes through [`RunSlot::commit`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::host::Host;
use crate::decisions::preservation::Signature;
use crate::record::{Answer, EventKind, PhaseUsage, RunRecord};

pub struct RunSlot {
    record: Mutex<RunRecord>,
    host: Arc<dyn Host>,
    answers: tokio::sync::Mutex<mpsc::UnboundedReceiver<Answer>>,
    answer_tx: mpsc::UnboundedSender<Answer>,
    /// Shared with the runs this one starts (route trials): cancelling the run cancels them.
    cancelled: Arc<AtomicBool>,
    /// Executor cost of the phase in progress, summed as its tasks finish.
    pub usage: Mutex<PhaseUsage>,
    /// The source stage's geometry signature, measured once for every preservation proof of
    /// the run (the source is never written, so it cannot change under the run).
    pub source_signature: Mutex<Option<Arc<Signature>>>,
}

impl RunSlot {
    pub fn new(record: RunRecord, host: Arc<dyn Host>) -> Arc<Self> {
        Self::with_cancel(record, host, Default::default())
    }

    /// A run started by this one (a route trial): same host, cancelled with it.
    pub fn child(&self, record: RunRecord) -> Arc<Self> {
        Self::with_cancel(record, self.host.clone(), self.cancelled.clone())
    }

    fn with_cancel(record: RunRecord, host: Arc<dyn Host>, cancelled: Arc<AtomicBool>) -> Arc<Self> {
        let (answer_tx, answers) = mpsc::unbounded_channel();
        Arc::new(Self {
            record: Mutex::new(record),
            host,
            answers: tokio::sync::Mutex::new(answers),
            answer_tx,
            cancelled,
            usage: Default::default(),
            source_signature: Default::default(),
        })
    }

    pub fn snapshot(&self) -> RunRecord {
        self.record.lock().unwrap().clone()
    }

    pub fn host(&self) -> &dyn Host {
        self.host.as_ref()
    }

    /// Change the record in memory; the next commit persists it.
    pub fn update(&self, f: impl FnOnce(&mut RunRecord)) -> RunRecord {
        let mut record = self.record.lock().unwrap();
        f(&mut record);
        record.clone()
    }

    /// Change the record, persist it and tell watchers (`milestone`: the phase it is about).
    pub fn commit(&self, kind: EventKind, milestone: &str, message: &str, f: impl FnOnce(&mut RunRecord)) -> RunRecord {
        let record = self.update(f);
        self.host.persist_and_announce(&record, kind, milestone, message);
        record
    }

    /// Deliver a gate's answer to the driver waiting for it.
    pub fn answer(&self, answer: Answer) {
        let _ = self.answer_tx.send(answer);
    }

    /// The next answer, or None when the run was cancelled while waiting.
    pub async fn next_answer(&self) -> Option<Answer> {
        let mut answers = self.answers.lock().await;
        loop {
            tokio::select! {
                answer = answers.recv() => return answer,
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if self.is_cancelled() {
                        return None;
                    }
                }
            }
        }
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// The flag a task in flight watches, to stop as soon as the run is cancelled.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancelled.clone()
    }
}
