"""What the native-tool adapters share: errors, log-line cleanup, exact numbers, the document.

The native tools print text, not JSON. Each adapter turns that text into a :class:`NativeParse`
(every number in the tool's own meaning, as an exact :class:`~decimal.Decimal`), and
:func:`build_document` turns a parse into the harness's one :class:`RunnerDocument`.

Honesty rules the document follows (see the module docs of the adapters for the formats):

* ``timing.latencies_ns`` holds only run latencies the tool printed *individually*. When the tool
  printed every run (one run, two runs, or ``(all same)``) ``timing.samples_kind`` is
  ``"per_run"``. Otherwise it is ``"aggregate_only"`` (runner schema v2): the statistics are in
  ``timing.aggregate_us`` and ``latencies_ns`` holds the few single runs the tool named, labelled
  in ``timing.latencies_ns_labels`` (``["first", "last"]`` or ``["min", "max"]``), or none.
  Nothing is made up from an average.
* ``raw_output`` always keeps the text verbatim, and every parse error carries it too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from harness.errors import RunnerError, SchemaError
from harness.results.schema import (
    RUNNER_SCHEMA_NAME,
    RUNNER_SCHEMA_VERSION,
    Execution,
    Memory,
    ModelInfo,
    Producer,
    RunnerDocument,
    RuntimeInfo,
    Settings,
    Timing,
)
from harness.transport.base import Transport

# A number as C++ ostream or printf prints it: 17187, 1885.74, 2.95034e+06, .5
NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

# Prefixes that wrap the tool's message, stripped in this order (each at most once):
_LOG_PREFIXES = (
    # adb logcat -v threadtime: "07-14 13:14:52.097 22838 22838 I tflite  : "
    re.compile(r"^\d\d-\d\d \d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*?\s*:\s?"),
    # adb logcat -v brief: "I/tflite  ( 1234): "
    re.compile(r"^[VDIWEF]/[^(]*\(\s*\d+\):\s?"),
    # adb logcat -v tag: "I/tflite: " and the tag-only form "I tflite  : "
    re.compile(r"^[VDIWEF](?:/| +)tflite\s*:\s?"),
    # TFLite minimal logging severity: "INFO: ", "VERBOSE: ", "WARNING: ", "ERROR: "
    re.compile(r"^(?:INFO|VERBOSE|WARNING|ERROR|DEBUG): "),
    # LiteRT source location after the severity: "[./litert/tools/benchmark_litert_model.h:73] "
    re.compile(r"^\[[^\]\s]+:\d+\] ?"),
)


class NativeOutputError(SchemaError):
    """A native tool printed text this harness cannot turn into a result document.

    ``raw_output`` is the text verbatim, so the caller can keep it; ``partial`` is what was
    parsed before the missing piece was noticed (``None`` when nothing was recognised).
    """

    def __init__(
        self,
        message: str,
        *,
        raw_output: str,
        partial: NativeParse | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.raw_output = raw_output
        self.partial = partial


class NativeToolError(RunnerError):
    """A native benchmark binary exited with a non-zero code; ``raw_output`` keeps its text."""

    def __init__(self, message: str, *, raw_output: str, exit_code: int) -> None:
        super().__init__(message)
        self.raw_output = raw_output
        self.exit_code = exit_code


@dataclass(frozen=True)
class PhaseStats:
    """One phase's statistics as the tool printed them, in microseconds (exact decimals)."""

    count: int | None = None
    first_us: Decimal | None = None
    last_us: Decimal | None = None  # benchmark_model's "curr": the last run
    min_us: Decimal | None = None
    max_us: Decimal | None = None
    avg_us: Decimal | None = None
    std_us: Decimal | None = None
    percentiles_us: tuple[tuple[str, Decimal], ...] = ()  # (("p5", ..), ("median", ..), ...)
    all_same: bool = False  # Stat printed "count=n curr=v": every run took v

    def aggregate(self) -> dict[str, Any]:
        """The printed statistics as JSON numbers, only those the tool printed."""
        out: dict[str, Any] = {}
        if self.count is not None:
            out["count"] = self.count
        named = (
            ("first", self.first_us),
            ("last", self.last_us),
            ("min", self.min_us),
            ("max", self.max_us),
            ("avg", self.avg_us),
            ("std", self.std_us),
        )
        for key, value in (*named, *self.percentiles_us):
            if value is not None:
                out[key] = float(value)
        return out

    def exact_runs_us(self) -> list[Decimal] | None:
        """Every run's latency in order, when the printed numbers pin them all down."""
        only = self.last_us if self.last_us is not None else self.first_us
        if self.count == 1 and only is not None:
            return [only]
        if self.all_same and self.count and self.last_us is not None:
            return [self.last_us] * self.count
        if self.count == 2 and self.first_us is not None and self.last_us is not None:
            return [self.first_us, self.last_us]
        return None

    def named_runs_us(self) -> tuple[list[Decimal], list[str]]:
        """Single runs the tool printed by name, with their labels; ([], []) when none."""
        if self.first_us is not None and self.last_us is not None:
            return [self.first_us, self.last_us], ["first", "last"]
        if self.min_us is not None and self.max_us is not None:
            return [self.min_us, self.max_us], ["min", "max"]
        return [], []


