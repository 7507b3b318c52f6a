"""Large photos: time and peak memory of `srgan upscale` on one big image, end to end.

    python benchmarks/large_image.py                         # 4000x3000 -> 16000x12000 PNG
    python benchmarks/large_image.py --size 2000x1500 --precision fp32 --format jpg
    python benchmarks/large_image.py --bits 16 --format tiff     # a 16-bit scan, kept 16-bit

The input is the bundled example photo mirrored out to --size (a photo's statistics at any
size), written as PNG (8 or 16 bits a channel) to a temporary folder; then `srgan upscale` runs in a child process, so
its peak resident memory (getrusage of the child) is that of the command alone: decoding,
tiled inference, the output canvas and encoding. It runs in the folder this script is run from,
so a relative --model or path in --extra means the same as on the command line. Printed as a
markdown table.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srgan_cli.device import choose_device, device_name  # noqa: E402
from srgan_cli.errors import SrganError  # noqa: E402

FORMATS = ("png", "jpg", "webp", "tiff", "bmp")


def _photo(width: int, height: int) -> np.ndarray:
    """The bundled photo mirrored out (or cropped) to width x height."""
    rgb = np.asarray(Image.open(ROOT / "weights" / "examples" / "chelsea.png").convert("RGB"))
    pad = ((0, max(0, height - rgb.shape[0])), (0, max(0, width - rgb.shape[1])), (0, 0))
    return np.ascontiguousarray(np.pad(rgb, pad, mode="symmetric")[:height, :width])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="4000x3000", help="input WIDTHxHEIGHT (default 4000x3000)")
    parser.add_argument("--model", default=None, help="model name or file (default: srgan upscale's default)")
    parser.add_argument("--precision", default="auto", help="srgan upscale --precision (default auto)")
    parser.add_argument("--device", default="auto", help="srgan upscale --device (default auto)")
    parser.add_argument("--format", default="png", choices=FORMATS, help="output format (default png)")
    parser.add_argument("--bits", type=int, choices=(8, 16), default=8, help="input bits a channel (default 8)")
    parser.add_argument("--extra", default="", help="more srgan upscale options, space-separated")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error("--size takes WIDTHxHEIGHT, e.g. 4000x3000")
    if width < 8 or height < 8:
        parser.error("--size must be at least 8x8")
    try:
        device = choose_device(args.device)
    except SrganError as exc:
        parser.error(str(exc))

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "large.png"
        if args.bits == 16:  # Pillow cannot hold 16-bit colour: our writer makes the file
            from srgan_cli.images import write_image

            write_image(src, _photo(width, height).astype(np.float32) / 255, bit_depth=16)
        else:
            Image.fromarray(_photo(width, height)).save(src, compress_level=1)
        out = Path(tmp) / f"large_x4.{args.format}"
        cmd = [sys.executable, "-m", "srgan_cli", "upscale", str(src), "-o", str(out), "--quiet"]
        cmd += ["--precision", args.precision, "--device", args.device]
        if args.model:
            cmd += ["--model", args.model]
        cmd += args.extra.split()
        start = time.perf_counter()
        # In the caller's folder (relative paths in --model and --extra are the caller's), with
        # srgan_cli importable from this checkout.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH"))))}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            lines = [line for line in proc.stderr.splitlines() if line.strip()]
            why = lines[-1].strip().removeprefix("error: ") if lines else "no message"
            sys.stderr.write(f"error: srgan upscale failed (exit status {proc.returncode}): {why}\n")
            return 1
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        # our own output: Pillow's bomb guard would refuse 16000x12000 (its limit is put back: main()
        # also runs inside other programs, the tests among them)
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(out) as im:
                out_w, out_h = im.size
        finally:
            Image.MAX_IMAGE_PIXELS = limit
        size_mb = out.stat().st_size / 1e6

    name = device_name(device)
    print(f"device: {args.device} ({name}); command: srgan upscale INPUT -o OUTPUT {' '.join(cmd[7:])}")  # noqa: T201
    print("")  # noqa: T201
    print("| input | bits | output | format | seconds (end to end) | output MP/s | peak RSS GiB | file MB |")  # noqa: T201
    print("|---|---|---|---|---|---|---|---|")  # noqa: T201
    print(  # noqa: T201
        f"| {width}x{height} | {args.bits} | {out_w}x{out_h} | {args.format} | {seconds:.1f} | "
        f"{out_w * out_h / 1e6 / seconds:.2f} | {peak_kib / 2**20:.2f} | {size_mb:.0f} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
