"""The bundled demo models and the fixture models run, agree and fail as documented.

Everything here uses the real runtimes (onnxruntime, ai_edge_litert) on the real files; nothing
needs TensorFlow. The files are made by scripts/make_demo_models.py and make_test_models.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter

from harness.demo import (
    demo_model_paths,
    digits_calib_path,
    digits_eval_path,
    load_digits_calib,
    load_digits_eval,
    top1_accuracy,
)
from harness.errors import ModelError

FIXTURES = Path(__file__).parent / "fixtures" / "models"
MOBILENET_SIZE = 128


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _tflite_run(path: Path, inputs: np.ndarray) -> np.ndarray:
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    detail = interpreter.get_input_details()[0]
    if tuple(detail["shape"]) != inputs.shape:
        interpreter.resize_tensor_input(detail["index"], list(inputs.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], inputs)
    interpreter.invoke()
    return np.array(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


# --- the demo API ---------------------------------------------------------------------------


def test_demo_model_paths_lists_four_existing_models_under_two_megabytes() -> None:
    paths = demo_model_paths()
    assert sorted(paths) == [
        "digits_mlp.onnx",
        "digits_mlp.tflite",
        "mobilenet_tiny.onnx",
        "mobilenet_tiny.tflite",
    ]
    for name, path in paths.items():
        assert path.name == name
        assert 0 < path.stat().st_size < 2 * 1024 * 1024


def test_missing_demo_file_is_a_model_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("harness.demo.demo_dir", lambda: tmp_path)
    with pytest.raises(ModelError, match=r"digits_eval\.npz"):
        digits_eval_path()
    with pytest.raises(ModelError, match="is missing"):
        demo_model_paths()


def test_digits_data_files_have_documented_shapes() -> None:
    inputs, labels = load_digits_eval()
    assert inputs.shape == (360, 64) and inputs.dtype == np.float32
    assert labels.shape == (360,) and labels.dtype == np.int64
    assert inputs.min() >= 0.0 and inputs.max() <= 1.0
    assert sorted(set(labels.tolist())) == list(range(10))
    calib = load_digits_calib()
    assert calib.shape == (200, 64) and calib.dtype == np.float32
    assert calib.min() >= 0.0 and calib.max() <= 1.0
    assert digits_calib_path().name == "digits_calib.npz"


def test_top1_accuracy_counts_argmax_hits() -> None:
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], np.float32)
    assert top1_accuracy(logits, np.array([1, 0, 0, 1])) == pytest.approx(0.5)
    assert top1_accuracy(logits, np.array([1, 0, 1, 0])) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("logits", "labels"),
    [
        (np.zeros((3, 10)), np.zeros(4, np.int64)),  # row count mismatch
        (np.zeros(10), np.zeros(10, np.int64)),  # logits not 2-D
        (np.zeros((0, 10)), np.zeros(0, np.int64)),  # empty
        (np.zeros((2, 10)), np.array([0.0, 1.0])),  # float labels
    ],
)
def test_top1_accuracy_rejects_bad_shapes(logits: np.ndarray, labels: np.ndarray) -> None:
    with pytest.raises(ModelError):
        top1_accuracy(logits, labels)


# --- the demo models ------------------------------------------------------------------------


def test_digits_onnx_and_tflite_agree_and_reach_95_percent() -> None:
    paths = demo_model_paths()
    inputs, labels = load_digits_eval()
    session = _session(paths["digits_mlp.onnx"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    assert session.get_inputs()[0].shape == ["batch", 64]
    onnx_logits = session.run(["logits"], {"input": inputs})[0]
    tflite_logits = _tflite_run(paths["digits_mlp.tflite"], inputs)
    assert onnx_logits.shape == tflite_logits.shape == (360, 10)
    assert np.max(np.abs(onnx_logits - tflite_logits)) < 1e-4
    assert top1_accuracy(onnx_logits, labels) >= 0.95
    assert top1_accuracy(tflite_logits, labels) >= 0.95


def test_digits_tflite_has_dynamic_batch_and_named_signature() -> None:
    interpreter = Interpreter(model_path=str(demo_model_paths()["digits_mlp.tflite"]))
    detail = interpreter.get_input_details()[0]
    assert detail["shape_signature"].tolist() == [-1, 64]
    assert interpreter.get_signature_list() == {
        "serving_default": {"inputs": ["input"], "outputs": ["logits"]}
    }


def test_mobilenet_onnx_nchw_and_tflite_nhwc_agree() -> None:
    paths = demo_model_paths()
    nhwc = np.random.default_rng(42).uniform(-1, 1, (1, MOBILENET_SIZE, MOBILENET_SIZE, 3))
    nhwc = nhwc.astype(np.float32)
    session = _session(paths["mobilenet_tiny.onnx"])
    assert session.get_inputs()[0].shape == ["batch", 3, MOBILENET_SIZE, MOBILENET_SIZE]
    onnx_logits = session.run(["logits"], {"input": nhwc.transpose(0, 3, 1, 2).copy()})[0]
    tflite_logits = _tflite_run(paths["mobilenet_tiny.tflite"], nhwc)
    assert onnx_logits.shape == tflite_logits.shape == (1, 10)
    assert np.all(np.isfinite(onnx_logits))
    assert np.max(np.abs(onnx_logits - tflite_logits)) < 1e-3


def test_mobilenet_onnx_runs_a_dynamic_batch() -> None:
    session = _session(demo_model_paths()["mobilenet_tiny.onnx"])
    batch = np.random.default_rng(1).uniform(-1, 1, (2, 3, MOBILENET_SIZE, MOBILENET_SIZE))
    logits = session.run(["logits"], {"input": batch.astype(np.float32)})[0]
    single = session.run(["logits"], {"input": batch[1:].astype(np.float32)})[0]
    assert logits.shape == (2, 10)
    np.testing.assert_allclose(logits[1:], single, atol=1e-5)


# --- the fixture models ---------------------------------------------------------------------


def test_fixture_models_are_small() -> None:
    names = sorted(p.name for p in FIXTURES.iterdir() if p.suffix in {".onnx", ".tflite"})
    assert names == [
        "corrupt.onnx",
        "corrupt.tflite",
        "custom_op.onnx",
        "custom_op.tflite",
        "dynamic_batch.tflite",
        "int8_quant.tflite",
        "two_inputs_int.onnx",
        "uint8_quant.tflite",
    ]
    for name in names:
        assert (FIXTURES / name).stat().st_size < 100_000, name


def test_custom_op_tflite_fails_at_allocate_naming_the_op() -> None:
    interpreter = Interpreter(model_path=str(FIXTURES / "custom_op.tflite"))
    with pytest.raises(RuntimeError, match="unresolved custom op: Erfinv"):
        interpreter.allocate_tensors()


def test_custom_op_onnx_fails_at_session_naming_the_op() -> None:
    with pytest.raises(Exception, match=r"com\.example:MyCustomOp"):
        _session(FIXTURES / "custom_op.onnx")


@pytest.mark.parametrize("io_type", ["int8", "uint8"])
def test_quantized_tflite_has_integer_io_and_runs(io_type: str) -> None:
    interpreter = Interpreter(model_path=str(FIXTURES / f"{io_type}_quant.tflite"))
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]
    assert np.dtype(detail["dtype"]) == np.dtype(io_type)
    assert np.dtype(output["dtype"]) == np.dtype(io_type)
    scale, zero_point = detail["quantization"]
    assert scale > 0
    # Quantize a float input with the model's own parameters, as a runner would.
    real = np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8)
    info = np.iinfo(io_type)
    quantized = np.clip(np.round(real / scale + zero_point), info.min, info.max).astype(io_type)
    interpreter.set_tensor(detail["index"], quantized)
    interpreter.invoke()
    assert interpreter.get_tensor(output["index"]).shape == (1, 4)


def test_int8_and_float_fixtures_compute_the_same_function() -> None:
    """The int8 model is the dynamic-batch dense model quantized: outputs agree within ~1 step."""
    real = np.random.default_rng(0).uniform(-1, 1, (1, 8)).astype(np.float32)
    reference = _tflite_run(FIXTURES / "dynamic_batch.tflite", real)
    interpreter = Interpreter(model_path=str(FIXTURES / "int8_quant.tflite"))
    interpreter.allocate_tensors()
    detail, output = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    in_scale, in_zero = detail["quantization"]
    out_scale, out_zero = output["quantization"]
    quantized = np.clip(np.round(real / in_scale + in_zero), -128, 127).astype(np.int8)
    interpreter.set_tensor(detail["index"], quantized)
    interpreter.invoke()
    dequantized = (
        interpreter.get_tensor(output["index"]).astype(np.float32) - out_zero
    ) * out_scale
    assert np.max(np.abs(dequantized - reference)) < 4 * out_scale


def test_dynamic_batch_tflite_has_minus_one_and_resizes() -> None:
    interpreter = Interpreter(model_path=str(FIXTURES / "dynamic_batch.tflite"))
    assert interpreter.get_input_details()[0]["shape_signature"].tolist() == [-1, 8]
    out = _tflite_run(FIXTURES / "dynamic_batch.tflite", np.ones((5, 8), np.float32))
    assert out.shape == (5, 4)
    np.testing.assert_allclose(out, np.repeat(out[:1], 5, axis=0), atol=1e-6)


def test_two_inputs_int_onnx_accepts_ids_0_to_49_and_rejects_50() -> None:
    session = _session(FIXTURES / "two_inputs_int.onnx")
    specs = {i.name: (i.type, i.shape) for i in session.get_inputs()}
    assert specs == {
        "features": ("tensor(float)", ["batch", 8]),
        "token_ids": ("tensor(int64)", ["batch", "seq"]),
    }
    features = np.zeros((2, 8), np.float32)
    ids = np.array([[0, 49, 3], [7, 7, 7]], np.int64)
    out = session.run(["output"], {"features": features, "token_ids": ids})[0]
    assert out.shape == (2, 8)
    with pytest.raises(Exception, match="out of data bounds"):
        session.run(["output"], {"features": features, "token_ids": ids + 1})


def test_corrupt_onnx_fails_to_load() -> None:
    with pytest.raises(Exception, match=r"(?i)protobuf parsing failed"):
        _session(FIXTURES / "corrupt.onnx")
    with pytest.raises(Exception, match=r"onnx\.ModelProto"):
        onnx.load(str(FIXTURES / "corrupt.onnx"))


def test_corrupt_tflite_fails_to_load() -> None:
    with pytest.raises(ValueError, match="not a valid Flatbuffer"):
        Interpreter(model_path=str(FIXTURES / "corrupt.tflite"))
