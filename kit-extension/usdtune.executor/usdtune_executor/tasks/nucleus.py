"""Phase 0 for an omniverse:// stage: one cheap omni.client.stat before anything opens it (the
upstream omniverse-authentication preflight). Measures only: what stat answered and which way
credentials could have come; the daemon decides what the run does with it
(daemon/src/decisions/remote.rs).

omni.client ships with the Kit kernel (`usdtune setup --kit`) as the extension
omni.client.lib; inside Kit it is imported as is, elsewhere from the kernel's folder. Retries
are bounded so an unreachable server answers in seconds, not after omni.client's default two
minutes. Credentials are never read, logged or stored here: only whether a service account's
variables are set."""
import os
import sys
from urllib.parse import urlparse

from ..errors import TaskError

# omni.client retries a failed connection for this long before stat answers.
STAT_RETRY_MS = 3000
SERVICE_VARIABLES = ("OMNI_USER", "OMNI_PASS")


def _client():
    try:
        import omni.client
        return omni.client
    except ImportError:
        pass
    try:
        import omni
    except ImportError:
        omni = None
    for base in list(getattr(omni, "__path__", [])):
        library = os.path.join(base, "extscore", "omni.client.lib")
        if os.path.isdir(library):
            sys.path.insert(0, library)
            import omni.client
            return omni.client
    raise TaskError("nucleus_client_unavailable",
                    "omni.client ships with the Kit kernel, which this executor does not have: run `usdtune setup --kit`")


def run(params, reporter):
    url = params["url"]
    client = _client()
    client.set_retries(STAT_RETRY_MS, 100, 100)
    reporter.progress(0.1, f"omni.client.stat {url}")
    result, entry = client.stat(url)
    stat = result.name if hasattr(result, "name") else str(result).rsplit(".", 1)[-1]
    service = all(os.environ.get(v) for v in SERVICE_VARIABLES)
    if stat == "ERROR_CONNECTION":
        auth = "unavailable"
    elif service:
        auth = "service"
    elif stat in ("ERROR_ACCESS_DENIED", "ERROR_ACCESS_LOST"):
        auth = "interactive"  # a login this unattended run cannot give
    else:
        auth = "cached"
    return {"url": url, "server": urlparse(url).netloc, "stat": stat, "auth": auth, "preflighted": True,
            "size": getattr(entry, "size", None) if stat.startswith("OK") else None}
