"""The Python API: load_model, upscale_array/tensor, upscale_image."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_cli.api import Model, load_model, output_size, upscale_array, upscale_image, upscale_tensor
from srgan_cli.config import GeneratorConfig
from srgan_cli.device import choose_dtype, cpu_has_native_bf16
from srgan_cli.errors import SrganError, SrganWarning
from srgan_cli.models import build_generator, fold_batch_norm
from srgan_cli.weights import save_generator

TINY = GeneratorConfig(num_blocks=1, num_features=8)


def _save(path, config=TINY, seed=0):
    torch.manual_seed(seed)
    net = build_generator(config)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
    save_generator(path, net, config)
    return path


@pytest.fixture
def weights(tmp_path):
    return _save(tmp_path / "tiny.safetensors")


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.random((21, 17, 3), dtype=np.float32)


def _cpu_flags() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), None)
    return set(line.split(":", 1)[1].split()) if line else None


@pytest.mark.skipif(_cpu_flags() is None, reason="reads the CPU's flags from /proc/cpuinfo (Linux)")
def test_native_bf16_is_what_the_cpu_flags_say():
    """The detection that decides CPU "auto" precision, against the kernel's own list of the CPU's features."""
    assert cpu_has_native_bf16() == bool({"amx_tile", "avx512_bf16"} & _cpu_flags())


def test_load_model_local_file(weights):
    model = load_model(weights, device="cpu")
    assert isinstance(model, Model)
    assert model.name == "tiny" and model.scale == 4 and model.config == TINY
    # auto precision: bf16 on CPUs that compute it natively (several times faster), else fp32.
    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert model.dtype == expected and model.device == torch.device("cpu")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.module.modules())  # folded
    assert not model.module.training
    assert model.channels_last  # the CPU default (faster NHWC convolutions)
    assert model.metadata["format"] == "srgan-generator"
    assert not any(p.requires_grad for p in model.module.parameters())


def test_load_model_precision_note(weights, rgb):
    model = load_model(weights, device="cpu", precision="fp16")
    assert model.dtype == torch.float32
    # the note said fp16 was not supported on the CPU, which upscale_array(dtype=torch.float16) runs
    assert model.notes == ["fp16 runs about 5x slower than fp32 on the CPU; running in fp32"]
    assert upscale_array(model, rgb, torch.float16).shape == (84, 68, 3)
    bf16 = load_model(weights, device="cpu", precision="bf16")
    assert bf16.dtype == torch.bfloat16 and next(bf16.module.parameters()).dtype == torch.bfloat16


def test_load_model_errors(tmp_path):
    with pytest.raises(SrganError, match="missing.safetensors"):
        load_model(tmp_path / "missing.safetensors", device="cpu")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights at all")
    with pytest.raises(SrganError, match="bad.safetensors"):
        load_model(bad, device="cpu")
    with pytest.raises(SrganError):
        load_model(tmp_path / "x.safetensors", device="nonsense")


def test_upscale_array_shape_range_and_matches_module(weights, rgb):
    model = load_model(weights, device="cpu", precision="fp32", channels_last=False)
    out = upscale_array(model, rgb, tile=0)
    assert out.shape == (84, 68, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1
    with torch.inference_mode():
        ref = model.module(torch.from_numpy(rgb).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)


def test_upscale_is_deterministic_bit_for_bit(weights, rgb):
    model = load_model(weights, device="cpu")
    a = upscale_array(model, rgb)
    b = upscale_array(load_model(weights, device="cpu"), rgb.copy())
    assert np.array_equal(a, b)


def test_channels_last_matches_contiguous(weights, rgb):
    a = upscale_array(load_model(weights, device="cpu", channels_last=True), rgb, tile=0)
    b = upscale_array(load_model(weights, device="cpu", channels_last=False), rgb, tile=0)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_tiled_array_equals_whole(weights, rgb):
    model = load_model(weights, device="cpu")
    whole = upscale_array(model, rgb, tile=0)
    progress = []
    tiled = upscale_array(model, rgb, tile=8, batch=2, progress=lambda d, t: progress.append((d, t)))
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=2e-5)
    assert progress[-1] == (9, 9)  # ceil(21/8) x ceil(17/8) tiles


def test_dihedral_transforms_are_the_eight_distinct_ones_and_undo_exactly():
    from srgan_cli.api import _dihedral, _undo_dihedral

    x = torch.arange(2 * 3 * 5 * 7, dtype=torch.float32).view(2, 3, 5, 7)
    seen = set()
    for k in range(8):
        t = _dihedral(x, k)
        assert torch.equal(_undo_dihedral(t, k), x)
        seen.add((tuple(t.shape), tuple(t.flatten().tolist())))
    assert len(seen) == 8  # the whole symmetry group of the square, each once
    assert torch.equal(_dihedral(x, 0), x)


def _ensemble_by_hand(model: Model, rgb: np.ndarray) -> np.ndarray:
    """The x8 self-ensemble written independently of the API: NumPy flips and rotations."""
    outs = []
    for flip in (False, True):
        for turns in range(4):
            a = rgb[:, ::-1] if flip else rgb
            a = np.ascontiguousarray(np.rot90(a, turns, axes=(0, 1)))
            with torch.inference_mode():
                y = model.module(torch.from_numpy(a).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
            y = np.rot90(y, -turns, axes=(0, 1))
            outs.append(y[:, ::-1] if flip else y)
    return np.clip(np.mean(outs, axis=0), 0, 1)


def test_ensemble_is_the_mean_over_flips_and_rotations(weights, rgb):
    model = load_model(weights, device="cpu", precision="fp32", channels_last=False, ensemble=True)
    out = upscale_array(model, rgb, tile=0)
    np.testing.assert_allclose(out, _ensemble_by_hand(model, rgb), rtol=0, atol=1e-5)
    plain = upscale_array(load_model(weights, device="cpu", precision="fp32"), rgb, tile=0)
    assert np.abs(out - plain).max() > 1e-3  # a random network is not symmetric: it changes something


def test_ensemble_of_a_gan_model_says_it_smooths(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "g.safetensors"
    save_generator(path, build_generator(TINY), TINY, metadata={"stage": "gan"})
    assert any("GAN model" in n for n in load_model(path, device="cpu", ensemble=True).notes)
    assert not any("GAN model" in n for n in load_model(path, device="cpu").notes)


def test_ensemble_keeps_tiling_exact(weights, rgb):
    model = load_model(weights, device="cpu", precision="fp32", ensemble=True)
    whole = upscale_array(model, rgb, tile=0)
    tiled = upscale_array(model, rgb, tile=8, batch=3)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=2e-5)


def test_ensemble_raises_psnr_of_the_bundled_srresnet(shared_data):
    from PIL import Image

    from srgan_cli.metrics import psnr_y, to_uint8
    from srgan_cli.weights import MODELS

    if MODELS["srresnet_x4"].bundled_path() is None:
        pytest.skip("srresnet_x4 is not installed")
    plain = load_model("srresnet_x4", device="cpu", precision="fp32")
    ensemble = load_model("srresnet_x4", device="cpu", precision="fp32", ensemble=True)
    gains = []
    for name in ("baby", "bird", "butterfly", "head", "woman"):  # 40 px LR crops of Set5
        lr = np.asarray(Image.open(shared_data / "bench/set5/LR_x4" / f"{name}.png").convert("RGB"))[:40, :40]
        hr = np.asarray(Image.open(shared_data / "bench/set5/HR" / f"{name}.png").convert("RGB"))[:160, :160]
        a, b = (psnr_y(to_uint8(upscale_array(m, lr / 255.0)), hr) for m in (plain, ensemble))
        gains.append(b - a)
    assert np.mean(gains) > 0.1, gains  # 0.24 dB when written; the whole of Set5 gains 0.20


def test_cpu_runs_one_larger_tile_at_a_time_unless_told(weights, rgb, monkeypatch):
    """On the CPU the default is one tile per forward, sized for the whole memory budget
    (less overlap recomputed than four smaller tiles); an explicit batch is kept."""
    import srgan_cli.api as api

    model = load_model(weights, device="cpu")
    shapes, chosen = [], []
    real_forward, real_choose = model.forward, api.choose_tile
    monkeypatch.setattr(model, "forward", lambda x: shapes.append(tuple(x.shape)) or real_forward(x))
    monkeypatch.setattr(api, "choose_tile", lambda *a, **k: chosen.append(k["batch"]) or real_choose(*a, **k))
    upscale_array(model, rgb)
    upscale_array(model, rgb, tile=8)
    assert chosen == [1] and {s[0] for s in shapes} == {1}
    shapes.clear()
    upscale_array(model, rgb, tile=8, batch=2)
    assert max(s[0] for s in shapes) == 2


def test_dtype_override_does_not_change_model(weights, rgb):
    model = load_model(weights, device="cpu", precision="fp32")
    out = upscale_array(model, rgb, torch.bfloat16, tile=0)
    assert out.dtype == np.float32
    assert np.abs(out - upscale_array(model, rgb, tile=0)).max() < 0.05
    assert next(model.module.parameters()).dtype == torch.float32


def test_bad_inputs(weights):
    model = load_model(weights, device="cpu")
    with pytest.raises(SrganError):
        upscale_array(model, np.zeros((4, 4, 5), np.float32))
    with pytest.raises(SrganError):
        upscale_array(model, np.zeros((0, 4, 3), np.float32))
    with pytest.raises(SrganError):
        upscale_tensor(model, torch.zeros(2, 3, 4, 4))
    with pytest.raises(SrganError):
        upscale_array(model, np.zeros((4, 4, 3), np.float32), tile=-1)


@pytest.mark.parametrize("tile", [1, 7])
def test_tiles_under_8_px_are_refused_as_by_the_cli(weights, tile):
    """``--tile`` refuses tiles under 8 px (each runs with the pad's overlap around it: 1 px tiles
    took many times as long), where the API ran them; now every entry point says so on one line."""
    from srgan_cli.api import upscale_loaded
    from srgan_cli.images import LoadedImage
    from srgan_cli.tiling import MIN_TILE

    assert MIN_TILE == 8
    model = load_model(weights, device="cpu")
    rgb = np.zeros((4, 4, 3), np.float32)
    loaded = LoadedImage(rgb, None, 8, False, "RGB", "PNG", None, None, 1)
    calls = [
        lambda: upscale_array(model, rgb, tile=tile),
        lambda: upscale_tensor(model, torch.zeros(1, 3, 4, 4), tile=tile),
        lambda: upscale_loaded(model, loaded, tile=tile),
        lambda: upscale_image(Image.new("RGB", (4, 4)), model, tile=tile),
    ]
    for call in calls:
        with pytest.raises(SrganError, match=f"^tile must be 0 \\(the whole image\\) or at least 8, got {tile}$"):
            call()
    assert upscale_array(model, rgb, tile=8).shape == upscale_array(model, rgb, tile=0).shape == (16, 16, 3)


def test_gray_input_comes_back_gray(weights):
    """A gray image came back tinted from the array and tensor API (channels up to 14 levels apart
    with srgan_x4), where srgan upscale and upscale_image keep it gray: a 2-D array, ``grayscale=True``
    without ``bit_depth`` and a (1, 1, H, W) tensor now give each channel the mean of the model's, in the
    shapes they had."""
    images = _images()
    model = load_model(weights, device="cpu")
    gray = np.random.default_rng(1).random((21, 17), dtype=np.float32)
    as_rgb = np.repeat(gray[:, :, None], 3, axis=2)
    tinted = upscale_array(model, as_rgb)
    assert np.ptp(tinted, axis=2).max() > 1 / 255  # the model alone tints gray
    expected = np.repeat(tinted.mean(axis=2, keepdims=True, dtype=np.float32), 3, axis=2)
    np.testing.assert_array_equal(upscale_array(model, gray), expected)
    np.testing.assert_array_equal(upscale_array(model, as_rgb, grayscale=True), expected)
    tiled = upscale_array(model, gray, tile=8)
    assert np.ptp(tiled, axis=2).max() == 0
    np.testing.assert_allclose(tiled, expected, rtol=0, atol=2e-5)
    # quantised: the gray plane with grayscale, the same in three channels for a 2-D array without it
    plane = upscale_array(model, gray, bit_depth=8, grayscale=True)
    np.testing.assert_array_equal(plane, images._quantise(images._planes(tinted, None, True), 8))
    np.testing.assert_array_equal(upscale_array(model, gray, bit_depth=8), np.repeat(plane, 3, axis=2))
    # a gray tensor: (1, 3, sH, sW) as before, each channel the gray
    out = upscale_tensor(model, torch.from_numpy(gray)[None, None])
    assert out.shape == (1, 3, 84, 68)
    np.testing.assert_array_equal(out[0].permute(1, 2, 0).numpy(), expected)


def test_blend_endpoints(tmp_path, rgb):
    a = _save(tmp_path / "a.safetensors", seed=1)
    b = _save(tmp_path / "b.safetensors", seed=2)
    out_a = upscale_array(load_model(a, device="cpu"), rgb)
    out_b = upscale_array(load_model(b, device="cpu"), rgb)
    assert not np.allclose(out_a, out_b)
    np.testing.assert_array_equal(upscale_array(load_model(a, device="cpu", blend=f"{b}:0"), rgb), out_a)
    np.testing.assert_array_equal(upscale_array(load_model(a, device="cpu", blend=f"{b}:1"), rgb), out_b)
    mid = load_model(a, device="cpu", precision="fp32", blend=f"{b}:0.5")
    assert mid.name.startswith("a+b@0.5")
    # the record is the alpha used: 6 digits recorded 0.99999999 as "@1" (B alone), -0 as "@-0"
    for alpha, shown in (("0.99999999", "0.99999999"), ("0.1234567", "0.1234567"), ("-0", "0"), ("1.0", "1")):
        blended = load_model(a, device="cpu", precision="fp32", blend=f"{b}:{alpha}")
        assert blended.name == f"a+b@{shown}" and blended.sha256.endswith(f"@{shown}"), alpha
    # Parameters are the average of both networks (the head conv: no BatchNorm folded into it).
    pa = next(load_model(a, device="cpu", precision="fp32").module.parameters())
    pb = next(load_model(b, device="cpu", precision="fp32").module.parameters())
    torch.testing.assert_close(next(mid.module.parameters()), (pa + pb) / 2)


def test_blend_refuses_other_architecture(tmp_path):
    a = _save(tmp_path / "a.safetensors")
    c = _save(tmp_path / "c.safetensors", GeneratorConfig(num_blocks=2, num_features=8))
    with pytest.raises(SrganError, match="blend") as info:
        load_model(a, device="cpu", blend=f"{c}:0.5")
    assert "(num_blocks 2 vs 1)" in str(info.value)  # what differs: both are SRResNets, "another architecture"


def test_a_single_channel_model_says_colour_is_dropped(tmp_path, rgb):
    """A 1-channel (gray) model turned colour photos gray without a word."""
    gray = _save(tmp_path / "g.safetensors", GeneratorConfig(num_blocks=1, num_features=8, in_channels=1))
    model = load_model(gray, device="cpu")
    assert any("single-channel" in n and "gray" in n for n in model.notes), model.notes
    assert not any("single-channel" in n for n in load_model(_save(tmp_path / "c.safetensors"), device="cpu").notes)


def test_output_size():
    assert output_size(10, 7, 4, None) == (40, 28)
    assert output_size(10, 7, 4, 2) == (20, 14)
    assert output_size(10, 7, 4, 3.5) == (35, 25)  # 24.5: a half rounds up (was to the even 24)
    assert output_size(23, 17, 4, 0.5) == (12, 9)
    # 31.5 and 57.5 exactly: in floating point 45 * 0.7 and 25 * 2.3 came to 31.4999... and 57.4999..., 31 and 57
    assert output_size(45, 25, 4, 0.7) == (32, 18)
    assert output_size(25, 45, 4, 2.3) == (58, 104)
    assert output_size(90, 10, 4, 0.35) == (32, 4)
    assert output_size(1, 1, 4, 0.1) == (1, 1)
    with pytest.raises(SrganError):
        output_size(10, 7, 4, 0)


# upscale_image needs the image I/O module.
def _images():
    import srgan_cli.images  # a plain import: a broken module fails these tests, it does not skip them

    return srgan_cli.images


def test_upscale_image_takes_a_jpegs_extended_xmp_into_its_packet(weights, tmp_path):
    from conftest import extended_xmp_jpeg

    from srgan_cli.api import upscale_image

    model = load_model(weights, device="cpu")
    extended_xmp_jpeg(tmp_path / "in.jpg", b"word " * 10000)  # 50 KB: the whole fits one JPEG packet
    out = upscale_image(tmp_path / "in.jpg", model)
    assert b"word " * 10000 in out.info["xmp"] and b"HasExtendedXMP" not in out.info["xmp"]
    assert "xmp_extended" not in out.info
    # 150 KB: more than Pillow's JPEG writer takes; the main packet stays where a JPEG save reads it
    extended_xmp_jpeg(tmp_path / "in.jpg", b"word " * 30000)
    out = upscale_image(tmp_path / "in.jpg", model)
    assert b"Harbour" in out.info["xmp"] and b"word" not in out.info["xmp"] and b"HasExtendedXMP" not in out.info["xmp"]
    assert b"word " * 30000 in out.info["xmp_extended"]
    out.save(tmp_path / "o.jpg", xmp=out.info["xmp"])  # the docstring's recipe: it raised "XMP data is too long"


def test_upscale_image_rgb_gray_rgba(weights):
    _images()
    from PIL import Image

    from srgan_cli.api import upscale_image

    model = load_model(weights, device="cpu")
    rng = np.random.default_rng(3)
    rgb = Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8), "RGB")
    out = upscale_image(rgb, model)
    assert out.mode == "RGB" and out.size == (48, 40)
    expected = upscale_array(model, np.asarray(rgb, dtype=np.float32) / 255)
    got = np.asarray(out, dtype=np.float32) / 255
    assert np.abs(got - expected).max() <= 0.5 / 255 + 1e-6

    gray = upscale_image(rgb.convert("L"), model)
    assert gray.mode in ("L", "I;16") and gray.size == (48, 40)

    rgba = rgb.convert("RGBA")
    alpha = np.zeros((10, 12), np.uint8)
    alpha[:, 6:] = 255
    rgba.putalpha(Image.fromarray(alpha, "L"))
    out_rgba = upscale_image(rgba, model)
    assert out_rgba.mode == "RGBA" and out_rgba.size == (48, 40)
    a = np.asarray(out_rgba)[:, :, 3]
    assert a[:, :20].max() <= 8 and a[:, 28:].min() >= 247  # alpha edges kept, not smeared

    half = upscale_image(rgb, model, outscale=2)
    assert half.size == (24, 20)
    half_rgba = upscale_image(rgba, model, outscale=2)
    assert half_rgba.mode == "RGBA" and half_rgba.size == (24, 20)
    a2 = np.asarray(half_rgba)[:, :, 3]
    assert a2[:, :10].max() <= 8 and a2[:, 14:].min() >= 247


def test_upscale_image_from_path(weights, tmp_path):
    _images()
    from PIL import Image

    from srgan_cli.api import upscale_image

    path = tmp_path / "in.png"
    Image.new("RGB", (5, 3), (200, 10, 50)).save(path)
    assert upscale_image(path, load_model(weights, device="cpu")).size == (20, 12)
    assert upscale_image(str(path), str(weights)).size == (20, 12)


# Input checks: integer pixels, out-of-range and non-finite floats, argument types, outscale.


@pytest.fixture
def fp32(weights):
    return load_model(weights, device="cpu", precision="fp32")


def test_uint8_and_uint16_pixels_are_scaled_to_unit_range(fp32):
    pixels = np.random.default_rng(7).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    expected = upscale_array(fp32, pixels.astype(np.float32) / 255, tile=0)
    np.testing.assert_array_equal(upscale_array(fp32, pixels, tile=0), expected)  # was all white
    wide = pixels.astype(np.uint16) * 257  # the same levels at 16 bits
    np.testing.assert_allclose(upscale_array(fp32, wide, tile=0), expected, rtol=0, atol=1e-6)
    gray = pixels[:, :, 0]  # 2-D: gray, scaled as colour is
    np.testing.assert_array_equal(
        upscale_array(fp32, gray, tile=0), upscale_array(fp32, gray / np.float32(255), tile=0)
    )
    tensor = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    got = upscale_tensor(fp32, tensor, tile=0)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", [np.int64, np.int16, np.uint32, np.bool_, np.complex64])
def test_other_non_float_arrays_are_refused_naming_the_dtype(fp32, dtype):
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        upscale_array(fp32, np.ones((8, 8, 3), dtype=dtype), tile=0)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64], ids=str)
def test_other_non_float_tensors_are_refused_naming_the_dtype(fp32, dtype):
    with pytest.raises(TypeError, match=str(dtype).removeprefix("torch.")):
        upscale_tensor(fp32, torch.ones(1, 3, 8, 8, dtype=dtype), tile=0)


def test_float_input_is_clamped_to_unit_range(fp32, rgb):
    wide = rgb * 3 - 1  # two thirds of the values outside [0, 1]
    clamped = upscale_array(fp32, np.clip(wide, 0, 1), tile=0)
    np.testing.assert_array_equal(upscale_array(fp32, wide, tile=0), clamped)
    np.testing.assert_array_equal(upscale_array(fp32, wide.astype(np.float64), tile=0), clamped)
    tensor = torch.from_numpy(wide).permute(2, 0, 1)[None]
    got = upscale_tensor(fp32, tensor, tile=0)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(got, clamped)
    assert tensor.min() < 0  # the caller's tensor is not clamped in place


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("bit_depth", [None, 8])
def test_nan_or_infinite_input_is_an_error(fp32, rgb, bad, bit_depth):
    rgb = rgb.copy()
    rgb[3, 4, 1] = bad
    with pytest.raises(SrganError, match="NaN or infinity"):
        upscale_array(fp32, rgb, tile=0, bit_depth=bit_depth)
    with pytest.raises(SrganError, match="NaN or infinity"):
        upscale_tensor(fp32, torch.from_numpy(rgb).permute(2, 0, 1)[None], tile=0)


def test_wrong_argument_types_are_type_errors(weights, fp32):
    from PIL import Image

    from srgan_cli.api import upscale_image

    arr = np.zeros((8, 8, 3), np.uint8)
    img = Image.fromarray(arr)
    cases = [
        (lambda: upscale_image(arr, fp32), "upscale_image takes a PIL.Image.Image.*numpy.ndarray.*upscale_array"),
        (lambda: upscale_image(b"\x89PNG", fp32), "got bytes"),
        (lambda: upscale_image(None, fp32), "got NoneType"),
        (lambda: upscale_image(img, 3), "model must be"),
        (lambda: upscale_array("srgan_x4", arr), "takes a Model.*got str 'srgan_x4'.*load_model"),
        (lambda: upscale_tensor(fp32, arr), "upscale_tensor takes a torch.Tensor.*numpy.ndarray"),
        (lambda: upscale_tensor(weights, torch.zeros(1, 3, 4, 4)), "takes a Model"),
        (lambda: upscale_array(fp32, None), "got NoneType"),
        (lambda: upscale_array(fp32, np.array([["a"]])), "dtype"),
        (lambda: upscale_array(fp32, arr, dtype="fp16"), "torch.dtype.*got str 'fp16'"),
        (lambda: load_model(weights, device="cpu", precision=torch.float16), "precision must be"),
        (lambda: load_model(weights, device=0), "device must be"),
        (lambda: load_model(None), "model name or a weights path"),
        (lambda: output_size(8, 10, 4, "2"), "outscale must be a number"),
        (lambda: upscale_image(img, fp32, outscale="2"), "outscale must be a number"),
        (lambda: upscale_array(fp32, arr, tile="a"), "tile must be an int"),
        (lambda: upscale_array(fp32, arr, tile=2.5), "tile must be an int"),
        (lambda: upscale_array(fp32, arr, tile=True), "tile must be an int"),
        (lambda: upscale_array(fp32, arr, tile_pad=1.0), "tile_pad must be an int"),
        (lambda: upscale_tensor(fp32, torch.zeros(1, 3, 4, 4), batch="2"), "batch must be an int"),
        (lambda: upscale_image(img, fp32, tile=2.5), "tile must be an int"),
        (lambda: upscale_array(fp32, arr, progress=1), "progress must be a callable"),
    ]
    for call, message in cases:
        with pytest.raises(TypeError, match=message):
            call()
    with pytest.raises(SrganError, match="dtype must be torch.float16, torch.bfloat16 or torch.float32"):
        upscale_array(fp32, arr, dtype=torch.int8)
    with pytest.raises(SrganError, match="batch must be at least 1"):
        upscale_array(fp32, arr, batch=0)
    # integers of other kinds stay valid
    np.testing.assert_array_equal(upscale_array(fp32, arr, tile=np.int64(8)), upscale_array(fp32, arr, tile=8))


@pytest.mark.parametrize("outscale", [0, -1, float("nan"), float("inf"), 64.5, 1e6])
def test_outscale_must_be_finite_positive_and_at_most_64(fp32, outscale):
    from PIL import Image

    from srgan_cli.api import upscale_image, upscale_loaded

    with pytest.raises(SrganError, match="outscale"):
        output_size(8, 10, 4, outscale)
    with pytest.raises(SrganError, match="outscale"):
        upscale_image(Image.new("RGB", (8, 10)), fp32, outscale=outscale)
    images = _images()
    loaded = images.LoadedImage(np.zeros((10, 8, 3), np.float32), None, 8, False, "RGB", "PNG", None, None, 1)
    with pytest.raises(SrganError, match="outscale"):
        upscale_loaded(fp32, loaded, outscale=outscale)


def test_outscale_up_to_64_is_accepted():
    from srgan_cli.api import MAX_OUTSCALE

    assert MAX_OUTSCALE == 64  # as the CLI's --outscale
    assert output_size(8, 10, 4, 64) == (512, 640)
    assert output_size(8, 10, 4, np.float32(0.5)) == (4, 5)


def test_fold_batch_norm_keeps_the_function():
    torch.manual_seed(3)
    config = GeneratorConfig(num_blocks=2, num_features=8)
    net = build_generator(config)
    for m in net.modules():  # statistics far from the identity, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.2, 3.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    net.eval()
    x = torch.rand(1, 3, 12, 10)
    with torch.inference_mode():
        ref = net(x)
        folded = fold_batch_norm(net)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        torch.testing.assert_close(folded(x), ref, rtol=1e-5, atol=1e-5)
    rrdb = build_generator(
        GeneratorConfig(arch="rrdb", num_blocks=1, num_features=8, growth_channels=4, batch_norm=False)
    )
    before = {k: v.clone() for k, v in rrdb.state_dict().items()}
    after = fold_batch_norm(rrdb).state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_on_cpu_is_bf16_only_where_native(monkeypatch, native):
    monkeypatch.setattr("srgan_cli.device.cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert choose_dtype("auto", cpu, cpu_bf16=True)[0] == (torch.bfloat16 if native else torch.float32)
    assert choose_dtype("auto", cpu)[0] == torch.float32  # training and bench keep fp32
    assert choose_dtype("fp32", cpu, cpu_bf16=True)[0] == torch.float32


def _bundled_photo_crop(name: str, size: int) -> np.ndarray:
    """A size x size crop of the bundled example photo as float RGB, or a skip when the named
    model is not installed."""
    from pathlib import Path

    from PIL import Image

    from srgan_cli.weights import MODELS

    if MODELS[name].bundled_path() is None:
        pytest.skip(f"{name} is not installed")
    photo = Path(__file__).resolve().parents[1] / "weights" / "examples" / "chelsea.png"
    return np.asarray(Image.open(photo).convert("RGB"), dtype=np.float32)[:size, 40 : 40 + size] / 255.0


@pytest.mark.parametrize("name", ["srresnet_x4", "srgan_x4"])
def test_bundled_weights_in_bf16_stay_within_half_a_gray_level(name):
    """The speed-up bf16 gives on the CPU is taken only because, on photos, it moves the
    bundled models' output by less than 0.5 gray levels RMS from fp32."""
    rgb = _bundled_photo_crop(name, 64)
    ref = upscale_array(load_model(name, device="cpu", precision="fp32"), rgb, tile=0)
    low = upscale_array(load_model(name, device="cpu", precision="bf16"), rgb, tile=0)
    rms = float(np.sqrt(np.mean(((low - ref) * 255.0) ** 2)))
    assert 0 < rms < 0.5


