"""srgan bench: sets, the command, its JSON schema, comparison sheets and one-line errors."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import in_time
from PIL import Image

from srgan_cli import __version__
from srgan_cli import bench as core
from srgan_cli.cli import main
from srgan_cli.config import GeneratorConfig
from srgan_cli.errors import SrganError
from srgan_cli.models import build_generator
from srgan_cli.weights import save_generator


@pytest.fixture(autouse=True)
def _no_lpips_package(monkeypatch):
    """Tests run offline and must not depend on whether lpips happens to be installed."""
    monkeypatch.setitem(sys.modules, "lpips", None)


@pytest.fixture
def bench_dir(shared_data):
    return shared_data / "bench"


def _tiny(path, scale=4):
    config = GeneratorConfig(num_blocks=1, num_features=8, scale=scale)
    return save_generator(path, build_generator(config), config)


def _invoke(*args):
    result = CliRunner().invoke(main, ["bench", *map(str, args)])
    return result


def _one_line_error(result):
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    # notes about the set (its LR made from HR) come before the error, each a line of its own
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def _check_schema(doc, n_models, n_images, per_image):
    assert doc["schema_version"] == 1 and doc["srgan_version"] == __version__
    assert isinstance(doc["set"], str) and isinstance(doc["set_path"], str)
    assert doc["scale"] == 4 and doc["num_images"] == n_images
    assert doc["lr_source"] in ("file", "imresize", "mixed")
    assert isinstance(doc["device"], str) and doc["runs"] >= 1
    assert len(doc["models"]) == n_models
    for m in doc["models"]:
        keys = {"name", "source", "dtype", "psnr", "ssim", "lpips", "lpips_note", "mp_per_s", "seconds", "notes"}
        keys |= {"images", "paired"}
        assert set(m) >= keys
        assert isinstance(m["name"], str)
        assert 0 < m["psnr"] < 100 and -1 <= m["ssim"] <= 1
        assert (m["lpips"] is None) != (m["lpips_note"] is None)
        assert m["mp_per_s"] > 0 and m["seconds"] > 0
        assert len(m["images"]) == (n_images if per_image else 0)
        for row in m["images"]:
            assert set(row) == {"name", "psnr", "ssim", "lpips", "seconds"}


def test_set5_bicubic_prints_the_table_and_valid_json(bench_dir, tmp_path):
    out = tmp_path / "r.json"
    result = _invoke("--set", "set5", "--model", "bicubic", "--data-dir", bench_dir, "--json", out, "--per-image")
    assert result.exit_code == 0, result.output
    assert "bicubic" in result.stdout and "28.42" in result.stdout and "butterfly" in result.stdout
    doc = json.loads(out.read_text())
    _check_schema(doc, n_models=1, n_images=5, per_image=True)
    assert doc["set"] == "set5" and doc["lr_source"] == "file"
    # the protocol doc's bicubic Set5 numbers (28.42 dB / 0.810)
    assert abs(doc["models"][0]["psnr"] - 28.42) <= 0.02
    assert abs(doc["models"][0]["ssim"] - 0.810) <= 0.002
    assert np.mean([r["psnr"] for r in doc["models"][0]["images"]]) == pytest.approx(doc["models"][0]["psnr"])


def test_json_to_stdout_is_pure_json_and_the_table_goes_to_stderr(bench_dir):
    result = _invoke("--set", "set5", "--model", "bicubic", "--data-dir", bench_dir, "--json", "-")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    _check_schema(doc, n_models=1, n_images=5, per_image=False)
    assert "srgan bench" in result.stderr


def test_data_dir_from_the_environment(bench_dir, monkeypatch):
    monkeypatch.setenv("SRGAN_DATA_DIR", str(bench_dir))
    assert core.resolve_set("Set14") == bench_dir / "set14"


def test_two_models_in_one_run_and_lpips_reason_shown(bench_dir, tmp_path):
    weights = _tiny(tmp_path / "tiny.safetensors")
    out = tmp_path / "r.json"
    result = _invoke(
        "--set", "set5", "--model", "bicubic", "--model", weights, "--data-dir", bench_dir, "--device", "cpu",
        "--json", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "bicubic" in result.stdout and "tiny" in result.stdout
    assert "lpips package is not installed" in result.stdout  # the reason, not a number
    doc = json.loads(out.read_text())
    _check_schema(doc, n_models=2, n_images=5, per_image=False)
    names = [m["name"] for m in doc["models"]]
    assert names == ["bicubic", "tiny"]
    bic, tiny = doc["models"]
    assert tiny["dtype"] == "float32" and bic["dtype"] is None
    # which weights a score belongs to: a path or a name says nothing once the file is retrained
    assert tiny["sha256"] == hashlib.sha256(Path(weights).read_bytes()).hexdigest() and bic["sha256"] is None
    assert tiny["psnr"] < bic["psnr"]  # an untrained network is far worse than bicubic
    assert all(m["lpips"] is None and "not installed" in m["lpips_note"] for m in doc["models"])
    assert doc["lpips_source"] is None


def test_ensemble_adds_a_row_per_model(bench_dir, tmp_path):
    weights = _tiny(tmp_path / "tiny.safetensors")
    out = tmp_path / "r.json"
    result = _invoke(
        "--set", "set5", "--model", "bicubic", "--model", weights, "--ensemble", "--data-dir", bench_dir,
        "--device", "cpu", "--no-lpips", "--json", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    models = json.loads(out.read_text())["models"]
    assert [m["name"] for m in models] == ["bicubic", "tiny", "tiny+ensemble"]  # no ensemble of bicubic
    assert models[1]["psnr"] != models[2]["psnr"]


def test_paired_difference_is_the_mean_and_standard_error_of_per_image_differences():
    base = [
        {"psnr": 30.0, "ssim": 0.8},
        {"psnr": 25.0, "ssim": 0.7},
        {"psnr": 28.0, "ssim": 0.9},
        {"psnr": math.inf, "ssim": 1.0},
    ]
    rows = [
        {"psnr": 30.1, "ssim": 0.81},
        {"psnr": 25.3, "ssim": 0.69},
        {"psnr": 27.9, "ssim": 0.9},
        {"psnr": 40.0, "ssim": 0.99},
    ]
    p = core.paired_difference(rows, base, "base")
    assert p["against"] == "base" and p["n"] == 3  # the image with an infinite PSNR is left out
    assert p["psnr"] == pytest.approx(0.1) and p["psnr_sem"] == pytest.approx(0.2 / math.sqrt(3))
    assert p["ssim"] == pytest.approx(0.0) and p["ssim_sem"] == pytest.approx(0.01 / math.sqrt(3))
    assert (p["better"], p["worse"]) == (2, 1)
    one = core.paired_difference(rows[:1], base[:1], "base")
    assert one["n"] == 1 and one["psnr"] == pytest.approx(0.1) and one["psnr_sem"] is None
    none = core.paired_difference(rows[3:], base[3:], "base")
    assert none["n"] == 0 and math.isnan(none["psnr"]) and none["psnr_sem"] is None


def test_paired_table_and_json_compare_each_model_with_the_first(bench_dir, tmp_path):
    weights = _tiny(tmp_path / "tiny.safetensors")
    out = tmp_path / "r.json"
    result = _invoke(
        "--set", "set5", "--model", "bicubic", "--model", weights, "--data-dir", bench_dir, "--device", "cpu",
        "--no-lpips", "--per-image", "--paired", "--json", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "paired per image against bicubic" in result.stdout and " 0/5 " in result.stdout
    bic, tiny = json.loads(out.read_text())["models"]
    assert bic["paired"] is None
    diffs = [t["psnr"] - b["psnr"] for t, b in zip(tiny["images"], bic["images"], strict=True)]
    assert tiny["paired"]["psnr"] == pytest.approx(np.mean(diffs)) == pytest.approx(tiny["psnr"] - bic["psnr"])
    assert tiny["paired"]["psnr_sem"] == pytest.approx(np.std(diffs, ddof=1) / math.sqrt(5))
    assert (tiny["paired"]["better"], tiny["paired"]["worse"], tiny["paired"]["n"]) == (0, 5, 5)
    plain = _invoke("--set", "set5", "--model", "bicubic", "--model", weights, "--data-dir", bench_dir, "--no-lpips")
    assert plain.exit_code == 0 and "paired" not in plain.stdout  # the table only when asked for


def test_no_lpips_flag_says_skipped(bench_dir, tmp_path):
    out = tmp_path / "r.json"
    result = _invoke("--set", "set5", "--model", "bicubic", "--data-dir", bench_dir, "--no-lpips", "--json", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["models"][0]["lpips_note"] == "skipped (--no-lpips)"


def _hr_only_folder(tmp_path, bench_dir, names=("baby", "bird")):
    folder = tmp_path / "photos"
    (folder / "HR").mkdir(parents=True)
    for name in names:
        shutil.copy(bench_dir / "set5" / "HR" / f"{name}.png", folder / "HR" / f"{name}.png")
    return folder


def test_folder_with_hr_only_makes_lr_with_imresize(bench_dir, tmp_path):
    folder = _hr_only_folder(tmp_path, bench_dir)
    bench_set = core.load_set(folder)
    assert [im.name for im in bench_set.images] == ["baby", "bird"]
    assert bench_set.lr_source == "imresize"
    given = np.asarray(Image.open(bench_dir / "set5" / "LR_x4" / "baby.png").convert("RGB"))
    assert np.abs(bench_set.images[0].lr.astype(float) - given).mean() < 0.5
    out = tmp_path / "r.json"
    result = _invoke("--set", folder, "--model", "bicubic", "--json", out)
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["set"] == "photos" and doc["lr_source"] == "imresize" and doc["num_images"] == 2


def test_hr_folder_without_images_is_one_line_naming_the_suffixes(tmp_path):
    (tmp_path / "s" / "HR").mkdir(parents=True)
    (tmp_path / "s" / "HR" / "notes.txt").write_text("not an image")
    result = _invoke("--set", tmp_path / "s", "--model", "bicubic")
    assert result.exit_code == 1 and "Traceback" not in result.output
    line = result.output.strip()
    assert "\n" not in line and "no images in it" in line and ".png" in line and ".ppm" in line


def test_hr_is_cropped_to_a_multiple_of_the_scale_and_gray_is_rgb(tmp_path):
    folder = tmp_path / "s"
    (folder / "HR").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (51, 42), dtype=np.uint8), mode="L").save(folder / "HR" / "g.png")
    bench_set = core.load_set(folder)
    image = bench_set.images[0]
    assert image.hr.shape == (48, 40, 3) and image.lr.shape == (12, 10, 3)
    assert (image.hr[..., 0] == image.hr[..., 2]).all()


def test_sixteen_bit_and_float_sets_are_scaled_as_upscale_reads_them(tmp_path):
    # 16-bit grayscale and float scans: scaled to 8 bits (not clipped to white or black), the
    # pixels srgan upscale would read from the same files.
    folder = tmp_path / "s"
    (folder / "HR").mkdir(parents=True)
    (folder / "LR_x4").mkdir()
    ramp = np.linspace(0, 65535, 48 * 40).reshape(40, 48).round().astype(np.uint16)
    Image.fromarray(ramp).save(folder / "HR" / "scan.png")
    Image.fromarray(np.full((10, 12), 0.25, np.float32)).save(folder / "LR_x4" / "scan.tiff")
    image = core.load_set(folder).images[0]
    assert np.array_equal(image.hr[..., 1], np.rint(ramp / 257.0).astype(np.uint8))
    assert np.all(image.lr == 64)  # 0.25 * 255 = 63.75


def test_too_small_and_same_named_images_are_one_line_errors(tmp_path):
    folder = tmp_path / "s"
    (folder / "HR").mkdir(parents=True)
    Image.new("RGB", (16, 40)).save(folder / "HR" / "a.png")  # 16 px: nothing left for SSIM after the crop
    line = _one_line_error(_invoke("--set", folder, "--model", "bicubic"))
    assert "a.png" in line and "too small" in line
    Image.new("RGB", (40, 40)).save(folder / "HR" / "a.png")
    Image.new("RGB", (40, 40)).save(folder / "HR" / "a.jpg")
    line = _one_line_error(_invoke("--set", folder, "--model", "bicubic"))
    assert "a.png" in line and "a.jpg" in line


def test_precision_fallback_is_noted(bench_dir, tmp_path):
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    weights = _tiny(tmp_path / "tiny.safetensors")
    out = tmp_path / "r.json"
    result = _invoke("--set", folder, "--model", weights, "--device", "cpu", "--precision", "fp16", "--json", out)
    assert result.exit_code == 0, result.output
    model = json.loads(out.read_text())["models"][0]
    assert model["dtype"] == "float32" and any("fp16" in n for n in model["notes"])
    assert "note: tiny:" in result.stderr and "note:" not in result.stdout  # a note, not a result


def test_lr_file_of_the_wrong_size_is_a_one_line_error(bench_dir, tmp_path):
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    (folder / "LR_x4").mkdir()
    Image.new("RGB", (10, 10)).save(folder / "LR_x4" / "baby.png")
    line = _one_line_error(_invoke("--set", folder, "--model", "bicubic"))
    assert "LR_x4/baby.png" in line and "10x10" in line


def test_save_images_writes_sr_images_and_sheets_that_decode(bench_dir, tmp_path):
    folder = _hr_only_folder(tmp_path, bench_dir)
    weights = _tiny(tmp_path / "tiny.safetensors")
    save = tmp_path / "cmp"
    result = _invoke("--set", folder, "--model", weights, "--save-images", save, "--device", "cpu")
    assert result.exit_code == 0, result.output
    for name in ("baby", "bird"):
        hr = Image.open(folder / "HR" / f"{name}.png")
        with Image.open(save / "tiny" / f"{name}.png") as sr:
            sr.load()
            assert sr.size == hr.size
        with Image.open(save / "sheets" / f"{name}.png") as sheet:
            sheet.load()
            # overview, HR, bicubic (always shown), tiny: four panels side by side
            side = core.SHEET_CROP * core.SHEET_ZOOM
            assert sheet.size[0] >= 4 * side and sheet.size[1] >= side
            # the HR panel is the detail crop of HR enlarged with nearest neighbour
            top, left, size = core.detail_window(np.asarray(hr.convert("RGB")), core.SHEET_CROP)
            want = np.asarray(hr.convert("RGB"))[top : top + size, left : left + size]
            z, x0 = core.SHEET_ZOOM, side + 8  # second panel: 4 px margin, 4 px gap
            got = np.asarray(sheet.convert("RGB"))[4 : 4 + side : z, x0 : x0 + side : z]
            np.testing.assert_array_equal(got, want)
            # the second row: the flattest mid-tone crop, the same way
            top, left, size = core.detail_window(np.asarray(hr.convert("RGB")), core.SHEET_CROP, flattest=True)
            want = np.asarray(hr.convert("RGB"))[top : top + size, left : left + size]
            y0 = 4 + side + 18 + 4  # row height: the crop, its label line, a gap
            got = np.asarray(sheet.convert("RGB"))[y0 : y0 + side : z, x0 : x0 + side : z]
            np.testing.assert_array_equal(got, want)
    assert not list(save.rglob(".*.part"))  # no temporary files left behind


def test_save_images_never_overwrites_an_input(bench_dir, tmp_path):
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    before = (folder / "HR" / "baby.png").read_bytes()
    weights = _tiny(tmp_path / "HR.safetensors")  # its outputs would go to <dir>/HR/
    line = _one_line_error(_invoke("--set", folder, "--model", weights, "--save-images", folder, "--device", "cpu"))
    assert "in the set's own HR/ folder" in line  # before any file is compared with the inputs
    assert (folder / "HR" / "baby.png").read_bytes() == before


def test_save_images_replaces_only_its_own_files(bench_dir, tmp_path):
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    save = tmp_path / "cmp"
    assert _invoke("--set", folder, "-m", "bicubic", "--save-images", save, "--no-lpips").exit_code == 0
    again = _invoke("--set", folder, "-m", "bicubic", "--save-images", save, "--no-lpips")
    assert again.exit_code == 0, again.output  # a rerun replaces what the first run wrote
    mine = save / "bicubic" / "baby.png"
    Image.new("RGB", (8, 8)).save(mine)  # a user's own file where an output would go: kept
    before = mine.read_bytes()
    line = _one_line_error(_invoke("--set", folder, "-m", "bicubic", "--save-images", save, "--no-lpips"))
    assert "not written by srgan bench" in line and mine.read_bytes() == before


def test_json_replaces_an_earlier_result_but_no_other_file(bench_dir, tmp_path):
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    out = tmp_path / "r.json"
    for _ in range(2):
        assert _invoke("--set", folder, "-m", "bicubic", "--no-lpips", "--json", out).exit_code == 0
    assert json.loads(out.read_text())["set"]
    hr = folder / "HR" / "baby.png"
    before = hr.read_bytes()
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips", "--json", hr)  # it replaced the HR image
    assert result.exit_code == 2 and "not an srgan bench result" in result.output
    assert hr.read_bytes() == before


def test_the_same_model_twice_gets_two_columns_not_a_traceback(bench_dir, tmp_path):
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    result = _invoke("--set", folder, "-m", "bicubic", "-m", "bicubic", "--no-lpips", "--json", "-")
    assert result.exit_code == 0, result.output
    assert [m["name"] for m in json.loads(result.stdout)["models"]] == ["bicubic", "bicubic-2"]


def test_detail_window_finds_the_textured_region():
    hr = np.full((200, 300, 3), 128, np.uint8)
    rng = np.random.default_rng(0)
    hr[120:180, 200:260] = rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)
    top, left, size = core.detail_window(hr, 64)
    assert size == 64
    assert 116 <= top <= 124 and 196 <= left <= 204  # the window holds the 60x60 patch


def test_flattest_window_is_the_smooth_mid_tone_region():
    rng = np.random.default_rng(0)
    hr = rng.integers(60, 200, (200, 300, 3), dtype=np.uint8)  # texture everywhere ...
    hr[10:80, 10:80] = 0  # ... but flat black (clipped shadows hide what a model adds)
    hr[100:170, 10:80] = 255  # flat white, the same
    hr[110:190, 190:270] = np.linspace(100, 140, 80, dtype=np.uint8)[None, :, None]  # a smooth mid-tone ramp
    top, left, size = core.detail_window(hr, 64, flattest=True)
    assert size == 64 and 110 <= top <= 126 and 190 <= left <= 206  # inside the ramp
    assert core.detail_window(hr, 64) != (top, left, size)  # the detail crop is elsewhere
    dark = np.full((100, 100, 3), 5, np.uint8)  # no mid-tone at all: still a window, not an error
    assert core.detail_window(dark, 64, flattest=True)[2] == 64


def test_unknown_set_is_a_one_line_error(bench_dir):
    line = _one_line_error(_invoke("--set", "urban999", "--model", "bicubic", "--data-dir", bench_dir))
    assert "unknown set 'urban999'" in line and "set5" in line


def test_missing_data_dir_is_a_one_line_error_naming_the_option(tmp_path):
    line = _one_line_error(_invoke("--set", "set5", "--model", "bicubic", "--data-dir", tmp_path / "nope"))
    assert "--data-dir" in line and "nope" in line


def test_data_dir_without_the_set_is_a_one_line_error(tmp_path):
    line = _one_line_error(_invoke("--set", "bsd100", "--model", "bicubic", "--data-dir", tmp_path))
    assert "--data-dir" in line and "bsd100/HR" in line


def _hub_asked(monkeypatch, error=None):
    """The Hub's answer to srgan's first question about a dataset (the repo's info; never the network):
    an answer, or ``error`` raised."""
    import huggingface_hub

    def repo_info(self, repo_id, **kwargs):
        if error is not None:
            raise error
        return object()

    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", repo_info)


def test_offline_hub_download_is_a_one_line_error(monkeypatch):
    import huggingface_hub

    def offline(**kwargs):
        assert kwargs["repo_type"] == "dataset" and kwargs["repo_id"] == "someone/sets"
        raise OSError("We have no connection\nmore")

    monkeypatch.delenv("SRGAN_DATA_DIR", raising=False)
    _hub_asked(monkeypatch)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    line = _one_line_error(_invoke("--set", "set5", "--model", "bicubic", "--hub-dataset", "someone/sets"))
    assert "someone/sets" in line and "no connection" in line and "--data-dir" in line


def test_hub_download_is_used_for_a_named_set_without_data_dir(monkeypatch, bench_dir):
    import huggingface_hub

    calls = []

    def fake(**kwargs):
        calls.append(kwargs)
        return str(bench_dir)

    monkeypatch.delenv("SRGAN_DATA_DIR", raising=False)
    monkeypatch.delenv("SRGAN_BENCH_REPO", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    _hub_asked(monkeypatch)
    assert core.resolve_set("set14") == bench_dir / "set14"
    assert calls[0]["repo_id"] == core.DEFAULT_HUB_DATASET
    assert all(p.startswith("set14/") for p in calls[0]["allow_patterns"])


def test_a_named_sets_files_are_fetched_from_the_revision_the_hub_named(monkeypatch, bench_dir, tmp_path):
    # snapshot_download asked the Hub for the revision again, with no time limit: an endpoint that answered
    # srgan's first question and stalled after hung the run for good. The files of the revision that answer
    # named are fetched each with a bounded wait.
    import types

    import huggingface_hub

    names = [f"set5/{p.relative_to(bench_dir / 'set5').as_posix()}" for p in (bench_dir / "set5").rglob("*.png")]
    sha = "a" * 40
    snapshot = tmp_path / "snapshots" / sha
    asked = []

    def repo_info(self, repo_id, **kwargs):
        assert kwargs["timeout"] is not None
        siblings = [types.SimpleNamespace(rfilename=n) for n in [*names, "set14/HR/x.png", "README.md"]]
        return types.SimpleNamespace(sha=sha, siblings=siblings)

    def hf_hub_download(repo_id, filename, **kwargs):
        asked.append((filename, kwargs["revision"], kwargs["etag_timeout"]))
        (snapshot / filename).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / filename).write_bytes((bench_dir / filename).read_bytes())
        return str(snapshot / filename)

    def stalls(**kwargs):
        raise AssertionError("snapshot_download asks the Hub again, with no time limit")

    monkeypatch.delenv("SRGAN_DATA_DIR", raising=False)
    monkeypatch.delenv("SRGAN_BENCH_REPO", raising=False)
    monkeypatch.setattr(huggingface_hub.HfApi, "repo_info", repo_info)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", stalls)
    assert core.resolve_set("set5") == snapshot / "set5"
    assert sorted(a[0] for a in asked) == sorted(names)
    assert all(a[1] == sha and a[2] for a in asked)


def test_default_model_without_weights_suggests_bicubic(bench_dir, monkeypatch):
    from srgan_cli import weights

    entry = weights.MODELS[weights.DEFAULT_MODEL]
    monkeypatch.setattr(type(entry), "bundled_path", lambda self: None)
    monkeypatch.setitem(weights.MODELS, weights.DEFAULT_MODEL, type(entry)(**{**entry.__dict__, "hub_repo": None}))
    line = _one_line_error(_invoke("--set", "set5", "--data-dir", bench_dir))
    assert "--model bicubic" in line


def test_bad_options_are_usage_errors(bench_dir):
    assert _invoke("--set", "set5", "--runs", "0", "--data-dir", bench_dir).exit_code == 2
    assert _invoke("--set", "set5", "--precision", "fp64", "--data-dir", bench_dir).exit_code == 2


def test_run_bench_identical_output_gives_infinite_psnr_and_null_in_json(tmp_path, bench_dir):
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    bench_set = core.load_set(folder)
    hr = bench_set.images[0].hr
    oracle = core.Upscaler("oracle", "test", 4, lambda lr: hr)
    result = core.run_bench([oracle], bench_set, per_image=True, runs=2)
    model = result["models"][0]
    assert model["images"][0]["psnr"] == math.inf and model["ssim"] == pytest.approx(1.0)
    assert model["psnr"] == core.PSNR_CEILING  # in the mean, an exact image counts as the ceiling
    from srgan_cli.commands.bench import _finite

    doc = json.loads(json.dumps(_finite(result), allow_nan=False))["models"][0]
    assert doc["images"][0]["psnr"] is None and doc["psnr"] == core.PSNR_CEILING


def test_upscale_speed_script_prints_a_markdown_table(tmp_path, capsys):
    module = _benchmark_script("upscale_speed")
    weights = _tiny(tmp_path / "tiny.safetensors")
    argv = ["--model", str(weights), "--sizes", "16", "--tiles", "0,8", "--repeats", "1", "--warmup", "0", "--no-bf16"]
    assert module.main([*argv, "--api-precision", "fp32"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| 16px")]
    names = [r[1].strip() for r in rows]
    assert names == ["fp32 (ref)", "channels_last fp32", "api tile=0", "api tile=8"]
    for row in rows:
        assert float(row[2]) > 0  # MP/s
        assert float(row[5]) < 0.01  # max gray-level difference: fp32 paths agree (tiling is exact)
    assert float(rows[0][5]) == 0.0 and rows[0][3].strip() == "1.00x"
    # The default input is the bundled photo; noise and any image file work too.
    assert module.main([*argv, "--input", "noise", "--tiles", "0"]) == 0
    assert module.main([*argv, "--input", str(tmp_path / "missing.png")]) == 1
    assert "--input" in capsys.readouterr().err


def test_large_image_script_prints_time_and_memory(tmp_path, capsys):
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    module = _benchmark_script("large_image")
    weights = _tiny(tmp_path / "tiny.safetensors")
    assert module.main(["--size", "24x16", "--model", str(weights), "--device", "cpu"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| 24x16")]
    assert len(rows) == 1 and rows[0][1].strip() == "8" and rows[0][2].strip() == "96x64"
    assert float(rows[0][6]) > 0  # peak RSS of the child process
    argv = ["--size", "24x16", "--model", str(weights), "--device", "cpu", "--bits", "16", "--format", "tiff"]
    assert module.main(argv) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines() if line.startswith("| 24x16")]
    assert [c.strip() for c in rows[0][1:4]] == ["16", "96x64", "tiff"]
    assert module.main(["--size", "24x16", "--model", str(tmp_path / "missing.safetensors")]) == 1
    assert Image.MAX_IMAGE_PIXELS == limit  # it was left off for the rest of the process


def test_unlike_images_script_writes_a_bench_folder(tmp_path):
    from PIL import Image

    module = _benchmark_script("unlike_images")
    assert module.main([str(tmp_path / "u")]) == 0
    files = sorted(p.name for p in (tmp_path / "u" / "HR").iterdir())
    assert files == ["gradient.png", "line_art.png", "text.png"]
    first = np.asarray(Image.open(tmp_path / "u" / "HR" / "text.png"))
    assert module.main([str(tmp_path / "v")]) == 0  # deterministic: the table can be reproduced
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "v" / "HR" / "text.png")))
    assert first.std() > 10  # there is text on it


def _benchmark_script(name: str):
    """Import benchmarks/NAME.py (a script, not a package module) by its path."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_several_sets_in_one_run(bench_dir, tmp_path):
    out = tmp_path / "r.json"
    result = _invoke(
        "--set", "set5", "--set", "set14", "--model", "bicubic", "--data-dir", bench_dir, "--json", out,
        "--save-images", tmp_path / "cmp",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "srgan bench: set5" in result.stdout and "srgan bench: set14" in result.stdout
    doc = json.loads(out.read_text())
    assert [d["set"] for d in doc] == ["set5", "set14"]
    _check_schema(doc[0], n_models=1, n_images=5, per_image=False)
    _check_schema(doc[1], n_models=1, n_images=14, per_image=False)
    assert abs(doc[0]["models"][0]["psnr"] - 28.42) <= 0.02 and abs(doc[1]["models"][0]["psnr"] - 26.09) <= 0.02
    assert len(list((tmp_path / "cmp" / "set5" / "sheets").iterdir())) == 5
    assert len(list((tmp_path / "cmp" / "set14" / "sheets").iterdir())) == 14
    # a missing set fails before any model runs, naming it
    line = _one_line_error(
        _invoke("--set", "set5", "--set", tmp_path / "nope", "--model", "bicubic", "--data-dir", bench_dir)
    )
    assert "nope" in line


# gpu_pack measures the checkout git would send (git ls-files): an unpacked sdist is none
@pytest.mark.skipif(not (Path(__file__).resolve().parents[1] / ".git").exists(), reason="needs a git checkout")
def test_gpu_pack_fills_the_upload_by_pixels_per_byte_within_the_limit(tmp_path, capsys):
    module = _benchmark_script("gpu_pack")
    data = tmp_path / "data"
    for name, count, size in (("sun_hays80", 3, 100_000), ("bsds500", 5, 60_000), ("t91", 2, 50_000)):
        for i in range(count):
            (data / "train" / name).mkdir(parents=True, exist_ok=True)
            (data / "train" / name / f"{i}.jpg").write_bytes(b"x" * size)
    (data / "bench" / "set5" / "HR").mkdir(parents=True)
    (data / "bench" / "set5" / "HR" / "a.png").write_bytes(b"x" * 1000)
    (data / "vgg19").mkdir()
    (data / "vgg19" / "v.safetensors").write_bytes(b"x" * 200_000)
    checkout = module.checkout_bytes(module.ROOT)
    limit = (checkout + 1000 + 200_000 + 300_000 + 2 * 60_000 + 30_000) / 2**20  # room for 2 BSDS images
    dest = tmp_path / "gpu"
    args = ["--data", str(data), "--dest", str(dest), "--margin-mib", "0", "--limit-mib", str(limit)]
    assert module.main(["--plan", "gan", *args]) == 0
    assert (dest / "vgg19.safetensors").stat().st_size == 200_000
    assert len(list((dest / "train" / "sun_hays80").iterdir())) == 3
    assert sorted(p.name for p in (dest / "train" / "bsds500").iterdir()) == ["0.jpg", "1.jpg"]
    assert not (dest / "train" / "t91").exists()
    assert "2 of 5 images" in capsys.readouterr().out
    assert module.main(["--plan", "mse", *args]) == 0  # no VGG19: its room goes to images
    assert not (dest / "vgg19.safetensors").exists()
    assert [len(list((dest / "train" / n).iterdir())) for n in ("sun_hays80", "bsds500", "t91")] == [3, 5, 1]
    lpips = tmp_path / "lpips.safetensors"
    lpips.write_bytes(b"x" * 200_000)
    assert module.main(["--plan", "mse", "--lpips", str(lpips), *args]) == 0  # it takes the room of images
    assert (dest / "lpips.safetensors").read_bytes() == lpips.read_bytes()
    assert sorted(p.name for p in (dest / "train" / "bsds500").iterdir()) == ["0.jpg", "1.jpg"]
    assert module.main(["--plan", "mse", "--lpips", str(tmp_path / "nope"), *args]) == 1


def test_unlike_images_texture_measure(tmp_path, capsys):
    module = _benchmark_script("unlike_images")
    weights = _tiny(tmp_path / "tiny.safetensors")
    psnr, rms, spread = module.texture(str(weights))
    assert 0 < psnr < 100 and rms > 0 and 0 <= spread <= 2 * 255
    assert module.main([str(tmp_path / "u"), "--texture", str(weights)]) == 0
    assert "| regular 4 px part (levels) |" in capsys.readouterr().out


def test_flat_noise_measures_fine_texture_on_flat_areas_only(tmp_path, capsys):
    module = _benchmark_script("flat_noise")
    hr = np.full((64, 64, 3), 128, np.uint8)
    hr[:, 40:] = 30  # an edge at x = 40: pixels within 7 px of it are not flat
    checker = (np.indices((64, 64)).sum(0) % 2 * 4 - 2).astype(np.int16)[..., None]  # +-2 per channel
    sr = (hr.astype(np.int16) + checker).astype(np.uint8)
    fine, whole, own, size = module.flat_residual(sr, hr, flat=1.5)
    assert size == 48 * 48  # 64 px less the 8 px border on each side
    assert fine.size == 48 * (25 + 9)  # flat: centres x 8..32 and 47..55 (15 px window clear of the edge)
    # +-2 in R, G and B is +-2 * 219/255 in Y; a 7x7 window holds 25 of one sign and 24 of the other
    expected = 2 * 219 / 255 * (1 - 1 / 49)
    assert np.sqrt(np.mean(fine**2)) == pytest.approx(expected, rel=1e-6)
    assert np.abs(own).max() < 1e-9  # a flat HR has no grain of its own
    assert whole.size == fine.size and np.abs(whole).max() == pytest.approx(2 * 219 / 255, rel=1e-6)
    offset, drift, _, _ = module.flat_residual(np.clip(hr.astype(np.int16) + 3, 0, 255).astype(np.uint8), hr, 1.5)
    assert np.abs(offset).max() < 1e-9  # a brightness offset is not texture
    assert drift == pytest.approx(np.full(drift.shape, 3 * 219 / 255), rel=1e-6)  # but is an error
    # Detail on textured pixels: HR's own for HR, none for a flat output, half for half its contrast.
    busy = (128 + 4 * checker).astype(np.uint8).repeat(3, axis=2)  # +-8 per channel: textured
    sr_energy, hr_energy = module.busy_detail(busy, busy, busy=4.0)
    assert hr_energy > 0 and sr_energy == hr_energy
    assert module.busy_detail(np.full_like(busy, 128), busy, busy=4.0)[0] < 1e-9
    half = (128 + 2 * checker).astype(np.uint8).repeat(3, axis=2)
    assert np.sqrt(np.divide(*module.busy_detail(half, busy, busy=4.0))) == pytest.approx(0.5, rel=1e-6)
    (tmp_path / "s" / "HR").mkdir(parents=True)
    Image.fromarray(np.tile(hr, (2, 2, 1))).save(tmp_path / "s" / "HR" / "a.png")
    assert module.main(["--set", str(tmp_path / "s"), "-m", "bicubic"]) == 0
    out = capsys.readouterr().out
    assert "| set | flat pixels | HR's own | bicubic |" in out and "| s |" in out
    assert "whole residual RMS" in out
    assert "detail (3x3) on textured areas" in out and "| set | bicubic |" in out


def test_blockiness_scores_blocks_on_the_pixel_grid(tmp_path, capsys):
    module = _benchmark_script("blockiness")
    rng = np.random.default_rng(5)
    lr = rng.integers(0, 256, (16, 16, 1), dtype=np.uint8).repeat(3, axis=2)
    blocky = lr.repeat(4, axis=0).repeat(4, axis=1)  # each LR pixel a 4x4 block
    # steps 0, 0, 0, a in each direction: less their mean a/4, over it, -1, -1, -1, 3: RMS sqrt(3)
    assert module.unevenness(blocky) == pytest.approx(100 * np.sqrt(3), rel=1e-6)
    photo = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)  # no grid: even up to sampling
    assert module.unevenness(photo) < 2
    (tmp_path / "s" / "HR").mkdir(parents=True)
    Image.fromarray(photo).save(tmp_path / "s" / "HR" / "a.png")
    assert module.main(["--set", str(tmp_path / "s"), "-m", "bicubic", "-m", "bicubic", "--per-image"]) == 0
    out = capsys.readouterr().out
    assert "| set | HR's own | bicubic | bicubic-2 |" in out and "(0/1 above)" in out and "s/a: HR" in out
    assert "grid of SR - HR per 64 px square" in out and "| set | bicubic | bicubic-2 |" in out
    assert "fine detail beyond twice HR's power" in out
    # the local grid: a 4 px pattern on HR, of opposite sign in each half, scores its RMS in Y
    hr = np.full((64, 128, 3), 128, np.uint8)
    pattern = np.array([[2, -2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], np.int16)  # sums to 0
    sr = hr.astype(np.int16)
    sr[:, :64] += np.tile(pattern, (16, 16))[..., None]
    sr[:, 64:] -= np.tile(pattern, (16, 16))[..., None]
    expected = np.sqrt(8 / 16) * 219 / 255  # mean square 8/16 per gray level of RGB, Y = 219/255 of it
    assert module.local_grid(sr.astype(np.uint8), hr) == pytest.approx(expected, rel=1e-6)
    # fine detail beyond HR's: columns of +3 / -3 gray levels (period 2 px) over flat HR score their RMS in Y
    hatched = hr.astype(np.int16) + np.where(np.arange(128) % 2, -3, 3)[None, :, None]
    assert module.beyond_hr(hatched.astype(np.uint8), hr) == pytest.approx(3 * 219 / 255, rel=1e-4)
    assert module.beyond_hr(hr, hr) < 1e-4


def test_loss_pull_compares_each_term_with_the_content_loss(shared_data, tmp_path, capsys):
    module = _benchmark_script("loss_pull")
    data = tmp_path / "train"
    data.mkdir()
    image = np.full((48, 48, 3), 120, np.uint8)
    image[:, 24:] = 200  # flat halves, an edge between them
    Image.fromarray(image).save(data / "a.png")
    vgg = str(shared_data / "vgg19" / "vgg19_features_caffe_fp16.safetensors")
    args = ["--data", str(data), "--vgg-weights", vgg, "--crops", "2", "--size", "32", "--content-loss", "vgg22"]
    assert module.main(args + ["-m", "srresnet_x4"]) == 0
    out = capsys.readouterr().out
    rows = {r.split(" | ")[1]: r.split(" | ") for r in out.splitlines() if r.startswith("| srresnet_x4 |")}
    assert set(rows) == {"vgg22", "l1", "flat", "grid", "block", "local grid", "spectral"}
    assert rows["vgg22"][-1].rstrip(" |") == "1"
    flat, elsewhere = float(rows["flat"][3]), float(rows["flat"][4])
    assert flat > 0 and elsewhere < flat / 10  # the flat loss pulls on flat pixels only
    # The pull of an L1 term: 1/N per element, the same on flat pixels and elsewhere.
    n = 2 * 3 * 32 * 32
    assert float(rows["l1"][3]) == pytest.approx(1 / n, rel=1e-2)


def test_save_images_gives_each_model_its_own_folder(bench_dir, tmp_path):
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    (tmp_path / "m").mkdir()
    names = ("my model.safetensors", "my_model.safetensors", "sheets.safetensors")
    models = [_tiny(tmp_path / "m" / name) for name in names]
    save = tmp_path / "cmp"
    result = _invoke("--set", folder, *(a for m in models for a in ("-m", m)), "--save-images", save, "--no-lpips")
    assert result.exit_code == 0, result.output
    # were: both 'my model' and 'my_model' in my_model/ (one lost), the 'sheets' model under its sheets
    assert sorted(p.name for p in save.iterdir()) == ["my_model", "my_model-2", "sheets", "sheets-2"]
    assert core.model_folders(["a", "A"]) == {"a": "a", "A": "A-2"}  # one folder on a case-blind disk


def test_dot_sets_are_named_after_their_folder(bench_dir, tmp_path, monkeypatch):
    first = _hr_only_folder(tmp_path / "one", bench_dir, names=("baby",))
    second = _hr_only_folder(tmp_path / "two", bench_dir, names=("bird",)).rename(tmp_path / "two" / "other")
    monkeypatch.chdir(first / "HR")
    save = tmp_path / "cmp"
    result = _invoke("--set", "..", "--set", second, "-m", "bicubic", "--save-images", save, "--no-lpips", "--json=-")
    assert result.exit_code == 0, result.output
    assert [r["set"] for r in json.loads(result.stdout)] == [first.name, second.name]  # was: '..'
    assert (save / first.name / "sheets" / "baby.png").exists()  # was: written beside save, outside it


def test_a_set5_folder_without_hr_does_not_hide_the_named_set(bench_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "set5" / "bicubic").mkdir(parents=True)  # what `--save-images set5` leaves here
    assert core.resolve_set("set5", bench_dir) == bench_dir / "set5"  # was: "set5: no HR/ folder in it"
    with pytest.raises(SrganError, match="no HR/ folder"):
        core.resolve_set(tmp_path / "set5" / "bicubic", bench_dir)


def test_lr_images_of_one_name_are_refused_as_hr_ones_are(bench_dir, tmp_path):
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    (folder / "LR_x4").mkdir()
    shutil.copy(bench_dir / "set5" / "LR_x4" / "baby.png", folder / "LR_x4" / "baby.png")
    Image.new("RGB", (128, 128)).save(folder / "LR_x4" / "baby.bmp")  # was: one of the two, silently
    with pytest.raises(SrganError, match="LR images are paired by name"):
        core.load_set(folder)


def test_too_small_names_the_real_minimum(tmp_path):
    (tmp_path / "s" / "HR").mkdir(parents=True)
    Image.new("RGB", (19, 19), (90, 90, 90)).save(tmp_path / "s" / "HR" / "t.png")
    with pytest.raises(SrganError, match=r"19x19 is too small to benchmark at x4 \(at least 20x20 px\)"):
        core.load_set(tmp_path / "s")


def test_data_dir_wins_over_a_set5_folder_here(bench_dir, tmp_path, monkeypatch):
    """A ./set5 with HR/ in it was scored under the name set5 although --data-dir was given."""
    monkeypatch.chdir(tmp_path)
    _hr_only_folder(tmp_path, bench_dir, names=("baby",)).rename(tmp_path / "set5")
    assert core.resolve_set("set5", bench_dir) == bench_dir / "set5"
    monkeypatch.delenv("SRGAN_DATA_DIR", raising=False)
    assert core.resolve_set("set5") == Path("set5")  # without --data-dir the folder here is meant
    monkeypatch.setenv("SRGAN_DATA_DIR", str(bench_dir))  # --data-dir's default, as the option itself
    assert core.resolve_set("set5") == bench_dir / "set5"
    assert core.resolve_set("./set5", bench_dir) == Path("set5")  # as is a path


def test_a_standard_set_with_another_number_of_images_is_noted(bench_dir, tmp_path):
    """A partial copy of set5 (an interrupted download) was scored as set5 without a word."""
    data = tmp_path / "data"
    shutil.copytree(bench_dir / "set5", data / "set5")
    for name in ("woman", "head"):
        (data / "set5" / "HR" / f"{name}.png").unlink()
    result = _invoke("--set", "set5", "--data-dir", data, "-m", "bicubic", "--no-lpips", "--json=-")
    assert result.exit_code == 0, result.output
    assert "set5 has 3 images, the standard set5 has 5" in " ".join(result.stderr.split())
    assert "the standard set5 has 5" in json.loads(result.stdout)["notes"][0]  # scripts read the JSON
    full = _invoke("--set", "set5", "--data-dir", bench_dir, "-m", "bicubic", "--no-lpips", "--json=-")
    assert full.exit_code == 0 and "note:" not in full.stderr and json.loads(full.stdout)["notes"] == []


def test_a_missing_set_in_a_cached_hub_copy_does_not_claim_the_dataset_lacks_it(monkeypatch, tmp_path):
    """Offline, snapshot_download hands back the cached snapshot, which may hold other sets only."""
    import huggingface_hub

    (tmp_path / "set5" / "HR").mkdir(parents=True)
    monkeypatch.delenv("SRGAN_DATA_DIR", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda **kwargs: str(tmp_path))
    _hub_asked(monkeypatch, ConnectionError("[Errno 111] Connection refused"))
    line = _one_line_error(_invoke("--set", "set14", "--model", "bicubic"))
    assert "cannot be reached" in line and "--data-dir" in line


def test_save_images_refuses_a_file_where_a_folder_goes_before_anything_runs(bench_dir, tmp_path, monkeypatch):
    save = tmp_path / "cmp"
    save.mkdir()
    (save / "sheets").write_text("my notes")
    ran = []
    real = core.run_bench
    monkeypatch.setattr(core, "run_bench", lambda *a, **k: ran.append(1) or real(*a, **k))
    line = _one_line_error(_invoke("--set", "set5", "--data-dir", bench_dir, "-m", "bicubic", "--save-images", save))
    assert "sheets: is a file" in line and not ran
    assert sorted(p.name for p in save.iterdir()) == ["sheets"] and (save / "sheets").read_text() == "my notes"


def test_one_image_reproduced_exactly_does_not_make_the_mean_psnr_infinite(tmp_path, bench_dir):
    """It made the mean infinite (null in the JSON); left out of the mean instead, it would rank the
    model below one that is worse on that image and the same on the others."""
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby", "bird"))
    bench_set = core.load_set(folder)
    exact = bench_set.images[0]
    bicubic = core.bicubic_upscaler(4)

    def mostly_bicubic(lr):
        return exact.hr if lr is exact.lr else bicubic.run(lr)

    def nearly(lr):
        if lr is not exact.lr:
            return bicubic.run(lr)
        out = exact.hr.copy()
        out[10, 10] ^= 4
        return out

    models = [core.Upscaler("exact", "test", 4, mostly_bicubic), core.Upscaler("near", "test", 4, nearly)]
    result = core.run_bench(models, bench_set, per_image=True)
    exact_row, near_row = result["models"]
    assert exact_row["images"][0]["psnr"] == math.inf and math.isfinite(near_row["images"][0]["psnr"])
    assert exact_row["psnr"] == pytest.approx((core.PSNR_CEILING + exact_row["images"][1]["psnr"]) / 2)
    assert exact_row["psnr"] > near_row["psnr"]
    assert any("1 of 2 images reproduced exactly" in n for n in exact_row["notes"]) and not near_row["notes"]


def test_save_images_never_opens_a_fifo_in_its_way(bench_dir, tmp_path, without_blocking):
    import os

    save = tmp_path / "cmp"
    (save / "sheets").mkdir(parents=True)
    os.mkfifo(save / "sheets" / "baby.png")
    bench_set = core.load_set(bench_dir / "set5")
    with pytest.raises(SrganError, match="not written by srgan bench"):
        without_blocking(lambda: core.check_save_dir(save, bench_set, ["bicubic"]), save / "sheets" / "baby.png")


def _named_set(tmp_path, names):
    rng = np.random.default_rng(5)
    (tmp_path / "S" / "HR").mkdir(parents=True)
    for name in names:
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "S" / "HR" / name)
    return tmp_path / "S"


def test_the_table_shows_names_as_they_are_and_whole(tmp_path):
    """Names were rich markup ("[bold]b.png" showed as "b"), and in a log (not a terminal) long
    names were cut to the 80 columns with "...": two models' rows could not be told apart."""
    folder = _named_set(tmp_path, ["[bold]b.png", "c.png"])
    long_a, long_b = (_tiny(tmp_path / f"archive_model_2023_12_07_run_after_fix_{k}.safetensors") for k in "AB")
    result = _invoke("--set", str(folder), "--per-image", "-m", str(long_a), "-m", str(long_b), "--no-lpips")
    assert result.exit_code == 0, result.output
    assert "[bold]b" in result.output
    for path in (long_a, long_b):
        assert path.stem in result.output
    assert "…" not in result.output


def test_a_name_the_output_encoding_cannot_hold_is_escaped_not_a_traceback(tmp_path):
    import os
    import subprocess

    folder = _named_set(tmp_path, ["café.png", "d.png"])
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "COLUMNS": "20", "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [sys.executable, "-m", "srgan_cli", "bench", "--set", str(folder), "--per-image", "-m", "bicubic"]
    cmd += ["--no-lpips", "--json", str(tmp_path / "r.json")]
    done = subprocess.run(cmd, capture_output=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert b"caf\\xe9" in done.stdout and b"Traceback" not in done.stderr
    assert json.loads((tmp_path / "r.json").read_text())["models"][0]["images"][0]["name"] == "café"


@pytest.mark.parametrize("env", [{"FORCE_COLOR": "1"}, {"FORCE_COLOR": "0"}, {"TTY_COMPATIBLE": "1"}])
def test_a_log_gets_no_spinner_and_whole_rows_whatever_the_colour_settings(tmp_path, monkeypatch, env):
    """rich takes FORCE_COLOR (any value) and TTY_COMPATIBLE=1 for a terminal: a log got the
    spinner's redraws (\\r, a hidden cursor), and rows folded at 80 columns. Colour may follow them."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    folder = _named_set(tmp_path, ["b.png", "c.png"])
    model = _tiny(tmp_path / "archive_model_2023_12_07_run_after_the_fix_of_the_log_width.safetensors")
    result = _invoke("--set", str(folder), "-m", str(model), "--no-lpips", "--per-image")
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output and "\x1b[?25l" not in result.output, repr(result.output)
    assert any(model.stem in line and "S" in line for line in result.output.splitlines())  # the row on one line


def test_lr_files_that_pair_with_nothing_are_named_and_case_does_not_split_a_pair(tmp_path):
    """An LR file named "Photo.png" beside HR "photo.png" was passed over without a word and the LR
    made from HR instead (the score moved by a dB); an LR file of no HR image was ignored silently."""
    folder = _named_set(tmp_path, ["photo.png", "b.png", "c.png"])
    (folder / "LR_x4").mkdir()
    with Image.open(folder / "HR" / "photo.png") as im:
        im.resize((6, 6), Image.NEAREST).save(folder / "LR_x4" / "Photo.png")  # unlike imresize's LR
        im.resize((6, 6), Image.NEAREST).save(folder / "LR_x4" / "zzz.png")
    bench = core.load_set(folder)
    sources = {image.name: image.lr_source for image in bench.images}
    assert sources == {"photo": "file", "b": "imresize", "c": "imresize"}
    assert bench.notes == [
        "1 file in LR_x4/ pairs with no HR image by name and is not used: zzz.png",
        "2 of 3 images have no LR file in LR_x4/ (b.png, c.png): their LR is made from HR by bicubic imresize, "
        "so their scores are not those of the LR files",
    ]
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert "note: 1 file in LR_x4/ pairs with no HR image" in result.output
    assert json.loads((tmp_path / "r.json").read_text())["notes"] == bench.notes
    shutil.rmtree(folder / "LR_x4")
    # no LR files given: said once for the whole set (LR files kept under another name were passed over)
    assert core.load_set(folder).notes == [
        f"no LR_x4/ folder in {folder}: every LR image is made from its HR image by bicubic imresize"
    ]


@pytest.mark.parametrize("where", ["HR", "LR_x4", "HR/sub"])
def test_save_images_never_writes_into_the_sets_own_image_folders(tmp_path, where):
    """A model named "HR" saved its images into the set's HR/ folder: the next run read them as ground truth."""
    folder = _set_with_lr_in(tmp_path, "LR_x4")  # an LR file: no note that LR is made from HR
    model = _tiny(tmp_path / "HR.safetensors")
    save = folder if where == "HR" else folder / where
    result = _invoke("--set", folder, "-m", model, "--no-lpips", "--save-images", save)
    assert "in the set's own" in _one_line_error(result)
    assert sorted(p.name for p in (folder / "HR").iterdir()) == ["a.png"]


def test_a_narrow_terminal_keeps_names_and_numbers_whole(tmp_path):
    """At 40 columns the set and model columns shrank to nothing and numbers were cut to "0.07…"."""
    import io

    from rich.console import Console

    from srgan_cli.commands.bench import _print_paired, _print_table

    folder = _named_set(tmp_path, ["a.png", "b.png"])
    long_name = _tiny(tmp_path / "my very long model name for testing narrow output.safetensors")
    args = ["--set", folder, "-m", "bicubic", "-m", long_name, "--no-lpips", "--per-image", "--paired"]
    result = _invoke(*args, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "r.json").read_text())  # what the tables print
    for printer in (lambda c: _print_table(c, doc, True), lambda c: _print_paired(c, doc)):
        console = Console(width=40, file=io.StringIO())
        printer(console)
        text = console.file.getvalue()
        assert "…" not in text and "my very long" in text
        assert f"{doc['models'][1]['psnr']:.2f}" in text or "+-" in text
    assert console.width == 40  # given back after printing wider


def test_paired_lpips_counts_only_the_images_it_scored(tmp_path):
    """The table's LPIPS better/worse column counted every image, also those too small for LPIPS."""
    from srgan_cli.commands.bench import _print_paired

    rows = [{"psnr": 30.0, "ssim": 0.9, "lpips": 0.1}, {"psnr": 31.0, "ssim": 0.9, "lpips": None}]
    base = [{"psnr": 29.0, "ssim": 0.8, "lpips": 0.2}, {"psnr": 30.0, "ssim": 0.8, "lpips": None}]
    paired = core.paired_difference(rows, base, "bicubic")
    assert paired["lpips_lower"] == 1 and paired["lpips_n"] == 1
    import io

    from rich.console import Console

    doc = {"set": "s", "num_images": 2, "models": [{"name": "bicubic"}, {"name": "m", "paired": paired}]}
    console = Console(width=120, file=io.StringIO())
    _print_paired(console, doc)
    out = console.file.getvalue()
    # PSNR better on 2, worse on none, of 2; LPIPS lower on 1, higher on none, of the 1 scored (not of 2)
    assert "2/0 of 2" in out and "1/0 of 1" in out and "1/0 of 2" not in out


def test_one_lr_file_never_pairs_with_two_hr_images(tmp_path):
    """HR/A.png and HR/a.png with LR_x4/a.png alone: A took a's LR file too, without a note."""
    folder = _named_set(tmp_path, ["A.png", "a.png"])
    (folder / "LR_x4").mkdir()
    with Image.open(folder / "HR" / "a.png") as im:
        im.resize((6, 6)).save(folder / "LR_x4" / "a.png")
    bench = core.load_set(folder)
    assert {i.name: i.lr_source for i in bench.images} == {"A": "imresize", "a": "file"}
    assert bench.notes == [
        "1 of 2 images have no LR file in LR_x4/ (A.png): their LR is made from HR by bicubic imresize, "
        "so their scores are not those of the LR files"
    ]


def _bench_run(args, stdout, cwd, timeout=300):
    """`srgan bench ARGS` in a process of its own, stdout given (a file object or descriptor)."""
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [sys.executable, "-m", "srgan_cli", "bench", *map(str, args)]
    return subprocess.run(cmd, stdout=stdout, stderr=subprocess.PIPE, env=env, cwd=cwd, timeout=timeout, check=False)


@pytest.mark.parametrize("kind", ["fifo", "dev-stdout"])
def test_json_never_opens_a_fifo_or_device_in_its_way(bench_dir, tmp_path, without_blocking, kind):
    """`--json FIFO` (or /dev/stdout on a pipe) hung for ever: the FIFO was opened to see whether it
    held an earlier result. A file that is not a regular one is refused at once, unopened."""
    import os
    import subprocess

    fifo = tmp_path / "results.json"
    os.mkfifo(fifo)
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    if kind == "fifo":
        result = without_blocking(lambda: _invoke("--set", folder, "-m", "bicubic", "--no-lpips", "--json", fifo), fifo)
        assert result.exit_code == 2, result.output
        assert "not an srgan bench result" in result.output and "Traceback" not in result.output
        assert fifo.is_fifo()
        return
    # `--json /dev/stdout | ...`: a pipe, whose reader (this test) reads nothing before the end
    read_end, write_end = os.pipe()
    try:
        args = ["--set", folder, "-m", "bicubic", "--no-lpips", "--json", "/dev/stdout"]
        done = _bench_run(args, write_end, cwd=tmp_path, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("blocked reading /dev/stdout")
    finally:
        os.close(read_end)
        os.close(write_end)
    assert done.returncode == 2 and b"not an srgan bench result" in done.stderr, done.stderr


@pytest.mark.parametrize("json_out", [True, False], ids=["json-file", "table-only"])
@pytest.mark.parametrize("stdout", ["full", "closed-pipe"])
def test_a_failing_stdout_still_gets_the_json_file_written_and_says_so(bench_dir, tmp_path, stdout, json_out):
    """`bench --json r.json | head -1` and `> /dev/full`: every set was scored, then the table
    failed to print and r.json was never written (exit 1; without a word for the pipe)."""
    import os

    if stdout == "full" and not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    args = ["--set", folder, "-m", "bicubic", "--no-lpips", "--per-image"]
    args += ["--json", "r.json"] if json_out else []
    if stdout == "full":
        with open("/dev/full", "wb") as out:
            done = _bench_run(args, out, cwd=tmp_path)
    else:
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader left before the table came: `| head -0`
        try:
            done = _bench_run(args, write_end, cwd=tmp_path)
        finally:
            os.close(write_end)
    err = done.stderr.decode()
    assert done.returncode == 1, err
    err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith("note: "))  # about the set
    assert err.count("\n") == 1 and err.startswith("error: ") and "standard output" in err, err
    if json_out:
        doc = json.loads((tmp_path / "r.json").read_text())
        _check_schema(doc, n_models=1, n_images=1, per_image=True)
        assert "r.json" in err  # where the results are all the same
    assert not list(tmp_path.glob(".*.part"))


def test_notes_and_status_lines_go_to_stderr_and_only_the_results_to_stdout(bench_dir, tmp_path):
    """Notes about the set and "SR images ... written to" went to stdout, among the results, where
    upscale and train put theirs on stderr."""
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby", "bird"))
    (folder / "LR_x4").mkdir()
    shutil.copy(bench_dir / "set5" / "LR_x4" / "baby.png", folder / "LR_x4" / "baby.png")
    shutil.copy(bench_dir / "set5" / "LR_x4" / "bird.png", folder / "LR_x4" / "zebra.png")  # pairs with nothing
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips", "--save-images", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    assert "note: 1 file in LR_x4/ pairs with no HR image" in result.stderr
    assert "SR images and comparison sheets written to" in result.stderr
    assert "srgan bench: photos" in result.stdout and "bicubic" in result.stdout
    assert "note:" not in result.stdout and "SR images" not in result.stdout
    assert "srgan bench" not in result.stderr  # the table is a result


def test_quiet_leaves_stderr_to_errors(bench_dir, tmp_path):
    """-q was refused ("No such option") though upscale and train take it: a cron job's bench
    mailed its notes every night."""
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby", "bird"))
    (folder / "LR_x4").mkdir()
    shutil.copy(bench_dir / "set5" / "LR_x4" / "bird.png", folder / "LR_x4" / "zebra.png")  # a note
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips", "-q", "--save-images", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and "bicubic" in result.stdout
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips", "-q", "--json", "-")
    assert result.exit_code == 0 and result.stderr == ""
    assert json.loads(result.stdout)["set"] == "photos"
    result = _invoke("--set", folder, "-m", tmp_path / "missing.safetensors", "-q")
    assert "error:" in result.stderr  # errors still


def test_json_makes_its_missing_folder_as_save_images_does(bench_dir, tmp_path, monkeypatch):
    """`--json nope/r.json` was refused ("no such folder") while --save-images made its folder:
    `--save-images cmp --json cmp/results.json` failed on a fresh run."""
    monkeypatch.chdir(tmp_path)
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    args = ["--set", folder, "-m", "bicubic", "--no-lpips"]
    result = _invoke(*args, "--save-images", "cmp", "--json", "cmp/results.json")
    assert result.exit_code == 0, result.output
    assert json.loads(Path("cmp/results.json").read_text())["set"] == "photos"
    assert (Path("cmp") / "sheets" / "baby.png").is_file()
    result = _invoke(*args, "--json", "new/deeper/r.json")
    assert result.exit_code == 0, result.output
    assert json.loads(Path("new/deeper/r.json").read_text())["num_images"] == 1
    # a file where the folder goes: a usage error, before anything runs, the file as it was
    Path("mine").write_text("my notes")
    result = _invoke(*args, "--json", "mine/r.json")
    assert result.exit_code == 2 and "mine: is a file" in result.output, result.output
    assert Path("mine").read_text() == "my notes"


def test_a_json_path_that_cannot_be_written_is_refused_before_the_run(bench_dir, tmp_path, monkeypatch):
    """A missing folder is made at the end: one that could not be (no permission, `new/..`) failed
    only after every set was scored."""
    import os

    monkeypatch.chdir(tmp_path)
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    args = ["--set", folder, "-m", "bicubic", "--no-lpips"]
    for name in ("new/..", "new/.", "out/"):
        result = _invoke(*args, "--json", name)
        assert result.exit_code == 2 and "is a folder name" in result.output, result.output
        assert not Path("new").exists() and not Path("out").exists()
    Path("locked").mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p).name != "locked" and real_access(p, mode))
    result = _invoke(*args, "--json", "locked/deeper/r.json")
    assert result.exit_code == 2 and "locked: cannot write there" in result.output, result.output
    os.mkfifo("locked/pipe")  # as /dev/stdout for a user who cannot write /dev: named for what it is
    result = _invoke(*args, "--json", "locked/pipe")
    assert result.exit_code == 2 and "not an srgan bench result" in result.output, result.output
    assert "benchmarking" not in result.output and not Path("locked/deeper").exists()


