"""The ONNX Runtime backend.

Runs on the device: standard library + numpy + onnxruntime. Records which execution providers
were requested, available and used, and (from a second, verbose session created after the
timed window) how many nodes each provider got, so a silent fall-back to CPU is visible.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Any

import numpy as np

from runner_backends import Backend, module_version
from runner_errors import KIND_BAD_ARGUMENTS, RunnerError, classify_load_error
from runner_inputs import TensorSpec

CPU_EP = "CPUExecutionProvider"
# Short names accepted by --provider, mapped to ORT's provider names.
_EP_ALIASES = {
    "default": CPU_EP,
    "cpu": CPU_EP,
    "none": CPU_EP,
    "xnnpack": "XnnpackExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "nnapi": "NnapiExecutionProvider",
    "qnn": "QNNExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "acl": "ACLExecutionProvider",
    "armnn": "ArmNNExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "webgpu": "WebGpuExecutionProvider",
}
# "tensor(float)" -> numpy dtype name
_ORT_TYPES = {
    "float": "float32",
    "double": "float64",
    "float16": "float16",
    "bool": "bool",
    "int8": "int8",
    "uint8": "uint8",
    "int16": "int16",
    "uint16": "uint16",
    "int32": "int32",
    "uint32": "uint32",
    "int64": "int64",
    "uint64": "uint64",
    "string": "object",
}
# ORT's VERBOSE session log: " All nodes placed on [CPUExecutionProvider]. Number of nodes: 2"
# or one " Node(s) placed on [X]. Number of nodes: N" line per provider.
_PLACEMENT = re.compile(r"placed on \[(\w+)\]\. Number of nodes: (\d+)")


def requested_providers(provider: str) -> list[str]:
    """The provider list to ask ORT for: the chosen EP first, CPU as the fall-back."""
    name = _EP_ALIASES.get(provider.lower(), provider)
    if not name.endswith("ExecutionProvider"):
        raise RunnerError(
            KIND_BAD_ARGUMENTS,
            f"--provider {provider!r} is not an ONNX Runtime "
            f"provider; use default, cpu, {', '.join(sorted(_EP_ALIASES)[3:])} or a "
            f"name like CUDAExecutionProvider",
        )
    return [name] if name == CPU_EP else [name, CPU_EP]


def numpy_type_name(ort_type: str) -> str:
    inner = ort_type[len("tensor(") : -1] if ort_type.startswith("tensor(") else ort_type
    return _ORT_TYPES.get(inner, inner)


def parse_placements(log_text: str) -> dict[str, int]:
    """Nodes per provider from ORT's verbose "Node placements" log lines."""
    placed: dict[str, int] = {}
    for provider, count in _PLACEMENT.findall(log_text):
        placed[provider] = placed.get(provider, 0) + int(count)
    return placed


class OrtBackend(Backend):
    runtime_name = "onnxruntime"
    allow_fixed_override = False

    def __init__(self, ort: Any, model_path: str, threads: int | None, provider: str) -> None:
        super().__init__(model_path, threads, provider)
        self.ort = ort
        self.runtime_version = module_version(ort, "onnxruntime")
        self.requested = requested_providers(provider)
        self.session: Any = None
        self.feeds: dict[str, np.ndarray] = {}
        self.last: list[np.ndarray] = []

    def _options(self, log_severity: int) -> Any:
        options = self.ort.SessionOptions()
        options.log_severity_level = log_severity
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
        return options

    def load(self) -> None:
        try:
            self.session = self.ort.InferenceSession(
                self.model_path, self._options(2), providers=self.requested
            )
        except Exception as exc:
            raise classify_load_error(exc, self.model_path) from None

    def _specs(self, args: list[Any]) -> list[TensorSpec]:
        return [
            TensorSpec(
                name=a.name,
                dtype=numpy_type_name(a.type),
                declared_shape=list(a.shape) if a.shape is not None else [],
            )
            for a in args
        ]

    def input_specs(self) -> list[TensorSpec]:
        return self._specs(self.session.get_inputs())

    def output_specs(self) -> list[TensorSpec]:
        return self._specs(self.session.get_outputs())

    def bind(self, feeds: dict[str, np.ndarray]) -> None:
        self.feeds = feeds

    def invoke(self) -> None:
        self.last = self.session.run(None, self.feeds)

    def outputs(self) -> list[np.ndarray]:
        return [np.asarray(x) for x in self.last]

    def describe_execution(self) -> dict[str, Any]:
        available = list(self.ort.get_available_providers())
        used = list(self.session.get_providers())
        wanted = self.requested[0]
        notes = []
        if wanted not in available:
            notes.append(f"{wanted} is not available in this onnxruntime build")
        fallback = wanted != CPU_EP and wanted not in used
        return {
            "providers_requested": list(self.requested),
            "providers_available": available,
            "providers_used": used,
            "fallback_to_cpu": fallback,
            "notes": notes,
        }

    def probe(self, execution: dict[str, Any]) -> None:
        """Count nodes per provider from a second session with VERBOSE logging.

        The timed session stays quiet (verbose logging would inflate init_ms); this one is
        created after the measurement, with stderr captured at the file-descriptor level
        because ORT logs from C++.
        """
        text = _capture_fd2(
            lambda: self.ort.InferenceSession(
                self.model_path, self._options(0), providers=self.requested
            )
        )
        placed = parse_placements(text)
        if not placed:
            execution["notes"].append("node placements not found in the verbose session log")
            return
        execution["nodes_by_provider"] = placed
        execution["total_nodes"] = sum(placed.values())
        wanted = self.requested[0]
        if wanted != CPU_EP:
            execution["delegated_nodes"] = placed.get(wanted, 0)
            if placed.get(wanted, 0) == 0:
                execution["fallback_to_cpu"] = True
            elif placed.get(CPU_EP, 0):
                execution["notes"].append(f"{placed[CPU_EP]} node(s) fell back to {CPU_EP}")
        execution["notes"].append("nodes_by_provider from a second session's verbose log")


def _capture_fd2(action: Any) -> str:
    """Run ``action`` with file descriptor 2 redirected to a temp file; return what was written."""
    sys.stderr.flush()
    saved = os.dup(2)
    failure = None
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            action()
        except Exception as exc:  # the timed session loaded; a failing probe only loses detail
            failure = exc
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text = sink.read().decode("utf-8", errors="replace")
    if failure is not None:
        print(f"harness-runner: placement probe failed: {failure}", file=sys.stderr)
    return text
