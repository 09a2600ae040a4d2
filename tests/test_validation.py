"""The validation runner on real scenes: usd-optimize's own test data with known defects,
run through `usdtune optimize` (real daemon, executor, validators), and the executor's
worker pool against rules that hang or crash."""
import json
import shutil
import sys
from pathlib import Path

import pytest

from conftest import EXTENSION_DIR, FIXTURE, REPO, isolated_env, usdtune

TESTDATA = REPO.parent / "shared" / "corpus" / "nvidia_scene_optimizer_testdata"

# scene -> (concept, a site it must name, the report it lands in)
KNOWN_DEFECTS = {
    "cubeDegenerateFaces.usda": [("topology_zero_area_faces", "/World/Cube", "validation-report-targets"),
                                 ("topology_duplicate_faces", "/World/Cube", "validation-report-targets")],
    "extentsTest.usda": [("extents_general", "/World/CubeNoExtent", "validation-report")],
    "deduplicateGeometryExample.usd": [("geom_duplicates", None, "validation-report-targets")],
    "extentsTestTimeSamples.usda": [("perf_redundant_timesamples", "/World/DeformingNoExtent.faceVertexCounts",
                                     "validation-report")],
    # Copied without the layer it references: an already-optimized stage with a broken reference.
    "optimizeTimeSamples.usda": [("composition_missing_ref", "/CubeReferenced", "validation-report"),
                                 ("minimum_openability", None, "validation-report")],
    "mergeColocatedVertices_input.usd": [("vertex_weld", None, "validation-report-targets")],
    # The shipped factory: unwelded copies, and housings around parts (flagged pairs, Tier 3).
    "factory_small.usda": [("vertex_weld", "/Factory/Lines/Line_000/Machine_00001/Frame_3/Geom", "validation-report-targets"),
                           ("spatial_occluded", None, "validation-report-targets")],
}
SOURCES = {"factory_small.usda": FIXTURE}


@pytest.fixture(scope="module")
def optimized(tmp_path_factory):
    """Each defect scene optimized once (copies: the corpus is read-only)."""
    root = tmp_path_factory.mktemp("validation")
    env = isolated_env(root)
    outputs = {}
    for name in KNOWN_DEFECTS:
        stage = root / "input" / name
        stage.parent.mkdir(exist_ok=True)
        shutil.copy2(SOURCES.get(name, TESTDATA / name), stage)
        out = root / Path(name).stem
        done = usdtune(env, "optimize", str(stage), "-o", str(out), "--restructure", "optimize-as-is", "--json")
        outputs[name] = (done, out)
    return outputs


def findings(out: Path, report: str):
    return json.loads((out / f"{report}.json").read_text())["findings"]


@pytest.mark.parametrize("scene", list(KNOWN_DEFECTS))
def test_known_defects_are_found_with_their_sites(optimized, scene):
    done, out = optimized[scene]
    # Exit 1 is a completed run with a failed check (e.g. a preservation proof blocking the target).
    assert done.returncode in (0, 1), done.stderr[-2000:]
    assert json.loads(done.stdout)["state"] == "completed"
    for concept, site, report in KNOWN_DEFECTS[scene]:
        found = [f for f in findings(out, report) if f["concept"] == concept]
        assert found, f"{concept} not found in {report} of {scene}: {[f['concept'] for f in findings(out, report)]}"
        sites = {s for f in found for s in f["sites"]}
        assert sites and all(s.startswith("/") for s in sites), found
        if site:
            assert site in sites, (site, sites)
        assert all(f["op_family"] for f in found if concept in ("topology_zero_area_faces", "vertex_weld", "geom_duplicates"))


def test_every_flagged_target_has_a_disposition_and_rules_are_resolved_by_module(optimized):
    _, out = optimized["cubeDegenerateFaces.usda"]
    for name in ("validation-report", "validation-report-targets", "validation-report-after"):
        report = json.loads((out / f"{name}.json").read_text())
        assert report["coverage_ledger"]["complete"] is True
        note = json.loads(Path(report["artifacts"]["scope_note"]).read_text())
        planned = set(note["concepts"])
        resolved = {e["concept"] for e in report["coverage_ledger"]["entries"]}
        assert planned == resolved, (name, planned ^ resolved)
        for validator in report["validators"]:
            if validator["kind"] == "rule":
                assert validator["module"].startswith(("usd_optimize.validators.", "usd_validation_nvidia.rules."))
    # 6b re-ran exactly the 2c scope on the output.
    baseline = json.loads((out / "validation-report.json").read_text())
    after = json.loads((out / "validation-report-after.json").read_text())
    key = lambda r: sorted((e["target"], e["concept"]) for e in r["coverage_ledger"]["entries"])
    assert key(baseline) == key(after)

    # The 4d re-verify shows the lossless meshCleanup fixed what it was chosen for.
    _, out = optimized["factory_small.usda"]
    status = json.loads((out / "operations-status.json").read_text())
    reverified = {c["concept"]: c for c in status["targets"][0]["findings_reverify"]["concepts"]}
    assert reverified["vertex_weld"]["sites_before"] >= 1
    assert reverified["vertex_weld"]["sites_after"] == 0


