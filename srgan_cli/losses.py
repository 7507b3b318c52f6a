"""Training losses: pixel, VGG content (perceptual), total variation, and GAN losses on logits.

Facts from the papers (see the project's PAPER.md):

* SRGAN content loss ``vgg54`` is the MSE between VGG19 feature maps phi_5,4, taken *after*
  the ReLU of conv5_4; ``vgg22`` is phi_2,2. The VGG network is frozen.
* SRGAN rescales the VGG feature maps by 1/12.75 so the VGG loss is on the scale of the pixel
  MSE (1/12.75**2 = 0.00615 on an MSE, the "0.006" of some implementations). That factor was
  set for the original Caffe VGG19 (BGR input on 0..255), so it is our default for Caffe
  weights; torchvision's ImageNet VGG19 takes normalised input and its features are already
  about two orders of magnitude smaller, so its default scale is 1 (what ESRGAN-style
  trainers use with it).
* ESRGAN takes the features *before* activation (``conv5_4``) and uses the relativistic
  average GAN. Its equations are implemented exactly as written (sum of the two terms);
  note that the released ESRGAN code averages the two terms instead (a factor 1/2).

Everything takes and returns tensors; nothing here prints, and user-caused problems (a bad
layer spec, a broken or unsafe weights file, no network for the download) raise SrganError.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .device import active_autocast_dtype, autocast
from .errors import SrganError
from .fsutil import atomic_path
from .metrics import Y_WEIGHTS

# ---------------------------------------------------------------------------------------------
# Layer names and specs


def _vgg19_layer_names() -> tuple[str, ...]:
    # torchvision's vgg19().features ("configuration E"): blocks of 2, 2, 4, 4, 4 convs, each
    # conv followed by a ReLU, each block closed by a 2x2 max-pool. 37 modules, indices 0..36.
    names: list[str] = []
    for block, convs in enumerate((2, 2, 4, 4, 4), start=1):
        for j in range(1, convs + 1):
            names += [f"conv{block}_{j}", f"relu{block}_{j}"]
        names.append(f"pool{block}")
    return tuple(names)


VGG19_LAYERS: tuple[str, ...] = _vgg19_layer_names()
"""The names of torchvision's ``vgg19().features`` modules, in order (index = module index)."""

PIXEL = "pixel"
"""The pseudo-layer of a content spec that means a loss on the image itself."""

_ALIASES: dict[str, str] = {"mse": PIXEL, PIXEL: PIXEL}
# SRGAN's names: vggIJ = phi_i,j = the j-th conv of block i, after its ReLU.
for _name in VGG19_LAYERS:
    if _name.startswith("relu"):
        _ALIASES["vgg" + _name[4:].replace("_", "")] = _name

_SPEC_HELP = (
    "use mse, vgg22, vgg54, a layer such as conv5_4, or a weighted list such as conv2_1:0.1,conv3_1:0.2,conv4_1:1.0"
)


