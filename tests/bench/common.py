"""Shared by the benchmarks: where the binary is, generated factories (cached), the CSV log."""
import csv
import datetime
import os
import json
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
USDTUNE = REPO / "target" / "release" / "usdtune"
HISTORY = REPO / "docs" / "bench" / "history.csv"


def data_dir() -> Path:
    return Path(os.environ.get("USDTUNE_HOME", Path.home() / ".local" / "share" / "usdtune"))


def factory(prims: int, seed: int = 7) -> Path:
    """The generated factory of about `prims` prims, written once per size and seed."""
    return scene("factory", prims, seed)


def scene(kind: str, prims: int, seed: int = 7) -> Path:
    """A generated scene of about `prims` prims, written once per kind, size and seed: factory
    (machines copied by value), hall (stations of nested robots), scatter (single-mesh copies,
    two prims each), composed (one referenced asset file per object, ~13 prims each)."""
    folder = data_dir() / "bench" / f"{kind}-{prims}-s{seed}"
    root = folder / ("set.usda" if kind == "composed" else f"{kind}.usdc")
    if not root.exists():
        print(f"generating {folder.name} ...", file=sys.stderr)
        partial = folder.with_name(folder.name + ".partial")
        partial.mkdir(parents=True, exist_ok=True)
        script = REPO / "fixtures" / f"generate_{kind}.py"
        size = {"scatter": [str(partial / root.name), "--copies", str(prims // 2)],
                "composed": [str(partial), "--objects", str(max(1, prims // 13)), "--assets", str(max(1, prims // 17))],
                }.get(kind, [str(partial / root.name), "--prims", str(prims)])
        subprocess.run([sys.executable, str(script), *size, "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)
        partial.rename(folder)
    return root


def bare_seconds(stage: Path) -> float:
    """Open, traverse every prim and export the flattened stage in one fresh process: the
    floor a whole run is compared with (the benchmark prints run wall / this)."""
    code = ("import sys, tempfile, time\nfrom pxr import Usd\nt = time.perf_counter()\n"
            "stage = Usd.Stage.Open(sys.argv[1])\nsum(1 for _ in stage.Traverse())\n"
            "with tempfile.TemporaryDirectory() as d:\n    stage.Export(d + '/flat.usdc')\n"
            "print(time.perf_counter() - t)\n")
    done = subprocess.run([sys.executable, "-c", code, str(stage)], capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def optimize_until(stage: Path, out: Path, branch: str, milestone: str):
    """`usdtune optimize STAGE --restructure BRANCH`, stopped once `milestone` is done (the
    benchmarks measure one phase, not the whole run). Returns a reader of the run's artifacts."""
    process = subprocess.Popen([str(USDTUNE), "optimize", str(stage), "-o", str(out), "--restructure", branch],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    for line in process.stderr:
        if line.startswith(f"[usdtune] {milestone} done"):
            break
    else:
        raise SystemExit(f"usdtune optimize ended before {milestone} finished (exit {process.wait()})")
    os.killpg(process.pid, signal.SIGTERM)
    process.wait()
    time.sleep(1)  # let the executor and its worker processes go before the next run
    return lambda name: json.loads((out / f"{name}.json").read_text())


def phase_seconds(read, milestone: str) -> float:
    return next(p["seconds"] for p in read("run")["phases"] if p["milestone"] == milestone)


def revision() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def append_history(rows: list) -> None:
    """One row per phase per run, so history across commits stays comparable."""
    if not rows:
        return
    HISTORY.parent.mkdir(parents=True, exist_ok=True)
    new = not HISTORY.exists()
    with HISTORY.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)


def host() -> dict:
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "revision": revision(), "cores": os.cpu_count(), "machine": platform.machine()}
