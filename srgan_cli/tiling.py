"""Tiled inference: run a generator on overlapping tiles so any image fits in memory.

A tile's input window is the tile grown by ``pad`` LR pixels on each side, *cropped to the
image*: at the image border the window simply stops, so the network zero-pads there exactly
as it does on the whole image. With ``pad`` at least the generator's receptive-field radius,
every output pixel kept from a tile sees the same input as in the whole-image pass, and the
tiled result equals the whole-image result up to float rounding noise.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .config import GeneratorConfig
from .errors import SrganError

# Below this tile side (LR pixels) a further halving after an out-of-memory error is pointless.
MIN_TILE = 8
# CPU: the working-set budget a tile (times the batch) may use; ~400 LR px tiles for SRResNet.
CPU_BUDGET_BYTES = 2 * 1024**3
# CUDA: the share of the currently free memory a batch of tiles may use.
CUDA_FREE_SHARE = 0.5
# The activation estimate's factor over its count of live feature maps: generous on GPUs (1.5);
# on the CPU it is what was measured. A whole 500 x 500 LR image with the bundled SRResNet grew
# the peak resident memory by 1,069 MiB in bf16 and 2,076 MiB in fp32 (4.3 and 8.3 KB a pixel,
# with the output canvas; 2-core AMD EPYC, torch 2.14.1), where 1.5 estimated 9.2 and 18.4 KB:
# images from about 330 px (fp32) or 470 px (bf16) were cut into tiles that recomputed a third
# of their area, 20-30% slower, while using a fifth of the budget. 0.8 estimates 4.9 and 9.8 KB,
# and decides whether an image runs whole (a 500 x 500 image in bf16: 9.5 s in 4 tiles, 8.0 s
# whole, the same bytes). The tiles of a larger image keep the generous size: tiles sized by 0.8
# made a 2000 x 1500 image no faster (86.5 s against 86.2) and raised its peak from 1.87 to 2.28 GiB.
ESTIMATE_MARGIN = 1.5
CPU_ESTIMATE_MARGIN = 0.8


@dataclass(frozen=True)
class Tile:
    """One tile: the padded LR input window and where its core lands in the LR image."""

    in_y: slice  # rows of the LR image fed to the network (core + pad, cropped to the image)
    in_x: slice
    core_y: slice  # rows of the LR image this tile is responsible for
    core_x: slice

    @property
    def in_shape(self) -> tuple[int, int]:
        return self.in_y.stop - self.in_y.start, self.in_x.stop - self.in_x.start

    def out_slices(self, scale: int) -> tuple[slice, slice]:
        """Where the core goes in the HR canvas."""
        return (
            slice(self.core_y.start * scale, self.core_y.stop * scale),
            slice(self.core_x.start * scale, self.core_x.stop * scale),
        )

    def crop_slices(self, scale: int) -> tuple[slice, slice]:
        """Which part of the network's output for this tile is the core."""
        oy = self.core_y.start - self.in_y.start
        ox = self.core_x.start - self.in_x.start
        hy = self.core_y.stop - self.core_y.start
        hx = self.core_x.stop - self.core_x.start
        return slice(oy * scale, (oy + hy) * scale), slice(ox * scale, (ox + hx) * scale)


def _spans(length: int, tile: int) -> list[tuple[int, int]]:
    """Split [0, length) into near-equal spans of at most ``tile`` (equal sizes batch well)."""
    count = max(1, math.ceil(length / tile))
    base, extra = divmod(length, count)
    spans, start = [], 0
    for i in range(count):
        size = base + (1 if i < extra else 0)
        spans.append((start, start + size))
        start += size
    return spans


def plan_tiles(h: int, w: int, tile: int, pad: int) -> list[Tile]:
    """Tiles covering an ``h`` x ``w`` LR image; ``tile`` 0 (or >= the image) means one tile.

    Cores partition the image exactly; windows extend ``pad`` pixels past the core, cropped
    to the image, never padded artificially.
    """
    if h < 1 or w < 1:
        raise SrganError(f"cannot tile an empty image ({w}x{h})")
    if tile < 0 or pad < 0:
        raise SrganError(f"tile ({tile}) and tile pad ({pad}) must not be negative")
    tile_h = h if tile == 0 else tile
    tile_w = w if tile == 0 else tile
    tiles = []
    for y0, y1 in _spans(h, tile_h):
        for x0, x1 in _spans(w, tile_w):
            tiles.append(
                Tile(
                    in_y=slice(max(0, y0 - pad), min(h, y1 + pad)),
                    in_x=slice(max(0, x0 - pad), min(w, x1 + pad)),
                    core_y=slice(y0, y1),
                    core_x=slice(x0, x1),
                )
            )
    return tiles


