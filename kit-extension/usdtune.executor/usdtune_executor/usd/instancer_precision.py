"""Float-precision point instancing for usd-optimize's deduplicateGeometry (duplicateMethod 4).

usd-optimize writes each instance's orientation as a half-precision quaternion (quath keeps
11 significant bits: a copy's points move by up to 2e-3 of its size). Before the op runs,
every mesh's world matrix is captured; after it, each instance of a new point instancer is
matched to the copy it replaced (by where it sits), and its placement is re-authored from
that copy's exact matrix: `orientationsf` (float quaternions, which UsdGeom prefers over
`orientations` when both are authored), `positions` and `scales`. The half `orientations`
stay for readers older than `orientationsf`. Every instance is then recomputed through
UsdGeom and compared with its copy; anything short of float precision fails the target.
"""
import numpy as np
from pxr import Usd, UsdGeom, Vt

from ..errors import TaskError

# Float rounding of a placement, relative to the size of what it places (positions near
# 1e3 units keep about 6e-5 units): well below a half quaternion's 2e-3.
FLOAT_TOLERANCE = 1e-5
# How far a half-precision instance may sit from the copy it replaced, as a fraction of the
# distance from the prototype's origin (the rotation error) plus the float rounding.
MATCH_BAND = 4e-3


def uses_point_instancing(chain) -> bool:
    return any(step["operation"] == "deduplicateGeometry" and step.get("args", {}).get("duplicateMethod") == 4
               for step in chain)


class Placements:
    """Where every mesh and point instancer was before the chain ran."""

    def __init__(self, stage):
        cache = UsdGeom.XformCache()
        self.mesh_paths, matrices, self.instancers = [], [], set()
        for prim in Usd.PrimRange.Stage(stage, Usd.PrimDefaultPredicate):
            if prim.IsA(UsdGeom.Mesh):
                self.mesh_paths.append(prim.GetPath())
                matrices.append(cache.GetLocalToWorldTransform(prim))
            elif prim.IsA(UsdGeom.PointInstancer):
                self.instancers.add(prim.GetPath())
        self.matrices = np.array(matrices, dtype=np.float64).reshape(-1, 4, 4)


