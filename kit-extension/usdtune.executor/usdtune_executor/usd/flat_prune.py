"""pruneLeaves under flat parents, without its quadratic cost.

usd-optimize's pruneLeaves deletes every Xform or Scope leaf in one pre-order pass, whatever
the leaf holds (transforms, attributes, relationships, arcs); a parent whose children it deletes
stays. Each deletion under a parent of n children costs the open stage O(n) in change
processing (an Sdf.ChangeBlock does not help), so a flat parent costs O(n^2): the 50,000 empty
Xforms deduplicateGeometry's point instancers leave under /World of the 100k scatter took the
op 25-36 s (20,000: 0.5-1.5 s), most of that run's Phase 4. Removed from the root layer while
no stage listens, 20,000 take 0.4 s.

So before the op, `select` lists the leaves of each flat parent that the op would delete and
that the root layer alone defines (one prim spec, in the root layer, no payload, not an
instance: removing that spec removes the prim); under a parent it would empty it keeps one
such leaf, so whether the parent becomes a leaf stays the op's decision. The caller releases
its stage, `remove` takes them out of the bare layer, the stage is opened again and the op runs
on what is left: the result is the op's own (tests/test_op_chain.py compares the two).
"""
from pxr import Sdf

# A parent holding fewer prunable leaves than this is left to the op (its cost is small).
FLAT_PARENT_LEAVES = 1000
PRUNABLE_TYPES = ("Xform", "Scope")


def applies(operation: str, args: dict) -> bool:
    """Whole-stage pruneLeaves in Delete mode (1): the only form the fast path reproduces."""
    return operation == "pruneLeaves" and args.get("pruneMode") == 1 and not args.get("paths")


def _prunable(prim, root_layer) -> bool:
    if prim.GetTypeName() not in PRUNABLE_TYPES or prim.GetAllChildrenNames():
        return False
    if not (prim.IsActive() and prim.IsDefined()) or prim.IsInstance() or prim.IsInstanceProxy() or prim.HasPayload():
        return False
    stack = prim.GetPrimStack()
    return len(stack) == 1 and stack[0].layer == root_layer


def select(stage, flat: int = FLAT_PARENT_LEAVES) -> dict:
    """{parent path: names of its leaves to remove first} for every parent with at least
    `flat` of them."""
    root_layer = stage.GetRootLayer()
    default_prim = stage.GetDefaultPrim()
    chosen = {}
    for parent in stage.Traverse():
        names = parent.GetAllChildrenNames()
        if len(names) < flat:
            continue
        doomed = [child.GetName() for child in parent.GetAllChildren()
                  if child != default_prim and _prunable(child, root_layer)]
        if len(doomed) == len(names):
            doomed.pop()  # the op deletes this one, and keeps the parent as it would have
        if len(doomed) >= flat:
            chosen[parent.GetPath()] = set(doomed)
    return chosen


def remove(layer: Sdf.Layer, chosen: dict) -> list:
    """Take the chosen leaves out of `layer` (no stage may be open on it: the point is that no
    stage processes the change); returns their paths. Each parent's other children are set
    aside, its children cleared at once, and they are put back in their order."""
    removed = []
    for parent_path, names in chosen.items():
        parent = layer.GetPrimAtPath(parent_path)
        kept = [name for name in parent.nameChildren.keys() if name not in names]
        aside = Sdf.Layer.CreateAnonymous()
        for name in kept:
            path = parent_path.AppendChild(name)
            Sdf.CreatePrimInLayer(aside, path)
            Sdf.CopySpec(layer, path, aside, path)
        parent.nameChildren.clear()
        for name in kept:
            path = parent_path.AppendChild(name)
            Sdf.CopySpec(aside, path, layer, path)
        removed.extend(parent_path.AppendChild(name) for name in names)
    return removed
