"""Image I/O: round trips per format and mode, metadata, broken inputs, failing writes.

Every test file is generated in tmp_path. Expected pixel values come from the arrays the
test itself made (or from Pillow as an independent decoder), never from the module under test.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import extended_xmp_jpeg, iptc_app13, iptc_records, mpo_file, srgan_record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageCms, ImageFilter, ImageOps, IptcImagePlugin, JpegImagePlugin, TiffImagePlugin
from PIL import features as _pil_features

from srgan_cli import fsutil, images
from srgan_cli.errors import SrganError
from srgan_cli.images import (
    IMAGE_SUFFIXES,
    fill_transparent,
    format_for_path,
    from_pil,
    is_image_path,
    list_images,
    output_suffix_for,
    read_image,
    resize_rgb,
    to_pil,
    upscale_alpha,
    write_image,
)

needs_avif = pytest.mark.skipif(not _pil_features.check("avif"), reason="this Pillow has no AVIF support")
needs_jpeg2000 = pytest.mark.skipif(not _pil_features.check("jpg_2000"), reason="this Pillow has no JPEG 2000 support")
RNG = np.random.default_rng(1234)
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ----------------------------------------------------------------- helpers (test-only)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _ref_filter_row(ftype: int, row: np.ndarray, prev: np.ndarray, bpp: int) -> bytes:
    """Reference PNG filter (spec section 9, one byte at a time), independent of images.py."""
    out = bytearray()
    for i, x in enumerate(row.tolist()):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        a, b, c = int(a), int(b), int(c)
        if ftype == 0:
            pred = 0
        elif ftype == 1:
            pred = a
        elif ftype == 2:
            pred = b
        elif ftype == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out.append((x - pred) & 0xFF)
    return bytes([ftype]) + bytes(out)


def _ref_png(arr: np.ndarray, depth: int, ctype: int, *, interlace: bool = False, seed: int = 0) -> bytes:
    """Encode (H, W, C) samples as PNG with a random filter per row (and Adam7 if asked)."""
    rng = np.random.default_rng(seed)
    h, w, c = arr.shape
    dtype = ">u2" if depth == 16 else "u1"
    bpp = c * depth // 8
    passes = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
    raw = bytearray()
    for x0, y0, dx, dy in passes if interlace else ((0, 0, 1, 1),):
        sub = arr[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        rows = sub.astype(dtype).view(np.uint8).reshape(sub.shape[0], -1)
        prev = np.zeros(rows.shape[1], dtype=np.uint8)
        for row in rows:
            raw += _ref_filter_row(int(rng.integers(0, 5)), row, prev, bpp)
            prev = row
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 1 if interlace else 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(bytes(raw))) + _chunk(b"IEND", b"")
    )


@functools.cache
def _srgb_icc() -> bytes:
    # made once: a profile records when it was made, so two made a second apart differ (a test comparing
    # them failed now and then)
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _q(x: np.ndarray, top: int) -> np.ndarray:
    return np.rint(np.asarray(x, dtype=np.float64) * top).astype(np.int64)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------- paths and formats


def test_suffixes_and_formats():
    assert {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"} < IMAGE_SUFFIXES
    assert {".ppm", ".pgm", ".pbm", ".pnm"} < IMAGE_SUFFIXES  # netpbm: read, never written
    assert format_for_path("x.PGM") == "PPM"
    assert is_image_path("a/B.JPG") and is_image_path(Path("x.tiff")) and not is_image_path("x.txt")
    assert output_suffix_for("PNG") == ".png" and output_suffix_for("JPEG") == ".jpg"
    assert output_suffix_for("jpeg") == ".jpg"
    assert format_for_path("x.JPeG") == "JPEG" and format_for_path("x.tif") == "TIFF"
    with pytest.raises(SrganError, match=r"x\.xyz"):
        format_for_path("x.xyz")
    with pytest.raises(SrganError, match="PPM"):
        output_suffix_for("PPM")


# ----------------------------------------------------------------- round trips

ROUND_TRIPS = [
    # (suffix, channels, bit_depth, exact)
    (".png", "RGB", 8, True),
    (".png", "RGBA", 8, True),
    (".png", "L", 8, True),
    (".png", "LA", 8, True),
    (".png", "RGB", 16, True),
    (".png", "RGBA", 16, True),
    (".png", "L", 16, True),
    (".png", "LA", 16, True),
    (".tif", "RGB", 8, True),
    (".tiff", "RGBA", 8, True),
    (".tif", "L", 8, True),
    (".tif", "RGB", 16, True),
    (".tif", "RGBA", 16, True),
    (".tif", "L", 16, True),
    (".bmp", "RGB", 8, True),
    (".bmp", "L", 8, True),
    (".webp", "RGBA", 8, False),
    (".jpg", "RGB", 8, False),
    (".jpeg", "L", 8, False),
]


@pytest.mark.parametrize("suffix,channels,bit_depth,exact", ROUND_TRIPS)
def test_round_trip(tmp_path, suffix, channels, bit_depth, exact):
    h, w = 23, 31
    top = 65535 if bit_depth == 16 else 255
    gray = channels.startswith("L")
    if exact:
        base = RNG.integers(0, top + 1, (h, w, 1 if gray else 3))
    else:  # lossy codecs: a smooth picture so the error bound is meaningful
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * 8) % 256, (yy * 11) % 256, ((xx + yy) * 4) % 256], axis=2)[..., : 1 if gray else 3]
    rgb = np.repeat(base, 3, axis=2) if gray else base
    alpha = RNG.integers(0, top + 1, (h, w)) if channels.endswith("A") else None
    out = write_image(
        tmp_path / f"img{suffix}",
        rgb / top,
        alpha=None if alpha is None else alpha / top,
        bit_depth=bit_depth,
        grayscale=gray,
    )
    assert out == tmp_path / f"img{suffix}" and out.is_file()
    got = read_image(out)
    assert got.rgb.dtype == np.float32 and got.rgb.shape == (h, w, 3)
    assert got.size == (w, h)
    assert got.bit_depth == bit_depth
    assert got.format == format_for_path(out)
    assert got.n_frames == 1
    if not (suffix.startswith(".tif") and channels == "LA"):
        assert got.grayscale == gray
    if exact:
        assert np.array_equal(_q(got.rgb, top), rgb)
    else:
        assert np.abs(_q(got.rgb, top) - rgb).mean() < 4
    if alpha is None:
        assert got.alpha is None
    else:
        assert got.alpha is not None and got.alpha.shape == (h, w)
        assert np.abs(_q(got.alpha, top) - alpha).max() <= (0 if exact else 1)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_sixteen_bit_values_are_not_truncated_to_eight(tmp_path):
    # Values differing only in the low byte must survive: the 8-bit path would merge them.
    rgb = np.array([[[256, 257, 258], [65534, 1, 0]]], dtype=np.float64) / 65535
    for suffix in (".png", ".tif"):
        got = read_image(write_image(tmp_path / f"x{suffix}", rgb, bit_depth=16))
        assert _q(got.rgb, 65535).tolist() == [[[256, 257, 258], [65534, 1, 0]]]


def test_sixteen_bit_png_is_readable_by_pillow(tmp_path):
    # An independent decoder sees the same picture (Pillow keeps the high byte of 16-bit colour).
    rgb16 = RNG.integers(0, 65536, (9, 14, 3))
    out = write_image(tmp_path / "x.png", rgb16 / 65535, bit_depth=16, text={"model": "m"})
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), (rgb16 >> 8).astype(np.uint8))
        assert im.text["model"] == "m"


@pytest.mark.parametrize("shape", [(13, 11), (11, 13), (1, 1), (2, 3), (9, 1), (1, 9), (4, 40)])
@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("ctype,channels", [(2, 3), (6, 4), (4, 2)])
def test_sixteen_bit_png_with_every_filter_and_interlace(tmp_path, shape, interlace, ctype, channels):
    arr = RNG.integers(0, 65536, (*shape, channels)).astype(np.uint16)
    path = tmp_path / "ref.png"
    path.write_bytes(_ref_png(arr, 16, ctype, interlace=interlace, seed=ctype))
    got = read_image(path)
    assert got.bit_depth == 16
    if ctype == 4:
        assert got.grayscale and np.array_equal(_q(got.rgb[..., 0], 65535), arr[..., 0])
    else:
        assert np.array_equal(_q(got.rgb, 65535), arr[..., :3])
    if channels in (2, 4):
        assert np.array_equal(_q(got.alpha, 65535), arr[..., -1])


def test_sixteen_bit_png_exif_orientation(tmp_path):
    arr = RNG.integers(0, 65536, (3, 5, 3)).astype(np.uint16)
    exif = Image.Exif()
    exif[0x0112] = 8
    png = _ref_png(arr, 16, 2)
    at = 8 + 25  # after the signature and IHDR
    png = png[:at] + _chunk(b"eXIf", exif.tobytes()[6:]) + png[at:]
    (tmp_path / "o16.png").write_bytes(png)
    got = read_image(tmp_path / "o16.png")
    assert got.bit_depth == 16 and got.size == (3, 5)
    assert np.array_equal(_q(got.rgb, 65535), np.rot90(arr, k=1))  # orientation 8: 90 degrees counter-clockwise
    back = Image.Exif()
    back.load(got.exif)
    assert back[0x0112] == 1


def test_png_unfilter_matches_pillow_on_8_bit(tmp_path):
    # Pillow is the oracle: the same random-filter rows decoded by both.
    arr = RNG.integers(0, 256, (17, 19, 3)).astype(np.uint8)
    data = _ref_png(arr, 8, 2, seed=7)
    (tmp_path / "p.png").write_bytes(data)
    with Image.open(tmp_path / "p.png") as im:
        pil = np.asarray(im)
    assert np.array_equal(pil, arr)
    raw = zlib.decompress(data[33 + 8 : -12 - 4])  # the IDAT body: after IHDR, before its CRC and IEND
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(17, 1 + 19 * 3)
    ours = images._png_unfilter(rows[:, 0], rows[:, 1:].reshape(17, 19, 3), "p.png")
    assert np.array_equal(ours.reshape(17, 19, 3), pil)


def _tiff(
    width,
    height,
    spp,
    chunks,
    *,
    endian="<",
    compression=1,
    predictor=1,
    rows=None,
    tile=None,
    extra=2,
    orientation=None,
    planar=1,
    photometric=2,
    bits=16,
    sample_format=1,
    big=False,
):
    """A 16-bit TIFF from already encoded strips or tiles (test-side writer); chunky unless
    ``planar`` is 2 (then ``chunks`` holds each plane's strips, one plane after the other);
    BigTIFF with ``big``."""
    e = endian
    start = 16 if big else 8  # the header's size
    body = bytearray()
    offsets = []
    for c in chunks:
        offsets.append(start + len(body))
        body += c + (b"\x00" if len(c) % 2 else b"")
    tags = {256: (4, [width]), 257: (4, [height]), 258: (3, [bits] * spp), 259: (3, [compression])}
    tags.update({262: (3, [photometric]), 277: (3, [spp]), 284: (3, [planar]), 317: (3, [predictor])})
    tags[339] = (3, [sample_format] * spp)
    if spp == 4:
        tags[338] = (3, [extra])
    if orientation is not None:
        tags[274] = (3, [orientation])
    if tile:
        tags.update({322: (4, [tile]), 323: (4, [tile]), 324: (4, offsets), 325: (4, [len(c) for c in chunks])})
    else:
        tags.update({273: (4, offsets), 278: (4, [rows or height]), 279: (4, [len(c) for c in chunks])})
    entries = []
    inline, offset = (8, "Q") if big else (4, "I")
    for tag in sorted(tags):
        typ, values = tags[tag]
        value = b"".join(struct.pack(e + ("H" if typ == 3 else "I"), v) for v in values)
        if len(value) <= inline:
            entries.append(struct.pack(e + "HH" + offset, tag, typ, len(values)) + value.ljust(inline, b"\x00"))
        else:
            entries.append(struct.pack(e + "HH" + offset * 2, tag, typ, len(values), start + len(body)))
            body += value
    ifd = struct.pack(e + ("Q" if big else "H"), len(entries)) + b"".join(entries) + bytes(inline)
    if big:
        head = (b"II+\x00" if e == "<" else b"MM\x00+") + struct.pack(e + "HHQ", 8, 0, start + len(body))
    else:
        head = (b"II*\x00" if e == "<" else b"MM\x00*") + struct.pack(e + "I", start + len(body))
    return head + bytes(body) + ifd


def _hdiff(arr: np.ndarray) -> np.ndarray:
    """TIFF horizontal predictor (per sample, modulo 2**16), computed the plain way."""
    d = arr.astype(np.int64)
    d[:, 1:] = d[:, 1:] - d[:, :-1]
    return (d % 65536).astype(np.uint16)


def _pillow_lzw(samples: np.ndarray, tmp_path: Path):
    """LZW strips by libtiff (via Pillow) for (H, W, spp) uint16 samples seen as a wide gray image."""
    h, w, spp = samples.shape
    gray = Image.frombytes("I;16", (w * spp, h), samples.astype("<u2").tobytes())
    gray.save(tmp_path / "gray_lzw.tif", compression="tiff_lzw")
    data = (tmp_path / "gray_lzw.tif").read_bytes()
    with Image.open(tmp_path / "gray_lzw.tif") as im:
        offs, counts, rows = im.tag_v2[273], im.tag_v2[279], im.tag_v2.get(278, h)
    return [data[o : o + c] for o, c in zip(offs, counts, strict=True)], int(np.atleast_1d(rows)[0])


@pytest.mark.parametrize(
    "layout", ["raw_le", "raw_be", "deflate_pred", "lzw", "lzw_pred", "tiles_raw", "tiles_deflate_pred"]
)
@pytest.mark.parametrize("spp", [3, 4])
def test_sixteen_bit_tiff_layouts(tmp_path, layout, spp):
    h, w = 18, 21
    arr = RNG.integers(0, 65536, (h, w, spp)).astype(np.uint16)
    if layout in ("raw_le", "raw_be"):
        e = "<" if layout == "raw_le" else ">"
        rows = 5
        chunks = [arr[y : y + rows].astype(e + "u2").tobytes() for y in range(0, h, rows)]
        data = _tiff(w, h, spp, chunks, endian=e, rows=rows)
    elif layout == "deflate_pred":
        chunks = [zlib.compress(_hdiff(arr[y : y + 7]).astype("<u2").tobytes()) for y in range(0, h, 7)]
        data = _tiff(w, h, spp, chunks, compression=8, predictor=2, rows=7)
    elif layout.startswith("lzw"):
        pred = layout == "lzw_pred"
        chunks, rows = _pillow_lzw(_hdiff(arr) if pred else arr, tmp_path)
        data = _tiff(w, h, spp, chunks, compression=5, predictor=2 if pred else 1, rows=rows)
    else:
        pred = layout == "tiles_deflate_pred"
        chunks = []
        for y in range(0, h, 16):
            for x in range(0, w, 16):
                t = np.zeros((16, 16, spp), dtype=np.uint16)
                part = arr[y : y + 16, x : x + 16]
                t[: part.shape[0], : part.shape[1]] = part
                raw = (_hdiff(t) if pred else t).astype("<u2").tobytes()
                chunks.append(zlib.compress(raw) if pred else raw)
        data = _tiff(w, h, spp, chunks, compression=8 if pred else 1, predictor=2 if pred else 1, tile=16)
    path = tmp_path / "c16.tif"
    path.write_bytes(data)
    with Image.open(path) as im:  # Pillow alone reads the high bytes: the file is valid
        assert np.array_equal(np.asarray(im.convert("RGB")), (arr[..., :3] >> 8).astype(np.uint8))
    got = read_image(path)
    assert got.bit_depth == 16 and got.size == (w, h)
    assert np.array_equal(_q(got.rgb, 65535), arr[..., :3])
    if spp == 4:
        assert np.array_equal(_q(got.alpha, 65535), arr[..., 3])


@pytest.mark.parametrize("planar", [1, 2])
def test_sixteen_bit_tiff_listing_more_strips_than_its_rows_take_is_refused(tmp_path, planar):
    # the same strip listed many times over was inflated and joined every time: a 480 KB file
    # listing one strip 60,000 times took 3.4 GB
    h, w = 6, 5
    arr = RNG.integers(0, 65536, (h, w, 3)).astype(np.uint16)
    planes = [arr] if planar == 1 else [arr[..., i : i + 1] for i in range(3)]
    chunks = [zlib.compress(p[y : y + 3].astype("<u2").tobytes()) for p in planes for y in range(0, h, 3)]
    path = tmp_path / "ok.tif"
    path.write_bytes(_tiff(w, h, 3, chunks, compression=8, rows=3, planar=planar))
    assert np.array_equal(_q(read_image(path).rgb, 65535), arr)
    extra = [c for c in chunks for _ in range(3)]  # every strip listed three times: 6 strips a plane, 2 are due
    path.write_bytes(_tiff(w, h, 3, extra, compression=8, rows=3, planar=planar))
    with pytest.raises(SrganError, match=r"lists 6 strips for an image of 6 rows"):
        read_image(path)


def _tiff16_rgb(arr: np.ndarray, tmp_path: Path, layout: str, big: bool = False) -> bytes:
    """A 16-bit RGB TIFF of ``arr`` in LZW strips (``layout`` "lzw") or 16 px tiles."""
    h, w = arr.shape[:2]
    if layout == "lzw":
        chunks, rows = _pillow_lzw(arr, tmp_path)
        return _tiff(w, h, 3, chunks, compression=5, rows=rows, big=big)
    chunks = []
    for y in range(0, h, 16):
        for x in range(0, w, 16):
            t = np.zeros((16, 16, 3), dtype=np.uint16)
            part = arr[y : y + 16, x : x + 16]
            t[: part.shape[0], : part.shape[1]] = part
            chunks.append(t.astype("<u2").tobytes())
    return _tiff(w, h, 3, chunks, tile=16, big=big)


@pytest.mark.parametrize("layout", ["lzw", "tiles"])
@pytest.mark.parametrize("over", ["warned", "refused"])
def test_sixteen_bit_tiff_past_pillows_limit_keeps_sixteen_bits_quietly(tmp_path, monkeypatch, layout, over):
    # LZW and tiled 16-bit colour is read as a gray image spp times as wide, which Pillow opened with its
    # own limit in force: a 60 MP photo fell back to 8 bits, silently, and one of 30 MP warned of a bomb.
    # The limit is lowered here so that a small file crosses it as those did.
    import warnings

    h, w = 18, 21
    arr = RNG.integers(0, 65536, (h, w, 3)).astype(np.uint16)
    data = _tiff16_rgb(arr, tmp_path, layout)
    (tmp_path / "c.tif").write_bytes(data)
    gray_pixels = w * 3 * h
    limit = gray_pixels * 3 // 4 if over == "warned" else gray_pixels // 3  # past it: a warning; past twice: refused
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = read_image(tmp_path / "c.tif", max_pixels=None)
    assert got.bit_depth == 16 and np.array_equal(_q(got.rgb, 65535), arr)
    assert not [c for c in caught if issubclass(c.category, Image.DecompressionBombWarning)]
    assert Image.MAX_IMAGE_PIXELS == limit


@pytest.mark.parametrize("compression", [None, "tiff_deflate"])
def test_a_tiff_past_pillows_limit_is_read_when_max_pixels_allows(tmp_path, monkeypatch, compression):
    # Pillow checks its limit again as a TIFF loads, outside the lock under which srgan lifts it: a TIFF
    # of more than 178.9 MP was refused as a decompression bomb whatever --max-pixels said. The limit
    # is lowered here so that a small file crosses it.
    pixels = RNG.integers(0, 256, (30, 40), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "g.tif", compression=compression)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # refused past twice this
    for max_pixels in (None, 10_000):
        got = read_image(tmp_path / "g.tif", max_pixels=max_pixels)
        assert np.array_equal(_q(got.rgb[..., 0], 255), pixels)
        assert np.array_equal(images.read_rgb8(tmp_path / "g.tif", max_pixels=max_pixels)[..., 0], pixels)
    assert Image.MAX_IMAGE_PIXELS == 500
    with pytest.raises(SrganError, match="more than the limit of 1000"):  # srgan's own limit still holds
        read_image(tmp_path / "g.tif", max_pixels=1000)


@pytest.mark.parametrize("layout", ["tiles", "lzw"])
@pytest.mark.parametrize("big", [False, True])
def test_sixteen_bit_tiff_read_with_eight_bits_says_so(tmp_path, layout, big):
    # A 16-bit colour BigTIFF in tiles or LZW strips (which srgan reads at 16 bits only as classic TIFF)
    # fell back to Pillow's 8 bits, silently.
    h, w = 18, 21
    arr = RNG.integers(0, 65536, (h, w, 3)).astype(np.uint16)
    data = _tiff16_rgb(arr, tmp_path, layout, big=big)
    path = tmp_path / "c.tif"
    path.write_bytes(data)
    got = read_image(path)
    if not big:
        assert got.bit_depth == 16 and got.notes == []
        return
    assert got.bit_depth == 8 and np.array_equal(_q(got.rgb, 255), (arr >> 8).astype(np.uint8))
    kind = "tiles (no compression)" if layout == "tiles" else "strips (LZW)"
    assert got.notes == [
        f"{path}: read with 8 bits a channel, not its 16: srgan cannot decode a BigTIFF in {kind} at 16 bits; "
        "save it as PNG, or as classic TIFF (not BigTIFF) with deflate or LZW, to keep them"
    ]


@pytest.mark.parametrize("maxval", [65535, 4095])
def test_sixteen_bit_colour_ppm_keeps_its_bits(tmp_path, maxval):
    # A P6 PPM with a maxval over 255 (dcraw -4 and -6 write them) was cut to 8 bits by Pillow, silently,
    # where a 16-bit PGM kept 16.
    samples = RNG.integers(0, maxval + 1, (3, 5, 3)).astype(">u2")
    samples[0, 0] = (0, maxval, maxval // 2)
    (tmp_path / "c.ppm").write_bytes(b"P6\n# dcraw\n5 3\n%d\n" % maxval + samples.tobytes())
    got = read_image(tmp_path / "c.ppm")
    assert got.bit_depth == 16 and not got.grayscale and got.alpha is None and got.size == (5, 3)
    assert np.allclose(got.rgb, samples / maxval, atol=1e-6)
    out = write_image(tmp_path / "c.png", got.rgb, bit_depth=got.bit_depth)  # what an upscale writes
    assert np.array_equal(_q(read_image(out).rgb, 65535), np.rint(samples / maxval * 65535))
    (tmp_path / "cut.ppm").write_bytes((tmp_path / "c.ppm").read_bytes()[:-7])
    with pytest.raises(SrganError, match="cut.ppm: truncated"):
        read_image(tmp_path / "cut.ppm")


def test_sixteen_bit_plain_text_ppm_keeps_its_bits(tmp_path):
    # P3, the plain-text PPM, with a maxval over 255 was still cut to 8 bits silently after P6 kept 16
    samples = RNG.integers(0, 4096, (3, 5, 3))
    samples[0, 0] = (0, 4095, 2047)  # "0 4095 2047", 11 characters, then the comment
    rows = "\n".join(" ".join(map(str, row.ravel())) for row in samples)
    (tmp_path / "c.ppm").write_text(f"P3\n# a comment\n5 3\n4095\n{rows[:11]} # one in the data\n{rows[11:]}\n")
    got = read_image(tmp_path / "c.ppm")
    assert got.bit_depth == 16 and not got.grayscale and got.size == (5, 3)
    assert np.allclose(got.rgb, samples / 4095, atol=1e-6)
    (tmp_path / "cut.ppm").write_text(f"P3\n5 3\n4095\n{rows[:-8]}\n")
    with pytest.raises(SrganError, match="cut.ppm: truncated"):
        read_image(tmp_path / "cut.ppm")


def test_sixteen_bit_tiff_premultiplied_alpha(tmp_path):
    colour = np.array([40000, 20000, 65535], dtype=np.float64)
    alpha = np.array([[65535, 32768, 0]], dtype=np.float64)
    arr = np.zeros((1, 3, 4), dtype=np.uint16)
    arr[..., :3] = np.rint(colour * alpha[..., None] / 65535)
    arr[..., 3] = alpha
    (tmp_path / "pm.tif").write_bytes(_tiff(3, 1, 4, [arr.astype("<u2").tobytes()], extra=1))
    got = read_image(tmp_path / "pm.tif")
    assert np.allclose(got.rgb[0, :2] * 65535, colour, atol=2)  # straightened again
    assert got.rgb[0, 2].tolist() == [0, 0, 0] and _q(got.alpha, 65535).tolist() == [[65535, 32768, 0]]


@pytest.mark.parametrize("depth", [1, 2, 4, 8])
def test_low_bit_gray_png_keeps_its_transparent_value(tmp_path, depth):
    # tRNS in a 1-bit gray PNG was dropped (Pillow's mode "1" went the way of gray without alpha), and in
    # a 2- or 4-bit one matched no pixel (Pillow reports it raw, 3 or 15, and scales the pixels to 255).
    top = (1 << depth) - 1
    values = [0, top, top // 2, top]
    bits = "".join(format(v, f"0{depth}b") for v in values).ljust(8 * ((4 * depth + 7) // 8), "0")
    row = bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 1, depth, 0, 0, 0, 0))
        + _chunk(b"tRNS", struct.pack(">H", top))
        + _chunk(b"IDAT", zlib.compress(b"\x00" + row))
        + _chunk(b"IEND", b"")
    )
    (tmp_path / "g.png").write_bytes(data)
    with Image.open(tmp_path / "g.png") as im:
        from_memory = from_pil(im)
    for got in (read_image(tmp_path / "g.png"), from_memory):
        assert got.grayscale and got.alpha is not None
        assert got.alpha[0].tolist() == [1.0, 0.0, 1.0, 0.0]
        assert np.allclose(got.rgb[0, :, 0], np.array(values) / top)


def test_palette_with_transparency(tmp_path):
    idx = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    im = Image.fromarray(idx).convert("P")
    im.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    im.info["transparency"] = 1
    im.save(tmp_path / "p.png", transparency=1)
    got = read_image(tmp_path / "p.png")
    assert got.mode == "P" and got.alpha is not None
    assert _q(got.alpha, 255).tolist() == [[255, 0, 255], [255, 0, 255]]
    assert _q(got.rgb[0, 0], 255).tolist() == [255, 0, 0]
    assert _q(got.rgb[0, 2], 255).tolist() == [0, 0, 255]


def test_gray_with_transparent_value(tmp_path):
    Image.fromarray(np.array([[0, 100, 200]], dtype=np.uint8)).save(tmp_path / "t.png", transparency=100)
    got = read_image(tmp_path / "t.png")
    assert got.grayscale and _q(got.alpha, 255).tolist() == [[255, 0, 255]]


def test_sixteen_bit_gray_with_transparent_value(tmp_path):
    # A 16-bit gray PNG's tRNS (8-bit gray's was kept) was ignored: its transparent pixels came out opaque.
    pixels = np.array([[0, 30000, 65535], [30000, 12345, 30000]], dtype=np.uint16)
    Image.fromarray(pixels).save(tmp_path / "t16.png", transparency=30000)
    got = read_image(tmp_path / "t16.png")
    assert got.grayscale and got.bit_depth == 16 and got.alpha is not None
    assert _q(got.alpha, 255).tolist() == [[255, 0, 255], [0, 255, 0]]
    assert _q(got.rgb[..., 0], 65535).tolist() == pixels.tolist()
    back = read_image(write_image(tmp_path / "o.png", got.rgb, alpha=got.alpha, bit_depth=16, grayscale=True))
    assert back.mode == "LA;16" and np.array_equal(back.alpha, got.alpha)


def _gif_with_small_first_frame(path, transparent=None):
    """A 64x64 GIF screen (background: entry 2, blue) whose first frame is a 32x32 red and white block at (16, 16)."""
    palette = bytes([0, 0, 0, 255, 0, 0, 0, 0, 255, 255, 255, 255])
    frame = Image.fromarray(np.tile(np.array([[1, 3]], dtype=np.uint8), (32, 16)), "P")
    frame.putpalette(list(palette))
    buf = io.BytesIO()
    frame.save(buf, "GIF", optimize=False)
    data = buf.getvalue()
    start = data.index(b"\x2c", 13 + 3 * 2 ** ((data[10] & 7) + 1))  # its image descriptor
    screen = b"GIF89a" + struct.pack("<HHBBB", 64, 64, 0x81, 2, 0) + palette
    control = b"" if transparent is None else b"\x21\xf9\x04\x01\x00\x00" + bytes([transparent]) + b"\x00"
    path.write_bytes(screen + control + b"\x2c" + struct.pack("<HHHH", 16, 16, 32, 32) + data[start + 9 :])
    return path


def test_a_gif_first_frame_smaller_than_its_screen_leaves_the_rest_transparent(tmp_path):
    """Pillow fills the screen outside a GIF's first frame with palette entry 0: the photo came out framed in
    opaque black. Browsers show that area transparent; the GIF spec fills it with the background colour."""
    got = read_image(_gif_with_small_first_frame(tmp_path / "g.gif"))
    assert got.alpha is not None and not got.grayscale
    assert _q(got.alpha, 255)[16:48, 16:48].min() == 255 and _q(got.alpha, 255).sum() == 255 * 32 * 32
    assert _q(got.rgb[0, 0], 255).tolist() == [0, 0, 255]  # the background colour under the transparency
    assert _q(got.rgb[16, 16:18], 255).tolist() == [[255, 0, 0], [255, 255, 255]]
    with Image.open(tmp_path / "g.gif") as im:
        im.load()
        assert _q(from_pil(im).alpha, 255).sum() == 255 * 32 * 32
    # a transparent index fills the rest with itself (Pillow's own fill): transparent as before
    got = read_image(_gif_with_small_first_frame(tmp_path / "t.gif", transparent=0))
    assert _q(got.alpha, 255).sum() == 255 * 32 * 32


def test_gray_palette_is_grayscale(tmp_path):
    im = Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint8)).convert("P")
    im.save(tmp_path / "g.gif")
    got = read_image(tmp_path / "g.gif")
    assert got.grayscale and _q(got.rgb[..., 1], 255).tolist() == [[0, 128, 255]]


@pytest.mark.parametrize("hidden", [(40, 40, 40), (255, 0, 255)])  # the transparent entry's colour does not show
def test_gray_palette_with_transparency_is_grayscale_with_alpha(tmp_path, hidden):
    """As gray with a tRNS value is: a gray palette with a transparent index was read as colour,
    and came out as RGBA (PNG) or RGB (JPEG) with tinted pixels."""
    im = Image.fromarray(np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8), "P")
    im.putpalette([*hidden, 128, 128, 128, 250, 250, 250] + [0] * (253 * 3))
    im.save(tmp_path / "p.png", transparency=0)
    got = read_image(tmp_path / "p.png")
    assert got.grayscale and got.alpha is not None
    assert _q(got.alpha, 255).tolist() == [[0, 255, 255], [255, 255, 0]]
    assert _q(got.rgb[..., 1], 255)[:, 1:2].tolist() == [[128], [128]] and _q(got.rgb[0, 2], 255).tolist() == [250] * 3
    back = write_image(tmp_path / "o.png", got.rgb, alpha=got.alpha, grayscale=got.grayscale)
    with Image.open(back) as out:
        assert out.mode == "LA"
    im.putpalette([*hidden, 128, 128, 128, 250, 250, 250] + [0] * (253 * 3))
    im.save(tmp_path / "semi.png", transparency=bytes([0, 128, 255]))  # tRNS per entry: 0 hides, 128 shows
    got = read_image(tmp_path / "semi.png")
    assert got.grayscale and _q(got.alpha, 255).tolist() == [[0, 128, 255], [255, 128, 0]]


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=95)
    got = read_image(tmp_path / "c.jpg")
    assert got.mode == "CMYK" and got.rgb.shape == (6, 8, 3)
    r, g, b = got.rgb.reshape(-1, 3).mean(axis=0)
    assert r > 0.9 and g < 0.1 and b < 0.1  # cyan-free, full magenta+yellow = red
    assert got.icc_profile is None  # pixels are sRGB now; a CMYK profile would be wrong


def test_cmyk_with_unusable_profile_falls_back(tmp_path):
    Image.new("CMYK", (4, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg", icc_profile=b"not a profile" * 20)
    got = read_image(tmp_path / "c.jpg")
    assert got.rgb[..., 0].min() > 0.9 and got.rgb[..., 1:].max() < 0.1 and got.icc_profile is None


def test_corrupt_exif_is_dropped_not_fatal(tmp_path):
    Image.new("RGB", (5, 3), (10, 20, 30)).save(tmp_path / "e.jpg", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7fjunk")
    got = read_image(tmp_path / "e.jpg")
    assert got.size == (5, 3) and got.exif is None


@pytest.mark.parametrize("mode", ["1", "F", "I", "I;16B", "La", "PA", "RGBa", "YCbCr"])
def test_unusual_modes_are_converted(mode):
    base = Image.fromarray(RNG.integers(0, 256, (5, 4, 3), dtype=np.uint8))
    if mode == "F":
        im = Image.fromarray((RNG.random((5, 4)) * 0.5).astype(np.float32))
    elif mode == "I":
        im = Image.fromarray(RNG.integers(0, 65536, (5, 4)).astype(np.int32))
    elif mode == "I;16B":
        im = Image.frombytes("I;16B", (4, 5), RNG.integers(0, 65536, (5, 4)).astype(">u2").tobytes())
    elif mode in ("La", "PA", "RGBa"):
        im = base.convert("RGBA").convert(mode)
    else:
        im = base.convert(mode)
    got = from_pil(im)
    assert got.rgb.shape == (5, 4, 3) and got.rgb.dtype == np.float32
    assert 0.0 <= got.rgb.min() and got.rgb.max() <= 1.0
    if mode == "F":
        assert np.allclose(got.rgb[..., 0], np.asarray(im), atol=1e-6)
    if mode in ("I", "I;16B"):
        assert got.bit_depth == 16 and np.array_equal(_q(got.rgb[..., 0], 65535), np.asarray(im))
    assert (got.alpha is not None) == (mode in ("La", "PA", "RGBa"))


def test_i16_pil_object_round_trip(tmp_path):
    arr = RNG.integers(0, 65536, (6, 9)).astype(np.uint16)
    im = Image.frombytes("I;16", (9, 6), arr.astype("<u2").tobytes())
    got = from_pil(im)
    assert got.bit_depth == 16 and got.grayscale
    back = to_pil(got.rgb, bit_depth=16, grayscale=True)
    assert back.mode == "I;16" and np.array_equal(np.asarray(back), arr)
    assert to_pil(got.rgb, bit_depth=16).mode == "RGB"  # PIL has no 16-bit colour


# ----------------------------------------------------------------- metadata


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    arr = RNG.integers(0, 256, (4, 7, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(tmp_path / "o.png", exif=exif.tobytes())
    with Image.open(tmp_path / "o.png") as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    got = read_image(tmp_path / "o.png")
    assert np.array_equal(_q(got.rgb, 255), expected)


def test_exif_orientation_6_rotates_jpeg_and_resets_tag(tmp_path):
    arr = np.zeros((32, 48, 3), dtype=np.uint8)
    arr[:16, :16] = (255, 0, 0)  # red block top-left of the stored picture
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "TestMaker"
    Image.fromarray(arr).save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=95)
    got = read_image(tmp_path / "o.jpg")
    assert got.size == (32, 48)  # width and height swapped
    assert got.rgb[4, -4, 0] > 0.8 and got.rgb[4, 4, 0] < 0.2  # 90 degrees clockwise: top-right
    assert got.exif is not None
    back = Image.Exif()
    back.load(got.exif)
    assert back[0x0112] == 1 and back[0x010F] == "TestMaker"
    out = write_image(tmp_path / "out.jpg", got.rgb, exif=got.exif)
    with Image.open(out) as im:
        assert im.getexif()[0x0112] == 1 and im.size == (32, 48)


@pytest.mark.parametrize(
    "suffix,bit_depth", [(".png", 8), (".png", 16), (".jpg", 8), (".webp", 8), (".tif", 8), (".tif", 16)]
)
def test_icc_profile_carried_over(tmp_path, suffix, bit_depth):
    icc = _srgb_icc()
    out = write_image(tmp_path / f"i{suffix}", RNG.random((5, 6, 3)), icc_profile=icc, bit_depth=bit_depth)
    assert read_image(out).icc_profile == icc
    with Image.open(out) as im:  # an independent reader finds it too
        assert im.info.get("icc_profile") == icc


def test_icc_profile_that_does_not_fit_is_left_out(tmp_path):
    gray_icc = bytearray(_srgb_icc())
    gray_icc[16:20] = b"GRAY"  # a gray profile (header check only) must not tag colour pixels
    gray_icc = bytes(gray_icc)
    with Image.open(write_image(tmp_path / "c.webp", RNG.random((4, 4, 3)), icc_profile=gray_icc)) as im:
        assert "icc_profile" not in im.info or not im.info["icc_profile"]
    out = write_image(tmp_path / "g.png", RNG.random((4, 4, 3)), icc_profile=gray_icc, grayscale=True)
    with Image.open(out) as im:
        assert im.mode == "L" and im.info.get("icc_profile") == gray_icc
    with Image.open(
        write_image(tmp_path / "g2.png", RNG.random((4, 4, 3)), icc_profile=_srgb_icc(), grayscale=True)
    ) as im:
        assert not im.info.get("icc_profile")
    notes: list[str] = []  # a gray image to WebP, which has no gray: the profile goes, with a note
    out = write_image(
        tmp_path / "g.webp", RNG.random((4, 4, 3)), icc_profile=gray_icc, grayscale=True, on_note=notes.append
    )
    with Image.open(out) as im:
        assert im.mode == "RGB" and not im.info.get("icc_profile")
    assert notes == [f"{out}: the gray ICC colour profile is left out: WebP stores gray as RGB"]


def test_output_exif_is_upright_with_new_size(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Maker"
    exif.get_ifd(0x8769)[0xA002] = 10
    exif.get_ifd(0x8769)[0xA003] = 5
    for suffix in (".jpg", ".png", ".webp"):
        out = write_image(tmp_path / f"e{suffix}", RNG.random((8, 12, 3)), exif=exif.tobytes())
        with Image.open(out) as im:
            back = im.getexif()
            assert back[0x0112] == 1 and back[0x010F] == "Maker"  # never rotated twice by a viewer
            assert back.get_ifd(0x8769)[0xA002] == 12 and back.get_ifd(0x8769)[0xA003] == 8


def test_exif_goes_into_tiff_output_without_its_sub_ifds(tmp_path):
    # libtiff refused the Exif IFD pointer ("RuntimeError: Error setting from dictionary"): every
    # camera JPEG failed to upscale to TIFF, as did any EXIF once the new pixel size was set.
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Maker"
    exif.get_ifd(0x8769)[0x9003] = "2020:01:02 03:04:05"
    exif.get_ifd(0x8825)[1] = "N"
    for depth in (8, 16):
        notes: list[str] = []
        out = write_image(
            tmp_path / f"e{depth}.tif",
            RNG.random((8, 12, 3)),
            exif=exif.tobytes(),
            bit_depth=depth,
            on_note=notes.append,
        )
        with Image.open(out) as im:
            assert im.size == (12, 8)
            back = im.getexif()
            assert back[0x0112] == 1 and back[0x010F] == "Maker" and 0x8769 not in back and 0x8825 not in back
        # left out in silence before, where every other format's loss was said
        assert notes == [
            f"{out}: the EXIF's camera settings (Exif IFD) and GPS position are left out: TIFF output keeps the main "
            "EXIF tags only"
        ]


# layout tags that JPEG, PNG and WebP EXIF carries (ImageWidth/ImageLength as phones write them; the
# rest as in files converted from TIFF), and values libtiff refuses (a ResolutionUnit of 89, a text in
# XClipPathUnits)
_LAYOUT_EXIF = {
    256: 4000,
    257: 3000,
    258: (8, 8, 8),
    259: 6,
    262: 2,
    273: 8,
    277: 3,
    278: 1,
    279: 100,
    284: 2,
    296: 89,
    317: 1,
    322: 256,
    323: 256,
    332: 1,
    338: 1,
    339: 1,
    344: "caption",
    0x0201: 1234,
    0x0202: 5000,
}


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("gray", [False, True])
def test_tiff_output_keeps_only_the_exif_tags_that_describe_the_picture(tmp_path, depth, gray):
    # Pillow's TIFF writer took every tag of the EXIF's main IFD: a phone's ImageWidth failed the write
    # ("encoder error -8"), ExtraSamples or PlanarConfiguration gave files no reader opens, and values
    # libtiff refuses failed it ("Error setting from dictionary").
    exif = Image.Exif()
    exif[0x010F], exif[0x013B] = "Maker", "Jane"
    for tag, value in _LAYOUT_EXIF.items():
        exif[tag] = value
    rgb = RNG.random((6, 5, 3))
    out = write_image(tmp_path / "o.tif", rgb, exif=exif.tobytes(), grayscale=gray, bit_depth=depth)
    with Image.open(out) as im:
        im.load()
        tags = dict(im.tag_v2)
        assert im.size == (5, 6) and im.mode == ("I;16" if gray and depth == 16 else "L" if gray else "RGB")
    assert tags[0x010F] == "Maker" and tags[0x013B] == "Jane"
    assert tags[256] == 5 and tags[257] == 6 and tags.get(284, 1) == 1
    assert not {273, 278, 279} - set(tags)  # the output's own strips
    assert not {322, 323, 332, 338, 344, 0x0201, 0x0202} & set(tags) and tags.get(296, 2) in (1, 2, 3)
    got = read_image(out)
    expected = rgb.mean(axis=2, keepdims=True) if gray else rgb
    assert np.allclose(got.rgb, expected, atol=0.5 / (255 if depth == 8 else 65535) + 1e-6)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_image_width_and_length_in_the_exif_are_the_outputs(tmp_path, suffix):
    # ImageWidth and ImageLength in the main IFD (Samsung phones write them) kept the input's size.
    exif = Image.Exif()
    exif[256], exif[257], exif[0x010F] = 4000, 3000, "samsung"
    out = write_image(tmp_path / f"o{suffix}", RNG.random((6, 5, 3)), exif=exif.tobytes())
    with Image.open(out) as im:
        back = im.getexif()
    assert (back[256], back[257], back[0x010F]) == (5, 6, "samsung")


def _scanner_tiff_exif(tmp_path: Path) -> bytes:
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[0x0131], tags[0x013B] = "Epson Scan 2", "Jane Archivist"
    Image.fromarray(RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(tmp_path / "scan.tif", tiffinfo=tags)
    return read_image(tmp_path / "scan.tif").exif


def _caption_jpeg_exif(tmp_path: Path) -> bytes:
    exif = Image.Exif()
    exif[0x010F], exif[0x0112], exif[0x010E] = "Maker", 6, "Grandma, 1952"
    Image.fromarray(RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(tmp_path / "cap.jpg", exif=exif.tobytes())
    return read_image(tmp_path / "cap.jpg").exif


def _own_output_exif(tmp_path: Path) -> bytes:
    out = write_image(tmp_path / "own.jpg", RNG.random((5, 6, 3)), text={"Software": "srgan 9", "srgan:model": "m"})
    return read_image(out).exif


@pytest.mark.parametrize("source", [_scanner_tiff_exif, _caption_jpeg_exif, _own_output_exif])
@pytest.mark.parametrize("suffix", [".tif", "16.tif", ".jpg", ".png", ".webp"])
def test_exif_without_an_exif_ifd_is_written_and_gains_none(tmp_path, source, suffix):
    # Setting the new pixel size gave EXIF without an Exif IFD (a scanner's TIFF tags, a JPEG with
    # only Make or a caption, srgan's own outputs) an empty one, whose pointer libtiff refused:
    # "cannot encode the image as TIFF (Error setting from dictionary)"; the other formats gained it.
    exif = source(tmp_path)
    before = Image.Exif()
    before.load(exif)
    assert 0x8769 not in before
    depth = 16 if suffix.startswith("16") else 8
    out = write_image(tmp_path / f"o{suffix}", RNG.random((8, 12, 3)), exif=exif, bit_depth=depth)
    with Image.open(out) as im:
        back = im.getexif()
    assert 0x8769 not in back
    assert {k: back.get(k) for k in before if k != 0x0112} == {k: before[k] for k in before if k != 0x0112}


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".tif", "16.tif", pytest.param(".avif", marks=needs_avif)])
def test_a_caption_in_the_exif_is_kept_and_the_record_goes_into_xmp(tmp_path, suffix):
    # The EXIF ImageDescription ("Grandma at the harbour, 1952") was replaced by the text's "key: value" list;
    # then, where the EXIF had no caption, srgan's record went there, where a photo library shows it as the
    # picture's caption. It goes into XMP, in srgan's own namespace; the caption stays as it is.
    depth = 16 if suffix.startswith("16") else 8
    text = {"Software": "srgan 9", "srgan:model": "m", "srgan:scale": "4"}
    exif = Image.Exif()
    exif[0x010E], exif[0x0131] = "Grandma at the harbour, 1952", "Editor 2"
    out = write_image(tmp_path / f"c{suffix}", RNG.random((4, 5, 3)), exif=exif.tobytes(), text=text, bit_depth=depth)
    with Image.open(out) as im:
        back = im.getexif()
    assert back[0x010E] == "Grandma at the harbour, 1952"
    assert back[0x0131] == "srgan 9"  # srgan made the file: what tells its outputs from inputs
    assert srgan_record(read_image(out).xmp) == {"srgan:model": "m", "srgan:scale": "4"}
    # No caption (a blank one, or the record an earlier srgan wrote there): none is made up; an output
    # written again gets the new record in place of the old one.
    for description in ("   ", "srgan:model: old; srgan:scale: 4"):
        exif[0x010E] = description
        first = write_image(
            tmp_path / f"t{suffix}", RNG.random((4, 5, 3)), exif=exif.tobytes(), text=text, bit_depth=depth
        )
        loaded = read_image(first)
        again = write_image(
            tmp_path / f"a{suffix}",
            RNG.random((4, 5, 3)),
            exif=loaded.exif,
            xmp=loaded.xmp,
            text={**text, "srgan:scale": "2"},
            bit_depth=depth,
        )
        for path, scale in ((first, "4"), (again, "2")):
            with Image.open(path) as im:
                assert 0x010E not in im.getexif() and im.getexif()[0x0131] == "srgan 9"
            assert srgan_record(read_image(path).xmp) == {"srgan:model": "m", "srgan:scale": scale}


def test_the_xmp_record_is_well_formed_and_said_to_be_missing_where_it_cannot_go(tmp_path):
    # A model name is any text (a path, quotes, a newline): the record must stay well-formed XML. A damaged
    # packet (no rdf:RDF) is kept as it is, with a note that the record is not in it; a JPEG packet that the
    # record takes past one segment keeps the user's packet, without the record, saying so (the EXIF Software
    # tag still names srgan); padding whitespace is taken out first, where that makes room for the record.
    text = {"Software": "srgan 9", "srgan:model": 'a "b" <c> & d\ne\x01', "srgan:scale": "4"}
    out = write_image(tmp_path / "r.jpg", RNG.random((4, 4, 3)), text=text)
    assert srgan_record(read_image(out).xmp) == {"srgan:model": 'a "b" <c> & d\ne\\x01', "srgan:scale": "4"}
    damaged = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:rights>mine</dc:rights></x:xmpmeta>'
    notes: list[str] = []
    out = write_image(tmp_path / "d.webp", RNG.random((4, 4, 3)), xmp=damaged, text=text, on_note=notes.append)
    assert read_image(out).xmp == damaged
    why = "srgan's record could not be added to this XMP packet (UTF-16, RDF without a prefix, or no rdf:RDF)"
    assert notes == [f"{out}: the model and scale are not recorded: {why}"]
    # RDF in the default namespace: it has its rdf:RDF element, which the note must not deny
    plain = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><RDF xmlns="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'
    )
    notes = []
    out = write_image(tmp_path / "p.webp", RNG.random((4, 4, 3)), xmp=plain, text=text, on_note=notes.append)
    assert notes == [f"{out}: the model and scale are not recorded: {why}"]
    filler = b"<rdf:li>" + b"x" * (images._JPEG_XMP_MAX - len(_xmp(1)) - 17 - 50) + b"</rdf:li>"
    big = _xmp(1).replace(b"<rdf:li>1952</rdf:li>", b"<rdf:li>1952</rdf:li>" + filler)
    assert len(big) == images._JPEG_XMP_MAX - 50  # it fits, but not with the record
    notes = []
    out = write_image(tmp_path / "big.jpg", RNG.random((6, 8, 3)), xmp=big, text=text, on_note=notes.append)
    assert len(notes) == 1 and notes[0].startswith(f"{out}: the model and scale are not recorded in the XMP: ")
    assert notes[0].endswith(" bytes with srgan's record, more than a JPEG segment holds")
    assert srgan_record(read_image(out).xmp) == {} and b"xxxx" in read_image(out).xmp
    with Image.open(out) as im:
        assert im.getexif()[0x0131] == "srgan 9"
    # the same keywords with padding (as XMP writers leave room for edits): the padding gives way to the record
    padded = big.replace(b"x" * 1000, b"", 1).replace(b"</x:xmpmeta>\n", b"</x:xmpmeta>\n" + (b" " * 99 + b"\n") * 20)
    assert len(padded) > images._JPEG_XMP_MAX
    notes = []
    out = write_image(tmp_path / "pad.jpg", RNG.random((6, 8, 3)), xmp=padded, text=text, on_note=notes.append)
    assert notes == [] and srgan_record(read_image(out).xmp)["srgan:scale"] == "4" and b"xxxx" in read_image(out).xmp


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_sixteen_bit_tiff_past_what_classic_tiff_addresses_is_bigtiff(tmp_path, monkeypatch, channels):
    # Past 4 GiB the 32-bit offsets of classic TIFF failed the write, once every strip was compressed and
    # written. The limit is lowered here so that a small image crosses it.
    monkeypatch.setattr(images, "_TIFF_CLASSIC_SIZE", 200)
    pixels = RNG.integers(0, 65536, (40, 30, channels), dtype=np.uint16)
    exif = Image.Exif()
    exif[0x010F] = "Maker"
    rgb = pixels[..., :1] if channels == 1 else pixels[..., :3]
    alpha = pixels[..., 3] if channels == 4 else None
    out = write_image(
        tmp_path / "big.tif",
        rgb,
        alpha=alpha,
        bit_depth=16,
        grayscale=channels == 1,
        exif=exif.tobytes(),
        dpi=(300, 150),
    )
    assert out.read_bytes()[:4] == b"II+\x00"
    with Image.open(out) as im:
        assert im.size == (30, 40) and im.tag_v2[0x010F] == "Maker" and im.info["dpi"] == (300, 150)
        if channels == 1:
            assert np.array_equal(np.asarray(im), pixels[..., 0])
    got = read_image(out)
    assert got.bit_depth == 16 and got.dpi == (300, 150)
    assert np.array_equal(
        _q(got.rgb, 65535), np.repeat(pixels[..., :1], 3, axis=2) if channels == 1 else pixels[..., :3]
    )
    if channels == 4:
        assert np.array_equal(_q(got.alpha, 65535), pixels[..., 3])
    tifffile = pytest.importorskip("tifffile")
    assert np.array_equal(tifffile.imread(out).reshape(pixels.shape), pixels)


def test_sixteen_bit_tiff_that_might_pass_what_classic_tiff_addresses_but_does_not_stays_classic(tmp_path, monkeypatch):
    flat = np.full((40, 30, 3), 12345, dtype=np.uint16)  # deflates to almost nothing
    monkeypatch.setattr(images, "_TIFF_CLASSIC_SIZE", flat.nbytes)  # reached only were it not compressed
    out = write_image(tmp_path / "flat.tif", flat, bit_depth=16)
    data = out.read_bytes()
    assert data[:4] == b"II*\x00" and len(data) < flat.nbytes
    with Image.open(out) as im:
        assert im.tag_v2[273] == (16,)  # after the 16 bytes kept for a BigTIFF header
    got = read_image(out)
    assert got.bit_depth == 16 and np.array_equal(_q(got.rgb, 65535), flat)


@pytest.mark.parametrize("gray", [False, True])
def test_sixteen_bit_tiff_keeps_the_main_exif_tags(tmp_path, gray):
    # The 16-bit TIFF writer was given no EXIF: a scan's Artist, Copyright, caption... were all lost.
    tags = {
        0x010E: "Parish register 1832, p. 4",
        0x010F: "Maker",
        0x0110: "Model X",
        0x0132: "2020:01:02 03:04:05",
        0x013B: "Jane Archivist",
        0x8298: "(c) County Archive",
    }
    exif = Image.Exif()
    for tag, value in tags.items():
        exif[tag] = value
    exif[0x0112] = 6
    exif.get_ifd(0x8769)[0x9003] = "2020:01:02 03:04:05"
    text = {"Software": "srgan 9", "srgan:model": "m"}
    out = write_image(
        tmp_path / "s.tif", RNG.random((6, 7, 3)), exif=exif.tobytes(), text=text, bit_depth=16, grayscale=gray
    )
    with Image.open(out) as im:
        got = dict(im.tag_v2)
    assert {k: got.get(k) for k in tags} == tags
    assert got[0x0112] == 1 and got[0x0131] == "srgan 9" and 0x8769 not in got
    loaded = read_image(out)
    assert loaded.bit_depth == 16 and loaded.grayscale == gray and loaded.exif


@pytest.mark.parametrize("src", [".png", ".jpg", ".tif", ".bmp", "16.png", "16.tif"])
@pytest.mark.parametrize("dst", [".png", ".jpg", ".tif", ".bmp", "16.png", "16.tif"])
def test_dpi_is_kept(tmp_path, src, dst):
    pixels = RNG.integers(0, 65536 if src.startswith("16") else 256, (6, 8), dtype=np.uint16)
    im = Image.fromarray(pixels) if src.startswith("16") else Image.fromarray(pixels.astype(np.uint8)).convert("RGB")
    im.save(tmp_path / f"in{src}", dpi=(300, 150))
    got = read_image(tmp_path / f"in{src}")
    assert got.dpi == (300, 150)
    depth = 16 if dst.startswith("16") else 8
    out = write_image(tmp_path / f"out{dst}", got.rgb, bit_depth=depth, dpi=got.dpi)
    assert read_image(out).dpi == (300, 150)


@pytest.mark.parametrize("dst", [".jpg", ".webp", pytest.param(".avif", marks=needs_avif)])
def test_the_dpi_goes_into_the_exif_of_formats_that_keep_it_there(tmp_path, dst):
    # WebP and AVIF keep a density only in their EXIF: a 600 dpi scan's PNG or TIFF lost it there; a JPEG's
    # EXIF lacked the resolution tags EXIF requires (the JFIF header had the dpi)
    for src in (".tif", ".png"):
        Image.fromarray(RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(tmp_path / f"in{src}", dpi=(600, 300))
        got = read_image(tmp_path / f"in{src}")
        out = write_image(tmp_path / f"out{dst}", got.rgb, exif=got.exif, dpi=got.dpi, overwrite=True)
        assert read_image(out).dpi == (600, 300)
        with Image.open(out) as im:
            exif = im.getexif()
        assert (float(exif[0x011A]), float(exif[0x011B]), exif[0x0128]) == (600.0, 300.0, 2)
    # an EXIF's own resolution is the input's: kept as it is
    exif = Image.Exif()
    exif[0x011A], exif[0x011B], exif[0x0128] = 72.0, 72.0, 2
    out = write_image(tmp_path / f"own{dst}", got.rgb, exif=exif.tobytes(), dpi=(600, 300))
    with Image.open(out) as im:
        assert float(im.getexif()[0x011A]) == 72.0
    with Image.open(write_image(tmp_path / f"none{dst}", got.rgb)) as im:  # no density known: none made up
        assert 0x011A not in im.getexif()


def test_a_density_jpeg_cannot_hold_is_left_out_with_a_note(tmp_path):
    # a microscope TIFF at 100,000 dpi: JFIF's 16-bit field wrapped it to 34,464 dpi in a JPEG
    notes = []
    rgb = np.zeros((4, 4, 3), np.float32)
    out = write_image(tmp_path / "o.jpg", rgb, dpi=(100000.0, 100000.0), on_note=notes.append)
    assert read_image(out).dpi is None
    assert len(notes) == 1 and "100000 dpi" in notes[0] and "65535" in notes[0]
    for suffix in (".tif", ".png"):  # their fields hold it
        assert read_image(write_image(tmp_path / f"o{suffix}", rgb, dpi=(100000.0, 100000.0))).dpi == (100000, 100000)


def test_dpi_turns_with_the_exif_orientation_and_unset_is_none(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(
        tmp_path / "r.jpg", exif=exif.tobytes(), dpi=(300, 150)
    )
    assert read_image(tmp_path / "r.jpg").dpi == (150, 300)
    Image.fromarray(RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(tmp_path / "plain.png")
    assert read_image(tmp_path / "plain.png").dpi is None
    with Image.open(write_image(tmp_path / "o.png", RNG.random((4, 4, 3)))) as im:
        assert "dpi" not in im.info
    # a TIFF without resolution tags: Pillow says 1 dpi, which outputs then claimed (a 1-dpi print)
    Image.fromarray(RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(tmp_path / "plain.tif")
    with Image.open(tmp_path / "plain.tif") as im:
        assert "dpi" not in im.info or tuple(im.info["dpi"]) == (1, 1)  # what Pillow makes of it
    assert read_image(tmp_path / "plain.tif").dpi is None


@pytest.mark.parametrize(
    "suffix", [".webp", ".png", pytest.param(".avif", marks=needs_avif), pytest.param("16.png", id="png16")]
)
def test_dpi_held_only_in_the_exif_is_kept(tmp_path, suffix):
    # A WebP's or AVIF's density is only in its EXIF (XResolution, YResolution, ResolutionUnit), which
    # _dpi_of did not read: TIFF, PNG and BMP outputs lost it. Centimetres are converted; unit 1 (none)
    # is an aspect ratio, no density; a quarter turn swaps x and y.
    for unit, x, y, orientation, want in (
        (2, 300, 150, 1, (300, 150)),
        (3, 118.11, 59.055, 6, (150, 300)),
        (None, 72, 72, 1, (72, 72)),  # no unit: EXIF's default, inches
        (1, 300, 300, 1, None),
    ):
        exif = Image.Exif()
        exif[0x011A], exif[0x011B], exif[0x0112] = x, y, orientation
        if unit is not None:
            exif[0x0128] = unit
        if suffix == "16.png":
            raw = write_image(tmp_path / "e.png", RNG.random((6, 8, 3)), bit_depth=16).read_bytes()
            chunk = images._png_chunk(b"eXIf", exif.tobytes()[6:])  # after the signature and IHDR
            (tmp_path / "e16.png").write_bytes(raw[:33] + chunk + raw[33:])
        else:
            Image.fromarray(RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(
                tmp_path / f"e{suffix}", exif=exif.tobytes()
            )
        got = read_image(tmp_path / f"e{suffix}")
        assert got.dpi == (pytest.approx(want, abs=0.01) if want else None), (unit, suffix)
        if want:
            for out in ("o.tif", "o.png", "o.bmp"):
                back = read_image(write_image(tmp_path / out, got.rgb, dpi=got.dpi)).dpi
                assert back == pytest.approx(want, abs=0.01), out


@pytest.mark.parametrize("where", ["tag", "xmp"])
@pytest.mark.parametrize("compression", [None, "tiff_deflate"])
def test_a_tiff_turned_as_pillow_loads_it_turns_its_dpi(tmp_path, where, compression):
    # Pillow turns a TIFF as it loads it, by its Orientation tag or by the XMP's tiff:Orientation: the x and
    # y dpi were not swapped for an orientation only in the XMP, nor by from_pil for either.
    stored = np.zeros((2, 4, 3), dtype=np.uint8)
    stored[0, 0] = 255
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    if where == "tag":
        tags[0x0112] = 6
    else:
        tags[700] = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description tiff:Orientation="6"/></rdf:RDF>'
        tags.tagtype[700] = 1
    Image.fromarray(stored).save(tmp_path / "r.tif", tiffinfo=tags, dpi=(100, 200), compression=compression)
    with Image.open(tmp_path / "r.tif") as im:
        from_memory = from_pil(im)
    for got in (read_image(tmp_path / "r.tif"), from_memory):
        assert got.size == (2, 4) and got.rgb[0, 1, 0] == 1.0  # turned a quarter clockwise
        assert got.dpi == (200, 100)


@pytest.mark.parametrize(("top", "overshoot"), [(1.0, 1.0001), (1.0, 1.004), (1.0, None), (0.5, None)])
def test_float_images_keep_their_range_through_a_few_overshooting_pixels(tmp_path, top, overshoot):
    ramp = np.linspace(0.0, top, 64 * 64, dtype=np.float32).reshape(64, 64)
    if overshoot is not None:
        ramp[0, 0] = overshoot  # one pixel a filter pushed past the range (was: a 0..1 image read as 8-bit)
    Image.fromarray(ramp).save(tmp_path / "f.tif")
    loaded = read_image(tmp_path / "f.tif")
    got = loaded.rgb[..., 0]
    np.testing.assert_allclose(got[1:].ravel(), ramp[1:].ravel(), atol=1e-6)
    assert got.max() == pytest.approx(min(1.0, overshoot or top), abs=1e-6)
    if overshoot:
        low, high = f"{float(ramp.min()):.6g}", f"{overshoot:.6g}"
        assert loaded.notes == [
            f"{tmp_path / 'f.tif'}: a floating-point gray TIFF with values from {low} to {high}: clipped to 0-1"
        ]
    else:
        assert loaded.notes == []


def _int_tiff(path: Path, arr: np.ndarray, bits: int, dtype: str, sample_format: int) -> Path:
    """A gray TIFF of integer samples as microscopes and elevation data write them (SampleFormat 1 or 2)."""
    h, w = arr.shape
    data = arr.astype(dtype).tobytes()
    entries = [(256, 4, w), (257, 4, h), (258, 3, bits), (259, 3, 1), (262, 3, 1), (273, 4, 8), (277, 3, 1),
               (278, 4, h), (279, 4, len(data)), (339, 3, sample_format)]  # fmt: skip
    out = b"II*\x00" + struct.pack("<I", 8 + len(data)) + data + struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        out += struct.pack("<HHI", tag, kind, 1) + (
            struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        )
    path.write_bytes(out + b"\x00" * 4)
    return path


def test_integer_tiffs_pillow_reads_as_32_bit_are_read_right_or_refused(tmp_path):
    # signed 16-bit and 32-bit gray TIFFs were clipped to 0-65535 in silence: a signed ramp came out 37%
    # black, an unsigned 32-bit one wrapped to black at 2^31
    ramp = np.tile(np.linspace(0, 1, 48), (8, 1))
    got = read_image(_int_tiff(tmp_path / "pos.tif", np.round(ramp * 32767), 16, "<i2", 2))
    np.testing.assert_allclose(got.rgb[..., 0], ramp, atol=1 / 32767)
    assert got.notes == [
        f"{tmp_path / 'pos.tif'}: a signed 16-bit integer gray TIFF: read with 32767, its largest value, as white"
    ]
    for name, arr, bits, dtype, fmt, what in (
        (
            "s16.tif",
            np.round(ramp * 65535) - 32768,
            16,
            "<i2",
            2,
            "a signed 16-bit integer gray TIFF with values from -32768 to 32767",
        ),
        (
            "u32.tif",
            np.round(ramp * 4294967295),
            32,
            "<u4",
            1,
            "an unsigned 32-bit integer gray TIFF with values from 0 to 4294967295",
        ),
    ):
        with pytest.raises(SrganError) as info:
            read_image(_int_tiff(tmp_path / name, arr, bits, dtype, fmt))
        assert str(info.value).startswith(f"{tmp_path / name}: {what}, which srgan cannot read"), str(info.value)
    # 32-bit samples within 0-65535 stay as they were read: as 16-bit ones
    got = read_image(_int_tiff(tmp_path / "u32ok.tif", np.round(ramp * 65535), 32, "<u4", 1))
    np.testing.assert_allclose(got.rgb[..., 0], ramp, atol=1 / 65535)
    assert got.notes == [] and got.bit_depth == 16


@pytest.mark.parametrize("overshoot", [None, 1.004])
def test_float_gray_nan_and_infinite_samples_are_read_as_black_with_a_note(tmp_path, overshoot):
    # "no data" in a scientist's float TIFF (NaN, inf) turned black in silence
    ramp = np.linspace(0.0, 1.0, 16 * 16, dtype=np.float32).reshape(16, 16)
    ramp[0, :3] = [np.nan, np.inf, -np.inf]
    if overshoot:
        ramp[1, 0] = overshoot
    Image.fromarray(ramp).save(tmp_path / "f.tif")
    loaded = read_image(tmp_path / "f.tif")
    assert (loaded.rgb[0, :3] == 0).all() and np.isfinite(loaded.rgb).all()
    assert len(loaded.notes) == 1 and loaded.notes[0].startswith(f"{tmp_path / 'f.tif'}: a floating-point gray TIFF")
    assert loaded.notes[0].endswith("3 samples not a number or infinite, read as black")
    assert ("clipped to 0-1" in loaded.notes[0]) == bool(overshoot)


@pytest.mark.parametrize(
    ("low", "high"), [(0.06, 2.65), (0.04, 1.92), (0.0, 255.0), (0.0, 65535.0), (-0.5, 0.9), (0.0, 1.02)]
)
def test_float_gray_well_outside_0_to_1_is_refused_not_rescaled(tmp_path, low, high):
    """Float gray TIFF of HDR data (a maximum of 2.65) was taken as 8-bit, divided by 255 for a maximum
    above 2 (nearly black), and data up to 2 was clipped to 1 without a word; a float colour TIFF is
    refused. srgan reads floats from 0 to 1 and refuses data well outside that range, saying it."""
    ramp = np.linspace(low, high, 64 * 64, dtype=np.float32).reshape(64, 64)
    Image.fromarray(ramp).save(tmp_path / "f.tif")
    with pytest.raises(SrganError) as info:
        read_image(tmp_path / "f.tif")
    message = str(info.value)
    assert message.startswith(
        f"{tmp_path / 'f.tif'}: a floating-point gray TIFF with values from {low:.6g} to {high:.6g}, which srgan "
        "cannot read: it reads floats from 0 (black) to 1 (white); scale it to 0-1, or save it as 8- or 16-bit"
    )
    assert "\n" not in message


def test_tiff_layout_tags_do_not_travel_as_exif(tmp_path):
    Image.fromarray(RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)).save(
        tmp_path / "m.tif", description="a description", software="cam"
    )
    got = read_image(tmp_path / "m.tif")
    ex = Image.Exif()
    ex.load(got.exif)
    assert ex[270] == "a description" and ex[305] == "cam"
    assert not {256, 257, 258, 273, 279} & set(ex)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_png_text_chunks(tmp_path, bit_depth):
    text = {"model": "srgan_x4", "scale": "4", "Software": "srgan 0.1", "note": "caf\u00e9 \u2713"}
    out = write_image(tmp_path / "t.png", RNG.random((4, 4, 3)), text=text, bit_depth=bit_depth)
    with Image.open(out) as im:
        assert dict(im.text) == text


def _png_with_text_after_idat(depth: int, chunks: list[bytes]) -> bytes:
    """A 4x4 RGB PNG with ``chunks`` (whole, already made) between its IDAT and IEND, where Pillow reads
    them only as it loads the pixels."""
    png = _ref_png(RNG.integers(0, 1 << depth, (4, 4, 3)), depth, 2)
    return png[:-12] + b"".join(chunks) + png[-12:]


@pytest.mark.parametrize("limit", ["chunk", "memory"])
def test_png_text_past_pillows_limits_is_refused_at_16_bits_as_at_8(tmp_path, monkeypatch, limit):
    # the 16-bit reader inflated each text chunk up to 16 MB with no total, kept them as comments
    # and wrote them out again: a 160 KB file gave a 168 MB PNG. Pillow's limits are read as the file
    # is, so a program that raised them gets the same at both depths; small ones here keep this cheap.
    from PIL import PngImagePlugin

    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_CHUNK", 4000)
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_MEMORY", 10000)
    if limit == "chunk":
        chunks = [_chunk(b"zTXt", b"note\x00\x00" + zlib.compress(b"A" * 4001))]
        why = "Decompressed data too large for PngImagePlugin.MAX_TEXT_CHUNK"
    else:
        chunks = [_chunk(b"zTXt", b"k%d\x00\x00" % i + zlib.compress(b"A" * 3000)) for i in range(4)]
        why = "Too much memory used in text chunks: 12000>MAX_TEXT_MEMORY"
    errors = []
    for depth in (8, 16):
        path = tmp_path / f"t{depth}.png"
        path.write_bytes(_png_with_text_after_idat(depth, chunks))
        with pytest.raises(SrganError) as exc:
            read_image(path)
        errors.append(str(exc.value).replace(f"t{depth}.png", "t.png"))
    assert errors[0] == errors[1] and f"({why})" in errors[1]
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_CHUNK", 5000)
    monkeypatch.setattr(PngImagePlugin, "MAX_TEXT_MEMORY", 20000)
    got = read_image(tmp_path / "t16.png")  # raised, the same file reads
    assert got.bit_depth == 16 and set(got.comments.values()) <= {"A" * 4001, "A" * 3000}


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize(("depth", "ctype", "channels"), [(8, 2, 3), (8, 0, 1), (16, 0, 1), (8, 6, 4)])
def test_png_whose_image_data_ends_a_row_early_is_refused(tmp_path, interlace, depth, ctype, channels):
    # Pillow's decoder stops without a word where the data ends at a row boundary and leaves the
    # rest black; the 16-bit reader refused the same, as srgan's strict loading promises
    h, w = 13, 11
    arr = RNG.integers(0, 1 << depth, (h, w, channels))
    png = _ref_png(arr, depth, ctype, interlace=interlace)
    path = tmp_path / "whole.png"
    path.write_bytes(png)
    got = read_image(path)
    assert got.size == (w, h)
    with Image.open(path) as im:
        assert np.array_equal(np.asarray(im).reshape(h, w, -1), arr)
    at = png.index(b"IDAT") - 4
    (length,) = struct.unpack(">I", png[at : at + 4])
    raw = zlib.decompress(png[at + 8 : at + 8 + length])
    short = zlib.compress(raw[: -(1 + w * channels * depth // 8)])  # the last row written left out
    path = tmp_path / "short.png"
    path.write_bytes(png[:at] + _chunk(b"IDAT", short) + png[at + 12 + length :])
    with pytest.raises(SrganError, match=r"short\.png: .*the image data ends early"):
        read_image(path)


def test_out_of_memory_on_a_small_image_blames_the_data(tmp_path, monkeypatch):
    # a PNG of 16x16 whose second IDAT claims 4 GB ran out of memory and said "not enough memory to
    # decode a 16x16 image", as if the machine were at fault
    path = tmp_path / "small.png"
    path.write_bytes(_ref_png(RNG.integers(0, 256, (16, 16, 3)), 8, 2))

    def out_of_memory(im):
        raise MemoryError

    monkeypatch.setattr(images, "_strict_load", out_of_memory)
    with pytest.raises(SrganError, match=r"small\.png: .*16x16.*corrupt or too large to decode"):
        read_image(path)


def test_png_raw_profile_is_read_without_a_list_of_its_lines():
    # 16 MB of newlines in a "Raw profile type exif" took 1.5 GB as a list of lines
    import tracemalloc

    exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"
    text = b"\nexif\n%d\n" % len(exif) + b"\n" * 200_000 + exif.hex().encode() + b"\n"
    tracemalloc.start()
    try:
        assert images._raw_profile_exif(text) == exif
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 3 * len(text)


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".tif"])
def test_text_in_exif_or_tiff_tags(tmp_path, suffix):
    out = write_image(tmp_path / f"t{suffix}", RNG.random((4, 4, 3)), text={"model": "srgan_x4", "Software": "srgan"})
    with Image.open(out) as im:
        exif = im.getexif()
        assert 0x010E not in exif and exif.get(0x0131) == "srgan"
    assert srgan_record(read_image(out).xmp) == {"srgan:model": "srgan_x4"}


def test_jpeg_quality_and_subsampling(tmp_path):
    rgb = RNG.random((32, 32, 3))
    hi = write_image(tmp_path / "hi.jpg", rgb)
    lo = write_image(tmp_path / "lo.jpg", rgb, quality=60)
    with Image.open(hi) as a, Image.open(lo) as b:
        assert JpegImagePlugin.get_sampling(a) == 0  # 4:4:4 at the default quality 95
        assert JpegImagePlugin.get_sampling(b) == 2  # 4:2:0 below 90
    assert lo.stat().st_size < hi.stat().st_size


@pytest.mark.parametrize("suffix", [".jpg", ".bmp"])
@pytest.mark.parametrize("gray", [False, True])
def test_alpha_is_flattened_onto_white_with_a_note(tmp_path, suffix, gray):
    # JPEG and BMP dropped the alpha plane: the colour transparency hid showed (upscale fills it with
    # the opaque neighbours' colour), so a logo on a transparent background came out a solid block.
    rgb = np.empty((24, 24, 3), np.float32)
    rgb[...] = (0.6, 0.2, 0.2)
    alpha = np.zeros((24, 24), np.float32)
    alpha[8:16, :8], alpha[8:16, 8:16] = 1.0, 0.5  # 8x8 blocks: exact enough through JPEG
    fmt = "JPEG" if suffix == ".jpg" else "BMP"
    out = write_image(tmp_path / f"l{suffix}", rgb, alpha=alpha, grayscale=gray)
    got = read_image(out)
    assert got.alpha is None and got.grayscale == gray
    colour = np.array([85.0] * 3 if gray else [153.0, 51.0, 51.0])
    a = 128 / 255
    for (y, x), want in (((2, 2), 255.0), ((12, 4), colour), ((12, 12), colour * a + 255 * (1 - a)), ((12, 20), 255)):
        assert np.abs(_q(got.rgb[y, x], 255) - want).max() <= (2 if fmt == "JPEG" else 0.5), (y, x)
    notes: list[str] = []
    write_image(tmp_path / f"n{suffix}", rgb, alpha=alpha, grayscale=gray, on_note=notes.append)
    assert notes == [f"{tmp_path / f'n{suffix}'}: alpha flattened onto white: {fmt} has no transparency"]
    opaque = write_image(tmp_path / f"o{suffix}", rgb, alpha=np.ones((24, 24)), grayscale=gray, on_note=notes.append)
    assert opaque.read_bytes() == write_image(tmp_path / f"p{suffix}", rgb, grayscale=gray).read_bytes()
    assert len(notes) == 1  # nothing to flatten: nothing to say


def test_formats_without_an_icc_profile_say_it_is_left_out(tmp_path):
    for suffix, fmt in ((".bmp", "BMP"), (".gif", "GIF"), (".png", None), (".jpg", None), (".tif", None)):
        notes: list[str] = []
        out = write_image(tmp_path / f"i{suffix}", RNG.random((4, 4, 3)), icc_profile=_srgb_icc(), on_note=notes.append)
        assert notes == ([f"{out}: the ICC colour profile is left out: {fmt} output carries none"] if fmt else [])


def _xmp(orientation: int = 6, width: int = 8, height: int = 6) -> bytes:
    """An XMP packet as Lightroom writes one: rights, keywords, an edit, orientation and pixel size."""
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"'
        ' xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:exif="http://ns.adobe.com/exif/1.0/"'
        ' xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"'
        f' tiff:Orientation="{orientation}" exif:PixelXDimension="{width}" crs:Exposure2012="+0.35">'
        f"<exif:PixelYDimension>{height}</exif:PixelYDimension>"
        '<dc:rights><rdf:Alt><rdf:li xml:lang="x-default">\u00a9 County Archive</rdf:li></rdf:Alt></dc:rights>'
        "<dc:subject><rdf:Bag><rdf:li>harbour</rdf:li><rdf:li>1952</rdf:li></rdf:Bag></dc:subject>"
        '</rdf:Description></rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>'
    ).encode()


def _xmp_kept(xmp: bytes | None, width: int, height: int) -> bool:
    """The packet's rights, keywords and edit are there; orientation 1 and the pixel size are the output's."""
    return (
        xmp is not None
        and "\u00a9 County Archive".encode() in xmp
        and b"<rdf:li>harbour</rdf:li><rdf:li>1952</rdf:li>" in xmp
        and b'crs:Exposure2012="+0.35"' in xmp
        and b'tiff:Orientation="1"' in xmp
        and f'exif:PixelXDimension="{width}"'.encode() in xmp
        and f"<exif:PixelYDimension>{height}</exif:PixelYDimension>".encode() in xmp
    )


def _save_with_xmp(path: Path, arr: np.ndarray, xmp: bytes) -> None:
    """Write ``arr`` with an XMP packet, each format where its writers put it (by Pillow, independently)."""
    im = Image.fromarray(arr)
    if path.suffix == ".png":
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", xmp.decode("utf-8"), zip=True)  # compressed, as exiftool may
        im.save(path, pnginfo=info)
    elif path.suffix == ".tif":
        tags = TiffImagePlugin.ImageFileDirectory_v2()
        tags[700] = xmp
        tags.tagtype[700] = 1  # BYTE, as the TIFF/XMP specs want
        im.save(path, tiffinfo=tags)
    else:
        im.save(path, xmp=xmp)


@pytest.mark.parametrize("src", [".jpg", ".png", ".webp", ".tif"])
def test_xmp_is_read_and_turns_upright_with_the_pixels(tmp_path, src):
    # XMP (rights, keywords, Lightroom edits) was dropped: archives lost their rights statements.
    arr = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    _save_with_xmp(tmp_path / f"in{src}", arr, _xmp(orientation=6))
    got = read_image(tmp_path / f"in{src}")
    assert got.size == (6, 8)  # Pillow applies an XMP orientation when the EXIF has none: so do we
    # orientation 1 (Pillow's TIFF reader, which turns the pixels itself, removes the attribute instead)
    assert got.xmp is not None and b'tiff:Orientation="6"' not in got.xmp and b"County Archive" in got.xmp
    assert b'tiff:Orientation="1"' in got.xmp or src == ".tif"


@pytest.mark.parametrize("dst", [".jpg", ".png", "16.png", ".webp", ".tif", "16.tif"])
def test_xmp_is_carried_to_every_format_with_a_place_for_it(tmp_path, dst):
    arr = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    _save_with_xmp(tmp_path / "in.jpg", arr, _xmp(orientation=6, width=8, height=6))
    got = read_image(tmp_path / "in.jpg")
    depth = 16 if dst.startswith("16") else 8
    notes: list[str] = []
    out = write_image(
        tmp_path / f"out{dst}", resize_rgb(got.rgb, (12, 16)), xmp=got.xmp, bit_depth=depth, on_note=notes.append
    )
    assert not notes
    with Image.open(out) as im:  # where an independent reader looks: APP1, iTXt, XMP chunk, tag 700
        assert _xmp_kept(im.info.get("xmp"), 12, 16), im.info.get("xmp")
        assert im.getexif().get(0x0112, 1) == 1  # a viewer reading the XMP turns it no further
    assert _xmp_kept(read_image(out).xmp, 12, 16)


def test_sixteen_bit_png_xmp_orientation_and_compressed_xmp(tmp_path):
    arr = RNG.integers(0, 65536, (3, 5, 3)).astype(np.uint16)
    png = _ref_png(arr, 16, 2)
    at = 8 + 25  # after the signature and IHDR
    itxt = b"XML:com.adobe.xmp\x00\x01\x00\x00\x00" + zlib.compress(_xmp(orientation=8, width=5, height=3))
    (tmp_path / "o16.png").write_bytes(png[:at] + _chunk(b"iTXt", itxt) + png[at:])
    got = read_image(tmp_path / "o16.png")
    assert got.bit_depth == 16 and got.size == (3, 5)  # as Pillow turns the same file at 8 bits
    assert np.array_equal(_q(got.rgb, 65535), np.rot90(arr, k=1))
    assert b'tiff:Orientation="1"' in got.xmp and b"County Archive" in got.xmp


@pytest.mark.parametrize("dst", [".jpg", ".png", ".tif", ".webp"])
def test_extended_xmp_of_a_jpeg_is_kept(tmp_path, dst):
    # XMP over 64 KB (a long description exiftool moved out of the main packet) was lost, and the main
    # packet still pointed at it: JPEG output writes the extension again, the others take it in the packet
    description = b"word " * 30000
    extended_xmp_jpeg(tmp_path / "in.jpg", description)
    got = read_image(tmp_path / "in.jpg")
    assert got.notes == [] and description in got.xmp_extension
    notes: list[str] = []
    out = write_image(
        tmp_path / f"out{dst}", got.rgb, xmp=got.xmp, xmp_extension=got.xmp_extension, on_note=notes.append
    )
    assert notes == []
    back = read_image(out)
    assert b"Harbour" in back.xmp
    if dst == ".jpg":
        assert description in back.xmp_extension and b"HasExtendedXMP" in back.xmp
    else:
        assert description in back.xmp and b"HasExtendedXMP" not in back.xmp and back.xmp_extension is None
    if shutil.which("exiftool"):  # an independent reader puts the two together
        shown = subprocess.run(
            ["exiftool", "-s3", "-XMP-dc:Description", str(out)], capture_output=True, check=True
        ).stdout
        assert shown.strip() == description.strip()


def test_a_damaged_extended_xmp_is_left_out_and_not_pointed_at(tmp_path):
    extended_xmp_jpeg(tmp_path / "in.jpg", b"word " * 30000, drop=1)
    got = read_image(tmp_path / "in.jpg")
    assert got.xmp_extension is None and b"HasExtendedXMP" not in got.xmp and b"Harbour" in got.xmp
    assert got.notes == [
        f"{tmp_path / 'in.jpg'}: the extended XMP (after the first 64 KB) is missing or damaged: left out"
    ]


def test_xmp_left_out_where_there_is_no_place_for_it_with_a_note(tmp_path):
    for suffix, fmt in ((".bmp", "BMP"),):  # GIF takes XMP: test_a_gifs_xmp_is_read_and_gif_output_carries_xmp
        notes: list[str] = []
        out = write_image(tmp_path / f"x{suffix}", RNG.random((4, 4, 3)), xmp=_xmp(), on_note=notes.append)
        assert notes == [f"{out}: the XMP metadata is left out: {fmt} output carries none"]
    notes = []
    big = _xmp().replace(b"<rdf:li>1952</rdf:li>", b"<rdf:li>x</rdf:li>" * 4000)  # more than one APP1 segment
    out = write_image(tmp_path / "big.jpg", RNG.random((4, 4, 3)), xmp=big, on_note=notes.append)
    assert notes == [f"{out}: the XMP metadata is left out: {len(big)} bytes, more than a JPEG segment holds"]
    with Image.open(out) as im:
        assert "xmp" not in im.info
    with Image.open(write_image(tmp_path / "big.png", RNG.random((4, 4, 3)), xmp=big)) as im:
        assert im.info["xmp"].count(b"<rdf:li>x</rdf:li>") == 4000  # PNG has no such limit


def test_an_exif_larger_than_a_jpeg_segment_loses_its_maker_note_or_is_left_out_with_a_note(tmp_path):
    # A PNG's or TIFF's EXIF has no 64 KB limit, and a JPEG's near it grew past it with srgan's text:
    # Pillow refused the whole JPEG write ("EXIF data is too long").
    text = {"Software": "srgan 9", "srgan:model": "srgan_x4", "srgan:scale": "4"}
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif.get_ifd(0x8769)[0x927C] = b"\x01" * 70000  # MakerNote
    exif.get_ifd(0x8769)[0x9003] = "2020:01:02 03:04:05"
    notes: list[str] = []
    out = write_image(tmp_path / "m.jpg", RNG.random((4, 4, 3)), exif=exif.tobytes(), text=text, on_note=notes.append)
    assert len(notes) == 1 and notes[0].startswith(f"{out}: the EXIF maker note is left out: with it the EXIF is ")
    with Image.open(out) as im:
        back = im.getexif()
    assert back[0x010F] == "Canon" and back[0x0131] == "srgan 9" and 0x010E not in back
    assert srgan_record(read_image(out).xmp) == {"srgan:model": "srgan_x4", "srgan:scale": "4"}
    assert back.get_ifd(0x8769)[0x9003] == "2020:01:02 03:04:05" and 0x927C not in back.get_ifd(0x8769)
    # near the limit, and past it only with the Software tag added (12 bytes and "srgan 9")
    exif.get_ifd(0x8769)[0x927C] = b"\x01" * (65533 - len(exif.tobytes()) + 70000 - 10)
    assert len(exif.tobytes()) <= 65533
    notes = []
    write_image(tmp_path / "n.jpg", RNG.random((4, 4, 3)), exif=exif.tobytes(), text=text, on_note=notes.append)
    assert len(notes) == 1 and "maker note is left out" in notes[0]
    # too large without a maker note: the EXIF is left out, the text still goes in
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif.get_ifd(0x8769)[0x9286] = b"ASCII\x00\x00\x00" + b"x" * 70000  # UserComment
    notes = []
    out = write_image(tmp_path / "u.jpg", RNG.random((4, 4, 3)), exif=exif.tobytes(), text=text, on_note=notes.append)
    assert len(notes) == 1 and notes[0].startswith(f"{out}: the EXIF metadata is left out: ")
    assert notes[0].endswith(" bytes, more than a JPEG segment holds")
    with Image.open(out) as im:
        back = im.getexif()
    assert 0x010F not in back and back[0x0131] == "srgan 9"
    with Image.open(write_image(tmp_path / "u.png", RNG.random((4, 4, 3)), exif=exif.tobytes())) as im:
        assert im.getexif()[0x010F] == "Canon"  # PNG has no such limit


# ---- a camera's maker note: offsets in it count from the start of the EXIF (Canon, Sony, Pentax, ...)

_CANON_TYPE = b"Canon EOS 5D Mark IV".ljust(32, b"\x00")  # CanonImageType (0x0006): 32 bytes, out of line
_CANON_FIRMWARE = b"Firmware Version 1.3.3".ljust(32, b"\x00")  # CanonFirmwareVersion (0x0007)
_CANON_MODEL_ID = 0x80000349  # CanonModelID (0x0010): a LONG held in its entry


def _tiff_directory(entries: list[tuple[int, int, int, bytes]], at: int, e: str, next_ifd: int = 0) -> bytes:
    """A TIFF directory that lies at ``at``, (tag, type, count, value bytes) each, with the values of more
    than 4 bytes right after it, on even offsets."""
    data_at = at + 2 + 12 * len(entries) + 4
    table, data = struct.pack(e + "H", len(entries)), b""
    for tag, typ, count, value in sorted(entries):
        if len(value) <= 4:
            table += struct.pack(e + "HHI", tag, typ, count) + value.ljust(4, b"\x00")
        else:
            table += struct.pack(e + "HHII", tag, typ, count, data_at + len(data))
            data += value + b"\x00" * (len(value) % 2)
    return table + struct.pack(e + "I", next_ifd) + data


def _canon_exif(e: str = "<", orientation: int = 6, software: str | None = None, thumbnail: bool = True) -> bytes:
    """A camera's EXIF as a Canon lays it out: the main IFD (Make "Canon", ``orientation``, a density of 300 x 150
    dpi), the Exif IFD with a maker note whose values lie at offsets from the start of the EXIF, the
    interoperability and GPS IFDs, and a JPEG thumbnail in IFD1, last."""

    def text(value: str) -> tuple[int, int, bytes]:
        return 2, len(value) + 1, value.encode() + b"\x00"

    def shorts(*values: int) -> bytes:
        return struct.pack(f"{e}{len(values)}H", *values)

    def longs(*values: int) -> bytes:
        return struct.pack(f"{e}{len(values)}I", *values)

    thumb = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 10, 10)).save(thumb, "JPEG")
    at = dict.fromkeys(("exif", "maker", "interop", "gps", "ifd1"), 0)
    for _ in range(2):  # the first round finds where each part lies, the second writes the offsets
        main = [
            (0x010F, *text("Canon")),
            (0x0110, *text("Canon EOS 5D Mark IV")),
            (0x0112, 3, 1, shorts(orientation)),
            (0x011A, 5, 1, longs(300, 1)),
            (0x011B, 5, 1, longs(150, 1)),
            (0x0128, 3, 1, shorts(2)),
            (0x0132, *text("2020:01:02 03:04:05")),
            (0x0213, 3, 1, shorts(2)),
            (0x8769, 4, 1, longs(at["exif"])),
            (0x8825, 4, 1, longs(at["gps"])),
        ] + ([(0x0131, *text(software))] if software else [])
        blob = _tiff_directory(main, 8, e, at["ifd1"] if thumbnail else 0)
        # the GPS and interoperability IFDs before the Exif IFD, not where Pillow's layout puts them
        at["gps"] = 8 + len(blob)
        gps = [
            (0x0000, 1, 4, b"\x02\x03\x00\x00"),
            (0x0001, *text("N")),
            (0x0002, 5, 3, longs(51, 1, 30, 1, 1234, 100)),
        ]
        blob += _tiff_directory(gps, at["gps"], e)
        at["interop"] = 8 + len(blob)
        blob += _tiff_directory([(0x0001, *text("R98")), (0x0002, 7, 4, b"0100")], at["interop"], e)
        at["exif"] = 8 + len(blob)
        maker = (
            shorts(3)
            + shorts(0x0006, 2) + longs(32, at["maker"] + 42)
            + shorts(0x0007, 2) + longs(32, at["maker"] + 74)
            + shorts(0x0010, 4) + longs(1, _CANON_MODEL_ID)
            + longs(0) + _CANON_TYPE + _CANON_FIRMWARE
        )  # fmt: skip
        sub = [
            (0x829A, 5, 1, longs(1, 200)),  # ExposureTime
            (0x8827, 3, 1, shorts(400)),  # ISO
            (0x9000, 7, 4, b"0231"),
            (0x9003, *text("2020:01:02 03:04:05")),
            (0x9101, 7, 4, b"\x01\x02\x03\x00"),
            (0x9201, 10, 1, longs(7643856, 1000000)),  # ShutterSpeedValue
            (0x927C, 7, len(maker), maker),
            (0x9286, 7, 12, bytes(12)),  # a blank UserComment, as cameras write it
            (0xA001, 3, 1, shorts(1)),
            (0xA002, 3, 1, shorts(64)),
            (0xA003, 3, 1, shorts(48)),
            (0xA005, 4, 1, longs(at["interop"])),
        ]
        table = _tiff_directory(sub, at["exif"], e)
        at["maker"] = at["exif"] + table.index(maker)
        blob += table
        at["ifd1"] = 8 + len(blob)
        if thumbnail:
            ifd1 = [
                (0x0103, 3, 1, shorts(6)),
                (0x0201, 4, 1, longs(at["ifd1"] + 42)),
                (0x0202, 4, 1, longs(len(thumb.getvalue()))),
            ]
            blob += _tiff_directory(ifd1, at["ifd1"], e) + thumb.getvalue()
    return b"Exif\x00\x00" + (b"II*\x00" if e == "<" else b"MM\x00*") + longs(8) + blob


def _walk_ifd(tiff: bytes, at: int) -> dict[int, tuple[int, int, bytes, int]]:
    """A TIFF directory read as a camera maker's reader reads it: each tag's (type, count, value bytes, where
    the value lies), out-of-line values at offsets from the start of the TIFF header."""
    e = "<" if tiff[:2] == b"II" else ">"
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}
    (n,) = struct.unpack_from(e + "H", tiff, at)
    tags = {}
    for i in range(n):
        tag, typ, count = struct.unpack_from(e + "HHI", tiff, at + 2 + 12 * i)
        size = sizes[typ] * count
        where = at + 2 + 12 * i + 8
        if size > 4:
            (where,) = struct.unpack_from(e + "I", tiff, where)
        tags[tag] = (typ, count, tiff[where : where + size], where)
    return tags


def _exif_tiff(path: Path) -> bytes:
    """The TIFF bytes of a file's EXIF, without JPEG's "Exif\\0\\0"."""
    with Image.open(path) as im:
        raw = im.info["exif"]
    return raw[6:] if raw.startswith(b"Exif\x00\x00") else raw


def _camera_tags(tiff: bytes) -> tuple[dict, dict, dict]:
    """The main IFD, the Exif IFD and the Canon maker note of an EXIF, walked by hand (see ``_walk_ifd``)."""
    e = "<" if tiff[:2] == b"II" else ">"
    main = _walk_ifd(tiff, struct.unpack_from(e + "I", tiff, 4)[0])
    sub = _walk_ifd(tiff, struct.unpack(e + "I", main[0x8769][2])[0])
    return main, sub, _walk_ifd(tiff, sub[0x927C][3])


def _maker_note_read(tiff: bytes) -> tuple[bytes, bytes, int]:
    """The Canon image type, firmware and model ID as a Canon reader finds them: at their offsets from the
    start of the EXIF."""
    e = "<" if tiff[:2] == b"II" else ">"
    note = _camera_tags(tiff)[2]
    return note[0x0006][2], note[0x0007][2], struct.unpack(e + "I", note[0x0010][2])[0]


def _save_with_exif(path: Path, arr: np.ndarray, exif: bytes, **params) -> Path:
    Image.fromarray(arr).save(path, exif=exif, **({"quality": 95} if path.suffix == ".jpg" else {}), **params)
    return path


def _next_ifd(tiff: bytes) -> int:
    """Where the main IFD says the next one (IFD1, the thumbnail's) lies; 0: none."""
    e = "<" if tiff[:2] == b"II" else ">"
    (at,) = struct.unpack_from(e + "I", tiff, 4)
    return struct.unpack_from(e + "I", tiff, at + 2 + 12 * struct.unpack_from(e + "H", tiff, at)[0])[0]


def _number(entry: tuple[int, int, bytes, int], e: str = "<") -> int:
    """A SHORT's or LONG's one value."""
    return struct.unpack(e + ("H" if entry[0] == 3 else "I"), entry[2][: 2 if entry[0] == 3 else 4])[0]


@pytest.mark.parametrize("dst", [".jpg", ".png", ".webp", pytest.param(".avif", marks=needs_avif)])
@pytest.mark.parametrize("src", [".jpg", ".png", ".webp", "16-bit .png"])
def test_a_camera_maker_note_stays_where_its_offsets_point(tmp_path, src, dst):
    # The EXIF was laid out anew on the way through: the maker note moved, and the offsets in it (which count
    # from the start of the EXIF) pointed at other bytes: lens, serial number and settings read as garbage.
    params = {}
    if src == ".png":  # a PNG's Description goes into the EXIF ImageDescription of other formats
        from PIL import PngImagePlugin

        params["pnginfo"] = PngImagePlugin.PngInfo()
        params["pnginfo"].add_text("Description", "Harbour at dawn")
    arr = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    if src == "16-bit .png":  # read by srgan's own chunk walk, not Pillow's
        png = _ref_png(arr.astype(np.uint16) * 257, 16, 2)
        path = tmp_path / "in.png"
        path.write_bytes(png[:33] + _chunk(b"eXIf", _canon_exif()[6:]) + png[33:])  # after the signature and IHDR
    else:
        path = _save_with_exif(tmp_path / f"in{src}", arr, _canon_exif(), **params)
    canon = (_CANON_TYPE, _CANON_FIRMWARE, _CANON_MODEL_ID)
    assert _maker_note_read(_exif_tiff(path)) == canon
    got = read_image(path)
    assert got.size == (48, 64) and _maker_note_read(got.exif[6:]) == canon  # turned upright (Orientation 6)
    assert got.bit_depth == (16 if src == "16-bit .png" else 8)
    text = {"Software": "srgan 0.1.0", "srgan:model": "tiny", "srgan:scale": "2"}
    big = resize_rgb(got.rgb, (96, 128))
    depth = got.bit_depth if dst == ".png" else 8
    out = write_image(tmp_path / f"out{dst}", big, exif=got.exif, text=text, comments=got.comments, bit_depth=depth)
    tiff = _exif_tiff(out)
    assert _maker_note_read(tiff) == canon
    main, sub, _ = _camera_tags(tiff)
    assert main[0x010F][2] == b"Canon\x00" and main[0x0131][2] == b"srgan 0.1.0\x00"
    if dst == ".avif":  # its pixels are upright: no Orientation tag (Pillow's writer would make it a box)
        assert 0x0112 not in main
    else:
        assert _number(main[0x0112]) == 1
    assert struct.unpack("<2I", main[0x011A][2]) == (150, 1) and struct.unpack("<2I", main[0x011B][2]) == (300, 1)
    assert (_number(sub[0xA002]), _number(sub[0xA003])) == (96, 128)
    assert _next_ifd(tiff) == 0  # the thumbnail's IFD1 is left out, as before: it shows the picture before the upscale
    with Image.open(out) as im:  # an independent reader: every tag as it was, less what the upscale changed
        assert im.size == (96, 128)
        back = im.getexif()
    assert back.get_ifd(0x8825)[0x0002] == (51.0, 30.0, 12.34) and back.get_ifd(0xA005)[0x0001] == "R98"
    assert back.get_ifd(0x8769)[0x9003] == "2020:01:02 03:04:05" and back[0x0110] == "Canon EOS 5D Mark IV"
    assert back.get_ifd(0x8769)[0x9101] == b"\x01\x02\x03\x00"
    if src == ".png" and dst != ".png":
        assert back[0x010E] == "Harbour at dawn"
    # the camera's EXIF given to write_image as it is (as the API takes it): the write side keeps it too
    out = write_image(tmp_path / f"direct{dst}", big, exif=_canon_exif(), text=text)
    assert _maker_note_read(_exif_tiff(out)) == canon


def test_a_thumbnail_left_out_of_a_kept_layout_leaves_no_hidden_copy(tmp_path):
    # a value after the thumbnail keeps it from being cut off the end: unlinked, the input's preview picture
    # stayed in the output's EXIF as hidden bytes
    tiff = bytearray(_canon_exif()[6:])
    main, _, _ = _camera_tags(bytes(tiff))
    sub_at = struct.unpack("<I", main[0x8769][2])[0]
    (n,) = struct.unpack_from("<H", tiff, sub_at)
    for i in range(n):
        pos = sub_at + 2 + 12 * i
        if struct.unpack_from("<H", tiff, pos)[0] == 0x9286:  # UserComment, moved past the thumbnail
            tiff += b"\0" * (len(tiff) % 2)
            struct.pack_into("<I", tiff, pos + 8, len(tiff))
            tiff += b"ASCII\0\0\0HiMe"
    exif = b"Exif\0\0" + bytes(tiff)
    start = exif.index(b"\xff\xd8", 10)
    thumb = exif[start : exif.index(b"\xff\xd9", start) + 2]
    got = read_image(_save_with_exif(tmp_path / "in.jpg", RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8), exif))
    for suffix in (".jpg", ".png", ".webp"):
        out = write_image(tmp_path / f"o{suffix}", got.rgb, exif=got.exif, text={"Software": "srgan 0.1.0"})
        kept = _exif_tiff(out)
        assert thumb not in kept and b"HiMe" in kept
        with Image.open(out) as im:
            assert im.getexif().get_ifd(0x8769)[0x9286].endswith(b"HiMe")


