//! The gRPC services: thin adapters from the proto contract onto [`crate::daemon::Core`].

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::daemon::{to_proto, Core};
use crate::proto::{self, executor_message};

#[derive(Clone)]
pub struct Service {
    pub core: Arc<Core>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::RunEvent, Status>> + Send>>;

#[tonic::async_trait]
impl proto::run_service_server::RunService for Service {
    async fn submit_run(&self, request: Request<proto::SubmitRunRequest>) -> Result<Response<proto::Run>, Status> {
        Ok(Response::new(to_proto(&self.core.submit(request.into_inner())?)))
    }

    async fn get_run(&self, request: Request<proto::GetRunRequest>) -> Result<Response<proto::Run>, Status> {
        let id = request.into_inner().run_id;
        let record = self.core.load(&id).ok_or_else(|| Status::not_found(format!("run_not_found: {id}")))?;
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
        let record = self.core.load(&id).ok_or_else(|| Status::not_found(format!("run_not_found: {id}")))?;
        let snapshot = proto::RunEvent {
            run_id: id.clone(),
            kind: "snapshot".into(),
            milestone: record.milestone.clone(),
            message: String::new(),
            fraction: -1.0,
            run: Some(to_proto(&record)),
        };
        let stream = async_stream(snapshot, record.state.is_terminal(), move |tx| async move {
            loop {
                match events.recv().await {
                    Ok(event) if event.run_id == id => {
                        let done = event.kind == "finished";
                        if tx.send(Ok(event)).is_err() || done {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }

    async fn answer_gate(&self, request: Request<proto::AnswerGateRequest>) -> Result<Response<proto::Run>, Status> {
        let r = request.into_inner();
        Ok(Response::new(to_proto(&self.core.answer(&r.run_id, &r.gate_id, &r.branch, "api")?)))
    }

    async fn cancel_run(&self, request: Request<proto::CancelRunRequest>) -> Result<Response<proto::Run>, Status> {
        Ok(Response::new(to_proto(&self.core.cancel(&request.into_inner().run_id)?)))
    }
}

/// A stream that yields `first`, then whatever `feed` sends (unless `only_first`).
fn async_stream<F, Fut>(first: proto::RunEvent, only_first: bool, feed: F) -> EventStream
where
    F: FnOnce(tokio::sync::mpsc::UnboundedSender<Result<proto::RunEvent, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let _ = tx.send(Ok(first));
    if !only_first {
        tokio::spawn(feed(tx));
    }
    Box::pin(UnboundedReceiverStream::new(rx))
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
