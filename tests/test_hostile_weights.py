"""Weights files that are damaged or hostile and passed every earlier check: each is refused with one
line naming the file (never a traceback, a hang, or a black image written with exit 0)."""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import save as serialize

from srgan_cli import hub
from srgan_cli.cli import main
from srgan_cli.config import GeneratorConfig
from srgan_cli.errors import SrganError
from srgan_cli.hub import looks_like_hub_ref, resolve_weights, weights_sha256
from srgan_cli.interpolate import interpolate_files
from srgan_cli.models import build_generator
from srgan_cli.weights import load_generator, read_metadata, read_shapes, save_generator, save_state

TINY = GeneratorConfig(num_blocks=1, num_features=4)
RRDB = GeneratorConfig(arch="rrdb", num_blocks=1, num_features=4, growth_channels=2, batch_norm=False)
NO_USER = "~srgan-no-such-user-7f3a"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _write(path: Path, state: dict[str, torch.Tensor], config: GeneratorConfig, config_json: str | None = None, **meta):
    """A weights file as another tool would write it: any dtype, any values, any config text."""
    header = {"format": "srgan-generator", "format_version": "1", "config": config_json or config.to_json(), **meta}
    tensors = {k: v.contiguous() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path.write_bytes(serialize(tensors, metadata=header))
    return path


def _state(config: GeneratorConfig = TINY) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in build_generator(config).state_dict().items()}


def _one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert message and "\n" not in message
    return message


@pytest.fixture()
def image(tmp_path) -> Path:
    path = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).random((12, 12, 3)) * 255).astype("uint8")).save(path)
    return path


