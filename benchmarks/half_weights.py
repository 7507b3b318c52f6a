"""Rewrite a generator .safetensors file in fp16, metadata kept, in place (atomically).

    python benchmarks/half_weights.py RUN/generator.safetensors

For bringing a large generator (ESRGAN's RRDB: 67 MB in fp32) back from a machine that
returns files of at most 16 MiB; `srgan_cli.weights.load_generator` reads fp16 files as
they are. Prints the sizes and the largest change of a tensor, relative to its largest value.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file


def main() -> None:
    path = Path(sys.argv[1])
    with safe_open(str(path), "pt") as f:
        metadata = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    half = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    change = max(
        float((half[k].float() - v.float()).abs().max() / v.float().abs().max().clamp_min(1e-12))
        for k, v in tensors.items()
        if v.numel() and v.is_floating_point()
    )
    before = path.stat().st_size
    tmp = path.with_name(f".{path.name}.part")
    save_file(half, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    after = path.stat().st_size
    sys.stdout.write(f"{path}: {before} -> {after} bytes in fp16; largest change {change:.2g} of a tensor's largest\n")


if __name__ == "__main__":
    main()
