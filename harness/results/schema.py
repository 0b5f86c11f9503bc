"""The runner document: the one JSON schema from device to disk.

Every producer of benchmark results (the Python runner in ``runners/``, and later the adapters
that parse native tools such as ``benchmark_model`` or ``onnxruntime_perf_test``) emits this
document. The host validates it at the boundary with :func:`parse_runner_document`, which is the
same function the store uses to load what it kept, so a stored document always re-validates.

Versioning: ``schema_version`` is an integer. When the shape changes, bump
:data:`RUNNER_SCHEMA_VERSION`, keep the old reader working by adding an upgrade step to
``_UPGRADES`` (``version -> function(dict) -> dict`` producing the next version), and add a golden
file for the old version under ``tests/golden/``.

Version history: 1, the Python runner's per-run samples; 2, results of native benchmark tools
that print only aggregates: ``timing.samples_kind``, ``timing.aggregate_us`` (with
``warmup_aggregate_us`` and labelled single runs), and ``init_ms``, ``first_inference_ms`` and
``timer_overhead_ns`` may be ``null`` when the producer did not measure them.

Units are in the field names: ``_ns`` nanoseconds, ``_ms`` milliseconds, ``_s`` seconds,
``_kb`` kibibytes, ``_c`` degrees Celsius, ``_khz`` kilohertz.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import SchemaError

RUNNER_SCHEMA_NAME = "harness.runner-result"
RUNNER_SCHEMA_VERSION = 2

SamplesKind = Literal["per_run", "aggregate_only"]
# The single runs a native tool prints by name (benchmark_model: first/curr; -s: min/max)
RUN_LABELS = ("first", "last", "min", "max")


class _Strict(BaseModel):
    # Unknown keys are kept (extra="allow") so a newer runner's additions survive a round trip
    # through an older host; the known keys are type-checked.
    model_config = ConfigDict(extra="allow", frozen=True)


class Producer(_Strict):
    """What made the document: the harness runner or a native tool adapter."""

    name: str  # "harness-runner", "benchmark_model", "onnxruntime_perf_test"
    version: str


class RuntimeInfo(_Strict):
    name: str  # "onnxruntime", "ai_edge_litert", "tflite_runtime", "tensorflow"
    version: str


class ModelInfo(_Strict):
    path: str
    format: Literal["onnx", "tflite"]
    sha256: str | None = None
    size_bytes: int | None = None


class Settings(_Strict):
    """The job settings as the producer understood them."""

    threads: int | None = None  # None: the runtime's default
    provider: str = (
        "default"  # requested EP/delegate: "default", "cpu", "xnnpack", "none", an ORT EP
    )
    warmup_runs: int = 0
    min_runs: int = 1
    min_duration_s: float = 0.0
    max_duration_s: float = 0.0
    seed: int = 0
    shapes: dict[str, list[int]] = Field(default_factory=dict)
    values: dict[str, str] = Field(default_factory=dict)
    inputs_file: str | None = None


class TensorInfo(_Strict):
    name: str
    dtype: str  # numpy dtype name, e.g. "float32", "int64", "int8"
    shape: list[int]  # the concrete shape used
    declared_shape: list[int | str | None] = Field(default_factory=list)  # as the model declares it
    source: Literal["random", "npz", "value", "output"] = "random"
    quantization: dict[str, Any] | None = (
        None  # {"scale": .., "zero_point": ..} for quantized tensors
    )


class Execution(_Strict):
    """What actually ran, so a silent fall-back to CPU shows up on the result."""

    providers_requested: list[str] = Field(default_factory=list)
    providers_available: list[str] = Field(default_factory=list)
    providers_used: list[str] = Field(default_factory=list)
    nodes_by_provider: dict[str, int] = Field(default_factory=dict)
    delegated_partitions: int | None = None
    delegated_nodes: int | None = None
    total_nodes: int | None = None
    fallback_to_cpu: bool = False
    notes: list[str] = Field(default_factory=list)


class AggregateStats(_Strict):
    """Statistics of one phase as a native tool printed them, in microseconds.

    Only what the tool printed is set; the percentiles are the tool's own (its interpolation
    method, not necessarily the harness's). ``last`` is benchmark_model's ``curr``.
    """

    count: int | None = None
    first: float | None = None
    last: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    std: float | None = None  # as the tool defines it (benchmark_model: population std)
    p5: float | None = None
    median: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    p999: float | None = None


def _labelled_runs_error(
    values_ns: list[int], labels: list[str], aggregate: AggregateStats | None, phase: str
) -> str | None:
    """Why labelled single runs are inconsistent with the aggregate they come from, or None."""
    if len(labels) != len(values_ns):
        return f"{phase}: {len(labels)} labels for {len(values_ns)} latencies"
    for label, ns in zip(labels, values_ns, strict=True):
        if label not in RUN_LABELS:
            return f"{phase}: unknown label {label!r} (expected one of {', '.join(RUN_LABELS)})"
        printed = getattr(aggregate, label) if aggregate is not None else None
        # a labelled run must be the printed value itself (to the ns it was rounded to)
        if printed is None or abs(printed * 1000 - ns) > 1:
            return f"{phase}: the {label!r} latency {ns} ns is not the aggregate's {label}"
    return None


class Timing(_Strict):
    """The timed runs. ``samples_kind`` says what ``latencies_ns`` holds.

    ``per_run``: every timed run, in order (the Python runner, or a tool that printed them all).
    ``aggregate_only``: the producer printed only statistics (``aggregate_us``, which then needs
    at least ``count`` and ``avg``); ``latencies_ns`` holds only single runs the tool printed by
    name, labelled in ``latencies_ns_labels`` (e.g. ``["min", "max"]``), possibly none. Nothing
    is ever derived from an average. The same holds for the warm-up phase.
    """

    init_ms: float | None  # None: the producer did not measure it (old native tool formats)
    first_inference_ms: float | None
    warmup_latencies_ns: list[int] = Field(default_factory=list)
    latencies_ns: list[int]  # every timed run in order (per_run), or the labelled ones
    timer_resolution_ns: float  # time.get_clock_info("perf_counter").resolution, in ns
    timer_overhead_ns: float | None  # median cost of one clock-read pair, measured; None: not
    clock: str = "perf_counter_ns"
    window_start_ns: int | None = None  # the timed window on `window_clock`, for power alignment
    window_end_ns: int | None = None
    window_clock: str | None = None  # e.g. "CLOCK_BOOTTIME"
    samples_kind: SamplesKind = "per_run"
    latencies_ns_labels: list[str] = Field(default_factory=list)
    aggregate_us: AggregateStats | None = None
    warmup_samples_kind: SamplesKind = "per_run"
    warmup_latencies_ns_labels: list[str] = Field(default_factory=list)
    warmup_aggregate_us: AggregateStats | None = None

    @model_validator(mode="after")
    def _samples_match_their_kind(self) -> Timing:
        timed = (self.samples_kind, self.latencies_ns, self.latencies_ns_labels, self.aggregate_us)
        warmup = (
            self.warmup_samples_kind,
            self.warmup_latencies_ns,
            self.warmup_latencies_ns_labels,
            self.warmup_aggregate_us,
        )
        problem = _phase_error("timing", *timed) or _phase_error("warm-up", *warmup)
        if problem:
            raise ValueError(problem)
        return self


def _phase_error(
    phase: str,
    kind: str,
    values_ns: list[int],
    labels: list[str],
    aggregate: AggregateStats | None,
) -> str | None:
    if kind == "per_run":
        return f"{phase}: per_run latencies carry no labels" if labels else None
    if phase == "timing" and (
        aggregate is None or aggregate.count is None or aggregate.avg is None
    ):
        return "timing: aggregate_only needs aggregate_us with at least count and avg"
    return _labelled_runs_error(values_ns, labels, aggregate, phase)


class Memory(_Strict):
    peak_rss_kb: int | None = None
    source: str | None = None  # "VmHWM", "ru_maxrss", "benchmark_model"


class ThermalZone(_Strict):
    name: str
    type: str
    temp_c: float


class DeviceState(_Strict):
    hostname: str | None = None
    os: str | None = None
    kernel: str | None = None
    machine: str | None = None
    python: str | None = None
    cpu_model: str | None = None
    cpu_count: int | None = None
    governors: dict[str, str] = Field(default_factory=dict)  # cpu name -> governor
    cur_freq_khz: dict[str, int] = Field(default_factory=dict)
    max_freq_khz: dict[str, int] = Field(default_factory=dict)
    thermal_zones: list[ThermalZone] = Field(default_factory=list)
    loadavg: list[float] = Field(default_factory=list)


class ErrorInfo(_Strict):
    # "model_load", "unsupported_op", "allocation", "input", "runtime_missing", "inference",
    # "bad_arguments", "internal"
    kind: str
    message: str
    op: str | None = None  # the operator that is custom or unsupported, when known


class EvalOutput(_Strict):
    """Where the runner wrote outputs of an evaluation set, for accuracy on the host."""

    path: str
    rows: int


class PowerMeter(_Strict):
    """One meter's readings over time: a counter device, an instantaneous sensor or a battery gauge.

    ``quantity`` says what ``channels`` hold: ``energy_uj`` cumulative counters (ODPM rails, RAPL
    zones; microjoules), ``power_w`` instantaneous power (PMIC rails, INA2xx), or ``battery_raw``
    (``current_now`` and ``voltage_now`` exactly as the driver printed them; sign and units are
    calibrated on the host).
    """

    name: str  # e.g. "iio:device0 s2mpg10-odpm", "intel-rapl", "pmic", "ina226 1-0040", "battery"
    quantity: Literal["energy_uj", "power_w", "battery_raw"]
    t_ns: list[int]  # on the power trace's clock
    channels: dict[str, list[float]] = Field(default_factory=dict)
    wrap_uj: dict[str, float] = Field(default_factory=dict)  # counter modulus per channel (RAPL)
    timestamps: str = "sampler"  # "sampler" (read time) or "device" (the meter's own t=, ODPM)
    node: str | None = None  # the sysfs directory or command read


class PowerReadError(_Strict):
    t_ns: int
    message: str


class ThermalTrace(_Strict):
    """Temperatures, CPU frequency and the Pi throttle word sampled beside the power source."""

    t_ns: list[int] = Field(default_factory=list)
    zones_c: dict[str, list[float | None]] = Field(default_factory=dict)
    zone_types: dict[str, str] = Field(default_factory=dict)
    cur_freq_khz: dict[str, list[int | None]] = Field(default_factory=dict)  # per cpufreq policy
    max_freq_khz: dict[str, int] = Field(default_factory=dict)
    governors: dict[str, str] = Field(default_factory=dict)
    pi_throttled: list[int | None] | None = None  # vcgencmd get_throttled words


class PowerTrace(_Strict):
    """The raw power trace of one job (optional: present when a power source was requested)."""

    source: str  # "android-battery", "odpm", "pi5-pmic", "hwmon", "rapl", "none"
    scope: str  # "battery", "rails", "pmic", "wall", "usb", "package", "none"
    method: Literal["counter", "instantaneous", "none"] = "none"
    clock: str | None = None  # the clock of every t_ns here, the same as timing.window_clock
    requested_rate_hz: float | None = None
    achieved_rate_hz: float | None = None
    update_period_s: float | None = None  # detected from value changes during the idle window
    window_factor: float | None = None  # the window was extended to >= factor x update period
    required_window_s: float | None = None
    idle_start_ns: int | None = None
    idle_end_ns: int | None = None
    window_start_ns: int | None = None
    window_end_ns: int | None = None
    meters: list[PowerMeter] = Field(default_factory=list)
    charging_status: list[tuple[int, str]] = Field(default_factory=list)  # (t_ns, status) changes
    thermal: ThermalTrace | None = None
    read_errors: list[PowerReadError] = Field(default_factory=list)  # first few, in order
    read_error_count: int = 0
    flags: list[str] = Field(default_factory=list)  # quality problems the runner saw itself
    notes: list[str] = Field(default_factory=list)
    probed: list[str] = Field(default_factory=list)  # what auto-detection tried and why it failed


class RunnerDocument(_Strict):
    """One benchmark job's result as a producer printed it."""

    schema_: Literal["harness.runner-result"] = Field(alias="schema")
    schema_version: int
    producer: Producer
    status: Literal["ok", "error"]
    started_at: str  # ISO 8601, UTC
    error: ErrorInfo | None = None
    runtime: RuntimeInfo | None = None
    model: ModelInfo
    settings: Settings
    execution: Execution = Field(default_factory=Execution)
    inputs: list[TensorInfo] = Field(default_factory=list)
    outputs: list[TensorInfo] = Field(default_factory=list)
    timing: Timing | None = None  # None only when status == "error"
    memory: Memory = Field(default_factory=Memory)
    device_state: DeviceState = Field(default_factory=DeviceState)
    eval_output: EvalOutput | None = None
    raw_output: str | None = None  # native tools: the text that was parsed, kept verbatim
    power: PowerTrace | None = None  # optional raw power/thermal trace (schema v1 addition)

    @model_validator(mode="after")
    def _ok_has_timing(self) -> RunnerDocument:
        timing = self.timing
        if self.status == "ok":
            if timing is None:
                raise ValueError("status ok but no timing")
            if timing.samples_kind == "per_run" and not timing.latencies_ns:
                raise ValueError("status ok but no latency samples")
        return self

    def to_json_dict(self) -> dict[str, Any]:
        """The document as plain JSON types, with its ``schema`` key."""
        return self.model_dump(mode="json", by_alias=True)


