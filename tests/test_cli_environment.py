"""The command line in a broken environment: standard output closed or full, the current folder
deleted, PyTorch that does not load, shell completion. Each is one `error:` line and exit 1,
never a traceback; each runs the real `srgan` in a subprocess, as a shell would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
HAS_DEV_FULL = Path("/dev/full").exists()


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **extra}
    for key in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "_SRGAN_COMPLETE"):
        if key not in extra:
            env.pop(key, None)
    return env


def _srgan(*args, stdout: str = "pipe", env: dict[str, str] | None = None, cwd=None, **kwargs):
    """`srgan ARGS` with stdout a pipe, 'closed' (`>&-`) or 'full' (`> /dev/full`)."""
    cmd = [sys.executable, "-m", "srgan_cli", *map(str, args)]
    if stdout == "closed":
        cmd = ["sh", "-c", 'exec "$@" >&-', "sh", *cmd]
    out = open("/dev/full", "wb") if stdout == "full" else subprocess.PIPE  # noqa: SIM115 - closed below
    try:
        return subprocess.run(
            cmd, stdout=out, stderr=subprocess.PIPE, env=env or _env(), cwd=cwd, timeout=300, check=False, **kwargs
        )
    finally:
        if stdout == "full":
            out.close()


def _one_line(done, start: str = "error: ") -> str:
    err = done.stderr.decode()
    assert done.returncode == 1, (done.returncode, err)
    assert err.count("\n") == 1 and err.startswith(start) and "Traceback" not in err, err
    return err.strip()


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(path)
    return path


# -- standard output full or closed --------------------------------------------------------------


@pytest.mark.skipif(not HAS_DEV_FULL, reason="needs /dev/full")
@pytest.mark.parametrize(
    ("args", "env"),
    [(["--version"], {}), (["--help"], {}), ([], {"_SRGAN_COMPLETE": "bash_source"})],
    ids=["version", "help", "completion-script"],
)
def test_the_groups_own_output_on_a_full_stdout_is_one_line(args, env):
    """`srgan --version >/dev/full` was a traceback: the group's options print in click's parsing,
    before the command group's error handling, as the completion script does."""
    done = _srgan(*args, stdout="full", env=_env(**env))
    assert _one_line(done) == "error: cannot write the output: No space left on device"


@pytest.mark.parametrize(
    "args",
    [["--version"], ["models", "--json"], ["models"]],
    ids=["version", "models-json", "models-table"],
)
def test_what_was_asked_for_on_a_closed_stdout_is_an_error(args):
    """With stdout closed (`>&-`) `--version` and `models --json` exited 0 having printed nothing,
    and `models` was a traceback (sys.stdout is None)."""
    done = _srgan(*args, stdout="closed")
    assert _one_line(done) == "error: cannot write the output: standard output is closed"


@pytest.mark.parametrize(
    ("json", "message"),
    [(["--json", "-"], "--json -: standard output is closed"), ([], "standard output is closed, and the table")],
    ids=["json", "table"],
)
def test_bench_refuses_a_closed_stdout_before_it_runs(tmp_path, json, message):
    """`bench --json - >&-` benchmarked every image, then failed with a traceback; without --json
    the table went nowhere and the exit status was 0. The set does not exist: refused before it is looked for."""
    done = _srgan("bench", "--set", tmp_path / "nosuch", "--model", "bicubic", "--no-lpips", *json, stdout="closed")
    assert _one_line(done).startswith(f"error: {message}")


def test_upscale_to_a_file_needs_no_stdout(image, tmp_path):
    """The stand-in for a closed stdout changes nothing for a command that prints nothing there."""
    done = _srgan("upscale", image, "-o", tmp_path / "b.png", "--device", "cpu", "-m", "srresnet_x4", stdout="closed")
    assert done.returncode == 0, done.stderr
    assert Image.open(tmp_path / "b.png").size == (48, 40)
    done = _srgan("upscale", image, "-o", "-", "--device", "cpu", stdout="closed")
    assert _one_line(done) == "error: -o -: standard output is closed"


