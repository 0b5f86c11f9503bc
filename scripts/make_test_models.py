"""Regenerate the tiny fixture models in ``tests/fixtures/models/`` (see the README there).

How to run (needs TensorFlow for the .tflite files; use the same generation venv as
``make_demo_models.py``)::

    /tmp/venv-tf/bin/python scripts/make_test_models.py

Each model is checked here for the behaviour the tests rely on (the custom ops fail naming the op,
the quantized models have integer inputs, the corrupt files do not load), so a TensorFlow or
runtime upgrade that changes a behaviour fails here, not silently in the tests.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import numpy as np
import onnx
from _modelkit import (
    FIXTURE_DIR,
    ONNX_IR_VERSION,
    ONNX_OPSET,
    PRODUCER,
    convert_module,
    describe_tflite,
    ort_session,
    quiet_tensorflow,
    tflite_run,
    write_file,
)
from ai_edge_litert.interpreter import Interpreter
from onnx import TensorProto, helper, numpy_helper

MAX_FIXTURE_BYTES = 100_000
EMBEDDING_ROWS = 50  # valid token ids of two_inputs_int.onnx: 0..49
FEATURES = 8


def _onnx_bytes(graph: onnx.GraphProto, extra_opsets: tuple[tuple[str, int], ...] = ()) -> bytes:
    opsets = [helper.make_opsetid("", ONNX_OPSET)]
    opsets += [helper.make_opsetid(domain, version) for domain, version in extra_opsets]
    model = helper.make_model(graph, producer_name=PRODUCER, opset_imports=opsets)
    model.ir_version = ONNX_IR_VERSION
    onnx.checker.check_model(model)
    return model.SerializeToString()


def two_inputs_int_onnx() -> bytes:
    """``features`` float32 [batch, 8] plus ``token_ids`` int64 [batch, seq] -> ``output`` [batch, 8].

    output = features + mean over seq of embedding[token_ids], embedding is [50, 8].
    """
    embedding = np.random.default_rng(11).normal(size=(EMBEDDING_ROWS, FEATURES))
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["embedding", "token_ids"], ["embedded"], "lookup", axis=0),
            helper.make_node("ReduceMean", ["embedded"], ["pooled"], "pool", axes=[1], keepdims=0),
            helper.make_node("Add", ["features", "pooled"], ["output"], "add"),
        ],
        "two_inputs_int",
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", FEATURES]),
            helper.make_tensor_value_info("token_ids", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", FEATURES])],
        [numpy_helper.from_array(embedding.astype(np.float32), "embedding")],
    )
    return _onnx_bytes(graph)


def custom_op_onnx() -> bytes:
    """``x`` float32 [1, 4] -> Relu -> ``com.example:MyCustomOp`` -> ``y``: no runtime has it."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], "relu"),
            helper.make_node("MyCustomOp", ["r"], ["y"], "custom", domain="com.example"),
        ],
        "custom_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return _onnx_bytes(graph, extra_opsets=(("com.example", 1),))


def _dense_module(batch: int | None) -> tuple[object, object]:
    """A tf.Module computing relu(x @ W1 + b1) @ W2 for x [batch, 8] -> ``output`` [batch, 4]."""
    import tensorflow as tf

    rng = np.random.default_rng(5)
    w1 = tf.constant(rng.normal(0, 0.5, (FEATURES, 16)).astype(np.float32))
    b1 = tf.constant(rng.normal(0, 0.1, 16).astype(np.float32))
    w2 = tf.constant(rng.normal(0, 0.5, (16, 4)).astype(np.float32))

    class Dense(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([batch, FEATURES], tf.float32, name="input")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"output": tf.matmul(tf.nn.relu(tf.matmul(x, w1) + b1), w2)}

    module = Dense()
    return module, module.serve


