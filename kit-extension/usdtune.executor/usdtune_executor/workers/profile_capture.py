"""Quick-mode profile captures, each in a process of its own.

Two protocols (upstream profile-stage):
  * single (Phase 1a): one first open (cold_open_ms), one unreported warmup, then N >= 5 warm
    opens whose median is warm_open_ms, with the spread; then traversal (the mean of up to 5
    repeats within 2 s), attribute resolution and transform timings on one opened stage, and
    stage statistics.
    `python -m usdtune_executor.workers.profile_capture STAGE --warm N` prints one JSON
    document on the last stdout line.
  * paired (Phase 6a, tasks/profile_pair.py): one sample per process: a first open, one warm
    open, one traversal, attribute resolution and transforms (each short one repeated as often
    as the pair says, the fastest kept); many processes, the two stages interleaved. `--serve`
    keeps one interpreter with pxr imported (no stage ever opened in it) and forks a child per
    capture: a fresh process without USD's caches, at the cost of a
    fork instead of an interpreter start (about 0.6 s each on these machines).
"""
import argparse
import gc
import importlib
import json
import os
import random
import sys
import time
from statistics import median


# Above this many authored prims a capture resolves attributes and transforms on a seeded
# random sample of them and scales the time to the whole: on the 100k factories that is 0.75 s
# instead of 3.6 s a capture, within 7 % of the full figure (a stride sample is not: it lands
# on one prim type of a regular scene, +45 %); on the 1M hall it saved 30 s of the baseline.
# The attribute count stays exact (counted on every prim when counts are asked for).
SAMPLE_PRIMS = 20_000
# The single protocol averages up to 5 traversals, as many as fit this budget (at least one):
# a million-prim traversal takes 3 s, and five of each kind cost 30 s of the 1M baseline.
TRAVERSE_BUDGET_S = 2.0
# The timings a paired round may repeat (tasks/profile_pair.py says how often).
REPEATABLE = ("open", "traverse", "attributes", "transforms")


def _ms(seconds):
    return round(seconds * 1000.0, 3)


def _fastest(measure, times: int):
    """The fastest of `times` calls of `measure()`; returns (seconds, what the last call
    returned)."""
    best, value = measure()
    for _ in range(times - 1):
        elapsed, value = measure()
        best = min(best, elapsed)
    return best, value


def _mean_within(work, budget_s: float, most: int = 5):
    """The mean seconds of `work()` repeated while the repeats fit `budget_s` (at least once,
    at most `most`), and what the last call returned."""
    started = time.perf_counter()
    value, count = work(), 1
    while count < most and (time.perf_counter() - started) * (count + 1) / count < budget_s:
        value, count = work(), count + 1
    return (time.perf_counter() - started) / count, value


def _timed(work):
    def measure():
        started = time.perf_counter()
        value = work()
        return time.perf_counter() - started, value
    return measure


