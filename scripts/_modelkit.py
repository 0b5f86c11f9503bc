"""Shared helpers for the model-making scripts (``make_demo_models.py``, ``make_test_models.py``).

These scripts run in a separate generation venv that has TensorFlow (see the scripts' headers);
harness itself never imports TensorFlow. This module only imports numpy, onnxruntime and
ai_edge_litert at the top; TensorFlow is imported by the callers after :func:`quiet_tensorflow`.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from ai_edge_litert.interpreter import Interpreter

REPO_ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = REPO_ROOT / "harness" / "demo"
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "models"

# ONNX versions chosen for reach: opset 17 / IR 8 load in onnxruntime >= 1.14.
ONNX_OPSET = 17
ONNX_IR_VERSION = 8
PRODUCER = "harness scripts"


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ and oneDNN banners; call before importing tensorflow.

    oneDNN is turned off too: its fused kernels change float rounding with the CPU, and the
    scripts promise the same outputs on every rerun.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and print its size and sha256 (the scripts' record of output)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()[:16]
    rel = path.relative_to(REPO_ROOT)
    print(f"  wrote {rel}  {len(data):>9,d} bytes  sha256 {digest}...")


def ort_session(model: bytes | Path, threads: int = 1) -> ort.InferenceSession:
    """An onnxruntime CPU session pinned to ``threads`` intra-op threads, sequential execution."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def tflite_run(model: bytes, inputs: np.ndarray, threads: int = 1) -> np.ndarray:
    """Run a one-input, one-output TFLite model on ``inputs``, resizing a dynamic batch."""
    interpreter = Interpreter(model_content=model, num_threads=threads)
    detail = interpreter.get_input_details()[0]
    if tuple(detail["shape"]) != inputs.shape:
        interpreter.resize_tensor_input(detail["index"], list(inputs.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], inputs)
    interpreter.invoke()
    out_index = interpreter.get_output_details()[0]["index"]
    return np.array(interpreter.get_tensor(out_index))


def describe_tflite(model: bytes) -> str:
    """One line per input/output tensor (name, shape, shape_signature, dtype) plus signatures."""
    interpreter = Interpreter(model_content=model)
    lines = []
    for kind, details in (
        ("input", interpreter.get_input_details()),
        ("output", interpreter.get_output_details()),
    ):
        for d in details:
            quant = d["quantization"]
            q = f" quant(scale={quant[0]:.6g}, zero_point={quant[1]})" if quant[0] else ""
            lines.append(
                f"    tflite {kind:6s} {d['name']!r} shape={d['shape'].tolist()} "
                f"signature={d['shape_signature'].tolist()} dtype={np.dtype(d['dtype']).name}{q}"
            )
    lines.append(f"    tflite signatures {interpreter.get_signature_list()}")
    return "\n".join(lines)


def median_latency_ms(run: Callable[[], Any], warmup: int = 10, iterations: int = 100) -> float:
    """Median wall time of ``run()`` in milliseconds after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def convert_module(
    module: Any, function: Any, configure: Callable[[Any], None] | None = None
) -> bytes:
    """Convert ``module.function`` (a ``tf.function`` with an input signature) to TFLite bytes.

    Passing the module as the trackable object keeps a ``serving_default`` signature whose input
    and output keys are the names in the function's ``TensorSpec`` and returned dict. Only for
    graphs whose weights are ``tf.constant`` s; Keras models go through :func:`convert_keras`.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], module
    )
    if configure is not None:
        configure(converter)
    data: bytes = converter.convert()
    return data


def convert_keras(model: Any, input_spec: Any, output_key: str) -> bytes:
    """Convert a Keras 3 model to float32 TFLite with one ``serving_default`` signature.

    The signature's input key is ``input_spec.name`` and its output key ``output_key``. Keras 3
    variables are only captured correctly through Keras's own ``ExportArchive`` (a plain
    ``tf.Module`` wrapper converts but leaves the weights uninitialised), so the model goes
    through a temporary SavedModel.
    """
    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as saved_model_dir:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            name="serving_default",
            fn=lambda x: {output_key: model(x, training=False)},
            input_signature=[input_spec],
        )
        archive.write_out(saved_model_dir, verbose=False)
        data: bytes = tf.lite.TFLiteConverter.from_saved_model(saved_model_dir).convert()
    return data
