"""VALID / INVALID verdicts for one job, after MLPerf LoadGen's idea of a result's validity.

LoadGen does not merely report numbers: it checks that the run met its minimum query count and
minimum duration and prints ``Result is : INVALID`` with the reasons when it did not. Here a job
is INVALID when its numbers cannot be trusted at all (the runner failed, too few samples, a
window shorter than asked, a silent fall-back to CPU, samples that are zero or negative, the
wrong model). It stays VALID with *warnings* when the numbers are usable but need care (noisy,
too few samples for a confidence interval, timer overhead not negligible, a hot device).

Aggregate-only results (a native tool's printed statistics, ``timing.samples_kind ==
"aggregate_only"``) are judged by the same count and duration rules, with the tool's run count and
count x average as the timed duration; they always carry a warning that there are no per-run
samples, and one for each statistic the tool did not print.
"""

from __future__ import annotations

import math

from harness.analysis.statistics import MIN_CI_SAMPLES
from harness.power.throttle import throttled_verdict
from harness.results.records import LatencySummary, Validity, Verdict
from harness.results.schema import RunnerDocument

DURATION_TOLERANCE = 0.05
"""Relative slack on min_duration_s. The timed window is the runner's recorded window
(``timing.window_start_ns``..``window_end_ns``) when it has one, else the *sum of the samples*,
which leaves out the loop's bookkeeping between runs (binding inputs) and so comes out slightly
short of the runner's wall-clock stopping rule; 5 % absorbs that without passing a half-length run."""

TIMER_OVERHEAD_FACTOR = 100.0
"""A median below this many timer overheads is dominated by the cost of reading the clock."""

MAX_START_TEMP_C = 80.0
"""A thermal zone above this at the start of the job means throttling is likely."""


def judge_validity(
    doc: RunnerDocument,
    summary: LatencySummary | None,
    *,
    min_runs: int,
    min_duration_s: float,
    cv_threshold: float = 0.10,
    ci_min_samples: int = MIN_CI_SAMPLES,
    max_start_temp_c: float = MAX_START_TEMP_C,
    expected_model_sha256: str | None = None,
) -> Validity:
    """Judge one job's runner document and latency summary; every failed check is a reason.

    INVALID reasons: the runner reported an error; no summary or fewer samples than
    ``min_runs``; the timed window is shorter than ``min_duration_s`` (see
    :data:`DURATION_TOLERANCE`); the runtime fell back to CPU; a sample is zero or negative; the
    runner measured a model whose sha256 differs from ``expected_model_sha256``.
    Warnings (the verdict stays VALID): cv above ``cv_threshold``; fewer samples than
    ``ci_min_samples``; median below :data:`TIMER_OVERHEAD_FACTOR` timer overheads; a thermal
    zone above ``max_start_temp_c`` when the job started.
    """
    if doc.status == "error":
        return Validity(Verdict.INVALID, reasons=(_error_reason(doc),))
    reasons = [
        *_sample_reasons(doc, summary, min_runs, min_duration_s),
        *_execution_reasons(doc, expected_model_sha256),
    ]
    warnings = [
        *_noise_warnings(doc, summary, cv_threshold, ci_min_samples),
        *_thermal_warnings(doc, max_start_temp_c),
        *(f"throttled: {reason}" for reason in throttled_verdict(doc)),
    ]
    verdict = Verdict.INVALID if reasons else Verdict.VALID
    return Validity(verdict, reasons=tuple(reasons), warnings=tuple(warnings))


def _error_reason(doc: RunnerDocument) -> str:
    if doc.error is None:
        return "runner reported status error without details"
    op = f" (op {doc.error.op})" if doc.error.op else ""
    return f"runner error [{doc.error.kind}]{op}: {doc.error.message}"