def _upgrade_1_to_2(doc: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: v1 timings are per-run samples; only new optional fields appear.

    Working-tree native adapters wrote v2's fields as v1 extras (``samples_kind`` etc.), kept as
    they are; their ``timer_overhead_measured: false`` marker becomes ``timer_overhead_ns: null``.
    """
    timing = doc.get("timing")
    if isinstance(timing, dict):
        timing = dict(timing)
        timing.setdefault("samples_kind", "per_run")
        if timing.pop("timer_overhead_measured", True) is False:
            timing["timer_overhead_ns"] = None
        doc["timing"] = timing
    return doc


# version -> function upgrading a dict of that version to version + 1
_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _upgrade_1_to_2}


def parse_runner_document(
    data: str | bytes | dict[str, Any], *, origin: str = "runner"
) -> RunnerDocument:
    """Validate a runner document (JSON text or dict), upgrading old versions first.

    Raises :class:`SchemaError` naming ``origin`` and the first bad field.
    """
    if isinstance(data, str | bytes):
        try:
            loaded = json.loads(data)
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{origin} did not print valid JSON: {exc}") from exc
    else:
        loaded = data
    if not isinstance(loaded, dict):
        raise SchemaError(f"{origin} printed JSON that is not an object")
    if loaded.get("schema") != RUNNER_SCHEMA_NAME:
        raise SchemaError(
            f"{origin} printed a document whose schema is {loaded.get('schema')!r}, "
            f"expected {RUNNER_SCHEMA_NAME!r}"
        )
    version = loaded.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise SchemaError(f"{origin} printed a document without a valid schema_version")
    if version > RUNNER_SCHEMA_VERSION:
        raise SchemaError(
            f"{origin} printed schema_version {version}, newer than this harness understands "
            f"({RUNNER_SCHEMA_VERSION})",
            hint="upgrade harness on the host",
        )
    while version < RUNNER_SCHEMA_VERSION:
        loaded = _UPGRADES[version](dict(loaded))
        version += 1
        loaded["schema_version"] = version
    try:
        doc = RunnerDocument.model_validate(loaded)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if not where:  # a whole-document check (model_validator): say it as it is
            message = first["msg"].removeprefix("Value error, ")
            raise SchemaError(f"{origin} reported {message}") from exc
        raise SchemaError(f"{origin} printed an invalid document: {where}: {first['msg']}") from exc
    return doc


def with_host_observed(doc: RunnerDocument, state: dict[str, Any]) -> RunnerDocument:
    """The document with what the host observed about the device (e.g. Android getprop) added
    to ``device_state.host_observed``; the same document when there is nothing to add."""
    if not state:
        return doc
    data = doc.to_json_dict()
    data["device_state"] = {**data.get("device_state", {}), "host_observed": state}
    return RunnerDocument.model_validate(data)


def runner_json_schema() -> dict[str, Any]:
    """The JSON Schema of the current document version (written to docs by `harness schema`)."""
    return RunnerDocument.model_json_schema(by_alias=True)
