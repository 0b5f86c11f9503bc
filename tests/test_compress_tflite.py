"""TFLite recipes (tf extra): a Keras/SavedModel source converted five ways, run in ai_edge_litert.

One small Keras MLP (the digits architecture, trained for a few epochs) is built once per
module; every variant is a real ``.tflite`` checked for the tensor types its recipe promises
and compared with the Keras model's own outputs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from harness.compress import VariantOutcome, compress_model, read_manifest
from harness.compress.toy_models import digits_data
from harness.errors import CompressionError

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
tf = pytest.importorskip("tensorflow", reason="the TFLite recipes are the optional tf extra")
keras = pytest.importorskip("keras")

RECIPES = (
    "tflite-fp32",
    "tflite-fp16",
    "tflite-dynamic",
    "tflite-int8",
    "tflite-int8:io=float",
    "tflite-int16x8",
)

EVAL_SAMPLES = 450  # digits_data()'s eval split


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trained digits MLP saved as .keras and exported as a SavedModel, plus calib/eval npz."""
    work = tmp_path_factory.mktemp("tflite")
    data = digits_data()
    keras.utils.set_random_seed(0)
    inp = keras.Input((64,), name="input")
    hidden = keras.layers.Dense(32, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(10)(hidden))
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(data.train_x, data.train_y, epochs=8, batch_size=64, verbose=0)
    paths = {
        "keras": work / "digits.keras",
        "saved_model": work / "digits_sm",
        "calib": work / "calib.npz",
        "eval": work / "eval.npz",
    }
    model.save(paths["keras"])
    model.export(str(paths["saved_model"]), format="tf_saved_model", verbose=False)
    np.savez(paths["calib"], input=data.train_x[:200])
    np.savez(paths["eval"], input=data.eval_x, labels=data.eval_y)
    assert len(data.eval_x) == EVAL_SAMPLES
    return paths


@pytest.fixture(scope="module")
def variants(
    source: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, VariantOutcome]:
    out = tmp_path_factory.mktemp("variants")
    outcomes = compress_model(
        source["keras"], list(RECIPES), out, calib=source["calib"], eval_data=source["eval"]
    )
    return {o.recipe: o for o in outcomes}


def details(path: Path) -> tuple[Interpreter, list[dict[str, Any]]]:
    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter, interpreter.get_tensor_details()


def dtypes(path: Path) -> set[str]:
    return {np.dtype(d["dtype"]).name for d in details(path)[1]}


def io_dtypes(path: Path) -> tuple[str, str]:
    interpreter = Interpreter(model_path=str(path))
    return (
        np.dtype(interpreter.get_input_details()[0]["dtype"]).name,
        np.dtype(interpreter.get_output_details()[0]["dtype"]).name,
    )


def test_every_recipe_makes_a_tflite_that_runs(
    variants: dict[str, VariantOutcome], source: dict[str, Path]
) -> None:
    x = np.load(source["eval"])["input"][:4]
    for recipe in RECIPES:
        path, manifest = variants[recipe].unwrap()
        assert path.name == "model.tflite" and path.parent.parent.name == "digits"
        interpreter = Interpreter(model_path=str(path))
        runner = interpreter.get_signature_runner()
        inp = runner.get_input_details()["input"]
        scale, zero = inp["quantization"]
        feed = np.round(x / scale + zero).astype(inp["dtype"]) if scale else x
        (out,) = runner(input=feed).values()
        assert out.shape == (4, 10)
        stored = read_manifest(path.parent)
        assert stored == manifest
        assert manifest.tool_versions["tensorflow"] == tf.__version__
        assert "ai-edge-litert" in manifest.tool_versions
        assert manifest.size_bytes == path.stat().st_size
        assert 0 < manifest.gzip_size_bytes < manifest.size_bytes
        assert manifest.parameter_count == 64 * 32 + 32 + 32 * 10 + 10


