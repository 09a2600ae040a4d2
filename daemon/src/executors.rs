//! The executor hub: who is connected, what each can do, and the lease of every task.
//!
//! A task is leased to one idle executor that declares its kind. The lease ends with the
//! executor's result, or with `executor_lost` when its stream closes (process killed,
//! connection dropped) or when it stays silent longer than [`ExecutorHub::lost_after`]
//! ([`ExecutorHub::busy_lost_after`] while it runs a task): a run never waits on a dead
//! executor.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::outcome::Outcome;
use crate::proto::{self, daemon_message, executor_message, DaemonMessage};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskFailure {
    pub code: String,
    pub message: String,
    pub path: String,
}

impl TaskFailure {
    pub fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Self { code: outcome.code().to_string(), message: message.into(), path: String::new() }
    }
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if !self.path.is_empty() && !self.message.contains(&self.path) {
            write!(f, " ({})", self.path)?;
        }
        Ok(())
    }
}

/// What a task cost the executor: CPU (its child processes included) and peak memory.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TaskUsage {
    pub cpu_seconds: f64,
    pub peak_rss_kb: i64,
}

/// The executor runtimes a run can ask for (`Hello.runtime`, `--runtime`): plain CPython, or
/// headless Kit with the executor extension.
pub const RUNTIME_STANDALONE: &str = "standalone";
pub const RUNTIME_KIT: &str = "kit";
pub const RUNTIMES: [&str; 2] = [RUNTIME_STANDALONE, RUNTIME_KIT];

pub type Outbox = mpsc::UnboundedSender<Result<DaemonMessage, Status>>;
pub type ProgressSink = mpsc::UnboundedSender<(f64, String)>;

struct Connection {
    hello: proto::Hello,
    reach: Reach,
    outbox: Outbox,
    busy: Option<String>,
    last_seen: Instant,
}

/// Task parameters that name files or folders: what an executor must reach to take the task.
const PATH_PARAMS: [&str; 7] =
    ["stage_path", "output_path", "output_dir", "output_root", "source_stage", "baseline", "output"];

/// The paths an executor can reach, from its Hello: the folders it can read and write (in its
/// own view; none listed means every path) and how the daemon's paths read there
/// (`DAEMON_PREFIX=EXECUTOR_PREFIX`, e.g. `/mnt/share=//server/share`). Tasks are placed on
/// executors that reach every path they name; their parameters go out through the map and
/// their results come back through it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reach {
    roots: Vec<String>,
    map: Vec<(String, String)>,
}

impl Reach {
    pub fn of(hello: &proto::Hello) -> Self {
        let map = hello
            .path_map
            .iter()
            .filter_map(|entry| entry.split_once('='))
            .map(|(daemon, executor)| (trim_slash(daemon), trim_slash(executor)))
            .collect();
        Self { roots: hello.path_roots.iter().map(|r| trim_slash(r)).collect(), map }
    }

    /// A daemon path as this executor reads it.
    pub fn to_executor(&self, path: &str) -> String {
        rewrite(path, self.map.iter().map(|(d, e)| (d.as_str(), e.as_str())))
    }

    /// An executor's path as the daemon reads it.
    pub fn to_daemon(&self, path: &str) -> String {
        rewrite(path, self.map.iter().map(|(d, e)| (e.as_str(), d.as_str())))
    }

    pub fn sees(&self, daemon_path: &str) -> bool {
        let here = self.to_executor(daemon_path);
        self.roots.is_empty() || self.roots.iter().any(|root| here == *root || is_under(&here, root))
    }

    /// Every string of a JSON value rewritten by `one` (parameters out, results back).
    fn map_strings(&self, value: &mut Value, one: &dyn Fn(&Self, &str) -> String) {
        if self.map.is_empty() {
            return;
        }
        match value {
            Value::String(text) => *text = one(self, text),
            Value::Array(items) => items.iter_mut().for_each(|v| self.map_strings(v, one)),
            Value::Object(fields) => fields.values_mut().for_each(|v| self.map_strings(v, one)),
            _ => {}
        }
    }
}

fn trim_slash(path: &str) -> String {
    let trimmed = path.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        trimmed.into()
    }
}

fn is_under(path: &str, root: &str) -> bool {
    root == "/" || path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'))
}

/// `path` with the first matching prefix (whole components) replaced.
fn rewrite<'a>(path: &str, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    for (from, to) in pairs {
        if path == from {
            return to.to_string();
        }
        if is_under(path, from) && from != "/" {
            return format!("{to}{}", &path[from.len()..]);
        }
    }
    path.to_string()
}

