"""Latency statistics: pure functions, the method stated in each docstring.

Conventions used throughout:

* Percentiles use numpy's ``method="linear"``, i.e. Hyndman & Fan (1996) type 7, the default of
  numpy, R and Excel ``PERCENTILE.INC``: for sorted samples ``x[0..n-1]`` the q-th percentile is
  ``x[floor(h)] + (h - floor(h)) * (x[floor(h)+1] - x[floor(h)])`` with ``h = (n - 1) * q / 100``.
  The median is the 50th percentile of that definition (the usual midpoint for even n).
* The standard deviation is the *sample* standard deviation (``ddof=1``, divisor ``n - 1``);
  it is 0.0 for a single sample, where it is undefined.
* The confidence interval of the median is a seeded percentile bootstrap (Efron): resample the
  samples with replacement ``n_boot`` times, take each resample's median, and report the
  ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of those medians. It is only computed
  from :data:`MIN_CI_SAMPLES` samples on; with fewer the bootstrap distribution is too lumpy
  to mean anything and the bounds are ``None``. Each resample's median is drawn through the
  order-statistic identity (see :func:`bootstrap_medians`), which has exactly the distribution of
  the median of n values drawn with replacement but costs O(1) instead of O(n) per resample, so a
  million-sample job is summarised in well under a second.
* Aggregate-only results (native tools that print statistics, not runs) are summarised by
  :func:`summarize_aggregate` from the printed numbers alone: a statistic the tool did not print
  is ``math.nan`` (the shared object, so equal records compare equal), never estimated from
  the others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal

import numpy as np
from numpy.typing import NDArray
from scipy import stats as _scipy_stats

from harness.results.records import LatencySummary
from harness.results.schema import AggregateStats

MIN_CI_SAMPLES = 10
"""Fewest samples for which :func:`bootstrap_median_ci` reports an interval."""


def _as_array(samples: Sequence[float]) -> NDArray[np.float64]:
    values = np.asarray(samples, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("need a non-empty one-dimensional sequence of samples")
    return values


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0 <= q <= 100), Hyndman-Fan type 7 (numpy ``method="linear"``).

    Raises ``ValueError`` for an empty sequence or q outside [0, 100].
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within [0, 100], got {q}")
    return float(np.percentile(_as_array(samples), q, method="linear"))


def bootstrap_medians(
    samples: Sequence[float], *, n_boot: int = 2000, seed: int = 0
) -> NDArray[np.float64]:
    """Medians of ``n_boot`` bootstrap resamples (size n, with replacement), seeded.

    Method: a resample is n indices ``floor(n * U_i)`` with U_i iid uniform on [0, 1); the map is
    monotone, so the resample's k-th smallest value is ``sorted[floor(n * U_(k))]``, and the k-th
    order statistic of n uniforms is Beta(k, n - k + 1). For odd n the median is the k = (n + 1) / 2
    -th value. For even n it is the mean of the k = n / 2-th and (k + 1)-th; given U_(k) = u, the
    (k + 1)-th uniform is ``u + (1 - u) * V`` with V ~ Beta(1, n - k) (the least of the n - k
    uniforms above u). The draws use ``numpy.random.default_rng(seed)``.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    ordered = np.sort(_as_array(samples))
    n = ordered.size
    rng = np.random.default_rng(seed)
    k = (n + 1) // 2
    u_low = rng.beta(k, n - k + 1, size=n_boot)
    low = ordered[_rank_index(u_low, n)]
    if n % 2:
        return low
    u_high = u_low + (1.0 - u_low) * rng.beta(1, n - k, size=n_boot)
    return (low + ordered[_rank_index(u_high, n)]) / 2.0


def _rank_index(u: NDArray[np.float64], n: int) -> NDArray[np.intp]:
    # floor(n * u), clamped because a Beta draw can round to exactly 1.0
    return np.minimum((u * n).astype(np.intp), n - 1)


