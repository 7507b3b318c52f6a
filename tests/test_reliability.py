"""Reliability promises of ``srgan upscale``, tested on the real command.

* An interruption (Ctrl-C, SIGTERM, even SIGKILL) never leaves a partial or corrupt output:
  every output that exists decodes completely, and ``--skip-existing`` then finishes the batch
  with outputs byte-identical to an uninterrupted run.
* A full disk or a read-only output folder gives a clear error per file, no half-written
  file, and leaves the inputs intact.
* Two processes writing into one folder with ``--skip-existing`` leave every output valid.
"""

from __future__ import annotations

import errno
import json
import os
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

from srgan_cli.cli import main
from srgan_cli.config import GeneratorConfig
from srgan_cli.models import build_generator
from srgan_cli.weights import save_generator

REPO = Path(__file__).resolve().parents[1]
N_IMAGES = 20

# Runs the real CLI, slowed down (reading and fsync) by $SLOW seconds so a signal lands mid-batch.
SLOW_CLI = """
import os, signal, sys, time
# Ctrl-C as in a terminal, even when the suite itself runs with SIGINT ignored (a background job
# of a non-interactive shell), which a child would inherit; KEEP_SIGINT keeps what the child was given.
if not os.environ.get("KEEP_SIGINT"):
    signal.signal(signal.SIGINT, signal.default_int_handler)
delay = float(os.environ.get("SLOW", "0"))
import srgan_cli.commands.upscale as cmd
real_read, real_fsync = cmd._read, os.fsync
def slow_read(path, max_pixels):
    time.sleep(delay)
    return real_read(path, max_pixels)
def slow_fsync(fd):
    time.sleep(delay)
    return real_fsync(fd)
cmd._read = slow_read
os.fsync = slow_fsync
if os.environ.get("AS_PROGRAM"):  # as the console script runs, its own signal handling from the first line
    from srgan_cli.__main__ import run
    run()
else:
    from srgan_cli.cli import main
    main(prog_name="srgan")
"""


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """20 small images, a tiny model and the outputs of an uninterrupted run."""
    root = tmp_path_factory.mktemp("rel")
    torch.manual_seed(0)
    config = GeneratorConfig(num_blocks=1, num_features=8)
    weights = save_generator(root / "tiny.safetensors", build_generator(config), config)
    inputs = root / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(inputs / f"img{i:02d}.png")
    (root / "slow_cli.py").write_text(SLOW_CLI)
    reference = root / "reference"
    assert _run_here(weights, inputs, reference).exit_code == 0
    return {"root": root, "weights": weights, "inputs": inputs, "reference": reference}


def _run_here(weights: Path, inputs: Path, out: Path, *extra: str):
    """The same command in this process (one torch thread, like the subprocesses): no start-up cost."""
    args = ["upscale", str(inputs), "-o", str(out), "-m", str(weights), "--device", "cpu", "-q", *extra]
    return CliRunner().invoke(main, args)


def _start(
    root: Path, weights: Path, inputs: Path, out: Path, *extra: str, slow: float = 0.05, preexec_fn=None, env=None
) -> subprocess.Popen:
    env = dict(os.environ, SLOW=str(slow), OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), **(env or {}))
    cmd = [sys.executable, str(root / "slow_cli.py"), "upscale", str(inputs), "-o", str(out)]
    cmd += ["-m", str(weights), "--device", "cpu", "-q", *extra]
    return subprocess.Popen(cmd, env=env, cwd=root, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)


