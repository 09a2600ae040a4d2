"""Operations asked for by name (`--operation`) run, in the place the ordering invariants give
them, after their approval; or the run is refused or blocked with the seed's codes. Never
dropped without a word (58c8553 dropped decimateMeshes and flattenHierarchy silently)."""
import json

from conftest import usdtune


def plan_ops(out):
    plan = json.loads((out / "operation-plan.json").read_text())
    return plan


def optimize(home, stage, out, *flags, timeout=600):
    return usdtune(home, "optimize", str(stage), "-o", str(out), "--restructure", "optimize-as-is", "--passes", "1",
                   "--json", *flags, timeout=timeout)


def test_a_lossless_op_asked_for_by_name_runs_where_the_evidence_did_not_select_it(home, stage_copy, tmp_path):
    out = tmp_path / "out"
    done = optimize(home, stage_copy, out, "--operation", "optimizeTimeSamples")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "optimization-report.json").read_text())
    names = [op["name"] for op in report["operations"]]
    assert "optimizeTimeSamples" in names, names
    assert names.index("optimizeTimeSamples") < names.index("computeExtents"), names
    assert "requested by name" in json.dumps(plan_ops(out))
    assert report["structural_summary"]["x_usdtune"]["proof"]["passed"] is True


def test_a_gated_op_asked_for_by_name_is_refused_up_front_without_its_approval(home, stage_copy, tmp_path):
    out = tmp_path / "out"
    done = optimize(home, stage_copy, out, "--operation", "decimateMeshes", timeout=60)
    assert done.returncode == 2, done.stderr
    document = json.loads(done.stdout)
    assert document["code"] == "operation_not_approved"
    assert "pinBoundaries" in document["message"] and "--approve decimateMeshes" in document["message"]
    assert not out.exists(), "refused before anything was written"


def test_a_gated_op_asked_for_by_name_runs_once_approved(home, stage_copy, tmp_path):
    out = tmp_path / "out"
    done = optimize(home, stage_copy, out, "--operation", "decimateMeshes", "--approve", "decimateMeshes")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "optimization-report.json").read_text())
    decimate = [op for op in report["operations"] if op["name"] == "decimateMeshes"]
    assert decimate, [op["name"] for op in report["operations"]]
    plan = json.dumps(plan_ops(out))
    assert '"pinBoundaries": true' in plan and "approved by --approve decimateMeshes" in plan


def test_an_op_the_runtime_does_not_have_blocks_with_the_seeds_code(home, stage_copy, tmp_path):
    out = tmp_path / "out"
    done = optimize(home, stage_copy, out, "--operation", "noSuchOperation", timeout=120)
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert document["code"] == "blocked_missing_usd_optimize_operation", document
    assert "noSuchOperation" in document["message"]
    assert not (out / "optimized").exists()
