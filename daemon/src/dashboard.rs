//! The daemon's web page (`usdtune daemon --dashboard ADDR`): every run with its live phase
//! progress, the connected executors with what they advertise and the task each holds, the
//! daemon's budget, a link to each run's HTML report, and an open gate's branches as buttons.
//!
//! Read-mostly and behind the same client token as the gRPC RunService: a page that lists
//! stage paths is not public. The page itself (`/`) is a static shell; it asks for the token
//! once, keeps it in the tab's session storage and sends it as `authorization: Bearer` on
//! every API call. Report links cannot carry a header, so the page also sets a same-site
//! cookie that `/runs/{id}/report` accepts; answering a gate (the one write) takes the header
//! only, so another site cannot make the browser answer one.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::auth::{Role, Tokens};
use crate::core::Core;
use crate::outcome::Outcome;
use crate::record::RunRecord;

const PAGE: &str = include_str!("dashboard.html");
/// The cookie the page sets for report links (same value as the bearer token).
const COOKIE: &str = "usdtune_token";

#[derive(Clone)]
struct Served {
    core: Arc<Core>,
    tokens: Arc<Tokens>,
}

/// Serve the dashboard on `listener` until the process ends.
pub fn serve(
    core: Arc<Core>,
    tokens: Arc<Tokens>,
    listener: tokio::net::TcpListener,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let address = listener.local_addr()?;
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/api/state", get(state))
        .route("/api/runs/{run_id}/decide", post(decide))
        .route("/runs/{run_id}/report", get(report))
        .with_state(Served { core, tokens });
    let handle = tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service).await {
            tracing::error!("dashboard stopped: {e}");
        }
    });
    Ok((address, handle))
}

/// A refusal as the page reads it: the stable code and what to do.
fn refused(status: StatusCode, outcome: Outcome, message: impl Into<String>) -> Response {
    (status, Json(json!({"code": outcome.code(), "message": message.into()}))).into_response()
}

/// The refusal of a request without the client token in its `authorization` header or, where
/// `cookie_too`, in the page's cookie; None when the token is there.
fn refusal(served: &Served, headers: &HeaderMap, remote: SocketAddr, cookie_too: bool) -> Option<Response> {
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let from_cookie = || {
        let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
        cookies.split(';').find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('=')).map(|t| format!("Bearer {t}"))
    };
    let presented = bearer.or_else(|| if cookie_too { from_cookie() } else { None });
    let (outcome, message) = served.tokens.admit(Role::Client, presented.as_deref(), &remote.to_string()).err()?;
    let status = if outcome == Outcome::TokenRoleRefused { StatusCode::FORBIDDEN } else { StatusCode::UNAUTHORIZED };
    Some(refused(status, outcome, message))
}

/// One run as the page shows it, with how its task attempts ended (the database's rows).
fn run_view(r: &RunRecord, tasks: &[crate::rundb::TaskRow]) -> Value {
    let count = |state: crate::rundb::TaskState| tasks.iter().filter(|t| t.state == state.as_str()).count();
    let gate = r
        .gate
        .as_ref()
        .filter(|_| r.state == crate::record::RunState::AwaitingDecision)
        .map(|g| json!({"id": g.id, "question": g.question, "branches": g.branches, "recommended": g.recommended}));
    let html = (!r.report_path.is_empty()).then(|| crate::report::paths(&r.workspace()).html);
    json!({
        "run_id": r.run_id,
        "state": r.state,
        "code": r.code,
        "message": r.message,
        "milestone": r.milestone,
        "stage_path": r.stage_path,
        "output_dir": r.output_dir,
        "created_at": r.created_at,
        "verdict": r.verdict.map(|v| v.as_str()),
        "phases": r.phases.iter().map(|p| json!({
            "milestone": p.milestone,
            "status": p.status.as_str(),
            "seconds": p.seconds,
            "expected_seconds": p.expected_seconds,
            "note": p.note,
        })).collect::<Vec<_>>(),
        "gate": gate,
        "tasks": {
            "attempts": tasks.len(),
            "lost": count(crate::rundb::TaskState::Lost),
            "void": count(crate::rundb::TaskState::Void),
        },
        "report": html.filter(|p| std::path::Path::new(p).is_file()).map(|_| format!("/runs/{}/report", r.run_id)),
    })
}

async fn state(
    State(served): State<Served>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refusal(&served, &headers, remote, false) {
        return refusal;
    }
    let core = served.core.clone();
    // Listing reads the database: off the async workers.
    let runs = tokio::task::spawn_blocking(move || {
        core.list().into_iter().rev().map(|r| run_view(&r, &core.db.tasks_of(&r.run_id))).collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let (cores, available_memory) = crate::resources::cpu_and_available_memory();
    let max_workers = served.core.config.max_workers;
    let budget = served.core.budget();
    let data_dir = served.core.config.data_dir.clone();
    Json(json!({
        "runs": runs,
        "executors": served.core.hub.overview(),
        "budget": {
            "cores": cores,
            "available_memory_bytes": available_memory,
            "phase4_workers_per_run": if max_workers == 0 { cores } else { max_workers },
            // 0: no limit (`usdtune daemon --max-runs`).
            "max_runs": budget.max_runs,
            "runs_at_once": budget.run_shares(),
            "memory_budget_bytes": budget.memory_bytes,
            "data_dir_free_bytes": crate::resources::free_disk_bytes(&data_dir),
            // Shown, reserved by nobody: no task kind uses the GPU.
            "gpus": crate::resources::nvml_gpus(),
        },
    }))
    .into_response()
}

async fn decide(
    State(served): State<Served>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refusal) = refusal(&served, &headers, remote, false) {
        return refusal;
    }
    let choice = body.get("choice").and_then(Value::as_str).unwrap_or_default();
    let gate_id = body.get("gate_id").and_then(Value::as_str).unwrap_or_default();
    match served.core.answer(&run_id, gate_id, choice, "api") {
        Ok(record) => Json(run_view(&record, &served.core.db.tasks_of(&record.run_id))).into_response(),
        Err(refusal) => refused(StatusCode::CONFLICT, refusal.outcome, refusal.message),
    }
}

async fn report(
    State(served): State<Served>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(run_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refusal) = refusal(&served, &headers, remote, true) {
        return refusal;
    }
    let Some(record) = served.core.load(&run_id) else {
        return refused(StatusCode::NOT_FOUND, Outcome::RunNotFound, run_id);
    };
    let html = crate::report::paths(&record.workspace()).html;
    match (record.report_path.is_empty(), tokio::fs::read_to_string(&html).await) {
        (false, Ok(text)) => Html(text).into_response(),
        _ => refused(StatusCode::NOT_FOUND, Outcome::RunNotFound, format!("run {run_id} has no HTML report yet")),
    }
}
