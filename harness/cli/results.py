"""`harness results`: list stored runs and export them."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from harness.cli.common import DB_OPTION, JSON_OPTION, console, open_store
from harness.cli.report import resolve_run_id
from harness.errors import ConfigError

app = typer.Typer(help="List and export stored results.", no_args_is_help=True)


@app.command("list")
def list_command(
    limit: int = typer.Option(20, "--limit", help="How many runs, newest first."),
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List stored runs, newest first."""
    runs = open_store(db).list_runs(limit=limit)
    if as_json:
        typer.echo(json.dumps(runs, indent=2, default=str))
        return
    table = Table(title="runs")
    for column in ("run_id", "created_at", "jobs", "command"):
        table.add_column(column)
    for run in runs:
        table.add_row(str(run["run_id"]), str(run["created_at"]), str(run.get("jobs", "")),
                      str(run.get("command", "")))
    console.print(table)


@app.command("export")
def export_command(
    run_id: str | None = typer.Argument(None, help="Run id (default with --last: the latest)."),
    last: bool = typer.Option(False, "--last", help="The most recent run."),
    fmt: str = typer.Option("csv", "--format", "-f", help="csv or json."),
    samples: bool = typer.Option(False, "--samples", help="Every raw latency sample (CSV)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here, not stdout."),
    db: str | None = DB_OPTION,
) -> None:
    """Export one run's jobs (or raw samples) as CSV or JSON."""
    if fmt not in {"csv", "json"}:
        raise ConfigError(f"--format must be csv or json, not {fmt!r}")
    store = open_store(db)
    resolved = resolve_run_id(store, run_id, last)
    text = store.export_samples_csv(resolved) if samples else store.export_run(resolved, fmt)
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}", highlight=False)
