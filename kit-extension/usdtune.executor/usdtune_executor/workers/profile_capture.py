"""Quick-mode profile captures, each in a process of its own.

Two protocols (upstream profile-stage):
  * single (Phase 1a): one first open (cold_open_ms), one unreported warmup, then N >= 5 warm
    opens whose median is warm_open_ms, with the spread; then traversal (5 repeats), attribute
    resolution and transform timings on one opened stage, and stage statistics.
    `python -m usdtune_executor.workers.profile_capture STAGE --warm N` prints one JSON
    document on the last stdout line.
  * paired (Phase 6a, tasks/profile_pair.py): one sample per process: a first open, one warm
    open, one traversal, attribute resolution and transforms; many processes, the two stages
    interleaved. `--serve` keeps one interpreter with pxr imported (no stage ever opened in
    it) and forks a child per capture: a fresh process without USD's caches, at the cost of a
    fork instead of an interpreter start (about 0.6 s each on these machines).
"""
import argparse
import gc
import importlib
import json
import os
import sys
import time
from statistics import median


def _ms(seconds):
    return round(seconds * 1000.0, 3)


def capture(stage_path: str, warm_samples: int, paired: bool = False) -> dict:
    from pxr import Usd, UsdGeom

    from ..usd.stage import is_prototype_path, open_stage, total_file_bytes, used_layer_paths

    def open_once(keep=False):
        started = time.perf_counter()
        stage, _ = open_stage(stage_path, composition=False)
        elapsed = time.perf_counter() - started
        if keep:
            return elapsed, stage
        del stage
        gc.collect()
        return elapsed

    cold = open_once()
    if paired:
        # The warm open's stage is the one measured next: one open fewer per round.
        elapsed, stage = open_once(keep=True)
        warm = [elapsed]
    else:
        open_once()  # warmup, not reported
        warm = [open_once() for _ in range(max(5, warm_samples))]
        stage = None
    warm_median = median(warm)

    if stage is None:
        stage, composition_errors = open_stage(stage_path)
    else:
        composition_errors = []
    repeats = 1 if paired else 5
    started = time.perf_counter()
    for _ in range(repeats):
        authored = [p for p in stage.Traverse() if not is_prototype_path(p.GetPath())]
    traverse = (time.perf_counter() - started) / repeats
    started = time.perf_counter()
    for _ in range(repeats):
        everything = list(stage.Traverse())
    traverse_full = (time.perf_counter() - started) / repeats
    with_proxies = sum(1 for _ in stage.Traverse(Usd.TraverseInstanceProxies()))

    started = time.perf_counter()
    attribute_count = 0
    for prim in authored:
        for attr in prim.GetAttributes():
            attr.Get()
            attribute_count += 1
    resolve = time.perf_counter() - started

    cache = UsdGeom.XformCache()
    started = time.perf_counter()
    for prim in authored:
        if prim.IsA(UsdGeom.Xformable):
            cache.GetLocalToWorldTransform(prim)
    xform = time.perf_counter() - started

    prototypes = stage.GetPrototypes()
    layers = used_layer_paths(stage)
    return {
        "stage_path": stage_path,
        "cold_open_ms": _ms(cold),
        "warm_open_ms": _ms(warm_median),
        "warm_open_samples_ms": [_ms(s) for s in warm],
        "warm_open_sample_count": len(warm),
        "warm_open_spread_pct": round((max(warm) - min(warm)) / warm_median * 100.0, 2) if warm_median else 0.0,
        "open_timing_context": "fresh_process",
        "traverse_ms": _ms(traverse),
        "traverse_full_ms": _ms(traverse_full),
        "attribute_resolution_ms": _ms(resolve),
        "transform_ms": _ms(xform),
        "prim_count": len(everything),
        "prim_count_authored": len(authored),
        "prim_count_with_instance_proxies": with_proxies,
        "layer_count": len(stage.GetUsedLayers()),
        "instance_count": sum(len(p.GetInstances()) for p in prototypes),
        "prototype_count": len(prototypes),
        "total_attributes": attribute_count,
        "total_size_bytes": total_file_bytes(layers),
        "composition_errors": composition_errors[:20],
    }


def _error(err) -> dict:
    return {"error": {"code": err.code, "message": err.message}}


def serve() -> int:
    """Answer capture requests (JSON lines: {"stage", "result"}) with a forked child each;
    the child writes its capture (or its error) to `result`, the answer line says how it
    exited. A child that dies leaves no result: the task reports it."""
    from ..errors import TaskError

    # pxr is imported here, once; no stage is ever opened in this process.
    for module in ("pxr.Usd", "pxr.UsdGeom", "pxr.UsdShade"):
        importlib.import_module(module)

    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # USD and usd-optimize log through C++ to fd 1
    answers.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 3
            try:
                try:
                    document = capture(request["stage"], 1, paired=True)
                    code = 0
                except TaskError as err:
                    document, code = _error(err), 2
                with open(request["result"], "w") as handle:
                    json.dump(document, handle)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        answers.write(json.dumps({"exit": os.waitstatus_to_exitcode(status)}) + "\n")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage", nargs="?")
    parser.add_argument("--warm", type=int, default=5)
    parser.add_argument("--paired", action="store_true", help="one sample: a first open and one warm open")
    parser.add_argument("--serve", action="store_true", help="fork a child per capture request read from stdin")
    args = parser.parse_args(argv)
    if args.serve:
        return serve()
    from ..errors import TaskError

    try:
        result = capture(args.stage, args.warm, paired=args.paired)
    except TaskError as err:
        print(json.dumps(_error(err)))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
