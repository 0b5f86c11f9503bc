"""Weight clustering (palettisation): each layer's weights replaced by one of k centroids.

``scipy.cluster.vq.kmeans2`` (k-means++ init, seeded) clusters each Conv/Gemm/MatMul weight's
values; every weight becomes its centroid. The ONNX file still stores float32 values, so it is
only smaller once compressed (the gzip size in the manifest) or when a runtime stores indices
+ palette (Core ML, some NPUs): the notes say so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from scipy.cluster.vq import kmeans2

from harness.compress import graph
from harness.compress.context import StepContext
from harness.compress.recipes import RecipeStep
from harness.errors import CompressionError


def palettise(w: NDArray[np.floating], k: int, seed: int) -> NDArray[np.float32]:
    """``w`` with every value replaced by its k-means centroid (k clusters over the values)."""
    values = w.astype(np.float64).reshape(-1, 1)
    if len(np.unique(values)) <= k:
        return w.astype(np.float32)  # already at most k distinct values
    centroids, labels = kmeans2(values, k, minit="++", seed=seed)
    return centroids[labels, 0].reshape(w.shape).astype(np.float32)


def cluster(src: Path, dst: Path, step: RecipeStep, ctx: StepContext) -> list[str]:
    """The ``cluster`` recipe: k-means palettisation of every weight layer."""
    model = onnx.load(str(src))
    k = int(step.get("k") or 16)
    seed = int(step.get("seed") or 0)
    layers = list(graph.weight_layers(model))
    if not layers:
        raise CompressionError(
            f"recipe {ctx.recipe!r}: the model has no Conv/Gemm/MatMul with float weights",
            hint="clustering works on float weights; apply it before quantization in a chain",
        )
    done = 0
    for layer in layers:
        w = graph.get_array(model, layer.weight)
        if w.size <= k:
            continue  # nothing to share: the layer already has at most k values
        graph.set_array(model, layer.weight, palettise(w, k, seed))
        done += 1
    graph.save_model(model, dst)
    bits = int(np.ceil(np.log2(k)))
    return [
        f"{done} layers palettised to {k} values ({bits}-bit indices if stored as a palette)",
        "the float ONNX file keeps its size; the gzip'd size shows the saving",
    ]