def _outputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def _wait_for_outputs(folder: Path, count: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 40
    while len(_outputs(folder)) < count:
        assert proc.poll() is None, "the batch finished before it could be interrupted"
        assert time.monotonic() < deadline, "no outputs appeared"
        time.sleep(0.01)


def _assert_all_decode(folder: Path) -> None:
    for path in _outputs(folder):
        with Image.open(path) as im:
            im.load()  # raises on a truncated or corrupt file
            assert im.size == (128, 96)


def _assert_same_as_reference(folder: Path, reference: Path) -> None:
    names = [p.name for p in _outputs(reference)]
    assert [p.name for p in _outputs(folder)] == names
    for name in names:
        assert (folder / name).read_bytes() == (reference / name).read_bytes(), name


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupt_then_resume_matches_uninterrupted(batch, tmp_path, sig):
    out = tmp_path / "out"
    proc = _start(batch["root"], batch["weights"], batch["inputs"], out)
    _wait_for_outputs(out, 3, proc)
    proc.send_signal(sig)
    code = proc.wait(timeout=30)
    assert code == (130 if sig == signal.SIGINT else -signal.SIGKILL), proc.stderr.read()
    done = _outputs(out)
    assert 3 <= len(done) < N_IMAGES
    _assert_all_decode(out)
    if sig == signal.SIGINT:
        # Ctrl-C lets the file being written finish: not even a hidden temporary file remains.
        assert not [p for p in out.iterdir() if p.name.endswith(".part")]
        assert "Traceback" not in proc.stderr.read()
    resume = _run_here(batch["weights"], batch["inputs"], out, "--skip-existing")
    assert resume.exit_code == 0, resume.output
    _assert_same_as_reference(out, batch["reference"])


def test_sigterm_exits_130_cleanly(batch, tmp_path):
    out = tmp_path / "out"
    proc = _start(batch["root"], batch["weights"], batch["inputs"], out)
    _wait_for_outputs(out, 2, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    err = proc.stderr.read()
    assert "error: interrupted" in err and "Traceback" not in err
    _assert_all_decode(out)
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


def test_sigterm_still_writes_the_report_of_what_was_done(batch, tmp_path):
    import json

    out, report = tmp_path / "out", tmp_path / "report.json"
    proc = _start(batch["root"], batch["weights"], batch["inputs"], out, "--report", str(report))
    _wait_for_outputs(out, 2, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    doc = json.loads(report.read_text())
    assert doc["ended"] == "interrupted"
    written = sorted(Path(f["output"]).name for f in doc["files"] if f["status"] == "written")
    assert written == sorted(p.name for p in _outputs(out)) and doc["written"] == len(written) >= 2


def test_sigterm_as_interrupt_takes_sighup_too_unless_it_is_ignored():
    from srgan_cli.stopping import sigterm_as_interrupt

    before = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with sigterm_as_interrupt():
            assert callable(signal.getsignal(signal.SIGHUP)), "SIGHUP is not handled"  # would kill the test run
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGHUP)
                time.sleep(0.5)  # the handler runs between bytecodes
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL  # put back
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup: the command is to outlive the terminal
        with sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.1)
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before)


def test_a_stop_signal_delivered_again_does_not_cut_the_clean_up_short(monkeypatch):
    """A second SIGTERM/SIGHUP within a second (the signal to the process, then to its group; a
    closing session's SIGHUP then SIGTERM) raised again inside the first one's clean-up, and the
    batch's report was lost; a later one still stops at once."""
    from srgan_cli import stopping

    with stopping.sigterm_as_interrupt():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the same request: the clean-up goes on
            time.sleep(0.1)
        except KeyboardInterrupt:
            pytest.fail("the repeated signal interrupted the clean-up")
        monkeypatch.setattr(stopping, "SAME_REQUEST", 0.0)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)


@pytest.mark.parametrize("nohup", [False, True], ids=["hangup", "nohup"])
def test_sighup_stops_a_batch_with_its_report_unless_under_nohup(batch, tmp_path, nohup):
    """The SSH session closed: SIGHUP killed the batch (exit 129) with no report; under nohup
    (SIGHUP ignored) the batch goes on to the end."""
    import json

    out, report = tmp_path / "out", tmp_path / "report.json"
    # the child's SIGHUP set either way: the suite itself may run under nohup, whose SIG_IGN it inherits
    handling = signal.SIG_IGN if nohup else signal.SIG_DFL
    proc = _start(
        batch["root"], batch["weights"], batch["inputs"], out, "--report", str(report),
        preexec_fn=lambda: signal.signal(signal.SIGHUP, handling),
    )  # fmt: skip
    _wait_for_outputs(out, 2, proc)
    proc.send_signal(signal.SIGHUP)
    code = proc.wait(timeout=60)
    err = proc.stderr.read()
    assert "Traceback" not in err and not [p for p in out.iterdir() if p.name.endswith(".part")]
    _assert_all_decode(out)
    doc = json.loads(report.read_text())
    if nohup:
        assert code == 0 and doc["ended"] == "completed" and len(_outputs(out)) == N_IMAGES, err
    else:
        assert code == 130 and "error: interrupted" in err, err
        assert doc["ended"] == "interrupted" and doc["written"] == len(_outputs(out)) >= 2


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
def test_a_signal_the_caller_ignores_does_not_stop_a_batch(batch, tmp_path, sig):
    """`trap '' TERM` in a script, or a non-interactive shell's background job (SIGINT ignored, so
    that Ctrl-C stops the script and not it): srgan set its own handlers over the ignored signals and
    stopped the batch (exit 130) all the same."""
    out = tmp_path / "out"
    ignore = lambda: signal.signal(sig, signal.SIG_IGN)  # noqa: E731
    env = {"KEEP_SIGINT": "1", "AS_PROGRAM": "1"}
    proc = _start(batch["root"], batch["weights"], batch["inputs"], out, preexec_fn=ignore, env=env)
    _wait_for_outputs(out, 1, proc)
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    err = proc.stderr.read()
    assert code == 0 and len(_outputs(out)) == N_IMAGES, err