def test_auto_precision_keeps_rrdb_in_fp32_on_the_cpu(tmp_path):
    path = _save(
        tmp_path / "rrdb.safetensors",
        GeneratorConfig(arch="rrdb", num_blocks=1, num_features=8, growth_channels=4, batch_norm=False),
    )
    assert load_model(path, device="cpu").dtype == torch.float32
    assert load_model(path, device="cpu", precision="bf16").dtype == torch.bfloat16


@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("grayscale", [False, True])
@pytest.mark.parametrize("tile", [0, 8])
def test_quantised_output_is_the_float_output_written(weights, rgb, bit_depth, grayscale, tile):
    """``bit_depth`` quantises tile by tile; the bytes are those write_image makes of the float result."""
    images = _images()
    model = load_model(weights, device="cpu")
    rgb = rgb.copy()
    rgb[:3, :3] = 0.0  # black and white corners: outputs beyond [0, 1] to clamp
    rgb[-3:, -3:] = 1.0
    whole = upscale_array(model, rgb, tile=tile)
    q = upscale_array(model, rgb, tile=tile, bit_depth=bit_depth, grayscale=grayscale)
    assert q.dtype == (np.uint16 if bit_depth == 16 else np.uint8)
    assert q.shape == (84, 68, 1 if grayscale else 3)
    expected = images._quantise(images._planes(whole, None, grayscale), bit_depth)
    np.testing.assert_array_equal(q, expected)
    assert len(np.unique(q)) > 10  # a real image, not a constant


