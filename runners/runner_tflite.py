"""The TFLite backend for ai_edge_litert, tflite_runtime and tensorflow.lite.

Runs on the device: standard library + numpy + one TFLite runtime. All three expose the same
``Interpreter`` class. XNNPACK is the default delegate; it is switched off with the op resolver
``BUILTIN_WITHOUT_DEFAULT_DELEGATES``. It is applied lazily at ``allocate_tensors``, after which
the node list holds one extra ``DELEGATE`` node per delegated partition; the original nodes each
partition replaced are found by walking back from its outputs to its inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runner_backends import RUNTIMES, Backend, module_version
from runner_errors import (
    KIND_BAD_ARGUMENTS,
    KIND_INPUT,
    RunnerError,
    classify_load_error,
    classify_prepare_error,
)
from runner_inputs import TensorSpec

XNNPACK = "XNNPACK"
CPU = "CPU"
_XNNPACK_ON = ("default", "cpu", "xnnpack")
_XNNPACK_OFF = ("none",)


def delegation(ops: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(partitions, delegated original nodes, original nodes) from ``_get_ops_details()``."""
    delegates = [op for op in ops if op.get("op_name") == "DELEGATE"]
    originals = [op for op in ops if op.get("op_name") != "DELEGATE"]
    producer: dict[int, dict[str, Any]] = {}
    for op in originals:
        for tensor in op.get("outputs", []):
            producer[int(tensor)] = op
    covered: set[int] = set()
    for node in delegates:
        boundary = {int(t) for t in node.get("inputs", [])}
        stack = [int(t) for t in node.get("outputs", [])]
        seen: set[int] = set()
        while stack:
            tensor = stack.pop()
            if tensor in seen or tensor in boundary:
                continue
            seen.add(tensor)
            source = producer.get(tensor)
            if source is None or int(source["index"]) in covered:
                continue
            covered.add(int(source["index"]))
            stack.extend(int(t) for t in source.get("inputs", []) if int(t) >= 0)
    return len(delegates), len(covered), len(originals)


def quantization_of(details: dict[str, Any]) -> dict[str, Any] | None:
    """Scale/zero point of a quantized tensor (lists for per-axis), None when not quantized."""
    params = details.get("quantization_parameters") or {}
    scales = [float(x) for x in params.get("scales", [])]
    zero_points = [int(x) for x in params.get("zero_points", [])]
    if not scales:
        scale, zero_point = details.get("quantization", (0.0, 0))
        return {"scale": float(scale), "zero_point": int(zero_point)} if scale else None
    if len(scales) == 1:
        return {"scale": scales[0], "zero_point": zero_points[0] if zero_points else 0}
    return {
        "scales": scales,
        "zero_points": zero_points,
        "quantized_dimension": int(params.get("quantized_dimension", 0)),
    }


def _spec(details: dict[str, Any], signature_names: dict[int, str]) -> TensorSpec:
    signature = details.get("shape_signature")
    shape = details.get("shape")
    declared = signature if signature is not None and len(signature) else shape
    if declared is None:
        declared = []
    tensor_name = str(details["name"])
    name = signature_names.get(int(details["index"]), tensor_name)
    return TensorSpec(
        name=name,
        dtype=np.dtype(details["dtype"]).name,
        declared_shape=[int(d) for d in declared],
        quantization=quantization_of(details),
        index=int(details["index"]),
        alias=tensor_name if tensor_name != name else None,
    )


def signature_names(interpreter: Any) -> dict[int, str]:
    """Tensor index -> the name the model's only signature gives it (the names a converter kept
    from the source model, e.g. "input" for "serving_default_input:0"); {} if not exactly one."""
    try:
        signatures = interpreter._get_full_signature_list()
    except Exception:  # private API, absent on old runtimes
        return {}
    if len(signatures) != 1:
        return {}
    (only,) = signatures.values()
    names: dict[int, str] = {}
    for part in ("inputs", "outputs"):
        for name, index in (only.get(part) or {}).items():
            names[int(index)] = str(name)
    return names


