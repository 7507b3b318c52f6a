"""``srgan models``: the named models and where their weights come from."""

from __future__ import annotations

import json
import sys

import click


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON (one object per model).")
@click.option(
    "--fetch",
    "fetch",
    metavar="MODEL",
    multiple=True,
    help="Download (or verify) MODEL, a name or Hub reference, into the cache for offline use; "
    "prints its local path. Repeatable.",
)
def models(as_json: bool, fetch: tuple[str, ...]) -> None:
    """List the named models: name, scale, arch, parameters, size, availability and source.

    Listing never touches the network: 'cached' means the weights are already in the Hugging
    Face cache. Any model name can be given to 'srgan upscale --model' and 'srgan interpolate'.

    \b
      srgan models
      srgan models --json
      srgan models --fetch srgan_x4 --fetch acme/esrgan:rrdb_x4.safetensors@v1.0
    """
    if fetch:
        from ..hub import resolve_weights

        for name in fetch:
            click.echo(f"{name}\t{resolve_weights(name)}")
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
    for row in rows:
        size = f"{row['size_mb']} MB" if row["size_mb"] is not None else "-"
        params = f"{row['params'] / 1e6:.2f} M" if row["params"] is not None else "-"
        name = row["name"] + (" (default)" if row["default"] else "")
        if row["available"]:
            available = "cached" if row["cached"] and row["source"] != "bundled" else "yes"
        else:
            available = "download" if row["hub"] else "no"
        table.add_row(name, f"x{row['scale']}", row["arch"], params, size, available, row["source"], row["description"])
    # Piped output is not folded to 80 columns, so each model stays on one line for grep.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)
