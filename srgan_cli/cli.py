"""The ``srgan`` command group. Commands live in ``srgan_cli/commands/`` and are imported
only when run, so ``srgan --help`` is fast and one command's imports never slow another.

Exit codes (every command): 0 success; 1 an error the user can fix, or a batch in which some
item failed; 2 a usage error (bad option); 130 interrupted (Ctrl-C, SIGTERM, or SIGHUP unless
ignored as under `nohup`).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import importlib.util
import io
import os
import re
import sys
import warnings
from pathlib import Path

import click

from . import __version__, stopping
from .commands.completion import complete_device
from .errors import EMPTY_MODEL, SrganError, first_line, printable
from .fsutil import write_reason
from .stopping import sigterm_as_interrupt

COMMANDS = {
    "upscale": ("srgan_cli.commands.upscale", "upscale", "Upscale images or folders of images (x4)."),
    "bench": ("srgan_cli.commands.bench", "bench", "PSNR/SSIM/LPIPS and speed on Set5, Set14, BSD100 or a folder."),
    "train": ("srgan_cli.commands.train", "train", "Train a generator: stage mse (SRResNet), then gan (SRGAN)."),
    "models": ("srgan_cli.commands.models", "models", "List the named models and where their weights come from."),
    "interpolate": ("srgan_cli.commands.interpolate", "interpolate", "Blend two generators parameter by parameter."),
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use; user errors become one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _module_exists(COMMANDS[name][0])]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _module_exists(COMMANDS[name][0]):
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def resolve_command(self, ctx: click.Context, args: list[str]):  # type: ignore[override]
        """click's, with a suggestion for a mistyped command, as click makes for an option."""
        name = args[0] if args else ""
        if not ctx.resilient_parsing and not name.startswith("-") and self.get_command(ctx, name) is None:
            import difflib

            close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
            if close:
                ctx.fail(f"No such command {name!r}. Did you mean {close[0]!r}?")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(self, *args, **kwargs):  # type: ignore[override]
        """click's main, with the same one line for what fails outside a command: the group's own
        --version and --help, and shell completion, print in click's parsing, before invoke (a
        traceback on a full or closed output); and PyTorch failing to load (a traceback)."""
        _fill_closed_descriptors()
        _stand_in_for_closed_stdout()
        try:
            return super().main(*args, **kwargs)
        except (ImportError, OSError, MemoryError) as exc:
            if isinstance(exc, OSError) and _stream_error(exc):
                fail(f"cannot write the output: {write_reason(exc)}")
            if (library := _failed_to_load(exc)) is not None:  # MemoryError: a tight ulimit -v, in the import
                reason = "out of memory" if isinstance(exc, MemoryError) and not str(exc) else first_line(exc)
                fail(f"cannot load {library} ({reason})")
            if isinstance(exc, MemoryError):
                fail("out of memory")
            raise

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        _lenient_streams()
        ignore_library_warnings()
        try:
            _check_cwd()
            # SIGTERM (`timeout`, a scheduler, CI) stops every command as Ctrl-C does: exit 130, one
            # line, no temporary file left; train and upscale set their own handling inside this.
            with sigterm_as_interrupt():
                return super().invoke(ctx)
        except SrganError as exc:
            fail(str(exc), getattr(exc, "exit_code", 1))
        except KeyboardInterrupt:
            fail("interrupted", 130)  # stderr may be gone (SIGHUP: the terminal closed): 130 all the same
        except OSError as exc:  # most often standard output closed or full (> /dev/full): a line, not a traceback
            if _stream_error(exc):
                fail(f"cannot write the output: {write_reason(exc)}")
            raise


def ignore_library_warnings() -> None:
    """Ignore the warnings and log records of Pillow's modules, and torch.load's warnings, in this
    process: the program's own. What Pillow warns of (corrupt EXIF data, a tag past the file's end, a malformed MPO)
    changes nothing srgan does with the file, and came as a source line between the progress lines,
    or, under PYTHONWARNINGS=error, as a traceback; torch.load warns of what it will not unpickle
    before it refuses a damaged checkpoint, which srgan says in one line. The library leaves the
    warning filters alone: they are global to the process, and changing them from a thread could
    silence another thread's warnings for good. Ahead of the filters given by -W or PYTHONWARNINGS
    (inserted again, not twice, on each call)."""
    warnings.filterwarnings("ignore", module=r"PIL(\.|$)")
    warnings.filterwarnings("ignore", module=r"torch\.(serialization|_weights_only_unpickler)$")
    # Pillow also logs what it then raises ("More samples per pixel than can be decoded: 30211"):
    # with no handler anywhere, Python's last-resort handler printed it bare, without the file's
    # name, above the one-line error srgan gives for the same file
    import logging

    pil = logging.getLogger("PIL")
    if not any(isinstance(h, logging.NullHandler) for h in pil.handlers):
        pil.addHandler(logging.NullHandler())
    # The Hub client's download warnings: for a download cut short, two lines a try ("Trying to
    # resume download...", then "Max retries exceeded") above the one-line error srgan gives for it.
    # HF_HUB_VERBOSITY, where set, still has its say.
    if not os.environ.get("HF_HUB_VERBOSITY"):
        logging.getLogger("huggingface_hub.file_download").setLevel(logging.ERROR)


