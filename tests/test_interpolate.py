"""Network interpolation: exact ends, the mean in the middle, clear refusals, the CLI."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from srgan_cli.cli import main
from srgan_cli.config import GeneratorConfig
from srgan_cli.errors import SrganError
from srgan_cli.interpolate import (
    blend_generators,
    config_difference,
    interpolate_files,
    interpolate_state,
    parse_blend,
)
from srgan_cli.models import build_generator
from srgan_cli.weights import load_generator, read_metadata, save_generator, sha256_file

TINY = GeneratorConfig(num_blocks=1, num_features=8)


def _random_model(config: GeneratorConfig = TINY, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_generator(config)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand_like(tensor) + (0.5 if name.endswith("running_var") else 0.0))
    return model.eval()


@pytest.fixture()
def pair(tmp_path):
    a, b = _random_model(seed=1), _random_model(seed=2)
    pa = save_generator(tmp_path / "a.safetensors", a, TINY, metadata={"name": "mse"})
    pb = save_generator(tmp_path / "b.safetensors", b, TINY, metadata={"name": "gan"})
    return a, b, pa, pb


def test_alpha_ends_are_exact_and_middle_is_the_mean():
    a, b = _random_model(seed=1).state_dict(), _random_model(seed=2).state_dict()
    at0, at1, mid = interpolate_state(a, b, 0.0), interpolate_state(a, b, 1.0), interpolate_state(a, b, 0.5)
    assert set(mid) == set(a)
    for key in a:
        assert torch.equal(at0[key], a[key]), key
        assert torch.equal(at1[key], b[key]), key
        if a[key].is_floating_point():
            assert torch.allclose(mid[key], (a[key] + b[key]) / 2, atol=1e-6), key
    # BatchNorm running statistics are blended too, not taken from one side.
    key = next(k for k in a if k.endswith("running_mean"))
    assert not torch.equal(mid[key], a[key]) and not torch.equal(mid[key], b[key])
    quarter = interpolate_state(a, b, 0.25)
    assert torch.allclose(quarter["tail.weight"], 0.75 * a["tail.weight"] + 0.25 * b["tail.weight"], atol=1e-6)


def test_interpolate_state_refuses_mismatches():
    a = _random_model().state_dict()
    b = _random_model(GeneratorConfig(num_blocks=1, num_features=16)).state_dict()
    with pytest.raises(SrganError, match="shape"):
        interpolate_state(a, b, 0.5)
    c = dict(a)
    c.pop("tail.bias")
    with pytest.raises(SrganError, match="different tensors"):
        interpolate_state(a, c, 0.5)
    d = dict(a, counter=torch.tensor(1))
    e = dict(a, counter=torch.tensor(2))
    with pytest.raises(SrganError, match="counter"):
        interpolate_state(d, e, 0.5)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(SrganError, match="alpha"):
            interpolate_state(a, a, bad)


def test_blend_generators_matches_the_state_blend():
    a, b = _random_model(seed=1), _random_model(seed=2)
    blended = blend_generators(a, b, 0.3)
    assert blended is not a and blended is not b
    expected = interpolate_state(a.state_dict(), b.state_dict(), 0.3)
    for key, value in blended.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert torch.equal(a.state_dict()["tail.weight"], _random_model(seed=1).state_dict()["tail.weight"])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("srgan_x4:0.8", ("srgan_x4", 0.8)),
        ("acme/w:gen.safetensors@v1:0.25", ("acme/w:gen.safetensors@v1", 0.25)),
        ("C:/models/b.safetensors:1", ("C:/models/b.safetensors", 1.0)),
        ("b.safetensors:0", ("b.safetensors", 0.0)),
    ],
)
def test_parse_blend(text, expected):
    assert parse_blend(text) == expected


@pytest.mark.parametrize("text", ["srgan_x4", "srgan_x4:", ":0.5", "srgan_x4:1.2", "srgan_x4:-0.1", "x:nan", "x:abc"])
def test_parse_blend_refuses(text):
    with pytest.raises(SrganError) as info:
        parse_blend(text)
    assert "\n" not in str(info.value)


def test_interpolate_files_records_parents(pair, tmp_path):
    a, b, pa, pb = pair
    out = interpolate_files(pa, pb, 0.5, tmp_path / "c.safetensors")
    model, config, meta = load_generator(out)
    assert config == TINY
    record = json.loads(meta["interpolation"])
    assert record["alpha"] == 0.5
    assert record["a"]["sha256"] == sha256_file(pa) and record["b"]["sha256"] == sha256_file(pb)
    assert record["a"]["name"] == "mse" and record["b"]["name"] == "gan"
    sa, sb = a.state_dict(), b.state_dict()
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            assert torch.allclose(value, (sa[key] + sb[key]) / 2, atol=1e-6), key


def test_interpolate_files_keeps_only_the_metadata_both_parents_share(tmp_path):
    a, b = _random_model(seed=1), _random_model(seed=2)
    recipe = {"stage": "gan", "ldl_weight": "100.0", "data": "train/"}
    val = {"val": "set5", "val_step": "6"}  # the parents' own validation, on the same set at the same step
    pa = save_generator(tmp_path / "a.safetensors", a, TINY, metadata={**recipe, **val, "name": "s11", "seed": "11"})
    pb = save_generator(tmp_path / "b.safetensors", b, TINY, metadata={**recipe, **val, "name": "s12", "seed": "12"})
    _, _, meta = load_generator(interpolate_files(pa, pb, 0.5, tmp_path / "soup.safetensors"))
    assert {k: meta[k] for k in recipe} == recipe
    assert "seed" not in meta and meta["name"] == "soup"
    assert "val" not in meta and "val_step" not in meta  # the blend itself was never validated
    # parents of different recipes (an SRResNet and its GAN fine-tune) keep none of it
    pm = save_generator(tmp_path / "m.safetensors", a, TINY, metadata={"stage": "mse", "data": "other/"})
    _, _, meta = load_generator(interpolate_files(pm, pb, 0.5, tmp_path / "blend.safetensors"))
    assert "stage" not in meta and "data" not in meta and "ldl_weight" not in meta


def test_interpolate_files_alpha_ends_reproduce_the_parents(pair, tmp_path):
    a, b, pa, pb = pair
    x = torch.rand(1, 3, 5, 6)
    for alpha, ref in ((0.0, a), (1.0, b)):
        model, _, _ = load_generator(interpolate_files(pa, pb, alpha, tmp_path / f"e{alpha}.safetensors"))
        with torch.no_grad():
            assert torch.equal(model(x), ref(x))


def test_different_configs_are_refused_naming_the_fields(pair, tmp_path):
    _, _, pa, _ = pair
    other = GeneratorConfig(num_blocks=2, num_features=8, batch_norm=False)
    pc = save_generator(tmp_path / "c.safetensors", build_generator(other), other)
    diff = config_difference(read_metadata(pa), read_metadata(pc))
    assert "num_blocks" in diff and "batch_norm" in diff and "num_features" not in diff
    assert config_difference(read_metadata(pa), read_metadata(pa)) is None
    with pytest.raises(SrganError) as info:
        interpolate_files(pa, pc, 0.5, tmp_path / "out.safetensors")
    assert "num_blocks" in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "out.safetensors").exists()


def test_never_writes_onto_an_input(pair):
    _, _, pa, pb = pair
    before = pa.read_bytes()
    with pytest.raises(SrganError, match="one of the inputs"):
        interpolate_files(pa, pb, 0.5, pa, overwrite=True)
    assert pa.read_bytes() == before


def test_cli_end_to_end(pair, tmp_path):
    _, _, pa, pb = pair
    out = tmp_path / "blend.safetensors"
    runner = CliRunner()
    result = runner.invoke(main, ["interpolate", str(pa), str(pb), "--alpha", "0.8", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(read_metadata(out)["interpolation"])["alpha"] == 0.8
    first = out.read_bytes()

    result = runner.invoke(main, ["interpolate", str(pa), str(pb), "--alpha", "0.2", "-o", str(out)])
    assert result.exit_code == 1
    assert "--overwrite" in result.output and "Traceback" not in result.output
    assert out.read_bytes() == first, "must not be overwritten without --overwrite"

    result = runner.invoke(main, ["interpolate", str(pa), str(pb), "--alpha", "0.2", "-o", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert json.loads(read_metadata(out)["interpolation"])["alpha"] == 0.2


def test_cli_makes_the_output_folder_and_reports_on_stderr(pair, tmp_path):
    """-o new/blend.safetensors was refused ("folder new does not exist; create it first") though
    upscale's -o and train's --out make theirs; "wrote ..." went to stdout, so a closed or full
    stdout failed a run whose file was written (and a rerun then said "already exists")."""
    import subprocess
    import sys

    _, _, pa, pb = pair
    out = tmp_path / "new" / "deeper" / "blend.safetensors"
    result = CliRunner().invoke(main, ["interpolate", str(pa), str(pb), "--alpha", "0.5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.is_file() and result.stdout == "" and result.stderr.startswith("wrote ")
    out2 = tmp_path / "new" / "b2.safetensors"
    argv = ["srgan", "interpolate", str(pa), str(pb), "--alpha", "0.5", "-o", str(out2)]
    code = f"import sys; from srgan_cli.cli import main; sys.argv = {argv!r}; main()"
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-c", code], stdout=full, stderr=subprocess.PIPE, text=True)
    assert done.returncode == 0, done.stderr
    assert out2.is_file()
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(
        main, ["interpolate", str(pa), str(pb), "--alpha", "0.5", "-o", str(tmp_path / "file" / "b.safetensors")]
    )
    assert result.exit_code == 2 and "file: is a file, not a folder" in result.output, result.output
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_text("junk")
    made = tmp_path / "made" / "deep" / "b.safetensors"
    result = CliRunner().invoke(main, ["interpolate", str(pa), str(bogus), "--alpha", "0.5", "-o", str(made)])
    assert result.exit_code == 1 and not (tmp_path / "made").exists()  # a failed blend leaves no folder


@pytest.mark.parametrize(
    "args",
    [
        ["--alpha", "1.5", "-o", "x.safetensors"],
        ["--alpha", "abc", "-o", "x.safetensors"],
        ["--alpha", "nan", "-o", "x.safetensors"],
        ["--alpha", "0.5", "-o", "x.pt"],
        ["--alpha", "0.5"],
    ],
)
def test_cli_bad_options_are_usage_errors(pair, args, tmp_path, monkeypatch):
    _, _, pa, pb = pair
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["interpolate", str(pa), str(pb), *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.safetensors").exists()


def test_cli_bad_input_is_one_line(pair, tmp_path):
    _, _, pa, _ = pair
    missing, out = str(tmp_path / "missing.safetensors"), str(tmp_path / "o.safetensors")
    result = CliRunner().invoke(main, ["interpolate", str(pa), missing, "--alpha", "0.5", "-o", out])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing.safetensors" in lines[0]


def test_half_precision_parents_give_a_half_precision_blend(tmp_path):
    a, b = _random_model(seed=1), _random_model(seed=2)
    pa = save_generator(tmp_path / "a16.safetensors", a, TINY, dtype=torch.float16)
    pb = save_generator(tmp_path / "b16.safetensors", b, TINY, dtype=torch.float16)
    out = interpolate_files(pa, pb, 0.5, tmp_path / "c16.safetensors", sources=("mse-model", "acme/gan@v1"))
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as fh:
        assert {fh.get_slice(k).get_dtype() for k in fh.keys()} == {"F16"}
    record = json.loads(read_metadata(out)["interpolation"])
    assert record["a"]["source"] == "mse-model" and record["b"]["source"] == "acme/gan@v1"
    pc = save_generator(tmp_path / "c32.safetensors", b, TINY)
    mixed = interpolate_files(pa, pc, 0.5, tmp_path / "mixed.safetensors")
    with safe_open(str(mixed), framework="pt") as fh:
        assert {fh.get_slice(k).get_dtype() for k in fh.keys()} == {"F32"}


def test_a_file_that_is_not_srgan_weights_is_named_as_such(pair, tmp_path):
    """It was reported as 'different generator configs (a config cannot be read ...)'."""
    from safetensors.torch import save_file

    _, _, pa, _ = pair
    foreign = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(8, 3, 3, 3)}, str(foreign), metadata={"config": "not json{"})
    for first, second in ((pa, foreign), (foreign, pa)):
        with pytest.raises(SrganError) as info:
            interpolate_files(first, second, 0.5, tmp_path / "out.safetensors")
        message = str(info.value)
        assert message.startswith(f"{foreign}: not an srgan generator file") and "different" not in message
    assert not (tmp_path / "out.safetensors").exists()
