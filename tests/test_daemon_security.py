"""Nobody is let in: every RPC of a real usdtuned needs its role's token, stages and outputs stay
under the daemon's --allow-root folders, a network address needs TLS, and TLS works end to end
(CLI, the daemon's own executor, `usdtune executor`). A raw gRPC client stands in for a rogue
process on the same machine."""
import json
import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import grpc
import pytest
from usdtune.v1 import usdtune_pb2 as pb
from usdtune.v1 import usdtune_pb2_grpc as pb_grpc

from conftest import FIXTURE, USDTUNE, Process, executor_env, free_port, start_daemon, usdtune


def tokens(home) -> dict:
    data = Path(home["USDTUNE_HOME"])
    return {role: (data / f"{role}.token").read_text().strip() for role in ("client", "executor")}


def run_calls(stub, metadata):
    """Every RunService RPC once, with `metadata`; returns the status code of each."""
    calls = {
        "SubmitRun": lambda: stub.SubmitRun(pb.SubmitRunRequest(stage_path=str(FIXTURE)), metadata=metadata),
        "GetRun": lambda: stub.GetRun(pb.GetRunRequest(run_id="x"), metadata=metadata),
        "ListRuns": lambda: stub.ListRuns(pb.ListRunsRequest(), metadata=metadata),
        "WatchRun": lambda: next(iter(stub.WatchRun(pb.WatchRunRequest(run_id="x"), metadata=metadata))),
        "AnswerGate": lambda: stub.AnswerGate(pb.AnswerGateRequest(run_id="x", branch="exit"), metadata=metadata),
        "CancelRun": lambda: stub.CancelRun(pb.CancelRunRequest(run_id="x"), metadata=metadata),
    }
    codes = {}
    for name, call in calls.items():
        try:
            call()
            codes[name] = grpc.StatusCode.OK
        except grpc.RpcError as err:
            codes[name] = err.code()
    return codes


def attach_code(address, metadata):
    hello = pb.ExecutorMessage(hello=pb.Hello(executor_id="rogue", runtime="standalone", task_kinds=["probe"]))
    with grpc.insecure_channel(address) as channel:
        call = pb_grpc.ExecutorServiceStub(channel).Attach(iter([hello]), metadata=metadata)
        try:
            next(iter(call))
            return grpc.StatusCode.OK
        except StopIteration:
            return grpc.StatusCode.OK
        except grpc.RpcError as err:
            return err.code()


def test_every_rpc_needs_its_roles_token(home):
    daemon = start_daemon(home, "--no-spawn-executor")
    try:
        data = Path(home["USDTUNE_HOME"])
        for role in ("client", "executor"):
            assert stat.S_IMODE((data / f"{role}.token").stat().st_mode) == 0o600
        known = tokens(home)
        address = home["USDTUNE_DAEMON"]
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.RunServiceStub(channel)
            for metadata in [(), (("authorization", "Bearer " + "0" * 64),), (("authorization", known["client"]),)]:
                codes = run_calls(stub, metadata)
                assert set(codes.values()) == {grpc.StatusCode.UNAUTHENTICATED}, (metadata, codes)
            # An executor's token cannot submit, list, answer or cancel.
            codes = run_calls(stub, (("authorization", f"Bearer {known['executor']}"),))
            assert set(codes.values()) == {grpc.StatusCode.PERMISSION_DENIED}, codes
            # The client token passes the gate (the calls then fail on their own merits).
            codes = run_calls(stub, (("authorization", f"Bearer {known['client']}"),))
            assert codes["ListRuns"] == grpc.StatusCode.OK and codes["GetRun"] == grpc.StatusCode.NOT_FOUND, codes
        assert attach_code(address, ()) == grpc.StatusCode.UNAUTHENTICATED
        assert attach_code(address, (("authorization", f"Bearer {known['client']}"),)) == \
            grpc.StatusCode.PERMISSION_DENIED
        # No rogue executor was registered, and each refusal left a log line naming the service.
        log = daemon.output()
        assert "executor connected" not in log, log[-2000:]
        assert "refused a call without a token" in log and "refused a call with the executor token" in log

        # The CLI: the client token is found in the data dir; a wrong one is a clear error.
        listed = usdtune(home, "runs", "--json")
        assert listed.returncode == 0, listed.stderr
        wrong = usdtune(dict(home, USDTUNE_TOKEN="f" * 64), "runs")
        assert wrong.returncode == 2 and "unauthenticated" in wrong.stderr, wrong.stderr
        loose = data / "loose.token"
        loose.write_text(known["client"])
        loose.chmod(0o644)
        refused = usdtune(home, "--token-file", str(loose), "runs")
        assert refused.returncode == 2 and "token_file_unsafe" in refused.stderr and "chmod 600" in refused.stderr
    finally:
        daemon.stop(signal.SIGTERM)


