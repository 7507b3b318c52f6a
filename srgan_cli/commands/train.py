"""``srgan train``: parse and validate the options, show progress, call :func:`srgan_cli.train.train`."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from ..cli import (
    DEVICE_HELP,
    Command,
    DroppingStream,
    NonEmptyPath,
    check_device,
    check_model_names,
    live_terminal,
    typed_value,
)
from ..config import PRECISIONS
from ..errors import OptionError, SrganError, printable
from .completion import complete_device, complete_model, complete_set

# Keys of a --config [train] table that must be true/false, or positive numbers.
_BOOL_KEYS = ("no_batch_norm", "no_d_batch_norm", "channels_last", "compile_", "cuda_graphs", "resume", "quiet")
_POSITIVE_KEYS = ("steps", "batch_size", "patch_size", "lr", "lr_step", "val_every", "checkpoint_every", "log_every")
_POSITIVE_KEYS += ("threads", "num_blocks", "num_features")


def _positive(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value <= 0:
        raise click.BadParameter("must be positive")
    return value


def _milestones(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    if value is None:
        return None
    from ..train import _milestones as steps

    try:
        return steps(value)
    except SrganError as exc:
        raise click.BadParameter(str(exc)) from None


def _val(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """'' (an unset variable) is refused: it validated on nothing and was recorded as the run's --val."""
    if value == "":
        raise click.BadParameter(
            "an empty value (an unset variable?); give a set name (set5, set14, bsd100) or a folder"
        )
    return value


