"""Benchmark runs: find a test set, super-resolve it, score it the literature's way, time it,
and draw comparison sheets.

The result of :func:`run_bench` is a plain dict, also what ``srgan bench --json`` writes (for
several sets, a list of them in ``--set`` order; each carries its own ``srgan_version``).
Its schema (``schema_version`` 1; new keys may be added, existing ones keep their meaning)::

    {
      "schema_version": 1,
      "srgan_version": "0.1.0",   # the srgan that made it (results written before it was added lack it)
      "set": "set5",              # set name (folder name for a folder)
      "set_path": "...",          # the folder benchmarked
      "scale": 4,
      "num_images": 5,
      "lr_source": "file",        # "file" (LR_x4/ given), "imresize" (made from HR) or "mixed"
      "lpips_source": "...",      # what computed LPIPS (implementation, weights); null if not computed
      "device": "cpu",
      "runs": 1,                  # timed runs per image (the median is used)
      "notes": [],                # about the set, e.g. a standard set's name with another number of images,
                                  # or images too small for LPIPS
      "models": [
        {
          "name": "bicubic",
          "source": "matlab-bicubic" | path or model name,
          "sha256": "..." | null,  # of the weights file (a blend: "A+B@alpha"); null for bicubic (results
                                   # before it lack it)
          "dtype": "float32" | "float16" | "bfloat16" | null (bicubic),
          "psnr": 28.42,          # dB, mean over images (an exact one counts 100), Y channel, border = scale
          "ssim": 0.810,          # mean over images, Y channel, border = scale
          "lpips": null | 0.33,   # mean LPIPS-alex on RGB, border = scale; null if not computed
          "lpips_note": "why lpips is null" | null,
          "lpips_n": 5 | null,    # images the lpips mean is over (fewer where some are too small for it;
                                  # a note says which); null if not computed (results before it lack it)
          "mp_per_s": 12.3,       # output megapixels per second of the upscale alone (no I/O)
          "notes": [],            # choices made while loading, e.g. "fp16 runs about 5x slower than fp32 ...",
                                  # and images reproduced exactly (counted as PSNR_CEILING in the mean)
          "seconds": 0.41,        # total upscale time (sum over images of the median run)
          "images": [             # one row per image with --per-image, else empty
            {"name": "baby", "psnr": ..., "ssim": ..., "lpips": null | ..., "seconds": ...}
          ],
          "paired": null | {      # null for the first model; else its per-image difference from it
            "against": "bicubic", # the first model's name
            "n": 5,               # images where both PSNRs are finite
            "psnr": 3.21,         # mean of (this - first) PSNR over those images, dB
            "psnr_sem": 0.12,     # its standard error (stdev / sqrt(n)); null if n < 2
            "ssim": 0.061, "ssim_sem": 0.004,
            "better": 5, "worse": 0,  # images where this model's PSNR is higher / lower
            "lpips": -0.12 | null, "lpips_sem": 0.01 | null,  # null where LPIPS was not computed
            "lpips_lower": 5 | null,  # images where this model's LPIPS is lower (better)
            "lpips_higher": 0 | null, # images where it is higher (worse); results before it lack it
            "lpips_n": 5 | null       # images where both LPIPS were computed (not on images too small for it)
          }
        }
      ]
    }
"""

from __future__ import annotations

import collections
import inspect
import math
import os
import statistics
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import read_within
from .errors import OptionError, SrganError, printable
from .fsutil import atomic_path, file_in_the_way, write_reason
from .images import (
    is_image_path,
    stored_orientation,
    subfolders_with_images,
    supported_suffixes,
    unread_hint,
    unread_kinds,
    unread_reason,
)
from .metrics import Lpips, psnr_y, rgb_to_y, ssim_y
from .resize import imresize

SCHEMA_VERSION = 1
SET_NAMES = ("set5", "set14", "bsd100")
# How many images each standard set has: scores of a set that goes by its name with another count
# (a partial download, a folder of one's own) are not comparable with published ones.
SET_SIZES = {"set5": 5, "set14": 14, "bsd100": 100}
# The Hugging Face Hub dataset repo laid out as <set>/HR and <set>/LR_x4 for each of SET_NAMES.
DEFAULT_HUB_DATASET = "srgan-cli/sr-benchmarks"
BICUBIC = "bicubic"
BICUBIC_SOURCE = "matlab-bicubic"  # the baseline's Upscaler.source (its name may be bicubic-2)
# The most pixels a set's image (HR or LR) may have, checked before it is decoded: upscale's default
# --max-pixels. A header claiming more (a 1.8 KB TIFF of 24 x 2,000,000,000 px) was decoded until the
# machine ran out of memory. The standard sets' largest images are under 1 MP (Urban100's, DIV2K's
# 2040x1400: 3 MP); a 100 MP HR image takes 300 MB decoded, and far more as the model's float output.
BENCH_MAX_PIXELS = 100_000_000
BENCH_LIMIT = "a benchmark image may have; crop or downscale it, or remove it from the set"


# --------------------------------------------------------------------------- sets


