"""Phases 2c, 4, 4d and 6b: minimum openability plus the validation jobs the daemon planned.

The daemon decides which concepts run where (daemon/src/decisions/validation.rs); this task
only executes the jobs and reports what each rule found, timed out on, or could not load.
Jobs run in worker processes (validation_worker.py), several at once, each under a wall-clock
limit: a rule that hangs or crashes costs its own job and a worker restart, nothing else.
A mask several jobs share (the geometry representatives) comes once, named, in `masks`.
All jobs together stay within the plan's time budget (`budget_s`, from the run's budget): a job
is given at most what is left of it, and a job not started before it is spent is not run;
both are reported as timeouts that say so, so the ledger records them (timeout_recorded).
"""
import json
import os
import selectors
import subprocess
import tempfile
import time

from pxr import UsdUtils

from .. import workers
from ..usd.stage import check_stage_path, open_stage
from ..workers.validation_worker import StageCache, run_job

DEFAULT_TIMEOUT_S = 300
# A worker that has not said it is ready by then is treated like a crashed job.
WORKER_START_TIMEOUT_S = 120


def _openability(stage_path: str) -> dict:
    stage, composition_errors = open_stage(stage_path)
    findings = [{"rule": "minimum_openability.composition_error", "severity": "error", "site": stage_path,
                 "message": message} for message in composition_errors]
    layers, assets, unresolved = UsdUtils.ComputeAllDependencies(stage_path)
    findings += [{"rule": "minimum_openability.unresolved_asset", "severity": "error", "site": str(path),
                  "message": f"asset path does not resolve: {path}"} for path in unresolved]
    # Every asset path of every layer, counted: zero lets Phase 4 skip re-anchoring outputs.
    dependencies = {"layers": max(0, len(layers) - 1), "assets": len(assets), "unresolved": len(unresolved)}
    # Every file the stage composes, for the daemon's source guard.
    files = sorted({layer.realPath for layer in layers if layer.realPath} | {str(path) for path in assets})
    return {"opens": stage is not None, "issues": findings, "dependencies": dependencies, "files": files}


class _Worker:
    def __init__(self, stage_path: str):
        self.log = tempfile.TemporaryFile()
        self.process = workers.spawn("validation_worker", stage_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1)
        self.ready = False
        self.job = None
        self.deadline = time.monotonic() + WORKER_START_TIMEOUT_S

    def send(self, job: dict, timeout_s: float):
        self.job = job
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        self.deadline = time.monotonic() + timeout_s

    def log_tail(self) -> str:
        self.log.seek(0)
        lines = [l for l in self.log.read().decode(errors="replace").splitlines() if l.strip() and "[INFO]" not in l]
        return " | ".join(lines[-3:])[-400:]

    def stop(self, kill: bool = False):
        if kill:
            self.process.kill()
        else:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


