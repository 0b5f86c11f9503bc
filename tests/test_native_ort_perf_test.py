"""onnxruntime_perf_test adapter: argv from settings, recorded outputs parsed to exact numbers.

Expected numbers are read off the golden files by eye (sources in tests/golden/native/README.md).
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError
from harness.native import NativeOutputError, build_ort_perf_test_argv, parse_ort_perf_test_output
from harness.results.schema import ModelInfo, RunnerDocument, Settings, parse_runner_document

GOLDEN = Path(__file__).parent / "golden" / "native"
MODEL = ModelInfo(path="/data/local/tmp/harness/model.onnx", format="onnx")


def _text(name: str) -> str:
    return (GOLDEN / name).read_text()


def _doc(text: str) -> RunnerDocument:
    doc = parse_ort_perf_test_output(
        text, model=MODEL, settings=Settings(provider="cpu"), tool_version="1.17.0"
    )
    parse_runner_document(doc.to_json_dict())
    assert doc.raw_output == text
    assert (doc.producer.name, doc.producer.version) == ("onnxruntime_perf_test", "1.17.0")
    return doc


def _printed(aggregate: dict[str, Any]) -> dict[str, Any]:
    """The statistics the tool printed (the schema writes the others as null)."""
    return {k: v for k, v in aggregate.items() if v is not None}


def test_current_format_mixed_units_and_duplicated_stat_lines() -> None:
    doc = _doc(_text("ort_a_current_stats.txt"))
    t: dict[str, Any] = doc.to_json_dict()["timing"]
    assert t["init_ms"] == 10.2016  # 0.0102016 s
    assert t["first_inference_ms"] == 2.0
    assert t["first_inference_resolution_ms"] == 1.0  # the tool truncates to whole ms
    assert _printed(t["aggregate_us"]) == {
        "count": 100,
        "min": 1834.04,
        "max": 1903.12,
        "avg": 1857.39,  # 1.85739 ms
        "median": 1856.74,  # P50 0.00185674 s
        "p90": 1872.15,
        "p95": 1873.93,
        "p99": 1903.12,
        "p999": 1903.12,
    }
    assert t["latencies_ns"] == [1834040, 1903120]
    assert (t["samples_kind"], t["latencies_ns_labels"]) == ("aggregate_only", ["min", "max"])
    assert t["warmup_latencies_ns"] == []  # a truncated ms value is not a sample
    assert (t["inferences_per_s"], t["avg_cpu_usage_percent"]) == (538.184, 96.0)
    assert (t["total_inference_time_s"], t["total_run_time_s"]) == (0.185739, 0.18581)
    memory = doc.to_json_dict()["memory"]
    assert memory["peak_working_set_bytes"] == 36696064
    assert memory["peak_rss_kb"] == 35836
    assert doc.execution.providers_used == []  # the tool does not say


def test_old_format_makes_an_aggregate_document_without_session_and_first_inference() -> None:
    text = _text("ort_b_old_format.txt")
    doc = _doc(text)
    t = doc.to_json_dict()["timing"]
    assert (t["init_ms"], t["first_inference_ms"]) == (None, None)  # not printed: not invented
    assert _printed(t["aggregate_us"]) == {
        "count": 1000,  # Total iterations:1000
        "avg": 58805.3,  # Average time cost:58.8053 ms
        "min": 55977.7,  # Min Latency is 0.0559777 sec
        "max": 62347.2,
        "median": 58710.8,
        "p90": 59984.5,
        "p95": 60567.6,
        "p99": 61951.7,
        "p999": 62347.2,
    }
    assert (t["samples_kind"], t["latencies_ns_labels"]) == ("aggregate_only", ["min", "max"])
    assert t["latencies_ns"] == [55977700, 62347200]
    assert t["timer_overhead_ns"] is None


def test_2020_format_without_space_after_colon() -> None:
    text = _text("ort_2020_no_space_fragment.txt")
    # the fragment has no request count: its average alone is not a result
    with pytest.raises(NativeOutputError, match="number of timed runs") as info:
        parse_ort_perf_test_output(text, model=MODEL, settings=Settings())
    partial = info.value.partial
    assert partial is not None and partial.regular is not None
    assert partial.init_us == Decimal("1841490")
    assert partial.regular.avg_us == Decimal("734606")
    assert partial.timing_extra["total_inference_time_s"] == 0.734606


def test_spacemit_fork_total_cpu_usage_and_trailing_spaces() -> None:
    doc = _doc(_text("ort_spacemit_total_cpu.txt"))
    t = doc.to_json_dict()["timing"]
    assert (t["init_ms"], t["first_inference_ms"]) == (2747.16, 85.0)
    assert (t["aggregate_us"]["count"], t["aggregate_us"]["avg"]) == (100, 62293.5)
    assert t["total_cpu_usage_percent"] == 382.0
    assert t["inferences_per_s"] == 16.0476
    assert t["latencies_ns"] == [52942200, 91285700]
    assert doc.to_json_dict()["memory"]["peak_working_set_bytes"] == 114634752
    assert any("SpaceMITExecutionProvider" in n for n in doc.execution.notes)


def test_spacemit_cost_total_line_and_log_lines_mixed_in() -> None:
    doc = _doc(_text("ort_spacemit_cost_total.txt"))
    t = doc.to_json_dict()["timing"]
    assert t["aggregate_us"]["avg"] == 7270.205  # "Average inference time cost total: 7.270205 ms"
    assert t["aggregate_us"]["count"] == 10
    assert t["aggregate_us"]["median"] == 7277.87
    assert (t["init_ms"], t["first_inference_ms"], t["avg_cpu_usage_percent"]) == (
        169.475,
        109.0,
        62.0,
    )
    assert doc.to_json_dict()["memory"]["peak_rss_kb"] == 89196  # 91336704 bytes / 1024


def test_without_the_stats_block_the_document_has_no_single_run() -> None:
    # without -s the tool prints count and average only: an aggregate document, no latencies
    text = "".join(_text("ort_a_current_stats.txt").splitlines(keepends=True)[:9])
    t = _doc(text).to_json_dict()["timing"]
    assert _printed(t["aggregate_us"]) == {"count": 100, "avg": 1857.39}
    assert (t["samples_kind"], t["latencies_ns"], t["latencies_ns_labels"]) == (
        "aggregate_only",
        [],
        [],
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[E:onnxruntime:, inference_session.cc:1533 Initialize] Load model failed\n",
        "Total inference requests: 100\n",
    ],
)
def test_unknown_format_is_an_error_that_keeps_the_text(text: str) -> None:
    with pytest.raises(NativeOutputError, match="no 'Average inference time cost") as info:
        parse_ort_perf_test_output(text, model=MODEL, settings=Settings())
    assert info.value.raw_output == text


# --- argv ---------------------------------------------------------------------------------------


def test_argv_times_mode() -> None:
    argv = build_ort_perf_test_argv(
        "/data/local/tmp/harness/bin/onnxruntime_perf_test",
        "/data/local/tmp/harness/m.onnx",
        threads=4,
        provider="xnnpack",
        warmup_runs=1,
        min_runs=200,
        min_duration_s=0,
        seed=7,
        free_dimensions={"batch": 1},
    )
    assert argv == [
        "/data/local/tmp/harness/bin/onnxruntime_perf_test",
        "-e", "xnnpack",
        "-m", "times", "-r", "200",
        "-x", "4",
        "-S", "7",
        "-f", "batch:1",
        "-I",
        "-s",
        "/data/local/tmp/harness/m.onnx",
    ]  # fmt: skip


def test_argv_duration_mode_rounds_up_to_whole_seconds() -> None:
    argv = build_ort_perf_test_argv(
        "ort",
        "m.onnx",
        threads=None,
        provider="default",
        warmup_runs=0,
        min_runs=1,
        min_duration_s=2.5,
    )
    assert argv == ["ort", "-e", "cpu", "-m", "duration", "-t", "3", "-I", "-s", "m.onnx"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"provider": "gpu"}, "no execution provider 'gpu'"),
        ({"warmup_runs": 5}, "exactly one warm-up"),
        ({"shapes": {"x": [1, 3]}}, "cannot set input shapes"),
        ({"min_runs": 50, "min_duration_s": 1.0}, "not both"),
        ({"threads": 0}, "threads"),
    ],
)
def test_argv_refuses_what_the_tool_cannot_honour(overrides: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = dict(
        threads=1, provider="cpu", warmup_runs=1, min_runs=10, min_duration_s=0
    )
    kwargs.update(overrides)
    with pytest.raises(ConfigError, match=message):
        build_ort_perf_test_argv("ort", "m.onnx", **kwargs)
