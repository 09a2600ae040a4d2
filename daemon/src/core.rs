//! The daemon core: the runs it holds, the executor hub, the events watchers receive, and the
//! executor processes it starts. The same core serves a long-running `usdtuned` and the
//! CLI's embedded mode; in both, a local headless executor is spawned on demand when no
//! executor is connected. It is the workflow's [`Host`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{broadcast, mpsc};

use crate::decisions::budget::{admit, Budget, Need};
use crate::executors::{pool_member, ExecutorHub, TaskFailure, TaskLimits, RUNTIMES, RUNTIME_KIT, RUNTIME_STANDALONE};
use crate::outcome::Outcome;
use crate::record::{Answer, EventKind, GateKind, RunEvent, RunRecord, RunState, Submission};
use crate::setup::ExecutorEnv;
use crate::store::Workspace;
use crate::workflow::{self, Host, RunSlot, TaskReply, TaskRequest};

pub struct Config {
    /// Where run indexes (and default run workspaces) live.
    pub data_dir: PathBuf,
    /// Spawn `python -m usdtune_executor` from this environment when no executor is connected.
    pub local_executor: Option<ExecutorEnv>,
    /// How long a task waits for a capable executor to connect.
    pub executor_wait: Duration,
    /// Most executor processes one run's Phase 4 may use at once (0: one per CPU core).
    pub max_workers: usize,
    /// Every task deadline is multiplied by this (`USDTUNE_TASK_DEADLINE_SCALE`).
    pub task_deadline_scale: f64,
    /// Where executors this core starts write their output (`<data dir>/logs`; an embedded
    /// run's own `OUTDIR/logs`).
    pub logs_dir: PathBuf,
    /// Executor output goes to this process's stderr instead (`usdtune -v`).
    pub executor_output_inherited: bool,
    /// Stages and output folders must lie under one of these (canonical) folders; `None`
    /// (the embedded daemon) takes the caller's paths as they are.
    pub allowed_roots: Option<Vec<PathBuf>>,
    /// The executor token, handed to the executors this core starts (`USDTUNE_TOKEN`).
    pub executor_token: Option<String>,
    /// The CA the executors this core starts trust when the daemon serves TLS (`USDTUNE_TLS_CA`).
    pub executor_tls_ca: Option<PathBuf>,
    /// Runs driven at once (0: no limit but the budget); the rest wait in [`Admission`]'s queue.
    pub max_runs: usize,
    /// Bytes of memory the driven runs' expected peaks may add up to (`--memory-budget`);
    /// None: 80 % of what is available when the core starts.
    pub memory_budget: Option<u64>,
}

impl Config {
    pub fn new(local_executor: Option<ExecutorEnv>, max_workers: usize) -> Self {
        let data_dir = crate::setup::data_dir();
        Self {
            logs_dir: logs_dir(&data_dir),
            executor_output_inherited: false,
            allowed_roots: None,
            executor_token: None,
            executor_tls_ca: None,
            max_runs: 0,
            memory_budget: None,
            data_dir,
            local_executor,
            // USDTUNE_EXECUTOR_WAIT (seconds) shortens it where a test waits for a refusal.
            executor_wait: Duration::from_secs_f64(
                std::env::var("USDTUNE_EXECUTOR_WAIT").ok().and_then(|v| v.parse().ok()).unwrap_or(120.0),
            ),
            max_workers,
            task_deadline_scale: std::env::var("USDTUNE_TASK_DEADLINE_SCALE")
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s > 0.0)
                .unwrap_or(1.0),
        }
    }
}

type Runs = Arc<Mutex<HashMap<String, Arc<RunSlot>>>>;

/// How many times a task is leased when its executor is lost mid-task (the first lease
/// included): a crash is retried, a task that kills every executor it meets is not forever.
const TASK_ATTEMPTS: u32 = 3;

/// The ids of the local executors this core starts, one per runtime.
const LOCAL_EXECUTORS: [(&str, &str); 2] = [("local", RUNTIME_STANDALONE), ("kit-local", RUNTIME_KIT)];

pub struct Core {
    pub hub: ExecutorHub,
    pub config: Config,
    runs: Runs,
    events: broadcast::Sender<RunEvent>,
    address: OnceLock<SocketAddr>,
    children: Mutex<Vec<ExecutorProcess>>,
    /// Phase 4 worker processes by executor id (`<pool>-<n>`).
    workers: Mutex<HashMap<String, ExecutorProcess>>,
    /// Held for reading by every task, for writing by a measurement ([`MEASUREMENTS`]).
    measuring: tokio::sync::RwLock<()>,
    /// How far each Kit executor's log has been read for `[Error]` lines.
    kit_logs_read: Mutex<HashMap<PathBuf, u64>>,
    admission: Mutex<Admission>,
    /// Runs, tasks and leases, durable across restarts.
    pub db: Arc<crate::rundb::RunDb>,
    /// Memory the runs driven at once may be expected to hold ([`Config::memory_budget`]).
    memory_budget: u64,
}

/// Which runs are driven now and which wait: a waiting run starts when its share of the
/// daemon's budget fits beside the driven runs' ([`crate::decisions::budget`]), the highest
/// priority first, then the first submitted. A run paused at a gate is still driven (it holds
/// its place until answered or cancelled).
#[derive(Default)]
struct Admission {
    /// Run id → (stage, workspace) of every driven run: what its share is read from.
    driven: HashMap<String, (String, String)>,
    /// (priority, submission order, the run), in submission order.
    waiting: Vec<(i32, u64, RunRecord)>,
    submitted: u64,
    /// A task re-checks the queue every [`ADMISSION_TICK`] while runs wait (memory and disk
    /// free up without any run ending).
    ticking: bool,
}

const ADMISSION_TICK: Duration = Duration::from_secs(3);

impl Admission {
    /// Where the next run to start is: highest priority, then first submitted.
    fn next_at(&self) -> Option<usize> {
        (0..self.waiting.len()).max_by_key(|&i| (self.waiting[i].0, std::cmp::Reverse(self.waiting[i].1)))
    }

    /// The next run to start (see [`Self::next_at`]).
    #[cfg(test)]
    fn next(&mut self) -> Option<RunRecord> {
        self.next_at().map(|at| self.waiting.remove(at).2)
    }

    /// `record` is driven from now on: it holds its share of the budget until it ends.
    fn hold(&mut self, record: &RunRecord) {
        self.driven.insert(record.run_id.clone(), (record.stage_path.clone(), record.output_dir.clone()));
    }

