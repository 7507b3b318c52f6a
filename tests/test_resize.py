"""MATLAB-compatible bicubic resize: reproduces the MATLAB-made LR files of every benchmark set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_cli.resize import imresize, imresize_torch, resize_matrix


def _rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


# Every image of every provided set (all of bsd100 takes under a second).
@pytest.mark.parametrize("set_name,count", [("set5", 5), ("set14", 14), ("bsd100", 100)])
def test_imresize_reproduces_the_matlab_lr_files(shared_data, set_name, count):
    hr_files = sorted((shared_data / "bench" / set_name / "HR").glob("*.png"))
    assert len(hr_files) == count
    for hr_path in hr_files:
        hr = _rgb(hr_path)
        lr = _rgb(hr_path.parent.parent / "LR_x4" / hr_path.name)
        out = imresize(hr, 1 / 4)
        assert out.dtype == np.uint8 and out.shape == lr.shape
        mad = np.abs(out.astype(np.float64) - lr).mean()
        assert mad < 0.5, f"{set_name}/{hr_path.name}: mean abs diff {mad:.3f} gray levels"


def test_resize_matrix_rows_sum_to_one_and_identity_at_scale_one():
    for n_in, n_out, s in [(17, 5, 5 / 17), (10, 40, 4.0), (8, 8, 1.0)]:
        m = resize_matrix(n_in, n_out, s)
        assert m.shape == (n_out, n_in)
        np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(resize_matrix(8, 8, 1.0), np.eye(8), atol=1e-12)


def test_constant_image_stays_constant_and_shapes_follow_matlab():
    img = np.full((13, 7, 3), 77, np.uint8)
    up = imresize(img, 4)
    assert up.shape == (52, 28, 3) and (up == 77).all()
    down = imresize(img, 1 / 4)
    assert down.shape == (4, 2, 3) and (down == 77).all()  # ceil(13/4), ceil(7/4)


def test_upscale_interpolates_linear_ramps_exactly_inside():
    # A cubic-convolution kernel reproduces linear functions away from the mirrored border.
    ramp = np.tile(np.arange(20, dtype=np.float64), (6, 1))
    up = imresize(ramp, 4)
    u = (np.arange(1, 81) / 4 + 0.5 * (1 - 1 / 4)) - 1  # 0-based input coordinate of each output
    inside = (u > 2) & (u < 17)
    np.testing.assert_allclose(up[3, inside], u[inside], atol=1e-9)


def test_grayscale_and_channels_agree_and_torch_matches_numpy():
    rng = np.random.default_rng(1)
    gray = rng.random((21, 15))
    rgb = np.repeat(gray[..., None], 3, axis=2)
    np.testing.assert_allclose(imresize(rgb, 4)[..., 1], imresize(gray, 4), atol=1e-12)
    t = torch.from_numpy(gray)[None, None]
    for s in (4, 1 / 4):
        np.testing.assert_allclose(imresize_torch(t, s)[0, 0].numpy(), imresize(gray, s), atol=1e-10)
