"""``srgan upscale``: upscale image files and folders, safely and in a pipeline.

Decoding the next image (reader thread) and encoding the previous one (writer thread)
overlap the inference (main thread); the queues between them hold at most two images each,
so memory stays bounded. Every output is written atomically; an interruption (Ctrl-C,
SIGTERM) lets the file being written finish, and never leaves a half-written one.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import functools
import math
import os
import queue
import re
import stat
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import click

from ..cli import (
    Command,
    DroppingStream,
    NonEmptyPath,
    as_typed,
    check_model_names,
    check_stdout_open,
    device_option,
    live_terminal,
    typed_value,
)
from ..config import MAX_OUTSCALE, PRECISIONS
from ..errors import SrganError, exact_number, first_line, printable
from ..stopping import interruptible
from .completion import complete_blend, complete_model

FORMATS = ("png", "jpg", "webp", "avif", "tiff", "bmp", "gif", "same")  # as --help lists them
# other names --format takes, as -o takes x.jpeg and x.tif; left out of --help's list to keep it short
FORMAT_ALIASES = {"jpeg": "jpg", "tif": "tiff"}
QUEUE_SIZE = 2
_DONE = object()
NOT_AN_IMAGE = "not an image file"  # the reason a file in an input folder is skipped


class FormatChoice(click.Choice):
    """--format's choice: one of FORMATS, or a name of FORMAT_ALIASES, which becomes its FORMATS name."""

    def convert(self, value, param, ctx):
        if isinstance(value, str):
            value = FORMAT_ALIASES.get(value.strip().lower(), value)
        value = super().convert(value, param, ctx)
        if value == "avif" and not (ctx is not None and ctx.resilient_parsing):
            from ..images import output_suffix_for

            try:
                output_suffix_for("avif")  # where this Pillow has no AVIF: why, and what to do
            except SrganError as exc:
                self.fail(str(exc).split(": ", 1)[-1], param, ctx)
        return value


@dataclass(frozen=True)
class Job:
    """One input image and the output path it goes to."""

    src: Path
    dest: Path
    fmt: str | None  # None: from the output suffix


@dataclass
class Tally:
    """The counts of the summary line, and one record per file for ``--report``."""

    written: int = 0
    skipped: int = 0
    failed: int = 0
    not_started: int = 0  # the batch stopped first (interrupted, --fail-fast, a full disk)
    lock: threading.Lock = field(default_factory=threading.Lock)
    files: list[dict[str, str | None]] = field(default_factory=list)
    # True: --fail-fast stopped the batch at a failure; a string: why it stopped otherwise (a full disk)
    stopped: bool | str = False
    model: dict[str, str] | None = None  # name and weights sha256, once the model is loaded
    # the files of input folders passed over as images of formats srgan does not read, by suffix (".heic": 2)
    unread: dict[str, int] = field(default_factory=dict)
    # sub-folders of input folders that hold images, not entered without --recursive
    unentered: list[Path] = field(default_factory=list)
    started: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    )
    # the jobs planned and not yet handed to run_pipeline: a stop meanwhile (the model failing to load,
    # an interrupt) reports them as not started, where the report listed no file at all
    pending: list | None = None
    # the notes given on each file under way (frames left out, metadata not kept), by (input, output): they
    # go into its record when it is added, so --report says them of each file (-q shows none)
    notes: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def note(self, src: Path, dest: Path, message: str) -> None:
        with self.lock:
            self.notes.setdefault((str(src), str(dest)), []).append(printable(str(message).strip()))

    def stop_pending(self) -> None:
        for job in self.pending or []:
            self.add("not_started", job.src, job.dest, "the batch stopped before it")
        self.pending = None

    def add(self, what: str, src: Path | None = None, dest: Path | None = None, reason: str | None = None) -> None:
        with self.lock:
            setattr(self, what, getattr(self, what) + 1)
            self.files.append(
                {
                    "input": None if src is None else str(src),
                    "output": None if dest is None else str(dest),
                    "status": what,
                    "reason": None if reason is None else printable(str(reason).strip()),
                    "notes": self.notes.pop((str(src), str(dest)), []) if src and dest else [],
                }
            )

    def unwrite(self, dest: Path, reason: str) -> None:
        """A written file that did not reach its reader after all (standard output closed): failed."""
        with self.lock:
            for record in self.files:
                if record["output"] == str(dest) and record["status"] == "written":
                    record.update(status="failed", reason=printable(reason.strip()))
                    self.written -= 1
                    self.failed += 1


class Reporter:
    """One-line messages on stderr, safe from any thread, around a live progress bar."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.console = None
        self.aliases: dict[str, str] = {}  # staged stdin/stdout files -> "-" in messages
        self._lock = threading.Lock()

    def error(self, message: str) -> str:
        """Print ``error: MESSAGE`` on one line; returns the message as printed (for --report)."""
        return self._emit(f"error: {printable(str(message).strip())}")[len("error: ") :]

    def note(self, message: str) -> None:
        if not self.quiet:
            self._emit(f"note: {printable(str(message).strip())}")

    def aliased(self, line: str) -> str:
        """``line`` with the staged stdin/stdout files named '-', as messages show them."""
        for staged, shown in self.aliases.items():
            line = line.replace(staged, shown)
        return line

    def shown(self, path: str | None) -> str | None:
        """A path as messages show it: a staged stdin/stdout file as '-'."""
        return self.aliases.get(path, path) if path is not None else None

    printing = True  # _Silent: the lines are made (for --report) but not shown

    def _emit(self, line: str) -> str:
        line = self.aliased(line)
        if not self.printing:
            return line
        with self._lock, contextlib.suppress(OSError):  # stderr gone (closed, full): the batch goes on
            if self.console is not None:
                self.console.print(line, markup=False, highlight=False, soft_wrap=True)
            else:
                click.echo(line, err=True)
        return line


def _read(path: Path, max_pixels: int):
    """Decode one input (a seam for tests)."""
    from ..images import read_image

    return read_image(path, max_pixels=max_pixels)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def _inside(folder: Path, path: Path) -> bool:
    """True when ``path`` (resolved, symlinks followed) lies inside ``folder`` (resolved)."""
    root = os.path.realpath(folder)
    target = os.path.realpath(path)
    if _case_blind(root):  # macOS, Windows: -o photos is the folder Photos
        root, target = root.casefold(), target.casefold()
    try:
        return os.path.commonpath([root, target]) == root
    except ValueError:  # different drives
        return False


def _unreadable_image_name(path: Path) -> str | None:
    """Why an image name listed in an input folder is no image file to read, or None if it is one."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "a symbolic link to a missing file" if os.path.islink(path) else None  # else: deleted meanwhile
    except OSError as exc:
        return f"cannot read it ({exc.strerror or exc})"
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        return None
    return "not a regular file (a FIFO, socket or device), so it is not read"


def _not_a_file_reason(path: Path) -> str:
    """Why an input that is neither a regular file nor a folder cannot be read; never opened."""
    return _unreadable_image_name(path) or "no such file or folder"


def _sort_folder(folder: Path, recursive: bool) -> tuple[list[Path], list[Path], list[tuple[Path, str]]]:
    """An input folder's images, sorted; its files that are not images (reported as skipped); and
    its image names that are no image file to read (reported as failed, with why: the image the
    user meant is not there): symbolic links to nothing, FIFOs, sockets, devices, and sub-folders
    that cannot be listed (their images were not upscaled). One walk
    (:func:`images.folder_entries`), so the three lists agree."""
    from ..images import folder_entries, is_image_path

    images, others, failed = [], [], []
    unlisted: list[tuple[Path, str]] = []
    for path, is_file in folder_entries(folder, recursive, unlisted=unlisted):
        if not is_image_path(path):
            others.append(path)
        elif is_file:
            images.append(path)
        elif (why := _unreadable_image_name(path)) is not None:
            failed.append((path, why))
    failed.extend((path, f"cannot list the folder: {why}; its images are not upscaled") for path, why in unlisted)
    return sorted(images), others, failed


def _subfolders_with_images(folder: Path, output: Path, budget: int = 20_000) -> list[Path]:
    """The sub-folders of ``folder`` holding images (:func:`images.subfolders_with_images`), but the
    output folder: without --recursive they are passed over, which a batch said nothing of."""
    from ..images import subfolders_with_images

    # the -o folder inside the input folder: its images are outputs
    return subfolders_with_images(
        folder, lambda sub: _output_key(sub) == _output_key(output) or _inside(output, sub), budget
    )


def _not_entered(folders: list[Path]) -> str:
    """``2 sub-folders with images were not entered (photos/2019, photos/2020): pass --recursive``."""
    named = ", ".join(map(str, folders[:3])) + (f" and {len(folders) - 3} more" if len(folders) > 3 else "")
    many = len(folders) != 1
    return (
        f"{len(folders)} sub-folder{'s' if many else ''} with images {'were' if many else 'was'} not entered "
        f"({named}): pass --recursive to upscale {'their' if many else 'its'} images too"
    )


def _output_name(src: Path, fmt_choice: str | None, suffix: str) -> str:
    """The output file name for ``src``; its suffix decides the format written."""
    from ..images import PNG_OUTPUT_FORMATS, STILL_SUFFIX, format_for_path, output_suffix_for

    if fmt_choice in (None, "same"):
        src_fmt = format_for_path(src)
        if src_fmt in PNG_OUTPUT_FORMATS:  # GIF holds 256 colours and PPM is read only: their photos go to PNG
            ext = ".png"
        elif src_fmt == "MPO":  # a multi-picture JPEG (.mpo) is read as its first picture: a plain JPEG
            ext = ".jpg"
        else:  # anim.apng and .avifs are read as their first frame: a still .png, .avif; IMG_0001.JPG keeps
            # its .JPG, as a camera names it (it became .jpg: scripts pairing inputs with outputs missed them)
            ext = STILL_SUFFIX.get(src.suffix.lower(), src.suffix)
    else:
        ext = output_suffix_for(fmt_choice)
    return f"{src.stem}{suffix}{ext}"


# how a typed -o says it is a folder whatever its name: a trailing separator, or "/." at its end
_FOLDER_ENDINGS = tuple({"/", "/.", os.sep, os.sep + "."})


