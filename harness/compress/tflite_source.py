"""The TensorFlow side of the TFLite recipes: load a SavedModel or Keras source and run it.

TensorFlow is an optional extra, imported lazily by :func:`import_tensorflow`; without it a
TFLite recipe is a :class:`~harness.errors.CompressionError` naming the extra, and the ONNX
recipes never notice. A Keras file is exported to a SavedModel with Keras's own ``export``
(Keras 3 variables are only captured correctly that way, a ``tf.Module`` wrapper converts to
a model with uninitialised weights), but its reference outputs come from the Keras model
itself, so a broken export shows up as a fidelity loss instead of being compared to itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.compress.data import Feeds, ModelInput, batches
from harness.errors import CompressionError

INSTALL_HINT = "pip install 'harness[tf]'"
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
SIGNATURE = "serving_default"


def is_tf_source(path: Path) -> bool:
    """True for what the TFLite recipes take: a directory (a SavedModel) or a Keras file."""
    return path.is_dir() or path.suffix.lower() in KERAS_SUFFIXES


def import_tensorflow(what: str = "the TFLite recipes") -> Any:
    """The ``tensorflow`` module, quietened; a CompressionError with the extra if it is missing."""
    # TF's C++ banners drown the CLI output; oneDNN's fused kernels make float rounding depend
    # on the CPU, which would make the reference outputs differ from machine to machine.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise CompressionError(
            f"{what} need TensorFlow, which is not installed ({exc})", hint=INSTALL_HINT
        ) from exc
    return tf


@dataclass(frozen=True)
class TfSource:
    """A loaded source: the SavedModel to convert, its signature, and a way to run it in TF.

    ``run`` returns the first signature output (``output_name``) over all samples, as float64.
    Counts come from the source's variables: conversion neither adds nor removes weights.
    """

    path: Path
    kind: str  # "saved_model" or "keras"
    saved_model_dir: Path
    inputs: list[ModelInput]
    output_name: str
    parameter_count: int
    nonzero_count: int
    run: Callable[[Feeds], NDArray[np.float64]]


def _signature(tf: Any, saved_model_dir: Path, source: Path) -> tuple[Any, Any]:
    try:
        loaded = tf.saved_model.load(str(saved_model_dir))
    except Exception as exc:
        first = " ".join(str(exc).split())[:300]
        raise CompressionError(
            f"source model {source} is not a loadable SavedModel: {first}",
            hint="give a SavedModel directory (saved_model.pb) or a .keras/.h5 file",
        ) from exc
    signatures = getattr(loaded, "signatures", {})
    if SIGNATURE not in signatures:
        raise CompressionError(
            f"source model {source} has no {SIGNATURE!r} signature "
            f"(it has: {', '.join(signatures) or 'none'})",
            hint="export it with model.export(path) or tf.saved_model.save(..., signatures=...)",
        )
    return loaded, signatures[SIGNATURE]


def _inputs(signature: Any, source: Path) -> list[ModelInput]:
    _args, kwargs = signature.structured_input_signature
    if not kwargs:
        raise CompressionError(f"source model {source}: its {SIGNATURE!r} signature has no inputs")
    out = []
    for name in sorted(kwargs):
        spec = kwargs[name]
        shape = tuple(None if d is None else int(d) for d in spec.shape.as_list())
        out.append(ModelInput(name, shape, np.dtype(spec.dtype.as_numpy_dtype)))
    return out


def _counts(variables: list[Any]) -> tuple[int, int]:
    values = [np.asarray(v.numpy()) for v in variables]
    return sum(v.size for v in values), sum(int(np.count_nonzero(v)) for v in values)


def _collect(
    fn: Callable[[Feeds], Any], feeds: Feeds, inputs: list[ModelInput], source: Path
) -> NDArray[np.float64]:
    try:
        parts = [np.asarray(fn(batch), dtype=np.float64) for batch in batches(feeds, inputs)]
    except Exception as exc:
        first = " ".join(str(exc).split())[:300]
        raise CompressionError(f"TensorFlow cannot run source model {source}: {first}") from exc
    return np.concatenate(parts)


def load_tf_source(path: Path, work_dir: Path) -> TfSource:
    """Load ``path`` (SavedModel directory or Keras file); a Keras file is exported under
    ``work_dir``, which must outlive the returned source's use."""
    if not path.exists():
        raise CompressionError(f"source model {path} does not exist")
    if path.is_dir() and not any(
        (path / n).is_file() for n in ("saved_model.pb", "saved_model.pbtxt")
    ):
        raise CompressionError(
            f"source model {path} is a directory without saved_model.pb",
            hint="give a SavedModel directory or a .keras/.h5 file",
        )
    tf = import_tensorflow()
    if path.is_dir():
        loaded, signature = _signature(tf, path, path)
        inputs = _inputs(signature, path)
        output_name = sorted(signature.structured_outputs)[0]

        def run_saved(feeds: Feeds) -> Any:
            result = signature(**{k: tf.constant(v) for k, v in feeds.items()})
            return result[output_name].numpy()

        params, nonzero = _counts(list(getattr(loaded, "variables", [])))
        return TfSource(path, "saved_model", path, inputs, output_name, params, nonzero,
                        lambda feeds: _collect(run_saved, feeds, inputs, path))  # fmt: skip
    import keras

    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as exc:
        first = " ".join(str(exc).split())[:300]
        raise CompressionError(
            f"source model {path} is not a loadable Keras model: {first}"
        ) from exc
    exported = work_dir / "saved_model"
    try:
        model.export(str(exported), format="tf_saved_model", verbose=False)
    except Exception as exc:
        first = " ".join(str(exc).split())[:300]
        raise CompressionError(f"Keras cannot export {path} to a SavedModel: {first}") from exc
    _loaded, signature = _signature(tf, exported, path)
    inputs = _inputs(signature, path)
    output_name = sorted(signature.structured_outputs)[0]
    names = [t.name for t in model.inputs]
    if sorted(names) != [i.name for i in inputs]:
        raise CompressionError(
            f"source model {path}: Keras inputs {names} do not match its exported signature "
            f"{[i.name for i in inputs]}"
        )

    def run_keras(feeds: Feeds) -> Any:
        args = [feeds[n] for n in names]
        out = model(args[0] if len(args) == 1 else args, training=False)
        if isinstance(out, dict):  # exported signature keys are the dict's keys
            out = out[output_name]
        first_out = out[0] if isinstance(out, list | tuple) else out
        return np.asarray(first_out)

    params, nonzero = _counts(list(model.weights))
    return TfSource(path, "keras", exported, inputs, output_name, params, nonzero,
                    lambda feeds: _collect(run_keras, feeds, inputs, path))  # fmt: skip
