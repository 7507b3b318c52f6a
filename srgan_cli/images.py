"""Read and write images: modes, bit depth, alpha, EXIF/ICC/XMP metadata, atomic writes.

Every command reads and writes pictures through this module. Pixels travel as float32
arrays in [0, 1]: ``rgb`` is (H, W, 3), ``alpha`` is (H, W) or None. Pillow cannot hold
16-bit RGB(A), so 16-bit PNG and TIFF colour images are decoded and encoded here with
numpy and zlib, and 16-bit PPM decoded; PNG is also written here at 8 bits (band by band,
on several threads, as small as Pillow's files); everything else goes through Pillow.

Every failure a user can cause is raised as :class:`SrganError` with a one-line message
that starts with the file's path.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fractions
import functools
import hashlib
import io
import math
import os
import re
import stat
import struct
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import SrganError, utf8_safe
from .fsutil import TOO_LARGE, atomic_path

_SUFFIX_FORMAT = {
    ".png": "PNG",
    ".apng": "PNG",  # animated PNG: its first frame is read, and the output is a still .png (see STILL_SUFFIX)
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".mpo": "MPO",  # multi-picture JPEG (3D cameras, panoramas): read only, its first picture goes to JPEG
    ".webp": "WEBP",
    ".avif": "AVIF",  # where Pillow has AVIF (its wheels from 11.3): see avif_supported
    ".avifs": "AVIF",  # an AVIF image sequence: its first frame is read, and the output is a still .avif
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".gif": "GIF",
    ".ppm": "PPM",
    ".pgm": "PPM",
    ".pbm": "PPM",
    ".pnm": "PPM",
    # read only, as netpbm is: archives' JPEG 2000 (a .jp2 file or a bare codestream), TGA, QOI
    ".jp2": "JPEG2000",
    ".j2k": "JPEG2000",
    ".j2c": "JPEG2000",
    ".jpc": "JPEG2000",
    ".jpf": "JPEG2000",
    ".jpx": "JPEG2000",
    ".tga": "TGA",
    ".qoi": "QOI",
}
# The suffixes every command reads (upscale, bench, train).
IMAGE_SUFFIXES = frozenset(_SUFFIX_FORMAT)
# The suffixes of animated files, read as their first frame, whose one still output picture takes the
# still format's suffix (srgan upscale anim.apng gives anim.png); an -o naming them is refused.
STILL_SUFFIX = {".apng": ".png", ".avifs": ".avif"}
# Input formats whose upscaled output goes to PNG unless told otherwise: GIF holds 256 colours,
# and netpbm (PPM), JPEG 2000, TGA and QOI are not written at all.
PNG_OUTPUT_FORMATS = frozenset({"GIF", "PPM", "JPEG2000", "TGA", "QOI"})
_FORMAT_SUFFIX = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "JPG": ".jpg",
    "WEBP": ".webp",
    "AVIF": ".avif",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "TIF": ".tif",
    "GIF": ".gif",
}
_SIXTEEN_BIT_FORMATS = frozenset({"PNG", "TIFF"})
_ORIENTATION = 0x0112
_X_RESOLUTION, _Y_RESOLUTION = 0x011A, 0x011B
_IMAGE_DESCRIPTION = 0x010E
_SOFTWARE = 0x0131
_XMP_TAG = 700  # TIFF's XMLPacket
_XMP_KEY = b"XML:com.adobe.xmp"  # PNG's iTXt keyword for XMP
_JPEG_XMP_MAX = 65504  # one APP1 segment less its "http://ns.adobe.com/xap/1.0/" header; Pillow refuses more
_TIFF_CLASSIC_SIZE = 1 << 32  # the most bytes classic TIFF's 32-bit offsets address; a larger file is BigTIFF
_JPEG_EXIF_MAX = 65533  # one APP1 segment less its length field ("Exif\0\0" included); Pillow refuses more
_JPEG_IPTC_MAX = 65519  # the Photoshop resources one APP13 segment holds after its "Photoshop 3.0\0" header
_XMP_EXTENSION_HEAD = b"http://ns.adobe.com/xmp/extension/\x00"  # a JPEG's extended XMP segments (APP1)
# xmpNote:HasExtendedXMP, as attribute or element: the pointer from a JPEG's main XMP packet to its extension
# (?<!\s): a match starts where a run of white space does, not at each of its characters: a packet's
# padding (kilobytes of spaces) made the search quadratic, 4 s to read a JPEG with 20 KB of it
_HAS_EXTENDED_XMP = re.compile(
    rb"""(?<!\s)\s+([A-Za-z_][\w.-]*):HasExtendedXMP\s*=\s*(?:"([^"<]*)"|'([^'<]*)')"""
    rb"|<([A-Za-z_][\w.-]*):HasExtendedXMP\s*>([^<]*)</\4:HasExtendedXMP\s*>[ \t]*\n?"
)
_PHOTOSHOP_HEAD = b"Photoshop 3.0\x00"  # what starts each APP13 segment of Photoshop image resources
_MAKER_NOTE = 0x927C  # in the Exif IFD
_PNG_COLOUR_KEYS = ("gamma", "chromaticity", "srgb")  # gAMA, cHRM and sRGB, as Pillow's PNG reader names them
# Pillow's size check (Image.MAX_IMAGE_PIXELS) is skipped only around Image.open (a header parse)
# and the allocation of a large TIFF's memory, and only on the thread doing it, because read_image
# applies its own per-call limit first: see _pillow_unlimited.
_BOMB_CHECK_OFF = threading.local()
_INSTALL_LOCK = threading.Lock()
_OPEN_LOCK = threading.Lock()  # where Pillow lacks the check function: the global is switched off under it
_open_saved: list[int | None] = []  # the program's Image.MAX_IMAGE_PIXELS while it is switched off
# OverflowError: a damaged size Pillow passes on to C (a TIFF's TileWidth 0xE8000010)
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    KeyError,
    EOFError,
    IndexError,
    OverflowError,
    struct.error,
    zlib.error,
)


@dataclass
class LoadedImage:
    """A decoded image: float pixels plus what is needed to write it back faithfully."""

    rgb: np.ndarray  # float32 (H, W, 3) in [0, 1]; grayscale is replicated to 3 channels
    alpha: np.ndarray | None  # float32 (H, W) in [0, 1], or None
    bit_depth: int  # 8 or 16
    grayscale: bool
    mode: str  # the file's PIL mode ("RGB;16" for 16-bit colour, which Pillow cannot hold)
    format: str  # PIL format name, "" when unknown
    icc_profile: bytes | None
    exif: bytes | None  # orientation reset to 1: it has been applied to the pixels
    n_frames: int
    # (x, y) pixels per inch as the file records it (in its EXIF only, for WebP and AVIF), after orientation
    dpi: tuple[float, float] | None = None
    xmp: bytes | None = None  # the XMP packet, tiff:Orientation reset to 1 as in ``exif``
    # a JPEG's extended XMP (the packet's part over 64 KB, in further APP1 segments), whole, as serialized
    xmp_extension: bytes | None = None
    png_colour: dict | None = None  # a PNG's gAMA, cHRM, sRGB: Pillow's info "gamma", "chromaticity", "srgb"
    # IPTC-IIM records (captions, credits, keywords, as news agencies and archives keep them): a JPEG's APP13
    # resource 0x0404, a TIFF's tag 33723, a PNG's "Raw profile type iptc" text
    iptc: bytes | None = None
    # Photoshop's clipping paths (image resources 2000-2997 and the clipping path's name, 2999), as a block of
    # resources: a JPEG's APP13, a TIFF's tag 34377. Their points are fractions of the picture's size, so
    # they fit the upscaled one; the other resources (thumbnail, resolution, slices) describe the old file.
    photoshop: bytes | None = None
    # text beside the pixels: a PNG's text chunks (Title, Author, Copyright, a generator's parameters;
    # not XMP, EXIF or srgan's own keys), a JPEG or GIF comment as "Comment"
    comments: dict[str, str] | None = None
    # what the file held that the pixels do not (16 bits a channel read as 8), each a line starting with the path
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as Pillow reports it."""
        return int(self.rgb.shape[1]), int(self.rgb.shape[0])


# --------------------------------------------------------------------------- paths


def is_image_path(path: str | Path) -> bool:
    """True when the file name ends in one of :data:`IMAGE_SUFFIXES` (any case) that this Pillow reads:
    not ``.avif`` where it lacks AVIF (see ``avif_supported``), which is then an image srgan does not
    read (``unread_reason``), passed over in a folder, as HEIC is, where it failed the whole batch."""
    suffix = Path(path).suffix.lower()
    return suffix in IMAGE_SUFFIXES and (_SUFFIX_FORMAT[suffix] != "AVIF" or avif_supported())


# Common image formats srgan neither reads nor writes that Pillow does not know by their suffix. With
# Pillow's suffixes (PSD, ICO, DDS, EPS, ...) they tell that a name is an image file's: -o out.heic is
# an output file srgan cannot write, where it made a folder of that name.
_OTHER_IMAGE_SUFFIXES = {
    ".heic": "HEIC",
    **dict.fromkeys((".heif", ".hif", ".heics", ".heifs", ".avci"), "HEIF"),
    ".jxl": "JPEG XL",
    **dict.fromkeys((".jxr", ".wdp", ".hdp"), "JPEG XR"),
    ".exr": "OpenEXR",
    ".hdr": "Radiance HDR",
    ".dng": "DNG",
    **dict.fromkeys(
        (".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".orf", ".rw2", ".raf", ".pef", ".srw")
        + (".raw", ".rwl", ".3fr", ".iiq", ".erf", ".mrw", ".x3f", ".kdc", ".dcr"),
        "camera raw",
    ),
    ".svg": "SVG",
    ".pdf": "PDF",
    **dict.fromkeys((".psd", ".psb"), "PSD"),
    ".xcf": "GIMP XCF",
    ".kra": "Krita",
    ".pfm": "PFM",  # Pillow's PPM handler reads it, but it is floating point (HDR), not netpbm's integers
}
# Pillow's handlers of formats that hold no picture to upscale: its stubs for the data formats HDF5, GRIB
# and BUFR, and MPEG video (.mpg, .mpeg): a folder's video is no image srgan "does not read", and one among
# `srgan upscale dir/*` failed the batch.
_NOT_PICTURES = frozenset({"HDF5", "GRIB", "BUFR", "MPEG"})
# Suffixes Pillow gives an image format that more often name something else: .vst (TGA's old Truevision
# name) is a VST audio plug-in's
_NOT_IMAGE_SUFFIXES = frozenset({".vst"})
_FORMAT_TITLES = {"JPEG2000": "JPEG 2000", "WEBP": "WebP"}


def _pillow_format(suffix: str) -> str | None:
    """The format Pillow knows a suffix by, where it names a picture (not .h5, .mpg, .vst); else None."""
    if not suffix or suffix in _NOT_IMAGE_SUFFIXES:
        return None
    fmt = Image.registered_extensions().get(suffix)
    return None if fmt in _NOT_PICTURES else fmt


def image_format_named(path: str | Path) -> str | None:
    """The image format that a file name's suffix names, as messages say it ("HEIC", "JPEG 2000", "PSD"):
    one srgan reads, a common one it does not (HEIC, JPEG XL, camera raw, ...) or one Pillow knows by
    that suffix (also under another name than srgan reads it by: TGA for .vda); None where the suffix
    names no image format (video, data formats)."""
    suffix = Path(path).suffix.lower()
    fmt = _SUFFIX_FORMAT.get(suffix) or _OTHER_IMAGE_SUFFIXES.get(suffix) or _pillow_format(suffix)
    return None if fmt is None else _FORMAT_TITLES.get(fmt, fmt)


# What to do with an image of a format srgan does not read, by image_format_named's name
_CONVERT_ADVICE = {
    "HEIC": "convert it to JPEG or PNG first (heif-convert, or Pillow with pillow-heif)",
    "HEIF": "convert it to JPEG or PNG first (heif-convert, or Pillow with pillow-heif)",
    "JPEG XL": "convert it to PNG first (djxl)",
    "OpenEXR": "export it as 16-bit TIFF or PNG first",
    "Radiance HDR": "export it as 16-bit TIFF or PNG first",
    "JPEG XR": "convert it to 16-bit TIFF or PNG first (JxrDecApp, or an image editor)",
    "GIMP XCF": "export it as PNG or TIFF first",
    "Krita": "export it as PNG or TIFF first",
    "DNG": "develop it to 16-bit TIFF first (a raw developer, or dcraw -6 -T)",
    "camera raw": "develop it to 16-bit TIFF first (a raw developer, or dcraw -6 -T)",
    "PSD": "export it as PNG or TIFF first",
    "SVG": "render it to PNG at the size you need instead: a vector image needs no upscaling",
    "PDF": "render its page to PNG first (pdftoppm -png -r 300, say)",
    "PFM": "export it as 16-bit TIFF or PNG first",
}


def unread_reason(path: str | Path) -> str | None:
    """Why srgan does not read a file whose suffix names an image format it does not read, with what
    to do ("srgan does not read HEIC images; convert it ..."); None for a suffix srgan reads or one
    that names no image format."""
    if is_image_path(path):
        return None
    if _SUFFIX_FORMAT.get(Path(path).suffix.lower()) == "AVIF":  # this Pillow lacks AVIF
        return _no_avif_reason("read")
    name = image_format_named(path)
    if name is None:
        return None
    suffix = Path(path).suffix.lower()
    fmt = _pillow_format(suffix)
    if fmt in _SUFFIX_FORMAT.values() and suffix not in _OTHER_IMAGE_SUFFIXES:  # TGA's old name .vda, .icb
        usual = next(known for known, named in _SUFFIX_FORMAT.items() if named == fmt)
        return f"srgan reads {name} images named {usual}, not {suffix}; rename it to {Path(path).stem}{usual}"
    return f"srgan does not read {name} images; {_CONVERT_ADVICE.get(name, 'convert it to PNG first')}"


def unread_kinds(counts: dict[str, int]) -> str:
    """Files srgan does not read, counted by suffix, most first: ``2 .heic, 1 .jxl`` (upscale's, bench's
    and train's notes)."""
    return ", ".join(f"{n} {suffix}" for suffix, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def unread_hint(suffixes: Iterable[str]) -> str:
    """What to add to a count of files srgan does not read of these suffixes: where .avif is among them
    (this Pillow lacks AVIF, which srgan otherwise reads), that upgrading Pillow reads them; else ""."""
    if any(_SUFFIX_FORMAT.get(suffix.lower()) == "AVIF" for suffix in suffixes) and not avif_supported():
        return "; this Pillow lacks AVIF support: upgrade Pillow (pip install -U pillow) to read AVIF"
    return ""


def output_suffixes() -> str:
    """The output suffixes srgan writes, for messages: ".png, .jpg, .webp, .avif, .tif, .bmp or .gif"."""
    names = [".png", ".jpg", ".webp", *([".avif"] if avif_supported() else []), ".tif", ".bmp", ".gif"]
    return ", ".join(names[:-1]) + " or " + names[-1]


def output_refusal(path: str | Path) -> str | None:
    """Why srgan cannot write an output file named ``path``, whose suffix names an image format it does not
    write ("out.heic: srgan cannot write HEIC images; use .png, ..."); None where it writes that format, or
    the suffix names no image format."""
    suffix = Path(path).suffix.lower()
    fmt = _SUFFIX_FORMAT.get(suffix)
    if suffix in STILL_SUFFIX and not (fmt == "AVIF" and not avif_supported()):
        kind = "an animated PNG" if fmt == "PNG" else "an AVIF sequence"
        return f"{path}: srgan writes one still picture, not {kind}; name it {STILL_SUFFIX[suffix]}"
    if fmt == "MPO" or (fmt == "AVIF" and not avif_supported()):
        try:
            output_suffix_for(fmt)
        except SrganError as exc:  # its own message: MPO is written as .jpg; this Pillow lacks AVIF
            return f"{path}: {str(exc).split(': ', 1)[-1] if fmt == 'AVIF' else exc}"
    if fmt in _FORMAT_SUFFIX:
        return None
    name = image_format_named(path)
    if name is None:
        return None
    # no "(or --format)": -o names the file here, and --format must match its suffix, so it cannot help
    return f"{path}: srgan cannot write {name} images; use {output_suffixes()}"


def avif_supported() -> bool:
    """Whether this Pillow reads and writes AVIF (its wheels do from 11.3; a build without libavif does not)."""
    global _AVIF
    if _AVIF is None:
        from PIL import features

        _AVIF = "avif" in features.modules and bool(features.check_module("avif"))
    return _AVIF


_AVIF: bool | None = None


def supported_suffixes() -> str:
    """The suffixes this installation reads, for messages: AVIF, WebP and JPEG 2000 only where this
    Pillow was built with them (the list named .avif to a user whose Pillow then could not read it)."""
    from PIL import features

    missing = set()
    if not avif_supported():
        missing.add("AVIF")
    with contextlib.suppress(Exception):
        if not features.check_module("webp"):
            missing.add("WEBP")
    with contextlib.suppress(Exception):
        if not features.check_codec("jpg_2000"):
            missing.add("JPEG2000")
    return " ".join(sorted(s for s, fmt in _SUFFIX_FORMAT.items() if fmt not in missing))


def _no_avif_reason(what: str) -> str:
    import PIL

    return (
        f"this Pillow ({PIL.__version__}) lacks AVIF support, so srgan cannot {what} AVIF; upgrade Pillow "
        "(pip install -U pillow; its wheels have AVIF from 11.3)"
    )


def _no_avif(name: str, what: str) -> SrganError:
    return SrganError(f"{name}: {_no_avif_reason(what)}")


def _is_avif(head: bytes) -> bool:
    """True for an ISO media file (an ftyp box first) whose major brand, or a compatible one, is AVIF's."""
    if head[4:8] != b"ftyp":
        return False
    size = int.from_bytes(head[:4], "big")
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, min(size, len(head)) - 3, 4)]
    return any(brand in (b"avif", b"avis") for brand in brands)


def _normalise_format(fmt: str) -> str:
    f = fmt.strip().upper().lstrip(".")
    return {"JPG": "JPEG", "TIF": "TIFF", "MPO": "JPEG"}.get(f, f)


def output_suffix_for(fmt: str) -> str:
    """File suffix for a PIL format name or suffix ("PNG" -> ".png", "JPEG" -> ".jpg")."""
    suffix = _FORMAT_SUFFIX.get(fmt.strip().upper().lstrip("."))
    if suffix is None and fmt.strip().upper().lstrip(".") == "MPO":
        # one upscaled picture is no multi-picture file: an .mpo holding a plain JPEG would pass for a stereo pair
        raise SrganError("cannot write MPO (multi-picture) files: the upscaled picture is one plain JPEG; name it .jpg")
    if suffix == ".avif" and not avif_supported():
        raise _no_avif("AVIF output", "write")
    if suffix is None:
        known = ", ".join(sorted({f.lower() for f in _FORMAT_SUFFIX} - {"mpo", "jpg", "tif"}))
        raise SrganError(f"cannot write images in format {fmt!r}; choose one of: {known}")
    return suffix


def format_for_path(path: str | Path) -> str:
    """PIL format name for a path's suffix ("x.jpeg" -> "JPEG"); SrganError for others."""
    fmt = _SUFFIX_FORMAT.get(Path(path).suffix.lower())
    if fmt is None:
        raise SrganError(f"{path}: unknown image suffix {Path(path).suffix!r}; use one of {supported_suffixes()}")
    return fmt


def subfolders_with_images(
    folder: str | Path, skip: Callable[[Path], bool] = lambda sub: False, budget: int = 20_000
) -> list[Path]:
    """The sub-folders of ``folder`` (not hidden, nor those ``skip`` says) that hold an image srgan
    reads at any depth: where a folder is read without its sub-folders (upscale without --recursive,
    a benchmark set), they are passed over, which went without a word ("1 written" for a folder of
    300 photos in year folders). Each is looked into until its first image, within ``budget`` names in
    all, so a huge tree of other files costs little."""
    found = []
    try:
        subs = sorted(e.path for e in os.scandir(folder) if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return []
    for sub in map(Path, subs):
        if skip(sub):
            continue
        pending = [sub]
        while pending and budget > 0:
            try:
                entries = list(os.scandir(pending.pop()))
            except OSError:
                continue
            budget -= len(entries)
            if any(e.is_file() and is_image_path(e.name) for e in entries if not e.name.startswith(".")):
                found.append(sub)
                break
            pending.extend(e.path for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False))
    return found


def folder_entries(
    root: str | Path,
    recursive: bool = False,
    unlisted: list[tuple[Path, str]] | None = None,
    visit: Callable[[int], None] | None = None,
) -> list[tuple[Path, bool]]:
    """Every name in the folder ``root`` (and its sub-folders when ``recursive``) that is not a
    folder, with whether it is a regular file (links followed): ``[(path, is_file), ...]``.

    The one walk behind :func:`list_images`, ``upscale``'s report of the other files and the
    training data scan, so they agree on what a folder holds. Hidden names (leading dot) are
    skipped. Names are visited in order, depth first (as a sorted ``os.walk``): a folder's own
    names, then each sub-folder's. Symlinked folders are followed once: a folder already visited
    (same device and inode) is not entered again, so a symlink loop cannot recurse forever, and
    of two links to one folder the first by name is the one its files are listed under.
    Sub-folders that cannot be read are skipped, and added to ``unlisted`` (where given) with
    why, so that a caller can say so; an unreadable ``root`` is an SrganError. ``visit``, where
    given, is called after each folder with how many names were found so far (a progress report
    for a large tree; it may raise to stop the walk).
    """
    root = Path(root)
    if not root.is_dir():
        raise SrganError(f"{root}: no such folder")
    found: list[tuple[Path, bool]] = []
    seen: set[object] = set()
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            st = folder.stat()
        except OSError as exc:
            if unlisted is not None:
                unlisted.append((folder, _folder_reason(exc)))
            continue
        # a file system without inode numbers (st_ino 0: some Windows shares, WinFsp, sshfs) had every
        # sub-folder "visited already": its real path tells them apart there
        key: object = (st.st_dev, st.st_ino) if st.st_ino else os.path.normcase(os.path.realpath(folder))
        if key in seen:
            continue
        seen.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            if folder == root:
                raise SrganError(f"{root}: cannot list the folder: {_folder_reason(exc)}") from None
            if unlisted is not None:
                unlisted.append((folder, _folder_reason(exc)))
            continue
        folders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks; loops are cut by `seen`
                is_file = not is_dir and entry.is_file()
            except OSError:
                is_dir = is_file = False
            if is_dir:
                if recursive:
                    folders.append(Path(entry.path))
            else:
                found.append((Path(entry.path), is_file))
        pending.extend(reversed(folders))
        if visit is not None:
            visit(len(found))
    return found


def _folder_reason(exc: OSError) -> str:
    return "permission denied" if isinstance(exc, PermissionError) else _one_line(exc)


def list_images(root: str | Path, recursive: bool = False) -> list[Path]:
    """Image files in ``root`` (and its sub-folders when ``recursive``), sorted.

    The regular files with an image suffix among :func:`folder_entries` (hidden names are
    skipped, symlinked folders followed once). A ``root`` that is itself an image file is
    returned alone.
    """
    root = Path(root)
    if root.is_file():
        return [root] if is_image_path(root) else []
    return sorted(path for path, is_file in folder_entries(root, recursive) if is_file and is_image_path(path))


# --------------------------------------------------------------------------- reading


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _open_file(path: Path):
    """Open ``path`` for reading, with a one-line error for each way that can fail."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SrganError(f"{path}: no such file") from None
    except PermissionError:
        raise SrganError(f"{path}: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise SrganError(f"{path}: cannot access the file ({_one_line(exc)})") from None
    if stat.S_ISDIR(st.st_mode):
        raise SrganError(f"{path}: is a folder, not an image file")
    if not stat.S_ISREG(st.st_mode):
        raise SrganError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise SrganError(f"{path}: the file is empty (0 bytes)")
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except PermissionError:
        raise SrganError(f"{path}: permission denied; check the file's permissions") from None
    except OSError as exc:
        raise SrganError(f"{path}: cannot read the file ({_one_line(exc)})") from None


def _skipping(check: Callable[..., None]) -> Callable[..., None]:
    """Pillow's size check ``check``, skipped on a thread that is inside :func:`_pillow_unlimited`."""

    @functools.wraps(check)
    def bomb_check(*args, **kwargs) -> None:
        if getattr(_BOMB_CHECK_OFF, "on", False):
            return None
        return check(*args, **kwargs)

    bomb_check._srgan_skips = check  # type: ignore[attr-defined]
    return bomb_check


def _bomb_check_skippable() -> bool:
    """Whether Pillow's size check can be skipped on one thread: Pillow's Image.open and its plugins
    (TIFF's load_prepare, GIF's frames, ...) call the module function Image._decompression_bomb_check,
    which is replaced, once, by one that skips it where srgan asks and calls Pillow's otherwise.
    False for a Pillow without that function."""
    if not callable(getattr(Image, "_decompression_bomb_check", None)):
        return False
    if not hasattr(Image._decompression_bomb_check, "_srgan_skips"):
        with _INSTALL_LOCK:
            current = Image._decompression_bomb_check
            if not hasattr(current, "_srgan_skips"):  # not installed yet, or replaced by someone since
                Image._decompression_bomb_check = _skipping(current)
    return True


@contextlib.contextmanager
def _pillow_unlimited() -> Iterator[None]:
    """Pillow's own size limit (Image.MAX_IMAGE_PIXELS) off on this thread: the callers have applied
    srgan's limit (``_check_size``) or are about to, and --max-pixels decides.

    Image.MAX_IMAGE_PIXELS itself is never changed: it is global to the process, and a thread of the
    program embedding srgan that opened an image meanwhile had no limit (a 40000 x 40000 header that
    Pillow refuses passed a quarter of the time while srgan read images on another thread). Only a
    Pillow without the function Pillow checks the limit with has its limit switched off, under a lock."""
    if _bomb_check_skippable():
        was = getattr(_BOMB_CHECK_OFF, "on", False)
        _BOMB_CHECK_OFF.on = True
        try:
            yield
        finally:
            _BOMB_CHECK_OFF.on = was
        return
    with _OPEN_LOCK:
        _open_saved.append(Image.MAX_IMAGE_PIXELS)
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = _open_saved.pop()


