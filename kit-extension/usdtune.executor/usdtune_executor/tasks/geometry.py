"""The geometry signature behind the preservation proof: what every rendered mesh of the
composed stage is, instance proxies included, so the daemon can compare two stages mesh by mesh.

Per mesh (keyed by its composed path): digests of its local points and topology, its
world-space bounds, the identity of its bound material (name plus a digest of the
material network, so a material copied into a prototype still reads as the same
material), and its triangle count. The daemon decides what counts as preserved
(daemon/src/decisions/preservation.rs); this module only measures.

Also counted: composed prims with instance proxies, and authored prim specs over every
layer the stage uses (what a restructure is meant to reduce).
"""
import hashlib
import time

import numpy as np
from pxr import Sdf, Usd, UsdGeom, UsdShade

from ..stage_io import open_stage, total_file_bytes, used_layer_paths
from .restructure import CLOSURE_MARK

CHUNK_ROWS = 5000
COLUMNS = ["path", "points", "topology", "triangles", "material", "bounds"]


def _digest(*arrays) -> str:
    h = hashlib.blake2b(digest_size=12)
    for array in arrays:
        h.update(memoryview(np.ascontiguousarray(array)) if array is not None else b"-")
    return h.hexdigest()


class _Materials:
    """Material identity that survives a move: the prim's name and a digest of its network
    (types, authored values, connections relative to the material)."""

    def __init__(self):
        self._seen = {}

    def identity(self, material) -> str:
        if not material:
            return ""
        key = str(material.GetPath())
        if key not in self._seen:
            root = material.GetPath()
            h = hashlib.blake2b(digest_size=8)
            for prim in Usd.PrimRange(material.GetPrim(), Usd.TraverseInstanceProxies()):
                h.update(f"{prim.GetPath().MakeRelativePath(root)}|{prim.GetTypeName()}".encode())
                for attribute in prim.GetAuthoredAttributes():
                    h.update(f"{attribute.GetName()}={attribute.Get()!r}".encode())
                    for source in attribute.GetConnections():
                        h.update(str(source.MakeRelativePath(root)).encode())
            self._seen[key] = f"{material.GetPrim().GetName()}#{h.hexdigest()}"
        return self._seen[key]


def _world_bounds(points, matrix) -> list:
    if points is None or len(points) == 0:
        return []
    local = np.asarray(points, dtype=np.float64)
    lo, hi = local.min(axis=0), local.max(axis=0)
    corners = np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    world = corners @ np.asarray(matrix, dtype=np.float64)  # USD matrices act on row vectors
    return [round(float(v), 9) for v in (*world[:, :3].min(axis=0), *world[:, :3].max(axis=0))]


def authored_prim_specs(stage) -> int:
    count = 0
    for layer in stage.GetUsedLayers():
        if layer == stage.GetSessionLayer():
            continue
        found = []
        layer.Traverse(Sdf.Path.absoluteRootPath, lambda path: found.append(path.IsPrimPath()))
        count += sum(found)
    return count


def run(params, reporter):
    started = time.perf_counter()
    stage, composition_errors = open_stage(params["stage_path"])
    xforms = UsdGeom.XformCache()
    materials = _Materials()
    local_of = {}  # prototype mesh path -> (points digest, topology digest, triangles, points)
    rows, prims, closure_prims, hidden, closures = [], 0, 0, set(), set()
    for prim in Usd.PrimRange.Stage(stage, Usd.TraverseInstanceProxies()):
        prims += 1
        if prim.GetCustomDataByKey(CLOSURE_MARK):
            closures.add(prim.GetPath())
        if closures and any(p in closures for p in prim.GetPath().GetPrefixes()):
            closure_prims += 1
        imageable = UsdGeom.Imageable(prim)
        if imageable and imageable.GetVisibilityAttr().Get() == UsdGeom.Tokens.invisible:
            hidden.add(prim.GetPath())  # hidden meshes do not render: not part of the proof
        if not prim.IsA(UsdGeom.Mesh) or (hidden and any(p in hidden for p in prim.GetPath().GetPrefixes())):
            continue
        key = prim.GetPrimInPrototype().GetPath() if prim.IsInstanceProxy() else prim.GetPath()
        if key not in local_of:
            mesh = UsdGeom.Mesh(prim)
            points = mesh.GetPointsAttr().Get()
            counts = mesh.GetFaceVertexCountsAttr().Get()
            indices = mesh.GetFaceVertexIndicesAttr().Get()
            points = np.asarray(points, dtype=np.float32) if points is not None else None
            counts = np.asarray(counts, dtype=np.int32) if counts is not None else None
            triangles = int(np.maximum(counts - 2, 0).sum()) if counts is not None else 0
            local_of[key] = (_digest(points), _digest(counts, None if indices is None else np.asarray(indices, np.int32)),
                             triangles, points)
        points_digest, topology_digest, triangles, points = local_of[key]
        material, _ = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()
        rows.append((str(prim.GetPath()), points_digest, topology_digest, triangles, materials.identity(material),
                     _world_bounds(points, xforms.GetLocalToWorldTransform(prim))))
    for start in range(0, len(rows), CHUNK_ROWS):
        chunk = rows[start:start + CHUNK_ROWS]
        reporter.records("meshes", dict(zip(COLUMNS, map(list, zip(*chunk)))))
    return {
        "stage_path": params["stage_path"],
        "prim_count_with_instance_proxies": prims,
        # Material networks a restructure copied into standalone prototypes (counted above too).
        "material_closure_prims": closure_prims,
        "authored_prim_specs": authored_prim_specs(stage),
        "rendered_meshes": len(rows),
        "file_bytes": total_file_bytes(used_layer_paths(stage)),
        "layer_count": len([layer for layer in stage.GetUsedLayers() if layer != stage.GetSessionLayer()]),
        "composition_errors": composition_errors[:20],
        "seconds": round(time.perf_counter() - started, 3),
    }
