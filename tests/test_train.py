"""srgan train: the mse and gan stages, run files, exact resume, crash safety, config handling."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from safetensors.torch import load_file

from srgan_cli.cli import main
from srgan_cli.config import GeneratorConfig
from srgan_cli.errors import SrganError
from srgan_cli.models import build_generator
from srgan_cli.train import CHECKPOINT, TrainConfig, ema_decay, load_checkpoint, train
from srgan_cli.weights import load_generator, read_metadata, save_generator

REPO = Path(__file__).resolve().parents[1]
TINY = {"num_blocks": 1, "num_features": 8, "batch_size": 4, "patch_size": 16, "workers": 0, "device": "cpu"}


def _images(folder: Path, count: int = 3, size: int = 40, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        f = rng.uniform(2, 6, 3)
        img = np.stack([np.sin(f[c] * (xx + c * yy) + i) for c in range(3)], -1) * 0.5 + 0.5
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture()
def data(tmp_path):
    return _images(tmp_path / "images")


def _options(data: Path, **extra):
    return {"data": str(data), **TINY, **extra}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path / CHECKPOINT)["generator"]


def test_mse_run_lowers_loss_and_writes_run_files(tmp_path):
    data = _images(tmp_path / "one", count=1, size=32)
    val = _images(tmp_path / "val", count=1, size=32, seed=5)
    run = tmp_path / "run"
    result = train(_options(data, steps=30, lr=1e-3, checkpoint_every=10, val=str(val), val_every=15, log_every=5), run)
    first, last = np.mean(result.losses[:5]), np.mean(result.losses[-5:])
    assert last < 0.7 * first
    for name in ("config.json", "metrics.jsonl", CHECKPOINT, "generator.safetensors", "generator_best.safetensors"):
        assert (run / name).is_file(), name
    config = json.loads((run / "config.json").read_text())
    assert config["stage"] == "mse" and config["steps"] == 30 and config["lr"] == 1e-3
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [5, 10, 15, 20, 25, 30]
    assert {"step", "loss", "lr", "patches_per_s", "val_psnr"} <= set(lines[0])
    assert lines[2]["val_psnr"] is not None and lines[2]["val_psnr"] > 5
    model, gconf, meta = load_generator(run / "generator.safetensors")
    assert gconf.num_blocks == 1 and gconf.num_features == 8
    assert meta["stage"] == "mse" and meta["steps"] == "30" and meta["seed"] == "0" and meta["data"] == str(data)
    best_meta = read_metadata(run / "generator_best.safetensors")
    assert float(best_meta["val_psnr"]) == pytest.approx(max(r["val_psnr"] for r in lines if r["val_psnr"]), abs=1e-3)
    state = torch.load(run / CHECKPOINT, weights_only=True)
    assert state["step"] == 30 and "optimizer_g" in state and "rng" in state
    no_hidden_leftovers = [p for p in run.iterdir() if p.name.startswith(".")]
    assert not no_hidden_leftovers


def test_resume_gives_identical_weights(data, tmp_path):
    opts = _options(data, steps=6, checkpoint_every=3, lr=1e-3)
    train(opts, tmp_path / "full")
    train({**opts, "steps": 4}, tmp_path / "part")
    result = train({"steps": 6}, tmp_path / "part", resume=True)
    assert result.step == 6
    full, part = _weights(tmp_path / "full"), _weights(tmp_path / "part")
    assert full.keys() == part.keys()
    for key in full:
        assert torch.equal(full[key], part[key]), key
    # The metrics of the resumed run have each step once.
    steps = [json.loads(line)["step"] for line in (tmp_path / "part" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 6


def test_a_resume_with_other_options_keeps_the_earlier_config(data, tmp_path):
    # config.json was replaced by the resumed run's: the record of how the first steps were trained was lost
    run = tmp_path / "run"
    opts = _options(data, steps=4, checkpoint_every=2, lr=1e-3)
    train({**opts, "steps": 2}, run)
    first = (run / "config.json").read_text()
    notes: list[str] = []
    train({**opts, "steps": 2}, run, resume=True, report=lambda e: notes.append(e.get("message", "")))
    assert not list(run.glob("config.step*.json"))  # the same options: nothing to keep
    train({"steps": 4, "lr": 5e-4}, run, resume=True, report=lambda e: notes.append(e.get("message", "")))
    assert (run / "config.step2.json").read_text() == first
    assert json.loads((run / "config.json").read_text())["lr"] == 5e-4 and json.loads(first)["lr"] == 1e-3
    assert (
        "config.json: the options changed on resume; those of the steps before 2 are kept in config.step2.json" in notes
    )


def test_existing_run_without_resume_is_refused(data, tmp_path):
    train(_options(data, steps=2), tmp_path / "run")
    before = (tmp_path / "run" / CHECKPOINT).read_bytes()
    with pytest.raises(SrganError, match="--resume"):
        train(_options(data, steps=2), tmp_path / "run")
    assert (tmp_path / "run" / CHECKPOINT).read_bytes() == before
    with pytest.raises(SrganError, match="no checkpoint"):
        train(_options(data, steps=2), tmp_path / "fresh", resume=True)
    with pytest.raises(SrganError, match="num-blocks"):
        train({"num_blocks": 2}, tmp_path / "run", resume=True)


def test_corrupt_checkpoint_is_one_line_error(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=2), run)
    blob = (run / CHECKPOINT).read_bytes()
    (run / CHECKPOINT).write_bytes(blob[: len(blob) // 2])
    result = CliRunner().invoke(main, ["train", "--out", str(run), "--resume"])
    assert result.exit_code == 1
    assert "corrupt" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_gan_stage_requires_init(data, tmp_path):
    with pytest.raises(SrganError, match="--init"):
        train(_options(data, stage="gan", steps=2), tmp_path / "run")


def test_cli_config_toml_and_override(data, tmp_path):
    cfg = tmp_path / "train.toml"
    cfg.write_text(
        "[train]\n"
        f'data = "{data.as_posix()}"\n'
        "steps = 3\nnum-blocks = 1\nnum_features = 8\nbatch-size = 2\npatch-size = 16\nworkers = 0\n"
        'device = "cpu"\nlr = 0.0005\n'
    )
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--config", str(cfg), "--out", str(run), "--steps", "2", "-q"])
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["steps"] == 2 and config["lr"] == 0.0005 and config["batch_size"] == 2
    cfg.write_text("[train]\nstepz = 3\n")
    args = ["train", "--config", str(cfg), "--out", str(tmp_path / "r2"), "--data", str(data)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "stepz" in result.output and "Traceback" not in result.output


def test_a_config_file_is_utf8_and_may_start_with_a_bom(data, tmp_path):
    """A BOM (Windows PowerShell 5's utf8) gave "Invalid statement (line 1, column 1)"; the file
    was read in the locale's encoding (cp1252 on Windows misread a folder named "Álbum"; it is now
    decoded from its bytes, which no locale reaches)."""

    folder = tmp_path / "Álbum"
    folder.mkdir()
    for image in data.iterdir():
        (folder / image.name).write_bytes(image.read_bytes())
    cfg = tmp_path / "train.toml"
    text = f'[train]\ndata = "{folder.as_posix()}"\nsteps = 1\nnum-blocks = 1\nnum_features = 8\nbatch-size = 2\n'
    text += 'patch-size = 16\nworkers = 0\ndevice = "cpu"\n'
    cfg.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    result = CliRunner().invoke(main, ["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"].endswith("Álbum")


def test_cli_bad_options_are_usage_errors(data, tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--steps", "0"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    result = runner.invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--patch-size", "30"])
    assert result.exit_code == 2 and "multiple of the scale" in result.output  # a bad value: a usage error
    ignored = (["--lr-step", "5"], ["--best-by", "psnr"])  # were accepted and did nothing
    for args in (
        ["--lr", "nan"],
        ["--seed", "-1"],
        ["--device", "foo"],
        ["--val-holdout", "1", "--val", "set5"],
        *ignored,
    ):
        result = runner.invoke(main, ["train", "--data", str(data), "--out", str(tmp_path / "r"), *args])
        assert result.exit_code == 2 and "Traceback" not in result.output, (args, result.output)
    assert not (tmp_path / "r").exists()


def test_wrong_val_fails_before_the_training_images_are_read(data, tmp_path, monkeypatch):
    import srgan_cli.train as train_module

    def scan(*args, **kwargs):
        raise AssertionError("training images scanned before --val was checked")

    monkeypatch.setattr(train_module, "scan_images", scan)
    args = ["train", "--data", str(data), "--out", str(tmp_path / "r"), "--val", str(tmp_path / "set7")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "--val" in result.output and "not a named set" in result.output


def test_sigterm_while_the_run_starts_exits_130_with_a_message(data, tmp_path, monkeypatch):
    """Before the training loop (reading images, building models) SIGTERM stops like Ctrl-C:
    a line and 130, not a silent death by signal (143)."""
    import srgan_cli.train as train_module

    real = train_module.scan_images

    def scan(*args, **kwargs):
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):  # would kill the test run
            raise AssertionError("SIGTERM is not handled while the run starts")
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "scan_images", scan)
    result = _cli_train(data, tmp_path / "r", "--steps", "100")
    assert result.exit_code == 130 and "interrupted" in result.output, result.output
    assert not (tmp_path / "r").exists()  # stopped before the first step: nothing to keep
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back


@pytest.mark.parametrize("when", [0.0, None])
def test_sigkill_leaves_a_resumable_checkpoint(data, tmp_path, when):
    """Kill -9 a training process mid-run (possibly mid-write): the last checkpoint still loads."""
    run = tmp_path / "run"
    args = [sys.executable, "-m", "srgan_cli", "train", "--data", str(data), "--out", str(run), "--steps", "100000"]
    args += ["--num-blocks", "1", "--num-features", "8", "--batch-size", "2", "--patch-size", "16", "--workers", "0"]
    args += ["--checkpoint-every", "1", "--device", "cpu", "--threads", "1", "-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (run / CHECKPOINT).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (run / CHECKPOINT).exists(), proc.stderr.read().decode() if proc.poll() is not None else "no checkpoint"
    time.sleep(0.3 if when is None else 0.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    step = load_checkpoint(run / CHECKPOINT)["step"]
    assert step >= 1
    result = train({"steps": step + 2}, run, resume=True)
    assert result.step == step + 2
    assert load_file(str(run / "generator.safetensors"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_saves_a_checkpoint_and_exits_130(data, tmp_path, sig):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "srgan_cli", "train", "--data", str(data), "--out", str(run), "--steps", "100000"]
    args += ["--num-blocks", "1", "--num-features", "8", "--batch-size", "2", "--patch-size", "16", "--workers", "0"]
    args += ["--checkpoint-every", "100000", "--log-every", "1", "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "step 3/" not in seen:
        line = proc.stderr.readline()
        assert line, f"training ended early: {seen}"
        seen += line
    proc.send_signal(sig)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, seen + rest
    assert "Traceback" not in rest and "continue with --resume" in rest
    state = load_checkpoint(run / CHECKPOINT)
    assert state["step"] >= 3
    assert load_generator(run / "generator.safetensors")[2]["steps"] == str(state["step"])


def test_a_non_finite_loss_stops_the_run_before_it_is_saved(data, tmp_path, monkeypatch):
    """Losses are read back once per log window, not every step; a NaN at step 3 must still be
    reported as step 3 and stop the run before the step-4 checkpoint or the metrics take it."""
    from srgan_cli import train as train_module

    real = train_module._Trainer._train_step

    def step(self, lr, hr):
        values = real(self, lr, hr)
        return {"loss": torch.tensor(float("nan"))} if self.step == 2 else values

    monkeypatch.setattr(train_module._Trainer, "_train_step", step)
    run = tmp_path / "run"
    with pytest.raises(SrganError, match="at step 3;"):
        train(_options(data, steps=8, checkpoint_every=2, log_every=10), run)
    assert load_checkpoint(run / CHECKPOINT)["step"] == 2
    assert all(torch.isfinite(t).all() for t in _weights(run).values() if t.is_floating_point())
    assert not (run / "metrics.jsonl").exists() or "NaN" not in (run / "metrics.jsonl").read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_the_process_and_then_its_group_still_saves(data, tmp_path, sig):
    """`timeout 8h srgan train ...` (SIGTERM; `-s INT` for Ctrl-C's) signals the trainer, then its
    whole process group (loader workers too): one request delivered twice, which must still save
    a checkpoint, not lose it to a worker killed mid-step. SIGHUP (the SSH session closed) reaches
    the group too: it killed the run (exit 129) with no checkpoint."""
    run = tmp_path / "run"
    args = [sys.executable, "-m", "srgan_cli", "train", "--data", str(data), "--out", str(run), "--steps", "100000"]
    args += ["--num-blocks", "1", "--num-features", "8", "--batch-size", "2", "--patch-size", "16", "--workers", "2"]
    args += ["--checkpoint-every", "100000", "--log-every", "1", "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def default_handling() -> None:  # the suite may run under nohup, or as a background job (SIGINT ignored)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    proc = subprocess.Popen(
        args, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=default_handling
    )
    seen = ""
    while "step 3/" not in seen:
        line = proc.stderr.readline()
        assert line, f"training ended early: {seen}"
        seen += line
    proc.send_signal(sig)
    os.killpg(proc.pid, sig)
    rest = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, seen + rest
    assert "continue with --resume" in rest, rest
    assert load_checkpoint(run / CHECKPOINT)["step"] >= 3


def _train_on_a_thread(*args, **kwargs) -> BaseException | None:
    """train(*args, **kwargs) on a thread other than the main one, where no signal reaches it; what it raised."""
    import threading

    raised: list[BaseException | None] = [None]

    def work() -> None:
        try:
            train(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised[0] = exc

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(120)
    assert not thread.is_alive()
    return raised[0]


@pytest.mark.parametrize("how", ["stop", "report"])
def test_a_run_on_another_thread_stops_cleanly_when_asked(data, tmp_path, how):
    """train() on a thread other than the main one (a GUI's or a server's worker) could not be
    stopped cleanly: no signal handler there, and a KeyboardInterrupt raised from ``report`` cut the
    run short with nothing saved (30 steps lost). ``stop`` returning true, or that KeyboardInterrupt,
    now does what a first Ctrl-C does in the main thread: the step ends, a checkpoint is saved, an
    ``interrupted`` event is reported and KeyboardInterrupt raised; --resume goes on."""
    import threading

    asked = threading.Event()
    events: list[dict] = []

    def report(event: dict) -> None:
        events.append(event)
        if event["event"] == "log" and event["step"] >= 3:
            asked.set()  # a "Stop" button pressed
        if how == "report" and asked.is_set():
            raise KeyboardInterrupt

    run = tmp_path / "run"
    options = _options(data, steps=100, log_every=1, checkpoint_every=1000)
    extra = {"stop": asked.is_set} if how == "stop" else {}
    raised = _train_on_a_thread(options, run, report=report, **extra)
    assert isinstance(raised, KeyboardInterrupt), raised
    assert [e["event"] for e in events][-3:] == ["log", "checkpoint", "interrupted"]
    end = events[-1]
    assert end["step"] == 3 and end["saved"] and end["resumable"]
    assert load_checkpoint(run / CHECKPOINT)["step"] == 3
    assert train({"steps": 5}, run, resume=True).step == 5


def test_a_stop_asked_before_the_first_step_saves_nothing_and_a_stop_must_be_callable(data, tmp_path):
    raised = _train_on_a_thread(_options(data, steps=5), tmp_path / "run", stop=lambda: True)
    assert isinstance(raised, KeyboardInterrupt), raised
    assert not (tmp_path / "run").exists()  # nothing to keep, as for a Ctrl-C during the set-up
    import threading

    with pytest.raises(TypeError, match="stop must be a callable"):
        train(_options(data, steps=5), tmp_path / "run", stop=threading.Event())


def test_a_second_ctrl_c_later_stops_at_once(monkeypatch):
    from srgan_cli import stopping
    from srgan_cli.train import _Interrupt

    with _Interrupt(enabled=True) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the same request, delivered twice
        assert stop.requested
        monkeypatch.setattr(stopping, "SAME_REQUEST", 0.0)
        time.sleep(0.01)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # the handler runs between bytecodes; give it the chance


def test_sighup_is_a_stop_request_unless_it_is_ignored():
    from srgan_cli.train import _Interrupt

    before = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with _Interrupt(enabled=True) as stop:
            assert callable(signal.getsignal(signal.SIGHUP)), "SIGHUP is not handled"  # would kill the test run
            os.kill(os.getpid(), signal.SIGHUP)
            assert stop.requested
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL  # put back
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup: the run is to outlive the terminal
        with _Interrupt(enabled=True) as stop:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.1)
            assert not stop.requested
    finally:
        signal.signal(signal.SIGHUP, before)


def test_loader_workers_leave_sighup_to_the_main_process():
    """Forked workers ignored it only by inheriting the trainer's handler; spawned ones (macOS, and
    Linux's default from Python 3.14) died of the group's SIGHUP and failed the run."""
    code = (
        "import signal; from srgan_cli.data import _worker_init; _worker_init(0); "
        "print(signal.getsignal(signal.SIGHUP) is signal.SIG_IGN)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "True", result.stderr


VGG_FILE = "vgg19/vgg19_features_caffe_fp16.safetensors"


@pytest.fixture()
def mse_generator(tmp_path):
    """A tiny trained-for-a-moment mse generator: the gan stage's --init."""
    data = _images(tmp_path / "init_images", count=1, size=32)
    train(_options(data, steps=3), tmp_path / "mse")
    return tmp_path / "mse" / "generator.safetensors"


def test_gan_run_lowers_content_loss(shared_data, mse_generator, tmp_path):
    data = _images(tmp_path / "one", count=1, size=32, seed=3)
    run = tmp_path / "gan"
    opts = _options(data, stage="gan", init=str(mse_generator), steps=16, batch_size=2, patch_size=32, lr=1e-3)
    opts.update(vgg_weights=str(shared_data / VGG_FILE), lr_decay="none", checkpoint_every=8)
    result = train(opts, run)
    content = [h["loss_content"] for h in result.history]
    assert len(content) == 16 and all(np.isfinite(content))
    assert np.mean(content[-4:]) < np.mean(content[:4])
    assert all(np.isfinite(h["loss_d"]) and np.isfinite(h["loss_adv"]) for h in result.history)
    state = load_checkpoint(run / CHECKPOINT)
    assert state["discriminator"] is not None and state["optimizer_d"] is not None
    meta = read_metadata(run / "generator.safetensors")
    assert meta["stage"] == "gan" and meta["init"] == str(mse_generator)
    # The gan stage starts from --init: the first generator equals the mse one's config.
    assert load_generator(run / "generator.safetensors")[1] == load_generator(mse_generator)[1]


def test_gan_without_vgg_fails_before_training(mse_generator, data, tmp_path, monkeypatch):
    from torchvision.models._api import WeightsEnum

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    run = tmp_path / "gan"
    args = ["train", "--stage", "gan", "--init", str(mse_generator), "--data", str(data), "--out", str(run)]
    args += ["--steps", "2", "--patch-size", "32", "--batch-size", "2", "--workers", "0", "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "VGG19" in result.output and "--vgg-weights" in result.output and "Traceback" not in result.output
    assert not (run / CHECKPOINT).exists()


def test_gan_resume_gives_identical_weights(shared_data, mse_generator, data, tmp_path):
    opts = _options(data, stage="gan", init=str(mse_generator), steps=4, batch_size=2, patch_size=16)
    opts.update(vgg_weights=str(shared_data / VGG_FILE), content_loss="vgg22", gan_type="relativistic")
    opts.update(pixel_weight=0.01, pixel_loss="l1", ema=0.5, checkpoint_every=2, lr_step=3)  # a drop after the resume
    opts.update(content_jitter=4, d_jitter=4)  # their random offsets continue exactly too
    train(opts, tmp_path / "full")
    train({**opts, "steps": 2}, tmp_path / "part")
    train({"steps": 4}, tmp_path / "part", resume=True)
    a, b = load_checkpoint(tmp_path / "full" / CHECKPOINT), load_checkpoint(tmp_path / "part" / CHECKPOINT)
    for part in ("generator", "discriminator", "ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    # With --ema the exported weights are the EMA generator's, not the raw one's.
    exported = load_file(str(tmp_path / "full" / "generator.safetensors"))
    meta = read_metadata(tmp_path / "full" / "generator.safetensors")
    assert meta["content_jitter"] == "4" and meta["d_jitter"] == "4"
    key = next(k for k in exported if k.endswith("weight"))
    assert torch.equal(exported[key], a["ema"][key]) and not torch.equal(exported[key], a["generator"][key])


def test_unet_discriminator_trains_resumes_identically_and_is_fixed_for_the_run(
    shared_data, mse_generator, data, tmp_path
):
    opts = _options(data, stage="gan", init=str(mse_generator), steps=4, batch_size=2, patch_size=16)
    opts.update(vgg_weights=str(shared_data / VGG_FILE), content_loss="vgg22", checkpoint_every=2, lr_step=3)
    opts.update(d_arch="unet", d_features=8)
    result = train(opts, tmp_path / "full")
    assert all(np.isfinite(h["loss_d"]) and np.isfinite(h["loss_adv"]) for h in result.history)
    train({**opts, "steps": 2}, tmp_path / "part")
    train({"steps": 4}, tmp_path / "part", resume=True)
    a, b = load_checkpoint(tmp_path / "full" / CHECKPOINT), load_checkpoint(tmp_path / "part" / CHECKPOINT)
    assert a["discriminator_config"]["arch"] == "unet" and a["discriminator_config"]["num_features"] == 8
    # the spectral norm's power-iteration vectors are state too: without them a resume would differ
    assert any(key.endswith("_u") for key in a["discriminator"])
    for part in ("generator", "discriminator"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    meta = read_metadata(tmp_path / "full" / "generator.safetensors")
    assert meta["d_arch"] == "unet" and meta["d_features"] == "8" and "d_batch_norm" not in meta
    for change in ({"d_arch": "vgg"}, {"d_features": 16}):  # architectures: fixed for the run
        with pytest.raises(SrganError, match=next(iter(change)).replace("_", "-")):
            train({**change, "steps": 6}, tmp_path / "part", resume=True)
    with pytest.raises(SrganError, match="--d-arch: only in --stage gan"):
        train(_options(data, steps=1, d_arch="unet"), tmp_path / "mse_stage")
    args = ["train", "--data", str(data), "--out", str(tmp_path / "bad"), "--stage", "gan", "--d-arch", "patch"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "--d-arch" in result.output


def _extra_loss_steps(opts: dict, tmp_path: Path, name: str, weight: float, term: str) -> list[dict]:
    """Train with ``opts`` and with ``name`` = ``weight`` added; check that the option changes the
    generator, is in the metadata only when on, and that each logged total is the sum of its
    weighted parts; return the logged steps that hold the loss ``term``."""
    train(opts, tmp_path / "plain")
    train({**opts, name: weight}, tmp_path / name)
    rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if term in r]
    for r in steps:
        total = r["loss_content"] + 1e-3 * r["loss_adv"] + weight * r[term]
        assert r["loss"] == pytest.approx(total, rel=1e-4)
    plain = load_checkpoint(tmp_path / "plain" / CHECKPOINT)["generator"]
    extra = load_checkpoint(tmp_path / name / CHECKPOINT)["generator"]
    assert any(not torch.equal(plain[k], extra[k]) for k in plain)
    assert read_metadata(tmp_path / name / "generator.safetensors")[name] == str(weight)
    assert name not in read_metadata(tmp_path / "plain" / "generator.safetensors")
    return steps


def test_ldl_weight_adds_the_artifact_loss(shared_data, mse_generator, data, tmp_path):
    opts = _options(data, stage="gan", init=str(mse_generator), steps=2, batch_size=2, patch_size=16, log_every=1)
    opts.update(vgg_weights=str(shared_data / VGG_FILE), content_loss="vgg22", ema=0.5)
    steps = _extra_loss_steps(opts, tmp_path, "ldl_weight", 100.0, "loss_ldl")
    assert len(steps) == 2 and all(r["loss_ldl"] > 0 for r in steps)
    with pytest.raises(SrganError, match="--ema"):
        train({**opts, "ldl_weight": 1.0, "ema": 0.0}, tmp_path / "no_ema")
    with pytest.raises(SrganError, match="ldl-weight"):
        train({**opts, "ldl_weight": -1.0}, tmp_path / "bad")


def test_d_jitter_rolls_what_the_discriminator_sees(shared_data, mse_generator, data, tmp_path):
    opts = _options(data, stage="gan", init=str(mse_generator), steps=2, batch_size=2, patch_size=16)
    opts.update(vgg_weights=str(shared_data / VGG_FILE), content_loss="vgg22")
    offsets = [tuple(np.random.default_rng((opts.get("seed", 0), step, 4)).integers(0, 4, 2)) for step in (0, 1)]
    assert any(o != (0, 0) for o in offsets)  # so the two runs below must differ
    train(opts, tmp_path / "plain")
    train({**opts, "d_jitter": 4}, tmp_path / "rolled")
    train({**opts, "d_jitter": 1}, tmp_path / "one")  # 1 = no offset
    runs = ("plain", "rolled", "one")
    plain, rolled, one = (load_checkpoint(tmp_path / r / CHECKPOINT)["discriminator"] for r in runs)
    assert any(not torch.equal(plain[k], rolled[k]) for k in plain)
    assert all(torch.equal(plain[k], one[k]) for k in plain)


@pytest.mark.parametrize(
    ("name", "weight"),
    [("grid_weight", 1.0), ("block_weight", 5.0), ("local_grid_weight", 10.0), ("spectral_weight", 30.0)],
)
def test_grid_and_block_weights_add_their_loss(shared_data, mse_generator, data, tmp_path, name, weight):
    opts = _options(data, stage="gan", init=str(mse_generator), steps=2, batch_size=2, patch_size=16, log_every=1)
    opts.update(vgg_weights=str(shared_data / VGG_FILE), content_loss="vgg22")
    term = "loss_" + name.removesuffix("_weight")  # loss_grid, loss_block, loss_local_grid, loss_spectral
    steps = _extra_loss_steps(opts, tmp_path, name, weight, term)
    assert len(steps) == 2 and all(0 < r[term] < 1 for r in steps)
    flag = "--" + name.replace("_", "-")
    with pytest.raises(SrganError, match=flag):
        train({**opts, name: -1.0}, tmp_path / "bad")
    with pytest.raises(SrganError, match=f"{flag}: only in --stage gan"):
        train(_options(data, steps=1, **{name: 1.0}), tmp_path / "mse_stage")


def test_flat_weight_adds_the_flat_loss(shared_data, mse_generator, tmp_path):
    flat = tmp_path / "flat"  # plain colours with faint grain: flat everywhere
    flat.mkdir()
    rng = np.random.default_rng(3)
    for i, colour in enumerate(((90, 120, 150), (200, 180, 160), (40, 40, 40))):
        img = np.clip(np.array(colour) + rng.normal(0, 0.6, (40, 40, 3)), 0, 255).round().astype(np.uint8)
        Image.fromarray(img).save(flat / f"{i}.png")
    opts = _options(flat, stage="gan", init=str(mse_generator), steps=2, batch_size=2, patch_size=16, log_every=1)
    opts.update(vgg_weights=str(shared_data / VGG_FILE), content_loss="vgg22")
    steps = _extra_loss_steps(opts, tmp_path, "flat_weight", 10.0, "loss_flat")
    assert len(steps) == 2 and all(r["loss_flat"] > 0 for r in steps)
    with pytest.raises(SrganError, match="flat-weight"):
        train({**opts, "flat_weight": -1.0}, tmp_path / "bad")
    mse = _options(flat, steps=1, grid_weight=1.0, flat_weight=1.0)
    with pytest.raises(SrganError, match="--grid-weight, --flat-weight: only in --stage gan"):
        train(mse, tmp_path / "mse_stage")


def test_discriminator_without_batch_norm_from_flag_and_config(shared_data, mse_generator, data, tmp_path):
    cfg = tmp_path / "gan.toml"
    cfg.write_text(
        "[train]\n"
        f'data = "{data.as_posix()}"\nstage = "gan"\ninit = "{Path(mse_generator).as_posix()}"\n'
        f'vgg-weights = "{(shared_data / VGG_FILE).as_posix()}"\ncontent-loss = "vgg22"\n'
        "steps = 1\nnum-blocks = 1\nnum-features = 8\nbatch-size = 2\npatch-size = 16\nworkers = 0\n"
        'device = "cpu"\nd-batch-norm = false\n'
    )
    run = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--config", str(cfg), "--out", str(run), "-q"])
    assert result.exit_code == 0, result.output
    state = load_checkpoint(run / CHECKPOINT)
    assert state["discriminator_config"]["batch_norm"] is False
    assert not any("running_mean" in k for k in state["discriminator"])
    assert read_metadata(run / "generator.safetensors")["d_batch_norm"] == "false"
    with pytest.raises(SrganError, match="d-batch-norm"):  # an architecture: fixed for the run
        train({"d_batch_norm": True, "steps": 2}, run, resume=True)
    args = ["train", "--config", str(cfg), "--out", str(tmp_path / "flag"), "--no-d-batch-norm", "-q"]
    cfg.write_text(cfg.read_text().replace("d-batch-norm = false", ""))  # the flag alone
    assert CliRunner().invoke(main, args).exit_code == 0
    assert load_checkpoint(tmp_path / "flag" / CHECKPOINT)["discriminator_config"]["batch_norm"] is False
    cfg.write_text(cfg.read_text() + 'd-batch-norm = "no"\n')
    result = CliRunner().invoke(main, ["train", "--config", str(cfg), "--out", str(tmp_path / "bad")])
    assert result.exit_code == 2 and "true or false" in result.output


def test_rrdb_both_stages(shared_data, data, tmp_path):
    rrdb = {"arch": "rrdb", "num_blocks": 1, "num_features": 8, "pixel_loss": "l1"}
    result = train({**_options(data, steps=2), **rrdb}, tmp_path / "mse")
    assert result.step == 2
    _, gconf, _ = load_generator(tmp_path / "mse" / "generator.safetensors")
    assert gconf.arch == "rrdb" and not gconf.batch_norm
    opts = _options(data, stage="gan", init=str(tmp_path / "mse" / "generator.safetensors"), steps=2)
    opts.update(vgg_weights=str(shared_data / VGG_FILE), content_loss="conv5_4", gan_type="relativistic")
    opts.update(batch_size=2, patch_size=16, adv_weight=5e-3, pixel_weight=1e-2, pixel_loss="l1")
    result = train(opts, tmp_path / "gan")
    assert result.step == 2 and load_generator(tmp_path / "gan" / "generator.safetensors")[1].arch == "rrdb"


def test_init_conflicting_arch_is_refused(mse_generator, data, tmp_path):
    opts = _options(data, stage="gan", init=str(mse_generator), steps=1, num_blocks=3, content_loss="mse")
    with pytest.raises(SrganError, match="--num-blocks 3"):
        train({**opts, "patch_size": 16}, tmp_path / "run")


def test_bf16_channels_last_run_and_plain_progress_lines(data, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--steps", "4", "--num-blocks", "1"]
    args += ["--num-features", "8", "--batch-size", "2", "--patch-size", "16", "--workers", "0", "--device", "cpu"]
    args += ["--precision", "bf16", "--channels-last", "--log-every", "2", "--arch", "srresnet"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("step 2/4 loss") and "patches/s" in line and "eta" in line for line in lines)
    assert any("training images" in line and "skipped 0" in line for line in lines)
    config = json.loads((run / "config.json").read_text())
    assert config["precision"] == "bf16" and config["channels_last"] and config["num_blocks"] == 1
    assert load_generator(run / "generator.safetensors")[1].num_blocks == 1


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(_options(data, steps=2), run)
    before = (run / CHECKPOINT).read_bytes()
    real_save = torch.save

    def dies_half_way(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        Path(f).write_bytes(Path(f).read_bytes()[:1000])  # a torn write ...
        raise KeyboardInterrupt  # ... and the process stops before the rename

    monkeypatch.setattr("srgan_cli.train.torch.save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        train({"steps": 4, "checkpoint_every": 1}, run, resume=True)
    assert (run / CHECKPOINT).read_bytes() == before
    assert load_checkpoint(run / CHECKPOINT)["step"] == 2
    assert not [p.name for p in run.iterdir() if p.name.endswith(".part")]


def test_default_workers_follow_the_device():
    from srgan_cli.data import default_workers

    assert default_workers(torch.device("cpu")) == 0
    assert 1 <= default_workers(torch.device("cuda")) <= 4


@pytest.mark.parametrize("content", ["garbage", "foreign", "pickle"])
def test_foreign_or_unsafe_checkpoint_is_refused(data, tmp_path, content):
    run = tmp_path / "run"
    run.mkdir()
    path = run / CHECKPOINT
    if content == "garbage":
        path.write_bytes(os.urandom(2048))
    elif content == "foreign":
        torch.save({"model": torch.zeros(2)}, path)  # a checkpoint, but not ours
    else:
        torch.save({"format": "srgan-train-checkpoint", "obj": Path("x")}, path)  # needs unpickling a class
    with pytest.raises(SrganError) as info:
        train({}, run, resume=True)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_learning_rate_schedules():
    from srgan_cli.train import TrainConfig, lr_at

    gan = TrainConfig(stage="gan", data="x", steps=100).resolved()
    assert gan.lr_decay == "step" and gan.content_loss == "vgg54" and gan.pixel_weight == 0
    assert lr_at(gan, 0) == lr_at(gan, 49) == 1e-4
    assert lr_at(gan, 50) == lr_at(gan, 99) == pytest.approx(1e-5)  # the paper: 1e-4, then 1e-5 for the second half
    mse = TrainConfig(data="x", steps=100).resolved()
    assert mse.lr_decay == "none" and mse.steps == 100 and lr_at(mse, 99) == 1e-4
    assert TrainConfig(data="x").resolved().steps == 1_000_000
    cos = TrainConfig(data="x", steps=100, lr_decay="cosine").resolved()
    assert lr_at(cos, 0) == 1e-4 and lr_at(cos, 50) == pytest.approx(5e-5) and lr_at(cos, 100) == pytest.approx(0)
    every = TrainConfig(data="x", steps=100, lr_decay="step", lr_step=30).resolved()
    assert lr_at(every, 65) == pytest.approx(1e-6)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_mixed_precision_runs_and_resumes(data, tmp_path, precision):
    opts = _options(data, steps=3, device="cuda", precision=precision, channels_last=True, workers=1)
    train(opts, tmp_path / "run")
    result = train({"steps": 5}, tmp_path / "run", resume=True)
    assert result.step == 5 and all(np.isfinite(result.losses))
    state = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert (state["scaler_g"] is not None) == (precision == "fp16")
    assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_gan_with_the_unet_discriminator_runs_and_resumes(shared_data, mse_generator, data, tmp_path, precision):
    opts = _options(data, stage="gan", init=str(mse_generator), steps=3, batch_size=2, patch_size=32)
    opts.update(vgg_weights=str(shared_data / VGG_FILE), content_loss="vgg22", d_arch="unet", d_features=8)
    opts.update(device="cuda", precision=precision, channels_last=True, workers=1)
    train(opts, tmp_path / "run")
    result = train({"steps": 5}, tmp_path / "run", resume=True)
    assert result.step == 5 and all(np.isfinite(h["loss_d"]) and np.isfinite(h["loss_adv"]) for h in result.history)
    state = load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert all(torch.isfinite(v).all() for v in state["discriminator"].values() if v.is_floating_point())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_cuda_graphs_train_like_eager_steps_and_resume_either_way(data, tmp_path, precision):
    """--cuda-graphs replays a captured update: the same losses as eager steps (within
    rounding), an EMA, a schedule read from the device, and checkpoints either kind resumes."""
    opts = _options(data, steps=12, lr=1e-3, lr_decay="cosine", device="cuda", precision=precision, ema=0.9)
    opts.update(channels_last=True, log_every=4, checkpoint_every=6)
    eager = train(opts, tmp_path / "eager")
    graphed = train({**opts, "cuda_graphs": True}, tmp_path / "graphed")
    np.testing.assert_allclose(graphed.losses, eager.losses, rtol=0.05)
    assert graphed.losses[-1] < graphed.losses[0]
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "graphed" / "metrics.jsonl").read_text().splitlines()]
    assert lrs == [json.loads(line)["lr"] for line in (tmp_path / "eager" / "metrics.jsonl").read_text().splitlines()]
    a, b = _weights(tmp_path / "eager"), _weights(tmp_path / "graphed")
    for key in a:
        if a[key].is_floating_point():
            torch.testing.assert_close(b[key], a[key], rtol=0.05, atol=2e-3)
    # a graphed checkpoint resumes eagerly, and an eager one with graphs
    assert train({"steps": 16}, tmp_path / "graphed", resume=True).step == 16
    result = train({"steps": 16, "cuda_graphs": True}, tmp_path / "eager", resume=True)
    assert result.step == 16 and all(np.isfinite(result.losses))


def test_cuda_graphs_are_refused_where_they_cannot_run(data, tmp_path):
    with pytest.raises(SrganError, match="--cuda-graphs needs one CUDA device"):
        train(_options(data, steps=2, cuda_graphs=True), tmp_path / "cpu")
    with pytest.raises(SrganError, match="--stage mse"):
        train(_options(data, steps=2, cuda_graphs=True, stage="gan", init="x.safetensors"), tmp_path / "gan")
    assert not (tmp_path / "cpu").exists() and not (tmp_path / "gan").exists()


def test_validation_psnr_equals_srgan_bench(data, tmp_path):
    """The PSNR a run records for generator_best is what ``srgan bench`` reports for that file."""
    val = tmp_path / "val"
    _images(val / "HR", count=2, size=40, seed=7)
    run = tmp_path / "run"
    train(_options(data, steps=4, lr=1e-3, val=str(val), val_every=4), run)
    recorded = float(read_metadata(run / "generator_best.safetensors")["val_psnr"])
    args = ["bench", "--set", str(val), "-m", str(run / "generator_best.safetensors"), "--device", "cpu"]
    result = CliRunner().invoke(main, [*args, "--json", "-"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    assert report["models"][0]["psnr"] == pytest.approx(recorded, abs=1e-4)


def test_validation_lpips_is_logged_and_equals_srgan_bench(data, tmp_path, fake_lpips_weights):
    """Where LPIPS can be computed, each validation logs it beside PSNR, as srgan bench scores it."""
    val = tmp_path / "val"
    _images(val / "HR", count=2, size=40, seed=7)
    run = tmp_path / "run"
    train(_options(data, steps=4, lr=1e-3, val=str(val), val_every=2, log_every=1), run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = {r["step"]: r.get("val_lpips") for r in rows if "step" in r}
    assert logged[1] is None and logged[2] is not None and logged[4] is not None
    args = ["bench", "--set", str(val), "-m", str(run / "generator.safetensors"), "--device", "cpu", "--json", "-"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{") :])
    # bench runs the file with BatchNorm folded into the convs (outputs ~1e-6 apart), and the random
    # stand-in LPIPS weights magnify that: 1.78076 against 1.78078 once
    assert report["models"][0]["lpips"] == pytest.approx(logged[4], rel=1e-4)


def _validations(run: Path) -> dict[int, tuple[float, float | None]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: (r["val_psnr"], r.get("val_lpips")) for r in rows if r.get("val_psnr") is not None}


def test_best_by_lpips_keeps_the_generator_of_the_lowest_validation_lpips(data, tmp_path, fake_lpips_weights):
    val = tmp_path / "val"
    _images(val / "HR", count=2, size=40, seed=7)
    run = tmp_path / "run"
    result = train(_options(data, steps=8, lr=3e-3, val=str(val), val_every=1, best_by="lpips"), run)
    scores = _validations(run)
    best_step = min(scores, key=lambda step: scores[step][1])
    assert best_step != max(scores, key=lambda step: scores[step][0])  # so PSNR would have picked another
    meta = read_metadata(run / "generator_best.safetensors")
    assert meta["steps"] == str(best_step)
    assert float(meta["val_lpips"]) == pytest.approx(scores[best_step][1], abs=1e-4)
    assert result.best_by == "lpips" and result.best_lpips == pytest.approx(scores[best_step][1])
    assert result.best_psnr == max(psnr for psnr, _ in scores.values())  # still reported


def test_best_by_defaults_to_lpips_in_the_gan_stage_and_psnr_without_its_weights(mse_generator, data, tmp_path):
    val = tmp_path / "val"
    _images(val / "HR", count=1, size=40, seed=7)
    opts = _options(data, stage="gan", init=str(mse_generator), steps=2, content_loss="mse", val=str(val), val_every=1)
    assert train(opts, tmp_path / "no_lpips").best_by == "psnr"  # conftest hides the LPIPS weights
    with pytest.raises(SrganError, match="--best-by lpips: LPIPS cannot be computed"):
        train({**opts, "best_by": "lpips"}, tmp_path / "asked")
    assert (
        train({k: v for k, v in opts.items() if k not in ("val", "val_every")}, tmp_path / "no_val").best_by == "psnr"
    )


def test_best_by_gan_default_with_lpips_weights_and_across_a_resume(mse_generator, data, tmp_path, fake_lpips_weights):
    val = tmp_path / "val"
    _images(val / "HR", count=1, size=40, seed=7)
    run = tmp_path / "run"
    opts = _options(data, stage="gan", init=str(mse_generator), steps=3, content_loss="mse", val=str(val), val_every=1)
    assert train(opts, run).best_by == "lpips"
    # a resume that asks for PSNR instead: the first validation after it sets the new best
    events: list[dict] = []
    result = train({**opts, "steps": 5, "best_by": "psnr"}, run, resume=True, report=events.append)
    assert result.best_by == "psnr"
    assert "generator_best was chosen by LPIPS until now, from now on by PSNR" in " ".join(_notes(events))
    assert read_metadata(run / "generator_best.safetensors")["steps"] in {"4", "5"}


def test_best_by_is_checked():
    with pytest.raises(SrganError, match="best.by"):
        TrainConfig(data="x", best_by="ssim").resolved()


def test_best_by_lpips_from_the_command_line(data, tmp_path, fake_lpips_weights):
    val = tmp_path / "val"
    _images(val / "HR", count=1, size=40, seed=7)
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2", "--num-blocks", "1"]
    args += ["--num-features", "8", "--batch-size", "2", "--patch-size", "16", "--workers", "0", "--device", "cpu"]
    args += ["--val", str(val), "--val-every", "1", "--best-by", "lpips"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert re.search(r", best val LPIPS \d+\.\d{4};", result.output.splitlines()[-1])
    assert json.loads((tmp_path / "run" / "config.json").read_text())["best_by"] == "lpips"


def test_val_holdout_validates_on_images_it_never_trains_on(tmp_path, monkeypatch):
    import srgan_cli.train as train_module

    data = _images(tmp_path / "images", count=5, size=40)
    trained_on = []

    class Recording(train_module.PatchDataset):
        def __init__(self, scan, *args, **kwargs):
            trained_on.extend(scan.paths)
            super().__init__(scan, *args, **kwargs)

    monkeypatch.setattr(train_module, "PatchDataset", Recording)
    validated = []
    real_val_image = train_module.val_image

    def recording_val_image(path, *args, **kwargs):
        validated.append(Path(path))
        return real_val_image(path, *args, **kwargs)

    monkeypatch.setattr(train_module, "val_image", recording_val_image)
    run = tmp_path / "run"
    train(_options(data, steps=2, val_holdout=2, val_every=1), run)
    held = {data / f"{i}.png" for i in range(5)} - set(trained_on)
    assert len(trained_on) == 3 and len(held) == 2
    assert set(validated) == held  # validation reads exactly the held-out images
    assert all(psnr is not None for psnr, _ in _validations(run).values())
    assert read_metadata(run / "generator_best.safetensors")["val"] == "2 images held out of the data"
    # a resume keeps the split; changing it would change what the run trains on
    with pytest.raises(SrganError, match="--val-holdout 1 differs from the run being resumed"):
        train(_options(data, steps=4, val_holdout=1), run, resume=True)
    with pytest.raises(SrganError, match="give it or --val, not both"):
        train(_options(data, steps=2, val_holdout=2, val=str(data)), tmp_path / "both")
    with pytest.raises(SrganError, match="--val-holdout 5: .* 5 usable"):
        train(_options(data, steps=2, val_holdout=5), tmp_path / "all")


def test_ema_is_warmed_up_so_a_run_from_scratch_does_not_keep_its_random_start():
    assert ema_decay(0.999, 0) == 0.1  # the first update takes 90% of the trained weights
    assert ema_decay(0.999, 90) == 0.91
    assert ema_decay(0.999, 100_000) == 0.999  # later the asked decay holds
    kept = 1.0
    for step in range(1000):
        kept *= ema_decay(0.999, step)
    assert kept < 1e-3  # share of the random start left after 1,000 steps (0.37 without warm-up)


def test_ema_follows_its_formula_at_every_step(data, tmp_path, monkeypatch):
    """Each update is ema = d * ema + (1 - d) * G with d = ema_decay(--ema, step), over the floats of the
    generator's state (BatchNorm statistics too); the rest is copied."""
    import srgan_cli.train as train_module

    real = train_module._Trainer._update_ema
    steps = []

    def checked(self):
        before = [t.detach().clone() for t in self.ema.state_dict().values()]
        g = [t.detach().clone() for t in self.G.state_dict().values()]
        real(self)
        d = ema_decay(self.cfg.ema, self.step)
        for old, now, new in zip(before, g, self.ema.state_dict().values(), strict=True):
            if new.is_floating_point():
                assert torch.allclose(new, d * old + (1 - d) * now, rtol=1e-5, atol=1e-7)
            else:
                assert torch.equal(new, now)
        steps.append(self.step)

    monkeypatch.setattr(train_module._Trainer, "_update_ema", checked)
    run = tmp_path / "run"
    start = None

    def first_state(self, *args, **kwargs):
        nonlocal start
        if start is None:
            start = {k: v.detach().clone() for k, v in self.G.state_dict().items()}
        return real_step(self, *args, **kwargs)

    real_step = train_module._Trainer._train_step
    monkeypatch.setattr(train_module._Trainer, "_train_step", first_state)
    train(_options(data, steps=4, lr=1e-3, ema=0.9), run)
    assert steps == [0, 1, 2, 3]
    exported = load_file(run / "generator.safetensors")
    key = next(k for k in exported if k.endswith("weight"))
    assert not torch.equal(exported[key], start[key])  # the EMA moved away from the random start


def test_the_optimisers_follow_the_learning_rate_schedule(data, tmp_path, monkeypatch):
    import srgan_cli.train as train_module
    from srgan_cli.train import lr_at

    seen = []
    real_step = train_module._Trainer._train_step

    def recording(self, *args, **kwargs):
        seen.append((self.step, float(self.opt_g.param_groups[0]["lr"])))
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(train_module._Trainer, "_train_step", recording)
    run = tmp_path / "run"
    train(_options(data, steps=4, lr_decay="step", lr_step=2, log_every=1), run)
    cfg = TrainConfig(data=str(data), steps=4, lr_decay="step", lr_step=2).resolved()
    assert seen == [(s, pytest.approx(lr_at(cfg, s))) for s in range(4)]
    assert seen[0][1] == pytest.approx(1e-4) and seen[2][1] == pytest.approx(1e-5)  # the drop at step 2
    logged = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert logged == [pytest.approx(v) for v in (1e-4, 1e-4, 1e-5, 1e-5)]


def _cli_train(data: Path, out: Path, *extra: str, tiny: bool = True):
    args = ["train", "--data", str(data), "--out", str(out), "--steps", "1", "--batch-size", "2", "--patch-size", "16"]
    args += ["--workers", "0", "--device", "cpu", "-q"]
    if tiny:
        args += ["--num-blocks", "1", "--num-features", "8"]
    return CliRunner().invoke(main, [*args, *extra])  # the last of a flag given twice wins


def _one_line_error(result, code: int = 1) -> str:
    """The one ``error:`` line of a failed command; ``code`` 2 for a bad option value."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # not an uncaught exception
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--adam-beta1", "nan"),
        ("--adv-weight", "nan"),
        ("--adv-weight", "inf"),
        ("--pixel-weight", "nan"),
        ("--grid-weight", "nan"),
        ("--ldl-weight", "inf", "--ema", "0.9"),
        ("--flat-weight", "nan"),
        ("--block-weight", "inf"),
        ("--local-grid-weight", "nan"),
        ("--spectral-weight", "inf"),
        ("--ema", "nan"),
        ("--scale-aug", "nan"),
        ("--seed", "-1"),
        ("--seed", "99999999999999999999999"),
        ("--num-features", "100000"),
    ],
    ids=lambda args: "=".join(args[:2]),
)
def test_bad_numbers_are_one_line_errors_before_anything_is_written(data, tmp_path, args):
    run = tmp_path / "run"
    # --stage gan (without --init, which is checked later): its weights must not be refused as mse-only
    line = _one_line_error(_cli_train(data, run, "--stage", "gan", *args), code=2)
    assert args[0] in line, line
    assert not run.exists()


def test_bad_numbers_in_a_config_file_are_one_line_errors(data, tmp_path):
    cfg = tmp_path / "train.toml"
    for entry, flag in [
        ("lr = nan", "--lr"),
        ("lr = inf", "--lr"),
        ("adam-beta1 = nan", "--adam-beta1"),
        ("spectral_weight = inf", "--spectral-weight"),
        ("seed = -1", "--seed"),
        ("num-features = 100000", "--num-features"),
        ("num-blocks = 100000", "--num-blocks"),
    ]:
        cfg.write_text(f'[train]\nstage = "gan"\n{entry}\n')
        run = tmp_path / "run"
        line = _one_line_error(_cli_train(data, run, "--config", str(cfg), tiny=False), code=2)  # flags beat the file
        assert flag in line, (entry, line)
        assert not run.exists()


def test_numbers_are_checked_in_the_config():
    ok = TrainConfig(data="x", seed=2**64 - 1, num_blocks=256, num_features=1024).resolved()
    assert ok.seed == 2**64 - 1
    TrainConfig(data="x", stage="gan", d_features=512).resolved()
    bad = [
        ({"lr": float("nan")}, "--lr"),
        ({"lr": float("inf")}, "--lr"),
        ({"lr_gamma": float("nan")}, "--lr-gamma"),
        ({"adam_beta1": float("nan")}, "--adam-beta1"),
        ({"adam_beta2": 1.0}, "--adam-beta2"),
        ({"adv_weight": float("inf")}, "--adv-weight"),
        ({"adv_weight": -1.0}, "--adv-weight"),
        ({"pixel_weight": float("nan")}, "--pixel-weight"),
        ({"seed": -1}, "--seed"),
        ({"seed": 2**64}, "--seed"),
        ({"num_blocks": 100_000}, "--num-blocks"),
        ({"num_blocks": 0}, "--num-blocks"),
        ({"num_features": 100_000}, "--num-features"),
        ({"stage": "gan", "d_features": 100_000}, "--d-features"),
    ]
    for options, flag in bad:
        with pytest.raises(SrganError, match=re.escape(flag)):
            TrainConfig(**{"data": "x", **options}).resolved()


def test_the_largest_seed_trains_and_a_resume_checks_its_numbers_too(data, tmp_path):
    run = tmp_path / "run"
    assert train(_options(data, steps=1, seed=2**64 - 1), run).step == 1
    before = (run / CHECKPOINT).read_bytes()
    for options, flag in [({"lr": float("nan")}, "--lr"), ({"adam_beta1": float("inf")}, "--adam-beta1")]:
        with pytest.raises(SrganError, match=re.escape(flag)):
            train({"steps": 2, **options}, run, resume=True)
    result = CliRunner().invoke(main, ["train", "--out", str(run), "--resume", "--steps", "2", "--lr", "inf"])
    assert "--lr must be a finite number" in _one_line_error(result, code=2)
    assert (run / CHECKPOINT).read_bytes() == before


@pytest.mark.parametrize(
    "name", ["config.json", "metrics.jsonl", "generator.safetensors", "generator_best.safetensors"]
)
def test_a_folder_with_files_a_run_writes_is_not_overwritten(data, tmp_path, name):
    run = tmp_path / "run"
    run.mkdir()
    (run / name).write_text("mine\n")
    (run / "notes.txt").write_text("also mine\n")
    line = _one_line_error(_cli_train(data, run))
    assert name in line and "--out" in line, line
    assert sorted(p.name for p in run.iterdir()) == sorted([name, "notes.txt"])
    assert (run / name).read_text() == "mine\n"
    with pytest.raises(SrganError, match=re.escape(name)):
        train(_options(data, steps=1), run)
    assert sorted(p.name for p in run.iterdir()) == sorted([name, "notes.txt"])


def test_a_dangling_link_named_like_a_run_file_is_not_followed(data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").symlink_to(tmp_path / "elsewhere.jsonl")
    with pytest.raises(SrganError, match="metrics.jsonl"):
        train(_options(data, steps=1), run)
    assert not (tmp_path / "elsewhere.jsonl").exists()


def test_an_empty_folder_or_one_with_other_files_is_fine_for_a_new_run(data, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert train(_options(data, steps=1), empty).step == 1
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine\n")
    (other / "generator_old.safetensors").write_text("mine\n")
    assert train(_options(data, steps=1), other).step == 1
    assert (other / "notes.txt").read_text() == "mine\n"
    assert (other / "generator_old.safetensors").read_text() == "mine\n"
    assert (other / CHECKPOINT).is_file()


@pytest.mark.parametrize(
    "entry, message",
    [
        ("data = 5", "data must be a string, got int"),
        ('data = ["data"]', "data must be a string, got array"),
        ("data = {a=1}", "data must be a string, got table"),
        ("data = 2024-01-01", "data must be a string, got date"),
        ("vgg_weights = 5", "vgg_weights must be a string, got int"),
        ("init = [1]", "init must be a string, got array"),
        ("device = 0", "device must be a string, got int"),
        ("stage = 1", "stage must be a string, got int"),
        ("steps = 2.5", "steps must be a whole number, got float"),
        ("steps = true", "steps must be a whole number, got bool"),
        ("threads = 1.7", "threads must be a whole number, got float"),
        ("workers = 0.5", "workers must be a whole number, got float"),
        ("lr = true", "lr must be a number, got bool"),
        ('ema = "0.9"', "ema must be a number, got str"),
        ("channels-last = 1", "channels-last must be true or false"),
    ],
)
def test_config_values_of_the_wrong_type_are_one_line_errors(data, tmp_path, entry, message):
    cfg = tmp_path / "train.toml"
    cfg.write_text(f"[train]\n{entry}\n")
    run = tmp_path / "run"
    line = _one_line_error(_cli_train(data, run, "--config", str(cfg)), code=2)  # a flag beating the key: the same
    assert line == f"error: {cfg}: {message}", line
    assert not run.exists()


def test_config_numbers_may_be_whole_where_a_float_is_wanted(data, tmp_path):
    cfg = tmp_path / "train.toml"
    cfg.write_text("[train]\nscale-aug = 1\nlr = 1\nthreads = 1\n")
    run = tmp_path / "run"
    result = _cli_train(data, run, "--config", str(cfg))
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["scale_aug"] == 1.0 and isinstance(config["scale_aug"], float) and config["threads"] == 1
    assert isinstance(config["lr"], float)


def test_resume_skips_metrics_lines_that_are_not_utf8_json(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=2, log_every=1), run)
    with open(run / "metrics.jsonl", "ab") as fh:
        fh.write(b'\xff\xfe\x00garbage\n{"step": 1, "loss": "\xff"}\n[1]\n{"step": 1e999}\n{"step": -1}\n')
    result = CliRunner().invoke(main, ["train", "--out", str(run), "--resume", "--steps", "3", "-q"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]


def test_a_checkpoint_with_a_negative_step_is_damaged(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=1), run)
    state = torch.load(run / CHECKPOINT, weights_only=True)
    state["step"] = -3
    torch.save(state, run / CHECKPOINT)
    line = _one_line_error(CliRunner().invoke(main, ["train", "--out", str(run), "--resume", "--steps", "2"]))
    assert "damaged checkpoint" in line and str(run / CHECKPOINT) in line, line


def _dead_run(data: Path, run: Path) -> None:
    """The files of a run killed before its first checkpoint: config.json and metrics.jsonl (its
    last line cut short), from a real run with its checkpoint and weights taken away."""
    train(_options(data, steps=2, log_every=1), run)
    for name in (CHECKPOINT, "generator.safetensors"):
        (run / name).unlink()
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 3, "loss": 0.2')


def test_a_run_killed_before_its_first_checkpoint_can_be_started_again(data, tmp_path):
    run = tmp_path / "run"
    _dead_run(data, run)
    (run / "notes.txt").write_text("mine\n")
    line = _one_line_error(CliRunner().invoke(main, ["train", "--out", str(run), "--resume"]))
    assert "no checkpoint to resume from; start the run without --resume" in line, line
    events: list[dict] = []
    assert train(_options(data, steps=1, log_every=1), run, report=events.append).step == 1
    notes = [e["message"] for e in events if e["event"] == "info"]
    note = "replacing the config.json/metrics.jsonl of a run that stopped before its first checkpoint"
    assert note in notes, notes
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1]
    assert json.loads((run / "config.json").read_text())["steps"] == 1
    assert (run / CHECKPOINT).is_file() and (run / "notes.txt").read_text() == "mine\n"
    (run / CHECKPOINT).unlink()  # only config.json, or an empty metrics.jsonl, left behind: the same
    (run / "generator.safetensors").unlink()
    (run / "metrics.jsonl").unlink()
    assert _cli_train(data, run).exit_code == 0
    (run / CHECKPOINT).unlink()
    (run / "generator.safetensors").unlink()
    (run / "config.json").unlink()
    (run / "metrics.jsonl").write_text("")
    assert _cli_train(data, run).exit_code == 0


@pytest.mark.parametrize(
    "damage",
    ["foreign config.json", "config.json array", "metrics line", "metrics text", "generator_best", "config link"],
)
def test_files_that_are_not_a_dead_runs_own_are_still_not_overwritten(data, tmp_path, damage):
    run = tmp_path / "run"
    _dead_run(data, run)
    if damage == "foreign config.json":
        (run / "config.json").write_text('{"name": "mine", "steps": 3}\n')
    elif damage == "config.json array":
        (run / "config.json").write_text("[1, 2]\n")
    elif damage == "metrics line":
        (run / "metrics.jsonl").write_text('{"step": 1}\n[1]\n')
    elif damage == "metrics text":
        (run / "metrics.jsonl").write_text('{"step": 1}\nmine, cut short')
    elif damage == "generator_best":
        (run / "generator_best.safetensors").write_text("mine\n")
    else:
        (tmp_path / "my_config.json").write_text((run / "config.json").read_text())
        (run / "config.json").unlink()
        (run / "config.json").symlink_to(tmp_path / "my_config.json")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    line = _one_line_error(_cli_train(data, run))
    assert "already holds" in line and "--out" in line, line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_resume_of_a_run_stopped_while_saving_its_first_checkpoint_points_to_its_generator(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=1), run)
    (run / CHECKPOINT).unlink()  # generator.safetensors is written first
    line = _one_line_error(CliRunner().invoke(main, ["train", "--out", str(run), "--resume"]))
    generator = run / "generator.safetensors"
    assert "generator.safetensors is kept" in line and f"--init {generator}" in line, line
    assert _cli_train(data, tmp_path / "next", "--init", str(generator)).exit_code == 0
    assert generator.is_file()


def test_a_resume_refuses_a_new_init_that_it_would_only_record(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=2), run)
    other = tmp_path / "other"
    train(_options(data, steps=1), other)
    # was: accepted, weights taken from the checkpoint, and the exports' metadata naming the new --init
    with pytest.raises(SrganError, match="--init .* differs from the run being resumed \\(none\\)"):
        train(_options(data, steps=3, init=str(other / "generator.safetensors")), run, resume=True)
    started = tmp_path / "started"
    train(_options(data, steps=2, init=str(run / "generator.safetensors")), started)
    same = os.path.relpath(run / "generator.safetensors")  # the same file, spelt otherwise: fine
    assert train(_options(data, steps=3, init=same), started, resume=True).step == 3


def test_a_run_folder_in_use_is_refused_to_a_second_run(data, tmp_path):
    """A second `srgan train` (or `--resume`) into the folder of a run still going is refused
    before it touches the folder; it took the live run over before."""
    import fcntl

    run = tmp_path / "run"
    train(_options(data, steps=2), run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with open(run / ".lock", "w") as held:  # as the live run holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        for resume in (False, True):
            with pytest.raises(SrganError, match="another srgan train is running in this folder"):
                train(_options(data, steps=4), run, resume=resume)
        result = CliRunner().invoke(main, ["train", "--out", str(run), "--resume", "--steps", "4"])
        assert result.exit_code == 1 and "another srgan train" in result.output
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.name != ".lock"} == before
    assert train(_options(data, steps=4), run, resume=True).step == 4  # free again
    assert (run / ".lock").exists()  # made here by the "live run", not by the run: left where it was


def test_a_run_that_fails_before_writing_leaves_no_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SrganError, match="no usable training images"):
        train(_options(tmp_path / "empty", steps=2), tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "option",
    [
        {"content_loss": "vgg22"},
        {"gan_type": "relativistic"},
        {"adv_weight": 5e-3},
        {"vgg_weights": "vgg19.safetensors"},
        {"d_batch_norm": False},
        {"pixel_weight": 0.0},
    ],
    ids=lambda o: next(iter(o)),
)
def test_gan_options_are_refused_in_the_mse_stage(data, tmp_path, option):
    """The mse stage trains on the pixel loss alone: these were accepted and ignored (the content
    loss even recorded in the weights' metadata), and --pixel-weight 0 trained nothing."""
    flag = "--" + next(iter(option)).replace("_", "-")
    with pytest.raises(SrganError, match=f"{flag}: only in --stage gan"):
        train(_options(data, steps=1, **option), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    train(_options(data, steps=1, content_loss="mse", pixel_weight=1.0), tmp_path / "plain")  # the stage's own


def test_a_failed_checkpoint_write_is_one_line_and_leaves_the_last_one(data, tmp_path, monkeypatch):
    """A full disk reaches torch.save as a RuntimeError ("unexpected pos ..."): it was a traceback,
    after generator.safetensors had already moved past the checkpoint a resume starts from."""
    run = tmp_path / "run"
    train(_options(data, steps=2), run)
    before = {name: (run / name).read_bytes() for name in (CHECKPOINT, "generator.safetensors")}

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 148736 vs 148636")

    monkeypatch.setattr(torch, "save", full)
    result = CliRunner().invoke(main, ["train", "--out", str(run), "--resume", "--steps", "4", "-q"])
    line = _one_line_error(result)
    assert "cannot write the checkpoint" in line and "disk full" in line and "--resume" in line, line
    assert {name: (run / name).read_bytes() for name in before} == before
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_a_failed_metrics_write_names_the_file(data, tmp_path, monkeypatch):
    import builtins

    run = tmp_path / "run"
    real_open = builtins.open

    def opener(file, mode="r", *args, **kwargs):
        if str(file).endswith("metrics.jsonl") and "a" in mode:
            raise OSError(28, "No space left on device")
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", opener)
    line = _one_line_error(_cli_train(data, run))
    assert "metrics.jsonl: cannot write (No space left on device)" in line, line


@pytest.mark.skipif(
    torch.multiprocessing.get_start_method(allow_none=False) != "fork", reason="workers see the patch only when forked"
)
def test_an_error_in_a_loader_worker_is_its_one_line(data, tmp_path, monkeypatch):
    """torch re-raises a worker's SrganError with the worker's whole traceback in its message."""
    import srgan_cli.data as data_module

    def broken(path, **kwargs):
        raise ValueError("cannot decode")

    monkeypatch.setattr(data_module, "read_rgb8", broken)  # the scan reads headers only: it still passes
    result = _cli_train(data, tmp_path / "run", "--workers", "1", "--cache", "off")
    line = _one_line_error(result)
    assert f"{data}: none of the training images can be read (first: {data}" in line, line
    assert "cannot decode); fix --data, then start the run again" in line and "Traceback" not in line, line


def test_a_resume_keeps_what_the_run_began_with(tmp_path, monkeypatch):
    """Resumed from another folder, relative paths mean what they meant when the run began (it
    trained on another `images/` before); images added to --data since do not change the
    held-out validation images (they went into training before)."""
    import hashlib

    base = tmp_path / "base"
    _images(base / "images", count=4)
    monkeypatch.chdir(base)
    train({"data": "images", "steps": 2, "val_holdout": 1, "val_every": 1, **TINY}, "run")
    held = load_checkpoint(base / "run" / CHECKPOINT)["held_out"]
    assert len(held) == 1

    def rank(name: str) -> str:
        return hashlib.sha256(name.encode()).hexdigest()

    extra = next(f"new{i}.png" for i in range(1000) if rank(f"new{i}.png") < rank(held[0]))
    Image.open(base / "images" / held[0]).save(base / "images" / extra)  # would be held out by a new run
    elsewhere = tmp_path / "elsewhere"
    _images(elsewhere / "images", count=1, seed=5)  # another images/ where the resume runs
    monkeypatch.chdir(elsewhere)
    events: list[dict] = []
    result = train({"steps": 4}, base / "run", resume=True, report=events.append)
    assert result.step == 4
    summary = next(e["message"] for e in events if "training images in" in e.get("message", ""))
    assert summary.startswith("4 training images in") and str(base / "images") in summary, summary
    assert load_checkpoint(base / "run" / CHECKPOINT)["held_out"] == held


def test_a_resume_with_another_validation_set_starts_the_best_again(data, tmp_path):
    """Scores on another --val set do not compare: a resume with one kept the old set's best."""
    sets = {}
    for name, seed in (("a", 7), ("b", 9)):
        sets[name] = tmp_path / name
        _images(sets[name] / "HR", count=2, size=40, seed=seed)
    run = tmp_path / "run"
    train(_options(data, steps=2, lr=1e-3, val=str(sets["a"]), val_every=2), run)
    first = (run / "generator_best.safetensors").read_bytes()
    events: list[dict] = []
    train({"steps": 4, "val": str(sets["b"]), "val_every": 2}, run, resume=True, report=events.append)
    assert any("validation changed since the checkpoint" in e.get("message", "") for e in events)
    best = read_metadata(run / "generator_best.safetensors")
    assert (run / "generator_best.safetensors").read_bytes() != first and best["val"] == str(sets["b"])
    assert best["steps"] == "4"


def test_an_mse_run_from_init_records_it(data, tmp_path):
    """A longer mse schedule from earlier weights (how the bundled srresnet_x4 was trained)."""
    train(_options(data, steps=1), tmp_path / "first")
    init = str(tmp_path / "first" / "generator.safetensors")
    train(_options(data, steps=1, init=init), tmp_path / "second")
    assert read_metadata(tmp_path / "second" / "generator.safetensors")["init"] == init


def test_resume_mistakes_are_one_line_that_says_what_to_do(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=4), run)
    runner = CliRunner()

    def resume(*args: str, code: int = 2) -> str:  # 2: a wrong command line, as for click's usage errors
        return _one_line_error(runner.invoke(main, ["train", "--out", str(run), "--resume", *args]), code)

    assert "--no-batch-norm differs from the run being resumed (BatchNorm)" in resume("--no-batch-norm")
    assert "--init" in resume("--init", str(run / "generator.safetensors"))
    line = resume("--steps", "2")  # printed "step 4 of 2" and rewrote config.json's steps
    assert "--steps 2 is below the run's step 4" in line, line
    assert json.loads((run / "config.json").read_text())["steps"] == 4
    state = torch.load(run / CHECKPOINT, weights_only=True)
    for damage in ({"config": {**state["config"], "patch_size": "big"}}, {"generator_config": None}):
        torch.save({**state, **damage}, run / CHECKPOINT)
        assert "is damaged" in resume("--steps", "6", code=1)
    torch.save(state, run / CHECKPOINT)
    result = runner.invoke(
        main, ["upscale", str(data / "0.png"), "-o", str(tmp_path / "x.png"), "-m", str(run / CHECKPOINT)]
    )
    assert (
        result.exit_code == 1 and "generator.safetensors" in result.output and "a training checkpoint" in result.output
    )
    result = _cli_train(data, tmp_path / "tiny", "--patch-size", "4", "--batch-size", "1")
    assert result.exit_code == 2 and "1 px" in result.output and "Traceback" not in result.output


def test_a_run_from_before_the_mse_stage_refused_gan_options_still_resumes(data, tmp_path):
    """Runs that recorded now-refused values (never used) resume: they are dropped, not refused."""
    run = tmp_path / "run"
    train(_options(data, steps=2), run)
    state = torch.load(run / CHECKPOINT, weights_only=True)
    old = {"gan_type": "relativistic", "d_batch_norm": False, "lr_step": 1, "best_by": "psnr", "content_loss": "vgg22"}
    torch.save({**state, "config": {**state["config"], **old}}, run / CHECKPOINT)
    assert train({"steps": 3}, run, resume=True).step == 3
    assert CliRunner().invoke(main, ["train", "--out", str(run), "--resume", "--steps", "4", "-q"]).exit_code == 0


def test_rank_without_a_world_takes_the_lock_and_a_bad_rank_is_no_traceback(data, tmp_path, monkeypatch):
    import fcntl

    run = tmp_path / "run"
    train(_options(data, steps=2), run)
    monkeypatch.setenv("RANK", "1")  # left in the environment, no WORLD_SIZE: one process
    with open(run / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(SrganError, match="another srgan train"):
            train({"steps": 4}, run, resume=True)
    monkeypatch.setenv("RANK", "abc")
    assert train({"steps": 4}, run, resume=True).step == 4


def test_a_resume_elsewhere_compares_init_and_finds_val_where_the_run_began(tmp_path, monkeypatch):
    base = tmp_path / "base"
    _images(base / "images", count=3)
    _images(base / "valdir" / "HR", count=2, seed=7)
    monkeypatch.chdir(base)
    train({"data": "images", "steps": 1, **TINY}, "first")
    init = "first/generator.safetensors"
    train({"data": "images", "steps": 2, "init": init, "val": "valdir", "val_every": 1, **TINY}, "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    events: list[dict] = []
    options = {"steps": 3, "init": str(base / init)}  # the same file, typed from here
    assert train(options, base / "run", resume=True, report=events.append).step == 3
    assert not any("validation changed" in e.get("message", "") for e in events)
    assert read_metadata(base / "run" / "generator_best.safetensors")["val"] == str(base / "valdir")


def test_a_resume_whose_held_out_images_are_gone_says_so_and_starts_the_best_again(tmp_path):
    data = _images(tmp_path / "images", count=5)
    run = tmp_path / "run"
    train(_options(data, steps=2, val_holdout=2, val_every=1), run)
    held = load_checkpoint(run / CHECKPOINT)["held_out"]
    for name in held:
        (data / name).unlink()
    events: list[dict] = []
    train({"steps": 3}, run, resume=True, report=events.append)
    messages = [e.get("message", "") for e in events]
    assert any("2 of the 2 held-out images are gone" in m for m in messages), messages
    assert any("validation changed since the checkpoint (other held-out images)" in m for m in messages), messages
    assert read_metadata(run / "generator_best.safetensors")["steps"] == "3"


def test_an_error_from_a_loader_worker_exits_instead_of_hanging(tmp_path):
    """The error was printed, then the process waited forever at exit for a worker it had sent one
    SIGTERM (which workers leave to the main process): the traceback kept the loader alive."""
    data = tmp_path / "data"
    data.mkdir()
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buf, "PNG")
    (data / "a.png").write_bytes(buf.getvalue()[:60])  # the header reads; the pixels do not
    args = [sys.executable, "-m", "srgan_cli", "train", "--data", str(data), "--out", str(tmp_path / "run")]
    args += ["--steps", "2", "--batch-size", "2", "--patch-size", "24", "--workers", "1", "--cache", "off"]
    args += ["--device", "cpu", "--threads", "1", "-q"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {data}: none of the training images can be read (first: {data / 'a.png'}: ")


def test_the_config_files_data_dir_beats_the_environment(data, shared_data, tmp_path, monkeypatch):
    """SRGAN_DATA_DIR came in as if it were --data-dir on the command line, beating the file."""
    cfg = tmp_path / "train.toml"
    cfg.write_text(f'[train]\nval = "set5"\ndata_dir = "{(shared_data / "bench").as_posix()}"\nval-every = 1\n')
    monkeypatch.setenv("SRGAN_DATA_DIR", str(tmp_path / "elsewhere"))  # no such folder
    result = _cli_train(data, tmp_path / "run", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data_dir"] == str(shared_data / "bench")
    cfg.write_text('[train]\nval = "set5"\nval-every = 1\n')  # without it, the variable is the default
    monkeypatch.setenv("SRGAN_DATA_DIR", str(shared_data / "bench"))
    assert _cli_train(data, tmp_path / "run2", "--config", str(cfg)).exit_code == 0


def test_a_config_file_may_name_paths_from_home_and_spell_each_option_once(data, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = tmp_path / "train.toml"
    cfg.write_text(f'[train]\ndata = "~/{data.name}"\nout = "~/runs/a"\n')
    args = ["train", "--config", str(cfg), "--steps", "1", "--batch-size", "2", "--patch-size", "16"]
    args += ["--workers", "0", "--device", "cpu", "-q", "--num-blocks", "1", "--num-features", "8"]
    monkeypatch.chdir(data)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output  # was: "~/images: no such folder"
    assert (tmp_path / "runs" / "a" / "generator.safetensors").is_file() and not (data / "~").exists()
    for first, second in [
        ("log-every = 1", "log_every = 2"),  # the last one won, silently
        ("batch-norm = false", "no-batch-norm = false"),
        ("compile = true", "compile_ = false"),
        ("d-batch-norm = true", "no_d_batch_norm = true"),
    ]:
        cfg.write_text(f"[train]\n{first}\n{second}\n")
        line = _one_line_error(_cli_train(data, tmp_path / "run", "--config", str(cfg)), code=2)
        assert f"{first.split()[0]!r} and {second.split()[0]!r} are the same option" in line, line
    cfg.write_text("[train\nsteps = 1\n")  # a bad config file is a bad command line: 2, as its bad values
    assert "not valid TOML" in _one_line_error(_cli_train(data, tmp_path / "run", "--config", str(cfg)), code=2)


def test_a_config_files_paths_expand_home_before_they_must_exist_and_flags_replace_them(data, tmp_path, monkeypatch):
    """vgg_weights = "~/vgg19.safetensors" was refused as a file that does not exist (the check came
    before "~" was expanded), and a path that exists on another machine only was refused though
    --vgg-weights replaced it."""
    from srgan_cli.commands.train import _read_config

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "vgg19.safetensors").write_bytes(b"weights")
    cfg = tmp_path / "vgg.toml"
    cfg.write_text('[train]\nvgg_weights = "~/vgg19.safetensors"\ncache_dir = "~/cache"\n')
    options, _ = _read_config(cfg)
    assert options == {"vgg_weights": tmp_path / "vgg19.safetensors", "cache_dir": tmp_path / "cache"}
    cfg.write_text('[train]\nvgg_weights = "/nowhere/machineA/vgg19.safetensors"\nsteps = 2\n')
    assert _read_config(cfg, {"vgg_weights"}) == ({"steps": 2}, {"steps": f"steps = 2 in {cfg}"})
    args = ["--stage", "gan", "--config", str(cfg), "--vgg-weights", str(tmp_path / "vgg19.safetensors")]
    line = _one_line_error(_cli_train(data, tmp_path / "run", *args), code=2)
    assert "does not exist" not in line and "--init" in line, line  # as without the file: the gan stage needs --init
    cfg.write_text("[train]\nvgg_weights = 5\n")  # a value of the wrong type is the file's error all the same
    with pytest.raises(SrganError, match="vgg_weights must be a string, got int"):
        _read_config(cfg, {"vgg_weights"})


@pytest.mark.parametrize(
    "entry, message",
    [
        ('device = ""', "device: '': expected auto, cpu, cuda, cuda:N or mps"),  # trained on the CPU, recorded ""
        ('device = "gpu"', "device: 'gpu': expected auto, cpu, cuda, cuda:N or mps"),
        ('content_loss = "conv9_9"', "content_loss: unknown VGG19 layer 'conv9_9'"),
        ('lr_milestones = "20,10"', "lr_milestones: "),
        ('init = ""', "init: an empty model (an unset variable?)"),
    ],
)
def test_config_values_are_checked_as_their_flags_are(data, tmp_path, entry, message):
    """The flags' own checks (their callbacks) were skipped for a file's values: device = "gpu" and
    an unknown content-loss layer failed later, exit 1, where the flag is refused with exit 2."""
    cfg = tmp_path / "train.toml"
    cfg.write_text(f'[train]\nstage = "gan"\n{entry}\n')
    args = ["train", "--config", str(cfg), "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "1"]
    line = _one_line_error(CliRunner().invoke(main, args), code=2)
    assert line.startswith(f"error: {cfg}: {message}"), line
    assert not (tmp_path / "run").exists()


def test_option_combinations_the_trainer_refuses_exit_2(data, tmp_path):
    for extra in (["--stage", "gan", "--patch-size", "32", "--content-loss", "mse"], ["--cuda-graphs"]):
        line = _one_line_error(_cli_train(data, tmp_path / "run", *extra), code=2)
        assert "--init" in line or "--cuda-graphs" in line, line
        assert not (tmp_path / "run").exists()


def test_the_weights_say_which_step_their_validation_score_is_from(data, tmp_path):
    """generator.safetensors recorded the last val_psnr, measured on older weights, as its own."""
    run = tmp_path / "run"
    train(_options(data, steps=3, val=str(data), val_every=2, checkpoint_every=3), run)
    meta = read_metadata(run / "generator.safetensors")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    measured = {row["step"]: row["val_psnr"] for row in rows if row.get("val_psnr") is not None}
    assert meta["steps"] == "3" and meta["val_step"] == "3"  # the last step validates
    assert float(meta["val_psnr"]) == pytest.approx(measured[3], abs=1e-4)
    best = read_metadata(run / "generator_best.safetensors")
    assert best["val_step"] == best["steps"]

    def interrupt_at_step_5(event):  # Ctrl-C: the checkpoint is of a step that was not validated
        if event.get("event") == "log" and event.get("step") == 5:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):  # after saving
        train(
            _options(data, steps=50, val=str(data), val_every=2, log_every=1),
            run,
            resume=True,
            report=interrupt_at_step_5,
        )
    meta = read_metadata(run / "generator.safetensors")
    assert meta["steps"] == "5" and meta["val_step"] == "4", meta


def test_an_empty_path_is_a_usage_error_in_train_and_bench(data, tmp_path, monkeypatch):
    """--out "" wrote the run (checkpoint, config, weights) into the current folder; bench's
    --save-images "" wrote its folders there."""
    monkeypatch.chdir(tmp_path)
    for option in ("--out", "--data", "--data-dir"):
        result = _cli_train(data, tmp_path / "run", option, "")
        assert result.exit_code == 2 and "an empty path" in result.output, (option, result.output)
    args = ["bench", "--set", "set5", "-m", "bicubic", "--no-lpips", "--save-images", ""]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "an empty path" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images"]


def test_an_empty_val_or_cache_dir_is_refused_on_the_command_line_and_in_a_config_file(data, tmp_path, monkeypatch):
    """--val "" trained without validating and recorded "val": ""; --cache disk --cache-dir "" wrote
    the decoded images into ./srgan-decoded, where the other path options refuse ''."""
    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "train.toml"
    for option, message in (("--val", "an empty value"), ("--cache-dir", "an empty path")):
        result = _cli_train(data, tmp_path / "run", "--cache", "disk", option, "")
        assert result.exit_code == 2 and f"Invalid value for '{option}': {message}" in result.output, result.output
        key = option[2:].replace("-", "_")
        cfg.write_text(f'[train]\ncache = "disk"\n{key} = ""\n')
        line = _one_line_error(_cli_train(data, tmp_path / "run", "--config", str(cfg)), code=2)
        assert line.startswith(f"error: {cfg}: {key}: {message} (an unset variable?)"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "train.toml"]


def test_a_resume_rewrites_a_generator_missing_or_older_than_its_checkpoint(data, tmp_path):
    """A run stopped between writing checkpoint.pt and generator.safetensors kept an older file (or
    none); a resume with nothing left to train said "done" over it."""
    run, other = tmp_path / "run", tmp_path / "other"
    train(_options(data, steps=2), run)
    train(_options(data, steps=1), other)
    checkpointed = _weights(run)
    for damage in ("older", "missing"):
        if damage == "older":
            (run / "generator.safetensors").write_bytes((other / "generator.safetensors").read_bytes())
        else:
            (run / "generator.safetensors").unlink()
        result = CliRunner().invoke(main, ["train", "--out", str(run), "--resume"])
        assert result.exit_code == 0, result.output
        assert "older than the checkpoint: written from it (step 2)" in result.output, result.output
        assert read_metadata(run / "generator.safetensors")["steps"] == "2"
        rewritten = load_file(run / "generator.safetensors")
        assert all(torch.equal(rewritten[k], v) for k, v in checkpointed.items() if k in rewritten)
    result = CliRunner().invoke(main, ["train", "--out", str(run), "--resume"])
    assert result.exit_code == 0 and "written from it" not in result.output, result.output  # current: left alone


def _diverge_at(monkeypatch, step: int) -> None:
    """Turn one weight NaN in the update of ``step`` (counted from 1), after its loss is computed:
    what a too-large update does, without waiting for one."""
    from srgan_cli.train import _Trainer

    real = _Trainer._train_step

    def train_step(self, lr, hr):
        losses = real(self, lr, hr)
        if self.step + 1 == step:
            with torch.no_grad():
                next(self.G.parameters()).view(-1)[0] = float("nan")
        return losses

    monkeypatch.setattr(_Trainer, "_train_step", train_step)


def test_weights_that_diverged_after_the_last_loss_reach_no_file(data, tmp_path, monkeypatch):
    """The last update before a save is seen by no loss: a diverging run wrote NaN weights as its
    checkpoint (the resume it advised failed again) and as generator_best (black images)."""
    _diverge_at(monkeypatch, 1)
    run = tmp_path / "run"
    with pytest.raises(SrganError, match=r"weights became NaN or infinite by step 1.*start the run again") as err:
        train(_options(data, steps=1, val_holdout=1, val_every=1), run)
    assert "--resume" not in str(err.value).replace("to --resume from", "")  # there is nothing to resume
    assert not {CHECKPOINT, "generator.safetensors", "generator_best.safetensors"} & {p.name for p in run.iterdir()}

    monkeypatch.undo()
    _diverge_at(monkeypatch, 3)
    run = tmp_path / "later"
    with pytest.raises(SrganError, match=r"by step 3.*--resume from the last checkpoint \(step 2\)"):
        train(_options(data, steps=4, checkpoint_every=2, val_holdout=1, val_every=1), run)
    assert load_checkpoint(run / CHECKPOINT)["step"] == 2
    for name in ("generator.safetensors", "generator_best.safetensors"):
        assert all(torch.isfinite(t).all() for t in load_file(run / name).values()), name
    assert all(torch.isfinite(t).all() for t in _weights(run).values())


def test_validation_refuses_a_nan_output_instead_of_scoring_it_as_black(data, tmp_path, monkeypatch):
    from srgan_cli.train import _Trainer

    class Nan(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 3, x.shape[2] * 4, x.shape[3] * 4), float("nan"))

    monkeypatch.setattr(_Trainer, "export_model", lambda self: Nan())
    with pytest.raises(SrganError, match=r"validation at step 1: the generator's output for .* is NaN"):
        train(_options(data, steps=1, val_holdout=1, val_every=1), tmp_path / "run")
    assert not (tmp_path / "run" / "generator_best.safetensors").exists()


@pytest.mark.parametrize(
    "flag, value",
    [("--lr", "1.5"), ("--lr", "4e37"), ("--batch-size", "1000000000000")],
    ids=["lr", "huge-lr", "batch"],
)
def test_absurd_learning_rates_and_batches_are_option_errors(data, tmp_path, flag, value):
    """--lr 4e37 overflowed Adam's float32 step (a traceback), a huge batch size a MemoryError."""
    line = _one_line_error(_cli_train(data, tmp_path / "run", flag, value), 2)
    assert flag in line, line
    assert not (tmp_path / "run").exists()


def test_a_failed_first_checkpoint_does_not_send_the_user_to_a_resume(data, tmp_path, monkeypatch):
    import srgan_cli.train as train_module

    def full(path, state):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_module, "_save_checkpoint", full)
    with pytest.raises(SrganError, match=r"checkpoint \(No space left on device\).*start the run again"):
        train(_options(data, steps=1), tmp_path / "run")


def test_resume_of_a_run_stopped_after_a_best_generator_points_to_it(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=1, val_holdout=1, val_every=1), run)
    for name in (CHECKPOINT, "generator.safetensors"):  # killed after validation, before the first checkpoint
        (run / name).unlink()
    line = _one_line_error(CliRunner().invoke(main, ["train", "--out", str(run), "--resume"]))
    best = run / "generator_best.safetensors"
    assert "generator_best.safetensors is kept" in line and f"--init {best}" in line, line
    assert "without --resume" not in line, line


def test_names_that_are_not_utf8_train_and_are_kept_in_the_metadata(tmp_path):
    """Bytes from another system's encoding in a file or folder name: --val-holdout's ranking
    raised UnicodeEncodeError, and the first checkpoint's weights file a traceback (safetensors
    metadata is UTF-8 only), after checkpoint.pt was written."""
    data = _images(Path(os.fsdecode(bytes(tmp_path) + b"/d\xe9ta")), count=3)
    os.rename(data / "0.png", os.fsdecode(bytes(data) + b"/caf\xe9.png"))
    run = tmp_path / "run"
    result = _cli_train(data, run, "--val-holdout", "1", "--steps", "2")
    assert result.exit_code == 0, result.output
    meta = read_metadata(run / "generator.safetensors")
    assert meta["data"].endswith("d\\xe9ta"), meta["data"]  # the undecodable byte, as an escape
    assert load_checkpoint(run / CHECKPOINT)["held_out"]


def test_weights_and_runs_whose_names_are_not_utf8_load_and_resume(tmp_path):
    """The safetensors library takes UTF-8 names only: such a file was "not a valid safetensors
    file", and every resume of a run in such a folder rewrote its current generator.safetensors."""
    run = Path(os.fsdecode(bytes(tmp_path) + b"/run\xe9"))
    train(_options(_images(tmp_path / "data"), steps=1), run)
    model, config, meta = load_generator(run / "generator.safetensors")
    assert meta["steps"] == "1" and config.num_blocks == TINY["num_blocks"]
    for _ in range(2):
        result = CliRunner().invoke(main, ["train", "--out", str(run), "--resume"])
        assert result.exit_code == 0 and "written from it" not in result.output, result.output


def test_before_the_first_checkpoint_with_a_best_generator_the_advice_is_another_out(data, tmp_path, monkeypatch):
    """A validation wrote generator_best before the run diverged: "start the run again" was
    refused there, since a new run does not overwrite that file."""
    _diverge_at(monkeypatch, 2)
    run = tmp_path / "run"
    with pytest.raises(SrganError, match=r"again with another --out .*generator_best.safetensors is kept"):
        train(_options(data, steps=4, checkpoint_every=3, val_holdout=1, val_every=1), run)
    assert (run / "generator_best.safetensors").is_file() and not (run / CHECKPOINT).exists()


def test_an_interrupted_window_is_logged_so_no_step_is_lost_across_a_resume(data, tmp_path, monkeypatch):
    """Ctrl-C at step 5 with --log-every 3: steps 4-5 were in no metrics line, and the first line after
    --resume averaged fewer steps than an uninterrupted run's did."""
    import srgan_cli.train as train_module

    whole = tmp_path / "whole"
    train(_options(data, steps=9, log_every=1), whole)
    per_step = [json.loads(line)["loss"] for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert len(per_step) == 9

    real = train_module._Trainer._stop_agreed
    monkeypatch.setattr(train_module._Trainer, "_stop_agreed", lambda self, stop: self.step == 5 or real(self, stop))
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(_options(data, steps=9, log_every=3), run)
    monkeypatch.setattr(train_module._Trainer, "_stop_agreed", real)
    assert load_checkpoint(run / CHECKPOINT)["step"] == 5
    train(_options(data, steps=9, log_every=3), run, resume=True)
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [3, 5, 6, 9]
    want = [np.mean(per_step[0:3]), np.mean(per_step[3:5]), per_step[5], np.mean(per_step[6:9])]
    assert [r["loss"] for r in lines] == pytest.approx(want, rel=1e-5)


def test_the_weights_a_run_started_from_are_named_by_content(data, tmp_path):
    """`init` held only the path as typed: after the init file was rewritten (a resumed mse run
    rewrites its generator.safetensors) nothing said which weights the run had started from."""
    from srgan_cli.weights import sha256_file

    first = tmp_path / "first"
    train(_options(data, steps=2), first)
    init = first / "generator.safetensors"
    started_from = sha256_file(init)
    run = tmp_path / "run"
    train(_options(data, steps=2, init=str(init)), run)
    assert read_metadata(run / "generator.safetensors")["init_sha256"] == started_from
    train({"steps": 4}, first, resume=True)  # the init path now holds other weights
    assert sha256_file(init) != started_from
    train({"steps": 4}, run, resume=True)
    assert read_metadata(run / "generator.safetensors")["init_sha256"] == started_from


def test_the_same_weights_and_metadata_make_the_same_file(data, tmp_path):
    """safetensors wrote the metadata in a hash map's order: identical weights had other sha256s."""
    from srgan_cli.weights import sha256_file

    train(_options(data, steps=2), tmp_path / "a")
    model, config, meta = load_generator(tmp_path / "a" / "generator.safetensors")
    for name in ("b", "c", "d"):
        save_generator(tmp_path / f"{name}.safetensors", model, config, meta)
    assert len({sha256_file(tmp_path / f"{name}.safetensors") for name in "bcd"}) == 1


def test_an_option_at_odds_with_the_init_is_a_usage_error(data, tmp_path):
    """--arch rrdb with an SRResNet --init exited 1, as a failed run; it is a wrong command line (2)."""
    train(_options(data, steps=1), tmp_path / "first")
    init = tmp_path / "first" / "generator.safetensors"
    result = _cli_train(data, tmp_path / "run", "--init", str(init), "--num-features", "16")
    line = _one_line_error(result, 2)
    assert "its generator has num_features = 8, but --num-features 16 was asked for" in line


def test_a_config_files_value_at_odds_with_the_init_or_the_run_is_named_as_the_file_gives_it(data, tmp_path):
    """num_blocks = 2 in a --config file against a 1-block --init was blamed on "--num-blocks 2",
    which the user never typed; so was a resume's."""
    train(_options(data, steps=1), tmp_path / "first")
    init = tmp_path / "first" / "generator.safetensors"
    cfg = tmp_path / "nb.toml"
    cfg.write_text("[train]\nnum-blocks = 2\nbatch_norm = false\n")
    line = _one_line_error(_cli_train(data, tmp_path / "run", "--config", str(cfg), "--init", str(init), tiny=False), 2)
    assert f"its generator has num_blocks = 1, but num-blocks = 2 in {cfg} was asked for" in line, line
    line = _one_line_error(_cli_train(data, tmp_path / "run", "--config", str(cfg), "--init", str(init)), 2)
    assert f"its generator has batch_norm = True, but batch_norm = false in {cfg} was asked for" in line, line
    cfg.write_text("[train]\nnum_blocks = 2\n")
    result = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "first"), "--resume", "--config", str(cfg)])
    assert f"num_blocks = 2 in {cfg} differs from the run being resumed (--num-blocks 1)" in _one_line_error(result, 2)
    result = _cli_train(data, tmp_path / "run", "--init", str(init), "--num-blocks", "2", "--config", str(cfg))
    assert "but --num-blocks 2 was asked for" in _one_line_error(result, 2)  # the flag replaced the file's key


def test_a_config_files_true_keys_can_be_turned_off_and_are_named_as_the_file_gives_them(data, tmp_path):
    """resume = true in a --config file: "start the run without --resume", a flag the user never
    typed, and nothing on the command line turned it (or quiet, batch_norm) off."""
    cfg = tmp_path / "res.toml"
    cfg.write_text("[train]\nresume = true\nquiet = true\nbatch_norm = false\n")
    run = tmp_path / "run"
    line = _one_line_error(_cli_train(data, run, "--config", str(cfg)))
    assert line.endswith(
        f"no checkpoint to resume from; start the run without resume = true in {cfg} (or add --no-resume)"
    )
    result = CliRunner().invoke(
        main,
        ["train", "--config", str(cfg), "--data", str(data), "--out", str(run), "--steps", "1", "--batch-size", "2"]
        + ["--patch-size", "16", "--workers", "0", "--device", "cpu", "--num-blocks", "1", "--num-features", "8"]
        + ["--no-resume", "--no-quiet", "--batch-norm"],
    )
    assert result.exit_code == 0, result.output
    assert "done: step 1" in result.output  # not quiet
    assert load_checkpoint(run / CHECKPOINT)["generator_config"]["batch_norm"] is True


def test_an_init_file_rewritten_while_it_is_read_is_refused(data, tmp_path, monkeypatch):
    """--init from a live run's generator.safetensors, rewritten between the load and the hash: the
    run recorded the sha256 of weights it had not started from."""
    import srgan_cli.train as train_module

    train(_options(data, steps=1), tmp_path / "a")
    train(_options(data, steps=1, seed=1), tmp_path / "b")
    init = tmp_path / "init.safetensors"
    shutil.copy(tmp_path / "a" / "generator.safetensors", init)
    real = train_module.load_generator
    calls = []

    def load_then_rewrite(path, *args, **kwargs):
        loaded = real(path, *args, **kwargs)
        calls.append(path)
        if Path(path) == init and len(calls) == 2:  # the load of the weights (the first reads the config)
            shutil.copy(tmp_path / "b" / "generator.safetensors", init)  # a checkpoint landing meanwhile
        return loaded

    monkeypatch.setattr(train_module, "load_generator", load_then_rewrite)
    with pytest.raises(SrganError, match="changed while it was read"):
        train(_options(data, steps=1, init=str(init)), tmp_path / "run")


def test_train_prints_its_notes_as_note_lines_and_its_status_lines_as_they_are(data, tmp_path):
    """upscale and bench print "note: fp16 runs about 5x slower than fp32 on the CPU; running in fp32"; train
    printed its notes bare, like its progress lines. The events keep the bare message."""
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--out", str(run), "--steps", "1", "--num-blocks", "1", "--num-features", "8"]
    args += ["--batch-size", "2", "--patch-size", "16", "--workers", "0", "--device", "cpu"]
    result = CliRunner().invoke(main, [*args, "--precision", "fp16", "--cache", "on"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "note: fp16 runs about 5x slower than fp32 on the CPU; running in fp32" in lines, lines
    assert any(line.startswith("note: decoding the images into memory (") for line in lines), lines
    assert any(line.startswith(f"3 training images in {data} (skipped 0") for line in lines), lines  # status
    for start in ("stage mse: ", "step 1/1 ", "checkpoint at step 1", "done: step 1"):
        assert any(line.startswith(start) for line in lines), (start, lines)
    notes = [line for line in lines if line.startswith("note: ")]
    assert len(notes) == 2 and not any("note: note:" in line for line in lines), lines
    result = CliRunner().invoke(main, ["train", "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    assert "note: the run is already at step 1 of 1; raise --steps to train further" in result.output.splitlines()
    events = []
    train(_options(data, steps=1, precision="fp16"), tmp_path / "api", report=events.append)
    infos = [e for e in events if e["event"] == "info"]
    note = "fp16 runs about 5x slower than fp32 on the CPU; running in fp32"
    assert infos[0] == {"event": "info", "message": note, "kind": "note"}
    assert [e["kind"] for e in infos if "training images in" in e["message"]] == ["status"]


def test_out_cannot_be_standard_output(data, tmp_path, monkeypatch):
    """--out - quietly made a run folder named '-'."""
    monkeypatch.chdir(tmp_path)
    line = _one_line_error(_cli_train(data, Path("-")), code=2)
    assert line == "error: --out -: a run folder cannot be standard output; give a folder name"
    cfg = tmp_path / "run.toml"
    cfg.write_text('[train]\nout = "-"\n')
    line = _one_line_error(_cli_train(data, Path("x"), "--config", str(cfg), "--out", "-"), code=2)
    assert "standard output" in line
    args = ["train", "--data", str(data), "--config", str(cfg), "--steps", "1"]  # from the config file alone
    assert "standard output" in _one_line_error(CliRunner().invoke(main, args), code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "run.toml"]


def _bundled(name: str) -> Path:
    from srgan_cli.weights import MODELS

    path = MODELS[name].bundled_path()
    if path is None:
        pytest.skip(f"{name} is not bundled in this install")
    return path


def test_init_takes_a_model_name_as_upscale_does(data, tmp_path):
    """--stage gan --init srgan_x4 exited 2 with "File 'srgan_x4' does not exist": --init took a
    path only, while -m of upscale and bench take model names and Hub references."""
    from srgan_cli.weights import MODELS

    bundled = _bundled("srgan_x4")
    run = tmp_path / "run"
    args = ["train", "--stage", "gan", "--init", "srgan_x4", "--content-loss", "mse", "--data", str(data)]
    args += ["--out", str(run), "--steps", "1", "--batch-size", "1", "--patch-size", "16", "--d-features", "8"]
    result = CliRunner().invoke(main, [*args, "--workers", "0", "--device", "cpu", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "config.json").read_text())["init"] == str(bundled)  # the file, not the name
    meta = read_metadata(run / "generator.safetensors")
    assert meta["init"] == str(bundled) and meta["init_sha256"] == MODELS["srgan_x4"].sha256
    # a resume given the same --init again, by name, is the same weights
    result = CliRunner().invoke(main, ["train", "--out", str(run), "--resume", "--steps", "2", "--init", "srgan_x4"])
    assert result.exit_code == 0, result.output
    assert read_metadata(run / "generator.safetensors")["init"] == str(bundled)


def test_init_with_a_single_channel_generator_is_refused_before_the_run(data, tmp_path):
    """upscale, bench and models take a 1-channel generator; train --init one failed with a 40-line
    traceback at its first step (the data is RGB), after the run had started."""
    config = GeneratorConfig(num_blocks=1, num_features=8, in_channels=1)
    gray = save_generator(tmp_path / "gray.safetensors", build_generator(config), config)
    with pytest.raises(SrganError, match=r"gray\.safetensors: a 1-channel generator; srgan train trains on RGB"):
        train(_options(data, steps=1, init=str(gray)), tmp_path / "run")
    assert not (tmp_path / "run" / CHECKPOINT).exists()


def test_init_takes_a_hub_reference(data, tmp_path, monkeypatch):
    from srgan_cli import hub
    from srgan_cli.weights import sha256_file

    train(_options(data, steps=1), tmp_path / "first")
    cached = tmp_path / "hub-cache" / "model.safetensors"
    cached.parent.mkdir()
    shutil.copy(tmp_path / "first" / "generator.safetensors", cached)
    fetched = []

    def download(ref, sha256=None):
        fetched.append(ref)
        return cached

    monkeypatch.setattr(hub, "download", download)
    run = tmp_path / "run"
    train(_options(data, steps=1, init="acme/tiny-srresnet@v1"), run)
    assert fetched == [hub.HubRef("acme/tiny-srresnet", "model.safetensors", "v1")]
    assert json.loads((run / "config.json").read_text())["init"] == str(cached)
    meta = read_metadata(run / "generator.safetensors")
    assert meta["init"] == str(cached) and meta["init_sha256"] == sha256_file(cached)
    assert train({"steps": 2, "init": "acme/tiny-srresnet@v1"}, run, resume=True).step == 2


@pytest.mark.parametrize(
    "value, says",
    [
        ("bicubic", "--init bicubic: the bicubic baseline of srgan bench is no generator to train from"),
        ("srgan_x5", "--init: unknown model 'srgan_x5': expected a model name (srgan_x4, srresnet_x4"),
        ("missing.safetensors", "--init missing.safetensors: no such weights file"),
        ("images", "--init images: is a folder"),
    ],
)
def test_an_init_that_names_nothing_is_one_line_usage_error(data, tmp_path, monkeypatch, value, says):
    monkeypatch.chdir(tmp_path)
    line = _one_line_error(_cli_train(data, tmp_path / "run", "--init", value), code=2)
    assert line.startswith(f"error: {says}"), line
    assert not (tmp_path / "run").exists()


def test_an_empty_init_is_a_usage_error(data, tmp_path):
    result = _cli_train(data, tmp_path / "run", "--init", "")
    assert result.exit_code == 2 and "an empty model" in result.output, result.output


def test_a_missing_srgan_data_dir_is_named_as_the_variable(data, tmp_path, monkeypatch):
    """SRGAN_DATA_DIR=/nonexist srgan train --val set5 blamed a --data-dir the user had not given."""
    monkeypatch.setenv("SRGAN_DATA_DIR", str(tmp_path / "nonexist"))
    line = _one_line_error(_cli_train(data, tmp_path / "run", "--val", "set5"))
    assert line.startswith(f"error: SRGAN_DATA_DIR {tmp_path / 'nonexist'}: no such folder"), line
    line = _one_line_error(_cli_train(data, tmp_path / "run", "--val", "set5", "--data-dir", str(tmp_path / "no")))
    assert line.startswith(f"error: --data-dir {tmp_path / 'no'}: no such folder"), line  # given: named so


def test_the_notes_bench_prints_about_a_val_set_are_notes_of_the_run(data, tmp_path, monkeypatch):
    """train --val dropped what srgan bench --set says about the set: a partial copy of a standard
    set, LR files that pair with nothing, HR images whose LR had to be made."""
    root = tmp_path / "bench"
    _images(root / "set5" / "HR", count=2, size=40)
    (root / "set5" / "LR_x4").mkdir()
    for stem in ("0", "orphan"):
        Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(root / "set5" / "LR_x4" / f"{stem}.png")
    monkeypatch.setenv("SRGAN_DATA_DIR", str(root))
    events = []
    train(_options(data, steps=2, val="set5", val_every=1), tmp_path / "run", report=events.append)
    notes = [e["message"] for e in events if e["event"] == "info" and e["kind"] == "note"]
    expected = [
        f"--val set5: set5 at {root / 'set5'} has 2 images, the standard set5 has 5: its scores are not comparable "
        "with published ones",
        "--val set5: 1 file in LR_x4/ pairs with no HR image by name and is not used: orphan.png",
        "--val set5: 1 of 2 images have no LR file in LR_x4/ (1.png): their LR is made from HR by bicubic imresize, "
        "so their scores are not those of the LR files",
    ]
    assert [n for n in notes if n.startswith("--val")] == expected, notes  # once each, at the start
    result = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "run"), "--resume", "--steps", "3"])
    assert result.exit_code == 0, result.output
    assert "note: --val set5: 1 file in LR_x4/ pairs with no HR image by name and is not used: orphan.png" in (
        result.output.splitlines()
    )


def test_a_compiler_that_fails_at_the_first_step_is_one_line(data, tmp_path, monkeypatch):
    """torch.compile fails where it has no compiler for the device (Windows without MSVC, MPS):
    the error came at the first step as a traceback."""

    class BackendCompilerFailed(RuntimeError):
        pass

    BackendCompilerFailed.__module__ = "torch._dynamo.exc"

    def compile_that_fails(module, *args, **kwargs):
        def run(*a, **k):
            raise BackendCompilerFailed("backend='inductor' raised: Compiler: cl is not found")

        return run

    monkeypatch.setattr(torch, "compile", compile_that_fails)
    line = _one_line_error(_cli_train(data, tmp_path / "run", "--compile"))
    assert "--compile failed on this machine" in line and "cl is not found" in line and "run with --no-compile" in line


def test_an_image_that_fails_to_read_in_training_is_named_once_and_counted_at_the_end(tmp_path):
    data = _images(tmp_path / "images", count=3, size=40)
    good = (data / "1.png").read_bytes()
    (data / "1.png").write_bytes(good[: len(good) // 2])  # its header reads: the scan counts it usable
    events = []
    train(_options(data, steps=6, batch_size=3, cache="off", log_every=3), tmp_path / "run", report=events.append)
    notes = [e["message"] for e in events if e["event"] == "info" and e["kind"] == "note"]
    named = [n for n in notes if str(data / "1.png") in n]
    assert len(named) == 1 and "its patches come from the next image" in named[0], notes
    assert notes[-1] == "1 training image(s) could not be read during the run; their patches came from other images"
    # with the cache it is said once, up front, and not again during the run
    events.clear()
    train(_options(data, steps=6, batch_size=3, cache="on"), tmp_path / "cached", report=events.append)
    notes = [e["message"] for e in events if e["event"] == "info" and e["kind"] == "note"]
    (named,) = [n for n in notes if "1.png" in n]
    assert named.startswith("1 training image(s) could not be decoded")
    assert not [n for n in notes if "during the run" in n]


def test_a_corrupt_image_among_those_held_out_is_passed_over(tmp_path):
    from srgan_cli.data import hold_out, scan_images

    data = _images(tmp_path / "images", count=6, size=40)
    _, (first,) = hold_out(scan_images(data, 16), 1)
    first.write_bytes(first.read_bytes()[:60])  # truncated: the header reads, the pixels do not
    events = []
    run = tmp_path / "run"
    train(_options(data, steps=2, val_holdout=2, val_every=2), run, report=events.append)
    messages = [e["message"] for e in events if e["event"] == "info"]
    assert any(m.startswith("1 image(s) tried for validation cannot be decoded") for m in messages), messages
    status = next(m for m in messages if "training images in" in m)
    assert status.startswith("3 training images") and "1 unreadable" in status and "2 more held out" in status
    assert first.relative_to(data).as_posix() not in load_checkpoint(run / CHECKPOINT)["held_out"]


def test_a_resume_says_when_the_training_images_changed(tmp_path):
    data = _images(tmp_path / "images", count=3, size=40)
    run = tmp_path / "run"
    train(_options(data, steps=2), run)
    events = []
    train(_options(data, steps=3), run, resume=True, report=events.append)
    assert not [e for e in events if e["event"] == "info" and "changed since the checkpoint" in e["message"]]
    _images(tmp_path / "images" / "more", count=2, size=40, seed=3)
    events.clear()
    train(_options(data, steps=4), run, resume=True, report=events.append)
    changed = [e["message"] for e in events if e["event"] == "info" and "changed since the checkpoint" in e["message"]]
    assert changed == [
        "the training images under --data changed since the checkpoint (3 then, 5 now): the resumed run draws "
        "other patches than an uninterrupted run would have"
    ]


def test_a_run_stopped_before_its_first_checkpoint_says_to_start_again_not_to_resume(data, tmp_path, monkeypatch):
    """It said "continue with --resume", which then failed: "no checkpoint to resume from"."""
    from srgan_cli import train as train_module
    from srgan_cli.commands.train import _Reporter

    monkeypatch.setattr(train_module._Trainer, "_stop_agreed", lambda self, stop: True)
    events = []
    with pytest.raises(KeyboardInterrupt):
        train(_options(data, steps=5), tmp_path / "run", report=events.append)
    (stopped,) = [e for e in events if e["event"] == "interrupted"]
    assert stopped["resumable"] is False and not (tmp_path / "run" / CHECKPOINT).exists()
    lines = []
    reporter = _Reporter()
    monkeypatch.setattr(reporter, "_line", lines.append)
    reporter(stopped)
    assert lines == ["interrupted before the first checkpoint: nothing to resume; start the run again"]
    reporter({**stopped, "resumable": True})
    assert lines[-1] == "interrupted: nothing new to save; continue with --resume"


def test_an_image_too_small_to_validate_on_is_an_error_not_an_unreadable_file(tmp_path):
    """A readable image too small for --val-holdout was counted unreadable and left out of
    training; it is the one-line error it was before."""
    from srgan_cli.data import hold_out, scan_images

    data = _images(tmp_path / "images", count=4, size=40)
    _images(tmp_path / "images" / "small", count=4, size=10, seed=2)
    _, held = hold_out(scan_images(data, 8), 2)
    if not any(p.parent.name == "small" for p in held):
        pytest.skip("no small image among the first held out")  # the hash decides; it does for these names
    with pytest.raises(SrganError, match="too small to validate"):
        train(_options(data, steps=1, patch_size=8, val_holdout=2), tmp_path / "run")


def test_lr_milestones_and_gamma_give_esrgan_schedule_and_are_checked():
    from srgan_cli.errors import OptionError
    from srgan_cli.train import lr_at

    esr = TrainConfig(data="x", steps=400, lr_decay="step", lr_milestones="50,100,200,300", lr_gamma=0.5).resolved()
    assert esr.lr_milestones == [50, 100, 200, 300]
    assert [lr_at(esr, s) for s in (0, 49, 50, 99, 100, 250, 399)] == pytest.approx(
        [1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5, 1.25e-5, 6.25e-6]
    )
    for bad, message in (
        ({"lr_milestones": "100,50"}, "must rise"),
        ({"lr_milestones": "0"}, "whole numbers >= 1"),
        ({"lr_milestones": "a,b"}, "whole numbers >= 1"),
        ({"lr_milestones": [10, 20], "lr_step": 5}, "give one"),
        ({"lr_milestones": [10], "lr_decay": "cosine"}, "--lr-decay step"),
    ):
        with pytest.raises(OptionError, match=message):
            TrainConfig(data="x", stage="gan", steps=100, **bad).resolved()


def test_lr_milestones_from_the_command_line_and_a_config_array(data, tmp_path):
    cfg = tmp_path / "train.toml"
    cfg.write_text("[train]\nlr-milestones = [2, 3]\nlr-gamma = 0.5\nlr-decay = 'step'\n")
    out = tmp_path / "run"
    args = ["train", "--config", str(cfg), "--data", str(data), "--out", str(out), "--steps", "4", "--log-every", "1"]
    args += ["--num-blocks", "1", "--num-features", "8", "--patch-size", "16", "--batch-size", "2", "--device", "cpu"]
    result = CliRunner().invoke(main, [*args, "-q"])
    assert result.exit_code == 0, result.output
    lrs = [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lrs == pytest.approx([1e-4, 1e-4, 5e-5, 2.5e-5])
    bad = ["train", "--data", str(data), "--out", str(tmp_path / "b"), "--lr-milestones", "9,3"]
    result = CliRunner().invoke(main, bad)
    assert result.exit_code == 2 and "must rise" in result.output and "Traceback" not in result.output


def test_a_resume_with_new_milestones_replaces_the_lr_step(data, tmp_path):
    run = tmp_path / "run"
    opts = _options(data, steps=2, lr_decay="step", lr_step=1, log_every=1)
    train(opts, run)
    assert train({"steps": 4, "lr_milestones": [3]}, run, resume=True).step == 4
    lrs = [json.loads(line)["lr"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert lrs[2:] == pytest.approx([1e-4, 1e-5])  # steps 2, 3: the drop at 3 alone, no longer one every step


def test_gan_content_criterion_feature_scale_and_tv_weight_reach_the_loss(mse_generator, data, tmp_path, monkeypatch):
    from srgan_cli import losses

    made = []
    real = losses.content_loss_from_spec

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(losses, "content_loss_from_spec", spy)
    opts = _options(data, stage="gan", init=str(mse_generator), steps=2, batch_size=2, patch_size=16, log_every=1)
    opts.update(content_loss="mse", content_criterion="l1", feature_scale=0.5, tv_weight=0.25, adv_weight=0.0)
    result = train(opts, tmp_path / "run")
    assert made and made[0].criterion == "l1" and made[0].feature_scale == 0.5
    meta = read_metadata(tmp_path / "run" / "generator.safetensors")
    assert (meta["content_criterion"], meta["feature_scale"], meta["tv_weight"]) == ("l1", "0.5", "0.25")
    for row in result.history:
        assert row["loss"] == pytest.approx(row["loss_content"] + 0.25 * row["loss_tv"], rel=1e-5)
        assert row["loss_tv"] > 0
    with pytest.raises(SrganError, match="only in --stage gan"):
        train(_options(data, steps=1, tv_weight=0.1), tmp_path / "m1")
    with pytest.raises(SrganError, match="only in --stage gan"):
        train(_options(data, steps=1, content_criterion="l1"), tmp_path / "m2")


def _notes(events: list[dict]) -> list[str]:
    return [e["message"] for e in events if e["event"] == "info" and e.get("kind") == "note"]


def test_a_resume_applies_new_adam_betas_and_says_what_it_changes(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=2, lr=1e-3, ema=0.5), run)
    events: list[dict] = []
    train({"steps": 3, "adam_beta1": 0.5, "lr": 2e-3, "ema": 0.0}, run, resume=True, report=events.append)
    state = load_checkpoint(run / CHECKPOINT)
    assert [g["betas"] for g in state["optimizer_g"]["param_groups"]] == [(0.5, 0.999)]  # was (0.9, 0.999) still
    (note,) = [n for n in _notes(events) if "this resume changes" in n]
    assert "--lr 0.001 -> 0.002" in note and "--adam-beta1 0.9 -> 0.5" in note and "--ema 0.5 -> 0.0" in note
    assert "the steps from 2 on" in note and "EMA kept so far is dropped" in note
    events.clear()
    train(_options(data, steps=4, lr=2e-3, adam_beta1=0.5), run, resume=True, report=events.append)
    assert not [n for n in _notes(events) if "this resume changes" in n]  # the same options again: nothing to say


@pytest.mark.parametrize("decay", ["step", "cosine"])
def test_a_resume_that_raises_steps_says_where_the_schedule_moves(data, tmp_path, decay):
    run = tmp_path / "run"
    train(_options(data, steps=4, lr_decay=decay), run)
    events: list[dict] = []
    train({"steps": 8}, run, resume=True, report=events.append)
    (note,) = [n for n in _notes(events) if "--steps 8 (was 4)" in n]
    if decay == "step":
        assert "now every 4 steps (was 2)" in note and "--lr-step 2 keeps the drops" in note
    else:
        assert "runs to step 8" in note and "from 0 to 5e-05 at step 4" in note  # it would rise again


def test_a_resume_removes_what_a_killed_save_left_and_nothing_else(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=2), run)
    left = [run / ".checkpoint.pt.0a1b2c3d.part", run / ".generator.safetensors.deadbeef.part"]
    left += [run / ".checkpoint.pt.k3_zq9xw.part"]  # mkstemp-named, as earlier versions wrote them
    kept = [run / ".notes.txt.0a1b2c3d.part", run / "checkpoint.pt.part", run / ".checkpoint.pt.xyz.part"]
    for path in left + kept:
        path.write_bytes(b"x" * 100)
    train({"steps": 3}, run, resume=True)
    assert not any(path.exists() for path in left) and all(path.exists() for path in kept)


def test_a_resume_keeps_the_random_state_of_an_uninterrupted_run(data, tmp_path):
    opts = _options(data, steps=4, checkpoint_every=2)
    train(opts, tmp_path / "full")
    train({**opts, "steps": 2}, tmp_path / "part")
    train({"steps": 4}, tmp_path / "part", resume=True)
    a, b = load_checkpoint(tmp_path / "full" / CHECKPOINT), load_checkpoint(tmp_path / "part" / CHECKPOINT)
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])  # the loader's iterator drew one more number


def test_threads_is_for_the_run_only(data, tmp_path):
    """train({"threads": N}) left torch.set_num_threads(N) in force in the calling program after it
    returned (or failed): a server that trained a model once then ran on one core."""
    from srgan_cli.errors import OptionError

    before = torch.get_num_threads()
    other = 2 if before == 1 else 1
    try:
        train(_options(data, steps=1, threads=other), tmp_path / "a")
        assert torch.get_num_threads() == before
        with pytest.raises(OptionError, match="--stage gan starts from a trained mse generator"):
            train(_options(data, steps=1, threads=other, stage="gan"), tmp_path / "b")  # fails once threads are set
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


def test_train_leaves_the_callers_random_state_as_it_was(data, tmp_path):
    """train() seeded torch's global generator with the run's seed and drew from it: the caller's
    own draws after it followed the run's seed, whatever the caller had seeded."""
    torch.manual_seed(1234)
    expected = torch.rand(4)
    torch.manual_seed(1234)
    result = train(_options(data, steps=2, seed=7), tmp_path / "a")
    assert torch.equal(torch.rand(4), expected)
    torch.manual_seed(1234)
    train({"steps": 3}, tmp_path / "a", resume=True)  # a resume sets the checkpoint's state
    assert torch.equal(torch.rand(4), expected)
    again = train(_options(data, steps=2, seed=7), tmp_path / "b")  # and the run's own stream is the run's
    first, second = result.generator.state_dict(), again.generator.state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_damaged_checkpoint_parts_and_pickled_objects_are_one_line_errors(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=2), run)
    state = torch.load(run / CHECKPOINT, weights_only=True)
    runner = CliRunner()
    for damage, said in (
        ({"config": "mse"}, "its config"),
        ({"rng": {"torch": torch.zeros(4)}}, "its rng torch"),
        ({"rng": [1, 2]}, "its rng"),
    ):
        torch.save({**state, **damage}, run / CHECKPOINT)
        line = _one_line_error(runner.invoke(main, ["train", "--out", str(run), "--resume", "--steps", "3"]), 1)
        assert "damaged checkpoint" in line and said in line, line

    class Shell:
        def __reduce__(self):
            return (os.system, ("true",))

    torch.save({**state, "extra": Shell()}, run / CHECKPOINT)
    result = runner.invoke(main, ["train", "--out", str(run), "--resume", "--steps", "3"])
    line = _one_line_error(result, 1)
    assert "holds Python objects, which are never loaded" in line and "weights_only" not in result.output


def test_a_resume_on_another_number_of_processes_says_what_a_step_is_now(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=2), run)
    state = torch.load(run / CHECKPOINT, weights_only=True)
    torch.save({**state, "world_size": 2}, run / CHECKPOINT)
    events: list[dict] = []
    train({"steps": 3}, run, resume=True, report=events.append)
    assert "trained on 2 process(es), now on 1: a step's batch is 4 patches (was 8)" in " ".join(_notes(events))


def test_metrics_lines_say_how_many_steps_their_losses_average(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=5, log_every=2), run)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["log_steps"]) for r in rows] == [(2, 2), (4, 2), (5, 1)]


def test_a_resume_of_an_older_runs_checkpoint_compares_what_it_lacks_with_the_defaults(mse_generator, data, tmp_path):
    """A checkpoint from before an option existed trained with its default: a resume that changes a
    discriminator option was "does not match this run's models ... start a new run", and the change
    of a newer loss option went without a note."""
    run = tmp_path / "run"
    train(_options(data, stage="gan", init=str(mse_generator), steps=2, content_loss="mse"), run)
    state = torch.load(run / CHECKPOINT, weights_only=True)
    old = {
        k: v for k, v in state["config"].items() if k not in ("d_arch", "d_features", "content_criterion", "tv_weight")
    }
    torch.save({**state, "config": old}, run / CHECKPOINT)
    result = CliRunner().invoke(main, ["train", "--out", str(run), "--resume", "--steps", "3", "--d-arch", "unet"])
    assert "--d-arch 'unet' differs from the run being resumed (--d-arch 'vgg')" in _one_line_error(result, 2)
    events: list[dict] = []
    train({"steps": 3, "content_criterion": "l1", "tv_weight": 0.5}, run, resume=True, report=events.append)
    (note,) = [n for n in _notes(events) if "this resume changes" in n]
    assert "--content-criterion mse -> l1" in note and "--tv-weight 0.0 -> 0.5" in note


def test_a_resume_without_the_folder_the_run_began_in_does_not_note_its_relative_data_as_changed(tmp_path, monkeypatch):
    base = tmp_path / "base"
    _images(base / "images", count=3)
    monkeypatch.chdir(base)
    train({"data": "images", "steps": 2, **TINY}, "run")
    state = torch.load(base / "run" / CHECKPOINT, weights_only=True)
    torch.save({k: v for k, v in state.items() if k != "cwd"}, base / "run" / CHECKPOINT)  # as runs before it
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    events: list[dict] = []
    train({"steps": 3, "data": str(base / "images")}, base / "run", resume=True, report=events.append)
    assert not [n for n in _notes(events) if "this resume changes" in n]


def test_a_resume_names_no_schedule_move_when_the_drops_stay(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=6, lr_decay="step"), run)
    events: list[dict] = []
    train({"steps": 7}, run, resume=True, report=events.append)  # steps/2 is 3 either way
    assert not [n for n in _notes(events) if "--steps 7" in n]


def test_cache_auto_says_when_the_images_are_not_kept_in_memory(data, tmp_path, monkeypatch):
    import srgan_cli.data as data_module

    events: list[dict] = []
    train(_options(data, steps=1, cache="auto"), tmp_path / "a", report=events.append)
    assert not [n for n in _notes(events) if "not kept decoded" in n]
    monkeypatch.setattr(data_module, "CACHE_AUTO_LIMIT", 1)
    events.clear()
    train(_options(data, steps=1, cache="auto"), tmp_path / "b", report=events.append)
    assert [
        n for n in _notes(events) if "not kept decoded in memory" in n and "--cache on" in n and "--cache disk" in n
    ]


def test_a_resume_that_names_the_runs_own_lr_decay_still_says_where_the_schedule_moves(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=4, lr_decay="step"), run)
    events: list[dict] = []
    train({"steps": 8, "lr_decay": "step"}, run, resume=True, report=events.append)  # as a --config repeats it
    assert [n for n in _notes(events) if "--steps 8 (was 4)" in n]


def test_a_resume_notes_no_change_of_the_same_vgg_file_typed_otherwise(mse_generator, data, tmp_path, monkeypatch):
    vgg = tmp_path / "vgg.safetensors"
    vgg.write_bytes(b"")  # never read: content_loss mse needs no VGG
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    train(
        _options(
            data, stage="gan", init=str(mse_generator), steps=2, content_loss="mse", vgg_weights="vgg.safetensors"
        ),
        run,
    )
    events: list[dict] = []
    train({"steps": 3, "vgg_weights": "./vgg.safetensors"}, run, resume=True, report=events.append)
    assert not [n for n in _notes(events) if "this resume changes" in n]


def test_cache_disk_trains_as_without_a_cache_and_fills_its_folder(data, tmp_path):
    off = train(_options(data, steps=3, cache="off", seed=4), tmp_path / "off")
    events: list[dict] = []
    cache = tmp_path / "decoded"
    disk = train(
        _options(data, steps=3, cache="disk", cache_dir=str(cache), seed=4), tmp_path / "disk", report=events.append
    )
    assert len(list(cache.rglob("*.npy"))) == 3
    (note,) = [n for n in _notes(events) if "kept on disk" in n]
    assert str(cache) in note and " free there" in note and "deleted at any time" in note
    assert disk.losses == off.losses
    a, b = _weights(tmp_path / "off"), _weights(tmp_path / "disk")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # a resume may move the cache, or drop it, without a note
    events.clear()
    train({"steps": 4, "cache": "off"}, tmp_path / "disk", resume=True, report=events.append)
    assert not [n for n in _notes(events) if "this resume changes" in n]


def test_cache_disk_is_refused_where_the_decoded_images_do_not_fit(data, tmp_path, monkeypatch):
    import collections

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 100, 100))
    result = _cli_train(data, tmp_path / "run", "--cache", "disk", "--cache-dir", str(tmp_path / "c"))
    line = _one_line_error(result, code=2)
    assert "--cache disk: the training images need" in line and "--cache-dir" in line and "--cache off" in line


def test_cache_disk_says_once_that_its_folder_cannot_be_written(data, tmp_path, monkeypatch):
    import srgan_cli.data as data_module

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    events: list[dict] = []
    monkeypatch.setattr(data_module.np, "save", full)
    train(_options(data, steps=3, cache="disk", cache_dir=str(tmp_path / "c")), tmp_path / "run", report=events.append)
    (note,) = [n for n in _notes(events) if "cannot write the decoded image" in n]
    assert "No space left on device" in note and "training goes on" in note and str(tmp_path / "c") in note


def test_cli_and_config_accept_cache_disk(data, tmp_path, monkeypatch):
    monkeypatch.setenv("SRGAN_CACHE_DIR", str(tmp_path / "env"))
    result = _cli_train(data, tmp_path / "a", "--cache", "disk", "--cache-dir", str(tmp_path / "c"))
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "c").rglob("*.npy")) and not (tmp_path / "env").exists()
    assert json.loads((tmp_path / "a" / "config.json").read_text())["cache_dir"] == str(tmp_path / "c")
    cfg = tmp_path / "train.toml"
    cfg.write_text(
        f'[train]\ndata = "{data.as_posix()}"\nsteps = 1\nnum-blocks = 1\nnum_features = 8\nbatch-size = 2\n'
        'patch-size = 16\nworkers = 0\ndevice = "cpu"\ncache = "disk"\n'
    )
    result = CliRunner().invoke(main, ["train", "--config", str(cfg), "--out", str(tmp_path / "b"), "-q"])
    assert result.exit_code == 0, result.output
    assert list((tmp_path / "env" / "decoded").rglob("*.npy"))  # the default folder: $SRGAN_CACHE_DIR/decoded
    assert "--cache-dir" in CliRunner().invoke(main, ["train", "--help"]).output


def test_a_resume_turns_off_a_saved_flag_with_its_no_form(data, tmp_path):
    # --channels-last, --compile and --cuda-graphs had no off form: a run started with one kept it on every
    # resume, and "--compile failed on this machine; run without --compile" could not be followed
    run = tmp_path / "run"
    assert _cli_train(data, run, "--channels-last").exit_code == 0
    assert json.loads((run / "config.json").read_text())["channels_last"] is True
    result = _cli_train(data, run, "--resume", "--steps", "2", "--no-channels-last", "--no-compile", "--no-cuda-graphs")
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())
    assert config["channels_last"] is False and config["compile"] is False and config["cuda_graphs"] is False


def test_a_resume_notes_a_change_of_precision(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=2, precision="fp32"), run)
    events: list[dict] = []
    train({"steps": 3, "precision": "bf16", "threads": 1}, run, resume=True, report=events.append)
    (note,) = [n for n in _notes(events) if "this resume changes" in n]
    assert "--precision fp32 -> bf16" in note and "threads" not in note  # threads: how fast, not what