/// The file paths a task's parameters name.
fn task_paths(params: &Value) -> Vec<&str> {
    PATH_PARAMS
        .iter()
        .filter_map(|key| params.get(*key).and_then(Value::as_str))
        .filter(|p| p.starts_with('/'))
        .collect()
}

struct Lease {
    executor_id: String,
    kind: String,
    reply: oneshot::Sender<(Result<Value, TaskFailure>, TaskUsage)>,
    progress: Option<ProgressSink>,
    /// Table chunks streamed ahead of the result, by table name, in arrival order.
    records: HashMap<String, Vec<String>>,
    /// Their bytes so far, held against [`ExecutorHub::max_records_bytes`].
    records_bytes: usize,
}

/// The key under which a task's streamed tables reach its caller: `result["records"][table]`
/// is the list of chunks (each a JSON object of equal-length columns), in arrival order.
pub const RECORDS_KEY: &str = "records";

/// Take the streamed tables out of a task result and return one table's chunks (none when
/// it streamed none): they are decided on, not stored with the result.
pub fn take_records(result: &mut Value, table: &str) -> Vec<String> {
    result
        .as_object_mut()
        .and_then(|o| o.remove(RECORDS_KEY))
        .and_then(|mut r| serde_json::from_value::<Vec<String>>(r[table].take()).ok())
        .unwrap_or_default()
}

/// The worker number of executor `id` in `pool` (ids `<pool>-<n>`), None when not a member.
pub fn pool_member(id: &str, pool: &str) -> Option<usize> {
    id.strip_prefix(pool)?.strip_prefix('-')?.parse().ok()
}

/// When a leased task is given up on instead of awaited: past its deadline, or as soon as its
/// run is cancelled. The executor is told (`CancelTask`) and stays busy until it answers.
#[derive(Clone, Default)]
pub struct TaskLimits {
    pub deadline: Option<Duration>,
    pub cancel: Option<Arc<AtomicBool>>,
}

