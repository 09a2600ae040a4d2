//! The daemon's durable state: runs, tasks and their leases in one SQLite database in the
//! data dir (`<data dir>/usdtune.db`, WAL mode). The database is the authority on which runs
//! exist, which process drives each and how far it got; `run.json` in a run's workspace is
//! the same record, written after it, for people and tools. Artifacts stay files.
//!
//! Every write is one transaction, so a daemon killed with SIGKILL leaves each row either
//! as it was or as it became, never half of it; a restarted daemon reads back every run it
//! left unfinished and voids the leases it held (their executors were told nothing, and the
//! interrupted phase runs again). Several processes may share the file (a daemon and an
//! embedded `usdtune` on one data dir): SQLite's locking serialises them, each waits up to
//! [`BUSY_WAIT`] for the other.
//!
//! Measured on this 2-core machine: upserting a finished run's record (8.8 KB of JSON) takes
//! 28–31 µs with `synchronous=NORMAL` (5 rounds of 2,000), so persisting on every run event
//! costs nothing a user sees.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::outcome::Outcome;
use crate::record::{now_rfc3339, RunRecord};

/// How long a write waits for another process holding the database.
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// The file, under the data dir.
const DB_FILE: &str = "usdtune.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    workspace   TEXT NOT NULL,
    stage_path  TEXT NOT NULL,
    state       TEXT NOT NULL,
    code        TEXT NOT NULL,
    priority    INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    owner_pid   INTEGER,
    record      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_state ON runs(state);
CREATE TABLE IF NOT EXISTS tasks (
    task_id     TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    daemon_pid  INTEGER NOT NULL,
    executor_id TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL,
    code        TEXT NOT NULL DEFAULT '',
    created_at  TEXT NOT NULL,
    leased_at   TEXT NOT NULL DEFAULT '',
    ended_at    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS tasks_by_run ON tasks(run_id);
";

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct DbError {
    pub path: PathBuf,
    #[source]
    pub source: rusqlite::Error,
}

/// Where a task stands. `Waiting`: no executor holds it yet; `Leased`: one does; the rest end
/// it. `Void`: the daemon that leased it died, so nobody awaits its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    Waiting,
    Leased,
    Done,
    Failed,
    Lost,
    Void,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Leased => "leased",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Lost => "lost",
            Self::Void => "void",
        }
    }
}

/// One attempt at a task, as the database keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRow {
    pub task_id: String,
    pub run_id: String,
    pub kind: String,
    pub attempt: u32,
    pub executor_id: String,
    pub state: String,
    pub code: String,
    pub leased_at: String,
    pub ended_at: String,
}

