"""Runner document schema v2: the v1 -> v2 upgrade, aggregate-only timings and their checks.

Golden files: ``runner_doc_v1.json`` / ``runner_doc_v1_error.json`` (hand-written v1 documents)
must keep loading; ``runner_doc_v2_native.json`` is benchmark_model's output
``native/bm_b_info_percentiles.txt`` as a v2 document (its numbers are checked against the text).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from harness.errors import SchemaError
from harness.results.records import JobSettings, JobSpec, ModelArtifact, RunRecord
from harness.results.schema import RUNNER_SCHEMA_VERSION, parse_runner_document
from harness.results.store import ResultStore
from harness.results.summarize import job_result_from_document

GOLDEN = Path(__file__).parent / "golden"
V2_TIMING_DEFAULTS: dict[str, Any] = {
    "samples_kind": "per_run",
    "latencies_ns_labels": [],
    "aggregate_us": None,
    "warmup_samples_kind": "per_run",
    "warmup_latencies_ns_labels": [],
    "warmup_aggregate_us": None,
}


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / name).read_text())
    return data


def _contains(big: Any, small: Any) -> bool:
    """Every key of ``small`` is in ``big`` with the same value (recursively for objects)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(
            k in big and _contains(big[k], v) for k, v in small.items()
        )
    return bool(big == small)


def test_current_version_is_2() -> None:
    assert RUNNER_SCHEMA_VERSION == 2


@pytest.mark.parametrize("name", ["runner_doc_v1.json", "runner_doc_v1_error.json"])
def test_v1_documents_upgrade_keeping_every_field(name: str) -> None:
    v1 = _load(name)
    doc = parse_runner_document(v1, origin="golden v1")
    upgraded = doc.to_json_dict()
    assert upgraded["schema_version"] == 2
    assert _contains(upgraded, {k: v for k, v in v1.items() if k != "schema_version"})
    if v1["timing"] is not None:
        for key, value in V2_TIMING_DEFAULTS.items():
            assert upgraded["timing"][key] == value, key
    # an upgraded document is a valid v2 document and stays the same when read again
    assert parse_runner_document(upgraded) == doc
    assert v1["schema_version"] == 1  # the upgrade did not modify the caller's dict


def test_v1_golden_round_trips_through_the_store(tmp_path: Path) -> None:
    v1 = _load("runner_doc_v1.json")
    doc = parse_runner_document(v1)
    model = ModelArtifact("mobilenetv2-12", v1["model"]["path"], "onnx", v1["model"]["sha256"], 1)
    spec = JobSpec(0, model, "local", JobSettings(2, "cpu", 3, 30, 0.1, 10.0))
    job = job_result_from_document(spec, doc)
    with ResultStore(tmp_path / "results.sqlite") as store:
        store.save_run(RunRecord("r", "2026-11-30T15:00:00+00:00", "c", "0.1.0", "h", (job,)))
        [loaded] = store.load_run("r").jobs
    assert loaded.raw_document == doc.to_json_dict()
    assert loaded.samples_ms == tuple(ns / 1e6 for ns in v1["timing"]["latencies_ns"])
    assert loaded.latency == job.latency


def test_a_working_tree_native_v1_marker_becomes_a_null_overhead() -> None:
    # the native adapters briefly wrote v2's fields as v1 extras, with this marker
    v1 = _load("runner_doc_v1.json")
    v1["timing"]["timer_overhead_measured"] = False
    timing = parse_runner_document(v1).to_json_dict()["timing"]
    assert timing["timer_overhead_ns"] is None
    assert "timer_overhead_measured" not in timing


def test_golden_v2_native_document() -> None:
    data = _load("runner_doc_v2_native.json")
    doc = parse_runner_document(data, origin="golden v2")
    assert doc.to_json_dict() == data  # loads and writes back byte-for-byte the same JSON
    timing = doc.timing
    assert timing is not None and timing.aggregate_us is not None
    # INFO: count=1000 first=52162 curr=49785 min=49088 max=686105 avg=63743.2 std=60716 ...
    agg = timing.aggregate_us
    assert (agg.count, agg.avg, agg.std, agg.median, agg.p90) == (
        1000,
        63743.2,
        60716.0,
        51891.0,
        None,
    )
    assert timing.samples_kind == "aggregate_only"
    assert list(zip(timing.latencies_ns_labels, timing.latencies_ns, strict=True)) == [
        ("first", 52_162_000),
        ("last", 49_785_000),
    ]
    assert (timing.init_ms, timing.first_inference_ms, timing.timer_overhead_ns) == (
        119.515,
        87.112,
        None,
    )
    assert doc.raw_output == (GOLDEN / "native" / "bm_b_info_percentiles.txt").read_text()


def _v2() -> dict[str, Any]:
    return copy.deepcopy(_load("runner_doc_v2_native.json"))


def _refused(data: dict[str, Any], match: str) -> None:
    with pytest.raises(SchemaError, match=match):
        parse_runner_document(data, origin="test")


def test_aggregate_only_needs_count_and_average() -> None:
    for key in ("count", "avg"):
        data = _v2()
        data["timing"]["aggregate_us"][key] = None
        _refused(data, "aggregate_only needs aggregate_us with at least count and avg")
    data = _v2()
    data["timing"]["aggregate_us"] = None
    _refused(data, "aggregate_only needs aggregate_us")


def test_a_labelled_latency_must_be_the_printed_value() -> None:
    data = _v2()
    data["timing"]["latencies_ns"][0] = 63_743_200  # the average passed off as the first run
    _refused(data, "the 'first' latency 63743200 ns is not the aggregate's first")
    data = _v2()
    data["timing"]["latencies_ns_labels"] = ["first"]
    _refused(data, "1 labels for 2 latencies")
    data = _v2()
    data["timing"]["latencies_ns_labels"] = ["first", "median"]
    _refused(data, "unknown label 'median'")
    data = _v2()
    data["timing"]["warmup_latencies_ns"][1] = 1
    _refused(data, "warm-up: the 'last' latency")


def test_aggregate_only_may_have_no_single_run_at_all() -> None:
    data = _v2()
    data["timing"]["latencies_ns"] = []
    data["timing"]["latencies_ns_labels"] = []
    assert parse_runner_document(data).timing is not None


def test_per_run_documents_need_samples_and_carry_no_labels() -> None:
    data = _v2()
    data["timing"]["samples_kind"] = "per_run"
    _refused(data, "per_run latencies carry no labels")
    data["timing"]["latencies_ns_labels"] = []
    data["timing"]["latencies_ns"] = []
    _refused(data, "test reported status ok but no latency samples")


def test_ok_without_timing_is_refused() -> None:
    data = _v2()
    data["timing"] = None
    _refused(data, "test reported status ok but no timing")


def test_newer_versions_are_refused() -> None:
    data = _v2()
    data["schema_version"] = 3
    _refused(data, "schema_version 3, newer than this harness understands")