def test_the_generator_file_records_its_pixel_loss_learning_rate_and_precision(data, tmp_path):
    train(_options(data, steps=1, pixel_loss="l1", lr=3e-4, lr_decay="cosine", precision="bf16"), tmp_path / "l1")
    meta = read_metadata(tmp_path / "l1" / "generator.safetensors")
    assert meta["content_loss"] == "l1"  # said mse, the loss an mse run never trained on here
    assert (meta["lr"], meta["lr_decay"], meta["precision"]) == ("0.0003", "cosine", "bfloat16")
    init = tmp_path / "l1" / "generator.safetensors"
    opts = _options(data, stage="gan", init=str(init), steps=1, content_loss="mse", pixel_loss="l1", pixel_weight=0.2)
    train({**opts, "patch_size": 16}, tmp_path / "gan")
    meta = read_metadata(tmp_path / "gan" / "generator.safetensors")
    assert (meta["content_loss"], meta["pixel_loss"], meta["pixel_weight"]) == ("mse", "l1", "0.2")
    assert meta["precision"] == "float32" and "lr_decay" in meta  # the gan stage drops at steps/2 by default


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WORLD_SIZE": "junk"}, "WORLD_SIZE, RANK and LOCAL_RANK must be integers"),
        ({"WORLD_SIZE": "2", "RANK": "x"}, "WORLD_SIZE, RANK and LOCAL_RANK must be integers"),
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE=2 but RANK, MASTER_ADDR, MASTER_PORT are not set: start training on"),
    ],
)
def test_a_torchrun_environment_that_is_not_one_is_a_one_line_error(data, tmp_path, monkeypatch, env, expected):
    for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert expected in _one_line_error(_cli_train(data, tmp_path / "run"))  # were tracebacks
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("option", "value"), [("--threads", "2147483648"), ("--threads", "1025"), ("--workers", "257")]
)
def test_threads_and_workers_have_an_upper_bound(data, tmp_path, option, value):
    # 2**31 threads overflowed in torch (a traceback), 100,000 segfaulted; 10**5 loader processes forked without end
    line = _one_line_error(_cli_train(data, tmp_path / "run", option, value), code=2)
    assert f"{option} must be from" in line and value in line


