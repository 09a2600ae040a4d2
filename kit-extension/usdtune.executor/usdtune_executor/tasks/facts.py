"""Phase 1b facts: one pass over the composed stage, everything the daemon decides from.

The executor only measures here. Classification, thresholds, grouping and the phase
recommendation are the daemon's (decisions/assessment.rs), over this JSON.

Hashes (blake2b, 16 bytes, hex):
  * geometry hash of a mesh: points, faceVertexCounts, faceVertexIndices (exact bytes);
  * subtree hash of a prim: type, authored property names and values, children
    (by name, recursively), with the prim's own xformOps left out, so copies of an
    assembly placed at different positions hash alike.
"""
import hashlib
import os
from collections import defaultdict

import numpy as np
from pxr import Sdf, Usd, UsdGeom, UsdShade

from ..stage_io import is_prototype_path, open_stage, stage_metrics, total_file_bytes, used_layer_paths

MAX_LISTED_PATHS = 50
MAX_GROUPS = 200
PHYSICS_SCHEMA_PREFIXES = ("Physics", "PhysxSchema", "Physx")


def _digest(*parts) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(part if isinstance(part, (bytes, memoryview)) else str(part).encode())
        h.update(b"\x1f")
    return h.digest()


def _value_bytes(value):
    if value is None:
        return b"<none>"
    try:
        return memoryview(np.ascontiguousarray(np.asarray(value))).cast("B")
    except (TypeError, ValueError):
        return repr(value).encode()


def _is_xform_property(name: str) -> bool:
    return name.startswith("xformOp:") or name == "xformOpOrder"


def _local_hash(prim, include_xform: bool) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    h.update(str(prim.GetTypeName()).encode())
    h.update(str(sorted(prim.GetAppliedSchemas())).encode())
    for prop in prim.GetAuthoredProperties():
        name = prop.GetName()
        if not include_xform and _is_xform_property(name):
            continue
        h.update(name.encode())
        if isinstance(prop, Usd.Attribute):
            h.update(_value_bytes(prop.Get()))
            if prop.GetNumTimeSamples():
                h.update(str(prop.GetTimeSamples()).encode())
        else:
            h.update(str(prop.GetTargets()).encode())
    return h.digest()


def _count_layer_arcs(layers):
    """Authored composition list-op items across the used layers (not composed prims)."""
    counts = defaultdict(int)

    def items(list_op):
        return len(list_op.explicitItems) + len(list_op.prependedItems) + len(list_op.appendedItems) + \
            len(list_op.addedItems)

    def visit(spec):
        counts["references"] += items(spec.referenceList)
        counts["payloads"] += items(spec.payloadList)
        counts["inherits"] += items(spec.inheritPathList)
        counts["specializes"] += items(spec.specializesList)
        counts["variant_sets"] += len(spec.variantSets)
        if spec.HasInfo("instanceable") and spec.instanceable:
            counts["instanceable_specs"] += 1
        for child in spec.nameChildren:
            visit(child)
        for variant_set in spec.variantSets.values():
            for variant in variant_set.variants.values():
                visit(variant.primSpec)

    for layer in layers:
        counts["sublayers"] += len(layer.subLayerPaths)
        for root in layer.rootPrims:
            visit(root)
    return dict(counts)


def _mesh_geometry(mesh):
    points = mesh.GetPointsAttr().Get()
    counts = mesh.GetFaceVertexCountsAttr().Get()
    indices = mesh.GetFaceVertexIndicesAttr().Get()
    counts_np = np.asarray(counts) if counts is not None else np.zeros(0, dtype=np.int32)
    triangles = int(np.maximum(counts_np - 2, 0).sum())
    key = _digest(_value_bytes(points), _value_bytes(counts), _value_bytes(indices))
    return key, triangles, len(points) if points is not None else 0