def resolve_set(name_or_dir: str | Path, data_dir: str | Path | None = None, hub_dataset: str | None = None) -> Path:
    """The folder (holding ``HR/`` and optionally ``LR_x4/``) of a named set or a given folder.

    A name (set5, set14, bsd100) is looked up under ``data_dir``, else under the environment
    variable ``SRGAN_DATA_DIR``, else downloaded once from the Hub dataset ``hub_dataset``
    (env ``SRGAN_BENCH_REPO``, default :data:`DEFAULT_HUB_DATASET`) into the Hub cache.
    """
    text = str(name_or_dir)
    path = Path(os.path.expanduser(text))  # Path.expanduser raises for a user who does not exist
    root = data_dir if data_dir is not None else os.environ.get("SRGAN_DATA_DIR") or None
    # A bare set name is the set under --data-dir (or SRGAN_DATA_DIR) when one is given; else a ./set5
    # folder with HR/ in it is that folder (one that --save-images set5 made, without HR/, is not).
    named = text.lower() in SET_NAMES and (root is not None or not hr_folder(path).is_dir())
    if not named and (path.exists() or path.is_symlink()) and not path.is_dir():  # was "no such folder"
        raise SrganError(f"{text}: is a file; --set takes a folder (a set's folder, or one with HR/ in it)")
    if path.is_dir() and not named:
        if not hr_folder(path).is_dir() and not _image_files(path):  # a plain folder of images: its HR images
            raise SrganError(
                f"{path}: no HR/ folder in it, nor images; a benchmark folder holds HR/ and optionally LR_x4/, "
                "or the HR images themselves"
            )
        return path
    name = text.lower()
    if name not in SET_NAMES:
        if os.sep in text or "/" in text or path.suffix:
            raise SrganError(f"{text}: no such folder; give set5, set14, bsd100, a folder with HR/ in it or of images")
        raise SrganError(
            f"unknown set {text!r}; expected set5, set14, bsd100, a folder with HR/ in it or a folder of images"
        )
    if root is not None:
        root = Path(os.path.expanduser(root))
        how = "--data-dir" if data_dir is not None else "SRGAN_DATA_DIR"
        where = "set5/, set14/, bsd100/ with HR/ and LR_x4/"
        if (root.exists() or root.is_symlink()) and not root.is_dir():  # was "no such folder" for a file
            raise SrganError(f"{how} {root}: is a file, not a folder; it must be a folder holding {where}")
        if not root.is_dir():
            raise SrganError(f"{how} {root}: no such folder; it must hold {where}")
        # Set5/ or SET14/ (as the sets are often shipped): found whatever its case, as HR/ and LR_x4/ are
        folder = _folder_named(root, name)
        if not hr_folder(folder).is_dir():
            raise SrganError(f"{how} {root}: no {text}/HR in it; it must hold {text}/HR and {text}/LR_x4")
        return folder
    if hub_dataset is not None:
        repo, how = hub_dataset, "--hub-dataset"
    else:
        repo, how = os.environ.get("SRGAN_BENCH_REPO") or DEFAULT_HUB_DATASET, "SRGAN_BENCH_REPO"
    from .hub import is_repo_id

    if not is_repo_id(repo):  # the Hub client's own error for it read as a network problem
        raise OptionError(f"{how} {repo!r}: not a Hub dataset name; expected owner/name, e.g. {DEFAULT_HUB_DATASET}")
    return _download_set(name, repo)


def _download_set(name: str, repo: str) -> Path:
    """The set's folder in the Hub dataset ``repo``: downloaded, or the cached copy where the Hub does not
    answer (within :data:`hub.HUB_TIMEOUT`: a stalled proxy hung the run for good) or HF_HUB_OFFLINE is set."""
    from .hub import download_folder

    local = f"--data-dir DIR holding {name}/HR and {name}/LR_x4"
    try:
        root, unasked = download_folder(repo, name)
    except SrganError as exc:
        raise SrganError(f"{exc}; or pass {local}") from None
    folder = root / name
    if not hr_folder(folder).is_dir():
        if unasked is not None:
            # the cached snapshot, as it is, may hold other sets only: no proof that the dataset lacks the set
            raise SrganError(
                f"{name}/HR is not in the cached copy of the Hub dataset {repo}, and {unasked}; "
                f"{'unset HF_HUB_OFFLINE' if 'HF_HUB_OFFLINE' in unasked else 'check the network'}, or pass {local}"
            )
        raise SrganError(f"{name}/HR is not in the Hub dataset {repo}; check --hub-dataset, or pass {local}")
    return folder


@dataclass
class BenchImage:
    """One test pair: ``hr`` cropped to a multiple of the scale, ``lr`` its x1/scale input (uint8 RGB)."""

    name: str
    hr: np.ndarray
    lr: np.ndarray
    lr_source: str  # "file" or "imresize"
    hr_path: Path
    lr_path: Path | None = None


