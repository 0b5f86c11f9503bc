"""Input tensors for a benchmark run: shapes, values, random data and npz files.

Runs on the device: standard library + numpy. Everything here is pure given the model's input
specs, so both runtime backends share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

import numpy as np

from runner_errors import KIND_BAD_ARGUMENTS, KIND_INPUT, RunnerError, split_assignment

Dim = Union[int, str, None]
T = TypeVar("T")

# Integer inputs wider than 16 bits are usually token ids, lengths or indices: the full dtype
# range would overflow any embedding table, so they get a modest default range instead.
TOKEN_RANGE = (0, 100)
_FULL_RANGE_INTS = ("int8", "uint8", "int16", "uint16")


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output as the runtime declares it."""

    name: str
    dtype: str  # numpy dtype name; "object" for strings
    declared_shape: list[Dim]
    quantization: dict[str, Any] | None = None
    index: int = -1  # TFLite tensor index; unused by ORT
    # TFLite: the tensor's own name ("serving_default_input:0") when `name` is the signature's
    # name for it ("input"); either is accepted wherever an input is named.
    alias: str | None = None

    def known_as(self, name: str) -> bool:
        return name == self.name or (self.alias is not None and name == self.alias)


@dataclass(frozen=True)
class ValueSpec:
    """A ``--value`` argument: a constant, or a half-open range [low, high) to draw from."""

    text: str
    low: float
    high: float | None = None  # None: a constant `low`

    @property
    def is_range(self) -> bool:
        return self.high is not None


