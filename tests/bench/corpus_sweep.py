"""Sweep of the real corpus (../shared/corpus): every USD file is assessed, and the first
few files of each corpus folder also go through the whole lossless run
(`optimize --restructure optimize-as-is`) into a temporary folder.

Writes docs/bench/corpus-sweep.md (file → outcome, code, seconds) and prints the counts.
A crash, hang or traceback is a failure of this script; a broken file must end with a
stable error code. The bounded form of this sweep (assessment only) runs in CI as
tests/test_structure_assessment.py.

    python tests/bench/corpus_sweep.py [--optimize-per-folder 2] [--timeout 600]
"""
import argparse
import collections
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, USDTUNE, revision

CORPUS = REPO.parent / "shared" / "corpus"
TABLE = REPO / "docs" / "bench" / "corpus-sweep.md"
USD_SUFFIXES = (".usd", ".usda", ".usdc", ".usdz")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def outcome(doc: dict) -> tuple:
    if doc.get("state") == "completed" and not doc.get("code"):
        return "ok", ""
    return doc.get("state", "?"), doc.get("code") or ""


def phase_seconds(workspace: str) -> float:
    run = Path(workspace or "/nonexistent") / "run.json"
    return sum(p.get("seconds", 0.0) for p in json.loads(run.read_text())["phases"]) if run.exists() else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimize-per-folder", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per optimize run")
    args = parser.parse_args()
    stages = sorted(p for p in CORPUS.rglob("*") if p.suffix in USD_SUFFIXES and p.is_file())
    results = {}
    with tempfile.TemporaryDirectory(prefix="usdtune-sweep-") as scratch:
        env = dict(os.environ, USDTUNE_DAEMON=f"127.0.0.1:{free_port()}")
        daemon = subprocess.Popen([str(USDTUNE), "daemon", "--listen", env["USDTUNE_DAEMON"]], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1.0)
            started = time.perf_counter()
            done = subprocess.run([str(USDTUNE), "assess", *map(str, stages), "-o", f"{scratch}/assess", "--json"],
                                  env=env, capture_output=True, text=True)
            assess_wall = time.perf_counter() - started
            if "Traceback" in done.stderr:
                print(done.stderr[-3000:], file=sys.stderr)
                return 1
            for stage, doc in zip(stages, json.loads(done.stdout)):
                results[stage] = {"assess": outcome(doc), "assess_s": phase_seconds(doc.get("workspace")),
                                  "message": doc.get("message") or ""}
            per_folder = collections.Counter()
            for stage in stages:
                folder = stage.relative_to(CORPUS).parts[0]
                if results[stage]["assess"][0] != "ok" or per_folder[folder] >= args.optimize_per_folder:
                    continue
                per_folder[folder] += 1
                out = Path(scratch) / "optimize" / f"{len(per_folder)}-{stage.stem}"
                try:
                    run = subprocess.run([str(USDTUNE), "optimize", str(stage), "-o", str(out), "--restructure",
                                          "optimize-as-is", "--json"], env=env, capture_output=True, text=True,
                                         timeout=args.timeout)
                    doc = json.loads(run.stdout) if run.stdout.strip() else {"state": "failed", "code": f"exit {run.returncode}"}
                    if "Traceback" in run.stderr:
                        doc = {"state": "failed", "code": "traceback"}
                except subprocess.TimeoutExpired:
                    doc = {"state": "failed", "code": "hang"}
                results[stage]["optimize"] = outcome(doc)
                results[stage]["optimize_s"] = phase_seconds(doc.get("workspace"))
        finally:
            daemon.terminate()
            daemon.wait()

    counts = collections.Counter(r["assess"] for r in results.values())
    optimized = collections.Counter(r["optimize"] for r in results.values() if "optimize" in r)
    lines = [f"# Corpus sweep ({revision()})", "",
             f"{len(stages)} files under `../shared/corpus`; assessment of all of them took {assess_wall:.0f} s "
             f"in one session. Assessment: {dict(counts)}. Whole lossless run on {sum(optimized.values())} files "
             f"(first {args.optimize_per_folder} per folder): {dict(optimized)}.", "",
             "| file | assess | code | s | optimize | code | s |", "|---|---|---|---|---|---|---|"]
    for stage, r in results.items():
        opt, opt_code = r.get("optimize", ("", ""))
        lines.append(f"| {stage.relative_to(CORPUS)} | {r['assess'][0]} | {r['assess'][1]} | {r['assess_s']:.2f} | "
                     f"{opt} | {opt_code} | {r.get('optimize_s', 0):.2f} |" if opt else
                     f"| {stage.relative_to(CORPUS)} | {r['assess'][0]} | {r['assess'][1]} | {r['assess_s']:.2f} | | | |")
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text("\n".join(lines) + "\n")
    print(lines[2])
    bad = [s for s, r in results.items() if r.get("optimize", ("ok", ""))[1] in ("hang", "traceback")]
    for stage in bad:
        print(f"FAILED: {stage}: {results[stage]['optimize']}", file=sys.stderr)
    print(f"table: {TABLE}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