def run(params, reporter):
    stage, composition_errors = open_stage(params["stage_path"])
    reporter.progress(0.05, "stage opened")
    layers = stage.GetUsedLayers()
    root = stage.GetPseudoRoot()

    counts = defaultdict(int)
    flags = defaultdict(list)
    subtree = {}           # path -> full hash (incl. own xform), for parents
    group_key = {}         # path -> hash excluding own xform, the dedupe key
    subtree_size = {}      # path -> prims in subtree incl. itself
    subtree_meshes = {}
    mesh_keys = {}
    meshes_missing_extent = 0

    # Post-order walk of the authored scene graph (no instance proxies, no prototypes).
    order = list(Usd.PrimRange(root, Usd.PrimDefaultPredicate))
    for prim in reversed(order):
        if prim.IsPseudoRoot():
            continue
        path = prim.GetPath()
        counts["prim_count"] += 1
        type_name = str(prim.GetTypeName())
        if prim.IsA(UsdGeom.Mesh):
            counts["mesh_count"] += 1
            key, _, _ = _mesh_geometry(UsdGeom.Mesh(prim))
            mesh_keys[key] = mesh_keys.get(key, 0) + 1
            if not UsdGeom.Mesh(prim).GetExtentAttr().HasAuthoredValue():
                meshes_missing_extent += 1
        elif prim.IsA(UsdShade.Material):
            counts["material_count"] += 1
        elif prim.IsA(UsdGeom.PointInstancer):
            counts["point_instancer_count"] += 1
        elif prim.IsA(UsdGeom.Xform):
            counts["xform_count"] += 1
        if prim.IsInstance():
            counts["instance_count"] += 1
        if any(s.startswith(PHYSICS_SCHEMA_PREFIXES) for s in prim.GetAppliedSchemas()) or \
                type_name.startswith("Physics"):
            flags["physics"].append(str(path))
        if type_name in ("SkelRoot", "Skeleton", "SkelAnimation"):
            flags["skeleton"].append(str(path))
        if prim.GetVariantSets().GetNames():
            flags["variants"].append(str(path))
        for attr in prim.GetAuthoredAttributes():
            if attr.GetNumTimeSamples() > 1:
                counts["time_sampled_attribute_count"] += 1

        children = prim.GetChildren()
        child_part = b"".join(c.GetName().encode() + subtree[c.GetPath()] for c in children)
        without_xform = _digest(_local_hash(prim, include_xform=False), child_part)
        group_key[path] = without_xform
        subtree[path] = _digest(_local_hash(prim, include_xform=True), child_part) \
            if any(_is_xform_property(p.GetName()) for p in prim.GetAuthoredProperties()) else without_xform
        subtree_size[path] = 1 + sum(subtree_size[c.GetPath()] for c in children)
        subtree_meshes[path] = int(prim.IsA(UsdGeom.Mesh)) + sum(subtree_meshes[c.GetPath()] for c in children)
    reporter.progress(0.5, "scene graph hashed")

    # Rendered geometry, as Hydra would see it (instance proxies included).
    rendered_meshes = 0
    triangles_by_material = defaultdict(int)
    for prim in stage.Traverse(Usd.TraverseInstanceProxies()):
        if not prim.IsA(UsdGeom.Mesh) or is_prototype_path(prim.GetPath()):
            continue
        if UsdGeom.Imageable(prim).ComputeVisibility() == UsdGeom.Tokens.invisible:
            continue
        rendered_meshes += 1
        _, triangles, _ = _mesh_geometry(UsdGeom.Mesh(prim))
        material, _ = UsdShade.MaterialBindingAPI(prim).ComputeBoundMaterial()
        triangles_by_material[str(material.GetPath()) if material else ""] += triangles
    bbox = UsdGeom.BBoxCache(Usd.TimeCode.Default(), [UsdGeom.Tokens.default_, UsdGeom.Tokens.render])
    world = bbox.ComputeWorldBound(root).ComputeAlignedRange()
    reporter.progress(0.8, "rendered geometry measured")

    groups = defaultdict(list)
    for path, key in group_key.items():
        if subtree_size[path] >= 2 and subtree_meshes[path] >= 1:
            groups[key].append(path)
    repeated = [paths for paths in groups.values() if len(paths) >= 2]
    repeated.sort(key=lambda ps: (-(len(ps) - 1) * subtree_size[ps[0]], str(ps[0])))
    hierarchy_groups = [{
        "hash": key_of.hex(),
        "copies": len(paths),
        "prims_per_copy": subtree_size[paths[0]],
        "meshes_per_copy": subtree_meshes[paths[0]],
        "paths": sorted(str(p) for p in paths)[:MAX_LISTED_PATHS],
        "depth": paths[0].pathElementCount,
    } for paths in repeated[:MAX_GROUPS] for key_of in [group_key[paths[0]]]]

    layer_paths = used_layer_paths(stage)
    prototypes = stage.GetPrototypes()
    return {
        "stage": {
            "identifier": stage.GetRootLayer().identifier,
            "rootLayer": stage.GetRootLayer().realPath,
            "defaultPrim": str(stage.GetDefaultPrim().GetPath()) if stage.GetDefaultPrim() else "",
            **stage_metrics(stage),
            "file_size_bytes": total_file_bytes(layer_paths),
            "root_layer_format": os.path.splitext(stage.GetRootLayer().realPath)[1].lstrip("."),
        },
        "counts": {
            "prim_count": counts["prim_count"],
            "prim_count_with_instance_proxies": sum(1 for _ in stage.Traverse(Usd.TraverseInstanceProxies())),
            "mesh_count": counts["mesh_count"] + sum(
                1 for proto in prototypes for p in Usd.PrimRange(proto) if p.IsA(UsdGeom.Mesh)),
            "rendered_mesh_count": rendered_meshes,
            "material_count": counts["material_count"],
            "xform_count": counts["xform_count"],
            "point_instancer_count": counts["point_instancer_count"],
            "prototype_count": len(prototypes),
            "instance_count": counts["instance_count"],
            "time_sampled_attribute_count": counts["time_sampled_attribute_count"],
            "layer_count": len(layers),
        },
        "composition": {**{k: 0 for k in ("references", "payloads", "inherits", "specializes", "variant_sets",
                                          "sublayers", "instanceable_specs")},
                        **_count_layer_arcs(layers), "counting_method": "authored_list_op_items"},
        "geometry": {
            "distinct_mesh_geometries": len(mesh_keys),
            "meshes_missing_extent": meshes_missing_extent,
            "triangles": sum(triangles_by_material.values()),
            "triangles_by_material": dict(sorted(triangles_by_material.items())),
            "world_bounds": None if world.IsEmpty() else [list(world.GetMin()), list(world.GetMax())],
        },
        "content_flags": {name: {"count": len(paths), "paths": paths[:MAX_LISTED_PATHS]}
                          for name, paths in (("physics", flags["physics"]), ("skeleton", flags["skeleton"]),
                                              ("variants", flags["variants"]))},
        "hierarchy_groups": hierarchy_groups,
        "composition_errors": composition_errors[:20],
    }
