"""How much texture does a model invent where a photo is flat? Fine residual on flat areas.

    python benchmarks/flat_noise.py --set set14 --set bsd100 -m bicubic -m srresnet_x4 -m srgan_x4
    python benchmarks/flat_noise.py --set set14 -m srgan_x4 -m runs/x/generator.safetensors --per-image

PSNR says little about the faint mottle a GAN-stage model can lay over skin, sky or paper: it
is a small part of the error of a whole photo. This measures it on its own. For each image,
on the Y channel (0-255, as the benchmark protocol computes it):

- the flat pixels: where the standard deviation of HR's Y over the 15x15 window around the
  pixel is below --flat gray levels (default 1.5), so that no edge lies within 7 px;
- there, the RMS of the model's residual (SR - HR) minus the residual's own 7x7 local mean:
  the fine texture that the model adds where the photo has none. A brightness or colour
  offset, or an error that is smooth over 7 px, does not count. "HR's own" is what an output
  smooth over 7 px would score: the photo's own grain there, which no model can recover.

Reported per set: the share of flat pixels, and per model the RMS pooled over the set's flat
pixels (gray levels) and how many images have a larger one than the first model given. A
second table gives the whole residual there (fine texture plus what is smooth over 7 px:
blotches, a brightness or colour drift), since a GAN-stage model errs there at both scales. A
third table checks that a quieter flat area is not bought with a blurrier picture: on the
textured pixels (HR's 15x15 std of at least --busy levels), the RMS of the output's own finest
component (Y less its 3x3 local mean) over HR's, pooled per set: 1 is as much fine detail as
the photo has (right or wrong), a blurry model scores well below it (bicubic 0.14-0.21). LR
from the set's own files (MATLAB-made) where it has them, like `srgan bench`; fp32 on the CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # srgan_cli from this checkout
sys.path.insert(0, str(ROOT / "benchmarks"))  # _cli, also when this file is imported by its path

from _cli import run  # noqa: E402

from srgan_cli.bench import load_set, resolve_set, upscalers_for, window_sums  # noqa: E402
from srgan_cli.metrics import rgb_to_y  # noqa: E402

WINDOW = 7  # the fine residual: the residual minus its mean over this window
DETAIL_WINDOW = 3  # detail on textured areas: the finest scale, where GAN texture lives
FLAT_WINDOW = 15  # flat: HR's std over this window, so no edge lies within 7 px
BORDER = 8


def box_mean(x: np.ndarray, k: int = WINDOW) -> np.ndarray:
    """The mean over every k x k window that fits ("valid"): shape (H - k + 1, W - k + 1)."""
    return window_sums(x, k, 1)[0] / (k * k)


CUT = max(BORDER, FLAT_WINDOW // 2)  # scored pixels: the 15x15 window fits, BORDER px clear of the edge


def _core(a: np.ndarray, margin: int) -> np.ndarray:
    """The scored pixels of ``a``, an array that starts ``margin`` px inside the image."""
    c = CUT - margin
    return a[c : a.shape[0] - c, c : a.shape[1] - c]


def _fine_and_std(y: np.ndarray, window: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """y less its window x window mean, and y's 15x15 std, on the scored pixels."""
    h = window // 2
    mean = box_mean(y, FLAT_WINDOW)
    std = np.sqrt(np.maximum(box_mean(y * y, FLAT_WINDOW) - mean * mean, 0))
    return _core(y[h:-h, h:-h] - box_mean(y, window), h), _core(std, FLAT_WINDOW // 2)


def _y(rgb: np.ndarray) -> np.ndarray:
    return rgb_to_y(rgb.astype(np.float64) / 255)  # 16..235, unrounded


def flat_residual(sr: np.ndarray, hr: np.ndarray, flat: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """At HR's flat pixels: the fine residual of SR, its whole residual (SR - HR, fine or
    coarse) and HR's own fine texture (what an output smooth over 7 px would score), gray
    levels; and the number of pixels scored."""
    y_hr = _y(hr)
    residual = _y(sr) - y_hr
    fine, _ = _fine_and_std(residual)
    own, std = _fine_and_std(y_hr)
    mask = std < flat
    return fine[mask], _core(residual, 0)[mask], own[mask], int(std.size)


def busy_detail(sr: np.ndarray, hr: np.ndarray, busy: float) -> tuple[float, float]:
    """On HR's textured pixels (15x15 std >= ``busy`` gray levels), the sums of squares of SR's
    and of HR's finest component (Y less its 3x3 mean): the fine detail each has there."""
    fine_sr, _ = _fine_and_std(_y(sr), DETAIL_WINDOW)
    fine_hr, std = _fine_and_std(_y(hr), DETAIL_WINDOW)
    mask = std >= busy
    return float(np.sum(fine_sr[mask] ** 2)), float(np.sum(fine_hr[mask] ** 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="sets", action="append", required=True, help="set5, set14, bsd100 or a folder")
    parser.add_argument("-m", "--model", dest="models", action="append", required=True, help="bicubic, a name or FILE")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data" / "bench"))
    parser.add_argument("--flat", type=float, default=1.5, help="HR's local std below which a pixel is flat")
    parser.add_argument("--busy", type=float, default=4.0, help="HR's local std from which a pixel is textured")
    parser.add_argument("--per-image", action="store_true")
    args = parser.parse_args(argv)
    folders = [resolve_set(spec, args.data_dir) for spec in args.sets]  # every set is found before any model runs
    upscalers = upscalers_for(args.models)  # fp32 on the CPU
    header = "| set | flat pixels | HR's own | " + " | ".join(u.name for u in upscalers) + " |"
    rows = [header, "|---" * (3 + len(upscalers)) + "|"]
    detail_rows = ["| set | " + " | ".join(u.name for u in upscalers) + " |", "|---" * (1 + len(upscalers)) + "|"]
    whole_rows = list(detail_rows)
    for folder in folders:
        bench = load_set(folder)
        pooled: list[list[np.ndarray]] = [[] for _ in upscalers]
        pooled_whole: list[list[np.ndarray]] = [[] for _ in upscalers]
        per_image: list[list[float]] = [[] for _ in upscalers]
        own_parts: list[np.ndarray] = []
        detail = np.zeros((len(upscalers), 2))
        flat_count = total = 0
        for image in bench.images:
            for i, up in enumerate(upscalers):
                sr = up.run(image.lr)
                fine, whole, own, size = flat_residual(sr, image.hr, args.flat)
                detail[i] += busy_detail(sr, image.hr, args.busy)
                pooled[i].append(fine)
                pooled_whole[i].append(whole)
                per_image[i].append(float(np.sqrt(np.mean(fine**2))) if fine.size else 0.0)
            own_parts.append(own)
            flat_count += fine.size
            total += size
            if args.per_image:
                values = " ".join(f"{p[-1]:.2f}" for p in per_image)
                sys.stdout.write(f"{bench.name}/{image.name}: {fine.size / size:.1%} flat, {values}\n")
        cells = []
        for i in range(len(upscalers)):
            rms = float(np.sqrt(np.mean(np.concatenate(pooled[i]) ** 2))) if flat_count else float("nan")
            worse = sum(a > b for a, b in zip(per_image[i], per_image[0], strict=True))
            cells.append(f"{rms:.2f}" + (f" ({worse}/{len(bench.images)} above)" if i else ""))
        own_rms = float(np.sqrt(np.mean(np.concatenate(own_parts) ** 2))) if flat_count else float("nan")
        rows.append(f"| {bench.name} | {flat_count / total:.1%} | {own_rms:.2f} | " + " | ".join(cells) + " |")
        wholes = " | ".join(
            f"{np.sqrt(np.mean(np.concatenate(p) ** 2)):.2f}" if flat_count else "nan" for p in pooled_whole
        )
        whole_rows.append(f"| {bench.name} | {wholes} |")
        ratios = " | ".join(f"{np.sqrt(s / h):.2f}" if h else "nan" for s, h in detail)
        detail_rows.append(f"| {bench.name} | {ratios} |")
    sys.stdout.write(f"fine residual RMS on flat areas (gray levels; HR's std over 15x15 < {args.flat:g})\n\n")
    sys.stdout.write("\n".join(rows) + "\n")
    sys.stdout.write("\nwhole residual RMS on the same flat areas (fine texture, blotches and colour drift)\n\n")
    sys.stdout.write("\n".join(whole_rows) + "\n")
    sys.stdout.write(f"\nfinest detail (3x3) on textured areas over HR's (HR's 15x15 std >= {args.busy:g})\n\n")
    sys.stdout.write("\n".join(detail_rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
