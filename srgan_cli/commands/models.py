"""``srgan models``: the named models and where their weights come from."""

from __future__ import annotations

import json

import click


@click.command("models")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def models(as_json: bool) -> None:
    """List the named models: name, scale, size, source and description."""
    from ..weights import describe_entries

    rows = describe_entries()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="srgan models")
    for column in ("name", "scale", "arch", "size", "source", "description"):
        table.add_column(column)
    for row in rows:
        size = f"{row['size_mb']} MB" if row["size_mb"] is not None else "-"
        name = row["name"] + (" (default)" if row["default"] else "")
        table.add_row(name, f"x{row['scale']}", row["arch"], size, row["source"], row["description"])
    Console().print(table)
