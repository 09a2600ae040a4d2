"""pruneLeaves under a flat parent: the executor's operations task with its flat-parent fast
path (usd/flat_prune.py) against the op alone, on the chain Phase 4 runs on a scatter
(deduplicateGeometry as a point instancer → computeExtents → pruneLeaves: the dedupe leaves
one empty Xform per copy under /World).

    python tests/bench/flat_prune.py --prims 100000 [--runs 3]

Interleaved (A B, B A, ...), a fresh process each; prints each side's pruneLeaves seconds and
task wall (medians, min–max), the per-run ratio, and checks the two outputs are identical.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, host, scene

RUN = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from usdtune_executor.tasks import operations
class Quiet:
    def progress(self, *_): pass
chain = [{"operation": "deduplicateGeometry", "args": {"tolerance": 1e-4, "duplicateMethod": 4,
          "minimumDuplicates": 2, "pointInstancerLocation": 0, "considerDeepTransforms": False}},
         {"operation": "computeExtents", "args": {}},
         {"operation": "pruneLeaves", "args": {"pruneMode": 1, "preserveUnloadedPayloads": True}}]
started = time.perf_counter()
result = operations.run({"stage_path": sys.argv[2], "output_path": sys.argv[3], "operations": chain,
                         "no_flat_prune": sys.argv[4] == "op-alone"}, Quiet())
print(json.dumps({"wall": time.perf_counter() - started, "prune": result["operations"][-1]["seconds"]}))
"""


def once(stage: Path, output: Path, side: str) -> dict:
    done = subprocess.run([sys.executable, "-c", RUN, str(REPO / "kit-extension" / "usdtune.executor"), str(stage),
                           str(output), side], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prims", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    stage = scene("scatter", args.prims)
    sides = ("fast path", "op-alone")
    times = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="usdtune-flat-") as scratch:
        outputs = {side: Path(scratch) / f"{side.replace(' ', '-')}.usdc" for side in sides}
        for run in range(args.runs):
            for side in (sides if run % 2 == 0 else sides[::-1]):
                times[side].append(once(stage, outputs[side], side))
        from pxr import Sdf
        same = len({Sdf.Layer.FindOrOpen(str(path)).ExportToString() for path in outputs.values()}) == 1
    print(f"# pruneLeaves on scatter-{args.prims}: fast path against the op alone ({host()})")
    for side in sides:
        for key in ("prune", "wall"):
            values = [t[key] for t in times[side]]
            print(f"{side:>10} {key:>5}: median {statistics.median(values):.2f} s "
                  f"(min {min(values):.2f}, max {max(values):.2f})")
    ratios = [a["wall"] / b["wall"] for a, b in zip(times["fast path"], times["op-alone"])]
    print(f"task wall fast / op alone: median {statistics.median(ratios):.3f} "
          f"(per run {min(ratios):.3f}–{max(ratios):.3f}, {args.runs} runs interleaved); outputs identical: {same}")
    if not same:
        raise SystemExit("the fast path's output differs from the op's")


if __name__ == "__main__":
    main()
