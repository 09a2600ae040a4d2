"""The one pass over a stage that `facts` is built on: hash, count and bound every prim,
children before parents.

A walk covers whole subtrees ("ranges"), so the prims of a large stage can be split
between processes: `facts` cuts the scene graph into subtrees, walks them here (in
this process or in workers, `python -m usdtune_executor.workers.stage_walk`), then
finishes the few prims above the cut with the subtrees' summaries injected.

Hashing follows the instance-candidate finder's level 4: prim type, applied schemas,
kind, variant selections, every authored attribute value and time sample, relationship
targets and attribute connections, and the children by name in authored order. A
prim's own name and placement (`xformOp:*`, `xformOpOrder`) stay out of its candidate
hash, so copies placed apart hash alike. Targets are hashed relative to their owner,
so copies whose bindings point into their own subtree still match; targets that leave
a subtree are digested separately (`ext`) so the daemon can tell consistent copies
from inconsistent ones. Values are hashed as exact bytes: the float tolerance is zero.
"""
import gc
import hashlib
import pickle
import sys
from collections import defaultdict

import numpy as np
from pxr import Tf, Usd, UsdGeom, UsdShade

from ..usd.topology import invalid_meshes, points_array

PHYSICS_SCHEMA_PREFIXES = ("Physics", "PhysxSchema", "Physx")
SKELETON_TYPES = ("SkelRoot", "Skeleton", "SkelAnimation")
SHADING_TYPES = ("Material", "Shader", "NodeGraph")
GPRIM_TYPES = ("Cube", "Sphere", "Cylinder", "Cone", "Capsule", "Plane", "Points", "BasisCurves", "NurbsCurves",
               "NurbsPatch", "HermiteCurves", "TetMesh", "Cylinder_1", "Capsule_1")
NON_MESH_BOUNDABLE = ("Cube", "Sphere", "Cylinder", "Cone", "Capsule", "Plane", "Points", "BasisCurves",
                      "NurbsCurves", "NurbsPatch", "PointInstancer", "HermiteCurves", "TetMesh")
INVISIBLE = UsdGeom.Tokens.invisible
OPACITY_INPUTS = ("inputs:opacity", "inputs:enable_opacity", "inputs:opacity_constant")
TRANSMISSION_HINTS = ("transmission", "transmittance", "inputs:ior", "glass", "refraction")

# The prim table, one row per walked prim (post-order). Column order = row tuple order.
PRIM_COLUMNS = {
    "path": "composed prim path",
    "type": "prim type name ('' when typeless)",
    "kind": "authored kind ('' when none)",
    "hash": "candidate hash: subtree content without the prim's own name and placement",
    "prims": "prims in the subtree, the prim included (an instance counts 1)",
    "meshes": "Mesh prims in the subtree",
    "gprims": "geometry prims (UsdGeom.Gprim: meshes, implicit shapes, curves, points) in the subtree",
    "bytes": "bytes of authored attribute values in the subtree",
    "ext": "digest of the (relative property key, target) pairs that point outside the subtree; '' when none",
    "ext_n": "number of such outside targets",
    "ref": "identity of the asset this prim references or payloads ('' when none)",
    "variants": "digest of the variant selections in the subtree, the prim's own included; '' when none",
    "overrides_below": "descendants with opinions in the root layer stack over content an arc brings in",
    "instance": "the prim is a scenegraph instance (its subtree is its prototype's)",
    "physics": "prims in the subtree with UsdPhysics/PhysX schemas",
    "skeleton": "UsdSkel prims in the subtree",
    "rigid_below": "a RigidBodyAPI prim strictly below (an independent mover)",
    "animated_below": "time-varying xformOps strictly below",
    "animated": "the prim's own xformOps are time-varying",
    "articulation_root": "the prim carries PhysicsArticulationRootAPI",
    "material": "the prim's direct material:binding target ('' when none)",
    "bounds": "world-space axis-aligned bounds [min xyz, max xyz] of the visible geometry, or null",
}


