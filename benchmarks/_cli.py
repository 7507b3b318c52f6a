"""What the benchmark scripts share on the command line: argparse types and one-line errors.

A script runs as ``python benchmarks/NAME.py`` (this folder is then first on sys.path) or is
imported by its path (the tests): either way it puts this folder on sys.path and imports
``from _cli import ...``. Argument errors go through argparse (usage, then ``error: ...``,
exit 2); errors of the run itself (a missing file, an unknown model, weights that do not load)
are one line ``error: ...`` on stderr and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # srgan_cli from this checkout


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: a whole number >= 0."""
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {value}")
    return value


def message(exc: BaseException) -> str:
    """``exc`` as one line: an OSError as 'FILE: reason', anything else its message."""
    from srgan_cli.errors import printable

    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename is not None else ""
        return printable(f"{where}{exc.strerror}")
    return printable(str(exc).strip() or type(exc).__name__)


def fail(text: str, code: int = 1) -> int:
    """Write ``error: TEXT`` on stderr; returns ``code``, for ``return fail(...)``."""
    sys.stderr.write(f"error: {text}\n")
    return code


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """``main(argv)``'s exit status; an SrganError or OSError becomes one line ``error: ...`` on
    stderr and status 1 (2 for an OptionError: a bad option value found past argparse)."""
    from srgan_cli.errors import SrganError

    try:
        return main(argv) or 0
    except (SrganError, OSError) as exc:
        sys.stdout.flush()
        return fail(message(exc), getattr(exc, "exit_code", 1))
