"""usdtune executor: touches USD on behalf of the usdtuned daemon.

One package, two hosts (hosts/):
  * headless:  python -m usdtune_executor --daemon HOST:PORT
  * Kit:       the `usdtune.executor` extension (hosts/kit.py), which connects
               to the daemon named by the setting /exts/usdtune.executor/daemonAddress.

Inside: connection.py (the session with the daemon), tasks/ (one module per task kind),
usd/ (stage opening with stable codes, atomic export, asset paths, usd-optimize access,
float-precision point instancing), workers/ (the processes a task starts).

The executor opens stages, measures, collects facts, validates and runs
usd-optimize operations. It never decides the workflow: every task arrives from
the daemon with its parameters, and every result goes back as JSON.
"""

PROTOCOL_VERSION = "1"

try:  # Kit imports this package as the extension's python module; headless never does.
    import omni.ext  # noqa: F401
except ImportError:
    pass
else:
    from .hosts.kit import UsdtuneExecutorExtension  # noqa: F401
