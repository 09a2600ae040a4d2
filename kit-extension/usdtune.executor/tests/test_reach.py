"""What an executor advertises about its reach (connection.reach): the folders from
USDTUNE_PATH_ROOTS made absolute, the daemon-to-here prefix map as given, and its machine."""
import os

from usdtune_executor.connection import reach, use_reach


def test_reach_reads_roots_and_map_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("USDTUNE_PATH_ROOTS", os.pathsep.join([str(tmp_path), "relative/dir", ""]))
    monkeypatch.setenv("USDTUNE_PATH_MAP", "/mnt/share=//server/share")
    found = reach()
    assert found["path_roots"] == [str(tmp_path), os.path.abspath("relative/dir")]
    assert found["path_map"] == ["/mnt/share=//server/share"]
    assert found["cpu_count"] >= 1 and found["memory_bytes"] > 0
    monkeypatch.delenv("USDTUNE_PATH_ROOTS")
    monkeypatch.delenv("USDTUNE_PATH_MAP")
    assert (reach()["path_roots"], reach()["path_map"]) == ([], [])


def test_a_hosts_flags_or_settings_override_the_environment_and_empty_ones_leave_it(monkeypatch, tmp_path):
    monkeypatch.setenv("USDTUNE_PATH_ROOTS", "/from/env")
    monkeypatch.setenv("USDTUNE_PATH_MAP", "/a=/b")
    use_reach([str(tmp_path), "/second"], [])
    assert reach()["path_roots"] == [str(tmp_path), "/second"]
    assert reach()["path_map"] == ["/a=/b"], "an empty list leaves the variable as it was"
