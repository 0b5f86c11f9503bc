"""How far a variant's outputs are from the baseline's, and what that does to the task metric.

Both models run in onnxruntime (CPU) on the same inputs: the eval npz, else the calibration
npz, else seeded random inputs. On the first output we report top-1 agreement (class outputs),
max/mean absolute error and mean per-sample cosine similarity. With labels we report the task
metric for both: ``top1`` (plus ``top5`` with >= 5 classes), ``mse``, or a user function
``module:function`` called as ``fn(outputs, labels) -> float`` (higher is better, a fraction in
[0, 1] like accuracy). A variant is FLAGGED, never dropped, when its accuracy falls more than
``max_drop_points`` or its top-1 agreement is below ``min_agreement``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray

from harness.compress.data import (
    Feeds,
    batches,
    load_feeds,
    load_labels,
    model_inputs,
    random_feeds,
    take,
)
from harness.errors import CompressionError

MetricFn = Callable[[NDArray[np.generic], NDArray[np.generic]], float]
MAX_SAMPLES = 2000
RANDOM_SAMPLES = 64


@dataclass(frozen=True)
class MetricResult:
    """One task metric for the baseline and the variant; ``drop`` > 0 means the variant is worse.

    For accuracies ``drop`` is in percentage points; for ``mse`` it is the relative increase in
    percent.
    """

    name: str
    baseline: float
    variant: float
    drop: float


@dataclass(frozen=True)
class Fidelity:
    """Variant vs baseline on the same inputs."""

    input_source: str  # "eval", "calib" or "random"
    samples: int
    output_name: str
    top1_agreement: float | None  # None when the output is not a class-score vector
    max_abs_error: float
    mean_abs_error: float
    cosine_similarity: float
    metrics: tuple[MetricResult, ...]
    flagged: bool
    flag_reasons: tuple[str, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class EvalSet:
    """Inputs (and labels, if any) every variant of one model is evaluated on."""

    feeds: Feeds
    labels: NDArray[np.generic] | None
    source: str
    notes: tuple[str, ...] = ()

    @property
    def samples(self) -> int:
        """Number of samples."""
        return len(next(iter(self.feeds.values())))


def resolve_metric(metric: str | None) -> tuple[str | None, MetricFn | None]:
    """Check a metric name early; ``module:function`` is imported now, so typos fail fast."""
    if metric is None or metric in ("top1", "top5", "mse"):
        return metric, None
    mod_name, _, fn_name = metric.partition(":")
    if not fn_name:
        raise CompressionError(
            f"unknown metric {metric!r}", hint="use top1, top5, mse or module:function"
        )
    try:
        fn = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise CompressionError(f"metric {metric!r} cannot be loaded: {exc}") from exc
    if not callable(fn):
        raise CompressionError(f"metric {metric!r} is not a function")
    return metric, fn


def prepare_eval(
    model: onnx.ModelProto, eval_data: Path | None, calib: Path | None, *, seed: int = 0
) -> EvalSet:
    """Pick the evaluation inputs. A bad eval file is an error; a bad calib file falls back."""
    inputs = model_inputs(model)
    if eval_data is not None:
        feeds = take(load_feeds(eval_data, inputs, what="evaluation data"), MAX_SAMPLES)
        labels = load_labels(eval_data)
        return EvalSet(feeds, None if labels is None else labels[:MAX_SAMPLES], "eval")
    notes: tuple[str, ...] = ()
    if calib is not None:
        try:
            return EvalSet(
                take(load_feeds(calib, inputs, what="calibration data"), MAX_SAMPLES), None, "calib"
            )
        except CompressionError as exc:
            notes = (
                f"calibration data unusable for evaluation, used random inputs: {exc.message}",
            )
    return EvalSet(random_feeds(inputs, RANDOM_SAMPLES, seed), None, "random", notes)


def run_outputs(path: Path, data: EvalSet, threads: int = 0) -> tuple[str, NDArray[np.float64]]:
    """The first output of the model at ``path`` over all of ``data``, as float64."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        inputs = model_inputs(onnx.load(str(path), load_external_data=False))
        name = sess.get_outputs()[0].name
        parts = [sess.run([name], batch)[0] for batch in batches(data.feeds, inputs)]
    except Exception as exc:
        raise CompressionError(f"onnxruntime cannot run {path}: {exc}") from exc
    return name, np.concatenate(parts).astype(np.float64)