def _closed_stderr(*args, **kwargs):
    """`srgan ARGS 2>&-`, its exit status."""
    cmd = ["sh", "-c", 'exec "$@" 2>&-', "sh", sys.executable, "-m", "srgan_cli", *map(str, args)]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, env=_env(), timeout=300, check=False, **kwargs)
    return done.returncode


def test_upscale_and_bench_run_with_stderr_closed(image, tmp_path):
    """With stderr closed (cron, a daemon), every upscale and bench wrote nothing and exited 1 in
    silence: sys.stderr is None, and building the progress console on it raised AttributeError."""
    assert _closed_stderr("upscale", image, "-o", tmp_path / "b.png", "--device", "cpu", "-m", "srresnet_x4") == 0
    assert Image.open(tmp_path / "b.png").size == (48, 40)
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("x.png", "y.png"):
        Image.open(image).save(folder / name)
    (folder / "bad.png").write_bytes(b"not an image")
    assert _closed_stderr("upscale", folder, "-o", tmp_path / "out", "--device", "cpu", "-m", "srresnet_x4") == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["x.png", "y.png"]  # the bad one failed
    bench = tmp_path / "set"
    for sub in ("HR", "LR_x4"):
        (bench / sub).mkdir(parents=True)
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(bench / "HR" / "a.png")
    args = ["bench", "--set", bench, "-m", "bicubic", "--no-lpips", "--json", tmp_path / "b.json", "-q"]
    assert _closed_stderr(*args) == 0
    assert (tmp_path / "b.json").exists()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_closed_standard_descriptors_are_filled_before_any_file_is_opened(tmp_path):
    """With descriptor 2 closed, the first file srgan opened (an image's temporary file) became
    descriptor 2: whatever a C library writes to stderr would have gone into the image."""
    code = (
        "import os, sys; from srgan_cli.cli import _fill_closed_descriptors as f; f(); "
        "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT); print(fd, os.path.realpath('/proc/self/fd/2'))"
    )
    cmd = ["sh", "-c", 'exec "$@" 2>&- <&-', "sh", sys.executable, "-c", code, str(tmp_path / "f")]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, env=_env(), timeout=60, check=True)
    fd, where = done.stdout.decode().split()
    assert int(fd) > 2 and where == os.devnull


# -- the current folder deleted ------------------------------------------------------------------

GONE_CWD = """
import os, sys
os.mkdir("gone")
os.chdir("gone")
os.rmdir(os.getcwd())
from srgan_cli.cli import main
main(sys.argv[1:], prog_name="srgan")
"""


def test_a_deleted_current_folder_is_one_line(image, tmp_path):
    """`cd d; rmdir ../d` from elsewhere, then `srgan upscale /abs/a.png -o /abs/b.png`: PyTorch's
    MKL died with "Intel oneMKL FATAL ERROR" and exit 2."""
    cmd = [sys.executable, "-c", GONE_CWD, "upscale", str(image), "-o", str(tmp_path / "b.png"), "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, env=_env(), cwd=tmp_path, timeout=300, check=False)
    assert _one_line(done) == "error: the current folder no longer exists; cd to another one"
    assert not (tmp_path / "b.png").exists()


# -- PyTorch that does not load --------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        'ImportError("libtorch_cpu.so: failed to map segment from shared object")',
        'OSError("libtorch_global_deps.so: cannot open shared object file: No such file or directory")',
        'MemoryError("")',  # a tighter ulimit -v: the import itself runs out of memory
    ],
    ids=["ImportError", "OSError", "MemoryError"],
)
def test_pytorch_that_does_not_load_is_one_line(image, tmp_path, error):
    """Under a memory limit (`ulimit -v 1500000`) importing torch raises "libtorch_cpu.so: failed to
    map segment from shared object": a traceback. Here a torch package that raises as the real
    one does stands before it on the path."""
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(f"raise {error}\n")
    env = _env(PYTHONPATH=os.pathsep.join([str(fake.parent), str(REPO)]))
    done = _srgan("upscale", image, "-o", tmp_path / "b.png", env=env)
    message = error.split('"')[1] or "out of memory"
    assert _one_line(done) == f"error: cannot load PyTorch ({message})"


