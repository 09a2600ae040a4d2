//! The gRPC services: thin adapters from the proto contract onto [`crate::core::Core`]
//! (RunService for clients, ExecutorService for executors), the conversion of runs to their
//! wire form, and the server that serves both.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Gate, Role, Tokens};
use crate::core::{Core, Refusal};
use crate::proto::{self, executor_message};
use crate::record::{EventKind, RunEvent, RunRecord, RunState, Submission};

#[derive(Clone)]
pub struct Service {
    pub core: Arc<Core>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::RunEvent, Status>> + Send>>;

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Self {
        r.outcome.status(r.message)
    }
}

fn submission(r: proto::SubmitRunRequest) -> Submission {
    let given = |s: String| Some(s).filter(|s| !s.is_empty());
    Submission {
        stage_path: r.stage_path,
        output_dir: r.output_dir,
        restructure_branch: given(r.restructure_branch),
        requested_operations: r.requested_operations,
        assess_only: r.assess_only,
        approve_full_validation: r.approve_full_validation,
        pipeline: given(r.pipeline),
        approvals: r.approvals,
        goal: given(r.goal),
        budget_seconds: Some(r.budget_seconds).filter(|s| *s > 0.0),
        passes: r.passes,
        runtime: given(r.runtime),
        runtime_chosen_by: given(r.runtime_chosen_by),
        force: r.force,
        priority: r.priority,
    }
}

fn not_found(run_id: &str) -> Status {
    crate::outcome::Outcome::RunNotFound.status(run_id)
}

#[tonic::async_trait]
impl proto::run_service_server::RunService for Service {
    async fn submit_run(&self, request: Request<proto::SubmitRunRequest>) -> Result<Response<proto::Run>, Status> {
        Ok(Response::new(to_proto(&self.core.submit(submission(request.into_inner()))?)))
    }

    async fn get_run(&self, request: Request<proto::GetRunRequest>) -> Result<Response<proto::Run>, Status> {
        let id = request.into_inner().run_id;
        let record = self.core.load(&id).ok_or_else(|| not_found(&id))?;
        Ok(Response::new(to_proto(&record)))
    }

    async fn list_runs(&self, _: Request<proto::ListRunsRequest>) -> Result<Response<proto::ListRunsResponse>, Status> {
        Ok(Response::new(proto::ListRunsResponse { runs: self.core.list().iter().map(to_proto).collect() }))
    }

    type WatchRunStream = EventStream;

