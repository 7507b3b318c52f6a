"""Where the 4 px grid texture of a GAN fine-tune comes from: the VGG content loss's gradient.

    python benchmarks/vgg_grid.py --vgg-weights ../shared/data/vgg19/vgg19_features_caffe_fp16.safetensors
    python benchmarks/vgg_grid.py --start srresnet_x4 --gan srgan_x4 --gan runs/b/generator.safetensors ...

On random 96 px crops of the training images (LR made with the MATLAB-compatible bicubic), it
measures the "regular 4 px part" of a model's output: the mean of SR - HR (gray levels, the
three channels averaged) at each of the 16 pixel positions modulo 4, i.e. the grid the x4
upsampling can draw. For the --start model (the PSNR model a GAN run starts from) it then takes
the gradient of the VGG54 content loss with respect to the output and reduces it the same way:
the 4x4 pattern gradient descent on VGG54 alone would add. A correlation near 1 between that
pattern and a --gan model's grid says the content loss drew the grid; the same with the loss
averaged over the 16 offsets 0..3 x 0..3 of `srgan train --content-jitter 4` shows what the
jitter leaves of that push. fp32, on the CPU; one to two minutes.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # srgan_cli from this checkout
sys.path.insert(0, str(ROOT / "benchmarks"))  # _cli, also when this file is imported by its path

from _cli import positive_int, run  # noqa: E402

from srgan_cli.errors import SrganError  # noqa: E402
from srgan_cli.hub import resolve_weights  # noqa: E402
from srgan_cli.images import IMAGE_SUFFIXES  # noqa: E402
from srgan_cli.losses import content_loss_from_spec  # noqa: E402
from srgan_cli.resize import imresize_torch  # noqa: E402
from srgan_cli.weights import load_generator  # noqa: E402


def crops(data: Path, count: int, size: int, seed: int) -> torch.Tensor:
    """``count`` random ``size`` px crops of the images under ``data``, fewer if fewer images are
    that large, one at most per image; a one-line SrganError if none is."""
    if not data.is_dir():
        raise SrganError(f"--data {data}: no such folder; give a folder (tree) of training images")
    files = sorted(p for p in data.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    rnd = random.Random(seed)
    rnd.shuffle(files)
    out = []
    for path in files:
        image = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255
        if min(image.shape[:2]) < size:
            continue
        i, j = rnd.randrange(image.shape[0] - size + 1), rnd.randrange(image.shape[1] - size + 1)
        out.append(torch.from_numpy(image[i : i + size, j : j + size].copy()).permute(2, 0, 1))
        if len(out) == count:
            break
    if not out:
        raise SrganError(f"--data {data}: no image is at least {size} px on each side")
    return torch.stack(out)


def regular(t: torch.Tensor, scale: int = 4) -> torch.Tensor:
    """Mean over batch, channels and scale x scale cells of each position modulo scale, centred."""
    b, _, h, w = t.shape
    m = t.mean(1).reshape(b, h // scale, scale, w // scale, scale).mean((0, 1, 3))
    return m - m.mean()


def emit(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm()))


def vgg_push(content, sr: torch.Tensor, hr: torch.Tensor, jitter: int) -> torch.Tensor:
    """The 4x4 pattern of -d(VGG loss)/d(SR), the loss averaged over all jitter offsets."""
    sr = sr.clone().requires_grad_(True)
    cut = jitter - 1
    h, w = sr.shape[-2] - cut, sr.shape[-1] - cut
    for dy in range(jitter):
        for dx in range(jitter):
            window = (..., slice(dy, dy + h), slice(dx, dx + w))
            (content(sr[window], hr[window]) / jitter**2).backward()
    return -regular(sr.grad)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="srresnet_x4", help="the PSNR model GAN runs start from")
    parser.add_argument("--gan", action="append", help="GAN models to compare (default: srgan_x4)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "train")
    parser.add_argument("--vgg-weights", type=Path, required=True)
    parser.add_argument("--patches", type=positive_int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # The models and the VGG weights are found (or refused, in one line) before any image is read.
    gans = args.gan or ["srgan_x4"]
    paths = {name: resolve_weights(name) for name in [args.start, *gans]}
    torch.manual_seed(args.seed)
    content = content_loss_from_spec("vgg54", args.vgg_weights)
    hr = crops(args.data, args.patches, 96, args.seed)
    lr = imresize_torch(hr, 0.25).clamp(0, 1)

    def output(name: str) -> torch.Tensor:
        model, _, _ = load_generator(paths[name])
        with torch.no_grad():
            return model.eval()(lr)

    start_sr = output(args.start)
    grids = {name: regular(output(name) - hr) * 255 for name in gans}
    pushes = {j: vgg_push(content, start_sr, hr, j) for j in (1, 4)}
    emit(f"{len(hr)} crops of 96 px from {args.data.name}/; VGG54 gradient at {args.start}")
    emit()
    emit("| GAN model | its grid: range (gray levels) | corr. with the VGG push | same, jitter 4 |")
    emit("|---|---|---|---|")
    start_grid = regular(start_sr - hr) * 255
    emit(f"| {args.start} (start) | {float(start_grid.max() - start_grid.min()):.2f} | | |")
    for name, grid in grids.items():
        span = float(grid.max() - grid.min())
        emit(f"| {name} | {span:.2f} | {corr(pushes[1], grid):+.2f} | {corr(pushes[4], grid):+.2f} |")
    ratio = float(pushes[4].norm() / pushes[1].norm())
    emit()
    emit(f"size of the VGG push on the 4x4 grid with jitter 4: {ratio:.2f} of without")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