@pytest.mark.parametrize("e", ["<", ">"])
def test_a_changed_tag_that_does_not_fit_its_place_goes_at_the_end(e):
    # a Software tag added, or longer than the camera's, and the pixel size: the rest stays where it was
    sizes = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}

    def edited(original: bytes, software: str) -> tuple[bytes, bytes]:
        ex = Image.Exif()
        ex.load(original)
        ex[0x0112] = 1
        ex[0x0131] = software
        ex.get_ifd(0x8769)[0xA002] = 70000  # a LONG where the camera wrote a SHORT: still held in the entry
        return images._exif_bytes(ex, original)[6:], ex.tobytes()[6:]

    for software, moved in ((None, True), ("Canon 1.0", False), ("Canon 1.0.0", False)):
        original = _canon_exif(e, software=software)[6:]
        cut = _next_ifd(original)  # the thumbnail's IFD1 and JPEG: the last bytes, cut off
        new, rebuilt = edited(b"Exif\x00\x00" + original, "srgan 0.1.0")
        main, sub, _ = _camera_tags(new)
        assert _maker_note_read(new) == (_CANON_TYPE, _CANON_FIRMWARE, _CANON_MODEL_ID)
        assert new[:cut] != original[:cut] and _maker_note_read(rebuilt) != _maker_note_read(new)
        assert sub[0x927C][3] == _camera_tags(original)[1][0x927C][3]  # the maker note where it was
        assert main[0x0131][2] == b"srgan 0.1.0\x00" and _number(main[0x0112], e) == 1
        assert _number(sub[0xA002], e) == 70000 and sub[0xA002][3] < cut  # in its entry, which did not move
        (main_at,) = struct.unpack_from(e + "I", new, 4)
        assert (main_at >= cut) is moved  # a tag added: the main IFD is written anew at the end, sorted
        assert list(main) == sorted(main) and main_at % 2 == 0
        if software == "Canon 1.0.0":  # as long: in its place
            assert main[0x0131][3] < cut and len(new) <= cut + 1
        else:  # longer, or new: at the end, on an even offset
            assert main[0x0131][3] >= cut and main[0x0131][3] % 2 == 0
        for tag, (typ, count, _, where) in {**main, **sub}.items():  # every other value where it was
            if tag not in (0x0112, 0x0131, 0x8769, 0xA002) and sizes[typ] * count > 4:
                assert (
                    where < cut
                    and new[where : where + sizes[typ] * count] == original[where : where + sizes[typ] * count]
                )
        back = Image.Exif()
        back.load(new)
        assert back[0x0131] == "srgan 0.1.0" and back.get_ifd(0x8825)[0x0001] == "N"
        assert back.get_ifd(0x8769)[0xA002] == 70000 and back.get_ifd(0xA005)[0x0001] == "R98"
        assert not back.get_ifd(-1)  # no IFD1: the thumbnail is of the picture before


