"""Runtime selection and the interface every runtime backend implements.

Runs on the device: standard library + numpy; each runtime is imported only when chosen, and a
runtime that is absent is a ``runtime_missing`` error naming the pip package to install.
"""

from __future__ import annotations

import abc
import importlib
import os
from typing import Any

import numpy as np

from runner_errors import KIND_BAD_ARGUMENTS, KIND_RUNTIME_MISSING, RunnerError
from runner_inputs import TensorSpec

# runtime name -> (module to import, pip package that provides it)
RUNTIMES: dict[str, tuple[str, str]] = {
    "onnxruntime": ("onnxruntime", "onnxruntime"),
    "ai_edge_litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
    "tflite_runtime": ("tflite_runtime.interpreter", "tflite-runtime"),
    "tensorflow": ("tensorflow", "tensorflow"),
}
TFLITE_ORDER = ("ai_edge_litert", "tflite_runtime", "tensorflow")
FORMAT_BY_EXTENSION = {".onnx": "onnx", ".ort": "onnx", ".tflite": "tflite", ".lite": "tflite"}


class Backend(abc.ABC):
    """One loaded model on one runtime. Subclasses fill in the runtime-specific parts.

    Lifecycle: ``load`` -> ``input_specs`` -> ``prepare(shapes)`` (timed together as init) ->
    ``bind``/``invoke`` per run -> ``describe_execution`` -> optional ``probe`` after timing.
    """

    runtime_name = ""
    runtime_version = ""
    # TFLite can resize any dim of an input; ORT rejects a shape that contradicts a fixed dim.
    allow_fixed_override = False

    def __init__(self, model_path: str, threads: int | None, provider: str) -> None:
        self.model_path = model_path
        self.threads = threads
        self.provider = provider
        self.notes: list[str] = []

    @abc.abstractmethod
    def load(self) -> None:
        ...

    @abc.abstractmethod
    def input_specs(self) -> list[TensorSpec]:
        ...

    @abc.abstractmethod
    def output_specs(self) -> list[TensorSpec]:
        ...

    def prepare(self, shapes: dict[str, list[int]]) -> None:  # noqa: B027 - optional hook
        """Make the model ready for inputs of ``shapes`` (TFLite: resize + allocate)."""

    @abc.abstractmethod
    def bind(self, feeds: dict[str, np.ndarray]) -> None:
        ...

    @abc.abstractmethod
    def invoke(self) -> None:
        ...

    @abc.abstractmethod
    def outputs(self) -> list[np.ndarray]:
        """The outputs of the last ``invoke``, in ``output_specs`` order."""
        ...

    @abc.abstractmethod
    def describe_execution(self) -> dict[str, Any]:
        """The document's ``execution`` section: what actually ran."""
        ...

    def probe(self, execution: dict[str, Any]) -> None:  # noqa: B027 - optional hook
        """Extra, untimed inspection after the measurement (may refine ``execution``)."""


def model_format(path: str) -> str:
    """'onnx' or 'tflite' from the file extension, else from the file's magic bytes."""
    ext = os.path.splitext(path)[1].lower()
    if ext in FORMAT_BY_EXTENSION:
        return FORMAT_BY_EXTENSION[ext]
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError:
        head = b""
    if head[4:8] == b"TFL3":
        return "tflite"
    return "onnx"


def _import(runtime: str) -> Any:
    module_name, package = RUNTIMES[runtime]
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or a broken install failing inside its own import
        raise RunnerError(
            KIND_RUNTIME_MISSING,
            f"runtime {runtime} is not usable on this device "
            f"({type(exc).__name__}: {exc}); install it with: pip install {package}",
        ) from None


def choose_runtime(requested: str, fmt: str) -> tuple[str, Any]:
    """The runtime name and imported module for a model format.

    ``auto``: onnxruntime for ONNX; for TFLite the first importable of ai_edge_litert,
    tflite_runtime, tensorflow.
    """
    if requested == "auto":
        if fmt == "onnx":
            return "onnxruntime", _import("onnxruntime")
        failures = []
        for name in TFLITE_ORDER:
            try:
                return name, _import(name)
            except RunnerError as exc:
                failures.append(exc.message)
        raise RunnerError(
            KIND_RUNTIME_MISSING,
            "no TFLite runtime is installed on this device; "
            "install one with: pip install ai-edge-litert (or tflite-runtime)",
        )
    if requested not in RUNTIMES:
        raise RunnerError(
            KIND_BAD_ARGUMENTS,
            f"unknown runtime {requested!r}; choose one of auto, {', '.join(RUNTIMES)}",
        )
    wanted = "onnx" if requested == "onnxruntime" else "tflite"
    if wanted != fmt:
        raise RunnerError(
            KIND_BAD_ARGUMENTS, f"runtime {requested} runs {wanted} models, but {fmt} was given"
        )
    return requested, _import(requested)


def make_backend(
    runtime: str, module: Any, model_path: str, threads: int | None, provider: str
) -> Backend:
    """The backend object for a chosen runtime."""
    if runtime == "onnxruntime":
        from runner_ort import OrtBackend

        return OrtBackend(module, model_path, threads, provider)
    from runner_tflite import TfliteBackend

    return TfliteBackend(runtime, module, model_path, threads, provider)


def module_version(module: Any, distribution: str) -> str:
    """A runtime's version from ``__version__`` or the installed distribution's metadata."""
    root = importlib.import_module(module.__name__.split(".")[0])
    version = getattr(root, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib import metadata

        return metadata.version(distribution)
    except Exception:
        return "unknown"
