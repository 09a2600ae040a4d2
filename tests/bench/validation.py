"""Benchmark: validation wall time per tier on the generated factory (goal: every tier the
plan selects in <= 30 s on 100k prims / ~46k meshes, 2 cores).

Two postures of the same geometry: the factory as written (a monolith: the assessment says
`structuring`, so Phase 2c runs the structural blockers only) and the factory behind a root
layer that sublayers it (composed: `optimization`, so 2c runs the whole Tier 1 set). Each run
is the real main job, stopped once Phase 4's validation has been interpreted, which is all
validation needs; the mesh operations that follow are pipeline.py's concern.

Prints medians of the runs: minimum openability, Tier 1 (2c), Tier 2 and Tier 3 (Phase 4),
each phase's wall time and their sum.

    python tests/bench/validation.py [--prims 100000] [--runs 3]
"""
import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from common import factory, optimize_until



def composed_wrapper(stage: Path) -> Path:
    wrapper = stage.with_name(stage.stem + ".composed.usda")
    if not wrapper.exists():
        wrapper.write_text(f'#usda 1.0\n(\n    subLayers = [@./{stage.name}@]\n)\n')
    return wrapper


def run_once(stage: Path, out: Path) -> dict:
    read = optimize_until(stage, out, "optimize-as-is", "so-interpret-validators")
    phases = {p["milestone"]: p["seconds"] for p in read("run")["phases"]}
    stage_report, target_report = read("validation-report"), read("validation-report-targets")
    tiers = {**stage_report["runtime_context"]["tier_wall_seconds"], **target_report["runtime_context"]["tier_wall_seconds"]}
    return {
        "openability": stage_report["runtime_context"]["openability_seconds"] or 0.0,
        "tier1": tiers.get("tier1", 0.0), "tier2": tiers.get("tier2", 0.0), "tier3": tiers.get("tier3", 0.0),
        "2c": phases["usd-validation-runner"], "4": phases["so-run-validators"],
        "concepts": (len(read("validation-scope-note")["concepts"]), len(read("validation-scope-note-targets")["concepts"])),
        "ledger": len(stage_report["coverage_ledger"]["entries"]) + len(target_report["coverage_ledger"]["entries"]),
        "posture": read("structure-assessment")["phase_recommendation"],
        "classes": read("geometry-classes"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prims", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    stage = factory(args.prims)
    for label, path in (("monolith", stage), ("composed", composed_wrapper(stage))):
        with tempfile.TemporaryDirectory(prefix="usdtune-bench-") as scratch:
            runs = [run_once(path, Path(scratch) / f"run{k}") for k in range(args.runs)]
        med = lambda key: statistics.median(r[key] for r in runs)
        first = runs[0]
        print(f"\n== {label} factory {args.prims:,} prims ({first['classes']['mesh_count']:,} meshes in "
              f"{first['classes']['class_count']:,} geometry classes): posture {first['posture']}, "
              f"concepts 2c/Phase 4 {first['concepts'][0]}/{first['concepts'][1]}, {first['ledger']} ledger entries; "
              f"median of {len(runs)} runs")
        print(f"{'':28} {'wall s':>8}")
        for key, name in (("openability", "minimum openability"), ("tier1", "Tier 1 (whole stage)"),
                          ("2c", "Phase 2c"), ("tier2", "Tier 2 (per target)"), ("tier3", "Tier 3 (flagged pairs)"),
                          ("4", "Phase 4 validation")):
            print(f"{name:28} {med(key):8.2f}")
        print(f"{'all tiers (2c + Phase 4)':28} {statistics.median(r['2c'] + r['4'] for r in runs):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
