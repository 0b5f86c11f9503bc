"""`runner: native` end to end: profile -> run_benchmark -> pushed binary -> SQLite -> report.

The binary is the stand-in in tests/fixtures/native_bin/ (a real subprocess that checks its flags
like the tool and replays a recorded output from tests/golden/native/). It is pushed
content-addressed into the device work directory like a user's binary, so it runs from there;
the profile's `env` tells it which recording to print (NATIVE_STANDIN_OUTPUT) and where to log
its argv. Expected numbers are read off the recordings by eye.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import deploy
from harness.benchmark import SettingsOverrides, load_models, plan_jobs, run_benchmark
from harness.errors import ConfigError, ProfileError, RunnerError
from harness.native import NativeToolError
from harness.native_job import NO_EVAL_NOTE, run_native_job
from harness.profiles import DeviceProfile, load_profile_file
from harness.reporting import write_report
from harness.results.records import JobSpec, RunRecord
from harness.results.schema import RunnerDocument
from harness.results.store import ResultStore
from harness.transport.local import LocalTransport

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / "tests" / "fixtures" / "native_bin"
GOLDEN = ROOT / "tests" / "golden" / "native"
TFLITE = ROOT / "harness" / "demo" / "mobilenet_tiny.tflite"
ONNX = ROOT / "harness" / "demo" / "digits_mlp.onnx"


def _profile(
    tmp_path: Path,
    name: str,
    tool: str,
    recording: str,
    *,
    runtime: dict[str, Any] | None = None,
    bench: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> DeviceProfile:
    """A profile YAML written and loaded like a user's, running the stand-in binary."""
    data = {
        "name": name,
        "work_dir": str(tmp_path / "work"),
        "runner": "native",
        "native": {
            "tool": tool,
            "binary": str(BIN / tool),
            "env": {
                "NATIVE_STANDIN_OUTPUT": str(GOLDEN / recording),
                "NATIVE_STANDIN_ARGV_LOG": str(tmp_path / f"{name}.argv.json"),
                **(env or {}),
            },
        },
        "runtime": runtime or {},
        "bench": {"timeout_s": 60, **(bench or {})},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_profile_file(path)


def _jobs(pairs: list[tuple[Path, DeviceProfile]]) -> list[JobSpec]:
    jobs: list[JobSpec] = []
    for model, profile in pairs:
        [job] = plan_jobs(load_models([model]), [profile], SettingsOverrides())
        jobs.append(replace(job, job_index=len(jobs)))
    return jobs


def _run(tmp_path: Path, pairs: list[tuple[Path, DeviceProfile]]) -> RunRecord:
    """run_benchmark into a real SQLite store, then the run as loaded back from it."""
    profiles = list({p.name: p for _, p in pairs}.values())
    with ResultStore(tmp_path / "results.sqlite") as store:
        record = run_benchmark(_jobs(pairs), profiles, store, command="harness bench (test)")
        return store.load_run(record.run_id)


def _bm_profile(tmp_path: Path, **kwargs: Any) -> DeviceProfile:
    return _profile(
        tmp_path,
        "phone-bm",
        "benchmark_model",
        kwargs.pop("recording", "bm_b_info_percentiles.txt"),
        runtime={"threads": 4, "provider": "xnnpack"},
        bench={"warmup_runs": 5, "min_runs": 1000, "min_duration_s": 1.0, "max_duration_s": 120},
        **kwargs,
    )


def _ort_profile(tmp_path: Path, **bench: Any) -> DeviceProfile:
    return _profile(
        tmp_path,
        "board-ort",
        "onnxruntime_perf_test",
        "ort_a_current_stats.txt",
        runtime={"threads": 1, "provider": "cpu"},
        bench={"warmup_runs": 1, "min_runs": 100, "min_duration_s": 0, **bench},
    )


def test_native_jobs_through_run_benchmark_store_and_report(tmp_path: Path) -> None:
    bm, ort = _bm_profile(tmp_path), _ort_profile(tmp_path)
    loaded = _run(tmp_path, [(TFLITE, bm), (ONNX, ort)])
    tflite_job, onnx_job = loaded.jobs
    assert [j.status for j in loaded.jobs] == ["ok", "ok"], [j.error for j in loaded.jobs]

    # bm_b_info_percentiles.txt: Init: 119515, First inference: 87112, and the regular Stat line
    # count=1000 first=52162 curr=49785 min=49088 max=686105 avg=63743.2 std=60716
    #   p5=49620 median=51891 p95=68628
    lat = tflite_job.latency
    assert lat is not None
    assert (lat.count, lat.mean_ms, lat.median_ms, lat.min_ms, lat.max_ms) == (
        1000,
        63.7432,
        51.891,
        49.088,
        686.105,
    )
    assert lat.std_ms == pytest.approx(60.716 * math.sqrt(1000 / 999), rel=1e-12)
    assert lat.median_ci_low_ms is None and lat.median_ci_high_ms is None
    assert math.isnan(lat.p90_ms) and math.isnan(lat.p99_ms)  # not printed: not invented
    assert (tflite_job.init_ms, tflite_job.first_inference_ms) == (119.515, 87.112)
    assert tflite_job.samples_ms == ()
    assert "aggregate statistics from benchmark_model: no per-run samples" in (
        tflite_job.validity.warnings
    )
    doc = tflite_job.raw_document
    assert doc is not None
    assert doc["raw_output"] == (GOLDEN / "bm_b_info_percentiles.txt").read_text()
    assert doc["model"]["sha256"] == tflite_job.spec.model.sha256
    assert doc["timing"]["latencies_ns_labels"] == ["first", "last"]
    assert doc["timing"]["latencies_ns"] == [52_162_000, 49_785_000]
    assert (doc["runtime"]["name"], doc["producer"]["name"]) == ("tflite", "benchmark_model")

    # ort_a_current_stats.txt: Session creation 0.0102016 s, First inference 2 ms, 100 requests,
    # average 1.85739 ms, Min 0.00183404 s, Max 0.00190312 s, P50 0.00185674 s,
    # P90 0.00187215 s, P99 0.00190312 s, Peak working set size: 36696064 bytes
    lat = onnx_job.latency
    assert lat is not None
    assert (lat.count, lat.mean_ms, lat.median_ms, lat.p90_ms, lat.p99_ms) == (
        100,
        1.85739,
        1.85674,
        1.87215,
        1.90312,
    )
    assert (lat.min_ms, lat.max_ms) == (1.83404, 1.90312)
    assert math.isnan(lat.std_ms)
    assert (onnx_job.init_ms, onnx_job.first_inference_ms) == (10.2016, 2.0)
    assert onnx_job.peak_memory_kb == 35836  # 36696064 B / 1024, rounded
    assert onnx_job.runtime_name == "onnxruntime"

    # the argv each binary received: built from the profile's settings, run from the work dir
    bm_argv = json.loads((tmp_path / "phone-bm.argv.json").read_text())
    binary = Path(bm_argv[0])
    assert binary.parent.parent == tmp_path / "work" / "bin" and binary.name == "benchmark_model"
    assert os.access(binary, os.X_OK)
    assert bm_argv[1].startswith(f"--graph={tmp_path / 'work' / 'models'}")
    assert bm_argv[2:] == [
        "--num_threads=4",
        "--use_xnnpack=true",
        "--warmup_runs=5",
        "--num_runs=1000",
        "--min_secs=1",
        "--max_secs=120",
    ]
    ort_argv = json.loads((tmp_path / "board-ort.argv.json").read_text())
    flags = ["-e", "cpu", "-m", "times", "-r", "100", "-x", "1", "-S", "0", "-I", "-s"]
    assert ort_argv[1:] == [*flags, ort_argv[-1]]
    assert ort_argv[-1].endswith("/digits_mlp.onnx")

    paths = write_report(loaded, tmp_path / "report")
    rows = list(csv.DictReader(paths.results_csv.open()))
    assert [float(r["median_ms"]) for r in rows] == [51.891, 1.85674]
    assert [int(r["samples"]) for r in rows] == [1000, 100]
    assert rows[0]["p90_ms"] == ""  # not printed by the tool: an empty cell, not a number
    html = paths.index_html.read_text()
    assert "aggregate statistics from onnxruntime_perf_test: no per-run samples" in html
    assert paths.samples_csv.read_text().strip().count("\n") == 0  # a header, no made-up samples


def test_a_tool_that_fails_is_a_failed_job_keeping_its_output(tmp_path: Path) -> None:
    bm = _bm_profile(tmp_path, env={"NATIVE_STANDIN_EXIT": "134"})
    [job] = _run(tmp_path, [(TFLITE, bm)]).jobs
    assert job.status == "failed"
    assert job.error is not None and "exited with code 134" in job.error
    doc = job.raw_document
    assert doc is not None and doc["status"] == "error"
    assert doc["raw_output"] == (GOLDEN / "bm_b_info_percentiles.txt").read_text()


def test_output_in_an_unknown_format_is_a_failed_job_keeping_the_text(tmp_path: Path) -> None:
    bm = _bm_profile(tmp_path, recording="ort_a_current_stats.txt")
    [job] = _run(tmp_path, [(TFLITE, bm)]).jobs
    assert job.status == "failed" and job.error is not None
    assert "no timing summary" in job.error
    assert job.raw_document is not None
    assert job.raw_document["raw_output"] == (GOLDEN / "ort_a_current_stats.txt").read_text()
    assert job.raw_document["error"]["kind"] == "output_format"


def test_settings_the_tool_cannot_honour_fail_the_job_clearly(tmp_path: Path) -> None:
    ort = _ort_profile(tmp_path, warmup_runs=10)
    [job] = _run(tmp_path, [(ONNX, ort)]).jobs
    assert job.status == "failed" and job.error is not None
    assert "always runs exactly one warm-up, cannot do 10" in job.error
    assert not (tmp_path / "board-ort.argv.json").exists()  # refused before anything ran


def _direct(
    tmp_path: Path,
    profile: DeviceProfile,
    model: Path,
    command_prefix: tuple[str, ...] | list[str] = (),
    **spec_changes: Any,
) -> RunnerDocument:
    """run_native_job itself on the local device, the model deployed as the session does."""
    transport = LocalTransport()
    [spec] = plan_jobs(load_models([model]), [profile], SettingsOverrides())
    spec = replace(spec, **spec_changes)
    remote = deploy.deploy_file(transport, model, str(tmp_path / "work" / "models"), timeout_s=60)
    return run_native_job(
        transport,
        profile,
        spec,
        work_dir=str(tmp_path / "work"),
        remote_model=remote.remote_path,
        command_prefix=command_prefix,
    )


def test_an_eval_set_is_noted_as_not_evaluated(tmp_path: Path) -> None:
    doc = _direct(tmp_path, _ort_profile(tmp_path), ONNX, eval_file=str(tmp_path / "eval.npz"))
    assert NO_EVAL_NOTE in doc.execution.notes
    assert doc.eval_output is None


def test_a_tool_outliving_the_timeout_is_killed(tmp_path: Path) -> None:
    slow = _profile(
        tmp_path,
        "slow",
        "onnxruntime_perf_test",
        "ort_a_current_stats.txt",
        bench={"warmup_runs": 1, "min_runs": 100, "min_duration_s": 0, "timeout_s": 1},
        env={"NATIVE_STANDIN_SLEEP_S": "20"},
    )
    with pytest.raises(RunnerError, match="did not finish within 1 s and was killed"):
        _direct(tmp_path, slow, ONNX)


def test_wrong_model_format_and_missing_binary_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="benchmark_model runs tflite models"):
        _direct(tmp_path, _bm_profile(tmp_path), ONNX)
    profile = _bm_profile(tmp_path)
    assert profile.native is not None
    native = profile.native.model_copy(update={"binary": "/no/such/tool"})
    gone = profile.model_copy(update={"native": native})
    with pytest.raises(ConfigError, match="native tool binary /no/such/tool does not exist"):
        _direct(tmp_path, gone, TFLITE)