def test_a_plain_folder_of_images_is_a_set_of_hr_images_as_train_val_takes_it(bench_dir, tmp_path):
    """`srgan train --val photos/` validated on a folder of images, but `srgan bench --set photos/`
    refused it ("no HR/ folder in it"): the same folder scored one way and not the other."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("baby", "bird"):
        shutil.copy(bench_dir / "set5" / "HR" / f"{name}.png", folder / f"{name}.png")
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert "note: no HR/ folder in" in result.stderr and "their LR made by bicubic imresize" in result.stderr
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["num_images"] == 2 and doc["lr_source"] == "imresize"
    with_hr = _hr_only_folder(tmp_path, bench_dir, names=("baby", "bird"))  # the same images under HR/
    again = _invoke("--set", with_hr, "-m", "bicubic", "--no-lpips", "--json", "-")
    assert json.loads(again.stdout)["models"][0]["psnr"] == doc["models"][0]["psnr"]
    (tmp_path / "empty").mkdir()
    result = _invoke("--set", tmp_path / "empty", "-m", "bicubic")
    assert result.exit_code == 1 and "no HR/ folder in it, nor images" in result.output


def test_save_images_refuses_a_dash(bench_dir, tmp_path, monkeypatch):
    """`--save-images -` made a folder named '-': '-' is standard output everywhere else."""
    monkeypatch.chdir(tmp_path)
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips", "--save-images", "-")
    assert result.exit_code == 2, result.output
    assert "cannot hold images" in result.output and "Traceback" not in result.output
    assert not Path("-").exists()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("-m", "an empty model (an unset variable?); give a model name"),
        ("--json", "an empty path (an unset variable?); give a file name"),
    ],
)
def test_an_empty_model_or_json_is_a_usage_error_naming_an_unset_variable(bench_dir, option, message, monkeypatch):
    """-m '' said ".: is a folder; give a .safetensors weights file", --json '' ". is a folder": now
    the words upscale has, as a usage error found with the options, before any set is read."""
    read = []
    real = core.load_set
    monkeypatch.setattr(core, "load_set", lambda *a, **k: read.append(1) or real(*a, **k))
    args = ["--set", "set5", "--data-dir", bench_dir, "--no-lpips", "-m", "bicubic", option, ""]
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not read


def test_json_carries_the_srgan_version_and_replaces_a_result_written_without_it(bench_dir, tmp_path):
    """bench's JSON had no srgan_version where upscale's report has one; a result of the version
    before (without it) is still an earlier result that a rerun may replace."""
    first = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    second = shutil.copytree(first, tmp_path / "more")
    out = tmp_path / "r.json"
    args = ["--set", first, "--set", second, "-m", "bicubic", "--no-lpips", "--json", out]
    assert _invoke(*args).exit_code == 0
    docs = json.loads(out.read_text())
    assert [d["srgan_version"] for d in docs] == [__version__, __version__]  # each set's result
    for doc in docs:
        del doc["srgan_version"]
    out.write_text(json.dumps(docs))  # as the version before wrote it
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    assert [d["srgan_version"] for d in json.loads(out.read_text())] == [__version__, __version__]
    one = _invoke("--set", first, "-m", "bicubic", "--no-lpips", "--json", "-")
    assert json.loads(one.stdout)["srgan_version"] == __version__


def test_images_of_formats_srgan_does_not_read_are_named_not_dropped_without_a_word(tmp_path):
    """HR/ of a.png, b.heic and c.jxl benchmarked "1 images" and said nothing of the other two."""
    folder = _named_set(tmp_path, ["a.png"])
    for name in ("b.heic", "c.jxl", "readme.txt"):
        (folder / "HR" / name).write_bytes(b"\x00" * 32)
    (folder / "LR_x4").mkdir()
    (folder / "LR_x4" / "a.heic").write_bytes(b"\x00" * 32)
    bench = core.load_set(folder)
    assert [image.name for image in bench.images] == ["a"]
    assert bench.notes[:2] == [
        "2 files in HR/ are images srgan does not read (1 .heic, 1 .jxl), not in the set: b.heic, c.jxl",
        "1 file in LR_x4/ is an image srgan does not read (1 .heic), not used: a.heic",
    ]
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips")
    assert result.exit_code == 0 and "note: 2 files in HR/ are images srgan does not read" in result.output
    (folder / "HR" / "a.png").unlink()
    error = _one_line_error(_invoke("--set", folder, "-m", "bicubic", "--no-lpips"))
    assert "HR: no image srgan reads in it" in error and "(1 .heic, 1 .jxl), passed over: b.heic, c.jxl" in error


def test_avif_files_are_passed_over_with_a_note_where_pillow_lacks_avif(tmp_path, monkeypatch):
    """Where Pillow lacks AVIF, an .avif file in HR/ aborted the benchmark with no table: it is passed
    over, as HEIC is, with a note that says to upgrade Pillow."""
    from srgan_cli import images

    monkeypatch.setattr(images, "_AVIF", False)
    folder = _named_set(tmp_path, ["a.png"])
    (folder / "HR" / "b.avif").write_bytes(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 64)
    bench = core.load_set(folder)
    assert [image.name for image in bench.images] == ["a"]
    assert bench.notes[0] == (
        "1 file in HR/ is an image srgan does not read (1 .avif), not in the set: b.avif; this Pillow lacks AVIF "
        "support: upgrade Pillow (pip install -U pillow) to read AVIF"
    )
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips")
    assert result.exit_code == 0 and "PSNR" in result.stdout, result.output


@pytest.mark.parametrize("folder", ["HR", "LR_x4"])
def test_a_set_image_whose_header_claims_billions_of_pixels_is_refused_before_decoding(tmp_path, folder):
    """`srgan bench --set DIR` decoded a 1.8 KB TIFF claiming 24 x 2,000,000,000 px until the
    machine ran out of memory (22 GB, killed). Run with capped memory, so that the old code fails
    here rather than taking the machine's."""
    pytest.importorskip("resource")
    from conftest import huge_tiff, run_with_memory_cap

    root = tmp_path / "set"
    (root / "HR").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "HR" / "a.png")
    bomb = huge_tiff(root / folder / ("a.tif" if folder == "LR_x4" else "b.tif"))  # LR_x4/a.tif pairs with HR/a.png
    code = (
        "import sys, time\nfrom srgan_cli.cli import main\nstart = time.monotonic()\n"
        "try:\n"
        f"    main(['bench', '--set', {str(root)!r}, '--model', 'bicubic', '--no-lpips', '-q'], prog_name='srgan')\n"
        "finally:\n    print(time.monotonic() - start)\n"
    )
    done = run_with_memory_cap(code)
    assert done.returncode == 1, (done.stdout, done.stderr[-2000:])
    assert done.stderr.strip().splitlines() == [
        f"error: {bomb}: 24x2000000000 px, more than the 100 MP a benchmark image may have; crop or downscale it, "
        "or remove it from the set"
    ]
    assert float(done.stdout.split()[-1]) < 5


