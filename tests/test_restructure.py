"""Apply-restructure (Phases 2f, 3, 5) on real scenes through `usdtune optimize`: the shipped
monolithic factory and the Duplex BIM export in both dedupe materializations, the Teapot
DrawModes scene (35 references of one asset, flipped in an override layer), a scene whose
copies carry overrides or their own variant, and the reference remap through two levels."""
import json
import shutil
import sys
from pathlib import Path

import jsonschema
import pytest
from pxr import Sdf, Usd, UsdGeom

from conftest import EXTENSION_DIR, FIXTURE, REPO, isolated_env, schema_for, tree_digest, usdtune

CORPUS = REPO.parent / "shared" / "corpus"
DUPLEX = CORPUS / "bim_Duplex_ifc2usd" / "Duplex_A_20110907.usdc"
TEAPOT = CORPUS / "usdwg_Teapot"
SCENES = {"factory": FIXTURE, "duplex": DUPLEX}
BRANCHES = ["deduplicate-internally", "extract-as-assets"]


def artifact(out: Path, name: str) -> dict:
    value = json.loads((out / f"{name}.json").read_text())
    jsonschema.validate(value, schema_for(name))
    return value


def standalone_meshes(path: str, include_abstract: bool = False, mute=()) -> int:
    stage = Usd.Stage.Open(path, Usd.Stage.LoadNone)
    for layer in mute:
        stage.MuteLayer(layer)
    predicate = Usd.PrimAllPrimsPredicate if include_abstract else Usd.PrimDefaultPredicate
    return sum(1 for p in Usd.PrimRange.Stage(stage, predicate) if p.IsA(UsdGeom.Mesh))


@pytest.fixture(scope="module")
def restructured(tmp_path_factory):
    """Each scene through each dedupe branch once (copies of the sources; their bytes are kept)."""
    root = tmp_path_factory.mktemp("restructure")
    env = isolated_env(root)
    runs = {}
    for name, source in SCENES.items():
        stage = root / "input" / name / source.name
        stage.parent.mkdir(parents=True)
        shutil.copy2(source, stage)
        before = stage.read_bytes()
        for branch in BRANCHES:
            out = root / f"{name}-{branch}"
            done = usdtune(env, "optimize", str(stage), "-o", str(out), "--restructure", branch, "--json")
            runs[(name, branch)] = (done, out, stage, before)
    return runs


@pytest.mark.parametrize("branch", BRANCHES)
@pytest.mark.parametrize("scene", list(SCENES))
def test_restructure_is_lossless_and_reduces_authored_prims(restructured, scene, branch):
    done, out, stage, source_bytes = restructured[(scene, branch)]
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert json.loads(done.stdout)["state"] == "completed", done.stderr[-3000:]
    assert stage.read_bytes() == source_bytes, "the source stage must never be written"

    proof = artifact(out, "preservation-apply-restructure")
    assert proof["strength"] == "per_mesh" and proof["passed"], proof["differences"]
    prims = proof["prims_with_instance_proxies"]
    assert prims["after"] - prims["material_closure_prims"] == prims["before"]
    specs = proof["authored_prim_specs"]
    if scene == "duplex":
        # Its copies already reference a library: they share it as instances, and nothing is
        # copied out of it (a prototype per group had grown the specs 1,375 -> 1,531). In
        # external mode the library moves to a shared layer, which repeats its two ancestors.
        assert specs["after"] <= specs["before"] + (2 if branch == "extract-as-assets" else 0)

        def composed(path):
            opened = Usd.Stage.Open(str(path))
            return sum(1 for _ in opened.Traverse())
        assert composed(proof["after"]) < composed(stage)
    else:
        assert specs["after"] < specs["before"]
    assert proof["rendered_meshes"]["before"] == proof["rendered_meshes"]["after"] > 0

    manifest = artifact(out, "apply-restructure-manifest")
    mode = {"deduplicate-internally": "internal_reference", "extract-as-assets": "external_prototype"}[branch]
    assert manifest["materialization"] == mode
    root = manifest["new_assembly_root"]
    opened = Usd.Stage.Open(root)
    assert opened and opened.GetPrototypes(), "duplicate sites must compose as instances"
    assert all(o["validate_usd_minimum"] == "pass" for o in manifest["outputs"])
    assert all(Path(o["path"]).is_file() for o in manifest["outputs"])
    # Every target's mesh count is what a default-predicate walk of it standalone reaches; in
    # internal mode the class namespace Phase 4 de-classes is counted beside it.
    for target in manifest["phase4_targets"]:
        mute = target.get("mute_layers", [])
        assert target["mesh_count"] == standalone_meshes(target["path"], mute=mute), target
        reachable = standalone_meshes(target["path"], include_abstract=True, mute=mute)
        assert target["mesh_count"] + target.get("declassed_mesh_count", 0) == reachable, target
    if mode == "external_prototype":
        # Copies become prototype files; a library the copies already referenced (Duplex)
        # becomes one shared layer. Either way the shared targets go first in Phase 4.
        shared = [t for t in manifest["phase4_targets"] if t["target_class"] in ("prototype", "shared_layer")]
        assert shared and all(t["dependency_group"] == "shared_first" and t["mesh_count"] > 0 for t in shared)
        for target in (t for t in shared if t["target_class"] == "prototype"):
            prototype = Usd.Stage.Open(target["path"])
            assert prototype.GetDefaultPrim().IsValid(), target["path"]
    shared = [o["path"] for o in manifest["outputs"] if o["kind"] == "shared_layer"]
    assert manifest["assembly_root"]["mesh_count"] == standalone_meshes(root, mute=shared)

    readiness = artifact(out, "instancing-readiness")
    assert readiness["flipped"] > 0 and readiness["authored_in"] == root

    # Phase 4 edits definitions, never their uses: on the Duplex, whose scene meshes compose
    # a library's through references, deduplicateGeometry on every composed mesh had authored
    # references that cycled with those arcs (1,438 ArcCycle errors, the target blocked).
    status = artifact(out, "operations-status")
    assert status["targets"] and all(t["state"] == "done" for t in status["targets"]), \
        [(t["path"], t.get("code"), t.get("reason")) for t in status["targets"]]
    assert all(t["reverify"]["new_composition_errors"] == 0 for t in status["targets"])


