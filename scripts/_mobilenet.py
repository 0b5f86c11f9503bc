"""mobilenet_tiny: a small MobileNet-v1-style CNN with seeded, untrained weights.

Layout: 3x3 stem conv (stride 2), then depthwise-separable blocks (3x3 depthwise + 1x1
pointwise), each conv followed by ReLU6; global average pool; dense to ``CLASSES`` logits.
Batch norm is folded: every conv gets BN parameters drawn from the seed, and they are folded
into its kernel and bias, exactly as a converter folds a trained network's BN.

Weights are kept in one canonical layout (conv kernels HWIO, depthwise HW C 1) and written
to ONNX as NCHW/OIHW and to Keras/TFLite as NHWC, so both files hold the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from _modelkit import ONNX_IR_VERSION, ONNX_OPSET, PRODUCER, convert_keras
from onnx import TensorProto, helper, numpy_helper

SIZE = 128  # input height and width
CLASSES = 10
SEED = 2024
STEM_CHANNELS = 32
# (pointwise output channels, depthwise stride) per depthwise-separable block. Widths follow
# MobileNet-v1 1.0 up to 256 channels; the 512/1024-channel tail is replaced by more blocks at
# 64x64 and 32x32, where compute is cheap in parameters. That keeps each file under 2 MB while
# giving a few milliseconds of work per inference.
BLOCKS: tuple[tuple[int, int], ...] = (
    *((64, 1),) * 5,
    (128, 2),
    *((128, 1),) * 8,
    (256, 2),
    (256, 1),
    (256, 1),
    (256, 2),
)
BN_EPSILON = 1e-3
DESCRIPTION = (
    f"mobilenet_tiny: MobileNet-v1-style CNN, {SIZE}x{SIZE}x3 input, {len(BLOCKS)} "
    f"depthwise-separable blocks, ReLU6, BN folded, {CLASSES} classes; untrained seeded weights "
    f"(seed {SEED}), for latency benchmarks only; input float32 in [-1, 1]"
)


@dataclass(frozen=True)
class ConvWeights:
    """One conv with BN folded in. ``kernel`` is HWIO ([kh, kw, cin, cout]); for depthwise
    convs it is [kh, kw, channels, 1]."""

    name: str
    kernel: np.ndarray
    bias: np.ndarray
    stride: int
    depthwise: bool


@dataclass(frozen=True)
class MobileNetWeights:
    """All weights of the network; ``dense_kernel`` is [channels, classes]."""

    convs: tuple[ConvWeights, ...]
    dense_kernel: np.ndarray
    dense_bias: np.ndarray


def _folded_conv(
    rng: np.random.Generator, name: str, shape: tuple[int, int, int, int], stride: int, dw: bool
) -> ConvWeights:
    kh, kw, cin, cout = shape
    fan_in = kh * kw * (1 if dw else cin)
    channels = cin if dw else cout
    kernel = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)  # He init
    gamma = rng.uniform(0.8, 1.2, channels)
    beta = rng.normal(0.0, 0.1, channels)
    mean = rng.normal(0.0, 0.1, channels)
    var = rng.uniform(0.5, 1.5, channels)
    scale = gamma / np.sqrt(var + BN_EPSILON)
    # The BN channel axis is the output channel: axis 3 for conv, axis 2 for depthwise.
    kernel = kernel * (scale[None, None, :, None] if dw else scale[None, None, None, :])
    bias = beta - mean * scale
    return ConvWeights(
        name, kernel.astype(np.float32), bias.astype(np.float32), stride, depthwise=dw
    )


def make_weights() -> MobileNetWeights:
    """Draw every weight from one seeded generator, in a fixed order."""
    rng = np.random.default_rng(SEED)
    convs = [_folded_conv(rng, "stem", (3, 3, 3, STEM_CHANNELS), 2, dw=False)]
    channels = STEM_CHANNELS
    for i, (out, stride) in enumerate(BLOCKS, start=1):
        convs.append(_folded_conv(rng, f"block{i}_dw", (3, 3, channels, 1), stride, dw=True))
        convs.append(_folded_conv(rng, f"block{i}_pw", (1, 1, channels, out), 1, dw=False))
        channels = out
    dense = rng.normal(0.0, np.sqrt(1.0 / channels), size=(channels, CLASSES))
    return MobileNetWeights(
        convs=tuple(convs),
        dense_kernel=dense.astype(np.float32),
        dense_bias=np.zeros(CLASSES, np.float32),
    )


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (extra pixel at the end), which ONNX must spell out."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def to_onnx(weights: MobileNetWeights, metadata: dict[str, str]) -> bytes:
    """NCHW graph: input ``input`` [batch, 3, H, W], output ``logits`` [batch, CLASSES]."""
    nodes = []
    inits = [
        numpy_helper.from_array(np.array(0.0, np.float32), "relu6.min"),
        numpy_helper.from_array(np.array(6.0, np.float32), "relu6.max"),
    ]
    current, size = "input", SIZE
    for conv in weights.convs:
        kh, kw, cin, _ = conv.kernel.shape
        if conv.depthwise:
            oihw, group = conv.kernel.transpose(2, 3, 0, 1), cin  # [C, 1, kh, kw]
        else:
            oihw, group = conv.kernel.transpose(3, 2, 0, 1), 1  # [O, I, kh, kw]
        begin, end = _same_pads(size, kh, conv.stride)
        inits += [
            numpy_helper.from_array(np.ascontiguousarray(oihw), f"{conv.name}.weight"),
            numpy_helper.from_array(conv.bias, f"{conv.name}.bias"),
        ]
        nodes.append(
            helper.make_node(
                "Conv",
                [current, f"{conv.name}.weight", f"{conv.name}.bias"],
                [f"{conv.name}.conv"],
                conv.name,
                kernel_shape=[kh, kw],
                strides=[conv.stride, conv.stride],
                pads=[begin, begin, end, end],
                group=group,
            )
        )
        nodes.append(
            helper.make_node(
                "Clip",
                [f"{conv.name}.conv", "relu6.min", "relu6.max"],
                [f"{conv.name}.relu6"],
                f"{conv.name}_relu6",
            )
        )
        current, size = f"{conv.name}.relu6", -(-size // conv.stride)
    inits += [
        numpy_helper.from_array(weights.dense_kernel, "classifier.weight"),
        numpy_helper.from_array(weights.dense_bias, "classifier.bias"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [current], ["pool"], "pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], "flatten", axis=1),
        helper.make_node(
            "Gemm", ["flat", "classifier.weight", "classifier.bias"], ["logits"], "classifier"
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "mobilenet_tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        inits,
    )
    model = helper.make_model(
        graph,
        producer_name=PRODUCER,
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        doc_string=DESCRIPTION,
    )
    model.ir_version = ONNX_IR_VERSION
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def to_tflite(weights: MobileNetWeights) -> bytes:
    """NHWC Keras model with the same weights, converted to float32 TFLite, batch fixed at 1.

    The ``serving_default`` signature has input key ``input`` and output key ``logits``.
    """
    import keras
    import tensorflow as tf

    layers: list[keras.layers.Layer] = [keras.Input(shape=(SIZE, SIZE, 3), name="input")]
    weighted: list[tuple[keras.layers.Layer, list[np.ndarray]]] = []
    for conv in weights.convs:
        kh, kw, _, cout = conv.kernel.shape
        layer: keras.layers.Layer
        if conv.depthwise:
            layer = keras.layers.DepthwiseConv2D(
                (kh, kw), strides=conv.stride, padding="same", name=conv.name
            )
        else:
            layer = keras.layers.Conv2D(
                cout, (kh, kw), strides=conv.stride, padding="same", name=conv.name
            )
        layers += [layer, keras.layers.ReLU(max_value=6.0, name=f"{conv.name}_relu6")]
        weighted.append((layer, [conv.kernel, conv.bias]))
    dense = keras.layers.Dense(CLASSES, name="logits")
    layers += [keras.layers.GlobalAveragePooling2D(name="pool"), dense]
    weighted.append((dense, [weights.dense_kernel, weights.dense_bias]))
    model = keras.Sequential(layers, name="mobilenet_tiny")
    for layer, values in weighted:
        layer.set_weights(values)

    spec = tf.TensorSpec([1, SIZE, SIZE, 3], tf.float32, name="input")
    return convert_keras(model, spec, "logits")
