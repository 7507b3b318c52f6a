"""``srgan upscale``: outputs, options, safety rules and broken inputs (tiny random model)."""

from __future__ import annotations

import errno
import functools
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import extended_xmp_jpeg, iptc_app13, iptc_records, mpo_file, srgan_record
from PIL import Image
from PIL import features as _pil_features

from srgan_cli import images
from srgan_cli.cli import main
from srgan_cli.config import GeneratorConfig
from srgan_cli.errors import SrganError
from srgan_cli.models import build_generator
from srgan_cli.weights import save_generator, sha256_file

needs_avif = pytest.mark.skipif(not _pil_features.check("avif"), reason="this Pillow has no AVIF support")
needs_jpeg2000 = pytest.mark.skipif(not _pil_features.check("jpg_2000"), reason="this Pillow has no JPEG 2000 support")

TINY = GeneratorConfig(num_blocks=1, num_features=8)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_generator(path, build_generator(TINY), TINY)
    return path


def _img(path: Path, size=(12, 10), mode="RGB", seed=0) -> Path:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    data = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    if channels == 1:
        data = data[:, :, 0]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(data, mode).save(path)
    return path


def run(weights: Path, *args: str, input=None):
    result = CliRunner().invoke(main, ["upscale", "-m", str(weights), "-q", *map(str, args)], input=input)
    assert "Traceback" not in result.output
    return result


def _decodes(path: Path) -> Image.Image:
    im = Image.open(path)
    im.load()
    return im


def _no_parts(folder: Path) -> None:
    assert not [p for p in folder.rglob("*") if p.name.endswith(".part")]


def test_single_file(weights, tmp_path):
    src = _img(tmp_path / "in.png")
    result = run(weights, src, "-o", tmp_path / "out" / "big.png")
    assert result.exit_code == 0, result.output
    out = _decodes(tmp_path / "out" / "big.png")
    assert out.size == (48, 40) and out.mode == "RGB"
    assert out.text["srgan:model"] == "tiny" and out.text["srgan:scale"] == "4"
    assert out.text["srgan:model_sha256"] == sha256_file(weights)
    assert out.text["Software"].startswith("srgan ")


def test_output_matches_api(weights, tmp_path):
    from srgan_cli.api import load_model, upscale_array

    src = _img(tmp_path / "in.png", seed=5)
    assert run(weights, src, "-o", tmp_path / "o.png").exit_code == 0
    expected = upscale_array(load_model(weights, device="cpu"), np.asarray(Image.open(src), np.float32) / 255)
    got = np.asarray(Image.open(tmp_path / "o.png"), np.float32) / 255
    assert np.abs(got - expected).max() <= 0.5 / 255 + 1e-6


def test_folder_default_names_and_non_images_skipped(weights, tmp_path):
    _img(tmp_path / "in" / "a.png")
    _img(tmp_path / "in" / "b.jpg")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    _img(tmp_path / "in" / "sub" / "c.png")
    result = CliRunner().invoke(main, ["upscale", "-m", str(weights), str(tmp_path / "in"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.png", "b.jpg"]  # no recursion by default
    assert "2 written, 1 skipped, 0 failed" in result.stderr


def test_netpbm_is_read_everywhere_and_written_as_png(weights, tmp_path):
    from srgan_cli.bench import _image_files
    from srgan_cli.data import list_images

    rng = np.random.default_rng(3)
    gray16 = rng.integers(0, 65536, (10, 12), dtype=np.uint16)
    (tmp_path / "in").mkdir()
    Image.fromarray(gray16).save(tmp_path / "in" / "g.pgm")  # 16-bit PGM
    Image.open(_img(tmp_path / "rgb.png")).save(tmp_path / "in" / "c.ppm")
    result = run(weights, tmp_path / "in", "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["c.png", "g.png"]
    assert _decodes(tmp_path / "o" / "c.png").mode == "RGB"
    assert _decodes(tmp_path / "o" / "g.png").mode == "I;16"  # 16 bits kept
    result = run(weights, tmp_path / "in" / "c.ppm", "-o", tmp_path / "big.ppm")  # read only
    assert result.exit_code == 2 and "PPM" in result.output and not (tmp_path / "big.ppm").exists()
    # train and bench read the same suffixes as upscale
    assert [p.name for p in list_images(tmp_path / "in")] == ["c.ppm", "g.pgm"]
    assert [p.name for p in _image_files(tmp_path / "in")] == ["c.ppm", "g.pgm"]


def test_recursive_mirror_suffix_format(weights, tmp_path):
    _img(tmp_path / "in" / "a.png")
    _img(tmp_path / "in" / "deep" / "er" / "c.jpg")
    result = run(weights, tmp_path / "in", "-o", tmp_path / "o", "--recursive", "--suffix", "_x4", "--format", "webp")
    assert result.exit_code == 0, result.output
    assert _decodes(tmp_path / "o" / "a_x4.webp").size == (48, 40)
    assert _decodes(tmp_path / "o" / "deep" / "er" / "c_x4.webp").format == "WEBP"


def test_several_files_into_folder_and_jpg_format(weights, tmp_path):
    a = _img(tmp_path / "a.png")
    b = _img(tmp_path / "b.png", seed=1)
    result = run(weights, a, b, "-o", tmp_path / "o", "--format", "jpg", "--quality", "80")
    assert result.exit_code == 0, result.output
    assert _decodes(tmp_path / "o" / "a.jpg").format == "JPEG"
    assert (tmp_path / "o" / "b.jpg").is_file()


def test_output_name_with_an_unknown_suffix_is_a_folder_with_a_note(weights, tmp_path):
    a = _img(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["upscale", "-m", str(weights), str(a), "-o", str(tmp_path / "out.jgp")])
    assert result.exit_code == 0, result.output
    assert _decodes(tmp_path / "out.jgp" / "a.png").size == (48, 40)
    assert "out.jgp is not an image file name" in result.output and "a.png" in result.output
    # an existing folder, or a name without a suffix, is plainly a folder: no note
    for out in ("out.jgp", "big"):
        result = CliRunner().invoke(
            main, ["upscale", "-m", str(weights), str(a), "-o", str(tmp_path / out), "--overwrite"]
        )
        assert result.exit_code == 0 and "note" not in result.output, result.output


def test_format_must_match_single_output_and_folder_needs_folder(weights, tmp_path):
    a = _img(tmp_path / "a.png")
    b = _img(tmp_path / "b.png")
    result = run(weights, a, "-o", tmp_path / "o.png", "--format", "jpg")
    assert result.exit_code == 2 and "does not match" in result.output
    assert run(weights, a, "-o", tmp_path / "o.jpeg", "--format", "jpg").exit_code == 0
    assert Image.open(tmp_path / "o.jpeg").format == "JPEG"
    result = run(weights, a, b, "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "give a folder" in result.output and not (tmp_path / "x.png").exists()


def test_outscale_exact_size(weights, tmp_path):
    src = _img(tmp_path / "in.png", size=(13, 7))
    assert run(weights, src, "-o", tmp_path / "o.png", "--outscale", "2.5").exit_code == 0
    assert Image.open(tmp_path / "o.png").size == (33, 18)  # 32.5 and 17.5: halves round up, both sides alike
    assert Image.open(tmp_path / "o.png").text["srgan:scale"] == "2.5"
    # recorded as used: 6 digits made 3.3333333 "3.33333", whose size would be another
    assert run(weights, src, "-o", tmp_path / "t.png", "--outscale", "3.3333333").exit_code == 0
    assert Image.open(tmp_path / "t.png").text["srgan:scale"] == "3.3333333"


def test_tile_option_same_output(weights, tmp_path):
    src = _img(tmp_path / "in.png", size=(30, 22))
    assert run(weights, src, "-o", tmp_path / "whole.png", "--tile", "0").exit_code == 0
    assert run(weights, src, "-o", tmp_path / "tiled.png", "--tile", "8", "--batch-size", "3").exit_code == 0
    a = np.asarray(Image.open(tmp_path / "whole.png"), int)
    b = np.asarray(Image.open(tmp_path / "tiled.png"), int)
    assert np.abs(a - b).max() <= 1 and (a != b).mean() < 1e-3


def test_rgba_gray_16bit_preserved(weights, tmp_path):
    rgba = _img(tmp_path / "in" / "rgba.png", mode="RGBA")
    gray = _img(tmp_path / "in" / "gray.png", mode="L")
    deep = tmp_path / "in" / "deep.png"
    arr16 = (np.random.default_rng(2).integers(0, 65536, (10, 12), dtype=np.uint16)).astype(np.uint16)
    Image.fromarray(arr16).save(deep)  # uint16 -> mode I;16
    assert run(weights, tmp_path / "in", "-o", tmp_path / "o").exit_code == 0
    assert _decodes(tmp_path / "o" / rgba.name).mode == "RGBA"
    assert _decodes(tmp_path / "o" / gray.name).mode == "L"
    out16 = _decodes(tmp_path / "o" / deep.name)
    assert out16.mode in ("I;16", "I") and np.asarray(out16).max() > 255


def test_icc_profile_carried(weights, tmp_path):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "icc.png"
    Image.new("RGB", (6, 5), (10, 200, 30)).save(src, icc_profile=icc)
    assert run(weights, src, "-o", tmp_path / "o.png").exit_code == 0
    assert Image.open(tmp_path / "o.png").info.get("icc_profile") == icc


def test_dpi_carried_and_camera_exif_to_tiff(weights, tmp_path):
    src = tmp_path / "cam.jpg"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = "2020:01:02 03:04:05"  # DateTimeOriginal, in the Exif IFD
    Image.new("RGB", (6, 5), (10, 200, 30)).save(src, exif=exif.tobytes(), dpi=(300, 300))
    for name in ("o.png", "o.jpg", "o.tif"):  # TIFF failed on any EXIF; every format dropped the dpi
        assert run(weights, src, "-o", tmp_path / name).exit_code == 0
        with Image.open(tmp_path / name) as im:
            assert im.size == (24, 20) and tuple(round(v) for v in im.info["dpi"]) == (300, 300)


def test_exif_carried_and_16bit_tiff(weights, tmp_path):
    src = tmp_path / "cam.jpg"
    exif = Image.Exif()
    exif[0x010F] = "TestMaker"  # Make
    Image.new("RGB", (8, 6), (120, 60, 30)).save(src, exif=exif.tobytes())
    assert run(weights, src, "-o", tmp_path / "o.jpg").exit_code == 0
    assert Image.open(tmp_path / "o.jpg").getexif().get(0x010F) == "TestMaker"
    deep = tmp_path / "deep.tif"
    Image.fromarray(np.random.default_rng(4).integers(0, 65536, (6, 8), dtype=np.uint16)).save(deep)
    assert run(weights, deep, "-o", tmp_path / "o.tif").exit_code == 0
    out = _decodes(tmp_path / "o.tif")
    assert out.size == (32, 24) and out.mode.startswith("I") and np.asarray(out).max() > 255


def test_blend_option(weights, tmp_path):
    torch.manual_seed(9)
    other = tmp_path / "other.safetensors"
    save_generator(other, build_generator(TINY), TINY)
    src = _img(tmp_path / "a.png")
    assert run(weights, src, "-o", tmp_path / "a0.png", "--blend", f"{other}:0").exit_code == 0
    assert run(weights, src, "-o", tmp_path / "plain.png").exit_code == 0
    assert run(weights, src, "-o", tmp_path / "a1.png", "--blend", f"{other}:1").exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a0.png")), np.asarray(Image.open(tmp_path / "plain.png")))
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "a1.png")), np.asarray(Image.open(tmp_path / "a0.png")))
    assert "other" in Image.open(tmp_path / "a1.png").text["srgan:model"]
    blended = f"{sha256_file(weights)}+{sha256_file(other)}@1"
    assert Image.open(tmp_path / "a1.png").text["srgan:model_sha256"] == blended
    for bad in ("nonsense", f"{other}:2"):  # a usage error (exit 2, as the help promises), before any image is read
        result = run(weights, src, "-o", tmp_path / "bad.png", "--blend", bad)
        assert result.exit_code == 2 and "Invalid value for '--blend'" in result.output, result.output
        assert not (tmp_path / "bad.png").exists()


def test_ensemble_option(weights, tmp_path):
    from srgan_cli.api import load_model, upscale_array

    src = _img(tmp_path / "a.png", seed=3)
    assert run(weights, src, "-o", tmp_path / "e.png", "--ensemble").exit_code == 0
    out = Image.open(tmp_path / "e.png")
    assert out.text["srgan:ensemble"].startswith("x8") and out.text["srgan:model"] == "tiny"
    expected = upscale_array(load_model(weights, device="cpu", ensemble=True), np.asarray(Image.open(src)) / 255)
    assert np.abs(np.asarray(out, np.float32) / 255 - expected).max() <= 0.5 / 255 + 1e-6
    assert run(weights, src, "-o", tmp_path / "p.png").exit_code == 0
    assert "srgan:ensemble" not in Image.open(tmp_path / "p.png").text


def test_a_sixteen_bit_tiff_read_with_eight_bits_says_so(weights, tmp_path):
    # A 16-bit colour BigTIFF in tiles is read by Pillow at 8 bits: the output was 8-bit, without a word.
    import struct

    tile = np.random.default_rng(3).integers(0, 65536, (16, 16, 3), dtype=np.uint16)
    entries = [(256, 3, 1, 16), (257, 3, 1, 16), (258, 3, 3, None), (259, 3, 1, 1), (262, 3, 1, 2), (277, 3, 1, 3)]
    entries += [(284, 3, 1, 1), (322, 3, 1, 16), (323, 3, 1, 16), (324, 16, 1, 16), (325, 16, 1, tile.nbytes)]
    entries += [(339, 3, 3, None)]
    ifd = struct.pack("<Q", len(entries))
    for tag, typ, count, value in entries:
        packed = struct.pack("<3H", 16, 16, 16) if tag == 258 else struct.pack("<3H", 1, 1, 1) if tag == 339 else None
        packed = packed or struct.pack("<Q" if typ == 16 else "<H", value)
        ifd += struct.pack("<HHQ", tag, typ, count) + packed.ljust(8, b"\x00")
    head = b"II+\x00" + struct.pack("<HHQ", 8, 0, 16 + tile.nbytes)  # BigTIFF: the directory after the tile
    (tmp_path / "big.tif").write_bytes(head + tile.astype("<u2").tobytes() + ifd + bytes(8))
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), str(tmp_path / "big.tif"), "-o", str(tmp_path / "o.tif")]
    )
    assert result.exit_code == 0, result.output
    assert f"note: {tmp_path / 'big.tif'}: read with 8 bits a channel, not its 16" in result.stderr
    assert _decodes(tmp_path / "o.tif").mode == "RGB"


def test_animated_input_says_only_its_first_frame_is_upscaled(weights, tmp_path):
    rng = np.random.default_rng(2)
    frames = [Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).convert("P") for _ in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), str(tmp_path / "anim.gif"), "-o", str(tmp_path / "a.png")]
    )
    assert result.exit_code == 0, result.output
    assert "anim.gif: 3 frames; only the first is upscaled" in result.stderr
    assert _decodes(tmp_path / "a.png").size == (48, 40)


def test_refuses_to_overwrite_then_skip_existing_and_overwrite(weights, tmp_path):
    src = _img(tmp_path / "in" / "a.png")
    _img(tmp_path / "in" / "b.png", seed=1)
    out = tmp_path / "o"
    out.mkdir()
    (out / "a.png").write_bytes(b"keep me")
    result = run(weights, tmp_path / "in", "-o", out)
    assert result.exit_code == 1
    assert "a.png: already exists; pass --overwrite" in result.stderr and "--skip-existing" in result.stderr
    assert (out / "a.png").read_bytes() == b"keep me" and (out / "b.png").is_file()
    (out / "b.png").unlink()
    result = run(weights, tmp_path / "in", "-o", out, "--skip-existing")
    assert result.exit_code == 0 and (out / "a.png").read_bytes() == b"keep me"
    assert _decodes(out / "b.png").size == (48, 40)  # skips what exists, writes what does not
    assert run(weights, tmp_path / "in", "-o", out, "--overwrite").exit_code == 0
    assert _decodes(out / "a.png").size == (48, 40)
    assert src.is_file()
    assert run(weights, tmp_path / "in", "-o", out, "--overwrite", "--skip-existing").exit_code == 2


def test_writes_where_the_filesystem_has_no_hard_links_or_modes(weights, tmp_path, monkeypatch):
    """A memory card or USB drive (FAT, exFAT): link() and chmod() answer EPERM there."""
    from srgan_cli import fsutil

    def refuse(*a, **k):
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))

    monkeypatch.setattr(fsutil.os, "link", refuse)
    monkeypatch.setattr(fsutil.os, "chmod", refuse)
    _img(tmp_path / "in" / "a.png")
    _img(tmp_path / "in" / "b.jpg", seed=1)
    out = tmp_path / "card"
    out.mkdir()
    (out / "b.jpg").write_bytes(b"keep me")
    result = run(weights, tmp_path / "in", "-o", out)
    assert result.exit_code == 1 and "b.jpg: already exists" in result.stderr
    assert _decodes(out / "a.png").size == (48, 40) and (out / "b.jpg").read_bytes() == b"keep me"
    assert run(weights, tmp_path / "in", "-o", out, "--overwrite").exit_code == 0
    assert _decodes(out / "b.jpg").size == (48, 40)
    _no_parts(out)


def test_output_equal_to_input_refused(weights, tmp_path):
    src = _img(tmp_path / "a.png")
    before = src.read_bytes()
    result = run(weights, src, "-o", src, "--overwrite")
    assert result.exit_code == 1 and "would replace an input" in result.stderr
    link = tmp_path / "link.png"
    link.symlink_to(src)
    assert run(weights, src, "-o", link, "--overwrite").exit_code == 1
    hard = tmp_path / "hard.png"
    os.link(src, hard)
    assert run(weights, src, "-o", hard, "--overwrite").exit_code == 1
    # Folder mode: -o is the input folder itself; b.jpg -> b.png would replace the input b.png.
    _img(tmp_path / "b.jpg")
    b_png = _img(tmp_path / "b.png", seed=3).read_bytes()
    result = run(weights, tmp_path, "-o", tmp_path, "--overwrite", "--format", "png", "--report", tmp_path / "r.json")
    assert result.exit_code == 1 and result.stderr.count("would replace an input") == 4  # a hard b.jpg b.png
    files = {Path(f["input"]).name: f for f in json.loads((tmp_path / "r.json").read_text())["files"]}
    assert files["link.png"]["reason"] == f"the same file as {src}, given twice"  # a.png's input and output
    assert src.read_bytes() == before and (tmp_path / "b.png").read_bytes() == b_png
    # The same folder with a suffix is fine, except that b.jpg and b.png would both give b_x4.png.
    result = run(weights, tmp_path, "-o", tmp_path, "--suffix", "_x4", "--format", "png")
    assert result.exit_code == 1 and result.stderr.count("error: ") == 1 and "is also the output of" in result.stderr
    assert Image.open(tmp_path / "a_x4.png").size == (48, 40)


def test_output_folder_inside_input_folder_is_not_read(weights, tmp_path):
    _img(tmp_path / "a.png")
    assert run(weights, tmp_path, "-o", tmp_path / "big", "--recursive").exit_code == 0
    result = run(weights, tmp_path, "-o", tmp_path / "big", "--recursive", "--skip-existing")
    assert result.exit_code == 0 and sorted(p.name for p in (tmp_path / "big").rglob("*")) == ["a.png"]


def test_symlinked_subfolder_cannot_escape_output(weights, tmp_path):
    _img(tmp_path / "in" / "sub" / "a.png")
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "o"
    out.mkdir()
    (out / "sub").symlink_to(outside, target_is_directory=True)
    result = run(weights, tmp_path / "in", "-o", out, "--recursive")
    assert result.exit_code == 1 and "outside" in result.stderr
    assert list(outside.iterdir()) == []


def test_dotdot_suffix_refused(weights, tmp_path):
    src = _img(tmp_path / "a.png")
    result = run(weights, src, "-o", tmp_path / "o", "--suffix", "/../../x")
    assert result.exit_code == 2 and "Traceback" not in result.output
    for bad, why in ((".", "must not be '.'"), ("a\nb", "control characters")):  # was: a name with a newline
        result = run(weights, src, "-o", tmp_path / "o", "--suffix", bad)
        assert result.exit_code == 2 and why in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_plan_never_escapes_with_odd_names(tmp_path):
    """The plan maps names relative to the input root; `..` in a name cannot climb out."""
    from srgan_cli.commands.upscale import Job, Reporter, Tally, check_jobs

    out = tmp_path / "o"
    jobs = [
        Job(tmp_path / "a.png", out / ".." / "escaped.png", None),
        Job(tmp_path / "b.png", tmp_path.parent / "x.png", None),  # an absolute path elsewhere
    ]
    tally = Tally()
    assert check_jobs(jobs, out, [], overwrite=False, skip_existing=False, report=Reporter(True), tally=tally) == []
    assert tally.failed == 2


