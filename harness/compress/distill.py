"""Knowledge distillation (optional ``torch`` extra): a smaller student trained on the teacher.

The teacher is the ONNX model itself, run by onnxruntime; its logits on the user's data (the
calibration npz, plus ``augment`` jittered copies of it, since teacher labels cost nothing)
are the soft targets. The student is a small MLP for ``[batch, features]`` inputs or a small
CNN (two strided 3x3 convs, global pooling, a dense head) for ``[batch, C, H, W]`` inputs,
trained with

    loss = alpha * CE(student, labels) + (1 - alpha) * T^2 * KL(softmax(t/T) || softmax(s/T))

(Hinton et al., 2015). Without labels in the npz, ``alpha`` is 0: pure soft-target training.
The trained weights are written straight into an ONNX graph with ``onnx.helper`` (Gemm/Conv/
Relu), so no ONNX exporter package is needed. Only classifiers with one ``[batch, classes]``
output are supported.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from harness.compress.context import StepContext
from harness.compress.data import load_feeds, load_labels, model_inputs
from harness.compress.recipes import RecipeStep
from harness.errors import CompressionError

INSTALL_HINT = "pip install 'harness[torch]'"


@dataclass(frozen=True)
class TrainSet:
    """Student training data: inputs, teacher logits, optional hard labels."""

    x: NDArray[np.float32]
    teacher_logits: NDArray[np.float32]
    labels: NDArray[np.int64] | None


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise CompressionError(
            f"recipe 'distill' needs PyTorch, which is not installed ({exc})", hint=INSTALL_HINT
        ) from exc
    return torch


def _train_set(src: Path, step: RecipeStep, ctx: StepContext) -> tuple[TrainSet, onnx.ModelProto]:
    teacher = onnx.load(str(src))
    inputs = model_inputs(teacher)
    if len(inputs) != 1 or len(teacher.graph.output) != 1:
        raise CompressionError(
            f"recipe {ctx.recipe!r}: distillation supports one input and one output, "
            f"this model has {len(inputs)} and {len(teacher.graph.output)}"
        )
    if ctx.calib is None:
        raise CompressionError(
            f"recipe {ctx.recipe!r} needs training data",
            hint="pass --calib data.npz (inputs, and 'labels' for the hard-label term)",
        )
    feeds = load_feeds(ctx.calib, inputs, what=f"training data for recipe {ctx.recipe!r}")
    x = np.asarray(feeds[inputs[0].name], dtype=np.float32)
    labels = load_labels(ctx.calib)
    rng = np.random.default_rng(ctx.seed)
    copies = [x]
    noise = float(step.get("noise") or 0.0) * float(x.std() or 1.0)
    lo, hi = float(x.min()), float(x.max())
    for _ in range(int(step.get("augment") or 0)):
        copies.append(np.clip(x + rng.normal(0, noise, x.shape), lo, hi).astype(np.float32))
    x_all = np.concatenate(copies)
    sess = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    logits = np.concatenate(
        [sess.run(None, {inputs[0].name: x_all[i : i + 256]})[0] for i in range(0, len(x_all), 256)]
    ).astype(np.float32)
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise CompressionError(
            f"recipe {ctx.recipe!r}: the output has shape {list(logits.shape)}; "
            "distillation needs [batch, classes] logits"
        )
    hard = None
    if labels is not None and len(labels) == len(x):
        hard = np.tile(labels.astype(np.int64), len(copies))
    return TrainSet(x_all, logits, hard), teacher


def _student(torch: Any, x: NDArray[np.float32], classes: int, width: int, layers: int) -> Any:
    nn = torch.nn
    if x.ndim == 2:
        mods: list[Any] = []
        size = x.shape[1]
        for _ in range(layers):
            mods += [nn.Linear(size, width), nn.ReLU()]
            size = width
        return nn.Sequential(*mods, nn.Linear(size, classes))
    if x.ndim == 4:
        return nn.Sequential(
            nn.Conv2d(x.shape[1], width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * width, classes),
        )
    raise CompressionError(f"recipe 'distill': inputs of rank {x.ndim} have no student here")


def _train(torch: Any, student: Any, data: TrainSet, step: RecipeStep, seed: int) -> float:
    f = torch.nn.functional
    temperature = float(step.get("temperature") or 4.0)
    alpha = float(step.get("alpha") or 0.0) if data.labels is not None else 0.0
    opt = torch.optim.Adam(student.parameters(), lr=float(step.get("lr") or 0.003))
    x = torch.from_numpy(data.x)
    t_soft = torch.softmax(torch.from_numpy(data.teacher_logits) / temperature, dim=1)
    y = torch.from_numpy(data.labels) if data.labels is not None else None
    gen = torch.Generator().manual_seed(seed)
    loss = torch.tensor(0.0)
    for _ in range(int(step.get("epochs") or 60)):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            s = student(x[idx])
            kd = f.kl_div(f.log_softmax(s / temperature, dim=1), t_soft[idx], reduction="batchmean")
            loss = (1 - alpha) * temperature**2 * kd
            if y is not None and alpha > 0:
                loss = loss + alpha * f.cross_entropy(s, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return float(loss.detach())


def _to_onnx(student: Any, teacher: onnx.ModelProto) -> onnx.ModelProto:
    """Write the trained torch.nn.Sequential as an ONNX graph with the teacher's I/O names."""
    inp, out = teacher.graph.input[0], teacher.graph.output[0]
    nodes: list[onnx.NodeProto] = []
    inits: list[TensorProto] = []
    current = inp.name
    mods = list(student)
    for i, mod in enumerate(mods):
        kind = type(mod).__name__
        name = out.name if i == len(mods) - 1 else f"student_{i}"
        if kind in ("Linear", "Conv2d"):
            w = mod.weight.detach().numpy().astype(np.float32)
            b = mod.bias.detach().numpy().astype(np.float32)
            inits += [
                numpy_helper.from_array(w, f"s{i}.weight"),
                numpy_helper.from_array(b, f"s{i}.bias"),
            ]
            ins = [current, f"s{i}.weight", f"s{i}.bias"]
            if kind == "Linear":
                nodes.append(helper.make_node("Gemm", ins, [name], name=f"s{i}", transB=1))
            else:
                nodes.append(
                    helper.make_node(
                        "Conv", ins, [name], name=f"s{i}", kernel_shape=list(mod.kernel_size),
                        strides=list(mod.stride), pads=[mod.padding[0], mod.padding[1]] * 2,
                    )
                )  # fmt: skip
        elif kind == "ReLU":
            nodes.append(helper.make_node("Relu", [current], [name], name=f"s{i}"))
        elif kind == "AdaptiveAvgPool2d":
            nodes.append(helper.make_node("GlobalAveragePool", [current], [name], name=f"s{i}"))
        elif kind == "Flatten":
            nodes.append(helper.make_node("Flatten", [current], [name], name=f"s{i}", axis=1))
        else:  # pragma: no cover - _student only builds the kinds above
            raise CompressionError(f"distill: cannot export {kind}")
        current = name
    graph = helper.make_graph(nodes, "student", [inp], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(teacher.ir_version or 8, 10)
    onnx.checker.check_model(model)
    return model


def distill(src: Path, dst: Path, step: RecipeStep, ctx: StepContext) -> list[str]:
    """The ``distill`` recipe: train a small student on the teacher's soft targets."""
    torch = _torch()
    data, teacher = _train_set(src, step, ctx)
    torch.manual_seed(ctx.seed)
    torch.set_num_threads(1)  # reproducible, and fair to other work on a small host
    width, layers = int(step.get("width") or 32), int(step.get("layers") or 2)
    student = _student(torch, data.x, data.teacher_logits.shape[1], width, layers)
    final_loss = _train(torch, student, data, step, ctx.seed)
    onnx.save(_to_onnx(student.eval(), teacher), str(dst))
    labelled = "with hard labels" if data.labels is not None else "soft targets only, no labels"
    return [
        f"student {'MLP' if data.x.ndim == 2 else 'CNN'} width {width}: "
        f"{sum(p.numel() for p in student.parameters()):,} parameters",
        f"trained on {len(data.x)} samples ({labelled}), final loss {final_loss:.4f}",
        f"torch {torch.__version__}",
    ]
