"""Upscale speed: output megapixels per second of the generator forward, several ways, in one run.

    python benchmarks/upscale_speed.py                      # CPU: 64 and 128 px inputs, 3 repeats
    python benchmarks/upscale_speed.py --device cuda --sizes 128,256,512 --tiles 0,128 --compile
    python benchmarks/upscale_speed.py --model srresnet_x4 --threads 2

Variants, all on the same input and weights:
  fp32 (ref)       plain PyTorch: the saved network (BatchNorm as trained), fp32, contiguous
                   NCHW input, inference_mode, no tiling
  channels_last    the same in NHWC memory format
  bf16             the same network cast to bfloat16 (where the device runs bf16); fp16 on CUDA
  api tile=T       srgan_cli.api.load_model + upscale_array with their defaults (precision auto,
                   BatchNorm folded into the convolutions, channels_last on the CPU), tile T
                   from --tiles ('auto' lets the API choose, 0 = whole)
  compile          torch.compile of the fp32 module (with --compile)

For each: warm-up runs, then the median of --repeats timed runs (the device is synchronised
before every clock read); output MP/s; peak memory during that variant (CUDA:
torch.cuda.max_memory_allocated; CPU: the process's peak RSS from getrusage, reset before each
variant through /proc/self/clear_refs where Linux allows, else a running maximum, marked '>=');
and the max / RMS difference from the fp32 reference in gray levels (0..255, outputs clamped to
[0, 1]). The table is printed as markdown.

Input: --input photo (default) is the bundled example photo (weights/examples/chelsea.png),
cropped or mirrored to each size, since the differences that matter are those on photos;
--input noise is uniform noise, a worst case with far more high-frequency content than any
photo; --input FILE takes any image.

Without --model, the default named model is used if its weights are installed, else an
SRResNet (16 blocks, 64 features) with random weights: speed is the same, but the differences
of a random network understate those of a trained one (its outputs span a small range).
--model random-rrdb times ESRGAN's RRDB generator (23 blocks, 64 features, growth 32) the
same way, with random weights, until trained RRDB weights exist.
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _cli, also when this file is imported by its path

from _cli import positive_int  # noqa: E402


def _reset_cpu_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _cpu_peak_mib() -> float:
    scale = 1024 if sys.platform != "darwin" else 1  # ru_maxrss is KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


class PeakMemory:
    """Peak memory of the code run between start() and stop(), in MiB."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.exact = True

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.exact = _reset_cpu_peak()

    def stop(self) -> str:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return f"{torch.cuda.max_memory_allocated(self.device) / 2**20:.0f}"
        return f"{'' if self.exact else '>='}{_cpu_peak_mib():.0f}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device, warmup: int, repeats: int) -> tuple[float, np.ndarray]:
    for _ in range(warmup):
        out = fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _as_gray_levels(y) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().float().clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()
    return np.asarray(y, dtype=np.float64) * 255.0


