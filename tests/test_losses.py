"""Losses: layer specs, VGG19 input conventions and loading, content/pixel/TV and GAN losses."""

from __future__ import annotations

import math
import re
import urllib.error

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, safe_open, save_file

from srgan_cli import losses
from srgan_cli.errors import SrganError
from srgan_cli.losses import (
    VGG19_LAYERS,
    ContentLoss,
    Convention,
    VGGFeatures,
    artifact_map,
    block_loss,
    convention_from_metadata,
    d_loss,
    flat_loss,
    flat_map,
    g_adv_loss,
    grid_loss,
    ldl_loss,
    load_vgg19,
    local_grid_loss,
    parse_layers,
    phase_steps,
    pixel_loss,
    save_vgg19_features,
    spectral_loss,
    tv_loss,
)

VGG_FILE = "vgg19/vgg19_features_caffe_fp16.safetensors"


@pytest.fixture(scope="module")
def vgg_path(request):
    shared = request.getfixturevalue("shared_data")
    path = shared / VGG_FILE
    if not path.is_file():
        pytest.skip(f"{VGG_FILE} is not in the shared data")
    return path


@pytest.fixture(scope="module")
def vgg_meta(vgg_path):
    with safe_open(str(vgg_path), framework="pt") as fh:
        return fh.metadata()


@pytest.fixture(scope="module")
def vgg_state(vgg_path):
    return load_file(str(vgg_path))


def _caffe_mean_from_metadata(meta: dict[str, str]) -> list[float]:
    # The mean as the file itself states it, e.g. "(B,G,R)=(103.939,116.779,123.68)".
    match = re.search(r"\(B,G,R\)\s*=\s*\(([^)]*)\)", meta["preprocess"])
    assert match, meta["preprocess"]
    return [float(v) for v in match.group(1).split(",")]


def _random_vgg_state(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state, in_ch = {}, 3
    for i, name in enumerate(VGG19_LAYERS):
        if name.startswith("conv"):
            out_ch = {"1": 64, "2": 128, "3": 256}.get(name[4], 512)
            state[f"{i}.weight"] = torch.randn(out_ch, in_ch, 3, 3, generator=gen) * (2 / (9 * in_ch)) ** 0.5
            state[f"{i}.bias"] = torch.zeros(out_ch)
            in_ch = out_ch
    return state


# --- layer names and specs ---------------------------------------------------------------------


def test_layer_names_follow_torchvision_vgg19_features():
    pytest.importorskip("torchvision")
    from torchvision.models import vgg

    features = vgg.make_layers(vgg.cfgs["E"])  # exactly vgg19(weights=None).features, minus its slow init
    assert len(VGG19_LAYERS) == len(features) == 37
    kinds = {"conv": torch.nn.Conv2d, "relu": torch.nn.ReLU, "pool": torch.nn.MaxPool2d}
    for name, module in zip(VGG19_LAYERS, features, strict=True):
        assert isinstance(module, kinds[name[:4]]), name
    assert VGG19_LAYERS.index("conv5_4") == 34 and VGG19_LAYERS[-1] == "pool5"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("vgg54", {"relu5_4": 1.0}),
        ("vgg22", {"relu2_2": 1.0}),
        ("conv5_4", {"conv5_4": 1.0}),
        ("mse", {"pixel": 1.0}),
        ("conv2_1:0.1,conv3_1:0.2,conv4_1:1.0", {"conv2_1": 0.1, "conv3_1": 0.2, "conv4_1": 1.0}),
        (" relu1_1 , VGG54:0.5 ", {"relu1_1": 1.0, "relu5_4": 0.5}),
        ("pixel:0.01,conv5_4", {"pixel": 0.01, "conv5_4": 1.0}),
    ],
)
def test_parse_layers(spec, expected):
    parsed = parse_layers(spec)
    assert parsed == pytest.approx(expected)
    assert list(parsed) == list(expected)


def test_parse_layers_unknown_layer_lists_valid_names():
    with pytest.raises(SrganError) as info:
        parse_layers("conv6_1")
    message = str(info.value)
    assert "conv6_1" in message and "relu5_4" in message and "vgg54" in message and "\n" not in message


@pytest.mark.parametrize("spec", ["", "  ", "conv1_1,", "conv1_1:x", "conv1_1:-1", "conv1_1:nan", "vgg54,relu5_4"])
def test_parse_layers_rejects_bad_specs(spec):
    with pytest.raises(SrganError):
        parse_layers(spec)


# --- conventions -------------------------------------------------------------------------------


def test_shared_file_convention_is_caffe(vgg_meta):
    assert convention_from_metadata(vgg_meta) is Convention.CAFFE


