"""Mesh topology and points checked before anything is trusted: a face of fewer than three
vertices (negative counts included), face vertex counts that do not add up to the indices, an
index outside the points, a point that is not finite. Such a mesh cannot be optimized or proven
preserved (the proof's bounds and triangle counts are meaningless on it), so it is a finding
with its prim path, never input to an op.

Vectorized over all meshes of a walk (numpy reductions over the concatenated arrays): the
per-mesh Python cost is a few len() calls, as the stage walk's other mesh passes."""
import numpy as np


def _array(values, dtype):
    return np.frombuffer(memoryview(values), dtype=dtype) if len(values) else np.empty(0, dtype)


def points_array(values):
    """A points (or extent) Vt array as an (n, 3) numpy view, float or double as authored."""
    view = memoryview(values)
    return np.frombuffer(view, dtype=np.float64 if view.format == "d" else np.float32).reshape(-1, 3)


def _starts(arrays):
    """Where each array begins in their concatenation."""
    return np.concatenate(([0], np.cumsum([len(a) for a in arrays])[:-1])).astype(np.int64)


def invalid_meshes(meshes) -> dict:
    """meshes: (key, points, faceVertexCounts, faceVertexIndices), Vt arrays, or None where the
    attribute has no default value (time-sampled or unauthored: not judged from here).
    Returns {key: the first problem found, in words} for each invalid mesh."""
    problems = {}
    points, point_keys = [], []
    counts, indices, keys, sizes = [], [], [], []
    for key, p, c, i in meshes:
        # None: no default value (time-sampled, or not authored): not checked here.
        if p is not None and len(p):
            points.append(points_array(p))
            point_keys.append(key)
        if c is None or i is None:
            continue
        c, i = _array(c, np.int32), _array(i, np.int32)
        if not len(c) or not len(i):
            if len(c) or len(i):
                problems[key] = "face vertex counts and indices: one is empty, the other is not"
            continue
        counts.append(c)
        indices.append(i)
        keys.append(key)
        # Indices are checked against the points only when the points have a default value.
        sizes.append(len(p) if p is not None else np.iinfo(np.int64).max)
    if counts:
        c, i = np.concatenate(counts), np.concatenate(indices)
        c_starts, i_starts = _starts(counts), _starts(indices)
        smallest = np.minimum.reduceat(c, c_starts)
        total = np.add.reduceat(c.astype(np.int64), c_starts)
        lowest, highest = np.minimum.reduceat(i, i_starts), np.maximum.reduceat(i, i_starts)
        lengths = np.array([len(a) for a in indices])
        n_points = np.array(sizes, dtype=np.int64)
        for k in np.nonzero((smallest < 3) | (total != lengths) | (lowest < 0) | (highest >= n_points))[0]:
            if smallest[k] < 3:
                problems[keys[k]] = f"a face has {smallest[k]} vertices (at least 3)"
            elif total[k] != lengths[k]:
                problems[keys[k]] = f"face vertex counts add up to {total[k]}, but there are {lengths[k]} indices"
            else:
                bad = lowest[k] if lowest[k] < 0 else highest[k]
                problems[keys[k]] = f"face vertex index {bad} is outside the {n_points[k]} points"
    if points:
        finite = np.isfinite(np.concatenate(points)).all(axis=1)
        per_mesh = np.logical_and.reduceat(finite, _starts(points))
        for k in np.nonzero(~per_mesh)[0]:
            problems.setdefault(point_keys[k], "a point is not finite (NaN or infinity)")
    return problems