def test_stages_and_outputs_stay_under_the_allowed_roots(home, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    stage = served / FIXTURE.name
    stage.write_bytes(FIXTURE.read_bytes())
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.usda"
    secret.write_bytes(FIXTURE.read_bytes())
    (served / "link.usda").symlink_to(secret)
    (served / "escape").symlink_to(outside)
    address = home["USDTUNE_DAEMON"]
    daemon = Process([str(USDTUNE), "daemon", "--listen", address, "--allow-root", str(served)], home, "daemon")
    try:
        wait_listening(address, daemon)
        client = tokens(home)["client"]
        metadata = (("authorization", f"Bearer {client}"),)
        attempts = {
            "outside": (str(secret), ""),
            "dot-dot": (f"{served}/../outside/secret.usda", ""),
            "symlinked file": (str(served / "link.usda"), ""),
            "symlinked folder": (str(served / "escape" / "secret.usda"), ""),
            "missing outside": (str(outside / "missing.usda"), ""),
            "output outside": (str(stage), str(outside / "out")),
            "output dot-dot": (str(stage), f"{served}/new/../../outside/out"),
            "output through a link": (str(stage), str(served / "escape" / "out")),
        }
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.RunServiceStub(channel)
            for what, (stage_path, output_dir) in attempts.items():
                with pytest.raises(grpc.RpcError) as refused:
                    stub.SubmitRun(pb.SubmitRunRequest(stage_path=stage_path, output_dir=output_dir), metadata=metadata)
                assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED, (what, refused.value.details())
                assert refused.value.details().startswith("path_outside_allowed_roots:"), (what, refused.value.details())
            with pytest.raises(grpc.RpcError) as refused:
                stub.SubmitRun(pb.SubmitRunRequest(stage_path="input/" + FIXTURE.name), metadata=metadata)
            assert refused.value.details().startswith("path_not_absolute:"), refused.value.details()
        assert not (outside / "out").exists()
        # The CLI sends the caller's absolute path: a relative one inside the root is served.
        done = subprocess.run([str(USDTUNE), "assess", FIXTURE.name, "-o", "out", "--json"], env=home, cwd=served,
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["stage_path"] == str(stage)
    finally:
        daemon.stop(signal.SIGTERM)


def wait_listening(address, process, timeout=20):
    host, port = address.rsplit(":", 1)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.proc.poll() is not None:
            raise AssertionError("daemon exited:\n" + process.output())
        with socket.socket() as s:
            if s.connect_ex((host, int(port))) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("daemon did not start:\n" + process.output())


def test_a_network_address_needs_tls_or_insecure(home):
    done = usdtune(home, "daemon", "--listen", f"0.0.0.0:{free_port()}", timeout=30)
    assert done.returncode == 2, done.stderr
    assert "insecure_listen_refused" in done.stderr, done.stderr


@pytest.fixture
def certificate(tmp_path):
    """A self-signed leaf certificate for 127.0.0.1 (openssl is on every machine this runs on);
    CA:FALSE, as rustls refuses a CA certificate presented as the server's own."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "2", "-subj", "/CN=usdtune-test", "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:localhost", "-addext", "basicConstraints=critical,CA:FALSE", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def test_tls_end_to_end_with_the_daemons_own_executor_and_an_attached_one(home, tmp_path, certificate):
    cert, key = certificate
    stage = tmp_path / "input" / FIXTURE.name
    stage.parent.mkdir()
    stage.write_bytes(FIXTURE.read_bytes())
    address = home["USDTUNE_DAEMON"]
    daemon = Process([str(USDTUNE), "daemon", "--listen", address, "--allow-root", str(tmp_path),
                      "--tls-cert", str(cert), "--tls-key", str(key)], home, "daemon")
    try:
        wait_listening(address, daemon)
        tls = dict(home, USDTUNE_TLS_CA=str(cert))
        # Plain gRPC cannot talk to it; TLS with the CA can, and the daemon's own executor
        # (spawned for the run) connects back over TLS with its token.
        plain = usdtune(home, "runs", "--json", timeout=30)
        assert plain.returncode != 0 or json.loads(plain.stdout) == [], plain.stderr
        wrong_ca = usdtune(dict(home, USDTUNE_TLS_CA=str(FIXTURE)), "runs", timeout=30)
        assert wrong_ca.returncode == 2 and "daemon_unreachable" in wrong_ca.stderr, wrong_ca.stderr
        done = usdtune(tls, "assess", str(stage), "-o", str(tmp_path / "assessed"), "--json", timeout=300)
        assert done.returncode == 0, done.stderr + daemon.output()[-3000:]
        assert json.loads(done.stdout)["state"] == "completed"
        assert "TLS" in daemon.output()
    finally:
        daemon.stop(signal.SIGTERM)
    assert daemon.proc.returncode == 0


def test_usdtune_executor_attaches_with_its_token_and_leaves_nothing(home, tmp_path):
    stage = tmp_path / "input" / FIXTURE.name
    stage.parent.mkdir()
    stage.write_bytes(FIXTURE.read_bytes())
    daemon = start_daemon(home, "--no-spawn-executor")
    executor = None
    try:
        env = executor_env(home)
        executor = Process([str(USDTUNE), "executor", "--executor-id", "remote-1"], env, "attached")
        done = usdtune(home, "assess", str(stage), "-o", str(tmp_path / "assessed"), "--json", timeout=300)
        assert done.returncode == 0, done.stderr + executor.output()[-2000:]
        preflight = json.loads((tmp_path / "assessed" / "setup-preflight.json").read_text())
        assert preflight["executor_id"] == "remote-1"
        # No --runtime and no terminal: the standalone runtime, recorded as chosen unattended.
        assert (preflight["runtime_route"], preflight["runtime_context"]["chosen_by"]) == \
            ("standalone", "standalone_preferred")
        # Without a token the same command attaches nothing and says why.
        bare = {k: v for k, v in home.items() if k != "USDTUNE_TOKEN"}
        os.rename(Path(home["USDTUNE_HOME"]) / "executor.token", tmp_path / "moved.token")
        refused = usdtune(bare, "executor", timeout=30)
        assert refused.returncode == 2 and "token_file_unsafe" in refused.stderr, refused.stderr
    finally:
        if executor is not None:
            executor.stop(signal.SIGTERM)
            assert executor.proc.returncode == 0, executor.output()[-2000:]
        daemon.stop(signal.SIGTERM)
    leftover = subprocess.run(["pgrep", "-f", "--executor-id remote-1"], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", leftover.stdout


def test_runtime_kit_without_a_kit_kernel_is_refused_before_any_work(home, stage_copy, tmp_path):
    daemon = start_daemon(home, "--no-spawn-executor")
    try:
        done = usdtune(home, "optimize", str(stage_copy), "-o", str(tmp_path / "out"), "--runtime", "kit", "--json",
                       timeout=30)
        assert done.returncode == 2, done.stderr
        assert json.loads(done.stdout)["code"] == "kit_runtime_unavailable"
        assert not (tmp_path / "out").exists()
        bad = usdtune(home, "optimize", str(stage_copy), "--runtime", "maya", timeout=30)
        assert bad.returncode == 2 and "maya" in bad.stderr
    finally:
        daemon.stop(signal.SIGTERM)


def test_detach_prints_the_run_id_and_watch_follows_it(home, stage_copy, tmp_path):
    alone = usdtune(home, "optimize", str(stage_copy), "--detach", "--json", timeout=30)
    assert alone.returncode == 2 and "daemon_unreachable" in alone.stderr, alone.stderr  # no embedded detach
    daemon = start_daemon(home)
    try:
        out = tmp_path / "out"
        done = usdtune(home, "optimize", str(stage_copy), "-o", str(out), "--restructure", "optimize-as-is",
                       "--passes", "1", "--detach", "--json", timeout=30)
        assert done.returncode == 0, done.stderr
        run_id = json.loads(done.stdout)["run_id"]
        watched = usdtune(home, "watch", run_id, "--json", timeout=300)
        assert watched.returncode == 0, watched.stderr
        assert json.loads(watched.stdout)["state"] == "completed"
        listed = json.loads(usdtune(home, "runs", "--json").stdout)
        assert [(r["state"], r["code"]) for r in listed if r["run_id"] == run_id] == [("completed", None)]
    finally:
        daemon.stop(signal.SIGTERM)
