"""The omni.ui layer: one window drawn from the view model's `RunView`, nothing decided here.

Layout, top to bottom: the stage (the open stage by default) and the output folder; Optimize
and Cancel; one row per phase (status, seconds, note); the open gate (question, the route
table when the routes were measured, one button per branch, the recommended one marked);
the result (verdict, code and message, output stage) and Open report.
"""
import omni.kit.app
import omni.ui as ui
import omni.usd

from .view_model import PanelViewModel, RunView


def open_stage_path() -> str:
    stage = omni.usd.get_context().get_stage()
    layer = stage.GetRootLayer() if stage else None
    return layer.realPath if layer is not None and layer.realPath else ""


class PanelWindow:
    def __init__(self, model: PanelViewModel):
        self._model = model
        self._dirty = True
        self._window = ui.Window("usdtune", width=480, height=640)
        self._stage = ui.SimpleStringModel(open_stage_path())
        self._out = ui.SimpleStringModel("")
        # gRPC events arrive on a worker thread; redraw on Kit's main loop.
        self._update = omni.kit.app.get_app().get_update_event_stream().create_subscription_to_pop(
            self._redraw_if_dirty, name="usdtune.panel redraw")
        model.set_on_change(self._mark_dirty)
        self._redraw_if_dirty(None)

    def _mark_dirty(self, _view: RunView) -> None:
        self._dirty = True

    def _redraw_if_dirty(self, _event) -> None:
        if not self._dirty:
            return
        self._dirty = False
        view = self._model.view
        with self._window.frame:
            with ui.VStack(spacing=4):
                with ui.HStack(height=22):
                    ui.Label("Stage", width=60)
                    ui.StringField(model=self._stage)
                with ui.HStack(height=22):
                    ui.Label("Output", width=60)
                    ui.StringField(model=self._out)
                with ui.HStack(height=26):
                    ui.Button("Optimize", clicked_fn=self._optimize, enabled=view.state in ("idle", *_ENDED))
                    ui.Button("Cancel", clicked_fn=self._model.cancel, enabled=not view.ended and bool(view.run_id))
                if self._model.error:
                    ui.Label(self._model.error, word_wrap=True)
                ui.Label(f"{view.run_id}  {view.state}  {view.milestone}", height=18)
                with ui.ScrollingFrame(height=220):
                    with ui.VStack():
                        for phase in view.phases:
                            seconds = f"{phase.seconds:.1f} s" if phase.status in ("done", "failed") else ""
                            ui.Label(f"{phase.status:8} {phase.label:34} {seconds:>8}  {phase.note[:80]}", height=16)
                if view.gate is not None:
                    ui.Label(view.gate.question, word_wrap=True)
                    for route in view.gate.routes:
                        ui.Label(f"{route.get('branch', ''):26} open {route.get('open_ratio') or 0:.2f}x  "
                                 f"bytes {route.get('bytes_ratio') or 0:.2f}x  prims {route.get('prims_after') or 0}",
                                 height=16)
                    with ui.HStack(height=26):
                        for branch in view.gate.branches:
                            label = f"{branch} (recommended)" if branch == view.gate.recommended else branch
                            ui.Button(label, clicked_fn=lambda b=branch: self._model.answer(b))
                if view.ended:
                    ui.Label(f"{view.state}: verdict {view.verdict or '-'} {view.code} {view.message}", word_wrap=True)
                    ui.Label(view.output_stage, height=16)
                    ui.Button("Open report", clicked_fn=self._model.open_report, enabled=bool(view.report_html))

    def _optimize(self) -> None:
        self._model.optimize(self._stage.get_value_as_string(), self._out.get_value_as_string())

    def destroy(self) -> None:
        self._update = None
        self._window = None


_ENDED = ("completed", "failed", "blocked", "cancelled")