    /// How many waiting runs go before one of `priority` submitted now.
    fn ahead_of(&self, priority: i32) -> usize {
        self.waiting.iter().filter(|(p, _, _)| *p >= priority).count()
    }
}

/// What a queued run says: why it waits, and who goes first.
fn queued_message(why: &str, ahead: usize) -> String {
    if ahead > 0 {
        format!("queued: {why}; {ahead} waiting run(s) go first")
    } else {
        format!("queued: {why}")
    }
}

/// Task kinds that measure the machine: the baseline profile and the paired profiles of the
/// verdict and of the route trials. Each runs alone on this daemon, every other task of every
/// run held back until it ends (and it waits for those in flight), so a run's verdict does not
/// follow what other runs were doing at the time. The lock is fair: a waiting measurement
/// holds back tasks that arrive after it.
const MEASUREMENTS: [&str; 2] = ["profile", "profile_pair"];

/// An executor process this core started. It leads a process group of its own, so ending it
/// ends what it started too (validation workers, stage walks, profile captures): a plain kill
/// would leave those running, re-parented to init. Dropping it kills the group.
struct ExecutorProcess {
    child: tokio::process::Child,
    group: Option<u32>,
    /// kit | standalone: which runtime's tasks it was started for.
    runtime: &'static str,
}

impl ExecutorProcess {
    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait up to `grace` for it to exit on its own (it was asked to shut down), then end it
    /// and whatever of its group is left.
    async fn stop(mut self, grace: Duration) {
        let _ = tokio::time::timeout(grace, self.child.wait()).await;
    }
}

impl Drop for ExecutorProcess {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Some(group) = self.group.and_then(|g| i32::try_from(g).ok()) {
            // SAFETY: killpg only sends a signal; a group with no process left answers ESRCH.
            unsafe {
                libc::killpg(group, libc::SIGKILL);
            }
        }
        let _ = self.child.start_kill();
    }
}

/// Whether a process with this id lives (signal 0 probes without sending anything).
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        // SAFETY: kill with signal 0 only checks that the process exists and may be signalled.
        // EPERM: it exists, run by another user.
        i32::try_from(pid).is_ok_and(|pid| {
            let probed = unsafe { libc::kill(pid, 0) };
            probed == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        })
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        false
    }
}

/// End a process that leads its own group: SIGTERM to the group (an executor then ends its
/// connection and its workers in order), up to `grace` to exit, then SIGKILL to what is left.
pub async fn stop_process_group(child: &mut tokio::process::Child, grace: Duration) {
    #[cfg(unix)]
    let group = child.id().and_then(|g| i32::try_from(g).ok());
    #[cfg(unix)]
    if let Some(group) = group {
        // SAFETY: killpg only sends a signal; a group with no process left answers ESRCH.
        unsafe {
            libc::killpg(group, libc::SIGTERM);
        }
    }
    let _ = tokio::time::timeout(grace, child.wait()).await;
    #[cfg(unix)]
    if let Some(group) = group {
        // SAFETY: as above.
        unsafe {
            libc::killpg(group, libc::SIGKILL);
        }
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// A refusal of a client request: its outcome code and message.
#[derive(Debug)]
pub struct Refusal {
    pub outcome: Outcome,
    pub message: String,
}

impl Refusal {
    fn new(outcome: Outcome, message: impl Into<String>) -> Self {
        Self { outcome, message: message.into() }
    }
}

/// The folder executor logs go to.
pub fn logs_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("logs")
}

/// `path` with links and `..` resolved, refused unless it lies under one of `roots` (canonical
/// folders). A path that does not exist yet (an output folder) is resolved through its deepest
/// existing ancestor. The refusal reads the same whether or not the path exists, so a caller
/// cannot probe the file system outside the roots.
pub fn confine(path: &str, what: &str, roots: &[PathBuf]) -> Result<PathBuf, Refusal> {
    use std::path::Component;
    if crate::decisions::remote::is_nucleus_url(path) {
        return Err(Refusal::new(
            Outcome::PathOutsideAllowedRoots,
            format!("{what} {path}: a shared daemon serves files under its --allow-root folders only"),
        ));
    }
    let given = Path::new(path);
    if !given.is_absolute() {
        return Err(Refusal::new(
            Outcome::PathNotAbsolute,
            format!("{what} {path} is relative: send an absolute path (the daemon cannot know your folder)"),
        ));
    }
    // Component by component from the root: what exists is resolved by the file system (links
    // included, so `link/..` is the link target's parent), what does not by its names alone.
    let mut full = PathBuf::new();
    for part in given.components() {
        match part {
            Component::ParentDir => {
                full.pop();
            }
            Component::CurDir => {}
            other => {
                full.push(other);
                if let Ok(real) = std::fs::canonicalize(&full) {
                    full = real;
                } else if let Ok(target) = std::fs::read_link(&full) {
                    // A link to nothing yet: what would be created is its target, judged there.
                    full.pop();
                    full = full.join(target);
                }
            }
        }
    }
    if roots.iter().any(|root| full.starts_with(root)) {
        return Ok(full);
    }
    let shown: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    Err(Refusal::new(
        Outcome::PathOutsideAllowedRoots,
        format!(
            "{what} {path} is outside the folders this daemon serves ({}); start it with --allow-root to add one",
            if shown.is_empty() { "none".to_string() } else { shown.join(", ") }
        ),
    ))
}

/// The stage a run is asked for, checked before anything runs: a readable regular file with a
/// USD extension. Returns its canonical path.
pub fn check_stage(path: &Path) -> Result<PathBuf, Refusal> {
    let shown = path.display();
    // A Nucleus URL is checked where it lives, by Phase 0's omni.client.stat (decisions::remote).
    if path.to_str().is_some_and(crate::decisions::remote::is_nucleus_url) {
        return Ok(path.to_path_buf());
    }
    let meta = std::fs::metadata(path).map_err(|e| {
        let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
        match e.kind() {
            std::io::ErrorKind::NotFound if link => Refusal::new(
                Outcome::StageNotFound,
                format!("stage file does not exist: {shown} is a symbolic link to a missing file"),
            ),
            std::io::ErrorKind::NotFound => {
                Refusal::new(Outcome::StageNotFound, format!("stage file does not exist: {shown}"))
            }
            // Permission denied on the way, a symbolic link loop, a name too long: there is
            // something at the path that cannot be read.
            _ => Refusal::new(Outcome::StageUnreadable, format!("{shown}: {e}")),
        }
    })?;
    if meta.is_dir() {
        return Err(Refusal::new(Outcome::StageIsDirectory, format!("{shown} is a folder, not a stage file")));
    }
    if !meta.is_file() {
        return Err(Refusal::new(Outcome::StageNotAFile, format!("{shown} is not a regular file")));
    }
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    if !["usd", "usda", "usdc", "usdz"].contains(&extension.as_str()) {
        return Err(Refusal::new(
            Outcome::UnsupportedFormat,
            format!("{shown}: not a USD file (.usd, .usda, .usdc, .usdz)"),
        ));
    }
    if let Err(e) = std::fs::File::open(path) {
        return Err(Refusal::new(Outcome::StageUnreadable, format!("{shown}: {e}")));
    }
    std::fs::canonicalize(path).map_err(|e| Refusal::new(Outcome::StageNotFound, format!("{shown}: {e}")))
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.outcome, self.message)
    }
}

