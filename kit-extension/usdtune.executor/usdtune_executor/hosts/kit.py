"""Kit host: the `usdtune.executor` extension. The only module that imports omni.*.

On startup it reads /exts/usdtune.executor/daemonAddress (with tokenFile, the daemon's
executor token, tlsCa, and pathRoots/pathMap: the folders it reaches) and, when set, serves that daemon's tasks on a background
thread (Kit's main loop stays free). Depends on the Kit kernel only (carb, omni.ext), never
on omni.usd or omni.ui.
"""
import os
import threading

import carb
import carb.settings
import omni.ext

from ..connection import run_executor, use_reach, use_token_file

SETTINGS_ROOT = "/exts/usdtune.executor"


class UsdtuneExecutorExtension(omni.ext.IExt):
    def on_startup(self, ext_id):
        settings = carb.settings.get_settings()
        address = settings.get(f"{SETTINGS_ROOT}/daemonAddress") or ""
        executor_id = settings.get(f"{SETTINGS_ROOT}/executorId") or f"kit-{os.getpid()}"
        # The executor token and TLS CA, as the headless host reads them (settings win over env).
        token_file = settings.get(f"{SETTINGS_ROOT}/tokenFile") or ""
        if token_file:
            use_token_file(token_file)
        tls_ca = settings.get(f"{SETTINGS_ROOT}/tlsCa") or ""
        if tls_ca:
            os.environ["USDTUNE_TLS_CA"] = tls_ca
        # The folders it reaches and the daemon's mounts here (connection.reach advertises them).
        use_reach(settings.get(f"{SETTINGS_ROOT}/pathRoots") or [], settings.get(f"{SETTINGS_ROOT}/pathMap") or [])
        self._stop = threading.Event()
        self._thread = None
        if not address:
            carb.log_info("[usdtune.executor] no daemonAddress setting; staying idle")
            return
        carb.log_info(f"[usdtune.executor] connecting to usdtuned at {address} as {executor_id}")
        self._thread = threading.Thread(target=run_executor, args=(address, executor_id, "kit", self._stop),
                                        name="usdtune-executor", daemon=True)
        self._thread.start()

    def on_shutdown(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def wait_for_executor(timeout_s: float) -> bool:
    """For scripts run with --exec: block until the executor thread ends (daemon shutdown).

    Without a Kit run loop the app quits right after --exec returns, so a headless
    Kit that should serve a daemon waits here. Returns False on timeout.
    """
    for thread in threading.enumerate():
        if thread.name == "usdtune-executor":
            thread.join(timeout_s)
            return not thread.is_alive()
    return True
