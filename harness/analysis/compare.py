"""Compare two stored runs job by job: pure functions, no I/O, no store.

Method (after asv's ``compare`` and pyperf's refusal to mix setups):

1. **Pairing.** A job is identified by (model, device, threads, provider); the model is its
   sha256, or its display name with ``by_name``. Jobs with equal keys are paired, the n-th
   occurrence in the base run with the n-th in the new run; jobs left over are listed as
   unmatched. Different threads or providers are different jobs, never a pair.
2. **Checked settings** (:data:`CHECKED_SETTINGS`). A pair whose runs differ in one of them would
   compare two setups rather than two versions of the code, so the comparison refuses it with
   :class:`~harness.errors.IncomparableRunsError` unless the setting is allowed (``allow``), or
   ``strict`` is off; such a pair is still compared but marked ``!``. The device-state settings
   (cpu model and count, governors) and the producer are only checked when both sides recorded
   them.
3. **Failed results.** A pair with a failed or INVALID side, or a side without per-run samples
   (a native tool's aggregate), cannot be tested: it is marked ``x`` with the reason.
4. **Significance before a ratio.** A two-sided Mann-Whitney U test on the raw samples
   (:func:`~harness.analysis.statistics.mann_whitney_u`). Only when ``p < alpha`` *and*
   ``|ratio - 1| >= min_effect`` is it a change: ``+`` slower (a regression) or ``-`` faster;
   otherwise ``~``, no significant change. ``ratio`` is new median / base median (type-7
   medians). Each pair is a separate test at level ``alpha``; with many pairs a few ``p < alpha``
   by chance are expected, which ``min_effect`` keeps from being reported as changes.
5. **Uncertainty of the ratio.** A seeded percentile bootstrap: ``n_boot`` bootstrap medians of
   each side (:func:`~harness.analysis.statistics.bootstrap_medians`, independent seeds), their
   ratios, and the type-7 percentiles at ``(1 -/+ ci_level) / 2``. ``ci_level`` defaults to
   ``1 - alpha``. Only computed when both sides have at least ``MIN_CI_SAMPLES`` samples.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from harness.analysis.statistics import (
    MIN_CI_SAMPLES,
    bootstrap_medians,
    mann_whitney_u,
    percentile,
)
from harness.errors import ConfigError, IncomparableRunsError
from harness.results.records import JobResult, RunRecord, Verdict

CHECKED_SETTINGS: tuple[str, ...] = (
    "model_sha256",
    "runtime_name",
    "runtime_version",
    "warmup_runs",
    "min_runs",
    "shapes",
    "values",
    "cpu_model",
    "cpu_count",
    "governors",
    "fallback_to_cpu",
    "producer",
)
"""Settings two paired jobs must share; names as ``--allow-different`` accepts them."""

# Checked only when both sides recorded them: an older runner or a native tool may not know.
_ONLY_WHEN_RECORDED = frozenset({"cpu_model", "cpu_count", "governors", "producer"})


class Mark(str, Enum):
    """asv-style mark of one pair."""

    SLOWER = "+"  # significant and at least min_effect slower: a regression
    FASTER = "-"  # significant and at least min_effect faster: an improvement
    NO_CHANGE = "~"  # not significant, or smaller than min_effect
    DIFFERENT_SETUP = "!"  # a checked setting differs and was accepted; compared anyway
    FAILED = "x"  # a side failed, is INVALID or has no per-run samples; not tested


@dataclass(frozen=True)
class PairKey:
    """What identifies a job across runs."""

    model: str  # sha256, or the display name when pairing by name
    device_name: str
    threads: int | None
    provider: str


@dataclass(frozen=True)
class SettingDifference:
    """One checked setting that differs between the two jobs of a pair."""

    setting: str
    base_value: str
    new_value: str


@dataclass(frozen=True)
class PairComparison:
    """The comparison of one job in the base run with its counterpart in the new run."""

    key: PairKey
    model_name: str
    base_job_index: int
    new_job_index: int
    base_count: int  # timed samples on each side
    new_count: int
    base_median_ms: float | None
    new_median_ms: float | None
    ratio: float | None  # new median / base median; > 1 is slower
    ratio_ci_low: float | None  # bootstrap CI of the ratio at Comparison.ci_level
    ratio_ci_high: float | None
    p_value: float | None  # two-sided Mann-Whitney U; None when not tested
    change: Mark | None  # the statistical verdict (+, - or ~); None when not tested
    mark: Mark  # what to show: x, else ! for an accepted difference, else the change
    differences: tuple[SettingDifference, ...]
    reason: str

    @property
    def is_regression(self) -> bool:
        """Significantly slower by at least min_effect, including across an accepted difference."""
        return self.change is Mark.SLOWER and self.mark is not Mark.FAILED


@dataclass(frozen=True)
class UnmatchedJob:
    """A job with no counterpart in the other run."""

    side: str  # "base" | "new"
    job_index: int
    model_name: str
    key: PairKey


@dataclass(frozen=True)
class Comparison:
    """Every pair of two runs, the jobs left unpaired, and the parameters used."""

    base_run_id: str
    new_run_id: str
    alpha: float
    min_effect: float
    ci_level: float
    by_name: bool
    allowed: tuple[str, ...]
    pairs: tuple[PairComparison, ...]
    unmatched: tuple[UnmatchedJob, ...]

    @property
    def regressions(self) -> tuple[PairComparison, ...]:
        """Pairs significantly slower by at least min_effect (``+``, or ``!`` and slower)."""
        return tuple(pair for pair in self.pairs if pair.is_regression)

    @property
    def has_regression(self) -> bool:
        """True when any pair is a regression."""
        return bool(self.regressions)

    def count(self, mark: Mark) -> int:
        """How many pairs carry ``mark``."""
        return sum(1 for pair in self.pairs if pair.mark is mark)


def pair_key(job: JobResult, *, by_name: bool = False) -> PairKey:
    """The key a job is paired by: (model sha256 or name, device, threads, provider)."""
    model = job.spec.model.name if by_name else job.spec.model.sha256
    settings = job.spec.settings
    return PairKey(model, job.spec.device_name, settings.threads, settings.provider)


def checked_settings(job: JobResult) -> dict[str, str | None]:
    """The checked settings of one job as display strings; None: not recorded."""
    settings, state = job.spec.settings, job.device_state
    governors = state.get("governors") or {}
    producer = (job.raw_document or {}).get("producer") or {}
    return {
        "model_sha256": job.spec.model.sha256,
        "runtime_name": str(job.runtime_name),
        "runtime_version": str(job.runtime_version),
        "warmup_runs": str(settings.warmup_runs),
        "min_runs": str(settings.min_runs),
        "shapes": _pairs_text(settings.shapes),
        "values": _pairs_text(settings.values),
        "cpu_model": _optional_text(state.get("cpu_model")),
        "cpu_count": _optional_text(state.get("cpu_count")),
        "governors": ",".join(f"{k}={v}" for k, v in sorted(governors.items())) or None,
        "fallback_to_cpu": str(job.fallback_to_cpu),
        "producer": f"{producer['name']} {producer.get('version', '?')}"
        if producer.get("name")
        else None,
    }


def _pairs_text(pairs: Sequence[tuple[str, str]]) -> str:
    return ",".join(f"{name}={value}" for name, value in sorted(pairs)) or "(model default)"


def _optional_text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def setting_differences(base: JobResult, new: JobResult) -> tuple[SettingDifference, ...]:
    """Every checked setting in which the two jobs differ, in :data:`CHECKED_SETTINGS` order."""
    base_values, new_values = checked_settings(base), checked_settings(new)
    found = []
    for name in CHECKED_SETTINGS:
        old, now = base_values[name], new_values[name]
        if name in _ONLY_WHEN_RECORDED and (old is None or now is None):
            continue
        if old != now:
            if name == "model_sha256":  # 12 hex digits tell files apart in a one-line message
                old, now = str(old)[:12], str(now)[:12]
            found.append(SettingDifference(name, str(old), str(now)))
    return tuple(found)


def compare_runs(
    base: RunRecord,
    new: RunRecord,
    *,
    alpha: float = 0.01,
    min_effect: float = 0.05,
    strict: bool = True,
    allow: Collection[str] = (),
    by_name: bool = False,
    ci_level: float | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Compare every paired job of ``new`` against ``base`` (the method is in the module doc).

    ``allow`` names checked settings that may differ (the pair is then marked ``!``); with
    ``strict`` any other difference raises :class:`IncomparableRunsError` naming the job, the
    setting and both values; without ``strict`` every differing pair is marked ``!``.
    Raises :class:`ConfigError` for alpha outside (0, 1), a negative min_effect, a ci_level
    outside (0, 1) or an unknown setting in ``allow``.
    """
    if not 0.0 < alpha < 1.0:
        raise ConfigError(f"alpha must be within (0, 1), got {alpha}")
    if not min_effect >= 0.0:
        raise ConfigError(f"min effect must be 0 or more (0.05 = 5 %), got {min_effect}")
    level = 1.0 - alpha if ci_level is None else ci_level
    if not 0.0 < level < 1.0:
        raise ConfigError(f"ci_level must be within (0, 1), got {level}")
    unknown = sorted(set(allow) - set(CHECKED_SETTINGS))
    if unknown:
        raise ConfigError(
            f"unknown setting for --allow-different: {', '.join(unknown)}",
            hint=f"one of {', '.join(CHECKED_SETTINGS)}",
        )
    matched, unmatched = _match_jobs(base, new, by_name)
    refused = [
        (b, n, diff)
        for b, n in matched
        if _testable(b) and _testable(n)
        for diff in setting_differences(b, n)
        if strict and diff.setting not in allow
    ]
    if refused:
        raise _incomparable(base, new, refused)
    pairs = tuple(
        _compare_pair(b, n, by_name, alpha, min_effect, level, n_boot, seed) for b, n in matched
    )
    return Comparison(
        base_run_id=base.run_id,
        new_run_id=new.run_id,
        alpha=alpha,
        min_effect=min_effect,
        ci_level=level,
        by_name=by_name,
        allowed=tuple(sorted(set(allow))),
        pairs=pairs,
        unmatched=tuple(unmatched),
    )


