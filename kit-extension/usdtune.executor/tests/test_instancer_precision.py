"""The float-precision restore's math: placements decomposed into positions, float
quaternions and scales rebuild the matrices they came from (mirrors included), in the order
UsdGeom.PointInstancer composes them."""
import numpy as np
import pytest
from pxr import Gf

from usdtune_executor.errors import TaskError
from usdtune_executor.usd.instancer_precision import _Cells, _decompose, _match, _quaternions, uses_point_instancing


def matrix(axis, degrees, scale, translate):
    """A row-vector USD matrix: scale, then rotate, then translate."""
    m = Gf.Matrix4d().SetScale(Gf.Vec3d(*scale)) * Gf.Matrix4d().SetRotate(Gf.Rotation(Gf.Vec3d(*axis), degrees))
    m = m * Gf.Matrix4d().SetTranslate(Gf.Vec3d(*translate))
    return np.array(m, dtype=np.float64)


def rebuild(position, quaternion, scale):
    x, y, z, w = quaternion
    rotation = Gf.Matrix4d().SetRotate(Gf.Quatd(w, Gf.Vec3d(x, y, z)))
    m = Gf.Matrix4d().SetScale(Gf.Vec3d(*scale)) * rotation * Gf.Matrix4d().SetTranslate(Gf.Vec3d(*position))
    return np.array(m, dtype=np.float64)


CASES = [((0, 0, 1), 0.0, (1, 1, 1), (0, 0, 0)), ((0, 0, 1), 90.0, (2, 2, 2), (5, 0, 1)),
         ((1, 1, 0), 179.9, (1, 3, 0.5), (-4, 2, 9)), ((0.3, -1, 0.2), 271.0, (0.01, 0.01, 0.01), (1e3, 0, -1e3)),
         ((1, 0, 0), 180.0, (1, 1, 1), (0, 0, 0)), ((0, 1, 0), 180.0, (1, 2, 1), (0, 0, 0))]


@pytest.mark.parametrize("axis,degrees,scale,translate", CASES)
def test_decomposed_placements_rebuild_their_matrix(axis, degrees, scale, translate):
    original = matrix(axis, degrees, scale, translate)
    positions, quaternions, scales = _decompose(original[None], "/I")
    assert np.allclose(np.linalg.norm(quaternions, axis=1), 1.0)
    assert np.allclose(rebuild(positions[0], quaternions[0], scales[0]), original, atol=1e-9)


def test_a_mirrored_copy_keeps_its_mirror_in_the_scale():
    original = matrix((0, 0, 1), 30.0, (-1, 1, 1), (3, 0, 0))
    positions, quaternions, scales = _decompose(original[None], "/I")
    assert scales[0][0] < 0
    assert np.allclose(rebuild(positions[0], quaternions[0], scales[0]), original, atol=1e-9)


def test_quaternions_match_usd_for_every_largest_term():
    for axis, degrees in (((0, 0, 1), 10.0), ((1, 0, 0), 170.0), ((0, 1, 0), 170.0), ((0, 0, 1), 170.0)):
        rotation = Gf.Rotation(Gf.Vec3d(*axis), degrees)
        expected = rotation.GetQuat()
        (x, y, z, w), = _quaternions(np.array(Gf.Matrix3d(rotation), dtype=np.float64)[None])
        got = Gf.Quatd(w, Gf.Vec3d(x, y, z))
        # q and -q are the same rotation.
        assert min(abs(Gf.Dot(got, expected) - 1), abs(Gf.Dot(got, expected) + 1)) < 1e-12


def test_a_zero_scale_cannot_be_expressed():
    with pytest.raises(TaskError) as raised:
        _decompose(matrix((0, 0, 1), 0.0, (0, 1, 1), (0, 0, 0))[None], "/I")
    assert raised.value.code == "instancer_precision_unsupported"


def test_only_a_point_instancer_dedupe_needs_the_restore():
    assert uses_point_instancing([{"operation": "deduplicateGeometry", "args": {"duplicateMethod": 4}}])
    assert not uses_point_instancing([{"operation": "deduplicateGeometry", "args": {"duplicateMethod": 2}}])
    assert not uses_point_instancing([{"operation": "meshCleanup", "args": {}}])


def test_copies_in_a_row_are_matched_by_place_without_pairing_every_one_with_every_other():
    """200 copies sharing x (a row of machines), instances in another order with rotation
    noise: each finds its own copy, looking at a handful of candidates rather than the row."""
    originals = np.tile(np.eye(4), (200, 1, 1))
    originals[:, 3, 2] = np.arange(200) * 2.0
    candidates = np.argsort(originals[:, 3, 0], kind="stable")
    order = np.random.default_rng(3).permutation(200)
    placed = originals[order].copy()
    placed[:, :3, :3] += 1e-4
    local = np.tile(np.eye(4), (200, 1, 1))
    local[:, 3, 0] = 1.0
    cells = _Cells(originals[candidates, 3, :3])
    owner, _ = cells.pairs(placed[:, 3, :3], np.full(200, 4e-3))
    assert len(owner) <= 3 * 200
    taken = np.zeros(200, dtype=bool)
    assert np.array_equal(_match(placed, originals, candidates, cells, taken, local, "/I"), order)
    assert taken.all()


def test_an_instance_with_no_copy_near_it_fails_the_target():
    originals = np.tile(np.eye(4), (2, 1, 1))
    originals[1, 3, 0] = 5.0
    placed = originals.copy()
    placed[1, 3, :3] = (1e4, -1e4, 3.0)  # far outside every copy
    candidates = np.arange(2)
    with pytest.raises(TaskError) as raised:
        _match(placed, originals, candidates, _Cells(originals[candidates, 3, :3]), np.zeros(2, dtype=bool),
               np.tile(np.eye(4), (2, 1, 1)), "/I")
    assert raised.value.code == "instancer_precision_unmatched"
