"""Weights: safetensors files that carry their config, and the table of named models.

A generator file holds the state dict and, in its metadata, ``format`` = ``srgan-generator``,
``format_version`` = ``1``, ``config`` = the JSON of :class:`GeneratorConfig`, plus free-form
provenance keys. The file alone rebuilds its model. Loading is strict, and nothing is ever
unpickled; the config is checked against the header's tensor names and shapes before a model
is built, so a file cannot make srgan build more than it holds.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from safetensors import SafetensorError, safe_open

from .config import GeneratorConfig
from .errors import SrganError, first_line, utf8_safe
from .fsutil import atomic_path, temporary_folder_reason, write_reason

if TYPE_CHECKING:
    import torch

# PyTorch is imported where tensors are made or loaded, not here: `srgan models` and the headers it
# reads need none of it, and its import took 2 of the 2.1 s that listing two models took.


def load_file(name: str, device: str = "cpu") -> dict[str, torch.Tensor]:
    """safetensors' ``load_file``, imported on first use (with PyTorch)."""
    from safetensors.torch import load_file as load

    return load(name, device=device)


def build_generator(config: GeneratorConfig) -> torch.nn.Module:
    """``models.build_generator``, imported on first use (with PyTorch)."""
    from .models import build_generator as build

    return build(config)


def generator_state_shapes(config: GeneratorConfig) -> dict[str, tuple[int, ...]]:
    """``models.generator_state_shapes``, imported on first use (with PyTorch)."""
    from .models import generator_state_shapes as shapes

    return shapes(config)


FORMAT = "srgan-generator"
# The version of the file format written in ``format_version``. "1" is the only one so far;
# files without the key are read as version 1, and a higher number is refused (a newer srgan).
FORMAT_VERSION = "1"

# The largest config a weights file may ask for, far above every published generator (SRResNet
# 16 blocks of 64 features, ESRGAN 23 RRDBs of 64 features, growth 32): a file is never
# trusted to make srgan build an absurd model.
MAX_BLOCKS = 256
MAX_FEATURES = 1024
MAX_GROWTH = 1024

# Files in these formats are pickles: loading one can run arbitrary code, so none is ever loaded.
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin")

# State-dict entries that are buffers, not learned parameters (not counted as "params").
_BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")

# The tensor dtypes a weights file may store. Any other is refused by name: float8 has no CPU
# kernel for the checks below (a NotImplementedError traceback from every command), and integer
# or bool data is no trained weight.


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


# The named models. ``file`` is looked for in bundled_dir(); ``sha256`` (of that file, when
# published) is checked on every use, bundled or downloaded; ``hub_repo``/``hub_revision`` is
# where the same file is published on the Hugging Face Hub (pin a tag or commit), fetched into
# the Hugging Face cache when the file is not installed. An entry with neither a file nor a Hub
# source is listed as "not available yet" and refused with a clear message, never replaced by
# random weights.
MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in (
        ModelEntry(
            name="srgan_x4",
            file="srgan_x4.safetensors",
            scale=4,
            arch="srresnet",
            description="SRGAN (VGG54 + adversarial): photo-realistic detail; the default",
            sha256="0ee90a57b90ce91029927e12834e617448a45869f975ddc90ec31e1e9d0aac45",
        ),
        ModelEntry(
            name="srresnet_x4",
            file="srresnet_x4.safetensors",
            scale=4,
            arch="srresnet",
            description="SRResNet (MSE): highest PSNR, smoother",
            sha256="6e5461fb333a05304758634a1cc7cbc455781c17d64876f0b640145d9513aec1",
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
    overwrite: bool = True,
) -> Path:
    """Write ``model``'s weights with ``config`` in the metadata, atomically.

    The file gets the usual permissions (``0666 & ~umask``). With ``overwrite=False`` an existing
    file is never replaced (a one-line SrganError instead), even if it appears meanwhile.
    """
    return save_state(path, model.state_dict(), config, metadata=metadata, dtype=dtype, overwrite=overwrite)


def serialize_stable(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """safetensors bytes that are the same for the same tensors and metadata.

    safetensors writes the metadata in a hash map's order, which changes from one write to the
    next: two files of identical weights and metadata had different sha256, the hash that names a
    model in upscaled images, reports and interpolation parents. The header is written again with
    its keys sorted (the tensor data is untouched), padded with spaces to 8 bytes as safetensors
    pads it."""
    from safetensors.torch import save as serialize

    data = serialize(tensors, metadata=metadata)
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + size :]


def save_state(
    path: str | Path,
    state: dict[str, torch.Tensor],
    config: GeneratorConfig,
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype | None = None,
    overwrite: bool = True,
) -> Path:
    """Like :func:`save_generator`, from a state dict (e.g. an interpolated one)."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise SrganError(f"{path}: weights are written as safetensors; use a .safetensors name")
    if not path.parent.is_dir():
        raise SrganError(f"{path}: folder {path.parent} does not exist; create it first")
    if not overwrite and path.exists():
        raise SrganError(f"{path}: already exists; choose another name or pass --overwrite")
    tensors = {}
    for key, value in _unwrapped_state(state).items():
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
        meta[utf8_safe(str(key))] = utf8_safe(value)
    data = serialize_stable(tensors, meta)
    try:
        # Writing the bytes into the temp file atomic_path made keeps its permissions (umask);
        # safetensors' save_file would recreate the file as 0600.
        with atomic_path(path, overwrite=overwrite) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(data)
    except FileExistsError:
        raise SrganError(f"{path}: already exists; choose another name or pass --overwrite") from None
    except OSError as exc:
        raise SrganError(f"{path}: cannot write weights ({write_reason(exc)})") from None
    return path


# What wrappers put before every parameter's name: DistributedDataParallel/DataParallel and torch.compile
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _wrapper_prefix(keys: Iterable[str]) -> str:
    """The wrappers' prefixes that every name in ``keys`` starts with ("_orig_mod.module." for a compiled DDP
    model), or ""."""
    keys = list(keys)
    prefix = ""
    while keys and (found := next((p for p in _WRAPPER_PREFIXES if all(k.startswith(prefix + p) for k in keys)), None)):
        prefix += found
    return prefix


def _unwrapped_state(state: dict[str, _T]) -> dict[str, _T]:
    """``state`` with the names a compiled or DDP-wrapped model gives (``module.head.0.weight``) made the
    generator's own: save_generator wrote them as they were, and every command that loads a file refused it
    (it "holds weights for 0 blocks"); such files are read with the names made the generator's own."""
    prefix = _wrapper_prefix(state)
    return {key[len(prefix) :]: value for key, value in state.items()} if prefix else state


