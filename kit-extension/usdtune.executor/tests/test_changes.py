"""What an op changed, and which composition errors are new: the executor's zero-work and
composition-health facts, on in-memory layers."""
from pxr import Sdf, Usd, UsdGeom

from usdtune_executor.usd.changes import ChangeLog, NativeOutput, differing
from usdtune_executor.usd.stage import composition_errors, new_composition_errors


def mesh_layer(x=1.0):
    layer = Sdf.Layer.CreateAnonymous(".usda")
    stage = Usd.Stage.Open(layer)
    mesh = UsdGeom.Mesh.Define(stage, "/W/M")
    mesh.CreatePointsAttr([(0, 0, 0), (x, 0, 0), (0, 1, 0)])
    return layer, stage


def test_notices_name_what_changed_and_equal_values_do_not_count():
    layer, stage = mesh_layer()
    original = Sdf.Layer.CreateAnonymous(".usda")
    original.TransferContent(layer)
    log = ChangeLog(stage)
    points = stage.GetPrimAtPath("/W/M").GetAttribute("points")
    points.Set(points.Get())  # the same value: no notice at all
    assert log.take() == (set(), set())
    points.Set([(0, 0, 0), (2, 0, 0), (0, 1, 0)])
    resynced, info = log.take()
    assert not resynced and Sdf.Path("/W/M.points") in info
    assert differing(layer, original, info) == {Sdf.Path("/W/M.points")}
    points.Set([(0, 0, 0), (1, 0, 0), (0, 1, 0)])  # back to the source's value
    assert differing(layer, original, log.take()[1]) == set()
    stage.DefinePrim("/W/New")
    assert Sdf.Path("/W/New") in log.take()[0]
    log.close()


def test_only_errors_the_source_does_not_have_are_new():
    layer = Sdf.Layer.CreateAnonymous(".usda")
    layer.ImportFromString('#usda 1.0\ndef "A" ( references = </B> ) {}\ndef "B" ( references = </A> ) {}\n'
                           'def "C" ( references = @./missing.usda@ ) {}\n')
    errors = composition_errors(Usd.Stage.Open(layer))
    kinds = sorted(e["type"] for e in errors)
    assert kinds == ["ArcCycle", "ArcCycle", "InvalidAssetPath"]
    assert {e["prim"] for e in errors} == {"/A", "/B", "/C"}
    assert all(e["layer"] for e in errors), "each error names a layer"
    missing = [e for e in errors if e["type"] == "InvalidAssetPath"]
    assert new_composition_errors(missing, errors) == [e for e in errors if e["type"] == "ArcCycle"]
    assert new_composition_errors(errors, errors) == []


def test_usd_optimizes_own_lines_are_kept_per_op():
    printed = NativeOutput(enabled=False)
    printed.text = "[INFO] deduplicateGeometry: Found 0 sets of equal meshes\n[INFO] meshCleanup: removed 0\nother\n"
    assert printed.reports("deduplicateGeometry") == ["Found 0 sets of equal meshes"]
    assert printed.reports("computeExtents") == []
