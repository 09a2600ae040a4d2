"""Phase 1a / 6a quick profile: runs profile_capture in a fresh process per capture.

A fresh interpreter keeps the measurement free of this executor's caches (the
upstream timing protocol's `open_timing_context: fresh_process`).
"""
import json
import os
import subprocess

from .. import workers
from ..errors import TaskError
from ..usd.stage import check_stage_path


def run(params, reporter):
    stage_path = check_stage_path(params["stage_path"])
    warm = int(params.get("warm_samples", 5))
    timeout = float(params.get("timeout_s", 1800))
    reporter.progress(0.0, f"profiling {os.path.basename(stage_path)} in a fresh process")
    try:
        done = workers.run("profile_capture", stage_path, "--warm", warm, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TaskError("profile_timeout", f"profiling {stage_path} exceeded {timeout:.0f}s", stage_path)
    if done.returncode != 0:
        try:
            error = json.loads(done.stdout.strip().splitlines()[-1])["error"]
        except (IndexError, KeyError, ValueError):
            error = {"code": "profile_failed", "message": done.stderr.strip()[-500:] or "capture process failed"}
        raise TaskError(error["code"], error["message"], stage_path)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["mode"] = "quick"
    return result
