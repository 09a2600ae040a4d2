"""Phase 2f: author a restructure plan the daemon computed, with Sdf, into new files.

Three materializations of one idea (copies of a subtree become references to one prototype):

  * internal_reference: prototypes live in the output root under an abstract `class`
    namespace; every duplicate site becomes an internal reference to its prototype;
  * external_prototype: each prototype is its own file under `prototypes/`; sites in the
    assembly root payload it, sites inside another prototype reference it;
  * selective_loading: each boundary subtree becomes its own file under `subassets/`,
    payloaded from the assembly root (no sharing: the split is for loading, not instancing).

A copy the others already reference (a BIM library prim) stays where it is as the
prototype, in either mode; sites then reference it internally. Other prototype content is
copied from the composed source (flattened where arcs bring content in), so a copy whose
content arrived through an arc is reproduced exactly and no arc can loop back. A site keeps
its composed placement (`xformOp:*`, `xformOpOrder`) and nothing else; everything below
comes from the prototype. The output root is the source's root layer stack, flattened into
one layer with its arcs kept. The source is only read.

Files appear atomically: each is written beside its final name and renamed into place only
after every file was written. The daemon checks the result (openability, mesh counts, the
preservation proof) and writes the manifest.
"""
import os
import time

from pxr import Sdf, Usd, UsdGeom, UsdUtils

from ..errors import TaskError
from ..usd.assets import reanchor_asset_paths, source_may_hold_asset_paths
from ..usd.export import commit, export_partial
from ..usd.stage import open_stage, standalone_mesh_count

PLACEMENT = ("xformOp:", "xformOpOrder")
SHADING_TYPES = {"Material", "Shader", "NodeGraph"}
CLOSURE_MARK = "usdtune_material_closure"


class _Content:
    """Where a prim's composed content is read from. A subtree authored without arcs in a
    single-layer stack is its own composed content: read it from a pristine copy of that
    layer. Anything else comes from the fully flattened stage, made once on first need
    (flattening a 100k-prim stage costs seconds)."""

    def __init__(self, stage):
        self._stage = stage
        single = len(stage.GetLayerStack(includeSessionLayers=False)) == 1
        self._pristine = Sdf.Layer.OpenAsAnonymous(stage.GetRootLayer().realPath) if single else None
        self._flat = None

    def layer_for(self, path) -> Sdf.Layer:
        path = Sdf.Path(path)
        if self._pristine and self._pristine.GetPrimAtPath(path) and not _has_arcs(self._pristine, path):
            return self._pristine
        if self._flat is None:
            self._flat = self._stage.Flatten()
        return self._flat


def _has_arcs(layer: Sdf.Layer, root: Sdf.Path) -> bool:
    found = []

    def visit(path):
        if path.IsPrimPath() and not found:
            spec = layer.GetPrimAtPath(path)
            if spec.hasReferences or spec.hasPayloads or spec.hasInheritPaths or spec.hasSpecializes or spec.variantSets:
                found.append(path)

    layer.Traverse(root, visit)
    return bool(found)


def _is_placement(name: str) -> bool:
    return name.startswith(PLACEMENT)


def _clear_site(spec: Sdf.PrimSpec) -> None:
    """Empty a site's spec (properties, children, arcs, variants) keeping its type: what it
    holds next comes from its prototype and its own composed placement."""
    type_name = spec.typeName
    for prop in list(spec.properties):
        spec.RemoveProperty(prop)
    for child in list(spec.nameChildren):
        del spec.nameChildren[child.name]
    for variant_set in list(spec.variantSets):
        del spec.variantSets[variant_set.name]
    spec.variantSelections.clear()
    spec.referenceList.ClearEditsAndMakeExplicit()
    spec.payloadList.ClearEditsAndMakeExplicit()
    spec.inheritPathList.ClearEditsAndMakeExplicit()
    spec.specializesList.ClearEditsAndMakeExplicit()
    for key in ("instanceable", "kind"):
        if spec.HasInfo(key):
            spec.ClearInfo(key)
    spec.specifier = Sdf.SpecifierDef
    spec.typeName = type_name


