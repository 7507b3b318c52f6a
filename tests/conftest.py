"""Shared test settings: CPU only, few threads, the shared data folder beside the repo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (benchmark sets, training images, VGG19); skips the test if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present beside the repository")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _few_threads():
    """One intra-op thread: CI has 2 cores, and tests that spawn processes must not oversubscribe."""
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _deterministic_torch():
    import torch

    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _no_lpips_weights(monkeypatch, tmp_path_factory):
    """LPIPS weights made on this machine (python -m srgan_cli.perceptual) must not reach tests:
    each test sees none unless it makes its own."""
    monkeypatch.setenv("SRGAN_LPIPS_WEIGHTS", str(tmp_path_factory.getbasetemp() / "no-lpips-weights.safetensors"))
