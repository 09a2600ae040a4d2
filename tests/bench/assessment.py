"""Benchmark: structure assessment of a generated factory (default 100,000 prims, ~50,000 meshes).

Prints, per run and as medians, the executor's fact-collection time (open, walk, stream the
prim table) and the daemon's decision time (rebuild the table, groups, frontier, containment,
classification), against the goal of both together within 10 s on 2 cores.

    python tests/bench/assessment.py [--prims 100000] [--runs 3]

Run it with the executor environment's Python (`usdtune setup --print-python`); the factory is
generated once per size into the usdtune data dir and reused.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import USDTUNE, factory

GOAL_SECONDS = 10.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prims", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    stage = factory(args.prims, args.seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="usdtune-bench-") as scratch:
        for run in range(args.runs):
            out = Path(scratch) / f"run{run}"
            started = time.perf_counter()
            done = subprocess.run([str(USDTUNE), "assess", str(stage), "-o", str(out), "--json"],
                                  capture_output=True, text=True)
            wall = time.perf_counter() - started
            if done.returncode != 0:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            assessment = json.loads((out / "structure-assessment.json").read_text())
            facts = json.loads((out / "stage-facts.json").read_text())
            timing = assessment["timing"]
            rows.append((timing["fact_collection_seconds"], timing["decision_seconds"], wall))
            print(f"run {run + 1}: facts {timing['fact_collection_seconds']:.2f} s (executor, "
                  f"{facts['prim_table']['walk_processes']} walk processes), decisions "
                  f"{timing['decision_seconds']:.2f} s (daemon), command wall {wall:.2f} s")
    counts = facts["counts"]
    collect = statistics.median(r[0] for r in rows)
    decide = statistics.median(r[1] for r in rows)
    wall = statistics.median(r[2] for r in rows)
    print(f"stage: {stage.name}: {counts['prim_count']} prims, {counts['mesh_count']} meshes; "
          f"{assessment['classification']['kind']}, {len(assessment['hierarchy_dedupe']['top_candidates'])} top groups")
    print(f"median of {len(rows)}: facts {collect:.2f} s + decisions {decide:.2f} s = {collect + decide:.2f} s "
          f"(goal {GOAL_SECONDS:.0f} s: {(collect + decide) / GOAL_SECONDS:.2f} of it); command wall {wall:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