@pytest.mark.parametrize("meta", [{}, None, {"preprocess": "yuv_weird: something"}])
def test_unknown_convention_is_refused(meta):
    with pytest.raises(SrganError, match="convention|preprocess"):
        convention_from_metadata(meta)


def test_caffe_preprocessing_matches_the_file_metadata(vgg_meta):
    mean_bgr = _caffe_mean_from_metadata(vgg_meta)
    module = VGGFeatures(["conv1_1"], convention_from_metadata(vgg_meta))
    grey = module.preprocess(torch.full((1, 3, 2, 2), 0.5))
    for c in range(3):
        torch.testing.assert_close(grey[0, c], torch.full((2, 2), 127.5 - mean_bgr[c]))
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0  # pure red in RGB: must land in the last (R) channel of BGR
    out = module.preprocess(red)[0, :, 0, 0]
    torch.testing.assert_close(out, torch.tensor([0 - mean_bgr[0], 0 - mean_bgr[1], 255 - mean_bgr[2]]))


def test_torchvision_preprocessing_is_imagenet_normalisation():
    module = VGGFeatures(["conv1_1"], Convention.TORCHVISION)
    red = torch.zeros(1, 3, 1, 1)
    red[:, 0] = 1.0
    expected = torch.tensor([(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225])
    torch.testing.assert_close(module.preprocess(red)[0, :, 0, 0], expected)


# --- loading -----------------------------------------------------------------------------------


def test_shared_vgg_conv1_1_equals_manual_conv(vgg_path, vgg_meta, vgg_state):
    vgg = load_vgg19(vgg_path, ["conv1_1"])
    assert len(vgg.features) == 1  # truncated after the deepest requested layer
    x = torch.rand(2, 3, 9, 7)
    mean = torch.tensor(_caffe_mean_from_metadata(vgg_meta)).view(1, 3, 1, 1)
    manual_in = x[:, [2, 1, 0]] * 255 - mean
    expected = F.conv2d(manual_in, vgg_state["0.weight"].float(), vgg_state["0.bias"].float(), padding=1)
    torch.testing.assert_close(vgg(x)["conv1_1"], expected, rtol=1e-5, atol=1e-3)


def test_pre_and_post_activation_layers_both_correct(vgg_path):
    # An in-place ReLU must not overwrite a requested pre-activation map.
    vgg = load_vgg19(vgg_path, parse_layers("conv2_2,relu2_2"))
    out = vgg(torch.rand(1, 3, 16, 16))
    assert (out["conv2_2"] < 0).any()
    torch.testing.assert_close(out["relu2_2"], out["conv2_2"].clamp(min=0))


def test_vgg_features_are_frozen_and_pass_gradients(vgg_path):
    vgg = load_vgg19(vgg_path, ["relu2_2"])
    assert all(not p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training
    x = torch.rand(1, 3, 12, 12, requires_grad=True)
    vgg(x)["relu2_2"].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())


def test_channels_last_input_gives_same_features(vgg_path):
    vgg = load_vgg19(vgg_path, ["relu1_2"])
    x = torch.rand(1, 3, 10, 10)
    a = vgg(x)["relu1_2"]
    b = vgg(x.contiguous(memory_format=torch.channels_last))["relu1_2"]
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)


def test_missing_key_is_refused(tmp_path, vgg_state, vgg_meta):
    broken = {k: v for k, v in vgg_state.items() if k != "34.weight"}
    path = tmp_path / "broken.safetensors"
    save_file(broken, str(path), metadata=vgg_meta)
    with pytest.raises(SrganError, match=r"not a VGG19 features state dict: 1 missing \(e\.g\. 34\.weight\) tensors"):
        load_vgg19(path, ["conv1_1"])


def test_wrong_shape_is_refused(tmp_path, vgg_state, vgg_meta):
    state = dict(vgg_state)
    state["2.weight"] = state["2.weight"][:32].contiguous()
    path = tmp_path / "shape.safetensors"
    save_file(state, str(path), metadata=vgg_meta)
    with pytest.raises(SrganError, match="shape"):
        load_vgg19(path, ["conv1_1"])


def test_file_without_convention_is_refused(tmp_path, vgg_state):
    path = tmp_path / "nometa.safetensors"
    save_file(dict(vgg_state), str(path))
    with pytest.raises(SrganError, match="preprocess"):
        load_vgg19(path, ["conv1_1"])


@pytest.mark.parametrize("name", ["vgg.pth", "vgg.safetensors"])
def test_pickle_is_refused(tmp_path, name):
    path = tmp_path / name
    torch.save({"0.weight": torch.zeros(64, 3, 3, 3)}, path)
    with pytest.raises(SrganError, match="safetensors"):
        load_vgg19(path, ["conv1_1"])


