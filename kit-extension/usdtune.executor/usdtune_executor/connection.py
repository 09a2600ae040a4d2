"""The executor side of ExecutorService.Attach: hello, then tasks in, progress and results out.

Tasks run one at a time on a worker thread so that heartbeats keep flowing while a
long usd-optimize call holds the GIL-free native code; the daemon treats a silent
executor as lost and fails its task with a clear message instead of hanging.
"""
import json
import logging
import os
import queue
import shutil
import subprocess
import threading
import time
import traceback

import grpc

try:
    import resource
except ImportError:  # Windows: no getrusage; usage is reported as zero
    resource = None

from usdtune.v1 import usdtune_pb2 as pb
from usdtune.v1 import usdtune_pb2_grpc as pb_grpc

from . import PROTOCOL_VERSION, workers
from .usd import export
from .errors import TaskError
from .tasks import TASK_HANDLERS
from .tasks.probe import runtime_identity

log = logging.getLogger("usdtune_executor")

HEARTBEAT_SECONDS = 2.0


class Reporter:
    """Handed to every task so it can stream progress without knowing about gRPC."""

    def __init__(self, outbox: "queue.Queue", task_id: str):
        self._outbox = outbox
        self._task_id = task_id

    def progress(self, fraction: float, message: str = "") -> None:
        self._outbox.put(pb.ExecutorMessage(progress=pb.TaskProgress(
            task_id=self._task_id, fraction=float(fraction), message=message)))

    def records(self, table: str, columns: dict) -> None:
        """Stream a chunk of a table (column name -> values) ahead of the task's result."""
        self._outbox.put(pb.ExecutorMessage(records=pb.TaskRecords(
            task_id=self._task_id, table=table, columns_json=json.dumps(columns, separators=(",", ":")))))


class _Usage:
    """CPU (this process and its finished children) and peak memory over one task."""

    def __init__(self):
        if resource is None:
            return
        try:  # Linux: start a new peak-RSS window for this process
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
        except OSError:
            pass
        self._start = self._cpu()
        self._children_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

    @staticmethod
    def _cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def finish(self, result: pb.TaskResult) -> pb.TaskResult:
        if resource is None:
            return result
        result.cpu_seconds = self._cpu() - self._start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            with open("/proc/self/status") as handle:
                peak = next(int(line.split()[1]) for line in handle if line.startswith("VmHWM:"))
        except (OSError, StopIteration, ValueError):
            pass
        # A child's peak counts only when this task raised the children's high-water mark.
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result.peak_rss_kb = max(peak, children if children > self._children_peak else 0)
        return result


def execute_task(task, reporter, host: dict) -> pb.TaskResult:
    """Run one task; never raises. Errors become a result with a stable code.

    `host` (runtime, executor_id) is what the executor knows of itself; tasks see it under
    params["host"] since the daemon cannot know whether it talks to Kit or plain Python.
    """
    usage = _Usage()
    return usage.finish(_execute(task, reporter, host))


def _execute(task, reporter, host: dict) -> pb.TaskResult:
    handler = TASK_HANDLERS.get(task.kind)
    if handler is None:
        return pb.TaskResult(task_id=task.task_id, ok=False, error_code="unknown_task_kind",
                             error_message=f"this executor has no task kind '{task.kind}'")
    try:
        params = json.loads(task.params_json or "{}")
        params["host"] = host
        with export.attempt(task.task_id):
            result = handler(params, reporter)
        return pb.TaskResult(task_id=task.task_id, ok=True, result_json=json.dumps(result))
    except TaskError as err:
        return pb.TaskResult(task_id=task.task_id, ok=False, error_code=err.code,
                             error_message=err.message, error_path=err.path)
    except workers.Stopped as err:
        return pb.TaskResult(task_id=task.task_id, ok=False, error_code="cancelled", error_message=str(err))
    except Exception as err:
        if _is_usd_read_error(err):
            # USD could not read a layer the stage composes (a broken sublayer, a bad crate): bad
            # input, not an executor bug.
            first = next((line.strip(" '") for line in str(err).splitlines() if ".usd" in line), str(err)[:300])
            return pb.TaskResult(task_id=task.task_id, ok=False, error_code="stage_open_failed",
                                 error_message=f"USD cannot read a layer of the stage: {first}")
        # A bug in the executor: report it, keep serving.
        log.error("task %s (%s) crashed:\n%s", task.task_id, task.kind, traceback.format_exc())
        return pb.TaskResult(task_id=task.task_id, ok=False, error_code="executor_internal_error",
                             error_message=f"{type(err).__name__}: {err}")


def _is_usd_read_error(err: Exception) -> bool:
    """A Tf error raised while a layer was read or parsed (USD names the file format parser or
    the layer it failed on)."""
    if type(err).__name__ != "ErrorException" or not type(err).__module__.startswith("pxr"):
        return False
    text = str(err)
    return any(marker in text for marker in ("FileFormat", "Failed to open layer", "Cannot open", "parse"))


def auth_metadata() -> tuple:
    """The executor token (USDTUNE_TOKEN) as the call's bearer header; the daemon refuses an
    Attach without it."""
    token = os.environ.get("USDTUNE_TOKEN", "").strip()
    return (("authorization", f"Bearer {token}"),) if token else ()


def use_token_file(path: str) -> None:
    """Take the executor token from `path` (`--token-file`, Kit's tokenFile setting): it is put
    where `auth_metadata` reads it. Raises OSError when the file cannot be read."""
    with open(path) as handle:
        os.environ["USDTUNE_TOKEN"] = handle.read().strip()