impl Core {
    /// A core over `config.data_dir`'s database (`state_db_unavailable` when it cannot be opened).
    pub fn new(config: Config) -> anyhow::Result<Arc<Self>> {
        let (events, _) = broadcast::channel(1024);
        let db = crate::rundb::RunDb::open(&config.data_dir)
            .map_err(|e| anyhow::anyhow!("{}: {e}", Outcome::StateDbUnavailable))?;
        let db = Arc::new(db);
        let hub = ExecutorHub::default();
        let leases = db.clone();
        hub.on_lease(Box::new(move |task_id, executor_id| leases.task_leased(task_id, executor_id)));
        // 80 %: headroom for the daemon, the OS and estimates that read low.
        let memory_budget =
            config.memory_budget.unwrap_or_else(|| crate::resources::cpu_and_available_memory().1 / 5 * 4);
        Ok(Arc::new(Self {
            hub,
            db,
            memory_budget,
            config,
            runs: Default::default(),
            events,
            address: OnceLock::new(),
            children: Mutex::new(Vec::new()),
            workers: Mutex::new(HashMap::new()),
            measuring: tokio::sync::RwLock::new(()),
            kit_logs_read: Mutex::new(HashMap::new()),
            admission: Mutex::new(Admission::default()),
        }))
    }

    /// The `[Error]` lines a Kit executor this daemon started has logged since the last look
    /// (Kit logs through carb to its output, which goes to `<logs dir>/<id>.log`). An executor
    /// attached from elsewhere keeps its log to itself.
    fn new_kit_errors(&self, executor_id: &str) -> Vec<String> {
        use std::io::{Read, Seek};
        let kit = self.hub.hello_of(executor_id).is_some_and(|h| h.runtime == RUNTIME_KIT);
        if !kit || self.config.executor_output_inherited {
            return Vec::new();
        }
        let path = self.config.logs_dir.join(format!("{executor_id}.log"));
        let Ok(mut file) = std::fs::File::open(&path) else { return Vec::new() };
        let mut read = self.kit_logs_read.lock().unwrap();
        let from = read.get(&path).copied().unwrap_or(0);
        let mut text = Vec::new();
        if file.seek(std::io::SeekFrom::Start(from)).is_err() || file.read_to_end(&mut text).is_err() {
            return Vec::new();
        }
        read.insert(path, from + text.len() as u64);
        kit_error_lines(&String::from_utf8_lossy(&text))
    }

