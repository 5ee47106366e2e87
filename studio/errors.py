"""The one exception type that reaches a user as a message instead of a traceback.

Raise `StudioError` for anything the user can fix: a missing path, a bad config value, a
checkpoint that is not ours. The CLI prints it as one line and exits with code 2; the window
shows it in a dialog. Write the message as "what, where, what to do".
"""


class StudioError(Exception):
    """A problem with the user's input or files, explained in plain words."""


def json_kind(value) -> str:
    """What a JSON value is, in a message's words ("got a list")."""
    names = {dict: "an object", list: "a list", str: "a string", bool: "true/false",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


class TrainingDiverged(StudioError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class DataError(StudioError):
    """Data with nothing (or too little) usable in it. `report` is the DataReport
    (studio.contract) of what was read: `skipped` lists each file with the reason it was not
    used, so the window can show them, not only this message. None when nothing was read."""

    def __init__(self, message: str, report=None):
        super().__init__(message)
        self.report = report


class DiskFull(StudioError):
    """Not enough free space for a checkpoint. The partial folder is removed and the last good
    checkpoint stays loadable; the run stops ("stopped: disk full") and resumes once there is room."""


class RunBusy(StudioError):
    """Another process trains in this run folder (it holds the run's lock)."""
