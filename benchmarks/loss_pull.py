"""How hard each training loss pulls on flat pixels and elsewhere: for choosing loss weights.

    python benchmarks/loss_pull.py --vgg-weights ../shared/data/vgg19/vgg19_features_caffe_fp16.safetensors
    python benchmarks/loss_pull.py -m srgan_x4 -m runs/x/generator.safetensors --crops 64 --vgg-weights ...

A loss's weight says little until one knows the size of its gradient. On random crops of the
training images (LR made with the MATLAB-compatible bicubic, as `srgan train` makes it), each
model's output is scored by the gan stage's loss terms, each at weight 1: the content loss
(--content-loss, default vgg54), the L1 pixel loss, `losses.flat_loss` (`--flat-weight`),
`losses.grid_loss` (`--grid-weight`), `losses.block_loss` (`--block-weight`),
`losses.local_grid_loss` (`--local-grid-weight`) and `losses.spectral_loss`
(`--spectral-weight`). For each term the table gives its value and
the mean |d term / d SR| on the flat pixels (`losses.flat_map` = 1: HR's 15x15 luma std at
most 2 gray levels) and on the others. The last column is the weight at which the term pulls
flat pixels as hard as the content loss does. fp32, on the CPU; a minute or two.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # srgan_cli from this checkout
sys.path.insert(0, str(ROOT / "benchmarks"))  # _cli, also when this file is imported by its path

from _cli import non_negative_int, positive_int, run  # noqa: E402

from srgan_cli import losses  # noqa: E402
from srgan_cli.data import list_images, make_pair, random_patch  # noqa: E402
from srgan_cli.errors import SrganError  # noqa: E402
from srgan_cli.hub import resolve_weights  # noqa: E402
from srgan_cli.images import read_rgb8  # noqa: E402
from srgan_cli.weights import load_generator  # noqa: E402


def training_crops(data: Path, count: int, size: int, seed: int) -> torch.Tensor:
    """``count`` random ``size`` px crops (flipped and rotated, as the trainer's), uint8 NCHW.

    Images smaller than a crop are passed over; if every one is, a one-line SrganError."""
    if not data.is_dir():
        raise SrganError(f"--data {data}: no such folder; give a folder (tree) of training images")
    paths = list_images(data)
    if not paths:
        raise SrganError(f"--data {data}: no images in it")
    rng = np.random.default_rng(seed)
    out = []
    small: set[int] = set()  # images found smaller than a crop: not read again
    while len(out) < count:
        index = int(rng.integers(len(paths)))
        if index in small:
            continue
        image = read_rgb8(paths[index])
        if min(image.shape[:2]) >= size:
            out.append(random_patch(image, size, rng))
        else:
            small.add(index)
            if len(small) == len(paths):
                raise SrganError(f"--data {data}: no image is at least {size} px on each side (--size)")
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)


def _mean(values: torch.Tensor) -> float | None:
    return values.mean().item() if values.numel() else None  # None: no such pixel (the mean would be NaN)


def pulls(
    sr: torch.Tensor, hr: torch.Tensor, terms: dict, flat: torch.Tensor
) -> dict[str, tuple[float, float | None, float | None]]:
    """Per term: its value, mean |gradient| over SR on flat pixels and on the others (None where
    there are none)."""
    out = {}
    mask = flat.expand_as(sr)
    for name, term in terms.items():
        x = sr.detach().clone().requires_grad_(True)
        value = term(x, hr)
        (grad,) = torch.autograd.grad(value, x)
        grad = grad.abs()
        out[name] = (value.item(), _mean(grad[mask]), _mean(grad[~mask]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--model", dest="models", action="append", help="a name or FILE (default srgan_x4)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "train"))
    parser.add_argument("--vgg-weights", required=True)
    parser.add_argument("--content-loss", default="vgg54")
    parser.add_argument("--crops", type=positive_int, default=64)
    parser.add_argument("--size", type=positive_int, default=64, help="HR crop side, as srgan train --patch-size")
    parser.add_argument("--seed", type=non_negative_int, default=1)
    args = parser.parse_args(argv)
    if args.size % 4 or args.size < 16:
        parser.error(f"--size must be a multiple of 4 (the scale) and at least 16, got {args.size}")
    specs = args.models or ["srgan_x4"]
    weights = [resolve_weights(spec) for spec in specs]  # an unknown model fails before any work
    torch.manual_seed(args.seed)
    content = losses.content_loss_from_spec(args.content_loss, args.vgg_weights)
    lr, hr = make_pair(training_crops(Path(args.data), args.crops, args.size, args.seed), 4, torch.device("cpu"))
    flat = losses.flat_map(hr) == 1
    terms = {
        args.content_loss: content,
        "l1": lambda sr, hr: losses.pixel_loss(sr, hr, "l1"),
        "flat": losses.flat_loss,
        "grid": losses.grid_loss,
        "block": losses.block_loss,
        "local grid": losses.local_grid_loss,
        "spectral": losses.spectral_loss,
    }
    sys.stdout.write(f"{args.crops} crops of {args.size} px, {flat.float().mean().item():.1%} of pixels flat\n\n")
    sys.stdout.write(
        "| model | term | value | mean pull, flat pixels | elsewhere | weight to match the content loss |\n"
    )
    sys.stdout.write("|---|---|---|---|---|---|\n")
    for spec, path in zip(specs, weights, strict=True):
        model, _, _ = load_generator(path)
        with torch.no_grad():
            sr = model(lr).clamp(0, 1)
        table = pulls(sr, hr, terms, flat)
        reference = table[args.content_loss][1]
        for name, (value, on_flat, elsewhere) in table.items():
            match = f"{reference / on_flat:.3g}" if on_flat and reference is not None else "-"
            cells = " | ".join("-" if v is None else f"{v:.2e}" for v in (on_flat, elsewhere))
            sys.stdout.write(f"| {Path(spec).stem} | {name} | {value:.3e} | {cells} | {match} |\n")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
