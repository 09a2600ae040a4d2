"""The prim table's columns: every row the walk emits has one value per declared column, in
the declared order, and the stream ships them as named columns. (The daemon's side of the
same list is tied to PRIM_COLUMNS by daemon/src/decisions/prims.rs.)"""
from pxr import Sdf, Usd, UsdGeom

from usdtune_executor.tasks.facts import _cut, _RowStream
from usdtune_executor.workers.stage_walk import PRIM_COLUMNS, walk_subtrees


def two_machines():
    """Two copies of one machine placed apart, and a third with another body."""
    stage = Usd.Stage.CreateInMemory()
    for name, x, size in (("A", 0, 1), ("B", 10, 1), ("C", 20, 2)):
        UsdGeom.Xform.Define(stage, f"/F/{name}").AddTranslateOp().Set((x, 0, 0))
        mesh = UsdGeom.Mesh.Define(stage, f"/F/{name}/Body")
        mesh.CreatePointsAttr([(0, 0, 0), (size, 0, 0), (0, size, 0)])
        mesh.CreateFaceVertexCountsAttr([3])
        mesh.CreateFaceVertexIndicesAttr([0, 1, 2])
    return stage


def walk(stage):
    rows = []
    roots = [(str(p.GetPath()), i) for i, p in enumerate(stage.Traverse()) if p.GetParent().IsPseudoRoot()]
    walk_subtrees(stage, roots, rows.extend)
    return [dict(zip(PRIM_COLUMNS, row)) for row in rows], rows


def test_every_row_has_one_value_per_column():
    named, raw = walk(two_machines())
    assert len(raw) == 7
    assert all(len(row) == len(PRIM_COLUMNS) for row in raw)
    by_path = {row["path"]: row for row in named}
    assert by_path["/F"]["prims"] == 7 and by_path["/F"]["meshes"] == 3
    assert by_path["/F/A/Body"]["type"] == "Mesh"
    assert by_path["/F/C"]["bounds"] == [20.0, 0.0, 0.0, 22.0, 2.0, 0.0]


def test_meshes_reduced_a_batch_at_a_time_give_the_rows_and_totals_of_one_batch(monkeypatch):
    """The walk reduces its meshes (topology, triangles, local boxes) every BATCH meshes; a
    batch of two splits the three bodies and an invalid fourth mesh across batches."""
    from usdtune_executor.workers import stage_walk

    def scene():
        stage = two_machines()
        broken = UsdGeom.Mesh.Define(stage, "/F/C/Broken")
        broken.CreatePointsAttr([(0, 0, 0), (1, 0, 0), (0, 1, 0)])
        broken.CreateFaceVertexCountsAttr([3])
        broken.CreateFaceVertexIndicesAttr([0, 1, 7])
        return stage

    def walked():
        stage, rows = scene(), []
        roots = [(str(p.GetPath()), i) for i, p in enumerate(stage.Traverse()) if p.GetParent().IsPseudoRoot()]
        totals = walk_subtrees(stage, roots, rows.extend)[1]
        return rows, totals.invalid_meshes, totals.rendered

    whole = walked()
    monkeypatch.setattr(stage_walk._Meshes, "BATCH", 2)
    assert walked() == whole
    rows, invalid, rendered = whole
    assert [path for path, _ in invalid] == ["/F/C/Broken"]
    assert sorted(tri for _, tri, _ in rendered) == [1, 1, 1], "the invalid mesh has no triangles counted"


def test_copies_placed_apart_hash_alike_and_other_content_does_not():
    by_path = {row["path"]: row for row in walk(two_machines())[0]}
    assert by_path["/F/A"]["hash"] == by_path["/F/B"]["hash"], "placement and name stay out of the hash"
    assert by_path["/F/A"]["hash"] != by_path["/F/C"]["hash"]


def test_the_stream_ships_named_columns_in_chunks():
    class Reporter:
        def __init__(self):
            self.chunks = []

        def records(self, table, columns):
            self.chunks.append((table, columns))

    reporter = Reporter()
    stream = _RowStream(reporter, enabled=True)
    _, raw = walk(two_machines())
    stream.add(raw)
    (table, columns), = reporter.chunks
    assert table == "prims" and list(columns) == list(PRIM_COLUMNS)
    assert all(len(values) == len(raw) for values in columns.values())
    assert stream.rows_sent == len(raw)


def test_the_cut_deals_every_prim_to_exactly_one_bin_or_above_the_cut():
    stage = Usd.Stage.CreateInMemory()
    for i in range(30):
        for j in range(200):
            stage.DefinePrim(Sdf.Path(f"/W/G{i}/P{j}"))
    paths = [str(p.GetPath()) for p in stage.Traverse()]
    position = {path: i for i, path in enumerate(paths)}
    parent = [position.get(path.rsplit("/", 1)[0], -1) for path in paths]
    bins, upper = _cut(paths, parent, [1.0, 1.0, 1.0])
    covered = set(upper)
    for roots in bins:
        for root in roots:
            subtree = {i for i, p in enumerate(paths) if p == paths[root] or p.startswith(paths[root] + "/")}
            assert not covered & subtree, "subtrees do not overlap"
            covered |= subtree
    assert covered == set(range(len(paths)))
    sizes = sorted(sum(1 + sum(p.startswith(paths[r] + "/") for p in paths) for r in roots) for roots in bins)
    assert sizes[-1] - sizes[0] <= 201, f"bins are balanced to a subtree: {sizes}"
