"""Executors anywhere: each attached executor advertises what it has and which folders it
reaches (`usdtune executor --path-root DIR --path-map DAEMON=EXECUTOR`), and the daemon gives a
task only to an executor that reaches its stage and outputs, its paths rewritten through the
map on the way out and the results' paths on the way back. A stage no connected executor
reaches waits with the reason said, then fails with `path_not_reachable`. Real daemon, real
executors; the mount is a symlink, the closest a single machine has to another machine's view."""
import json
import shutil
import signal

from conftest import FIXTURE, USDTUNE, Process, executor_env, start_daemon, usdtune


def attach(home, name, *flags):
    return Process([str(USDTUNE), "executor", "--executor-id", name, *flags], executor_env(home), name)


def wait_attached(daemon, name):
    """Until the daemon has logged the executor's connection."""
    import time
    deadline = time.time() + 60
    while f"executor={name}" not in daemon.output():
        assert time.time() < deadline, f"{name} never attached"
        time.sleep(0.2)


def test_a_task_goes_to_the_executor_that_reaches_its_stage_through_its_map(home, tmp_path):
    real = tmp_path / "share"
    real.mkdir()
    stage = real / FIXTURE.name
    shutil.copy2(FIXTURE, stage)
    view = tmp_path / "mount"
    view.symlink_to(real, target_is_directory=True)
    daemon = start_daemon(dict(home, USDTUNE_EXECUTOR_WAIT="8"), "--no-spawn-executor")
    executors = []
    try:
        executors.append(attach(home, "far-away", "--path-root", "/nonexistent/projects"))
        wait_attached(daemon, "far-away")
        # Only an executor that cannot reach the stage: the run says why, then fails.
        refused = usdtune(home, "assess", str(stage), "-o", str(tmp_path / "refused"), "--json", timeout=120)
        assert refused.returncode != 0
        document = json.loads(refused.stdout)
        assert document["code"] == "path_not_reachable", document
        assert str(stage) in document["message"] and "far-away" in document["message"]
        assert "no connected executor reaches" in daemon.output()

        # One that reaches it through its mount: the task goes there, in its view, and comes
        # back in the daemon's.
        executors.append(attach(home, "mounted", "--path-root", str(view), "--path-map", f"{real}={view}"))
        wait_attached(daemon, "mounted")
        out = tmp_path / "out"
        done = usdtune(home, "assess", str(stage), "-o", str(out), "--json", timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        preflight = json.loads((out / "setup-preflight.json").read_text())
        assert preflight["executor_id"] == "mounted"
        facts = json.loads((out / "stage-facts.json").read_text())
        assert facts["stage"]["identifier"] == str(stage), "results come back in the daemon's paths"
        assert str(view) not in (out / "stage-facts.json").read_text()

        bad = usdtune(home, "executor", "--path-map", "no-equals-sign", timeout=30)
        assert bad.returncode == 2 and "invalid_path_map" in bad.stderr
    finally:
        for process in executors:
            process.stop(signal.SIGTERM)
        daemon.stop(signal.SIGTERM)
