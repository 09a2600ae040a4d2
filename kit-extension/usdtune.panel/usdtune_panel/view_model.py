"""The panel's state and actions, with no UI in it: a client of the daemon's RunService.

`PanelViewModel.optimize()` submits a run and follows it on a background thread; every event
updates `view` (a `RunView`: phases with their seconds, the open gate with its evidence and
branches, the verdict and report paths) and calls `on_change`, which the omni.ui layer turns
into a redraw on Kit's main thread. `answer()` answers the open gate, `cancel()` stops the
run, `open_report()` opens the HTML report. Nothing here imports omni.*: the tests drive it
against a real daemon and real executors.
"""
import json
import os
import threading
import webbrowser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import grpc
from usdtune.v1 import usdtune_pb2 as pb
from usdtune.v1 import usdtune_pb2_grpc as pb_grpc

STATES = {pb.RUN_STATE_QUEUED: "queued", pb.RUN_STATE_RUNNING: "running",
          pb.RUN_STATE_AWAITING_DECISION: "awaiting_decision", pb.RUN_STATE_COMPLETED: "completed",
          pb.RUN_STATE_FAILED: "failed", pb.RUN_STATE_BLOCKED: "blocked", pb.RUN_STATE_CANCELLED: "cancelled"}
ENDED = {"completed", "failed", "blocked", "cancelled"}


@dataclass
class PhaseRow:
    label: str
    status: str
    seconds: float
    expected_seconds: float
    note: str


@dataclass
class GatePrompt:
    """A gate as the panel asks it: the question, the branches (recommended first marked),
    and the evidence; `routes` is the measured route table when the gate has one."""
    id: str
    question: str
    branches: list
    recommended: str
    evidence: dict
    routes: list


@dataclass
class RunView:
    run_id: str = ""
    stage_path: str = ""
    state: str = "idle"
    milestone: str = ""
    phases: list = field(default_factory=list)
    gate: Optional[GatePrompt] = None
    verdict: str = ""
    code: str = ""
    message: str = ""
    output_stage: str = ""
    report_json: str = ""
    report_html: str = ""
    last_event: str = ""

    @property
    def ended(self) -> bool:
        return self.state in ENDED


def default_token(token_file: str = "") -> str:
    """USDTUNE_TOKEN, else the named file, else the local daemon's client.token (its data dir:
    USDTUNE_HOME, else XDG_DATA_HOME/usdtune)."""
    if os.environ.get("USDTUNE_TOKEN", "").strip():
        return os.environ["USDTUNE_TOKEN"].strip()
    candidates = [token_file] if token_file else []
    home = os.environ.get("USDTUNE_HOME") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "usdtune")
    candidates.append(os.path.join(home, "client.token"))
    for candidate in candidates:
        if candidate and os.path.isfile(candidate):
            return Path(candidate).read_text().strip()
    return ""


def gate_prompt(gate) -> Optional[GatePrompt]:
    if gate is None or not gate.id:
        return None
    try:
        evidence = json.loads(gate.evidence_json or "{}")
    except ValueError:
        evidence = {}
    # The restructure gate's measured route table (route-trials.json), when the routes were tried.
    routes = (evidence.get("route_trials") or {}).get("trials") or []
    return GatePrompt(id=gate.id, question=gate.question, branches=list(gate.branches),
                      recommended=gate.recommended, evidence=evidence, routes=routes)


def run_view(run, last_event: str = "") -> RunView:
    return RunView(
        run_id=run.run_id, stage_path=run.stage_path, state=STATES.get(run.state, "unknown"),
        milestone=run.milestone,
        phases=[PhaseRow(p.milestone, p.status, p.seconds, p.expected_seconds, p.note) for p in run.phases],
        gate=gate_prompt(run.gate) if run.HasField("gate") else None, verdict=run.verdict, code=run.code,
        message=run.message, output_stage=run.output_stage_path, report_json=run.report_path,
        report_html=run.html_report_path, last_event=last_event)


