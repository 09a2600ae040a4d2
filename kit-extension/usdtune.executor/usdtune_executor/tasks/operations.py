"""Phases 4 and 4.5: run a usd-optimize op chain on a stage and write the result to a new path.

The source is opened, edited in memory through its root layer and exported elsewhere;
nothing is ever saved over the source. Relative asset paths are re-anchored to the new
location so the output opens where it lands. The output appears atomically
(usd/export.py), and only after every op succeeded; a chain that changed nothing
(usd/changes.py) writes no output at all and says so.
"""
import os
import time

from pxr import Sdf, Usd, UsdGeom

from ..errors import TaskError
from ..usd import flat_prune, instancer_precision
from ..usd.assets import reanchor_asset_paths, source_may_hold_asset_paths
from ..usd.export import export_atomically
from ..usd.changes import ChangeLog, NativeOutput, differing
from ..usd.optimize import check_operation_args, core
from ..usd.stage import composition_errors, describe, new_composition_errors, open_stage, reachable_mesh_count


def run(params, reporter):
    from usd_optimize.core import ExecutionContext

    so_core = core()
    chain = params["operations"]
    for step in chain:  # check the whole chain before touching anything
        check_operation_args(so_core, step["operation"], step.get("args", {}))

    output_path = os.path.abspath(params["output_path"])
    stage, open_errors = _open_for_edit(params)
    errors_before = composition_errors(stage)
    source_layer = stage.GetRootLayer()
    if os.path.abspath(source_layer.realPath) == output_path:
        raise TaskError("output_is_source", "refusing to write the optimized stage over its source", output_path)
    # usd-optimize walks with the default predicate, which skips abstract (class) prims: an
    # internal prototype namespace is defined for the chain and made abstract again after.
    namespace = source_layer.GetPrimAtPath(params["declass_namespace"]) if params.get("declass_namespace") else None
    if namespace:
        namespace.specifier = Sdf.SpecifierDef

    # usd-optimize's point instancers keep half-precision orientations: the copies' exact
    # placements are captured first and restored after (instancer_precision).
    started = time.perf_counter()
    placements = instancer_precision.Placements(stage) if instancer_precision.uses_point_instancing(chain) else None
    capture_seconds = time.perf_counter() - started
    context = ExecutionContext()
    context.set_stage(stage)
    changes = ChangeLog(stage)
    native = params.get("host", {}).get("runtime") != "kit"
    records, touched = [], []
    point_instancing = None
    in_place = UNKNOWN  # the meshes a mesh op may edit, found when the first one runs
    try:
        for index, step in enumerate(chain):
            operation, args = step["operation"], step.get("args", {})
            reporter.progress(index / max(1, len(chain)), f"{operation}")
            started = time.perf_counter()
            ok, error = True, None  # a scoped op with no scope of two meshes has nothing to do
            preremoved, prepruned = [], None
            if (flat_prune.applies(operation, args) and not params.get("no_flat_prune")
                    and not instancer_precision.uses_point_instancing(chain[index + 1:])):
                chosen = flat_prune.select(stage)
                if chosen:
                    # No stage may listen while the layer loses them: released and opened again
                    # (what the chain edited so far lives in the root layer alone).
                    _check_only_root_edited(stage)
                    # The stage hands out a weak handle to its root layer (and remove_stage ends
                    # the stage): a strong one keeps the layer and the chain's edits alive.
                    held = Sdf.Layer.FindOrOpen(source_layer.identifier)
                    changes.close()
                    context.remove_stage()
                    stage = None
                    preremoved = flat_prune.remove(held, chosen)
                    prepruned = (f"usdtune removed {len(preremoved)} leaves of {len(chosen)} flat parent(s) from "
                                 "the root layer before the op (usd/flat_prune.py)")
                    stage, _ = _open_for_edit(params)
                    del held
                    context.set_stage(stage)
                    changes = ChangeLog(stage)
            if operation in MESH_SCOPE_ARGS and in_place is UNKNOWN:
                in_place = _meshes_in_place(stage)
            with NativeOutput(native) as printed:
                for scoped in _scopes(stage, namespace, operation, args, in_place):
                    ok, error, _output = so_core.executeOperation(operation, context, scoped)
                    if not ok:
                        break
            seconds = time.perf_counter() - started
            reports = ([prepruned] if prepruned else []) + printed.reports(operation)
            records.append({"operation": operation, "args": args, "ok": bool(ok), "seconds": round(seconds, 4),
                            "error": error or "", "reports": reports})
            if not ok:
                raise TaskError("operation_failed", f"{operation} failed: {error}", params["stage_path"])
            if placements and instancer_precision.uses_point_instancing([step]):
                started = time.perf_counter()
                point_instancing = instancer_precision.restore_float_precision(stage, placements)
                point_instancing["seconds"] = round(capture_seconds + time.perf_counter() - started, 4)
            resynced, info = changes.take()
            touched.append((resynced | set(preremoved), info))
        _check_only_root_edited(stage)
        if namespace:
            namespace.specifier = Sdf.SpecifierClass
        changed = _record_changes(records, touched, source_layer)
        export_seconds, reanchored = 0.0, False
        if changed:
            started = time.perf_counter()
            written = source_layer
            reanchored = _may_hold_asset_paths(source_layer, params)
            if reanchored:
                # Re-anchored on a copy: paths relative to the output's folder, in a layer the
                # stage does not compose (it would resolve them from the source's folder, and warn).
                written = Sdf.Layer.CreateAnonymous(os.path.splitext(output_path)[1] or ".usdc")
                written.TransferContent(source_layer)
                reanchor_asset_paths(written, os.path.dirname(source_layer.realPath), os.path.dirname(output_path))
            export_atomically(written, output_path)
            export_seconds = time.perf_counter() - started
    finally:
        changes.close()
        context.remove_stage()
    if not changed:
        # Nothing to write: an output identical to its source would only look like work.
        return {"stage_path": params["stage_path"], "output_path": None, "unchanged": True, "operations": records,
                "export_seconds": 0.0, "reanchored": False, "point_instancing": point_instancing, "reverify": None}
    return {"stage_path": params["stage_path"], "output_path": output_path, "unchanged": False, "operations": records,
            "export_seconds": round(export_seconds, 4), "reanchored": reanchored, "point_instancing": point_instancing,
            "reverify": _reverify(output_path, params, open_errors, errors_before)}


