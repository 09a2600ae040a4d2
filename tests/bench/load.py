"""Load on one shared daemon: N concurrent runs of the generated factory across M attached
executors (`usdtune executor`, the daemon started with --no-spawn-executor). Prints the
throughput (runs per minute), the median and 95th-percentile run time (submit to terminal
state), the daemon's peak resident memory and the verdicts, and appends one row per run to
docs/bench/history.csv (scale `load:<prims>:<runs>x<executors>`, phase `whole-run`).

    python tests/bench/load.py --runs 4 --executors 1 2 --prims 10000

Each configuration gets a fresh daemon and data dir; configurations run one after another.
Measurements take the daemon's measurement lock (a profile runs alone), so more executors
speed up the rest of a run, not its profiles."""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import USDTUNE, append_history, factory, host

TERMINAL = {"completed", "failed", "blocked", "cancelled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def one_configuration(stage: Path, runs: int, executors: int, prims: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="usdtune-load-"))
    env = dict(os.environ, USDTUNE_HOME=str(work / "home"), USDTUNE_DAEMON=f"127.0.0.1:{free_port()}",
               USDTUNE_EXECUTOR_ENV=sys.prefix)
    Path(env["USDTUNE_HOME"]).mkdir()
    log = open(work / "daemon.log", "w")
    daemon = subprocess.Popen([str(USDTUNE), "daemon", "--listen", env["USDTUNE_DAEMON"], "--allow-root", str(work),
                               "--allow-root", str(stage.parent), "--no-spawn-executor"], env=env, stdout=log,
                              stderr=log, start_new_session=True)
    attached = []
    peak = [0.0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(daemon.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        while not (Path(env["USDTUNE_HOME"]) / "executor.token").exists():
            time.sleep(0.1)
        token = (Path(env["USDTUNE_HOME"]) / "executor.token").read_text().strip()
        for k in range(executors):
            attached.append(subprocess.Popen([str(USDTUNE), "executor", "--executor-id", f"load-{k}"],
                                             env=dict(env, USDTUNE_TOKEN=token), stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL, start_new_session=True))
        submitted, ids = time.time(), []
        for k in range(runs):
            done = subprocess.run([str(USDTUNE), "optimize", str(stage), "-o", str(work / f"out{k}"), "--restructure",
                                   "optimize-as-is", "--passes", "1", "--detach", "--json"], env=env,
                                  capture_output=True, text=True, check=True)
            ids.append(json.loads(done.stdout)["run_id"])
        ended = {}
        while len(ended) < runs:
            listed = subprocess.run([str(USDTUNE), "runs", "--json"], env=env, capture_output=True, text=True)
            for run in json.loads(listed.stdout or "[]"):
                if run["run_id"] in ids and run["state"] in TERMINAL and run["run_id"] not in ended:
                    ended[run["run_id"]] = (time.time() - submitted, run["state"])
            time.sleep(0.5)
        verdicts = [json.loads((work / f"out{k}" / "optimization-report.json").read_text())["verdict"]
                    if (work / f"out{k}" / "optimization-report.json").exists() else None for k in range(runs)]
    finally:
        stop.set()
        for process in attached + [daemon]:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
        log.close()
    ordered = sorted(ended.values())
    walls = [seconds for seconds, _ in ordered]
    result = {
        "runs": runs, "executors": executors, "walls": walls,
        "throughput_per_min": 60 * runs / walls[-1],
        "p50": statistics.median(walls),
        "p95": walls[min(len(walls) - 1, round(0.95 * (len(walls) - 1)))],
        "daemon_peak_rss_mb": peak[0], "states": [state for _, state in ordered], "verdicts": verdicts,
    }
    shutil.rmtree(work, ignore_errors=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--executors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--prims", type=int, default=10000)
    args = parser.parse_args()
    stage = factory(args.prims)
    rows = []
    print(f"{args.runs} concurrent runs of the {args.prims}-prim factory (optimize-as-is, one pass)")
    print(f"{'executors':>9} {'runs/min':>9} {'p50 s':>7} {'p95 s':>7} {'daemon MB':>10}  states / verdicts")
    for executors in args.executors:
        r = one_configuration(stage, args.runs, executors, args.prims)
        print(f"{executors:>9} {r['throughput_per_min']:>9.2f} {r['p50']:>7.1f} {r['p95']:>7.1f} "
              f"{r['daemon_peak_rss_mb']:>10.1f}  {','.join(r['states'])} / {','.join(map(str, r['verdicts']))}")
        for k, wall in enumerate(r["walls"]):
            rows.append({**host(), "scale": f"load:{args.prims}:{args.runs}x{executors}", "run": k,
                         "phase": "whole-run", "status": r["states"][k], "wall_s": round(wall, 3),
                         "daemon_cpu_seconds": "", "daemon_peak_rss_mb": round(r["daemon_peak_rss_mb"], 1),
                         "executor_cpu_seconds": "", "executor_peak_rss_mb": "", "prims": args.prims, "meshes": "",
                         "bytes_before": "", "bytes_after": "", "warm_open_ms_before": "", "warm_open_ms_after": ""})
    append_history(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