def test_restructured_outputs_flow_through_phase_4_and_the_remap(restructured):
    done, out, _, _ = restructured[("factory", "extract-as-assets")]
    status = artifact(out, "operations-status")
    everything = status["targets"] + status["skipped"]
    assert {t["role"] for t in everything} >= {"prototype", "assembly_root"}
    assert all(t["coverage"] in ("optimized", "skipped_zero_meshes") for t in everything)
    assert all((t["state"], t["disposition"]) == ("done", "optimized") for t in status["targets"])
    assert status["overall"]["total"] == len(everything) and status["overall"]["done"] == len(status["targets"])
    # Prototype-first batches: every shared prototype ran before any assembly that uses them,
    # each batch wrote every output it owed, and no batch ran more workers than there are cores.
    batches = status["schedule"]["batches"]
    order = {"shared_first": 0, "independent": 1, "dependent_after": 2}
    ranks = [order[b["dependency_group"]] for b in batches]
    assert ranks == sorted(ranks) and ranks[0] == 0, batches
    assert all(b["outputs_written"] == b["outputs_expected"] for b in batches)
    assert all(1 <= b["concurrency"] <= status["schedule"]["max_workers"] for b in batches)
    ran = [t for t in status["targets"] if t["coverage"] == "optimized"]
    assert sorted(p for b in batches for p in b["targets"]) == sorted(t["path"] for t in ran)
    for target in ran:
        assert target["reverify"]["opens"] and target["reverify"]["new_composition_errors"] == 0
        # The factory has no asset path: only a written file's own arcs call for re-anchoring.
        assert target["reanchored"] is any(Sdf.Layer.FindOrOpen(target["path"]).GetCompositionAssetDependencies())
        assert target["reverify"]["mesh_count"] == standalone_meshes(target["output_path"], include_abstract=True) > 0
    remap = artifact(out, "ref-remap-manifest")
    report = json.loads((out / "optimization-report.json").read_text())
    assert report["output_path"] == remap["new_assembly_root"]
    final = Usd.Stage.Open(report["output_path"])
    assert final.GetPrototypes()
    assert report["structural_summary"]["x_usdtune"]["proof"]["passed"] is True
    assert artifact(out, "preservation-so-run-operations")["strength"] == "aggregate"