    async fn watch_run(
        &self,
        request: Request<proto::WatchRunRequest>,
    ) -> Result<Response<Self::WatchRunStream>, Status> {
        let id = request.into_inner().run_id;
        let mut events = self.core.subscribe();
        let record = self.core.load(&id).ok_or_else(|| not_found(&id))?;
        let snapshot = RunEvent {
            run_id: id.clone(),
            kind: EventKind::Snapshot,
            milestone: record.milestone.clone(),
            message: String::new(),
            fraction: -1.0,
            run: Some(record.clone()),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = tx.send(Ok(event_to_proto(&snapshot)));
        if !record.state.is_terminal() {
            tokio::spawn(async move {
                loop {
                    match events.recv().await {
                        Ok(event) if event.run_id == id => {
                            let done = event.kind == EventKind::Finished;
                            if tx.send(Ok(event_to_proto(&event))).is_err() || done {
                                return;
                            }
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    }
                }
            });
        }
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    async fn answer_gate(&self, request: Request<proto::AnswerGateRequest>) -> Result<Response<proto::Run>, Status> {
        let r = request.into_inner();
        Ok(Response::new(to_proto(&self.core.answer(&r.run_id, &r.gate_id, &r.branch, "api")?)))
    }

    async fn cancel_run(&self, request: Request<proto::CancelRunRequest>) -> Result<Response<proto::Run>, Status> {
        Ok(Response::new(to_proto(&self.core.cancel(&request.into_inner().run_id)?)))
    }
}

#[tonic::async_trait]
impl proto::executor_service_server::ExecutorService for Service {
    type AttachStream = Pin<Box<dyn Stream<Item = Result<proto::DaemonMessage, Status>> + Send>>;

    async fn attach(
        &self,
        request: Request<Streaming<proto::ExecutorMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(proto::ExecutorMessage { body: Some(executor_message::Body::Hello(hello)) }) => hello,
            _ => return Err(Status::invalid_argument("an executor must say hello first")),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let id = self.core.hub.register(hello, tx);
        let core = self.core.clone();
        tokio::spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(message)) => core.hub.on_message(&id, message),
                    Ok(None) => return core.hub.unregister(&id, "executor closed its stream"),
                    Err(status) => return core.hub.unregister(&id, &format!("connection lost: {}", status.message())),
                }
            }
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}

fn event_to_proto(e: &RunEvent) -> proto::RunEvent {
    proto::RunEvent {
        run_id: e.run_id.clone(),
        kind: e.kind.as_str().into(),
        milestone: e.milestone.clone(),
        message: e.message.clone(),
        fraction: e.fraction,
        run: e.run.as_ref().map(to_proto),
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
        verdict: r.verdict.map(|v| v.as_str().to_string()).unwrap_or_default(),
        workflow_mode: r.workflow_mode.map(|m| m.as_str().to_string()).unwrap_or_default(),
        phases: r
            .phases
            .iter()
            .map(|p| proto::PhaseRecord {
                milestone: p.milestone.clone(),
                status: p.status.as_str().into(),
                note: p.note.clone(),
                seconds: p.seconds,
                artifacts: p.artifacts.clone(),
                expected_seconds: p.expected_seconds,
            })
            .collect(),
        created_at: r.created_at.clone(),
        markdown_report_path: report_file(r, |f| f.markdown),
        html_report_path: report_file(r, |f| f.html),
    }
}

/// A report file of a run, once its report is written ("" before).
fn report_file(r: &RunRecord, pick: fn(crate::report::ReportFiles) -> String) -> String {
    if r.report_path.is_empty() {
        String::new()
    } else {
        pick(crate::report::paths(&r.workspace()))
    }
}

/// What guards the daemon's port: the tokens every call must carry and, when given, the TLS
/// identity it serves with.
#[derive(Clone)]
pub struct Security {
    pub tokens: Arc<Tokens>,
    pub tls: Option<tonic::transport::ServerTlsConfig>,
}

impl Security {
    /// Ephemeral tokens and no TLS: the embedded daemon on loopback.
    pub fn ephemeral() -> Self {
        Self { tokens: Arc::new(Tokens::ephemeral()), tls: None }
    }
}

/// Serve both gRPC services on `listener` until the process ends, each behind its role's token.
/// Also reaps silent executors.
pub fn serve(
    core: Arc<Core>,
    listener: tokio::net::TcpListener,
    security: Security,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let address = listener.local_addr()?;
    core.set_address(address);
    let reaper = core.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            reaper.hub.reap_silent();
        }
    });
    let service = Service { core };
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = security.tls {
        builder = builder
            .tls_config(tls)
            .map_err(|e| anyhow::anyhow!("{}: {e}", crate::outcome::Outcome::TlsConfigInvalid))?;
    }
    let runs = InterceptedService::new(
        proto::run_service_server::RunServiceServer::new(service.clone()),
        Gate::new(security.tokens.clone(), Role::Client),
    );
    // Table chunks from the facts task run to a few MB; leave ample headroom.
    let executors = InterceptedService::new(
        proto::executor_service_server::ExecutorServiceServer::new(service).max_decoding_message_size(64 << 20),
        Gate::new(security.tokens, Role::Executor),
    );
    let router = builder.add_service(runs).add_service(executors);
    let handle = tokio::spawn(async move {
        let result = router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)).await;
        if let Err(e) = result {
            tracing::error!("gRPC server stopped: {e}");
        }
    });
    Ok((address, handle))
}
