"""Does a model draw each LR pixel as a little block? Unevenness of the output's steps over the x4 phases.

    python benchmarks/blockiness.py --set set5 --set set14 --set bsd100 -m bicubic -m srresnet_x4 -m srgan_x4
    python benchmarks/blockiness.py --set set14 -m srgan_x4 -m runs/x/generator.safetensors --per-image

A GAN-stage model can lay faint 4 px squares over skin and fine texture: steps between
neighbouring pixels that are larger (or smaller) where two LR pixels' cells meet than inside a
cell. Their sign changes from place to place, so the mean error at each pixel phase (the "grid"
of `benchmarks/vgg_grid.py` and `--grid-weight`) does not see them. This measures them as
`srgan train --block-weight` penalises them (`srgan_cli.losses.phase_steps`): on the Y channel
(0-255), the mean |step| between horizontal neighbours at each of the 4 phases modulo 4 and the
same down the columns; a photo's steps are the same at every phase, since its content is not
aligned with the pixel grid. Per image, the RMS over the 8 phases of each phase's mean step
less its direction's mean, over that mean (percent); per set, the mean over its images, and how
many images score above the first model given. HR's own column is the floor that a finite image
leaves. LR from the set's own files (MATLAB-made) where it has them, like `srgan bench`; fp32,
on the CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # srgan_cli from this checkout

from srgan_cli.bench import bicubic_upscaler, load_set, model_upscaler, resolve_set  # noqa: E402
from srgan_cli.losses import phase_steps  # noqa: E402
from srgan_cli.metrics import rgb_to_y  # noqa: E402

SCALE = 4


def unevenness(rgb: np.ndarray, scale: int = SCALE) -> float:
    """RMS over the 2 x ``scale`` phases of the mean |step| less its direction's mean, over that
    mean, in percent, on Y."""
    y = torch.from_numpy(rgb_to_y(rgb.astype(np.float64) / 255))
    s = phase_steps(y, scale).view(2, scale).double()
    mean = s.mean(dim=1, keepdim=True)
    return float(((s - mean) / mean).pow(2).mean().sqrt()) * 100


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="sets", action="append", required=True, help="set5, set14, bsd100 or a folder")
    parser.add_argument("-m", "--model", dest="models", action="append", required=True, help="bicubic, a name or FILE")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "bench"))
    parser.add_argument("--per-image", action="store_true")
    args = parser.parse_args(argv)
    upscalers = [
        bicubic_upscaler() if m == "bicubic" else model_upscaler(m, "cpu", "fp32", name=Path(m).stem)
        for m in args.models
    ]
    rows = ["| set | HR's own | " + " | ".join(u.name for u in upscalers) + " |", "|---" * (2 + len(upscalers)) + "|"]
    for spec in args.sets:
        bench = load_set(resolve_set(spec, args.data_dir))
        scores: list[list[float]] = [[] for _ in upscalers]
        own: list[float] = []
        for image in bench.images:
            own.append(unevenness(image.hr))
            for i, up in enumerate(upscalers):
                scores[i].append(unevenness(up.run(image.lr)))
            if args.per_image:
                values = " ".join(f"{s[-1]:.1f}" for s in scores)
                sys.stdout.write(f"{bench.name}/{image.name}: HR {own[-1]:.1f}, {values}\n")
        cells = []
        for i, s in enumerate(scores):
            above = sum(a > b for a, b in zip(s, scores[0], strict=True))
            cells.append(f"{np.mean(s):.1f}" + (f" ({above}/{len(s)} above)" if i else ""))
        rows.append(f"| {bench.name} | {np.mean(own):.1f} | " + " | ".join(cells) + " |")
    title = "unevenness of the |steps| between neighbouring pixels over the 4 px phases (Y, % of the mean step)"
    sys.stdout.write(title + "\n\n")
    sys.stdout.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
