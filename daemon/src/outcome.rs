//! Every stable outcome code the product can emit, in one table: its exit class (what
//! `usdtune` exits with when a run ends on it), where it comes from, and what it means.
//! `docs/error-codes.md` is rendered from this table ([`markdown`]); a test fails when the
//! two differ, and another fails when the executor raises a code that is not here.
//!
//! Rust code never spells a code as a string literal: it names an [`Outcome`]. Codes an
//! executor sends travel as text ([`crate::executors::TaskFailure`]) and are checked
//! against this table by the test that reads the executor's source.

use std::fmt;

/// What `usdtune` exits with when a run (or a command) ends on a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitClass {
    /// 0: the run completed.
    Completed = 0,
    /// 1: the run failed or was blocked, or it completed with a failed check.
    Failed = 1,
    /// 2: usage or input error.
    Input = 2,
    /// 3: the run awaits a decision.
    Awaiting = 3,
}

macro_rules! outcomes {
    ($( $variant:ident = $code:literal, $exit:ident, $origin:literal, $meaning:literal; )*) => {
        /// A stable outcome code. See the module documentation.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Outcome { $($variant,)* }

        impl Outcome {
            /// Every outcome, in the order of the documentation.
            pub const ALL: &'static [Outcome] = &[$(Outcome::$variant,)*];

            /// The code as users, logs and artifacts see it (`snake_case`).
            pub fn code(self) -> &'static str {
                match self { $(Outcome::$variant => $code,)* }
            }

            pub fn exit_class(self) -> ExitClass {
                match self { $(Outcome::$variant => ExitClass::$exit,)* }
            }

            /// Which part of the product emits it: CLI, daemon, run (a phase), executor, setup.
            pub fn origin(self) -> &'static str {
                match self { $(Outcome::$variant => $origin,)* }
            }

            /// One line: what happened, and where there is one, what to do.
            pub fn meaning(self) -> &'static str {
                match self { $(Outcome::$variant => $meaning,)* }
            }
        }
    };
}

