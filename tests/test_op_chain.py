"""The op chain, through `usdtune optimize` on real scenes: usd-optimize's own test scenes get
the op their evidence calls for and pass the geometry proof; many single-mesh copies get a
point instancer whose placements stay at float precision; gated ops are held back with the
approval that would run them, approved ones run and the proof switches to the approved band;
an unknown pipeline is a usage error; an op that edits a layer besides the target fails it."""
import base64
import json
import shutil
import subprocess
import sys

import jsonschema
import numpy as np
import pytest
from pxr import Gf, Sdf, Usd, UsdGeom, UsdUtils

from conftest import FIXTURE, REPO, isolated_env, schema_for, usdtune

SO_TESTDATA = REPO.parent / "shared" / "corpus" / "nvidia_scene_optimizer_testdata"
TORUS = SO_TESTDATA / "editStageMetrics_torus.usda"
# usd-optimize test scene: (files it references, the op its evidence must select).
SO_SCENES = {
    "deduplicateGeometryExample.usd": ((), "deduplicateGeometry"),
    "mergeColocatedVertices_input.usd": ((), "meshCleanup"),
    "extentsTest.usda": ((), "computeExtents"),
    "optimizeTimeSamples.usda": (("optimizeTimeSamplesReference.usda",), "optimizeTimeSamples"),
}


def run(tmp_path, stage, *flags):
    env = isolated_env(tmp_path)
    out = tmp_path / "out"
    done = usdtune(env, "optimize", str(stage), "-o", str(out), "--restructure", "optimize-as-is", "--json", *flags)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    read = lambda name: json.loads((out / f"{name}.json").read_text())
    for name in ("operation-plan", "preservation-so-run-operations", "optimization-report"):
        jsonschema.validate(read(name), schema_for(name))
    return read


@pytest.mark.parametrize("scene", list(SO_SCENES))
def test_usd_optimize_test_scenes_get_the_op_their_evidence_calls_for(tmp_path, scene):
    companions, expected = SO_SCENES[scene]
    for name in (scene, *companions):
        shutil.copy2(SO_TESTDATA / name, tmp_path / name)
    source_bytes = (tmp_path / scene).read_bytes()
    read = run(tmp_path, tmp_path / scene)
    plan = read("operation-plan")
    chosen = {o["operation"]: o for o in plan["operations"]}
    assert expected in chosen, plan["skipped"]
    assert all(o["safety"] == "lossless" and o["evidence"] for o in plan["operations"]), "each op names its evidence"
    report = read("optimization-report")
    assert report["target_coverage"]["complete"] is True
    assert all(e["disposition"] == "optimized" for e in report["target_coverage"]["entries"])
    proof = read("preservation-so-run-operations")
    assert proof["strength"] == "aggregate" and proof["passed"], proof["differences"]
    output = Usd.Stage.Open(report["output_path"])
    assert output and output.GetPseudoRoot().GetChildren()
    assert (tmp_path / scene).read_bytes() == source_bytes, "the source stage is never written"
    # Asset paths are re-anchored exactly where the source has some (a referenced companion,
    # a search-path MDL): anywhere else, visiting every field for them would be wasted.
    layers, assets, unresolved = UsdUtils.ComputeAllDependencies(str(tmp_path / scene))
    target = read("operations-status")["targets"][0]
    assert target["reanchored"] is bool(len(layers) - 1 + len(assets) + len(unresolved))


def world_copies(stage) -> list:
    """World-space points of every rendered mesh, point instances expanded (an oracle apart
    from the product's own geometry signature)."""
    cache, default, copies = UsdGeom.XformCache(), Usd.TimeCode.Default(), []

    def placed(mesh, matrix):
        points = np.array(UsdGeom.Mesh(mesh).GetPointsAttr().Get(), dtype=np.float64)
        return (np.hstack([points, np.ones((len(points), 1))]) @ np.array(matrix))[:, :3]

    walk = iter(Usd.PrimRange.Stage(stage))
    for prim in walk:
        if prim.IsA(UsdGeom.PointInstancer):
            walk.PruneChildren()
            instancer, world = UsdGeom.PointInstancer(prim), cache.GetLocalToWorldTransform(prim)
            roots = [stage.GetPrimAtPath(t) for t in instancer.GetPrototypesRel().GetTargets()]
            for index, matrix in zip(instancer.GetProtoIndicesAttr().Get(), instancer.ComputeInstanceTransformsAtTime(default, default)):
                local = cache.GetLocalToWorldTransform(roots[index]) * world.GetInverse()
                copies.append(placed(roots[index], local * matrix * world))
        elif prim.IsA(UsdGeom.Mesh):
            copies.append(placed(prim, cache.GetLocalToWorldTransform(prim)))
    return copies