def test_loading_a_checkpoint_leaves_the_warning_filters_alone(data, tmp_path, monkeypatch):
    # load_checkpoint (every resume) put an "ignore everything" filter in force for the process while it
    # loaded: a thread of the program embedding srgan lost its warnings meanwhile
    import warnings

    import srgan_cli.train as train_module

    train(_options(data, steps=1), tmp_path / "run")
    seen = []
    load = torch.load

    def spy(*args, **kwargs):
        seen.append(list(warnings.filters))
        return load(*args, **kwargs)

    monkeypatch.setattr(train_module.torch, "load", spy)
    load_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert seen == [list(warnings.filters)]


def test_a_lock_file_the_run_did_not_make_is_left_in_the_folder(data, tmp_path):
    """A refused or a finished run deleted a `.lock` the user had in --out."""
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("the user's own\n")
    train(_options(data, steps=1), run)
    assert (run / ".lock").read_text() == "the user's own\n"
    with open(run / ".lock") as held:  # a live run's lock on that file
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(SrganError, match="another srgan train is running"):
            train({"steps": 2}, run, resume=True)
    assert (run / ".lock").read_text() == "the user's own\n"
    (run / ".lock").unlink()
    assert train({"steps": 2}, run, resume=True).step == 2
    assert not (run / ".lock").exists()  # its own lock file goes


