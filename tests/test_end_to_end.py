"""The spine, end to end: a real daemon, a real headless executor, real usd-optimize."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
from pxr import Usd, UsdGeom

from conftest import FIXTURE, USDTUNE, Process, executor_env, free_port, schema_for, usdtune

CORRUPT = Path(__file__).resolve().parents[2] / "shared/corpus/nvidia_scene_optimizer_testdata/maxDataVolumePartial_decimate_pinBoundaries_golden.usd"


def authored_mesh_count(path) -> int:
    """Mesh prims that exist as data: the scene graph plus prototypes, not instance proxies."""
    stage = Usd.Stage.Open(str(path))
    roots = [stage.GetPseudoRoot(), *stage.GetPrototypes()]
    return sum(1 for root in roots for prim in Usd.PrimRange(root) if prim.IsA(UsdGeom.Mesh))


def test_optimize_through_daemon_and_headless_executor(home, headless_executor, stage_copy, tmp_path):
    source_bytes = stage_copy.read_bytes()
    out = tmp_path / "out"
    done = usdtune(home, "optimize", str(stage_copy), "-o", str(out), "--restructure", "optimize-as-is", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)  # stdout holds exactly one JSON document
    assert summary["state"] == "completed"
    assert summary["verdict"] in {"improved", "neutral", "regressed", "mixed"}
    assert summary["workflow_mode"] == "full"

    # Every JSON artifact in the workspace validates against its schema.
    artifacts = sorted(out.glob("*.json"))
    assert {p.stem for p in artifacts} >= {"setup-preflight", "profile-baseline", "structure-assessment",
                                           "validation-report", "validation-scope-note", "geometry-classes",
                                           "validation-report-targets", "restructure-decision",
                                           "operation-plan", "operations-status", "profile-after",
                                           "compare-profiles", "optimization-report", "run"}
    for path in artifacts:
        jsonschema.validate(json.loads(path.read_text()), schema_for(path.stem))

    report = json.loads((out / "optimization-report.json").read_text())
    assert (out / "optimization-report.md").read_text().startswith("# USD Performance Tuning Report")
    # The report of the final pass: this workspace's, or a Phase 7 pass's promoted here (its
    # artifacts then name that pass's folder, whose files are the same).
    assert Path(report["artifacts"]["html"]).read_bytes() == (out / "optimization-report.html").read_bytes()
    assert json.loads((out / "report-gate.json").read_text())["passed"] is True
    assert report["output_path"] == summary["output_path"]
    assert [op["name"] for op in report["operations"]] == ["meshCleanup", "deduplicateGeometry", "computeExtents"]
    assert report["structural_summary"]["x_usdtune"]["proof"]["passed"] is True
    # GPU memory was sampled during both profiles, or the report says why not (no NVML here).
    gpu = report["structural_summary"]["x_usdtune"]["gpu_memory"]
    for side in ("before", "after"):
        assert gpu[side]["available"] or "NVML" in gpu[side]["reason"] or "GPU" in gpu[side]["reason"], gpu
    assert report["target_coverage"] == {"complete": True, "entries": report["target_coverage"]["entries"]}

    output = Path(report["output_path"])
    assert output.is_file() and output.parent == out / "optimized"
    assert authored_mesh_count(output) < authored_mesh_count(stage_copy)
    assert stage_copy.read_bytes() == source_bytes, "the source stage must never be written"

    # `usdtune watch` on the finished run: the same closing summary and verdict, the same document.
    watched = usdtune(home, "watch", summary["run_id"], "--json")
    assert watched.returncode == 0, watched.stderr
    assert json.loads(watched.stdout) == summary
    assert watched.stderr.rstrip().splitlines()[-1] in ("Improved.", "Neutral.", "Regressed: review before publishing.",
                                                       "Mixed: some metrics improved, others regressed; review before publishing.")

    preflight = json.loads((out / "setup-preflight.json").read_text())
    assert preflight["runtime_route"] == "standalone"
    assert "meshCleanup" in preflight["usdOptimize"]["operationsAvailable"]
    assert "gpus" in preflight["host"]  # null without NVML, a list with it


def test_a_task_whose_executor_is_killed_is_leased_to_another(home, daemon, tmp_path):
    """kill -9 of the only executor mid-task: the run does not fail (it did on 58c8553) but waits,
    and the task goes to the next executor that attaches."""
    big = tmp_path / "factory_20k.usdc"
    subprocess.run([sys.executable, str(FIXTURE.parent / "generate_factory.py"), str(big), "--prims", "20000"],
                   check=True, capture_output=True)
    executor = Process([sys.executable, "-m", "usdtune_executor", "--daemon", home["USDTUNE_DAEMON"]],
                       executor_env(home), "victim")
    run = subprocess.Popen([str(USDTUNE), "optimize", str(big), "-o", str(tmp_path / "out"),
                            "--restructure", "optimize-as-is", "--passes", "1", "--json"],
                           env=home, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_json = tmp_path / "out" / "run.json"
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until the baseline profile task is in flight
        if run_json.is_file():
            phases = json.loads(run_json.read_text())["phases"]
            if any(p["milestone"] == "profile-stage:baseline" and p["status"] == "running" for p in phases):
                break
        time.sleep(0.05)
    else:
        raise AssertionError("the profile phase never started")
    executor.proc.send_signal(signal.SIGKILL)
    rescuer = Process([sys.executable, "-m", "usdtune_executor", "--daemon", home["USDTUNE_DAEMON"],
                       "--executor-id", "rescuer"], executor_env(home), "rescuer")
    try:
        stdout, stderr = run.communicate(timeout=300)  # must end, not hang
    finally:
        rescuer.stop(signal.SIGTERM)
    assert run.returncode == 0, stderr[-3000:]
    assert json.loads(stdout)["state"] == "completed"
    assert "the task is leased again (attempt 2 of 3)" in stderr
    assert json.loads((tmp_path / "out" / "setup-preflight.json").read_text())["executor_id"] != "rescuer"


def test_non_interactive_run_stops_at_the_gate_and_resumes(home, stage_copy, tmp_path):
    out = tmp_path / "out"
    stopped = usdtune(home, "optimize", str(stage_copy), "-o", str(out), "--json")  # embedded, stdin not a TTY
    assert stopped.returncode == 3, stopped.stderr
    waiting = json.loads(stopped.stdout)
    assert waiting["state"] == "awaiting_decision" and waiting["code"] == "awaiting_restructure_decision"
    assert "deduplicate-internally, extract-as-assets, optimize-as-is, exit" in stopped.stderr
    assert not (out / "optimization-report.json").exists()
    # The gate measured every route before it asked, and recommends the best one.
    trials = json.loads((out / "route-trials.json").read_text())
    assert trials["basis"] == "measured" and f"(recommended: {trials['recommended']})" in stopped.stderr

    resumed = usdtune(home, "decide", waiting["run_id"], "exit", "--json")
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((out / "optimization-report.json").read_text())
    assert report["workflow_mode"] == "no_op" and report["verdict"] == "neutral"
    assert report["output_path"] is None and report["operations"] == []
    decision = json.loads((out / "restructure-decision.json").read_text())
    assert (decision["chosen"], decision["answered_by"], decision["recommended"]) == ("exit", "api", trials["recommended"])


def test_missing_stage_is_a_usage_error(home, tmp_path):
    done = usdtune(home, "optimize", str(tmp_path / "nope.usda"), "-o", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "stage_not_found" in done.stderr and "nope.usda" in done.stderr
    assert "Traceback" not in done.stderr


def test_corrupt_stage_gets_a_code_and_no_output(home, tmp_path):
    out = tmp_path / "out"
    done = usdtune(home, "optimize", str(CORRUPT), "-o", str(out), "--restructure", "optimize-as-is", "--json")
    assert done.returncode == 2, done.stderr
    assert json.loads(done.stdout)["code"] == "stage_open_failed"
    assert CORRUPT.name in done.stderr and "Traceback" not in done.stderr
    assert not (out / "optimization-report.json").exists()
    assert not list(out.glob("*.optimized.*"))


def test_the_log_off_a_terminal_is_one_line_per_phase_and_ends_with_the_verdict(home, stage_copy, tmp_path):
    import re
    done = usdtune(home, "optimize", str(stage_copy), "-o", str(tmp_path / "out"), "--restructure", "optimize-as-is")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert not any(line.startswith(("[executor", "[INFO]", "Warning")) for line in lines), "library logs go to a file"
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", done.stderr), "no task ids"
    phases = [m.group(1) for m in map(re.compile(r"\[usdtune\] (\S+) · (\d+\.\d s|skipped) · ").match, lines) if m]
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    assert phases == [p["milestone"] for p in run["phases"]], "each phase once, in order"
    report = json.loads((tmp_path / "out" / "optimization-report.json").read_text())
    prims = next(m for m in report["metrics"] if m["name"] == "prim_count")
    assert any(line.strip().startswith(f"prims    {prims['before']:,.0f} → {prims['after']:,.0f}") for line in lines)
    assert lines[-1] == {"improved": "Improved.", "neutral": "Neutral."}.get(report["verdict"], lines[-1])
    assert "Success!" not in done.stderr