def _set_with_lr_in(tmp_path, lr_name):
    """A set of one random HR image and its LR in ``lr_name``/, made by nearest neighbour: unlike
    imresize's LR, so a score tells which was used."""
    folder = _named_set(tmp_path, ["a.png"])
    (folder / lr_name).mkdir()
    with Image.open(folder / "HR" / "a.png") as im:
        im.resize((6, 6), Image.NEAREST).save(folder / lr_name / "a.png")
    return folder


@pytest.mark.parametrize("lr_name", ["LR_X4", "lr_x4"])
def test_the_lr_folder_is_found_whatever_the_case_of_its_name(tmp_path, lr_name):
    """HR/ with LR_X4/ (or lr_x4/) was scored on LR made from HR by imresize, without a note: +2.2 dB
    on a blurred LR set."""
    folder = _set_with_lr_in(tmp_path, lr_name)
    bench = core.load_set(folder)
    given = np.asarray(Image.open(folder / lr_name / "a.png").convert("RGB"))
    assert bench.lr_source == "file" and np.array_equal(bench.images[0].lr, given)
    assert bench.notes == [] and bench.lr_dir == folder / lr_name
    # the set's own LR folder, under the name it has, is never written into by --save-images
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips", "--save-images", folder / lr_name / "out")
    assert "in the set's own" in _one_line_error(result)


