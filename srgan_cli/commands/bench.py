"""``srgan bench``: PSNR/SSIM/LPIPS and speed of one or more models on a test set.

The JSON written by ``--json`` is the result dict documented in :mod:`srgan_cli.bench`
(``schema_version`` 1), or a list of them for several sets. Results (the tables, or the JSON with
``--json -``) go to standard output; notes and status lines to standard error, as in upscale and train.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import sys
from pathlib import Path

import click

from ..cli import (
    Command,
    DroppingStream,
    NonEmptyPath,
    check_model_names,
    device_option,
    is_tty,
    live_terminal,
    stdout_closed,
    typed_value,
)
from ..config import PRECISIONS
from .completion import complete_bench_model, complete_file, complete_set


@click.command("bench", cls=Command)
@click.option(
    "--set",
    "set_names",
    multiple=True,
    metavar="NAME|DIR",
    shell_complete=complete_set,
    help="set5 (default), set14, bsd100, or a folder holding HR/ (and optionally LR_x4/), or of images (the HR "
    "images); repeat for several sets.",
)
@click.option(
    "--model",
    "-m",
    "model_specs",
    multiple=True,
    metavar="MODEL",
    shell_complete=complete_bench_model,
    callback=check_model_names,
    help="Model name, .safetensors file or Hub reference; 'bicubic' is the baseline. Repeat to compare.  "
    "[default: srgan_x4]",
)
@click.option(
    "--data-dir",
    type=NonEmptyPath(path_type=Path, file_okay=False),
    help="Folder with set5/, set14/, bsd100/ (each HR/ and LR_x4/). Default: env SRGAN_DATA_DIR, else the Hub.",
)
@click.option(
    "--hub-dataset",
    metavar="REPO",
    help="Hugging Face Hub dataset to download named sets from.  [default: env SRGAN_BENCH_REPO, else "
    "srgan-cli/sr-benchmarks]",
)
@device_option
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default="auto",
    show_default=True,
    help="Compute precision; auto is fp16 on GPUs and fp32 on the CPU (bench never picks bf16 itself).",
)
@click.option(
    "--json",
    "json_out",
    metavar="FILE|-",
    shell_complete=complete_file,
    callback=lambda ctx, param, value: _check_json_name(value),
    help="Write the results as JSON to FILE (its folder is created if missing), or to stdout with '-'.",
)
@click.option(
    "--save-images",
    type=NonEmptyPath(path_type=Path, file_okay=False),
    metavar="DIR",
    callback=lambda ctx, param, value: _check_save_images(value, typed_value(ctx, "save_images")),
    help="Write SR images (DIR/<model>/) and comparison sheets (DIR/sheets/) here (created if missing).",
)
@click.option("--per-image", is_flag=True, help="Also show (and put in the JSON) the numbers of every image.")
@click.option(
    "--runs",
    type=click.IntRange(1, 100),
    default=1,
    show_default=True,
    help="Timed runs per image; the median counts.",
)
@click.option(
    "--paired",
    is_flag=True,
    help="Also show each model's per-image difference from the first --model "
    "(mean +- standard error, images better / worse); always in the JSON.",
)
@click.option("--no-lpips", is_flag=True, help="Skip LPIPS even where it can be computed.")
@click.option(
    "--ensemble",
    is_flag=True,
    help="Also score each model with the x8 self-ensemble of 'srgan upscale --ensemble' (rows NAME+ensemble; "
    "none for bicubic).",
)
@click.option(
    "-q", "--quiet", is_flag=True, help="No progress or notes on stderr (nor the tables, with --json -); errors still."
)
def bench(
    set_names: tuple[str, ...],
    model_specs: tuple[str, ...],
    data_dir: Path | None,
    hub_dataset: str | None,
    device: str,
    precision: str,
    json_out: str | None,
    save_images: Path | None,
    per_image: bool,
    runs: int,
    paired: bool,
    no_lpips: bool,
    ensemble: bool,
    quiet: bool = False,
) -> None:
    """Score models on a test set the literature's way (Y-channel PSNR/SSIM, 4 px border) and time them.

    \b
      srgan bench --set set14
      srgan bench --set set5 --set set14 --set bsd100 --json all.json
      srgan bench --set bsd100 -m bicubic -m srresnet_x4 -m my.safetensors
      srgan bench --set photos/ -m bicubic --save-images cmp/ --json results.json
      srgan bench --set set5 --model srresnet_x4 --ensemble
      srgan bench --set bsd100 --model srgan_x4 --model mine.safetensors --paired
    """
    from ..errors import SrganError

    json_to_stdout = json_out == "-"
    if stdout_closed():  # `>&-`: every set was scored, then a traceback (--json -) or the table lost, exit 0
        if json_to_stdout:
            raise SrganError("--json -: standard output is closed")
        raise SrganError("standard output is closed, and the table of results goes there (> /dev/null drops it)")

    from .. import bench as core
    from ..device import choose_device
    from ..metrics import Lpips, LpipsUnavailable
    from ..weights import DEFAULT_MODEL, MODELS

    # notes, status lines and the spinner on stderr, as upscale and train put theirs; a stderr that
    # fails (closed, full) drops them and the run goes on. The tables go to stdout, or to stderr
    # beside them where stdout carries the JSON (--json -).
    notes = _console(DroppingStream(sys.stderr))
    notes.quiet = quiet  # -q, as upscale's and train's: what stderr gets besides errors
    console = notes if json_to_stdout else _console(sys.stdout)
    # the spinner only where it redraws in place: on a log (FORCE_COLOR) it wrote a line per image
    live = live_terminal(notes.file) and notes.is_interactive
    json_file = _check_json_path(json_out) if json_out is not None and not json_to_stdout else None

    dev = choose_device(device)
    set_names = set_names or ("set5",)
    # every set is found and read before any model runs: a typo in the last --set fails at once
    bench_sets = [
        core.load_set(core.resolve_set(name, data_dir, hub_dataset), scale=4, name=_set_label(name))
        for name in set_names
    ]
    for bench_set in bench_sets:
        note = core.size_note(bench_set)
        for line in ([note] if note else []) + bench_set.notes:
            notes.print(f"note: {line}", markup=False, highlight=False, soft_wrap=True)
    folder_per_set = save_images is not None and len(bench_sets) > 1
    if folder_per_set:
        labels = [b.name for b in bench_sets]
        if len(set(labels)) != len(labels):
            raise click.BadParameter(
                "two sets have the same name; --save-images needs one folder per set", param_hint="--set"
            )

    specs = list(model_specs) or [DEFAULT_MODEL]
    if not model_specs:
        entry = MODELS.get(DEFAULT_MODEL)
        if entry is not None and entry.bundled_path() is None and not entry.hub_repo:
            raise SrganError(
                f"the default model {DEFAULT_MODEL} has no weights installed; "
                "use --model bicubic or --model FILE.safetensors"
            )
    upscalers = []
    taken: set[str] = set()
    for spec in specs:
        label = core.unique_label(core.BICUBIC if spec.lower() == core.BICUBIC else core.model_label(spec), taken)
        if spec.lower() == core.BICUBIC:
            upscalers.append(core.bicubic_upscaler(bench_sets[0].scale, name=label))  # every set is loaded at x4
        elif model_specs:
            upscalers.append(core.model_upscaler(spec, dev, precision, name=label))
        else:
            try:
                upscalers.append(core.model_upscaler(spec, dev, precision, name=label))
            except SrganError as exc:
                raise SrganError(f"{exc}; or use --model bicubic or --model FILE.safetensors") from None
        if ensemble and spec.lower() != core.BICUBIC:
            upscalers.append(
                core.model_upscaler(
                    spec, dev, precision, name=core.unique_label(f"{label}+ensemble", taken), ensemble=True
                )
            )

    # the flags that would add nothing printed nothing: a word, so that a typo'd command is not taken for a result
    if ensemble and all(spec.lower() == core.BICUBIC for spec in specs):
        notes.print(
            "note: --ensemble: bicubic has no self-ensemble; give a model (--model) to score one",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    if paired and len(upscalers) < 2:
        notes.print(
            "note: --paired compares each model with the first --model; with one model there is no paired table",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    if save_images is not None:  # before any model runs: a refusal costs nothing
        for bench_set in bench_sets:
            save_dir = save_images / bench_set.name if folder_per_set else save_images
            core.check_save_dir(save_dir, bench_set, [u.name for u in upscalers])

    lpips, lpips_note = None, None
    if no_lpips:
        lpips_note = "skipped (--no-lpips)"
    else:
        try:
            lpips = Lpips(device=str(dev))
        except LpipsUnavailable as exc:
            lpips_note = exc.reason

    # the tables are printed as each set is done; should stdout fail (`| head -1`, > /dev/full), the
    # run goes on to write the --json file and the images all the same, and the error comes last
    table_out = _TableOutput(console, stop_at_once=json_file is None and save_images is None)
    results = []
    for bench_set in bench_sets:
        message = f"benchmarking {bench_set.name} ({_count(len(bench_set.images), 'image')})"
        with notes.status(message) if live else contextlib.nullcontext(_NoStatus()) as status:

            def progress(done: int, total: int, name: str = bench_set.name) -> None:
                status.update(f"benchmarking {name}: {done}/{total} images")

            save_dir = save_images / bench_set.name if folder_per_set else save_images
            result = core.run_bench(
                upscalers,
                bench_set,
                device=str(dev),
                per_image=per_image,
                runs=runs,
                lpips=lpips,
                lpips_note=lpips_note,
                save_dir=save_dir,
                progress=progress,
            )
        table_out.show(_print_table, result, per_image)
        if paired and len(result["models"]) > 1:
            table_out.show(_print_paired, result)
        # the set's notes were printed as it was read; those the run added (images too small for LPIPS) now
        _print_model_notes(notes, result, ([size] if (size := core.size_note(bench_set)) else []) + bench_set.notes)
        results.append(result)
    if json_out is not None:
        # one set: the result object; several: a list of them, in --set order
        doc = results[0] if len(results) == 1 else results
        text = json.dumps(_finite(doc), indent=2, allow_nan=False)
        if json_to_stdout:
            from ..fsutil import stdout_problem, write_stdout

            try:
                write_stdout((text + "\n").encode("utf-8"))
            except OSError as exc:
                raise SrganError(f"--json -: {stdout_problem(exc)} before the JSON was all written") from None
        else:
            from ..fsutil import atomic_path, write_reason

            try:
                json_file.parent.mkdir(parents=True, exist_ok=True)  # as --save-images makes its folder
                with atomic_path(json_file, replaces=_is_bench_json) as tmp:
                    tmp.write_text(text + "\n", encoding="utf-8")
            except FileExistsError:  # checked at the start; another program wrote the name during the run
                raise SrganError(
                    f"{json_out}: the JSON is not written: a file that is not an srgan bench result was put there "
                    "meanwhile"
                ) from None
            except OSError as exc:
                raise SrganError(f"{json_out}: cannot write the JSON ({write_reason(exc)})") from None
    if save_images is not None:
        where = f"{save_images}" if len(bench_sets) == 1 else f"{save_images}/SET/"
        notes.print(
            f"SR images and comparison sheets written to {where}", markup=False, highlight=False, soft_wrap=True
        )
    table_out.check(json_out if json_file is not None else None)


def _check_json_name(value: str | None) -> str | None:
    """--json '' (an unset variable) was taken as '.', and refused as a folder."""
    if value is not None and not value:
        raise click.BadParameter("an empty path (an unset variable?); give a file name, or '-' for standard output")
    return value


def _check_save_images(value: Path | None, typed: object = None) -> Path | None:
    """--save-images - made a folder named '-': '-' means standard output everywhere else (./- names
    such a folder)."""
    if value is not None and (typed if isinstance(typed, str) else str(value)) == "-":
        raise click.BadParameter("takes a folder; '-' (standard output) cannot hold images")
    return value


def _check_json_path(json_out: str) -> Path:
    """The --json file, refused (a usage error) before anything runs where it cannot be written or
    is not an earlier result; its folder may be missing (it is made when the JSON is written)."""
    from ..fsutil import result_file_problem

    target = Path(json_out)
    problem = result_file_problem(json_out, target, _is_bench_json, "an srgan bench result", "--json")
    if problem is not None:
        raise click.BadParameter(problem, param_hint="--json")
    return target


def _console(stream):
    """A rich console on ``stream``. On a log or a pipe, rows as wide as they need, never cut to
    COLUMNS or 80; by the file, not by rich's is_terminal, which FORCE_COLOR or TTY_COMPATIBLE=1
    make true for a log too."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich's own exits 1 without a word (`| head -1`): an error to report, after the JSON
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    return _Console(file=stream) if is_tty(stream) else _Console(file=stream, width=_LOG_WIDTH)