class _Values(torch.nn.Module):
    """A stand-in x4 generator whose output is a fixed pattern of awkward values."""

    def __init__(self):
        super().__init__()
        halves = [(k + 0.5) / 255 for k in range(0, 255, 17)] + [(k + 0.5) / 65535 for k in range(0, 65535, 4099)]
        values = [float("nan"), float("inf"), -float("inf"), -0.5, 1.5, 0.0, 1.0, 1e-9, 1 - 1e-7, *halves]
        self.register_buffer("values", torch.tensor(values, dtype=torch.float32))

    def forward(self, x):
        n, _, h, w = x.shape
        count = 3 * 16 * h * w
        pattern = self.values.repeat(count // len(self.values) + 1)[:count]
        return pattern.view(1, 3, 4 * h, 4 * w).expand(n, -1, -1, -1) + 0 * x.sum()


@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("tile", [0, 8])
def test_quantised_output_rounds_nan_inf_and_halves_as_write_image(rgb, bit_depth, tile):
    images = _images()
    model = Model(_Values(), TINY, "values")
    whole = upscale_array(model, rgb, tile=tile)
    q = upscale_array(model, rgb, tile=tile, bit_depth=bit_depth)
    np.testing.assert_array_equal(q, images._quantise(images._planes(whole, None, False), bit_depth))
    assert q.min() == 0 and q.max() == (65535 if bit_depth == 16 else 255)


def test_quantised_output_of_a_gray_model(tmp_path, rgb):
    images = _images()
    luma = GeneratorConfig(num_blocks=1, num_features=8, in_channels=1)
    model = load_model(_save(tmp_path / "y.safetensors", luma), device="cpu")
    whole = upscale_array(model, rgb, tile=8)
    assert whole.shape == (84, 68, 3)
    for gray in (False, True):
        q = upscale_array(model, rgb, tile=8, bit_depth=8, grayscale=gray)
        np.testing.assert_array_equal(q, images._quantise(images._planes(whole, None, gray), 8))


def test_upscale_loaded_quantises_only_without_a_resize(weights):
    images = _images()
    from srgan_cli.api import upscale_loaded

    model = load_model(weights, device="cpu")
    rng = np.random.default_rng(5)
    rgb = rng.random((9, 11, 3), dtype=np.float32)
    alpha = np.clip(rng.random((9, 11), dtype=np.float32) * 1.4 - 0.2, 0, 1)
    loaded = images.LoadedImage(rgb, alpha, 8, False, "RGBA", "PNG", None, None, 1)
    f_rgb, f_alpha = upscale_loaded(model, loaded)
    q_rgb, q_alpha = upscale_loaded(model, loaded, bit_depth=8)
    assert q_rgb.dtype == q_alpha.dtype == np.uint8
    np.testing.assert_array_equal(q_rgb, images._quantise(f_rgb, 8))
    np.testing.assert_array_equal(q_alpha, images._quantise(f_alpha, 8))
    resized, resized_alpha = upscale_loaded(model, loaded, outscale=2, bit_depth=8)
    assert resized.dtype == resized_alpha.dtype == np.uint8 and resized.shape == (18, 22, 3)
    assert resized_alpha.shape == (18, 22)


def test_upscale_loaded_keeps_a_gray_image_gray_in_float(weights):
    """Without ``bit_depth`` a gray file came back tinted (the channel mean was taken only for RGB
    files of gray pixels): now each channel is the gray that the quantised output and a gray file store."""
    images = _images()
    from srgan_cli.api import upscale_loaded

    model = load_model(weights, device="cpu")
    rgb = np.repeat(np.random.default_rng(6).random((9, 11, 1), dtype=np.float32), 3, axis=2)
    loaded = images.LoadedImage(rgb, None, 8, True, "L", "PNG", None, None, 1)
    out, _ = upscale_loaded(model, loaded)
    assert out.shape == (36, 44, 3) and np.ptp(out, axis=2).max() == 0
    plane, _ = upscale_loaded(model, loaded, bit_depth=8)
    np.testing.assert_array_equal(plane, images._quantise(out[..., :1], 8))
    resized, _ = upscale_loaded(model, loaded, outscale=2)
    assert resized.shape == (18, 22, 3) and np.ptp(resized, axis=2).max() == 0


def _smooth(rng, h: int, w: int, channels: int) -> np.ndarray:
    """Random pixels smoothed by a 3x3 box: an image with edges and flat parts, values in [0, 1]."""
    x = rng.random((h + 2, w + 2, channels), dtype=np.float32)
    return sum(x[i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9


def _outscale_reference(model, loaded, outscale: float, depth: int) -> np.ndarray:
    """What ``upscale_loaded(..., outscale=, bit_depth=)`` stands for, done the straightforward way: the
    float x4 output (for gray, its gray mean) and x4 alpha Lanczos-resized whole, the alpha clamped, then
    stacked and quantised as write_image stores them."""
    images = _images()
    rgb, alpha = upscale_loaded_fn()(model, loaded)  # float, x4
    if loaded.grayscale:  # gray is resized as gray, as the x4 output stores it (before: each channel, then the mean)
        rgb = rgb.mean(axis=2, keepdims=True, dtype=np.float32)
    h, w = loaded.rgb.shape[:2]
    size = output_size(w, h, model.scale, outscale)
    if size != (rgb.shape[1], rgb.shape[0]):
        rgb = images.resize_rgb(rgb, size)
        if alpha is not None:
            alpha = images.clamp_resized_alpha(images.resize_rgb(alpha, size), loaded.alpha)
    return images._quantise(images._planes(rgb, alpha, loaded.grayscale), depth)


def upscale_loaded_fn():
    from srgan_cli.api import upscale_loaded

    return upscale_loaded


@pytest.mark.parametrize("outscale", [0.3, 1, 2.5, 6])
@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("kind", ["rgb", "gray", "neutral", "rgba", "graya"])
def test_outscale_quantised_equals_the_whole_image_resize(weights, monkeypatch, kind, depth, outscale):
    """--outscale keeps the x4 output in 16 bits and resizes it a band of rows at a time into the
    quantised result: within 1 level of resizing the float x4 output whole (8 and 16 bits; 8-bit pixels
    are mostly identical), for colour, gray, neutral colour and alpha, shrunk and enlarged."""
    images = _images()
    monkeypatch.setattr(images, "_RESIZE_BAND_SAMPLES", 1 << 10, raising=False)  # several bands
    model = load_model(weights, device="cpu", precision="fp32")
    rng = np.random.default_rng(7)
    rgb = _smooth(rng, 20, 26, 3)
    if depth == 16:  # values between the 8-bit levels
        rgb = np.clip(rgb + rng.random(rgb.shape, dtype=np.float32) * 0.003, 0, 1)
    if kind in ("gray", "neutral", "graya"):
        rgb = np.repeat(rgb[..., :1], 3, axis=2)
    alpha = None
    if kind in ("rgba", "graya"):
        alpha = np.zeros((20, 26), np.float32)
        alpha[4:16, 5:20] = 1.0
        alpha[8:12, 2:24] = 0.4
    gray = kind in ("gray", "graya")
    loaded = images.LoadedImage(rgb, alpha, depth, gray, "RGBA" if alpha is not None else "RGB", "PNG", None, None, 1)
    out, out_alpha = upscale_loaded_fn()(model, loaded, outscale=outscale, bit_depth=depth)
    size = output_size(26, 20, 4, outscale)
    assert out.dtype == (np.uint16 if depth == 16 else np.uint8)
    assert out.shape == (size[1], size[0], 1 if gray else 3)
    assert (out_alpha is None) == (alpha is None)
    got = images._planes(out, out_alpha, gray).astype(np.int64)
    want = _outscale_reference(model, loaded, outscale, depth).astype(np.int64)
    assert got.shape == want.shape
    diff = np.abs(got - want)
    assert diff.max() <= 1
    if depth == 8:
        assert (diff > 0).mean() < 0.01
    if kind == "neutral":
        assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])


def test_outscale_holds_no_float_copy_of_the_x4_output(weights, monkeypatch):
    """--outscale held the whole x4 output in float32 and several float copies of it for the Lanczos
    resize (12-17 bytes a x4 pixel, 27 GB for a 100 MP scan at --outscale 2): now the x4 output is held
    in 16 bits (6 bytes a pixel) and only bands of rows are made float. NumPy's allocations are traced."""
    import tracemalloc

    images = _images()
    monkeypatch.setattr(images, "_RESIZE_BAND_SAMPLES", 1 << 14, raising=False)  # bands as on a large image
    model = load_model(weights, device="cpu", precision="fp32")
    rgb = _smooth(np.random.default_rng(3), 192, 128, 3)
    loaded = images.LoadedImage(rgb, None, 8, False, "RGB", "PNG", None, None, 1)
    float_x4 = (192 * 4) * (128 * 4) * 3 * 4  # bytes of the float32 x4 canvas
    tracemalloc.start()
    try:
        out, _ = upscale_loaded_fn()(model, loaded, outscale=2, bit_depth=8, tile=0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.85 * float_x4  # 0.70 measured: the 16-bit canvas is 0.5, the result 0.06, a band 0.1
    assert out.dtype == np.uint8 and out.shape == (384, 256, 3)


@pytest.mark.parametrize("outscale", [0.5, 1, 2.5])
def test_outscale_alpha_does_not_ring_past_a_hard_edge(weights, outscale):
    """The x4 alpha is kept within each pixel's input neighbourhood; the Lanczos resize of --outscale
    rang again: alpha 1-2 around an opaque square on a transparent ground, 252 inside it."""
    images = _images()
    from srgan_cli.api import upscale_loaded

    alpha = np.zeros((32, 48), np.float32)
    alpha[8:24, 12:36] = 1.0
    rgb = np.zeros((32, 48, 3), np.float32)
    rgb[8:24, 12:36] = (1.0, 0.6, 0.0)
    loaded = images.LoadedImage(rgb, alpha, 8, False, "RGBA", "PNG", None, None, 1)
    _, got = upscale_loaded(load_model(weights, device="cpu"), loaded, outscale=outscale)
    h, w = got.shape
    assert (h, w) == (round(32 * outscale), round(48 * outscale))
    y = (np.arange(h) + 0.5) / outscale  # input coordinates of the output pixels' centres
    x = (np.arange(w) + 0.5) / outscale
    yy, xx = np.meshgrid(y, x, indexing="ij")
    outside = np.maximum(np.maximum(8 - yy, yy - 24), np.maximum(12 - xx, xx - 36))  # > 0 outside the square
    assert got[outside >= 2].max() == 0 and got[outside <= -2].min() == 1
    assert 0 < got[np.abs(outside) <= 1].mean() < 1  # the edge itself still a step between them


def test_quantised_bit_depth_is_checked(weights, rgb):
    with pytest.raises(SrganError, match="bit depth"):
        upscale_array(load_model(weights, device="cpu"), rgb, bit_depth=12)


# Precision: under precision="auto", images of more than 8 bits run in fp32 (bf16 keeps about 8).


def _ramp16() -> np.ndarray:
    """A 32x32 16-bit colour ramp rising 16 levels a pixel (1/16 of an 8-bit step)."""
    y, x = np.mgrid[0:32, 0:32]
    g = 40000 + 16 * x + 16 * y
    return np.stack([g, g, np.full_like(g, 45000)], axis=2).astype(np.uint16)


def _levels(out: np.ndarray) -> int:
    """Distinct 16-bit levels of the red channel away from the border."""
    return len(np.unique(np.round(out[8:-8, 8:-8, 0] * 65535)))


@pytest.fixture
def auto_bf16(weights, monkeypatch):
    """The tiny SRResNet with precision="auto" where auto picks bf16 (CPUs with AMX or
    AVX512-BF16), made so on any CPU."""
    monkeypatch.setattr("srgan_cli.device.cpu_has_native_bf16", lambda: True)
    model = load_model(weights, device="cpu")
    assert model.dtype == torch.bfloat16
    return model


@pytest.mark.parametrize("change", ["remove", "replace", "chdir"])
def test_a_16_bit_image_needs_no_weights_file_once_the_model_is_loaded(weights, tmp_path, monkeypatch, change):
    # the fp32 twin for 16-bit images was read again from the file: a FileNotFoundError after the file
    # was removed or the folder changed (a relative path), "the weights file changed" after a live
    # run replaced it, where 8-bit images went on working
    import shutil

    monkeypatch.setattr("srgan_cli.device.cpu_has_native_bf16", lambda: True)
    (tmp_path / "sub").mkdir()
    shutil.copy(weights, tmp_path / "sub" / "m.safetensors")
    monkeypatch.chdir(tmp_path / "sub")
    model = load_model("m.safetensors", device="cpu")
    assert model.dtype == torch.bfloat16
    expected = upscale_array(load_model(weights, device="cpu", precision="fp32"), _ramp16())
    if change == "remove":
        os.remove("m.safetensors")
    elif change == "replace":
        _save(Path("m.safetensors"), seed=9)
    else:
        monkeypatch.chdir(tmp_path)
    assert np.array_equal(upscale_array(model, _ramp16()), expected)


def test_auto_precision_runs_16_bit_images_in_fp32(weights, auto_bf16):
    """bf16 has 8 significant bits: a 16-bit ramp came out in 8-bit steps (6 distinct values
    where fp32 gives hundreds). Under auto, 16-bit pixels give exactly the fp32 result."""
    ramp = _ramp16()
    fp32 = upscale_array(load_model(weights, device="cpu", precision="fp32"), ramp)
    bf16 = upscale_array(load_model(weights, device="cpu", precision="bf16"), ramp)
    assert _levels(fp32) > 256 and _levels(bf16) < _levels(fp32) / 4  # what is at stake
    notes = []
    out = upscale_array(auto_bf16, ramp, on_note=notes.append)
    np.testing.assert_array_equal(out, fp32)
    assert _levels(out) > 256
    np.testing.assert_array_equal(
        upscale_array(auto_bf16, ramp, bit_depth=16, tile=8, on_note=notes.append),
        upscale_array(load_model(weights, device="cpu", precision="fp32"), ramp, bit_depth=16, tile=8),
    )
    np.testing.assert_array_equal(upscale_array(auto_bf16, ramp / 65535.0, source_bit_depth=16), fp32)
    torch.testing.assert_close(
        upscale_tensor(auto_bf16, torch.from_numpy(ramp / 65535.0).permute(2, 0, 1)[None], source_bit_depth=16),
        torch.from_numpy(fp32).permute(2, 0, 1)[None],
        rtol=0,
        atol=0,
    )
    assert len(notes) == 1 and "16-bit images run in fp32, 8-bit ones in bf16" in notes[0]  # said once
    # the model itself stays bf16, for 8-bit images
    assert auto_bf16.dtype == torch.bfloat16 and next(auto_bf16.module.parameters()).dtype == torch.bfloat16


def test_auto_precision_keeps_8_bit_images_in_bf16_and_loads_fp32_weights_only_when_needed(weights, auto_bf16):
    eight = (_ramp16() >> 8).astype(np.uint8)
    explicit = load_model(weights, device="cpu", precision="bf16")
    np.testing.assert_array_equal(upscale_array(auto_bf16, eight), upscale_array(explicit, eight))
    floats = eight / np.float32(255)  # floats are taken as 8-bit pixels unless told otherwise
    np.testing.assert_array_equal(upscale_array(auto_bf16, floats), upscale_array(explicit, floats))
    assert auto_bf16._fp32 is None  # no second copy of the weights until a 16-bit image comes
    upscale_array(auto_bf16, _ramp16())
    twin = auto_bf16._fp32
    assert twin is not None and next(twin.module.parameters()).dtype == torch.float32
    upscale_array(auto_bf16, _ramp16())
    assert auto_bf16._fp32 is twin  # made once
    # an explicit precision is the user's choice, 16 bits or not
    np.testing.assert_array_equal(
        upscale_array(explicit, _ramp16()), upscale_array(explicit, _ramp16() / 65535.0, source_bit_depth=16)
    )
    assert explicit._fp32 is None
    with pytest.raises(SrganError, match="source_bit_depth"):
        upscale_array(auto_bf16, eight, source_bit_depth=12)
    for wrong in ("16", 16.0):  # "16" was reported as "got 16"; 16.0 passed
        with pytest.raises(TypeError, match="source_bit_depth"):
            upscale_array(auto_bf16, eight, source_bit_depth=wrong)


def test_auto_precision_keeps_16_bit_through_upscale_image_and_the_cli(weights, auto_bf16, tmp_path):
    images = _images()
    from click.testing import CliRunner
    from PIL import Image

    from srgan_cli.api import upscale_image
    from srgan_cli.cli import main

    ramp = _ramp16()
    fp32 = load_model(weights, device="cpu", precision="fp32")
    gray = Image.frombytes("I;16", (32, 32), np.ascontiguousarray(ramp[..., 0]).astype("<u2").tobytes())
    out = upscale_image(gray, auto_bf16)
    assert out.mode == "I;16" and np.array_equal(np.asarray(out), np.asarray(upscale_image(gray, fp32)))
    assert len(np.unique(np.asarray(out)[8:-8, 8:-8])) > 256

    src = tmp_path / "sky16.png"
    images.write_image(src, ramp / 65535.0, bit_depth=16)
    outputs = {}
    for precision in ("auto", "fp32", "bf16"):
        dest = tmp_path / f"{precision}.png"
        argv = ["upscale", "-m", str(weights), "--precision", precision, str(src), "-o", str(dest)]
        result = CliRunner().invoke(main, argv)
        assert result.exit_code == 0, result.output
        assert ("16-bit images run in fp32" in result.output) == (precision == "auto")
        outputs[precision] = images.read_image(dest)
        assert outputs[precision].bit_depth == 16
    np.testing.assert_array_equal(outputs["auto"].rgb, outputs["fp32"].rgb)
    assert _levels(outputs["auto"].rgb) > 256 and _levels(outputs["bf16"].rgb) < _levels(outputs["auto"].rgb) / 4


# upscale_image keeps the metadata Pillow's own resize keeps.


def test_upscale_image_keeps_icc_profile_dpi_and_exif(weights, tmp_path):
    _images()
    import io

    from PIL import Image, ImageCms

    from srgan_cli.api import upscale_image

    model = load_model(weights, device="cpu")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010E] = "the harbour, 1952"
    exif[0x0112] = 6  # turned a quarter: the pixels come out upright
    exif.get_ifd(0x8769).update({0xA002: 12, 0xA003: 10})
    data = io.BytesIO()
    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(
        data, "JPEG", icc_profile=icc, dpi=(300, 300), exif=exif
    )
    photo = Image.open(io.BytesIO(data.getvalue()))
    big = upscale_image(photo, model)
    assert big.size == (40, 48)
    assert big.info["icc_profile"] == icc and big.info["dpi"] == (300, 300)  # dpi unchanged, as the CLI writes it
    out_exif = big.getexif()
    assert out_exif[0x010E] == "the harbour, 1952" and out_exif.get(0x0112) == 1
    assert out_exif.get_ifd(0x8769) == {0xA002: 40, 0xA003: 48}
    big.save(tmp_path / "big.png")
    assert Image.open(tmp_path / "big.png").info["icc_profile"] == icc
    assert upscale_image(photo, model, outscale=2).info["icc_profile"] == icc
    # an RGB profile does not describe gray pixels: left out, as write_image leaves it out
    gray = photo.convert("L")
    gray.info["icc_profile"] = icc
    assert "icc_profile" not in upscale_image(gray, model).info
    assert upscale_image(Image.new("RGB", (9, 9)), model).info == {}


# Images under 8 px across run padded by edge replication: zero padding swamped a 1 px image.


@pytest.mark.parametrize("shape", [(1, 1), (1, 64), (64, 1), (3, 3), (7, 30)])
def test_images_narrower_than_8_px_run_edge_padded_and_cropped(fp32, shape):
    images = _images()
    h, w = shape
    rgb = np.random.default_rng(h * 100 + w).random((h, w, 3), dtype=np.float32)
    grow_h, grow_w = max(0, 8 - h), max(0, 8 - w)
    top, left = grow_h // 2, grow_w // 2
    padded = np.pad(rgb, ((top, grow_h - top), (left, grow_w - left), (0, 0)), mode="edge")
    expected = upscale_array(fp32, padded, tile=0)[4 * top : 4 * (top + h), 4 * left : 4 * (left + w)]
    out = upscale_array(fp32, rgb, tile=0)
    assert out.shape == (4 * h, 4 * w, 3)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_allclose(upscale_array(fp32, rgb, tile=8), expected, rtol=0, atol=2e-5)
    q = upscale_array(fp32, rgb, tile=0, bit_depth=8)
    np.testing.assert_array_equal(q, images._quantise(expected, 8))
    tensor = upscale_tensor(fp32, torch.from_numpy(rgb).permute(2, 0, 1)[None], tile=0)
    np.testing.assert_array_equal(tensor[0].permute(1, 2, 0).numpy(), expected)


@pytest.mark.parametrize("shape", [(8, 8), (8, 21), (21, 8)])
def test_images_of_8_px_and_more_are_not_padded(fp32, shape):
    rgb = np.random.default_rng(7).random((*shape, 3), dtype=np.float32)
    with torch.inference_mode():
        ref = fp32.forward(torch.from_numpy(rgb).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(upscale_array(fp32, rgb, tile=0), ref)


@pytest.mark.parametrize("name", ["srresnet_x4", "srgan_x4"])
def test_tiny_images_keep_their_colour(name):
    """A 1x1 (200, 100, 50) came out as a block of mean (23, 23, 12), a 64x1 gradient strip
    lost a quarter of its brightness: the network's zero padding outweighed the pixels."""
    _bundled_photo_crop(name, 8)  # skips when the model is not installed
    model = load_model(name, device="cpu", precision="fp32")
    ramp = np.linspace(0, 255, 64)
    strip = np.stack([ramp, np.full(64, 128.0), ramp[::-1]], axis=1)[None].round().astype(np.uint8)
    cases = {
        "1x1": np.array([[[200, 100, 50]]], np.uint8),
        "64x1": strip,
        "1x64": strip.transpose(1, 0, 2),
        "3x3": np.broadcast_to(np.array([30, 160, 220], np.uint8), (3, 3, 3)),
    }
    for label, pixels in cases.items():
        out = upscale_array(model, pixels)
        error = np.abs(out.reshape(-1, 3).mean(0) * 255 - pixels.reshape(-1, 3).mean(0)).max()
        assert error < 4, (label, error)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_cuda_ensemble_matches_the_cpu():
    """--ensemble on a GPU (fp16, 8 passes summed in float32, tiles batched) stays within half
    a gray level RMS of the CPU's fp32 ensemble, tiled or not."""
    rgb = _bundled_photo_crop("srresnet_x4", 64)
    ref = upscale_array(load_model("srresnet_x4", device="cpu", precision="fp32", ensemble=True), rgb, tile=0)
    model = load_model("srresnet_x4", device="cuda", ensemble=True)
    for tile in (0, 24):
        out = upscale_array(model, rgb, tile=tile)
        assert out.shape == ref.shape
        assert float(np.sqrt(np.mean((out - ref) ** 2))) * 255.0 < 0.5


@needs_cuda
@pytest.mark.parametrize("name", ["srresnet_x4", "srgan_x4"])
def test_cuda_upscale_matches_the_cpu(name):
    """On a GPU the default (fp16, BatchNorm folded, tiles batched) stays within half a gray
    level RMS of the CPU in fp32, tiled or not; fp32 on the GPU (TF32 convolutions, PyTorch's
    default there: 0.11 levels at most on an H200) within half a level everywhere."""
    rgb = _bundled_photo_crop(name, 96)
    ref = upscale_array(load_model(name, device="cpu", precision="fp32"), rgb, tile=0)
    fp32 = upscale_array(load_model(name, device="cuda", precision="fp32"), rgb, tile=0)
    assert float(np.abs(fp32 - ref).max()) * 255.0 < 0.5
    model = load_model(name, device="cuda")
    assert model.dtype == torch.float16
    for tile in (0, 32):
        out = upscale_array(model, rgb, tile=tile)
        assert out.shape == ref.shape
        rms = float(np.sqrt(np.mean(((out - ref) * 255.0) ** 2)))
        assert 0 < rms < 0.5, (tile, rms)


@needs_cuda
def test_cuda_rrdb_tiled_equals_whole(tmp_path, rgb):
    path = _save(
        tmp_path / "rrdb.safetensors",
        GeneratorConfig(arch="rrdb", num_blocks=2, num_features=16, growth_channels=8, batch_norm=False),
    )
    model = load_model(path, device="cuda", precision="fp32")
    whole = upscale_array(model, rgb, tile=0)
    tiled = upscale_array(model, rgb, tile=8, batch=3)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-4)
    cpu = upscale_array(load_model(path, device="cpu", precision="fp32"), rgb, tile=0)
    np.testing.assert_allclose(whole, cpu, rtol=0, atol=1e-3)


@needs_cuda
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_cuda_quantised_output_is_the_float_output_written(rgb, bit_depth):
    """On a GPU the quantising runs there; the bytes must still be write_image's."""
    images = _images()
    cuda = torch.device("cuda")
    model = Model(_Values().to(cuda), TINY, "values", device=cuda)
    for tile in (0, 5):
        whole = upscale_array(model, rgb, tile=tile)
        q = upscale_array(model, rgb, tile=tile, bit_depth=bit_depth)
        np.testing.assert_array_equal(q, images._quantise(images._planes(whole, None, False), bit_depth))
    from srgan_cli.weights import MODELS

    if MODELS["srresnet_x4"].bundled_path() is not None:
        real = load_model("srresnet_x4", device="cuda")
        whole = upscale_array(real, rgb, tile=0)
        q = upscale_array(real, rgb, tile=0, bit_depth=bit_depth)
        np.testing.assert_array_equal(q, images._quantise(images._planes(whole, None, False), bit_depth))


@needs_cuda
def test_cuda_auto_precision_runs_16_bit_images_in_fp32(weights):
    """auto is fp16 on GPUs (about 11 significant bits): 16-bit images run in fp32 there too."""
    model = load_model(weights, device="cuda")
    assert model.dtype == torch.float16
    ramp = _ramp16()
    out = upscale_array(model, ramp)
    ref = upscale_array(load_model(weights, device="cuda", precision="fp32"), ramp)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
    assert _levels(out) > 256
    assert next(model._fp32.module.parameters()).device.type == "cuda"
    assert next(model.module.parameters()).dtype == torch.float16


def test_upscale_image_by_path_loads_the_weights_now_in_the_file(tmp_path, monkeypatch):
    """The models loaded by name or path were cached by the text alone: new weights written to the
    same file (a run's generator.safetensors after more steps), or the same relative name in
    another folder, gave the first file's results."""
    from PIL import Image

    from srgan_cli import api

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8))
    folders = [tmp_path / "a", tmp_path / "b"]
    for seed, folder in enumerate(folders):
        folder.mkdir()
        torch.manual_seed(seed)
        save_generator(folder / "g.safetensors", build_generator(TINY), TINY)
    monkeypatch.chdir(folders[0])
    first = np.asarray(api.upscale_image(image, "g.safetensors"))
    monkeypatch.chdir(folders[1])
    second = np.asarray(api.upscale_image(image, "g.safetensors"))
    assert not np.array_equal(first, second)
    assert np.array_equal(second, np.asarray(api.upscale_image(image, load_model("g.safetensors"))))
    (folders[1] / "g.safetensors").write_bytes((folders[0] / "g.safetensors").read_bytes())  # new weights, same path
    assert np.array_equal(np.asarray(api.upscale_image(image, "g.safetensors")), first)
    for i in range(api._MODEL_CACHE_SIZE + 3):  # a loop over many files keeps a few models only
        torch.manual_seed(10 + i)
        api.upscale_image(image, save_generator(tmp_path / f"c{i}.safetensors", build_generator(TINY), TINY))
    assert len(api._MODEL_CACHE) == api._MODEL_CACHE_SIZE


