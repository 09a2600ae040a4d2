"""Phase 1b facts: one pass over the composed stage, everything the daemon decides from.

The executor only measures here. Grouping, readiness, the dedupe frontier, containment,
classification and the phase recommendation are the daemon's (daemon/src/decisions/),
plain functions over this output:

  * the result: stage identity, counts, authored arc counts, rendered geometry (for the
    Phase-4d preservation proof), content flags, material opacity facts;
  * the `prims` table (columns in stage_walk.PRIM_COLUMNS), streamed to the daemon in
    chunks of CHUNK_ROWS rows as the walk goes on.

On a large stage the walk is split between worker processes (one per core): the scene
graph is cut into subtrees, each worker walks its share, and the few prims above the cut
are finished here with the workers' subtree summaries.
"""
import os
import pickle
import subprocess
import tempfile
import time

from pxr import Usd, UsdGeom

from .. import workers
from ..errors import TaskError
from ..usd.stage import (authoring_hints, check_stage_path, open_stage, referenced_layers, stage_metrics, total_file_bytes,
                         used_layer_paths)
from ..workers.stage_walk import PRIM_COLUMNS, Walker, union, walk_subtrees

CHUNK_ROWS = 5000
MAX_LISTED_PATHS = 50
# Below this many prims a second process costs more (interpreter start, stage open) than it saves.
PARALLEL_MIN_PRIMS = 20_000
# This process's share of the walk relative to a worker's: it also counts arcs and merges.
OWN_SHARE = 1.0


class _RowStream:
    """Collects prim rows and ships them to the daemon in column chunks."""

    def __init__(self, reporter, enabled: bool):
        self._reporter = reporter
        self._enabled = enabled and hasattr(reporter, "records")
        self.rows_sent = 0

    def add(self, rows: list):
        if not self._enabled:
            return
        for start in range(0, len(rows), CHUNK_ROWS):
            chunk = rows[start:start + CHUNK_ROWS]
            self._reporter.records("prims", dict(zip(PRIM_COLUMNS, map(list, zip(*chunk)))))
            self.rows_sent += len(chunk)


def _layer_prim_estimate(stage_path: str) -> int:
    """Stage size before opening it, from the file size (~12 bytes per prim in crate files,
    ~60 in text); only decides whether worker processes are worth starting."""
    size = os.path.getsize(stage_path)
    return size // 12 if stage_path.endswith((".usdc", ".usd", ".usdz")) else size // 60


def _worker_count(params, prim_estimate: int) -> int:
    configured = os.environ.get("USDTUNE_FACTS_WORKERS", "")
    workers = int(configured) if configured.isdigit() else (os.cpu_count() or 1)
    # Inside Kit, sys.executable is Kit itself, not a Python to start workers with.
    if params.get("host", {}).get("runtime") == "kit" or prim_estimate < PARALLEL_MIN_PRIMS:
        return 1
    return max(1, min(workers, 8))


