"""The op chain's safety gate and named pipelines, through `usdtune optimize` on real scenes:
gated ops are held back with the approval that would run them, approved ones run and the
preservation proof switches to the approved band, and an unknown pipeline is a usage error."""
import json
import shutil

import jsonschema

from conftest import FIXTURE, REPO, isolated_env, schema_for, usdtune

TORUS = REPO.parent / "shared" / "corpus" / "nvidia_scene_optimizer_testdata" / "editStageMetrics_torus.usda"


def run(tmp_path, stage, *flags):
    env = isolated_env(tmp_path)
    out = tmp_path / "out"
    done = usdtune(env, "optimize", str(stage), "-o", str(out), "--restructure", "optimize-as-is", "--json", *flags)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    read = lambda name: json.loads((out / f"{name}.json").read_text())
    for name in ("operation-plan", "preservation-so-run-operations", "optimization-report"):
        jsonschema.validate(read(name), schema_for(name))
    return read


def test_a_pipeline_without_approvals_runs_only_its_lossless_ops(tmp_path):
    read = run(tmp_path, FIXTURE, "--pipeline", "mesh-count-reduction")
    plan = read("operation-plan")
    assert plan["pipeline"] == "mesh-count-reduction"
    assert [(o["operation"], o["safety"], o["approval"]) for o in plan["operations"]] == [
        ("meshCleanup", "lossless", "not needed"), ("deduplicateGeometry", "lossless", "not needed")]
    held = {s["operation"]: s["reason"] for s in plan["skipped"]}
    assert "--approve decimateMeshes" in held["decimateMeshes"] and "bounded-loss" in held["decimateMeshes"]
    assert "--approve removeSmallGeometry" in held["removeSmallGeometry"] and "destructive" in held["removeSmallGeometry"]
    assert read("preservation-so-run-operations")["strength"] == "aggregate"
    untapped = " ".join(read("optimization-report")["untapped_options"])
    assert "--approve decimateMeshes" in untapped


def test_approved_bounded_loss_runs_within_its_band(tmp_path):
    stage = tmp_path / "torus.usda"
    shutil.copy2(TORUS, stage)
    read = run(tmp_path, stage, "--pipeline", "mesh-count-reduction", "--approve", "decimateMeshes")
    plan = read("operation-plan")
    decimate = next(o for o in plan["operations"] if o["operation"] == "decimateMeshes")
    assert decimate["approval"] == "approved by --approve decimateMeshes"
    assert decimate["args"]["maxMeanError"] == 0.01, "0.1 mm in a centimetre stage"
    assert decimate["args"]["reductionFactor"] == 0.0 and decimate["args"]["pinBoundaries"] is True
    assert "removeSmallGeometry" in {s["operation"] for s in plan["skipped"]}
    proof = read("preservation-so-run-operations")
    assert proof["strength"] == "bounded" and proof["passed"], proof
    assert proof["tolerance"] >= 0.01
    status = read("operations-status")
    ran = [o["operation"] for t in status["targets"] for o in t["operations"]]
    assert ran[-1] == "decimateMeshes"


def test_approved_occlusion_removal_runs_first_and_deletes_only_what_is_hidden(tmp_path):
    read = run(tmp_path, FIXTURE, "--approve", "findOccludedMeshes")
    plan = read("operation-plan")
    first = plan["operations"][0]
    assert (first["operation"], first["safety"], first["args"]["action"]) == ("findOccludedMeshes", "destructive", 1)
    assert all(p.endswith("//") for p in first["args"]["paths"]) and first["args"]["checkTransparency"] is True
    proof = read("preservation-so-run-operations")
    assert proof["strength"] == "bounded" and proof["passed"], proof["differences"]
    # The op deletes what the Tier 3 probe found enclosed by opaque housings, no more.
    probed = sum(f["site_count"] for f in read("validation-report-targets")["findings"] if f["concept"] == "spatial_occluded")
    assert probed > 0
    assert proof["rendered_meshes"]["before"] - proof["rendered_meshes"]["after"] == probed
    assert proof["world_bounds_preserved"] is True


def test_an_unknown_pipeline_is_a_usage_error(tmp_path):
    done = usdtune(isolated_env(tmp_path), "optimize", str(FIXTURE), "-o", str(tmp_path / "out"), "--pipeline", "make-it-fast")
    assert done.returncode == 2
    assert "safe-cleanup" in done.stderr and "Traceback" not in done.stderr