def _set_placement(content: _Content, member: Sdf.Path, layer: Sdf.Layer, site: Sdf.Path) -> None:
    """Author the composed placement of `member` on `site` (it may have come through an arc)."""
    source = content.layer_for(member)
    spec = source.GetPrimAtPath(member)
    for prop in spec.properties if spec else []:
        if _is_placement(prop.name):
            Sdf.CopySpec(source, prop.path, layer, site.AppendProperty(prop.name))


def _strip_placement(spec: Sdf.PrimSpec) -> None:
    """A prototype's root carries no placement: each site keeps its own."""
    for prop in [p for p in spec.properties if _is_placement(p.name)]:
        spec.RemoveProperty(prop)
    spec.specifier = Sdf.SpecifierDef


def _copy_subtree(content: _Content, source: Sdf.Path, layer, destination: Sdf.Path) -> None:
    Sdf.CreatePrimInLayer(layer, destination.GetParentPath())
    if not Sdf.CopySpec(content.layer_for(source), source, layer, destination):
        raise TaskError("restructure_copy_failed", f"could not copy {source} into {layer.identifier}", str(source))
    _strip_placement(layer.GetPrimAtPath(destination))


def _outside_targets(layer, root: Sdf.Path):
    """(owner property spec, target path) for every relationship target and attribute
    connection under `root` that points outside it."""
    found = []

    def visit(path):
        if not path.IsPropertyPath():
            return
        spec = layer.GetPropertyAtPath(path)
        items = spec.targetPathList if isinstance(spec, Sdf.RelationshipSpec) else spec.connectionPathList
        for target in items.GetAddedOrExplicitItems():
            if not target.HasPrefix(root):
                found.append((spec, target))

    layer.Traverse(root, visit)
    return found


def _owning_material(layer_of, prim_path: Sdf.Path):
    """The Material a shading prim belongs to (itself, or its nearest Material ancestor),
    or None. `layer_of(path)` names the layer to read each path from."""
    network = prim_path
    while network.pathElementCount >= 1:
        spec = layer_of(network).GetPrimAtPath(network)
        if spec and spec.typeName == "Material":
            return network
        network = network.GetParentPath()
    return None


def _close_materials(content: _Content, layer, root: Sdf.Path, closure_scope: str = "Looks") -> list:
    """Copy the material networks a standalone prototype binds outside itself into
    `<root>/Looks` and retarget the bindings (the default `inline_local_external` policy).
    Returns (source, copy) pairs. A target outside the prototype that is not shading is an
    error: the subtree cannot stand alone."""
    copied = {}
    rewrites = []
    pending = _outside_targets(layer, root)
    while pending:
        spec, target = pending.pop()
        prim_path = target.GetPrimPath()
        # The whole Material it belongs to; else the shading prim itself (a NodeGraph, say).
        network = _owning_material(content.layer_for, prim_path) or prim_path
        network_spec = content.layer_for(network).GetPrimAtPath(network)
        if not network_spec or network_spec.typeName not in SHADING_TYPES:
            raise TaskError("restructure_outside_target",
                            f"{spec.path} targets {target}, outside the subtree and not a material: "
                            "the subtree cannot become a standalone file", str(spec.path))
        if network not in copied:
            name, k = network.name, 1
            while layer.GetPrimAtPath(root.AppendChild(closure_scope).AppendChild(name)):
                k += 1
                name = f"{network.name}_{k}"
            destination = root.AppendChild(closure_scope).AppendChild(name)
            scope = Sdf.CreatePrimInLayer(layer, destination.GetParentPath())
            scope.specifier = Sdf.SpecifierDef
            scope.typeName = scope.typeName or "Scope"
            scope.customData = {CLOSURE_MARK: True}  # the preservation proof counts what closure added
            Sdf.CopySpec(content.layer_for(network), network, layer, destination)
            copied[network] = destination
            rewrites.append({"source": str(network), "prototype_target": str(destination), "result": "inlined"})
            pending.extend(_outside_targets(layer, destination))
        new_target = target.ReplacePrefix(network, copied[network])
        items = spec.targetPathList if isinstance(spec, Sdf.RelationshipSpec) else spec.connectionPathList
        items.ReplaceItemEdits(target, new_target)
    return rewrites