def test_selective_loading_payloads_each_boundary(tmp_path):
    # A small monolith with clear boundaries and no payloads: the gate offers selective loading.
    stage = tmp_path / "input" / "timesampledAttributes.usda"
    stage.parent.mkdir()
    shutil.copy2(CORPUS / "nvidia_scene_optimizer_testdata" / "timesampledAttributes.usda", stage)
    env = isolated_env(tmp_path)
    out = tmp_path / "out"
    done = usdtune(env, "optimize", str(stage), "-o", str(out), "--restructure", "decompose-for-selective-loading", "--json")
    assert done.returncode in (0, 1), done.stderr[-3000:]
    manifest = artifact(out, "apply-restructure-manifest")
    assert manifest["materialization"] == "selective_loading"
    subassets = [o for o in manifest["outputs"] if o["kind"] == "loadable_subasset"]
    assert len(subassets) == 5 and all(o["validate_usd_minimum"] == "pass" for o in subassets)
    assert {t["target_class"] for t in manifest["phase4_targets"]} == {"loadable_subasset"}
    unloaded = Usd.Stage.Open(manifest["new_assembly_root"], Usd.Stage.LoadNone)
    assert len(unloaded.FindLoadable()) == 5, "each boundary is a payload the user can leave unloaded"
    assert artifact(out, "preservation-apply-restructure")["passed"]
    assert artifact(out, "instancing-readiness")["flipped"] == 0


def test_drawmodes_flips_land_in_an_override_layer(tmp_path):
    env = isolated_env(tmp_path)
    before = tree_digest(TEAPOT)
    out = tmp_path / "out"
    done = usdtune(env, "optimize", str(TEAPOT / "DrawModes.usd"), "-o", str(out), "--json")
    assert done.returncode in (0, 1), done.stderr[-3000:]
    assert tree_digest(TEAPOT) == before, "the Teapot sources must be byte-identical afterwards"

    readiness = artifact(out, "instancing-readiness")
    assert readiness["edit_target"] == "override_layer"
    assert readiness["flipped"] == 35 and readiness["held_back"] == 0
    assert {s["readiness"] for s in readiness["shares"]} == {"variant_divergence"}
    layer = Path(readiness["authored_in"])
    assert layer.parent.parent == out
    text = layer.read_text()
    assert "def " not in text and text.count("instanceable = true") == 35, "only `over`s with the flag"
    stage = Usd.Stage.Open(str(layer))
    assert sum(p.IsInstance() for p in stage.GetPseudoRoot().GetChildren()[0].GetChildren()) == 35
    assert artifact(out, "preservation-apply-restructure")["passed"]


ASSET = """#usda 1.0
(
    defaultPrim = "Lamp"
)

def Xform "Lamp" (
    variants = {
        string color = "red"
    }
    prepend variantSets = "color"
)
{
    def Cube "Base"
    {
        double size = 2
    }

    def Sphere "Bulb"
    {
        double radius = 0.5
    }
    variantSet "color" = {
        "blue" {
            def Cube "Shade"
            {
                color3f[] primvars:displayColor = [(0, 0, 1)]
            }
        }
        "red" {
            def Cube "Shade"
            {
                color3f[] primvars:displayColor = [(1, 0, 0)]
            }
        }
    }
}
"""
OVERRIDE = """        over "Bulb"
        {
            double radius = 2
        }
"""


def lamp(name: str, x: int, body: str = "", variant: str = "") -> str:
    variants = f"""
        variants = {{
            string color = "{variant}"
        }}""" if variant else ""
    return f"""    def "{name}" (
        references = @./lamp.usda@{variants}
    )
    {{
        double3 xformOp:translate = ({x}, 0, 0)
        uniform token[] xformOpOrder = ["xformOp:translate"]
{body}    }}

"""


def test_copies_with_overrides_or_their_own_variant_are_not_flipped(tmp_path):
    scene = tmp_path / "scene"
    scene.mkdir()
    (scene / "lamp.usda").write_text(ASSET)
    lamps = [lamp("Clean_0", 0), lamp("Clean_1", 3), lamp("Overridden_0", 6, OVERRIDE),
             lamp("Overridden_1", 9, OVERRIDE), lamp("Blue_0", 12, variant="blue")]
    (scene / "room.usda").write_text('#usda 1.0\n(defaultPrim = "World")\ndef Xform "World"\n{\n' + "".join(lamps) + "}\n")
    before = tree_digest(scene)
    env = isolated_env(tmp_path)
    out = tmp_path / "out"
    done = usdtune(env, "optimize", str(scene / "room.usda"), "-o", str(out), "--json")
    assert done.returncode in (0, 1), done.stderr[-3000:]
    readiness = artifact(out, "instancing-readiness")
    flipped = {path for share in readiness["shares"] for path in share["flipped"]}
    held = {h["path"]: h["reason"] for share in readiness["shares"] for h in share["held_back"]}
    assert flipped == {"/World/Clean_0", "/World/Clean_1"}
    assert "opinions on descendants" in held["/World/Overridden_0"] and "/World/Overridden_1" in held
    assert "variant" in held["/World/Blue_0"]
    verdicts = {s["prototype"]: s["readiness"] for s in readiness["shares"]}
    assert "overrides_found" in verdicts.values()
    stage = Usd.Stage.Open(readiness["authored_in"])
    assert [p.GetName() for p in stage.GetPrimAtPath("/World").GetChildren() if p.IsInstance()] == ["Clean_0", "Clean_1"]
    assert tree_digest(scene) == before


