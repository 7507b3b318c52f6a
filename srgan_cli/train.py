"""The training loop: the paper's two stages (``mse``: SRResNet; ``gan``: SRGAN from it).

One function, :func:`train`, runs a stage from a dict of options (the same names as the CLI
flags) into a run folder::

    RUN/config.json                 the resolved configuration
    RUN/config.step<N>.json         the one before a resume with other options (from step N)
    RUN/metrics.jsonl               one JSON line per log interval (step, loss, lr, patches_per_s, val_psnr,
                                    val_lpips where LPIPS can be computed, ...)
    RUN/checkpoint.pt               everything to resume (tensors and plain Python only: weights_only loads)
    RUN/generator.safetensors       the generator at the last checkpoint (the EMA one when --ema is on)
    RUN/generator_best.safetensors  the generator with the best validation score so far (PSNR, or
                                    LPIPS in the gan stage where it can be computed: --best-by)

Resuming is exact: the data stream is a pure function of (seed, step) (see :mod:`data`), and the
checkpoint holds the model, optimiser, scaler and RNG states, so N steps in one go and k steps
of a run with --steps N plus a resume give the same weights on the CPU. A resume that changes
options (or raises --steps under a schedule that follows it) goes on with them, and says so.

Under ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK set) every process trains on its own shard
with DistributedDataParallel; rank 0 alone writes files and reports, and the others wait at a
barrier around each checkpoint. The core never prints: progress goes to a ``report`` callback.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import datetime
import json
import math
import os
import pickle
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import ARCHS, D_ARCHS, DiscriminatorConfig, GeneratorConfig
from .data import (
    CACHE_MODES,
    ImageScan,
    ImagesUnreadable,
    PatchDataset,
    TooSmallToValidate,
    ValImage,
    check_disk_cache,
    default_workers,
    disk_cache_folder,
    failure_text,
    hold_out,
    load_val_set,
    make_loader,
    make_pair,
    patch_margin,
    resolve_cache,
    scan_images,
    val_image,
)
from .device import PRECISIONS, autocast, choose_device, choose_dtype
from .errors import OptionError, SrganError, first_line, printable
from .fsutil import atomic_path, read_json, write_reason
from .models import build_discriminator, build_generator
from .stopping import forget_requests, interrupt_signals, process_group_started, same_request
from .weights import load_generator, read_metadata, save_generator, sha256_file

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = "srgan-train-checkpoint"
CHECKPOINT_VERSION = 1
STAGES = ("mse", "gan")
LR_DECAYS = ("none", "step", "cosine")
GAN_TYPES = ("standard", "relativistic")
BEST_BY = ("psnr", "lpips")  # what generator_best.safetensors is best at on the validation set
PIXEL_LOSSES = ("mse", "l1")
# gan stage: the weights of the loss terms on SR and HR alone that hold artifacts back (0 = off)
# Weights of the gan stage's extra loss terms (0 = off, the paper): the artifact losses, and the
# total variation of SRResNet-VGG22
ARTIFACT_WEIGHTS = ("grid_weight", "flat_weight", "block_weight", "local_grid_weight", "spectral_weight", "tv_weight")

Report = Callable[[dict[str, Any]], None]
HOLDOUT_SIDE = 256  # --val-holdout validates on each held-out image's central 256 x 256 px (HR)
HISTORY = 10_000  # per-step losses kept in memory for the caller (a long run must not grow without bound)
# Every file a run writes in its folder: a new run (no --resume) refuses a folder that holds any of them.
RUN_FILES = ("config.json", "metrics.jsonl", CHECKPOINT, "generator.safetensors", "generator_best.safetensors")
SEED_MAX = 2**64 - 1  # torch.manual_seed's limit (numpy's generators take any int >= 0)
# Upper bounds far above any real model (the paper's SRResNet: 16 x 64; ESRGAN's RRDB: 23 x 64; D: 64),
# below the sizes that fail only after minutes (or hundreds of GB) of allocating and training.
MAX_SIZES = {"num_blocks": 256, "num_features": 1024, "d_features": 512, "batch_size": 4096}
MAX_LR = 1.0  # Adam's steps are about lr in size: far above 1 only diverges


MAX_THREADS = 1024  # torch CPU threads (the largest machines have a few hundred cores)
MAX_WORKERS = 256  # data loader processes


@dataclass
class TrainConfig:
    """Every training option; ``None`` means "the paper's value for this stage" (see :meth:`resolved`)."""

    stage: str = "mse"
    data: str | None = None
    init: str | None = None
    steps: int | None = None  # generator updates; mse 1e6, gan 2e5 (1e5 at lr, 1e5 at lr/10)
    batch_size: int = 16  # per process
    patch_size: int = 96  # HR
    scale: int = 4
    lr: float = 1e-4
    lr_decay: str | None = None  # mse: none; gan: step
    lr_step: int | None = None  # None: steps // 2, following --steps when a resume extends the run
    lr_gamma: float = 0.1  # the factor of each --lr-decay step drop
    lr_milestones: list[int] | None = None  # step: drops at these steps, not every lr_step (ESRGAN: 50k, 100k..)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False  # mse stage on CUDA: the whole update captured once and replayed
    workers: int | None = None  # None: min(4, cpus) on a GPU, 0 on the CPU (decided at run time)
    cache: str = "auto"
    cache_dir: str | None = None  # --cache disk's folder; None: data.default_cache_dir()
    scale_aug: float = 1.0  # crops from the image downscaled by a random factor in [scale_aug, 1] (1 = off)
    vgg_weights: str | None = None
    content_loss: str | None = None  # mse stage: mse; gan: vgg54
    content_criterion: str = "mse"  # gan: the VGG terms' criterion; ESRGAN: l1
    feature_scale: float | None = None  # gan: VGG features' factor; None: 1/12.75 for Caffe weights (SRGAN), else 1
    content_jitter: int = 0  # gan: random 0..N-1 px offset before VGG (0 = off, the paper)
    d_jitter: int = 0  # gan: random 0..N-1 px roll of the discriminator's input (0 = off, the paper)
    d_batch_norm: bool = True  # gan: the paper's discriminator has BatchNorm
    d_arch: str = "vgg"  # gan: "vgg" (the paper's, one logit a patch) or "unet" (spectral norm, one a pixel)
    d_features: int = 64  # gan: the discriminator's first conv's maps (both archs double them as they go)
    grid_weight: float = 0.0  # gan: weight of losses.grid_loss, the 4 px grid's mean (0 = off, the paper)
    ldl_weight: float = 0.0  # gan: weight of losses.ldl_loss, LDL's artifact loss; needs --ema (0 = off)
    flat_weight: float = 0.0  # gan: weight of losses.flat_loss, L1 where HR is flat (0 = off)
    block_weight: float = 0.0  # gan: weight of losses.block_loss, steps uneven over the 4 px phases (0 = off)
    local_grid_weight: float = 0.0  # gan: weight of losses.local_grid_loss, the grid per 64 px square (0 = off)
    spectral_weight: float = 0.0  # gan: weight of losses.spectral_loss, fine detail beyond HR's (0 = off)
    tv_weight: float = 0.0  # gan: weight of losses.tv_loss, the total variation (0 = off; the paper's SRResNet-VGG22)
    gan_type: str = "standard"
    adv_weight: float = 1e-3
    pixel_loss: str = "mse"
    pixel_weight: float | None = None  # mse stage: 1; gan: 0
    ema: float = 0.0
    arch: str | None = None  # srresnet, or what --init holds
    num_blocks: int | None = None
    num_features: int | None = None
    batch_norm: bool | None = None
    val: str | None = None
    val_every: int = 1000
    val_holdout: int = 0  # validate on this many images held out of --data instead of --val (0 = off)
    best_by: str | None = None  # generator_best by val "psnr" or "lpips"; None: mse psnr, gan lpips if computable
    data_dir: str | None = None
    checkpoint_every: int = 1000
    log_every: int = 10
    seed: int = 0
    threads: int | None = None

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise SrganError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**options)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved(self) -> TrainConfig:
        """Fill the stage-dependent defaults and check every value."""
        c = dataclasses.replace(self)
        _choice("stage", c.stage, STAGES)
        gan = c.stage == "gan"
        if c.steps is None:
            c.steps = 200_000 if gan else 1_000_000
        if c.lr_decay is None:
            c.lr_decay = "step" if gan else "none"
        if c.content_loss is None:
            c.content_loss = "vgg54" if gan else "mse"
        if c.pixel_weight is None:
            c.pixel_weight = 0.0 if gan else 1.0
        _choice("lr_decay", c.lr_decay, LR_DECAYS)
        _choice("gan_type", c.gan_type, GAN_TYPES)
        _choice("d_arch", c.d_arch, D_ARCHS)
        _choice("pixel_loss", c.pixel_loss, PIXEL_LOSSES)
        _choice("content_criterion", c.content_criterion, PIXEL_LOSSES)
        _choice("precision", c.precision, PRECISIONS)
        _choice("cache", c.cache, CACHE_MODES)
        if c.best_by is not None:
            _choice("best_by", c.best_by, BEST_BY)
        if c.arch is not None:
            _choice("arch", c.arch, ARCHS)
        for f in fields(c):  # NaN passes every comparison below, and inf makes the loss NaN
            value = getattr(c, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise OptionError(f"--{f.name.replace('_', '-')} must be a finite number, got {value}")
        for name in (
            "steps",
            "batch_size",
            "patch_size",
            "val_every",
            "checkpoint_every",
            "log_every",
            "lr_step",
            "d_features",
            "num_blocks",
            "num_features",
        ):
            if getattr(c, name) is not None and int(getattr(c, name)) < 1:
                raise OptionError(f"--{name.replace('_', '-')} must be at least 1")
        for name, most in MAX_SIZES.items():
            if getattr(c, name) is not None and getattr(c, name) > most:
                raise OptionError(f"--{name.replace('_', '-')} must be at most {most}, got {getattr(c, name)}")
        if isinstance(c.seed, bool) or not isinstance(c.seed, int) or not 0 <= c.seed <= SEED_MAX:
            raise OptionError(f"--seed must be a whole number from 0 to 2**64 - 1 ({SEED_MAX}), got {c.seed}")
        if c.val_holdout < 0:
            raise OptionError(f"--val-holdout must be >= 0 (0 = off), got {c.val_holdout}")
        if c.val_holdout and c.val:
            raise OptionError("--val-holdout validates on images of --data; give it or --val, not both")
        # upper bounds: torch segfaulted at 100,000 threads and overflowed at 2**31; a loader of 10**5
        # processes forked until the kernel killed the run
        if c.workers is not None and not 0 <= c.workers <= MAX_WORKERS:
            raise OptionError(f"--workers must be from 0 to {MAX_WORKERS}, got {c.workers}")
        if c.threads is not None and not 1 <= c.threads <= MAX_THREADS:
            raise OptionError(f"--threads must be from 1 to {MAX_THREADS}, got {c.threads}")
        for name in ("content_jitter", "d_jitter", "adv_weight", "pixel_weight", "ldl_weight", *ARTIFACT_WEIGHTS):
            if getattr(c, name) < 0:
                raise OptionError(f"--{name.replace('_', '-')} must be >= 0 (0 = off), got {getattr(c, name)}")
        if not (0.0 < c.scale_aug <= 1.0):
            raise OptionError(f"--scale-aug must be in (0, 1] (1 = off), got {c.scale_aug}")
        if not (0.0 <= c.ema < 1.0):
            raise OptionError(f"--ema must be in [0, 1) (0 = off), got {c.ema}")
        gan_only = [n for n in ("content_jitter", "d_jitter", *ARTIFACT_WEIGHTS) if getattr(c, n)]
        gan_only += [n for n in _GAN_ONLY_FIXED if getattr(c, n) != getattr(TrainConfig, n)]
        if c.content_loss != "mse":
            gan_only.append("content_loss")  # the mse stage trains on pixels; it was recorded, not used
        if c.pixel_weight != 1.0:
            gan_only.append("pixel_weight")  # the mse stage's loss is the pixel loss alone: 0 trained nothing
        if gan_only and not gan:
            flags = ", ".join("--" + n.replace("_", "-") for n in gan_only)
            raise OptionError(f"{flags}: only in --stage gan (the mse stage has the pixel loss alone)")
        if c.ldl_weight and not (gan and c.ema):
            raise OptionError(
                "--ldl-weight works in --stage gan with --ema (its artifact map compares SR with the EMA)"
            )
        if c.lr_step is not None and c.lr_decay != "step":
            raise OptionError(f"--lr-step works with --lr-decay step, not {c.lr_decay}")
        if c.cache_dir is not None and c.cache != "disk":  # auto never keeps files: it was silently unused
            raise OptionError(
                f"--cache-dir is the folder of --cache disk, which --cache {c.cache} does not use; "
                "add --cache disk or drop --cache-dir"
            )
        if c.lr_milestones is not None:
            c.lr_milestones = _milestones(c.lr_milestones)
            if c.lr_decay != "step":
                raise OptionError(f"--lr-milestones works with --lr-decay step, not {c.lr_decay}")
            if c.lr_step is not None:
                raise OptionError("--lr-milestones and --lr-step both say when the rate drops; give one")
        if c.feature_scale is not None and not c.feature_scale > 0:
            raise OptionError(f"--feature-scale must be positive, got {c.feature_scale}")
        if c.best_by is not None and not (c.val or c.val_holdout):
            raise OptionError("--best-by chooses generator_best by validation: give --val or --val-holdout too")
        if not 0 < c.lr <= MAX_LR:  # far larger overflows Adam's float32 step (a traceback at ~3e37)
            raise OptionError(f"--lr must be positive and at most {MAX_LR:g} (the paper's is 1e-4), got {c.lr}")
        if not 0 < c.lr_gamma <= 1:
            raise OptionError(f"lr_gamma must be in (0, 1], got {c.lr_gamma}")
        for name in ("adam_beta1", "adam_beta2"):
            if not (0.0 <= getattr(c, name) < 1.0):
                raise OptionError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(c, name)}")
        if c.patch_size % c.scale:
            raise OptionError(f"--patch-size {c.patch_size} must be a multiple of the scale ({c.scale})")
        if c.patch_size < 2 * c.scale:  # a 1 px LR patch: BatchNorm cannot train on one value a channel
            raise OptionError(
                f"--patch-size {c.patch_size}: the low-resolution patch would be 1 px; use at least {2 * c.scale}"
            )
        if gan and c.patch_size % 16:
            raise OptionError(f"--patch-size {c.patch_size}: the discriminator needs a multiple of 16 (paper: 96)")
        if c.data is None:
            raise OptionError("--data is required: a folder (tree) of training images")
        if c.cuda_graphs and (gan or c.compile):
            raise OptionError(
                "--cuda-graphs works with --stage mse and without --compile: add --no-cuda-graphs (or --no-compile)"
            )
        return c


def _roll(batch: torch.Tensor, offset: tuple[int, int] | None) -> torch.Tensor:
    """The discriminator's input rolled by this step's --d-jitter offset (None: as it is). Its
    strided gradient is otherwise locked to one phase of the x4 pixel grid; real and fake wrap
    the same way, so the seam tells them apart by nothing."""
    return batch if offset is None else torch.roll(batch, shifts=offset, dims=(-2, -1))


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise OptionError(f"--{name.replace('_', '-')} {value!r}: expected one of {', '.join(allowed)}")


# Options of the gan stage alone, beside the artifact weights and jitters (see TrainConfig.resolved):
# those with a fixed default, and the two whose default depends on the stage (None until resolved).
_GAN_ONLY_FIXED = ("d_arch", "d_features", "d_batch_norm", "gan_type", "adv_weight", "vgg_weights")
_GAN_ONLY_FIXED += ("content_criterion", "feature_scale")
_GAN_ONLY_VALUES = (*_GAN_ONLY_FIXED, "content_loss", "pixel_weight")

# Options that define what is being trained: a resume may not change them.
FROZEN_ON_RESUME = (
    "stage",
    "arch",
    "num_blocks",
    "num_features",
    "batch_norm",
    "d_batch_norm",
    "d_arch",
    "d_features",
    "scale",
    "seed",
    "gan_type",
    "val_holdout",  # which images are trained on
)


def _flag(name: str, value: Any) -> str:
    if name == "batch_norm":
        return "--no-batch-norm" if value is False else "BatchNorm"
    if name == "d_batch_norm":
        return "--no-d-batch-norm" if value is False else "the discriminator's BatchNorm"
    return f"--{name.replace('_', '-')} {value!r}"


def _named(given_as: Mapping[str, str] | None, name: str, value: Any) -> str:
    """Option ``name`` set to ``value`` as a message names it: as the user gave it where that was not
    a flag (``given_as``: ``num_blocks = 3 in run.toml``), else as its flag (``--num-blocks 3``)."""
    return (given_as or {}).get(name) or _flag(name, value)


def _milestones(value: Any) -> list[int]:
    """--lr-milestones as a list of steps: "50000,100000" or a list of whole numbers, rising."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        steps = [int(v.strip()) if isinstance(v, str) else v for v in items]
    except (TypeError, ValueError):
        steps = None
    if not steps or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in steps):
        raise OptionError(f"--lr-milestones {value!r}: expected steps (whole numbers >= 1) such as 50000,100000")
    if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
        raise OptionError(f"--lr-milestones {value!r}: the steps must rise")
    return steps


