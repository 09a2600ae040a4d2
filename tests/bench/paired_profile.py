"""What the paired after-profile costs (Phase 6a): the source and the output captured together,
interleaved, against the single after-profile capture it replaced (one fresh process, cold
open, warm-up, five warm opens of the output alone).

    python tests/bench/paired_profile.py --prims 100000 [--runs 3]

Runs usdtune optimize (optimize-as-is) on the generated factory once for its output and its
real Phase 6a figures, then times, in the same sitting and interleaved (single, paired,
single, paired, ...), a single capture of the output and a 7-round paired profile. Prints
medians, the spread (min–max) and their ratio.

    python tests/bench/paired_profile.py --prims 100000 --against REV [--kind scatter]

times this tree's paired profile against revision REV's (its executor package exported from
git), interleaved, a fresh process each, and prints both medians and the per-run ratio.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

from common import REPO, USDTUNE, factory, host, scene

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


def paired_in(package_dir, source, output, rounds) -> float:
    """The paired profile run by the executor package in `package_dir`, in a fresh process."""
    code = ("import sys, time\nsys.path.insert(0, sys.argv[1])\nfrom usdtune_executor.tasks import profile_pair\n"
            "class Q:\n    def progress(self, *_): pass\n"
            "t = time.perf_counter()\n"
            "profile_pair.run({'baseline': sys.argv[2], 'output': sys.argv[3], 'rounds': int(sys.argv[4])}, Q())\n"
            "print(time.perf_counter() - t)\n")
    done = subprocess.run([sys.executable, "-c", code, str(package_dir), str(source), str(output), str(rounds)],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def against(revision, source, output, args):
    """This tree's paired profile against `revision`'s, interleaved (A B, B A, ...)."""
    with tempfile.TemporaryDirectory(prefix="usdtune-rev-") as scratch:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, "kit-extension/usdtune.executor"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", scratch], input=archive, check=True)
        trees = {revision: f"{scratch}/kit-extension/usdtune.executor",
                 "this tree": str(REPO / "kit-extension" / "usdtune.executor")}
        times = {name: [] for name in trees}
        for run in range(args.runs):
            for name in (list(trees) if run % 2 == 0 else list(trees)[::-1]):
                times[name].append(paired_in(trees[name], source, output, args.rounds))
    ratios = [b / a for a, b in zip(times[revision], times["this tree"])]
    for name, values in times.items():
        print(f"{name:>10}: median {statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})")
    print(f"ratio this tree / {revision}: median {statistics.median(ratios):.3f} "
          f"(per run {min(ratios):.3f}–{max(ratios):.3f}, {args.runs} runs interleaved)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prims", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--kind", default="factory", help="factory, hall, scatter, composed")
    parser.add_argument("--against", metavar="REV", help="time this tree's paired profile against REV's")
    args = parser.parse_args()
    source = factory(args.prims) if args.kind == "factory" else scene(args.kind, args.prims)
    out = REPO / "bench" / "tmp" / f"paired-{args.kind}-{args.prims}"
    if not (args.against and (out / "run.json").is_file()):
        subprocess.run(["rm", "-rf", str(out)], check=True)
        subprocess.run([str(USDTUNE), "optimize", str(source), "-o", str(out), "--restructure", "optimize-as-is",
                        "--json"], capture_output=True, text=True)
    summary = json.loads((out / "run.json").read_text())
    summary["output_path"] = summary["output_stage_path"]
    if args.against:
        print(f"# paired profile on {args.kind}-{args.prims}, this tree against {args.against} ({host()})")
        return against(args.against, source, summary["output_path"], args)
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
