"""Evaluation pass: run every row of an eval set through the model and save the outputs.

Runs on the device: standard library + numpy. Rows are batched as the model allows: a fixed
batch dim B runs chunks of B (the last one zero-padded, the padding's outputs dropped); a dynamic
batch dim runs chunks of ``batch`` rows; an input declared without a batch dim runs row by row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from runner_backends import Backend
from runner_errors import KIND_INPUT, RunnerError, classify_inference_error
from runner_inputs import TensorSpec, conform, dequantize, is_dynamic


def run_eval(
    backend: Backend,
    specs: Sequence[TensorSpec],
    arrays: dict[str, np.ndarray],
    base_feeds: dict[str, np.ndarray],
    base_shapes: dict[str, list[int]],
    batch: int,
    path: str,
    out_path: str,
) -> int:
    """Run all rows of ``arrays`` (by input name), write outputs keyed by output name to
    ``out_path``; return the row count. Inputs absent from ``arrays`` keep their timing data."""
    by_name = {s.name: s for s in specs}
    rows_of = {name: int(a.shape[0]) for name, a in arrays.items() if a.ndim > 0}
    if len(rows_of) != len(arrays) or len(set(rows_of.values())) != 1:
        shapes = {k: list(a.shape) for k, a in arrays.items()}
        raise RunnerError(
            KIND_INPUT, f"{path}: eval arrays need one common first dim (rows), got {shapes}"
        )
    rows = next(iter(rows_of.values()))
    batched: dict[str, np.ndarray] = {}
    unbatched: dict[str, np.ndarray] = {}
    for name, array in arrays.items():
        spec = by_name[name]
        if spec.declared_shape and array.ndim == len(spec.declared_shape) + 1:
            conform(spec, array[0], path, batched=False)  # checks one row against the spec
            unbatched[name] = array
        else:
            batched[name] = conform(spec, array, path, batched=True)
    chunk = 1 if unbatched else _chunk_size(batched, by_name, batch)
    fixed = any(
        not is_dynamic(by_name[n].declared_shape[0]) for n in batched if by_name[n].declared_shape
    )
    output_specs = list(backend.output_specs())
    output_names = [s.name for s in output_specs]
    collected: list[list[np.ndarray]] = [[] for _ in output_names]
    prepared = dict(base_shapes)
    for start in range(0, rows, chunk):
        count = min(chunk, rows - start)
        feeds = dict(base_feeds)
        for name, array in batched.items():
            part = array[start : start + count]
            if fixed and count < chunk:
                pad = np.zeros((chunk - count, *part.shape[1:]), dtype=part.dtype)
                part = np.concatenate([part, pad])
            feeds[name] = np.ascontiguousarray(part)
        for name, array in unbatched.items():
            feeds[name] = np.ascontiguousarray(array[start].astype(by_name[name].dtype))
        shapes = {name: list(value.shape) for name, value in feeds.items()}
        if shapes != prepared:
            backend.prepare(shapes)  # TFLite resizes + reallocates; ORT needs nothing
            prepared = shapes
        try:
            backend.bind(feeds)
            backend.invoke()
            results = backend.outputs()
        except RunnerError:
            raise
        except Exception as exc:
            raise classify_inference_error(exc) from None
        used = len(feeds[next(iter(batched))]) if batched else 1
        for sink, out in zip(collected, results):
            if batched and out.ndim > 0 and out.shape[0] == used:
                sink.append(out[:count])
            else:
                sink.append(out[np.newaxis])  # one result per row/chunk
    # Quantized outputs are saved as real values, so host-side metrics compare like with like.
    merged = {
        spec.name: dequantize(spec, np.concatenate(parts))
        for spec, parts in zip(output_specs, collected)
    }
    with open(out_path, "wb") as handle:
        np.savez(handle, **merged)  # type: ignore[arg-type]  # numpy's stub mistypes **kwds
    return rows


def _chunk_size(batched: dict[str, np.ndarray], by_name: dict[str, TensorSpec], batch: int) -> int:
    firsts = [by_name[n].declared_shape[0] for n in batched if by_name[n].declared_shape]
    fixed = {d for d in firsts if isinstance(d, int) and d >= 0}
    if len(fixed) > 1:
        raise RunnerError(KIND_INPUT, f"eval inputs declare different fixed batch sizes {fixed}")
    if fixed:
        return max(1, fixed.pop())
    return max(1, batch)
