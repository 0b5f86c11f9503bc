"""Turn a validated runner document into the host-side :class:`JobResult` record.

The runner document stays the source of truth: it is kept verbatim (``raw_document``) and every
other field of the result is derived from it plus the job's spec.
"""

from __future__ import annotations

from typing import Any

from harness.analysis.statistics import summarize_aggregate, summarize_latencies
from harness.analysis.validity import judge_validity
from harness.power.calibration import PowerCalibration
from harness.power.energy import energy_from_document
from harness.results.records import JobResult, JobSpec, LatencySummary, Validity, Verdict
from harness.results.schema import RunnerDocument

NS_PER_MS = 1_000_000

# Producers whose printed std divides by n (benchmark_model's Stat::OutputToStream).
_POPULATION_STD_PRODUCERS = frozenset({"benchmark_model"})


def job_result_from_document(
    spec: JobSpec,
    doc: RunnerDocument,
    *,
    accuracy: float | None = None,
    accuracy_metric: str | None = None,
    calibration: PowerCalibration | None = None,
) -> JobResult:
    """The result of one job from its runner document.

    A document with ``status == "error"`` becomes a failed result (see
    :func:`failed_job_result`). Otherwise the samples are converted to milliseconds, summarised
    and judged against the spec's ``min_runs`` / ``min_duration_s`` and model sha256.
    An ``aggregate_only`` document (a native tool's printed statistics) has no per-run samples:
    ``samples_ms`` is empty (its labelled single runs stay in the raw document) and the summary
    is the tool's statistics (:func:`~harness.analysis.statistics.summarize_aggregate`).
    """
    if doc.status != "ok" or doc.timing is None:
        return failed_job_result(spec, _document_error(doc), doc)
    samples_ms: tuple[float, ...]
    summary: LatencySummary
    if doc.timing.samples_kind == "aggregate_only":
        assert doc.timing.aggregate_us is not None  # the schema guarantees count and avg
        samples_ms = ()
        summary = summarize_aggregate(
            doc.timing.aggregate_us,
            population_std=doc.producer.name in _POPULATION_STD_PRODUCERS,
        )
    else:
        samples_ms = tuple(ns / NS_PER_MS for ns in doc.timing.latencies_ns)
        summary = summarize_latencies(samples_ms)
    validity = judge_validity(
        doc,
        summary,
        min_runs=spec.settings.min_runs,
        min_duration_s=spec.settings.min_duration_s,
        expected_model_sha256=spec.model.sha256,
    )
    return JobResult(
        spec=spec,
        status="ok",
        error=None,
        runtime_name=doc.runtime.name if doc.runtime else None,
        runtime_version=doc.runtime.version if doc.runtime else None,
        init_ms=doc.timing.init_ms,
        first_inference_ms=doc.timing.first_inference_ms,
        peak_memory_kb=doc.memory.peak_rss_kb,
        latency=summary,
        validity=validity,
        samples_ms=samples_ms,
        accuracy=accuracy,
        accuracy_metric=accuracy_metric,
        fallback_to_cpu=doc.execution.fallback_to_cpu,
        device_state=_device_state(doc),
        raw_document=doc.to_json_dict(),
        energy=energy_from_document(doc, calibration=calibration),
    )


def failed_job_result(spec: JobSpec, error: str, doc: RunnerDocument | None = None) -> JobResult:
    """A failed job: INVALID with ``error`` as its reason, no latency, the document if any.

    What the document says about the runtime and device is kept, so a failure on one runtime
    version can be told apart from the same failure on another.
    """
    return JobResult(
        spec=spec,
        status="failed",
        error=error,
        runtime_name=doc.runtime.name if doc and doc.runtime else None,
        runtime_version=doc.runtime.version if doc and doc.runtime else None,
        init_ms=None,
        first_inference_ms=None,
        peak_memory_kb=doc.memory.peak_rss_kb if doc else None,
        latency=None,
        validity=Validity(Verdict.INVALID, reasons=(error,)),
        samples_ms=(),
        fallback_to_cpu=doc.execution.fallback_to_cpu if doc else False,
        device_state=_device_state(doc) if doc else {},
        raw_document=doc.to_json_dict() if doc else None,
    )


def _document_error(doc: RunnerDocument) -> str:
    if doc.error is None:
        return "runner reported status error without details"
    op = f" (op {doc.error.op})" if doc.error.op else ""
    return f"{doc.error.kind}{op}: {doc.error.message}"


def _device_state(doc: RunnerDocument) -> dict[str, Any]:
    return doc.device_state.model_dump(mode="json")