class Command(click.Command):
    """A command whose options cannot swallow one another: an option that takes a value takes the
    next word whatever it is, so ``--json --no-lpips`` wrote the results to a file named
    ``--no-lpips`` and scored LPIPS all the same, and ``--report -q`` wrote ``-q`` and was not
    quiet. A value that is the name of one of the command's own options is refused (exit 2);
    ``./-q`` names such a file. The words as typed are kept for :func:`typed_value`.

    In the srgan program, PyTorch is imported before the command's body with stop signals held
    (a Ctrl-C raised inside its import aborted the process from C++); one that came meanwhile is
    raised as the body starts, or, for a command that ``holds_signals``, where its body says it
    can stop cleanly (:func:`stopping.interruptible`: upscale, whose report must say so)."""

    holds_signals = False
    # OpenMP threads that spin between layers burn the cores that decoding, encoding and any other
    # program on the machine need: for upscale on 2 shared cores a folder of 20 images took 22.7 s
    # against 9.0 s with passive waiting (the same bytes); idle, 6.2 s against 6.6 s, and a single
    # 500 x 500 image 1-2% slower. Training on the CPU was 23% slower with it, so only upscale
    # asks for it. Set before PyTorch loads its OpenMP; a value of the user's own is kept.
    passive_openmp = False

    def needs_torch(self, ctx: click.Context) -> bool:
        """Whether the command with these options uses PyTorch (imported before its body, above): all
        but `srgan models` listing or showing headers, which took 2 s to import it for nothing."""
        return True

    def invoke(self, ctx: click.Context):
        if not stopping.program_active():
            return super().invoke(ctx)
        with stopping.deferred_interrupts(raise_pending=not self.holds_signals):
            stopping.end_start_up()  # a signal held since the program started is raised by this block
            if self.needs_torch(ctx):
                if self.passive_openmp and "torch" not in sys.modules:
                    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                import torch  # noqa: F401 - imported here, where a signal cannot cut it short

            if self.holds_signals:
                return super().invoke(ctx)
        return super().invoke(ctx)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        words = list(args)  # click's parser consumes the list it is given
        try:  # the words as typed, before click turns ./-q into the Path -q
            typed, _, _ = self.make_parser(ctx).parse_args(args=list(args))
        except click.UsageError:
            typed = {}  # click's own parsing below says what is wrong
        ctx.meta[_TYPED] = typed
        rest = super().parse_args(ctx, args)
        if not ctx.resilient_parsing:  # tab completion parses half-typed lines
            _refuse_swallowed_options(ctx, self, words)
        return rest


_TYPED = "srgan.typed_options"


def typed_value(ctx: click.Context | None, name: str) -> object:
    """An option's or argument's value as typed on the command line (a str; a list or tuple for a
    repeated option or an argument of several words), or None where it was not typed there."""
    return None if ctx is None else ctx.meta.get(_TYPED, {}).get(name)


def as_typed(path: Path | None, word: object) -> Path | None:
    """``path`` as the word typed for it meant it: click makes the Path ``-`` of ``./-``, which the
    commands took for standard input or output; ``./-`` names a file called ``-`` (as for cat)."""
    if path is not None and str(path) == "-" and isinstance(word, str) and word != "-":
        return Path(os.path.abspath(word))
    return path


def _refuse_swallowed_options(ctx: click.Context, command: click.Command, args: list[str]) -> None:
    """Walk the words as click does and refuse an option's value that is one of the command's
    option names: every occurrence (`--report -q --report r.json` kept only the last value)."""
    names = {"--help", "-h"}
    takes: dict[str, click.Option] = {}  # option string -> the option, for options that take a value
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
            if not param.is_flag and not param.count:
                takes.update(dict.fromkeys(param.opts, param))
    words = iter(args)
    for word in words:
        if word == "--":
            break
        option = takes.get(word)
        if option is None and word.startswith("-") and not word.startswith("--") and len(word) > 2:
            # a cluster of short options (-qo OUT): the first that takes a value takes the rest, or the next word
            for k, char in enumerate(word[1:], 1):
                if f"-{char}" in takes:
                    option = takes[f"-{char}"] if k == len(word) - 1 else None
                    break
        if option is None:
            continue
        for _ in range(max(option.nargs, 1)):
            value = next(words, None)
            if value in names:
                raise click.BadParameter(
                    f"took the option {value} as its value; put the value right after {option.opts[-1]}"
                    f" (./{value} for a file of that name)",
                    ctx=ctx,
                    param=option,
                )


