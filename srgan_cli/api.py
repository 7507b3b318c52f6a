"""The Python API: load a model, upscale an image. The CLI is a thin layer over this.

Inference contract: float RGB in [0, 1] in (clamped to [0, 1]; NaN or infinity is an error;
uint8 and uint16 pixels are read as value / 255 and value / 65535; other integer, bool and
complex dtypes are refused); float32 RGB in [0, 1] (clamped) out, ``scale`` times larger;
run under ``torch.inference_mode()``; tiled when the image is large (the tiled result
equals the whole-image one, see :mod:`srgan_cli.tiling`); an image under 8 px across runs
padded with its edge pixels; under ``precision="auto"`` 16-bit input runs in fp32. On the CPU
the same input gives the same output bit for bit.
"""

from __future__ import annotations

import copy
import dataclasses
import fractions
import math
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import MAX_OUTSCALE, GeneratorConfig
from .device import PRECISIONS, autocast, choose_device, choose_dtype
from .errors import SrganError, SrganWarning, exact_number
from .models import fold_batch_norm
from .tiling import MIN_TILE, choose_tile, default_batch, default_pad, upscale_tiled
from .weights import DEFAULT_MODEL, MODELS, load_generator

# Architectures for which ``precision="auto"`` may pick bf16 on the CPU: those whose bf16 output
# was measured within 0.5 gray levels RMS of fp32 on photos (benchmarks/README.md). Deep RRDB
# trunks may drift further, so they stay fp32 until measured.
_CPU_BF16_ARCHS = ("srresnet",)

# ITU-R BT.601 luma, for feeding a one-channel generator from RGB.
_LUMA = (0.299, 0.587, 0.114)


# Integer pixel dtypes that are read as a fraction of their full scale; others are refused.
_TWIN_LOCK = threading.Lock()  # Model._as_fp32: the fp32 twin is made once
_INT_PIXEL_SCALE = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
_TENSOR_INT_PIXEL_SCALE = {torch.uint8: 255.0}
if hasattr(torch, "uint16"):  # torch >= 2.3
    _TENSOR_INT_PIXEL_SCALE[torch.uint16] = 65535.0


def _describe(value: object) -> str:
    """``value``'s type for an error message: ``str 'x'``, ``numpy.ndarray``, ``PIL.Image.Image``."""
    kind = type(value)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    name = name.replace("torch._tensor.", "torch.").replace("numpy.core.", "numpy.")
    if isinstance(value, (str, int, float, torch.dtype)) and len(repr(value)) <= 40:
        return f"{name} {value!r}"
    return name


def _check_model(model: object, where: str) -> None:
    if isinstance(model, Model):
        return
    hint = f"; load it first with load_model({str(model)!r})" if isinstance(model, (str, os.PathLike)) else ""
    raise TypeError(f"{where} takes a Model (from load_model) as its first argument, got {_describe(model)}{hint}")


def _check_int(name: str, value: object, minimum: int, rule: str) -> int | None:
    """``value`` as an int (None stays None); TypeError unless an integer (bool is not),
    SrganError (``name`` ``rule``) when below ``minimum``."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int or None, got {_describe(value)}")
    if value < minimum:
        raise SrganError(f"{name} must be {rule}, got {value}")
    return int(value)


def _check_outscale(outscale: object) -> float | None:
    """``outscale`` as a float (None stays None): a finite number in (0, MAX_OUTSCALE]."""
    if outscale is None:
        return None
    if isinstance(outscale, (bool, np.bool_)) or not isinstance(outscale, (int, float, np.integer, np.floating)):
        raise TypeError(f"outscale must be a number or None, got {_describe(outscale)}")
    value = float(outscale)
    if not (math.isfinite(value) and 0 < value <= MAX_OUTSCALE):
        raise SrganError(f"outscale must be a finite number in (0, {MAX_OUTSCALE:g}], got {outscale}")
    return value


# Float pixels run from 0 to 1; a little past that (a filter's overshoot, HDR highlights) is clipped,
# but data reaching this is on another scale: 0-255 floats came out nearly all white, in silence.
_FLOAT_PIXEL_MOST = 2.0


def _float_range_error(top: float, what: str) -> SrganError:
    return SrganError(
        f"the image {what} reaches {top:g}: float pixels run from 0 to 1 (divide 0-255 data by 255, or pass uint8)"
    )


def _array_pixels(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) pixels as C-contiguous float32 in [0, 1]: uint8 / 255, uint16 / 65535, floats
    clamped; NaN or infinity is an error, as are floats above 2 (0-255 data), other dtypes are refused."""
    scale = _INT_PIXEL_SCALE.get(rgb.dtype.newbyteorder("="))
    if scale is not None:
        return np.ascontiguousarray(rgb, dtype=np.float32) / np.float32(scale)
    if rgb.dtype.kind != "f":
        raise TypeError(
            f"cannot upscale an array of dtype {rgb.dtype}: expected float pixels in [0, 1], uint8 or uint16"
        )
    if not np.isfinite(rgb).all():
        raise SrganError("the image array contains NaN or infinity")
    if rgb.size and (top := float(rgb.max())) > _FLOAT_PIXEL_MOST:
        raise _float_range_error(top, "array")
    return np.ascontiguousarray(np.clip(rgb, 0, 1), dtype=np.float32)