@pytest.mark.parametrize(
    ("layer", "size"), [("conv1_2", 1), ("relu2_1", 2), ("pool2", 4), ("pool5", 32), ("relu5_4", 16)]
)
def test_too_small_input_is_a_clear_error(layer, size):
    vgg = VGGFeatures([layer], Convention.CAFFE)
    assert vgg.min_size == size
    vgg(torch.rand(1, 3, size, size))  # smallest size that works
    if size > 1:
        with pytest.raises(SrganError, match=f"{layer} needs images of at least {size} px"):
            vgg(torch.rand(1, 3, size - 1, 64))


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(SrganError, match="not found"):
        load_vgg19(tmp_path / "nope.safetensors", ["conv1_1"])


def test_save_and_load_round_trip(tmp_path):
    state = _random_vgg_state()
    path = save_vgg19_features(
        {f"features.{k}": v for k, v in state.items()}, tmp_path / "v.safetensors", "torchvision_rgb_imagenet"
    )
    assert not list(tmp_path.glob(".*.part"))
    vgg = load_vgg19(path, ["relu1_2"])
    assert vgg.convention is Convention.TORCHVISION
    x = torch.rand(1, 3, 6, 6)
    manual = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    manual = F.relu(F.conv2d(manual, state["0.weight"], state["0.bias"], padding=1))
    manual = F.relu(F.conv2d(manual, state["2.weight"], state["2.bias"], padding=1))
    torch.testing.assert_close(vgg(x)["relu1_2"], manual, rtol=1e-5, atol=1e-5)


def test_torchvision_weights_offline_is_a_user_error(tmp_path, monkeypatch):
    pytest.importorskip("torchvision")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache, so a download is attempted

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(SrganError, match="no VGG19 weights: pass --vgg-weights"):
        load_vgg19(None, parse_layers("vgg54"))


def test_torchvision_weights_use_torchvision_convention(monkeypatch):
    state = {f"features.{k}": v for k, v in _random_vgg_state(1).items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # the full model's head is dropped
    monkeypatch.setattr(losses, "_torchvision_state", lambda: {k: v for k, v in state.items() if "features" in k})
    vgg = load_vgg19(None, ["conv1_1"])
    assert vgg.convention is Convention.TORCHVISION
    torch.testing.assert_close(vgg.features[0].weight, state["features.0.weight"])


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda s: s.update({"features.99.weight": torch.zeros(1)}), "1 unexpected \\(e.g. 99.weight\\)"),
        (lambda s: s["features.2.bias"].__setitem__(0, float("nan")), "2.bias is not finite floating point"),
    ],
)
def test_unexpected_or_damaged_vgg_tensors_are_refused(monkeypatch, damage, message):
    state = {f"features.{k}": v for k, v in _random_vgg_state(2).items()}
    damage(state)
    monkeypatch.setattr(losses, "_torchvision_state", lambda: state)
    with pytest.raises(SrganError, match=message) as info:
        load_vgg19(None, ["conv1_1"])
    assert "\n" not in str(info.value)


# --- content, pixel and TV losses --------------------------------------------------------------


def test_pixel_and_tv_losses_by_hand():
    a = torch.tensor([[[[0.0, 1.0], [0.5, 0.5]]]])
    b = torch.zeros_like(a)
    assert pixel_loss(a, b, "mse").item() == pytest.approx((0 + 1 + 0.25 + 0.25) / 4)
    assert pixel_loss(a, b, "l1").item() == pytest.approx((0 + 1 + 0.5 + 0.5) / 4)
    # vertical diffs: 0.5, -0.5 -> mean sq 0.25; horizontal: 1, 0 -> mean sq 0.5
    assert tv_loss(a).item() == pytest.approx(0.75)
    assert tv_loss(torch.ones(1, 3, 5, 5)).item() == 0.0


def test_pixel_content_loss_needs_no_vgg():
    loss = ContentLoss(None, parse_layers("mse"))
    sr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    assert loss(sr, hr).item() == pytest.approx(F.mse_loss(sr, hr).item())
    with pytest.raises(SrganError, match="VGG19 weights"):
        ContentLoss(None, parse_layers("vgg54"))


def test_vgg_content_loss_zero_for_identical_positive_otherwise(vgg_path):
    layers = parse_layers("conv2_2:0.5,relu2_2")
    loss = ContentLoss(load_vgg19(vgg_path, layers), layers)
    assert loss.feature_scale == pytest.approx(1 / 12.75)
    hr = torch.rand(2, 3, 16, 16)
    sr = (hr + 0.05 * torch.randn_like(hr)).clamp(0, 1).requires_grad_(True)
    assert loss(hr, hr.clone()).item() == 0.0
    value = loss(sr, hr)
    assert value.ndim == 0 and value.item() > 0
    value.backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0