def plan_jobs(
    inputs: tuple[Path, ...],
    output: Path,
    *,
    fmt: str | None,
    suffix: str | None,
    recursive: bool,
    report: Reporter,
    tally: Tally,
    overwrite: bool = False,
    output_folder: bool = False,
) -> tuple[list[Job], bool]:
    """Map inputs to outputs; returns (jobs, single_file_mode). Problems are reported per input.
    ``output_folder``: -o was typed as a folder (``big.png/``)."""
    from ..images import (
        format_for_path,
        image_format_named,
        is_image_path,
        output_refusal,
        output_suffix_for,
        output_suffixes,
        supported_suffixes,
        unread_reason,
    )

    # os.path's tests, not Path's: a name the file system refuses (too long) is False there, and
    # fails later as its one file, where Path.is_dir() raised OSError out of the whole batch.
    # A name whose suffix names an image format is a file's, also one srgan cannot write (out.heic
    # became a folder): it is refused, below.
    # `-o out.avif/` (output_folder): a folder whatever its name
    file_name = not output_folder and image_format_named(output) is not None and not os.path.isdir(output)
    single = len(inputs) == 1 and not os.path.isdir(inputs[0]) and file_name
    if single:
        src = inputs[0]
        if not os.path.isfile(src):
            tally.add("failed", src, None, report.error(f"{src}: {_not_a_file_reason(src)}"))
            return [], True
        if not is_image_path(src):
            reason = unread_reason(src) or f"not an image file name (supported: {supported_suffixes()})"
            tally.add("failed", src, None, report.error(f"{src}: {reason}"))
            return [], True
        write_fmt = None if fmt in (None, "same") else fmt
        refusal = output_refusal(output)  # a suffix srgan reads only (.ppm) or not at all (.heic)
        if refusal is not None:
            raise click.BadParameter(printable(refusal), param_hint="'-o'")
        out_fmt = format_for_path(output)
        if write_fmt and out_fmt != format_for_path(f"x{output_suffix_for(write_fmt)}"):
            raise click.BadParameter(
                printable(f"--format {write_fmt} does not match the suffix of {output}; change one of them"),
                param_hint="'-o'",
            )
        kept = format_for_path(_output_name(src, "same", "")) if fmt == "same" else out_fmt
        if kept != out_fmt:
            raise click.BadParameter(
                printable(
                    f"--format same writes {src}'s format ({kept}), but {output} names {out_fmt}; change one of them"
                ),
                param_hint="'-o'",
            )
        if suffix:
            report.note(f"--suffix {suffix} is not used: -o names the output file ({output})")
        return [Job(src, output, write_fmt)], True

    if os.path.exists(output) and not os.path.isdir(output):
        kind = _special_kind(output)
        if len(inputs) == 1 and os.path.isfile(inputs[0]):  # one image: -o names no image file
            if kind is not None:  # `-o /dev/null`: was "with several inputs or a folder, -o must be a folder"
                why = f"{output} is {kind}, not a file; to send the image to it, use -o - (-o - > {output})"
            else:
                why = f"{output} is a file not named as an image ({output_suffixes()}); name an image file or a folder"
            raise click.BadParameter(printable(why), param_hint="'-o'")
        raise click.BadParameter(
            printable(f"{output} is {kind or 'a file'}; with several inputs or a folder, -o must be a folder"),
            param_hint="'-o'",
        )
    if file_name and not os.path.exists(output) and output_refusal(output) is None:
        # out.png: the name of a file srgan would write, most likely meant for one image
        raise click.BadParameter(
            printable(
                f"{output} looks like an image file name, but the inputs are several files or a folder; give a folder "
                "for -o"
            ),
            param_hint="'-o'",
        )
    if file_name and not os.path.exists(output):
        # out.pdf, frames.mpg, x.psd, out.jp2: no file srgan writes, so with several inputs the folder -o
        # can only be (refused, as an image file name, where it had been made before srgan knew them)
        report.note(
            f"{output} is named as a {image_format_named(output)} file would be, but srgan does not write that "
            "format, and the inputs are several files or a folder: it is the output folder"
        )
    name_suffix = suffix or ""
    if (
        output.suffix
        and not output_folder
        and not os.path.exists(output)
        and len(inputs) == 1
        and os.path.isfile(inputs[0])
    ):
        # 'out.jgp' or 'out.tif2': most likely a mistyped file name, taken as a new folder ('x.d/' says it is one)
        report.note(
            f"{output} is not an image file name ({supported_suffixes()}), "
            f"so it is a folder: the image goes into {output / _output_name(inputs[0], fmt, name_suffix)}"
        )
    jobs: list[Job] = []
    listed: set[Path] = set()  # found in a folder, not named on the command line
    for item in inputs:
        if os.path.isdir(item):
            try:
                found, others, unreadable = _sort_folder(item, recursive)
            except SrganError as exc:  # the folder itself cannot be listed: it fails, the other inputs go on
                tally.add("failed", item, None, report.error(str(exc)))
                continue
            if not recursive:
                tally.unentered.extend(_subfolders_with_images(item, output))
            if _output_key(item) != _output_key(output):
                # -o inside an input folder: earlier outputs are not inputs.
                found = [p for p in found if not _inside(output, p)]
            for other in others:
                if (why := unread_reason(other)) is not None:  # an image srgan does not read: counted by suffix
                    suffix = other.suffix.lower()
                    tally.unread[suffix] = tally.unread.get(suffix, 0) + 1
                    tally.add("skipped", other, None, why)
                else:
                    tally.add("skipped", other, None, NOT_AN_IMAGE)
            for path, why in unreadable:
                tally.add("failed", path, None, report.error(f"{path}: {why}"))
            for src in found:
                rel = src.relative_to(item)
                jobs.append(Job(src, output / rel.parent / _output_name(src, fmt, name_suffix), None))
                listed.add(src)
        elif os.path.isfile(item):
            if (why := unread_reason(item)) is not None:  # an image the user named, which srgan does not read
                tally.add("failed", item, None, report.error(f"{item}: {why}"))
                continue
            if not is_image_path(item):
                tally.add("skipped", item, None, NOT_AN_IMAGE)
                continue
            jobs.append(Job(item, output / _output_name(item, fmt, name_suffix), None))
        else:
            tally.add("failed", item, None, report.error(f"{item}: {_not_a_file_reason(item)}"))
    # a file also named on the command line counts as named, whichever way it came first
    named = {os.path.realpath(item) for item in inputs if os.path.isfile(item)}
    listed = {src for src in listed if os.path.realpath(src) not in named}
    return _without_earlier_outputs(_once_each(jobs, tally), listed, output, tally, report, overwrite), False


def _once_each(jobs: list[Job], tally: Tally) -> list[Job]:
    """One job for a file given twice (a folder and a file in it, a folder and a link to it, a
    shell glob overlapping a folder) where both would write the same output: the second was
    taken for another input claiming that output, and the run failed on files it had written."""
    first: dict[tuple[str, str], Job] = {}
    keep = []
    for job in jobs:
        # the output resolved as check_jobs resolves it (links followed): a pair merged here is one that
        # it would otherwise fail as two inputs claiming one output
        key = (_output_key(job.src), _output_key(job.dest))
        if key in first:
            tally.add("skipped", job.src, None, f"the same file as {first[key].src}, given twice")
            continue
        first[key] = job
        keep.append(job)
    return keep


def _without_earlier_outputs(
    jobs: list[Job], listed: set[Path], output: Path, tally: Tally, report: Reporter, overwrite: bool = False
) -> list[Job]:
    """Drop the files that an earlier run wrote into an input folder (-o the folder itself, with
    --suffix): each carries srgan's mark. Upscaled again they became x16 images, and a
    --skip-existing rerun failed on "would replace an input"; one made under another --suffix or
    --format is dropped too, as it lies in the output folder. A file named on the command line
    is upscaled whatever made it.

    BMP holds no mark, nor did the GIFs of srgan before it wrote one into their comment: such a
    file found in a folder under the output name of another input of this run is taken as that
    input's earlier output, as the run cannot both read and write it, so it is not upscaled.
    Whether srgan made it is not known, so --overwrite does not replace it (inputs are never
    replaced): that input fails, saying so. One under another --suffix cannot be told from an
    input."""
    from ..images import format_for_path

    # a file that is its own output (x.png, upscaled in place) is no maker: it stood in for x.gif, the
    # input whose output x.png is, and x.png stayed an input that every rerun failed to replace
    by_dest = {key: j for j in jobs if (key := _output_key(j.dest)) != _output_key(j.src)}
    keep = []
    unsure: dict[Job, Path] = {}  # a maker whose output is a BMP that may be the user's -> that BMP
    for job in jobs:
        maker = by_dest.get(_output_key(job.src)) if job.src in listed else None
        if maker is not None and maker is not job and _written_by_srgan(job.src):
            tally.add("skipped", job.src, None, f"the output of {maker.src} from an earlier run, not an input")
            continue
        if maker is not None and maker is not job and _holds_no_mark(job.src):
            kind = format_for_path(job.src)
            why = f"by its name the output of {maker.src} from an earlier run ({kind} records no maker), not an input"
            tally.add("skipped", job.src, None, f"{why}; name it to upscale it")
            if overwrite:
                unsure[maker] = job.src
            continue
        if maker is None and job.src in listed and _inside(output, job.src) and _written_by_srgan(job.src):
            why = "an earlier run's output (srgan wrote it into the output folder), not an input; name it to upscale it"
            tally.add("skipped", job.src, None, why)
            continue
        keep.append(job)
    for maker, bmp in unsure.items():
        why = report.error(
            f"{maker.dest}: not replaced: {format_for_path(bmp)} records no maker, so srgan cannot tell its "
            f"earlier output from an image of yours; delete {bmp.name} to write it again, or choose another "
            "--suffix or --format"
        )
        tally.add("failed", maker.src, maker.dest, why)
    return [job for job in keep if job not in unsure]


def _holds_no_mark(path: Path) -> bool:
    """True for a file that cannot record srgan's mark (BMP has no place for metadata), or a GIF
    without one (srgan's GIFs had none before it wrote its mark into the comment)."""
    from ..images import format_for_path

    kind = format_for_path(path)
    return kind == "BMP" or (kind == "GIF" and not _written_by_srgan(path))


