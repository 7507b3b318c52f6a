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
leaves.

A second table gives the lattice whose steps are even but whose pattern repeats every 4 px
within a region, with a phase that changes from region to region (`--local-grid-weight`,
`srgan_cli.losses.local_grid_loss`): per 64 px square of the image, the mean of SR - HR at each
of the 16 pixel phases less their mean, RMS over the squares and phases (Y, gray levels), per
set the mean over its images. The photo's own detail leaves a floor that no model avoids
(`srresnet_x4`: about 0.9 on Set14). LR from the set's own files (MATLAB-made) where it has
them, like `srgan bench`; fp32, on the CPU.

A third table gives the hatch or weave a model can lay over painted and smooth surfaces, a
nearly periodic pattern of 2-3 px whose phase changes from place to place and which neither of
the above sees (`--spectral-weight`, `srgan_cli.losses.spectral_loss`): per 32 px square, the
power SR has beyond twice HR's at each frequency with a period of 8 px or less (Hann-windowed
spectra, smoothed over 3 x 3 bins), summed, as an RMS over the squares (Y, gray levels); per
set the mean over its images. Not zero for a good model: where the LR leaves the direction of
fine stripes open, a model that guesses another direction than HR's scores here too.
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

from _cli import run  # noqa: E402

from srgan_cli.bench import load_set, resolve_set, upscalers_for  # noqa: E402
from srgan_cli.losses import local_grid_loss, phase_steps, spectral_loss  # noqa: E402
from srgan_cli.metrics import rgb_to_y  # noqa: E402

SCALE = 4
WINDOW = 64


def _y(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb_to_y(rgb.astype(np.float64) / 255))  # 16..235, unrounded


def unevenness(rgb: np.ndarray, scale: int = SCALE) -> float:
    """RMS over the 2 x ``scale`` phases of the mean |step| less its direction's mean, over that
    mean, in percent, on Y."""
    s = phase_steps(_y(rgb), scale).view(2, scale).double()
    mean = s.mean(dim=1, keepdim=True)
    return float(((s - mean) / mean).pow(2).mean().sqrt()) * 100


def local_grid(sr: np.ndarray, hr: np.ndarray, scale: int = SCALE, window: int = WINDOW) -> float:
    """The grid pattern of SR - HR per ``window`` px square (``losses.local_grid_loss``), Y, gray levels."""
    return float(local_grid_loss(_y(sr)[None, None], _y(hr)[None, None], scale, window))


def beyond_hr(sr: np.ndarray, hr: np.ndarray) -> float:
    """Fine detail beyond HR's per 32 px square (``losses.spectral_loss``, its ceiling alone), Y, gray levels."""
    return float(spectral_loss(_y(sr)[None, None], _y(hr)[None, None], floor=0))


def _cells(scores: list[list[float]], digits: int) -> list[str]:
    """Per model the mean over the images, and how many images score above the first model's."""
    cells = []
    for i, s in enumerate(scores):
        above = sum(a > b for a, b in zip(s, scores[0], strict=True))
        cells.append(f"{np.mean(s):.{digits}f}" + (f" ({above}/{len(s)} above)" if i else ""))
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="sets", action="append", required=True, help="set5, set14, bsd100 or a folder")
    parser.add_argument("-m", "--model", dest="models", action="append", required=True, help="bicubic, a name or FILE")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "bench"))
    parser.add_argument("--per-image", action="store_true")
    args = parser.parse_args(argv)
    folders = [resolve_set(spec, args.data_dir) for spec in args.sets]  # every set is found before any model runs
    upscalers = upscalers_for(args.models)  # fp32 on the CPU
    rows = ["| set | HR's own | " + " | ".join(u.name for u in upscalers) + " |", "|---" * (2 + len(upscalers)) + "|"]
    grid_rows = ["| set | " + " | ".join(u.name for u in upscalers) + " |", "|---" * (1 + len(upscalers)) + "|"]
    spectral_rows = list(grid_rows)
    for folder in folders:
        bench = load_set(folder)
        scores: list[list[float]] = [[] for _ in upscalers]
        grids: list[list[float]] = [[] for _ in upscalers]
        spectra: list[list[float]] = [[] for _ in upscalers]
        own: list[float] = []
        for image in bench.images:
            own.append(unevenness(image.hr))
            for i, up in enumerate(upscalers):
                sr = up.run(image.lr)
                scores[i].append(unevenness(sr))
                grids[i].append(local_grid(sr, image.hr))
                spectra[i].append(beyond_hr(sr, image.hr))
            if args.per_image:
                values = " ".join(
                    f"{s[-1]:.1f} / {g[-1]:.2f} / {f[-1]:.2f}" for s, g, f in zip(scores, grids, spectra, strict=True)
                )
                sys.stdout.write(f"{bench.name}/{image.name}: HR {own[-1]:.1f}, {values}\n")
        rows.append(f"| {bench.name} | {np.mean(own):.1f} | " + " | ".join(_cells(scores, 1)) + " |")
        grid_rows.append(f"| {bench.name} | " + " | ".join(_cells(grids, 2)) + " |")
        spectral_rows.append(f"| {bench.name} | " + " | ".join(_cells(spectra, 2)) + " |")
    title = "unevenness of the |steps| between neighbouring pixels over the 4 px phases (Y, % of the mean step)"
    sys.stdout.write(title + "\n\n")
    sys.stdout.write("\n".join(rows) + "\n")
    sys.stdout.write(f"\nthe 4 px grid of SR - HR per {WINDOW} px square (Y, gray levels RMS)\n\n")
    sys.stdout.write("\n".join(grid_rows) + "\n")
    sys.stdout.write(
        "\nfine detail beyond twice HR's power, periods of 8 px or less, per 32 px square (Y, gray levels RMS)\n\n"
    )
    sys.stdout.write("\n".join(spectral_rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