def test_cache_dir_without_cache_disk_is_refused(data, tmp_path):
    """--cache-dir with --cache auto (which never keeps files), on or off was silently unused."""
    for cache in ((), ("--cache", "auto"), ("--cache", "on"), ("--cache", "off")):
        line = _one_line_error(_cli_train(data, tmp_path / "run", *cache, "--cache-dir", str(tmp_path / "c")), code=2)
        assert "--cache-dir" in line and "add --cache disk" in line, line
    assert not (tmp_path / "run").exists() and not (tmp_path / "c").exists()
    # a resume that leaves the disk cache leaves its folder without a word; one that names a folder is refused
    assert _cli_train(data, tmp_path / "run", "--cache", "disk", "--cache-dir", str(tmp_path / "c")).exit_code == 0
    assert _cli_train(data, tmp_path / "run", "--resume", "--steps", "2", "--cache", "off").exit_code == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["cache_dir"] is None
    result = _cli_train(data, tmp_path / "run", "--resume", "--steps", "3", "--cache-dir", str(tmp_path / "c"))
    assert "add --cache disk" in _one_line_error(result, code=2)


def test_notes_on_a_terminal_are_plain_text_with_control_characters_escaped(tmp_path, monkeypatch):
    """On a terminal the notes went through rich's markup: a broken file under `x[` named `y].png`
    stopped the run with a MarkupError traceback, `scan [draft].png` showed as `scan .png`; and a
    newline or ESC in a name reached the terminal as it is, the reason cut at the newline."""
    import srgan_cli.commands.train as train_command

    monkeypatch.setattr(train_command, "live_terminal", lambda stream: True)  # the progress bar's console
    data = _images(tmp_path / "images", count=1, size=40)
    good = (data / "0.png").read_bytes()
    names = [Path("x[") / "y].png", Path("scan [draft].png"), Path("new\nline\x1b[31m.png")]
    for name in names:
        (data / name).parent.mkdir(exist_ok=True)
        (data / name).write_bytes(good[: len(good) // 2])  # the header reads, the data does not
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "2", "--batch-size", "4"]
    args += ["--patch-size", "16", "--workers", "0", "--device", "cpu", "--num-blocks", "1", "--num-features", "8"]
    result = CliRunner().invoke(main, [*args, "--cache", "off"])  # not -q: the notes are what is tested
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "\x1b[31m" not in result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note: ")]
    for shown in (f"{data}/x[/y].png: ", f"{data}/scan [draft].png: ", f"{data}/new\\nline\\x1b[31m.png: "):
        (note,) = [n for n in notes if n.startswith("note: " + shown)]
        assert note.endswith("; its patches come from the next image") and "truncated" in note, note


@pytest.mark.parametrize("cache", ["off", "disk"])
def test_a_data_folder_gone_mid_run_saves_a_checkpoint_and_says_what_to_do(tmp_path, cache):
    """It ended "error: DATA/SUB: none of the training images can be decoded", naming the sub-folder
    of the last image drawn, without a reason or a file, and lost the steps since the last save."""
    data = tmp_path / "images"
    _images(data / "sub", count=3, size=40)
    run = tmp_path / "run"
    moved = tmp_path / "moved"

    def report(event):
        if event["event"] == "log" and event["step"] == 3:
            data.rename(moved)  # unmounted, or renamed

    with pytest.raises(SrganError) as caught:
        disk = {"cache_dir": str(tmp_path / "decoded")} if cache == "disk" else {}
        train(_options(data, steps=8, log_every=3, cache=cache, **disk), run, report=report)
    message = str(caught.value)
    assert message.startswith(f"{data}: none of the training images can be read (first: {data}/sub/"), message
    assert ".png: no such file)" in message, message
    assert message.endswith("; fix --data, then --resume from the last checkpoint (step 3), which is intact"), message
    assert load_checkpoint(run / CHECKPOINT)["step"] == 3  # as a Ctrl-C saves it
    moved.rename(data)
    assert train({"steps": 8}, run, resume=True).step == 8


def test_a_resume_with_a_larger_patch_says_the_patch_left_images_out_not_that_files_changed(tmp_path):
    data = _images(tmp_path / "images", count=3, size=40)
    Image.fromarray(np.zeros((20, 48, 3), np.uint8)).save(data / "small.png")  # 20 px: in at 16, out at 24
    run = tmp_path / "run"
    train(_options(data, steps=2), run)
    events: list[dict] = []
    train({"steps": 3, "patch_size": 24}, run, resume=True, report=events.append)
    notes = _notes(events)
    assert not [n for n in notes if "changed since the checkpoint" in n], notes
    (note,) = [n for n in notes if "(4 training images then, 3 now)" in n]
    assert note.startswith("--patch-size 24 (was 16) leaves out the images under --data between 16 and 23 px"), note


def test_val_on_the_training_images_is_noted(data, tmp_path):
    """--val naming --data (or a folder inside it) validated, and picked generator_best, on the
    training images without a word."""
    _images(data / "val", count=1, size=40, seed=7)
    apart = _images(tmp_path / "apart", count=1, size=40, seed=8)
    for val, noted in ((data, True), (data / "val", True), (apart, False)):
        events: list[dict] = []
        train(
            _options(data, steps=1, val=str(val)),
            tmp_path / f"run{len(list(tmp_path.iterdir()))}",
            report=events.append,
        )
        notes = [n for n in _notes(events) if "--val-holdout" in n]
        assert bool(notes) == noted, (val, _notes(events))
        if noted:
            assert notes[0].startswith(f"--val {val} holds images of --data {data}: the run validates"), notes


def test_a_resume_with_nothing_left_to_train_applies_and_records_none_of_its_options(data, tmp_path):
    """A resume of a finished run with --lr promised "the steps from 2 on use the new values" and
    wrote them into config.json, then trained nothing: a later resume with more steps trained with
    the old rate, and kept config.json's new one as the record of the steps before (false)."""
    run = tmp_path / "run"
    train(_options(data, steps=2, lr=1e-3), run)
    config = (run / "config.json").read_text()
    events: list[dict] = []
    assert train({"lr": 5e-4, "ema": 0.5}, run, resume=True, report=events.append).step == 2
    assert (run / "config.json").read_text() == config and not list(run.glob("config.step*.json"))
    notes = _notes(events)
    assert not [n for n in notes if "this resume changes" in n or n.startswith("config.json")], notes
    (note,) = [n for n in notes if "already at step 2 of 2" in n]
    assert "--lr 0.001 -> 0.0005, --ema 0.0 -> 0.5 are not applied" in note and "raise --steps" in note, note
    meta = read_metadata(run / "generator.safetensors")
    assert meta["lr"] == "0.001" and "ema" not in meta
    # the steps before 2 were trained at 1e-3, and the record says so
    train({"steps": 3}, run, resume=True)
    assert json.loads((run / "config.json").read_text())["lr"] == 1e-3
    assert json.loads((run / "config.step2.json").read_text())["lr"] == 1e-3


def test_a_resume_with_nothing_to_train_says_nothing_of_the_batch_of_its_steps(data, tmp_path):
    # a finished 2-rank run resumed in one process said "a step's batch is 2 patches (was 4)", then that the
    # run was already at its last step: no step was run
    import torch

    run = tmp_path / "run"
    train(_options(data, steps=2), run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["world_size"] = 2  # as a run of 2 ranks leaves it
    torch.save(state, run / "checkpoint.pt")
    events: list[dict] = []
    train({}, run, resume=True, report=events.append)
    notes = _notes(events)
    assert not [n for n in notes if "process(es)" in n] and [n for n in notes if "already at step 2 of 2" in n]


def test_a_resume_stopped_before_its_first_step_leaves_the_runs_config(data, tmp_path):
    run = tmp_path / "run"
    train(_options(data, steps=2, lr=1e-3), run)
    config = (run / "config.json").read_text()

    events: list[dict] = []

    def report(event: dict) -> None:
        events.append(event)
        if event["event"] == "start":
            raise KeyboardInterrupt  # a stop as the first step begins

    with pytest.raises(KeyboardInterrupt):
        train({"steps": 4, "lr": 5e-4}, run, resume=True, report=report)
    assert load_checkpoint(run / CHECKPOINT)["step"] == 2
    assert (run / "config.json").read_text() == config and not list(run.glob("config.step*.json"))
    assert events[-1]["event"] == "interrupted" and events[-1]["unapplied"] == ["--lr 0.001 -> 0.0005"], events[-1]


def test_a_plain_resume_from_another_folder_changes_no_option(tmp_path, monkeypatch):
    """A resume from another working folder made the run's relative --data absolute, and config.json's
    text compared with it said "the options changed on resume" and kept a config.step<N>.json."""
    base = tmp_path / "base"
    _images(base / "images", count=3)
    monkeypatch.chdir(base)
    stopped: list[bool] = []

    def report(event: dict) -> None:
        if event["event"] == "log" and event["step"] == 2:
            stopped.append(True)

    with pytest.raises(KeyboardInterrupt):
        train({"data": "images", "steps": 4, "log_every": 1, **TINY}, "run", report=report, stop=lambda: bool(stopped))
    config = (base / "run" / "config.json").read_text()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    events: list[dict] = []
    assert train({}, base / "run", resume=True, report=events.append).step == 4
    assert not [n for n in _notes(events) if "changed" in n], _notes(events)
    assert not list((base / "run").glob("config.step*.json"))
    assert (base / "run" / "config.json").read_text() == config  # as the run spelled it
    # a real change is still kept, with the relative path the run typed
    train({"steps": 5, "lr": 5e-4}, base / "run", resume=True, report=events.append)
    assert (base / "run" / "config.step4.json").read_text() == config


def test_the_weights_record_what_each_resume_changed_and_absolute_paths(tmp_path, monkeypatch):
    """The metadata told the options of the last resume alone (its lr, batch size) as if the whole run
    had used them, and --data as typed, relative to a folder it did not name."""
    _images(tmp_path / "images", count=3)
    monkeypatch.chdir(tmp_path)
    train({"data": "images", "steps": 2, "lr": 1e-3, **TINY}, "run")
    assert read_metadata(tmp_path / "run" / "generator.safetensors")["data"] == str(tmp_path / "images")
    assert "option_changes" not in read_metadata(tmp_path / "run" / "generator.safetensors")
    train({"steps": 4, "lr": 5e-4, "batch_size": 2, "workers": 0}, "run", resume=True)
    train({"steps": 5}, "run", resume=True)  # no change: the record stays
    meta = read_metadata(tmp_path / "run" / "generator.safetensors")
    assert meta["option_changes"] == "step 2: batch_size 4 -> 2, lr 0.001 -> 0.0005", meta
    assert meta["lr"] == "0.0005" and meta["data"] == str(tmp_path / "images")
    result = CliRunner().invoke(main, ["models", "--info", str(tmp_path / "run" / "generator.safetensors")])
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if "option_changes" in line]
    assert line.split()[-1] == "0.0005" and "step 2: batch_size 4 -> 2" in line, line


def _notice_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name == "srgan-stop-notice"]