def _open(fh, head: bytes, name: str) -> Image.Image:
    if _is_avif(head) and not avif_supported():
        raise _no_avif(name, "read")
    with _pillow_unlimited():
        try:
            return Image.open(fh)
        except UnidentifiedImageError:
            if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8"):
                raise SrganError(f"{name}: corrupt image file (its header cannot be read)") from None
            if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
                raise SrganError(f"{name}: {_tiff_refusal(fh)}") from None
            if _is_avif(head) or head.startswith((b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51")):
                raise SrganError(f"{name}: {_unopened_refusal(fh, head)}") from None
            raise SrganError(
                f"{name}: not an image file, or an unsupported format (supported: {supported_suffixes()})"
            ) from None
        except Image.DecompressionBombError as exc:  # pragma: no cover - limit is off here
            raise SrganError(f"{name}: {_one_line(exc)}") from None
        except _DECODE_ERRORS as exc:
            raise SrganError(f"{name}: corrupt image file ({_one_line(exc)})") from None


def _unopened_refusal(fh, head: bytes) -> str:
    """Why Pillow could not open a file that starts as an AVIF or a JPEG 2000 (both are known by their
    first bytes): it is cut short or damaged, which said "not an image file, or an unsupported format"
    where PNG said so; or an AVIF larger than libavif reads (see ``_MAX_PIXELS``)."""
    if not _is_avif(head):
        return "truncated or corrupt JPEG 2000 file (its header cannot be read)"
    try:  # the image's size, from its ispe box (image spatial extents): version and flags, width, height
        fh.seek(0)
        data = fh.read(1 << 16)
        at = data.find(b"ispe")
        width, height = struct.unpack_from(">II", data, at + 8) if at >= 4 else (0, 0)
    except (OSError, struct.error, ValueError):
        width = height = 0
    if width * height > _MAX_PIXELS["AVIF"] or max(width, height) > _MAX_SIDE["AVIF"]:
        return (
            f"an AVIF of {width}x{height} pixels, more than libavif reads (at most {_MAX_PIXELS['AVIF']:,} pixels, "
            f"{_MAX_SIDE['AVIF']} a side); decode it to PNG with avifdec, its --size-limit raised"
        )
    return "truncated or corrupt AVIF file (its header cannot be read)"


_SAMPLE_KINDS = {1: "unsigned integer", 2: "signed integer", 3: "floating-point"}


def _tiff_refusal(fh) -> str:
    """Why Pillow refused a file that starts as a TIFF: its samples' layout where the first IFD
    says it (floating-point or signed colour is the usual case), else a damaged TIFF."""

    def read_at(offset: int, size: int) -> bytes:
        fh.seek(offset)
        data = fh.read(size)
        if len(data) < size:
            raise ValueError("past the end of the file")
        return data

    try:
        head = read_at(0, 8)
        e = "<" if head[:2] == b"II" else ">"
        if head[2:4] != struct.pack(e + "H", 42):
            return "a BigTIFF file, which srgan cannot read; save it as TIFF or PNG"
        (ifd,) = struct.unpack_from(e + "I", head, 4)
        (n,) = struct.unpack(e + "H", read_at(ifd, 2))
        entries = read_at(ifd + 2, 12 * n)  # the directory may lie anywhere in the file (libtiff: at its end)
        tags = {}
        for i in range(n):
            tag, typ, count = struct.unpack_from(e + "HHI", entries, 12 * i)
            if tag in (258, 262, 277, 339) and typ == 3 and count >= 1:
                # the first value: in the entry for up to two, else where the entry points
                where = entries[12 * i + 8 : 12 * i + 12]
                if count > 2:
                    where = read_at(struct.unpack(e + "I", where)[0], 2)
                tags[tag] = struct.unpack_from(e + "H", where)[0]
        bits, spp, kind = tags.get(258, 1), tags.get(277, 1), _SAMPLE_KINDS.get(tags.get(339, 1), "unknown")
        if kind == "unsigned integer" and bits in (8, 16):  # samples srgan reads: their layout is what it cannot
            if spp == 2 and tags.get(262, 1) in (0, 1):  # Pillow reads 8-bit gray with alpha, not 16
                return (
                    f"a {bits}-bit gray TIFF with an alpha channel, which srgan cannot read; save it as PNG, "
                    f"or as {bits}-bit RGBA TIFF"
                )
            return (
                f"a TIFF of {spp} {bits}-bit samples per pixel (photometric {tags.get(262, 'missing')}), which "
                "srgan cannot read; save it as gray, RGB or RGBA TIFF, or PNG"
            )
        return (
            f"a TIFF of {spp} {bits}-bit {kind} sample{'s' if spp != 1 else ''} per pixel, which srgan "
            "cannot read; save it as 8- or 16-bit integer TIFF or PNG"
        )
    except (OSError, struct.error, ValueError):
        return "damaged TIFF (its first directory cannot be read)"


def _check_size(name: str, width: int, height: int, max_pixels: int | None) -> None:
    if width <= 0 or height <= 0:
        raise SrganError(f"{name}: the image declares an empty size {width}x{height}")
    if max_pixels is not None and width * height > max_pixels:
        raise SrganError(
            f"{name}: image is {width}x{height} = {width * height} pixels, more than the limit "
            f"of {max_pixels}; pass --max-pixels to raise the limit if the file is trusted"
        )


def read_image(path: str | Path, *, max_pixels: int | None = 100_000_000) -> LoadedImage:
    """Decode an image file into float arrays; see :class:`LoadedImage`.

    EXIF orientation is applied to the pixels. Palette, CMYK, 1-bit, LA, 16-bit and float
    images are converted; animated images give their first frame. The declared size is
    checked against ``max_pixels`` before any pixel is decoded (None: no limit).
    """
    path = Path(path)
    with _open_file(path) as fh:
        try:
            return _decode(fh, str(path), max_pixels)
        except MemoryError:
            raise SrganError(
                f"{path}: not enough memory to decode this image; free some memory or use a smaller image"
            ) from None


def read_rgb8(path: str | Path, *, max_pixels: int | None = None) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, decoded as ``read_image`` decodes it for ``srgan
    upscale``: EXIF orientation applied, 16-bit and float images scaled to 8 bits (floats from 0 to 1),
    CMYK through its profile, grayscale as R = G = B; alpha is dropped. Training, validation and
    benchmark images are read with it, so they see the pixels an upscale would.
    """
    path = Path(path)
    fast = _read_plain_rgb8(path, max_pixels)
    if fast is not None:
        return fast
    rgb = read_image(path, max_pixels=max_pixels).rgb
    return quantise_into(rgb, np.empty(rgb.shape, dtype=np.uint8))


@contextlib.contextmanager
def _header(path: str | Path) -> Iterator[Image.Image]:
    """The file opened as read_image opens it, its header read and no pixel decoded."""
    path = Path(path)
    with _open_file(path) as fh:
        head = fh.read(64)
        fh.seek(0)
        yield _open(fh, head, str(path))


def stored_orientation(path: str | Path) -> int:
    """The EXIF orientation (1-8; the XMP's tiff:Orientation where the EXIF has none) that
    :func:`read_image` applies to the file's pixels, 1 where it has none or it does not read. From the
    header: no pixel is decoded (so a PNG's EXIF after its pixel data, which is rare, is not seen)."""
    try:
        with _header(path) as im:
            if im.format == "TIFF":
                return _tiff_orientation(im)
            # a PNG's getexif() decodes every pixel to find an eXIf chunk after them; Image's reads what the header held
            exif = Image.Image.getexif(im) if im.format == "PNG" else im.getexif()
            value = int(exif.get(_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - a hint about a file that read: it must never be the error itself
        return 1
    return value if 1 <= value <= 8 else 1


# Pillow modes read_image gives a colour result for whatever the pixels (a palette may be gray: not here)
_COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"})


def stored_size(path: str | Path) -> tuple[int, int, bool] | None:
    """The (width, height) a file's header declares, before any EXIF orientation turns it, and whether
    it is surely colour; None where it cannot be read (the decode that follows says why). No pixel is
    decoded: for checks that would otherwise wait for a decode (a 100 MP photo: 14 s and 4 GB) to refuse
    an output size."""
    try:
        with _header(path) as im:
            return int(im.width), int(im.height), im.mode in _COLOUR_MODES
    except Exception:  # noqa: BLE001 - a hint ahead of the decode: never the error itself
        return None


# 8-bit files whose pixels read_image takes as Pillow's RGB conversion gives them: read directly,
# without the float round trip (4x faster on BSDS500 JPEGs; what a training loader spends).
_PLAIN_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")


def _read_plain_rgb8(path: Path, max_pixels: int | None) -> np.ndarray | None:
    """``read_rgb8`` for plain 8-bit RGB or gray files; None for anything else (also on any
    error, which read_image then reports in its own words)."""
    try:
        with _open_file(path) as fh:
            head = fh.read(64)
            fh.seek(0)
            im = _open(fh, head, str(path))
            if im.format not in _PLAIN_FORMATS or im.mode not in ("RGB", "L") or "transparency" in im.info:
                return None
            if _png_is_wide_colour(head) or _count_frames(im) != (1, False):
                return None
            _check_size(str(path), im.width, im.height, max_pixels)
            _strict_load(im)
            if int(im.getexif().get(_ORIENTATION, 1) or 1) != 1:
                return None
            # RGB as it is: convert("RGB") made a copy of the whole image first (a training
            # loader without a cache decodes an image for every patch)
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except (SrganError, MemoryError, Image.DecompressionBombError, *_DECODE_ERRORS):
        return None


def _decode(fh, name: str, max_pixels: int | None) -> LoadedImage:
    try:
        head = fh.read(64)
        fh.seek(0)
    except OSError as exc:
        raise SrganError(f"{name}: cannot read the file ({_one_line(exc)})") from None
    im = _open(fh, head, name)
    _check_size(name, im.width, im.height, max_pixels)

    def whole_file() -> bytes:  # only for the 16-bit paths, after the size check
        fh.seek(0)
        return fh.read()

    fmt = _format_name(im)
    trns_scale = _gray_trns_scale(im)
    turned = 1  # the orientation Pillow applies to the pixels as it loads them (TIFF), before we look
    notes: list[str] = []
    gray16_top, low_bits = 65535, None
    if fmt == "JPEG2000":
        gray16_top, low_bits = _jpeg2000_check(im, fh, name)
    if fmt == "TIFF":
        _quiet_libtiff()
        turned = _tiff_orientation(im)
    try:
        n_frames, damaged = _count_frames(im)
        if frames_note := _frames_note(im, name, n_frames, damaged):
            notes.append(frames_note)
        if fmt == "PNG" and _png_is_wide_colour(head):
            sixteen = _png_rgb16(whole_file(), name)
            if sixteen is not None:
                *pixels, exif_chunk, xmp_chunk, texts, iptc_chunk = sixteen
                return _with_notes(
                    notes,
                    _finish(
                        im,
                        *pixels,
                        fmt=fmt,
                        n_frames=n_frames,
                        name=name,
                        exif_bytes=exif_chunk,
                        xmp_bytes=xmp_chunk,
                        comments=texts,
                        iptc_bytes=iptc_chunk,
                    ),
                )
        if fmt == "TIFF":
            sixteen = _tiff_rgb16(im, whole_file, name, notes)
            if sixteen is not None:
                return _with_notes(notes, _finish(im, *sixteen, fmt=fmt, n_frames=n_frames, name=name))
        if fmt == "PPM":
            sixteen = _ppm_rgb16(im, whole_file, name)
            if sixteen is not None:
                return _with_notes(notes, _finish(im, *sixteen, fmt=fmt, n_frames=n_frames, name=name))
        _strict_load(im)
        turned = _turned_by_pillow(im, turned)
    except SrganError:
        raise
    except MemoryError:
        if im.width * im.height < _SMALL_IMAGE_PIXELS:  # a length field of 4 GB in a 16x16 PNG: the data is at fault
            raise SrganError(
                f"{name}: cannot decode the {fmt or 'image'} data (out of memory for a {im.width}x{im.height} image); "
                "the file is corrupt or too large to decode"
            ) from None
        raise SrganError(f"{name}: not enough memory to decode a {im.width}x{im.height} image") from None
    except Image.DecompressionBombError as exc:  # e.g. a GIF frame larger than its declared screen
        raise SrganError(f"{name}: refused as a decompression bomb ({_one_line(exc)})") from None
    except _DECODE_ERRORS as exc:
        raise SrganError(
            f"{name}: cannot decode the {fmt or 'image'} data ({_one_line(exc)}); the file is truncated or corrupt"
        ) from None
    loaded = _from_loaded_pil(
        im,
        fmt=fmt,
        n_frames=n_frames,
        name=name,
        turned=turned,
        trns_scale=trns_scale,
        gray16_top=gray16_top,
        low_bits=low_bits,
    )
    return _with_notes(notes, loaded)


# an image this small takes a few hundred MB at most, decoded and as floats: out of memory, it is not the
# image's size but its data (a chunk length or strip count) that asked for more
_SMALL_IMAGE_PIXELS = 1 << 22


def _with_notes(notes: list[str], loaded: LoadedImage) -> LoadedImage:
    loaded.notes[:0] = notes
    return loaded


def _jpeg2000_check(im: Image.Image, fh, name: str) -> tuple[int, tuple[int, ...] | None]:
    """What a JPEG 2000's gray samples as Pillow gives them (I;16) are at their brightest: Pillow
    shifts samples of fewer than 16 bits up (12-bit white is 65520); and the bits a sample of each
    channel of an 8-bit mode (L, LA, RGB, RGBA) where one has fewer than 8, which Pillow shifts up
    too (1-bit white is 128; see ``_stretch_low_bits``), else None. A colour (or gray with alpha)
    JPEG 2000 of more than 8 bits a sample is refused: Pillow's decoder cuts it to 8 bits, and its
    brightest values wrap round to black."""
    bits = _jpeg2000_bits(fh)
    if not bits:
        return 65535, None
    if im.mode == "I;16":
        return ((1 << min(bits[0], 16)) - 1) << (16 - min(bits[0], 16)), None
    if im.mode != "P" and max(bits) > 8:
        kind = {"LA": "gray and alpha", "RGBA": "colour and alpha"}.get(im.mode, "colour")
        raise SrganError(
            f"{name}: a JPEG 2000 of {max(bits)} bits a sample ({kind}), which srgan cannot read: Pillow decodes "
            "it to 8 bits, its brightest values black; convert it to 16-bit PNG or TIFF"
        )
    if im.mode in ("L", "LA", "RGB", "RGBA") and len(bits) == len(im.mode) and min(bits) < 8:
        return 65535, tuple(bits)
    return 65535, None


def _jpeg2000_bits(fh) -> list[int] | None:
    """The bits a sample of each component of a JPEG 2000 file, from its codestream's SIZ segment (a
    bare codestream, or the jp2c box of a .jp2); None where it cannot be read. Leaves ``fh`` where
    it was."""
    where = fh.tell()
    try:
        start = 0
        fh.seek(0)
        if fh.read(4) != b"\xff\x4f\xff\x51":  # not a codestream: find the jp2c box among the JP2's boxes
            while True:
                fh.seek(start)
                box = fh.read(16)
                if len(box) < 8:
                    return None
                length, kind = struct.unpack(">I4s", box[:8])
                header = 8
                if length == 1:  # the length is the 8 bytes after the type
                    length, header = struct.unpack(">Q", box[8:16])[0], 16
                if kind == b"jp2c":
                    start += header
                    break
                if length < header:  # 0: the last box, to the end of the file
                    return None
                start += length
        # SOC, SIZ marker, Lsiz, Rsiz, 8 sizes and offsets of 4 bytes, Csiz; then Ssiz, XRsiz, YRsiz a component
        fh.seek(start)
        siz = fh.read(42)
        if len(siz) < 42 or siz[:4] != b"\xff\x4f\xff\x51":
            return None
        (count,) = struct.unpack_from(">H", siz, 40)
        components = fh.read(3 * min(count, 4))
        if not count or len(components) < 3 * min(count, 4):
            return None
        return [(components[3 * i] & 0x7F) + 1 for i in range(min(count, 4))]
    except (OSError, struct.error, ValueError):
        return None
    finally:
        with contextlib.suppress(OSError, ValueError):
            fh.seek(where)


def _tiff_orientation(im: Image.Image) -> int:
    """A TIFF's orientation as Pillow's getexif() gives it, before the image is loaded: tag 274, else
    the XMP's tiff:Orientation (getexif() itself would read the file)."""
    with contextlib.suppress(Exception):
        if _ORIENTATION in im.tag_v2:
            return _tag_int(im.tag_v2, _ORIENTATION, 1)
        found = _XMP_ORIENTATION_READ.search(_xmp_of(im) or b"")
        return int(found[2]) if found else 1
    return 1


def _turned_by_pillow(im: Image.Image, before: int) -> int:
    """``before`` (a TIFF's orientation before it loaded) where loading turned the pixels, else 1.

    Pillow turns a TIFF as it loads it, by tag 274 or, without one, by the XMP's tiff:Orientation, and
    drops the orientation then; one it kept is applied by ``_finish``. Either way the x and y dpi are
    swapped for a quarter turn: an orientation only in the XMP was not."""
    if before == 1:
        return 1
    with contextlib.suppress(Exception):
        if int(im.getexif().get(_ORIENTATION, 1) or 1) == before:
            return 1
    return before


def _gray_trns_scale(im: Image.Image) -> int:
    """What Pillow multiplies the pixels of a 2- or 4-bit gray PNG by to make 8 bits (85, 17), which its
    transparent gray value (tRNS, as Pillow reports it) is not; 1 for other images. Known from the
    decoder's raw mode, so only before the image is loaded."""
    with contextlib.suppress(Exception):
        if im.format == "PNG" and im.mode == "L" and im.tile:
            return {"L;2": 85, "L;4": 17}.get(im.tile[0].args, 1)
    return 1


_LIBTIFF_QUIETED = False


def _quiet_libtiff() -> None:
    """Stop libtiff printing warnings and errors on stderr (once per process).

    Pillow already turns libtiff failures into exceptions, which become our one-line
    errors; the C library's own lines on stderr would only clutter the terminal. This
    finds the libtiff that Pillow loaded (from the process's memory map, else Pillow's
    bundled copy) and clears its global handlers. Best effort: nothing changes if that fails.
    """
    global _LIBTIFF_QUIETED
    if _LIBTIFF_QUIETED:
        return
    _LIBTIFF_QUIETED = True
    import ctypes

    candidates: list[str] = []
    with contextlib.suppress(OSError):
        with open("/proc/self/maps") as fh:  # Linux: "address perms offset dev inode path"
            fields = [ln.split(maxsplit=5) for ln in fh if "libtiff" in ln]
        candidates += sorted({f[5].strip() for f in fields if len(f) == 6})
    pil_dir = Path(Image.__file__).parent
    for folder in (pil_dir.parent / "pillow.libs", pil_dir / ".dylibs"):
        with contextlib.suppress(OSError):
            candidates += sorted(str(p) for p in folder.glob("libtiff*"))
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate)
            for setter in (lib.TIFFSetWarningHandler, lib.TIFFSetErrorHandler):
                setter.restype = ctypes.c_void_p
                setter.argtypes = [ctypes.c_void_p]
                setter(None)
            return
        except (OSError, AttributeError):
            continue


_STRICT_LOCK = threading.Lock()
_strict_depth = 0
_strict_saved = False  # the process's ImageFile.LOAD_TRUNCATED_IMAGES while any thread loads strictly


@contextlib.contextmanager
def _strict_pillow() -> Iterator[None]:
    """Pillow's ImageFile.LOAD_TRUNCATED_IMAGES off: a truncated file fails even if a library or the
    application embedding srgan switched Pillow to lenient.

    The setting is global to the process: two threads that each saved and restored it could leave
    it off for good (the application's True lost) or turn it back on while the other still loaded
    (a truncated file accepted, its missing part gray). So the first thread in saves it and the last
    one out restores it."""
    global _strict_depth, _strict_saved
    with _STRICT_LOCK:
        if _strict_depth == 0:
            _strict_saved = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        _strict_depth += 1
    try:
        yield
    finally:
        with _STRICT_LOCK:
            _strict_depth -= 1
            if _strict_depth == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _strict_saved


def _after_fork_in_child() -> None:
    """A process forked while other threads read images holds only the thread that forked, and a
    lock one of them held stays locked for good: the child hung in its first read_image. It gets
    fresh locks, and Pillow's settings that the other threads had changed for their reads
    (ImageFile.LOAD_TRUNCATED_IMAGES, and Image.MAX_IMAGE_PIXELS where Pillow lacks the check
    function) go back to the program's. (The forking thread itself is in none of these: neither
    srgan nor Pillow forks while reading.)"""
    global _INSTALL_LOCK, _OPEN_LOCK, _STRICT_LOCK, _strict_depth
    _INSTALL_LOCK, _OPEN_LOCK, _STRICT_LOCK = threading.Lock(), threading.Lock(), threading.Lock()
    if _open_saved:
        Image.MAX_IMAGE_PIXELS = _open_saved[0]
        _open_saved.clear()
    if _strict_depth:
        ImageFile.LOAD_TRUNCATED_IMAGES = _strict_saved
        _strict_depth = 0


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _strict_load(im: Image.Image) -> None:
    """Decode every pixel; a truncated file fails even if a library switched Pillow to lenient.

    Pillow's TIFF reader checks its own size limit again as it loads (in ``load_prepare``, which
    makes the image's memory), outside ``_open``: a TIFF past it was refused whatever --max-pixels
    said. That memory is made here with the limit off, as ``_open`` opens files; the load then finds
    it made."""
    if im.format == "TIFF" and im.tile:
        with _pillow_unlimited():
            im.load_prepare()
    marked = _png_mark_last_row(im)
    with _strict_pillow():
        im.load()
    if marked is not None and _png_row_unwritten(im, *marked):
        raise OSError("the image data ends early")


# Pillow's PNG decoder stops without a word where the image data ends at a row boundary before the
# last row, and leaves the rest black (a 3.9 KB file read as 2,686,996x20); srgan's 16-bit reader
# refuses that. The row the decoder writes last is filled with a pattern before it runs: left as it
# was, the data ended early. No second decode; a row of under 32 bits (a few pixels wide), which a
# real image might match, goes unchecked.
_PNG_MARK_BITS = 32


def _png_mark_last_row(im: Image.Image) -> tuple[int, int, int, np.ndarray] | None:
    """(row, first column, column step, pattern) of the pixels of a PNG that its decoder writes last,
    filled with the pattern before ``im.load()``; None where there is nothing to check."""
    if im.format != "PNG" or len(im.tile) != 1 or getattr(im, "is_animated", False):
        return None
    if tuple(im.tile[0][1]) != (0, 0, im.width, im.height) or im.mode not in (
        "1",
        "L",
        "LA",
        "P",
        "RGB",
        "RGBA",
        "I",
        "I;16",
    ):
        return None
    width, height = im.size
    passes = _ADAM7 if im.info.get("interlace") else ((0, 0, 1, 1),)
    x0, y0, dx, dy = next(p for p in reversed(passes) if width > p[0] and height > p[1])
    y = y0 + (height - 1 - y0) // dy * dy
    size = len(Image.new(im.mode, (width, 1)).tobytes())
    pattern = Image.frombytes(im.mode, (width, 1), ((np.arange(size) * 167 + 101) & 0xFF).astype(np.uint8).tobytes())
    expected = np.asarray(pattern)[0, x0::dx]
    if (expected.size if im.mode == "1" else expected.nbytes * 8) < _PNG_MARK_BITS:
        return None
    ImageFile.ImageFile.load_prepare(im)  # the image's memory only: PNG's own would be done twice
    im.im.paste(pattern.im, (0, y, width, y + 1))
    return y, x0, dx, expected


def _png_row_unwritten(im: Image.Image, y: int, x0: int, dx: int, expected: np.ndarray) -> bool:
    return bool(np.array_equal(np.asarray(im.crop((0, y, im.width, y + 1)))[0, x0::dx], expected))


def _format_name(im: Image.Image) -> str:
    # Phone cameras write MPO: a JPEG with a preview image appended, not an animation; a stereo
    # pair or a panorama is read as its first picture too (``_count_frames`` counts the others).
    return "JPEG" if im.format == "MPO" else (im.format or "")


# MP Entry types (CIPA DC-007, the low 24 bits of an entry's attribute) of the pictures of a
# multi-frame set: a panorama (0x020001), a stereo pair (0x020002, "disparity"), a multi-angle view
# (0x020003). Other extra pictures are not frames: a phone's large preview (0x01xxxx), or a gain map
# or depth map (0x000000 "undefined", as Ultra HDR and Apple photos write them).
_MP_MULTI_FRAME_CLASS = 0x02
_MP_ENTRY = 0xB002


def _mpo_frames(im: Image.Image) -> int:
    """1 plus the number of extra pictures of a multi-frame set in an MPO's MP Index (0xB002)."""
    types = _mp_entry_types(im.info.get("mp"))
    if types is None:  # Pillow's parse, where the raw index is not there: type names, not numbers
        try:
            entries = im.mpinfo[_MP_ENTRY]  # type: ignore[attr-defined]
            names = [str(e["Attribute"]["MPType"]) for e in entries]
        except Exception:  # noqa: BLE001 - a damaged index: the first picture is still good
            return 1
        return 1 + sum(name.startswith("Multi-Frame") for name in names[1:])
    return 1 + sum(t >> 16 == _MP_MULTI_FRAME_CLASS for t in types[1:])


def _mp_entry_types(data) -> list[int] | None:
    """The MP type of each entry of an MP Index IFD (the APP2 "MPF" payload after its signature,
    Pillow's ``info["mp"]``), or None where it cannot be read."""
    if not isinstance(data, (bytes, bytearray)):
        return None
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(bytes(data[:4]))
    if order is None:
        return None
    try:
        (ifd,) = struct.unpack_from(order + "I", data, 4)
        (count,) = struct.unpack_from(order + "H", data, ifd)
        for i in range(count):
            tag, _typ, size, offset = struct.unpack_from(order + "HHII", data, ifd + 2 + 12 * i)
            if tag == _MP_ENTRY:
                return [struct.unpack_from(order + "I", data, offset + 16 * k)[0] & 0xFFFFFF for k in range(size // 16)]
    except struct.error:
        return None
    return None


def _count_frames(im: Image.Image) -> tuple[int, bool]:
    """The number of frames (pages), and whether the data after the frame ``im`` stands at is damaged: then
    that frame is the last counted (the first frame of a GIF or TIFF cut short in a later one is good)."""
    if im.format == "MPO":
        return _mpo_frames(im), False
    here = im.tell()  # a caller's image (from_pil) may stand at another frame: that one is upscaled
    try:
        n = int(getattr(im, "n_frames", 1) or 1)  # TIFF and GIF walk the file to count
        damaged = False
    except _DECODE_ERRORS:  # the later frames are not decoded to count them: they may be bombs past max_pixels
        n, damaged = here + 1, True
    if im.tell() != here:
        im.seek(here)
    return n, damaged


def _frames_note(im: Image.Image, name: str, n_frames: int, damaged: bool) -> str | None:
    """What a file's frames beyond the first say to a user, who gets the first frame only."""
    if damaged:
        return f"{name}: the data after the first frame is damaged or cut off; only the first is upscaled"
    if n_frames > 1 and im.format == "PNG" and im.info.get("default_image"):
        # an APNG whose first image is the still picture for viewers without animation, not a frame of it
        return (
            f"{name}: an animated PNG of {n_frames - 1} frames and a still image for viewers without animation; "
            "the still image is upscaled"
        )
    return f"{name}: {n_frames} frames; only the first is upscaled" if n_frames > 1 else None


def from_pil(img: Image.Image, *, name: str = "image") -> LoadedImage:
    """Convert an in-memory PIL image like :func:`read_image` converts a file.

    Pillow has already cut 16-bit colour PNG/TIFF to 8 bits when it opened them; pass the
    file's path to :func:`read_image` to keep all 16.
    """
    trns_scale = _gray_trns_scale(img)
    # a TIFF that loads here is turned as it loads (the dpi with it); one the caller loaded is already
    # upright, its orientation dropped by Pillow, and its dpi taken as it is
    turned = _tiff_orientation(img) if img.format == "TIFF" and img.tile else 1
    try:
        img.load()
        n_frames, _ = _count_frames(img)
    except _DECODE_ERRORS as exc:
        raise SrganError(f"{name}: cannot decode the image ({_one_line(exc)})") from None
    turned = _turned_by_pillow(img, turned)
    fmt = _format_name(img)
    loaded = _from_loaded_pil(img, fmt=fmt, n_frames=n_frames, name=name, turned=turned, trns_scale=trns_scale)
    if n_frames > 1:  # the caller's image may stand at another frame: that one is upscaled
        frame = getattr(img, "tell", lambda: 0)()
        loaded.notes[:0] = [f"{name}: {n_frames} frames; only frame {frame + 1} (where the image stands) is upscaled"]
    return loaded


def _from_loaded_pil(
    im: Image.Image,
    *,
    fmt: str,
    n_frames: int,
    name: str,
    turned: int = 1,
    trns_scale: int = 1,
    gray16_top: int = 65535,
    low_bits: tuple[int, ...] | None = None,
) -> LoadedImage:
    mode = im.mode
    icc = _icc_of(im)
    alpha: np.ndarray | None = None
    grayscale = False
    bit_depth = 8
    hidden = im.info.get("transparency")
    note = None
    try:
        if mode == "CMYK":
            rgb8, note = _cmyk_to_rgb(im, icc, name)
            icc = None  # the pixels are sRGB now: the CMYK profile would be wrong on them
            rgb = _unit8(rgb8)
        elif mode in ("1", "L") and isinstance(hidden, int):
            # gray with one transparent value (PNG's tRNS): a 1-bit image went without it, and a 2- or
            # 4-bit one compared it with pixels Pillow had scaled to 8 bits (see _gray_trns_scale)
            plane = np.asarray(im.convert("L"))
            rgb = _gray(plane, 255.0)
            alpha = (plane != hidden * trns_scale).astype(np.float32)
            grayscale = True
        elif mode == "1" or (mode == "L" and not _has_alpha(im)):
            rgb = _gray(np.asarray(im.convert("L")), 255.0)
            grayscale = True
        elif mode in ("L", "LA", "La", "PA") or (
            # a gray palette (with transparency too, as gray with tRNS) is gray; under an RGB profile it
            # stays RGB: as gray it lost the profile
            mode == "P" and _palette_is_gray(im) and not (icc and _icc_fits(icc, gray=False))
        ):
            conv = im.convert("LA") if mode != "PA" else im.convert("RGBA")
            if conv.mode == "LA":
                arr = np.asarray(conv)
                rgb = _gray(arr[..., 0], 255.0)
                alpha = _unit8(arr[..., 1])
                grayscale = True
            else:
                arr = np.asarray(conv)
                rgb = _unit8(arr[..., :3])
                alpha = _unit8(arr[..., 3])
            if mode == "P" and not _has_alpha(im):
                alpha = None
        elif mode == "F":
            plane, note = _float_gray(im, name, fmt)
            rgb, bit_depth, grayscale = _gray(plane, 1.0), 16, True
        elif mode.startswith("I;16") or mode == "I":
            rgb, bit_depth, note = _wide_gray(im, gray16_top, name, fmt)
            grayscale = True
            if fmt == "TIFF" and mode.startswith("I;16") and _tag_int(im.tag_v2, 262, 1) == 0:
                rgb = 1.0 - rgb  # MinIsWhite: Pillow inverts 8-bit gray, and gave 16-bit as a negative
            if _has_alpha(im):  # a 16-bit gray PNG's tRNS: the one gray value that is transparent
                alpha = (np.asarray(im) != im.info["transparency"]).astype(np.float32)
        else:
            want_alpha = _has_alpha(im)
            conv = im.convert("RGBA" if want_alpha else "RGB")
            arr = np.asarray(conv)
            rgb = _unit8(arr[..., :3])
            if want_alpha:
                alpha = _unit8(arr[..., 3])
    except _DECODE_ERRORS as exc:
        raise SrganError(f"{name}: unsupported image mode {mode!r} ({_one_line(exc)})") from None
    if low_bits:
        rgb, alpha = _stretch_low_bits(rgb, alpha, low_bits)
    if fmt == "GIF":
        rgb, alpha = _gif_uncovered(im, rgb, alpha, grayscale)
    loaded = _finish(
        im, rgb, alpha, bit_depth, grayscale, mode, icc=icc, fmt=fmt, n_frames=n_frames, name=name, turned=turned
    )
    if note:
        loaded.notes.append(note)
    return loaded


def _gif_uncovered(
    im: Image.Image, rgb: np.ndarray, alpha: np.ndarray | None, grayscale: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """A GIF whose first frame covers only part of its screen: the rest transparent, as browsers show it, over
    the screen's background colour (the GIF spec's fill, for viewers that drop the alpha). Pillow filled it
    with palette entry 0 (black, opaque, in most palettes) unless the frame had a transparent index."""
    box = getattr(im, "dispose_extent", None)
    if im.tell() != 0 or "transparency" in im.info or not box:
        return rgb, alpha  # later frames are drawn over the earlier ones; a transparent index fills the rest
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (max(0, min(int(v), side)) for v, side in zip(box, (w, h, w, h), strict=True))
    if (x0, y0, x1, y1) == (0, 0, w, h):
        return rgb, alpha
    covered = np.zeros((h, w), dtype=bool)
    covered[y0:y1, x0:x1] = True
    rgb = rgb.copy()
    palette = im.getpalette("RGB") if im.mode == "P" else None
    index = im.info.get("background", 0)
    if palette and isinstance(index, int) and 3 * index + 2 < len(palette):
        background = np.asarray(palette[3 * index : 3 * index + 3], dtype=np.float32) / 255.0
        rgb[~covered] = background.mean() if grayscale else background
    alpha = covered.astype(np.float32) if alpha is None else np.where(covered, alpha, 0.0).astype(np.float32)
    return rgb, alpha


def _stretch_low_bits(
    rgb: np.ndarray, alpha: np.ndarray | None, bits: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray | None]:
    """A JPEG 2000 of fewer than 8 bits a sample (``bits``: each channel's, L, LA, RGB or RGBA) to
    [0, 1] by each channel's stated precision: Pillow shifts its samples up to 8 bits (a 1-bit
    bilevel scan's white is 128, 2-bit's 192, 7-bit's 254), and read as 8-bit they never reached
    white, nor a 1-bit alpha full opacity."""

    def factor(b: int) -> float:
        return 255.0 / (((1 << b) - 1) << (8 - b)) if b < 8 else 1.0

    colour = bits[:1] * 3 if len(bits) <= 2 else bits[:3]
    scale = np.array([factor(b) for b in colour], dtype=np.float32)
    rgb = np.minimum(rgb * scale, np.float32(1.0))
    if alpha is not None and len(bits) in (2, 4) and bits[-1] < 8:
        alpha = np.minimum(alpha * np.float32(factor(bits[-1])), np.float32(1.0))
    return rgb, alpha


def _has_alpha(im: Image.Image) -> bool:
    if im.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        return True
    if im.mode.startswith("I;16") or im.mode == "I":
        return isinstance(im.info.get("transparency"), int)
    if im.mode == "P" and _palette_alpha(im) is not None:
        return True
    return im.mode in ("P", "L", "RGB") and "transparency" in im.info


def _palette_alpha(im: Image.Image) -> np.ndarray | None:
    """The alpha of each palette entry of a P image whose palette holds alpha (Pillow's ``quantize()``
    of an RGBA image makes one: no "transparency" in its info), where a used entry is not opaque; else None."""
    if getattr(im.palette, "mode", "") != "RGBA" or (found := _palette_used(im, "RGBA")) is None:
        return None
    pal, used = found
    return pal[:, 3] if len(used) and np.any(pal[used, 3] < 255) else None


def _palette_used(im: Image.Image, mode: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A P image's palette as an (N, len(mode)) array, and the entries its pixels use; None where the
    palette cannot be read."""
    try:
        pal = np.asarray(im.getpalette(mode) or [], dtype=np.uint8).reshape(-1, len(mode))
    except (ValueError, TypeError):
        return None
    used = np.flatnonzero(np.bincount(np.asarray(im).ravel(), minlength=256))
    return pal, used[used < len(pal)]


def _palette_is_gray(im: Image.Image) -> bool:
    """True when every palette colour the pixels use is gray; a fully transparent one (the
    transparency index, or a tRNS entry of 0) does not show and does not count."""
    if (found := _palette_used(im, "RGB")) is None:
        return False
    pal, used = found
    hidden = im.info.get("transparency")
    if isinstance(hidden, int):
        used = used[used != hidden]
    elif isinstance(hidden, bytes):
        clear = np.flatnonzero(np.frombuffer(hidden, dtype=np.uint8) == 0)
        used = np.setdiff1d(used, clear)
    elif (palette_alpha := _palette_alpha(im)) is not None:
        used = np.setdiff1d(used, np.flatnonzero(palette_alpha == 0))
    return bool(len(used)) and bool(np.all(pal[used, 0] == pal[used, 1]) and np.all(pal[used, 1] == pal[used, 2]))


def _gray(plane: np.ndarray, scale: float) -> np.ndarray:
    g = plane.astype(np.float32) / np.float32(scale)
    return np.repeat(g[..., None], 3, axis=2)


def _unit8(samples: np.ndarray) -> np.ndarray:
    """8-bit samples as float32 in [0, 1], divided in place: ``astype(...) / 255`` held two float copies at
    once (3.4 GB at the peak of reading a 100 MP photo, for a 1.2 GB result)."""
    out = samples.astype(np.float32)
    out /= np.float32(255.0)
    return out


def _wide_gray(im: Image.Image, top: int = 65535, name: str = "", fmt: str = "") -> tuple[np.ndarray, int, str | None]:
    """16-bit and 32-bit integer grayscale to [0, 1] (bit depth 16 keeps precision), and a note; ``top``:
    what 16-bit samples are at their brightest (a 12-bit JPEG 2000's white, shifted up by Pillow, is 65520).

    Pillow's "I" (32-bit signed) holds a TIFF's 32-bit and signed 16-bit samples: those were clipped to
    0-65535 without a word (a signed ramp came out 37% black, an unsigned 32-bit one wrapped at 2^31).
    Samples from 0 to 65535 are read as 16-bit ones; a signed 16-bit TIFF without negative samples has
    its white at 32767, with a note; other ranges are refused, as floats well outside 0-1 are."""
    if im.mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.float32) / np.float32(top)
        if top != 65535:
            np.clip(arr, 0.0, 1.0, out=arr)
        return _gray(arr, 1.0), 16, None
    raw = np.asarray(im, dtype=np.int64)
    tags = getattr(im, "tag_v2", None) if fmt == "TIFF" else None
    signed = tags is not None and _tag_int(tags, 339, 1) == 2
    bits = _tag_int(tags, 258, 32) if tags is not None else 32
    if tags is not None and bits == 32 and not signed:
        raw &= 0xFFFFFFFF  # Pillow reads unsigned 32-bit samples as signed: 2^31 and up came back negative
    low, high = (int(raw.min()), int(raw.max())) if raw.size else (0, 0)
    kind = f"{'signed' if signed else 'unsigned'} {bits}-bit integer gray {fmt or 'image'}"
    article = "a" if signed else "an"
    if signed and bits == 16 and low >= 0:
        note = f"{name}: {article} {kind}: read with 32767, its largest value, as white"
        return _gray(raw.astype(np.float32) / 32767.0, 1.0), 16, note
    if low < 0 or high > 65535:
        raise SrganError(
            f"{name}: {article} {kind} with values from {low} to {high}, which srgan cannot read: it reads "
            "integers from 0 (black) to 65535 (white); scale it to that range or save it as unsigned 16-bit TIFF or PNG"
        )
    return _gray(raw.astype(np.float32) / 65535.0, 1.0), 16, None


# How far float gray samples may stray past [0, 1] and be clipped, with a note: a filter's overshoot
# (1.0001, -0.002). Farther out, the data is on another scale (0-255, 0-65535, HDR), which srgan does
# not guess: dividing by 255 because the maximum was above 2 turned HDR data (a maximum of 2.65)
# nearly black.
_FLOAT_SLACK = 0.01


def _float_gray(im: Image.Image, name: str, fmt: str) -> tuple[np.ndarray, str | None]:
    """A float gray image (Pillow's "F", a 32-bit floating-point TIFF) as [0, 1], 0 black and 1 white,
    and a note where samples a little past that range were clipped; an SrganError for samples well
    past it, as a floating-point colour TIFF is refused."""
    arr = np.asarray(im, dtype=np.float32)
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    arr = np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)
    kind = f"floating-point gray {fmt}" if fmt else "floating-point gray image"
    # a NaN or infinite sample (no data, in a scientist's TIFF) is read as black, and said so
    missing = f"{bad} sample{'s' if bad != 1 else ''} not a number or infinite, read as black" if bad else None
    low, high = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if low >= 0.0 and high <= 1.0:
        return arr, f"{name}: a {kind} with {missing}" if missing else None
    if low < -_FLOAT_SLACK or high > 1.0 + _FLOAT_SLACK:
        raise SrganError(
            f"{name}: a {kind} with values from {low:.6g} to {high:.6g}, which srgan cannot read: it reads floats "
            "from 0 (black) to 1 (white); scale it to 0-1, or save it as 8- or 16-bit integer TIFF or PNG"
        )
    also = f"; {missing}" if missing else ""
    return np.clip(arr, 0.0, 1.0), f"{name}: a {kind} with values from {low:.6g} to {high:.6g}: clipped to 0-1{also}"


def _cmyk_to_rgb(im: Image.Image, icc: bytes | None, name: str) -> tuple[np.ndarray, str]:
    """CMYK to sRGB through the embedded profile when there is one, else the plain formula; and the note
    saying which (the conversion was silent, and the profile left out without a word)."""
    why = "the file has no colour profile"
    if icc:
        why = "its embedded colour profile could not be used, and is left out"
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            out = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            if out is not None:
                return np.asarray(out), (
                    f"{name}: CMYK converted to sRGB through its {_icc_name(icc)}, which the output does not carry"
                )
        except Exception:  # noqa: BLE001 - a broken profile must not make the image unreadable
            pass
    return np.asarray(
        im.convert("RGB")
    ), f"{name}: CMYK converted to RGB by a plain formula ({why}): its colours are approximate"


# A TIFF's "EXIF" is its whole first IFD; only these describe the picture rather than its
# layout in that file (strip offsets, bit depth, ... must not travel into another file).
_TIFF_METADATA_TAGS = frozenset({270, 271, 272, 274, 305, 306, 315, 33432, 0x8769, 0x8825})
# What TIFF output keeps of an EXIF's main IFD, in both writers: those tags (ImageDescription, Make,
# Model, Orientation, Software, DateTime, Artist, Copyright), whatever the input. A JPEG's, PNG's or
# WebP's EXIF may hold layout tags too (ImageWidth and ImageLength as phones write them, BitsPerSample,
# StripOffsets, ... in files converted from TIFF), which libtiff took for the output's own ("encoder
# error -8") or wrote into files other readers refuse, and values libtiff rejects (a ResolutionUnit of
# 89); the dpi goes in on its own.
_TIFF_OUTPUT_TAGS = _TIFF_METADATA_TAGS - {0x8769, 0x8825}


def _exif_and_orientation(
    im: Image.Image, raw: bytes | None = None, xmp: bytes | None = None
) -> tuple[bytes | None, int, list[str]]:
    """The EXIF to write for the upright pixels, their orientation, and what of the EXIF could not be kept
    (see ``_upright_exif``)."""
    if raw is not None:  # from our own PNG chunk walk: Pillow's PNG getexif() would decode all pixels again
        exif = Image.Exif()
        try:
            if raw:
                exif.load(raw)
            found = _XMP_ORIENTATION_READ.search(xmp or b"")
            if found and _ORIENTATION not in exif:  # as Pillow's getexif() does
                exif[_ORIENTATION] = int(found[2])
        except Exception:  # noqa: BLE001 - corrupt EXIF is dropped, the pixels are still good
            return None, 1, []
        return _upright_exif(exif, im.format, raw)
    try:
        exif = im.getexif()  # without an EXIF Orientation, Pillow takes the XMP's tiff:Orientation
        # Pillow keeps this object on the image: the edits below are undone after, or a caller's
        # image (from_pil) lost its orientation and tags to them (a copy cannot be made: tobytes
        # and load turn UTF-8 text into "?", and a TIFF's EXIF does not deepcopy)
        kept = dict(exif.items())
        if _ORIENTATION not in exif and (found := _XMP_ORIENTATION_READ.search(xmp or b"")):
            exif[_ORIENTATION] = int(found[2])  # the forms Pillow does not read ('6', = "6"): reset on output alike
    except Exception:  # noqa: BLE001
        return None, 1, []
    # the bytes Pillow loaded it from (none where it read them elsewhere: a PNG's "Raw profile type exif"
    # text, a TIFF's own IFD)
    original = im.info.get("exif")
    try:
        return _upright_exif(exif, im.format, original if isinstance(original, bytes) else None)
    finally:
        with contextlib.suppress(Exception):
            for tag in [t for t in exif if t not in kept]:
                del exif[tag]
            for tag, value in kept.items():
                if tag not in exif or exif[tag] is not value:
                    exif[tag] = value


def _upright_exif(
    exif: Image.Exif, fmt: str | None, original: bytes | None = None
) -> tuple[bytes | None, int, list[str]]:
    """The EXIF to write for upright pixels (Orientation 1; a TIFF's picture tags only), the
    orientation it had, and what of it could not be kept (see ``_salvaged_exif_bytes``); edits ``exif``.
    ``original``: the bytes ``exif`` was loaded from, whose layout
    is kept where they hold a maker note (see ``_exif_bytes``); a TIFF's EXIF is its own first IFD."""
    try:
        if fmt == "TIFF":
            for tag in [t for t in exif if t not in _TIFF_METADATA_TAGS]:
                del exif[tag]
        orientation = int(exif.get(_ORIENTATION, 1) or 1)
        if not len(exif):
            return None, 1, []
    except Exception:  # noqa: BLE001 - corrupt EXIF is dropped, the pixels are still good
        return None, 1, []
    orientation = orientation if 1 <= orientation <= 8 else 1
    try:  # the orientation is the picture's also where the EXIF cannot be written back
        if _ORIENTATION in exif:
            exif[_ORIENTATION] = 1
        if orientation in (5, 6, 7, 8) and _X_RESOLUTION in exif and _Y_RESOLUTION in exif:
            # the pixels are turned a quarter, so is their density (as the file's dpi is)
            exif[_X_RESOLUTION], exif[_Y_RESOLUTION] = exif[_Y_RESOLUTION], exif[_X_RESOLUTION]
        _keep_text_bytes(exif)
        layout = original if fmt != "TIFF" else None
        dropped: list[str] = []
        return _salvaged_exif_bytes(exif, layout, dropped), orientation, dropped
    except Exception:  # noqa: BLE001 - corrupt EXIF is dropped, the pixels are still good
        return None, orientation, ["all of it"]


# the sub-IFDs an EXIF Pillow cannot write back is tried without, in turn: the GPS IFD, the interoperability
# IFD (in the Exif IFD), the Exif IFD
_EXIF_PARTS = ((0x8825, "GPS position"), (0xA005, "interoperability tags"), (0x8769, "camera settings (Exif IFD)"))


def _salvaged_exif_bytes(ex: Image.Exif, original: bytes | None, dropped: list[str]) -> bytes:
    """``_exif_bytes(ex, original)``, or, where Pillow cannot write the EXIF back (a tag in a type its tables
    do not expect: a GPSAltitude stored as a signed rational, a text where a number belongs), the EXIF without
    the sub-IFDs that hold it, tried in turn; what was left out is added to ``dropped``. Edits ``ex``."""
    try:
        return _exif_bytes(ex, original)
    except Exception:  # noqa: BLE001 - Pillow's errors for such tags vary (struct, Type, Attribute, Value)
        pass
    for pointer, what in _EXIF_PARTS:
        try:
            if pointer == 0xA005:
                sub = ex.get_ifd(0x8769) if 0x8769 in ex else {}
                if pointer not in sub:
                    continue
                del sub[pointer]
            elif pointer in ex:
                del ex[pointer]
            else:
                continue
        except Exception:  # noqa: BLE001 - a sub-IFD that cannot even be read: the next one
            continue
        dropped.append(what)
        try:
            return _exif_bytes(ex, None)
        except Exception:  # noqa: BLE001
            continue
    raise ValueError("an EXIF Pillow cannot write back")


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, ...) array, as a viewer would display it."""
    if orientation == 2:
        arr = arr[:, ::-1]
    elif orientation == 3:
        arr = arr[::-1, ::-1]
    elif orientation == 4:
        arr = arr[::-1]
    elif orientation == 5:
        arr = arr.swapaxes(0, 1)
    elif orientation == 6:
        arr = np.rot90(arr, k=-1)
    elif orientation == 7:
        arr = arr.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:
        arr = np.rot90(arr, k=1)
    return np.ascontiguousarray(arr)


def _finish(
    im: Image.Image,
    rgb: np.ndarray,
    alpha: np.ndarray | None,
    bit_depth: int,
    grayscale: bool,
    mode: str,
    *,
    icc: bytes | None = None,
    fmt: str,
    n_frames: int,
    name: str,
    exif_bytes: bytes | None = None,
    xmp_bytes: bytes | None = None,
    turned: int = 1,
    comments: dict[str, str] | None = None,
    iptc_bytes: bytes | None = None,
) -> LoadedImage:
    # exif_bytes, xmp_bytes and iptc_bytes come together from our own PNG chunk walk (b"": none), else from Pillow
    xmp = _xmp_of(im) if exif_bytes is None else (xmp_bytes or None)
    exif, orientation, exif_lost = _exif_and_orientation(im, exif_bytes, xmp)
    if icc is None and mode != "CMYK":
        icc = _icc_of(im)
    rgb = _orient(np.asarray(rgb, dtype=np.float32), orientation)
    if alpha is not None:
        alpha = _orient(np.asarray(alpha, dtype=np.float32), orientation)
    dpi = _dpi_of(im)
    # the pixels were turned a quarter, here or by Pillow as it loads them (TIFF): so is the density
    quarter = orientation in (5, 6, 7, 8) or turned in (5, 6, 7, 8)
    if dpi and quarter:
        dpi = (dpi[1], dpi[0])
    if dpi is None and exif:  # WebP, AVIF, a PNG without pHYs: the density only in the EXIF (turned with it)
        dpi = _exif_dpi(exif)
    png_colour = {k: im.info[k] for k in _PNG_COLOUR_KEYS if k in im.info} if fmt == "PNG" else None
    if comments is None:
        comments = _comments_of(im, fmt)
    iptc = _iptc_of(im, fmt) if iptc_bytes is None else (iptc_bytes or None)
    photoshop = _clipping_paths_of(im, fmt)
    extension, note = None, None
    if fmt in ("JPEG", "MPO") and xmp:
        extension, xmp, note = _xmp_extension_of(im, xmp, name)
    loaded = LoadedImage(
        rgb=rgb,
        alpha=alpha,
        bit_depth=bit_depth,
        grayscale=grayscale,
        mode=mode,
        format=fmt,
        icc_profile=icc,
        exif=exif,
        n_frames=n_frames,
        dpi=dpi,
        xmp=_prepare_xmp(xmp, quarter_turn=quarter) if xmp else None,
        xmp_extension=_prepare_xmp(extension, quarter_turn=quarter) if extension else None,
        png_colour=png_colour or None,
        comments=comments or None,
        iptc=iptc,
        photoshop=photoshop,
    )
    if note:
        loaded.notes.append(note)
    if exif_lost:
        loaded.notes.append(_exif_lost_note(name, exif_lost))
    return loaded


def _exif_lost_note(name: str, parts: list[str]) -> str:
    """The note for the parts of an EXIF left out because Pillow cannot write them back."""
    if parts == ["all of it"]:
        return f"{name}: the EXIF metadata is left out: it holds values of types that cannot be written back"
    named = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return (
        f"{name}: the EXIF's {named} {'is' if len(parts) == 1 else 'are'} left out: a tag there has a value of a "
        "type EXIF does not give it, which cannot be written back"
    )


def _icc_of(im: Image.Image) -> bytes | None:
    """The ICC profile Pillow read, where it is bytes (a TIFF's tag 34675 of another type gave an int, a
    rational or text, which failed the write after the whole upscale)."""
    icc = im.info.get("icc_profile")
    return bytes(icc) if isinstance(icc, (bytes, bytearray)) and icc else None


# text keys an upscale does not carry as text: XMP and EXIF go their own ways (updated), srgan's own
# keys are written anew (a stale "srgan:blend" must not outlive the run that wrote it)
# ImageMagick's date:* keys are the old file's times, not the picture's: not carried into a new file
_NOT_COMMENTS = (
    _XMP_KEY.decode(),
    "Raw profile type exif",
    "Raw profile type APP1",
    "Raw profile type xmp",  # XMP as ImageMagick keeps it: its orientation and size would be stale
    "Raw profile type icc",  # the ICC profile goes its own way (it may be dropped or converted)
    "Raw profile type icm",
    "Raw profile type iptc",  # IPTC-IIM as ImageMagick and exiftool keep it in a PNG: it goes its own way
    "Software",
    "date:create",
    "date:modify",
    "date:timestamp",
)


def _latin1_if_not_utf8(text: str) -> str:
    """A comment read with its non-UTF-8 bytes kept as surrogates, as the latin-1 text of those
    bytes (PNG's tEXt is latin-1: the bytes are written as they were); other text as it is."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("latin-1")


def _own_comments(texts: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in texts.items()
        if isinstance(k, str) and isinstance(v, str) and k not in _NOT_COMMENTS and not k.startswith("srgan:")
    }


def _comments_of(im: Image.Image, fmt: str) -> dict[str, str]:
    """A PNG's text chunks, a JPEG's or GIF's comment (see ``LoadedImage.comments``)."""
    try:
        if fmt == "PNG":
            return _own_comments(dict(getattr(im, "text", None) or {}))
        comment = im.info.get("comment") if fmt in ("JPEG", "GIF") else None
        if isinstance(comment, bytes):  # bytes that are not UTF-8 kept as surrogates: written back as they were
            comment = comment.decode("utf-8", "surrogateescape")
        comment = comment.rstrip("\x00") if isinstance(comment, str) else ""
        if fmt == "GIF":  # srgan's mark from an earlier upscale is written anew, not carried as text
            comment = split_gif_mark(comment)[0]
        return {"Comment": comment} if comment.strip() else {}
    except Exception:  # noqa: BLE001 - text is a courtesy: damaged chunks leave it out, not the image
        return {}


def _gif_comment(comment: str | None, text: dict[str, str]) -> str | None:
    """A GIF's comment: the input's comment, then ``text`` as "key: value" lines (Software first),
    which is how GIF output records the model and scale (it has no other place for text)."""
    if not text:
        return comment
    keys = sorted(text, key=lambda k: k != "Software")
    mark = "\n".join(f"{k}: {' '.join(text[k].splitlines())}" for k in keys)  # one line each
    return f"{comment}\n{mark}" if comment else mark


def split_gif_mark(comment: str | bytes | None) -> tuple[str, dict[str, str]]:
    """A GIF comment split into the text before srgan's mark and the mark's keys ({} when it has none):
    the lines an srgan write appends (see ``_gif_comment``), from "Software: srgan ..." to the end,
    each after it a "srgan:" key."""
    if isinstance(comment, bytes):
        comment = comment.decode("utf-8", "surrogateescape")
    if not isinstance(comment, str):
        return "", {}
    lines = comment.rstrip("\x00").split("\n")
    for i, line in enumerate(lines):
        if line.startswith("Software: srgan ") and all(rest.startswith("srgan:") for rest in lines[i + 1 :]):
            mark = dict(entry.split(": ", 1) for entry in lines[i:] if ": " in entry)
            return "\n".join(lines[:i]), mark
    return comment, {}


def _xmp_of(im: Image.Image) -> bytes | None:
    """The XMP packet Pillow read (JPEG APP1, PNG iTXt, WebP XMP chunk, TIFF tag 700), as bytes."""
    xmp = im.info.get("xmp")
    if isinstance(xmp, tuple) and len(xmp) == 1:
        xmp = xmp[0]
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if not xmp:  # a PNG's tEXt or zTXt, whose bytes Pillow decoded as latin-1: the packet's UTF-8 bytes back
        from PIL import PngImagePlugin

        text = im.info.get(_XMP_KEY.decode())
        if isinstance(text, str):
            xmp = text.encode("utf-8" if isinstance(text, PngImagePlugin.iTXt) else "latin-1", "replace")
    if not xmp and im.format == "GIF":
        xmp = _gif_xmp(im)
    return bytes(xmp) if isinstance(xmp, (bytes, bytearray)) and xmp.strip(b"\x00 \t\r\n") else None


_GIF_XMP_MAX = 1 << 24  # read at most this much of a GIF's XMP block (16 MB; a packet is some KB)


def _gif_xmp(im: Image.Image) -> bytes | None:
    """A GIF's XMP packet (its "XMP DataXMP" application extension, as Photoshop and exiftool write it), which
    Pillow leaves in the file: its ``info["extension"]`` names only the last application extension before
    the image (an ICC profile or the loop count after the XMP hid it). The blocks are walked from the start;
    the packet is stored raw, up to the 258-byte "magic trailer" that makes it read as GIF sub-blocks."""
    fp = getattr(im, "fp", None) or getattr(im, "_fp", None)  # a GIF keeps its file as _fp once loaded
    try:
        here = fp.tell()
        try:
            at = _gif_xmp_offset(fp)
            if at is None:
                return None
            fp.seek(at)
            data = fp.read(_GIF_XMP_MAX)
        finally:
            fp.seek(here)
    except (AttributeError, OSError, ValueError, TypeError, struct.error):  # the caller's image, its file closed
        return None
    end = data.find(b"<?xpacket end=")
    close = data.find(b"?>", end) if end >= 0 else -1
    if close >= 0:
        return data[: close + 2]
    trailer = data.find(b"\x01\xff\xfe\xfd\xfc")
    return data[:trailer] if trailer > 0 else None


def _gif_xmp_offset(fp) -> int | None:
    """Where the XMP packet of the GIF in ``fp`` starts (after its extension's "XMP DataXMP"), or None."""
    fp.seek(0)
    head = fp.read(13)
    if len(head) < 13 or head[:3] != b"GIF":
        return None
    fp.seek(13 + (3 << ((head[10] & 7) + 1) if head[10] & 0x80 else 0))
    while True:
        kind = fp.read(1)
        if kind == b"\x21":  # an extension: its label, then sub-blocks
            label = fp.read(1)
            if label == b"\xff":
                first = fp.read(1)
                if first == b"\x0b":
                    name = fp.read(11)
                    if name == b"XMP DataXMP":
                        return fp.tell()
                    fp.seek(-12, os.SEEK_CUR)
                else:
                    fp.seek(-1, os.SEEK_CUR)
            _skip_gif_blocks(fp)
        elif kind == b"\x2c":  # an image: its descriptor, local colour table, LZW code size, sub-blocks
            descriptor = fp.read(9)
            if len(descriptor) < 9:
                return None
            fp.seek((3 << ((descriptor[8] & 7) + 1) if descriptor[8] & 0x80 else 0) + 1, os.SEEK_CUR)
            _skip_gif_blocks(fp)
        else:  # the trailer, or the end of the data
            return None


def _skip_gif_blocks(fp) -> None:
    while (size := fp.read(1)) and size != b"\x00":
        fp.seek(size[0], os.SEEK_CUR)


def _xmp_extension_of(im: Image.Image, xmp: bytes, name: str) -> tuple[bytes | None, bytes, str | None]:
    """A JPEG's extended XMP: (the extension packet, the main packet, a note). XMP over 64 KB (a long
    description exiftool moved out, a phone's depth map) goes on in APP1 segments of its own, named by
    the MD5 its main packet's xmpNote:HasExtendedXMP gives; srgan kept the main packet alone, pointing
    at what was gone. Where the extension is missing or damaged, the pointer is dropped, saying so."""
    pointer = _HAS_EXTENDED_XMP.search(xmp) if b"HasExtendedXMP" in xmp else None
    segments = [b for m, b in getattr(im, "applist", []) if m == "APP1" and b.startswith(_XMP_EXTENSION_HEAD)]
    if pointer is None and not segments:
        return None, xmp, None
    guid = (pointer[2] or pointer[3] or pointer[5] or b"").strip() if pointer else b""
    parts: dict[int, bytes] = {}
    total = None
    head = len(_XMP_EXTENSION_HEAD)
    for seg in segments:
        if len(seg) < head + 40 or seg[head : head + 32] != guid:
            continue
        size, offset = struct.unpack(">II", seg[head + 32 : head + 40])
        total = size if total is None else total
        if size == total:
            parts[offset] = seg[head + 40 :]
    data, at = bytearray(), 0
    for offset in sorted(parts):
        if offset != at:
            break
        data += parts[offset]
        at = len(data)
    if guid and total is not None and len(data) == total and hashlib.md5(data).hexdigest().upper().encode() == guid:
        return bytes(data), xmp, None
    what = "is missing or damaged" if pointer else "belongs to no main packet"
    return None, _HAS_EXTENDED_XMP.sub(b"", xmp), f"{name}: the extended XMP (after the first 64 KB) {what}: left out"


def _xmp_merged(xmp: bytes, extension: bytes) -> bytes | None:
    """The main XMP packet with its extension's descriptions moved in (for formats without JPEG's 64 KB
    limit), its pointer to the extension dropped; None where the two do not fit together (other RDF
    prefixes, a damaged packet)."""
    ends, ext_ends = list(_RDF_END.finditer(xmp)), list(_RDF_END.finditer(extension))
    if not ends or not ext_ends or ends[-1][1] != ext_ends[-1][1]:
        return None
    prefix = re.escape(ends[-1][1])
    start = re.search(rb"<" + prefix + rb":RDF(?:\s[^<>]*)?>", extension)
    if start is None or start.end() > ext_ends[-1].start():
        return None
    inner = extension[start.end() : ext_ends[-1].start()]
    main = _HAS_EXTENDED_XMP.sub(b"", xmp)
    end = list(_RDF_END.finditer(main))[-1]
    return main[: end.start()] + inner.strip(b"\r\n") + b"\n" + main[end.start() :]


def _xmp_extension_segments(extension: bytes, guid: bytes) -> bytes:
    """``extension`` as a JPEG's extended-XMP APP1 segments, ready to write after the main packet."""
    out = []
    step = 65000
    for at in range(0, len(extension), step):
        body = _XMP_EXTENSION_HEAD + guid + struct.pack(">II", len(extension), at) + extension[at : at + step]
        out.append(b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body)
    return b"".join(out)


_IPTC_TAG = 33723  # TIFF's IPTC-NAA tag
_PHOTOSHOP_TAG = 34377  # TIFF's Photoshop image resources
_IPTC_RESOURCE = 0x0404  # the Photoshop image resource of IPTC-IIM (JPEG APP13, TIFF tag 34377)
_RAW_IPTC_KEY = "Raw profile type iptc"


def _iptc_of(im: Image.Image, fmt: str) -> bytes | None:
    """The IPTC-IIM records Pillow read: a JPEG's APP13 resource, a TIFF's tag 33723 (or its Photoshop
    resources), a PNG's "Raw profile type iptc" text; None where there are none, or they are damaged."""
    try:
        data = None
        if fmt in ("JPEG", "MPO"):
            data = (im.info.get("photoshop") or {}).get(_IPTC_RESOURCE)
            # over 64 KB (exiftool writes long keyword lists so), the resources go on in further APP13
            # segments, each behind its own header: Pillow's parse of each alone kept the first part
            if sum(m == "APP13" for m, _ in getattr(im, "applist", [])) > 1:
                data = _photoshop_resource(_photoshop_resources_of(im, fmt), _IPTC_RESOURCE) or data
        elif fmt == "TIFF":
            tags = getattr(im, "tag_v2", None)
            raw = getattr(tags, "_tagdata", {})  # the tag's bytes as stored: Photoshop writes it as LONGs
            data = raw.get(_IPTC_TAG)
            if data is None and tags is not None and isinstance(tags.get(_IPTC_TAG), bytes):
                data = tags.get(_IPTC_TAG)
            if data is None and _PHOTOSHOP_TAG in raw:
                data = _photoshop_resource(raw[_PHOTOSHOP_TAG], _IPTC_RESOURCE)
        elif fmt == "PNG":
            text = im.info.get(_RAW_IPTC_KEY)
            data = _raw_profile_iptc(text.encode("latin-1", "replace")) if isinstance(text, str) else None
        return _iim(data) if isinstance(data, (bytes, bytearray)) else None
    except Exception:  # noqa: BLE001 - damaged metadata is dropped, the pixels are still good
        return None


def _photoshop_resources_of(im: Image.Image, fmt: str) -> bytes:
    """The block of Photoshop image resources of a JPEG (its APP13 segments, put together) or a TIFF (tag
    34377); b"" where there is none."""
    if fmt in ("JPEG", "MPO"):
        parts = [b[14:] for m, b in getattr(im, "applist", []) if m == "APP13" and b.startswith(_PHOTOSHOP_HEAD)]
        return b"".join(parts)
    if fmt == "TIFF":
        data = getattr(getattr(im, "tag_v2", None), "_tagdata", {}).get(_PHOTOSHOP_TAG)
        return bytes(data) if isinstance(data, (bytes, bytearray)) else b""
    return b""


def _clipping_paths_of(im: Image.Image, fmt: str) -> bytes | None:
    """Photoshop's path resources (2000-2997: saved paths, 2999: which is the clipping path) of a JPEG or
    TIFF, as a block of resources as they were written; None where there are none."""
    try:
        data = _photoshop_resources_of(im, fmt)
        out, pos = bytearray(), 0
        while pos + 12 <= len(data) and data[pos : pos + 4] == b"8BIM":
            ident, name_size = int.from_bytes(data[pos + 4 : pos + 6], "big"), data[pos + 6] + 1
            start = pos + 6 + name_size + (name_size & 1)
            size = int.from_bytes(data[start : start + 4], "big")
            end = start + 4 + size + (size & 1)
            if start + 4 + size > len(data):
                break
            if 2000 <= ident <= 2997 or ident == 2999:
                out += data[pos : start + 4 + size] + b"\x00" * (size & 1)
            pos = end
        return bytes(out) or None
    except Exception:  # noqa: BLE001 - damaged metadata is dropped, the pixels are still good
        return None


def _iim(data: bytes) -> bytes | None:
    """``data`` up to the end of its last whole IPTC-IIM dataset (a TIFF's LONG padding, a damaged tail cut
    off); None where it does not start with one."""
    pos = 0
    while pos + 5 <= len(data) and data[pos] == 0x1C:
        size, head = int.from_bytes(data[pos + 3 : pos + 5], "big"), 5
        if size & 0x8000:  # an extended dataset: the length is in the next (size & 0x7FFF) bytes
            head += size & 0x7FFF
            if head > 9 or pos + head > len(data):
                break
            size = int.from_bytes(data[pos + 5 : pos + head], "big")
        if pos + head + size > len(data):
            break
        pos += head + size
    return bytes(data[:pos]) if pos else None


def _photoshop_resource(data: bytes, wanted: int) -> bytes | None:
    """One resource of a block of Photoshop image resources ("8BIM", id, Pascal name, size, data)."""
    pos = 0
    while pos + 12 <= len(data) and data[pos : pos + 4] == b"8BIM":
        ident, name_size = int.from_bytes(data[pos + 4 : pos + 6], "big"), data[pos + 6] + 1
        start = pos + 6 + name_size + (name_size & 1)
        size = int.from_bytes(data[start : start + 4], "big")
        if ident == wanted:
            return bytes(data[start + 4 : start + 4 + size])
        pos = start + 4 + size + (size & 1)
    return None


def _iptc_resources(iim: bytes) -> bytes:
    """``iim`` as a block of Photoshop image resources (resource 0x0404), as JPEG's APP13 and ImageMagick's PNG
    raw profile hold it."""
    return b"8BIM" + struct.pack(">HHI", _IPTC_RESOURCE, 0, len(iim)) + iim + b"\x00" * (len(iim) & 1)


def _raw_profile_iptc(text: bytes) -> bytes | None:
    """The IPTC-IIM records of ImageMagick's (and exiftool's) "Raw profile type iptc" text: hex of Photoshop
    resources, or, from older ImageMagick, of the records themselves."""
    data = _raw_profile(text)
    return _photoshop_resource(data, _IPTC_RESOURCE) if data.startswith(b"8BIM") else data or None


def _raw_profile_text(kind: str, data: bytes) -> str:
    """``data`` as ImageMagick's raw-profile text: "\\n<kind>\\n<length>\\n" and hex lines of 72 digits."""
    digits = data.hex()
    lines = "\n".join(digits[i : i + 72] for i in range(0, len(digits), 72))
    return f"\n{kind}\n{len(data):8d}\n{lines}\n"


# Pillow's own pattern (Image.getexif): an XMP orientation it applies to the pixels as EXIF's
# tiff:Orientation="6", ='6', = "6" or <tiff:Orientation> 6 </...>: Pillow reads the first and the element
# alone, and a single-quoted 6 left in an output said "rotate" of pixels already turned upright
_XMP_VALUE_START = rb"""(?:\s*=\s*["']\s*|\s*>\s*)"""
_XMP_ORIENTATION_READ = re.compile(rb"tiff:Orientation(" + _XMP_VALUE_START + rb")([0-9])")
_XMP_ORIENTATION = re.compile(rb"(tiff:Orientation" + _XMP_VALUE_START + rb")[0-9]+")
_XMP_RESOLUTION = re.compile(rb"(tiff:([XY])Resolution" + _XMP_VALUE_START + rb")([0-9./]+)")


def _prepare_xmp(xmp: bytes, width: int = 0, height: int = 0, quarter_turn: bool = False) -> bytes:
    """An XMP packet for upright pixels: tiff:Orientation 1 and, given the size, the pixel dimensions
    it records (exif:PixelXDimension/PixelYDimension, tiff:ImageWidth/ImageLength) set to it; with
    ``quarter_turn`` (the pixels were turned by 90 degrees), tiff:XResolution and tiff:YResolution
    swapped, as the EXIF's and the dpi are (they disagreed).

    Only values written as attributes (either quote) or as elements of plain text, with the usual
    prefixes, are changed; the rest of the packet (rights, keywords, edits) is kept byte for byte.
    """
    xmp = _XMP_ORIENTATION.sub(rb"\g<1>1", xmp)
    if quarter_turn:
        found = {m[2]: m[3] for m in _XMP_RESOLUTION.finditer(xmp)}
        if set(found) == {b"X", b"Y"} and found[b"X"] != found[b"Y"]:
            swap = {b"X": found[b"Y"], b"Y": found[b"X"]}
            xmp = _XMP_RESOLUTION.sub(lambda m: m[1] + swap[m[2]], xmp)
    if width and height:
        for field, value in (
            (b"exif:PixelXDimension", width),
            (b"exif:PixelYDimension", height),
            (b"tiff:ImageWidth", width),
            (b"tiff:ImageLength", height),
        ):
            xmp = re.sub(b"(" + field + _XMP_VALUE_START + rb")[0-9]+", rb"\g<1>" + str(value).encode(), xmp)
    return xmp


# srgan's XMP namespace: the record of the model and scale in JPEG, WebP, AVIF and TIFF output. A name, not an
# address; it must never change, or readers lose the records written before.
SRGAN_XMP_NS = "urn:srgan-cli:xmp:1.0/"
_RDF_NS = b"http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_RDF_END = re.compile(rb"</([A-Za-z_][\w.-]*):RDF\s*>")
# namespace declarations: srgan's record is found by its namespace, not by the prefix "srgan", which a user's
# packet may bind to another. The patterns stop at "<" (no attribute value holds one): linear in the packet,
# however damaged (a backtracking ".*?" took 13 s on 213 KB of unclosed elements).
_XMLNS = re.compile(rb"""xmlns:([A-Za-z_][\w.-]*)\s*=\s*(?:"([^"<]*)"|'([^'<]*)')""")
_ATTRIBUTE_VALUE = rb"""(?:"[^"<]*"|'[^'<]*')"""
_START_TAG = re.compile(rb"<[A-Za-z_][^<>]*>")
_XML_SPECIAL = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}


def _xmp_without_record(xmp: bytes) -> bytes:
    """An XMP packet without srgan's record of the model and scale (``_xmp_with_record``): an earlier
    upscale's, which the new output's record replaces (PNG output records them in its text chunks). The
    rest of the packet is kept byte for byte, a user's properties under a prefix "srgan" of another
    namespace too."""
    ns = SRGAN_XMP_NS.encode()
    if ns not in xmp:
        return xmp
    bound: dict[bytes, set[bytes]] = {}
    for found in _XMLNS.finditer(xmp):
        bound.setdefault(found[1], set()).add(found[2] if found[2] is not None else found[3])
    for prefix in [p for p, uris in bound.items() if ns in uris]:
        q = re.escape(prefix)
        # the record as _xmp_with_record writes it: an rdf:Description that declares srgan's namespace and
        # holds nothing but its properties
        block = re.compile(
            rb"<([A-Za-z_][\w.-]*):Description(?=[^<>]*\sxmlns:" + q + rb"\s*=\s*[\"']" + re.escape(ns) + rb"[\"'])"
            rb"(?:\s+(?:xmlns:[\w.-]+|[\w.-]+:about|" + q + rb":[\w.-]+)\s*=\s*" + _ATTRIBUTE_VALUE + rb")+"
            rb"\s*(?:/>|>\s*</\1:Description\s*>)[ \t]*\n?"
        )
        xmp = block.sub(b"", xmp)
        if bound[prefix] != {ns}:  # the prefix also names another namespace somewhere: its properties stay
            continue
        # srgan's properties where another tool (exiftool) moved them into its own rdf:Description:
        # elements of plain text, or attributes in a start tag
        element = re.compile(rb"<" + q + rb":([\w.-]+)(?:\s[^<>]*)?(?:/>|>[^<]*</" + q + rb":\1\s*>)")
        attribute = re.compile(rb"\s+" + q + rb":[\w.-]+\s*=\s*" + _ATTRIBUTE_VALUE)
        xmp = element.sub(b"", xmp)
        xmp = _START_TAG.sub(lambda tag, attribute=attribute: attribute.sub(b"", tag[0]), xmp)
    return xmp


def _xmp_unpadded(xmp: bytes) -> bytes:
    """``xmp`` without the whitespace an XMP writer leaves before the packet's trailer (``<?xpacket end=...?>``),
    room to edit the packet in place."""
    start = xmp.rfind(b"<?xpacket")
    if start < 0 or not re.match(rb"<\?xpacket\s+end=", xmp[start:]):
        return xmp
    return xmp[:start].rstrip(b" \t\r\n") + b"\n" + xmp[start:]


def _xml_text(value: str) -> str:
    """``value`` for an XML attribute: the special characters as references, and the characters XML 1.0
    cannot hold at all (control characters, lone surrogates) written as \\xNN, as messages write them."""
    out = []
    for ch in value:
        if ch in _XML_SPECIAL:
            out.append(_XML_SPECIAL[ch])
        elif ch < " " or "\ud800" <= ch <= "\udfff" or ch in "\ufffe\uffff":
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def _xmp_with_record(xmp: bytes | None, record: dict[str, str]) -> bytes | None:
    """An XMP packet holding srgan's record of the model and scale (``record``: "srgan:model" -> "x4",
    ...) as properties of srgan's own namespace (``SRGAN_XMP_NS``), in an rdf:Description of its own
    added to ``xmp`` (an earlier record replaced; the rest kept byte for byte), or a packet of its own
    where there is none. None where it cannot be added to ``xmp``: no
    prefixed rdf:RDF end tag in it (a damaged packet, RDF in the default namespace, a UTF-16 packet).

    It goes there, not into EXIF ImageDescription, XMP dc:description or an IPTC caption: those hold
    what the picture shows, and a photo library shows whatever it finds in them as its caption."""
    properties = []
    for key, value in record.items():
        name = re.sub(r"[^\w.-]", "_", key.removeprefix("srgan:"), flags=re.ASCII)
        if name and not (name[0].isalpha() or name[0] == "_"):
            name = "_" + name
        if name:
            properties.append(f' srgan:{name}="{_xml_text(value)}"')
    if xmp is None:
        xmp = (
            b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
            b'<x:xmpmeta xmlns:x="adobe:ns:meta/">\n<rdf:RDF xmlns:rdf="' + _RDF_NS + b'">\n</rdf:RDF>\n</x:xmpmeta>\n'
            b'<?xpacket end="w"?>'
        )
    else:
        xmp = _xmp_without_record(xmp)
    ends = list(_RDF_END.finditer(xmp))
    if not ends:
        return None
    end = ends[-1]  # the packet's own, after any in its text
    rdf = end[1].decode("ascii")  # the prefix the packet binds RDF's namespace to: "rdf", nearly always
    # the about value of the packet's own descriptions: XMP has one per packet ("uuid:..." from some writers)
    about = ""
    first = re.search(rb"<" + re.escape(end[1]) + rb":Description\b[^>]*>", xmp)
    found = first and re.search(rb"\s" + re.escape(end[1]) + rb":about\s*=\s*(\"[^\"]*\"|'[^']*')", first[0])
    if found:  # as written there (references and all), its quote escaped for ours
        about = found[1][1:-1].decode("utf-8", "replace").replace('"', "&quot;")
    block = f'<{rdf}:Description {rdf}:about="{about}" xmlns:srgan="{SRGAN_XMP_NS}"{"".join(properties)}/>\n'
    return xmp[: end.start()] + block.encode("utf-8") + xmp[end.start() :]


def _dpi_of(im: Image.Image) -> tuple[float, float] | None:
    """The pixel density Pillow read (PNG pHYs, JPEG JFIF or EXIF, TIFF, BMP), if it is a real one."""
    try:
        x, y = (float(v) for v in im.info["dpi"])
    except (KeyError, TypeError, ValueError):
        return None
    return _real_dpi(x, y)


_RESOLUTION_UNIT = 0x0128
_PER_UNIT = {2: 1.0, 3: 2.54}  # EXIF's ResolutionUnit: 2 inch (also when the tag is absent), 3 centimetre


def _exif_dpi(exif: bytes) -> tuple[float, float] | None:
    """The density an EXIF's XResolution, YResolution and ResolutionUnit record, in dots per inch, if it is
    a real one: the only record of it in a WebP or AVIF (Pillow reads a JPEG's itself). Unit 1 (none) is an
    aspect ratio, no density."""
    try:
        ex = Image.Exif()
        ex.load(exif)
        per_inch = _PER_UNIT.get(int(ex.get(_RESOLUTION_UNIT, 2) or 0))
        if per_inch is None or _X_RESOLUTION not in ex or _Y_RESOLUTION not in ex:
            return None
        x, y = (float(ex[tag]) * per_inch for tag in (_X_RESOLUTION, _Y_RESOLUTION))
    except Exception:  # noqa: BLE001 - a damaged EXIF records no density
        return None
    return _real_dpi(x, y)


def _real_dpi(x: float, y: float) -> tuple[float, float] | None:
    # unset: 0, or 1 (aspect-only headers; Pillow's value for a TIFF without resolution tags, which
    # written back claimed a 1-dpi print, a 92 px image 92 inches wide), or nonsense
    if not (1.5 <= x <= 1e6 and 1.5 <= y <= 1e6):
        return None
    # PNG stores whole pixels per metre (steps of 0.0254 dpi): 300 dpi reads back as 299.9994
    return tuple(float(round(v)) if abs(v - round(v)) < 0.02 else v for v in (x, y))  # type: ignore[return-value]


# ----------------------------------------------------------------- 16-bit PNG decoding

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_chunks(data: bytes, name: str) -> Iterator[tuple[bytes, bytes]]:
    pos = len(_PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise SrganError(f"{name}: truncated PNG (the file ends before its IEND chunk)")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise SrganError(f"{name}: truncated PNG (chunk {ctype!r} runs past the end of the file)")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(ctype + body) & 0xFFFFFFFF != crc:
            raise SrganError(f"{name}: corrupt PNG (checksum error in chunk {ctype!r})")
        yield ctype, body
        if ctype == b"IEND":
            return
        pos = end


def _png_is_wide_colour(head: bytes) -> bool:
    """A PNG header declaring 16-bit RGB, RGBA or gray+alpha (Pillow keeps only 8 bits of those)."""
    return len(head) >= 29 and head.startswith(_PNG_SIGNATURE) and head[24] == 16 and head[25] in (2, 4, 6)


def _png_rgb16(data: bytes, name: str):
    """Decode a 16-bit colour (or gray+alpha) PNG that Pillow would cut to 8 bits; else None."""
    if len(data) < 33 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, ctype, _comp, _filt, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if depth != 16 or ctype not in (2, 4, 6):
        return None
    from PIL import PngImagePlugin

    channels = {2: 3, 4: 2, 6: 4}[ctype]
    idat = []
    trns = None
    exif = xmp = raw_exif = b""
    texts: dict[str, str] = {}
    # Pillow's limits on text, as it reads an 8-bit PNG (read now: a program may have raised them): a
    # 160 KB file's text inflated to 168 MB, kept as comments and written out again
    chunk_limit, memory_limit, memory = PngImagePlugin.MAX_TEXT_CHUNK, PngImagePlugin.MAX_TEXT_MEMORY, 0
    for kind, body in _png_chunks(data, name):
        if kind in (b"tEXt", b"zTXt", b"iTXt"):
            try:
                if kind == b"iTXt":
                    text = _itxt_text(body, chunk_limit)
                else:
                    text = _text_chunk(body, kind == b"zTXt", chunk_limit)
            except ValueError as exc:  # in the words the 8-bit path gives
                raise SrganError(
                    f"{name}: cannot decode the PNG data ({exc}); the file is truncated or corrupt"
                ) from None
        if kind == b"IDAT":
            idat.append(body)
        elif kind == b"eXIf":
            exif = b"Exif\x00\x00" + body
        elif kind in (b"tEXt", b"zTXt", b"iTXt") and body.startswith(_RAW_EXIF_KEY + b"\x00"):
            raw_exif = _raw_profile_exif(text)
        elif kind == b"iTXt" and body.startswith(_XMP_KEY + b"\x00"):
            xmp = text or xmp
        elif kind in (b"tEXt", b"zTXt") and body.startswith(_XMP_KEY + b"\x00") and not xmp:
            xmp = text  # as Pillow reads them at 8 bits
        elif kind == b"tRNS" and ctype == 2 and len(body) >= 6:
            trns = np.frombuffer(body[:6], dtype=">u2")
        if kind in (b"tEXt", b"zTXt", b"iTXt") and not body.startswith(b"\x00"):  # no keyword: dropped, as Pillow does
            key = body.split(b"\x00", 1)[0].decode("latin-1")
            texts[key] = text.decode("utf-8" if kind == b"iTXt" else "latin-1", "replace")
            memory += len(texts[key])
            if memory > memory_limit:
                raise SrganError(
                    f"{name}: cannot decode the PNG data (Too much memory used in text chunks: "
                    f"{memory}>MAX_TEXT_MEMORY); the file is truncated or corrupt"
                )
    bpp = 2 * channels
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    geometry = []
    expected = 0
    for x0, y0, dx, dy in passes:
        pw = (width - x0 + dx - 1) // dx if width > x0 else 0
        ph = (height - y0 + dy - 1) // dy if height > y0 else 0
        geometry.append((x0, y0, dx, dy, pw, ph))
        if pw and ph:
            expected += ph * (1 + pw * bpp)
    dec = zlib.decompressobj()
    raw = dec.decompress(b"".join(idat), expected + 1)
    if len(raw) < expected:
        raise SrganError(f"{name}: truncated PNG (the image data ends early)")
    out = np.zeros((height, width, channels), dtype=np.uint16)
    pos = 0
    for x0, y0, dx, dy, pw, ph in geometry:
        if not (pw and ph):
            continue
        size = ph * (1 + pw * bpp)
        rows = np.frombuffer(raw, dtype=np.uint8, count=size, offset=pos).reshape(ph, 1 + pw * bpp)
        pos += size
        pixels = _png_unfilter(rows[:, 0], rows[:, 1:].reshape(ph, pw, bpp), name)
        out[y0::dy, x0::dx] = pixels.view(">u2").reshape(ph, pw, channels).astype(np.uint16)
    plane = out.astype(np.float32) / 65535.0
    alpha = None
    if ctype == 4:
        rgb, alpha = np.repeat(plane[..., :1], 3, axis=2), plane[..., 1]
    else:
        rgb = plane[..., :3]
        if ctype == 6:
            alpha = plane[..., 3]
        elif trns is not None:
            alpha = (~np.all(out == trns.astype(np.uint16), axis=2)).astype(np.float32)
    mode = {2: "RGB;16", 4: "LA;16", 6: "RGBA;16"}[ctype]
    iptc = _raw_profile_iptc(texts.get(_RAW_IPTC_KEY, "").encode("latin-1", "replace")) or b""
    return rgb, alpha, 16, ctype == 4, mode, exif or raw_exif, xmp, _own_comments(texts), iptc


# ImageMagick (and exiftool, for PNGs from before eXIf) keep EXIF as hex in a text chunk of this name:
# "\nexif\n<length>\n<hex lines>"; Pillow reads it too, where an 8-bit PNG has no eXIf chunk.
_RAW_EXIF_KEY = b"Raw profile type exif"


def _raw_profile(text: bytes) -> bytes:
    """The bytes of a raw-profile text ("\\n<kind>\\n<length>\\n<hex lines>"); b"" when malformed."""
    start = -1
    for _ in range(3):  # the hex starts after the third newline (a list of every line: 1.5 GB for 16 MB of them)
        start = text.find(b"\n", start + 1)
        if start < 0:
            return b""
    try:
        return bytes.fromhex(text[start + 1 :].replace(b"\n", b"").decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return b""


def _raw_profile_exif(text: bytes) -> bytes:
    """The EXIF bytes (with their "Exif" header) of a raw-profile text; b"" when malformed."""
    data = _raw_profile(text)
    return data if not data or data.startswith(b"Exif\x00\x00") else b"Exif\x00\x00" + data


def _text_chunk(body: bytes, compressed: bool, limit: int) -> bytes:
    """The text of a tEXt or zTXt chunk (keyword, [method,] text), inflated for zTXt; b"" when
    malformed; ValueError when it inflates to more than ``limit`` bytes."""
    try:
        _key, text = body.split(b"\x00", 1)
    except ValueError:
        return b""
    return _inflate(text[1:], limit) if compressed else text


def _inflate(data: bytes, limit: int) -> bytes:
    """``data`` inflated; b"" when malformed (as Pillow takes it); ValueError, in Pillow's words, when it
    would be larger than ``limit`` bytes."""
    inflate = zlib.decompressobj()
    try:
        text = inflate.decompress(data, limit)
    except zlib.error:
        return b""
    if inflate.unconsumed_tail:
        raise ValueError("Decompressed data too large for PngImagePlugin.MAX_TEXT_CHUNK")
    return text


def _itxt_text(body: bytes, limit: int) -> bytes:
    """The text of an iTXt chunk (keyword, flag, method, language, translated keyword, text), inflated
    if compressed; b"" when malformed; ValueError when, compressed, it inflates to more than ``limit`` bytes."""
    try:
        _key, rest = body.split(b"\x00", 1)
        compressed = rest[0]
        _lang, _translated, text = rest[2:].split(b"\x00", 2)
    except (ValueError, IndexError):
        return b""
    return _inflate(text, limit) if compressed else text


def _png_unfilter(ftypes: np.ndarray, filt: np.ndarray, name: str) -> np.ndarray:
    """Undo PNG row filters on (H, W, bpp) bytes.

    Sub/None/Up rows are vectorised per row. Average and Paeth depend on the pixel to the
    left, so those rows are swept along anti-diagonals of the whole image at once: every
    pixel on a diagonal depends only on the previous two diagonals.
    """
    if np.any(ftypes > 4):
        raise SrganError(f"{name}: corrupt PNG (unknown row filter type {int(ftypes.max())})")
    h, w, bpp = filt.shape
    out = np.zeros((h + 1, w + 1, bpp), dtype=np.uint8)  # row/column 0 are the zero border
    if not np.any(ftypes >= 3):
        for y in range(h):
            f = ftypes[y]
            if f == 1:
                out[y + 1, 1:] = np.cumsum(filt[y], axis=0, dtype=np.uint8)  # wraps modulo 256
            elif f == 2:
                out[y + 1, 1:] = filt[y] + out[y, 1:]
            else:
                out[y + 1, 1:] = filt[y]
        return out[1:, 1:]
    return _unfilter_sweep(ftypes, filt)


def _unfilter_sweep(ftypes: np.ndarray, filt: np.ndarray) -> np.ndarray:
    """The anti-diagonal sweep, on a skewed copy where each diagonal is one contiguous row.

    Pixel (y, x) lives at T[x + y + 2, k] with k = y + 1 (or x + 1 when the image is taller
    than wide, which keeps the copy at most about twice the image). Its left, upper and
    upper-left neighbours are then in the previous two rows of T, at k or k - 1, so every
    step works on slices; cells that are not pixels stay zero, which is PNG's border rule.
    """
    h, w, bpp = filt.shape
    by_row = h <= w
    length, other = (h, w) if by_row else (w, h)
    yy, xx = np.indices((h, w))
    diag = xx + yy + 2
    k = (yy if by_row else xx) + 1
    raw = np.zeros((h + w + 1, length + 1, bpp), dtype=np.uint8)
    raw[diag, k] = filt
    kinds = np.zeros((h + w + 1, length + 1), dtype=np.uint8)
    kinds[diag, k] = ftypes[yy]
    del yy, xx
    t = np.zeros_like(raw)
    for d in range(2, h + w + 1):
        k0 = max(0, d - 2 - (other - 1)) + 1
        k1 = min(length - 1, d - 2) + 2
        same = t[d - 1, k0:k1].astype(np.int16)
        shifted = t[d - 1, k0 - 1 : k1 - 1].astype(np.int16)
        c = t[d - 2, k0 - 1 : k1 - 1].astype(np.int16)
        a, b = (same, shifted) if by_row else (shifted, same)
        f = kinds[d, k0:k1, None]
        p = a + b - c
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
        pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))  # Paeth
        pred = np.where(f == 4, pred, np.where(f == 3, (a + b) >> 1, np.where(f == 2, b, np.where(f == 1, a, 0))))
        t[d, k0:k1] = (raw[d, k0:k1] + pred) & 0xFF
    return t[diag, k]


# ----------------------------------------------------------------- 16-bit PPM decoding


def _ppm_rgb16(im: Image.Image, whole_file, name: str):
    """A colour PPM of more than 8 bits a sample (P6 with a maxval over 255, as dcraw -4 and -6 write it,
    or its plain-text form P3), which Pillow cuts to 8 bits (16-bit PGM it keeps), at 16 bits; else None.
    Pillow has read the header: where the samples start, and the maxval they are scaled by."""
    try:
        codec, _extents, offset, args = im.tile[0]
        maxval = int(args[1])
    except (IndexError, TypeError, ValueError):
        return None
    if im.mode != "RGB" or codec not in ("ppm", "ppm_plain") or not 255 < maxval <= 65535:
        return None
    width, height = im.size
    count = width * height * 3
    data = whole_file()
    if codec == "ppm_plain":  # decimal numbers apart by white space; a comment runs to its line's end
        words = re.sub(rb"#[^\r\n]*", b" ", bytes(data[offset:])).split()
        if len(words) < count:
            raise SrganError(f"{name}: truncated PPM (the image data ends early)")
        try:
            samples = np.array(words[:count]).astype(np.uint32).reshape(height, width, 3)
        except ValueError:
            raise SrganError(f"{name}: cannot decode the PPM data (a sample is not a number)") from None
    else:
        if len(data) < offset + 2 * count:
            raise SrganError(f"{name}: truncated PPM (the image data ends early)")
        samples = np.frombuffer(data, dtype=">u2", count=count, offset=offset).reshape(height, width, 3)
    rgb = np.minimum(samples, maxval).astype(np.float32) / np.float32(maxval)
    return rgb, None, 16, False, "RGB;16"


# ----------------------------------------------------------------- 16-bit TIFF decoding


_TIFF_LIBTIFF_COMPRESSIONS = frozenset({1, 5, 8, 32773, 32946, 34925, 50000})  # none, LZW, deflate, ...
_TIFF_COMPRESSION = {1: "no compression", 5: "LZW", 7: "JPEG", 8: "deflate", 32773: "PackBits", 32946: "deflate"}
_TIFF_COMPRESSION.update({34925: "LZMA", 50000: "zstd"})
_TIFF_PHOTOMETRIC = {0: "gray", 1: "gray", 3: "palette", 5: "CMYK", 6: "YCbCr", 8: "CIELab", 9: "ICCLab", 10: "ITULab"}


def _tiff_rgb16(im: Image.Image, whole_file, name: str, notes: list[str]):
    """Decode a 16-bit RGB(A) TIFF that Pillow would cut to 8 bits; else None.

    Chunky strips, uncompressed or deflate, are decoded here with numpy and zlib. Other
    compressions (LZW, PackBits, zstd, ...) and tiles go through libtiff by presenting the
    file to Pillow as a 16-bit grayscale image spp times as wide (see _tiff_via_gray).
    Anything else falls back to Pillow's 8-bit decode, with a line in ``notes`` saying so (it
    was silent).
    """
    tags = getattr(im, "tag_v2", None)
    if tags is None:
        return None
    bits = tags.get(258)
    spp = _tag_int(tags, 277, 1)
    if spp not in (3, 4) or not bits or any(int(b) != 16 for b in np.atleast_1d(bits)):
        return None

    def cut(what: str, advice: str = "save it as PNG, or as classic TIFF (not BigTIFF) with deflate or LZW") -> None:
        notes.append(
            f"{name}: read with 8 bits a channel, not its 16: srgan cannot decode {what} at 16 bits; {advice}, "
            "to keep them"
        )

    photometric, planar, sample_format = _tag_int(tags, 262, 2), _tag_int(tags, 284, 1), _tag_int(tags, 339, 1)
    if photometric != 2:
        kind = _TIFF_PHOTOMETRIC.get(photometric, f"photometric {photometric}")
        return cut(f"a TIFF of {kind} samples", "convert it to 16-bit RGB (PNG or TIFF)")
    if planar not in (1, 2) or sample_format != 1:
        return cut(f"a TIFF of planar configuration {planar} and sample format {sample_format}")
    compression = _tag_int(tags, 259, 1)
    predictor = _tag_int(tags, 317, 1)
    kind = _TIFF_COMPRESSION.get(compression, f"compression {compression}")
    if predictor not in (1, 2) or compression not in _TIFF_LIBTIFF_COMPRESSIONS:
        return cut(f"a TIFF with predictor {predictor} ({kind})")
    # the stored size: Pillow's im.size is already turned for an Orientation of 5 to 8
    width, height = _tag_int(tags, 256, im.width), _tag_int(tags, 257, im.height)
    offsets, counts = tags.get(273), tags.get(279)
    strips = 322 not in tags and compression in (1, 8, 32946) and bool(offsets) and bool(counts)
    data = whole_file()
    if strips:
        offsets, counts = np.atleast_1d(offsets), np.atleast_1d(counts)
        if planar == 1:
            arr = _tiff_strips(data, tags, offsets, counts, width, height, spp, compression, predictor, name)
        else:  # one plane after the other, each in its own strips (uncompressed: Pillow decoded garbage)
            each = len(offsets) // spp
            if each < 1 or len(offsets) != each * spp or len(counts) != len(offsets):
                raise SrganError(f"{name}: damaged TIFF (its strips do not divide into {spp} planes)")
            planes = [slice(i * each, (i + 1) * each) for i in range(spp)]
            arr = np.concatenate(
                [_tiff_strips(data, tags, offsets[p], counts[p], width, height, 1, compression, predictor, name)
                 for p in planes],
                axis=2,
            )  # fmt: skip
    else:
        tile_width = _tag_int(tags, 322, 0) if 322 in tags else 0
        if planar == 1:
            arr = _tiff_via_gray(data, width, height, spp, predictor, tile_width)
        else:  # planes in LZW strips or in tiles: each plane read as a gray image of its own
            planes = [_tiff_via_gray(data, width, height, spp, predictor, tile_width, plane=p) for p in range(spp)]
            arr = None if any(p is None for p in planes) else np.concatenate(planes, axis=2)
        if arr is None:
            big = data[:4] in (b"II+\x00", b"MM\x00+")  # what _tiff_via_gray cannot patch
            return cut(f"a {'BigTIFF' if big else 'TIFF'} in {'tiles' if tile_width else 'strips'} ({kind})")
    plane = arr.astype(np.float32) / 65535.0
    rgb, alpha = plane[..., :3], None
    if spp == 4:
        extra = _tag_int(tags, 338, 2)
        if extra == 1:  # associated (premultiplied) alpha: straighten the colour
            alpha = plane[..., 3]
            rgb = np.where(alpha[..., None] > 0, rgb / np.maximum(alpha[..., None], 1e-12), 0.0)
            rgb = np.clip(rgb, 0.0, 1.0).astype(np.float32)
        elif extra == 2:
            alpha = plane[..., 3]
    return rgb, alpha, 16, False, "RGB;16" if alpha is None else "RGBA;16"


def _tiff_strips(
    data: bytes, tags, offsets, counts, width: int, height: int, spp: int, compression: int, predictor: int, name: str
):
    rows_per_strip = max(1, min(_tag_int(tags, 278, height), height))
    endian = ">" if data[:2] == b"MM" else "<"
    row_bytes = width * spp * 2
    # a plane takes ceil(height / rows) strips: one listed many times more was inflated and joined
    # every time (60,000 of them in a 480 KB file: 3.4 GB)
    if len(offsets) > -(-height // rows_per_strip):
        raise SrganError(f"{name}: damaged TIFF (the file lists {len(offsets)} strips for an image of {height} rows)")
    chunks = []
    for i, (off, cnt) in enumerate(zip(offsets, counts, strict=False)):
        off, cnt = int(off), int(cnt)
        if off + cnt > len(data):
            raise SrganError(f"{name}: truncated TIFF (a strip runs past the end of the file)")
        holds = min(rows_per_strip, height - i * rows_per_strip) * row_bytes  # the last strip may hold fewer rows
        strip = data[off : off + cnt]
        if compression != 1:
            strip = zlib.decompressobj().decompress(strip, holds)
        chunks.append(strip[:holds])
    raw = b"".join(chunks)
    if len(raw) < height * row_bytes:
        raise SrganError(f"{name}: truncated TIFF (the image data ends early)")
    arr = np.frombuffer(raw, dtype=endian + "u2", count=height * width * spp).reshape(height, width, spp)
    arr = arr.astype(np.uint16)
    if predictor == 2:  # horizontal differencing, per sample, wrapping modulo 2**16
        arr = np.cumsum(arr, axis=1, dtype=np.uint16)
    return arr


def _tiff_via_gray(
    data: bytes, width: int, height: int, spp: int, predictor: int, tile_width: int, plane: int | None = None
):
    """Let libtiff decompress 16-bit colour by patching the first IFD into 16-bit grayscale.

    Chunky samples R,G,B,R,G,B... of width W are byte for byte a gray image of width W*spp,
    so only the header changes; the horizontal predictor is switched off for libtiff (it
    would difference with the wrong stride) and undone here per sample. With ``plane`` (a
    planar file: each sample's plane in strips or tiles of its own) the gray image is that
    plane, of width W, its strip or tile offsets and counts narrowed to the plane's share.
    None when the file does not fit (BigTIFF, odd tag types) or libtiff refuses it.
    """
    if data[:4] == b"II*\x00":
        e = "<"
    elif data[:4] == b"MM\x00*":
        e = ">"
    else:
        return None
    buf = bytearray(data)

    wide = 1 if plane is not None else spp  # samples a gray pixel's row holds per colour pixel

    def put(pos: int, typ: int, value: int) -> None:
        struct.pack_into(e + "HI", buf, pos + 2, typ, 1)
        struct.pack_into(e + ("HH" if typ == 3 else "I"), buf, pos + 8, *((value, 0) if typ == 3 else (value,)))

    def narrow(pos: int) -> None:
        """Strip or tile offsets/byte counts: keep the ``plane``-th of ``spp`` equal shares."""
        typ, count = struct.unpack_from(e + "HI", buf, pos + 2)
        size = {3: 2, 4: 4}[typ]  # a KeyError (another type) gives the file to Pillow
        share = count // spp
        if share < 1 or share * spp != count:
            raise ValueError("strips or tiles do not divide into planes")
        inline = count * size <= 4
        start = pos + 8 if inline else struct.unpack_from(e + "I", buf, pos + 8)[0]
        first = start + plane * share * size
        struct.pack_into(e + "I", buf, pos + 4, share)
        if share * size <= 4:
            buf[pos + 8 : pos + 12] = bytes(buf[first : first + share * size]).ljust(4, b"\x00")
        else:
            struct.pack_into(e + "I", buf, pos + 8, first)

    try:
        (ifd,) = struct.unpack_from(e + "I", buf, 4)
        (n,) = struct.unpack_from(e + "H", buf, ifd)
        for i in range(n):
            pos = ifd + 2 + 12 * i
            (tag,) = struct.unpack_from(e + "H", buf, pos)
            if tag == 256:
                put(pos, 4, width * wide)
            elif tag == 322:
                put(pos, 4, tile_width * wide)
            elif tag in (273, 279, 324, 325) and plane is not None:
                narrow(pos)
            elif tag == 284:
                put(pos, 3, 1)  # chunky (one sample: the same thing)
            elif tag in (258, 339):
                put(pos, 3, 16 if tag == 258 else 1)
            elif tag in (262, 277, 317):
                put(pos, 3, 1)  # min-is-black, one sample, no predictor
            elif tag == 338:
                struct.pack_into(e + "I", buf, pos + 4, 0)  # no extra samples
            elif tag == 274:
                # upright for Pillow, which would turn the wide gray copy (mirroring R and B inside
                # each pixel) and swap its size; the orientation is applied to the colour pixels after
                put(pos, 3, 1)
        # opened and loaded with Pillow's size limit off, as the file was: the gray copy is spp times
        # as large, and past that limit it fell back to 8 bits (a 60 MP photo), or warned past half of it
        gray = _open(io.BytesIO(bytes(buf)), b"", "")
        if not gray.mode.startswith("I;16") or gray.size != (width * wide, height):
            return None
        _strict_load(gray)
        arr = np.asarray(gray).astype(np.uint16).reshape(height, width, wide)
    except Exception:  # noqa: BLE001 - whatever libtiff thinks of the patch, Pillow's path decides
        return None
    if predictor == 2:  # differencing restarts at each tile's left edge
        block = tile_width or width
        for x0 in range(0, width, block):
            arr[:, x0 : x0 + block] = np.cumsum(arr[:, x0 : x0 + block], axis=1, dtype=np.uint16)
    return arr


def _tag_int(tags, key: int, default: int) -> int:
    value = tags.get(key, default)
    return int(np.atleast_1d(value)[0])


# --------------------------------------------------------------------------- writing


# The widest side each encoder takes: libjpeg's JPEG_MAX_DIMENSION, WebP's 14-bit sizes, GIF's 16-bit
# ones. Past them JPEG failed as "broken data stream" (with libjpeg's own line on stderr) and GIF
# with an OverflowError, after the whole upscale.
# AVIF: what libavif (so Pillow) reads back by default; a wider file is written, but not read.
_MAX_SIDE = {"JPEG": 65500, "WEBP": 16383, "GIF": 65535, "AVIF": 32768}
# The most pixels in all each format holds, where it has such a limit: libavif reads back at most
# 16384 x 16384 (its AVIF_DEFAULT_IMAGE_SIZE_LIMIT); 16500 x 16500 was written, and then not read.
_MAX_PIXELS = {"AVIF": 16384 * 16384}


def size_problem(
    width: int,
    height: int,
    path: str | Path,
    format: str | None = None,  # noqa: A002
    *,
    gray: bool = False,
) -> str | None:
    """Why ``write_image(path, ..., format=)`` cannot write a ``width`` x ``height`` image, or None:
    a side longer than its format holds, more pixels in all (AVIF), or a file larger than its 32-bit
    sizes hold (BMP: 4 GiB, 24 bits a pixel, 8 for ``gray``). Cheap, so callers ask before the work
    that makes it."""
    fmt = _normalise_format(format) if format else format_for_path(Path(path))
    if fmt == "BMP":  # Pillow's sum: headers, a gray palette, rows padded to 4 bytes
        row = ((width * (8 if gray else 24) + 7) // 8 + 3) & ~3
        if 14 + 40 + (1024 if gray else 0) + row * height > 2**32 - 1:
            return f"{path}: a {width}x{height} image is too large for BMP (a file of at most 4 GiB); write PNG or TIFF"
    most = _MAX_SIDE.get(fmt)
    if most is not None and max(width, height) > most:
        return f"{path}: a {width}x{height} image is too large for {fmt} (at most {most} px a side); write PNG or TIFF"
    most = _MAX_PIXELS.get(fmt)
    if most is not None and width * height > most:
        return (
            f"{path}: a {width}x{height} image is too large for {fmt} (at most {most:,} pixels, as libavif reads it "
            "back); write PNG or TIFF"
        )
    return None


def stored_bit_depth(path: str | Path, bit_depth: int, format: str | None = None) -> int:  # noqa: A002
    """The bit depth ``write_image(path, ..., bit_depth=, format=)`` stores: 16 only for PNG and TIFF."""
    fmt = _normalise_format(format) if format else format_for_path(Path(path))
    return _stored_depth(fmt, bit_depth)


def _stored_depth(fmt: str, bit_depth: int) -> int:
    return 16 if bit_depth == 16 and fmt in _SIXTEEN_BIT_FORMATS else 8


def _stored_dtype(bit_depth: int) -> np.dtype:
    return np.dtype(np.uint16 if bit_depth == 16 else np.uint8)


def quantise_into(x: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Quantise float pixels in [0, 1] into ``out`` (uint8 or uint16, same shape), in place.

    The rounding of ``write_image`` (nearest; NaN -> 0, +inf -> top), so an image quantised
    tile by tile into one canvas gives the bytes that writing the whole float image would.
    Works through bands of rows so that the float temporaries stay a few MB however large the
    image (a 16000x12000 float canvas is 2.3 GB; whole-array temporaries would be several).
    """
    top = 65535.0 if out.dtype == np.uint16 else 255.0
    x = np.asarray(x)
    if x.shape != out.shape:
        raise ValueError(f"cannot quantise shape {x.shape} into {out.shape}")
    if x.ndim == 0 or x.size == 0:
        return _quantise_band(x, top, out)
    rows = _band_rows(x[0].size)
    for start in range(0, x.shape[0], rows):
        _quantise_band(x[start : start + rows], top, out[start : start + rows])
    return out


def _quantise(x: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float in [0, 1] to a new uint8/uint16 array (see ``quantise_into``).

    Pixels already quantised (uint8 for 8 bits, uint16 for 16) are returned as they are.
    """
    x = np.asarray(x)
    if x.dtype.kind in "ui":
        if x.dtype != _stored_dtype(bit_depth):
            raise ValueError(f"{x.dtype} pixels cannot be stored with {bit_depth} bits")
        return x
    return quantise_into(x, np.empty(x.shape, dtype=_stored_dtype(bit_depth)))


def _quantise_band(x: np.ndarray, top: float, out: np.ndarray) -> np.ndarray:
    band = np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0, posinf=1.0, neginf=0.0)  # a copy
    np.clip(band, 0.0, 1.0, out=band)
    band *= top
    np.rint(band, out=band)
    out[...] = band
    return out


def _planes(rgb: np.ndarray, alpha: np.ndarray | None, grayscale: bool) -> np.ndarray:
    """Stack the channels to write: (H, W, C) float with C in 1 (L), 2 (LA), 3 (RGB), 4 (RGBA)."""
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb, grayscale = rgb[..., None], True
    if rgb.ndim != 3 or rgb.shape[2] not in (1, 3) or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"expected an (H, W, 3) array, got shape {tuple(rgb.shape)}")
    quantised = rgb.dtype.kind in "ui"
    if grayscale:
        if quantised and rgb.shape[2] == 3:
            raise ValueError("quantised pixels must already be gray (H, W, 1) to be written as gray")
        base = rgb.mean(axis=2, keepdims=True, dtype=np.float32) if rgb.shape[2] == 3 else rgb
    else:
        base = rgb if rgb.shape[2] == 3 else np.repeat(rgb, 3, axis=2)
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.shape != base.shape[:2]:
            raise ValueError(f"alpha shape {tuple(alpha.shape)} does not match the image {base.shape[:2]}")
        if quantised:
            alpha = _quantise(alpha, 16 if base.dtype == np.uint16 else 8)
        base = np.concatenate([base, alpha[..., None].astype(base.dtype)], axis=2)
    return base


def to_pil(
    rgb: np.ndarray, alpha: np.ndarray | None = None, bit_depth: int = 8, grayscale: bool = False
) -> Image.Image:
    """Float arrays to a PIL image: "RGB", "RGBA", "L" or "LA".

    PIL cannot hold 16-bit colour: with ``bit_depth=16`` only grayscale without alpha gives
    a 16-bit ("I;16") image; everything else is returned as 8 bits.
    """
    planes = _planes(rgb, alpha, grayscale)
    if bit_depth == 16 and planes.shape[2] == 1:
        q16 = _quantise(planes[..., 0], 16)
        return Image.frombytes("I;16", (q16.shape[1], q16.shape[0]), q16.astype("<u2").tobytes())
    q = _quantise(planes, 8)
    return Image.fromarray(np.ascontiguousarray(q if q.shape[2] > 1 else q[..., 0]))


def write_image(
    path: str | Path,
    rgb: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
    bit_depth: int = 8,
    format: str | None = None,  # noqa: A002 - the name users know from Pillow
    quality: int | None = None,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    text: dict[str, str] | None = None,
    grayscale: bool = False,
    overwrite: bool = True,
    threads: int | None = None,
    dpi: tuple[float, float] | None = None,
    on_note: Callable[[str], None] | None = None,
    xmp: bytes | None = None,
    png_colour: dict | None = None,
    comments: dict[str, str] | None = None,
    iptc: bytes | None = None,
    like: int | None = None,
    xmp_extension: bytes | None = None,
    photoshop: bytes | None = None,
) -> Path:
    """Write float pixels in [0, 1] atomically; returns the path written.

    Pixels may also come already quantised to the depth that is stored (uint8; uint16 for
    16-bit PNG and TIFF; see ``stored_bit_depth``), with gray as (H, W, 1): they are written
    as they are, which spares a float copy of a large output.

    The format comes from the suffix unless given. 16-bit output is kept for PNG and TIFF
    (other formats are written with 8 bits, with a note). JPEG and BMP get no alpha channel: the image
    is composited onto white (as image editors export a transparent image to JPEG). JPEG
    quality defaults to 95, with 4:4:4 chroma at quality >= 90; WebP quality defaults to 95
    and 100 means lossless; AVIF (where this Pillow has it, see ``avif_supported``) quality defaults
    to 95, 4:4:4 at quality >= 90 as JPEG, and 100 is libavif's finest quantiser, not lossless.

    The ICC profile is embedded where the format allows (not BMP and GIF) and the profile fits
    the pixels (an RGB profile on colour output, a gray one on gray output; otherwise it is
    left out, with a note). EXIF is embedded in PNG, JPEG, WebP, AVIF and TIFF, with Orientation set to 1 (the
    pixels are written as they are meant to be seen) and the pixel dimensions updated; an EXIF with a
    camera's maker note keeps its layout, changed in place, so that the offsets in the maker note still
    point at its values (see ``_exif_bytes``); TIFF
    keeps the main IFD's tags that describe the picture (see ``_TIFF_OUTPUT_TAGS``). ``text`` goes
    into PNG tEXt/iTXt chunks; for JPEG, WebP, AVIF and TIFF, its "Software" key into the EXIF Software
    tag and the others into the XMP packet, as properties of srgan's own namespace (``SRGAN_XMP_NS``;
    "srgan:model" is srgan:model), never into a caption field (see ``_xmp_with_record``; an
    ImageDescription an earlier srgan wrote them into is dropped); for GIF, into its comment as
    "key: value" lines after the input's comment (see ``split_gif_mark``); BMP has no place for it (a
    note says so).
    ``dpi`` (x, y pixels per inch) is recorded in PNG, JPEG, TIFF and BMP (WebP and GIF have no
    field for it).
    ``xmp`` (an XMP packet: rights, keywords, editing history) is embedded in JPEG (APP1), PNG
    (iTXt "XML:com.adobe.xmp"), WebP (XMP chunk), AVIF and TIFF (tag 700) as it is, but for tiff:Orientation
    set to 1 and the pixel dimensions it records updated (see ``_prepare_xmp``); JPEG leaves out a
    packet larger than one segment holds (64 KB).
    ``comments`` (``LoadedImage.comments``) go into PNG output as text chunks (``text`` wins a
    shared key), a "Comment" into JPEG and GIF as their comment; for JPEG, WebP, AVIF and TIFF the PNG
    keywords Description, Author and Copyright (and, for WebP and AVIF, Comment) go into the EXIF tags of
    the same meaning (``_PNG_TEXT_EXIF``) unless the EXIF holds other text there; what a format has no
    place for is left out with a note.
    ``iptc`` (``LoadedImage.iptc``: IPTC-IIM records) goes into JPEG as an APP13 segment (Photoshop image
    resource 0x0404, as Photoshop and exiftool write it), TIFF as tag 33723 (IPTC-NAA), and PNG as
    ImageMagick's "Raw profile type iptc" text (zTXt), which ImageMagick and exiftool read; WebP, AVIF,
    BMP and GIF have no place for it; over 64 KB, JPEG output goes on in further APP13 segments.
    ``photoshop`` (``LoadedImage.photoshop``: Photoshop's clipping paths) goes into JPEG's APP13 and
    TIFF's tag 34377 beside the IPTC; the other formats leave it out with a note.
    ``png_colour`` (Pillow's PNG info "gamma", "chromaticity", "srgb") goes into PNG output as
    gAMA, cHRM and sRGB chunks, unless an ICC profile is embedded (which takes precedence over them); into
    JPEG, WebP, AVIF and TIFF output, which have no such chunks, as an ICC profile made of the gamma and
    chromaticities (see ``_icc_from_png_colour``; none is needed for sRGB), and BMP and GIF, which carry
    no profile, leave them out with a note.
    PNG and 16-bit TIFF are compressed on ``threads`` threads (default: PyTorch's thread
    count if it is loaded, else the CPUs available; at most 8); the file does not depend on
    the count.
    ``on_note`` is given one line, starting with the path, for each thing the format could
    not keep (16 bits in JPEG, WebP, AVIF, BMP or GIF, transparency in JPEG or BMP, an ICC profile, EXIF
    or XMP in BMP, EXIF in GIF (which takes XMP, in UTF-8), ``text`` in BMP, a gray ICC profile in WebP or
    with alpha in AVIF or 16-bit TIFF, a profile that does not fit the pixels, EXIF, XMP or IPTC too large for
    JPEG, IPTC in WebP, AVIF, BMP or GIF, a PNG's gamma in BMP or GIF, ``comments`` a format has no place
    for), once the file is written. An EXIF larger than a JPEG segment holds (64 KB) loses its maker note, or, still too
    large, is left out (see ``_fit_jpeg_exif``); an XMP packet that the record takes past a JPEG segment
    loses its padding whitespace, or, still too large, is kept without the record (left out for a packet of
    the record alone only where it is too large itself).
    ``like``: the ``st_mode`` of the file the image is made from; a new file gets its read and
    write bits less the umask, as cp gives a copy (without it, 0666 less the umask). A replaced
    file keeps its own mode, owner and group where it can (see ``fsutil.atomic_path``).
    Any failure leaves neither the file nor a temporary file.
    """
    path = Path(path)
    fmt = _normalise_format(format) if format else format_for_path(path)
    if fmt not in _FORMAT_SUFFIX or fmt == "AVIF":
        output_suffix_for(fmt)  # raises the "cannot write" error (AVIF: where this Pillow lacks it)
    if text:  # a model named by a path that is not UTF-8 (srgan:model) failed the file's encoding
        text = {utf8_safe(str(k)): utf8_safe(str(v)) for k, v in text.items()}
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, not {bit_depth}")
    if quality is not None and not 1 <= int(quality) <= 100:
        raise SrganError(f"{path}: quality must be between 1 and 100, not {quality}")
    notes: list[str] = []
    if _stored_depth(fmt, bit_depth) != bit_depth:
        notes.append(f"{path}: the 16 bits a channel are cut to 8: {fmt} output holds no more (PNG and TIFF keep 16)")
    bit_depth = _stored_depth(fmt, bit_depth)
    rgb = np.asarray(rgb)
    if rgb.dtype.kind in "ui" and rgb.dtype != _stored_dtype(bit_depth):
        raise ValueError(f"{rgb.dtype} pixels cannot be written as {bit_depth}-bit {fmt}")
    gray = grayscale or (rgb.ndim == 3 and rgb.shape[2] == 1) or rgb.ndim == 2
    if rgb.ndim >= 2 and (problem := size_problem(rgb.shape[1], rgb.shape[0], path, fmt, gray=gray)):
        raise SrganError(problem)
    planes = _planes(rgb, alpha, grayscale)
    if fmt in ("JPEG", "BMP") and planes.shape[2] in (2, 4):  # JPEG has no alpha; Pillow and most readers ignore BMP's
        planes, flattened = _flatten_on_white(planes)
        if flattened:
            notes.append(f"{path}: alpha flattened onto white: {fmt} has no transparency")
    # WebP has no gray modes; AVIF has gray (4:0:0), but Pillow writes gray with alpha as RGBA
    if (fmt == "WEBP" and planes.shape[2] in (1, 2)) or (fmt == "AVIF" and planes.shape[2] == 2):
        if icc_profile and _icc_fits(icc_profile, gray=True):
            stored = "WebP stores gray as RGB" if fmt == "WEBP" else "AVIF stores gray with alpha as RGBA"
            notes.append(f"{path}: the gray ICC colour profile is left out: {stored}")
            icc_profile = None
        gray = np.repeat(planes[..., :1], 3, axis=2)
        planes = np.concatenate([gray, planes[..., 1:]], axis=2)
    if fmt == "TIFF" and bit_depth == 16 and planes.shape[2] == 2:  # 16-bit gray+alpha TIFF is unreadable
        if icc_profile and _icc_fits(icc_profile, gray=True):  # for Pillow: RGBA, which a gray profile does not fit
            notes.append(f"{path}: the gray ICC colour profile is left out: 16-bit TIFF stores gray with alpha as RGBA")
            icc_profile = None
        planes = np.concatenate([np.repeat(planes[..., :1], 3, axis=2), planes[..., 1:]], axis=2)
    if not overwrite and _exists(path):
        raise SrganError(f"{path}: the file already exists; pass --overwrite to replace it")
    text = {str(k): str(v) for k, v in (text or {}).items()}
    if png_colour and fmt != "PNG" and not icc_profile:
        # a PNG's gAMA and cHRM, which only PNG has chunks for: as an ICC profile that says the same
        try:
            icc_profile = _icc_from_png_colour(png_colour, gray=planes.shape[2] <= 2)
        except ValueError as exc:
            notes.append(f"{path}: the PNG's gamma and chromaticities are left out: {exc}")
        if icc_profile and fmt in ("BMP", "GIF"):
            notes.append(f"{path}: the PNG's gamma and chromaticities are left out: {fmt} output carries no profile")
            icc_profile = None
    if icc_profile and not _icc_fits(icc_profile, gray=planes.shape[2] <= 2):
        pixels = "gray" if planes.shape[2] <= 2 else "colour"
        notes.append(f"{path}: the {_icc_name(icc_profile)} is left out: it does not fit the {pixels} pixels")
        icc_profile = None
    if icc_profile and fmt in ("BMP", "GIF"):
        notes.append(f"{path}: the ICC colour profile is left out: {fmt} output carries none")
    if dpi and fmt == "JPEG" and max(dpi) > 65535:  # JFIF's 16-bit density would wrap (70000 dpi read 4464)
        notes.append(f"{path}: the pixel density ({max(dpi):g} dpi) is left out: JPEG's header holds at most 65535")
        dpi = None
    if fmt == "GIF" and planes.shape[2] in (2, 4):
        a = planes[..., -1]
        top = 65535 if a.dtype == np.uint16 else (255 if a.dtype == np.uint8 else 1.0)
        if ((a > 0) & (a < top)).any():
            notes.append(f"{path}: transparency made on/off at half opacity: GIF has no partial transparency")
    comment = None
    comments = {str(k): str(v) for k, v in (comments or {}).items() if str(k) not in text}
    if comments and fmt in ("JPEG", "GIF"):  # a comment goes into their comment block
        comment = comments.pop("Comment", None)
        if comment and fmt == "JPEG" and len(comment.encode("utf-8", "surrogateescape")) > 65533:  # a segment's room
            comments["Comment"], comment = comment, None
    if comments and fmt == "PNG":  # a comment's bytes that are not UTF-8 (latin-1, most likely) go as latin-1 text
        comments = {k: _latin1_if_not_utf8(v) for k, v in comments.items()}
    in_exif: dict[str, str] = {}  # a PNG's standard keywords that have an EXIF tag, for the formats that take EXIF
    if comments and fmt in ("JPEG", "WEBP", "AVIF", "TIFF"):
        # a comment goes into UserComment, in the Exif IFD, which libtiff does not write
        mapped = set(_PNG_TEXT_EXIF) - ({"Comment"} if fmt == "TIFF" else set())
        in_exif = {k: comments.pop(k) for k in sorted(mapped & set(comments))}
    if comments and fmt != "PNG":
        notes.append(f"{path}: the text ({_named(comments)}) is left out: {fmt} output has no place for it")
        comments = {}
    if fmt == "GIF":
        comment = _gif_comment(comment, text)
    elif fmt == "BMP" and text:
        recorded = "the model and scale are" if "srgan:model" in text else "the text is"
        notes.append(f"{path}: {recorded} not recorded: BMP output carries no metadata")
    if exif and fmt in ("BMP", "GIF"):
        notes.append(f"{path}: the EXIF metadata is left out: {fmt} output carries none")
        exif = None
    if exif:
        # the record an earlier srgan write made in ImageDescription is dropped: the record goes into XMP
        # (PNG: its text chunks). The Software tag names this writer in every format: PNG kept the
        # input's ("Adobe Photoshop") where its text said srgan.
        signed = {"Software": text["Software"]} if "Software" in text else {}
        if fmt == "TIFF" and (dropped := _exif_sub_ifds(exif)):
            notes.append(f"{path}: the EXIF's {dropped} are left out: TIFF output keeps the main EXIF tags only")
        lost: list[str] = []
        exif = _prepare_exif(
            exif,
            signed,
            planes.shape[1],
            planes.shape[0],
            sub_ifds=fmt != "TIFF",
            samples=planes.shape[2],
            drop_record=True,
            dropped=lost,
        )
        if lost:
            notes.append(_exif_lost_note(str(path), lost))
    if dpi and fmt in ("JPEG", "WEBP", "AVIF"):
        exif = _exif_with_dpi(exif, dpi)
    if exif and fmt == "JPEG":  # the input's EXIF first: a PNG's long text must not push it out
        exif, note = _fit_jpeg_exif(exif, text, path)
        if note:
            notes.append(note)
    if in_exif:
        if fmt == "JPEG":  # each text only where the EXIF still fits one segment with it
            kept_out, too_long = [], []
            for key in sorted(in_exif):
                trial, out = _exif_with_png_text(exif, {key: in_exif[key]})
                kept_out += out
                if trial and len(_prepare_exif(trial, text) or b"") > _JPEG_EXIF_MAX:
                    too_long.append(key)
                else:
                    exif = trial
            if too_long:
                notes.append(
                    f"{path}: the text ({_named(too_long)}) is left out: with it the EXIF is more than a JPEG "
                    "segment holds"
                )
        else:
            exif, kept_out = _exif_with_png_text(exif, in_exif)
        if kept_out:
            tags = [_PNG_TEXT_EXIF[k][1] for k in sorted(kept_out)]
            where = ", ".join(tags[:-1]) + " and " + tags[-1] if len(tags) > 1 else tags[0]
            notes.append(f"{path}: the text ({_named(kept_out)}) is left out: the EXIF holds other text in {where}")
    if xmp:
        xmp = _xmp_without_record(_prepare_xmp(bytes(xmp), planes.shape[1], planes.shape[0]))
        if xmp_extension:  # the part over 64 KB of a JPEG's XMP: in its own segments again in JPEG, else moved in
            xmp_extension = _prepare_xmp(bytes(xmp_extension), planes.shape[1], planes.shape[0])
            if fmt not in ("JPEG", "BMP", "GIF"):
                merged = _xmp_merged(xmp, xmp_extension)
                if merged is None:
                    notes.append(f"{path}: the extended XMP is left out: it does not fit its main packet")
                xmp = merged or _HAS_EXTENDED_XMP.sub(b"", xmp)
        if fmt == "BMP":
            notes.append(f"{path}: the XMP metadata is left out: {fmt} output carries none")
            xmp = None
        elif fmt == "GIF" and b"\x00" in xmp:  # a UTF-16 packet: a NUL ends GIF's blocks of raw XMP
            notes.append(f"{path}: the XMP metadata is left out: GIF holds XMP only as UTF-8, not this UTF-16")
            xmp = None
    record = {k: v for k, v in text.items() if k != "Software"}
    if record and fmt in ("JPEG", "WEBP", "AVIF", "TIFF"):  # PNG keeps it in text chunks, GIF in its comment
        recorded = _xmp_with_record(xmp, record)
        if recorded is None:  # the input's packet, damaged: kept as it is
            recorded = xmp
            notes.append(
                f"{path}: the model and scale are not recorded: srgan's record could not be added to this XMP "
                "packet (UTF-16, RDF without a prefix, or no rdf:RDF)"
            )
        if fmt == "JPEG" and xmp and len(recorded) > _JPEG_XMP_MAX:
            size = len(recorded)
            xmp = _xmp_unpadded(xmp)  # the room left for edits in place, first
            recorded = _xmp_with_record(xmp, record) or xmp
            if len(recorded) > _JPEG_XMP_MAX and len(xmp) <= _JPEG_XMP_MAX:
                # the user's keywords, rights... are worth more than the record: the EXIF Software tag
                # still names srgan
                notes.append(
                    f"{path}: the model and scale are not recorded in the XMP: {size} bytes with srgan's record, "
                    "more than a JPEG segment holds"
                )
                recorded = xmp
            elif len(recorded) > _JPEG_XMP_MAX:
                notes.append(
                    f"{path}: the XMP metadata is left out: {size} bytes with srgan's record, more than a "
                    "JPEG segment holds"
                )
                recorded = _xmp_with_record(None, record)
        xmp = recorded
    if xmp and fmt == "JPEG" and len(xmp) > _JPEG_XMP_MAX:
        notes.append(f"{path}: the XMP metadata is left out: {len(xmp)} bytes, more than a JPEG segment holds")
        xmp = None
    extended = b""
    pointer = _HAS_EXTENDED_XMP.search(xmp) if xmp and fmt == "JPEG" and b"HasExtendedXMP" in xmp else None
    if pointer and xmp_extension:  # named by its MD5, as the main packet's pointer says
        guid = hashlib.md5(xmp_extension).hexdigest().upper().encode()
        at = 2 if pointer[2] is not None else 3 if pointer[3] is not None else 5
        xmp = xmp[: pointer.start(at)] + guid + xmp[pointer.end(at) :]
        extended = _xmp_extension_segments(xmp_extension, guid)
        if len(xmp) > _JPEG_XMP_MAX:  # the pointer's value had another length
            xmp, extended = _HAS_EXTENDED_XMP.sub(b"", xmp), b""
            notes.append(f"{path}: the extended XMP is left out: the main packet has no room to point to it")
    elif pointer:
        xmp = _HAS_EXTENDED_XMP.sub(b"", xmp)
    if iptc and fmt in ("WEBP", "AVIF", "BMP", "GIF"):
        notes.append(f"{path}: the IPTC metadata is left out: {fmt} output carries none")
        iptc = None
    if photoshop and fmt not in ("JPEG", "TIFF"):
        notes.append(f"{path}: the Photoshop clipping path is left out: {fmt} output has no place for it")
        photoshop = None
    try:
        with atomic_path(path, overwrite=overwrite, like=like, on_note=on_note) as tmp, open(tmp, "wb") as fh:
            if fmt == "PNG":
                colour = None if icc_profile else png_colour
                texts = {**comments, **text}  # srgan's keys last
                _write_png(
                    fh, planes, bit_depth, icc_profile, exif, texts, threads, dpi, xmp=xmp, colour=colour, iptc=iptc
                )
            elif bit_depth == 16 and fmt == "TIFF":
                _write_tiff16(
                    fh, planes, icc_profile, exif, text, threads, dpi, xmp=xmp, iptc=iptc, photoshop=photoshop
                )
            else:
                _save_pil(
                    fh,
                    planes,
                    fmt,
                    quality,
                    icc_profile,
                    exif,
                    text,
                    dpi,
                    xmp=xmp,
                    comment=comment,
                    iptc=iptc,
                    extended=extended,
                    photoshop=photoshop,
                )
            fh.flush()
    except FileExistsError:
        raise SrganError(f"{path}: the file already exists; pass --overwrite to replace it") from None
    except FileNotFoundError:  # a missing folder; a path too long for Windows; a name exFAT refuses
        from .fsutil import not_found_reason

        raise SrganError(f"{path}: cannot write: {not_found_reason(path)}") from None
    except OSError as exc:
        error = SrganError(f"{path}: cannot write the image: {_os_reason(exc)}")
        error.errno = exc.errno  # type: ignore[attr-defined]  # a full disk stops a batch (see upscale)
        raise error from None
    except MemoryError:
        raise SrganError(f"{path}: not enough memory to encode the image as {fmt}; free memory") from None
    except (ValueError, TypeError, KeyError, RuntimeError, OverflowError, struct.error) as exc:  # Runtime: libtiff
        if fmt == "GIF" and "quantization error" in str(exc):  # Pillow's quantizer failing to allocate its tables
            raise SrganError(
                f"{path}: cannot encode the image as GIF: reducing it to 256 colours failed, most likely for "
                "lack of memory at this size; free memory, or write PNG"
            ) from None
        raise SrganError(f"{path}: cannot encode the image as {fmt} ({_one_line(exc)})") from None
    if on_note is not None:
        for note in notes:
            on_note(note)
    return path


def _flatten_on_white(planes: np.ndarray) -> tuple[np.ndarray, bool]:
    """Composite (H, W, 2 or 4) planes onto white, for a format without alpha: the 8-bit colour
    planes, and whether any pixel was less than opaque.

    Works on the 8-bit values JPEG and BMP store (so pixels handed over quantised give the
    file floats give), in bands of rows: no float copy of a large image.
    """
    q = _quantise(planes, 8)
    colour, alpha = q[..., :-1], q[..., -1:]
    if alpha.min() == 255:
        return colour, False
    out = np.empty(colour.shape, dtype=np.uint8)
    step = _band_rows(q[0].size)
    for start in range(0, q.shape[0], step):
        a = alpha[start : start + step].astype(np.uint32)
        mixed = colour[start : start + step] * a + 255 * (255 - a)  # at most 255 * 255
        out[start : start + step] = (mixed + 127) // 255
    return out, True


def _exists(path: Path) -> bool:
    """``path.exists()`` for an output; a name the file system refuses (too long, say) is the
    one-line write error, not an OSError with a traceback."""
    try:
        return path.exists()
    except OSError as exc:
        raise SrganError(f"{path}: cannot write the image: {_os_reason(exc)}") from None


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left on the device; free some space and retry"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied; choose a folder you can write to"
    if exc.errno == errno.EROFS:
        return "the file system is read-only; choose another output folder"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded; free some space and retry"
    if exc.errno == errno.EFBIG:
        return f"{TOO_LARGE}; raise the limit, or write to another disk or a smaller format"
    if exc.errno == errno.ENAMETOOLONG:
        return "the file name is too long for the file system; choose a shorter -o or --suffix"
    if exc.errno == errno.EINVAL:
        return 'invalid argument: the file system may not take this file name (FAT and exFAT refuse \\ : * ? " < > |)'
    return _one_line(exc)


def _icc_fits(icc: bytes, *, gray: bool) -> bool:
    """True when the profile's colour space (header bytes 16-19) matches the output pixels."""
    return len(icc) >= 128 and icc[16:20] == (b"GRAY" if gray else b"RGB ")


def _icc_name(icc: bytes) -> str:
    """How a note names a profile: 'RGB ICC colour profile "Display P3"' (its colour space and description)."""
    space = icc[16:20].decode("ascii", "replace").strip() if len(icc) >= 128 else ""
    name = f"{space} ICC colour profile" if space.isalnum() else "ICC colour profile"
    try:
        from PIL import ImageCms

        desc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    except Exception:  # noqa: BLE001 - a damaged or unreadable profile is named by its colour space alone
        desc = ""
    return f'{name} "{desc[:60]}"' if desc and desc.isprintable() else name


def _named(keys: Iterable[str]) -> str:
    """Text keys for a note: "Author, Title" (sorted; "A, B, C and 2 more")."""
    keys = sorted(keys)
    return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")


_USER_COMMENT = 0x9286  # in the Exif IFD
# PNG's standard text keywords and the EXIF tag of the same meaning (tag, its name for notes)
_PNG_TEXT_EXIF = {
    "Author": (0x013B, "Artist"),
    "Comment": (_USER_COMMENT, "UserComment"),
    "Copyright": (0x8298, "Copyright"),
    "Description": (_IMAGE_DESCRIPTION, "ImageDescription"),
}


def _exif_with_png_text(exif: bytes | None, texts: dict[str, str]) -> tuple[bytes | None, list[str]]:
    """``exif`` (a new one where None) with a PNG's text (``texts``: its Description, Author, Copyright,
    Comment) in the EXIF tags of the same meaning (``_PNG_TEXT_EXIF``), and the keys left out: where the
    EXIF's own tag holds other text (a blank one is filled)."""
    ex = Image.Exif()
    if exif:
        try:
            ex.load(exif)
        except Exception:  # noqa: BLE001 - unreadable EXIF: _prepare_exif has dropped it already
            ex = Image.Exif()
    _keep_text_bytes(ex)
    kept_out = []
    wrote = False  # a tag written: a new EXIF with UserComment alone has no tag in its main IFD (len 0)
    for key, value in texts.items():
        tag = _PNG_TEXT_EXIF[key][0]
        value = value.replace("\x00", " ")  # EXIF text ends at its first NUL: "before\0after" read "before"
        if tag == _USER_COMMENT:
            # get_ifd adds an empty Exif IFD where there is none, whose pointer tobytes() writes: only to fill it
            here = _user_comment_text(ex.get_ifd(0x8769).get(tag)) if 0x8769 in ex else ""
            if value.strip() == here or not value.strip():
                continue
            if here:
                kept_out.append(key)
                continue
            ifd = ex.get_ifd(0x8769)
            if value.isascii():
                ifd[tag] = b"ASCII\x00\x00\x00" + value.encode("ascii")
            else:  # UCS-2 in the EXIF's byte order, as exiftool reads it
                ifd[tag] = b"UNICODE\x00" + value.encode("utf-16-le" if ex.endian == "<" else "utf-16-be", "replace")
            wrote = True
            continue
        here = ex.get(tag)
        if isinstance(here, bytes):
            here = here.decode("utf-8", "replace")
        here = here.replace("\x00", " ").strip() if isinstance(here, str) else ""
        if value.strip() == here or not value.strip():
            continue
        if here:
            kept_out.append(key)
            continue
        ex[tag] = value if value.isascii() else value.encode("utf-8", "surrogateescape")
        wrote = True
    return (_exif_bytes(ex, exif) if len(ex) or wrote else None), kept_out


def _exif_ifd(exif: bytes | bytearray) -> tuple[str, int] | None:
    """The byte order of an EXIF and where its Exif sub-IFD starts in ``exif`` (which may start with
    JPEG's "Exif\\0\\0"); None where it has none or is damaged."""
    base = 6 if bytes(exif[:6]) == b"Exif\x00\x00" else 0
    e = "<" if exif[base : base + 2] == b"II" else ">"
    try:
        ifd = base + struct.unpack_from(e + "I", exif, base + 4)[0]
        (n,) = struct.unpack_from(e + "H", exif, ifd)
        for i in range(n):
            tag, _, _, value = struct.unpack_from(e + "HHII", exif, ifd + 2 + 12 * i)
            if tag == 0x8769:
                struct.unpack_from(e + "H", exif, base + value)  # there to read
                return e, base + value
    except struct.error:  # a damaged offset
        return None
    return None


# The types EXIF gives tags of the Exif IFD that Pillow does not know: it guesses from the value (bytes as
# BYTE, a positive rational as RATIONAL, a small int as SHORT), which exiftool -validate flagged on every
# camera photo srgan wrote ("Non-standard format (int8u) for ExifIFD 0x9101 ComponentsConfiguration")
_EXIF_IFD_TYPES = {
    0x8828: 7,  # OECF
    0x8831: 4,  # StandardOutputSensitivity
    0x8832: 4,  # RecommendedExposureIndex
    0x8833: 4,  # ISOSpeed
    0x8834: 4,  # ISOSpeedLatitudeyyy
    0x9101: 7,  # ComponentsConfiguration
    0x9201: 10,  # ShutterSpeedValue
    0x9203: 10,  # BrightnessValue
    0x9204: 10,  # ExposureBiasValue
    0x927C: 7,  # MakerNote
    0x9286: 7,  # UserComment
    0xA20C: 7,  # SpatialFrequencyResponse
    0xA300: 7,  # FileSource
    0xA301: 7,  # SceneType
    0xA40B: 7,  # DeviceSettingDescription
}


def _exif_bytes(ex: Image.Exif, original: bytes | None = None) -> bytes:
    """``ex`` as EXIF bytes (with JPEG's "Exif\\0\\0" head) for an output. Where ``original``, the bytes ``ex``
    was loaded from (then edited), holds a maker note: ``original`` itself, changed where ``ex`` differs
    (``_exif_bytes_in_place``). Else, or where that cannot be done, ``ex`` laid out anew (``_exif_rebuilt``),
    which moves the maker note: the offsets in it (Canon's, Sony's, Pentax's, ...) count from the start
    of the EXIF, so they then point at other bytes, and the lens, serial number and camera settings read
    as garbage."""
    rebuilt = _exif_rebuilt(ex)
    if original and _has_maker_note(original):
        patched = _exif_bytes_in_place(original, ex, rebuilt)
        if patched is not None:
            return patched
    return rebuilt


def _exif_rebuilt(ex: Image.Exif) -> bytes:
    """``ex.tobytes()`` with the Exif IFD's tags in the types EXIF gives them (``_retyped``)."""
    return _retyped(ex.tobytes())


def _retyped(exif: bytes) -> bytes:
    """``exif`` with the Exif IFD's tags in the types EXIF gives them (``_EXIF_IFD_TYPES``), the same
    values: BYTE to UNDEFINED and RATIONAL to SRATIONAL in place; a SHORT to a LONG where it is one value
    (held in the entry itself)."""
    out = bytearray(exif)
    found = _exif_ifd(out)
    if found is None:
        return exif
    e, ifd = found
    try:
        (n,) = struct.unpack_from(e + "H", out, ifd)
        for i in range(n):
            pos = ifd + 2 + 12 * i
            tag, typ, count = struct.unpack_from(e + "HHI", out, pos)
            want = _EXIF_IFD_TYPES.get(tag)
            if want is None or want == typ:
                continue
            if (typ, want) in ((1, 7), (5, 10)):  # the same bytes
                struct.pack_into(e + "H", out, pos + 2, want)
            elif (typ, want) == (3, 4) and count == 1:
                (value,) = struct.unpack_from(e + "H", out, pos + 8)
                struct.pack_into(e + "HII", out, pos + 2, 4, 1, value)
    except struct.error:  # a damaged offset: as it was
        return exif
    return bytes(out)


_EXIF_HEAD = b"Exif\x00\x00"
_EXIF_POINTER, _GPS_POINTER, _INTEROP_POINTER = 0x8769, 0x8825, 0xA005
_THUMBNAIL_OFFSET, _THUMBNAIL_LENGTH = 0x0201, 0x0202  # IFD1's JPEGInterchangeFormat and its length
# the bytes one value of each TIFF field type takes: BYTE, ASCII, SHORT, LONG, RATIONAL, SBYTE, UNDEFINED,
# SSHORT, SLONG, SRATIONAL, FLOAT, DOUBLE, IFD
_TIFF_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}


@dataclass(frozen=True)
class _IfdEntry:
    """One 12-byte entry of a TIFF directory, where it lies in the EXIF's TIFF bytes."""

    at: int  # where the entry starts
    typ: int
    count: int
    field: bytes  # its last 4 bytes: the value itself, or where the value lies
    offset: int | None  # where a value of more than 4 bytes lies; None for one held in ``field``
    size: int  # the value's bytes


def _ifd_entries(tiff: bytes | bytearray, at: int, e: str) -> tuple[dict[int, _IfdEntry], int]:
    """The entries of the TIFF directory at ``at`` by tag, and its next-directory offset. ValueError where the
    directory or a value lies outside ``tiff``, a tag repeats or a type is none of TIFF's: nothing there is
    safe to patch."""
    if at < 8 or at + 2 > len(tiff):
        raise ValueError("a directory outside the EXIF")
    (n,) = struct.unpack_from(e + "H", tiff, at)
    end = at + 2 + 12 * n + 4
    if end > len(tiff):
        raise ValueError("a directory past the end of the EXIF")
    entries: dict[int, _IfdEntry] = {}
    for i in range(n):
        pos = at + 2 + 12 * i
        tag, typ, count = struct.unpack_from(e + "HHI", tiff, pos)
        if tag in entries or typ not in _TIFF_TYPE_SIZES:
            raise ValueError(f"tag {tag:#06x} repeated or of an unknown type")
        size = _TIFF_TYPE_SIZES[typ] * count
        field = bytes(tiff[pos + 8 : pos + 12])
        offset = struct.unpack(e + "I", field)[0] if size > 4 else None
        if offset is not None and (offset < 8 or offset + size > len(tiff)):
            raise ValueError(f"tag {tag:#06x}'s value outside the EXIF")
        entries[tag] = _IfdEntry(pos, typ, count, field, offset, size)
    return entries, struct.unpack_from(e + "I", tiff, end - 4)[0]


def _pointer(entry: _IfdEntry, e: str) -> int:
    """Where the sub-IFD a pointer entry (one LONG or IFD) names lies."""
    if entry.typ not in (4, 13) or entry.count != 1:
        raise ValueError("a sub-IFD pointer that is not one LONG")
    return struct.unpack(e + "I", entry.field)[0]


def _spans(at: int, entries: dict[int, _IfdEntry]) -> list[tuple[int, int]]:
    """The bytes a directory and its values that are not held in their entries take, as (start, end)."""
    table = [(at, at + 2 + 12 * len(entries) + 4)]
    return table + [(x.offset, x.offset + x.size) for x in entries.values() if x.offset is not None]


def _has_maker_note(exif: bytes) -> bool:
    """True where ``exif``'s Exif IFD has a MakerNote entry."""
    found = _exif_ifd(exif)
    if found is None:
        return False
    e, at = found
    try:
        (n,) = struct.unpack_from(e + "H", exif, at)
        return any(struct.unpack_from(e + "H", exif, at + 2 + 12 * i)[0] == _MAKER_NOTE for i in range(n))
    except struct.error:
        return False


def _exif_view(exif: bytes) -> tuple[dict | None, ...]:
    """What Pillow reads of an EXIF: the tags of its main IFD, Exif IFD, GPS IFD and interoperability IFD
    (None for one it does not have), without the pointers to the sub-IFDs, which differ with the layout."""
    ex = Image.Exif()
    ex.load(exif)
    main = {tag: value for tag, value in ex.items() if tag not in (_EXIF_POINTER, _GPS_POINTER)}
    sub = dict(ex.get_ifd(_EXIF_POINTER)) if _EXIF_POINTER in ex else None
    gps = dict(ex.get_ifd(_GPS_POINTER)) if _GPS_POINTER in ex else None
    interop = dict(ex.get_ifd(_INTEROP_POINTER)) if sub and _INTEROP_POINTER in sub else None
    if sub:
        sub.pop(_INTEROP_POINTER, None)
    return main, sub, gps, interop


def _same_value(a, b) -> bool:
    try:
        return bool(a == b) or repr(a) == repr(b)  # repr: a rational 0/0 is nan, unequal to itself
    except Exception:  # noqa: BLE001 - values that do not compare are not the same
        return False


def _same_tags(a: dict | None, b: dict | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.keys() == b.keys() and all(_same_value(a[tag], b[tag]) for tag in a)


def _exif_bytes_in_place(original: bytes, ex: Image.Exif, rebuilt: bytes | None = None) -> bytes | None:
    """``ex``, loaded from the EXIF ``original`` and edited, as ``original``'s bytes changed where ``ex``
    differs, with no value moved: a camera's maker note stays where it was, so the offsets in it that
    count from the start of the EXIF still point at its own values. None where that cannot be done
    safely (a damaged directory, an edit of the GPS or interoperability IFD, a sub-IFD added or removed)
    or the result does not read back as ``ex`` laid out anew (``rebuilt``, ``_exif_rebuilt(ex)``) does.

    A changed value goes where the old one was when it takes the same type and count, or fits in its
    entry (4 bytes); else it goes at the end, and its entry points there. Where tags are added or
    removed, the directory (the main IFD or the Exif IFD) is written anew at the end, sorted by tag, and
    what points at it (the TIFF header, the main IFD's Exif IFD pointer) points there: the old one is
    left as bytes nothing points at. The thumbnail's IFD1 is left out, as Pillow's layout leaves it out,
    and its bytes are cut off where they are the last ones. The result has JPEG's "Exif\\0\\0" head."""
    if rebuilt is None:
        rebuilt = _exif_rebuilt(ex)
    try:
        patched = _patched_exif(bytes(original), rebuilt)
        if patched is None:
            return None
        if not all(_same_tags(a, b) for a, b in zip(_exif_view(patched), _exif_view(rebuilt), strict=True)):
            return None
        tiff = patched[len(_EXIF_HEAD) :]
        e = "<" if tiff[:2] == b"II" else ">"
        if _ifd_entries(tiff, struct.unpack_from(e + "I", tiff, 4)[0], e)[1]:
            return None  # still pointing at the thumbnail's IFD1
    except Exception:  # noqa: BLE001 - anything unexpected in a damaged EXIF: laid out anew, as before
        return None
    return patched


def _patched_exif(original: bytes, rebuilt: bytes) -> bytes | None:
    """The patch of ``_exif_bytes_in_place``: ``original`` changed to read as ``rebuilt`` does, or None."""
    tiff = bytearray(re.sub(b"^(Exif\x00\x00){1,2}", b"", original))  # the heads Pillow's Exif.load takes off
    new = rebuilt[len(_EXIF_HEAD) :] if rebuilt.startswith(_EXIF_HEAD) else rebuilt
    if bytes(tiff[:4]) not in (b"II*\x00", b"MM\x00*") or new[:2] != tiff[:2]:
        return None
    e = "<" if tiff[:2] == b"II" else ">"
    old_main, old_sub, old_gps, old_interop = _exif_view(bytes(tiff))
    new_main, new_sub, new_gps, new_interop = _exif_view(new)
    if old_main is None or new_main is None or old_sub is None or new_sub is None:
        return None  # no Exif IFD (so no maker note) left: laid out anew
    if not _same_tags(old_gps, new_gps) or not _same_tags(old_interop, new_interop):
        return None  # GPS or interoperability tags edited, added or removed: laid out anew
    main_at = struct.unpack_from(e + "I", tiff, 4)[0]
    main, next_at = _ifd_entries(tiff, main_at, e)
    if _EXIF_POINTER not in main:
        return None
    sub_at = _pointer(main[_EXIF_POINTER], e)
    sub, _ = _ifd_entries(tiff, sub_at, e)
    if _MAKER_NOTE not in sub:
        return None
    into_main, _ = _ifd_entries(new, struct.unpack_from(e + "I", new, 4)[0], e)
    into_sub, _ = _ifd_entries(new, _pointer(into_main[_EXIF_POINTER], e), e)
    if (_GPS_POINTER in main) != (_GPS_POINTER in into_main) or (_INTEROP_POINTER in sub) != (
        _INTEROP_POINTER in into_sub
    ):
        return None
    kept = _spans(main_at, main) + _spans(sub_at, sub)  # what stays where it is: no thumbnail cut may reach it
    for pointer, holder in ((_GPS_POINTER, main), (_INTEROP_POINTER, sub)):
        if pointer in holder:
            at = _pointer(holder[pointer], e)
            kept += _spans(at, _ifd_entries(tiff, at, e)[0])
    del tiff[_thumbnail_start(tiff, next_at, e, kept) :]
    _blank_thumbnail(tiff, next_at, e, kept)
    moved_sub = _patch_ifd(tiff, sub_at, sub, into_sub, new, old_sub, new_sub, {_INTEROP_POINTER: None}, e, None)
    sub_pointer = struct.pack(e + "I", moved_sub) if moved_sub != sub_at else None
    moved_main = _patch_ifd(
        tiff, main_at, main, into_main, new, old_main, new_main, {_EXIF_POINTER: sub_pointer, _GPS_POINTER: None}, e, 0
    )
    struct.pack_into(e + "I", tiff, 4, moved_main)
    return _retyped(_EXIF_HEAD + bytes(tiff))


def _thumbnail_spans(tiff: bytearray, at: int, e: str) -> list[tuple[int, int]] | None:
    """The bytes the thumbnail's IFD1 (at ``at``), its values and its JPEG take, as (start, end); None where
    the directory is damaged."""
    try:
        entries, _ = _ifd_entries(tiff, at, e)
        spans = _spans(at, entries)
        if _THUMBNAIL_OFFSET in entries and _THUMBNAIL_LENGTH in entries:
            start, length = (_pointer(entries[tag], e) for tag in (_THUMBNAIL_OFFSET, _THUMBNAIL_LENGTH))
            spans.append((start, start + length))
    except (ValueError, struct.error):
        return None
    return spans


def _blank_thumbnail(tiff: bytearray, at: int, e: str, kept: list[tuple[int, int]]) -> None:
    """Zero what is left in ``tiff`` of the thumbnail's IFD1 (at ``at``), its values and its JPEG, where no
    kept directory or value (``kept``) shares the bytes: unlinked, they still held the input's preview
    picture, hidden in the output."""
    if not at or at >= len(tiff) or (spans := _thumbnail_spans(tiff, at, e)) is None:
        return
    for start, end in spans:
        start, end = max(start, 8), min(end, len(tiff))
        if start < end and not any(a < end and start < b for a, b in kept):
            tiff[start:end] = bytes(end - start)


def _thumbnail_start(tiff: bytearray, at: int, e: str, kept: list[tuple[int, int]]) -> int:
    """Where the thumbnail's IFD1 (at ``at``; 0: none) starts, where it, its values and its JPEG are the
    last bytes of ``tiff``, with nothing else among them (``kept``: what else lies in ``tiff``); else the
    end of ``tiff``: whatever lies there stays."""
    if not at or (spans := _thumbnail_spans(tiff, at, e)) is None:
        return len(tiff)
    spans.sort()
    start, end = spans[0]
    for here, there in spans[1:]:
        if here > end + 1:  # a gap (one byte of word alignment aside): something else may lie there
            return len(tiff)
        end = max(end, there)
    if end < len(tiff) - 1 or any(there > start for _, there in kept):
        return len(tiff)
    return start


def _patch_ifd(
    tiff: bytearray,
    at: int,
    entries: dict[int, _IfdEntry],
    into: dict[int, _IfdEntry],
    new: bytes,
    old_values: dict,
    new_values: dict,
    pointers: dict[int, bytes | None],
    e: str,
    next_ifd: int | None,
) -> int:
    """Change the directory at ``at`` (its ``entries``) in ``tiff`` to hold what ``into`` holds (the entries of
    the same directory in ``new``, the EXIF laid out anew), and return where it now lies: ``at``, or the end
    of ``tiff``, where it is written anew when a tag is added or removed. Tags whose values read the same
    (``old_values``, ``new_values``: as Pillow reads them) keep their entries; ``pointers``, the entries of
    sub-IFD pointers, keep theirs, with the 4 bytes given (None: as they are). ``next_ifd``: the offset of
    the next directory to write (None: as it is)."""
    writes: dict[int, tuple[int, int, bytes]] = {}  # tag: its new type, count and value
    removed = set()
    for tag in entries.keys() | into.keys():
        if tag in pointers:
            continue
        old, now = entries.get(tag), into.get(tag)
        if now is None:  # not in the new layout: removed, unless Pillow does not read it (a count of 0)
            if tag in old_values:
                removed.add(tag)
            continue
        if old is not None and (
            (tag in old_values and tag in new_values and _same_value(old_values[tag], new_values[tag]))
            or (tag not in old_values and tag not in new_values)
        ):
            continue
        value = now.field[: now.size] if now.offset is None else new[now.offset : now.offset + now.size]
        writes[tag] = (now.typ, now.count, value)

    def placed(old: _IfdEntry | None, typ: int, count: int, value: bytes) -> bytes:
        """The 4 bytes of an entry's value: the value itself, or where it now lies."""
        if len(value) <= 4:
            return value.ljust(4, b"\x00")
        if old is not None and old.offset is not None and (old.typ, old.count) == (typ, count):
            tiff[old.offset : old.offset + len(value)] = value
            return old.field
        return struct.pack(e + "I", _appended(tiff, value))

    if not removed and writes.keys() <= entries.keys():  # the same tags: each entry where it is
        for tag, (typ, count, value) in writes.items():
            old = entries[tag]
            tiff[old.at : old.at + 12] = struct.pack(e + "HHI", tag, typ, count) + placed(old, typ, count, value)
        for tag, field in pointers.items():
            if field is not None and tag in entries:
                tiff[entries[tag].at + 8 : entries[tag].at + 12] = field
        if next_ifd is not None:
            struct.pack_into(e + "I", tiff, at + 2 + 12 * len(entries), next_ifd)
        return at
    rows = []
    for tag in sorted((entries.keys() | writes.keys()) - removed):  # sorted by tag, as TIFF wants
        if tag in writes:
            typ, count, value = writes[tag]
            rows.append(struct.pack(e + "HHI", tag, typ, count) + placed(entries.get(tag), typ, count, value))
        else:
            old = entries[tag]
            rows.append(struct.pack(e + "HHI", tag, old.typ, old.count) + (pointers.get(tag) or old.field))
    if next_ifd is None:
        (next_ifd,) = struct.unpack_from(e + "I", tiff, at + 2 + 12 * len(entries))
    table = struct.pack(e + "H", len(rows)) + b"".join(rows) + struct.pack(e + "I", next_ifd)
    return _appended(tiff, table)


def _appended(tiff: bytearray, data: bytes) -> int:
    """Append ``data`` to ``tiff`` on a word boundary, as TIFF wants values, and return where it lies."""
    if len(tiff) % 2:
        tiff.append(0)
    at = len(tiff)
    tiff += data
    return at


def _user_comment_text(value) -> str:
    """The text of an EXIF UserComment (8 bytes naming its code, then the text); "" for none."""
    if not isinstance(value, bytes) or len(value) < 8:
        return ""
    code, body = value[:8], value[8:]
    if code.startswith(b"UNICODE"):
        encoding = "utf-16-be" if body[:1] == b"\x00" else "utf-16-le"
        return body.decode(encoding, "replace").replace("\x00", " ").strip()
    return body.decode("utf-8", "replace").replace("\x00", " ").strip()


def _fit_jpeg_exif(exif: bytes, text: dict[str, str], path: Path) -> tuple[bytes | None, str | None]:
    """EXIF for JPEG output that fits one segment once ``text`` is merged in (as ``_save_pil`` does), and
    the note to give: as it is; else without the maker note, often most of it (a PNG's or TIFF's EXIF has
    no such limit, and a JPEG's near it grows with srgan's text); else none (``text`` still goes in, in an
    EXIF of its own). Pillow refused the whole write ("EXIF data is too long")."""
    size = len(_prepare_exif(exif, text) or b"")
    if size <= _JPEG_EXIF_MAX:
        return exif, None
    ex = Image.Exif()
    try:
        ex.load(exif)
        if 0x8769 in ex and ex.get_ifd(0x8769).pop(_MAKER_NOTE, None) is not None:
            smaller = ex.tobytes()
            if len(_prepare_exif(smaller, text) or b"") <= _JPEG_EXIF_MAX:
                return smaller, (
                    f"{path}: the EXIF maker note is left out: with it the EXIF is {size} bytes, "
                    "more than a JPEG segment holds"
                )
    except Exception:  # noqa: BLE001 - EXIF Pillow cannot rewrite is left out as a whole
        pass
    return None, f"{path}: the EXIF metadata is left out: {size} bytes, more than a JPEG segment holds"


def _exif_sub_ifds(exif: bytes) -> str:
    """What of ``exif`` lies in the sub-IFDs TIFF output leaves out (libtiff refuses their pointers): "camera
    settings (Exif IFD)", "GPS position", both, or "" where it holds neither."""
    ex = Image.Exif()
    try:
        ex.load(exif)
        parts = []
        if 0x8769 in ex and len(ex.get_ifd(0x8769)):
            parts.append("camera settings (Exif IFD)")
        if 0x8825 in ex and len(ex.get_ifd(0x8825)):
            parts.append("GPS position")
    except Exception:  # noqa: BLE001 - a damaged EXIF: nothing to say of it
        return ""
    return " and ".join(parts)


def _prepare_exif(
    exif: bytes | None,
    text: dict[str, str],
    width: int = 0,
    height: int = 0,
    sub_ifds: bool = True,
    samples: int = 0,
    orientation: bool = True,
    drop_record: bool = False,
    dropped: list[str] | None = None,
) -> bytes | None:
    """EXIF bytes for an output: Orientation 1 (``orientation=False``: none), the new pixel size, and
    ``text``'s "Software" key as the Software tag (its other keys are no EXIF's: see ``_xmp_with_record``).

    ``dropped`` gets what had to be left out for Pillow to write the EXIF back (see ``_salvaged_exif_bytes``).

    ``drop_record`` drops an ImageDescription that is blank, or the record of the model and scale that
    srgan wrote there before it kept that record in XMP ("srgan:model: ...; srgan:scale: 4"): a caption
    field names what the picture shows, and a stale record would contradict the new one.

    An EXIF whose Exif IFD holds a maker note keeps its layout: its bytes are changed in place, so the
    offsets in the maker note still point at its values (see ``_exif_bytes``).

    ``sub_ifds=False`` keeps only the main IFD's tags, for Pillow's compressed TIFF writer:
    libtiff refuses the pointers to the Exif, GPS and interoperability IFDs ("Error setting from
    dictionary"), so TIFF output leaves out the camera settings and GPS position kept there;
    Make, Model, DateTime, Artist, Copyright and the like stay.

    Given the size, an ImageDescription that tifffile wrote (JSON with the array's "shape") is no
    caption but a record of the old layout, which tifffile checks against the page: it is left out,
    or, where it holds more than the layout, its "shape" becomes the output's (``samples`` values a
    pixel) and the other keys are kept (see ``_tifffile_description``)."""
    if not exif and not text:
        return None
    ex = Image.Exif()
    if exif:
        try:
            ex.load(exif)
        except Exception:  # noqa: BLE001 - unreadable EXIF is dropped rather than failing the write
            ex = Image.Exif()
    _keep_text_bytes(ex)
    if _ORIENTATION in ex:
        if orientation:
            ex[_ORIENTATION] = 1
        else:
            del ex[_ORIENTATION]
    # Only an Exif IFD that is there: Pillow's get_ifd adds an empty one otherwise, whose pointer
    # tobytes() writes even once popped (libtiff refuses it; other formats gained it).
    if width and height and 0x8769 in ex:
        with contextlib.suppress(Exception):
            sub = ex.get_ifd(0x8769)
            for tag, value in ((0xA002, width), (0xA003, height)):
                if tag in sub:
                    sub[tag] = value
    if width and height:  # ImageWidth and ImageLength in the main IFD, as some phones write them in a JPEG's
        for tag, value in ((256, width), (257, height)):  # EXIF: they kept the old size
            if tag in ex:
                ex[tag] = value
    if width and height and _IMAGE_DESCRIPTION in ex:
        shape = [height, width] + ([samples] if samples > 1 else []) if samples else None
        shaped = _tifffile_description(ex[_IMAGE_DESCRIPTION], shape)
        if shaped == "":
            del ex[_IMAGE_DESCRIPTION]
        elif shaped is not None:
            ex[_IMAGE_DESCRIPTION] = shaped
    if drop_record and _IMAGE_DESCRIPTION in ex and not _has_caption(ex):
        del ex[_IMAGE_DESCRIPTION]
    if "Software" in text:
        ex[_SOFTWARE] = _exif_text(text["Software"])
    if not sub_ifds:
        for pointer in (0x8769, 0x8825, 0xA005):
            ex.pop(pointer, None)
    if not len(ex):
        return None
    try:
        return _salvaged_exif_bytes(ex, exif if sub_ifds else None, dropped if dropped is not None else [])
    except ValueError:  # nothing of it can be written back
        if dropped is not None:
            dropped.append("all of it")
        return None


# what tifffile's JSON description records of an array's layout; any other key is the writer's metadata
_TIFFFILE_LAYOUT_KEYS = frozenset({"shape", "axes", "truncated"})


_IMAGEJ_LAYOUT_KEYS = frozenset({"images", "channels", "slices", "frames", "hyperstack", "mode", "loop"})


def _tifffile_description(value, shape: list[int] | None) -> str | None:
    """An ImageDescription as tifffile writes it (``{"shape": [32, 32, 3]}``, or the older
    ``shape=(32, 32, 3)``; ImageJ's ``ImageJ=1.11a\nimages=3`` loses its stack layout lines) made
    to fit an output of ``shape``: "" where it records only the layout (it is left out), else the
    JSON with the new "shape" first (none where ``shape`` is not known) and the writer's other keys
    kept ("axes" and "truncated" described the old layout: they go). None for any other
    description, which is kept as it is."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    text = value.rstrip("\x00").strip()
    if text.startswith("shape=(") and text.endswith(")"):
        return ""
    if text.startswith("ImageJ="):  # ImageJ's (and tifffile's imagej=True) key=value lines: the stack
        # layout (images=3, slices=3, hyperstack=true) described pages the output does not have, and
        # tifffile could not read it (IndexError); the rest (unit, spacing, display range) stays
        lines = [line for line in text.splitlines() if line.split("=", 1)[0].strip() not in _IMAGEJ_LAYOUT_KEYS]
        return "\n".join(lines) + "\n"
    if not (text.startswith("{") and '"shape":' in text):
        return None
    import json

    try:
        meta = json.loads(text)
    except ValueError:
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("shape"), list):
        return None
    kept = {k: v for k, v in meta.items() if k not in _TIFFFILE_LAYOUT_KEYS}
    if not kept:
        return ""
    return json.dumps({"shape": shape, **kept} if shape else kept)


def _exif_with_dpi(exif: bytes | None, dpi: tuple[float, float]) -> bytes | None:
    """``exif`` (a new one where None) with the pixel density ``dpi`` as XResolution, YResolution and
    ResolutionUnit (inches) where it records none: WebP and AVIF keep the density there alone (a scan's 600
    dpi went, from a PNG or TIFF), and a JPEG's EXIF without them lacks what EXIF requires of it (a TIFF's
    resolution, read as the dpi, is not among the EXIF tags carried)."""
    ex = Image.Exif()
    try:
        if exif:
            ex.load(exif)
        if _X_RESOLUTION in ex or _Y_RESOLUTION in ex:
            return exif
        _keep_text_bytes(ex)
        ex[_X_RESOLUTION], ex[_Y_RESOLUTION] = (float(d) for d in dpi)  # written as RATIONALs
        ex[_RESOLUTION_UNIT] = 2
        return _exif_bytes(ex, exif)
    except Exception:  # noqa: BLE001 - an EXIF Pillow cannot rewrite: as it is
        return exif


def _keep_text_bytes(ex: Image.Exif) -> None:
    """Pillow reads a text tag's bytes as latin-1 and writes text as ASCII, so a UTF-8 caption
    ("Grand-mère", as phones and exiftool write it) came out as "Grand-m??re": put its bytes back."""
    for tag, value in list(ex.items()):
        if isinstance(value, str) and not value.isascii():
            ex[tag] = value.encode("latin-1", "replace")


def _exif_text(value: str) -> str | bytes:
    """A text tag's value: ASCII as it is, other text as UTF-8 bytes (as phones and exiftool write
    it; Pillow would write each non-ASCII character as '?')."""
    return value if value.isascii() else value.encode("utf-8")


# the record of the model and scale srgan wrote into ImageDescription before it kept it in XMP ("srgan:model: x; ...")
_OLD_RECORD = re.compile(r"srgan:[\w.-]+: ")


def _has_caption(ex: Image.Exif) -> bool:
    """True when the EXIF's ImageDescription describes the picture: not blank, and not the record of the
    model and scale that an earlier srgan write made there (an upscaled image upscaled again)."""
    caption = ex.get(_IMAGE_DESCRIPTION)
    if isinstance(caption, bytes):
        caption = caption.decode("latin-1")
    return isinstance(caption, str) and bool(caption.replace("\x00", " ").strip()) and not _OLD_RECORD.match(caption)


def _save_pil(
    fh,
    planes: np.ndarray,
    fmt: str,
    quality,
    icc,
    exif,
    text: dict[str, str],
    dpi=None,
    xmp=None,
    comment=None,
    iptc=None,
    extended=b"",
    photoshop=None,
) -> None:
    gray = planes.shape[2] <= 2
    colour = planes[..., 0] if gray else planes[..., :3]
    im = to_pil(colour, planes[..., -1] if planes.shape[2] in (2, 4) else None, grayscale=gray)
    params: dict = {}
    if dpi and fmt in ("JPEG", "TIFF", "BMP"):
        params["dpi"] = dpi
    if icc and fmt in ("PNG", "JPEG", "WEBP", "AVIF", "TIFF"):
        params["icc_profile"] = icc
    if xmp and fmt in ("JPEG", "WEBP", "AVIF"):
        params["xmp"] = xmp
    if comment and fmt in ("JPEG", "GIF"):
        params["comment"] = comment.encode("utf-8", "surrogateescape")
    if fmt == "PNG":
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        for k, v in text.items():
            try:
                k.encode("latin-1"), v.encode("latin-1")
                info.add_text(k[:79], v)
            except UnicodeEncodeError:
                info.add_itxt(k[:79], v)
        params["pnginfo"] = info
        if exif:
            params["exif"] = exif
    elif fmt == "JPEG":
        q = 95 if quality is None else int(quality)
        params.update(quality=q, subsampling=0 if q >= 90 else 2)
        merged = _prepare_exif(exif, text)
        if merged:
            params["exif"] = merged
        if iptc or photoshop:  # APP13 segments, among the markers Pillow writes after the EXIF; over 64 KB,
            # the resources go on in further segments, each behind its own header, as exiftool writes them
            resources = (_iptc_resources(iptc) if iptc else b"") + (photoshop or b"")
            segments = []
            for at in range(0, len(resources), _JPEG_IPTC_MAX):
                part = _PHOTOSHOP_HEAD + resources[at : at + _JPEG_IPTC_MAX]
                segments.append(b"\xff\xed" + struct.pack(">H", len(part) + 2) + part)
            params["extra"] = b"".join(segments)
        if extended:  # the extended XMP's APP1 segments (see _xmp_extension_segments)
            params["extra"] = params.get("extra", b"") + extended
    elif fmt == "WEBP":
        q = 95 if quality is None else int(quality)
        params.update(quality=q, lossless=q == 100, method=4)
        if q == 100:
            params["exact"] = True  # keep the colour under transparent pixels
        merged = _prepare_exif(exif, text)
        if merged:
            params["exif"] = merged
    elif fmt == "AVIF":
        # Pillow's quality is libavif's: 100 is its finest quantiser, still not lossless (colour goes
        # through YCbCr); full-resolution colour from 90, as for JPEG (gray is stored as gray, 4:0:0)
        q = 95 if quality is None else int(quality)
        params["quality"] = q
        if not gray:
            params["subsampling"] = "4:4:4" if q >= 90 else "4:2:0"
        # without the Orientation tag: Pillow's AVIF writer takes it out to store it as a box, and writes the
        # rest again as ASCII text ("Grand-mère" became "Grand-m??re"); the pixels are upright, so no box is due
        merged = _prepare_exif(exif, text, orientation=False)
        if merged:
            params["exif"] = merged
    elif fmt == "TIFF":
        _quiet_libtiff()
        params["compression"] = "tiff_adobe_deflate"
        merged = _prepare_exif(exif, text)  # exif: prepared by write_image without its sub-IFDs
        # The tags go in as tiffinfo, not as exif= bytes: Pillow would read those back as latin-1
        # text and write each non-ASCII character as '?'; bytes values are written as they are.
        tags = Image.Exif()
        if merged:
            tags.load(merged)
            _keep_text_bytes(tags)
        for tag, value in list(tags.items()):
            if tag not in _TIFF_OUTPUT_TAGS or not isinstance(value, int if tag == _ORIENTATION else (str, bytes)):
                del tags[tag]
        tags[317] = 2  # the horizontal predictor, as _write_tiff16 writes: deflate alone made photos ~1.6x larger
        if xmp:  # Pillow's TIFF writer takes no xmp=: it goes in with the tags, as a BYTE array
            tags[_XMP_TAG] = xmp
        if iptc:  # padded to LONGs, as Photoshop and exiftool write it: retyped once written (below)
            tags[_IPTC_TAG] = iptc + b"\x00" * (-len(iptc) % 4)
        if photoshop:
            tags[_PHOTOSHOP_TAG] = photoshop
        params["tiffinfo"] = tags
    elif fmt == "GIF" and im.mode in ("LA", "RGBA"):
        im, params["transparency"] = _gif_with_transparency(im.convert("RGBA")), 255
        params["optimize"] = False  # it merges the transparent slot with a colour of the same value
    elif fmt == "GIF" and im.mode == "RGB":  # gray (L) is stored exactly: a GIF palette holds all 256 levels
        im = _dithered(im, 256)
    if fmt == "TIFF" and iptc:  # Pillow writes the tag as UNDEFINED (libtiff takes no other type from it)
        buffer = io.BytesIO()
        im.save(buffer, format=fmt, **params)
        fh.write(_iptc_as_longs(buffer.getbuffer()))
        return
    if fmt == "GIF" and xmp:  # Pillow's GIF writer takes no xmp=
        buffer = io.BytesIO()
        im.save(buffer, format=fmt, **params)
        fh.write(_gif_with_xmp(buffer.getbuffer(), xmp))
        return
    im.save(fh, format=fmt, **params)


# XMP's "magic trailer" in GIF: the raw packet reads as GIF sub-blocks whatever its length once it is followed by
# 0x01, 0xFF, 0xFE, ..., 0x01, 0x00 and the block terminator 0x00 (XMP Specification Part 3, 1.1.2)
_GIF_XMP_TRAILER = b"\x01" + bytes(range(255, -1, -1)) + b"\x00"


def _gif_with_xmp(gif, xmp: bytes) -> bytes:
    """A GIF with ``xmp`` in an "XMP DataXMP" application extension, as Photoshop and exiftool write it, after
    the global colour table. ``xmp`` holds no NUL byte (see write_image)."""
    data = bytes(gif)
    flags = data[10]
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    return data[:at] + b"\x21\xff\x0bXMP DataXMP" + xmp + _GIF_XMP_TRAILER + data[at:]


def _iptc_as_longs(tiff) -> bytearray:
    """A classic TIFF with its IPTC-NAA tag (33723, UNDEFINED bytes of a length divisible by 4) retyped as
    LONGs, the same bytes, as Photoshop and exiftool write it."""
    out = bytearray(tiff)
    e = "<" if out[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(e + "I", out, 4)
        (n,) = struct.unpack_from(e + "H", out, ifd)
        for i in range(n):
            pos = ifd + 2 + 12 * i
            tag, typ, count = struct.unpack_from(e + "HHI", out, pos)
            if tag == _IPTC_TAG and typ == 7 and count % 4 == 0:
                struct.pack_into(e + "HI", out, pos + 2, 4, count // 4)
    except struct.error:  # pragma: no cover - Pillow's own file
        pass
    return out


def _dithered(rgb: Image.Image, colours: int) -> Image.Image:
    """``rgb`` in a palette of at most ``colours``, the indices below ``colours``. An image of no more
    colours than that (a gray picture stored as RGB, a drawing) is stored exactly: Pillow's mapping onto
    a palette looks colours up coarsely, and moved 75% of a gray scan's pixels by up to 3 levels though
    all its levels were in the palette. A photo gets an octree palette, Floyd-Steinberg dithered: mapped
    to the nearest colour alone (Pillow's GIF conversion), its gradients came out in bands, and a median
    cut palette left skin speckled (6 dB less PSNR, blurred as the eye sees dithering, on Set14's faces)."""
    found = rgb.getcolors(colours)
    if found is not None:
        palette = np.array([colour for _, colour in found], dtype=np.uint8).reshape(-1, 3)
        keys = _packed_rgb(palette)
        order = np.argsort(keys)
        indices = order[np.searchsorted(keys[order], _packed_rgb(np.asarray(rgb)))]
        out = Image.fromarray(indices.astype(np.uint8), "P")
        out.putpalette(palette.ravel().tolist())
        return out
    octree = rgb.quantize(colours, method=Image.Quantize.FASTOCTREE)
    return rgb.quantize(palette=octree, dither=Image.Dither.FLOYDSTEINBERG)


def _packed_rgb(rgb: np.ndarray) -> np.ndarray:
    """Each (..., 3) uint8 colour as one number."""
    return (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]


def _gif_with_transparency(rgba: Image.Image) -> Image.Image:
    """A palette image for GIF with 1-bit transparency: 255 colours (dithered), and index 255 where
    alpha is below half. Pillow's own RGBA to P conversion lost all transparency for some alpha mixes.
    The colours under the transparent pixels are left out of the palette: they do not show."""
    arr = np.asarray(rgba)
    alpha = arr[..., 3]
    rgb = arr[..., :3]
    hidden = alpha < 128
    if hidden.any() and not hidden.all():
        rgb = rgb.copy()
        rgb[hidden] = rgb[~hidden][0]
    paletted = _dithered(Image.fromarray(np.ascontiguousarray(rgb), "RGB"), 255)
    indices = np.asarray(paletted).copy()
    indices[hidden] = 255
    out = Image.fromarray(indices, "P")
    palette = (paletted.getpalette() or [])[: 255 * 3]
    out.putpalette(palette + [0] * (256 * 3 - len(palette)))
    return out


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _png_colour_chunks(colour: dict) -> list[bytes]:
    """gAMA, cHRM and sRGB chunks from Pillow's PNG info values (stored as 100000 times the number);
    a value out of the chunk's range is left out."""
    chunks = []
    gamma = colour.get("gamma")
    if isinstance(gamma, (int, float)) and 0 < round(gamma * 100000) < 1 << 31:
        chunks.append(_png_chunk(b"gAMA", struct.pack(">I", round(gamma * 100000))))
    points = colour.get("chromaticity")
    if isinstance(points, (tuple, list)) and len(points) == 8:
        values = [round(v * 100000) if isinstance(v, (int, float)) else -1 for v in points]
        if all(0 <= v < 1 << 31 for v in values):
            chunks.append(_png_chunk(b"cHRM", struct.pack(">8I", *values)))
    intent = colour.get("srgb")
    if isinstance(intent, int) and 0 <= intent <= 3:
        chunks.append(_png_chunk(b"sRGB", bytes([intent])))
    return chunks


_D50 = (0.9642, 1.0, 0.8249)  # the ICC profile connection space's white
_SRGB_CHROMATICITY = (0.3127, 0.3290, 0.64, 0.33, 0.30, 0.60, 0.15, 0.06)  # white, red, green, blue (x, y)
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


def _icc_from_png_colour(colour: dict, *, gray: bool) -> bytes | None:
    """An ICC profile (version 2.1, a display profile as the sRGB one is) that describes what a PNG's gAMA
    and cHRM say: a tone curve of 1/gamma for each channel and, for colour, the primaries and white point
    of cHRM (sRGB's where it has none; gray takes the white point alone), adapted to D50 by Bradford's
    method. A gamma left out is taken as 1/2.2, as viewers take it.

    None where nothing needs saying: an sRGB chunk (it overrides gAMA and cHRM), gAMA 1/2.2 with sRGB's
    chromaticities or none (the sRGB that every reader assumes). ValueError, saying why, for values no
    real image has (a gamma of 0, primaries on a line, a white point outside them)."""
    gamma, points = colour.get("gamma"), colour.get("chromaticity")
    if "srgb" in colour or (gamma is None and points is None):
        return None
    try:
        gamma = 1 / 2.2 if gamma is None else float(gamma)
        xy = _SRGB_CHROMATICITY if points is None else tuple(float(v) for v in points)
        if len(xy) != 8 or not 0.01 <= gamma <= 10 or not all(0 < v < 1 for v in xy):
            raise ValueError("they hold values no real image has")
        if abs(gamma * 2.2 - 1) < 0.001 and np.allclose(xy, _SRGB_CHROMATICITY, rtol=0, atol=0.001):
            return None
        # white, red, green, blue as XYZ of luminance 1
        xyz = np.array([[x / y, 1.0, (1 - x - y) / y] for x, y in zip(xy[::2], xy[1::2], strict=True)])
        white, primaries = xyz[0], xyz[1:].T  # primaries: one column each
        scales = np.linalg.solve(primaries, white)
        # real colours: each point inside the chromaticity triangle (x + y < 1), the white inside the
        # primaries' triangle (every scale positive); primaries a hair off a line, or a white outside
        # them, gave colorants of +-20,000 with a negative luminance
        if any(x + y > 1 + 1e-9 for x, y in zip(xy[::2], xy[1::2], strict=True)) or not np.all(scales > 1e-6):
            raise ValueError("its primaries and white point describe no real colours")
        to_xyz = primaries * scales  # scaled so that RGB 1, 1, 1 is the white
        cone = _BRADFORD @ white
        adapt = np.linalg.solve(_BRADFORD, (_BRADFORD @ np.array(_D50) / cone)[:, None] * _BRADFORD)
        colorants = adapt @ to_xyz
    except (TypeError, ZeroDivisionError, np.linalg.LinAlgError, OverflowError):
        raise ValueError("they hold values no real image has") from None
    if not np.all(np.isfinite(colorants)) or np.abs(colorants).max() > 32767:
        raise ValueError("its primaries and white point describe no real colours")

    def xyz_tag(values) -> bytes:
        return b"XYZ \x00\x00\x00\x00" + struct.pack(">3i", *(round(float(v) * 65536) for v in values))

    curve = b"curv\x00\x00\x00\x00" + struct.pack(">IH", 1, max(1, min(65535, round(256 / gamma)))) + b"\x00\x00"
    described = f"PNG gAMA {gamma:.5f}" + ("" if points is None or gray else " and cHRM")
    text = described.encode("ascii")
    desc = b"desc\x00\x00\x00\x00" + struct.pack(">I", len(text) + 1) + text + b"\x00" + bytes(4 + 4 + 2 + 1 + 67)
    tags = [(b"desc", desc), (b"cprt", b"text\x00\x00\x00\x00No copyright, use freely\x00"), (b"wtpt", xyz_tag(white))]
    if gray:
        tags.append((b"kTRC", curve))
    else:
        tags += [(sig, xyz_tag(colorants[:, i])) for i, sig in enumerate((b"rXYZ", b"gXYZ", b"bXYZ"))]
        tags += [(b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = [struct.pack(">I", len(tags))], []
    for sig, body in tags:
        table.append(sig + struct.pack(">II", offset, len(body)))
        data.append(body + bytes(-len(body) % 4))
        offset += len(data[-1])
    header = struct.pack(">I4sI4s4s4s6H4s", offset, b"\x00" * 4, 0x02100000, b"mntr", b"GRAY" if gray else b"RGB ",
                         b"XYZ ", 2024, 1, 1, 0, 0, 0, b"acsp")  # fmt: skip
    header += bytes(24) + struct.pack(">I3i", 0, *(round(v * 65536) for v in _D50))
    return header + bytes(128 - len(header)) + b"".join(table) + b"".join(data)


def _band_rows(row_size: int, band_size: int = 1 << 22) -> int:
    """Rows per band when a large image is worked through in bands: about ``band_size`` items
    (bytes or samples; 4 M by default, 1 MB for the bands the PNG and TIFF writers compress)."""
    return max(1, band_size // max(1, row_size))


def _encoder_threads() -> int:
    """Threads for PNG and 16-bit TIFF compression: PyTorch's intra-op thread count when PyTorch is loaded (so
    OMP_NUM_THREADS and ``torch.set_num_threads`` limit both), else the CPUs this process may
    use; at most 8."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        cpus = torch.get_num_threads()
    else:
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _png_filter_rows(raw: np.ndarray, above: np.ndarray, bpp: int, adaptive: bool) -> np.ndarray:
    """PNG-filter rows of bytes: (n, row bytes) uint8 -> (n, 1 + row bytes), filter type first.

    ``above`` is the unfiltered row before ``raw[0]`` (zeros for an image's first row) and
    ``bpp`` the bytes per pixel. Without ``adaptive`` every row uses Up. With it each row gets
    the filter libpng and Pillow choose by default: of None, Sub, Up, Average and Paeth, the
    one whose bytes, read as signed, have the smallest sum of magnitudes. Encoding reads only
    unfiltered bytes, so every filter is one vectorised pass over the band.
    """
    n, width = raw.shape
    up = np.empty_like(raw)
    up[0] = above
    up[1:] = raw[:-1]
    out = np.empty((n, width + 1), dtype=np.uint8)
    if not adaptive:
        out[:, 0] = 2
        np.subtract(raw, up, out=out[:, 1:])  # uint8 arithmetic wraps modulo 256, as PNG wants
        return out
    left, upper_left = np.zeros_like(raw), np.zeros_like(raw)
    left[:, bpp:] = raw[:, :-bpp]
    upper_left[:, bpp:] = up[:, :-bpp]
    a, b, c = left.astype(np.int16), up.astype(np.int16), upper_left.astype(np.int16)
    pa, pb = b - c, a - c  # Paeth: p = a + b - c, and these are p - a, p - b, p - c
    pc = pa + pb
    np.abs(pa, out=pa), np.abs(pb, out=pb), np.abs(pc, out=pc)
    paeth = np.where(pb <= pc, up, upper_left)
    np.copyto(paeth, left, where=(pa <= pb) & (pa <= pc))
    del pa, pb, pc, c, upper_left
    a += b
    a >>= 1
    average = a.astype(np.uint8)
    del a, b
    candidates = (raw, raw - left, raw - up, raw - average, raw - paeth)
    costs = np.stack([np.abs(f.view(np.int8).astype(np.int16)).sum(axis=1) for f in candidates])
    choice = costs.argmin(axis=0)
    out[:, 0] = choice
    for kind, filtered in enumerate(candidates):
        rows = choice == kind
        if rows.any():
            out[rows, 1:] = filtered[rows]
    return out


def _adler32_combine(first: int, second: int, second_length: int) -> int:
    """The Adler-32 of A + B from those of A and B and the length of B (as zlib's adler32_combine)."""
    base = 65521
    s1 = ((first & 0xFFFF) + (second & 0xFFFF) - 1) % base
    s2 = ((first >> 16) + (second >> 16) + second_length * ((first & 0xFFFF) - 1)) % base
    return (s2 << 16) | s1


def _in_order(fn, items, threads: int) -> Iterator:
    """``fn(item)`` for each item, yielded in order; up to ``threads`` run at once, a few ahead."""
    if threads <= 1 or len(items) <= 1:
        yield from map(fn, items)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(threads, thread_name_prefix="srgan-png")
    try:
        window: collections.deque = collections.deque()
        for item in items:
            window.append(pool.submit(fn, item))
            if len(window) > threads:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write_png(
    fh,
    planes: np.ndarray,
    bit_depth: int,
    icc: bytes | None,
    exif: bytes | None,
    text: dict[str, str],
    threads: int | None = None,
    dpi: tuple[float, float] | None = None,
    *,
    xmp: bytes | None = None,
    colour: dict | None = None,
    iptc: bytes | None = None,
) -> None:
    """Write a PNG (gray, gray+alpha, RGB, RGBA; 8 or 16 bits) to ``fh``, band by band, in parallel.

    ``planes`` is (H, W, C) float in [0, 1] or already quantised to ``bit_depth``; each band
    of about 1 MB of rows is quantised, filtered and deflated on its own (threads: the CPUs
    available, at most 8), so memory stays the pixels plus a few bands and the file is the
    same whatever the thread count. 8-bit rows get the adaptive filter of libpng and Pillow;
    16-bit rows use Up (our own 16-bit reader then undoes them with one vectorised pass per
    row; Paeth would compress 3-4% better but needs a sequential sweep to decode). Each band
    is a raw deflate stream ended by a sync flush (the last one by the final block), so the
    pieces, in order, form one zlib stream; each goes out as its own IDAT chunk. Deflate uses
    the "filtered" strategy with memLevel 9, as Pillow does: files are as small as Pillow's.

    ``colour`` (Pillow's PNG info "gamma", "chromaticity", "srgb") becomes gAMA, cHRM and sRGB chunks
    (the caller leaves it out with an ICC profile); ``xmp`` an uncompressed iTXt "XML:com.adobe.xmp";
    ``iptc`` a zTXt "Raw profile type iptc", as ImageMagick and exiftool write it.
    """
    h, w, c = planes.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    head = [_PNG_SIGNATURE, _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bit_depth, ctype, 0, 0, 0))]
    if icc:
        head.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    head += _png_colour_chunks(colour or {})  # before IDAT (and PLTE), as the spec wants
    for k, v in text.items():
        key = k.encode("latin-1", "replace")[:79]
        if not key or b"\x00" in key:  # a chunk without a keyword (or with a NUL in it) is invalid PNG
            continue
        try:
            head.append(_png_chunk(b"tEXt", key + b"\x00" + v.encode("latin-1")))
        except UnicodeEncodeError:
            head.append(_png_chunk(b"iTXt", key + b"\x00\x00\x00\x00\x00" + v.encode("utf-8")))
    if exif:
        head.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    if xmp:
        head.append(_png_chunk(b"iTXt", _XMP_KEY + b"\x00\x00\x00\x00\x00" + xmp))
    if iptc:
        profile = _raw_profile_text("IPTC profile", _iptc_resources(iptc)).encode("ascii")
        head.append(_png_chunk(b"zTXt", _RAW_IPTC_KEY.encode() + b"\x00\x00" + zlib.compress(profile)))
    if dpi:  # pixels per metre
        head.append(_png_chunk(b"pHYs", struct.pack(">IIB", *(max(1, round(d / 0.0254)) for d in dpi), 1)))
    fh.write(b"".join(head))
    bpp = c * bit_depth // 8
    step = _band_rows(w * bpp, 1 << 20)

    def band(start: int) -> tuple[bytes, int, int]:
        stop = min(h, start + step)
        q = _quantise(planes[max(0, start - 1) : stop], bit_depth)
        raw = (q.astype(">u2") if bit_depth == 16 else q).reshape(q.shape[0], -1).view(np.uint8)
        above = raw[0] if start else np.zeros(raw.shape[1], dtype=np.uint8)
        rows = _png_filter_rows(raw[1:] if start else raw, above, bpp, adaptive=bit_depth == 8)
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_FILTERED)
        piece = deflate.compress(rows) + deflate.flush(zlib.Z_FINISH if stop == h else zlib.Z_SYNC_FLUSH)
        return piece, zlib.adler32(rows), rows.size

    checksum, stream = 1, b"\x78\x9c"  # the zlib header: deflate, 32 KB window, default level
    starts = range(0, h, step)
    for i, (piece, adler, length) in enumerate(_in_order(band, starts, threads or _encoder_threads())):
        checksum = _adler32_combine(checksum, adler, length)
        stream += piece
        if i == len(starts) - 1:
            stream += struct.pack(">I", checksum)
        fh.write(_png_chunk(b"IDAT", stream))
        stream = b""
    fh.write(_png_chunk(b"IEND", b""))


def _write_tiff16(
    fh,
    planes: np.ndarray,
    icc: bytes | None,
    exif: bytes | None,
    text: dict[str, str],
    threads: int | None = None,
    dpi: tuple[float, float] | None = None,
    *,
    xmp: bytes | None = None,
    iptc: bytes | None = None,
    photoshop: bytes | None = None,
) -> None:
    """Write a little-endian 16-bit TIFF, deflate-compressed with the horizontal predictor.

    ``planes`` is (H, W, C) float in [0, 1] or uint16. The strips (about 1 MB of rows each)
    come first, right after the header, each quantised, predicted and deflated on its own,
    on several threads (as for PNG; the file does not depend on the count), and written
    straight into ``fh``; the directory follows them, and the header's pointer to it is
    patched at the end (``fh`` must be seekable, as a file is).

    Of ``exif`` (with ``text``'s Software merged in as for the other formats) the directory keeps the tags
    that describe the picture: ImageDescription, Make, Model, Orientation, Software, DateTime,
    Artist and Copyright. ``xmp`` goes into tag 700 (XMLPacket), ``iptc`` into tag 33723 (IPTC-NAA).

    A file that does not fit in the 4 GiB that classic TIFF's 32-bit offsets address is written as
    BigTIFF (its write failed once all its strips were compressed and written). Where the strips might
    not fit (their size is known only once compressed: more than about 715 MP of RGB) the header is
    given BigTIFF's 16 bytes, of which classic TIFF uses 8, and which kind it is is decided at the end.
    """
    h, w, c = planes.shape
    step = _band_rows(w * 2 * c, 1 << 20)
    # deflate's worst case (zlib's deflateBound) is a little over the raw size; the tags come to far less
    # than the slack, as their values are text, the ICC profile and the XMP packet
    raw = h * w * c * 2
    slack = (1 << 20) + len(icc or b"") + len(xmp or b"") + len(iptc or b"") + len(exif or b"")
    slack += sum(map(len, text.values()))
    bound = raw + raw // 2048 + 80 * -(-h // step) + slack
    head = 8 if bound <= _TIFF_CLASSIC_SIZE else 16
    fh.write(bytes(head))  # the header is written at the end, when the directory's place is known

    def strip(start: int) -> bytes:
        q = _quantise(planes[start : start + step], 16)
        band = q.astype(np.uint16)  # a copy
        band[:, 1:] = q[:, 1:] - q[:, :-1]  # uint16 wraps, as TIFF wants
        deflate = zlib.compressobj(6)  # the "filtered" strategy that suits PNG makes these 1.5% larger
        return deflate.compress(band.astype("<u2", copy=False)) + deflate.flush()

    strip_offsets, strip_counts, position = [], [], head
    for piece in _in_order(strip, range(0, h, step), threads or _encoder_threads()):
        fh.write(piece)
        strip_offsets.append(position)
        strip_counts.append(len(piece))
        position += len(piece)
    if position & 1:
        fh.write(b"\x00")  # the directory starts on a word boundary
        position += 1
    entries: list[tuple[int, int, int, bytes]] = []  # tag, type, count, value bytes

    def add(tag: int, typ: int, values: list[int] | bytes) -> None:
        if isinstance(values, bytes):
            entries.append((tag, typ, len(values), values))
        else:
            fmt = {3: "<H", 4: "<I"}[typ]
            entries.append((tag, typ, len(values), b"".join(struct.pack(fmt, v) for v in values)))

    add(256, 4, [w])
    add(257, 4, [h])
    add(258, 3, [16] * c)
    add(259, 3, [8])
    add(262, 3, [2 if c >= 3 else 1])
    tags = Image.Exif()
    merged = _prepare_exif(exif, text)
    if merged:
        tags.load(merged)
    for tag in sorted(_TIFF_OUTPUT_TAGS & set(tags)):
        value = tags[tag]
        if tag == _ORIENTATION and isinstance(value, int):
            add(tag, 3, [value])
        elif isinstance(value, str):  # ASCII, as Pillow writes it
            add(tag, 2, value.encode("latin-1", "replace") + b"\x00")  # the bytes Pillow read (UTF-8 too)
    add(277, 3, [c])
    add(278, 4, [min(step, h)])
    if dpi:
        for tag, d in zip((282, 283), dpi, strict=True):
            ratio = fractions.Fraction(d).limit_denominator(1000)
            entries.append((tag, 5, 1, struct.pack("<II", ratio.numerator, ratio.denominator)))
    add(284, 3, [1])
    if dpi:
        add(296, 3, [2])  # inches
    add(317, 3, [2])
    if c in (2, 4):
        add(338, 3, [2])  # unassociated alpha
    add(339, 3, [1] * c)
    if xmp:
        add(_XMP_TAG, 1, xmp)
    if iptc:  # LONGs, as Photoshop and exiftool write it: padded to a multiple of 4 (readers trim it)
        padded = iptc + b"\x00" * (-len(iptc) % 4)
        entries.append((_IPTC_TAG, 4, len(padded) // 4, padded))
    if photoshop:
        add(_PHOTOSHOP_TAG, 1, photoshop)
    if icc:
        add(34675, 7, icc)

    def directory(big: bool) -> bytes:
        """The directory at ``position`` with its values after it: classic TIFF (12-byte entries, values
        of up to 4 bytes in them, 32-bit offsets) or BigTIFF (20-byte entries, 8 bytes, 64-bit offsets)."""
        offset_type, offset_format = (16, "<Q") if big else (4, "<I")
        strips = [
            (273, offset_type, len(strip_offsets), b"".join(struct.pack(offset_format, v) for v in strip_offsets)),
            (279, offset_type, len(strip_counts), b"".join(struct.pack(offset_format, v) for v in strip_counts)),
        ]
        items = sorted(entries + strips, key=lambda e: e[0])
        inline, entry_size, count_format = (8, 20, "<Q") if big else (4, 12, "<H")
        cursor = position + struct.calcsize(count_format) + entry_size * len(items) + inline
        ifd, blobs = [struct.pack(count_format, len(items))], []
        for tag, typ, count, value in items:
            ifd.append(struct.pack("<HH", tag, typ) + struct.pack(offset_format, count))
            if len(value) <= inline:
                ifd.append(value.ljust(inline, b"\x00"))
            else:
                ifd.append(struct.pack(offset_format, cursor))
                blobs.append(value + b"\x00" * (len(value) & 1))
                cursor += len(blobs[-1])
        ifd.append(bytes(inline))  # no next directory
        return b"".join(ifd + blobs)

    # BigTIFF's directory is the larger: where it fits in what classic TIFF addresses, the classic one does
    big = position + len(directory(big=True)) > _TIFF_CLASSIC_SIZE
    if big and head < 16:  # pragma: no cover - the bound above is deflate's worst case
        raise ValueError("the compressed strips passed the 4 GiB a classic TIFF holds, with no room left for BigTIFF")
    fh.write(directory(big=big))
    fh.seek(0)
    fh.write(b"II+\x00" + struct.pack("<HHQ", 8, 0, position) if big else b"II*\x00" + struct.pack("<I", position))
    fh.seek(0, os.SEEK_END)


# ----------------------------------------------------------------- pixel helpers


def upscale_alpha(alpha: np.ndarray, scale: float) -> np.ndarray:
    """Resize an alpha plane by ``scale`` to round(H*scale) x round(W*scale), bicubic, in [0, 1].

    Enlarged, each output pixel is kept within the least and greatest alpha of the 3x3 input
    pixels around the one it falls in: bicubic rings past a hard edge (a 3x3 of 255 with one
    128 reached 99), a faint halo once composited. Flat and smooth alpha is unchanged."""
    import torch
    import torch.nn.functional as F

    alpha = np.asarray(alpha, dtype=np.float32)
    h, w = alpha.shape
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    t = torch.from_numpy(np.ascontiguousarray(alpha))[None, None]
    out = F.interpolate(t, size=size, mode="bicubic", align_corners=False, antialias=scale < 1)
    out = out[0, 0].clamp_(0.0, 1.0).numpy()
    if scale > 1:
        lo = (-F.max_pool2d(-t, 3, stride=1, padding=1))[0, 0].numpy()
        hi = F.max_pool2d(t, 3, stride=1, padding=1)[0, 0].numpy()
        # the input pixel each output row and column falls in (nearest, as bicubic centres them)
        rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.intp), h - 1)
        cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.intp), w - 1)
        step = _band_rows(size[1] * 4)
        for start in range(0, size[0], step):  # in bands of rows: no two more planes of the output's size
            r = rows[start : start + step, None]
            np.clip(out[start : start + step], lo[r, cols], hi[r, cols], out=out[start : start + step])
    return out


def clamp_resized_alpha(
    resized: np.ndarray, alpha: np.ndarray, *, top: int = 0, height: int | None = None
) -> np.ndarray:
    """Keep each pixel of ``resized`` (``alpha`` resized to any size) within the least and greatest
    ``alpha`` of the input pixels it covers and one more on each side, in place; returns it.

    The rule of :func:`upscale_alpha` for any scale (at a whole-number enlargement the same pixels:
    the one an output pixel falls in and its 3x3 neighbourhood): Lanczos rang past a hard edge,
    alpha 1-2 around an opaque shape on a transparent ground and 252 inside it. Worked in bands of
    rows: no plane of the output's size beside it. ``resized`` may itself be a band: the rows from
    ``top`` on of a resized alpha ``height`` rows tall (default: ``resized`` is the whole of it)."""
    alpha = np.asarray(alpha, dtype=np.float32)
    h, w = alpha.shape
    rows_here, big_w = resized.shape
    big_h = rows_here if height is None else height

    def spans(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
        # output pixel j covers [j, j + 1) * n_in / n_out of the input: first and last input pixel, one more
        j = np.arange(n_out, dtype=np.int64)
        start = np.maximum(j * n_in // n_out - 1, 0)
        stop = np.minimum(-(-(j + 1) * n_in // n_out), n_in - 1) + 1  # exclusive
        return start.astype(np.intp), np.minimum(stop, n_in).astype(np.intp)

    def extremes(plane: np.ndarray, start: np.ndarray, stop: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        lo = hi = None
        for d in range(int((stop - start).max())):
            picked = np.take(plane, np.minimum(start + d, stop - 1), axis=axis)
            lo = picked if lo is None else np.minimum(lo, picked)
            hi = picked if hi is None else np.maximum(hi, picked)
        return lo, hi

    r0, r1 = spans(h, big_h)
    c0, c1 = spans(w, big_w)
    step = _band_rows(big_w * 4)
    for start in range(0, rows_here, step):
        here = slice(start, min(start + step, rows_here))
        rows = slice(top + here.start, top + here.stop)
        first, last = int(r0[rows].min()), int(r1[rows].max())
        col_lo, col_hi = extremes(alpha[first:last], c0, c1, axis=1)  # (input rows, output width)
        lo = extremes(col_lo, r0[rows] - first, r1[rows] - first, axis=0)[0]
        hi = extremes(col_hi, r0[rows] - first, r1[rows] - first, axis=0)[1]
        np.clip(resized[here], lo, hi, out=resized[here])
    return resized


def upscale_alpha_rows(alpha: np.ndarray, scale: int, start: int, stop: int) -> np.ndarray:
    """Rows ``start`` to ``stop`` of ``upscale_alpha(alpha, scale)`` (a whole-number ``scale`` > 1),
    worked from the input rows they need only: the same pixels, without the plane of the whole."""
    h = alpha.shape[0]
    # bicubic reads 2 input rows each side, the 3x3 clamp 1: 3 more rows keep the window's edge away
    first = max(0, start // scale - 3)
    last = min(h, -(-stop // scale) + 3)
    return upscale_alpha(alpha[first:last], scale)[start - first * scale : stop - first * scale]


# Samples (all channels) of float32 a band of resize_into's source rows, or of its output rows, holds:
# 32 MB, so the rows that the Lanczos support adds to each band (8 at a halving) are a small share.
_RESIZE_BAND_SAMPLES = 1 << 23


def resize_into(
    read: Callable[[int, int], np.ndarray],
    source_size: tuple[int, int],
    out: np.ndarray,
    *,
    alpha: np.ndarray | None = None,
) -> np.ndarray:
    """Lanczos-resize an image of ``source_size`` = (width, height) into ``out`` (h, w, C): uint8 or
    uint16, quantised as ``quantise_into`` does, or float32; a band of output rows at a time.

    ``read(start, stop)`` gives the source's rows ``start`` to ``stop`` as float (rows, width, C) in
    [0, 1]: each band reads only the rows its output needs (its span and the Lanczos support each
    side), so neither the source nor the output is ever held as a whole in float. Each band is
    Pillow's resize of those rows, its vertical pass with ``box=`` the band's part of the source:
    the same filter windows and weights as :func:`resize_rgb` of the whole image (bands start where
    the source coordinate is whole, where the scales allow), so the same pixels, clipped to [0, 1]
    as there: bit for bit where the scale is a power of two, else within float32 rounding.
    ``alpha`` (the input's alpha, when ``out`` is a resized alpha of one channel): each band is kept
    within it as :func:`clamp_resized_alpha` keeps a whole one.
    """
    width, height = int(source_size[0]), int(source_size[1])
    out_h, out_w, channels = out.shape
    ratio = height / out_h
    support = 3.0 * max(1.0, ratio)  # Pillow's Lanczos reaches 3 source pixels, stretched when shrinking
    margin = math.ceil(support) + 2
    band_in = max(_RESIZE_BAND_SAMPLES // max(1, width * channels), 8 * margin)
    band = max(1, min(int(band_in / ratio), _RESIZE_BAND_SAMPLES // max(1, out_w * channels)))
    exact = out_h // math.gcd(height, out_h)  # output rows between source coordinates that are whole
    if exact <= band:
        band -= band % exact
    for o0 in range(0, out_h, band):
        o1 = min(o0 + band, out_h)
        y0, y1 = o0 * height / out_h, o1 * height / out_h
        first = max(0, math.floor(y0 - support) - 1)
        last = min(height, math.ceil(y1 + support) + margin)
        rows = np.asarray(read(first, last), dtype=np.float32)
        box = (y0 - first, y1 - first)
        planes = [_lanczos(rows[..., c], out_w, o1 - o0, box) for c in range(channels)]
        del rows
        resized = np.stack(planes, axis=2)  # a writable copy, channels last
        del planes
        np.clip(resized, 0.0, 1.0, out=resized)
        if alpha is not None:
            clamp_resized_alpha(resized[..., 0], alpha, top=o0, height=out_h)
        if out.dtype.kind == "f":
            out[o0:o1] = resized
        else:
            quantise_into(resized, out[o0:o1])
    return out


def fill_transparent(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Give fully transparent pixels the colour of nearby visible ones (push-pull), as a copy.

    Every pixel with some opacity keeps its own colour: it shows. Only the colour under alpha 0,
    arbitrary (often black) as an editor stored it, is replaced by the colour pulled in from the
    visible neighbourhood, so a network does not smear it into the edges. (Pixels under alpha
    0.5 used to fade into that fill too, which blurred the colours of a semi-transparent layer.)
    """
    import torch
    import torch.nn.functional as F

    rgb = np.asarray(rgb, dtype=np.float32)
    visible = np.asarray(alpha, dtype=np.float32) > 0
    if not np.any(visible):
        return rgb.copy()
    w = torch.from_numpy(visible.astype(np.float32))[None, None]
    c = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    # Pull: each coarser level holds the weighted mean colour of its 2x2 children and a weight
    # that is the children's summed weight capped at 1 (one opaque child makes it fully known).
    pyramid = [(c, w)]
    while max(c.shape[-2:]) > 1:
        pad = (0, c.shape[-1] % 2, 0, c.shape[-2] % 2)
        cw = F.avg_pool2d(F.pad(c * w, pad), 2)
        ws = F.avg_pool2d(F.pad(w, pad), 2)
        c = cw / ws.clamp_min(1e-12)
        w = (ws * 4.0).clamp_(max=1.0)
        pyramid.append((c, w))
    colour = pyramid[-1][0]
    # Push: fill each level's unknown part from the (smoothly upsampled) coarser level.
    for c, w in reversed(pyramid[:-1]):
        up = F.interpolate(colour, size=c.shape[-2:], mode="bilinear", align_corners=False)
        colour = w * c + (1.0 - w) * up
    fill = colour[0].permute(1, 2, 0).numpy()
    return np.where(visible[..., None], rgb, np.clip(fill, 0.0, 1.0)).astype(np.float32)


def _lanczos(plane: np.ndarray, width: int, height: int, rows: tuple[float, float] | None = None) -> np.ndarray:
    """Pillow's Lanczos resize of a float (H, W) ``plane``, or of its rows ``rows`` = (top, bottom) (a
    box, which may start and end between rows), to (height, width): float32.

    Pillow's two passes in the order its resize of a whole image of the same scale in both axes takes
    them, horizontal then vertical, each its own call: one call with both chose its own order, which
    in Pillow 13 depends on the shape (vertical first where it shrinks the most), so a band of rows
    came out otherwise rounded than the whole image. Whole images and bands now share one order."""
    image = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
    top, bottom = (0.0, float(plane.shape[0])) if rows is None else rows
    if width != plane.shape[1]:
        image = image.resize((width, plane.shape[0]), Image.Resampling.LANCZOS)
    if height == bottom - top and float(top).is_integer():  # no vertical resize: as Pillow skips that pass
        image = image.crop((0, int(top), width, int(top) + height))
    else:
        image = image.resize((width, height), Image.Resampling.LANCZOS, box=(0.0, top, float(width), bottom))
    return np.asarray(image)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Lanczos resize of float (H, W, C) or (H, W) to ``size`` = (width, height), clipped to [0, 1]."""
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim == 2:
        return resize_rgb(rgb[..., None], size)[..., 0]
    width, height = int(size[0]), int(size[1])
    if width < 1 or height < 1:
        raise ValueError(f"resize target must be at least 1x1, got {width}x{height}")
    if (width, height) == (rgb.shape[1], rgb.shape[0]):
        return rgb.copy()
    planes = [_lanczos(rgb[..., i], width, height) for i in range(rgb.shape[2])]
    return np.clip(np.stack(planes, axis=2), 0.0, 1.0).astype(np.float32)
