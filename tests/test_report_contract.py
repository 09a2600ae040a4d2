"""The report and its artifacts against the published contracts, and the HTML page in a real browser.

Every run kind (optimize-as-is, deduplicate-internally, extract-as-assets, exit,
already-optimized, structural-only) runs end to end on real processes; each artifact that
has an upstream contract is validated against the **unmodified** upstream schema, read from
../shared/spec/upstream-skill at test time (the repository keeps only its own schemas), and
the report passes the daemon's report gate. The gate is also fed the upstream gate's own
examples (its design fixtures, and the failures its README describes) through
`usdtune check-report`. Finally the HTML report is opened in headless Chromium.
"""
import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from conftest import FIXTURE, REPO, isolated_env, usdtune

UPSTREAM = REPO.parent / "shared" / "spec" / "upstream-skill" / "references"
# Our artifact -> the upstream contract it follows.
CONTRACTS = {
    "setup-preflight": "setup-usd-performance-tuning/scripts/setup-preflight.schema.json",
    "structure-assessment": "usd-structure-assessment/scripts/usd-structure-assessment-report.schema.json",
    "validation-report": "usd-validation-runner/scripts/validation-report.schema.json",
    "validation-report-targets": "usd-validation-runner/scripts/validation-report.schema.json",
    "validation-report-targets-after": "usd-validation-runner/scripts/validation-report.schema.json",
    "validation-report-after": "usd-validation-runner/scripts/validation-report.schema.json",
    "validation-scope-note": "usd-validation-runner/scripts/validation-scope-note.schema.json",
    "validation-scope-note-targets": "usd-validation-runner/scripts/validation-scope-note.schema.json",
    "validation-scope-note-reverify": "usd-validation-runner/scripts/validation-scope-note.schema.json",
    "apply-restructure-manifest": "usd-structure-assessment/references/apply-restructure/scripts/apply-restructure-manifest.schema.json",
    "ref-remap-manifest": "usd-structure-assessment/references/apply-restructure/scripts/apply-restructure-manifest.schema.json",
    "operation-plan": "usd-structure-assessment/scripts/optimization-plan.schema.json",
    "operations-status": "usd-optimize-run-operations/scripts/status.schema.json",
    "optimization-report": "optimization-report/scripts/optimization-report.schema.json",
}
FIXTURES = UPSTREAM / "report-templates"

# kind -> (restructure answer, workflow_mode, writes an optimized stage)
KINDS = {
    "optimize-as-is": ("optimize-as-is", "full", True),
    "deduplicate-internally": ("deduplicate-internally", "full", True),
    "extract-as-assets": ("extract-as-assets", "full", True),
    "exit": ("exit", "no_op", False),
    "already-optimized": (None, "no_op", False),
    "structural-only": ("optimize-as-is", "structural_only", False),
}

INSTANCED_STAGE = '''
from pxr import Gf, Sdf, Usd, UsdGeom
import sys
stage = Usd.Stage.CreateNew(sys.argv[1])
stage.SetDefaultPrim(UsdGeom.Xform.Define(stage, "/World").GetPrim())
stage.DefinePrim("/Prototypes", "Scope").SetSpecifier(Sdf.SpecifierClass)
mesh = UsdGeom.Mesh.Define(stage, "/Prototypes/Crate/Box")
points = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
mesh.CreatePointsAttr(points)
mesh.CreateFaceVertexCountsAttr([4] * 6)
mesh.CreateFaceVertexIndicesAttr([0, 1, 3, 2, 4, 6, 7, 5, 0, 4, 5, 1, 2, 3, 7, 6, 0, 2, 6, 4, 1, 5, 7, 3])
mesh.CreateExtentAttr(UsdGeom.PointBased.ComputeExtent(points))
for i in range(8):
    crate = UsdGeom.Xform.Define(stage, f"/World/Crate_{i}")
    crate.AddTranslateOp().Set(Gf.Vec3d(2 * i, 0, 0))
    crate.GetPrim().GetReferences().AddInternalReference("/Prototypes/Crate")
    crate.GetPrim().SetInstanceable(True)
stage.GetRootLayer().Save()
'''