def test_reference_remap_propagates_through_two_levels(tmp_path):
    sys.path.insert(0, str(EXTENSION_DIR / "usdtune.executor"))
    from usdtune_executor.errors import TaskError
    from usdtune_executor.tasks import remap

    class Reporter:
        def progress(self, *_):
            pass

    source, optimized = tmp_path / "source", tmp_path / "optimized"
    source.mkdir()
    optimized.mkdir()
    child = '#usda 1.0\n(defaultPrim = "Child")\ndef Xform "Child"\n{\n    def Cube "Box"\n    {\n        double size = SIZE\n    }\n}\n'
    (source / "child.usda").write_text(child.replace("SIZE", "1"))
    (optimized / "child.optimized.usda").write_text(child.replace("SIZE", "2"))
    (source / "cell.usda").write_text('#usda 1.0\n(defaultPrim = "Cell")\ndef Xform "Cell"\n{\n'
                                      '    def "A" (references = @./child.usda@)\n    {\n    }\n}\n')
    (source / "plant.usda").write_text('#usda 1.0\n(defaultPrim = "Plant")\ndef Xform "Plant"\n{\n'
                                       '    def "Cell_0" (payload = @./cell.usda@)\n    {\n    }\n'
                                       '    def Cube "Untouched"\n    {\n    }\n}\n')
    before = tree_digest(source)
    result = remap.run({"root": str(source / "plant.usda"),
                        "optimized": {str(source / "child.usda"): str(optimized / "child.optimized.usda")},
                        "output_dir": str(tmp_path / "out")}, Reporter())
    assert {r["kind"] for r in result["rewritten"]} == {"new_root", "parent_assembly"}
    assert len(result["rewritten"]) == 2 and not result["composition_errors"]
    stage = Usd.Stage.Open(result["new_assembly_root"])
    assert stage.GetPrimAtPath("/Plant/Cell_0/A/Box").GetAttribute("size").Get() == 2
    assert stage.GetPrimAtPath("/Plant/Untouched")
    assert tree_digest(source) == before
    original = Usd.Stage.Open(str(source / "plant.usda"))
    assert original.GetPrimAtPath("/Plant/Cell_0/A/Box").GetAttribute("size").Get() == 1

    # A cycle among the impacted layers stops the remap instead of guessing.
    (source / "cell.usda").write_text((source / "cell.usda").read_text().replace(
        "    def \"A\"", "    def \"Loop\" (references = @./plant.usda@)\n    {\n    }\n    def \"A\""))
    with pytest.raises(TaskError) as raised:
        remap.run({"root": str(source / "plant.usda"),
                   "optimized": {str(source / "child.usda"): str(optimized / "child.optimized.usda")},
                   "output_dir": str(tmp_path / "out2")}, Reporter())
    assert raised.value.code == "ref_remap_cycle"