def test_broken_files_reported_one_line_each(weights, tmp_path, monkeypatch):
    src = tmp_path / "in"
    for i in range(3):
        _img(src / f"good{i}.png", seed=i)
    (src / "empty.png").write_bytes(b"")
    good = (src / "good0.png").read_bytes()
    (src / "truncated.png").write_bytes(good[: len(good) // 2])
    (src / "random.jpg").write_bytes(os.urandom(300))
    (src / "text.png").write_text("hello, I am not a PNG")
    (src / "bomb.png").write_bytes(_png_header_only(100_000, 100_000))
    (src / "unreadable.png").write_bytes(good)
    (src / "vanishing.png").write_bytes(good)

    from srgan_cli.commands import upscale as cmd

    real_read = cmd._read

    def hook(path, max_pixels):
        if path.name == "unreadable.png":
            raise PermissionError(13, "Permission denied", str(path))
        if path.name == "vanishing.png":
            path.unlink()  # deleted between listing and reading
        return real_read(path, max_pixels)

    monkeypatch.setattr(cmd, "_read", hook)
    result = run(weights, src, "-o", tmp_path / "o")
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    broken = ["empty", "truncated", "random", "text", "bomb", "unreadable", "vanishing"]
    for name in broken:
        assert sum(name in line for line in lines) == 1, (name, result.stderr)
    assert len(lines) == len(broken)
    assert "3 written, 0 skipped, 7 failed" in result.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["good0.png", "good1.png", "good2.png"]
    _no_parts(tmp_path / "o")


def _png_header_only(width: int, height: int, colour_type: int = 2) -> bytes:
    """A tiny file that declares a huge image (decompression bomb); RGB, or ``colour_type`` 0: gray."""
    import struct

    from srgan_cli.images import _png_chunk as chunk

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")


def test_fail_fast_stops(weights, tmp_path):
    src = tmp_path / "in"
    (src).mkdir()
    (src / "a_broken.png").write_bytes(b"junk")
    for i in range(3):
        _img(src / f"b{i}.png", seed=i)
    result = run(weights, src, "-o", tmp_path / "o", "--fail-fast")
    assert result.exit_code == 1
    assert not (tmp_path / "o").exists() or len(list((tmp_path / "o").iterdir())) < 3


def test_fail_fast_stops_at_a_failure_found_while_planning(weights, tmp_path):
    # a missing input named beside others: --fail-fast wrote the rest and said "completed"
    a, b = _img(tmp_path / "a.png"), _img(tmp_path / "b.png")
    result = run(
        weights, a, tmp_path / "nosuch.png", b, "-o", tmp_path / "o", "--fail-fast", "--report", tmp_path / "r.json"
    )
    assert result.exit_code == 1 and not (tmp_path / "o").exists()
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["ended"] == "stopped: --fail-fast after a failure" and (doc["failed"], doc["not_started"]) == (1, 2)


def test_max_pixels(weights, tmp_path):
    src = _img(tmp_path / "a.png", size=(20, 20))
    result = run(weights, src, "-o", tmp_path / "o.png", "--max-pixels", "100")
    assert result.exit_code == 1 and "--max-pixels" in result.stderr and not (tmp_path / "o.png").exists()


def test_missing_weights_one_line(tmp_path):
    src = _img(tmp_path / "a.png")
    result = CliRunner().invoke(main, ["upscale", str(src), "-o", str(tmp_path / "o.png"), "-m", "nope.safetensors"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and "nope" in result.stderr


def test_missing_input_and_empty_folder(weights, tmp_path):
    result = run(weights, tmp_path / "missing.png", "-o", tmp_path / "o")
    assert result.exit_code == 1 and "missing.png" in result.stderr
    (tmp_path / "empty").mkdir()
    result = run(weights, tmp_path / "empty", "-o", tmp_path / "o")
    assert result.exit_code == 1 and "no images" in result.stderr


def test_bad_options_are_usage_errors(weights, tmp_path):
    src = _img(tmp_path / "a.png")
    for args in (["--tile", "-1"], ["--batch-size", "0"], ["--outscale", "0"], ["--format", "gif"], ["--quality", "0"]):
        result = run(weights, src, "-o", tmp_path / "o.png", *args)
        assert result.exit_code == 2, args
    result = run(weights, src, "-o", tmp_path / "o.png", "--precision", "fp8")
    assert result.exit_code == 2
    result = run(weights, src, "-o", tmp_path / "o.png", "--device", "gpu0")
    assert result.exit_code == 2 and "--device" in result.output
    assert not (tmp_path / "o.png").exists()


def test_a_sub_folder_name_exfat_refuses_is_said_so(weights, tmp_path, monkeypatch):
    # --recursive mirrors "12:30" onto a memory card, whose FUSE exFAT driver answers "no such file": the
    # error said only that, naming no cause
    _img(tmp_path / "in" / "12:30" / "a.png")
    real = os.mkdir

    def mkdir(path, *args, **kwargs):
        if ":" in os.path.basename(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    result = run(weights, tmp_path / "in", "-o", tmp_path / "out", "--recursive")
    assert result.exit_code == 1
    assert (
        f"{tmp_path / 'out' / '12:30'}: cannot create the output folder (the file system may refuse the name "
        "'12:30', which holds ':' (FAT and exFAT refuse" in result.stderr
    )


def test_the_device_names_pytorch_prints_are_taken(weights, tmp_path):
    # str(tensor.device) is "cpu:0" for a CPU tensor made with an index: a user copies it from a log
    src = _img(tmp_path / "a.png")
    result = run(weights, src, "-o", tmp_path / "o.png", "--device", "CPU:0")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o.png").exists()
    for bad in ("cpu:1", "mps:1"):
        result = run(weights, src, "-o", tmp_path / f"{bad[:3]}.png", "--device", bad)
        assert result.exit_code == 2 and "expected auto, cpu, cuda, cuda:N or mps" in result.output


def test_unexpected_inference_error_is_one_line(weights, tmp_path, monkeypatch):
    import srgan_cli.api as api

    real = api.upscale_loaded

    def flaky(model, loaded, **kwargs):
        if loaded.size == (7, 7):
            raise ValueError("boom")
        return real(model, loaded, **kwargs)

    monkeypatch.setattr(api, "upscale_loaded", flaky)
    _img(tmp_path / "in" / "bad.png", size=(7, 7))
    _img(tmp_path / "in" / "good.png")
    result = run(weights, tmp_path / "in", "-o", tmp_path / "o")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "bad.png" in result.stderr and "ValueError: boom" in result.stderr
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["good.png"]


def test_help_lists_every_option():
    result = CliRunner().invoke(main, ["upscale", "--help"])
    assert result.exit_code == 0
    for option in (
        "--output", "--model", "--blend", "--device", "--precision", "--tile", "--tile-pad", "--batch-size",
        "--outscale", "--format", "--quality", "--suffix", "--recursive", "--no-recursive", "--skip-existing",
        "--overwrite", "--keep-going", "--fail-fast", "--max-pixels", "--quiet",
    ):  # fmt: skip
        assert option in result.output, option
    from srgan_cli.tiling import MIN_TILE

    text = " ".join(result.output.split())
    assert f"--tile INTEGER Tile side in input pixels, at least {MIN_TILE};" in text, text  # was "[x>=0]"


def test_torchrun_split_two_processes(weights, tmp_path):
    """Two ranks on the same inputs: every file is written exactly once, by one rank."""
    for i in range(6):
        _img(tmp_path / "in" / f"{i}.png", size=(6, 5), seed=i)
    procs = []
    for rank in range(2):
        env = dict(os.environ, WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "srgan_cli", "upscale", str(tmp_path / "in"), "-o", str(tmp_path / "o")]
        cmd += ["-m", str(weights), "--device", "cpu"]
        procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert "3 written" in errs[0] and "3 written" in errs[1]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [f"{i}.png" for i in range(6)]


def test_rank_share_partition():
    from srgan_cli.commands.upscale import Job, rank_share

    jobs = [Job(Path(f"{i}"), Path(f"o{i}"), None) for i in range(7)]
    shares = []
    for rank in range(3):
        os.environ.update(WORLD_SIZE="3", RANK=str(rank), LOCAL_RANK=str(rank))
        try:
            shares.append(rank_share(jobs)[0])
        finally:
            for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
                os.environ.pop(key, None)
    flat = [j.src for share in shares for j in share]
    assert sorted(flat) == sorted(j.src for j in jobs) and len(flat) == len(set(flat))


def test_reading_overlaps_inference_and_stays_bounded(weights, tmp_path, monkeypatch):
    """The reader works ahead while the network runs, but never more than the queue allows."""
    import threading
    import time

    import srgan_cli.api as api
    from srgan_cli.commands import upscale as cmd

    for i in range(8):
        _img(tmp_path / "in" / f"{i}.png", size=(6, 5), seed=i)
    log: list[tuple[str, str]] = []
    lock = threading.Lock()
    real_read, real_infer = cmd._read, api.upscale_loaded

    def read(path, max_pixels):
        with lock:
            log.append(("read", path.name))
        return real_read(path, max_pixels)

    def infer(model, loaded, **kwargs):
        time.sleep(0.05)
        with lock:
            log.append(("infer", ""))
        return real_infer(model, loaded, **kwargs)

    monkeypatch.setattr(cmd, "_read", read)
    monkeypatch.setattr(api, "upscale_loaded", infer)
    assert run(weights, tmp_path / "in", "-o", tmp_path / "o").exit_code == 0
    assert len(list((tmp_path / "o").iterdir())) == 8
    first_infer = log.index(("infer", ""))
    assert sum(kind == "read" for kind, _ in log[:first_infer]) >= 2  # next image decoded during inference
    ahead = max(
        sum(k == "read" for k, _ in log[: i + 1]) - sum(k == "infer" for k, _ in log[: i + 1]) for i in range(len(log))
    )
    assert ahead <= cmd.QUEUE_SIZE + 2  # queued + the one being handed over + the one in inference


def test_missing_single_input_names_the_file_not_the_output(weights, tmp_path):
    out = tmp_path / "out.png"
    result = CliRunner().invoke(main, ["upscale", "-m", str(weights), str(tmp_path / "nope.png"), "-o", str(out)])
    assert result.exit_code == 1
    assert "nope.png: no such file or folder" in result.output
    assert "looks like an image file name" not in result.output
    dangling = tmp_path / "dangling.png"
    dangling.symlink_to(tmp_path / "gone.png")
    result = run(weights, dangling, "-o", out)
    assert result.exit_code == 1 and "dangling.png: a symbolic link to a missing file" in result.output
    assert not out.exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="names of bytes that are not UTF-8: Linux")
def test_a_name_that_is_not_utf8_shows_its_byte_in_messages(weights, tmp_path):
    """An error line wrote a name's undecodable byte as stderr writes its surrogate, "miss\\udcff.png",
    where the failed list wrote it $'miss\\377.png': the byte is written \\xff, as other odd characters."""
    missing = os.fsdecode(bytes(tmp_path) + b"/miss\xff.png")
    result = run(weights, missing, "-o", tmp_path / "z.png", "--report", tmp_path / "r.json")
    assert result.exit_code == 1
    assert f"error: {tmp_path}/miss\\xff.png: no such file or folder" in result.stderr, result.stderr
    assert "\\udc" not in result.stderr and f"$'{tmp_path}/miss\\377.png'" in result.stderr
    record = json.loads((tmp_path / "r.json").read_text())["files"][0]
    assert record["input"] == missing and "miss\\xff.png" in record["reason"], record  # the input as it was


def _cli(*args: str, data: bytes) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "srgan_cli", "upscale", *args]
    return subprocess.run(cmd, input=data, capture_output=True, env=env, timeout=120, check=False)


def test_pipe_in_and_out_gives_the_file_output(weights, tmp_path):
    """`srgan upscale - -o -` reads the image from stdin and writes it, whole, to stdout,
    in the input's format unless --format says otherwise; the same pixels as from files."""
    src = _img(tmp_path / "in.png", size=(16, 12), seed=3)
    assert run(weights, src, "-o", tmp_path / "file.png").exit_code == 0
    piped = _cli("-", "-o", "-", "-m", str(weights), "-q", data=src.read_bytes())
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == b""
    (tmp_path / "piped.png").write_bytes(piped.stdout)
    assert np.array_equal(np.asarray(_decodes(tmp_path / "piped.png")), np.asarray(_decodes(tmp_path / "file.png")))
    jpeg = tmp_path / "in.jpg"
    Image.open(src).save(jpeg, quality=95)
    as_jpeg = _cli("-", "-o", "-", "-m", str(weights), "-q", data=jpeg.read_bytes())
    as_webp = _cli(str(jpeg), "-o", "-", "--format", "webp", "-m", str(weights), "-q", data=b"")
    assert as_jpeg.returncode == 0 and as_jpeg.stdout.startswith(b"\xff\xd8\xff")
    assert as_webp.returncode == 0 and as_webp.stdout[8:12] == b"WEBP"
    to_file = _cli("-", "-o", str(tmp_path / "from_stdin.png"), "-m", str(weights), "-q", data=src.read_bytes())
    assert to_file.returncode == 0 and to_file.stdout == b""
    assert _decodes(tmp_path / "from_stdin.png").size == (64, 48)


@pytest.mark.parametrize(
    ("args", "data", "code", "message"),
    [
        (["-", "-o", "-"], b"not an image at all", 1, "-: standard input is not a PNG"),
        # a phone's HEIC, a PDF scan, an SVG piped in: named, with what to do (was "not a PNG, JPEG, ...")
        (
            ["-", "-o", "-"],
            b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
            1,
            "-: standard input is in HEIC format, which srgan does not read; convert it to JPEG or PNG",
        ),
        (
            ["-", "-o", "-"],
            b"%PDF-1.7\n",
            1,
            "-: standard input is in PDF format, which srgan does not read; render its page",
        ),
        (
            ["-", "-o", "-"],
            b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
            1,
            "-: standard input is in SVG format",
        ),
        (["-", "-o", "-"], b"", 1, "-: standard input is empty"),
        (["-", "-o", "-"], "truncated", 1, "-: cannot decode"),
        (["-", "-o", "folder/"], "png", 2, "-o must be an image file name or '-'"),
        (["-", "-o", "notes.txt"], "png", 2, "-o must be an image file name or '-'"),
        (["-", "{src}", "-o", "x.png"], "png", 2, "must be the only input"),
        (["{src}", "{src}", "-o", "-"], b"", 2, "takes exactly one input image"),
        (["{notes}", "-o", "-"], b"", 1, "notes.txt: unknown image suffix '.txt'"),
    ],
)
def test_pipe_errors_are_one_line_and_name_the_stream(weights, tmp_path, args, data, code, message):
    src = _img(tmp_path / "in.png", size=(16, 12))
    if data == "png":
        data = src.read_bytes()
    elif data == "truncated":
        data = src.read_bytes()[:60]
    (tmp_path / "notes.txt").write_text("not a picture")
    args = [a.replace("{src}", str(src)).replace("{notes}", str(tmp_path / "notes.txt")) for a in args]
    result = CliRunner().invoke(main, ["upscale", "-m", str(weights), "-q", *args], input=data)
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output
    assert "srgan-stdio" not in result.output and "stdin." not in result.output  # staged names never show
    assert not (tmp_path / "x.png").exists()


class _Stream(io.RawIOBase):
    """Standard input of ``head`` and then zeros, ``total`` bytes in all, counting what is read of it;
    ``fail``: the exception a read raises once ``head`` is read."""

    def __init__(self, head: bytes, total: int, fail: BaseException | None = None) -> None:
        self.head, self.total, self.fail, self.served = head, total, fail, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.fail is not None and self.served >= len(self.head):
            raise self.fail
        n = min(len(buffer), self.total - self.served)
        start = self.head[self.served : self.served + n]
        buffer[:n] = start + bytes(n - len(start))
        self.served += n
        return n


def test_a_stream_that_is_no_image_is_refused_from_its_first_bytes(weights, tmp_path):
    """`srgan upscale - < /dev/zero` read all of standard input before it looked at it: a MemoryError
    traceback under a memory limit, or the OOM killer (exit 137, no word) without one."""
    stream = _Stream(b"", 64 << 20)  # stands in for /dev/zero: an old srgan read all 64 MiB
    result = run(weights, "-", "-o", tmp_path / "x.png", input=io.BufferedReader(stream))
    assert result.exit_code == 1 and "-: standard input is not a PNG" in result.stderr, result.output
    assert stream.served < 1 << 20 and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("fail", [OSError(errno.EIO, "Input/output error"), MemoryError()])
def test_a_failed_read_of_standard_input_is_one_line(weights, tmp_path, fail):
    png = _img(tmp_path / "in.png", size=(64, 64)).read_bytes()
    result = run(weights, "-", "-o", tmp_path / "x.png", input=io.BufferedReader(_Stream(png, len(png), fail)))
    why = "Input/output error" if isinstance(fail, OSError) else "out of memory"
    assert result.exit_code == 1 and result.stderr == f"error: -: cannot read standard input ({why})\n"


def test_standard_input_past_what_max_pixels_allows_is_refused_as_it_is_read(weights, tmp_path, monkeypatch):
    """A PNG followed by an endless stream (`cat a.png /dev/zero`) filled the temporary folder: past 64
    bytes a pixel of --max-pixels (and 1 GiB, left out here) it is refused; real images of that many
    pixels, a 16-bit RGBA TIFF of noise among them, are well inside."""
    from srgan_cli.commands import upscale as cmd

    monkeypatch.setattr(cmd, "_STDIN_SPARE", 0)
    png = _img(tmp_path / "in.png", size=(40, 25)).read_bytes()
    stream = _Stream(png, 64 * 1000 + (4 << 20))
    result = run(weights, "-", "-o", tmp_path / "x.png", "--max-pixels", 1000, input=io.BufferedReader(stream))
    assert result.exit_code == 1 and result.stderr.startswith(
        "error: -: standard input runs past 0.1 MiB, more than an image of --max-pixels 1000 takes; if it is an "
        "image, raise --max-pixels or save it to a file and give the file's name\n"
    ), result.stderr
    assert stream.served < 64 * 1000 + (2 << 20) and not (tmp_path / "x.png").exists()
    rng = np.random.default_rng(0)  # noise: deflate leaves the TIFF at its 8 bytes a pixel
    tiff = tmp_path / "deep.tif"
    images.write_image(tiff, rng.random((25, 40, 3), dtype=np.float32), alpha=rng.random((25, 40)), bit_depth=16)
    assert tiff.stat().st_size > 8 * 1000
    for data in (png, tiff.read_bytes()):
        result = run(weights, "-", "-o", tmp_path / "x.png", "--max-pixels", 1000, "--overwrite", input=data)
        assert result.exit_code == 0, result.output


@pytest.mark.parametrize("mode", ["RGB", "L", "1"])
def test_netpbm_from_stdin(weights, tmp_path, mode):
    import io

    buf = io.BytesIO()
    Image.open(_img(tmp_path / "in.png")).convert(mode).save(buf, format="PPM")  # P6, P5 or P4
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), "-q", "-", "-o", str(tmp_path / "x.png")], input=buf.getvalue()
    )
    assert result.exit_code == 0, result.output  # was: "not a PNG, JPEG, WebP, TIFF, BMP or GIF image"
    assert _decodes(tmp_path / "x.png").size == (48, 40)


def test_format_same_must_agree_with_the_output_name(weights, tmp_path):
    src = tmp_path / "in.jpg"
    Image.open(_img(tmp_path / "in.png")).save(src)
    result = run(weights, src, "-o", tmp_path / "x.png", "--format", "same")
    assert result.exit_code == 2 and "--format same writes" in result.output  # was: a PNG, silently
    assert run(weights, src, "-o", tmp_path / "x.jpg", "--format", "same").exit_code == 0