def _written_by_srgan(path: Path) -> bool:
    """True when the image's Software field (PNG text, EXIF, TIFF tag, the GIF comment's
    "Software:" line) says srgan wrote it."""
    from PIL import Image

    from ..images import split_gif_mark

    try:
        with Image.open(path) as im:
            software = im.info.get("Software") or im.getexif().get(0x0131) or ""
            if not software and im.format == "GIF":
                software = split_gif_mark(im.info.get("comment"))[1].get("Software", "")
    except Exception:  # noqa: BLE001 - unreadable: not known to be ours, so it stays an input
        return False
    return isinstance(software, str) and software.startswith("srgan ")


def _newer(src: Path, dest: Path) -> bool:
    """Whether ``src`` was modified after ``dest`` (links followed; False where either cannot be read)."""
    try:
        return os.stat(src).st_mtime_ns > os.stat(dest).st_mtime_ns
    except (OSError, ValueError):
        return False


def check_jobs(
    jobs: list[Job],
    output_root: Path | None,
    inputs: list[Path],
    *,
    overwrite: bool,
    skip_existing: bool,
    report: Reporter,
    tally: Tally,
    claims: dict[str, Job] | None = None,
) -> list[Job]:
    """Drop jobs that must not run: output is an input, escapes -o, collides, or exists.

    ``claims`` (see :func:`output_claims`) is made from every rank's jobs under torchrun, where
    ``jobs`` is one rank's share: two inputs with one output in different shares collide too."""
    resolved_inputs = {os.path.realpath(p) for p in inputs}
    # on a disk that ignores case (exFAT, macOS, Windows) photo.png is the input Photo.PNG, whatever the
    # inode numbers say (FUSE's exFAT gives each spelling its own: the input was replaced by its upscale)
    folded_inputs = {p.casefold() for p in resolved_inputs}
    claims = output_claims(jobs) if claims is None else claims
    probed: dict[tuple[str, str], str | None] = {}  # fsutil.name_refusal's answers, one per folder
    keep = []
    stale: list[Path] = []  # skipped, though the input changed after its output was written
    for job in jobs:
        dest_real = os.path.realpath(job.dest)
        dest_key = _real_key(dest_real)
        problem = _dest_problem(job.dest, probed)
        if problem is not None:
            tally.add("failed", job.src, job.dest, report.error(f"{job.dest}: {problem}"))
            continue
        if (
            dest_real in resolved_inputs
            or (dest_real.casefold() in folded_inputs and _case_blind(os.path.dirname(dest_real)))
            or _same_file(job.src, job.dest)
        ):
            # x.gif's output x.png, where x.png is an input too, fails twice: the lines say which input is which
            whose = "" if _output_key(job.src) == dest_key else f" of {job.src}"
            why = report.error(
                f"{job.dest}: the output{whose} would replace an input image; choose another -o or --suffix"
            )
            tally.add("failed", job.src, job.dest, why)
            continue
        # the folder it goes into, links followed: a link in the output's own place is replaced by the
        # rename, not written through, so a link there to a file elsewhere (skipped with --skip-existing,
        # replaced with --overwrite) escapes nothing; a linked sub-folder would
        if output_root is not None and not _inside(output_root, job.dest.parent):
            why = report.error(f"{job.dest}: the output would be written outside {output_root}; refused")
            tally.add("failed", job.src, job.dest, why)
            continue
        first = claims.get(dest_key, job)
        if first is not job:
            why = report.error(
                f"{job.src}: its output {job.dest} is also the output of {first.src}; "
                "rename one, or upscale them in two runs with different --suffix"
            )
            tally.add("failed", job.src, job.dest, why)
            continue
        if os.path.lexists(job.dest) and not overwrite:
            if skip_existing:
                if _newer(job.src, job.dest):  # an input edited (or replaced) after its output was made
                    stale.append(job.src)
                    tally.add("skipped", job.src, job.dest, "the output exists (--skip-existing); its input is newer")
                else:
                    tally.add("skipped", job.src, job.dest, "the output exists (--skip-existing)")
                continue
            why = report.error(
                f"{job.dest}: already exists; pass --overwrite to replace it or --skip-existing to skip it"
            )
            tally.add("failed", job.src, job.dest, why)
            continue
        keep.append(job)
    if stale:  # kept in silence before: an edited photo's old upscale stayed
        shown = ", ".join(printable(str(p)) for p in stale[:3]) + (
            f" and {len(stale) - 3} more" if len(stale) > 3 else ""
        )
        report.note(
            f"{len(stale)} output{'s' if len(stale) != 1 else ''} kept by --skip-existing though the input is newer "
            f"({shown}); --overwrite makes them again"
        )
    return keep


def output_claims(jobs: list[Job]) -> dict[str, Job]:
    """Each output's (real path's) first job: a later job with the same output collides with it."""
    claims: dict[str, Job] = {}
    for job in jobs:
        claims.setdefault(_output_key(job.dest), job)
    return claims


def _output_key(dest: Path) -> str:
    """The key under which two paths are one file: the real path, case-folded on a file system
    that ignores case (macOS, Windows: Photo.png and photo.png are one file, and the second image
    written replaced the first while the summary counted both; -o photos is the folder Photos)."""
    return _real_key(os.path.realpath(dest))


def _real_key(real: str) -> str:
    """:func:`_output_key` of a path already resolved."""
    return real.casefold() if _case_blind(os.path.dirname(real)) else real


@functools.lru_cache(maxsize=256)
def _case_blind(folder: str) -> bool:
    """Whether the file system holding ``folder`` (or its nearest existing ancestor) ignores case:
    a name in it with its case swapped finds that entry (:func:`_swapped_case_finds`). Probed on
    an entry of the folder itself, else on the folder's own name in its parent (not past a mount
    point, where the parent is another file system: an empty memory card's case was told by the
    disk it is mounted on), else on a file made in the folder for it and removed, else by the
    platform (macOS and Windows ignore case by default)."""
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        with os.scandir(folder) as entries:
            name = next((e.name for e in entries if e.name.swapcase() != e.name), None)
    except OSError:
        name = None
    if name is not None and (answer := _swapped_case_finds(folder, name)) is not None:
        return answer
    probe = folder
    while os.path.dirname(probe) != probe:
        parent, name = os.path.split(probe)
        try:
            if os.lstat(parent).st_dev != os.lstat(probe).st_dev:
                break  # a mount point: its name is an entry of the file system below
        except OSError:
            break
        if name.swapcase() != name and (answer := _swapped_case_finds(parent, name)) is not None:
            return answer
        probe = parent
    if (answer := _case_probe(folder)) is not None:
        return answer
    return sys.platform in ("darwin", "win32")


def _swapped_case_finds(parent: str, name: str) -> bool | None:
    """Whether ``name`` in ``parent``, its case swapped, finds the same entry; None when ``name`` is
    not there. Told by existence, not by inode: FUSE's exFAT gives Photo.PNG and photo.png
    different inode numbers, so an output photo.png replaced its input Photo.PNG. A name found that
    the folder's listing holds too is another entry (a link SHOTS beside shots), not this one."""
    try:
        first = os.lstat(os.path.join(parent, name))
    except OSError:
        return None
    swapped = name.swapcase()
    try:
        other = os.lstat(os.path.join(parent, swapped))
    except OSError:
        return False  # no such name: the case counts
    if (first.st_dev, first.st_ino) == (other.st_dev, other.st_ino) and first.st_ino != 0:
        return True  # APFS, NTFS, ext4's casefold folders: one entry, whatever the case
    try:
        return swapped not in os.listdir(parent)
    except OSError:
        return None


def _case_probe(folder: str) -> bool | None:
    """:func:`_case_blind` told by a file made in ``folder`` for the purpose and removed at once (an
    empty folder at a mount point: nothing else there to look at); None where none can be made."""
    import secrets

    name = f".srgan-case-{secrets.token_hex(4)}.tmp"
    path = os.path.join(folder, name)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return None
    try:
        return _swapped_case_finds(folder, name)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _dest_problem(dest: Path, probed: dict[tuple[str, str], str | None] | None = None) -> str | None:
    """Why no image can be written at ``dest``, known before any work: a folder is there, or the
    file system refuses the name (too long, a folder that cannot be searched, a character that
    exFAT refuses: see :func:`fsutil.name_refusal`); else None."""
    from ..fsutil import name_refusal
    from ..images import _os_reason

    try:
        st = os.stat(dest)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):  # nothing there (yet), or a link loop
            refusal = name_refusal(dest.parent, dest.name, probed)
            return None if refusal is None else f"cannot write the image: {refusal}; choose another name or disk"
        return f"cannot write the image: {_os_reason(exc)}"
    if stat.S_ISDIR(st.st_mode):  # never "exists, skipped": no image would be there
        return "is a folder, where the output image would go; move it or choose another -o"
    kind = _special_kind(dest)
    if kind is not None:  # --overwrite replaced it with a file: a reader of the FIFO waited for ever
        return (
            f"is {kind}, not a file, and is never replaced: move it or choose another -o "
            f"(to send one image to it: -o - > {dest})"
        )
    return None