def test_the_hr_folder_is_found_whatever_the_case_of_its_name(tmp_path):
    # a set with hr/ and lr_x4/ (made on a system that lower-cases names) was "no HR/ folder"
    folder = _set_with_lr_in(tmp_path, "lr_x4")
    (folder / "HR").rename(folder / "hr")
    bench = core.load_set(core.resolve_set(str(folder)))
    assert bench.lr_source == "file" and len(bench.images) == 1 and bench.notes == []
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips", "--save-images", folder / "hr" / "out")
    assert "in the set's own" in _one_line_error(result)


def test_two_lr_folders_that_differ_in_case_alone_are_an_error_naming_both(tmp_path):
    folder = _set_with_lr_in(tmp_path, "LR_x4")
    shutil.copytree(folder / "LR_x4", folder / "lr_x4")
    line = _one_line_error(_invoke("--set", folder, "-m", "bicubic", "--no-lpips"))
    assert "LR_x4/" in line and "lr_x4/" in line and "keep one" in line


def test_lr_made_from_hr_is_said_naming_lr_folders_that_were_not_used(tmp_path):
    """A set with its LR files in LR/ (or LRbicx4/) was scored on LR made from HR, without a word."""
    folder = _set_with_lr_in(tmp_path, "LR")
    (folder / "LRbicx4").mkdir()
    (folder / "other").mkdir()
    note = (
        f"no LR_x4/ folder in {folder}: every LR image is made from its HR image by bicubic imresize; "
        "LR/, LRbicx4/ were not used: srgan reads LR images from LR_x4/"
    )
    assert core.load_set(folder).notes == [note]
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert f"note: {note}" in result.stderr.splitlines()
    assert json.loads((tmp_path / "r.json").read_text())["lr_source"] == "imresize"
    shutil.rmtree(folder / "LRbicx4")
    (folder / "LR_x4").mkdir()  # there, but empty
    assert core.load_set(folder).notes == [
        f"LR_x4/ in {folder} holds no images: every LR image is made from its HR image by bicubic imresize; "
        "LR/ was not used: srgan reads LR images from LR_x4/"
    ]