def test_a_first_ctrl_c_says_at_once_that_the_run_is_stopping(data, tmp_path, monkeypatch):
    """A CPU step takes seconds (a validation more), and the first Ctrl-C said nothing until the run
    had saved: users pressed it again, which threw away everything since the last checkpoint."""
    from srgan_cli import train as train_module

    real = train_module._Trainer._train_step
    events: list[dict] = []
    said_during_the_step: list[bool] = []

    def slow_step(self, lr, hr):
        if self.step == 2:  # the third step: Ctrl-C while it runs
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 10
            while not [e for e in events if e["event"] == "stopping"] and time.monotonic() < deadline:
                time.sleep(0.05)
            said_during_the_step.append(bool([e for e in events if e["event"] == "stopping"]))
        return real(self, lr, hr)

    monkeypatch.setattr(train_module._Trainer, "_train_step", slow_step)
    with pytest.raises(KeyboardInterrupt):
        train(_options(data, steps=100, checkpoint_every=100), tmp_path / "run", report=events.append)
    assert said_during_the_step == [True]
    (stopping,) = [e for e in events if e["event"] == "stopping"]
    assert stopping == {"event": "stopping", "step": 3, "started": True}
    assert [e["event"] for e in events][-2:] == ["checkpoint", "interrupted"] and events[-1]["step"] == 3
    assert _notice_threads() == []  # the notice thread ends with the run


