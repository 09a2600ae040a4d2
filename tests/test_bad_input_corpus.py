"""The bad-input corpus: stages a hostile but fair user hands usdtune, generated here, each run
through the real CLI. Every case must end with its documented code (exit 2 for bad input) or
complete (exit 0) keeping what it must keep; no stream carries a traceback; a failed run leaves
no output stage and no report that could pass for a finished run; and the whole source tree is
byte-identical afterwards.
"""
import json
import os
import re
import shutil
import time
from pathlib import Path

from pxr import Sdf, Usd

from conftest import FIXTURE, REPO, tree_digest, usdtune

DOCUMENTED = set(re.findall(r"^\| `([a-z_]+)` \|", (REPO / "docs" / "error-codes.md").read_text(), re.M))
# A run that completes: its code is empty and its exit 0.
COMPLETES = ""

MESH = """
def Xform "W"
{{
    def Mesh "M"
    {{
        int[] faceVertexCounts = {counts}
        int[] faceVertexIndices = {indices}
        point3f[] points = {points}
    }}
}}
"""
POINTS = "[(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0)]"


def usda(body: str, header: str = 'defaultPrim = "W"') -> str:
    return f"#usda 1.0\n(\n    {header}\n)\n{body}\n"


def mesh(counts="[3, 3]", indices="[0, 1, 2, 1, 3, 2]", points=POINTS) -> str:
    return usda(MESH.format(counts=counts, indices=indices, points=points))


def crate_bytes(tmp: Path) -> bytes:
    layer = Sdf.Layer.CreateNew(str(tmp / "crate.usdc"))
    Sdf.CreatePrimInLayer(layer, "/W/A").specifier = Sdf.SpecifierDef
    layer.Save()
    return (tmp / "crate.usdc").read_bytes()


