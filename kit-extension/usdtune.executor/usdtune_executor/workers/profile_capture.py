"""One quick-mode profile capture, meant to run as its own process.

Protocol (upstream profile-stage): one first open (cold_open_ms), one unreported warmup,
then N >= 5 warm opens whose median is warm_open_ms, with the spread; then traversal,
attribute resolution and transform timings on one opened stage, and stage statistics.
Prints one JSON document on the last stdout line.
"""
import argparse
import gc
import json
import sys
import time
from statistics import median


def _ms(seconds):
    return round(seconds * 1000.0, 3)


def capture(stage_path: str, warm_samples: int) -> dict:
    from pxr import Usd, UsdGeom

    from ..usd.stage import is_prototype_path, open_stage, total_file_bytes, used_layer_paths

    def open_once():
        started = time.perf_counter()
        stage, _ = open_stage(stage_path)
        elapsed = time.perf_counter() - started
        del stage
        gc.collect()
        return elapsed

    cold = open_once()
    open_once()  # warmup, not reported
    warm = [open_once() for _ in range(max(5, warm_samples))]
    warm_median = median(warm)

    stage, composition_errors = open_stage(stage_path)
    repeats = 5
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("stage")
    parser.add_argument("--warm", type=int, default=5)
    args = parser.parse_args(argv)
    from ..errors import TaskError

    try:
        result = capture(args.stage, args.warm)
    except TaskError as err:
        print(json.dumps({"error": {"code": err.code, "message": err.message}}))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
