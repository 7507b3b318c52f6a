"""Draw the README's picture: the bundled example photo beside `srgan upscale`'s output.

    python docs/make_example.py                  # -> docs/example.jpg, with the default model
    python docs/make_example.py --model srresnet_x4 -o /tmp/example.jpg

Left: weights/examples/chelsea.png enlarged x4 with nearest neighbour (its pixels show).
Right: the same photo through `srgan upscale` with the bundled weights (run as a command, so
the picture shows exactly what users get).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
MARGIN, LABEL = 8, 24


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="srgan_x4", help="model for the right panel (default srgan_x4)")
    parser.add_argument("-o", "--output", default=str(ROOT / "docs" / "example.jpg"), help="picture to write")
    args = parser.parse_args(argv)
    src = ROOT / "weights" / "examples" / "chelsea.png"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "chelsea_x4.png"
        cmd = [sys.executable, "-m", "srgan_cli", "upscale", str(src), "-o", str(out), "-m", args.model, "-q"]
        subprocess.run(cmd, check=True, cwd=ROOT)
        big = Image.open(out).convert("RGB")
        small = Image.open(src).convert("RGB")
    left = small.resize(big.size, Image.Resampling.NEAREST)
    width, height = big.size
    sheet = Image.new("RGB", (3 * MARGIN + 2 * width, MARGIN + LABEL + height + MARGIN), "white")
    sheet.paste(left, (MARGIN, MARGIN + LABEL))
    sheet.paste(big, (2 * MARGIN + width, MARGIN + LABEL))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=13)
    draw.text((MARGIN, MARGIN), f"input {small.width}x{small.height} (shown x4, nearest neighbour)", "black", font)
    draw.text((2 * MARGIN + width, MARGIN), f"srgan upscale ({args.model}), {width}x{height}", "black", font)
    sheet.save(args.output, quality=90)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