@pytest.mark.filterwarnings("ignore:Tag data larger than file")
def test_an_exif_whose_layout_cannot_be_kept_is_laid_out_anew(tmp_path):
    # a damaged count (DateTime's value past the end of the EXIF): nothing is patched, the EXIF is laid out
    # anew as before, and the picture is written with the tags Pillow reads
    e = "<"
    original = bytearray(_canon_exif(e))
    main, _, _ = _camera_tags(bytes(original[6:]))
    entry = 6 + struct.unpack_from(e + "I", original, 10)[0] + 2 + 12 * sorted(main).index(0x0132)
    struct.pack_into(e + "I", original, entry + 4, 0x100000)
    path = _save_with_exif(tmp_path / "in.jpg", RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8), bytes(original))
    ex = Image.Exif()
    ex.load(bytes(original))
    ex[0x0112] = 1
    assert images._exif_bytes_in_place(bytes(original), ex) is None
    got = read_image(path)
    out = write_image(tmp_path / "out.jpg", got.rgb, exif=got.exif, text={"Software": "srgan 0.1.0"})
    with Image.open(out) as im:
        back = im.getexif()
    assert back[0x010F] == "Canon" and back[0x0112] == 1 and back[0x0131] == "srgan 0.1.0" and 0x0132 not in back
    assert back.get_ifd(0x8769)[0xA002] == 48
    # shared bytes (the Software tag's value where the Model's lies, as some writers keep one copy of the same
    # text): the new Software, of the same length, written in place would change the Model too; the check
    # of what the patched EXIF reads catches it, and the EXIF is laid out anew
    original = bytearray(_canon_exif(e, software="Canon EOS 5D Mark IV"))
    main, _, _ = _camera_tags(bytes(original[6:]))
    entry = 6 + struct.unpack_from(e + "I", original, 10)[0] + 2 + 12 * sorted(main).index(0x0131)
    struct.pack_into(e + "I", original, entry + 8, main[0x0110][3])
    ex = Image.Exif()
    ex.load(bytes(original))
    assert ex[0x0131] == ex[0x0110] == "Canon EOS 5D Mark IV"
    ex[0x0131] = "srgan 0.1.0, x2, cpu"  # 20 characters, as the Model's
    assert images._exif_bytes_in_place(bytes(original), ex) is None
    rebuilt = images._exif_bytes(ex, bytes(original))
    assert rebuilt == images._exif_rebuilt(ex)
    back = Image.Exif()
    back.load(rebuilt)
    assert back[0x0110] == "Canon EOS 5D Mark IV" and back[0x0131] == "srgan 0.1.0, x2, cpu"


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="needs exiftool")
def test_exiftool_reads_the_maker_note_of_an_upscale(tmp_path):
    # exiftool guessed the maker note's base back ("Possibly incorrect maker notes offsets", "Adjusted MakerNotes
    # base") or read other bytes: "Canon Firmware Version: S 5D Mark IV"
    path = _save_with_exif(tmp_path / "in.jpg", RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8), _canon_exif())
    got = read_image(path)
    for suffix in (".jpg", ".png", ".webp"):
        out = write_image(tmp_path / f"out{suffix}", got.rgb, exif=got.exif, text={"Software": "srgan 0.1.0"})
        for name in (path, out):
            shown = subprocess.run(
                ["exiftool", "-a", "-G1", "-s", "-warning", "-Canon:all", "-IFD0:Orientation#", str(name)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert "[Canon]         CanonImageType                  : Canon EOS 5D Mark IV" in shown, shown
            assert "CanonFirmwareVersion            : Firmware Version 1.3.3" in shown, shown
            assert "Warning" not in shown and "MakerNotes" not in shown, shown
            assert f"Orientation                     : {6 if name == path else 1}" in shown, shown


def test_srgan_upscale_keeps_a_camera_maker_note_readable(tmp_path):
    from click.testing import CliRunner

    from srgan_cli.cli import main
    from srgan_cli.config import GeneratorConfig
    from srgan_cli.models import build_generator
    from srgan_cli.weights import save_generator

    tiny = GeneratorConfig(num_blocks=1, num_features=8)
    save_generator(tmp_path / "tiny.safetensors", build_generator(tiny), tiny)
    path = _save_with_exif(tmp_path / "in.jpg", RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8), _canon_exif())
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(tmp_path / "tiny.safetensors"), "-q", str(path), "-o", str(tmp_path / "out.jpg")]
    )
    assert result.exit_code == 0, result.output
    tiff = _exif_tiff(tmp_path / "out.jpg")
    assert _maker_note_read(tiff) == (_CANON_TYPE, _CANON_FIRMWARE, _CANON_MODEL_ID)
    main_ifd, sub, _ = _camera_tags(tiff)
    assert _number(main_ifd[0x0112]) == 1 and main_ifd[0x0131][2].startswith(b"srgan ")
    assert (_number(sub[0xA002]), _number(sub[0xA003])) == (96, 128)  # upright 24 x 32, times 4