def test_upscale_image_by_path_sees_weights_copied_in_with_their_old_time_kept(tmp_path):
    """The cache knew a file by its real path, size, modification time and inode: new weights of the
    same size copied over it in place with their time kept (cp -p, rsync -t, shutil.copy2) kept the
    old model's results. The inode's change time moves with any write."""
    import os
    import shutil

    from PIL import Image

    from srgan_cli import api

    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8))
    versions = [_save(tmp_path / f"v{seed}.safetensors", seed=seed) for seed in (0, 1)]
    assert versions[0].stat().st_size == versions[1].stat().st_size
    for path in versions:
        os.utime(path, ns=(1_700_000_000 * 10**9,) * 2)  # say, both unpacked from archives
    live = tmp_path / "live.safetensors"
    shutil.copy2(versions[0], live)
    first = np.asarray(api.upscale_image(image, live))
    inode = live.stat().st_ino
    shutil.copy2(versions[1], live)  # in place: the same inode, size and modification time
    assert (live.stat().st_ino, live.stat().st_mtime_ns) == (inode, 1_700_000_000 * 10**9)
    second = np.asarray(api.upscale_image(image, live))
    assert not np.array_equal(first, second)
    assert np.array_equal(second, np.asarray(api.upscale_image(image, load_model(live))))