def parse_layers(spec: str) -> dict[str, float]:
    """Parse a content-loss spec into ``{layer: weight}`` (in the order given).

    ``mse`` (or ``pixel``) is the pixel loss; ``vgg54`` is ``relu5_4`` (SRGAN's phi_5,4, after
    the ReLU), ``vgg22`` is ``relu2_2``; ``conv5_4`` is the pre-activation map (ESRGAN). A list
    ``conv2_1:0.1,conv3_1:0.2`` gives each term a weight; a name without ``:w`` weighs 1.0.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SrganError(f"empty content-loss spec; {_SPEC_HELP}")
    layers: dict[str, float] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            raise SrganError(f"content-loss spec {spec!r} has an empty item; {_SPEC_HELP}")
        name, sep, weight_text = item.partition(":")
        name = name.strip().lower()
        layer = _ALIASES.get(name, name)
        if layer != PIXEL and layer not in VGG19_LAYERS:
            valid = ", ".join(("mse", *sorted(k for k in _ALIASES if k.startswith("vgg")), *VGG19_LAYERS))
            raise SrganError(f"unknown VGG19 layer {name!r} in content-loss spec {spec!r}; valid names: {valid}")
        weight = 1.0
        if sep:
            try:
                weight = float(weight_text)
            except ValueError:
                bad = weight_text.strip()
                raise SrganError(f"content-loss spec {spec!r}: weight {bad!r} is not a number") from None
            if not math.isfinite(weight) or weight < 0:
                raise SrganError(f"content-loss spec {spec!r}: weight of {name} must be finite and >= 0")
        if layer in layers:
            raise SrganError(f"content-loss spec {spec!r} names {layer} twice")
        layers[layer] = weight
    return layers


def _vgg_layers(layers: Mapping[str, float] | Iterable[str] | str) -> list[str]:
    if isinstance(layers, str):
        layers = parse_layers(layers)
    names = [name for name in layers if name != PIXEL]
    for name in names:
        if name not in VGG19_LAYERS:
            raise SrganError(f"unknown VGG19 layer {name!r}; valid names: {', '.join(VGG19_LAYERS)}")
    return names


# ---------------------------------------------------------------------------------------------
# Input conventions


class Convention(str, enum.Enum):
    """How a VGG19's weights expect their input (our input is always RGB in [0, 1])."""

    CAFFE = "caffe_bgr255"
    """Original Caffe VGG19: BGR, 0..255, minus the mean (B, G, R) = (103.939, 116.779, 123.68)."""
    TORCHVISION = "torchvision_rgb_imagenet"
    """torchvision's ImageNet VGG19: RGB in [0, 1], minus mean, divided by std (ImageNet stats)."""

    @property
    def bgr(self) -> bool:
        return self is Convention.CAFFE

    def affine(self) -> tuple[list[float], list[float]]:
        """``(scale, shift)`` per input channel (in the network's channel order): y = x * scale + shift."""
        if self is Convention.CAFFE:
            return [255.0] * 3, [-m for m in CAFFE_MEAN_BGR]
        return [1 / s for s in IMAGENET_STD], [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]

    def describe(self) -> str:
        if self is Convention.CAFFE:
            return (
                "caffe_bgr255: input RGB in [0,1] -> reorder to BGR, multiply by 255, subtract mean "
                "(B,G,R)=(103.939,116.779,123.68); no std division"
            )
        return (
            "torchvision_rgb_imagenet: input RGB in [0,1], subtract mean (0.485,0.456,0.406), "
            "divide by std (0.229,0.224,0.225)"
        )


CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def convention_from_metadata(meta: Mapping[str, str] | None, source: str = "VGG19 weights") -> Convention:
    """The input convention named by a VGG19 file's ``preprocess`` metadata (its leading tag)."""
    text = (meta or {}).get("preprocess")
    if not text:
        raise SrganError(
            f"{source} has no 'preprocess' metadata, so its input convention is unknown; "
            "write the file with srgan_cli.losses.save_vgg19_features"
        )
    tag = re.split(r"[:\s]", text.strip(), maxsplit=1)[0].lower()
    for convention in Convention:
        if tag == convention.value:
            return convention
    valid = ", ".join(c.value for c in Convention)
    raise SrganError(f"{source}: unknown input convention {tag!r} in its 'preprocess' metadata; expected {valid}")


# ---------------------------------------------------------------------------------------------
# The frozen feature extractor

_CONV_INDICES = tuple(i for i, name in enumerate(VGG19_LAYERS) if name.startswith("conv"))


def _conv_shapes() -> dict[int, tuple[int, int]]:
    shapes, in_ch = {}, 3
    for i in _CONV_INDICES:
        out_ch = 64 * 2 ** min(int(VGG19_LAYERS[i][4]) - 1, 3)
        shapes[i] = (out_ch, in_ch)
        in_ch = out_ch
    return shapes


_CONV_SHAPES = _conv_shapes()