def test_an_oserror_from_pytorch_at_work_is_not_called_a_failed_load():
    from srgan_cli.cli import _failed_to_load

    def load_a_missing_file():
        import torch

        torch.load("/nonexistent/x.pt")

    with pytest.raises(OSError) as info:
        load_a_missing_file()
    assert _failed_to_load(info.value) is None
    assert _failed_to_load(ModuleNotFoundError("No module named 'torch'", name="torch")) == "PyTorch"


# -- shell completion ------------------------------------------------------------------------------

# what completion prints, and on stderr at exit whether torch was imported
COMPLETE = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("torch imported" if "torch" in sys.modules else "no torch"))
from srgan_cli.cli import main
main(prog_name="srgan")
"""


@pytest.mark.parametrize(
    "words",
    [
        ["upscale", "a.png", "--tile", "16", "-m", ""],
        ["upscale", "a.png", "--blend", "srresnet_x4:0.5", "-m", ""],
        ["upscale", "a.png", "--tile", "3", "--blend", "nonsense", "-m", ""],  # bad values: still no torch
    ],
    ids=["tile", "blend", "bad-values"],
)
def test_completion_with_tile_or_blend_on_the_line_does_not_import_torch(words):
    """--tile's and --blend's checks imported ..tiling and ..interpolate, which import torch:
    with either on the line every Tab took 3 s (the README promises completion without PyTorch)."""
    env = _env(_SRGAN_COMPLETE="bash_complete", COMP_WORDS=" ".join(["srgan", *words]), COMP_CWORD=str(len(words)))
    done = subprocess.run([sys.executable, "-c", COMPLETE], capture_output=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "plain,srgan_x4" in done.stdout.decode().splitlines()
    assert done.stderr.decode() == "no torch"


def test_tile_and_blend_are_still_checked_when_run():
    from click.testing import CliRunner

    from srgan_cli.cli import main

    for option in (["--tile", "3"], ["--blend", "nonsense"]):
        result = CliRunner().invoke(main, ["upscale", "a.png", "-o", "b.png", *option])
        assert result.exit_code == 2 and f"Invalid value for '{option[0]}'" in result.stderr, result.output


# -- live displays -----------------------------------------------------------------------------------


def test_live_displays_only_on_a_real_terminal_that_is_not_dumb(tmp_path, monkeypatch):
    """rich's is_terminal is true under FORCE_COLOR or TTY_COMPATIBLE=1 for a log file too; live
    bars and spinners ask the file itself. Training's progress lines follow the same test."""
    from srgan_cli.cli import DroppingStream, is_tty, live_terminal
    from srgan_cli.commands.train import _Reporter

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    with open(tmp_path / "log", "w") as log:
        assert not is_tty(log) and not live_terminal(log)
        monkeypatch.setattr(sys, "stderr", log)
        assert not _Reporter().tty
    master, slave = os.openpty()
    try:
        with open(slave, "w") as terminal:
            monkeypatch.setattr(sys, "stderr", terminal)
            monkeypatch.setenv("TERM", "xterm")
            assert live_terminal(terminal) and live_terminal(DroppingStream(terminal)) and _Reporter().tty
            monkeypatch.setenv("TERM", "dumb")  # Emacs' shell: no redraw in place
            assert is_tty(terminal) and not live_terminal(terminal) and not _Reporter().tty
    finally:
        os.close(master)


