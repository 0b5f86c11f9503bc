"""`harness devices`: list, show, add and check device profiles."""

from __future__ import annotations

import json

import typer
import yaml
from rich.table import Table

from harness.cli.common import JSON_OPTION, console
from harness.profiles import find_profile, list_profiles

app = typer.Typer(help="Device profiles: list, show, add, check.", no_args_is_help=True)


@app.command("list")
def list_command(as_json: bool = JSON_OPTION) -> None:
    """List known device profiles (yours first, then the bundled ones)."""
    profiles = list_profiles()
    if as_json:
        typer.echo(json.dumps([p.model_dump(mode="json") for p in profiles], indent=2))
        return
    table = Table(title="device profiles")
    for column in ("name", "kind", "transport", "description"):
        table.add_column(column)
    for p in profiles:
        table.add_row(p.name, p.kind, p.transport.kind, p.description)
    console.print(table)


@app.command("show")
def show_command(name: str = typer.Argument(..., help="Profile name.")) -> None:
    """Print one profile, validated, with every default filled in."""
    profile = find_profile(name)
    typer.echo(yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False))
