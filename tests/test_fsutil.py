"""fsutil: atomic writes under every umask, as a user who is not root."""

from __future__ import annotations

import builtins
import errno
import io
import os
import pathlib
import stat
from pathlib import Path

import numpy as np
import pytest

from srgan_cli import fsutil
from srgan_cli.fsutil import atomic_path


@pytest.fixture
def as_a_user(monkeypatch):
    """Opening a file checks its owner's permission bits, as the kernel does for a user who is not
    root (the tests run as root, who may read and write any file, which hid the umask bug)."""
    real_open, real_os_open = builtins.open, os.open

    def check(path, reading: bool, writing: bool) -> None:
        try:
            mode = os.stat(path).st_mode
        except (OSError, TypeError, ValueError):  # not there yet (it is being made), or a descriptor
            return
        if (reading and not mode & stat.S_IRUSR) or (writing and not mode & stat.S_IWUSR):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def user_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)):
            check(file, "r" in mode or "+" in mode, any(c in mode for c in "wa+"))
        return real_open(file, mode, *args, **kwargs)

    def user_os_open(path, flags, *args, **kwargs):
        if not (flags & os.O_CREAT and flags & os.O_EXCL):  # an exclusive create makes a new file
            access = flags & os.O_ACCMODE
            check(path, access in (os.O_RDONLY, os.O_RDWR), access in (os.O_WRONLY, os.O_RDWR))
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", user_open)
    monkeypatch.setattr(io, "open", user_open)  # pathlib's write_bytes and write_text
    monkeypatch.setattr(os, "open", user_os_open)
    accessor = getattr(pathlib, "_NormalAccessor", None)  # Python 3.10's pathlib kept its own io.open
    if accessor is not None and hasattr(accessor, "open"):
        monkeypatch.setattr(accessor, "open", staticmethod(user_open))


@pytest.fixture
def umask():
    """Set the umask for the test (``umask(0o222)``), restored after it."""
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def test_the_user_fixture_refuses_what_the_kernel_refuses(tmp_path, as_a_user):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    path.chmod(0o444)
    with pytest.raises(PermissionError):
        open(path, "rb+")
    with pytest.raises(PermissionError):
        path.write_bytes(b"y")
    assert path.read_bytes() == b"x"


@pytest.mark.parametrize("mask", [0o222, 0o277, 0o777, 0o077, 0o022, 0o002], ids=lambda m: f"umask{m:03o}")
@pytest.mark.parametrize("overwrite", [True, False])
def test_new_files_get_the_umasks_mode_whatever_the_umask(tmp_path, as_a_user, umask, mask, overwrite):
    """A umask without the owner's write bit (222, 277, 777) made every output and --report fail
    with "permission denied" (not as root): the temporary file was created with the umask's mode
    and reopened by its name to be written. cp gives such a file r--r--r--, and so does srgan."""
    umask(mask)
    dest = tmp_path / "out.bin"
    with atomic_path(dest, overwrite=overwrite) as tmp:
        # writable by its owner while it is written, whatever the final mode
        assert stat.S_IMODE(tmp.stat().st_mode) & 0o600 == 0o600
        with open(tmp, "wb") as fh:  # as write_image writes it
            fh.write(b"data")
    assert stat.S_IMODE(dest.stat().st_mode) == 0o666 & ~mask
    assert os.listdir(tmp_path) == ["out.bin"]
    dest.chmod(0o644)
    assert dest.read_bytes() == b"data"


def test_a_replaced_file_keeps_its_mode_under_a_read_only_umask(tmp_path, as_a_user, umask):
    dest = tmp_path / "private.bin"
    dest.write_bytes(b"old")
    dest.chmod(0o600)
    umask(0o222)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new" and stat.S_IMODE(dest.stat().st_mode) == 0o600


