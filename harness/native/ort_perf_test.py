"""Adapter for ``onnxruntime_perf_test``: its command line and its text output.

Formats understood (samples in ``tests/golden/native/``): the current one (``Session creation
time cost: .. s`` ... ``Average inference time cost: .. ms`` ... ``Min Latency: .. s``), the
2020 variant without a space after the colon, the old README one (``Total iterations:..``,
``Min Latency is .. sec``) and vendor forks (SpacemiT's ``Average inference time cost total:``,
``Total CPU usage: .. %``, ``using ...ExecutionProvider``).

Traps handled: mixed units (average in ms, percentiles in s, first inference truncated to whole
ms); the ``-s`` block repeats CPU usage and working set without a space after the colon; log
lines (``Setting intra_op_num_threads``, ``[W:onnxruntime:...]``) are mixed in. The tool prints
no per-run latency: the document carries the aggregates, with min and max as the only single runs
(``timing.samples_kind = "aggregate_only"``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from harness.errors import ConfigError
from harness.native.common import (
    NUM,
    NativeOutputError,
    NativeParse,
    PhaseStats,
    build_document,
    dec,
    message_lines,
)
from harness.results.schema import Execution, ModelInfo, RunnerDocument, RuntimeInfo, Settings

PRODUCER = "onnxruntime_perf_test"

# harness provider name -> the tool's -e value; the others in the reference pass through as is
_EP = {"default": "cpu", "cpu": "cpu", "none": "cpu", "xnnpack": "xnnpack", "nnapi": "nnapi"}
_OTHER_EPS = frozenset(
    [
        "cuda",
        "dnnl",
        "tensorrt",
        "nvtensorrtrtx",
        "openvino",
        "dml",
        "acl",
        "coreml",
        "qnn",
        "snpe",
        "migraphx",
        "vitisai",
        "webgpu",
    ]
)


def build_ort_perf_test_argv(
    binary: str,
    model_path: str,
    *,
    threads: int | None,
    provider: str,
    warmup_runs: int,
    min_runs: int,
    min_duration_s: float,
    seed: int | None = None,
    free_dimensions: Mapping[str, int] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
    generate_inputs: bool = True,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The argv that runs ``onnxruntime_perf_test`` with a job's settings.

    The tool runs either ``-m times -r N`` or ``-m duration -t S`` (whole seconds, rounded up),
    never both, and always exactly one warm-up run; settings it cannot honour raise
    :class:`ConfigError` rather than being silently changed. ``-s`` is always passed so the
    output has min/max/percentiles; ``-I`` (``generate_inputs``) makes random inputs with free
    dimensions = 1 (``free_dimensions`` -> ``-f name:value``). The tool has no per-input shape
    flag, so ``shapes`` must be empty. There is no maximum duration: the transport timeout
    bounds the run.
    """
    if provider in _EP:
        ep = _EP[provider]
    elif provider in _OTHER_EPS:
        ep = provider
    else:
        raise ConfigError(
            f"onnxruntime_perf_test has no execution provider {provider!r}",
            hint=f"use one of {', '.join(sorted({*_EP, *_OTHER_EPS}))}",
        )
    if warmup_runs > 1:
        raise ConfigError(
            f"onnxruntime_perf_test always runs exactly one warm-up, cannot do {warmup_runs}",
            hint="set warmup_runs to 1 (or 0) for this tool",
        )
    if shapes:
        raise ConfigError(
            "onnxruntime_perf_test cannot set input shapes",
            hint="name the symbolic dimensions with free_dimensions (-f name:value)",
        )
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be at least 1 (or unset), got {threads}")
    if min_runs < 1 or min_duration_s < 0:
        raise ConfigError(
            f"need min_runs >= 1 and min_duration_s >= 0, got {min_runs}, {min_duration_s:g}"
        )
    if min_duration_s > 0 and min_runs > 1:
        raise ConfigError(
            "onnxruntime_perf_test runs a number of times or for a duration, not both",
            hint="set min_runs to 1 for a duration run, or min_duration_s to 0 for a count",
        )
    argv = [binary, "-e", ep]
    if min_duration_s > 0:
        argv += ["-m", "duration", "-t", str(math.ceil(min_duration_s))]
    else:
        argv += ["-m", "times", "-r", str(min_runs)]
    if threads is not None:
        argv += ["-x", str(threads)]
    if seed is not None:
        argv += ["-S", str(seed)]
    for name, value in (free_dimensions or {}).items():
        argv += ["-f", f"{name}:{value}"]
    if generate_inputs:
        argv.append("-I")
    argv.append("-s")
    argv.extend(extra_args)
    argv.append(model_path)
    return argv