def _match_jobs(
    base: RunRecord, new: RunRecord, by_name: bool
) -> tuple[list[tuple[JobResult, JobResult]], list[UnmatchedJob]]:
    """Pair jobs with equal keys in run order; the rest are unmatched."""
    waiting: dict[PairKey, list[JobResult]] = defaultdict(list)
    for job in new.jobs:
        waiting[pair_key(job, by_name=by_name)].append(job)
    matched: list[tuple[JobResult, JobResult]] = []
    unmatched: list[UnmatchedJob] = []
    for job in base.jobs:
        key = pair_key(job, by_name=by_name)
        if waiting[key]:
            matched.append((job, waiting[key].pop(0)))
        else:
            unmatched.append(UnmatchedJob("base", job.spec.job_index, job.spec.model.name, key))
    for key, jobs in waiting.items():
        unmatched.extend(
            UnmatchedJob("new", j.spec.job_index, j.spec.model.name, key) for j in jobs
        )
    return matched, unmatched


def _describe(job: JobResult) -> str:
    settings = job.spec.settings
    threads = "default" if settings.threads is None else settings.threads
    return (
        f"{job.spec.model.name} on {job.spec.device_name} "
        f"(threads={threads}, provider={settings.provider})"
    )


def _incomparable(
    base: RunRecord, new: RunRecord, refused: list[tuple[JobResult, JobResult, SettingDifference]]
) -> IncomparableRunsError:
    b, n, diff = refused[0]
    settings = sorted({d.setting for _, _, d in refused}, key=CHECKED_SETTINGS.index)
    others = len(refused) - 1
    more = f" ({others} more difference{'s' if others > 1 else ''} in other jobs or settings)"
    return IncomparableRunsError(
        f"cannot compare {_describe(b)}: {diff.setting} differs: {diff.base_value!r} in run "
        f"{base.run_id} (job {b.spec.job_index}) vs {diff.new_value!r} in run {new.run_id} "
        f"(job {n.spec.job_index}){more if others else ''}",
        hint="to compare anyway, knowingly, add "
        + " ".join(f"--allow-different {name}" for name in settings),
    )


