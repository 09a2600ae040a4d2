"""The executor's shared helpers: stage paths refused with stable codes, layers written whole
or not at all, workers started one way."""
import os
import sys

import pytest
from pxr import Sdf

from usdtune_executor import workers
from usdtune_executor.errors import TaskError
from usdtune_executor.tasks import TASK_HANDLERS
from usdtune_executor.usd import export
from usdtune_executor.usd.export import commit, export_atomically, export_partial, partial_path
from usdtune_executor.usd.stage import check_stage_path


def test_bad_stage_paths_get_their_codes(tmp_path):
    cases = {"": "stage_path_missing", str(tmp_path / "nope.usda"): "stage_not_found", str(tmp_path): "stage_is_directory"}
    (tmp_path / "notes.txt").write_text("hello")
    cases[str(tmp_path / "notes.txt")] = "unsupported_format"
    for path, code in cases.items():
        with pytest.raises(TaskError) as raised:
            check_stage_path(path)
        assert raised.value.code == code, path


def test_a_layer_appears_whole_and_no_partial_file_is_left(tmp_path):
    layer = Sdf.Layer.CreateAnonymous(".usda")
    Sdf.CreatePrimInLayer(layer, "/World")
    target = tmp_path / "deep" / "out.usda"
    export_atomically(layer, str(target))
    assert Sdf.Layer.FindOrOpen(str(target)).GetPrimAtPath("/World")
    assert sorted(os.listdir(target.parent)) == ["out.usda"]


def test_several_files_are_renamed_only_when_all_were_written(tmp_path):
    layer = Sdf.Layer.CreateAnonymous(".usda")
    first = str(tmp_path / "a.usda")
    pending = [(export_partial(layer, first), first)]
    assert not os.path.exists(first) and os.path.exists(partial_path(first)), "not visible before the commit"
    commit(pending)
    assert os.path.exists(first) and not os.path.exists(partial_path(first))


def test_each_attempt_writes_its_own_partial_and_an_abandoned_one_promotes_nothing(tmp_path):
    """A task leased again after its executor went silent: the old attempt may still be
    writing. Neither touches the other's partial file, and the one the daemon gave up on
    leaves the final path to the live one."""
    old_layer, new_layer = Sdf.Layer.CreateAnonymous(".usda"), Sdf.Layer.CreateAnonymous(".usda")
    Sdf.CreatePrimInLayer(old_layer, "/Old")
    Sdf.CreatePrimInLayer(new_layer, "/New")
    final = str(tmp_path / "out.usda")
    with export.attempt("11111111-aaaa-bbbb-cccc-000000000001"):
        old_pending = [(export_partial(old_layer, final), final)]
    with export.attempt("22222222-aaaa-bbbb-cccc-000000000002"):
        export_atomically(new_layer, final)
    assert old_pending[0][0].endswith("out.partial-11111111aaaa.usda")
    assert os.path.exists(old_pending[0][0]), "the new attempt did not write over the old one's partial"

    with export.attempt("11111111-aaaa-bbbb-cccc-000000000001"):
        export.abandon("11111111-aaaa-bbbb-cccc-000000000001")
        with pytest.raises(TaskError) as raised:
            commit(old_pending)
    assert raised.value.code == "cancelled"
    assert sorted(os.listdir(tmp_path)) == ["out.usda"], "the abandoned partial is gone"
    assert Sdf.Layer.FindOrOpen(final).GetPrimAtPath("/New"), "the live attempt's output stands"


def test_an_unwritable_destination_is_export_failed(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TaskError) as raised:
        export_atomically(Sdf.Layer.CreateAnonymous(".usda"), str(blocker / "out.usda"))
    assert raised.value.code == "export_failed" and raised.value.path.endswith("out.partial.usda")


def test_workers_start_as_modules_of_this_package_with_it_on_the_path():
    command = workers.command("stage_walk", "/s.usda", 3)
    assert command[:3] == [sys.executable, "-m", "usdtune_executor.workers.stage_walk"]
    assert command[3:] == ["/s.usda", "3"]
    assert workers.environment()["PYTHONPATH"].split(os.pathsep)[0] == workers.PACKAGE_ROOT
    for module in ("stage_walk", "profile_capture", "validation_worker"):
        assert os.path.isfile(os.path.join(os.path.dirname(workers.__file__), f"{module}.py"))


def test_every_task_kind_has_a_module_with_run():
    assert set(TASK_HANDLERS) == {"probe", "profile", "profile_pair", "facts", "validate", "operations", "geometry", "restructure",
                                  "instancing", "remap", "nucleus_stat"}
    assert all(callable(handler) for handler in TASK_HANDLERS.values())
