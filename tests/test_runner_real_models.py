"""The runner on real models nobody here made: the ONNX backend test models shipped in the `onnx`
wheel, the fixture models of tests/fixtures/models, and (optional package) the Silero VAD model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import onnx
import pytest

from tests.fixtures.runner.invoke import FIXTURE_MODELS, run_runner

ONNX_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"


def test_embedding_needs_its_index_range() -> None:
    # pytorch-converted Embedding: int64 ids [1, 4] into a 4-row table. The default token range
    # [0, 100) overruns the table and the runtime's own bounds check names the failing node.
    model = ONNX_DATA / "pytorch-converted" / "test_Embedding" / "model.onnx"
    failed = run_runner("--model", model)
    assert failed.returncode == 2 and failed.doc.error is not None
    assert (failed.doc.error.kind, failed.doc.error.op) == ("inference", "Gather")
    assert failed.doc.inputs[0].dtype == "int64"  # the inputs stay described on failure
    run = run_runner("--model", model, "--value", "0=0:4")
    assert run.returncode == 0 and run.doc.inputs[0].source == "value"
    assert run.doc.outputs[0].shape == [1, 4, 3]


def test_op_without_a_kernel_for_its_type_is_unsupported_op() -> None:
    # pytorch-operator non_float_params: Add(opset 6) on int64, which ORT's CPU EP lacks.
    model = ONNX_DATA / "pytorch-operator" / "test_operator_non_float_params" / "model.onnx"
    error = run_runner("--model", model).doc.error
    assert error is not None and (error.kind, error.op) == ("unsupported_op", "Add")


def test_named_dynamic_dim_with_shape_and_value() -> None:
    # simple/sequence_model8: X float ['n'] split into a sequence by Splits int64 [3].
    model = ONNX_DATA / "simple" / "test_sequence_model8" / "model.onnx"
    doc = run_runner("--model", model, "--shape", "X=6", "--value", "Splits=2").doc
    assert doc.status == "ok", doc.error
    by_name = {t.name: t for t in doc.inputs}
    assert by_name["X"].declared_shape == ["n"] and by_name["X"].shape == [6]
    assert by_name["Splits"].source == "value"


@pytest.mark.slow
def test_squeezenet_end_to_end() -> None:
    model = ONNX_DATA / "light" / "light_squeezenet.onnx"
    doc = run_runner(
        "--model",
        model,
        "--threads",
        "2",
        "--min-runs",
        "3",
        "--warmup-runs",
        "1",
        "--min-duration-s",
        "0",
        quick=False,
    ).doc
    assert doc.status == "ok"
    assert doc.inputs[0].shape == [1, 3, 224, 224]
    assert doc.outputs[0].shape == [1, 1000, 1, 1]
    assert doc.execution.total_nodes and doc.execution.total_nodes > 20
    assert doc.timing is not None and min(doc.timing.latencies_ns) > 1_000_000  # > 1 ms


def test_fixture_two_input_model_with_token_range() -> None:
    model = FIXTURE_MODELS / "two_inputs_int.onnx"
    # token ids valid in [0, 50): the default [0, 100) fails at run time, a range fixes it.
    assert run_runner("--model", model).doc.error is not None
    doc = run_runner(
        "--model",
        model,
        "--shape",
        "token_ids=2x16",
        "--shape",
        "features=2x8",
        "--value",
        "token_ids=0:50",
    ).doc
    assert doc.status == "ok", doc.error
    assert {t.name: t.shape for t in doc.inputs} == {"features": [2, 8], "token_ids": [2, 16]}
    assert doc.outputs[0].shape == [2, 8]


def test_fixture_custom_and_corrupt_onnx() -> None:
    custom = run_runner("--model", FIXTURE_MODELS / "custom_op.onnx").doc.error
    assert custom is not None and (custom.kind, custom.op) == ("unsupported_op", "MyCustomOp")
    corrupt = run_runner("--model", FIXTURE_MODELS / "corrupt.onnx").doc.error
    assert corrupt is not None and corrupt.kind == "model_load"


def _silero_model() -> Path:
    # Optional package: `pip install --no-deps silero-vad` ships the ONNX model as package data
    # (its torch dependency is not needed for the model file, and the package is not imported).
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or spec.origin is None:
        pytest.skip("optional package silero-vad is not installed")
    return Path(spec.origin).parent / "data" / "silero_vad.onnx"


def test_silero_vad_with_sample_rate_scalar() -> None:
    model = _silero_model()
    doc = run_runner("--model", model, "--value", "sr=16000", "--shape", "input=1x512").doc
    assert doc.status == "ok", doc.error
    by_name = {t.name: t for t in doc.inputs}
    assert by_name["sr"].shape == [] and by_name["sr"].dtype == "int64"
    assert by_name["sr"].source == "value"
    assert by_name["input"].declared_shape == [None, None] and by_name["input"].shape == [1, 512]
    assert by_name["state"].shape == [2, 1, 128]
    assert {t.name for t in doc.outputs} == {"output", "stateN"}
    # Without a window of samples the model's STFT padding fails, inside an If subgraph.
    error = run_runner("--model", model, "--value", "sr=16000").doc.error
    assert error is not None and (error.kind, error.op) == ("inference", "Pad")