FAKE_RULES = '''"""Fake rules for the worker-pool test only: one hangs, one kills its process."""
import os
import time

from usd_validation_nvidia import BaseRuleChecker


class HangingRule(BaseRuleChecker):
    """Never returns (a C++ loop in a real rule)."""

    def CheckStage(self, stage):
        time.sleep(3600)


class CrashingRule(BaseRuleChecker):
    """Takes its process down (a segfault in a real rule)."""

    def CheckStage(self, stage):
        os._exit(11)
'''


class Quiet:
    def progress(self, fraction, message):
        pass


@pytest.fixture
def validate_task(tmp_path, monkeypatch):
    """The executor's validate task, with FAKE_RULES importable by its worker processes."""
    (tmp_path / "usdtune_fake_rules.py").write_text(FAKE_RULES)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    sys.path.insert(0, str(EXTENSION_DIR / "usdtune.executor"))
    from usdtune_executor.tasks import validate
    return validate


def test_a_hanging_or_crashing_rule_costs_only_its_own_job(validate_task):
    real = {"concept": "topology_zero_area_faces", "module": "usd_optimize.validators.zero_area_faces_checker",
            "class_name": "ZeroAreaFacesChecker"}
    jobs = [
        {"id": "hangs", "rules": [{"concept": "fake_hang", "module": "usdtune_fake_rules", "class_name": "HangingRule"}],
         "mask_paths": None, "timeout_s": 3},
        {"id": "crashes", "rules": [{"concept": "fake_crash", "module": "usdtune_fake_rules", "class_name": "CrashingRule"}],
         "mask_paths": None},
        {"id": "real", "rules": [real], "mask_paths": ["/World"]},
        {"id": "unknown", "rules": [{**real, "class_name": "NoSuchChecker"}], "mask_paths": None},
    ]
    result = validate_task.run({"stage_path": str(TESTDATA / "cubeDegenerateFaces.usda"), "jobs": jobs,
                                "timeout_s": 60}, Quiet())
    by_id = {job["id"]: job for job in result["jobs"]}
    assert by_id["hangs"]["status"] == "timeout"
    assert by_id["crashes"]["status"] == "crashed" and "code 11" in by_id["crashes"]["error"]
    assert by_id["unknown"]["status"] == "blocked_runtime"
    assert by_id["real"]["status"] == "ok"
    sites = {s for issue in by_id["real"]["rules"][0]["issues"] for s in issue["sites"]}
    assert "/World/Cube" in sites
    assert result["openability"]["opens"] is True


def test_the_jobs_stay_within_the_budget_and_what_did_not_fit_says_so(validate_task):
    """A hanging rule under a 60 s job limit is stopped when the task's 4 s budget is spent,
    and the jobs queued behind it are not started; both read as timeouts that name the budget."""
    hang = {"concept": "fake_hang", "module": "usdtune_fake_rules", "class_name": "HangingRule"}
    real = {"concept": "topology_zero_area_faces", "module": "usd_optimize.validators.zero_area_faces_checker",
            "class_name": "ZeroAreaFacesChecker"}
    jobs = [{"id": "hangs", "rules": [hang], "mask_paths": None},
            {"id": "queued", "rules": [real], "mask_paths": None}]
    result = validate_task.run({"stage_path": str(TESTDATA / "cubeDegenerateFaces.usda"), "jobs": jobs,
                                "timeout_s": 60, "budget_s": 4, "max_workers": 1}, Quiet())
    by_id = {job["id"]: job for job in result["jobs"]}
    assert by_id["hangs"]["status"] == "timeout" and "budget of 4.0 s" in by_id["hangs"]["error"], by_id["hangs"]
    assert by_id["queued"]["status"] == "timeout" and by_id["queued"]["error"].startswith("not run"), by_id["queued"]
    assert result["seconds"] < 60, "the job's own limit was not what stopped it"
    assert result["budget_s"] == 4 and by_id["hangs"]["over_budget"] and by_id["queued"]["over_budget"]


