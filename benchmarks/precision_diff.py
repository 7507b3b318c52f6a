"""How far a reduced precision (bf16, the CPU default where it runs natively) moves outputs from fp32.

    python benchmarks/precision_diff.py                       # srresnet_x4 and srgan_x4, Set5 + Set14
    python benchmarks/precision_diff.py -m srresnet_x4 --precision bf16 SET_FOLDER ...

For each model and image of the benchmark sets (folders with HR/ and optionally LR_x4/, read as
`srgan bench` reads them: LR made by bicubic imresize where there is no LR file), the output at
--precision and at fp32, both through the API that `srgan upscale` uses (BatchNorm folded,
channels_last as the CPU default): the RMS difference in gray levels (0-255) of the float output,
clipped to [0, 1], and of the 8-bit pixels that an upscale writes, with the largest single-pixel
difference there, and the difference of their Y-PSNR against HR (bench's metric). Prints a table
per model: the mean over images, with the range or the worst image.
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

DEFAULT_SETS = [ROOT.parent / "shared" / "data" / "bench" / s for s in ("set5", "set14")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", type=Path, help="set folders with HR/ (default: Set5 and Set14)")
    parser.add_argument("-m", "--model", dest="models", action="append", help="name or FILE (repeatable)")
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp16"), help="compared with fp32")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    from srgan_cli.api import load_model, upscale_array
    from srgan_cli.bench import load_set
    from srgan_cli.errors import SrganError
    from srgan_cli.metrics import psnr_y

    images = []
    for folder in args.sets or DEFAULT_SETS:
        if not (folder / "HR").is_dir():
            raise FileNotFoundError(2, "no HR/ folder in it", str(folder))
        images += load_set(folder).images
    sys.stdout.write(f"{args.precision} against fp32 on {args.device}, {len(images)} images\n\n")
    sys.stdout.write(
        "| model | float RMS: mean (range) | 8-bit RMS: mean (worst) | 8-bit largest pixel diff | "
        "Y-PSNR vs HR: mean diff (worst) |\n|---|---|---|---|---|\n"
    )
    for spec in args.models or ["srresnet_x4", "srgan_x4"]:
        ref = load_model(spec, device=args.device, precision="fp32")
        low = load_model(spec, device=args.device, precision=args.precision)
        if low.dtype == ref.dtype:
            raise SrganError(f"{args.precision} runs as {low.dtype} on {args.device}: nothing to compare with fp32")
        floats, eights, largest, psnrs = [], [], 0, []
        for image in images:
            a = np.clip(upscale_array(ref, image.lr), 0, 1)
            b = np.clip(upscale_array(low, image.lr), 0, 1)
            floats.append(float(np.sqrt(np.mean(((a - b) * 255.0) ** 2))))
            qa = upscale_array(ref, image.lr, bit_depth=8)
            qb = upscale_array(low, image.lr, bit_depth=8)
            diff = qa.astype(np.int16) - qb.astype(np.int16)
            eights.append(float(np.sqrt(np.mean(diff.astype(np.float64) ** 2))))
            largest = max(largest, int(np.abs(diff).max()))
            psnrs.append(psnr_y(qb, image.hr, crop=4) - psnr_y(qa, image.hr, crop=4))
        psnr_cell = f"{np.mean(psnrs):+.4f} dB ({min(psnrs):+.3f})"
        sys.stdout.write(
            f"| {ref.name} ({low.dtype}) | {np.mean(floats):.3f} ({min(floats):.3f}-{max(floats):.3f}) | "
            f"{np.mean(eights):.3f} ({max(eights):.3f}) | {largest} | {psnr_cell} |\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