def _png_chunk_types(path: Path) -> list[bytes]:
    data, pos, kinds = path.read_bytes(), 8, []
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        kinds.append(kind)
        pos += 12 + length
    return kinds


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_png_text_without_a_keyword_is_dropped(tmp_path, bit_depth):
    # A 16-bit PNG's tEXt chunk with an empty keyword was kept (Pillow drops it at 8 bits), and the PNG
    # writer wrote it back as a chunk with a zero-length keyword, which the PNG standard forbids.
    src = write_image(tmp_path / "s.png", RNG.random((3, 4, 3)), bit_depth=bit_depth)
    data = src.read_bytes()
    extra = _chunk(b"tEXt", b"\x00value") + _chunk(b"tEXt", b"Title\x00Harbour")
    src.write_bytes(data[:-12] + extra + data[-12:])  # before IEND
    got = read_image(src)
    assert got.comments == {"Title": "Harbour"}
    out = write_image(tmp_path / "o.png", got.rgb, bit_depth=bit_depth, comments={**got.comments, "": "value"})
    raw, pos, keys = out.read_bytes(), 8, []
    while pos < len(raw):
        length, kind = struct.unpack(">I4s", raw[pos : pos + 8])
        if kind in (b"tEXt", b"iTXt"):
            keys.append(raw[pos + 8 : pos + 8 + length].split(b"\x00", 1)[0])
        pos += 12 + length
    assert keys == [b"Title"]


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_png_gamma_chromaticity_and_srgb_are_carried(tmp_path, bit_depth):
    # A PNG with gAMA 1.0 came out with IHDR/tEXt/IDAT/IEND only: browsers showed it at another brightness.
    arr = RNG.integers(0, 256 if bit_depth == 8 else 65536, (4, 5, 3)).astype(np.uint8 if bit_depth == 8 else np.uint16)
    png = _ref_png(arr, bit_depth, 2)
    at = 8 + 25
    points = (31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)
    colour = _chunk(b"gAMA", struct.pack(">I", 100000)) + _chunk(b"cHRM", struct.pack(">8I", *points))
    (tmp_path / "g.png").write_bytes(png[:at] + colour + _chunk(b"sRGB", b"\x01") + png[at:])
    got = read_image(tmp_path / "g.png")
    assert got.png_colour == {"gamma": 1.0, "chromaticity": tuple(v / 100000 for v in points), "srgb": 1}
    out = write_image(tmp_path / "o.png", got.rgb, bit_depth=bit_depth, png_colour=got.png_colour)
    kinds = _png_chunk_types(out)
    assert {b"gAMA", b"cHRM", b"sRGB"} <= set(kinds[: kinds.index(b"IDAT")])  # before the pixels, as the spec wants
    with Image.open(out) as im:
        assert im.info["gamma"] == 1.0 and im.info["srgb"] == 1
        assert im.info["chromaticity"] == tuple(v / 100000 for v in points)
    # an ICC profile takes precedence (the spec's rule): then it alone describes the colour
    out = write_image(tmp_path / "i.png", got.rgb, png_colour=got.png_colour, icc_profile=_srgb_icc())
    assert not {b"gAMA", b"cHRM", b"sRGB"} & set(_png_chunk_types(out)) and b"iCCP" in _png_chunk_types(out)
    assert read_image(write_image(tmp_path / "p.png", RNG.random((4, 4, 3)))).png_colour is None


def _through_profile(icc: bytes, value: tuple[int, ...], mode: str = "RGB") -> tuple[int, ...]:
    """One pixel of ``mode`` under ``icc``, converted to sRGB by LittleCMS, as a colour-managed viewer shows it."""
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    transform = ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), mode, "RGB")
    return ImageCms.applyTransform(Image.new(mode, (1, 1), value), transform).getpixel((0, 0))


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".tif", "16.tif", pytest.param(".avif", marks=needs_avif)])
def test_png_gamma_and_chromaticities_become_an_icc_profile_where_png_chunks_cannot_go(tmp_path, suffix):
    """A PNG's gAMA and cHRM (a linear-light PNG, a wide-gamut one) were dropped without a word from every
    output but PNG, which then showed at another brightness and with other colours. They go in as an ICC
    profile that says the same: a colour-managed viewer shows the pixels as it showed the PNG."""
    depth = 16 if suffix.startswith("16") else 8
    notes: list[str] = []
    # gamma 1.0: linear light; mid-gray 128 is sRGB's 188
    out = write_image(
        tmp_path / f"lin{suffix}", np.full((4, 5, 3), 128 / 255), png_colour={"gamma": 1.0}, bit_depth=depth,
        on_note=notes.append,
    )  # fmt: skip
    icc = read_image(out).icc_profile
    assert icc is not None and notes == [] and _through_profile(icc, (128, 128, 128)) == (188, 188, 188)
    # Adobe RGB's primaries (cHRM) at gamma 2.2: a colour comes out as it does under an Adobe RGB profile
    adobe = (0.3127, 0.3290, 0.64, 0.33, 0.21, 0.71, 0.15, 0.06)
    out = write_image(
        tmp_path / f"wide{suffix}", np.full((4, 5, 3), 0.5), png_colour={"gamma": 0.45455, "chromaticity": adobe},
        bit_depth=depth,
    )  # fmt: skip
    assert _through_profile(read_image(out).icc_profile, (100, 150, 200)) == (66, 151, 203)
    if suffix == ".jpg":  # gray stays gray, under a gray profile
        out = write_image(tmp_path / "g.jpg", np.full((4, 5, 3), 0.5), grayscale=True, png_colour={"gamma": 1.0})
        got = read_image(out)
        assert got.grayscale and _through_profile(got.icc_profile, 128, "L") == (188, 188, 188)
    # sRGB (its chunk, or gAMA 1/2.2 alone) needs no profile; nor does an image with its own profile get another
    for colour in ({"srgb": 0, "gamma": 0.45455}, {"gamma": 0.45455}):
        out = write_image(tmp_path / f"s{suffix}", RNG.random((4, 5, 3)), png_colour=colour)
        assert read_image(out).icc_profile is None
    rgb, own = RNG.random((4, 5, 3)), _srgb_icc()
    out = write_image(tmp_path / f"i{suffix}", rgb, png_colour={"gamma": 1.0}, icc_profile=own)
    assert read_image(out).icc_profile == own


def test_png_chromaticities_no_real_image_has_make_no_profile(tmp_path):
    # primaries a hair off a line, or a white point outside them, gave colorants of +-20,000 (negative
    # luminance) that colour-managed viewers showed as garbage
    from srgan_cli.images import _icc_from_png_colour

    off_line = (0.3127, 0.3290, 0.2, 0.2, 0.4, 0.40001, 0.6, 0.6)
    white_outside = (0.05, 0.9, 0.64, 0.33, 0.30, 0.60, 0.15, 0.06)
    beyond = (0.3127, 0.3290, 0.64, 0.33, 0.30, 0.60, 0.9, 0.5)  # x + y over 1: no colour at all
    for points in (off_line, white_outside, beyond):
        with pytest.raises(ValueError, match="describe no real colours"):
            _icc_from_png_colour({"gamma": 0.45455, "chromaticity": points}, gray=False)
    notes: list[str] = []
    out = write_image(
        tmp_path / "o.jpg", RNG.random((4, 5, 3)), png_colour={"chromaticity": off_line}, on_note=notes.append
    )
    assert read_image(out).icc_profile is None
    assert notes == [
        f"{out}: the PNG's gamma and chromaticities are left out: its primaries and white point describe no "
        "real colours"
    ]
    prophoto = (0.3457, 0.3585, 0.7347, 0.2653, 0.1596, 0.8404, 0.0366, 0.0001)  # wide, on the edge: kept
    icc = _icc_from_png_colour({"gamma": 1 / 1.8, "chromaticity": prophoto}, gray=False)
    assert icc is not None
    from PIL import ImageCms

    ImageCms.ImageCmsProfile(io.BytesIO(icc))  # a profile LittleCMS takes


def test_png_gamma_left_out_of_bmp_and_gif_says_so(tmp_path):
    for suffix in (".bmp", ".gif"):
        notes: list[str] = []
        rgb = RNG.random((4, 5, 3))
        out = write_image(tmp_path / f"o{suffix}", rgb, png_colour={"gamma": 1.0}, on_note=notes.append)
        fmt = suffix[1:].upper()
        assert notes == [f"{out}: the PNG's gamma and chromaticities are left out: {fmt} output carries no profile"]


def test_jpeg_drops_alpha_and_webp_100_is_lossless(tmp_path):
    rgb, alpha = RNG.random((8, 8, 3)), RNG.random((8, 8))
    with Image.open(write_image(tmp_path / "a.jpg", rgb, alpha=alpha)) as im:
        assert im.mode == "RGB"
    got = read_image(write_image(tmp_path / "a.webp", rgb, alpha=alpha, quality=100))
    assert np.array_equal(_q(got.rgb, 255), _q(rgb, 255)) and np.array_equal(_q(got.alpha, 255), _q(alpha, 255))


def test_explicit_format_overrides_suffix(tmp_path):
    out = write_image(tmp_path / "picture.out", RNG.random((3, 3, 3)), format="png")
    with Image.open(out) as im:
        assert im.format == "PNG"


def test_rounding_and_clipping(tmp_path):
    rgb = np.array([[[-0.5, 1.7, np.nan], [0.5 / 255 + 1e-4, 0.5 / 255 - 1e-4, 1.0]]], dtype=np.float32)
    got = read_image(write_image(tmp_path / "r.png", rgb))
    assert _q(got.rgb, 255).tolist() == [[[0, 255, 0], [1, 0, 255]]]