class _TableOutput:
    """Prints the tables on stdout; the first failure (the reader left, a full disk) stops the
    printing, not the run, unless nothing else comes of it (``stop_at_once``)."""

    def __init__(self, console, stop_at_once: bool) -> None:
        self.console = console
        self.stop_at_once = stop_at_once
        self.error: OSError | None = None

    def show(self, print_fn, *args) -> None:
        if self.error is not None:
            return
        try:
            print_fn(self.console, *args)
        except OSError as exc:
            from ..fsutil import stdout_gone

            self.error = exc
            self.console.quiet = True
            stdout_gone()  # Python's flush at exit finds /dev/null, not the pipe that went away
            if self.stop_at_once:
                self.check(None)

    def check(self, json_file: str | None) -> None:
        """Raise the printing's error, if any, naming where the results are all the same."""
        if self.error is None:
            return
        from ..errors import SrganError
        from ..fsutil import stdout_problem

        where = f"; the results are in {json_file}" if json_file is not None else ""
        raise SrganError(f"{stdout_problem(self.error)} before the table of results was all written{where}")


class _NoStatus:
    """console.status's stand-in where no live display is drawn."""

    def update(self, *args, **kwargs) -> None:
        pass


def _is_bench_json(path: Path) -> bool:
    """True for a file that ``srgan bench --json`` wrote: a result object, or a list of them (with
    or without the ``srgan_version`` that later versions add). Anything but a regular file is not
    one and is never opened (a FIFO would block)."""
    from ..fsutil import read_json

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
    except OSError:
        return False
    doc = read_json(path)
    docs = doc if isinstance(doc, list) else [doc]
    return bool(docs) and all(
        isinstance(d, dict) and "schema_version" in d and isinstance(d.get("models"), list) and "set" in d for d in docs
    )


