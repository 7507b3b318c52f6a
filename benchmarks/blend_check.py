"""Does network interpolation between two generators land in between? PSNR, brightness, texture.

    python benchmarks/blend_check.py                       # srresnet_x4 -> srgan_x4
    python benchmarks/blend_check.py A.safetensors B.safetensors --alpha 0 0.3 0.6 1

For each alpha, the blend (1 - alpha) * A + alpha * B (what `srgan upscale -m A --blend B:alpha`
runs) is scored on Set5 with the provided LR files: Y-PSNR and SSIM as `srgan bench` computes
them, the mean Y error (SR - HR, gray levels, 4 px border cut, averaged over the images: a
blend that darkens or brightens shows here), and the regular 4 px part of its texture on the
flat gradient of `benchmarks/unlike_images.py`, and LPIPS where its weights file is there
(`python -m srgan_cli.perceptual`; otherwise "n/a"). A pair made for blending gives values
between its two ends. fp32 on the CPU; under a minute for Set5, a few for BSD100 (`--set DIR`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # srgan_cli from this checkout
sys.path.insert(0, str(ROOT / "benchmarks"))

from _cli import run  # noqa: E402
from unlike_images import texture  # noqa: E402

from srgan_cli import api  # noqa: E402
from srgan_cli.bench import load_set  # noqa: E402
from srgan_cli.metrics import Lpips, LpipsUnavailable, psnr_y, rgb_to_y, ssim_y  # noqa: E402


def _alpha(text: str) -> float:
    """An argparse type: a blend weight in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", nargs="?", default="srresnet_x4")
    parser.add_argument("b", nargs="?", default="srgan_x4")
    parser.add_argument("--alpha", type=_alpha, nargs="+", default=[0.0, 0.5, 0.8, 1.0])
    parser.add_argument("--set", default=str(ROOT.parent / "shared" / "data" / "bench" / "set5"))
    args = parser.parse_args(argv)
    # The models load (or fail, in one line) before the set is scored.
    top = max(args.alpha)
    api.load_model(args.a, device="cpu", precision="fp32", blend=f"{args.b}:{top}" if top else None)
    bench = load_set(args.set)
    try:
        lpips = Lpips()
    except LpipsUnavailable:
        lpips = None
    rows = [
        "| alpha | PSNR / SSIM | LPIPS | mean Y error (gray levels) | gradient: regular 4 px part |",
        "|---|---|---|---|---|",
    ]
    for alpha in args.alpha:
        blend = None if alpha == 0 else f"{args.b}:{alpha}"
        model = api.load_model(args.a, device="cpu", precision="fp32", blend=blend)
        psnrs, ssims, errors, lps = [], [], [], []
        for image in bench.images:
            sr = api.upscale_array(model, image.lr.astype(np.float32) / 255, bit_depth=8)
            psnrs.append(psnr_y(sr, image.hr, crop=4))
            ssims.append(ssim_y(sr, image.hr, crop=4))
            if lpips is not None:
                score = lpips(sr, image.hr, crop=4)
                if score is not None:  # None: too small for LPIPS
                    lps.append(score)
            error = rgb_to_y(sr.astype(np.float64) / 255) - rgb_to_y(image.hr.astype(np.float64) / 255)
            errors.append(float(error[4:-4, 4:-4].mean()))
        _, _, regular = texture(args.a, blend=blend)
        lp = f"{np.mean(lps):.4f}" if lps else "n/a"
        scores = f"{np.mean(psnrs):.2f} / {np.mean(ssims):.4f} | {lp}"
        rows.append(f"| {alpha:g} | {scores} | {np.mean(errors):+.2f} | {regular:.2f} |")
    sys.stdout.write(f"A = {args.a}, B = {args.b}, set {bench.name} ({len(bench.images)} images)\n\n")
    sys.stdout.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