def test_the_summary_names_the_files_that_failed(weights, tmp_path):
    _img(tmp_path / "in" / "a.png")
    for name in ("b.png", "c.jpg"):
        (tmp_path / "in" / name).write_bytes(b"not an image")
    result = run(weights, tmp_path / "in", "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == f"failed: {tmp_path / 'in' / 'b.png'}, {tmp_path / 'in' / 'c.jpg'}"


def test_report_lists_every_file_with_its_status_and_matches_the_summary(weights, tmp_path):
    import json

    src = tmp_path / "in"
    _img(src / "a.png")
    _img(src / "sub" / "b.png", seed=1)
    (src / "broken.png").write_bytes(b"not a png")
    (src / "notes.txt").write_text("x")
    out = tmp_path / "out"
    _img(out / "sub" / "b.png", seed=2)  # exists: skipped with --skip-existing
    report = tmp_path / "report.json"
    result = run(weights, src, "-o", out, "--recursive", "--skip-existing", "--report", report)
    assert result.exit_code == 1  # one image failed
    doc = json.loads(report.read_text())
    assert doc["schema_version"] == 1 and doc["ended"] == "completed"
    assert (doc["written"], doc["skipped"], doc["failed"]) == (1, 2, 1)
    assert doc["model"] == {"name": "tiny", "sha256": sha256_file(weights), "ensemble": False} and doc["srgan_version"]
    assert "1 written, 2 skipped, 1 failed" in result.stderr
    by_input = {Path(f["input"]).name: f for f in doc["files"]}
    assert set(by_input) == {"a.png", "b.png", "broken.png", "notes.txt"}
    assert by_input["a.png"]["status"] == "written" and Path(by_input["a.png"]["output"]) == out / "a.png"
    assert by_input["b.png"]["status"] == "skipped" and "exists" in by_input["b.png"]["reason"]
    assert by_input["notes.txt"]["status"] == "skipped" and by_input["notes.txt"]["output"] is None
    broken = by_input["broken.png"]
    assert broken["status"] == "failed" and broken["reason"] in result.stderr  # the error line's text
    _no_parts(tmp_path)


def test_the_report_gives_each_file_its_notes_also_under_quiet(weights, tmp_path):
    # a script reading --report learns that an animation lost its frames, which -q did not print
    import json

    frames = [Image.new("RGB", (10, 8), c) for c in ("red", "green", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    _img(tmp_path / "plain.png")
    report = tmp_path / "r.json"
    result = run(weights, tmp_path / "anim.gif", tmp_path / "plain.png", "-o", tmp_path / "out", "--report", report)
    assert result.exit_code == 0 and "frames" not in result.stderr  # -q
    by_input = {Path(f["input"]).name: f for f in json.loads(report.read_text())["files"]}
    assert by_input["anim.gif"]["notes"] == [f"{tmp_path / 'anim.gif'}: 3 frames; only the first is upscaled"]
    assert by_input["plain.png"]["notes"] == []
    # from standard input, named '-' as the messages name it
    result = CliRunner().invoke(
        main,
        ["upscale", "-m", str(weights), "-q", "-", "-o", str(tmp_path / "o.png"), "--report", "-"],
        input=(tmp_path / "anim.gif").read_bytes(),
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"][0]["notes"] == ["-: 3 frames; only the first is upscaled"]


def test_report_replaces_an_earlier_report_but_never_another_file(weights, tmp_path):
    import json

    _img(tmp_path / "a.png")
    report = tmp_path / "r.json"
    for overwrite in ((), ("--overwrite",)):
        assert run(weights, tmp_path / "a.png", "-o", tmp_path / "b.png", *overwrite, "--report", report).exit_code == 0
    assert json.loads(report.read_text())["written"] == 1  # the second run's report
    image = tmp_path / "a.png"
    before = image.read_bytes()
    result = run(weights, image, "-o", tmp_path / "c.png", "--report", image)
    assert result.exit_code == 2 and "not an srgan report" in result.output and image.read_bytes() == before
    result = run(weights, image, "-o", tmp_path / "c.png", "--report", image / "r.json")
    assert result.exit_code == 2 and "a.png: is a file, not a folder" in result.output
    assert run(weights, image, "-o", "-", "--report", "-").exit_code == 2  # stdout is taken by the image


def test_a_report_makes_its_folder_as_the_outputs_do(weights, tmp_path):
    """`-o big/ --report big/report.json` on a first run was refused: "big: no such folder",
    though -o makes big/ (bench --save-images makes its folder too)."""
    import json

    _img(tmp_path / "in" / "a.png")
    result = run(weights, tmp_path / "in", "-o", tmp_path / "big", "--report", tmp_path / "big" / "logs" / "r.json")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "big" / "a.png").exists()
    assert json.loads((tmp_path / "big" / "logs" / "r.json").read_text())["written"] == 1
    # a folder that cannot be made is refused before any image is upscaled, not once all are done
    folder_names = [f"{tmp_path}/new/..", f"{tmp_path}/rdir/", f"{tmp_path}/rdir/."]  # rdir/: a report named rdir
    cases = [
        *((name, "is a folder name") for name in folder_names),
        (tmp_path / "in" / "a.png" / "r.json", "is a file"),
    ]
    for report, why in cases:
        result = run(weights, tmp_path / "in", "-o", tmp_path / "big2", "--report", report)
        assert result.exit_code == 2 and why in result.output, result.output
        assert not (tmp_path / "big2").exists() and not (tmp_path / "new").exists() and not (tmp_path / "rdir").exists()


def test_rerun_in_place_with_a_suffix_skips_its_earlier_outputs(weights, tmp_path):
    folder = tmp_path / "photos"
    _img(folder / "a.png")
    _img(folder / "b.jpg")
    _img(folder / "c_x4.png")  # the user's own file with an output-like name: still an input
    assert run(weights, folder, "-o", folder, "--suffix", "_x4").exit_code == 0
    made = sorted(p.name for p in folder.iterdir())
    assert made == ["a.png", "a_x4.png", "b.jpg", "b_x4.jpg", "c_x4.png", "c_x4_x4.png"]
    for flag in ("--skip-existing", "--overwrite"):  # cron's rerun; a redo
        result = run(weights, folder, "-o", folder, "--suffix", "_x4", flag)
        assert result.exit_code == 0, result.output  # was: "would replace an input image", and x16 files
        assert sorted(p.name for p in folder.iterdir()) == made


def test_a_gif_output_records_the_model_in_its_comment_and_a_rerun_skips_it(weights, tmp_path):
    """GIF output carried no mark: a rerun into the input folder upscaled its own outputs again (x16)."""
    folder = tmp_path / "photos"
    src = _img(folder / "a.png")
    Image.open(src).save(folder / "b.gif", comment=b"my drawing")
    assert run(weights, folder, "-o", folder, "--suffix", "_x4", "--format", "gif").exit_code == 0
    made = sorted(p.name for p in folder.iterdir())
    assert made == ["a.png", "a_x4.gif", "b.gif", "b_x4.gif"]
    with Image.open(folder / "b_x4.gif") as im:
        lines = im.info["comment"].decode().split("\n")
    assert lines[0] == "my drawing" and lines[1].startswith("Software: srgan ")  # the input's comment kept
    assert "srgan:model: tiny" in lines and "srgan:scale: 4" in lines
    for flag in ("--skip-existing", "--overwrite"):
        result = run(weights, folder, "-o", folder, "--suffix", "_x4", "--format", "gif", flag)
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in folder.iterdir()) == made
    # read again, the mark is not the picture's comment: a PNG made from it holds the comment alone
    assert run(weights, folder / "b_x4.gif", "-o", tmp_path / "again.png").exit_code == 0
    with Image.open(tmp_path / "again.png") as im:
        assert im.text["Comment"] == "my drawing" and im.text["srgan:scale"] == "4"


def test_a_bmp_rerun_in_place_does_not_upscale_its_earlier_outputs(weights, tmp_path):
    """BMP holds no mark: a rerun upscaled a_x4.bmp to x16 and failed a.png on "would replace an input".
    By its name it is a.png's output in this run: not upscaled; --overwrite does not replace it either, as
    srgan cannot tell it from a file of the user's."""
    folder = tmp_path / "photos"
    _img(folder / "a.png")
    args = [folder, "-o", folder, "--suffix", "_x4", "--format", "bmp"]
    result = CliRunner().invoke(main, ["upscale", "-m", str(weights), *map(str, args)])
    assert result.exit_code == 0 and "a_x4.bmp: the model and scale are not recorded" in result.stderr
    first = (folder / "a_x4.bmp").read_bytes()
    result = run(weights, *args, "--skip-existing")
    assert result.exit_code == 0 and sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x4.bmp"], result.output
    result = run(weights, *args, "--overwrite")
    assert result.exit_code == 1 and "a_x4.bmp: not replaced: BMP records no maker" in result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x4.bmp"]
    assert (folder / "a_x4.bmp").read_bytes() == first
    # named on the command line, it is an input again
    assert run(weights, folder / "a_x4.bmp", "-o", tmp_path / "big.png").exit_code == 0


def test_a_broken_symlink_in_a_folder_is_a_failure_not_silence(weights, tmp_path):
    _img(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    result = run(weights, tmp_path / "in", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "gone.png: a symbolic link to a missing file" in result.stderr
    assert "1 written, 0 skipped, 1 failed" in result.stderr and (tmp_path / "out" / "a.png").exists()


def test_a_folder_where_an_output_would_go_is_a_failure_not_a_skip(weights, tmp_path):
    _img(tmp_path / "in" / "a.png")
    (tmp_path / "out" / "a.png").mkdir(parents=True)
    for flags in ((), ("--skip-existing",), ("--overwrite",)):  # was: "1 skipped", exit 0, and no image
        result = run(weights, tmp_path / "in", "-o", tmp_path / "out", *flags)
        assert result.exit_code == 1 and "out/a.png: is a folder" in result.stderr, result.output
        assert ".part" not in result.stderr


def test_report_never_takes_an_output_images_name(weights, tmp_path):
    _img(tmp_path / "in" / "a.png")
    _img(tmp_path / "in" / "b.png")
    (tmp_path / "o").mkdir()
    for src, out, report in (("in/a.png", "out.png", "out.png"), ("in", "o", "o/b.png")):
        result = run(weights, tmp_path / src, "-o", tmp_path / out, "--report", tmp_path / report)
        assert result.exit_code == 2 and "one of the output images" in result.output, result.output
        assert not (tmp_path / "out.png").exists() and not list((tmp_path / "o").iterdir())


def test_a_report_named_as_the_output_folder_is_refused_before_the_work(weights, tmp_path):
    _img(tmp_path / "a.png")
    result = run(weights, tmp_path / "a.png", "-o", tmp_path / "big", "--report", tmp_path / "big")
    assert result.exit_code == 2 and "is -o's output folder" in result.output, result.output
    assert not (tmp_path / "big").exists()  # the image was written first, then the report failed: exit 1
    result = run(weights, tmp_path / "a.png", "-o", f"{tmp_path / 'big.png'}/", "--report", tmp_path / "big.png")
    assert result.exit_code == 2 and "is -o's output folder" in result.output, result.output  # a folder by its /
    assert not (tmp_path / "big.png").exists()


def test_a_report_that_cannot_be_written_fails_the_run(weights, tmp_path, monkeypatch):
    # images first: imported while atomic_path is patched (this test run alone), it kept no_room for good
    from srgan_cli import fsutil, images  # noqa: F401

    def no_room(*args, **kwargs):
        raise OSError(28, "No space left on device")

    _img(tmp_path / "a.png")
    monkeypatch.setattr(fsutil, "atomic_path", no_room)  # the report's (images.py holds its own reference)
    result = run(weights, tmp_path / "a.png", "-o", tmp_path / "b.png", "--report", tmp_path / "r.json")
    assert result.exit_code == 1 and "cannot write the report" in result.stderr
    assert (tmp_path / "b.png").exists() and not (tmp_path / "r.json").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="no ulimit -f on Windows")
def test_a_write_past_the_file_size_limit_names_the_limit(weights, tmp_path, monkeypatch):
    """Under `ulimit -f` the image's write said only "[Errno 27] File too large", and the report's
    "File too large": both name the limit, and the file system's largest file, as the cause."""
    import resource

    from srgan_cli import fsutil, images  # noqa: F401  (images first: see the test above)

    src = _img(tmp_path / "a.png", size=(64, 64), seed=2)  # a 256x256 output of random pixels: ~200 KB
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "srgan_cli", "upscale", str(src), "-o", str(tmp_path / "b.png"), "-m", str(weights)]
    limit = 64 * 1024

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run(cmd, capture_output=True, env=env, timeout=120, check=False, preexec_fn=small_files)
    err = done.stderr.decode()
    assert done.returncode == 1 and "Traceback" not in err, err
    assert f"{tmp_path / 'b.png'}: cannot write the image: file too large: over the file-size limit" in err, err
    assert "ulimit -f" in err and "4 GiB on FAT32" in err and "[Errno" not in err
    assert not (tmp_path / "b.png").exists() and not list(tmp_path.glob(".b.png.*"))

    def too_large(*args, **kwargs):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(fsutil, "atomic_path", too_large)  # the report's
    result = run(weights, src, "-o", tmp_path / "c.png", "--report", tmp_path / "r.json")
    assert result.exit_code == 1 and "cannot write the report (file too large: over the" in result.stderr
    assert "ulimit -f" in result.stderr, result.stderr


def test_report_names_stdin_as_dash_also_when_the_output_is_refused(weights, tmp_path):
    import json

    png = _img(tmp_path / "a.png").read_bytes()
    out, report = _img(tmp_path / "exists.png", seed=3), tmp_path / "r.json"
    args = ["upscale", "-m", str(weights), "-q", "-", "-o", str(out), "--report", str(report)]
    result = CliRunner().invoke(main, args, input=png)
    assert result.exit_code == 1  # the output exists and --overwrite was not given
    (record,) = json.loads(report.read_text())["files"]
    assert record["input"] == "-" and record["status"] == "failed"


def test_report_to_stdout_and_after_a_fail_fast_stop(weights, tmp_path):
    import json

    src = tmp_path / "in"
    (src / "a_broken.png").parent.mkdir(parents=True)
    (src / "a_broken.png").write_bytes(b"junk")
    _img(src / "b.png")
    result = run(weights, src, "-o", tmp_path / "out", "--fail-fast", "--report", "-")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    # every file is listed: those the stop came before as not started (the report left them out)
    assert doc["failed"] == 1 and [f["status"] for f in doc["files"]] == ["failed", "not_started"]
    assert doc["not_started"] == 1 and doc["files"][1]["input"] == str(src / "b.png")
    assert doc["ended"].startswith("stopped: --fail-fast")
    assert "0 written, 0 skipped, 1 failed, 1 not started" in result.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_or_closed_stream_is_one_line_and_never_stops_a_batch(weights, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    srgan = [sys.executable, "-m", "srgan_cli"]
    for name in ("a.png", "c.png"):
        _img(tmp_path / "in" / name)
    (tmp_path / "in" / "b.png").write_bytes(b"not an image")
    with open("/dev/full", "w") as full:
        # stderr full: printing b.png's error raised and stopped the batch before c.png
        batch = [*srgan, "upscale", "-m", str(weights), str(tmp_path / "in"), "-o", str(tmp_path / "out")]
        done = subprocess.run(batch, stderr=full, env=env, timeout=120, check=False)
        assert done.returncode == 1 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]
        # stdout full: a traceback before
        listed = subprocess.run([*srgan, "models", "--json"], stdout=full, stderr=subprocess.PIPE, env=env, timeout=120)
        assert listed.returncode == 1 and listed.stderr.decode().splitlines() == [
            "error: cannot write the output: No space left on device"
        ]
    closed = subprocess.run(
        [*srgan, "upscale", "-m", str(weights), str(tmp_path / "in" / "a.png"), "-o", "-"],
        stderr=subprocess.PIPE,
        env=env,
        timeout=120,
        check=False,
        preexec_fn=lambda: os.close(1),
    )
    assert closed.returncode == 1 and "standard output is closed" in closed.stderr.decode()


def test_exif_without_an_exif_ifd_to_tiff_and_a_caption_kept(weights, tmp_path):
    from PIL import TiffImagePlugin

    from srgan_cli.commands.upscale import _written_by_srgan

    # A scanner's TIFF with only Software/Artist tags, and srgan's own JPEG output, failed to upscale
    # to TIFF: "cannot encode the image as TIFF (Error setting from dictionary)".
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[0x0131], tags[0x013B] = "Epson Scan 2", "Jane Archivist"
    Image.new("RGB", (6, 5), (120, 120, 120)).save(tmp_path / "scan.tif", tiffinfo=tags)
    result = run(weights, tmp_path / "scan.tif", "-o", tmp_path / "scan_x4.tif")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "scan_x4.tif") as im:
        assert im.size == (24, 20) and im.tag_v2[0x013B] == "Jane Archivist"
    assert _written_by_srgan(tmp_path / "scan_x4.tif")
    _img(tmp_path / "plain.png")
    assert run(weights, tmp_path / "plain.png", "-o", tmp_path / "p.jpg").exit_code == 0
    result = run(weights, tmp_path / "p.jpg", "-o", tmp_path / "p.tif")
    assert result.exit_code == 0, result.output
    # The input's caption was replaced by the model and scale; srgan still knows the file as its own.
    exif = Image.Exif()
    exif[0x010E] = "Grandma at the harbour, 1952"
    Image.new("RGB", (6, 5), (120, 60, 30)).save(tmp_path / "cap.jpg", exif=exif.tobytes())
    for name in ("cap_x4.jpg", "cap_x4.tif"):
        assert run(weights, tmp_path / "cap.jpg", "-o", tmp_path / name).exit_code == 0
        with Image.open(tmp_path / name) as im:
            assert im.getexif()[0x010E] == "Grandma at the harbour, 1952" and 0x8769 not in im.getexif()
        assert _written_by_srgan(tmp_path / name)


def test_sixteen_bit_tiff_keeps_artist_and_copyright(weights, tmp_path):
    from PIL import TiffImagePlugin

    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[0x013B], tags[0x8298], tags[0x010E] = "Jane Archivist", "(c) County Archive", "Parish register 1832"
    deep = np.random.default_rng(4).integers(0, 65536, (6, 8), dtype=np.uint16)
    Image.fromarray(deep).save(tmp_path / "scan16.tif", tiffinfo=tags)
    assert run(weights, tmp_path / "scan16.tif", "-o", tmp_path / "o.tif").exit_code == 0
    with Image.open(tmp_path / "o.tif") as im:
        assert im.mode.startswith("I") and np.asarray(im).max() > 255  # still 16-bit
        assert im.tag_v2[0x013B] == "Jane Archivist" and im.tag_v2[0x8298] == "(c) County Archive"
        assert im.tag_v2[0x010E] == "Parish register 1832" and im.tag_v2[0x0131].startswith("srgan ")


def test_transparent_image_to_jpeg_is_flattened_onto_white(weights, tmp_path):
    # The alpha plane was dropped: the colour upscale fills under transparency (the disc's) showed.
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., :3] = (30, 30, 160)
    rgba[4:12, 4:12, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "logo.png")
    assert run(weights, tmp_path / "logo.png", "-o", tmp_path / "big.png").exit_code == 0
    assert run(weights, tmp_path / "logo.png", "-o", tmp_path / "big.jpg").exit_code == 0
    png = np.asarray(Image.open(tmp_path / "big.png"), np.float64)
    jpg = np.asarray(Image.open(tmp_path / "big.jpg"), np.float64)
    a = png[..., 3:] / 255
    flat = png[..., :3] * a + 255 * (1 - a)
    assert np.abs(jpg[:8, :8] - 255).max() <= 1  # the transparent corner is white
    assert np.abs(jpg - flat).mean() < 3
    args = ["upscale", "-m", str(weights), str(tmp_path / "logo.png"), "-o", str(tmp_path / "again.jpg")]
    result = CliRunner().invoke(main, args)  # not -q: the note is shown
    assert result.exit_code == 0 and "alpha flattened onto white: JPEG has no transparency" in result.output


def test_a_jpegs_extended_xmp_reaches_the_output(weights, tmp_path):
    # a description over 64 KB, in the JPEG's extended-XMP segments, was lost by srgan upscale
    description = b"word " * 30000
    extended_xmp_jpeg(tmp_path / "in.jpg", description)
    for name in ("out.jpg", "out.tif"):
        result = run(weights, tmp_path / "in.jpg", "-o", tmp_path / name)
        assert result.exit_code == 0 and result.stderr == "", result.output
        got = images.read_image(tmp_path / name)
        assert description in (got.xmp_extension or got.xmp)


def test_a_clipping_path_reaches_jpeg_output(weights, tmp_path):
    name = b"\x07Outline"
    paths = b"8BIM\x07\xd0\x00\x00" + (26).to_bytes(4, "big") + bytes(26)  # one path record
    paths += b"8BIM\x0b\xb7\x00\x00" + (len(name) + 2).to_bytes(4, "big") + name + b"\x00\x00"
    body = b"Photoshop 3.0\x00" + paths
    Image.open(_img(tmp_path / "a.png")).save(
        tmp_path / "in.jpg", extra=b"\xff\xed" + (len(body) + 2).to_bytes(2, "big") + body
    )
    result = run(weights, tmp_path / "in.jpg", "-o", tmp_path / "out.jpg")
    assert result.exit_code == 0, result.output
    assert images.read_image(tmp_path / "out.jpg").photoshop == paths


@pytest.mark.parametrize("outscale", [None, "2"])
def test_a_black_and_white_photo_stored_as_rgb_comes_back_neutral(weights, tmp_path, outscale):
    # a B&W scan saved as RGB came back with a faint tint (channels up to 15 levels apart), where the
    # same picture saved as gray came back neutral: now the two give the same pixels
    gray = np.random.default_rng(5).integers(0, 256, (14, 18), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "g.png")
    Image.fromarray(gray).convert("RGB").save(tmp_path / "rgb.png")
    nearly = np.repeat(gray[..., None], 3, axis=2)
    nearly[0, 0, 2] ^= 1  # one sample off: a colour picture, left as the model makes it
    Image.fromarray(nearly).save(tmp_path / "c.png")
    extra = ["--outscale", outscale] if outscale else []
    for name in ("g", "rgb", "c"):
        result = run(weights, tmp_path / f"{name}.png", "-o", tmp_path / f"{name}_x.png", "--precision", "fp32", *extra)
        assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "rgb_x.png") as im, Image.open(tmp_path / "g_x.png") as g:
        assert im.mode == "RGB" and g.mode == "L"
        out = np.asarray(im)
        assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
        assert np.abs(out[..., 0].astype(int) - np.asarray(g).astype(int)).max() <= (1 if outscale else 0)
    with Image.open(tmp_path / "c_x.png") as im:
        out = np.asarray(im).astype(int)
        assert (out.max(axis=2) - out.min(axis=2)).max() > 1


def test_xmp_rights_and_keywords_reach_every_output_format(weights, tmp_path):
    # XMP (dc:rights, dc:subject, Lightroom edits) was dropped: archivists lost rights and keywords.
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"'
        b' xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6">'
        b'<dc:rights><rdf:Alt><rdf:li xml:lang="x-default">(c) County Archive</rdf:li></rdf:Alt></dc:rights>'
        b"<dc:subject><rdf:Bag><rdf:li>harbour</rdf:li></rdf:Bag></dc:subject>"
        b"</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    Image.new("RGB", (6, 5), (120, 60, 30)).save(tmp_path / "scan.jpg", xmp=xmp)
    for name in ("o.jpg", "o.png", "o.webp", "o.tif"):
        assert run(weights, tmp_path / "scan.jpg", "-o", tmp_path / name).exit_code == 0
        with Image.open(tmp_path / name) as im:
            # turned upright as the EXIF orientation is, and then says so (a viewer must not turn it again); the
            # packet is kept byte for byte, srgan's record of the model and scale added but for PNG (its text)
            got = im.info.get("xmp")
            assert im.size == (20, 24)
            assert images._xmp_without_record(got) == xmp.replace(b'Orientation="6"', b'Orientation="1"')
            assert srgan_record(got).get("srgan:model") == (None if name.endswith(".png") else "tiny")


def test_png_gamma_reaches_the_png_output(weights, tmp_path):
    # A PNG with gAMA 1.0 came out with IHDR/tEXt/IDAT/IEND only: shown at another brightness.
    Image.new("RGB", (6, 5), (120, 60, 30)).save(tmp_path / "lin.png")
    data = (tmp_path / "lin.png").read_bytes()
    gama = b"gAMA" + (100000).to_bytes(4, "big")
    chunk = (4).to_bytes(4, "big") + gama + zlib.crc32(gama).to_bytes(4, "big")
    (tmp_path / "lin.png").write_bytes(data[:33] + chunk + data[33:])  # after the signature and IHDR
    assert run(weights, tmp_path / "lin.png", "-o", tmp_path / "o.png").exit_code == 0
    with Image.open(tmp_path / "o.png") as im:
        assert im.size == (24, 20) and im.info.get("gamma") == 1.0
    # other formats have no gAMA chunk: it was dropped without a word; an ICC profile says the same now
    from PIL import ImageCms

    for name in ("o.jpg", "o.tif"):
        assert run(weights, tmp_path / "lin.png", "-o", tmp_path / name).exit_code == 0
        with Image.open(tmp_path / name) as im:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"]))
        to_srgb = ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), "RGB", "RGB")
        mid = ImageCms.applyTransform(Image.new("RGB", (1, 1), (128, 128, 128)), to_srgb).getpixel((0, 0))
        assert mid == (188, 188, 188), name  # linear light's mid-gray, as sRGB shows it