class _FakeLpips:
    """LPIPS as srgan's Lpips answers it (None under MIN_SIDE px a side after the border cut), without its weights."""

    MIN_SIDE = 31
    source = "fake lpips"

    def __init__(self, device="cpu"):
        pass

    def __call__(self, sr, hr, crop=0):
        return None if min(hr.shape[:2]) - 2 * crop < self.MIN_SIDE else 0.25


def test_lpips_over_fewer_images_than_psnr_is_said_with_its_count(tmp_path, monkeypatch):
    """A mean LPIPS over the 2 images large enough for it sat beside PSNR/SSIM over all 3, without a word."""
    from srgan_cli import metrics

    folder = tmp_path / "S"
    (folder / "HR").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for name, side in (("big.png", 48), ("large.png", 44), ("small.png", 36)):  # 36 - 8 = 28 px: under 31
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(folder / "HR" / name)
    bench = core.load_set(folder)
    doc = core.run_bench([core.bicubic_upscaler()], bench, lpips=_FakeLpips())
    note = "LPIPS over 2 of 3 images: small.png is too small for it (under 31 px a side after the 4 px border cut)"
    assert doc["notes"][-1] == note
    assert doc["models"][0]["lpips"] == pytest.approx(0.25) and doc["models"][0]["lpips_n"] == 2
    monkeypatch.setattr(metrics, "Lpips", _FakeLpips)
    result = _invoke("--set", folder, "-m", "bicubic", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output
    assert f"note: {note}" in result.stderr.splitlines()
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["notes"][-1] == note and saved["models"][0]["lpips_n"] == 2
    no_lpips = core.run_bench([core.bicubic_upscaler()], bench)
    assert no_lpips["models"][0]["lpips_n"] is None and not any("LPIPS" in n for n in no_lpips["notes"])


def test_every_bad_file_of_a_set_is_named_in_one_error_before_any_model_runs(tmp_path):
    """Only the first bad file was reported: a set with five was fixed one run at a time."""
    import os

    folder = _set_with_lr_in(tmp_path, "LR_x4")
    hr = folder / "HR"
    Image.new("RGB", (40, 40)).save(hr / "b.png")
    (hr / "b.png").write_bytes((hr / "b.png").read_bytes()[:60])  # truncated
    (hr / "c.png").write_bytes(b"")
    (hr / "d.png").symlink_to(tmp_path / "nowhere.png")
    (hr / "e.png").mkdir()
    Image.new("RGB", (16, 40)).save(hr / "f.png")  # too small
    Image.new("RGB", (40, 40)).save(hr / "g.png")
    Image.new("RGB", (3, 3)).save(folder / "LR_x4" / "g.png")  # the wrong size for g's HR
    if hasattr(os, "mkfifo"):
        os.mkfifo(hr / "h.png")
    line = _one_line_error(_invoke("--set", folder, "-m", "bicubic", "--no-lpips"))
    n = 7 if hasattr(os, "mkfifo") else 6
    assert line.startswith(f"error: {n} files of the set cannot be used, fix or remove them: {hr / 'b.png'}: ")
    assert f"{hr / 'c.png'}: " in line and f"{hr / 'd.png'}: " in line  # the first three, each with why
    more = "HR/e.png, HR/f.png, LR_x4/g.png" + (", HR/h.png" if n == 7 else "")
    assert line.endswith(f"; and {n - 3} more: {more}")
    # one bad file: its own error, as before
    for name in "bcdefh":
        if (hr / f"{name}.png").is_dir():
            (hr / f"{name}.png").rmdir()
        elif (hr / f"{name}.png").exists() or (hr / f"{name}.png").is_symlink():
            (hr / f"{name}.png").unlink()
    line = _one_line_error(_invoke("--set", folder, "-m", "bicubic", "--no-lpips"))
    assert line.startswith(f"error: {folder / 'LR_x4' / 'g.png'}: is 3x3 but its HR gives 10x10 at x4")


def _turned_jpeg(path, pixels, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif, quality=95)


def test_an_hr_image_turned_by_its_exif_orientation_and_an_lr_that_is_not_are_said(tmp_path):
    """A phone JPEG (EXIF orientation 6) with an LR made from its stored pixels: srgan turned the HR
    upright and scored it against the LR as stored, 8.8 dB without a word (a square image), or
    stopped with "is 8x10 but its HR gives 10x8" and no hint why (another)."""
    rng = np.random.default_rng(7)
    folder = tmp_path / "S"
    (folder / "HR").mkdir(parents=True)
    (folder / "LR_x4").mkdir()
    square = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    _turned_jpeg(folder / "HR" / "sq.jpg", square, 6)
    Image.fromarray(square).resize((8, 8), Image.BICUBIC).save(folder / "LR_x4" / "sq.png")  # the stored pixels'
    note = (
        "1 HR image and its LR file have different EXIF orientations (sq.jpg: HR 6, LR none): srgan turns each "
        "file upright by its own, so an LR may not match its HR (a score far too low); give both files of a pair "
        "the same orientation"
    )
    assert core.load_set(folder).notes == [note]
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips")
    assert result.exit_code == 0 and f"note: {note}" in result.stderr.splitlines(), result.output
    tall = rng.integers(0, 256, (40, 32, 3), dtype=np.uint8)
    _turned_jpeg(folder / "HR" / "tall.jpg", tall, 6)  # upright, 40 wide and 32 high
    Image.fromarray(tall).resize((8, 10), Image.BICUBIC).save(folder / "LR_x4" / "tall.png")
    line = _one_line_error(_invoke("--set", folder, "-m", "bicubic", "--no-lpips"))
    assert "is 8x10 but its HR gives 10x8 at x4 (the HR is turned by its EXIF orientation 6; the LR is not); " in line
    # the other way round: an LR file turned by its orientation, its HR not
    (folder / "HR" / "tall.jpg").unlink()
    Image.fromarray(tall).save(folder / "HR" / "tall.png")
    _turned_jpeg(folder / "LR_x4" / "tall.jpg", np.asarray(Image.fromarray(tall).resize((8, 10))), 8)
    (folder / "LR_x4" / "tall.png").unlink()
    line = _one_line_error(_invoke("--set", folder, "-m", "bicubic", "--no-lpips"))
    assert "(the LR is turned by its EXIF orientation 8; the HR is not)" in line
    from srgan_cli.images import stored_orientation

    assert stored_orientation(folder / "HR" / "sq.jpg") == 6 and stored_orientation(folder / "HR" / "tall.png") == 1


def test_sub_folders_of_the_hr_folder_holding_images_are_named_in_a_note(tmp_path):
    """HR/2019/*.png were left out of the set without a word (the table said "1 images")."""
    folder = _set_with_lr_in(tmp_path, "LR_x4")
    for sub in ("2019", "2020/deep"):
        (folder / "HR" / sub).mkdir(parents=True)
        shutil.copy(folder / "HR" / "a.png", folder / "HR" / sub / "b.png")
    (folder / "HR" / "empty").mkdir()
    note = (
        "2 sub-folders of HR/ with images were not entered (HR/2019/, HR/2020/): a set's HR images are read "
        "from HR/ itself, not from its sub-folders"
    )
    assert core.load_set(folder).notes == [note]
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips")
    assert result.exit_code == 0 and f"note: {note}" in result.stderr.splitlines(), result.output
    # a plain folder of images: its LR_x4/ is read, another sub-folder is not
    plain = tmp_path / "plain"
    shutil.copytree(folder / "HR", plain)
    shutil.rmtree(plain / "2020")
    shutil.copytree(folder / "LR_x4", plain / "LR_x4")
    notes = core.load_set(plain).notes
    assert notes[0] == (
        f"1 sub-folder of {plain} with images was not entered (2019/): a set's HR images are read from {plain} "
        "itself, not from its sub-folders"
    )
    assert len(notes) == 2 and notes[1].startswith("no HR/ folder in")


def test_sheet_labels_keep_the_psnr_and_small_crops_are_enlarged_to_fit_them(tmp_path, monkeypatch):
    """Labels were cut at side // 8 characters: "my_experiment_run_042_epoch100~" lost its PSNR (and
    told epoch100 from epoch200 by nothing), and a small image's 76 px panels read "bicubic 4~"."""
    from PIL import ImageDraw

    drawn = []
    real_text = ImageDraw.ImageDraw.text
    monkeypatch.setattr(
        ImageDraw.ImageDraw,
        "text",
        lambda self, xy, text, *a, **k: drawn.append(text) or real_text(self, xy, text, *a, **k),
    )
    folder = _named_set(tmp_path, ["a.png"])  # 24 x 24: a 24 px crop, 96 px at 4x
    models = [_tiny(tmp_path / f"my_experiment_run_042_epoch{n}00.safetensors") for n in (1, 2)]
    save = tmp_path / "cmp"
    result = _invoke("--set", folder, "-m", models[0], "-m", models[1], "--no-lpips", "--save-images", save)
    assert result.exit_code == 0, result.output
    labels = [t for t in drawn if t.endswith(" dB")]
    assert len(labels) == 3 and labels[0].startswith("bicubic ") and " " not in labels[0][len("bicubic ") : -3]
    for label, n in zip(labels[1:], (1, 2), strict=True):
        assert label.startswith("my_exp") and label.endswith(f"{n}00 " + label.split()[-2] + " dB"), label
        assert float(label.split()[-2]) > 0  # the PSNR figure, whole
    with Image.open(save / "sheets" / "a.png") as sheet:
        assert sheet.width >= 5 * (core.SHEET_MIN_PANEL + 4)  # overview, HR, bicubic and two models
    wide = core.fit_label("my_experiment_run_042_epoch100", " 33.17 dB", 1000, len)
    assert wide == "my_experiment_run_042_epoch100 33.17 dB"
    assert core.fit_label("my_experiment_run_042_epoch100", " 33.17 dB", 25, len) == "my_expe...och100 33.17 dB"


def test_per_image_rows_escape_names_and_one_image_is_singular(tmp_path):
    """A newline in a file name broke its row in two, a name not valid UTF-8 shifted the row's
    columns; and the caption said "1 images", the note "its 1 image are the HR images"."""
    import os

    folder = tmp_path / "plain"
    folder.mkdir()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / "a.png")
    os.rename(folder / "a.png", os.path.join(os.fsencode(folder), b"new\nline\xe9.png"))
    result = _invoke("--set", folder, "-m", "bicubic", "--no-lpips", "--per-image")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "new" in line]
    assert len(rows) == 1 and "new\\nline\\xe9" in rows[0], result.stdout
    widths = {len(line) for line in result.stdout.splitlines() if line.startswith(("│", "┃", "┡", "└", "┏"))}
    assert len(widths) == 1, result.stdout  # every row of the table as wide as the others
    assert "x4, 1 image, LR from" in " ".join(result.stdout.split())
    assert f"note: no HR/ folder in {folder}: its 1 image is the HR image, its LR made by bicubic imresize" in (
        result.stderr.splitlines()
    )


