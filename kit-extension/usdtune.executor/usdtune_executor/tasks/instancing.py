"""Phase 3: flip approved placements instanceable in an override layer, never in the source.

The override layer becomes the new root: it sublayers the source root layer and holds only
`over` specs with `instanceable = true` (the usd-edit-target-planner's default target). The
daemon decided which placements are ready (daemon/src/decisions/restructure.rs); this
module authors exactly those, all in one change block.
"""
import os
import time

from pxr import Sdf

from ..errors import TaskError
from ..usd.export import export_atomically
from ..usd.stage import open_stage


def run(params, reporter):
    started = time.perf_counter()
    stage, _ = open_stage(params["stage_path"])
    source = stage.GetRootLayer()
    output_path = os.path.abspath(params["output_path"])
    if output_path == os.path.abspath(source.realPath):
        raise TaskError("output_is_source", "refusing to author instancing into the source layer", output_path)
    missing = [p for p in params["flips"] if not stage.GetPrimAtPath(p)]
    if missing:
        raise TaskError("restructure_plan_stale", f"{len(missing)} placements to flip are not on the stage "
                        f"(first: {missing[0]}); refresh the assessment", missing[0])
    layer = Sdf.Layer.CreateAnonymous(os.path.splitext(output_path)[1])
    # Relative when source and output share a tree, so both can move together; else absolute.
    shared = os.path.commonpath([source.realPath, output_path]) != os.sep
    layer.subLayerPaths.append(os.path.relpath(source.realPath, os.path.dirname(output_path)) if shared else source.realPath)
    for key in ("defaultPrim", "metersPerUnit", "upAxis", "startTimeCode", "endTimeCode", "timeCodesPerSecond"):
        if source.pseudoRoot.HasInfo(key):  # stage metadata is read from the root layer only
            layer.pseudoRoot.SetInfo(key, source.pseudoRoot.GetInfo(key))
    with Sdf.ChangeBlock():
        for path in params["flips"]:
            Sdf.CreatePrimInLayer(layer, path).instanceable = True
    export_atomically(layer, output_path)
    flipped, errors = open_stage(output_path)
    instances = sum(1 for p in params["flips"] if flipped.GetPrimAtPath(p).IsInstance())
    return {"output_path": output_path, "flipped": len(params["flips"]), "instances": instances,
            "prototypes": len(flipped.GetPrototypes()), "composition_errors": errors[:20],
            "seconds": round(time.perf_counter() - started, 3)}