def digest(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


_BUFFER_TYPES = {}  # value type -> whether it exposes its bytes (numeric Vt arrays do)


def hash_value(h, value) -> int:
    """Feed a value's exact bytes (numeric arrays) or its repr into `h`; returns the bytes fed."""
    kind = type(value)
    exposes = _BUFFER_TYPES.get(kind)
    if exposes is None:
        try:
            memoryview(value)
            exposes = True
        except TypeError:
            exposes = False
        _BUFFER_TYPES[kind] = exposes
    if exposes:
        view = memoryview(value)
        h.update(view)
        return view.nbytes
    text = repr(value).encode()
    h.update(text)
    return len(text)


def _triangles(face_counts_list):
    """Triangles of each mesh (a face of k vertices is k-2 triangles), vectorized over meshes."""
    arrays = [np.asarray(c, dtype=np.int64) if c is not None else np.zeros(0, dtype=np.int64)
              for c in face_counts_list]
    if not arrays:
        return []
    ends = np.cumsum([len(a) for a in arrays])
    running = np.concatenate(([0], np.cumsum(np.maximum(np.concatenate(arrays) - 2, 0))))
    return (running[ends] - running[ends - [len(a) for a in arrays]]).tolist()


def _list_op_items(list_op) -> int:
    return len(list_op.explicitItems) + len(list_op.prependedItems) + len(list_op.appendedItems) + \
        len(list_op.addedItems)


def _has_opinion(spec) -> bool:
    if spec.properties:
        return True
    return any(key not in ("specifier", "primChildren", "primOrder") for key in spec.ListInfoKeys())


def union(a, b):
    if a is None:
        return b
    if b is None:
        return a
    return (min(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]), max(a[4], b[4]), max(a[5], b[5]))


class ReferenceIdentity:
    """What asset a prim brings in: the external reference/payload targets authored on it in
    the root layer stack, internal references followed to what their target brings in.
    Arcs inside the referenced asset (its own payloads, variant-specific references) are
    the asset's business and stay out, so every placement of one asset reads alike.
    Internal targets met on the way are added to `definitions`: prims other prims bring in,
    which the daemon never counts as copies of their own users."""

    def __init__(self, stage, definitions: set):
        self._stage = stage
        self._root_stack = {layer.identifier for layer in stage.GetLayerStack(includeSessionLayers=False)}
        self._memo = {}
        self.definitions = definitions

    def of(self, path) -> str:
        return " + ".join(sorted(self._targets(path, set())))

    def _targets(self, path, seen) -> frozenset:
        if path in self._memo:
            return self._memo[path]
        seen.add(path)
        prim = self._stage.GetPrimAtPath(path)
        targets = set()
        for spec in (prim.GetPrimStack() if prim else []):
            if spec.layer.identifier not in self._root_stack:
                continue
            keys = spec.ListInfoKeys()
            arcs = []
            if "references" in keys:
                arcs += spec.referenceList.GetAddedOrExplicitItems()
            if "payload" in keys:
                arcs += spec.payloadList.GetAddedOrExplicitItems()
            for arc in arcs:
                if arc.assetPath:
                    targets.add(f"@{spec.layer.ComputeAbsolutePath(arc.assetPath)}@<{arc.primPath or ''}>")
                elif arc.primPath:
                    self.definitions.add(str(arc.primPath))
                    if arc.primPath != path and arc.primPath not in seen:
                        targets |= self._targets(arc.primPath, seen) or {f"<{arc.primPath}>"}
        self._memo[path] = frozenset(targets)
        return self._memo[path]


