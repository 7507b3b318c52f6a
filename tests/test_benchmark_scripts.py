"""The benchmark scripts' own command lines: bad arguments and missing inputs end in one line
``error: ...`` (exit 2 for an argument, 1 for a failed run), never a traceback or a hang.

Most checks import a script by its path and call its ``main`` as ``python benchmarks/NAME.py``
does (through ``_cli.run`` where the script has it); a few run the script itself."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from srgan_cli.config import GeneratorConfig
from srgan_cli.models import build_generator
from srgan_cli.weights import load_generator, save_generator

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
TINY = GeneratorConfig(num_blocks=1, num_features=8)


def _script(name: str):
    """Import benchmarks/NAME.py (a script, not a package module) by its path."""
    spec = importlib.util.spec_from_file_location(f"bench_script_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _call(name: str, argv: list[str]) -> int:
    """The exit status of ``python benchmarks/NAME.py ARGV``, run in this process."""
    module = _script(name)
    try:
        if hasattr(module, "run"):
            return module.run(module.main, argv)
        return module.main(argv)
    except SystemExit as exc:  # argparse
        return exc.code


def _usage_error(capsys, name: str, argv: list[str]) -> str:
    """Exit status 2 and argparse's ``error:`` line (after its usage), no traceback."""
    code = _call(name, argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], err
    return lines[0]