def test_quality_with_a_lossless_output_says_it_is_not_used(weights, tmp_path):
    # --quality with PNG, TIFF or BMP output changed no byte, and said nothing.
    src = _img(tmp_path / "in" / "a.png")
    _img(tmp_path / "in" / "b.png", seed=1)
    args = ["upscale", "-m", str(weights), "--quality", "80"]
    for out, fmt in (("o.png", "PNG"), ("o.tif", "TIFF"), ("o.bmp", "BMP")):
        result = CliRunner().invoke(main, [*args, str(src), "-o", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
        assert f"note: --quality applies to JPEG, WebP and AVIF; {fmt} output is lossless\n" in result.output
    result = CliRunner().invoke(main, [*args, str(tmp_path / "in"), "-o", str(tmp_path / "folder")])
    assert result.exit_code == 0 and result.output.count("--quality applies") == 1  # once for the batch
    result = CliRunner().invoke(main, [*args, str(src), "-o", str(tmp_path / "o.jpg")])
    assert result.exit_code == 0 and "--quality" not in result.output


def test_format_gif_is_a_choice_as_the_gif_suffix_is(weights, tmp_path):
    src = _img(tmp_path / "in" / "a.png")
    assert run(weights, src, "-o", tmp_path / "a.gif", "--format", "gif").exit_code == 0
    assert run(weights, tmp_path / "in", "-o", tmp_path / "out", "--format", "GIF").exit_code == 0
    for path in (tmp_path / "a.gif", tmp_path / "out" / "a.gif"):
        with Image.open(path) as im:
            assert im.format == "GIF" and im.size == (48, 40)


def test_a_utf8_caption_keeps_its_characters(weights, tmp_path):
    """Phones and exiftool write UTF-8 in EXIF text tags; Pillow reads them as latin-1 and writes
    text as ASCII, so "Grand-mère" came out as "Grand-m??re" (in 8-bit TIFF output too, from
    Pillow's TIFF writer)."""
    exif = Image.Exif()
    exif[0x010E], exif[0x013B] = "Grand-mère à la plage".encode(), "Jürgen".encode()
    Image.new("RGB", (6, 5), (120, 60, 30)).save(tmp_path / "cap.jpg", exif=exif.tobytes())
    for name in ("o.jpg", "o.png", "o.webp", "o.tif"):
        assert run(weights, tmp_path / "cap.jpg", "-o", tmp_path / name).exit_code == 0
        with Image.open(tmp_path / name) as im:
            got = im.getexif()
        assert got[0x010E].encode("latin-1").decode("utf-8") == "Grand-mère à la plage", name
        assert got[0x013B].encode("latin-1").decode("utf-8") == "Jürgen", name


def test_gif_output_keeps_transparency_on_or_off_with_a_note(weights, tmp_path):
    """Pillow's RGBA-to-palette conversion dropped every transparent pixel for some alpha mixes."""
    rgba = np.zeros((4, 8, 4), np.uint8)
    rgba[:, :2] = (255, 0, 0, 255)
    rgba[:, 2:] = (0, 0, 255, 200)
    rgba[0, :, 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    args = ["upscale", "-m", str(weights), str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--format", "gif"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "GIF has no partial transparency" in result.output, result.output
    with Image.open(tmp_path / "out" / "a.gif") as im:
        alpha = np.asarray(im.convert("RGBA"))[..., 3]
    assert run(weights, tmp_path / "a.png", "-o", tmp_path / "a_x4.png").exit_code == 0
    with Image.open(tmp_path / "a_x4.png") as im:
        full = np.asarray(im)[..., 3]
    assert alpha[:3].max() == 0 and alpha[-4:].min() == 255  # the transparent top row stays transparent
    np.testing.assert_array_equal(alpha == 255, full >= 128)  # on where the PNG is at least half opaque


def test_xmp_in_a_png_text_chunk_keeps_its_bytes_and_turns_16_bit_upright(weights, tmp_path):
    """XMP in tEXt (not iTXt): its UTF-8 bytes were read as latin-1 and written re-encoded
    ("Ménage" became "MÃ©nage"); a 16-bit PNG ignored it, orientation included."""
    from PIL import PngImagePlugin

    packet = '<?xpacket begin="\ufeff"?><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description '
    packet += 'tiff:Orientation="6"><dc:rights>(c) Ménage</dc:rights></rdf:Description></x:xmpmeta>'
    info = PngImagePlugin.PngInfo()
    info.add_text("XML:com.adobe.xmp", packet.encode().decode("latin-1"))
    Image.new("RGB", (8, 4), (20, 40, 60)).save(tmp_path / "eight.png", pnginfo=info)
    deep = np.full((4, 8, 3), 30000, np.uint16)
    raw = _png16_bytes(deep, extra=[(b"tEXt", b"XML:com.adobe.xmp\x00" + packet.encode())])
    (tmp_path / "deep.png").write_bytes(raw)
    for name in ("eight.png", "deep.png"):
        assert run(weights, tmp_path / name, "-o", tmp_path / f"x_{name}").exit_code == 0
        data = (tmp_path / f"x_{name}").read_bytes()
        assert "(c) Ménage".encode() in data and "MÃ©nage".encode() not in data, name
        with Image.open(tmp_path / f"x_{name}") as im:
            assert im.size == (16, 32), name  # turned upright by the XMP's orientation 6


def _png16_bytes(rgb: np.ndarray, extra: list[tuple[bytes, bytes]]) -> bytes:
    """A 16-bit RGB PNG of ``rgb`` (H, W, 3) uint16 with ``extra`` chunks before IDAT."""
    import struct
    import zlib

    from srgan_cli.images import _png_chunk as chunk

    h, w, _ = rgb.shape
    rows = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    out += b"".join(chunk(k, b) for k, b in extra)
    return out + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("out_exists", [True, False], ids=["existing-o", "new-o"])
def test_an_output_name_too_long_fails_that_file_only(weights, tmp_path, out_exists):
    """A 255-byte input name plus --suffix makes an output name the file system refuses: with -o
    existing, Path.is_dir() raised OSError (ENAMETOOLONG) out of the whole batch, nothing written;
    with a new -o the file failed with the raw "OSError: [Errno 36] ..."."""
    _img(tmp_path / "in" / "a.png")
    _img(tmp_path / "in" / f"{'x' * 251}.png", seed=1)
    out = tmp_path / "out"
    if out_exists:
        out.mkdir()
    result = run(weights, tmp_path / "in", "-o", out, "--suffix", "_x4", "--skip-existing")
    assert result.exit_code == 1 and not isinstance(result.exception, OSError), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "too long for the file system; choose a shorter -o or --suffix" in errors[0]
    assert "Errno" not in result.stderr
    assert "1 written, 0 skipped, 1 failed" in result.stderr and [p.name for p in out.iterdir()] == ["a_x4.png"]


def test_an_empty_path_is_a_usage_error(weights, tmp_path, monkeypatch):
    """An unset variable ("$IN", "$OUT") is '', which Path() makes '.': every image of the
    current folder was upscaled, or the outputs went into it."""
    monkeypatch.chdir(tmp_path)
    _img(tmp_path / "a.png")
    _img(tmp_path / "in" / "b.png")
    before = sorted(p.name for p in tmp_path.iterdir())
    for args in (
        ["", "-o", "out"],
        ["in/b.png", "-o", ""],
        ["in", "-o", ""],
        ["in/b.png", "", "-o", "out"],
        ["in/b.png", "-o", "out", "--report", ""],
    ):
        result = run(weights, *args)
        assert result.exit_code == 2 and "an empty path" in result.output, (args, result.output)
    result = CliRunner().invoke(main, ["upscale", "-m", "", "in/b.png", "-o", "out"])
    assert result.exit_code == 2 and "an empty model" in result.output, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not (tmp_path / "out").exists()


def test_a_run_that_stops_at_its_input_still_replaces_an_earlier_report(weights, tmp_path):
    """A run that failed while reading stdin (before the batch) left the last run's report,
    which said "completed", in place."""
    import json

    report = tmp_path / "r.json"
    assert run(weights, _img(tmp_path / "a.png"), "-o", tmp_path / "b.png", "--report", report).exit_code == 0
    assert json.loads(report.read_text())["ended"] == "completed"
    args = ["upscale", "-m", str(weights), "-q", "-", "-o", str(tmp_path / "x.png"), "--report", str(report)]
    result = CliRunner().invoke(main, args, input=b"hello")
    assert result.exit_code == 1 and "standard input is not a PNG" in result.stderr
    doc = json.loads(report.read_text())
    assert doc["ended"].startswith("stopped: -: standard input is not a PNG"), doc["ended"]
    assert (doc["written"], doc["failed"], doc["files"]) == (0, 0, [])


def test_a_file_where_a_mirrored_subfolder_goes_fails_only_its_images(weights, tmp_path):
    """out/sub a file: the batch stopped with "out: cannot create the output folder (File
    exists)", naming the wrong path, and wrote nothing."""
    _img(tmp_path / "in" / "a.png")
    _img(tmp_path / "in" / "sub" / "b.png", seed=1)
    _img(tmp_path / "in" / "sub" / "c.png", seed=2)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").write_text("data")
    result = run(weights, tmp_path / "in", "-o", tmp_path / "out", "--recursive")
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {tmp_path / 'out' / 'sub'}: a file, where the output folder would go; "
                      "move it or choose another -o"] * 2  # fmt: skip
    assert "1 written, 0 skipped, 2 failed" in result.stderr and (tmp_path / "out" / "a.png").is_file()
    assert (tmp_path / "out" / "sub").read_text() == "data"
    one = run(weights, tmp_path / "in" / "a.png", "-o", tmp_path / "out" / "sub" / "x.png")  # one file, same rule
    assert one.exit_code == 1 and f"{tmp_path / 'out' / 'sub'}: a file, where the output folder" in one.stderr


def test_report_to_a_closed_stdout_is_an_error_not_silence(weights, tmp_path):
    """`--report - >&-`: click.echo drops the text when sys.stdout is None: exit 0, report lost."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "srgan_cli", "upscale", "-m", str(weights), str(_img(tmp_path / "a.png"))]
    cmd += ["-o", str(tmp_path / "out"), "--report", "-"]
    closed = subprocess.run(cmd, stderr=subprocess.PIPE, env=env, timeout=120, preexec_fn=lambda: os.close(1))
    assert closed.returncode == 1 and closed.stderr.decode().splitlines() == [
        "error: --report -: standard output is closed"
    ]
    assert not (tmp_path / "out").exists()  # refused before anything ran, as '-o -' is


def test_an_interrupt_while_the_image_goes_to_stdout_is_not_written_in_the_report(weights, tmp_path, monkeypatch):
    """SIGTERM while the image streamed to stdout: the reader got 64 KB of 265 KB, and the report said
    "written" (a retry script skipped the image)."""
    import json

    from srgan_cli import fsutil

    def interrupted(chunk):
        raise KeyboardInterrupt

    monkeypatch.setattr(fsutil, "write_stdout", interrupted)
    report = tmp_path / "r.json"
    result = run(weights, _img(tmp_path / "a.png"), "-o", "-", "--report", report, "--format", "png")
    assert result.exit_code == 130, result.output
    doc = json.loads(report.read_text())
    assert doc["written"] == 0 and doc["files"][0]["status"] == "failed", doc
    assert "interrupted before the image was all written" in doc["files"][0]["reason"]


@pytest.mark.parametrize("value", ["nan", "NaN", "-nan"])
def test_outscale_nan_is_a_usage_error(weights, tmp_path, value):
    """NaN passes click.FloatRange (no comparison with it is true): each file then failed, exit 1,
    after the model was loaded."""
    result = run(weights, _img(tmp_path / "a.png"), "-o", tmp_path / "o.png", "--outscale", value)
    assert result.exit_code == 2 and "--outscale" in result.output and "not a number" in result.output
    assert not (tmp_path / "o.png").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_named_like_an_image_is_a_failure_not_silence(weights, tmp_path):
    """A FIFO named b.png in an input folder was dropped without a word (exit 0, not in the
    report); it is never opened (that would block)."""
    import json

    _img(tmp_path / "in" / "a.png")
    os.mkfifo(tmp_path / "in" / "b.png")
    report = tmp_path / "r.json"
    result = run(weights, tmp_path / "in", "-o", tmp_path / "out", "--report", report)
    assert result.exit_code == 1, result.output
    assert f"error: {tmp_path / 'in' / 'b.png'}: not a regular file (a FIFO" in result.stderr
    assert "1 written, 0 skipped, 1 failed" in result.stderr and (tmp_path / "out" / "a.png").is_file()
    by_name = {Path(f["input"]).name: f["status"] for f in json.loads(report.read_text())["files"]}
    assert by_name == {"a.png": "written", "b.png": "failed"}
    named = run(weights, tmp_path / "in" / "b.png", tmp_path / "in" / "a.png", "-o", tmp_path / "out2")
    assert named.exit_code == 1 and "b.png: not a regular file" in named.stderr  # was: "no such file or folder"
    # a FIFO given as --report is not a report to replace; reading it to find out blocked forever
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "srgan_cli", "upscale", "-m", str(weights), str(tmp_path / "in" / "a.png")]
    cmd += ["-o", str(tmp_path / "c.png"), "--report", str(tmp_path / "in" / "b.png")]
    done = subprocess.run(cmd, capture_output=True, env=env, timeout=60)
    assert done.returncode == 2 and b"not an srgan report" in done.stderr


def test_links_to_one_folder_list_its_files_under_one_name(weights, tmp_path):
    """Images were listed under whichever link the folder listing gave first, and the skipped and
    failed files of the same folder under the first link by name: one folder, two names."""
    real, inputs = tmp_path / "real", tmp_path / "in"
    real.mkdir()
    inputs.mkdir()
    Image.new("RGB", (6, 5), (120, 60, 30)).save(real / "x.png")
    (real / "notes.txt").write_text("not an image")
    for name in "fcaebd":
        (inputs / name).symlink_to(real, target_is_directory=True)
    out, report = tmp_path / "out", tmp_path / "r.json"
    assert run(weights, inputs, "-o", out, "--recursive", "--report", report).exit_code == 0
    files = {
        Path(f["input"]).relative_to(inputs).as_posix(): f["status"] for f in json.loads(report.read_text())["files"]
    }
    assert files == {"a/x.png": "written", "a/notes.txt": "skipped"}
    assert [p.relative_to(out).as_posix() for p in out.rglob("*.png")] == ["a/x.png"]


def test_an_earlier_srgan_record_does_not_outlive_a_second_pass(weights, tmp_path):
    """Upscaling srgan's own JPEG again to PNG kept the first pass's record ("...scale: 2"), which
    contradicted the PNG's own text chunks; JPEG output replaced it."""
    Image.new("RGB", (6, 5), (120, 60, 30)).save(tmp_path / "in.png")
    assert run(weights, tmp_path / "in.png", "-o", tmp_path / "a.jpg", "--outscale", "2").exit_code == 0
    with Image.open(tmp_path / "a.jpg") as im:
        assert srgan_record(im.info["xmp"])["srgan:scale"] == "2" and 0x010E not in im.getexif()
    for name in ("b.png", "b.jpg"):
        assert run(weights, tmp_path / "a.jpg", "-o", tmp_path / name).exit_code == 0
        with Image.open(tmp_path / name) as im:
            assert 0x010E not in im.getexif(), name
            if name.endswith(".png"):  # its text chunks hold the record; the XMP carried holds none
                assert im.text["srgan:scale"] == "4" and srgan_record(im.info.get("xmp")) == {}
            else:
                assert srgan_record(im.info["xmp"])["srgan:scale"] == "4"
    caption = Image.Exif()
    caption[0x010E] = "Harbour at dawn"  # a real caption stays, in every format
    Image.new("RGB", (6, 5)).save(tmp_path / "cap.jpg", exif=caption.tobytes())
    for name in ("cap.png", "cap.jpg", "cap.webp", "cap.tif"):
        assert run(weights, tmp_path / "cap.jpg", "-o", tmp_path / "o" / name).exit_code == 0
        with Image.open(tmp_path / "o" / name) as im:
            assert im.getexif()[0x010E] == "Harbour at dawn"


@pytest.mark.parametrize("where", ["xmp", "iptc", "png"])
def test_srgan_never_puts_its_record_where_a_caption_field_is(weights, tmp_path, where):
    """srgan wrote its record (model, scale, sha256) into EXIF ImageDescription where the EXIF held no
    caption, though the caption was in XMP dc:description, an IPTC Caption-Abstract or a PNG's
    Description: a photo library (exiftool's MWG rules) then showed srgan's record as the caption. The
    record goes into XMP in srgan's own namespace, and no caption field is touched."""
    pixels = np.random.default_rng(3).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    caption = "Harbour at dawn"
    if where == "xmp":
        packet = (
            '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt>'
            f'<rdf:li xml:lang="x-default">{caption}</rdf:li></rdf:Alt></dc:description></rdf:Description>'
            "</rdf:RDF></x:xmpmeta>"
        ).encode()
        src = tmp_path / "in.jpg"
        Image.fromarray(pixels).save(src, xmp=packet)
    elif where == "iptc":
        src = tmp_path / "in.jpg"
        Image.fromarray(pixels).save(src, extra=iptc_app13(iptc_records((120, caption.encode()))))
    else:
        from PIL import PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text("Description", caption)
        src = tmp_path / "in.png"
        Image.fromarray(pixels).save(src, pnginfo=info)
    for name in ["o.jpg", "o.webp", "o.tif"] + (["o.avif"] if _pil_features.check("avif") else []):
        result = run(weights, src, "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
        with Image.open(tmp_path / name) as im:
            description = im.getexif().get(0x010E)
            record = srgan_record(im.info.get("xmp"))
        assert description in (None, caption), (name, description)  # a PNG's Description is the caption there
        assert record["srgan:model"] == "tiny" and record["srgan:scale"] == "4", name
        assert len(record["srgan:model_sha256"]) == 64, name


def test_iptc_reaches_jpeg_tiff_and_png_outputs_and_is_said_to_be_left_out_of_webp(weights, tmp_path):
    """A JPEG's IPTC-IIM (an agency's caption, credit and keywords in APP13) was dropped from every output
    without a word."""
    from PIL import IptcImagePlugin

    iim = iptc_records((120, b"Harbour at dawn"), (110, b"County Archive"), (25, b"harbour"))
    Image.new("RGB", (6, 5), (120, 60, 30)).save(tmp_path / "in.jpg", extra=iptc_app13(iim))
    for name in ("o.jpg", "o.tif", "o.png"):
        result = run(weights, tmp_path / "in.jpg", "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
    for name in ("o.jpg", "o.tif"):
        with Image.open(tmp_path / name) as im:
            info = IptcImagePlugin.getiptcinfo(im)
        assert info and info[(2, 120)] == b"Harbour at dawn" and info[(2, 110)] == b"County Archive", name
    with Image.open(tmp_path / "o.png") as im:  # ImageMagick's and exiftool's place for it in a PNG
        assert bytes.fromhex("".join(im.info["Raw profile type iptc"].split("\n")[3:])).endswith(iim)
    args = ["upscale", "-m", str(weights), str(tmp_path / "in.jpg"), "-o", str(tmp_path / "o.webp")]
    result = CliRunner().invoke(main, args)  # not -q: the note is shown
    assert result.exit_code == 0, result.output
    assert "the IPTC metadata is left out: WEBP output carries none" in result.output


def _torchrun_with_a_slow_rank_1(weights: Path, tmp_path: Path, delay: float) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a 2-rank `srgan upscale tmp_path/in -o tmp_path/o --report
    tmp_path/r.json` under torchrun whose rank 1 reads each image ``delay`` seconds late."""
    slow = tmp_path / "rank1_slow.py"
    slow.write_text(
        "import os, time\n"
        "import srgan_cli.commands.upscale as cmd\n"
        "real = cmd._read\n"
        "def read(path, max_pixels):\n"
        "    if os.environ.get('RANK') == '1':\n"
        f"        time.sleep({delay!r})\n"
        "    return real(path, max_pixels)\n"
        "cmd._read = read\n"
        "from srgan_cli.cli import main\n"
        "main(prog_name='srgan')\n"
    )
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    args += [str(slow), "upscale", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "-m", str(weights)]
    args += ["--device", "cpu", "--report", str(tmp_path / "r.json")]
    return args, {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_torchrun_a_failed_file_on_one_rank_does_not_cut_the_others_short(weights, tmp_path):
    """torchrun stops every rank once one exits non-zero: the rank whose share had a broken file
    finished first, exited 1, and the other rank's share was interrupted (--keep-going is the
    default). Each rank now waits for the others before it exits."""
    for i in range(6):
        _img(tmp_path / "in" / f"{i}.png", size=(6, 5), seed=i)
    (tmp_path / "in" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # in rank 0's share, first
    args, env = _torchrun_with_a_slow_rank_1(weights, tmp_path, 1.0)  # rank 0 is done first
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "(interrupted)" not in done.stderr, done.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [f"{i}.png" for i in range(1, 6)]
    ended = [json.loads((tmp_path / f"r.rank{r}.json").read_text())["ended"] for r in range(2)]
    assert ended == ["completed", "completed"]
    refused = subprocess.run(args[:-2] + ["--report", "-"], env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "each rank writes its own report" in refused.stderr


@pytest.mark.slow
def test_torchrun_a_rank_waiting_for_the_others_stops_at_a_signal(weights, tmp_path):
    # the wait for the other ranks blocked in C++: a rank done early ignored SIGTERM and Ctrl-C until
    # torchrun killed it, 30 s on
    for i in range(2):
        _img(tmp_path / "in" / f"{i}.png", seed=i)
    args, env = _torchrun_with_a_slow_rank_1(weights, tmp_path, 60.0)
    torchrun = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        report = tmp_path / "r.rank0.json"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # rank 0 has done its share and reported it: it now waits
            if report.exists() and json.loads(report.read_text() or "{}").get("ended") == "completed":
                break
            time.sleep(0.2)
        else:
            pytest.fail("rank 0 did not finish its share")
        rank0 = json.loads(report.read_text())
        pid = next(
            int(p)
            for p in os.listdir("/proc")
            if p.isdigit()
            and _environ_of(int(p)).get("RANK") == "0"
            and _environ_of(int(p)).get("MASTER_PORT") == args[6]
        )
        os.kill(pid, signal.SIGTERM)
        start = time.monotonic()
        while time.monotonic() - start < 20 and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
        assert time.monotonic() - start < 10 and rank0["written"] == 1
    finally:
        torchrun.terminate()
        torchrun.wait(timeout=60)


def _environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode("utf-8", "replace").split("\0") if "=" in item)


def test_standard_input_under_torchrun_is_a_usage_error(weights, tmp_path, monkeypatch):
    # every rank read standard input: one wrote the image, another said "standard input is empty" and
    # failed the run (or the image was lost)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    png = _img(tmp_path / "a.png").read_bytes()
    args = ["upscale", "-m", str(weights), "-", "-o", str(tmp_path / "x.png")]
    result = CliRunner().invoke(main, args, input=png)
    assert result.exit_code == 2 and "'-' (standard input) under torchrun" in result.output
    assert not (tmp_path / "x.png").exists()


def test_a_stop_before_the_first_image_reports_the_planned_files_as_not_started(tmp_path):
    # a model that does not load (or an interrupt while it loads) left a report listing no file at all
    for name in ("a.png", "b.png"):
        _img(tmp_path / "in" / name)
    (tmp_path / "bad.safetensors").write_bytes(b"not weights")
    args = ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(tmp_path / "bad.safetensors")]
    result = CliRunner().invoke(main, [*args, "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 1
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["ended"].startswith("stopped: ") and doc["not_started"] == 2
    assert sorted(Path(f["input"]).name for f in doc["files"] if f["status"] == "not_started") == ["a.png", "b.png"]


def test_the_report_says_running_while_the_run_lasts_and_names_its_start(weights, tmp_path, monkeypatch):
    # a run killed outright (the OOM killer) left an earlier run's report under the name, read as its own
    from srgan_cli.commands import upscale as cmd

    for name in ("a.png", "b.png"):
        _img(tmp_path / "in" / name)
    report = tmp_path / "r.json"
    seen = []
    real = cmd.run_pipeline

    def pipeline(jobs, *args, **kwargs):
        seen.append(json.loads(report.read_text()))  # what a SIGKILL from here on would leave
        return real(jobs, *args, **kwargs)

    monkeypatch.setattr(cmd, "run_pipeline", pipeline)
    assert run(weights, tmp_path / "in", "-o", tmp_path / "out", "--report", report).exit_code == 0
    (during,) = seen
    assert during["ended"] == "running" and during["not_started"] == 2 and during["written"] == 0
    assert sorted(f["status"] for f in during["files"]) == ["not_started", "not_started"]
    done = json.loads(report.read_text())
    assert done["ended"] == "completed" and done["written"] == 2 and done["not_started"] == 0
    assert done["started"] == during["started"] and done["rank"] is None and done["world_size"] == 1


def test_rank_0_removes_the_reports_of_ranks_a_run_does_not_have(weights, tmp_path, monkeypatch):
    # after a 3-rank run, a 2-rank run left r.rank2.json: a glob of r.rank*.json counted files twice
    from srgan_cli.commands import upscale as cmd

    old = {"schema_version": 1, "ended": "completed", "files": []}
    for k in (0, 1, 2):
        (tmp_path / f"r.rank{k}.json").write_text(json.dumps(old))
    (tmp_path / "r.rank3.json").write_text("a file of the user's")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    path = cmd._check_report_path(tmp_path / "r.json", tmp_path / "out")
    assert path == tmp_path / "r.rank0.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.rank0.json", "r.rank1.json", "r.rank3.json"]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_torchrun_two_inputs_with_one_output_in_two_shares_collide(weights, tmp_path):
    """a.png and a.jpg with --format png fell in two ranks' shares, where the clash check did not
    look: with --overwrite one input's output silently replaced the other's."""
    _img(tmp_path / "in" / "a.png", size=(6, 5), seed=1)
    _img(tmp_path / "in" / "a.jpg", size=(6, 5), seed=2)
    procs = []
    for rank in range(2):
        env = dict(os.environ, WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "srgan_cli", "upscale", str(tmp_path / "in"), "-o", str(tmp_path / "o")]
        cmd += ["-m", str(weights), "--device", "cpu", "--format", "png", "--overwrite"]
        procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=60)[1] for p in procs]
    assert sorted(p.returncode for p in procs) == [0, 1], errs
    assert sum("is also the output of" in err for err in errs) == 1, errs
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["a.png"]


def test_torchrun_files_found_while_planning_are_counted_once(weights, tmp_path):
    """A non-image file or a broken link was reported, and counted, by every rank."""
    for i in range(2):
        _img(tmp_path / "in" / f"{i}.png", size=(6, 5), seed=i)
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    (tmp_path / "in" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    procs = []
    for rank in range(2):
        env = dict(os.environ, WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "srgan_cli", "upscale", str(tmp_path / "in"), "-o", str(tmp_path / "o")]
        cmd += ["-m", str(weights), "--device", "cpu", "--report", str(tmp_path / "r.json")]
        procs.append(subprocess.Popen(cmd, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True))
    errs = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [1, 0], errs  # the broken link fails rank 0's run only
    assert "gone.png" in errs[0] and "gone.png" not in errs[1]
    docs = [json.loads((tmp_path / f"r.rank{r}.json").read_text()) for r in range(2)]
    assert [d["written"] for d in docs] == [1, 1]
    assert [(d["skipped"], d["failed"]) for d in docs] == [(1, 1), (0, 0)]


def test_an_output_too_wide_for_its_format_fails_before_the_upscale(weights, tmp_path, monkeypatch):
    """A 4100 px wide input to WebP (16383 px at most) was upscaled in full and then failed; to JPEG
    past 65500 px it failed as "broken data stream" with libjpeg's own line, to GIF as OverflowError."""
    import srgan_cli.api

    def no_upscale(*args, **kwargs):
        raise AssertionError("upscaled an image that cannot be written")

    monkeypatch.setattr(srgan_cli.api, "upscale_loaded", no_upscale)
    src = _img(tmp_path / "wide.png", size=(4100, 2))
    result = run(weights, src, "-o", tmp_path / "wide.webp")
    assert result.exit_code == 1, result.output
    assert f"error: {tmp_path / 'wide.webp'}: a 16400x8 image is too large for WEBP (at most 16383 px" in result.output
    assert not (tmp_path / "wide.webp").exists()


@needs_avif
def test_an_avif_output_of_more_pixels_than_libavif_reads_back_fails_before_the_upscale(weights, tmp_path, monkeypatch):
    """libavif writes an AVIF of 16500x16500 but reads back at most 16384x16384 pixels in all: such an
    output was upscaled and written, and then could not be opened; only a side past 32768 was refused."""
    import srgan_cli.api

    def no_upscale(*args, **kwargs):
        raise AssertionError("upscaled an image that cannot be read back")

    monkeypatch.setattr(srgan_cli.api, "upscale_loaded", no_upscale)
    src = _img(tmp_path / "big.png", size=(1100, 1050))
    result = run(weights, src, "-o", tmp_path / "big.avif", "--outscale", "16")
    assert result.exit_code == 1, result.output
    assert f"error: {tmp_path / 'big.avif'}: a 17600x16800 image is too large for AVIF (at most 268,435,456 pixels" in (
        result.output
    )
    assert not (tmp_path / "big.avif").exists()


def test_an_image_cut_short_by_its_pipe_reader_is_a_failure(weights, tmp_path):
    """A reader that goes away part way through the image (the pipe holds 64 KB): the write to the
    pipe returned short, Python's stdout neither retried nor raised, and the run exited 0 with a
    report saying the image was written."""
    src = _img(tmp_path / "in.png", size=(96, 96), seed=4)  # its x4 PNG is far over 64 KB
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "srgan_cli", "upscale", str(src), "-o", "-", "-m", str(weights)]
    cmd += ["--report", str(tmp_path / "r.json")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert len(proc.stdout.read(10)) == 10
    time.sleep(1)  # the writer fills the pipe and waits for the reader
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert b"-: standard output was closed before the image was written" in err and b"Traceback" not in err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["failed"] == 1 and report["written"] == 0 and report["files"][0]["status"] == "failed"


def test_write_stdout_writes_on_after_short_writes(monkeypatch, capfd):
    from srgan_cli import fsutil

    real, calls = os.write, []

    def short(fd, data):
        calls.append(len(data))
        return real(fd, bytes(data[:3]))  # as a pipe does when its reader is slow or gone

    monkeypatch.setattr(fsutil.os, "write", short)
    fsutil.write_stdout(b"0123456789")
    assert capfd.readouterr().out == "0123456789" and calls == [10, 7, 4, 1]


def test_names_with_newlines_tabs_or_escapes_are_shown_faithfully(weights, tmp_path):
    """A newline or tab in a name was collapsed into a space ("new\\nline.png" and "new line.png"
    read the same), the failed list ran over two lines and was ambiguous with a comma in a name,
    and a terminal escape sequence in a name was run (or stripped from a log)."""
    bad = tmp_path / "bad"
    bad.mkdir()
    names = ["new\nline.png", "new line.png", "a, b.png", "tab\there.png", "esc\x1b[31m.png", "two  spaces.png"]
    for name in names:
        (bad / name).write_bytes(b"not an image")
    result = run(weights, bad, "-o", tmp_path / "out", "--report", tmp_path / "r.json")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == len(names), result.stderr
    for shown in ("new\\nline.png", "new line.png", "tab\\there.png", "esc\\x1b[31m.png", "two  spaces.png"):
        assert sum(f"{bad}/{shown}:" in line for line in errors) == 1, (shown, errors)
    assert "\x1b" not in result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and f"'{bad}/a, b.png'" in failed[0], result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert sorted(f["input"] for f in report["files"]) == sorted(str(bad / n) for n in names)
    assert any("two  spaces.png" in f["reason"] for f in report["files"])


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_failed_list_quotes_names_with_control_characters_as_a_shell_reads_them_back(weights, tmp_path):
    """The failed list quoted 'q/c\\nd.png' (shlex.quote after \\n for the newline), which a shell
    reads as a backslash and an n: names with control characters are written $'q/c\\nd.png', as
    bash's printf %q writes them, and plain ones as before."""
    folder = tmp_path / "q"
    names = ["c\nd.png", "it's\tx.png", "back\\slash\x1b[31m.png", "plain.png", "a b.png"]
    if sys.platform.startswith("linux"):
        names.append(os.fsdecode(b"caf\xe9\x01.png"))  # not UTF-8: its byte comes back as it is
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"not an image")
    result = run(weights, folder, "-o", tmp_path / "out")
    assert result.exit_code == 1
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1, result.stderr
    words = failed[0].removeprefix("failed: ")
    assert f"$'{folder}/c\\nd.png'" in words and f"'{folder}/a b.png'" in words and f"{folder}/plain.png" in words
    # each word as bash reads it, NUL-terminated; the list's separating commas stay on the words before them
    out = subprocess.run(["bash", "-c", f"printf '%s\\0' {words}"], capture_output=True, check=True).stdout
    back = [part.removesuffix(b",") for part in out.split(b"\0")[:-1]]
    assert sorted(back) == sorted(os.fsencode(folder / name) for name in names)


def test_a_model_that_does_not_load_leaves_no_output_folder(tmp_path):
    _img(tmp_path / "in" / "a.png")
    result = CliRunner().invoke(
        main, ["upscale", str(tmp_path / "in"), "-o", str(tmp_path / "out" / "x4"), "-m", "nosuch"]
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_standard_output_that_is_full_fails_the_image_in_the_report(weights, tmp_path):
    src = _img(tmp_path / "in.png")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "srgan_cli", "upscale", str(src), "-o", "-", "-m", str(weights)]
    cmd += ["--report", str(tmp_path / "r.json")]
    with open("/dev/full", "wb") as full:
        done = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, env=env, timeout=120, check=False)
    assert done.returncode == 1 and b"Traceback" not in done.stderr, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["ended"] == "completed" and report["failed"] == 1 and report["written"] == 0, report


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_temporary_folder_under_o_dash_names_it_not_the_outputs_disk(weights, tmp_path, monkeypatch, code):
    """`-o -` writes the image into the temporary folder first: that folder filling said "the output's
    disk is full" and to rerun with --skip-existing, where the disk to free (or TMPDIR to move) was
    the temporary folder's. Standard input, kept there too, names it and TMPDIR alike."""

    def full(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(images, "_write_png", full)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # else the folder found earlier is used
    src = _img(tmp_path / "in.png")
    result = CliRunner().invoke(main, ["upscale", "-m", str(weights), "-q", str(src), "-o", "-"])
    assert result.exit_code == 1 and result.stdout_bytes == b"", result.output
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    what = "is full" if code == errno.ENOSPC else "is over your disk quota"
    assert line == (
        f"error: -: cannot write the image: the temporary folder {tmp_path}, where the image is kept until it goes "
        f"to standard output, {what}; free space there or set TMPDIR to a folder with room"
    ), result.stderr
    assert "--skip-existing" not in result.stderr and "output's disk" not in result.stderr
    assert not list(tmp_path.glob("srgan-stdio-*"))
    from srgan_cli.commands import upscale as cmd

    monkeypatch.setattr(cmd, "open", full, raising=False)  # standard input's copy there, as it is read
    result = run(weights, "-", "-o", tmp_path / "x.png", input=src.read_bytes())
    assert result.stderr == (
        f"error: -: cannot keep standard input in the temporary folder {tmp_path} ({os.strerror(code)}); "
        "free space there or set TMPDIR to a folder with room\n"
    )


def test_a_non_blocking_standard_output_gets_the_whole_image(weights, tmp_path):
    """os.write on a full non-blocking pipe raises BlockingIOError: it is waited on, not a traceback."""
    src = _img(tmp_path / "in.png", size=(96, 96), seed=4)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "srgan_cli", "upscale", str(src), "-o", "-", "-m", str(weights)]
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    proc = subprocess.Popen(cmd, stdout=write_end, stderr=subprocess.PIPE, env=env)
    os.close(write_end)
    time.sleep(3)  # the pipe fills while nobody reads
    with os.fdopen(read_end, "rb") as fh:
        data = fh.read()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"Traceback" not in err, err
    assert Image.open(io.BytesIO(data)).size == (384, 384) and len(data) > 65536


def test_the_report_goes_to_a_redirected_text_stdout(weights, tmp_path):
    """contextlib.redirect_stdout(io.StringIO()) has no .buffer: --report - failed with AttributeError."""
    import contextlib

    src = _img(tmp_path / "in.png")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        args = ["upscale", str(src), "-o", str(tmp_path / "o.png"), "-m", str(weights), "-q", "--report", "-"]
        main(args, standalone_mode=False)
    assert json.loads(out.getvalue())["written"] == 1


def test_a_model_file_whose_name_is_not_utf8_upscales(weights, tmp_path):
    """It was "not a valid safetensors file", then its name failed the PNG's text chunk."""
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/m\xe9.safetensors"))
    shutil.copyfile(weights, odd)
    result = run(odd, _img(tmp_path / "in.png"), "-o", tmp_path / "o.png")
    assert result.exit_code == 0, result.output
    assert _decodes(tmp_path / "o.png").info["srgan:model"] == "m\\xe9"


def _no_temporary_folder(monkeypatch) -> None:
    """tempfile as on a system where TMPDIR, /tmp, /var/tmp and the current folder are read-only."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # else the folder found earlier is reused
    monkeypatch.setattr(tempfile, "_candidate_tempdir_list", lambda: [])


def test_file_to_file_needs_no_temporary_folder(weights, tmp_path, monkeypatch):
    """Without a writable temporary folder even `upscale a.png -o b.png` failed with a traceback:
    the folder for standard input and output was made on every run."""
    _no_temporary_folder(monkeypatch)
    src = _img(tmp_path / "a.png")
    result = run(weights, src, "-o", tmp_path / "b.png")
    assert result.exit_code == 0, result.output
    assert _decodes(tmp_path / "b.png").size == (48, 40)
    result = run(weights, tmp_path / "a.png", "-o", tmp_path / "out")  # a folder too
    assert result.exit_code == 0 and (tmp_path / "out" / "a.png").is_file(), result.output
    for args in ([src, "-o", "-"], ["-", "-o", tmp_path / "c.png"]):  # these need one: a line, exit 1
        result = CliRunner().invoke(
            main, ["upscale", "-m", str(weights), "-q", *map(str, args)], input=src.read_bytes()
        )
        assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
        assert result.stderr.startswith("error: cannot make a temporary folder for standard input and output (")
        assert result.stderr.count("\n") == 1 and "set TMPDIR" in result.stderr
    assert not (tmp_path / "c.png").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="names of bytes that are not UTF-8: Linux")
@pytest.mark.parametrize("temporary", ["none writable", "full"])
def test_a_model_name_not_utf8_without_a_temporary_folder_says_so(weights, tmp_path, monkeypatch, temporary):
    """Such a file is opened through a link in a temporary folder: with none to be had, it was "not a
    valid safetensors file ([Errno 2] No usable temporary directory found in [...])"."""
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/m\xe9.safetensors"))
    shutil.copyfile(weights, odd)
    if temporary == "full":

        def no_room(target, link, *args, **kwargs):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "symlink", no_room)
    else:
        _no_temporary_folder(monkeypatch)
    result = run(odd, _img(tmp_path / "in.png"), "-o", tmp_path / "o.png")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert result.stderr.startswith(f"error: {tmp_path}/m\\xe9.safetensors: the file name is not valid UTF-8, so it ")
    assert "valid safetensors" not in result.stderr and "set TMPDIR" in result.stderr, result.stderr
    why = "no writable one in TMPDIR" if temporary != "full" else f"{tempfile.gettempdir()}: No space left on device"
    assert f"which cannot be made ({why}" in result.stderr, result.stderr
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("others", [["readme.txt"], ["readme.txt", "notes.md"]])
def test_a_folder_without_images_is_an_error_even_with_other_files(weights, tmp_path, others):
    """An empty folder was an error, but one of other files only was "0 written, 1 skipped, 0
    failed" and exit 0: a cron job over a folder without images succeeded."""
    for name in others:
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_text("not an image")
    report = tmp_path / "r.json"
    for inputs in ([tmp_path / "in"], [tmp_path / "in" / name for name in others]):
        result = run(weights, *inputs, "-o", tmp_path / "out", "--report", report)
        assert result.exit_code == 1, result.output
        n = len(others)
        passed = "1 file that is not an image" if n == 1 else f"{n} files that are not images"
        assert result.stderr.startswith(f"error: no images found in the inputs (passed over {passed}); supported: ")
        assert result.stderr.count("\n") == 1
        doc = json.loads(report.read_text())
        assert doc["ended"].startswith("stopped: no images found") and doc["skipped"] == n
    assert not (tmp_path / "out").exists()


def test_outputs_that_all_exist_are_still_skipped_with_success(weights, tmp_path):
    """--skip-existing over a finished batch (with a non-image file beside) stays exit 0."""
    _img(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "readme.txt").write_text("not an image")
    assert run(weights, tmp_path / "in", "-o", tmp_path / "out").exit_code == 0
    result = run(weights, tmp_path / "in", "-o", tmp_path / "out", "--skip-existing")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("single", [False, True], ids=["folder", "one-file"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_the_model_loads(
    weights, tmp_path, monkeypatch, single
):
    """A read-only output folder: every image was upscaled, then each write failed."""
    from srgan_cli import api

    _img(tmp_path / "in" / "a.png")
    _img(tmp_path / "in" / "b.png", seed=1)
    out = tmp_path / "out"
    out.mkdir()
    real_access = os.access

    def access(path, mode, **kwargs):  # as for a folder of another user's (root's own modes refuse it nothing)
        return not (Path(path) == out and mode & os.W_OK) and real_access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(api, "load_model", no_model)
    target = [tmp_path / "in" / "a.png", "-o", out / "a.png"] if single else [tmp_path / "in", "-o", out]
    result = run(weights, *target)
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    assert (
        result.stderr
        == f"error: {out}: cannot write into the output folder: permission denied; choose a folder you can write to\n"
    )
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("env", [{"FORCE_COLOR": "1"}, {"FORCE_COLOR": "0"}, {"TTY_COMPATIBLE": "1"}])
def test_no_live_progress_into_a_log_whatever_the_colour_settings(weights, tmp_path, monkeypatch, env):
    """rich takes FORCE_COLOR (any value) and TTY_COMPATIBLE=1 for a terminal: a log file (here,
    CliRunner's stderr) got the live bar's cursor escapes and redraws."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for seed in range(3):
        _img(tmp_path / "in" / f"{seed}.png", seed=seed)
    result = CliRunner().invoke(main, ["upscale", "-m", str(weights), str(tmp_path / "in"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stderr and "\r" not in result.stderr, repr(result.stderr)
    assert result.stderr == "3 written, 0 skipped, 0 failed\n"


def test_live_progress_on_a_terminal_but_not_a_dumb_one(monkeypatch):
    from srgan_cli.commands.upscale import Reporter, _progress

    master, slave = os.openpty()
    try:
        with open(slave, "w") as terminal:
            monkeypatch.setattr(sys, "stderr", terminal)
            for term, live in (("xterm-256color", True), ("dumb", False)):
                monkeypatch.setenv("TERM", term)
                report = Reporter(quiet=False)
                _progress(report, quiet=False)
                assert (report.console is not None) == live, term
            monkeypatch.setenv("TERM", "xterm-256color")
            report = Reporter(quiet=True)
            _progress(report, quiet=True)
            assert report.console is None
    finally:
        os.close(master)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_live_progress_bar_on_a_full_terminal_never_stops_a_batch(weights, tmp_path, monkeypatch):
    """The live bar is drawn on a terminal only (FORCE_COLOR no longer draws it into a file), so
    its writes failing (a terminal's full or gone stderr) is tried with a terminal assumed."""
    import contextlib

    from srgan_cli.commands import upscale as command

    for seed in range(2):
        _img(tmp_path / "in" / f"{seed}.png", seed=seed)
    monkeypatch.setattr(command, "live_terminal", lambda stream: True)
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich's own test, for the console on /dev/full
    drawn = []
    real_progress = command._progress
    monkeypatch.setattr(command, "_progress", lambda *a: drawn.append(real_progress(*a)) or drawn[-1])
    full = open("/dev/full", "w")  # noqa: SIM115 - its close fails too (what is left in its buffer)
    try:
        monkeypatch.setattr(sys, "stderr", full)
        main(["upscale", "-m", str(weights), str(tmp_path / "in"), "-o", str(tmp_path / "out")], standalone_mode=False)
    finally:
        monkeypatch.undo()
        with contextlib.suppress(OSError):
            full.close()
    assert not drawn[0].disable
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0.png", "1.png"]


def test_a_file_given_twice_is_upscaled_once_not_failed(weights, tmp_path):
    """A folder and a file in it, or a folder and a link to it: the second was taken for another input
    claiming the same output, and the run failed (exit 1) naming files it had written."""
    _img(tmp_path / "in" / "p.png")
    _img(tmp_path / "in" / "r.png", seed=1)
    (tmp_path / "link").symlink_to(tmp_path / "in")
    out = tmp_path / "o"
    result = run(weights, tmp_path / "in", tmp_path / "in" / "p.png", tmp_path / "link", "-o", out, "--report", "-")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["written"] == 2 and doc["failed"] == 0 and doc["skipped"] == 3
    assert {f["reason"] for f in doc["files"] if f["status"] == "skipped"} == {
        f"the same file as {tmp_path / 'in' / 'p.png'}, given twice",
        f"the same file as {tmp_path / 'in' / 'r.png'}, given twice",
    }
    assert sorted(p.name for p in out.iterdir()) == ["p.png", "r.png"]


@pytest.mark.parametrize("second", [("--suffix", "_big"), ("--format", "webp")])
def test_earlier_outputs_in_the_input_folder_are_not_inputs_under_another_suffix_or_format(weights, tmp_path, second):
    """-o the input folder, then a rerun with another --suffix or --format: the earlier outputs were
    upscaled again (x16), or the photo itself failed as a collision with them."""
    folder = tmp_path / "in"
    _img(folder / "p.png")
    assert run(weights, folder, "-o", folder, "--suffix", "_x4").exit_code == 0
    result = run(weights, folder, "-o", folder, *second, "--report", "-")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["written"] == 1 and doc["failed"] == 0
    (skipped,) = [f for f in doc["files"] if f["status"] == "skipped"]
    assert skipped["input"] == str(folder / "p_x4.png") and "an earlier run's output" in skipped["reason"]
    made = [p for p in folder.iterdir() if p.name not in ("p.png", "p_x4.png")]
    assert len(made) == 1 and _decodes(made[0]).size == (48, 40)  # x4 of the photo, not x16 of an output
    # named on the command line, an output is upscaled like any file
    assert run(weights, folder / "p_x4.png", "-o", tmp_path / "again.png").exit_code == 0


def test_an_earlier_output_named_beside_its_folder_is_upscaled(weights, tmp_path):
    """`srgan upscale in in/a_x4.png -o in`: the named output was dropped as "given twice" and as
    an earlier run's output, where a file named on the command line is upscaled like any file."""
    folder = tmp_path / "in"
    _img(folder / "a.png")
    assert run(weights, folder, "-o", folder, "--suffix", "_x4").exit_code == 0
    for order in ((folder, folder / "a_x4.png"), (folder / "a_x4.png", folder)):
        for made in folder.glob("*_y.png"):
            made.unlink()
        result = run(weights, *order, "-o", folder, "--suffix", "_y", "--report", "-")
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["written"] == 2 and _decodes(folder / "a_x4_y.png").size == (192, 160)
        (skipped,) = [f for f in doc["files"] if f["status"] == "skipped"]
        assert skipped["reason"].endswith("given twice")


def test_a_suffix_that_a_named_output_leaves_unused_gets_a_note(weights, tmp_path):
    src = _img(tmp_path / "a.png")
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), str(src), "-o", str(tmp_path / "o.png"), "--suffix", "_x4"]
    )
    assert result.exit_code == 0, result.output
    assert f"note: --suffix _x4 is not used: -o names the output file ({tmp_path / 'o.png'})" in result.stderr
    assert (tmp_path / "o.png").is_file() and not (tmp_path / "o_x4.png").exists()


def test_the_report_says_whether_the_ensemble_ran(weights, tmp_path):
    """The image recorded srgan:ensemble, the report nothing: a plain run's report read the same."""
    src = _img(tmp_path / "a.png")
    result = run(weights, src, "-o", tmp_path / "o.png", "--ensemble", "--report", "-")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"]["ensemble"] is True


def test_a_mirrored_tree_with_links_is_not_a_collision(weights, tmp_path):
    """`cp -a in out` then `srgan upscale in -o out --overwrite`, with in/b.png a link to a.png: b.png's
    output (a link to out/a.png) resolves to a.png's, and b.png failed as a second claim to it."""
    _img(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "b.png").symlink_to("a.png")
    (tmp_path / "out").mkdir()
    _img(tmp_path / "out" / "a.png", seed=2)
    (tmp_path / "out" / "b.png").symlink_to("a.png")
    result = run(weights, tmp_path / "in", "-o", tmp_path / "out", "--overwrite")
    assert result.exit_code == 0, result.output
    assert _decodes(tmp_path / "out" / "a.png").size == (48, 40)


def test_a_stereo_mpo_is_upscaled_to_a_jpeg_with_a_note_and_a_preview_is_not_mentioned(weights, tmp_path):
    """A 3D camera's .mpo was "not an image file" (the same bytes named .jpg were read), and as .jpg
    its second picture was dropped without a word."""
    from srgan_cli.bench import _image_files
    from srgan_cli.data import list_images

    stereo = mpo_file(tmp_path / "in" / "DSCF0001.MPO", [0x020002, 0x020002])
    phone = mpo_file(tmp_path / "in" / "phone.mpo", [0x030000, 0x010002])  # a large preview: one picture
    result = CliRunner().invoke(main, ["upscale", "-m", str(weights), str(tmp_path / "in"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["DSCF0001.jpg", "phone.jpg"]
    for name in ("DSCF0001.jpg", "phone.jpg"):
        im = _decodes(tmp_path / "o" / name)
        assert im.format == "JPEG" and im.size == (48, 40)
    assert f"note: {stereo}: 2 frames; only the first is upscaled" in result.stderr
    assert "phone" not in result.stderr and "2 written, 0 skipped, 0 failed" in result.stderr
    # one file, to a file or a folder (--format same too)
    assert run(weights, stereo, "-o", tmp_path / "one.jpg").exit_code == 0
    assert _decodes(tmp_path / "one.jpg").format == "JPEG"
    assert run(weights, phone, "-o", tmp_path / "same", "--format", "same").exit_code == 0
    assert [p.name for p in (tmp_path / "same").iterdir()] == ["phone.jpg"]
    stdout = run(weights, phone, "-o", "-")
    assert stdout.exit_code == 0 and Image.open(io.BytesIO(stdout.stdout_bytes)).format == "JPEG"
    # train and bench read the same suffixes as upscale
    assert [p.name for p in list_images(tmp_path / "in")] == ["DSCF0001.MPO", "phone.mpo"]
    assert [p.name for p in _image_files(tmp_path / "in")] == ["DSCF0001.MPO", "phone.mpo"]


def test_an_mpo_output_name_is_refused_before_any_work(weights, tmp_path):
    stereo = mpo_file(tmp_path / "s.mpo", [0x020002, 0x020002])
    for src in (stereo, _img(tmp_path / "a.png")):
        result = run(weights, src, "-o", tmp_path / "big.mpo")
        assert result.exit_code == 2 and "cannot write MPO" in result.output and ".jpg" in result.output
        assert not (tmp_path / "big.mpo").exists()


def test_a_tifffile_shape_description_does_not_reach_the_upscaled_tiff(weights, tmp_path):
    """tifffile's {"shape": [10, 12, 3]} went into the x4 output unchanged, where tifffile
    warned that it did not match the 40x48 page."""
    rgb = np.random.default_rng(7).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "t.tif", tiffinfo={270: '{"shape": [10, 12, 3]}', 305: "tifffile.py"})
    for name in ("t_x4.tif", "t_x4.jpg", "t_x4.png"):
        result = run(weights, tmp_path / "t.tif", "-o", tmp_path / name)
        assert result.exit_code == 0, result.output
        with Image.open(tmp_path / name) as im:
            description = im.getexif().get(0x010E)
        assert description is None, description  # nor srgan's record, which goes into XMP


def test_a_gray_png_under_an_rgb_profile_says_the_profile_is_left_out(weights, tmp_path):
    """Image.open(rgb).convert("L").save(...) keeps the RGB profile, which a PNG forbids on gray pixels:
    the upscaled gray PNG lost it without a word. The same pixels as a gray palette (RGB colours) keep it."""
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.open(_img(tmp_path / "plain.png")).save(tmp_path / "rgb.png", icc_profile=icc)
    Image.open(tmp_path / "rgb.png").convert("L").save(tmp_path / "gray.png")
    Image.open(tmp_path / "gray.png").convert("P").save(tmp_path / "palette.png")  # the profile goes with it
    assert Image.open(tmp_path / "gray.png").info.get("icc_profile") == icc
    args = ["upscale", "-m", str(weights), str(tmp_path / "gray.png"), "-o", str(tmp_path / "x4_gray.png")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = _decodes(tmp_path / "x4_gray.png")
    assert out.mode == "L" and not out.info.get("icc_profile")
    note = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(note) == 1 and note[0].startswith(f"note: {tmp_path / 'x4_gray.png'}: the RGB ICC colour profile")
    assert note[0].endswith("is left out: it does not fit the gray pixels")
    args = ["upscale", "-m", str(weights), str(tmp_path / "palette.png"), "-o", str(tmp_path / "x4_palette.png")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "note" not in result.stderr, result.output
    out = _decodes(tmp_path / "x4_palette.png")
    assert out.mode == "RGB" and out.info.get("icc_profile") == icc


def test_dot_slash_dash_is_a_file_named_dash_not_a_stream(weights, tmp_path, monkeypatch):
    """click makes the Path '-' of './-', which upscale took for standard input or output: `-o ./-`
    wrote the image to stdout and `--report ./-` printed the report there."""
    import json

    monkeypatch.chdir(tmp_path)
    _img(tmp_path / "a.png")
    result = run(weights, "a.png", "-o", "./-", "--report", "./r-")
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and (tmp_path / "-" / "a.png").is_file()  # -o without a suffix: a folder
    (tmp_path / "-" / "a.png").unlink()
    (tmp_path / "-").rmdir()
    result = run(weights, "a.png", "-o", "b.png", "--report", "./-")
    assert result.exit_code == 0 and result.stdout == "", result.output
    assert json.loads((tmp_path / "-").read_text())["written"] == 1
    result = CliRunner().invoke(main, ["upscale", "-m", str(weights), "./-", "-o", "c.png"], input=b"")
    assert result.exit_code == 1 and "standard input" not in result.output, result.output  # the file '-', not stdin


def test_outputs_that_differ_only_in_case_collide_where_the_disk_ignores_case(weights, tmp_path, monkeypatch):
    """On macOS and Windows Photo.png and photo.png are one file: the second image replaced the
    first, and the summary counted both as written."""
    from srgan_cli.commands import upscale as command

    blind_here = command._case_blind(str(tmp_path))
    _img(tmp_path / "in" / "Photo.png", seed=1)
    _img(tmp_path / "in" / "photo.bmp", seed=2)
    monkeypatch.setattr(command, "_case_blind", lambda folder: True)
    result = run(weights, tmp_path / "in", "-o", tmp_path / "out", "--format", "png")
    assert result.exit_code == 1, result.output
    assert "is also the output of" in result.stderr and "1 written, 0 skipped, 1 failed" in result.stderr
    if blind_here:
        return  # this disk cannot hold the two
    monkeypatch.setattr(command, "_case_blind", lambda folder: False)  # a disk where case counts: two files
    result = run(weights, tmp_path / "in", "-o", tmp_path / "out2", "--format", "png")
    assert result.exit_code == 0 and sorted(p.name for p in (tmp_path / "out2").iterdir()) == ["Photo.png", "photo.png"]


def test_a_case_blind_disk_is_told_by_a_name_with_its_case_swapped(tmp_path, monkeypatch):
    from srgan_cli.commands.upscale import _case_blind

    if _case_blind(str(tmp_path)):
        pytest.skip("this disk ignores case")
    (tmp_path / "Out").mkdir()
    (tmp_path / "Out" / "Photo.png").write_bytes(b"")
    (tmp_path / "shots").mkdir()
    (tmp_path / "SHOTS").symlink_to(tmp_path / "shots")  # a link named so is another entry, not the same one
    _case_blind.cache_clear()
    assert not _case_blind(str(tmp_path / "Out" / "new" / "deeper"))
    assert not _case_blind(str(tmp_path / "shots"))
    real_lstat = os.lstat

    def blind_lstat(path, *args, **kwargs):  # as on APFS or NTFS: PHOTO.PNG is Photo.png
        try:
            return real_lstat(path, *args, **kwargs)
        except FileNotFoundError:
            parent, name = os.path.split(path)
            for entry in os.listdir(parent):
                if entry.casefold() == name.casefold():
                    return real_lstat(os.path.join(parent, entry))
            raise

    monkeypatch.setattr(os, "lstat", blind_lstat)
    _case_blind.cache_clear()
    assert _case_blind(str(tmp_path / "Out"))
    _case_blind.cache_clear()


def test_an_output_too_large_for_its_format_is_refused_before_the_decode(weights, tmp_path, monkeypatch):
    # the size was checked after the decode: a 100 MP photo took 14 s and 4 GB before "too large for WEBP"
    from srgan_cli.commands import upscale as cmd

    Image.new("RGB", (5000, 4)).save(tmp_path / "wide.png")
    _img(tmp_path / "small.png")
    decoded = []
    real_read = cmd._read

    def read(path, max_pixels):
        decoded.append(path.name)
        return real_read(path, max_pixels)

    monkeypatch.setattr(cmd, "_read", read)
    result = run(weights, tmp_path / "wide.png", tmp_path / "small.png", "-o", tmp_path / "out", "--format", "webp")
    assert result.exit_code == 1 and decoded == ["small.png"], result.output
    assert f"{tmp_path / 'out' / 'wide.webp'}: a 20000x16 image is too large for WEBP" in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["small.webp"]


def test_an_unreadable_input_among_others_fails_alone(weights, tmp_path, monkeypatch):
    # click's readable check made one private file among a glob's matches a usage error (exit 2): nothing
    # was upscaled and no report written; a folder that cannot be listed ended the batch too
    from srgan_cli import images

    top, private = _img(tmp_path / "in" / "top.png"), _img(tmp_path / "in" / "private.png")
    locked = tmp_path / "in" / "locked"
    _img(locked / "x.png")
    real_access, real_entries = os.access, images.folder_entries

    def access(path, mode, *args, **kwargs):  # as the kernel answers a user who is not root
        return False if Path(path) == private and mode & os.R_OK else real_access(path, mode, *args, **kwargs)

    def entries(folder, *args, **kwargs):
        if Path(folder) == locked:
            raise SrganError(f"{folder}: cannot list the folder: permission denied")
        return real_entries(folder, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    monkeypatch.setattr(images, "folder_entries", entries)
    report = tmp_path / "r.json"
    result = run(weights, locked, top, private, "-o", tmp_path / "out", "--report", report)
    assert result.exit_code == 1, result.output
    assert f"error: {locked}: cannot list the folder: permission denied" in result.stderr
    assert (tmp_path / "out" / "top.png").exists() and json.loads(report.read_text())["failed"] == 1
    # an -o folder that may be written but not listed (a drop box)
    drop = tmp_path / "drop"
    drop.mkdir()
    monkeypatch.setattr(
        os, "access", lambda p, m, *a, **k: False if Path(p) == drop and m & os.R_OK else real_access(p, m, *a, **k)
    )
    result = run(weights, top, "-o", drop)
    assert result.exit_code == 0 and (drop / "top.png").exists(), result.output


def test_the_progress_bar_shows_names_escaped_and_not_as_markup(weights, tmp_path, monkeypatch):
    # a name's escape sequences reached the terminal (clear screen, window title), "[blink]x.png" blinked,
    # a newline split the bar; the finished bar kept the last file's name
    from rich.progress import Progress

    from srgan_cli.commands import upscale as command

    names = ["esc\x1b[2Jred.png", "[blink]x.png", "new\nline.png"]
    for name in names:
        _img(tmp_path / "in" / name)
    shown: list[str] = []
    real_update = Progress.update

    def update(self, task, *args, **kwargs):
        if "description" in kwargs:
            shown.append(kwargs["description"])
        return real_update(self, task, *args, **kwargs)

    monkeypatch.setattr(Progress, "update", update)
    assert run(weights, tmp_path / "in", "-o", tmp_path / "out").exit_code == 0
    assert sorted(shown[:-1]) == sorted(["esc\\x1b[2Jred.png", "[blink]x.png", "new\\nline.png"])
    assert shown[-1] == "images"
    progress = command._progress(command.Reporter(quiet=True), quiet=True)
    assert progress.columns[0].markup is False


def test_skip_existing_says_when_it_keeps_an_output_older_than_its_input(weights, tmp_path):
    # an edited photo's old upscale was kept in silence: "0 written, 1 skipped", exit 0
    a, b = _img(tmp_path / "in" / "a.png"), _img(tmp_path / "in" / "b.png")
    assert run(weights, tmp_path / "in", "-o", tmp_path / "out").exit_code == 0
    later = (tmp_path / "out" / "a.png").stat().st_mtime + 10
    os.utime(a, (later, later))  # edited after its output was made
    args = ["upscale", "-m", str(weights), str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--skip-existing"]
    result = CliRunner().invoke(main, [*args, "--report", str(tmp_path / "r.json")])
    assert result.exit_code == 0
    assert f"note: 1 output kept by --skip-existing though the input is newer ({a}); --overwrite makes them again" in (
        result.stderr
    )
    reasons = {f["input"]: f["reason"] for f in json.loads((tmp_path / "r.json").read_text())["files"]}
    assert reasons[str(a)].endswith("its input is newer") and reasons[str(b)] == "the output exists (--skip-existing)"


def test_a_colour_bmp_over_4_gib_is_refused_from_the_header(weights, tmp_path):
    # the header check took every input as gray (the smallest BMP): a 9500 x 9500 colour photo was decoded
    # in full before "too large for BMP"; its pixel data here is nothing, so a decode would say so instead
    colour = tmp_path / "c.png"
    colour.write_bytes(_png_header_only(9500, 9500))
    result = run(weights, colour, "-o", tmp_path / "c.bmp")
    assert result.exit_code == 1 and "a 38000x38000 image is too large for BMP" in result.stderr, result.output
    gray = tmp_path / "g.png"  # 1.4 GB as gray BMP: no size refusal
    gray.write_bytes(_png_header_only(9500, 9500, colour_type=0))
    result = run(weights, gray, "-o", tmp_path / "g.bmp")
    assert result.exit_code == 1 and "too large" not in result.stderr


def test_folder_outputs_keep_the_suffix_as_the_camera_wrote_it(weights, tmp_path):
    # IMG_0001.JPG came out as IMG_0001.jpg: a script pairing inputs with outputs by name missed them all
    for name in ("IMG_0001.JPG", "b.Png", "c.jpg"):
        _img(tmp_path / "in" / name)
    result = run(weights, tmp_path / "in", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["IMG_0001.JPG", "b.Png", "c.jpg"]
    # --skip-existing knows them again by that name
    assert (
        "0 written, 3 skipped"
        in CliRunner()
        .invoke(
            main, ["upscale", "-m", str(weights), str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--skip-existing"]
        )
        .stderr
    )


def test_a_folder_spelled_in_another_case_is_the_same_folder_where_the_disk_ignores_case(tmp_path, monkeypatch):
    """`srgan upscale Photos -o photos --suffix _x4` run twice on macOS upscaled the first run's
    outputs again (x16 images): photos/ was not seen as the input folder Photos/."""
    from srgan_cli.commands import upscale as command

    (tmp_path / "Photos").mkdir()
    monkeypatch.setattr(command, "_case_blind", lambda folder: True)
    assert command._inside(tmp_path / "photos", tmp_path / "Photos" / "a_x4.png")
    assert command._output_key(tmp_path / "photos") == command._output_key(tmp_path / "Photos")
    monkeypatch.setattr(command, "_case_blind", lambda folder: False)
    assert not command._inside(tmp_path / "photos", tmp_path / "Photos" / "a_x4.png")


def test_a_suffix_windows_cannot_hold_is_refused_there(weights, tmp_path, monkeypatch):
    """On Windows `--suffix :x4` wrote each image into an NTFS stream of a file named after the input."""
    import sys

    _img(tmp_path / "a.png")
    monkeypatch.setattr(sys, "platform", "win32")
    result = run(weights, tmp_path / "a.png", "-o", tmp_path / "out", "--suffix", ":x4")
    assert result.exit_code == 2 and "on Windows" in result.output and not (tmp_path / "out").exists()


def test_a_sub_folder_that_cannot_be_listed_fails_by_name_and_the_rest_is_written(weights, tmp_path, monkeypatch):
    _img(tmp_path / "in" / "a.png")
    _img(tmp_path / "in" / "locked" / "b.png")
    from conftest import unlistable

    unlistable(monkeypatch, tmp_path / "in" / "locked")
    result = run(weights, tmp_path / "in", "-o", tmp_path / "out", "--recursive", "--report", tmp_path / "r.json")
    assert result.exit_code == 1, result.output
    locked = tmp_path / "in" / "locked"
    assert f"error: {locked}: cannot list the folder: permission denied; its images are not upscaled" in result.output
    assert (tmp_path / "out" / "a.png").is_file() and not (tmp_path / "out" / "locked").exists()
    files = json.loads((tmp_path / "r.json").read_text())["files"]
    entry = next(f for f in files if f["input"] == str(locked))
    assert entry["status"] == "failed" and "cannot list the folder" in entry["reason"]


def test_a_gray_palette_with_transparency_stays_gray(weights, tmp_path):
    """It came out as colour: RGBA PNG, RGB JPEG, with red and green apart (L with tRNS gave LA)."""
    rng = np.random.default_rng(7)
    idx = rng.integers(1, 256, (10, 12), dtype=np.uint8)
    idx[:, 8:] = 0
    im = Image.fromarray(idx, "P")
    im.putpalette([v for i in range(256) for v in (i, i, i)])
    im.save(tmp_path / "p.png", transparency=0)
    assert run(weights, tmp_path / "p.png", "-o", tmp_path / "o.png").exit_code == 0
    assert run(weights, tmp_path / "p.png", "-o", tmp_path / "o.jpg").exit_code == 0
    with Image.open(tmp_path / "o.png") as png, Image.open(tmp_path / "o.jpg") as jpg:
        assert (png.mode, jpg.mode) == ("LA", "L")
        assert np.asarray(png)[:, 40:, 1].max() == 0 and np.asarray(png)[:, :28, 1].min() > 0


def test_a_sixteen_bit_image_written_as_webp_says_its_bits_are_cut(weights, tmp_path):
    gray16 = np.tile(np.linspace(0, 65535, 12).astype(np.uint16), (10, 1))
    Image.fromarray(gray16).save(tmp_path / "g.png")
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), str(tmp_path / "g.png"), "-o", str(tmp_path / "g.webp")]
    )
    assert result.exit_code == 0 and "g.webp: the 16 bits a channel are cut to 8: WEBP output" in result.stderr
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), str(tmp_path / "g.png"), "-o", str(tmp_path / "g.tif")]
    )
    assert result.exit_code == 0 and "16 bits" not in result.stderr


def test_the_readme_says_what_format_same_and_quality_do(weights, tmp_path):
    """The README said --format same (and a folder's default) keeps the input's format, and JPEG is
    always 4:4:4: a GIF gives PNG (only --help said so), and a --quality below 90 gives 4:2:0."""
    from PIL import JpegImagePlugin

    rows = {line.split("|")[1].strip(): line for line in (REPO / "README.md").read_text().splitlines() if "|" in line}
    fmt_row = next(v for k, v in rows.items() if k.startswith("`--format "))
    assert "GIF and PPM/PGM/PBM inputs give PNG" in fmt_row
    assert "4:2:0" in next(v for k, v in rows.items() if k.startswith("`--quality "))
    Image.open(_img(tmp_path / "in" / "a.png")).save(tmp_path / "in" / "a.gif")
    (tmp_path / "in" / "a.png").unlink()
    for extra in ([], ["--format", "same"]):
        assert run(weights, tmp_path / "in", "-o", tmp_path / "o", "--overwrite", *extra).exit_code == 0
        assert [p.name for p in (tmp_path / "o").iterdir()] == ["a.png"]
    for quality, sampling in (("89", 2), ("90", 0)):
        assert (
            run(
                weights, tmp_path / "in" / "a.gif", "-o", tmp_path / "q.jpg", "--quality", quality, "--overwrite"
            ).exit_code
            == 0
        )
        with Image.open(tmp_path / "q.jpg") as im:
            assert JpegImagePlugin.get_sampling(im) == sampling


def test_a_gif_without_srgan_mark_under_an_inputs_output_name_is_not_upscaled_again(weights, tmp_path):
    """srgan's GIFs had no mark before it wrote one into the comment: a rerun in place over such an
    output upscaled a_x4.gif to a_x4_x4.gif (x16) and failed a.png on "would replace an input"."""
    folder = tmp_path / "photos"
    _img(folder / "a.png")
    Image.new("RGB", (64, 64), (9, 99, 199)).save(folder / "a_x4.gif")  # as an older srgan wrote it: no comment
    args = [folder, "-o", folder, "--suffix", "_x4", "--format", "gif"]
    result = run(weights, *args, "--skip-existing")
    assert result.exit_code == 0 and sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x4.gif"], result.output
    result = run(weights, *args, "--overwrite")
    assert result.exit_code == 1 and "a_x4.gif: not replaced: GIF records no maker" in result.stderr
    # a GIF that srgan marked is its output, and --overwrite replaces it
    (folder / "a_x4.gif").unlink()
    assert run(weights, *args).exit_code == 0
    result = run(weights, *args, "--overwrite")
    assert result.exit_code == 0 and sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x4.gif"], result.output


def test_format_takes_jpeg_and_tif_as_o_takes_them(weights, tmp_path):
    """--format jpg was taken but jpeg and tif were refused (exit 2), though -o x.jpeg and -o x.tif work."""
    src = _img(tmp_path / "a.png")
    for word, kind, suffix in (("jpeg", "JPEG", ".jpg"), ("TIF", "TIFF", ".tif")):
        result = run(weights, src, "-o", tmp_path / word, "--format", word)
        assert result.exit_code == 0, result.output
        assert [p.name for p in (tmp_path / word).iterdir()] == [f"a{suffix}"]
        assert _decodes(tmp_path / word / f"a{suffix}").format == kind
    result = run(weights, src, "-o", tmp_path / "one.jpeg", "--format", "jpeg")  # one file: the suffix agrees
    assert result.exit_code == 0 and _decodes(tmp_path / "one.jpeg").format == "JPEG", result.output
    # --help keeps its list short
    shown = CliRunner().invoke(main, ["upscale", "--help"]).output
    assert "[png|jpg|webp|avif|tiff|bmp|gif|same]" in " ".join(shown.split()) and "|jpeg|" not in shown


@needs_jpeg2000
def test_jpeg2000_tga_qoi_and_jfif_are_read_everywhere_and_the_read_only_ones_give_png(weights, tmp_path):
    """JPEG 2000, TGA, QOI and the JPEG names .jfif and .jpe, which Pillow decodes, were refused for
    their suffix alone (skipped in a folder as "not an image file")."""
    from srgan_cli.bench import _image_files
    from srgan_cli.data import list_images

    folder = tmp_path / "in"
    rgb = Image.open(_img(tmp_path / "rgb.png"))
    folder.mkdir()
    for name in ("a.jp2", "b.j2k", "c.tga", "d.qoi"):
        rgb.save(folder / name)
    rgb.save(folder / "e.jfif", format="JPEG")
    rgb.save(folder / "f.jpe", format="JPEG")
    Image.open(_img(tmp_path / "rgba.png", mode="RGBA")).save(folder / "g.tga")  # alpha kept
    gray16 = np.tile(np.linspace(0, 65535, 12).astype(np.uint16), (10, 1))
    Image.fromarray(gray16).save(folder / "h.jp2")  # 16-bit gray: Pillow's I;16
    result = run(weights, folder, "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    names = ["a.png", "b.png", "c.png", "d.png", "e.jfif", "f.jpe", "g.png", "h.png"]
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == names
    assert _decodes(tmp_path / "o" / "e.jfif").format == "JPEG"
    assert _decodes(tmp_path / "o" / "g.png").mode == "RGBA"
    assert _decodes(tmp_path / "o" / "h.png").mode == "I;16"  # 16 bits kept
    for name in ("big.jp2", "big.j2k", "big.tga", "big.qoi"):  # read only, as .ppm is
        result = run(weights, folder / "a.jp2", "-o", tmp_path / name)
        assert result.exit_code == 2 and "cannot write" in result.output and not (tmp_path / name).exists()
    assert run(weights, folder / "a.jp2", "-o", tmp_path / "big.jfif").exit_code == 0
    assert _decodes(tmp_path / "big.jfif").format == "JPEG"
    for name in ("a.jp2", "b.j2k", "d.qoi"):  # known by their content on standard input (TGA has no signature)
        result = CliRunner().invoke(
            main,
            ["upscale", "-m", str(weights), "-q", "-", "-o", str(tmp_path / "s.png"), "--overwrite"],
            input=(folder / name).read_bytes(),
        )
        assert result.exit_code == 0, result.output
        assert _decodes(tmp_path / "s.png").size == (48, 40)
    # train and bench read the same suffixes as upscale
    listed = ["a.jp2", "b.j2k", "c.tga", "d.qoi", "e.jfif", "f.jpe", "g.tga", "h.jp2"]
    assert [p.name for p in list_images(folder)] == listed
    assert [p.name for p in _image_files(folder)] == listed


@needs_avif
def test_avif_is_read_and_written_by_suffix_format_and_content(weights, tmp_path):
    """AVIF was refused for its suffix, as --format and as -o (which made a folder named out.avif)."""
    if not getattr(pytest.importorskip("PIL.AvifImagePlugin"), "SUPPORTED", False):
        pytest.skip("this Pillow has no AVIF")
    src = _img(tmp_path / "a.png", mode="RGBA")
    result = run(weights, src, "-o", tmp_path / "out.avif", "--quality", "80")
    assert result.exit_code == 0, result.output
    out = _decodes(tmp_path / "out.avif")
    assert out.format == "AVIF" and out.mode == "RGBA" and out.size == (48, 40)
    assert run(weights, src, "-o", tmp_path / "f", "--format", "avif").exit_code == 0
    assert [p.name for p in (tmp_path / "f").iterdir()] == ["a.avif"]
    folder = tmp_path / "in"
    folder.mkdir()
    (tmp_path / "out.avif").rename(folder / "b.avif")
    result = run(weights, folder, "-o", tmp_path / "g")  # an AVIF input gives AVIF
    assert result.exit_code == 0 and [p.name for p in (tmp_path / "g").iterdir()] == ["b.avif"], result.output
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), "-q", "-", "-o", "-"], input=(folder / "b.avif").read_bytes()
    )
    assert result.exit_code == 0 and Image.open(io.BytesIO(result.stdout_bytes)).format == "AVIF", result.output


@needs_avif
def test_a_truncated_avif_on_standard_input_is_called_truncated(weights, tmp_path):
    """It said "not an image file, or an unsupported format", though it was known as AVIF to be read."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="AVIF")
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), "-q", "-", "-o", str(tmp_path / "o.png")], input=buf.getvalue()[:300]
    )
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "error: -: truncated or corrupt AVIF file (its header cannot be read)"


def test_avif_without_pillow_support_says_to_upgrade_pillow(weights, tmp_path, monkeypatch):
    from srgan_cli import images

    src = _img(tmp_path / "a.png")
    monkeypatch.setattr(images, "_AVIF", False)
    for args in (["-o", tmp_path / "out.avif"], ["-o", tmp_path / "f", "--format", "avif"]):
        result = run(weights, src, *args)
        assert result.exit_code == 2 and "lacks AVIF support" in result.output and "upgrade Pillow" in result.output
    assert not (tmp_path / "out.avif").exists() and not (tmp_path / "f").exists()
    (tmp_path / "b.avif").write_bytes(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64)
    result = run(weights, tmp_path / "b.avif", "-o", tmp_path / "b.png")
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {tmp_path / 'b.avif'}: this Pillow (")
    assert "lacks AVIF support" in result.stderr.splitlines()[0]


def test_supported_list_names_only_what_this_pillow_reads(weights, tmp_path, monkeypatch):
    # "supported: ... .avif ..." told a user whose Pillow lacked AVIF to give it an .avif file
    from srgan_cli import images

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("x")
    for avif in (True, False):
        monkeypatch.setattr(images, "_AVIF", avif)
        result = run(weights, tmp_path / "in", "-o", tmp_path / "out")
        assert result.exit_code == 1 and "supported: " in result.stderr, result.output
        listed = result.stderr.split("supported: ")[1].split()
        assert ".png" in listed and ".jpg" in listed
        assert (".avif" in listed) == avif and (".avifs" in listed) == avif


def test_avif_files_in_a_folder_are_passed_over_where_pillow_lacks_avif(weights, tmp_path, monkeypatch):
    """Where Pillow lacks AVIF, an .avif file in an input folder failed the batch (exit 1), where before
    AVIF support it was passed over: it is now an image srgan does not read, as HEIC is, counted in a
    note that says to upgrade Pillow; named on the command line it still fails, saying so."""
    from srgan_cli import images

    monkeypatch.setattr(images, "_AVIF", False)
    folder = tmp_path / "in"
    _img(folder / "a.png")
    (folder / "b.avif").write_bytes(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64)
    (folder / "c.AVIF").write_bytes((folder / "b.avif").read_bytes())
    report = tmp_path / "r.json"
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), str(folder), "-o", str(tmp_path / "out"), "--report", str(report)]
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]
    lines = result.stderr.splitlines()
    assert lines[-2:] == [
        "note: passed over 2 files srgan does not read (2 .avif); this Pillow lacks AVIF support: upgrade Pillow "
        "(pip install -U pillow) to read AVIF",
        "1 written, 2 skipped, 0 failed",
    ]
    skipped = [f for f in json.loads(report.read_text())["files"] if f["status"] == "skipped"]
    assert len(skipped) == 2 and all("lacks AVIF support" in f["reason"] for f in skipped)
    result = run(weights, folder / "b.avif", folder / "a.png", "-o", tmp_path / "named")
    assert result.exit_code == 1 and f"error: {folder / 'b.avif'}: this Pillow (" in result.stderr
    (folder / "a.png").unlink()
    result = run(weights, folder, "-o", tmp_path / "none")
    assert result.exit_code == 1 and "(passed over 2 files srgan does not read (2 .avif); this Pillow" in result.stderr


def test_pillows_other_suffixes_are_read_advised_rightly_or_not_images(weights, tmp_path):
    """Pillow's other suffixes of formats srgan reads got wrong advice: "srgan does not read .apng (PNG)
    images; convert it to PNG first", .vda (an old TGA name) "convert it to PNG"; and a video (.mpg,
    .mpeg: Pillow's MPEG) counted as an image srgan does not read, so `srgan upscale dir/* -o out` over a
    folder with one exited 1. An animated PNG named .apng is read as a PNG (its first frame, with a
    note) and gives a still .png; .vda and .icb are told to be renamed .tga; video and .vst (a VST audio
    plug-in, more often than TGA) are not images at all."""
    folder = tmp_path / "in"
    folder.mkdir()
    frames = [Image.new("RGB", (12, 10), (60 * i, 0, 0)) for i in range(3)]
    frames[0].save(folder / "anim.apng", format="PNG", save_all=True, append_images=frames[1:])
    for name in ("clip.mpg", "clip.MPEG", "plugin.vst"):
        (folder / name).write_bytes(b"\x00\x00\x01\xba" + b"\x00" * 60)
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), *[str(p) for p in sorted(folder.iterdir())], "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert [p.name for p in (tmp_path / "o").iterdir()] == ["anim.png"]
    assert _decodes(tmp_path / "o" / "anim.png").size == (48, 40)
    assert f"note: {folder / 'anim.apng'}: 3 frames; only the first is upscaled" in result.stderr
    assert result.stderr.splitlines()[-1] == "1 written, 3 skipped, 0 failed"
    result = run(weights, folder, "-o", tmp_path / "f")  # a folder's video is no image srgan does not read
    assert result.exit_code == 0 and "does not read" not in result.output, result.output
    assert run(weights, folder / "anim.apng", "-o", tmp_path / "one.png").exit_code == 0
    result = run(weights, folder / "anim.apng", "-o", tmp_path / "one.apng")
    assert result.exit_code == 2 and "one.apng: srgan writes one still picture, not an animated PNG; name it .png" in (
        " ".join(result.output.split())
    )
    shutil.copy(folder / "anim.apng", folder / "old.vda")
    result = run(weights, folder / "old.vda", "-o", tmp_path / "v.png")
    assert result.exit_code == 1
    assert f"error: {folder / 'old.vda'}: srgan reads TGA images named .tga, not .vda; rename it to old.tga" in (
        result.stderr
    )
    result = run(weights, folder / "clip.mpg", "-o", tmp_path / "c.png")
    assert result.exit_code == 1 and "not an image file name" in result.stderr and "MPEG" not in result.stderr


@needs_avif
def test_an_avif_sequence_named_avifs_is_read_as_its_first_frame(weights, tmp_path):
    """.avifs (an AVIF image sequence) was "srgan does not read .avifs (AVIF) images; convert it to PNG
    first", though renaming it .avif was enough: it is read as AVIF, its first frame, and gives .avif."""
    frames = [Image.new("RGB", (12, 10), (60 * i, 90, 0)) for i in range(3)]
    frames[0].save(tmp_path / "seq.avifs", format="AVIF", save_all=True, append_images=frames[1:])
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), str(tmp_path / "seq.avifs"), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "3 frames; only the first is upscaled" in result.stderr
    assert _decodes(tmp_path / "o" / "seq.avif").format == "AVIF"
    result = run(weights, tmp_path / "seq.avifs", "-o", tmp_path / "x.avifs")
    assert result.exit_code == 2 and "not an AVIF sequence; name it .avif" in " ".join(result.output.split())