def _sample_reasons(
    doc: RunnerDocument, summary: LatencySummary | None, min_runs: int, min_duration_s: float
) -> list[str]:
    if summary is None:
        return ["no latency summary: the job produced no timed samples"]
    reasons = []
    if summary.count < min_runs:
        reasons.append(f"too few samples: {summary.count} < min_runs {min_runs}")
    window_s = _timed_window_s(doc, summary)
    if window_s < min_duration_s * (1.0 - DURATION_TOLERANCE):
        reasons.append(
            f"timed window too short: {window_s:.3f} s < min_duration {min_duration_s:.3f} s"
        )
    latencies = doc.timing.latencies_ns if doc.timing else []
    non_positive = sum(1 for ns in latencies if ns <= 0)
    if non_positive:
        reasons.append(
            f"{non_positive} of {len(latencies)} samples are <= 0 ns "
            "(timer too coarse or clock not monotonic)"
        )
    printed = (summary.mean_ms, summary.min_ms)  # a statistic not printed is NaN: skipped
    if _aggregate_only(doc) and any(v <= 0 for v in printed if not math.isnan(v)):
        reasons.append(
            f"the tool printed a non-positive latency (avg {summary.mean_ms:g} ms, "
            f"min {summary.min_ms:g} ms)"
        )
    return reasons


def _timed_window_s(doc: RunnerDocument, summary: LatencySummary) -> float:
    """The recorded window span if the runner gave one, never less than the sum of the samples."""
    timing = doc.timing
    if timing and timing.window_start_ns is not None and timing.window_end_ns is not None:
        return max(summary.total_duration_s, (timing.window_end_ns - timing.window_start_ns) / 1e9)
    return summary.total_duration_s


def _execution_reasons(doc: RunnerDocument, expected_sha256: str | None) -> list[str]:
    reasons = []
    execution = doc.execution
    if execution.fallback_to_cpu:
        requested = ", ".join(execution.providers_requested) or doc.settings.provider
        used = ", ".join(execution.providers_used) or "CPU"
        reasons.append(f"fell back to CPU: requested {requested}, used {used}")
    measured = doc.model.sha256
    if expected_sha256 and measured and measured.lower() != expected_sha256.lower():
        reasons.append(
            f"wrong model: runner measured sha256 {measured[:12]}, expected {expected_sha256[:12]}"
        )
    return reasons


def _noise_warnings(
    doc: RunnerDocument, summary: LatencySummary | None, cv_threshold: float, ci_min_samples: int
) -> list[str]:
    if summary is None:
        return []
    warnings = []
    if _aggregate_only(doc):
        warnings += _aggregate_warnings(doc, summary)
    if summary.cv > cv_threshold:
        warnings.append(f"unstable: cv={summary.cv:.1%} > {cv_threshold:.0%}")
    if not _aggregate_only(doc) and summary.count < ci_min_samples:
        warnings.append(
            f"too few samples for a median confidence interval: {summary.count} < {ci_min_samples}"
        )
    overhead_ns = (doc.timing.timer_overhead_ns if doc.timing else None) or 0.0
    median_ns = summary.median_ms * 1e6  # NaN when unknown: every comparison below is False
    if overhead_ns > 0 and median_ns < TIMER_OVERHEAD_FACTOR * overhead_ns:
        warnings.append(
            f"timer overhead dominates: median {median_ns:.0f} ns < "
            f"{TIMER_OVERHEAD_FACTOR:.0f} x timer overhead {overhead_ns:.0f} ns"
        )
    return warnings


def _aggregate_only(doc: RunnerDocument) -> bool:
    return doc.timing is not None and doc.timing.samples_kind == "aggregate_only"


def _aggregate_warnings(doc: RunnerDocument, summary: LatencySummary) -> list[str]:
    warnings = [f"aggregate statistics from {doc.producer.name}: no per-run samples"]
    missing = [
        name
        for name, value in (
            ("median", summary.median_ms),
            ("std", summary.std_ms),
            ("p90", summary.p90_ms),
            ("p99", summary.p99_ms),
        )
        if math.isnan(value)
    ]
    if "median" in missing:
        warnings.append("native tool printed no median")
    if "std" in missing:
        warnings.append("native tool printed no std: stability (cv) not checked")
    others = [name for name in missing if name in {"p90", "p99"}]
    if others:
        warnings.append(f"native tool printed no {'/'.join(others)}")
    return warnings


def _thermal_warnings(doc: RunnerDocument, max_start_temp_c: float) -> list[str]:
    return [
        f"hot at start: thermal zone {zone.name} ({zone.type}) at {zone.temp_c:.1f} °C "
        f"> {max_start_temp_c:.0f} °C"
        for zone in doc.device_state.thermal_zones
        if zone.temp_c > max_start_temp_c
    ]
