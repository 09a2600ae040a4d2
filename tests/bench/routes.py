"""The route table: every branch usdtune offers and usd-optimize's lossless hand route, on
one scene, side by side (open ratio, prims, bytes, wall seconds).

    python tests/bench/routes.py --scene factory --prims 10000 [--rounds 7]
    python tests/bench/routes.py --scene hall --prims 9000
    python tests/bench/routes.py --scene scatter --copies 3000

Each usdtune route is a full `usdtune optimize --restructure BRANCH` run; the hand route is
deduplicateHierarchies → meshCleanup → deduplicateGeometry → computeExtents in one process.
Then, in one sitting, every output and the source are opened and traversed in a fresh
process each, round-robin (the order rotating every round), `--rounds` times: a route's open
ratio is the median over rounds of its time over the source's in the same round, with the
range. Bytes are every layer the output uses; prims are composed prims with instance proxies.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, USDTUNE, data_dir, factory, host

BRANCHES = ["optimize-as-is", "deduplicate-internally", "extract-as-assets"]
HAND_ROUTE = REPO / "tests" / "test_routes.py"
MEASURE = '''
import sys, time
from pxr import Usd
started = time.perf_counter()
stage = Usd.Stage.Open(sys.argv[1])
prims = sum(1 for _ in Usd.PrimRange.Stage(stage, Usd.TraverseInstanceProxies()))
ms = (time.perf_counter() - started) * 1000
import os
size = sum(os.path.getsize(l.realPath) for l in stage.GetUsedLayers() if l.realPath)
print(ms, prims, size)
'''


def hand_route_code() -> str:
    """The hand route as the route test runs it (one definition)."""
    text = HAND_ROUTE.read_text()
    return text.split("HAND_ROUTE = '''", 1)[1].split("'''", 1)[0]


def scene(args) -> Path:
    if args.scene == "factory":
        return factory(args.prims)
    name = f"{args.scene}-{args.prims if args.scene == 'hall' else args.copies}.usdc"
    path = data_dir() / "bench" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        script = {"hall": "generate_hall.py", "scatter": "generate_scatter.py"}[args.scene]
        size = ["--prims", str(args.prims)] if args.scene == "hall" else ["--copies", str(args.copies)]
        subprocess.run([sys.executable, str(REPO / "fixtures" / script), str(path), *size], check=True)
    return path


def measure(path) -> tuple:
    done = subprocess.run([sys.executable, "-c", MEASURE, str(path)], check=True, capture_output=True, text=True)
    ms, prims, size = done.stdout.split()
    return float(ms), int(prims), int(size)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--scene", choices=["factory", "hall", "scatter"], default="factory")
    parser.add_argument("--prims", type=int, default=10_000)
    parser.add_argument("--copies", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    source = scene(args)
    work = REPO / "bench" / "tmp" / f"routes-{source.stem}"
    subprocess.run(["rm", "-rf", str(work)], check=True)
    work.mkdir(parents=True)
    outputs, walls, notes = {}, {}, {}
    for branch in BRANCHES:
        started = time.perf_counter()
        done = subprocess.run([str(USDTUNE), "optimize", str(source), "-o", str(work / branch), "--restructure", branch,
                               "--json"], capture_output=True, text=True)
        walls[branch] = time.perf_counter() - started
        summary = json.loads(done.stdout) if done.stdout.strip() else {}
        notes[branch] = f"{summary.get('verdict')}, exit {done.returncode}" + (
            f", {summary.get('code')}" if summary.get("code") else "")
        if summary.get("output_path"):
            outputs[branch] = summary["output_path"]
    started = time.perf_counter()
    hand = work / "hand.usdc"
    subprocess.run([sys.executable, "-c", hand_route_code(), str(source), str(hand)], check=True, capture_output=True)
    walls["hand"], outputs["hand"], notes["hand"] = time.perf_counter() - started, str(hand), "usd-optimize by hand"

    names = ["source"] + list(outputs)
    paths = {"source": str(source), **outputs}
    timings = {name: [] for name in names}
    facts = {}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            ms, prims, size = measure(paths[name])
            timings[name].append(ms)
            facts[name] = (prims, size)
    print(f"# routes on {source.name} ({host()}), {args.rounds} rounds, one sitting")
    print("| route | open ratio (median, range) | prims | bytes | wall s | note |")
    print("|---|---:|---:|---:|---:|---|")
    for name in names:
        ratios = [a / b for a, b in zip(timings[name], timings["source"])]
        print(f"| {name} | {statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}) | {facts[name][0]:,} | "
              f"{facts[name][1]:,} | {walls.get(name, 0):.1f} | {notes.get(name, '')} |")
    source_ms = statistics.median(timings["source"])
    print(f"\nsource open + traverse: median {source_ms:.1f} ms")


if __name__ == "__main__":
    main()