def _cut(paths, parent, shares):
    """Split the scene graph into whole subtrees of at most ~n/(4·len(shares)) prims and deal
    them into bins whose sizes follow `shares` (largest subtree first into the emptiest bin,
    relative to its share). The prims above the cut ("upper") are finished afterwards."""
    n = len(paths)
    size = [1] * n
    children = [[] for _ in range(n)]
    for i in range(n - 1, -1, -1):
        if parent[i] >= 0:
            size[parent[i]] += size[i]
            children[parent[i]].append(i)
    target = max(2_000, n // (4 * len(shares)))
    cut, upper = [], []
    pending = [i for i in range(n) if parent[i] < 0]
    while pending:
        i = pending.pop()
        if size[i] <= target:
            cut.append(i)
        else:
            upper.append(i)
            pending.extend(children[i])
    bins = [[] for _ in shares]
    load = [0] * len(shares)
    for i in sorted(cut, key=lambda i: -size[i]):
        k = min(range(len(shares)), key=lambda k: load[k] / shares[k])
        bins[k].append(i)
        load[k] += size[i]
    return [sorted(b) for b in bins], sorted(upper)


class _WalkWorkers:
    """Worker processes that open the stage at once and walk the subtrees they are sent."""

    def __init__(self, stage_path, count):
        self._stage_path = stage_path
        self._scratch = tempfile.TemporaryDirectory(prefix="usdtune-walk-")
        self._jobs = []
        for k in range(count):
            result = os.path.join(self._scratch.name, f"{k}.result")
            process = workers.spawn("stage_walk", stage_path, result, stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self._jobs.append((process, result))

    def send(self, bins, paths):
        for (process, _), roots in zip(self._jobs, bins):
            try:
                pickle.dump([(paths[i], i) for i in roots], process.stdin)
                process.stdin.close()
            except BrokenPipeError:
                pass  # the worker died; results() reports it
            process.stdin = None  # sent; communicate() must not touch it again

    def results(self, reporter):
        """Yield (rows, tops, totals) per worker as each finishes; raises if one failed."""
        try:
            for done, (process, result) in enumerate(self._jobs, 1):
                _, stderr = process.communicate()
                if process.returncode != 0:
                    tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
                    raise TaskError("facts_worker_failed",
                                    f"stage walk worker exited with {process.returncode}: {tail[0]}", self._stage_path)
                with open(result, "rb") as handle:
                    output = pickle.load(handle)
                reporter.progress(0.1 + 0.7 * done / len(self._jobs), f"{done} of {len(self._jobs)} walk workers done")
                yield output["rows"], output["tops"], output["totals"]
        finally:
            self.close()

    def close(self):
        for process, _ in self._jobs:
            if process.poll() is None:
                process.kill()
            process.wait()
        self._scratch.cleanup()


def run(params, reporter):
    started = time.perf_counter()
    stage_path = check_stage_path(params["stage_path"])
    # Workers start opening the stage while this process opens and cuts it.
    workers = _worker_count(params, _layer_prim_estimate(stage_path))
    pool = _WalkWorkers(stage_path, workers - 1) if workers > 1 else None
    try:
        stage, composition_errors = open_stage(stage_path)
    except TaskError:
        if pool:
            pool.close()
        raise
    reporter.progress(0.05, "stage opened")
    stream = _RowStream(reporter, params.get("prim_table", True))

    prims = list(stage.Traverse())
    paths = [str(p.GetPath()) for p in prims]
    position = {path: i for i, path in enumerate(paths)}
    parent = [position.get(path.rsplit("/", 1)[0], -1) for path in paths]
    session = stage.GetSessionLayer()
    layers = [layer for layer in stage.GetUsedLayers() if layer != session]
    if pool:
        # This process walks the first bin itself (its stage is open already); it also
        # merges and streams, so its bin is a little smaller.
        (own, *others), upper = _cut(paths, parent, [OWN_SHARE] + [1.0] * (workers - 1))
        pool.send(others, paths)
        reporter.progress(0.1, f"{len(prims)} prims: walking {len(own)} subtrees here, the rest in {len(others)} workers")
    else:
        own, upper = [i for i in range(len(prims)) if parent[i] < 0], []
    tops, totals = walk_subtrees(stage, [(paths[i], i) for i in own], stream.add)
    for rows, bin_tops, bin_totals in (pool.results(reporter) if pool else ()):
        stream.add(rows)
        tops.extend(bin_tops)
        totals.merge(bin_totals)

    # Finish the prims above the cut with the subtree summaries injected under their parents.
    upper_position = {i: j for j, i in enumerate(upper)}
    injected = [(upper_position[parent[t["order"]]], t) for t in tops if parent[t["order"]] >= 0]
    finisher = Walker(stage, stream.add)
    stage_tops = [t for t in tops if parent[t["order"]] < 0] + \
        finisher.walk([prims[i] for i in upper], upper, injected)
    totals.merge(finisher.totals)

    # A subtree walked in a worker is hidden when a prim above the cut is.
    hidden = {t["order"] for t in tops if parent[t["order"]] >= 0 and parent[t["order"]] in finisher.hidden_orders}
    rendered = [(tri, material) for top, tri, material in totals.rendered if top not in hidden]
    by_material = {}
    for tri, material in rendered:
        by_material[material] = by_material.get(material, 0) + tri
    world = None
    for top in stage_tops:
        world = union(world, top["bounds"])

    prototypes = stage.GetPrototypes()
    counts = totals.counts
    return {
        "stage": {
            "identifier": stage.GetRootLayer().identifier,
            "rootLayer": stage.GetRootLayer().realPath,
            "defaultPrim": str(stage.GetDefaultPrim().GetPath()) if stage.GetDefaultPrim() else "",
            **stage_metrics(stage),
            "file_size_bytes": total_file_bytes(used_layer_paths(stage)),
            "root_layer_format": os.path.splitext(stage.GetRootLayer().realPath)[1].lstrip("."),
            "authoring_hints": authoring_hints(stage),
        },
        "counts": {
            "prim_count": counts["prim_count"],
            "prim_count_with_instance_proxies": counts["prim_count"] + sum(
                count for top, count in totals.proxy_prims if top not in hidden),
            "mesh_count": counts["mesh_count"] + sum(
                1 for proto in prototypes for p in Usd.PrimRange(proto) if p.IsA(UsdGeom.Mesh)),
            "rendered_mesh_count": len(rendered),
            "material_count": counts["material_count"],
            "xform_count": counts["xform_count"],
            "point_instancer_count": counts["point_instancer_count"],
            "prototype_count": len(prototypes),
            "instance_count": counts["instance_count"],
            "time_sampled_attribute_count": counts["time_sampled_attribute_count"],
            "layer_count": len(layers),
        },
        # List-op items on the specs behind the composed prims (unselected variants not included).
        "composition": {**totals.arc_counts(layers), "counting_method": "authored_list_op_items"},
        # Referenced and payloaded files: a composed stage's Phase 4 targets.
        "referenced_layers": referenced_layers(stage),
        "geometry": {
            "distinct_mesh_geometries": len(totals.mesh_geometry),
            # Prototype meshes are not walked and meshes composing one spec count once (both
            # are shared already): duplicates are what dedupe could still share.
            "duplicate_meshes": sum(len(sites) - 1 for sites in totals.mesh_geometry.values()),
            "meshes_missing_extent": totals.meshes_missing_extent,
            "triangles": sum(by_material.values()),
            "triangles_by_material": dict(sorted(by_material.items())),
            "world_bounds": None if world is None else [list(world[:3]), list(world[3:])],
            # Meshes whose topology or points are invalid: findings, never input to an op.
            "invalid_mesh_count": len(totals.invalid_meshes),
            "invalid_meshes": [{"prim": path, "problem": problem}
                               for path, problem in totals.invalid_meshes[:MAX_LISTED_PATHS]],
        },
        "content_flags": {name: {"count": len(found), "paths": sorted(found)[:MAX_LISTED_PATHS]}
                          for name, found in totals.flags.items()},
        "materials": dict(sorted(totals.materials.items())),
        "prim_table": {"rows": stream.rows_sent, "columns": PRIM_COLUMNS, "hash_float_tolerance": 0.0,
                       "walk_processes": workers},
        "composition_errors": composition_errors[:20],
        # Reference, payload and sublayer cycles: USD composes around them, an output would not.
        "composition_cycles": [e for e in composition_errors if e.startswith(("ArcCycle", "SublayerCycle"))][:20],
        # Every prim an internal arc brings in: definitions, never copies (complete, not capped).
        "internal_reference_targets": sorted(totals.definitions),
        "bound_errors": totals.bound_errors[:20],
        "collection_seconds": round(time.perf_counter() - started, 3),
    }
