"""Small, real ONNX models built in memory, for tests and for trying recipes without a model.

* :func:`digits_mlp` trains scikit-learn's ``MLPClassifier`` on the bundled 8x8 digits data
  (no download) and exports it as Gemm/MatMul/Relu, so its accuracy is meaningful.
* :func:`tiny_cnn` is an NCHW CNN with a full conv, BatchNormalization, a depthwise-separable
  block, GlobalAveragePool and a Gemm head; seeded random weights, for graph-surgery tests.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


@dataclass(frozen=True)
class DigitsData:
    """The digits split used by :func:`digits_mlp`: inputs scaled to [0, 1], int64 labels."""

    train_x: NDArray[np.float32]
    train_y: NDArray[np.int64]
    eval_x: NDArray[np.float32]
    eval_y: NDArray[np.int64]


def digits_data(seed: int = 0) -> DigitsData:
    """Scikit-learn's digits (1797 x 64), shuffled with ``seed``, 75 % train / 25 % eval."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(x))
    x = (x[order] / 16.0).astype(np.float32)
    y = y[order].astype(np.int64)
    cut = int(len(x) * 0.75)
    return DigitsData(x[:cut], y[:cut], x[cut:], y[cut:])


def digits_mlp(
    data: DigitsData, hidden: tuple[int, int] = (64, 32), seed: int = 0, max_iter: int = 120
) -> onnx.ModelProto:
    """A trained 64 -> hidden -> hidden -> 10 MLP: Gemm+Relu, MatMul+Add+Relu, Gemm -> logits."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=hidden, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        # a few more epochs would converge fully; ~97 % accuracy is all the tests need
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(data.train_x, data.train_y)
    w = [np.asarray(c, dtype=np.float32) for c in clf.coefs_]
    b = [np.asarray(c, dtype=np.float32) for c in clf.intercepts_]
    inits = [
        numpy_helper.from_array(w[0].T.copy(), "fc1.weight"),  # Gemm transB=1 layout [out, in]
        numpy_helper.from_array(b[0], "fc1.bias"),
        numpy_helper.from_array(w[1], "fc2.weight"),  # MatMul layout [in, out]
        numpy_helper.from_array(b[1], "fc2.bias"),
        numpy_helper.from_array(w[2], "fc3.weight"),  # Gemm transB=0 layout [in, out]
        numpy_helper.from_array(b[2], "fc3.bias"),
    ]
    nodes = [
        helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["h1"], name="fc1", transB=1),
        helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
        helper.make_node("MatMul", ["a1", "fc2.weight"], ["h2m"], name="fc2"),
        helper.make_node("Add", ["h2m", "fc2.bias"], ["h2"], name="fc2_bias"),
        helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
        helper.make_node("Gemm", ["a2", "fc3.weight", "fc3.bias"], ["logits"], name="fc3"),
    ]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    return _finish(graph)


def tiny_cnn(seed: int = 0, size: int = 16) -> onnx.ModelProto:
    """Conv3x3(3->16)+BN+Relu -> depthwise 3x3 + Relu -> Conv1x1(16->32)+Relu -> GAP -> Gemm(10)."""
    rng = np.random.default_rng(seed)

    def he(*shape: int) -> NDArray[np.float32]:
        fan_in = int(np.prod(shape[1:]))
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    inits = [
        numpy_helper.from_array(he(16, 3, 3, 3), "conv1.weight"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 16).astype(np.float32), "bn1.scale"),
        numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "bn1.bias"),
        numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "bn1.mean"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 16).astype(np.float32), "bn1.var"),
        numpy_helper.from_array(he(16, 1, 3, 3), "dw.weight"),
        numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "dw.bias"),
        numpy_helper.from_array(he(32, 16, 1, 1), "pw.weight"),
        numpy_helper.from_array(rng.normal(0, 0.1, 32).astype(np.float32), "pw.bias"),
        numpy_helper.from_array(he(10, 32), "fc.weight"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc.bias"),
    ]
    nodes = [
        helper.make_node(
            "Conv",
            ["input", "conv1.weight"],
            ["c1"],
            name="conv1",
            kernel_shape=[3, 3],
            pads=[1] * 4,
        ),
        helper.make_node(
            "BatchNormalization",
            ["c1", "bn1.scale", "bn1.bias", "bn1.mean", "bn1.var"],
            ["b1"],
            name="bn1",
        ),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node(
            "Conv",
            ["r1", "dw.weight", "dw.bias"],
            ["d1"],
            name="dw",
            kernel_shape=[3, 3],
            pads=[1] * 4,
            group=16,
        ),
        helper.make_node("Relu", ["d1"], ["r2"], name="relu2"),
        helper.make_node(
            "Conv", ["r2", "pw.weight", "pw.bias"], ["p1"], name="pw", kernel_shape=[1, 1]
        ),
        helper.make_node("Relu", ["p1"], ["r3"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r3"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    return _finish(graph)


def _finish(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # readable by every onnxruntime >= 1.14
    onnx.checker.check_model(model, full_check=True)
    return model