def _special_kind(path: Path) -> str | None:
    """'a FIFO', 'a socket' or 'a device' for such a ``path`` (links followed), else None (a file,
    a folder, nothing). Never opened: opening a FIFO waits for a writer."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return None


def _env_world() -> int:
    """WORLD_SIZE (torchrun's process count), 1 without torchrun or where it is no number
    (rank_share reports bad values)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _env_rank() -> int:
    """This process's rank under torchrun (WORLD_SIZE > 1), else 0; rank_share checks the values."""
    try:
        return int(os.environ.get("RANK", "0")) if _env_world() > 1 else 0
    except ValueError:
        return 0


def rank_share(jobs: list[Job]) -> tuple[list[Job], int, int]:
    """Under torchrun (WORLD_SIZE > 1) each rank takes every WORLD_SIZE-th file."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise SrganError("WORLD_SIZE, RANK and LOCAL_RANK must be integers") from None
    if world <= 1:
        return jobs, 0, 0
    if not 0 <= rank < world:
        raise SrganError(f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world})")
    return [job for i, job in enumerate(jobs) if i % world == rank], rank, local


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event | None = None):
    """The next item; with ``stop``, _DONE once stop is set and nothing is queued (a producer
    that sees stop returns without enqueueing _DONE, so waiting on would wait forever)."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop is not None and stop.is_set():
                return _DONE


def run_pipeline(
    jobs: list[Job],
    upscale_one: Callable,
    write_one: Callable,
    *,
    max_pixels: int,
    report: Reporter,
    tally: Tally,
    fail_fast: bool,
    on_image_done: Callable[[], None] = lambda: None,
    refuse_early: Callable[[Job], None] | None = None,
) -> None:
    """Reader thread -> inference here -> writer thread, with bounded queues. ``refuse_early(job)`` raises
    SrganError for an input known to fail from its header alone, before it is decoded."""
    stop = threading.Event()
    read_q: queue.Queue = queue.Queue(QUEUE_SIZE)
    write_q: queue.Queue = queue.Queue(QUEUE_SIZE)
    writer_done = threading.Event()
    reached: set[int] = set()  # the jobs with an outcome; a stopped batch reports the others as not started

    def fail(job: Job, exc: BaseException) -> None:
        reached.add(id(job))
        if isinstance(exc, SrganError):
            message = str(exc)
            if str(job.src) not in message and str(job.dest) not in message:
                message = f"{job.src}: {message}"
        else:
            message = f"{job.src}: {type(exc).__name__}: {exc}"
        tally.add("failed", job.src, job.dest, report.error(message))
        on_image_done()
        if fail_fast:
            tally.stopped = True
            stop.set()

    def reader() -> None:
        for job in jobs:
            if stop.is_set():
                break
            try:
                if refuse_early is not None:
                    refuse_early(job)
                item = (job, _read(job.src, max_pixels), None)
            except Exception as exc:  # reported per file; the batch goes on
                item = (job, None, exc)
            if not _put(read_q, item, stop):
                return
        _put(read_q, _DONE, stop)

    def writer() -> None:
        try:
            write_all()
        finally:
            writer_done.set()

    def write_all() -> None:
        while True:
            item = _get(write_q)
            if item is _DONE:
                return
            job, loaded, result = item
            if stop.is_set():
                continue  # interrupted or failed fast: start no new file
            try:
                write_one(job, loaded, result)
                reached.add(id(job))
                tally.add("written", job.src, job.dest)
                on_image_done()
            except FileExistsError:
                reached.add(id(job))
                tally.add("skipped", job.src, job.dest, "written meanwhile by another process")
                on_image_done()
            except Exception as exc:
                fail(job, exc)
                if getattr(exc, "errno", None) in _DISK_FULL and not stop.is_set():
                    # every image after it was read and upscaled only to fail its write alike: hours of
                    # compute and an error line each for a batch whose disk filled early
                    tally.stopped = "the output's disk is full"
                    report.error(
                        "the output's disk is full: no further image is started; free space, then rerun "
                        "with --skip-existing"
                    )
                    stop.set()

    read_thread = threading.Thread(target=reader, name="srgan-reader", daemon=True)
    write_thread = threading.Thread(target=writer, name="srgan-writer", daemon=True)
    read_thread.start()
    write_thread.start()
    try:
        while not stop.is_set():
            item = _get(read_q, stop)  # the writer may fail fast while this waits on the reader
            if item is _DONE or stop.is_set():
                break
            job, loaded, exc = item
            if exc is not None:
                fail(job, exc)
                continue
            try:
                result = upscale_one(job, loaded)
            except SrganError as err:
                fail(job, err)
                continue
            except Exception as err:  # e.g. out of memory on the CPU: this image fails, the batch goes on
                reason = " ".join(f"{type(err).__name__}: {err}".split())[:200]
                fail(job, SrganError(f"{job.src}: upscaling failed ({reason})"))
                continue
            _put(write_q, (job, loaded, result), stop)
    except BaseException:
        stop.set()  # the writer finishes the file it is writing, then starts no other
        raise
    finally:
        if stop.is_set():
            _force_put(write_q, _DONE)
        else:
            write_q.put(_DONE)
        late = _wait_through_interrupts(writer_done, stop)
        write_thread.join()
        stopped = stop.is_set()
        stop.set()
        read_thread.join(timeout=5)
        if stopped:  # the report lists every file: those the stop came before too (it listed only those reached)
            for job in jobs:
                if id(job) not in reached:
                    tally.add("not_started", job.src, job.dest, "the batch stopped before it")
        if late is not None:
            raise late


def _wait_through_interrupts(done: threading.Event, stop: threading.Event) -> KeyboardInterrupt | None:
    """Wait for the writer even through Ctrl-C / SIGTERM (each one stops the batch): left
    behind, the daemon thread would die mid-file at exit and leave its temporary file. Returns
    the interrupt that came while waiting, for the caller to raise once the writer is done.
    (Not ``Thread.join``: before Python 3.13 an interrupted join marks the thread as ended.)"""
    late = None
    while not done.is_set():
        try:
            done.wait(0.5)
        except KeyboardInterrupt as exc:
            stop.set()
            late = exc
    return late


def _force_put(q: queue.Queue, item) -> None:
    """Make room and enqueue ``item`` (the writer skips queued work once stopped)."""
    while True:
        try:
            q.put_nowait(item)
            return
        except queue.Full:
            with contextlib.suppress(queue.Empty):
                q.get_nowait()


def _progress(report: Reporter, quiet: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(file=DroppingStream(sys.stderr))
    # live only on a real terminal: rich's is_terminal is also true under FORCE_COLOR (even 0) or
    # TTY_COMPATIBLE=1, and a log file got cursor escapes and a redraw per image; rich's own "no"
    # (TTY_COMPATIBLE=0, TTY_INTERACTIVE=0) is kept
    disable = quiet or not (live_terminal(sys.stderr) and console.is_interactive)
    progress = Progress(
        TextColumn("{task.description}", markup=False),  # file names: "[blink]x.png" is a name, not markup
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
        transient=False,
    )
    if not disable:
        report.console = console
    return progress


def _torchrun_device(device: str, local_rank: int) -> str:
    import torch

    if device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return device


def _check_finite(value: float | None) -> float | None:
    """NaN passes click.FloatRange (every comparison with it is false): refuse it here, as a usage error."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value}: not a number")
    return value


def _check_tile(ctx: click.Context | None, value: int | None) -> int | None:
    # click runs callbacks on every Tab of the shell completion too, where what they say is ignored:
    # no check there, so no import (..tiling imports torch: 3 s a Tab with --tile on the line)
    if not value or (ctx is not None and ctx.resilient_parsing):
        return value
    from ..tiling import MIN_TILE

    if value < MIN_TILE:
        # each tile runs with --tile-pad's overlap on every side: 1 px tiles took minutes a pixel
        raise click.BadParameter(f"{value}: use 0 (the whole image) or at least {MIN_TILE} px")
    return value


class UpscaleCommand(Command):
    """Stop signals are held from the start until the body is inside the ``try`` whose
    ``finally`` writes the report (an early Ctrl-C left an earlier run's report saying
    "completed" beside exit 130). OpenMP waits passively (see ``Command.passive_openmp``)."""

    holds_signals = True
    passive_openmp = True


@click.command("upscale", cls=UpscaleCommand)
# readable=False: an unreadable input (a private file among a glob's matches) fails alone, as a missing
# one does, where click's check made it a usage error that upscaled nothing; an -o folder that may be
# written but not listed (a drop box) is one to write into
@click.argument("inputs", nargs=-1, required=True, type=NonEmptyPath(path_type=Path, readable=False))
@click.option(
    "-o",
    "--output",
    required=True,
    type=NonEmptyPath(path_type=Path, readable=False),
    help="Output file (one input image and an image suffix, e.g. out.png) or folder (created if missing; a "
    "trailing / makes it one); "
    "'-' writes the image to standard output (format: --format, else the input's).",
)
@click.option(
    "-m",
    "--model",
    default="srgan_x4",
    show_default=True,
    metavar="MODEL",
    shell_complete=complete_model,
    callback=check_model_names,
    help="Named model (see 'srgan models'), a .safetensors file, or a Hub reference owner/repo[:file][@rev].",
)
@click.option(
    "--blend",
    metavar="MODEL:ALPHA",
    shell_complete=complete_blend,
    callback=lambda ctx, param, value: _check_blend(ctx, value),
    help="Blend a second model of the same architecture into -m: ALPHA=0 is -m, 1 is MODEL (e.g. srresnet_x4:0.3).",
)
@click.option(
    "--ensemble",
    is_flag=True,
    help="Average the outputs of the 8 flips and rotations of each image (8x the time; more PSNR for a "
    "PSNR-oriented model such as srresnet_x4).",
)
@device_option
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="Compute precision; auto is fp16 on GPUs, bf16 on CPUs with native bf16 (AMX, AVX512-BF16) for "
    "SRResNet models, else fp32; 16-bit and float images run in fp32 under auto.",
)
@click.option(
    "--tile",
    type=int,  # not an IntRange: its "[x>=0]" in --help hid that 1 to 7 are refused
    default=None,
    callback=lambda ctx, param, value: _check_tile(ctx, value),
    help="Tile side in input pixels, at least 8; 0 runs the whole image at once. Default: whole small images, tiles "
    "sized to the free GPU memory (CPU: a ~2 GB budget) for large ones. Tiles overlap by --tile-pad, "
    "so the result is the same as untiled.",
)
@click.option(
    "--tile-pad",
    type=click.IntRange(min=0),
    default=None,
    help="Overlap of the tiles in input pixels. Default: the model's receptive-field radius "
    "(exact; smaller values are faster and may show seams).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Tiles of one image run together on the device. Default: 4 on a GPU, 1 on the CPU "
    "(where one larger tile recomputes less overlap than several small ones).",
)
@click.option(
    "--outscale",
    type=click.FloatRange(min=0, min_open=True, max=MAX_OUTSCALE),
    default=None,
    callback=lambda ctx, param, value: _check_finite(value),
    help="Final scale relative to the input (e.g. 2 or 3.5): the model's x4 output is resized "
    "with Lanczos; sizes round to the nearest pixel, a half up. Default: the model's scale.",
)
@click.option(
    "--format",
    "fmt",
    type=FormatChoice(FORMATS, case_sensitive=False),
    default=None,
    help="Output format (jpeg and tif are taken too). Default: the suffix of -o for one file, else the input's "
    "format (GIF, PPM/PGM/PBM, JPEG 2000, TGA and QOI -> png; MPO -> jpg).",
)
@click.option(
    "--quality",
    type=click.IntRange(1, 100),
    default=None,
    help="JPEG/WebP/AVIF quality (default 95; WebP 100 is lossless; AVIF's scale is libavif's, whose 100 is "
    "near-lossless, not lossless).",
)
@click.option(
    "--suffix",
    default=None,
    help="Added to each output file name before its extension, e.g. _x4 (photo.png -> photo_x4.png). Default: none.",
)
@click.option(
    "--recursive/--no-recursive",
    default=False,
    show_default=True,
    help="Also upscale images in sub-folders of folder inputs, mirroring them under -o.",
)
@click.option(
    "--skip-existing", is_flag=True, help="Skip images whose output already exists (resume an interrupted batch)."
)
@click.option("--overwrite", is_flag=True, help="Replace outputs that already exist (inputs are never replaced).")
@click.option(
    "--keep-going/--fail-fast",
    default=True,
    show_default=True,
    help="On a broken image: report it and go on with the others, or stop at the first failure.",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=100_000_000,
    show_default=True,
    help="Refuse input images larger than this many pixels (protects against decompression bombs).",
)
@click.option(
    "--report",
    "report_path",
    type=NonEmptyPath(dir_okay=False, allow_dash=True, path_type=Path),
    metavar="FILE|-",
    help="Also write a JSON report to this file ('-': standard output): each file's input, output, status "
    "(written, skipped, failed, not_started), reason and notes, and the counts; written as the run starts and at "
    "its end, also when interrupted.",
)
@click.option(
    "-q",
    "--quiet",
    is_flag=True,
    help="No progress bar, notes or summary; errors (and the summary, when a file failed) are still printed.",
)
def upscale(
    inputs: tuple[Path, ...],
    output: Path,
    model: str,
    blend: str | None,
    ensemble: bool,
    device: str,
    precision: str,
    tile: int | None,
    tile_pad: int | None,
    batch_size: int | None,
    outscale: float | None,
    fmt: str | None,
    quality: int | None,
    suffix: str | None,
    recursive: bool,
    skip_existing: bool,
    overwrite: bool,
    keep_going: bool,
    max_pixels: int,
    report_path: Path | None,
    quiet: bool,
) -> None:
    """Upscale image files and folders (x4 by default).

    \b
      srgan upscale photo.jpg -o photo_x4.png
      srgan upscale photos/ -o big/ --recursive --skip-existing
      srgan upscale a.png b.png -o out/ --suffix _x4 --format webp
      srgan upscale - -o - < small.png > big.png

    Exit status: 0 if every image was written (or skipped), 1 if any failed or the inputs hold
    no image, 2 for a usage error, 130 if interrupted. Outputs are written atomically and never
    replace an input.
    """
    if skip_existing and overwrite:
        raise click.UsageError("--skip-existing and --overwrite exclude each other; pick one")
    if suffix is not None and (os.sep in suffix or "/" in suffix or suffix in (".", "..")):
        raise click.BadParameter("must not be '.' or '..' or contain a path separator", param_hint="'--suffix'")
    if suffix is not None and any(ord(c) < 32 or ord(c) == 127 for c in suffix):
        raise click.BadParameter("must not contain control characters (a newline, a tab)", param_hint="'--suffix'")
    if suffix is not None and sys.platform == "win32" and any(c in '<>:"|?*' for c in suffix):
        # Windows names cannot hold them; ':' even wrote each image into an NTFS stream of another file
        raise click.BadParameter('must not contain < > : " | ? * on Windows', param_hint="'--suffix'")
    fmt = fmt.lower() if fmt else None
    # ./- names a file called '-': only '-' itself is standard input or output
    ctx = click.get_current_context(silent=True)
    output_word = typed_value(ctx, "output")
    output = as_typed(output, output_word)
    # `-o out.avif/`: a folder, as the shell means it (click's Path drops the slash: it wrote the file
    # out.avif, and with --overwrite `-o out.png/` replaced a file)
    output_folder = isinstance(output_word, str) and output_word.endswith(_FOLDER_ENDINGS)
    if output_folder and os.path.exists(output) and not os.path.isdir(output):
        raise click.BadParameter(printable(f"{output_word} is a file, not a folder"), param_hint="'-o'")
    words = typed_value(ctx, "inputs")
    if isinstance(words, (tuple, list)) and len(words) == len(inputs):
        inputs = tuple(as_typed(path, word) for path, word in zip(inputs, words, strict=True))
    report_path = as_typed(report_path, typed_value(ctx, "report_path"))
    report_path = _check_report_path(report_path, output, typed_value(ctx, "report_path"), output_folder)
    if report_path is not None and str(report_path) == "-":
        check_stdout_open("--report -")  # closed: click.echo would drop the report without a word

    report = Reporter(quiet)
    tally = Tally()
    report_written = True
    # SIGTERM/SIGHUP stop it as Ctrl-C does: the command group's sigterm_as_interrupt
    with contextlib.ExitStack() as stage:  # holds the temporary folder of stdin/stdout, if one is made
        ended, to_stdout = "interrupted", False
        try:
            # in the try: a run that stops here (stdin empty or not an image, Ctrl-C while it is read, or
            # while the program started: held till here, UpscaleCommand) replaces an earlier run's report
            # too, which would say "completed"
            with interruptible():
                inputs, output, to_stdout = _stage_stdio(
                    inputs, output, fmt, stage, report, output_folder, max_pixels=max_pixels
                )
                _run(
                    inputs, output, model, blend, ensemble, device, precision, tile, tile_pad, batch_size, outscale,
                    fmt, quality, suffix, recursive, skip_existing, overwrite, keep_going, max_pixels, quiet, report,
                    tally, report_path, output_folder,
                )  # fmt: skip
                if to_stdout and tally.written:  # before the report, which says whether it got through
                    try:
                        _copy_to_stdout(output)
                    except SrganError as exc:
                        tally.unwrite(output, report.error(str(exc)))
                    except KeyboardInterrupt:  # the reader got part of it: the report said "written"
                        tally.unwrite(output, "-: interrupted before the image was all written to standard output")
                        raise
            if isinstance(tally.stopped, str):
                ended = f"stopped: {tally.stopped}"
            else:
                ended = "stopped: --fail-fast after a failure" if tally.stopped else "completed"
        except KeyboardInterrupt:
            tally.stop_pending()  # counted in the summary too
            if not quiet:
                with contextlib.suppress(OSError):  # stderr gone (SIGHUP: the terminal closed)
                    click.echo(_summary(tally) + " (interrupted)", err=True)
            raise
        except SrganError as exc:
            ended = f"stopped: {printable(str(exc).strip())}"
            raise
        except click.UsageError:
            report_path = None  # nothing ran, and the report's path may be what is wrong
            raise
        finally:
            tally.stop_pending()
            if report_path is not None:  # part of the job: a script must see it missing in the exit status
                report_written = _write_report(report_path, tally, ended, report)
    if tally.unread:  # images of input folders that were not upscaled: said at the end, where it is seen
        report.note(_passed_over(Tally(unread=tally.unread)))
    if tally.unentered:
        report.note(_not_entered(tally.unentered))
    with contextlib.suppress(OSError):  # stderr gone: the exit status still tells
        if not quiet or tally.failed:
            click.echo(_summary(tally), err=True)
        if tally.failed:  # the error lines may have scrolled away above a long batch's progress
            click.echo(_failed_list(tally, report), err=True)
    if _env_world() > 1:
        # the wait for the other ranks can be long: Ctrl-C stops it (one held since the report was
        # being written is dropped: this rank's outcome is decided and reported)
        with interruptible(raise_pending=False):
            _wait_for_other_ranks()
    if tally.failed or not report_written:
        sys.exit(1)


def _wait_for_other_ranks() -> None:
    """Under torchrun, return once every rank is done with its share. torchrun stops the other
    ranks as soon as one exits non-zero: a rank with a failed file in its share (exit 1) cut the
    others' shares short, and --keep-going did not keep going. Without a torchrun rendezvous
    (MASTER_ADDR), or if it cannot be joined, each rank ends on its own as before.

    The rendezvous and the barrier block in C++, where Ctrl-C and SIGTERM reach no Python handler: a
    rank done early ignored them until torchrun killed it, 30 s on. They run on a thread, and this one
    waits for it a tenth of a second at a time, so a stop signal ends the wait (the process then ends
    without the interpreter's teardown, which the blocked thread would hold up)."""
    if _env_world() <= 1 or not os.environ.get("MASTER_ADDR"):
        return
    try:
        import torch.distributed as dist

        from ..stopping import process_group_started

        if not dist.is_available() or dist.is_initialized():
            return
    except Exception:  # noqa: BLE001 - no torch.distributed: end as a rank on its own
        return
    process_group_started()  # from here the process ends with os._exit (cli.run)
    done = threading.Event()

    def meet() -> None:
        try:
            from datetime import timedelta

            # gloo, on every device: a barrier needs no GPU; the timeout allows for the slowest share
            dist.init_process_group("gloo", timeout=timedelta(days=7))
            dist.barrier()
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - no rendezvous to be had: end as a rank on its own
            pass
        finally:
            done.set()

    threading.Thread(target=meet, name="srgan-ranks", daemon=True).start()
    while not done.wait(0.1):
        pass


def _check_blend(ctx: click.Context | None, value: str | None) -> str | None:
    """--blend's syntax is a usage error (exit 2), found before any image is read. Not checked
    while completing (``resilient_parsing``, as :func:`_check_tile`): ..interpolate imports torch."""
    if value is not None and not (ctx is not None and ctx.resilient_parsing):
        from ..interpolate import parse_blend

        try:
            parse_blend(value)
        except SrganError as exc:
            raise click.BadParameter(str(exc).split(": ", 1)[-1]) from None
    return value


def _sniff_suffix(head: bytes) -> str | None:
    """The file suffix of an image format from its first bytes; None if not one we read."""
    from ..images import _is_avif

    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return ".gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    if _is_avif(head):
        return ".avif"  # an ftyp box naming AVIF among its brands
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return ".tif"
    if head.startswith(b"BM"):
        return ".bmp"
    if len(head) >= 3 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3] in b" \t\r\n#":
        return ".pnm"  # PBM, PGM or PPM, plain or raw
    if head.startswith(b"\x00\x00\x00\x0cjP  "):
        return ".jp2"  # JPEG 2000's signature box
    if head.startswith(b"\xff\x4f\xff\x51"):
        return ".j2k"  # a bare JPEG 2000 codestream: SOC, then SIZ
    if head.startswith(b"qoif"):
        return ".qoi"
    return None  # TGA has no signature to know it by


def _sniff_unread(head: bytes) -> str | None:
    """The name of a common image format srgan does not read, from its first bytes (a phone's HEIC piped
    in was "not a PNG, JPEG, ..." with no word on what it was or what to do); None if none of them."""
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
        return "HEIC"  # an ISO media file of HEIF brands (an AVIF one was told above)
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "JPEG XL"
    if head.startswith(b"8BPS"):
        return "PSD"
    if head.startswith(b"%PDF-"):
        return "PDF"
    if head.startswith(b"\x76\x2f\x31\x01"):
        return "OpenEXR"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"<svg", b"<?xml")) and b"<svg" in head:
        return "SVG"
    return None


