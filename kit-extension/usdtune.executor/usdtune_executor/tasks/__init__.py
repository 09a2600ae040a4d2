"""One module per task kind. Each exposes run(params: dict, reporter) -> dict (JSON-ready)."""
from . import analyze, facts, operations, probe, profile, validate

TASK_HANDLERS = {
    "probe": probe.run,
    "profile": profile.run,
    "facts": facts.run,
    "validate": validate.run,
    "analyze": analyze.run,
    "operations": operations.run,
}
