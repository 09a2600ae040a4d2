"""Task errors with stable codes: what the daemon reports to users instead of tracebacks."""


class TaskError(Exception):
    """A task failed for a reason the user can act on.

    code: stable snake_case identifier (documented in docs/error-codes.md)
    path: the offending file or prim path, when there is one
    """

    def __init__(self, code: str, message: str, path: str = ""):
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path