# ----------------------------------------------------------------- animated and extreme sizes


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_animated_gives_first_frame(tmp_path, suffix):
    frames = [Image.new("RGB", (10, 6), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    frames[0].save(tmp_path / f"a{suffix}", save_all=True, append_images=frames[1:], duration=50, lossless=True)
    got = read_image(tmp_path / f"a{suffix}")
    assert got.n_frames == 3
    assert _q(got.rgb.reshape(-1, 3).mean(axis=0), 255).tolist() == [255, 0, 0]


@pytest.mark.parametrize("kind", ["gif", "tiff"])
def test_a_file_cut_short_in_a_later_frame_gives_its_good_first_frame_with_a_note(tmp_path, kind):
    # a partial download or an interrupted copy: only the first frame is used, and it is whole
    rng = np.random.default_rng(5)
    frames = [Image.fromarray(rng.integers(0, 256, (24, 20, 3), dtype=np.uint8)) for _ in range(3)]
    if kind == "gif":
        frames = [f.quantize(64) for f in frames]
    whole = tmp_path / f"whole.{kind}"
    frames[0].save(whole, save_all=True, append_images=frames[1:])
    data = whole.read_bytes()
    cut = tmp_path / f"cut.{kind}"
    # GIF: into the last frame's header (Pillow's n_frames raised struct.error); TIFF: half the file
    cut.write_bytes(data[: len(data) - len(data) // 3 + 2] if kind == "gif" else data[: len(data) // 2])
    first = read_image(whole)
    got = read_image(cut)
    assert np.array_equal(got.rgb, first.rgb)
    assert len(got.notes) == 1
    assert got.notes[0].startswith(f"{cut}: ")
    assert got.notes[0] == f"{cut}: the data after the first frame is damaged or cut off; only the first is upscaled"


def test_the_pages_after_damage_are_not_decoded_to_count_them(tmp_path, monkeypatch):
    # a small first page, then large ones, the last pointing past the end: counting the pages decoded each,
    # past --max-pixels (a hostile file); the first page is read alone now
    pages = [Image.new("RGB", (32, 32), "red"), Image.new("RGB", (2000, 2000))]
    pages[0].save(tmp_path / "p.tif", save_all=True, append_images=pages[1:], compression="tiff_deflate")
    data = bytearray((tmp_path / "p.tif").read_bytes())
    at = struct.unpack_from("<I", data, 4)[0]
    while True:  # to the last page's next-page offset
        (n,) = struct.unpack_from("<H", data, at)
        (following,) = struct.unpack_from("<I", data, at + 2 + 12 * n)
        if not following:
            struct.pack_into("<I", data, at + 2 + 12 * n, len(data) + 4096)
            break
        at = following
    (tmp_path / "p.tif").write_bytes(bytes(data))
    loaded_pages = []
    real_load = TiffImagePlugin.TiffImageFile.load

    def load(self):
        loaded_pages.append(self.tell())
        return real_load(self)

    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "load", load)
    got = read_image(tmp_path / "p.tif", max_pixels=10_000)
    assert got.size == (32, 32) and got.notes[0].endswith("damaged or cut off; only the first is upscaled")
    assert set(loaded_pages) == {0}  # the 2000x2000 page was decoded too


def test_an_animated_png_whose_still_image_is_no_frame_says_the_still_image_is_upscaled(tmp_path):
    still, *frames = (Image.new("RGB", (8, 8), c) for c in ("white", "red", "blue"))
    still.save(tmp_path / "a.png", save_all=True, append_images=frames, default_image=True)
    got = read_image(tmp_path / "a.png")
    assert got.notes == [
        f"{tmp_path / 'a.png'}: an animated PNG of 2 frames and a still image for viewers without animation; "
        "the still image is upscaled"
    ]
    assert _q(got.rgb[0, 0], 255).tolist() == [255, 255, 255]


@pytest.mark.parametrize("shape", [(1, 1), (1, 10000), (10000, 1)])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_tiny_and_thin_images(tmp_path, shape, bit_depth):
    top = 65535 if bit_depth == 16 else 255
    rgb = RNG.integers(0, top + 1, (*shape, 3))
    got = read_image(write_image(tmp_path / "thin.png", rgb / top, bit_depth=bit_depth))
    assert got.size == (shape[1], shape[0]) and np.array_equal(_q(got.rgb, top), rgb)


# ----------------------------------------------------------------- broken inputs


def _valid_png(tmp_path: Path) -> bytes:
    p = tmp_path / "valid_source.png"
    Image.fromarray(RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(p)
    return p.read_bytes()


def _valid_jpeg(tmp_path: Path) -> bytes:
    p = tmp_path / "valid_source.jpg"
    Image.fromarray(RNG.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(p, quality=90)
    return p.read_bytes()


def _make_bad(tmp_path: Path, kind: str) -> Path:
    if kind == "missing":
        return tmp_path / "missing.png"
    if kind == "folder":
        (tmp_path / "folder.png").mkdir()
        return tmp_path / "folder.png"
    if kind == "empty":
        (tmp_path / "empty.png").write_bytes(b"")
        return tmp_path / "empty.png"
    if kind == "truncated_png":
        data = _valid_png(tmp_path)
        (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
        return tmp_path / "cut.png"
    if kind == "truncated_jpeg":
        data = _valid_jpeg(tmp_path)
        (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
        return tmp_path / "cut.jpg"
    if kind == "truncated_png16":
        data = _ref_png(RNG.integers(0, 65536, (20, 20, 3)), 16, 2)
        (tmp_path / "cut16.png").write_bytes(data[: len(data) - 40])
        return tmp_path / "cut16.png"
    if kind == "bad_crc_png16":
        data = bytearray(_ref_png(RNG.integers(0, 65536, (20, 20, 3)), 16, 2))
        data[60] ^= 0xFF
        (tmp_path / "crc16.png").write_bytes(bytes(data))
        return tmp_path / "crc16.png"
    if kind == "bad_zlib_png16":
        ihdr = struct.pack(">IIBBBBB", 4, 4, 16, 2, 0, 0, 0)
        data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"not zlib at all") + _chunk(b"IEND", b"")
        (tmp_path / "zlib16.png").write_bytes(data)
        return tmp_path / "zlib16.png"
    if kind == "random_bytes":
        (tmp_path / "noise.jpg").write_bytes(RNG.integers(0, 256, 3000, dtype=np.uint8).tobytes())
        return tmp_path / "noise.jpg"
    if kind == "text_as_png":
        (tmp_path / "notes.png").write_text("just some notes\n" * 20)
        return tmp_path / "notes.png"
    if kind == "unsupported":
        (tmp_path / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
        return tmp_path / "drawing.svg"
    raise AssertionError(kind)


BAD_KINDS = [
    "missing",
    "folder",
    "empty",
    "truncated_png",
    "truncated_jpeg",
    "truncated_png16",
    "bad_crc_png16",
    "bad_zlib_png16",
    "random_bytes",
    "text_as_png",
    "unsupported",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_is_one_line_srgan_error(tmp_path, kind):
    path = _make_bad(tmp_path, kind)
    with pytest.raises(SrganError) as info:
        read_image(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    assert info.value.__cause__ is None or isinstance(info.value.__cause__, SrganError)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_named_pipe_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(SrganError, match="not a regular file"):
        read_image(tmp_path / "pipe.png")


def test_truncated_load_stays_strict(tmp_path, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as a careless library might
    with pytest.raises(SrganError, match="cut.png"):
        read_image(_make_bad(tmp_path, "truncated_png"))


def test_strict_loads_on_two_threads_keep_pillows_setting_off_and_restore_the_applications(monkeypatch):
    # Each load saved and restored ImageFile.LOAD_TRUNCATED_IMAGES: the first thread out turned the
    # application's True back on while the second still loaded (a truncated file accepted, its rest
    # gray), and the second then left it False for good.
    import threading

    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # the embedding application's choice
    seen: dict[str, list[bool]] = {"a": [], "b": []}
    go = {k: threading.Event() for k in ("a", "b")}
    inside = {k: threading.Event() for k in ("a", "b")}

    class Blocking:  # an image whose load waits until the test lets it finish
        format, tile = "PNG", []

        def __init__(self, key):
            self.key = key

        def load(self):
            seen[self.key].append(ImageFile.LOAD_TRUNCATED_IMAGES)
            inside[self.key].set()
            assert go[self.key].wait(10)
            seen[self.key].append(ImageFile.LOAD_TRUNCATED_IMAGES)

    threads = {k: threading.Thread(target=images._strict_load, args=(Blocking(k),)) for k in ("a", "b")}
    threads["a"].start()
    assert inside["a"].wait(10)
    threads["b"].start()
    assert inside["b"].wait(10)
    go["a"].set()
    threads["a"].join(10)  # a is done while b still loads
    go["b"].set()
    threads["b"].join(10)
    assert seen == {"a": [False, False], "b": [False, False]}
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("skippable", [True, False])
def test_a_child_forked_while_other_threads_read_images_reads_and_does_not_hang(tmp_path, monkeypatch, skippable):
    """A process forked while another thread held one of srgan's locks (a server's request thread
    reading an image) holds only the forking thread: the lock stayed locked for good and the child
    hung in its first read_image. Pillow's settings the other threads had changed for their reads
    stayed changed in the child too. (False: a Pillow without the size check function srgan wraps,
    where Image.MAX_IMAGE_PIXELS itself is switched off around an open.)"""
    import signal
    import threading

    from PIL import ImageFile

    from srgan_cli import api, hub

    if not skippable:
        monkeypatch.setattr(images, "_bomb_check_skippable", lambda: False)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # the program's choice
    limit = Image.MAX_IMAGE_PIXELS
    path = write_image(tmp_path / "a.png", RNG.random((4, 5, 3)))
    cut = _make_bad(tmp_path, "truncated_png")
    release = threading.Event()
    ready = threading.Barrier(4)

    class Blocking:  # an image whose load waits: the thread is inside a strict load
        format, tile = "PNG", []

        def load(self):
            ready.wait(10)
            assert release.wait(30)

    def inside_open():  # inside Image.open, Pillow's limit off
        with images._pillow_unlimited():
            ready.wait(10)
            assert release.wait(30)

    def between_lines():  # at a moment where the locks are held
        with images._STRICT_LOCK, images._INSTALL_LOCK, api._MODEL_CACHE_LOCK, api._TWIN_LOCK, hub._PATCH_LOCK:
            ready.wait(10)
            assert release.wait(30)

    threads = [threading.Thread(target=f) for f in (lambda: images._strict_load(Blocking()), inside_open)]
    threads.append(threading.Thread(target=between_lines))
    for t in threads:
        t.start()
    try:
        ready.wait(10)
        pid = os.fork()
        if pid == 0:  # the child: leaves with its verdict, whatever happens
            code = 3
            try:
                signal.alarm(20)  # a hung child dies of SIGALRM
                locks = (images._STRICT_LOCK, images._INSTALL_LOCK, api._MODEL_CACHE_LOCK, api._TWIN_LOCK)
                settings = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS)
                assert not any(lock.locked() for lock in (*locks, hub._PATCH_LOCK)), "locks held"
                assert settings == (True, limit), settings
                assert read_image(path).size == (5, 4)
                with pytest.raises(SrganError):
                    read_image(cut)  # still strict
                assert ImageFile.LOAD_TRUNCATED_IMAGES is True and Image.MAX_IMAGE_PIXELS == limit
                code = 0
            except BaseException as exc:  # noqa: BLE001 - the child's verdict is its exit status
                os.write(2, f"child: {exc!r}\n".encode())
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        for t in threads:
            t.join(30)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True and Image.MAX_IMAGE_PIXELS == limit  # the parent's, as they were


def test_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    write_image(path, RNG.random((3, 3, 3)))
    if IS_ROOT:  # root reads anything: simulate the refusal instead
        real_open = open

        def refuse(p, *a, **k):
            if Path(p) == path:
                raise PermissionError(errno.EACCES, "Permission denied", str(p))
            return real_open(p, *a, **k)

        monkeypatch.setattr("builtins.open", refuse)
    else:
        path.chmod(0)
    with pytest.raises(SrganError, match="permission denied") as info:
        read_image(path)
    assert str(info.value).startswith(str(path))


def test_decompression_bomb_refused_before_decoding(tmp_path, monkeypatch):
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b"")
    )
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    assert path.stat().st_size < 200

    def no_decoding(self, *a, **k):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(SrganError) as info:
        read_image(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "100000x100000" in msg and "--max-pixels" in msg


def test_out_of_memory_is_one_line(tmp_path, monkeypatch):
    path = write_image(tmp_path / "m.png", RNG.random((4, 4, 3)))

    def no_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr(images, "_from_loaded_pil", no_memory)
    with pytest.raises(SrganError, match="not enough memory") as info:
        read_image(path)
    assert str(info.value).startswith(str(path))


def test_concurrent_reads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    paths = [write_image(tmp_path / f"c{i}.png", np.full((20 + i, 30, 3), i / 10)) for i in range(8)]
    before = Image.MAX_IMAGE_PIXELS
    with ThreadPoolExecutor(4) as pool:
        sizes = list(pool.map(lambda p: read_image(p, max_pixels=30 * 27).size, paths))
    assert sizes == [(30, 20 + i) for i in range(8)]
    assert Image.MAX_IMAGE_PIXELS == before


def test_max_pixels_is_per_call_and_pillow_limit_does_not_leak(tmp_path, monkeypatch):
    path = write_image(tmp_path / "m.png", RNG.random((50, 60, 3)))
    with pytest.raises(SrganError, match="--max-pixels"):
        read_image(path, max_pixels=2999)
    assert read_image(path, max_pixels=3000).size == (60, 50)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow's own global limit is not ours
    assert read_image(path).size == (60, 50)
    assert read_image(path, max_pixels=None).size == (60, 50)
    assert Image.MAX_IMAGE_PIXELS == 100


def _png_header(path: Path, width: int, height: int) -> Path:
    """A gray PNG that declares ``width`` x ``height`` and holds no pixels: its header opens."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_pillows_limit_holds_on_other_threads_while_srgan_opens_an_image(tmp_path, monkeypatch):
    """srgan switched Image.MAX_IMAGE_PIXELS, global to the process, off around each open: a thread
    of the program embedding srgan that opened an image meanwhile had no limit (a 40000 x 40000
    header Pillow refuses passed a quarter of the time). Pillow's check is now skipped on srgan's
    own thread alone."""
    import threading

    from PIL import PngImagePlugin

    bomb = _png_header(tmp_path / "bomb.png", 40000, 40000)
    small = write_image(tmp_path / "s.png", RNG.random((4, 4, 3)))
    before = Image.MAX_IMAGE_PIXELS
    inside, go = threading.Event(), threading.Event()
    held: list[threading.Thread] = []
    png_open = PngImagePlugin.PngImageFile._open

    def open_held(self):  # srgan's read waits inside Image.open until the test lets it go on
        if threading.current_thread() in held:
            inside.set()
            assert go.wait(10)
        return png_open(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "_open", open_held)
    got: list[tuple[int, int]] = []
    reader = threading.Thread(target=lambda: got.append(read_image(small).size))
    held.append(reader)
    reader.start()
    try:
        assert inside.wait(10)
        assert Image.MAX_IMAGE_PIXELS == before
        with pytest.raises(Image.DecompressionBombError):
            Image.open(bomb)
    finally:
        go.set()
        reader.join(10)
    assert got == [(4, 4)]
    with pytest.raises(SrganError, match="more than the limit of 100000000"):  # srgan's own limit, not Pillow's
        read_image(bomb)
    with pytest.raises(Image.DecompressionBombError):  # and nothing of srgan's is left on this thread
        Image.open(bomb)


def test_without_pillows_check_function_the_limit_is_lifted_and_restored(tmp_path, monkeypatch):
    # a Pillow without Image._decompression_bomb_check: the global limit is switched off around the open
    monkeypatch.setattr(images, "_bomb_check_skippable", lambda: False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    path = write_image(tmp_path / "m.png", RNG.random((50, 60, 3)))
    assert read_image(path).size == (60, 50)
    assert Image.MAX_IMAGE_PIXELS == 100


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".gif", ".tif", ".webp", ".bmp", "16.png", "16.tif"])
def test_damaged_files_never_leak_other_exceptions(tmp_path, suffix):
    """Truncations and flipped bytes give a picture or an SrganError, nothing else."""
    bit_depth = 16 if suffix.startswith("16") else 8
    src = write_image(tmp_path / f"src{suffix}", RNG.random((16, 16, 3)), bit_depth=bit_depth)
    data = src.read_bytes()
    rng = np.random.default_rng(99)
    for i in range(25):
        damaged = bytearray(data)
        if i % 2:
            damaged = damaged[: int(rng.integers(1, len(data)))]
        else:
            for pos in rng.integers(0, len(data), 3):
                damaged[pos] ^= int(rng.integers(1, 256))
        path = tmp_path / f"d{i}{suffix}"
        path.write_bytes(bytes(damaged))
        try:
            got = read_image(path, max_pixels=1_000_000)
        except SrganError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(str(path))
        else:
            assert got.rgb.ndim == 3 and np.isfinite(got.rgb).all()


def _patch_tiff_tag(data: bytes, tag: int, value: int) -> bytes:
    """A little-endian TIFF (as ``_tiff`` writes it) with one LONG or SHORT tag's value replaced."""
    out = bytearray(data)
    (ifd,) = struct.unpack_from("<I", out, 4)
    (n,) = struct.unpack_from("<H", out, ifd)
    for i in range(n):
        pos = ifd + 2 + 12 * i
        found, typ = struct.unpack_from("<HH", out, pos)
        if found == tag:
            struct.pack_into("<I" if typ == 4 else "<HH", out, pos + 8, *((value,) if typ == 4 else (value, 0)))
            return bytes(out)
    raise AssertionError(f"no tag {tag}")


@pytest.mark.parametrize("bits", [8, 16])
def test_a_damaged_tile_width_is_a_one_line_error(tmp_path, bits):
    # TileWidth 0xE8000010: Pillow's decoder set-up raised OverflowError, which came out of read_image and
    # read_rgb8 as a traceback (and stopped a training run: its loader skips only the errors it knows)
    tile = np.zeros((16, 16, 3), dtype=np.uint8 if bits == 8 else "<u2").tobytes()
    path = tmp_path / "t.tif"
    path.write_bytes(_patch_tiff_tag(_tiff(7, 9, 3, [tile], tile=16, bits=bits), 322, 0xE8000010))
    for read in (read_image, images.read_rgb8):
        with pytest.raises(SrganError, match="t.tif") as info:
            read(path)
        assert "\n" not in str(info.value)


def test_broken_tiff_prints_nothing_on_stderr(tmp_path, capfd):
    data = write_image(tmp_path / "s.tif", RNG.random((32, 32, 3))).read_bytes()
    broken = bytearray(data)
    broken[20:60] = bytes(40)  # the deflate stream starts right after the header
    (tmp_path / "b.tif").write_bytes(bytes(broken))
    with pytest.raises(SrganError, match="b.tif"):
        read_image(tmp_path / "b.tif")
    assert capfd.readouterr().err == ""  # libtiff's own complaints stay off the terminal


# ----------------------------------------------------------------- writing failures


def test_overwrite_false_refuses_existing(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"keep me")
    with pytest.raises(SrganError, match="already exists") as info:
        write_image(path, RNG.random((2, 2, 3)), overwrite=False)
    assert str(info.value).startswith(str(path))
    assert path.read_bytes() == b"keep me"
    assert _leftovers(tmp_path) == ["x.png"]
    write_image(path, RNG.random((2, 2, 3)))  # overwrite=True replaces it
    assert path.read_bytes().startswith(b"\x89PNG")


def test_output_has_normal_permissions(tmp_path):
    out = write_image(tmp_path / "p.png", RNG.random((2, 2, 3)))
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_read_only_folder(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    if IS_ROOT:  # root ignores permissions: simulate the refusal where the temp file is made

        def refuse(*a, **k):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(fsutil, "_new_temp", refuse)
    else:
        folder.chmod(0o555)
    try:
        with pytest.raises(SrganError, match="permission denied") as info:
            write_image(folder / "x.png", RNG.random((2, 2, 3)))
        assert str(info.value).startswith(str(folder / "x.png")) and "\n" not in str(info.value)
    finally:
        folder.chmod(0o755)
    assert _leftovers(folder) == []


def test_missing_folder(tmp_path):
    with pytest.raises(SrganError, match="does not exist"):
        write_image(tmp_path / "nope" / "x.png", RNG.random((2, 2, 3)))


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS, errno.EIO])
def test_disk_errors_leave_nothing(tmp_path, monkeypatch, err):
    def fail(*a, **k):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(fsutil.os, "fsync", fail)
    with pytest.raises(SrganError) as info:
        write_image(tmp_path / "x.png", RNG.random((4, 4, 3)))
    assert str(info.value).startswith(str(tmp_path / "x.png")) and "\n" not in str(info.value)
    if err == errno.ENOSPC:
        assert "no space" in str(info.value)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("err", [errno.EINVAL, errno.ENOTSUP, errno.ENOSYS], ids=["EINVAL", "ENOTSUP", "ENOSYS"])
def test_a_filesystem_that_cannot_fsync_still_gets_the_image(tmp_path, monkeypatch, err):
    def cannot(*a, **k):  # some network and FUSE mounts
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(fsutil.os, "fsync", cannot)
    rgb = RNG.random((4, 4, 3))
    write_image(tmp_path / "x.png", rgb, overwrite=False)
    assert read_image(tmp_path / "x.png").rgb.shape == (4, 4, 3)
    assert _leftovers(tmp_path) == ["x.png"]


@pytest.mark.parametrize(
    ("err", "reason"),
    [(errno.ENAMETOOLONG, "too long for the file system"), (errno.EINVAL, "FAT and exFAT refuse")],
    ids=["ENAMETOOLONG", "EINVAL"],
)
def test_names_the_filesystem_refuses_are_explained(tmp_path, monkeypatch, err, reason):
    def refuse(*a, **k):  # FAT/exFAT answer EINVAL for a name with : * ? " < > |
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(fsutil, "_new_temp", refuse)
    with pytest.raises(SrganError, match=reason) as info:
        write_image(tmp_path / "a:b.png", RNG.random((2, 2, 3)))
    assert str(info.value).startswith(str(tmp_path / "a:b.png")) and "\n" not in str(info.value)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_name_too_long_for_the_filesystem_is_the_friendly_reason(tmp_path, overwrite):
    """Without --overwrite, the "exists already?" check before the write raised the raw
    OSError [Errno 36] (Python 3.11's Path.exists() lets ENAMETOOLONG through)."""
    path = tmp_path / f"{'x' * 300}.png"
    with pytest.raises(SrganError, match="too long for the file system") as info:
        write_image(path, RNG.random((2, 2, 3)), overwrite=overwrite)
    assert str(info.value).startswith(str(path)) and "Errno" not in str(info.value)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(("suffix", "bit_depth"), [(".png", 8), (".png", 16), (".jpg", 8), (".tif", 8)])
def test_encoder_failure_midway_leaves_nothing(tmp_path, monkeypatch, suffix, bit_depth):
    def half_then_full_disk(self, fp, *a, **k):
        fp.write(b"\x89PNG partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    def full_disk(*a, **k):  # our PNG writer has written its header by then
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", half_then_full_disk)
    monkeypatch.setattr(images, "_png_filter_rows", full_disk)
    path = tmp_path / f"x{suffix}"
    with pytest.raises(SrganError, match="no space"):
        write_image(path, RNG.random((4, 4, 3)), bit_depth=bit_depth)
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_interrupt_leaves_nothing_and_keeps_old_file(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"x{suffix}"
    write_image(path, np.zeros((2, 2, 3)))
    before = path.read_bytes()

    def interrupted(self, fp, *a, **k):
        fp.write(b"partial")
        raise KeyboardInterrupt

    def interrupted_filter(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted)
    monkeypatch.setattr(images, "_png_filter_rows", interrupted_filter)
    with pytest.raises(KeyboardInterrupt):
        write_image(path, np.ones((2, 2, 3)))
    assert path.read_bytes() == before and _leftovers(tmp_path) == [path.name]


def test_bad_arguments(tmp_path):
    with pytest.raises(SrganError, match="quality"):
        write_image(tmp_path / "q.jpg", np.zeros((2, 2, 3)), quality=0)
    with pytest.raises(SrganError, match="cannot write"):
        write_image(tmp_path / "q.ppm", np.zeros((2, 2, 3)), format="PPM")
    with pytest.raises(SrganError, match=r"q\.xyz"):
        write_image(tmp_path / "q.xyz", np.zeros((2, 2, 3)))
    assert _leftovers(tmp_path) == []


# ----------------------------------------------------------------- listing


def test_list_images(tmp_path):
    (tmp_path / "b.png").write_bytes(b"x")
    (tmp_path / "a.JPG").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / ".out.png.abc.part").write_bytes(b"x")
    (tmp_path / "half.png.part").write_bytes(b"x")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "c.webp").write_bytes(b"x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "d.png").write_bytes(b"x")
    os.symlink(tmp_path, sub / "loop")  # a symlink loop back to the root
    os.symlink(tmp_path / "gone.png", tmp_path / "broken.png")  # dangling link
    assert list_images(tmp_path, recursive=False) == [tmp_path / "a.JPG", tmp_path / "b.png"]
    assert list_images(tmp_path, recursive=True) == [tmp_path / "a.JPG", tmp_path / "b.png", sub / "c.webp"]
    assert list_images(tmp_path / "b.png", recursive=True) == [tmp_path / "b.png"]
    with pytest.raises(SrganError, match="no such folder"):
        list_images(tmp_path / "nothing", recursive=True)


def test_list_images_skips_unreadable_subfolder(tmp_path, monkeypatch):
    (tmp_path / "a.png").write_bytes(b"x")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "b.png").write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(p):
        if Path(p) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_scandir(p)

    monkeypatch.setattr(images.os, "scandir", scandir)
    assert list_images(tmp_path, recursive=True) == [tmp_path / "a.png"]


# ----------------------------------------------------------------- pixel helpers


def test_upscale_alpha():
    alpha = np.zeros((6, 5), dtype=np.float32)
    alpha[2:4, 1:3] = 1.0
    up = upscale_alpha(alpha, 4)
    assert up.shape == (24, 20) and up.dtype == np.float32
    assert up.min() >= 0.0 and up.max() <= 1.0  # bicubic overshoot is clipped
    assert up[10, 6] > 0.9 and up[0, 0] < 0.05
    assert np.allclose(upscale_alpha(np.full((3, 3), 0.25, np.float32), 2.5), 0.25, atol=1e-6)
    assert upscale_alpha(alpha, 1.5).shape == (9, 8)  # round(6*1.5), round(5*1.5)


def test_fill_transparent_uses_neighbouring_colour():
    rgb = np.zeros((16, 16, 3), dtype=np.float32)
    alpha = np.zeros((16, 16), dtype=np.float32)
    rgb[4:12, 4:12] = (1.0, 0.5, 0.0)  # orange opaque square; black hidden under transparency
    alpha[4:12, 4:12] = 1.0
    out = fill_transparent(rgb, alpha)
    assert out is not rgb and rgb[0, 0].tolist() == [0, 0, 0]  # input untouched
    assert np.array_equal(out[4:12, 4:12], rgb[4:12, 4:12])  # opaque pixels keep their colour
    assert np.allclose(out[~(alpha > 0)], (1.0, 0.5, 0.0), atol=0.02)  # no black left behind
    assert np.array_equal(fill_transparent(rgb, np.zeros_like(alpha)), rgb)
    half, blue = alpha.copy(), rgb.copy()
    half[0, 0] = 0.5
    half[3, 6], blue[3, 6] = 0.25, (0.0, 0.0, 1.0)  # faint blue pixel on the orange square's edge
    out = fill_transparent(blue, half)
    assert out[0, 0].tolist() == [0, 0, 0]  # half opaque: its own colour is visible, so it is kept
    assert out[3, 6].tolist() == [0, 0, 1]  # faint, but visible: kept too


def test_fill_transparent_keeps_the_colours_of_a_semi_transparent_layer():
    """A photo at 30% opacity had every colour faded into a blurred fill (up to 28 levels off)."""
    rgb = RNG.random((20, 24, 3)).astype(np.float32)
    alpha = np.full((20, 24), 76 / 255, dtype=np.float32)
    alpha[:, :4] = 0.0  # and a transparent band, which is filled
    out = fill_transparent(rgb, alpha)
    assert np.array_equal(out[:, 4:], rgb[:, 4:])
    assert not np.array_equal(out[:, :4], rgb[:, :4]) and 0 <= out.min() and out.max() <= 1


def test_fill_transparent_two_colours_stay_local():
    rgb = np.zeros((8, 32, 3), dtype=np.float32)
    alpha = np.zeros((8, 32), dtype=np.float32)
    rgb[:, :4], alpha[:, :4] = (1, 0, 0), 1
    rgb[:, -4:], alpha[:, -4:] = (0, 0, 1), 1
    out = fill_transparent(rgb, alpha)
    assert out[:, 5, 0].min() > 0.8 and out[:, 26, 2].min() > 0.8  # near each side, its own colour


def test_resize_rgb():
    rgb = RNG.random((10, 12, 3)).astype(np.float32)
    out = resize_rgb(rgb, (30, 25))
    assert out.shape == (25, 30, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    flat = np.full((10, 12, 3), 0.3, dtype=np.float32)
    assert np.allclose(resize_rgb(flat, (5, 7)), 0.3, atol=1e-5)
    assert np.array_equal(resize_rgb(rgb, (12, 10)), rgb)
    plane = resize_rgb(rgb[..., 0], (6, 5))  # a single plane (alpha) works too
    assert plane.shape == (5, 6) and np.allclose(plane, resize_rgb(rgb, (6, 5))[..., 0])


# ----------------------------------------------------------------- property test

_MODE_SPECS = {"L": (1, 255), "LA": (2, 255), "RGB": (3, 255), "RGBA": (4, 255), "P": (1, 255), "I;16": (1, 65535)}
_LOSSLESS = ("BMP", "PNG", "TIFF", "WEBP")  # WebP at quality 100 is lossless


def _pil_image(mode: str, h: int, w: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels, top = _MODE_SPECS[mode]
    if mode == "I;16":
        return Image.frombytes("I;16", (w, h), rng.integers(0, 65536, (h, w)).astype("<u2").tobytes())
    if mode == "P":
        im = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).convert("P")
        im.putpalette(rng.integers(0, 256, 768, dtype=np.uint8).tobytes())
        return im
    arr = rng.integers(0, top + 1, (h, w, channels), dtype=np.uint8)
    return Image.fromarray(arr if channels > 1 else arr[..., 0])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    mode=st.sampled_from(sorted(_MODE_SPECS)),
    fmt=st.sampled_from(_LOSSLESS),
    seed=st.integers(0, 2**16),
)
def test_property_lossless_round_trip(tmp_path, h, w, mode, fmt, seed):
    src = _pil_image(mode, h, w, seed)
    loaded = from_pil(src)
    # The expected values come from Pillow's own conversion, not from images.py.
    if mode == "I;16":
        expected = np.repeat(np.asarray(src).astype(np.int64)[..., None], 3, axis=2)
    else:
        expected = np.asarray(src.convert("RGBA"))[..., :3].astype(np.int64)
    expected_alpha = np.asarray(src)[..., -1].astype(np.int64) if mode in ("LA", "RGBA") else None
    out = write_image(
        tmp_path / f"p{seed}{output_suffix_for(fmt)}",
        loaded.rgb,
        alpha=loaded.alpha,
        bit_depth=loaded.bit_depth,
        grayscale=loaded.grayscale,
        quality=100,
    )
    got = read_image(out)
    top = 65535 if (mode == "I;16" and fmt in ("PNG", "TIFF")) else 255
    if top == 255 and mode == "I;16":
        expected = np.rint(expected / 65535 * 255).astype(np.int64)
    if expected_alpha is not None and fmt == "BMP":  # BMP is written without alpha: flattened onto white
        a = expected_alpha[..., None]
        expected = (expected * a + 255 * (255 - a) + 127) // 255
    assert np.array_equal(_q(got.rgb, top), expected)
    if expected_alpha is not None and fmt != "BMP":
        assert got.alpha is not None and np.array_equal(_q(got.alpha, 255), expected_alpha)
    out.unlink()


def test_quantise_in_bands_equals_the_whole_array_formula():
    """Large outputs are quantised band by band (bounded memory); the result must not change."""
    from srgan_cli.images import _quantise

    rng = np.random.default_rng(0)
    x = rng.normal(0.5, 0.6, (3000, 700, 3)).astype(np.float32)  # several bands of rows
    x[0, 0, 0], x[1500, 1, 1], x[2999, 2, 2] = np.nan, np.inf, -np.inf
    before = x.copy()
    for depth, top, dtype in ((8, 255, np.uint8), (16, 65535, np.uint16)):
        whole = np.rint(np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0), 0, 1) * top).astype(dtype)
        assert np.array_equal(_quantise(x, depth), whole)
        assert np.array_equal(_quantise(x[..., 0], depth), whole[..., 0])
    assert np.array_equal(x, before, equal_nan=True)  # the caller's array is untouched


@pytest.mark.parametrize(
    "name,bit_depth,gray,with_alpha",
    [
        ("a.png", 8, False, False),
        ("a.png", 8, False, True),
        ("a.png", 16, False, True),
        ("a.png", 16, True, False),
        ("a.png", 16, True, True),
        ("a.tif", 16, False, False),
        ("a.tif", 16, True, True),
        ("a.webp", 8, True, True),
        ("a.jpg", 16, False, True),
        ("a.bmp", 8, True, False),
        ("a.bmp", 8, False, True),
        ("a.bmp", 8, True, True),
    ],
)
def test_quantised_pixels_write_the_same_file_as_floats(tmp_path, name, bit_depth, gray, with_alpha):
    """``upscale`` hands write_image pixels already quantised to the stored depth (no float
    copy of a big output); every format must then store exactly what the float path stores."""
    rng = np.random.default_rng(7)
    rgb = rng.random((13, 9, 3), dtype=np.float32)
    alpha = rng.random((13, 9), dtype=np.float32) if with_alpha else None
    depth = images.stored_bit_depth(tmp_path / name, bit_depth)
    assert depth == (16 if bit_depth == 16 and name.endswith((".png", ".tif")) else 8)
    plane = rgb.mean(axis=2, keepdims=True, dtype=np.float32) if gray else rgb
    q_rgb = images.quantise_into(plane, np.empty(plane.shape, images._stored_dtype(depth)))
    q_alpha = None if alpha is None else images._quantise(alpha, depth)
    kw = {"bit_depth": bit_depth, "grayscale": gray, "text": {"Software": "srgan test"}}
    a = write_image(tmp_path / ("f_" + name), rgb, alpha=alpha, **kw)
    b = write_image(tmp_path / ("q_" + name), q_rgb, alpha=q_alpha, **kw)
    if name.endswith((".png", ".bmp", ".tif")):
        assert a.read_bytes() == b.read_bytes()
    fa, fb = read_image(a), read_image(b)
    assert np.array_equal(fa.rgb, fb.rgb) and fa.bit_depth == fb.bit_depth and fa.grayscale == fb.grayscale
    assert (fa.alpha is None and fb.alpha is None) or np.array_equal(fa.alpha, fb.alpha)


def test_quantised_pixels_of_the_wrong_depth_are_refused(tmp_path):
    with pytest.raises(ValueError, match="uint8 pixels cannot be written as 16-bit PNG"):
        write_image(tmp_path / "a.png", np.zeros((2, 2, 3), np.uint8), bit_depth=16)
    with pytest.raises(ValueError, match="uint16 pixels cannot be written as 8-bit JPEG"):
        write_image(tmp_path / "a.jpg", np.zeros((2, 2, 3), np.uint16), bit_depth=16)
    with pytest.raises(ValueError, match="must already be gray"):
        write_image(tmp_path / "b.png", np.zeros((2, 2, 3), np.uint8), grayscale=True)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_sixteen_bit_writers_stream_many_bands_exactly(tmp_path, suffix, channels):
    """The 16-bit PNG and TIFF writers filter and deflate a few MB of rows at a time; an image
    of many bands must come back exactly, and Pillow must read the same picture."""
    h, w = 3000, 700 if channels > 1 else 2100  # 4 MB bands of 750 to 1,000 rows: 3 or more
    q = np.random.default_rng(channels).integers(0, 65536, (h, w, channels), dtype=np.uint16)
    q[:, : w // 2] = np.linspace(0, 65535, w // 2, dtype=np.uint16)[None, :, None]  # smooth half
    rgb = q[..., : min(3, channels)] if channels > 1 else q
    alpha = q[..., 3] if channels == 4 else None
    path = write_image(tmp_path / f"x{suffix}", rgb, alpha=alpha, bit_depth=16, grayscale=channels == 1)
    again = write_image(tmp_path / f"y{suffix}", rgb, alpha=alpha, bit_depth=16, grayscale=channels == 1, threads=3)
    assert again.read_bytes() == path.read_bytes()  # bands are compressed alike on any thread count
    assert images._band_rows(w * 2 * channels) * 3 <= h
    got = read_image(path)
    assert got.bit_depth == 16 and got.grayscale == (channels == 1)
    assert np.array_equal(_q(got.rgb[..., : min(3, channels)], 65535), rgb)
    if alpha is not None:
        assert np.array_equal(_q(got.alpha, 65535), alpha)
    with Image.open(path) as im:
        im.load()
        if channels == 1:
            assert np.array_equal(np.asarray(im).astype(np.uint16), q[..., 0])
        elif suffix == ".png":
            assert np.array_equal(np.asarray(im.convert("RGB")), (rgb >> 8).astype(np.uint8))


def _photo_like(h: int, w: int, channels: int) -> np.ndarray:
    """Smooth gradients, edges and a little noise: what an upscaled photo looks like to a PNG filter."""
    rng = np.random.default_rng(h + w + channels)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = [0.5 + 0.4 * np.sin(xx / (17 + 5 * k) + yy / (29 + 3 * k)) for k in range(channels)]
    x = np.stack(base, axis=2)
    x[h // 3 : h // 2, w // 4 : w // 2] = 0.9  # a flat patch with sharp edges
    x += rng.normal(0, 0.01, x.shape).astype(np.float32)
    return images._quantise(x, 8)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_eight_bit_tiff_uses_the_horizontal_predictor_and_reads_back_exactly(tmp_path, channels):
    """8-bit TIFF was deflated without a predictor (16-bit TIFF had one): photos came out ~1.6x larger."""
    q = _photo_like(96, 128, channels)
    rgb = q[..., :1] if channels <= 2 else q[..., :3]
    alpha = q[..., -1] if channels in (2, 4) else None
    path = write_image(tmp_path / "x.tif", rgb, alpha=alpha, grayscale=channels <= 2, text={"Software": "srgan"})
    with Image.open(path) as im:
        im.load()
        assert im.tag_v2.get(317) == 2 and im.tag_v2.get(259) == 8  # deflate with the horizontal predictor
        got = np.asarray(im)
    plain = io.BytesIO()
    Image.fromarray(got).save(plain, format="TIFF", compression="tiff_adobe_deflate")  # the same pixels, no predictor
    assert np.array_equal(got.reshape(q.shape), q)
    assert path.stat().st_size < 0.8 * len(plain.getvalue())
    tifffile = pytest.importorskip("tifffile")
    assert np.array_equal(tifffile.imread(path).reshape(q.shape), q)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_writer_is_exact_deterministic_and_as_small_as_pillows(tmp_path, channels):
    """8-bit PNGs are written by our banded, parallel writer: Pillow must read back exactly the
    pixels, the bytes must not depend on the thread count, and the file must be no larger than
    what Pillow's own encoder (libpng's adaptive filter) makes of the same pixels."""
    h, w = 1100, 900  # 1 MB bands: three or more for every channel count
    q = _photo_like(h, w, channels)
    rgb = q[..., :1] if channels <= 2 else q[..., :3]
    alpha = q[..., -1] if channels in (2, 4) else None
    files = []
    for threads in (1, 3):
        buf = io.BytesIO()
        images._write_png(buf, q, 8, None, None, {"Software": "srgan"}, threads=threads)
        files.append(buf.getvalue())
    assert files[0] == files[1]
    for threads in (None, 2):
        path = write_image(
            tmp_path / "x.png", rgb, alpha=alpha, grayscale=channels <= 2, text={"Software": "srgan"}, threads=threads
        )
        assert path.read_bytes() == files[0]
    with Image.open(path) as im:
        im.load()
        assert im.mode == {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
        assert np.array_equal(np.asarray(im).reshape(h, w, channels), q)
        assert im.text.get("Software") == "srgan"
    pillow = io.BytesIO()
    Image.fromarray(q[..., 0] if channels == 1 else q).save(pillow, format="PNG")
    assert len(files[0]) <= len(pillow.getvalue()) * 1.01
    floats = q.astype(np.float32) / 255  # the 16-bit path too, from floats, read by our own decoder
    wide = write_image(
        tmp_path / "w.png",
        floats[..., : rgb.shape[2]],
        alpha=None if alpha is None else floats[..., -1],
        bit_depth=16,
        grayscale=channels <= 2,
    )
    got = read_image(wide)
    assert np.array_equal(_q(got.rgb[..., : rgb.shape[2]], 255), rgb)


def test_png_writer_uses_every_filter_where_it_pays():
    """Rows are filtered adaptively: a flat row, a ramp and noise do not all get one filter."""
    raw = np.zeros((4, 30), np.uint8)
    raw[1] = np.arange(30) * 3  # a ramp: Sub leaves a constant
    raw[2] = raw[1]  # the row above again: Up leaves zeros
    raw[3] = np.random.default_rng(0).integers(0, 256, 30)
    rows = images._png_filter_rows(raw, np.zeros(30, np.uint8), 3, adaptive=True)
    assert rows[0, 0] == 0 and rows[1, 0] == 1 and rows[2, 0] == 2
    decoded = images._png_unfilter(rows[:, 0], rows[:, 1:].reshape(4, 10, 3), "x")
    assert np.array_equal(decoded.reshape(4, 30), raw)


def test_adler32_of_pieces_combines_to_the_whole():
    a, b = bytes(range(256)) * 300, b"srgan" * 7001
    assert images._adler32_combine(zlib.adler32(a), zlib.adler32(b), len(b)) == zlib.adler32(a + b)
    assert images._adler32_combine(1, zlib.adler32(b), len(b)) == zlib.adler32(b)


def test_encoder_threads_follow_pytorch(monkeypatch):
    import torch

    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert images._encoder_threads() == 3
    monkeypatch.setattr(torch, "get_num_threads", lambda: 64)
    assert images._encoder_threads() == 8


def _rgb8_cases(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    files = {}

    def save(name, image, **kw):
        files[name] = folder / name
        image.save(files[name], **kw)

    save("rgb.png", Image.fromarray(rgb))
    save("gray.png", Image.fromarray(rgb[..., 0]))
    save("rgb.jpg", Image.fromarray(rgb), quality=90)
    save("gray.jpg", Image.fromarray(rgb[..., 1]), quality=90)
    save("rgb.webp", Image.fromarray(rgb), lossless=True)
    save("rgb.bmp", Image.fromarray(rgb))
    save("rgba.png", Image.fromarray(np.dstack([rgb, rgb[..., :1]])))
    save("palette.png", Image.fromarray(rgb).convert("P"), transparency=3)
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"))
    rotated = Image.fromarray(rgb)
    exif = rotated.getexif()
    exif[0x0112] = 6
    save("rotated.jpg", rotated, exif=exif, quality=90)
    images.write_image(folder / "rgb16.png", rgb.astype(np.float32) / 255 + 1e-4, bit_depth=16)
    images.write_image(folder / "gray16.tiff", rgb[..., :1].repeat(3, 2) / 255.0, bit_depth=16, grayscale=True)
    files["rgb16.png"], files["gray16.tiff"] = folder / "rgb16.png", folder / "gray16.tiff"
    return files


def test_read_rgb8_is_read_image_in_eight_bits(tmp_path, monkeypatch):
    # Training and bench images go through read_rgb8; its direct path for plain 8-bit files
    # must give the bytes read_image does, and everything else must take read_image's path.
    files = _rgb8_cases(tmp_path)
    expected = {}
    for name, path in files.items():
        rgb = read_image(path).rgb
        expected[name] = images.quantise_into(rgb, np.empty(rgb.shape, np.uint8))
        got = images.read_rgb8(path)
        assert got.dtype == np.uint8 and np.array_equal(got, expected[name]), name
    assert expected["rotated.jpg"].shape == (40, 30, 3)  # turned upright

    def refuse(path, **kw):
        raise AssertionError(f"{Path(path).name} took the float path")

    monkeypatch.setattr(images, "read_image", refuse)
    plain = ("rgb.png", "gray.png", "rgb.jpg", "gray.jpg", "rgb.webp", "rgb.bmp")
    for name in plain:
        assert np.array_equal(images.read_rgb8(files[name]), expected[name])
    for name in set(files) - set(plain):
        with pytest.raises(AssertionError, match="took the float path"):
            images.read_rgb8(files[name])


def test_read_rgb8_errors_are_read_images(tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (20, 20), (1, 2, 3)).save(good)
    cut = tmp_path / "cut.png"
    cut.write_bytes(good.read_bytes()[:60])
    with pytest.raises(SrganError, match="cut.png: cannot decode the PNG data"):
        images.read_rgb8(cut)
    with pytest.raises(SrganError, match="more than the limit of 100"):
        images.read_rgb8(good, max_pixels=100)
    assert images.read_rgb8(good)[0, 0].tolist() == [1, 2, 3]


def test_sixteen_bit_png_reads_an_imagemagick_raw_exif_profile(tmp_path):
    """EXIF as hex in a "Raw profile type exif" text chunk (ImageMagick): Pillow turns the 8-bit
    file upright from it, but the 16-bit colour one was neither turned nor kept its EXIF."""
    arr = RNG.integers(0, 65536, (3, 5, 3)).astype(np.uint16)
    exif = Image.Exif()
    exif[0x0112], exif[0x013B] = 8, "Ansel"
    raw = exif.tobytes()
    text = f"\nexif\n{len(raw):8d}\n" + "\n".join(raw.hex()[i : i + 72] for i in range(0, len(raw) * 2, 72)) + "\n"
    png = _ref_png(arr, 16, 2)
    at = 8 + 25  # after the signature and IHDR
    ztxt = b"Raw profile type exif\x00\x00" + zlib.compress(text.encode())
    (tmp_path / "raw16.png").write_bytes(png[:at] + _chunk(b"zTXt", ztxt) + png[at:])
    got = read_image(tmp_path / "raw16.png")
    assert got.bit_depth == 16 and got.size == (3, 5)  # turned upright, as Pillow turns the 8-bit file
    assert np.array_equal(_q(got.rgb, 65535), np.rot90(arr, k=1))
    back = Image.Exif()
    back.load(got.exif)
    assert back[0x0112] == 1 and back[0x013B] == "Ansel"


# Pillow's own table (ImageOps.exif_transpose): the oracle for how each EXIF orientation turns the pixels
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _turned(arr: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) uint16 samples as a viewer shows them, channel by channel through Pillow."""
    if orientation == 1:
        return arr
    planes = [np.asarray(Image.fromarray(arr[..., c]).transpose(_TRANSPOSE[orientation])) for c in range(arr.shape[2])]
    return np.stack(planes, axis=2)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("layout", ["raw", "deflate", "lzw", "tiles"])
def test_sixteen_bit_colour_tiff_is_turned_upright_and_stays_sixteen_bit(tmp_path, layout, orientation):
    """Orientation 5-8 failed as "truncated" (Pillow's size is already turned) or fell back to 8 bits,
    and LZW or tiled files came out unturned with red and blue swapped (Pillow turned the wide gray
    copy they are decoded through, then the orientation was applied again)."""
    h, w, spp = 10, 13, 3
    arr = RNG.integers(0, 65536, (h, w, spp)).astype(np.uint16)
    if layout == "raw":
        data = _tiff(w, h, spp, [arr.astype("<u2").tobytes()], orientation=orientation)
    elif layout == "deflate":
        data = _tiff(w, h, spp, [zlib.compress(arr.astype("<u2").tobytes())], compression=8, orientation=orientation)
    elif layout == "lzw":
        chunks, rows = _pillow_lzw(arr, tmp_path)
        data = _tiff(w, h, spp, chunks, compression=5, rows=rows, orientation=orientation)
    else:
        chunks = []
        for y in range(0, h, 16):
            for x in range(0, w, 16):
                t = np.zeros((16, 16, spp), dtype=np.uint16)
                t[: min(16, h - y), : min(16, w - x)] = arr[y : y + 16, x : x + 16]
                chunks.append(t.astype("<u2").tobytes())
        data = _tiff(w, h, spp, chunks, tile=16, orientation=orientation)
    (tmp_path / "o.tif").write_bytes(data)
    got = read_image(tmp_path / "o.tif")
    assert got.bit_depth == 16 and got.mode == "RGB;16"
    assert np.array_equal(_q(got.rgb, 65535), _turned(arr, orientation))


@pytest.mark.parametrize("compression", [1, 8])
def test_sixteen_bit_planar_tiff_is_read_whole(tmp_path, compression):
    """PlanarConfiguration 2 (one plane after the other): uncompressed, Pillow decoded garbage that
    was upscaled without a word; deflate came out cut to 8 bits."""
    h, w, spp, rows = 9, 11, 3, 4
    arr = RNG.integers(0, 65536, (h, w, spp)).astype(np.uint16)
    chunks = []
    for c in range(spp):
        for y in range(0, h, rows):
            raw = arr[y : y + rows, :, c].astype("<u2").tobytes()
            chunks.append(zlib.compress(raw) if compression == 8 else raw)
    (tmp_path / "p.tif").write_bytes(_tiff(w, h, spp, chunks, compression=compression, rows=rows, planar=2))
    got = read_image(tmp_path / "p.tif")
    assert got.bit_depth == 16 and np.array_equal(_q(got.rgb, 65535), arr)


@pytest.mark.parametrize("layout", ["lzw", "lzw_pred", "tiles_raw", "tiles_deflate_pred"])
@pytest.mark.parametrize("spp", [3, 4])
def test_sixteen_bit_planar_tiff_in_lzw_or_tiles_keeps_sixteen_bits(tmp_path, layout, spp):
    """Planar 16-bit TIFF in LZW strips or in tiles was read by Pillow cut to 8 bits, silently."""
    h, w = 18, 21
    arr = RNG.integers(0, 65536, (h, w, spp)).astype(np.uint16)
    pred = layout.endswith("_pred")
    chunks, rows = [], None
    for c in range(spp):
        plane = arr[..., c : c + 1]
        if layout.startswith("lzw"):
            strips, rows = _pillow_lzw(_hdiff(plane) if pred else plane, tmp_path)
            chunks += strips
            continue
        for y in range(0, h, 16):
            for x in range(0, w, 16):
                t = np.zeros((16, 16, 1), dtype=np.uint16)
                part = plane[y : y + 16, x : x + 16]
                t[: part.shape[0], : part.shape[1]] = part
                raw = (_hdiff(t) if pred else t).astype("<u2").tobytes()
                chunks.append(zlib.compress(raw) if pred else raw)
    compression = 5 if layout.startswith("lzw") else 8 if pred else 1
    tile = None if layout.startswith("lzw") else 16
    data = _tiff(w, h, spp, chunks, compression=compression, predictor=2 if pred else 1, rows=rows, tile=tile, planar=2)
    (tmp_path / "p.tif").write_bytes(data)
    got = read_image(tmp_path / "p.tif")
    assert got.bit_depth == 16 and got.size == (w, h)
    assert np.array_equal(_q(got.rgb, 65535), arr[..., :3])
    if spp == 4:
        assert np.array_equal(_q(got.alpha, 65535), arr[..., 3])


def test_sixteen_bit_min_is_white_tiff_is_not_a_negative(tmp_path):
    h, w = 5, 7
    arr = RNG.integers(0, 65536, (h, w)).astype(np.uint16)
    (tmp_path / "w.tif").write_bytes(_tiff(w, h, 1, [arr.astype("<u2").tobytes()], photometric=0))
    got = read_image(tmp_path / "w.tif")
    assert got.grayscale and got.bit_depth == 16
    assert np.array_equal(_q(got.rgb[..., 0], 65535), 65535 - arr)


def test_a_tiff_turned_a_quarter_by_pillow_swaps_its_dpi_too(tmp_path):
    """Pillow turns a TIFF's pixels itself as it loads them and drops the tag, so the density (here
    300 x 150) stayed unswapped, unlike the same picture as JPEG or PNG."""
    Image.new("RGB", (6, 4), (10, 20, 30)).save(tmp_path / "d.tif", dpi=(300, 150), tiffinfo={274: 6})
    got = read_image(tmp_path / "d.tif")
    assert got.size == (4, 6) and got.dpi == (150, 300)


@pytest.mark.parametrize("suffix, most", [(".jpg", 65500), (".gif", 65535), (".webp", 16383)])
def test_write_image_refuses_a_side_longer_than_the_format_holds(tmp_path, suffix, most):
    path = tmp_path / f"w{suffix}"
    write_image(path, np.zeros((1, most, 3), dtype=np.uint8))  # the longest side it takes is written
    with pytest.raises(SrganError, match=rf"too large for .* \(at most {most} px a side\); write PNG or TIFF"):
        write_image(tmp_path / f"x{suffix}", np.zeros((most + 1, 1, 3), dtype=np.uint8))
    assert not (tmp_path / f"x{suffix}").exists() and not list(tmp_path.glob(".*"))


def test_decoding_in_threads_leaves_the_warning_filters_as_they_were(tmp_path):
    """catch_warnings is not thread-safe: threads reading images at once left an "ignore all"
    filter in front of the process's filters for good (3 runs out of 3 with 6 threads). The
    library now leaves the filters alone."""
    import threading
    import warnings

    Image.fromarray(RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    before = list(warnings.filters)
    barrier = threading.Barrier(6)

    def work():
        barrier.wait()
        for _ in range(150):
            read_image(tmp_path / "a.png")

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert list(warnings.filters) == before


def _jpeg_with_corrupt_exif(path: Path) -> Path:
    """A JPEG whose EXIF holds an ImageDescription that points past the end of its data: Pillow
    warns ("Tag data larger than file") as it reads the EXIF, and skips the tag."""
    ifd = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2)
    ifd += struct.pack("<HHII", 0x0112, 3, 1, 1) + struct.pack("<HHII", 0x010E, 2, 100, 5000) + struct.pack("<I", 0)
    Image.fromarray(RNG.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(path, exif=b"Exif\x00\x00" + ifd)
    return path


def test_a_thread_decoding_leaves_the_other_threads_warnings_shown(tmp_path, monkeypatch):
    """While any thread decoded, srgan held an "ignore all" filter in front of the process's
    warning filters: a warning of the program embedding srgan, on another thread, was dropped then
    (and a catch_warnings of that thread could leave the filter there for good). The library no
    longer touches the warning filters."""
    import threading
    import warnings

    from PIL import PngImagePlugin

    small = write_image(tmp_path / "s.png", RNG.random((4, 4, 3)))
    inside, go = threading.Event(), threading.Event()
    held: list[threading.Thread] = []
    png_open = PngImagePlugin.PngImageFile._open

    def open_held(self):
        if threading.current_thread() in held:
            inside.set()
            assert go.wait(10)
        return png_open(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "_open", open_held)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        reader = threading.Thread(target=read_image, args=(small,))
        held.append(reader)
        reader.start()
        try:
            assert inside.wait(10)
            warnings.warn("the host's own warning", UserWarning, stacklevel=1)
            assert list(warnings.filters) == before
        finally:
            go.set()
            reader.join(10)
    assert [str(w.message) for w in caught] == ["the host's own warning"]


def test_pillows_warnings_about_a_file_go_to_the_callers_filters(tmp_path):
    # what any Pillow user sees of a corrupt EXIF; the srgan program ignores Pillow's warnings itself
    import warnings

    path = _jpeg_with_corrupt_exif(tmp_path / "e.jpg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert read_image(path).size == (16, 16)
    assert any(w.filename.split(os.sep)[-2:-1] == ["PIL"] for w in caught), [str(w.message) for w in caught]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert read_image(path).size == (16, 16)
        assert images.read_rgb8(path).shape == (16, 16, 3)


def _gray_icc() -> bytes:
    gray = bytearray(_srgb_icc())
    gray[16:20] = b"GRAY"  # the header is all the writer looks at
    return bytes(gray)


def test_sixteen_bit_gray_with_alpha_tiff_leaves_its_gray_profile_out_with_a_note(tmp_path):
    """16-bit gray+alpha TIFF is written as RGBA (Pillow cannot read 16-bit LA TIFF): it carried
    the gray profile, which colour-managed readers refuse on RGB pixels."""
    notes: list[str] = []
    out = write_image(
        tmp_path / "la.tif",
        RNG.random((4, 5, 3)),
        alpha=RNG.random((4, 5)),
        grayscale=True,
        bit_depth=16,
        icc_profile=_gray_icc(),
        on_note=notes.append,
    )
    with Image.open(out) as im:
        assert im.mode == "RGBA" and not im.info.get("icc_profile")
    assert len(notes) == 1 and "gray ICC colour profile is left out" in notes[0]


def test_gray_palette_with_an_rgb_profile_keeps_the_profile(tmp_path):
    icc = _srgb_icc()
    p = Image.new("P", (6, 4), 0)
    p.putpalette([128, 128, 128, 60, 60, 60] + [0] * 762)
    p.paste(1, (0, 0, 3, 4))
    p.save(tmp_path / "p.png", icc_profile=icc)
    got = read_image(tmp_path / "p.png")
    assert not got.grayscale and got.icc_profile == icc
    with Image.open(write_image(tmp_path / "o.png", got.rgb, icc_profile=got.icc_profile)) as im:
        assert im.info.get("icc_profile") == icc
    p.save(tmp_path / "plain.png")  # without a profile, a gray palette is still gray
    assert read_image(tmp_path / "plain.png").grayscale


@pytest.mark.parametrize("orientation", [1, 6])
def test_exif_resolution_turns_with_the_pixels(tmp_path, orientation):
    exif = Image.Exif()
    exif[0x0112], exif[0x011A], exif[0x011B], exif[0x0128] = orientation, 300.0, 150.0, 2
    Image.new("RGB", (6, 4), (90, 90, 90)).save(tmp_path / "o.jpg", exif=exif, dpi=(300, 150))
    got = read_image(tmp_path / "o.jpg")
    out = write_image(tmp_path / "out.jpg", got.rgb, exif=got.exif, dpi=got.dpi)
    with Image.open(out) as im:
        e = im.getexif()
        want = (150.0, 300.0) if orientation == 6 else (300.0, 150.0)
        assert (float(e[0x011A]), float(e[0x011B])) == want
        assert tuple(round(float(v)) for v in im.info["dpi"]) == want


@pytest.mark.parametrize("with_alpha", [False, True])
def test_gif_output_is_dithered_and_keeps_its_transparency_exact(tmp_path, with_alpha):
    """GIF output mapped each pixel to its nearest palette colour: a photo's smooth gradients came out
    in bands. Floyd-Steinberg dithering keeps the local mean colour; transparency stays on exactly
    where alpha is at least half."""
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float32)
    rgb = np.dstack([40 + xx * 1.4, 30 + yy * 1.8 + xx * 0.3, 220 - yy * 1.1 - xx * 0.6]) / 255
    alpha = None
    if with_alpha:
        alpha = np.ones((96, 128), np.float32)
        alpha[:20, :30] = 0.0
        alpha[60:, 100:] = 0.4
    path = write_image(tmp_path / "o.gif", rgb, alpha=alpha)
    with Image.open(path) as im:
        got = np.asarray(im.convert("RGBA")).astype(np.float32)
    plain = io.BytesIO()
    Image.fromarray(_q(rgb, 255).astype(np.uint8)).save(plain, format="GIF")  # nearest colour alone
    with Image.open(plain) as im:
        banded = np.asarray(im.convert("RGB")).astype(np.float32)

    shown = np.ones((24, 32), bool) if alpha is None else (alpha >= 0.5).reshape(24, 4, 32, 4).all(axis=(1, 3))

    def local_error(pixels: np.ndarray) -> float:  # the colour seen from afar: means over 4x4 blocks
        d = (pixels[..., :3] - rgb * 255).reshape(24, 4, 32, 4, 3).mean(axis=(1, 3))
        return float(np.sqrt((d[shown] ** 2).mean()))

    assert local_error(got) < 0.7 * local_error(banded)  # about 0.55; undithered about 1.05
    if with_alpha:
        np.testing.assert_array_equal(got[..., 3] == 255, alpha >= 0.5)
        assert set(np.unique(got[..., 3])) == {0, 255}


@pytest.mark.parametrize("with_alpha", [False, True])
def test_gif_output_of_no_more_colours_than_a_palette_holds_is_exact(tmp_path, with_alpha):
    # a gray scan stored as RGB (200 levels), and a drawing's colours: Pillow's palette lookup moved most
    # pixels of the scan by up to 3 levels, though every level was in the palette
    rng = np.random.default_rng(9)
    levels = rng.permutation(256)[:200]
    gray = levels[rng.integers(0, 200, (40, 50))]
    for rgb8 in (np.repeat(gray[..., None], 3, axis=2), rng.integers(0, 256, (40, 3))[rng.integers(0, 40, (40, 50))]):
        alpha = None
        if with_alpha:
            alpha = np.ones((40, 50), np.float32)
            alpha[:10, :10] = 0.0
        path = write_image(tmp_path / "o.gif", rgb8 / 255, alpha=alpha, overwrite=True)
        with Image.open(path) as im:
            got = np.asarray(im.convert("RGBA"))
        shown = np.ones((40, 50), bool) if alpha is None else alpha > 0
        np.testing.assert_array_equal(got[..., :3][shown], rgb8[shown])
        np.testing.assert_array_equal(got[..., 3] == 255, shown)


def test_gif_output_of_a_photo_stays_close_to_it_seen_as_the_eye_averages_dithering(tmp_path):
    # a median cut palette mapped through Pillow's coarse lookup left skin speckled: 41.4 dB blurred PSNR
    # here (42.8 on an upscaled face); an octree palette gives 46.1
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:128] / 127.0
    rgb = np.stack([0.8 * x + 0.1, 0.5 + 0.3 * np.sin(6 * y), 0.9 - 0.6 * x * y], -1)
    rgb8 = np.round(np.clip(rgb + rng.normal(0, 0.02, rgb.shape), 0, 1) * 255).astype(np.uint8)
    with Image.open(write_image(tmp_path / "o.gif", rgb8 / 255)) as im:
        got = np.asarray(im.convert("RGB"))

    def blurred(a: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(1.5))).astype(np.float64)

    assert 10 * np.log10(255**2 / ((blurred(got) - blurred(rgb8)) ** 2).mean()) > 44.5


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".bmp", ".gif", ".png", ".tif"])
def test_sixteen_bits_cut_to_eight_say_so(tmp_path, suffix):
    """16-bit pixels written to a format of 8 bits lost half their bits without a word (alpha, ICC
    and EXIF losses each had a note)."""
    notes: list[str] = []
    write_image(tmp_path / f"o{suffix}", RNG.random((4, 4, 3)), bit_depth=16, on_note=notes.append)
    cut = [n for n in notes if "16 bits" in n]
    if suffix in (".png", ".tif"):
        assert cut == []
    else:
        fmt = images.format_for_path(f"o{suffix}")
        want = f"{tmp_path / f'o{suffix}'}: the 16 bits a channel are cut to 8: {fmt} output holds no more"
        assert cut == [want + " (PNG and TIFF keep 16)"]
    notes.clear()
    write_image(tmp_path / f"e{suffix}", RNG.random((4, 4, 3)), bit_depth=8, on_note=notes.append)
    assert not [n for n in notes if "16 bits" in n]


@pytest.mark.parametrize(
    "suffix,bit_depth", [(".png", 8), (".png", 16), (".jpg", 8), (".webp", 8), (".tif", 8), (".tif", 16)]
)
def test_the_exif_software_tag_names_the_writer_in_every_format(tmp_path, suffix, bit_depth):
    """PNG kept the input's EXIF Software ("Adobe Photoshop 25.0") where JPEG, WebP and TIFF wrote srgan's;
    an input without EXIF still gains no EXIF in PNG."""
    exif = Image.Exif()
    exif[0x0131], exif[0x8298] = "Adobe Photoshop 25.0", "(c) Someone"
    text = {"Software": "srgan 1.0", "srgan:model": "m"}
    out = write_image(
        tmp_path / f"o{suffix}", RNG.random((4, 4, 3)), bit_depth=bit_depth, exif=exif.tobytes(), text=text
    )
    with Image.open(out) as im:
        got = im.getexif()
        assert got.get(0x0131) == "srgan 1.0" and got.get(0x8298) == "(c) Someone"
    if suffix == ".png":
        with Image.open(
            write_image(tmp_path / "plain.png", RNG.random((4, 4, 3)), bit_depth=bit_depth, text=text)
        ) as im:
            assert "exif" not in im.info and len(im.getexif()) == 0


@pytest.mark.parametrize("suffix", [".bmp", ".gif"])
def test_exif_left_out_of_bmp_and_gif_with_a_note(tmp_path, suffix):
    exif = Image.Exif()
    exif[0x8298] = "(c) Someone"
    notes: list[str] = []
    write_image(tmp_path / f"o{suffix}", RNG.random((4, 4, 3)), exif=exif.tobytes(), on_note=notes.append)
    assert any("EXIF metadata is left out" in n for n in notes)


def test_a_gifs_xmp_is_read_and_gif_output_carries_xmp(tmp_path):
    # Photoshop and exiftool keep a GIF's rights and creator in an "XMP DataXMP" block, which Pillow leaves unread:
    # a GIF's XMP was lost in silence, and GIF output dropped every input's XMP
    xmp = (
        b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
        b'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:rights>(c) Jane Doe</dc:rights></rdf:Description>'
        b'</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    )
    plain = io.BytesIO()
    Image.new("P", (8, 6), 3).save(plain, format="GIF")
    (tmp_path / "in.gif").write_bytes(images._gif_with_xmp(plain.getvalue(), xmp))
    with Image.open(tmp_path / "in.gif") as im:
        assert im.size == (8, 6) and im.info["extension"][0] == b"XMP DataXMP"  # a GIF Pillow reads
    got = read_image(tmp_path / "in.gif")
    assert got.xmp is not None and b"<dc:rights>(c) Jane Doe</dc:rights>" in got.xmp
    for suffix in (".png", ".gif"):
        notes: list[str] = []
        out = write_image(tmp_path / f"out{suffix}", got.rgb, xmp=got.xmp, on_note=notes.append)
        assert not [n for n in notes if "XMP" in n]
        back = read_image(out)
        assert back.xmp is not None and b"<dc:rights>(c) Jane Doe</dc:rights>" in back.xmp
        assert np.array_equal(back.rgb, got.rgb)
    if shutil.which("exiftool"):
        shown = subprocess.run(["exiftool", "-XMP-dc:Rights", str(tmp_path / "out.gif")], capture_output=True)
        assert b"(c) Jane Doe" in shown.stdout
    notes = []
    write_image(tmp_path / "u16.gif", got.rgb, xmp=xmp.decode().encode("utf-16"), on_note=notes.append)
    assert notes == [
        f"{tmp_path / 'u16.gif'}: the XMP metadata is left out: GIF holds XMP only as UTF-8, not this UTF-16"
    ]


def _ifd(e: str, entries: list[tuple[int, int, int, bytes]]) -> bytes:
    """A TIFF directory of (tag, type, count, 4-byte field) entries, with no next directory."""
    rows = b"".join(struct.pack(e + "HHI", tag, typ, count) + field for tag, typ, count, field in entries)
    return struct.pack(e + "H", len(entries)) + rows + b"\0\0\0\0"


def test_a_photo_whose_exif_cannot_be_written_back_is_still_turned_upright(tmp_path):
    # a GPSAltitude stored as a signed rational: Pillow's writer raised, and the orientation went with the EXIF,
    # so the photo came out sideways with no word
    e = "<"
    ifd0 = _ifd(e, [(0x0112, 3, 1, struct.pack(e + "HH", 6, 0)), (0x8825, 4, 1, struct.pack(e + "I", 38))])
    gps = _ifd(e, [(0x0006, 10, 1, struct.pack(e + "I", 56))]) + struct.pack(e + "ii", -5, 1)
    exif = b"Exif\0\0II*\0" + struct.pack(e + "I", 8) + ifd0 + gps
    im = Image.new("RGB", (48, 32), "white")
    im.paste((255, 0, 0), (0, 0, 8, 8))
    im.save(tmp_path / "gps.jpg", exif=exif, quality=95)
    got = read_image(tmp_path / "gps.jpg")
    assert got.size == (32, 48)  # turned a quarter, as every viewer shows it
    assert got.exif is not None and Image.Exif().load(got.exif) is None
    assert got.notes == [
        f"{tmp_path / 'gps.jpg'}: the EXIF's GPS position is left out: a tag there has a value of a type EXIF "
        "does not give it, which cannot be written back"
    ]
    with Image.open(write_image(tmp_path / "o.jpg", got.rgb, exif=got.exif)) as out:
        assert out.getexif()[0x0112] == 1 and 0x8825 not in out.getexif()


def test_an_exif_that_reads_but_cannot_be_written_back_loses_that_part_with_a_note(tmp_path):
    # a big-endian interoperability IFD holding tag 273 as text: read as it is, but Pillow's writer raised a
    # TypeError in write_image, after the whole upscale, for PNG, JPEG and WebP
    e = ">"
    sub_at = 8 + 2 + 12 + 4
    interop_at = sub_at + 2 + 12 * 2 + 4
    exif = (
        b"Exif\0\0MM\0*"
        + struct.pack(e + "I", 8)
        + _ifd(e, [(0x8769, 4, 1, struct.pack(e + "I", sub_at))])
        + _ifd(e, [(0x9000, 7, 4, b"0231"), (0xA005, 4, 1, struct.pack(e + "I", interop_at))])
        + _ifd(e, [(273, 2, 4, b"R98\0")])
    )
    Image.new("RGB", (16, 12), "gray").save(tmp_path / "i.jpg", exif=exif)
    got = read_image(tmp_path / "i.jpg")
    for suffix in (".png", ".jpg", ".webp"):
        notes: list[str] = []
        out = write_image(tmp_path / f"o{suffix}", got.rgb, exif=got.exif, on_note=notes.append)
        assert notes == [
            f"{out}: the EXIF's interoperability tags is left out: a tag there has a value of a type EXIF does not "
            "give it, which cannot be written back"
        ]
        with Image.open(out) as im:
            assert im.getexif().get_ifd(0x8769)[0x9000] == b"0231"  # the rest of the camera settings stay


@pytest.mark.parametrize("value,typ", [(5, 3), ("abc", 2)])
def test_an_icc_tag_of_another_type_is_no_profile(tmp_path, value, typ):
    # a TIFF's tag 34675 as a SHORT or text: Pillow gave an int or a str as the profile, and the write failed
    # ("object of type 'int' has no len()") after the whole upscale
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[34675], tags.tagtype[34675] = value, typ
    Image.new("RGB", (8, 6), "red").save(tmp_path / "icc.tif", tiffinfo=tags)
    with Image.open(tmp_path / "icc.tif") as im:
        assert im.info["icc_profile"] == value
    got = read_image(tmp_path / "icc.tif")
    assert got.icc_profile is None
    for suffix in (".jpg", ".png"):
        write_image(tmp_path / f"o{suffix}", got.rgb, icc_profile=got.icc_profile, exif=got.exif)


def test_a_gifs_xmp_is_found_behind_another_application_extension(tmp_path):
    # Pillow names only the last application extension before the image: an ICC profile or loop count after
    # the XMP hid it, and the XMP was lost in silence
    xmp = (
        b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">t</x:xmpmeta>'
        b'<?xpacket end="w"?>'
    )
    plain = io.BytesIO()
    Image.new("P", (8, 6), 3).save(plain, format="GIF")
    with_xmp = images._gif_with_xmp(plain.getvalue(), xmp)
    at = with_xmp.index(b"\x21\xff\x0bXMP DataXMP")
    icc = b"\x21\xff\x0bICCRGBG1012" + b"\x04abcd\x00"
    gif = with_xmp[:at] + with_xmp[at:].replace(b"\x00\x2c", b"\x00" + icc + b"\x2c", 1)
    (tmp_path / "g.gif").write_bytes(gif)
    with Image.open(tmp_path / "g.gif") as im:
        assert im.info["extension"][0] == b"ICCRGBG1012"
    assert read_image(tmp_path / "g.gif").xmp == xmp


def test_gif_records_the_text_in_its_comment_and_bmp_says_it_cannot(tmp_path):
    """GIF and BMP output recorded no model: GIF's comment now holds the text after the input's
    comment, read back as the comment alone; BMP, which has no place for it, says so."""
    text = {"srgan:model": "tiny\nnet", "Software": "srgan 1.0", "srgan:scale": "4"}
    notes: list[str] = []
    out = write_image(tmp_path / "o.gif", RNG.random((4, 4, 3)), text=text, comments={"Comment": "a\nb"})
    with Image.open(out) as im:
        assert im.info["comment"] == b"a\nb\nSoftware: srgan 1.0\nsrgan:model: tiny net\nsrgan:scale: 4"
    assert read_image(out).comments == {"Comment": "a\nb"}  # the mark is written anew, not carried
    assert images.split_gif_mark(b"a\nSoftware: srgan 1.0\nsrgan:scale: 4")[1]["srgan:scale"] == "4"
    assert images.split_gif_mark("Software: srgan 1.0\nnot ours") == ("Software: srgan 1.0\nnot ours", {})
    write_image(tmp_path / "o.bmp", RNG.random((4, 4, 3)), text=text, on_note=notes.append)
    assert notes == [f"{tmp_path / 'o.bmp'}: the model and scale are not recorded: BMP output carries no metadata"]


@pytest.mark.parametrize(("bits", "fmt", "kind"), [(32, 3, "32-bit floating-point"), (16, 2, "16-bit signed integer")])
def test_a_tiff_pillow_cannot_read_says_what_its_samples_are(tmp_path, bits, fmt, kind):
    """Float or signed colour TIFF was "not an image file, or an unsupported format"."""
    raw = np.zeros((3, 4, 3), dtype="<f4" if fmt == 3 else "<i2").tobytes()
    (tmp_path / "f.tif").write_bytes(_tiff(4, 3, 3, [raw], bits=bits, sample_format=fmt))
    with pytest.raises(SrganError, match=f"a TIFF of 3 {kind} samples per pixel, which srgan cannot read"):
        read_image(tmp_path / "f.tif")
    big = np.zeros((300, 400, 3), dtype="<f4").tobytes()  # 1.4 MB: its directory (at the end) past the first MiB
    (tmp_path / "big.tif").write_bytes(_tiff(400, 300, 3, [big], bits=32, sample_format=3))
    with pytest.raises(SrganError, match="a TIFF of 3 32-bit floating-point samples per pixel"):
        read_image(tmp_path / "big.tif")
    (tmp_path / "d.tif").write_bytes(b"II*\x00" + struct.pack("<I", 1 << 30))  # its directory is past the end
    with pytest.raises(SrganError, match="damaged TIFF"):
        read_image(tmp_path / "d.tif")


def test_a_sixteen_bit_gray_tiff_with_alpha_is_refused_for_what_it_is(tmp_path):
    # Refused as "a TIFF of 2 16-bit unsigned integer samples per pixel ... save it as 8- or 16-bit integer
    # TIFF or PNG": 16-bit integer TIFF is what it was.
    raw = RNG.integers(0, 65536, (3, 4, 2)).astype("<u2").tobytes()
    (tmp_path / "la.tif").write_bytes(_tiff(4, 3, 2, [raw], photometric=1))
    with pytest.raises(SrganError) as info:
        read_image(tmp_path / "la.tif")
    assert str(info.value) == (
        f"{tmp_path / 'la.tif'}: a 16-bit gray TIFF with an alpha channel, which srgan cannot read; "
        "save it as PNG, or as 16-bit RGBA TIFF"
    )


def test_png_text_and_comments_are_carried(tmp_path):
    """A PNG's text chunks (a title, an author, a generator's parameters) and a JPEG's comment were
    dropped by every upscale; srgan's own keys from an earlier write are written anew, not kept."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "Sunset")
    info.add_text("Copyright", "(c) me", zip=True)
    info.add_itxt("Author", "Zoë")
    info.add_text("srgan:blend", "stale")
    info.add_text("date:modify", "2020-01-01")
    Image.new("RGB", (6, 4), (200, 60, 30)).save(tmp_path / "t.png", pnginfo=info)
    got = read_image(tmp_path / "t.png")
    assert got.comments == {"Title": "Sunset", "Copyright": "(c) me", "Author": "Zoë"}
    out = write_image(tmp_path / "o.png", got.rgb, comments=got.comments, text={"Title": "ours", "srgan:model": "m"})
    with Image.open(out) as im:
        assert im.text == {"Title": "ours", "Copyright": "(c) me", "Author": "Zoë", "srgan:model": "m"}
    sixteen = write_image(tmp_path / "s.png", got.rgb, bit_depth=16, comments={"Title": "Sixteen"})
    assert read_image(sixteen).comments == {"Title": "Sixteen"}  # read by srgan's own 16-bit PNG decoder
    notes: list[str] = []
    write_image(tmp_path / "o.webp", got.rgb, comments=got.comments, on_note=notes.append)
    left_out = "the text (Title) is left out: WEBP output has no place for it"  # the others go into EXIF
    assert notes == [f"{tmp_path / 'o.webp'}: {left_out}"]

    Image.new("RGB", (6, 4), (1, 2, 3)).save(tmp_path / "c.jpg", comment="shot by me")
    got = read_image(tmp_path / "c.jpg")
    assert got.comments == {"Comment": "shot by me"}
    for suffix in (".jpg", ".gif"):
        with Image.open(write_image(tmp_path / f"c{suffix}", got.rgb, comments=got.comments)) as im:
            assert im.info.get("comment") == b"shot by me"
    with Image.open(write_image(tmp_path / "c.png", got.rgb, comments=got.comments)) as im:
        assert im.text == {"Comment": "shot by me"}


@pytest.mark.parametrize("suffix", [".jpg", ".webp", ".tif", "16.tif", pytest.param(".avif", marks=needs_avif)])
def test_png_text_goes_into_the_exif_tags_of_the_same_meaning(tmp_path, suffix):
    """A PNG's Description, Author, Copyright (and Comment) were left out of JPEG, WebP, AVIF and TIFF
    output, "no place for it", though EXIF has ImageDescription, Artist, Copyright and UserComment. The
    EXIF's own text wins where it holds other text, with a note; what EXIF has no tag for keeps its note."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("Description", "Grand-mère at the harbour")
    info.add_itxt("Author", "Zoë")
    info.add_text("Copyright", "(c) County Archive")
    info.add_text("Comment", "scanned 2001")
    info.add_text("Title", "Harbour")
    Image.new("RGB", (6, 4), (200, 60, 30)).save(tmp_path / "t.png", pnginfo=info)
    got = read_image(tmp_path / "t.png")
    depth = 16 if suffix.startswith("16") else 8
    notes: list[str] = []
    text = {"Software": "srgan 9", "srgan:model": "m"}
    out = write_image(
        tmp_path / f"o{suffix}", got.rgb, comments=got.comments, text=text, bit_depth=depth, on_note=notes.append
    )
    with Image.open(out) as im:
        ex = im.getexif()
        comment = im.info.get("comment")
    assert ex[0x010E].encode("latin-1").decode("utf-8") == "Grand-mère at the harbour"
    assert ex[0x013B].encode("latin-1").decode("utf-8") == "Zoë" and ex[0x8298] == "(c) County Archive"
    assert ex[0x0131] == "srgan 9"
    fmt = {".jpg": "JPEG", ".webp": "WEBP", ".avif": "AVIF"}.get(suffix, "TIFF")
    if fmt == "JPEG":  # a JPEG's comment block
        assert comment == b"scanned 2001"
    elif fmt == "TIFF":  # UserComment is in the Exif IFD, which libtiff does not write
        assert notes == [f"{out}: the text (Comment, Title) is left out: TIFF output has no place for it"]
    else:
        assert ex.get_ifd(0x8769)[0x9286] == b"ASCII\x00\x00\x00scanned 2001"
    if fmt != "TIFF":
        assert notes == [f"{out}: the text (Title) is left out: {fmt} output has no place for it"]
    # the EXIF's own caption and artist are kept; the PNG's are left out, saying so
    exif = Image.Exif()
    exif[0x010E], exif[0x013B], exif[0x8298] = "Harbour, 1952", "Jane", "(c) County Archive"
    notes.clear()
    out = write_image(
        tmp_path / f"e{suffix}", got.rgb, exif=exif.tobytes(), comments={"Description": "other", "Author": "Zoë",
        "Copyright": "(c) County Archive"}, bit_depth=depth, on_note=notes.append,
    )  # fmt: skip
    with Image.open(out) as im:
        ex = im.getexif()
    assert ex[0x010E] == "Harbour, 1952" and ex[0x013B] == "Jane" and ex[0x8298] == "(c) County Archive"
    why = "the EXIF holds other text in Artist and ImageDescription"
    assert notes == [f"{out}: the text (Author, Description) is left out: {why}"]


def _as_longs(tiff: bytes, tag: int) -> bytes:
    """A little-endian TIFF with one UNDEFINED tag (of a length divisible by 4) retyped as LONGs, as Photoshop
    writes IPTC-NAA."""
    out = bytearray(tiff)
    (ifd,) = struct.unpack_from("<I", out, 4)
    (n,) = struct.unpack_from("<H", out, ifd)
    for i in range(n):
        pos = ifd + 2 + 12 * i
        found, typ, count = struct.unpack_from("<HHI", out, pos)
        if found == tag:
            assert typ == 7 and count % 4 == 0
            struct.pack_into("<HI", out, pos + 2, 4, count // 4)
            return bytes(out)
    raise AssertionError(f"no tag {tag}")


def test_iptc_is_carried_where_the_output_format_holds_it(tmp_path):
    """IPTC-IIM (captions, credits, keywords as news agencies and archives keep them: a JPEG's APP13, a
    TIFF's tag 33723) was dropped from every output without a word. JPEG keeps it in APP13, TIFF in tag
    33723, PNG in ImageMagick's "Raw profile type iptc" text; WebP, AVIF, BMP and GIF say it is left out."""
    iim = iptc_records((120, "Grand-mère at the harbour".encode()), (80, b"Jane Archivist"), (25, b"harbour"))
    Image.fromarray(RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(tmp_path / "i.jpg", extra=iptc_app13(iim))
    got = read_image(tmp_path / "i.jpg")
    assert got.iptc == iim
    for name, depth in (("o.jpg", 8), ("o.tif", 8), ("o16.tif", 16), ("o.png", 8), ("o16.png", 16)):
        notes: list[str] = []
        out = write_image(tmp_path / name, got.rgb, iptc=got.iptc, bit_depth=depth, on_note=notes.append)
        assert notes == [] and read_image(out).iptc == iim, name
        if not name.endswith(".png"):  # where Pillow reads it too
            with Image.open(out) as im:
                info = IptcImagePlugin.getiptcinfo(im)
            assert info[(2, 120)] == "Grand-mère at the harbour".encode() and info[(2, 80)] == b"Jane Archivist"
    with Image.open(tmp_path / "o.png") as im:
        assert "Raw profile type iptc" in im.info  # not carried as text too
    assert read_image(tmp_path / "o.png").comments is None
    for name in ["o.webp", "o.bmp", "o.gif"] + (["o.avif"] if _pil_features.check("avif") else []):
        notes = []
        out = write_image(tmp_path / name, got.rgb, iptc=got.iptc, on_note=notes.append)
        fmt = images.format_for_path(out)
        assert f"{out}: the IPTC metadata is left out: {fmt} output carries none" in notes
    # a TIFF's tag as Photoshop writes it, LONGs: the records alone are read, not the padding
    padded = iim + b"\x1c\x02\x19\x00\x01x"
    padded += b"\x00" * (-len(padded) % 4)
    Image.fromarray(RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)).save(tmp_path / "p.tif", tiffinfo={33723: padded})
    (tmp_path / "l.tif").write_bytes(_as_longs((tmp_path / "p.tif").read_bytes(), 33723))
    assert read_image(tmp_path / "l.tif").iptc == padded.rstrip(b"\x00")
    # more than one JPEG segment holds: it goes on in further APP13 segments, as exiftool writes it
    # (it was left out), and is read back whole from them (the first segment's part alone was kept)
    big = iptc_records((120, b"x" * 32000), (120, b"y" * 32000), (120, b"z" * 2000))
    notes = []
    out = write_image(tmp_path / "big.jpg", got.rgb, iptc=big, on_note=notes.append)
    assert notes == [] and read_image(out).iptc == big
    with Image.open(out) as im:
        assert [m for m, b in im.applist if b.startswith(b"Photoshop 3.0\x00")] == ["APP13", "APP13"]
    assert read_image(write_image(tmp_path / "big.tif", got.rgb, iptc=big)).iptc == big


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="needs exiftool")
def test_iptc_over_64_kb_as_exiftool_writes_it_is_kept_whole(tmp_path):
    # 1,600 keywords (80 KB): exiftool puts them in two APP13 segments; srgan kept the first 64 KB
    src = tmp_path / "k.jpg"
    Image.new("RGB", (16, 16), (200, 30, 30)).save(src)
    keywords = [f"kw{i:05d}_{'x' * 40}" for i in range(1600)]
    (tmp_path / "args").write_text("".join(f"-IPTC:Keywords={k}\n" for k in keywords))
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-@", str(tmp_path / "args"), str(src)], check=True)
    got = read_image(src)
    out = write_image(tmp_path / "o.jpg", got.rgb, iptc=got.iptc)
    listed = (
        subprocess.run(
            ["exiftool", "-s3", "-sep", "|", "-IPTC:Keywords", str(out)], capture_output=True, text=True, check=True
        )
        .stdout.strip()
        .split("|")
    )
    assert listed == keywords


def _resource(ident: int, data: bytes, name: bytes = b"") -> bytes:
    pascal = bytes([len(name)]) + name + b"\x00" * ((len(name) + 1) & 1)
    return b"8BIM" + struct.pack(">H", ident) + pascal + struct.pack(">I", len(data)) + data + b"\x00" * (len(data) & 1)


def test_photoshop_clipping_paths_are_kept_in_jpeg_and_tiff(tmp_path):
    # a product photo's clipping path (Photoshop resources 2000-2997, named as the clipping path by 2999)
    # was dropped in silence: its points are fractions of the picture's size, so they fit the upscale
    path = bytes(26) + struct.pack(">H", 6) + bytes(24) + bytes(range(7)) + bytes(19) * 3  # records, 26 bytes each
    paths = _resource(2000, path, b"Outline") + _resource(2999, b"\x07Outline" + struct.pack(">H", 0), b"")
    thumbnail = _resource(0x040C, b"stale thumbnail")  # describes the old file: not carried
    iim = iptc_records((120, b"Teapot"))
    body = b"Photoshop 3.0\x00" + _resource(0x0404, iim) + thumbnail + paths
    Image.new("RGB", (8, 6), (9, 99, 199)).save(
        tmp_path / "in.jpg", extra=b"\xff\xed" + struct.pack(">H", len(body) + 2) + body
    )
    got = read_image(tmp_path / "in.jpg")
    assert got.photoshop == paths and got.iptc == iim
    for name, depth in (("o.jpg", 8), ("o.tif", 8), ("o16.tif", 16)):
        notes: list[str] = []
        out = write_image(
            tmp_path / name, got.rgb, iptc=iim, photoshop=got.photoshop, bit_depth=depth, on_note=notes.append
        )
        back = read_image(out)
        assert notes == [] and back.photoshop == paths and back.iptc == iim, name
        if shutil.which("exiftool"):
            shown = subprocess.run(
                ["exiftool", "-s", "-Photoshop:all", str(out)], capture_output=True, text=True
            ).stdout
            assert "ClippingPathName" in shown and "Outline" in shown, shown
    for name in ("o.png", "o.webp"):
        notes = []
        out = write_image(tmp_path / name, got.rgb, photoshop=got.photoshop, on_note=notes.append)
        fmt = images.format_for_path(out)
        assert notes == [f"{out}: the Photoshop clipping path is left out: {fmt} output has no place for it"]


def test_a_comment_that_is_not_utf8_keeps_its_bytes(tmp_path):
    """A latin-1 JPEG comment was read as latin-1 and written back as UTF-8: other bytes."""
    raw = b"caf\xe9 \xa9 Jos\xe9"
    Image.new("RGB", (6, 4), (1, 2, 3)).save(tmp_path / "l1.jpg", comment=raw)
    got = read_image(tmp_path / "l1.jpg")
    for suffix in (".jpg", ".gif"):
        with Image.open(write_image(tmp_path / f"o{suffix}", got.rgb, comments=got.comments)) as im:
            assert im.info.get("comment") == raw
    with Image.open(write_image(tmp_path / "o.png", got.rgb, comments=got.comments)) as im:
        assert im.text == {"Comment": raw.decode("latin-1")}  # PNG text is latin-1: the same bytes


def test_upscaled_alpha_does_not_ring_past_its_neighbourhood():
    """Bicubic rang past a hard edge inside the range (a half-transparent layer beside an opaque one
    dipped to 0.445): a faint halo once composited. Each output pixel stays within its 3x3 input
    neighbourhood; flat areas and the sizes are unchanged."""
    edge = np.full((8, 8), 0.5, np.float32)
    edge[:, 4:] = 1.0
    up = upscale_alpha(edge, 4)
    assert up.min() == 0.5 and up.max() == 1.0
    assert np.all(up[:, :12] == 0.5) and np.all(up[:, -12:] == 1.0)  # away from the edge: as the input
    assert 0.5 < up[0, 15] < up[0, 16] < 1.0  # the edge itself still a smooth step


def test_resized_alpha_is_clamped_as_the_upscaled_alpha_is():
    """clamp_resized_alpha (after --outscale's Lanczos) is upscale_alpha's rule at any scale: at x4 it
    gives upscale_alpha's pixels; shrunk or enlarged by other factors, a hard edge gains no ring."""
    import torch
    import torch.nn.functional as F

    alpha = (RNG.random((13, 17)) > 0.5).astype(np.float32) * RNG.random((13, 17)).astype(np.float32)
    bicubic = F.interpolate(torch.from_numpy(alpha)[None, None], size=(52, 68), mode="bicubic", align_corners=False)
    clamped = images.clamp_resized_alpha(bicubic[0, 0].clamp(0, 1).numpy(), alpha)
    np.testing.assert_array_equal(clamped, upscale_alpha(alpha, 4))
    square = np.zeros((20, 20), np.float32)
    square[5:15, 5:15] = 1.0
    for side in (7, 10, 31, 50):
        ringing = resize_rgb(square, (side, side))
        centre = (np.arange(side) + 0.5) * 20 / side  # input coordinates of the output pixels' centres
        away = np.maximum(5 - centre, centre - 15)  # > 0 outside the square
        far_out = np.maximum.outer(away, away) >= 2
        far_in = np.maximum.outer(away, away) <= -2
        assert ringing[far_out].max() > 0 or ringing[far_in].min() < 1  # Lanczos rings
        got = images.clamp_resized_alpha(ringing.copy(), square)
        assert got[far_out].max() == 0 and got[far_in].min() == 1


def _ringing_source(h: int, w: int, channels: int) -> np.ndarray:
    """Random pixels with a band of white across them: Lanczos rings past 1 and below 0 there."""
    rng = np.random.default_rng(h * 1000 + w)
    src = rng.random((h, w, channels), dtype=np.float32)
    src[h // 3 : h // 2] = 1.0
    src[:, w // 4 : w // 3] = 0.0
    return src


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(
    "source,size",  # (width, height)
    [
        ((80, 96), (40, 48)),  # halved, as --outscale 2 halves a x4 output
        ((80, 96), (160, 192)),  # doubled: --outscale 8
        ((80, 96), (320, 384)),  # x4: --outscale 16
        ((40, 960), (5, 120)),  # an eighth (the bands of a strong shrink are tall: the support is 24 rows)
        ((48, 64), (48, 128)),  # columns unchanged, rows doubled
    ],
)
def test_resize_into_in_bands_is_the_whole_image_resize_bit_for_bit(monkeypatch, channels, source, size):
    """resize_into works a band of output rows at a time from only the source rows each needs (Pillow's
    resize with box=), many bands here: at power-of-two scales the pixels are those of resizing the
    whole image, bit for bit, in float and quantised to 8 and 16 bits."""
    monkeypatch.setattr(images, "_RESIZE_BAND_SAMPLES", 1 << 9)
    width, height = source
    src = _ringing_source(height, width, channels)
    reads = []

    def read(start, stop):
        reads.append((start, stop))
        return src[start:stop]

    want = resize_rgb(src, size)
    got = images.resize_into(read, source, np.empty((size[1], size[0], channels), np.float32))
    assert len(reads) > 3 and max(stop - start for start, stop in reads) < height / 2
    np.testing.assert_array_equal(got, want)
    for dtype, depth in ((np.uint8, 8), (np.uint16, 16)):
        quantised = images.resize_into(read, source, np.empty((size[1], size[0], channels), dtype))
        np.testing.assert_array_equal(quantised, images._quantise(want, depth))


@pytest.mark.parametrize("factor", [0.3, 0.7, 1.37, 3.3])
def test_resize_into_in_bands_at_any_scale_is_within_float_rounding(monkeypatch, factor):
    """At other scales a band's box starts between source rows: the weights differ by float rounding,
    so the pixels by a few float32 steps, and quantised pixels by at most one level, seldom."""
    src = _ringing_source(97, 61, 3)
    size = (round(61 * factor), round(97 * factor))
    want = resize_rgb(src, size)
    for samples in (1 << 23, 1 << 10, 1):
        monkeypatch.setattr(images, "_RESIZE_BAND_SAMPLES", samples)
        got = images.resize_into(lambda a, b: src[a:b], (61, 97), np.empty((size[1], size[0], 3), np.float32))
        assert np.abs(got - want).max() <= 2e-6
        q8 = images.resize_into(lambda a, b: src[a:b], (61, 97), np.empty((size[1], size[0], 3), np.uint8))
        diff = np.abs(q8.astype(int) - images._quantise(want, 8))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


@pytest.mark.parametrize("factor", [0.5, 1.6, 2.5])
def test_resize_into_keeps_a_resized_alpha_within_the_input(monkeypatch, factor):
    """With alpha=, each band is clamped to the input alpha around its pixels as clamp_resized_alpha
    clamps the whole resized alpha; the x4 alpha it reads comes from upscale_alpha_rows."""
    monkeypatch.setattr(images, "_RESIZE_BAND_SAMPLES", 1 << 9)
    alpha = np.zeros((20, 24), np.float32)
    alpha[5:15, 6:18] = 1.0
    alpha[8:11, 2:22] = 0.5
    x4 = upscale_alpha(alpha, 4)
    size = (round(24 * factor), round(20 * factor))
    want = images.clamp_resized_alpha(resize_rgb(x4, size), alpha)
    got = images.resize_into(
        lambda a, b: images.upscale_alpha_rows(alpha, 4, a, b)[..., None],
        (96, 80),
        np.empty((size[1], size[0], 1), np.uint8),
        alpha=alpha,
    )
    diff = np.abs(got[..., 0].astype(int) - images._quantise(want, 8))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-2
    assert got[want == 0].max() == 0 and got[want == 1].min() == 255  # no ring past the hard edges


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_upscale_alpha_rows_are_those_of_the_whole(scale):
    """Bit for bit at power-of-two scales; at x3 torch's bicubic rounds its source coordinate in float32,
    which differs between a band and the whole by float rounding."""
    alpha = np.clip(RNG.random((23, 17)).astype(np.float32) * 1.6 - 0.3, 0, 1)
    whole = upscale_alpha(alpha, scale)
    for start, stop in ((0, 5), (3, 40), (17, 18), (23 * scale - 9, 23 * scale), (0, 23 * scale)):
        rows = images.upscale_alpha_rows(alpha, scale, start, stop)
        np.testing.assert_allclose(rows, whole[start:stop], rtol=0, atol=0 if scale in (2, 4, 8) else 1e-5)


def test_clamp_resized_alpha_of_a_band_is_that_of_the_whole():
    alpha = (RNG.random((13, 17)) > 0.5).astype(np.float32)
    resized = resize_rgb(alpha, (40, 31))
    whole = images.clamp_resized_alpha(resized.copy(), alpha)
    for top, stop in ((0, 7), (7, 20), (20, 31)):
        band = images.clamp_resized_alpha(resized[top:stop].copy(), alpha, top=top, height=31)
        np.testing.assert_array_equal(band, whole[top:stop])


# ----------------------------------------------------------------- multi-picture JPEG (MPO)


@pytest.mark.parametrize(
    "mp_types,frames",
    [
        ([0x020002, 0x020002], 2),  # a stereo pair (3D cameras, the Nintendo 3DS): "disparity"
        ([0x020001, 0x020001, 0x020001], 3),  # a panorama
        ([0x020003, 0x020003, 0x020003, 0x020003], 4),  # multi-angle
        ([0x030000, 0x010002], 1),  # a phone's photo with a large (Full HD) preview: one picture
        ([0x030000, 0x010001, 0x010003], 1),  # VGA and 4K previews
        ([0x030000, 0x000000], 1),  # a gain map (Ultra HDR) or depth map: not a frame either
    ],
)
def test_a_stereo_pair_or_panorama_mpo_counts_its_pictures_and_a_preview_does_not(tmp_path, mp_types, frames):
    """An MPO was always read as one frame: a stereo pair lost its second picture without a word."""
    path = mpo_file(tmp_path / "m.jpg", mp_types)
    with Image.open(path) as im:
        assert im.format == "MPO"  # Pillow's own reading of the file
    got = read_image(path)
    assert got.n_frames == frames and got.format == "JPEG" and got.size == (12, 10)
    assert read_image(mpo_file(tmp_path / "be.jpg", mp_types, big_endian=True)).n_frames == frames
    with Image.open(path) as im:
        assert from_pil(im).n_frames == frames


def test_an_mpo_with_an_unreadable_index_is_one_picture(tmp_path):
    path = mpo_file(tmp_path / "m.jpg", [0x020002, 0x020002])
    with Image.open(path) as im:
        im.info["mp"] = b"not an index"  # Pillow's parse (im.mpinfo) is what is left: its type names
        assert from_pil(im).n_frames == 2
        im.mpinfo = {}  # nothing readable at all: the first picture is still good
        assert from_pil(im).n_frames == 1


def test_the_mpo_suffix_is_read_and_never_written(tmp_path):
    """A 3D camera's .mpo was "not an image file" while the same bytes named .jpg were read."""
    assert ".mpo" in IMAGE_SUFFIXES and is_image_path("DSCF0001.MPO") and format_for_path("x.mpo") == "MPO"
    path = mpo_file(tmp_path / "DSCF0001.MPO", [0x020002, 0x020002])
    assert list_images(tmp_path) == [path]
    assert read_image(path).n_frames == 2
    with pytest.raises(SrganError, match=r"cannot write MPO .*name it \.jpg"):
        output_suffix_for("MPO")
    with pytest.raises(SrganError, match=r"cannot write MPO .*name it \.jpg"):
        write_image(tmp_path / "o.mpo", RNG.random((4, 4, 3)))
    assert _leftovers(tmp_path) == ["DSCF0001.MPO"]
    with Image.open(write_image(tmp_path / "o.jpg", RNG.random((4, 4, 3)), format="MPO")) as im:
        assert im.format == "JPEG"  # the format by name: a plain JPEG, as always


# ----------------------------------------------------------------- tifffile's JSON description


@pytest.mark.parametrize("suffix,bit_depth", [(".tif", 8), (".tif", 16), (".png", 8), (".jpg", 8), (".webp", 8)])
def test_a_tifffile_shape_description_is_no_caption(tmp_path, suffix, bit_depth):
    """tifffile writes {"shape": [h, w, 3]} as a TIFF's ImageDescription: copied into the x4 output,
    tifffile warned that the shape did not match the page. It is layout, not a caption: it goes."""
    src = tmp_path / "t.tif"
    Image.fromarray(RNG.integers(0, 256, (8, 6, 3), dtype=np.uint8)).save(
        src, tiffinfo={270: '{"shape": [8, 6, 3]}', 305: "tifffile.py"}
    )
    got = read_image(src)
    out = write_image(
        tmp_path / f"o{suffix}",
        np.repeat(np.repeat(got.rgb, 4, axis=0), 4, axis=1),
        bit_depth=bit_depth,
        exif=got.exif,
        text={"Software": "srgan", "srgan:model": "m"},
    )
    with Image.open(out) as im:
        description = im.getexif().get(270)
    assert description is None  # nor srgan's record, which is no caption either


@pytest.mark.parametrize("suffix,bit_depth", [(".tif", 8), (".tif", 16), (".png", 8), (".jpg", 8)])
def test_a_tifffile_description_with_more_than_the_shape_keeps_it_with_the_new_shape(tmp_path, suffix, bit_depth):
    src = tmp_path / "t.tif"
    gray = RNG.integers(0, 256, (8, 6), dtype=np.uint8)
    Image.fromarray(gray).save(src, tiffinfo={270: '{"shape": [8, 6], "axes": "YX", "author": "me"}'})
    got = read_image(src)
    assert got.grayscale
    out = write_image(
        tmp_path / f"o{suffix}",
        np.repeat(np.repeat(got.rgb, 4, axis=0), 4, axis=1),
        bit_depth=bit_depth,
        grayscale=True,
        exif=got.exif,
        text={"srgan:model": "m"},
    )
    with Image.open(out) as im:
        assert im.getexif().get(270) == '{"shape": [32, 24], "author": "me"}'
    # where the output's layout is not known (the API's PIL images), the user's keys stay, the shape goes
    ex = Image.Exif()
    ex.load(images._prepare_exif(got.exif, {}, 24, 32))
    assert ex.get(270) == '{"author": "me"}'


def test_tifffile_reads_the_upscaled_tiff_without_a_shape_warning(tmp_path, caplog):
    tifffile = pytest.importorskip("tifffile")
    for name, pixels, extra in (
        ("rgb", np.zeros((8, 6, 3), np.uint8), {"photometric": "rgb"}),
        ("gray16", np.zeros((8, 6), np.uint16), {}),
        ("meta", np.zeros((8, 6, 3), np.uint8), {"photometric": "rgb", "metadata": {"axes": "YXS", "who": "me"}}),
    ):
        tifffile.imwrite(tmp_path / f"{name}.tif", pixels, **extra)
        got = read_image(tmp_path / f"{name}.tif")
        up = np.repeat(np.repeat(got.rgb, 4, axis=0), 4, axis=1)
        out = write_image(
            tmp_path / f"{name}_x4.tif", up, bit_depth=got.bit_depth, grayscale=got.grayscale, exif=got.exif
        )
        caplog.clear()
        with tifffile.TiffFile(out) as tif:
            assert tif.series[0].shape == (32, 24) + pixels.shape[2:]
        assert not [r for r in caplog.records if "shape" in r.getMessage()], caplog.text


def test_an_imagej_stack_description_loses_its_layout_lines(tmp_path):
    """ImageJ's description (tifffile's imagej=True too) said images=3 slices=3 hyperstack=true of
    an output that holds one page: tifffile failed to read the upscaled file (IndexError)."""
    description = "ImageJ=1.11a\nimages=3\nslices=3\nhyperstack=true\nmode=grayscale\nunit=um\nspacing=0.5\n"
    frames = [Image.fromarray(np.full((6, 8), v, np.uint8)) for v in (10, 20, 30)]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:], tiffinfo={270: description})
    got = read_image(tmp_path / "stack.tif")
    out = write_image(tmp_path / "up.tif", np.repeat(np.repeat(got.rgb, 4, 0), 4, 1), grayscale=True, exif=got.exif)
    with Image.open(out) as im:
        kept = im.tag_v2.get(270)
    assert kept == "ImageJ=1.11a\nunit=um\nspacing=0.5\n", kept


# ----------------------------------------------------------------- a gray image under an RGB profile


@pytest.mark.parametrize("mode", ["L", "LA", "I;16"])
def test_gray_pixels_under_an_rgb_profile_stay_gray_and_a_note_names_the_profile_left_out(tmp_path, mode):
    """Pillow's convert("L") keeps the colour image's RGB profile: the gray PNG was written as gray
    with the profile dropped without a word. A PNG forbids an RGB profile on gray pixels (libpng
    ignores it), so gray stays gray (a gray palette, whose colours are RGB, keeps it as RGB) and
    a note names the profile left out."""
    icc = _srgb_icc()
    gray = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
    if mode == "L":
        im = Image.fromarray(gray)
    elif mode == "LA":
        im = Image.fromarray(np.dstack([gray, np.full_like(gray, 200)]), "LA")
    else:
        im = Image.fromarray(gray.astype(np.uint16) * 257)
    im.save(tmp_path / "g.png", icc_profile=icc)
    with Image.open(tmp_path / "g.png") as check:
        assert check.info.get("icc_profile") == icc  # Pillow keeps it in the file
    got = read_image(tmp_path / "g.png")
    assert got.grayscale and got.icc_profile == icc
    desc = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).strip()
    for suffix in (".png", ".jpg", ".tif"):
        notes: list[str] = []
        out = write_image(
            tmp_path / f"o{suffix}",
            got.rgb,
            alpha=got.alpha,
            bit_depth=got.bit_depth,
            grayscale=got.grayscale,
            icc_profile=got.icc_profile,
            on_note=notes.append,
        )
        with Image.open(out) as back:
            assert back.mode in ("L", "LA", "I;16") and not back.info.get("icc_profile")
        left_out = f'{out}: the RGB ICC colour profile "{desc}" is left out: it does not fit the gray pixels'
        assert left_out in notes


def test_a_profile_that_does_not_fit_the_pixels_is_left_out_with_a_note(tmp_path):
    notes: list[str] = []
    out = write_image(tmp_path / "c.png", RNG.random((4, 4, 3)), icc_profile=_gray_icc(), on_note=notes.append)
    with Image.open(out) as im:
        assert im.mode == "RGB" and not im.info.get("icc_profile")
    assert len(notes) == 1 and notes[0].startswith(f"{out}: the GRAY ICC colour profile")
    assert notes[0].endswith("is left out: it does not fit the colour pixels") and "\n" not in notes[0]
    notes.clear()
    out = write_image(
        tmp_path / "g.png", RNG.random((4, 4, 3)), icc_profile=_srgb_icc(), grayscale=True, on_note=notes.append
    )
    with Image.open(out) as im:
        assert im.mode == "L" and not im.info.get("icc_profile")
    assert len(notes) == 1 and notes[0].startswith(f"{out}: the RGB ICC colour profile")
    assert notes[0].endswith("is left out: it does not fit the gray pixels")


def test_a_file_system_without_inode_numbers_still_has_its_sub_folders_listed(tmp_path, monkeypatch):
    """Where st_ino is 0 (some Windows shares, WinFsp, sshfs), every sub-folder looked visited
    already: `upscale -r` and the training scan saw the top folder alone."""
    import os as os_module
    from pathlib import Path as PathType

    from srgan_cli.images import folder_entries

    for name in ("a", "b/c", "b/d/e"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / f"{name}.png")
    real_stat = PathType.stat

    def no_inodes(self, *args, **kwargs):
        st = real_stat(self, *args, **kwargs)
        values = list(st)
        values[1] = 0  # st_ino
        return os_module.stat_result(values)

    monkeypatch.setattr(PathType, "stat", no_inodes)
    names = sorted(p.relative_to(tmp_path).as_posix() for p, _ in folder_entries(tmp_path, recursive=True))
    assert names == ["a.png", "b/c.png", "b/d/e.png"]


def test_a_path_windows_finds_too_long_is_named_so_not_a_missing_folder(tmp_path, monkeypatch):
    """Windows without long paths says "not found" for a path of 260 characters or more: the
    message said the folder did not exist, though it was there."""
    import contextlib
    import re
    import sys

    from srgan_cli import images

    @contextlib.contextmanager
    def not_found(path, overwrite=False, **kwargs):
        raise FileNotFoundError(3, "The system cannot find the path specified")
        yield path

    monkeypatch.setattr(images, "atomic_path", not_found)
    long = tmp_path / f"{'x' * (250 - len(str(tmp_path)))}.png"
    with monkeypatch.context() as windows:
        windows.setattr(sys, "platform", "win32")
        with pytest.raises(SrganError, match="the path is too long for this system"):
            write_image(long, RNG.random((4, 4, 3)))
    with pytest.raises(SrganError, match="the folder .* does not exist"):
        write_image(tmp_path / "gone" / "a.png", RNG.random((4, 4, 3)))
    # elsewhere a name Linux's FUSE exFAT refuses: it was "too long for this system (32 characters...)"
    for name, why in (("a:b.png", "refuses a name holding ':' (FAT and exFAT refuse"), ("ab.png", "refuses the name")):
        with pytest.raises(SrganError, match=re.escape(why)) as info:
            write_image(tmp_path / name, RNG.random((4, 4, 3)))
        assert "too long" not in str(info.value)
    with pytest.raises(SrganError, match="refuses the name"):
        write_image(long, RNG.random((4, 4, 3)))


def test_a_tiff_load_is_not_refused_when_another_thread_had_pillows_limit_lifted(tmp_path, monkeypatch):
    """_strict_load read Pillow's limit outside the lock: while another thread had it lifted (None),
    it skipped making the image's memory with the limit off, and the load, after that thread put the
    limit back, refused the TIFF as a decompression bomb whatever --max-pixels said."""
    pixels = RNG.integers(0, 256, (30, 40), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "g.tif", compression="tiff_deflate")  # (a plain one is mapped)
    im = Image.open(tmp_path / "g.tif")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # as another thread's _pillow_unlimited leaves it
    load = im.load

    def load_after_the_other_thread_restored_it():
        Image.MAX_IMAGE_PIXELS = 500  # refused past twice this: 1,200 pixels are
        return load()

    monkeypatch.setattr(im, "load", load_after_the_other_thread_restored_it)
    images._strict_load(im)
    assert np.array_equal(np.asarray(im), pixels)


@needs_jpeg2000
def test_jpeg2000_gray_keeps_its_bits_and_deep_colour_is_refused(tmp_path):
    """JPEG 2000 was refused for its suffix. 16-bit gray (Pillow's I;16) keeps its 16 bits, and 12-bit
    gray, which Pillow shifts up (white is 65520), reaches white; colour of more than 8 bits a sample
    is refused in one line, as Pillow decodes it to 8 bits with its brightest values black."""
    gray16 = np.tile(np.linspace(0, 65535, 40).astype(np.uint16), (30, 1))
    Image.fromarray(gray16).save(tmp_path / "g16.jp2")
    loaded = read_image(tmp_path / "g16.jp2")
    assert loaded.format == "JPEG2000" and loaded.bit_depth == 16 and loaded.grayscale
    assert np.array_equal(np.rint(loaded.rgb[..., 0] * 65535).astype(np.uint16), gray16)
    rgba = np.random.default_rng(5).integers(0, 256, (30, 40, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "c.j2k")
    loaded = read_image(tmp_path / "c.j2k")
    assert loaded.alpha is not None and np.array_equal(np.rint(loaded.alpha * 255).astype(np.uint8), rgba[..., 3])
    imagecodecs = pytest.importorskip("imagecodecs")
    gray12 = np.tile(np.linspace(0, 4095, 40).astype(np.uint16), (30, 1))
    (tmp_path / "g12.jp2").write_bytes(imagecodecs.jpeg2k_encode(gray12, level=0, bitspersample=12))
    loaded = read_image(tmp_path / "g12.jp2")
    assert loaded.bit_depth == 16 and np.array_equal(np.rint(loaded.rgb[..., 0] * 4095).astype(np.uint16), gray12)
    white = np.full((30, 40, 3), 65535, dtype=np.uint16)
    for name, codec in (("c16.jp2", "jp2"), ("c16.j2k", "j2k")):
        (tmp_path / name).write_bytes(imagecodecs.jpeg2k_encode(white, level=0, codecformat=codec))
        with pytest.raises(SrganError, match=rf"{name}: a JPEG 2000 of 16 bits a sample \(colour\), which") as info:
            read_image(tmp_path / name)
        assert "\n" not in str(info.value)


# An 8x4 bilevel (1 bit a sample) JPEG 2000 codestream, as archive scans are: rows 0101 1010 twice, then
# 1111 0000 twice (made with imagecodecs.jpeg2k_encode(..., level=0, bitspersample=1, codecformat="j2k"))
_BILEVEL_J2K = bytes.fromhex(
    "ff4fff510029000000000008000000040000000000000000000000080000000400000000000000000001000101ff52000c000000"
    "01000004040001ff5c00044008ff640025000143726561746564206279204f70656e4a5045472076657273696f6e20322e352e"
    "34ff90000a0000000000160001ff93d30010f5bf2b4396ffd9"
)


@needs_jpeg2000
def test_jpeg2000_of_fewer_than_8_bits_a_sample_reaches_white(tmp_path):
    """Pillow shifts a JPEG 2000's samples of fewer than 8 bits up to 8 (a bilevel scan's white is 128,
    2-bit's 192, 7-bit's 254), and srgan read them as 8-bit: a 1-bit archive scan came out black and mid
    gray. Each channel is scaled by the precision the file states, as 9- to 15-bit gray already was."""
    (tmp_path / "bilevel.j2k").write_bytes(_BILEVEL_J2K)
    loaded = read_image(tmp_path / "bilevel.j2k")
    assert loaded.grayscale and loaded.bit_depth == 8 and loaded.size == (8, 4)
    rows = [[0, 1, 0, 1, 1, 0, 1, 0]] * 2 + [[1, 1, 1, 1, 0, 0, 0, 0]] * 2
    assert np.array_equal(np.rint(loaded.rgb * 255).astype(np.uint8), np.repeat(np.array(rows)[..., None], 3, 2) * 255)
    assert np.array_equal(images.read_rgb8(tmp_path / "bilevel.j2k")[..., 0], np.array(rows, np.uint8) * 255)
    imagecodecs = pytest.importorskip("imagecodecs")
    for bits in range(1, 8):
        top = (1 << bits) - 1
        ramp = np.tile(np.linspace(0, top, 40).round().astype(np.uint8), (30, 1))
        want = np.rint(ramp.astype(np.float64) * 255 / top).astype(np.uint8)
        for name, data in (
            (f"g{bits}.jp2", ramp),
            (f"c{bits}.jp2", np.stack([ramp, ramp[:, ::-1], np.full_like(ramp, top)], -1)),
            (f"la{bits}.jp2", np.stack([ramp, ramp[:, ::-1]], -1)),
            (f"rgba{bits}.j2k", np.stack([ramp, ramp, ramp[:, ::-1], ramp[:, ::-1]], -1)),
        ):
            codec = "j2k" if name.endswith(".j2k") else "jp2"
            (tmp_path / name).write_bytes(
                imagecodecs.jpeg2k_encode(data, level=0, bitspersample=bits, codecformat=codec)
            )
            loaded = read_image(tmp_path / name)
            assert loaded.bit_depth == 8, name
            got = np.rint(loaded.rgb * 255).astype(np.uint8)
            assert np.array_equal(got[..., 0], want), name
            if name.startswith("c"):
                assert np.array_equal(got[..., 1], want[:, ::-1]) and (got[..., 2] == 255).all(), name
            if name.startswith(("la", "rgba")):
                assert np.array_equal(np.rint(loaded.alpha * 255).astype(np.uint8), want[:, ::-1]), name


@needs_avif
def test_avif_is_written_with_alpha_gray_quality_and_metadata(tmp_path):
    """AVIF was neither read nor written. It is 8-bit (16 bits cut, with a note), keeps alpha, gray,
    the ICC profile, EXIF and XMP as WebP does, and --quality is Pillow's (libavif's) quality."""
    if not getattr(pytest.importorskip("PIL.AvifImagePlugin"), "SUPPORTED", False):
        pytest.skip("this Pillow has no AVIF")
    rng = np.random.default_rng(8)
    rgb = rng.random((30, 40, 3), dtype=np.float32)
    alpha = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (30, 1))
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:rights>mine</dc:rights></x:xmpmeta>'
    notes: list[str] = []
    path = write_image(
        tmp_path / "a.avif", rgb, alpha=alpha, bit_depth=16, icc_profile=icc, exif=exif.tobytes(), xmp=xmp,
        text={"Software": "srgan test"}, on_note=notes.append,
    )  # fmt: skip
    assert notes == [f"{path}: the 16 bits a channel are cut to 8: AVIF output holds no more (PNG and TIFF keep 16)"]
    loaded = read_image(path)
    assert loaded.format == "AVIF" and loaded.bit_depth == 8 and loaded.icc_profile == icc
    assert np.abs(loaded.alpha - alpha).max() < 4 / 255 and np.abs(loaded.rgb - rgb).mean() < 0.03
    with Image.open(path) as im:
        assert im.getexif()[0x010F] == "TestCam" and im.getexif()[0x0131] == "srgan test"
        assert b"mine" in im.info["xmp"]
    # gray stays gray (4:0:0) with its profile; gray with alpha is stored as RGBA, without it (a note)
    write_image(tmp_path / "g.avif", rgb, grayscale=True, icc_profile=_gray_icc())
    gray = read_image(tmp_path / "g.avif")
    assert gray.grayscale and gray.icc_profile == _gray_icc()
    notes.clear()
    write_image(tmp_path / "ga.avif", rgb, alpha=alpha, grayscale=True, icc_profile=_gray_icc(), on_note=notes.append)
    assert notes == [
        f"{tmp_path / 'ga.avif'}: the gray ICC colour profile is left out: AVIF stores gray with alpha as RGBA"
    ]
    assert read_image(tmp_path / "ga.avif").alpha is not None
    sizes = {}
    for quality in (40, 95):
        write_image(tmp_path / f"q{quality}.avif", rgb, quality=quality)
        sizes[quality] = (tmp_path / f"q{quality}.avif").stat().st_size
    assert sizes[40] < sizes[95]
    # libavif writes a side past 32768 px but does not read it back: refused before the work
    assert images.size_problem(32768, 8, "x.avif") is None and "at most 32768" in images.size_problem(
        32769, 8, "x.avif"
    )


@needs_avif
def test_avif_output_keeps_non_ascii_exif_text_and_stays_upright(tmp_path):
    """Pillow's AVIF writer takes the EXIF Orientation out (to store it as a box) and writes the rest again
    as ASCII: the UTF-8 caption "Grand-mère" (as phones write it) came out as "Grand-m??re"."""
    exif = Image.Exif()
    exif[0x010E], exif[0x013B], exif[0x0112] = "Grand-mère à la plage".encode(), "Jürgen".encode(), 6
    stored = np.zeros((16, 24, 3), np.uint8)
    stored[:8, :8] = 255  # the top left corner as stored: the top right once turned a quarter clockwise
    Image.fromarray(stored).save(tmp_path / "cap.jpg", exif=exif.tobytes(), quality=95)
    got = read_image(tmp_path / "cap.jpg")
    out = write_image(tmp_path / "o.avif", got.rgb, exif=got.exif, text={"Software": "srgan 9"})
    with Image.open(out) as im:
        ex = im.getexif()
        assert ex[0x010E].encode("latin-1").decode("utf-8") == "Grand-mère à la plage"
        assert ex[0x013B].encode("latin-1").decode("utf-8") == "Jürgen" and ex.get(0x0112, 1) == 1
    back = read_image(out)
    assert back.size == (16, 24) and back.rgb[:8, -8:].mean() > 0.9 and back.rgb[:8, :8].mean() < 0.1


def test_an_avif_of_more_pixels_than_libavif_reads_back_is_refused_before_the_work():
    """libavif reads back at most 16384 x 16384 pixels in all (AVIF_DEFAULT_IMAGE_SIZE_LIMIT): 16500 x 16500
    was written, and then did not open; only a side past 32768 px was refused."""
    assert images.size_problem(16384, 16384, "x.avif") is None
    assert images.size_problem(32768, 8192, "x.AVIF") is None
    problem = images.size_problem(16500, 16500, "x.avif")
    assert problem == (
        "x.avif: a 16500x16500 image is too large for AVIF (at most 268,435,456 pixels, as libavif reads it back); "
        "write PNG or TIFF"
    )
    assert "at most 268,435,456 pixels" in images.size_problem(20000, 14000, "x.png", "avif")
    assert images.size_problem(16500, 16500, "x.png") is None and images.size_problem(16500, 16500, "x.jpg") is None


def test_reading_holds_one_float_copy_of_the_image(tmp_path):
    # astype(float32) / 255 held two float copies at once: 3.4 GB at the peak of reading a 100 MP photo
    import tracemalloc

    Image.fromarray(RNG.integers(0, 256, (500, 600, 3), dtype=np.uint8)).save(tmp_path / "p.png", compress_level=1)
    tracemalloc.start()
    try:
        got = read_image(tmp_path / "p.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * got.rgb.nbytes, (peak, got.rgb.nbytes)


def test_a_bmp_over_4_gib_is_refused_before_the_work():
    # a 38000 x 38000 BMP (any input over about 89.5 MP at x4) failed in Pillow's writer after hours of
    # upscaling: BMP's 32-bit sizes hold a file of 4 GiB at most, 24 bits a pixel (8 for gray)
    assert images.size_problem(38000, 38000, "x.bmp") == (
        "x.bmp: a 38000x38000 image is too large for BMP (a file of at most 4 GiB); write PNG or TIFF"
    )
    assert images.size_problem(37000, 38000, "x.bmp") is None  # 4.22e9 bytes: fits
    assert images.size_problem(65000, 65000, "x.bmp", gray=True) is None  # 8 bits a pixel: 4.23e9
    assert images.size_problem(66000, 66000, "x.bmp", gray=True) is not None
    assert images.size_problem(38000, 38000, "x.png") is None
    # Pillow's own check agrees at the edge: a header of 54 bytes, rows padded to 4 bytes
    from PIL import BmpImagePlugin

    class Huge:  # only what Pillow's BMP writer reads before its size check
        mode, encoderinfo, encoderconfig = "RGB", {}, ()

        def __init__(self, size):
            self.size = size

    with pytest.raises(ValueError, match="too large"):
        BmpImagePlugin._save(Huge((38000, 38000)), io.BytesIO(), "x.bmp")


@needs_avif
def test_a_truncated_avif_is_called_truncated_and_one_too_large_for_libavif_says_so(tmp_path):
    """A truncated AVIF (200-400 bytes) said "not an image file, or an unsupported format", where a PNG,
    WebP or JPEG 2000 cut short says it is truncated or corrupt; an AVIF over libavif's limits (its ispe
    box says 16500x16500) said the same, though it is an image, only one libavif does not read."""
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="AVIF")
    for size in (40, 200, 300, 400):
        (tmp_path / "cut.avif").write_bytes(buf.getvalue()[:size])
        with pytest.raises(SrganError) as info:
            read_image(tmp_path / "cut.avif")
        assert str(info.value) == f"{tmp_path / 'cut.avif'}: truncated or corrupt AVIF file (its header cannot be read)"
    small = io.BytesIO()
    Image.new("RGB", (8, 6), (1, 2, 3)).save(small, format="AVIF")
    data = bytearray(small.getvalue())
    at = data.find(b"ispe")
    for width, height in ((16500, 16500), (40000, 8)):
        struct.pack_into(">II", data, at + 8, width, height)
        (tmp_path / "big.avif").write_bytes(bytes(data))
        with pytest.raises(SrganError, match=rf"an AVIF of {width}x{height} pixels, more than libavif reads \(at most"):
            read_image(tmp_path / "big.avif")


@needs_jpeg2000
def test_a_jpeg2000_cut_short_in_its_header_is_called_truncated(tmp_path):
    """A JPEG 2000 cut within its header boxes said "not an image file, or an unsupported format"."""
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), (1, 2, 3)).save(buf, format="JPEG2000")
    for suffix, data in ((".jp2", buf.getvalue()[:100]), (".j2k", b"\xff\x4f\xff\x51\x00\x29" + b"\x00" * 10)):
        (tmp_path / f"cut{suffix}").write_bytes(data)
        with pytest.raises(SrganError) as info:
            read_image(tmp_path / f"cut{suffix}")
        message = str(info.value)
        # Pillow 13 stops in the header; Pillow 12.3 (the floor) reads that .jp2's header and fails in its data
        assert message.endswith(
            (
                ": truncated or corrupt JPEG 2000 file (its header cannot be read)",
                "cannot decode the JPEG2000 data (broken data stream when reading image file); the file is "
                "truncated or corrupt",
            )
        ), message
        assert "unsupported format" not in message and "\n" not in message


def test_avif_without_pillow_support_is_one_line_saying_to_upgrade_pillow(tmp_path, monkeypatch):
    if images.avif_supported():
        Image.new("RGB", (8, 6), (9, 99, 199)).save(tmp_path / "a.avif")
    else:  # an ftyp box naming AVIF is what the error is known by
        (tmp_path / "a.avif").write_bytes(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64)
    monkeypatch.setattr(images, "_AVIF", False)
    for call in (
        lambda: read_image(tmp_path / "a.avif"),
        lambda: write_image(tmp_path / "b.avif", np.zeros((6, 8, 3), np.float32)),
    ):
        with pytest.raises(SrganError, match=r"this Pillow \(.*\) lacks AVIF support.*upgrade Pillow") as info:
            call()
        assert "\n" not in str(info.value)
    assert not (tmp_path / "b.avif").exists()


def _cmyk_icc(description: str = "srgan test CMYK") -> bytes:
    """A small ICC v2 CMYK output profile: a 2-point lut16 from CMYK to Lab through the sRGB of each corner."""
    corners = []
    for c in (0, 1):
        for m in (0, 1):
            for y in (0, 1):
                for k in (0, 1):
                    corners.append([round(255 * (1 - v) * (1 - k)) for v in (c, m, y)])
    rgb = Image.fromarray(np.array(corners, dtype=np.uint8).reshape(1, 16, 3))
    lab = ImageCms.applyTransform(
        rgb, ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    )
    lab = np.asarray(lab).reshape(16, 3).astype(np.int32)
    lab[:, 1:] = lab[:, 1:] ^ 128  # Pillow's a and b are signed bytes; the profile's are offset by 128
    clut = (lab * 256).astype(">u2").tobytes()
    a2b0 = b"mft2" + bytes(4) + bytes([4, 3, 2, 0])
    a2b0 += b"".join(struct.pack(">i", v) for v in (65536, 0, 0, 0, 65536, 0, 0, 0, 65536))
    a2b0 += struct.pack(">HH", 2, 2) + struct.pack(">HH", 0, 65535) * 4 + clut + struct.pack(">HH", 0, 65535) * 3
    text = description.encode("ascii") + b"\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    d50 = struct.pack(">iii", 63190, 65536, 54061)
    tags = [
        (b"desc", desc),
        (b"wtpt", b"XYZ " + bytes(4) + d50),
        (b"cprt", b"text" + bytes(4) + b"none\0"),
        (b"A2B0", a2b0),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        data += bytes(-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = struct.pack(">I4sI4s4s4s", size, b"none", 0x02100000, b"prtr", b"CMYK", b"Lab ") + bytes(12) + b"acsp"
    header += bytes(24) + struct.pack(">I", 0) + d50 + bytes(48)
    assert len(header) == 128, len(header)
    return header + struct.pack(">I", len(tags)) + table + body


def test_a_cmyk_image_says_it_was_converted_and_how(tmp_path):
    """A CMYK JPEG became RGB without a word, through its CMYK profile or without one."""
    cases = {
        "plain.jpg": (None, "RGB by a plain formula (the file has no colour profile): its colours are approximate"),
        "icc.jpg": (
            _cmyk_icc(),
            'sRGB through its CMYK ICC colour profile "srgan test CMYK", which the output does not carry',
        ),
        "broken.jpg": (
            b"not a profile" * 20,
            "RGB by a plain formula (its embedded colour profile could not be used, and is left out): its colours "
            "are approximate",
        ),
    }
    for name, (icc, how) in cases.items():
        Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(tmp_path / name, **({"icc_profile": icc} if icc else {}))
        got = read_image(tmp_path / name)
        assert _q(got.rgb, 255).reshape(-1, 3).tolist()[0] == [255, 0, 0] and got.icc_profile is None
        assert got.notes == [f"{tmp_path / name}: CMYK converted to {how}"]


def test_a_comment_alone_reaches_the_exif_user_comment(tmp_path):
    """A JPEG or PNG comment with no other EXIF text was lost from WebP output without a note: only the Exif
    sub-IFD (UserComment) was filled, and the EXIF counted as empty."""
    notes: list[str] = []
    out = write_image(
        tmp_path / "c.webp", RNG.random((4, 4, 3)), comments={"Comment": "a comment"}, on_note=notes.append
    )
    with Image.open(out) as im:
        assert im.getexif().get_ifd(0x8769)[0x9286] == b"ASCII\x00\x00\x00a comment"
    assert notes == []


def test_a_long_png_text_does_not_push_the_camera_exif_out_of_jpeg_output(tmp_path):
    """A PNG Description of more than one JPEG segment, merged into the EXIF before it was fitted, took the
    whole EXIF (Make, Model...) out of JPEG output. The text that does not fit is left out instead, saying so."""
    exif = Image.Exif()
    exif[0x010F], exif[0x0110] = "Canon", "EOS R5"
    notes: list[str] = []
    comments = {"Description": "y" * 70000, "Author": "Ann"}
    out = write_image(
        tmp_path / "o.jpg", RNG.random((4, 4, 3)), exif=exif.tobytes(), comments=comments, on_note=notes.append
    )
    with Image.open(out) as im:
        ex = im.getexif()
    assert ex[0x010F] == "Canon" and ex[0x0110] == "EOS R5" and ex[0x013B] == "Ann" and 0x010E not in ex
    assert notes == [f"{out}: the text (Description) is left out: with it the EXIF is more than a JPEG segment holds"]


def test_the_xmp_record_takes_the_about_value_of_the_packet(tmp_path):
    """A packet whose rdf:Description has rdf:about="uuid:..." got a record with rdf:about="": XMP requires one
    value in a packet (Adobe's XMPCore rejects it). The record takes the packet's, and is replaced on a rerun."""
    xmp = (
        b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description'
        b' rdf:about=\'uuid:faf5 "q" &amp;\' xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator><rdf:Seq>'
        b'<rdf:li>Ann</rdf:li></rdf:Seq></dc:creator></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    )
    text = {"srgan:model": "m", "srgan:scale": "4"}
    out = images._xmp_with_record(xmp, text)
    assert out.count(b'rdf:about="uuid:faf5 &quot;q&quot; &amp;"') == 1 and b'rdf:about=""' not in out
    assert srgan_record(out) == text
    again = images._xmp_with_record(out, {"srgan:model": "n"})
    assert srgan_record(again) == {"srgan:model": "n"} and again.count(b"<rdf:Description") == 2


@pytest.mark.parametrize("suffix", [".jpg", ".webp"])
def test_a_nul_in_png_text_does_not_cut_its_exif_tag(tmp_path, suffix):
    """EXIF text ends at its first NUL: a PNG Description "before\\0after" became "before", an Author "\\0Ann" an
    empty Artist."""
    comments = {"Description": "before\x00after", "Author": "\x00Ann", "Comment": "one\x00two"}
    out = write_image(tmp_path / f"o{suffix}", RNG.random((4, 4, 3)), comments=comments)
    with Image.open(out) as im:
        ex = im.getexif()
        if suffix == ".webp":
            assert ex.get_ifd(0x8769)[0x9286] == b"ASCII\x00\x00\x00one two"
    assert ex[0x010E] == "before after" and ex[0x013B].strip() == "Ann"


def test_only_srgan_namespace_is_taken_for_an_earlier_record():
    """The record was found by the prefix "srgan": a user's srgan: properties of another namespace were deleted.
    And unclosed srgan elements (a damaged packet) took quadratic time: 13 s at 213 KB."""
    import time

    rdf = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    other = (
        rdf + b'<rdf:Description rdf:about="" xmlns:srgan="http://example.com/another-srgan-tool/" srgan:rating="5">'
        b"<srgan:notes>mine</srgan:notes></rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    record = {"srgan:model": "m", "srgan:scale": "4"}
    out = images._xmp_with_record(other, record)
    assert b'srgan:rating="5"' in out and b"<srgan:notes>mine</srgan:notes>" in out and srgan_record(out) == record
    again = images._xmp_with_record(out, {"srgan:model": "n"})  # the earlier record goes, the user's stays
    assert srgan_record(again) == {"srgan:model": "n"} and b"<srgan:notes>mine</srgan:notes>" in again
    # as exiftool rewrites the record: elements of srgan's namespace, in the user's description
    mixed = rdf + (
        b'<rdf:Description rdf:about="" xmlns:s="urn:srgan-cli:xmp:1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"'
        b' s:scale="2"><s:model>old</s:model><dc:title>t</dc:title></rdf:Description></rdf:RDF></x:xmpmeta>'
    )
    out = images._xmp_with_record(mixed, record)
    assert srgan_record(out) == record and b"old" not in out and b's:scale="2"' not in out and b"<dc:title>t" in out
    declared = rdf + b'<rdf:Description rdf:about="" xmlns:srgan="urn:srgan-cli:xmp:1.0/">'
    damaged = declared + b"".join(b"<srgan:x%d>" % i for i in range(16000)) + b"</rdf:Description></rdf:RDF>"
    start = time.monotonic()
    images._xmp_without_record(damaged + b" " * 50000 + b"</x:xmpmeta>")
    assert time.monotonic() - start < 2


def _entry_type(tiff: bytes, tag: int, sub_ifd: int | None = None) -> tuple[int, int]:
    """The type and count of ``tag`` in a TIFF's (or EXIF's) first IFD, or in the sub-IFD it points to."""
    tiff = tiff.removeprefix(b"Exif\x00\x00")
    e = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(e + "I", tiff, 4)
    for want in ([sub_ifd] if sub_ifd else []) + [tag]:
        (n,) = struct.unpack_from(e + "H", tiff, ifd)
        for i in range(n):
            found, typ, count, value = struct.unpack_from(e + "HHII", tiff, ifd + 2 + 12 * i)
            if found == want:
                break
        else:
            raise AssertionError(f"no tag {want}")
        ifd = value
    return typ, count


@pytest.mark.parametrize("suffix", [".webp", ".jpg"])
def test_user_comment_is_written_as_undefined(tmp_path, suffix):
    """UserComment went out as BYTE, which exiftool -validate flags: EXIF says UNDEFINED."""
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    comments = {"Comment": "x" * 70000 if suffix == ".jpg" else "a comment"}
    out = write_image(tmp_path / f"o{suffix}", RNG.random((4, 4, 3)), exif=exif.tobytes(), comments=comments)
    with Image.open(out) as im:
        raw = im.info["exif"]
    if suffix == ".jpg":  # too long for a JPEG segment: left out
        with pytest.raises(AssertionError):
            _entry_type(raw, 0x9286, 0x8769)
    else:
        assert _entry_type(raw, 0x9286, 0x8769)[0] == 7
    ex = Image.Exif()
    ex.get_ifd(0x8769)[0x9286] = b"ASCII\x00\x00\x00hi"
    raw = write_image(tmp_path / "k.webp", RNG.random((4, 4, 3)), exif=ex.tobytes())
    with Image.open(raw) as im:
        assert _entry_type(im.info["exif"], 0x9286, 0x8769)[0] == 7  # the input's, too


@pytest.mark.parametrize("depth", [8, 16])
def test_tiff_iptc_is_written_as_longs(tmp_path, depth):
    """IPTC-NAA went into TIFF as UNDEFINED: Photoshop and exiftool write LONGs, padded to a multiple of 4."""
    iim = iptc_records((120, b"caption"), (25, b"kw"))
    assert len(iim) % 4
    out = write_image(tmp_path / "o.tif", RNG.random((4, 4, 3)), iptc=iim, bit_depth=depth)
    typ, count = _entry_type(out.read_bytes(), 33723)
    assert typ == 4 and count == -(-len(iim) // 4)
    assert read_image(out).iptc == iim


def test_running_out_of_memory_while_encoding_is_said_so(tmp_path, monkeypatch):
    # Pillow's quantizer turns a failed allocation into "quantization error": the GIF's message blamed the image
    def no_memory(*args, **kwargs):
        raise ValueError("quantization error")

    monkeypatch.setattr(images, "_dithered", no_memory)
    with pytest.raises(SrganError, match="reducing it to 256 colours failed, most likely for lack of memory"):
        write_image(tmp_path / "o.gif", RNG.random((4, 4, 3)))

    def out_of_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(images, "_save_pil", out_of_memory)
    with pytest.raises(SrganError, match="not enough memory to encode the image as JPEG; free memory"):
        write_image(tmp_path / "o.jpg", RNG.random((4, 4, 3)))
    assert not list(tmp_path.iterdir())  # nothing half-written left


def test_a_packets_padding_does_not_make_the_extended_xmp_search_quadratic(tmp_path):
    # a match could start at each space of the padding: 4 s to read a JPEG with 20 KB of it, ~50 s at 60 KB
    import time

    padding = (b" " * 99 + b"\n") * 300
    packet = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        + padding
        + b'<rdf:Description rdf:about="" xmlns:xmpNote="http://ns.adobe.com/xmp/note/" xmpNote:HasExtendedXMP="AB"/>'
        + padding
        + b"</rdf:RDF></x:xmpmeta>"
    )
    start = time.monotonic()
    found = images._HAS_EXTENDED_XMP.search(packet)
    dropped = images._HAS_EXTENDED_XMP.sub(b"", packet)
    assert time.monotonic() - start < 2
    assert found[2] == b"AB" and b"HasExtendedXMP" not in dropped and len(dropped) == len(packet) - len(found[0])
    Image.new("RGB", (8, 8)).save(tmp_path / "p.jpg", xmp=packet.replace(b' xmpNote:HasExtendedXMP="AB"', b""))
    start = time.monotonic()
    assert read_image(tmp_path / "p.jpg").xmp is not None
    assert time.monotonic() - start < 2


def test_xmp_orientation_and_resolution_follow_the_turned_pixels_whatever_the_quoting(tmp_path):
    # tiff:Orientation='6' (single quotes, as some writers put it) stayed "rotate" on pixels already turned,
    # and the XMP's X and Y resolution were not swapped with the EXIF's on a quarter turn
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b"<rdf:Description rdf:about='' xmlns:tiff='http://ns.adobe.com/tiff/1.0/' tiff:Orientation = '6' "
        b"tiff:XResolution='300/1' tiff:YResolution='150/1'/></rdf:RDF></x:xmpmeta>"
    )
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)).save(
        tmp_path / "in.jpg", exif=exif.tobytes(), xmp=xmp, dpi=(300, 150)
    )
    got = read_image(tmp_path / "in.jpg")
    assert got.size == (4, 6) and got.dpi == (150, 300)
    assert b"tiff:Orientation = '1'" in got.xmp
    assert b"tiff:XResolution='150/1'" in got.xmp and b"tiff:YResolution='300/1'" in got.xmp
    # an XMP orientation alone, single-quoted, is applied as a double-quoted one is
    Image.fromarray(RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)).save(tmp_path / "x.jpg", xmp=xmp)
    assert read_image(tmp_path / "x.jpg").size == (4, 6)


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp"])
def test_exif_tags_pillow_does_not_know_keep_the_types_exif_gives_them(tmp_path, suffix):
    # Pillow guessed BYTE, RATIONAL and SHORT for them: exiftool -validate flagged every camera photo's upscale
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    sub = exif.get_ifd(0x8769)
    sub[0x9101] = b"\x01\x02\x03\x00"  # ComponentsConfiguration: UNDEFINED
    sub[0x927C] = b"\x00\x01" + bytes(40)  # MakerNote: UNDEFINED
    sub[0xA300] = b"\x03"  # FileSource: UNDEFINED
    sub[0x9201] = TiffImagePlugin.IFDRational(8, 1)  # ShutterSpeedValue: SRATIONAL
    sub[0x8832] = 100  # RecommendedExposureIndex: LONG
    Image.new("RGB", (6, 4)).save(tmp_path / "in.jpg", exif=exif.tobytes())
    got = read_image(tmp_path / "in.jpg")
    out = write_image(tmp_path / f"o{suffix}", got.rgb, exif=got.exif)
    with Image.open(out) as im:
        raw = im.info["exif"]
        back = im.getexif().get_ifd(0x8769)
    wanted = {0x9101: (7, 4), 0x927C: (7, 42), 0xA300: (7, 1), 0x9201: (10, 1), 0x8832: (4, 1)}
    assert {tag: _entry_type(raw, tag, 0x8769) for tag in wanted} == wanted
    assert back[0x8832] == 100 and float(back[0x9201]) == 8.0 and back[0x9101] == b"\x01\x02\x03\x00"
