"""The Python API: load a model, upscale an image. The CLI is a thin layer over this.

Inference contract: float RGB in [0, 1] in (clamped to [0, 1]; NaN or infinity is an error;
uint8 and uint16 pixels are read as value / 255 and value / 65535; other integer, bool and
complex dtypes are refused); float32 RGB in [0, 1] (clamped) out, ``scale`` times larger;
run under ``torch.inference_mode()``; tiled when the image is large (the tiled result
equals the whole-image one, see :mod:`srgan_cli.tiling`). On the CPU the same input
gives the same output bit for bit.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import MAX_OUTSCALE, GeneratorConfig
from .device import PRECISIONS, choose_device, choose_dtype
from .errors import SrganError
from .models import fold_batch_norm
from .tiling import choose_tile, default_batch, default_pad, upscale_tiled
from .weights import DEFAULT_MODEL, MODELS, load_generator

# Architectures for which ``precision="auto"`` may pick bf16 on the CPU: those whose bf16 output
# was measured within 0.5 gray levels RMS of fp32 on photos (benchmarks/README.md). Deep RRDB
# trunks may drift further, so they stay fp32 until measured.
_CPU_BF16_ARCHS = ("srresnet",)

# ITU-R BT.601 luma, for feeding a one-channel generator from RGB.
_LUMA = (0.299, 0.587, 0.114)


# Integer pixel dtypes that are read as a fraction of their full scale; others are refused.
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


def _array_pixels(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) pixels as C-contiguous float32 in [0, 1]: uint8 / 255, uint16 / 65535, floats
    clamped; NaN or infinity is an error, other dtypes are refused."""
    scale = _INT_PIXEL_SCALE.get(rgb.dtype.newbyteorder("="))
    if scale is not None:
        return np.ascontiguousarray(rgb, dtype=np.float32) / np.float32(scale)
    if rgb.dtype.kind != "f":
        raise TypeError(
            f"cannot upscale an array of dtype {rgb.dtype}: expected float pixels in [0, 1], uint8 or uint16"
        )
    if not np.isfinite(rgb).all():
        raise SrganError("the image array contains NaN or infinity")
    return np.ascontiguousarray(np.clip(rgb, 0, 1), dtype=np.float32)