def test_load_model_leaves_the_callers_random_state_as_it_was(weights, tmp_path):
    """Building the module drew its first weights from torch's global generator (the file's then
    replace them): a load moved the caller's torch.manual_seed stream on."""
    _save(tmp_path / "b.safetensors", seed=3)
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    model = load_model(weights, device="cpu", blend=f"{tmp_path / 'b.safetensors'}:0.5")
    model._reload(torch.float32)  # as for the fp32 twin: built again from the files
    assert torch.equal(torch.rand(4), expected)


def test_an_empty_tensor_is_a_one_line_error_as_an_empty_array_is(weights):
    """upscale_tensor raised torch's own RuntimeError on a (1, 3, 0, W) tensor."""
    model = load_model(weights)
    for shape in [(1, 3, 0, 10), (1, 3, 5, 0)]:
        with pytest.raises(SrganError, match="cannot upscale an empty image"):
            upscale_tensor(model, torch.rand(*shape))
    with pytest.raises(SrganError, match="cannot upscale an empty image"):
        upscale_array(model, np.zeros((0, 5, 3), np.uint8))


def test_threads_sharing_a_model_make_one_fp32_twin_and_one_note(weights, auto_bf16, monkeypatch):
    """Eight threads meeting their first 16-bit image at once each made a twin (the weights read
    eight times) and each said the note."""
    import threading
    import time

    reload, loads = auto_bf16._reload, []

    def slow_reload(dtype):
        loads.append(dtype)
        time.sleep(0.2)  # the window in which the other threads arrive
        return reload(dtype)

    monkeypatch.setattr(auto_bf16, "_reload", slow_reload)
    notes, ramp = [], _ramp16()[:8, :8]
    barrier = threading.Barrier(8)

    def work():
        barrier.wait()
        upscale_array(auto_bf16, ramp, on_note=notes.append)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == [torch.float32] and len(notes) == 1, (loads, notes)