def test_many_small_copies_get_a_point_instancer_at_float_precision(tmp_path):
    """1,200 rotated and scaled copies of three meshes: a point instancer, unattended, and every
    copy's points stay where they were to float precision (usd-optimize's half orientations
    alone moved them by up to 7e-3 units here)."""
    stage = tmp_path / "scatter.usdc"
    subprocess.run([sys.executable, str(REPO / "fixtures" / "generate_scatter.py"), str(stage), "--copies", "1200"], check=True)
    read = run(tmp_path, stage)
    dedupe = next(o for o in read("operation-plan")["operations"] if o["operation"] == "deduplicateGeometry")
    assert dedupe["args"]["duplicateMethod"] == 4 and "point instancer" in dedupe["evidence"]
    assert dedupe["safety"] == "lossless" and dedupe["approval"] == "not needed"
    target = read("operations-status")["targets"][0]
    assert target["point_instancing"]["instances"] == 1200 and target["point_instancing"]["max_deviation"] < 1e-5
    proof = read("preservation-so-run-operations")
    assert proof["strength"] == "aggregate" and proof["passed"], proof["differences"]
    assert proof["rendered_meshes"] == {"before": 1200, "after": 1200}, "every instance is counted where it renders"
    output = Usd.Stage.Open(read("optimization-report")["output_path"])
    instancers = [UsdGeom.PointInstancer(p) for p in output.Traverse() if p.IsA(UsdGeom.PointInstancer)]
    assert len(instancers) == 3 and all(i.GetOrientationsfAttr().HasAuthoredValue() for i in instancers)
    before, after = world_copies(Usd.Stage.Open(str(stage))), world_copies(output)
    assert len(before) == len(after) == 1200
    centers = np.array([c.mean(axis=0) for c in after])
    deviation = 0.0
    for copy in before:
        twin = after[int(np.argmin(np.linalg.norm(centers - copy.mean(axis=0), axis=1)))]
        assert twin.shape == copy.shape
        deviation = max(deviation, float(np.abs(twin - copy).max()))
    assert deviation < 1e-4, f"a copy's points moved by {deviation:.2e} units"
    # The after-profile confirms the choice: fewer prims, faster warm open.
    metrics = {m["name"]: m for m in read("compare-profiles")["metrics"]}
    assert metrics["prim_count"]["change_pct"] < -90 and metrics["warm_open_ms"]["change_pct"] < 0


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
    untapped = " ".join(read("optimization-report")["structural_summary"]["x_usdtune"]["untapped_options"])
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


def test_an_op_that_edits_a_layer_besides_the_target_fails_the_target(tmp_path):
    """Phase 4.5: only the target's root layer is re-emitted, so an edit anywhere else would
    be lost. usd-optimize's own pythonScript op edits a sublayer here: the target fails with a
    stable code naming the layer, nothing is written, and the sublayer on disk is untouched."""
    sys.path.insert(0, str(REPO / "kit-extension" / "usdtune.executor"))
    from usdtune_executor.errors import TaskError
    from usdtune_executor.tasks import operations

    geometry = Usd.Stage.CreateNew(str(tmp_path / "geo.usda"))
    UsdGeom.Mesh.Define(geometry, "/World/Part").CreatePointsAttr([(0, 0, 0), (1, 0, 0), (0, 1, 0)])
    geometry.Save()
    root = tmp_path / "root.usda"
    root.write_text('#usda 1.0\n(\n    subLayers = [@./geo.usda@]\n)\n')
    before = (tmp_path / "geo.usda").read_bytes()
    script = base64.b64encode(b"from pxr import Sdf\n"
                              b"layer = Sdf.Layer.Find(stage.GetRootLayer().ComputeAbsolutePath('./geo.usda'))\n"
                              b"layer.GetPrimAtPath('/World/Part').active = False\n").decode()
    output = tmp_path / "out" / "root.optimized.usdc"

    class Reporter:
        def progress(self, *_):
            pass

    with pytest.raises(TaskError) as raised:
        operations.run({"stage_path": str(root), "output_path": str(output),
                        "operations": [{"operation": "pythonScript", "args": {"python": script}}]}, Reporter())
    assert raised.value.code == "edited_layer_outside_target" and raised.value.path.endswith("geo.usda")
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "geo.usda").read_bytes() == before


