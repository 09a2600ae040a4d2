"""The same executor package as a Kit extension, in a real headless Kit kernel."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import EXTENSION_DIR, executor_env, usdtune

# Find, do not import: importing omni.kit_app starts Kit's EULA prompt.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("omni.kit_app") is None,
                                reason="headless Kit is installed by `usdtune setup --dev`")


def test_extension_loads_in_headless_kit_and_completes_the_probe(home, daemon, stage_copy, tmp_path):
    kit_home = tmp_path / "kit-home"
    kit_home.mkdir()
    env = dict(executor_env(home), HOME=str(kit_home), OMNI_KIT_ACCEPT_EULA="yes", OMNI_KIT_ALLOW_ROOT="1")
    kit = subprocess.Popen(
        [sys.executable, "-m", "omni.kit_app", "--no-window",
         "--portable-root", str(tmp_path / "portable"),
         "--ext-folder", str(EXTENSION_DIR),
         "--/app/extensions/registryEnabled=false", "--/app/fastShutdown=false",
         f"--/exts/usdtune.executor/daemonAddress={home['USDTUNE_DAEMON']}",
         "--/exts/usdtune.executor/executorId=kit-test",
         "--enable", "usdtune.executor",
         "--exec", os.path.join(os.path.dirname(__file__), "kit_wait_for_executor.py")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out = tmp_path / "out"
        done = usdtune(home, "optimize", str(stage_copy), "-o", str(out), "--restructure", "exit", "--json", timeout=300)
        assert done.returncode == 0, done.stderr
    finally:
        daemon.stop()  # the daemon's shutdown ends the executor thread, then Kit exits
        kit_stdout, kit_stderr = kit.communicate(timeout=60)

    preflight = json.loads((out / "setup-preflight.json").read_text())
    assert preflight["runtime_route"] == "kit"
    # Nobody chose a runtime and the attached executor was Kit: recorded as the unattended default.
    assert preflight["runtime_context"]["chosen_by"] == "unattended_default"
    assert preflight["kit"] is not None and preflight["kit"]["version"]
    assert preflight["usdOptimize"]["operationsAvailable"]
    kit_log = kit_stdout + kit_stderr
    assert "[Error]" not in kit_log, kit_log[-3000:]
    assert kit.returncode == 0, kit_log[-3000:]


def test_optimize_with_runtime_kit_runs_the_executor_work_in_headless_kit(home, stage_copy, tmp_path):
    """`--runtime kit`: the daemon starts headless Kit with the executor extension and every
    task that is not a Phase 4 worker's runs there; the run records the runtime and who chose it."""
    out = tmp_path / "out"
    done = usdtune(home, "optimize", str(stage_copy), "-o", str(out), "--runtime", "kit", "--yes", "--passes", "1",
                   "--json", timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["state"] == "completed"
    preflight = json.loads((out / "setup-preflight.json").read_text())
    assert (preflight["runtime_route"], preflight["executor_id"]) == ("kit", "kit-local")
    assert preflight["runtime_context"]["chosen_by"] == "flag"
    assert preflight["runtime_context"]["kit"]["chosen_by"] == "flag"
    report = json.loads((out / "optimization-report.json").read_text())
    assert report["runtime_context"]["kit"]["version"] == preflight["kit"]["version"]
    assert json.loads((out / "report-gate.json").read_text())["passed"] is True
    kit_log = (out / "logs" / "kit-local.log").read_text()
    assert "[Error]" not in kit_log, kit_log[-3000:]
    # The report says so itself: the daemon reads Kit's log after every task for [Error] lines.
    assert report["structural_summary"]["x_usdtune"]["kit_error_lines"] == []
    # The same artifacts as a standalone run of the workflow.
    names = {p.stem for p in out.glob("*.json")}
    assert names >= {"setup-preflight", "profile-baseline", "structure-assessment", "validation-report",
                     "route-trials", "restructure-decision", "operation-plan", "operations-status", "profile-after",
                     "compare-profiles", "optimization-report", "report-gate", "iterations", "run"}, names