outcomes! {
    // ---- the input and the command line (exit 2)
    StageNotFound = "stage_not_found", Input, "CLI, daemon, executor", "the stage path does not exist";
    ReportUnreadable = "report_unreadable", Input, "CLI",
        "`check-report`: the report or a manifest it names cannot be read as JSON (the path is named)";
    ReportNotWritten = "report_not_written", Failed, "CLI", "`show --open`: the run has no HTML report yet";
    OpenerFailed = "opener_failed", Failed, "CLI",
        "`show --open`: the browser or desktop opener could not be started, or failed (set BROWSER)";
    StageIsDirectory = "stage_is_directory", Input, "CLI, daemon, executor", "the stage path is a folder";
    StageNotAFile = "stage_not_a_file", Input, "CLI, daemon",
        "the stage path is not a regular file (a FIFO, a socket, a device)";
    StageUnreadable = "stage_unreadable", Input, "CLI, daemon",
        "the stage path cannot be read (permissions, a symbolic link loop)";
    StagePathMissing = "stage_path_missing", Input, "executor", "a task was given no stage path";
    UnsupportedFormat = "unsupported_format", Input, "CLI, daemon, executor",
        "not a USD file extension (.usd, .usda, .usdc, .usdz), or none";
    StageOpenFailed = "stage_open_failed", Input, "executor",
        "USD cannot open or compose the stage (corrupt crate, bad syntax)";
    InputGeometryInvalid = "input_geometry_invalid", Input, "run",
        "a mesh of the stage has invalid topology or points (a face of fewer than 3 vertices, counts that do not add \
         up to the indices, an index outside the points, a non-finite point): it cannot be optimized or proven \
         preserved, so nothing is written; stage-facts.json lists each mesh with its problem";
    InputCompositionCycle = "input_composition_cycle", Input, "run",
        "the stage composes around a reference, payload or sublayer cycle, which an output written from it would \
         silently drop: nothing is written; stage-facts.json lists the cycles";
    InvalidRestructureBranch = "invalid_restructure_branch", Input, "CLI, daemon, run",
        "the branch is unknown or not offered for this stage";
    InvalidGoal = "invalid_goal", Input, "CLI, daemon", "`--goal` is not load-time, footprint or balanced";
    InvalidRuntime = "invalid_runtime", Input, "CLI, daemon", "`--runtime` is not kit or standalone";
    NucleusUnreachable = "nucleus_unreachable", Input, "run",
        "an omniverse:// stage's server did not answer omni.client.stat: nothing was opened";
    NucleusAuthFailed = "nucleus_auth_failed", Input, "run",
        "the Nucleus server refused access to the stage (no cached login, no service account): nothing was opened";
    NucleusAssetMissing = "nucleus_asset_missing", Input, "run", "the omniverse:// URL names no asset on its server";
    NucleusClientUnavailable = "nucleus_client_unavailable", Input, "executor",
        "an omniverse:// stage needs omni.client, which ships with the Kit kernel: run `usdtune setup --kit`";
    NucleusOpenUnsupported = "nucleus_open_unsupported", Input, "run",
        "the omniverse:// stage is reachable, but this installation has no omniverse:// resolver for USD: optimize a \
         local copy";
    InvalidPathMap = "invalid_path_map", Input, "CLI", "`usdtune executor --path-map` is not DAEMON_PREFIX=EXECUTOR_PREFIX";
    KitRuntimeUnavailable = "kit_runtime_unavailable", Input, "daemon",
        "`--runtime kit`, but the executor environment has no Kit kernel and no Kit executor is attached (run \
         `usdtune setup --kit`)";
    OperationNotApproved = "operation_not_approved", Input, "CLI, daemon",
        "an operation asked for by name (`--operation`) is not lossless and automatic and was not approved: \
         approve it with `--approve OP` (or its class); on a terminal usdtune asks once, up front, showing each \
         op's safety class and guardrails";
    InvalidPipeline = "invalid_pipeline", Input, "CLI, daemon",
        "`--pipeline` names no known pipeline (the valid names are listed)";
    OutputDirUnwritable = "output_dir_unwritable", Input, "daemon",
        "the run workspace (`-o`) cannot be created or written";
    OutputDirNotEmpty = "output_dir_not_empty", Input, "daemon",
        "the run workspace (`-o`) holds files that are not a usdtune run's (the folder is named; `--force` \
         writes there anyway)";
    OutputDirInUse = "output_dir_in_use", Input, "daemon",
        "the run workspace (`-o`) holds a usdtune run of another stage (both are named; `--force` replaces it)";
    OutputOverlapsSource = "output_overlaps_source", Input, "daemon, run",
        "the run workspace (`-o`) holds the source stage or a layer or asset it composes (the file is named): \
         an output could overwrite it";
    SourceModified = "source_modified", Failed, "run",
        "a layer or asset the source composes changed during the run (the file is named); usdtune never writes \
         them, so something else did: the results are not trusted";
    RunNotFound = "run_not_found", Input, "daemon", "no run with this id is known to the daemon";
    NoOpenGate = "no_open_gate", Input, "daemon",
        "the run is not awaiting a decision, or the open gate is another one";
    DaemonUnreachable = "daemon_unreachable", Input, "CLI",
        "no usdtuned answers at `--daemon` and the command cannot run embedded";
    // ---- who may call the daemon, and on what (exit 2)
    Unauthenticated = "unauthenticated", Input, "daemon",
        "the call carried no token, or one the daemon does not know (clients: USDTUNE_TOKEN or `--token-file`; \
         executors: their own token); the daemon logs the refusal";
    TokenRoleRefused = "token_role_refused", Input, "daemon",
        "a valid token of the other role: an executor token cannot submit, answer or cancel, a client token \
         cannot attach as an executor";
    TokenFileUnsafe = "token_file_unsafe", Input, "CLI, daemon",
        "a token file cannot be read or created, holds no token, or others may read it (`chmod 600` it; the \
         file is named)";
    PathNotAbsolute = "path_not_absolute", Input, "daemon",
        "a daemon was sent a relative stage or output path: it cannot know the caller's folder (the CLI sends \
         absolute paths)";
    PathOutsideAllowedRoots = "path_outside_allowed_roots", Input, "daemon",
        "the stage or output folder, with links and `..` resolved, is under none of the daemon's `--allow-root` \
         folders (the path and the roots are named)";
    InsecureListenRefused = "insecure_listen_refused", Input, "daemon",
        "`usdtune daemon --listen` on a non-loopback address without `--tls-cert`/`--tls-key`: tokens would \
         cross the network in clear text (say `--insecure` to do it anyway)";
    TlsConfigInvalid = "tls_config_invalid", Input, "CLI, daemon",
        "a TLS certificate, key or CA file cannot be read or used (the file is named)";
    Python312NotFound = "python312_not_found", Input, "setup", "no CPython 3.12 for the executor environment";
    ExecutorSourceMissing = "executor_source_missing", Input, "setup",
        "the usdtune_executor package is not where setup looks (set USDTUNE_EXECUTOR_SRC)";
    // ---- gates (exit 3)
    AwaitingRestructureDecision = "awaiting_restructure_decision", Awaiting, "run",
        "paused at the restructure gate; answer with `usdtune decide RUN BRANCH`";
    // ---- restructure, instancing and remap (Phases 2f, 3, 5)
    RestructureModeUnavailable = "restructure_mode_unavailable", Failed, "executor",
        "a restructure plan names a materialization the executor does not know";
    RestructureNothingToAuthor = "restructure_nothing_to_author", Failed, "run",
        "the chosen branch found no shareable group (or no boundary level) to author; the skipped groups are named";
    RestructureNotLossless = "restructure_not_lossless", Failed, "run",
        "the restructured stage failed the per-mesh preservation proof (`preservation-apply-restructure.json` \
         names the meshes); its output is not used";
    CompositionErrorIntroduced = "composition_error_introduced", Failed, "run",
        "an output composes with an error its source does not have (an arc cycle, an unresolved arc, an invalid \
         asset path): the step fails and its output is not used; the message names the prim and the layer";
    RestructurePlanStale = "restructure_plan_stale", Failed, "executor",
        "a planned source prim or placement is not on the stage: refresh the assessment";
    RestructureCopyFailed = "restructure_copy_failed", Failed, "executor",
        "a prototype subtree could not be copied into its layer";
    RestructureOutsideTarget = "restructure_outside_target", Failed, "executor",
        "a subtree to extract targets something outside it that is not a material (it cannot stand alone)";
    RefRemapCycle = "ref_remap_cycle", Failed, "executor",
        "the layers above the optimized children reference each other in a cycle: remap by hand";
    RemapTargetMissing = "remap_target_missing", Failed, "executor", "Phase 5 remap: an optimized child is missing";
    RemapLayerUnreadable = "remap_layer_unreadable", Failed, "executor", "Phase 5 remap: a layer cannot be opened";
    RemapNothingImpacted = "remap_nothing_impacted", Failed, "executor",
        "Phase 5 remap: nothing references the optimized children";
    // ---- mesh operations (Phases 4, 4.5)
    BlockedMissingUsdOptimize = "blocked_missing_usd_optimize", Failed, "run, executor",
        "operations were requested but usd-optimize cannot load";
    BlockedMissingUsdOptimizeOperation = "blocked_missing_usd_optimize_operation", Failed, "run, executor",
        "a requested op is not in `operationsAvailable`";
    UnknownOperationArgument = "unknown_operation_argument", Failed, "executor",
        "an op argument is not one the op declares (usd-optimize would silently ignore it)";
    OrderingInvariantViolated = "ordering_invariant_violated", Failed, "run",
        "an op chain breaks a seed ordering invariant (the rule is named)";
    OperationFailed = "operation_failed", Failed, "executor", "usd-optimize returned failure for an op";
    ExportFailed = "export_failed", Failed, "executor", "an output layer could not be written";
    EditedLayerOutsideTarget = "edited_layer_outside_target", Failed, "executor",
        "an op edited a layer besides the target's root layer (a sublayer, a referenced layer, the session \
         layer); only the root is written, so the target fails rather than drop those edits";
    OutputIsSource = "output_is_source", Failed, "executor", "refused: the output path is the source";
    InstancerPrecisionUnmatched = "instancer_precision_unmatched", Failed, "executor",
        "a point instance deduplicateGeometry wrote matches no mesh the target had, so its exact placement \
         cannot be restored";
    InstancerPrecisionLost = "instancer_precision_lost", Failed, "executor",
        "a point instance, re-authored at float precision, still sits beyond float precision from the copy it \
         replaced (e.g. a sheared copy a point instancer cannot express)";
    InstancerPrecisionUnsupported = "instancer_precision_unsupported", Failed, "executor",
        "a new point instancer's prototype is not a single mesh, or an instance has zero scale";
    GeometryNotPreserved = "geometry_not_preserved", Failed, "run",
        "the op chain's output changed the composed geometry beyond what its safety class allows (the \
         preservation proof names the meshes): the output is set aside and its targets are blocked";
    OutputCountMismatch = "output_count_mismatch", Failed, "run",
        "a Phase 4 batch wrote fewer optimized files than it optimized targets (a collision or a failed write)";
    TargetCoverageIncomplete = "target_coverage_incomplete", Failed, "run",
        "a Phase 4 target was blocked, e.g. its output failed the geometry preservation proof and was discarded";
    ReportRenderFailed = "report_render_failed", Failed, "run",
        "the HTML report could not be rendered from the report (a template defect; the JSON and Markdown stand)";
    ReportGateFailed = "report_gate_failed", Failed, "run",
        "the optimization report would not pass the upstream report gate (schema, coverage reconciled against \
         the manifests, footprint arithmetic, preservation, descent convergence): each violation is listed in \
         the run's message and in report-gate.json";
    // ---- measurement and validation
    CoverageLedgerIncomplete = "coverage_ledger_incomplete", Failed, "run",
        "a validation plan's (target, concept) pair got no disposition (probed, timed out, runtime blocked): \
         the run does not advance past it";
    ProfileModeMismatch = "profile_mode_mismatch", Failed, "run",
        "the baseline and after profiles were captured in different modes and cannot be compared";
    ProfileTimeout = "profile_timeout", Failed, "executor", "a profile capture ran past its time limit";
    ProfileFailed = "profile_failed", Failed, "executor",
        "the profile capture process failed without a code of its own (its last error is quoted)";
    FactsWorkerFailed = "facts_worker_failed", Failed, "executor",
        "a stage-walk worker process (large stages are walked by one process per core) exited with an error";
    // ---- executors and the daemon
    ExecutorLost = "executor_lost", Failed, "daemon", "the executor died or went silent during a task";
    NoExecutor = "no_executor", Failed, "daemon", "no executor able to run the task connected in time";
    PathNotReachable = "path_not_reachable", Failed, "daemon",
        "executors able to run the task are connected, but none reaches its stage or output (their --path-root \
         and --path-map); none that does connected in time";
    TaskDeadlineExceeded = "task_deadline_exceeded", Failed, "daemon",
        "a task ran past its deadline (its kind's expected cost for the stage's size, with a wide margin): it was \
         cancelled and the executor process the daemon started for it was ended";
    ExecutorSpawnFailed = "executor_spawn_failed", Failed, "daemon", "the local executor could not be started";
    DaemonRestarted = "daemon_restarted", Failed, "daemon",
        "a task attempt's lease was held by a daemon that died: the restarted daemon voids it (its state in the \
         database is `void`) and runs the attempt's phase again";
    StateDbUnavailable = "state_db_unavailable", Failed, "CLI, daemon",
        "the daemon's database of runs and tasks (`usdtune.db` in the data dir) cannot be opened or written (the \
         file is named): check the data dir's permissions and free space";
    DaemonNotServing = "daemon_not_serving", Failed, "daemon",
        "an executor was to be started before the daemon had a listening address";
    ExecutorInternalError = "executor_internal_error", Failed, "executor",
        "a bug in the executor; the message names the exception";
    UnknownTaskKind = "unknown_task_kind", Failed, "executor",
        "the daemon sent a task kind this executor does not have (versions differ)";
    ExecutorProtocolError = "executor_protocol_error", Failed, "daemon",
        "an executor's result or streamed table was not what the daemon expects";
    ArtifactSchemaViolation = "artifact_schema_violation", Failed, "daemon",
        "an artifact did not match its schema (or its type) and was not written or not read";
    Cancelled = "cancelled", Failed, "daemon", "cancelled by request";
}