def restore_float_precision(stage, before: Placements) -> dict:
    """Re-author every new point instancer's placements from the copies they replaced.
    Returns {"instancers": n, "instances": n, "max_deviation": d} (d relative to mesh size)."""
    cache = UsdGeom.XformCache()

    def still_a_mesh(path) -> bool:
        prim = stage.GetPrimAtPath(path)
        return bool(prim) and prim.IsActive() and prim.IsA(UsdGeom.Mesh)

    gone = np.array([not still_a_mesh(p) for p in before.mesh_paths], dtype=bool)
    # The removed copies, sorted once by x (ties go to the first) and binned by place: each
    # instancer's instances search them there.
    candidates = np.flatnonzero(gone)
    candidates = candidates[np.argsort(before.matrices[candidates, 3, 0], kind="stable")]
    cells = _Cells(before.matrices[candidates, 3, :3])
    taken = np.zeros(len(before.mesh_paths), dtype=bool)
    default = Usd.TimeCode.Default()
    summary = {"instancers": 0, "instances": 0, "max_deviation": 0.0}
    new = [p for p in Usd.PrimRange.Stage(stage, Usd.PrimDefaultPredicate)
           if p.IsA(UsdGeom.PointInstancer) and p.GetPath() not in before.instancers]
    for prim in new:
        instancer = UsdGeom.PointInstancer(prim)
        roots = [stage.GetPrimAtPath(t) for t in instancer.GetPrototypesRel().GetForwardedTargets()]
        if not all(r and r.IsA(UsdGeom.Mesh) for r in roots):
            raise TaskError("instancer_precision_unsupported",
                            "a point instancer from deduplicateGeometry has a prototype that is not a single mesh", str(prim.GetPath()))
        indices = np.array(instancer.GetProtoIndicesAttr().Get(default), dtype=np.int64)
        half = np.array(instancer.ComputeInstanceTransformsAtTime(default, default), dtype=np.float64).reshape(-1, 4, 4)
        world = np.array(cache.GetLocalToWorldTransform(prim), dtype=np.float64)
        # A prototype's own transform (relative to its parent) comes before the instance's.
        local = np.array([np.array(cache.GetLocalToWorldTransform(r)) @ np.linalg.inv(np.array(cache.GetLocalToWorldTransform(r.GetParent())))
                          for r in roots]).reshape(-1, 4, 4)
        placed = local[indices] @ half @ world
        matched = _match(placed, before.matrices, candidates, cells, taken, local[indices], str(prim.GetPath()))
        exact = np.linalg.inv(local[indices]) @ before.matrices[matched] @ np.linalg.inv(world)
        positions, orientations, scales = _decompose(exact, str(prim.GetPath()))
        instancer.GetPositionsAttr().Set(Vt.Vec3fArray.FromNumpy(positions.astype(np.float32)))
        instancer.CreateScalesAttr().Set(Vt.Vec3fArray.FromNumpy(scales.astype(np.float32)))
        instancer.CreateOrientationsfAttr().Set(Vt.QuatfArray.FromNumpy(orientations.astype(np.float32)))
        rebuilt = local[indices] @ np.array(instancer.ComputeInstanceTransformsAtTime(default, default),
                                            dtype=np.float64).reshape(-1, 4, 4) @ world
        size = 1.0 + np.abs(before.matrices[matched][:, 3, :3]).max(axis=1, keepdims=True)[:, :, None]
        deviation = float((np.abs(rebuilt - before.matrices[matched]) / size).max(initial=0.0))
        if deviation > FLOAT_TOLERANCE:
            raise TaskError("instancer_precision_lost", f"instances of {prim.GetPath()} sit {deviation:.1e} (relative) from "
                            f"the copies they replaced, beyond float precision ({FLOAT_TOLERANCE:g})", str(prim.GetPath()))
        summary["instancers"] += 1
        summary["instances"] += len(indices)
        summary["max_deviation"] = max(summary["max_deviation"], deviation)
    return summary


def _match(placed, originals, candidates, cells, taken, local, where: str) -> np.ndarray:
    """For each instance, the removed copy it replaced: within the band half-precision rotation
    and float rounding allow of where the instance puts its mesh's origin, the copy whose whole
    placement is nearest (copies sharing a spot differ in rotation). Pairs are taken nearest
    first, each copy once; an instance left without one fails. `candidates` are sorted by x,
    which breaks ties between equally near copies; `cells` bins their origins."""
    centers = placed[:, 3, :3]
    bands = MATCH_BAND * np.linalg.norm(local[:, 3, :3], axis=1) + FLOAT_TOLERANCE * (1.0 + np.abs(centers).max(axis=1))
    owner, rank = cells.pairs(centers, bands)
    copy = candidates[rank]
    keep = ~taken[copy]
    owner, copy = owner[keep], copy[keep]
    offset = np.linalg.norm(originals[copy, 3, :3] - centers[owner], axis=1)
    near = offset <= bands[owner]
    owner, copy = owner[near], copy[near]
    distance = offset[near] + np.linalg.norm((originals[copy] - placed[owner])[:, :3, :3], axis=(1, 2))
    matched = np.full(len(placed), -1, dtype=np.int64)
    for i, c in zip(*(a[np.argsort(distance, kind="stable")].tolist() for a in (owner, copy))):
        if matched[i] < 0 and not taken[c]:
            matched[i], taken[c] = c, True
    if (matched < 0).any():
        raise TaskError("instancer_precision_unmatched",
                        f"instance {int(np.argmax(matched < 0))} of {where} replaced no mesh this target had", where)
    return matched