@dataclass
class InputPlan:
    """The resolved inputs: concrete shapes, where each tensor came from, and notes."""

    shapes: dict[str, list[int]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def is_dynamic(dim: Dim) -> bool:
    """True for every form runtimes use for an unknown dim: None, -1, 'batch', '?', ''."""
    return not isinstance(dim, int) or dim < 0


def parse_shapes(args: Sequence[str]) -> dict[str, list[int]]:
    """Parse ``--shape NAME=1x3x224x224`` arguments (also ``1,3,224,224``; empty = scalar)."""
    shapes: dict[str, list[int]] = {}
    for text in args:
        name, value = split_assignment(text, "--shape")
        value = value.strip()
        parts = [p for p in value.replace(",", "x").split("x")] if value else []
        try:
            dims = [int(p) for p in parts]
        except ValueError:
            raise RunnerError(
                KIND_BAD_ARGUMENTS,
                f"--shape {name}: {value!r} is not a shape like 1x3x224x224",
            ) from None
        if any(d < 1 for d in dims):
            # A zero dim makes an empty tensor: the runtime does no work and the "latency"
            # would be a meaningless VALID number.
            raise RunnerError(
                KIND_BAD_ARGUMENTS, f"--shape {name}: dims must be >= 1, got {value!r}"
            )
        shapes[name] = dims
    return shapes


def parse_values(args: Sequence[str]) -> dict[str, ValueSpec]:
    """Parse ``--value NAME=16000`` (constant) and ``--value NAME=0:30522`` (range [lo, hi))."""
    values: dict[str, ValueSpec] = {}
    for text in args:
        name, value = split_assignment(text, "--value")
        low_text, sep, high_text = value.partition(":")
        try:
            low = float(low_text)
            high = float(high_text) if sep else None
        except ValueError:
            raise RunnerError(
                KIND_BAD_ARGUMENTS,
                f"--value {name}: {value!r} is neither a number nor a range lo:hi",
            ) from None
        if high is not None and not high > low:
            raise RunnerError(
                KIND_BAD_ARGUMENTS, f"--value {name}: range {value!r} is empty (needs lo < hi)"
            )
        values[name] = ValueSpec(text=value, low=low, high=high)
    return values


def by_input(specs: Sequence[TensorSpec], given: dict[str, T], what: str) -> dict[str, T]:
    """Re-key settings by each input's canonical name; refuse names the model does not have."""
    keyed: dict[str, T] = {}
    for name, item in given.items():
        match = [s for s in specs if s.known_as(name)]
        if not match:
            known = ", ".join(s.name for s in specs) or "(none)"
            raise RunnerError(
                KIND_INPUT, f"{what} names input {name!r}, but the model's inputs are: {known}"
            )
        keyed[match[0].name] = item
    return keyed


def resolve_shape(
    spec: TensorSpec, override: list[int] | None, allow_fixed_override: bool, plan: InputPlan
) -> list[int]:
    """The concrete shape of one input: ``--shape`` when given, else declared dims with 1 for
    every dynamic dim."""
    declared = spec.declared_shape
    if override is None:
        shape = [1 if is_dynamic(d) else int(d) for d in declared]  # type: ignore[arg-type]
        if any(is_dynamic(d) for d in declared):
            plan.notes.append(
                f"input {spec.name}: dynamic dims {declared} set to {shape} (use --shape to choose)"
            )
        return shape
    if declared and len(override) != len(declared):
        raise RunnerError(
            KIND_INPUT,
            f"--shape {spec.name}: rank {len(override)} does not match "
            f"the declared shape {declared} (rank {len(declared)})",
        )
    for i, (want, have) in enumerate(zip(override, declared)):
        if not is_dynamic(have) and want != have:
            if not allow_fixed_override:
                raise RunnerError(
                    KIND_INPUT,
                    f"--shape {spec.name}: dim {i} is fixed to {have} "
                    f"in the model, cannot set it to {want}",
                )
            plan.notes.append(f"input {spec.name}: fixed dim {i} resized {have} -> {want}")
    return list(override)


def numpy_dtype(spec: TensorSpec) -> np.dtype:
    """The numpy dtype of a spec, or an ``input`` error for types numpy cannot hold."""
    try:
        return np.dtype(spec.dtype)
    except TypeError:
        raise RunnerError(
            KIND_INPUT,
            f"input {spec.name} has type {spec.dtype!r}, which the "
            f"runner cannot generate; pass it with --inputs",
        ) from None


def make_tensor(
    spec: TensorSpec, shape: list[int], rng: np.random.Generator, value: ValueSpec | None
) -> np.ndarray:
    """Seeded data of the spec's dtype and ``shape``.

    Floats: standard normal. int8/uint8/int16/uint16 (and quantized tensors): the whole dtype
    range. Wider ints: [0, 100). Bool: fair coin. ``value`` overrides with a constant or a range.
    """
    dtype = numpy_dtype(spec)
    if dtype.kind in "OSU":
        raise RunnerError(
            KIND_INPUT, f"input {spec.name} is a string tensor; pass it with --inputs"
        )
    if value is not None:
        return _from_value(spec, dtype, shape, rng, value)
    if dtype.kind == "f":
        return rng.standard_normal(size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dtype.kind in "iu":
        if dtype.name in _FULL_RANGE_INTS:
            info = np.iinfo(dtype)
            return rng.integers(int(info.min), int(info.max) + 1, size=shape, dtype=dtype)
        return rng.integers(TOKEN_RANGE[0], TOKEN_RANGE[1], size=shape, dtype=dtype)
    if dtype.kind == "c":
        return (rng.standard_normal(size=shape) + 1j * rng.standard_normal(size=shape)).astype(
            dtype
        )
    raise RunnerError(KIND_INPUT, f"input {spec.name}: no generator for dtype {dtype.name}")


def _from_value(
    spec: TensorSpec, dtype: np.dtype, shape: list[int], rng: np.random.Generator, value: ValueSpec
) -> np.ndarray:
    if dtype.kind in "iub":
        low_ok = float(value.low).is_integer()
        high_ok = value.high is None or float(value.high).is_integer()
        if not (low_ok and high_ok):
            raise RunnerError(
                KIND_INPUT,
                f"--value {spec.name}={value.text}: input is "
                f"{dtype.name}, the value must be an integer",
            )
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        top = value.high - 1 if value.high is not None else value.low
        if value.low < info.min or top > info.max:
            raise RunnerError(
                KIND_INPUT,
                f"--value {spec.name}={value.text} is outside the "
                f"{dtype.name} range [{info.min}, {info.max}]",
            )
        if value.high is not None:
            return rng.integers(int(value.low), int(value.high), size=shape, dtype=dtype)
        return np.full(shape, int(value.low), dtype=dtype)
    if dtype.kind == "b":
        if value.high is not None:
            return rng.integers(int(value.low), int(value.high), size=shape).astype(np.bool_)
        return np.full(shape, bool(value.low), dtype=np.bool_)
    if value.high is not None:
        return rng.uniform(value.low, value.high, size=shape).astype(dtype)
    return np.full(shape, value.low, dtype=dtype)


def load_npz(path: str) -> dict[str, np.ndarray]:
    """All arrays of an npz file (no pickles), or an ``input`` error naming the file."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        # np.load takes any file that is not a zip/.npy for a pickle and then blames pickling.
        reason = "not an .npz file (write it with numpy.savez)" if "pickle" in str(exc) else exc
        raise RunnerError(KIND_INPUT, f"cannot read inputs file {path}: {reason}") from None


def match_npz(
    specs: Sequence[TensorSpec], arrays: dict[str, np.ndarray], path: str, strict: bool
) -> dict[str, np.ndarray]:
    """Arrays of an npz by input name.

    Keys are input names; a single-input model may take the file's only key (or its key named
    like the input). With ``strict``, a key that names no input is an error (a typo would
    otherwise silently fall back to random data).
    """
    names = [s.name for s in specs]
    matched: dict[str, np.ndarray] = {}
    unknown = []
    for key, array in arrays.items():
        spec = next((s for s in specs if s.known_as(key)), None)
        if spec is None:
            unknown.append(key)
        else:
            matched[spec.name] = array
    if len(specs) == 1 and not matched and len(arrays) == 1:
        matched = {names[0]: next(iter(arrays.values()))}
    elif strict and unknown:
        raise RunnerError(
            KIND_INPUT,
            f"{path}: key {unknown[0]!r} names no model input (inputs: {', '.join(names)})",
        )
    if not matched:
        raise RunnerError(
            KIND_INPUT,
            f"{path}: none of its keys ({', '.join(arrays) or 'none'}) "
            f"is a model input ({', '.join(names)})",
        )
    return matched


def per_tensor_quantization(spec: TensorSpec) -> tuple[float | None, int]:
    """(scale, zero point) of a per-tensor quantized tensor; (None, 0) otherwise."""
    quant = spec.quantization or {}
    scale = quant.get("scale")
    if not scale:
        return None, 0
    return float(scale), int(quant.get("zero_point", 0))


def dequantize(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    """Real values of a per-tensor quantized integer output; other arrays unchanged."""
    scale, zero_point = per_tensor_quantization(spec)
    if scale is None or array.dtype.kind not in "iu":
        return array
    return ((array.astype(np.float32) - zero_point) * scale).astype(np.float32)


def conform(spec: TensorSpec, array: np.ndarray, path: str, batched: bool) -> np.ndarray:
    """Check an array from a file against the spec (rank, fixed dims, dtype) and cast it safely.

    ``batched``: the first dim is a row count (eval files), so it is not checked.
    """
    dtype = numpy_dtype(spec)
    declared = spec.declared_shape
    if declared and array.ndim != len(declared):
        raise RunnerError(
            KIND_INPUT,
            f"{path}: {spec.name} has shape {list(array.shape)}, the model declares {declared}",
        )
    for i, (have, want) in enumerate(zip(array.shape, declared)):
        if batched and i == 0:
            continue
        if not is_dynamic(want) and have != want:
            raise RunnerError(
                KIND_INPUT,
                f"{path}: {spec.name} has shape {list(array.shape)}, "
                f"dim {i} must be {want} (model declares {declared})",
            )
    if dtype.kind == "O":  # string tensors: numpy's str arrays are what the runtimes take
        if array.dtype.kind not in "US":
            raise RunnerError(
                KIND_INPUT, f"{path}: {spec.name} is {array.dtype.name}, the model wants strings"
            )
        return array.astype(object)
    if array.dtype != dtype and array.dtype.kind == "f" and dtype.kind in "iu":
        scale, zero_point = per_tensor_quantization(spec)
        if scale is not None:
            # Real-valued data for a quantized input (e.g. an int8 model and a float eval set):
            # quantize with the tensor's own scale and zero point, as the converter's model expects.
            info = np.iinfo(dtype)
            quantized = np.round(array / scale) + zero_point
            return np.ascontiguousarray(np.clip(quantized, info.min, info.max).astype(dtype))
    if array.dtype != dtype:
        if not np.can_cast(array.dtype, dtype, casting="same_kind"):
            raise RunnerError(
                KIND_INPUT,
                f"{path}: {spec.name} is {array.dtype.name}, the model wants {dtype.name}",
            )
        array = array.astype(dtype)
    return np.ascontiguousarray(array)


def plan_inputs(
    specs: Sequence[TensorSpec],
    shapes: dict[str, list[int]],
    values: dict[str, ValueSpec],
    from_file: dict[str, np.ndarray],
    inputs_path: str | None,
    allow_fixed_override: bool,
) -> InputPlan:
    """Concrete shape and source of every input (settings already keyed by input name).

    An input from the npz file takes the file's shape; ``--shape`` may only repeat it.
    """
    plan = InputPlan()
    for spec in specs:
        if spec.name in from_file:
            shape = list(from_file[spec.name].shape)
            if spec.name in shapes and shapes[spec.name] != shape:
                raise RunnerError(
                    KIND_INPUT,
                    f"--shape {spec.name} {shapes[spec.name]} contradicts {inputs_path} ({shape})",
                )
            if spec.name in values:
                raise RunnerError(
                    KIND_INPUT, f"input {spec.name} is given by both --value and {inputs_path}"
                )
            plan.shapes[spec.name] = shape
            plan.sources[spec.name] = "npz"
        else:
            override = shapes.get(spec.name)
            plan.shapes[spec.name] = resolve_shape(spec, override, allow_fixed_override, plan)
            plan.sources[spec.name] = "value" if spec.name in values else "random"
    return plan


def make_feeds(
    specs: Sequence[TensorSpec],
    plan: InputPlan,
    values: dict[str, ValueSpec],
    from_file: dict[str, np.ndarray],
    inputs_path: str | None,
    seed: int,
) -> dict[str, np.ndarray]:
    """The input arrays of the plan: checked npz arrays, else seeded generated data (drawn in
    input order from one generator, so a seed reproduces every input)."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.name in from_file:
            feeds[spec.name] = conform(spec, from_file[spec.name], str(inputs_path), batched=False)
        else:
            feeds[spec.name] = make_tensor(spec, plan.shapes[spec.name], rng, values.get(spec.name))
    return feeds
