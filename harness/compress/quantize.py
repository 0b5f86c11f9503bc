"""int8 quantization through ``onnxruntime.quantization``: dynamic and static (QDQ).

Nothing here re-implements quantization: it prepares the model (``quant_pre_process``), checks
the calibration data against the model's inputs, maps recipe parameters onto ORT's options and
turns ORT's exceptions into one-line errors naming the recipe.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)

from harness.compress.context import StepContext
from harness.compress.data import NpzCalibrationReader, load_feeds, model_inputs, take
from harness.compress.recipes import RecipeStep
from harness.errors import CompressionError

_CALIBRATION = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
CALIB_BATCH = 16
_WEIGHT_TYPE = {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}


@contextmanager
def quiet_root_logger() -> Iterator[None]:
    """Silence root-logger warnings and stdout prints for the duration (restored afterwards).

    ORT's quantizer logs "please run pre-processing" through the root logger and its
    histogram calibrators ``print`` progress; a library must not write to the CLI's stdout.
    """
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(old)


def preprocess(src: Path, dst: Path, recipe: str) -> list[str]:
    """Shape inference + graph optimisation that ORT recommends before quantizing."""
    try:
        with quiet_root_logger():
            quant_pre_process(str(src), str(dst))
        return []
    except Exception as exc:  # symbolic shape inference fails on some graphs; retry without
        try:
            with quiet_root_logger():
                quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        except Exception as exc2:
            raise CompressionError(
                f"recipe {recipe!r}: quantization pre-processing failed: {exc2}",
                hint="run onnxruntime.quantization.shape_inference on the model to see why",
            ) from exc2
        return [f"symbolic shape inference skipped ({type(exc).__name__})"]


def int8_dynamic(src: Path, dst: Path, step: RecipeStep, ctx: StepContext) -> list[str]:
    """Weights to int8 offline, activations quantized at run time (MatMulInteger/ConvInteger)."""
    pre = ctx.work_dir / "preprocessed.onnx"
    notes = preprocess(src, pre, ctx.recipe)
    try:
        with quiet_root_logger():
            quantize_dynamic(
                str(pre),
                str(dst),
                per_channel=bool(step.get("per_channel")),
                reduce_range=bool(step.get("reduce_range")),
                weight_type=_WEIGHT_TYPE[str(step.get("weight_type"))],
            )
    except Exception as exc:
        raise CompressionError(f"recipe {ctx.recipe!r}: quantize_dynamic failed: {exc}") from exc
    return notes


def int8_static(src: Path, dst: Path, step: RecipeStep, ctx: StepContext) -> list[str]:
    """QDQ int8 with calibrated activation ranges (per-channel weights by default)."""
    if ctx.calib is None:
        raise CompressionError(
            f"recipe {ctx.recipe!r} needs calibration data",
            hint="pass --calib calib.npz (one array per model input, ~100-500 representative samples)",
        )
    model = onnx.load(str(src), load_external_data=False)
    inputs = model_inputs(model)
    feeds = load_feeds(ctx.calib, inputs, what=f"calibration data for recipe {ctx.recipe!r}")
    feeds = take(feeds, int(step.get("samples") or 256))
    n = len(next(iter(feeds.values())))
    # histogram calibrators (entropy, percentile) stack per-batch outputs, so every batch must
    # have the same size: use whole batches only
    batch = min(CALIB_BATCH, n)
    feeds = take(feeds, n - n % batch)
    n = n - n % batch
    choice = str(step.get("per_channel"))
    has_conv = any(node.op_type == "Conv" for node in model.graph.node)
    per_channel = choice == "true" or (choice == "auto" and has_conv)
    pre = ctx.work_dir / "preprocessed.onnx"
    notes = preprocess(src, pre, ctx.recipe)
    symmetric = bool(step.get("symmetric_activations"))
    method = str(step.get("calibration"))
    try:
        with quiet_root_logger():
            quantize_static(
                str(pre),
                str(dst),
                NpzCalibrationReader(feeds, inputs, batch),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=bool(step.get("reduce_range")),
                # symmetric activations want signed int8 (zero point 0), as ARM kernels prefer;
                # otherwise uint8 activations with a zero point, ORT's x86 default pairing (U8S8).
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=_CALIBRATION[method],
                extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True},
                calibration_cache_path=None,
            )
    except CompressionError:
        raise
    except Exception as exc:
        raise CompressionError(f"recipe {ctx.recipe!r}: quantize_static failed: {exc}") from exc
    granularity = "per-channel" if per_channel else "per-tensor"
    return [
        *notes,
        f"{granularity} weights; {method} calibration on {n} samples from {ctx.calib.name}",
    ]
