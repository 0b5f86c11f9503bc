"""Magnitude pruning: unstructured (zeros) and structured (channels removed), per-layer sensitivity.

*Unstructured* zeroes the smallest ``|w|`` of every Conv/Gemm/MatMul weight until the layer has
the requested sparsity. Dense runtimes do not run faster on zeros; the gzip'd file does shrink.

*Structured* removes whole output channels (rows of a Gemm/MatMul weight, filters of a Conv)
ranked by L1 or L2 norm, and follows the tensor forward through channel-preserving ops
(BatchNormalization, activations, per-channel Add/Mul, depthwise Conv, pooling, Flatten after a
global pool) to the next weight layer, whose matching *input* channels are removed too. The
model really gets smaller and cheaper. A layer whose output reaches a graph output, a residual
Add, a Reshape/Concat or any op not understood here is left alone and reported as skipped.

With ``sensitivity=true`` each layer is pruned alone at 10 %, 20 %, ... up to ``sparsity``; the
relative output drift ``||y - y0|| / ||y0||`` is measured on calibration (else seeded random)
inputs and each layer gets the largest sparsity whose drift stays within ``tolerance``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray

from harness.compress import graph
from harness.compress.context import StepContext
from harness.compress.data import Feeds, load_feeds, model_inputs, random_feeds, take
from harness.compress.recipes import RecipeStep
from harness.errors import CompressionError

_UNARY = {
    "Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Elu", "Selu",
    "Softplus", "Gelu", "Identity", "Dropout", "PRelu",
}  # fmt: skip
_POOL = {"GlobalAveragePool", "GlobalMaxPool", "MaxPool", "AveragePool"}
_BINARY = {"Add", "Mul", "Sub", "Div"}
SENSITIVITY_SAMPLES = 64


@dataclass
class ChannelPlan:
    """What removing output channels of ``producer`` touches: (initializer, axis) slices."""

    producer: graph.WeightLayer
    channels: int
    slices: set[tuple[str, int]] = field(default_factory=set)
    regroup: list[onnx.NodeProto] = field(default_factory=list)  # depthwise convs on the path
    nodes: set[str] = field(default_factory=set)  # names of nodes allowed to use edited inits


class _Skip(Exception):
    """This layer cannot be structurally pruned; the message says why."""


def _node_id(node: onnx.NodeProto) -> str:
    return node.name or node.output[0]


def _per_channel_axis(init: NDArray[np.generic], ch_neg: int, channels: int) -> int | None:
    """Axis of a broadcast operand that indexes the channel, None if it broadcasts over it."""
    axis = init.ndim + ch_neg
    if axis < 0 or init.shape[axis] == 1:
        return None
    if init.shape[axis] == channels:
        return axis
    raise _Skip(f"operand of shape {list(init.shape)} does not broadcast per channel")


def plan_channels(model: onnx.ModelProto, layer: graph.WeightLayer) -> ChannelPlan:
    """Trace what pruning ``layer``'s output channels touches; raises _Skip when unsafe."""
    inits = graph.initializers(model)
    users = graph.consumers(model)
    outputs = graph.graph_output_names(model)
    w = graph.get_array(model, layer.weight)
    plan = ChannelPlan(layer, int(w.shape[layer.out_axis]))
    plan.slices.add((layer.weight, layer.out_axis))
    plan.nodes.add(_node_id(layer.node))
    node = layer.node
    if len(node.input) > 2 and node.input[2]:
        if node.input[2] not in inits:
            raise _Skip("its bias is not a constant")
        bias = graph.get_array(model, node.input[2])
        axis = _per_channel_axis(bias, -1, plan.channels) if node.op_type == "Gemm" else 0
        if axis is not None:
            plan.slices.add((node.input[2], axis))
    # the channel's axis counted from the end: NCHW conv outputs have it at -(spatial + 1)
    ch_neg = -(w.ndim - 1) if node.op_type == "Conv" else -1
    frontier: list[tuple[str, int, bool]] = [(node.output[0], ch_neg, False)]
    while frontier:
        tensor, ch, spatial_one = frontier.pop()
        if tensor in outputs:
            raise _Skip(f"its channels reach the graph output {tensor!r}")
        for user in users.get(tensor, []):
            nid, op = _node_id(user), user.op_type
            plan.nodes.add(nid)
            if op in _UNARY and user.input[0] == tensor:
                if op == "PRelu" and len(user.input) > 1 and user.input[1] in inits:
                    axis = _per_channel_axis(
                        graph.get_array(model, user.input[1]), ch, plan.channels
                    )
                    if axis is not None:
                        plan.slices.add((user.input[1], axis))
                frontier.append((user.output[0], ch, spatial_one))
            elif op == "BatchNormalization" and user.input[0] == tensor:
                plan.slices.update((name, 0) for name in user.input[1:5])
                frontier.append((user.output[0], ch, spatial_one))
            elif op in _BINARY:
                other = [i for i in user.input if i != tensor]
                if len(other) != 1 or other[0] not in inits:
                    raise _Skip(f"it feeds {op} {nid!r} together with another activation")
                axis = _per_channel_axis(graph.get_array(model, other[0]), ch, plan.channels)
                if axis is not None:
                    plan.slices.add((other[0], axis))
                frontier.append((user.output[0], ch, spatial_one))
            elif op in _POOL and user.input[0] == tensor:
                frontier.append((user.output[0], ch, spatial_one or op.startswith("Global")))
            elif op == "Flatten" and spatial_one and int(graph.attr(user, "axis", 1)) == 1:  # type: ignore[call-overload]
                frontier.append((user.output[0], -1, True))
            elif op == "Conv" and user.input[0] == tensor and user.input[1] in inits:
                cw = graph.get_array(model, user.input[1])
                group = int(graph.attr(user, "group", 1))  # type: ignore[call-overload]
                if ch != -(cw.ndim - 1):
                    raise _Skip(f"Conv {nid!r} reads the channels on an unexpected axis")
                if group == 1:
                    plan.slices.add((user.input[1], 1))
                elif group == plan.channels and cw.shape[0] == group and cw.shape[1] == 1:
                    plan.slices.add((user.input[1], 0))  # depthwise: its filters go too
                    if len(user.input) > 2 and user.input[2]:
                        plan.slices.add((user.input[2], 0))
                    plan.regroup.append(user)
                    frontier.append((user.output[0], ch, spatial_one))
                else:
                    raise _Skip(f"it feeds grouped Conv {nid!r} (group {group})")
            elif op in ("Gemm", "MatMul") and user.input[0] == tensor and user.input[1] in inits:
                if ch != -1:
                    raise _Skip(f"{op} {nid!r} reads a tensor whose channels are not last")
                consumer = next(
                    (
                        lay
                        for lay in graph.weight_layers(model)
                        if lay.node.output[0] == user.output[0]
                    ),
                    None,
                )
                if consumer is None:
                    raise _Skip(f"{op} {nid!r} has a layout not handled here")
                plan.slices.add((consumer.weight, consumer.in_axis))
            else:
                raise _Skip(f"it feeds {op} {nid!r}, which structured pruning does not follow")
    # an initializer shared with a node off the traced path would be corrupted by slicing
    for name, _axis in plan.slices:
        for user in users.get(name, []):
            if _node_id(user) not in plan.nodes:
                raise _Skip(f"initializer {name!r} is shared with {_node_id(user)!r}")
    return plan