def test_two_processes_same_folder_skip_existing(batch, tmp_path):
    out = tmp_path / "out"
    procs = [
        _start(batch["root"], batch["weights"], batch["inputs"], out, "--skip-existing", slow=0.01) for _ in range(2)
    ]
    for proc in procs:
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    _assert_same_as_reference(out, batch["reference"])
    assert not [p for p in out.iterdir() if p.name.endswith(".part")]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_full_disk(batch, tmp_path, monkeypatch):
    before = _snapshot(batch["inputs"])

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    out = tmp_path / "out"
    from srgan_cli import api

    upscaled = []
    real = api.upscale_loaded

    def counting(*args, **kwargs):
        upscaled.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(api, "upscale_loaded", counting)
    result = _run_here(batch["weights"], batch["inputs"], out, "--report", "-")  # not onto the full disk
    assert result.exit_code == 1 and "Traceback" not in result.output
    # the batch stops at the first full write: every later image was read and upscaled to fail alike
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "no space left" in errors[0] and "the output's disk is full" in errors[1]
    assert f"0 written, 0 skipped, 1 failed, {N_IMAGES - 1} not started" in result.stderr
    assert len(upscaled) < N_IMAGES // 2
    doc = json.loads(result.stdout)
    assert doc["ended"] == "stopped: the output's disk is full" and len(doc["files"]) == N_IMAGES
    assert list(out.iterdir()) == []  # no output, no temporary file
    assert _snapshot(batch["inputs"]) == before