@pytest.mark.parametrize("mask", [0o222, 0o277], ids=lambda m: f"umask{m:03o}")
def test_images_and_reports_are_written_under_a_read_only_umask(tmp_path, as_a_user, umask, mask):
    from srgan_cli.images import write_image

    umask(mask)
    image = write_image(tmp_path / "a.png", np.random.default_rng(0).random((4, 4, 3)), overwrite=False)
    with atomic_path(tmp_path / "report.json") as tmp:  # as --report writes it
        tmp.write_text("{}\n", encoding="utf-8")
    for path in (image, tmp_path / "report.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert sorted(os.listdir(tmp_path)) == ["a.png", "report.json"]


def test_a_temporary_file_that_cannot_be_given_a_mode_is_still_written(tmp_path, monkeypatch, umask):
    """FAT and exFAT refuse chmod: the file keeps the mount's mode, and the write goes on (as root
    here, who may write it)."""

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(fsutil.os, "fchmod", refuse)
    monkeypatch.setattr(fsutil.os, "chmod", refuse)
    umask(0o222)
    with atomic_path(tmp_path / "out.bin") as tmp:
        tmp.write_bytes(b"x")
    assert Path(tmp_path / "out.bin").read_bytes() == b"x" and os.listdir(tmp_path) == ["out.bin"]


@pytest.mark.parametrize(
    ("source", "mask", "expected"),
    [(0o600, 0o022, 0o600), (0o640, 0o022, 0o640), (0o664, 0o022, 0o644), (0o444, 0o022, 0o444), (0o775, 0o002, 0o664)],
    ids=lambda v: f"{v:03o}",
)
def test_a_new_file_made_from_a_source_gets_its_mode_as_cp_gives(tmp_path, as_a_user, umask, source, mask, expected):
    """A private 0600 photo's upscale came out 0644, readable by every user, where cp (and the
    README, which said 'as cp gives') keeps it private: the source's read and write bits, less
    the umask. A read-only source (0444) gives a read-only output, as cp's; the owner could still
    write it while it was being made."""
    umask(mask)
    with atomic_path(tmp_path / "out", overwrite=False, like=stat.S_IFREG | source) as tmp:
        tmp.write_bytes(b"new")
    assert (tmp_path / "out").read_bytes() == b"new"
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == expected


def test_a_replaced_file_keeps_its_mode_and_group_not_the_sources(tmp_path, umask):
    """--overwrite onto a file of another owner and group left it root's (the writer's): the user
    whose file it was could no longer write it. It keeps its owner and group as it keeps its mode."""
    if not hasattr(os, "chown") or os.geteuid() != 0:
        pytest.skip("needs root to give a file another owner")
    dest = tmp_path / "out"
    dest.write_bytes(b"old")
    os.chown(dest, 65534, 65534)
    dest.chmod(0o664)
    with atomic_path(dest, like=stat.S_IFREG | 0o600) as tmp:
        tmp.write_bytes(b"new")
    st = dest.stat()
    assert dest.read_bytes() == b"new"
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o664)


def test_a_file_put_in_a_results_place_meanwhile_is_never_replaced(tmp_path):
    """--report and bench --json check their file at the start (missing, or an earlier one of
    their own) and wrote it at the end with a plain replace: a file another program wrote there
    during the run was replaced (10 of 10 runs). The check is made again at the rename."""
    dest = tmp_path / "report.json"

    def ours(path):
        return path.read_text() == "old report"

    with pytest.raises(FileExistsError):
        with atomic_path(dest, replaces=ours) as tmp:
            tmp.write_text("new report")
            dest.write_text("the user's notes")  # written during the run
    assert dest.read_text() == "the user's notes" and os.listdir(tmp_path) == ["report.json"]
    dest.write_text("old report")
    with atomic_path(dest, replaces=ours) as tmp:
        tmp.write_text("new report")
    assert dest.read_text() == "new report"
    dest.unlink()
    with atomic_path(dest, replaces=ours) as tmp:
        tmp.write_text("first report")
    assert dest.read_text() == "first report"


