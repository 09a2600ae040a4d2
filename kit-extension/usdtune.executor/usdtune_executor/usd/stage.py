"""Opening stages with errors turned into stable codes, and the stage facts several tasks
read (metrics, authoring hints, layers and their bytes, reachable meshes)."""
import os

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


def open_stage(path: str, load_payloads: bool = True):
    """Open a stage; returns (stage, composition_errors). Raises TaskError when it cannot open."""
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
    return stage, errors


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


def reachable_mesh_count(stage) -> int:
    """Meshes a default-predicate walk reaches (what usd-optimize's ops visit)."""
    return sum(1 for prim in Usd.PrimRange.Stage(stage, Usd.PrimDefaultPredicate) if prim.IsA(UsdGeom.Mesh))
