"""`compare_runs` on hand-made runs: real runner documents (the golden file) with seeded samples.

Each job goes through the same path as a measured one (document -> ``job_result_from_document``),
so validity, medians and device state are what the store would hold.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.analysis.compare import (
    CHECKED_SETTINGS,
    Comparison,
    Mark,
    compare_runs,
    ratio_ci,
)
from harness.errors import ConfigError, IncomparableRunsError
from harness.results.records import (
    JobResult,
    JobSettings,
    JobSpec,
    ModelArtifact,
    RunRecord,
    Verdict,
)
from harness.results.schema import parse_runner_document
from harness.results.summarize import failed_job_result, job_result_from_document

GOLDEN = Path(__file__).parent / "golden" / "runner_doc_v1.json"
SHA_A = "a" * 64
SHA_B = "b" * 64


def lognormal_ms(n: int, median_ms: float = 3.0, sigma: float = 0.05, seed: int = 0) -> list[float]:
    """Seeded lognormal latencies: the right-skewed shape real timings have."""
    rng = np.random.default_rng(seed)
    return [float(v) for v in rng.lognormal(math.log(median_ms), sigma, size=n)]


def make_job(
    job_index: int,
    samples_ms: list[float],
    *,
    model: str = "mobilenet",
    sha256: str = SHA_A,
    device: str = "local",
    threads: int | None = 2,
    provider: str = "cpu",
    runtime_version: str = "1.32.0",
    min_runs: int = 10,
    cpu_model: str = "AMD EPYC 7B13",
    governors: dict[str, str] | None = None,
) -> JobResult:
    """A job built from the golden runner document with these samples and settings."""
    doc: dict[str, Any] = copy.deepcopy(json.loads(GOLDEN.read_text()))
    latencies_ns = [round(ms * 1_000_000) for ms in samples_ms]
    doc["timing"]["latencies_ns"] = latencies_ns
    start = doc["timing"]["window_start_ns"]
    doc["timing"]["window_end_ns"] = start + sum(latencies_ns) + 1_000
    doc["runtime"]["version"] = runtime_version
    doc["model"]["sha256"] = sha256
    doc["settings"].update(threads=threads, provider=provider, min_runs=min_runs)
    doc["device_state"]["cpu_model"] = cpu_model
    if governors is not None:
        doc["device_state"]["governors"] = governors
    artifact = ModelArtifact(
        name=model,
        path=f"models/{model}.onnx",
        format="onnx",
        sha256=sha256,
        size_bytes=doc["model"]["size_bytes"],
    )
    settings = JobSettings(
        threads=threads,
        provider=provider,
        warmup_runs=3,
        min_runs=min_runs,
        min_duration_s=0.0,
        max_duration_s=10.0,
        shapes=(("input", "1x3x224x224"),),
    )
    spec = JobSpec(job_index=job_index, model=artifact, device_name=device, settings=settings)
    return job_result_from_document(spec, parse_runner_document(doc, origin="test"))


def make_failed_job(job_index: int, *, model: str = "mobilenet", sha256: str = SHA_A) -> JobResult:
    """A job whose device could not be reached: failed, INVALID, no samples."""
    ok = make_job(job_index, lognormal_ms(10), model=model, sha256=sha256)
    return failed_job_result(ok.spec, "device local unreachable")


def make_run(
    run_id: str, *jobs: JobResult, created_at: str = "2026-11-30T14:00:00+00:00"
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        created_at=created_at,
        command="harness bench mobilenet.onnx",
        harness_version="0.1.0",
        host="bench-host",
        jobs=tuple(jobs),
    )


def compare_samples(base: list[float], new: list[float], **kwargs: Any) -> Comparison:
    return compare_runs(
        make_run("base", make_job(0, base)), make_run("new", make_job(0, new)), **kwargs
    )


def test_identical_distributions_are_not_a_change() -> None:
    result = compare_samples(lognormal_ms(200, seed=1), lognormal_ms(200, seed=2))
    (pair,) = result.pairs
    assert pair.mark is Mark.NO_CHANGE and pair.change is Mark.NO_CHANGE
    assert pair.p_value is not None and pair.p_value >= 0.01
    assert pair.ratio_ci_low is not None and pair.ratio_ci_high is not None
    assert pair.ratio_ci_low <= 1.0 <= pair.ratio_ci_high
    assert "not significant" in pair.reason
    assert not result.has_regression and result.unmatched == ()


def test_twenty_percent_slower_is_a_regression_with_a_ci_above_one() -> None:
    result = compare_samples(lognormal_ms(200, seed=1), lognormal_ms(200, 3.6, seed=2))
    (pair,) = result.pairs
    assert pair.mark is Mark.SLOWER and pair.is_regression and result.has_regression
    assert pair.p_value is not None and pair.p_value < 1e-6
    assert pair.ratio is not None and 1.15 < pair.ratio < 1.25
    assert pair.ratio_ci_low is not None and pair.ratio_ci_low > 1.0
    assert pair.ratio_ci_high is not None and pair.ratio_ci_high > pair.ratio
    assert pair.base_median_ms == pytest.approx(float(np.median(lognormal_ms(200, seed=1))))
    assert "slower, significant" in pair.reason
    assert result.regressions == (pair,)


def test_twenty_percent_faster_is_an_improvement_not_a_regression() -> None:
    result = compare_samples(lognormal_ms(200, 3.6, seed=1), lognormal_ms(200, seed=2))
    (pair,) = result.pairs
    assert pair.mark is Mark.FASTER and not result.has_regression
    assert pair.ratio_ci_high is not None and pair.ratio_ci_high < 1.0


def test_two_percent_slower_is_significant_but_below_the_minimum_effect() -> None:
    result = compare_samples(lognormal_ms(1000, seed=1), lognormal_ms(1000, 3.06, seed=2))
    (pair,) = result.pairs
    assert pair.p_value is not None and pair.p_value < 0.01  # significant ...
    assert pair.mark is Mark.NO_CHANGE  # ... but smaller than 5 %
    assert "minimum effect" in pair.reason
    # the same data with a 1 % minimum effect is a regression
    stricter = compare_samples(
        lognormal_ms(1000, seed=1), lognormal_ms(1000, 3.06, seed=2), min_effect=0.01
    )
    assert stricter.pairs[0].mark is Mark.SLOWER


def test_large_effect_without_enough_samples_is_not_significant() -> None:
    base = make_run("base", make_job(0, lognormal_ms(3, seed=1), min_runs=3))
    result = compare_runs(
        base, make_run("new", make_job(0, lognormal_ms(3, 4.5, seed=2), min_runs=3))
    )
    (pair,) = result.pairs
    assert pair.ratio is not None and pair.ratio > 1.3
    assert pair.mark is Mark.NO_CHANGE  # three samples cannot reach p < 0.01
    assert pair.ratio_ci_low is None  # below MIN_CI_SAMPLES: no interval


def test_failed_or_invalid_side_is_marked_x_and_not_tested() -> None:
    base = make_run(
        "base",
        make_job(0, lognormal_ms(50)),
        make_job(1, lognormal_ms(50), model="b", sha256=SHA_B),
    )
    failed = make_failed_job(0)
    invalid = make_job(1, lognormal_ms(20), model="b", sha256=SHA_B, min_runs=50)
    assert invalid.validity.verdict is Verdict.INVALID
    result = compare_runs(base, make_run("new", failed, invalid))
    first, second = result.pairs
    assert first.mark is Mark.FAILED and first.p_value is None and first.ratio is None
    assert "new job 0 failed: device local unreachable" in first.reason
    assert first.base_median_ms is not None and first.new_median_ms is None
    assert second.mark is Mark.FAILED and "INVALID" in second.reason
    assert not result.has_regression and result.count(Mark.FAILED) == 2


def test_runtime_version_difference_is_refused_naming_the_setting() -> None:
    base = make_run("base", make_job(0, lognormal_ms(50, seed=1)))
    new = make_run("new", make_job(0, lognormal_ms(50, 3.9, seed=2), runtime_version="1.33.0"))
    with pytest.raises(IncomparableRunsError) as caught:
        compare_runs(base, new)
    line = caught.value.one_line()
    assert "runtime_version" in line and "'1.32.0'" in line and "'1.33.0'" in line
    assert "mobilenet on local" in line and "--allow-different runtime_version" in line
    assert "\n" not in line

    allowed = compare_runs(base, new, allow=["runtime_version"])
    (pair,) = allowed.pairs
    assert pair.mark is Mark.DIFFERENT_SETUP and pair.change is Mark.SLOWER
    assert [d.setting for d in pair.differences] == ["runtime_version"]
    assert "1.32.0 -> 1.33.0" in pair.reason
    # knowingly accepting a different setup does not hide a regression
    assert allowed.has_regression

    lenient = compare_runs(base, new, strict=False)
    assert lenient.pairs[0].mark is Mark.DIFFERENT_SETUP


def test_every_refused_setting_is_in_the_hint() -> None:
    base = make_run("base", make_job(0, lognormal_ms(30)))
    new = make_run(
        "new", make_job(0, lognormal_ms(30), runtime_version="1.0", cpu_model="Cortex-A76")
    )
    with pytest.raises(IncomparableRunsError) as caught:
        compare_runs(base, new)
    assert caught.value.hint is not None
    assert "--allow-different runtime_version" in caught.value.hint
    assert "--allow-different cpu_model" in caught.value.hint
    # allowing one is not enough
    with pytest.raises(IncomparableRunsError, match="cpu_model"):
        compare_runs(base, new, allow=["runtime_version"])


def test_different_threads_are_different_jobs_not_a_pair() -> None:
    base = make_run("base", make_job(0, lognormal_ms(30), threads=1))
    new = make_run("new", make_job(0, lognormal_ms(30, 6.0), threads=2))
    result = compare_runs(base, new)
    assert result.pairs == ()
    assert [(job.side, job.key.threads) for job in result.unmatched] == [("base", 1), ("new", 2)]
    assert not result.has_regression


def test_unmatched_jobs_are_listed_on_their_side() -> None:
    base = make_run(
        "base",
        make_job(0, lognormal_ms(30)),
        make_job(1, lognormal_ms(30), model="resnet", sha256=SHA_B),
    )
    new = make_run(
        "new",
        make_job(0, lognormal_ms(30, seed=5)),
        make_job(1, lognormal_ms(30), device="rpi5"),
    )
    result = compare_runs(base, new)
    assert [(p.base_job_index, p.new_job_index) for p in result.pairs] == [(0, 0)]
    assert [(u.side, u.job_index, u.model_name, u.key.device_name) for u in result.unmatched] == [
        ("base", 1, "resnet", "local"),
        ("new", 1, "mobilenet", "rpi5"),
    ]


def test_repeated_keys_pair_in_run_order() -> None:
    base = make_run("base", make_job(0, lognormal_ms(30, 3.0)), make_job(1, lognormal_ms(30, 5.0)))
    new = make_run("new", make_job(0, lognormal_ms(30, 3.0, seed=9)))
    result = compare_runs(base, new)
    assert [(p.base_job_index, p.new_job_index) for p in result.pairs] == [(0, 0)]
    assert [(u.side, u.job_index) for u in result.unmatched] == [("base", 1)]


def test_by_name_pairs_different_files_and_checks_their_sha256() -> None:
    base = make_run("base", make_job(0, lognormal_ms(40), sha256=SHA_A))
    new = make_run("new", make_job(0, lognormal_ms(40, seed=3), sha256=SHA_B))
    assert compare_runs(base, new).pairs == ()  # by sha256: two different models
    with pytest.raises(IncomparableRunsError, match=r"model_sha256 differs: 'a{12}' in run base"):
        compare_runs(base, new, by_name=True)
    result = compare_runs(base, new, by_name=True, allow=["model_sha256"])
    assert result.pairs[0].mark is Mark.DIFFERENT_SETUP and result.pairs[0].key.model == "mobilenet"


def test_governors_are_checked_only_when_both_runs_recorded_them() -> None:
    base = make_run("base", make_job(0, lognormal_ms(30), governors={}))
    new = make_run("new", make_job(0, lognormal_ms(30, seed=4), governors={"cpu0": "powersave"}))
    assert compare_runs(base, new).pairs[0].mark is Mark.NO_CHANGE
    recorded = make_run("base", make_job(0, lognormal_ms(30), governors={"cpu0": "performance"}))
    with pytest.raises(IncomparableRunsError, match="governors"):
        compare_runs(recorded, new)


def test_failed_pairs_are_not_refused_for_settings_they_never_reached() -> None:
    base = make_run("base", make_job(0, lognormal_ms(30)))
    new = make_run("new", make_failed_job(0))  # the failure recorded no runtime at all
    assert new.jobs[0].runtime_version is None
    assert compare_runs(base, new).pairs[0].mark is Mark.FAILED


def test_bad_parameters_are_config_errors() -> None:
    run = make_run("r", make_job(0, lognormal_ms(10)))
    with pytest.raises(ConfigError, match="alpha"):
        compare_runs(run, run, alpha=1.5)
    with pytest.raises(ConfigError, match="min effect"):
        compare_runs(run, run, min_effect=-0.1)
    with pytest.raises(ConfigError, match="threads") as caught:
        compare_runs(run, run, allow=["threads"])
    assert caught.value.hint is not None and "runtime_version" in caught.value.hint
    assert "threads" not in CHECKED_SETTINGS  # threads is part of the pairing key


def test_comparison_is_deterministic_and_ci_level_follows_alpha() -> None:
    base, new = lognormal_ms(100, seed=1), lognormal_ms(100, 3.3, seed=2)
    first = compare_samples(base, new)
    assert first == compare_samples(base, new)
    assert first.ci_level == pytest.approx(0.99)
    wider = first.pairs[0]
    narrower = compare_samples(base, new, alpha=0.05).pairs[0]
    assert wider.ratio_ci_low is not None and narrower.ratio_ci_low is not None
    assert wider.ratio_ci_high is not None and narrower.ratio_ci_high is not None
    assert wider.ratio_ci_low < narrower.ratio_ci_low < narrower.ratio_ci_high < wider.ratio_ci_high


def test_ratio_ci_covers_the_true_ratio() -> None:
    # 1.25x slower in truth; the 95 % interval from 300 samples a side contains it
    low_high = ratio_ci(lognormal_ms(300, seed=11), lognormal_ms(300, 3.75, seed=12))
    assert low_high is not None
    assert low_high[0] < 1.25 < low_high[1]
    assert ratio_ci(lognormal_ms(9), lognormal_ms(50)) is None
