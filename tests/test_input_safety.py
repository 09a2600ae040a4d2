"""Nothing lost, nothing overwritten: a workspace belongs to one run, no output can land on a
file the source composes, and a branch the stage does not offer is refused the same way
everywhere. (Bad stages themselves: test_bad_input_corpus.py.)

Every case runs the real CLI (embedded daemon, real executor) and checks the exit code, the
stable code in the one JSON document `--json` prints, that no stream carries a traceback,
and that the source tree is byte-identical afterwards.
"""
import json
import shutil
from pathlib import Path

import pytest

from conftest import FIXTURE, tree_digest, usdtune


def refused(done, code):
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr + done.stdout
    document = json.loads(done.stdout)
    assert (document["state"], document["code"]) == ("refused", code), document
    return document


def test_an_output_folder_holding_the_source_or_a_layer_it_composes_is_refused(home, tmp_path):
    # The source's own folder.
    scene = tmp_path / "scene"
    scene.mkdir()
    stage = scene / FIXTURE.name
    shutil.copy2(FIXTURE, stage)
    before = tree_digest(scene)
    refused(usdtune(home, "optimize", str(stage), "-o", str(scene), "--json"), "output_overlaps_source")
    assert tree_digest(scene) == before
    # A folder that holds a sublayer the source composes: not empty, so refused up front; with
    # --force, found once the dependencies are known (Phase 2c), before any stage is written.
    parts = tmp_path / "parts"
    parts.mkdir()
    (parts / "sub.usda").write_text('#usda 1.0\ndef Xform "Extra"\n{\n    def Cube "Box"\n    {\n    }\n}\n')
    root = tmp_path / "root.usda"
    text = FIXTURE.read_text()
    root.write_text(text.replace("(\n    defaultPrim", f'(\n    subLayers = [@{parts / "sub.usda"}@]\n    defaultPrim', 1))
    sources = (parts / "sub.usda").read_bytes(), root.read_bytes()
    refused(usdtune(home, "optimize", str(root), "-o", str(parts), "--json"), "output_dir_not_empty")
    done = usdtune(home, "optimize", str(root), "-o", str(parts), "--restructure", "optimize-as-is", "--force", "--json")
    assert done.returncode == 2, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["code"] == "output_overlaps_source" and "sub.usda" in summary["message"]
    assert not (parts / "optimized").exists()
    # The run's JSON artifacts are there; no stage was written, and the source is as it was.
    assert ((parts / "sub.usda").read_bytes(), root.read_bytes()) == sources


def test_a_workspace_belongs_to_one_run(home, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    first, second = src / "a.usda", src / "b.usda"
    shutil.copy2(FIXTURE, first)
    shutil.copy2(FIXTURE, second)
    out = tmp_path / "out"
    done = usdtune(home, "optimize", str(first), "-o", str(out), "--restructure", "deduplicate-internally", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "apply-restructure-manifest.json").exists()
    # Another stage into the same folder: refused, then allowed with --force, and nothing of
    # the first run is left to be read as the second's.
    refused(usdtune(home, "optimize", str(second), "-o", str(out), "--json"), "output_dir_in_use")
    done = usdtune(home, "optimize", str(second), "-o", str(out), "--restructure", "optimize-as-is", "--force", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (out / "apply-restructure-manifest.json").exists() and not (out / "restructured").exists()
    report = json.loads((out / "optimization-report.json").read_text())
    assert report["input_path"] == str(second)
    # The same stage again: the previous run is replaced without --force.
    done = usdtune(home, "optimize", str(second), "-o", str(out), "--restructure", "exit", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not (out / "optimized").exists() and not (out / "operations-status.json").exists()
    # A folder with someone else's files.
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    refused(usdtune(home, "optimize", str(first), "-o", str(foreign), "--json"), "output_dir_not_empty")
    assert (foreign / "notes.txt").read_text() == "mine" and len(list(foreign.iterdir())) == 1


@pytest.mark.parametrize("branch", ["deduplicate-internally", "extract-as-assets"])
def test_an_unoffered_branch_is_refused_the_same_way_on_every_stage(home, tmp_path, branch):
    # The already-instanced test stage of test_report_contract: its gate is automatic (continue).
    from test_report_contract import INSTANCED_STAGE
    import subprocess
    import sys
    stage = tmp_path / "instanced.usda"
    subprocess.run([sys.executable, "-c", INSTANCED_STAGE, str(stage)], check=True)
    done = usdtune(home, "optimize", str(stage), "-o", str(tmp_path / "out"), "--restructure", branch, "--json")
    assert done.returncode == 2, done.stderr[-2000:]
    assert json.loads(done.stdout)["code"] == "invalid_restructure_branch"
    assert "is not offered for this stage" in done.stderr