def _stage_stdio(
    inputs: tuple[Path, ...],
    output: Path,
    fmt: str | None,
    stack: contextlib.ExitStack,
    report: Reporter,
    output_folder: bool = False,
    *,
    max_pixels: int | None = None,
) -> tuple[tuple[Path, ...], Path, bool]:
    """Standard input ('-' as the input) and output ('-o -') go through files in a temporary
    folder, which ``stack`` removes at its end.

    The image read from stdin is saved there under a suffix that matches its content; with
    '-o -' the output is written there and copied to stdout once complete, so a failure never
    sends half an image down a pipe. Messages show '-' for both. Returns the inputs and output
    to use, and whether the output goes to stdout. The folder is made only for them: a system
    without a writable temporary folder upscaled no file at all (a traceback, file to file too).
    """
    from ..images import is_image_path, output_refusal

    from_stdin = any(str(p) == "-" for p in inputs)
    to_stdout = str(output) == "-"
    if from_stdin and _env_world() > 1:  # every rank read it, and one said "standard input is empty"
        raise click.BadParameter(
            "'-' (standard input) under torchrun: every rank would read it; upscale one piped image in one process",
            param_hint="'INPUTS...'",
        )
    if from_stdin and len(inputs) != 1:
        raise click.BadParameter("'-' (standard input) must be the only input", param_hint="'INPUTS...'")
    if to_stdout and (len(inputs) != 1 or (not from_stdin and os.path.isdir(inputs[0]))):
        raise click.BadParameter("'-o -' (standard output) takes exactly one input image", param_hint="'-o'")
    folder = output_folder or os.path.isdir(output)
    if from_stdin and not to_stdout and not folder and (refusal := output_refusal(output)):
        # out.heic: a file name, of a format srgan does not write
        raise click.BadParameter(printable(refusal), param_hint="'-o'")
    if from_stdin and not to_stdout and (folder or not is_image_path(output)):
        raise click.BadParameter("with '-' (standard input), -o must be an image file name or '-'", param_hint="'-o'")
    if to_stdout:
        check_stdout_open("-o -")
    if to_stdout and sys.stdout.isatty():
        raise click.UsageError("refusing to write image data to a terminal; redirect standard output or give -o FILE")
    if from_stdin:
        if sys.stdin is None or sys.stdin.closed:
            raise SrganError("-: standard input is closed")
        if sys.stdin.isatty():
            raise click.UsageError("standard input is a terminal; pipe an image in: srgan upscale - -o x.png < in.png")
    if not (from_stdin or to_stdout):
        return inputs, output, False
    stage = _temporary_folder(stack)
    if from_stdin:
        staged_in = _stage_stdin(stage, max_pixels)
        report.aliases[str(staged_in)] = "-"
        inputs = (staged_in,)
    if to_stdout:
        # the suffix a folder output would get: --format, else the input's format (GIF -> PNG);
        # an input without an image suffix is refused there, with a one-line error
        output = stage / f"stdout{Path(_output_name(inputs[0], fmt, '')).suffix}"
        report.aliases[str(output)] = "-"
    return inputs, output, to_stdout