def test_feature_scale_scales_mse_by_its_square(vgg_path):
    vgg = load_vgg19(vgg_path, ["relu1_1"])
    hr, sr = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    one = ContentLoss(vgg, {"relu1_1": 1.0}, feature_scale=1.0)(sr, hr)
    tenth = ContentLoss(vgg, {"relu1_1": 1.0}, feature_scale=0.1)(sr, hr)
    assert tenth.item() == pytest.approx(one.item() * 0.01, rel=1e-4)


def test_grid_loss_measures_the_pattern_locked_to_the_pixel_grid():
    torch.manual_seed(0)
    hr = torch.rand(8, 3, 32, 32)
    pattern = torch.tensor([[1.0, -1.0, 2.0, 0.0], [0.0, 0.0, -2.0, 1.0], [3.0, 0.0, 0.0, -1.0], [0.0, -3.0, 0.0, 0.0]])
    pattern = torch.stack([pattern, -pattern, 2 * pattern]) / 255  # (3, 4, 4), a colour grid
    expected = math.sqrt((1.875 + 1.875 + 7.5) / 3) / 255  # by hand: mean squares 30/16, 30/16, 4*30/16
    gridded = hr + pattern.repeat(1, 8, 8)
    assert grid_loss(gridded, hr).item() == pytest.approx(expected, rel=1e-5)
    assert grid_loss(gridded[..., :30, :29], hr[..., :30, :29]).item() == pytest.approx(expected, rel=1e-5)
    # a colour offset is the part common to all phases; it counts
    assert grid_loss(hr + 2 / 255, hr).item() == pytest.approx(2 / 255, rel=1e-5)
    # texture that is not locked to the grid averages out: each phase's mean of 8 x 64 noisy
    # pixels keeps about 1/sqrt(512) of the noise
    noisy = hr + torch.randn_like(hr) * 10 / 255
    assert grid_loss(noisy, hr).item() < 1.5 / math.sqrt(512) * float((noisy - hr).pow(2).mean().sqrt())
    # the same pattern one pixel off is another pattern, not a smaller one
    shifted = hr + torch.roll(pattern.repeat(1, 8, 8), 1, dims=-1)
    assert grid_loss(shifted, hr).item() == pytest.approx(expected, rel=1e-5)
    # its gradient moves each pixel against its phase's mean error
    sr = gridded.clone().requires_grad_(True)
    grid_loss(sr, hr).backward()
    assert torch.allclose(sr.grad[0], sr.grad[5]) and (sr.grad * (gridded - hr)).sum() > 0
    with pytest.raises(ValueError, match="smaller than one"):
        grid_loss(hr[..., :3, :3], hr[..., :3, :3])


def test_local_grid_loss_sees_a_grid_whose_phase_changes_from_place_to_place():
    torch.manual_seed(0)
    hr = torch.rand(2, 3, 64, 64)
    pattern = torch.tensor([[1.0, -1.0, 2.0, 0.0], [0.0, 0.0, -2.0, 1.0], [3.0, 0.0, 0.0, -1.0], [0.0, -3.0, 0.0, 0.0]])
    expected = math.sqrt(30 / 16) / 255  # by hand: the pattern sums to 0, its mean square is 30/16
    grid = (pattern / 255).repeat(16, 16)
    assert local_grid_loss(hr + grid, hr).item() == pytest.approx(expected, rel=1e-5)
    # one image with the grid, the other with its negative: the batch's mean grid is gone
    flipped = hr + torch.stack([grid, -grid]).unsqueeze(1)
    assert local_grid_loss(flipped, hr).item() == pytest.approx(expected, rel=1e-5)
    assert grid_loss(flipped, hr).item() < 1e-5
    # the same within one image, square by square (32 px squares: four per image)
    squares = torch.cat(
        [torch.cat([grid[:32, :32], -grid[:32, :32]], 1), torch.cat([-grid[:32, :32], grid[:32, :32]], 1)]
    )
    assert local_grid_loss(hr + squares, hr, window=32).item() == pytest.approx(expected, rel=1e-5)
    assert local_grid_loss(hr + squares, hr, window=64).item() < 1e-5
    # a brightness offset is no grid
    assert local_grid_loss(hr + 3 / 255, hr).item() < 1e-5
    # only whole squares count: a 90 px image has one 64 px square, the grid outside it is not seen
    big = torch.rand(1, 3, 90, 90)
    outside = big.clone()
    outside[..., 64:, :] += (pattern / 255).repeat(7, 23)[:26, :90]
    assert local_grid_loss(outside, big).item() < 1e-5
    # an image smaller than the window is one square of whole cells
    assert local_grid_loss((hr + grid)[..., :30, :29], hr[..., :30, :29]).item() == pytest.approx(expected, rel=1e-5)
    sr = (hr + grid).requires_grad_(True)
    local_grid_loss(sr, hr).backward()
    assert (sr.grad * grid).sum() > 0  # descent takes the grid away
    with pytest.raises(ValueError, match="multiple of 4"):
        local_grid_loss(hr, hr, window=30)


