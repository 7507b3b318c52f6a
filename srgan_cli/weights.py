"""Weights: safetensors files that carry their config, and the table of named models.

A generator file holds the state dict and, in its metadata, ``format`` = ``srgan-generator``,
``config`` = the JSON of :class:`GeneratorConfig`, plus free-form provenance keys. The file
alone rebuilds its model. Loading is strict, and nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .config import GeneratorConfig
from .errors import SrganError
from .fsutil import atomic_path
from .models import build_generator

FORMAT = "srgan-generator"
FORMAT_VERSION = "1"


@dataclass(frozen=True)
class ModelEntry:
    """A named model: where its weights come from and what they are."""

    name: str
    file: str
    scale: int
    arch: str
    description: str
    sha256: str | None = None
    hub_repo: str | None = None
    hub_revision: str | None = None

    def bundled_path(self) -> Path | None:
        """The installed weights file, or None while this model is not bundled."""
        path = bundled_dir() / self.file
        return path if path.is_file() else None


# The bundled models. sha256 is that of the file in weights/; hub_repo is where the same
# file is published (see weights/README.md), tried when the file is not installed.
MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            name="srgan_x4",
            file="srgan_x4.safetensors",
            scale=4,
            arch="srresnet",
            description="SRGAN (VGG54 + adversarial): photo-realistic detail; the default",
        ),
        ModelEntry(
            name="srresnet_x4",
            file="srresnet_x4.safetensors",
            scale=4,
            arch="srresnet",
            description="SRResNet (MSE): highest PSNR, smoother",
        ),
    )
}
DEFAULT_MODEL = "srgan_x4"


def bundled_dir() -> Path:
    """The folder the bundled weights are installed in (``weights/`` of the source tree).

    Installed, it is the package ``srgan_cli._bundled``; run from a source checkout without
    installing (``PYTHONPATH=. python -m srgan_cli``), it is ``weights/`` beside the package.
    """
    try:
        return Path(str(resources.files("srgan_cli._bundled")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "weights"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_generator(
    path: str | Path,
    model: torch.nn.Module,
    config: GeneratorConfig,
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model``'s weights with ``config`` in the metadata, atomically."""
    path = Path(path)
    tensors = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue  # a counter for training only; not needed to rebuild the model
        value = value.detach().to("cpu")
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        tensors[key] = value.contiguous()
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": config.to_json()}
    for key, value in (metadata or {}).items():
        if not isinstance(value, str):
            value = json.dumps(value)
        meta[key] = value
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a safetensors file, or a one-line error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise SrganError(f"{path}: no such weights file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise SrganError(f"{path}: not a valid safetensors file ({_short(exc)})") from None


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, GeneratorConfig, dict[str, str]]:
    """Rebuild a generator from a weights file alone; strict about every key and shape.

    Returns ``(model, config, metadata)`` with the model in eval mode on ``device``.
    """
    path = Path(path)
    meta = read_metadata(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise SrganError(
            f"{path}: not an srgan generator file (no '{FORMAT}' config in its metadata); "
            "weights must be saved by srgan (srgan train, srgan interpolate)"
        )
    try:
        config = GeneratorConfig.from_json(meta["config"])
    except SrganError as exc:
        raise SrganError(f"{path}: {exc}") from None
    try:
        state = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise SrganError(f"{path}: cannot read weights ({_short(exc)})") from None
    model = build_generator(config)
    _load_strict(model, state, path)
    model.eval()
    return model.to(device), config, meta


def _load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise SrganError(f"{path}: weights do not match their config: {', '.join(parts)} tensors")
    for key, ref in expected.items():
        got = state[key]
        if tuple(got.shape) != tuple(ref.shape):
            raise SrganError(
                f"{path}: weights do not match their config: {key} has shape {tuple(got.shape)}, expected {tuple(ref.shape)}"
            )
        if not got.is_floating_point() or not torch.isfinite(got).all():
            raise SrganError(f"{path}: tensor {key} is not finite floating point; the file is corrupt")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=False)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def describe_entries() -> list[dict[str, Any]]:
    """One row per named model, for ``srgan models``."""
    rows = []
    for entry in MODELS.values():
        path = entry.bundled_path()
        rows.append(
            {
                "name": entry.name,
                "scale": entry.scale,
                "arch": entry.arch,
                "size_mb": round(path.stat().st_size / 1e6, 1) if path else None,
                "source": "bundled" if path else (f"hub:{entry.hub_repo}" if entry.hub_repo else "not available yet"),
                "default": entry.name == DEFAULT_MODEL,
                "description": entry.description,
            }
        )
    return rows