@dataclass(frozen=True)
class DelegateUse:
    """One ``Replacing N out of M node(s) with delegate (X)`` line."""

    name: str  # short name: "xnnpack", "gpu", "nnapi", or the tool's own name lowercased
    nodes: int
    total_nodes: int | None  # None in the old "Replacing N node(s)" form
    partitions: int | None


@dataclass(frozen=True)
class NativeParse:
    """Everything an adapter understood of one tool run, in the tool's own units."""

    tool: str  # "benchmark_model" or "onnxruntime_perf_test"
    format: str  # which output format was recognised, e.g. "tflite-summary", "litert-results"
    tool_version: str | None = None
    init_us: Decimal | None = None
    first_inference_us: Decimal | None = None
    first_inference_resolution_us: Decimal | None = None  # ORT truncates to whole ms
    warmup: PhaseStats | None = None
    regular: PhaseStats | None = None
    timing_extra: dict[str, Any] = field(default_factory=dict)  # e.g. inferences_per_s
    memory_extra: dict[str, Any] = field(default_factory=dict)  # e.g. footprint_delta_init_mb
    peak_rss_kb: int | None = None
    memory_source: str | None = None
    delegates: tuple[DelegateUse, ...] = ()
    delegates_not_executed: tuple[str, ...] = ()  # short names of delegates that declined
    notes: tuple[str, ...] = ()


def message_lines(text: str) -> Iterator[str]:
    """The tool's messages, one per line, with log/logcat prefixes and blanks removed."""
    for raw in text.splitlines():
        line = raw.strip()
        for prefix in _LOG_PREFIXES:
            line = prefix.sub("", line, count=1)
        line = line.strip()
        if line:
            yield line


