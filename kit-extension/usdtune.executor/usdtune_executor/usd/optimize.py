"""Access to the usd-optimize core, with argument checking the library itself does not do.

usd-optimize silently ignores unknown argument keys and falls back to defaults, so a
misspelled argument would run the op with a default nobody chose. Every call here is
checked against the op's declared arguments first.
"""
from ..errors import TaskError


def core():
    try:
        from usd_optimize.core import UsdOptimizeCore
    except Exception as err:
        raise TaskError("blocked_missing_usd_optimize", f"usd-optimize cannot be loaded: {err}")
    return UsdOptimizeCore.getInstance()


def check_operation_args(so_core, operation: str, args: dict) -> None:
    if operation not in so_core.getOperations():
        raise TaskError("blocked_missing_usd_optimize_operation",
                        f"usd-optimize in this runtime has no operation '{operation}'")
    declared = {a["name"] for a in so_core.getOperationArguments(operation)}
    unknown = sorted(set(args) - declared)
    if unknown:
        raise TaskError("unknown_operation_argument",
                        f"{operation} has no argument(s) {', '.join(unknown)}; declared: {', '.join(sorted(declared))}")