_STDIN_HEAD = 512  # the bytes _sniff_suffix and _sniff_unread look at
_STDIN_CHUNK = 1 << 20
# A stream longer than any image --max-pixels lets through is refused as it is read (a file has no such
# limit). Generous, so that no image is refused: 64 bytes a pixel is eight 64-bit samples (an RGBA TIFF of
# 64-bit floats takes 32), and 1 GiB more holds metadata, previews and the further frames of an animation.
_STDIN_BYTES_PER_PIXEL = 64
_STDIN_SPARE = 1 << 30


def _stage_stdin(stage: Path, max_pixels: int | None) -> Path:
    """Standard input, kept in ``stage`` under a suffix that matches its content. Its first bytes are
    looked at before the rest is read: a stream that is no image (`< /dev/zero`) is refused at once,
    where reading it whole first ran out of memory (a MemoryError traceback, or the OOM killer: exit 137
    and no word). The rest goes into the file a chunk at a time, up to :data:`_STDIN_BYTES_PER_PIXEL`
    bytes a pixel of ``max_pixels`` and :data:`_STDIN_SPARE` more (None: no limit)."""
    stream = sys.stdin.buffer
    head = _read_stdin(stream, _STDIN_HEAD)
    while head and len(head) < _STDIN_HEAD and (more := _read_stdin(stream, _STDIN_HEAD - len(head))):
        head += more  # a pipe may give less than asked before its end
    if not head:
        raise SrganError("-: standard input is empty")
    in_suffix = _sniff_suffix(head[:64])
    if in_suffix is None and (other := _sniff_unread(head)):
        from ..images import _CONVERT_ADVICE

        raise SrganError(f"-: standard input is in {other} format, which srgan does not read; {_CONVERT_ADVICE[other]}")
    if in_suffix is None:
        raise SrganError(
            "-: standard input is not a PNG, JPEG, WebP, AVIF, TIFF, BMP, GIF, PPM/PGM/PBM, JPEG 2000 or QOI image"
        )
    limit = None if max_pixels is None else max_pixels * _STDIN_BYTES_PER_PIXEL + _STDIN_SPARE
    staged_in = stage / f"stdin{in_suffix}"
    try:
        with open(staged_in, "wb") as fh:
            fh.write(head)
            size = len(head)
            while chunk := _read_stdin(stream, _STDIN_CHUNK):
                size += len(chunk)
                if limit is not None and size > limit:
                    past = f"{limit / 2**30:.1f} GiB" if limit >= 2**30 else f"{limit / 2**20:.1f} MiB"
                    raise SrganError(
                        f"-: standard input runs past {past}, more than an image of --max-pixels "
                        f"{max_pixels} takes; if it is an image, raise --max-pixels or save it to a file and give "
                        "the file's name"
                    )
                fh.write(chunk)
    except OSError as exc:  # a full temporary folder (a small tmpfs /tmp)
        from ..fsutil import write_reason

        advice = "; free space there or set TMPDIR to a folder with room" if exc.errno in _DISK_FULL else ""
        raise SrganError(
            f"-: cannot keep standard input in the temporary folder {stage.parent} ({write_reason(exc)}){advice}"
        ) from None
    return staged_in


def _read_stdin(stream, size: int) -> bytes:
    """Up to ``size`` bytes of standard input; a read that fails (an I/O error, no memory) is one line."""
    try:
        return stream.read(size)
    except (OSError, MemoryError) as exc:
        why = exc.strerror or first_line(exc) if isinstance(exc, OSError) else "out of memory"
        raise SrganError(f"-: cannot read standard input ({why})") from None


# a staging folder this old was left by a run killed outright (SIGKILL, a power cut): it holds a
# whole image, the input's or the output's; no upscale from standard input runs this long
_STALE_STAGE_SECONDS = 24 * 3600


def _sweep_stale_stages() -> None:
    """Remove this user's ``srgan-stdio-*`` folders older than a day from the temporary folder:
    a SIGKILL leaves one (the image read from standard input, in full) where ``stack`` never ran."""
    import shutil
    import time

    try:
        entries = list(os.scandir(tempfile.gettempdir()))
    except OSError:
        return
    limit = time.time() - _STALE_STAGE_SECONDS
    me = os.getuid() if hasattr(os, "getuid") else None
    for entry in entries:
        if not entry.name.startswith("srgan-stdio-"):
            continue
        with contextlib.suppress(OSError):
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode) and st.st_mtime < limit and (me is None or st.st_uid == me):
                shutil.rmtree(entry.path, ignore_errors=True)


def _temporary_folder(stack: contextlib.ExitStack) -> Path:
    """A new temporary folder, removed when ``stack`` ends; a one-line error where none can be made."""
    _sweep_stale_stages()
    try:
        return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="srgan-stdio-")))
    except OSError as exc:
        from ..fsutil import temporary_folder_reason

        raise SrganError(
            f"cannot make a temporary folder for standard input and output ({temporary_folder_reason(exc)}); "
            "set TMPDIR to a folder you can write to"
        ) from None


def _copy_to_stdout(path: Path) -> None:
    from ..fsutil import stdout_problem, write_stdout

    with open(path, "rb") as fh:
        try:
            while chunk := fh.read(1 << 20):
                write_stdout(chunk)
        except OSError as exc:  # the reader left, a full disk (> /dev/full), an I/O error
            raise SrganError(f"-: {stdout_problem(exc)} before the image was written") from None


