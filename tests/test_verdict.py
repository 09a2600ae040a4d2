"""A verdict users can trust: it comes from the source and the output profiled together
(interleaved rounds), so it does not follow the machine's load; a pass that changes nothing is
neutral and writes nothing; a run without an output claims nothing; an output that composes
with errors its source does not have is never certified."""
import contextlib
import json
import shutil
import subprocess
import sys

from pxr import Usd

from conftest import FIXTURE, REPO, isolated_env, schema_for, usdtune

import jsonschema

DUPLEX = REPO.parent / "shared" / "corpus" / "bim_Duplex_ifc2usd" / "Duplex_A_20110907.usdc"


@contextlib.contextmanager
def cpu_burner(processes=2):
    """Busy processes, one per core of these machines, stopped on leaving."""
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def optimize(env, stage, out):
    done = usdtune(env, "optimize", str(stage), "-o", str(out), "--restructure", "optimize-as-is", "--json")
    assert done.returncode in (0, 1), done.stderr[-3000:]
    read = lambda name: json.loads((out / f"{name}.json").read_text())
    for name in ("compare-profiles", "optimization-report", "operations-status"):
        if (out / f"{name}.json").is_file():
            jsonschema.validate(read(name), schema_for(name))
    return done, read


def test_the_verdict_does_not_follow_the_load_and_a_second_pass_is_neutral(tmp_path):
    env = isolated_env(tmp_path)
    stage = tmp_path / "src" / FIXTURE.name
    stage.parent.mkdir()
    shutil.copy2(FIXTURE, stage)
    source_bytes = stage.read_bytes()

    idle, read_idle = optimize(env, stage, tmp_path / "idle")
    with cpu_burner():
        loaded, read_loaded = optimize(env, stage, tmp_path / "loaded")
    verdicts = [json.loads(done.stdout)["verdict"] for done in (idle, loaded)]
    assert verdicts[0] == verdicts[1], (verdicts, read_idle("compare-profiles")["summary"],
                                        read_loaded("compare-profiles")["summary"])
    for read in (read_idle, read_loaded):
        comparison = read("compare-profiles")
        assert comparison["method"].startswith("paired") and comparison["rounds"] >= 7
        pair = read("profile-pair")
        assert len(pair["samples"]["before"]) == len(pair["samples"]["after"]) == comparison["rounds"]
        assert set(pair["order"]) == {"AB", "BA"}, "the capture order alternates"
        # Bytes are judged against the source re-encoded, and all three sizes are reported.
        footprint = read("optimization-report")["footprint"]
        assert footprint["scored_against"] == "repack_normalized"
        assert footprint["repack_normalized_baseline_bytes"] > 0 and footprint["optimized_bytes"] > 0
    assert stage.read_bytes() == source_bytes

    # A second pass over the output, idle and under load: nothing is left to do (no repeated
    # subtree, no duplicate mesh outside the instance prototypes, extents authored, no finding a
    # lossless op fixes), so no op runs and nothing is claimed.
    second = tmp_path / "second" / "factory_small.usda"
    second.parent.mkdir()
    shutil.copy2(json.loads(idle.stdout)["output_path"], second)
    for name, burning in (("again-idle", False), ("again-loaded", True)):
        with cpu_burner() if burning else contextlib.nullcontext():
            done, read = optimize(env, second, tmp_path / name)
        assert done.returncode == 0, done.stderr[-2000:]
        summary = json.loads(done.stdout)
        assert (summary["verdict"], summary["output_path"]) == ("neutral", None), name
        report = read("optimization-report")
        assert report["optimization_score"] == 5.0 and report["score_label"] == "neutral", name
        assert "CRITICAL" not in report["notes"] and "revert" not in report["notes"]
        assert report["workflow_mode"] == "no_op", name
        assert read("structure-assessment")["phase_recommendation"] == "already_optimized", name
        assert report["target_coverage"] == {"complete": True, "entries": []}
        assert not (tmp_path / name / "operations-status.json").exists()
        assert read("compare-profiles")["metrics"] == [], "nothing is measured against itself"
        assert not (tmp_path / name / "optimized").exists() or not any((tmp_path / name / "optimized").iterdir())
        assert "\nNeutral.\n" in done.stderr and "Success!" not in done.stderr


def test_an_output_that_composes_with_new_errors_is_never_certified(tmp_path):
    """The BIM scene extracted as assets: Phase 4's deduplicateGeometry makes library meshes
    reference copies built from themselves (reference cycles the source does not have)."""
    stage = tmp_path / "src" / DUPLEX.name
    stage.parent.mkdir()
    shutil.copy2(DUPLEX, stage)
    out = tmp_path / "out"
    done = usdtune(isolated_env(tmp_path), "optimize", str(stage), "-o", str(out), "--restructure", "extract-as-assets",
                   "--json")
    summary = json.loads(done.stdout)
    report = json.loads((out / "optimization-report.json").read_text())
    source_errors = len(Usd.Stage.Open(str(stage)).GetCompositionErrors())
    if report["output_path"]:
        # Certified: then it composes with no error its source did not have.
        assert len(Usd.Stage.Open(report["output_path"]).GetCompositionErrors()) <= source_errors
        assert report["structural_summary"]["x_usdtune"]["proof"]["passed"] is True
    else:
        assert done.returncode == 1 and summary["code"] == "target_coverage_incomplete"
        blocked = [t for t in json.loads((out / "operations-status.json").read_text())["targets"]
                   if t["coverage"] == "blocked"]
        assert blocked and all(t["code"] == "composition_error_introduced" for t in blocked)
        assert "ArcCycle at /" in blocked[0]["reason"] and "(layer " in blocked[0]["reason"], "prim and layer named"
        # Without an output nothing is claimed.
        assert summary["verdict"] == "neutral" and report["optimization_score"] <= 5.0
        assert report["score_label"] in ("neutral", "mixed", "regressed")
        assert not list((out / "optimized").glob("*.usdc")), "no output looks complete"
