"""The Kit panel: its view model drives a real run on a real daemon through the restructure
gate to the end, and its omni.ui layer imports only what it names (omni.ui cannot be
installed here: the window is import-checked against stand-ins for exactly the modules it
imports, and drawn once against them)."""
import ast
import signal
import sys
import types
from pathlib import Path

from conftest import REPO, start_daemon

PANEL = REPO / "kit-extension" / "usdtune.panel"
sys.path.insert(0, str(PANEL))

from usdtune_panel.view_model import PanelViewModel  # noqa: E402


def client_token(home) -> str:
    return (Path(home["USDTUNE_HOME"]) / "client.token").read_text().strip()


def test_the_view_model_drives_a_run_through_the_gate_to_its_report(home, stage_copy, tmp_path):
    daemon = start_daemon(home)
    changes = []
    model = PanelViewModel(home["USDTUNE_DAEMON"], token=client_token(home), on_change=changes.append)
    try:
        refused = model.optimize(str(tmp_path / "missing.usda"))
        assert refused == "" and model.error.startswith("stage_not_found"), model.error

        run_id = model.optimize(str(stage_copy), str(tmp_path / "out"))
        assert run_id, model.error
        view = model.wait(lambda v: v.gate is not None or v.ended, 300)
        assert view.state == "awaiting_decision", (view.state, view.code, view.message)
        gate = view.gate
        assert gate.id == "restructure-decision" and gate.recommended in gate.branches
        # The measured route table comes with the prompt.
        assert {r["branch"] for r in gate.routes} >= {"optimize-as-is"}, gate.routes
        assert all("open_ratio" in r for r in gate.routes)
        # Per-phase progress with seconds, as the panel lists it.
        assert [p.label for p in view.phases if p.status == "done"][:2] == \
            ["omniverse-usd-performance-tuning", "profile-stage:baseline"]

        assert model.answer(gate.recommended), model.error
        view = model.wait(lambda v: v.ended, 600)
        assert (view.state, view.code) == ("completed", ""), view.message
        assert view.verdict in {"improved", "mixed", "neutral", "regressed"}
        assert all(p.seconds >= 0 for p in view.phases)
        opened = []
        assert model.open_report(opener=opened.append)
        assert opened == [Path(view.report_html).as_uri()] and Path(view.report_html).is_file()
        assert len(changes) > 5, "the UI heard of every event"
    finally:
        model.close()
        daemon.stop(signal.SIGTERM)


def imported_modules(path: Path) -> set:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return names


class Recorder:
    """Stands in for an omni.ui object: records calls, works as a context manager."""

    calls = []

    def __init__(self, name="ui"):
        self._name = name

    def __getattr__(self, attr):
        return Recorder(f"{self._name}.{attr}")

    def __call__(self, *args, **kwargs):
        Recorder.calls.append((self._name, args, kwargs))
        return Recorder(self._name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def get_value_as_string(self):
        return ""


def test_the_window_imports_only_omni_modules_it_names_and_the_view_model_none():
    view_model = imported_modules(PANEL / "usdtune_panel" / "view_model.py")
    assert not {m for m in view_model if m.split(".")[0] in {"omni", "carb"}}, view_model
    window_file = PANEL / "usdtune_panel" / "window.py"
    named = {m for m in imported_modules(window_file) if m.split(".")[0] in {"omni", "carb"}}
    assert named == {"omni.kit.app", "omni.ui", "omni.usd"}, named
    stubs = {}
    for name in sorted(named):
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth])
            stubs.setdefault(prefix, types.ModuleType(prefix))
    for name, module in stubs.items():  # `import omni.usd` reads omni's attribute `usd`
        if "." in name:
            parent, child = name.rsplit(".", 1)
            setattr(stubs[parent], child, module)
    stubs["omni.ui"].__getattr__ = lambda attr: Recorder(f"ui.{attr}")
    stubs["omni.usd"].get_context = lambda: Recorder("usd.context")
    stubs["omni.kit.app"].get_app = lambda: Recorder("app")
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        sys.modules.pop("usdtune_panel.window", None)
        from usdtune_panel import window

        Recorder.calls.clear()
        panel = window.PanelWindow(PanelViewModel("127.0.0.1:9"))
        drawn = [(name, args) for name, args, _ in Recorder.calls]
        assert ("ui.Window", ("usdtune",)) in drawn
        assert ("ui.Button", ("Optimize",)) in drawn
        panel.destroy()
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
        sys.modules.pop("usdtune_panel.window", None)