def lr_at(cfg: TrainConfig, step: int) -> float:
    """The learning rate of update ``step`` (0-based)."""
    if cfg.lr_decay == "step" and cfg.lr_milestones:
        return cfg.lr * cfg.lr_gamma ** sum(step >= m for m in cfg.lr_milestones)
    if cfg.lr_decay == "step":
        return cfg.lr * cfg.lr_gamma ** (step // (cfg.lr_step or max(1, cfg.steps // 2)))
    if cfg.lr_decay == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))
    return cfg.lr


def ema_decay(ema: float, step: int) -> float:
    """The EMA decay for update ``step`` (0-based): ``ema``, warmed up as min(ema, (1+step)/(10+step)).

    Without the warm-up a run from scratch with --ema 0.999 keeps 37% of its random start in
    the EMA after 1,000 steps, so early validation and exports are meaningless.
    """
    return min(ema, (1.0 + step) / (10.0 + step))


def pixel_loss(sr: torch.Tensor, hr: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    try:
        from .losses import pixel_loss as shared_pixel_loss
    except ImportError:  # losses.py not installed in this tree: the same two losses, here
        return F.l1_loss(sr, hr) if kind == "l1" else F.mse_loss(sr, hr)
    return shared_pixel_loss(sr, hr, kind=kind)


def psnr_y(sr: np.ndarray, hr: np.ndarray, crop: int) -> float:
    """Y-channel PSNR with a ``crop`` px border removed: the metric of ``srgan bench``."""
    from .metrics import psnr_y as bench_psnr_y

    return float(bench_psnr_y(sr, hr, crop=crop))


# ---------------------------------------------------------------------------------------------
# Checkpoints


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Our own checkpoint, loaded without unpickling arbitrary objects; one-line error if broken."""
    return _load_checkpoint(path)


def _load_checkpoint(path: Path, resume_as: str = "--resume") -> dict[str, Any]:
    """:func:`load_checkpoint`, its missing file told as a resume asked for as ``resume_as``."""
    try:
        # torch warns of what it will not unpickle before it refuses: the srgan program ignores those
        # warnings (cli.ignore_library_warnings); the library leaves the process's filters alone
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise SrganError(_no_checkpoint(path, resume_as)) from None
    except Exception as exc:  # zip, pickle and EOF errors all mean the same to the user
        first = first_line(exc, 160)
        if isinstance(exc, pickle.UnpicklingError):  # torch's text goes on about weights_only=False: no way out here
            first = "it holds Python objects, which are never loaded" if "GLOBAL" in str(exc) else "not torch's data"
        elif isinstance(exc, KeyError):  # a text file: KeyError('101')
            first = "not torch's data"
        raise SrganError(
            f"{path}: corrupt or not an srgan checkpoint ({first}); restore a copy or start a new run"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise SrganError(f"{path}: not an srgan training checkpoint; restore a copy or start a new run")
    if int(state.get("format_version", 0)) > CHECKPOINT_VERSION:
        raise SrganError(f"{path}: written by a newer srgan; upgrade srgan to resume it")
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise SrganError(f"{path}: damaged checkpoint (its step is {step!r}); restore a copy or start a new run")
    rng = state.get("rng") or {}
    damaged = [name for name in ("config", "rng", "data") if not isinstance(state.get(name) or {}, dict)]
    if isinstance(rng, dict):
        damaged += [f"rng {k}" for k, v in rng.items() if not (isinstance(v, torch.Tensor) and v.dtype == torch.uint8)]
    if damaged:
        raise SrganError(f"{path}: damaged checkpoint (its {damaged[0]}); restore a copy or start a new run")
    return state


def _no_checkpoint(path: Path, resume_as: str = "--resume") -> str:
    """Why --resume (given as ``resume_as``) cannot go on without ``path``, and what can be done instead."""
    kept = [path.parent / name for name in ("generator.safetensors", "generator_best.safetensors")]
    kept = [weights for weights in kept if weights.is_file()]
    if kept:  # generator_best from a validation before the first checkpoint, or a checkpoint.pt deleted
        names = " and ".join(weights.name for weights in kept)
        return (
            f"{path}: no checkpoint to resume from; the run stopped before its first checkpoint, and its {names} "
            f"{'is' if len(kept) == 1 else 'are'} kept: start a new run with another --out (--init {kept[0]} "
            "starts it from those weights)"
        )
    if resume_as != "--resume":  # the config file's resume = true: the flag turns it off
        return f"{path}: no checkpoint to resume from; start the run without {resume_as} (or add --no-resume)"
    return f"{path}: no checkpoint to resume from; start the run without --resume"


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as exc:  # a full disk reaches torch's zip writer as "unexpected pos ..."
            raise OSError(f"writing failed, is the disk full? ({first_line(exc, 80)})") from None


def _rng_state(device: torch.device) -> dict[str, Any]:
    rng: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return rng


def _set_rng_state(rng: dict[str, Any], device: torch.device) -> None:
    if "torch" in rng:
        torch.set_rng_state(rng["torch"])
    if device.type == "cuda" and "cuda" in rng:
        torch.cuda.set_rng_state(rng["cuda"], device)


# ---------------------------------------------------------------------------------------------
# Distributed set-up


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def _setup_dist(device_name: str) -> tuple[Dist, torch.device]:
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return Dist(), choose_device(device_name)
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise SrganError("WORLD_SIZE, RANK and LOCAL_RANK must be integers") from None
    if not torch.distributed.is_initialized():
        unset = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
        if unset:  # init_process_group's env:// rendezvous failed with a traceback
            are = "is" if len(unset) == 1 else "are"
            raise SrganError(
                f"WORLD_SIZE={world} but {', '.join(unset)} {are} not set: start training on several processes "
                "with torchrun (torchrun --nproc_per_node N -m srgan_cli train ...), or unset WORLD_SIZE"
            )
    if device_name in ("auto", "cuda") and torch.cuda.is_available():
        device = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = choose_device(device_name)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local % torch.cuda.device_count())
            torch.cuda.set_device(device)
    dist = torch.distributed
    owns = False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        owns = True
        process_group_started()
    return Dist(dist.get_rank(), dist.get_world_size(), local, owns), device


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    generator: nn.Module  # the trained generator (the EMA copy when --ema is on), unwrapped
    best_psnr: float | None  # the best validation PSNR seen (generator_best's with --best-by psnr)
    last_psnr: float | None
    losses: list[float]  # the generator's total loss of each step run in this call (the last HISTORY ones)
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)  # every loss term, same steps
    best_lpips: float | None = None  # the best (lowest) validation LPIPS seen, where computed
    best_by: str = "psnr"  # what generator_best.safetensors was chosen by


class _GraphedStep:
    """The mse stage's whole update (forward, loss, backward, Adam) captured once as a CUDA graph
    and replayed each step: one launch instead of hundreds, for GPUs where the step is bound by
    launching kernels. The first ``WARMUP`` steps run eagerly on a side stream (as capture
    wants), then the next step is captured and every step from it on is a replay on static
    input buffers. The capturable Adam reads its learning rate from a device tensor."""

    WARMUP = 3

    def __init__(self, trainer: _Trainer) -> None:
        self.t = trainer
        self.eager_steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_lr = self.static_hr = self.static_loss = None

    def __call__(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        t = self.t
        if self.graph is None and self.eager_steps < self.WARMUP:
            self.eager_steps += 1
            side = torch.cuda.Stream(t.device)
            side.wait_stream(torch.cuda.current_stream(t.device))
            with torch.cuda.stream(side):
                loss = t._mse_update(lr, hr, cast_cache=False)
            torch.cuda.current_stream(t.device).wait_stream(side)
            return {"loss": loss}
        if self.graph is None:
            self.static_lr, self.static_hr = lr.clone(), hr.clone()  # clone keeps the memory format
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):  # gradients set to None first: its backward writes them
                self.static_loss = t._mse_update(self.static_lr, self.static_hr, cast_cache=False)
        self.static_lr.copy_(lr)
        self.static_hr.copy_(hr)
        self.graph.replay()
        return {"loss": self.static_loss.clone()}


class _Interrupt:
    """First Ctrl-C, SIGTERM (a scheduler's preemption) or SIGHUP (the terminal or SSH session
    closed): finish the step, save, stop. Second: stop at once.

    A second signal within ``SAME_REQUEST`` seconds of the first is the same request delivered
    twice, not a second Ctrl-C: `timeout -s INT` signals the command and then its whole process
    group, and a scheduler may signal a job step and its processes alike. SIGHUP is left alone
    where it is ignored (under `nohup`: the run is to go on).

    Where no signal can reach the run (train() on a thread other than the main one), the caller's
    ``stop`` (train's argument: called with no arguments, true to stop) and a KeyboardInterrupt
    raised by ``report`` (:meth:`_Trainer.emit`) are the first request, with the same outcome;
    they are asked in the main thread too.

    ``notice``, where given, is called as the first signal comes, on a thread of its own: the run
    stops only once its step (or validation) is over, seconds on a CPU, and without a word users
    pressed Ctrl-C again, losing the steps since the last checkpoint. The handler itself only
    writes a byte to a pipe (no lock that the interrupted main thread may hold).
    """

    def __init__(
        self, enabled: bool, stop: Callable[[], bool] | None = None, notice: Callable[[], None] | None = None
    ) -> None:
        self.enabled = enabled
        self.signalled = False
        self.reported = False  # a KeyboardInterrupt from the report callback
        self.forced = False  # the second signal: its KeyboardInterrupt is not a request to stop cleanly
        self._stop = stop
        self._previous: dict[int, Any] = {}
        self._notice = notice
        self._pipe: tuple[int, int] | None = None  # the handler's wake-up of the notice thread
        self._watcher: threading.Thread | None = None

    @property
    def requested(self) -> bool:
        """Whether the run is to stop cleanly: a signal came, ``report`` raised KeyboardInterrupt, or
        the caller's ``stop`` says so (asked each time until it does, then kept)."""
        if not (self.signalled or self.reported) and self._stop is not None and self._stop():
            self.reported = True
        return self.signalled or self.reported

    def __enter__(self) -> _Interrupt:
        # Signal handlers can only be set from the main thread (train() may run in another).
        self.enabled = self.enabled and threading.current_thread() is threading.main_thread()
        if self.enabled:
            forget_requests()
            if self._notice is not None:
                self._pipe = os.pipe()
                os.set_blocking(self._pipe[1], False)  # a full pipe drops the byte, never blocks the handler
                self._watcher = threading.Thread(target=self._watch, name="srgan-stop-notice", daemon=True)
                self._watcher.start()
            for sig in interrupt_signals():  # not those the caller ignores (nohup's SIGHUP)
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _watch(self) -> None:
        """The notice thread: says once that the run is stopping as the handler's byte arrives (a
        loader worker forked with the handler, before it sets its own, may write one too: said only
        where this process was signalled)."""
        said = False
        while True:
            try:
                byte = os.read(self._pipe[0], 1)
            except OSError:
                return
            if byte != b"s":  # b"q" (the run is over) or the pipe closed
                return
            if self.signalled and not said:
                said = True
                with contextlib.suppress(Exception):
                    self._notice()

    def _handle(self, signum: int, frame: Any) -> None:
        repeat = same_request()  # recorded for the whole process: the handler after this one knows it
        if not self.signalled:
            self.signalled = True
            if self._pipe is not None:
                with contextlib.suppress(OSError):
                    os.write(self._pipe[1], b"s")
        elif not repeat:
            self.forced = True
            raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        if self._pipe is not None:
            read_end, write_end = self._pipe
            os.set_blocking(write_end, True)
            with contextlib.suppress(OSError):
                os.write(write_end, b"q")
            if self._watcher is not None:
                self._watcher.join(timeout=10)
            if self._watcher is None or not self._watcher.is_alive():  # else it may still read: leave it
                os.close(read_end)
                os.close(write_end)
            self._pipe = None


def _val_name(val: str | None, holdout: int) -> str:
    return f"{holdout} held-out images" if holdout else (val or "none")


def _worker_message(message: str) -> str:
    """The error's own message, without the traceback torch puts around an error raised in a
    DataLoader worker ("Caught SrganError in DataLoader worker process 1. Original Traceback...")."""
    if not message.startswith("Caught ") or "Traceback" not in message:
        return message
    lines = [line for line in message.splitlines() if line.strip()]
    last = lines[-1] if lines else message
    kind = re.match(r"[A-Za-z_][\w.]*: ", last)  # "srgan_cli.errors.SrganError: ", or that of a subclass
    return last[kind.end() :] if kind else last


def _val_in_data(val: str, data: str | None) -> str | None:
    """A note where the --val folder's images are among those of --data (the same folder, or one
    inside it: the scan of --data is recursive), so the run would validate, and pick
    generator_best, on images it trains on; None otherwise (a named set, or folders apart)."""
    if data is None:
        return None
    folder = Path(os.path.expanduser(val))
    if not folder.is_dir():
        return None  # a named set
    from .bench import hr_folder

    hr = hr_folder(folder)
    images = hr if hr.is_dir() else folder  # the folder load_val_set reads
    try:
        inside = Path(os.path.realpath(images)).is_relative_to(os.path.realpath(os.path.expanduser(data)))
    except (OSError, ValueError):
        return None
    if not inside:
        return None
    return (
        f"--val {printable(val)} holds images of --data {printable(data)}: the run validates, and picks "
        "generator_best, on images it trains on; --val-holdout N validates on N images of --data kept out "
        "of training instead"
    )


def _inside(path: str | os.PathLike[str], folder: str | None) -> bool:
    """Whether ``path`` is ``folder`` or inside it, as the files they name (links resolved)."""
    if folder is None:
        return False
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(os.path.expanduser(folder)))
    except (OSError, ValueError):
        return False


def _unwrap(module: nn.Module) -> nn.Module:
    module = getattr(module, "_orig_mod", module)
    return getattr(module, "module", module)


def _refuse_unused(options: dict[str, Any], cfg: TrainConfig) -> None:
    """Refuse the options given (on the command line, in a --config file or to train()) that would
    do nothing with the run's others, as --best-by without validation is: --val-every and
    --data-dir without --val were silently ignored, and the run validated on nothing."""
    if options.get("val_every") is not None and not (cfg.val or cfg.val_holdout):
        raise OptionError(
            "--val-every says how often --val or --val-holdout validates: give one of them too, or drop --val-every"
        )
    if options.get("data_dir") is not None and not cfg.val:
        raise OptionError(
            "--data-dir is the folder where --val finds set5, set14 or bsd100: give --val too, or drop --data-dir"
        )


def resolve_options(run_dir: Path, options: dict[str, Any], resume: bool) -> tuple[TrainConfig, dict[str, Any] | None]:
    """The run's configuration: a fresh one from ``options``, or the saved one with ``options`` on top."""
    cfg, state, _ = _resolve_options(run_dir, options, resume)
    return cfg, state


def _resolve_options(
    run_dir: Path, options: dict[str, Any], resume: bool, given_as: Mapping[str, str] | None = None
) -> tuple[TrainConfig, dict[str, Any] | None, str | None]:
    """:func:`resolve_options`, and the note on the files of a dead run a new run replaces (or None);
    ``given_as`` as for :func:`train`."""
    ckpt_path = run_dir / CHECKPOINT
    if not resume:
        # Every rank checks here, before torch.distributed is set up: rank 0 writes nothing until
        # all ranks have joined its first collectives, so each one sees the folder as it was.
        replacing = _refuse_run_files(run_dir)
        cfg = TrainConfig.from_dict(options).resolved()
        _refuse_unused(options, cfg)
        if cfg.init is not None:  # once the options agree: a Hub reference may be a download
            cfg.init = resolve_init(cfg.init)  # the run records the file its weights come from, not the name
        return cfg, None, replacing
    state = _load_checkpoint(ckpt_path, (given_as or {}).get("resume", "--resume"))
    saved = dict(state.get("config") or {})
    known = {f.name for f in fields(TrainConfig)}
    saved = {k: v for k, v in saved.items() if k in known}
    # options added since the run's version: it trained with their defaults (the paper's behaviour),
    # which a resume compares with what it is given as with any saved value
    for f in fields(TrainConfig):
        if f.default is not dataclasses.MISSING:
            saved.setdefault(f.name, f.default)
    if saved.get("stage", "mse") == "mse":
        # values of the gan stage that runs from before they were refused in the mse stage kept
        # (recorded, never used): a resume drops them rather than refuse its own run
        for name in _GAN_ONLY_VALUES:
            if name not in options:
                saved.pop(name, None)
    # when the rate drops: a resume that names another schedule, or new drops, replaces the saved ones
    decay = options.get("lr_decay", saved.get("lr_decay"))
    for key in ("lr_step", "lr_milestones"):
        if key not in options and (decay not in (None, "step") or {"lr_step", "lr_milestones"} & set(options)):
            saved.pop(key, None)
    if "cache_dir" not in options and options.get("cache", saved.get("cache")) != "disk":
        saved.pop("cache_dir", None)  # a resume that leaves the disk cache leaves its folder too
    if not (options.get("val") or saved.get("val") or saved.get("val_holdout")) and "best_by" not in options:
        saved.pop("best_by", None)
    for key in FROZEN_ON_RESUME:
        if key in options and saved.get(key) is not None and options[key] != saved[key]:
            raise OptionError(
                f"{_named(given_as, key, options[key])} differs from the run being resumed ({_flag(key, saved[key])}); "
                "a resume continues the same training"
            )
    cwd = state.get("cwd")
    if isinstance(cwd, str) and os.path.isdir(cwd) and not os.path.samefile(cwd, os.getcwd()):
        for key in ("data", "init", "vgg_weights", "data_dir", "val", "cache_dir"):  # as typed when the run began
            value = saved.get(key)
            if isinstance(value, str) and not os.path.isabs(value):
                there = os.path.join(cwd, value)
                if key != "val" or os.path.exists(there):  # a --val that is no folder there names a set
                    saved[key] = there
    new_init, old_init = options.get("init"), saved.get("init")
    if new_init is not None:  # a name or Hub reference, compared as the file it stands for
        new_init = resolve_init(new_init)
        options = {**options, "init": new_init}
    if new_init is not None and (old_init is None or os.path.realpath(new_init) != os.path.realpath(old_init)):
        # the weights come from the checkpoint: a new --init would be recorded in the exports, not used
        raise OptionError(
            f"--init {new_init} differs from the run being resumed ({old_init or 'none'}); a resume continues "
            "from its checkpoint: drop --init, or start a new run with another --out"
        )
    if saved.get("stage") == "gan" and "patch_size" in options and options["patch_size"] != saved.get("patch_size"):
        raise OptionError(
            f"--patch-size {options['patch_size']} differs from the gan run being resumed ({saved.get('patch_size')}); "
            "the discriminator is built for its patch size"
        )
    state["resumed_val"] = saved.get("val")  # as resolved above, for the trainer's "validation changed" check
    merged = {**saved, **options}
    try:
        cfg = TrainConfig.from_dict(merged).resolved()
    except (TypeError, ValueError, KeyError) as exc:  # a checkpoint's config edited by hand
        raise SrganError(f"{ckpt_path}: its saved configuration is damaged ({first_line(exc, 120)})") from None
    _refuse_unused(options, cfg)
    step = state.get("step")
    if isinstance(step, int) and cfg.steps < step:
        raise OptionError(
            f"--steps {cfg.steps} is below the run's step {step}: a resume goes on from there; raise --steps, "
            "or use RUN/generator.safetensors as it is"
        )
    # a run from before the folder it began in was recorded: its relative paths cannot be compared
    unsure = {k for k in ("data",) if not isinstance(cwd, str) and not os.path.isabs(str(saved.get(k) or "/"))}
    step = step if isinstance(step, int) else 0
    if step >= cfg.steps:
        # nothing left to train: the options given change nothing, so the run goes on with its own (the
        # weights written from the checkpoint say what trained them) and config.json stays as it is;
        # the run's end says which were not applied. Those of speed alone are used, where the models load.
        state["unapplied"] = _changed_options(saved, options, cfg, _SPEED_OPTIONS | {"steps"}, unsure)
        state["resume_notes"] = []
        kept = {**saved, **{k: v for k, v in options.items() if k in _SPEED_OPTIONS}, "steps": cfg.steps}
        try:
            cfg = TrainConfig.from_dict(kept).resolved()
        except (TypeError, ValueError, KeyError) as exc:
            raise SrganError(f"{ckpt_path}: its saved configuration is damaged ({first_line(exc, 120)})") from None
        return cfg, state, None
    state["resume_notes"] = _resume_notes(saved, options, cfg, step, unsure)
    state["changed"] = _changed_options(saved, options, cfg, _QUIET_ON_RESUME, unsure)  # said if none is applied
    return cfg, state, None


# Options a resume may change without a note: where and how fast the run goes (not --precision,
# which changes the arithmetic), how often it reports, and those with notes of their own (--val,
# --steps: see _resume_notes)
_QUIET_ON_RESUME = frozenset(
    {"steps", "workers", "cache", "cache_dir", "threads", "device", "channels_last", "compile"}
    | {"cuda_graphs", "log_every", "checkpoint_every", "val_every", "val", "data_dir", "best_by", "init"}
)


# Options that name a file or folder, relative to the folder the run was started from where relative
_PATH_OPTIONS = ("data", "init", "vgg_weights", "data_dir", "val", "cache_dir")


def _anchored(key: str, value: Any, cwd: Any) -> Any:
    """A path option's value as the file or folder it names from ``cwd`` (its real path); as it is
    where that cannot be told (a relative path of a run that did not record its folder), or for a
    --val that names no folder there (a named set)."""
    if key not in _PATH_OPTIONS or not isinstance(value, str):
        return value
    path = os.path.expanduser(value)
    if not os.path.isabs(path):
        if not isinstance(cwd, str):
            return value
        path = os.path.join(cwd, path)
    if key == "val" and not os.path.exists(path):
        return value
    return os.path.realpath(path)


def _same_config(a: dict[str, Any], a_cwd: Any, b: dict[str, Any], b_cwd: Any) -> bool:
    """Whether two config.json records (the options, "generator", "world_size", "cwd") say the same: the
    options a version did not record taken at their defaults, paths as the files they name from the
    folder each run was started in (``a_cwd``, ``b_cwd``; None where not recorded)."""
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not dataclasses.MISSING}
    a, b = (
        json.loads(json.dumps({**defaults, **a}, default=str)),
        json.loads(json.dumps({**defaults, **b}, default=str)),
    )
    for key in (set(a) | set(b)) - {"cwd"}:  # the folder a record was written from: its paths are compared
        x, y = a.get(key), b.get(key)
        if key in _PATH_OPTIONS and isinstance(x, str) and isinstance(y, str):
            unsure = any(
                not os.path.isabs(os.path.expanduser(v)) and not isinstance(c, str) for v, c in ((x, a_cwd), (y, b_cwd))
            )
            if unsure:
                continue  # a relative path of a run that did not record its folder: cannot be compared
            x, y = _anchored(key, x, a_cwd), _anchored(key, y, b_cwd)
        if x != y:
            return False
    return True