@pytest.mark.parametrize(
    "args, option, swallowed",
    [
        (["upscale", "in.png", "-o", "out.png", "--report", "-q"], "--report", "-q"),
        (["bench", "--set", "set5", "--json", "--no-lpips"], "--json", "--no-lpips"),
        (["bench", "--set", "set5", "--save-images", "--no-lpips"], "--save-images", "--no-lpips"),
        (["upscale", "in.png", "-o", "--report", "r.json"], "--output", "--report"),
        (["train", "--data", "d", "--out", "--steps"], "--out", "--steps"),
        (["interpolate", "a", "b", "--alpha", "0.5", "-o", "--help"], "--output", "--help"),
        (["models", "--info", "-h"], "--info", "-h"),
        (["upscale", "in.png", "-o", "o.png", "--report", "-q", "--report", "r.json"], "--report", "-q"),
        (["upscale", "in.png", "-qo", "--report", "r.json"], "--output", "--report"),
    ],
)
def test_an_option_is_never_taken_as_another_options_value(tmp_path, monkeypatch, args, option, swallowed):
    """`--json --no-lpips` wrote the results to a file named --no-lpips and scored LPIPS all
    the same; `--report -q` wrote a report named -q and the run was not quiet."""
    from click.testing import CliRunner

    from srgan_cli.cli import main

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert f"took the option {swallowed} as its value" in result.output
    assert f"'{option}'" in result.output
    assert os.listdir(".") == []  # nothing was written under the swallowed name


def test_a_value_that_only_starts_with_a_dash_is_still_a_value(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from srgan_cli.cli import main

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["models", "--info", "-x.safetensors"])
    assert "took the option" not in result.output
    assert result.exit_code == 1  # the file does not exist: an ordinary error, not a usage error


