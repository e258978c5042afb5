"""The error the operator's tools (the CLI, the TUI) show as it is: a problem the operator can fix.

Not the domain's errors (`shared/domain/errors.py`) nor storage's (`shared/ports.py`): an entry point turns those
into this one, with what to do, when the operator can do something about them.
"""


class OperatorError(Exception):
    """A problem the operator can fix (no local stack, a table that does not answer, a bad argument): shown without
    a traceback."""
