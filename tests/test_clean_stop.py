"""A run stops cleanly: SIGTERM to `usdtune`, `usdtune cancel` against a daemon, or a task past
its deadline ends every process the run started (executors, Phase 4 workers, validation and
stage-walk workers) within seconds, and the run's record says cancelled or failed with its code.

"Every process the run started" is found by environment: each process usdtune starts inherits
the test's own USDTUNE_HOME, so one that still carries it afterwards was left behind.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FIXTURE, REPO, USDTUNE, Process, executor_env, start_daemon

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def hall(tmp_path_factory):
    """A 30k-prim hall: validation takes ~2 s and Phase 4 ~8 s here, long enough to be caught."""
    path = tmp_path_factory.mktemp("hall") / "hall.usdc"
    subprocess.run([sys.executable, str(REPO / "fixtures" / "generate_hall.py"), str(path), "--prims", "30000"],
                   check=True, capture_output=True)
    return path


def started_by(home) -> list:
    """(pid, command line) of every live process carrying this test's USDTUNE_HOME."""
    marker = f"USDTUNE_HOME={home['USDTUNE_HOME']}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except OSError:  # gone, or not ours to read
            continue
    return found


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def running(home, fragment):
    return [cmd for _, cmd in started_by(home) if fragment in cmd]


def milestone(out: Path):
    try:
        return json.loads((out / "run.json").read_text())["milestone"]
    except (OSError, ValueError, KeyError):
        return None


def assert_nothing_left(home, within=5.0):
    deadline = time.time() + within
    while started_by(home) and time.time() < deadline:
        time.sleep(0.1)
    assert not started_by(home), f"left running: {started_by(home)}"


@pytest.mark.parametrize("moment", ["validation", "phase4"])
def test_sigterm_to_usdtune_ends_every_process_of_its_run(home, tmp_path, hall, moment):
    out = tmp_path / "out"
    proc = subprocess.Popen([str(USDTUNE), "optimize", str(hall), "-o", str(out), "--restructure", "optimize-as-is",
                             "--json"], env=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if moment == "validation":
            wait_for(lambda: running(home, "validation_worker"), 180, "a validation worker")
        else:
            wait_for(lambda: milestone(out) == "so-run-operations" and running(home, "--executor-id ops"), 240,
                     "a Phase 4 worker at work")
        caught = started_by(home)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr[-2000:]
    assert "Traceback" not in stdout + stderr
    assert json.loads(stdout)["code"] == "cancelled"
    assert len(caught) >= 2, caught
    assert_nothing_left(home)
    record = json.loads((out / "run.json").read_text())
    assert record["state"] == "cancelled", record
    assert not (out / "optimization-report.json").exists()


def test_cancel_through_a_daemon_stops_the_phase4_worker_within_seconds(home, tmp_path, hall):
    daemon = start_daemon(home)
    out = tmp_path / "out"
    client = subprocess.Popen([str(USDTUNE), "optimize", str(hall), "-o", str(out), "--restructure", "optimize-as-is",
                               "--json"], env=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: milestone(out) == "so-run-operations" and running(home, "--executor-id ops"), 240,
                 "a Phase 4 worker at work")
        run_id = json.loads((out / "run.json").read_text())["run_id"]
        cancelled = time.time()
        done = subprocess.run([str(USDTUNE), "cancel", run_id], env=home, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        wait_for(lambda: not running(home, "--executor-id ops"), 10, "the Phase 4 worker to end")
        assert time.time() - cancelled < 10
        stdout, stderr = client.communicate(timeout=30)
        assert client.returncode != 0 and json.loads(stdout)["state"] == "cancelled", stderr[-2000:]
        record = json.loads((out / "run.json").read_text())
        assert (record["state"], record["code"]) == ("cancelled", "cancelled"), record
    finally:
        if client.poll() is None:
            client.kill()
        daemon.stop(signal.SIGTERM)
    assert daemon.proc.returncode == 0, daemon.output()[-2000:]
    assert_nothing_left(home)


def test_a_task_its_executor_never_answers_fails_at_its_deadline(home, tmp_path):
    home["USDTUNE_TASK_DEADLINE_SCALE"] = "0.02"  # the 120 s floor becomes 2.4 s
    daemon = start_daemon(home, "--no-spawn-executor")
    silent = Process([sys.executable, str(HERE / "silent_executor.py"), home["USDTUNE_DAEMON"]], executor_env(home),
                     "silent")
    try:
        started = time.time()
        done = subprocess.run([str(USDTUNE), "optimize", str(FIXTURE), "-o", str(tmp_path / "out"), "--json"],
                              env=home, capture_output=True, text=True, timeout=120)
        elapsed = time.time() - started
        assert done.returncode == 1, done.stderr[-2000:]
        document = json.loads(done.stdout)
        assert document["code"] == "task_deadline_exceeded", document
        assert "deadline" in document["message"]
        assert elapsed < 60, elapsed
        wait_for(lambda: "cancel" in silent.output(), 5, "the executor to be told")
    finally:
        silent.stop(signal.SIGKILL)
        daemon.stop(signal.SIGTERM)


def test_a_closed_stdout_neither_panics_nor_leaves_a_process(home, tmp_path):
    """`usdtune optimize STAGE --json | head -0`: the reader is gone before the summary is
    written; the run still completes and cleans up (println! used to panic here)."""
    stage = tmp_path / "src" / FIXTURE.name
    stage.parent.mkdir()
    stage.write_bytes(FIXTURE.read_bytes())
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.Popen([str(USDTUNE), "optimize", str(stage), "-o", str(tmp_path / "out"), "--restructure",
                             "optimize-as-is", "--json"], env=home, stdout=write_end, stderr=subprocess.PIPE,
                            text=True)
    os.close(write_end)
    _, stderr = proc.communicate(timeout=300)
    assert "panicked" not in stderr and "Traceback" not in stderr, stderr[-2000:]
    assert proc.returncode == 0, stderr[-2000:]
    assert json.loads((tmp_path / "out" / "run.json").read_text())["state"] == "completed"
    assert_nothing_left(home)
