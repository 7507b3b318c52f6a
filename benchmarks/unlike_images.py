"""Write a small benchmark set unlike the training photos: text, line art, a flat gradient.

    python benchmarks/unlike_images.py out/unlike
    srgan bench --set out/unlike --model bicubic --model srresnet_x4 --model srgan_x4 --per-image --no-lpips
    python benchmarks/unlike_images.py out/unlike --texture srresnet_x4 srgan_x4

--texture also measures the texture each model invents on the flat gradient (fp32, on the
CPU): the RMS of the Y residual against HR, and its regular part, the range of the mean
residual over the 16 pixel positions modulo 4 (a grid with the period of the x4 upsampling).

The three HR images (256x256 PNG, in FOLDER/HR/) are drawn deterministically, so the table in
weights/README.md can be reproduced anywhere; `srgan bench --set DIR` makes their LR with the
MATLAB-compatible bicubic. They test what PSNR on photos does not: whether a model keeps text
readable, lines clean, and smooth areas free of invented texture.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # srgan_cli from this checkout, for --texture
sys.path.insert(0, str(ROOT / "benchmarks"))  # _cli, also when this file is imported by its path

from _cli import fail, run  # noqa: E402

SIZE = 256


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # a scalable font where Pillow has FreeType
    except TypeError:  # Pillow < 10.1: one small bitmap font
        return ImageFont.load_default()


def text() -> Image.Image:
    im = Image.new("RGB", (SIZE, SIZE), (250, 248, 240))
    draw = ImageDraw.Draw(im)
    y = 6
    for size in (10, 14, 20, 30):
        for line in ("The quick brown fox", "jumps over 0123456789"):
            draw.text((6, y), line, fill=(20, 20, 30), font=_font(size))
            y += int(size * 1.25)
        y += 4
    return im


def line_art() -> Image.Image:
    im = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    draw = ImageDraw.Draw(im)
    for i in range(12):
        draw.line([(8, 8 + 20 * i), (248, 28 + 18 * i)], fill=(0, 0, 0), width=1 + i % 3)
    for r in range(10, 120, 14):
        draw.ellipse([128 - r, 128 - r, 128 + r, 128 + r], outline=(200, 30, 30), width=2)
    draw.rectangle([20, 180, 110, 240], outline=(30, 60, 200), width=3)
    draw.polygon([(150, 240), (200, 170), (245, 240)], outline=(20, 140, 40), width=2)
    return im


def gradient() -> Image.Image:
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) / (SIZE - 1)
    rgb = np.stack([40 + 180 * x, 60 + 120 * y, 200 - 150 * (x + y) / 2], axis=-1)
    return Image.fromarray(np.round(rgb).astype(np.uint8))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="benchmark folder: the images go to FOLDER/HR/")
    parser.add_argument(
        "--texture", nargs="+", metavar="MODEL", help="print the gradient texture table of these models"
    )
    args = parser.parse_args(argv)
    if args.texture:  # the models are found (or refused, in one line) before anything is written
        from srgan_cli.hub import resolve_weights

        for model in args.texture:
            resolve_weights(model)
    hr = args.folder / "HR"
    for folder in (args.folder, hr):
        if folder.exists() and not folder.is_dir():
            return fail(f"{folder}: not a folder; give the name of a folder (new or existing)")
    hr.mkdir(parents=True, exist_ok=True)
    for name, draw in (("text", text), ("line_art", line_art), ("gradient", gradient)):
        draw().save(hr / f"{name}.png")
    print(f"wrote text.png, line_art.png, gradient.png to {hr}")  # noqa: T201
    if args.texture:
        print("")  # noqa: T201
        print("| model | gradient Y-PSNR dB | residual RMS (gray levels) | regular 4 px part (levels) |")  # noqa: T201
        print("|---|---|---|---|")  # noqa: T201
        for model in args.texture:
            psnr, rms, spread = texture(model)
            print(f"| {model} | {psnr:.2f} | {rms:.2f} | {spread:.2f} |")  # noqa: T201
    return 0


def texture(model_ref: str, blend: str | None = None) -> tuple[float, float, float]:
    """Y-PSNR on the gradient, RMS of the Y residual, range of its mean over the 4x4 phases (8 px border cut)."""
    from srgan_cli import api
    from srgan_cli.metrics import psnr_y, rgb_to_y
    from srgan_cli.resize import imresize

    hr = np.asarray(gradient())
    lr = np.clip(np.rint(imresize(hr.astype(np.float64), 0.25)), 0, 255).astype(np.uint8)
    model = api.load_model(model_ref, device="cpu", precision="fp32", blend=blend)
    sr = api.upscale_array(model, lr.astype(np.float32) / 255, bit_depth=8)
    residual = (rgb_to_y(sr.astype(np.float64) / 255) - rgb_to_y(hr.astype(np.float64) / 255))[8:-8, 8:-8]
    phases = [residual[i::4, j::4].mean() for i in range(4) for j in range(4)]
    return psnr_y(sr, hr), float(residual.std()), float(max(phases) - min(phases))


if __name__ == "__main__":
    sys.exit(run(main))
