"""Input data for calibration and evaluation: ``.npz`` files checked against a model's inputs.

An npz holds one array per model input, keyed by the input's name, samples along axis 0; an
optional ``labels`` array holds the ground truth. Names, dtypes and static dimensions are
checked here, once, so a mismatch is a one-line error naming the input instead of an
onnxruntime traceback halfway through calibration.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from onnxruntime.quantization import CalibrationDataReader

from harness.errors import CompressionError

LABEL_KEYS = ("labels", "label", "y")
Feeds = dict[str, NDArray[np.generic]]


@dataclass(frozen=True)
class ModelInput:
    """A graph input: name, shape (``None`` for symbolic dims) and numpy dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype[np.generic]

    @property
    def batch_dim(self) -> int | None:
        """The static batch size, or ``None`` when the batch dimension is symbolic."""
        return self.shape[0] if self.shape else None


def model_inputs(model: onnx.ModelProto) -> list[ModelInput]:
    """The real inputs of ``model`` (initializers listed as inputs are excluded)."""
    init_names = {t.name for t in model.graph.initializer}
    out = []
    for vi in model.graph.input:
        if vi.name in init_names:
            continue
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        out.append(ModelInput(vi.name, dims, dtype))
    return out


def load_feeds(path: Path, inputs: list[ModelInput], *, what: str) -> Feeds:
    """Load ``path`` and check it holds every input with the right dtype and static dims.

    ``what`` names the use ("calibration data for recipe 'int8-static'") in errors.
    """
    if not path.is_file():
        raise CompressionError(f"{what}: {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise CompressionError(f"{what}: {path} is not a readable .npz file ({exc})") from exc
    feeds: Feeds = {}
    for inp in inputs:
        if inp.name not in arrays:
            raise CompressionError(
                f"{what}: {path.name} has no array for model input {inp.name!r} "
                f"(it has: {', '.join(sorted(arrays)) or 'nothing'})",
                hint=f"save it with np.savez(path, **{{{inp.name!r}: array}})",
            )
        arr = arrays[inp.name]
        if arr.dtype != inp.dtype:
            raise CompressionError(
                f"{what}: input {inp.name!r} in {path.name} is {arr.dtype}, the model wants {inp.dtype}",
                hint=f"convert it with array.astype(np.{inp.dtype.name})",
            )
        if arr.ndim != len(inp.shape) or any(
            want is not None and got != want
            for i, (got, want) in enumerate(zip(arr.shape, inp.shape, strict=True))
            if i > 0
        ):
            shown = ["?" if d is None else str(d) for d in inp.shape]
            raise CompressionError(
                f"{what}: input {inp.name!r} in {path.name} has shape {list(arr.shape)}, "
                f"the model wants [{', '.join(shown)}] (samples along axis 0)",
            )
        feeds[inp.name] = arr
    counts = {len(a) for a in feeds.values()}
    if len(counts) > 1:
        raise CompressionError(
            f"{what}: inputs in {path.name} have different sample counts {counts}"
        )
    if counts == {0}:
        raise CompressionError(f"{what}: {path.name} holds no samples")
    return feeds


def load_labels(path: Path) -> NDArray[np.generic] | None:
    """The ``labels`` (or ``label``/``y``) array of an npz, if it has one."""
    with np.load(path, allow_pickle=False) as npz:
        for key in LABEL_KEYS:
            if key in npz.files:
                return np.asarray(npz[key])
    return None


def random_feeds(inputs: list[ModelInput], samples: int, seed: int = 0) -> Feeds:
    """Seeded random inputs: uniform [0, 1) floats, small non-negative ints; symbolic dims = 1."""
    rng = np.random.default_rng(seed)
    feeds: Feeds = {}
    for inp in inputs:
        shape = (samples, *[d if d else 1 for d in inp.shape[1:]])
        if np.issubdtype(inp.dtype, np.floating):
            feeds[inp.name] = rng.random(shape).astype(inp.dtype)
        elif inp.dtype == np.bool_:
            feeds[inp.name] = rng.random(shape) < 0.5
        else:
            feeds[inp.name] = rng.integers(0, 8, shape).astype(inp.dtype)
    return feeds


def take(feeds: Feeds, count: int) -> Feeds:
    """The first ``count`` samples of every input."""
    return {k: v[:count] for k, v in feeds.items()}


def batches(feeds: Feeds, inputs: list[ModelInput], max_batch: int = 256) -> Iterator[Feeds]:
    """Split ``feeds`` into batches the model accepts (its static batch size, if it has one)."""
    static = {i.batch_dim for i in inputs}
    fixed = next(iter(static)) if len(static) == 1 else None
    size = fixed or max_batch
    total = len(next(iter(feeds.values())))
    # a static batch size cannot take a short last batch, so the remainder is left out
    stop = total - size + 1 if fixed else total
    for start in range(0, max(stop, 0), size):
        yield {k: v[start : start + size] for k, v in feeds.items()}


class NpzCalibrationReader(CalibrationDataReader):
    """Feeds validated arrays to onnxruntime's calibrators, one batch at a time."""

    def __init__(self, feeds: Feeds, inputs: list[ModelInput], batch: int = 32) -> None:
        self._batches = list(batches(feeds, inputs, max_batch=batch))
        self._it = iter(self._batches)

    def get_next(self) -> Feeds | None:
        """The next batch, or ``None`` when calibration data is exhausted."""
        return next(self._it, None)

    def rewind(self) -> None:
        """Start over (some calibrators read the data twice)."""
        self._it = iter(self._batches)