def channel_norms(
    model: onnx.ModelProto, layer: graph.WeightLayer, criterion: str
) -> NDArray[np.float64]:
    """L1 or L2 norm of every output channel of ``layer``'s weight."""
    w = np.moveaxis(graph.get_array(model, layer.weight).astype(np.float64), layer.out_axis, 0)
    flat = w.reshape(w.shape[0], -1)
    return np.asarray(np.abs(flat).sum(1) if criterion == "l1" else np.sqrt((flat**2).sum(1)))


def apply_plan(model: onnx.ModelProto, plan: ChannelPlan, keep: NDArray[np.intp]) -> None:
    """Keep only channels ``keep`` along every slice of ``plan`` (in place)."""
    for name, axis in sorted(plan.slices):
        arr = graph.get_array(model, name)
        graph.set_array(model, name, np.ascontiguousarray(np.take(arr, keep, axis=axis)))
    for node in plan.regroup:
        graph.set_attr(node, "group", len(keep))


def _prunable(model: onnx.ModelProto) -> list[str]:
    """Names of weight layers that can be producers (dense Conv/Gemm/MatMul)."""
    out = []
    for lay in graph.weight_layers(model):
        if lay.node.op_type == "Conv" and int(graph.attr(lay.node, "group", 1)) != 1:  # type: ignore[call-overload]
            continue
        out.append(lay.name)
    return out


def _layer(model: onnx.ModelProto, name: str) -> graph.WeightLayer:
    return next(lay for lay in graph.weight_layers(model) if lay.name == name)


