"""Phase 2c / 6b minimum openability: the stage opens, composes and resolves its dependencies."""
from pxr import UsdUtils

from ..stage_io import check_stage_path, open_stage


def run(params, reporter):
    stage_path = check_stage_path(params["stage_path"])
    stage, composition_errors = open_stage(stage_path)
    findings = [{"rule": "minimum_openability.composition_error", "concept": "openability", "severity": "error",
                 "sites": [stage_path], "message": message} for message in composition_errors]
    _layers, _assets, unresolved = UsdUtils.ComputeAllDependencies(stage_path)
    findings += [{"rule": "minimum_openability.unresolved_asset", "concept": "openability", "severity": "error",
                  "sites": [str(path)], "message": f"asset path does not resolve: {path}"} for path in unresolved]
    return {"stage_path": stage_path, "opens": stage is not None, "validators_run": ["minimum_openability"],
            "findings": findings}
