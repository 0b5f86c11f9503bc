"""The report's energy columns, section and energy-vs-latency plot."""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import replace
from pathlib import Path

from harness.power.energy import EnergySummary
from harness.reporting import write_report
from harness.results.records import RunRecord


def _base_record() -> RunRecord:
    path = Path(__file__).parent / "fixtures" / "report" / "report_records.py"
    spec = importlib.util.spec_from_file_location("report_records_energy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    record: RunRecord = module.build_run_record()
    return record


def _measured(gross_mj: float) -> EnergySummary:
    return EnergySummary(
        source="odpm", scope="rails", method="counter", inferences=300, window_s=6.4,
        avg_power_w=2.5, gross_energy_j=gross_mj * 300 / 1000,
        gross_energy_per_inference_mj=gross_mj, net_energy_per_inference_mj=gross_mj * 0.4,
        inferences_per_joule=1000 / gross_mj, idle_power_w=1.5, idle_power_std_w=0.01,
        sample_rate_hz=9.9, update_period_s=0.1,
    )  # fmt: skip


def _no_source() -> EnergySummary:
    return EnergySummary(
        source="none", scope="none", method="none", inferences=300, window_s=6.4,
        avg_power_w=None, gross_energy_j=None, gross_energy_per_inference_mj=None,
        net_energy_per_inference_mj=None, inferences_per_joule=None, idle_power_w=None,
        idle_power_std_w=None, sample_rate_hz=None, update_period_s=None,
        quality_flags=("no power source on this device (probed: rapl, hwmon)",),
    )  # fmt: skip


def test_energy_columns_section_and_plot(tmp_path: Path) -> None:
    record = _base_record()
    ok = [j for j in record.jobs if j.status == "ok"]
    jobs = {j.spec.job_index: j for j in record.jobs}
    jobs[ok[0].spec.job_index] = replace(ok[0], energy=_measured(21.7))
    jobs[ok[1].spec.job_index] = replace(ok[1], energy=_no_source())
    record = replace(record, jobs=tuple(jobs[i] for i in sorted(jobs)))
    report = write_report(record, tmp_path / "r")

    rows = {int(r["job_index"]): r for r in csv.DictReader(report.results_csv.open())}
    measured = rows[ok[0].spec.job_index]
    assert float(measured["energy_per_inference_mj"]) == 21.7
    assert measured["power_source"] == "odpm"
    none_row = rows[ok[1].spec.job_index]
    assert none_row["power_source"] == "none" and none_row["energy_per_inference_mj"] == ""

    html = report.index_html.read_text()
    assert 'id="energy-table"' in html
    assert "21.7" in html and "no power source" in html
    assert "not measured" in html  # the jobs without power say so, no number
    assert any(p.name == "energy_vs_latency.png" for p in report.plots)


def test_a_run_without_power_says_so_and_draws_no_energy_plot(tmp_path: Path) -> None:
    report = write_report(_base_record(), tmp_path / "r")
    html = report.index_html.read_text()
    assert "Power was not measured in this run" in html
    assert 'id="energy-table"' not in html
    assert not any("energy" in p.name for p in report.plots)