# Options of speed alone: a resume with nothing left to train still uses them (to load the models)
_SPEED_OPTIONS = frozenset({"workers", "cache", "cache_dir", "threads", "device", "channels_last", "compile"})
_SPEED_OPTIONS |= {"cuda_graphs"}


# Options that change how the run goes, not what it trains: left out of the weights' record of what
# each resume changed (--steps too, where the learning rate does not follow it)
_NOT_TRAINING = _SPEED_OPTIONS | {"log_every", "checkpoint_every", "val_every", "val", "data_dir", "best_by"}
MAX_CHANGES_SHOWN = 20  # resumes named in the weights' option_changes (the latest ones)


def _absolute(path: Any) -> str:
    """A path option as an absolute path (the metadata travels without the folder it was typed in)."""
    return os.path.abspath(os.path.expanduser(path)) if isinstance(path, str) else str(path)


def _changes_text(history: list[dict[str, Any]]) -> str:
    """``step 2000: lr 0.0001 -> 1e-05, batch_size 16 -> 32; step 5000: ...``: what each resume changed."""

    def value(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:g}"
        if isinstance(v, (list, tuple)):
            return ",".join(value(x) for x in v)
        return "unset" if v is None else str(v)

    parts = []
    for entry in history[-MAX_CHANGES_SHOWN:]:
        changes = entry.get("changes") if isinstance(entry.get("changes"), dict) else {}
        items = ", ".join(
            f"{k} {value(v[0])} -> {value(v[1])}"
            for k, v in changes.items()
            if isinstance(v, (list, tuple)) and len(v) == 2
        )
        parts.append(f"step {entry.get('step')}: {items}")
    earlier = len(history) - MAX_CHANGES_SHOWN
    return ("; ".join(parts) + (f" (and {earlier} earlier)" if earlier > 0 else "")) if parts else ""