def use_reach(path_roots, path_map) -> None:
    """The folders this executor reaches and the daemon's mounts here, given by its host
    (flags, Kit settings): each list, when not empty, overrides its variable for `reach`."""
    for values, variable in ((path_roots, "USDTUNE_PATH_ROOTS"), (path_map, "USDTUNE_PATH_MAP")):
        if values:
            os.environ[variable] = os.pathsep.join(values)


def reach() -> dict:
    """What this executor has and which paths it can reach, as its Hello advertises: CPU count,
    memory, GPUs (from nvidia-smi where there is one), and USDTUNE_PATH_ROOTS (the folders it
    can read and write, os.pathsep-separated; unset: every path) and USDTUNE_PATH_MAP
    (DAEMON_PREFIX=EXECUTOR_PREFIX entries, os.pathsep-separated: where the daemon's paths are
    mounted here). The daemon places tasks by them and rewrites paths through the map."""
    split = lambda name: [p for p in os.environ.get(name, "").split(os.pathsep) if p.strip()]
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 0
    gpu = ""
    if shutil.which("nvidia-smi"):
        try:
            listed = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=5)
            gpu = "; ".join(line.strip() for line in listed.stdout.splitlines() if line.strip())
        except (OSError, subprocess.SubprocessError):
            gpu = ""
    return {"cpu_count": os.cpu_count() or 1, "memory_bytes": memory, "gpu": gpu,
            "path_roots": [os.path.abspath(p) for p in split("USDTUNE_PATH_ROOTS")],
            "path_map": split("USDTUNE_PATH_MAP")}


# The largest message either side takes, as the daemon's executor service does (64 MiB). gRPC's
# default here is 4 MiB: a 1M-prim composed set's Phase 4 validation task (every job listing its
# 58,823 masked subtrees) was refused as it arrived, and the daemon saw its executor lost.
MAX_MESSAGE_BYTES = 64 << 20
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]


def open_channel(address: str):
    """TLS when USDTUNE_TLS_CA names the CA certificate to trust, plain gRPC otherwise."""
    ca = os.environ.get("USDTUNE_TLS_CA", "")
    if not ca:
        return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    with open(ca, "rb") as handle:
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=handle.read()),
                                   options=CHANNEL_OPTIONS)


def run_executor(address: str, executor_id: str, runtime: str,
                 stop_event: "threading.Event | None" = None) -> int:
    """Serve tasks from the daemon at `address` until it says shutdown or the stream ends.

    Returns a process exit code: 0 after an orderly shutdown, 1 when the connection failed.
    """
    stop_event = stop_event or threading.Event()
    identity = runtime_identity(runtime)
    outbox: "queue.Queue" = queue.Queue()
    tasks: "queue.Queue" = queue.Queue()
    busy = {"task_id": ""}

    outbox.put(pb.ExecutorMessage(hello=pb.Hello(
        executor_id=executor_id, runtime=runtime,
        python_version=identity["python_version"], usd_version=identity["usd_version"],
        usd_optimize_version=identity["usd_optimize_version"] or "",
        operations_available=identity["operations_available"],
        task_kinds=sorted(TASK_HANDLERS), pid=os.getpid(), protocol_version=PROTOCOL_VERSION, **reach())))

    def outgoing():
        while True:
            message = outbox.get()
            if message is None:
                return
            yield message

    def heartbeat():
        while not stop_event.wait(HEARTBEAT_SECONDS):
            outbox.put(pb.ExecutorMessage(heartbeat=pb.Heartbeat(
                unix_ms=int(time.time() * 1000), busy_task_id=busy["task_id"])))

    def worker():
        while True:
            task = tasks.get()
            if task is None:
                return
            busy["task_id"] = task.task_id
            workers.begin_task()
            log.info("task %s: %s", task.task_id, task.kind)
            started = time.perf_counter()
            result = execute_task(task, Reporter(outbox, task.task_id), {"runtime": runtime, "executor_id": executor_id})
            busy["task_id"] = ""
            log.info("task %s: %s in %.2fs", task.task_id,
                     "ok" if result.ok else f"failed ({result.error_code})", time.perf_counter() - started)
            outbox.put(pb.ExecutorMessage(result=result))

    channel = open_channel(address)
    call = pb_grpc.ExecutorServiceStub(channel).Attach(outgoing(), metadata=auth_metadata())
    threads = [threading.Thread(target=heartbeat, daemon=True, name="usdtune-heartbeat"),
               threading.Thread(target=worker, daemon=True, name="usdtune-worker")]
    for thread in threads:
        thread.start()
    # Kit's on_shutdown sets stop_event; cancelling the call unblocks the loop below.
    watcher = threading.Thread(target=lambda: (stop_event.wait(), call.cancel()), daemon=True)
    watcher.start()

    exit_code = 0
    try:
        for message in call:
            kind = message.WhichOneof("body")
            if kind == "task":
                tasks.put(message.task)
            elif kind == "shutdown":
                log.info("daemon asked to shut down: %s", message.shutdown.reason)
                break
            elif kind == "cancel":
                # The daemon no longer waits for the task: its worker processes end now; work in
                # this process itself (a native call) runs out, its result is ignored.
                if message.cancel.task_id == busy["task_id"]:
                    export.abandon(message.cancel.task_id)
                    stopped = workers.stop_all()
                    log.info("task %s cancelled: %d worker process(es) stopped", message.cancel.task_id, stopped)
    except grpc.RpcError as err:
        if not stop_event.is_set():
            log.error("connection to daemon %s lost: %s", address, err.details() or err.code())
            exit_code = 1
    finally:
        stop_event.set()
        workers.stop_all(final=True)
        tasks.put(None)
        outbox.put(None)
        channel.close()
    return exit_code