def bootstrap_median_ci(
    samples: Sequence[float], *, ci_level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile-bootstrap confidence interval of the median, or None below MIN_CI_SAMPLES.

    Method: the type-7 percentiles ``100 * (1 - ci_level) / 2`` and ``100 * (1 + ci_level) / 2``
    of ``n_boot`` seeded bootstrap medians (:func:`bootstrap_medians`).
    """
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be within (0, 1), got {ci_level}")
    if len(samples) < MIN_CI_SAMPLES:
        _as_array(samples)  # still refuse empty or malformed input
        return None
    medians = bootstrap_medians(samples, n_boot=n_boot, seed=seed)
    tail = 100.0 * (1.0 - ci_level) / 2.0
    low, high = np.percentile(medians, [tail, 100.0 - tail], method="linear")
    return float(low), float(high)


def summarize_latencies(
    samples_ms: Sequence[float], *, ci_level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> LatencySummary:
    """Summary statistics of one job's timed runs (milliseconds in, milliseconds out).

    mean: arithmetic mean; std: sample standard deviation (ddof=1; 0.0 for one sample);
    median/p90/p99: type-7 percentiles (see the module docstring); median CI: percentile
    bootstrap (:func:`bootstrap_median_ci`, None below MIN_CI_SAMPLES); cv = std / mean;
    throughput_ips = 1000 / mean_ms (inferences per second of back-to-back runs);
    total_duration_s = sum of the samples / 1000. When the mean is not positive (a broken
    timer), cv and throughput are ``inf`` rather than a made-up number.
    Raises ``ValueError`` for an empty sequence.
    """
    values = _as_array(samples_ms)
    count = int(values.size)
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if count > 1 else 0.0
    p50, p90, p99 = (float(v) for v in np.percentile(values, [50, 90, 99], method="linear"))
    ci = bootstrap_median_ci(values.tolist(), ci_level=ci_level, n_boot=n_boot, seed=seed)
    return LatencySummary(
        count=count,
        mean_ms=mean,
        std_ms=std,
        min_ms=float(values.min()),
        median_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        max_ms=float(values.max()),
        median_ci_low_ms=ci[0] if ci else None,
        median_ci_high_ms=ci[1] if ci else None,
        cv=std / mean if mean > 0 else math.inf,
        throughput_ips=1000.0 / mean if mean > 0 else math.inf,
        total_duration_s=float(values.sum()) / 1000.0,
    )


def summarize_aggregate(stats: AggregateStats, *, population_std: bool = False) -> LatencySummary:
    """A summary of the statistics a native tool printed (µs in, milliseconds out).

    count, mean (the tool's avg), min and max are taken as printed; median/p90/p99 are the tool's
    own percentiles (its method, e.g. nearest rank, not type 7) and ``math.nan`` when it printed
    none. std: the tool's, converted to the sample std used for per-run samples
    (``std * sqrt(n / (n - 1))``) when ``population_std`` (benchmark_model's ``Stat`` divides by
    n); ``nan`` when not printed. No CI (it needs the samples). cv = std / mean;
    throughput_ips = 1000 / mean_ms; total_duration_s = count * mean, the time the timed runs
    took (what the tool's loop measured, without the gaps between runs).
    Raises ``ValueError`` without a positive count and an average.
    """
    if stats.count is None or stats.count < 1 or stats.avg is None:
        raise ValueError("an aggregate needs a positive count and an average")
    count = stats.count

    def ms(value_us: float | None) -> float:
        # via the decimal text, so 63743.2 us is 63.7432 ms as printed, not 63.743199999999995
        return float(Decimal(repr(value_us)) / 1000) if value_us is not None else math.nan

    mean = ms(stats.avg)
    std = ms(stats.std)
    if population_std and not math.isnan(std):
        std = std * math.sqrt(count / (count - 1)) if count > 1 else 0.0
    return LatencySummary(
        count=count,
        mean_ms=mean,
        std_ms=std,
        min_ms=ms(stats.min),
        median_ms=ms(stats.median),
        p90_ms=ms(stats.p90),
        p99_ms=ms(stats.p99),
        max_ms=ms(stats.max),
        median_ci_low_ms=None,
        median_ci_high_ms=None,
        cv=math.nan if math.isnan(std) else std / mean if mean > 0 else math.inf,
        throughput_ips=1000.0 / mean if mean > 0 else math.inf,
        total_duration_s=count * mean / 1000.0,
        source="aggregate",
    )


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test of ``a`` against ``b``: returns ``(U of a, p-value)``.

    Method: ``scipy.stats.mannwhitneyu(a, b, alternative="two-sided")`` with scipy's default
    ``method="auto"`` (exact distribution for small samples without ties, normal approximation
    with tie and continuity correction otherwise). Rank-based, so a few outliers do not decide it;
    used to test significance *before* a latency ratio is reported as a regression.
    """
    first, second = _as_array(a), _as_array(b)
    result = _scipy_stats.mannwhitneyu(first, second, alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def is_unstable(summary: LatencySummary, cv_threshold: float = 0.10) -> bool:
    """True when the coefficient of variation (std / mean) exceeds ``cv_threshold``."""
    return summary.cv > cv_threshold
