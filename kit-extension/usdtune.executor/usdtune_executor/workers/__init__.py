"""Processes a task starts beside the executor: the stage-walk fact collector
(stage_walk.py), the fresh-process profile capture (profile_capture.py) and validation jobs
(validation_worker.py). They are started here, the same way: this interpreter, this package
on the path, `python -m usdtune_executor.workers.<module>`. Inside Kit, `sys.executable` is
Kit itself, so tasks that run there do their work in process instead."""
import os
import subprocess
import sys

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def command(module: str, *args) -> list:
    """The command line of worker `module` (a file of this folder) with `args`."""
    return [sys.executable, "-m", f"usdtune_executor.workers.{module}", *map(str, args)]


def environment() -> dict:
    """This process's environment with the package importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    return env


def spawn(module: str, *args, **popen) -> subprocess.Popen:
    """Start worker `module`; `popen` are subprocess.Popen's keyword arguments."""
    return subprocess.Popen(command(module, *args), env=environment(), **popen)


def run(module: str, *args, **kwargs) -> subprocess.CompletedProcess:
    """Run worker `module` to its end; `kwargs` are subprocess.run's keyword arguments."""
    return subprocess.run(command(module, *args), env=environment(), **kwargs)
