"""Tile geometry and the tiled forward pass: tiled output must equal the whole-image output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from srgan_cli.config import GeneratorConfig
from srgan_cli.errors import SrganError
from srgan_cli.models import build_generator
from srgan_cli.tiling import choose_tile, default_batch, default_pad, plan_tiles, upscale_tiled

CONFIGS = {
    "srresnet_bn": GeneratorConfig(num_blocks=1, num_features=8),
    "rrdb": GeneratorConfig(arch="rrdb", num_blocks=1, num_features=8, growth_channels=4, batch_norm=False),
    "srresnet_x2": GeneratorConfig(num_blocks=1, num_features=8, scale=2, batch_norm=False),
}


def _net(config: GeneratorConfig) -> torch.nn.Module:
    torch.manual_seed(1)
    net = build_generator(config)
    # Random BN statistics, so BatchNorm is not the identity in eval mode.
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def nets():
    return {name: _net(cfg) for name, cfg in CONFIGS.items()}


def _whole(net, x):
    with torch.inference_mode():
        return net(x)


def _u8(t: torch.Tensor) -> np.ndarray:
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def test_plan_covers_every_pixel_once():
    for h, w, tile, pad in [(37, 53, 16, 5), (1, 1, 8, 3), (1, 50, 7, 2), (50, 1, 7, 0), (10, 10, 100, 4)]:
        cover = np.zeros((h, w), dtype=int)
        for t in plan_tiles(h, w, tile, pad):
            cover[t.core_y, t.core_x] += 1
            assert 0 <= t.in_y.start <= t.core_y.start and t.core_y.stop <= t.in_y.stop <= h
            assert 0 <= t.in_x.start <= t.core_x.start and t.core_x.stop <= t.in_x.stop <= w
            assert t.core_y.start - t.in_y.start == min(pad, t.core_y.start)
            assert t.in_x.stop - t.core_x.stop == min(pad, w - t.core_x.stop)
            assert t.core_y.stop - t.core_y.start <= tile
        assert (cover == 1).all()


def test_plan_whole_image_and_bad_values():
    (t,) = plan_tiles(20, 30, 0, 7)
    assert (t.in_y, t.in_x, t.core_y, t.core_x) == (slice(0, 20), slice(0, 30), slice(0, 20), slice(0, 30))
    with pytest.raises(SrganError):
        plan_tiles(0, 5, 4, 1)
    with pytest.raises(SrganError):
        plan_tiles(5, 5, -1, 1)


def test_default_pad_is_ceil_of_receptive_radius(nets):
    for name, net in nets.items():
        assert default_pad(net) == int(np.ceil(net.receptive_radius()))
        assert default_pad(CONFIGS[name]) == default_pad(net)
    # SRResNet x4 with 16 blocks: 9x9 head (4) + 32 convs + body tail (1) + 1 + 0.5 + tail 1 = 39.5
    assert default_pad(GeneratorConfig()) == 40


PAD_CONFIGS = {
    **CONFIGS,
    "srresnet_x8_3blocks": GeneratorConfig(num_blocks=3, num_features=8, scale=8),
    "rrdb_x2_2blocks": GeneratorConfig(
        arch="rrdb", num_blocks=2, num_features=8, growth_channels=4, batch_norm=False, scale=2
    ),
}


def _ring(size: int, c: int, d: int) -> torch.Tensor:
    """Mask of the pixels at Chebyshev distance exactly ``d`` from (c, c)."""
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[c - d : c + d + 1, c - d : c + d + 1] = True
    mask[c - d + 1 : c + d, c - d + 1 : c + d] = False
    return mask


@pytest.mark.parametrize("name", list(PAD_CONFIGS))
def test_default_pad_is_sufficient(name):
    """Changing pixels farther than the pad from a pixel must not change its output block."""
    config = PAD_CONFIGS[name]
    net = _net(config)
    s, pad = config.scale, default_pad(config)
    size = 2 * pad + 9
    c = size // 2
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(2))

    def block(img):
        return _whole(net, img)[:, :, c * s : (c + 1) * s, c * s : (c + 1) * s]

    far = torch.ones(size, size, dtype=torch.bool)
    far[c - pad : c + pad + 1, c - pad : c + pad + 1] = False
    y = x.clone()
    y[:, :, far] = torch.rand(3, int(far.sum()))
    torch.testing.assert_close(block(y), block(x), rtol=0, atol=1e-6)
    if config.arch == "srresnet":
        # ... and the pad is tight: the ring at distance exactly pad does reach the block, so a
        # smaller pad would show seams. (RRDB's 0.1-scaled init makes that far influence fall
        # below float32 resolution, so it is checked on SRResNet only.)
        z = x.clone()
        ring = _ring(size, c, pad)
        z[:, :, ring] = 1000.0  # a loud change, so its faint far influence stands out of float noise
        assert (block(z) - block(x)).abs().max() > 1e-5


CASES = [
    (37, 29, 16),  # not multiples of the tile
    (33, 33, 11),  # many edge tiles
    (1, 1, 8),
    (1, 50, 7),
    (50, 1, 7),
    (12, 9, 100),  # tile larger than the image
]


@pytest.mark.parametrize("name", ["srresnet_bn", "rrdb"])
@pytest.mark.parametrize("h,w,tile", CASES)
def test_tiled_equals_whole(nets, name, h, w, tile):
    net = nets[name]
    torch.manual_seed(h * 100 + w)
    x = torch.rand(1, 3, h, w)
    whole = _whole(net, x)
    pad = default_pad(net)
    for batch in (1, 3):
        tiled = upscale_tiled(net, x, CONFIGS[name].scale, tile, pad, batch=batch)
        assert tiled.shape == whole.shape
        torch.testing.assert_close(tiled, whole, rtol=0, atol=2e-5)
        # After rounding to 8 bits: identical except where float noise (~1e-6; convolutions
        # of different sizes sum in different orders) straddles a rounding boundary.
        diff = np.abs(_u8(tiled).astype(int) - _u8(whole).astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def test_too_small_pad_differs(nets):
    """Guards the test above: with no pad the seams are visible, so equality is not trivial."""
    net = nets["srresnet_bn"]
    x = torch.rand(1, 3, 24, 24)
    tiled = upscale_tiled(net, x, 4, 8, 0)
    assert (tiled - _whole(net, x)).abs().max() > 1e-3


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    h=st.integers(1, 30),
    w=st.integers(1, 30),
    tile=st.integers(0, 20),
    extra_pad=st.integers(0, 3),
    batch=st.integers(1, 4),
)
def test_tiled_equals_whole_property(nets, h, w, tile, extra_pad, batch):
    net = nets["srresnet_x2"]
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h * 31 + w))
    tiled = upscale_tiled(net, x, 2, tile, default_pad(net) + extra_pad, batch=batch)
    torch.testing.assert_close(tiled, _whole(net, x), rtol=0, atol=2e-5)


def test_batches_group_equal_windows_and_progress(nets):
    net = nets["srresnet_x2"]
    sizes: list[tuple[int, ...]] = []

    def forward(batch):
        sizes.append(tuple(batch.shape))
        return net(batch)

    calls = []
    x = torch.rand(1, 3, 40, 40)
    with torch.inference_mode():
        upscale_tiled(forward, x, 2, 10, default_pad(net), batch=4, progress=lambda d, t: calls.append((d, t)))
    groups: dict[tuple[int, int], int] = {}
    for t in plan_tiles(40, 40, 10, default_pad(net)):
        groups[t.in_shape] = groups.get(t.in_shape, 0) + 1
    # One forward call per batch of up to 4 tiles that share a window shape.
    assert len(sizes) == sum(-(-n // 4) for n in groups.values()) < 16
    assert sum(s[0] for s in sizes) == 16 and max(s[0] for s in sizes) == 4
    assert calls[-1] == (16, 16) and [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_oom_halves_tile_and_gives_same_output(nets):
    net = nets["srresnet_x2"]
    pad = default_pad(net)
    x = torch.rand(1, 3, 30, 26)
    seen = []

    def forward(batch):
        seen.append(batch.shape[2])
        if batch.shape[2] == 30:  # only the whole image (30 px high) "does not fit"
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return net(batch)

    notes: list[str] = []
    with torch.inference_mode():
        out = upscale_tiled(forward, x, 2, 0, pad, batch=2, on_note=notes.append)
    torch.testing.assert_close(out, _whole(net, x), rtol=0, atol=2e-5)
    assert len(notes) == 1 and "30 px" in notes[0] and "15 px" in notes[0]
    assert seen[0] == 30 and max(seen[1:]) < 30  # retried with smaller tiles


def test_oom_gives_up_below_min_tile(nets):
    def forward(batch):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    notes: list[str] = []
    with pytest.raises(SrganError, match="out of GPU memory"):
        upscale_tiled(forward, torch.rand(1, 3, 64, 64), 2, 64, 4, on_note=notes.append)
    assert len(notes) == 3  # 64 -> 32 -> 16 -> 8, then stop: never loops forever


def test_an_mps_out_of_memory_error_is_retried_with_smaller_tiles_and_others_are_not(nets):
    """MPS's out-of-memory error is a plain RuntimeError: a Mac's image failed where a GPU's was
    retried with smaller tiles."""
    net = nets["srresnet_x2"]
    x = torch.rand(1, 3, 30, 26)

    def forward(batch):
        if batch.shape[2] == 30:
            raise RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.0 GB)")
        return net(batch)

    notes: list[str] = []
    with torch.inference_mode():
        out = upscale_tiled(forward, x, 2, 0, default_pad(net), on_note=notes.append)
    torch.testing.assert_close(out, _whole(net, x), rtol=0, atol=2e-5)
    assert len(notes) == 1

    def broken(batch):
        raise RuntimeError("some other failure")

    with pytest.raises(RuntimeError, match="some other failure"):
        upscale_tiled(broken, x, 2, 0, 4)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 3072000000 bytes. Error code 12 (Cannot allocate memory)"
        ),
        MemoryError(),
    ],
)
def test_running_out_of_memory_on_the_cpu_is_retried_with_smaller_tiles(nets, error):
    # --tile 0 on a large image under a memory limit failed after minutes with PyTorch's allocator message
    # and no advice; the GPU's out-of-memory error was retried with smaller tiles
    net = nets["srresnet_x2"]
    x = torch.rand(1, 3, 30, 26)

    def forward(batch):
        if batch.shape[2] == 30:
            raise error
        return net(batch)

    notes: list[str] = []
    with torch.inference_mode():
        out = upscale_tiled(forward, x, 2, 0, default_pad(net), on_note=notes.append)
    torch.testing.assert_close(out, _whole(net, x), rtol=0, atol=2e-5)
    assert notes == ["out of CPU memory with 30 px tiles; retrying with 15 px tiles"]

    def never(batch):
        raise error

    with pytest.raises(SrganError, match="^out of CPU memory even with 15 px tiles; free memory$"):
        upscale_tiled(never, x, 2, 64, 4)


def test_choose_tile_cpu_bounds_memory():
    cfg = GeneratorConfig()
    cpu = torch.device("cpu")
    assert choose_tile(cfg, cpu, 128, 128) == 0  # a small image runs whole
    big = choose_tile(cfg, cpu, 4000, 3000)
    assert 200 <= big <= 600 and big % 8 == 0
    assert choose_tile(cfg, cpu, 4000, 3000, batch=4) < big
    assert choose_tile(GeneratorConfig(num_blocks=1, num_features=8), cpu, 4000, 3000) > big


def test_default_batch_is_one_larger_tile_on_the_cpu():
    assert default_batch(torch.device("cpu")) == 1
    assert default_batch(torch.device("cuda", 0)) == 4 and default_batch("mps") == 4
    cfg, cpu = GeneratorConfig(), torch.device("cpu")
    one, four = choose_tile(cfg, cpu, 4000, 3000, batch=1), choose_tile(cfg, cpu, 4000, 3000, batch=4)
    pad = default_pad(cfg)
    assert ((one + 2 * pad) / one) ** 2 < ((four + 2 * pad) / four) ** 2 - 0.3  # far less overlap


def test_sink_gets_every_output_pixel_once_with_the_canvas_values(nets):
    net = nets["srresnet_bn"]
    torch.manual_seed(4)
    x = torch.rand(1, 3, 19, 23)
    pad = default_pad(net)
    canvas = upscale_tiled(net, x, 4, 8, pad, batch=2)
    hits = torch.zeros(19 * 4, 23 * 4, dtype=torch.int32)
    pieces = []

    def sink(rows, cols, core):
        hits[rows, cols] += 1
        pieces.append((rows, cols, core.clone()))

    assert upscale_tiled(net, x, 4, 8, pad, batch=2, sink=sink) is None
    assert len(pieces) == 9 and bool((hits == 1).all())
    for rows, cols, core in pieces:
        assert core.dtype == torch.float32 and core.device.type == "cpu"
        torch.testing.assert_close(core, canvas[0, :, rows, cols], rtol=0, atol=0)


def test_a_tile_smaller_than_the_least_is_a_usage_error(tmp_path):
    """`--tile 1` ran each pixel as an 81x81 window (the pad on every side): minutes a pixel."""
    from click.testing import CliRunner
    from PIL import Image

    from srgan_cli.cli import main

    Image.new("RGB", (12, 12), (90, 120, 150)).save(tmp_path / "a.png")
    for tile in ("1", "7"):
        result = CliRunner().invoke(
            main, ["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "--tile", tile]
        )
        assert result.exit_code == 2 and "--tile" in result.output and "at least 8" in result.output, result.output
    assert not (tmp_path / "b.png").exists()


def test_the_cpu_runs_a_medium_image_whole_and_cuts_a_large_one_into_tiles_as_before():
    """The estimate of the peak memory was twice the measured one on the CPU, so a 500 x 500 image
    in bf16 was cut into 4 tiles that recomputed a third of their area (20% slower, the same
    bytes); a large image's tiles keep their size (larger ones were no faster and used more)."""
    cfg, cpu = GeneratorConfig(), torch.device("cpu")
    assert choose_tile(cfg, cpu, 500, 500, dtype=torch.bfloat16) == 0
    assert choose_tile(cfg, cpu, 400, 400, dtype=torch.float32) == 0
    assert choose_tile(cfg, cpu, 500, 500, dtype=torch.float32) == 336
    assert choose_tile(cfg, cpu, 700, 700, dtype=torch.bfloat16) == 480
    assert choose_tile(cfg, cpu, 4000, 3000, dtype=torch.bfloat16) == 480
