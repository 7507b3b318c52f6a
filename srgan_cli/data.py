"""Training data: random HR crops from any folder tree of images, and their bicubic LR inputs.

Every sample is a pure function of ``(seed, index)``: which image, where the crop sits, the flip
and the 90-degree rotation all come from a generator seeded with both. Batch ``b`` of step ``s``
on rank ``r`` of ``w`` processes holds the indices ``((s * w + r) * b) ... + b - 1``, so a run
resumed at step ``s`` sees exactly the batches an uninterrupted run would have seen, and ranks
never share a sample (the sharding a DistributedSampler would do, without its epoch state).

HR patches leave the loader as uint8; the LR inputs are made on the training device, batched,
with the MATLAB-compatible bicubic (:func:`resize.imresize_torch`) and rounded to 8-bit levels
like the LR files of the benchmark sets.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import mmap
import os
import re
import secrets
import shutil
import signal
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from .errors import OptionError, SrganError, first_line, printable
from .fsutil import atomic_path, user_cache_dir, write_reason
from .images import _pillow_unlimited as pillow_unlimited
from .images import folder_entries, is_image_path, read_rgb8, unread_hint, unread_kinds, unread_reason
from .resize import imresize, imresize_torch
from .stopping import SAME_REQUEST

# --cache auto decodes everything up front when the decoded set fits in 16 GiB (DIV2K's 800 photos
# take 6.7 GB, about a minute and a half to decode) and in half the free memory: without the cache
# each patch decodes its whole image, 6-10 patches/s a core for 2K-12 MP photos against thousands
# from memory, which left a GPU idle most of the time.
CACHE_AUTO_LIMIT = 16 << 30
# disk: the decoded images are kept as .npy files and read back memory-mapped (3,100 patches/s
# a core from the page cache, against 11 decoding 2040x1400 PNGs), for sets larger than memory;
# auto never picks it, as it writes as many bytes as the set has decoded
CACHE_MODES = ("auto", "on", "off", "disk")
# Larger images are left out of training: a header claiming more would have the loader decode
# gigabytes for every patch (a 400 MP image is 1.2 GB decoded); Pillow's own limit (179 MP)
# called 196 MP photos "unreadable".
TRAIN_MAX_PIXELS = 400_000_000
# The training reader holds it too (and the up-front decode): a file replaced since the scan by a
# larger one is not decoded (its patches come from the next image).
TRAIN_LIMIT = "training reads (it was smaller when the folder was scanned)"
# A scan or decode that takes longer than PROGRESS_FIRST seconds says how far it has come, then
# every PROGRESS_EVERY seconds (a tree of a million images takes minutes: it sat silent).
PROGRESS_FIRST, PROGRESS_EVERY = 3.0, 15.0
# SrganError: what images.read_rgb8 raises for a file it cannot decode; OverflowError: a damaged size
# in a header that Image.open passes on to C.
_READ_ERRORS = (OSError, ValueError, SyntaxError, OverflowError, Image.DecompressionBombError, SrganError)


@dataclass
class ImageScan:
    """The usable images of a folder tree and what was skipped."""

    root: Path
    paths: list[Path] = field(default_factory=list)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height)
    skipped_small: int = 0
    unreadable: list[Path] = field(default_factory=list)  # files with an image name whose header did not read
    skipped_large: int = 0  # over TRAIN_MAX_PIXELS
    unlisted: list[tuple[Path, str]] = field(default_factory=list)  # sub-folders that could not be listed, and why
    # files of image formats srgan does not read (HEIC, JPEG XL; AVIF where Pillow lacks it), by suffix
    unread: dict[str, int] = field(default_factory=dict)
    # names of a file listed already under another name (a symlink, a hard link): passed over, so that
    # no image is trained on twice, nor trained on under one name and held out under the other
    duplicates: list[Path] = field(default_factory=list)
    # each of ``duplicates`` -> the name of it that is listed (in ``paths``, or passed over as too small/large)
    twin_of: dict[Path, Path] = field(default_factory=dict)

    @property
    def skipped_unreadable(self) -> int:
        return len(self.unreadable)

    @property
    def decoded_bytes(self) -> int:
        return sum(w * h * 3 for w, h in self.sizes)

    def summary(self, most: int = 5) -> str:
        """One line for the log; names the unreadable files (the first ``most``), so they can be fixed."""
        large = f", {self.skipped_large} larger than {TRAIN_MAX_PIXELS // 1_000_000} MP" if self.skipped_large else ""
        text = (
            f"{len(self.paths)} training images in {printable(str(self.root))} "
            f"(skipped {self.skipped_small} smaller than the patch{large}, {self.skipped_unreadable} unreadable)"
        )
        if self.unreadable:
            more = f" and {len(self.unreadable) - most} more" if len(self.unreadable) > most else ""
            text += f"; unreadable: {', '.join(printable(str(p)) for p in self.unreadable[:most])}{more}"
        text += self.unread_note()
        if self.duplicates:
            n = len(self.duplicates)
            text += (
                f"; passed over {n} duplicate{'s' if n != 1 else ''} (a link to, or another name of, an image "
                f"listed already: {printable(str(self.duplicates[0]))}{' and more' if n > 1 else ''})"
            )
        if self.unlisted:
            names = ", ".join(printable(str(p)) for p, _ in self.unlisted[:most])
            more = f" and {len(self.unlisted) - most} more" if len(self.unlisted) > most else ""
            why = self.unlisted[0][1]
            text += f"; {len(self.unlisted)} sub-folder(s) could not be listed ({why}), their images left out: "
            text += f"{names}{more}"
        return text

    def unread_note(self) -> str:
        """``; passed over 3 files srgan does not read (2 .heic, 1 .avif)``, or "" where there were none."""
        if not self.unread:
            return ""
        n = sum(self.unread.values())
        kinds = unread_kinds(self.unread)
        return f"; passed over {n} file{'s' if n != 1 else ''} srgan does not read ({kinds}){unread_hint(self.unread)}"

    def fingerprint(self) -> str:
        """A digest of the images (paths under the root, and sizes): a resumed run compares it
        with its checkpoint's, as the patches it draws depend on exactly this list."""
        digest = hashlib.sha256()
        for path, (width, height) in zip(self.paths, self.sizes, strict=True):
            digest.update(os.fsencode(path.relative_to(self.root).as_posix()) + f"\0{width}x{height}\0".encode())
        return digest.hexdigest()


