"""VALID/INVALID verdicts: one test per reason and per warning, on the golden runner document."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.analysis.statistics import summarize_latencies
from harness.analysis.validity import judge_validity
from harness.results.records import LatencySummary, Validity, Verdict
from harness.results.schema import RunnerDocument, parse_runner_document

GOLDEN = Path(__file__).parent / "golden"


def _golden(name: str = "runner_doc_v1.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / name).read_text())
    return data


def _judge(
    data: dict[str, Any], *, min_runs: int = 30, min_duration_s: float = 0.1, **kwargs: Any
) -> Validity:
    doc = parse_runner_document(data)
    return judge_validity(
        doc, _summary(doc), min_runs=min_runs, min_duration_s=min_duration_s, **kwargs
    )


def _summary(doc: RunnerDocument) -> LatencySummary | None:
    if doc.timing is None:
        return None
    return summarize_latencies([ns / 1e6 for ns in doc.timing.latencies_ns])


def test_golden_document_is_valid_without_warnings() -> None:
    # 40 samples around 3.15 ms, 0.127 s in total, 81 ns timer overhead, 46 °C
    validity = _judge(_golden())
    assert validity == Validity(Verdict.VALID)


def test_runner_error_is_invalid_with_its_message() -> None:
    validity = _judge(_golden("runner_doc_v1_error.json"))
    assert validity.verdict is Verdict.INVALID
    assert validity.reasons == (
        "runner error [unsupported_op] (op TFLite_Detection_PostProcess): "
        "Encountered unresolved custom op: TFLite_Detection_PostProcess.",
    )


def test_fewer_samples_than_min_runs_is_invalid() -> None:
    validity = _judge(_golden(), min_runs=50)
    assert validity.verdict is Verdict.INVALID
    assert validity.reasons == ("too few samples: 40 < min_runs 50",)


def test_missing_summary_is_invalid() -> None:
    doc = parse_runner_document(_golden())
    validity = judge_validity(doc, None, min_runs=1, min_duration_s=0.0)
    assert validity.verdict is Verdict.INVALID
    assert "no latency summary" in validity.reasons[0]


def test_short_window_is_invalid_beyond_the_tolerance() -> None:
    # the samples sum to 0.126763 s
    short = _judge(_golden(), min_duration_s=0.2)
    assert short.verdict is Verdict.INVALID
    assert short.reasons == ("timed window too short: 0.127 s < min_duration 0.200 s",)
    # 0.13 s * (1 - 5 %) = 0.1235 s <= 0.1268 s: within the tolerance, still valid
    assert _judge(_golden(), min_duration_s=0.13).verdict is Verdict.VALID


def test_recorded_window_counts_the_loop_time_the_samples_leave_out() -> None:
    # a tiny model: 40 runs of 1 ms (0.040 s of samples) in a 0.110 s window, the rest spent
    # binding inputs between runs; the runner's stopping rule met min_duration_s = 0.1
    data = _golden()
    timing = data["timing"]
    timing["latencies_ns"] = [1_000_000] * 40
    timing["window_end_ns"] = timing["window_start_ns"] + 110_000_000
    assert _judge(data).verdict is Verdict.VALID
    # without a recorded window only the sum of the samples is known: 0.040 s < 0.1 s
    timing["window_start_ns"] = timing["window_end_ns"] = None
    assert _judge(data).reasons == ("timed window too short: 0.040 s < min_duration 0.100 s",)


def test_fallback_to_cpu_is_invalid() -> None:
    data = _golden()
    data["execution"].update(
        providers_requested=["XnnpackExecutionProvider", "CPUExecutionProvider"],
        providers_used=["CPUExecutionProvider"],
        fallback_to_cpu=True,
    )
    validity = _judge(data)
    assert validity.verdict is Verdict.INVALID
    assert validity.reasons == (
        "fell back to CPU: requested XnnpackExecutionProvider, CPUExecutionProvider, "
        "used CPUExecutionProvider",
    )


def test_zero_and_negative_samples_are_invalid() -> None:
    data = _golden()
    data["timing"]["latencies_ns"][3] = 0
    data["timing"]["latencies_ns"][7] = -120
    validity = _judge(data)
    assert validity.verdict is Verdict.INVALID
    assert "2 of 40 samples are <= 0 ns" in validity.reasons[0]


def test_wrong_model_hash_is_invalid() -> None:
    validity = _judge(_golden(), expected_model_sha256="ab" * 32)
    assert validity.verdict is Verdict.INVALID
    assert validity.reasons == (
        "wrong model: runner measured sha256 3f5c0a9e1b7d, expected abababababab",
    )
    same = _judge(_golden(), expected_model_sha256=_golden()["model"]["sha256"].upper())
    assert same.verdict is Verdict.VALID


def test_every_reason_is_reported_not_just_the_first() -> None:
    data = _golden()
    data["execution"]["fallback_to_cpu"] = True
    validity = _judge(data, min_runs=100, min_duration_s=1.0)
    assert validity.verdict is Verdict.INVALID
    assert len(validity.reasons) == 3


def test_unstable_run_warns_but_stays_valid() -> None:
    data = _golden()
    # alternate 1 ms and 3 ms: mean 2, every deviation 1, std = sqrt(40 / 39) = 1.01274,
    # cv = 50.6 %
    data["timing"]["latencies_ns"] = [1_000_000 if i % 2 else 3_000_000 for i in range(40)]
    validity = _judge(data, min_duration_s=0.05)
    assert validity.verdict is Verdict.VALID
    assert validity.warnings == ("unstable: cv=50.6% > 10%",)


def test_cv_threshold_is_configurable() -> None:
    data = _golden()
    data["timing"]["latencies_ns"] = [1_000_000 if i % 2 else 3_000_000 for i in range(40)]
    assert _judge(data, min_duration_s=0.05, cv_threshold=0.6).warnings == ()


def test_too_few_samples_for_a_ci_warns() -> None:
    data = _golden()
    data["timing"]["latencies_ns"] = data["timing"]["latencies_ns"][:5]
    validity = _judge(data, min_runs=5, min_duration_s=0.0)
    assert validity.verdict is Verdict.VALID
    assert validity.warnings == ("too few samples for a median confidence interval: 5 < 10",)


def test_timer_overhead_dominating_warns() -> None:
    data = _golden()
    data["timing"]["timer_overhead_ns"] = 50_000.0  # 100 x 50 us = 5 ms > the 3.15 ms median
    validity = _judge(data)
    assert validity.verdict is Verdict.VALID
    assert len(validity.warnings) == 1
    assert validity.warnings[0].startswith("timer overhead dominates: median 31")
    assert "100 x timer overhead 50000 ns" in validity.warnings[0]


def test_hot_thermal_zone_at_start_warns() -> None:
    data = _golden()
    data["device_state"]["thermal_zones"].append(
        {"name": "thermal_zone3", "type": "cpu-thermal", "temp_c": 85.5}
    )
    validity = _judge(data)
    assert validity.verdict is Verdict.VALID
    assert validity.warnings == (
        "hot at start: thermal zone thermal_zone3 (cpu-thermal) at 85.5 °C > 80 °C",
    )


@pytest.mark.parametrize("temp_c, warned", [(80.0, False), (80.1, True)])
def test_thermal_limit_is_strictly_above(temp_c: float, warned: bool) -> None:
    data = copy.deepcopy(_golden())
    data["device_state"]["thermal_zones"][0]["temp_c"] = temp_c
    assert bool(_judge(data).warnings) is warned
