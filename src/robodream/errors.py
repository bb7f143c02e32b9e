"""The one exception type for bad user input.

Anything a user can fix (a missing file, an unknown config key, a store of the wrong format, NaN actions)
raises `RobodreamError` with one line saying what is wrong and how to fix it. The CLI prints that line and
exits with status 2 instead of a traceback; every other exception is a bug and keeps its traceback.
"""


class RobodreamError(Exception):
    """A problem with the user's input or environment, with a message that says how to fix it."""


def error_line(exc: RobodreamError) -> str:
    """The one line to print for `exc`. A RobodreamError raised in a DataLoader worker process comes back
    re-raised with the worker's traceback in its message ("Caught RobodreamError in DataLoader worker process
    0. Original Traceback ..."); its last line is the original message."""
    lines = str(exc).strip().splitlines()
    if len(lines) <= 1:
        return str(exc)
    return lines[-1].removeprefix(f"{RobodreamError.__module__}.{RobodreamError.__qualname__}: ")
