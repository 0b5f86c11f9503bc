"""The report of a run: files, HTML content and escaping, plots, CSV/Markdown/JSON agreement."""

from __future__ import annotations

import base64
import csv
import importlib.util
import json
import math
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from harness.errors import ReportError
from harness.reporting import TERMINAL_HEADERS, jobs_dataframe, render_terminal_rows, write_report
from harness.reporting.plots import needs_log_scale, render_plots
from harness.reporting.tables import COLUMNS, fmt_ms
from harness.reporting.writers import ReportPaths
from harness.results.records import JobResult, RunRecord
from harness.results.schema import parse_runner_document


def _fixtures() -> ModuleType:
    path = Path(__file__).parent / "fixtures" / "report" / "report_records.py"
    spec = importlib.util.spec_from_file_location("report_records", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FIX = _fixtures()


@pytest.fixture(scope="module")
def record() -> RunRecord:
    return FIX.build_run_record()


@pytest.fixture(scope="module")
def report(record: RunRecord, tmp_path_factory: pytest.TempPathFactory) -> ReportPaths:
    return write_report(record, tmp_path_factory.mktemp("reports") / record.run_id)


class _Page(HTMLParser):
    """Collects tags, attributes, all text, and the cells of each results-table row."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.rows: dict[str, list[str]] = {}
        self._row: str | None = None
        self._in_results = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        self.attrs.append((tag, a))
        if tag == "table":
            self._in_results = a.get("id") == "results-table"
        if tag == "tr" and self._in_results and (a.get("id") or "").startswith("job-"):
            self._row = str(a["id"])[4:]
            self.rows[self._row] = []
        if tag == "td" and self._row is not None:
            self.rows[self._row].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        if tag == "table":
            self._in_results = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._row is not None and self.rows[self._row]:
            self.rows[self._row][-1] += " " + data


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    page.close()
    return page


def _job(record: RunRecord, index: int) -> JobResult:
    return next(j for j in record.jobs if j.spec.job_index == index)


# --- files ------------------------------------------------------------------------------------


def test_write_report_writes_every_file(report: ReportPaths, record: RunRecord) -> None:
    for path in (
        report.index_html,
        report.results_csv,
        report.samples_csv,
        report.summary_md,
        report.results_json,
    ):
        assert path.is_file() and path.stat().st_size > 0, path
        assert path.parent == report.out_dir
    assert [p.name for p in report.plots] == [
        "latency_distribution.png",
        "latency_over_runs.png",
        "size_vs_latency.png",
    ]
    assert not list(report.out_dir.rglob(".*.tmp")), "temporary files left behind"


# --- HTML -------------------------------------------------------------------------------------


def test_html_names_every_model_verdict_and_error(report: ReportPaths, record: RunRecord) -> None:
    page = _parse(report.index_html.read_text(encoding="utf-8"))
    text = " ".join(page.text)
    for job in record.jobs:
        assert job.spec.model.name in text
        assert job.spec.device_name in text
    assert set(page.rows) == {str(j.spec.job_index) for j in record.jobs}
    verdicts = {i: row[-1].split()[0] for i, row in page.rows.items()}
    assert verdicts == {
        "0": "VALID",
        "1": "VALID",
        "2": "VALID",
        "3": "INVALID",
        "4": "VALID",
        "5": "FAILED",
    }
    failed = _job(record, 5)
    assert failed.error and failed.error in " ".join(page.rows["5"])
    for reason in _job(record, 3).validity.reasons:
        assert reason in page.rows["3"][-1]
    assert _job(record, 1).validity.warnings[0] in page.rows["1"][-1]
    # The fall-back badge is on the fallback job's row and only there.
    assert [i for i, row in page.rows.items() if "fell back to CPU" in " ".join(row[:5])] == ["4"]
    assert "Intel(R) Xeon(R) CPU @ 2.20GHz" in text and "ondemand" in text and "61.3 °C" in text
    assert record.command in text and record.run_id in text


def test_html_escapes_a_hostile_model_name(report: ReportPaths) -> None:
    html = report.index_html.read_text(encoding="utf-8")
    page = _parse(html)
    assert "script" not in page.tags, "a model name became a <script> element"
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(" in html
    assert FIX.SCRIPT_MODEL in page.rows["4"][1]  # the text survives, as text


def test_html_is_self_contained(report: ReportPaths) -> None:
    page = _parse(report.index_html.read_text(encoding="utf-8"))
    assert "link" not in page.tags
    images = [a for tag, a in page.attrs if tag == "img"]
    assert len(images) == len(report.plots)
    for tag, attrs in page.attrs:
        for key in ("src", "href"):
            value = attrs.get(key) or ""
            assert not re.match(r"(https?:)?//", value), f"<{tag} {key}={value[:60]}> is external"
    for img, plot_file in zip(images, report.plots, strict=True):
        src = img["src"] or ""
        assert src.startswith("data:image/png;base64,")
        embedded = base64.b64decode(src.split(",", 1)[1])
        assert embedded == plot_file.read_bytes()


def test_microsecond_medians_are_not_printed_as_zero(
    report: ReportPaths, record: RunRecord
) -> None:
    tiny = _job(record, 2)
    assert tiny.latency is not None and tiny.latency.median_ms < 0.1
    page = _parse(report.index_html.read_text(encoding="utf-8"))
    median_cell = page.rows["2"][5]  # #, model, device, threads, provider, median
    shown = float(median_cell.split()[0])
    assert shown > 0
    assert math.isclose(shown, tiny.latency.median_ms, rel_tol=0.005)
    md_row = next(
        line for line in report.summary_md.read_text().splitlines() if line.startswith("| 2 |")
    )
    md_median = float(md_row.split("|")[7])
    assert math.isclose(md_median, tiny.latency.median_ms, rel_tol=0.005)
    terminal = render_terminal_rows(record)[2]
    assert math.isclose(float(terminal[6].split()[0]), tiny.latency.median_ms, rel_tol=0.005)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (21.4250875, "21.4"),
        (0.0123456, "0.0123"),
        (1234.6, "1235"),
        (0.09996, "0.100"),
        (0.0000123, "0.0000123"),
        (5.0, "5.00"),
        (None, "–"),
        (float("nan"), "–"),
    ],
)
def test_fmt_ms_keeps_three_significant_digits(value: float | None, text: str) -> None:
    assert fmt_ms(value) == text


def test_fmt_ms_is_close_over_nine_decades() -> None:
    for x in np.logspace(-6, 4, 97):
        text = fmt_ms(float(x))
        assert "e" not in text.lower()
        assert abs(float(text) - x) / x < 0.005, (x, text)


# --- plots ------------------------------------------------------------------------------------


def test_plot_pngs_decode_and_are_not_blank(report: ReportPaths) -> None:
    for path in report.plots:
        with Image.open(path) as img:
            assert img.format == "PNG"
            assert img.width >= 800 and img.height >= 300
            colours = img.convert("RGB").getcolors(maxcolors=1 << 24) or []
        assert len(colours) > 50, f"{path.name} looks blank"


def test_plots_are_deterministic(record: RunRecord) -> None:
    first = [(p.name, p.png) for p in render_plots(record)]
    second = [(p.name, p.png) for p in render_plots(record)]
    assert first == second


def test_single_model_run_has_no_size_scatter(record: RunRecord) -> None:
    one = replace(record, jobs=(_job(record, 0),))
    assert [p.name for p in render_plots(one)] == ["latency_distribution", "latency_over_runs"]


def test_log_scale_only_when_medians_differ_a_lot() -> None:
    assert needs_log_scale([0.0123, 21.4])
    assert not needs_log_scale([9.8, 21.4])
    assert not needs_log_scale([5.0])


# --- CSV / Markdown / JSON ----------------------------------------------------------------------


def test_results_csv_matches_the_records(report: ReportPaths, record: RunRecord) -> None:
    with report.results_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == COLUMNS
    assert [int(r["job_index"]) for r in rows] == sorted(j.spec.job_index for j in record.jobs)
    for row in rows:
        job = _job(record, int(row["job_index"]))
        assert row["model"] == job.spec.model.name
        assert int(row["size_bytes"]) == job.spec.model.size_bytes
        assert row["verdict"] == job.validity.verdict.value
        assert row["status"] == job.status
        assert row["fallback_to_cpu"] == str(job.fallback_to_cpu)
        if job.latency is None:
            assert row["median_ms"] == row["p90_ms"] == row["peak_memory_kb"] == ""
            assert row["error"] == job.error
            continue
        assert float(row["median_ms"]) == job.latency.median_ms
        assert float(row["p90_ms"]) == job.latency.p90_ms
        assert float(row["p99_ms"]) == job.latency.p99_ms
        assert float(row["median_ci_low_ms"]) == job.latency.median_ci_low_ms
        assert float(row["init_ms"]) == job.init_ms
        assert int(row["peak_memory_kb"]) == job.peak_memory_kb
        assert int(row["samples"]) == len(job.samples_ms) == job.latency.count
        if job.accuracy is None:
            assert row["accuracy"] == ""
        else:
            assert float(row["accuracy"]) == job.accuracy
        assert row["reasons"] == "; ".join(job.validity.reasons)


def test_jobs_dataframe_keeps_integer_columns(record: RunRecord) -> None:
    frame = jobs_dataframe(record)
    assert len(frame) == len(record.jobs)
    assert str(frame["peak_memory_kb"].dtype) == "Int64"
    assert frame["peak_memory_kb"].isna().tolist() == [
        j.peak_memory_kb is None for j in record.jobs
    ]


def test_samples_csv_holds_every_sample_in_order(report: ReportPaths, record: RunRecord) -> None:
    with report.samples_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0].keys()) == ["job_index", "seq", "latency_ms"]
    assert len(rows) == sum(len(j.samples_ms) for j in record.jobs)
    for job in record.jobs:
        mine = [r for r in rows if int(r["job_index"]) == job.spec.job_index]
        assert [int(r["seq"]) for r in mine] == list(range(len(job.samples_ms)))
        assert tuple(float(r["latency_ms"]) for r in mine) == job.samples_ms


def test_summary_markdown_table_and_verdict_lines(report: ReportPaths, record: RunRecord) -> None:
    lines = report.summary_md.read_text(encoding="utf-8").splitlines()
    table = [line for line in lines if line.startswith("|")]
    assert len(table) == 2 + len(record.jobs)
    assert re.fullmatch(r"\|(-{3}:?\|)+|\|((---|---:)\|)+", table[1])
    widths = {len(re.split(r"(?<!\\)\|", line)) for line in table}
    assert len(widths) == 1, "rows have different cell counts"
    hostile = next(line for line in table if line.startswith("| 4 |"))
    assert "&lt;script&gt;" in hostile and "<script>" not in hostile
    assert "fell back to CPU" in hostile
    verdicts = [line for line in lines if line.startswith("- job ")]
    assert len(verdicts) == len(record.jobs)
    assert "**FAILED**" in verdicts[5] and "TFLite_Detection_PostProcess" in verdicts[5]
    assert "**INVALID**" in verdicts[3] and "coefficient of variation" in verdicts[3]
    assert "4 valid, 1 invalid, 1 failed of 6 jobs." in lines


def test_results_json_keeps_every_raw_document(report: ReportPaths, record: RunRecord) -> None:
    data = json.loads(report.results_json.read_text(encoding="utf-8"))
    assert data["schema"] == "harness.report" and data["schema_version"] == 1
    run = data["run"]
    assert run["run_id"] == record.run_id
    assert len(run["jobs"]) == len(record.jobs)
    for stored, job in zip(run["jobs"], record.jobs, strict=True):
        assert stored["raw_document"] == job.raw_document
        assert stored["validity"]["verdict"] == job.validity.verdict.value
        assert stored["samples_ms"] == list(job.samples_ms)
        parse_runner_document(stored["raw_document"], origin="results.json")  # still validates


# --- terminal rows ------------------------------------------------------------------------------


def test_terminal_rows(record: RunRecord) -> None:
    rows = render_terminal_rows(record)
    assert len(rows) == len(record.jobs)
    assert all(len(r) == len(TERMINAL_HEADERS) and all(isinstance(c, str) for c in r) for r in rows)
    assert rows[5][-1].startswith("FAILED: unsupported_op")
    assert rows[3][-1].startswith("INVALID: timer overhead")
    assert "fell back to CPU" in rows[4][5]
    assert [r[1] for r in rows] == [j.spec.model.name for j in record.jobs]


# --- edge cases ---------------------------------------------------------------------------------


def test_run_without_jobs_still_renders(record: RunRecord, tmp_path: Path) -> None:
    paths = write_report(replace(record, jobs=()), tmp_path / "empty")
    assert paths.plots == ()
    assert "This run has no jobs." in paths.index_html.read_text(encoding="utf-8")
    assert "This run has no jobs." in paths.summary_md.read_text(encoding="utf-8")
    assert paths.results_csv.read_text().strip() == ",".join(COLUMNS)


def test_run_where_every_job_failed_shows_the_errors(record: RunRecord, tmp_path: Path) -> None:
    failed = _job(record, 5)
    paths = write_report(replace(record, jobs=(failed,)), tmp_path / "failed")
    assert paths.plots == ()
    page = _parse(paths.index_html.read_text(encoding="utf-8"))
    assert failed.error is not None
    assert failed.error in " ".join(page.rows["5"])


def test_unwritable_destination_raises_report_error(record: RunRecord, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the report directory should go")
    with pytest.raises(ReportError, match="cannot create report directory"):
        write_report(record, blocker / "run")


def test_markdown_and_html_agree_on_numbers(report: ReportPaths) -> None:
    page = _parse(report.index_html.read_text(encoding="utf-8"))
    md = {
        line.split("|")[1].strip(): line
        for line in report.summary_md.read_text().splitlines()
        if re.match(r"\| \d+ \|", line)
    }
    for index, cells in page.rows.items():
        if cells[-1].split()[0] == "FAILED":
            continue
        html_median = cells[5].split()[0]
        md_median = md[index].split("|")[7].strip()
        assert html_median == md_median


def test_missing_values_never_show_as_nan(report: ReportPaths) -> None:
    for path in (report.index_html, report.summary_md, report.results_csv, report.results_json):
        text = path.read_text(encoding="utf-8")
        assert not re.findall(r"\b(nan|<NA>|None)\b", text, flags=re.IGNORECASE), path.name


def test_device_state_from_another_producer_renders(record: RunRecord, tmp_path: Path) -> None:
    odd_state = {
        "battery_level_pct": 87,
        "thermal_zones": [{"name": "tz0"}, {"name": "skin", "type": "skin", "temp_c": 33.5}],
        "cur_freq_khz": {"cpu0": "unknown"},
    }
    job = replace(_job(record, 0), device_state=odd_state)
    paths = write_report(replace(record, jobs=(job,)), tmp_path / "odd")
    text = " ".join(_parse(paths.index_html.read_text(encoding="utf-8")).text)
    assert "battery_level_pct" in text and "87" in text
    assert "33.5 °C" in text
    assert "unknown (cpu0)" in text
