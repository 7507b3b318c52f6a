"""The one exception type for errors a user can cause."""


class SrganError(Exception):
    """A problem the user can fix (bad path, broken image, wrong weights).

    The message is one line that says what went wrong and, where it helps, what to do.
    The CLI prints it as ``error: <message>`` and exits non-zero, without a traceback.
    """


class OptionError(SrganError):
    """A bad option value or combination found past click's own checks: the CLI exits 2, as for
    click's usage errors, so scripts can tell a wrong command line from a failed run."""

    exit_code = 2


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of ``exc``'s message, at most ``limit`` characters (its type name if empty),
    for quoting a library's error inside a one-line message."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__