def _hatch(amplitude: float, size: int, cycles_per_32: int = 12, phase=0.0) -> torch.Tensor:
    """Vertical lines: amplitude * cos(2 pi f x + phase), f = cycles_per_32 / 32 per px (0.375: 2.7 px)."""
    x = torch.arange(size, dtype=torch.float64)
    return (amplitude * torch.cos(2 * math.pi * cycles_per_32 / 32 * x + phase)).float().expand(size, size)


def test_spectral_loss_sees_a_hatch_whatever_its_phase_and_only_beyond_hr():
    a = 6 / 255
    expected = a / math.sqrt(2)  # by hand: a sinusoid's RMS (the Hann window's own bins are far from 2f)
    coarse = 0.5 + 0.1 * _hatch(1.0, 64, cycles_per_32=1).t()  # HR: a wave of period 32 px (below the band)
    hr = coarse.expand(2, 3, 64, 64)
    assert spectral_loss(hr, hr).item() < 1e-5
    assert spectral_loss(hr + _hatch(a, 64), hr).item() == pytest.approx(expected, rel=1e-4)
    # a phase of its own in each 32 px square and image: the grid losses see nothing, this the same
    hatch = torch.zeros(2, 3, 64, 64)
    for n, (i, j) in enumerate(((0, 0), (0, 32), (32, 0), (32, 32))):
        hatch[0, :, i : i + 32, j : j + 32] = _hatch(a, 32, phase=n * 1.1)
        hatch[1, :, i : i + 32, j : j + 32] = -_hatch(a, 32, phase=n * 0.7)
    assert spectral_loss(hr + hatch, hr).item() == pytest.approx(expected, rel=1e-4)
    assert local_grid_loss(hr + hatch, hr).item() < 1e-5 and grid_loss(hr + hatch, hr).item() < 1e-5
    # HR's own hatch, at another phase: SR need not copy HR's texture pixel for pixel
    textured = hr + _hatch(a, 64)
    assert spectral_loss(hr + _hatch(a, 64, phase=2.0), textured).item() < 1e-5
    # up to twice HR's power is free; beyond it, the excess: a^2 - 2 (a/2)^2 = a^2 / 2
    half = hr + _hatch(a / 2, 64, phase=1.0)
    assert spectral_loss(hr + _hatch(a, 64), half).item() == pytest.approx(expected / math.sqrt(2), rel=1e-4)
    # blur is no way out: fine detail short of floor x HR's counts (floor=0: it does not)
    assert spectral_loss(hr, textured).item() == pytest.approx(expected * math.sqrt(0.1), rel=1e-4)  # the default
    assert spectral_loss(hr, textured, floor=0.25).item() == pytest.approx(expected / 2, rel=1e-4)  # sqrt(a^2/2 / 4)
    assert spectral_loss(hr, textured, floor=0).item() < 1e-5
    quarter = hr + _hatch(a / 4, 64, phase=1.0)  # 1/16 of HR's power: 1/4 - 1/16 = 3/16 of it short
    assert spectral_loss(quarter, textured, floor=0.25).item() == pytest.approx(expected * math.sqrt(3 / 16), rel=1e-4)
    assert spectral_loss(hr + _hatch(a / 1.5, 64), textured, floor=0.25).item() < 1e-5  # 4/9 of HR's: free
    # coarse detail the LR holds is not its business (a wave of period 32 px, 3 gray levels)
    assert spectral_loss(hr + 0.5 * _hatch(a, 64, cycles_per_32=1), hr).item() < 1e-5
    # a 16 px image is one square (6 cycles in 16 px: the same frequency)
    small = hr[..., :16, :16]
    assert spectral_loss(small + _hatch(a, 16), small).item() == pytest.approx(expected, rel=1e-4)
    sr = (hr + _hatch(a, 64)).requires_grad_(True)
    spectral_loss(sr, hr).backward()
    assert (sr.grad * _hatch(a, 64)).sum() > 0  # descent takes the hatch away
    with pytest.raises(ValueError, match="at least 4 px"):
        spectral_loss(hr[..., :3, :3], hr[..., :3, :3])
    with pytest.raises(ValueError, match="odd smooth"):
        spectral_loss(hr, hr, smooth=2)
    with pytest.raises(ValueError, match="floor >= 0"):
        spectral_loss(hr, hr, floor=-1)


