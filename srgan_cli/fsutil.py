"""Atomic file writes: a reader never sees a half-written file, an interruption leaves none."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import first_line


@contextlib.contextmanager
def atomic_path(
    dest: str | Path,
    overwrite: bool = True,
    *,
    like: int | None = None,
    replaces: Callable[[Path], bool] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it is renamed onto ``dest``.

    The temporary file lives in the destination folder (same filesystem, so the rename is
    atomic), is hidden (dot-prefixed) and is removed on any error or interruption. With
    ``overwrite=False`` an existing ``dest`` is never replaced (FileExistsError instead).
    Works on filesystems without Unix permissions or hard links (FAT, exFAT, some network
    shares), as on memory cards and USB drives.

    A new file gets the permissions cp gives a copy: ``like``'s read and write bits (the
    ``st_mode`` of the file it is made from, so that a private 0600 photo's upscale is private
    too), less the umask; without ``like``, 0666 less the umask. A replaced file keeps its own
    mode, owner and group (see :func:`_keep_mode`).

    ``replaces``: with it, an existing ``dest`` is replaced only where ``replaces(dest)`` is true
    (an earlier file of the writer's own: a report, a result), looked at just before the rename,
    and a ``dest`` missing then is made as with ``overwrite=False``: a file another program put
    there while the writer worked (after its check at the start) is never replaced
    (FileExistsError instead).

    ``on_note``: told of what did not stop the write but is worth saying (a temporary file that
    could not be removed once ``dest`` was made: an append-only folder).
    """
    dest = Path(dest)
    perm = 0o666 if like is None else stat.S_IMODE(like) & 0o666
    # On Windows a file without its owner's write bit is read-only, and a read-only file cannot be
    # opened to be written, nor removed, nor replaced: the temporary file of a read-only source's
    # output (0444) failed to reopen. It is made writable, and read-only once it has its name.
    windows = sys.platform == "win32"
    tmp, mode = _new_temp(dest, perm | stat.S_IWUSR if windows else perm)
    if windows and not perm & stat.S_IWUSR:
        mode = perm
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            _fsync(fh.fileno())
        if mode is not None and not windows:  # the umask's mode, without the owner's read or write bit
            with contextlib.suppress(OSError):
                os.chmod(tmp, mode)
        if replaces is not None and os.path.lexists(dest) and not replaces(dest):
            raise FileExistsError(errno.EEXIST, "exists and is not to be replaced", str(dest))
        if overwrite and (replaces is None or os.path.lexists(dest)):
            if windows:
                mode = _replace_on_windows(tmp, dest, mode)
            else:
                _keep_mode(dest, tmp)
                os.replace(tmp, dest)
        else:
            leftover = _publish_new(tmp, dest)
            if leftover is not None and on_note is not None:
                on_note(leftover)
        if windows and mode is not None:  # read-only now that it has its name
            with contextlib.suppress(OSError):
                os.chmod(dest, mode)
        _fsync_folder(dest.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        except OSError as exc:  # an append-only folder: said, or it stays unknown
            if on_note is not None:
                on_note(f"{dest}: its temporary file {tmp.name} could not be removed ({exc.strerror or exc})")
        raise


def _keep_mode(dest: Path, tmp: Path) -> None:
    """A file replaced in place keeps its permission bits (a private 0600 file stays private),
    its owner and its group, as an in-place write would; a new file has the umask's mode and the
    writer's owner. The owner can be kept only by root (a user may still give the file its old
    group, where they belong to it); what cannot be kept is left as it is, silently."""
    try:
        st = os.lstat(dest)
    except OSError:
        return  # no file there yet
    if stat.S_ISLNK(st.st_mode):
        return  # the link is replaced, not the file it points to: that file's mode and owner are not ours to copy
    chown = getattr(os, "chown", None)  # none on Windows
    if chown is not None:
        try:
            mine = os.stat(tmp)
            if (mine.st_uid, mine.st_gid) != (st.st_uid, st.st_gid):
                chown(tmp, st.st_uid, st.st_gid)
        except OSError:  # EPERM: not root; the group alone may be allowed
            with contextlib.suppress(OSError):
                chown(tmp, -1, st.st_gid)
    with contextlib.suppress(OSError):  # FAT and exFAT have no modes to keep; after chown, which may clear setgid
        os.chmod(tmp, stat.S_IMODE(st.st_mode))


def _replace_on_windows(tmp: Path, dest: Path, mode: int | None) -> int | None:
    """``os.replace(tmp, dest)`` on Windows, which refuses to replace a read-only file (access
    denied, where --overwrite replaces a 0444 file elsewhere): such a ``dest`` is made writable for
    the rename, and read-only again if the rename fails. Returns the mode to give ``dest`` after the
    rename: a replaced file keeps its own (its read-only bit; see :func:`_keep_mode`), a new one
    gets ``mode``."""
    try:
        old = stat.S_IMODE(os.stat(dest).st_mode)
    except OSError:  # none there (or a link to nothing, replaced as a new file)
        os.replace(tmp, dest)
        return mode
    if old & stat.S_IWUSR:
        os.replace(tmp, dest)
        return None
    os.chmod(dest, old | stat.S_IWUSR)
    try:
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.chmod(dest, old)
        raise
    return old


def _publish_new(tmp: Path, dest: Path) -> str | None:
    """Give the finished ``tmp`` the name ``dest``, which must not exist (FileExistsError); returns
    a note where ``tmp`` is left behind as a second name of ``dest``, else None."""
    try:
        # link() fails if dest exists, so two writers can never clobber each other.
        os.link(tmp, dest)
    except FileExistsError:
        raise
    except OSError:
        # No hard links here (FAT, exFAT: EPERM; some shares: EOPNOTSUPP). Claim the name with
        # an exclusive create, which fails as link() would if it exists, then rename the file
        # over that empty placeholder: a reader can see an empty file only in between.
        os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        try:
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                dest.unlink()
            raise
    else:
        # dest is there, whole: an append-only folder (chattr +a) takes the new name but lets none
        # be removed, and the image written was reported failed, its temporary file left
        try:
            os.unlink(tmp)
        except OSError as exc:
            return (
                f"{dest}: written, but its temporary file {tmp.name} (a second name of the same file) could not "
                f"be removed ({exc.strerror or exc}); remove it where the folder allows"
            )
    return None


def _fsync(fd: int) -> None:
    """Flush to the disk; a filesystem that cannot (some network and FUSE mounts answer EINVAL
    or ENOTSUP) keeps the data as safe as it can, which is no reason to refuse the write."""
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            raise


def _fsync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries to the disk, so that a file renamed into it is there after a power
    loss, as the file's own fsync keeps its bytes (after the rename the name itself was in the
    page cache alone: an output counted written could be missing). Best effort: where a folder
    cannot be opened or flushed (Windows has no O_DIRECTORY; some network and FUSE mounts refuse)
    the file is written all the same."""
    directory = getattr(os, "O_DIRECTORY", None)
    if directory is None:
        return
    try:
        fd = os.open(folder, os.O_RDONLY | directory | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _shortened(name: str) -> str:
    """``name`` cut so that the temporary file's name, ``.NAME.XXXXXXXX.part``, fits in the 255
    bytes a file name may have: a name that fits on its own must not fail for its temp name."""
    room = 255 - len("..") - 8 - len(".part")  # 8: _new_temp's random part
    while len(os.fsencode(name)) > room:
        name = name[:-1]
    return name


def _new_temp(dest: Path, perm: int = 0o666) -> tuple[Path, int | None]:
    """Create an empty ``.NAME.XXXXXXXX.part`` beside ``dest`` with the usual permissions; returns
    it, and the mode to give it once written where that is not its mode now (else None).

    Opened with mode ``perm`` (0666, or a source's read and write bits) and O_EXCL, so the kernel
    applies the umask (or a folder's default ACL) as it does to any new file, as cp's are made
    (mkstemp would make it 0600), and no two writers get the same file. The umask is never read:
    Python reads it only by setting it, and while it is set another thread's new files would get
    the wrong permissions. FAT and exFAT ignore the mode: the file gets the mount's.

    A umask without the owner's write bit (222, 277, 777) gives a file its owner may not write,
    and the writers reopen the file by its name: every output failed with "permission denied"
    (not as root, who may write anyway). Such a file is made readable and writable by its owner
    for the writing, and atomic_path gives it the umask's mode before the rename.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    prefix = f".{_shortened(dest.name)}."
    for _ in range(100):
        tmp = dest.parent / f"{prefix}{secrets.token_hex(4)}.part"
        try:
            fd = os.open(tmp, flags, perm)
        except FileExistsError:
            continue
        try:
            return tmp, _owner_writable(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        finally:
            os.close(fd)
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(dest.parent))


def _owner_writable(fd: int) -> int | None:
    """Let the owner read and write the new file ``fd`` (atomic_path reopens it to fsync it) if
    its mode does not; returns the mode it had (to restore once written), or None where nothing
    was changed (the usual case; FAT, which refuses modes, too)."""
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & stat.S_IRUSR and mode & stat.S_IWUSR:
        return None
    try:
        os.fchmod(fd, mode | stat.S_IRUSR | stat.S_IWUSR)
    except (OSError, AttributeError):  # no modes here (FAT), or no fchmod (Windows)
        return None
    return mode


# the characters FAT and exFAT (memory cards, USB drives) refuse in a name, with the control characters
FAT_REFUSED = '\\:*?"<>|'
_FAT_REFUSES = 'FAT and exFAT refuse \\ : * ? " < > | and control characters'


def fat_refused(name: str) -> str:
    """The characters of ``name`` that FAT and exFAT refuse, once each, in order ('' where none)."""
    return "".join(dict.fromkeys(c for c in name if c in FAT_REFUSED or ord(c) < 0x20))


def _refused_words(chars: str) -> str:
    words = [f"'{c}'" for c in chars]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def name_refusal(folder: str | Path, name: str, probed: dict[tuple[str, str], str | None] | None = None) -> str | None:
    """Why the file system holding ``folder`` (its nearest existing folder, where it is still to be
    made) cannot take a file named ``name``, as a message; None where it can, or it is not known.

    Asked only of a name holding a character FAT and exFAT refuse, by making an empty file whose
    name holds the same characters and removing it: Linux's exFAT answers "no such file" for such a
    name, and every image was upscaled before its write failed, as a path too long for Windows.
    ``probed`` keeps the answers of one run (one file made per folder and set of characters)."""
    chars = fat_refused(name)
    if not chars:
        return None
    there = os.path.abspath(folder)
    while not os.path.isdir(there) and os.path.dirname(there) != there:
        there = os.path.dirname(there)
    key = (there, chars)
    if probed is not None and key in probed:
        return probed[key]
    answer = None
    probe = os.path.join(there, f".srgan-name-{secrets.token_hex(4)}{chars}.part")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as exc:  # ENOENT: FUSE exFAT; EINVAL: the kernel's FAT and exFAT, Windows; EILSEQ: some
        if exc.errno in (errno.ENOENT, errno.EINVAL, errno.EILSEQ):
            answer = f"the file system here refuses a name holding {_refused_words(chars)} ({_FAT_REFUSES})"
    else:
        with contextlib.suppress(OSError):
            os.unlink(probe)
    if probed is not None:
        probed[key] = answer
    return answer


def not_found_reason(path: Path) -> str:
    """Why a write of ``path`` failed with "no such file or folder": its folder is missing; else, as
    the folder is there, a path too long for Windows, or a name the file system refuses."""
    if not os.path.isdir(path.parent):
        return f"the folder {path.parent} does not exist"
    length = len(os.path.abspath(path))
    temporary = length + len(f"..{'x' * 8}.part")  # _new_temp's name beside it: .NAME.XXXXXXXX.part
    if sys.platform == "win32" and temporary >= 260:  # Windows without long paths: 260 or more "not found"
        return (
            f"the path is too long for this system ({length} characters, {temporary} for its temporary file; "
            "Windows takes 259 unless long paths are enabled); choose a shorter -o"
        )
    chars = fat_refused(path.name)
    if chars:  # Linux's FUSE exFAT answers so for a name it refuses
        return f"the file system refuses a name holding {_refused_words(chars)} ({_FAT_REFUSES}); choose another name"
    return f"the file system refuses the name (it answered 'no such file or folder', though {path.parent} is there)"


def mkdir_reason(folder: Path, exc: OSError) -> str:
    """Why ``folder`` cannot be made: a name FAT and exFAT refuse (FUSE exFAT says "no such file"; the
    kernel's drivers and Windows, "invalid argument"), where one of its missing parts holds such
    characters; else the system's reason."""
    if exc.errno in (errno.ENOENT, errno.EINVAL, errno.EILSEQ):
        part = folder
        while not part.exists() and part != part.parent:
            if chars := fat_refused(part.name):
                return (
                    f"the file system may refuse the name {part.name!r}, which holds {_refused_words(chars)} "
                    f"({_FAT_REFUSES})"
                )
            part = part.parent
    return str(exc.strerror or exc)


# EFBIG, "File too large": a write past the process's file-size limit or the file system's largest file
TOO_LARGE = (
    "file too large: over the file-size limit that ulimit -f sets, or over the file system's largest file, "
    "4 GiB on FAT32"
)


def write_reason(exc: OSError) -> str:
    """Why a file could not be written, for a one-line message: the system's reason, but for EFBIG,
    whose "File too large" named neither the limit (ulimit -f) nor the file system as the cause."""
    if exc.errno == errno.EFBIG:
        return TOO_LARGE
    return exc.strerror or first_line(exc)


def temporary_folder_reason(exc: OSError) -> str:
    """Why no temporary folder could be made, for a one-line message: tempfile's own "No usable
    temporary directory found" lists every folder it tried, on one long line."""
    why = exc.strerror or first_line(exc)
    if "No usable temporary directory" in why:
        return "no writable one in TMPDIR, /tmp, /var/tmp or the current folder"
    return why


def user_cache_dir() -> Path:
    """srgan's folder in the user's cache: ``$XDG_CACHE_HOME/srgan`` (default ``~/.cache/srgan``),
    where the LPIPS weights and the decoded training images of ``--cache disk`` go."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "srgan"


def file_in_the_way(folder: str | Path) -> Path | None:
    """The outermost path on the way to ``folder`` (``folder`` included) that is there but is not a
    folder (a file, a link to nothing), so ``folder`` cannot be made; None if nothing is in the way."""
    folder = Path(folder)
    for above in [*reversed(folder.parents), folder]:
        if os.path.lexists(above) and not os.path.isdir(above):
            return above
    return None


def folder_problem(folder: str | Path) -> str | None:
    """Why a file cannot be written into ``folder``, made where missing, as a message; None if it
    can. Checked before a run so that a JSON or report written at its end is not lost to a file in
    the way or a folder that cannot be written (the run's work done, then "cannot write")."""
    folder = Path(folder)
    blocked = file_in_the_way(folder)
    if blocked is not None:
        return f"{blocked}: is a file, not a folder"
    there = folder
    while not os.path.lexists(there) and there != there.parent:
        there = there.parent
    with contextlib.suppress(OSError, AttributeError):  # statvfs: not on Windows
        if os.statvfs(there).f_flag & os.ST_RDONLY:
            return f"{there}: cannot write there (read-only file system)"
    if not os.access(there, os.W_OK | os.X_OK):
        return f"{there}: cannot write there (permission denied)"
    return None


def result_file_problem(word: str, path: Path, is_ours: Callable[[Path], bool], what: str, option: str) -> str | None:
    """Why ``path`` (typed as ``word``) cannot take a file a command writes at its end and replaces
    on a rerun (bench's --json, upscale's --report), as a message; None if it can. It replaces an
    earlier one of its own (``is_ours``), never another file; a FIFO or a device is never opened to
    find out (reading a FIFO blocked for ever); its folder may be missing, and is made then."""
    # Path drops a last slash or '.': "out/" and "out/." wrote a file named out; '..' names no file
    if word.endswith(("/", os.sep)) or os.path.basename(word) in (".", ".."):
        return f"{word} is a folder name; give a file name"
    not_ours = f"{path} exists and is not {what}; choose another name"
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):  # missing, or a file on the way: folder_problem says which
        if os.path.islink(path):  # a link to nothing: writing would replace the link, not what it names
            return not_ours
        return folder_problem(path.parent)
    except OSError as exc:  # a name too long, a folder that cannot be searched
        return f"{path}: {exc.strerror or exc}"
    if stat.S_ISDIR(st.st_mode):
        return f"{path} is a folder; give a file name"
    if not stat.S_ISREG(st.st_mode):
        return f"{not_ours} ({option} - writes to standard output)"
    if not is_ours(path):
        return not_ours
    return folder_problem(path.parent)  # written beside itself and renamed: the folder must be writable


def read_json(path: str | Path, limit: int = 50_000_000) -> object | None:
    """The JSON document in ``path`` (its first ``limit`` bytes), or None when the file cannot be
    read or is not JSON: how a command tells its own earlier output, which it may replace, from
    a file of the user's, which it must not."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            return json.loads(fh.read(limit))
    except (OSError, ValueError, RecursionError):
        return None


def write_stdout(data: bytes) -> None:
    """Write all of ``data`` to standard output, or raise OSError (BrokenPipeError: the reader left;
    :func:`stdout_problem` says it in words), with stdout then pointed at /dev/null.

    A write to a pipe whose reader goes away part way returns a short count, and Python's
    buffered stdout neither retried nor raised: an image or a report cut short went down the
    pipe and the command exited 0. Here the rest is written until it is all out or the write
    fails; a non-blocking stdout is waited on until it takes more.
    """
    try:
        _write_all(data)
    except OSError:
        stdout_gone()
        raise


def stdout_problem(exc: OSError) -> str:
    """Why :func:`write_stdout` failed, for a message: the reader left, or the system's reason."""
    if isinstance(exc, BrokenPipeError):
        return "standard output was closed"
    return f"cannot write to standard output ({write_reason(exc)})"


def _write_all(data: bytes) -> None:
    out = sys.stdout
    out.flush()
    try:
        fd = out.fileno()
    except (AttributeError, OSError, ValueError):  # no file descriptor (a capture, a redirect_stdout)
        buffer = getattr(out, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:  # a text stream (io.StringIO)
            out.write(data.decode("utf-8", "surrogateescape"))
            out.flush()
        return
    import select

    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:  # a non-blocking pipe that is full: wait until its reader takes some
            select.select([], [fd], [])


def stdout_gone() -> None:
    """After a failed write: point standard output at /dev/null, so that Python's flush at exit
    does not complain about the reader that went away (e.g. `| head`) or the full disk."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