impl Outcome {
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|o| o.code() == code).or(match code {
            // The seed's names, which runs recorded before the upstream contract's were adopted.
            "blocked_missing_scene_optimizer" => Some(Self::BlockedMissingUsdOptimize),
            "blocked_missing_so_operation" => Some(Self::BlockedMissingUsdOptimizeOperation),
            _ => None,
        })
    }

    /// A gRPC status whose message starts with the code, as clients read it (`code: message`).
    pub fn status(self, message: impl fmt::Display) -> tonic::Status {
        let text = format!("{}: {message}", self.code());
        match self {
            Self::RunNotFound => tonic::Status::not_found(text),
            Self::NoOpenGate => tonic::Status::failed_precondition(text),
            Self::Unauthenticated => tonic::Status::unauthenticated(text),
            Self::TokenRoleRefused | Self::PathOutsideAllowedRoots => tonic::Status::permission_denied(text),
            _ if self.exit_class() == ExitClass::Input => tonic::Status::invalid_argument(text),
            _ => tonic::Status::internal(text),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The exit class of a code a run ended on; unknown codes (an executor's own) are failures.
pub fn exit_class_of(code: &str) -> ExitClass {
    Outcome::parse(code).map_or(ExitClass::Failed, Outcome::exit_class)
}

/// `docs/error-codes.md`, rendered from the table.
pub fn markdown() -> String {
    let mut md = String::from(
        "# Error and outcome codes\n\n\
         Every failure reaches the user as a stable code, a message and, where there is one, the\n\
         offending path. `usdtune` exit codes: 0 run completed · 1 run failed, was blocked, or a\n\
         check failed · 2 usage or input error · 3 the run awaits a decision.\n\n\
         This page is generated from `daemon/src/outcome.rs` (a test fails when they differ; run\n\
         `USDTUNE_BLESS=1 cargo test outcome` to rewrite it).\n\n\
         | code | exit | where | meaning |\n|---|---|---|---|\n",
    );
    for outcome in Outcome::ALL {
        md += &format!(
            "| `{}` | {} | {} | {} |\n",
            outcome.code(),
            outcome.exit_class() as u8,
            outcome.origin(),
            outcome.meaning()
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    #[test]
    fn codes_are_unique_snake_case_and_parse_back() {
        let mut seen = BTreeSet::new();
        for o in Outcome::ALL {
            assert!(seen.insert(o.code()), "{} twice", o.code());
            assert!(o.code().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{o}");
            assert_eq!(Outcome::parse(o.code()), Some(*o));
            assert!(!o.meaning().is_empty() && !o.meaning().ends_with('.'), "{o}: one line, no full stop");
        }
    }

    #[test]
    fn the_error_code_page_is_rendered_from_the_table() {
        let path = repo().join("docs/error-codes.md");
        let wanted = markdown();
        if std::env::var_os("USDTUNE_BLESS").is_some() {
            std::fs::write(&path, &wanted).unwrap();
        }
        let found = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(found == wanted, "docs/error-codes.md is stale: run `USDTUNE_BLESS=1 cargo test outcome`");
    }

    /// Codes the executor raises (`TaskError("code", ...)`, `error_code="code"`, or a
    /// `"code": "..."` in a worker's JSON reply), read from its source.
    fn executor_codes() -> BTreeSet<String> {
        let mut files = vec![repo().join("kit-extension")];
        let mut codes = BTreeSet::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("py") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for marker in ["TaskError(\"", "error_code=\"", "\"code\": \""] {
                for (at, _) in text.match_indices(marker) {
                    let rest = &text[at + marker.len()..];
                    let code: String = rest.chars().take_while(|c| *c != '"').collect();
                    codes.insert(code);
                }
            }
        }
        codes
    }

    #[test]
    fn every_code_the_executor_raises_is_in_the_table() {
        let codes = executor_codes();
        assert!(codes.len() > 20, "the scan found the executor's codes: {codes:?}");
        let unknown: Vec<&String> = codes.iter().filter(|c| Outcome::parse(c).is_none()).collect();
        assert!(unknown.is_empty(), "executor codes missing from outcome.rs: {unknown:?}");
    }

    #[test]
    fn rust_code_names_outcomes_instead_of_spelling_codes() {
        // A code literal in daemon/src outside this file would escape the table.
        let mut files = vec![repo().join("daemon/src")];
        let mut offenders = Vec::new();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.file_name().is_some_and(|n| n == "outcome.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // `cancelled` is also the name of a run state (RunState::Cancelled).
            for o in Outcome::ALL.iter().filter(|o| **o != Outcome::Cancelled) {
                for quoted in [format!("\"{}\"", o.code()), format!("\"{}:", o.code())] {
                    if text.contains(&quoted) {
                        offenders.push(format!("{}: {quoted}", path.display()));
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "spell these as Outcome variants: {offenders:#?}");
    }

    #[test]
    fn exit_classes_follow_the_cli_contract() {
        assert_eq!(exit_class_of("stage_open_failed"), ExitClass::Input);
        assert_eq!(exit_class_of("awaiting_restructure_decision"), ExitClass::Awaiting);
        assert_eq!(exit_class_of("executor_lost"), ExitClass::Failed);
        assert_eq!(exit_class_of("some_executor_code_from_elsewhere"), ExitClass::Failed);
    }
}
