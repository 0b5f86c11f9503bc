"""`harness report`: re-render the report of a stored run."""

from __future__ import annotations

from pathlib import Path

import typer

from harness import paths
from harness.cli.common import DB_OPTION, OUT_OPTION, console, open_store
from harness.errors import ConfigError, StoreError
from harness.results.store import ResultStore


def report_command(
    run_id: str | None = typer.Argument(None, help="Run id (see `harness results list`)."),
    last: bool = typer.Option(False, "--last", help="The most recent run."),
    db: str | None = DB_OPTION,
    out: Path | None = OUT_OPTION,
) -> None:
    """Write reports/<run-id>/ (index.html, results.csv, samples.csv, summary.md, results.json)."""
    from harness.reporting import write_report

    store = open_store(db)
    resolved = resolve_run_id(store, run_id, last)
    record = store.load_run(resolved)
    report = write_report(record, (out or paths.default_reports_dir()) / record.run_id)
    console.print(f"report: {report.index_html}", highlight=False)


def resolve_run_id(store: ResultStore, run_id: str | None, last: bool) -> str:
    """The run id given, or the latest one with --last."""
    if run_id and last:
        raise ConfigError("give a run id or --last, not both")
    if run_id:
        return run_id
    if not last:
        raise ConfigError("which run? give a run id or --last")
    latest = store.latest_run_id()
    if latest is None:
        raise StoreError("the results store has no runs yet", hint="run `harness demo` first")
    return latest