def _layers(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None or value == "mse":
        return value
    try:
        from ..losses import parse_layers
    except ImportError:
        return value
    try:
        parse_layers(value)
    except SrganError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@click.command("train", cls=Command)
@click.option(
    "--stage",
    type=click.Choice(["mse", "gan"]),
    help="mse: SRResNet on pixel MSE; gan: SRGAN from --init.  [default: mse]",
)
@click.option(
    "--data",
    type=NonEmptyPath(file_okay=False, path_type=Path),
    help="Folder (tree) of training images (required, here or in --config; with --resume it may be changed, "
    "with a note).",
)
@click.option(
    "--out",
    "out",
    type=NonEmptyPath(file_okay=False, path_type=Path),
    help="Run folder for checkpoints, metrics and weights (required, here or in --config).",
)
@click.option(
    "--init",
    type=str,
    metavar="MODEL",
    callback=check_model_names,
    shell_complete=complete_model,
    help="Generator to start from (required for --stage gan): a named model (see 'srgan models', e.g. "
    "srresnet_x4), a .safetensors file (e.g. RUN/generator.safetensors) or a Hub reference "
    "owner/repo[:file][@rev].",
)
@click.option(
    "--resume/--no-resume",
    default=None,
    help="Continue the run in --out from its checkpoint (--no-resume: a new run, where a --config file says resume).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="TOML file with a [train] table of these options; flags override it.",
)
@click.option("--steps", type=int, callback=_positive, help="Generator updates.  [default: mse 1000000, gan 200000]")
@click.option("--batch-size", type=int, callback=_positive, help="Patches per step and process.  [default: 16]")
@click.option("--patch-size", type=int, callback=_positive, help="HR patch side in px.  [default: 96]")
@click.option("--lr", type=float, callback=_positive, help="Adam learning rate.  [default: 1e-4]")
@click.option(
    "--lr-decay",
    type=click.Choice(["none", "step", "cosine"]),
    help="Learning-rate schedule: x--lr-gamma every --lr-step (or at --lr-milestones), or a cosine to 0.  "
    "[default: mse none, gan step]",
)
@click.option(
    "--lr-step", type=int, callback=_positive, help="Steps between the drops of --lr-decay step.  [default: steps/2]"
)
@click.option(
    "--lr-milestones",
    metavar="STEPS",
    callback=_milestones,
    help="--lr-decay step drops at these steps instead of every --lr-step (ESRGAN: 50000,100000,200000,300000).",
)
@click.option(
    "--lr-gamma",
    type=click.FloatRange(0, 1, min_open=True),
    help="Factor of each --lr-decay step drop (ESRGAN: 0.5).  [default: 0.1]",
)
@click.option("--adam-beta1", type=click.FloatRange(0, 1, max_open=True), help="Adam's beta1.  [default: 0.9]")
@click.option(
    "--device",
    type=str,
    metavar="DEVICE",
    callback=check_device,
    shell_complete=complete_device,
    help=f"{DEVICE_HELP}  [default: auto]",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    help="Autocast dtype (auto: fp16 on CUDA, fp32 on CPU and MPS).  [default: auto]",
)
# on/off pairs: a resume keeps the run's saved setting, which only the --no- form can turn off
@click.option("--channels-last/--no-channels-last", default=None, help="channels_last memory format.")
@click.option("--compile/--no-compile", "compile_", default=None, help="torch.compile the models.")
@click.option(
    "--cuda-graphs/--no-cuda-graphs",
    default=None,
    help="mse stage on one CUDA GPU: capture the whole update once as a CUDA graph and replay it "
    "(for GPUs where a step is bound by launching kernels; bf16 or fp32).",
)
@click.option(
    "--workers", type=click.IntRange(0), help="Data loader processes.  [default: min(4, cpus) on GPU, 0 on CPU]"
)
@click.option(
    "--cache",
    type=click.Choice(["auto", "on", "off", "disk"]),
    help="Keep the decoded images in memory (on; auto: where they fit in 16 GiB and half the free memory), or on "
    "disk as they are first read (disk: for sets larger than memory; never chosen by auto).  [default: auto]",
)
@click.option(
    "--cache-dir",
    type=NonEmptyPath(file_okay=False, path_type=Path),
    help="--cache disk's folder (refused without --cache disk, as auto never keeps files, and where it is --data "
    "or inside it): the decoded images go into its sub-folder srgan-decoded, which may be deleted at any time "
    "(entries are made again as needed), and entries of changed images are left there.  "
    "[default: $SRGAN_CACHE_DIR/decoded, else "
    "$XDG_CACHE_HOME/srgan/decoded (~/.cache/srgan/decoded)]",
)
@click.option(
    "--scale-aug",
    type=click.FloatRange(0, 1, min_open=True),
    metavar="MIN",
    help="Scale augmentation: crop each patch from the image downscaled by a random factor in [MIN, 1] "
    "(e.g. 0.6; 1 = off, the paper), for small training sets.  [default: 1]",
)
@click.option(
    "--vgg-weights",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="VGG19 safetensors for the content loss.",
)
@click.option(
    "--content-loss",
    callback=_layers,
    help="gan content loss: vgg54, vgg22, conv5_4, 'conv2_1:0.1,conv3_1:1' or mse.  [default: vgg54]",
)
@click.option(
    "--content-criterion",
    type=click.Choice(["mse", "l1"]),
    help="gan: how SR and HR are compared in each term of --content-loss, its VGG features and any pixel "
    "term (SRGAN: mse; ESRGAN: l1).  [default: mse]",
)
@click.option(
    "--feature-scale",
    type=click.FloatRange(0, min_open=True),
    help="gan: factor of the VGG feature maps before --content-criterion (SRGAN's 1/12.75 for its Caffe "
    "weights).  [default: 1/12.75 with Caffe-convention weights, 1 with torchvision's]",
)
@click.option(
    "--content-jitter",
    type=click.IntRange(0),
    help="gan: crop SR and HR by one random 0..N-1 px offset per step before VGG, so VGG's pooling "
    "grid is not locked to the x4 pixel grid (4 = the scale; 0 = off, the paper).  [default: 0]",
)
@click.option(
    "--d-jitter",
    type=click.IntRange(0),
    help="gan: roll real and fake patches together by one random 0..N-1 px offset per step before the "
    "discriminator, so its strided gradient is not locked to the x4 pixel grid (0 = off, the paper).  [default: 0]",
)
@click.option(
    "--no-d-batch-norm/--d-batch-norm",
    "no_d_batch_norm",
    default=None,
    help="gan: a discriminator without BatchNorm (the paper's has it; real and fake share its batch).",
)
@click.option(
    "--d-arch",
    type=click.Choice(["vgg", "unet"]),
    help="gan: the discriminator. vgg: the paper's (strided convs, dense layers, one logit a patch); "
    "unet: a U-Net with spectral normalisation and one logit a pixel (the kind Real-ESRGAN uses), "
    "about 3x the time of vgg on a CPU at the same --d-features.  [default: vgg]",
)
@click.option(
    "--d-features",
    type=click.IntRange(1),
    help="gan: maps of the discriminator's first conv (both kinds double them as they go down; "
    "32 is a quarter of the compute of 64).  [default: 64]",
)
@click.option(
    "--grid-weight",
    type=click.FloatRange(0),
    help="gan: weight of a loss on the mean error at each of the 4x4 pixel phases (the RMS of the "
    "regular grid texture an x4 upsampler can draw; 0 = off, the paper).  [default: 0]",
)
@click.option(
    "--ldl-weight",
    type=click.FloatRange(0),
    help="gan: weight of LDL's artifact loss (Liang et al. 2022): L1 where the error is locally noisy "
    "and the EMA generator's is smaller; needs --ema (0 = off, the paper).  [default: 0; LDL: 1]",
)
@click.option(
    "--flat-weight",
    type=click.FloatRange(0),
    help="gan: weight of an L1 loss on SR - HR where HR is flat (its 15x15 luma std at most 2 gray levels, "
    "none from 4): against invented texture and blotches on skin, sky and paper (0 = off, the paper).  [default: 0]",
)
@click.option(
    "--block-weight",
    type=click.FloatRange(0),
    help="gan: weight of a loss on how unevenly the output's pixel-to-pixel steps fall on the 4 pixel "
    "phases, beyond HR's: against faint 4 px squares on skin and texture (0 = off, the paper).  [default: 0]",
)
@click.option(
    "--local-grid-weight",
    type=click.FloatRange(0),
    help="gan: weight of the grid loss taken per 64 px square of each patch instead of over the batch: "
    "against a 4 px lattice whose phase changes from place to place (0 = off, the paper).  [default: 0]",
)
@click.option(
    "--tv-weight",
    type=click.FloatRange(0),
    help="gan: weight of the total-variation loss (mean squared step between neighbours), as in the paper's "
    "SRResNet-VGG22 (its 2e-8 was on a sum; about 8.8e-3 here if that sum was over a batch of 16 96 px "
    "patches).  [default: 0, off]",
)
@click.option(
    "--spectral-weight",
    type=click.FloatRange(0),
    help="gan: weight of the loss on fine detail (periods of 8 px or less) with more energy than twice HR's at any "
    "frequency, or less than a tenth of HR's in all, per 32 px square: against a hatch or weave laid over "
    "painted and smooth surfaces, without blur (0 = off, the paper).  [default: 0]",
)
@click.option(
    "--gan-type",
    type=click.Choice(["standard", "relativistic"]),
    help="gan: the paper's discriminator loss, or ESRGAN's relativistic average one.  [default: standard]",
)
@click.option(
    "--adv-weight",
    type=click.FloatRange(0),
    help="Adversarial loss weight.  [default: 1e-3; ESRGAN: 2.5e-3, its 5e-3 on the mean of the two relativistic "
    "terms, which are summed here]",
)
@click.option("--pixel-loss", type=click.Choice(["mse", "l1"]), help="Pixel loss (ESRGAN: l1).  [default: mse]")
@click.option(
    "--pixel-weight", type=click.FloatRange(0), help="Pixel loss weight in the gan stage.  [default: 0; ESRGAN 1e-2]"
)
@click.option(
    "--ema",
    type=click.FloatRange(0, 1, max_open=True),
    help="EMA decay of the exported generator (0 = off), warmed up as min(EMA, (1+step)/(10+step)).  [default: 0]",
)
@click.option(
    "--arch", type=click.Choice(["srresnet", "rrdb"]), help="Generator: SRResNet or ESRGAN's RRDB.  [default: srresnet]"
)
@click.option("--num-blocks", type=int, callback=_positive, help="Residual blocks.  [default: 16 srresnet, 23 rrdb]")
@click.option("--num-features", type=int, callback=_positive, help="Feature channels.  [default: 64]")
@click.option(
    "--no-batch-norm/--batch-norm", "no_batch_norm", default=None, help="SRResNet without BatchNorm (ESRGAN)."
)
@click.option(
    "--val",
    type=str,
    metavar="SET|DIR",
    callback=_val,
    shell_complete=complete_set,
    help="Validation set: set5, set14, bsd100 (under --data-dir) or a folder.",
)
@click.option("--val-every", type=int, callback=_positive, help="Steps between validations.  [default: 1000]")
@click.option(
    "--val-holdout",
    type=click.IntRange(min=0),
    help="Validate on N images held out of --data (their central 256 px; the same N whatever the seed) "
    "instead of --val, so that the benchmark sets stay test sets.  [default: 0, off]",
)
@click.option(
    "--best-by",
    type=click.Choice(["psnr", "lpips"]),
    help="What generator_best.safetensors is best at on --val or --val-holdout: higher PSNR or lower LPIPS.  "
    "[default: mse psnr; gan lpips where LPIPS can be computed, else psnr]",
)
@click.option(
    "--data-dir",
    type=NonEmptyPath(file_okay=False, path_type=Path),
    help="Folder holding set5/, set14/, bsd100/ for --val.  [default: env SRGAN_DATA_DIR, else the Hub]",
)
@click.option("--checkpoint-every", type=int, callback=_positive, help="Steps between checkpoints.  [default: 1000]")
@click.option("--log-every", type=int, callback=_positive, help="Steps per metrics line.  [default: 10]")
@click.option("--seed", type=int, help="Seed of the weights' start and the patches drawn.  [default: 0]")
@click.option("--threads", type=int, callback=_positive, help="torch CPU threads.")
@click.option("-q", "--quiet/--no-quiet", default=None, help="Only errors.")
def train(config_file: Path | None, **given: Any) -> None:
    """Train a generator: stage mse (SRResNet, pixel MSE), then stage gan (SRGAN) from it.

    \b
      srgan train --stage mse --data images/ --out runs/srresnet --val set5
      srgan train --stage gan --init runs/srresnet/generator.safetensors \\
                  --data images/ --out runs/srgan --vgg-weights vgg19.safetensors
      torchrun --nproc_per_node 4 -m srgan_cli train --data images/ --out runs/a

    Ctrl-C saves a checkpoint; --resume continues exactly where it stopped.
    """
    flags = {key for key, value in given.items() if value is not None}
    options, given_as = _read_config(config_file, flags) if config_file else ({}, {})
    for key in flags:
        options[key] = given[key]  # a flag on the command line beats the config file
    if "compile_" in options:
        options["compile"] = options.pop("compile_")
    if "no_batch_norm" in options:
        options["batch_norm"] = not options.pop("no_batch_norm")
    if "no_d_batch_norm" in options:
        options["d_batch_norm"] = not options.pop("no_d_batch_norm")
    out = options.pop("out", None)
    resume = bool(options.pop("resume", False))
    quiet = bool(options.pop("quiet", False))
    if out is None:
        raise click.UsageError("--out is required: the run folder")
    typed = typed_value(click.get_current_context(silent=True), "out")  # ./- names a folder '-'
    if (typed if isinstance(typed, str) else str(out)) == "-":  # a folder '-' was made; '-' is stdout elsewhere
        raise OptionError("--out -: a run folder cannot be standard output; give a folder name")
    if not resume and "data" not in options:
        raise click.UsageError("--data is required: a folder (tree) of training images")
    for key in ("data", "init", "vgg_weights", "data_dir", "cache_dir"):
        if key in options:
            options[key] = str(options[key])

    from ..train import train as run_training

    reporter = None if quiet else _Reporter()
    try:
        # SIGTERM/SIGHUP while it starts up stop it as Ctrl-C does (the command group's
        # sigterm_as_interrupt); the training loop then saves a checkpoint first
        result = run_training(options, Path(out), resume=resume, report=reporter, given_as=given_as)
    finally:
        if reporter is not None:
            reporter.close()
    if not quiet and os.environ.get("RANK", "0") == "0":  # under torchrun rank 0 speaks (only it validates)
        best = ""
        if result.best_by == "lpips" and result.best_lpips is not None:
            best = f", best val LPIPS {result.best_lpips:.4f}"
        elif result.best_psnr is not None:
            best = f", best val PSNR {result.best_psnr:.2f} dB"
        with contextlib.suppress(OSError):  # stderr closed or full: the run is done all the same
            click.echo(f"done: step {result.step}{best}; weights in {Path(out) / 'generator.safetensors'}", err=True)


def _read_config(path: Path, flags: set[str] = frozenset()) -> tuple[dict[str, Any], dict[str, str]]:
    """The options of the file's [train] table, checked as their flags are, and how each was given
    there (``steps = 3 in run.toml``, for messages that would name a flag the user never typed).

    The keys in ``flags``, given on the command line, are checked for their type alone: the flag
    replaces the value, which may be a path that exists on another machine only.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise SrganError(f"{path}: reading TOML needs Python 3.11 or the 'tomli' package") from None
    try:
        # TOML is UTF-8 whatever the locale (Windows' cp1252 misread "Á"); a BOM (PowerShell 5's
        # utf8) is allowed, where tomllib said "Invalid statement (line 1, column 1)"
        data = tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise OptionError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise SrganError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    table = data.get("train")
    if not isinstance(table, dict):
        raise OptionError(f"{path}: no [train] table; put the options under [train]")
    params = {p.name for p in train.params} - {"config_file"}
    aliases = {"compile": "compile_"}  # batch_norm / d_batch_norm are turned into the no_ flags below
    options: dict[str, Any] = {}
    given_as: dict[str, str] = {}  # by the trainer's names of the options
    spelled: dict[str, str] = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        # log-every and log_every, batch-norm and no-batch-norm, compile and compile_: one option,
        # and which one wins would be a matter of their order in the file
        option = aliases.get(key) or (f"no_{key}" if key in ("batch_norm", "d_batch_norm") else key)
        if option in spelled:
            raise OptionError(f"{path}: {spelled[option]!r} and {raw_key!r} are the same option; keep one")
        spelled[option] = raw_key
        if key in ("batch_norm", "d_batch_norm"):
            if not isinstance(value, bool):
                raise OptionError(f"{path}: {raw_key} must be true or false")
            if option not in flags:
                options[option] = not value
                given_as[key] = f"{raw_key} = {_toml_text(value)} in {path}"
            continue
        key = option
        if key not in params:
            raise OptionError(f"{path}: unknown option {raw_key!r} in [train]; use the names of the srgan train flags")
        param = next(p for p in train.params if p.name == key)
        milestones = key == "lr_milestones" and isinstance(value, list)  # [50000, 100000] as well as "50000,100000"
        if key in _BOOL_KEYS and not isinstance(value, bool):
            raise OptionError(f"{path}: {raw_key} must be true or false")
        expected = None if milestones else _config_type_error(param, value)
        if expected:
            raise OptionError(f"{path}: {raw_key} must be {expected}, got {_toml_type(value)}")
        if key in flags:
            continue
        text = f"{raw_key} = {_toml_text(value)} in {path}"
        if key in _PATH_KEYS and value.startswith("~"):  # as the shell does for a flag, before it must exist
            value = os.path.expanduser(value)
        ctx = click.Context(train)
        try:
            if not milestones:
                value = param.type_cast_value(ctx, value)
            if key in _POSITIVE_KEYS and value <= 0:
                raise OptionError(f"{path}: {raw_key} must be positive")
            if param.callback is not None:  # what the flag's value is checked with: the same exit 2
                value = param.callback(ctx, param, value)
        except click.BadParameter as exc:
            raise OptionError(f"{path}: {raw_key}: {exc.message}") from None
        options[key] = value
        given_as[_TRAINER_NAMES.get(key, key)] = text
    return options, given_as


# Options that name a file or folder: '~' in the config file means the home folder, as on the command line.
_PATH_KEYS = frozenset({"data", "out", "init", "vgg_weights", "data_dir", "val", "cache_dir"})
# The trainer's names of options whose flag is named otherwise.
_TRAINER_NAMES = {"compile_": "compile", "no_batch_norm": "batch_norm", "no_d_batch_norm": "d_batch_norm"}


def _toml_text(value: Any) -> str:
    """``value`` as a TOML file spells it (true, "set5", [1, 2])."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # TOML's basic strings escape as JSON's do
    if isinstance(value, list):
        return "[" + ", ".join(_toml_text(item) for item in value) + "]"
    return str(value)


def _config_type_error(param: click.Parameter, value: Any) -> str | None:
    """What a --config value of ``param`` must be, where ``value``'s TOML type is wrong (else None).

    Click's casts would turn an int into a path's string, truncate 2.5 to 2 and take true as 1.
    """
    kind = param.type
    if getattr(param, "is_flag", False) or isinstance(kind, click.types.BoolParamType):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(kind, click.types.IntParamType):
        return None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if isinstance(kind, click.types.FloatParamType):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    return None if isinstance(value, str) else "a string"  # paths, choices and plain strings


def _toml_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return type(value).__name__  # bool, int, float, str, datetime, date, time


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}d {text}" if days else text


