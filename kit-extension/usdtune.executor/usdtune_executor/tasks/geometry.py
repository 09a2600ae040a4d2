"""The geometry signature behind the preservation proof: what every rendered mesh of the
composed stage is, instance proxies included, so the daemon can compare two stages mesh by mesh.

Per mesh (keyed by its composed path): digests of its local points and topology, its
world-space bounds, the identity of its bound material (a digest of the
material network, so a material copied into a prototype or rebound to an identical one
still reads as the same material), and its triangle count. The daemon decides what counts as preserved
(daemon/src/decisions/preservation.rs); this module only measures.

Also counted: composed prims with instance proxies, authored prim specs over every
layer the stage uses (what a restructure is meant to reduce), and meshes whose material
binding points at a prim the stage does not have (dangling).
"""
import hashlib
import time

import numpy as np
from pxr import Sdf, Usd, UsdGeom, UsdShade

from ..usd.stage import composition_errors, error_key, open_stage, total_file_bytes, unresolved_arcs, used_layer_paths
from .restructure import CLOSURE_MARK

CHUNK_ROWS = 5000
COLUMNS = ["path", "points", "topology", "triangles", "surface", "material", "bounds"]


def _digest(*arrays) -> str:
    h = hashlib.blake2b(digest_size=12)
    for array in arrays:
        h.update(memoryview(np.ascontiguousarray(array)) if array is not None else b"-")
    return h.hexdigest()


class _Materials:
    """Material identity that survives a move and a rebind to an identical survivor: a digest
    of its network (types, authored values, connections, in traversal order). Two materials
    with the same network render the same whatever they and their shaders are called."""

    def __init__(self):
        self._seen = {}

    def identity(self, material) -> str:
        if not material:
            return ""
        key = str(material.GetPath())
        if key not in self._seen:
            # Prims are named by their place in the network, not by their names: two networks
            # that differ only in what their shader prims are called render the same.
            prims = list(Usd.PrimRange(material.GetPrim(), Usd.TraverseInstanceProxies()))
            place = {prim.GetPath(): n for n, prim in enumerate(prims)}
            h = hashlib.blake2b(digest_size=8)
            for n, prim in enumerate(prims):
                h.update(f"{n}|{prim.GetTypeName()}".encode())
                for attribute in prim.GetAuthoredAttributes():
                    h.update(f"{attribute.GetName()}={_as_rendered(attribute.Get())!r}".encode())
                    for source in attribute.GetConnections():
                        h.update(f"{place.get(source.GetPrimPath(), -1)}.{source.name}".encode())
            self._seen[key] = f"network#{h.hexdigest()}"
        return self._seen[key]


def _as_rendered(value):
    """An asset path counts by the file it resolves to: a texture path re-anchored for a
    file written elsewhere reads the same file, so the material is the same."""
    if isinstance(value, Sdf.AssetPath):
        return value.resolvedPath or value.path
    if isinstance(value, Sdf.AssetPathArray):
        return [_as_rendered(item) for item in value]
    return value


def _world_bounds(lo: np.ndarray, hi: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """World-space axis-aligned bounds (N×6) of N local boxes (N×3 corners) under N matrices
    (N×4×4; USD matrices act on row vectors). Rows without points are NaN."""
    pick = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)])  # 8 corners: 0 = lo, 1 = hi
    boxes = np.stack([lo, hi], axis=1)                                           # N×2×3
    corners = np.take_along_axis(boxes[:, None, :, :].repeat(8, axis=1),
                                 pick[None, :, None, :].repeat(len(lo), axis=0), axis=2)[:, :, 0, :]  # N×8×3
    homogeneous = np.concatenate([corners, np.ones(corners.shape[:2] + (1,))], axis=2)
    world = np.einsum("nci,nij->ncj", homogeneous, matrices)[:, :, :3]
    return np.concatenate([world.min(axis=1), world.max(axis=1)], axis=1)