def _tensor_pixels(x: torch.Tensor) -> torch.Tensor:
    """``x`` as float in [0, 1] like :func:`_array_pixels`: uint8 / 255, uint16 / 65535, floats
    clamped; NaN or infinity is an error, other dtypes are refused."""
    scale = _TENSOR_INT_PIXEL_SCALE.get(x.dtype)
    if scale is not None:
        return x.detach().to(torch.float32) / scale
    if not x.is_floating_point():
        raise TypeError(f"cannot upscale a tensor of dtype {x.dtype}: expected float pixels in [0, 1], uint8 or uint16")
    if not torch.isfinite(x).all():
        raise SrganError("the image tensor contains NaN or infinity")
    return x.detach().clamp(0, 1)


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

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def tile_pad(self) -> int:
        """The default tile pad: the receptive-field radius, so tiling is exact."""
        return default_pad(self.config)

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network on a batch (N, C, h, w) from any device; returns the raw output on ``device``."""
        x = x.to(self.device, self.dtype, non_blocking=True)
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


def _resolve(name_or_path: str | Path) -> tuple[Path, str]:
    """Weights file for a model name, local path or Hub reference, and its sha256."""
    from .hub import resolve_weights, weights_sha256  # lazy: huggingface_hub is imported only when needed

    path = resolve_weights(name_or_path)
    return path, weights_sha256(name_or_path, path)


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
    dev = device if isinstance(device, torch.device) else choose_device(str(device))
    path, sha256 = _resolve(name_or_path)
    module, config, meta = load_generator(path, "cpu")
    dtype, note = choose_dtype(precision, dev, cpu_bf16=config.arch in _CPU_BF16_ARCHS)
    notes = [note] if note else []
    name = _display_name(name_or_path, path)
    if blend:
        from .interpolate import blend_generators, parse_blend

        ref, alpha = parse_blend(blend)
        other_path, other_sha256 = _resolve(ref)
        other, other_config, _ = load_generator(other_path, "cpu")
        if other_config != config:
            raise SrganError(f"--blend {blend}: {other_path} has a different architecture than {path}; cannot blend")
        module = blend_generators(module, other, alpha)
        name = f"{name}+{_display_name(ref, other_path)}@{alpha:g}"
        sha256 = f"{sha256}+{other_sha256}@{alpha:g}"
    if channels_last is None:
        channels_last = dev.type == "cpu"
    module = fold_batch_norm(module.eval()).to(dev, dtype)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    for p in module.parameters():
        p.requires_grad_(False)
    if ensemble and meta.get("stage") == "gan":
        notes.append(f"{name} is a GAN model: the ensemble's mean of 8 passes smooths part of its texture")
    return Model(module, config, name, dict(meta), dtype, dev, notes, channels_last, ensemble, sha256)


def _display_name(name_or_path: str | Path, path: Path) -> str:
    text = str(name_or_path)
    return text if text in MODELS or not Path(text).expanduser().is_file() else path.stem


def _to_model_channels(model: Model, x: torch.Tensor) -> torch.Tensor:
    if model.config.in_channels == 1 and x.shape[1] == 3:
        weights = torch.tensor(_LUMA, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * weights).sum(dim=1, keepdim=True)
    return x


def _check_options(tile: object, tile_pad: object, batch: object, progress: object, on_note: object):
    """The tiling options checked: (tile, tile_pad, batch) as ints or None."""
    tile = _check_int("tile", tile, 0, "0 (whole image) or positive")
    tile_pad = _check_int("tile_pad", tile_pad, 0, "0 or positive")
    batch = _check_int("batch", batch, 1, "at least 1")
    for name, value in (("progress", progress), ("on_note", on_note)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be a callable or None, got {_describe(value)}")
    return tile, tile_pad, batch


def _tiling_input(
    model: Model, x: torch.Tensor, tile: int | None, tile_pad: int | None, batch: int | None
) -> tuple[torch.Tensor, int, int, int]:
    """Check a (1, 1|3, H, W) float input in [0, 1]; return it as the model's input channels, the
    tile, the pad and the tiles per forward (``batch``; None: ``tiling.default_batch`` of the device)."""
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3):
        raise SrganError(f"expected a (1, 3, H, W) image tensor, got shape {tuple(x.shape)}")
    x = x.detach().to("cpu", torch.float32)
    if x.shape[1] == 1:
        x = x.expand(1, 3, *x.shape[2:])
    x = _to_model_channels(model, x)
    _, _, h, w = x.shape
    batch = default_batch(model.device) if batch is None else batch
    if tile is None:
        tile = choose_tile(model.config, model.device, h, w, batch=batch, dtype=model.dtype)
    return x, tile, model.tile_pad if tile_pad is None else tile_pad, batch


def upscale_tensor(
    model: Model,
    x: torch.Tensor,
    *,
    tile: int | None = None,
    tile_pad: int | None = None,
    batch: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
) -> torch.Tensor:
    """Super-resolve ``x`` (1, 3, H, W) float in [0, 1]; returns float32 (1, 3, sH, sW) on the CPU, clamped.

    Float input is clamped to [0, 1]; NaN or infinity raises :class:`SrganError`. A uint8
    tensor is read as value / 255 (uint16 as value / 65535), as :func:`upscale_array` reads
    arrays; other integer, bool and complex tensors raise ``TypeError``.

    ``tile``: None chooses from the memory at hand, 0 runs the whole image at once, N uses
    N x N LR tiles. ``tile_pad`` defaults to the receptive-field radius (exact tiling).
    ``batch``: tiles per forward; None is 4 on GPUs and 1 on the CPU (``tiling.default_batch``).
    """
    _check_model(model, "upscale_tensor")
    if not isinstance(x, torch.Tensor):
        hint = "; use upscale_array for (H, W, 3) arrays" if isinstance(x, np.ndarray) else ""
        raise TypeError(f"upscale_tensor takes a torch.Tensor (1, 3, H, W), got {_describe(x)}{hint}")
    tile, tile_pad, batch = _check_options(tile, tile_pad, batch, progress, on_note)
    x, tile, pad, batch = _tiling_input(model, _tensor_pixels(x), tile, tile_pad, batch)
    with torch.inference_mode():
        y = upscale_tiled(model.forward, x, model.scale, tile, pad, batch, progress=progress, on_note=on_note)
        y = y.clamp_(0, 1)
    if y.shape[1] == 1:
        y = y.expand(1, 3, *y.shape[2:]).contiguous()
    return y


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
) -> np.ndarray:
    """Super-resolve a float (H, W, 3) RGB array in [0, 1]; returns float32 (sH, sW, 3) in [0, 1].

    Float input is clamped to [0, 1]; NaN or infinity raises :class:`SrganError`. uint8
    pixels are read as value / 255 and uint16 as value / 65535; other integer, bool and
    complex arrays raise ``TypeError``. A 2-D (H, W) array is gray, replicated to RGB.
    ``dtype`` (optional, a floating ``torch.dtype``) overrides the model's compute dtype for this call. With
    ``bit_depth`` (8 or 16) the result is instead quantised as ``images.write_image`` stores
    it (uint8 or uint16; with ``grayscale``, the (sH, sW, 1) gray plane), tile by tile, so
    that no float copy of the whole output is ever held: a 16000x12000 result is 576 MB of
    uint8 rather than 2.3 GB of float32.
    """
    _check_model(model, "upscale_array")
    if isinstance(rgb, (str, bytes, os.PathLike)) or rgb is None:
        raise TypeError(f"upscale_array takes an (H, W, 3) NumPy array, got {_describe(rgb)}")
    if dtype is not None and not isinstance(dtype, torch.dtype):
        raise TypeError(
            f"upscale_array's dtype must be a torch.dtype such as torch.bfloat16, or None, got {_describe(dtype)}; "
            "for a precision string pass precision= to load_model"
        )
    if dtype is not None and not dtype.is_floating_point:
        raise SrganError(f"dtype must be a floating-point torch.dtype, got {dtype}")
    tile, tile_pad, batch = _check_options(tile, tile_pad, batch, progress, on_note)
    rgb = np.asarray(rgb)
    if rgb.dtype.kind not in "biufc":
        raise TypeError(f"upscale_array takes an (H, W, 3) NumPy array of pixels, got an array of dtype {rgb.dtype}")
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise SrganError(f"expected an (H, W, 3) RGB array, got shape {rgb.shape}")
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise SrganError(f"cannot upscale an empty image ({rgb.shape[1]}x{rgb.shape[0]})")
    if dtype is not None and dtype != model.dtype:
        model = dataclasses.replace(model, module=copy.deepcopy(model.module).to(dtype), dtype=dtype)
    if isinstance(bit_depth, (bool, np.bool_)) or bit_depth not in (None, 8, 16):
        raise SrganError(f"bit depth must be 8 or 16, got {bit_depth}")
    from . import images

    x = torch.from_numpy(_array_pixels(rgb)).permute(2, 0, 1)[None]
    x, tile, pad, batch = _tiling_input(model, x, tile, tile_pad, batch)
    size = (x.shape[2] * model.scale, x.shape[3] * model.scale)
    if bit_depth is None:
        canvas = np.empty((*size, 3), dtype=np.float32)
    else:
        canvas = np.empty((*size, 1 if grayscale else 3), dtype=np.uint16 if bit_depth == 16 else np.uint8)

    def sink(rows: slice, cols: slice, core: torch.Tensor) -> None:
        # On the output's own device (a GPU's copy back is the cost there, not the model):
        # clamp, make channels last, and for RGB quantise with images.quantise_into's
        # arithmetic (NaN -> 0, clip, x top in float32, round half to even), so only the
        # stored pixels travel and the bytes equal those of writing the float output.
        core = core.clamp(0, 1).permute(1, 2, 0).expand(-1, -1, 3)
        if bit_depth is None:
            canvas[rows, cols] = core.contiguous().cpu().numpy()
            return
        if grayscale:
            # the gray mean in NumPy, as images.write_image takes it from the float image
            block = core.contiguous().cpu().numpy().mean(axis=2, keepdims=True, dtype=np.float32)
            images.quantise_into(block, canvas[rows, cols])
            return
        pixels = torch.nan_to_num(core, nan=0.0).mul(65535.0 if bit_depth == 16 else 255.0).round_()
        canvas[rows, cols] = pixels.to(torch.int32 if bit_depth == 16 else torch.uint8).contiguous().cpu().numpy()

    with torch.inference_mode():
        upscale_tiled(model.forward, x, model.scale, tile, pad, batch, progress=progress, on_note=on_note, sink=sink)
    return canvas


_MODEL_CACHE: dict[tuple[str, str], Model] = {}


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
    does not bleed in); grayscale stays grayscale; 16-bit stays 16-bit. ``outscale`` resizes
    the model's output to any final scale (bicubic, antialiased), e.g. 2 with a x4 model, up
    to ``MAX_OUTSCALE`` (64, as the CLI's ``--outscale``).
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
    tile = _check_int("tile", tile, 0, "0 (whole image) or positive")
    tile_pad = _check_int("tile_pad", tile_pad, 0, "0 or positive")
    if isinstance(image, Image.Image):
        loaded = images.from_pil(image)
    else:
        loaded = images.read_image(image)
    if not isinstance(model, Model):
        key = (str(model), "auto")
        if key not in _MODEL_CACHE:
            _MODEL_CACHE[key] = load_model(model)
        model = _MODEL_CACHE[key]
    # to_pil keeps 16 bits only for gray without alpha (Pillow has no 16-bit colour mode)
    sixteen = loaded.bit_depth == 16 and loaded.grayscale and loaded.alpha is None
    rgb, alpha = upscale_loaded(
        model, loaded, outscale=outscale, tile=tile, tile_pad=tile_pad, bit_depth=16 if sixteen else 8
    )
    return images.to_pil(rgb, alpha=alpha, bit_depth=loaded.bit_depth, grayscale=loaded.grayscale)


def output_size(width: int, height: int, scale: int, outscale: float | None) -> tuple[int, int]:
    """Final (width, height): ``outscale`` times the input, rounded, at least 1 px.

    ``outscale`` must be a finite number in (0, ``MAX_OUTSCALE``] (64, as the CLI's ``--outscale``).
    """
    outscale = _check_outscale(outscale)
    if outscale is None:
        return width * scale, height * scale
    return max(1, round(width * outscale)), max(1, round(height * outscale))


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

    The arrays are float32 in [0, 1]; with ``bit_depth`` (the depth the output file stores,
    ``images.stored_bit_depth``) and no ``outscale`` resize, they come already quantised
    instead (see ``upscale_array``), gray as (H, W, 1), ready for ``images.write_image``.
    """
    from . import images

    rgb = loaded.rgb
    if loaded.alpha is not None:
        rgb = images.fill_transparent(rgb, loaded.alpha)
    h, w = rgb.shape[:2]
    size = output_size(w, h, model.scale, outscale)
    direct = bit_depth is not None and size == (w * model.scale, h * model.scale)
    out = upscale_array(
        model, rgb, tile=tile, tile_pad=tile_pad, batch=batch, progress=progress, on_note=on_note,
        bit_depth=bit_depth if direct else None, grayscale=direct and loaded.grayscale,
    )  # fmt: skip
    alpha = images.upscale_alpha(loaded.alpha, model.scale) if loaded.alpha is not None else None
    if direct:
        return out, None if alpha is None else images.quantise_into(alpha, np.empty_like(alpha, dtype=out.dtype))
    if size != (out.shape[1], out.shape[0]):
        out = np.clip(images.resize_rgb(out, size), 0, 1).astype(np.float32)
        if alpha is not None:
            alpha = np.clip(images.resize_rgb(np.repeat(alpha[:, :, None], 3, axis=2), size)[:, :, 0], 0, 1)
            alpha = alpha.astype(np.float32)
    return out, alpha
