"""Restructure benchmark: what each dedupe materialization does to a generated monolithic
factory and to the Duplex BIM export, through `usdtune optimize --restructure BRANCH`
stopped after apply-restructure.

Prints, per scene and branch: composed prims with instance proxies before/after (the
preservation proof requires them equal), authored prim specs before/after, bytes on disk,
the median warm open of the source and of the new root (fresh process, 5 opens each), and
the phase's wall time. Writes docs/bench/restructure.md.

    python tests/bench/restructure.py --prims 100000
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, factory, host, optimize_until, phase_seconds

DUPLEX = REPO.parent / "shared" / "corpus" / "bim_Duplex_ifc2usd" / "Duplex_A_20110907.usdc"
BRANCHES = ("deduplicate-internally", "extract-as-assets")
OPEN_SAMPLES = 5
OPEN_PROBE = """
import statistics, sys, time
from pxr import Usd
samples = []
for _ in range({n} + 1):
    started = time.perf_counter()
    stage = Usd.Stage.Open(sys.argv[1])
    samples.append((time.perf_counter() - started) * 1000)
    del stage
print(statistics.median(samples[1:]))
"""


def warm_open_ms(stage: str) -> float:
    """Median of OPEN_SAMPLES opens in a fresh process, after one unmeasured open."""
    done = subprocess.run([sys.executable, "-c", OPEN_PROBE.format(n=OPEN_SAMPLES), stage],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


def restructure(stage: Path, branch: str, out: Path) -> dict:
    read = optimize_until(stage, out, branch, "apply-restructure")
    proof, manifest = read("preservation-apply-restructure"), read("apply-restructure-manifest")
    return {
        "proof": proof["passed"],
        "prims": (proof["prims_with_instance_proxies"]["before"],
                  proof["prims_with_instance_proxies"]["after"] - proof["prims_with_instance_proxies"]["material_closure_prims"]),
        "authored": (proof["authored_prim_specs"]["before"], proof["authored_prim_specs"]["after"]),
        "bytes": (proof["file_bytes"]["before"], proof["file_bytes"]["after"]),
        "files": len(manifest["outputs"]),
        "targets": len(manifest["phase4_targets"]),
        "open_ms": (warm_open_ms(str(stage)), warm_open_ms(manifest["new_assembly_root"])),
        "phase_s": phase_seconds(read, "apply-restructure"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prims", type=int, default=100_000, help="size of the generated factory")
    args = parser.parse_args()
    scenes = {f"factory {args.prims // 1000}k": factory(args.prims), "Duplex (BIM)": DUPLEX}
    rows = []
    with tempfile.TemporaryDirectory(prefix="usdtune-bench-restructure-") as scratch:
        for name, stage in scenes.items():
            for branch in BRANCHES:
                figures = restructure(stage, branch, Path(scratch) / f"{name.split()[0]}-{branch}")
                rows.append((name, branch, figures))
                print(name, branch, figures, file=sys.stderr)
    lines = [
        f"# Restructure benchmark ({host()['date']}, revision {host()['revision']}, {os.cpu_count()} cores)",
        "",
        "`tests/bench/restructure.py`: `usdtune optimize --restructure BRANCH` stopped after apply-restructure. "
        "Prims: composed with instance proxies (material networks copied into standalone prototypes excluded; "
        "the proof requires before = after). Open: median of 5 warm opens in a fresh process.",
        "",
        "| scene | branch | proof | prims before → after | authored prim specs | bytes on disk | files | Phase 4 targets | open ms before → after | phase s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, branch, f in rows:
        lines.append(
            f"| {name} | {branch} | {'passed' if f['proof'] else 'FAILED'} | {f['prims'][0]:,} → {f['prims'][1]:,} "
            f"| {f['authored'][0]:,} → {f['authored'][1]:,} ({(f['authored'][1] / f['authored'][0] - 1) * 100:+.1f}%) "
            f"| {f['bytes'][0]:,} → {f['bytes'][1]:,} ({(f['bytes'][1] / f['bytes'][0] - 1) * 100:+.1f}%) "
            f"| {f['files']} | {f['targets']} | {f['open_ms'][0]:.1f} → {f['open_ms'][1]:.1f} "
            f"({f['open_ms'][1] / f['open_ms'][0]:.2f}×) | {f['phase_s']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    (REPO / "docs" / "bench" / "restructure.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
