"""Native tools end to end: argv built from settings -> real subprocess -> parse -> validated doc.

The binary is the stand-in in tests/fixtures/native_bin/ (no real benchmark_model can run on
this host): it checks its flags like the tool and replays a recorded output from
tests/golden/native/, so the command line, the transport, exit codes, stderr and the parser are
all exercised for real.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import pytest

from harness.errors import DeviceTimeoutError
from harness.native import (
    NativeOutputError,
    NativeToolError,
    build_benchmark_model_argv,
    build_ort_perf_test_argv,
    parse_benchmark_model_output,
    parse_ort_perf_test_output,
    run_native_benchmark,
)
from harness.results.schema import ModelInfo, RunnerDocument, Settings, parse_runner_document
from harness.transport.local import LocalTransport

BIN = Path(__file__).parent / "fixtures" / "native_bin"
GOLDEN = Path(__file__).parent / "golden" / "native"


def _model(tmp_path: Path, name: str) -> ModelInfo:
    path = tmp_path / name
    path.write_bytes(b"stand-in model bytes, never read by a runtime")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if name.endswith(".onnx"):
        return ModelInfo(path=str(path), format="onnx", sha256=digest, size_bytes=len(data))
    return ModelInfo(path=str(path), format="tflite", sha256=digest, size_bytes=len(data))


def _bm_run(
    tmp_path: Path, settings: Settings, *, extra_args: tuple[str, ...] = (), timeout_s: float = 30
) -> tuple[list[str], RunnerDocument]:
    model = _model(tmp_path, "model.tflite")
    argv = build_benchmark_model_argv(
        str(BIN / "benchmark_model"),
        model.path,
        threads=settings.threads,
        provider=settings.provider,
        warmup_runs=settings.warmup_runs,
        min_runs=settings.min_runs,
        min_duration_s=settings.min_duration_s,
        max_duration_s=settings.max_duration_s,
        shapes=settings.shapes or None,
        extra_args=extra_args,
    )
    parse = functools.partial(parse_benchmark_model_output, model=model, settings=settings)
    return argv, run_native_benchmark(LocalTransport(), argv, timeout_s=timeout_s, parse=parse)


def test_benchmark_model_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "argv.json"
    monkeypatch.setenv("NATIVE_STANDIN_ARGV_LOG", str(log))
    settings = Settings(
        threads=4, provider="xnnpack", warmup_runs=5, min_runs=1000, min_duration_s=1.0
    )
    argv, doc = _bm_run(tmp_path, settings)
    assert json.loads(log.read_text()) == argv  # the binary got exactly the argv that was built
    stored = parse_runner_document(doc.to_json_dict(), origin="benchmark_model")
    assert stored == doc
    assert doc.raw_output == (GOLDEN / "bm_b_info_percentiles.txt").read_text()  # stderr, verbatim
    timing = doc.to_json_dict()["timing"]
    assert (timing["init_ms"], timing["first_inference_ms"]) == (119.515, 87.112)
    assert (timing["aggregate_us"]["count"], timing["aggregate_us"]["avg"]) == (1000, 63743.2)
    assert doc.settings.threads == 4
    assert doc.model.sha256 is not None


def test_benchmark_model_gpu_flags_reach_the_binary(tmp_path: Path) -> None:
    _, doc = _bm_run(tmp_path, Settings(threads=2, provider="gpu", warmup_runs=1, min_runs=50))
    parse_runner_document(doc.to_json_dict())
    assert doc.execution.providers_requested == ["gpu"]
    assert doc.execution.providers_used == ["gpu"]
    assert doc.execution.fallback_to_cpu is False
    assert doc.to_json_dict()["timing"]["aggregate_us"]["avg"] == 309350.0


def test_ort_perf_test_end_to_end(tmp_path: Path) -> None:
    model = _model(tmp_path, "model.onnx")
    settings = Settings(threads=1, provider="cpu", warmup_runs=1, min_runs=100, seed=3)
    argv = build_ort_perf_test_argv(
        str(BIN / "onnxruntime_perf_test"),
        model.path,
        threads=settings.threads,
        provider=settings.provider,
        warmup_runs=settings.warmup_runs,
        min_runs=settings.min_runs,
        min_duration_s=settings.min_duration_s,
        seed=settings.seed,
    )
    parse = functools.partial(parse_ort_perf_test_output, model=model, settings=settings)
    doc = run_native_benchmark(LocalTransport(), argv, timeout_s=30, parse=parse)
    assert parse_runner_document(doc.to_json_dict()) == doc
    assert doc.raw_output == (GOLDEN / "ort_a_current_stats.txt").read_text()  # stdout, verbatim
    assert doc.to_json_dict()["timing"]["aggregate_us"]["avg"] == 1857.39
    assert doc.memory.peak_rss_kb == 35836


def test_non_zero_exit_is_an_error_with_stderr_and_raw_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NATIVE_STANDIN_EXIT", "134")
    with pytest.raises(
        NativeToolError, match=r"benchmark_model on local exited with code 134: .*Memory footprint"
    ) as info:
        _bm_run(tmp_path, Settings(min_runs=50))
    assert info.value.exit_code == 134
    assert info.value.raw_output == (GOLDEN / "bm_b_info_percentiles.txt").read_text()


def test_a_flag_the_binary_refuses_is_reported(tmp_path: Path) -> None:
    with pytest.raises(NativeToolError, match="code 2: ERROR: Unconsumed cmdline flags: --bogus=1"):
        _bm_run(tmp_path, Settings(min_runs=50), extra_args=("--bogus=1",))


def test_missing_binary_is_exit_127(tmp_path: Path) -> None:
    parse = functools.partial(
        parse_benchmark_model_output, model=_model(tmp_path, "m.tflite"), settings=Settings()
    )
    with pytest.raises(NativeToolError, match="code 127") as info:
        run_native_benchmark(
            LocalTransport(), [str(tmp_path / "no_such_tool")], timeout_s=10, parse=parse
        )
    assert info.value.exit_code == 127


def test_timeout_kills_the_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NATIVE_STANDIN_SLEEP_S", "20")
    with pytest.raises(DeviceTimeoutError):
        _bm_run(tmp_path, Settings(min_runs=50), timeout_s=1.0)


def test_output_in_an_unknown_format_keeps_the_raw_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "NATIVE_STANDIN_OUTPUT", "ort_a_current_stats.txt"
    )  # not benchmark_model text
    with pytest.raises(NativeOutputError, match="no timing summary") as info:
        _bm_run(tmp_path, Settings(min_runs=50))
    assert info.value.raw_output == (GOLDEN / "ort_a_current_stats.txt").read_text()