def _open_for_edit(params):
    """The target's stage, edited through its root layer. A restructured root is optimized for
    its own content: its payloads stay unloaded and the shared layers it sublayers muted, so
    nothing is optimized twice through the root. Returns (stage, errors of the open)."""
    stage, open_errors = open_stage(params["stage_path"], load_payloads=params.get("load_payloads", True),
                                    composition=False)
    for layer in params.get("mute_layers") or ():
        stage.MuteLayer(layer)
    stage.SetEditTarget(stage.GetRootLayer())
    return stage, open_errors


# Ops that gather what they find under one common root (deduplicateGeometry's point
# instancers and shared prototypes): across a prototype namespace that root is the namespace
# itself, so geometry would leave the prototypes their instances reference.
GATHERING_OPS = {"deduplicateGeometry"}

# Ops that rewrite mesh data, and the argument that scopes them to listed meshes. They run on
# the meshes whose points the target authors in place: a mesh that composes its points
# through a reference or payload is a use of a definition, and an edit on the use would copy
# the definition's data into an opinion per use (deduplicateGeometry's reference would even
# cycle with the arc already there: 1,438 ArcCycle errors on the Duplex BIM scene, whose
# scene nodes reference a mesh library). The edit on the definition reaches every use.
MESH_SCOPE_ARGS = {"meshCleanup": "paths", "deduplicateGeometry": "meshPrimPaths"}
UNKNOWN = object()  # the in-place meshes before the first mesh op has looked


def _meshes_in_place(stage):
    """The stage's meshes whose points come from the root layer stack at their own path, or
    None when the root layer has no arc at all (then every mesh does; no walk needed)."""
    if not stage.GetRootLayer().GetCompositionAssetDependencies():
        return None
    in_place = []
    for prim in stage.Traverse():
        if prim.IsA(UsdGeom.Mesh):
            node = prim.GetAttribute("points").GetResolveInfo().GetNode()
            if not node or node.IsRootNode():
                in_place.append(str(prim.GetPath()))
    return in_place