def _run_error(capsys, name: str, argv: list[str]) -> str:
    """Exit status 1 and one line ``error: ...`` on stderr, nothing else there."""
    code = _call(name, argv)
    err = capsys.readouterr().err
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _run_script(tmp_path: Path, name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _tiny(path: Path) -> Path:
    config = GeneratorConfig(num_blocks=1, num_features=8)
    return save_generator(path, build_generator(config), config)


def _images(folder: Path, size: int, count: int = 1, flat: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        pixels = np.full((size, size, 3), 120, np.uint8) if flat else rng.integers(0, 256, (size, size, 3), np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    return folder


def _bench_set(folder: Path) -> Path:
    _images(folder / "HR", 64)
    return folder


# png_encode ------------------------------------------------------------------------------------


def test_png_encode_writes_the_16_bit_tiff_rows(capsys):
    assert _script("png_encode").main(["--size", "8x6", "--repeats", "1", "--threads", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| srgan writer, TIFF | 16 |")]
    assert len(rows) == 1  # was: a TypeError from the writer's call


# bn_recalibrate --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad", [["--batches", "0"], ["--batches", "-1"], ["--batch-size", "0"], ["--threads", "0"], ["--seed", "-1"]]
)
def test_bn_recalibrate_refuses_counts_below_one(tmp_path, capsys, bad):
    line = _usage_error(capsys, "bn_recalibrate", ["srgan_x4", str(tmp_path / "out.safetensors"), *bad])
    assert bad[0] in line
    assert not (tmp_path / "out.safetensors").exists()  # was: BatchNorm statistics at their reset values


def test_bn_recalibrate_keeps_an_existing_output_unless_told(tmp_path, capsys):
    model = _tiny(tmp_path / "tiny.safetensors")
    data = _images(tmp_path / "train", 32, count=2)
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"mine")
    args = [str(model), str(out), "--data", str(data), "--batches", "1", "--batch-size", "2", "--patch-size", "16"]
    assert "already exists" in _run_error(capsys, "bn_recalibrate", args)
    assert out.read_bytes() == b"mine"
    assert _call("bn_recalibrate", [*args, "--overwrite"]) == 0
    net, _, meta = load_generator(out)
    assert "bn_recalibrated" in meta
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and not torch.all(norms[0].running_var == 1)  # statistics of the patches, not the reset ones


# gpu_pack --------------------------------------------------------------------------------------


def _pack_data(root: Path) -> Path:
    (root / "bench" / "set5" / "HR").mkdir(parents=True)
    (root / "bench" / "set5" / "HR" / "a.png").write_bytes(b"x" * 1000)
    (root / "train" / "t91").mkdir(parents=True)
    (root / "train" / "t91" / "a.png").write_bytes(b"x" * 1000)
    return root


def test_gpu_pack_checks_its_inputs_before_emptying_the_pack(tmp_path, capsys):
    dest = tmp_path / "gpu"
    dest.mkdir()
    (dest / "keep.txt").write_text("the last pack")
    line = _run_error(capsys, "gpu_pack", ["--data", str(tmp_path / "nope"), "--dest", str(dest)])
    assert "nope" in line
    assert (dest / "keep.txt").exists()  # was: removed, then a FileNotFoundError traceback
    _pack_data(tmp_path / "data")
    line = _run_error(capsys, "gpu_pack", ["--plan", "gan", "--data", str(tmp_path / "data"), "--dest", str(dest)])
    assert "VGG19" in line and (dest / "keep.txt").exists()


# gpu_pack measures the checkout git would send (git ls-files): an unpacked sdist is none
@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / ".git").exists(), reason="needs a git checkout")
def test_gpu_pack_measures_against_the_given_limit(tmp_path, capsys):
    data = _pack_data(tmp_path / "data")
    args = ["--data", str(data), "--dest", str(tmp_path / "gpu"), "--margin-mib", "0"]
    assert _call("gpu_pack", [*args, "--limit-mib", "0.01"]) == 1  # was: 0, checked against 64 MiB
    captured = capsys.readouterr()
    assert "of 0.01 MiB" in captured.out and "over the limit" in captured.err
    assert _call("gpu_pack", [*args, "--limit-mib", "1000"]) == 0
    assert "of 1000 MiB" in capsys.readouterr().out
    _usage_error(capsys, "gpu_pack", [*args, "--limit-mib", "-1"])


# large_image -----------------------------------------------------------------------------------


def test_large_image_takes_relative_paths_from_the_callers_folder(tmp_path, monkeypatch, capsys):
    _tiny(tmp_path / "mine.safetensors")
    monkeypatch.chdir(tmp_path)
    argv = ["--size", "16x12", "--model", "mine.safetensors", "--device", "cpu"]
    assert _call("large_image", argv) == 0, capsys.readouterr().err  # was: looked for it in the repository
    assert "| 16x12 | 8 | 64x48 | png |" in capsys.readouterr().out


def test_large_image_format_is_a_choice(tmp_path, capsys):
    line = _usage_error(capsys, "large_image", ["--size", "16x12", "--format", "bogus", "--device", "cpu"])
    assert "--format" in line  # was: an IsADirectoryError traceback after the upscale


# half_weights ----------------------------------------------------------------------------------


def test_half_weights_command_line(tmp_path):
    result = _run_script(tmp_path, "half_weights", "--help")
    assert result.returncode == 0 and "usage:" in result.stdout
    result = _run_script(tmp_path, "half_weights", "missing.safetensors")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["error: missing.safetensors: no such weights file"]


def test_half_weights_errors_are_one_line(tmp_path, capsys):
    _usage_error(capsys, "half_weights", [])
    (tmp_path / "notes.safetensors").write_text("not weights")
    assert "not a valid safetensors file" in _run_error(capsys, "half_weights", [str(tmp_path / "notes.safetensors")])


def test_half_weights_keeps_the_files_mode_and_metadata(tmp_path, capsys):
    from safetensors import safe_open

    path = _tiny(tmp_path / "g.safetensors")
    os.chmod(path, 0o640)
    assert _call("half_weights", [str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # was: 0600
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["format"] and all(f.get_tensor(k).dtype != torch.float32 for k in f.keys())
    load_generator(path)
    assert "in fp16" in capsys.readouterr().out


# train_speed -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        ["--device", "bogus"],
        ["--batch-size", "0"],
        ["--batch-size", "-2"],
        ["--loader-batches", "0"],
        ["--workers", "0", "-1"],
        ["--threads", "0"],
        ["--steps", "0"],
        ["--steps", "-3"],
        ["--patch-size", "0"],
        ["--patch-size", "-8"],
        ["--patch-size", "50"],  # not a multiple of the scale
    ],
)
def test_train_speed_refuses_bad_arguments(tmp_path, capsys, bad):
    _usage_error(capsys, "train_speed", ["--data", str(_images(tmp_path / "d", 64)), *bad])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is here")
def test_train_speed_refuses_cuda_without_cuda(tmp_path, capsys):
    assert "CUDA is not available" in _usage_error(capsys, "train_speed", ["--device", "cuda"])


def test_train_speed_missing_data_is_one_line(tmp_path, capsys):
    assert "nope" in _run_error(capsys, "train_speed", ["--data", str(tmp_path / "nope")])
    small = _images(tmp_path / "small", 20)
    assert "no usable training images" in _run_error(capsys, "train_speed", ["--data", str(small)])
    result = _run_script(tmp_path, "train_speed", "--data", "nope")
    assert result.returncode == 1 and result.stderr.startswith("error: nope") and "Traceback" not in result.stderr


# blend_check, blockiness, flat_noise -----------------------------------------------------------


def test_blend_check_errors_are_one_line(tmp_path, capsys):
    assert "nope" in _run_error(capsys, "blend_check", ["--set", str(tmp_path / "nope")])
    assert "unknown model 'nope'" in _run_error(capsys, "blend_check", ["nope"])
    assert "unknown model 'nope'" in _run_error(capsys, "blend_check", ["srresnet_x4", "nope"])
    for alpha in ("-1", "2", "nan", "x"):
        assert "--alpha" in _usage_error(capsys, "blend_check", ["--alpha", "0", alpha])


@pytest.mark.parametrize("name", ["blockiness", "flat_noise"])
def test_set_metrics_errors_are_one_line(tmp_path, capsys, name):
    folder = str(_bench_set(tmp_path / "s"))
    data_dir = ["--data-dir", str(tmp_path)]
    assert "set6" in _run_error(capsys, name, ["--set", "set6", "-m", "bicubic", *data_dir])
    assert "nope" in _run_error(capsys, name, ["--set", str(tmp_path / "nope"), "-m", "bicubic", *data_dir])
    assert "unknown model 'nope'" in _run_error(capsys, name, ["--set", folder, "-m", "nope"])
    line = _run_error(capsys, name, ["--set", "set5", "-m", "bicubic", "--data-dir", str(tmp_path / "nope")])
    assert "--data-dir" in line
    # every set is found before a model runs: a bad second set fails at once
    assert "set6" in _run_error(capsys, name, ["--set", folder, "--set", "set6", "-m", "bicubic", *data_dir])


# loss_pull -------------------------------------------------------------------------------------


def test_loss_pull_errors_are_one_line(tmp_path, capsys):
    data = str(_images(tmp_path / "train", 32))
    base = ["--data", data, "--crops", "1", "--size", "16"]
    assert "/nope" in _run_error(capsys, "loss_pull", [*base, "--vgg-weights", str(tmp_path / "nope")])
    assert "unknown model 'nope'" in _run_error(capsys, "loss_pull", [*base, "--vgg-weights", "x", "-m", "nope"])
    assert "bogus" in _run_error(capsys, "loss_pull", [*base, "--vgg-weights", "x", "--content-loss", "bogus"])
    model = str(_tiny(tmp_path / "tiny.safetensors"))
    args = ["--vgg-weights", "x", "--content-loss", "mse", "-m", model, "--crops", "1", "--size", "16"]
    assert "nope" in _run_error(capsys, "loss_pull", [*args, "--data", str(tmp_path / "nope")])
    for bad in (["--crops", "0"], ["--crops", "-1"], ["--size", "-5"], ["--size", "18"], ["--seed", "-1"]):
        assert bad[0] in _usage_error(capsys, "loss_pull", ["--vgg-weights", "x", *bad])


def test_loss_pull_stops_when_no_image_is_as_large_as_a_crop(tmp_path):
    _tiny(tmp_path / "tiny.safetensors")
    _images(tmp_path / "train", 32, count=2)
    args = ["--data", "train", "--vgg-weights", "x", "--content-loss", "mse", "-m", "tiny.safetensors"]
    result = _run_script(tmp_path, "loss_pull", *args, "--size", "5000", "--crops", "2", timeout=30)  # was: a hang
    assert result.returncode == 1 and "Traceback" not in result.stderr
    expected = "error: --data train: no image is at least 5000 px on each side (--size)"
    assert result.stderr.strip().splitlines() == [expected]


def test_loss_pull_prints_a_dash_where_no_pixel_is_flat(tmp_path, capsys):
    model = str(_tiny(tmp_path / "tiny.safetensors"))
    args = ["--vgg-weights", "x", "--content-loss", "mse", "-m", model, "--crops", "1", "--size", "16"]
    assert _call("loss_pull", [*args, "--data", str(_images(tmp_path / "noise", 32))]) == 0
    out = capsys.readouterr().out
    assert "0.0% of pixels flat" in out and "nan" not in out  # was: nan in the flat and weight columns
    rows = [line.split(" | ") for line in out.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 7 and all(r[3] == "-" and r[5] == "- |" for r in rows)
    assert _call("loss_pull", [*args, "--data", str(_images(tmp_path / "flat", 32, flat=True))]) == 0
    out = capsys.readouterr().out
    assert "100.0% of pixels flat" in out and "nan" not in out


# vgg_grid --------------------------------------------------------------------------------------


def test_vgg_grid_errors_are_one_line(tmp_path, capsys):
    vgg = ["--vgg-weights", str(tmp_path / "nope.safetensors")]
    assert "nope.safetensors" in _run_error(capsys, "vgg_grid", vgg)
    assert "unknown model 'nope'" in _run_error(capsys, "vgg_grid", [*vgg, "--gan", "nope"])
    assert "unknown model 'nope'" in _run_error(capsys, "vgg_grid", [*vgg, "--start", "nope"])
    for count in ("0", "-2"):  # was: never reached, so every training image was cropped
        assert "--patches" in _usage_error(capsys, "vgg_grid", [*vgg, "--patches", count])


def test_vgg_grid_data_errors_are_one_line(shared_data, tmp_path, capsys):
    vgg = ["--vgg-weights", str(shared_data / "vgg19" / "vgg19_features_caffe_fp16.safetensors")]
    assert "nope" in _run_error(capsys, "vgg_grid", [*vgg, "--data", str(tmp_path / "nope")])
    small = str(_images(tmp_path / "small", 64))
    assert "at least 96 px" in _run_error(capsys, "vgg_grid", [*vgg, "--data", small])


# unlike_images, upscale_speed ------------------------------------------------------------------


def test_unlike_images_checks_before_writing(tmp_path, capsys):
    line = _run_error(capsys, "unlike_images", [str(tmp_path / "u"), "--texture", "bicubic"])
    assert "unknown model 'bicubic'" in line
    assert not (tmp_path / "u").exists()  # was: written, then a traceback
    (tmp_path / "file").write_text("x")
    assert "not a folder" in _run_error(capsys, "unlike_images", [str(tmp_path / "file")])


@pytest.mark.parametrize("bad", [["--threads", "-1"], ["--threads", "0"], ["--tiles", "-5"], ["--tiles", "auto,-1"]])
def test_upscale_speed_refuses_bad_threads_and_tiles(capsys, bad):
    assert bad[0] in _usage_error(capsys, "upscale_speed", ["--sizes", "16", "--repeats", "1", *bad])


# gpu_check.sh ----------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout")
def test_gpu_check_skips_the_training_step_once_the_budget_is_spent(tmp_path):
    """BUDGET=0: no time is left after the probe; the step is skipped, not given a negative limit."""
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(BENCHMARKS / "gpu_check.sh", tmp_path / "benchmarks" / "gpu_check.sh")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "srresnet_x4.safetensors").write_bytes(b"x")  # only its presence is checked
    (tmp_path / ".gpu" / "train").mkdir(parents=True)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OUT": str(out), "DEVICE": "cpu", "QUICK": "1", "BENCH": "0"}
    env.update(BUDGET="0", PROBE="1")
    subprocess.run(
        ["bash", "benchmarks/gpu_check.sh"], cwd=tmp_path, env=env, capture_output=True, timeout=120, check=False
    )
    summary = (out / "summary.md").read_text()
    assert "- mse: skipped (the budget is spent" in summary
    assert "- mse: rc" not in summary  # was: timeout with a negative limit (rc 125)


def test_precision_diff_measures_bf16_against_fp32(tmp_path, capsys):
    """A set folder (HR/, LR_x4/): float and 8-bit differences, and the PSNR difference."""
    rng = np.random.default_rng(0)
    (tmp_path / "s" / "HR").mkdir(parents=True)
    (tmp_path / "s" / "LR_x4").mkdir()
    hr = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    Image.fromarray(hr).save(tmp_path / "s" / "HR" / "a.png")
    Image.fromarray(hr).resize((10, 12)).save(tmp_path / "s" / "LR_x4" / "a.png")
    weights = save_generator(tmp_path / "tiny.safetensors", build_generator(TINY), TINY)
    assert _call("precision_diff", ["-m", str(weights), str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| tiny"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[0] == "tiny (torch.bfloat16)" and float(cells[1].split()[0]) > 0 and cells[4].endswith(")")
    assert "no HR/ folder in it" in _run_error(capsys, "precision_diff", [str(tmp_path / "missing")])
    line = _run_error(capsys, "precision_diff", ["-m", str(weights), "--precision", "fp16", str(tmp_path / "s")])
    assert "nothing to compare" in line  # fp16 runs as fp32 on the CPU: it measured fp32 against itself