    /// A task's turn under the measurement lock ([`MEASUREMENTS`]), said as progress while it
    /// waits; None when the run is cancelled meanwhile.
    async fn turn(
        &self,
        task: &TaskRequest<'_>,
        progress: &mpsc::UnboundedSender<(f64, String)>,
    ) -> Option<futures::future::Either<tokio::sync::RwLockReadGuard<'_, ()>, tokio::sync::RwLockWriteGuard<'_, ()>>>
    {
        use futures::future::{Either, FutureExt};
        let alone = MEASUREMENTS.contains(&task.kind);
        let acquire = if alone {
            self.measuring.write().map(Either::Right).boxed()
        } else {
            self.measuring.read().map(Either::Left).boxed()
        };
        tokio::pin!(acquire);
        let mut said = false;
        loop {
            tokio::select! {
                turn = &mut acquire => return Some(turn),
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if task.cancel.load(std::sync::atomic::Ordering::SeqCst) {
                        return None;
                    }
                    if !said {
                        said = true;
                        let why = if alone {
                            "waiting for other runs' tasks to end: a measurement runs alone"
                        } else {
                            "waiting while another run measures"
                        };
                        let _ = progress.send((0.0, why.into()));
                    }
                }
            }
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<RunEvent> {
        self.events.subscribe()
    }

    /// The address the gRPC server listens on; executors this core starts connect back to it.
    pub fn set_address(&self, address: SocketAddr) {
        let _ = self.address.set(address);
    }

    /// Whether a live process other than this one drives the run (its owner in the database).
    fn driven_elsewhere(&self, run_id: &str) -> bool {
        self.db.owner(run_id).is_some_and(|pid| pid != std::process::id() && process_alive(pid))
    }

    /// Runs an earlier daemon left unfinished (killed, or the machine went down): each resumes
    /// from its first phase not yet settled, the interrupted phase run again from the start
    /// (artifacts are written atomically, so none is half-written; a phase's outputs are
    /// rewritten whole). A run another live process drives is left to it; one whose stage is
    /// no longer under this daemon's roots ends with that code. Returns the resumed run ids.
    pub fn resume_unfinished(self: &Arc<Self>) -> Vec<String> {
        let voided = self.db.void_orphan_tasks(process_alive);
        if voided > 0 {
            tracing::warn!("{voided} task lease(s) held by a daemon that is gone are void; their phases run again");
        }
        let mut resumed = Vec::new();
        for mut record in self.list() {
            let unfinished = matches!(record.state, RunState::Running | RunState::Queued);
            if !unfinished || self.slot(&record.run_id).is_some() || self.driven_elsewhere(&record.run_id) {
                continue;
            }
            if let Some(roots) = &self.config.allowed_roots {
                if let Err(refusal) = confine(&record.stage_path, "stage", roots) {
                    record.state = RunState::Failed;
                    record.code = refusal.outcome.code().into();
                    record.message = format!("not resumed after a daemon restart: {}", refusal.message);
                    self.persist_and_announce(&record, EventKind::Finished, &record.milestone.clone(), "not resumed");
                    continue;
                }
            }
            for phase in record.phases.iter_mut().filter(|p| p.status == crate::record::PhaseStatus::Running) {
                phase.status = crate::record::PhaseStatus::Pending;
                phase.note = "interrupted by a daemon restart; run again".into();
            }
            tracing::warn!(run = %record.run_id, milestone = %record.milestone, "resuming a run an earlier daemon left unfinished");
            resumed.push(record.run_id.clone());
            self.start(record);
        }
        resumed
    }

    /// A local executor of `runtime` (kit or standalone; any: a standalone one unless some
    /// executor is connected), started unless one is connected or on its way.
    async fn ensure_local_executor(&self, runtime: Option<&str>) -> Result<(), TaskFailure> {
        let Some(env) = &self.config.local_executor else { return Ok(()) };
        if self.hub.connected().iter().any(|h| runtime.is_none_or(|r| h.runtime == r)) {
            return Ok(());
        }
        let mut children = self.children.lock().unwrap();
        children.retain_mut(ExecutorProcess::running);
        if children.iter().any(|c| runtime.is_none_or(|r| c.runtime == r)) {
            return Ok(()); // started, not yet connected: the task waits for its hello
        }
        let wanted = runtime.unwrap_or(RUNTIME_STANDALONE);
        let (id, runtime) = LOCAL_EXECUTORS.into_iter().find(|(_, r)| *r == wanted).unwrap_or(LOCAL_EXECUTORS[0]);
        children.push(self.spawn_executor(env, id, runtime)?);
        Ok(())
    }

    /// Start an executor from `env` that connects back to this daemon as `id`: `python -m
    /// usdtune_executor`, or for the kit runtime headless Kit with the executor extension
    /// enabled, serving until the daemon shuts it down.
    fn spawn_executor(
        &self,
        env: &ExecutorEnv,
        id: &str,
        runtime: &'static str,
    ) -> Result<ExecutorProcess, TaskFailure> {
        let address = *self
            .address
            .get()
            .ok_or_else(|| TaskFailure::new(Outcome::DaemonNotServing, "daemon has no listening address"))?;
        // Executor and usd-optimize log lines go to a file, not between the run's progress lines
        // (with -v, to this process's stderr).
        let (stdout, stderr) = if self.config.executor_output_inherited {
            (std::process::Stdio::inherit(), std::process::Stdio::inherit())
        } else {
            let log = self.executor_log(id)?;
            let copy = log.try_clone().map_err(|e| TaskFailure::new(Outcome::ExecutorSpawnFailed, e.to_string()))?;
            (copy.into(), log.into())
        };
        let mut command = tokio::process::Command::new(env.python());
        #[cfg(unix)]
        command.process_group(0);
        // Its token and CA are this daemon's, never ones inherited from the caller's environment.
        command.env_remove("USDTUNE_TOKEN").env_remove("USDTUNE_TLS_CA");
        if let Some(token) = &self.config.executor_token {
            command.env("USDTUNE_TOKEN", token);
        }
        if let Some(ca) = &self.config.executor_tls_ca {
            command.env("USDTUNE_TLS_CA", ca);
        }
        if runtime == RUNTIME_KIT {
            let extension = crate::setup::extension_dir();
            let folder = extension.parent().map(Path::to_path_buf).unwrap_or_default();
            let setting = |key: &str, value: &dyn std::fmt::Display| format!("--/exts/usdtune.executor/{key}={value}");
            command
                .args(["-m", "omni.kit_app", "--no-window", "--portable-root"])
                .arg(self.config.data_dir.join("kit-portable"))
                .arg("--ext-folder")
                .arg(&folder)
                .args(["--/app/extensions/registryEnabled=false", "--/app/fastShutdown=false"])
                .arg(setting("daemonAddress", &address))
                .arg(setting("executorId", &id))
                .args(["--enable", "usdtune.executor", "--exec"])
                .arg(extension.join("usdtune_executor/hosts/kit_serve.py"))
                // Headless, unattended: the kernel's EULA is accepted by installing it
                // (`usdtune setup --kit`); root is allowed where the daemon runs as root.
                .env("OMNI_KIT_ACCEPT_EULA", "yes")
                .env("OMNI_KIT_ALLOW_ROOT", "1");
        } else {
            command.args(["-m", "usdtune_executor", "--daemon", &address.to_string(), "--executor-id", id]);
        }
        let child = command
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                TaskFailure::new(Outcome::ExecutorSpawnFailed, format!("cannot start {}: {e}", env.python().display()))
            })?;
        tracing::info!(pid = child.id(), %id, runtime, "spawned executor");
        Ok(ExecutorProcess { group: child.id(), child, runtime })
    }

    fn announce(&self, run_id: &str, kind: EventKind, milestone: &str, message: &str, fraction: f64) {
        let run = self.runs.lock().unwrap().get(run_id).map(|s| s.snapshot());
        let _ = self.events.send(RunEvent {
            run_id: run_id.into(),
            kind,
            milestone: milestone.into(),
            message: message.into(),
            fraction,
            run,
        });
    }

    /// End an executor this core started (an abandoned task's, a lost one's): its process group is killed
    /// and its connection closes. An executor that attached on its own (Kit) was sent the
    /// task's cancel and stays busy until it answers.
    fn end_executor(&self, executor_id: &str) {
        let ended = self.workers.lock().unwrap().remove(executor_id).map(|p| vec![p]).unwrap_or_else(|| {
            let id = executor_id.trim_end_matches('+');
            let Some((_, runtime)) = LOCAL_EXECUTORS.into_iter().find(|(local, _)| *local == id) else {
                return Vec::new();
            };
            let mut children = self.children.lock().unwrap();
            let (ended, kept) = std::mem::take(&mut *children).into_iter().partition(|c| c.runtime == runtime);
            *children = kept;
            ended
        });
        if !ended.is_empty() {
            tracing::warn!(executor = %executor_id, "ending the executor process and what it started");
        }
        drop(ended);
    }

    /// Start again the pool worker `id` that was lost (and ended), when this core started it;
    /// an attached worker is waited for instead.
    fn respawn_worker(&self, pool: &str, id: &str) -> Result<(), TaskFailure> {
        let Some(env) = &self.config.local_executor else { return Ok(()) };
        let mut workers = self.workers.lock().unwrap();
        if pool_member(id, pool).is_none() || workers.get_mut(id).is_some_and(ExecutorProcess::running) {
            return Ok(());
        }
        let child = self.spawn_executor(env, id, RUNTIME_STANDALONE)?;
        workers.insert(id.to_string(), child);
        Ok(())
    }

    /// Where an executor's output goes: `<logs dir>/<executor id>.log`, appended.
    fn executor_log(&self, id: &str) -> Result<std::fs::File, TaskFailure> {
        let dir = &self.config.logs_dir;
        let fail =
            |e: std::io::Error| TaskFailure::new(Outcome::ExecutorSpawnFailed, format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(fail)?;
        std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{id}.log"))).map_err(fail)
    }

    pub fn slot(&self, run_id: &str) -> Option<Arc<RunSlot>> {
        self.runs.lock().unwrap().get(run_id).cloned()
    }

    /// A run from memory, or from the database when an earlier daemon ran it.
    pub fn load(&self, run_id: &str) -> Option<RunRecord> {
        match self.slot(run_id) {
            Some(slot) => Some(slot.snapshot()),
            None => self.db.get(run_id),
        }
    }

    /// Every run this data dir knows, the first submitted first (a run driven here as this
    /// process holds it).
    pub fn list(&self) -> Vec<RunRecord> {
        let mut runs = self.db.list();
        let driven: HashMap<String, RunRecord> =
            self.runs.lock().unwrap().iter().map(|(id, slot)| (id.clone(), slot.snapshot())).collect();
        for run in runs.iter_mut() {
            if let Some(current) = driven.get(&run.run_id) {
                *run = current.clone();
            }
        }
        runs
    }

    pub fn submit(self: &Arc<Self>, mut request: Submission) -> Result<RunRecord, Refusal> {
        if let Some(roots) = &self.config.allowed_roots {
            request.stage_path = confine(&request.stage_path, "stage", roots)?.display().to_string();
            if !request.output_dir.is_empty() {
                request.output_dir = confine(&request.output_dir, "output folder", roots)?.display().to_string();
            }
        }
        let stage = check_stage(Path::new(&request.stage_path))?;
        if let Some(branch) = request.restructure_branch.as_deref() {
            if !GateKind::Restructure.knows(branch) {
                return Err(Refusal::new(Outcome::InvalidRestructureBranch, format!("unknown branch '{branch}'")));
            }
        }
        if let Some(runtime) = request.runtime.as_deref() {
            if !RUNTIMES.contains(&runtime) {
                return Err(Refusal::new(
                    Outcome::InvalidRuntime,
                    format!("unknown runtime '{runtime}'; choose one of: {}", RUNTIMES.join(", ")),
                ));
            }
            let attached = self.hub.connected().iter().any(|h| h.runtime == runtime);
            let local = self.config.local_executor.as_ref().is_some_and(|env| env.kit_version().is_some());
            if runtime == RUNTIME_KIT && !attached && !local {
                return Err(Refusal::new(
                    Outcome::KitRuntimeUnavailable,
                    "no Kit kernel in the executor environment and no Kit executor attached: run `usdtune setup --kit`",
                ));
            }
        }
        let unapproved =
            crate::decisions::op_chain::unapproved_requests(&request.requested_operations, &request.approvals);
        if !unapproved.is_empty() {
            let lines: Vec<String> = unapproved.iter().map(crate::decisions::op_chain::guardrails).collect();
            let keys: Vec<&str> = unapproved.iter().map(|o| o.operation).collect();
            return Err(Refusal::new(
                Outcome::OperationNotApproved,
                format!("{}; approve with --approve {}", lines.join("; "), keys.join(" --approve ")),
            ));
        }
        let run_id = crate::record::new_run_id();
        let output_dir = if request.output_dir.is_empty() {
            self.config.data_dir.join("runs").join(&run_id)
        } else {
            std::path::absolute(&request.output_dir)
                .map_err(|e| Refusal::new(Outcome::OutputDirUnwritable, format!("{}: {e}", request.output_dir)))?
        };
        if stage.starts_with(std::fs::canonicalize(&output_dir).as_ref().unwrap_or(&output_dir)) {
            return Err(Refusal::new(
                Outcome::OutputOverlapsSource,
                format!("{} holds the source stage {}: choose another folder", output_dir.display(), stage.display()),
            ));
        }
        let stage_text = stage.display().to_string();
        match crate::store::claim_workspace(&output_dir, &stage_text, request.force) {
            Ok(Ok(())) => {}
            Ok(Err(crate::store::Claim::Foreign(dir))) => {
                return Err(Refusal::new(
                    Outcome::OutputDirNotEmpty,
                    format!("{} holds files that are not a usdtune run's (--force writes there anyway)", dir.display()),
                ))
            }
            Ok(Err(crate::store::Claim::OtherStage(other))) => {
                return Err(Refusal::new(
                    Outcome::OutputDirInUse,
                    format!(
                        "{} holds a run of {other}, not of {stage_text} (--force replaces it)",
                        output_dir.display()
                    ),
                ))
            }
            Err(e) => return Err(Refusal::new(Outcome::OutputDirUnwritable, format!("{}: {e}", output_dir.display()))),
        }
        std::fs::create_dir_all(&output_dir)
            .map_err(|e| Refusal::new(Outcome::OutputDirUnwritable, format!("{}: {e}", output_dir.display())))?;
        if let Some(goal) = request.goal.as_deref().filter(|g| crate::decisions::routes::Goal::parse(g).is_none()) {
            return Err(Refusal::new(
                Outcome::InvalidGoal,
                format!("unknown goal '{goal}'; choose one of: load-time, footprint, balanced"),
            ));
        }
        if let Some(pipeline) = request.pipeline.as_deref() {
            if !crate::decisions::op_chain::PIPELINES.contains(&pipeline) {
                return Err(Refusal::new(
                    Outcome::InvalidPipeline,
                    format!(
                        "unknown pipeline '{pipeline}'; choose one of: {}",
                        crate::decisions::op_chain::PIPELINES.join(", ")
                    ),
                ));
            }
        }
        let record = RunRecord::new(
            run_id.clone(),
            stage.display().to_string(),
            output_dir.display().to_string(),
            &workflow::table::labels(),
            &request,
        );
        self.db.insert(&record).map_err(|e| Refusal::new(Outcome::StateDbUnavailable, e.to_string()))?;
        self.persist_and_announce(&record, EventKind::Snapshot, &record.milestone, "submitted");
        self.start(record.clone());
        Ok(record)
    }

    /// The daemon's budget for runs at once (see [`crate::decisions::budget`]).
    pub fn budget(&self) -> Budget {
        Budget {
            cores: crate::resources::cpu_count(),
            memory_bytes: self.memory_budget,
            max_runs: self.config.max_runs,
        }
    }

    /// What a run of `stage` writing into `workspace` is expected to hold while driven: read
    /// again at every check, so a run's share shrinks to its counted prims once profiled.
    fn need_of(stage: &str, workspace: &str) -> Need {
        let size = workflow::ctx::stage_size(&Workspace::new(workspace), stage);
        Need::of(size, std::fs::metadata(stage).map_or(0, |m| m.len()))
    }

    /// The shares the driven runs hold now.
    fn held(admission: &Admission) -> Vec<Need> {
        admission.driven.values().map(|(stage, ws)| Self::need_of(stage, ws)).collect()
    }

    /// Whether `record` may start beside runs holding `held` now (its share, to add to them),
    /// or why it waits.
    fn admits(&self, held: &[Need], record: &RunRecord) -> Result<Need, String> {
        let need = Self::need_of(&record.stage_path, &record.output_dir);
        let free = crate::resources::free_disk_bytes(Path::new(&record.output_dir)).unwrap_or(u64::MAX);
        admit(&self.budget(), held, &need, free).map(|()| need)
    }

    /// Drive a run now, or queue it when its share of the budget does not fit.
    fn start(self: &Arc<Self>, mut record: RunRecord) {
        // Who drives the run: a daemon started later resumes it only once this process is gone.
        if let Err(e) = self.db.set_owner(&record.run_id, std::process::id()) {
            tracing::error!(run = %record.run_id, "cannot record this process as the run's driver: {e}");
        }
        let mut admission = self.admission.lock().unwrap();
        let line = !admission.waiting.is_empty();
        let why = if line {
            // Nobody jumps the queue: the runs waiting are asked in their order, below.
            "it waits for its turn".to_string()
        } else {
            match self.admits(&Self::held(&admission), &record) {
                Ok(_) => {
                    admission.hold(&record);
                    drop(admission);
                    self.drive(record);
                    return;
                }
                Err(why) => why,
            }
        };
        let ahead = admission.ahead_of(record.priority);
        admission.submitted += 1;
        let order = admission.submitted;
        record.state = RunState::Queued;
        record.message = queued_message(&why, ahead);
        admission.waiting.push((record.priority, order, record.clone()));
        let tick = !std::mem::replace(&mut admission.ticking, true);
        drop(admission);
        self.persist_and_announce(&record, EventKind::Snapshot, &record.milestone, &record.message);
        if line {
            // First in line (a higher priority), it may fit now.
            self.admit_waiting();
        }
        if tick {
            let core = self.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ADMISSION_TICK).await;
                    if !core.admit_waiting() {
                        break;
                    }
                }
            });
        }
    }

    /// Start waiting runs while the first in line fits; the one that does not says why.
    /// Returns whether any still waits (the ticker stops when none does).
    fn admit_waiting(self: &Arc<Self>) -> bool {
        let mut starting = Vec::new();
        let mut told = None;
        let waiting = {
            let mut admission = self.admission.lock().unwrap();
            // Read once per pass; each run started in it adds its share.
            let mut held = Self::held(&admission);
            while let Some(at) = admission.next_at() {
                match self.admits(&held, &admission.waiting[at].2) {
                    Ok(need) => {
                        held.push(need);
                        let (_, _, record) = admission.waiting.remove(at);
                        admission.hold(&record);
                        starting.push(record);
                    }
                    Err(why) => {
                        let message = queued_message(&why, 0);
                        let record = &mut admission.waiting[at].2;
                        if record.message != message {
                            record.message = message;
                            told = Some(record.clone());
                        }
                        break;
                    }
                }
            }
            admission.ticking = !admission.waiting.is_empty();
            admission.ticking
        };
        if let Some(record) = told {
            self.persist_and_announce(&record, EventKind::Snapshot, &record.milestone, &record.message);
        }
        for record in starting {
            self.drive(record);
        }
        waiting
    }

    fn drive(self: &Arc<Self>, mut record: RunRecord) {
        record.started_at = crate::record::now_rfc3339();
        record.message.clear();
        let slot = RunSlot::new(record, self.clone());
        self.runs.lock().unwrap().insert(slot.snapshot().run_id, slot.clone());
        let core = self.clone();
        tokio::spawn(async move {
            workflow::drive(slot.clone()).await;
            let swept = slot.snapshot().workspace().sweep_partials();
            if swept > 0 {
                tracing::info!(run = %slot.snapshot().run_id, "{swept} partial layer(s) of lost attempts removed");
            }
            // Its share goes back: the waiting runs that now fit start.
            core.admission.lock().unwrap().driven.remove(&slot.snapshot().run_id);
            core.admit_waiting();
        });
    }

    /// Answer a run's open gate (`gate_id` empty: whichever is open), here or, for a run an
    /// earlier daemon left at its gate, by resuming it.
    pub fn answer(
        self: &Arc<Self>,
        run_id: &str,
        gate_id: &str,
        choice: &str,
        answered_by: &'static str,
    ) -> Result<RunRecord, Refusal> {
        let record = self.load(run_id).ok_or_else(|| Refusal::new(Outcome::RunNotFound, run_id))?;
        let gate = record.gate.clone().filter(|_| record.state == RunState::AwaitingDecision).ok_or_else(|| {
            Refusal::new(Outcome::NoOpenGate, format!("run {run_id} is {:?}, not awaiting a decision", record.state))
        })?;
        let kind = gate.kind().ok_or_else(|| Refusal::new(Outcome::NoOpenGate, format!("unknown gate {}", gate.id)))?;
        if !kind.knows(choice) {
            return Err(Refusal::new(kind.invalid_answer(), format!("unknown branch '{choice}'")));
        }
        if !gate_id.is_empty() && gate_id != gate.id {
            return Err(Refusal::new(Outcome::NoOpenGate, format!("the open gate is {}, not {gate_id}", gate.id)));
        }
        if !gate.branches.iter().any(|b| b == choice) {
            return Err(Refusal::new(
                kind.invalid_answer(),
                format!("'{choice}' is not offered; choose one of {}", gate.branches.join(", ")),
            ));
        }
        let answer = Answer { gate: kind, choice: choice.to_string(), answered_by };
        match self.slot(run_id) {
            Some(slot) => slot.answer(answer),
            None => {
                // Resume a run that an earlier daemon left at the gate.
                let mut resumed = record.clone();
                resumed.gate = None;
                kind.apply(&mut resumed.route, &answer);
                self.start(resumed);
            }
        }
        Ok(self.load(run_id).unwrap_or(record))
    }

    pub fn cancel(&self, run_id: &str) -> Result<RunRecord, Refusal> {
        if let Some(slot) = self.slot(run_id) {
            slot.cancel();
            return Ok(slot.snapshot());
        }
        let queued = {
            let mut admission = self.admission.lock().unwrap();
            let at = admission.waiting.iter().position(|(_, _, r)| r.run_id == run_id);
            at.map(|i| admission.waiting.remove(i).2)
        };
        if let Some(mut record) = queued {
            record.state = RunState::Cancelled;
            record.code = Outcome::Cancelled.code().into();
            record.message = "cancelled by request while it waited in the queue".into();
            self.persist_and_announce(&record, EventKind::Finished, &record.milestone, "cancelled");
            return Ok(record);
        }
        // A run no live process drives (its daemon died) is cancelled where it is saved.
        let mut record = self.load(run_id).ok_or_else(|| Refusal::new(Outcome::RunNotFound, run_id))?;
        if record.state.is_terminal() || self.driven_elsewhere(run_id) {
            return Err(Refusal::new(Outcome::RunNotFound, format!("{run_id} is not active in this daemon")));
        }
        record.state = RunState::Cancelled;
        record.code = Outcome::Cancelled.code().into();
        record.message = "cancelled by request after its daemon stopped".into();
        self.persist_and_announce(&record, EventKind::Finished, &record.milestone.clone(), "cancelled");
        Ok(record)
    }

    /// Stop every executor (daemon or embedded-mode exit). Connected ones close their stream
    /// once the request arrives: wait for that (up to a grace), or the daemon's sockets could
    /// close first and an external executor (Kit) would see a lost connection, not a shutdown.
    pub async fn shutdown(&self) {
        // Runs still going end cancelled, their record saying why, before their processes go.
        // A run paused at a gate is not going: it waits, saved, for `usdtune decide`.
        let active: Vec<Arc<RunSlot>> = self.runs.lock().unwrap().values().cloned().collect();
        let going = |s: &&Arc<RunSlot>| matches!(s.snapshot().state, RunState::Running | RunState::Queued);
        for slot in active.iter().filter(going) {
            slot.cancel();
            let milestone = slot.snapshot().milestone;
            slot.commit(EventKind::Snapshot, &milestone, "cancelled: daemon shutdown", |r| {
                r.state = RunState::Cancelled;
                r.code = Outcome::Cancelled.code().into();
                r.message = "the daemon shut down during the run".into();
            });
        }
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

impl Host for Core {
    fn run_task<'a>(&'a self, task: TaskRequest<'a>) -> BoxFuture<'a, TaskReply> {
        Box::pin(async move {
            // Progress of the task, forwarded as run events while it runs.
            let (progress_tx, mut progress_rx) = mpsc::unbounded_channel::<(f64, String)>();
            let forward = {
                let (events, runs) = (self.events.clone(), self.runs.clone());
                let (run_id, milestone) = (task.run_id.to_string(), task.milestone.to_string());
                tokio::spawn(async move {
                    while let Some((fraction, message)) = progress_rx.recv().await {
                        let run = runs.lock().unwrap().get(&run_id).map(|s| s.snapshot());
                        let _ = events.send(RunEvent {
                            run_id: run_id.clone(),
                            kind: EventKind::Progress,
                            milestone: milestone.clone(),
                            message,
                            fraction,
                            run,
                        });
                    }
                })
            };
            let Some(_turn) = self.turn(&task, &progress_tx).await else {
                forward.abort();
                let failure =
                    TaskFailure::new(Outcome::Cancelled, format!("the run was cancelled before '{}'", task.kind));
                return TaskReply { executor_id: String::new(), outcome: Err(failure), usage: Default::default() };
            };
            let started = std::time::Instant::now();
            tracing::info!(run = %task.run_id, kind = %task.kind, "task started");
            let limits = TaskLimits { deadline: Some(task.deadline), cancel: Some(task.cancel.clone()) };
            let wait = self.config.executor_wait;
            let mut attempt = 1;
            let (executor_id, outcome, usage) = loop {
                let ready = match task.pool {
                    None => self.ensure_local_executor(task.runtime).await,
                    Some(_) => Ok(()),
                };
                if let Err(failure) = ready {
                    break (String::new(), Err(failure), Default::default());
                }
                let progress = Some(progress_tx.clone());
                // Pool workers (Phase 4) are standalone processes whatever the run's runtime.
                let runtime = task.runtime.filter(|_| task.pool.is_none());
                let task_id = uuid::Uuid::new_v4().to_string();
                self.db.task_begun(&task_id, task.owner_run_id, task.kind, attempt);
                let (executor_id, outcome, usage) = self
                    .hub
                    .run_task_in(&task_id, task.pool, runtime, task.kind, &task.params, progress, wait, limits.clone())
                    .await;
                let lost = outcome.as_ref().err().is_some_and(|f| f.code == Outcome::ExecutorLost.code());
                let (state, code) = match &outcome {
                    Ok(_) => (crate::rundb::TaskState::Done, ""),
                    Err(f) if lost => (crate::rundb::TaskState::Lost, f.code.as_str()),
                    Err(f) => (crate::rundb::TaskState::Failed, f.code.as_str()),
                };
                self.db.task_ended(&task_id, state, code);
                if !lost || attempt >= TASK_ATTEMPTS || task.cancel.load(std::sync::atomic::Ordering::SeqCst) {
                    break (executor_id, outcome, usage);
                }
                // The executor died or went silent mid-task: the task is leased again, to a fresh
                // process where this daemon starts them. A task's outputs count only once its
                // result arrives, and each attempt writes them whole, so a retry is safe.
                attempt += 1;
                let message = format!(
                    "executor {executor_id} was lost during '{}'; the task is leased again (attempt {attempt} of {TASK_ATTEMPTS})",
                    task.kind
                );
                tracing::warn!(run = %task.run_id, "{message}");
                self.announce_warning(task.run_id, task.milestone, &message);
                // Its process may not be reaped yet (the socket closes before the exit is
                // reported): end it for certain, so a fresh one is started rather than awaited.
                self.end_executor(&executor_id);
                if let Some(pool) = task.pool {
                    if let Err(failure) = self.respawn_worker(pool, &executor_id) {
                        break (executor_id, Err(failure), usage);
                    }
                }
            };
            forward.abort();
            if let Err(failure) = &outcome {
                if [Outcome::TaskDeadlineExceeded, Outcome::Cancelled].iter().any(|o| o.code() == failure.code) {
                    // The task was abandoned, not finished: a native call cannot be interrupted in
                    // its process, so the process (and what it started) is ended. A fresh one is
                    // started for the next task.
                    self.end_executor(&executor_id);
                }
            }
            tracing::info!(run = %task.run_id, kind = %task.kind, executor = %executor_id,
                           seconds = started.elapsed().as_secs_f64(), "task ended");
            // Kit's own errors during the task are the run's: said, and kept on its record.
            for line in self.new_kit_errors(&executor_id) {
                self.announce_warning(task.run_id, task.milestone, &format!("Kit logged: {line}"));
                if let Some(slot) = self.slot(task.run_id) {
                    slot.update(|r| {
                        if r.runtime_errors.len() < crate::record::MAX_RUNTIME_ERRORS {
                            r.runtime_errors.push(line.clone());
                        }
                    });
                }
            }
            TaskReply { executor_id, outcome, usage }
        })
    }

    /// Phase 4 runs each target in a standalone worker process (batch-mode.md: one target, one
    /// job), `count` of them at once.
    fn ensure_workers(&self, pool: &str, count: usize) -> Result<bool, TaskFailure> {
        let Some(env) = &self.config.local_executor else { return Ok(false) };
        let mut workers = self.workers.lock().unwrap();
        for n in 1..=count {
            let id = format!("{pool}-{n}");
            if workers.get_mut(&id).is_some_and(ExecutorProcess::running) {
                continue;
            }
            let child = self.spawn_executor(env, &id, RUNTIME_STANDALONE)?;
            workers.insert(id, child);
        }
        Ok(true)
    }

    /// Their memory goes back as soon as the batch that needed them is over.
    fn release_workers<'a>(&'a self, pool: &'a str, keep: usize) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let beyond = |id: &str| pool_member(id, pool).is_some_and(|n| n > keep);
            self.hub.shutdown_where(beyond, "Phase 4 worker no longer needed");
            let stopping: Vec<_> = {
                let mut workers = self.workers.lock().unwrap();
                let ids: Vec<String> = workers.keys().filter(|id| beyond(id)).cloned().collect();
                ids.into_iter().filter_map(|id| workers.remove(&id)).collect()
            };
            stop_children(stopping, Duration::from_secs(5)).await;
        })
    }

    /// Dropping a worker kills it and what it started.
    fn drop_workers(&self, pool: &str) {
        let in_pool = |id: &str| pool_member(id, pool).is_some();
        self.hub.shutdown_where(in_pool, "run ended");
        self.workers.lock().unwrap().retain(|id, _| !in_pool(id));
    }

    fn persist_and_announce(&self, record: &RunRecord, kind: EventKind, milestone: &str, message: &str) {
        // The database first: it is what a restarted daemon believes.
        if let Err(e) = self.db.update(record) {
            tracing::error!(run = %record.run_id, "cannot persist run: {e}");
        }
        if let Err(e) =
            record.workspace().write_artifact("run", &serde_json::to_value(record).expect("record serializes"))
        {
            tracing::error!(run = %record.run_id, "cannot persist run: {e}");
        }
        let _ = self.events.send(RunEvent {
            run_id: record.run_id.clone(),
            kind,
            milestone: milestone.into(),
            message: message.into(),
            fraction: -1.0,
            run: Some(record.clone()),
        });
    }

    fn max_workers(&self) -> usize {
        self.config.max_workers
    }

    fn executor_pids(&self) -> Vec<u32> {
        self.hub.connected().iter().filter_map(|h| u32::try_from(h.pid).ok().filter(|pid| *pid > 0)).collect()
    }

    fn task_deadline_scale(&self) -> f64 {
        self.config.task_deadline_scale
    }

    fn announce_progress(&self, run_id: &str, milestone: &str, fraction: f64, message: &str) {
        self.announce(run_id, EventKind::Progress, milestone, message, fraction);
    }

    fn announce_warning(&self, run_id: &str, milestone: &str, message: &str) {
        self.announce(run_id, EventKind::Warning, milestone, message, -1.0);
    }
}