def upstream_schema(relative: str) -> dict:
    path = UPSTREAM / relative
    assert path.is_file(), f"the upstream contracts are read from {UPSTREAM} (../shared next to the repository)"
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One real run of every kind, on copies of the shipped fixture (and an instanced stage)."""
    root = tmp_path_factory.mktemp("kinds")
    env = isolated_env(root)
    stage = root / FIXTURE.name
    shutil.copy2(FIXTURE, stage)
    instanced = root / "instanced.usda"
    subprocess.run([sys.executable, "-c", INSTANCED_STAGE, str(instanced)], check=True)
    # A usd-optimize that cannot load (as a wheel with broken native libraries does): the
    # executor's probe finds no usd-optimize and the run takes the structural-only route.
    broken = root / "broken-usd-optimize"
    (broken / "usd_optimize").mkdir(parents=True)
    (broken / "usd_optimize" / "__init__.py").write_text('raise ImportError("usd-optimize cannot load here")\n')
    done = {}
    for kind, (branch, _, _) in KINDS.items():
        out = root / kind
        args = ["optimize", str(instanced if kind == "already-optimized" else stage), "-o", str(out), "--json"]
        if branch:
            args += ["--restructure", branch]
        run_env = dict(env, PYTHONPATH=str(broken)) if kind == "structural-only" else env
        done[kind] = (usdtune(run_env, *args), out)
    return env, done


@pytest.mark.parametrize("kind", KINDS)
def test_every_artifact_follows_the_upstream_contract_and_the_report_passes_the_gate(runs, kind):
    env, done = runs
    result, out = done[kind]
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "optimization-report.json").read_text())
    _, mode, writes_output = KINDS[kind]
    assert report["workflow_mode"] == mode
    assert (report["output_path"] is not None) == writes_output

    checked = []
    for name, contract in CONTRACTS.items():
        path = out / f"{name}.json"
        if path.is_file():
            schema = upstream_schema(contract)
            validator = jsonschema.validators.validator_for(schema)(schema)
            errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(json.loads(path.read_text()))]
            assert not errors, (name, errors[:5])
            checked.append(name)
    assert {"setup-preflight", "structure-assessment", "validation-report", "optimization-report"} <= set(checked)

    gate = json.loads((out / "report-gate.json").read_text())
    assert gate["passed"] and gate["violations"] == []
    assert usdtune(env, "check-report", str(out / "optimization-report.json")).returncode == 0

    summary = report["structural_summary"]
    if kind in ("deduplicate-internally", "extract-as-assets"):
        # Coverage reconciled against the manifest the report records; the descent converged.
        assert report["target_coverage"]["source_manifests"] == ["apply-restructure-manifest.json"]
        manifest = json.loads((out / "apply-restructure-manifest.json").read_text())
        assert manifest["frontier"]["reuse_measured"] is True and manifest["frontier"]["descent_converged"] is True
        assert {e["path"] for e in report["target_coverage"]["entries"]} == {t["path"] for t in manifest["phase4_targets"]}
        shared = [t for t in manifest["phase4_targets"] if t.get("identity_disposition") in ("externalize_shared", "internal_share")]
        assert shared and all(t["identity_signal"] in ("kind", "naming", "structural_fallback") for t in shared)
        root = [t for t in manifest["phase4_targets"] if t["target_class"] == "assembly_root"]
        assert [t["mesh_count"] for t in root] == [manifest["assembly_root"]["mesh_count"]]
        assert summary["reuse_measured"] and summary["frontier_descent_converged"]
    if kind in ("optimize-as-is", "exit", "structural-only"):
        # The factory's repeated machines stay unshared: the user's answer at the gate, recorded as such.
        assert summary["frontier_descent_converged"] is False and summary["frontier_convergence_waived"] is True
        assert f"'{KINDS[kind][0]}'" in summary["frontier_convergence_waiver_reason"]
    if kind == "structural-only":
        assert report["runtime_context"]["usdOptimize"]["version"] == "unavailable"
        assert report["operations"] == [] and report["next_profile_capture"]
    # An op's method names the op and its safety class, never its arguments.
    assert all("{" not in op["method"] for op in report["operations"])


def check_report(env, tmp_path, report, *manifests, name="report.json"):
    path = tmp_path / name
    path.write_text(json.dumps(report))
    args = ["check-report", str(path), "--json"] + [a for m in manifests for a in ("--manifest", str(m))]
    done = usdtune(env, *args)
    assert done.returncode in (0, 1), done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["passed"] == (done.returncode == 0)
    return {v["check"] for v in verdict["violations"]}, [v["message"] for v in verdict["violations"]]


def test_the_gate_gives_the_upstream_gates_verdicts_on_its_own_examples(runs, tmp_path):
    env, _ = runs
    design = json.loads((FIXTURES / "optimization-report.design-fixture.json").read_text())
    design_manifest = FIXTURES / "optimization-report.design-fixture.manifest.json"
    structural = json.loads((FIXTURES / "optimization-report.structural-only-fixture.json").read_text())
    # The design report records its manifest by a path relative to itself.
    for recorded in design["target_coverage"]["source_manifests"]:
        shutil.copy2(design_manifest, tmp_path / recorded)
    # The design fixtures pass; the structural-only one reconciled against the design run's
    # manifest does not (two planned targets it never covers).
    assert check_report(env, tmp_path, design, design_manifest) == (set(), [])
    assert check_report(env, tmp_path, structural) == (set(), [])
    checks, messages = check_report(env, tmp_path, structural, design_manifest)
    assert checks == {"coverage"} and len(messages) == 2

    # The failures the upstream README describes, each made from the passing design fixture.
    def variant(change):
        report = copy.deepcopy(design)
        change(report)
        return report

    planned = json.loads(design_manifest.read_text())["phase4_targets"]
    restructure_entries = [
        {"path": t["path"], "role": t["target_class"], "mesh_count": t["mesh_count"], "disposition": "optimized"} for t in planned]

    def with_entries(entries):
        return lambda r: r["target_coverage"].update(complete=True, entries=entries)

    # A planned target (the assembly root) dropped from coverage.
    checks, messages = check_report(env, tmp_path, variant(with_entries(restructure_entries[:-1])), design_manifest)
    assert "coverage" in checks and any("no coverage entry" in m for m in messages)
    # A covered target no manifest plans.
    extra = restructure_entries + [dict(restructure_entries[0], path="/elsewhere/extra.usd")]
    assert "coverage" in check_report(env, tmp_path, variant(with_entries(extra)), design_manifest)[0]
    # A lying zero-mesh skip.
    lying = [dict(restructure_entries[0], disposition="skipped_zero_meshes")] + restructure_entries[1:]
    checks, messages = check_report(env, tmp_path, variant(with_entries(lying)), design_manifest)
    assert any("skipped_zero_meshes" in m for m in messages)
    # Restructure roles with no manifest, and an unresolved (blocked) target.
    unreconciled = variant(lambda r: (with_entries(restructure_entries)(r), r["target_coverage"].pop("source_manifests")))
    assert any("no manifest" in m for m in check_report(env, tmp_path, unreconciled)[1])
    blocked = [dict(restructure_entries[0], disposition="blocked")] + restructure_entries[1:]
    assert "coverage" in check_report(env, tmp_path, variant(with_entries(blocked)), design_manifest)[0]
    # A repack presented as the optimization's saving.
    repack = {"raw_input_bytes": 1000, "repack_normalized_baseline_bytes": 400, "optimized_bytes": 400,
              "repack_delta_pct": -60.0, "structural_delta_pct": 0.0, "raw_delta_pct": -60.0,
              "scored_against": "repack_normalized"}
    assert check_report(env, tmp_path, variant(lambda r: r.update(footprint=repack)))[0] == {"footprint"}
    # A geometry op on a de-duplicating run whose descent is not recorded as converged.
    def decimate_unconverged(report):
        report["operations"].append({"order": 99, "name": "decimateMeshes", "method": "usd-optimize decimateMeshes", "result": "ok"})
        report["structural_summary"] = {"reuse_measured": True, "frontier_descent_converged": False,
                                        "frontier_final_rescan_new_groups_above_floor": 3}
        # No manifest to record convergence either: the run's own claim is all there is.
        report["target_coverage"] = {"complete": True, "entries": [
            {"path": "/tmp/factory.usd", "role": "monolith", "mesh_count": 12, "disposition": "optimized"}]}
    assert check_report(env, tmp_path, variant(decimate_unconverged))[0] == {"descent"}


def numbers(text: str) -> float:
    return float(text.replace(",", "").strip())


def test_the_html_report_renders_offline_and_shows_the_jsons_numbers(runs, tmp_path):
    from playwright.sync_api import sync_playwright

    env, done = runs
    out = done["deduplicate-internally"][1]
    report = json.loads((out / "optimization-report.json").read_text())
    page_path = out / "optimization-report.html"
    assert report["artifacts"]["html"] == str(page_path)
    url = page_path.as_uri()
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=args)
        try:
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            page = context.new_page()
            problems, requests = [], []
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(url)
            page.wait_for_load_state("load")
            assert problems == [] and requests == [url], (problems, requests)
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000

            assert page.text_content("[data-field=verdict]").strip() == report["verdict"]
            assert numbers(page.text_content("[data-field=optimization_score]")) == report["optimization_score"]
            metrics = {m["name"]: m for m in report["metrics"]}
            for name in ("prim_count", "prim_count_authored", "total_size_bytes"):
                row = f"tr[data-metric={name}]"
                assert numbers(page.text_content(f"{row} [data-before]")) == metrics[name]["before"], name
                assert numbers(page.text_content(f"{row} [data-after]")) == metrics[name]["after"], name
            phases = report["structural_summary"]["x_usdtune"]["phases"]
            shown = page.eval_on_selector_all(
                "tr[data-phase]", "rows => rows.map(r => [r.dataset.phase, r.querySelector('[data-seconds]').textContent])")
            assert [(label, float(seconds)) for label, seconds in shown] == [(p["label"], p["seconds"]) for p in phases]
            # Findings are grouped by concept, one expandable block each, not one row per finding.
            concepts = report["structural_summary"]["x_usdtune"]["findings"]
            assert page.locator("#findings details").count() == len(concepts)

            # Dark: the page follows the reader's scheme; print: a PDF renders.
            light = page.evaluate("getComputedStyle(document.body).backgroundColor")
            page.emulate_media(color_scheme="dark")
            assert page.evaluate("getComputedStyle(document.body).backgroundColor") != light
            page.screenshot(path=str(tmp_path / "report-dark.png"))
            page.emulate_media(media="print", color_scheme="light")
            assert len(page.pdf()) > 10_000
            assert requests == [url], "nothing was fetched while rendering, in any scheme"
        finally:
            browser.close()


def test_show_open_hands_the_page_to_the_browser(runs, tmp_path):
    env, done = runs
    result, out = done["optimize-as-is"]
    run_id = json.loads(result.stdout)["run_id"]
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f"#!/bin/sh\necho \"$1\" > {opened}\n")
    browser.chmod(0o755)
    shown = usdtune(dict(env, BROWSER=str(browser)), "show", run_id, "--open")
    assert shown.returncode == 0, shown.stderr
    assert opened.read_text().strip() == str(out / "optimization-report.html")
    missing = usdtune(dict(env, BROWSER=str(tmp_path / "no-such-browser")), "show", run_id, "--open")
    assert missing.returncode == 1 and "opener_failed" in missing.stderr