def _metrics(
    base: NDArray[np.float64], var: NDArray[np.float64], labels: NDArray[np.generic],
    metric: str | None, fn: MetricFn | None,
) -> list[MetricResult]:  # fmt: skip
    if fn is not None and metric is not None:
        b, v = float(fn(base, labels)), float(fn(var, labels))
        return [MetricResult(metric, b, v, (b - v) * 100)]
    classes = base.shape[-1] if base.ndim >= 2 else 1
    if metric == "mse" or classes == 1 or np.issubdtype(labels.dtype, np.floating):
        target = labels.astype(np.float64)
        b = float(np.mean((base.reshape(target.shape) - target) ** 2))
        v = float(np.mean((var.reshape(target.shape) - target) ** 2))
        return [MetricResult("mse", b, v, (v - b) / b * 100 if b else 0.0)]
    out = []
    for k in (1, 5):
        if (metric == "top5" and k == 1) or (k == 5 and (classes < 5 or metric == "top1")):
            continue
        top_b = np.argsort(-base, axis=-1)[..., :k]
        top_v = np.argsort(-var, axis=-1)[..., :k]
        acc_b = float(np.mean(np.any(top_b == labels[..., None], axis=-1)))
        acc_v = float(np.mean(np.any(top_v == labels[..., None], axis=-1)))
        out.append(MetricResult(f"top{k}", acc_b, acc_v, (acc_b - acc_v) * 100))
    return out


def compare(
    base: NDArray[np.float64], var: NDArray[np.float64], data: EvalSet, output_name: str, *,
    metric: str | None = None, max_drop_points: float = 2.0, min_agreement: float = 0.9,
) -> Fidelity:  # fmt: skip
    """Fidelity of ``var`` against ``base`` (both the first output over ``data``)."""
    if base.shape != var.shape:
        raise CompressionError(
            f"variant output {output_name!r} has shape {list(var.shape)}, the baseline {list(base.shape)}"
        )
    metric, fn = resolve_metric(metric)
    diff = np.abs(var - base)
    b2, v2 = base.reshape(len(base), -1), var.reshape(len(var), -1)
    norms = np.linalg.norm(b2, axis=1) * np.linalg.norm(v2, axis=1)
    same = np.all(b2 == v2, axis=1)  # two zero vectors are identical, not undefined
    cos = np.where(norms > 0, np.sum(b2 * v2, axis=1) / np.where(norms > 0, norms, 1), same)
    agreement = None
    if base.ndim >= 2 and base.shape[-1] > 1:
        agreement = float(np.mean(base.argmax(-1) == var.argmax(-1)))
    metrics: list[MetricResult] = []
    notes = list(data.notes)
    if data.labels is not None:
        metrics = _metrics(base, var, data.labels, metric, fn)
    elif metric is not None:
        notes.append(f"metric {metric} not computed: the {data.source} inputs have no labels")
    reasons = []
    for m in metrics[:1]:  # the primary metric decides; the others are for the table
        if m.drop > max_drop_points:
            unit = "% relative" if m.name == "mse" else " points"
            reasons.append(f"{m.name} dropped {m.drop:.1f}{unit} (limit {max_drop_points:g})")
    if agreement is not None and agreement < min_agreement:
        reasons.append(f"top-1 agreement {agreement:.3f} < {min_agreement:g}")
    return Fidelity(
        input_source=data.source,
        samples=len(base),
        output_name=output_name,
        top1_agreement=agreement,
        max_abs_error=float(diff.max()) if diff.size else 0.0,
        mean_abs_error=float(diff.mean()) if diff.size else 0.0,
        cosine_similarity=float(np.mean(cos)),
        metrics=tuple(metrics),
        flagged=bool(reasons),
        flag_reasons=tuple(reasons),
        notes=tuple(notes),
    )


def evaluate(
    baseline: Path, variant: Path, data: EvalSet, *, metric: str | None = None,
    max_drop_points: float = 2.0, min_agreement: float = 0.9,
) -> Fidelity:  # fmt: skip
    """Run both models on ``data`` and :func:`compare` them."""
    name, base = run_outputs(baseline, data)
    _, var = run_outputs(variant, data)
    return compare(
        base,
        var,
        data,
        name,
        metric=metric,
        max_drop_points=max_drop_points,
        min_agreement=min_agreement,
    )