def test_an_output_name_of_an_image_format_srgan_cannot_write_is_refused_not_made_a_folder(weights, tmp_path):
    """-o out.heic (or .jxl, .exr, .dng, .psd, .svg, .pdf, ...) made a folder of that name and wrote
    out.heic/a.png into it; such a name is an output file's, which srgan cannot write."""
    src = _img(tmp_path / "a.png")
    names = ["out.heic", "out.HEIF", "out.jxl", "out.exr", "out.dng", "out.nef", "out.svg", "out.pdf", "out.psd"]
    names += ["out.hif", "out.psb", "out.raw", "out.jxr", "out.hdr", "out.xcf", "out.pef"]  # were made folders too
    for name in [*names, "out.ico", "out.dds"]:  # the last two: suffixes Pillow knows
        result = run(weights, src, "-o", tmp_path / name)
        assert result.exit_code == 2, result.output
        error = next(line for line in result.output.splitlines() if line.startswith("Error:"))
        assert f"{name}: srgan cannot write " in error and "; use .png, .jpg, .webp" in error, error
        assert not (tmp_path / name).exists()
    assert "cannot write HEIC images" in run(weights, src, "-o", tmp_path / "out.heic").output
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), "-q", "-", "-o", str(tmp_path / "o.heic")], input=src.read_bytes()
    )
    assert result.exit_code == 2 and "o.heic: srgan cannot write HEIC images" in result.output
    result = run(weights, src, _img(tmp_path / "b.png"), "-o", tmp_path / "out.jxl")  # several inputs: a folder
    assert result.exit_code == 0 and sorted(p.name for p in (tmp_path / "out.jxl").iterdir()) == ["a.png", "b.png"]
    (tmp_path / "there.heic").mkdir()  # an existing folder is a folder, whatever its name
    assert run(weights, src, "-o", tmp_path / "there.heic").exit_code == 0
    assert [p.name for p in (tmp_path / "there.heic").iterdir()] == ["a.png"]


