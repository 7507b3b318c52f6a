"""Training data: crops, augmentation, determinism, skipped files, the bicubic LR."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_cli.data import (
    PatchDataset,
    StepBatchSampler,
    hold_out,
    load_val_set,
    make_loader,
    make_pair,
    random_patch,
    resolve_cache,
    scan_images,
    val_image,
)
from srgan_cli.errors import SrganError
from srgan_cli.resize import imresize, imresize_torch


def _write_images(folder, count=3, size=(48, 40), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"img{i}.png")


@pytest.fixture()
def image_tree(tmp_path):
    root = tmp_path / "data"
    _write_images(root / "a", 2)
    _write_images(root / "b" / "deeper", 2, seed=1)
    Image.fromarray(np.zeros((10, 50, 3), np.uint8)).save(root / "a" / "tiny.png")
    (root / "b" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (root / "notes.txt").write_text("ignored")
    ramp = np.add.outer(np.arange(64), np.arange(64)).astype(np.uint8)
    Image.fromarray(ramp).save(root / "gray.png")  # grayscale: read as RGB
    return root


def test_scan_recurses_and_counts_skipped(image_tree):
    scan = scan_images(image_tree, 32)
    assert len(scan.paths) == 5
    assert scan.skipped_small == 1
    assert scan.skipped_unreadable == 1
    assert "skipped 1 smaller" in scan.summary() and "1 unreadable" in scan.summary()
    assert scan.summary().endswith(f"; unreadable: {scan.unreadable[0]}")  # named, so it can be fixed
    assert "and 2 more" in dataclasses.replace(scan, unreadable=scan.unreadable * 7).summary()


def test_scan_counts_images_of_formats_srgan_does_not_read(tmp_path, monkeypatch):
    """A training folder's .avif files, where Pillow lacks AVIF, were each counted unreadable (its header
    did not read), and its HEIC files were left out without a word: both are counted by suffix."""
    from srgan_cli import images

    monkeypatch.setattr(images, "_AVIF", False)
    _write_images(tmp_path / "d", 2)
    for name in ("x.avif", "y.avif", "z.heic"):
        (tmp_path / "d" / name).write_bytes(b"\x00" * 64)
    scan = scan_images(tmp_path / "d", 32)
    assert len(scan.paths) == 2 and scan.skipped_unreadable == 0 and scan.unread == {".avif": 2, ".heic": 1}
    assert scan.summary().endswith(
        "(skipped 0 smaller than the patch, 0 unreadable); passed over 3 files srgan does not read (2 .avif, "
        "1 .heic); this Pillow lacks AVIF support: upgrade Pillow (pip install -U pillow) to read AVIF"
    )
    assert hold_out(scan, 1)[0].unread == scan.unread
    for path in (tmp_path / "d").glob("*.png"):
        path.unlink()
    with pytest.raises(SrganError, match=r"0 unreadable; passed over 3 files srgan does not read \(2 .avif"):
        scan_images(tmp_path / "d", 32)


def test_scan_without_usable_images_is_one_line_error(tmp_path):
    _write_images(tmp_path / "small", 2, size=(8, 8))
    with pytest.raises(SrganError, match="no usable training images") as info:
        scan_images(tmp_path / "small", 32)
    assert "\n" not in str(info.value)
    with pytest.raises(SrganError, match="no such folder"):
        scan_images(tmp_path / "missing", 32)


def test_hold_out_is_a_split_that_depends_on_the_paths_only(tmp_path):
    root = tmp_path / "data"
    _write_images(root / "a", 6)
    _write_images(root / "b", 6, seed=1)
    scan = scan_images(root, 32)
    rest, held = hold_out(scan, 3)
    assert len(held) == 3 and len(rest.paths) == len(rest.sizes) == 9
    assert not set(held) & set(rest.paths) and set(held) | set(rest.paths) == set(scan.paths)
    assert rest.sizes == [scan.sizes[scan.paths.index(path)] for path in rest.paths]
    # the same images from a copy of the tree elsewhere, and from a scan listed in another order
    copy = tmp_path / "copy"
    for path in scan.paths:
        (copy / path.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
        (copy / path.relative_to(root)).write_bytes(path.read_bytes())
    assert [p.relative_to(copy) for p in hold_out(scan_images(copy, 32), 3)[1]] == [p.relative_to(root) for p in held]
    scan.paths.reverse()
    scan.sizes.reverse()
    assert hold_out(scan, 3)[1] == held
    assert set(held) < set(hold_out(scan, 4)[1])  # a larger N adds to the same images
    for count in (0, 12):
        with pytest.raises(SrganError, match=f"--val-holdout {count}: .* 12 usable"):
            hold_out(scan, count)


def test_val_image_crops_the_centre_to_a_multiple_of_the_scale(tmp_path):
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (300, 203, 3), dtype=np.uint8)
    Image.fromarray(hr).save(tmp_path / "x.png")
    item = val_image(tmp_path / "x.png", 4, max_side=256)
    assert item.hr.shape == (256, 200, 3) and item.lr.shape == (64, 50, 3)
    assert np.array_equal(item.hr, hr[22:278, 1:201])
    whole = val_image(tmp_path / "x.png", 4)
    assert whole.hr.shape == (300, 200, 3) and np.array_equal(whole.hr, hr[:, :200])  # as --val DIR reads it
    assert np.array_equal(item.lr, imresize(item.hr, 0.25))


def test_a_validation_image_that_does_not_read_says_why(tmp_path):
    """It said "cannot read this validation image" alone, for a truncated file as for one without
    read permission, where the training images and bench say which."""
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "odd.png")
    raw = (tmp_path / "odd.png").read_bytes()
    (tmp_path / "odd.png").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SrganError) as info:
        val_image(tmp_path / "odd.png", 4)
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'odd.png'}: cannot read this validation image (cannot decode"), message
    assert "truncated" in message and message.endswith("; fix or remove it") and message.count(str(tmp_path)) == 1
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root reads it all the same
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / "odd.png")
        (tmp_path / "odd.png").chmod(0)
        with pytest.raises(SrganError, match="permission denied"):
            val_image(tmp_path / "odd.png", 4)


def test_patches_shape_dtype_and_determinism(image_tree):
    scan = scan_images(image_tree, 32)
    a = PatchDataset(scan, 32, seed=3)
    b = PatchDataset(scan, 32, seed=3, cache=True)
    c = PatchDataset(scan, 32, seed=4)
    for i in range(6):
        pa, pb = a[i], b[i]
        assert pa.shape == (3, 32, 32) and pa.dtype == torch.uint8
        assert torch.equal(pa, pb)  # cached or not, a sample is a function of (seed, index)
    assert any(not torch.equal(a[i], c[i]) for i in range(6))
    assert not torch.equal(a[0], a[1])


def test_wide_and_float_images_are_scaled_to_eight_bits_not_clipped(tmp_path):
    # Pillow's convert("RGB") clips 16-bit grayscale to white and float images to black; a
    # training set of 16-bit scans would train on blank patches.
    root = tmp_path / "data"
    root.mkdir()
    Image.fromarray(np.full((40, 40), 0x4040, np.uint16)).save(root / "gray16.png")  # 16448 / 65535 -> 64
    Image.fromarray(np.full((40, 40), 0.75, np.float32)).save(root / "float.tiff")  # 0.75 -> 191.25 -> 191
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(root / "rgb8.png")
    expected = {"gray16": 64, "float": 191, "rgb8": 200}
    scan = scan_images(root, 32)
    assert len(scan.paths) == 3
    for cache in (False, True):
        data = PatchDataset(scan, 32, cache=cache)
        assert not data.undecodable
        for k, path in enumerate(data.paths):
            image = data._image(k)
            assert image.dtype == np.uint8 and image.shape == (40, 40, 3)
            assert np.all(image == expected[path.stem]), (path.name, cache, np.unique(image))
    assert np.all(val_image(root / "gray16.png", 4).hr == 64)


def test_an_undecodable_image_is_replaced_alike_with_and_without_the_cache(tmp_path):
    root = tmp_path / "data"
    _write_images(root, 3)
    good = (root / "img0.png").read_bytes()
    (root / "img1.png").write_bytes(good[: len(good) // 2])  # the header reads, the data does not
    scan = scan_images(root, 32)
    assert len(scan.paths) == 3
    plain = PatchDataset(scan, 32, seed=5, group=3)
    cached = PatchDataset(scan, 32, seed=5, group=3, cache=True)
    assert [p.name for p, _ in cached.undecodable] == ["img1.png"]
    assert "truncated" in cached.undecodable[0][1]
    assert plain.undecodable == []  # found only when decoding up front
    for i in range(9):
        assert torch.equal(plain[i], cached[i])
    for name in ("img0.png", "img2.png"):
        (root / name).write_bytes(b"\x89PNG\r\n\x1a\n" + good[8:40])
    with pytest.raises(SrganError, match="none of the training images can be decoded"):
        PatchDataset(scan, 32, cache=True)


def test_random_patch_is_a_flipped_or_rotated_crop():
    image = np.arange(20 * 30 * 3, dtype=np.int64).reshape(20, 30, 3)
    seen = set()
    for s in range(40):
        patch = random_patch(image, 8, np.random.default_rng(s))
        assert patch.shape == (8, 8, 3)
        # Undo every flip/rotation candidate: one of them must be a crop of the image.
        candidates = [np.rot90(patch, -k) for k in range(4)] + [np.rot90(patch, -k)[:, ::-1] for k in range(4)]
        found = False
        for cand in candidates:
            y, x = np.argwhere(image[..., 0] == cand[0, 0, 0])[0]
            if y + 8 <= 20 and x + 8 <= 30 and np.array_equal(image[y : y + 8, x : x + 8], cand):
                found = True
        assert found
        seen.add(patch[0, 0, 0] - patch[0, 1, 0])  # horizontal neighbour difference reveals the orientation
    assert len(seen) >= 3


def test_scale_augmentation_crops_downscaled_detail():
    # A ramp rising 2 levels per pixel, the same along both axes up to the sign: whatever the
    # flip or rotation, a patch cut from the image downscaled by f rises 2/f levels per pixel.
    yy, xx = np.mgrid[0:100, 0:100]
    image = np.repeat((xx + yy)[:, :, None], 3, axis=2).astype(np.uint8)
    slopes = []
    for s in range(40):
        patch = random_patch(image, 24, np.random.default_rng(s), min_scale=0.5)
        assert patch.shape == (24, 24, 3) and patch.dtype == np.uint8
        inner = patch[4:-4, 4:-4, 0].astype(np.float64)  # away from the resize's edge handling
        slopes.append(np.abs(np.diff(inner, axis=1)).mean())
    slopes = np.array(slopes)
    assert slopes.min() >= 0.95 and slopes.max() <= 2.1  # factors within [0.5, 1]
    assert slopes.max() - slopes.min() > 0.5  # and spread over that range
    same = random_patch(image, 24, np.random.default_rng(7), min_scale=0.5)
    assert np.array_equal(same, random_patch(image, 24, np.random.default_rng(7), min_scale=0.5))
    # off (1.0) draws nothing extra: the crops of runs without it are unchanged
    assert np.array_equal(
        random_patch(image, 24, np.random.default_rng(3)),
        random_patch(image, 24, np.random.default_rng(3), min_scale=1.0),
    )


def test_scale_augmentation_in_a_short_run_and_its_metadata(image_tree, tmp_path):
    from srgan_cli.errors import SrganError
    from srgan_cli.train import train
    from srgan_cli.weights import load_generator

    options = dict(data=str(image_tree), steps=2, batch_size=2, patch_size=32, num_blocks=1, num_features=8)
    train({**options, "scale_aug": 0.6}, tmp_path / "r", report=None)
    _, _, meta = load_generator(tmp_path / "r" / "generator.safetensors")
    assert meta["scale_aug"] == "0.6"
    with pytest.raises(SrganError, match="scale-aug"):
        train({**options, "scale_aug": 0.0}, tmp_path / "bad", report=None)


def test_batches_shard_by_rank_and_resume_by_step():
    full = list(StepBatchSampler(4, start_step=0, world_size=2, rank=0, stop_step=3))
    other = list(StepBatchSampler(4, start_step=0, world_size=2, rank=1, stop_step=3))
    resumed = list(StepBatchSampler(4, start_step=2, world_size=2, rank=0, stop_step=3))
    assert resumed == full[2:]
    flat0 = {i for batch in full for i in batch}
    flat1 = {i for batch in other for i in batch}
    assert not flat0 & flat1 and len(flat0 | flat1) == 24


def test_loader_with_workers_matches_in_process(image_tree):
    dataset = PatchDataset(scan_images(image_tree, 16), 16, seed=1)
    it0 = iter(make_loader(dataset, 3, start_step=1, workers=0, stop_step=3))
    it2 = iter(make_loader(dataset, 3, start_step=1, workers=2, stop_step=3))
    for _ in range(2):
        assert torch.equal(next(it0), next(it2))


def test_imresize_torch_equals_numpy():
    rng = np.random.default_rng(0)
    image = rng.random((2, 3, 24, 32))
    ours = imresize_torch(torch.from_numpy(image), 0.25).numpy()
    for n in range(2):
        ref = imresize(image[n].transpose(1, 2, 0), 0.25)
        np.testing.assert_allclose(ours[n].transpose(1, 2, 0), ref, atol=1e-10)


def test_make_pair_lr_is_rounded_bicubic():
    rng = np.random.default_rng(0)
    hr = torch.from_numpy(rng.integers(0, 256, (2, 3, 32, 32), dtype=np.uint8))
    lr, hr_f = make_pair(hr, 4, torch.device("cpu"))
    assert lr.shape == (2, 3, 8, 8) and hr_f.shape == (2, 3, 32, 32)
    assert torch.allclose(hr_f * 255, hr.float())
    # as imresize does uint8 images (as MATLAB does): rounded after the height, then after the width
    ref = imresize(np.ascontiguousarray(hr[0].permute(1, 2, 0).numpy()), 0.25)
    np.testing.assert_allclose(lr[0].permute(1, 2, 0).numpy() * 255, ref, atol=1e-3)


def test_training_lr_matches_the_benchmark_sets_matlab_made_lr_files(shared_data):
    """The training LR was rounded once, after both axes: 11% of its values differed from the LR
    files of the benchmark sets (made by MATLAB, which rounds between the two); now as few as
    numpy's imresize, about 1%."""
    from srgan_cli.images import read_rgb8

    equal = total = 0
    for hr_path in sorted((shared_data / "bench" / "set5" / "HR").glob("*.png")):
        hr = read_rgb8(hr_path)
        lr_file = read_rgb8(shared_data / "bench" / "set5" / "LR_x4" / hr_path.name)
        h, w = lr_file.shape[0] * 4, lr_file.shape[1] * 4
        batch = torch.from_numpy(np.ascontiguousarray(hr[:h, :w].transpose(2, 0, 1)))[None]
        lr, _ = make_pair(batch, 4, torch.device("cpu"))
        ours = np.round(lr[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        equal += int((ours == lr_file).sum())
        total += lr_file.size
    assert equal / total > 0.975, equal / total


def test_cache_auto_depends_on_size(image_tree):
    scan = scan_images(image_tree, 32)
    assert resolve_cache("auto", scan) is True
    assert resolve_cache("off", scan) is False
    scan.sizes = [(100_000, 100_000)]
    assert resolve_cache("auto", scan) is False


def test_val_folder_makes_lr_and_bad_sets_are_one_line_errors(tmp_path):
    _write_images(tmp_path / "val", 2, size=(34, 30))
    images = load_val_set(str(tmp_path / "val"), None, 4)
    assert len(images) == 2
    assert images[0].hr.shape == (28, 32, 3) and images[0].lr.shape == (7, 8, 3)
    with pytest.raises(SrganError, match="--data-dir"):
        load_val_set("set5", tmp_path / "nowhere", 4)
    with pytest.raises(SrganError, match="nor a folder"):
        load_val_set(str(tmp_path / "missing"), None, 4)


def _partial_set(root, name="set5"):
    """A copy of ``name`` with 2 HR images, an LR file for one, and an LR file that pairs with nothing."""
    _write_images(root / name / "HR", 2)
    lr = root / name / "LR_x4"
    lr.mkdir()
    for stem in ("img0", "orphan"):
        Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(lr / f"{stem}.png")
    return root / name


def test_a_val_set_gives_the_notes_srgan_bench_prints_about_it(tmp_path, monkeypatch):
    """load_val_set read the set as srgan bench does, and dropped what bench says about it: a
    partial copy of a standard set, LR files that pair with nothing, HR images whose LR is made."""
    folder = _partial_set(tmp_path)
    monkeypatch.chdir(tmp_path)
    expected = [
        f"set5 at {folder} has 2 images, the standard set5 has 5: its scores are not comparable with published ones",
        "1 file in LR_x4/ pairs with no HR image by name and is not used: orphan.png",
        "1 of 2 images have no LR file in LR_x4/ (img1.png): their LR is made from HR by bicubic imresize, "
        "so their scores are not those of the LR files",
    ]
    for spec, data_dir in (("set5", tmp_path), (str(folder), None)):
        notes: list[str] = []
        images = load_val_set(spec, data_dir, 4, notes=notes)
        assert len(images) == 2 and notes == expected, (spec, notes)
    assert len(load_val_set("set5", tmp_path, 4)) == 2  # without a list for them: as before
    notes = []
    _write_images(tmp_path / "plain", 2)
    load_val_set(str(tmp_path / "plain"), None, 4, notes=notes)
    assert notes == []


def test_named_val_set_uses_given_lr_files(shared_data):
    images = load_val_set("set5", shared_data / "bench", 4)
    assert len(images) == 5
    for item in images:
        assert item.lr.shape[0] * 4 == item.hr.shape[0] and item.lr.shape[1] * 4 == item.hr.shape[1]
        given = np.asarray(Image.open(shared_data / "bench" / "set5" / "LR_x4" / f"{item.name}.png").convert("RGB"))
        assert np.array_equal(item.lr, given)  # the literature's LR files, not re-derived ones


def test_val_psnr_is_the_bench_protocol(tmp_path):
    """Validation PSNR equals srgan bench's metric (bicubic upscaling of a folder with HR/)."""
    from srgan_cli.train import psnr_y as train_psnr_y

    _write_images(tmp_path / "val" / "HR", 1, size=(40, 32))
    item = load_val_set(str(tmp_path / "val"), None, 4)[0]
    up = np.clip(np.round(imresize(item.lr.astype(np.float64), 4.0)), 0, 255).astype(np.uint8)
    # the protocol itself: Y of BT.601 rounded as MATLAB's rgb2ycbcr on uint8, a 4 px border removed, peak 255
    y = lambda im: np.round(16 + im.astype(np.float64) @ (np.array([65.481, 128.553, 24.966]) / 255))  # noqa: E731
    mse = np.mean((y(up) - y(item.hr))[4:-4, 4:-4] ** 2)
    assert train_psnr_y(up, item.hr, crop=4) == pytest.approx(10 * np.log10(255**2 / mse), abs=1e-9)


def test_a_step_draws_its_patches_from_different_images(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    for i in range(6):  # flat colours: a patch tells which image it came from
        Image.fromarray(np.full((20, 20, 3), 10 * i, np.uint8)).save(root / f"{i}.png")
    scan = scan_images(root, 16)
    dataset = PatchDataset(scan, 16, seed=0, group=4)
    steps = []
    for batch in StepBatchSampler(2, world_size=2, rank=0, stop_step=5):
        other = [i + 2 for i in batch]  # rank 1's half of the same step
        colours = [int(dataset[i][0, 0, 0]) for i in batch + other]
        assert len(set(colours)) == 4
        steps.append(tuple(colours))
    assert len(set(steps)) > 1  # and a different draw each step
    # Fewer images than the batch: every image once before any repeats.
    few = PatchDataset(scan, 16, seed=0, group=8)
    assert len({int(few[i][0, 0, 0]) for i in range(8)}) == 6


def test_a_fifo_named_like_an_image_is_unreadable_not_a_hang(tmp_path, without_blocking):
    """Training hung for ever (Ctrl-C and SIGTERM only set a flag) on a FIFO in --data."""
    import os

    _write_images(tmp_path / "d", 1)
    fifo = tmp_path / "d" / "pipe.png"
    os.mkfifo(fifo)
    scan = without_blocking(lambda: scan_images(tmp_path / "d", 32), fifo)
    assert len(scan.paths) == 1 and scan.unreadable == [fifo]


def test_no_loader_workers_by_default_where_spawning_them_would_copy_the_image_cache(monkeypatch):
    """On macOS and Windows (spawn) each worker got a pickled copy of the decoded images, up to
    four times 2 GiB on a 16 GB Mac."""
    import os

    import torch

    from srgan_cli import data

    gpu = torch.device("cuda")
    monkeypatch.setattr(data, "_worker_start_method", lambda: "spawn")
    assert data.default_workers(gpu, cached=True) == 0
    assert data.default_workers(gpu, cached=False) == min(4, os.cpu_count() or 1)
    monkeypatch.setattr(data, "_worker_start_method", lambda: "fork")  # shared, copy on write
    assert data.default_workers(gpu, cached=True) == min(4, os.cpu_count() or 1)
    assert data.default_workers(torch.device("cpu"), cached=False) == 0


def test_asking_how_workers_start_leaves_the_start_method_unset():
    """multiprocessing.get_context() fixed the start method for the process: a program calling
    train() and then multiprocessing.set_start_method() raised "context has already been set"."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import multiprocessing, torch\n"
        "from srgan_cli.data import default_workers\n"
        "default_workers(torch.device('cuda'), cached=True)\n"
        "multiprocessing.set_start_method('spawn')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stderr


def test_loader_workers_leave_ctrl_break_to_the_main_process(monkeypatch):
    """On Windows Ctrl+Break reaches every process of the console: the main process now stops on it
    with a checkpoint, and a worker killed by it failed the step first."""
    import signal

    from srgan_cli import data

    monkeypatch.setattr(signal, "SIGBREAK", signal.SIGUSR2, raising=False)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR2)}
    threads = torch.get_num_threads()
    try:
        data._worker_init(0)
        assert signal.getsignal(signal.SIGUSR2) is signal.SIG_IGN
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        torch.set_num_threads(threads)


def _png_header(path, width, height):
    """A PNG whose header claims ``width`` x ``height`` (its data is cut short): the scan reads headers only."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))


def test_the_scan_reads_sizes_past_pillows_limit_quietly_and_leaves_out_only_huge_images(tmp_path, recwarn):
    root = tmp_path / "data"
    _write_images(root, 2)
    _png_header(root / "pano.png", 14000, 14000)  # 196 MP: over twice Pillow's limit, was "unreadable"
    _png_header(root / "big.png", 11000, 10000)  # 110 MP: Pillow warned with a source line
    _png_header(root / "bomb.png", 30000, 20000)  # 600 MP: decoded for every patch, gigabytes
    scan = scan_images(root, 32)
    assert sorted(p.name for p in scan.paths) == ["big.png", "img0.png", "img1.png", "pano.png"]
    assert scan.unreadable == [] and scan.skipped_large == 1
    assert "1 larger than 400 MP" in scan.summary()
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_sub_folders_that_cannot_be_listed_are_named_not_dropped_unsaid(tmp_path, monkeypatch):
    from conftest import unlistable

    root = tmp_path / "data"
    _write_images(root / "a", 2)
    _write_images(root / "b", 3)
    unlistable(monkeypatch, root / "b")
    scan = scan_images(root, 32)
    assert len(scan.paths) == 2
    assert scan.unlisted == [(root / "b", "permission denied")]
    assert "1 sub-folder(s) could not be listed (permission denied), their images left out: " in scan.summary()
    assert str(root / "b") in scan.summary()


def test_a_long_scan_reports_progress_and_stops_on_request(tmp_path, monkeypatch):
    import srgan_cli.data as data_module

    root = tmp_path / "data"
    _write_images(root / "a", 2)
    _write_images(root / "b", 2)
    monkeypatch.setattr(data_module, "PROGRESS_FIRST", 0.0)
    monkeypatch.setattr(data_module, "PROGRESS_EVERY", 0.0)
    heard = []
    scan_images(root, 32, progress=heard.append)
    assert any(line.startswith("listing the training folder") for line in heard)
    assert any(line.startswith("read 0 of 4 image headers") for line in heard)
    asked = []
    with pytest.raises(KeyboardInterrupt):
        scan_images(root, 32, should_stop=lambda: asked.append(1) or True)
    assert len(asked) == 1  # at the first folder, before any header is read
    with pytest.raises(KeyboardInterrupt):  # and while a large set is decoded into memory
        PatchDataset(scan_images(root, 32), 32, cache=True, should_stop=lambda: True)


def test_cache_on_is_refused_where_the_images_do_not_fit_in_free_memory(image_tree):
    scan = scan_images(image_tree, 32)
    need = scan.decoded_bytes
    with pytest.raises(SrganError, match=r"--cache on: the training images need .* GiB decoded .*--cache off") as info:
        resolve_cache("on", scan, free=need)
    assert "\n" not in str(info.value)
    assert resolve_cache("on", scan, free=2 * need)
    assert resolve_cache("auto", scan, free=2 * need) and not resolve_cache("auto", scan, free=2 * need - 1)
    assert not resolve_cache("off", scan, free=10 * need)
    # under torchrun each process of the machine decodes its own copy
    assert resolve_cache("auto", scan, free=4 * need, copies=2) and not resolve_cache(
        "auto", scan, free=4 * need, copies=3
    )
    with pytest.raises(SrganError, match=r"\(3 processes, a copy each\)"):
        resolve_cache("on", scan, free=2 * need, copies=3)


def test_the_path_table_gives_back_every_path(tmp_path):
    import os

    from srgan_cli.data import PathTable

    paths = [tmp_path / "a.png", tmp_path / "é" / "b.png", Path(os.fsdecode(b"/x/caf\xe9.png")), tmp_path / "c.png"]
    table = PathTable(paths)
    assert len(table) == 4 and list(table) == paths and table[-1] == paths[-1]
    assert len(PathTable([])) == 0
    with pytest.raises(IndexError):
        table[4]


def test_images_that_fail_to_read_in_training_are_reported_by_the_loader(tmp_path):
    root = tmp_path / "data"
    _write_images(root, 3)
    good = (root / "img0.png").read_bytes()
    (root / "img1.png").write_bytes(good[: len(good) // 2])  # the header reads, the data does not
    dataset = PatchDataset(scan_images(root, 32), 32, seed=5, group=3)
    for workers in (0, 2):
        batches = make_loader(dataset, 3, workers=workers, stop_step=3, with_failures=True)
        failed = [f for _, fs, _ in batches for f in fs]
        assert failed and {i for i, _ in failed} == {1}
        assert "truncated" in failed[0][1]
    patches, failed, unwritten = next(iter(make_loader(dataset, 3, stop_step=1, with_failures=True)))
    assert unwritten == []  # no disk cache
    assert patches.shape == (3, 3, 32, 32) and patches.dtype == torch.uint8
    assert torch.equal(patches, next(iter(make_loader(dataset, 3, stop_step=1))))


def test_hold_out_passes_over_images_that_cannot_be_validated_on(tmp_path):
    root = tmp_path / "data"
    _write_images(root, 8)
    scan = scan_images(root, 32)
    _, first = hold_out(scan, 2)
    rest, held = hold_out(scan, 2, usable=lambda path: path != first[0])
    assert first[0] not in held and first[1] in held and len(held) == 2
    assert rest.unreadable == [first[0]] and first[0] not in rest.paths and len(rest.paths) == 5
    with pytest.raises(SrganError, match="none of the images .* can be read"):
        hold_out(scan, 2, usable=lambda path: False)


class _At:
    """A stand-in generator whose integers() give the crop's corner (y, then x)."""

    def __init__(self, y: int, x: int):
        self.values = [y, x]

    def integers(self, low, high=None):
        return self.values.pop(0)


def test_a_patchs_lr_with_its_margin_is_the_whole_images_lr_there(shared_data):
    """The LR of a patch made from the patch alone mirrors its edges: 51% of the outer ring of LR
    values differed from the LR of the whole image there (30% of a 24 px LR patch is its two outer
    rings), which is what the model sees at upscale time and what the benchmark's LR files hold."""
    from srgan_cli.data import patch_margin, random_patch
    from srgan_cli.images import read_rgb8

    image = read_rgb8(shared_data / "bench" / "set5" / "HR" / "butterfly.png")[:160, :200]
    whole = imresize(image, 0.25)
    patch, margin = 48, patch_margin(4)
    for y, x in ((0, 0), (40, 84), (160 - patch, 200 - patch), (0, 200 - patch)):
        crop = random_patch(image, patch, _At(y, x), augment=False, margin=margin)
        assert crop.shape == (patch + 2 * margin, patch + 2 * margin, 3)
        batch = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None]
        lr, hr = make_pair(batch, 4, torch.device("cpu"), margin=margin)
        assert np.array_equal(np.round(hr[0].permute(1, 2, 0).numpy() * 255), image[y : y + patch, x : x + patch])
        ours = np.round(lr[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        want = whole[y // 4 : (y + patch) // 4, x // 4 : (x + patch) // 4]
        # float32 against float64: a value on a half level may round the other way
        assert (ours == want).mean() > 0.995 and np.abs(ours.astype(int) - want).max() <= 1, (y, x)
        alone, _ = make_pair(
            torch.from_numpy(np.ascontiguousarray(image[y : y + patch, x : x + patch].transpose(2, 0, 1)))[None],
            4,
            torch.device("cpu"),
        )
        if 0 < y and y + patch < 160:  # an inner patch's own edges: not the image's
            alone = np.round(alone[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            assert (alone[0] != want[0]).mean() > 0.2  # the old way: its outer ring was its own mirror


def test_patch_margins_change_no_random_draw_and_train(image_tree, tmp_path):
    from srgan_cli.data import PatchDataset

    scan = scan_images(image_tree, 16)
    plain, wide = PatchDataset(scan, 16, seed=3), PatchDataset(scan, 16, seed=3, margin=8)
    for index in range(6):
        a, b = plain[index], wide[index]
        assert b.shape[-2:] == (32, 32) and torch.equal(a, b[:, 8:-8, 8:-8])
    scaled = PatchDataset(scan, 16, seed=3, margin=8, min_scale=0.5)
    assert scaled[0].shape[-2:] == (32, 32)


def _disk_entries(folder):
    return sorted(folder.rglob("*.npy"))


def test_disk_cache_gives_the_patches_of_decoding_and_is_read_back_without_decoding(image_tree, tmp_path, monkeypatch):
    from srgan_cli import data

    scan = scan_images(image_tree, 32)
    plain = PatchDataset(scan, 32, seed=3, group=2, margin=8, min_scale=0.7)
    disk = PatchDataset(scan, 32, seed=3, group=2, margin=8, min_scale=0.7, cache_dir=tmp_path / "cache")
    expected = [plain[i] for i in range(20)]
    assert all(torch.equal(disk[i], expected[i]) for i in range(20))  # decoded, and written
    assert len(_disk_entries(tmp_path / "cache")) == len(scan.paths)

    def no_decoding(path):
        raise AssertionError(f"{path} decoded again")

    monkeypatch.setattr(data, "read_rgb8", no_decoding)
    again = PatchDataset(scan, 32, seed=3, group=2, margin=8, min_scale=0.7, cache_dir=tmp_path / "cache")
    assert not again._image(0).flags.writeable  # the entry, mapped read-only
    assert all(torch.equal(again[i], expected[i]) for i in range(20))  # read back memory-mapped, bit for bit


def test_disk_cache_decodes_a_rewritten_image_anew(tmp_path):
    root = tmp_path / "data"
    _write_images(root, 1)
    scan = scan_images(root, 32)
    PatchDataset(scan, 32, cache_dir=tmp_path / "cache")._image(0)
    first = _disk_entries(tmp_path / "cache")
    assert len(first) == 1
    new = np.full((40, 48, 3), 7, np.uint8)  # same size on disk or not: the mtime moves too
    Image.fromarray(new).save(root / "img0.png")
    os.utime(root / "img0.png", ns=(0, os.stat(first[0]).st_mtime_ns + 10**9))
    image = PatchDataset(scan, 32, cache_dir=tmp_path / "cache")._image(0)
    assert np.array_equal(image, new)
    assert len(_disk_entries(tmp_path / "cache")) == 2  # the old entry is left, unused
    assert np.array_equal(PatchDataset(scan, 32, cache_dir=tmp_path / "cache")._image(0), new)


def test_disk_cache_that_cannot_be_written_does_not_stop_sampling(image_tree, tmp_path, monkeypatch):
    from srgan_cli import data

    scan = scan_images(image_tree, 32)
    plain = PatchDataset(scan, 32, seed=2)
    disk = PatchDataset(scan, 32, seed=2, cache_dir=tmp_path / "cache")
    saves = []

    def full(*args, **kwargs):
        saves.append(args)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(data.np, "save", full)
    sampled = data._Sampled(disk)
    notes = []
    for i in range(12):
        patch, failed, unwritten = sampled[i]
        assert torch.equal(patch, plain[i]) and not failed
        notes += [unwritten] if unwritten else []
    assert len(saves) == len({disk.image_index(i) for i in range(12)})  # each entry tried once
    # the entry that could not be written, and why; the trainer says the first once
    assert len(notes) == len(saves)
    assert all(
        n.startswith(f"{disk.disk.folder}{os.sep}") and n.endswith(".npy: No space left on device") for n in notes
    )
    assert not _disk_entries(tmp_path / "cache") and not list((tmp_path / "cache").rglob(".*.part"))


def test_disk_cache_rewrites_a_damaged_entry(tmp_path):
    root = tmp_path / "data"
    _write_images(root, 1)
    scan = scan_images(root, 32)
    good = PatchDataset(scan, 32, cache_dir=tmp_path / "cache")._image(0).copy()
    (entry,) = _disk_entries(tmp_path / "cache")
    entry.write_bytes(entry.read_bytes()[:100])
    assert np.array_equal(PatchDataset(scan, 32, cache_dir=tmp_path / "cache")._image(0), good)
    assert np.array_equal(np.load(entry), good)


def test_an_undecodable_image_is_replaced_alike_with_the_disk_cache(tmp_path):
    root = tmp_path / "data"
    _write_images(root, 3)
    good = (root / "img0.png").read_bytes()
    (root / "img1.png").write_bytes(good[: len(good) // 2])
    scan = scan_images(root, 32)
    plain = PatchDataset(scan, 32, seed=5, group=3)
    disk = PatchDataset(scan, 32, seed=5, group=3, cache_dir=tmp_path / "cache")
    for i in range(9):
        (a, fa), (b, fb) = plain.sample(i), disk.sample(i)
        assert torch.equal(a, b) and fa == fb
    assert len(_disk_entries(tmp_path / "cache")) == 2


def test_disk_cache_check_refuses_a_folder_too_small_or_unwritable(image_tree, tmp_path):
    from srgan_cli.data import check_disk_cache
    from srgan_cli.errors import OptionError

    scan = scan_images(image_tree, 32)
    need = scan.decoded_bytes
    assert check_disk_cache(tmp_path / "cache", scan, free=need) == (need, need)
    with pytest.raises(OptionError, match=r"--cache disk: the training images need .* GiB decoded .*--cache off"):
        check_disk_cache(tmp_path / "cache", scan, free=need - 1)
    PatchDataset(scan, 32, cache_dir=tmp_path / "cache")._image(0)  # entries already there need no room
    assert check_disk_cache(tmp_path / "cache", scan, free=need - 1)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OptionError, match=r"cannot write the decoded images to .*file.*--cache-dir"):
        check_disk_cache(tmp_path / "file" / "cache", scan)
    assert resolve_cache("disk", scan, free=10 * need) is False  # never in memory


def test_disk_cache_folder_defaults_to_the_user_cache(monkeypatch, tmp_path):
    from srgan_cli.data import default_cache_dir

    monkeypatch.setenv("SRGAN_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "decoded"
    monkeypatch.delenv("SRGAN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "srgan" / "decoded"


def test_a_disk_cache_entry_of_the_wrong_size_is_made_again(image_tree, tmp_path):
    """A valid .npy of another size (made by hand, or a stale entry) crashed sampling with a traceback
    (random_patch: "high <= 0")."""
    from srgan_cli.data import DiskCache, PatchDataset

    scan = scan_images(image_tree, 16)
    plain = PatchDataset(scan, 16, seed=1)
    disk = PatchDataset(scan, 16, seed=1, cache_dir=tmp_path / "cache")
    for index in range(4):
        k = disk.image_index(index)
        entry = DiskCache(tmp_path / "cache").entry(scan.paths[k])
        entry.parent.mkdir(parents=True, exist_ok=True)
        np.save(entry, np.zeros((5, 5, 3), np.uint8))
        assert torch.equal(disk[index], plain[index])
        assert np.load(entry).shape[:2] != (5, 5)  # made again from the image


def test_a_disk_cache_removes_the_parts_killed_writers_left_an_hour_ago(image_tree, tmp_path):
    from srgan_cli.data import check_disk_cache

    folder = tmp_path / "cache" / "ab"
    folder.mkdir(parents=True)
    name = "." + "ab" * 32 + ".npy.0123abcd.part"
    old, new, other = folder / name, folder / name.replace("0123abcd", "89abcdef"), folder / ".notes.part"
    for path in (old, new, other):
        path.write_bytes(b"x" * 100)
    os.utime(old, (time.time() - 7200,) * 2)
    check_disk_cache(tmp_path / "cache", scan_images(image_tree, 16))
    assert not old.exists() and new.exists() and other.exists()  # new: another run may be writing it


def test_device_resize_matrices_made_in_inference_mode_still_train(tmp_path):
    from srgan_cli.resize import _device_matrix

    _device_matrix.cache_clear()
    with torch.inference_mode():
        imresize_torch(torch.rand(1, 3, 36, 36), 0.25)
    x = torch.rand(1, 3, 36, 36, requires_grad=True)
    imresize_torch(x, 0.25).sum().backward()  # "Inference tensors cannot be saved for backward"
    assert x.grad is not None


def test_a_short_write_of_a_disk_cache_entry_on_a_full_disk_says_the_disk_is_full(image_tree, tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    import srgan_cli.data as data_module

    def short(*args, **kwargs):  # numpy's tofile on a full disk: no errno, only the byte counts
        raise OSError("1270980 requested and 356224 written")

    monkeypatch.setattr(data_module.np, "save", short)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: namedtuple("usage", "total used free")(1, 1, 0))
    disk = data_module.DiskCache(tmp_path / "cache")
    disk.read(scan_images(image_tree, 16).paths[0])
    assert disk.take_write_error().endswith(".npy: no space left on the disk")


def test_an_empty_file_is_unreadable_without_asking_pillow(tmp_path, monkeypatch):
    """Pillow tried every format on a 0-byte file: twice the time of a real header."""
    from srgan_cli import data

    root = tmp_path / "data"
    _write_images(root, 2)
    (root / "empty.png").write_bytes(b"")
    opened = []
    real_open = data.Image.open
    monkeypatch.setattr(
        data.Image, "open", lambda path, *a, **k: opened.append(Path(path).name) or real_open(path, *a, **k)
    )
    scan = scan_images(root, 32)
    assert [p.name for p in scan.unreadable] == ["empty.png"] and len(scan.paths) == 2
    assert "empty.png" not in opened and len(opened) == 2


def test_disk_cache_decodes_an_image_rewritten_in_place_with_its_old_time_put_back(tmp_path):
    """rsync --inplace -t: same inode, size and modification time; only the change time moves.
    The stale entry was served."""
    root = tmp_path / "data"
    root.mkdir()
    first = np.full((40, 48, 3), 10, np.uint8)
    Image.fromarray(first).save(root / "img.bmp")  # uncompressed: the rewrite has the same size
    scan = scan_images(root, 32)
    assert np.array_equal(PatchDataset(scan, 32, cache_dir=tmp_path / "cache")._image(0), first)
    before = os.stat(root / "img.bmp")
    time.sleep(0.05)  # past the file system's clock tick
    second = np.full((40, 48, 3), 200, np.uint8)
    new = root / "new.bmp"
    Image.fromarray(second).save(new)
    with open(root / "img.bmp", "r+b") as fh:  # in place: same inode
        fh.write(new.read_bytes())
    new.unlink()
    os.utime(root / "img.bmp", ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(root / "img.bmp")
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert np.array_equal(PatchDataset(scan, 32, cache_dir=tmp_path / "cache")._image(0), second)


@pytest.mark.parametrize("reader", ["plain", "cache", "disk", "workers"])
def test_an_image_replaced_by_one_smaller_than_the_patch_gives_its_patches_to_the_next(tmp_path, reader):
    """An image smaller than the patch since the scan (replaced mid-run, or before the up-front
    decode) crashed sampling with a traceback (random_patch: "high <= 0"), in loader workers too."""
    root = tmp_path / "data"
    _write_images(root, 3)
    scan = scan_images(root, 32)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(root / "img1.png")  # after the scan
    options = {"cache": True} if reader == "cache" else {"cache_dir": tmp_path / "c"} if reader == "disk" else {}
    dataset = PatchDataset(scan, 32, seed=5, group=3, **options)
    if reader == "cache":
        assert [(p.name, why) for p, why in dataset.undecodable] == [
            ("img1.png", "20x20 px now, smaller than the 32 px patch")
        ]
    batches = make_loader(dataset, 3, workers=1 if reader == "workers" else 0, stop_step=3, with_failures=True)
    failed = [f for _, fs, _ in batches for f in fs]
    if reader != "cache":  # the cache said so up front: its sampler finds no image there
        assert failed and set(failed) == {(1, "20x20 px now, smaller than the 32 px patch")}


def test_the_training_reader_holds_the_pixel_limit_of_the_scan(tmp_path, monkeypatch):
    """read_rgb8 had no limit in training: a file that grew past TRAIN_MAX_PIXELS since the scan
    was decoded whole for every patch (or its header's claim of billions of pixels believed)."""
    from srgan_cli import data

    root = tmp_path / "data"
    _write_images(root, 2)
    scan = scan_images(root, 32)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / "img1.png")  # grew since the scan
    monkeypatch.setattr(data, "TRAIN_MAX_PIXELS", 48 * 40)  # the scan's images are 48x40
    why = "64x64 px, more than the 0.00192 MP training reads (it was smaller when the folder was scanned)"
    for options in ({}, {"cache_dir": tmp_path / "c"}):
        dataset = PatchDataset(scan, 32, seed=1, group=2, **options)
        failed = {f for i in range(4) for f in dataset.sample(i)[1]}
        assert failed == {(1, f"{root / 'img1.png'}: {why}")}, failed
    assert [(p.name, why) for p, why in PatchDataset(scan, 32, cache=True).undecodable] == [
        ("img1.png", f"{root / 'img1.png'}: {why}")
    ]


def test_a_validation_image_whose_header_claims_billions_of_pixels_is_refused_before_decoding(tmp_path):
    """val_image decoded a 1.8 KB TIFF claiming 24 x 2,000,000,000 px until the machine ran out of
    memory (22 GB): the run with --val DIR was killed. Run with capped memory, so that the old
    code fails here rather than taking the machine's."""
    pytest.importorskip("resource")
    from conftest import huge_tiff, run_with_memory_cap

    path = huge_tiff(tmp_path / "val" / "bomb.tif")
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom srgan_cli.data import load_val_set\n"
        "from srgan_cli.errors import SrganError\nstart = time.monotonic()\n"
        f"try:\n    load_val_set({str(path.parent)!r}, None, 4)\n"
        "except SrganError as exc:\n    print(exc)\n    print(time.monotonic() - start)\n"
    )
    done = run_with_memory_cap(code)
    lines = done.stdout.splitlines()
    assert len(lines) == 2, (done.stdout, done.stderr[-2000:])
    assert (
        lines[0] == f"{path}: 24x2000000000 px, more than the 400 MP a validation image may have; remove it "
        "from the folder"
    )
    assert float(lines[1]) < 5


def test_a_held_out_image_given_a_second_name_since_stays_held_out_on_resume(tmp_path):
    # the scan keeps the first name, sorted: a link added since, sorting before a recorded held-out name, made
    # the resume find that image "gone" and train on it under the new name
    root = tmp_path / "data"
    _write_images(root, 5)
    recorded = [p.relative_to(root).as_posix() for p in hold_out(scan_images(root, 32), 2)[1]]
    os.link(root / recorded[0], root / "a_copy.png")  # sorts before every imgN.png
    scan = scan_images(root, 32)
    assert "a_copy.png" in [p.name for p in scan.paths]
    rest, held = hold_out(scan, 2, recorded)
    assert [p.relative_to(root).as_posix() for p in held] == recorded
    trained = {os.path.realpath(p) for p in rest.paths}
    assert not trained & {os.path.realpath(p) for p in held} and len(rest.paths) == 3
    assert [p.name for p in rest.duplicates] == ["a_copy.png"]


def test_an_image_under_two_names_is_trained_on_once_and_never_both_held_out_and_trained(tmp_path):
    """A symlink (or hard link) inside --data to another of its images was listed twice: trained on
    twice as often, and --val-holdout could hold out one name while training on the other."""
    root = tmp_path / "data"
    _write_images(root / "2024", 4)
    (root / "misc").mkdir()
    os.symlink(root / "2024" / "img1.png", root / "misc" / "link_img1.png")
    os.symlink("../2024/img2.png", root / "misc" / "relative_img2.png")
    os.link(root / "2024" / "img3.png", root / "misc" / "hard_img3.png")
    scan = scan_images(root, 32)
    assert [p.relative_to(root).as_posix() for p in scan.paths] == [f"2024/img{i}.png" for i in range(4)]
    assert sorted(p.name for p in scan.duplicates) == ["hard_img3.png", "link_img1.png", "relative_img2.png"]
    assert "; passed over 3 duplicates (a link to, or another name of, an image listed already: " in scan.summary()
    for count in (1, 2, 3):
        rest, held = hold_out(scan, count)
        trained = {os.path.realpath(p) for p in rest.paths}
        assert not trained & {os.path.realpath(p) for p in held}
        assert len(rest.paths) + len(held) == 4 and rest.duplicates == scan.duplicates