def surface_triangles(points, counts, indices) -> int:
    """Triangles that make up the rendered surface: the faces fan-triangulated, zero-area
    triangles left out and coincident ones counted once. Welding, dropping degenerate faces
    and removing duplicate faces leave this count as it is; losing surface does not."""
    if points is None or counts is None or indices is None or len(counts) == 0:
        return 0
    counts = np.asarray(counts, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    if counts.sum() != len(indices) or (len(indices) and indices.max() >= len(points)):
        return 0  # malformed topology: nothing renders from it
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    fans = np.maximum(counts - 2, 0)
    first = np.repeat(starts, fans)
    step = np.arange(fans.sum()) - np.repeat(np.cumsum(fans) - fans, fans)
    corners = np.stack([indices[first], indices[first + step + 1], indices[first + step + 2]], axis=1)
    triangles = points[corners]                                   # T×3×3
    area2 = np.linalg.norm(np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]), axis=1)
    diagonal = float(np.linalg.norm(points.max(axis=0) - points.min(axis=0))) or 1.0
    triangles = triangles[area2 > 1e-12 * diagonal * diagonal]
    if not len(triangles):
        return 0
    # The same three positions in any order are one triangle.
    keys = np.sort(triangles.round(9).view([("x", float), ("y", float), ("z", float)]).reshape(len(triangles), 3), axis=1)
    return len(np.unique(keys.view(np.dtype((np.void, keys.dtype.itemsize * 3)))))