def test_with_several_inputs_an_o_named_as_a_format_srgan_does_not_write_is_the_output_folder(weights, tmp_path):
    """A folder (or several inputs) with a new -o out.pdf, x.psd, out.jp2 was refused (exit 2, "looks like
    an image file name") once srgan knew those suffixes; before, the folder was made. With several inputs
    -o can only be a folder: it is made, with a note; a name srgan writes (out.png) is still refused, as
    it most likely meant one image, and so is out.pdf for a single image."""
    folder = tmp_path / "in"
    _img(folder / "a.png")
    _img(folder / "b.png", seed=1)
    for name, fmt in (("out.pdf", "PDF"), ("x.PSD", "PSD"), ("out.jp2", "JPEG 2000"), ("p.ppm", "PPM")):
        result = CliRunner().invoke(main, ["upscale", "-m", str(weights), str(folder), "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["a.png", "b.png"]
        assert f"note: {tmp_path / name} is named as a {fmt} file would be, but srgan does not write that format" in (
            " ".join(result.stderr.split())
        )
    result = run(weights, folder / "a.png", folder / "b.png", "-o", tmp_path / "two.heic")
    assert result.exit_code == 0 and len(list((tmp_path / "two.heic").iterdir())) == 2
    result = run(weights, folder, "-o", tmp_path / "out.png")
    assert result.exit_code == 2 and "looks like an image file name" in result.output
    assert not (tmp_path / "out.png").exists()
    result = run(weights, folder / "a.png", "-o", tmp_path / "one.pdf")
    assert result.exit_code == 2 and "srgan cannot write PDF images" in result.output
    assert not (tmp_path / "one.pdf").exists()


@needs_jpeg2000
def test_the_refusal_of_an_unwritable_o_does_not_suggest_format(weights, tmp_path):
    """`-o fg.jp2 --format png` was told "use .png, ... (or --format)": --format was given, and cannot
    help, as it must match -o's suffix where -o names the file."""
    from srgan_cli.images import output_suffixes

    src = tmp_path / "a.jp2"
    Image.new("RGB", (12, 10), (9, 99, 199)).save(src)
    for extra in ([], ["--format", "png"]):
        result = run(weights, src, "-o", tmp_path / "fg.jp2", *extra)
        assert result.exit_code == 2, result.output
        error = result.output.splitlines()[-1]
        assert error.endswith(f"fg.jp2: srgan cannot write JPEG 2000 images; use {output_suffixes()}"), error
        assert "--format" not in error
    assert not (tmp_path / "fg.jp2").exists()


def test_an_o_refusal_shows_a_name_with_a_newline_on_one_line(weights, tmp_path):
    """The -o refusals put the raw path in the message: a name with a newline split it over two lines
    (the second looking like a line of its own); control characters are escaped, as elsewhere."""
    src = _img(tmp_path / "a.png")
    (tmp_path / "file\nhere").write_bytes(b"x")
    cases = [
        ([src, "-o", tmp_path / "new\nline.heic"], "new\\nline.heic: srgan cannot write HEIC images"),
        ([src, "-o", tmp_path / "new\nline.png", "--format", "jpg"], "does not match the suffix of "),
        ([src, _img(tmp_path / "b.png"), "-o", tmp_path / "file\nhere"], "file\\nhere is a file; with several"),
        ([tmp_path, "-o", tmp_path / "new\nline.png"], "new\\nline.png looks like an image file name"),
    ]
    for args, said in cases:
        result = run(weights, *args)
        assert result.exit_code == 2, result.output
        error = result.output.splitlines()[-1]
        assert error.startswith("Error: Invalid value for '-o': ") and said in error, result.output
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), "-", "-o", str(tmp_path / "in\nput.jxl")], input=src.read_bytes()
    )
    assert result.exit_code == 2 and "in\\nput.jxl: srgan cannot write JPEG XL" in result.output.splitlines()[-1]


