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
  to mean anything and the bounds are ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy import stats as _scipy_stats

from harness.results.records import LatencySummary

MIN_CI_SAMPLES = 10
"""Fewest samples for which :func:`bootstrap_median_ci` reports an interval."""

# Resamples are drawn in chunks of at most this many values so that a 100 000-sample job does
# not allocate an n_boot x n index matrix (1.6 GB) at once.
_BOOT_CHUNK_VALUES = 2_000_000


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


def bootstrap_median_ci(
    samples: Sequence[float], *, ci_level: float = 0.95, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float] | None:
    """Percentile-bootstrap confidence interval of the median, or None below MIN_CI_SAMPLES.

    Method: draw ``n_boot`` resamples of size n with replacement from ``samples`` using
    ``numpy.random.default_rng(seed)`` (so the interval is reproducible), compute each
    resample's median, and return the type-7 percentiles ``100 * (1 - ci_level) / 2`` and
    ``100 * (1 + ci_level) / 2`` of those medians.
    """
    if not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be within (0, 1), got {ci_level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    values = _as_array(samples)
    n = values.size
    if n < MIN_CI_SAMPLES:
        return None
    rng = np.random.default_rng(seed)
    medians = np.empty(n_boot, dtype=np.float64)
    rows_per_chunk = max(1, _BOOT_CHUNK_VALUES // n)
    # int32 indices: drawing and gathering them is several times faster than int64
    index_type = np.int32 if n < 2**31 else np.int64
    for start in range(0, n_boot, rows_per_chunk):
        rows = min(rows_per_chunk, n_boot - start)
        idx = rng.integers(0, n, size=(rows, n), dtype=index_type)
        medians[start : start + rows] = np.median(values[idx], axis=1)
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