DEVICE_HELP = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps."  # --device, in every command


def _check_cwd() -> None:
    """Refuse to run in a folder that was deleted (`rmdir` from another shell): relative paths
    mean nothing there, and PyTorch's MKL died with "Intel oneMKL FATAL ERROR" (exit 2) even
    where every path was absolute."""
    try:
        os.getcwd()
    except FileNotFoundError:
        raise SrganError("the current folder no longer exists; cd to another one") from None
    except OSError:
        pass  # a folder above that may not be searched (EACCES): the paths given may still work


def _stream_error(exc: OSError) -> bool:
    """An error of standard output or error (closed, full, gone), not of a named file."""
    return getattr(exc, "filename", None) is None and exc.errno in _STREAM_ERRNOS


_LIBRARIES = {"torch": "PyTorch", "PIL": "Pillow"}


def _failed_to_load(exc: BaseException) -> str | None:
    """The library whose import raised ``exc``, or None: PyTorch not installed, or a library's
    shared objects failing to load (``libtorch_cpu.so: failed to map segment from shared object``
    under a ulimit -v, a broken install), a traceback before. Found by the module code of another
    package than srgan's being run where it was raised, so an OSError that a library raises later
    (a file torch.load cannot open) or an ImportError of srgan's own is not one."""
    if isinstance(exc, ImportError) and exc.name is not None and exc.name.split(".")[0] == "torch":
        return _LIBRARIES["torch"]
    library = None
    tb = exc.__traceback__
    while tb is not None:  # outermost to innermost: the last one found is the import that failed
        frame = tb.tb_frame
        package = str(frame.f_globals.get("__name__", "")).split(".")[0]
        if frame.f_code.co_name == "<module>" and package not in ("", "__main__", "srgan_cli"):
            library = _LIBRARIES.get(package, package)
        tb = tb.tb_next
    return library


class ClosedOutput:
    """Standard output when srgan runs with it closed (`srgan ... >&-`): Python makes sys.stdout
    None, where a command's ``sys.stdout.isatty()`` raised AttributeError and click and rich
    wrote what they were asked to print to nowhere (exit 0, the output lost). Here every write
    raises OSError (EBADF), which the group turns into one line and exit 1, as for a full output;
    a command that prints nothing on stdout runs as usual. ``closed`` is True, so a command
    about to send its result there (``-o -``, ``--json -``) refuses before any work."""

    closed = True
    encoding = "utf-8"
    errors = "strict"

    def write(self, text) -> int:
        raise OSError(errno.EBADF, "standard output is closed")

    def writelines(self, lines) -> None:
        raise OSError(errno.EBADF, "standard output is closed")

    def flush(self) -> None:
        pass  # nothing is ever held; Python flushes stdout at exit

    def fileno(self) -> int:
        raise OSError(errno.EBADF, "standard output is closed")

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False