def forward(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return net(x)


def _bf16_ok(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def _weights(spec: str | None, tmp: Path) -> tuple[str, str]:
    """(weights path or name, description) for --model, or the default / random fallback."""
    from srgan_cli.config import GeneratorConfig
    from srgan_cli.models import build_generator
    from srgan_cli.weights import DEFAULT_MODEL, MODELS, save_generator

    if spec in ("random-srresnet", "random-rrdb"):
        torch.manual_seed(0)
        rrdb = spec == "random-rrdb"
        config = GeneratorConfig(
            arch="rrdb" if rrdb else "srresnet", num_blocks=23 if rrdb else 16, batch_norm=not rrdb
        )
        path = save_generator(tmp / f"{spec}.safetensors", build_generator(config), config)
        name = "RRDB 23x64 (ESRGAN)" if rrdb else "SRResNet 16x64"
        return str(path), f"{name}, random weights"
    if spec:
        return spec, spec
    entry = MODELS.get(DEFAULT_MODEL)
    if entry is not None and entry.bundled_path() is not None:
        return DEFAULT_MODEL, DEFAULT_MODEL
    torch.manual_seed(0)
    config = GeneratorConfig()
    path = save_generator(tmp / "random_srresnet.safetensors", build_generator(config), config)
    return str(path), "SRResNet 16x64, random weights (default model not installed)"


def _source(spec: str) -> np.ndarray | None:
    """The input picture as float32 RGB in [0, 1], or None for noise."""
    from srgan_cli.errors import SrganError
    from srgan_cli.images import read_image

    if spec == "noise":
        return None
    example = Path(__file__).resolve().parents[1] / "weights" / "examples" / "chelsea.png"
    path = example if spec == "photo" else Path(spec)
    try:
        return read_image(path).rgb  # float32 RGB in [0, 1]
    except (SrganError, OSError) as exc:
        raise SrganError(f"--input {spec}: {exc}") from None


def _fit(rgb: np.ndarray, size: int) -> np.ndarray:
    """A size x size crop of the picture, mirrored first where it is smaller."""
    h, w = rgb.shape[:2]
    if h < size or w < size:
        rgb = np.pad(rgb, ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0)), mode="symmetric")
        h, w = rgb.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(rgb[top : top + size, left : left + size], dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model",
        help="model name, .safetensors file, or random-srresnet / random-rrdb (the default "
        "architecture with random weights: the same speed as trained ones)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps (default cpu)")
    parser.add_argument("--sizes", default="64,128", help="square LR input sizes in px, comma-separated")
    parser.add_argument("--tiles", default="auto,0", help="tile sizes for the api path: auto, 0 (whole) or N")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (slow first call)")
    parser.add_argument("--no-bf16", action="store_true", help="skip the bf16 variant")
    parser.add_argument("--input", default="photo", help="photo (bundled example), noise, or an image FILE")
    parser.add_argument("--api-precision", default="auto", help="precision of the api rows (default auto)")
    args = parser.parse_args(argv)

    from srgan_cli import api
    from srgan_cli.device import choose_device, device_name
    from srgan_cli.errors import SrganError
    from srgan_cli.hub import resolve_weights
    from srgan_cli.weights import load_generator

    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
        tiles = [None if t.strip() == "auto" else int(t) for t in args.tiles.split(",") if t.strip()]
    except ValueError:
        parser.error("--sizes and --tiles take comma-separated integers (tiles also 'auto')")
    if not sizes or min(sizes) < 8 or args.repeats < 1 or args.warmup < 0:
        parser.error("sizes must be >= 8 px, --repeats >= 1, --warmup >= 0")
    if any(t is not None and t < 0 for t in tiles):
        parser.error("--tiles takes 'auto', 0 (whole) or tile sizes in px, comma-separated")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = choose_device(args.device)
    except SrganError as exc:
        parser.error(str(exc))

    with tempfile.TemporaryDirectory() as tmp:
        spec, described = _weights(args.model, Path(tmp))
        try:
            # The reference is the network as saved, in plain PyTorch: no BatchNorm folding,
            # no memory-format change, fp32 (the api path applies its own optimisations).
            module, config, _ = load_generator(resolve_weights(spec), device)
            module.eval()
            api_model = api.load_model(spec, device=device, precision=args.api_precision)
            source = _source(args.input)
        except SrganError as exc:
            print(f"error: {exc}", file=sys.stderr)  # noqa: T201 - a script's own output
            return 1
    scale = config.scale

    head = [
        f"device: {device} ({device_name(device)}), torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"model: {described}, x{scale}; api defaults: {str(api_model.dtype).replace('torch.', '')}, "
        f"channels_last={api_model.channels_last}",
        f"input: {args.input}; warm-up {args.warmup}, median of {args.repeats} runs; "
        "MP/s = output megapixels per second",
        "",
        "| input | variant | MP/s | vs ref | peak MiB | max diff | RMS diff |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(head), flush=True)  # noqa: T201

    # Every variant's copy of the weights is made here, outside the timed region.
    cl_module = copy.deepcopy(module).to(memory_format=torch.channels_last)
    low_dtypes = [torch.bfloat16] if (_bf16_ok(device) and not args.no_bf16) else []
    if device.type == "cuda":
        low_dtypes.append(torch.float16)
    low_modules = {dtype: copy.deepcopy(module).to(dtype) for dtype in low_dtypes}
    compiled = torch.compile(module) if args.compile else None

    generator = torch.Generator().manual_seed(0)
    for size in sizes:
        if source is None:
            x = torch.rand(1, 3, size, size, generator=generator)
        else:
            x = torch.from_numpy(_fit(source, size)).permute(2, 0, 1)[None].contiguous()
        rgb = x[0].permute(1, 2, 0).numpy()
        x_dev = x.to(device)
        x_cl = x_dev.contiguous(memory_format=torch.channels_last)
        out_mp = (size * scale) ** 2 / 1e6

        variants = [
            ("fp32 (ref)", lambda x=x_dev: forward(module, x)),
            ("channels_last fp32", lambda x=x_cl: forward(cl_module, x)),
        ]
        for dtype, low in low_modules.items():
            x_low = x_dev.to(dtype)
            variants.append((str(dtype).replace("torch.", ""), lambda low=low, x=x_low: forward(low, x)))
        for tile in tiles:
            label = "auto" if tile is None else str(tile)
            variants.append((f"api tile={label}", lambda t=tile, rgb=rgb: api.upscale_array(api_model, rgb, tile=t)))
        if compiled is not None:
            variants.append(("torch.compile fp32", lambda x=x_dev: forward(compiled, x)))

        ref_out, ref_speed = None, None
        for name, fn in variants:
            memory = PeakMemory(device)
            memory.start()
            try:
                seconds, out = _time(fn, device, max(args.warmup, 1 if "compile" in name else 0), args.repeats)
            except (RuntimeError, SrganError) as exc:
                line = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else type(exc).__name__
                print(f"| {size}px | {name} | failed: {line} | | | | |", flush=True)  # noqa: T201
                continue
            peak = memory.stop()
            speed = out_mp / seconds
            levels = _as_gray_levels(out)
            if ref_out is None:
                ref_out, ref_speed = levels, speed
            diff = levels - ref_out
            row = (
                f"| {size}px | {name} | {speed:.3f} | {speed / ref_speed:.2f}x | {peak} | "
                f"{np.abs(diff).max():.3g} | {np.sqrt(np.mean(diff**2)):.3g} |"
            )
            print(row, flush=True)  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
