"""Aggregate-only results (native tools) summarised, judged and shown without inventing numbers.

Every expected number is read off the recorded tool output named in the test, by eye.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.analysis.statistics import summarize_aggregate
from harness.native import parse_benchmark_model_output, parse_ort_perf_test_output
from harness.reporting.tables import display_rows, jobs_dataframe
from harness.results.records import JobSettings, JobSpec, ModelArtifact, RunRecord, Verdict
from harness.results.schema import AggregateStats, ModelInfo, RunnerDocument, Settings
from harness.results.summarize import job_result_from_document

GOLDEN = Path(__file__).parent / "golden" / "native"
SHA = "ab" * 32


def _spec(fmt: str, *, min_runs: int = 1, min_duration_s: float = 0.0) -> JobSpec:
    model = ModelArtifact("m", f"/models/m.{fmt}", fmt, SHA, 1000)
    return JobSpec(0, model, "phone", JobSettings(4, "default", 1, min_runs, min_duration_s, 60.0))


def _bm(name: str) -> RunnerDocument:
    model = ModelInfo(path="/d/m.tflite", format="tflite", sha256=SHA)
    return parse_benchmark_model_output(
        (GOLDEN / name).read_text(), model=model, settings=Settings()
    )


def _ort(text: str) -> RunnerDocument:
    model = ModelInfo(path="/d/m.onnx", format="onnx", sha256=SHA)
    return parse_ort_perf_test_output(text, model=model, settings=Settings(provider="cpu"))


def test_summary_of_benchmark_model_stat_line() -> None:
    # count=1000 first=52162 curr=49785 min=49088 max=686105 avg=63743.2 std=60716
    #   p5=49620 median=51891 p95=68628
    job = job_result_from_document(_spec("tflite", min_runs=1000), _bm("bm_b_info_percentiles.txt"))
    lat = job.latency
    assert lat is not None
    assert (lat.count, lat.mean_ms, lat.min_ms, lat.max_ms, lat.median_ms) == (
        1000,
        63.7432,
        49.088,
        686.105,
        51.891,
    )
    # the tool's population std (divides by n) as the sample std the harness reports
    assert lat.std_ms == pytest.approx(60.716 * math.sqrt(1000 / 999), rel=1e-12)
    assert math.isnan(lat.p90_ms) and math.isnan(lat.p99_ms)  # printed p5/p95 only
    assert (lat.median_ci_low_ms, lat.median_ci_high_ms) == (None, None)
    assert lat.total_duration_s == pytest.approx(63.7432)  # 1000 runs x 63.7432 ms
    assert lat.throughput_ips == pytest.approx(1000 / 63.7432)
    assert job.samples_ms == ()  # no per-run samples: the labelled first/last stay in the document
    assert (job.init_ms, job.first_inference_ms) == (119.515, 87.112)
    assert job.validity.verdict is Verdict.VALID
    assert job.validity.warnings[:2] == (
        "aggregate statistics from benchmark_model: no per-run samples",
        "native tool printed no p90/p99",
    )
    assert any(w.startswith("unstable: cv=95.3%") for w in job.validity.warnings)  # std ~ mean


def test_summary_of_ort_percentiles_without_std() -> None:
    # Runs:100 Min 0.00183404 s, Max 0.00190312 s, P50 0.00185674 s, P90 0.00187215 s,
    # P99 0.00190312 s; Average inference time cost: 1.85739 ms; no std printed
    job = job_result_from_document(
        _spec("onnx", min_runs=100), _ort((GOLDEN / "ort_a_current_stats.txt").read_text())
    )
    lat = job.latency
    assert lat is not None
    assert (lat.count, lat.mean_ms, lat.median_ms, lat.p90_ms, lat.p99_ms) == (
        100,
        1.85739,
        1.85674,
        1.87215,
        1.90312,
    )
    assert (lat.min_ms, lat.max_ms) == (1.83404, 1.90312)
    assert math.isnan(lat.std_ms) and math.isnan(lat.cv)
    assert "native tool printed no std: stability (cv) not checked" in job.validity.warnings
    assert "native tool printed no median" not in job.validity.warnings
    assert job.validity.verdict is Verdict.VALID


def test_no_median_printed_is_nan_with_a_warning_and_a_dash_in_the_report() -> None:
    # LiteRT's CompiledModel block: avg/min/max/std in ms, no percentiles
    job = job_result_from_document(
        _spec("tflite", min_runs=10), _bm("bm_litert_compiled_model_1134.txt")
    )
    lat = job.latency
    assert lat is not None
    assert (lat.count, lat.mean_ms, lat.min_ms, lat.max_ms) == (10, 7430.2, 7416.4, 7448.86)
    assert math.isnan(lat.median_ms)
    assert "native tool printed no median" in job.validity.warnings
    record = RunRecord("r", "2026-11-30T15:00:00+00:00", "c", "0.1.0", "h", (job,))
    [row] = display_rows(record)
    assert row["median_ms"] == "–" and row["p90_ms"] == "–"
    assert row["mean_std_ms"].startswith("7430 ± ")
    frame = jobs_dataframe(record)
    assert frame["samples"].tolist() == [10] and math.isnan(frame["median_ms"].tolist()[0])


def test_count_and_duration_rules_use_the_tools_count_and_average() -> None:
    doc = _ort((GOLDEN / "ort_a_current_stats.txt").read_text())  # 100 runs x 1.85739 ms
    too_few = job_result_from_document(_spec("onnx", min_runs=101), doc)
    assert too_few.validity.verdict is Verdict.INVALID
    assert "too few samples: 100 < min_runs 101" in too_few.validity.reasons
    too_short = job_result_from_document(_spec("onnx", min_runs=100, min_duration_s=1.0), doc)
    assert too_short.validity.verdict is Verdict.INVALID
    assert any(r.startswith("timed window too short: 0.186 s") for r in too_short.validity.reasons)
    long_enough = job_result_from_document(_spec("onnx", min_runs=100, min_duration_s=0.18), doc)
    assert long_enough.validity.verdict is Verdict.VALID


def test_aggregate_without_a_count_or_average_is_refused() -> None:
    with pytest.raises(ValueError, match="positive count and an average"):
        summarize_aggregate(AggregateStats(avg=1.0))
    with pytest.raises(ValueError, match="positive count and an average"):
        summarize_aggregate(AggregateStats(count=5))


def test_population_std_of_one_run_is_zero_and_unprinted_values_are_nan() -> None:
    one = summarize_aggregate(AggregateStats(count=1, avg=2500.0, std=0.0), population_std=True)
    assert (one.count, one.mean_ms, one.std_ms, one.cv) == (1, 2.5, 0.0, 0.0)
    assert all(math.isnan(v) for v in (one.min_ms, one.max_ms, one.median_ms, one.p90_ms))