def huge_stage(path: Path, prims: int) -> None:
    """About `prims` prims: groups of 50 Xforms, each holding one small mesh, in one crate layer."""
    layer = Sdf.Layer.CreateNew(str(path))

    def define(prim_path, type_name):
        spec = Sdf.CreatePrimInLayer(layer, prim_path)
        spec.specifier, spec.typeName = Sdf.SpecifierDef, type_name
        return spec

    with Sdf.ChangeBlock():
        define("/W", "Xform")
        for g in range(prims // 101):
            define(f"/W/G{g}", "Xform")
            for k in range(50):
                define(f"/W/G{g}/X{k}", "Xform")
                m = define(f"/W/G{g}/X{k}/M", "Mesh")
                for name, value_type, value in (("faceVertexCounts", Sdf.ValueTypeNames.IntArray, [3]),
                                                ("faceVertexIndices", Sdf.ValueTypeNames.IntArray, [0, 1, 2]),
                                                ("points", Sdf.ValueTypeNames.Point3fArray,
                                                 [(0, 0, 0), (1, 0, 0), (0, 1, 0)])):
                    Sdf.AttributeSpec(m, name, value_type).default = value
    layer.defaultPrim = "W"
    layer.Save()


def corpus(src: Path) -> list:
    """(name, stage path, expected code, extra check or None), the files written under `src`."""
    src.mkdir()
    scratch = src.parent / "scratch"
    scratch.mkdir()
    cases = []

    def case(name, text=None, code=COMPLETES, data=None, check=None, file=None):
        path = src / (file or f"{name}.usda")
        if text is not None:
            path.write_text(text)
        if data is not None:
            path.write_bytes(data)
        cases.append((name, path, code, check))
        return path

    # Not a stage at all.
    case("missing", code="stage_not_found")
    (src / "folder.usda").mkdir()
    case("folder", code="stage_is_directory", file="folder.usda")
    os.mkfifo(src / "fifo.usda")
    case("fifo", code="stage_not_a_file", file="fifo.usda")
    for name, file in (("no extension", "no_extension"), ("trailing dot", "trailing_dot."), ("text", "notes.txt")):
        shutil.copy2(FIXTURE, src / file)
        case(name, code="unsupported_format", file=file)
    os.symlink("loop_b.usda", src / "loop_a.usda")
    os.symlink("loop_a.usda", src / "loop_b.usda")
    case("symlink loop", code="stage_unreadable", file="loop_a.usda")
    os.symlink("gone.usda", src / "dangling.usda")
    case("dangling symlink", code="stage_not_found", file="dangling.usda")
    # Bytes USD cannot read.
    case("random bytes usdc", data=os.urandom(4096), code="stage_open_failed", file="random.usdc")
    case("random bytes usda", data=os.urandom(4096), code="stage_open_failed", file="random.usda")
    case("random bytes usdz", data=os.urandom(4096), code="stage_open_failed", file="random.usdz")
    case("empty file", text="", code="stage_open_failed")
    case("truncated usda", text=FIXTURE.read_text()[:3000], code="stage_open_failed")
    crate = crate_bytes(scratch)
    case("truncated usdc", data=crate[: len(crate) // 2], code="stage_open_failed", file="truncated.usdc")
    case("usda syntax error", text=usda('def Xform "W" { def Cube "C" {'), code="stage_open_failed")
    (src / "broken_sub.usda").write_text('#usda 1.0\ndef Xform "X" { def Cube "C" {} }\n')
    case("broken sublayer", text=usda('def Xform "W" {}', 'subLayers = [@./broken_sub.usda@]\n    defaultPrim = "W"'),
         code="stage_open_failed")
    # Geometry that cannot be trusted.
    case("negative face count", text=mesh(counts="[3, -3]", indices="[0, 1, 2]"), code="input_geometry_invalid")
    case("face of two vertices", text=mesh(counts="[2, 4]"), code="input_geometry_invalid")
    case("index out of range", text=mesh(indices="[0, 1, 2, 1, 9, 2]"), code="input_geometry_invalid")
    case("negative index", text=mesh(indices="[0, 1, -2, 1, 3, 2]"), code="input_geometry_invalid")
    case("counts and indices disagree", text=mesh(indices="[0, 1, 2, 1, 3]"), code="input_geometry_invalid")
    case("nan point", text=mesh(points="[(0, 0, 0), (nan, 0, 0), (0, 1, 0), (1, 1, 0)]"),
         code="input_geometry_invalid")
    case("infinite point", text=mesh(points="[(0, 0, 0), (1, 0, 0), (0, inf, 0), (1, 1, 0)]"),
         code="input_geometry_invalid")
    # Composition cycles.
    (src / "cycle_b.usda").write_text(usda('def Xform "W" (\n    references = @./cycle_a.usda@\n)\n{\n}'))
    case("reference cycle", text=usda('def Xform "W" (\n    references = @./cycle_b.usda@\n)\n{\n    def Cube "C" {}\n}'),
         code="input_composition_cycle", file="cycle_a.usda")
    (src / "sub_b.usda").write_text(usda('def Xform "V" {}', "subLayers = [@./sub_a.usda@]"))
    case("sublayer cycle", text=usda('def Xform "W" {}', 'subLayers = [@./sub_b.usda@]\n    defaultPrim = "W"'),
         code="input_composition_cycle", file="sub_a.usda")

    # Content that did not resolve is kept, not pruned as empty, and is not an improvement.
    def world_kept(out: Path, report: dict):
        assert report["verdict"] != "improved", report["verdict"]
        written = list((out / "optimized").glob("*.usd*")) if (out / "optimized").exists() else []
        for stage in written:
            assert Usd.Stage.Open(str(stage)).GetPrimAtPath("/W"), f"/W pruned from {stage}"

    case("payload to a missing file", text=usda('def Xform "W" (\n    payload = @./missing_asset.usda@\n)\n{\n}'),
         check=world_kept)

    def annex_kept(out: Path, report: dict):
        stage = Usd.Stage.Open(str(next((out / "optimized").glob("*.usd*"))))
        assert stage.GetPrimAtPath("/W/Annex"), "the prim with the missing reference was pruned"

    case("missing reference and sublayer",
         text=mesh().replace('def Xform "W"\n{', 'def Xform "W"\n{\n    def Xform "Annex" (\n'
                             '        references = @./missing_annex.usda@\n    )\n    {\n    }\n', 1)
         .replace('defaultPrim = "W"', 'subLayers = [@./missing_sub.usda@]\n    defaultPrim = "W"'),
         check=annex_kept)
    case("nonsense units", text=mesh().replace('defaultPrim = "W"', 'defaultPrim = "W"\n    metersPerUnit = -5\n'
                                                                   '    upAxis = "Q"'))
    # Many prims: answered within a bounded time (assessment only, the slowest read-only path).
    huge_stage(src / "huge.usdc", 100_000)
    cases.append(("100k prims", src / "huge.usdc", COMPLETES, None))
    shutil.rmtree(scratch)
    return cases


def test_every_bad_input_ends_with_its_documented_code_and_nothing_else_changes(home, tmp_path):
    src = tmp_path / "src"
    cases = corpus(src)
    assert len(cases) >= 25
    before = tree_digest(src)
    problems = []
    for name, stage, code, check in cases:
        out = tmp_path / "out" / re.sub(r"\W+", "_", name)
        command = "assess" if name == "100k prims" else "optimize"
        args = [command, str(stage), "-o", str(out), "--json"]
        if command == "optimize":
            args += ["--restructure", "optimize-as-is"]
        started = time.time()
        done = usdtune(home, *args, timeout=600)
        seconds = time.time() - started
        try:
            assert "Traceback" not in done.stdout + done.stderr, "a traceback"
            document = json.loads(done.stdout)
            got = document.get("code") or ""
            assert got == code, f"code {got!r}, expected {code!r}: {document.get('message')}"
            assert done.returncode == (0 if code == COMPLETES else 2), f"exit {done.returncode}"
            if code:
                assert code in DOCUMENTED, f"{code} is not in docs/error-codes.md"
                # The offending path: the stage for a refused request, else the layer or prim at fault.
                if document["state"] == "refused":
                    assert stage.name in document["message"], "the stage is named"
                else:
                    assert "/" in document["message"], "a path is named"
                assert not (out / "optimized").exists(), "a failed run left an output stage"
                assert not (out / "optimization-report.json").exists(), "a failed run left a report"
            elif command == "optimize":
                report = json.loads((out / "optimization-report.json").read_text())
                if check:
                    check(out, report)
            if name == "100k prims":
                assert seconds < 120, f"{seconds:.0f}s"
        except (AssertionError, ValueError, StopIteration) as err:
            problems.append(f"{name}: {str(err).splitlines()[0]}\n    stderr: {done.stderr.strip()[-300:]}")
    assert tree_digest(src) == before, "a source file changed"
    assert not problems, "\n".join(problems)