class VGGFeatures(nn.Module):
    """VGG19 ``features`` truncated after the deepest requested layer, frozen.

    Input: (N, 3, H, W) RGB in [0, 1]. Output: ``{layer: feature map}`` for the requested
    layers. The input normalisation of ``convention`` is applied inside (buffers, so it
    follows ``.to(device)``). The network runs in fp32, also under fp16 autocast (Caffe-scale
    activations overflow fp16); under bf16 autocast it runs in bf16, which has fp32's range.
    Module indices match torchvision, so the state dict keys are ``features.N.weight``.
    """

    def __init__(self, layers: Mapping[str, float] | Iterable[str] | str, convention: Convention) -> None:
        super().__init__()
        names = _vgg_layers(layers)
        if not names:
            raise SrganError("no VGG19 layer requested; " + _SPEC_HELP)
        self.layers = tuple(names)
        self.convention = Convention(convention)
        self._wanted = {VGG19_LAYERS.index(n): n for n in names}
        depth = max(self._wanted) + 1
        # Each max-pool before the deepest layer halves the map; below 1 px the pool fails.
        self.min_size = 2 ** sum(name.startswith("pool") for name in VGG19_LAYERS[:depth])
        modules: list[nn.Module] = []
        for i in range(depth):
            kind = VGG19_LAYERS[i][:4]
            if kind == "conv":
                out_ch, in_ch = _CONV_SHAPES[i]
                modules.append(nn.Conv2d(in_ch, out_ch, 3, padding=1))
            elif kind == "relu":
                # In place saves memory, except where the conv before it is itself an output.
                modules.append(nn.ReLU(inplace=(i - 1) not in self._wanted))
            else:
                modules.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*modules)
        scale, shift = self.convention.affine()
        self.register_buffer("scale", torch.tensor(scale).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("shift", torch.tensor(shift).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatures:
        # Frozen: a parent's .train() never changes it (it has no BN or dropout, but stay exact).
        return super().train(False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] -> the network's input convention."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGGFeatures expects (N, 3, H, W) RGB, got shape {tuple(x.shape)}")
        if self.convention.bgr:
            x = x.flip(1)
        return x * self.scale + self.shift

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if min(x.shape[-2:]) < self.min_size:
            deepest = self._wanted[max(self._wanted)]
            raise SrganError(
                f"VGG19 layer {deepest} needs images of at least {self.min_size} px per side, got "
                f"{tuple(x.shape[-2:])}; use larger patches or a shallower content layer"
            )
        device_type = x.device.type
        bf16 = active_autocast_dtype(device_type) == torch.bfloat16
        with autocast(device_type, enabled=bf16):
            x = self.preprocess(x.to(self.scale.dtype))
            out: dict[str, torch.Tensor] = {}
            for i, module in enumerate(self.features):
                x = module(x)
                if i in self._wanted:
                    out[self._wanted[i]] = x
        return {name: out[name] for name in self.layers}


# ---------------------------------------------------------------------------------------------
# Loading and saving VGG19 weights

_OFFLINE_HELP = "pass --vgg-weights FILE.safetensors or connect to download torchvision's ImageNet VGG19"


def _expected_keys() -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {}
    for i, (out_ch, in_ch) in _CONV_SHAPES.items():
        keys[f"{i}.weight"] = (out_ch, in_ch, 3, 3)
        keys[f"{i}.bias"] = (out_ch,)
    return keys


def _canonical_state(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Strict check of a full VGG19 ``features`` state dict; keys may carry a ``features.`` prefix."""
    from .weights import check_state_dict

    clean = {(k[len("features.") :] if k.startswith("features.") else k): v for k, v in state.items()}
    hint = "; expected torchvision's vgg19().features layout (keys N.weight/N.bias for the 16 convs)"
    check_state_dict(clean, _expected_keys(), source, "not a VGG19 features state dict", hint)
    return clean


def _build(state: dict[str, torch.Tensor], layers, convention: Convention, device) -> VGGFeatures:
    module = VGGFeatures(layers, convention)
    own = module.features.state_dict()
    module.features.load_state_dict({k: state[k].float() for k in own}, strict=True)
    return module.to(device)


def load_vgg19(
    weights: str | Path | None,
    layers: Mapping[str, float] | Iterable[str] | str = ("relu5_4",),
    device: str | torch.device = "cpu",
) -> VGGFeatures:
    """A frozen :class:`VGGFeatures` for ``layers``.

    ``weights`` is a safetensors file in torchvision's ``vgg19().features`` layout whose
    ``preprocess`` metadata names its input convention (loaded strictly, never unpickled), or
    None for torchvision's ``VGG19_Weights.IMAGENET1K_V1`` (downloaded once into torch's cache).
    """
    if weights is None:
        state = _canonical_state(_torchvision_state(), "torchvision's VGG19_Weights.IMAGENET1K_V1")
        return _build(state, layers, Convention.TORCHVISION, device)
    path = Path(weights)
    if not path.is_file():
        raise SrganError(f"VGG weights file {path} not found; {_OFFLINE_HELP}")
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    from .weights import st_path

    try:
        with st_path(path) as name, safe_open(name, framework="pt") as fh:
            meta = fh.metadata()
            state = load_file(name)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        reason = " ".join(str(exc).split())[:120]
        raise SrganError(
            f"{path} is not a readable safetensors file ({reason}); pickled checkpoints are refused, "
            "convert it with srgan_cli.losses.save_vgg19_features"
        ) from None
    convention = convention_from_metadata(meta, str(path))
    return _build(_canonical_state(state, str(path)), layers, convention, device)


def _torchvision_state() -> dict[str, torch.Tensor]:
    """torchvision's official ImageNet VGG19 ``features`` weights (download on first use)."""
    from torchvision.models import VGG19_Weights

    try:
        state = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # any network, proxy, disk or hash failure means the same to the user
        reason = " ".join(str(exc).split())[:120] or type(exc).__name__
        raise SrganError(f"no VGG19 weights: {_OFFLINE_HELP} ({reason})") from None
    return {k: v for k, v in state.items() if k.startswith("features.")}


def save_vgg19_features(
    module_or_state: nn.Module | Mapping[str, torch.Tensor],
    path: str | Path,
    convention: Convention | str,
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write a full VGG19 ``features`` (a torchvision VGG, its ``features``, a complete
    :class:`VGGFeatures` or a state dict) as a safetensors file that :func:`load_vgg19` reads.
    """
    from .weights import serialize_stable

    convention = Convention(convention)
    if isinstance(module_or_state, nn.Module):
        module = getattr(module_or_state, "features", module_or_state)
        state = module.state_dict()
    else:
        state = dict(module_or_state)
    state = _canonical_state(state, "the VGG19 to save")
    tensors = {k: state[k].detach().to("cpu", dtype or state[k].dtype).contiguous() for k in _expected_keys()}
    meta = {
        "format": "vgg19-features",
        "layout": "torchvision.models.vgg19().features state_dict (conv indices 0..34)",
        "preprocess": convention.describe(),
        **dict(metadata or {}),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(serialize_stable(tensors, meta))
    return path


# ---------------------------------------------------------------------------------------------
# Content, pixel and TV losses


def pixel_loss(sr: torch.Tensor, hr: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Mean squared (``mse``) or absolute (``l1``) difference, computed in fp32."""
    if kind == "mse":
        return F.mse_loss(sr.float(), hr.float())
    if kind == "l1":
        return F.l1_loss(sr.float(), hr.float())
    raise ValueError(f"unknown pixel loss {kind!r}; expected mse or l1")


def grid_loss(sr: torch.Tensor, hr: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """RMS of the mean error at each of the ``scale`` x ``scale`` pixel phases, per channel.

    The mean of SR - HR over the batch and over every ``scale`` x ``scale`` cell, at each of the
    ``scale**2`` positions in the cell: the regular grid an upsampler can lay over its output
    (plus any colour offset, the part common to all positions). Real texture is not locked to the
    pixel grid of random crops, so it averages out of these means; a fixed grid does not. An RMS,
    not a mean square: its pull does not fade as the grid shrinks. Computed in fp32; the crops
    must start on the LR pixel grid, as the trainer's do.
    """
    err = sr.float() - hr.float()
    h, w = (err.shape[-2] // scale) * scale, (err.shape[-1] // scale) * scale
    if h == 0 or w == 0:
        raise ValueError(f"grid loss: images of {tuple(err.shape[-2:])} px are smaller than one {scale} px cell")
    cells = err[..., :h, :w].reshape(*err.shape[:-2], h // scale, scale, w // scale, scale)
    phase = cells.mean(dim=(0, -4, -2))  # (channels, scale, scale)
    return phase.pow(2).mean().add(1e-12).sqrt()


def local_grid_loss(sr: torch.Tensor, hr: torch.Tensor, scale: int = 4, window: int = 64) -> torch.Tensor:
    """RMS of the grid pattern of SR - HR within each ``window`` x ``window`` px square of each image.

    :func:`grid_loss` averages the error at each pixel phase over the whole batch, so a grid
    whose phase differs from one image or region to the next cancels out of it; here the mean
    is taken per square (the squares that fit, from the top-left corner; an image smaller than
    ``window`` is one square of whole cells), less the square's mean over the ``scale**2``
    phases, so a brightness offset does not count. Per channel, fp32; crops must start on the
    LR pixel grid. The photo's own detail leaves a floor (about 0.9 gray levels RMS for
    ``srresnet_x4`` on Set14 with 64 px squares): the loss pulls the regular part of the output
    towards HR's within each square, which an invented lattice moves away from.
    """
    if window < scale or window % scale:
        raise ValueError(f"local grid loss: the window must be a multiple of {scale} px, got {window}")
    err = sr.float() - hr.float()
    wh = min(window, (err.shape[-2] // scale) * scale)
    ww = min(window, (err.shape[-1] // scale) * scale)
    if wh == 0 or ww == 0:
        raise ValueError(f"local grid loss: images of {tuple(err.shape[-2:])} px are smaller than one {scale} px cell")
    h, w = (err.shape[-2] // wh) * wh, (err.shape[-1] // ww) * ww
    cells = err[..., :h, :w].reshape(*err.shape[:-2], h // wh, wh // scale, scale, w // ww, ww // scale, scale)
    phase = cells.mean(dim=(-5, -2))  # (..., squares down, scale, squares across, scale)
    phase = phase - phase.mean(dim=(-3, -1), keepdim=True)
    return phase.pow(2).mean().add(1e-12).sqrt()


def phase_steps(x: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """The mean absolute step between neighbouring pixels at each pixel phase: shape (2 * scale,).

    Entry k (k < scale) is the mean of |x[..., j + 1] - x[..., j]| over every j with j mod scale
    = k, over rows, channels and the batch; entry scale + k the same down the columns. Step k =
    scale - 1 crosses from one LR pixel's cell to the next. A photo's steps are the same at
    every phase (its content is not aligned with the pixel grid of a random crop); an upsampler
    that draws each LR pixel as a little block has larger steps where the cells meet, and one
    that smears inside cells smaller ones there, whatever the sign of the step. fp32.
    """
    x = x.float()
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs()
    if dx.shape[-1] < scale or dy.shape[-2] < scale:
        raise ValueError(f"phase steps: images of {tuple(x.shape[-2:])} px are narrower than {scale + 1} px")
    across = [dx[..., k::scale].mean() for k in range(scale)]
    down = [dy[..., k::scale, :].mean() for k in range(scale)]
    return torch.stack(across + down)


def block_loss(sr: torch.Tensor, hr: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """RMS of how unevenly SR's steps fall on the pixel phases, beyond HR's: against blockiness.

    With s = :func:`phase_steps` of SR less that of HR (HR's own unevenness in this batch, so
    that content which happens to fall on one phase does not count), the RMS over the two
    directions' phases of s less its mean in that direction. Zero when SR's steps are as even
    over the phases as HR's, whatever their size: it does not ask for sharper or softer output,
    only that no phase of the x4 grid stand out. Unlike :func:`grid_loss` it sees a block
    pattern whose sign changes from place to place (steps up on one edge of a cell, down on
    the next), the faint squares a GAN-stage model can lay over skin. fp32; crops must start on
    the LR pixel grid.
    """
    s = (phase_steps(sr, scale) - phase_steps(hr, scale)).view(2, scale)
    return (s - s.mean(dim=1, keepdim=True)).pow(2).mean().add(1e-12).sqrt()


def _window_power(x: torch.Tensor, window: int, smooth: int) -> torch.Tensor:
    """Power spectrum of each ``window`` x ``window`` px square of ``x`` (those that fit, from
    the top-left corner): the square less its mean, times a 2-D (periodic) Hann window, |FFT|^2
    scaled so that the bins sum to the window-weighted variance, then averaged over ``smooth`` x
    ``smooth`` neighbouring bins (circularly). Shape (..., squares down, squares across, window,
    window)."""
    x = x.float()
    h, w = (x.shape[-2] // window) * window, (x.shape[-1] // window) * window
    x = x[..., :h, :w].unflatten(-2, (h // window, window)).unflatten(-1, (w // window, window)).movedim(-3, -2)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    hann = torch.hann_window(window, periodic=True, dtype=x.dtype, device=x.device)
    hann = hann[:, None] * hann[None, :]
    power = torch.fft.fft2(x * hann).abs().pow(2) / (window * window * hann.pow(2).sum())
    if smooth > 1:
        k = smooth // 2
        flat = F.pad(power.reshape(-1, 1, window, window), (k, k, k, k), mode="circular")
        power = F.avg_pool2d(flat, smooth, stride=1).view(power.shape)
    return power


def spectral_loss(
    sr: torch.Tensor,
    hr: torch.Tensor,
    window: int = 32,
    low: float = 0.125,
    margin: float = 2.0,
    smooth: int = 3,
    floor: float = 0.1,
) -> torch.Tensor:
    """RMS of the fine detail SR has beyond HR's, frequency by frequency, per ``window`` px square.

    For each square of each image and channel, SR's and HR's power spectra (:func:`_window_power`:
    Hann-windowed, smoothed over ``smooth`` x ``smooth`` bins); at each frequency with a period
    of at most ``1 / low`` px along x or y (0.125: above what the x4 LR holds, all invented by
    the model), the power SR has beyond ``margin`` times HR's; summed over those frequencies, a
    variance; the square root of its mean over squares, images and channels. Zero while SR's
    detail has no more energy than ``margin`` x HR's at any fine frequency, whatever its phase:
    it does not ask for HR's texture pixel for pixel, or for blur. What it sees is a hatch or
    weave a GAN-stage model can lay over painted and smooth surfaces: a nearly periodic pattern
    (periods of 2-3 px) whose energy sits in a few frequencies where HR has little, and whose
    phase changes from place to place, so that none of the grid losses see it.

    A ceiling alone is met most cheaply by blur: a model taught with it softened every edge and
    lost about 1 dB (``docs/TRAINING_NOTES.md``). So each square also counts the fine-detail energy
    SR falls short of ``floor`` x HR's (summed over the same frequencies; 0 = off): most of
    HR's detail is free to lose, as a PSNR model does, not all of it. An image smaller than
    ``window`` is one square of its shorter side. fp32.
    """
    if not 0 <= low <= 0.5 or margin < 0 or floor < 0 or smooth < 1 or smooth % 2 == 0:
        raise ValueError(
            "spectral loss: need 0 <= low <= 0.5, margin >= 0, floor >= 0 and odd smooth, "
            f"got {low}, {margin}, {floor}, {smooth}"
        )
    window = min(window, *sr.shape[-2:])  # an image smaller than the window is one square
    if window < 4:
        raise ValueError(
            f"spectral loss: need squares of at least 4 px, got {window} (images of {tuple(sr.shape[-2:])} px)"
        )
    f = torch.fft.fftfreq(window, device=sr.device).abs()
    band = (torch.maximum(f[:, None], f[None, :]) >= low - 1e-9).float()
    p_sr, p_hr = _window_power(sr, window, smooth) * band, _window_power(hr, window, smooth) * band
    cost = (p_sr - margin * p_hr).clamp_min(0).sum(dim=(-2, -1))  # beyond the ceiling, per square
    if floor:  # short of the floor, per square
        cost = cost + (floor * p_hr.sum(dim=(-2, -1)) - p_sr.sum(dim=(-2, -1))).clamp_min(0)
    return cost.mean().add(1e-12).sqrt()


def _box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over the ``window`` x ``window`` neighbourhood of every pixel, reflect-padded."""
    pad = window // 2
    if min(x.shape[-2:]) <= pad:
        raise ValueError(f"images of {tuple(x.shape[-2:])} px are too small for a {window} px window")
    return F.avg_pool2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), window, stride=1)


def artifact_map(sr: torch.Tensor, hr: torch.Tensor, sr_ema: torch.Tensor, window: int = 7) -> torch.Tensor:
    """LDL's artifact map (Liang et al., CVPR 2022, "Details or Artifacts"), one weight per pixel.

    R = |HR - SR| summed over the channels. A pixel's weight is the variance of R over the
    ``window`` x ``window`` neighbourhood around it (unbiased, reflect-padded at the borders)
    times the variance of R over the whole image to the power 1/5, and 0 wherever the EMA
    generator's output is nearer HR than SR is: noise-like error that the averaged model does
    not make is an artifact; detail that it makes as well is not. Computed in fp32 and detached
    (the map says where to pull, not a quantity to be lowered itself).
    """
    if window < 3 or window % 2 == 0:
        raise ValueError(f"artifact map: the window must be odd and at least 3, got {window}")
    with torch.no_grad():
        hr = hr.float()
        res = (hr - sr.float()).abs().sum(dim=1, keepdim=True)
        res_ema = (hr - sr_ema.float()).abs().sum(dim=1, keepdim=True)
        n = window * window
        mean = _box_mean(res, window)
        local = (_box_mean(res * res, window) - mean * mean).clamp_min(0) * (n / (n - 1))
        whole = res.flatten(1).var(dim=1).view(-1, 1, 1, 1).pow(0.2)
        return torch.where(res < res_ema, torch.zeros_like(local), local * whole)


def ldl_loss(sr: torch.Tensor, hr: torch.Tensor, sr_ema: torch.Tensor, window: int = 7) -> torch.Tensor:
    """LDL's artifact loss: the mean of :func:`artifact_map` x |SR - HR| (fp32)."""
    weight = artifact_map(sr, hr, sr_ema, window)
    return (weight * (sr.float() - hr.float())).abs().mean()


def flat_map(hr: torch.Tensor, window: int = 15, low: float = 2.0, high: float = 4.0) -> torch.Tensor:
    """Where HR is flat, one weight per pixel: 1 where the standard deviation of HR's luma over
    the ``window`` x ``window`` neighbourhood is at most ``low`` gray levels (of 255), 0 from
    ``high`` on, linear between. Skin, sky, paper; no edge or texture within ``window // 2`` px.
    Computed in fp32, without gradient; shape (N, 1, H, W)."""
    if window < 3 or window % 2 == 0:
        raise ValueError(f"flat map: the window must be odd and at least 3, got {window}")
    if not 0 <= low < high:
        raise ValueError(f"flat map: need 0 <= low < high, got {low}, {high}")
    with torch.no_grad():
        w = torch.tensor(Y_WEIGHTS, dtype=torch.float32, device=hr.device).view(1, 3, 1, 1)  # BT.601 luma
        y = (hr.float() * w).sum(dim=1, keepdim=True) * 255
        mean = _box_mean(y, window)
        std = (_box_mean(y * y, window) - mean * mean).clamp_min(0).sqrt()
        return ((high - std) / (high - low)).clamp(0, 1)


def flat_loss(sr: torch.Tensor, hr: torch.Tensor, flat_window: int = 15) -> torch.Tensor:
    """L1 of SR - HR where HR is flat: against texture and blotches a model invents on skin and sky.

    Weighted by :func:`flat_map` and averaged over every pixel and channel, so its pull per flat
    pixel is that of an L1 pixel loss of the same weight, and it pulls nowhere else. On flat
    areas there is no detail to invent: the photo's own grain cannot be predicted, so the best
    output there is the smooth one, and any error, fine (a mottle) or coarse (a blotch, a colour
    drift), is an artifact. An L1, so the pull does not fade as the error shrinks. fp32.
    """
    weight = flat_map(hr, flat_window)
    return (weight * (sr.float() - hr.float())).abs().mean()


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Total variation: mean squared difference of vertical plus of horizontal neighbours.

    A mean, so it does not grow with batch or image size. The paper's weight 2e-8 was for a
    sum over a 16 x 3 x 96 x 96 batch; the same strength here is about 2e-8 * 442368 = 8.8e-3.
    """
    x = x.float()
    dh = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean()
    dw = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()
    return dh + dw


SRGAN_FEATURE_SCALE = 1 / 12.75
"""SRGAN's rescaling of (Caffe) VGG feature maps: the VGG MSE lands on the pixel MSE's scale."""


def default_feature_scale(convention: Convention) -> float:
    """1/12.75 (SRGAN) for Caffe weights, 1.0 for torchvision's normalised-input VGG19."""
    return SRGAN_FEATURE_SCALE if Convention(convention) is Convention.CAFFE else 1.0


class ContentLoss(nn.Module):
    """Weighted sum of a pixel term (layer ``pixel``) and VGG feature terms.

    ``forward(sr, hr)`` returns a scalar; images are RGB in [0, 1]. Feature maps are multiplied
    by ``feature_scale`` before the criterion (default: :func:`default_feature_scale` of the
    VGG's convention), so with MSE the loss is scaled by its square. The target's features are
    computed without gradient.

    ``jitter`` > 1 crops both images by the same offset in ``0 .. jitter - 1`` (each direction:
    ``forward``'s ``offset``, else drawn from torch's global generator) before the VGG features;
    the pixel term sees the whole images. Without it VGG's pooling grid (period 16 at conv5_4)
    is always aligned the same way with the generator's x4 pixel grid, and its gradient carries
    one fixed 4x4 pattern; with ``jitter`` = the scale every alignment is seen equally often
    (``benchmarks/vgg_grid.py`` measures the pattern; docs/TRAINING_NOTES.md what removing it does).
    """

    def __init__(
        self,
        vgg: VGGFeatures | None,
        layers: Mapping[str, float] | str,
        criterion: str = "mse",
        feature_scale: float | None = None,
        jitter: int = 0,
    ) -> None:
        super().__init__()
        if criterion not in ("mse", "l1"):
            raise SrganError(f"unknown content-loss criterion {criterion!r}; expected mse or l1")
        self.layers = dict(parse_layers(layers) if isinstance(layers, str) else layers)
        if not self.layers:
            raise SrganError(f"empty content loss; {_SPEC_HELP}")
        self.criterion = criterion
        self.vgg_layers = _vgg_layers(self.layers)
        if self.vgg_layers:
            if vgg is None:
                raise SrganError(f"content loss on {', '.join(self.vgg_layers)} needs VGG19 weights; {_OFFLINE_HELP}")
            absent = [n for n in self.vgg_layers if n not in vgg.layers]
            if absent:
                raise SrganError(f"the VGG feature extractor does not compute {', '.join(absent)}")
        self.vgg = vgg if self.vgg_layers else None
        if feature_scale is None:
            feature_scale = default_feature_scale(vgg.convention) if self.vgg is not None else 1.0
        if not math.isfinite(feature_scale) or feature_scale <= 0:
            raise SrganError(f"feature_scale must be a positive number, got {feature_scale}")
        self.feature_scale = float(feature_scale)
        if int(jitter) != jitter or jitter < 0:
            raise SrganError(f"content-loss jitter must be a whole number >= 0, got {jitter}")
        self.jitter = int(jitter)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor, offset: tuple[int, int] | None = None) -> torch.Tensor:
        if sr.shape != hr.shape:
            raise ValueError(f"content loss: sr {tuple(sr.shape)} and hr {tuple(hr.shape)} differ in shape")
        total = sr.new_zeros((), dtype=torch.float32)
        if PIXEL in self.layers:
            total = total + self.layers[PIXEL] * pixel_loss(sr, hr, self.criterion)
        if self.vgg is not None:
            if self.jitter > 1:
                cut = self.jitter - 1
                if min(sr.shape[-2:]) <= cut:
                    size = tuple(sr.shape[-2:])
                    raise ValueError(f"content loss: images of {size} px are too small to jitter by {cut}")
                if offset is None:
                    offset = (int(torch.randint(self.jitter, ())), int(torch.randint(self.jitter, ())))
                dy, dx = offset
                if not (0 <= dy < self.jitter and 0 <= dx < self.jitter):
                    raise ValueError(f"content loss: offset {offset} outside 0..{cut}")
                h, w = sr.shape[-2] - cut, sr.shape[-1] - cut
                sr, hr = sr[..., dy : dy + h, dx : dx + w], hr[..., dy : dy + h, dx : dx + w]
            sr_feats = self.vgg(sr)
            with torch.no_grad():
                hr_feats = self.vgg(hr.detach())
            s = self.feature_scale
            for name in self.vgg_layers:
                a, b = sr_feats[name].float() * s, hr_feats[name].float() * s
                total = total + self.layers[name] * pixel_loss(a, b, self.criterion)
        return total


def content_loss_from_spec(
    spec: str,
    vgg_weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    criterion: str = "mse",
    feature_scale: float | None = None,
    jitter: int = 0,
) -> ContentLoss:
    """Parse ``spec`` and load VGG19 only if it names a VGG layer (call it before training starts)."""
    layers = parse_layers(spec)
    vgg = load_vgg19(vgg_weights, layers, device) if _vgg_layers(layers) else None
    return ContentLoss(vgg, layers, criterion, feature_scale, jitter).to(device)


# ---------------------------------------------------------------------------------------------
# GAN losses (on the discriminator's logits; BCE-with-logits is stable for any logit size)

GAN_KINDS = ("standard", "relativistic")


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    logits = logits.float()
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _check_kind(kind: str) -> None:
    if kind not in GAN_KINDS:
        raise SrganError(f"unknown GAN loss {kind!r}; expected one of {', '.join(GAN_KINDS)}")


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "standard") -> torch.Tensor:
    """The discriminator's loss (pass ``fake_logits`` of a detached generator output).

    ``standard`` (SRGAN): -E[log D(x_r)] - E[log(1 - D(x_f))], D = sigmoid(C).
    ``relativistic`` (ESRGAN): -E[log D_Ra(x_r, x_f)] - E[log(1 - D_Ra(x_f, x_r))], with
    D_Ra(a, b) = sigmoid(C(a) - mean C(b)).
    """
    _check_kind(kind)
    if kind == "standard":
        return _bce(real_logits, 1.0) + _bce(fake_logits, 0.0)
    real, fake = real_logits.float(), fake_logits.float()
    return _bce(real - fake.mean(), 1.0) + _bce(fake - real.mean(), 0.0)


def g_adv_loss(real_logits: torch.Tensor | None, fake_logits: torch.Tensor, kind: str = "standard") -> torch.Tensor:
    """The generator's adversarial loss (a mean over the batch).

    ``standard`` (SRGAN, non-saturating): -E[log D(G(x))]; ``real_logits`` is not used and may
    be None. ``relativistic`` (ESRGAN): -E[log(1 - D_Ra(x_r, x_f))] - E[log D_Ra(x_f, x_r)];
    pass ``real_logits`` detached (D's output on the HR batch).
    """
    _check_kind(kind)
    if kind == "standard":
        return _bce(fake_logits, 1.0)
    if real_logits is None:
        raise ValueError("the relativistic generator loss needs the discriminator's logits on real images")
    real, fake = real_logits.float(), fake_logits.float()
    return _bce(real - fake.mean(), 0.0) + _bce(fake - real.mean(), 1.0)
