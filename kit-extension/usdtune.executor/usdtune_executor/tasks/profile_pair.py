"""Phase 6a: the source and the output profiled in the same sitting, interleaved.

One warm-up round is taken and discarded, then `rounds` rounds, each capturing both stages
in a fresh process apiece (workers/profile_capture.py, paired protocol), the order
alternating (A B, B A, ...) so that neither side always runs first. The warm-up round also
takes each stage's exact counts (they do not change between rounds), so a measured round only
times: on a large stage attribute resolution and transforms on a sample of its prims. A
timing that is short on both sides is repeated within a round, the same number of times on
both (REPEAT_BUDGET_MS), and its fastest repeat kept: a preemption only ever adds time, and
in a 2 ms window it lands often enough on a loaded machine to move a ratio by half. Whatever
load the machine is under falls on both sides of a round alike: the daemon judges each metric from
the per-round pairs (decisions::stats), not from two captures minutes apart.

It also measures the footprint both ways the report needs: the source's layers as
delivered, the same layers re-encoded alone (Sdf.Layer.Export, the output's encoding, no
dedupe: the free re-crate any export achieves), and the output's layers.
"""
import json
import os
import selectors
import subprocess
import tempfile
import time

from pxr import Usd

from .. import workers
from ..errors import TaskError
from ..usd.stage import check_stage_path, total_file_bytes, used_layer_paths

TIMINGS = ("cold_open_ms", "warm_open_ms", "traverse_ms", "traverse_full_ms", "attribute_resolution_ms", "transform_ms")
COUNTS = ("prim_count", "prim_count_authored", "prim_count_with_instance_proxies", "layer_count", "instance_count",
          "prototype_count", "total_attributes", "total_size_bytes")
START_TIMEOUT_S = 120
# A timing is repeated within a round while the slower side's repeats fit this budget.
REPEAT_BUDGET_MS = 40.0
MAX_REPEATS = 7
# Each repeatable timing (profile_capture.REPEATABLE) and the warm-up field that sizes it.
REPEAT_SIZED_BY = {"open": "warm_open_ms", "traverse": "traverse_ms", "attributes": "attribute_resolution_ms",
                   "transforms": "transform_ms"}


class _Captures:
    """Captures in fresh processes: forked from one capture server where the OS forks, else
    one interpreter per capture."""

    def __init__(self, timeout_s: float, fork: bool):
        self._timeout = timeout_s
        self._scratch = tempfile.TemporaryDirectory(prefix="usdtune-pair-")
        self._count = 0
        self._server = None
        if fork:
            self._server = workers.spawn("profile_capture", "--serve", stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         text=True, bufsize=1)
            self._read_line(START_TIMEOUT_S, "the capture server did not start")

    def _read_line(self, timeout_s: float, what: str) -> dict:
        selector = selectors.DefaultSelector()
        selector.register(self._server.stdout, selectors.EVENT_READ)
        ready = selector.select(timeout=timeout_s)
        selector.close()
        line = self._server.stdout.readline() if ready else ""
        if not line:
            self.close()
            raise TaskError("profile_timeout" if not ready else "profile_failed", f"{what} within {timeout_s:.0f}s")
        return json.loads(line)

    def capture(self, stage_path: str, counts: bool, repeats: dict) -> dict:
        self._count += 1
        result = os.path.join(self._scratch.name, f"{self._count}.json")
        if self._server is not None:
            request = {"stage": stage_path, "result": result, "counts": counts, "repeats": repeats}
            self._server.stdin.write(json.dumps(request) + "\n")
            self._server.stdin.flush()
            answer = self._read_line(self._timeout, f"no capture of {stage_path}")
            if not os.path.isfile(result):
                raise TaskError("profile_failed", f"the capture of {stage_path} exited with {answer['exit']}", stage_path)
            with open(result) as handle:
                document = json.load(handle)
        else:
            try:
                flags = [f"--repeat={name}={times}" for name, times in repeats.items()]
                flags += [] if counts else ["--timings-only"]
                done = workers.run("profile_capture", stage_path, "--paired", *flags, capture_output=True, text=True,
                                   timeout=self._timeout)
            except subprocess.TimeoutExpired:
                raise TaskError("profile_timeout", f"profiling {stage_path} exceeded {self._timeout:.0f}s", stage_path)
            lines = done.stdout.strip().splitlines()
            document = json.loads(lines[-1]) if lines else {"error": {"code": "profile_failed",
                                                                      "message": done.stderr.strip()[-500:]}}
        if "error" in document:
            raise TaskError(document["error"]["code"], document["error"]["message"], stage_path)
        return document

    def close(self):
        if self._server is not None and self._server.poll() is None:
            self._server.stdin.close()
            try:
                self._server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
        self._scratch.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


