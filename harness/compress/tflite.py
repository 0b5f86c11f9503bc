"""TFLite variants (optional ``tf`` extra) of a SavedModel or Keras source.

Recipes (single steps, they do not chain):

- ``tflite-fp32``: plain conversion, float32 weights and activations;
- ``tflite-fp16``: float16 weights (dequantized to float32 at load or on the GPU delegate);
- ``tflite-dynamic``: dynamic-range quantization, int8 weights, float activations;
- ``tflite-int8``: full integer, activations calibrated on ``--calib`` data; ``io=int8`` (the
  default) makes the model's inputs and outputs int8 too, ``io=float`` keeps float I/O;
- ``tflite-int16x8``: int16 activations with int8 weights, float I/O.

Every variant is loaded and run by ``ai_edge_litert`` (the runtime devices use) on the same
inputs as the source model run in TensorFlow, and compared with the ONNX recipes' metrics
(:func:`harness.compress.fidelity.compare`). Layout as for ONNX variants:
``out_root/<model-stem>/<recipe-slug>/model.tflite`` + ``manifest.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from harness.compress import graph
from harness.compress.data import (
    Feeds,
    ModelInput,
    batches,
    load_feeds,
    load_labels,
    random_feeds,
    take,
)
from harness.compress.fidelity import (
    MAX_SAMPLES,
    RANDOM_SAMPLES,
    EvalSet,
    compare,
    resolve_metric,
)
from harness.compress.manifest import Manifest, StepRecord
from harness.compress.recipes import Recipe, RecipeStep, parse_recipe
from harness.compress.tflite_source import (
    TfSource,
    import_tensorflow,
    is_tf_source,
    load_tf_source,
)
from harness.errors import CompressionError

if TYPE_CHECKING:
    from harness.compress.pipeline import VariantOutcome

__all__ = ["compress_tf_model", "is_tf_source", "is_tflite_recipe", "run_tflite"]

VARIANT_MODEL = "model.tflite"
PREFIX = "tflite-"
NEEDS_DATA = ("tflite-int8", "tflite-int16x8")


def is_tflite_recipe(recipe: Recipe) -> bool:
    """True when any step of ``recipe`` is a TFLite conversion."""
    return any(s.technique.startswith(PREFIX) for s in recipe.steps)


def tool_versions(tf: Any) -> dict[str, str]:
    """Versions of the libraries that shaped and checked a TFLite variant."""
    versions = {"tensorflow": str(tf.__version__), "numpy": np.__version__}
    for dist in ("keras", "ai-edge-litert"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    return versions


def _representative(
    feeds: Feeds, inputs: list[ModelInput], samples: int
) -> Iterator[dict[str, NDArray[np.generic]]]:
    # one sample per call, batch 1: the calibrator only needs the value ranges
    count = min(samples, len(next(iter(feeds.values()))))
    for i in range(count):
        yield {inp.name: feeds[inp.name][i : i + 1] for inp in inputs}


def _calib_feeds(step: RecipeStep, src: TfSource, calib: Path | None, recipe: str) -> Feeds:
    if calib is None:
        names = ", ".join(repr(i.name) for i in src.inputs)
        raise CompressionError(
            f"recipe {recipe!r} needs representative data to calibrate activations",
            hint=f"pass --calib data.npz with one array per input ({names}), samples along axis 0",
        )
    return load_feeds(calib, src.inputs, what=f"representative data for recipe {recipe!r}")


def convert(
    tf: Any, src: TfSource, step: RecipeStep, calib: Path | None, recipe: str
) -> tuple[bytes, list[str]]:
    """Convert ``src`` with the converter settings of ``step``; returns the flatbuffer and notes."""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(src.saved_model_dir))
    notes = [f"converted by TFLiteConverter (tensorflow {tf.__version__}) from a {src.kind}"]
    technique = step.technique
    if technique != "tflite-fp32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if technique == "tflite-fp16":
        converter.target_spec.supported_types = [tf.float16]
    if technique in NEEDS_DATA:
        feeds = _calib_feeds(step, src, calib, recipe)
        samples = int(step.get("samples") or 1)
        converter.representative_dataset = lambda: _representative(feeds, src.inputs, samples)
        used = min(samples, len(next(iter(feeds.values()))))
        notes.append(f"activations calibrated on {used} samples of {calib.name if calib else ''}")
    if technique == "tflite-int8":
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if step.get("io") == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    if technique == "tflite-int16x8":
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    try:
        with warnings.catch_warnings():
            # The quantizer builds a tf.lite.Interpreter for calibration, which warns about its
            # own deprecation on every call; that is TensorFlow's business, not the user's.
            warnings.simplefilter("ignore")
            data: bytes = converter.convert()
    except Exception as exc:
        first = " ".join(str(exc).split())[:400]
        raise CompressionError(f"recipe {recipe!r}: the TFLite converter failed: {first}") from exc
    return data, notes


def _interpreter(path: Path) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path), num_threads=1)


def _quantize(x: NDArray[np.generic], detail: Mapping[str, Any]) -> NDArray[np.generic]:
    dtype = np.dtype(detail["dtype"])
    scale, zero_point = detail["quantization"]
    if np.issubdtype(dtype, np.integer) and scale and np.issubdtype(x.dtype, np.floating):
        info = np.iinfo(dtype)
        q = np.round(np.asarray(x, np.float64) / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)
    return np.asarray(x).astype(dtype)


def _dequantize(y: NDArray[np.generic], detail: Mapping[str, Any]) -> NDArray[np.float64]:
    scale, zero_point = detail["quantization"]
    if np.issubdtype(y.dtype, np.integer) and scale:
        return (y.astype(np.float64) - zero_point) * scale
    return y.astype(np.float64)


def run_tflite(
    path: Path, feeds: Feeds, inputs: list[ModelInput], output_name: str
) -> NDArray[np.float64]:
    """Run the ``serving_default`` signature of a ``.tflite`` in ai_edge_litert over ``feeds``.

    Float inputs are quantized with the model's own input scale/zero point when its inputs are
    integer (``io=int8``), and integer outputs are dequantized, so the result is comparable
    with the float source: output ``output_name``, as float64.
    """
    try:
        runner = _interpreter(path).get_signature_runner()
        in_details = runner.get_input_details()
        out_detail = runner.get_output_details()[output_name]
        parts = []
        for batch in batches(feeds, inputs):
            args = {k: _quantize(v, in_details[k]) for k, v in batch.items()}
            parts.append(_dequantize(np.asarray(runner(**args)[output_name]), out_detail))
    except Exception as exc:
        raise CompressionError(f"ai_edge_litert cannot run {path}: {exc}") from exc
    return np.concatenate(parts)


def eval_set(
    inputs: list[ModelInput], eval_data: Path | None, calib: Path | None, seed: int
) -> EvalSet:
    """The evaluation inputs: eval npz, else calib npz (falling back), else seeded random."""
    # mirrors fidelity.prepare_eval, which takes an ONNX model rather than an input list
    if eval_data is not None:
        feeds = take(load_feeds(eval_data, inputs, what="evaluation data"), MAX_SAMPLES)
        labels = load_labels(eval_data)
        return EvalSet(feeds, None if labels is None else labels[:MAX_SAMPLES], "eval")
    notes: tuple[str, ...] = ()
    if calib is not None:
        try:
            feeds = take(load_feeds(calib, inputs, what="calibration data"), MAX_SAMPLES)
            return EvalSet(feeds, None, "calib")
        except CompressionError as exc:
            notes = (
                f"calibration data unusable for evaluation, used random inputs: {exc.message}",
            )
    return EvalSet(random_feeds(inputs, RANDOM_SAMPLES, seed), None, "random", notes)


def _check_recipe(recipe: Recipe) -> RecipeStep:
    if len(recipe.steps) != 1 or not is_tflite_recipe(recipe):
        tech = next((s.technique for s in recipe.steps if not s.technique.startswith(PREFIX)), "")
        raise CompressionError(
            f"recipe {recipe.text!r} cannot run on a TensorFlow source: "
            + (f"{tech!r} works on ONNX models" if tech else "TFLite recipes do not chain"),
            hint="use one of tflite-fp32, tflite-fp16, tflite-dynamic, tflite-int8, "
            "tflite-int16x8 per --recipe",
        )
    return recipe.steps[0]


def _make_variant(
    tf: Any, recipe: Recipe, src: TfSource, base: NDArray[np.float64], data: EvalSet,
    out_dir: Path, calib: Path | None, metric: str | None, max_drop_points: float,
    min_agreement: float, source_sha: str, source_size: int,
) -> Manifest:  # fmt: skip
    step = _check_recipe(recipe)
    variant_dir = out_dir / recipe.slug
    variant_dir.mkdir(parents=True, exist_ok=True)
    path = variant_dir / VARIANT_MODEL
    for stale in (path, variant_dir / "manifest.json"):
        stale.unlink(missing_ok=True)
    try:
        flatbuffer, notes = convert(tf, src, step, calib, recipe.text)
        path.write_bytes(flatbuffer)
        outputs = run_tflite(path, data.feeds, src.inputs, src.output_name)
    except BaseException:
        path.unlink(missing_ok=True)  # never leave a half-made variant that looks finished
        raise
    fid = compare(
        base, outputs, data, src.output_name,
        metric=metric, max_drop_points=max_drop_points, min_agreement=min_agreement,
    )  # fmt: skip
    manifest = Manifest(
        recipe=recipe.text,
        slug=recipe.slug,
        steps=(StepRecord(step.technique, dict(step.params), tuple(notes)),),
        tool_versions=tool_versions(tf),
        source_path=str(src.path.resolve()),
        source_sha256=source_sha,
        source_size_bytes=source_size,
        variant_path=str(path.resolve()),
        variant_sha256=graph.sha256_file(path),
        size_bytes=path.stat().st_size,
        gzip_size_bytes=graph.gzip_size(path),
        parameter_count=src.parameter_count,
        nonzero_count=src.nonzero_count,
        macs_per_sample=None,
        source_macs_per_sample=None,
        fidelity=fid,
        created_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    manifest.write(variant_dir)
    return manifest


def source_identity(path: Path) -> tuple[str, int]:
    """SHA-256 and bytes of a Keras file, or of a SavedModel directory's files (sorted walk)."""
    if path.is_file():
        return graph.sha256_file(path), path.stat().st_size
    h, total = hashlib.sha256(), 0
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0")
        h.update(f.read_bytes())
        total += f.stat().st_size
    return h.hexdigest(), total