def test_a_stop_asked_while_the_ranks_agree_names_the_step_it_saves(data, tmp_path, monkeypatch):
    # under torchrun a signal can come while rank 0 waits for the others' votes, having voted to go on: the
    # notice named the step before, and the checkpoint came one step later
    from srgan_cli import train as train_module

    real = train_module._Trainer._on_any_rank
    events: list[dict] = []

    def agreeing(self, flag):
        if self.step == 2 and not flag:  # the signal comes while the ranks agree; this rank voted to go on
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 10
            while not [e for e in events if e["event"] == "stopping"] and time.monotonic() < deadline:
                time.sleep(0.05)
        return real(self, flag)

    monkeypatch.setattr(train_module._Trainer, "_on_any_rank", agreeing)
    with pytest.raises(KeyboardInterrupt):
        train(_options(data, steps=100, checkpoint_every=100), tmp_path / "run", report=events.append)
    (stopping,) = [e for e in events if e["event"] == "stopping"]
    assert stopping["step"] == events[-1]["step"] == 3


def test_a_second_ctrl_c_says_which_checkpoint_is_left(data, tmp_path, monkeypatch):
    from srgan_cli import stopping
    from srgan_cli import train as train_module

    real = train_module._Trainer._train_step

    def step(self, lr, hr):
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C, not the first delivered again
            time.sleep(5)
        return real(self, lr, hr)

    monkeypatch.setattr(train_module._Trainer, "_train_step", step)
    monkeypatch.setattr(stopping, "SAME_REQUEST", 0.0)
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--steps", "100", "--batch-size", "2"]
    args += ["--patch-size", "16", "--workers", "0", "--device", "cpu", "--num-blocks", "1", "--num-features", "8"]
    result = CliRunner().invoke(main, [*args, "--checkpoint-every", "2"])
    assert result.exit_code == 130, result.output
    lines = result.output.splitlines()
    assert "stopping after step 3: saving a checkpoint (press Ctrl-C again to quit without saving)" in lines, lines
    assert "stopped without saving; the last checkpoint is step 2: continue from it with --resume" in lines, lines
    assert load_checkpoint(tmp_path / "run" / CHECKPOINT)["step"] == 2