def test_dot_slash_names_a_file_called_like_an_option(tmp_path, monkeypatch):
    """The refusal says ./-q names such a file; click turned the Path ./-q into -q and refused it
    too, so only an absolute path could."""
    from click.testing import CliRunner

    from srgan_cli.cli import main

    monkeypatch.chdir(tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save("in.png")
    result = CliRunner().invoke(main, ["upscale", "in.png", "-o", "./--report", "-q", "--report", "./-q"])
    assert result.exit_code == 0, result.output
    assert Path("-q").is_file() and (Path("--report") / "in.png").is_file()  # -o without a suffix: a folder
    Path("data").mkdir()
    args = ["train", "--data", "data", "--init", "nowhere.safetensors", "--stage", "gan"]
    result = CliRunner().invoke(main, [*args, "--out", "-"])
    assert result.exit_code == 2 and "cannot be standard output" in result.output, result.output
    result = CliRunner().invoke(main, [*args, "--out", "./-"])  # a folder named '-': on to the next check
    assert "standard output" not in result.output and "nowhere.safetensors" in result.output, result.output


@pytest.mark.parametrize(
    "args, code", [(["models", "--json"], 0), (["upscale", "nonexist.png", "-o", "x.png"], 1), (["--bogus"], 2)]
)
def test_a_process_that_started_a_process_group_ends_with_its_commands_status_and_output(tmp_path, args, code):
    """Under torchrun the program ends without the interpreter's teardown (where gloo could abort a
    finished run, SIGABRT): its buffered output must still come out whole, with the command's status."""
    script = (
        "import sys; import srgan_cli.stopping as t; t.process_group_started(); "
        f"from srgan_cli.cli import run; sys.argv = ['srgan', *{args!r}]; run()"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=_env(), cwd=tmp_path)
    assert done.returncode == code, done.stderr
    if code == 0:
        assert {row["name"] for row in __import__("json").loads(done.stdout)} >= {"srresnet_x4", "srgan_x4"}
    else:
        assert "Traceback" not in done.stderr and done.stderr.strip()


def test_the_ending_without_teardown_flushes_what_is_buffered(monkeypatch):
    import io

    import srgan_cli.cli as cli
    import srgan_cli.stopping as stopping

    class Ended(Exception):
        pass

    def exit_now(code):
        raise Ended(code)

    out, err = io.StringIO(), io.StringIO()
    flushed = []
    monkeypatch.setattr(out, "flush", lambda: flushed.append("out"), raising=False)
    monkeypatch.setattr(err, "flush", lambda: flushed.append("err"), raising=False)
    monkeypatch.setattr(stopping, "PROCESS_GROUP_STARTED", True)
    monkeypatch.setattr(cli, "main", lambda **kwargs: sys.exit(3))
    monkeypatch.setattr(cli.os, "_exit", exit_now)
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    with pytest.raises(Ended) as ended:
        cli.run()
    assert ended.value.args == (3,) and flushed == ["out", "err"]
    monkeypatch.setattr(stopping, "PROCESS_GROUP_STARTED", False)
    with pytest.raises(SystemExit) as exited:  # no process group: an ordinary exit
        cli.run()
    assert exited.value.code == 3


OMP_PROBE = """
import atexit, os, sys
atexit.register(lambda: print("OMP", os.environ.get("OMP_WAIT_POLICY"), flush=True))
sys.argv = ["srgan", *sys.argv[1:]]
from srgan_cli.__main__ import run
run()
"""


@pytest.mark.parametrize(
    ("command", "given", "expected"),
    [("upscale", None, "PASSIVE"), ("upscale", "ACTIVE", "ACTIVE"), ("models", None, "None")],
)
def test_upscale_asks_openmp_to_wait_passively_unless_told_otherwise(tmp_path, command, given, expected):
    """Spinning OpenMP threads took the cores from decoding, encoding and other programs (a folder
    of 20 images on 2 busy cores: 22.7 s, 9.0 s with passive waiting); a user's own value is kept,
    and the other commands leave it alone (CPU training was 23% slower with it)."""
    env = _env(**({"OMP_WAIT_POLICY": given} if given else {}))
    if given is None:
        env.pop("OMP_WAIT_POLICY", None)
    args = ["models"]
    if command == "upscale":
        args = ["upscale", str(REPO / "weights" / "examples" / "chelsea.png"), "-o", str(tmp_path / "o.png")]
        args += ["-m", "srresnet_x4", "-q", "--device", "cpu"]
    cmd = [sys.executable, "-c", OMP_PROBE, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[-2:] == ["OMP", expected], proc.stdout + proc.stderr


@pytest.mark.parametrize("warnings_as", [None, "error"])
def test_pillows_warnings_about_a_file_stay_off_the_terminal(tmp_path, warnings_as):
    """The library no longer silences Pillow's warnings (the filters are global to the process);
    the program ignores those of Pillow's modules itself: a corrupt EXIF is no source line on the
    terminal, and under PYTHONWARNINGS=error no traceback, the image upscaled as before."""
    import struct

    ifd = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    ifd += struct.pack("<HHII", 0x010E, 2, 100, 5000) + struct.pack("<I", 0)  # past the end: Pillow warns
    pixels = np.random.default_rng(0).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "e.jpg", exif=b"Exif\x00\x00" + ifd)
    env = _env(PYTHONWARNINGS=warnings_as) if warnings_as else _env()
    if not warnings_as:
        env.pop("PYTHONWARNINGS", None)
    done = _srgan("upscale", tmp_path / "e.jpg", "-o", tmp_path / "out.png", "--device", "cpu", env=env)
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "Warning" not in err and "Traceback" not in err, err
    assert Image.open(tmp_path / "out.png").size == (48, 40)


def test_pillows_log_records_about_a_file_stay_off_the_terminal(tmp_path):
    """Pillow logs some faults before it raises them ("More samples per pixel than can be decoded:
    30211"): the line came bare, without the file's name, above srgan's one-line error for it."""
    import struct

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "bad.tif")
    data = bytearray((tmp_path / "bad.tif").read_bytes())
    offset = struct.unpack("<I", data[4:8])[0]
    for k in range(struct.unpack("<H", data[offset : offset + 2])[0]):
        entry = offset + 2 + 12 * k
        if struct.unpack("<H", data[entry : entry + 2])[0] == 277:  # SamplesPerPixel
            data[entry + 8 : entry + 10] = struct.pack("<H", 30211)
    (tmp_path / "bad.tif").write_bytes(bytes(data))
    done = _srgan("upscale", tmp_path / "bad.tif", "-o", tmp_path / "out.png", "--device", "cpu", env=_env())
    err = done.stderr.decode()
    assert done.returncode == 1 and "More samples per pixel" not in err, err
    assert err.splitlines()[0].startswith(f"error: {tmp_path / 'bad.tif'}"), err
