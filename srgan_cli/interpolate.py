"""Network interpolation (Wang et al. 2018, ESRGAN section 3.4): blend two generators of the
same architecture parameter by parameter, ``(1 - alpha) * A + alpha * B``.

With A a PSNR-oriented model (SRResNet/MSE) and B its GAN fine-tune (SRGAN), alpha trades
smoothness for detail without retraining. Both networks must have the same config, so every
tensor has a counterpart of the same shape.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from .config import GeneratorConfig
from .errors import SrganError
from .weights import generator_config_of, load_generator, read_metadata, save_state, st_path


def interpolate_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * a + alpha * b`` for every floating tensor (BatchNorm running stats too).

    ``alpha == 0`` returns ``a``'s tensors and ``alpha == 1`` ``b``'s, exactly. Non-floating
    tensors (counters) must be equal and are copied. Keys and shapes must match.
    """
    alpha = _check_alpha(alpha)
    missing = sorted(set(a) ^ set(b))
    if missing:
        raise SrganError(f"the two networks have different tensors (e.g. {missing[0]}); they must share one config")
    out: dict[str, torch.Tensor] = {}
    for key, ta in a.items():
        tb = b[key]
        if ta.shape != tb.shape:
            raise SrganError(
                f"tensor {key} has shape {tuple(ta.shape)} in one network and {tuple(tb.shape)} in the other"
            )
        if not (ta.is_floating_point() and tb.is_floating_point()):
            if not torch.equal(ta, tb):
                raise SrganError(f"non-floating tensor {key} differs between the two networks; cannot blend it")
            out[key] = ta.clone()
        elif alpha == 0.0:
            out[key] = ta.clone()
        elif alpha == 1.0:
            out[key] = tb.clone()
        else:
            # Blend in float32 or wider, then return to A's dtype.
            work = torch.promote_types(torch.promote_types(ta.dtype, tb.dtype), torch.float32)
            mixed = torch.lerp(ta.to(work), tb.to(work), alpha)
            out[key] = mixed.to(ta.dtype)
    return out


def config_difference(meta_a: dict[str, str], meta_b: dict[str, str]) -> str | None:
    """None when both weights files have the same generator config; else a short description."""
    try:
        ca = GeneratorConfig.from_json(meta_a.get("config", "")).to_dict()
        cb = GeneratorConfig.from_json(meta_b.get("config", "")).to_dict()
    except SrganError as exc:
        return f"a config cannot be read ({exc})"
    diffs = [f"{key} {ca[key]!r} vs {cb[key]!r}" for key in ca if ca[key] != cb[key]]
    return ", ".join(diffs) if diffs else None