def test_a_file_given_to_set_is_said_to_be_a_file(tmp_path, monkeypatch):
    """`--set photo.png` said "no such folder" of a file that is there."""
    Image.new("RGB", (40, 40)).save(tmp_path / "photo.png")
    monkeypatch.chdir(tmp_path)
    for given in (tmp_path / "photo.png", "photo.png"):
        assert _one_line_error(_invoke("--set", given, "-m", "bicubic")) == (
            f"error: {given}: is a file; --set takes a folder (a set's folder, or one with HR/ in it)"
        )


# ----------------------------------------------------------------------------- a Hub that never answers


class _SilentHub:
    """A server that accepts connections and never answers: a stalled proxy, a captive portal."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.connections: list = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(connection)  # held open, never read or answered

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        for connection in self.connections:  # a client still waiting gets its end of file
            connection.close()
        self.sock.close()


@pytest.fixture
def silent_hub(monkeypatch, tmp_path):
    """(server, Hugging Face cache folder): the Hub client sent to a server that never answers, with
    an empty cache of its own, and srgan's wait for an answer made short."""
    from huggingface_hub import constants

    from srgan_cli import hub

    server = _SilentHub()
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    for key in ("HF_HUB_OFFLINE", "HF_TOKEN", "SRGAN_DATA_DIR", "SRGAN_BENCH_REPO"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_IMPLICIT_TOKEN", True)
    monkeypatch.setattr(hub, "HUB_TIMEOUT", 0.5, raising=False)  # the base had no limit at all
    yield server, cache
    server.close()


def _cache_set(cache, bench_dir, repo="someone/sets", name="set5"):
    """``name`` of ``bench_dir`` in the Hugging Face cache as the dataset ``repo`` (main), as a download leaves it."""
    commit = "c" * 40
    storage = cache / f"datasets--{repo.replace('/', '--')}"
    shutil.copytree(bench_dir / name, storage / "snapshots" / commit / name)
    (storage / "refs").mkdir()
    (storage / "refs" / "main").write_text(commit)
    return storage / "snapshots" / commit / name


def test_a_hub_that_never_answers_is_waited_for_a_while_then_the_cached_set_is_used(silent_hub, bench_dir):
    """An endpoint that took the connection and never answered hung `srgan bench --set set5` for good,
    the set in the cache or not: the Hub's revision was asked for with no time limit."""
    server, cache = silent_hub
    folder = _cache_set(cache, bench_dir)
    assert in_time(lambda: core.resolve_set("set5", hub_dataset="someone/sets")) == folder
    assert server.connections  # it was asked, and not answered
    result = in_time(lambda: _invoke("--set", "set5", "-m", "bicubic", "--no-lpips", "--hub-dataset", "someone/sets"))
    assert result.exit_code == 0, result.output
    assert "28.42" in result.stdout


def test_a_hub_that_never_answers_with_the_set_not_cached_is_a_one_line_error(silent_hub):
    server, _ = silent_hub
    result = in_time(lambda: _invoke("--set", "set5", "-m", "bicubic", "--hub-dataset", "someone/sets"))
    line = _one_line_error(result)
    assert "someone/sets" in line and "no answer within 0.5 s" in line and server.url in line
    assert "set5/ is not in the Hugging Face cache" in line and "--data-dir" in line


def test_offline_with_the_set_not_cached_says_so_whole(silent_hub):
    """HF_HUB_OFFLINE=1: the error quoted the Hub client's own, cut mid-word at 160 characters ("downloa"),
    and said to check the network."""
    from huggingface_hub import constants

    server, _ = silent_hub
    constants.HF_HUB_OFFLINE = True  # put back by the fixture's monkeypatch
    args = ["bench", "--set", "set5", "-m", "bicubic", "--hub-dataset", "a/b"]
    result = CliRunner().invoke(main, args, env={"HF_HUB_OFFLINE": "1"})
    line = _one_line_error(result)
    assert "a/b" in line and "HF_HUB_OFFLINE is set" in line and "network" not in line
    assert line.endswith("--data-dir DIR holding set5/HR and set5/LR_x4")
    assert not server.connections


# ----------------------------------------------------------------------------- more of bench's fixes


def test_the_paired_table_tells_a_model_the_same_as_the_first_from_one_worse_everywhere(bench_dir, tmp_path):
    """It showed images better / n alone: "0/5" for the same model twice (0 better, 0 worse) and for one
    worse on every image."""
    weights = _tiny(tmp_path / "tiny.safetensors")
    result = _invoke(
        "--set", "set5", "-m", "bicubic", "-m", "bicubic", "-m", weights, "--data-dir", bench_dir, "--no-lpips",
        "--paired",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = {words[0]: line for line in result.stdout.splitlines() if (words := line.split())}
    assert " 0/0 of 5 " in rows["bicubic-2"] and " 0/5 of 5 " in rows["tiny"]
    assert "better/worse" in result.stdout
    rows = [{"psnr": 30.0, "ssim": 0.9, "lpips": 0.1}, {"psnr": 31.0, "ssim": 0.9, "lpips": 0.3}]
    base = [{"psnr": 29.0, "ssim": 0.8, "lpips": 0.2}, {"psnr": 31.0, "ssim": 0.8, "lpips": 0.2}]
    paired = core.paired_difference(rows, base, "bicubic")
    assert (paired["better"], paired["worse"], paired["lpips_lower"], paired["lpips_higher"]) == (1, 0, 1, 1)


def _sheet_width(folder):
    with Image.open(next((folder / "sheets").iterdir())) as sheet:
        return sheet.width


def test_a_weights_file_named_bicubic_does_not_take_the_baselines_name_nor_its_panel(bench_dir, tmp_path):
    """bicubic.safetensors was "bicubic" in the table and the JSON, and the sheets left the real bicubic
    panel out for it, labelling the model's output bicubic."""
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    other = _tiny(tmp_path / "tiny.safetensors")
    named = tmp_path / "bicubic.safetensors"
    shutil.copy(other, named)
    out = tmp_path / "r.json"
    result = _invoke(
        "--set", folder, "-m", named, "-m", "bicubic", "--no-lpips", "--paired", "--json", out,
        "--save-images", tmp_path / "a",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert [m["name"] for m in doc["models"]] == ["bicubic.safetensors", "bicubic"]
    assert "paired per image against bicubic.safetensors" in " ".join(result.stdout.split())
    assert (tmp_path / "a" / "bicubic" / "baby.png").is_file()
    assert (tmp_path / "a" / "bicubic.safetensors" / "baby.png").is_file()
    assert core.model_label("x/BICUBIC.safetensors") == "BICUBIC.safetensors"
    # alone, the file's sheet has the bicubic panel a model's sheet has: HR, bicubic and the model
    assert _invoke("--set", folder, "-m", named, "--no-lpips", "--save-images", tmp_path / "b").exit_code == 0
    assert _invoke("--set", folder, "-m", other, "--no-lpips", "--save-images", tmp_path / "c").exit_code == 0
    assert _sheet_width(tmp_path / "b") == _sheet_width(tmp_path / "c")


def test_a_set_folder_under_data_dir_is_found_whatever_its_case(bench_dir, tmp_path, monkeypatch):
    """Set5/ under --data-dir was "no set5/HR in it": set folders had to be lower-case."""
    shutil.copytree(bench_dir / "set5", tmp_path / "Set5")
    assert core.resolve_set("set5", data_dir=tmp_path) == tmp_path / "Set5"
    result = _invoke("--set", "Set5", "-m", "bicubic", "--data-dir", tmp_path, "--no-lpips")
    assert result.exit_code == 0, result.output
    assert "28.42" in result.stdout
    line = _one_line_error(_invoke("--set", "SET14", "-m", "bicubic", "--data-dir", tmp_path))
    assert "no SET14/HR in it" in line  # what was typed


@pytest.mark.parametrize(
    ("how", "value"),
    [
        ("--hub-dataset", "bad repo name"),
        ("--hub-dataset", "a/b/c"),
        ("SRGAN_BENCH_REPO", "https://huggingface.co/datasets/a/b"),
    ],
)
def test_a_malformed_hub_dataset_is_a_usage_error_naming_where_it_came_from(monkeypatch, how, value):
    """It was sent to the Hub, whose refusal read "check the network"."""
    import huggingface_hub

    def asked(**kwargs):
        raise AssertionError("the Hub was asked")

    monkeypatch.delenv("SRGAN_DATA_DIR", raising=False)
    monkeypatch.delenv("SRGAN_BENCH_REPO", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", asked)
    _hub_asked(monkeypatch, AssertionError("the Hub was asked"))
    args = ["--set", "set5", "-m", "bicubic"]
    if how == "--hub-dataset":
        args += ["--hub-dataset", value]
    else:
        monkeypatch.setenv(how, value)
    result = _invoke(*args)
    assert result.exit_code == 2, result.output
    assert f"{how} {value!r}: not a Hub dataset name" in result.stderr and "network" not in result.stderr


def test_a_data_dir_that_is_a_file_is_said_to_be_a_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SRGAN_DATA_DIR", str(tmp_path / "f"))
    (tmp_path / "f").write_text("x")
    line = _one_line_error(_invoke("--set", "set5", "-m", "bicubic"))
    assert f"SRGAN_DATA_DIR {tmp_path / 'f'}: is a file, not a folder" in line


def test_a_long_library_message_is_cut_at_the_end_of_a_word():
    words = "outgoing traffic has been disabled; to enable repo look-ups and downloads online set it " * 4
    short = core._short(OSError(words))
    assert len(short) <= 160 and short.endswith("...")
    assert short[:-3].split() == words.split()[: len(short[:-3].split())]  # every word whole
    assert core._short(OSError("short\nsecond line")) == "short"


@pytest.mark.parametrize("model", ["lr_x4", "hr", "Lr_X4"])
def test_save_images_never_writes_a_folder_the_next_run_takes_for_the_sets_own(tmp_path, model):
    """A model lr_x4.safetensors saved into the set's folder made lr_x4/ beside LR_x4/ (or hr/ beside HR/):
    both are found whatever their case, so the next run refused the set, or read the model's images."""
    folder = _set_with_lr_in(tmp_path, "LR_x4")
    weights = _tiny(tmp_path / f"{model}.safetensors")
    line = _one_line_error(_invoke("--set", folder, "-m", weights, "--no-lpips", "--save-images", folder))
    assert "would be read as its own" in line
    assert sorted(p.name for p in folder.iterdir()) == ["HR", "LR_x4"]
    line = _one_line_error(_invoke("--set", folder, "-m", "bicubic", "--no-lpips", "--save-images", folder / "hr"))
    assert "HR/" in line
    assert sorted(p.name for p in folder.iterdir()) == ["HR", "LR_x4"]


def test_saved_images_are_those_srgan_upscale_writes_byte_for_byte(bench_dir, tmp_path):
    """bench rounded outputs in float64, upscale in float32: a pixel of bird at 82.5 in float32 was 83 in
    bench's image and 82 in upscale's."""
    folder = tmp_path / "bird"
    for sub in ("HR", "LR_x4"):
        (folder / sub).mkdir(parents=True)
        shutil.copy(bench_dir / "set5" / sub / "bird.png", folder / sub / "bird.png")
    result = _invoke(
        "--set", folder, "-m", "srresnet_x4", "--device", "cpu", "--no-lpips", "--save-images", tmp_path / "s"
    )
    assert result.exit_code == 0, result.output
    up = CliRunner().invoke(
        main, ["upscale", str(folder / "LR_x4" / "bird.png"), "-o", str(tmp_path / "u.png"), "-m", "srresnet_x4",
               "--device", "cpu", "--precision", "fp32"]
    )  # fmt: skip
    assert up.exit_code == 0, up.output
    with Image.open(tmp_path / "s" / "srresnet_x4" / "bird.png") as a, Image.open(tmp_path / "u.png") as b:
        assert np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))


def test_flags_that_add_nothing_say_so(bench_dir):
    """--paired with one model and --ensemble with bicubic alone printed nothing more, without a word."""
    result = _invoke("--set", "set5", "-m", "bicubic", "--data-dir", bench_dir, "--no-lpips", "--paired", "--ensemble")
    assert result.exit_code == 0, result.output
    assert "note: --paired" in result.stderr and "note: --ensemble" in result.stderr
    assert "paired" not in result.stdout


def test_hub_refs_keep_their_repo_in_the_table_the_json_and_the_folders(bench_dir, tmp_path, monkeypatch):
    """Hub refs went by their file's stem: alice/zoo:a/model.safetensors, alice/zoo:b/model.safetensors
    and bob/sr:model.safetensors were "model", "model-2" and "sr:model-2", rows told apart by nothing."""
    specs = [
        "alice/zoo:a/model.safetensors",
        "alice/zoo:b/model.safetensors",
        "alice/sr:model.safetensors",
        "hf://bob/sr:model.safetensors@v1.0",
        "bob/sr",
    ]
    labels = ["alice/zoo:a/model", "alice/zoo:b/model", "alice/sr:model", "bob/sr:model@v1.0", "bob/sr"]
    assert [core.model_label(spec) for spec in specs] == labels
    local = _tiny(tmp_path / "gen.safetensors")
    assert core.model_label(str(local)) == "gen"

    def stand_in(spec, device, precision="auto", name=None, ensemble=False):  # no Hub here: bicubic for each
        return core.bicubic_upscaler(4, name=name)

    monkeypatch.setattr(core, "model_upscaler", stand_in)
    folder = _hr_only_folder(tmp_path, bench_dir, names=("baby",))
    out, save = tmp_path / "r.json", tmp_path / "cmp"
    result = _invoke(
        "--set", folder, *(a for s in specs for a in ("-m", s)), "--no-lpips", "--json", out, "--save-images", save
    )
    assert result.exit_code == 0, result.output
    assert [m["name"] for m in json.loads(out.read_text())["models"]] == labels
    folders = sorted(p.name for p in save.iterdir() if p.name != "sheets")
    assert folders == ["alice_sr_model", "alice_zoo_a_model", "alice_zoo_b_model", "bob_sr", "bob_sr_model_v1.0"]
