//! Wiring: the daemon core (runs, executor hub, events) and its gRPC server. The same core
//! serves a long-running `usdtuned` and the CLI's embedded mode; in both, a local headless
//! executor is spawned on demand when no executor is connected.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tonic::Status;

use crate::executors::{pool_member, ExecutorHub, TaskFailure, TaskUsage};
use crate::proto;
use crate::run::{self, Answer, RunRecord, RunSlot, RunState};
use crate::setup::ExecutorEnv;
use crate::store::Workspace;

pub struct Config {
    /// Where run indexes (and default run workspaces) live.
    pub data_dir: PathBuf,
    /// Spawn `python -m usdtune_executor` from this environment when no executor is connected.
    pub local_executor: Option<ExecutorEnv>,
    /// How long a task waits for a capable executor to connect.
    pub executor_wait: Duration,
    /// Most executor processes one run's Phase 4 may use at once (0: one per CPU core).
    pub max_workers: usize,
}

impl Config {
    pub fn new(local_executor: Option<ExecutorEnv>, max_workers: usize) -> Self {
        Self {
            data_dir: crate::setup::data_dir(),
            local_executor,
            executor_wait: Duration::from_secs(120),
            max_workers,
        }
    }
}

pub struct Core {
    pub hub: ExecutorHub,
    pub config: Config,
    runs: Mutex<HashMap<String, Arc<RunSlot>>>,
    events: broadcast::Sender<proto::RunEvent>,
    address: OnceLock<SocketAddr>,
    children: Mutex<Vec<tokio::process::Child>>,
    /// Phase 4 worker processes by executor id (`<pool>-<n>`).
    workers: Mutex<HashMap<String, tokio::process::Child>>,
}

/// Outcome codes that mean the input itself is unusable (CLI exit code 2).
pub const INPUT_ERROR_CODES: &[&str] = &[
    "stage_not_found",
    "stage_open_failed",
    "stage_is_directory",
    "unsupported_format",
    "stage_path_missing",
    "invalid_restructure_branch",
];

impl Core {
    pub fn new(config: Config) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(Self {
            hub: ExecutorHub::default(),
            config,
            runs: Mutex::new(HashMap::new()),
            events,
            address: OnceLock::new(),
            children: Mutex::new(Vec::new()),
            workers: Mutex::new(HashMap::new()),
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<proto::RunEvent> {
        self.events.subscribe()
    }

    fn index_path(&self, run_id: &str) -> PathBuf {
        self.config.data_dir.join("runs").join(format!("{run_id}.workspace"))
    }

    /// Persist the run to its workspace and tell watchers.
    pub fn persist_and_emit(&self, record: &RunRecord, kind: &str, milestone: &str, message: &str) {
        let value = serde_json::to_value(record).expect("run record serializes");
        if let Err(e) = record.workspace().write_artifact("run", &value) {
            tracing::error!(run = %record.run_id, "cannot persist run: {e}");
        }
        let _ = self.events.send(proto::RunEvent {
            run_id: record.run_id.clone(),
            kind: kind.into(),
            milestone: milestone.into(),
            message: message.into(),
            fraction: -1.0,
            run: Some(to_proto(record)),
        });
    }

    /// Run one executor task for a run, forwarding its progress as run events.
    pub async fn run_task(
        self: &Arc<Self>,
        run_id: &str,
        milestone: &str,
        kind: &str,
        params: Value,
    ) -> (String, Result<Value, TaskFailure>, TaskUsage) {
        if let Err(e) = self.ensure_local_executor().await {
            return (String::new(), Err(e), TaskUsage::default());
        }
        self.run_task_in(None, run_id, milestone, kind, params).await
    }

    /// [`Self::run_task`] on one worker pool's executors (see [`Self::ensure_workers`]).
    pub async fn run_task_in(
        self: &Arc<Self>,
        pool: Option<&str>,
        run_id: &str,
        milestone: &str,
        kind: &str,
        params: Value,
    ) -> (String, Result<Value, TaskFailure>, TaskUsage) {
        let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<(f64, String)>();
        let forward = {
            let core = self.clone();
            let (run_id, milestone) = (run_id.to_string(), milestone.to_string());
            tokio::spawn(async move {
                while let Some((fraction, message)) = progress_rx.recv().await {
                    let run = core.slot(&run_id).map(|s| to_proto(&s.snapshot()));
                    let _ = core.events.send(proto::RunEvent {
                        run_id: run_id.clone(),
                        kind: "progress".into(),
                        milestone: milestone.clone(),
                        message,
                        fraction,
                        run,
                    });
                }
            })
        };
        let outcome = self.hub.run_task_in(pool, kind, &params, Some(progress_tx), self.config.executor_wait).await;
        forward.abort();
        outcome
    }

    async fn ensure_local_executor(&self) -> Result<(), TaskFailure> {
        let Some(env) = &self.config.local_executor else { return Ok(()) };
        if !self.hub.connected().is_empty() {
            return Ok(());
        }
        let mut children = self.children.lock().unwrap();
        children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        if !children.is_empty() {
            return Ok(()); // started, not yet connected: run_task waits for its hello
        }
        children.push(self.spawn_executor(env, "local")?);
        Ok(())
    }

    /// Start `python -m usdtune_executor` from `env`, connecting back to this daemon as `id`.
    fn spawn_executor(&self, env: &ExecutorEnv, id: &str) -> Result<tokio::process::Child, TaskFailure> {
        let address = *self
            .address
            .get()
            .ok_or_else(|| TaskFailure::new("daemon_not_serving", "daemon has no listening address"))?;
        let child = tokio::process::Command::new(env.python())
            .args(["-m", "usdtune_executor", "--daemon", &address.to_string(), "--executor-id", id])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TaskFailure::new("executor_spawn_failed", format!("cannot start {}: {e}", env.python().display()))
            })?;
        tracing::info!(pid = child.id(), %id, "spawned executor");
        Ok(child)
    }