_FIELDS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (key, re.compile(pattern))
    for key, pattern in (
        ("session_s", rf"^Session creation time cost:\s*({NUM}) s$"),
        ("first_ms", rf"^First inference time cost:\s*({NUM}) ms$"),
        ("total_s", rf"^Total inference time cost:\s*({NUM}) s$"),
        ("total_s", rf"^Total time cost:\s*({NUM})$"),  # old: avg = total/iterations in ms
        ("count", r"^Total inference requests:\s*(\d+)$"),
        ("count", r"^Total iterations:\s*(\d+)$"),
        ("count", r"^Runs:\s*(\d+)$"),
        ("avg_ms", rf"^Average (?:inference )?time cost(?: total)?:\s*({NUM}) ms$"),
        ("run_s", rf"^Total (?:inference )?run time:\s*({NUM}) s$"),
        ("ips", rf"^Number of inferences per second:\s*({NUM})$"),
        ("cpu_pct", rf"^Avg CPU usage:\s*({NUM})(?: %)?$"),
        ("total_cpu_pct", rf"^Total CPU usage:\s*({NUM}) %$"),
        ("peak_bytes", r"^Peak working set size:\s*(\d+)(?: bytes)?$"),
    )
)
_LATENCY = re.compile(
    rf"^(?P<k>Min|Max|P50|P90|P95|P99|P999) Latency(?: is|:)\s*(?P<v>{NUM}) s(?:ec)?$"
)
_USING = re.compile(r"^using (\w+ExecutionProvider)$")
_PCT_KEYS = {"P50": "median", "P90": "p90", "P95": "p95", "P99": "p99", "P999": "p999"}


def parse_ort_perf_test_text(text: str) -> NativeParse:
    """Everything recognisable in ``onnxruntime_perf_test`` output; raises on unknown text."""
    found: dict[str, Decimal] = {}
    latency_s: dict[str, Decimal] = {}
    notes: list[str] = []
    for m in message_lines(text):
        if (match := _LATENCY.match(m)) is not None:
            latency_s.setdefault(match["k"], dec(match["v"]))
            continue
        if (match := _USING.match(m)) is not None:
            notes.append(f"the tool printed: using {match[1]}")
            continue
        for key, pattern in _FIELDS:
            if (match := pattern.match(m)) is not None:
                found.setdefault(key, dec(match[1]))  # the -s block repeats some: keep the first
                break
    if "avg_ms" not in found:
        raise NativeOutputError(
            "onnxruntime_perf_test output has no 'Average inference time cost: ... ms' line",
            raw_output=text,
            hint="the run may have failed early; the raw output is kept on the error",
        )
    ms_to_us = Decimal(1000)
    s_to_us = Decimal(1_000_000)
    regular = PhaseStats(
        count=int(found["count"]) if "count" in found else None,
        min_us=latency_s["Min"] * s_to_us if "Min" in latency_s else None,
        max_us=latency_s["Max"] * s_to_us if "Max" in latency_s else None,
        avg_us=found["avg_ms"] * ms_to_us,
        percentiles_us=tuple(
            (_PCT_KEYS[k], latency_s[k] * s_to_us) for k in _PCT_KEYS if k in latency_s
        ),
    )
    timing_extra: dict[str, Any] = {}
    for key, name in (
        ("total_s", "total_inference_time_s"),
        ("run_s", "total_run_time_s"),
        ("ips", "inferences_per_s"),
        ("cpu_pct", "avg_cpu_usage_percent"),
        ("total_cpu_pct", "total_cpu_usage_percent"),
    ):
        if key in found:
            timing_extra[name] = float(found[key])
    peak = found.get("peak_bytes")
    first_ms = found.get("first_ms")
    return NativeParse(
        tool=PRODUCER,
        format="ort-perf-test",
        init_us=found["session_s"] * s_to_us if "session_s" in found else None,
        first_inference_us=first_ms * ms_to_us if first_ms is not None else None,
        first_inference_resolution_us=ms_to_us if first_ms is not None else None,
        regular=regular,
        timing_extra=timing_extra,
        memory_extra={"peak_working_set_bytes": int(peak)} if peak is not None else {},
        peak_rss_kb=int((peak / 1024).to_integral_value()) if peak is not None else None,
        memory_source="onnxruntime_perf_test peak working set" if peak is not None else None,
        notes=tuple(notes),
    )


def parse_ort_perf_test_output(
    text: str,
    *,
    model: ModelInfo,
    settings: Settings,
    started_at: str | None = None,
    runtime: RuntimeInfo | None = None,
    tool_version: str | None = None,
) -> RunnerDocument:
    """Parse ``onnxruntime_perf_test`` output into a ``RunnerDocument`` (``raw_output`` = text).

    Raises :class:`~harness.native.common.NativeOutputError` naming what is missing (the old
    formats print no session time or first inference); the error keeps the raw text and the
    partial parse.
    """
    parsed = parse_ort_perf_test_text(text)
    if tool_version is not None:
        parsed = dataclasses.replace(parsed, tool_version=tool_version)
    notes = [*parsed.notes, "onnxruntime_perf_test does not report which provider ran each node"]
    execution = Execution(providers_requested=[settings.provider], notes=notes)
    return build_document(
        parsed,
        model=model,
        settings=settings,
        raw_output=text,
        started_at=started_at,
        runtime=runtime,
        execution=execution,
        timer_resolution_ns=1.0,  # std::chrono::high_resolution_clock
        clock="onnxruntime_perf_test:std::chrono::high_resolution_clock",
    )
