"""Rewrite a generator .safetensors file in fp16, metadata kept, in place (atomically).

    python benchmarks/half_weights.py RUN/generator.safetensors

For bringing a large generator (ESRGAN's RRDB: 67 MB in fp32) back from a machine that
returns files of at most 16 MiB; `srgan_cli.weights.load_generator` reads fp16 files as
they are. Prints the sizes and the largest change of a tensor, relative to its largest value.
The file keeps its permissions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # srgan_cli from this checkout
sys.path.insert(0, str(ROOT / "benchmarks"))  # _cli, also when this file is imported by its path

from _cli import run  # noqa: E402
from safetensors import SafetensorError, safe_open  # noqa: E402
from safetensors.torch import save as serialize  # noqa: E402

from srgan_cli.errors import SrganError  # noqa: E402
from srgan_cli.fsutil import atomic_path  # noqa: E402
from srgan_cli.weights import read_metadata, st_path  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="the .safetensors file to rewrite in fp16")
    args = parser.parse_args(argv)
    path = args.weights
    metadata = read_metadata(path)  # a one-line error if it is missing or not safetensors
    try:
        with st_path(path) as name, safe_open(name, "pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, ValueError) as exc:
        raise SrganError(f"{path}: not a valid safetensors file ({exc})") from None
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    change = max(
        (
            float((half[k].float() - v.float()).abs().max() / v.float().abs().max().clamp_min(1e-12))
            for k, v in tensors.items()
            if v.numel() and v.is_floating_point()
        ),
        default=0.0,
    )
    data = serialize(half, metadata=metadata)
    before = path.stat().st_size
    # The bytes go into the temporary file atomic_path made, which then takes the file's mode and
    # its place; safetensors' save_file would recreate it as 0600.
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    after = path.stat().st_size
    sys.stdout.write(f"{path}: {before} -> {after} bytes in fp16; largest change {change:.2g} of a tensor's largest\n")
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
