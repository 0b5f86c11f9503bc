"""Host-side result records: frozen dataclasses with units in their names. No I/O here.

A *run* is one invocation of ``harness bench`` (or ``demo``): a set of *jobs*, each one model on
one device with one set of settings. Each job keeps its raw runner document (the source of truth)
and a summary derived from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the energy summary's module computes it; records only carry it
    from harness.power.energy import EnergySummary


class Verdict(str, Enum):
    """MLPerf-LoadGen-style validity of a result."""

    VALID = "VALID"
    INVALID = "INVALID"


@dataclass(frozen=True)
class Validity:
    """VALID or INVALID, with every reason that made it invalid and softer warnings."""

    verdict: Verdict
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class LatencySummary:
    """Statistics of one job's timed runs, in milliseconds."""

    count: int
    mean_ms: float
    std_ms: float
    min_ms: float
    median_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    median_ci_low_ms: float | None  # bootstrap 95% CI of the median; None with too few samples
    median_ci_high_ms: float | None
    cv: float  # coefficient of variation, std / mean
    throughput_ips: float  # inferences per second, 1000 / mean_ms
    total_duration_s: float  # sum of the timed runs
    # "samples": computed from every timed run; "aggregate": the statistics a native tool printed
    # (no per-run samples, no CI; a statistic it did not print is NaN, never made up)
    source: str = "samples"


@dataclass(frozen=True)
class JobSettings:
    """The settings a job asked for; comparisons refuse results whose settings differ."""

    threads: int | None
    provider: str
    warmup_runs: int
    min_runs: int
    min_duration_s: float
    max_duration_s: float
    seed: int = 0
    shapes: tuple[tuple[str, str], ...] = ()  # ("x", "1x3x224x224")
    values: tuple[tuple[str, str], ...] = ()
    inputs_file: str | None = None


@dataclass(frozen=True)
class ModelArtifact:
    """A model file's identity."""

    name: str  # display name, e.g. the file stem or "<model>/<recipe>"
    path: str
    format: str  # "onnx" | "tflite"
    sha256: str
    size_bytes: int
    # Set for compressed variants (``harness compress``) and the models they were made from;
    # ``None`` for a plain model file. Host-side numbers come from the variant's manifest.
    recipe: str | None = None  # e.g. "prune:sparsity=0.5,structured=true"
    parent_sha256: str | None = None  # the model this variant was made from
    host_accuracy: float | None = None  # the primary task metric on the host (top-k: 0..1)
    host_accuracy_metric: str | None = None  # e.g. "top1"
    fidelity_flagged: bool | None = None  # True: fidelity collapsed against the baseline


@dataclass(frozen=True)
class JobSpec:
    """One job to run: a model on a device with settings."""

    job_index: int
    model: ModelArtifact
    device_name: str
    settings: JobSettings
    eval_file: str | None = None  # an .npz with inputs (and ``labels``) to measure accuracy


@dataclass(frozen=True)
class JobResult:
    """What one job produced. ``status == "failed"`` results keep their error and no latency."""

    spec: JobSpec
    status: str  # "ok" | "failed"
    error: str | None
    runtime_name: str | None
    runtime_version: str | None
    init_ms: float | None
    first_inference_ms: float | None
    peak_memory_kb: int | None
    latency: LatencySummary | None
    validity: Validity
    samples_ms: tuple[float, ...]
    accuracy: float | None = None  # top-1 on the eval set, 0..1
    accuracy_metric: str | None = None
    fallback_to_cpu: bool = False
    device_state: dict[str, Any] = field(default_factory=dict)
    raw_document: dict[str, Any] | None = None  # the runner's JSON, exactly as validated
    energy: EnergySummary | None = None  # None: power was not measured for this job


@dataclass(frozen=True)
class RunRecord:
    """One invocation: its id, when, what command, and its jobs."""

    run_id: str
    created_at: str  # ISO 8601 UTC
    command: str
    harness_version: str
    host: str
    jobs: tuple[JobResult, ...]
    notes: tuple[str, ...] = ()
