"""The one exception type for bad user input.

Anything a user can fix (a missing file, an unknown config key, a store of the wrong format, NaN actions)
raises `RobodreamError` with one line saying what is wrong and how to fix it. The CLI prints that line and
exits with status 2 instead of a traceback; every other exception is a bug and keeps its traceback.
"""


class RobodreamError(Exception):
    """A problem with the user's input or environment, with a message that says how to fix it."""
