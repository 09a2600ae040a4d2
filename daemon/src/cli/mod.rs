//! The `usdtune` command line. A client of the daemon; with no daemon reachable,
//! `optimize` and `decide` start one in-process with a local executor (embedded mode).
//!
//! Exit codes: 0 run completed · 1 run failed or was blocked · 2 usage or input error ·
//! 3 the run awaits a decision (answer with `usdtune decide RUN BRANCH`).
//! Logs and progress go to stderr; `--json` prints one document on stdout.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::auth::{Bearer, Tokens};
use crate::core::{Config, Core};
use crate::outcome::Outcome;
use crate::proto;
use crate::setup::{self, ExecutorEnv};

/// `println!` and `eprintln!` that survive a closed pipe (`usdtune runs | head`, `2>&1 | head`):
/// what does not fit is dropped and the command goes on to its clean-up (ending the run's
/// executors), where the std macros would panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod follow;
mod live;

use follow::{follow, run_json, show, state_name};

#[derive(Parser)]
#[command(
    name = "usdtune",
    version,
    about = "USD performance tuning: profile, assess, restructure, optimize, verify, report"
)]
struct Cli {
    /// Daemon address (HOST:PORT). Without a reachable daemon, commands run embedded.
    #[arg(long, global = true, env = "USDTUNE_DAEMON", default_value = crate::DEFAULT_DAEMON_ADDRESS)]
    daemon: String,
    /// The token file for calls to a running daemon (USDTUNE_TOKEN holds the token itself;
    /// default: the local daemon's client token file in the data dir, when readable).
    #[arg(long, global = true, env = "USDTUNE_TOKEN_FILE", value_name = "PATH")]
    token_file: Option<std::path::PathBuf>,
    /// Talk TLS to the daemon, trusting this CA certificate (PEM).
    #[arg(long, global = true, env = "USDTUNE_TLS_CA", value_name = "PEM")]
    tls_ca: Option<std::path::PathBuf>,
    /// Most executor processes one run's Phase 4 may use at once (default: one per CPU core).
    /// Read by the daemon that runs the job: the embedded one, or `usdtune daemon`.
    #[arg(long, global = true, env = "USDTUNE_MAX_WORKERS", default_value_t = 0)]
    max_workers: usize,
    /// Print only errors, the closing summary and the verdict (no line per phase).
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Also print the executor's log lines (they go to the run's logs/ folder otherwise), and
    /// one plain line per phase instead of the live view.
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Prepare the executor environment (CPython 3.12 venv with pinned usd-optimize, grpcio, ...).
    Setup {
        /// Also install test-only tools (headless Kit, pytest).
        #[arg(long)]
        dev: bool,
        /// Also install the Kit kernel (PyPI omniverse-kit) for `--runtime kit`.
        #[arg(long)]
        kit: bool,
        /// Print the environment's python executable on stdout (for scripts).
        #[arg(long)]
        print_python: bool,
    },
    /// Optimize a stage: every phase of the workflow, ending in OUTDIR/optimization-report.{json,md}.
    Optimize {
        stage: String,
        /// Run workspace: artifacts, report and the optimized stage go here.
        #[arg(short = 'o', long = "out")]
        out: Option<String>,
        /// Answer the restructure gate up front (deduplicate-internally, extract-as-assets,
        /// decompose-for-selective-loading, optimize-as-is, exit).
        #[arg(long)]
        restructure: Option<String>,
        /// Accept a gate's recommended branch without asking (a gate with no recommendation still asks).
        #[arg(short, long)]
        yes: bool,
        /// What the restructure gate's recommendation optimizes for; each offered route is tried
        /// and measured (load-time, footprint, balanced).
        #[arg(long, value_parser = ["load-time", "footprint", "balanced"])]
        goal: Option<String>,
        /// Write into an output folder that holds other files or another stage's run.
        #[arg(long)]
        force: bool,
        /// The run's time budget in seconds (default: 2 minutes per 100k prims, at least 2
        /// minutes). Validation jobs are sized to it; what does not fit is recorded, not run.
        #[arg(long, value_name = "SECONDS", value_parser = positive_seconds)]
        budget: Option<f64>,
        /// Phase 7: the most scoped passes to take (1: none after the first). A later pass runs
        /// only to correct what the previous one measured; the better pass's output is final.
        #[arg(long, value_name = "N", default_value_t = crate::decisions::iterate::DEFAULT_PASSES,
              value_parser = clap::value_parser!(u32).range(1..=9))]
        passes: u32,
        /// The executor runtime (Phase 0's runtime gate): standalone CPython, or headless Kit
        /// with the executor extension. Unset: asked on a terminal when both are installed,
        /// else standalone (recorded as chosen unattended).
        #[arg(long, value_parser = crate::executors::RUNTIMES)]
        runtime: Option<String>,
        /// Submit to the running daemon and return at once, printing the run id (follow it
        /// with `usdtune watch RUN`). Needs a daemon: an embedded run would end with this process.
        #[arg(long)]
        detach: bool,
        /// Its place in a busy daemon's queue (`usdtune daemon --max-runs`): higher runs first,
        /// then first come.
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        priority: i32,
        /// Print one JSON document on stdout (report path, output path, verdict, workflow_mode).
        #[arg(long)]
        json: bool,
        /// usd-optimize operations the user asks for explicitly; a missing one blocks the run.
        #[arg(long = "operation")]
        operations: Vec<String>,
        /// Approve full-stage validation: Tier 2/3 validators run over the whole stage instead
        /// of one representative per geometry class and the flagged pairs (slow on large stages).
        #[arg(long)]
        approve_full_validation: bool,
        /// Run a named usd-optimize pipeline instead of the chain evidence selects
        /// (safe-cleanup, memory-reduction, load-time-reduction, mesh-count-reduction, data-quality-baseline).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::decisions::op_chain::PIPELINES))]
        pipeline: Option<String>,
        /// Approve a gated operation (its key, e.g. decimateMeshes) or a whole class
        /// (bounded-loss, destructive); repeatable. Unapproved gated ops are listed, not run.
        #[arg(long = "approve")]
        approvals: Vec<String>,
    },
    /// Assess a stage read-only: facts, structure assessment and hierarchy-dedupe candidates
    /// (OUTDIR/structure-assessment.json, OUTDIR/dedupe-candidates.json). Never writes a stage.
    Assess {
        /// One or more stages; several share one executor and get OUTDIR/<n>-<stem>/ each.
        #[arg(required = true)]
        stages: Vec<String>,
        /// Run workspace for the artifacts.
        #[arg(short = 'o', long = "out")]
        out: Option<String>,
        /// Print one JSON document on stdout (workspace, classification, timings).
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon service (same as `usdtuned`). Every call needs a token: clients the
    /// client token, executors the executor token (files created with mode 0600 when absent,
    /// the tokens printed once).
    Daemon {
        #[arg(long, default_value = crate::DEFAULT_DAEMON_ADDRESS)]
        listen: String,
        /// Do not start a local executor when none is connected.
        #[arg(long)]
        no_spawn_executor: bool,
        /// The client token's file (default: client.token in the data dir).
        #[arg(long = "token-file", value_name = "PATH")]
        client_token_file: Option<std::path::PathBuf>,
        /// The executor token's file (default: executor.token in the data dir).
        #[arg(long, value_name = "PATH")]
        executor_token_file: Option<std::path::PathBuf>,
        /// Serve stages and output folders under this folder only; repeatable (default: the
        /// daemon's working folder). Links and `..` are resolved before the check.
        #[arg(long = "allow-root", value_name = "DIR")]
        allow_roots: Vec<std::path::PathBuf>,
        /// Serve TLS with this certificate chain (PEM); needs --tls-key.
        #[arg(long, value_name = "PEM", requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        /// The TLS certificate's private key (PEM).
        #[arg(long, value_name = "PEM", requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
        /// Listen on a non-loopback address without TLS (tokens then cross the network in clear).
        #[arg(long)]
        insecure: bool,
        /// Run at most this many runs at once; the rest wait in the queue, higher `--priority`
        /// first, then first come (0: only the budget limits: two runs per core, and the
        /// memory and disk each run is expected to hold). A run paused at a gate keeps its place.
        #[arg(long, value_name = "N", default_value_t = 0)]
        max_runs: usize,
        /// Megabytes of memory the runs driven at once may be expected to hold (each run's
        /// expected peak, from its stage's size); a run that does not fit waits in the queue.
        /// Default: 80 % of the memory available when the daemon starts.
        #[arg(long, value_name = "MB")]
        memory_budget: Option<u64>,
        /// Also serve the web dashboard on this address (HTTP; the page asks for the client
        /// token). A non-loopback address needs --insecure.
        #[arg(long, value_name = "ADDR")]
        dashboard: Option<String>,
    },
    /// Attach an executor to a running daemon (`--daemon`), from this or any machine; it
    /// reads the executor token from USDTUNE_TOKEN or `--token-file`, and reconnects with
    /// backoff when the daemon goes away. Ends on SIGINT/SIGTERM.
    Executor {
        /// The name the executor attaches under (default: executor-<host>-<pid>).
        #[arg(long)]
        executor_id: Option<String>,
        /// A folder this executor can read and write, in its own view; repeatable (default:
        /// every path). The daemon gives it only tasks whose stage and outputs lie under one.
        #[arg(long = "path-root", value_name = "DIR")]
        path_roots: Vec<String>,
        /// DAEMON_PREFIX=EXECUTOR_PREFIX: where the daemon's paths are mounted here (e.g.
        /// /mnt/share=//server/share); repeatable. Paths go out and results come back through it.
        #[arg(long = "path-map", value_name = "DAEMON=EXECUTOR")]
        path_maps: Vec<String>,
    },
    /// List runs.
    Runs {
        #[arg(long)]
        json: bool,
    },
    /// Show one run: its report (pretty, json, md) or its run record (run).
    Show {
        run: String,
        /// pretty: a terminal summary of the run and its report; json: optimization-report.json;
        /// md: optimization-report.md; run: the run record (state, phases, gate) as JSON.
        #[arg(long, value_enum, default_value_t = ShowFormat::Pretty)]
        format: ShowFormat,
        /// Open the run's HTML report (optimization-report.html) in the browser ($BROWSER, else
        /// the desktop's opener) instead of printing.
        #[arg(long)]
        open: bool,
    },
    /// Check an optimization report against the report gate (coverage reconciled with its
    /// manifests, footprint arithmetic, preservation, descent convergence); exit 1 on a violation.
    CheckReport {
        report: String,
        /// An apply-restructure manifest to reconcile with, besides those the report records; repeatable.
        #[arg(long = "manifest")]
        manifests: Vec<String>,
        /// Print the violations as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Answer a run's open gate, then follow the run to its end.
    Decide {
        run: String,
        branch: String,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a run.
    Cancel { run: String },
    /// Follow a run of a running daemon to its end, as `optimize` shows it (the closing
    /// summary at once when it has ended).
    Watch {
        run: String,
        /// Print the run's final state as one JSON document on stdout.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ShowFormat {
    Pretty,
    Json,
    Md,
    Run,
}

pub fn main_with(args: impl IntoIterator<Item = String>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let daemon_mode = matches!(cli.command, Command::Daemon { .. });
    let filter =
        std::env::var("USDTUNE_LOG").unwrap_or_else(|_| if daemon_mode { "info".into() } else { "warn".into() });
    // Colour only on a terminal: a daemon's log usually goes to a file.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            err!("Error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// SIGINT, or SIGTERM where there is one: what stops a daemon or an embedded run.
/// A `--budget` value: seconds, above zero.
fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!("'{text}' is not a number of seconds above zero")),
    }
}

async fn stop_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// `--quiet`: progress notes are not printed.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// `--verbose`: executor log lines on stderr too.
static VERBOSE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn quiet() -> bool {
    QUIET.load(std::sync::atomic::Ordering::Relaxed)
}

fn verbose() -> bool {
    VERBOSE.load(std::sync::atomic::Ordering::Relaxed)
}

/// A progress or information line on stderr (not with `--quiet`; errors are printed apart).
fn note(message: &str) {
    if !quiet() {
        err!("[usdtune] {message}");
    }
}

/// A RunService client whose calls carry the client token.
pub(crate) type Client = proto::run_service_client::RunServiceClient<InterceptedService<Channel, Bearer>>;

/// How this process reaches a running daemon: its address, the token to show, the CA to trust.
struct Remote {
    address: String,
    token: Option<String>,
    tls_ca: Option<std::path::PathBuf>,
}

impl Remote {
    /// USDTUNE_TOKEN, else `--token-file`, else the local daemon's client token file when
    /// this user can read it. A named file that is unsafe is an error; none at all is not
    /// (the daemon answers `unauthenticated`).
    fn from_cli(cli: &Cli) -> anyhow::Result<Self> {
        let token = crate::auth::find_token(cli.token_file.as_deref(), &client_token_path(None))?;
        Ok(Self { address: cli.daemon.clone(), token, tls_ca: cli.tls_ca.clone() })
    }

    fn endpoint(&self) -> anyhow::Result<tonic::transport::Endpoint> {
        let scheme = if self.tls_ca.is_some() { "https" } else { "http" };
        let mut endpoint = Channel::from_shared(format!("{scheme}://{}", self.address))?;
        if let Some(ca) = &self.tls_ca {
            let pem = std::fs::read(ca)
                .map_err(|e| anyhow::anyhow!("{}: {}: {e}", Outcome::TlsConfigInvalid, ca.display()))?;
            let tls =
                tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(pem));
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| anyhow::anyhow!("{}: {}: {e}", Outcome::TlsConfigInvalid, ca.display()))?;
        }
        Ok(endpoint)
    }
}