class _Budget:
    """The time all jobs of the task may take together, from the task's start (None: no bound)."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + float(seconds)

    def left(self) -> float:
        return float("inf") if self.end is None else self.end - time.monotonic()

    def limit(self, job_limit: float) -> tuple[float, bool]:
        """A job's limit starting now, and whether the budget (not the job's own limit) sets it."""
        left = self.left()
        return (left, True) if left < job_limit else (job_limit, False)

    def not_started(self, job: dict) -> dict:
        return {**_failed(job, "timeout", f"not run: the validation budget of {_seconds(self.seconds)} s was spent "
                                          "before this job could start", 0), "over_budget": True}


def _seconds(value: float) -> str:
    """A budget as the daemon writes it: one decimal, two below a second (0.02, not 0.0)."""
    return f"{value:.2f}" if value < 1 else f"{value:.1f}"


def _failed(job: dict, status: str, error: str, seconds: float) -> dict:
    return {"id": job["id"], "status": status, "rules": [], "error": error, "seconds": round(seconds, 3)}


def _run_in_workers(stage_path, jobs, workers, timeout_s, budget, reporter, while_waiting):
    """Deal jobs to up to `workers` processes; a job past its limit is killed and recorded."""
    pending = list(jobs)
    limits = {}
    results = {}
    pool = [_Worker(stage_path) for _ in range(min(workers, len(pending)))]
    selector = selectors.DefaultSelector()
    for worker in pool:
        selector.register(worker.process.stdout, selectors.EVENT_READ, worker)
    started_at = {}
    t0 = time.monotonic()
    while_waiting()
    while len(results) < len(jobs):
        for worker in pool:
            if worker.ready and worker.job is None and pending:
                if budget.left() <= 0:
                    results.update((job["id"], budget.not_started(job)) for job in pending)
                    pending.clear()
                    break
                job = pending.pop(0)
                started_at[job["id"]] = time.monotonic()
                limits[job["id"]] = budget.limit(job.get("timeout_s", timeout_s))
                worker.send(job, limits[job["id"]][0])
        now = time.monotonic()
        wait = max(0.05, min([w.deadline for w in pool] + [now + 1.0]) - now)
        for key, _ in selector.select(timeout=wait):
            worker = key.data
            # One line at most is outstanding per worker (it answers, then waits for the next
            # job), so nothing is left in the read buffer that select() would not report.
            line = worker.process.stdout.readline()
            if line and not worker.ready:
                worker.ready = True
                worker.deadline = float("inf")
                continue
            job = worker.job
            if line:
                answer = json.loads(line)
                answer.update(started_s=round(started_at[job["id"]] - t0, 3), ended_s=round(time.monotonic() - t0, 3))
                results[answer["id"]] = answer
                worker.job = None
                worker.deadline = float("inf")
                reporter.progress(len(results) / len(jobs), f"validation: {answer['id']} {answer['status']}")
                continue
            # The worker died: its job crashed it (or it never started).
            code = worker.process.wait()
            reason = f"validator process exited with code {code}: {worker.log_tail()}"
            if job is not None:
                results[job["id"]] = _failed(job, "crashed", reason, time.monotonic() - started_at[job["id"]])
            elif not any(w.ready for w in pool if w is not worker):
                # No worker could start (e.g. the validator runtime does not import): say so for all.
                for job in pending:
                    results[job["id"]] = _failed(job, "crashed", f"validator worker did not start: {reason}", 0)
                pending.clear()
            # Replace a worker a job crashed; one that failed to start is not retried.
            pool = _replace(pool, worker, selector, stage_path, kill=False, restart=bool(pending) and job is not None)
        now = time.monotonic()
        for worker in list(pool):
            if now < worker.deadline:
                continue
            job = worker.job
            if job is not None:
                limit, by_budget = limits[job["id"]]
                why = (f"stopped at the validation budget of {_seconds(budget.seconds)} s" if by_budget
                       else f"no result within {limit:.0f} s")
                results[job["id"]] = {**_failed(job, "timeout", f"{why}; the validator process was killed",
                                                now - started_at[job["id"]]), "over_budget": by_budget}
            else:
                for job in pending:
                    results[job["id"]] = _failed(job, "crashed", "validator worker did not start in time", 0)
                pending.clear()
            pool = _replace(pool, worker, selector, stage_path, kill=True, restart=bool(pending))
        if not pool and pending:
            pool = [_Worker(stage_path)]
            selector.register(pool[0].process.stdout, selectors.EVENT_READ, pool[0])
    for worker in pool:
        selector.unregister(worker.process.stdout)
        worker.stop()
    return [results[job["id"]] for job in jobs]


def _replace(pool, worker, selector, stage_path, kill, restart):
    selector.unregister(worker.process.stdout)
    worker.stop(kill=kill)
    pool = [w for w in pool if w is not worker]
    if restart:
        fresh = _Worker(stage_path)
        selector.register(fresh.process.stdout, selectors.EVENT_READ, fresh)
        pool.append(fresh)
    return pool


def _worker_count(params) -> int:
    configured = os.environ.get("USDTUNE_VALIDATION_WORKERS", "")
    count = int(configured) if configured.isdigit() else (os.cpu_count() or 1)
    return max(1, min(count, params.get("max_workers", 8)))


def _with_masks(jobs, masks):
    """Jobs with a named mask (`"mask_paths": "representatives"`, one list in `masks` that
    several jobs share, so the task carries it once) given that mask's paths."""
    return [{**job, "mask_paths": masks[job["mask_paths"]]} if isinstance(job.get("mask_paths"), str) else job
            for job in jobs]


def run(params, reporter):
    stage_path = check_stage_path(params["stage_path"])
    jobs = _with_masks(params.get("jobs", []), params.get("masks", {}))
    timeout_s = float(params.get("timeout_s", DEFAULT_TIMEOUT_S))
    budget = _Budget(params.get("budget_s"))
    started = time.perf_counter()
    openability = {}

    def check_openability():
        # Runs here while the workers start and validate: this process is otherwise idle.
        if not params.get("openability", True):
            openability.update(opens=True, issues=[], seconds=0.0, skipped="run with the whole-stage plan")
            return
        t = time.perf_counter()
        openability.update(_openability(stage_path))
        openability["seconds"] = round(time.perf_counter() - t, 3)

    in_kit = params.get("host", {}).get("runtime") == "kit"
    if not jobs:
        check_openability()
        results, runner = [], "none"
    elif in_kit:
        # Inside Kit sys.executable is Kit itself: jobs run here, one after another, unbounded.
        check_openability()
        cache = StageCache(stage_path)
        results, clock = [], time.perf_counter()
        for job in jobs:
            if budget.left() <= 0:  # a job running in this process cannot be stopped, only not started
                results.append(budget.not_started(job))
                continue
            begun = time.perf_counter() - clock
            results.append({**run_job(job, cache), "started_s": round(begun, 3), "ended_s": round(time.perf_counter() - clock, 3)})
        runner = "in_process"
    else:
        results = _run_in_workers(stage_path, jobs, _worker_count(params), timeout_s, budget, reporter,
                                  check_openability)
        runner = "subprocess"
    return {
        "stage_path": stage_path,
        "openability": openability,
        "jobs": results,
        "runner": runner,
        "timeout_s": timeout_s,
        "budget_s": budget.seconds,
        "seconds": round(time.perf_counter() - started, 3),
    }