    /// Phase 4 runs each target in a standalone worker process (batch-mode.md: one target, one
    /// job), `count` of them at once: make sure executors `<pool>-1` … `<pool>-<count>` are
    /// running. Returns false when this daemon spawns no local processes (it serves external
    /// executors only); the connected executors run the targets then.
    pub fn ensure_workers(&self, pool: &str, count: usize) -> Result<bool, TaskFailure> {
        let Some(env) = &self.config.local_executor else { return Ok(false) };
        let mut workers = self.workers.lock().unwrap();
        for n in 1..=count {
            let id = format!("{pool}-{n}");
            if workers.get_mut(&id).is_some_and(|c| matches!(c.try_wait(), Ok(None))) {
                continue;
            }
            let child = self.spawn_executor(env, &id)?;
            workers.insert(id, child);
        }
        Ok(true)
    }

    /// Stop a pool's workers beyond the first `keep` (all of them with 0): their memory goes
    /// back as soon as the batch that needed them is over.
    pub async fn release_workers(&self, pool: &str, keep: usize) {
        let beyond = |id: &str| pool_member(id, pool).is_some_and(|n| n > keep);
        self.hub.shutdown_where(beyond, "Phase 4 worker no longer needed");
        let stopping: Vec<_> = {
            let mut workers = self.workers.lock().unwrap();
            let ids: Vec<String> = workers.keys().filter(|id| beyond(id)).cloned().collect();
            ids.into_iter().filter_map(|id| workers.remove(&id)).collect()
        };
        stop_children(stopping, Duration::from_secs(5)).await;
    }

    /// Stop a pool's workers at once (a run ended): dropping a child kills it.
    pub fn drop_workers(&self, pool: &str) {
        let in_pool = |id: &str| pool_member(id, pool).is_some();
        self.hub.shutdown_where(in_pool, "run ended");
        self.workers.lock().unwrap().retain(|id, _| !in_pool(id));
    }

    pub fn slot(&self, run_id: &str) -> Option<Arc<RunSlot>> {
        self.runs.lock().unwrap().get(run_id).cloned()
    }

    /// A run from memory, or from its workspace when an earlier daemon ran it.
    pub fn load(&self, run_id: &str) -> Option<RunRecord> {
        if let Some(slot) = self.slot(run_id) {
            return Some(slot.snapshot());
        }
        let workspace = std::fs::read_to_string(self.index_path(run_id)).ok()?;
        let value = Workspace::new(workspace.trim()).read_artifact("run").ok()?;
        serde_json::from_value(value).ok()
    }