def _point_instancer_placements(stage, instancers, meshes, xforms):
    """Every instance of every point instancer, expanded: for each mesh below a prototype, one
    row per visible instance (`<mesh path>[<instance>]`) with its world matrix (the mesh
    relative to its prototype root's parent, then the instance transform, then the
    instancer's own). The prototype meshes themselves do not render as placed."""
    mesh_index = {prim.GetPath(): n for n, prim in enumerate(meshes)}
    prototype_meshes, rows = set(), []
    for prim in instancers:
        instancer = UsdGeom.PointInstancer(prim)
        roots = instancer.GetPrototypesRel().GetForwardedTargets()
        default = Usd.TimeCode.Default()
        transforms = instancer.ComputeInstanceTransformsAtTime(default, default)
        indices = instancer.GetProtoIndicesAttr().Get(default)
        if transforms is None or indices is None:
            continue
        visible = instancer.ComputeMaskAtTime(default)
        instancer_world = np.array(xforms.GetLocalToWorldTransform(prim))
        for p, root in enumerate(roots):
            root_prim = stage.GetPrimAtPath(root)
            if not root_prim:
                continue
            parent_inverse = np.linalg.inv(np.array(xforms.GetLocalToWorldTransform(root_prim.GetParent())))
            # The prototype's own subtree, not a scan of every mesh of the stage per prototype.
            members = [(prim.GetPath(), mesh_index[prim.GetPath()])
                       for prim in Usd.PrimRange(root_prim, Usd.TraverseInstanceProxies()) if prim.GetPath() in mesh_index]
            prototype_meshes.update(n for _, n in members)
            chosen = [i for i, index in enumerate(indices) if index == p and (not visible or visible[i])]
            for path, n in members:
                relative = np.array(xforms.GetLocalToWorldTransform(meshes[n])) @ parent_inverse
                for i in chosen:
                    rows.append((f"{path}[{i}]", n, relative @ np.array(transforms[i]) @ instancer_world))
    return {"prototype_meshes": prototype_meshes, "rows": rows}


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
    stage, errors = open_stage(params["stage_path"])
    xforms = UsdGeom.XformCache()
    materials = _Materials()
    local_of = {}    # prototype mesh path -> (points digest, topology digest, triangles, surface, lo, hi)
    surface_of = {}  # (points digest, topology digest) -> surface triangles
    meshes, instancers, prims, closure_prims, hidden, closures = [], [], 0, 0, set(), set()
    for prim in Usd.PrimRange.Stage(stage, Usd.TraverseInstanceProxies()):
        prims += 1
        if prim.GetCustomDataByKey(CLOSURE_MARK):
            closures.add(prim.GetPath())
        if closures and any(p in closures for p in prim.GetPath().GetPrefixes()):
            closure_prims += 1
        imageable = UsdGeom.Imageable(prim)
        if imageable and imageable.GetVisibilityAttr().Get() == UsdGeom.Tokens.invisible:
            hidden.add(prim.GetPath())  # hidden meshes do not render: not part of the proof
        if prim.IsA(UsdGeom.PointInstancer):
            instancers.append(prim)
        if prim.IsA(UsdGeom.Mesh) and not (hidden and any(p in hidden for p in prim.GetPath().GetPrefixes())):
            meshes.append(prim)
    # One batched binding resolution for every mesh (much cheaper than one call per mesh).
    bound, relationships = UsdShade.MaterialBindingAPI.ComputeBoundMaterials(meshes)
    # A binding whose target is gone: the winning relationship names a prim the stage lacks.
    dangling = sum(1 for material, rel in zip(bound, relationships) if rel and not material)
    keys = [prim.GetPrimInPrototype().GetPath() if prim.IsInstanceProxy() else prim.GetPath() for prim in meshes]
    for prim, key in zip(meshes, keys):
        if key not in local_of:
            mesh = UsdGeom.Mesh(prim)
            points = mesh.GetPointsAttr().Get()
            counts = mesh.GetFaceVertexCountsAttr().Get()
            indices = mesh.GetFaceVertexIndicesAttr().Get()
            points = np.asarray(points, dtype=np.float64) if points is not None and len(points) else None
            counts = np.asarray(counts, dtype=np.int32) if counts is not None else None
            triangles = int(np.maximum(counts - 2, 0).sum()) if counts is not None else 0
            box = (points.min(axis=0), points.max(axis=0)) if points is not None else (np.full(3, np.nan),) * 2
            digests = (_digest(None if points is None else points.astype(np.float32)),
                       _digest(counts, None if indices is None else np.asarray(indices, np.int32)))
            if digests not in surface_of:  # copies share their geometry: count its surface once
                surface_of[digests] = surface_triangles(points, counts, indices)
            local_of[key] = (*digests, triangles, surface_of[digests], *box)
    # Placements: (row path, mesh index, world matrix). A mesh below a point instancer's
    # prototype renders once per instance, at the instance's transform.
    instanced = _point_instancer_placements(stage, instancers, meshes, xforms)
    placements = [(str(prim.GetPath()), n, xforms.GetLocalToWorldTransform(prim))
                  for n, prim in enumerate(meshes) if n not in instanced["prototype_meshes"]]
    placements += instanced["rows"]
    local = [local_of[keys[n]] for _, n, _ in placements]
    matrices = np.array([matrix for _, _, matrix in placements]).reshape(-1, 4, 4)
    bounds = _world_bounds(np.array([l[4] for l in local]).reshape(-1, 3), np.array([l[5] for l in local]).reshape(-1, 3),
                           matrices).round(9)
    rows = [(path, entry[0], entry[1], entry[2], entry[3], materials.identity(bound[n]),
             [] if np.isnan(box[0]) else box.tolist())
            for (path, n, _), entry, box in zip(placements, local, bounds)]
    for start in range(0, len(rows), CHUNK_ROWS):
        chunk = rows[start:start + CHUNK_ROWS]
        reporter.records("meshes", dict(zip(COLUMNS, map(list, zip(*chunk)))))
    return {
        "stage_path": params["stage_path"],
        "prim_count_with_instance_proxies": prims,
        # Material networks a restructure copied into standalone prototypes (counted above too).
        "material_closure_prims": closure_prims,
        # Rendered meshes whose material binding targets a prim the stage does not have.
        "dangling_bindings": dangling,
        "authored_prim_specs": authored_prim_specs(stage),
        "rendered_meshes": len(rows),
        "point_instances": len(instanced["rows"]),
        "file_bytes": total_file_bytes(used_layer_paths(stage)),
        "layer_count": len([layer for layer in stage.GetUsedLayers() if layer != stage.GetSessionLayer()]),
        "composition_errors": errors[:20],
        # Every composition error by kind and site, for the proof's composition half; the
        # first ones in full, so a new one can be named with its layer.
        "composition": _composition(stage),
        "seconds": round(time.perf_counter() - started, 3),
    }


def _composition(stage, listed: int = 200) -> dict:
    found = composition_errors(stage)
    keys = {}
    for error in found:
        keys[error_key(error)] = keys.get(error_key(error), 0) + 1
    return {"count": len(found), "keys": keys, "errors": found[:listed], "unresolved": unresolved_arcs(found)}