def _size(n: int) -> str:
    """Bytes as GiB, or MiB below one GiB (a small set's "0.0 GiB" said nothing)."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _changed_options(
    saved: dict[str, Any], options: dict[str, Any], cfg: TrainConfig, skip: frozenset[str], unsure: set[str]
) -> list[str]:
    """The options given that differ from the run's saved ones, as ``--lr 0.0001 -> 1e-05``; those
    in ``skip`` or ``unsure`` (whose saved value cannot be compared) are left out."""
    changed = []
    for key, value in options.items():
        if key in skip or key not in saved or key in unsure:
            continue
        was, now = saved[key], getattr(cfg, key, value)
        if key in ("data", "vgg_weights") and isinstance(was, str) and isinstance(now, str):
            same = os.path.realpath(os.path.expanduser(was)) == os.path.realpath(os.path.expanduser(now))
        else:
            same = was == now
        if not same:
            changed.append(f"--{key.replace('_', '-')} {'unset' if was is None else was} -> {now}")
    return changed


def _resume_notes(
    saved: dict[str, Any], options: dict[str, Any], cfg: TrainConfig, step: int, unsure: set[str] = frozenset()
) -> list[str]:
    """What a resume changes in the training itself (the steps from now on differ from those of an
    uninterrupted run): the options given that differ from the run's, and a schedule that follows
    a raised --steps. ``unsure``: options whose saved value cannot be compared."""
    changed = _changed_options(saved, options, cfg, _QUIET_ON_RESUME, unsure)
    notes = []
    if changed:
        dropped = saved.get("ema") and not cfg.ema
        notes.append(
            f"this resume changes {', '.join(changed)}: the steps from {step} on use the new values"
            + (
                "; the EMA kept so far is dropped (generator.safetensors is now the trained generator)"
                if dropped
                else ""
            )
        )
    was_steps = saved.get("steps")
    if isinstance(was_steps, int) and was_steps != cfg.steps and cfg.lr_decay == saved.get("lr_decay"):
        before = dataclasses.replace(cfg, steps=was_steps)
        if cfg.lr_decay == "cosine":
            notes.append(
                f"--steps {cfg.steps} (was {was_steps}): the cosine learning rate now runs to step {cfg.steps}, "
                f"so it goes from {lr_at(before, step):.3g} to {lr_at(cfg, step):.3g} at step {step}"
            )
        elif cfg.lr_decay == "step" and not cfg.lr_step and not cfg.lr_milestones and cfg.steps // 2 != was_steps // 2:
            notes.append(
                f"--steps {cfg.steps} (was {was_steps}): the learning rate drops every steps/2, now every "
                f"{max(1, cfg.steps // 2)} steps (was {max(1, was_steps // 2)}); the rate at step {step} is "
                f"{lr_at(cfg, step):.3g} (was {lr_at(before, step):.3g}); --lr-step {max(1, was_steps // 2)} keeps the "
                "drops where they were"
            )
    return notes


def _compiler_failed(exc: BaseException) -> bool:
    """Whether ``exc`` is torch.compile's own failure (Dynamo or Inductor: no C++ compiler or
    Triton for the device), which surfaced at the first step as a traceback."""
    module = type(exc).__module__ or ""
    return module.startswith(("torch._dynamo", "torch._inductor"))


def train_dtype(precision: str | None, device: torch.device) -> tuple[torch.dtype, str | None]:
    """The training dtype: :func:`device.choose_dtype`'s, except that ``auto`` on MPS is fp32:
    fp16 there has no loss scaling (the scaler is CUDA's), and small gradients vanished in it."""
    if device.type == "mps" and (precision or "auto").lower() == "auto":
        return torch.float32, None
    return choose_dtype(precision or "auto", device)


def resolve_init(init: str | os.PathLike[str]) -> str:
    """The weights file ``--init`` names: a named model (srresnet_x4), a local ``.safetensors``
    file or a Hub reference (owner/repo[:file][@rev]), resolved as ``srgan upscale -m`` resolves
    its model (:func:`hub.resolve_weights`; a ``Path`` is always a local file). A value that names
    nothing (no such file, an unknown name, a folder, ``bicubic``) is an OptionError (exit 2, as
    click's check of the path was); a download or a damaged file stays an SrganError."""
    from .hub import looks_like_hub_ref, resolve_weights
    from .weights import MODELS

    text = os.fspath(init) if isinstance(init, (str, os.PathLike)) else None
    if not isinstance(text, str):
        raise OptionError(f"--init must be a model name, a .safetensors file or a Hub reference, got {init!r}")
    if isinstance(init, str) and text.lower() == "bicubic" and not os.path.lexists(text):
        raise OptionError(
            f"--init {text}: the bicubic baseline of srgan bench is no generator to train from; give a model name "
            f"({', '.join(MODELS)}), a .safetensors file or a Hub reference"
        )
    local = os.path.expanduser(text)  # as resolve_weights reads it (os.path: no error for a user who does not exist)
    named = isinstance(init, str) and (text in MODELS or looks_like_hub_ref(text))
    try:
        return str(resolve_weights(init))
    except SrganError as exc:
        if named or (os.path.exists(local) and not os.path.isdir(local)):
            raise  # a download that failed, a bundled or local file that is damaged or unreadable
        message = str(exc)  # "PATH: no such weights file", "unknown model 'x': expected ..."
        where = "--init " if message.startswith(str(Path(local))) else "--init: "
        raise OptionError(where + message) from None


def _refuse_run_files(run_dir: Path) -> str | None:
    """A new run must not overwrite anything: refuse a folder that holds a file it would write.

    Except the config.json and metrics.jsonl of an earlier run that stopped (killed, crashed)
    before its first checkpoint: nothing can resume it, so a new run replaces them. Returns the
    note saying so, or None where there is nothing to replace.
    """
    if not run_dir.is_dir():
        return None  # a new folder, or one that is not a folder (writing the run files says so)
    found = [name for name in RUN_FILES if os.path.lexists(run_dir / name)]  # lexists: a dangling link too
    if CHECKPOINT in found:
        raise SrganError(
            f"{run_dir}: already holds a training run (checkpoint.pt); add --resume to continue it "
            "or choose another --out"
        )
    if not found:
        return None
    if set(found) <= {"config.json", "metrics.jsonl"} and all(_written_by_a_run(run_dir / name) for name in found):
        return f"replacing the {'/'.join(found)} of a run that stopped before its first checkpoint"
    raise SrganError(
        f"{run_dir}: already holds {', '.join(found)}, which a new run would overwrite, and no checkpoint.pt "
        "to --resume from; choose another --out or move them away"
    )


# Keys of every config.json srgan train has written (TrainConfig's oldest fields, the generator, the world size)
_RUN_CONFIG_KEYS = {"stage", "data", "steps", "batch_size", "patch_size", "lr", "seed", "generator", "world_size"}
_RUN_METRICS_START = b'{"step": '  # how json.dumps begins each metrics line (a line cut short by a kill too)


def _written_by_a_run(path: Path) -> bool:
    """Whether ``path`` (config.json or metrics.jsonl) is recognisably the one srgan train writes."""
    if path.is_symlink() or not path.is_file():
        return False
    if path.name == "config.json":
        record = read_json(path)
        return isinstance(record, dict) and _RUN_CONFIG_KEYS <= set(record) and isinstance(record["generator"], dict)
    try:
        raw = path.read_bytes()
    except OSError:
        return False
    lines = raw.split(b"\n")
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            record = None
        if not isinstance(record, dict):
            if i == len(lines) - 1 and line.startswith(_RUN_METRICS_START):
                continue  # the last line, cut short by the kill while it was being written
            return False
    return True


def train(
    options: dict[str, Any],
    out: str | Path,
    resume: bool = False,
    report: Report | None = None,
    stop: Callable[[], bool] | None = None,
    *,
    given_as: Mapping[str, str] | None = None,
) -> TrainResult:
    """Run (or resume) a training stage into the folder ``out``; see the module docstring.

    ``given_as`` names options that were not given as flags, for the messages that would name the
    flag (option name, as in ``options``, or ``resume`` -> how it was given: ``srgan train --config``
    passes ``{"num_blocks": "num_blocks = 3 in run.toml"}``); without it messages name flags.

    ``threads`` (``--threads``) sets PyTorch's thread count for the run only: the caller's is back
    when train returns or raises.

    Stopping: in the main thread, a first Ctrl-C, SIGTERM or SIGHUP reports a ``stopping`` event at
    once (from a thread of its own: ``step``, the step the run stops after, and ``started``, false
    before the first step), finishes the step, saves a checkpoint, reports an ``interrupted`` event
    and raises KeyboardInterrupt (a second Ctrl-C stops at once, after an ``interrupted`` event with
    ``forced`` true and ``saved_step``, the step of the checkpoint on disk or None). On any thread,
    ``stop`` (called with no arguments before each step and between the set-up's phases, e.g.
    ``threading.Event().is_set``) returning true, or a KeyboardInterrupt raised by ``report`` before
    the run's last event, does the same; then ``--resume`` goes on. Before the first step nothing is
    saved."""
    if stop is not None and not callable(stop):
        raise TypeError(f"stop must be a callable that returns true to stop (e.g. an Event's is_set), got {stop!r}")
    run_dir = Path(out)
    threads = torch.get_num_threads()
    try:
        with _RunLock(run_dir) as lock:
            return _train(run_dir, options, resume, report, refused=lock.refused, stop=stop, given_as=given_as)
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


LOCK_FILE = ".lock"


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default  # torch.distributed says what is wrong with it, where it is used


# The temporary files of the run's own writes (fsutil.atomic_path: ".NAME.XXXXXXXX.part", hex; earlier
# versions' mkstemp: lowercase letters, digits, "_"): a run killed while saving (kill -9, a preempted
# node) leaves one, a full checkpoint's size each time.
_LEFTOVER = re.compile(
    r"\.(checkpoint\.pt|generator(_best)?\.safetensors|config\.json|metrics\.jsonl)\.[a-z0-9_]{8}\.part"
)


def _remove_leftovers(run_dir: Path) -> None:
    """Remove what killed writes left in ``run_dir``; called with its lock held, so no run of ours
    is writing them."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(run_dir):
            if _LEFTOVER.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


class _RunLock:
    """An exclusive lock on the run folder (``RUN/.lock``, flock) for the whole run, taken by rank 0
    before it looks at the folder: a second ``srgan train`` (or ``--resume``) into a folder
    whose run is still going is refused, instead of taking it over. The folder is made here if
    missing, and removed again if the run fails before writing anything into it; the lock file
    goes when the run ends if this run made it (a killed run's stays, unlocked, and is used and
    left by the next: a ``.lock`` the user had in the folder was deleted). Where the file system
    cannot lock (some network mounts) the run goes on without the lock."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / LOCK_FILE
        self.fd: int | None = None
        self.created = False  # whether this run made the lock file: only then is it removed
        self.made: list[Path] = []  # the folders made here, deepest first
        # Under torchrun rank 0's refusal is not raised here but handed to every rank once they have
        # met (_train): raised here, the other ranks waited for rank 0 to join until torchrun
        # killed them (40 s, SIGKILL).
        self.refused: str | None = None

    def __enter__(self) -> _RunLock:
        try:
            import fcntl
        except ImportError:  # not POSIX
            return self
        if _env_int("WORLD_SIZE", 1) > 1 and _env_int("RANK", 0) != 0:
            return self  # the ranks of one torchrun run: rank 0 holds the lock for them all
        missing = [d for d in (self.run_dir, *self.run_dir.parents) if not d.exists()]
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            return self  # --out a file, no permission, ...: the run's own checks say what is wrong
        self.made = missing
        for _ in range(10):
            try:
                fd, created = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:  # a live run's, a killed run's, or a file of the user's
                try:
                    fd, created = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK), False  # flock needs no write
                except FileNotFoundError:
                    continue  # removed by a run ending meanwhile: make it
                except OSError:
                    return self
            except OSError:
                return self
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                message = (
                    f"{self.run_dir}: another srgan train is running in this folder; wait for it to end, "
                    "or choose another --out"
                )
                if _env_int("WORLD_SIZE", 1) > 1:
                    self.refused = message
                    return self
                raise SrganError(message) from None
            except OSError:
                os.close(fd)
                return self  # no locks on this file system
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except OSError:
                same = False
            if same:  # not a file an ending run removed after we opened it
                self.fd, self.created = fd, created
                _remove_leftovers(self.run_dir)
                return self
            os.close(fd)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is None:
            return
        if self.created:
            with contextlib.suppress(OSError):
                self.path.unlink()  # while still locked: a run that opened it before retries (see __enter__)
        os.close(self.fd)
        with contextlib.suppress(OSError):
            for folder in self.made:
                folder.rmdir()  # only if empty: a run that failed before writing anything leaves nothing


def _train(
    run_dir: Path,
    options: dict[str, Any],
    resume: bool,
    report: Report | None,
    refused: str | None = None,
    stop: Callable[[], bool] | None = None,
    given_as: Mapping[str, str] | None = None,
) -> TrainResult:
    cfg, state, replacing = _resolve_options(run_dir, options, resume, given_as)
    dist, device = _setup_dist(cfg.device)
    trainer = None
    try:
        with _callers_rng(device):
            if dist.enabled:  # rank 0 could not lock the run folder: every rank stops with its reason
                why = [refused]
                torch.distributed.broadcast_object_list(why, src=0)
                if why[0]:
                    raise SrganError(why[0])
            trainer = _Trainer(cfg, run_dir, state, dist, device, report, replacing=replacing, given_as=given_as)
            return trainer.run(stop)
    finally:
        if trainer is not None:
            # an error's traceback keeps the trainer alive past this call: its DDP wrappers would
            # outlive the process group and be torn down at interpreter exit, where gloo can abort
            # the process ("terminate called without an active exception")
            trainer.release_wrappers()
        if dist.owns_group:
            torch.distributed.destroy_process_group()