def _upscale_error(image: Path, model: str | Path) -> str:
    """The one stderr line of a refused ``srgan upscale`` (exit 1, no image written)."""
    out = image.parent / "out.png"
    result = CliRunner().invoke(main, ["upscale", str(image), "-o", str(out), "--model", str(model)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr  # not a traceback
    assert not out.exists()
    return lines[0]


# --- 1. dtypes srgan does not read ---


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2, torch.int32])
def test_tensors_of_another_dtype_are_refused_by_name(tmp_path, dtype):
    """float8 crashed every command (aminmax has no CPU kernel for it: NotImplementedError)."""
    path = _write(tmp_path / "f8.safetensors", {k: v.to(dtype) for k, v in _state().items()}, TINY)
    with pytest.raises(SrganError) as info:
        load_generator(path)
    name = str(dtype).removeprefix("torch.")
    assert _one_line(info) == (
        f"{path}: tensor head.0.weight is {name}; srgan reads float16, bfloat16, float32 or float64 weights"
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_dtypes_still_load(tmp_path, dtype):
    path = _write(tmp_path / "m.safetensors", {k: v.to(dtype) for k, v in _state().items()}, TINY)
    model, _, _ = load_generator(path)
    assert all(torch.isfinite(t).all() for t in model.state_dict().values() if t.is_floating_point())


def test_upscale_with_float8_weights_is_one_line(tmp_path, image):
    path = _write(tmp_path / "f8.safetensors", {k: v.to(torch.float8_e4m3fn) for k, v in _state().items()}, TINY)
    assert "is float8_e4m3fn; srgan reads" in _upscale_error(image, path)


# --- 2. ~user of a user who does not exist ---


@pytest.mark.parametrize("text", [f"{NO_USER}/x.safetensors", f"{NO_USER}/repo", NO_USER])
def test_home_of_an_unknown_user_is_not_a_traceback(text):
    """Path.expanduser raised RuntimeError("Could not determine home directory")."""
    assert not looks_like_hub_ref(text)
    with pytest.raises(SrganError) as info:
        resolve_weights(text)
    assert NO_USER in _one_line(info)


def test_upscale_with_an_unknown_users_path_is_one_line(image):
    line = _upscale_error(image, f"{NO_USER}/x.safetensors")
    assert line == f"error: {NO_USER}/x.safetensors: no such weights file"


def test_unknown_users_paths_elsewhere_are_one_line(tmp_path, image, monkeypatch):
    """Path.expanduser raised for a user who does not exist: a folder so named in the current folder
    (the model's display name), bench's --set and --data-dir, and train's --data."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / NO_USER).mkdir()  # "~srgan-no-such-user-7f3a/x.safetensors" relative to here
    line = _upscale_error(image, f"{NO_USER}/x.safetensors")
    assert line == f"error: {NO_USER}/x.safetensors: no such weights file"
    runs = [
        ["bench", "--set", f"{NO_USER}/x", "--model", "bicubic", "--no-lpips"],
        ["bench", "--set", "set5", "--data-dir", NO_USER, "--model", "bicubic", "--no-lpips"],
        ["train", "--data", f"{NO_USER}/x", "--out", str(tmp_path / "run"), "--steps", "1"],
    ]
    for args in runs:
        result = CliRunner().invoke(main, args)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code in (1, 2) and len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        assert NO_USER in lines[0]


# --- 3. finite-looking damage that made an all-NaN network ---


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e300, 0.0, -0.2, 10.5])
def test_res_scale_must_be_finite_and_at_most_10(value):
    with pytest.raises(SrganError) as info:
        GeneratorConfig.for_arch("rrdb", res_scale=value)
    assert _one_line(info) == f"res_scale must be a finite number in (0, 10], got {value!r}"


def test_res_scale_in_range_is_kept():
    assert GeneratorConfig.for_arch("rrdb", res_scale=10.0).res_scale == 10.0
    assert GeneratorConfig.from_json(json.dumps({"res_scale": 1})).res_scale == 1.0


@pytest.mark.parametrize("text", ["NaN", "Infinity", "1e300", "-1.0"])
def test_weights_with_a_damaged_res_scale_are_refused(tmp_path, image, text):
    config_json = RRDB.to_json().replace('"res_scale": 0.2', f'"res_scale": {text}')
    path = _write(tmp_path / "rrdb.safetensors", _state(RRDB), RRDB, config_json)
    with pytest.raises(SrganError) as info:
        load_generator(path)
    assert _one_line(info).startswith(f"{path}: res_scale must be a finite number in (0, 10], got ")
    assert "res_scale must be" in _upscale_error(image, path)  # was a black image, exit 0


def test_a_float_too_large_for_a_float_is_one_line(tmp_path):
    """A 400-digit integer for a float: float() raised OverflowError (a traceback)."""
    config_json = RRDB.to_json().replace('"res_scale": 0.2', f'"res_scale": {10**400}')
    path = _write(tmp_path / "rrdb.safetensors", _state(RRDB), RRDB, config_json)
    with pytest.raises(SrganError) as info:
        load_generator(path)
    assert _one_line(info) == f"{path}: generator config: res_scale is a number too large for a float"


def test_a_run_folder_as_model_names_its_weights_file(tmp_path, image):
    """`srgan train --out runs/a` then `-m runs/a`: "is a folder" said nothing of the file to give."""
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    assert _upscale_error(image, run).endswith(
        ": is a folder; give a .safetensors weights file, a model name or a Hub reference"
    )
    save_generator(run / "generator.safetensors", build_generator(TINY), TINY)
    assert (
        _upscale_error(image, run)
        == f"error: {run}: is a folder; give the weights file in it: {run / 'generator.safetensors'}"
    )


def test_a_config_nested_thousands_deep_is_one_line(tmp_path, image):
    """json.loads raised RecursionError, neither a JSONDecodeError nor a ValueError: a traceback from
    upscale, bench, train --init and interpolate."""
    path = _write(tmp_path / "deep.safetensors", _state(), TINY, "[" * 5000 + "]" * 5000)
    with pytest.raises(SrganError) as info:
        load_generator(path)
    assert _one_line(info) == f"{path}: generator config is not valid JSON (nested too deeply)"
    assert "nested too deeply" in _upscale_error(image, path)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "_orig_mod.module."])
def test_weights_of_a_wrapped_model_are_written_and_read_with_the_generators_names(tmp_path, image, prefix):
    """save_generator of a DDP- or torch.compile-wrapped model wrote 'module.head.0.weight' names, which every
    command refused as holding "weights for 0 blocks"; files written so are read too."""
    state = _state()
    wrapped = {prefix + k: v for k, v in state.items()}
    saved = save_state(tmp_path / "saved.safetensors", wrapped, TINY)
    assert set(read_shapes(saved)) == {k for k in state if not k.endswith("num_batches_tracked")}
    old = _write(tmp_path / "old.safetensors", wrapped, TINY)  # as the earlier save_generator wrote it
    model, _, _ = load_generator(old)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    result = CliRunner().invoke(main, ["upscale", str(image), "-o", str(tmp_path / "o.png"), "-m", str(old)])
    assert result.exit_code == 0, result.output


def test_models_info_json_of_a_nan_config_is_json(tmp_path):
    """``--json`` printed the parsed config's NaN bare, which no strict JSON reader takes."""
    config_json = RRDB.to_json().replace('"res_scale": 0.2', '"res_scale": NaN')
    path = _write(tmp_path / "rrdb.safetensors", _state(RRDB), RRDB, config_json, interpolation='{"alpha": 1e400}')
    result = CliRunner().invoke(main, ["models", "--info", str(path), "--json"])
    assert result.exit_code == 0, result.output

    def refuse(name):
        raise AssertionError(f"bare {name} in the JSON")

    record = json.loads(result.stdout, parse_constant=refuse)
    assert record["metadata"]["config"] == config_json  # shown as stored
    assert record["metadata"]["interpolation"] == '{"alpha": 1e400}'


def test_float64_values_beyond_float32_are_refused(tmp_path, image):
    """1e300 is finite as float64 and infinity once loaded into the float32 network."""
    state = {k: v.double() for k, v in _state().items()}
    state["tail.weight"][0, 0, 0, 0] = -1e300
    path = _write(tmp_path / "big.safetensors", state, TINY)
    with pytest.raises(SrganError) as info:
        load_generator(path)
    assert (
        _one_line(info) == f"{path}: tensor tail.weight holds -1e+300, beyond the range of float32; the file is corrupt"
    )
    assert "beyond the range of float32" in _upscale_error(image, path)


def test_float64_at_the_edge_of_float32_loads(tmp_path):
    state = {k: v.double() for k, v in _state().items()}
    state["tail.weight"][0, 0, 0, 0] = float(torch.finfo(torch.float32).max)
    model, _, _ = load_generator(_write(tmp_path / "edge.safetensors", state, TINY))
    assert model.tail.weight[0, 0, 0, 0] == torch.finfo(torch.float32).max


def test_interpolate_refuses_a_file_beyond_float32(tmp_path):
    """The blend was written (exit 0) and could not be loaded afterwards."""
    good = save_generator(tmp_path / "good.safetensors", build_generator(TINY), TINY)
    state = {k: v.double() for k, v in _state().items()}
    state["tail.weight"][0, 0, 0, 0] = 1e300
    big = _write(tmp_path / "big.safetensors", state, TINY)
    out = tmp_path / "blend.safetensors"
    with pytest.raises(SrganError, match="beyond the range of float32"):
        interpolate_files(big, good, 0.5, out)
    assert not out.exists()
    result = CliRunner().invoke(main, ["interpolate", str(good), str(big), "--alpha", "0.5", "-o", str(out)])
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {big}: tensor tail.weight"), result.output
    assert not out.exists()


def test_a_negative_batch_norm_variance_is_refused(tmp_path, image):
    """Folding the BatchNorm takes its square root: NaN in every conv weight after it."""
    state = _state()
    state["body.0.bn1.running_var"][1] = -0.5
    path = _write(tmp_path / "negvar.safetensors", state, TINY)
    with pytest.raises(SrganError) as info:
        load_generator(path)
    assert _one_line(info) == (
        f"{path}: tensor body.0.bn1.running_var holds a negative variance (-0.5); the file is corrupt"
    )
    assert "negative variance" in _upscale_error(image, path)


# --- 4. a file that may not be read ---


@pytest.fixture()
def locked(tmp_path, monkeypatch) -> Path:
    """A weights file this process may not read: mode 000, or (root reads anything) an open()
    and os.open() that refuse it as the kernel would."""
    path = save_generator(tmp_path / "locked.safetensors", build_generator(TINY), TINY)
    if not IS_ROOT:
        path.chmod(0)
        yield path
        path.chmod(0o644)
        return
    real_open, real_os_open = open, os.open

    def refused(p) -> bool:
        return isinstance(p, (str, os.PathLike)) and os.path.abspath(os.fspath(p)) == str(path)

    def fake_open(p, *a, **k):
        if refused(p):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_open(p, *a, **k)

    def fake_os_open(p, *a, **k):
        if refused(p):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_os_open(p, *a, **k)

    monkeypatch.setattr("builtins.open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    yield path


def test_an_unreadable_file_says_so(locked):
    """The safetensors library called it "not a valid safetensors file (No such file or directory)"."""
    for call in (read_metadata, load_generator, resolve_weights):
        with pytest.raises(SrganError) as info:
            call(locked)
        assert _one_line(info) == f"{locked}: cannot read the weights file (Permission denied)"


def test_hashing_an_unreadable_file_is_one_line(locked):
    """upscale and bench hash the file they resolved: sha256_file's PermissionError was a traceback."""
    with pytest.raises(SrganError) as info:
        weights_sha256(str(locked), locked)
    assert _one_line(info) == f"{locked}: cannot read the weights file (Permission denied)"


@pytest.mark.parametrize("command", [["upscale", "IMAGE", "-o", "OUT", "--model"], ["models", "--info"]])
def test_cli_with_an_unreadable_file_is_one_line(locked, image, command):
    args = [str(image) if a == "IMAGE" else str(image.parent / "o.png") if a == "OUT" else a for a in command]
    result = CliRunner().invoke(main, [*args, str(locked)])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [f"error: {locked}: cannot read the weights file (Permission denied)"]


# --- 5. metadata shown on a terminal ---


def test_models_info_shows_metadata_escaped(tmp_path):
    """An escape sequence in a value cleared the screen and set the window title; a newline broke the layout."""
    path = _write(tmp_path / "esc.safetensors", _state(), TINY, name="\x1b[2J\x1b]0;pwned\x07x", **{"k\x1bey": "a\nb"})
    result = CliRunner().invoke(main, ["models", "--info", str(path)])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    lines = result.stdout.splitlines()
    assert any(line.split() == ["name", "\\x1b[2J\\x1b]0;pwned\\x07x"] for line in lines), result.stdout
    assert any(line.split() == ["k\\x1bey", "a\\nb"] for line in lines), result.stdout
    as_json = CliRunner().invoke(main, ["models", "--info", str(path), "--json"])
    record = json.loads(as_json.stdout)  # the values as stored, escaped by JSON itself
    assert record["metadata"]["name"] == "\x1b[2J\x1b]0;pwned\x07x" and record["metadata"]["k\x1bey"] == "a\nb"
    assert "\x1b" not in as_json.stdout


# --- 6. a FIFO named as the weights ---


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_fifo_is_not_a_regular_file_and_is_never_opened(tmp_path, image, without_blocking):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    expected = f"{fifo}: not a regular file (a FIFO, socket or device); give a .safetensors weights file"
    for call in (read_metadata, load_generator, resolve_weights, lambda p: resolve_weights(str(p))):
        with pytest.raises(SrganError) as info:
            without_blocking(lambda call=call: call(fifo), fifo)
        assert _one_line(info) == expected  # was "no such weights file"
    assert without_blocking(lambda: _upscale_error(image, fifo), fifo) == f"error: {expected}"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_fifo_named_like_a_hub_ref_is_a_local_file(tmp_path, monkeypatch, without_blocking):
    """A local path that exists is never a Hub reference, also when it is no regular file."""
    monkeypatch.setattr(hub, "download", lambda *a, **k: pytest.fail("no download for a local path"))
    (tmp_path / "acme").mkdir()
    os.mkfifo(tmp_path / "acme" / "srgan")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SrganError) as info:
        without_blocking(lambda: resolve_weights("acme/srgan"), tmp_path / "acme" / "srgan")
    assert _one_line(info).startswith("acme/srgan: not a regular file")  # was "unknown model 'acme/srgan'"
