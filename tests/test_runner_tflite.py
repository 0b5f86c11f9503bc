"""The on-device runner on TFLite (ai_edge_litert): XNNPACK on/off and what it took, quantized and
dynamic inputs, signature names, evaluation parity with ONNX, and precisely named errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.runner import models
from tests.fixtures.runner.invoke import DEMO, FIXTURE_MODELS, run_runner


def test_demo_mlp_with_xnnpack_delegates_every_node() -> None:
    run = run_runner("--model", DEMO / "digits_mlp.tflite", "--threads", "1")
    doc = run.doc
    assert run.returncode == 0, run.stderr
    assert doc.runtime is not None and doc.runtime.name == "ai_edge_litert"
    assert doc.model.format == "tflite"
    execution = doc.execution
    assert execution.providers_requested == ["XNNPACK", "CPU"]
    assert execution.delegated_partitions == 1
    assert execution.total_nodes and execution.delegated_nodes == execution.total_nodes
    assert execution.providers_used == ["XNNPACK"]
    assert execution.fallback_to_cpu is False
    (x,) = doc.inputs
    # The signature name is the input's name; the tensor's own name is kept alongside.
    assert (x.name, x.dtype, x.shape, x.declared_shape) == ("input", "float32", [1, 64], [-1, 64])
    assert x.model_extra == {"tensor_name": "serving_default_input:0"}
    assert doc.outputs[0].name == "logits" and doc.outputs[0].shape == [1, 10]
    assert doc.timing is not None
    # a ~1 µs model: every sample is a positive integer number of ns
    assert all(isinstance(v, int) and v > 0 for v in doc.timing.latencies_ns)


def test_provider_none_switches_xnnpack_off() -> None:
    execution = run_runner(
        "--model", DEMO / "digits_mlp.tflite", "--provider", "none"
    ).doc.execution
    assert execution.providers_requested == ["CPU"]
    assert execution.delegated_partitions == 0 and execution.delegated_nodes == 0
    assert execution.providers_used == ["CPU"]
    assert execution.nodes_by_provider == {"CPU": execution.total_nodes}
    assert execution.fallback_to_cpu is False  # nothing was asked of XNNPACK


def test_partial_delegation_is_counted(tmp_path: Path) -> None:
    # SIGN has no XNNPACK kernel: ADD | SIGN | ADD becomes two delegate partitions around it.
    model = models.tflite_chain(tmp_path / "mixed.tflite", ["ADD", "SIGN", "ADD"])
    execution = run_runner("--model", model).doc.execution
    assert execution.delegated_partitions == 2
    assert (execution.delegated_nodes, execution.total_nodes) == (2, 3)
    assert execution.nodes_by_provider == {"XNNPACK": 2, "CPU": 1}
    assert execution.providers_used == ["XNNPACK", "CPU"]


def test_xnnpack_taking_nothing_is_a_fallback(tmp_path: Path) -> None:
    model = models.tflite_chain(tmp_path / "int32.tflite", ["ADD"], dtype="int32")
    doc = run_runner("--model", model).doc
    assert doc.status == "ok"
    assert doc.execution.delegated_nodes == 0 and doc.execution.fallback_to_cpu is True
    assert doc.inputs[0].dtype == "int32"


@pytest.mark.parametrize(
    ("name", "dtype", "scale", "zero_point"),
    [
        ("int8_quant.tflite", "int8", 0.00783258, -1),
        ("uint8_quant.tflite", "uint8", 0.00783258, 127),
    ],
)
def test_quantized_inputs_record_their_parameters(
    name: str, dtype: str, scale: float, zero_point: int
) -> None:
    doc = run_runner("--model", FIXTURE_MODELS / name).doc
    assert doc.status == "ok"
    (x,) = doc.inputs
    assert x.dtype == dtype and x.quantization is not None
    assert x.quantization["scale"] == pytest.approx(scale, rel=1e-5)
    assert x.quantization["zero_point"] == zero_point
    assert doc.outputs[0].quantization is not None


def test_dynamic_batch_is_resized_before_allocation() -> None:
    model = FIXTURE_MODELS / "dynamic_batch.tflite"
    for name in ("input", "serving_default_input:0"):  # signature or tensor name
        doc = run_runner("--model", model, "--shape", f"{name}=5x8").doc
        assert doc.status == "ok", doc.error
        assert doc.inputs[0].shape == [5, 8] and doc.inputs[0].declared_shape == [-1, 8]
        assert doc.outputs[0].shape == [5, 4]
    default = run_runner("--model", model).doc
    assert default.inputs[0].shape == [1, 8]


def test_fixed_dim_resize_is_allowed_and_noted(tmp_path: Path) -> None:
    model = models.tflite_chain(tmp_path / "fixed.tflite", ["ADD"])
    doc = run_runner("--model", model, "--shape", "x=3x4").doc
    assert doc.status == "ok" and doc.outputs[0].shape == [3, 4]
    assert any("fixed dim 0 resized 1 -> 3" in note for note in doc.execution.notes)


def test_eval_outputs_match_onnx_and_labels(tmp_path: Path) -> None:
    eval_in = DEMO / "digits_eval.npz"
    outs = {}
    for fmt in ("onnx", "tflite"):
        out = tmp_path / f"{fmt}.npz"
        doc = run_runner(
            "--model",
            DEMO / f"digits_mlp.{fmt}",
            "--eval-inputs",
            eval_in,
            "--eval-output",
            out,
            "--eval-batch",
            "50",
        ).doc
        assert doc.status == "ok", doc.error
        with np.load(eval_in) as data:
            rows = len(data["labels"])
        assert doc.eval_output is not None and doc.eval_output.rows == rows
        with np.load(out) as data:
            outs[fmt] = data["logits"]
    assert outs["onnx"].shape == outs["tflite"].shape
    np.testing.assert_allclose(outs["tflite"], outs["onnx"], atol=1e-3)
    with np.load(eval_in) as data:
        accuracy = float((outs["tflite"].argmax(axis=1) == data["labels"]).mean())
    assert accuracy > 0.9


def test_custom_op_fails_at_allocation_naming_the_op(tmp_path: Path) -> None:
    run = run_runner("--model", FIXTURE_MODELS / "custom_op.tflite")
    assert run.returncode == 2 and run.doc.error is not None
    assert (run.doc.error.kind, run.doc.error.op) == ("unsupported_op", "Erfinv")
    own = models.tflite_chain(tmp_path / "c.tflite", ["ADD", "custom:Mystery_Op2"])
    error = run_runner("--model", own).doc.error
    assert error is not None and (error.kind, error.op) == ("unsupported_op", "Mystery_Op2")


def test_corrupt_tflite_is_model_load() -> None:
    run = run_runner("--model", FIXTURE_MODELS / "corrupt.tflite")
    assert run.returncode == 2 and run.doc.error is not None
    assert run.doc.error.kind == "model_load" and "Flatbuffer" in run.doc.error.message


@pytest.mark.parametrize(
    ("runtime", "package"), [("tflite_runtime", "tflite-runtime"), ("tensorflow", "tensorflow")]
)
def test_missing_runtime_names_the_package(runtime: str, package: str, tmp_path: Path) -> None:
    env = None
    if importlib.util.find_spec(runtime) is not None:
        # Installed here (CI tests the tf extra): make it absent exactly as Python reports an
        # absent module, from a package that shadows it on PYTHONPATH.
        shadow = tmp_path / "shadow" / runtime
        shadow.mkdir(parents=True)
        (shadow / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{runtime}'\", name='{runtime}')\n"
        )
        env = {"PYTHONPATH": str(tmp_path / "shadow")}
    run = run_runner("--model", DEMO / "digits_mlp.tflite", "--runtime", runtime, env=env)
    assert run.returncode == 2 and run.doc.error is not None
    assert run.doc.error.kind == "runtime_missing"
    assert f"pip install {package}" in run.doc.error.message


def test_broken_runtime_install_is_runtime_missing(tmp_path: Path) -> None:
    # A runtime whose import fails inside itself (e.g. a wheel for the wrong ABI).
    shadow = tmp_path / "shadow" / "tflite_runtime"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('libtensorflowlite_c.so: bad ELF')\n")
    run = run_runner(
        "--model",
        DEMO / "digits_mlp.tflite",
        "--runtime",
        "tflite_runtime",
        env={"PYTHONPATH": str(tmp_path / "shadow")},
    )
    assert run.doc.error is not None and run.doc.error.kind == "runtime_missing"
    assert (
        "bad ELF" in run.doc.error.message and "pip install tflite-runtime" in run.doc.error.message
    )


def test_ort_provider_on_tflite_is_a_bad_argument() -> None:
    run = run_runner("--model", DEMO / "digits_mlp.tflite", "--provider", "CUDAExecutionProvider")
    assert run.returncode == 3 and run.doc.error is not None
    assert run.doc.error.kind == "bad_arguments"
