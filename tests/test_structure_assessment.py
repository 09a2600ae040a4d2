"""Phases 1b/2a/2b/2d on real scenes: `usdtune assess` over the whole corpus in one
session (one warm executor), then what the issue asks of named scenes.

Runs against ../shared/corpus (read-only inputs, never copied into the repo)."""
import hashlib
import json
from pathlib import Path

import jsonschema
import pytest

from conftest import FIXTURE, REPO, isolated_env, schema_for, usdtune

CORPUS = REPO.parent / "shared" / "corpus"
USD_SUFFIXES = (".usd", ".usda", ".usdc", ".usdz")
# Files the corpus ships broken on purpose (CATALOG.md): the only ones allowed to fail,
# and only with a clean input-error code.
INTENTIONALLY_INVALID = {
    "nvidia_scene_optimizer_testdata/maxDataVolumePartial_decimate_pinBoundaries_golden.usd",
    "usdwg_foundation_composition_tests/stage_configuration/framesPerSecond/framesPerSecond_-1.usda",
    "usdwg_foundation_composition_tests/stage_configuration/framesPerSecond/framesPerSecond_0.usda",
}

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus not found at {CORPUS}")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Every corpus stage assessed; returns ({corpus-relative path: run document}, stderr)."""
    root = tmp_path_factory.mktemp("sweep")
    env = isolated_env(root)
    stages = sorted(str(p) for p in CORPUS.rglob("*") if p.suffix in USD_SUFFIXES and p.is_file())
    before = {s: hashlib.sha256(Path(s).read_bytes()).hexdigest() for s in stages}
    done = usdtune(env, "assess", *stages, "-o", str(root / "out"), "--json", timeout=1800)
    assert done.returncode in (0, 2), done.stderr[-3000:]
    docs = json.loads(done.stdout)
    assert len(docs) == len(stages)
    assert before == {s: hashlib.sha256(Path(s).read_bytes()).hexdigest() for s in stages}, "a source stage changed"
    return {str(Path(d["stage_path"]).relative_to(CORPUS.resolve())): d for d in docs}, done.stderr


def artifact(doc, name):
    return json.loads((Path(doc["workspace"]) / f"{name}.json").read_text())


def test_every_corpus_file_gets_a_valid_assessment_or_a_clean_error(sweep):
    docs, stderr = sweep
    assert "Traceback" not in stderr
    failed = {path: doc for path, doc in docs.items() if doc["state"] != "completed"}
    assert set(failed) == INTENTIONALLY_INVALID, {p: d.get("message") for p, d in failed.items()}
    assert all(doc["code"] == "stage_open_failed" for doc in failed.values())
    for path, doc in docs.items():
        if doc["state"] == "completed":
            for name in ("stage-facts", "structure-assessment", "dedupe-candidates"):
                jsonschema.validate(artifact(doc, name), schema_for(name))


def test_drawmodes_35_references_of_one_asset_are_one_group_with_readiness(sweep):
    doc = sweep[0]["usdwg_Teapot/DrawModes.usd"]
    groups = artifact(doc, "dedupe-candidates")["groups"]
    teapots = [g for g in groups if g["source"] == "reference" and g["copies"] == 35]
    assert len(teapots) == 1, [(g["path_pattern"], g["copies"]) for g in groups]
    group = teapots[0]
    assert group["selected"] and group["key"].endswith("Teapot.usd@</Teapot>")
    # The copies select different model/shading variants: one prototype per combination.
    assert group["readiness"] == "variant_divergence" and group["prototypes"] > 1
    structure = artifact(doc, "structure-assessment")
    assert structure["classification"]["kind"] == "composed"
    assert structure["hierarchy_dedupe"]["recommended"] is True