def _check_report_path(
    path: Path | None, output: Path, typed: object = None, output_folder: bool = False
) -> Path | None:
    """The --report file (``typed``: the word as typed, before click made a Path of it), refused
    before any image is upscaled where it cannot be written or is not an earlier report.
    ``output_folder``: -o was typed as a folder (``big.png/``), as plan_jobs takes it."""
    if path is None:
        return None
    torchrun = _env_world() > 1
    if str(path) == "-":
        if str(output) == "-":
            raise click.BadParameter("'-o -' already writes to standard output", param_hint="'--report'")
        if torchrun:  # the ranks' documents would run together on stdout
            raise click.BadParameter(
                "under torchrun each rank writes its own report: give a file name (it becomes NAME.rankN.json)",
                param_hint="'--report'",
            )
        return path
    from ..fsutil import result_file_problem
    from ..images import is_image_path

    word = typed if isinstance(typed, str) else str(path)
    # -o's folder, made by the run: found only after the images (an image name is refused below)
    if (output_folder or not is_image_path(output)) and os.path.abspath(path) == os.path.abspath(output):
        raise click.BadParameter(f"{word} is -o's output folder; give the report a file name", param_hint="'--report'")
    if torchrun:  # under torchrun each rank reports its own share
        if _env_rank() == 0:
            _remove_reports_of_absent_ranks(path)
        path = path.with_name(f"{path.stem}.rank{os.environ.get('RANK', '0')}{path.suffix}")
    # a missing folder is made when the report is written, as -o makes the output's folders (`-o big/
    # --report big/report.json` on a first run); one that cannot be is refused now, not after the images
    problem = result_file_problem(word, path, _is_report, "an srgan report", "--report")
    if problem is not None:
        raise click.BadParameter(problem, param_hint="'--report'")
    return path


def _remove_reports_of_absent_ranks(path: Path) -> None:
    """Remove the srgan reports NAME.rankK.json of ranks K this torchrun run does not have: after a
    run of more ranks, a script globbing NAME.rank*.json counted their files twice."""
    world = _env_world()
    pattern = re.compile(re.escape(path.stem) + r"\.rank([0-9]+)" + re.escape(path.suffix))
    with contextlib.suppress(OSError):
        for entry in os.scandir(path.parent if str(path.parent) else "."):
            found = pattern.fullmatch(entry.name)
            if found and int(found[1]) >= world and entry.is_file() and _is_report(Path(entry.path)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _is_report(path: Path) -> bool:
    from ..fsutil import read_json

    doc = read_json(path)
    return isinstance(doc, dict) and doc.get("schema_version") == 1 and isinstance(doc.get("files"), list)


def _write_report(path: Path, tally: Tally, ended: str, report: Reporter, quiet: bool = False) -> bool:
    """The --report JSON (schema_version 1): counts, how the run ended, one record per file.
    False (with the error printed, unless ``quiet``) when it cannot be written. The jobs still
    pending (a report written as the run starts, ``ended`` "running") are listed as not started."""
    import json

    from .. import __version__
    from ..fsutil import atomic_path, write_reason

    with tally.lock:
        pending = [
            {
                "input": str(job.src),
                "output": str(job.dest),
                "status": "not_started",
                "reason": "not started yet",
                "notes": [],
            }
            for job in tally.pending or []
        ]
        files = [*tally.files, *pending]
        doc = {
            "schema_version": 1,
            "ended": ended,  # "running" (the run has not ended), "completed", "interrupted" or "stopped: WHY"
            "written": tally.written,
            "skipped": tally.skipped,
            "failed": tally.failed,
            "not_started": tally.not_started + len(pending),  # the batch stopped (or is yet to come) before them
            "srgan_version": __version__,
            "model": tally.model,  # None when the run ended before the model was loaded
            "started": tally.started,  # when this run began (UTC): an earlier run's report is told apart
            # under torchrun: this rank and how many there were (each writes its share's report)
            "rank": _env_rank() if _env_world() > 1 else None,
            "world_size": _env_world(),
            # every record's paths as the messages show them (stdin/stdout as '-'), in one place
            "files": [
                {
                    **f,
                    "input": report.shown(f["input"]),
                    "output": report.shown(f["output"]),
                    "notes": [report.aliased(n) for n in f["notes"]],
                }
                for f in files
            ],
        }
    text = json.dumps(doc, indent=2) + "\n"
    if str(path) == "-":
        try:
            check_stdout_open("--report -")
        except SrganError as exc:
            report.error(f"cannot write the report: {exc}")
            return False
        from ..fsutil import stdout_problem, write_stdout

        try:
            write_stdout(text.encode("utf-8"))
        except OSError as exc:
            report.error(f"cannot write the report: {stdout_problem(exc)} before it was all written")
            return False
        return True
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, replaces=_is_report, on_note=None if quiet else report.note) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except FileExistsError:  # checked at the start; another program wrote the name during the run
        if not quiet:
            report.error(f"{path}: cannot write the report: a file that is not an srgan report was put there meanwhile")
        return False
    except OSError as exc:
        if not quiet:
            report.error(f"{path}: cannot write the report ({write_reason(exc)})")
        return False
    return True


def _failed_list(tally: Tally, report: Reporter, most: int = 10) -> str:
    """``failed: a.png, b.png (and 3 more)``: the inputs that failed, in order; a name with a space or
    another character beyond a shell's plain words (a quote, a non-ASCII letter) is quoted as the
    shell takes it (``'a, b.png'``), so the list is not ambiguous."""
    with tally.lock:
        names = [report.shown(f["input"] or f["output"] or "?") for f in tally.files if f["status"] == "failed"]
    more = f" (and {len(names) - most} more)" if len(names) > most else ""
    return "failed: " + ", ".join(_shell_word(name) for name in names[:most]) + more


# Characters a shell word cannot hold as they are: controls (C0, DEL, C1) and the lone surrogates
# that stand for the bytes of a name that is not valid UTF-8.
_UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\udc80-\udcff]")
_ANSI_C = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", "'": "\\'"}


def _shell_word(name: str) -> str:
    """``name`` as one word that a shell reads back as that name: shlex.quote's (``a.png``,
    ``'a b.png'``), and for a name with a control character bash's ANSI-C quoting as its
    ``printf %q`` writes it (``$'c\\nd.png'``, ``\\033``; bash, zsh and ksh take it), where
    shlex.quote's ``'c\\nd.png'`` (after printable) was a backslash and an n to a shell. A byte of a
    name that is not UTF-8 is written as that byte."""
    import shlex

    if not _UNSHOWABLE.search(name):
        return shlex.quote(name)
    out = []
    for ch in name:
        if ch in _ANSI_C:
            out.append(_ANSI_C[ch])
        elif _UNSHOWABLE.match(ch):
            out.extend(f"\\{byte:03o}" for byte in ch.encode("utf-8", "surrogateescape"))
        else:
            out.append(ch)
    return "$'" + "".join(out) + "'"


def _note_quality_unused(jobs: list[Job], report: Reporter) -> None:
    """One note when --quality is given and some outputs do not take it (it changed no byte of them)."""
    from ..images import format_for_path

    formats = set()
    for job in jobs:
        with contextlib.suppress(SrganError):
            formats.add(format_for_path(job.dest))
    lossless = [f for f in ("PNG", "TIFF", "BMP") if f in formats]
    parts = []
    if lossless:
        names = lossless[0] if len(lossless) == 1 else f"{', '.join(lossless[:-1])} and {lossless[-1]}"
        parts.append(f"{names} output is lossless")
    if "GIF" in formats:
        parts.append("GIF output has no quality setting")
    if parts:
        report.note("--quality applies to JPEG, WebP and AVIF; " + "; ".join(parts))


def _source_mode(src: Path) -> int | None:
    """The mode of an input file (its output gets its read and write bits, as cp gives a copy);
    None for standard input or a file that cannot be looked at now."""
    if str(src) == "-":
        return None
    try:
        return os.stat(src).st_mode
    except OSError:
        return None


def _make_folders(jobs: list[Job], output: Path, report: Reporter, tally: Tally) -> list[Job]:
    """Create the folders the outputs go into (the mirrored sub-folders of --recursive), each with
    the permissions of the input folder it mirrors, as cp -r makes them (a private 0700 folder
    stays private; the owner may always write into it); the jobs whose folder cannot be made
    fail, each on its own, and the others go on."""
    mirrors: dict[Path, Path] = {}  # a folder to make below -o, and the input folder it mirrors
    for job in jobs:
        made, source = job.dest.parent, job.src.parent
        while made != output and made.parent != made and made not in mirrors and _inside(output, made):
            mirrors[made] = source
            made, source = made.parent, source.parent
    failed: dict[Path, str] = {}
    for parent in sorted({j.dest.parent for j in jobs}):
        try:
            _make_folder(parent, mirrors)
        except OSError as exc:
            failed[parent] = _folder_problem(parent, exc)
    keep = []
    for job in jobs:
        if job.dest.parent in failed:
            tally.add("failed", job.src, job.dest, report.error(failed[job.dest.parent]))
        else:
            keep.append(job)
    return keep


def _make_folder(folder: Path, mirrors: dict[Path, Path]) -> None:
    """Make ``folder`` and the folders above it that are missing; those in ``mirrors`` get their
    input folder's read, write and search bits (and the owner's), less the umask."""
    if folder.is_dir():
        return
    if folder.parent != folder:
        _make_folder(folder.parent, mirrors)
    mode = 0o777
    if folder in mirrors:
        with contextlib.suppress(OSError):
            mode = (stat.S_IMODE(os.stat(mirrors[folder]).st_mode) & 0o777) | stat.S_IRWXU
    try:
        os.mkdir(folder, mode)
    except FileExistsError:
        if not folder.is_dir():
            raise


def _check_output_folder(folder: Path) -> None:
    """Refuse, before the model loads, an output folder that is there but cannot be written (a
    read-only mount, another user's folder): every image was upscaled before its write failed.
    A folder still to be made is left to its mkdir. access() answers as a write would, for root
    too (modes do not stop root; a read-only mount does)."""
    from ..images import _os_reason

    if not os.path.isdir(folder) or os.access(folder, os.W_OK | os.X_OK):
        return
    try:
        read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs (Windows)
        read_only = False
    reason = _os_reason(OSError(errno.EROFS if read_only else errno.EACCES, ""))
    raise SrganError(f"{folder}: cannot write into the output folder: {reason}")


def _folder_problem(folder: Path, exc: OSError) -> str:
    """The error line for an output folder that cannot be made: names the file that stands where
    a folder must go (``out/sub``, not ``out``), else the folder and the system's reason."""
    from ..fsutil import file_in_the_way, mkdir_reason

    blocked = file_in_the_way(folder)
    if blocked is not None:
        return f"{blocked}: a file, where the output folder would go; move it or choose another -o"
    return f"{folder}: cannot create the output folder ({mkdir_reason(folder, exc)})"


