"""`harness compare`: judge a new run against a base run, job by job, asv style.

The statistics live in :mod:`harness.analysis.compare`; this module resolves the two runs, prints
the table (or JSON), writes ``compare.md`` on request and maps the outcome to an exit code:
:data:`~harness.errors.EXIT_REGRESSION` when any pair is significantly slower, 1 when the runs
are incomparable (raised as :class:`~harness.errors.IncomparableRunsError`, printed as one line
by the CLI entry point), 0 otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from harness.analysis.compare import (
    CHECKED_SETTINGS,
    Comparison,
    Mark,
    PairComparison,
    compare_runs,
)
from harness.cli.common import DB_OPTION, JSON_OPTION, console, open_store
from harness.errors import (
    EXIT_OK,
    EXIT_REGRESSION,
    ConfigError,
    IncomparableRunsError,
    ReportError,
    StoreError,
)
from harness.results.store import ResultStore

HEADERS = (
    "model",
    "device",
    "threads",
    "provider",
    "base median ms",
    "new median ms",
    "ratio [CI]",
    "p",
    "mark",
)
_STYLES = {
    Mark.SLOWER: "bold red",
    Mark.FASTER: "bold green",
    Mark.NO_CHANGE: "dim",
    Mark.DIFFERENT_SETUP: "bold yellow",
    Mark.FAILED: "bold magenta",
}
_LEGEND = (
    "+ slower (regression), - faster, ~ no significant change, "
    "! different setup accepted, x not tested (failed, INVALID or no samples)"
)
ALLOW_OPTION = typer.Option(
    None,
    "--allow-different",
    metavar="SETTING",
    help=f"Compare despite this setting differing, marked '!' (repeatable): "
    f"{', '.join(CHECKED_SETTINGS)}.",
)
MARKDOWN_OUT_OPTION = typer.Option(None, "--out", help="Also write DIR/compare.md.")


def compare_command(
    base: str | None = typer.Argument(None, help="Base run id: the reference."),
    new: str | None = typer.Argument(None, help="New run id: the run judged against the base."),
    last: bool = typer.Option(False, "--last", help="Compare the latest two runs (older = base)."),
    alpha: float = typer.Option(0.01, "--alpha", help="Significance level of the U test."),
    min_effect: float = typer.Option(
        0.05, "--min-effect", help="Smallest relative change reported (0.05 = 5 %)."
    ),
    allow_different: list[str] | None = ALLOW_OPTION,
    by_name: bool = typer.Option(
        False, "--by-name", help="Pair jobs by model name instead of model sha256."
    ),
    as_json: bool = JSON_OPTION,
    out: Path | None = MARKDOWN_OUT_OPTION,
    db: str | None = DB_OPTION,
) -> int:
    """Compare two runs; exit 3 when a job got significantly slower, 1 when incomparable."""
    store = open_store(db)
    base_id, new_id = resolve_run_pair(store, base, new, last)
    comparison = compare_runs(
        store.load_run(base_id),
        store.load_run(new_id),
        alpha=alpha,
        min_effect=min_effect,
        allow=tuple(allow_different or ()),
        by_name=by_name,
    )
    if as_json:
        payload = {**dataclasses.asdict(comparison), "has_regression": comparison.has_regression}
        typer.echo(json.dumps(payload, indent=2))
    else:
        print_comparison(comparison)
    if out is not None:
        path = write_markdown(comparison, out)
        if not as_json:
            console.print(f"wrote {path}", highlight=False)
    if not comparison.pairs:  # a CI gate must not pass when nothing was compared
        raise IncomparableRunsError(
            f"runs {base_id} and {new_id} have no job in common (same model, device, threads "
            "and provider): nothing was compared",
            hint="benchmark the same models and settings in both runs, or pair models by name "
            "with --by-name",
        )
    return EXIT_REGRESSION if comparison.has_regression else EXIT_OK


def resolve_run_pair(
    store: ResultStore, base: str | None, new: str | None, last: bool
) -> tuple[str, str]:
    """(base, new) run ids: the two given, or with ``--last`` the latest two (older first)."""
    if last:
        if base or new:
            raise ConfigError("give two run ids or --last, not both")
        runs = store.list_runs(limit=2)
        if len(runs) < 2:
            raise StoreError(
                f"--last needs two stored runs; {store.location} has {len(runs)}",
                hint="run `harness bench` again, or name two runs",
            )
        # created_at is to the second: on a tie the run that finished later is the new one
        older, newer = sorted(runs, key=lambda r: (r.created_at, r.finished_at or "~"))
        return older.run_id, newer.run_id
    if not (base and new):
        raise ConfigError(
            "which runs? give BASE and NEW run ids, or --last",
            hint="list the stored runs with `harness results list`",
        )
    return base, new


def _ms(value: float | None) -> str:
    # four significant digits: a 5 us model and a 500 ms model both stay readable
    if value is None:
        return "-"
    if not value > 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, 3 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


def _threads(threads: int | None) -> str:
    return "default" if threads is None else str(threads)


def _ratio(pair: PairComparison) -> str:
    if pair.ratio is None:
        return "-"
    if pair.ratio_ci_low is None or pair.ratio_ci_high is None:
        return f"{pair.ratio:.3f}"
    return f"{pair.ratio:.3f} [{pair.ratio_ci_low:.3f}, {pair.ratio_ci_high:.3f}]"


def _p(pair: PairComparison) -> str:
    if pair.p_value is None:
        return "-"
    # the normal approximation underflows to 0 for thousands of samples; the JSON keeps it exact
    return "<1e-4" if pair.p_value < 1e-4 else f"{pair.p_value:.2g}"


def comparison_rows(comparison: Comparison) -> list[tuple[str, ...]]:
    """One row of :data:`HEADERS` strings per pair."""
    return [
        (
            pair.model_name,
            pair.key.device_name,
            _threads(pair.key.threads),
            pair.key.provider,
            _ms(pair.base_median_ms),
            _ms(pair.new_median_ms),
            _ratio(pair),
            _p(pair),
            pair.mark.value,
        )
        for pair in comparison.pairs
    ]


def summary_line(comparison: Comparison) -> str:
    """One line: counts per mark, unmatched jobs, the parameters and the verdict."""
    counts = ", ".join(f"{comparison.count(mark)} {mark.value}" for mark in Mark)
    unmatched = len(comparison.unmatched)
    verdict = (
        f"REGRESSION in {len(comparison.regressions)} job(s)"
        if comparison.has_regression
        else "no regression"
    )
    return (
        f"{len(comparison.pairs)} pairs ({counts}), {unmatched} unmatched job(s); "
        f"alpha {comparison.alpha:g}, min effect {comparison.min_effect * 100:g}%, "
        f"ratio CI {comparison.ci_level:.0%}: {verdict}"
    )


def detail_lines(comparison: Comparison) -> list[str]:
    """Why each pair that is not ``~`` got its mark, then the unmatched jobs."""
    lines = [
        f"{pair.mark.value} {pair.model_name} on {pair.key.device_name} "
        f"(threads={_threads(pair.key.threads)}, provider={pair.key.provider}): {pair.reason}"
        for pair in comparison.pairs
        if pair.mark is not Mark.NO_CHANGE
    ]
    for job in comparison.unmatched:
        run = comparison.base_run_id if job.side == "base" else comparison.new_run_id
        lines.append(
            f"only in {job.side} run {run}: job {job.job_index} {job.model_name} on "
            f"{job.key.device_name} (threads={_threads(job.key.threads)}, "
            f"provider={job.key.provider})"
        )
    return lines


def print_comparison(comparison: Comparison) -> None:
    """The rich table, the reasons and unmatched jobs, and the summary line."""
    table = Table(title=f"compare {comparison.base_run_id} -> {comparison.new_run_id}")
    for header in HEADERS:
        table.add_column(header, overflow="fold", no_wrap=header in ("mark", "p"))
    for pair, row in zip(comparison.pairs, comparison_rows(comparison), strict=True):
        style = _STYLES[pair.mark]
        table.add_row(*(escape(cell) for cell in row[:-1]), f"[{style}]{escape(row[-1])}[/]")
    if comparison.pairs:
        # A terminal gets the table fitted to its width; a pipe or CI log gets it unfolded.
        if console.is_terminal:
            console.print(table)
        else:
            unbounded = console.options.update(max_width=10_000)
            width = Measurement.get(console, unbounded, table).maximum
            Console(file=console.file, width=width, soft_wrap=True).print(table)
    else:
        console.print("no jobs in common")
    for line in detail_lines(comparison):
        console.print(line, highlight=False, markup=False)
    console.print(f"marks: {_LEGEND}", highlight=False, markup=False)
    style = "bold red" if comparison.has_regression else "bold"
    console.print(f"[{style}]{escape(summary_line(comparison))}[/]", highlight=False)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def comparison_markdown(comparison: Comparison) -> str:
    """A GitHub-flavoured Markdown table with reasons and the summary, for CI logs."""
    lines = [
        f"# compare {comparison.base_run_id} -> {comparison.new_run_id}",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "|".join("---" for _ in HEADERS) + "|",
        *(
            "| " + " | ".join(_md_cell(cell) for cell in row) + " |"
            for row in comparison_rows(comparison)
        ),
        "",
        *(f"- {_md_cell(line)}" for line in detail_lines(comparison)),
        "",
        f"Marks: {_LEGEND}.",
        "",
        f"**{summary_line(comparison)}**",
        "",
    ]
    return "\n".join(lines)


def write_markdown(comparison: Comparison, directory: Path) -> Path:
    """Write ``directory/compare.md`` (creating the directory); returns its path."""
    path = directory / "compare.md"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        path.write_text(comparison_markdown(comparison), encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path
