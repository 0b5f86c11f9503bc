"""Pieces the CLI commands share: the store option, parsing NAME=VALUE, printing results."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness import paths
from harness.errors import EXIT_OK, EXIT_PARTIAL, ConfigError, HarnessError
from harness.results.records import RunRecord
from harness.results.store import ResultStore

console = Console(soft_wrap=True)  # messages stay one line; tables still fit the width
_FULL_TABLE_WIDTH = 170
_PIPE_WIDTH = 240
_NARROW_COLUMNS = ("#", "Model", "Device", "Threads", "Median ms [95% CI]", "p99 ms", "Accuracy",
                   "Verdict")

DB_OPTION = typer.Option(
    None, "--db", help="Results store: a SQLite file or a SQLAlchemy URL "
    "(default: $HARNESS_DB or the per-user data dir).",
)
OUT_OPTION = typer.Option(None, "--out", help="Reports directory (default: ./reports).")
JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")


def open_store(db: str | None) -> ResultStore:
    """Open the store named by --db, $HARNESS_DB, or the default SQLite file."""
    if db is None:
        url = paths.default_db_url()
    elif "://" in db:
        url = db
    else:
        url = f"sqlite:///{Path(db).expanduser().resolve()}"
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return ResultStore(url)


def parse_assignments(items: Sequence[str], option: str) -> tuple[tuple[str, str], ...]:
    """Parse repeated NAME=VALUE options, e.g. --shape x=1x3x224x224."""
    parsed: list[tuple[str, str]] = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise ConfigError(f"{option} {item!r} must look like NAME=VALUE")
        parsed.append((name, value))
    return tuple(parsed)


def print_run(record: RunRecord, *, as_json: bool) -> None:
    """Print a run as a rich table (or JSON lines of the summary columns)."""
    from harness.reporting.tables import TERMINAL_HEADERS, jobs_dataframe, render_terminal_rows

    if as_json:
        frame = jobs_dataframe(record)
        typer.echo(json.dumps({"run_id": record.run_id,
                               "jobs": json.loads(frame.to_json(orient="records"))}, indent=2))
        return
    rows = render_terminal_rows(record)
    if not rows:
        console.print("no jobs")
        return
    # A narrow terminal gets the columns that matter most; a pipe or CI log gets every column
    # unfolded (rich would otherwise fold everything to 80 characters).
    keep = list(range(len(TERMINAL_HEADERS)))
    if console.is_terminal and console.width < _FULL_TABLE_WIDTH:
        keep = [i for i, h in enumerate(TERMINAL_HEADERS) if h in _NARROW_COLUMNS]
    table = Table(title=f"run {record.run_id}", show_lines=False)
    for i in keep:
        table.add_column(TERMINAL_HEADERS[i], overflow="fold")
    for row in rows:
        table.add_row(*(escape(row[i]) for i in keep))  # error texts hold [..]
    if console.is_terminal:
        console.print(table)
    else:
        Console(file=console.file, width=_PIPE_WIDTH, soft_wrap=True).print(table)
    for note in record.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


def run_exit_code(record: RunRecord) -> int:
    """0 when every job succeeded; EXIT_PARTIAL when some failed; raise when all failed."""
    failed = [j for j in record.jobs if j.status != "ok"]
    if not failed:
        return EXIT_OK
    if len(failed) == len(record.jobs):
        first = failed[0].error or "unknown error"
        more = f" (and {len(failed) - 1} more failed jobs)" if len(failed) > 1 else ""
        raise HarnessError(f"{first}{more}", hint=f"run {record.run_id} is stored; "
                           "`harness report --last` shows every error")
    return EXIT_PARTIAL