fn client_token_path(given: Option<std::path::PathBuf>) -> std::path::PathBuf {
    given.unwrap_or_else(|| crate::setup::data_dir().join("client.token"))
}

fn executor_token_path(given: Option<std::path::PathBuf>) -> std::path::PathBuf {
    given.unwrap_or_else(|| crate::setup::data_dir().join("executor.token"))
}

/// A daemon to talk to: the reachable one, or an embedded one started here.
struct Session {
    client: Client,
    embedded: Option<Arc<Core>>,
}

impl Session {
    /// `logs`: where an embedded daemon's executors log (the run's `logs/` folder).
    async fn open(
        remote: &Remote,
        allow_embedded: bool,
        max_workers: usize,
        logs: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Self> {
        match remote.endpoint()?.connect_timeout(Duration::from_millis(500)).connect().await {
            Ok(channel) => {
                let bearer = Bearer::new(remote.token.as_deref())?;
                return Ok(Self { client: Client::new(InterceptedService::new(channel, bearer)), embedded: None });
            }
            // A TLS CA says a daemon is meant: its failure is the answer, not a local run.
            Err(e) if !allow_embedded || remote.tls_ca.is_some() => {
                let mut causes = vec![e.to_string()];
                let mut source = std::error::Error::source(&e);
                while let Some(cause) = source {
                    causes.push(cause.to_string());
                    source = cause.source();
                }
                anyhow::bail!(
                    "{}: no usdtuned at {} ({})",
                    Outcome::DaemonUnreachable,
                    remote.address,
                    causes.join(": ")
                );
            }
            Err(_) => {}
        }
        let env = ExecutorEnv::default_location();
        if !env.is_ready(false) {
            note("executor environment missing or stale: running `usdtune setup` first");
            setup::setup(&env, false, &mut |m| note(m))?;
        }
        // The embedded daemon lives and dies with this process: its tokens never touch the disk.
        let security = crate::service::Security::ephemeral();
        let mut config = Config::new(Some(env), max_workers);
        config.logs_dir = logs.unwrap_or(config.logs_dir);
        config.executor_output_inherited = verbose();
        config.executor_token = Some(security.tokens.executor.clone());
        if !verbose() {
            note(&format!("executor logs: {}", config.logs_dir.display()));
        }
        let core = Core::new(config)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let bearer = Bearer::new(Some(&security.tokens.client))?;
        let (address, _) = crate::service::serve(core.clone(), listener, security)?;
        let channel = Channel::from_shared(format!("http://{address}"))?.connect().await?;
        Ok(Self { client: Client::new(InterceptedService::new(channel, bearer)), embedded: Some(core) })
    }

    async fn close(self) {
        if let Some(core) = self.embedded {
            core.shutdown().await;
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    QUIET.store(cli.quiet, std::sync::atomic::Ordering::Relaxed);
    VERBOSE.store(cli.verbose, std::sync::atomic::Ordering::Relaxed);
    // Read only by the commands that call a daemon (an unsafe token file is their error alone).
    let remote = Remote::from_cli(&cli);
    match cli.command {
        Command::Setup { dev, kit, print_python } => {
            let env = ExecutorEnv::default_location();
            setup::setup(&env, dev, &mut |m| note(m))?;
            if kit {
                setup::install_kit(&env, &mut |m| note(m))?;
            }
            if print_python {
                out!("{}", env.python().display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Daemon {
            listen,
            no_spawn_executor,
            client_token_file,
            executor_token_file,
            allow_roots,
            tls_cert,
            tls_key,
            insecure,
            dashboard,
            max_runs,
            memory_budget,
        } => {
            let paths = DaemonPaths {
                client_token: client_token_path(client_token_file),
                executor_token: executor_token_path(executor_token_file),
                allow_roots,
                tls: tls_cert.zip(tls_key),
                dashboard,
            };
            let budget = RunBudget { max_runs, memory_bytes: memory_budget.map(|mb| mb << 20) };
            run_daemon(&listen, no_spawn_executor, insecure, paths, cli.max_workers, budget).await
        }
        Command::Executor { executor_id, path_roots, path_maps } => {
            if let Some(bad) =
                path_maps.iter().find(|m| m.split_once('=').is_none_or(|(d, e)| d.is_empty() || e.is_empty()))
            {
                err!("Error: {}: --path-map {bad} is not DAEMON_PREFIX=EXECUTOR_PREFIX", Outcome::InvalidPathMap);
                return Ok(ExitCode::from(2));
            }
            let reach = [("USDTUNE_PATH_ROOTS", path_roots), ("USDTUNE_PATH_MAP", path_maps)];
            run_executor(&cli.daemon, cli.tls_ca.as_deref(), cli.token_file.as_deref(), executor_id, reach).await
        }
        Command::Assess { stages, out, json } if stages.len() == 1 => {
            let request = proto::SubmitRunRequest {
                stage_path: stages[0].clone(),
                output_dir: out.unwrap_or_default(),
                assess_only: true,
                ..Default::default()
            };
            submit_and_follow(&remote?, cli.max_workers, request, false, json).await
        }
        Command::Assess { stages, out, json } => {
            assess_many(&remote?, cli.max_workers, &stages, out.as_deref(), json).await
        }
        Command::Optimize {
            stage,
            out,
            restructure,
            yes,
            json,
            operations,
            approve_full_validation,
            pipeline,
            approvals,
            goal,
            force,
            budget,
            passes,
            runtime,
            detach,
            priority,
        } => {
            let (runtime, runtime_chosen_by) = match choose_runtime(runtime, yes || json || detach) {
                Ok(chosen) => chosen,
                Err(e) => return Ok(refused(Outcome::InvalidRuntime.code(), &e.to_string(), json)),
            };
            let mut approvals = approvals;
            if !(json || detach) {
                approvals.extend(approve_requested(&operations, &approvals)?);
            }
            let request = proto::SubmitRunRequest {
                stage_path: stage,
                output_dir: out.unwrap_or_default(),
                restructure_branch: restructure.unwrap_or_default(),
                requested_operations: operations,
                assess_only: false,
                approve_full_validation,
                pipeline: pipeline.unwrap_or_default(),
                approvals,
                goal: goal.unwrap_or_default(),
                force,
                budget_seconds: budget.unwrap_or_default(),
                passes,
                runtime,
                runtime_chosen_by,
                priority,
            };
            if detach {
                return submit_detached(&remote?, request, json).await;
            }
            submit_and_follow(&remote?, cli.max_workers, request, yes, json).await
        }
        Command::Decide { run, branch, json } => {
            let mut session = Session::open(&remote?, true, cli.max_workers, None).await?;
            let answered = session
                .client
                .answer_gate(proto::AnswerGateRequest { run_id: run.clone(), gate_id: String::new(), branch })
                .await;
            if let Err(status) = answered {
                err!("Error: {}", status.message());
                session.close().await;
                return Ok(ExitCode::from(2));
            }
            let code = follow(&mut session.client, &run, false, json).await?;
            session.close().await;
            Ok(code)
        }
        Command::Runs { json } => {
            let mut session = Session::open(&remote?, true, cli.max_workers, None).await?;
            let runs = session.client.list_runs(proto::ListRunsRequest {}).await?.into_inner().runs;
            if json {
                let list: Vec<_> = runs.iter().map(run_json).collect();
                out!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for r in &runs {
                    out!("{}  {:<18} {:<32} {}", r.run_id, state_name(r.state), r.milestone, r.stage_path);
                }
            }
            session.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Show { run, format, open } => {
            let mut session = Session::open(&remote?, true, cli.max_workers, None).await?;
            let shown = session.client.get_run(proto::GetRunRequest { run_id: run }).await;
            session.close().await;
            match shown {
                Ok(r) if open => open_report(&r.into_inner()),
                Ok(r) => show(&r.into_inner(), format),
                Err(status) => {
                    err!("Error: {}", status.message());
                    Ok(ExitCode::from(2))
                }
            }
        }
        Command::CheckReport { report, manifests, json } => check_report(&report, &manifests, json),
        Command::Cancel { run } => {
            let mut session = Session::open(&remote?, false, cli.max_workers, None).await?;
            session.client.cancel_run(proto::CancelRunRequest { run_id: run }).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch { run, json } => {
            let mut session = Session::open(&remote?, false, cli.max_workers, None).await?;
            follow(&mut session.client, &run, false, json).await
        }
    }
}

/// Where a long-running daemon keeps what guards it.
struct DaemonPaths {
    client_token: std::path::PathBuf,
    executor_token: std::path::PathBuf,
    allow_roots: Vec<std::path::PathBuf>,
    tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    dashboard: Option<String>,
}

/// How many runs `usdtune daemon` drives at once: `--max-runs`, `--memory-budget`.
struct RunBudget {
    max_runs: usize,
    memory_bytes: Option<u64>,
}

/// `usdtune daemon`: tokens from their files (made on first start), roots made canonical, TLS
/// when given; a non-loopback address needs TLS or `--insecure`.
async fn run_daemon(
    listen: &str,
    no_spawn_executor: bool,
    insecure: bool,
    paths: DaemonPaths,
    max_workers: usize,
    budget: RunBudget,
) -> anyhow::Result<ExitCode> {
    let refuse = |outcome: Outcome, message: String| {
        err!("Error: {outcome}: {message}");
        Ok(ExitCode::from(2))
    };
    // The token files exist before the port opens: a client that connects at once finds them.
    let (tokens, created) = match Tokens::from_files(&paths.client_token, &paths.executor_token) {
        Ok(loaded) => loaded,
        Err(e) => return refuse(e.outcome, e.message),
    };
    let listener =
        tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let address = listener.local_addr()?;
    if paths.tls.is_none() && !address.ip().is_loopback() && !insecure {
        return refuse(
            Outcome::InsecureListenRefused,
            format!("{address} is not a loopback address: give --tls-cert and --tls-key, or say --insecure"),
        );
    }
    let dashboard = match &paths.dashboard {
        None => None,
        Some(at) => {
            let listener = tokio::net::TcpListener::bind(at)
                .await
                .map_err(|e| anyhow::anyhow!("cannot serve the dashboard on {at}: {e}"))?;
            if !listener.local_addr()?.ip().is_loopback() && !insecure {
                return refuse(
                    Outcome::InsecureListenRefused,
                    format!("the dashboard (plain HTTP) on {at} is not loopback: say --insecure to serve it there"),
                );
            }
            Some(listener)
        }
    };
    let tls = match &paths.tls {
        None => None,
        Some((cert, key)) => {
            let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
            match read(cert).and_then(|c| Ok((c, read(key)?))) {
                Ok((cert, key)) => Some(
                    tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert, key)),
                ),
                Err(message) => return refuse(Outcome::TlsConfigInvalid, message),
            }
        }
    };
    let mut roots = Vec::new();
    let asked = if paths.allow_roots.is_empty() { vec![std::env::current_dir()?] } else { paths.allow_roots };
    for root in asked {
        match std::fs::canonicalize(&root) {
            Ok(real) if real.is_dir() => roots.push(real),
            _ => {
                return refuse(
                    Outcome::PathOutsideAllowedRoots,
                    format!("--allow-root {} is not an existing folder", root.display()),
                )
            }
        }
    }
    let env = (!no_spawn_executor).then(ExecutorEnv::default_location);
    let mut config = Config::new(env, max_workers);
    config.allowed_roots = Some(roots.clone());
    config.max_runs = budget.max_runs;
    config.memory_budget = budget.memory_bytes;
    config.executor_token = Some(tokens.executor.clone());
    // Executors this daemon starts connect back over loopback; with TLS they trust its certificate.
    config.executor_tls_ca = paths.tls.as_ref().map(|(cert, _)| cert.clone());
    for file in &created {
        let token = if *file == paths.client_token { &tokens.client } else { &tokens.executor };
        err!("usdtuned: created {} (mode 0600): {token}", file.display());
    }
    let core = Core::new(config)?;
    let secure = paths.tls.is_some();
    let tokens = Arc::new(tokens);
    let security = crate::service::Security { tokens: tokens.clone(), tls };
    let (address, server) = crate::service::serve(core.clone(), listener, security)?;
    if let Some(listener) = dashboard {
        let (at, _) = crate::dashboard::serve(core.clone(), tokens, listener)?;
        err!("usdtuned: dashboard at http://{at}/ (it asks for the client token)");
    }
    let shown: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    for run_id in core.resume_unfinished() {
        err!("usdtuned: resuming run {run_id}, left unfinished by an earlier daemon");
    }
    err!(
        "usdtuned listening on {address}{}; client token {}, executor token {}; stages and outputs under {}",
        if secure { " (TLS)" } else { "" },
        paths.client_token.display(),
        paths.executor_token.display(),
        shown.join(", ")
    );
    tokio::select! {
        _ = server => {}
        _ = stop_signal() => {}
    }
    core.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// `usdtune executor`: the executor environment's Python serving the daemon at `daemon`,
/// started again with backoff (1 s doubling to 30 s) whenever its connection ends, until
/// SIGINT/SIGTERM, which end it and every process it started.
async fn run_executor(
    daemon: &str,
    tls_ca: Option<&std::path::Path>,
    token_file: Option<&std::path::Path>,
    executor_id: Option<String>,
    reach: [(&str, Vec<String>); 2],
) -> anyhow::Result<ExitCode> {
    let default = executor_token_path(None);
    let Some(token) = crate::auth::find_token(token_file, &default)? else {
        anyhow::bail!(
            "{}: no executor token: USDTUNE_TOKEN is unset, no --token-file was given and {} does not exist",
            Outcome::TokenFileUnsafe,
            default.display()
        );
    };
    let env = ExecutorEnv::default_location();
    if !env.is_ready(false) {
        note("executor environment missing or stale: running `usdtune setup` first");
        setup::setup(&env, false, &mut |m| note(m))?;
    }
    let host = sysinfo::System::host_name().unwrap_or_else(|_| "host".into());
    let id = executor_id.unwrap_or_else(|| format!("executor-{host}-{}", std::process::id()));
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut command = tokio::process::Command::new(env.python());
        #[cfg(unix)]
        command.process_group(0);
        command.args(["-m", "usdtune_executor", "--daemon", daemon, "--executor-id", &id]);
        command.env("USDTUNE_TOKEN", &token).stdin(std::process::Stdio::null()).kill_on_drop(true);
        // What it reaches, as the executor's Hello advertises it (connection.reach).
        for (name, values) in &reach {
            if !values.is_empty() {
                command.env(name, std::env::join_paths(values)?);
            }
        }
        if let Some(ca) = tls_ca {
            command.env("USDTUNE_TLS_CA", ca);
        }
        let started = std::time::Instant::now();
        let mut child = command.spawn().map_err(|e| {
            anyhow::anyhow!("{}: cannot start {}: {e}", Outcome::ExecutorSpawnFailed, env.python().display())
        })?;
        note(&format!("executor {id} attaching to {daemon} (pid {})", child.id().unwrap_or(0)));
        let status = tokio::select! {
            status = child.wait() => status?,
            _ = stop_signal() => {
                crate::core::stop_process_group(&mut child, Duration::from_secs(5)).await;
                return Ok(ExitCode::SUCCESS);
            }
        };
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_secs(1); // it was serving: a fresh outage starts the backoff over
        }
        note(&format!("executor {id} ended ({status}); attaching again in {}s", backoff.as_secs()));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop_signal() => return Ok(ExitCode::SUCCESS),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Open a run's HTML report with `$BROWSER` or the desktop's opener, and wait for the
/// opener (not the browser it hands the page to).
fn open_report(run: &proto::Run) -> anyhow::Result<ExitCode> {
    if run.html_report_path.is_empty() || !std::path::Path::new(&run.html_report_path).is_file() {
        err!("Error: {}: run {} has no HTML report yet", Outcome::ReportNotWritten, run.run_id);
        return Ok(ExitCode::from(1));
    }
    let opener = std::env::var("BROWSER")
        .ok()
        .filter(|b| !b.trim().is_empty())
        .unwrap_or_else(|| if cfg!(target_os = "macos") { "open" } else { "xdg-open" }.to_string());
    let mut words = opener.split_whitespace();
    let program = words.next().unwrap_or("xdg-open");
    let status = std::process::Command::new(program).args(words).arg(&run.html_report_path).status();
    match status {
        Ok(s) if s.success() => {
            out!("{}", run.html_report_path);
            Ok(ExitCode::SUCCESS)
        }
        Ok(s) => {
            err!("Error: {}: {program} exited with {s}; the report is {}", Outcome::OpenerFailed, run.html_report_path);
            Ok(ExitCode::from(1))
        }
        Err(e) => {
            err!(
                "Error: {}: cannot start {program} ({e}); set BROWSER, or open {}",
                Outcome::OpenerFailed,
                run.html_report_path
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// `check-report`: the report gate over any report file and the manifests it records
/// (relative to the report) or that are named.
fn check_report(report: &str, manifests: &[String], json: bool) -> anyhow::Result<ExitCode> {
    let read = |path: &std::path::Path| -> Result<serde_json::Value, String> {
        let text =
            std::fs::read(path).map_err(|e| format!("{}: {}: {e}", Outcome::ReportUnreadable, path.display()))?;
        serde_json::from_slice(&text)
            .map_err(|e| format!("{}: {}: not JSON: {e}", Outcome::ReportUnreadable, path.display()))
    };
    let report_path = std::path::Path::new(report);
    let loaded = read(report_path).and_then(|document| {
        let base = report_path.parent().unwrap_or(std::path::Path::new("."));
        let recorded = document["target_coverage"]["source_manifests"].as_array().cloned().unwrap_or_default();
        let paths = recorded
            .iter()
            .filter_map(|m| m.as_str())
            .map(|m| base.join(m))
            .chain(manifests.iter().map(std::path::PathBuf::from));
        let manifests = paths.map(|p| read(&p)).collect::<Result<Vec<_>, _>>()?;
        Ok((document, manifests))
    });
    let (document, manifests) = match loaded {
        Ok(loaded) => loaded,
        Err(message) => {
            err!("Error: {message}");
            return Ok(ExitCode::from(2));
        }
    };
    let violations = crate::decisions::report_gate::check(&document, &manifests);
    if json {
        out!("{}", serde_json::to_string_pretty(&json!({"passed": violations.is_empty(), "violations": violations}))?);
    } else if violations.is_empty() {
        out!("{report}: passes the report gate ({} manifest(s) reconciled)", manifests.len());
    } else {
        out!("{report}: {} violation(s)", violations.len());
        for v in &violations {
            out!("  {}: {}", v.check, v.message);
        }
    }
    Ok(if violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Submit a run (embedded when no daemon is reachable) and follow it to its end.
async fn submit_and_follow(
    remote: &Remote,
    max_workers: usize,
    request: proto::SubmitRunRequest,
    yes: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let request = match caller_paths(request) {
        Ok(request) => request,
        Err(refusal) => return Ok(refused(&refusal.outcome.to_string(), &refusal.message, json)),
    };
    let logs = (!request.output_dir.is_empty()).then(|| std::path::Path::new(&request.output_dir).join("logs"));
    let mut session = Session::open(remote, true, max_workers, logs).await?;
    let run = match session.client.submit_run(request).await {
        Ok(r) => r.into_inner(),
        Err(status) => {
            session.close().await;
            return Ok(refused_by_daemon(&status, json));
        }
    };
    note(&format!("run {} → {}", run.run_id, run.output_dir));
    let followed = tokio::select! {
        code = follow(&mut session.client, &run.run_id, yes, json) => Some(code),
        _ = stop_signal(), if session.embedded.is_some() => None,
    };
    let Some(code) = followed else {
        // Interrupted: the embedded daemon goes with this process, so its run is cancelled and
        // every process it started is stopped before exiting.
        let message = format!("interrupted; run {} and every process it started were stopped", run.run_id);
        err!("Error: {}: {message}", Outcome::Cancelled);
        session.close().await;
        if json {
            let document = json!({"state": state_name(proto::RunState::Cancelled as i32), "code": Outcome::Cancelled.code(),
                                  "message": message, "run_id": run.run_id, "output_dir": run.output_dir});
            out!("{document}");
        }
        return Ok(ExitCode::from(1));
    };
    let code = code?;
    session.close().await;
    Ok(code)
}

/// Phase 0's runtime gate on this side: `--runtime` (flag); else, on a terminal where both
/// runtimes are installed, the user picks (prompt); else nobody chose (both empty): the daemon
/// takes any executor, starting a standalone one, and records it as chosen unattended.
fn choose_runtime(flag: Option<String>, unattended: bool) -> anyhow::Result<(String, String)> {
    use std::io::IsTerminal;
    if let Some(runtime) = flag {
        return Ok((runtime, "flag".into()));
    }
    let env = ExecutorEnv::default_location();
    let kit = env.kit_version();
    if unattended || kit.is_none() || !std::io::stdin().is_terminal() {
        return Ok((String::new(), String::new()));
    }
    let so = env.package_version("usd_optimize").unwrap_or_else(|| "not installed".into());
    let gate = proto::Gate {
        id: "runtime".into(),
        question: format!(
            "Which runtime should run the executor's work?\n  standalone: CPython {} with usd-optimize {so}\n  \
             kit: headless Kit kernel {} ({})",
            env.python().display(),
            kit.unwrap_or_default(),
            env.root.display()
        ),
        branches: crate::executors::RUNTIMES.iter().map(|r| r.to_string()).collect(),
        recommended: crate::executors::RUNTIME_STANDALONE.into(),
        evidence_json: String::new(),
    };
    match follow::prompt(&gate)? {
        Some(runtime) => Ok((runtime, "prompt".into())),
        None => anyhow::bail!("no runtime chosen (end of input)"),
    }
}

/// The one up-front approval prompt (on a terminal): every operation asked for by name that
/// would wait for an approval, with its class and guardrails. Returns the approvals given; off
/// a terminal none (the daemon then refuses the run, naming `--approve`).
fn approve_requested(requested: &[String], approvals: &[String]) -> anyhow::Result<Vec<String>> {
    use std::io::{BufRead, IsTerminal, Write};
    let unapproved = crate::decisions::op_chain::unapproved_requests(requested, approvals);
    if unapproved.is_empty() || !std::io::stdin().is_terminal() {
        return Ok(Vec::new());
    }
    let mut err = std::io::stderr();
    writeln!(err, "\nThese operations were asked for by name and change what the stage holds:")?;
    for op in &unapproved {
        writeln!(err, "  {}", crate::decisions::op_chain::guardrails(op))?;
    }
    write!(err, "Approve them for this run? [y/N] ")?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let yes = matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes");
    Ok(if yes { unapproved.iter().map(|o| o.operation.to_string()).collect() } else { Vec::new() })
}

/// `optimize --detach`: submit to the running daemon and print the run id.
async fn submit_detached(remote: &Remote, request: proto::SubmitRunRequest, json: bool) -> anyhow::Result<ExitCode> {
    let request = match caller_paths(request) {
        Ok(request) => request,
        Err(refusal) => return Ok(refused(&refusal.outcome.to_string(), &refusal.message, json)),
    };
    let mut session = Session::open(remote, false, 0, None).await?;
    match session.client.submit_run(request).await {
        Ok(run) => {
            let run = run.into_inner();
            if json {
                out!("{}", json!({"run_id": run.run_id, "state": state_name(run.state), "output_dir": run.output_dir}));
            } else {
                out!("{}", run.run_id);
                note(&format!("run {} → {} (follow it: usdtune watch {})", run.run_id, run.output_dir, run.run_id));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(status) => Ok(refused_by_daemon(&status, json)),
    }
}

/// The request's paths made the caller's: the stage checked and made canonical, the output
/// folder absolute, both resolved in this process's folder, not in the daemon's.
fn caller_paths(mut request: proto::SubmitRunRequest) -> Result<proto::SubmitRunRequest, crate::core::Refusal> {
    request.stage_path = crate::core::check_stage(std::path::Path::new(&request.stage_path))?.display().to_string();
    request.output_dir = caller_path(request.output_dir);
    Ok(request)
}

/// A path made absolute in this process's folder (as given when it cannot be; "" stays "").
fn caller_path(path: String) -> String {
    if path.is_empty() {
        return path;
    }
    std::path::absolute(&path).map_or(path, |p| p.display().to_string())
}

/// A submission the daemon refused: its status message reads `code: message`.
fn refused_by_daemon(status: &tonic::Status, json: bool) -> ExitCode {
    let (code, message) = status.message().split_once(": ").unwrap_or(("", status.message()));
    refused(code, message, json)
}

/// A request refused before a run existed: the error on stderr and, with `--json`, one
/// document on stdout all the same (exit 2).
fn refused(code: &str, message: &str, json: bool) -> ExitCode {
    err!("Error: {code}: {message}");
    if json {
        out!("{}", json!({"state": "refused", "code": code, "message": message, "run_id": null}));
    }
    ExitCode::from(2)
}

/// `usdtune assess A B C`: one session (one warm executor) for many stages. Exit code:
/// 2 if any stage was bad input, else 1 if any run failed, else 0. `--json` prints an array.
async fn assess_many(
    remote: &Remote,
    max_workers: usize,
    stages: &[String],
    out: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let logs = out.map(|o| std::path::Path::new(o).join("logs"));
    let mut session = Session::open(remote, true, max_workers, logs).await?;
    let mut docs = Vec::new();
    let mut worst = 0u8;
    for (n, stage) in stages.iter().enumerate() {
        let stem = std::path::Path::new(stage).file_stem().and_then(|s| s.to_str()).unwrap_or("stage");
        let output_dir = out
            .map(|o| std::path::Path::new(o).join(format!("{n:04}-{stem}")).display().to_string())
            .unwrap_or_default();
        // The caller's paths, resolved in the caller's folder (a daemon refuses relative ones); a
        // bad stage is the daemon's to refuse, so that the other stages still run.
        let request = proto::SubmitRunRequest {
            stage_path: caller_path(stage.clone()),
            output_dir: caller_path(output_dir),
            assess_only: true,
            ..Default::default()
        };
        let code = match session.client.submit_run(request).await {
            Ok(run) => {
                let run = run.into_inner();
                note(&format!("{stage}: run {} → {}", run.run_id, run.output_dir));
                let code = follow(&mut session.client, &run.run_id, false, false).await?;
                let done = session.client.get_run(proto::GetRunRequest { run_id: run.run_id }).await?.into_inner();
                docs.push(run_json(&done));
                code
            }
            Err(status) => {
                err!("Error: {}: {}", stage, status.message());
                docs.push(json!({"stage_path": stage, "state": "rejected", "message": status.message()}));
                ExitCode::from(2)
            }
        };
        worst = worst.max(if code == ExitCode::SUCCESS {
            0
        } else if code == ExitCode::from(2) {
            2
        } else {
            1
        });
    }
    session.close().await;
    if json {
        out!("{}", serde_json::to_string_pretty(&docs)?);
    }
    Ok(ExitCode::from(worst))
}
