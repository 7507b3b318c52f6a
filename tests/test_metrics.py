"""Metrics: hand-computed cases, and the literature's bicubic numbers from the protocol doc."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
from PIL import Image

from srgan_cli import metrics
from srgan_cli.metrics import Lpips, LpipsUnavailable, psnr, psnr_y, rgb_to_y, ssim, ssim_y, to_uint8
from srgan_cli.resize import imresize


def test_rgb_to_y_matches_bt601_by_hand():
    px = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [0, 0, 0], [255, 255, 255]]], np.uint8)
    # 16 + 65.481 = 81.481 -> 81; 16 + 128.553 -> 145; 16 + 24.966 -> 41 (MATLAB rounds uint8 Y)
    np.testing.assert_array_equal(rgb_to_y(px)[0], [81, 145, 41, 16, 235])
    f = px.astype(np.float64) / 255
    np.testing.assert_allclose(rgb_to_y(f)[0], [81.481, 144.553, 40.966, 16.0, 235.0], atol=1e-9)
    gray = np.array([[0, 128, 255]], np.uint8)
    np.testing.assert_array_equal(rgb_to_y(gray), rgb_to_y(np.repeat(gray[..., None], 3, axis=2)))


def test_psnr_of_a_known_mse():
    a = np.zeros((8, 8))
    b = np.full((8, 8), 10.0)  # MSE = 100
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    b[0, 0] = 0.0  # MSE = 100 * 63 / 64
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / (100 * 63 / 64)))
    assert psnr(a, a) == math.inf
    assert psnr(np.zeros(4), np.full(4, 0.5), data_range=1.0) == pytest.approx(10 * math.log10(4))


def test_psnr_y_crops_the_border_and_rounds_to_uint8():
    hr = np.full((20, 20, 3), 100, np.uint8)
    sr = hr.copy()
    sr[:4] = 0  # damage only inside the 4 px border: invisible to the metric
    sr[:, -4:] = 255
    assert psnr_y(sr, hr, crop=4) == math.inf
    assert psnr_y(sr, hr, crop=0) < 20
    # a float SR that rounds to the HR values scores as equal
    assert psnr_y(hr / 255.0 + 0.3 / 255, hr, crop=4) == math.inf
    # a grey offset of 2 levels in RGB is 2 * 219 / 255 in Y, rounded: 102 -> Y 103.6 -> 104 vs 102 -> 1.7
    sr2 = np.full((20, 20, 3), 102, np.uint8)
    d = rgb_to_y(sr2)[0, 0] - rgb_to_y(hr)[0, 0]
    assert psnr_y(sr2, hr, crop=4) == pytest.approx(10 * math.log10(255**2 / d**2))


def test_ssim_hand_cases():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 32)).astype(np.float64)
    assert ssim(x, x) == pytest.approx(1.0)
    # constant images: SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1) exactly (no variance)
    a, b = np.full((16, 16), 100.0), np.full((16, 16), 120.0)
    c1 = (0.01 * 255) ** 2
    assert ssim(a, b) == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1))
    # a contrast-inverted copy is strongly dissimilar; a slightly noisy copy is close to 1
    assert ssim(x, 255 - x) < 0
    noisy = np.clip(x + rng.normal(0, 2, x.shape), 0, 255)
    assert 0.95 < ssim(x, noisy) < 1.0
    assert ssim(x, noisy) == pytest.approx(ssim(noisy, x))
    with pytest.raises(ValueError):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))  # smaller than the window


def test_ssim_window_is_matlab_fspecial():
    g = metrics.gaussian_window(11, 1.5)
    w = np.outer(g, g)
    assert w.sum() == pytest.approx(1.0)
    # centre weight by hand: 1 / (sum over x = -5..5 of exp(-x^2 / 4.5))^2 = 1 / 3.75914^2
    assert w[5, 5] == pytest.approx(0.070766, abs=2e-5)
    assert w[0, 5] / w[5, 5] == pytest.approx(math.exp(-25 / 4.5))


def _set_means(shared_data, set_name):
    ps, ss = [], []
    for hr_path in sorted((shared_data / "bench" / set_name / "HR").glob("*.png")):
        hr = np.asarray(Image.open(hr_path).convert("RGB"))
        lr = np.asarray(Image.open(hr_path.parent.parent / "LR_x4" / hr_path.name).convert("RGB"))
        sr = imresize(lr, 4)
        ps.append(psnr_y(sr, hr, 4))
        ss.append(ssim_y(sr, hr, 4))
    return np.mean(ps), np.mean(ss)


# The protocol's measured bicubic x4 numbers (docs/BENCHMARK_PROTOCOL.md), typed in from the doc.
@pytest.mark.parametrize(
    "set_name,want_psnr,want_ssim", [("set5", 28.42, 0.810), ("set14", 26.09, 0.704), ("bsd100", 25.96, 0.667)]
)
def test_bicubic_reproduces_the_protocol_numbers(shared_data, set_name, want_psnr, want_ssim):
    got_psnr, got_ssim = _set_means(shared_data, set_name)
    assert abs(got_psnr - want_psnr) <= 0.02, got_psnr
    assert abs(got_ssim - want_ssim) <= 0.002, got_ssim


def test_to_uint8_rounds_and_clips():
    np.testing.assert_array_equal(to_uint8(np.array([-0.1, 0.5 / 255, 1.6 / 255, 1.2])), [0, 0, 2, 255])


# ---------------------------------------------------------------- LPIPS, offline


def test_lpips_reports_a_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "lpips", None)  # import lpips -> ImportError
    with pytest.raises(LpipsUnavailable) as info:
        Lpips()
    assert "lpips package is not installed" in info.value.reason


def test_lpips_reports_missing_backbone_weights_without_downloading(monkeypatch):
    fake = types.ModuleType("lpips")

    def refuse(**kwargs):
        raise AssertionError("must not try to build (and download) when the weights are absent")

    fake.LPIPS = refuse
    monkeypatch.setitem(sys.modules, "lpips", fake)
    monkeypatch.setattr(metrics, "_backbone_cached", lambda: False)
    with pytest.raises(LpipsUnavailable) as info:
        Lpips()
    assert "AlexNet" in info.value.reason and "cache" in info.value.reason


def test_lpips_loader_failure_becomes_a_reason(monkeypatch):
    fake = types.ModuleType("lpips")

    def broken(**kwargs):
        raise OSError("checkpoint truncated\nmore text")

    fake.LPIPS = broken
    monkeypatch.setitem(sys.modules, "lpips", fake)
    monkeypatch.setattr(metrics, "_backbone_cached", lambda: True)
    with pytest.raises(LpipsUnavailable) as info:
        Lpips()
    assert info.value.reason == "lpips could not be loaded (checkpoint truncated)"


def test_lpips_with_a_working_package_feeds_minus_one_to_one(monkeypatch):
    import torch

    seen = {}

    class FakeNet(torch.nn.Module):
        def forward(self, a, b):
            seen["range"] = (float(a.min()), float(a.max()))
            seen["shape"] = tuple(a.shape)
            return (a - b).abs().mean().reshape(1, 1, 1, 1)

    fake = types.ModuleType("lpips")
    fake.LPIPS = lambda **kwargs: FakeNet()
    monkeypatch.setitem(sys.modules, "lpips", fake)
    monkeypatch.setattr(metrics, "_backbone_cached", lambda: True)
    lp = Lpips()
    hr = np.zeros((36, 35, 3), np.uint8)
    hr[..., 0] = 255
    sr = np.zeros_like(hr)
    assert lp(hr, hr, crop=2) == 0.0
    assert lp(sr, hr, crop=2) == pytest.approx(2 / 3)  # only R differs, by 2 in [-1, 1]
    assert seen["shape"] == (1, 3, 32, 31)
    assert seen["range"] == (-1.0, -1.0)
    assert lp(sr[:34], hr[:34], crop=2) is None  # 30 px after the cut: too small for AlexNet's LPIPS


def test_the_lpips_package_is_not_used_where_torch_load_would_unpickle_anything(monkeypatch):
    """The lpips package reads its weights with torch.load: before torch 2.6 that unpickles
    anything, against "never a pickle from outside"."""
    import torch

    fake = types.ModuleType("lpips")
    fake.LPIPS = lambda **kwargs: (_ for _ in ()).throw(AssertionError("must not be built"))
    monkeypatch.setitem(sys.modules, "lpips", fake)
    monkeypatch.setattr(metrics, "_backbone_cached", lambda: True)
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    with pytest.raises(LpipsUnavailable) as info:
        Lpips()
    assert "torch >= 2.6" in info.value.reason
