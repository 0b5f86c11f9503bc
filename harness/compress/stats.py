"""Static facts about a model file: parameters, non-zeros and MACs per sample.

MACs are counted for Conv/Gemm/MatMul (and their integer, QLinear and MatMulNBits forms) from
shapes that ``onnx.shape_inference`` finds with every symbolic input dimension set to 1. If any
such layer's shapes stay unknown the count is ``None`` rather than a silent undercount.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from harness.compress import graph

_CONV = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}  # op -> index of the weight input
_MATMUL = {"MatMul", "MatMulInteger", "QLinearMatMul", "Gemm", "FusedMatMul"}


@dataclass(frozen=True)
class ModelStats:
    """Counts for one model file."""

    parameter_count: int
    nonzero_count: int
    macs_per_sample: int | None


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...] | None]:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        for d in vi.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.dim_value = 1  # MACs per sample: batch (and any other free dim) = 1
    del m.graph.value_info[:]
    with contextlib.suppress(Exception):  # unknown shapes -> MACs None below
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    out: dict[str, tuple[int, ...] | None] = {}
    for vi in [*m.graph.input, *m.graph.value_info, *m.graph.output]:
        t = vi.type.tensor_type
        if not t.HasField("shape"):
            out[vi.name] = None
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        out[vi.name] = None if None in dims else tuple(int(d) for d in dims if d is not None)
    for init in m.graph.initializer:
        out[init.name] = tuple(init.dims)
    return out


def count_macs(model: onnx.ModelProto) -> int | None:
    """Multiply-accumulates per sample of the matrix layers, or None if a shape is unknown."""
    shapes = _shapes(model)
    total = 0
    for node in model.graph.node:
        op = node.op_type
        if op not in _CONV and op not in _MATMUL and op != "MatMulNBits":
            continue
        out = shapes.get(node.output[0])
        a = shapes.get(node.input[0])
        if op in _CONV:
            w = shapes.get(node.input[_CONV[op]])
            if out is None or w is None:
                return None
            total += math.prod(out) * math.prod(w[1:])
        elif op == "MatMulNBits":
            if a is None:
                return None
            k, n = int(graph.attr(node, "K", 0)), int(graph.attr(node, "N", 0))  # type: ignore[call-overload]
            total += math.prod(a[:-1]) * k * n
        else:
            if out is None or a is None:
                return None
            k = a[0] if op == "Gemm" and graph.attr(node, "transA", 0) else a[-1]
            total += math.prod(out) * k
    return total


def model_stats(path: Path) -> ModelStats:
    """Parameter count (all constant tensors), non-zeros among them, and MACs per sample.

    MatMulNBits weights are packed two per byte; they count as their K x N logical weights.
    """
    model = onnx.load(str(path))
    packed = {
        n.input[1]: int(graph.attr(n, "K", 0)) * int(graph.attr(n, "N", 0))  # type: ignore[call-overload]
        for n in model.graph.node
        if n.op_type == "MatMulNBits"
    }
    tensors = list(model.graph.initializer)
    tensors += [
        a.t
        for n in model.graph.node
        if n.op_type == "Constant"
        for a in n.attribute
        if a.name == "value"
    ]
    params = nonzero = 0
    for t in tensors:
        if t.name in packed:
            params += packed[t.name]
            nonzero += packed[t.name]
            continue
        arr = numpy_helper.to_array(t)
        params += int(arr.size)
        nonzero += int(np.count_nonzero(arr))
    return ModelStats(params, nonzero, count_macs(model))
