"""The daemon's dashboard (`usdtune daemon --dashboard ADDR`) in headless Chromium against a real
daemon and its real executor: every run listed with its state as `usdtune runs` says it, the
executors table, an open gate answered from the page, the report link, and the token rules
(no token, the executor token, a cookie on the one write) checked over raw HTTP."""
import json
import shutil
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import FIXTURE, USDTUNE, Process, executor_env, free_port, start_daemon, usdtune
from test_clean_stop import wait_for

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def http(url, token=None, body=None, cookie=None):
    """(status, JSON body) of a GET, or of a POST when `body` is given."""
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    if cookie:
        headers["cookie"] = cookie
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def runs_by_id(env):
    listed = usdtune(env, "runs", "--json", timeout=30)
    assert listed.returncode == 0, listed.stderr
    return {r["run_id"]: r for r in json.loads(listed.stdout)}


def test_the_dashboard_lists_every_run_with_its_state_and_answers_a_gate(home, tmp_path):
    from playwright.sync_api import sync_playwright

    stage = tmp_path / "input" / FIXTURE.name
    stage.parent.mkdir()
    shutil.copy2(FIXTURE, stage)
    at = f"127.0.0.1:{free_port()}"
    daemon = start_daemon(home, "--dashboard", at, "--no-spawn-executor")
    executor = None
    base = f"http://{at}"
    try:
        # An executor attached the way one on another machine would be.
        executor = Process([str(USDTUNE), "executor", "--executor-id", "attached-1"], executor_env(home), "executor")
        client = (Path(home["USDTUNE_HOME"]) / "client.token").read_text().strip()
        executor_token = executor_env(home)["USDTUNE_TOKEN"]

        def submit(name, *flags):
            done = usdtune(home, "optimize", str(stage), "-o", str(tmp_path / name), "--passes", "1", *flags,
                           "--detach", "--json", timeout=60)
            assert done.returncode == 0, done.stderr
            return json.loads(done.stdout)["run_id"]

        finished = submit("finished", "--restructure", "optimize-as-is")
        watched = usdtune(home, "watch", finished, "--json", timeout=600)
        assert json.loads(watched.stdout)["state"] == "completed", watched.stderr
        gated = submit("gated")  # no branch and no --yes: it waits at the restructure gate
        wait_for(lambda: runs_by_id(home)[gated]["state"] == "awaiting_decision", 300, "the gate")
        cancelled = submit("cancelled", "--restructure", "optimize-as-is")
        assert usdtune(home, "cancel", cancelled, timeout=30).returncode == 0
        wait_for(lambda: runs_by_id(home)[cancelled]["state"] == "cancelled", 60, "the cancel")

        # Nobody reads or answers without the client token; the write takes the header only.
        assert json.loads(http(f"{base}/api/state")[1])["code"] == "unauthenticated"
        assert http(f"{base}/api/state", token="not-the-token")[0] == 401
        status, body = http(f"{base}/api/state", token=executor_token)
        assert (status, json.loads(body)["code"]) == (403, "token_role_refused")
        status, _ = http(f"{base}/api/runs/{gated}/decide", body={"choice": "exit"}, cookie=f"usdtune_token={client}")
        assert status == 401, "a cookie must not answer a gate (another site could make the browser send it)"
        assert http(f"{base}/runs/{finished}/report")[0] == 401
        status, state = http(f"{base}/api/state", token=client)
        assert status == 200
        state = json.loads(state)
        assert [(e["executor_id"], e["runtime"]) for e in state["executors"]] == [("attached-1", "standalone")]

        with sync_playwright() as p:
            chromium = shutil.which("chromium") or "/usr/bin/chromium"
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_context(viewport={"width": 1300, "height": 900}).new_page()
                problems = []
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.goto(f"{base}/#token={client}")
                page.wait_for_selector("body[data-loaded=yes]", timeout=15_000)
                assert "token" not in page.url, "the token leaves the address bar"

                # Every run, with the state the CLI reports.
                listed = runs_by_id(home)
                shown = {row.get_attribute("data-run-id"): row.get_attribute("data-state")
                         for row in page.query_selector_all("#runs tbody tr")}
                assert shown == {run_id: run["state"] for run_id, run in listed.items()}
                assert (shown[finished], shown[gated], shown[cancelled]) == \
                    ("completed", "awaiting_decision", "cancelled")
                assert "attached-1" in page.text_content("#executors")
                page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

                # The gate's recommended branch, answered from the page, takes the run to its end.
                gate = json.loads((tmp_path / "gated" / "route-trials.json").read_text())["recommended"]
                page.click(f"tr[data-run-id='{gated}'] button:has-text('{gate} (recommended)')")
                page.wait_for_selector(f"tr[data-run-id='{gated}'][data-state=completed]", timeout=600_000)
                decision = json.loads((tmp_path / "gated" / "restructure-decision.json").read_text())
                assert (decision["chosen"], decision["answered_by"]) == (gate, "api")

                # The report link serves the run's HTML report (the page's cookie admits it).
                page.click(f"tr[data-run-id='{finished}'] a:has-text('HTML report')")
                page.wait_for_load_state("load")
                report = json.loads((tmp_path / "finished" / "optimization-report.json").read_text())
                assert page.text_content("[data-field=verdict]").strip() == report["verdict"]
                assert problems == [], problems
            finally:
                browser.close()
    finally:
        if executor:
            executor.stop(signal.SIGTERM)
        daemon.stop(signal.SIGTERM)


def test_a_dashboard_off_loopback_needs_insecure(home):
    done = usdtune(home, "daemon", "--listen", home["USDTUNE_DAEMON"], "--dashboard", f"0.0.0.0:{free_port()}",
                   "--no-spawn-executor", timeout=30)
    assert done.returncode == 2 and "insecure_listen_refused" in done.stderr and "dashboard" in done.stderr
