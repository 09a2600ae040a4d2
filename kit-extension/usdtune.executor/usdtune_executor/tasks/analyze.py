"""usd-optimize operations in analysis mode: findings without edits (so-run-validators probes)."""
from ..errors import TaskError
from ..stage_io import open_stage
from .so_runtime import check_operation_args, core

MAX_LISTED_PATHS = 50


def _summarize(value):
    """Keep analysis payloads bounded: long path lists become counts plus the first paths."""
    if isinstance(value, dict):
        return {k: _summarize(v) for k, v in value.items()}
    if isinstance(value, list) and len(value) > MAX_LISTED_PATHS:
        return {"count": len(value), "first": [_summarize(v) for v in value[:MAX_LISTED_PATHS]]}
    if isinstance(value, list):
        return [_summarize(v) for v in value]
    return value


def run(params, reporter):
    from usd_optimize.core import analysis

    so_core = core()
    stage, _ = open_stage(params["stage_path"])
    probes = params.get("probes", [])
    results = []
    for index, probe in enumerate(probes):
        operation, args = probe["operation"], probe.get("args", {})
        check_operation_args(so_core, operation, args)
        reporter.progress(index / max(1, len(probes)), f"analysis: {operation}")
        outcome = analysis.analyze(stage, [analysis.OperationConfig(operation, args)]).get(operation)
        if outcome is None:
            raise TaskError("analysis_unsupported", f"{operation} has no analysis mode")
        ok, error, output = outcome
        results.append({"operation": operation, "args": args, "ok": bool(ok), "error": error or "",
                        "analysis": _summarize((output or {}).get("analysis"))})
    return {"stage_path": params["stage_path"], "results": results}