impl TaskLimits {
    /// Resolves with the failure that ends the task; never, without limits.
    async fn reached(&self, kind: &str) -> TaskFailure {
        let started = Instant::now();
        loop {
            if self.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)) {
                return TaskFailure::new(Outcome::Cancelled, format!("the run was cancelled during task '{kind}'"));
            }
            if let Some(deadline) = self.deadline.filter(|d| started.elapsed() >= *d) {
                return TaskFailure::new(
                    Outcome::TaskDeadlineExceeded,
                    format!(
                        "task '{kind}' ran past its deadline of {:.0}s (its expected cost for this stage, with a \
                         wide margin) and was stopped",
                        deadline.as_secs_f64()
                    ),
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[derive(Default)]
struct HubState {
    connections: HashMap<String, Connection>,
    leases: HashMap<String, Lease>,
}

pub struct ExecutorHub {
    state: Mutex<HubState>,
    /// Silence longer than this (no heartbeat, no message) counts as a lost executor.
    pub lost_after: Duration,
    /// The same for an executor inside a task. A native call that holds the GIL (a
    /// usd-optimize analysis of a million-prim stage) silences its heartbeats for minutes;
    /// a dead process still closes its stream at once, so only a hang waits this long.
    pub busy_lost_after: Duration,
    /// Most bytes of table chunks one task may stream: past it the task fails, so an executor
    /// cannot grow the daemon without bound. The largest legitimate table, the facts of a
    /// 1M-prim stage, is a few hundred MB.
    pub max_records_bytes: usize,
    /// Told (task id, executor id) when a task is leased: the daemon's durable record of leases.
    lease_hook: std::sync::OnceLock<LeaseHook>,
}

type LeaseHook = Box<dyn Fn(&str, &str) + Send + Sync>;

impl Default for ExecutorHub {
    fn default() -> Self {
        Self::new(Duration::from_secs(20), Duration::from_secs(30 * 60))
    }
}

impl ExecutorHub {
    pub fn new(lost_after: Duration, busy_lost_after: Duration) -> Self {
        Self {
            state: Mutex::new(HubState::default()),
            lost_after,
            busy_lost_after,
            max_records_bytes: 2 << 30,
            lease_hook: std::sync::OnceLock::new(),
        }
    }

    /// Call `hook` with (task id, executor id) whenever a task is leased (set once).
    pub fn on_lease(&self, hook: LeaseHook) {
        let _ = self.lease_hook.set(hook);
    }

    /// The lease of `task_id` when `executor_id` holds it: an executor speaks for its own task
    /// only (another's progress, chunks or result would be taken as that task's).
    fn lease_of<'a>(state: &'a mut HubState, task_id: &str, executor_id: &str) -> Option<&'a mut Lease> {
        let lease = state.leases.get_mut(task_id)?;
        if lease.executor_id == executor_id {
            Some(lease)
        } else {
            tracing::warn!(executor = %executor_id, task = %task_id, holder = %lease.executor_id,
                           "ignored a message about a task another executor holds");
            None
        }
    }

    /// Register a connected executor. Returns the id it is known by (unique).
    pub fn register(&self, hello: proto::Hello, outbox: Outbox) -> String {
        let mut state = self.state.lock().unwrap();
        let mut id =
            if hello.executor_id.is_empty() { format!("executor-{}", hello.pid) } else { hello.executor_id.clone() };
        while state.connections.contains_key(&id) {
            id.push('+');
        }
        tracing::info!(executor = %id, runtime = %hello.runtime, so = %hello.usd_optimize_version, "executor connected");
        let reach = Reach::of(&hello);
        state
            .connections
            .insert(id.clone(), Connection { hello, reach, outbox, busy: None, last_seen: Instant::now() });
        id
    }

    /// Forget an executor and fail whatever it was doing.
    pub fn unregister(&self, executor_id: &str, reason: &str) {
        let mut state = self.state.lock().unwrap();
        if state.connections.remove(executor_id).is_none() {
            return;
        }
        if state.leases.values().any(|l| l.executor_id == executor_id) {
            tracing::warn!(executor = %executor_id, %reason, "executor lost with a task in flight");
        } else {
            tracing::info!(executor = %executor_id, %reason, "executor disconnected");
        }
        let lost: Vec<String> =
            state.leases.iter().filter(|(_, l)| l.executor_id == executor_id).map(|(id, _)| id.clone()).collect();
        for task_id in lost {
            let lease = state.leases.remove(&task_id).expect("listed above");
            let _ = lease.reply.send((
                Err(TaskFailure::new(
                    Outcome::ExecutorLost,
                    format!(
                        "executor {executor_id} was lost during task '{}' ({reason}); the task did not complete",
                        lease.kind
                    ),
                )),
                TaskUsage::default(),
            ));
        }
    }

    pub fn on_message(&self, executor_id: &str, message: proto::ExecutorMessage) {
        let mut state = self.state.lock().unwrap();
        if let Some(conn) = state.connections.get_mut(executor_id) {
            conn.last_seen = Instant::now();
        }
        match message.body {
            Some(executor_message::Body::Progress(p)) => {
                if let Some(sink) =
                    Self::lease_of(&mut state, &p.task_id, executor_id).and_then(|l| l.progress.as_ref())
                {
                    let _ = sink.send((p.fraction, p.message));
                }
            }
            Some(executor_message::Body::Records(chunk)) => {
                let Some(lease) = Self::lease_of(&mut state, &chunk.task_id, executor_id) else { return };
                lease.records_bytes += chunk.columns_json.len() + chunk.table.len();
                if lease.records_bytes <= self.max_records_bytes {
                    lease.records.entry(chunk.table).or_default().push(chunk.columns_json);
                    return;
                }
                let lease = state.leases.remove(&chunk.task_id).expect("found above");
                let message = format!(
                    "task '{}' streamed more than {} MB of table chunks; it was failed before the daemon held more",
                    lease.kind,
                    self.max_records_bytes >> 20
                );
                tracing::warn!(executor = %executor_id, "{message}");
                let _ = lease
                    .reply
                    .send((Err(TaskFailure::new(Outcome::ExecutorProtocolError, message)), TaskUsage::default()));
            }
            Some(executor_message::Body::Result(result)) => {
                // Its own task answered frees the executor, leased or abandoned (a cancelled or
                // timed-out task's late answer); the result counts only for the lease it holds.
                if let Some(conn) = state.connections.get_mut(executor_id) {
                    if conn.busy.as_deref() == Some(result.task_id.as_str()) {
                        conn.busy = None;
                    }
                }
                if Self::lease_of(&mut state, &result.task_id, executor_id).is_none() {
                    return;
                }
                let reach = state.connections.get(executor_id).map(|c| c.reach.clone()).unwrap_or_default();
                if let Some(lease) = state.leases.remove(&result.task_id) {
                    let outcome = if result.ok {
                        serde_json::from_str::<Value>(&result.result_json)
                            .map_err(|e| {
                                TaskFailure::new(Outcome::ExecutorProtocolError, format!("result is not JSON: {e}"))
                            })
                            .map(|mut value| {
                                reach.map_strings(&mut value, &Reach::to_daemon);
                                if !lease.records.is_empty() {
                                    // Moved, not copied: a million-prim table is a few hundred MB.
                                    let tables = lease.records.into_iter().map(|(table, chunks)| {
                                        (table, Value::Array(chunks.into_iter().map(Value::String).collect()))
                                    });
                                    value[RECORDS_KEY] = Value::Object(tables.collect());
                                }
                                value
                            })
                    } else {
                        Err(TaskFailure {
                            code: result.error_code,
                            message: result.error_message,
                            path: reach.to_daemon(&result.error_path),
                        })
                    };
                    let usage = TaskUsage { cpu_seconds: result.cpu_seconds, peak_rss_kb: result.peak_rss_kb };
                    let _ = lease.reply.send((outcome, usage));
                }
            }
            Some(executor_message::Body::Heartbeat(_)) | Some(executor_message::Body::Hello(_)) | None => {}
        }
    }

    /// Drop executors that stopped talking; called periodically by the daemon.
    pub fn reap_silent(&self) {
        let silent: Vec<(String, Duration)> = {
            let state = self.state.lock().unwrap();
            state
                .connections
                .iter()
                .map(|(id, c)| (id, c, if c.busy.is_some() { self.busy_lost_after } else { self.lost_after }))
                .filter(|(_, c, limit)| c.last_seen.elapsed() > *limit)
                .map(|(id, _, limit)| (id.clone(), limit))
                .collect()
        };
        for (id, limit) in silent {
            self.unregister(&id, &format!("no heartbeat for {limit:?}"));
        }
    }

    /// Every connected executor with what it advertised and the task it holds (the dashboard's
    /// executors table), in id order.
    pub fn overview(&self) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        let mut ids: Vec<&String> = state.connections.keys().collect();
        ids.sort();
        ids.into_iter()
            .map(|id| {
                let c = &state.connections[id];
                let task = c.busy.as_ref().map(|task| {
                    let kind = state.leases.get(task).map_or("", |l| l.kind.as_str());
                    serde_json::json!({"task_id": task, "kind": kind})
                });
                serde_json::json!({
                    "executor_id": id,
                    "runtime": c.hello.runtime,
                    "usd_version": c.hello.usd_version,
                    "usd_optimize_version": c.hello.usd_optimize_version,
                    "python_version": c.hello.python_version,
                    "operations": c.hello.operations_available.len(),
                    "task_kinds": c.hello.task_kinds,
                    "pid": c.hello.pid,
                    "cpu_count": c.hello.cpu_count,
                    "memory_bytes": c.hello.memory_bytes,
                    "gpu": c.hello.gpu,
                    "path_roots": c.hello.path_roots,
                    "path_map": c.hello.path_map,
                    "task": task,
                    "seen_seconds_ago": (c.last_seen.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                })
            })
            .collect()
    }

    pub fn connected(&self) -> Vec<proto::Hello> {
        self.state.lock().unwrap().connections.values().map(|c| c.hello.clone()).collect()
    }

    pub fn hello_of(&self, executor_id: &str) -> Option<proto::Hello> {
        self.state.lock().unwrap().connections.get(executor_id).map(|c| c.hello.clone())
    }

    /// Lease a task to an idle executor that can run `kind`, waiting up to `wait` for one,
    /// and return its result. Returns the executor's id with the outcome and what it cost.
    pub async fn run_task(
        &self,
        kind: &str,
        params: &Value,
        progress: Option<ProgressSink>,
        wait: Duration,
    ) -> (String, Result<Value, TaskFailure>, TaskUsage) {
        let task_id = uuid::Uuid::new_v4().to_string();
        self.run_task_in(&task_id, None, None, kind, params, progress, wait, TaskLimits::default()).await
    }

    /// [`Self::run_task`] as task `task_id` (unique per attempt), on the executors of one pool
    /// only (ids `<pool>-…`), or on any when `pool` is None, of one runtime only when `runtime`
    /// names it (kit, standalone), given up on when `limits` say so.
    #[allow(clippy::too_many_arguments)]
    pub async fn run_task_in(
        &self,
        task_id: &str,
        pool: Option<&str>,
        runtime: Option<&str>,
        kind: &str,
        params: &Value,
        progress: Option<ProgressSink>,
        wait: Duration,
        limits: TaskLimits,
    ) -> (String, Result<Value, TaskFailure>, TaskUsage) {
        let in_pool = |id: &str| pool.is_none_or(|p| pool_member(id, p).is_some());
        let of_runtime = |hello: &proto::Hello| runtime.is_none_or(|r| hello.runtime == r);
        let capable = |id: &str, c: &Connection| {
            in_pool(id) && of_runtime(&c.hello) && c.hello.task_kinds.iter().any(|k| k == kind)
        };
        let paths = task_paths(params);
        let reaches = |c: &Connection| paths.iter().all(|p| c.reach.sees(p));
        let mut told_why = false;
        let deadline = Instant::now() + wait;
        let task_id = task_id.to_string();
        let (reply, outcome) = oneshot::channel();
        let mut reply = Some(reply);
        let executor_id = loop {
            {
                let mut state = self.state.lock().unwrap();
                let state = &mut *state;
                let idle =
                    state.connections.iter_mut().find(|(id, c)| capable(id, c) && c.busy.is_none() && reaches(c));
                if let Some((id, conn)) = idle {
                    let mut params = params.clone();
                    conn.reach.map_strings(&mut params, &Reach::to_executor);
                    let task = proto::Task {
                        task_id: task_id.clone(),
                        kind: kind.to_string(),
                        params_json: params.to_string(),
                    };
                    if conn.outbox.send(Ok(DaemonMessage { body: Some(daemon_message::Body::Task(task)) })).is_ok() {
                        conn.busy = Some(task_id.clone());
                        let id = id.clone();
                        state.leases.insert(
                            task_id.clone(),
                            Lease {
                                executor_id: id.clone(),
                                kind: kind.to_string(),
                                reply: reply.take().expect("sent once"),
                                progress,
                                records: HashMap::new(),
                                records_bytes: 0,
                            },
                        );
                        if let Some(hook) = self.lease_hook.get() {
                            hook(&task_id, &id);
                        }
                        break id;
                    }
                }
            }
            if limits.cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst)) {
                // Cancelled while it waited for an executor: nothing was leased, nothing to stop.
                let failure =
                    TaskFailure::new(Outcome::Cancelled, format!("the run was cancelled before task '{kind}' started"));
                return (String::new(), Err(failure), TaskUsage::default());
            }
            // Capable executors are connected, but none reaches the task's files: say so while
            // it waits, and fail with that reason.
            let unreachable = {
                let state = self.state.lock().unwrap();
                let mut ids: Vec<&str> =
                    state.connections.iter().filter(|(id, c)| capable(id, c)).map(|(id, _)| id.as_str()).collect();
                ids.sort();
                let reached = state.connections.iter().any(|(id, c)| capable(id, c) && reaches(c));
                let missing = paths.iter().find(|p| !state.connections.values().any(|c| c.reach.sees(p)));
                (!ids.is_empty() && !reached).then(|| {
                    let path = missing.or(paths.first()).copied().unwrap_or("");
                    format!("no connected executor reaches {path} (connected: {})", ids.join(", "))
                })
            };
            if let (Some(why), false) = (&unreachable, told_why) {
                told_why = true;
                let why = format!("{why}; waiting up to {}s for one that does", wait.as_secs());
                tracing::warn!(task = %kind, "{why}");
                if let Some(sink) = &progress {
                    let _ = sink.send((0.0, why));
                }
            }
            if Instant::now() >= deadline {
                let failure = match unreachable {
                    Some(why) => TaskFailure::new(
                        Outcome::PathNotReachable,
                        format!("{why}; waited {}s for one that does", wait.as_secs()),
                    ),
                    None => TaskFailure::new(
                        Outcome::NoExecutor,
                        format!("no executor able to run '{kind}' connected within {}s", wait.as_secs()),
                    ),
                };
                return (String::new(), Err(failure), TaskUsage::default());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (result, usage) = tokio::select! {
            done = outcome => done.unwrap_or_else(|_| {
                (Err(TaskFailure::new(Outcome::ExecutorLost, "the task's lease was dropped")), TaskUsage::default())
            }),
            failure = limits.reached(kind) => {
                self.abandon(&task_id);
                (Err(failure), TaskUsage::default())
            }
        };
        (executor_id, result, usage)
    }

    /// Give up on a task: its lease goes, its executor is told to stop it. The executor stays
    /// busy (gets no new task) until it answers or is gone.
    fn abandon(&self, task_id: &str) {
        let mut state = self.state.lock().unwrap();
        let Some(lease) = state.leases.remove(task_id) else { return };
        if let Some(conn) = state.connections.get(&lease.executor_id) {
            let cancel = proto::CancelTask { task_id: task_id.to_string() };
            let _ = conn.outbox.send(Ok(DaemonMessage { body: Some(daemon_message::Body::Cancel(cancel)) }));
        }
    }

    /// Ask every executor to finish (embedded mode exit).
    pub fn shutdown_all(&self, reason: &str) {
        self.shutdown_where(|_| true, reason);
    }

    /// Ask the executors whose id `matches` to finish.
    pub fn shutdown_where(&self, matches: impl Fn(&str) -> bool, reason: &str) {
        let state = self.state.lock().unwrap();
        for (_, conn) in state.connections.iter().filter(|(id, _)| matches(id)) {
            let _ = conn.outbox.send(Ok(DaemonMessage {
                body: Some(daemon_message::Body::Shutdown(proto::Shutdown { reason: reason.to_string() })),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(id: &str) -> proto::Hello {
        proto::Hello { executor_id: id.into(), task_kinds: vec!["probe".into()], ..Default::default() }
    }

    #[test]
    fn reach_maps_whole_components_and_judges_in_the_executors_view() {
        let reach = Reach::of(&proto::Hello {
            path_roots: vec!["/exec/view/".into()],
            path_map: vec!["/srv/share=/exec/view".into()],
            ..Default::default()
        });
        assert_eq!(reach.to_executor("/srv/share/a/stage.usd"), "/exec/view/a/stage.usd");
        assert_eq!(reach.to_executor("/srv/shared/x"), "/srv/shared/x", "a prefix is whole components");
        assert_eq!(reach.to_daemon("/exec/view/out/o.usdc"), "/srv/share/out/o.usdc");
        assert!(reach.sees("/srv/share/a/stage.usd"));
        assert!(!reach.sees("/srv/other/stage.usd") && !reach.sees("/exec/viewer/x"));
        assert!(Reach::default().sees("/anything"), "no roots listed: every path");
        // Parameters go out through the map, every string at any depth; prim paths stay.
        let mut params = serde_json::json!({"stage_path": "/srv/share/s.usd", "prims": ["/World", "/srv/share/t.usd"]});
        reach.map_strings(&mut params, &Reach::to_executor);
        assert_eq!(
            params,
            serde_json::json!({"stage_path": "/exec/view/s.usd", "prims": ["/World", "/exec/view/t.usd"]})
        );
    }

    #[tokio::test]
    async fn a_task_waits_for_an_executor_that_reaches_its_stage_then_fails_saying_why() {
        let hub = std::sync::Arc::new(ExecutorHub::default());
        let (tx, _rx) = mpsc::unbounded_channel();
        let elsewhere = proto::Hello { path_roots: vec!["/elsewhere".into()], ..hello("far") };
        hub.register(elsewhere, tx);
        let (progress, mut said) = mpsc::unbounded_channel();
        let params = serde_json::json!({"stage_path": "/data/stage.usd"});
        let (_, outcome, _) = hub
            .run_task_in(
                "t-far",
                None,
                None,
                "probe",
                &params,
                Some(progress),
                Duration::from_millis(300),
                TaskLimits::default(),
            )
            .await;
        let failure = outcome.unwrap_err();
        assert_eq!(failure.code, Outcome::PathNotReachable.code());
        assert!(failure.message.contains("/data/stage.usd") && failure.message.contains("far"), "{}", failure.message);
        assert!(said.try_recv().unwrap().1.contains("waiting up to"));
    }

    type TaskOutcome = (String, Result<Value, TaskFailure>, TaskUsage);
    /// (hub, executor id, what the executor receives, the task's outcome)
    type Leased = (
        std::sync::Arc<ExecutorHub>,
        String,
        mpsc::UnboundedReceiver<Result<DaemonMessage, Status>>,
        tokio::task::JoinHandle<TaskOutcome>,
    );

    /// A hub with one executor "a" and a probe task leased to it.
    fn leased_probe() -> Leased {
        let hub = std::sync::Arc::new(ExecutorHub::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let id = hub.register(hello("a"), tx);
        let task = tokio::spawn({
            let hub = hub.clone();
            async move { hub.run_task("probe", &serde_json::json!({}), None, Duration::from_secs(1)).await }
        });
        (hub, id, rx, task)
    }

    #[tokio::test]
    async fn lost_executor_fails_its_task_instead_of_hanging() {
        let (hub, id, mut rx, task) = leased_probe();
        assert!(rx.recv().await.is_some(), "task was sent");
        hub.unregister(&id, "stream closed");
        let (_, outcome, _) = task.await.unwrap();
        assert_eq!(outcome.unwrap_err().code, Outcome::ExecutorLost.code());
    }

    #[tokio::test]
    async fn result_completes_the_lease() {
        let (hub, id, mut rx, task) = leased_probe();
        let Some(Ok(DaemonMessage { body: Some(daemon_message::Body::Task(sent)) })) = rx.recv().await else {
            panic!()
        };
        let result = proto::TaskResult {
            task_id: sent.task_id,
            ok: true,
            result_json: "{\"x\":1}".into(),
            cpu_seconds: 1.5,
            peak_rss_kb: 2048,
            ..Default::default()
        };
        hub.on_message(&id, proto::ExecutorMessage { body: Some(executor_message::Body::Result(result)) });
        let (_, outcome, usage) = task.await.unwrap();
        assert_eq!(outcome.unwrap()["x"], 1);
        assert_eq!(usage, TaskUsage { cpu_seconds: 1.5, peak_rss_kb: 2048 });
    }

    #[tokio::test]
    async fn streamed_records_reach_the_caller_in_order() {
        let (hub, id, mut rx, task) = leased_probe();
        let Some(Ok(DaemonMessage { body: Some(daemon_message::Body::Task(sent)) })) = rx.recv().await else {
            panic!()
        };
        for chunk in ["{\"a\":[1]}", "{\"a\":[2]}"] {
            let records =
                proto::TaskRecords { task_id: sent.task_id.clone(), table: "prims".into(), columns_json: chunk.into() };
            hub.on_message(&id, proto::ExecutorMessage { body: Some(executor_message::Body::Records(records)) });
        }
        let result =
            proto::TaskResult { task_id: sent.task_id, ok: true, result_json: "{}".into(), ..Default::default() };
        hub.on_message(&id, proto::ExecutorMessage { body: Some(executor_message::Body::Result(result)) });
        let value = task.await.unwrap().1.unwrap();
        assert_eq!(value[RECORDS_KEY]["prims"], serde_json::json!(["{\"a\":[1]}", "{\"a\":[2]}"]));
    }

    #[tokio::test]
    async fn a_task_that_streams_past_the_cap_fails_and_the_chunks_are_dropped() {
        let hub = std::sync::Arc::new(ExecutorHub { max_records_bytes: 100, ..Default::default() });
        let (tx, mut outbox) = mpsc::unbounded_channel();
        let executor = hub.register(hello("flood"), tx);
        let task = tokio::spawn({
            let hub = hub.clone();
            async move { hub.run_task("probe", &serde_json::json!({}), None, Duration::from_secs(5)).await }
        });
        let Some(Ok(DaemonMessage { body: Some(daemon_message::Body::Task(sent)) })) = outbox.recv().await else {
            panic!()
        };
        for _ in 0..10 {
            let chunk =
                proto::TaskRecords { task_id: sent.task_id.clone(), table: "t".into(), columns_json: "x".repeat(40) };
            hub.on_message(&executor, proto::ExecutorMessage { body: Some(executor_message::Body::Records(chunk)) });
        }
        let failure = task.await.unwrap().1.unwrap_err();
        assert_eq!(failure.code, Outcome::ExecutorProtocolError.code());
        assert!(failure.message.contains("more than"), "{}", failure.message);
        assert!(hub.state.lock().unwrap().leases.is_empty(), "nothing held after the cap");
    }

    #[tokio::test]
    async fn an_executor_cannot_answer_a_task_another_holds() {
        let hub = std::sync::Arc::new(ExecutorHub::default());
        let (tx, mut outbox) = mpsc::unbounded_channel();
        let holder = hub.register(hello("holder"), tx);
        let task = tokio::spawn({
            let hub = hub.clone();
            async move { hub.run_task("probe", &serde_json::json!({}), None, Duration::from_secs(5)).await }
        });
        let Some(Ok(DaemonMessage { body: Some(daemon_message::Body::Task(sent)) })) = outbox.recv().await else {
            panic!()
        };
        let (rogue_tx, _rogue_rx) = mpsc::unbounded_channel();
        let rogue = hub.register(hello("rogue"), rogue_tx);
        let forged = |value: &str| proto::ExecutorMessage {
            body: Some(executor_message::Body::Result(proto::TaskResult {
                task_id: sent.task_id.clone(),
                ok: true,
                result_json: value.into(),
                ..Default::default()
            })),
        };
        hub.on_message(&rogue, forged("{\"forged\":true}"));
        hub.on_message(&holder, forged("{\"x\":1}"));
        let (who, outcome, _) = task.await.unwrap();
        assert_eq!(who, holder);
        assert_eq!(outcome.unwrap()["x"], 1, "the holder's result, not the rogue's");
    }

    #[tokio::test]
    async fn a_pool_task_goes_only_to_that_pool() {
        let hub = std::sync::Arc::new(ExecutorHub::default());
        let (outside, mut outside_rx) = mpsc::unbounded_channel();
        hub.register(hello("local"), outside);
        let task = tokio::spawn({
            let hub = hub.clone();
            async move {
                let wait = Duration::from_millis(300);
                hub.run_task_in(
                    "t-ops",
                    Some("ops"),
                    None,
                    "probe",
                    &serde_json::json!({}),
                    None,
                    wait,
                    TaskLimits::default(),
                )
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(outside_rx.try_recv().is_err(), "not leased outside the pool");
        let (inside, mut inside_rx) = mpsc::unbounded_channel();
        hub.register(hello("ops-1"), inside);
        assert!(inside_rx.recv().await.is_some(), "leased to the pool's executor once it connected");
        hub.unregister("ops-1", "test over");
        assert_eq!(task.await.unwrap().1.unwrap_err().code, Outcome::ExecutorLost.code());
    }

    #[tokio::test]
    async fn no_capable_executor_is_a_clear_error() {
        let hub = ExecutorHub::default();
        let (_, outcome, _) = hub.run_task("facts", &serde_json::json!({}), None, Duration::from_millis(150)).await;
        assert_eq!(outcome.unwrap_err().code, Outcome::NoExecutor.code());
    }

    #[tokio::test]
    async fn silent_executor_is_reaped() {
        let hub = ExecutorHub::new(Duration::from_millis(10), Duration::from_secs(60));
        let (tx, _rx) = mpsc::unbounded_channel();
        hub.register(hello("a"), tx);
        tokio::time::sleep(Duration::from_millis(30)).await;
        hub.reap_silent();
        assert!(hub.connected().is_empty());
    }

    #[tokio::test]
    async fn a_busy_executor_may_be_silent_longer() {
        let hub = std::sync::Arc::new(ExecutorHub::new(Duration::from_millis(10), Duration::from_millis(200)));
        let (tx, mut rx) = mpsc::unbounded_channel();
        hub.register(hello("a"), tx);
        let task = tokio::spawn({
            let hub = hub.clone();
            async move { hub.run_task("probe", &serde_json::json!({}), None, Duration::from_secs(1)).await }
        });
        assert!(rx.recv().await.is_some(), "task was sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
        hub.reap_silent();
        assert_eq!(hub.connected().len(), 1, "busy in a native call, not lost");
        tokio::time::sleep(Duration::from_millis(200)).await;
        hub.reap_silent();
        assert_eq!(task.await.unwrap().1.unwrap_err().code, Outcome::ExecutorLost.code());
    }

    /// A lease given up on: the caller gets `code`, the executor a CancelTask and no new task.
    async fn given_up(limits: TaskLimits, code: &str) {
        let hub = std::sync::Arc::new(ExecutorHub::default());
        let (tx, mut rx) = mpsc::unbounded_channel();
        hub.register(hello("a"), tx);
        let task = tokio::spawn({
            let hub = hub.clone();
            async move {
                let wait = Duration::from_secs(1);
                hub.run_task_in("t-lim", None, None, "probe", &serde_json::json!({}), None, wait, limits).await
            }
        });
        assert!(matches!(rx.recv().await.unwrap().unwrap().body, Some(daemon_message::Body::Task(_))));
        let (_, outcome, _) = tokio::time::timeout(Duration::from_secs(5), task).await.expect("not awaited").unwrap();
        assert_eq!(outcome.unwrap_err().code, code);
        let Some(daemon_message::Body::Cancel(cancel)) = rx.recv().await.unwrap().unwrap().body else {
            panic!("the executor is told")
        };
        let (_, next, _) = hub.run_task("probe", &serde_json::json!({}), None, Duration::from_millis(200)).await;
        assert_eq!(next.unwrap_err().code, Outcome::NoExecutor.code(), "still busy with the abandoned task");
        // Its late answer frees it for the next task.
        let late = proto::TaskResult { task_id: cancel.task_id, ok: false, ..Default::default() };
        hub.on_message("a", proto::ExecutorMessage { body: Some(executor_message::Body::Result(late)) });
        let next = tokio::spawn({
            let hub = hub.clone();
            async move { hub.run_task("probe", &serde_json::json!({}), None, Duration::from_secs(1)).await }
        });
        let leased =
            tokio::time::timeout(Duration::from_secs(2), rx.recv()).await.expect("leased again, not left busy");
        assert!(matches!(leased.unwrap().unwrap().body, Some(daemon_message::Body::Task(_))));
        next.abort();
    }

    #[tokio::test]
    async fn a_task_past_its_deadline_is_abandoned_and_its_executor_told() {
        let limits = TaskLimits { deadline: Some(Duration::from_millis(200)), cancel: None };
        given_up(limits, Outcome::TaskDeadlineExceeded.code()).await;
    }

    #[tokio::test]
    async fn a_cancelled_run_does_not_wait_for_its_task() {
        let cancel = Arc::new(AtomicBool::new(false));
        let limits = TaskLimits { deadline: None, cancel: Some(cancel.clone()) };
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            cancel.store(true, Ordering::SeqCst);
        });
        given_up(limits, Outcome::Cancelled.code()).await;
    }
}
