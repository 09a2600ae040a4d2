"""Opening stages with errors turned into stable codes, and the stage facts several tasks
read (metrics, authoring hints, layers and their bytes, reachable meshes)."""
import os
import re
from collections import Counter

from pxr import Sdf, Tf, Usd, UsdGeom

from ..errors import TaskError

USD_EXTENSIONS = (".usd", ".usda", ".usdc", ".usdz")


def check_stage_path(path: str) -> str:
    if not path:
        raise TaskError("stage_path_missing", "no stage path given")
    if not os.path.exists(path):
        raise TaskError("stage_not_found", f"stage file does not exist: {path}", path)
    if os.path.isdir(path):
        raise TaskError("stage_is_directory", f"stage path is a directory, not a USD file: {path}", path)
    if not path.lower().endswith(USD_EXTENSIONS) and not Sdf.FileFormat.FindByExtension(
            os.path.splitext(path)[1].lstrip(".")):
        raise TaskError("unsupported_format", f"not a USD file extension: {path}", path)
    return os.path.abspath(path)


def open_stage(path: str, load_payloads: bool = True, composition: bool = True):
    """Open a stage; returns (stage, errors): the Tf errors the open raised and (unless
    `composition` is off) the stage's composition errors (cycles, unresolved arcs, invalid
    asset paths: USD reports those as warnings, not errors), one line each. Raises TaskError
    when it cannot open."""
    path = check_stage_path(path)
    mark = Tf.Error.Mark()
    try:
        stage = Usd.Stage.Open(path, Usd.Stage.LoadAll if load_payloads else Usd.Stage.LoadNone)
    except Tf.ErrorException as err:
        raise TaskError("stage_open_failed", f"cannot open {path}: {_first_line(str(err))}", path)
    errors = [_first_line(e.commentary) for e in mark.GetErrors()]
    mark.Clear()
    if stage is None:
        raise TaskError("stage_open_failed", f"cannot open {path}: {errors[0] if errors else 'unknown error'}", path)
    if composition:
        errors += [describe(e) for e in composition_errors(stage)]
    return stage, errors


def composition_errors(stage) -> list:
    """Every error the stage's composition met (Pcp: arc cycles, unresolved references and
    payloads, invalid asset paths, ...), each {type, prim, layer, message}: `prim` is where
    it surfaced in the composed stage, `layer` the first layer its message names."""
    found = []
    for error in stage.GetCompositionErrors():
        text = " ".join(str(error).split())
        site = getattr(error, "rootSite", None)
        layers = [name for name in re.findall(r"@([^@]+)@", text) if "-session." not in name]
        found.append({"type": str(error.errorType).rsplit("_", 1)[-1], "prim": str(site.path) if site else "",
                      "layer": layers[0] if layers else "", "message": text[:300]})
    return found


# Composition errors that mean an arc's target was not found: the prim holding the arc looks
# empty (nothing composed under it) but is content the source carries on purpose.
UNRESOLVED_ARC_TYPES = ("InvalidAssetPath", "InvalidSublayerPath", "UnresolvedPrimPath", "MutedAssetPath")


def unresolved_arcs(errors: list) -> dict:
    """Each unresolved arc's target (`<type> @asset@<prim>`, the asset as USD anchored it, so a
    relative path that an output re-anchored wrongly reads as a different target) → count."""
    found = {}
    for error in errors:
        if error["type"] not in UNRESOLVED_ARC_TYPES:
            continue
        target = re.search(r"@[^@]+@(<[^>]*>)?", error["message"])
        key = f"{error['type']} {target.group(0) if target else error['prim']}"
        found[key] = found.get(key, 0) + 1
    return found


def error_key(error: dict) -> str:
    """What makes two composition errors the same one in a source and in its output: the
    kind and where it surfaced (the layers differ once content moved to new files)."""
    return f"{error['type']} {error['prim']}"


def new_composition_errors(before: list, after: list) -> list:
    """The errors of `after` that `before` does not have (as a multiset of keys)."""
    remaining = Counter(error_key(e) for e in before)
    new = []
    for error in after:
        key = error_key(error)
        if remaining[key] > 0:
            remaining[key] -= 1
        else:
            new.append(error)
    return new


def describe(error: dict) -> str:
    return f"{error['type']} at {error['prim'] or '/'}" + (f" (layer {error['layer']})" if error["layer"] else "") + \
        f": {error['message']}"


