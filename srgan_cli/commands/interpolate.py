"""``srgan interpolate``: blend two generators parameter by parameter (ESRGAN network interpolation)."""

from __future__ import annotations

import contextlib
import decimal
import math
import os
from pathlib import Path

import click

from ..cli import Command
from ..errors import exact_number, printable
from .completion import complete_model


def _finite_alpha(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if value is not None and math.isnan(value):
        raise click.BadParameter("must be a number in [0, 1], not nan")
    return value


@click.command("interpolate", cls=Command)
@click.argument("model_a", metavar="A", shell_complete=complete_model)
@click.argument("model_b", metavar="B", shell_complete=complete_model)
@click.option(
    "--alpha",
    type=click.FloatRange(0.0, 1.0),
    required=True,
    callback=_finite_alpha,
    help="Weight of B: 0 gives A, 1 gives B, 0.8 is 80% B.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The .safetensors file to write.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def interpolate(model_a: str, model_b: str, alpha: float, output: Path, overwrite: bool) -> None:
    """Write (1 - ALPHA) * A + ALPHA * B as a new weights file.

    A and B are model names (see 'srgan models'), .safetensors files or Hub references
    (owner/repo[:file.safetensors][@revision]) of the same network, e.g. an SRResNet and its
    SRGAN fine-tune:

    \b
      srgan interpolate srresnet_x4 srgan_x4 --alpha 0.8 -o blend.safetensors
    """
    if output.suffix.lower() != ".safetensors":
        raise click.BadParameter("must end in .safetensors", param_hint="'-o' / '--output'")
    from ..errors import OptionError, SrganError
    from ..fsutil import folder_problem
    from ..hub import resolve_weights
    from ..interpolate import interpolate_files

    if output.exists() and not overwrite:  # before any download
        raise SrganError(f"{output}: already exists; choose another name or pass --overwrite")
    # a missing folder is made, as upscale's -o and train's --out make theirs; one that cannot be
    # is refused before anything is read
    if (problem := folder_problem(output.parent)) is not None:
        raise OptionError(f"-o {output}: {problem}")
    path_a = resolve_weights(model_a)
    path_b = resolve_weights(model_b)
    made = [p for p in (output.parent, *output.parent.parents) if not os.path.lexists(p)]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        written = interpolate_files(path_a, path_b, alpha, output, overwrite=overwrite, sources=(model_a, model_b))
    except BaseException:
        for folder in made:  # deepest first, only if still empty: a failed blend leaves nothing behind
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    # a status line, on stderr as every command's: stdout closed or full no longer fails a run whose
    # file is written (a rerun then said "already exists")
    with contextlib.suppress(OSError):
        # 1 - alpha as decimals: 1 - 0.7 is 0.30000000000000004 in floating point, 0.3 as typed
        a, b = exact_number(float(decimal.Decimal(1) - decimal.Decimal(repr(alpha)))), exact_number(alpha)
        shown = f"{written} (alpha {b}: {a} x {model_a} + {b} x {model_b})"
        click.echo(f"wrote {printable(shown)}", err=True)
