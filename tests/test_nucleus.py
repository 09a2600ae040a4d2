"""omniverse:// stages (Phase 0, upstream omniverse-authentication): one omni.client.stat
before anything opens the stage, each failure its own code, returned before any work. No
Nucleus server can run here, so the unreachable-server path is the one tested end to end; the
mapping of every stat answer to its code is unit-tested (daemon/src/decisions/remote.rs)."""
import json

from conftest import start_daemon, usdtune

SECRET = "never-written-anywhere-7d1e"


def test_an_unreachable_nucleus_server_is_its_own_code_before_any_work(home, tmp_path):
    url = "omniverse://127.0.0.1:1/Projects/Hall/hall.usd"
    out = tmp_path / "out"
    # A service account in the environment: its password must not reach any file.
    env = dict(home, OMNI_USER="svc-usdtune", OMNI_PASS=SECRET)
    done = usdtune(env, "optimize", url, "-o", str(out), "--yes", "--json", timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    document = json.loads(done.stdout)
    assert (document["state"], document["code"]) == ("failed", "nucleus_unreachable"), document
    assert "127.0.0.1:1" in document["message"]
    # Nothing was profiled, assessed or written: Phase 0 stopped the run.
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["run.json", "setup-preflight.json"]
    remote = json.loads((out / "setup-preflight.json").read_text())["runtime_context"]["remote_access"]
    assert (remote["url"], remote["stat"], remote["auth"], remote["preflighted"]) == \
        (url, "ERROR_CONNECTION", "unavailable", True)
    assert all(SECRET not in p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    assert SECRET not in done.stdout + done.stderr


def test_a_shared_daemon_serves_files_under_its_roots_only(home, tmp_path):
    daemon = start_daemon(home, "--no-spawn-executor")
    try:
        done = usdtune(home, "optimize", "omniverse://nucleus.example/Projects/a.usd", "-o", str(tmp_path / "out"),
                       "--detach", "--json", timeout=30)
        assert done.returncode == 2 and "path_outside_allowed_roots" in done.stderr, done.stderr
    finally:
        daemon.stop()