def _first_line(text: str) -> str:
    """The first human message in Tf error text: "Error in 'fn' at line N in file X : 'msg'"
    noise is cut down to msg."""
    for line in str(text).strip().splitlines():
        line = line.strip()
        if line.startswith("Error in") and " : '" in line:
            line = line.split(" : '", 1)[1]
        line = line.strip("'").strip()
        if line:
            return line
    return ""


def is_prototype_path(path: Sdf.Path) -> bool:
    return str(path).startswith("/__Prototype_")


def stage_metrics(stage):
    """metersPerUnit and upAxis as USD applies them: an invalid authored value reads as the
    fallback, and the problem is listed under `metadata_warnings`."""
    warnings = []
    mpu = UsdGeom.GetStageMetersPerUnit(stage)
    if not mpu > 0:
        warnings.append(f"metersPerUnit {mpu!r} is not positive; using 0.01 (the USD fallback)")
        mpu = 0.01
    up_axis = str(UsdGeom.GetStageUpAxis(stage))
    if up_axis not in ("Y", "Z"):
        fallback = str(UsdGeom.GetFallbackUpAxis())
        warnings.append(f"upAxis {up_axis!r} is not Y or Z; USD uses the fallback {fallback}")
        up_axis = fallback
    return {"metersPerUnit": mpu, "upAxis": up_axis, "metadata_warnings": warnings}


def authoring_hints(stage, limit: int = 2000) -> str:
    """The metadata converters sign their output with (layer doc and customLayerData, the
    default prim's customData and assetInfo), as bounded text."""
    layer = stage.GetRootLayer()
    parts = [layer.documentation, repr(dict(layer.customLayerData))]
    prim = stage.GetDefaultPrim()
    if prim:
        parts += [repr(dict(prim.GetCustomData())), repr(dict(prim.GetAssetInfo()))]
    return " ".join(p for p in parts if p and p != "{}")[:limit]


def used_layer_paths(stage):
    return [layer.realPath for layer in stage.GetUsedLayers() if layer.realPath]


def total_file_bytes(paths):
    return sum(os.path.getsize(p) for p in set(paths) if os.path.isfile(p))


def standalone_mesh_count(path: str, mute_layers=()) -> int:
    """Meshes a default-predicate walk reaches with the file opened on its own, its payloads
    unloaded and `mute_layers` muted: what usd-optimize sees when this file is its own target."""
    stage = Usd.Stage.Open(path, Usd.Stage.LoadNone)
    for layer in mute_layers:
        stage.MuteLayer(layer)
    return reachable_mesh_count(stage)


def mesh_specs(layer) -> int:
    """Mesh prims the layer itself defines (Sdf specs, no composition)."""
    found = [0]

    def visit(path):
        if path.IsPrimPath():
            spec = layer.GetPrimAtPath(path)
            if spec and spec.typeName == "Mesh" and spec.specifier == Sdf.SpecifierDef:
                found[0] += 1

    layer.Traverse(Sdf.Path.absoluteRootPath, visit)
    return found[0]


def referenced_layers(stage) -> dict:
    """The files the stage composes beyond its root layer stack (referenced, payloaded), each
    with whether it composes files of its own and its meshes as a Phase 4 target would see them
    (opened on its own, default predicate); and the mesh specs of the root layer stack."""
    root_stack = stage.GetLayerStack(includeSessionLayers=False)
    stack_ids = {layer.identifier for layer in root_stack}
    session = stage.GetSessionLayer()
    found = []
    for layer in stage.GetUsedLayers():
        if layer == session or layer.identifier in stack_ids or layer.anonymous or not layer.realPath:
            continue
        leaf = not any(layer.GetCompositionAssetDependencies())
        specs = mesh_specs(layer)
        meshes = standalone_mesh_count(layer.realPath) if specs and leaf else specs
        found.append({"path": layer.realPath, "leaf": leaf, "mesh_count": meshes})
    return {"layers": sorted(found, key=lambda entry: entry["path"]),
            "root_stack_mesh_specs": sum(mesh_specs(layer) for layer in root_stack)}


def reachable_mesh_count(stage) -> int:
    """Meshes a default-predicate walk reaches (what usd-optimize's ops visit)."""
    return sum(1 for prim in Usd.PrimRange.Stage(stage, Usd.PrimDefaultPredicate) if prim.IsA(UsdGeom.Mesh))
