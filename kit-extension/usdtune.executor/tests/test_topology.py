"""Invalid mesh input is found, with the first problem of each mesh, and valid meshes pass."""
import math

from pxr import Vt

from usdtune_executor.usd.topology import invalid_meshes


def mesh(points=((0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)), counts=(3, 3), indices=(0, 1, 2, 1, 3, 2)):
    return Vt.Vec3fArray(points), Vt.IntArray(counts), Vt.IntArray(indices)


def test_each_kind_of_invalid_mesh_is_named_and_valid_ones_pass():
    found = invalid_meshes([
        ("good", *mesh()),
        ("quad", *mesh(counts=(4,), indices=(0, 1, 3, 2))),
        ("negative", *mesh(counts=(3, -3), indices=(0, 1, 2))),
        ("short", *mesh(counts=(3, 3), indices=(0, 1, 2, 1, 3))),
        ("outside", *mesh(indices=(0, 1, 2, 1, 9, 2))),
        ("below", *mesh(indices=(0, 1, -1, 1, 3, 2))),
        ("nan", *mesh(points=((0, 0, 0), (math.nan, 0, 0), (0, 1, 0), (1, 1, 0)))),
        ("inf", *mesh(points=((0, 0, 0), (1, 0, 0), (0, math.inf, 0), (1, 1, 0)))),
        ("no faces", Vt.Vec3fArray([(0, 0, 0)]), Vt.IntArray(), Vt.IntArray([0])),
        ("empty", Vt.Vec3fArray(), Vt.IntArray(), Vt.IntArray()),
        ("unauthored", None, None, None),
        ("time-sampled points", None, *mesh()[1:]),
        ("time-sampled topology", mesh()[0], None, Vt.IntArray([0, 1, 2])),
        ("good too", *mesh()),
    ])
    assert set(found) == {"negative", "short", "outside", "below", "nan", "inf", "no faces"}, found
    assert found["negative"] == "a face has -3 vertices (at least 3)"
    assert found["short"] == "face vertex counts add up to 6, but there are 5 indices"
    assert found["outside"] == "face vertex index 9 is outside the 4 points"
    assert found["below"] == "face vertex index -1 is outside the 4 points"
    assert "not finite" in found["nan"] and "not finite" in found["inf"]


def test_nothing_to_check_is_nothing_found():
    assert invalid_meshes([]) == {}