_LOG_WIDTH = 400


def _cells(*cells: str):
    """Table cells as plain text: names are not rich markup ("[bold]x.png" showed as "x")."""
    from rich.text import Text

    return [Text(str(cell)) for cell in cells]


def _count(n: int, noun: str) -> str:
    """``1 image``, ``5 images``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _print_table(console, result: dict, per_image: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..errors import printable, utf8_safe

    caption = (
        f"x{result['scale']}, {_count(result['num_images'], 'image')}, LR from {result['lr_source']}; "
        f"Y-channel PSNR/SSIM with a {result['scale']} px border; MP/s = output megapixels per second "
        f"on {result['device']} (median of {result['runs']} run(s))"
    )
    # title and caption as escaped markup, not Text: they keep the table's title and caption styles
    table = Table(title=escape(f"srgan bench: {result['set']}"), caption=escape(caption))
    # names fold onto a second line where the width is short, never end in "..." (two long model
    # names cut to one); numbers stay whole
    names = [str(m["name"]) for m in result["models"]]
    for column in ("set", "model"):
        table.add_column(
            column, overflow="fold", min_width=_name_width(column, [result["set"]] if column == "set" else names)
        )
    for column in ("PSNR (dB)", "SSIM", "LPIPS", "MP/s"):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column.split()[0]))
    notes = []
    for model in result["models"]:
        if model["lpips"] is None:
            note = model["lpips_note"] or "not computed"
            if note not in notes:
                notes.append(note)
            lp = f"n/a [{notes.index(note) + 1}]"
        else:
            lp = f"{model['lpips']:.4f}"
        name = model["name"] + (f" ({model['dtype']})" if model["dtype"] else "")
        speed = "-" if model["mp_per_s"] is None else f"{model['mp_per_s']:.3g}"
        table.add_row(*_cells(result["set"], name, f"{model['psnr']:.2f}", f"{model['ssim']:.4f}", lp, speed))
        if per_image:
            for row in model["images"]:
                lpi = "" if row["lpips"] is None else f"{row['lpips']:.4f}"
                # escaped as the notes are: a newline in a name broke the row, a name not valid UTF-8 shifted it
                name = printable(utf8_safe(str(row["name"])))
                table.add_row(*_cells("", f"  {name}", f"{row['psnr']:.2f}", f"{row['ssim']:.4f}", lpi, ""))
    _print_fitted(console, table)
    if result.get("lpips_source"):
        console.print(f"LPIPS by {result['lpips_source']}", markup=False, highlight=False, soft_wrap=True)
    for k, note in enumerate(notes, 1):  # the table's footnotes: with the table
        console.print(f"[{k}] LPIPS: {note}", markup=False, highlight=False, soft_wrap=True)


def _print_model_notes(console, result: dict, printed: list[str] = ()) -> None:
    """The notes of the set's run not among ``printed`` (images too small for LPIPS), and each model's
    (a precision it fell back from, images reproduced exactly): on stderr."""
    for note in result.get("notes", []):
        if note not in printed:
            console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    for model in result["models"]:
        for note in model.get("notes", []):
            console.print(f"note: {model['name']}: {note}", markup=False, highlight=False, soft_wrap=True)


def _print_paired(console, result: dict) -> None:
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    first = result["models"][0]["name"]
    models = result["models"][1:]
    with_lpips = any(m["paired"]["lpips"] is not None for m in models)
    # better and worse both: with only "higher" (better/n), a model the same as the first (0 better,
    # 0 worse) read as one worse on every image
    table = Table(
        title=escape(f"{result['set']}: paired per image against {first}"),
        caption="mean difference +- its standard error; better/worse: images where it scores better / worse "
        "(a higher PSNR" + (", a lower LPIPS" if with_lpips else "") + "), of those compared",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("model", overflow="fold", min_width=_name_width("model", [str(m["name"]) for m in models]))
    for column in ("PSNR (dB)", "better/worse", "SSIM") + (("LPIPS", "better/worse") if with_lpips else ()):
        table.add_column(column, justify="right", no_wrap=True, min_width=len(column.split()[0]))

    def fmt(mean: float | None, sem: float | None, digits: int) -> str:
        if mean is None or not math.isfinite(mean):
            return "n/a"
        return f"{mean:+.{digits}f}" + ("" if sem is None else f"+-{sem:.{digits}f}")

    for model in models:
        p = model["paired"]
        cells = [model["name"], fmt(p["psnr"], p["psnr_sem"], 3), f"{p['better']}/{p['worse']} of {p['n']}"]
        cells.append(fmt(p["ssim"], p["ssim_sem"], 4))
        if with_lpips:
            n = p.get("lpips_n") or result["num_images"]
            lower = "-" if p["lpips_lower"] is None else f"{p['lpips_lower']}/{p['lpips_higher']} of {n}"
            cells += [fmt(p["lpips"], p["lpips_sem"], 4), lower]
        table.add_row(*_cells(*cells))
    _print_fitted(console, table)


def _name_width(header: str, names: list[str], most: int = 12) -> int:
    """A name column's least width: its names whole up to ``most`` characters, folded past that.
    Without one, rich gave the names' columns nothing in a narrow terminal (rows no one could tell
    apart) before it would fold a number."""
    return min(most, max([len(header), *(len(n) for n in names)]))


def _print_fitted(console, table) -> None:
    """Print ``table``; where the terminal is narrower than the table's least width (its numbers
    whole, its names at their least), as wide as that: the terminal wraps the lines, but no number
    is cut to "..." and no name column shrinks to nothing."""
    from rich.text import Text

    def cell_len(cell) -> int:
        return cell.cell_len if isinstance(cell, Text) else len(str(cell))

    least = len(table.columns) + 1  # the rules between columns and at the edges
    for column in table.columns:
        if column.no_wrap:
            least += max([cell_len(column.header), *(cell_len(c) for c in column._cells)])
        else:
            least += column.min_width or 1
        least += 2  # padding
    width = console.width
    if least <= width:
        console.print(table)
        return
    console.width = least  # print(width=) cannot go past the console's width
    try:
        console.print(table)
    finally:
        console.width = width


def _set_label(set_name: str) -> str:
    path = Path(set_name)
    if set_name.lower() in ("set5", "set14", "bsd100") and not path.is_dir():
        return set_name.lower()
    return path.resolve().name or "set"  # '.' and '..' name the folder they stand for


def _finite(value):
    """The result with non-finite floats (PSNR of identical images) as null: strict JSON."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
