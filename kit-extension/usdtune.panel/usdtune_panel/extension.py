"""Kit entry point of usdtune.panel: settings → view model → window."""
import carb.settings
import omni.ext

from .view_model import PanelViewModel, default_token

SETTINGS_ROOT = "/exts/usdtune.panel"


class UsdtunePanelExtension(omni.ext.IExt):
    def on_startup(self, ext_id):
        from .window import PanelWindow

        settings = carb.settings.get_settings()
        address = settings.get(f"{SETTINGS_ROOT}/daemonAddress") or "127.0.0.1:50777"
        token = default_token(settings.get(f"{SETTINGS_ROOT}/tokenFile") or "")
        self._model = PanelViewModel(address, token=token, tls_ca=settings.get(f"{SETTINGS_ROOT}/tlsCa") or "")
        self._window = PanelWindow(self._model)

    def on_shutdown(self):
        self._window.destroy()
        self._model.close()