def test_fp16_stores_float16_weights_at_about_half_the_size(
    variants: dict[str, VariantOutcome],
) -> None:
    fp32, m32 = variants["tflite-fp32"].unwrap()
    fp16, m16 = variants["tflite-fp16"].unwrap()
    assert "float16" not in dtypes(fp32)
    _, tensors = details(fp16)
    halves = [t for t in tensors if np.dtype(t["dtype"]) == np.float16]
    assert {tuple(t["shape"]) for t in halves} >= {(32, 64), (10, 32)}  # both kernels
    assert io_dtypes(fp16) == ("float32", "float32")
    assert m16.size_bytes < 0.65 * m32.size_bytes


def test_dynamic_range_has_int8_weights_and_float_io(variants: dict[str, VariantOutcome]) -> None:
    path, manifest = variants["tflite-dynamic"].unwrap()
    _, tensors = details(path)
    int8_shapes = {tuple(t["shape"]) for t in tensors if np.dtype(t["dtype"]) == np.int8}
    # the converter leaves tensors under 1024 elements (the 10x32 head) in float
    assert (32, 64) in int8_shapes
    assert "int8" not in dtypes(variants["tflite-fp32"].unwrap()[0])
    assert io_dtypes(path) == ("float32", "float32")
    assert manifest.size_bytes < 0.6 * variants["tflite-fp32"].unwrap()[1].size_bytes


def test_full_int8_has_int8_io_by_default_and_float_io_on_request(
    variants: dict[str, VariantOutcome],
) -> None:
    int8, _ = variants["tflite-int8"].unwrap()
    assert io_dtypes(int8) == ("int8", "int8")
    assert "float32" not in dtypes(int8)  # every tensor is integer
    float_io, _ = variants["tflite-int8:io=float"].unwrap()
    assert io_dtypes(float_io) == ("float32", "float32")
    assert "int8" in dtypes(float_io)


def test_int16x8_has_int16_activations_and_int8_weights(
    variants: dict[str, VariantOutcome],
) -> None:
    path, _ = variants["tflite-int16x8"].unwrap()
    _, tensors = details(path)
    int16 = [t for t in tensors if np.dtype(t["dtype"]) == np.int16]
    assert any(tuple(t["shape_signature"]) == (-1, 32) for t in int16)  # the hidden activation
    int8_shapes = {tuple(t["shape"]) for t in tensors if np.dtype(t["dtype"]) == np.int8}
    assert {(32, 64), (10, 32)} <= int8_shapes


# (max abs error on logits, min cosine, min top-1 agreement): fp32 is the same math, fp16
# rounds weights to 11 bits, the int8 schemes round to 8 bits (int16x8 activations to 16).
TOLERANCES = {
    "tflite-fp32": (1e-4, 0.999999, 1.0),
    "tflite-fp16": (2e-2, 0.9999, 0.99),
    "tflite-dynamic": (0.5, 0.995, 0.97),
    "tflite-int8": (1.0, 0.99, 0.95),
    "tflite-int8:io=float": (1.0, 0.99, 0.95),
    "tflite-int16x8": (1.0, 0.995, 0.97),
}


def test_fidelity_against_the_keras_model_is_within_tolerance(
    variants: dict[str, VariantOutcome],
) -> None:
    for recipe, (max_abs, min_cos, min_agree) in TOLERANCES.items():
        fid = variants[recipe].unwrap()[1].fidelity
        assert fid is not None and fid.input_source == "eval" and fid.samples == EVAL_SAMPLES
        assert fid.max_abs_error <= max_abs, (recipe, fid)
        assert fid.cosine_similarity >= min_cos, (recipe, fid)
        assert fid.top1_agreement is not None and fid.top1_agreement >= min_agree, (recipe, fid)
        (top1,) = [m for m in fid.metrics if m.name == "top1"]
        assert top1.baseline > 0.8  # the source really learned the digits
        assert abs(top1.drop) <= 3.0 and not fid.flagged, (recipe, fid)