@dataclass
class BenchSet:
    name: str
    path: Path
    scale: int
    images: list[BenchImage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how the set was read, where a user should know
    lr_dir: Path | None = None  # the LR folder read (or looked for): LR_x4/, its name's case as on the disk

    @property
    def lr_source(self) -> str:
        sources = {image.lr_source for image in self.images}
        return sources.pop() if len(sources) == 1 else "mixed"


def load_set(path: str | Path, scale: int = 4, name: str | None = None) -> BenchSet:
    """Read ``HR/`` and ``LR_x{scale}/`` (:func:`lr_folder`) of a set folder, paired by file stem; a folder without
    ``HR/`` holds the HR images itself (as ``srgan train --val`` takes one), with a note.

    HR is cropped to a multiple of ``scale`` (bottom/right). An LR file must be exactly HR/scale;
    an HR image without one gets its LR from our MATLAB-compatible bicubic ``imresize``. A stem
    that differs only in case pairs too (one made on a case-insensitive disk); LR files that pair
    with nothing, and images whose LR had to be made where LR files were given, are in ``notes``:
    they were passed over without a word, and the scores moved by a dB.
    """
    path = Path(path)
    hr_dir, lr_dir = hr_folder(path), lr_folder(path, scale)
    plain = not hr_dir.is_dir()  # a plain folder of images (as train --val takes): they are the HR images
    if plain:
        hr_dir = path
    hr_files = _image_files(hr_dir)
    unread_hr = _unread_files(hr_dir)
    if not hr_files:
        if unread_hr:
            raise SrganError(
                f"{hr_dir}: no image srgan reads in it (supported: {supported_suffixes()}); "
                + _passed_over(unread_hr, hr_dir, plain, "passed over")
            )
        raise SrganError(f"{hr_dir}: no images in it (supported: {supported_suffixes()})")
    lr_files: dict[str, Path] = {}
    for lr_path in _image_files(lr_dir) if lr_dir.is_dir() else []:
        if lr_path.stem in lr_files:  # which one would pair with HR is then a matter of listing order
            raise SrganError(f"{lr_path}: same name as {lr_files[lr_path.stem].name}; LR images are paired by name")
        lr_files[lr_path.stem] = lr_path
    stems: dict[str, Path] = {}
    for hr_path in hr_files:
        if hr_path.stem in stems:
            raise SrganError(f"{hr_path}: same name as {stems[hr_path.stem].name}; HR images are paired by name")
        stems[hr_path.stem] = hr_path
    # SSIM's 11 px window must fit after the border crop of `scale` px on every side.
    min_side = 2 * scale + 11
    bench = BenchSet(name or path.name, path, scale, lr_dir=lr_dir)
    # case-blind pairing only one to one, among the names that do not pair exactly ("A.png" and
    # "a.png" in HR/ with LR_x4/a.png alone: A took a's LR file too)
    by_case: dict[str, list[str]] = {}
    for stem in lr_files:
        if stem not in stems:
            by_case.setdefault(stem.casefold(), []).append(stem)
    hr_by_case: dict[str, int] = {}
    for stem in stems:
        if stem not in lr_files:
            hr_by_case[stem.casefold()] = hr_by_case.get(stem.casefold(), 0) + 1
    used: set[str] = set()
    made: list[str] = []
    # every file is read before a word is said: a set with 5 bad files was fixed one run at a time
    problems: list[tuple[Path, SrganError]] = []
    turned: list[tuple[str, int, int]] = []  # HR name, its orientation and its LR file's, where they differ
    for hr_path in hr_files:
        lr_stem = hr_path.stem if hr_path.stem in lr_files else None
        fold = hr_path.stem.casefold()
        if lr_stem is None and len(by_case.get(fold, [])) == 1 and hr_by_case.get(fold) == 1:
            lr_stem = by_case[fold][0]
        lr_path = lr_files.get(lr_stem) if lr_stem is not None else None
        if lr_path is not None:
            used.add(lr_stem)
        try:
            hr = _read_hr(hr_path, scale, min_side)
        except SrganError as exc:
            problems.append((hr_path, exc))
            continue
        try:
            lr = _read_lr(lr_path, hr_path, hr.shape, scale) if lr_path is not None else None
        except SrganError as exc:
            problems.append((lr_path, exc))
            continue
        if lr is not None and (turns := (stored_orientation(hr_path), stored_orientation(lr_path)))[0] != turns[1]:
            # of the same size (a square image): scored at 8.8 dB without a word
            turned.append((hr_path.name, *turns))
        if problems:
            continue  # the set is refused: making LR images would be wasted work
        if lr is not None:
            bench.images.append(BenchImage(hr_path.stem, hr, lr, "file", hr_path, lr_path))
        else:
            made.append(hr_path.name)
            bench.images.append(BenchImage(hr_path.stem, hr, imresize(hr, 1 / scale), "imresize", hr_path))
    if problems:
        _refuse(problems, path)
    unused = [lr_files[stem].name for stem in lr_files if stem not in used]
    if unread_hr:  # they were dropped from the set without a word: the table said "1 images" of 3 files
        bench.notes.append(_passed_over(unread_hr, hr_dir, plain, "not in the set"))
    unread_lr = _unread_files(lr_dir)
    if unread_lr:
        bench.notes.append(_passed_over(unread_lr, lr_dir, False, "not used"))
    if unused:
        one = len(unused) == 1
        bench.notes.append(
            f"{len(unused)} file{'' if one else 's'} in {lr_dir.name}/ pair{'s' if one else ''} with no HR image "
            f"by name and {'is' if one else 'are'} not used: {_some(unused)}"
        )
    # HR/2019/, HR/2020/: their images were left out of the set without a word (a plain folder's LR_x4/ is read)
    nested = subfolders_with_images(hr_dir, lambda sub: plain and sub.name == lr_dir.name)
    if nested:
        one = len(nested) == 1
        where = f"{hr_dir.name}/" if not plain else str(hr_dir)
        shown = _some([f"{sub.name}/" if plain else f"{hr_dir.name}/{sub.name}/" for sub in nested])
        bench.notes.append(
            f"{len(nested)} sub-folder{'' if one else 's'} of {where} with images {'was' if one else 'were'} not "
            f"entered ({shown}): a set's HR images are read from {where} itself, not from its sub-folders"
        )
    if plain:
        one = len(hr_files) == 1
        bench.notes.append(
            f"no HR/ folder in {path}: its {len(hr_files)} image{'' if one else 's'} {'is' if one else 'are'} the "
            f"HR image{'' if one else 's'}"
            + ("" if lr_files else f", {'its' if one else 'their'} LR made by bicubic imresize")
        )
    if not plain and not lr_files:
        # a set with its LR files in LR/ (or once, lr_x4/) was scored on LR made from HR without a word:
        # +2.2 dB on a blurred LR set
        lr_name = f"{lr_dir.name}/"
        where = f"{lr_name} in {path} holds no images" if lr_dir.is_dir() else f"no {lr_name} folder in {path}"
        text = f"{where}: every LR image is made from its HR image by bicubic imresize"
        others = [f"{o.name}/" for o in _lr_like_folders(path, lr_dir)]
        if others:
            were = "was" if len(others) == 1 else "were"
            text += f"; {_some(others)} {were} not used: srgan reads LR images from {lr_name}"
        bench.notes.append(text)
    if turned:
        one = len(turned) == 1
        pairs = [
            f"{printable(name)}: HR {hr_turn if hr_turn != 1 else 'none'}, LR {lr_turn if lr_turn != 1 else 'none'}"
            for name, hr_turn, lr_turn in turned
        ]
        shown = "; ".join(pairs[:3]) + (f"; and {len(pairs) - 3} more" if len(pairs) > 3 else "")
        bench.notes.append(
            f"{len(turned)} HR image{'' if one else 's'} and {'its' if one else 'their'} LR file{'' if one else 's'} "
            f"have different EXIF orientations ({shown}): srgan turns each file upright by its own, so an LR may "
            "not match its HR (a score far too low); give both files of a pair the same orientation"
        )
    if made and lr_files:
        bench.notes.append(
            f"{len(made)} of {len(hr_files)} images have no LR file in {lr_dir.name}/ ({_some(made)}): their LR "
            "is made from HR by bicubic imresize, so their scores are not those of the LR files"
        )
    return bench


def _read_hr(hr_path: Path, scale: int, min_side: int) -> np.ndarray:
    """The HR image cropped to a multiple of ``scale``; SrganError where it does not read or is too small."""
    hr = read_within(hr_path, BENCH_MAX_PIXELS, BENCH_LIMIT)
    h, w = hr.shape[0] - hr.shape[0] % scale, hr.shape[1] - hr.shape[1] % scale
    if h < min_side or w < min_side:
        raise SrganError(
            f"{hr_path}: {hr.shape[1]}x{hr.shape[0]} is too small to benchmark at x{scale} "
            f"(at least {-(-min_side // scale) * scale}x{-(-min_side // scale) * scale} px); remove it from the set"
        )
    return np.ascontiguousarray(hr[:h, :w])


def _read_lr(lr_path: Path, hr_path: Path, hr_shape: tuple[int, ...], scale: int) -> np.ndarray:
    """The LR file's image; SrganError where it does not read or is not the (cropped) HR's size / ``scale``."""
    lr = read_within(lr_path, BENCH_MAX_PIXELS, BENCH_LIMIT)
    h, w = hr_shape[0] // scale, hr_shape[1] // scale
    if lr.shape[:2] != (h, w):
        raise SrganError(
            f"{lr_path}: is {lr.shape[1]}x{lr.shape[0]} but its HR gives {w}x{h} at x{scale}"
            f"{_turn_hint(hr_path, lr_path)}; fix or remove the LR file (it is then made from HR)"
        )
    return lr


def _turn_hint(hr_path: Path, lr_path: Path) -> str:
    """Where an HR image and its LR file have different EXIF orientations, say so: an LR made from a
    phone JPEG's stored pixels is the sideways HR's size ("25x32 but its HR gives 32x25"), which read as a
    riddle."""
    hr_turn, lr_turn = stored_orientation(hr_path), stored_orientation(lr_path)
    if hr_turn == lr_turn:
        return ""
    if lr_turn == 1:
        return f" (the HR is turned by its EXIF orientation {hr_turn}; the LR is not)"
    if hr_turn == 1:
        return f" (the LR is turned by its EXIF orientation {lr_turn}; the HR is not)"
    return f" (the HR is turned by its EXIF orientation {hr_turn}, the LR by {lr_turn})"


def _refuse(problems: list[tuple[Path, SrganError]], path: Path, most: int = 3) -> None:
    """Raise one error for the set's files that cannot be used: the first ``most`` with why, and
    how many more (named), on one line."""
    if len(problems) == 1:
        raise problems[0][1] from None  # as it was, its own kind (a decompression bomb's) kept
    shown = "; ".join(str(exc) for _, exc in problems[:most])
    rest = [str(p.relative_to(path)) if p.is_relative_to(path) else str(p) for p, _ in problems[most:]]
    more = f"; and {len(rest)} more: {_some(rest, 10)}" if rest else ""
    raise SrganError(f"{len(problems)} files of the set cannot be used, fix or remove them: {shown}{more}") from None


def lr_folder(path: Path, scale: int) -> Path:
    """The set's ``LR_x{scale}/`` folder, its name's case aside (``LR_X4/``, ``lr_x4/``: made on another
    system, they were passed over and the LR made from HR without a word); ``path / LR_x{scale}`` where
    there is none."""
    return _folder_named(path, f"LR_x{scale}")


def hr_folder(path: Path) -> Path:
    """The set's ``HR/`` folder, its name's case aside (a set with ``hr/`` was "no HR/ folder")."""
    return _folder_named(path, "HR")


def _folder_named(path: Path, wanted: str) -> Path:
    try:
        found = sorted(e.name for e in os.scandir(path) if e.name.casefold() == wanted.casefold() and e.is_dir())
    except OSError:
        found = []
    if len(found) > 1:  # which one holds the LR images the published numbers used is not ours to guess
        raise SrganError(f"{path}: has both {found[0]}/ and {found[1]}/; keep one of them, named {wanted}/")
    return path / (found[0] if found else wanted)


def _lr_like_folders(path: Path, lr_dir: Path) -> list[Path]:
    """The folders of ``path`` other than ``lr_dir`` whose names start with "lr" (``LR/``, ``LRbicx4/``):
    where a set keeps LR images srgan does not read."""
    try:
        entries = [e for e in os.scandir(path) if e.name[:2].casefold() == "lr" and e.is_dir()]
    except OSError:
        return []
    return sorted(Path(e.path) for e in entries if e.name != lr_dir.name)


def _some(names: list[str], most: int = 3) -> str:
    """The first few ``names``, and how many more."""
    shown = ", ".join(printable(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def size_note(bench_set: BenchSet) -> str | None:
    """A note when a set named like a standard one does not have its number of images."""
    expected = SET_SIZES.get(bench_set.name.lower())
    found = len(bench_set.images)
    if expected is None or found == expected:
        return None
    return (
        f"{bench_set.name} at {bench_set.path} has {found} image{'s' if found != 1 else ''}, the standard "
        f"{bench_set.name.lower()} has {expected}: its scores are not comparable with published ones"
    )


def _unread_files(folder: Path) -> list[Path]:
    """The files in ``folder`` whose suffix names an image format srgan does not read (HEIC, JPEG XL, ...)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and unread_reason(p) is not None)


def _passed_over(files: list[Path], folder: Path, plain: bool, what: str) -> str:
    """``2 files in HR/ are images srgan does not read (1 .heic, 1 .jxl), WHAT: b.heic, c.jxl``."""
    counts = collections.Counter(path.suffix.lower() for path in files)
    kinds = unread_kinds(counts)
    where = folder if plain else f"{folder.name}/"
    are = "file ... is an image" if len(files) == 1 else "files ... are images"
    head = are.replace("...", f"in {where}")
    names = _some([p.name for p in files])
    return f"{len(files)} {head} srgan does not read ({kinds}), {what}: {names}{unread_hint(counts)}"


def _image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if is_image_path(p) and not p.name.startswith("."))


# --------------------------------------------------------------------------- upscalers


@dataclass
class Upscaler:
    """Something that turns a uint8 LR image into a uint8 SR image, with a name for the table."""

    name: str
    source: str
    scale: int
    run: Callable[[np.ndarray], np.ndarray]
    dtype: str | None = None
    synchronize: Callable[[], None] = lambda: None
    notes: list[str] = field(default_factory=list)
    sha256: str | None = None  # of the weights: which file a score belongs to, beyond its name or path


def model_label(spec: str) -> str:
    """A model's name in tables: a weights file's stem, else the name or Hub reference as given.
    "bicubic" names the baseline: a file of that stem keeps its suffix (``bicubic.safetensors``); it was
    "bicubic" in the table, the JSON and the sheets, and the baseline's panel was left out for it.
    A Hub reference keeps its repo and folders, less ``hf://`` and the file's ``.safetensors``
    (``alice/zoo:a/model``): its stem alone made ``alice/zoo:a/model.safetensors`` and
    ``bob/sr:model.safetensors`` one "model" (then "model-2"), two models told apart by nothing."""
    from .hub import looks_like_hub_ref

    if looks_like_hub_ref(spec):
        ref = spec.removeprefix("hf://")
        head, at, revision = ref.partition("@")
        return head.removesuffix(".safetensors") + at + revision
    path = Path(spec)
    if path.suffix != ".safetensors":
        return spec
    return path.name if path.stem.casefold() == BICUBIC else path.stem


def unique_label(label: str, taken: set[str]) -> str:
    """``label``, or ``label-2``, ``label-3``, ... if taken (two files with one stem); adds it to ``taken``."""
    candidate, k = label, 2
    while candidate in taken:
        candidate, k = f"{label}-{k}", k + 1
    taken.add(candidate)
    return candidate


def upscalers_for(specs: Sequence[str], device: Any = "cpu", precision: str = "fp32") -> list[Upscaler]:
    """An upscaler for each of ``specs`` ('bicubic', a model name, a weights file or a Hub
    reference), named as ``srgan bench`` names them (two files with one stem: gen, gen-2)."""
    taken: set[str] = set()
    upscalers = []
    for spec in specs:
        if spec.lower() == BICUBIC:
            upscaler, label = bicubic_upscaler(), BICUBIC
        else:
            upscaler, label = model_upscaler(spec, device, precision), model_label(spec)
        upscaler.name = unique_label(label, taken)
        upscalers.append(upscaler)
    return upscalers


def bicubic_upscaler(scale: int = 4, name: str = BICUBIC) -> Upscaler:
    """MATLAB-compatible bicubic upscaling of the LR (the literature's baseline)."""
    return Upscaler(name, BICUBIC_SOURCE, scale, lambda lr: imresize(lr, scale))


def model_upscaler(
    spec: str, device: Any, precision: str = "auto", name: str | None = None, ensemble: bool = False
) -> Upscaler:
    """A generator (named model, weights file or Hub reference) loaded through the Python API;
    ``ensemble``: scored with the x8 self-ensemble (``api.load_model(ensemble=True)``)."""
    import torch

    from . import api
    from .device import choose_device, choose_dtype

    dev = device if isinstance(device, torch.device) else choose_device(str(device))
    if (precision or "auto").lower() == "auto" and dev.type == "cpu":
        precision = "fp32"  # scores comparable across CPUs: upscale's auto may pick bf16 there
    dtype, note = choose_dtype(precision, dev)
    if "precision" in inspect.signature(api.load_model).parameters:
        model = api.load_model(spec, device=dev, precision=precision, ensemble=ensemble)
        notes = list(getattr(model, "notes", []))
    else:  # an API without precision handling: convert here
        model = api.load_model(spec, device=dev)
        notes = [note] if note else []
    dtype = getattr(model, "dtype", None) or dtype

    def run(lr: np.ndarray) -> np.ndarray:
        # quantised as srgan upscale stores it (float32, half to even): the images --save-images writes
        # are byte for byte upscale's, and scored as such (a float64 rounding gave another value to a pixel
        # of Set5's bird that is exactly x.5 in float32)
        return api.upscale_array(model, lr, dtype=dtype, bit_depth=8)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    label = name or getattr(model, "name", None) or Path(spec).stem
    dtype_name = str(dtype).replace("torch.", "")
    sha256 = getattr(model, "sha256", None) or None
    return Upscaler(label, str(spec), int(model.scale), run, dtype_name, sync, notes, sha256)


# --------------------------------------------------------------------------- the run


def run_bench(
    models: Sequence[Upscaler],
    bench_set: BenchSet,
    device: str = "cpu",
    per_image: bool = False,
    runs: int = 1,
    lpips: Lpips | None = None,
    lpips_note: str | None = None,
    save_dir: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Super-resolve every image with every model; mean PSNR/SSIM(/LPIPS) and output MP/s.

    Each model is warmed up on the first image (untimed); then each image is upscaled ``runs``
    times and the median time counts. With ``save_dir``, SR images and comparison sheets are
    written there as the run goes (see :func:`save_outputs`).
    """
    if runs < 1:
        raise ValueError("runs must be >= 1")
    if not models:
        raise ValueError("no models to benchmark")
    if not bench_set.images:
        raise SrganError(f"{bench_set.path}: the set has no images")
    scale = bench_set.scale
    for model in models:
        if model.scale != scale:
            raise SrganError(
                f"model {model.name} upscales x{model.scale} but the set is x{scale}; use an x{scale} model"
            )
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be unique, got {names}")

    # the baseline by what it is, not by its name: a weights file named bicubic took its place on the sheets
    baseline = {m.name for m in models if m.source == BICUBIC_SOURCE}
    first = bench_set.images[0].lr
    for model in models:  # warm-up: first-call allocations, kernel selection, lazy init
        model.run(first)
        model.synchronize()

    rows: dict[str, list[dict[str, Any]]] = {m.name: [] for m in models}
    total = len(bench_set.images)
    for index, image in enumerate(bench_set.images):
        outputs: dict[str, np.ndarray] = {}
        for model in models:
            times = []
            for _ in range(runs):
                model.synchronize()
                start = time.perf_counter()
                sr = model.run(image.lr)
                model.synchronize()
                times.append(time.perf_counter() - start)
            if sr.shape != image.hr.shape:
                raise SrganError(
                    f"model {model.name} made {sr.shape[1]}x{sr.shape[0]} from {image.name} "
                    f"but HR is {image.hr.shape[1]}x{image.hr.shape[0]}"
                )
            outputs[model.name] = sr
            row = {
                "name": image.name,
                "psnr": psnr_y(sr, image.hr, scale),
                "ssim": ssim_y(sr, image.hr, scale),
                "lpips": lpips(sr, image.hr, scale) if lpips is not None else None,
                "seconds": statistics.median(times),
                "pixels": sr.shape[0] * sr.shape[1],
            }
            rows[model.name].append(row)
        if save_dir is not None:
            psnrs = {n: rows[n][-1]["psnr"] for n in outputs}
            save_outputs(save_dir, image, outputs, scale, psnrs, baseline=baseline)
        if progress is not None:
            progress(index + 1, total)

    run_notes = []
    skipped = [
        im.hr_path.name for im, row in zip(bench_set.images, rows[models[0].name], strict=True) if row["lpips"] is None
    ]
    if lpips is not None and 0 < len(skipped) < total:
        # a mean LPIPS over 3 of 5 images sat beside PSNR and SSIM over all 5 without a word
        one = len(skipped) == 1
        run_notes.append(
            f"LPIPS over {total - len(skipped)} of {total} images: {_some(skipped)} {'is' if one else 'are'} too small "
            f"for it (under {getattr(lpips, 'MIN_SIDE', Lpips.MIN_SIDE)} px a side after the {scale} px border cut)"
        )
    result_models = []
    for index, model in enumerate(models):
        model_rows = rows[model.name]
        seconds = sum(r["seconds"] for r in model_rows)
        pixels = sum(r["pixels"] for r in model_rows)
        lp = [r["lpips"] for r in model_rows if r["lpips"] is not None]  # None: computed nowhere, or too small
        scored = lpips is not None and bool(lp)
        too_small = "every image is smaller than LPIPS's 31 px after the border cut"
        result_models.append(
            {
                "name": model.name,
                "source": model.source,
                "sha256": model.sha256,
                "dtype": model.dtype,
                "psnr": _mean_psnr([r["psnr"] for r in model_rows]),
                "ssim": _mean([r["ssim"] for r in model_rows]),
                "lpips": _mean(lp) if scored else None,
                "lpips_note": None if scored else (too_small if lpips is not None else (lpips_note or "not computed")),
                "lpips_n": len(lp) if lpips is not None else None,
                "mp_per_s": pixels / 1e6 / seconds if seconds > 0 else None,
                "notes": list(model.notes) + _exact_note(model_rows),
                "seconds": seconds,
                "images": [{k: v for k, v in r.items() if k != "pixels"} for r in model_rows] if per_image else [],
                "paired": paired_difference(model_rows, rows[models[0].name], models[0].name) if index else None,
            }
        )
    from . import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "srgan_version": __version__,
        "set": bench_set.name,
        "set_path": str(bench_set.path),
        "scale": scale,
        "num_images": total,
        "lr_source": bench_set.lr_source,
        "lpips_source": getattr(lpips, "source", None) if lpips is not None else None,
        "device": str(device),
        "runs": runs,
        # about the set: a partial standard set, LR files that paired with nothing, images too small for LPIPS
        "notes": ([note] if (note := size_note(bench_set)) else []) + list(bench_set.notes) + run_notes,
        "models": result_models,
    }


def paired_difference(rows: Sequence[dict[str, Any]], base: Sequence[dict[str, Any]], against: str) -> dict[str, Any]:
    """One model's per-image PSNR/SSIM less another's on the same images: the mean difference,
    its standard error and how many images each side wins. A difference of means alone hides
    whether a 0.03 dB gain is every image or one; the paired standard error says which.
    Images where either PSNR is not finite (an output identical to HR) are left out."""
    pairs = [
        (r["psnr"] - b["psnr"], r["ssim"] - b["ssim"])
        for r, b in zip(rows, base, strict=True)
        if math.isfinite(r["psnr"]) and math.isfinite(b["psnr"])
    ]
    n = len(pairs)

    def mean_sem(values: list[float]) -> tuple[float, float | None]:
        if not values:
            return math.nan, None
        return float(np.mean(values)), (statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None)

    dpsnr, psnr_sem = mean_sem([p for p, _ in pairs])
    dssim, ssim_sem = mean_sem([q for _, q in pairs])
    # LPIPS over every image where both have it (it stays finite for identical images)
    lp = [
        r["lpips"] - b["lpips"]
        for r, b in zip(rows, base, strict=True)
        if r.get("lpips") is not None and b.get("lpips") is not None
    ]
    dlpips, lpips_sem = mean_sem(lp) if lp else (None, None)
    return {
        "against": against,
        "n": n,
        "psnr": dpsnr,
        "psnr_sem": psnr_sem,
        "ssim": dssim,
        "ssim_sem": ssim_sem,
        "better": sum(p > 0 for p, _ in pairs),
        "worse": sum(p < 0 for p, _ in pairs),
        "lpips": dlpips,
        "lpips_sem": lpips_sem,
        "lpips_lower": sum(d < 0 for d in lp) if lp else None,
        "lpips_higher": sum(d > 0 for d in lp) if lp else None,
        "lpips_n": len(lp) if lp else None,
    }


def _exact_note(rows: list[dict[str, Any]]) -> list[str]:
    exact = sum(1 for r in rows if r["psnr"] == math.inf)
    if not exact:
        return []
    return [
        f"{exact} of {len(rows)} images reproduced exactly (PSNR infinite) count as {PSNR_CEILING:g} dB"
        " in its mean PSNR"
    ]


# An image reproduced exactly has an infinite PSNR; in a mean it counts as this many dB, so one such
# image neither makes the mean infinite nor, left out, ranks its model below a worse one.
PSNR_CEILING = 100.0


def _mean_psnr(values: list[float]) -> float:
    return _mean([min(v, PSNR_CEILING) for v in values])


def _mean(values: list[float | None]) -> float:
    """The mean of the values that are there (None: not computed), NaN if none is."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else math.nan


# --------------------------------------------------------------------------- pictures

SHEET_CROP = 64  # HR pixels of the detail crop (square); shown enlarged
SHEET_ZOOM = 4  # nearest-neighbour enlargement of the crop
# The least width of a panel, in px: a crop of a small image is enlarged further to it, so that a label
# ("bicubic 24.31 dB") fits under it; at 4x, a 19 px crop gave 76 px panels labelled "bicubic 4~".
SHEET_MIN_PANEL = 256
_LABEL_H = 18


def window_sums(values: np.ndarray, size: int, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sums of ``values`` over every ``size``-square window on a ``step`` grid, tops, lefts)."""
    h, w = values.shape
    integral = np.pad(values.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    tops = np.arange(0, h - size + 1, step)
    lefts = np.arange(0, w - size + 1, step)
    sums = (
        integral[np.ix_(tops + size, lefts + size)]
        - integral[np.ix_(tops, lefts + size)]
        - integral[np.ix_(tops + size, lefts)]
        + integral[np.ix_(tops, lefts)]
    )
    return sums, tops, lefts


def detail_window(hr: np.ndarray, size: int, step: int = 4, flattest: bool = False) -> tuple[int, int, int]:
    """(top, left, size) of the ``size``-square window of HR with the most gradient energy.

    With ``flattest``, the window with the least, among those whose mean luma is neither near
    black nor near white (clipped areas hide what a model adds): where a texture or grid that
    the model lays over smooth skin, sky or paper shows most plainly.
    """
    y = rgb_to_y(hr.astype(np.float64) / 255.0)
    h, w = y.shape
    size = max(1, min(size, h, w))
    energy = np.zeros_like(y)
    energy[:, :-1] += np.diff(y, axis=1) ** 2
    energy[:-1, :] += np.diff(y, axis=0) ** 2
    sums, tops, lefts = window_sums(energy, size, step)
    if flattest:
        luma = window_sums(y, size, step)[0] / (size * size)
        # Y spans 16-235: keep well clear of both ends (dark noise, clipped white)
        midtone = (luma > 64) & (luma < 210)
        i, j = np.unravel_index(int(np.argmin(np.where(midtone, sums, np.inf) if midtone.any() else sums)), sums.shape)
    else:
        i, j = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(tops[i]), int(lefts[j]), size


def comparison_sheet(
    hr: np.ndarray,
    panels: list[tuple[str | tuple[str, str], np.ndarray]],
    crop: int = SHEET_CROP,
    zoom: int = SHEET_ZOOM,
):
    """A PIL image: the same crops of HR and of each ``(label, image)``, side by side.

    Two rows: the first shows the crop where HR has the most gradient energy (fine detail), the
    second the flattest mid-tone one (where a texture the model adds shows), each enlarged
    ``zoom`` times (more where that leaves a panel under :data:`SHEET_MIN_PANEL` px) with nearest
    neighbour so single pixels stay visible. The first column shows the whole HR image, reduced,
    with the detail crop outlined in red and the flat one in blue; each panel of the first row
    carries its label underneath. A label may be ``(name, figure)``: a name too long for the panel
    loses its middle, the figure ("33.17 dB") is kept whole.
    """
    from PIL import Image, ImageDraw, ImageFont

    windows = [detail_window(hr, crop), detail_window(hr, crop, flattest=True)]
    size = windows[0][2]
    side = size * max(zoom, -(-SHEET_MIN_PANEL // size))
    all_panels = [("HR", hr), *panels]
    count = len(all_panels) + 1  # the first column shows where the crops are
    row_h = side + _LABEL_H + 4
    sheet = Image.new("RGB", (count * (side + 4) + 4, 2 * row_h + 4), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=14)  # a scalable font where Pillow has FreeType
    except (TypeError, ImportError, OSError):
        font = ImageFont.load_default()

    overview = Image.fromarray(np.ascontiguousarray(hr))
    factor = min(side / hr.shape[1], side / hr.shape[0])
    overview = overview.resize((max(1, round(hr.shape[1] * factor)), max(1, round(hr.shape[0] * factor))), Image.BOX)
    sheet.paste(overview, (4, 4))
    for (top, left, _), colour, y, text in zip(
        windows, [(255, 0, 0), (0, 64, 255)], [side + 6, row_h + 4], ["detail: red", "flat: blue"], strict=True
    ):
        box = [4 + left * factor, 4 + top * factor, 4 + (left + size) * factor - 1, 4 + (top + size) * factor - 1]
        draw.rectangle(box, outline=colour, width=2)
        draw.text((4, y), text, fill=colour, font=font)

    for row, (top, left, _) in enumerate(windows):
        for k, (label, image) in enumerate(all_panels, start=1):
            patch = Image.fromarray(np.ascontiguousarray(image[top : top + size, left : left + size]))
            x = 4 + k * (side + 4)
            sheet.paste(patch.resize((side, side), Image.Resampling.NEAREST), (x, 4 + row * row_h))
            if row == 0:
                name, figure = (label, "") if isinstance(label, str) else label
                text = fit_label(name, figure, side, lambda t: draw.textlength(t, font=font))
                draw.text((x, side + 6), text, fill=(0, 0, 0), font=font)
    return sheet


def fit_label(name: str, figure: str, width: float, measure: Callable[[str], float]) -> str:
    """``name + figure`` where it is at most ``width`` wide (by ``measure``), else with the middle of
    ``name`` replaced by "...": both ends tell models apart (run_042_epoch100 from _epoch200), and the
    figure is never cut (a label cut at the end had lost its "33.17 dB")."""
    if measure(name + figure) <= width:
        return name + figure
    for keep in range(len(name) - 1, 0, -1):
        text = name[: (keep + 1) // 2] + "..." + name[len(name) - keep // 2 :] + figure
        if measure(text) <= width:
            return text
    return figure.strip() or name[:1]


_SAVED_BY = "srgan bench --save-images"


def saved_paths(save_dir: str | Path, image_name: str, model_names: Sequence[str]) -> list[Path]:
    """The files :func:`save_outputs` writes for one image: one SR image per model, then the sheet."""
    save_dir = Path(save_dir)
    folders = model_folders(model_names)
    return [save_dir / folders[n] / f"{image_name}.png" for n in model_names] + [
        save_dir / "sheets" / f"{image_name}.png"
    ]


def check_save_dir(save_dir: str | Path, bench_set: BenchSet, model_names: Sequence[str]) -> None:
    """Raise SrganError, before anything runs, if ``--save-images`` would replace a set's image or
    a file that an earlier ``srgan bench --save-images`` did not write."""
    save_dir = Path(save_dir)
    folders = {save_dir, save_dir / "sheets", *(save_dir / f for f in model_folders(model_names).values())}
    # the set's own image folders: images saved there became inputs of the next run (HR "ground truth")
    lr_dir = bench_set.lr_dir or lr_folder(bench_set.path, bench_set.scale)
    own = [hr_folder(bench_set.path).resolve(), lr_dir.resolve()]
    base = bench_set.path.resolve()
    # and a folder of another case of those names (lr_x4/ for a model lr_x4.safetensors): HR/ and LR_x4/
    # are found whatever their case, so the next run took it for the set's LR, or refused two of them
    reserved = {"hr": "HR", f"lr_x{bench_set.scale}": f"LR_x{bench_set.scale}"}
    for folder in sorted(folders):
        where = folder.resolve()
        inside = next((d for d in own if where == d or where.is_relative_to(d)), None)
        if inside is not None:
            raise SrganError(
                f"{folder}: is in the set's own {inside.name}/ folder, whose images the next run would read; "
                "choose another --save-images folder"
            )
        top = where.relative_to(base).parts[0] if where != base and where.is_relative_to(base) else ""
        if top.casefold() in reserved:
            raise SrganError(
                f"{folder}: {top}/ in the set's folder would be read as its own {reserved[top.casefold()]}/ "
                "folder (found whatever the case of its name) by the next run; choose another --save-images folder"
            )
        blocked = file_in_the_way(folder)
        if blocked is not None:
            raise SrganError(
                f"{blocked}: is a file where --save-images needs a folder; choose another --save-images folder"
            )
    for image in bench_set.images:
        for dest in saved_paths(save_dir, image.name, model_names):
            _check_replaceable(dest, image)


def _check_replaceable(dest: Path, image: BenchImage) -> None:
    if not (dest.exists() or dest.is_symlink()):
        return
    inputs = {p.resolve() for p in (image.hr_path, image.lr_path) if p is not None}
    if dest.resolve() in inputs:
        raise SrganError(f"{dest}: would overwrite an input image; choose another --save-images folder")
    from PIL import Image

    ours = False
    if dest.is_file() and not dest.is_symlink():  # a FIFO is never opened: that would block
        try:
            with Image.open(dest) as im:
                ours = im.format == "PNG" and im.info.get("Software") == _SAVED_BY
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            ours = False
    if not ours:
        raise SrganError(
            f"{dest}: exists and was not written by srgan bench --save-images; choose another --save-images folder"
        )


def save_outputs(
    save_dir: str | Path,
    image: BenchImage,
    outputs: dict[str, np.ndarray],
    scale: int,
    psnrs: dict[str, float],
    baseline: Collection[str] | None = None,
) -> list[Path]:
    """Write ``<dir>/<model>/<image>.png`` for each SR output and ``<dir>/sheets/<image>.png``.

    The sheet shows HR, bicubic and every model on the same detail crop and flat crop, labelled
    with name and PSNR. ``baseline``: the names of the outputs that are the bicubic baseline
    (default: one named "bicubic"); with none, the sheet gets a bicubic panel of its own.
    Every file is written atomically and marked as written here; an existing file is replaced only if
    an earlier call wrote it (never one of the set's inputs).
    """
    from PIL import Image, PngImagePlugin

    save_dir = Path(save_dir)
    written = []
    mark = PngImagePlugin.PngInfo()
    mark.add_text("Software", _SAVED_BY)

    def write(dest: Path, array: np.ndarray) -> None:
        _check_replaceable(dest, image)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(dest) as tmp:
                Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG", pnginfo=mark)
        except OSError as exc:
            raise SrganError(f"{dest}: cannot write ({write_reason(exc)}); check --save-images") from None
        written.append(dest)

    folders = model_folders(list(outputs))
    for name, sr in outputs.items():
        write(save_dir / folders[name] / f"{image.name}.png", sr)
    panels = []
    if not (set(baseline) if baseline is not None else {BICUBIC}) & set(outputs):
        bic = imresize(image.lr, scale)
        panels.append(((BICUBIC, f" {psnr_y(bic, image.hr, scale):.2f} dB"), bic))
    for name, sr in outputs.items():
        panels.append(((name, f" {psnrs[name]:.2f} dB"), sr))
    sheet = comparison_sheet(image.hr, panels)
    write(save_dir / "sheets" / f"{image.name}.png", np.asarray(sheet))
    return written


def model_folders(names: Sequence[str]) -> dict[str, str]:
    """Each model's folder under ``--save-images``: its name made safe for a file system, and
    unique ('my model' and 'my_model' are my_model and my_model-2; 'sheets' is the sheets')."""
    used = {"sheets"}
    folders = {}
    for name in names:
        base = _safe_name(name)
        folder, n = base, 2
        while folder.lower() in used:  # case-insensitive file systems too
            folder, n = f"{base}-{n}", n + 1
        used.add(folder.lower())
        folders[name] = folder
    return folders


def _safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name).strip(".")
    return cleaned or "model"


def _short(exc: BaseException) -> str:
    from .hub import short_message

    return short_message(exc, 160)
