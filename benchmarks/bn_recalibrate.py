"""Re-estimate a generator's BatchNorm statistics on training patches, and write the result.

    python benchmarks/bn_recalibrate.py srgan_x4 out/srgan_x4_bn.safetensors
    srgan bench --set set5 --set set14 --set bsd100 -m srgan_x4 -m out/srgan_x4_bn.safetensors \\
        --per-image --no-lpips --data-dir ../shared/data/bench --device cpu

A check for weight averages ("model soups", `srgan interpolate`): the mean of two runs carries
the mean of their BatchNorm running statistics, which need not be the statistics of the mean
network. This resets them and averages them afresh (cumulative, no momentum) over `--batches`
batches of training patches cut and downscaled as `srgan train` does (the network in training
mode, without gradients), then writes the generator with the rest of its metadata. fp32 on the
CPU; about 50 s for 200 batches of 16 64 px patches on 2 cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # srgan_cli from this checkout
sys.path.insert(0, str(ROOT / "benchmarks"))  # _cli, also when this file is imported by its path

from _cli import fail, non_negative_int, positive_int, run  # noqa: E402

from srgan_cli.data import PatchDataset, make_loader, make_pair, scan_images  # noqa: E402
from srgan_cli.hub import resolve_weights  # noqa: E402
from srgan_cli.weights import load_generator, save_generator  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a named model or a .safetensors file")
    parser.add_argument("output", type=Path, help="the .safetensors file to write")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "train"), help="training images")
    parser.add_argument("--batches", type=positive_int, default=200)
    parser.add_argument("--batch-size", type=positive_int, default=16)
    parser.add_argument("--patch-size", type=positive_int, default=64, help="HR patch side, as in training")
    parser.add_argument("--seed", type=non_negative_int, default=99)
    parser.add_argument("--threads", type=positive_int, default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    args = parser.parse_args(argv)
    # Refused before any work (save_generator refuses again, should the file appear meanwhile).
    if args.output.exists() and not args.overwrite:
        return fail(f"{args.output}: already exists; choose another name or pass --overwrite")
    if not args.output.parent.is_dir():
        return fail(f"{args.output}: folder {args.output.parent} does not exist; create it first")
    if args.threads:
        torch.set_num_threads(args.threads)

    model, config, meta = load_generator(resolve_weights(args.model))
    if args.patch_size % config.scale or args.patch_size < 2 * config.scale:
        parser.error(f"--patch-size must be a multiple of the scale ({config.scale}), at least {2 * config.scale}")
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return fail(f"{args.model}: the generator has no BatchNorm layers; there is nothing to recalibrate")
    for module in norms:
        module.reset_running_stats()
        module.momentum = None  # a plain average over every batch
    scan = scan_images(args.data, args.patch_size)
    dataset = PatchDataset(scan, args.patch_size, seed=args.seed, group=args.batch_size)
    model.train()
    with torch.no_grad():
        for hr in make_loader(dataset, args.batch_size, stop_step=args.batches):
            lr, _ = make_pair(hr, config.scale, torch.device("cpu"))
            model(lr)
    model.eval()
    keep = {k: v for k, v in meta.items() if k not in ("format", "format_version", "config")}
    keep["bn_recalibrated"] = f"{args.batches} batches of {args.batch_size} {args.patch_size} px training patches"
    save_generator(args.output, model, config, metadata=keep, overwrite=args.overwrite)
    sys.stdout.write(f"wrote {args.output}\n")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
