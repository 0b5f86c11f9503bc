"""Float data for a full-integer model: the runner quantizes eval inputs with the tensor's own
scale/zero point and saves dequantized outputs, so accuracy on the host compares real values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from tests.fixtures.runner.invoke import FIXTURE_MODELS, run_runner

MODEL = FIXTURE_MODELS / "int8_quant.tflite"


def _reference(rows: np.ndarray) -> np.ndarray:
    """The same model run directly, quantizing and dequantizing by hand."""
    it = Interpreter(model_path=str(MODEL))
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    (in_scale, in_zero), (out_scale, out_zero) = inp["quantization"], out["quantization"]
    results = []
    for row in rows:
        q = np.clip(np.round(row / in_scale) + in_zero, -128, 127).astype(np.int8)
        it.set_tensor(inp["index"], q[np.newaxis])
        it.invoke()
        raw = it.get_tensor(out["index"])[0].astype(np.float32)
        results.append((raw - out_zero) * out_scale)
    return np.stack(results)


def test_float_eval_rows_are_quantized_and_outputs_dequantized(tmp_path: Path) -> None:
    rows = np.random.default_rng(3).uniform(-0.9, 0.9, size=(7, 8)).astype(np.float32)
    eval_in = tmp_path / "eval.npz"
    np.savez(eval_in, input=rows, labels=np.zeros(7, dtype=np.int64))
    eval_out = tmp_path / "out.npz"
    run = run_runner("--model", MODEL, "--eval-inputs", eval_in, "--eval-output", eval_out)
    assert run.returncode == 0, run.stderr
    assert run.doc.eval_output is not None and run.doc.eval_output.rows == 7
    with np.load(eval_out) as saved:
        [name] = saved.files
        outputs = saved[name]
    assert outputs.dtype == np.float32
    np.testing.assert_allclose(outputs.reshape(7, -1), _reference(rows).reshape(7, -1), atol=1e-6)
