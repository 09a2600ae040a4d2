"""Processes a task starts beside the executor: the stage-walk fact collector
(stage_walk.py), the fresh-process profile capture (profile_capture.py) and validation jobs
(validation_worker.py). They are started here, the same way: this interpreter, this package
on the path, `python -m usdtune_executor.workers.<module>`. Inside Kit, `sys.executable` is
Kit itself, so tasks that run there do their work in process instead.

Every process started here is tracked until it ends, so that a cancelled task or an executor
that shuts down ends them too (`stop_all`) instead of leaving them to run on, re-parented."""
import os
import subprocess
import sys
import threading

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def command(module: str, *args) -> list:
    """The command line of worker `module` (a file of this folder) with `args`."""
    return [sys.executable, "-m", f"usdtune_executor.workers.{module}", *map(str, args)]


def environment() -> dict:
    """This process's environment with the package importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    return env


_live = set()
_live_lock = threading.Lock()
_stopping = threading.Event()  # set: no new worker starts (a cancelled task, or shutdown)
_final = threading.Event()


class Stopped(Exception):
    """Raised in a task whose worker processes were stopped (cancel or shutdown)."""


def spawn(module: str, *args, **popen) -> subprocess.Popen:
    """Start worker `module`; `popen` are subprocess.Popen's keyword arguments."""
    # Checked and started under the lock stop_all takes: a worker is either refused or seen.
    with _live_lock:
        if _stopping.is_set():
            raise Stopped("the task was cancelled" if not _final.is_set() else "the executor is shutting down")
        process = subprocess.Popen(command(module, *args), env=environment(), **popen)
        _live.difference_update([p for p in _live if p.poll() is not None])
        _live.add(process)
    return process


def begin_task() -> None:
    """A new task may start workers again (after a cancelled one), unless shutting down."""
    if not _final.is_set():
        _stopping.clear()


def run(module: str, *args, input=None, timeout=None, capture_output=False, text=False,
        **popen) -> subprocess.CompletedProcess:
    """Run worker `module` to its end (subprocess.run's contract for these arguments)."""
    if capture_output:
        popen.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if input is not None:
        popen.update(stdin=subprocess.PIPE)
    process = spawn(module, *args, text=text, **popen)
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise
    finally:
        forget(process)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def forget(process: subprocess.Popen) -> None:
    """A process that ended (or was waited for) is no longer tracked."""
    with _live_lock:
        _live.discard(process)


def stop_all(grace: float = 2.0, final: bool = False) -> int:
    """End every worker process still running: SIGTERM, then SIGKILL after `grace` seconds.
    None starts again until the next task (with `final`: ever). Returns how many were running."""
    if final:
        _final.set()
    _stopping.set()
    with _live_lock:
        running = [p for p in _live if p.poll() is None]
        _live.clear()
    for process in running:
        process.terminate()
    for process in running:
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return len(running)
