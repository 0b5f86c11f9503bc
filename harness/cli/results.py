"""`harness results`: list stored runs and export them."""

from __future__ import annotations

import dataclasses
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
        typer.echo(json.dumps([dataclasses.asdict(run) for run in runs], indent=2))
        return
    table = Table(title="runs")
    for column in ("run id", "created", "jobs", "failed", "invalid", "command"):
        table.add_column(column)
    for run in runs:
        state = "" if run.finished_at else " (unfinished)"
        table.add_row(run.run_id, run.created_at + state, str(run.job_count),
                      str(run.failed_count), str(run.invalid_count), run.command)
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
    store = open_store(db)
    resolved = resolve_run_id(store, run_id, last)
    if samples:
        text = store.export_samples_csv(resolved)
    elif fmt == "csv":
        text = store.export_run(resolved, "csv")
    elif fmt == "json":
        text = store.export_run(resolved, "json")
    else:
        raise ConfigError(f"--format must be csv or json, not {fmt!r}")
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:  # a directory, a missing parent, a full or read-only disk
            raise ConfigError(
                f"cannot write {output}: {exc.strerror or exc}", hint="choose another -o file"
            ) from exc
        console.print(f"wrote {output}", highlight=False)
