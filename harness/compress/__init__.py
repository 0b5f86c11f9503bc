"""Host-side compression: one ONNX model in, a family of variants out, each with a manifest.

Entry point: :func:`compress_model`. Recipes are parsed by :func:`parse_recipe`
(``"prune:sparsity=0.5,structured=true>int8-static"``); see :mod:`harness.compress.recipes`.
"""

from harness.compress.fidelity import Fidelity, MetricResult
from harness.compress.manifest import Manifest, StepRecord, read_manifest
from harness.compress.pipeline import VariantOutcome, compress_model
from harness.compress.recipes import TECHNIQUES, Recipe, RecipeStep, parse_recipe

__all__ = [
    "TECHNIQUES",
    "Fidelity",
    "Manifest",
    "MetricResult",
    "Recipe",
    "RecipeStep",
    "StepRecord",
    "VariantOutcome",
    "compress_model",
    "parse_recipe",
    "read_manifest",
]
