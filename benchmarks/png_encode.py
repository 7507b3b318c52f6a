"""PNG encoding: srgan's banded, multi-threaded writer beside Pillow's encoder, on one large image.

    python benchmarks/png_encode.py                          # 4000x3000, threads 1, 2 and all
    python benchmarks/png_encode.py --size 16000x12000 --threads 1,4,8 --repeats 1

Encoding is what a GPU upscale of a folder waits on: at a few hundred output megapixels a
second the model outruns any single-threaded PNG encoder. The picture is the bundled photo
resized (bicubic) to --size, which is what an upscaled photo looks like to a PNG filter.
Each row is the median of --repeats encodes into a file in a temporary folder; the size
column is the file's, and "vs Pillow" compares it with Pillow's file of the same pixels (8 bits
only: Pillow cannot write 16-bit colour, so the 16-bit PNG and TIFF rows show our writers alone).
Printed as a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from srgan_cli import images  # noqa: E402


def _picture(width: int, height: int) -> np.ndarray:
    photo = Image.open(ROOT / "weights" / "examples" / "chelsea.png").convert("RGB")
    return np.asarray(photo.resize((width, height), Image.Resampling.BICUBIC))


def _wide_picture(width: int, height: int) -> np.ndarray:
    """The same resized in float, so that the 16-bit values use their low bytes (a real 16-bit output)."""
    photo = np.asarray(Image.open(ROOT / "weights" / "examples" / "chelsea.png").convert("RGB"), dtype=np.float32)
    planes = [
        Image.fromarray(photo[..., k] / 255, mode="F").resize((width, height), Image.Resampling.BICUBIC)
        for k in range(3)
    ]
    return np.clip(np.stack([np.asarray(p) for p in planes], axis=2), 0, 1)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _emit(line: str) -> None:
    print(line, flush=True)  # noqa: T201


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="4000x3000", help="image WIDTHxHEIGHT (default 4000x3000)")
    parser.add_argument("--threads", default="1,2,0", help="writer thread counts, 0 = all CPUs (default 1,2,0)")
    parser.add_argument("--repeats", type=int, default=3, help="encodes per row; the median counts (default 3)")
    parser.add_argument("--no-16", action="store_true", help="leave out the 16-bit PNG and TIFF rows")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
        threads = list(dict.fromkeys(int(t) or images._encoder_threads() for t in args.threads.split(",")))
    except ValueError:
        parser.error("--size takes WIDTHxHEIGHT and --threads a list of integers")
    if width < 1 or height < 1 or args.repeats < 1 or min(threads) < 1:
        parser.error("--size, --repeats and --threads must be positive")
    rgb = _picture(width, height)
    wide = _wide_picture(width, height)
    mp = width * height / 1e6
    _emit(f"PNG encoding of a {width}x{height} RGB image ({mp:.1f} MP) on {_cpu_name()}, {os.cpu_count()} CPUs")
    _emit("")
    _emit("| encoder | bits | threads | seconds | MP/s | file MB | vs Pillow |")
    _emit("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "out.png"

        def pillow() -> None:
            Image.fromarray(rgb).save(target, format="PNG")

        seconds = _time(pillow, args.repeats)
        reference = target.stat().st_size
        _emit(
            f"| Pillow `Image.save`, PNG | 8 | 1 | {seconds:.2f} | {mp / seconds:.1f} | {reference / 1e6:.2f} | 1.000 |"
        )
        rows = [("PNG", 8, rgb)] + ([] if args.no_16 else [("PNG", 16, wide), ("TIFF", 16, wide)])
        for fmt, bits, pixels in rows:
            for n in threads:

                def ours(n: int = n, fmt: str = fmt, bits: int = bits, pixels: np.ndarray = pixels) -> None:
                    with open(target, "wb") as fh:
                        if fmt == "PNG":
                            images._write_png(fh, pixels, bits, None, None, {}, threads=n)
                        else:
                            images._write_tiff16(fh, pixels, None, None, {}, threads=n)

                seconds = _time(ours, args.repeats)
                size = target.stat().st_size
                _emit(
                    f"| srgan writer, {fmt} | {bits} | {n} | {seconds:.2f} | {mp / seconds:.1f} | {size / 1e6:.2f} "
                    f"| {f'{size / reference:.3f}' if bits == 8 else '-'} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
