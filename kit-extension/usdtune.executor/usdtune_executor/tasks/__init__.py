"""One module per task kind. Each exposes run(params: dict, reporter) -> dict (JSON-ready)."""
from . import (facts, geometry, instancing, nucleus, operations, probe, profile, profile_pair, remap, restructure,
               validate)

TASK_HANDLERS = {
    "probe": probe.run,
    "nucleus_stat": nucleus.run,
    "profile": profile.run,
    "profile_pair": profile_pair.run,
    "facts": facts.run,
    "validate": validate.run,
    "operations": operations.run,
    "geometry": geometry.run,
    "restructure": restructure.run,
    "instancing": instancing.run,
    "remap": remap.run,
}