class _Cells:
    """The removed copies' origins binned in cubic cells no smaller than a band, so that an
    instance looks for its copy in the 27 cells around its own. A search along x alone paired
    every copy in a row of machines with every other: 147 candidates per mesh on the 100k hall
    (523 MB and 1.45-1.79 s for its 45,024 instances), against one here (26 MB, 0.19-0.21 s;
    3 interleaved runs). Built once
    per restore and again only when an instancer needs wider cells."""

    def __init__(self, points):
        self.points = points
        self.cell = 0.0

    def pairs(self, centers, bands):
        """(center, point) index pairs, ordered by center then point: every point within its
        center's band, and some further (the caller measures the distance)."""
        if not len(self.points) or not len(centers):
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        if bands.max() > self.cell:
            self._bin(max(float(bands.max()), 1e-300))
        home = np.floor((np.clip(centers, self.low, self.high) - self.low) / self.cell).astype(np.int64) + 1
        owners, ranks = [], []
        for offset in np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1])).reshape(3, -1).T:
            wanted = self._key(home + offset)
            lows, highs = np.searchsorted(self.keys, wanted), np.searchsorted(self.keys, wanted, side="right")
            sizes = highs - lows
            owners.append(np.repeat(np.arange(len(centers)), sizes))
            ranks.append(self.order[np.repeat(lows, sizes) + np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)])
        owner, rank = np.concatenate(owners), np.concatenate(ranks)
        by = np.lexsort((rank, owner))
        return owner[by], rank[by]

    def _bin(self, cell):
        self.low, self.high = self.points.min(axis=0), self.points.max(axis=0)
        # At most 2**20 cells a side, so that a cell's three coordinates fit one int64 key.
        self.cell = max(cell, float((self.high - self.low).max()) / 2**20)
        keys = self._key(np.floor((self.points - self.low) / self.cell).astype(np.int64) + 1)
        self.order = np.argsort(keys, kind="stable")
        self.keys = keys[self.order]

    @staticmethod
    def _key(coords):
        side = np.int64(2**20 + 3)
        return (coords[:, 0] * side + coords[:, 1]) * side + coords[:, 2]


def _decompose(matrices, where: str):
    """Positions, float quaternions (x, y, z, w: Vt's layout) and scales of instance matrices
    (scale, then rotate, then translate, as UsdGeom.PointInstancer composes them; USD
    matrices act on row vectors)."""
    linear = matrices[:, :3, :3]
    scales = np.linalg.norm(linear, axis=2)
    if (scales <= 0).any():
        raise TaskError("instancer_precision_unsupported", "an instance has a zero scale", where)
    rotations = linear / scales[:, :, None]
    mirrored = np.linalg.det(rotations) < 0
    scales[mirrored, 0] *= -1
    rotations[mirrored, 0] *= -1
    return matrices[:, 3, :3], _quaternions(rotations), scales


def _quaternions(rotations) -> np.ndarray:
    """Unit quaternions (x, y, z, w) of row-vector rotation matrices, each from the largest of
    its four candidate terms so that no division is by a small number."""
    m = np.transpose(rotations, (0, 2, 1))  # the column-vector form of the same rotations
    candidates = np.stack([1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2], 1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
                           1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2], 1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2]], axis=1)
    pick = np.argmax(candidates, axis=1)
    root = np.sqrt(np.maximum(candidates[np.arange(len(m)), pick], 1e-300)) * 2  # 4 × the picked component
    quaternions = np.empty((len(m), 4))
    sums = {(0, 1): m[:, 1, 0] + m[:, 0, 1], (0, 2): m[:, 0, 2] + m[:, 2, 0], (1, 2): m[:, 2, 1] + m[:, 1, 2]}
    diffs = (m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1])  # 4w·(x, y, z)
    for case in range(4):
        rows = pick == case
        r = root[rows]
        if case == 0:
            w, xyz = r / 4, [d[rows] / r for d in diffs]
            quaternions[rows] = np.column_stack([*xyz, w])
            continue
        k = case - 1  # the picked imaginary axis
        parts = [None, None, None]
        parts[k] = r / 4
        for j in (0, 1, 2):
            if j != k:
                parts[j] = sums[tuple(sorted((j, k)))][rows] / r
        quaternions[rows] = np.column_stack([*parts, diffs[k][rows] / r])
    return quaternions
