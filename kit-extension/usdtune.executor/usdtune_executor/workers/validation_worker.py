"""Runs validation jobs: real usd-validation-nvidia engines with exactly the rules a job names.

A job is one scoped unit of the daemon's validation plan:

    {"id": "t1-so", "rules": [{"concept", "module", "class_name"}, ...],
     "mask_paths": ["/World/A", ...] | null}

`mask_paths` null validates the whole composed stage; otherwise the stage is opened with a
population mask (usd-validation-nvidia keeps masks, unlike load rules). Rules are resolved by
the module that defines them and their class name, never by a bare name: usd-optimize and
usd-validation-nvidia ship classes of the same name that do different amounts of work.

Used two ways: `run_job` in-process (inside Kit, where no Python can be spawned), and as a
worker process (`python -m usdtune_executor.workers.validation_worker STAGE`) that reads
jobs as JSON lines on stdin and answers one JSON line per job, so the executor can time a
job out and kill it without losing the others.
"""
import importlib
import json
import os
import sys
import time

from pxr import Sdf, Tf, Usd

SEVERITIES = {"ERROR": "error", "FAILURE": "error", "WARNING": "warning", "INFO": "info"}
# Everything one job may send back about a single rule's sites; the count stays exact.
MAX_SITES_PER_RULE = 20_000


class RuntimeUnavailable(Exception):
    """The validator runtime or a named rule cannot be loaded: blocked_validation_runtime."""


def _engine_module():
    try:
        import usd_validation_nvidia
    except Exception as err:
        raise RuntimeUnavailable(f"usd-validation-nvidia cannot be loaded: {err}")
    return usd_validation_nvidia


_registered_usd_optimize = False


def resolve_rule(module: str, class_name: str):
    """The rule class defined in `module` under `class_name`, fail-closed."""
    global _registered_usd_optimize
    engine = _engine_module()
    if module.startswith("usd_optimize.") and not _registered_usd_optimize:
        try:
            from usd_optimize import validators
        except Exception as err:
            raise RuntimeUnavailable(f"usd-optimize validators cannot be loaded: {err}")
        validators.register_all()
        # Per-prim issues carry the sites; the aggregate issue alone names only "/".
        validators.set_verbose(True)
        _registered_usd_optimize = True
    try:
        rule = getattr(importlib.import_module(module), class_name)
    except (ImportError, AttributeError) as err:
        raise RuntimeUnavailable(f"{module}.{class_name} is not in this runtime: {err}")
    if not (isinstance(rule, type) and issubclass(rule, engine.BaseRuleChecker)) or rule.__module__ != module:
        raise RuntimeUnavailable(f"{module}.{class_name} is not a rule defined in {module}")
    return rule


class StageCache:
    """Keeps the root layer loaded so masked opens of many jobs compose without re-reading it."""

    def __init__(self, stage_path: str):
        self.stage_path = stage_path
        self._layer = Sdf.Layer.FindOrOpen(stage_path)
        self._full = None

    def stage(self, mask_paths):
        if mask_paths is None:
            if self._full is None:
                self._full = Usd.Stage.Open(self.stage_path)
            return self._full
        mask = Usd.StagePopulationMask()
        for path in mask_paths:
            mask.Add(Sdf.Path(path))
        return Usd.Stage.OpenMasked(self.stage_path, mask)


def _sites(issue) -> list:
    """Prim paths an issue is about: its location (one prim or a tuple of prims); for a
    stage-level issue, the prim paths the rule hands its fix (e.g. a duplicate group)."""
    at = getattr(issue, "at", None)
    located = at if isinstance(at, (tuple, list)) else (at,)
    paths = [str(a.path) for a in located if getattr(a, "path", None) is not None]
    if paths:
        return paths
    fix = getattr(getattr(issue, "suggestion", None), "callable", None)
    for value in getattr(fix, "keywords", {}).values():
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) and v.startswith("/") for v in value):
            return list(value)
    return []


def run_job(job: dict, cache: StageCache) -> dict:
    """Validate one job; returns per-rule results. Never raises for rule problems."""
    started = time.perf_counter()
    result = {"id": job["id"], "status": "ok", "rules": [], "error": ""}
    try:
        engine_module = _engine_module()
        resolved = [(rule, resolve_rule(rule["module"], rule["class_name"])) for rule in job["rules"]]
    except RuntimeUnavailable as err:
        result.update(status="blocked_runtime", error=str(err))
        return result
    # Composition errors are minimum openability's to report, once, not every job's.
    mark = Tf.Error.Mark()
    stage = cache.stage(job.get("mask_paths"))
    mark.Clear()
    engine = engine_module.ValidationEngine(init_rules=False, variants=False)
    for _, rule_class in resolved:
        engine.enable_rule(rule_class)
    outcome = engine.validate(stage)
    by_class = {rule_class: {"concept": rule["concept"], "module": rule["module"], "class_name": rule["class_name"],
                             "issues": []} for rule, rule_class in resolved}
    for issue in outcome.issues:
        entry = by_class.get(getattr(issue, "rule", None))
        severity = SEVERITIES.get(getattr(issue.severity, "name", ""), "info")
        if entry is None:
            # Engine-level problems (the stage did not open, no rule ran) fail the whole job.
            result.update(status="engine_error", error=str(issue.message))
            continue
        if len(entry["issues"]) < MAX_SITES_PER_RULE:
            entry["issues"].append({"severity": severity, "message": str(issue.message), "sites": _sites(issue)})
        entry["issue_count"] = entry.get("issue_count", 0) + 1
    result["rules"] = list(by_class.values())
    result["seconds"] = round(time.perf_counter() - started, 3)
    return result


def main(stage_path: str) -> int:
    # usd-optimize prints progress to stdout; keep the real stdout for results only.
    results = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    cache = StageCache(stage_path)
    results.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        job = json.loads(line)
        try:
            answer = run_job(job, cache)
        except Exception as err:  # a rule that raises must not take the other jobs down
            answer = {"id": job["id"], "status": "engine_error", "rules": [], "error": f"{type(err).__name__}: {err}"}
        results.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
