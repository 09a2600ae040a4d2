"""Benchmark: the main job (`usdtune optimize --restructure optimize-as-is`) on generated
scenes at several scales: factories, halls, scattered copies and composed sets.

Per phase it prints wall time, CPU time and peak RSS of the daemon and of the executor
(medians of the runs), then the stage-level results: prims, meshes, file size and warm open
time before/after with their ratios, and the whole run's wall over a bare open + traverse +
export of the same stage in one process (the goal at 100k prims: at most 40x). Every run
appends one row per phase to docs/bench/history.csv (scale `kind:prims` for other scenes than
the factory), so figures can be compared across commits.

    python tests/bench/pipeline.py [--kinds factory,hall,scatter,composed] [--scales 10000,100000] [--runs 3]

Run it with the executor environment's Python (`usdtune setup --print-python`).
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import USDTUNE, append_history, bare_seconds, host, scene


def run_once(stage: Path, out: Path) -> dict:
    started = time.perf_counter()
    done = subprocess.run([str(USDTUNE), "optimize", str(stage), "-o", str(out), "--restructure", "optimize-as-is",
                           "--json"], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"usdtune optimize failed ({done.returncode}):\n{done.stderr[-3000:]}")
    read = lambda name: json.loads((out / f"{name}.json").read_text()) if (out / f"{name}.json").exists() else {}
    return {"wall": wall, "run": read("run"), "facts": read("stage-facts"), "before": read("profile-baseline"),
            "after": read("profile-after"), "compare": read("compare-profiles"), "exit": done.returncode}


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def report(kind: str, scale: int, runs: list, bare: float) -> list:
    rows, info = [], host()
    phases = [p["milestone"] for p in runs[0]["run"]["phases"]]
    label = scale if kind == "factory" else f"{kind}:{scale}"
    print(f"\n== {kind} {scale:,} prims: {runs[0]['facts']['counts']['prim_count']:,} prims, "
          f"{runs[0]['facts']['counts']['mesh_count']:,} meshes; median of {len(runs)} runs")
    print(f"{'phase':34} {'wall s':>8} {'daemon cpu s':>13} {'daemon MB':>10} {'exec cpu s':>11} {'exec MB':>9}")
    for name in phases:
        records = [next(p for p in r["run"]["phases"] if p["milestone"] == name) for r in runs]
        if all(p["status"] == "skipped" for p in records):
            print(f"{name:34} {'skipped':>8}")
            continue
        usage = lambda key: median(p.get("usage", {}).get(key) for p in records)
        print(f"{name:34} {median(p['seconds'] for p in records):8.2f} {usage('daemon_cpu_seconds'):13.2f} "
              f"{usage('daemon_peak_rss_mb'):10.0f} {usage('executor_cpu_seconds'):11.2f} {usage('executor_peak_rss_mb'):9.0f}")
        for run_index, p in enumerate(records):
            rows.append({**info, "scale": label, "run": run_index, "phase": name, "status": p["status"],
                         "wall_s": p["seconds"], **{k: (p.get("usage") or {}).get(k, "") for k in (
                             "daemon_cpu_seconds", "daemon_peak_rss_mb", "executor_cpu_seconds", "executor_peak_rss_mb")},
                         "prims": runs[run_index]["facts"]["counts"]["prim_count"],
                         "meshes": runs[run_index]["facts"]["counts"]["mesh_count"],
                         "bytes_before": runs[run_index]["before"].get("total_size_bytes", ""),
                         "bytes_after": runs[run_index]["after"].get("total_size_bytes", ""),
                         "warm_open_ms_before": runs[run_index]["before"].get("warm_open_ms", ""),
                         "warm_open_ms_after": runs[run_index]["after"].get("warm_open_ms", "")})
    for r in runs:
        if r["run"].get("state") != "completed" or r["run"].get("code"):
            print(f"run ended {r['run'].get('state')}: {r['run'].get('code')}: {r['run'].get('message')}")
    total = median(r["wall"] for r in runs)
    size0, size1 = median(r["before"].get("total_size_bytes") for r in runs), median(r["after"].get("total_size_bytes") for r in runs)
    open0, open1 = median(r["before"].get("warm_open_ms") for r in runs), median(r["after"].get("warm_open_ms") for r in runs)
    print(f"{'whole command':34} {total:8.2f}   ({total / bare:.1f}x a bare open + traverse + export, {bare:.2f} s)")
    print(f"file size {size0:,.0f} → {size1:,.0f} bytes (after/before {size1 / size0:.2f}); "
          f"warm open {open0:.1f} → {open1:.1f} ms (after/before {open1 / open0:.2f}); "
          f"verdicts {sorted({r['compare'].get('verdict', '?') for r in runs})}")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default="factory", help="comma-separated: factory, hall, scatter, composed")
    parser.add_argument("--scales", default="10000,100000", help="comma-separated prim counts")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-history", action="store_true", help="do not append to docs/bench/history.csv")
    args = parser.parse_args()
    history = []
    for kind in args.kinds.split(","):
        for scale in (int(s) for s in args.scales.split(",")):
            stage = scene(kind, scale)
            bare = statistics.median(bare_seconds(stage) for _ in range(3))
            with tempfile.TemporaryDirectory(prefix="usdtune-bench-") as scratch:
                runs = [run_once(stage, Path(scratch) / f"run{k}") for k in range(args.runs)]
            history += report(kind, scale, runs, bare)
    if not args.no_history:
        append_history(history)
    return 0


if __name__ == "__main__":
    sys.exit(main())
