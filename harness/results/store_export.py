"""Text exports of a stored run: one CSV row per job, or the whole record as JSON."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from typing import Any

from harness.results.records import JobResult, RunRecord
from harness.results.store_schema import SUMMARY_FIELDS, jsonable, summary_column

CSV_COLUMNS = [
    "run_id",
    "job_index",
    "model_name",
    "model_sha256",
    "model_format",
    "model_size_bytes",
    "device_name",
    "threads",
    "provider",
    "status",
    "verdict",
    "runtime_name",
    "runtime_version",
    "init_ms",
    "first_inference_ms",
    "peak_memory_kb",
    *(summary_column(name) for name in SUMMARY_FIELDS),
    "accuracy",
    "accuracy_metric",
    "fallback_to_cpu",
    "error",
    "reasons",
    "warnings",
]


def _csv_row(run_id: str, job: JobResult) -> list[Any]:
    spec = job.spec
    latency = dataclasses.asdict(job.latency) if job.latency else {}
    values = {
        "run_id": run_id,
        "job_index": spec.job_index,
        "model_name": spec.model.name,
        "model_sha256": spec.model.sha256,
        "model_format": spec.model.format,
        "model_size_bytes": spec.model.size_bytes,
        "device_name": spec.device_name,
        "threads": spec.settings.threads,
        "provider": spec.settings.provider,
        "status": job.status,
        "verdict": job.validity.verdict.value,
        "runtime_name": job.runtime_name,
        "runtime_version": job.runtime_version,
        "init_ms": job.init_ms,
        "first_inference_ms": job.first_inference_ms,
        "peak_memory_kb": job.peak_memory_kb,
        **{summary_column(name): latency.get(name) for name in SUMMARY_FIELDS},
        "accuracy": job.accuracy,
        "accuracy_metric": job.accuracy_metric,
        "fallback_to_cpu": job.fallback_to_cpu,
        "error": job.error,
        "reasons": "; ".join(job.validity.reasons),
        "warnings": "; ".join(job.validity.warnings),
    }
    return [values[column] for column in CSV_COLUMNS]


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(["" if value is None else value for value in row] for row in rows)
    return buffer.getvalue()


def run_to_csv(record: RunRecord) -> str:
    """One row per job with the :data:`CSV_COLUMNS` (empty cells for missing values)."""
    return csv_text(CSV_COLUMNS, [_csv_row(record.run_id, job) for job in record.jobs])


def run_to_json(record: RunRecord) -> str:
    """The whole record (jobs, samples, raw documents) as indented JSON; inf/NaN become null."""
    return json.dumps(jsonable(dataclasses.asdict(record)), indent=2, allow_nan=False)