def test_upscale_image_leaves_the_callers_pil_image_as_it_was(weights, tmp_path):
    """Its EXIF lost the orientation (a later exif_transpose did nothing) and a TIFF's tags, and a
    multi-frame image seeked to frame 2 was upscaled as frame 0 and left at frame 0."""
    from PIL import Image, ImageOps

    from srgan_cli.api import upscale_image

    model = load_model(weights, device="cpu", precision="fp32")
    exif = Image.Exif()
    exif[274] = 6
    Image.new("RGB", (12, 10), (200, 10, 10)).save(tmp_path / "rot.jpg", exif=exif.tobytes())
    with Image.open(tmp_path / "rot.jpg") as im:
        out = upscale_image(im, model)
        assert out.size == (40, 48)  # turned upright
        assert im.getexif()[274] == 6 and ImageOps.exif_transpose(im).size == (10, 12)
    frames = [Image.new("RGB", (12, 10), (i * 100, 255 - i * 100, 30)) for i in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=100)
    with Image.open(tmp_path / "anim.gif") as gif:
        gif.seek(2)
        third = gif.convert("RGB")
        got = np.asarray(upscale_image(gif, model).convert("RGB"))
        assert gif.tell() == 2
        gif.seek(0)
        first = np.asarray(upscale_image(gif.convert("RGB"), model))
    np.testing.assert_array_equal(got, np.asarray(upscale_image(third, model)))  # frame 2, not frame 0
    assert not np.array_equal(got, first)