def capture(stage_path: str, warm_samples: int, paired: bool = False, counts: bool = True,
            repeats: dict | None = None) -> dict:
    """One capture. `paired` is one sample of the paired protocol (a first open, a warm open,
    one of each timing, or the fastest of `repeats[timing]`); `counts` off skips what only the
    exact counts need (a measured paired round: the warm-up round took them). Attribute
    resolution and transforms are timed on a sample of a large stage's prims."""
    from pxr import Usd, UsdGeom

    from ..usd.stage import is_prototype_path, open_stage, total_file_bytes, used_layer_paths

    times = {name: max(1, int((repeats or {}).get(name, 1))) for name in REPEATABLE}

    def open_once():
        started = time.perf_counter()
        stage, _ = open_stage(stage_path, composition=False)
        return time.perf_counter() - started, stage

    def open_and_drop():
        elapsed, stage = open_once()
        del stage
        gc.collect()
        return elapsed

    cold = open_and_drop()
    if paired:
        # The last warm open's stage is the one measured next: one open fewer per round. Each
        # repeat drops its stage first (an open while another stage holds the layers skips
        # reading them).
        warm_s, stage = open_once()
        for _ in range(times["open"] - 1):
            del stage
            gc.collect()
            elapsed, stage = open_once()
            warm_s = min(warm_s, elapsed)
        warm = [warm_s]
    else:
        open_and_drop()  # warmup, not reported
        warm = [open_and_drop() for _ in range(max(5, warm_samples))]
        stage = None
    warm_median = median(warm)

    if stage is None:
        stage, composition_errors = open_stage(stage_path)
    else:
        composition_errors = []
    if paired:
        traverse, authored = _fastest(_timed(lambda: [p for p in stage.Traverse()
                                                      if not is_prototype_path(p.GetPath())]), times["traverse"])
        traverse_full, everything = _fastest(_timed(lambda: list(stage.Traverse())), times["traverse"])
    else:
        traverse, authored = _mean_within(lambda: [p for p in stage.Traverse() if not is_prototype_path(p.GetPath())],
                                          TRAVERSE_BUDGET_S)
        traverse_full, everything = _mean_within(lambda: list(stage.Traverse()), TRAVERSE_BUDGET_S)

    measured = authored
    if len(authored) > SAMPLE_PRIMS:
        picked = sorted(random.Random(0).sample(range(len(authored)), SAMPLE_PRIMS))
        measured = [authored[i] for i in picked]
    scale = len(authored) / len(measured) if measured else 1.0

    def resolve():
        resolved = 0
        for prim in measured:
            for attr in prim.GetAttributes():
                attr.Get()
                resolved += 1
        return resolved

    resolve_s, attribute_count = _fastest(_timed(resolve), times["attributes"])

    def transforms():
        cache = UsdGeom.XformCache()
        for prim in measured:
            if prim.IsA(UsdGeom.Xformable):
                cache.GetLocalToWorldTransform(prim)

    xform_s, _ = _fastest(_timed(transforms), times["transforms"])

    document = {
        "stage_path": stage_path,
        "cold_open_ms": _ms(cold),
        "warm_open_ms": _ms(warm_median),
        "warm_open_samples_ms": [_ms(s) for s in warm],
        "warm_open_sample_count": len(warm),
        "warm_open_spread_pct": round((max(warm) - min(warm)) / warm_median * 100.0, 2) if warm_median else 0.0,
        "open_timing_context": "fresh_process",
        "traverse_ms": _ms(traverse),
        "traverse_full_ms": _ms(traverse_full),
        "attribute_resolution_ms": _ms(resolve_s * scale),
        "transform_ms": _ms(xform_s * scale),
        "prim_count": len(everything),
        "prim_count_authored": len(authored),
        "composition_errors": composition_errors[:20],
    }
    if measured is not authored:
        document["timing_sample"] = {"prims": len(measured), "of": len(authored), "seed": 0}
    if counts:
        prototypes = stage.GetPrototypes()
        document.update({
            "prim_count_with_instance_proxies": sum(1 for _ in stage.Traverse(Usd.TraverseInstanceProxies())),
            "layer_count": len(stage.GetUsedLayers()),
            "instance_count": sum(len(p.GetInstances()) for p in prototypes),
            "prototype_count": len(prototypes),
            "total_attributes": attribute_count if measured is authored else
            sum(len(prim.GetAttributes()) for prim in authored),
            "total_size_bytes": total_file_bytes(used_layer_paths(stage)),
        })
    return document


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
                    document = capture(request["stage"], 1, paired=True, counts=request.get("counts", True),
                                       repeats=request.get("repeats"))
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
    parser.add_argument("--timings-only", action="store_true",
                        help="a measured paired round: no exact counts, large stages sampled")
    parser.add_argument("--repeat", action="append", default=[], metavar="TIMING=N",
                        help="a paired round's timing repeated N times, the fastest kept")
    parser.add_argument("--serve", action="store_true", help="fork a child per capture request read from stdin")
    args = parser.parse_args(argv)
    if args.serve:
        return serve()
    from ..errors import TaskError

    try:
        repeats = {name: int(times) for name, times in (flag.split("=", 1) for flag in args.repeat)}
        result = capture(args.stage, args.warm, paired=args.paired, counts=not args.timings_only, repeats=repeats)
    except TaskError as err:
        print(json.dumps(_error(err)))
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