class _Silent(Reporter):
    """A Reporter that formats its lines but prints none (another rank prints them)."""

    printing = False


def _not_images(tally: Tally) -> int:
    """How many inputs were skipped as files that are not images, or images srgan does not read."""
    with tally.lock:
        others = sum(1 for f in tally.files if f["status"] == "skipped" and f["reason"] == NOT_AN_IMAGE)
        return others + sum(tally.unread.values())


def _passed_over(tally: Tally) -> str:
    """``passed over 3 files srgan does not read (2 .heic, 1 .jxl) and 1 file that is not an image``;
    "" where nothing was."""
    with tally.lock:
        others = sum(1 for f in tally.files if f["status"] == "skipped" and f["reason"] == NOT_AN_IMAGE)
        unread = dict(tally.unread)
    from ..images import unread_hint, unread_kinds

    parts = []
    if unread:
        n = sum(unread.values())
        parts.append(f"{n} file{'s' if n != 1 else ''} srgan does not read ({unread_kinds(unread)})")
    if others:
        parts.append("1 file that is not an image" if others == 1 else f"{others} files that are not images")

    return "passed over " + " and ".join(parts) + unread_hint(unread) if parts else ""


# No space left, or over the user's quota: the next image's write would fail alike
_DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def _staging_full(dest: Path, code: int) -> SrganError:
    """The error for the output of '-o -', staged in the temporary folder, where that folder is full:
    it blamed "the output's disk" and said to rerun with --skip-existing, which a pipe has no use for.
    Without ``errno``, so the batch is not stopped as for a full output disk (there is no other image)."""
    folder = dest.parent.parent  # the staging folder's: TMPDIR's, or /tmp
    what = "is full" if code == errno.ENOSPC else "is over your disk quota"
    return SrganError(
        f"{dest}: cannot write the image: the temporary folder {folder}, where the image is kept until it goes "
        f"to standard output, {what}; free space there or set TMPDIR to a folder with room"
    )


def _summary(tally: Tally) -> str:
    counts = f"{tally.written} written, {tally.skipped} skipped, {tally.failed} failed"
    return counts + (f", {tally.not_started} not started" if tally.not_started else "")


def _run(
    inputs, output, model_ref, blend, ensemble, device, precision, tile, tile_pad, batch_size, outscale, fmt,
    quality, suffix, recursive, skip_existing, overwrite, keep_going, max_pixels, quiet, report, tally,
    report_path=None, output_folder=False,
) -> None:  # fmt: skip
    # What planning finds (files that are no images, broken links) concerns the whole batch: under
    # torchrun rank 0 alone reports and counts it, or every rank's summary and report had it.
    planned = (report, tally) if _env_rank() == 0 else (_Silent(quiet), Tally())
    jobs, single = plan_jobs(
        inputs,
        output,
        fmt=fmt,
        suffix=suffix,
        recursive=recursive,
        report=planned[0],
        tally=planned[1],
        overwrite=overwrite,
        output_folder=output_folder,
    )
    if report_path is not None and str(report_path) != "-":
        target = report_path.resolve()
        if any(j.dest.resolve() == target for j in jobs):
            raise click.BadParameter(
                f"{report_path} is one of the output images; choose another name", param_hint="'--report'"
            )
    others = _not_images(planned[1])
    if not jobs and not planned[1].failed and planned[1].skipped == others:
        from ..images import supported_suffixes

        # only files that are not images is an error too: a cron job over a folder of them exited 0
        # ("0 written, 1 skipped"), where an empty folder was an error
        what = "no images found in the inputs"
        if others:
            what += f" ({_passed_over(planned[1])})"
        if planned[1].unentered:
            raise SrganError(f"{what}; {_not_entered(planned[1].unentered)}")
        raise SrganError(f"{what}; supported: {supported_suffixes()}")
    all_inputs = [j.src for j in jobs] + [p for p in inputs if os.path.isfile(p)]
    # Split before looking at existing outputs: another rank may already be writing its share. Which
    # input an output belongs to is decided over all the shares, so that a clash between two shares
    # is found (it was one input's output overwritten by another's, or skipped as existing).
    claims = output_claims(jobs)
    jobs, rank, local_rank = rank_share(jobs)
    jobs = check_jobs(
        jobs,
        None if single else output,
        all_inputs,
        overwrite=overwrite,
        skip_existing=skip_existing,
        report=report,
        tally=tally,
        claims=claims,
    )
    if not jobs:
        return
    tally.pending = jobs
    if report_path is not None and str(report_path) != "-":
        # "running", the planned files not started: a run killed outright (the OOM killer, SIGKILL) leaves
        # that, where an earlier run's report stayed under the name and read as this run's
        _write_report(report_path, tally, "running", report, quiet=True)
    if not keep_going and tally.failed:  # a missing input or an unlistable folder, found while planning:
        tally.stopped = True  # --fail-fast went on to upscale the rest and "completed"
        return
    _check_output_folder(output.parent if single else output)

    from .. import __version__
    from ..api import load_model, output_size, upscale_loaded
    from ..images import size_problem, stored_bit_depth, stored_size, write_image

    if _env_world() > 1:
        device = _torchrun_device(device, local_rank)
    # before any output folder is made: a model that does not load left an empty -o folder behind
    net = load_model(model_ref, device=device, precision=precision, blend=blend, ensemble=ensemble)
    for note in net.notes:
        report.note(note)
    if not single:
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from ..fsutil import mkdir_reason

            raise SrganError(f"{output}: cannot create the output folder ({mkdir_reason(output, exc)})") from None
    jobs = tally.pending = _make_folders(jobs, output, report, tally)
    if not jobs:
        return
    if quality is not None:
        _note_quality_unused(jobs, report)
    scale_text = exact_number(outscale) if outscale else str(net.scale)
    text = {"Software": f"srgan {__version__}", "srgan:model": net.name, "srgan:scale": scale_text}
    text["srgan:model_sha256"] = net.sha256  # the name alone does not say which weights: files change
    tally.model = {"name": net.name, "sha256": net.sha256, "ensemble": bool(ensemble)}
    if ensemble:
        text["srgan:ensemble"] = "x8 (flips and rotations)"

    progress = _progress(report, quiet)
    with progress:
        images_task = progress.add_task("images", total=len(jobs))
        tiles_task = progress.add_task("tiles", total=1, visible=False)

        def on_tiles(done: int, total: int) -> None:
            progress.update(tiles_task, completed=done, total=total, visible=total > 1)

        def refuse_early(job: Job) -> None:
            # an output too large for its format, told from the input's header: the decode of a 100 MP
            # photo took 14 s and 4 GB before upscale_one refused it. Either way round (an EXIF
            # orientation may turn it), and as gray (the smallest BMP) unless the header's mode is
            # colour: upscale_one checks exactly.
            header = stored_size(job.src)
            if header is None:
                return
            width, height, colour = header
            problems = [
                size_problem(*output_size(w, h, net.scale, outscale), job.dest, job.fmt, gray=not colour)
                for w, h in ((width, height), (height, width))
            ]
            if all(problems):
                raise SrganError(problems[0])

        def noting(job: Job):
            def on_note(message: str) -> None:  # shown (unless -q) and kept for the file's --report record
                tally.note(job.src, job.dest, message)
                report.note(message)

            return on_note

        def upscale_one(job: Job, loaded):
            # escaped as messages are: a name's escape sequences cleared the screen, its newline split the bar
            progress.update(images_task, description=printable(job.src.name)[:40])
            for note in loaded.notes:  # what the reader could not keep (frames, 16 bits read as 8)
                noting(job)(note)
            size = output_size(*loaded.size, net.scale, outscale)
            if problem := size_problem(*size, job.dest, job.fmt, gray=loaded.grayscale):
                raise SrganError(problem)  # found before the upscale, not after it
            return upscale_loaded(
                net,
                loaded,
                outscale=outscale,
                tile=tile,
                tile_pad=tile_pad,
                batch=batch_size,
                progress=on_tiles,
                on_note=noting(job),
                # quantised tile by tile: no float copy of a large output is ever held
                bit_depth=stored_bit_depth(job.dest, loaded.bit_depth, job.fmt),
            )

        def write_one(job: Job, loaded, result) -> None:
            rgb, alpha = result
            if not single and not _inside(output, job.dest.parent):
                # checked when planned; a sub-folder of -o made a link to elsewhere since would take it there
                raise SrganError(
                    f"{job.dest}: the output would be written outside {output} ({job.dest.parent} now leads "
                    "elsewhere: a link put there during the run); refused"
                )
            try:
                write_image(
                    job.dest,
                    rgb,
                    alpha=alpha,
                    bit_depth=loaded.bit_depth,
                    format=job.fmt,
                    quality=quality,
                    icc_profile=loaded.icc_profile,
                    exif=loaded.exif,
                    xmp=loaded.xmp,
                    xmp_extension=loaded.xmp_extension,
                    png_colour=loaded.png_colour,
                    comments=loaded.comments,
                    iptc=loaded.iptc,
                    photoshop=loaded.photoshop,
                    dpi=loaded.dpi,
                    text=text,
                    grayscale=loaded.grayscale,
                    overwrite=overwrite,
                    on_note=noting(job),
                    like=_source_mode(job.src),
                )
            except SrganError as exc:
                # Another process (or a rank) wrote it meanwhile: with --skip-existing, that is a skip.
                if skip_existing and not overwrite and os.path.exists(job.dest):
                    raise FileExistsError(job.dest) from None
                if getattr(exc, "errno", None) in _DISK_FULL and str(job.dest) in report.aliases:
                    raise _staging_full(job.dest, exc.errno) from None
                raise

        tally.pending = None  # run_pipeline reports those it does not reach
        run_pipeline(
            jobs,
            upscale_one,
            write_one,
            max_pixels=max_pixels,
            report=report,
            tally=tally,
            fail_fast=not keep_going,
            on_image_done=lambda: progress.advance(images_task),
            refuse_early=refuse_early,
        )
        progress.update(images_task, description="images")  # the bar that stays names the batch, not its last file
    report.console = None
    if rank:
        report.note(f"rank {rank}: {len(jobs)} images")