class TfliteBackend(Backend):
    allow_fixed_override = True  # resize_tensor_input(strict=False) may change any dim

    def __init__(
        self, runtime: str, module: Any, model_path: str, threads: int | None, provider: str
    ) -> None:
        super().__init__(model_path, threads, provider)
        key = provider.lower()
        if key not in _XNNPACK_ON + _XNNPACK_OFF:
            raise RunnerError(
                KIND_BAD_ARGUMENTS,
                f"--provider {provider!r} does not apply to "
                f"TFLite; use default/xnnpack (XNNPACK on) or none (XNNPACK off)",
            )
        self.xnnpack = key in _XNNPACK_ON
        self.runtime_name = runtime
        self.runtime_version = module_version(module, RUNTIMES[runtime][1])
        if runtime == "tensorflow":
            self.interpreter_cls = module.lite.Interpreter
            self.resolvers = getattr(module.lite.experimental, "OpResolverType", None)
        else:
            self.interpreter_cls = module.Interpreter
            self.resolvers = getattr(module, "OpResolverType", None)
        self.interpreter: Any = None
        self.inputs: list[TensorSpec] = []
        self.xnnpack_switch_supported = True

    def load(self) -> None:
        kwargs: dict[str, Any] = {"model_path": self.model_path}
        if self.threads is not None:
            kwargs["num_threads"] = self.threads
        else:
            self.notes.append("threads not set: the TFLite Python interpreter defaults to 1")
        if not self.xnnpack:
            if self.resolvers is None:
                raise RunnerError(
                    KIND_BAD_ARGUMENTS,
                    f"{self.runtime_name} "
                    f"{self.runtime_version} cannot switch XNNPACK off (no "
                    f"OpResolverType); use --provider default",
                )
            kwargs["experimental_op_resolver_type"] = (
                self.resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            )
        try:
            self.interpreter = self.interpreter_cls(**kwargs)
        except Exception as exc:
            raise classify_load_error(exc, self.model_path) from None

    def input_specs(self) -> list[TensorSpec]:
        names = signature_names(self.interpreter)
        self.inputs = [_spec(d, names) for d in self.interpreter.get_input_details()]
        return self.inputs

    def output_specs(self) -> list[TensorSpec]:
        names = signature_names(self.interpreter)
        return [_spec(d, names) for d in self.interpreter.get_output_details()]

    def prepare(self, shapes: dict[str, list[int]]) -> None:
        current = {
            int(d["index"]): [int(x) for x in d["shape"]]
            for d in self.interpreter.get_input_details()
        }
        try:
            for spec in self.inputs:
                wanted = shapes.get(spec.name)
                if wanted is not None and wanted != current.get(spec.index):
                    self.interpreter.resize_tensor_input(spec.index, wanted, strict=False)
        except Exception as exc:
            raise RunnerError(KIND_INPUT, f"cannot resize inputs to {shapes}: {exc}") from None
        try:
            self.interpreter.allocate_tensors()
        except Exception as exc:
            raise classify_prepare_error(exc) from None

    def bind(self, feeds: dict[str, np.ndarray]) -> None:
        for spec in self.inputs:
            self.interpreter.set_tensor(spec.index, feeds[spec.name])

    def invoke(self) -> None:
        self.interpreter.invoke()

    def outputs(self) -> list[np.ndarray]:
        return [
            np.array(self.interpreter.get_tensor(d["index"]))
            for d in self.interpreter.get_output_details()
        ]

    def describe_execution(self) -> dict[str, Any]:
        requested = [XNNPACK, CPU] if self.xnnpack else [CPU]
        execution: dict[str, Any] = {
            "providers_requested": requested,
            "providers_available": [XNNPACK, CPU],
            "notes": list(self.notes),
        }
        try:
            ops = self.interpreter._get_ops_details()
        except Exception as exc:  # private API: older runtimes may lack it
            execution["notes"].append(f"node list unavailable ({exc}); delegation unknown")
            execution["providers_used"] = requested
            return execution
        partitions, delegated, total = delegation(ops)
        execution.update(
            {
                "delegated_partitions": partitions,
                "delegated_nodes": delegated,
                "total_nodes": total,
                "nodes_by_provider": {
                    k: v for k, v in ((XNNPACK, delegated), (CPU, total - delegated)) if v
                },
                "providers_used": ([XNNPACK] if delegated else [])
                + ([CPU] if delegated < total else []),
                "fallback_to_cpu": bool(self.xnnpack and delegated == 0 and total > 0),
            }
        )
        if self.xnnpack and delegated == 0:
            execution["notes"].append("XNNPACK was requested but took no node")
        return execution