def optimized_with_budget(tmp_path, budget: str):
    """The fixture (a copy) optimized as is under `--budget BUDGET`: (env, stage, output folder)."""
    stage = tmp_path / "src" / FIXTURE.name
    stage.parent.mkdir()
    shutil.copy2(FIXTURE, stage)
    out = tmp_path / "out"
    env = isolated_env(tmp_path)
    done = usdtune(env, "optimize", str(stage), "-o", str(out), "--restructure", "optimize-as-is", "--budget", budget,
                   "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    return env, stage, out


def test_a_run_budget_too_small_for_validation_is_recorded_not_hung(tmp_path):
    """`--budget 0.05`: each validation task may spend 0.02 s, less than any validator worker
    takes to start and answer (0.4 s was not: a warm worker answered the fixture's Tier 1 job in
    time on a fresh CI machine). The run completes; every validation job is on the ledger as timeout_recorded
    with the budget named, the scope note states the budget, the run's note counts the cuts."""
    env, stage, out = optimized_with_budget(tmp_path, "0.05")
    for name in ("validation-report", "validation-report-targets"):
        report = json.loads((out / f"{name}.json").read_text())
        assert report["coverage_ledger"]["complete"], name
        entries = report["coverage_ledger"]["entries"]
        assert entries and all(e["status"] == "timeout_recorded" and "budget of 0.02 s" in e["reason"]
                               for e in entries), entries
        assert report["runtime_context"]["budget_s"] == 0.02
        assert len(report["runtime_context"]["jobs_over_budget"]) == report["runtime_context"]["jobs"]
    note = json.loads((out / "validation-scope-note.json").read_text())
    assert "time budget: the jobs may take 0.02 s together" in note["selection_reason"]
    phases = {p["milestone"]: p for p in json.loads((out / "run.json").read_text())["phases"]}
    assert "cut by the 0.02 s time budget" in phases["usd-validation-runner"]["note"]
    bad = usdtune(env, "optimize", str(stage), "-o", str(tmp_path / "bad"), "--budget=0")
    assert bad.returncode == 2 and "above zero" in bad.stderr


def test_representatives_that_do_not_fit_the_budget_are_probed_as_a_sample_that_the_ledger_names(tmp_path):
    """`--budget 5`: Phase 4's validation may spend 2 s, of which two workers starting (0.8 s)
    leave less than its 22 jobs' expected bases (0.1 s each), so the plan checks the
    per-geometry rules on one of the fixture's 17 masked subtrees. The executor gets that mask;
    every per-geometry ledger entry either probed the sample and says so, or did not fit the
    budget at run time (timeout_recorded); the first jobs start once the workers have (0.7 s
    here), so at least one probed the sample."""
    env, _, out = optimized_with_budget(tmp_path, "5")
    classes = json.loads((out / "geometry-classes.json").read_text())
    assert len(classes["mask_paths"]) == len(classes["mask_sizes"]) == 17
    first = classes["mask_paths"][0]
    note = json.loads((out / "validation-scope-note-targets.json").read_text())
    masked = [t for t in note["targets"] if "mask_paths" in t]
    assert masked and all(t["mask_paths"] == [first] for t in masked), masked
    assert "per-geometry rules probed a sample" in note["selection_reason"]
    report = json.loads((out / "validation-report-targets.json").read_text())
    of = sum(m["representatives"] for m in classes["mask_sizes"])
    assert report["runtime_context"]["sample"].endswith(f" of {of} representatives"), report["runtime_context"]
    per_geometry = {t["concept"] for t in masked}
    entries = [e for e in report["coverage_ledger"]["entries"] if e["concept"] in per_geometry]
    assert len(entries) == len(per_geometry)
    sampled = [e for e in entries if e["status"].startswith("probed")]
    assert sampled and all(e["reason"].startswith("probed a sample: ") for e in sampled), entries
    assert all(e["status"] == "timeout_recorded" for e in entries if e not in sampled), entries
    assert report["coverage_ledger"]["complete"]
    assert usdtune(env, "check-report", str(out / "optimization-report.json")).returncode == 0