    pub fn list(&self) -> Vec<RunRecord> {
        let mut ids: Vec<String> = std::fs::read_dir(self.config.data_dir.join("runs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".workspace")).map(String::from))
            .collect();
        ids.extend(self.runs.lock().unwrap().keys().cloned());
        ids.sort();
        ids.dedup();
        let mut runs: Vec<RunRecord> = ids.iter().filter_map(|id| self.load(id)).collect();
        runs.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        runs
    }

    pub fn submit(self: &Arc<Self>, request: proto::SubmitRunRequest) -> Result<RunRecord, Status> {
        let stage = PathBuf::from(&request.stage_path);
        if !stage.is_file() {
            return Err(Status::invalid_argument(format!(
                "stage_not_found: stage file does not exist: {}",
                stage.display()
            )));
        }
        let stage = std::fs::canonicalize(&stage)
            .map_err(|e| Status::invalid_argument(format!("stage_not_found: {}: {e}", stage.display())))?;
        if let Some(branch) = Some(request.restructure_branch.as_str()).filter(|b| !b.is_empty()) {
            if crate::decisions::restructure::Branch::parse(branch).is_none() {
                return Err(Status::invalid_argument(format!("invalid_restructure_branch: unknown branch '{branch}'")));
            }
        }
        let run_id = format!("run-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let output_dir = if request.output_dir.is_empty() {
            self.config.data_dir.join("runs").join(&run_id)
        } else {
            std::path::absolute(&request.output_dir)
                .map_err(|e| Status::invalid_argument(format!("output_dir: {e}")))?
        };
        if stage.parent() == Some(output_dir.as_path()) && output_dir.join("optimization-report.json").exists() {
            tracing::warn!("output folder already holds a report; it will be replaced");
        }
        std::fs::create_dir_all(&output_dir)
            .map_err(|e| Status::invalid_argument(format!("output_dir_unwritable: {}: {e}", output_dir.display())))?;
        let branch = Some(request.restructure_branch).filter(|b| !b.is_empty());
        let mut record = RunRecord::new(
            run_id.clone(),
            stage.display().to_string(),
            output_dir.display().to_string(),
            branch,
            request.requested_operations,
        );
        record.route.assess_only = request.assess_only;
        record.route.full_validation_approved = request.approve_full_validation;
        if !request.pipeline.is_empty() && !crate::decisions::op_chain::PIPELINES.contains(&request.pipeline.as_str()) {
            return Err(Status::invalid_argument(format!(
                "invalid_pipeline: unknown pipeline '{}'; choose one of: {}",
                request.pipeline,
                crate::decisions::op_chain::PIPELINES.join(", ")
            )));
        }
        record.route.pipeline = Some(request.pipeline).filter(|p| !p.is_empty());
        record.route.approvals = request.approvals;
        crate::store::write_atomic(&self.index_path(&run_id), record.output_dir.as_bytes())
            .map_err(|e| Status::internal(e.to_string()))?;
        self.persist_and_emit(&record, "snapshot", &record.milestone, "submitted");
        self.start(RunSlot::new(record.clone()));
        Ok(record)
    }

    fn start(self: &Arc<Self>, slot: Arc<RunSlot>) {
        let run_id = slot.snapshot().run_id;
        self.runs.lock().unwrap().insert(run_id, slot.clone());
        tokio::spawn(run::drive(self.clone(), slot));
    }

    pub fn answer(
        self: &Arc<Self>,
        run_id: &str,
        gate_id: &str,
        branch_text: &str,
        answered_by: &'static str,
    ) -> Result<RunRecord, Status> {
        let branch = crate::decisions::restructure::Branch::parse(branch_text).ok_or_else(|| {
            Status::invalid_argument(format!("invalid_restructure_branch: unknown branch '{branch_text}'"))
        })?;
        let record = self.load(run_id).ok_or_else(|| Status::not_found(format!("run_not_found: {run_id}")))?;
        let gate = record.gate.clone().filter(|_| record.state == RunState::AwaitingDecision).ok_or_else(|| {
            Status::failed_precondition(format!(
                "no_open_gate: run {run_id} is {:?}, not awaiting a decision",
                record.state
            ))
        })?;
        if !gate_id.is_empty() && gate_id != gate.id {
            return Err(Status::failed_precondition(format!(
                "no_open_gate: the open gate is {}, not {gate_id}",
                gate.id
            )));
        }
        if !gate.branches.iter().any(|b| b == branch_text) {
            return Err(Status::invalid_argument(format!(
                "invalid_restructure_branch: '{branch_text}' is not offered; choose one of {}",
                gate.branches.join(", ")
            )));
        }
        match self.slot(run_id) {
            Some(slot) => {
                let _ = slot.answer_tx.send(Answer { branch, answered_by });
            }
            None => {
                // Resume a run that an earlier daemon left at the gate.
                let mut resumed = record.clone();
                resumed.gate = None;
                resumed.route.restructure_branch = Some(branch.as_str().into());
                resumed.route.decision_source = Some(answered_by.into());
                self.start(RunSlot::new(resumed));
            }
        }
        Ok(self.load(run_id).unwrap_or(record))
    }

    pub fn cancel(&self, run_id: &str) -> Result<RunRecord, Status> {
        let slot = self
            .slot(run_id)
            .ok_or_else(|| Status::not_found(format!("run_not_found: {run_id} is not active in this daemon")))?;
        slot.cancelled.store(true, std::sync::atomic::Ordering::SeqCst);
        Ok(slot.snapshot())
    }

    /// Stop every executor (daemon or embedded-mode exit). Connected ones close their stream
    /// once the request arrives: wait for that (up to a grace), or the daemon's sockets could
    /// close first and an external executor (Kit) would see a lost connection, not a shutdown.
    pub async fn shutdown(&self) {
        self.hub.shutdown_all("daemon shutting down");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while !self.hub.connected().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut children: Vec<_> = std::mem::take(&mut *self.children.lock().unwrap());
        children.extend(std::mem::take(&mut *self.workers.lock().unwrap()).into_values());
        stop_children(children, Duration::from_secs(3)).await;
    }
}

/// Wait for executors that were asked to shut down; kill those still running after `grace`.
async fn stop_children(children: Vec<tokio::process::Child>, grace: Duration) {
    for mut child in children {
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
}

pub fn to_proto(r: &RunRecord) -> proto::Run {
    let state = match r.state {
        RunState::Queued => proto::RunState::Queued,
        RunState::Running => proto::RunState::Running,
        RunState::AwaitingDecision => proto::RunState::AwaitingDecision,
        RunState::Completed => proto::RunState::Completed,
        RunState::Failed => proto::RunState::Failed,
        RunState::Blocked => proto::RunState::Blocked,
        RunState::Cancelled => proto::RunState::Cancelled,
    };
    proto::Run {
        run_id: r.run_id.clone(),
        stage_path: r.stage_path.clone(),
        output_dir: r.output_dir.clone(),
        state: state as i32,
        milestone: r.milestone.clone(),
        gate: r.gate.as_ref().map(|g| proto::Gate {
            id: g.id.clone(),
            question: g.question.clone(),
            branches: g.branches.clone(),
            recommended: g.recommended.clone().unwrap_or_default(),
            evidence_json: g.evidence.to_string(),
        }),
        code: r.code.clone(),
        message: r.message.clone(),
        report_path: r.report_path.clone(),
        output_stage_path: r.output_stage_path.clone(),
        verdict: r.verdict.clone(),
        workflow_mode: r.workflow_mode.clone(),
        phases: r
            .phases
            .iter()
            .map(|p| proto::PhaseRecord {
                milestone: p.milestone.clone(),
                status: p.status.clone(),
                note: p.note.clone(),
                seconds: p.seconds,
                artifacts: p.artifacts.clone(),
            })
            .collect(),
        created_at: r.created_at.clone(),
    }
}

/// Serve both gRPC services on `listener` until the process ends. Also reaps silent executors.
pub fn serve(
    core: Arc<Core>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let address = listener.local_addr()?;
    let _ = core.address.set(address);
    let reaper = core.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            reaper.hub.reap_silent();
        }
    });
    let service = crate::service::Service { core };
    let handle = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .add_service(proto::run_service_server::RunServiceServer::new(service.clone()))
            // Table chunks from the facts task run to a few MB; leave ample headroom.
            .add_service(
                proto::executor_service_server::ExecutorServiceServer::new(service).max_decoding_message_size(64 << 20),
            )
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
        if let Err(e) = result {
            tracing::error!("gRPC server stopped: {e}");
        }
    });
    Ok((address, handle))
}
