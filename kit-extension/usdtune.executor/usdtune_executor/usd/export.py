"""Writing layers so that a file appears whole or not at all: each is exported beside its
final name under its attempt's own name (`<stem>.partial-<attempt><ext>`) and renamed into
place; a task that writes several files renames them only after every one was written.

The attempt is the daemon's task id, new for every lease. When an executor is lost and its
task leased again, the new attempt never writes into a partial file the old one may still be
writing, and an attempt the daemon gave up on (cancelled, past its deadline) promotes nothing:
its partial files are removed instead. The daemon sweeps the partials of attempts that died
mid-export when the run ends."""
import contextlib
import contextvars
import os
import threading

from ..errors import TaskError

# The attempt this thread's task is (empty outside a task: a direct call in a test or a tool).
_attempt = contextvars.ContextVar("usdtune_attempt", default="")
_abandoned: set = set()
_abandoned_lock = threading.Lock()


def _tag(task_id: str) -> str:
    return task_id.replace("-", "")[:12]


@contextlib.contextmanager
def attempt(task_id: str):
    """Exports inside are the attempt `task_id`'s."""
    token = _attempt.set(_tag(task_id))
    try:
        yield
    finally:
        _attempt.reset(token)
        with _abandoned_lock:
            _abandoned.discard(_tag(task_id))


def abandon(task_id: str) -> None:
    """The daemon gave up on attempt `task_id`: whatever it has written is never promoted."""
    with _abandoned_lock:
        _abandoned.add(_tag(task_id))


def partial_path(path: str) -> str:
    base, extension = os.path.splitext(path)
    tag = _attempt.get()
    return f"{base}.partial-{tag}{extension}" if tag else f"{base}.partial{extension}"


def export_partial(layer, path: str) -> str:
    """Export `layer` beside `path`; returns the partial file to commit. Raises export_failed."""
    partial = partial_path(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as err:
        raise TaskError("export_failed", f"could not write {partial}: {err.strerror}", partial)
    if not layer.Export(partial):
        raise TaskError("export_failed", f"could not write {partial}", partial)
    return partial


def commit(pending) -> None:
    """Rename written partial files into place: (partial, final) pairs. An abandoned attempt's
    are removed instead, and the task ends `cancelled`."""
    with _abandoned_lock:
        given_up = _attempt.get() in _abandoned
    if given_up:
        for partial, _ in pending:
            with contextlib.suppress(OSError):
                os.remove(partial)
        raise TaskError("cancelled", "the daemon gave up on this attempt: its outputs were not put in place")
    for partial, final in pending:
        os.replace(partial, final)


def export_atomically(layer, path: str) -> None:
    """Export `layer` to `path`, whole or not at all."""
    commit([(export_partial(layer, path), path)])
