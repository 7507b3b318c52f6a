"""The one exception type for errors a user can cause."""


class SrganError(Exception):
    """A problem the user can fix (bad path, broken image, wrong weights).

    The message is one line that says what went wrong and, where it helps, what to do.
    The CLI prints it as ``error: <message>`` and exits non-zero, without a traceback.
    """