def prune_structured(
    model: onnx.ModelProto, sparsity: dict[str, float], criterion: str
) -> tuple[list[str], list[str]]:
    """Remove the lowest-norm fraction of output channels per layer; returns (done, skipped)."""
    done, skipped = [], []
    for name in _prunable(model):
        s = sparsity.get(name, 0.0)
        if s <= 0:
            continue
        layer = _layer(model, name)  # re-read: earlier layers' edits changed the graph
        try:
            plan = plan_channels(model, layer)
        except _Skip as why:
            skipped.append(f"{name}: {why}")
            continue
        n_keep = max(1, plan.channels - int(np.floor(s * plan.channels)))
        if n_keep == plan.channels:
            continue
        keep = np.sort(np.argsort(-channel_norms(model, layer, criterion), kind="stable")[:n_keep])
        apply_plan(model, plan, keep)
        done.append(f"{name}: {plan.channels} -> {n_keep} channels")
    return done, skipped


def prune_unstructured(model: onnx.ModelProto, sparsity: dict[str, float]) -> list[str]:
    """Zero the smallest-magnitude weights of each layer to its sparsity; returns notes."""
    notes = []
    for layer in list(graph.weight_layers(model)):
        s = sparsity.get(layer.name, 0.0)
        w = graph.get_array(model, layer.weight)
        k = round(s * w.size)
        if k <= 0:
            continue
        flat = w.ravel().copy()
        flat[np.argpartition(np.abs(flat), k - 1)[:k]] = 0
        graph.set_array(model, layer.weight, flat.reshape(w.shape))
        notes.append(f"{layer.name}: {np.mean(flat == 0):.0%} zeros")
    return notes


def _run(model: onnx.ModelProto, feeds: Feeds) -> NDArray[np.float64]:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, feeds)[0], dtype=np.float64)


def sensitivity(
    model: onnx.ModelProto, layers: list[str], max_sparsity: float, tolerance: float,
    structured: bool, criterion: str, feeds: Feeds,
) -> dict[str, float]:  # fmt: skip
    """Per layer, the largest sparsity (grid of 0.1 up to max) whose output drift <= tolerance."""
    base = _run(model, feeds)
    scale = float(np.linalg.norm(base)) or 1.0
    grid = sorted({*np.round(np.arange(0.1, max_sparsity, 0.1), 6).tolist(), max_sparsity})
    chosen: dict[str, float] = {}
    for name in layers:
        chosen[name] = 0.0
        for s in grid:
            trial = onnx.ModelProto()
            trial.CopyFrom(model)
            if structured:
                done, _ = prune_structured(trial, {name: s}, criterion)
                if not done:
                    break
            else:
                prune_unstructured(trial, {name: s})
            drift = float(np.linalg.norm(_run(trial, feeds) - base)) / scale
            if drift > tolerance:
                break  # drift grows with sparsity, so larger ones will not pass either
            chosen[name] = s
    return chosen


def prune(src: Path, dst: Path, step: RecipeStep, ctx: StepContext) -> list[str]:
    """The ``prune`` recipe: magnitude pruning, structured or not, optionally per-layer tuned."""
    model = onnx.load(str(src))
    target = float(step.get("sparsity") or 0.5)
    structured = bool(step.get("structured"))
    criterion = str(step.get("criterion"))
    layers = _prunable(model) if structured else [lay.name for lay in graph.weight_layers(model)]
    if not layers:
        raise CompressionError(
            f"recipe {ctx.recipe!r}: the model has no Conv/Gemm/MatMul with constant weights",
            hint="pruning works on float weight layers; is the model already quantized?",
        )
    notes: list[str] = []
    per_layer = dict.fromkeys(layers, target)
    if step.get("sensitivity"):
        inputs = model_inputs(model)
        if ctx.calib is not None:
            feeds = take(
                load_feeds(ctx.calib, inputs, what=f"recipe {ctx.recipe!r}"), SENSITIVITY_SAMPLES
            )
        else:
            feeds = random_feeds(inputs, SENSITIVITY_SAMPLES, ctx.seed)
        tol = float(step.get("tolerance") or 0.05)
        per_layer = sensitivity(model, layers, target, tol, structured, criterion, feeds)
        notes.append(
            "sensitivity (max drift {:.0%}): {}".format(
                tol, ", ".join(f"{k}={v:.2f}" for k, v in per_layer.items())
            )
        )
    if structured:
        done, skipped = prune_structured(model, per_layer, criterion)
        notes += done + [f"skipped {s}" for s in skipped]
        if not done:
            raise CompressionError(
                f"recipe {ctx.recipe!r}: no layer could be structurally pruned ({'; '.join(skipped) or 'sparsity too low'})",
                hint="use prune:structured=false for unstructured sparsity",
            )
        model = graph.refresh_shapes(model)
    else:
        notes += prune_unstructured(model, per_layer)
        notes.append("unstructured zeros do not speed up dense runtimes; compare gzip size")
    graph.save_model(model, dst)
    return notes