def count_file_parameters(path: str | Path) -> int:
    """Learned parameters in a weights file, read from its header (no tensor data is loaded).

    BatchNorm running statistics are buffers, not parameters, and are not counted, so the number
    equals ``sum(p.numel() for p in model.parameters())`` of the rebuilt model.
    """
    path = Path(path)
    read_metadata(path)  # one-line error if it is not a safetensors file
    total = 0
    with st_path(path) as name, safe_open(name, framework="numpy") as fh:
        for key in fh.keys():
            if key.endswith(_BUFFER_SUFFIXES):
                continue
            count = 1
            for dim in fh.get_slice(key).get_shape():
                count *= int(dim)
            total += count
    return total


@contextlib.contextmanager
def st_path(path: str | Path) -> Iterator[str]:
    """``path`` as the safetensors library opens it, for the length of the ``with``.

    The library takes UTF-8 names only: a name with bytes from another system's encoding (a
    run folder under such a folder, too) was called "not a valid safetensors file". Such a
    file is opened through a symbolic link with a plain name in a temporary folder; where none
    can be made (no writable one, or a full one), that is the one-line error, which was "not a
    valid safetensors file" too.
    """
    text = os.fspath(path)
    if utf8_safe(text) == text:  # valid UTF-8 as it is
        yield text
        return

    def no_folder(why: str) -> SrganError:
        return SrganError(
            f"{path}: the file name is not valid UTF-8, so it is opened through a link in a temporary folder, "
            f"which cannot be made ({why}); set TMPDIR to a folder you can write to, or rename the file"
        )

    try:
        temporary = tempfile.TemporaryDirectory(prefix="srgan-")
    except OSError as exc:
        raise no_folder(temporary_folder_reason(exc)) from None
    with temporary as folder:
        link = os.path.join(folder, "weights.safetensors")
        try:
            os.symlink(os.path.abspath(text), link)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise no_folder(f"{os.path.dirname(folder)}: {exc.strerror}") from None
            raise SrganError(  # no symbolic links here (some Windows set-ups)
                f"{path}: the file name is not valid UTF-8, which the safetensors library cannot open; rename the file"
            ) from None
        yield link