def list_images(
    root: Path,
    recursive: bool = True,
    unlisted: list[tuple[Path, str]] | None = None,
    visit: Callable[[int], None] | None = None,
    unread: dict[str, int] | None = None,
) -> list[Path]:
    """Image names under ``root`` (recursively by default), sorted; hidden names are ignored and
    symlinked folders followed once (:func:`images.folder_entries`, as ``upscale`` lists a
    folder). Names that are no regular file (a broken link, a FIFO) are listed too, so that the
    scan counts them unreadable instead of leaving them out unsaid; sub-folders that cannot be
    listed go to ``unlisted``, and the files of image formats srgan does not read are counted by
    suffix in ``unread``."""
    found = []
    for path, is_file in folder_entries(root, recursive, unlisted=unlisted, visit=visit):
        if is_image_path(path):
            found.append(path)
        elif unread is not None and is_file and unread_reason(path) is not None:
            unread[path.suffix.lower()] = unread.get(path.suffix.lower(), 0) + 1
    return sorted(found)


class Ticker:
    """Progress for a long step: ``tick(text)`` passes ``text()`` to ``report`` once ``first``
    seconds have gone by and then every ``every`` seconds, so a quick step says nothing; and
    raises KeyboardInterrupt when ``should_stop`` says so (Ctrl-C during a long scan)."""

    def __init__(
        self,
        report: Callable[[str], None] | None,
        should_stop: Callable[[], bool] | None = None,
        first: float | None = None,
        every: float | None = None,
    ):
        self.report, self.should_stop = report, should_stop
        self.every = PROGRESS_EVERY if every is None else every
        self.next = time.monotonic() + (PROGRESS_FIRST if first is None else first)

    def tick(self, text: Callable[[], str]) -> None:
        if self.should_stop is not None and self.should_stop():
            raise KeyboardInterrupt
        if self.report is not None and time.monotonic() >= self.next:
            self.report(text())
            self.next = time.monotonic() + self.every


def _header_size(path: Path) -> tuple[int, int]:
    """An image file's (width, height) from its header; one of _READ_ERRORS where it cannot tell."""
    return _header_info(path)[0]


def _header_info(path: Path) -> tuple[tuple[int, int], object]:
    """An image file's (width, height) from its header, and what the file is whatever its name
    (device and inode, links followed; its real path where the file system has no inode numbers):
    one of _READ_ERRORS where it cannot tell. One stat, which the check for a regular file needs."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):  # a FIFO named like an image: opening it would block
        raise ValueError(f"{path}: not a regular file")
    if st.st_size == 0:  # Pillow would try every format on it first: twice the time of a real header
        raise ValueError(f"{path}: empty file")
    key: object = (st.st_dev, st.st_ino) if st.st_ino else os.path.normcase(os.path.realpath(path))
    with pillow_unlimited(), Image.open(path) as im:  # Pillow's limit off (on this thread): the scan judges size
        return im.size, key


class ImagesUnreadable(SrganError):
    """No training image can be read any more (the --data folder renamed or unmounted mid-run): the
    trainer saves a checkpoint and stops. Made from its message alone, as torch re-raises an error
    of a loader worker."""


class TooManyPixels(SrganError):
    """An image whose header claims more pixels than the reader's limit (:func:`read_within`)."""


def read_within(path: Path, max_pixels: int, what: str) -> np.ndarray:
    """:func:`images.read_rgb8` with a limit: a file whose header claims more than ``max_pixels``
    is refused before any pixel is decoded (a 1.8 KB TIFF that claims 24 x 2,000,000,000 px was
    decoded until the machine ran out of memory), in words that fit train and bench (read_rgb8's
    own point to upscale's --max-pixels): ``PATH: 24x2000000000 px, more than the 100 MP WHAT``."""
    try:
        return read_rgb8(path, max_pixels=max_pixels)
    except SrganError as exc:
        error = exc
    try:
        width, height = _header_size(path)
    except _READ_ERRORS:
        raise error from None
    if width * height <= max_pixels:
        raise error from None
    raise TooManyPixels(f"{path}: {width}x{height} px, more than the {max_pixels / 1_000_000:g} MP {what}") from None


def _reason(exc: BaseException) -> str:
    """Why an image did not read, on one line: srgan's own message whole (a newline in the path it
    names is escaped, not where the message is cut), a library's first line."""
    return printable(str(exc).strip() if isinstance(exc, SrganError) else first_line(exc))


def failure_text(path: Path, why: str) -> str:
    """``why`` an image failed to read, with its path in front unless the message names it."""
    name = printable(str(path))
    why = printable(why)
    return why if name in why else f"{name}: {why}"


def _header_sizes(paths: list[Path], ticker: Ticker) -> Iterator[tuple[tuple[int, int], object] | None]:
    """Each path's size and file (:func:`_header_info`; None where its header does not read), in
    order. One thread: on threads the scan of 60,000 files on a local disk took 8.2 s against
    2.25 s (the parse holds the GIL)."""
    for done, path in enumerate(paths):
        if done % 256 == 0:
            ticker.tick(lambda done=done: f"read {done} of {len(paths)} image headers under the training folder")
        try:
            yield _header_info(path)
        except _READ_ERRORS:
            yield None