def _scopes(stage, namespace, operation: str, args: dict, in_place=None):
    """The argument sets an op runs with: once as given, or, for a gathering op on a target
    that holds an internal prototype namespace, once per prototype (its own meshes) and once
    for the meshes outside the namespace, so everything it gathers stays where it was. A mesh
    op on a target with uses of definitions (`in_place` not None) sees only the meshes it
    authors in place."""
    key = MESH_SCOPE_ARGS.get(operation)
    if key and args.get(key):
        return [args]
    keep = (lambda paths: paths) if in_place is None or not key else \
        (lambda paths, listed=set(in_place): [p for p in paths if p in listed])
    if namespace is None or operation not in GATHERING_OPS:
        if in_place is None or not key:
            return [args]
        return [dict(args, **{key: in_place})] if in_place else []
    root = namespace.path
    meshes = lambda prims: keep([str(p.GetPath()) for p in prims if p.IsA(UsdGeom.Mesh)])
    groups = [meshes(Usd.PrimRange(prototype)) for prototype in stage.GetPrimAtPath(root).GetChildren()]
    groups.append([path for path in meshes(stage.Traverse()) if not Sdf.Path(path).HasPrefix(root)])
    return [dict(args, meshPrimPaths=group) for group in groups if len(group) >= 2]


def _record_changes(records: list, touched: list, edited: Sdf.Layer) -> bool:
    """Each op's record says what it touched and whether it changed anything; returns whether
    the chain changed the target at all. Notices name what an op re-authored; where no prim
    was resynced, the re-authored specs are compared with the source as read from disk (an
    op that re-authors an equal value changed nothing)."""
    original = None
    if not any(resynced for resynced, _ in touched) and any(info for _, info in touched):
        original = Sdf.Layer.OpenAsAnonymous(edited.realPath)
        differs = differing(edited, original, set().union(*(info for _, info in touched)))
    for record, (resynced, info) in zip(records, touched):
        record["touched"] = {"prims_resynced": len(resynced), "properties_changed": len(info)}
        record["changed"] = bool(resynced) or (bool(info) if original is None else bool(info & differs))
    return any(record["changed"] for record in records)


def _check_only_root_edited(stage) -> None:
    """Phase 4.5: the edited root layer is re-emitted whole to a new file (Export, never an
    in-place Save, so removed data is not carried), and it must be the only layer edited.
    An op that wrote into a sublayer, a referenced layer or the session layer would have its
    edits dropped with the stage: the target fails instead of reporting them as done."""
    root = stage.GetRootLayer()
    others = [layer.identifier for layer in stage.GetUsedLayers() if layer.dirty and layer != root]
    if others:
        raise TaskError("edited_layer_outside_target", f"the op chain edited {len(others)} layer(s) besides the target's "
                        f"root layer, which would not be written: {', '.join(others[:3])}", others[0])


def _may_hold_asset_paths(layer, params) -> bool:
    """Whether the target's root layer can hold an asset path to re-anchor. Skipped only on
    proof: the source stage has none, and the target is that source, or a restructure output
    whose root layer has no arc of its own."""
    if source_may_hold_asset_paths(params):
        return True
    source = params.get("source_stage")
    if source and os.path.exists(source) and os.path.samefile(layer.realPath, source):
        return False
    return any(layer.GetCompositionAssetDependencies())  # '' is an internal reference


def _reverify(output_path: str, params, open_errors_before: list, composition_before: list) -> dict:
    """The cheap per-target re-verify, on one open of the output made the way its source was
    opened (payload loading, muted layers): it opens on its own, composes with no error its
    source did not have (compared by kind and prim: cycles, unresolved arcs, invalid asset
    paths), and the meshes a default walk reaches are counted."""
    started = time.perf_counter()
    stage, open_errors = open_stage(output_path, load_payloads=params.get("load_payloads", True), composition=False)
    for layer in params.get("mute_layers") or ():
        stage.MuteLayer(layer)
    new = [describe(e) for e in new_composition_errors(composition_before, composition_errors(stage))]
    # Errors the open itself raised, compared by count.
    new += open_errors[len(open_errors_before):]
    return {"opens": True, "composition_errors": new[:20], "new_composition_errors": len(new),
            "mesh_count": reachable_mesh_count(stage), "seconds": round(time.perf_counter() - started, 4)}
