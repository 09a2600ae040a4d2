"""What the paired after-profile costs (Phase 6a): the source and the output captured together,
interleaved, against the single after-profile capture it replaced (one fresh process, cold
open, warm-up, five warm opens of the output alone).

    python tests/bench/paired_profile.py --prims 100000 [--runs 3]

Runs usdtune optimize (optimize-as-is) on the generated factory once for its output and its
real Phase 6a figures, then times, in the same sitting and interleaved (single, paired,
single, paired, ...), a single capture of the output and a 7-round paired profile. Prints
medians, the spread (min–max) and their ratio.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

from common import REPO, USDTUNE, factory, host

sys.path.insert(0, str(REPO / "kit-extension" / "usdtune.executor"))


class _Quiet:
    def progress(self, *_):
        pass


def single_capture(output) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "usdtune_executor.workers.profile_capture", str(output), "--warm", "5"],
                   check=True, capture_output=True, cwd=REPO / "kit-extension" / "usdtune.executor")
    return time.perf_counter() - started


def paired(source, output, rounds) -> float:
    from usdtune_executor.tasks import profile_pair

    started = time.perf_counter()
    profile_pair.run({"baseline": str(source), "output": str(output), "rounds": rounds}, _Quiet())
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prims", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    source = factory(args.prims)
    out = REPO / "bench" / "tmp" / f"paired-{args.prims}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    done = subprocess.run([str(USDTUNE), "optimize", str(source), "-o", str(out), "--restructure", "optimize-as-is",
                           "--json"], capture_output=True, text=True)
    summary = json.loads(done.stdout)
    run = json.loads((out / "run.json").read_text())
    phase = next(p for p in run["phases"] if p["milestone"] == "profile-stage:after")
    pair = json.loads((out / "profile-pair.json").read_text())
    comparison = json.loads((out / "compare-profiles.json").read_text())
    print(f"# paired after-profile on factory-{args.prims} ({host()})")
    print(f"run: verdict {summary['verdict']}, Phase 6a {phase['seconds']} s (6a + 6b validation), "
          f"paired profile {pair['seconds']} s over {pair['rounds']} rounds ({pair['process']}); "
          f"{sum(1 for m in comparison['metrics'] if not m['conclusive'])} metric(s) inconclusive")
    output = summary["output_path"]
    singles, pairs = [], []
    for _ in range(args.runs):
        singles.append(single_capture(output))
        pairs.append(paired(source, output, args.rounds))
    s, p = statistics.median(singles), statistics.median(pairs)
    print(f"single after-profile of the output: median {s:.2f} s (min {min(singles):.2f}, max {max(singles):.2f})")
    print(f"paired profile, {args.rounds} rounds:      median {p:.2f} s (min {min(pairs):.2f}, max {max(pairs):.2f})")
    print(f"ratio paired / single: {p / s:.1f}× (runs {args.runs}, interleaved)")


if __name__ == "__main__":
    main()
