"""Write a run's report directory: HTML, CSV, Markdown, JSON and the plot PNGs.

Layout of ``out_dir`` (by convention ``reports/<run-id>/``)::

    index.html     self-contained page (inline CSS, plots as data URIs)
    results.csv    one row per job, columns of :data:`harness.reporting.tables.COLUMNS`
    samples.csv    job_index, seq, latency_ms: every timed inference
    summary.md     GitHub-flavoured Markdown table and verdict lines, for CI logs
    results.json   the whole run, including every raw runner document
    plots/*.png    the same plots the page embeds

Each file is written to a temporary name and renamed, so an interrupted write never leaves a
half-written report next to a complete one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from harness.errors import ReportError
from harness.reporting.html import render_html
from harness.reporting.plots import render_plots
from harness.reporting.tables import display_rows, has_variants, jobs_dataframe
from harness.results.records import RunRecord

REPORT_JSON_SCHEMA = "harness.report"
REPORT_JSON_VERSION = 1

# Markdown columns: (header, key of display_row), kept short for CI log widths.
_MD_COLUMNS: tuple[tuple[str, str], ...] = (
    ("#", "job_index"),
    ("Model", "model"),
    ("Device", "device"),
    ("Runtime", "runtime_full"),
    ("Threads", "threads"),
    ("Provider", "provider"),
    ("Median ms", "median_ms"),
    ("95% CI", "median_ci"),
    ("p90 ms", "p90_ms"),
    ("p99 ms", "p99_ms"),
    ("Throughput /s", "throughput_ips"),
    ("Peak MiB", "peak_memory_mb"),
    ("Accuracy", "accuracy"),
    ("Verdict", "verdict_display"),
)


# Added after "Model" when the run has compressed variants: size, host accuracy and recipe sit
# next to the latency and the on-device accuracy.
_MD_VARIANT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Recipe", "recipe"),
    ("Size B", "size_bytes"),
    ("Host acc", "host_accuracy"),
)


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`write_report` put each file."""

    out_dir: Path
    index_html: Path
    results_csv: Path
    samples_csv: Path
    summary_md: Path
    results_json: Path
    plots: tuple[Path, ...]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ReportError(
            f"cannot write {path}: {exc.strerror or exc}", hint="check the directory is writable"
        ) from exc


def results_csv_text(record: RunRecord) -> str:
    """``results.csv``: :func:`jobs_dataframe` as CSV, full float precision, empty for missing."""
    return jobs_dataframe(record).to_csv(index=False, lineterminator="\n")


def samples_csv_text(record: RunRecord) -> str:
    """``samples.csv``: one row per timed inference, ``job_index, seq, latency_ms``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["job_index", "seq", "latency_ms"])
    for job in sorted(record.jobs, key=lambda j: j.spec.job_index):
        for seq, latency in enumerate(job.samples_ms):
            writer.writerow([job.spec.job_index, seq, repr(float(latency))])
    return buffer.getvalue()


def _md_cell(text: str) -> str:
    """Plain text for a Markdown table cell or line: one line, no pipes, no raw HTML."""
    # A pipe would end the cell and a newline the row; '<' would start raw HTML (a model named
    # "<script>..." must show as text), so it becomes an entity, which Markdown renders back.
    text = " ".join(text.split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("|", r"\|") or " "


def _md_code(text: str) -> str:
    """Text inside a code span: literal there, so only backticks and newlines need care."""
    return " ".join(text.replace("`", "'").split())


def summary_markdown(record: RunRecord) -> str:
    """``summary.md``: a GitHub-flavoured Markdown table and one verdict line per job."""
    rows = display_rows(record)
    lines = [
        f"## harness run `{record.run_id}`",
        "",
        f"{record.created_at} · host `{record.host}` · harness {record.harness_version}",
        "",
        f"`{_md_code(record.command)}`",
        "",
    ]
    if not rows:
        return "\n".join([*lines, "This run has no jobs.", ""])
    columns = _MD_COLUMNS
    if has_variants(record):
        columns = (*_MD_COLUMNS[:2], *_MD_VARIANT_COLUMNS, *_MD_COLUMNS[2:])
    header = [h for h, _ in columns]
    numeric = {
        "#",
        "Threads",
        "Median ms",
        "p90 ms",
        "p99 ms",
        "Throughput /s",
        "Peak MiB",
        "Accuracy",
        "Size B",
        "Host acc",
    }
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---:" if h in numeric else "---" for h in header) + "|")
    for r in rows:
        cells = [r[key] for _, key in columns]
        if r["fallback_to_cpu"]:
            cells[header.index("Provider")] = f"{r['provider']} ⚠ {r['fallback_to_cpu']}"
        if r.get("flagged"):
            cells[header.index("Host acc")] += f" ⚑ {r['flagged']}"
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines += ["", "### Verdicts", ""]
    for r in rows:
        head = f"- job {r['job_index']} `{_md_code(r['model'])}` on `{_md_code(r['device'])}`: **{r['verdict_display']}**"
        details = []
        if r["verdict_display"] == "FAILED" and r["error"]:
            details.append(r["error"])
        if r["reasons"]:
            details.append(r["reasons"])
        if r["warnings"]:
            details.append(f"warnings: {r['warnings']}")
        lines.append(head + (" — " + "; ".join(_md_cell(d) for d in details) if details else ""))
    counts = [r["verdict_display"] for r in rows]
    lines += [
        "",
        f"{counts.count('VALID')} valid, {counts.count('INVALID')} invalid, "
        f"{counts.count('FAILED')} failed of {len(rows)} jobs.",
        "",
    ]
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN/Infinity
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def record_to_json_dict(record: RunRecord) -> dict[str, Any]:
    """The whole run as plain JSON types, raw runner documents included, under a versioned key."""
    return {
        "schema": REPORT_JSON_SCHEMA,
        "schema_version": REPORT_JSON_VERSION,
        "run": _jsonable(dataclasses.asdict(record)),
    }


def write_report(record: RunRecord, out_dir: Path) -> ReportPaths:
    """Render ``record`` into ``out_dir`` (created if needed) and return the paths written.

    Raises :class:`ReportError` when the directory cannot be created or a file cannot be written.
    """
    out_dir = Path(out_dir)
    plots_dir = out_dir / "plots"
    try:
        plots_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(
            f"cannot create report directory {out_dir}: {exc.strerror or exc}",
            hint="choose another --out directory",
        ) from exc
    paths_without_plots = ReportPaths(
        out_dir=out_dir,
        index_html=out_dir / "index.html",
        results_csv=out_dir / "results.csv",
        samples_csv=out_dir / "samples.csv",
        summary_md=out_dir / "summary.md",
        results_json=out_dir / "results.json",
        plots=(),
    )
    # The data files first: if plotting or templating fails, the numbers are already on disk.
    p = paths_without_plots
    _write_atomic(p.results_json, json.dumps(record_to_json_dict(record), indent=1).encode())
    _write_atomic(p.results_csv, results_csv_text(record).encode())
    _write_atomic(p.samples_csv, samples_csv_text(record).encode())
    _write_atomic(p.summary_md, summary_markdown(record).encode())
    plots = render_plots(record)
    plot_paths = []
    for plot in plots:
        path = plots_dir / f"{plot.name}.png"
        _write_atomic(path, plot.png)
        plot_paths.append(path)
    _write_atomic(p.index_html, render_html(record, plots).encode())
    paths = dataclasses.replace(p, plots=tuple(plot_paths))
    return paths
