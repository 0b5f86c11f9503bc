"""Adapters for the vendors' native benchmark binaries.

``benchmark_model`` (TensorFlow Lite / LiteRT) and ``onnxruntime_perf_test``: build their command
lines from a job's settings, run them through any :class:`~harness.transport.base.Transport`, and
parse their text into the harness's one :class:`~harness.results.schema.RunnerDocument`.
"""

from harness.native.benchmark_model import (
    build_benchmark_model_argv,
    parse_benchmark_model_output,
    parse_benchmark_model_text,
)
from harness.native.common import (
    NativeOutputError,
    NativeParse,
    NativeToolError,
    PhaseStats,
    run_native_benchmark,
)
from harness.native.ort_perf_test import (
    build_ort_perf_test_argv,
    parse_ort_perf_test_output,
    parse_ort_perf_test_text,
)

__all__ = [
    "NativeOutputError",
    "NativeParse",
    "NativeToolError",
    "PhaseStats",
    "build_benchmark_model_argv",
    "build_ort_perf_test_argv",
    "parse_benchmark_model_output",
    "parse_benchmark_model_text",
    "parse_ort_perf_test_output",
    "parse_ort_perf_test_text",
    "run_native_benchmark",
]