class Totals:
    """Stage-wide tallies a walk adds to; several walks' totals merge."""

    def __init__(self):
        self.counts = defaultdict(int)
        self.flags = {"physics": [], "skeleton": [], "variants": []}
        # geometry digest -> the sites (layer stack, spec path) its meshes' points come from:
        # meshes composing one spec (copies referencing one definition) share it already.
        self.mesh_geometry = defaultdict(set)
        self.definitions = set()                # internal reference/payload targets
        self.meshes_missing_extent = 0
        self.materials = {}
        # (order of the walk top it lies under, triangles, bound material) per mesh that may
        # render; the caller drops those under a hidden prim above the walk.
        self.rendered = []
        self.proxy_prims = []                   # (range root order, proxies under one instance)
        # "layer<spec path>" -> (references, payloads, inherits, specializes, variant sets, instanceable)
        self.arcs = {}
        self.bound_errors = []                  # prims USD could not bound, with why
        self.invalid_meshes = []                # (mesh path, problem): never input to an op

    def merge(self, other: "Totals"):
        for key, value in other.counts.items():
            self.counts[key] += value
        for key, paths in other.flags.items():
            self.flags[key].extend(paths)
        for key, sites in other.mesh_geometry.items():
            self.mesh_geometry[key] |= sites
        self.definitions |= other.definitions
        self.meshes_missing_extent += other.meshes_missing_extent
        for path, entry in other.materials.items():
            self.materials.setdefault(path, entry)
        self.rendered.extend(other.rendered)
        self.proxy_prims.extend(other.proxy_prims)
        self.arcs.update(other.arcs)
        self.bound_errors.extend(other.bound_errors)
        self.invalid_meshes.extend(other.invalid_meshes)

    def arc_counts(self, layers) -> dict:
        totals = [sum(column) for column in zip(*self.arcs.values())] or [0] * 6
        names = ("references", "payloads", "inherits", "specializes", "variant_sets", "instanceable_specs")
        return {**dict(zip(names, totals)), "sublayers": sum(len(layer.subLayerPaths) for layer in layers)}