def _stand_in_for_closed_stdout() -> None:
    if sys.stdout is None:
        sys.stdout = ClosedOutput()
    if sys.stderr is None:  # `2>&-` (cron, daemons): building rich's console on None failed every run, in silence
        with contextlib.suppress(OSError):
            sys.stderr = open(os.devnull, "w", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115


def _fill_closed_descriptors() -> None:
    """Open the null device onto standard input, output and error where they are closed (`2>&-`): the
    next file opened took the lowest free descriptor, so a temporary image file became descriptor 2,
    where whatever a C library writes to stderr (libjpeg's and libtiff's warnings) would have gone
    into the image. Python's sys.stdin/stdout/stderr stay None, so -o - and - still know they are closed."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return
            if null != fd:  # the lower ones are open: the first free is this one, unless another thread took it
                os.dup2(null, fd)
                os.close(null)


def stdout_closed() -> bool:
    """Whether standard output is closed (`>&-`), so that nothing printed there arrives."""
    return sys.stdout is None or bool(getattr(sys.stdout, "closed", False))


def check_stdout_open(what: str) -> None:
    """Refuse to start a run whose result (an image, a report, JSON) would go to a closed standard
    output: found after the work, it was all done for nothing."""
    if stdout_closed():
        raise SrganError(f"{what}: standard output is closed")


def _lenient_streams() -> None:
    """Write what the output's encoding cannot hold as backslash escapes instead of failing:
    under an ASCII locale or PYTHONIOENCODING=ascii, a name like "café.png" in bench's table
    raised UnicodeEncodeError (a traceback, and the --json file never written). stderr does
    this already; stdout is made to do the same."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            with contextlib.suppress(ValueError, OSError, io.UnsupportedOperation):
                reconfigure(errors="backslashreplace")


_STREAM_ERRNOS = (errno.EPIPE, errno.ENOSPC, errno.EBADF, errno.EIO, errno.EDQUOT)


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` on stderr as one line and exit with ``code``."""
    try:
        click.echo(f"error: {printable(str(message).strip())}", err=True)
    except OSError:
        pass  # stderr gone too: the exit status still tells
    sys.exit(code)


class NonEmptyPath(click.Path):
    """click.Path that refuses '': Path('') is '.', so an unset variable in a script
    (``srgan upscale "$IN" -o "$OUT"``, ``srgan train --out "$RUN"``) upscaled, trained on or wrote
    into the current folder."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value:
            name = "a file or folder name" if self.file_okay else "a folder name"
            if self.dir_okay:
                name += ", or '.' for the current folder"
            else:
                name = "a file name"
            self.fail(f"an empty path (an unset variable?); give {name}", param, ctx)
        return super().convert(value, param, ctx)


def check_model_names(ctx: click.Context | None, param: click.Parameter | None, value):
    """A click callback for an option naming a model (or several): '' (an unset variable) is
    refused at once, where it was the path '.' ("a folder"), found once the work was planned."""
    if any(item is not None and not item.strip() for item in (value if isinstance(value, tuple) else (value,))):
        raise click.BadParameter(EMPTY_MODEL)
    return value


def check_device(ctx: click.Context | None, param: click.Parameter | None, value: str | None) -> str | None:
    """A click callback for ``--device``: auto, cpu, mps, cuda or cuda:N (whether it exists is
    checked when it is used)."""
    if value is None:
        return None
    value = value.strip().lower()
    if not re.fullmatch(r"auto|cpu(:0)?|mps(:0)?|cuda(:\d+)?", value):
        raise click.BadParameter(f"{value!r}: expected auto, cpu, cuda, cuda:N or mps")
    # PyTorch names the one CPU and the one MPS device "cpu:0" and "mps:0" (str(tensor.device)): the same
    return value.split(":")[0] if value in ("cpu:0", "mps:0") else value


# --device of upscale and bench (train's has no default of its own: a --config may give it)
device_option = click.option(
    "--device",
    metavar="DEVICE",
    default="auto",
    show_default=True,
    callback=check_device,
    shell_complete=complete_device,
    help=DEVICE_HELP,
)


class DroppingStream:
    """stderr for progress bars: a write that fails (stderr closed, or full as on /dev/full) is
    dropped, so drawing a bar, in the main thread or rich's refresh thread, never stops a batch
    or a training run."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):
            self._stream.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (AttributeError, OSError, ValueError):  # AttributeError: no stream (None)
            return False

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def is_tty(stream) -> bool:
    """Whether ``stream`` is a terminal, by its file descriptor. rich's Console.is_terminal also
    says yes under FORCE_COLOR (any value, 0 too) or TTY_COMPATIBLE=1, which CI systems and
    containers set for colour: a log file then got live progress bars (cursor escapes and \\r
    redraws) and tables cut to 80 columns."""
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no descriptor (a capture), or closed
        return False


def live_terminal(stream) -> bool:
    """Whether a live display (a progress bar or spinner redrawn in place) may be drawn on
    ``stream``: a real terminal that is not a dumb one (TERM=dumb: Emacs shells, some CI logs).
    Colour is another matter, left to rich (FORCE_COLOR, NO_COLOR)."""
    return is_tty(stream) and os.environ.get("TERM", "").lower() not in ("dumb", "unknown")


def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="srgan")
def main() -> None:
    """srgan: photo super-resolution (x4) with SRGAN and ESRGAN, with bundled weights.

    \b
      srgan upscale photo.png -o out.png
      srgan upscale photos/ -o big/
      srgan bench --set set14
      srgan train --data images/ --out runs/a
    """


def run() -> None:
    """The ``srgan`` program (``python -m srgan_cli`` and the console script): :func:`main`,
    ended without the interpreter's teardown in a process that started a torch.distributed
    process group. There, about one torchrun run in twenty on a loaded 2-core machine died at exit
    with SIGABRT ("terminate called without an active exception": a gloo thread still running
    when its C++ object was destroyed), after the run had finished and every file was written, and
    torchrun reported the whole run failed. By then all output is written and closed; the streams
    are flushed, and the exit status is the command's."""
    try:
        main(prog_name="srgan")
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:  # before the command group took over (its own handling says the same)
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write("error: interrupted\n")
        code = 130
    if code is None:
        code = 0
    elif not isinstance(code, int):  # sys.exit("text") prints the text and exits 1
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"{code}\n")
        code = 1
    stopping.program_finished()
    if not stopping.PROCESS_GROUP_STARTED:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(code & 0xFF)