def _move_spec(source: Sdf.Layer, path: Sdf.Path, destination: Sdf.Layer) -> None:
    """Move a prim spec subtree to the same path in another layer; ancestors there are
    typeless `def`s, so the layer opened alone still defines (and usd-optimize reaches) it."""
    for ancestor in reversed(path.GetParentPath().GetPrefixes()):
        Sdf.CreatePrimInLayer(destination, ancestor).specifier = Sdf.SpecifierDef
    Sdf.CopySpec(source, path, destination, path)
    parent = source.GetPrimAtPath(path.GetParentPath()) if path.GetParentPath() != Sdf.Path.absoluteRootPath \
        else source.pseudoRoot
    del parent.nameChildren[path.name]


def _internal_arc_targets(layer: Sdf.Layer, root: Sdf.Path) -> list:
    """Prim paths that specs under `root` reach by internal reference, payload, inherit or
    specialize."""
    found = []

    def visit(path):
        if not path.IsPrimPath():
            return
        spec = layer.GetPrimAtPath(path)
        for arc in [*spec.referenceList.GetAddedOrExplicitItems(), *spec.payloadList.GetAddedOrExplicitItems()]:
            if not arc.assetPath and arc.primPath:
                found.append(arc.primPath)
        found.extend(spec.inheritPathList.GetAddedOrExplicitItems())
        found.extend(spec.specializesList.GetAddedOrExplicitItems())

    layer.Traverse(root, visit)
    return found


def _promote_library(root: Sdf.Layer, in_place: list) -> tuple:
    """External mode, prototypes that stay where they are (a BIM library): move the scope that
    holds them, and the materials it binds outside itself, into a shared layer the root
    sublayers. Internal references and bindings still resolve (same layer stack), and the
    library becomes one Phase 4 target whose optimization reaches every site.
    Returns (shared layer, scope path) or (None, None)."""
    if not in_place:
        return None, None
    scope = Sdf.Path(in_place[0])
    for path in in_place[1:]:
        scope = scope.GetCommonPrefix(Sdf.Path(path))
    if len(in_place) == 1:
        scope = scope.GetParentPath()
    # Grow the scope until the internal arcs inside it (library nodes referencing library
    # meshes) stay inside it.
    while scope.pathElementCount >= 2:
        outside = [t for t in _internal_arc_targets(root, scope) if not t.HasPrefix(scope)]
        if not outside:
            break
        for target in outside:
            scope = scope.GetCommonPrefix(target)
    if scope.pathElementCount < 2:
        return None, None  # the common scope is a top-level prim: the whole stage, not a library
    shared = Sdf.Layer.CreateAnonymous(".usdc")
    materials = {target.GetPrimPath() for _, target in _outside_targets(root, scope)}
    networks = {_owning_material(lambda _: root, prim_path) for prim_path in materials} - {None}
    _move_spec(root, scope, shared)
    for network in sorted(networks):
        _move_spec(root, network, shared)
    return shared, scope


def _class_namespace_meshes(layer_path: str, namespace: str) -> int:
    stage = Usd.Stage.Open(layer_path, Usd.Stage.LoadNone)
    prim = stage.GetPrimAtPath(namespace)
    if not prim:
        return 0
    return sum(1 for p in Usd.PrimRange(prim, Usd.PrimAllPrimsPredicate) if p.IsA(UsdGeom.Mesh))


def _check_outputs(outputs: list) -> None:
    for output in outputs:
        stage, errors = None, []
        try:
            stage, errors = open_stage(output["path"])
            output["validate_usd_minimum"] = "pass" if not errors else "fail"
            output["notes"] = "; ".join(errors[:3])
        except TaskError as err:
            output["validate_usd_minimum"] = "fail"
            output["notes"] = err.message
        output["size_bytes"] = os.path.getsize(output["path"])
        del stage