class _Reporter:
    """Rich progress on a terminal; a plain line per log interval otherwise."""

    def __init__(self) -> None:
        self.tty = live_terminal(sys.stderr)  # not TERM=dumb, where a bar is not redrawn in place
        self.progress = None
        self.task = None
        self.t0 = time.monotonic()
        self.step0 = 0

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "info":
            # a note as upscale and bench print theirs; a status line (the training images found) as it is
            prefix = "" if event.get("kind") == "status" else "note: "
            self._line(prefix + printable(event["message"]))  # control characters in names escaped
        elif kind == "start":
            self.t0, self.step0 = time.monotonic(), event["step"]
            g = event["generator"]
            self._line(
                f"stage {event['stage']}: {g['arch']} x{g['scale']} ({g['num_blocks']} blocks, "
                f"{g['num_features']} features) on {event['device']} ({event['dtype']}, "
                f"{event['world_size']} process(es)), step {event['step']} of {event['steps']}"
            )
            if self.tty:
                from rich.console import Console
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

                self.progress = Progress(
                    TextColumn("train"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                    TextColumn("{task.fields[status]}", markup=False),
                    console=Console(file=DroppingStream(sys.stderr)),
                    transient=False,
                )
                self.progress.start()
                self.task = self.progress.add_task("train", total=event["steps"], completed=event["step"], status="")
        elif kind == "log":
            status = self._status(event)
            if self.progress is not None:
                self.progress.update(self.task, completed=event["step"], status=status)
            else:
                done = event["step"] - self.step0
                eta = ""
                if done > 0:
                    left = (event["steps"] - event["step"]) * (time.monotonic() - self.t0) / done
                    eta = f"  eta {_clock(left)}"
                self._line(f"step {event['step']}/{event['steps']} {status}{eta}")
        elif kind == "stopping":  # the first Ctrl-C: the step (or validation) still running may take seconds
            if event.get("started"):
                self._line(
                    f"stopping after step {event['step']}: saving a checkpoint (press Ctrl-C again to quit without "
                    "saving)"
                )
            else:
                self._line("stopping before the first step: nothing to save")
        elif kind == "interrupted" and event.get("forced"):
            saved = event.get("saved_step")
            self._line(
                f"stopped without saving; the last checkpoint is step {saved}: continue from it with --resume"
                if saved is not None
                else "stopped without saving; no checkpoint yet: start the run again"
            )
        elif kind == "interrupted":
            if not event.get("resumable", True):  # stopped before its first checkpoint: nothing to resume
                self._line("interrupted before the first checkpoint: nothing to resume; start the run again")
            else:
                where = f"checkpoint saved at step {event['step']}" if event["saved"] else "nothing new to save"
                if event.get("unapplied"):  # a resume stopped before its first step: its changes are not kept
                    where += f" (this resume's {', '.join(event['unapplied'])} not applied: give them again)"
                self._line(f"interrupted: {where}; continue with --resume")
        elif kind == "checkpoint" and self.progress is None:
            self._line(f"checkpoint at step {event['step']}")

    @staticmethod
    def _status(event: dict[str, Any]) -> str:
        parts = [f"loss {event['loss']:.4g}"]
        for key in ("loss_content", "loss_adv", "loss_d"):
            if key in event:
                parts.append(f"{key[5:]} {event[key]:.4g}")
        parts.append(f"lr {event['lr']:.2g}")
        parts.append(f"{event['patches_per_s']:.1f} patches/s")
        if event.get("val_psnr") is not None and math.isfinite(event["val_psnr"]):
            parts.append(f"val {event['val_psnr']:.2f} dB")
            if event.get("val_lpips") is not None:
                parts.append(f"LPIPS {event['val_lpips']:.4f}")
        elif event.get("best_by") == "lpips" and event.get("best_lpips") is not None:
            parts.append(f"best LPIPS {event['best_lpips']:.4f}")
        elif event.get("best_psnr") is not None:
            parts.append(f"best {event['best_psnr']:.2f} dB")
        return "  ".join(parts)

    def _line(self, text: str) -> None:
        with contextlib.suppress(OSError):  # stderr closed or full: the run goes on, its files tell
            if self.progress is not None:
                # plain text: a file "x[/y].png" raised rich's MarkupError, "scan [draft].png" showed as "scan .png"
                self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
            else:
                click.echo(text, err=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