/// Kit's error lines in a stretch of its log (`[Error]`, as carb writes them), trimmed.
pub fn kit_error_lines(text: &str) -> Vec<String> {
    text.lines().filter(|l| l.contains("[Error]")).map(|l| l.trim().chars().take(400).collect()).collect()
}

/// Wait for executors that were asked to shut down; end each (and its group) after `grace`.
async fn stop_children(children: Vec<ExecutorProcess>, grace: Duration) {
    futures::future::join_all(children.into_iter().map(|c| c.stop(grace))).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_queue_starts_the_highest_priority_then_the_first_submitted() {
        let mut queue = super::Admission::default();
        for (priority, id) in [(0, "a"), (5, "b"), (0, "c"), (5, "d")] {
            queue.submitted += 1;
            let record = crate::record::RunRecord::new(
                id.into(),
                "/s.usda".into(),
                "/out".into(),
                &[],
                &crate::record::Submission { priority, ..Default::default() },
            );
            queue.waiting.push((priority, queue.submitted, record));
        }
        assert_eq!(queue.ahead_of(5), 2);
        assert_eq!(queue.ahead_of(0), 4);
        let order: Vec<String> = std::iter::from_fn(|| queue.next()).map(|r| r.run_id).collect();
        assert_eq!(order, ["b", "d", "a", "c"]);
    }

    #[test]
    fn kit_error_lines_are_carbs_error_lines_only() {
        let log = "2026-12-02 10:00:00 [Info] [omni.ext] loaded\n\
                   2026-12-02 10:00:01 [Warning] [carb] slow\n\
                   2026-12-02 10:00:02 [Error] [omni.usd] Failed to open layer   \n";
        assert_eq!(super::kit_error_lines(log), ["2026-12-02 10:00:02 [Error] [omni.usd] Failed to open layer"]);
        assert!(super::kit_error_lines("").is_empty());
    }
}
