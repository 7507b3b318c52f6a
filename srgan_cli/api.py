"""The Python API: load a model, upscale an image. The CLI is a thin layer over this."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import GeneratorConfig
from .device import choose_device
from .errors import SrganError
from .weights import load_generator


@dataclass
class Model:
    """A generator ready for inference: module (eval mode), its config and its provenance."""

    module: torch.nn.Module
    config: GeneratorConfig
    name: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def scale(self) -> int:
        return self.config.scale

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device


def load_model(name_or_path: str | Path, device: str | torch.device = "auto") -> Model:
    """Load a named model, a local ``.safetensors`` file, or a Hub reference (``owner/repo``)."""
    dev = device if isinstance(device, torch.device) else choose_device(device)
    path = Path(name_or_path)
    if path.suffix == ".safetensors" or path.exists():
        module, config, meta = load_generator(path, dev)
        return Model(module, config, path.stem, meta)
    raise SrganError(f"unknown model {str(name_or_path)!r}; run 'srgan models' to list the named models")


@torch.inference_mode()
def upscale_array(model: Model, rgb: np.ndarray, dtype: torch.dtype = torch.float32) -> np.ndarray:
    """Super-resolve a float (H, W, 3) RGB array in [0, 1]; returns float32 (sH, sW, 3) in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    x = x.to(model.device, dtype)
    y = model.module.to(dtype)(x).float().clamp_(0, 1)
    return y[0].permute(1, 2, 0).cpu().numpy()


def upscale_image(image, model: Model, **kwargs):  # pragma: no cover - replaced by the upscale work
    raise NotImplementedError
