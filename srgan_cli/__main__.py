"""The ``srgan`` program: ``python -m srgan_cli`` and the console script.

Its first lines take over Ctrl-C, SIGTERM and SIGHUP (:func:`stopping.start_program`) before
anything heavy is imported, so that a signal in the first fraction of a second is one line and
exit 130, not a traceback from the middle of an import.
"""

from __future__ import annotations


def run() -> None:
    import os

    from . import stopping

    stopping.start_program()
    # OpenMP threads that spin between layers burn the cores that decoding, encoding and any
    # other program on the machine need: on 2 shared cores a folder of 20 images took 22.7 s
    # against 9.0 s with passive waiting (the same bytes); idle, 6.2 s against 6.6 s, and a
    # single large image 1-2% slower. Set before PyTorch loads its OpenMP; a value of the user's
    # own is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from .cli import run as run_cli  # click and the command group; a signal now waits for the command

    run_cli()


if __name__ == "__main__":
    run()
