"""Small ONNX graph helpers shared by the hand-written recipes (prune, lowrank, cluster).

A *weight layer* is a Conv, Gemm or MatMul whose weight is an initializer; :class:`WeightLayer`
says which axis of that weight holds the layer's output channels and which its inputs, so the
recipes never have to re-derive Gemm's ``transB`` or Conv's layout.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper

from harness.errors import CompressionError

WEIGHT_OPS = ("Conv", "Gemm", "MatMul")


@dataclass(frozen=True)
class WeightLayer:
    """A Conv/Gemm/MatMul node whose weight is an initializer."""

    node: onnx.NodeProto
    weight: str  # initializer name
    out_axis: int  # axis of the weight indexing output channels
    in_axis: int  # axis of the weight indexing input channels

    @property
    def name(self) -> str:
        """The node's name, or its first output when the node is unnamed."""
        return self.node.name or self.node.output[0]


def load_model(path: Path, *, what: str = "model") -> onnx.ModelProto:
    """Load and check an ONNX model; a file that fails ``onnx.checker`` is a CompressionError."""
    if not path.is_file():
        raise CompressionError(f"{what} {path} does not exist")
    if path.suffix.lower() == ".tflite":
        raise CompressionError(
            f"{what} {path} is a TFLite model; these recipes work on ONNX models",
            hint="compress its ONNX export, or the .keras/SavedModel it came from with the "
            "tflite-* recipes",
        )
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises several unrelated types for corrupt files
        first = " ".join(str(exc).split())[:300]
        raise CompressionError(
            f"{what} {path} is not a valid ONNX model: {first}",
            hint="check that it exports and loads with onnx.checker.check_model before compressing",
        ) from exc
    return model


def save_model(model: onnx.ModelProto, path: Path) -> None:
    """Save ``model`` to ``path`` (single file; these models are far below 2 GB)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """Initializer name -> TensorProto."""
    return {t.name: t for t in model.graph.initializer}


def get_array(model: onnx.ModelProto, name: str) -> NDArray[Any]:
    """The initializer ``name`` as a numpy array."""
    return numpy_helper.to_array(initializers(model)[name])


def set_array(model: onnx.ModelProto, name: str, value: NDArray[np.generic]) -> None:
    """Replace the initializer ``name`` in place (keeps its position in the list)."""
    for i, t in enumerate(model.graph.initializer):
        if t.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value, name))
            return
    raise KeyError(name)


def attr(node: onnx.NodeProto, name: str, default: object) -> object:
    """An attribute's Python value, or ``default``."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def set_attr(node: onnx.NodeProto, name: str, value: object) -> None:
    """Set (replace) an attribute on ``node``."""
    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(onnx.helper.make_attribute(name, value))


def weight_layers(model: onnx.ModelProto) -> Iterator[WeightLayer]:
    """Every float Conv/Gemm/MatMul with an initializer weight, in graph order.

    Gemm with ``transA`` and MatMul whose constant is the *left* operand are skipped: the
    recipes here reason about ``y = x @ W``.
    """
    inits = initializers(model)
    for node in model.graph.node:
        if node.op_type not in WEIGHT_OPS or len(node.input) < 2 or node.input[1] not in inits:
            continue
        tensor = inits[node.input[1]]
        if tensor.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
            continue
        if node.op_type == "Conv":
            yield WeightLayer(node, node.input[1], 0, 1)
        elif node.op_type == "Gemm":
            if attr(node, "transA", 0):
                continue
            trans_b = bool(attr(node, "transB", 0))
            yield WeightLayer(node, node.input[1], 0 if trans_b else 1, 1 if trans_b else 0)
        elif len(tensor.dims) == 2:  # MatMul x @ W with a 2-D W
            yield WeightLayer(node, node.input[1], 1, 0)


def consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """Tensor name -> the nodes that read it."""
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def graph_output_names(model: onnx.ModelProto) -> set[str]:
    """Names of the graph's outputs."""
    return {o.name for o in model.graph.output}


def refresh_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop stale intermediate shapes after surgery and re-infer them."""
    del model.graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is a nicety here; the checker and ORT are the judges
        return model


def unique_name(model: onnx.ModelProto, base: str) -> str:
    """A tensor/node name not yet used in ``model``."""
    used = {t.name for t in model.graph.initializer}
    for n in model.graph.node:
        used.update(n.input)
        used.update(n.output)
        used.add(n.name)
    name, i = base, 0
    while name in used:
        i += 1
        name = f"{base}_{i}"
    return name


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def gzip_size(path: Path) -> int:
    """Bytes of the file after gzip level 9: what a sparse/clustered model costs to ship."""
    return len(gzip.compress(path.read_bytes(), compresslevel=9, mtime=0))


def topological_sort(model: onnx.ModelProto) -> None:
    """Reorder the main graph's nodes so every input is produced before it is read (in place).

    Some converters (onnxruntime's float16 fallback) append nodes out of order; onnxruntime
    copes, ``onnx.checker`` does not. Stable: nodes keep their order where it is already valid.
    """
    available = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    available.add("")  # an omitted optional input
    pending = list(model.graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:  # a cycle or a dangling input: leave the rest as it was for the checker
            ordered += pending
            break
        for n in ready:
            available.update(n.output)
        ordered += ready
        ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ids]
    copies = [onnx.NodeProto() for _ in ordered]
    for dst, src in zip(copies, ordered, strict=True):
        dst.CopyFrom(src)
    del model.graph.node[:]
    model.graph.node.extend(copies)