class Walker:
    """Children-before-parents aggregation over prims given in pre-order.

    `walk` returns a summary per prim whose parent was not walked here (the tops): all a
    parent needs to fold them in. The prim rows go to `emit_rows` as one list (post-order).
    """

    def __init__(self, stage, emit_rows):
        self.stage = stage
        self.emit = emit_rows
        self.totals = Totals()
        self.hidden_orders = set()             # stage pre-order indices hidden by themselves or a walked ancestor
        root_stack = {layer.identifier for layer in stage.GetLayerStack(includeSessionLayers=False)}
        self.root_stack = root_stack
        self.composed = any(layer.identifier not in root_stack for layer in stage.GetUsedLayers())
        self.references = ReferenceIdentity(stage, self.totals.definitions)
        self.xform_cache = UsdGeom.XformCache()
        self.bbox_cache = UsdGeom.BBoxCache(Usd.TimeCode.Default(), [UsdGeom.Tokens.default_, UsdGeom.Tokens.render])

    def walk(self, prims, order, injected=(), progress=None):
        """prims: pre-order; order: each prim's index in the whole stage's pre-order (sorts
        children into authored order); injected: (parent position, summary) of children
        walked elsewhere. Returns the tops' summaries."""
        # The walk allocates millions of small objects and frees none of them in cycles:
        # the cyclic collector would only rescan them, quadratically in the stage size.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._walk(prims, order, injected, progress)
        finally:
            if collecting:
                gc.enable()

    def _walk(self, prims, order, injected, progress):
        n = len(prims)
        sdf_paths = [p.GetPath() for p in prims]
        paths = [str(p) for p in sdf_paths]
        position = {path: j for j, path in enumerate(paths)}
        parent = [position.get(path.rsplit("/", 1)[0], -1) for path in paths]
        depth_of = [path.pathElementCount for path in sdf_paths]

        # Subtree aggregates per position; children add into their parent's slot.
        kids = [[] for _ in range(n)]          # (order, name, full hash) of finished children
        sub_prims = [1] * n
        sub_meshes = [0] * n
        sub_gprims = [0] * n
        sub_bytes = [0] * n
        sub_physics = [0] * n
        sub_skeleton = [0] * n
        rigid = [False] * n
        rigid_below = [False] * n
        animated = [False] * n
        animated_below = [False] * n
        override = [0] * n
        overrides_below = [0] * n
        # Targets leaving a subtree: (key relative to the prim, target, depth of the deepest
        # prim holding both owner and target). An entry leaves every subtree deeper than that.
        outside = [[] for _ in range(n)]
        variant_parts = [[] for _ in range(n)]
        hidden = [False] * n                   # own visibility is invisible
        bounds = [None] * n
        injected_bounds = [None] * n
        for j, summary in injected:
            self._inject(j, summary, kids, sub_prims, sub_meshes, sub_gprims, sub_bytes, sub_physics, sub_skeleton, rigid_below,
                         animated_below, overrides_below, outside, variant_parts)
            injected_bounds[j] = union(injected_bounds[j], summary["bounds"])

        rows = [None] * n
        totals = self.totals
        counts = totals.counts
        flags = totals.flags
        meshes = _Meshes()
        instances = []
        step = max(1, n // 20)

        attribute_type = Usd.Attribute
        buffer_types = _BUFFER_TYPES
        for j in range(n - 1, -1, -1):
            prim = prims[j]
            path = paths[j]
            sdf_path = sdf_paths[j]
            type_name = prim.GetTypeName()
            schemas = prim.GetAppliedSchemas()
            is_instance = prim.IsInstance()
            kind = prim.GetMetadata("kind") or ""

            local = hashlib.blake2b(digest_size=16)
            local.update(f"{type_name}|{','.join(schemas)}|{kind}".encode())
            placement = None
            is_animated = False
            own_bytes = 0
            direct_material = ""
            values = {}
            out = outside[j]
            if is_instance:
                # An existing instance is an opaque leaf keyed on its prototype.
                instances.append(j)
                counts["instance_count"] += 1
                local.update(str(prim.GetPrototype().GetPath()).encode())
            else:
                shading = type_name in SHADING_TYPES
                for prop in prim.GetAuthoredProperties():
                    name = prop.GetName()
                    if name.startswith("xformOp"):
                        h = placement = placement or hashlib.blake2b(digest_size=16)
                        is_placement = True
                    else:
                        h = local
                        is_placement = False
                    h.update(name.encode())
                    if isinstance(prop, attribute_type):
                        samples = prop.GetNumTimeSamples()
                        value = prop.Get()
                        values[name] = value
                        if buffer_types.get(type(value)):
                            view = memoryview(value)
                            h.update(view)
                            own_bytes += view.nbytes
                        else:
                            own_bytes += hash_value(h, value)
                        if samples:
                            counts["time_sampled_attribute_count"] += samples > 1
                            is_animated |= is_placement and samples > 1
                            for t in prop.GetTimeSamples():
                                h.update(str(t).encode())
                                own_bytes += hash_value(h, prop.Get(t))
                        if shading and prop.HasAuthoredConnections():
                            for target in prop.GetConnections():
                                h.update(str(target.MakeRelativePath(sdf_path)).encode())
                                out.append(("." + name, str(target),
                                            sdf_path.GetCommonPrefix(target.GetPrimPath()).pathElementCount))
                    else:
                        for target in prop.GetTargets():
                            h.update(str(target.MakeRelativePath(sdf_path)).encode())
                            target_text = str(target)
                            out.append(("." + name, target_text,
                                        sdf_path.GetCommonPrefix(target.GetPrimPath()).pathElementCount))
                            if name == "material:binding" and not direct_material:
                                direct_material = target_text
                if prim.HasVariantSets():
                    variant_sets = prim.GetVariantSets()
                    selections = [(vs, variant_sets.GetVariantSelection(vs)) for vs in variant_sets.GetNames()]
                    local.update(repr(selections).encode())
                    variant_parts[j].extend(f".{vs}={sel}" for vs, sel in selections)
                    flags["variants"].append(path)
                if shading:
                    self._note_shading(prim, type_name, values)

            hidden[j] = values.get("visibility") == INVISIBLE
            physics = type_name.startswith("Physics") or \
                bool(schemas) and any(s.startswith(PHYSICS_SCHEMA_PREFIXES) for s in schemas)
            if physics:
                flags["physics"].append(path)
            skeleton = type_name in SKELETON_TYPES
            if skeleton:
                flags["skeleton"].append(path)
            is_mesh = type_name == "Mesh"
            if is_mesh:
                counts["mesh_count"] += 1
                geometry = hashlib.blake2b(digest_size=16)
                for attr in ("points", "faceVertexCounts", "faceVertexIndices"):
                    hash_value(geometry, values.get(attr))
                # Where the points come from: meshes composing one spec share it already.
                node = prim.GetAttribute("points").GetResolveInfo().GetNode()
                site = (node.layerStack.identifier.rootLayer.identifier, str(node.path)) if node else path
                totals.mesh_geometry[geometry.hexdigest()].add(site)
                extent = values.get("extent")
                if extent is None:
                    totals.meshes_missing_extent += 1
                meshes.add(j, values.get("points"), values.get("faceVertexCounts"),
                           values.get("faceVertexIndices"), extent)
            elif is_instance or type_name in NON_MESH_BOUNDABLE:
                bounds[j] = self._bound(prim)
                counts["point_instancer_count"] += type_name == "PointInstancer"
            elif type_name == "Material":
                counts["material_count"] += 1
            elif type_name == "Xform":
                counts["xform_count"] += 1
            stack = None
            if self.composed and not is_instance:
                stack = prim.GetPrimStack()
                from_arc = any(spec.layer.identifier not in self.root_stack for spec in stack)
                override[j] = int(from_arc and any(
                    spec.layer.identifier in self.root_stack and _has_opinion(spec) for spec in stack))

            # Close the subtree: hash over the children in authored order, then hand up.
            children = kids[j]
            if children:
                children.sort()
                candidate = digest(local.hexdigest(), *(f"{name}:{full}" for _, name, full in children))
            else:
                candidate = local.hexdigest()
            full = digest(candidate, placement.hexdigest()) if placement else candidate
            sub_bytes[j] += own_bytes
            sub_meshes[j] += is_mesh
            sub_gprims[j] += is_mesh or (type_name in GPRIM_TYPES)
            sub_physics[j] += physics
            sub_skeleton[j] += skeleton
            rigid[j] = "PhysicsRigidBodyAPI" in schemas
            animated[j] = is_animated
            depth = depth_of[j]
            escaping = [entry for entry in out if entry[2] < depth]
            outside[j] = escaping
            ext = digest(*sorted(f"{key}->{target}" for key, target, _ in escaping)) if escaping else ""
            variants = digest(*sorted(variant_parts[j])) if variant_parts[j] else ""
            brings_in = prim.HasAuthoredReferences() or prim.HasAuthoredPayloads()
            ref = self.references.of(sdf_path) if brings_in else ""
            if brings_in or variant_parts[j] or prim.HasAuthoredInherits() or prim.HasAuthoredSpecializes():
                self._count_arcs(stack or prim.GetPrimStack())
            p = parent[j]
            if p >= 0:
                name = sdf_path.name
                kids[p].append((order[j], name, full))
                sub_prims[p] += sub_prims[j]
                sub_meshes[p] += sub_meshes[j]
                sub_gprims[p] += sub_gprims[j]
                sub_bytes[p] += sub_bytes[j]
                sub_physics[p] += sub_physics[j]
                sub_skeleton[p] += sub_skeleton[j]
                rigid_below[p] |= rigid[j] or rigid_below[j]
                animated_below[p] |= is_animated or animated_below[j]
                overrides_below[p] += override[j] + overrides_below[j]
                if escaping:
                    prefix = "/" + name
                    outside[p].extend((prefix + key, target, lca) for key, target, lca in escaping)
                if variant_parts[j]:
                    variant_parts[p].extend(f"/{name}{part}" for part in variant_parts[j])
            else:
                kids[j] = full                 # a top keeps its full hash for its summary
            rows[j] = [path, type_name, kind, candidate, sub_prims[j], sub_meshes[j], sub_gprims[j], sub_bytes[j], ext,
                       len(escaping), ref, variants, overrides_below[j], is_instance, sub_physics[j],
                       sub_skeleton[j], rigid_below[j], animated_below[j], is_animated,
                       "PhysicsArticulationRootAPI" in schemas, direct_material, None]
            if p >= 0:
                kids[j] = outside[j] = variant_parts[j] = None
            if progress and (n - j) % step == 0:
                progress((n - j) / n)

        counts["prim_count"] += n
        meshes.reduce()
        # Invalid meshes are reported and left out of bounds and triangle counts.
        self.totals.invalid_meshes.extend((paths[j], problem) for j, problem in sorted(meshes.invalid.items()))
        self._mesh_bounds(prims, meshes, bounds)
        # Bounds bottom-up: a prim whose own visibility is invisible hides its whole subtree.
        for j in range(n - 1, -1, -1):
            b = None if hidden[j] else union(bounds[j], injected_bounds[j])
            bounds[j] = b
            if b is not None:
                p = parent[j]
                if p >= 0 and not hidden[p]:
                    bounds[p] = union(bounds[p], b)
        boxed = [j for j in range(n) if bounds[j] is not None]
        if boxed:
            rounded = np.round(np.array([bounds[j] for j in boxed]), 6).tolist()
            for j, box in zip(boxed, rounded):
                rows[j][-1] = box
        rows.reverse()                         # post-order: children before parents
        self.emit(rows)

        hidden_below = [False] * n
        top_of = [0] * n
        for j in range(n):
            p = parent[j]
            hidden_below[j] = hidden[j] or (p >= 0 and hidden_below[p])
            top_of[j] = j if p < 0 else top_of[p]
        self.hidden_orders.update(order[j] for j in range(n) if hidden_below[j])
        self._rendered(prims, order, top_of, hidden_below, meshes, instances)
        return [{
            "order": order[j], "name": sdf_paths[j].name, "full": kids[j], "prims": sub_prims[j],
            "meshes": sub_meshes[j], "gprims": sub_gprims[j], "bytes": sub_bytes[j], "physics": sub_physics[j], "skeleton": sub_skeleton[j],
            "rigid": rigid[j], "rigid_below": rigid_below[j], "animated": animated[j],
            "animated_below": animated_below[j], "override": override[j], "overrides_below": overrides_below[j],
            "outside": outside[j], "variants": variant_parts[j], "bounds": bounds[j],
        } for j in range(n) if parent[j] < 0]

    @staticmethod
    def _inject(j, summary, kids, sub_prims, sub_meshes, sub_gprims, sub_bytes, sub_physics, sub_skeleton, rigid_below,
                animated_below, overrides_below, outside, variant_parts):
        """Add a child walked elsewhere into its parent's aggregates, as the loop would."""
        name = summary["name"]
        kids[j].append((summary["order"], name, summary["full"]))
        sub_prims[j] += summary["prims"]
        sub_meshes[j] += summary["meshes"]
        sub_gprims[j] += summary["gprims"]
        sub_bytes[j] += summary["bytes"]
        sub_physics[j] += summary["physics"]
        sub_skeleton[j] += summary["skeleton"]
        rigid_below[j] |= summary["rigid"] or summary["rigid_below"]
        animated_below[j] |= summary["animated"] or summary["animated_below"]
        overrides_below[j] += summary["override"] + summary["overrides_below"]
        outside[j].extend(("/" + name + key, target, lca) for key, target, lca in summary["outside"])
        variant_parts[j].extend(f"/{name}{part}" for part in summary["variants"])

    def _mesh_bounds(self, prims, meshes, bounds):
        """World bounds of every valid mesh at once: the local-to-world transform applied to its
        local box (center and half-size), vectorized over all meshes."""
        if not meshes.where:
            return
        where = meshes.where
        lo, hi = np.concatenate(meshes.lo), np.concatenate(meshes.hi)
        matrices = np.array([self.xform_cache.GetLocalToWorldTransform(prims[j]) for j in where])
        linear, translation = matrices[:, :3, :3], matrices[:, 3, :3]
        center = np.einsum("ni,nij->nj", (lo + hi) / 2, linear) + translation
        half = np.einsum("ni,nij->nj", (hi - lo) / 2, np.abs(linear))
        world = np.concatenate((center - half, center + half), axis=1).tolist()
        for j, box in zip(where, world):
            bounds[j] = tuple(box)

    def _rendered(self, prims, order, top_of, hidden, meshes, instances):
        """Triangles per bound material of the meshes that may render, instance proxies included.
        Hiding by an ancestor above this walk is applied by the caller (by walk-top order)."""
        candidates = [(j, tri) for j, tri in meshes.triangles if not hidden[j]]
        proxies = []
        triangles_of = {}
        for j in instances:
            if hidden[j]:
                continue
            count = 0
            for proxy in Usd.PrimRange(prims[j], Usd.TraverseInstanceProxies()):
                if proxy == prims[j]:
                    continue
                count += 1
                if proxy.IsA(UsdGeom.Mesh) and \
                        UsdGeom.Imageable(proxy).ComputeVisibility() != UsdGeom.Tokens.invisible:
                    key = proxy.GetPrimInPrototype().GetPath()
                    if key not in triangles_of:
                        triangles_of[key] = _triangles([UsdGeom.Mesh(proxy).GetFaceVertexCountsAttr().Get()])[0]
                    proxies.append((j, proxy, triangles_of[key]))
            self.totals.proxy_prims.append((order[top_of[j]], count))
        walked = [prims[j] for j, _ in candidates] + [proxy for _, proxy, _ in proxies]
        if not walked:
            return
        bound, _ = UsdShade.MaterialBindingAPI.ComputeBoundMaterials(walked)
        tops = [order[top_of[j]] for j, _ in candidates] + [order[top_of[j]] for j, _, _ in proxies]
        triangles = [tri for _, tri in candidates] + [tri for _, _, tri in proxies]
        for top, tri, material in zip(tops, triangles, bound):
            self.totals.rendered.append((top, tri, str(material.GetPath()) if material else ""))

    def _bound(self, prim):
        """World bounds through USD's own bbox computation (instances, implicit shapes, point
        instancers). Content USD cannot bound (e.g. a broken instancer) has no bounds."""
        try:
            aligned = self.bbox_cache.ComputeWorldBound(prim).ComputeAlignedRange()
        except Tf.ErrorException as err:
            reason = str(err).strip().splitlines()[-1].split(" : ", 1)[-1]
            self.totals.bound_errors.append(f"{prim.GetPath()}: {reason[:200]}")
            return None
        if aligned.IsEmpty():
            return None
        lo, hi = aligned.GetMin(), aligned.GetMax()
        return (lo[0], lo[1], lo[2], hi[0], hi[1], hi[2])

    def _count_arcs(self, stack):
        """Authored list-op items on the specs behind a prim with arcs (its prim stack); each
        spec counted once however many prims it composes into (35 references of one asset
        count its arcs once)."""
        arcs = self.totals.arcs
        for spec in stack:
            key = f"{spec.layer.identifier}<{spec.path}>"
            if key in arcs:
                continue
            keys = spec.ListInfoKeys()
            arcs[key] = (
                _list_op_items(spec.referenceList) if "references" in keys else 0,
                _list_op_items(spec.payloadList) if "payload" in keys else 0,
                _list_op_items(spec.inheritPathList) if "inheritPaths" in keys else 0,
                _list_op_items(spec.specializesList) if "specializes" in keys else 0,
                len(spec.variantSetNameList.GetAddedOrExplicitItems()) if "variantSetNames" in keys else 0,
                int("instanceable" in keys and spec.instanceable),
            )

    def _note_shading(self, prim, type_name, values):
        """Opacity facts per material, for the enclosure-opacity hint (binding metadata only)."""
        material = prim
        while material and material.GetTypeName() != "Material":
            material = material.GetParent()
        if not material:
            return
        entry = self.totals.materials.setdefault(
            str(material.GetPath()), {"surfaces": [], "opacity": None, "transmissive": False})
        if type_name == "Shader":
            entry["surfaces"].append(str(values.get("info:id") or values.get("info:mdl:sourceAsset") or ""))
        for name, value in values.items():
            if name in OPACITY_INPUTS and isinstance(value, (int, float)):
                entry["opacity"] = float(value) if entry["opacity"] is None else min(entry["opacity"], float(value))
            if any(hint in name.lower() for hint in TRANSMISSION_HINTS) and value not in (None, 0, 0.0, False):
                entry["transmissive"] = True


class _Meshes:
    """The meshes of one walk, reduced a batch at a time to what the walk needs after its loop:
    the topology verdict, each valid mesh's triangle count and local box. Holding every mesh's
    points and indices until the end cost the 100k hall's walk most of its memory."""

    BATCH = 4096

    def __init__(self):
        self.pending = []        # (position, points, faceVertexCounts, faceVertexIndices, extent)
        self.invalid = {}        # position -> the first problem found
        self.triangles = []      # (position, triangles) of each valid mesh, in walk order
        self.where, self.lo, self.hi = [], [], []  # valid meshes with a box: positions, local min/max

    def add(self, j, points, counts, indices, extent):
        self.pending.append((j, points, counts, indices, extent))
        if len(self.pending) >= self.BATCH:
            self.reduce()

    def reduce(self):
        batch, self.pending = self.pending, []
        if not batch:
            return
        invalid = invalid_meshes((j, p, c, i) for j, p, c, i, _ in batch)
        if invalid:
            self.invalid.update(invalid)
            batch = [m for m in batch if m[0] not in invalid]
        self.triangles.extend(zip((m[0] for m in batch), _triangles([m[2] for m in batch])))
        boxes = []
        for j, points, _, _, extent in batch:
            source = extent if extent is not None and len(extent) == 2 else points
            if source is None or len(source) == 0:
                continue
            boxes.append(points_array(source))
            self.where.append(j)
        if not boxes:
            return
        sizes = np.fromiter((len(b) for b in boxes), dtype=np.int64, count=len(boxes))
        starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        stacked = np.concatenate(boxes).astype(np.float64)
        self.lo.append(np.minimum.reduceat(stacked, starts, axis=0))
        self.hi.append(np.maximum.reduceat(stacked, starts, axis=0))


def walk_subtrees(stage, roots, emit_rows):
    """Walk whole subtrees given as (root path, root's index in the stage pre-order)."""
    walker = Walker(stage, emit_rows)
    prims, order = [], []
    for root_path, root_order in roots:
        subtree = list(Usd.PrimRange(stage.GetPrimAtPath(root_path)))
        prims.extend(subtree)
        order.extend(range(root_order, root_order + len(subtree)))
    tops = walker.walk(prims, order)
    return tops, walker.totals


def worker_main(argv) -> int:
    """`python -m usdtune_executor.workers.stage_walk STAGE RESULT.pickle`: opens the stage at
    once, then reads the subtrees to walk (a pickled list of (path, order)) from stdin, so
    the stage opens while the parent is still cutting the scene graph."""
    from ..usd.stage import open_stage

    stage, _ = open_stage(argv[0])
    roots = pickle.load(sys.stdin.buffer)
    rows = []
    tops, totals = walk_subtrees(stage, roots, rows.extend)
    with open(argv[1], "wb") as handle:
        pickle.dump({"rows": rows, "tops": tops, "totals": totals}, handle, protocol=pickle.HIGHEST_PROTOCOL)
    return 0


if __name__ == "__main__":
    # Run the package's copy of this module, so the pickled Totals name its real module.
    from usdtune_executor.workers import stage_walk
    sys.exit(stage_walk.worker_main(sys.argv[1:]))
