"""Training throughput: the data loader, the mse step and the gan step, in HR patches per second.

    python benchmarks/train_speed.py                       # about 1-2 min on 2 CPU cores: batch 4, 48 px
    python benchmarks/train_speed.py --device cuda --batch-size 16 --patch-size 96 --steps 20   # the paper's batch

Prints a markdown table. Each step row times srgan's own training step (srgan_cli.train) on
one pre-made batch, so it measures the model and optimiser, not the loader; the loader rows
time the loader alone. Warm-up steps first; then --steps steps back to back, as the training
loop runs them (no wait for the device between steps), timed from one device sync to the
next; the median of three such runs is reported. The loader rows include making the LR batch (on the
CPU). Peak memory: on CUDA the peak allocated by torch for
that row; on the CPU the process's peak resident size so far (it only grows down the table).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))  # _cli, also when this file is imported by its path

from _cli import non_negative_int, positive_int, run  # noqa: E402

from srgan_cli.config import GeneratorConfig  # noqa: E402
from srgan_cli.data import PatchDataset, make_loader, make_pair, scan_images  # noqa: E402
from srgan_cli.device import choose_device, device_name  # noqa: E402
from srgan_cli.errors import SrganError  # noqa: E402
from srgan_cli.models import build_generator  # noqa: E402
from srgan_cli.train import Dist, TrainConfig, _Trainer  # noqa: E402
from srgan_cli.weights import save_generator  # noqa: E402

DEFAULT_DATA = REPO / ".." / "shared" / "data" / "train"
DEFAULT_VGG = REPO / ".." / "shared" / "data" / "vgg19" / "vgg19_features_caffe_fp16.safetensors"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def bench_loader(
    data: Path, args: argparse.Namespace, cache: bool, workers: int, cache_dir: Path | None = None, seed: int = 0
) -> float:
    """Loader patches/s; ``cache_dir``: --cache disk there (cold where the folder is empty: the
    images decoded and written; warm where an earlier call with the same ``seed`` filled it)."""
    scan = scan_images(data, args.patch_size)
    dataset = PatchDataset(scan, args.patch_size, seed=seed, cache=cache, cache_dir=cache_dir)
    batches = args.loader_batches
    loader = make_loader(dataset, args.batch_size, workers=workers, stop_step=batches + 2)
    it = iter(loader)
    next(it)
    next(it)  # warm-up: workers started, first images decoded
    t0 = time.perf_counter()
    for _ in range(batches):
        make_pair(next(it), 4, torch.device("cpu"))  # the crops, then their bicubic LR, as in training
    seconds = time.perf_counter() - t0
    del it, loader
    return batches * args.batch_size / seconds


def bench_step(stage: str, variant: str, args: argparse.Namespace, init: Path, device: torch.device):
    options = {
        "stage": stage,
        "data": str(args.data),
        "batch_size": args.batch_size,
        "patch_size": args.patch_size,
        "device": str(device),
        "workers": 0,
        "precision": "bf16" if "bf16" in variant else "fp32",
        "channels_last": "channels_last" in variant,
        "compile": "compile" in variant,
        "cuda_graphs": "graphs" in variant,
    }
    if stage == "gan":
        options.update(init=str(init), vgg_weights=str(args.vgg_weights) if args.vgg_weights else None)
    cfg = TrainConfig.from_dict(options).resolved()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _Trainer(cfg, Path(tmp), None, Dist(), device, None)
        trainer._build()
        trainer._losses()
        hr_u8 = torch.randint(0, 256, (args.batch_size, 3, args.patch_size, args.patch_size), dtype=torch.uint8)
        lr, hr = make_pair(hr_u8, cfg.scale, device)
        _reset_peak(device)
        for _ in range(args.warmup):
            trainer._train_step(lr, hr)
        times = []
        for _ in range(3):
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                trainer._train_step(lr, hr)
            _sync(device)
            times.append((time.perf_counter() - t0) / args.steps)
    return args.batch_size / statistics.median(times), _peak_mb(device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="training images folder")
    parser.add_argument("--vgg-weights", type=Path, default=DEFAULT_VGG if DEFAULT_VGG.is_file() else None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument("--patch-size", type=positive_int, default=48, help="HR patch side (paper: 96)")
    parser.add_argument("--steps", type=positive_int, default=3, help="timed steps per row (median reported)")
    parser.add_argument("--warmup", type=non_negative_int, default=1)
    parser.add_argument("--loader-batches", type=positive_int, default=20)
    parser.add_argument("--workers", type=non_negative_int, nargs="*", default=[0, 2])
    parser.add_argument("--threads", type=positive_int, default=None)
    parser.add_argument("--skip-gan", action="store_true")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where the cache disk rows write (a temp folder)")
    parser.add_argument("--compile", action="store_true", help="add rows with torch.compile (slow to warm up)")
    args = parser.parse_args(argv)
    try:
        device = choose_device(args.device)
        # The values srgan train itself would refuse (a patch that is not a multiple of the scale)
        TrainConfig.from_dict(
            {"stage": "mse", "data": str(args.data), "batch_size": args.batch_size, "patch_size": args.patch_size}
        ).resolved()
    except SrganError as exc:  # no such device here, or an OptionError
        parser.error(str(exc))
    scan_images(args.data, args.patch_size)  # a missing folder or one without usable images: one line
    if args.vgg_weights is not None and not args.skip_gan and not args.vgg_weights.is_file():
        raise SrganError(f"--vgg-weights {args.vgg_weights}: no such file")
    if args.threads:
        torch.set_num_threads(args.threads)
    out = sys.stdout.write
    out(
        f"device {device} ({device_name(device)}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
        f"batch {args.batch_size}, HR patch {args.patch_size}, SRResNet 16x64 (paper)\n\n"
    )
    out("| what | setting | patches/s | peak memory (MiB) |\n|---|---|---|---|\n")
    for cache in (True, False):
        for workers in args.workers:
            rate = bench_loader(args.data, args, cache, workers)
            out(f"| loader | cache {'on' if cache else 'off'}, {workers} workers | {rate:.1f} | - |\n")
            sys.stdout.flush()
    for workers in args.workers:
        with tempfile.TemporaryDirectory(dir=args.cache_dir) as tmp:
            # the same seed twice: the second pass reads back exactly the entries the first wrote
            # (from the page cache: this machine's memory, not its disk, unless the set exceeds it)
            for what in ("cold", "warm"):
                rate = bench_loader(args.data, args, False, workers, cache_dir=Path(tmp))
                out(f"| loader | cache disk ({what}), {workers} workers | {rate:.1f} | - |\n")
                sys.stdout.flush()
    with tempfile.TemporaryDirectory() as tmp:
        init = Path(tmp) / "init.safetensors"
        gconf = GeneratorConfig()
        save_generator(init, build_generator(gconf), gconf)
        stages = ["mse"] if args.skip_gan else ["mse", "gan"]
        for stage in stages:
            variants = ["fp32", "channels_last", "bf16 autocast", "bf16 autocast + channels_last"]
            if args.compile:
                variants.append("bf16 autocast + channels_last + compile")
            if device.type == "cuda" and stage == "mse":
                variants.append("bf16 autocast + channels_last + cuda graphs")
            for variant in variants:
                try:
                    rate, peak = bench_step(stage, variant, args, init, device)
                except Exception as exc:  # a row that cannot run on this machine says why, the table goes on
                    out(f"| {stage} step | {variant} | failed: {type(exc).__name__}: {str(exc)[:120]} | - |\n")
                    continue
                out(f"| {stage} step | {variant} | {rate:.2f} | {peak:.0f} |\n")
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
