"""Atomic file writes: a reader never sees a half-written file, an interruption leaves none."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(dest: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it is renamed onto ``dest``.

    The temporary file lives in the destination folder (same filesystem, so the rename is
    atomic), is hidden (dot-prefixed) and is removed on any error or interruption. With
    ``overwrite=False`` an existing ``dest`` is never replaced (FileExistsError instead).
    """
    dest = Path(dest)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, dest)
        else:
            # link() fails if dest exists, so two writers can never clobber each other.
            os.link(tmp, dest)
            tmp.unlink()
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
