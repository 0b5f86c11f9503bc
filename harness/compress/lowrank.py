"""Low-rank factorisation: ``W ≈ A @ B`` by truncated SVD, for Gemm/MatMul and 1x1 Conv.

A ``K x N`` weight becomes ``K x r`` then ``r x N`` (two MatMul/Gemm, or two 1x1 Conv). The rank
``r`` is ``rank_ratio * min(K, N)`` or the smallest keeping ``energy`` of ``sum(sigma^2)``; the
relative Frobenius error is then ``sqrt(1 - energy_kept)``. A layer is only replaced when
``r * (K + N) < K * N``, i.e. when the factorised pair needs fewer MACs; others are reported as
skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import helper, numpy_helper

from harness.compress import graph
from harness.compress.context import StepContext
from harness.compress.recipes import RecipeStep
from harness.errors import CompressionError


@dataclass(frozen=True)
class Factors:
    """``w ≈ left @ right`` with the rank and the share of spectral energy kept."""

    left: NDArray[np.float32]  # K x r
    right: NDArray[np.float32]  # r x N
    rank: int
    energy_kept: float


def factorise(
    w: NDArray[np.floating], *, rank_ratio: float | None, energy: float | None
) -> Factors:
    """Truncated SVD of a 2-D ``w`` (K x N); singular values split evenly between the factors."""
    u, s, vt = np.linalg.svd(w.astype(np.float64), full_matrices=False)
    power = s**2
    total = float(power.sum()) or 1.0
    if rank_ratio is not None:
        rank = max(1, round(rank_ratio * len(s)))
    else:
        cumulative = np.cumsum(power) / total
        rank = int(np.searchsorted(cumulative, (energy or 1.0) - 1e-12) + 1)
    rank = min(rank, len(s))
    root = np.sqrt(s[:rank])
    left = (u[:, :rank] * root).astype(np.float32)
    right = (root[:, None] * vt[:rank]).astype(np.float32)
    return Factors(left, right, rank, float(power[:rank].sum() / total))


def _matrix(model: onnx.ModelProto, layer: graph.WeightLayer) -> NDArray[np.floating] | None:
    """The layer's weight as K x N (inputs x outputs), or None if it is not factorisable here."""
    w = graph.get_array(model, layer.weight).astype(np.float32)
    node = layer.node
    if node.op_type == "Conv":
        if w.ndim != 4 or w.shape[2:] != (1, 1) or int(graph.attr(node, "group", 1)) != 1:  # type: ignore[call-overload]
            return None
        return w[:, :, 0, 0].T
    if node.op_type == "Gemm":
        w = w.T if graph.attr(node, "transB", 0) else w
        return w * float(graph.attr(node, "alpha", 1.0))  # type: ignore[arg-type]
    return w


def _replace(model: onnx.ModelProto, layer: graph.WeightLayer, f: Factors) -> list[onnx.NodeProto]:
    """The two nodes replacing ``layer`` (the second keeps the original output and bias)."""
    node = layer.node
    a_name = graph.unique_name(model, f"{layer.weight}_lr_a")
    b_name = graph.unique_name(model, f"{layer.weight}_lr_b")
    mid = graph.unique_name(model, f"{node.output[0]}_lr")
    if node.op_type == "Conv":
        a = f.left.T[:, :, None, None]  # r x C x 1 x 1
        b = f.right.T[:, :, None, None]  # M x r x 1 x 1
        attrs = {at.name: helper.get_attribute_value(at) for at in node.attribute}
        first = helper.make_node(
            "Conv", [node.input[0], a_name], [mid], name=f"{node.name}_lr_a", **attrs
        )
        second_inputs = [mid, b_name, *node.input[2:3]]
        second = helper.make_node(
            "Conv", second_inputs, list(node.output), name=f"{node.name}_lr_b", kernel_shape=[1, 1]
        )
    else:
        a, b = f.left, f.right
        first = helper.make_node("MatMul", [node.input[0], a_name], [mid], name=f"{node.name}_lr_a")
        if node.op_type == "Gemm":
            beta = float(graph.attr(node, "beta", 1.0))  # type: ignore[arg-type]
            second = helper.make_node(
                "Gemm",
                [mid, b_name, *node.input[2:3]],
                list(node.output),
                name=f"{node.name}_lr_b",
                beta=beta,
            )
        else:
            second = helper.make_node(
                "MatMul", [mid, b_name], list(node.output), name=f"{node.name}_lr_b"
            )
    model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(a), a_name))
    model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(b), b_name))
    return [first, second]


def lowrank(src: Path, dst: Path, step: RecipeStep, ctx: StepContext) -> list[str]:
    """The ``lowrank`` recipe: factorise every layer where that lowers its MACs."""
    model = onnx.load(str(src))
    rank_ratio = step.get("rank_ratio")
    energy = step.get("energy")
    include_conv = bool(step.get("include_conv"))
    done, skipped = [], []
    replacements: dict[str, list[onnx.NodeProto]] = {}
    for layer in list(graph.weight_layers(model)):
        if layer.node.op_type == "Conv" and not include_conv:
            continue
        w = _matrix(model, layer)
        if w is None:
            if layer.node.op_type != "Conv" or int(graph.attr(layer.node, "group", 1)) == 1:  # type: ignore[call-overload]
                skipped.append(f"{layer.name}: only 1x1 Conv is factorised")
            continue
        k, n = w.shape
        f = factorise(
            w,
            rank_ratio=float(rank_ratio) if rank_ratio is not None else None,
            energy=float(energy) if energy is not None else None,
        )
        if f.rank * (k + n) >= k * n:
            skipped.append(f"{layer.name}: rank {f.rank} of {k}x{n} would not reduce MACs")
            continue
        replacements[layer.node.output[0]] = _replace(model, layer, f)
        done.append(f"{layer.name}: {k}x{n} -> rank {f.rank} ({f.energy_kept:.1%} energy)")
    if not done:
        raise CompressionError(
            f"recipe {ctx.recipe!r}: no layer could be factorised with fewer MACs ({'; '.join(skipped) or 'no Gemm/MatMul/1x1 Conv'})",
            hint="lower rank_ratio or energy, e.g. lowrank:energy=0.8",
        )
    nodes = [n for node in model.graph.node for n in replacements.get(node.output[0], [node])]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {name for n in model.graph.node for name in n.input}
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    graph.save_model(graph.refresh_shapes(model), dst)
    return done + [f"skipped {s}" for s in skipped]
