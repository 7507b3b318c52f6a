"""Distributed training on the CPU (gloo): ranks stay in lockstep, rank 0 writes, resume works."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from srgan_cli.train import CHECKPOINT, load_checkpoint, train

REPO = Path(__file__).resolve().parents[1]
TINY = {"num_blocks": 1, "num_features": 8, "batch_size": 2, "patch_size": 16, "workers": 0, "device": "cpu"}

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed support")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _images(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _exit_now() -> None:
    """End a rank as `python -m srgan_cli` ends one that started a process group (cli.run): without
    the interpreter's teardown, where gloo could abort a finished rank ("terminate called without an
    active exception") and fail the test though the rank's work was done."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _worker(rank: int, world: int, port: int, options: dict, out: str, results: str) -> None:
    _run_rank(rank, world, port, options, out, results)
    _exit_now()


def _run_rank(rank: int, world: int, port: int, options: dict, out: str, results: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    result = train(options, out)
    state = {f"G.{k}": v.detach().clone() for k, v in result.generator.named_parameters()}
    torch.save(state, Path(results) / f"rank{rank}.pt")


def _rank0_scans_worker(rank: int, world: int, port: int, options: dict, out: str, results: str) -> None:
    if rank != 0:
        import srgan_cli.train

        def refuse(*args, **kwargs):
            raise AssertionError(f"rank {rank} scanned the training folder")

        srgan_cli.train.scan_images = refuse
    _worker(rank, world, port, options, out, results)  # ends the process


def _error_worker(rank: int, world: int, port: int, options: dict, out: str, results: str) -> None:
    from srgan_cli.errors import SrganError

    try:
        _run_rank(rank, world, port, options, out, results)
    except SrganError as exc:
        (Path(results) / f"rank{rank}.err").write_text(str(exc))
    # DDP wrappers left alive past the group's end are torn down at exit, where gloo can abort
    alive = sum(isinstance(o, torch.nn.parallel.DistributedDataParallel) for o in gc.get_objects())
    (Path(results) / f"rank{rank}.ddp").write_text(str(alive))
    _exit_now()


def _interrupt_worker(rank: int, world: int, port: int, options: dict, out: str, results: str) -> None:
    try:
        _run_rank(rank, world, port, options, out, results)
    except KeyboardInterrupt:
        (Path(results) / f"rank{rank}.stopped").write_text("")
    _exit_now()


def _rank1_misreads_worker(rank: int, world: int, port: int, options: dict, out: str, results: str) -> None:
    """Rank 1 cannot read 0.png (as a file that went bad mid-run would fail); rank 0 reads it and
    writes the notes it was given."""
    import json

    import srgan_cli.data

    if rank == 1:
        read = srgan_cli.data.read_rgb8

        def misread(path, *args, **kwargs):
            if Path(path).name == "0.png":
                raise OSError("image file is truncated")
            return read(path, *args, **kwargs)

        srgan_cli.data.read_rgb8 = misread
    events: list[dict] = []
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    train(options, out, report=events.append)
    notes = [e["message"] for e in events if e["event"] == "info" and e["kind"] == "note"]
    (Path(results) / f"rank{rank}.json").write_text(json.dumps(notes))
    _exit_now()


def _join_or_fail(context, hung: str) -> None:
    """Wait for spawned ranks, 2 minutes at most; a hang kills them and fails the test with ``hung``."""
    for _ in range(24):
        if context.join(timeout=5):
            return
    for process in context.processes:
        process.kill()
    pytest.fail(hung)


def _spawn(options: dict, out: Path, results: Path, world: int = 2, worker=_worker) -> list[dict[str, torch.Tensor]]:
    results.mkdir(parents=True, exist_ok=True)
    mp.spawn(worker, args=(world, _free_port(), options, str(out), str(results)), nprocs=world, join=True)
    return [torch.load(results / f"rank{r}.pt", weights_only=True) for r in range(world)]


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_two_ranks_end_with_identical_weights(tmp_path):
    """The gan stage: both the generator and the discriminator run under DDP (pixel content loss: no VGG)."""
    data = _images(tmp_path / "images")
    init = tmp_path / "init"
    train({"data": str(data), "steps": 1, **TINY}, init)
    options = {"data": str(data), "steps": 3, "lr": 1e-3, **TINY}
    options.update(stage="gan", init=str(init / "generator.safetensors"), content_loss="mse")
    run = tmp_path / "run"
    rank0, rank1 = _spawn(options, run, tmp_path / "results")
    _assert_same(rank0, rank1)
    state = load_checkpoint(run / CHECKPOINT)
    assert state["step"] == 3 and state["world_size"] == 2
    saved = {f"G.{k}": v for k, v in state["generator"].items() if f"G.{k}" in rank0}
    _assert_same(saved, rank0)  # rank 0 wrote the weights the ranks agree on
    assert state["discriminator"] is not None and state["optimizer_d"] is not None
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1  # written once, by rank 0 (log_every 10 > steps: only the last step)


@pytest.mark.parametrize("holdout", [0, 1])
def test_rank_zero_scans_the_training_folder_for_every_rank(tmp_path, holdout):
    """One scan (a big tree is read once) whose list every rank trains on."""
    data = _images(tmp_path / "images")
    options = {"data": str(data), "steps": 2, "val_holdout": holdout, **TINY}
    _assert_same(*_spawn(options, tmp_path / "run", tmp_path / "results", worker=_rank0_scans_worker))


def test_a_failed_scan_stops_every_rank_with_its_error(tmp_path):
    """Rank 0 sends its scan's error: no rank waits for a list that never comes, none keeps DDP past the group."""
    (tmp_path / "empty").mkdir()
    results = tmp_path / "results"
    results.mkdir()
    options = {"data": str(tmp_path / "empty"), "steps": 1, **TINY}
    args = (2, _free_port(), options, str(tmp_path / "run"), str(results))
    context = mp.spawn(_error_worker, args=args, nprocs=2, join=False)
    _join_or_fail(context, "a rank hung after rank 0's scan failed")
    for rank in (0, 1):
        assert "no usable training images" in (results / f"rank{rank}.err").read_text()
        assert (results / f"rank{rank}.ddp").read_text() == "0"


def test_an_image_another_rank_fails_to_read_is_named_and_counted_by_rank_0(tmp_path):
    """Only rank 0 speaks: what the other ranks failed to read was said nowhere."""
    import json

    data = _images(tmp_path / "images")
    options = {"data": str(data), "steps": 6, "log_every": 4, **TINY, "cache": "off"}
    results = tmp_path / "results"
    results.mkdir()
    mp.spawn(_rank1_misreads_worker, args=(2, _free_port(), options, str(tmp_path / "run"), str(results)), nprocs=2)
    notes = json.loads((results / "rank0.json").read_text())
    named = [n for n in notes if str(data / "0.png") in n]
    assert len(named) == 1 and "image file is truncated" in named[0] and "next image" in named[0], notes
    assert "1 training image(s) could not be read during the run" in notes[-1], notes
    assert json.loads((results / "rank1.json").read_text()) == []  # rank 1 reports nothing itself


def test_torchrun_cli_resumes_a_run(tmp_path):
    """``torchrun -m srgan_cli train --resume``: a run started in one process continues on two."""
    data = _images(tmp_path / "images")
    run = tmp_path / "run"
    train({"data": str(data), "steps": 2, **TINY}, run)
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    args += ["-m", "srgan_cli", "train", "--out", str(run), "--resume", "--steps", "4", "--threads", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("step 4/4") == 1  # progress from rank 0 only
    assert done.stderr.count("done: step 4") == 1  # and its last line (another rank's had a stale best score)
    state = load_checkpoint(run / CHECKPOINT)
    assert state["step"] == 4 and state["world_size"] == 2


def test_a_signal_to_one_rank_stops_every_rank_at_one_step_with_a_checkpoint(tmp_path):
    """`kill -TERM` of one rank (or torchrun passing a signal on at different moments): the ranks
    agree to stop at one step and save it; alone, that rank would leave the others waiting."""
    import signal
    import time

    data = _images(tmp_path / "images")
    results = tmp_path / "results"
    results.mkdir()
    run = tmp_path / "run"
    options = {"data": str(data), "steps": 100000, "log_every": 1, "checkpoint_every": 100000, **TINY}
    context = mp.spawn(_interrupt_worker, args=(2, _free_port(), options, str(run), str(results)), nprocs=2, join=False)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)
    os.kill(context.processes[1].pid, signal.SIGTERM)
    _join_or_fail(context, "a rank hung after rank 1 was signalled")
    assert (results / "rank0.stopped").exists() and (results / "rank1.stopped").exists()
    state = load_checkpoint(run / CHECKPOINT)
    assert 3 <= state["step"] < 100000 and state["world_size"] == 2


def test_a_locked_run_folder_stops_every_rank_at_once(tmp_path):
    """Rank 0 refused a folder another run holds before the ranks had met; the others waited for it
    in init_process_group until torchrun killed them (about 40 s, SIGKILL)."""
    import fcntl
    import time

    data = _images(tmp_path / "images")
    run = tmp_path / "run"
    run.mkdir()
    with open(run / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a live run's lock
        args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        args += ["--master_port", str(_free_port()), "-m", "srgan_cli", "train", "--data", str(data)]
        args += ["--out", str(run), "--steps", "2", "--threads", "1", "--num-blocks", "1", "--num-features", "8"]
        env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
        start = time.monotonic()
        done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
        took = time.monotonic() - start
    assert done.returncode != 0 and "another srgan train is running" in done.stderr, done.stderr[-2000:]
    # (torchrun prints its own report of a failed child; the ranks print one error line each)
    assert "[rank1]: Traceback" not in done.stderr and "SIGKILL" not in done.stderr, done.stderr[-2000:]
    assert took < 30, took  # not torchrun's 30 s grace before it kills a rank


@pytest.mark.parametrize("failure", ["val", "lpips", "out"])
def test_a_failure_in_rank_0_work_stops_every_rank_with_its_line(tmp_path, failure):
    """Validation and the run's files are rank 0's work: when it failed there (an unreadable
    --val), the other ranks failed at their next collective with a ~90-line gloo traceback, or
    waited for rank 0. (An --out that is no folder already failed on every rank alike: a guard.)"""
    data = _images(tmp_path / "images")
    extra = []
    if failure == "val":
        (tmp_path / "badval").mkdir()
        (tmp_path / "badval" / "x.png").write_text("not an image")
        extra = ["--val", str(tmp_path / "badval")]
        out = tmp_path / "run"
    elif failure == "lpips":  # --best-by lpips where LPIPS cannot be computed: found by rank 0 alone
        extra = ["--val", str(data), "--best-by", "lpips"]
        out = tmp_path / "run"
    else:
        (tmp_path / "afile").write_text("a file, not a folder")
        out = tmp_path / "afile" / "run"
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    args += ["--master_port", str(_free_port()), "-m", "srgan_cli", "train", "--data", str(data), "--out", str(out)]
    args += ["--steps", "2", "--threads", "1", "--num-blocks", "1", "--num-features", "8", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env["SRGAN_LPIPS_WEIGHTS"] = str(tmp_path / "no-lpips.safetensors")  # and no lpips package in sys.path:
    env["PYTHONPATH"] += os.pathsep + str(_no_lpips_package(tmp_path))
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode != 0, done.stderr[-2000:]
    assert failure != "lpips" or "LPIPS cannot be computed" in done.stderr, done.stderr[-2000:]
    assert "[rank1]: Traceback" not in done.stderr and "SIGKILL" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors and len(set(errors)) == 1, errors  # every rank says the same one thing


def _no_lpips_package(tmp_path: Path) -> Path:
    """A folder that, first on the path, makes `import lpips` fail even where the package is installed."""
    folder = tmp_path / "no_lpips"
    (folder / "lpips").mkdir(parents=True, exist_ok=True)
    (folder / "lpips" / "__init__.py").write_text("raise ImportError('lpips hidden for this test')\n")
    return folder