def _config_of(module_or_config) -> GeneratorConfig:
    if isinstance(module_or_config, GeneratorConfig):
        return module_or_config
    config = getattr(module_or_config, "config", None)
    if isinstance(config, GeneratorConfig):
        return config
    raise TypeError(f"expected a generator or a GeneratorConfig, got {type(module_or_config).__name__}")


def default_pad(module_or_config) -> int:
    """The smallest safe tile pad: the generator's receptive-field radius in LR pixels, rounded up."""
    radius = getattr(module_or_config, "receptive_radius", None)
    if callable(radius):
        return int(math.ceil(radius()))
    from types import SimpleNamespace

    from .models import RRDBNet, SRResNet

    config = _config_of(module_or_config)
    cls = RRDBNet if config.arch == "rrdb" else SRResNet
    # receptive_radius() reads only self.config: no need to build (and initialise) the network.
    return int(math.ceil(cls.receptive_radius(SimpleNamespace(config=config))))


def bytes_per_lr_pixel(
    config: GeneratorConfig, dtype: torch.dtype = torch.float32, margin: float = ESTIMATE_MARGIN
) -> int:
    """An estimate of the peak activation memory per input pixel of one tile (generous by
    default; ``margin`` CPU_ESTIMATE_MARGIN for the CPU's measured peak).

    The peak is in the upsampling stages: a few maps of ``num_features`` (x4 before the
    pixel shuffle) at up to ``scale``^2 times the input area are alive at once.
    """
    f = config.num_features
    s2 = config.scale * config.scale
    if config.arch == "rrdb":
        per_px = 3 * f * s2 + 2 * (f + 4 * config.growth_channels)
    else:
        per_px = 4 * f * s2 // 2 + 3 * f * s2 // 4 + 4 * f
    return int(per_px * torch.finfo(dtype).bits // 8 * margin)


def default_batch(device: torch.device) -> int:
    """Tiles per forward when the caller does not say: 4 on GPUs, which larger batches fill
    better, and 1 elsewhere. On a CPU the memory budget is better spent on one larger tile,
    which recomputes less overlap: with SRResNet's 40 px pad, one 480 px tile redoes 36% of
    its pixels where four 240 px tiles (the same memory) redo 78%.
    """
    return 4 if torch.device(device).type in ("cuda", "mps") else 1


def choose_tile(
    model_or_config,
    device: torch.device,
    h: int,
    w: int,
    *,
    batch: int = 1,
    dtype: torch.dtype = torch.float32,
) -> int:
    """A tile side (LR pixels) whose batch fits the memory at hand; 0 if the whole image fits.

    CUDA: a share of the memory free right now. CPU and others: a fixed budget, so a huge
    image never needs tens of GB of RAM (about 400 px tiles for the default SRResNet).
    """
    config = _config_of(model_or_config)
    per_px = bytes_per_lr_pixel(config, dtype)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        budget = free * CUDA_FREE_SHARE
    else:
        budget = CPU_BUDGET_BYTES
    whole_px = bytes_per_lr_pixel(config, dtype, CPU_ESTIMATE_MARGIN) if device.type == "cpu" else per_px
    if h * w * whole_px <= budget:  # one forward, whatever the batch
        return 0
    side = int(math.sqrt(budget / (per_px * max(1, batch))))
    side = max(32, side // 8 * 8)
    return 0 if side >= max(h, w) else side


Forward = Callable[[torch.Tensor], torch.Tensor]
Sink = Callable[[slice, slice, torch.Tensor], None]


def upscale_tiled(
    forward: Forward,
    x: torch.Tensor,
    scale: int,
    tile: int,
    pad: int,
    batch: int = 1,
    progress: Callable[[int, int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    sink: Sink | None = None,
) -> torch.Tensor | None:
    """Upscale ``x`` (1, C, H, W) tile by tile; returns the float32 (1, C, sH, sW) CPU canvas.

    ``forward`` maps a CPU batch (N, C, h, w) to the network output (N, C, s*h, s*w) on any
    device. Tiles with the same window shape run ``batch`` at a time. On a CUDA
    out-of-memory error the tile side is halved and the image is started again (with a note
    via ``on_note``): a tile is never skipped or left stale. ``progress(done, total)`` is
    called after every batch.

    With ``sink``, no canvas is made and None is returned: each tile's core, a float32
    (C, h, w) tensor on the device ``forward`` returned it on, goes to ``sink(rows, cols,
    core)`` with the slices of the output it covers, so a caller can store it as it likes
    (for example quantised, or channels last) without a float copy of the whole output, and
    on a GPU can do that work there and copy back only what it keeps (8-bit pixels are a
    quarter of float32 ones). After an out-of-memory restart every region is sent again.
    """
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected a (1, C, H, W) tensor, got {tuple(x.shape)}")
    if batch < 1:
        raise SrganError(f"batch size must be at least 1, got {batch}")
    _, c, h, w = x.shape
    x = x.detach().to("cpu")
    while True:
        try:
            with torch.inference_mode():
                return _run_tiles(forward, x, c, h, w, scale, tile, pad, batch, progress, sink)
        except (torch.cuda.OutOfMemoryError, RuntimeError, MemoryError) as exc:
            where = _out_of_memory(exc)
            if where is None:
                raise
            current = tile if 0 < tile < max(h, w) else max(h, w)
            smaller = current // 2
            if smaller < MIN_TILE:
                advice = "use --device cpu or free GPU memory" if where == "GPU" else "free memory"
                raise SrganError(f"out of {where} memory even with {current} px tiles; {advice}") from None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            mps = getattr(torch, "mps", None)
            if mps is not None and torch.backends.mps.is_available():
                with contextlib.suppress(Exception):
                    mps.empty_cache()
            if on_note is not None:
                on_note(f"out of {where} memory with {current} px tiles; retrying with {smaller} px tiles")
            tile = smaller


def _out_of_memory(exc: BaseException) -> str | None:
    """ "GPU" for CUDA's out-of-memory error or MPS's (a plain RuntimeError, "MPS backend out of memory",
    with which a Mac's image failed where a GPU's was retried with smaller tiles); "CPU" for PyTorch's
    CPU allocator failing ("DefaultCPUAllocator: can't allocate memory": a large --tile under a memory
    limit failed after minutes with that message and no advice) or a MemoryError; else None."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return "GPU"
    if isinstance(exc, MemoryError):
        return "CPU"
    text = str(exc) if isinstance(exc, RuntimeError) else ""
    if "MPS backend out of memory" in text:
        return "GPU"
    if "DefaultCPUAllocator" in text and "can't allocate memory" in text:
        return "CPU"
    return None


def _run_tiles(forward, x, c, h, w, scale, tile, pad, batch, progress, sink) -> torch.Tensor | None:
    tiles = plan_tiles(h, w, tile, pad)
    canvas = None
    if sink is None:
        canvas = torch.empty((1, c, h * scale, w * scale), dtype=torch.float32)

        def sink(oy: slice, ox: slice, core: torch.Tensor) -> None:
            canvas[0, :, oy, ox] = core

    groups: dict[tuple[int, int], list[Tile]] = {}
    for t in tiles:
        groups.setdefault(t.in_shape, []).append(t)
    done = 0
    for group in groups.values():
        for start in range(0, len(group), batch):
            chunk = group[start : start + batch]
            inputs = torch.cat([x[:, :, t.in_y, t.in_x] for t in chunk])
            out = forward(inputs)
            expected = (len(chunk), c, inputs.shape[2] * scale, inputs.shape[3] * scale)
            if tuple(out.shape) != expected:
                raise SrganError(f"the generator returned shape {tuple(out.shape)}, expected {expected}")
            out = out.to("cpu", torch.float32) if canvas is not None else out.float()  # a sink takes it on the device
            for i, t in enumerate(chunk):
                cy, cx = t.crop_slices(scale)
                oy, ox = t.out_slices(scale)
                sink(oy, ox, out[i, :, cy, cx])
            done += len(chunk)
            if progress is not None:
                progress(done, len(tiles))
    return canvas