def test_an_image_srgan_does_not_read_fails_when_named_and_is_counted_by_suffix_in_a_folder(weights, tmp_path):
    """photo.heic named beside base.png was "1 written, 1 skipped" and exit 0, and a folder's HEIC, JPEG
    XL, ... files were passed over as "not images" without a word."""
    folder = tmp_path / "in"
    a = _img(folder / "a.png")
    advice = {
        "p.heic": "srgan does not read HEIC images; convert it to JPEG or PNG first (heif-convert, or Pillow with",
        "p.jxl": "srgan does not read JPEG XL images; convert it",
        "p.dng": "srgan does not read DNG images; develop it to 16-bit TIFF",
        "q.nef": "srgan does not read camera raw images; develop it to 16-bit TIFF",
        "p.exr": "srgan does not read OpenEXR images; export it as 16-bit TIFF or PNG",
        "p.psd": "srgan does not read PSD images;",
        "p.svg": "srgan does not read SVG images;",
        "p.pdf": "srgan does not read PDF images;",
        "p.hif": "srgan does not read HEIF images; convert it to JPEG or PNG first",  # these were "skipped", exit 0
        "p.psb": "srgan does not read PSD images;",
        "p.raw": "srgan does not read camera raw images;",
        "p.jxr": "srgan does not read JPEG XR images;",
        "p.xcf": "srgan does not read GIMP XCF images;",
    }
    for name in advice:
        (folder / name).write_bytes(b"\x00" * 64)
    (folder / "readme.txt").write_text("not an image")
    report = tmp_path / "r.json"
    for name, said in advice.items():
        result = run(weights, folder / name, a, "-o", tmp_path / "out", "--report", report, "--overwrite")
        assert result.exit_code == 1, result.output
        assert f"error: {folder / name}: {said}" in result.stderr and result.stderr.count("error:") == 1
        assert (tmp_path / "out" / "a.png").is_file()
        doc = json.loads(report.read_text())
        assert [f["status"] for f in doc["files"]] == ["failed", "written"] and doc["files"][0]["reason"].endswith(
            result.stderr.split(f"{name}: ", 1)[1].splitlines()[0]
        )
    result = run(weights, folder / "p.heic", "-o", tmp_path / "one.png")  # one input, to a file
    assert result.exit_code == 1 and f"error: {folder / 'p.heic'}: {advice['p.heic']}" in result.stderr
    # a folder's: passed over, counted by suffix in a note at the end (not its other files)
    result = CliRunner().invoke(main, ["upscale", "-m", str(weights), str(folder), "-o", str(tmp_path / "f")])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    counted = "(1 .dng, 1 .exr, 1 .heic, 1 .hif, 1 .jxl, 1 .jxr, 1 .nef, 1 .pdf, 1 .psb, 1 .psd, 1 .raw, 1 .svg, "
    counted += "1 .xcf)"
    summary = "1 written, 14 skipped, 0 failed"
    assert lines[-2:] == [f"note: passed over 13 files srgan does not read {counted}", summary]
    a.unlink()
    result = run(weights, folder, "-o", tmp_path / "g")
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: no images found in the inputs (passed over 13 files srgan does not read {counted} and 1 file that "
        "is not an image); supported: "
    )