@pytest.mark.skipif(not hasattr(os, "O_DIRECTORY"), reason="folders are opened to be flushed on POSIX only")
@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("fails", [None, errno.EINVAL, errno.EIO], ids=["flushed", "EINVAL", "EIO"])
def test_the_folder_is_flushed_after_the_rename(tmp_path, monkeypatch, overwrite, fails):
    """The file was flushed before its rename, but not the folder after it: after a power loss an
    output counted written could be missing. A folder that cannot be flushed (some network and FUSE
    mounts) keeps the file written."""
    dest = tmp_path / "out.png"
    if overwrite:
        dest.write_bytes(b"old")
    real_fsync = os.fsync
    flushed: list[tuple[str, bool]] = []  # what each fsync was of: ("folder" or "file", dest there yet)

    def fsync(fd):
        kind = "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        same = os.fstat(fd).st_ino == os.stat(tmp_path).st_ino if kind == "folder" else True
        flushed.append((kind if same else "another folder", dest.read_bytes() == b"new" if dest.exists() else False))
        if fails is not None and kind == "folder":
            raise OSError(fails, os.strerror(fails))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with atomic_path(dest, overwrite=overwrite) as tmp:
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new" and os.listdir(tmp_path) == ["out.png"]
    assert flushed == [("file", False), ("folder", True)]  # the file before its rename, the folder after


@pytest.fixture
def as_on_windows(monkeypatch, as_a_user):
    """Windows' answers, as far as atomic_path meets them: a file without its owner's write bit is
    read-only, and a read-only file cannot be opened to be written (as_a_user), removed, or replaced
    by a rename; no chown, no folder to open for fsync."""
    real_replace, real_unlink = os.replace, os.unlink

    def read_only(path) -> bool:
        try:
            return not os.stat(path).st_mode & stat.S_IWUSR
        except OSError:
            return False

    def replace(src, dst, *args, **kwargs):  # MoveFileEx: access denied onto a read-only file
        if read_only(dst):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    def unlink(path, *args, **kwargs):  # DeleteFile: access denied for a read-only file
        if read_only(path):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(fsutil.sys, "platform", "win32")
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "unlink", unlink)
    for name in ("chown", "O_DIRECTORY"):
        monkeypatch.delattr(os, name, raising=False)


@pytest.mark.parametrize("fchmod", [True, False], ids=["fchmod", "no-fchmod"])  # Windows has it from Python 3.13
def test_a_read_only_sources_output_is_written_and_replaced_on_windows(
    tmp_path, monkeypatch, as_on_windows, umask, fchmod
):
    """On Windows the temporary file of a read-only source's output was made read-only (0444): it
    could not be reopened to be written (or, given the bit after, removed after its link), and
    --overwrite of a read-only output failed in the rename. The output is read-only, as cp's, once
    it has its name; a replaced read-only file keeps its read-only bit."""
    if not fchmod:
        monkeypatch.delattr(os, "fchmod", raising=False)
    dest = tmp_path / "out.png"
    with atomic_path(dest, overwrite=False, like=stat.S_IFREG | 0o444) as tmp:
        tmp.write_bytes(b"new")
    assert dest.read_bytes() == b"new" and not os.stat(dest).st_mode & stat.S_IWUSR
    assert os.listdir(tmp_path) == ["out.png"]
    with atomic_path(dest, like=stat.S_IFREG | 0o644) as tmp:  # --overwrite
        tmp.write_bytes(b"newer")
    assert dest.read_bytes() == b"newer" and not os.stat(dest).st_mode & stat.S_IWUSR
    assert os.listdir(tmp_path) == ["out.png"]

    def busy(src, dst, *args, **kwargs):
        raise PermissionError(errno.EBUSY, os.strerror(errno.EBUSY))

    monkeypatch.setattr(os, "replace", busy)  # a rename that fails leaves the old file as it was
    with pytest.raises(OSError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"lost")
    assert dest.read_bytes() == b"newer" and not os.stat(dest).st_mode & stat.S_IWUSR
    assert os.listdir(tmp_path) == ["out.png"]


def test_a_file_too_large_is_said_so_with_the_limit_that_stopped_it():
    """EFBIG ("File too large") named neither `ulimit -f` nor the file system's largest file; other
    errors keep the system's words."""
    too_large = OSError(errno.EFBIG, "File too large")
    assert "ulimit -f" in fsutil.write_reason(too_large) and "4 GiB on FAT32" in fsutil.write_reason(too_large)
    assert fsutil.stdout_problem(too_large).startswith("cannot write to standard output (file too large: over")
    assert fsutil.write_reason(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