def test_duplex_bim_placements_are_groups_counted_once(sweep):
    doc = sweep[0]["bim_Duplex_ifc2usd/Duplex_A_20110907.usdc"]
    candidates = artifact(doc, "dedupe-candidates")
    selected = [g for g in candidates["groups"] if g["selected"]]
    assert len(selected) >= 20
    assert sum(g["copies"] for g in selected) >= 100
    # The scene's nodes reference a hidden library: the library nodes are the definitions
    # they share, never copies of their own users (that pairing had counted 1,250 prims saved
    # of 2,357 and 729 duplicate meshes).
    facts = artifact(doc, "stage-facts")
    library = facts["internal_reference_targets"]
    assert library and all(p.startswith("/Asset/Library/") for p in library)
    inside = lambda path: any(path == d or path.startswith(d + "/") for d in library)
    assert not [m for g in candidates["groups"] for m in g["members"] if inside(m)]
    assert 0 < candidates["total_prim_savings"] < 0.3 * candidates["prims_hashed"]
    assert candidates["total_byte_savings"] == 0, "the copies' content is stored once, in the library, already"
    geometry = facts["geometry"]
    assert geometry["duplicate_meshes"] < 0.2 * geometry["distinct_mesh_geometries"]
    structure = artifact(doc, "structure-assessment")
    assert structure["classification"]["kind"] == "monolithic-needs-restructure"
    assert structure["phase_recommendation"] == "structuring"


def test_ant_multi_is_flagged_articulated_and_its_robots_are_not_shared(sweep):
    doc = sweep[0]["newton_physics_assets/ant_multi.usda"]
    structure = artifact(doc, "structure-assessment")
    assert structure["asset_physical_context"]["articulated"] is True
    assert structure["asset_physical_context"]["physics_prim_count"] > 100
    assert any(f["id"] == "articulated_or_physics_content" for f in structure["findings"])
    robots = [g for g in artifact(doc, "dedupe-candidates")["groups"] if g["path_pattern"].endswith("/Robot")]
    assert robots and all("articulated" in g["content_flags"] and not g["selected"] for g in robots)


def test_open_chess_set_is_composed(sweep):
    structure = artifact(sweep[0]["usdwg_OpenChessSet/chess_set.usda"], "structure-assessment")
    assert structure["classification"]["kind"] == "composed"
    assert structure["composition"]["layers"] > 1 and structure["composition"]["payloads"] > 0


@pytest.mark.parametrize("stage", [
    "arnold_usd_instancing_tests/test_0218/data/test.usda",
    "usdwg_SubdivisionSurfaces/Creases_SpinningPyramids.usda",
])
def test_an_instanced_stage_is_not_asked_to_restructure(sweep, stage):
    structure = artifact(sweep[0][stage], "structure-assessment")
    assert structure["summary_counts"]["instance_count"] > 0
    assert structure["phase_recommendation"] != "structuring"
    assert structure["hierarchy_dedupe"]["recommended"] is False


def test_factory_housings_nominate_containment_pairs_once_per_machine_type(home, tmp_path):
    done = usdtune(home, "assess", str(FIXTURE), "-o", str(tmp_path / "out"), "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    structure = json.loads((tmp_path / "out" / "structure-assessment.json").read_text())
    pairs = structure["validation_scope"]["cross_component_pairs"]
    boundaries = {b["boundary_id"]: b for b in structure["asset_boundary_suggestions"]["boundaries"]}
    assert pairs, "the generated housings enclose parts"
    for pair in pairs:
        enclosing = boundaries[pair["enclosing_boundary_id"]]
        assert enclosing["spatial_role"] == "enclosing" and enclosing["prim_path"].endswith("/Housing")
        assert boundaries[pair["enclosed_boundary_id"]]["spatial_role"] == "enclosed"
        assert pair["enclosure_opaque"] is True  # UsdPreviewSurface without opacity
    # Repeated machines are nominated through their kept copy only.
    housings = {boundaries[p["enclosing_boundary_id"]]["prim_path"] for p in pairs}
    kept = set(structure["validation_scope"]["per_asset"])
    assert housings and all(h.rsplit("/", 1)[0] in kept for h in housings)
    assert structure["timing"]["fact_collection_seconds"] > 0
