"""``srgan models``: the table and ``--json``, with bundled, downloadable and missing models."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from srgan_cli import hub, weights
from srgan_cli.cli import main
from srgan_cli.config import GeneratorConfig
from srgan_cli.models import build_generator
from srgan_cli.weights import ModelEntry, save_generator

TINY = GeneratorConfig(num_blocks=1, num_features=8)


@pytest.fixture()
def table(tmp_path, monkeypatch):
    """Three models: one bundled, one only on the Hub (not cached), one with no source."""
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    model = build_generator(TINY)
    save_generator(bundled / "tiny_x4.safetensors", model, TINY)
    monkeypatch.setattr(weights, "bundled_dir", lambda: bundled)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    models = {
        "tiny_x4": ModelEntry("tiny_x4", "tiny_x4.safetensors", 4, "srresnet", "tiny bundled model"),
        "remote_x4": ModelEntry(
            "remote_x4", "remote_x4.safetensors", 4, "rrdb", "only on the Hub", "ab" * 32, "acme/remote", "v1"
        ),
        "missing_x2": ModelEntry("missing_x2", "missing_x2.safetensors", 2, "srresnet", "not published yet"),
    }
    monkeypatch.setattr(weights, "MODELS", models)
    monkeypatch.setattr(hub, "MODELS", models)  # hub binds the table at import
    monkeypatch.setattr(weights, "DEFAULT_MODEL", "tiny_x4")
    return sum(p.numel() for p in model.parameters())


def test_models_json(table):
    result = CliRunner().invoke(main, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert list(rows) == ["tiny_x4", "remote_x4", "missing_x2"]
    tiny, remote, missing = rows["tiny_x4"], rows["remote_x4"], rows["missing_x2"]
    assert tiny["available"] and tiny["default"] and tiny["source"] == "bundled" and tiny["params"] == table
    assert tiny["size_mb"] is not None and tiny["scale"] == 4 and tiny["arch"] == "srresnet"
    assert tiny["path"].endswith("tiny_x4.safetensors") and remote["path"] is None and missing["path"] is None
    assert not remote["available"] and not remote["cached"] and remote["hub"] == "acme/remote@v1"
    assert remote["source"] == "hub:acme/remote@v1" and remote["sha256"] == "ab" * 32 and remote["params"] is None
    assert not missing["available"] and missing["hub"] is None and missing["source"] == "not available yet"
    assert not remote["default"] and not missing["default"]


def test_models_table(table):
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    tiny = next(line for line in lines if "tiny_x4" in line)
    assert "(default)" in tiny and "bundled" in tiny and "x4" in tiny and f"{table / 1e6:.2f} M" in tiny
    remote = next(line for line in lines if "remote_x4" in line)
    assert "download" in remote and "acme/remote@v1" in remote
    missing = next(line for line in lines if "missing_x2" in line)
    assert "not available yet" in missing and "x2" in missing


def test_models_real_table_lists_the_default():
    result = CliRunner().invoke(main, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["name"] for row in rows if row["default"]] == [weights.DEFAULT_MODEL]
    for row in rows:
        assert row["available"] == (row["size_mb"] is not None)


def _complete(args, incomplete):
    from click.shell_completion import BashComplete

    items = BashComplete(main, {}, "srgan", "_SRGAN_COMPLETE").get_completions(args, incomplete)
    return [(item.type, item.value) for item in items]


def test_listing_and_info_do_not_import_pytorch():
    # `srgan models` took 2.1 s, 2 of them importing PyTorch, to read a table and two file headers
    import subprocess
    import sys

    for args in (["models"], ["models", "--info", "srgan_x4", "--json"]):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "srgan_cli", *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-2000:]
        imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import")}
        assert "srgan_cli.weights" in imported and "torch" not in imported, args
    assert json.loads(done.stdout)["params"] > 0  # read from the header, without PyTorch


def test_completion_names_match_the_model_table_and_the_bench_sets():
    from srgan_cli import bench
    from srgan_cli.commands import completion

    assert set(completion.MODEL_NAMES) == set(weights.MODELS)
    assert completion.SET_NAMES == bench.SET_NAMES


def test_shell_completion_offers_model_names_sets_and_paths():
    assert _complete(["upscale", "photo.png", "-m"], "srr") == [("file", "srr"), ("plain", "srresnet_x4")]
    assert _complete(["upscale", "photo.png", "--model"], "") == [
        ("file", ""), ("plain", "srgan_x4"), ("plain", "srresnet_x4")
    ]  # fmt: skip
    assert ("plain", "bicubic") in _complete(["bench", "-m"], "")
    assert _complete(["bench", "--set"], "set1") == [("dir", "set1"), ("plain", "set14")]
    assert _complete(["interpolate"], "srg") == [("file", "srg"), ("plain", "srgan_x4")]
    assert _complete(["interpolate", "srgan_x4"], "mine") == [("file", "mine")]  # B: a file path


def test_completion_of_devices_validation_sets_blends_and_the_json_file():
    # these completed nothing at all, not even paths
    assert _complete(["upscale", "--device"], "c") == [("plain", "cpu"), ("plain", "cuda")]
    assert ("plain", "mps") in _complete(["train", "--device"], "")
    assert _complete(["train", "--val"], "b") == [("dir", "b"), ("plain", "bsd100")]
    assert _complete(["upscale", "a.png", "--blend"], "srr") == [("file", "srr"), ("plain", "srresnet_x4")]
    assert _complete(["upscale", "a.png", "--blend"], "srresnet_x4:") == []
    assert _complete(["bench", "--json"], "r") == [("file", "r")]


def test_zsh_completion_offers_the_names_before_anything_is_typed(monkeypatch):
    """Click's zsh script reads (type, value, help) triples from an array that drops empty values:
    a first path item with an empty value shifted the names out of their triples."""
    from click.shell_completion import ZshComplete

    monkeypatch.setenv("_SRGAN_COMPLETE", "zsh_complete")
    shell = ZshComplete(main, {}, "srgan", "_SRGAN_COMPLETE")
    for words, offered in ((["upscale", "-m"], {"srgan_x4", "srresnet_x4"}), (["bench", "--set"], {"set5", "bsd100"})):
        lines = "\n".join(shell.format_completion(item) for item in shell.get_completions(words, "")).split("\n")
        kept = [line for line in lines if line]  # as zsh's ${response} keeps them
        triples = [kept[i : i + 3] for i in range(0, len(kept), 3)]
        assert offered <= {value for kind, value, *_ in triples if kind == "plain"}, triples
        assert [kind for kind, *_ in triples][-1] in ("file", "dir")  # paths are still completed


def test_a_mistyped_command_gets_a_suggestion():
    result = CliRunner().invoke(main, ["upscal", "x.png"])
    assert result.exit_code == 2 and "No such command 'upscal'. Did you mean 'upscale'?" in result.output


@pytest.mark.parametrize(
    ("words", "incomplete"),
    [
        (["upscale", "a.png", "-m"], "s"),
        (["upscale", "--device"], ""),
        ([], ""),  # `srgan <Tab>`: click imports every command to list them (bench's imported torch)
        (["bench", "--set"], "s"),
        (["train", "--precision"], ""),
    ],
)
def test_completion_does_not_import_torch(words, incomplete):
    """Completion runs the CLI on every Tab: it must stay fast."""
    import subprocess
    import sys

    code = (
        "import sys; from click.shell_completion import BashComplete; from srgan_cli.cli import main; "
        f"BashComplete(main, {{}}, 'srgan', '_SRGAN_COMPLETE').get_completions({words!r}, {incomplete!r}); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_models_info_shows_the_bundled_default_with_its_provenance():
    result = CliRunner().invoke(main, ["models", "--info", weights.DEFAULT_MODEL, "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    entry = weights.MODELS[weights.DEFAULT_MODEL]
    assert info["sha256"] == entry.sha256 == weights.sha256_file(weights.bundled_dir() / entry.file)
    assert info["metadata"]["name"] == entry.name and info["metadata"]["config"]["arch"] == entry.arch
    assert {"stage", "steps", "data", "seed", "trained_with"} <= set(info["metadata"])
    text = CliRunner().invoke(main, ["models", "--info", weights.DEFAULT_MODEL]).output
    rows = [line.split(maxsplit=1) for line in text.splitlines()]
    assert ["sha256", entry.sha256] in rows and ["seed", info["metadata"]["seed"]] in rows
    assert ["metadata"] in rows  # the file's own fields first, then its metadata


def test_models_info_of_files_and_bad_names(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_generator(a, build_generator(TINY), TINY, {"stage": "mse", "val_psnr": "12.3400"})
    save_generator(b, build_generator(TINY), TINY, {"sha256": "not the file's"})
    result = CliRunner().invoke(main, ["models", "--info", str(a), "--info", str(b), "--json"])
    assert result.exit_code == 0, result.output
    first, second = json.loads(result.output)
    assert first["file"] == str(a) and first["metadata"]["val_psnr"] == "12.3400"
    assert first["params"] == sum(p.numel() for p in build_generator(TINY).parameters())
    assert second["sha256"] == weights.sha256_file(b)  # metadata cannot pass for the file's own fields
    assert second["metadata"]["sha256"] == "not the file's"
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    for bad, message in (("nope_x4", "unknown model 'nope_x4'"), (str(tmp_path / "junk.safetensors"), "not a valid")):
        result = CliRunner().invoke(main, ["models", "--info", bad])
        assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output
    both = CliRunner().invoke(main, ["models", "--info", str(a), "--fetch", str(a)])
    assert both.exit_code == 2 and "not both" in both.output


def test_fetch_verifies_a_local_file_and_speaks_json(tmp_path):
    good = save_generator(tmp_path / "good.safetensors", build_generator(TINY), TINY)
    result = CliRunner().invoke(main, ["models", "--fetch", str(good), "--json"])
    assert result.exit_code == 0 and json.loads(result.output) == {"model": str(good), "path": str(good)}
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n not weights")
    result = CliRunner().invoke(main, ["models", "--fetch", str(tmp_path / "photo.png")])
    assert result.exit_code == 1 and "Traceback" not in result.output  # was: its path printed, exit 0


def test_a_damaged_bundled_file_is_listed_as_damaged_not_available(table, monkeypatch):
    """A truncated or replaced bundled file was listed as available; every use then failed."""
    path = weights.bundled_dir() / "tiny_x4.safetensors"
    good = weights.sha256_file(path)
    entry = weights.MODELS["tiny_x4"]
    monkeypatch.setitem(weights.MODELS, "tiny_x4", ModelEntry(**{**entry.__dict__, "sha256": good}))
    rows = {row["name"]: row for row in json.loads(CliRunner().invoke(main, ["models", "--json"]).output)}
    assert rows["tiny_x4"]["available"] and not rows["tiny_x4"]["damaged"]
    path.write_bytes(path.read_bytes()[:1000])
    result = CliRunner().invoke(main, ["models", "--json"])
    row = {row["name"]: row for row in json.loads(result.output)}["tiny_x4"]
    assert not row["available"] and row["damaged"] and row["sha256"] == good
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0
    line = next(line for line in result.output.splitlines() if line.startswith("│ tiny_x4") or "tiny_x4 " in line)
    assert "damaged" in line
    assert "does not match its published sha256 (reinstall srgan-cli)" in " ".join(result.stderr.split())
    assert "published sha256" not in result.stdout  # a note, on stderr: stdout holds the table alone


@pytest.mark.parametrize(
    "args",
    [
        ["models", "--info", ""],
        ["models", "--fetch", " "],
        ["models", "--fetch", "srgan_x4", "--fetch", ""],
        ["interpolate", "", "srgan_x4", "--alpha", "0.5", "-o", "x.safetensors"],
    ],
)
def test_an_empty_model_name_is_called_so(tmp_path, monkeypatch, args):
    """'' (an unset variable) was the path '.': "error: .: is a folder; give a .safetensors
    weights file" everywhere but upscale, which said what it was."""
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "an empty model (an unset variable?)" in result.output and "is a folder" not in result.output
    assert result.stdout == ""  # refused before anything was fetched or printed
