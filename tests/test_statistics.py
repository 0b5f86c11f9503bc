"""Latency statistics against values computed by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis.statistics import (
    MIN_CI_SAMPLES,
    bootstrap_median_ci,
    bootstrap_medians,
    is_unstable,
    mann_whitney_u,
    percentile,
    summarize_latencies,
)


def test_summary_of_five_samples_matches_hand_computation() -> None:
    # sorted: 10 11 12 13 14; n = 5; mean = 60 / 5 = 12
    # squared deviations 4 1 0 1 4 = 10; sample variance 10 / (5 - 1) = 2.5; std = sqrt(2.5)
    # type 7: h = (n - 1) q; p50: h = 2 -> 12; p90: h = 3.6 -> 13 + 0.6 * (14 - 13) = 13.6
    # p99: h = 3.96 -> 13.96; cv = 1.58114 / 12 = 0.131762; throughput = 1000 / 12 = 83.333
    s = summarize_latencies([12.0, 10.0, 14.0, 11.0, 13.0])
    assert s.count == 5
    assert s.mean_ms == pytest.approx(12.0)
    assert s.std_ms == pytest.approx(1.5811388300841898)
    assert (s.min_ms, s.median_ms, s.max_ms) == (10.0, 12.0, 14.0)
    assert s.p90_ms == pytest.approx(13.6)
    assert s.p99_ms == pytest.approx(13.96)
    assert s.cv == pytest.approx(0.1317615692)
    assert s.throughput_ips == pytest.approx(83.3333333)
    assert s.total_duration_s == pytest.approx(0.060)  # 60 ms
    # 5 < MIN_CI_SAMPLES: no interval rather than a meaningless one
    assert s.median_ci_low_ms is None and s.median_ci_high_ms is None


def test_even_count_median_and_p90() -> None:
    # sorted 1 2 3 4: p50: h = 1.5 -> 2 + 0.5 * 1 = 2.5; p90: h = 2.7 -> 3 + 0.7 * 1 = 3.7
    s = summarize_latencies([4.0, 1.0, 3.0, 2.0])
    assert s.median_ms == pytest.approx(2.5)
    assert s.p90_ms == pytest.approx(3.7)
    # p99: h = 2.97 -> 3.97; std: deviations 2.25 .25 .25 2.25 = 5 / 3 -> sqrt(5/3)
    assert s.p99_ms == pytest.approx(3.97)
    assert s.std_ms == pytest.approx(math.sqrt(5 / 3))


def test_percentile_type7() -> None:
    # 1..10, q = 25: h = 9 * 0.25 = 2.25 -> x[2] + 0.25 * (x[3] - x[2]) = 3 + 0.25 = 3.25
    assert percentile([float(v) for v in range(10, 0, -1)], 25) == pytest.approx(3.25)
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_single_sample_has_zero_std_and_empty_is_refused() -> None:
    s = summarize_latencies([2.0])
    assert (s.std_ms, s.cv, s.median_ms, s.throughput_ips) == (0.0, 0.0, 2.0, 500.0)
    with pytest.raises(ValueError, match="non-empty"):
        summarize_latencies([])


def test_non_positive_mean_gives_infinite_cv_not_a_made_up_number() -> None:
    s = summarize_latencies([0.0, 0.0, 0.0])
    assert math.isinf(s.cv) and math.isinf(s.throughput_ips)


def _lognormal_ms(n: int, seed: int) -> list[float]:
    return list(np.random.default_rng(seed).lognormal(mean=1.0, sigma=0.2, size=n))


def test_ci_contains_the_median_and_respects_the_minimum() -> None:
    samples = _lognormal_ms(200, seed=1)
    s = summarize_latencies(samples)
    assert s.median_ci_low_ms is not None and s.median_ci_high_ms is not None
    assert s.median_ci_low_ms <= s.median_ms <= s.median_ci_high_ms
    assert s.median_ci_low_ms < s.median_ci_high_ms
    assert bootstrap_median_ci(samples[: MIN_CI_SAMPLES - 1]) is None
    assert bootstrap_median_ci(samples[:MIN_CI_SAMPLES]) is not None


def test_ci_narrows_with_more_samples() -> None:
    def width(n: int) -> float:
        ci = bootstrap_median_ci(_lognormal_ms(n, seed=2))
        assert ci is not None
        return ci[1] - ci[0]

    # the median's standard error shrinks like 1 / sqrt(n): 16x the samples, about 1/4 the width
    assert width(1600) < 0.5 * width(100)


def test_ci_is_deterministic_for_a_seed() -> None:
    samples = _lognormal_ms(100, seed=3)
    assert bootstrap_median_ci(samples, seed=5) == bootstrap_median_ci(samples, seed=5)
    # the seed is used: resample medians sit on a few order statistics, so two seeds can give the
    # same bounds; over several seeds at least two must differ
    assert len({bootstrap_median_ci(samples, n_boot=200, seed=s) for s in range(5)}) > 1
    assert summarize_latencies(samples) == summarize_latencies(samples)


def test_ci_level_widens_the_interval() -> None:
    samples = _lognormal_ms(300, seed=4)
    ci90 = bootstrap_median_ci(samples, ci_level=0.90)
    ci99 = bootstrap_median_ci(samples, ci_level=0.99)
    assert ci90 is not None and ci99 is not None
    assert ci99[0] <= ci90[0] and ci90[1] <= ci99[1]


@pytest.mark.parametrize("n", [10, 101, 100])  # odd and even n take different paths
def test_bootstrap_medians_match_plain_resampling(n: int) -> None:
    # the order-statistic draw must have the distribution of the median of n values drawn with
    # replacement; compare their CDFs at several points with 20 000 draws each (Monte Carlo
    # standard error of a difference ~0.005, so 0.02 is four of them)
    x = np.asarray(_lognormal_ms(n, seed=n))
    fast = bootstrap_medians(list(x), n_boot=20_000, seed=1)
    rng = np.random.default_rng(2)
    plain = np.median(x[rng.integers(0, n, size=(20_000, n))], axis=1)
    for t in np.quantile(plain, [0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975]):
        assert abs(np.mean(fast <= t) - np.mean(plain <= t)) < 0.02
    if n % 2:  # an odd resample's median is one of the samples
        assert set(fast.tolist()) <= set(x.tolist())


def test_bootstrap_of_a_million_samples() -> None:
    samples = _lognormal_ms(1_000_000, seed=6)
    ci = bootstrap_median_ci(samples)
    assert ci is not None
    median = float(np.median(samples))
    assert ci[0] <= median <= ci[1]
    assert ci[1] - ci[0] < 0.005 * median


def test_mann_whitney_exact_small_case() -> None:
    # a entirely below b: U(a) = 0; exact two-sided p = 2 / C(6, 3) = 2 / 20 = 0.1
    u, p = mann_whitney_u([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert u == 0.0
    assert p == pytest.approx(0.1)


def test_mann_whitney_detects_a_shift_and_not_noise() -> None:
    base = _lognormal_ms(200, seed=7)
    slower = [v * 1.10 for v in _lognormal_ms(200, seed=8)]
    same = _lognormal_ms(200, seed=9)
    assert mann_whitney_u(base, slower)[1] < 0.01
    assert mann_whitney_u(base, same)[1] > 0.01


def test_is_unstable_uses_the_cv_threshold() -> None:
    s = summarize_latencies([12.0, 10.0, 14.0, 11.0, 13.0])  # cv = 0.1318, computed above
    assert is_unstable(s)  # default threshold 0.10
    assert not is_unstable(s, cv_threshold=0.15)