def test_phase_steps_and_block_loss_see_blocks_whatever_their_sign():
    torch.manual_seed(0)
    lr = torch.rand(4, 3, 8, 8)
    blocky = lr.repeat_interleave(4, dim=-1).repeat_interleave(4, dim=-2)  # each LR pixel a 4x4 block
    # inside a cell no step; between cells the LR image's own steps
    a = (lr[..., 1:] - lr[..., :-1]).abs().mean().item()
    b = (lr[..., 1:, :] - lr[..., :-1, :]).abs().mean().item()
    assert phase_steps(blocky).tolist() == pytest.approx([0, 0, 0, a, 0, 0, 0, b], abs=1e-6)
    flat = lr.mean(dim=(0, 2, 3), keepdim=True).expand_as(blocky)  # each channel's mean: no step anywhere
    # by hand: per direction, phases 0, 0, 0, a less their mean a/4 square to 3 a^2 / 16 on average
    expected = math.sqrt((3 * a * a / 16 + 3 * b * b / 16) / 2)
    assert block_loss(blocky, flat).item() == pytest.approx(expected, rel=1e-5)
    # every phase sees every cell once, so the mean error is 0 at each: the grid loss does not
    # see these blocks, whose sign changes from cell to cell
    assert grid_loss(blocky, flat).item() < 1e-5
    # HR's own unevenness is taken off: the same blocks in HR are no error
    assert block_loss(blocky, blocky).item() < 1e-5
    # sharper or softer, but even over the phases, costs nothing
    photo = torch.rand(4, 3, 256, 256)
    assert block_loss(photo * 0.5, photo).item() < 0.02 * block_loss(blocky, flat).item()
    # the same blocks one pixel off are other phases, not smaller blocks
    rolled = torch.roll(blocky, (1, 1), dims=(-2, -1))
    assert block_loss(rolled, flat).item() == pytest.approx(expected, rel=0.05)  # the roll wraps one seam
    # a step of gradient descent makes the blocks less blocky
    sr = blocky.clone().requires_grad_(True)
    block_loss(sr, flat).backward()
    with torch.no_grad():
        assert block_loss(sr - 0.05 * sr.grad / sr.grad.abs().max(), flat) < block_loss(blocky, flat)
    with pytest.raises(ValueError, match="narrower than 5 px"):
        phase_steps(torch.rand(1, 3, 4, 4))


def test_artifact_map_and_ldl_loss_on_a_hand_computed_spike():
    # One channel, 16 x 16: SR is HR plus one spike of height a at (8, 8); the EMA's error is b
    # everywhere, with 0 < b < a, so only the spike is where SR is worse than the EMA.
    a, b = 0.5, 0.1
    hr = torch.full((1, 1, 16, 16), 0.25)
    sr = hr.clone()
    sr[0, 0, 8, 8] += a
    ema = hr + b
    # Each 7 x 7 window holding the spike once: unbiased variance (a^2 - 49 (a/49)^2) / 48 = a^2/49.
    # The whole image: (a^2 - 256 (a/256)^2) / 255 = a^2/256, to the power 1/5.
    spike = a * a / 49 * (a * a / 256) ** 0.2
    weights = artifact_map(sr, hr, ema)
    expected = torch.zeros_like(weights)
    expected[0, 0, 8, 8] = spike
    assert not weights.requires_grad
    assert torch.allclose(weights, expected, atol=1e-7)
    # Where the EMA is as wrong as SR, the other pixels of the windows count too.
    everywhere = artifact_map(sr, hr, hr)
    assert everywhere[0, 0, 5:12, 5:12].allclose(torch.full((7, 7), spike), rtol=1e-4)
    assert everywhere[0, 0, :5].abs().max() < 1e-7 and everywhere[0, 0, 12:].abs().max() < 1e-7
    # Colour channels are summed before the variance: a grey spike in 3 channels is a 3a spike.
    grey = artifact_map(sr.repeat(1, 3, 1, 1), hr.repeat(1, 3, 1, 1), ema.repeat(1, 3, 1, 1))
    assert grey[0, 0, 8, 8].item() == pytest.approx(9 * a * a / 49 * (9 * a * a / 256) ** 0.2, rel=1e-4)
    # The loss: the mean of map x |error|, with the map held fixed in the gradient.
    x = sr.clone().requires_grad_(True)
    loss = ldl_loss(x, hr, ema)
    assert loss.item() == pytest.approx(spike * a / 256, rel=1e-4)
    loss.backward()
    assert torch.allclose(x.grad, expected / 256, atol=1e-9)
    # An error that is the same everywhere has no local variance: no artifact.
    assert ldl_loss(hr + 0.2, hr, hr).item() == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="odd"):
        artifact_map(sr, hr, ema, window=4)
    with pytest.raises(ValueError, match="too small"):
        artifact_map(sr[..., :3, :3], hr[..., :3, :3], ema[..., :3, :3])