def dec(text: str) -> Decimal:
    """A printed number as an exact decimal (``2.95034e+06`` -> ``2950340``)."""
    try:
        value = Decimal(text)
    except InvalidOperation as exc:  # the regexes only pass NUM, so this is a programming error
        raise ValueError(f"not a number: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    return value


def as_g(value: Decimal) -> str:
    """``value`` the way C++ ostream prints a double by default (6 significant digits)."""
    return f"{float(value):g}"


def us_to_ns(value: Decimal) -> int:
    """Microseconds to whole nanoseconds, rounding half to even."""
    return int((value * 1000).to_integral_value(rounding=ROUND_HALF_EVEN))


def _ms(value_us: Decimal) -> float:
    return float(value_us / 1000)


def build_document(
    parsed: NativeParse,
    *,
    model: ModelInfo,
    settings: Settings,
    raw_output: str,
    started_at: str | None = None,
    runtime: RuntimeInfo | None = None,
    execution: Execution | None = None,
    timer_resolution_ns: float,
    clock: str,
) -> RunnerDocument:
    """Turn a parse into a ``RunnerDocument`` (status ok), or raise :class:`NativeOutputError`.

    Every run printed individually makes ``per_run`` latencies; otherwise the document is
    ``aggregate_only`` (schema v2), which needs the average and the number of timed runs. It
    raises when the output lacks either; init and first inference may be missing (``null``).
    """
    regular = parsed.regular
    missing = []
    if regular is None or regular.avg_us is None:
        missing.append("the average inference time")
    runs_us, labels = _latencies(regular) if regular is not None else ([], [])
    per_run = bool(runs_us) and not labels
    if regular is not None and regular.count is None and not per_run:
        missing.append("the number of timed runs")
    if missing or regular is None:
        raise NativeOutputError(
            f"{parsed.tool} output ({parsed.format} format) lacks {', '.join(missing)}",
            raw_output=raw_output,
            partial=parsed,
            hint="the parsed values are on the error's `partial`; the raw text is kept",
        )
    timing_extra: dict[str, Any] = dict(parsed.timing_extra)
    timing_extra["samples_kind"] = "per_run" if per_run else "aggregate_only"
    timing_extra["latencies_ns_labels"] = labels
    timing_extra["aggregate_us"] = regular.aggregate()
    warmup_ns: list[int] = []
    if parsed.warmup is not None:
        warm_runs, warm_labels = _latencies(parsed.warmup)
        warmup_ns = [us_to_ns(v) for v in warm_runs]
        timing_extra["warmup_samples_kind"] = (
            "aggregate_only" if warm_labels or not warm_runs else "per_run"
        )
        timing_extra["warmup_latencies_ns_labels"] = warm_labels
        timing_extra["warmup_aggregate_us"] = parsed.warmup.aggregate()
    if parsed.first_inference_resolution_us is not None:
        timing_extra["first_inference_resolution_ms"] = _ms(parsed.first_inference_resolution_us)
    timing = Timing.model_validate(
        {
            "init_ms": _ms(parsed.init_us) if parsed.init_us is not None else None,
            "first_inference_ms": (
                _ms(parsed.first_inference_us) if parsed.first_inference_us is not None else None
            ),
            "warmup_latencies_ns": warmup_ns,
            "latencies_ns": [us_to_ns(v) for v in runs_us],
            "timer_resolution_ns": timer_resolution_ns,
            "timer_overhead_ns": None,  # the tools do not measure the cost of reading their clock
            "clock": clock,
            **timing_extra,
        }
    )
    memory = Memory(
        peak_rss_kb=parsed.peak_rss_kb, source=parsed.memory_source, **parsed.memory_extra
    )
    return RunnerDocument.model_validate(
        {
            "schema": RUNNER_SCHEMA_NAME,
            "schema_version": RUNNER_SCHEMA_VERSION,
            "producer": Producer(name=parsed.tool, version=parsed.tool_version or "unknown"),
            "status": "ok",
            "started_at": started_at or datetime.now(timezone.utc).isoformat(),
            "runtime": runtime,
            "model": model,
            "settings": settings,
            "execution": execution or Execution(providers_requested=[settings.provider]),
            "timing": timing,
            "memory": memory,
            "raw_output": raw_output,
            "native_format": parsed.format,
        }
    )


def _latencies(stats: PhaseStats) -> tuple[list[Decimal], list[str]]:
    exact = stats.exact_runs_us()
    if exact is not None:
        return exact, []
    return stats.named_runs_us()


def combined_output(stdout: str, stderr: str) -> str:
    """stdout then stderr, both verbatim (TFLite logs to stderr, ORT to stdout)."""
    if not stderr:
        return stdout
    if stdout and not stdout.endswith("\n"):
        return f"{stdout}\n{stderr}"
    return stdout + stderr


def run_native_benchmark(
    transport: Transport,
    argv: Sequence[str],
    *,
    timeout_s: float,
    parse: Callable[[str], RunnerDocument],
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    tool_name: str | None = None,
) -> RunnerDocument:
    """Run a native benchmark binary through ``transport`` and parse what it printed.

    ``parse`` receives stdout followed by stderr (verbatim), e.g.
    ``functools.partial(parse_benchmark_model_output, model=..., settings=...)``.
    A non-zero exit raises :class:`NativeToolError` (message with the exit code and the last
    stderr line, ``raw_output`` with the full text); a timeout raises the transport's
    ``DeviceTimeoutError``; unparseable text raises :class:`NativeOutputError`. ``env`` is added
    to the device's environment for this command (e.g. ``LD_LIBRARY_PATH``); ``tool_name`` names
    the tool in errors (default: the basename of ``argv[0]``; set it when argv has a prefix).
    """
    result = transport.run(argv, timeout_s=timeout_s, cwd=cwd, env=env)
    text = combined_output(result.stdout, result.stderr)
    if result.exit_code != 0:
        tail = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        name = tool_name or (argv[0].rsplit("/", 1)[-1] if argv else "native tool")
        raise NativeToolError(
            f"{name} on {transport.description} exited with code {result.exit_code}: {tail[0]}",
            raw_output=text,
            exit_code=result.exit_code,
        )
    return parse(text)
