"""What an op changed: the stage's change notices per op (prims resynced, properties and
metadata changed), checked against the source's own content where the notices alone cannot
tell (an op that re-authors a value equal to the one it replaced still sends a notice), and
what usd-optimize itself printed about the op ("Found 0 sets of equal meshes")."""
import os
import sys
import tempfile

from pxr import Sdf, Tf, Usd


class ChangeLog:
    """Paths the stage's change notices named, collected op by op."""

    def __init__(self, stage):
        self._resynced, self._info = set(), set()
        self._listener = Tf.Notice.Register(Usd.Notice.ObjectsChanged, self._on, stage)

    def _on(self, notice, _sender):
        self._resynced.update(notice.GetResyncedPaths())
        self._info.update(notice.GetChangedInfoOnlyPaths())

    def take(self) -> tuple:
        """(resynced prim paths, changed property and metadata paths) since the last take."""
        taken = (self._resynced, self._info)
        self._resynced, self._info = set(), set()
        return taken

    def close(self):
        self._listener.Revoke()


def _same_spec(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    keys = set(a.ListInfoKeys())
    if keys != set(b.ListInfoKeys()):
        return False
    return all(a.GetInfo(key) == b.GetInfo(key) for key in keys)


def differing(edited: Sdf.Layer, original: Sdf.Layer, paths) -> set:
    """The paths among `paths` whose spec in `edited` differs from the one in `original`
    (values, time samples and metadata; a property path or a prim's own fields)."""
    different = set()
    for path in paths:
        if path.IsPropertyPath():
            a, b = edited.GetPropertyAtPath(path), original.GetPropertyAtPath(path)
            same = _same_spec(a, b) and (not isinstance(a, Sdf.AttributeSpec) or
                                         _samples(edited, path) == _samples(original, path))
        else:
            same = _same_spec(edited.GetPrimAtPath(path), original.GetPrimAtPath(path))
        if not same:
            different.add(path)
    return different


def _samples(layer, path):
    return [(t, layer.QueryTimeSample(path, t)) for t in layer.ListTimeSamplesForPath(path)]


class NativeOutput:
    """What usd-optimize prints from C++ while an op runs (its own counts), captured from
    the process's stdout and stderr and written back to stderr after. Only where this
    process owns its file descriptors (the headless executor, not Kit)."""

    def __init__(self, enabled: bool):
        self._enabled = enabled
        self.text = ""

    def __enter__(self):
        if self._enabled:
            sys.stdout.flush()
            sys.stderr.flush()
            self._saved = (os.dup(1), os.dup(2))
            self._file = tempfile.TemporaryFile()
            os.dup2(self._file.fileno(), 1)
            os.dup2(self._file.fileno(), 2)
        return self

    def __exit__(self, *_):
        if not self._enabled:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self._saved[0], 1)
        os.dup2(self._saved[1], 2)
        for fd in self._saved:
            os.close(fd)
        self._file.seek(0)
        self.text = self._file.read().decode(errors="replace")
        self._file.close()
        if self.text:
            os.write(2, self.text.encode())

    def reports(self, operation: str) -> list:
        """usd-optimize's own lines about `operation` ("[INFO] deduplicateGeometry: ...")."""
        marker = f"{operation}: "
        return [line.split(marker, 1)[1].strip() for line in self.text.splitlines() if marker in line][:20]
