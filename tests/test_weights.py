"""Weights files: round trip, and every way a bad file must be refused in one line."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import stat

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save as serialize

from srgan_cli import models, weights
from srgan_cli.cli import main
from srgan_cli.config import GeneratorConfig
from srgan_cli.errors import SrganError
from srgan_cli.hub import resolve_weights
from srgan_cli.models import build_generator, generator_state_shapes
from srgan_cli.weights import (
    bundled_dir,
    count_file_parameters,
    describe_entries,
    load_generator,
    read_metadata,
    save_generator,
    save_state,
)

TINY = GeneratorConfig(num_blocks=1, num_features=8)


def _randomize(model: torch.nn.Module) -> torch.nn.Module:
    """Random values in every tensor, BN running stats included, so a round trip proves something."""
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + (0.5 if name.endswith("running_var") else 0.0))
    return model


@pytest.fixture()
def tiny_file(tmp_path):
    model = _randomize(build_generator(TINY))
    return save_generator(tmp_path / "tiny.safetensors", model, TINY, metadata={"name": "tiny"}), model


def _one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize(
    "config",
    [TINY, GeneratorConfig(arch="rrdb", num_blocks=1, num_features=8, growth_channels=4, batch_norm=False)],
)
def test_round_trip_is_exact(tmp_path, config):
    model = _randomize(build_generator(config)).eval()
    path = save_generator(tmp_path / "m.safetensors", model, config, metadata={"note": "x", "epochs": 3})
    loaded, loaded_config, meta = load_generator(path)
    assert loaded_config == config
    assert meta["note"] == "x" and json.loads(meta["epochs"]) == 3
    assert not loaded.training
    reference = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    got = loaded.state_dict()
    for key, value in reference.items():
        assert torch.equal(got[key], value), key
    x = torch.rand(1, 3, 6, 5)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_count_file_parameters_matches_the_model(tiny_file):
    path, model = tiny_file
    assert count_file_parameters(path) == sum(p.numel() for p in model.parameters())


def test_saved_file_permissions_follow_umask(tmp_path):
    model = build_generator(TINY)
    old = os.umask(0o022)
    try:
        a = save_generator(tmp_path / "a.safetensors", model, TINY)
        os.umask(0o002)
        b = save_generator(tmp_path / "b.safetensors", model, TINY)
    finally:
        os.umask(old)
    assert stat.S_IMODE(a.stat().st_mode) == 0o644
    assert stat.S_IMODE(b.stat().st_mode) == 0o664


def test_overwrite_false_keeps_the_existing_file(tiny_file):
    path, _ = tiny_file
    before = path.read_bytes()
    with pytest.raises(SrganError) as info:
        save_generator(path, build_generator(TINY), TINY, overwrite=False)
    assert "exists" in _one_line(info)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name], "no temporary file may be left behind"


def test_weights_too_large_for_the_file_size_limit_say_so(tmp_path, monkeypatch):
    """Weights saved under `ulimit -f` (or onto FAT32, past 4 GiB) failed with "File too large" alone."""

    def too_large(*args, **kwargs):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(weights, "atomic_path", too_large)
    with pytest.raises(SrganError) as info:
        save_generator(tmp_path / "m.safetensors", build_generator(TINY), TINY)
    assert "cannot write weights (file too large: over the file-size limit that ulimit -f sets" in _one_line(info)


def test_save_refuses_pickle_names_and_missing_folders(tmp_path):
    model = build_generator(TINY)
    with pytest.raises(SrganError):
        save_generator(tmp_path / "m.pt", model, TINY)
    with pytest.raises(SrganError) as info:
        save_generator(tmp_path / "nope" / "m.safetensors", model, TINY)
    assert "does not exist" in _one_line(info)


def test_truncated_file_is_refused(tiny_file):
    path, _ = tiny_file
    data = path.read_bytes()
    for cut in (4, 40, len(data) - 7):
        path.write_bytes(data[:cut])
        with pytest.raises(SrganError) as info:
            load_generator(path)
        assert str(path) in _one_line(info)


def test_tampered_header_is_refused(tiny_file):
    path, _ = tiny_file
    data = bytearray(path.read_bytes())
    header_len = int.from_bytes(data[:8], "little")
    start = data.index(b'"shape":[', 8, 8 + header_len) + len(b'"shape":[')
    data[start] = ord("9")  # a shape that no longer matches the data offsets
    path.write_bytes(bytes(data))
    with pytest.raises(SrganError) as info:
        load_generator(path)
    assert str(path) in _one_line(info)


def test_tampered_bundled_file_fails_its_sha256(tmp_path, monkeypatch, tiny_file):
    path, _ = tiny_file
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    data = bytearray(path.read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    data[-3] ^= 0x01  # one bit in the tensor data: loads fine, but is not the published file
    (bundled / "tiny_x4.safetensors").write_bytes(bytes(data))
    monkeypatch.setattr(weights, "bundled_dir", lambda: bundled)
    entry = weights.ModelEntry("tiny_x4", "tiny_x4.safetensors", 4, "srresnet", "test", sha256=digest)
    monkeypatch.setitem(weights.MODELS, "tiny_x4", entry)
    with pytest.raises(SrganError) as info:
        resolve_weights("tiny_x4")
    assert "sha256" in _one_line(info)
    (bundled / "tiny_x4.safetensors").write_bytes(path.read_bytes())
    assert resolve_weights("tiny_x4") == bundled / "tiny_x4.safetensors"


def test_config_that_does_not_match_the_shapes_is_refused(tmp_path):
    model = build_generator(TINY)
    wrong = GeneratorConfig(num_blocks=1, num_features=16)
    path = save_state(tmp_path / "m.safetensors", model.state_dict(), wrong)
    with pytest.raises(SrganError) as info:
        load_generator(path)
    assert "do not match their config" in _one_line(info)
    deeper = GeneratorConfig(num_blocks=2, num_features=8)
    path = save_state(tmp_path / "n.safetensors", model.state_dict(), deeper, overwrite=True)
    with pytest.raises(SrganError, match="num_blocks 2 but the file holds weights for 1 block$"):
        load_generator(path)


def test_file_without_srgan_config_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    path.write_bytes(serialize({"w": torch.zeros(2)}, metadata={"format": "pt"}))
    with pytest.raises(SrganError) as info:
        load_generator(path)
    assert "not an srgan generator" in _one_line(info)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused(tmp_path, bad):
    model = build_generator(TINY)
    with torch.no_grad():
        model.tail.weight[0, 0, 0, 0] = bad
    path = save_generator(tmp_path / "m.safetensors", model, TINY)
    with pytest.raises(SrganError) as info:
        load_generator(path)
    assert "tail.weight" in _one_line(info)


@pytest.fixture()
def no_unpickling(monkeypatch):
    """Fail the test if anything tries to unpickle."""

    def forbidden(*args, **kwargs):
        pytest.fail("something tried to unpickle a file")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)


def test_pickles_are_never_unpickled(tmp_path, no_unpickling):
    model = build_generator(TINY)
    pt = tmp_path / "model.pt"
    torch.save({"state_dict": model.state_dict(), "config": TINY.to_dict()}, pt)
    disguised = tmp_path / "model.safetensors"
    disguised.write_bytes(pt.read_bytes())

    for suffix in (".pt", ".pth", ".ckpt", ".pkl", ".bin"):
        path = pt.with_suffix(suffix)
        path.write_bytes(pt.read_bytes())
        with pytest.raises(SrganError) as info:
            resolve_weights(path)
        assert "pickle" in _one_line(info) and "safetensors" in str(info.value)
        with pytest.raises(SrganError):
            load_generator(path)
    with pytest.raises(SrganError) as info:
        load_generator(disguised)
    assert "not a valid safetensors file" in _one_line(info)
    with pytest.raises(SrganError):
        read_metadata(disguised)


def test_named_model_without_file_is_not_random_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(weights, "bundled_dir", lambda: tmp_path / "empty")
    built = []
    monkeypatch.setattr(weights, "build_generator", lambda *a, **k: built.append(a) or pytest.fail("built a model"))
    for name in weights.MODELS:
        entry = weights.MODELS[name]
        monkeypatch.setitem(weights.MODELS, name, weights.ModelEntry(entry.name, entry.file, 4, entry.arch, "x"))
        with pytest.raises(SrganError) as info:
            resolve_weights(name)
        message = _one_line(info)
        assert f"model '{name}' is not bundled in this install and has no hub source yet" in message
    assert built == []


def test_describe_entries_rows(tmp_path, monkeypatch, tiny_file):
    path, model = tiny_file
    monkeypatch.setattr(weights, "bundled_dir", lambda: path.parent)
    entry = weights.ModelEntry("tiny_x4", path.name, 4, "srresnet", "a tiny test model")
    monkeypatch.setitem(weights.MODELS, "tiny_x4", entry)
    rows = {row["name"]: row for row in describe_entries()}
    row = rows["tiny_x4"]
    assert row["available"] and row["source"] == "bundled" and row["hub"] is None and not row["cached"]
    assert row["params"] == sum(p.numel() for p in model.parameters())
    assert row["size_mb"] == round(path.stat().st_size / 1e6, 1)
    assert sum(r["default"] for r in rows.values()) == 1
    assert rows[weights.DEFAULT_MODEL]["default"]


@pytest.mark.parametrize(
    "config",
    [TINY, GeneratorConfig(arch="rrdb", num_blocks=2, num_features=8, growth_channels=4, batch_norm=False)],
)
def test_loaded_model_is_complete_and_trainable(tmp_path, config):
    """Loading skips random init, so every tensor must come from the file (or be a zeroed counter)."""
    model = _randomize(build_generator(config))
    path = save_generator(tmp_path / "m.safetensors", model, config)
    loaded, _, _ = load_generator(path)
    reference = model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert tensor.device.type == "cpu", name
        if name.endswith("num_batches_tracked"):
            assert tensor.item() == 0
        else:
            assert torch.equal(tensor, reference[name]), name
    assert all(p.requires_grad for p in loaded.parameters())
    loaded.train()
    loss = loaded(torch.rand(2, 3, 4, 4)).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in loaded.parameters())


# --- the config in a file's metadata is checked against its header before anything is built ---

TINY_RRDB = GeneratorConfig(arch="rrdb", num_blocks=1, num_features=8, growth_channels=4, batch_norm=False)


@pytest.mark.parametrize(
    "config",
    [
        TINY,
        GeneratorConfig(num_blocks=3, num_features=4, batch_norm=False, scale=8, in_channels=1),
        GeneratorConfig(num_blocks=2, num_features=6, scale=2),
        TINY_RRDB,
        GeneratorConfig(arch="rrdb", num_blocks=2, num_features=6, growth_channels=5, batch_norm=False, scale=8),
        GeneratorConfig(arch="rrdb", num_blocks=1, num_features=4, growth_channels=3, batch_norm=False, in_channels=1),
    ],
)
def test_generator_state_shapes_equal_the_built_model(config):
    built = {k: tuple(v.shape) for k, v in build_generator(config).state_dict().items()}
    assert generator_state_shapes(config) == {k: v for k, v in built.items() if not k.endswith("num_batches_tracked")}


def _with_metadata(src, dst, config=None, **meta):
    """A copy of ``src`` whose metadata has ``meta`` set (None: removed) and its config JSON updated
    with ``config`` (a dict), or replaced by it (a string); the header is rewritten as bytes, the
    tensor data is copied untouched."""
    data = src.read_bytes()
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    metadata = header["__metadata__"]
    if isinstance(config, str):
        metadata["config"] = config
    elif config:
        metadata["config"] = json.dumps({**json.loads(metadata["config"]), **config})
    for key, value in meta.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    dst.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + size :])
    return dst


@pytest.fixture()
def nothing_built_or_read(monkeypatch):
    """Fail the test if a generator is built or tensor data is read: a refusal must come from the header."""

    def built(*args, **kwargs):
        raise AssertionError("a generator was built before the file's config was checked")

    def read(*args, **kwargs):
        raise AssertionError("tensor data was read before the file's config was checked")

    for cls in (models.SRResNet, models.RRDBNet):
        monkeypatch.setattr(cls, "__init__", built)
    monkeypatch.setattr(weights, "load_file", read)


@pytest.mark.parametrize("blocks", [10**9, 10**5])
def test_absurd_num_blocks_in_a_real_file_is_refused_from_the_header(tmp_path, blocks, nothing_built_or_read):
    path = _with_metadata(
        bundled_dir() / "srresnet_x4.safetensors", tmp_path / "huge.safetensors", config={"num_blocks": blocks}
    )
    with pytest.raises(SrganError) as info:
        load_generator(path)
    assert _one_line(info) == (
        f"{path}: weights do not match their config: "
        f"it says num_blocks {blocks} but the file holds weights for 16 blocks"
    )


@pytest.mark.parametrize(
    "source, config, expected",
    [
        ("srresnet", {"num_blocks": 10**5}, "it says num_blocks 100000 but the file holds weights for 1 block"),
        ("srresnet", {"num_features": 10**6}, "it says num_features 1000000 but its first conv (head.0.weight) has 8"),
        ("srresnet", {"in_channels": 1}, "it says in_channels 1 but its first conv (head.0.weight) has 3 input"),
        ("srresnet", {"scale": 8}, "it says scale 8 but the file holds 2 x2 upsampling stages (x4)"),
        ("srresnet", {"batch_norm": False}, "it says batch_norm false but the file holds BatchNorm weights"),
        ("srresnet", {"arch": "rrdb", "batch_norm": False}, "it says arch rrdb but the file holds srresnet weights"),
        ("rrdb", {"arch": "srresnet"}, "it says arch srresnet but the file holds rrdb weights"),
        ("rrdb", {"growth_channels": 10**6}, "it says growth_channels 1000000 but body.0.blocks.0.convs.0.weight"),
        ("rrdb", {"num_features": 2**40}, "it says num_features 1099511627776 but its first conv (head.weight) has 8"),
        ("rrdb", {"num_blocks": 7}, "it says num_blocks 7 but the file holds weights for 1 block"),
        ("rrdb", {"scale": 2}, "it says scale 2 but the file holds 2 x2 upsampling stages (x4)"),
    ],
)
def test_config_that_contradicts_the_header_is_refused_before_building(
    tmp_path, source, config, expected, nothing_built_or_read
):
    good = TINY if source == "srresnet" else TINY_RRDB
    state = {k: torch.zeros(shape) for k, shape in generator_state_shapes(good).items()}
    src = save_state(tmp_path / "good.safetensors", state, good)
    path = _with_metadata(src, tmp_path / "bad.safetensors", config=config)
    with pytest.raises(SrganError) as info:
        load_generator(path)
    message = _one_line(info)
    assert message.startswith(f"{path}: weights do not match their config: ")
    assert expected in message


def test_batch_norm_claimed_but_absent_is_refused(tmp_path, nothing_built_or_read):
    plain = GeneratorConfig(num_blocks=1, num_features=8, batch_norm=False)
    state = {k: torch.zeros(shape) for k, shape in generator_state_shapes(plain).items()}
    path = save_state(tmp_path / "m.safetensors", state, GeneratorConfig(num_blocks=1, num_features=8))
    with pytest.raises(SrganError) as info:
        load_generator(path)
    assert _one_line(info).endswith("it says batch_norm true but the file holds no BatchNorm weights")


def test_block_names_without_their_weights_are_refused_before_building(tmp_path, nothing_built_or_read):
    """Block indices alone prove nothing: 300 names holding one number each, with a matching
    num_blocks, must not make srgan build 300 full blocks."""
    state = {k: torch.zeros(shape) for k, shape in generator_state_shapes(TINY).items()}
    many = dict(state, **{f"body.{i}.act.weight": torch.zeros(8) for i in range(1, 300)})
    path = save_state(tmp_path / "many.safetensors", many, GeneratorConfig(num_blocks=300, num_features=8))
    with pytest.raises(SrganError) as info:
        load_generator(path)
    assert _one_line(info) == f"{path}: its config says num_blocks 300; srgan loads at most {weights.MAX_BLOCKS}"
    some = dict(state, **{f"body.{i}.act.weight": torch.zeros(8) for i in range(1, 10)})
    path = save_state(tmp_path / "some.safetensors", some, GeneratorConfig(num_blocks=10, num_features=8))
    with pytest.raises(SrganError) as info:
        load_generator(path)
    assert "weights do not match their config: 108 missing (e.g. body.1.bn1.bias) tensors" in _one_line(info)


def test_sizes_are_bounded_even_when_the_file_matches(tmp_path, monkeypatch):
    deep = GeneratorConfig(num_blocks=weights.MAX_BLOCKS + 1, num_features=1, batch_norm=False)
    state = {k: torch.zeros(shape) for k, shape in generator_state_shapes(deep).items()}
    path = save_state(tmp_path / "deep.safetensors", state, deep)
    with pytest.raises(SrganError) as info:
        load_generator(path)
    assert _one_line(info) == f"{path}: its config says num_blocks 257; srgan loads at most {weights.MAX_BLOCKS}"
    path = save_generator(tmp_path / "tiny.safetensors", build_generator(TINY_RRDB), TINY_RRDB)
    monkeypatch.setattr(weights, "MAX_FEATURES", 4)
    with pytest.raises(SrganError, match="its config says num_features 8; srgan loads at most 4$"):
        load_generator(path)
    monkeypatch.setattr(weights, "MAX_FEATURES", 8)
    monkeypatch.setattr(weights, "MAX_GROWTH", 3)
    with pytest.raises(SrganError, match="its config says growth_channels 4; srgan loads at most 3$"):
        load_generator(path)
    monkeypatch.setattr(weights, "MAX_GROWTH", 4)
    assert load_generator(path)[1] == TINY_RRDB


def test_config_with_a_number_too_long_to_parse_is_one_line(tiny_file):
    path, _ = tiny_file
    bad = _with_metadata(path, path.parent / "long.safetensors", config='{"num_blocks": ' + "9" * 5000 + "}")
    with pytest.raises(SrganError) as info:
        load_generator(bad)
    assert _one_line(info).startswith(f"{bad}: generator config is not valid (")


def test_upscale_with_an_absurd_file_is_a_one_line_error(tmp_path, nothing_built_or_read):
    path = _with_metadata(
        bundled_dir() / "srresnet_x4.safetensors", tmp_path / "huge.safetensors", config={"num_blocks": 10**9}
    )
    image = bundled_dir() / "examples" / "chelsea.png"
    result = CliRunner().invoke(main, ["upscale", str(image), "-o", str(tmp_path / "o.png"), "-m", str(path)])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [
        f"error: {path}: weights do not match their config: it says num_blocks 1000000000 "
        "but the file holds weights for 16 blocks"
    ]
    assert not (tmp_path / "o.png").exists()


# --- format_version ---


def test_newer_format_version_is_refused(tiny_file):
    path, _ = tiny_file
    newer = _with_metadata(path, path.parent / "newer.safetensors", format_version="99")
    with pytest.raises(SrganError) as info:
        load_generator(newer)
    assert _one_line(info) == (
        f"{newer}: made by a newer srgan (weights format_version 99, this srgan reads 1); upgrade srgan to load it"
    )


@pytest.mark.parametrize("version", ["0", "abc", "1.5", "", "-2", pytest.param("9" * 5000, id="5000-digits")])
def test_unknown_format_version_is_refused(tiny_file, version):
    path, _ = tiny_file
    odd = _with_metadata(path, path.parent / "odd.safetensors", format_version=version)
    with pytest.raises(SrganError) as info:
        load_generator(odd)
    message = _one_line(info)
    assert message.startswith(f"{odd}: unknown weights format_version ") and len(message) < 300


def test_files_without_format_version_still_load(tiny_file):
    path, model = tiny_file
    assert weights.FORMAT_VERSION == "1" and read_metadata(path)["format_version"] == "1"
    old = _with_metadata(path, path.parent / "old.safetensors", format_version=None)
    assert "format_version" not in read_metadata(old)
    loaded, config, _ = load_generator(old)
    assert config == TINY
    assert torch.equal(loaded.tail.weight, model.tail.weight)
