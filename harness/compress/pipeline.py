"""One model in, one variant per recipe out: ``compress_model``.

Each recipe (or chain) runs in isolation: its steps write through a scratch directory, the
result must pass ``onnx.checker`` and load in onnxruntime, then it is measured (size, counts,
MACs), evaluated against the baseline and described by a manifest. A recipe that fails yields
a :class:`VariantOutcome` carrying its :class:`CompressionError`; the others still run.

Layout: ``out_root/<model-stem>/<recipe-slug>/model.onnx`` + ``manifest.json``.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from harness.compress import graph
from harness.compress.cluster import cluster
from harness.compress.context import StepContext, StepFn
from harness.compress.distill import distill
from harness.compress.fidelity import EvalSet, compare, prepare_eval, resolve_metric, run_outputs
from harness.compress.fp16 import fp16
from harness.compress.int4 import int4
from harness.compress.lowrank import lowrank
from harness.compress.manifest import Manifest, StepRecord
from harness.compress.prune import prune
from harness.compress.quantize import int8_dynamic, int8_static
from harness.compress.recipes import Recipe, parse_recipe
from harness.compress.stats import model_stats
from harness.compress.tflite import compress_tf_model, is_tf_source, is_tflite_recipe
from harness.errors import CompressionError

VARIANT_MODEL = "model.onnx"
STEPS: Mapping[str, StepFn] = {
    "fp16": fp16,
    "int8-dynamic": int8_dynamic,
    "int8-static": int8_static,
    "int4": int4,
    "prune": prune,
    "lowrank": lowrank,
    "cluster": cluster,
    "distill": distill,
}


@dataclass(frozen=True)
class VariantOutcome:
    """A variant that was made (``manifest`` set) or the error that stopped its recipe."""

    recipe: str
    slug: str | None
    model_path: Path | None
    manifest: Manifest | None
    error: CompressionError | None

    @property
    def ok(self) -> bool:
        """True when the variant exists."""
        return self.error is None

    def unwrap(self) -> tuple[Path, Manifest]:
        """The variant's model path and manifest; raises the recipe's error if it failed."""
        if self.error is not None:
            raise self.error
        assert self.model_path is not None and self.manifest is not None
        return self.model_path, self.manifest


@dataclass(frozen=True)
class _Source:
    path: Path
    sha256: str
    size_bytes: int
    macs_per_sample: int | None
    output_name: str
    outputs: np.ndarray
    data: EvalSet


def tool_versions() -> dict[str, str]:
    """Versions of the libraries that shaped a variant."""
    versions = {"onnx": onnx.__version__, "onnxruntime": ort.__version__, "numpy": np.__version__}
    try:
        import onnxconverter_common

        versions["onnxconverter_common"] = str(onnxconverter_common.__version__)
    except ImportError:
        pass
    return versions


def _run_chain(
    recipe: Recipe, source: Path, variant_dir: Path, calib: Path | None, seed: int
) -> list[StepRecord]:
    work = variant_dir / ".work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    records = []
    try:
        current = source
        for i, step in enumerate(recipe.steps):
            last = i == len(recipe.steps) - 1
            dst = variant_dir / VARIANT_MODEL if last else work / f"step{i}.onnx"
            step_dir = work / f"step{i}"
            step_dir.mkdir()
            ctx = StepContext(recipe.text, calib, step_dir, seed)
            notes = STEPS[step.technique](current, dst, step, ctx)
            records.append(StepRecord(step.technique, dict(step.params), tuple(notes)))
            current = dst
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return records


def _check_variant(path: Path, recipe: str) -> None:
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise CompressionError(
            f"recipe {recipe!r} produced a model that fails onnx.checker: {exc}"
        ) from exc
    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise CompressionError(
            f"recipe {recipe!r} produced a model onnxruntime cannot load: {exc}"
        ) from exc


def _make_variant(
    recipe: Recipe, src: _Source, out_dir: Path, calib: Path | None, metric: str | None,
    max_drop_points: float, min_agreement: float, seed: int,
) -> VariantOutcome:  # fmt: skip
    variant_dir = out_dir / recipe.slug
    for stale in (VARIANT_MODEL, "manifest.json"):
        (variant_dir / stale).unlink(missing_ok=True)
    path = variant_dir / VARIANT_MODEL
    try:
        records = _run_chain(recipe, src.path, variant_dir, calib, seed)
        _check_variant(path, recipe.text)
    except BaseException:
        path.unlink(missing_ok=True)  # never leave a half-made variant that looks finished
        raise
    _, outputs = run_outputs(path, src.data)
    fid = compare(
        src.outputs, outputs, src.data, src.output_name,
        metric=metric, max_drop_points=max_drop_points, min_agreement=min_agreement,
    )  # fmt: skip
    stats = model_stats(path)
    manifest = Manifest(
        recipe=recipe.text,
        slug=recipe.slug,
        steps=tuple(records),
        tool_versions=tool_versions(),
        source_path=str(src.path.resolve()),
        source_sha256=src.sha256,
        source_size_bytes=src.size_bytes,
        variant_path=str(path.resolve()),
        variant_sha256=graph.sha256_file(path),
        size_bytes=path.stat().st_size,
        gzip_size_bytes=graph.gzip_size(path),
        parameter_count=stats.parameter_count,
        nonzero_count=stats.nonzero_count,
        macs_per_sample=stats.macs_per_sample,
        source_macs_per_sample=src.macs_per_sample,
        fidelity=fid,
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    manifest.write(variant_dir)
    return VariantOutcome(recipe.text, recipe.slug, path, manifest, None)


def compress_model(
    model_path: Path,
    recipes: Sequence[Recipe | str],
    out_root: Path,
    *,
    calib: Path | None = None,
    eval_data: Path | None = None,
    metric: str | None = None,
    max_drop_points: float = 2.0,
    min_agreement: float = 0.9,
    seed: int = 0,
) -> list[VariantOutcome]:
    """Make one variant per recipe under ``out_root/<model-stem>/``; one outcome per recipe.

    Raises :class:`CompressionError` only for problems that stop every recipe: the source
    model is missing or fails ``onnx.checker``, the eval data does not match its inputs, or
    the metric cannot be loaded. Recipe text that does not parse becomes that recipe's error.
    """
    if is_tf_source(model_path):  # a SavedModel directory or Keras file: the TFLite recipes
        return compress_tf_model(
            model_path, recipes, out_root, calib=calib, eval_data=eval_data, metric=metric,
            max_drop_points=max_drop_points, min_agreement=min_agreement, seed=seed,
        )  # fmt: skip
    model = graph.load_model(model_path, what="source model")
    resolve_metric(metric)
    data = prepare_eval(model, eval_data, calib, seed=seed)
    name, outputs = run_outputs(model_path, data)
    src = _Source(
        model_path, graph.sha256_file(model_path), model_path.stat().st_size,
        model_stats(model_path).macs_per_sample, name, outputs, data,
    )  # fmt: skip
    out_dir = out_root / model_path.stem
    results: list[VariantOutcome] = []
    seen: set[str] = set()
    for item in recipes:
        text = item if isinstance(item, str) else item.text
        try:
            recipe = parse_recipe(item) if isinstance(item, str) else item
            if recipe.slug in seen:
                raise CompressionError(f"recipe {text!r} is listed twice")
            seen.add(recipe.slug)
            if is_tflite_recipe(recipe):
                raise CompressionError(
                    f"recipe {text!r} converts a TensorFlow model; {model_path.name} is ONNX",
                    hint="give the SavedModel directory or .keras/.h5 file it was exported from",
                )
            results.append(
                _make_variant(
                    recipe, src, out_dir, calib, metric, max_drop_points, min_agreement, seed
                )
            )
        except CompressionError as exc:
            results.append(VariantOutcome(text, None, None, None, exc))
        except Exception as exc:  # a library bug must not cost the other recipes their variants
            err = CompressionError(
                f"recipe {text!r} failed unexpectedly: {type(exc).__name__}: {exc}",
                hint="this is a bug in harness or the converter; please report it with the model",
            )
            results.append(VariantOutcome(text, None, None, None, err))
    return results