def _flat_parents_stage(path):
    """/World holds 1,400 prunable leaves of every kind pruneLeaves deletes, beside leaves it
    keeps (typeless, parents of meshes, a parent whose only child is a leaf, instances,
    referenced and payload leaves); /World/Only holds nothing but 1,100 Xform leaves."""
    stage = Usd.Stage.CreateNew(str(path))
    world = UsdGeom.Xform.Define(stage, "/World")
    stage.SetDefaultPrim(world.GetPrim())
    UsdGeom.Xform.Define(stage, "/Library/Empty")
    UsdGeom.Mesh.Define(stage, "/Library/Shape/Mesh").CreatePointsAttr([(0, 0, 0), (1, 0, 0), (0, 1, 0)])
    for n in range(1200):
        UsdGeom.Xform.Define(stage, f"/World/Leaf{n}").AddTranslateOp().Set(Gf.Vec3d(n, 0, 0))
    for n in range(100):
        UsdGeom.Scope.Define(stage, f"/World/Scope{n}")
    for n in range(100):
        leaf = UsdGeom.Xform.Define(stage, f"/World/Held{n}").GetPrim()
        leaf.CreateAttribute("custom:value", Sdf.ValueTypeNames.Int).Set(n)
        leaf.CreateRelationship("custom:target").AddTarget("/Library/Empty")
    for n in range(20):
        stage.DefinePrim(f"/World/Typeless{n}")
        UsdGeom.Mesh.Define(stage, f"/World/Parent{n}/Mesh").CreatePointsAttr([(0, 0, 0), (1, 0, 0), (0, 1, 0)])
        UsdGeom.Xform.Define(stage, f"/World/Nest{n}/Leaf")
        instance = UsdGeom.Xform.Define(stage, f"/World/Instance{n}").GetPrim()
        instance.GetReferences().AddInternalReference("/Library/Shape")
        instance.SetInstanceable(True)
        UsdGeom.Xform.Define(stage, f"/World/Referenced{n}").GetPrim().GetReferences().AddInternalReference(
            "/Library/Empty")
    UsdGeom.Xform.Define(stage, "/World/Payload").GetPrim().GetPayloads().AddPayload("./missing.usda")
    for n in range(1100):
        UsdGeom.Xform.Define(stage, f"/World/Only/Leaf{n}")
    stage.Save()


def test_pruning_flat_parents_fast_gives_the_op_s_own_result(tmp_path):
    """usd/flat_prune.py takes the leaves of a flat parent out of the layer before pruneLeaves
    (the op's own cost is quadratic there); the output must be byte for byte what the op alone
    writes."""
    sys.path.insert(0, str(REPO / "kit-extension" / "usdtune.executor"))
    from usdtune_executor.tasks import operations

    class Reporter:
        def progress(self, *_):
            pass

    outputs = {}
    for fast in (True, False):
        source = tmp_path / f"flat-{fast}.usda"
        _flat_parents_stage(source)
        before = source.read_bytes()
        output = tmp_path / "out" / f"flat-{fast}.optimized.usda"
        result = operations.run({"stage_path": str(source), "output_path": str(output), "no_flat_prune": not fast,
                                 "operations": [{"operation": "pruneLeaves",
                                                 "args": {"pruneMode": 1, "preserveUnloadedPayloads": True}}]},
                                Reporter())
        assert source.read_bytes() == before
        reports = result["operations"][0]["reports"]
        assert any("flat parent" in line for line in reports) == fast, reports
        outputs[fast] = Sdf.Layer.FindOrOpen(str(output)).ExportToString()
    assert outputs[True] == outputs[False]
    kept = Usd.Stage.Open(str(tmp_path / "out" / "flat-True.optimized.usda"))
    assert kept.GetPrimAtPath("/World/Only") and not kept.GetPrimAtPath("/World/Only").GetChildren()
    assert kept.GetPrimAtPath("/World/Typeless0") and not kept.GetPrimAtPath("/World/Leaf0")
