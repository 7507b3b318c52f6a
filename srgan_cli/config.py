"""Config dataclasses: one vocabulary for models, CLI flags, weights metadata and docs."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, fields
from typing import Any

from .errors import SrganError

# The largest final scale (``srgan upscale --outscale``, the API's ``outscale``): beyond it the
# resized output is more memory than any machine has (1e6 on an 8x10 image is 8e13 pixels).
MAX_OUTSCALE = 64.0

# The largest residual scaling an RRDB generator may have (ESRGAN uses 0.2): the scale multiplies
# each block's output 3 x 23 times over, so a weights file's 1e300, infinity or NaN made every
# output pixel NaN (a black image, exit 0).
MAX_RES_SCALE = 10.0

# The --device and --precision values, here (torch-free; device.py imports torch) for the option
# declarations: click imports every command to complete `srgan <Tab>`, and a Tab must stay quick.
DEVICES = "auto|cpu|cuda|cuda:N|mps"
PRECISIONS = ("auto", "fp32", "fp16", "bf16")

ARCHS = ("srresnet", "rrdb")
SCALES = (2, 4, 8)


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild a generator; stored in every weights file.

    ``arch="srresnet"`` is the paper's SRResNet (ESRGAN's no-BN variant with
    ``batch_norm=False``); ``arch="rrdb"`` is ESRGAN's RRDB network, which uses
    ``growth_channels`` and ``res_scale`` and never BatchNorm.
    """

    arch: str = "srresnet"
    scale: int = 4
    num_blocks: int = 16
    num_features: int = 64
    batch_norm: bool = True
    growth_channels: int = 32
    res_scale: float = 0.2
    in_channels: int = 3

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise SrganError(f"unknown generator arch {self.arch!r}; expected one of {', '.join(ARCHS)}")
        if self.scale not in SCALES:
            raise SrganError(f"unsupported scale {self.scale}; expected one of 2, 4, 8")
        if self.num_blocks < 1 or self.num_features < 1 or self.growth_channels < 1:
            raise SrganError("num_blocks, num_features and growth_channels must be positive")
        if self.in_channels not in (1, 3):
            raise SrganError("in_channels must be 1 or 3")
        if self.arch == "rrdb" and self.batch_norm:
            raise SrganError("the rrdb generator has no BatchNorm; set batch_norm=False")
        if not (
            isinstance(self.res_scale, (int, float))
            and math.isfinite(self.res_scale)
            and 0 < self.res_scale <= MAX_RES_SCALE
        ):
            raise SrganError(f"res_scale must be a finite number in (0, {MAX_RES_SCALE:g}], got {self.res_scale!r}")

    @classmethod
    def for_arch(cls, arch: str, **overrides: Any) -> GeneratorConfig:
        """The published defaults of ``arch`` (SRResNet: 16 blocks with BN; RRDB: 23 blocks, no BN)."""
        base: dict[str, Any] = {"arch": arch}
        if arch == "rrdb":
            base.update(num_blocks=23, batch_norm=False)
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        """Strict: unknown keys or wrong types are an error, missing keys take defaults."""
        return _strict_from_dict(cls, data, "generator config")

    @classmethod
    def from_json(cls, text: str) -> GeneratorConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SrganError(f"generator config is not valid JSON ({exc.msg})") from None
        except RecursionError:  # "[[[[...]]]]" thousands deep: a traceback from every command that loads the file
            raise SrganError("generator config is not valid JSON (nested too deeply)") from None
        if not isinstance(data, dict):
            raise SrganError("generator config must be a JSON object")
        return cls.from_dict(data)


D_ARCHS = ("vgg", "unet")


@dataclass(frozen=True)
class DiscriminatorConfig:
    """The discriminator. ``arch`` "vgg": SRGAN's, 8 convs (64..512 maps), dense 1024, dense 1,
    one logit per patch. "unet": a U-Net with spectral normalisation (the kind Real-ESRGAN
    uses), one logit per pixel; ``batch_norm`` applies to "vgg" only."""

    patch_size: int = 96
    num_features: int = 64
    batch_norm: bool = True
    in_channels: int = 3
    arch: str = "vgg"

    def __post_init__(self) -> None:
        if self.patch_size < 16 or self.patch_size % 16:
            raise SrganError(f"discriminator patch_size must be a multiple of 16, got {self.patch_size}")
        if self.arch not in D_ARCHS:
            raise SrganError(f"discriminator arch must be one of {', '.join(D_ARCHS)}, got {self.arch!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiscriminatorConfig:
        return _strict_from_dict(cls, data, "discriminator config")


def _strict_from_dict(cls: type, data: dict[str, Any], what: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise SrganError(f"{what} has unknown keys: {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        expected = type(getattr(cls(), key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:  # a 400-digit integer: an OverflowError traceback otherwise
                raise SrganError(f"{what}: {key} is a number too large for a float") from None
        if type(value) is not expected:
            raise SrganError(f"{what}: {key} must be {expected.__name__}, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)