def test_float_gray_tiff_outside_0_to_1_is_one_line_not_a_dark_picture(weights, tmp_path):
    """A float gray TIFF of values up to 2.65 came out nearly black (divided by 255), one up to 1.9 clipped
    to 1 without a word."""
    ramp = np.linspace(0.06, 2.65, 12 * 10, dtype=np.float32).reshape(10, 12)
    Image.fromarray(ramp).save(tmp_path / "hdr.tif")
    result = run(weights, tmp_path / "hdr.tif", "-o", tmp_path / "hdr.png")
    assert result.exit_code == 1 and not (tmp_path / "hdr.png").exists()
    assert result.stderr.startswith(f"error: {tmp_path / 'hdr.tif'}: a floating-point gray TIFF with values from ")
    Image.fromarray(np.clip(ramp, 0, 1.003)).save(tmp_path / "near.tif")
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), str(tmp_path / "near.tif"), "-o", str(tmp_path / "near.png")]
    )
    assert result.exit_code == 0 and "to 1.003: clipped to 0-1" in result.stderr, result.output


def test_a_cmyk_jpeg_is_upscaled_with_a_note_that_it_became_rgb(weights, tmp_path):
    Image.new("CMYK", (12, 10), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), str(tmp_path / "c.jpg"), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert f"note: {tmp_path / 'c.jpg'}: CMYK converted to RGB by a plain formula" in result.stderr
    assert _decodes(tmp_path / "o" / "c.jpg").mode == "RGB"


def test_an_output_typed_with_a_trailing_slash_is_a_folder_whatever_its_name(weights, tmp_path):
    # click's Path dropped the slash: `-o out.avif/` wrote the file out.avif, `a.png b.png -o new.png/` was
    # told to "give a folder", and `-o f.png/ --overwrite` replaced the file f.png
    a, b = _img(tmp_path / "a.png"), _img(tmp_path / "b.png")
    assert run(weights, a, "-o", f"{tmp_path / 'out.avif'}/").exit_code == 0
    assert [p.name for p in (tmp_path / "out.avif").iterdir()] == ["a.png"]
    result = run(weights, a, b, "-o", f"{tmp_path / 'new.png'}/.")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "new.png").iterdir()) == ["a.png", "b.png"]
    (tmp_path / "f.png").write_bytes(b"mine")
    result = run(weights, a, "-o", f"{tmp_path / 'f.png'}/", "--overwrite")
    assert result.exit_code == 2 and "f.png/ is a file, not a folder" in result.output
    assert (tmp_path / "f.png").read_bytes() == b"mine"


def test_outputs_and_mirrored_folders_keep_the_inputs_privacy(tmp_path, weights):
    """A private photo (0600) in a private folder (0700) came out 0644 in a 0755 folder: readable
    by every user of the machine. Outputs get the input's read and write bits and mirrored
    folders the input folder's, less the umask, as cp -r gives."""
    src = tmp_path / "in"
    (src / "priv" / "deep").mkdir(parents=True)
    (src / "pub").mkdir()
    for rel in ("a.png", "priv/deep/b.png", "pub/c.png"):
        _img(src / rel)
    for rel, mode in (("a.png", 0o600), ("priv/deep/b.png", 0o640), ("priv", 0o700), ("priv/deep", 0o750)):
        (src / rel).chmod(mode)
    old = os.umask(0o022)
    try:
        result = run(weights, str(src), "-o", str(tmp_path / "out"), "--recursive")
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    modes = {
        rel: stat.S_IMODE((tmp_path / "out" / rel).stat().st_mode)
        for rel in ("a.png", "priv", "priv/deep", "priv/deep/b.png", "pub", "pub/c.png")
    }
    assert modes == {
        "a.png": 0o600,
        "priv": 0o700,
        "priv/deep": 0o750,
        "priv/deep/b.png": 0o640,
        "pub": 0o755,
        "pub/c.png": 0o644,
    }


def test_sub_folders_not_entered_without_recursive_are_said(tmp_path, weights):
    """A folder of photos filed in year folders gave '1 written', exit 0, without a word of the
    images left in its sub-folders, and a folder with images only in sub-folders 'no images
    found' with no hint: both name the sub-folders and --recursive. The output folder inside the
    input folder and hidden folders are not counted."""
    src = tmp_path / "photos"
    _img(src / "a.png")
    _img(src / "2019" / "deep" / "b.png")
    (src / "notes").mkdir()
    (src / "notes" / "n.txt").write_text("x")
    _img(src / ".thumbs" / "t.png")
    _img(src / "big" / "old_x4.png")  # the -o folder below
    args = [str(src), "-o", str(src / "big"), "--skip-existing"]
    result = CliRunner().invoke(main, ["upscale", "-m", str(weights), *args])
    assert result.exit_code == 0, result.output
    assert f"1 sub-folder with images was not entered ({src / '2019'}): pass --recursive" in result.output
    assert "notes" not in result.output and ".thumbs" not in result.output
    assert (src / "big" / "a.png").exists() and not (src / "big" / "2019").exists()

    only = tmp_path / "only"
    _img(only / "2020" / "c.png")
    _img(only / "2021" / "d.png")
    result = run(weights, str(only), "-o", str(tmp_path / "out"))
    assert result.exit_code != 0
    assert result.output.strip().splitlines()[-1] == (
        f"error: no images found in the inputs; 2 sub-folders with images were not entered "
        f"({only / '2020'}, {only / '2021'}): pass --recursive to upscale their images too"
    )
    result = run(weights, str(only), "-o", str(tmp_path / "out"), "--recursive")
    assert result.exit_code == 0 and "not entered" not in result.output


def test_a_link_in_an_outputs_place_is_skipped_or_replaced_never_written_through(tmp_path, weights):
    """A symbolic link where an output goes, to a file outside -o, failed the image as 'written
    outside' even with --skip-existing, which would only have skipped it: the escape check
    followed the link, where the write replaces the link itself. Now --skip-existing skips it,
    --overwrite replaces the link with the output (given the input's mode, not the linked file's),
    and the linked file is untouched either way."""
    src = _img(tmp_path / "a.png")
    src.chmod(0o600)
    (tmp_path / "o").mkdir()
    elsewhere = _img(tmp_path / "elsewhere" / "t.png", seed=1)
    before = elsewhere.read_bytes()
    (tmp_path / "o" / "a.png").symlink_to(elsewhere)
    result = run(weights, src, "-o", tmp_path / "o", "--skip-existing")
    assert result.exit_code == 0 and (tmp_path / "o" / "a.png").is_symlink(), result.output
    result = run(weights, src, "-o", tmp_path / "o", "--overwrite")
    assert result.exit_code == 0, result.output
    out = tmp_path / "o" / "a.png"
    assert not out.is_symlink() and Image.open(out).size == (48, 40)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert elsewhere.read_bytes() == before and stat.S_IMODE(elsewhere.stat().st_mode) != 0o600


def test_a_file_put_where_the_report_goes_during_the_run_is_kept(tmp_path, weights, monkeypatch):
    """--report's file is checked before the images; one another program wrote there during the
    run was replaced by the report at its end. It is kept, and the run says the report is not written."""
    import srgan_cli.images as images

    report = tmp_path / "notes.json"
    real = images.write_image

    def write_while_the_user_saves_notes(*args, **kwargs):
        report.write_text("the user's notes\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(images, "write_image", write_while_the_user_saves_notes)
    result = run(weights, _img(tmp_path / "a.png"), "-o", tmp_path / "out", "--report", report)
    assert result.exit_code != 0 and (tmp_path / "out" / "a.png").exists()
    assert report.read_text() == "the user's notes\n"
    assert "not an srgan report was put there meanwhile" in result.output


def test_a_sub_folder_made_a_link_to_elsewhere_during_the_run_takes_no_output_there(tmp_path, weights, monkeypatch):
    """Outputs never escape -o was checked when the batch was planned: a sub-folder of -o replaced
    by a link to another folder during the run took every later output there, exit 0. Each
    write checks again."""
    import srgan_cli.images as images

    src, out, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    _img(src / "a.png")
    _img(src / "sub" / "b.png")
    elsewhere.mkdir()
    real = images.write_image

    def swap_then_write(path, *args, **kwargs):
        if Path(path).name == "a.png" and not (out / "sub").is_symlink():  # a.png is written first
            shutil.rmtree(out / "sub")
            (out / "sub").symlink_to(elsewhere)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(images, "write_image", swap_then_write)
    result = run(weights, src, "-o", out, "--recursive")
    assert result.exit_code == 1 and "would be written outside" in result.output
    assert (out / "a.png").exists() and os.listdir(elsewhere) == []


def test_a_staging_folder_left_by_a_killed_stdin_run_is_removed_a_day_later(weights, tmp_path, monkeypatch):
    """A SIGKILL of `srgan upscale - -o -` left srgan-stdio-*/stdin.png, the whole image, in the
    temporary folder for good. The next standard-input run removes this user's that are a day
    old; a younger one (a run that may still be going) is left alone."""
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    old, young = temp / "srgan-stdio-old1", temp / "srgan-stdio-young"
    for folder in (old, young):
        _img(folder / "stdin.png")
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    (temp / "other-old").mkdir()
    os.utime(temp / "other-old", (day_ago, day_ago))
    data = _img(tmp_path / "in.png").read_bytes()
    result = CliRunner().invoke(
        main, ["upscale", "-m", str(weights), "-q", "-", "-o", str(tmp_path / "x.png")], input=data
    )
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(temp)) == ["other-old", "srgan-stdio-young"]


def test_an_output_typed_as_a_folder_with_a_dot_in_its_name_gets_no_mistyped_name_note(weights, tmp_path):
    """`-o x.d/` says it is a folder; the note for a mistyped file name ('x.d is not an image file
    name, so it is a folder') was given all the same."""
    args = ["upscale", "-m", str(weights), str(_img(tmp_path / "a.png")), "-o", f"{tmp_path / 'x.d'}/"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and (tmp_path / "x.d" / "a.png").exists(), result.output
    assert "not an image file name" not in result.output
    result = CliRunner().invoke(main, [*args[:-1], str(tmp_path / "y.d")])
    assert result.exit_code == 0 and "not an image file name" in result.output


def test_a_rerun_of_gifs_converted_into_their_own_folder_skips_their_earlier_outputs(weights, tmp_path):
    """GIF (and PPM, TGA, QOI, JPEG 2000) go to PNG: `srgan upscale g -o g` wrote x.png beside x.gif, and
    every rerun, --skip-existing too, failed twice on "g/x.png: the output would replace an input image":
    x.png, its own output, hid that it is x.gif's."""
    folder = tmp_path / "g"
    for name, seed in (("x.gif", 1), ("y.gif", 2)):
        folder.mkdir(exist_ok=True)
        Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / name)
    assert run(weights, folder, "-o", folder, "--tile", "32").exit_code == 0
    (folder / "y.png").unlink()  # as if the first run was stopped before y
    result = run(weights, folder, "-o", folder, "--tile", "32", "--skip-existing", "--report", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    counts = json.loads((tmp_path / "r.json").read_text())
    assert (counts["written"], counts["skipped"], counts["failed"]) == (1, 2, 0)
    assert sorted(p.name for p in folder.iterdir()) == ["x.gif", "x.png", "y.gif", "y.png"]
    # a PNG of the user's beside x.gif is an input: both fail, each line naming its own input
    _img(folder / "x.png")
    result = run(weights, folder, "-o", folder, "--tile", "32", "--skip-existing")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 1 and len(errors) == len(set(errors)) == 2, result.output
    assert f"error: {folder / 'x.png'}: the output of {folder / 'x.gif'} would replace an input image" in result.stderr


def _as_on_fuse_exfat(monkeypatch, card: Path) -> None:
    """os.lstat answers for the folder ``card`` as Linux's FUSE exFAT does: another disk (st_dev),
    whose names are found in any case (photo.png finds Photo.PNG), each spelling with an inode
    number of its own, so that no inode test says it is one file. The file system under the tests
    keeps the case: only lstat is faked, as srgan tells a disk that ignores case by it."""
    from srgan_cli.commands import upscale as command

    real_lstat = os.lstat
    top = os.path.realpath(card)

    def spelled(path: str) -> str:  # the entry the name finds, in the case it is stored in
        path = os.path.abspath(path)
        rest = os.path.relpath(path, top).split(os.sep)
        found = top
        for name in rest:
            if name == ".":
                continue
            there = os.listdir(found) if os.path.isdir(found) else []
            match = [n for n in there if n == name] or [n for n in there if n.casefold() == name.casefold()]
            found = os.path.join(found, match[0] if match else name)
        return found

    def lstat(path, *args, **kwargs):
        if isinstance(path, int) or args or kwargs:
            return real_lstat(path, *args, **kwargs)
        text = os.path.abspath(os.fsdecode(path))
        if text != top and not text.startswith(top + os.sep):
            return real_lstat(path)
        found = spelled(text)
        st = real_lstat(found)
        values = list(st)
        values[2] = st.st_dev + 1  # another file system
        if found != text:  # another spelling: another inode number, as FUSE numbers each name it is asked
            values[1] = st.st_ino + 1_000_000 + len(text)
        return os.stat_result(values)

    monkeypatch.setattr(os, "lstat", lstat)
    # answers of its own, which no other test sees
    monkeypatch.setattr(command, "_case_blind", functools.lru_cache(maxsize=256)(command._case_blind.__wrapped__))


def test_fuse_exfat_is_told_to_ignore_case_though_its_inode_numbers_differ(tmp_path, monkeypatch):
    """FUSE exFAT gives Photo.PNG and photo.png different inode numbers: the inode test said case
    counts, and an output photo.png replaced its input. An empty card is not told by the disk it is
    mounted on (case counts there), nor is an ext4 folder with a link named in another case."""
    from srgan_cli.commands import upscale as command

    if command._case_blind(str(tmp_path)):
        pytest.skip("this disk ignores case")
    card = tmp_path / "card"
    (card / "in").mkdir(parents=True)
    (card / "in" / "Photo.PNG").write_bytes(b"")
    _as_on_fuse_exfat(monkeypatch, card)
    _case_blind, _inside = command._case_blind, command._inside
    assert _case_blind(str(card / "in")) and _case_blind(str(card / "new" / "deeper"))
    assert not _case_blind(str(tmp_path))
    # -o card/IN is the input folder card/in: an earlier run's outputs there are no inputs
    assert _inside(card / "IN", card / "in" / "Photo_x4.png") and not _inside(tmp_path / "CARD", card / "in")
    (card / "in" / "Photo.PNG").unlink()
    (card / "in").rmdir()
    _case_blind.cache_clear()
    assert _case_blind(str(card)) and _case_blind(str(card / "new"))  # probed with a file, removed at once
    assert os.listdir(card) == []


def test_an_output_differing_from_its_input_only_in_case_is_refused_on_exfat(weights, tmp_path, monkeypatch):
    """On a memory card (FUSE exFAT) `srgan upscale in/Photo.PNG -o in/photo.png --overwrite` replaced
    the input with its upscale, as did `in -o in --format png`; two inputs a.png and a.PNG written into
    the card gave one file, the second image replacing the first."""
    from srgan_cli.commands import upscale as command

    if command._case_blind(str(tmp_path)):
        pytest.skip("this disk ignores case: it cannot hold a.png and a.PNG")
    card = tmp_path / "card"
    src = _img(card / "in" / "Photo.PNG")
    before = src.read_bytes()
    _img(tmp_path / "two" / "a.png", seed=1)
    _img(tmp_path / "two" / "a.PNG", seed=2)
    _as_on_fuse_exfat(monkeypatch, card)
    for flag in ("--overwrite", "--skip-existing"):
        result = run(weights, src, "-o", card / "in" / "photo.png", flag)
        assert result.exit_code == 1 and "photo.png: the output would replace an input image" in result.stderr
        result = run(weights, card / "in", "-o", card / "in", "--format", "png", flag)
        assert result.exit_code == 1 and "Photo.png: the output would replace an input image" in result.stderr
        result = run(weights, tmp_path / "two", "-o", card / "out", flag)
        assert result.exit_code == 1 and "a.png is also the output of" in result.stderr, result.output
        shutil.rmtree(card / "out")
    assert os.listdir(card / "in") == ["Photo.PNG"] and src.read_bytes() == before


@pytest.mark.skipif(sys.platform == "win32", reason="Windows refuses ':' in a name itself")
def test_a_name_exfat_refuses_fails_before_its_image_is_upscaled(weights, tmp_path, monkeypatch):
    """Linux's FUSE exFAT answers "no such file" for a name with : ? " and the like: each such image
    was upscaled, then failed on "the path is too long for this system (32 characters; Windows takes
    259...)"."""
    from srgan_cli.commands import upscale as command

    for name in ("a:b.png", "ok.png"):
        _img(tmp_path / "in" / name)
    card = tmp_path / "card"
    card.mkdir()
    real_open, real_read = os.open, command._read

    def exfat_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and os.path.dirname(os.path.abspath(path)).startswith(str(card)):
            if ":" in os.path.basename(path):
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        return real_open(path, flags, *args, **kwargs)

    decoded = []
    monkeypatch.setattr(os, "open", exfat_open)
    monkeypatch.setattr(
        command, "_read", lambda path, max_pixels: decoded.append(path.name) or real_read(path, max_pixels)
    )
    result = run(weights, tmp_path / "in", "-o", card / "out")
    assert result.exit_code == 1 and decoded == ["ok.png"], result.output
    assert "a:b.png: cannot write the image: the file system here refuses a name holding ':'" in result.stderr
    assert "too long" not in result.stderr and os.listdir(card / "out") == ["ok.png"]
    assert os.listdir(card) == ["out"]
    # where the name is taken, the file made to ask is gone
    assert run(weights, tmp_path / "in", "-o", tmp_path / "plain").exit_code == 0
    assert sorted(os.listdir(tmp_path / "plain")) == ["a:b.png", "ok.png"] and "plain" in os.listdir(tmp_path)
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".srgan")]


def test_an_append_only_output_folder_gets_its_image_and_a_note_of_the_temporary_file_left(
    weights, tmp_path, monkeypatch
):
    """In a folder that takes new names but lets none be removed (chattr +a) the image was written,
    by link(), then reported failed as its temporary file could not be removed."""
    src = _img(tmp_path / "a.png")
    out = tmp_path / "kept"
    out.mkdir()
    real_unlink = os.unlink

    def append_only(path, *args, **kwargs):
        if os.path.dirname(os.path.abspath(path)) == str(out):
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), path)
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", append_only)
    result = CliRunner().invoke(main, ["upscale", "-m", str(weights), str(src), "-o", str(out / "x.png")])
    assert result.exit_code == 0 and "1 written, 0 skipped, 0 failed" in result.stderr, result.output
    assert _decodes(out / "x.png").size == (48, 40)
    parts = [p.name for p in out.iterdir() if p.name.endswith(".part")]
    assert len(parts) == 1 and os.stat(out / parts[0]).st_ino == os.stat(out / "x.png").st_ino
    assert f"note: {out / 'x.png'}: written, but its temporary file {parts[0]} (a second name" in result.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_at_an_outputs_name_is_never_replaced(weights, tmp_path):
    """--overwrite replaced a FIFO at the output's name with a file (a reader waiting on it waited for
    ever); without it the error said to pass --overwrite, and --skip-existing skipped the image."""
    src = _img(tmp_path / "in" / "a.png")
    _img(tmp_path / "in" / "b.png", seed=1)
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "out").mkdir()
    os.mkfifo(tmp_path / "out" / "a.png")
    for flag in ("--overwrite", "--skip-existing", None):
        result = run(weights, src, "-o", tmp_path / "pipe.png", *([flag] if flag else []))
        assert result.exit_code == 1 and "pipe.png: is a FIFO, not a file, and is never replaced" in result.stderr
        assert "-o - > " in result.stderr and "--overwrite" not in result.stderr, result.output
        result = run(weights, tmp_path / "in", "-o", tmp_path / "out", *([flag] if flag else []))
        assert result.exit_code == 1 and "a.png: is a FIFO, not a file" in result.stderr, result.output
    assert stat.S_ISFIFO(os.stat(tmp_path / "pipe.png").st_mode) and stat.S_ISFIFO(
        os.stat(tmp_path / "out" / "a.png").st_mode
    )
    assert _decodes(tmp_path / "out" / "b.png").size == (48, 40)


def test_a_device_or_a_file_without_an_image_suffix_as_the_one_output_says_what_to_do(weights, tmp_path):
    """`srgan upscale red.png -o /dev/null` said "with several inputs or a folder, -o must be a folder"
    of the one input it had."""
    src = _img(tmp_path / "red.png")
    result = run(weights, src, "-o", os.devnull)
    assert result.exit_code == 2 and f"{os.devnull} is a device, not a file" in result.output
    assert f"-o - > {os.devnull}" in result.output and "several inputs" not in result.output, result.output
    (tmp_path / "notes").write_text("mine")
    result = run(weights, src, "-o", tmp_path / "notes")
    assert result.exit_code == 2 and "notes is a file not named as an image (.png, .jpg" in result.output
    assert "several inputs" not in result.output and (tmp_path / "notes").read_text() == "mine"
    result = run(weights, src, src, "-o", os.devnull)  # several: still a folder to give
    assert result.exit_code == 2 and "with several inputs or a folder, -o must be a folder" in result.output
