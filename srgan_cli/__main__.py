"""The ``srgan`` program: ``python -m srgan_cli`` and the console script.

Its first lines take over Ctrl-C, SIGTERM and SIGHUP (:func:`stopping.start_program`) before
anything heavy is imported, so that a signal in the first fraction of a second is one line and
exit 130, not a traceback from the middle of an import.
"""

from __future__ import annotations


def run() -> None:
    from . import stopping

    stopping.start_program()
    from .cli import run as run_cli  # click and the command group; a signal now waits for the command

    run_cli()


if __name__ == "__main__":
    run()