def _callers_rng(device: torch.device) -> contextlib.AbstractContextManager:
    """torch's global random state as the caller had it once the run ends: the run seeds it with its
    ``seed`` and draws from it (the checkpoint keeps that state), and the caller's own draws after
    train() followed the run's seed. The CPU's state and that of the CUDA device trained on, the
    generators the run uses, are saved and put back (a few KB; microseconds)."""
    if device.type != "cuda":
        return torch.random.fork_rng(devices=[])
    return torch.random.fork_rng(devices=[torch.cuda.current_device() if device.index is None else device.index])


class _Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: Path,
        state: dict[str, Any] | None,
        dist: Dist,
        device: torch.device,
        report: Report | None,
        replacing: str | None = None,
        given_as: Mapping[str, str] | None = None,
    ) -> None:
        self.cfg, self.run_dir, self.state, self.dist, self.device = cfg, run_dir, state, dist, device
        self._report = report
        self.given_as = given_as  # see train()
        self.replacing = replacing  # the note on a dead run's files this new run replaces, or None
        self.gan = cfg.stage == "gan"
        # the step a resume goes on from; a resume with nothing left to train (idle) loads its models
        # to refresh generator.safetensors and reads no data
        self.resumed_from = int(state["step"]) if state is not None else None
        self.idle = self.resumed_from is not None and self.resumed_from >= cfg.steps
        self._config_current = False  # config.json holds this run's options (see _write_config)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.dtype, note = train_dtype(cfg.precision, device)
        if note:
            self.info(note)
        if cfg.cuda_graphs:
            if device.type != "cuda" or self.dist.enabled:
                raise OptionError(
                    "--cuda-graphs needs one CUDA device (not the CPU, not torchrun): add --no-cuda-graphs"
                )
            if self.dtype == torch.float16:
                raise OptionError("--cuda-graphs cannot use fp16's loss scaling: add --precision bf16 (or fp32)")
        if cfg.stage == "gan" and cfg.init is None and state is None:
            raise OptionError(
                "--stage gan starts from a trained mse generator: give --init GENERATOR.safetensors "
                "(e.g. RUN/generator.safetensors of an mse run)"
            )

    # -- reporting -----------------------------------------------------------------------------
    def emit(self, event: dict[str, Any]) -> None:
        """Hand ``event`` to the report callback (rank 0). A KeyboardInterrupt it raises while the run
        can still stop cleanly is a request to stop, as a first Ctrl-C: raised from a thread where no
        signal reaches the run, it cut the run short with nothing saved."""
        if self._report is None or not self.dist.main:
            return
        try:
            self._report(event)
        except KeyboardInterrupt:
            stop = getattr(self, "_stop", None)
            if stop is None or stop.forced or event.get("event") in ("interrupted", "done"):
                raise
            stop.reported = True

    def info(self, message: str, kind: str = "note") -> None:
        """An ``info`` event: ``kind`` "note" for a remark on this run (the CLI prints it as
        ``note: ...``, as upscale and bench print theirs), "status" for what every run reports."""
        self.emit({"event": "info", "message": message, "kind": kind})

    # -- set-up --------------------------------------------------------------------------------
    def _generator_config(self) -> GeneratorConfig:
        cfg, state = self.cfg, self.state
        if state is not None:
            try:
                gconf = GeneratorConfig.from_dict(state["generator_config"])
            except (KeyError, TypeError, ValueError) as exc:
                raise SrganError(
                    f"{self.run_dir / CHECKPOINT}: its generator configuration is damaged ({first_line(exc, 120)})"
                ) from None
        elif cfg.init is not None:
            _, gconf, _ = load_generator(cfg.init)
            for name in ("arch", "num_blocks", "num_features", "batch_norm"):
                wanted = getattr(cfg, name)
                if wanted is not None and wanted != getattr(gconf, name):
                    raise OptionError(  # a command line at odds with itself: exit 2, as a usage error
                        f"{cfg.init}: its generator has {name} = {getattr(gconf, name)!r}, but "
                        f"{_named(self.given_as, name, wanted)} was asked for; drop the option to train that model"
                    )
        else:
            overrides: dict[str, Any] = {"scale": cfg.scale}
            for name in ("num_blocks", "num_features", "batch_norm"):
                if getattr(cfg, name) is not None:
                    overrides[name] = getattr(cfg, name)
            gconf = GeneratorConfig.for_arch(cfg.arch or "srresnet", **overrides)
        # Record what is trained, whichever way it was chosen.
        cfg.arch, cfg.num_blocks, cfg.num_features = gconf.arch, gconf.num_blocks, gconf.num_features
        cfg.batch_norm = gconf.batch_norm
        return gconf

    def _build(self) -> None:
        cfg, device = self.cfg, self.device
        torch.manual_seed(cfg.seed)
        self.gconf = self._generator_config()
        if self.gconf.scale != cfg.scale:
            raise SrganError(f"{cfg.init}: a x{self.gconf.scale} generator; this run trains x{cfg.scale}")
        if self.gconf.in_channels != 3:  # the data is RGB: it failed with a traceback at the first step
            raise SrganError(
                f"{cfg.init}: a {self.gconf.in_channels}-channel generator; srgan train trains on RGB images "
                "(3 channels)"
            )
        self.G = build_generator(self.gconf).to(device)
        # which weights the run started from, by content: the path alone names whatever is there now
        # (a resumed mse run rewrites its generator.safetensors); kept in the checkpoint for resumes
        self.init_sha256 = (self.state or {}).get("init_sha256")
        if self.state is None and cfg.init is not None:
            self.init_sha256 = sha256_file(cfg.init)
            init_model, _, _ = load_generator(cfg.init)
            if sha256_file(cfg.init) != self.init_sha256:  # rewritten meanwhile (a live run's generator)
                raise SrganError(f"{cfg.init}: changed while it was read (a run writing it?); try again")
            self.G.load_state_dict(init_model.state_dict())
        adam = {"betas": (cfg.adam_beta1, cfg.adam_beta2)}
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, **adam)
        self.ema = None
        self._ema_pairs: tuple[list[torch.Tensor], ...] | None = None  # see _update_ema
        if cfg.ema > 0:
            self.ema = copy.deepcopy(self.G).requires_grad_(False).eval()
        self.D = self.opt_d = self.dconf = None
        if self.gan:
            self.dconf = DiscriminatorConfig(
                patch_size=cfg.patch_size,
                batch_norm=cfg.d_batch_norm,
                arch=cfg.d_arch,
                num_features=cfg.d_features,
            )
            self.D = build_discriminator(self.dconf).to(device)
            self.opt_d = torch.optim.Adam(self.D.parameters(), lr=cfg.lr, **adam)
        fp16 = self.dtype == torch.float16 and device.type == "cuda"
        self.scaler_g = torch.amp.GradScaler(device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(device.type, enabled=fp16)
        self.step = 0
        self.best_psnr: float | None = None
        self.last_psnr: float | None = None
        self.last_lpips: float | None = None
        self.last_val_step: int | None = None  # the step last_psnr and last_lpips were measured at
        self.best_lpips: float | None = None
        self.best_score: float | None = None  # generator_best's score by self.best_by, higher is better
        self._restored_best: tuple[str | None, float | None] = (None, None)
        self.saved_step: int | None = None  # the step of the checkpoint on disk, None before the first
        if self.state is not None:
            self._restore(self.state)
            self.saved_step = self.step
        self.option_changes = self._option_changes()
        for opt in (self.opt_g, self.opt_d):
            if opt is not None:
                self._set_optimizer_kind(opt)
        self._graphed = _GraphedStep(self) if cfg.cuda_graphs else None
        if cfg.channels_last:
            self.G.to(memory_format=torch.channels_last)
            if self.D is not None:
                self.D.to(memory_format=torch.channels_last)
        self.g_train: nn.Module = self.G
        self.d_train: nn.Module | None = self.D
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            if device.type == "cuda" and self.gconf.batch_norm:
                self.G = nn.SyncBatchNorm.convert_sync_batchnorm(self.G)
            self.g_train = DDP(self.G, device_ids=ids)
            if self.D is not None:
                self.d_train = DDP(self.D, device_ids=ids)
        if cfg.compile:
            self.g_train = torch.compile(self.g_train)
            if self.d_train is not None:
                self.d_train = torch.compile(self.d_train)

    def _stop_agreed(self, stop: _Interrupt) -> bool:
        """Whether to stop before this step. Under torchrun every rank must stop at the same step
        to save one checkpoint together, so the ranks agree on it: a signal reaches one rank (a
        `kill`), or reaches them at different steps (torchrun passing it on). On the CPU they
        agree every step (a few microseconds against a step of tens of milliseconds or more); on
        GPUs every tenth, since reading the answer waits for the device."""
        if self.dist.enabled and self._nccl() and self.step % 10:
            return False
        requested = stop.requested
        if not requested:  # this rank votes to go on: a stop asked while the ranks agree comes after the step
            self._in_step = True
        agreed = self._on_any_rank(requested)
        if agreed:
            self._in_step = False
        return agreed

    @contextlib.contextmanager
    def _rank0_work(self) -> Iterator[None]:
        """Around work only rank 0 does (writing the run's files, validating): every rank enters,
        and an SrganError rank 0 meets there reaches every rank, which all stop with it. Alone,
        rank 0 stopped with its one line while the others failed at their next collective with a
        gloo traceback (or waited for it). The exit is a sync point of the ranks, as a barrier."""
        failure: SrganError | None = None
        try:
            yield
        except SrganError as exc:
            if not self.dist.enabled:
                raise
            failure = exc
        if self.dist.enabled:
            box: list[SrganError | None] = [failure]
            torch.distributed.broadcast_object_list(box, src=0)
            if box[0] is not None:
                raise box[0]

    def _on_any_rank(self, flag: bool) -> bool:
        """Whether ``flag`` is set on any rank (this process's own flag without torchrun)."""
        if not self.dist.enabled:
            return flag
        value = torch.tensor([int(flag)], device=self.device if self._nccl() else "cpu")
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item())

    def release_wrappers(self) -> None:
        """Drop the DDP / compiled wrappers (the plain modules stay), while the process group lives."""
        self.g_train = getattr(self, "G", None)
        self.d_train = getattr(self, "D", None)
        self._graphed = None

    def _set_optimizer_kind(self, opt: torch.optim.Optimizer) -> None:
        """This run's Adam implementation, whatever the checkpoint it resumes was saved with.

        On CUDA the fused one (one kernel per step for all parameters: the foreach default
        launches several per tensor group, and at the paper's batch a GPU step is bound by
        launches); with --cuda-graphs the capturable one, whose learning rate is a tensor on
        the device; elsewhere the default. Each keeps its step counts where it wants them."""
        graphs = self.cfg.cuda_graphs
        fused = self.device.type == "cuda" and not graphs
        for group in opt.param_groups:
            group["fused"] = True if fused else None
            group["capturable"] = graphs
            group["foreach"] = None
            lr = float(group["lr"])
            group["lr"] = torch.tensor(lr, device=self.device) if graphs else lr
        for values in opt.state.values():
            if "step" in values:
                on_device = fused or graphs
                values["step"] = values["step"].to(self.device if on_device else "cpu", torch.float32)

    def _restore(self, state: dict[str, Any]) -> None:
        try:
            self.G.load_state_dict(state["generator"])
            self.opt_g.load_state_dict(state["optimizer_g"])
            if self.ema is not None:
                self.ema.load_state_dict(state.get("ema") or state["generator"])
            if self.D is not None:
                self.D.load_state_dict(state["discriminator"])
                self.opt_d.load_state_dict(state["optimizer_d"])
            if state.get("scaler_g"):
                self.scaler_g.load_state_dict(state["scaler_g"])
            if state.get("scaler_d"):
                self.scaler_d.load_state_dict(state["scaler_d"])
            self.step = int(state["step"])
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:
            first = first_line(exc, 160)
            raise SrganError(
                f"{self.run_dir / CHECKPOINT}: does not match this run's models ({first}); start a new run"
            ) from None
        self.best_psnr = state.get("best_psnr")
        self.last_psnr = state.get("last_psnr")
        self.best_lpips = state.get("best_lpips")
        self.last_lpips = state.get("last_lpips")
        self.last_val_step = state.get("last_val_step")
        # (what generator_best was chosen by, its score); checkpoints before --best-by chose by PSNR
        self._restored_best = (state.get("best_by", "psnr"), state.get("best_score", self.best_psnr))
        saved = state.get("config") or {}
        self._restored_val = (state.get("resumed_val", saved.get("val")), saved.get("val_holdout", 0))
        for note in state.get("resume_notes") or ():
            self.info(note)
        world = state.get("world_size")
        if isinstance(world, int) and world != self.dist.world_size and not self.idle:  # no step to batch
            self.info(
                f"the run was trained on {world} process(es), now on {self.dist.world_size}: a step's batch is "
                f"{self.cfg.batch_size * self.dist.world_size} patches (was {self.cfg.batch_size * world})"
            )
        for opt in (self.opt_g, self.opt_d):  # the optimizer's state brought back the run's betas
            for group in opt.param_groups if opt is not None else ():
                group["betas"] = (self.cfg.adam_beta1, self.cfg.adam_beta2)
        _set_rng_state(state.get("rng") or {}, self.device)

    def _losses(self) -> None:
        """Content / adversarial losses; VGG is loaded now, so a missing VGG fails before any training."""
        self.content = None
        if not self.gan or self.idle:
            return
        from . import losses

        self.losses = losses
        cfg = self.cfg
        self.content = losses.content_loss_from_spec(
            cfg.content_loss,
            cfg.vgg_weights,
            self.device,
            criterion=cfg.content_criterion,
            feature_scale=cfg.feature_scale,
            jitter=cfg.content_jitter,
        )

    def _scan(self) -> ImageScan:
        """The training images: under torchrun, rank 0 scans and sends its list to the others,
        so every rank trains on the same list (a folder that changes during the scans would
        otherwise give the ranks different ones) and a large tree is read once, not per rank."""
        cfg = self.cfg
        if not self.dist.enabled:
            return scan_images(cfg.data, cfg.patch_size, progress=self._progress, should_stop=self._should_stop())
        box: list[ImageScan | SrganError | None] = [None]
        if self.dist.main:
            try:
                box[0] = scan_images(cfg.data, cfg.patch_size, progress=self._progress)
            except SrganError as exc:  # sent too, so that no rank waits for a list that never comes
                box[0] = exc
        torch.distributed.broadcast_object_list(box, src=0)
        if isinstance(box[0], SrganError):
            raise box[0]
        return box[0]

    def _progress(self, message: str) -> None:
        """How far a long scan or decode has come (the first after a few seconds, then every few more)."""
        self.info(message, kind="status")

    def _should_stop(self) -> Callable[[], bool] | None:
        """Ctrl-C during a long set-up step (the scan, the decode): asked by rank alone, so only
        without torchrun, where a rank stopping alone would leave the others waiting."""
        stop = getattr(self, "_stop", None)
        return None if stop is None or self.dist.enabled else (lambda: stop.requested)

    def _idle_data(self) -> None:
        """What :meth:`_data` sets, for a resume with nothing left to train: no image is read."""
        state = self.state or {}
        self.val_images, self.val_lpips = [], None
        self.held_out, self.data_fingerprint = state.get("held_out"), state.get("data")
        self.best_by = self._restored_best[0] or self.cfg.best_by or "psnr"
        self.unread_images, self._known_unread, self._unread_unsaid = {}, set(), []
        self._cache_unwritten = False

    def _data(self) -> None:
        cfg = self.cfg
        if self.idle:
            self._idle_data()
            return
        # the validation set first: it is small, and a wrong --val fails before minutes of decoding
        self.val_images: list[ValImage] = []
        scan = held = names = None
        if cfg.val_holdout:  # the scan reads headers only, so this still fails early
            # a resume holds out the images the run began with, even if images were added since
            names = (self.state or {}).get("held_out")
            decoded: dict[Path, ValImage] = {}

            def usable(path: Path) -> bool:  # every rank decodes, so that all hold out the same images
                try:
                    decoded[path] = val_image(path, cfg.scale, HOLDOUT_SIDE)
                except TooSmallToValidate:
                    raise  # a readable image: remove it or lower --patch-size, as before
                except SrganError:
                    return False
                return True

            scan = full = self._scan()
            scan, held = hold_out(scan, cfg.val_holdout, names, usable=usable)
            if len(scan.unreadable) > len(full.unreadable):
                self.info(
                    f"{len(scan.unreadable) - len(full.unreadable)} image(s) tried for validation cannot be "
                    f"decoded and are left out (first: {printable(str(scan.unreadable[len(full.unreadable)]))}); "
                    "others are held out"
                )
        self.held_out = [p.relative_to(scan.root).as_posix() for p in held] if held else None
        # all of them deleted since: others are held out, which the run has trained on
        self._held_changed = bool(names) and not set(self.held_out or ()) <= set(names)
        if names and self.held_out != sorted(names):
            gone = len(set(names) - set(self.held_out or ()))
            self.info(f"{gone} of the {len(names)} held-out images are gone from --data")
        # LPIPS beside PSNR at each validation, where its weights file is there (metrics.Lpips)
        self.val_lpips = None
        # rank 0 validates: a set it cannot read, or --best-by lpips without LPIPS, stops every rank
        with self._rank0_work():
            if self.dist.main:
                if held:
                    self.val_images = [decoded[path] for path in held]
                elif cfg.val:
                    # no --data-dir: None, and the set is looked for as srgan bench looks (SRGAN_DATA_DIR,
                    # then the Hub), which names the variable, not a --data-dir the user did not give
                    val_notes: list[str] = []
                    self.val_images = load_val_set(cfg.val, cfg.data_dir or None, cfg.scale, notes=val_notes)
                    for note in val_notes:  # what srgan bench --set says about the set, said once here
                        self.info(f"--val {printable(cfg.val)}: {printable(note)}")
                    overlap = _val_in_data(cfg.val, cfg.data)
                    if overlap:
                        self.info(overlap)
            if self.val_images:
                from .metrics import Lpips, LpipsUnavailable

                try:
                    self.val_lpips = Lpips(device=str(self.device))
                except LpipsUnavailable as exc:
                    if cfg.best_by == "lpips":
                        raise SrganError(f"--best-by lpips: LPIPS cannot be computed ({exc.reason})") from None
                    self.info(f"validation without LPIPS: {exc.reason}")
        self.best_by = cfg.best_by or ("lpips" if self.gan and self.val_lpips is not None else "psnr")
        restored_by, restored_score = self._restored_best
        same_val = getattr(self, "_restored_val", None) in (None, (cfg.val, cfg.val_holdout))
        if (not same_val or self._held_changed) and (restored_score is not None or self.best_psnr is not None):
            # scores of another validation set do not compare: the best starts again
            was, now = self._restored_val, (cfg.val, cfg.val_holdout)
            what = f"{_val_name(*was)}, now {_val_name(*now)}" if not same_val else "other held-out images"
            self.info(
                f"validation changed since the checkpoint ({what}): generator_best is chosen again from this "
                "run's validations, which may include images it trained on"
                if self._held_changed
                else f"validation changed since the checkpoint ({what}): generator_best is chosen again from "
                "this run's validations"
            )
            self.best_psnr = self.best_lpips = None
        elif restored_by == self.best_by:  # else the first validation's generator becomes the best
            self.best_score = restored_score
        elif restored_score is not None:
            self.info(
                f"generator_best was chosen by {restored_by.upper()} until now, from now on by {self.best_by.upper()}"
                f" (the first validation's generator replaces it); --best-by {restored_by} keeps {restored_by.upper()}"
            )
        if scan is None:
            scan = full = self._scan()
        self.info(scan.summary() + (f"; {len(held)} more held out for validation" if held else ""), kind="status")
        self.data_fingerprint = {"images": len(full.paths), "sha256": full.fingerprint()}
        was = (self.state or {}).get("data")
        if was and was != self.data_fingerprint:
            self.info(self._data_change(was.get("images"), len(full.paths)))
        copies = _env_int("LOCAL_WORLD_SIZE", 1) if self.dist.enabled else 1  # each rank decodes its own
        cache = resolve_cache(cfg.cache, scan, copies=copies)
        cache_dir = None
        if cfg.cache == "disk":
            cache_dir = disk_cache_folder(cfg.cache_dir)
            if _inside(cache_dir, cfg.data):
                raise OptionError(
                    f"--cache-dir {printable(str(cfg.cache_dir or cache_dir))} is --data or inside it: the decoded "
                    "images would be written among the training images; give a folder outside --data"
                )
            need, free = check_disk_cache(cache_dir, scan)
            self.info(
                f"decoded images are kept on disk in {printable(str(cache_dir))} as they are first read ({_size(need)} "
                f"decoded, {_size(free)} free there; that folder may be deleted at any time)"
            )
        elif cache:
            self.info(f"decoding the images into memory ({scan.decoded_bytes / 2**20:.0f} MiB; --cache off to skip)")
        elif cfg.cache == "auto":
            self.info(
                f"the images are not kept decoded in memory ({scan.decoded_bytes / 2**30:.1f} GiB decoded"
                + (f", {copies} processes" if copies > 1 else "")
                + "): each patch decodes its whole image, slow for large photos; --cache on keeps them where "
                "memory allows, --cache disk on disk"
            )
        group = cfg.batch_size * self.dist.world_size
        self.unread_images: dict[int, str] = {}  # images that failed to read in training, and why
        self._known_unread: set[int] = set()
        self._unread_unsaid: list[tuple[int, str]] = []  # torchrun, ranks > 0: for _share_unread
        self._cache_unwritten = False  # said that the disk cache could not be written
        self.dataset = PatchDataset(
            scan,
            cfg.patch_size,
            seed=cfg.seed,
            cache=cache,
            group=group,
            min_scale=cfg.scale_aug,
            should_stop=self._should_stop(),
            progress=self._progress,
            margin=patch_margin(cfg.scale),  # the LR of a patch is the whole image's there
            cache_dir=cache_dir,
        )
        if self.dataset.undecodable:
            # said here, not again in training: the cached images that did not decode
            self._known_unread = {i for i, image in enumerate(self.dataset.images or ()) if image is None}
            path, why = self.dataset.undecodable[0]
            count = len(self.dataset.undecodable)
            self.info(
                f"{count} training image(s) could not be decoded and are not trained on "
                f"(first: {failure_text(path, why)}); their samples come from other images"
            )
        self.loader = make_loader(
            self.dataset,
            cfg.batch_size,
            start_step=self.step,
            rank=self.dist.rank,
            world_size=self.dist.world_size,
            workers=(
                cfg.workers
                if cfg.workers is not None
                else default_workers(self.device, cached=self.dataset.images is not None)
            ),
            pin_memory=self.device.type == "cuda",
            stop_step=cfg.steps,
            with_failures=True,
        )

    def _data_change(self, then: Any, now: int) -> str:
        """The note of a resume whose training images are not those of its checkpoint: a new
        --patch-size leaves out (or lets in) the images smaller than it, which is no change of the
        files; the count shows whether that explains it."""
        was_patch = ((self.state or {}).get("config") or {}).get("patch_size")
        patch = self.cfg.patch_size
        after = "the resumed run draws other patches than an uninterrupted run would have"
        if isinstance(was_patch, int) and isinstance(then, int) and was_patch != patch:
            if (patch > was_patch and now < then) or (patch < was_patch and now > then):
                return (
                    f"--patch-size {patch} (was {was_patch}) {'leaves out' if patch > was_patch else 'adds'} the "
                    f"images under --data between {min(patch, was_patch)} and {max(patch, was_patch) - 1} px on "
                    f"their shorter side ({then} training images then, {now} now): {after}"
                )
        return f"the training images under --data changed since the checkpoint ({then} then, {now} now): {after}"

    # -- one step ------------------------------------------------------------------------------
    def _autocast(self, cache: bool = True) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return autocast(self.device.type, dtype=self.dtype, cache_enabled=cache)

    def _train_step(self, lr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update; returns the loss terms as detached scalar tensors on the device, read back
        by the loop once per log window (a read each step would stall a GPU every step)."""
        cfg = self.cfg
        if cfg.channels_last:
            lr = lr.contiguous(memory_format=torch.channels_last)
            hr = hr.contiguous(memory_format=torch.channels_last)
        if self._graphed is not None:
            return self._graphed(lr, hr)
        if not self.gan:
            return {"loss": self._mse_update(lr, hr)}
        losses = self.losses
        n = hr.shape[0]
        with self._autocast():
            sr = self.g_train(lr)
        # D step: real and fake in one forward (one DDP all-reduce), G's output detached.
        d_offset = self._jitter_offset(cfg.d_jitter, 4)
        self.D.requires_grad_(True)
        with self._autocast():
            logits = self.d_train(_roll(torch.cat([hr, sr.detach()]), d_offset)).float()
        loss_d = losses.d_loss(logits[:n], logits[n:], kind=cfg.gan_type)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss_d).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        # G step: D frozen, called unwrapped (no gradient of D to synchronise).
        self.D.requires_grad_(False)
        with self._autocast():
            logits = self.D(_roll(torch.cat([hr, sr]), d_offset)).float()
        sr32 = sr.float()
        loss_adv = losses.g_adv_loss(logits[:n].detach(), logits[n:], kind=cfg.gan_type)
        loss_content = self.content(sr32, hr, offset=self._jitter_offset(cfg.content_jitter, 3))
        loss = loss_content + cfg.adv_weight * loss_adv
        loss_pixel = None
        if cfg.pixel_weight:
            loss_pixel = losses.pixel_loss(sr32, hr, kind=cfg.pixel_loss)
            loss = loss + cfg.pixel_weight * loss_pixel
        artifact_terms = {  # ARTIFACT_WEIGHTS: (logged name, the loss)
            "grid_weight": ("loss_grid", lambda: losses.grid_loss(sr32, hr, cfg.scale)),
            "flat_weight": ("loss_flat", lambda: losses.flat_loss(sr32, hr)),
            "block_weight": ("loss_block", lambda: losses.block_loss(sr32, hr, cfg.scale)),
            "local_grid_weight": ("loss_local_grid", lambda: losses.local_grid_loss(sr32, hr, cfg.scale)),
            "spectral_weight": ("loss_spectral", lambda: losses.spectral_loss(sr32, hr)),
            "tv_weight": ("loss_tv", lambda: losses.tv_loss(sr32)),
        }
        logged = {}
        for name in ARTIFACT_WEIGHTS:
            if getattr(cfg, name):
                key, term = artifact_terms[name]
                logged[key] = term()
                loss = loss + getattr(cfg, name) * logged[key]
        loss_ldl = None
        if cfg.ldl_weight:
            with torch.no_grad(), self._autocast():
                sr_ema = self.ema(lr)
            loss_ldl = losses.ldl_loss(sr32, hr, sr_ema)
            loss = loss + cfg.ldl_weight * loss_ldl
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        self.D.requires_grad_(True)
        out = {
            "loss": loss.detach(),
            "loss_content": loss_content.detach(),
            "loss_adv": loss_adv.detach(),
            "loss_d": loss_d.detach(),
        }
        if loss_pixel is not None:
            out["loss_pixel"] = loss_pixel.detach()
        if loss_ldl is not None:
            out["loss_ldl"] = loss_ldl.detach()
        out.update((key, value.detach()) for key, value in logged.items())
        return out

    def _mse_update(self, lr: torch.Tensor, hr: torch.Tensor, cast_cache: bool = True) -> torch.Tensor:
        """The mse stage's update: forward, pixel loss, backward, Adam; the detached loss. Also
        what --cuda-graphs captures (there with no autocast cache, and the loss scaler is off)."""
        cfg = self.cfg
        with self._autocast(cache=cast_cache):
            sr = self.g_train(lr)
        loss = pixel_loss(sr.float(), hr, cfg.pixel_loss) * cfg.pixel_weight
        self.opt_g.zero_grad(set_to_none=True)
        self.scaler_g.scale(loss).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        return loss.detach()

    def _jitter_offset(self, jitter: int, stream: int) -> tuple[int, int] | None:
        """This step's offset in 0..jitter-1, from (seed, step, stream) as the crops are: a resumed
        run draws what the uninterrupted one did, and every DDP rank the same."""
        if jitter < 2:
            return None
        dy, dx = np.random.default_rng((self.cfg.seed, self.step, stream)).integers(0, jitter, 2)
        return int(dy), int(dx)

    @torch.no_grad()
    def _update_ema(self) -> None:
        """EMA of every float tensor of the generator's state (weights and BatchNorm statistics),
        copies of the rest, in a few foreach calls rather than two kernels per tensor."""
        if self._ema_pairs is None:  # taken once everything is built (channels_last moves the data)
            pairs = zip(self.ema.state_dict().values(), self.G.state_dict().values(), strict=True)
            floats: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
            others: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])
            for e, p in pairs:
                target = floats if e.is_floating_point() else others
                target[0].append(e)
                target[1].append(p)
            self._ema_pairs = (*floats, *others)
        ema_f, g_f, ema_o, g_o = self._ema_pairs
        decay = ema_decay(self.cfg.ema, self.step)
        torch._foreach_mul_(ema_f, decay)
        torch._foreach_add_(ema_f, g_f, alpha=1 - decay)
        for e, p in zip(ema_o, g_o, strict=True):
            e.copy_(p)

    def export_model(self) -> nn.Module:
        return self.ema if self.ema is not None else self.G

    # -- validation and checkpoints ------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> float:
        model = self.export_model()
        was_training = model.training
        model.eval()
        scores, lpips = [], []
        try:
            for item in self.val_images:
                x = torch.from_numpy(item.lr.transpose(2, 0, 1).copy()).float().div_(255).unsqueeze(0).to(self.device)
                with self._autocast():
                    y = model(x)
                sr = y.float().clamp_(0, 1).mul_(255).round_().squeeze(0).permute(1, 2, 0).cpu().numpy()
                if np.isnan(sr).any():  # finite weights, an overflow inside (fp16): NaN cast to 0 was scored
                    raise SrganError(
                        f"validation at step {self.step}: the generator's output for {item.name} is NaN; lower "
                        f"--lr or use --precision fp32, {self._go_on()}"
                    )
                scores.append(psnr_y(sr.astype(np.uint8), item.hr, crop=self.cfg.scale))
                if self.val_lpips is not None:
                    score = self.val_lpips(sr.astype(np.uint8), item.hr, crop=self.cfg.scale)
                    if score is not None:  # None: too small for LPIPS
                        lpips.append(score)
        finally:
            model.train(was_training)
        self.last_lpips = float(np.mean(lpips)) if lpips else None
        return float(np.mean(scores))

    def _option_changes(self) -> list[dict[str, Any]]:
        """What each resume of the run changed in its training, for the weights' provenance: the
        checkpoint's list, and this resume's changes where it trains (``{"step": N, "changes":
        {option: [before, now]}}``, paths as the files they name)."""
        state = self.state or {}
        history = [dict(e) for e in state.get("option_changes") or () if isinstance(e, dict)]
        if self.state is None or self.idle:
            return history
        before = self._checkpoint_record()
        cfg = self.cfg
        now = {**cfg.to_dict(), "world_size": self.dist.world_size}
        defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not dataclasses.MISSING}
        follows_steps = cfg.lr_decay == "cosine" or (cfg.lr_decay == "step" and not (cfg.lr_step or cfg.lr_milestones))
        changes = {}
        for key in sorted(now):
            if key in _NOT_TRAINING or (key == "steps" and not follows_steps):
                continue
            was = before.get(key, defaults.get(key))
            if not _same_config({key: was}, before.get("cwd"), {key: now[key]}, os.getcwd()):
                changes[key] = [_anchored(key, was, before.get("cwd")), _anchored(key, now[key], os.getcwd())]
        return [*history, {"step": self.resumed_from, "changes": changes}] if changes else history

    def _metadata(self) -> dict[str, str]:
        cfg = self.cfg
        meta = {
            "stage": cfg.stage,
            "steps": str(self.step),
            "data": _absolute(cfg.data),  # as typed it was relative to a folder the file does not name
            "seed": str(cfg.seed),
            "patch_size": str(cfg.patch_size),
            "batch_size": str(cfg.batch_size * self.dist.world_size),
            # the mse stage's loss is the pixel loss (the paper's "MSE content loss"; ESRGAN's L1)
            "content_loss": str(cfg.content_loss if self.gan else cfg.pixel_loss),
            "lr": f"{cfg.lr:g}",
            "precision": str(self.dtype).replace("torch.", ""),
            "trained_with": "srgan train",
        }
        if cfg.lr_decay != "none":
            meta["lr_decay"] = cfg.lr_decay
        if self.gan and cfg.pixel_weight:
            meta.update(pixel_loss=cfg.pixel_loss, pixel_weight=f"{cfg.pixel_weight:g}")
        if self.gan:
            meta.update(gan_type=cfg.gan_type, adv_weight=str(cfg.adv_weight))
        if cfg.init is not None:  # the mse stage may start from weights too (a longer schedule)
            meta["init"] = _absolute(cfg.init)
            if self.init_sha256:
                meta["init_sha256"] = self.init_sha256
        if cfg.ema:
            meta["ema"] = str(cfg.ema)
        if cfg.scale_aug < 1:
            meta["scale_aug"] = str(cfg.scale_aug)
        for name in ("content_jitter", "d_jitter"):
            if self.gan and getattr(cfg, name) > 1:
                meta[name] = str(getattr(cfg, name))
        if self.gan and not cfg.d_batch_norm and cfg.d_arch == "vgg":
            meta["d_batch_norm"] = "false"
        for name in ("d_arch", "d_features", "content_criterion", "feature_scale"):  # where they are not the paper's
            if self.gan and getattr(cfg, name) != getattr(TrainConfig, name):
                meta[name] = str(getattr(cfg, name))
        for name in ("ldl_weight", *ARTIFACT_WEIGHTS):
            if self.gan and getattr(cfg, name):
                meta[name] = str(getattr(cfg, name))
        if self.last_psnr is not None:
            meta["val_psnr"] = f"{self.last_psnr:.4f}"
            if self.last_val_step is not None:  # the weights' own step when they were validated, else earlier
                meta["val_step"] = str(self.last_val_step)
            meta["val"] = f"{cfg.val_holdout} images held out of the data" if cfg.val_holdout else str(cfg.val)
            if self.last_lpips is not None:
                meta["val_lpips"] = f"{self.last_lpips:.4f}"
        if self.option_changes:  # the values above are those of the last resume: what trained the steps before
            meta["option_changes"] = _changes_text(self.option_changes)
        return meta

    def _best(self) -> dict[str, Any]:
        """The best validation scores so far, for the progress events."""
        return {"best_psnr": self.best_psnr, "best_lpips": self.best_lpips, "best_by": self.best_by}

    def checkpoint(self) -> None:
        """Write checkpoint.pt, then generator.safetensors, each atomically (rank 0; others wait): a
        failed write leaves the weights file no newer than the checkpoint a resume starts from."""
        self.dist.barrier()
        with self._rank0_work():
            if self.dist.main:
                try:
                    self._write_checkpoint()
                except OSError as exc:
                    raise SrganError(
                        f"{self.run_dir}: cannot write the checkpoint ({write_reason(exc)}); free space or fix "
                        f"the folder, {self._go_on()}"
                    ) from None
                self.emit({"event": "checkpoint", "step": self.step})
        self.saved_step = self.step

    def _go_on(self) -> str:
        """How the user goes on after the run stopped on an error: from the checkpoint on disk, which
        is intact (written atomically), or, before the first one, by starting the run again."""
        if self.saved_step is None:
            if (self.run_dir / "generator_best.safetensors").exists():  # a new run here would refuse it
                return (
                    "then start the run again with another --out (it has no checkpoint yet to --resume from; "
                    "its generator_best.safetensors is kept)"
                )
            return "then start the run again (it has no checkpoint yet to --resume from)"
        return f"then --resume from the last checkpoint (step {self.saved_step}), which is intact"

    def _check_weights(self) -> None:
        """Stop before weights that are no longer finite reach a file. A step's loss is computed with
        the weights from before its update, so the losses alone miss the last update before a save:
        a diverging run wrote NaN weights as its checkpoint (the resume the message advised failed
        again) and as generator_best (a black image from upscale). One device sync."""
        tensors = [
            t.detach()
            for model in (self.G, self.ema, self.D)
            if model is not None
            for t in (*model.parameters(), *model.buffers())
            if t.is_floating_point()
        ]
        if tensors and not bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all()):
            raise SrganError(
                f"the weights became NaN or infinite by step {self.step}; lower --lr or use --precision fp32, "
                f"{self._go_on()}"
            )

    def _write_checkpoint(self) -> None:
        if not self._config_current:
            self._write_config()
        state = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "step": self.step,
            "config": self.cfg.to_dict(),
            "generator_config": self.gconf.to_dict(),
            "generator": self.G.state_dict(),
            "optimizer_g": self.opt_g.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "discriminator_config": self.dconf.to_dict() if self.dconf is not None else None,
            "discriminator": self.D.state_dict() if self.D is not None else None,
            "optimizer_d": self.opt_d.state_dict() if self.opt_d is not None else None,
            "scaler_g": self.scaler_g.state_dict() if self.scaler_g.is_enabled() else None,
            "scaler_d": self.scaler_d.state_dict() if self.scaler_d.is_enabled() else None,
            "rng": _rng_state(self.device),
            "init_sha256": self.init_sha256,
            "best_psnr": self.best_psnr,
            "last_psnr": self.last_psnr,
            "best_lpips": self.best_lpips,
            "last_lpips": self.last_lpips,
            "last_val_step": self.last_val_step,
            "best_score": self.best_score,
            "best_by": self.best_by,
            "world_size": self.dist.world_size,
            "held_out": self.held_out,  # --val-holdout's images, under --data
            "data": self.data_fingerprint,  # the images scanned: a resume says when they changed
            "option_changes": self.option_changes,  # what each resume changed, for the weights' provenance
            "cwd": os.getcwd(),  # what relative paths of the config are relative to, for a resume elsewhere
            "saved_at": time.time(),
        }
        _save_checkpoint(self.run_dir / CHECKPOINT, state)
        save_generator(self.run_dir / "generator.safetensors", self.export_model(), self.gconf, self._metadata())

    def _checkpoint_record(self) -> dict[str, Any]:
        """The config.json record of the steps of the checkpoint resumed from (its own options)."""
        state = self.state or {}
        record = {
            **dict(state.get("config") or {}),
            "generator": state.get("generator_config"),
            "world_size": state.get("world_size", 1),
        }
        if isinstance(state.get("cwd"), str):
            record["cwd"] = state["cwd"]
        return record

    def _keep_earlier_config(self, config: Path, text: str) -> bool:
        """On a resume with other options (more steps, another learning rate), the earlier run's
        config.json was replaced, and with it the record of how the first steps were trained: it is
        kept as config.step<N>.json (N: the step resumed from), with a note. The options are those of
        the checkpoint, compared with paths resolved against the folder each run was started from
        (a resume from another folder changes the spelling of a relative --data, not the folder).
        Returns whether config.json is to be written (it is missing, or does not agree with the
        options of this run)."""
        before, cwd = self._checkpoint_record(), (self.state or {}).get("cwd")
        record = json.loads(text)
        try:
            old = config.read_text(encoding="utf-8")
            on_disk = json.loads(old)
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            old, on_disk = None, None
        if not isinstance(on_disk, dict) or not _same_config(on_disk, on_disk.get("cwd", cwd), before, cwd):
            old = json.dumps(before, indent=2, sort_keys=True, default=str) + "\n"  # config.json is not the run's
        if _same_config(before, cwd, record, os.getcwd()):
            return not isinstance(on_disk, dict) or not _same_config(
                on_disk, on_disk.get("cwd", cwd), record, os.getcwd()
            )
        name = f"config.step{self.resumed_from}"
        earlier = [p for p in self.run_dir.glob(f"{name}*.json") if re.fullmatch(rf"{name}(-\d+)?\.json", p.name)]
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if any(p.read_text(encoding="utf-8") == old for p in earlier):
                return True  # kept by a resume that stopped before its checkpoint was written
        kept = self.run_dir / f"{name}.json"
        n = 1
        while kept.exists():
            n += 1
            kept = self.run_dir / f"{name}-{n}.json"
        try:
            with atomic_path(kept, overwrite=False) as tmp:  # never in place of a file of the user's
                tmp.write_text(old, encoding="utf-8")
        except (OSError, SrganError):
            return True
        self.info(
            f"config.json: the options changed on resume; those of the steps before {self.resumed_from} are kept in "
            f"{kept.name}"
        )
        return True

    def _write_config(self) -> None:
        """Write config.json: a new run's as it starts, a resume's with its first checkpoint (before
        it), so that config.json holds the options of the checkpoint's steps: a resume that trains
        nothing, or stops before its first checkpoint, leaves the run's as they were."""
        record = {**self.cfg.to_dict(), "generator": self.gconf.to_dict(), "world_size": self.dist.world_size}
        record["cwd"] = os.getcwd()  # the folder its relative paths are relative to
        text = json.dumps(record, indent=2, sort_keys=True) + "\n"
        config = self.run_dir / "config.json"
        if self.state is None or self._keep_earlier_config(config, text):
            with atomic_path(config) as tmp:
                tmp.write_text(text)
        self._config_current = True

    def _prepare_run_dir(self) -> None:
        if not self.dist.main:
            return
        try:
            self._write_run_files()
        except OSError as exc:
            reason = write_reason(exc)
            raise SrganError(f"{self.run_dir}: cannot write the run folder ({reason}); choose another --out") from None

    def _refresh_generator(self) -> None:
        """On a resume, rewrite generator.safetensors from the checkpoint where it is missing or from
        another step: a run stopped between writing checkpoint.pt and it (a kill, a second Ctrl-C)
        kept an older file, or none, and a resume with nothing left to train said "done" over it."""
        if self.state is None or not self.dist.main:
            return
        path = self.run_dir / "generator.safetensors"
        try:
            current = read_metadata(path).get("steps") == str(self.step)
        except SrganError:
            current = False
        if current:
            return
        try:
            save_generator(path, self.export_model(), self.gconf, self._metadata())
        except OSError as exc:
            raise SrganError(f"{path}: cannot write ({write_reason(exc)}); free space or fix the folder") from None
        self.info(f"{path.name} was missing or older than the checkpoint: written from it (step {self.step})")

    def _write_run_files(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.state is None:
            self._write_config()  # a resume's: with its first checkpoint
        metrics = self.run_dir / "metrics.jsonl"
        if self.replacing:
            self.info(self.replacing)
        if metrics.exists():
            # Drop lines past the checkpoint we resume from: those steps are about to be redone (all of a
            # dead run's, on a new run). Lines that are not UTF-8 JSON with a step (damaged) go too.
            kept = []
            for raw in metrics.read_bytes().splitlines() if self.state is not None else []:
                try:
                    line = raw.decode("utf-8").strip()
                    record = json.loads(line)
                    if 0 <= int(record["step"]) <= self.step:
                        kept.append(line)
                except (ValueError, KeyError, TypeError, OverflowError, RecursionError):
                    continue  # UnicodeDecodeError is a ValueError
            with atomic_path(metrics) as tmp:
                tmp.write_text("".join(k + "\n" for k in kept), encoding="utf-8")

    def _write_metrics(self, record: dict[str, Any]) -> None:
        if self.dist.main:
            path = self.run_dir / "metrics.jsonl"
            try:
                with open(path, "a") as fh:
                    fh.write(json.dumps(record) + "\n")
            except OSError as exc:
                raise SrganError(
                    f"{path}: cannot write ({write_reason(exc)}); free space or fix the folder, {self._go_on()}"
                ) from None

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stop_when: Callable[[], bool] | None = None) -> TrainResult:
        # From here Ctrl-C / SIGTERM set a flag, checked between the set-up's phases and before
        # each step: a KeyboardInterrupt raised at any point of torch's set-up (a lazy import,
        # say) could be swallowed, or turned into another error.
        self._in_step = self._looping = False  # where the loop is, for the stopping notice
        with _Interrupt(enabled=True, stop=stop_when, notice=self._stopping) as stop:
            try:
                return self._run(stop)
            except KeyboardInterrupt:
                if stop.forced:  # a second Ctrl-C: nothing saved since the last checkpoint
                    saved = getattr(self, "saved_step", self.resumed_from)
                    with contextlib.suppress(Exception):
                        self.emit(
                            {"event": "interrupted", "forced": True, "step": self.step_now(), "saved_step": saved}
                        )
                raise
            except Exception as exc:
                if self.cfg.compile and _compiler_failed(exc):  # no compiler here (Windows without MSVC, MPS)
                    raise SrganError(
                        f"--compile failed on this machine ({first_line(exc)}); run with --no-compile"
                    ) from None
                raise
            finally:
                self._close_loader()

    def step_now(self) -> int:
        """The steps done so far (0 before the models are built)."""
        return getattr(self, "step", None) or 0

    def _stopping(self) -> None:
        """The ``stopping`` event, as the first stop signal comes (from the notice thread): the step
        the run stops after (the one running ends first), or none before the loop begins."""
        step = self.step_now() + (1 if self._in_step else 0)
        if self.dist.enabled and self._nccl() and step % 10:  # the ranks agree every tenth step on GPUs
            step += 10 - step % 10
        self.emit({"event": "stopping", "step": step, "started": self._looping})

    def _save_at_stop(self, start: int, read_back: Callable, n_window: int, log_window: Callable) -> None:
        """A stop's save: the steps since the last metrics line logged, and a checkpoint of the
        steps since the last one."""
        read_back()
        if n_window:
            # the steps since the last metrics line: lost before, and the first line after --resume
            # then averaged fewer steps than it said; logged as a line of their own
            log_window(None)
        if self.step > start:
            self._check_weights()
            if self.saved_step != self.step:  # just saved on schedule: not twice
                self.checkpoint()

    def _stop_unreadable(self, why: str, start: int, read_back: Callable, n_window: int, log_window: Callable) -> None:
        """No training image can be read any more (--data renamed or unmounted mid-run): save as a
        stop does, the weights being good, and say what to do. Under torchrun a rank meets this
        alone, and a checkpoint needs them all: the last one on disk is then the one to resume."""
        if not self.dist.enabled:
            self._save_at_stop(start, read_back, n_window, log_window)
        raise SrganError(f"{why}; fix --data, {self._go_on()}")

    def _note_unread(self, failed: list[tuple[int, str]]) -> None:
        """Say once for each training image that fails to read (a truncated file whose header
        reads, a file deleted since the scan): without the cache nothing said so, and a run could
        finish on a fraction of its images."""
        for index, why in failed:
            if index not in self.unread_images and index not in self._known_unread:
                self.unread_images[index] = why
                if self.dist.main:
                    self.info(f"{failure_text(self.dataset.paths[index], why)}; its patches come from the next image")
                else:
                    self._unread_unsaid.append((index, why))

    def _share_unread(self) -> None:
        """Under torchrun each rank reads its own share of the images and only rank 0 speaks: the
        images the other ranks failed to read reach rank 0 at each metrics line and at the end, so
        they are named and counted as rank 0's own are (before, they were said nowhere)."""
        if not self.dist.enabled:
            return
        shares: list[list[tuple[int, str]] | None] = [None] * self.dist.world_size
        torch.distributed.all_gather_object(shares, self._unread_unsaid)
        self._unread_unsaid = []
        if self.dist.main:
            for share in shares:
                self._note_unread(share or [])

    def _close_loader(self) -> None:
        """Stop the loader's worker processes now. An error's traceback keeps the iterator alive to
        interpreter exit, where multiprocessing terminates the workers with one SIGTERM, which they
        leave to the main process (``data._WorkerTerm``), and then waits for them forever: the run
        printed its error and hung."""
        it, self._loader_iter = getattr(self, "_loader_iter", None), None
        shut_down = getattr(it, "_shutdown_workers", None)  # torch's multi-process iterator has it
        if shut_down is not None:
            with contextlib.suppress(Exception):
                shut_down()

    def _set_up_check(self, stop: _Interrupt) -> None:
        """Stop (nothing to save yet) if a signal came during the set-up; the ranks agree on it."""
        if self._on_any_rank(stop.requested):
            raise KeyboardInterrupt

    def _nccl(self) -> bool:
        return "nccl" in str(torch.distributed.get_backend()).lower()

    def _run(self, stop: _Interrupt) -> TrainResult:
        cfg = self.cfg
        self._stop = stop
        self._build()
        self._set_up_check(stop)
        self._losses()
        self._set_up_check(stop)
        self._data()
        self._set_up_check(stop)
        with self._rank0_work():
            self._prepare_run_dir()
            self._refresh_generator()
        start = self.step
        self.emit(
            {
                "event": "start",
                "step": start,
                "steps": cfg.steps,
                "stage": cfg.stage,
                "device": str(self.device),
                "dtype": str(self.dtype).replace("torch.", ""),
                "world_size": self.dist.world_size,
                "generator": self.gconf.to_dict(),
            }
        )
        self.G.train()
        if self.D is not None:
            self.D.train()
        history: collections.deque[dict[str, float]] = collections.deque(maxlen=HISTORY)
        window: dict[str, list[float]] = {}
        pending: list[dict[str, torch.Tensor]] = []  # loss tensors of the steps not yet read back
        t_window = time.perf_counter()
        idle = 0.0  # seconds of this log window spent validating or saving (not loading or training)
        n_window = 0
        interrupted = False
        unreadable: str | None = None  # why no training image can be read any more (--data gone mid-run)

        def read_back() -> None:
            """The pending steps' losses to floats (one device sync), checked before anything is
            saved or logged: a non-finite loss stops the run before it can reach a file."""
            if not pending:
                return
            keys = list(pending[0])
            table = torch.stack([torch.stack([v[k].float() for k in keys]) for v in pending]).cpu().numpy()
            first = self.step - len(pending) + 1
            for i, row in enumerate(table.tolist()):
                values = dict(zip(keys, row, strict=True))
                if not math.isfinite(values["loss"]):
                    raise SrganError(
                        f"the loss became {values['loss']} at step {first + i}; lower --lr or use "
                        f"--precision fp32, {self._go_on()}"
                    )
                history.append(values)
                for key, value in values.items():
                    window.setdefault(key, []).append(value)
            pending.clear()

        def log_window(val_psnr: float | None) -> dict[str, Any]:
            """The metrics line of the steps since the last one, written (rank 0) and returned."""
            busy = time.perf_counter() - t_window - idle  # read_back waited for the device
            record: dict[str, Any] = {"step": self.step}
            record.update({k: float(np.mean(v)) for k, v in window.items()})
            record["log_steps"] = n_window  # the steps the losses average: fewer than --log-every after a stop
            record["lr"] = lr_value
            record["patches_per_s"] = n_window * cfg.batch_size * self.dist.world_size / max(busy, 1e-9)
            record["val_psnr"] = val_psnr
            if self.val_lpips is not None:
                record["val_lpips"] = self.last_lpips if val_psnr is not None else None
            record["time"] = time.time()
            with self._rank0_work():
                self._write_metrics(record)
            return record

        it = self._loader_iter = iter(self.loader) if not self.idle else None
        self._looping = True
        while self.step < cfg.steps:
            if self._stop_agreed(stop):
                interrupted = True
                break
            self._in_step = True  # a stop asked from here comes after this step
            try:
                hr_u8, failed, unwritten = next(it)
            except ImagesUnreadable as exc:  # saved below as a stop is: the weights are good
                unreadable = _worker_message(str(exc))
                break
            except SrganError as exc:  # from a loader worker, torch adds the worker's traceback
                raise SrganError(_worker_message(str(exc))) from None
            self._note_unread(failed)
            if unwritten and not self._cache_unwritten:
                self._cache_unwritten = True
                self.info(
                    f"--cache disk: cannot write the decoded image {unwritten[0]}; training goes on, "
                    "decoding those images for each patch"
                )
            lr_value = lr_at(cfg, self.step)
            for opt in (self.opt_g, self.opt_d):
                if opt is not None:
                    for group in opt.param_groups:
                        if isinstance(group["lr"], torch.Tensor):
                            group["lr"].fill_(lr_value)  # --cuda-graphs: the graph reads it there
                        else:
                            group["lr"] = lr_value
            lr, hr = make_pair(hr_u8, cfg.scale, self.device, margin=self.dataset.margin)
            pending.append(self._train_step(lr, hr))
            if self.ema is not None:
                self._update_ema()
            self.step += 1
            self._in_step = False
            n_window += 1
            val_psnr = None
            validating = bool(cfg.val or cfg.val_holdout) and (self.step % cfg.val_every == 0 or self.step == cfg.steps)
            logging = self.step % cfg.log_every == 0 or validating or self.step == cfg.steps
            saving = self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps
            if validating or logging or saving:
                read_back()
            if validating or saving:
                self._check_weights()  # and the last update, which no loss read back has seen
            if validating:
                t_idle = time.perf_counter()
                with self._rank0_work():  # rank 0 validates and keeps the best; the others wait
                    if self.dist.main:
                        val_psnr = self.last_psnr = self.validate()
                        self.last_val_step = self.step
                    score = None  # generator_best's measure, higher is better: PSNR or -LPIPS
                    if val_psnr is not None:
                        self.best_psnr = val_psnr if self.best_psnr is None else max(self.best_psnr, val_psnr)
                        lpips = self.last_lpips  # None where LPIPS could not be computed
                        if lpips is not None:
                            self.best_lpips = lpips if self.best_lpips is None else min(self.best_lpips, lpips)
                        score = val_psnr if self.best_by == "psnr" else (None if lpips is None else -lpips)
                    if score is not None and (self.best_score is None or score > self.best_score):
                        self.best_score = score
                        best = self.run_dir / "generator_best.safetensors"
                        try:
                            save_generator(best, self.export_model(), self.gconf, self._metadata())
                        except OSError as exc:
                            raise SrganError(
                                f"{best}: cannot write ({write_reason(exc)}); free space or fix the folder, "
                                f"{self._go_on()}"
                            ) from None
                idle += time.perf_counter() - t_idle
            if logging:
                self._share_unread()
                record = log_window(val_psnr)
                self.emit({"event": "log", "steps": cfg.steps, **self._best(), **record})
                window, n_window, idle = {}, 0, 0.0
                t_window = time.perf_counter()
            if saving:
                t_idle = time.perf_counter()
                self.checkpoint()
                idle += time.perf_counter() - t_idle
        if unreadable is not None:
            self._stop_unreadable(unreadable, start, read_back, n_window, log_window)
        self._share_unread()  # those since the last metrics line (an interrupted run stops between them)
        if interrupted:
            self._save_at_stop(start, read_back, n_window, log_window)
            resumable = self.step > start or (self.run_dir / CHECKPOINT).exists()
            event = {"event": "interrupted", "step": self.step, "saved": self.step > start, "resumable": resumable}
            if self.step == start and (self.state or {}).get("changed"):
                event["unapplied"] = list(self.state["changed"])  # this resume's changes: none trained yet
            self.emit(event)
            raise KeyboardInterrupt
        if self.step == start and start > 0:
            unapplied = (self.state or {}).get("unapplied")
            if unapplied:
                one = len(unapplied) == 1
                self.info(
                    f"the run is already at step {start} of {cfg.steps}, so this resume's {', '.join(unapplied)} "
                    f"{'is' if one else 'are'} not applied (config.json and the weights keep the run's options); "
                    f"raise --steps to train further with {'it' if one else 'them'}"
                )
            else:
                self.info(f"the run is already at step {start} of {cfg.steps}; raise --steps to train further")
        if self.unread_images:
            count = len(self.unread_images)
            self.info(
                f"{count} training image(s) could not be read during the run; their patches came from other images"
            )
        self.emit({"event": "done", "step": self.step, **self._best(), "val_psnr": self.last_psnr})
        return TrainResult(
            self.run_dir,
            self.step,
            self.export_model(),
            self.best_psnr,
            self.last_psnr,
            [h["loss"] for h in history],
            list(history),
            self.best_lpips,
            self.best_by,
        )