def _testable(job: JobResult) -> bool:
    return job.status == "ok" and job.validity.verdict is Verdict.VALID and bool(job.samples_ms)


def _untestable_reason(side: str, job: JobResult) -> str | None:
    where = f"{side} job {job.spec.job_index}"
    if job.status != "ok":
        return f"{where} failed: {job.error or 'unknown error'}"
    if job.validity.verdict is not Verdict.VALID:
        return f"{where} is INVALID: {'; '.join(job.validity.reasons) or 'no reason recorded'}"
    if not job.samples_ms:
        return f"{where} has no per-run samples (aggregate-only result), so cannot be tested"
    return None


def _median_or_none(job: JobResult) -> float | None:
    if job.samples_ms:
        return percentile(job.samples_ms, 50.0)
    median = job.latency.median_ms if job.latency else None
    return median if median is not None and math.isfinite(median) else None


def _compare_pair(
    base: JobResult,
    new: JobResult,
    by_name: bool,
    alpha: float,
    min_effect: float,
    ci_level: float,
    n_boot: int,
    seed: int,
) -> PairComparison:
    differences = setting_differences(base, new)

    def pair(**measured: Any) -> PairComparison:
        return PairComparison(
            key=pair_key(base, by_name=by_name),
            model_name=base.spec.model.name,
            base_job_index=base.spec.job_index,
            new_job_index=new.spec.job_index,
            base_count=len(base.samples_ms),
            new_count=len(new.samples_ms),
            differences=differences,
            **measured,
        )

    untestable = _untestable_reason("base", base) or _untestable_reason("new", new)
    if not untestable and percentile(base.samples_ms, 50.0) <= 0.0:
        untestable = f"base job {base.spec.job_index} has a non-positive median; no ratio exists"
    if untestable:
        return pair(
            base_median_ms=_median_or_none(base),
            new_median_ms=_median_or_none(new),
            ratio=None,
            ratio_ci_low=None,
            ratio_ci_high=None,
            p_value=None,
            change=None,
            mark=Mark.FAILED,
            reason=untestable,
        )
    base_median = percentile(base.samples_ms, 50.0)
    new_median = percentile(new.samples_ms, 50.0)
    ratio = new_median / base_median
    _, p_value = mann_whitney_u(base.samples_ms, new.samples_ms)
    if math.isnan(p_value):  # scipy gives NaN only for degenerate input; nothing is shown then
        p_value = 1.0
    ci = ratio_ci(base.samples_ms, new.samples_ms, ci_level=ci_level, n_boot=n_boot, seed=seed)
    change, reason = _verdict(ratio, p_value, alpha, min_effect)
    mark = change
    if differences:
        mark = Mark.DIFFERENT_SETUP
        accepted = "; ".join(f"{d.setting} {d.base_value} -> {d.new_value}" for d in differences)
        reason = f"different setup accepted ({accepted}); {reason}"
    return pair(
        base_median_ms=base_median,
        new_median_ms=new_median,
        ratio=ratio,
        ratio_ci_low=ci[0] if ci else None,
        ratio_ci_high=ci[1] if ci else None,
        p_value=p_value,
        change=change,
        mark=mark,
        reason=reason,
    )


