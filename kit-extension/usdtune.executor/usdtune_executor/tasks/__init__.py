"""One module per task kind. Each exposes run(params: dict, reporter) -> dict (JSON-ready)."""
from . import facts, operations, probe, profile, validate

TASK_HANDLERS = {
    "probe": probe.run,
    "profile": profile.run,
    "facts": facts.run,
    "validate": validate.run,
    "operations": operations.run,
}
