"""Phase 5 reference remap: point the assemblies above optimized children at the children.

Given `original -> optimized` file pairs, every layer that reaches an original through its
references, payloads or sublayers (directly or through other layers) is impacted. Each
impacted layer is copied to `<output_dir>/assemblies/` (or, when it is itself an optimized
output, edited where it is) and its asset paths rewritten: originals to their optimized
files, impacted layers to their copies. The copy of the root is the new root. Sources are
only read; a cycle among impacted layers stops the remap rather than guessing.
"""
import os
import time

from pxr import Sdf, Tf, UsdUtils

from ..errors import TaskError
from ..usd.export import commit, export_partial
from ..usd.stage import open_stage, standalone_mesh_count


def _dependencies(layer) -> dict:
    """asset path as authored -> absolute file path, for the layer's file dependencies."""
    found = {}
    for authored in layer.GetCompositionAssetDependencies():
        if authored:
            found[authored] = os.path.abspath(layer.ComputeAbsolutePath(authored))
    return found


def run(params, reporter):
    started = time.perf_counter()
    root = os.path.abspath(params["root"])
    mapping = {os.path.abspath(k): os.path.abspath(v) for k, v in params["optimized"].items()}
    output_dir = os.path.abspath(params["output_dir"])
    for original, optimized in mapping.items():
        if not os.path.isfile(optimized):
            raise TaskError("remap_target_missing", f"optimized child {optimized} does not exist", optimized)
    # When the root itself was optimized, the walk starts from its optimized copy.
    start = mapping.get(root, root)
    # The layer graph reachable from the root and from every optimized child.
    graph, order, stack = {}, [], [start, *mapping.values()]
    while stack:
        path = stack.pop()
        if path in graph or path in mapping:
            continue
        try:
            layer = Sdf.Layer.FindOrOpen(path)
            if layer is not None and not layer.dirty:
                layer.Reload()  # a layer this process opened earlier may have changed on disk since
        except Tf.ErrorException:
            layer = None
        if layer is None:
            raise TaskError("remap_layer_unreadable", f"cannot open layer {path}", path)
        graph[path] = _dependencies(layer)
        order.append(path)
        stack.extend(graph[path].values())

    impacted = {}

    def reaches(path, trail):
        if path in mapping:
            return True
        if path in trail:
            raise TaskError("ref_remap_cycle", f"cyclic reference graph through {path}: remap it by hand", path)
        if path not in impacted:
            # Every dependency is followed (no short cut), so a cycle is found wherever it is.
            impacted[path] = any([reaches(dep, trail | {path}) for dep in graph.get(path, {}).values()])
        return impacted[path]

    for path in order:
        reaches(path, frozenset())
    produced = set(mapping.values())
    new_path = {}
    for path in order:
        if not impacted[path]:
            continue
        if path in produced:
            new_path[path] = path
        else:
            stem, extension = os.path.splitext(os.path.basename(path))
            new_path[path] = os.path.join(output_dir, "assemblies", f"{stem}.remapped{extension}")
    if start not in new_path and start == root:
        raise TaskError("remap_nothing_impacted", "no layer above the optimized children references them", root)

    rewritten = []
    pending = []
    for path, destination in new_path.items():
        layer = Sdf.Layer.OpenAsAnonymous(path) if destination != path else Sdf.Layer.FindOrOpen(path)
        dependencies = graph[path]
        here = os.path.dirname(destination)

        def remap(authored, dependencies=dependencies, here=here):
            target = dependencies.get(authored)
            if target is None:
                return authored
            if target in mapping:
                target = mapping[target]
            elif target in new_path:
                target = new_path[target]
            elif not os.path.isabs(authored) and not authored.startswith(("./", "../")):
                return authored  # search-path style: left to the resolver
            relative = os.path.relpath(target, here)
            return relative if relative.startswith("..") else "./" + relative

        UsdUtils.ModifyAssetPaths(layer, remap)
        pending.append((export_partial(layer, destination), destination))
        rewritten.append({"source": path, "path": destination,
                          "kind": "new_root" if path == start else "parent_assembly"})
    commit(pending)
    new_root = new_path.get(start, start)
    _, errors = open_stage(new_root)
    return {"new_assembly_root": new_root, "rewritten": rewritten, "composition_errors": errors[:20],
            "mesh_count": standalone_mesh_count(new_root), "seconds": round(time.perf_counter() - started, 3)}
