"""The digits MLP demo: data split, training, and export of one set of weights to ONNX and TFLite.

Data: scikit-learn's bundled ``load_digits`` (1,797 8x8 grey images, values 0..16; shipped inside
the package, nothing is downloaded). Preprocessing: flatten row-major to 64 values and divide by
16, giving float32 in [0, 1]. Split: stratified, ``random_state=0``, 1,437 train / 360 eval;
the 200-row calibration set is drawn (seed 1) from the training rows only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from _modelkit import ONNX_IR_VERSION, ONNX_OPSET, PRODUCER, convert_keras
from onnx import TensorProto, helper, numpy_helper
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

EVAL_ROWS = 360
CALIB_ROWS = 200
SPLIT_SEED = 0
CALIB_SEED = 1
TRAIN_SEED = 0
HIDDEN_UNITS = (128, 64)
PREPROCESSING = (
    "input: float32 [batch, 64] = sklearn load_digits 8x8 image flattened row-major, "
    "pixel values 0..16 divided by 16 (range [0, 1]); output: logits float32 [batch, 10] "
    "for digits 0-9 (argmax = predicted digit, no softmax applied)"
)


@dataclass(frozen=True)
class DigitsData:
    """The deterministic split of ``load_digits`` used by the demo."""

    train_x: np.ndarray  # float32 [1437, 64]
    train_y: np.ndarray  # int64 [1437]
    eval_x: np.ndarray  # float32 [360, 64]
    eval_y: np.ndarray  # int64 [360]
    calib_x: np.ndarray  # float32 [200, 64], rows of train_x


@dataclass(frozen=True)
class DenseWeights:
    """Weights of the MLP: ``kernels[i]`` is [in, out] float32, ``biases[i]`` is [out]."""

    kernels: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]


def load_split() -> DigitsData:
    """Load, scale and split the digits data the same way every time."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    train_x, eval_x, train_y, eval_y = train_test_split(
        x, y, test_size=EVAL_ROWS, random_state=SPLIT_SEED, stratify=y
    )
    rng = np.random.default_rng(CALIB_SEED)
    calib_rows = np.sort(rng.choice(len(train_x), size=CALIB_ROWS, replace=False))
    return DigitsData(
        train_x=np.ascontiguousarray(train_x),
        train_y=np.ascontiguousarray(train_y),
        eval_x=np.ascontiguousarray(eval_x),
        eval_y=np.ascontiguousarray(eval_y),
        calib_x=np.ascontiguousarray(train_x[calib_rows]),
    )


def train(data: DigitsData) -> DenseWeights:
    """Train the 64 -> 128 -> 64 -> 10 ReLU MLP with a fixed seed.

    BLAS is held to one thread so the floating-point summation order, and so the weights,
    are the same on every run.
    """
    model = MLPClassifier(
        hidden_layer_sizes=HIDDEN_UNITS,
        activation="relu",
        solver="adam",
        alpha=1e-4,
        batch_size=64,
        learning_rate_init=1e-3,
        max_iter=200,
        random_state=TRAIN_SEED,
    )
    with threadpool_limits(limits=1):
        model.fit(data.train_x, data.train_y)
    return DenseWeights(
        kernels=tuple(np.asarray(w, dtype=np.float32) for w in model.coefs_),
        biases=tuple(np.asarray(b, dtype=np.float32) for b in model.intercepts_),
    )


def numpy_logits(weights: DenseWeights, x: np.ndarray) -> np.ndarray:
    """Reference forward pass in numpy (float32)."""
    h = x
    last = len(weights.kernels) - 1
    for i, (w, b) in enumerate(zip(weights.kernels, weights.biases, strict=True)):
        h = h @ w + b
        if i < last:
            h = np.maximum(h, 0.0)
    return h.astype(np.float32)


def to_onnx(weights: DenseWeights, metadata: dict[str, str]) -> bytes:
    """The MLP as Gemm/Relu nodes: input ``input`` [batch, 64], output ``logits`` [batch, 10]."""
    nodes = []
    initializers = []
    current = "input"
    last = len(weights.kernels) - 1
    for i, (w, b) in enumerate(zip(weights.kernels, weights.biases, strict=True)):
        initializers += [
            numpy_helper.from_array(w, f"fc{i + 1}.weight"),
            numpy_helper.from_array(b, f"fc{i + 1}.bias"),
        ]
        gemm_out = "logits" if i == last else f"fc{i + 1}"
        nodes.append(
            helper.make_node(
                "Gemm", [current, f"fc{i + 1}.weight", f"fc{i + 1}.bias"], [gemm_out], f"fc{i + 1}"
            )
        )
        current = gemm_out
        if i < last:
            nodes.append(helper.make_node("Relu", [current], [f"relu{i + 1}"], f"relu{i + 1}"))
            current = f"relu{i + 1}"
    n_in = weights.kernels[0].shape[0]
    n_out = weights.kernels[-1].shape[1]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_out])],
        initializers,
    )
    model = helper.make_model(
        graph,
        producer_name=PRODUCER,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        doc_string=PREPROCESSING,
    )
    model.ir_version = ONNX_IR_VERSION
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def to_tflite(weights: DenseWeights) -> bytes:
    """The same weights as a Keras model, converted to float32 TFLite with a dynamic batch.

    The ``serving_default`` signature has input key ``input`` and output key ``logits``.
    """
    import keras
    import tensorflow as tf

    n_in = weights.kernels[0].shape[0]
    layers: list[keras.layers.Layer] = [keras.Input(shape=(n_in,), name="input")]
    last = len(weights.kernels) - 1
    for i in range(len(weights.kernels)):
        layers.append(
            keras.layers.Dense(
                weights.kernels[i].shape[1],
                activation=None if i == last else "relu",
                name="logits" if i == last else f"fc{i + 1}",
            )
        )
    model = keras.Sequential(layers, name="digits_mlp")
    for i, layer in enumerate(model.layers):
        layer.set_weights([weights.kernels[i], weights.biases[i]])

    spec = tf.TensorSpec([None, n_in], tf.float32, name="input")
    return convert_keras(model, spec, "logits")