def check_weights_file(path: str | Path) -> None:
    """One-line SrganError unless ``path`` is a regular file this process may read.

    Looked at and opened here first, since the safetensors library reports a file it may not
    read (EACCES) as "No such file or directory". A FIFO is named as such ("no such weights
    file" before) and never opened: reading one waits for a writer. The test open comes only
    after stat said "regular file", and does not block all the same.
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError, ValueError):  # ValueError: a NUL in the name
        raise SrganError(f"{path}: no such weights file") from None
    except OSError as exc:
        raise unreadable(path, exc) from None
    if stat.S_ISDIR(mode):
        raise SrganError(f"{path}: is a folder; give a .safetensors weights file")
    if not stat.S_ISREG(mode):
        raise SrganError(f"{path}: not a regular file (a FIFO, socket or device); give a .safetensors weights file")
    try:
        os.close(os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)))
    except OSError as exc:
        raise unreadable(path, exc) from None


def unreadable(path: str | Path, exc: OSError) -> SrganError:
    """The one-line error for a weights file that exists but cannot be read (permissions, I/O)."""
    return SrganError(f"{path}: cannot read the weights file ({exc.strerror or _short(exc)})")


_T = TypeVar("_T")
_READ_TRIES = 3


def file_identity(path: str | Path) -> tuple[int, ...] | None:
    """What tells one version of a file from the next (None: no file): a training run replaces
    its generator by a rename (another inode), an in-place write changes the size or the
    modification time, and linking or renaming a version back changes its ctime."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def stable_read(path: str | Path, read: Callable[[], _T]) -> _T:
    """``read()``, which opens ``path`` one or more times, done again where the file changed while
    it ran (a live run's ``generator.safetensors``, replaced at each checkpoint): its parts (the
    sha256, the metadata, the header, the tensors) came from different versions, which recorded
    one file's sha256 for the other's pixels, failed on a mapping "smaller than required" or
    called a sound file corrupt. A file that keeps changing is one SrganError line."""
    for _ in range(_READ_TRIES):
        before = file_identity(path)
        try:
            result = read()
        except SrganError:
            if file_identity(path) != before:
                continue  # the error is the change's, not the file's
            raise
        if before is not None and file_identity(path) == before:
            return result
    raise SrganError(f"{path}: the weights file kept changing while it was read (is a run saving it?); try again")


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a safetensors file, or a one-line error if it is not one."""
    path = Path(path)
    check_weights_file(path)
    try:
        with st_path(path) as name, safe_open(name, framework="numpy") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:  # Runtime: a file cut while mapped
        raise SrganError(f"{path}: not a valid safetensors file ({_short(exc)})") from None


def load_generator(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, GeneratorConfig, dict[str, str]]:
    """Rebuild a generator from a weights file alone; strict about every key and shape.

    Returns ``(model, config, metadata)`` with the model in eval mode on ``device``. The file is
    read as one version (see :func:`stable_read`).
    """
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise SrganError(f"{path}: pickle checkpoints are never loaded, they can run code; convert to safetensors")
    model, config, meta = stable_read(path, lambda: _read_generator(path))
    return model.to(device), config, meta


def _read_generator(path: Path) -> tuple[torch.nn.Module, GeneratorConfig, dict[str, str]]:
    meta = read_metadata(path)
    config = generator_config_of(meta, path)
    # The header alone (names and shapes, no tensor data) must match the config before any
    # module is built: a config that claims a billion blocks is refused here in milliseconds.
    check_file_config(path, config)
    try:
        with st_path(path) as name:
            state = _unwrapped_state(load_file(name, device="cpu"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SrganError(f"{path}: cannot read weights ({_short(exc)})") from None
    model = build_generator(config)
    _load_strict(model, state, path)
    return model.eval(), config, meta


def generator_config_of(meta: dict[str, str], path: str | Path) -> GeneratorConfig:
    """The generator config of a weights file's metadata; SrganError naming ``path`` when it is not
    an srgan generator file, is from a newer srgan, or its config cannot be read."""
    path = Path(path)
    if meta.get("format") != FORMAT or "config" not in meta:
        raise SrganError(
            f"{path}: not an srgan generator file (no '{FORMAT}' config in its metadata); "
            "weights must be saved by srgan (srgan train, srgan interpolate)"
        )
    _check_format_version(meta.get("format_version"), path)
    try:
        return GeneratorConfig.from_json(meta["config"])
    except SrganError as exc:
        raise SrganError(f"{path}: {exc}") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise SrganError(f"{path}: generator config is not valid ({_short(exc)})") from None


def _check_format_version(version: str | None, path: Path) -> None:
    if version is None or version == FORMAT_VERSION:
        return
    if version.isascii() and version.isdigit() and len(version) <= 6 and int(version) > int(FORMAT_VERSION):
        raise SrganError(
            f"{path}: made by a newer srgan (weights format_version {version}, this srgan reads "
            f"{FORMAT_VERSION}); upgrade srgan to load it"
        )
    raise SrganError(
        f"{path}: unknown weights format_version {_clip(version)!r} (this srgan reads {FORMAT_VERSION}); "
        "the file is damaged or was not saved by srgan"
    )


_BLOCK_KEY = re.compile(r"body\.(\d+)\.")
_SRRESNET_STAGE_KEY = re.compile(r"upsample\.\d+\.bias")
_RRDB_STAGE_KEY = re.compile(r"up_convs\.\d+\.weight")


def read_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's name and shape, from the file's header (no tensor data is read)."""
    path = Path(path)
    try:
        with st_path(path) as name, safe_open(name, framework="numpy") as fh:
            return {key: tuple(int(d) for d in fh.get_slice(key).get_shape()) for key in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SrganError(f"{path}: not a valid safetensors file ({_short(exc)})") from None


def check_file_config(path: str | Path, config: GeneratorConfig) -> None:
    """Check ``config`` against the tensor names and shapes in the file's header, reading no
    tensor data and building nothing: the block count, the first conv's channels, the growth
    channels, the upsampling stages, BatchNorm, upper bounds on every size, then every key and
    shape. One-line SrganError on the first mismatch.
    """
    path = Path(path)
    shapes = _unwrapped_state(read_shapes(path))  # names an older save_generator kept from a DDP/compile wrapper
    says = f"{path}: weights do not match their config: it says"
    rrdb = config.arch == "rrdb"
    head = "head.weight" if rrdb else "head.0.weight"
    other_arch, other_head = ("srresnet", "head.0.weight") if rrdb else ("rrdb", "head.weight")
    if head not in shapes and other_head in shapes:
        raise SrganError(f"{says} arch {config.arch} but the file holds {other_arch} weights ({other_head})")
    blocks = len({m.group(1) for key in shapes if (m := _BLOCK_KEY.match(key))})
    if blocks != config.num_blocks:
        raise SrganError(
            f"{says} num_blocks {_clip(config.num_blocks)} but the file holds weights for "
            f"{blocks} block{'s' if blocks != 1 else ''}"
        )
    first = shapes.get(head)
    if first is not None and len(first) == 4:
        if first[0] != config.num_features:
            raise SrganError(
                f"{says} num_features {_clip(config.num_features)} but its first conv ({head}) "
                f"has {first[0]} output channels"
            )
        if first[1] != config.in_channels:
            raise SrganError(
                f"{says} in_channels {config.in_channels} but its first conv ({head}) has {first[1]} input channels"
            )
    dense = shapes.get("body.0.blocks.0.convs.0.weight")
    if rrdb and dense is not None and len(dense) == 4 and dense[0] != config.growth_channels:
        raise SrganError(
            f"{says} growth_channels {_clip(config.growth_channels)} but body.0.blocks.0.convs.0.weight "
            f"has {dense[0]} output channels"
        )
    stage_key = _RRDB_STAGE_KEY if rrdb else _SRRESNET_STAGE_KEY
    stages = sum(1 for key in shapes if stage_key.fullmatch(key))
    if first is not None and 2**stages != config.scale:
        raise SrganError(
            f"{says} scale {config.scale} but the file holds {stages} x2 upsampling stage"
            f"{'s' if stages != 1 else ''} (x{2**stages})"
        )
    if not rrdb and first is not None:
        norms = [key for key in shapes if ".bn1." in key or ".bn2." in key or key.startswith("body_tail.1.")]
        if config.batch_norm and not norms:
            raise SrganError(f"{says} batch_norm true but the file holds no BatchNorm weights")
        if not config.batch_norm and norms:
            raise SrganError(f"{says} batch_norm false but the file holds BatchNorm weights ({norms[0]})")
    bounds = [("num_blocks", config.num_blocks, MAX_BLOCKS), ("num_features", config.num_features, MAX_FEATURES)]
    if rrdb:
        bounds.append(("growth_channels", config.growth_channels, MAX_GROWTH))
    for name, value, limit in bounds:
        if value > limit:
            raise SrganError(f"{path}: its config says {name} {_clip(value)}; srgan loads at most {limit}")
    _check_shapes(shapes, generator_state_shapes(config), str(path), "weights do not match their config")


def _clip(value: object, limit: int = 40) -> str:
    """``value`` as text, cut to ``limit`` characters (a config may hold a 4000-digit number)."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def _load_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    # The built model is float32 (check_state_dict's default dtype): a float64 value beyond its
    # range is refused there, not loaded as infinity.
    check_state_dict(
        state, {k: tuple(v.shape) for k, v in expected.items()}, str(path), "weights do not match their config"
    )
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()}, strict=False)


def check_state_dict(
    state: dict[str, torch.Tensor],
    expected: dict[str, tuple[int, ...]],
    source: str,
    mismatch: str,
    hint: str = "",
    dtype: torch.dtype | None = None,
) -> None:
    """Strict check of a state dict: exactly the ``expected`` keys, their shapes, finite floats.

    One-line errors: ``{source}: {mismatch}: 2 missing (e.g. k), 1 unexpected (e.g. j) tensors{hint}``,
    ``{source}: {mismatch}: k has shape (..), expected (..)``, one naming a dtype other than
    float16, bfloat16, float32 or float64, and a damaged-file message for NaN, infinity, a value
    beyond the range of ``dtype`` (the dtype the tensors are loaded into: float64's 1e300 became
    infinity there, and the network NaN) or a negative BatchNorm ``running_var`` (folding takes
    its square root).
    """
    import torch

    dtype = torch.float32 if dtype is None else dtype
    _check_shapes({k: tuple(v.shape) for k, v in state.items()}, expected, source, mismatch, hint)
    for key in expected:
        got = state[key]
        if got.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise SrganError(
                f"{source}: tensor {key} is {str(got.dtype).removeprefix('torch.')}; "
                "srgan reads float16, bfloat16, float32 or float64 weights"
            )
        if got.numel() == 0:
            continue
        # min/max propagate NaN, so two scalars tell (no full-size mask); the cast is monotonic,
        # so the two ends cast to ``dtype`` tell whether every value fits it.
        low, high = torch.aminmax(got.detach().reshape(-1))
        if not (torch.isfinite(low) and torch.isfinite(high)):
            raise SrganError(f"{source}: tensor {key} is not finite floating point; the file is corrupt")
        for end in (low, high):
            if not torch.isfinite(end.to(dtype)):
                raise SrganError(
                    f"{source}: tensor {key} holds {end.item():g}, beyond the range of "
                    f"{str(dtype).removeprefix('torch.')}; the file is corrupt"
                )
        if key.endswith("running_var") and low < 0:
            raise SrganError(f"{source}: tensor {key} holds a negative variance ({low.item():g}); the file is corrupt")


def _check_shapes(
    shapes: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]], source: str, mismatch: str, hint: str = ""
) -> None:
    """Exactly the ``expected`` keys, each with its shape; the one-line errors of check_state_dict."""
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise SrganError(f"{source}: {mismatch}: {', '.join(parts)} tensors{hint}")
    for key, shape in expected.items():
        if tuple(shapes[key]) != tuple(shape):
            raise SrganError(f"{source}: {mismatch}: {key} has shape {tuple(shapes[key])}, expected {tuple(shape)}")


def _short(exc: BaseException) -> str:
    return first_line(exc)


def describe_entries() -> list[dict[str, Any]]:
    """One row per named model, for ``srgan models`` (never touches the network).

    Keys: name, scale, arch, params (None when no file is at hand), size_mb, available (bundled
    or in the Hugging Face cache, and not damaged), path (that local file or None), cached (in
    that cache), damaged (that file does not match the published sha256: a damaged install or a bad
    cached copy, which no command will load), source ("bundled", "hub:owner/repo@rev" or "not
    available yet"), hub ("owner/repo@rev" or None), sha256 (the published one), default, description.
    """
    rows = []
    for entry in MODELS.values():
        bundled = entry.bundled_path()
        hub = f"{entry.hub_repo}@{entry.hub_revision or 'main'}" if entry.hub_repo else None
        cached = _cached_file(entry) if entry.hub_repo else None
        local = bundled or cached
        params = None
        damaged = False
        if local is not None:
            try:
                params = count_file_parameters(local)
            except SrganError:
                params = None
            try:
                damaged = bool(entry.sha256) and sha256_file(local) != entry.sha256
            except OSError:
                damaged = True
        rows.append(
            {
                "name": entry.name,
                "scale": entry.scale,
                "arch": entry.arch,
                "params": params,
                "size_mb": round(local.stat().st_size / 1e6, 1) if local else None,
                "available": local is not None and not damaged,
                "path": str(local) if local else None,
                "cached": cached is not None,
                "damaged": damaged,
                "source": "bundled" if bundled else (f"hub:{hub}" if hub else "not available yet"),
                "hub": hub,
                "sha256": entry.sha256,
                "default": entry.name == DEFAULT_MODEL,
                "description": entry.description,
            }
        )
    return rows


def _cached_file(entry: ModelEntry) -> Path | None:
    from .hub import HubRef, cached_path

    return cached_path(HubRef(entry.hub_repo or "", entry.file, entry.hub_revision or "main"))
