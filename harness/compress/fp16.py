"""float16 weights and activations with float32 inputs/outputs, via onnxconverter-common.

``onnxconverter_common.float16`` is the converter ONNX's own tools use; the copy bundled in
``onnxruntime.transformers.float16`` is the fallback when the package is not installed.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from types import ModuleType

import onnx

from harness.compress import graph
from harness.compress.context import StepContext
from harness.compress.recipes import RecipeStep
from harness.errors import CompressionError


def _converter() -> tuple[ModuleType, str]:
    try:
        from onnxconverter_common import float16

        return float16, "onnxconverter_common.float16"
    except ImportError:
        from onnxruntime.transformers import float16 as ort_float16

        return ort_float16, "onnxruntime.transformers.float16"


def fp16(src: Path, dst: Path, step: RecipeStep, ctx: StepContext) -> list[str]:
    """Convert float32 initializers and compute to float16; I/O stays float32 by default."""
    module, name = _converter()
    model = onnx.load(str(src))
    try:
        with warnings.catch_warnings():
            # the converter warns for every value clamped into float16 range; we report it once
            warnings.simplefilter("ignore")
            converted = module.convert_float_to_float16(
                model, keep_io_types=bool(step.get("keep_io_types"))
            )
    except Exception as exc:
        raise CompressionError(f"recipe {ctx.recipe!r}: float16 conversion failed: {exc}") from exc
    graph.topological_sort(converted)
    onnx.save(converted, str(dst))
    return [f"converted with {name}; values beyond float16 range are clamped to +-10000"]