def _checkerboard(size: int, amplitude: float) -> torch.Tensor:
    """A grey (1, 3, size, size) image: 0.5 +- amplitude, alternating pixel by pixel."""
    sign = (torch.arange(size).view(-1, 1) + torch.arange(size)) % 2 * 2 - 1
    return (0.5 + amplitude * sign.float()).expand(1, 3, size, size).clone()


def test_flat_map_weighs_pixels_by_the_local_spread_of_hr():
    flat = torch.full((1, 3, 24, 24), 0.4)
    assert torch.equal(flat_map(flat), torch.ones(1, 1, 24, 24))
    # Grey: luma = 219/255 of the RGB value, so +-d/219 in RGB is a luma spread of d gray
    # levels (the 15x15 mean is off zero by d/225, a std of d * (1 - 1/225**2) ** 0.5).
    for d, expected in ((1.0, 1.0), (3.0, 0.5), (3.5, 0.25), (5.0, 0.0)):
        got = flat_map(_checkerboard(24, d / 219))
        assert got.shape == (1, 1, 24, 24) and not got.requires_grad
        assert got.min().item() == pytest.approx(expected, abs=1e-3)
        assert got.max().item() == pytest.approx(expected, abs=1e-3)
    # An edge: no weight within 7 px of it, full weight beyond.
    edge = torch.full((1, 3, 32, 32), 0.2)
    edge[..., 16:] = 0.8
    got = flat_map(edge)[0, 0]
    assert got[:, 9:23].max() == 0 and got[:, :9].min() == 1 and got[:, 23:].min() == 1
    with pytest.raises(ValueError, match="odd"):
        flat_map(flat, window=4)
    with pytest.raises(ValueError, match="low < high"):
        flat_map(flat, low=4, high=2)
    with pytest.raises(ValueError, match="too small"):
        flat_map(flat[..., :6, :6])


def test_flat_loss_is_the_l1_error_on_flat_hr_only():
    e = 0.01
    hr = torch.full((1, 3, 24, 24), 0.5)
    sr = _checkerboard(24, e).requires_grad_(True)
    loss = flat_loss(sr, hr)  # HR is flat everywhere: the mean |error|
    assert loss.item() == pytest.approx(e, rel=1e-5)
    loss.backward()
    assert torch.allclose(sr.grad.abs(), torch.full_like(sr, 1 / sr.numel()))
    assert flat_loss(hr + 0.1, hr).item() == pytest.approx(0.1, rel=1e-5)  # a colour drift counts
    # A textured HR (std 10 levels) gives no weight; half-flat HR (std 3 levels) half.
    for amplitude, share in ((10, 0.0), (3, 0.5)):
        textured = _checkerboard(24, amplitude / 219)
        got = flat_loss(textured + (sr.detach() - 0.5), textured).item()
        assert got == pytest.approx(share * e, abs=1e-3 * e)