def test_read_only_output_folder(batch, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    if os.geteuid() == 0:  # root ignores file modes: simulate the refusal instead
        from srgan_cli import fsutil

        def denied(*args, **kwargs):
            raise PermissionError(errno.EACCES, "Permission denied")

        monkeypatch.setattr(fsutil, "_new_temp", denied)
    else:
        out.chmod(0o555)
    try:
        result = CliRunner().invoke(
            main, ["upscale", str(batch["inputs"]), "-o", str(out), "-m", str(batch["weights"]), "--fail-fast"]
        )
    finally:
        out.chmod(0o755)
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "permission denied" in errors[0]  # --fail-fast: stops at the first
    assert list(out.iterdir()) == []


def test_an_interrupt_while_the_last_file_is_written_waits_for_it(monkeypatch, tmp_path):
    """Ctrl-C (or SIGTERM) reaching the main thread while it waits for the writer: the writer's
    file is finished (or removed) before the interrupt goes on. Left behind, the daemon writer
    died mid-file at exit and left its hidden temporary file in the output folder."""
    import threading

    import srgan_cli.commands.upscale as cmd

    main_thread = threading.main_thread().ident
    finished = []

    def write_one(job, loaded, result):
        signal.pthread_kill(main_thread, signal.SIGINT)  # the main thread is joining the writer now
        time.sleep(0.5)  # a large PNG being encoded
        finished.append(job.dest.name)

    monkeypatch.setattr(cmd, "_read", lambda path, max_pixels: path.name)
    jobs = [cmd.Job(tmp_path / "a.png", tmp_path / "out" / "a.png", None)]
    tally = cmd.Tally()
    with pytest.raises(KeyboardInterrupt):
        cmd.run_pipeline(
            jobs,
            lambda job, loaded: time.sleep(0.2) or loaded,  # the writer starts while the main thread joins
            write_one,
            max_pixels=10**8,
            report=cmd.Reporter(quiet=True),
            tally=tally,
            fail_fast=False,
        )
    assert finished == ["a.png"] and tally.written == 1


def test_fail_fast_while_the_reader_is_busy_never_hangs(monkeypatch, tmp_path):
    """The writer fails (--fail-fast) while inference waits for the reader's next image; the
    reader then sees the stop and ends without queueing its end marker. The batch must end, not
    wait for that marker forever (a read-only output folder hung a batch this way)."""
    import threading

    import srgan_cli.commands.upscale as cmd

    def slow_read(path, max_pixels):
        if path.name == "b.png":
            time.sleep(0.5)  # the first output's write fails meanwhile
        return path.name

    def write_one(job, loaded, result):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(cmd, "_read", slow_read)
    jobs = [cmd.Job(tmp_path / n, tmp_path / "out" / n, None) for n in ("a.png", "b.png", "c.png")]
    tally = cmd.Tally()
    args = (jobs, lambda job, loaded: loaded, write_one)
    kwargs = {"max_pixels": 10**8, "report": cmd.Reporter(quiet=True), "tally": tally, "fail_fast": True}
    done = threading.Thread(target=cmd.run_pipeline, args=args, kwargs=kwargs, daemon=True)
    done.start()
    done.join(timeout=20)
    assert not done.is_alive(), "the pipeline hung after a fail-fast failure"
    assert tally.stopped and tally.failed == 1 and tally.written == 0


# srgan run with its stderr taken for a live terminal, whatever it is (here /dev/full): os.isatty says
# so for srgan's own check, FORCE_COLOR and TTY_COMPATIBLE for rich's
AS_A_TERMINAL = """
import os
real_isatty = os.isatty
os.isatty = lambda fd: fd == 2 or real_isatty(fd)
from srgan_cli.cli import main
main(prog_name="srgan")
"""
TERMINAL_ENV = {"FORCE_COLOR": "1", "TTY_COMPATIBLE": "1", "TERM": "xterm"}


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_progress_bar_on_a_full_stderr_never_stops_a_batch(batch, tmp_path):
    """On a terminal the live progress bar draws on stderr; on a full one its first draw raised
    and no image was written."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.png", "c.png"):
        (inputs / name).write_bytes((batch["inputs"] / "img00.png").read_bytes())
    (inputs / "b.png").write_bytes(b"not an image")
    env = {**os.environ, "PYTHONPATH": str(REPO), **TERMINAL_ENV}
    args = [
        sys.executable,
        "-c",
        AS_A_TERMINAL,
        "upscale",
        "-m",
        str(batch["weights"]),
        str(inputs),
        "-o",
        str(tmp_path / "out"),
    ]
    with open("/dev/full", "w") as full:
        done = subprocess.run(args, stderr=full, env=env, timeout=120, check=False)
    assert done.returncode == 1 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("terminal", [False, True])
def test_a_training_run_on_a_full_stderr_goes_on(tmp_path, terminal):
    """`srgan train ... 2>>log` on a full disk: its first progress line raised and killed the run."""
    data = tmp_path / "images"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(data / f"{i}.png")
    env = {**os.environ, "PYTHONPATH": str(REPO), **(TERMINAL_ENV if terminal else {})}
    run = ["-c", AS_A_TERMINAL] if terminal else ["-m", "srgan_cli"]
    args = [sys.executable, *run, "train", "--data", str(data), "--out", str(tmp_path / "run")]
    args += ["--steps", "3", "--num-blocks", "1", "--num-features", "8", "--batch-size", "2", "--patch-size", "16"]
    args += ["--device", "cpu", "--log-every", "1", "--threads", "1"]
    with open("/dev/full", "w") as full:
        done = subprocess.run(args, stderr=full, env=env, timeout=120, check=False)
    assert done.returncode == 0
    assert (tmp_path / "run" / "generator.safetensors").is_file()


# Any command, with every fsync of an atomic write slowed by $SLOW seconds.
SLOW_FSYNC_CLI = """
import os, time
delay, real_fsync = float(os.environ.get("SLOW", "0")), os.fsync
def slow_fsync(fd):
    time.sleep(delay)
    return real_fsync(fd)
os.fsync = slow_fsync
from srgan_cli.cli import main
main(prog_name="srgan")
"""


def test_sigterm_stops_bench_like_ctrl_c_without_temporary_files(batch, tmp_path):
    """Only upscale and train handled SIGTERM: `timeout srgan bench --save-images` died at once
    (exit 143, no message) and could leave a hidden .part file among the saved images."""
    bench_set = tmp_path / "mine"
    (bench_set / "HR").mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(bench_set / "HR" / f"h{i:02d}.png")
    (tmp_path / "slow_cli.py").write_text(SLOW_FSYNC_CLI)
    out = tmp_path / "cmp"
    cmd = [sys.executable, str(tmp_path / "slow_cli.py"), "bench", "--set", str(bench_set), "-m", "bicubic"]
    cmd += ["-m", str(batch["weights"]), "--no-lpips", "--device", "cpu", "--save-images", str(out)]
    env = dict(os.environ, SLOW="0.05", OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _wait_for_outputs(out / "sheets", 2, proc)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 130
    err = proc.stderr.read()
    assert "error: interrupted" in err and "Traceback" not in err
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]
    for sheet in _outputs(out / "sheets"):
        with Image.open(sheet) as im:
            im.load()


def _program_script(code: str) -> list[str]:
    """The words a script of the program's signal handling prints, in a process of its own (its
    handlers are the process's), after checking that it ended with status 0."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),  # the suite may run under nohup
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.split()


PROGRAM_SIGNALS = """
import os, signal, sys, time
from srgan_cli import stopping
stopping.SAME_REQUEST = 0.0  # each signal a new request
stopping.start_program()
os.kill(os.getpid(), signal.SIGINT)  # during the start-up (imports, parsing): held
time.sleep(0.1)
print("held", flush=True)
try:
    with stopping.deferred_interrupts():  # a command starting (cli.Command.invoke)
        stopping.end_start_up()
    print("not raised", flush=True)
except KeyboardInterrupt:
    print("raised", flush=True)
stopping.program_finished()
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # in the teardown: ignored, the status kept
    os.kill(os.getpid(), sig)
    time.sleep(0.05)
print("alive", flush=True)
"""


def test_the_program_holds_a_signal_through_its_start_up_and_ignores_those_after_its_end():
    """A Ctrl-C in the program's first fraction of a second printed a traceback from an import, or
    aborted the process from inside PyTorch's import; SIGTERM/SIGHUP there, or in the second of
    teardown after the command (the repeat of a request already handled), killed it (143, 129)."""
    assert _program_script(PROGRAM_SIGNALS) == ["held", "raised", "alive"]


@pytest.mark.parametrize("command", ["upscale", "models"])
def test_a_signal_held_since_the_start_stops_the_command_as_it_starts(batch, tmp_path, monkeypatch, command):
    """A signal that came during the start-up stops the command where it can stop cleanly: an
    upscale replaces an earlier report with one saying "interrupted" (its earlier "completed"
    report stayed, beside exit 130)."""
    from srgan_cli import stopping

    report = tmp_path / "r.json"
    report.write_text('{"schema_version": 1, "ended": "completed", "files": []}')  # an earlier run's
    monkeypatch.setattr(stopping._Program, "active", True)
    monkeypatch.setattr(stopping._Program, "deferring", 1)  # in the start-up, as start_program leaves it
    monkeypatch.setattr(stopping._Program, "pending", True)  # a Ctrl-C came during it
    monkeypatch.setattr(stopping._Program, "finished", False)
    if command == "upscale":
        result = _run_here(batch["weights"], batch["inputs"], tmp_path / "out", "--report", str(report))
    else:
        result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 130, result.output
    assert result.output.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in result.output
    assert stopping._Program.deferring == 0 and not stopping._Program.pending
    if command == "upscale":
        import json

        assert json.loads(report.read_text())["ended"] == "interrupted"
        assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


HELD_SIGNALS = """
import os, signal, sys, time
from srgan_cli import stopping
stopping.SAME_REQUEST = 0.0  # each signal a new request
stopping.start_program()
with stopping.deferred_interrupts(raise_pending=False):  # upscale's command: the body decides
    stopping.end_start_up()
    with stopping.interruptible():
        pass
    os.kill(os.getpid(), signal.SIGTERM)  # while the report is written: held
    time.sleep(0.1)
    with stopping.interruptible(raise_pending=False):  # the wait for other ranks: the outcome is decided
        pass
    print("dropped", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.1)
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # a second request while one is held: at once (a blocked write)
        time.sleep(0.5)
        print("not raised", flush=True)
    except KeyboardInterrupt:
        print("raised", flush=True)
print("end", flush=True)
"""


def test_a_signal_held_after_the_outcome_is_decided_is_dropped_and_a_second_stops_at_once():
    """A signal while upscale's report was being written was raised after it, by the wait for
    other ranks (even alone): a completed run exited 130 beside a report saying "completed"; and
    a report blocked on a full pipe could not be stopped at all."""
    assert _program_script(HELD_SIGNALS) == ["dropped", "raised", "end"]