def scan_images(
    root: str | Path,
    min_size: int,
    progress: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ImageScan:
    """Find the images under ``root`` at least ``min_size`` px on each side (header reads only).

    ``progress``, where given, hears how far a scan that takes more than a few seconds has come
    (a tree of a million images takes minutes); ``should_stop`` is asked between folders and
    between batches of headers, and a True raises KeyboardInterrupt.
    """
    root = Path(root)
    if not root.is_dir():
        raise SrganError(f"{root}: no such folder; --data must be a folder (tree) of training images")
    scan = ImageScan(root=root)
    ticker = Ticker(progress, should_stop)
    found = [0]

    def visit(count: int) -> None:
        found[0] = count
        ticker.tick(lambda: f"listing the training folder {root}: {found[0]} files so far")

    paths = list_images(root, unlisted=scan.unlisted, visit=visit, unread=scan.unread)
    seen: dict[object, Path] = {}
    for path, info in zip(paths, _header_sizes(paths, ticker), strict=True):
        if info is None:
            scan.unreadable.append(path)
            continue
        (width, height), key = info
        if key in seen:  # a link to an image listed already (the first name, sorted, is kept)
            scan.duplicates.append(path)
            scan.twin_of[path] = seen[key]
            continue
        seen[key] = path
        if width < min_size or height < min_size:
            scan.skipped_small += 1
            continue
        if width * height > TRAIN_MAX_PIXELS:
            scan.skipped_large += 1
            continue
        scan.paths.append(path)
        scan.sizes.append((width, height))
    if not scan.paths:
        raise SrganError(
            f"{root}: no usable training images ({scan.skipped_small} smaller than the {min_size} px patch, "
            f"{scan.skipped_unreadable} unreadable{scan.unread_note()}); give --data a folder of images at least "
            f"{min_size} px wide"
        )
    return scan


def _recorded_names_listed(scan: ImageScan, recorded: set[str]) -> ImageScan:
    """``scan`` with each image whose listed name is not among the ``recorded`` held-out names, but a second
    name of it (a link added since) is, listed under that recorded name instead: the scan keeps the first
    name, sorted, so a resumed run found its held-out image "gone" and trained on it under the new name."""
    paths, duplicates, twin_of = list(scan.paths), list(scan.duplicates), dict(scan.twin_of)
    for dup, listed in scan.twin_of.items():
        name, listed_name = (p.relative_to(scan.root).as_posix() for p in (dup, listed))
        if name in recorded and listed_name not in recorded and listed in paths:
            paths[paths.index(listed)] = dup
            duplicates[duplicates.index(dup)] = listed
            del twin_of[dup]
            twin_of[listed] = dup
    if paths == scan.paths:
        return scan
    return dataclasses.replace(scan, paths=paths, duplicates=duplicates, twin_of=twin_of)


def hold_out(
    scan: ImageScan, count: int, names: list[str] | None = None, usable: Callable[[Path], bool] | None = None
) -> tuple[ImageScan, list[Path]]:
    """Split ``count`` images off a scan for validation (``srgan train --val-holdout``).

    The held-out images are those whose path under the scan's root has the lowest sha256: the
    choice depends on neither the seed (runs with different seeds validate on the same images),
    nor the machine or the order of a folder listing. ``names`` (paths under the root, as a
    resumed run recorded them) are held out instead where the scan still has them, so images
    added to the folder since do not change the validation set, nor put its images in training.
    ``usable``, where given, tells whether an image can be validated on (it decodes): one that
    cannot is passed over for the next and counted unreadable, so that one corrupt file in a
    large tree does not stop the run. Returns the scan without them, and them.
    """
    if not 0 < count < len(scan.paths):
        raise SrganError(
            f"--val-holdout {count}: {scan.root} has {len(scan.paths)} usable training images; "
            "hold out at least 1 and leave at least 1 to train on"
        )
    scan = _recorded_names_listed(scan, set(names or ()))

    def rank(path: Path) -> str:
        # fsencode: the bytes of the name (UTF-8 for text names, as before), also where they are not UTF-8
        return hashlib.sha256(os.fsencode(path.relative_to(scan.root).as_posix())).hexdigest()

    def pick(candidates: list[Path], most: int) -> list[Path]:
        chosen = []
        for path in candidates:
            if len(chosen) == most or len(chosen) + len(broken) == len(scan.paths) - 1:
                break  # at least one image is left to train on
            if path in broken:
                continue
            if usable is None or usable(path):
                chosen.append(path)
            else:
                broken.add(path)
        return chosen

    broken: set[Path] = set()
    recorded = set(names or ())
    mine = [path for path in scan.paths if path.relative_to(scan.root).as_posix() in recorded]
    held = set(pick(mine, len(mine))) if len(mine) < len(scan.paths) else set()
    if not held:
        held = set(pick(sorted(scan.paths, key=rank), count))
    if not held:
        raise SrganError(f"--val-holdout {count}: none of the images of {scan.root} tried for validation can be read")
    kept = [i for i, path in enumerate(scan.paths) if path not in held and path not in broken]
    rest = ImageScan(
        root=scan.root,
        paths=[scan.paths[i] for i in kept],
        sizes=[scan.sizes[i] for i in kept],
        skipped_small=scan.skipped_small,
        unreadable=[*scan.unreadable, *sorted(broken)],
        skipped_large=scan.skipped_large,
        unlisted=scan.unlisted,
        unread=scan.unread,
        duplicates=scan.duplicates,
        twin_of=scan.twin_of,
    )
    return rest, sorted(held)


def available_memory() -> int | None:
    """Bytes of memory the system can give without swapping (Linux' MemAvailable); None where
    that cannot be told."""
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def resolve_cache(mode: str, scan: ImageScan, free: int | None = None, copies: int = 1) -> bool:
    """Whether to decode the images into memory. ``auto``: when they fit in CACHE_AUTO_LIMIT and
    in half the free memory; ``on`` is refused where they do not fit in the free memory (decoding
    a large set ran the machine out of memory after minutes); ``off`` and ``disk`` (a
    :class:`DiskCache`, see :func:`check_disk_cache`): never. ``free``: the free memory in bytes
    (default: :func:`available_memory`); ``copies``: the training processes of this machine
    (torchrun's), each of which holds its own."""
    if mode not in CACHE_MODES:
        raise SrganError(f"unknown cache mode {mode!r}; expected one of {', '.join(CACHE_MODES)}")
    if mode in ("off", "disk"):
        return False
    free = available_memory() if free is None else free
    need = scan.decoded_bytes * copies
    if mode == "auto":
        return scan.decoded_bytes <= CACHE_AUTO_LIMIT and (free is None or need <= free // 2)
    if free is not None and need > free * 0.9:
        each = f" ({copies} processes, a copy each)" if copies > 1 else ""
        raise SrganError(
            f"--cache on: the training images need {need / 2**30:.1f} GiB decoded{each} and {free / 2**30:.1f} GiB "
            "of memory is free; use --cache off (they are then read for each patch)"
        )
    return True


# --cache-dir DIR: the entries go into DIR/srgan-decoded, never into DIR itself: the note that the
# cache "may be deleted at any time" then names a folder of srgan's own, not a folder of the user's
# (their project folder, or --data) into which it wrote its XX/HASH.npy folders.
CACHE_SUBFOLDER = "srgan-decoded"


def disk_cache_folder(cache_dir: str | os.PathLike[str] | None) -> Path:
    """The folder ``--cache disk`` writes its entries into: ``CACHE_DIR/srgan-decoded`` for a
    ``--cache-dir``, else :func:`default_cache_dir`."""
    if cache_dir is None:
        return default_cache_dir()
    return Path(os.path.abspath(os.path.expanduser(os.fspath(cache_dir)))) / CACHE_SUBFOLDER


def default_cache_dir() -> Path:
    """Where ``--cache disk`` keeps the decoded images without ``--cache-dir``:
    ``$SRGAN_CACHE_DIR/decoded``, else ``decoded`` in srgan's user cache folder (``$XDG_CACHE_HOME/srgan``,
    ``~/.cache/srgan``)."""
    base = os.environ.get("SRGAN_CACHE_DIR")
    return (Path(os.path.expanduser(base)) if base else user_cache_dir()) / "decoded"


class DiskCache:
    """Decoded training images as ``.npy`` files under ``folder``, filled as the images are first
    read and read back memory-mapped.

    An entry is named by the sha256 of the source's absolute path, size, modification time, change
    time and inode: a file rewritten or replaced since gets a new entry (the old one is left, unused;
    the change time catches a rewrite in place that put the old modification time back, as
    ``rsync --inplace -t`` does, which the others miss; entries named before it counted are never
    found again, so they are decoded anew once), and no
    index of the folder is kept, so the folder may be deleted at any time. Writes are atomic
    (a temporary file renamed), so two loader workers or ranks writing one entry at once write
    the same bytes and a reader never sees half of one. An entry that cannot be written (a full
    disk, a read-only folder) is not tried again in this process and the decoded image is used
    as it is: the cache speeds training, it never stops it.
    """

    def __init__(self, folder: str | Path, max_pixels: int | None = None):
        self.folder = Path(os.path.abspath(os.path.expanduser(folder)))
        self.max_pixels = max_pixels  # None: the scan's, TRAIN_MAX_PIXELS (a file that grew since is not decoded)
        self._unwritable: set[str] = set()  # keys whose write failed in this process
        # why the last write failed, until taken (take_write_error): the trainer says it once
        self._write_error: str | None = None

    def entry(self, path: Path) -> Path:
        """The entry for ``path`` as it is now (OSError where it cannot be stat'ed)."""
        st = os.stat(path)
        key = hashlib.sha256(
            os.fsencode(os.path.abspath(path))
            + f"\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\0{st.st_ctime_ns}".encode()
        ).hexdigest()
        return self.folder / key[:2] / f"{key}.npy"

    def read(self, path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
        """``path``'s decoded (H, W, 3) uint8 image: the entry memory-mapped (read-only) where there
        is one, else decoded with :func:`read_within` (raising as it raises) and written for next time.
        ``size``: the (width, height) the scan read from its header (either way round, as EXIF may
        turn it), which an entry must have: one of another size is damaged, and made again."""
        try:
            entry = self.entry(path)
        except OSError:
            return self._decode(path)  # gone since the scan: read_rgb8 says so as without the cache
        try:
            image = _map_npy(entry)
            if size is None or sorted(image.shape[:2]) == sorted(size):
                return image
        except (OSError, ValueError):
            pass  # no entry yet, or a damaged one (rewritten below)
        image = self._decode(path)
        if size is not None and sorted(image.shape[:2]) != sorted(size):
            return image  # changed since the scan: its entry would never be read back (the sampler says so)
        if entry.name not in self._unwritable:
            try:
                entry.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(entry) as tmp, open(tmp, "wb") as fh:
                    np.save(fh, image, allow_pickle=False)
            except OSError as exc:
                self._unwritable.add(entry.name)
                why = write_reason(exc)
                with contextlib.suppress(OSError):  # numpy's short write says only how many bytes it wrote
                    if exc.errno is None and shutil.disk_usage(self.folder).free < image.nbytes:
                        why = "no space left on the disk"
                self._write_error = f"{entry}: {why}"
        return image

    def _decode(self, path: Path) -> np.ndarray:
        return read_within(path, self.max_pixels or TRAIN_MAX_PIXELS, TRAIN_LIMIT)

    def take_write_error(self) -> str | None:
        """Why an entry could not be written since the last call, or None."""
        error, self._write_error = self._write_error, None
        return error


_NPY_MAGIC = b"\x93NUMPY\x01\x00"  # np.save's format 1.0, which it writes for arrays of up to a few dimensions


def _map_npy(entry: Path) -> np.ndarray:
    """An (H, W, 3) uint8 .npy file memory-mapped read-only; ValueError where it is not one (or is
    cut short). Mapped anew for each read, not kept: a million open maps would run into the limits
    on file descriptors and address space, and the page cache keeps the bytes. Not np.load's
    mmap_mode: its header parse (ast) and np.memmap took more time than the crop (the loader gave
    2,300 patches/s a core for 2040x1400 images, 3,100 this way; 6,100 from memory)."""
    with open(entry, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    if mm[:8] != _NPY_MAGIC:
        raise ValueError(f"{entry}: not a .npy file of format 1.0")
    length = int.from_bytes(mm[8:10], "little")
    shape = _npy_shape(mm[10 : 10 + length])
    return np.frombuffer(mm, np.uint8, count=shape[0] * shape[1] * 3, offset=10 + length).reshape(shape)


@functools.lru_cache(maxsize=256)
def _npy_shape(header: bytes) -> tuple[int, int, int]:
    """The (H, W, 3) of a .npy header for C-ordered uint8 (images of one size share theirs: parsed once)."""
    try:
        meta = ast.literal_eval(header.decode("latin1"))
        shape = tuple(meta["shape"])
        ok = meta["descr"] == "|u1" and not meta["fortran_order"] and len(shape) == 3 and shape[2] == 3
    except (SyntaxError, ValueError, TypeError, KeyError):
        ok = False
    if not ok:
        raise ValueError("not an (H, W, 3) uint8 .npy header")
    return shape


STALE_PART_SECONDS = 3600  # an entry is written in seconds: a .part this old is a killed writer's
_ENTRY_PART = re.compile(r"\.[0-9a-f]{64}\.npy\.[0-9a-f]{8}\.part")  # fsutil.atomic_path's temporary name


def _remove_stale_parts(folder: Path) -> None:
    """Remove the temporary files of entries whose writer was killed (kill -9, out of memory):
    each stayed, an image's decoded size, for good. Only those untouched for an hour, as another
    run may be writing into the folder now."""
    cut = time.time() - STALE_PART_SECONDS
    with contextlib.suppress(OSError):
        for sub in os.scandir(folder):
            if not (len(sub.name) == 2 and sub.is_dir(follow_symlinks=False)):
                continue
            with contextlib.suppress(OSError):
                for entry in os.scandir(sub.path):
                    if _ENTRY_PART.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                        if entry.stat(follow_symlinks=False).st_mtime < cut:
                            os.unlink(entry.path)


def check_disk_cache(folder: str | Path, scan: ImageScan, free: int | None = None) -> tuple[int, int]:
    """Make ``folder`` for ``--cache disk`` and check that it can be written and that the decoded
    images fit on its disk; returns (bytes needed, bytes free there). ``free`` (default: the
    disk's, shutil.disk_usage) is for tests. A folder that cannot be made or written, or a disk
    with less room than the decoded images need, is an OptionError naming the way out."""
    folder = Path(os.path.abspath(os.path.expanduser(folder)))
    _remove_stale_parts(folder)
    way_out = "give --cache-dir a folder elsewhere, or use --cache off"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{secrets.token_hex(4)}"  # its own name: ranks may test at once
        with atomic_path(probe):
            pass  # made, synced and renamed as an entry would be
        probe.unlink()
        free = shutil.disk_usage(folder).free if free is None else free
    except OSError as exc:
        raise OptionError(
            f"--cache disk: cannot write the decoded images to {folder} ({write_reason(exc)}); {way_out}"
        ) from None
    need = scan.decoded_bytes
    if need > free:
        need = _uncached_bytes(DiskCache(folder), scan)  # the entries of an earlier run take no more room
    if need > free:
        raise OptionError(
            f"--cache disk: the training images need {need / 2**30:.1f} GiB decoded and {folder} has "
            f"{free / 2**30:.1f} GiB free; {way_out}"
        )
    return scan.decoded_bytes, free


def _uncached_bytes(cache: DiskCache, scan: ImageScan) -> int:
    """The decoded bytes of the images that have no entry in ``cache`` yet."""
    need = 0
    for path, (width, height) in zip(scan.paths, scan.sizes, strict=True):
        try:
            cached = cache.entry(path).is_file()
        except OSError:
            cached = False
        if not cached:
            need += width * height * 3
    return need


class PathTable:
    """A list of paths kept as one block of bytes and an array of offsets: a million ``Path``
    objects took about 400 MiB, and each DataLoader worker copied the pages it touched, as
    reading an object writes its reference count."""

    def __init__(self, paths: list[Path]):
        encoded = [os.fsencode(path) for path in paths]
        self._offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        np.cumsum([len(b) for b in encoded], out=self._offsets[1:])
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> Path:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        start, stop = self._offsets[index], self._offsets[index + 1]
        return Path(os.fsdecode(self._blob[start:stop].tobytes()))

    def __iter__(self) -> Iterator[Path]:
        return (self[i] for i in range(len(self)))


def patch_margin(scale: int) -> int:
    """HR pixels around a patch that the LR of its pixels depends on: the antialiased bicubic's
    kernel reaches 2 LR pixels, ``2 * scale`` HR pixels, each way."""
    return 2 * scale


def _mirrored(start: int, size: int, n: int) -> np.ndarray:
    """Indices ``start .. start + size - 1`` of an axis of length ``n``, those outside it mirrored
    as MATLAB's imresize mirrors them (-1 -> 0, n -> n - 1); ``size`` reaches at most ``n`` out."""
    index = np.arange(start, start + size)
    index = np.where(index < 0, -index - 1, index)
    return np.where(index >= n, 2 * n - 1 - index, index)


def random_patch(
    image: np.ndarray,
    patch: int,
    rng: np.random.Generator,
    augment: bool = True,
    min_scale: float = 1.0,
    margin: int = 0,
) -> np.ndarray:
    """A random ``patch`` x ``patch`` crop of an (H, W, C) array, randomly flipped and rotated.

    With ``min_scale`` < 1 (scale augmentation, as VDSR and DRRN train on 291 images), the
    crop comes from the image downscaled by a random factor in [min_scale, 1]: a square of
    side patch / factor is cut and resized to the patch (bicubic, antialiased), so an image
    yields details at several scales. At 1 no extra number is drawn: runs without it crop
    exactly as before.

    ``margin`` > 0 adds that many pixels of the image around the crop (mirrored past the image's
    edges, as imresize mirrors them; for a scale-augmented crop, its own edges mirrored), so
    that the LR made from it and cut back to the patch (:func:`make_pair`) is the LR of the
    whole image there, not that of the patch alone with its edges mirrored. The same numbers
    are drawn either way.
    """
    h, w = image.shape[:2]
    side = patch
    if min_scale < 1.0:
        side = min(h, w, int(round(patch / rng.uniform(min_scale, 1.0))))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    if margin and side == patch:
        rows, cols = _mirrored(y - margin, patch + 2 * margin, h), _mirrored(x - margin, patch + 2 * margin, w)
        crop = image[np.ix_(rows, cols)]
    else:
        crop = image[y : y + side, x : x + side]
    if side != patch:
        crop = np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((patch, patch), Image.Resampling.BICUBIC))
        if margin:
            crop = np.pad(crop, ((margin, margin), (margin, margin), (0, 0)), mode="symmetric")
    if augment:
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.rot90(crop, k=int(rng.integers(0, 4)))
    return np.ascontiguousarray(crop)


class PatchDataset(Dataset):
    """Sample ``i`` is a random HR patch, a pure function of ``(seed, i)``; (C, P, P) uint8.

    With ``group`` = the global batch (batch size x processes), the samples of one step come
    from different images, as in the paper ("16 random crops from different images"), while
    there are at least that many images: step ``s`` draws ``group`` distinct images with a
    generator seeded by ``(seed, s)``.
    """

    def __init__(
        self,
        scan: ImageScan,
        patch_size: int,
        seed: int = 0,
        cache: bool = False,
        augment: bool = True,
        group: int = 1,
        min_scale: float = 1.0,
        should_stop: Callable[[], bool] | None = None,
        progress: Callable[[str], None] | None = None,
        margin: int = 0,
        cache_dir: str | Path | None = None,
    ):
        self.root = scan.root  # --data, which the error names when no image can be read any more
        self.paths = PathTable(scan.paths)
        self.sizes = np.asarray(scan.sizes, dtype=np.int64).reshape(-1, 2)  # (width, height) from the headers
        self.patch_size = patch_size
        self.margin = margin  # each sample is (C, P + 2 margin, P + 2 margin): see random_patch
        self.seed = seed
        self.augment = augment
        self.min_scale = min_scale
        self.group = max(1, group)
        self._step_images: tuple[int, np.ndarray] | None = None
        self.images: list[np.ndarray | None] | None = None
        # --cache disk (cache_dir given, cache False): each worker reads and fills the folder itself
        self.disk = DiskCache(cache_dir) if cache_dir is not None and not cache else None
        # Images whose header reads but whose data does not, with why (found only when caching):
        # their samples come from the next image, exactly as without the cache.
        self.undecodable: list[tuple[Path, str]] = []
        if cache:
            self.images = []
            ticker = Ticker(progress, should_stop)  # Ctrl-C while a large set is decoded
            for path in self.paths:
                ticker.tick(lambda: f"decoded {len(self.images)} of {len(self.paths)} training images")
                try:
                    image = read_within(path, TRAIN_MAX_PIXELS, TRAIN_LIMIT)
                except _READ_ERRORS as exc:
                    image, why = None, _reason(exc)
                else:
                    why = self._too_small(image)
                self.images.append(None if why else image)
                if why:
                    self.undecodable.append((path, why))
            if len(self.undecodable) == len(self.paths):
                path, why = self.undecodable[0]
                raise SrganError(
                    f"{scan.root}: none of the training images can be decoded (first: {failure_text(path, why)})"
                )

    def image_index(self, index: int) -> int:
        """Which image sample ``index`` is cropped from."""
        n = len(self.paths)
        if self.group == 1:
            return int(np.random.default_rng((self.seed, index, 1)).integers(0, n))
        step, slot = divmod(index, self.group)
        if self._step_images is None or self._step_images[0] != step:
            rng = np.random.default_rng((self.seed, step, 2))
            self._step_images = (step, rng.choice(n, size=min(n, self.group), replace=False))
        chosen = self._step_images[1]
        return int(chosen[slot % len(chosen)])

    def __len__(self) -> int:
        return len(self.paths)

    def _image(self, k: int) -> np.ndarray:
        if self.disk is not None:
            return self.disk.read(self.paths[k], tuple(self.sizes[k]))
        if self.images is None:
            return read_within(self.paths[k], TRAIN_MAX_PIXELS, TRAIN_LIMIT)
        image = self.images[k]
        if image is None:
            raise ValueError(f"{self.paths[k]}: could not be decoded")
        return image

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.sample(index)[0]

    def _too_small(self, image: np.ndarray) -> str | None:
        """Why a decoded image cannot give a patch (replaced by a smaller one since the scan), or None."""
        height, width = image.shape[:2]
        if min(height, width) >= self.patch_size:
            return None
        return f"{width}x{height} px now, smaller than the {self.patch_size} px patch"

    def sample(self, index: int) -> tuple[torch.Tensor, list[tuple[int, str]]]:
        """Sample ``index`` and the images that failed to read on the way to it, as (image
        index, why): an image whose header reads but whose data does not (or that was deleted,
        or replaced by one smaller than the patch, since the scan) gives its samples to the next
        image, deterministically. None left to read (the folder renamed or unmounted): an
        :class:`ImagesUnreadable` naming --data and the first file that failed."""
        rng = np.random.default_rng((self.seed, index))
        k = self.image_index(index)
        failed: list[tuple[int, str]] = []
        for attempt in range(len(self.paths)):
            j = (k + attempt) % len(self.paths)
            try:
                image = self._image(j)
            except _READ_ERRORS as exc:
                failed.append((j, _reason(exc)))
                continue
            small = self._too_small(image)
            if small is None:
                break
            failed.append((j, small))
        else:
            first = failure_text(self.paths[k], failed[0][1])
            raise ImagesUnreadable(f"{self.root}: none of the training images can be read (first: {first})")
        patch = random_patch(image, self.patch_size, rng, self.augment, self.min_scale, self.margin)
        return torch.from_numpy(patch.transpose(2, 0, 1).copy()), failed


class _Sampled(Dataset):
    """A PatchDataset whose items are :meth:`PatchDataset.sample`'s (patch, failed) pairs and why
    the disk cache could not be written while it was made (None if it could, or there is none):
    the loader's workers have their own datasets, so this is how the trainer hears of them."""

    def __init__(self, dataset: PatchDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, list[tuple[int, str]], str | None]:
        patch, failed = self.dataset.sample(index)
        return patch, failed, self.dataset.disk.take_write_error() if self.dataset.disk is not None else None


def _collate_sampled(items: list[tuple[torch.Tensor, list[tuple[int, str]], str | None]]):
    patches = torch.stack([patch for patch, _, _ in items])
    return patches, [f for _, failed, _ in items for f in failed], [e for _, _, e in items if e is not None]


class StepBatchSampler(Sampler):
    """Yields the sample indices of steps ``start_step, start_step + 1, ...`` for one rank."""

    def __init__(self, batch_size: int, start_step: int = 0, rank: int = 0, world_size: int = 1, stop_step=None):
        self.batch_size = batch_size
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size
        self.stop_step = stop_step

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start_step
        while self.stop_step is None or step < self.stop_step:
            base = (step * self.world_size + self.rank) * self.batch_size
            yield list(range(base, base + self.batch_size))
            step += 1

    def __len__(self) -> int:
        if self.stop_step is None:
            raise TypeError("an open-ended step sampler has no length")
        return max(0, self.stop_step - self.start_step)


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # workers crop and flip; the main process owns the cores
    # Ctrl-C, and SIGTERM from `timeout` or a scheduler at its time limit, reach the whole
    # process group: the main process saves a checkpoint and stops the workers itself, so they
    # must not die first (a dead worker fails the step with a traceback and loses the save).
    # SIGHUP (the session closed) too, whatever the start method (forked workers had the trainer's
    # handler; spawned ones would die of it); where it is ignored (nohup) it stays so.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _WorkerTerm().handle)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if hasattr(signal, "SIGBREAK"):  # Windows: Ctrl+Break reaches the whole console, as Ctrl-C does
        signal.signal(signal.SIGBREAK, signal.SIG_IGN)


class _WorkerTerm:
    """A loader worker's SIGTERM: the group's signal (and its repeats within a second) is left to
    the main process; a later one is the loader stopping a worker that did not exit: it dies."""

    SAME_REQUEST = SAME_REQUEST

    def __init__(self) -> None:
        self.first: float | None = None

    def handle(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        elif now - self.first > self.SAME_REQUEST:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)


def default_workers(device: torch.device | None = None, cached: bool = False) -> int:
    """min(4, cpus) loader processes when training on a GPU; none when training on the CPU, nor
    where the images are decoded into memory (``cached``) and workers start by spawn or forkserver
    (macOS, Windows; Linux from Python 3.14), which copies the whole cache into each worker, up to
    four times its size; from the cache a patch is only a crop, which the training process makes fast.
    The disk cache (``--cache disk``) is not ``cached``: the workers share it through the files,
    and reading an entry back is work they take off the training process.

    On the CPU the loader (450+ patches/s for small images such as the bundled set's, even
    decoding every image anew; 6-10 for 2K-12 MP photos without the cache) is far faster than
    training, and worker processes gain nothing there: measured on 2 cores, the paper's
    SRResNet (batch 16, 96 px, bf16) trained at 53.5 patches/s with 0 workers and 52.7 with 2
    (benchmarks/README.md).
    """
    if device is not None and device.type == "cpu":
        return 0
    if cached and _worker_start_method() != "fork":
        return 0
    return min(4, os.cpu_count() or 1)


def _worker_start_method() -> str:
    """How the loader's worker processes start: the default multiprocessing context's method."""
    import multiprocessing

    # the first of get_all_start_methods() is the default: get_context() would fix the method for
    # the process, and a later set_start_method (a program calling train()) raised
    return multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]


def make_loader(
    dataset: PatchDataset,
    batch_size: int,
    start_step: int = 0,
    rank: int = 0,
    world_size: int = 1,
    workers: int = 0,
    pin_memory: bool = False,
    stop_step: int | None = None,
    with_failures: bool = False,
) -> DataLoader:
    """Batches of HR patches (N, C, P, P) uint8, the batches of step ``start_step`` on. With
    ``with_failures`` each batch is ``(patches, failed, unwritten)``, ``failed`` the (image index,
    why) of the images that could not be read while it was made (by any worker), ``unwritten``
    why the disk cache could not be written then (``--cache disk``), so that the training loop
    can say so."""
    sampler = StepBatchSampler(batch_size, start_step, rank, world_size, stop_step)
    return DataLoader(
        _Sampled(dataset) if with_failures else dataset,
        batch_sampler=sampler,
        collate_fn=_collate_sampled if with_failures else None,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if workers > 0 else None,
        prefetch_factor=4 if workers > 0 else None,
        # the workers' base seed (unused: patches follow from the seed and the step) drawn from its own
        # generator, not torch's global one, whose state a checkpoint keeps: a resumed run's would be one draw on
        generator=torch.Generator().manual_seed(0),
    )


def make_pair(
    hr_uint8: torch.Tensor, scale: int, device: torch.device, margin: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(LR, HR) float batches in [0, 1] on ``device`` from a uint8 HR batch (N, C, H, W).

    LR = MATLAB bicubic x(1/scale) of HR, rounded to 8-bit levels after each axis as MATLAB
    rounds uint8 images (the benchmark sets' LR files were made so). With ``margin`` (a multiple
    of ``scale``: the pixels :func:`random_patch` added around each patch) the LR is made from
    the whole crop, then LR and HR are cut back to the patch.
    """
    hr = hr_uint8.to(device, non_blocking=True).float().div_(255.0)
    lr = imresize_torch(hr, 1.0 / scale, levels=255)
    if margin:
        m = margin // scale
        lr, hr = lr[..., m:-m, m:-m].contiguous(), hr[..., margin:-margin, margin:-margin].contiguous()
    return lr, hr


# ---------------------------------------------------------------------------------------------
# Validation images


@dataclass
class ValImage:
    name: str
    lr: np.ndarray  # (h, w, 3) uint8
    hr: np.ndarray  # (scale*h, scale*w, 3) uint8


NAMED_SETS = ("set5", "set14", "bsd100")


def load_val_set(spec: str, data_dir: str | Path | None, scale: int, notes: list[str] | None = None) -> list[ValImage]:
    """A validation set, read as ``srgan bench`` reads it.

    ``spec`` is a named set (set5, set14, bsd100: under ``data_dir``, else SRGAN_DATA_DIR, else
    the Hub, as ``srgan bench``), a folder with ``HR/`` (and ``LR_x<scale>/``), or a plain folder
    of HR images. HR is cropped to a multiple of ``scale``; missing LR images are made with the
    MATLAB bicubic. ``notes``, where given, gets the notes ``srgan bench --set`` prints about the
    set (a partial copy of a standard set, LR files that pair with nothing, HR images whose LR
    had to be made).
    """
    folder = Path(os.path.expanduser(spec))  # Path.expanduser raises for a user who does not exist
    from . import bench

    if spec.lower() in NAMED_SETS or bench.hr_folder(folder).is_dir():
        # named as srgan bench names it, so that a partial copy of a standard set is noted alike
        name = spec.lower() if spec.lower() in NAMED_SETS and not folder.is_dir() else folder.resolve().name or "set"
        bench_set = bench.load_set(bench.resolve_set(spec, data_dir), scale, name=name)
        if notes is not None:
            size = bench.size_note(bench_set)
            notes.extend(([size] if size else []) + bench_set.notes)
        return [ValImage(item.name, item.lr, item.hr) for item in bench_set.images]
    if not folder.is_dir():
        raise SrganError(f"--val {spec}: not a named set ({', '.join(NAMED_SETS)}) nor a folder of images")
    images = [val_image(path, scale) for path in list_images(folder, recursive=False)]
    if not images:
        raise SrganError(f"{folder}: no validation images in it")
    return images


class TooSmallToValidate(SrganError):
    """An image that reads but is too small to validate on: not a broken file."""


def val_image(path: Path, scale: int, max_side: int | None = None) -> ValImage:
    """An HR image as a validation pair: cropped to a multiple of ``scale`` (and to its central
    ``max_side`` px a side where given), its LR made with the MATLAB bicubic. One larger than the
    training images may be (TRAIN_MAX_PIXELS) is refused before it is decoded."""
    try:
        hr = read_within(path, TRAIN_MAX_PIXELS, "a validation image may have; remove it from the folder")
    except TooManyPixels:
        raise
    except _READ_ERRORS as exc:
        # why, as for a training image: "permission denied", "truncated" need other fixes
        why = _reason(exc).removeprefix(f"{printable(str(path))}: ")
        raise SrganError(f"{path}: cannot read this validation image ({why}); fix or remove it") from None
    side = max_side or max(hr.shape[:2])
    h, w = (min(hr.shape[0], side) // scale) * scale, (min(hr.shape[1], side) // scale) * scale
    if h < 2 * scale + 1 or w < 2 * scale + 1:
        raise TooSmallToValidate(f"{path}: too small to validate at x{scale}; remove it from the folder")
    top, left = ((hr.shape[0] - h) // 2, (hr.shape[1] - w) // 2) if max_side else (0, 0)
    hr = np.ascontiguousarray(hr[top : top + h, left : left + w])
    return ValImage(path.stem, imresize(hr, 1.0 / scale), hr)
