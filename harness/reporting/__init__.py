"""Reports of a run: tables, plots, a self-contained HTML page, CSV, Markdown and JSON.

Entry point: :func:`write_report`. The CLI's terminal table uses :func:`render_terminal_rows`.
"""

from harness.reporting.tables import TERMINAL_HEADERS, jobs_dataframe, render_terminal_rows
from harness.reporting.writers import ReportPaths, write_report

__all__ = [
    "TERMINAL_HEADERS",
    "ReportPaths",
    "jobs_dataframe",
    "render_terminal_rows",
    "write_report",
]