def run(params, reporter):
    started = time.perf_counter()
    mode = params["mode"]
    if mode not in ("internal_reference", "external_prototype", "selective_loading"):
        raise TaskError("restructure_mode_unavailable", f"unknown restructure mode '{mode}'")
    stage, _ = open_stage(params["stage_path"])
    source_dir = os.path.dirname(stage.GetRootLayer().realPath)
    output_dir = os.path.abspath(params["output_dir"])
    root_path = os.path.abspath(params["output_root"])
    if os.path.dirname(root_path) == source_dir or root_path == stage.GetRootLayer().realPath:
        raise TaskError("output_is_source", "the restructured stage must not be written beside or over its source",
                        root_path)
    reporter.progress(0.05, "reading the source")
    content = _Content(stage)
    # The output root: the root layer stack as one layer, arcs kept (a plain copy when the
    # stack is one layer: flattening it would cost seconds and change nothing).
    if len(stage.GetLayerStack(includeSessionLayers=False)) == 1:
        root = Sdf.Layer.OpenAsAnonymous(stage.GetRootLayer().realPath)
    else:
        root = UsdUtils.FlattenLayerStack(stage)

    def reanchor(layer, folder: str) -> None:
        if source_may_hold_asset_paths(params):
            reanchor_asset_paths(layer, source_dir, folder)

    reanchor(root, os.path.dirname(root_path))
    missing = [p for p in [*(x["source"] for x in params.get("prototypes", [])),
                           *(x["source"] for x in params.get("subassets", []))]
               if not stage.GetPrimAtPath(p)]
    if missing:
        raise TaskError("restructure_plan_stale", f"{len(missing)} planned source prims do not exist on the stage "
                        f"(first: {missing[0]}); refresh the assessment", missing[0])

    namespace = Sdf.Path(params.get("namespace", "/__usdtune_prototypes"))
    layers = {"": root}  # prototype name ("" = the assembly root) -> the layer its sites live in
    roots = {}           # prototype name -> its root path in that layer
    outputs, material_rewrites = [], []
    pending_files = []
    prototypes = params.get("prototypes", [])

    def file_of(name: str) -> str:
        return os.path.join(output_dir, "prototypes", f"{name}.usdc")

    for k, proto in enumerate(prototypes):
        reporter.progress(0.1 + 0.4 * k / max(1, len(prototypes)), f"prototype {proto['name']}")
        source = Sdf.Path(proto["source"])
        if proto.get("in_place"):  # a copy the others already reference stays the prototype
            layers[proto["name"]], roots[proto["name"]] = root, source
        elif mode == "internal_reference":
            if not root.GetPrimAtPath(namespace):
                scope = Sdf.CreatePrimInLayer(root, namespace)
                scope.specifier = Sdf.SpecifierClass
            destination = namespace.AppendChild(proto["name"])
            _copy_subtree(content, source, root, destination)
            layers[proto["name"]], roots[proto["name"]] = root, destination
        else:
            layer = Sdf.Layer.CreateAnonymous(".usdc")
            destination = Sdf.Path.absoluteRootPath.AppendChild(proto["name"])
            _copy_subtree(content, source, layer, destination)
            layer.defaultPrim = proto["name"]
            material_rewrites += _close_materials(content, layer, destination)
            # Copied paths (textures) were relative to the source; the arcs added below are not.
            reanchor(layer, os.path.dirname(file_of(proto["name"])))
            layers[proto["name"]], roots[proto["name"]] = layer, destination

    proto_in_place = {p["name"]: bool(p.get("in_place")) for p in prototypes}
    for site in params.get("sites", []):
        layer = layers[site["in"]]
        path = roots[site["in"]].AppendPath(site["path"]) if site["in"] else Sdf.Path(site["path"])
        spec = layer.GetPrimAtPath(path) or Sdf.CreatePrimInLayer(layer, path)
        _clear_site(spec)
        _set_placement(content, Sdf.Path(site["member"]), layer, path)
        proto = site["prototype"]
        if mode == "internal_reference" or proto_in_place.get(proto):  # in-place prototypes live in the root
            spec.referenceList.Prepend(Sdf.Reference("", roots[proto]))
        else:
            here = os.path.join(output_dir, "prototypes") if site["in"] else os.path.dirname(root_path)
            asset = "./" + os.path.relpath(file_of(proto), here)
            arcs = spec.payloadList if site["in"] == "" else spec.referenceList
            arcs.Prepend(Sdf.Payload(asset) if site["in"] == "" else Sdf.Reference(asset))
        if site.get("instanceable"):
            spec.instanceable = True

    for k, sub in enumerate(params.get("subassets", [])):
        reporter.progress(0.5 + 0.2 * k / max(1, len(params["subassets"])), f"sub-asset {sub['name']}")
        layer = Sdf.Layer.CreateAnonymous(".usdc")
        destination = Sdf.Path.absoluteRootPath.AppendChild(sub["name"])
        _copy_subtree(content, Sdf.Path(sub["source"]), layer, destination)
        layer.defaultPrim = sub["name"]
        material_rewrites += _close_materials(content, layer, destination)
        site = root.GetPrimAtPath(sub["source"]) or Sdf.CreatePrimInLayer(root, sub["source"])
        _clear_site(site)
        _set_placement(content, Sdf.Path(sub["source"]), root, site.path)
        path = os.path.join(output_dir, "subassets", f"{sub['name']}.usdc")
        reanchor(layer, os.path.dirname(path))
        site.payloadList.Prepend(Sdf.Payload("./" + os.path.relpath(path, os.path.dirname(root_path))))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pending_files.append((export_partial(layer, path), path))
        outputs.append({"path": path, "kind": "loadable_subasset", "provenance": sub["source"]})

    reporter.progress(0.75, "writing")
    if mode == "external_prototype":
        os.makedirs(os.path.join(output_dir, "prototypes"), exist_ok=True)
        for proto in (p for p in prototypes if not p.get("in_place")):
            pending_files.append((export_partial(layers[proto["name"]], file_of(proto["name"])), file_of(proto["name"])))
            outputs.append({"path": file_of(proto["name"]), "kind": "prototype", "provenance": proto["source"]})
        shared, scope = _promote_library(root, [p["source"] for p in prototypes if p.get("in_place")])
        if shared:
            # Beside the root, so relative asset paths resolve from it as they do from the root.
            stem, extension = os.path.splitext(os.path.basename(root_path))
            shared_path = os.path.join(os.path.dirname(root_path), f"{stem}.{scope.name}{extension}")
            root.subLayerPaths.insert(0, "./" + os.path.basename(shared_path))
            pending_files.append((export_partial(shared, shared_path), shared_path))
            outputs.append({"path": shared_path, "kind": "shared_layer", "provenance": str(scope)})
    os.makedirs(os.path.dirname(root_path), exist_ok=True)
    pending_files.append((export_partial(root, root_path), root_path))
    commit(pending_files)
    # The root is a Phase 4 target for its own content only: what its payloads and the shared
    # layer bring in is optimized as their own targets (never through the root).
    shared_layers = [o["path"] for o in outputs if o["kind"] == "shared_layer"]
    outputs.append({"path": root_path, "kind": "new_root", "provenance": params["stage_path"],
                    "mute_layers": shared_layers, "load_payloads": False})

    reporter.progress(0.85, "checking the outputs")
    _check_outputs(outputs)
    for output in outputs:
        output["mesh_count"] = standalone_mesh_count(output["path"], output.get("mute_layers", ()))
    if mode == "internal_reference" and prototypes:
        outputs[-1]["prototype_namespace_meshes"] = _class_namespace_meshes(root_path, str(namespace))
    return {
        "mode": mode,
        "new_assembly_root": root_path,
        "outputs": outputs,
        "material_rewrites": material_rewrites,
        "seconds": round(time.perf_counter() - started, 3),
    }
