"""End-to-end harness: real usdtuned, real executor processes, real files.

Runs on the executor environment's Python (`usdtune setup --dev`), so pxr, grpc,
jsonschema and headless Kit are importable here. Tests talk to the product only
through its command line and its gRPC ports.
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
USDTUNE = REPO / "target" / "release" / "usdtune"
FIXTURE = REPO / "fixtures" / "factory_small.usda"
SCHEMAS = REPO / "schemas"
EXTENSION_DIR = REPO / "kit-extension"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_env(root: Path) -> dict:
    """Environment for usdtune with its own data dir under `root`; the executor env is the one
    `usdtune setup` made, and USDTUNE_DAEMON names a port where nothing listens (embedded mode
    unless a test starts a daemon there)."""
    data = root / "usdtune-home"
    data.mkdir()
    env = dict(os.environ)
    env["USDTUNE_HOME"] = str(data)
    # sys.prefix is the venv itself; resolving sys.executable would name the base interpreter.
    env["USDTUNE_EXECUTOR_ENV"] = sys.prefix
    env["USDTUNE_DAEMON"] = f"127.0.0.1:{free_port()}"
    return env


@pytest.fixture
def home(tmp_path):
    """An isolated usdtune data dir for one test."""
    return isolated_env(tmp_path)


def usdtune(env, *args, timeout=600, stdin=subprocess.DEVNULL):
    return subprocess.run([str(USDTUNE), *args], env=env, capture_output=True, text=True, timeout=timeout, stdin=stdin)


class Process:
    def __init__(self, args, env, name):
        self.name = name
        self.log = open(env["USDTUNE_HOME"] + f"/{name}.log", "w+")
        self.proc = subprocess.Popen(args, env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self, sig=signal.SIGINT, timeout=20):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_daemon(env, *flags) -> Process:
    """A real usdtuned on env's USDTUNE_DAEMON address, once it accepts connections. It serves
    pytest's temporary folders (module fixtures live beside the test's own) and the repository
    (`--allow-root`); its token files are made in the test's data dir, where the CLI finds the
    client token (executors: `executor_env`)."""
    address = env["USDTUNE_DAEMON"]
    pytest_temp = Path(env["USDTUNE_HOME"]).parent.parent
    roots = ["--allow-root", str(pytest_temp), "--allow-root", str(REPO)]
    process = Process([str(USDTUNE), "daemon", "--listen", address, *roots, *flags], env, "daemon")
    host, port = address.rsplit(":", 1)
    deadline = time.time() + 20
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, int(port))) == 0:
                return process
        time.sleep(0.1)
    process.stop()
    raise RuntimeError("daemon did not start:\n" + process.output())


def executor_env(env) -> dict:
    """`env` with the running daemon's executor token, as an executor attaching to it needs."""
    token = (Path(env["USDTUNE_HOME"]) / "executor.token").read_text().strip()
    return dict(env, USDTUNE_TOKEN=token)


@pytest.fixture
def daemon(home):
    """A real usdtuned that never spawns executors itself: tests bring their own."""
    process = start_daemon(home, "--no-spawn-executor")
    yield process
    process.stop()


@pytest.fixture
def headless_executor(home, daemon):
    process = Process([sys.executable, "-m", "usdtune_executor", "--daemon", home["USDTUNE_DAEMON"],
                       "--executor-id", "test-headless"], executor_env(home), "executor")
    yield process
    process.stop(signal.SIGKILL)


@pytest.fixture
def stage_copy(tmp_path):
    """The shipped fixture, copied: tests compare its bytes before and after."""
    target = tmp_path / "input" / FIXTURE.name
    target.parent.mkdir()
    shutil.copy2(FIXTURE, target)
    return target


def tree_digest(root: Path) -> str:
    """One hash of every file below `root`, names included: sources must be byte-identical after a
    run. Links are not read (a link loop is one of the bad inputs; a link inside the tree is read
    through its target)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return digest.hexdigest()


def schema_for(artifact_name: str) -> dict:
    # Artifacts of one kind share a schema: profile-baseline/-after, validation-report-targets-after ...
    base = artifact_name.removesuffix("-baseline").removesuffix("-after").removesuffix("-targets").removesuffix("-reverify")
    base = {"ref-remap-manifest": "apply-restructure-manifest"}.get(base, base)
    if base.startswith("preservation-"):
        base = "preservation"
    return json.loads((SCHEMAS / f"{base}.schema.json").read_text())
