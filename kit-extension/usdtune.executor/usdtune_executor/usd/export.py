"""Writing layers so that a file appears whole or not at all: each is exported beside its
final name (`<stem>.partial<ext>`) and renamed into place; a task that writes several files
renames them only after every one was written."""
import os

from ..errors import TaskError


def partial_path(path: str) -> str:
    base, extension = os.path.splitext(path)
    return f"{base}.partial{extension}"


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
    """Rename written partial files into place: (partial, final) pairs."""
    for partial, final in pending:
        os.replace(partial, final)


def export_atomically(layer, path: str) -> None:
    """Export `layer` to `path`, whole or not at all."""
    commit([(export_partial(layer, path), path)])