def test_cache_dir_gets_a_folder_of_its_own_and_never_one_inside_data(data, tmp_path):
    """--cache-dir DIR wrote its XX/HASH.npy folders straight into DIR and said "the folder may be
    deleted at any time", also where DIR was the user's project folder or --data itself."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "notes.txt").write_text("the user's own")
    events: list[dict] = []
    train(_options(data, steps=1, cache="disk", cache_dir=str(project)), tmp_path / "run", report=events.append)
    assert sorted(p.name for p in project.iterdir()) == ["notes.txt", "srgan-decoded"]
    assert len(list((project / "srgan-decoded").rglob("*.npy"))) == 3
    (note,) = [n for n in _notes(events) if "kept on disk" in n]
    assert f"in {project / 'srgan-decoded'} as they are first read" in note and "that folder may be deleted" in note
    for inside in (data, data / "sub"):
        result = _cli_train(data, tmp_path / "other", "--cache", "disk", "--cache-dir", str(inside))
        line = _one_line_error(result, code=2)
        assert f"--cache-dir {inside} is --data or inside it" in line, line
    assert sorted(p.name for p in data.iterdir()) == ["0.png", "1.png", "2.png"]


def test_validation_options_without_validation_are_refused(data, tmp_path):
    """--val-every and --data-dir without --val did nothing (rc 0, no validation), where --best-by
    without it was refused: the same now, on the command line, in a --config file and on resume."""
    run = tmp_path / "run"
    line = _one_line_error(_cli_train(data, run, "--val-every", "5"), code=2)
    assert "--val-every" in line and "give one of them too" in line, line
    line = _one_line_error(_cli_train(data, run, "--data-dir", str(tmp_path)), code=2)
    assert "--data-dir" in line and "give --val too" in line, line
    cfg = tmp_path / "train.toml"
    cfg.write_text("[train]\nval-every = 5\n")
    line = _one_line_error(_cli_train(data, run, "--config", str(cfg)), code=2)
    assert "--val-every" in line, line
    assert not run.exists()
    assert _cli_train(data, run, "--val-holdout", "1", "--val-every", "1").exit_code == 0
    assert _cli_train(data, run, "--resume", "--steps", "2", "--val-every", "2").exit_code == 0
    assert _cli_train(data, tmp_path / "plain").exit_code == 0
    result = _cli_train(data, tmp_path / "plain", "--resume", "--steps", "2", "--val-every", "2")
    assert "--val-every" in _one_line_error(result, code=2)