def test_int8_fidelity_matches_an_independent_run(
    variants: dict[str, VariantOutcome], source: dict[str, Path]
) -> None:
    """The manifest's error is the Keras model vs ai_edge_litert, recomputed here by hand."""
    x = np.load(source["eval"])["input"]
    reference = np.asarray(keras.models.load_model(source["keras"])(x), dtype=np.float64)
    path, manifest = variants["tflite-int8"].unwrap()
    interpreter = Interpreter(model_path=str(path))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    s_in, z_in = inp["quantization"]
    q = np.clip(np.round(x / s_in + z_in), -128, 127).astype(np.int8)
    interpreter.set_tensor(inp["index"], q)
    interpreter.invoke()
    s_out, z_out = out["quantization"]
    y = (interpreter.get_tensor(out["index"]).astype(np.float64) - z_out) * s_out
    assert manifest.fidelity is not None
    assert manifest.fidelity.max_abs_error == pytest.approx(np.abs(y - reference).max(), rel=1e-6)
    agreement = float(np.mean(y.argmax(1) == reference.argmax(1)))
    assert manifest.fidelity.top1_agreement == pytest.approx(agreement)


def test_saved_model_directory_is_a_source(source: dict[str, Path], tmp_path: Path) -> None:
    fp32, dynamic = compress_model(
        source["saved_model"], ["tflite-fp32", "tflite-dynamic"], tmp_path, calib=source["calib"]
    )
    path, manifest = fp32.unwrap()
    assert path == tmp_path / "digits_sm" / "tflite-fp32" / "model.tflite"
    assert manifest.fidelity is not None and manifest.fidelity.input_source == "calib"
    assert manifest.fidelity.max_abs_error < 1e-4
    assert manifest.parameter_count == 64 * 32 + 32 + 32 * 10 + 10
    assert len(manifest.source_sha256) == 64 and manifest.source_size_bytes > 0
    assert dynamic.ok


def test_int8_without_representative_data_names_calib(
    source: dict[str, Path], tmp_path: Path
) -> None:
    int8, int16, fp16 = compress_model(
        source["keras"], ["tflite-int8", "tflite-int16x8", "tflite-fp16"], tmp_path
    )
    for outcome in (int8, int16):
        assert isinstance(outcome.error, CompressionError)
        line = outcome.error.one_line()
        assert "representative data" in line and "--calib" in line and "'input'" in line
        assert not (tmp_path / "digits" / (outcome.recipe) / "model.tflite").exists()
    assert fp16.ok and fp16.unwrap()[1].fidelity.input_source == "random"  # type: ignore[union-attr]


def test_recipes_that_do_not_fit_the_source_are_errors(
    source: dict[str, Path], tmp_path: Path
) -> None:
    onnx_recipe, chain, good = compress_model(
        source["keras"], ["fp16", "tflite-fp16>tflite-int8", "tflite-fp32"], tmp_path
    )
    assert onnx_recipe.error is not None and "works on ONNX" in onnx_recipe.error.message
    assert chain.error is not None and "do not chain" in chain.error.message
    assert good.ok
    onnx_model = Path(__file__).resolve().parent.parent / "harness" / "demo" / "digits_mlp.onnx"
    tfl, fp16 = compress_model(onnx_model, ["tflite-fp16", "fp16"], tmp_path / "onnx")
    assert tfl.error is not None and "TensorFlow" in tfl.error.message
    assert fp16.ok


def test_missing_tensorflow_names_the_extra(source: dict[str, Path], tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["tensorflow"] = None  # `import tensorflow` raises ImportError
        from pathlib import Path
        from harness.compress import compress_model
        from harness.errors import CompressionError
        try:
            compress_model(Path({str(source["keras"])!r}), ["tflite-fp32"], Path({str(tmp_path)!r}))
        except CompressionError as exc:
            print("ERROR", exc.one_line())
        onnx = Path("harness/demo/digits_mlp.onnx")
        (fp16,) = compress_model(onnx, ["fp16"], Path({str(tmp_path / "onnx")!r}))
        print("FP16", fp16.ok)
        """
    )
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "ERROR" in proc.stdout and "pip install 'harness[tf]'" in proc.stdout
    assert "FP16 True" in proc.stdout
