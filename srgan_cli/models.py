"""Generators (SRResNet, RRDB) and the discriminators (SRGAN's, a U-Net), built from config dataclasses.

Inference contract for every generator: input (N, C, H, W) float RGB in [0, 1], output
(N, C, scale*H, scale*W) on the same scale (not clamped; callers clamp).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import DiscriminatorConfig, GeneratorConfig


class _ResidualBlock(nn.Module):
    """conv3x3 -> BN -> PReLU -> conv3x3 -> BN, plus the identity (SRResNet)."""

    def __init__(self, features: int, batch_norm: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=True)
        self.bn1 = nn.BatchNorm2d(features) if batch_norm else nn.Identity()
        self.act = nn.PReLU(features)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(features) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn2(self.conv2(self.act(self.bn1(self.conv1(x)))))


class SRResNet(nn.Module):
    """Ledig et al. 2017: 9x9 head, B residual blocks, long skip, sub-pixel x2 stages, 9x9 tail."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c, f = config.in_channels, config.num_features
        self.head = nn.Sequential(nn.Conv2d(c, f, 9, padding=4), nn.PReLU(f))
        self.body = nn.Sequential(*[_ResidualBlock(f, config.batch_norm) for _ in range(config.num_blocks)])
        self.body_tail = nn.Sequential(
            nn.Conv2d(f, f, 3, padding=1),
            nn.BatchNorm2d(f) if config.batch_norm else nn.Identity(),
        )
        stages = []
        for _ in range(int(math.log2(config.scale))):
            stages += [nn.Conv2d(f, f * 4, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(f)]
        self.upsample = nn.Sequential(*stages)
        self.tail = nn.Conv2d(f, c, 9, padding=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(x)
        x = head + self.body_tail(self.body(head))
        return self.tail(self.upsample(x))

    def receptive_radius(self) -> float:
        """How far (in LR pixels) an output pixel sees: the tile pad that makes tiling exact."""
        radius = 4 + 2 * self.config.num_blocks + 1  # head 9x9, two 3x3 per block, body tail
        step = 1.0
        for _ in range(int(math.log2(self.config.scale))):
            radius += step  # the 3x3 conv of each stage, at the current resolution
            step /= 2
        return radius + 4 * step  # 9x9 tail at the output resolution


class _DenseBlock(nn.Module):
    """Five 3x3 convs, each fed every earlier output (ESRGAN's residual dense block)."""

    def __init__(self, features: int, growth: int, res_scale: float) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.convs = nn.ModuleList(
            nn.Conv2d(features + i * growth, growth if i < 4 else features, 3, padding=1) for i in range(5)
        )
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for i, conv in enumerate(self.convs):
            y = conv(torch.cat(outs, dim=1))
            if i < 4:
                outs.append(self.act(y))
        return x + self.res_scale * y


class _RRDB(nn.Module):
    """Three dense blocks inside one more scaled residual connection."""

    def __init__(self, features: int, growth: int, res_scale: float) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.blocks = nn.Sequential(*[_DenseBlock(features, growth, res_scale) for _ in range(3)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.blocks(x)


class RRDBNet(nn.Module):
    """Wang et al. 2018 (ESRGAN): RRDB trunk, no BatchNorm, nearest-neighbour x2 + conv stages."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c, f, g = config.in_channels, config.num_features, config.growth_channels
        self.head = nn.Conv2d(c, f, 3, padding=1)
        self.body = nn.Sequential(*[_RRDB(f, g, config.res_scale) for _ in range(config.num_blocks)])
        self.body_tail = nn.Conv2d(f, f, 3, padding=1)
        self.up_convs = nn.ModuleList(nn.Conv2d(f, f, 3, padding=1) for _ in range(int(math.log2(config.scale))))
        self.hr_conv = nn.Conv2d(f, f, 3, padding=1)
        self.tail = nn.Conv2d(f, c, 3, padding=1)
        self.act = nn.LeakyReLU(0.2, inplace=True)
        self._scale_init(0.1)

    def _scale_init(self, factor: float) -> None:
        # ESRGAN: default (Kaiming) init scaled down, which keeps the deep residual trunk stable.
        for module in self.body.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
                module.weight.data.mul_(factor)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.head(x)
        x = head + self.body_tail(self.body(head))
        for conv in self.up_convs:
            x = self.act(conv(nn.functional.interpolate(x, scale_factor=2, mode="nearest")))
        return self.tail(self.act(self.hr_conv(x)))

    def receptive_radius(self) -> float:
        radius = 1 + 15 * self.config.num_blocks + 1  # head, 3 x 5 convs per RRDB, body tail
        step = 1.0
        for _ in range(int(math.log2(self.config.scale))):
            step /= 2
            radius += step  # conv after each nearest x2
        return radius + 2 * step  # hr_conv and tail at the output resolution


class Discriminator(nn.Module):
    """SRGAN discriminator. Returns logits (apply a sigmoid for D's probability)."""

    def __init__(self, config: DiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or DiscriminatorConfig()
        f = config.num_features
        maps = [f, f, 2 * f, 2 * f, 4 * f, 4 * f, 8 * f, 8 * f]
        layers: list[nn.Module] = []
        in_ch = config.in_channels
        for i, out_ch in enumerate(maps):
            stride = 1 if i % 2 == 0 else 2
            layers.append(nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=not (config.batch_norm and i)))
            if i and config.batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            in_ch = out_ch
        self.features = nn.Sequential(*layers)
        side = config.patch_size // 16
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_ch * side * side, 1024),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(1024, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class UNetDiscriminator(nn.Module):
    """A U-Net discriminator with spectral normalisation: one logit per pixel.

    Three stride-2 stages down (f, 2f, 4f, 8f maps), three bilinear x2 stages back up, each
    added to the encoder's map of its size, two 3x3 convs and a 1-map head. The logits say
    *where* an image looks generated, not only whether it does, so the generator's adversarial
    gradient is local. Spectral normalisation on every conv but the first and the head bounds
    D's Lipschitz constant, which keeps a per-pixel D stable without BatchNorm (Real-ESRGAN,
    Wang et al. 2021, uses this kind of D for the same reasons)."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        f = config.num_features
        sn = nn.utils.parametrizations.spectral_norm

        def conv(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Module:
            return sn(nn.Conv2d(cin, cout, kernel, stride=stride, padding=1, bias=False))

        self.stem = nn.Conv2d(config.in_channels, f, 3, padding=1)
        self.down = nn.ModuleList([conv(f, 2 * f, 4, 2), conv(2 * f, 4 * f, 4, 2), conv(4 * f, 8 * f, 4, 2)])
        self.up = nn.ModuleList([conv(8 * f, 4 * f), conv(4 * f, 2 * f), conv(2 * f, f)])
        self.refine = nn.ModuleList([conv(f, f), conv(f, f)])
        self.head = nn.Conv2d(f, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [F.leaky_relu(self.stem(x), 0.2)]
        for layer in self.down:
            skips.append(F.leaky_relu(layer(skips[-1]), 0.2))
        y = skips.pop()
        for layer in self.up:
            y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
            y = F.leaky_relu(layer(y), 0.2) + skips.pop()
        for layer in self.refine:
            y = F.leaky_relu(layer(y), 0.2)
        return self.head(y)


def build_discriminator(config: DiscriminatorConfig) -> Discriminator | UNetDiscriminator:
    """A freshly initialised discriminator for ``config`` (logits: (N, 1) for "vgg", (N, 1, H, W) for "unet")."""
    return UNetDiscriminator(config) if config.arch == "unet" else Discriminator(config)


Generator = SRResNet | RRDBNet


def build_generator(config: GeneratorConfig) -> SRResNet | RRDBNet:
    """A freshly initialised generator for ``config``."""
    return RRDBNet(config) if config.arch == "rrdb" else SRResNet(config)


def generator_state_shapes(config: GeneratorConfig) -> dict[str, tuple[int, ...]]:
    """The keys and shapes of ``build_generator(config).state_dict()``, without building anything
    (BatchNorm's ``num_batches_tracked`` counters left out, as weights files leave them out).

    Cheap for any config (no module, no tensor), so a weights file's header can be checked
    against its config before a model is built; ``tests/test_weights.py`` keeps it equal to
    the real state dict.
    """
    c, f, g = config.in_channels, config.num_features, config.growth_channels
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cout: int, cin: int, kernel: int) -> None:
        shapes[f"{name}.weight"] = (cout, cin, kernel, kernel)
        shapes[f"{name}.bias"] = (cout,)

    def batch_norm(name: str) -> None:
        for part in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.{part}"] = (f,)

    stages = int(math.log2(config.scale))
    if config.arch == "rrdb":
        conv("head", f, c, 3)
        for b in range(config.num_blocks):
            for d in range(3):
                for i in range(5):
                    conv(f"body.{b}.blocks.{d}.convs.{i}", g if i < 4 else f, f + i * g, 3)
        conv("body_tail", f, f, 3)
        for s in range(stages):
            conv(f"up_convs.{s}", f, f, 3)
        conv("hr_conv", f, f, 3)
        conv("tail", c, f, 3)
        return shapes
    conv("head.0", f, c, 9)
    shapes["head.1.weight"] = (f,)
    for b in range(config.num_blocks):
        conv(f"body.{b}.conv1", f, f, 3)
        if config.batch_norm:
            batch_norm(f"body.{b}.bn1")
        shapes[f"body.{b}.act.weight"] = (f,)
        conv(f"body.{b}.conv2", f, f, 3)
        if config.batch_norm:
            batch_norm(f"body.{b}.bn2")
    conv("body_tail.0", f, f, 3)
    if config.batch_norm:
        batch_norm("body_tail.1")
    for s in range(stages):
        conv(f"upsample.{3 * s}", 4 * f, f, 3)
        shapes[f"upsample.{3 * s + 2}.weight"] = (f,)
    conv("tail", c, f, 9)
    return shapes


def fold_batch_norm(net: nn.Module) -> nn.Module:
    """Fold each BatchNorm into the convolution before it (inference only: the running
    statistics become part of the weights and bias), in place; returns ``net``.

    The folded network computes the same function with one pass less over every feature map,
    and its bf16 copy is more accurate, since no normalisation runs in bf16.
    """
    for module in net.modules():
        if isinstance(module, _ResidualBlock):
            module.bn1 = _fold(module.conv1, module.bn1)
            module.bn2 = _fold(module.conv2, module.bn2)
        elif isinstance(module, nn.Sequential):
            for i in range(1, len(module)):
                if isinstance(module[i - 1], nn.Conv2d) and isinstance(module[i], nn.BatchNorm2d):
                    module[i] = _fold(module[i - 1], module[i])
    return net


def _fold(conv: nn.Module, bn: nn.Module) -> nn.Module:
    if not isinstance(bn, nn.BatchNorm2d) or not isinstance(conv, nn.Conv2d) or bn.running_var is None:
        return bn
    with torch.no_grad():
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        conv.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
        folded = (bias - bn.running_mean.double()) * scale + bn.bias.double()
        if conv.bias is None:
            conv.bias = nn.Parameter(folded.to(conv.weight.dtype))
        else:
            conv.bias.copy_(folded.to(conv.bias.dtype))
    return nn.Identity()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