pub struct RunDb {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl RunDb {
    /// Open (or create) the database in `data_dir`, and bring in the runs an earlier version
    /// indexed as `runs/<id>.workspace` files.
    pub fn open(data_dir: &Path) -> Result<Self, DbError> {
        let path = data_dir.join(DB_FILE);
        let fail = |source| DbError { path: path.clone(), source };
        if let Err(e) = std::fs::create_dir_all(data_dir) {
            return Err(fail(rusqlite::Error::InvalidPath(format!("{}: {e}", data_dir.display()).into())));
        }
        let conn = Connection::open(&path).map_err(fail)?;
        conn.busy_timeout(BUSY_WAIT).map_err(fail)?;
        // WAL: readers (the dashboard, `usdtune runs`) never wait on the writer; NORMAL
        // syncing loses at most the last commits on a power cut, never consistency.
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)).map_err(fail)?;
        conn.execute_batch("PRAGMA synchronous=NORMAL;").map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        let db = Self { path, conn: Mutex::new(conn) };
        db.import_index_files(&data_dir.join("runs"));
        Ok(db)
    }

    fn fail(&self, source: rusqlite::Error) -> DbError {
        DbError { path: self.path.clone(), source }
    }

    /// Add a submitted run's row (or replace it).
    pub fn insert(&self, record: &RunRecord) -> Result<(), DbError> {
        self.store(
            "INSERT INTO runs (run_id, workspace, stage_path, state, code, priority, created_at, updated_at, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT(run_id) DO UPDATE SET workspace = ?2, stage_path = ?3, state = ?4, code = ?5,
                 priority = ?6, updated_at = ?8, record = ?9",
            record,
        )
        .map(drop)
    }

    /// Save a run's record over its row, in one transaction. A run with no row (a route
    /// trial or a later pass: a child its parent drives) is not one of the daemon's: false.
    pub fn update(&self, record: &RunRecord) -> Result<bool, DbError> {
        self.store(
            "UPDATE runs SET workspace = ?2, stage_path = ?3, state = ?4, code = ?5, priority = ?6,
                 updated_at = ?8, record = ?9
             WHERE run_id = ?1 AND created_at = ?7",
            record,
        )
        .map(|rows| rows > 0)
    }

    fn store(&self, sql: &str, record: &RunRecord) -> Result<usize, DbError> {
        let json = serde_json::to_string(record).expect("a record serializes");
        let state = serde_json::to_value(record.state).expect("a state serializes");
        self.conn
            .lock()
            .unwrap()
            .execute(
                sql,
                params![
                    record.run_id,
                    record.output_dir,
                    record.stage_path,
                    state.as_str().unwrap_or_default(),
                    record.code,
                    record.priority,
                    record.created_at,
                    now_rfc3339(),
                    json
                ],
            )
            .map_err(|e| self.fail(e))
    }

    pub fn get(&self, run_id: &str) -> Option<RunRecord> {
        let conn = self.conn.lock().unwrap();
        let text: Option<String> = conn
            .query_row("SELECT record FROM runs WHERE run_id = ?1", [run_id], |r| r.get(0))
            .optional()
            .unwrap_or_else(|e| {
                tracing::error!("{}: cannot read run {run_id}: {e}", self.path.display());
                None
            });
        text.and_then(|t| parse_record(run_id, &t))
    }

    /// Every run, the first submitted first.
    pub fn list(&self) -> Vec<RunRecord> {
        let conn = self.conn.lock().unwrap();
        let rows =
            conn.prepare_cached("SELECT run_id, record FROM runs ORDER BY created_at, run_id").and_then(|mut s| {
                s.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                    .collect::<Result<Vec<_>, _>>()
            });
        match rows {
            Ok(rows) => rows.iter().filter_map(|(id, text)| parse_record(id, text)).collect(),
            Err(e) => {
                tracing::error!("{}: cannot list runs: {e}", self.path.display());
                Vec::new()
            }
        }
    }

    /// This process drives the run from now on.
    pub fn set_owner(&self, run_id: &str, pid: u32) -> Result<(), DbError> {
        self.conn
            .lock()
            .unwrap()
            .execute("UPDATE runs SET owner_pid = ?2 WHERE run_id = ?1", params![run_id, pid])
            .map(drop)
            .map_err(|e| self.fail(e))
    }

    /// The process that last took the run on.
    pub fn owner(&self, run_id: &str) -> Option<u32> {
        let conn = self.conn.lock().unwrap();
        conn.query_row("SELECT owner_pid FROM runs WHERE run_id = ?1", [run_id], |r| r.get::<_, Option<u32>>(0))
            .optional()
            .ok()
            .flatten()
            .flatten()
    }

    /// A task attempt begins: it waits for an executor.
    pub fn task_begun(&self, task_id: &str, run_id: &str, kind: &str, attempt: u32) {
        self.write(
            "INSERT OR REPLACE INTO tasks (task_id, run_id, kind, attempt, daemon_pid, state, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![task_id, run_id, kind, attempt, std::process::id(), TaskState::Waiting.as_str(), now_rfc3339()],
        );
    }

    /// An executor took the task.
    pub fn task_leased(&self, task_id: &str, executor_id: &str) {
        self.write(
            "UPDATE tasks SET executor_id = ?2, state = ?3, leased_at = ?4 WHERE task_id = ?1",
            params![task_id, executor_id, TaskState::Leased.as_str(), now_rfc3339()],
        );
    }

    /// The attempt ended: `code` empty when it succeeded.
    pub fn task_ended(&self, task_id: &str, state: TaskState, code: &str) {
        self.write(
            "UPDATE tasks SET state = ?2, code = ?3, ended_at = ?4 WHERE task_id = ?1",
            params![task_id, state.as_str(), code, now_rfc3339()],
        );
    }

    /// Leases and waits a dead daemon left open are void: nobody awaits their results. Returns
    /// how many. `alive` says whether a daemon process still runs.
    pub fn void_orphan_tasks(&self, alive: impl Fn(u32) -> bool) -> usize {
        let open = [TaskState::Waiting.as_str(), TaskState::Leased.as_str()];
        let pids: Vec<u32> = {
            let conn = self.conn.lock().unwrap();
            let pids = conn
                .prepare("SELECT DISTINCT daemon_pid FROM tasks WHERE state IN (?1, ?2)")
                .and_then(|mut s| s.query_map(open, |r| r.get(0))?.collect::<Result<Vec<u32>, _>>());
            pids.unwrap_or_default()
        };
        let mut voided = 0;
        for pid in pids.into_iter().filter(|pid| *pid != std::process::id() && !alive(*pid)) {
            let conn = self.conn.lock().unwrap();
            voided += conn
                .execute(
                    "UPDATE tasks SET state = ?1, code = ?6, ended_at = ?2
                     WHERE daemon_pid = ?3 AND state IN (?4, ?5)",
                    params![
                        TaskState::Void.as_str(),
                        now_rfc3339(),
                        pid,
                        open[0],
                        open[1],
                        Outcome::DaemonRestarted.code()
                    ],
                )
                .unwrap_or(0);
        }
        voided
    }

    /// A run's task attempts, in the order they began.
    pub fn tasks_of(&self, run_id: &str) -> Vec<TaskRow> {
        let conn = self.conn.lock().unwrap();
        let rows = conn
            .prepare_cached(
                "SELECT task_id, run_id, kind, attempt, executor_id, state, code, leased_at, ended_at
                 FROM tasks WHERE run_id = ?1 ORDER BY created_at, rowid",
            )
            .and_then(|mut s| {
                s.query_map([run_id], |r| {
                    Ok(TaskRow {
                        task_id: r.get(0)?,
                        run_id: r.get(1)?,
                        kind: r.get(2)?,
                        attempt: r.get(3)?,
                        executor_id: r.get(4)?,
                        state: r.get(5)?,
                        code: r.get(6)?,
                        leased_at: r.get(7)?,
                        ended_at: r.get(8)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()
            });
        rows.unwrap_or_default()
    }

    /// A bookkeeping write whose failure must not stop a run: logged.
    fn write(&self, sql: &str, params: impl rusqlite::Params) {
        if let Err(e) = self.conn.lock().unwrap().execute(sql, params) {
            tracing::error!("{}: {e}", self.path.display());
        }
    }

    /// Runs an earlier version listed as `runs/<id>.workspace` (a file holding the workspace
    /// folder) with `runs/<id>.owner`: each becomes a row, and its index files go.
    fn import_index_files(&self, runs_dir: &Path) {
        let Ok(entries) = std::fs::read_dir(runs_dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(run_id) = name.to_str().and_then(|n| n.strip_suffix(".workspace")) else { continue };
            if self.get(run_id).is_none() {
                let workspace = std::fs::read_to_string(entry.path()).unwrap_or_default();
                let record: Option<RunRecord> = crate::store::Workspace::new(workspace.trim()).read("run").ok();
                match record.map(|r| self.insert(&r)) {
                    Some(Ok(())) => {}
                    Some(Err(e)) => {
                        tracing::error!("cannot import run {run_id}: {e}");
                        continue;
                    }
                    // Its workspace is gone: nothing to list.
                    None => {}
                }
            }
            let _ = std::fs::remove_file(entry.path());
            let _ = std::fs::remove_file(runs_dir.join(format!("{run_id}.owner")));
        }
    }
}

fn parse_record(run_id: &str, text: &str) -> Option<RunRecord> {
    serde_json::from_str(text).map_err(|e| tracing::error!("run {run_id}: its stored record does not parse: {e}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RunState, Submission};

    fn record(id: &str, created: &str) -> RunRecord {
        let mut r =
            RunRecord::new(id.into(), "/s.usda".into(), format!("/out/{id}"), &["a", "b"], &Submission::default());
        r.created_at = created.into();
        r
    }

    #[test]
    fn runs_survive_a_reopen_in_submission_order_and_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let db = RunDb::open(dir.path()).unwrap();
        db.insert(&record("run-b", "2026-01-02T00:00:00Z")).unwrap();
        let mut a = record("run-a", "2026-01-01T00:00:00Z");
        db.insert(&a).unwrap();
        a.state = RunState::Completed;
        assert!(db.update(&a).unwrap());
        // A child run its parent drives has no row of its own and gets none.
        assert!(!db.update(&record("run-child", "2026-01-03T00:00:00Z")).unwrap());
        db.set_owner("run-b", 4242).unwrap();
        drop(db);

        let db = RunDb::open(dir.path()).unwrap();
        let ids: Vec<String> = db.list().into_iter().map(|r| r.run_id).collect();
        assert_eq!(ids, ["run-a", "run-b"]);
        assert_eq!(db.get("run-a").unwrap().state, RunState::Completed, "the last write wins");
        assert_eq!(db.owner("run-b"), Some(4242));
        assert_eq!(db.owner("run-a"), None);
        assert!(db.get("run-x").is_none());
        let mode: String = db.conn.lock().unwrap().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_dead_daemons_open_tasks_are_void_and_a_live_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = RunDb::open(dir.path()).unwrap();
        db.task_begun("t1", "run-a", "profile", 1);
        db.task_leased("t1", "exec-1");
        db.task_begun("t2", "run-a", "facts", 1);
        db.task_ended("t2", TaskState::Done, "");
        // Another daemon's open lease, alive or dead.
        db.write(
            "INSERT INTO tasks (task_id, run_id, kind, attempt, daemon_pid, state, created_at) VALUES
             ('t3', 'run-b', 'probe', 1, 1, 'leased', '2026'), ('t4', 'run-c', 'probe', 1, 2, 'waiting', '2026')",
            [],
        );
        assert_eq!(db.void_orphan_tasks(|pid| pid == 2), 1, "pid 1 is dead, pid 2 alive, this process skipped");
        let states = |run: &str| db.tasks_of(run).into_iter().map(|t| t.state).collect::<Vec<_>>();
        assert_eq!(states("run-a"), ["leased", "done"]);
        assert_eq!(states("run-b"), ["void"]);
        assert_eq!(db.tasks_of("run-b")[0].code, Outcome::DaemonRestarted.code());
        assert_eq!(states("run-c"), ["waiting"]);
        let leased = &db.tasks_of("run-a")[0];
        assert_eq!((leased.executor_id.as_str(), leased.attempt), ("exec-1", 1));
        assert!(!leased.leased_at.is_empty());
    }

    #[test]
    fn an_earlier_versions_index_files_are_imported_once() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let workspace = dir.path().join("ws");
        std::fs::create_dir_all(&runs).unwrap();
        let mut old = record("run-old", "2025-01-01T00:00:00Z");
        old.output_dir = workspace.display().to_string();
        old.workspace().write_artifact("run", &serde_json::to_value(&old).unwrap()).unwrap();
        std::fs::write(runs.join("run-old.workspace"), workspace.display().to_string()).unwrap();
        std::fs::write(runs.join("run-old.owner"), "1").unwrap();
        // A run whose workspace was deleted: its index goes, nothing is listed.
        std::fs::write(runs.join("run-gone.workspace"), "/nowhere/at/all").unwrap();

        let db = RunDb::open(dir.path()).unwrap();
        assert_eq!(db.list().into_iter().map(|r| r.run_id).collect::<Vec<_>>(), ["run-old"]);
        assert!(std::fs::read_dir(&runs).unwrap().next().is_none(), "index files removed");
    }

    #[test]
    fn an_unwritable_data_dir_is_an_error_that_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let err = RunDb::open(&blocker.join("data")).err().expect("a file is in the way");
        assert!(err.to_string().contains("file"), "{err}");
    }
}