def test_a_native_profile_needs_its_tool(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "runner": "native"}))
    with pytest.raises(ProfileError, match="runner: native needs a `native:` section"):
        load_profile_file(path)
    path.write_text(yaml.safe_dump({"name": "p", "native": {"tool": "trtexec", "binary": "/x"}}))
    with pytest.raises(ProfileError, match=r"native\.tool"):
        load_profile_file(path)
    path.write_text(yaml.safe_dump({"name": "p"}))
    assert (load_profile_file(path).runner, load_profile_file(path).native) == ("python", None)


def test_a_command_prefix_runs_the_tool_and_errors_still_name_the_tool(tmp_path: Path) -> None:
    # device preparation's CPU affinity comes as a prefix such as `taskset 0x1`
    ort = _ort_profile(tmp_path)
    doc = _direct(tmp_path, ort, ONNX, command_prefix=["taskset", "0x1"])
    assert doc.timing is not None and doc.timing.aggregate_us is not None
    assert doc.timing.aggregate_us.count == 100
    failing = _profile(
        tmp_path,
        "failing",
        "onnxruntime_perf_test",
        "ort_a_current_stats.txt",
        bench={"warmup_runs": 1, "min_runs": 100, "min_duration_s": 0},
        env={"NATIVE_STANDIN_EXIT": "3"},
    )
    with pytest.raises(NativeToolError, match="onnxruntime_perf_test on local exited with code 3"):
        _direct(tmp_path, failing, ONNX, command_prefix=["taskset", "0x1"])