def footprint(source: str, output: str) -> dict:
    """Bytes of the source's layers as delivered, re-encoded alone in the output's encoding
    (layers inside a usdz package are counted as delivered), and of the output's layers."""
    encoding = os.path.splitext(output)[1].lower()
    if encoding in ("", ".usdz"):
        encoding = ".usdc"
    stage = Usd.Stage.Open(source, Usd.Stage.LoadAll)
    layers = {layer.realPath: layer for layer in stage.GetUsedLayers() if layer.realPath}
    normalized = 0
    with tempfile.TemporaryDirectory(prefix="usdtune-repack-") as scratch:
        for n, (path, layer) in enumerate(sorted(layers.items())):
            copy = os.path.join(scratch, f"{n}{encoding}")
            packaged = path.lower().endswith(".usdz") or "[" in layer.identifier
            if not packaged and layer.Export(copy):
                normalized += os.path.getsize(copy)
            else:
                normalized += os.path.getsize(path)
    del stage
    out = Usd.Stage.Open(output, Usd.Stage.LoadAll)
    return {
        "raw_input_bytes": total_file_bytes(list(layers)),
        "repack_normalized_baseline_bytes": normalized,
        "optimized_bytes": total_file_bytes(used_layer_paths(out)),
        "encoding": encoding.lstrip("."),
    }


def repeats_for(warmup: dict) -> dict:
    """How often a measured round repeats each timing, the same on both sides: as often as
    the slower side's figure in the warm-up round fits REPEAT_BUDGET_MS (at least once)."""
    repeats = {}
    for name, field in REPEAT_SIZED_BY.items():
        slower = max(capture[field] for capture in warmup.values())
        repeats[name] = int(min(MAX_REPEATS, max(1, REPEAT_BUDGET_MS // max(slower, 1e-3))))
    return repeats


def _sample(capture: dict, counts: dict) -> dict:
    """A measured round's timings with the stage's exact counts from the warm-up round."""
    return {**{key: capture[key] for key in TIMINGS}, **{key: counts[key] for key in COUNTS}}


def run(params, reporter):
    started = time.perf_counter()
    before = check_stage_path(params["baseline"])
    after = check_stage_path(params["output"])
    rounds = max(1, int(params.get("rounds", 7)))
    timeout = float(params.get("timeout_s", 1800))
    in_kit = params.get("host", {}).get("runtime") == "kit"
    reporter.progress(0.0, "footprint: re-encoding the source's layers")
    sizes = footprint(before, after)
    samples = {"before": [], "after": []}
    order = []
    warmup = {}
    repeats = {}
    timing_sample = {}
    with _Captures(timeout, fork=hasattr(os, "fork") and not in_kit) as captures:
        for index in range(rounds + 1):  # round 0 warms the file cache, takes the counts and is discarded
            sides = [("before", before), ("after", after)]
            if index % 2 == 0:
                sides.reverse()
            for side, path in sides:
                if index == 0:
                    warmup[side] = captures.capture(path, counts=True, repeats={})
                    continue
                capture = captures.capture(path, counts=False, repeats=repeats)
                samples[side].append(_sample(capture, warmup[side]))
                if "timing_sample" in capture:
                    timing_sample[side] = capture["timing_sample"]
            if index == 0:
                repeats = repeats_for(warmup)
            else:
                order.append("".join("A" if side == "before" else "B" for side, _ in sides))
            reporter.progress((index + 1) / (rounds + 1), f"paired profile: round {index} of {rounds}")
    return {
        "baseline": before,
        "output": after,
        "rounds": rounds,
        "warmup_rounds_discarded": 1,
        "order": order,
        "sittings": [{"rounds": rounds, "repeats": repeats, "timing_sample": timing_sample}],
        "open_timing_context": "fresh_process_interleaved",
        "process": "fork" if not in_kit and hasattr(os, "fork") else "spawn",
        "samples": samples,
        "footprint": sizes,
        "seconds": round(time.perf_counter() - started, 3),
    }