def test_a_callers_autocast_does_not_change_the_models_precision(weights):
    model = load_model(weights, device="cpu", precision="fp32")
    x = np.random.default_rng(0).random((10, 12, 3), dtype=np.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = upscale_array(model, x)
    np.testing.assert_array_equal(inside, upscale_array(model, x))


def test_a_torch_device_is_checked_like_its_name(weights):
    if not torch.cuda.is_available():
        with pytest.raises(SrganError, match="CUDA is not available"):
            load_model(weights, device=torch.device("cuda"))
    with pytest.raises(SrganError):
        load_model(weights, device=torch.device("meta"))
    assert load_model(weights, device=torch.device("cpu")).device == torch.device("cpu")


def test_upscale_tensor_returns_a_plain_tensor(weights):
    """It returned an inference tensor: in-place changes and autograd refused it."""
    model = load_model(weights, device="cpu", precision="fp32")
    y = upscale_tensor(model, torch.rand(1, 3, 6, 5))
    assert not y.is_inference()
    y.add_(0)
    (y * torch.ones_like(y, requires_grad=True)).sum().backward()


def test_a_weights_file_replaced_while_it_loads_is_read_again_as_one_version(tmp_path, monkeypatch):
    """A live run replaces RUN/generator.safetensors at each checkpoint (a rename). One replaced
    between load_model's sha256 and its read of the tensors gave a model whose recorded sha256
    named the old file and whose weights were the new one's (12 of 20 runs of a fast swapper,
    with a traceback in some and a false "corrupt" in one). The load is done again on one version."""
    import hashlib
    import os
    import shutil

    from srgan_cli import weights as weights_module

    old, new = _save(tmp_path / "old.safetensors", seed=1), _save(tmp_path / "new.safetensors", seed=2)
    target = tmp_path / "generator.safetensors"
    shutil.copy(old, target)
    real, swaps = weights_module.load_file, []

    def load_file_during_a_checkpoint(name, device="cpu"):
        if not swaps:  # the run saves its next checkpoint just now
            swaps.append(1)
            shutil.copy(new, tmp_path / ".next")
            os.replace(tmp_path / ".next", target)
        return real(name, device=device)

    monkeypatch.setattr(weights_module, "load_file", load_file_during_a_checkpoint)
    model = load_model(target, device="cpu", precision="fp32")
    assert swaps and model.sha256 == hashlib.sha256(new.read_bytes()).hexdigest()
    expected = load_model(new, device="cpu", precision="fp32")
    for got, want in zip(model.module.state_dict().values(), expected.module.state_dict().values(), strict=True):
        assert torch.equal(got, want)


def test_a_weights_file_that_keeps_changing_is_one_error_line(tmp_path, monkeypatch):
    import os
    import shutil

    from srgan_cli import weights as weights_module

    old = _save(tmp_path / "old.safetensors", seed=1)
    target = tmp_path / "generator.safetensors"
    shutil.copy(old, target)
    real = weights_module.load_file

    def always_replaced(name, device="cpu"):
        shutil.copy(old, tmp_path / ".next")
        os.replace(tmp_path / ".next", target)
        return real(name, device=device)

    monkeypatch.setattr(weights_module, "load_file", always_replaced)
    with pytest.raises(SrganError, match="kept changing while it was read"):
        load_model(target, device="cpu")


def test_flags_and_bit_depth_take_only_their_own_types(weights):
    # ensemble="no" ran the 8-pass ensemble (8x the time); grayscale="no" gave a gray output; bit_depth=8.0
    # was taken where tile=8.0 was a TypeError
    for kwargs in ({"ensemble": "no"}, {"channels_last": "no"}, {"ensemble": 1}):
        with pytest.raises(TypeError, match="must be True or False"):
            load_model(weights, device="cpu", **kwargs)
    model = load_model(weights, device="cpu")
    rgb = np.zeros((6, 6, 3), np.float32)
    with pytest.raises(TypeError, match="grayscale must be True or False"):
        upscale_array(model, rgb, bit_depth=8, grayscale="no")
    for depth in (8.0, "8"):
        with pytest.raises(TypeError, match="bit_depth must be 8, 16 or None"):
            upscale_array(model, rgb, bit_depth=depth)
    assert upscale_array(model, rgb, bit_depth=np.int64(8)).dtype == np.uint8


def test_a_hand_built_model_runs_in_eval_mode_and_says_when_its_dtype_is_not_its_weights():
    # a train-mode module used BatchNorm's batch statistics: the output changed with the tile size
    from srgan_cli.api import Model

    torch.manual_seed(0)
    net = build_generator(TINY)
    model = Model(net, TINY, "mine")
    assert not net.training
    x = torch.rand(1, 3, 12, 12)
    torch.testing.assert_close(upscale_tensor(model, x, tile=0), upscale_tensor(model, x, tile=8), rtol=0, atol=1e-5)
    with pytest.raises(SrganError, match="weights are float16, but the Model's dtype is float32"):
        Model(build_generator(TINY).half(), TINY, "h")
    with pytest.raises(TypeError, match="must be a torch.nn.Module"):
        Model("net", TINY, "x")


def test_tensors_without_pixels_and_floats_on_another_scale_are_refused_clearly(weights):
    model = load_model(weights, device="cpu")
    x = torch.rand(1, 3, 8, 8)
    for bad, match in (
        (torch.empty(1, 3, 8, 8, device="meta"), "meta device"),
        (x.to_sparse(), "layout"),
        (x.to(torch.float8_e4m3fn), "float8"),
    ):
        with pytest.raises(TypeError, match=match):
            upscale_tensor(model, bad)
    with pytest.raises(TypeError, match="use upscale_tensor"):
        upscale_array(model, torch.rand(8, 8, 3, requires_grad=True))
    with pytest.raises(SrganError, match="dtype must be torch.float16, torch.bfloat16 or torch.float32"):
        upscale_array(model, np.zeros((8, 8, 3), np.float32), torch.float8_e4m3fn)
    # 0-255 floats came out nearly all white, without a word
    with pytest.raises(SrganError, match="tensor reaches 255: float pixels run from 0 to 1"):
        upscale_tensor(model, torch.full((1, 3, 8, 8), 255.0))
    with pytest.raises(SrganError, match="reaches 255: float pixels run from 0 to 1"):
        upscale_array(model, np.full((8, 8, 3), 255.0, np.float32))
    upscale_tensor(model, x * 1.5)  # a filter's overshoot: clipped, as documented
    out = upscale_tensor(model, x.clone().requires_grad_())
    assert not out.requires_grad and out.grad_fn is None  # detached, as the docstring says


def test_output_size_and_upscale_loaded_check_their_arguments(weights):
    from srgan_cli.api import upscale_loaded

    with pytest.raises(TypeError):
        output_size("45", 10, 4, None)  # was ("45454545", 40)
    with pytest.raises(SrganError, match="width must be at least 1"):
        output_size(-5, 10, 4, None)
    with pytest.raises(TypeError):
        output_size(5, 5, "4", None)
    with pytest.raises(TypeError, match="images.LoadedImage"):
        upscale_loaded(load_model(weights, device="cpu"), np.zeros((8, 8, 3)))


def test_cpu_0_is_the_cpu():
    from srgan_cli.device import choose_device

    assert choose_device("cpu:0") == torch.device("cpu") == choose_device(str(torch.device("cpu", 0)))


def test_the_x4_alpha_is_quantised_in_bands_with_the_same_pixels(weights, monkeypatch):
    # the direct path held the whole x4 alpha in float (4 bytes a x4 pixel) before quantising it
    from srgan_cli import api, images
    from srgan_cli.api import upscale_loaded

    rng = np.random.default_rng(4)
    alpha = rng.random((23, 17)).astype(np.float32)
    alpha[4:9] = 0.0
    loaded = images.LoadedImage(
        rgb=rng.random((23, 17, 3)).astype(np.float32), alpha=alpha, bit_depth=8, grayscale=False, mode="RGBA",
        format="PNG", icc_profile=None, exif=None, n_frames=1,
    )  # fmt: skip
    model = load_model(weights, device="cpu", precision="fp32")
    expected = images.quantise_into(images.upscale_alpha(alpha, 4), np.empty((92, 68), np.uint8))
    for samples in (1 << 22, 68 * 4, 68 * 12):  # one band; bands of 4 and of 12 rows
        monkeypatch.setattr(api, "_ALPHA_BAND_SAMPLES", samples)
        _, got = upscale_loaded(model, loaded, bit_depth=8)
        assert got.dtype == np.uint8 and np.array_equal(got, expected), samples


def test_a_palette_image_with_alpha_in_its_palette_keeps_its_transparency(fp32):
    # Image.quantize() of an RGBA image: mode P, the alpha in an RGBA palette, no "transparency" in info
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0], rgba[:, 8:, 3], rgba[:4, 8:, 3] = 200, 255, 128
    q = Image.fromarray(rgba, "RGBA").quantize(method=Image.Quantize.FASTOCTREE)
    assert q.mode == "P" and "transparency" not in q.info
    out = upscale_image(q, fp32)
    alpha = np.asarray(out)[..., 3]
    assert out.mode == "RGBA" and alpha[:, :28].max() == 0 and alpha[20:, 36:].min() == 255
    # a gray picture stays gray with its alpha; an opaque RGBA palette gives no alpha
    rgba[..., :3] = 120
    assert upscale_image(Image.fromarray(rgba, "RGBA").quantize(method=Image.Quantize.FASTOCTREE), fp32).mode == "LA"
    rgba[..., 3] = 255
    assert upscale_image(Image.fromarray(rgba, "RGBA").quantize(method=Image.Quantize.FASTOCTREE), fp32).mode == "L"


def test_upscale_image_warns_of_what_the_image_lost(fp32, tmp_path):
    frames = [Image.new("RGB", (10, 8), c) for c in ("red", "green")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.warns(SrganWarning, match=r"a\.gif: 2 frames; only the first is upscaled"):
        out = upscale_image(tmp_path / "a.gif", fp32)
    assert out.size == (40, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a plain image: no warning
        upscale_image(Image.new("RGB", (10, 8), "red"), fp32)
    with Image.open(tmp_path / "a.gif") as im:  # opened by the caller: the frame it stands at
        im.seek(1)
        with pytest.warns(SrganWarning, match=r"a\.gif: 2 frames; only frame 2 \(where the image stands\) is upscaled"):
            upscale_image(im, fp32)