def _verdict(ratio: float, p_value: float, alpha: float, min_effect: float) -> tuple[Mark, str]:
    """Significance first, then the size of the effect."""
    percent = abs(ratio - 1.0) * 100.0
    direction = "slower" if ratio > 1.0 else "faster"
    if p_value >= alpha:
        return Mark.NO_CHANGE, f"not significant (p={p_value:.2g} >= alpha {alpha:g})"
    if abs(ratio - 1.0) < min_effect:
        return Mark.NO_CHANGE, (
            f"{percent:.1f}% {direction} is below the {min_effect * 100:g}% minimum effect "
            f"(significant, p={p_value:.2g})"
        )
    mark = Mark.SLOWER if ratio > 1.0 else Mark.FASTER
    return mark, f"{percent:.1f}% {direction}, significant (p={p_value:.2g} < alpha {alpha:g})"


def ratio_ci(
    base_ms: Sequence[float],
    new_ms: Sequence[float],
    *,
    ci_level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile-bootstrap CI of ``median(new) / median(base)``, or None below MIN_CI_SAMPLES.

    Method: ``n_boot`` bootstrap medians of each side, seeded with ``seed`` (base) and
    ``seed + 1`` (new) so the two resamplings are independent; the CI is the type-7 percentiles
    ``100 * (1 - ci_level) / 2`` and ``100 * (1 + ci_level) / 2`` of their element-wise ratios.
    """
    if min(len(base_ms), len(new_ms)) < MIN_CI_SAMPLES:
        return None
    base_medians = bootstrap_medians(base_ms, n_boot=n_boot, seed=seed)
    new_medians = bootstrap_medians(new_ms, n_boot=n_boot, seed=seed + 1)
    if not np.all(base_medians > 0):
        return None  # a zero latency is INVALID upstream; no ratio can be formed
    tail = 100.0 * (1.0 - ci_level) / 2.0
    low, high = np.percentile(new_medians / base_medians, [tail, 100.0 - tail], method="linear")
    return float(low), float(high)