def textured_plant(folder: Path) -> Path:
    """Six copies of a two-mesh machine whose material reads `./textures/wood.png`."""
    (folder / "textures").mkdir(parents=True)
    (folder / "textures" / "wood.png").write_bytes(b"not really a png")
    from pxr import Gf, UsdShade
    stage = Usd.Stage.CreateNew(str(folder / "plant.usda"))
    UsdGeom.SetStageMetersPerUnit(stage, 1.0)
    stage.SetDefaultPrim(UsdGeom.Xform.Define(stage, "/World").GetPrim())
    for i in range(6):
        root = f"/World/Machine_{i}"
        UsdGeom.Xform.Define(stage, root).AddTranslateOp().Set(Gf.Vec3d(i * 3, 0, 0))
        material = UsdShade.Material.Define(stage, f"{root}/Looks/Wood")
        texture = UsdShade.Shader.Define(stage, f"{root}/Looks/Wood/Texture")
        texture.CreateIdAttr("UsdUVTexture")
        texture.CreateInput("file", Sdf.ValueTypeNames.Asset).Set("./textures/wood.png")
        surface = UsdShade.Shader.Define(stage, f"{root}/Looks/Wood/Surface")
        surface.CreateIdAttr("UsdPreviewSurface")
        surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(texture.ConnectableAPI(), "rgb")
        material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
        for part, height in (("Body", 1), ("Lid", 2)):
            mesh = UsdGeom.Mesh.Define(stage, f"{root}/{part}")
            mesh.CreatePointsAttr([(0, 0, 0), (1, 0, 0), (1, height, 0), (0, height, 0)])
            mesh.CreateFaceVertexCountsAttr([4])
            mesh.CreateFaceVertexIndicesAttr([0, 1, 2, 3])
            UsdShade.MaterialBindingAPI.Apply(mesh.GetPrim()).Bind(material)
    stage.Save()
    return folder / "plant.usda"


def test_texture_paths_resolve_from_every_written_file(tmp_path):
    """Prototype files land in prototypes/, Phase 4 outputs in optimized/: a relative texture
    path copied there is re-anchored, so every file still reads the source's texture."""
    stage = textured_plant(tmp_path / "scene")
    texture = str(stage.parent / "textures" / "wood.png")
    before = tree_digest(stage.parent)
    out = tmp_path / "out"
    done = usdtune(isolated_env(tmp_path), "optimize", str(stage), "-o", str(out), "--restructure", "extract-as-assets", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert tree_digest(stage.parent) == before
    status = artifact(out, "operations-status")
    written = [t["output_path"] for t in status["targets"] if t["coverage"] == "optimized"]
    assert written and all(t["reanchored"] for t in status["targets"] if t["coverage"] == "optimized")
    prototypes = [str(p) for p in (out / "restructured" / "prototypes").glob("*.usdc")]
    assert prototypes
    for path in prototypes + written + [json.loads(done.stdout)["output_path"]]:
        opened = Usd.Stage.Open(path)
        files = [p.GetAttribute("inputs:file").Get() for p in Usd.PrimRange.Stage(opened, Usd.TraverseInstanceProxies())
                 if p.GetAttribute("inputs:file")]
        assert files and all(f.resolvedPath == texture for f in files), (path, files)


def test_a_composed_set_is_optimized_file_by_file_and_remapped(tmp_path):
    """One asset file per object: each referenced file is its own Phase 4 target (not the root,
    where every edit would land as an override), the root is remapped to the outputs, and the
    report reconciles its coverage with the ref-remap manifest."""
    import subprocess
    source = tmp_path / "set"
    subprocess.run([sys.executable, str(REPO / "fixtures" / "generate_composed.py"), str(source),
                    "--objects", "24", "--assets", "16"], check=True, capture_output=True)
    before = tree_digest(source)
    env = isolated_env(tmp_path)
    out = tmp_path / "out"
    done = usdtune(env, "optimize", str(source / "set.usda"), "-o", str(out), "--restructure", "optimize-as-is",
                   "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    assert tree_digest(source) == before
    plan = artifact(out, "operation-plan")
    assert sorted(Path(t["path"]).name for t in plan["targets"]) == [f"Prop{a:03d}.usda" for a in range(16)]
    assert {t["target_class"] for t in plan["targets"]} == {"shared_layer"}
    remap = artifact(out, "ref-remap-manifest")
    assert len(remap["phase4_targets"]) == 16 and remap["assembly_root"]["mesh_count"] == 0
    report = artifact(out, "optimization-report")
    assert report["target_coverage"]["source_manifests"] == ["ref-remap-manifest.json"]
    assert report["verdict"] != "regressed", report["verdict"]
    # The new root references the optimized files, not the sources, and adds no override.
    root = Path(json.loads(done.stdout)["output_path"])
    assert root.parent.name == "assemblies"
    stage = Usd.Stage.Open(str(root))
    used = {Path(layer.realPath).parent for layer in stage.GetUsedLayers() if layer.realPath}
    assert (source / "assets") not in used
    assert "points" not in root.read_text(), "no mesh data in the root"
    checked = usdtune(env, "check-report", str(out / "optimization-report.json"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