def compress_tf_model(
    model_path: Path, recipes: Sequence[Recipe | str], out_root: Path, *,
    calib: Path | None = None, eval_data: Path | None = None, metric: str | None = None,
    max_drop_points: float = 2.0, min_agreement: float = 0.9, seed: int = 0,
) -> list[VariantOutcome]:  # fmt: skip
    """TFLite variants of a SavedModel/Keras source under ``out_root/<stem>/``; one outcome
    per recipe, in order (:func:`harness.compress.pipeline.compress_model` routes here).

    Raises :class:`CompressionError` only for what stops every recipe: TensorFlow missing, the
    source unloadable, eval data not matching its inputs, an unknown metric.
    """
    from harness.compress.pipeline import VariantOutcome  # pipeline imports this module

    resolve_metric(metric)
    tf = import_tensorflow()
    results: list[VariantOutcome] = []
    with tempfile.TemporaryDirectory(prefix="harness-tf-") as work:
        src = load_tf_source(model_path, Path(work))
        data = eval_set(src.inputs, eval_data, calib, seed)
        base = src.run(data.feeds)
        sha, size = source_identity(model_path)
        out_dir = out_root / model_path.stem
        seen: set[str] = set()
        for item in recipes:
            text = item if isinstance(item, str) else item.text
            try:
                recipe = parse_recipe(item) if isinstance(item, str) else item
                if recipe.slug in seen:
                    raise CompressionError(f"recipe {text!r} is listed twice")
                seen.add(recipe.slug)
                manifest = _make_variant(
                    tf, recipe, src, base, data, out_dir, calib, metric,
                    max_drop_points, min_agreement, sha, size,
                )  # fmt: skip
                path = out_dir / recipe.slug / VARIANT_MODEL
                results.append(VariantOutcome(recipe.text, recipe.slug, path, manifest, None))
            except CompressionError as exc:
                results.append(VariantOutcome(text, None, None, None, exc))
            except Exception as exc:  # a converter bug must not cost the other recipes
                err = CompressionError(
                    f"recipe {text!r} failed unexpectedly: {type(exc).__name__}: {exc}",
                    hint="this is a bug in harness or the TFLite converter; please report it",
                )
                results.append(VariantOutcome(text, None, None, None, err))
    return results
