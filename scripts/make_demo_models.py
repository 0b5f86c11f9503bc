"""Regenerate the bundled demo models and data in ``harness/demo/``.

How to run (needs TensorFlow, which harness itself never needs; use a separate venv)::

    python3 -m venv /tmp/venv-tf
    /tmp/venv-tf/bin/pip install tensorflow-cpu scikit-learn onnx onnxruntime ai-edge-litert
    /tmp/venv-tf/bin/python scripts/make_demo_models.py

What it makes (see ``harness/demo/README.md``):

- ``digits_mlp.onnx`` / ``digits_mlp.tflite``: a 64-128-64-10 ReLU MLP trained on scikit-learn's
  bundled 8x8 digits; both files hold the same float32 weights.
- ``digits_eval.npz`` (``input`` float32 [360, 64], ``labels`` int64 [360]) and
  ``digits_calib.npz`` (``input`` float32 [200, 64], from the training split) for accuracy
  checks and int8 calibration.
- ``mobilenet_tiny.onnx`` (NCHW) / ``mobilenet_tiny.tflite`` (NHWC): a seeded, untrained
  MobileNet-style CNN for latency benchmarks.

The script is deterministic (fixed seeds, single-threaded BLAS for training) and checks, before
writing anything, that the ONNX and TFLite forms of each model give the same outputs.
"""

from __future__ import annotations

import io
import sys

import numpy as np
from _modelkit import (
    DEMO_DIR,
    describe_tflite,
    median_latency_ms,
    ort_session,
    quiet_tensorflow,
    tflite_run,
    write_file,
)
from ai_edge_litert.interpreter import Interpreter

DIGITS_TOLERANCE = 1e-4
MOBILENET_TOLERANCE = 1e-3
MIN_DIGITS_ACCURACY = 0.95
MAX_DEMO_BYTES = 2 * 1024 * 1024


def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    # np.savez stamps no times into the zip entries, so the bytes are reproducible.
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def make_digits() -> None:
    """Train, export and cross-check the digits MLP; write it and its data."""
    import _digits

    print("digits MLP")
    data = _digits.load_split()
    print(
        f"  split: train {len(data.train_x)}, eval {len(data.eval_x)}, "
        f"calibration {len(data.calib_x)} (from train)"
    )
    weights = _digits.train(data)
    reference = _digits.numpy_logits(weights, data.eval_x)
    numpy_acc = _accuracy(reference, data.eval_y)
    metadata = {
        "preprocessing": _digits.PREPROCESSING,
        "dataset": "sklearn.datasets.load_digits, stratified split random_state=0, 360 eval rows",
        "eval_accuracy": f"{numpy_acc:.4f}",
    }
    onnx_bytes = _digits.to_onnx(weights, metadata)
    tflite_bytes = _digits.to_tflite(weights)

    onnx_logits = ort_session(onnx_bytes).run(["logits"], {"input": data.eval_x})[0]
    tflite_logits = tflite_run(tflite_bytes, data.eval_x)
    diff = float(np.max(np.abs(onnx_logits - tflite_logits)))
    onnx_acc = _accuracy(onnx_logits, data.eval_y)
    tflite_acc = _accuracy(tflite_logits, data.eval_y)
    print(f"  eval accuracy: numpy {numpy_acc:.4f}  onnx {onnx_acc:.4f}  tflite {tflite_acc:.4f}")
    print(f"  max |onnx - tflite| logits on eval set: {diff:.3g}")
    assert diff < DIGITS_TOLERANCE, f"ONNX and TFLite digits logits differ by {diff}"
    assert min(onnx_acc, tflite_acc) >= MIN_DIGITS_ACCURACY, "digits accuracy below 95%"
    print(describe_tflite(tflite_bytes))

    write_file(DEMO_DIR / "digits_mlp.onnx", onnx_bytes)
    write_file(DEMO_DIR / "digits_mlp.tflite", tflite_bytes)
    write_file(DEMO_DIR / "digits_eval.npz", _npz_bytes(input=data.eval_x, labels=data.eval_y))
    write_file(DEMO_DIR / "digits_calib.npz", _npz_bytes(input=data.calib_x))


def make_mobilenet() -> None:
    """Build, export and cross-check mobilenet_tiny; time it in onnxruntime on one thread."""
    import _mobilenet

    print("mobilenet_tiny")
    weights = _mobilenet.make_weights()
    params = sum(c.kernel.size + c.bias.size for c in weights.convs)
    params += weights.dense_kernel.size + weights.dense_bias.size
    print(f"  parameters: {params:,d}")
    onnx_bytes = _mobilenet.to_onnx(weights, {"description": _mobilenet.DESCRIPTION})
    tflite_bytes = _mobilenet.to_tflite(weights)

    rng = np.random.default_rng(7)
    nhwc = rng.uniform(-1.0, 1.0, (1, _mobilenet.SIZE, _mobilenet.SIZE, 3)).astype(np.float32)
    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    session = ort_session(onnx_bytes, threads=1)
    onnx_logits = session.run(["logits"], {"input": nchw})[0]
    tflite_logits = tflite_run(tflite_bytes, nhwc)
    diff = float(np.max(np.abs(onnx_logits - tflite_logits)))
    print("  logits on a seeded input:", " ".join(f"{v:.3f}" for v in onnx_logits[0]))
    print(f"  max |onnx - tflite| logits: {diff:.3g}")
    assert diff < MOBILENET_TOLERANCE, f"ONNX and TFLite mobilenet logits differ by {diff}"
    ort_ms = median_latency_ms(lambda: session.run(["logits"], {"input": nchw}))
    print(f"  onnxruntime 1 thread: median {ort_ms:.2f} ms / inference (100 runs)")
    interpreter = Interpreter(model_content=tflite_bytes, num_threads=1)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    interpreter.set_tensor(input_index, nhwc)
    tflite_ms = median_latency_ms(interpreter.invoke)
    print(f"  ai_edge_litert 1 thread (XNNPACK): median {tflite_ms:.2f} ms / inference (100 runs)")
    print(describe_tflite(tflite_bytes))
    for data in (onnx_bytes, tflite_bytes):
        assert len(data) < MAX_DEMO_BYTES, "mobilenet_tiny is over 2 MB"

    write_file(DEMO_DIR / "mobilenet_tiny.onnx", onnx_bytes)
    write_file(DEMO_DIR / "mobilenet_tiny.tflite", tflite_bytes)


def main() -> int:
    """Make every demo file; exit non-zero (via an assertion) if a cross-check fails."""
    quiet_tensorflow()
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    print(f"tensorflow {tf.__version__}, numpy {np.__version__}")
    make_digits()
    make_mobilenet()
    return 0


if __name__ == "__main__":
    sys.exit(main())