class PanelViewModel:
    def __init__(self, address: str, token: str = "", tls_ca: str = "",
                 on_change: Optional[Callable[[RunView], None]] = None):
        if tls_ca:
            with open(tls_ca, "rb") as handle:
                channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=handle.read()))
        else:
            channel = grpc.insecure_channel(address)
        self._channel = channel
        self._stub = pb_grpc.RunServiceStub(channel)
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._on_change = on_change or (lambda view: None)
        self._lock = threading.Lock()
        self._view = RunView()
        self._watcher: Optional[threading.Thread] = None
        self._stream = None
        self.error = ""

    def set_on_change(self, on_change: Callable[[RunView], None]) -> None:
        """Who hears of each change (the window, which redraws on Kit's main loop)."""
        self._on_change = on_change

    @property
    def view(self) -> RunView:
        with self._lock:
            return self._view

    def _set(self, view: RunView) -> None:
        with self._lock:
            self._view = view
        self._on_change(view)

    def _fail(self, err: grpc.RpcError) -> None:
        # The daemon's message reads "code: message"; the panel shows it as it stands.
        self.error = err.details() or str(err.code())
        self._on_change(self.view)

    def optimize(self, stage_path: str, output_dir: str = "", restructure: str = "", goal: str = "",
                 runtime: str = "", approvals: tuple = ()) -> str:
        """Submit a run of `stage_path` and follow it. Returns the run id ('' when refused:
        `error` then holds the daemon's code and message)."""
        self.error = ""
        request = pb.SubmitRunRequest(
            stage_path=os.path.abspath(stage_path), output_dir=os.path.abspath(output_dir) if output_dir else "",
            restructure_branch=restructure, goal=goal, runtime=runtime,
            runtime_chosen_by="prompt" if runtime else "", approvals=list(approvals))
        try:
            run = self._stub.SubmitRun(request, metadata=self._metadata)
        except grpc.RpcError as err:
            self._fail(err)
            return ""
        self._set(run_view(run, "submitted"))
        self.follow(run.run_id)
        return run.run_id

    def follow(self, run_id: str) -> None:
        """Follow a run (one this panel started, or any other) on a background thread."""
        self.stop_following()
        stream = self._stub.WatchRun(pb.WatchRunRequest(run_id=run_id), metadata=self._metadata)
        self._stream = stream

        def watch():
            try:
                for event in stream:
                    if event.HasField("run"):
                        self._set(run_view(event.run, event.kind))
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.CANCELLED:
                    self._fail(err)

        self._watcher = threading.Thread(target=watch, name="usdtune-panel-watch", daemon=True)
        self._watcher.start()

    def refresh(self) -> RunView:
        if self.view.run_id:
            try:
                self._set(run_view(self._stub.GetRun(pb.GetRunRequest(run_id=self.view.run_id),
                                                     metadata=self._metadata), "refreshed"))
            except grpc.RpcError as err:
                self._fail(err)
        return self.view

    def answer(self, branch: str) -> bool:
        """Answer the open gate with one of its branches; the run goes on (a gate the run
        left at a daemon restart is resumed by the daemon)."""
        gate = self.view.gate
        if gate is None:
            self.error = "no gate is open"
            return False
        try:
            run = self._stub.AnswerGate(pb.AnswerGateRequest(run_id=self.view.run_id, gate_id=gate.id, branch=branch),
                                        metadata=self._metadata)
        except grpc.RpcError as err:
            self._fail(err)
            return False
        self._set(run_view(run, "answered"))
        if not (self._watcher and self._watcher.is_alive()):
            self.follow(run.run_id)
        return True

    def cancel(self) -> bool:
        try:
            self._set(run_view(self._stub.CancelRun(pb.CancelRunRequest(run_id=self.view.run_id),
                                                    metadata=self._metadata), "cancelling"))
            return True
        except grpc.RpcError as err:
            self._fail(err)
            return False

    def open_report(self, opener: Callable[[str], object] = webbrowser.open) -> bool:
        html = self.view.report_html
        if not html or not os.path.isfile(html):
            self.error = "the run has no HTML report yet"
            return False
        opener(Path(html).as_uri())
        return True

    def wait(self, condition: Callable[[RunView], bool], timeout: float) -> RunView:
        """Block until `condition(view)` holds or `timeout` passes (scripts and tests; the UI
        redraws on `on_change` instead)."""
        done = threading.Event()
        previous = self._on_change

        def changed(view):
            previous(view)
            if condition(view):
                done.set()

        self._on_change = changed
        try:
            if not condition(self.view):
                done.wait(timeout)
        finally:
            self._on_change = previous
        return self.view

    def stop_following(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
            self._stream = None
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None

    def close(self) -> None:
        self.stop_following()
        self._channel.close()