def quantized_tflite(io_type: str) -> bytes:
    """The dense model, full-integer quantized with ``io_type`` ('int8' or 'uint8') input/output."""
    import tensorflow as tf

    def representative() -> Iterator[list[np.ndarray]]:
        rng = np.random.default_rng(3)
        for _ in range(64):
            yield [rng.uniform(-1.0, 1.0, (1, FEATURES)).astype(np.float32)]

    def configure(converter: tf.lite.TFLiteConverter) -> None:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = getattr(tf, io_type)
        converter.inference_output_type = getattr(tf, io_type)

    module, function = _dense_module(batch=1)
    return convert_module(module, function, configure)


def custom_op_tflite() -> bytes:
    """``input`` [1, 4] -> x * 0.5 -> Erfinv -> ``output``; Erfinv is no TFLite builtin, so with
    ``allow_custom_ops`` it is written as a custom op that no stock interpreter resolves."""
    import tensorflow as tf

    class Custom(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="input")])
        def serve(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"output": tf.math.erfinv(x * 0.5)}

    def configure(converter: tf.lite.TFLiteConverter) -> None:
        converter.allow_custom_ops = True
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]

    module = Custom()
    return convert_module(module, module.serve, configure)


def _expect_error(what: str, action: object, must_contain: str) -> None:
    """Run ``action()``; it must raise an error whose text contains ``must_contain``."""
    try:
        action()  # type: ignore[operator]
    except Exception as error:
        text = str(error)
        assert must_contain in text, f"{what}: error does not name {must_contain!r}: {text}"
        print(f"    {what} -> {type(error).__name__}: {text!r}")
        return
    raise AssertionError(f"{what} did not fail")


def main() -> int:
    """Make and check every fixture."""
    quiet_tensorflow()
    made: dict[str, bytes] = {}

    made["two_inputs_int.onnx"] = two_inputs_int_onnx()
    session = ort_session(made["two_inputs_int.onnx"])
    features = np.zeros((2, FEATURES), np.float32)
    ok = session.run(None, {"features": features, "token_ids": np.array([[0, 49], [7, 7]])})[0]
    assert ok.shape == (2, FEATURES)
    bad = {"features": features, "token_ids": np.array([[0, EMBEDDING_ROWS], [1, 2]])}
    _expect_error("two_inputs_int.onnx token id 50", lambda: session.run(None, bad), "50")

    made["custom_op.onnx"] = custom_op_onnx()
    _expect_error(
        "custom_op.onnx session", lambda: ort_session(made["custom_op.onnx"]), "MyCustomOp"
    )

    made["dynamic_batch.tflite"] = convert_module(*_dense_module(batch=None))
    out = tflite_run(made["dynamic_batch.tflite"], np.ones((3, FEATURES), np.float32))
    assert out.shape == (3, 4)

    for io_type in ("int8", "uint8"):
        name = f"{io_type}_quant.tflite"
        made[name] = quantized_tflite(io_type)
        detail = Interpreter(model_content=made[name]).get_input_details()[0]
        assert np.dtype(detail["dtype"]) == np.dtype(io_type), f"{name}: {detail['dtype']}"

    made["custom_op.tflite"] = custom_op_tflite()
    interpreter = Interpreter(model_content=made["custom_op.tflite"])  # construction succeeds
    _expect_error("custom_op.tflite allocate_tensors", interpreter.allocate_tensors, "Erfinv")

    # Corrupt files: valid models cut short, as an interrupted copy would leave them.
    made["corrupt.onnx"] = made["two_inputs_int.onnx"][:700]
    _expect_error("corrupt.onnx session", lambda: ort_session(made["corrupt.onnx"]), "")
    made["corrupt.tflite"] = made["dynamic_batch.tflite"][:600]
    _expect_error(
        "corrupt.tflite interpreter",
        lambda: Interpreter(model_content=made["corrupt.tflite"]),
        "not a valid Flatbuffer",
    )

    for name, data in made.items():
        assert len(data) < MAX_FIXTURE_BYTES, f"{name} is {len(data)} bytes"
        write_file(FIXTURE_DIR / name, data)
        if name.endswith(".tflite") and not name.startswith(("corrupt", "custom")):
            print(describe_tflite(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