def _tensor_pixels(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float in [0, 1] like :func:`_array_pixels`: uint8 / 255, uint16 / 65535, floats
    clamped; NaN or infinity is an error, other dtypes are refused."""
    if x.is_meta or x.layout != torch.strided:  # no pixels to read: torch's own errors said little
        what = "on the meta device" if x.is_meta else f"of layout {x.layout}"
        raise TypeError(f"cannot upscale a tensor {what}: pass a dense tensor of pixels")
    scale = _TENSOR_INT_PIXEL_SCALE.get(x.dtype)
    if scale is not None:
        return x.detach().to(torch.float32) / scale
    if x.dtype not in _PIXEL_FLOAT_DTYPES:
        raise TypeError(
            f"cannot upscale a tensor of dtype {x.dtype}: expected float16, bfloat16, float32 or float64 pixels "
            "in [0, 1], uint8 or uint16"
        )
    if not torch.isfinite(x).all():
        raise SrganError("the image tensor contains NaN or infinity")
    if x.numel() and (top := float(x.detach().max())) > _FLOAT_PIXEL_MOST:
        raise _float_range_error(top, "tensor")
    return x.detach().clamp(0, 1)


_PIXEL_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_flag(name: str, value: object) -> bool:
    """``value`` as a bool; TypeError for anything else ("no" was taken as true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {_describe(value)}")
    return bool(value)


@dataclass
class Model:
    """A generator ready for inference: module (eval mode, on ``device`` in ``dtype``),
    its config, its provenance, and notes about choices made while loading (e.g. fp16 -> fp32)."""

    module: torch.nn.Module
    config: GeneratorConfig
    name: str
    metadata: dict[str, str] = field(default_factory=dict)
    dtype: torch.dtype = torch.float32
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    notes: list[str] = field(default_factory=list)
    channels_last: bool = False
    ensemble: bool = False  # geometric self-ensemble: the mean over the 8 flips and rotations
    sha256: str = ""  # of the weights file; a blend: "A+B@alpha" of the two files' sha256
    # ``dtype`` was chosen by ``precision="auto"``: images of more than 8 bits then run in fp32
    # (bf16 keeps about 8 significant bits, fp16 about 11), see ``upscale_array``.
    auto_precision: bool = False
    # Builds this model's module again in a given dtype from the fp32 weights kept at load; None: cast a copy.
    _reload: Callable[[torch.dtype], torch.nn.Module] | None = field(default=None, repr=False, compare=False)
    _fp32: Model | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # a Model built by hand: a module in train mode used its BatchNorm's batch statistics (the
        # output changed with the tile size), and one whose weights are not in ``dtype`` failed deep in torch
        if not isinstance(self.module, torch.nn.Module):
            raise TypeError(f"Model's module must be a torch.nn.Module, got {_describe(self.module)}")
        self.module.eval()
        first = next(iter(self.module.parameters()), None)
        if first is not None and first.dtype != self.dtype:
            raise SrganError(
                f"the module's weights are {str(first.dtype).removeprefix('torch.')}, but the Model's dtype is "
                f"{str(self.dtype).removeprefix('torch.')}: pass dtype={first.dtype}"
            )

    @property
    def scale(self) -> int:
        return self.config.scale

    def _as_fp32(self, on_note: Callable[[str], None] | None = None) -> Model:
        """This model computing in fp32: itself when it does, else an fp32 twin made on first use
        (from the fp32 weights kept on the CPU at load, so it equals ``load_model(precision="fp32")``)
        and kept, so a model that never meets a high-bit-depth image never holds a second module.
        ``on_note`` hears once why the twin was made, when it is for ``precision="auto"``."""
        if self.dtype == torch.float32:
            return self
        with _TWIN_LOCK:  # threads sharing the model: one twin and one note, not one per thread
            if self._fp32 is None:
                if self._reload is not None:
                    module = self._reload(torch.float32)
                else:  # a Model built by hand: the weights it holds, in fp32
                    module = copy.deepcopy(self.module).to(torch.float32)
                self._fp32 = dataclasses.replace(self, module=module, dtype=torch.float32, auto_precision=False)
                if self.auto_precision and on_note is not None:
                    short, kept = ("bf16", 8) if self.dtype == torch.bfloat16 else ("fp16", 11)
                    on_note(
                        f"16-bit images run in fp32, 8-bit ones in {short}: {short} keeps only about {kept} bits "
                        f"of each pixel (--precision {short} or fp32 to run all in one)"
                    )
        return self._fp32

    @property
    def tile_pad(self) -> int:
        """The default tile pad: the receptive-field radius, so tiling is exact."""
        return default_pad(self.config)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network on a batch (N, C, h, w) from any device; returns the raw output on ``device``."""
        x = x.to(self.device, self.dtype, non_blocking=True)
        # a caller's torch.autocast would run an fp32 model in bf16: the model's precision is its own
        with autocast(self.device.type, enabled=False):
            return self._run(x)

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if not self.ensemble:
            return self.module(self._layout(x))
        # Self-ensemble ("EDSR+", Lim et al. 2017): run the 8 dihedral transforms of the
        # batch, undo each on its output and average in float32. Each transform is a network
        # with rotated kernels, so the receptive field and the exact tiling stay the same.
        total = None
        for k in range(8):
            y = _undo_dihedral(self.module(self._layout(_dihedral(x, k))), k).float()
            total = y if total is None else total.add_(y)
        return total.div_(8)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)


def _dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Transform k (0..7) of the square's symmetry group on the last two dims: mirror left-right
    if k >= 4, then k % 4 quarter turns. 0 is the identity."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


def _undo_dihedral(y: torch.Tensor, k: int) -> torch.Tensor:
    y = torch.rot90(y, -(k % 4), dims=(-2, -1))
    return y.flip(-1) if k >= 4 else y


def _resolve_and_load(
    name_or_path: str | Path,
) -> tuple[Path, str, torch.nn.Module, GeneratorConfig, dict[str, str]]:
    """Weights file for a model name, local path or Hub reference, its sha256, and the generator
    built from it (on the CPU), all of one version of the file (see ``weights.stable_read``)."""
    from .hub import resolve_weights, weights_sha256  # lazy: huggingface_hub is imported only when needed
    from .weights import stable_read

    path = resolve_weights(name_or_path)

    def read():
        sha256 = weights_sha256(name_or_path, path)
        return (sha256, *_load_generator(path))

    return (path, *stable_read(path, read))


def load_model(
    name_or_path: str | Path = DEFAULT_MODEL,
    device: str | torch.device = "auto",
    precision: str = "auto",
    *,
    blend: str | None = None,
    channels_last: bool | None = None,
    ensemble: bool = False,
) -> Model:
    """Load a named model, a local ``.safetensors`` file, or a Hub reference (``owner/repo``).

    ``precision``: ``auto`` (fp16 on GPUs; on the CPU bf16 for SRResNet generators where the
    CPU runs bf16 natively (AMX or AVX512-BF16), else fp32), ``fp32``, ``fp16`` or ``bf16``;
    when the device cannot run the request, ``Model.notes`` says what was used instead.
    BatchNorm is folded into the convolutions before the cast (same function, faster, and more
    accurate in bf16).
    ``blend="B:0.8"`` mixes in a second generator (``0.8`` of B, ``0.2`` of this one), as
    ``srgan interpolate`` does. ``channels_last`` (default: on the CPU) picks the NHWC
    memory layout, which oneDNN runs faster for these convolutions. ``ensemble`` averages
    the outputs of the 8 flips and rotations of the input (8x the time; 0.06-0.20 dB more
    PSNR for ``srresnet_x4`` on the benchmark sets, see the README).
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"load_model takes a model name or a weights path, got {_describe(name_or_path)}")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string (auto, cpu, cuda:N, mps) or a torch.device, got {_describe(device)}")
    if precision is not None and not isinstance(precision, str):
        raise TypeError(f"precision must be one of the strings {', '.join(PRECISIONS)}, got {_describe(precision)}")
    if blend is not None and not isinstance(blend, str):
        raise TypeError(f"blend must be a string 'MODEL:ALPHA' or None, got {_describe(blend)}")
    ensemble = _check_flag("ensemble", ensemble)
    if channels_last is not None:
        channels_last = _check_flag("channels_last", channels_last)
    # a torch.device is checked as its name is (torch.device("cuda") without CUDA, "meta"): it was
    # taken as it came, and failed later with a RuntimeError of many lines
    dev = choose_device(str(device))
    path, sha256, module, config, meta = _resolve_and_load(name_or_path)
    dtype, note = choose_dtype(precision, dev, cpu_bf16=config.arch in _CPU_BF16_ARCHS)
    notes = [note] if note else []
    name = _display_name(name_or_path, path)
    if config.in_channels == 1:  # it sees the luma only: colour photos came out gray without a word
        notes.append(f"{name} is a single-channel (gray) model: colour images come out gray")
    if blend:
        from .interpolate import blend_generators, config_difference, parse_blend

        ref, alpha = parse_blend(blend)
        other_path, other_sha256, other, other_config, other_meta = _resolve_and_load(ref)
        if other_config != config:
            diff = config_difference(other_meta, meta)  # as srgan interpolate names it
            raise SrganError(
                f"--blend {blend}: {other_path} has another architecture than {path} ({diff}); cannot blend"
            )
        module = blend_generators(module, other, alpha)
        name = f"{name}+{_display_name(ref, other_path)}@{exact_number(alpha)}"
        sha256 = f"{sha256}+{other_sha256}@{exact_number(alpha)}"
    if channels_last is None:
        channels_last = dev.type == "cpu"

    def ready(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
        module = fold_batch_norm(module.eval()).to(dev, dtype)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        for p in module.parameters():
            p.requires_grad_(False)
        return module

    # The fp32 weights as read (blended), kept on the CPU where the module computes in less (6 MB for
    # SRResNet): the fp32 twin for 16-bit images was read again from the file, and failed once it was
    # gone, replaced (a live run's generator.safetensors) or named relative to another folder (chdir).
    kept = copy.deepcopy(module) if dtype != torch.float32 else None

    def reload(dtype: torch.dtype) -> torch.nn.Module:
        """The module built again from the weights it was loaded from, in ``dtype``."""
        return ready(copy.deepcopy(kept if kept is not None else module), dtype)

    module = ready(module, dtype)
    if ensemble and meta.get("stage") == "gan":
        notes.append(f"{name} is a GAN model: the ensemble's mean of 8 passes smooths part of its texture")
    auto = (precision or "auto").lower() == "auto"
    return Model(module, config, name, dict(meta), dtype, dev, notes, channels_last, ensemble, sha256, auto, reload)


def _load_generator(path: Path) -> tuple[torch.nn.Module, GeneratorConfig, dict[str, str]]:
    """``load_generator(path, "cpu")`` leaving torch's global random state as it was: building the
    module draws its first weights from it (the file's then replace them), which moved a caller's
    ``torch.manual_seed`` stream on. The CPU's state is saved and put back (5 KB, microseconds)."""
    with torch.random.fork_rng(devices=[]):
        return load_generator(path, "cpu")


def _display_name(name_or_path: str | Path, path: Path) -> str:
    text = str(name_or_path)
    return text if text in MODELS or not os.path.isfile(os.path.expanduser(text)) else path.stem


def _to_model_channels(model: Model, x: torch.Tensor) -> torch.Tensor:
    if model.config.in_channels == 1 and x.shape[1] == 3:
        weights = torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)
    return x


def _check_tile(tile: object) -> int | None:
    """``tile`` as an int or None: 0 (the whole image) or at least ``MIN_TILE``, as ``--tile`` takes it.
    Each tile runs with the pad's overlap on every side: a 16 px crop took 2.2 s in 1 px tiles, 0.08 s whole."""
    tile = _check_int("tile", tile, 0, f"0 (the whole image) or at least {MIN_TILE}")
    if tile and tile < MIN_TILE:
        raise SrganError(f"tile must be 0 (the whole image) or at least {MIN_TILE}, got {tile}")
    return tile


def _check_options(tile: object, tile_pad: object, batch: object, progress: object, on_note: object):
    """The tiling options checked: (tile, tile_pad, batch) as ints or None."""
    tile = _check_tile(tile)
    tile_pad = _check_int("tile_pad", tile_pad, 0, "0 or positive")
    batch = _check_int("batch", batch, 1, "at least 1")
    for name, value in (("progress", progress), ("on_note", on_note)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be a callable or None, got {_describe(value)}")
    return tile, tile_pad, batch


def _tiling_input(
    model: Model, x: torch.Tensor, tile: int | None, tile_pad: int | None, batch: int | None
) -> tuple[torch.Tensor, int, int, int, tuple[int, int, int, int] | None]:
    """Check a (1, 1|3, H, W) float input in [0, 1]; return it as the model's input channels, the
    tile, the pad, the tiles per forward (``batch``; None: ``tiling.default_batch`` of the device)
    and, for an image narrower than ``MIN_SIDE`` (then padded, see :func:`_pad_small`), the part
    of the output to keep: (top, left, height, width) in output pixels."""
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3):
        raise SrganError(f"expected a (1, 3, H, W) image tensor, got shape {tuple(x.shape)}")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise SrganError(f"cannot upscale an empty image ({x.shape[3]}x{x.shape[2]})")
    x = x.detach().to("cpu", torch.float32)
    if x.shape[1] == 1:
        x = x.expand(1, 3, *x.shape[2:])
    x, keep = _pad_small(_to_model_channels(model, x), model.scale)
    _, _, h, w = x.shape
    batch = default_batch(model.device) if batch is None else batch
    if tile is None:
        tile = choose_tile(model.config, model.device, h, w, batch=batch, dtype=model.dtype)
    return x, tile, model.tile_pad if tile_pad is None else tile_pad, batch, keep


# Images narrower or shorter than this (LR pixels) run padded to it by repeating their edge pixels.
# The convolutions zero-pad at the border: on a 1 px image that zero margin outweighs the pixel
# (a 1x1 (200, 100, 50) came out as a 4x4 block of mean (23, 23, 12); a 64x1 strip lost a quarter
# of its brightness). Measured with the bundled models on photo crops, the output's mean colour
# is off by 6-14 levels at 2 px, 2-6 at 3 px, up to 2.4 at 4 px, and from 8 px on no more than on
# large images (0.4 srresnet_x4, 1.0 srgan_x4). Larger images are never padded: their output stays
# exactly what the network gives. The zero margin still tints the outer ~10 output px of saturated
# flat colours (pure green by up to 69 levels at a corner with srresnet_x4), but padding every image
# by repeating its edges cost 0.09-0.13 dB of Y-PSNR on Set5 and Set14 (31.66 to 31.53 dB, 28.25 to
# 28.17): the bundled networks learnt their borders with zero padding.
MIN_SIDE = 8


def _pad_small(x: torch.Tensor, scale: int) -> tuple[torch.Tensor, tuple[int, int, int, int] | None]:
    """``x`` (1, C, H, W) with each side under ``MIN_SIDE`` grown to it by edge replication (as
    evenly as possible on both ends), and the output region of the original image: (top, left,
    height, width) in output pixels; (x, None) when no side is under ``MIN_SIDE``."""
    _, _, h, w = x.shape
    if h >= MIN_SIDE and w >= MIN_SIDE:
        return x, None
    grow_h, grow_w = max(0, MIN_SIDE - h), max(0, MIN_SIDE - w)
    top, left = grow_h // 2, grow_w // 2
    x = torch.nn.functional.pad(x, (left, grow_w - left, top, grow_h - top), mode="replicate")
    return x, (top * scale, left * scale, h * scale, w * scale)


def _crop_sink(sink: Callable[[slice, slice, torch.Tensor], None], keep: tuple[int, int, int, int]):
    """A tiling sink for a padded image that passes on only the ``keep`` region, as if unpadded."""
    top, left, height, width = keep

    def cropped(rows: slice, cols: slice, core: torch.Tensor) -> None:
        r0, r1 = max(rows.start, top), min(rows.stop, top + height)
        c0, c1 = max(cols.start, left), min(cols.stop, left + width)
        if r0 < r1 and c0 < c1:
            part = core[:, r0 - rows.start : r1 - rows.start, c0 - cols.start : c1 - cols.start]
            sink(slice(r0 - top, r1 - top), slice(c0 - left, c1 - left), part)

    return cropped


def _source_bits(value_dtype: object, source_bit_depth: object) -> int:
    """The bit depth the pixels carry: ``source_bit_depth`` (8 or 16) when given, else 16 for
    uint16 pixels and 8 for the others (uint8, and floats, which most often come from 8 bits)."""
    if source_bit_depth is not None:
        if isinstance(source_bit_depth, (bool, np.bool_)) or not isinstance(source_bit_depth, (int, np.integer)):
            raise TypeError(f"source_bit_depth must be 8, 16 or None, got {source_bit_depth!r}")
        if source_bit_depth not in (8, 16):
            raise SrganError(f"source_bit_depth must be 8, 16 or None, got {source_bit_depth}")
        return int(source_bit_depth)
    if isinstance(value_dtype, torch.dtype):
        return 16 if value_dtype == getattr(torch, "uint16", None) else 8
    return 16 if np.dtype(value_dtype).newbyteorder("=") == np.uint16 else 8


def _compute_model(model: Model, dtype: torch.dtype | None, bits: int, on_note) -> Model:
    """The model to run: in ``dtype`` when given; in fp32 when the model's dtype was chosen by
    ``precision="auto"`` and the image has ``bits`` > 8 (bf16 keeps about 8 significant bits,
    fp16 about 11: a 16-bit image's smooth gradients came out in 8-bit steps); else the model."""
    if dtype is not None:
        if dtype == model.dtype:
            return model
        if dtype == torch.float32:
            return model._as_fp32()
        module = copy.deepcopy(model.module).to(dtype)
        return dataclasses.replace(model, module=module, dtype=dtype, auto_precision=False, _reload=None)
    if bits > 8 and model.auto_precision:
        return model._as_fp32(on_note)
    return model


def upscale_tensor(
    model: Model,
    x: torch.Tensor,
    *,
    tile: int | None = None,
    tile_pad: int | None = None,
    batch: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    source_bit_depth: int | None = None,
) -> torch.Tensor:
    """Super-resolve ``x`` (1, 3, H, W) float in [0, 1]; returns float32 (1, 3, sH, sW) on the CPU, clamped.

    Float input is clamped to [0, 1]; NaN or infinity raises :class:`SrganError`. A uint8
    tensor is read as value / 255 (uint16 as value / 65535), as :func:`upscale_array` reads
    arrays; other integer, bool and complex tensors raise ``TypeError``, as do meta and sparse
    ones; float values above 2 (0-255 data) raise :class:`SrganError`. The output is a new tensor,
    detached: no gradient flows through the upscale.

    ``tile``: None chooses from the memory at hand, 0 runs the whole image at once, N (at least
    ``tiling.MIN_TILE``, 8, as ``--tile``) uses N x N LR tiles. ``tile_pad`` defaults to the
    receptive-field radius (exact tiling).
    ``batch``: tiles per forward; None is 4 on GPUs and 1 on the CPU (``tiling.default_batch``).
    ``source_bit_depth`` and the precision: as for :func:`upscale_array` (a uint16 tensor, or
    any with ``source_bit_depth=16``, runs in fp32 under ``precision="auto"``).
    A gray (1, 1, H, W) tensor comes back (1, 3, sH, sW) too, gray: each channel the mean of the
    model's three (as :func:`upscale_array` gives a 2-D array), where the model alone tints it.
    """
    _check_model(model, "upscale_tensor")
    if not isinstance(x, torch.Tensor):
        hint = "; use upscale_array for (H, W, 3) arrays" if isinstance(x, np.ndarray) else ""
        raise TypeError(f"upscale_tensor takes a torch.Tensor (1, 3, H, W), got {_describe(x)}{hint}")
    tile, tile_pad, batch = _check_options(tile, tile_pad, batch, progress, on_note)
    model = _compute_model(model, None, _source_bits(x.dtype, source_bit_depth), on_note)
    gray = x.dim() == 4 and x.shape[1] == 1
    x, tile, pad, batch, keep = _tiling_input(model, _tensor_pixels(x), tile, tile_pad, batch)
    with torch.inference_mode():
        y = upscale_tiled(model.forward, x, model.scale, tile, pad, batch, progress=progress, on_note=on_note)
        if keep is not None:
            top, left, height, width = keep
            y = y[:, :, top : top + height, left : left + width].contiguous()
        y = y.clamp_(0, 1)
        if gray and y.shape[1] == 3:  # the mean of the model's channels, in NumPy as upscale_array takes it
            y = torch.from_numpy(y.numpy().mean(axis=1, keepdims=True, dtype=np.float32))
    # made here, outside inference mode: an inference tensor refused in-place changes and autograd
    return y.expand(1, 3, *y.shape[2:]).contiguous() if y.shape[1] == 1 else y.clone()


def upscale_array(
    model: Model,
    rgb: np.ndarray,
    dtype: torch.dtype | None = None,
    *,
    tile: int | None = None,
    tile_pad: int | None = None,
    batch: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    bit_depth: int | None = None,
    grayscale: bool = False,
    source_bit_depth: int | None = None,
) -> np.ndarray:
    """Super-resolve a float (H, W, 3) RGB array in [0, 1]; returns float32 (sH, sW, 3) in [0, 1].

    Float input is clamped to [0, 1]; NaN or infinity raises :class:`SrganError`. uint8
    pixels are read as value / 255 and uint16 as value / 65535; other integer, bool and
    complex arrays raise ``TypeError``. With ``grayscale`` the output is gray: all three channels
    hold the mean of the model's three, which tint gray input (up to 14 levels apart with
    ``srgan_x4``), as ``srgan upscale`` and :func:`upscale_image` keep gray images gray. A 2-D
    (H, W) array is gray: it runs as RGB with equal channels and comes out gray, (sH, sW, 3) still
    (quantised too, unless ``grayscale`` asks for the one plane).
    An image less than ``MIN_SIDE`` (8) pixels wide or tall runs padded to that size by
    repeating its edge pixels, and the output is cropped back: the network's zero padding
    otherwise swamps a 1 or 2 px image (a 1x1 pixel came out nearly black).
    ``dtype`` (optional, a floating ``torch.dtype``) overrides the model's compute dtype for this call. With
    ``bit_depth`` (8 or 16) the result is instead quantised as ``images.write_image`` stores
    it (uint8 or uint16; with ``grayscale``, the (sH, sW, 1) gray plane), tile by tile, so
    that no float copy of the whole output is ever held: a 16000x12000 result is 576 MB of
    uint8 rather than 2.3 GB of float32.

    Precision: a model loaded with ``precision="auto"`` that computes in bf16 or fp16 runs
    images of more than 8 bits in fp32 (with an fp32 copy of the weights, made from those kept
    at load on the first such image): bf16 keeps about 8 significant bits (fp16 about
    11), so a 16-bit gradient came out in 8-bit steps. ``source_bit_depth`` (8 or 16) says how
    many bits the pixels hold; by default 16 for uint16 arrays and 8 for uint8 and float ones
    (floats most often come from 8-bit images: pass ``source_bit_depth=16`` for those made
    from 16-bit ones). An explicit precision or ``dtype`` is always used as it is.
    """
    _check_model(model, "upscale_array")
    if isinstance(rgb, (str, bytes, os.PathLike)) or rgb is None:
        raise TypeError(f"upscale_array takes an (H, W, 3) NumPy array, got {_describe(rgb)}")
    if isinstance(rgb, torch.Tensor):
        raise TypeError("upscale_array takes an (H, W, 3) NumPy array; use upscale_tensor for a (1, 3, H, W) tensor")
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(
            f"upscale_array's dtype must be a torch.dtype such as torch.bfloat16, or None, got {_describe(dtype)}; "
            "for a precision string pass precision= to load_model"
        )
    if dtype is not None and dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise SrganError(f"dtype must be torch.float16, torch.bfloat16 or torch.float32, got {dtype}")
    tile, tile_pad, batch = _check_options(tile, tile_pad, batch, progress, on_note)
    rgb = np.asarray(rgb)
    if rgb.dtype.kind not in "biufc":
        raise TypeError(f"upscale_array takes an (H, W, 3) NumPy array of pixels, got an array of dtype {rgb.dtype}")
    gray_input = rgb.ndim == 2
    if gray_input:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise SrganError(f"expected an (H, W, 3) RGB array, got shape {rgb.shape}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise SrganError(f"cannot upscale an empty image ({rgb.shape[1]}x{rgb.shape[0]})")
    if bit_depth is not None and (
        isinstance(bit_depth, (bool, np.bool_)) or not isinstance(bit_depth, (int, np.integer))
    ):
        raise TypeError(f"bit_depth must be 8, 16 or None, got {_describe(bit_depth)}")
    if bit_depth not in (None, 8, 16):
        raise SrganError(f"bit depth must be 8 or 16, got {bit_depth}")
    grayscale = _check_flag("grayscale", grayscale)
    # the model tints gray input (channels up to 14 levels apart): gray out is the mean of its channels
    gray = grayscale or gray_input
    model = _compute_model(model, dtype, _source_bits(rgb.dtype, source_bit_depth), on_note)
    from . import images

    size = (rgb.shape[0] * model.scale, rgb.shape[1] * model.scale)
    x = torch.from_numpy(_array_pixels(rgb)).permute(2, 0, 1)[None]
    x, tile, pad, batch, keep = _tiling_input(model, x, tile, tile_pad, batch)
    if bit_depth is None:
        canvas = np.empty((*size, 3), dtype=np.float32)
    else:
        canvas = np.empty((*size, 1 if grayscale else 3), dtype=np.uint16 if bit_depth == 16 else np.uint8)

    def sink(rows: slice, cols: slice, core: torch.Tensor) -> None:
        # On the output's own device (a GPU's copy back is the cost there, not the model):
        # clamp, make channels last, and for RGB quantise with images.quantise_into's
        # arithmetic (NaN -> 0, clip, x top in float32, round half to even), so only the
        # stored pixels travel and the bytes equal those of writing the float output.
        core = core.clamp(0, 1).permute(1, 2, 0)
        if bit_depth is None:
            if gray and core.shape[2] == 3:  # (a one-channel model's output is gray already)
                canvas[rows, cols] = core.contiguous().cpu().numpy().mean(axis=2, keepdims=True, dtype=np.float32)
            else:
                canvas[rows, cols] = core.contiguous().cpu().numpy()  # one channel: broadcast to three
            return
        core = core.expand(-1, -1, 3)
        if gray:
            # the gray mean in NumPy, as images.write_image takes it from the float image
            block = core.contiguous().cpu().numpy().mean(axis=2, keepdims=True, dtype=np.float32)
            if grayscale:
                images.quantise_into(block, canvas[rows, cols])
            else:  # a 2-D input: the quantised gray in every channel
                canvas[rows, cols] = images.quantise_into(block, np.empty(block.shape, dtype=canvas.dtype))
            return
        pixels = torch.nan_to_num(core, nan=0.0).mul(65535.0 if bit_depth == 16 else 255.0).round_()
        canvas[rows, cols] = pixels.to(torch.int32 if bit_depth == 16 else torch.uint8).contiguous().cpu().numpy()

    if keep is not None:
        sink = _crop_sink(sink, keep)
    with torch.inference_mode():
        upscale_tiled(model.forward, x, model.scale, tile, pad, batch, progress=progress, on_note=on_note, sink=sink)
    return canvas


# Models upscale_image loaded by name or path, the most recently used last; a few only, so a loop
# over many checkpoints does not keep them all.
_MODEL_CACHE: dict[tuple, Model] = {}
_MODEL_CACHE_SIZE = 4
_MODEL_CACHE_LOCK = threading.Lock()


def _cached_model(model: str | os.PathLike) -> Model:
    """``load_model(model)``, loaded once while the file stays the same: a local file is known by
    its real path, size, modification time, inode and inode change time, so new weights written to
    the same path (a training run's generator.safetensors, a relative name after chdir, a copy made
    with its old modification time kept: cp -p, rsync -t, shutil.copy2) are loaded anew."""
    text = os.fspath(model)
    if isinstance(model, str) and text in MODELS:  # a name wins over a file of that name, as in load_model
        key: tuple = (text,)
    else:
        path = os.path.expanduser(text)
        try:
            st = os.stat(path)
            key = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
        except (OSError, ValueError):
            key = (text, isinstance(model, str))  # a Hub reference (a Path is never one)
    with _MODEL_CACHE_LOCK:  # upscale_image may run in several threads
        found = _MODEL_CACHE.pop(key, None)
    if found is None:
        found = load_model(model)
    with _MODEL_CACHE_LOCK:
        _MODEL_CACHE[key] = found
        while len(_MODEL_CACHE) > _MODEL_CACHE_SIZE:
            del _MODEL_CACHE[next(iter(_MODEL_CACHE))]
    return found


def _after_fork_in_child() -> None:
    """Fresh locks in a forked child: one that another thread of the parent held (loading a model,
    making its fp32 twin) stayed locked for good there, and the child hung on its first use."""
    global _MODEL_CACHE_LOCK, _TWIN_LOCK
    _MODEL_CACHE_LOCK, _TWIN_LOCK = threading.Lock(), threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


def upscale_image(
    image,
    model: Model | str | Path = DEFAULT_MODEL,
    *,
    outscale: float | None = None,
    tile: int | None = None,
    tile_pad: int | None = None,
):
    """Upscale a PIL image (or an image file) and return a PIL image.

    Alpha is upscaled separately (transparent pixels are filled first, so their hidden colour
    does not bleed in); grayscale stays grayscale, and an RGB image whose pixels are all gray (a
    black-and-white scan saved as RGB) comes back gray in every pixel. 16-bit images are computed in fp32 under
    ``precision="auto"``; 16-bit grayscale without alpha comes back 16-bit (mode ``I;16``),
    other 16-bit images with 8 bits per channel, as Pillow has no 16-bit colour mode
    (``srgan upscale``, or ``images.read_image`` + :func:`upscale_loaded` +
    ``images.write_image``, keep 16-bit colour).
    ``outscale`` resizes the model's output to any final scale with Lanczos (alpha too), e.g. 2
    with a x4 model, up to ``MAX_OUTSCALE`` (64, as the CLI's ``--outscale``).

    As Pillow's own ``resize`` does, the result's ``info`` keeps the input's ``icc_profile``
    (when it fits the output: an RGB profile on colour, a gray one on gray); ``dpi``, unchanged
    as image editors and ``srgan upscale`` keep it (the print grows with the pixels); and
    ``exif`` as ``srgan upscale`` writes it: Orientation 1 (the pixels are upright) and the
    pixel size updated. Pillow's PNG and TIFF writers embed ``info["icc_profile"]`` by
    themselves; the rest, as for any Pillow image, is saved when passed:
    ``big.save(path, icc_profile=big.info.get("icc_profile"), dpi=..., exif=...)`` (and
    ``xmp=big.info.get("xmp")``, the input's XMP with its orientation and size updated, which
    Pillow writes for JPEG and WebP; a JPEG's extended XMP is moved into it where the whole fits
    the 64 KB Pillow's JPEG writer takes, else the whole is in ``info["xmp_extended"]``).
    IPTC-IIM (captions, keywords of press and archive software) has no place in a Pillow image
    that its writers use, so it is not carried: ``images.read_image`` + :func:`upscale_loaded` +
    ``images.write_image(..., iptc=loaded.iptc)`` keep it, as ``srgan upscale`` does.
    """
    from PIL import Image

    from . import images

    if not isinstance(image, (str, os.PathLike, Image.Image)):
        if isinstance(image, np.ndarray):
            hint = "; use upscale_array for arrays"
        elif isinstance(image, (bytes, bytearray)):
            hint = "; open encoded bytes with PIL.Image.open(io.BytesIO(data))"
        else:
            hint = ""
        raise TypeError(f"upscale_image takes a PIL.Image.Image or an image path, got {_describe(image)}{hint}")
    if not isinstance(model, (Model, str, os.PathLike)):
        raise TypeError(f"upscale_image's model must be a Model, a model name or a path, got {_describe(model)}")
    outscale = _check_outscale(outscale)
    tile = _check_tile(tile)
    tile_pad = _check_int("tile_pad", tile_pad, 0, "0 or positive")
    if isinstance(image, Image.Image):
        loaded = images.from_pil(image, name=str(getattr(image, "filename", "") or "image"))
    else:
        loaded = images.read_image(image)
    for note in loaded.notes:  # what the image lost on the way (the CLI prints these as notes)
        warnings.warn(note, SrganWarning, stacklevel=2)
    if not isinstance(model, Model):
        model = _cached_model(model)
    # to_pil keeps 16 bits only for gray without alpha (Pillow has no 16-bit colour mode)
    sixteen = loaded.bit_depth == 16 and loaded.grayscale and loaded.alpha is None
    rgb, alpha = upscale_loaded(
        model, loaded, outscale=outscale, tile=tile, tile_pad=tile_pad, bit_depth=16 if sixteen else 8
    )
    out = images.to_pil(rgb, alpha=alpha, bit_depth=loaded.bit_depth, grayscale=loaded.grayscale)
    _carry_metadata(out, loaded)
    return out


def _carry_metadata(out, loaded) -> None:
    """Put the ICC profile, dpi and EXIF of ``loaded`` into the PIL image ``out``'s ``info``, as
    ``images.write_image`` would write them into a file of ``out``'s size and mode."""
    from . import images

    gray = out.mode in ("L", "LA", "I;16")
    if loaded.icc_profile and images._icc_fits(loaded.icc_profile, gray=gray):
        out.info["icc_profile"] = loaded.icc_profile
    if loaded.dpi:
        out.info["dpi"] = loaded.dpi
    # without the record of the model and scale an earlier srgan upscale made: it describes another upscale
    if loaded.exif:
        exif = images._prepare_exif(loaded.exif, {}, out.width, out.height, drop_record=True)
        if exif:
            out.info["exif"] = exif
    if loaded.xmp:
        xmp = images._xmp_without_record(images._prepare_xmp(loaded.xmp, out.width, out.height))
        # a JPEG's extended XMP moved into the packet (Pillow writes one packet), the pointer to it dropped;
        # where that is more than Pillow's JPEG writer takes, info["xmp"] keeps the main packet (a JPEG
        # round trip as before) and info["xmp_extended"] the whole, for formats without that limit
        if loaded.xmp_extension:
            extension = images._prepare_xmp(loaded.xmp_extension, out.width, out.height)
            main = images._HAS_EXTENDED_XMP.sub(b"", xmp)
            merged = images._xmp_merged(xmp, extension)
            if merged is not None and len(merged) > images._JPEG_XMP_MAX:
                out.info["xmp_extended"] = merged
                merged = None
            xmp = merged or main
        out.info["xmp"] = xmp


def output_size(width: int, height: int, scale: int, outscale: float | None) -> tuple[int, int]:
    """Final (width, height): ``outscale`` times the input, rounded to the nearest pixel (a half up:
    23 x 17 at 0.5 is 12 x 9; Python's round() took halves to the even one, 12 x 8), at least 1 px.

    The product is exact, of the decimal the float is shown as (0.7, not the binary 0.69999...):
    45 px at 0.7 is 31.5, which rounds up to 32; in floating point it came to 31.4999... and 31.

    ``outscale`` must be a finite number in (0, ``MAX_OUTSCALE``] (64, as the CLI's ``--outscale``).
    """
    width = _check_int("width", width, 1, "at least 1")
    height = _check_int("height", height, 1, "at least 1")
    scale = _check_int("scale", scale, 1, "at least 1")
    if width is None or height is None or scale is None:  # "45" gave ("45454545", 40)
        raise TypeError("output_size takes the width, height and scale as ints")
    outscale = _check_outscale(outscale)
    if outscale is None:
        return width * scale, height * scale
    exact = fractions.Fraction(repr(outscale))  # the shortest decimal that reads back as the float: what was typed
    half = fractions.Fraction(1, 2)
    return max(1, math.floor(width * exact + half)), max(1, math.floor(height * exact + half))


def _is_neutral(rgb: np.ndarray) -> bool:
    """Whether every pixel of an (H, W, 3) array has equal channels; compared a band of rows at a time,
    so a large colour image is told at its first band."""
    step = max(1, (1 << 20) // max(1, rgb.shape[1]))
    for top in range(0, rgb.shape[0], step):
        band = rgb[top : top + step]
        if not (np.array_equal(band[..., 0], band[..., 1]) and np.array_equal(band[..., 1], band[..., 2])):
            return False
    return True


# Alpha samples a band of the direct path's x4 alpha holds in float (16 MB) before it is quantised
_ALPHA_BAND_SAMPLES = 1 << 22


def upscale_loaded(
    model: Model,
    loaded,
    *,
    outscale: float | None = None,
    tile: int | None = None,
    tile_pad: int | None = None,
    batch: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    bit_depth: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Upscale an ``images.LoadedImage``: returns (rgb, alpha or None) at the final size.

    The arrays are float32 in [0, 1]; a gray image's (and an RGB one's whose pixels are all gray)
    has each channel the mean of the model's three, the gray a gray file stores. With ``bit_depth``
    (the depth the output file stores, ``images.stored_bit_depth``) they come already quantised
    instead (uint8 or uint16, see ``upscale_array``), gray as (H, W, 1), ready for
    ``images.write_image``. With an ``outscale`` resize too, no float copy of the model's whole
    output is held: it is kept as 16-bit pixels (the Lanczos resize then reads 16 bits where 8-bit
    output stores 8) and resized a band of output rows at a time into the quantised result (see
    ``images.resize_into``); the alpha too. A 16-bit (or float) image runs in fp32 under
    ``precision="auto"``, an 8-bit one in the model's dtype (see ``upscale_array``). Peak memory
    with an ``outscale``: the 16-bit x4 output (2 bytes a x4 pixel for gray, 6 for colour) and the
    result, where a float x4 canvas and its resized float copies took 12-17 bytes a x4 pixel.
    """
    from . import images

    _check_model(model, "upscale_loaded")
    if not isinstance(loaded, images.LoadedImage):
        raise TypeError(f"upscale_loaded takes an images.LoadedImage (from images.read_image), got {_describe(loaded)}")

    rgb = loaded.rgb
    if loaded.alpha is not None:
        rgb = images.fill_transparent(rgb, loaded.alpha)
    h, w = rgb.shape[:2]
    size = output_size(w, h, model.scale, outscale)
    resized = size != (w * model.scale, h * model.scale)
    direct = bit_depth is not None and not resized
    compact = bit_depth is not None and resized  # quantised to 16 bits at x4, resized in bands
    quantised = direct or compact
    # a black-and-white photo stored as RGB (a scan, a camera's monochrome JPEG): the model gave it a faint
    # tint (channels up to 15 levels apart), where the same picture stored as gray came back neutral
    neutral = not loaded.grayscale and _is_neutral(rgb)
    out = upscale_array(
        model, rgb, tile=tile, tile_pad=tile_pad, batch=batch, progress=progress, on_note=on_note,
        bit_depth=(16 if compact else bit_depth) if quantised else None,
        grayscale=loaded.grayscale or neutral, source_bit_depth=loaded.bit_depth,
    )  # fmt: skip
    del rgb
    if compact:  # the x4 output in 16 bits, resized a band of rows at a time into the quantised result
        dtype = np.uint16 if bit_depth == 16 else np.uint8
        source = (out.shape[1], out.shape[0])
        canvas = [out]  # held here only, so that it is freed before the alpha's turn
        del out

        def rows(start: int, stop: int) -> np.ndarray:
            band = canvas[0][start:stop].astype(np.float32)
            band /= np.float32(65535.0)  # in place: one float copy of the band, not two
            return band

        resized_rgb = images.resize_into(
            rows,
            source,
            np.empty((size[1], size[0], canvas[0].shape[2]), dtype=dtype),
        )
        canvas.clear()
        if neutral:  # the gray mean in every channel: an RGB file still, with neutral pixels
            resized_rgb = np.repeat(resized_rgb, 3, axis=2)
        if loaded.alpha is None:
            return resized_rgb, None
        alpha = np.asarray(loaded.alpha, dtype=np.float32)
        resized_alpha = np.empty((size[1], size[0], 1), dtype=dtype)
        images.resize_into(  # kept within the input's alpha around each pixel, as the x4 alpha is: Lanczos rings
            lambda start, stop: images.upscale_alpha_rows(alpha, model.scale, start, stop)[..., None],
            source,
            resized_alpha,
            alpha=alpha,
        )
        return resized_rgb, resized_alpha[..., 0]
    if neutral and direct:  # the gray plane in every channel: an RGB file still, with neutral pixels
        out = np.repeat(out, 3, axis=2)
    if direct:  # the alpha quantised a band of rows at a time: its float x4 plane was 4 bytes a x4 pixel
        if loaded.alpha is None:
            return out, None
        alpha_in = np.asarray(loaded.alpha, dtype=np.float32)
        quantised_alpha = np.empty(out.shape[:2], dtype=out.dtype)
        step = max(model.scale, _ALPHA_BAND_SAMPLES // max(1, quantised_alpha.shape[1]) // model.scale * model.scale)
        for top in range(0, quantised_alpha.shape[0], step):
            stop = min(top + step, quantised_alpha.shape[0])
            images.quantise_into(images.upscale_alpha_rows(alpha_in, model.scale, top, stop), quantised_alpha[top:stop])
        return out, quantised_alpha
    alpha = images.upscale_alpha(loaded.alpha, model.scale) if loaded.alpha is not None else None
    if resized:
        out = np.clip(images.resize_rgb(out, size), 0, 1).astype(np.float32)
        if alpha is not None:  # kept within the input's alpha around each pixel, as the x4 alpha is: Lanczos rings
            alpha = images.clamp_resized_alpha(images.resize_rgb(alpha, size), loaded.alpha)
    return out, alpha
