"""benchmark_model adapter: argv from settings, and recorded outputs parsed to exact numbers.

Every expected number below was read off the golden text file by eye (sources in
tests/golden/native/README.md), not produced by running the parser.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ConfigError, SchemaError
from harness.native import (
    NativeOutputError,
    build_benchmark_model_argv,
    parse_benchmark_model_output,
)
from harness.results.schema import ModelInfo, RunnerDocument, Settings, parse_runner_document

GOLDEN = Path(__file__).parent / "golden" / "native"
MODEL = ModelInfo(path="/data/local/tmp/harness/model.tflite", format="tflite")


def _text(name: str) -> str:
    return (GOLDEN / name).read_text()


def _doc(name_or_text: str, provider: str = "default") -> RunnerDocument:
    text = _text(name_or_text) if name_or_text.endswith(".txt") else name_or_text
    doc = parse_benchmark_model_output(text, model=MODEL, settings=Settings(provider=provider))
    # every document must survive the host's boundary check and keep the text verbatim
    parse_runner_document(doc.to_json_dict())
    assert doc.raw_output == text
    assert doc.producer.name == "benchmark_model"
    return doc


def _timing(doc: RunnerDocument) -> dict[str, Any]:
    """The timing as JSON, aggregates reduced to the statistics the tool printed (not null)."""
    timing: dict[str, Any] = doc.to_json_dict()["timing"]
    for key in ("aggregate_us", "warmup_aggregate_us"):
        if timing[key] is not None:
            timing[key] = {k: v for k, v in timing[key].items() if v is not None}
    return timing


# --- recorded outputs -------------------------------------------------------------------------


def test_sample_a_scientific_notation_and_count1_warmup() -> None:
    doc = _doc("bm_a_desktop_scientific.txt")
    t = _timing(doc)
    assert t["init_ms"] == 17.187
    assert t["first_inference_ms"] == 3512.391
    assert t["aggregate_us"] == {
        "count": 50,
        "first": 2990275.0,
        "last": 2913402.0,
        "min": 2727568.0,
        "max": 3189954.0,
        "avg": 2950340.0,  # printed as 2.95034e+06
        "std": 109798.0,
    }
    assert t["samples_kind"] == "aggregate_only"
    assert t["latencies_ns"] == [2990275000, 2913402000]
    assert t["latencies_ns_labels"] == ["first", "last"]
    # "count=1 curr=3512391": one warm-up run, known exactly
    assert t["warmup_latencies_ns"] == [3512391000]
    assert t["warmup_samples_kind"] == "per_run"
    memory = doc.to_json_dict()["memory"]
    assert memory["footprint_delta_init_mb"] == 4.21094
    assert memory["footprint_delta_overall_mb"] == 46.0859
    assert memory["peak_rss_kb"] is None  # a delta from the tool's start is not a peak RSS


def test_sample_b_info_prefix_percentiles_and_warmup_stat() -> None:
    t = _timing(_doc("bm_b_info_percentiles.txt"))
    assert t["init_ms"] == 119.515
    assert t["first_inference_ms"] == 87.112
    agg = t["aggregate_us"]
    assert agg["count"] == 1000
    assert agg["avg"] == 63743.2
    assert agg["std"] == 60716.0
    assert (agg["min"], agg["max"]) == (49088.0, 686105.0)
    assert (agg["p5"], agg["median"], agg["p95"]) == (49620.0, 51891.0, 68628.0)
    warm = t["warmup_aggregate_us"]
    assert (warm["count"], warm["avg"], warm["std"], warm["first"]) == (
        9,
        58147.4,
        11478.0,
        87112.0,
    )
    assert t["warmup_latencies_ns"] == [87112000, 51629000]
    assert t["warmup_latencies_ns_labels"] == ["first", "last"]


def test_sample_c_only_the_regular_stat_line_and_old_memory_line() -> None:
    doc = _doc("bm_c_adb_legacy_peak_memory.txt")
    t = _timing(doc)
    assert (t["init_ms"], t["first_inference_ms"]) == (16.242, 360.262)
    assert t["aggregate_us"]["count"] == 50
    assert t["aggregate_us"]["avg"] == 249684.0
    assert t["aggregate_us"]["std"] == 1442.0
    # the single Stat line is the regular one (its avg is Inference (avg)), not the warm-up
    assert t["warmup_aggregate_us"] == {"avg": 304586.0}
    assert t["warmup_latencies_ns"] == []
    memory = doc.to_json_dict()["memory"]
    assert memory["footprint_line"] == "Peak memory footprint"
    assert (memory["footprint_delta_init_mb"], memory["footprint_delta_overall_mb"]) == (
        4.92969,
        138.809,
    )


def test_sample_d_legacy_summary_is_parsed_but_cannot_make_a_document() -> None:
    # an average without the number of runs it averages is no result (schema v2 needs both)
    text = _text("bm_d_legacy_average_summary.txt")
    with pytest.raises(NativeOutputError, match="lacks the number of timed runs") as info:
        parse_benchmark_model_output(text, model=MODEL, settings=Settings())
    err = info.value
    assert isinstance(err, SchemaError)
    assert err.raw_output == text
    assert err.partial is not None
    assert err.partial.format == "tflite-legacy"
    assert err.partial.init_us == Decimal("38467")
    assert err.partial.warmup is not None and err.partial.warmup.avg_us == Decimal("83235")
    assert err.partial.regular is not None and err.partial.regular.avg_us == Decimal("79760.9")
    # the op profiler's "Timings (microseconds): count=50 ... avg=79732" is another measurement
    assert err.partial.regular.count is None


def test_litert_compiled_model_results_in_ms() -> None:
    t = _timing(_doc("bm_litert_compiled_model_1134.txt"))
    assert t["init_ms"] == 23744.73
    assert t["first_inference_ms"] == 7441.04
    assert t["aggregate_us"] == {
        "count": 10,
        "min": 7416400.0,
        "max": 7448860.0,
        "avg": 7430200.0,
        "std": 9920.0,
    }
    assert t["latencies_ns"] == [7416400000, 7448860000]
    assert t["latencies_ns_labels"] == ["min", "max"]
    assert t["warmup_latencies_ns"] == [7441040000]  # "(1 runs)": the one warm-up is the first
    assert t["signature"] == "prefill_1024"
    assert t["throughput_mb_per_s"] == 27.46


def test_litert_prefers_the_microsecond_stat_lines_to_the_rounded_ms_block() -> None:
    doc = _doc("bm_litert_with_stat_lines.txt")
    t = _timing(doc)
    assert t["init_ms"] == 5.757  # "Initialized session in 5.757ms." beats "5.76 ms"
    assert t["first_inference_ms"] == 2.125  # warm-up Stat first=2125 beats "2.12 ms"
    assert t["aggregate_us"]["count"] == 1054
    assert t["aggregate_us"]["avg"] == 947.132
    assert t["aggregate_us"]["std"] == 23.0
    assert t["aggregate_us"]["p95"] == 991.0
    assert t["warmup_aggregate_us"]["count"] == 526
    assert t["warmup_aggregate_us"]["avg"] == 949.861
    memory = doc.to_json_dict()["memory"]
    assert (memory["footprint_delta_init_mb"], memory["footprint_delta_overall_mb"]) == (4.06, 7.07)


def test_nnapi_full_delegation_and_tool_version() -> None:
    doc = _doc("bm_synap_nnapi_full_delegation.txt", provider="nnapi")
    assert doc.producer.version == "2.15.0"
    t = _timing(doc)
    assert (t["init_ms"], t["first_inference_ms"]) == (66.002, 637.079)
    assert (t["aggregate_us"]["count"], t["aggregate_us"]["avg"], t["aggregate_us"]["std"]) == (
        520,
        1885.74,
        870.0,
    )
    ex = doc.execution
    assert ex.providers_used == ["nnapi"]
    assert (ex.delegated_nodes, ex.total_nodes, ex.delegated_partitions) == (31, 31, 1)
    assert ex.fallback_to_cpu is False


def test_noise_line_inside_the_warmup_phase_is_ignored() -> None:
    doc = _doc("bm_synap_timvx_external_noise.txt")
    t = _timing(doc)
    assert (t["warmup_aggregate_us"]["count"], t["warmup_aggregate_us"]["avg"]) == (277, 1760.78)
    assert (t["aggregate_us"]["count"], t["aggregate_us"]["avg"]) == (876, 1096.48)
    assert t["first_inference_ms"] == 201.009
    assert doc.execution.nodes_by_provider == {"vx delegate": 31}


def test_one_run_line_with_percentiles_is_an_exact_sample() -> None:
    t = _timing(_doc("bm_cpu_count1_with_percentiles.txt"))
    assert t["warmup_latencies_ns"] == [670083000]
    assert t["warmup_samples_kind"] == "per_run"
    assert t["warmup_aggregate_us"]["median"] == 670083.0
    assert (t["aggregate_us"]["count"], t["aggregate_us"]["avg"], t["aggregate_us"]["p95"]) == (
        50,
        699438.0,
        1373207.0,
    )
    assert (t["init_ms"], t["first_inference_ms"]) == (102.32, 670.083)


def test_a_declining_delegate_is_fallback_only_for_the_one_requested() -> None:
    gpu = _doc("bm_gpu_nnapi_not_executed.txt", provider="gpu")
    assert gpu.execution.providers_used == ["gpu"]
    assert (gpu.execution.delegated_nodes, gpu.execution.total_nodes) == (49, 49)
    assert gpu.execution.fallback_to_cpu is False
    nnapi = _doc("bm_gpu_nnapi_not_executed.txt", provider="nnapi")
    assert nnapi.execution.fallback_to_cpu is True
    assert any("will not be executed by the delegate" in n for n in nnapi.execution.notes)
    t = _timing(gpu)
    assert t["init_ms"] == 5664.363
    assert t["warmup_latencies_ns"] == [328140000, 309932000]  # count=2: both runs known
    assert t["warmup_samples_kind"] == "per_run"


def test_logcat_threadtime_prefix_and_partial_delegation() -> None:
    doc = _doc("bm_logcat_partial_xnnpack.txt", provider="xnnpack")
    t = _timing(doc)
    assert (t["init_ms"], t["first_inference_ms"]) == (92.318, 235.158)
    assert (t["aggregate_us"]["count"], t["aggregate_us"]["avg"], t["aggregate_us"]["std"]) == (
        25,
        145528.0,
        13583.0,
    )
    assert (t["warmup_aggregate_us"]["count"], t["warmup_aggregate_us"]["avg"]) == (3, 211669.0)
    ex = doc.execution
    assert ex.nodes_by_provider == {"xnnpack": 539, "cpu": 9}
    assert (ex.delegated_nodes, ex.total_nodes, ex.delegated_partitions) == (539, 548, 19)
    assert ex.fallback_to_cpu is True  # XNNPACK was asked for, 9 nodes ran elsewhere
    assert (
        _doc("bm_logcat_partial_xnnpack.txt", provider="default").execution.fallback_to_cpu is False
    )


def test_logcat_with_one_stat_line_matches_it_to_the_regular_phase() -> None:
    t = _timing(_doc("bm_logcat_regular_stat_only.txt"))
    assert (t["aggregate_us"]["count"], t["aggregate_us"]["avg"]) == (25, 52970.0)
    assert t["warmup_aggregate_us"] == {"avg": 57237.2}
    assert t["first_inference_ms"] == 70.225


# --- traps on inputs built from the format strings in the reference ---------------------------


def test_logcat_brief_prefix_gives_the_same_numbers_as_plain_text() -> None:
    plain = _text("bm_c_adb_legacy_peak_memory.txt")
    wrapped = "".join(f"I/tflite  ( 4242): {line}\n" for line in plain.splitlines())
    assert _timing(_doc(wrapped))["aggregate_us"] == _timing(_doc(plain))["aggregate_us"]


def test_all_same_stat_line_gives_every_run() -> None:
    text = (
        "count=1 curr=1300\n"
        "count=5 curr=1200 (all same)\n"
        "Inference timings in us: Init: 10, First inference: 1300, Warmup (avg): 1300, Inference (avg): 1200\n"
    )
    t = _timing(_doc(text))
    assert t["latencies_ns"] == [1200000] * 5
    assert t["samples_kind"] == "per_run"
    assert t["latencies_ns_labels"] == []
    assert t["aggregate_us"]["std"] == 0.0


def test_peak_memory_monitor_and_memory_status_lines() -> None:
    text = _text("bm_b_info_percentiles.txt") + (
        "INFO: Overall peak memory footprint (MB) via periodic monitoring: 60.5\n"
        "INFO: Memory status at the end of exeution:\n"
        "INFO: - VmRSS              : 61 MB\n"
        "INFO: + RssAnnon           : 40 MB\n"
        "INFO: + RssFile + RssShmem : 21 MB\n"
    )
    memory = _doc(text).to_json_dict()["memory"]
    assert memory["peak_rss_kb"] == 61952  # 60.5 MB * 1024
    assert memory["peak_footprint_mb"] == 60.5
    assert (memory["vm_rss_mb"], memory["rss_anon_mb"], memory["rss_file_shmem_mb"]) == (
        61.0,
        40.0,
        21.0,
    )


def test_summary_without_a_stat_line_is_refused_not_guessed() -> None:
    # two real lines of the SyNAP page's elided caching example: no Stat line survives
    text = (
        "INFO: Replacing 31 node(s) with delegate (TfLiteNnapiDelegate) node, yielding 1 partitions.\n"
        "Inference timings in us: Init: 34075, First inference: 1599062, Warmup (avg): 1.59906e+06, "
        "Inference (avg): 1380.86\n"
    )
    with pytest.raises(NativeOutputError, match="lacks the number of timed runs") as info:
        parse_benchmark_model_output(text, model=MODEL, settings=Settings())
    assert info.value.raw_output == text
    partial = info.value.partial
    assert partial is not None and partial.regular is not None
    assert partial.regular.avg_us == Decimal("1380.86")
    assert partial.delegates[0].nodes == 31 and partial.delegates[0].total_nodes is None


@pytest.mark.parametrize(
    "text",
    [
        "Segmentation fault\n",
        "",
        # cut off before the summary: Stat lines alone do not say which phase they are
        "INFO: count=1 curr=637079\n\nINFO: count=520 first=2531 curr=2793 min=1171 max=9925 avg=1885.74 std=870\n",
    ],
)
def test_unknown_or_truncated_output_is_an_error_that_keeps_the_text(text: str) -> None:
    with pytest.raises(NativeOutputError, match="no timing summary") as info:
        parse_benchmark_model_output(text, model=MODEL, settings=Settings())
    assert info.value.raw_output == text


# --- argv ---------------------------------------------------------------------------------------


def test_argv_from_settings() -> None:
    argv = build_benchmark_model_argv(
        "/data/local/tmp/harness/bin/benchmark_model",
        "/data/local/tmp/harness/m.tflite",
        threads=4,
        provider="xnnpack",
        warmup_runs=2,
        min_runs=50,
        min_duration_s=1.5,
        max_duration_s=30,
        shapes={"input": [1, 224, 224, 3], "mask": [1, 10]},
        extra_args=["--enable_op_profiling=true"],
    )
    assert argv == [
        "/data/local/tmp/harness/bin/benchmark_model",
        "--graph=/data/local/tmp/harness/m.tflite",
        "--num_threads=4",
        "--use_xnnpack=true",
        "--warmup_runs=2",
        "--num_runs=50",
        "--min_secs=1.5",
        "--max_secs=30",
        "--input_layer=input,mask",
        "--input_layer_shape=1,224,224,3:1,10",
        "--enable_op_profiling=true",
    ]


@pytest.mark.parametrize(
    ("provider", "flags"),
    [
        ("default", []),
        ("none", ["--use_xnnpack=false"]),
        ("gpu", ["--use_gpu=true"]),
        ("nnapi", ["--use_nnapi=true"]),
    ],
)
def test_argv_provider_flags(provider: str, flags: list[str]) -> None:
    argv = build_benchmark_model_argv(
        "bm",
        "m.tflite",
        threads=None,
        provider=provider,
        warmup_runs=1,
        min_runs=10,
        min_duration_s=0,
        max_duration_s=0,
    )
    assert argv == [
        "bm",
        "--graph=m.tflite",
        *flags,
        "--warmup_runs=1",
        "--num_runs=10",
        "--min_secs=0",
    ]


def test_peak_memory_monitor_only_when_asked() -> None:
    common: dict[str, Any] = dict(
        threads=1, provider="default", warmup_runs=1, min_runs=1, min_duration_s=0, max_duration_s=0
    )
    assert "--report_peak_memory_footprint=true" not in build_benchmark_model_argv(
        "bm", "m", **common
    )
    assert build_benchmark_model_argv("bm", "m", report_peak_memory=True, **common)[-1] == (
        "--report_peak_memory_footprint=true"
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"provider": "tpu"}, "provider 'tpu'"),
        ({"threads": 0}, "threads"),
        ({"min_runs": 0}, "min_runs"),
        ({"min_duration_s": 10.0, "max_duration_s": 5.0}, "below min_duration_s"),
        ({"shapes": {"a,b": [1]}}, "input name"),
    ],
)
def test_argv_refuses_what_the_tool_cannot_take(overrides: dict[str, Any], message: str) -> None:
    kwargs: dict[str, Any] = dict(
        threads=1, provider="default", warmup_runs=1, min_runs=1, min_duration_s=0, max_duration_s=0
    )
    kwargs.update(overrides)
    with pytest.raises(ConfigError, match=message):
        build_benchmark_model_argv("bm", "m", **kwargs)
