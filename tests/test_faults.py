"""Faults survived: an executor killed mid-task is replaced and its task leased again; a daemon
killed with SIGKILL mid-run resumes the run from its last settled phase when it starts again.
Real daemon, real executors, real kill -9; each run ends completed with a report that passes
the gate, and nothing is left running."""
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from conftest import USDTUNE, free_port, start_daemon
from test_clean_stop import assert_nothing_left, hall, milestone, running, started_by, wait_for  # noqa: F401


def optimize(home, stage, out, *flags):
    """`usdtune optimize STAGE -o OUT --json` against the test's daemon, in the background."""
    return subprocess.Popen([str(USDTUNE), "optimize", str(stage), "-o", str(out), "--json", *flags], env=home,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def pids(home, fragment):
    return [pid for pid, cmd in started_by(home) if fragment in cmd]


def finished(out):
    record = json.loads((out / "run.json").read_text())
    return record if record["state"] in {"completed", "failed", "blocked", "cancelled"} else None


def assert_completed_and_sound(out):
    record = json.loads((out / "run.json").read_text())
    assert (record["state"], record["code"]) == ("completed", ""), record["message"]
    report = json.loads((out / "optimization-report.json").read_text())
    assert json.loads((out / "report-gate.json").read_text())["passed"] is True
    assert report["structural_summary"]["x_usdtune"]["proof"]["passed"] is True
    for path in out.glob("*.json"):
        json.loads(path.read_text())  # every artifact parses: nothing half-written
    assert not list(out.rglob("*.partial*")), "no attempt's partial layer is left"
    return record


def database(home):
    """The daemon's database, opened read-only the way any tool would (WAL: readers never block
    the daemon)."""
    path = Path(home["USDTUNE_HOME"]) / "usdtune.db"
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def task_states(home, run_id):
    with database(home) as db:
        return db.execute("SELECT kind, state, code FROM tasks WHERE run_id = ? ORDER BY rowid", (run_id,)).fetchall()


def test_a_phase4_worker_killed_mid_task_is_replaced_and_the_run_completes(home, tmp_path, hall):
    daemon = start_daemon(home)
    out = tmp_path / "out"
    client = optimize(home, hall, out, "--restructure", "optimize-as-is", "--passes", "1")
    try:
        workers = wait_for(lambda: milestone(out) == "so-run-operations" and pids(home, "--executor-id ops"), 240,
                           "a Phase 4 worker at work")
        os.kill(workers[0], signal.SIGKILL)
        stdout, stderr = client.communicate(timeout=300)
        assert client.returncode == 0, stderr[-3000:]
        assert "leased again" in stderr + daemon.output(), (stderr + daemon.output())[-3000:]
        assert_completed_and_sound(out)
    finally:
        if client.poll() is None:
            client.kill()
        daemon.stop(signal.SIGTERM)
    assert_nothing_left(home)


def test_a_daemon_killed_mid_run_resumes_it_when_it_starts_again(home, tmp_path, hall):
    daemon = start_daemon(home)
    out = tmp_path / "out"
    client = optimize(home, hall, out, "--restructure", "optimize-as-is", "--passes", "1")
    try:
        wait_for(lambda: milestone(out) == "so-run-validators", 240, "the run to reach Phase 4's validators")
        settled = [p["milestone"] for p in json.loads((out / "run.json").read_text())["phases"] if p["status"] == "done"]
        daemon.proc.kill()
        daemon.proc.wait()
        client.communicate(timeout=60)
        assert client.returncode != 0
        # Its executors notice the closed connection and end, with what they started.
        wait_for(lambda: not running(home, "usdtune_executor"), 20, "the orphaned executors to end")
        assert json.loads((out / "run.json").read_text())["state"] == "running"
        run_id = json.loads((out / "run.json").read_text())["run_id"]
        # What the killed daemon left in its database: the run running, its validators leased.
        with database(home) as db:
            assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert db.execute("SELECT state FROM runs WHERE run_id = ?", (run_id,)).fetchone() == ("running",)
        left_open = [(kind, state) for kind, state, _ in task_states(home, run_id) if state in ("waiting", "leased")]
        assert all(kind == "validate" for kind, _ in left_open), left_open

        daemon = start_daemon(home)
        watched = subprocess.run([str(USDTUNE), "watch", run_id, "--json"], env=home, capture_output=True, text=True,
                                 timeout=400)
        assert watched.returncode == 0, watched.stderr[-3000:] + daemon.output()[-3000:]
        assert f"resuming run {run_id}" in daemon.output()
        record = assert_completed_and_sound(out)
        # The dead daemon's leases were voided, not awaited; every attempt since has ended.
        states = task_states(home, run_id)
        void = [(kind, code) for kind, state, code in states if state == "void"]
        assert len(void) == len(left_open) and all(code == "daemon_restarted" for _, code in void), states
        assert not [s for s in states if s[1] in ("waiting", "leased")], states
        with database(home) as db:
            assert db.execute("SELECT state FROM runs WHERE run_id = ?", (run_id,)).fetchone() == ("completed",)
        # What was settled before the kill was not run again.
        for phase in record["phases"]:
            if phase["milestone"] in settled:
                assert "interrupted" not in phase["note"], phase
        assert any("interrupted by a daemon restart" in p["note"] or p["milestone"] == "so-run-validators"
                   for p in record["phases"])
    finally:
        if client.poll() is None:
            client.kill()
        daemon.stop(signal.SIGTERM)
    assert_nothing_left(home)


def test_cancel_reaches_a_run_whose_daemon_died(home, tmp_path, hall):
    daemon = start_daemon(home, "--no-spawn-executor")
    out = tmp_path / "out"
    client = optimize(home, hall, out)
    try:
        wait_for(lambda: (out / "run.json").exists() and milestone(out), 60, "the run to be saved")
        daemon.proc.kill()
        daemon.proc.wait()
        client.communicate(timeout=60)
        run_id = json.loads((out / "run.json").read_text())["run_id"]
        # Before: the run stayed `running` forever and cancel answered run_not_found.
        daemon = start_daemon(home, "--no-spawn-executor")
        time.sleep(0.5)
        listed = json.loads(subprocess.run([str(USDTUNE), "runs", "--json"], env=home, capture_output=True,
                                           text=True, timeout=60).stdout)
        assert [r["state"] for r in listed if r["run_id"] == run_id] == ["running"]  # resumed, waiting for an executor
        done = subprocess.run([str(USDTUNE), "cancel", run_id], env=home, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: finished(out), 30, "the run to end")
        assert finished(out)["state"] == "cancelled"
    finally:
        if client.poll() is None:
            client.kill()
        daemon.stop(signal.SIGTERM)
    assert_nothing_left(home)


def test_a_database_that_cannot_be_opened_is_named_with_its_code(home, tmp_path):
    (Path(home["USDTUNE_HOME"]) / "usdtune.db").mkdir(parents=True)
    for command in (["daemon", "--listen", f"127.0.0.1:{free_port()}"], ["runs", "--json"]):
        done = subprocess.run([str(USDTUNE), *command], env=home, capture_output=True, text=True, timeout=60)
        assert done.returncode != 0, (command, done.stdout)
        assert "state_db_unavailable" in done.stderr and "usdtune.db" in done.stderr, (command, done.stderr)
        assert "Traceback" not in done.stderr and "panicked" not in done.stderr, done.stderr
    assert_nothing_left(home)


def task_intervals(log_text):
    """(run, kind, start, end) of every task the daemon logged as ended (`task ended`: its
    clock time at the end and its seconds)."""
    import datetime
    import re
    found = []
    for line in log_text.splitlines():
        if "task ended" not in line:
            continue
        stamp = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")).timestamp()
        fields = dict(re.findall(r"(\w+)=(\S+)", line))
        seconds = float(fields["seconds"])
        found.append((fields["run"], fields["kind"], stamp - seconds, stamp))
    return found


def test_concurrent_runs_measure_alone_and_agree_on_the_verdict(home, tmp_path, hall):
    """Three runs of one stage at once through one daemon with a second executor attached:
    every profile task (the baseline and the paired profiles that decide the verdict) ran while
    no other task of any run did, and the three verdicts agree (58c8553 gave four concurrent
    runs of one input two different verdicts)."""
    from conftest import Process, executor_env
    daemon = start_daemon(home)
    helper = Process([str(USDTUNE), "executor", "--executor-id", "helper"], executor_env(home), "helper")
    try:
        outs = [tmp_path / f"out{k}" for k in range(3)]
        runs = [optimize(home, hall, out, "--restructure", "optimize-as-is", "--passes", "1") for out in outs]
        for run in runs:
            stdout, stderr = run.communicate(timeout=900)
            assert run.returncode == 0, stderr[-3000:]
        verdicts = {json.loads((out / "optimization-report.json").read_text())["verdict"] for out in outs}
        assert len(verdicts) == 1, verdicts
        for out in outs:
            assert_completed_and_sound(out)
    finally:
        helper.stop(signal.SIGTERM)
        daemon.stop(signal.SIGTERM)
    tasks = task_intervals(daemon.output())
    measured = [t for t in tasks if t[1] in ("profile", "profile_pair")]
    assert len({t[0] for t in measured}) == 3 and len(measured) >= 6, measured
    for run, kind, start, end in measured:
        overlapping = [t for t in tasks if t[2] < end - 0.01 and t[3] > start + 0.01 and t[:2] != (run, kind)]
        assert not overlapping, f"{kind} of {run} overlapped {overlapping}"
    assert_nothing_left(home)


def test_a_full_daemon_queues_runs_and_starts_the_higher_priority_first(home, tmp_path):
    """`usdtune daemon --max-runs 1`: while one run is driven the others wait, queued and saying
    why; the higher --priority starts next even though it came last; a queued run can be
    cancelled without ever starting."""
    import shutil
    from conftest import FIXTURE, usdtune
    stage = tmp_path / FIXTURE.name
    shutil.copy2(FIXTURE, stage)
    daemon = start_daemon(home, "--max-runs", "1")
    try:
        ids = {}
        for name, priority in [("first", 0), ("low", 0), ("high", 5), ("dropped", 9)]:
            done = usdtune(home, "optimize", str(stage), "-o", str(tmp_path / name), "--restructure", "optimize-as-is",
                           "--passes", "1", "--priority", str(priority), "--detach", "--json", timeout=60)
            assert done.returncode == 0, done.stderr
            ids[name] = json.loads(done.stdout)["run_id"]
        listed = {r["run_id"]: r for r in json.loads(usdtune(home, "runs", "--json", timeout=30).stdout)}
        assert [listed[ids[n]]["state"] for n in ("low", "high", "dropped")] == ["queued"] * 3, listed
        assert usdtune(home, "cancel", ids["dropped"], timeout=30).returncode == 0
        for name in ("first", "low", "high"):
            watched = usdtune(home, "watch", ids[name], "--json", timeout=600)
            assert json.loads(watched.stdout)["state"] == "completed", watched.stderr[-2000:]
        records = {name: json.loads((tmp_path / name / "run.json").read_text()) for name in ids}
        started = {name: records[name]["started_at"] for name in ("first", "low", "high")}
        assert started["first"] < started["high"] < started["low"], started
        assert (records["dropped"]["state"], records["dropped"]["started_at"]) == ("cancelled", "")
        assert not (tmp_path / "dropped" / "profile-baseline.json").exists()
    finally:
        daemon.stop(signal.SIGTERM)


def test_a_run_whose_memory_share_does_not_fit_waits_and_says_so(home, tmp_path):
    """`usdtune daemon --memory-budget 300`: a run of the fixture is expected to hold about
    200 MB, so a second waits, queued with the memory figures, and starts once the first ends."""
    import shutil
    from conftest import FIXTURE, usdtune
    stage = tmp_path / FIXTURE.name
    shutil.copy2(FIXTURE, stage)
    daemon = start_daemon(home, "--memory-budget", "300")
    try:
        ids = []
        for name in ("first", "second"):
            done = usdtune(home, "optimize", str(stage), "-o", str(tmp_path / name), "--restructure", "optimize-as-is",
                           "--passes", "1", "--detach", "--json", timeout=60)
            assert done.returncode == 0, done.stderr
            ids.append(json.loads(done.stdout)["run_id"])
        listed = {r["run_id"]: r for r in json.loads(usdtune(home, "runs", "--json", timeout=30).stdout)}
        assert listed[ids[1]]["state"] == "queued", listed[ids[1]]
        message = json.loads((tmp_path / "second" / "run.json").read_text())["message"]
        assert "memory" in message and "of the 300 MiB budget is free" in message, message
        for run_id in ids:
            watched = usdtune(home, "watch", run_id, "--json", timeout=600)
            assert json.loads(watched.stdout)["state"] == "completed", watched.stderr[-2000:]
        first, second = (json.loads((tmp_path / n / "run.json").read_text()) for n in ("first", "second"))
        assert second["started_at"] > first["started_at"]
        # It started only once the first had ended: the first's report was written before.
        assert os.path.getmtime(tmp_path / "first" / "optimization-report.json") <= \
            os.path.getmtime(tmp_path / "second" / "profile-baseline.json")
    finally:
        daemon.stop(signal.SIGTERM)
    assert_nothing_left(home)


def test_four_runs_on_three_executors_survive_an_executor_and_the_daemon_killed(home, tmp_path):
    """Issue 21's fault drill: four runs of one stage across three executors (the daemon's own
    and two attached with `usdtune executor`); kill -9 an attached executor while it holds a
    task, then SIGKILL the daemon mid-run and start it again. Every run completes, every
    artifact parses, and each output is byte for byte the one a run without faults writes (same
    verdict). The dashboard then lists the four runs with the states `usdtune runs` gives."""
    import hashlib
    import shutil
    import urllib.request
    from pathlib import Path
    from conftest import FIXTURE, Process, executor_env, free_port, usdtune
    from test_dashboard import CHROMIUM_ARGS
    stage = tmp_path / FIXTURE.name
    shutil.copy2(FIXTURE, stage)
    flags = ("--restructure", "optimize-as-is", "--passes", "1")
    reference = usdtune(home, "optimize", str(stage), "-o", str(tmp_path / "reference"), *flags, "--json", timeout=300)
    assert reference.returncode == 0, reference.stderr[-2000:]
    expected = json.loads((tmp_path / "reference" / "optimization-report.json").read_text())
    digest = lambda path: hashlib.sha256(open(path, "rb").read()).hexdigest()

    at = f"127.0.0.1:{free_port()}"
    token = None

    def state():
        request = urllib.request.Request(f"http://{at}/api/state", headers={"authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    daemon = start_daemon(home, "--dashboard", at)
    token = (Path(home["USDTUNE_HOME"]) / "client.token").read_text().strip()
    attached = []
    outs = [tmp_path / f"run{k}" for k in range(4)]
    try:
        attached += [Process([str(USDTUNE), "executor", "--executor-id", f"drill-{k}"], executor_env(home),
                             f"drill-{k}") for k in range(2)]
        for out in outs:
            done = usdtune(home, "optimize", str(stage), "-o", str(out), *flags, "--detach", "--json", timeout=60)
            assert done.returncode == 0, done.stderr
        # kill -9 an attached executor while it holds a task (its wrapper starts it again). The
        # fixture's tasks take well under a second, so a kill can land just after the result
        # went out and lose nothing: then a busy executor is killed again, at most five times.
        for _ in range(5):
            busy = wait_for(lambda: next((e for e in state()["executors"]
                                          if e["executor_id"].startswith("drill-") and e["task"]), None), 120,
                            "an attached executor to hold a task")
            os.kill(busy["pid"], signal.SIGKILL)
            try:
                wait_for(lambda: "is leased again" in daemon.output(), 15, "the lost task to be leased again")
                break
            except AssertionError:
                continue
        assert "is leased again" in daemon.output(), "no killed executor held a task still running"
        # SIGKILL the daemon while runs are still going.
        wait_for(lambda: any(milestone(out) not in (None, "", "omniverse-usd-performance-tuning") for out in outs),
                 120, "a run to get going")
        assert any(json.loads((out / "run.json").read_text())["state"] != "completed" for out in outs)
        daemon.proc.kill()
        daemon.proc.wait()
        daemon = start_daemon(home, "--dashboard", at)
        wait_for(lambda: "resuming run" in daemon.output(), 30, "the restarted daemon to resume the runs")
        records = []
        for out in outs:
            run_id = json.loads((out / "run.json").read_text())["run_id"]
            watched = usdtune(home, "watch", run_id, "--json", timeout=900)
            assert watched.returncode == 0, watched.stderr[-2000:] + daemon.output()[-2000:]
            records.append(assert_completed_and_sound(out))
        for out in outs:
            report = json.loads((out / "optimization-report.json").read_text())
            assert report["verdict"] == expected["verdict"]
            assert digest(report["output_path"]) == digest(expected["output_path"]), out

        from playwright.sync_api import sync_playwright
        listed = {r["run_id"]: r["state"] for r in json.loads(usdtune(home, "runs", "--json", timeout=30).stdout)}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                        headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(f"http://{at}/#token={token}")
                page.wait_for_selector("body[data-loaded=yes]", timeout=15_000)
                shown = {row.get_attribute("data-run-id"): row.get_attribute("data-state")
                         for row in page.query_selector_all("#runs tbody tr")}
                attempts = [cell.inner_text() for cell in page.query_selector_all("#runs tbody td.tasks")]
            finally:
                browser.close()
        assert shown == listed and sorted(set(shown.values())) == ["completed"], (shown, listed)
        # The killed executor's attempt is in the database as lost, and the page says so.
        lost = [row for run_id in listed for row in task_states(home, run_id) if row[1] == "lost"]
        assert lost and all(code == "executor_lost" for _, _, code in lost), lost
        assert any("lost" in text for text in attempts), attempts
    finally:
        for process in attached:
            process.stop(signal.SIGTERM)
        daemon.stop(signal.SIGTERM)
    assert_nothing_left(home)
