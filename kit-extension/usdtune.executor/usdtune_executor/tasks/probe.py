"""Phase 0 probe: what this executor's runtime is and what it can run.

The daemon adds host facts (CPU, RAM, GPU through NVML) and writes setup-preflight.json.
"""
import datetime
import importlib.metadata
import platform
import sys


def _package_version(name: str):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _usd_optimize_operations():
    """Sorted op keys from the live usd-optimize core, or None when it cannot load."""
    try:
        from usd_optimize.core import UsdOptimizeCore
    except Exception:  # missing wheel or broken native libraries: structural-only runtime
        return None
    return sorted(UsdOptimizeCore.getInstance().getOperations())


def runtime_identity(runtime: str) -> dict:
    from pxr import Usd

    operations = _usd_optimize_operations()
    return {
        "runtime": runtime,
        "python_version": platform.python_version(),
        "python_executable": sys.executable,
        "usd_version": ".".join(str(v) for v in Usd.GetVersion()),
        "usd_optimize_version": _package_version("usd-optimize") if operations is not None else None,
        "operations_available": operations or [],
        "usd_validation_nvidia_version": _package_version("usd-validation-nvidia"),
        "usd_exchange_version": _package_version("usd-exchange"),
    }


def _kit_identity():
    try:
        import omni.kit.app
    except ImportError:
        return None
    app = omni.kit.app.get_app()
    return {"application": app.get_app_name() or "Kit", "version": app.get_app_version(),
            "path": app.get_app_environment() if hasattr(app, "get_app_environment") else "",
            "build": app.get_build_version()}


def run(params, reporter):
    host = params.get("host", {})
    identity = runtime_identity(host.get("runtime", "standalone"))
    identity["executor_id"] = host.get("executor_id", "")
    identity["kit"] = _kit_identity() if identity["runtime"] == "kit" else None
    identity["probed_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    return identity