def test_jitter_crops_both_images_by_one_random_offset(vgg_path):
    layers = parse_layers("mse:0.5,relu1_2")
    vgg = load_vgg19(vgg_path, ["relu1_2"])
    plain = ContentLoss(vgg, layers)
    jittered = ContentLoss(vgg, layers, jitter=4)
    hr, sr = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 12, 12)
    assert ContentLoss(vgg, layers, jitter=1)(sr, hr).item() == plain(sr, hr).item()  # 1 = no offset
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        dy, dx = int(torch.randint(4, ())), int(torch.randint(4, ()))
        torch.manual_seed(seed)
        got = jittered(sr, hr)
        assert jittered(sr, hr, offset=(dy, dx)).item() == got.item()  # the trainer passes its own
        crop = (..., slice(dy, dy + 9), slice(dx, dx + 9))
        pixel = 0.5 * torch.nn.functional.mse_loss(sr, hr)  # the pixel term sees the whole image
        expected = pixel + plain(sr[crop], hr[crop]) - 0.5 * torch.nn.functional.mse_loss(sr[crop], hr[crop])
        assert got.item() == pytest.approx(expected.item(), rel=1e-5)
        seen.add((dy, dx))
    assert len(seen) > 10  # the offset varies, over 0..3 in both directions
    assert max(max(o) for o in seen) == 3 and min(min(o) for o in seen) == 0
    with pytest.raises(SrganError, match="jitter"):
        ContentLoss(vgg, layers, jitter=-1)
    with pytest.raises(ValueError, match="too small"):
        ContentLoss(vgg, layers, jitter=16)(sr, hr)
    with pytest.raises(ValueError, match="outside"):
        jittered(sr, hr, offset=(0, 4))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_content_loss_under_autocast_stays_finite(vgg_path, dtype):
    layers = parse_layers("vgg22")
    loss = ContentLoss(load_vgg19(vgg_path, layers), layers)
    hr, sr = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    reference = loss(sr, hr).item()
    try:
        with torch.autocast("cpu", dtype=dtype):
            value = loss(sr, hr)
    except RuntimeError as exc:  # pragma: no cover - CPU autocast without fp16 support
        pytest.skip(f"CPU autocast {dtype}: {exc}")
    assert value.dtype == torch.float32 and math.isfinite(value.item())
    tolerance = 5e-2 if dtype == torch.bfloat16 else 1e-4  # fp16 autocast runs VGG in fp32
    assert value.item() == pytest.approx(reference, rel=tolerance)


# --- GAN losses ----------------------------------------------------------------------------------


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


REAL = [1.5, -0.25, 0.75]
FAKE = [-1.0, 0.5, -2.0]


def test_standard_gan_losses_by_hand():
    real, fake = torch.tensor(REAL).view(-1, 1), torch.tensor(FAKE).view(-1, 1)
    expected_d = -_mean(math.log(_sig(r)) for r in REAL) - _mean(math.log(1 - _sig(f)) for f in FAKE)
    expected_g = -_mean(math.log(_sig(f)) for f in FAKE)
    assert d_loss(real, fake, "standard").item() == pytest.approx(expected_d, rel=1e-5)
    assert g_adv_loss(None, fake, "standard").item() == pytest.approx(expected_g, rel=1e-5)


def test_relativistic_gan_losses_by_hand():
    real, fake = torch.tensor(REAL).view(-1, 1), torch.tensor(FAKE).view(-1, 1)
    mr, mf = _mean(REAL), _mean(FAKE)
    expected_d = -_mean(math.log(_sig(r - mf)) for r in REAL) - _mean(math.log(1 - _sig(f - mr)) for f in FAKE)
    expected_g = -_mean(math.log(1 - _sig(r - mf)) for r in REAL) - _mean(math.log(_sig(f - mr)) for f in FAKE)
    assert d_loss(real, fake, "relativistic").item() == pytest.approx(expected_d, rel=1e-5)
    assert g_adv_loss(real, fake, "relativistic").item() == pytest.approx(expected_g, rel=1e-5)


def test_gan_losses_are_stable_for_huge_logits():
    real, fake = torch.tensor([200.0, 150.0]), torch.tensor([-300.0, -120.0])
    for kind in ("standard", "relativistic"):
        assert d_loss(real, fake, kind).item() == pytest.approx(0.0, abs=1e-6)
        g = g_adv_loss(real, fake, kind)
        assert math.isfinite(g.item()) and g.item() > 100  # the generator is losing badly, finitely
    fake_grad = fake.clone().requires_grad_(True)
    g_adv_loss(real, fake_grad, "relativistic").backward()
    assert torch.isfinite(fake_grad.grad).all() and (fake_grad.grad < 0).all()


def test_unknown_gan_kind_is_refused():
    with pytest.raises(SrganError, match="relativistic"):
        d_loss(torch.zeros(2), torch.zeros(2), "wasserstein")


def test_content_loss_from_spec_loads_vgg_only_when_needed(tmp_path, vgg_path):
    missing = tmp_path / "absent.safetensors"
    pixel_only = losses.content_loss_from_spec("mse", missing)  # no VGG needed: the path is never read
    assert pixel_only.vgg is None
    with pytest.raises(SrganError, match="not found"):
        losses.content_loss_from_spec("vgg22", missing)
    esrgan = losses.content_loss_from_spec("conv5_4,pixel:0.01", vgg_path, criterion="l1")
    assert esrgan.vgg is not None and esrgan.vgg.layers == ("conv5_4",)
    hr = torch.rand(1, 3, 16, 16)
    sr = hr.flip(-1)
    expected_pixel = 0.01 * F.l1_loss(sr, hr).item()
    assert esrgan(sr, hr).item() > expected_pixel > 0
