"""``srgan models``: the named models and where their weights come from."""

from __future__ import annotations

import json
import math
import sys

import click

from ..cli import Command, check_model_names
from ..errors import printable
from .completion import complete_model


class _ModelsCommand(Command):
    def needs_torch(self, ctx: click.Context) -> bool:
        return bool(ctx.params.get("fetch"))  # --fetch loads the weights; the table and --info read headers


@click.command("models", cls=_ModelsCommand)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON: the table as a list of objects; with --info or --fetch one object for one MODEL, a "
    "list for several.",
)
@click.option(
    "--info",
    "info",
    metavar="MODEL",
    multiple=True,
    shell_complete=complete_model,
    callback=check_model_names,
    help="Show where MODEL's weights file is, its sha256 and parameters, and the config and "
    "provenance in its metadata (how it was trained, its validation scores); with --json as JSON. Repeatable.",
)
@click.option(
    "--fetch",
    "fetch",
    metavar="MODEL",
    multiple=True,
    shell_complete=complete_model,
    callback=check_model_names,
    help="Download (or verify) MODEL, a name or Hub reference, into the cache for offline use; "
    "prints its local path. Repeatable.",
)
def models(as_json: bool, info: tuple[str, ...], fetch: tuple[str, ...]) -> None:
    """List the named models: name, scale, arch, parameters, size, availability and source.

    Listing never touches the network: 'cached' means the weights are already in the Hugging
    Face cache. Any model name can be given to 'srgan upscale --model' (and --blend), 'srgan bench
    --model' and 'srgan interpolate'. OWNER/REPO below stands for a Hub repository of weights.

    \b
      srgan models
      srgan models --json
      srgan models --info srgan_x4
      srgan models --info runs/a/generator.safetensors --json
      srgan models --fetch srgan_x4 --fetch OWNER/REPO:rrdb_x4.safetensors@v1.0
    """
    if info and fetch:
        raise click.UsageError("give --info or --fetch, not both")
    if info:
        records = [_info(name) for name in info]
        if as_json:
            click.echo(json.dumps(records if len(records) > 1 else records[0], indent=2))
            return
        for i, record in enumerate(records):
            if i:
                click.echo("")
            meta = record.pop("metadata")
            # A file's metadata is anyone's text: an escape sequence in it cleared the screen or set
            # the window title, and a newline broke the layout. printable() shows both as written.
            shown = [(printable(key), value) for key, value in meta.items()]  # a list: two keys may print alike
            width = max(len(key) for key in [*record, *(key for key, _ in shown)]) + 2
            for key, value in [*record.items(), ("metadata", ""), *((f"  {k}", v) for k, v in shown)]:
                text = printable(value if isinstance(value, str) else json.dumps(value))
                click.echo(f"{key.ljust(width)}  {text}".rstrip())
        return
    if fetch:
        from ..hub import resolve_weights
        from ..weights import load_generator

        fetched = []
        for name in fetch:
            path = resolve_weights(name)
            load_generator(path, device="cpu")  # verified: an srgan generator whose weights match its config
            fetched.append({"model": name, "path": str(path)})
            if not as_json:  # as each arrives: a later one that fails does not hide those fetched
                click.echo(f"{printable(name)}\t{printable(str(path))}")
        if as_json:
            click.echo(json.dumps(fetched if len(fetched) > 1 else fetched[0], indent=2))
        return
    from ..weights import describe_entries

    rows = describe_entries()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="srgan models")
    for column in ("name", "scale", "arch", "params", "size", "available"):
        table.add_column(column, no_wrap=True)
    table.add_column("source", overflow="fold")
    table.add_column("description", overflow="fold", min_width=20)
    damaged = []
    for row in rows:
        size = f"{row['size_mb']} MB" if row["size_mb"] is not None else "-"
        params = f"{row['params'] / 1e6:.2f} M" if row["params"] is not None else "-"
        name = row["name"] + (" (default)" if row["default"] else "")
        if row["damaged"]:  # the published sha256 does not match: no command loads it
            available = "damaged"
            damaged.append(row)
        elif row["available"]:
            available = "cached" if row["cached"] and row["source"] != "bundled" else "yes"
        else:
            available = "download" if row["hub"] else "no"
        table.add_row(name, f"x{row['scale']}", row["arch"], params, size, available, row["source"], row["description"])
    # Piped output is not folded to 80 columns, so each model stays on one line for grep.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)
    notes = Console(stderr=True, soft_wrap=True)  # notes on stderr, as every command's: stdout holds the table
    for row in damaged:
        fix = (
            "reinstall srgan-cli"
            if row["source"] == "bundled"
            else f"a bad cached copy: 'srgan models --fetch {row['name']}' removes it, and run again downloads it"
        )
        notes.print(
            f"note: {row['name']}: {row['path']} does not match its published sha256 ({fix})",
            markup=False,
            highlight=False,
        )


def _info(name: str) -> dict[str, object]:
    """One weights file's identity and metadata, values as stored (config parsed from JSON)."""
    from ..hub import resolve_weights, weights_sha256
    from ..weights import count_file_parameters, read_metadata

    path = resolve_weights(name)
    meta = read_metadata(path)
    shown: dict[str, object] = {}
    for key in sorted(meta):
        shown[key] = meta[key]
        if key in ("config", "interpolation"):
            try:
                shown[key] = json.loads(meta[key], parse_constant=_no_constant, parse_float=_finite_float)
            except (ValueError, RecursionError):
                pass  # shown as stored (NaN or infinity too: --json printed a bare NaN, which is not JSON)
    return {
        "model": name,
        "file": str(path),
        "sha256": weights_sha256(name, path),
        "size_bytes": path.stat().st_size,
        "params": count_file_parameters(path),
        "metadata": shown,
    }


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400
        raise ValueError(f"{text} is not a finite number")
    return value