def interpolate_files(
    a: Path,
    b: Path,
    alpha: float,
    out: Path,
    *,
    overwrite: bool = False,
    sources: tuple[str, str] | None = None,
) -> Path:
    """Write the blend of two weights files to ``out`` (atomically; never onto an input).

    The output's metadata records both parents (file, sha256, name, and ``sources``: what the
    user typed, e.g. a model name or Hub reference) and alpha, and keeps the training metadata
    both parents agree on (``stage``, the loss weights, ``data``...), so that the mean of two
    runs of one recipe (a "model soup", Wortsman et al. 2022) still says what it is. When both
    parents store the same floating dtype (e.g. fp16), the blend is stored in it too; otherwise
    in float32.
    """
    from .weights import sha256_file, stable_read

    alpha = _check_alpha(alpha)
    a, b, out = Path(a), Path(b), Path(out)
    for parent in (a, b):
        if out.exists() and out.resolve() == parent.resolve():
            raise SrganError(f"{out}: is one of the inputs; write the blend to another file")
    if out.exists() and not overwrite:
        raise SrganError(f"{out}: already exists; choose another name or pass --overwrite")
    meta_a, meta_b = read_metadata(a), read_metadata(b)
    for path, meta in ((a, meta_a), (b, meta_b)):  # what each file is, before how they differ
        generator_config_of(meta, path)
    diff = config_difference(meta_a, meta_b)
    if diff is not None:
        raise SrganError(f"{a} and {b} have different generator configs ({diff}); only the same network can be blended")
    # each file's weights, metadata and sha256 of one version of it (a live run's generator is replaced
    # at each checkpoint); the configs compared again, on what was loaded
    model_a, config, meta_a, sha_a = stable_read(a, lambda: (*load_generator(a), sha256_file(a)))
    model_b, config_b, meta_b, sha_b = stable_read(b, lambda: (*load_generator(b), sha256_file(b)))
    if config_b != config:
        raise SrganError(f"{a} and {b} have different generator configs; only the same network can be blended")
    state = interpolate_state(model_a.state_dict(), model_b.state_dict(), alpha)
    parents = [
        {"file": a.name, "sha256": sha_a, "name": meta_a.get("name", a.stem)},
        {"file": b.name, "sha256": sha_b, "name": meta_b.get("name", b.stem)},
    ]
    if sources is not None:
        parents[0]["source"], parents[1]["source"] = str(sources[0]), str(sources[1])
    stored = _stored_float_dtype(a)
    dtype = stored if stored is not None and stored == _stored_float_dtype(b) else None
    shared = {k: v for k, v in meta_a.items() if k not in _OWN_METADATA and meta_b.get(k) == v}
    metadata = {
        **shared,
        "name": out.stem,
        "interpolation": json.dumps({"alpha": alpha, "a": parents[0], "b": parents[1]}, sort_keys=True),
        "interpolation_alpha": repr(alpha),
    }
    return save_state(out, state, config, metadata=metadata, dtype=dtype, overwrite=overwrite)


# Metadata that describes one file rather than how it was trained: never carried into a blend. Its
# validation too: a blend of two files validated on one set at one step was not validated itself
# (it kept "val" and "val_step" of the parents with no score beside them).
_OWN_METADATA = frozenset(
    {"name", "format", "format_version", "config", "interpolation", "interpolation_alpha"}
    | {"val", "val_step", "val_psnr", "val_lpips"}
)

_DTYPES = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32, "F64": torch.float64}


def _stored_float_dtype(path: Path) -> torch.dtype | None:
    """The one floating dtype a weights file stores, or None if mixed or unknown."""
    from safetensors import safe_open

    found = set()
    with st_path(path) as name, safe_open(name, framework="pt") as fh:
        for key in fh.keys():
            found.add(_DTYPES.get(fh.get_slice(key).get_dtype()))
    return found.pop() if len(found) == 1 else None


def blend_generators(module_a: torch.nn.Module, module_b: torch.nn.Module, alpha: float) -> torch.nn.Module:
    """A new module: a copy of ``module_a`` holding the blend of both modules' state."""
    state = interpolate_state(module_a.state_dict(), module_b.state_dict(), alpha)
    blended = copy.deepcopy(module_a)
    blended.load_state_dict(state, strict=True)
    return blended


def parse_blend(text: str) -> tuple[str, float]:
    """``--blend B:0.8`` -> ``("B", 0.8)``; B is a name, path or Hub ref; alpha after the LAST colon."""
    text = str(text)
    head, sep, tail = text.rpartition(":")
    if not sep or not head:
        raise SrganError(f"--blend {text!r}: expected MODEL:ALPHA, e.g. srgan_x4:0.8 (alpha in [0, 1])")
    try:
        alpha = float(tail)
    except ValueError:
        raise SrganError(
            f"--blend {text!r}: {tail!r} is not a number; expected MODEL:ALPHA with alpha in [0, 1]"
        ) from None
    return head, _check_alpha(alpha, f"--blend {text!r}: ")


def _check_alpha(alpha: float, prefix: str = "") -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise SrganError(f"{prefix}alpha must be a number in [0, 1], got {alpha!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise SrganError(f"{prefix}alpha must be in [0, 1], got {alpha!r}")
    return value
