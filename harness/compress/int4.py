"""Weight-only int4 for MatMul through ORT's ``MatMulNBitsQuantizer``.

The quantizer only rewrites MatMul nodes. Gemm layers with a constant weight are first
rewritten as MatMul (+ Add for the bias) — the same maths, ``alpha``/``transB``/``beta`` folded
into the constants — so classifier heads and MLPs get quantized too. Conv stays float; the
notes say how many weights that leaves untouched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from harness.compress import graph
from harness.compress.context import StepContext
from harness.compress.quantize import quiet_root_logger
from harness.compress.recipes import RecipeStep
from harness.errors import CompressionError


def gemm_to_matmul(model: onnx.ModelProto) -> int:
    """Rewrite every Gemm with a constant 2-D weight (and no transA) as MatMul [+ Add].

    Returns how many Gemm nodes were rewritten.
    """
    inits = graph.initializers(model)
    rewritten = 0
    new_nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if (
            node.op_type != "Gemm"
            or node.input[1] not in inits
            or graph.attr(node, "transA", 0)
            or (len(node.input) > 2 and node.input[2] and node.input[2] not in inits)
        ):
            new_nodes.append(node)
            continue
        w = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        if graph.attr(node, "transB", 0):
            w = w.T
        w = w * float(graph.attr(node, "alpha", 1.0))  # type: ignore[arg-type]
        w_name = graph.unique_name(model, f"{node.input[1]}_matmul")
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), w_name))
        has_bias = len(node.input) > 2 and bool(node.input[2])
        mm_out = graph.unique_name(model, f"{node.output[0]}_mm") if has_bias else node.output[0]
        new_nodes.append(
            helper.make_node("MatMul", [node.input[0], w_name], [mm_out], name=f"{node.name}_mm")
        )
        if has_bias:
            c = numpy_helper.to_array(inits[node.input[2]]).astype(np.float32)
            c = c * float(graph.attr(node, "beta", 1.0))  # type: ignore[arg-type]
            c_name = graph.unique_name(model, f"{node.input[2]}_add")
            model.graph.initializer.append(numpy_helper.from_array(c, c_name))
            new_nodes.append(
                helper.make_node(
                    "Add", [mm_out, c_name], [node.output[0]], name=f"{node.name}_bias"
                )
            )
        rewritten += 1
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    _drop_unused_initializers(model)
    return rewritten


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {name for n in model.graph.node for name in n.input}
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def int4(src: Path, dst: Path, step: RecipeStep, ctx: StepContext) -> list[str]:
    """Block-wise 4-bit weights for every MatMul with a constant weight (MatMulNBits)."""
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError as exc:
        raise CompressionError(
            f"recipe {ctx.recipe!r}: this onnxruntime cannot do weight-only int4 ({exc})",
            hint="pip install onnx-ir (ORT >= 1.22 needs it for MatMulNBitsQuantizer)",
        ) from exc
    model = onnx.load(str(src))
    converted = gemm_to_matmul(model)
    matmuls = [
        n
        for n in model.graph.node
        if n.op_type == "MatMul" and n.input[1] in graph.initializers(model)
    ]
    if not matmuls:
        raise CompressionError(
            f"recipe {ctx.recipe!r}: the model has no MatMul/Gemm with constant weights to quantize",
            hint="int4 here is weight-only for MatMul; use int8-static for convolutional models",
        )
    block = int(step.get("block_size") or 32)
    try:
        with quiet_root_logger():
            quant = MatMulNBitsQuantizer(
                model,
                bits=4,
                block_size=block,
                is_symmetric=bool(step.get("symmetric")),
                op_types_to_quantize=("MatMul",),
            )
            quant.process()
            quant.model.save_model_to_file(str(dst), use_external_data_format=False)
    except Exception as exc:
        raise CompressionError(
            f"recipe {ctx.recipe!r}: MatMulNBitsQuantizer failed: {exc}"
        ) from exc
    out = onnx.load(str(dst), load_external_data=False)
    done = sum(1 for n in out.graph.node if n.op_type == "MatMulNBits")
    convs = sum(1 for n in out.graph.node if n.op_type == "Conv")
    notes = [f"{done} of {len(matmuls)} MatMul layers now MatMulNBits (block {block})"]
    if converted:
        notes.append(f"{converted} Gemm layers rewritten as MatMul+Add first")
    if convs:
        notes.append(f"{convs} Conv layers left in float (int4 here is MatMul-only)")
    if done == 0:
        raise CompressionError(
            f"recipe {ctx.recipe!r}: no MatMul was quantized (shapes too small for block {block}?)",
            hint="try int4:block_size=16",
        )
    return notes
