"""The bundled demo models and their evaluation data (used by ``harness demo`` and the tests).

Four model files ship inside the package, made by ``scripts/make_demo_models.py``:

- ``digits_mlp.onnx`` / ``digits_mlp.tflite``: one 64-128-64-10 ReLU MLP trained on
  scikit-learn's 8x8 digits, the same float32 weights in both formats. Input ``input`` float32
  [batch, 64] (pixels / 16, in [0, 1]); output ``logits`` [batch, 10].
- ``mobilenet_tiny.onnx`` (NCHW, [batch, 3, 128, 128]) / ``mobilenet_tiny.tflite`` (NHWC,
  [1, 128, 128, 3]): a seeded, untrained MobileNet-style CNN for latency benchmarks.

``digits_eval.npz`` holds the 360 held-out digits (``input``, ``labels``) and
``digits_calib.npz`` 200 training rows (``input``) for int8 calibration. See README.md here.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from harness.errors import ModelError
from harness.paths import demo_dir

DEMO_MODEL_FILES: tuple[str, ...] = (
    "digits_mlp.onnx",
    "digits_mlp.tflite",
    "mobilenet_tiny.onnx",
    "mobilenet_tiny.tflite",
)
DIGITS_EVAL_FILE = "digits_eval.npz"
DIGITS_CALIB_FILE = "digits_calib.npz"
_REGENERATE_HINT = "reinstall harness, or run scripts/make_demo_models.py in a checkout"


def _bundled_file(name: str) -> Path:
    path = demo_dir() / name
    if not path.is_file():
        raise ModelError(f"bundled demo file {path} is missing", hint=_REGENERATE_HINT)
    return path


def demo_model_paths() -> dict[str, Path]:
    """The four bundled demo models, keyed by file name (e.g. ``"digits_mlp.onnx"``).

    Raises :class:`ModelError` if a file is missing from the installation.
    """
    return {name: _bundled_file(name) for name in DEMO_MODEL_FILES}


def digits_eval_path() -> Path:
    """``digits_eval.npz``: ``input`` float32 [360, 64] and ``labels`` int64 [360]."""
    return _bundled_file(DIGITS_EVAL_FILE)


def digits_calib_path() -> Path:
    """``digits_calib.npz``: ``input`` float32 [200, 64], rows of the training split."""
    return _bundled_file(DIGITS_CALIB_FILE)


def load_digits_eval() -> tuple[np.ndarray, np.ndarray]:
    """The digits evaluation set as ``(inputs float32 [360, 64], labels int64 [360])``."""
    with np.load(digits_eval_path()) as data:
        return np.asarray(data["input"]), np.asarray(data["labels"])


def load_digits_calib() -> np.ndarray:
    """The digits calibration inputs, float32 [200, 64]."""
    with np.load(digits_calib_path()) as data:
        return np.asarray(data["input"])


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose highest logit is at the row's label index.

    ``logits`` is [N, classes] (scores or probabilities: only the argmax matters) and ``labels``
    [N] integer class indices. Ties go to the lowest index, as with ``numpy.argmax``.
    Raises :class:`ModelError` if the shapes do not fit together.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.ndim != 1 or logits.shape[0] != labels.shape[0]:
        raise ModelError(
            f"cannot score logits of shape {logits.shape} against labels of shape "
            f"{labels.shape}: expected [N, classes] logits for N labels"
        )
    if labels.shape[0] == 0:
        raise ModelError("cannot score an empty evaluation set")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ModelError(f"labels must be integer class indices, got dtype {labels.dtype}")
    return float(np.mean(np.argmax(logits, axis=1) == labels))
