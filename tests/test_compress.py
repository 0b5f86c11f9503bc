"""Each recipe's output checked numerically on small real models run by onnxruntime.

Tolerances stated per recipe (against the fp32 baseline on held-out digits or seeded inputs):
fp16 max |err| <= 1 % of the largest logit; int8/int4 top-1 agreement >= 0.95 and accuracy
within 2 points; unstructured prune 30 % agreement >= 0.95; structured prune of dead channels
is exact (1e-5); low-rank error equals the discarded energy; clustering <= k values per layer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from numpy.typing import NDArray
from onnx import numpy_helper

from harness.compress import graph
from harness.compress.context import StepContext
from harness.compress.lowrank import factorise
from harness.compress.pipeline import STEPS
from harness.compress.prune import prune_structured, sensitivity
from harness.compress.recipes import parse_recipe
from harness.compress.toy_models import DigitsData, digits_data, digits_mlp, tiny_cnn


@pytest.fixture(scope="module")
def digits() -> DigitsData:
    return digits_data()


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, digits: DigitsData) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    paths = {"mlp": root / "mlp.onnx", "cnn": root / "cnn.onnx", "calib": root / "calib.npz"}
    onnx.save(digits_mlp(digits), str(paths["mlp"]))
    onnx.save(tiny_cnn(), str(paths["cnn"]))
    np.savez(paths["calib"], input=digits.train_x[:128])
    return paths


def run(path: Path, x: NDArray[np.float32]) -> NDArray[np.float32]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(sess.run(None, {"input": x})[0], dtype=np.float32)


def apply(
    recipe: str, src: Path, tmp_path: Path, calib: Path | None = None
) -> tuple[Path, list[str]]:
    (step,) = parse_recipe(recipe).steps
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    dst = tmp_path / f"{step.slug()}.onnx"
    notes = STEPS[step.technique](src, dst, step, StepContext(recipe, calib, work))
    onnx.checker.check_model(str(dst))
    return dst, notes


def weights(path: Path) -> dict[str, NDArray[np.generic]]:
    model = onnx.load(str(path))
    return {lay.weight: graph.get_array(model, lay.weight) for lay in graph.weight_layers(model)}


def cnn_input(n: int = 8) -> NDArray[np.float32]:
    return np.random.default_rng(1).random((n, 3, 16, 16)).astype(np.float32)


def test_fp16_halves_weights_keeps_float32_io(
    models: dict[str, Path], digits: DigitsData, tmp_path: Path
) -> None:
    out, _ = apply("fp16", models["mlp"], tmp_path)
    model = onnx.load(str(out))
    float_inits = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    assert not float_inits
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    for vi in [*model.graph.input, *model.graph.output]:
        assert vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    base, var = run(models["mlp"], digits.eval_x), run(out, digits.eval_x)
    assert var.dtype == np.float32
    assert np.max(np.abs(var - base)) <= 0.01 * np.max(np.abs(base))


@pytest.mark.parametrize(
    ("recipe", "ops"),
    [
        ("int8-dynamic", {"MatMulInteger", "DynamicQuantizeLinear"}),
        ("int8-static", {"QuantizeLinear", "DequantizeLinear"}),
        ("int8-static:calibration=entropy,symmetric_activations=true", {"QuantizeLinear"}),
        ("int4", {"MatMulNBits"}),
    ],
)
def test_quantized_models_use_quantized_ops_and_agree(
    recipe: str, ops: set[str], models: dict[str, Path], digits: DigitsData, tmp_path: Path
) -> None:
    out, _ = apply(recipe, models["mlp"], tmp_path, models["calib"])
    types = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert ops <= types
    base, var = run(models["mlp"], digits.eval_x), run(out, digits.eval_x)
    assert np.mean(base.argmax(1) == var.argmax(1)) >= 0.95
    acc_base = np.mean(base.argmax(1) == digits.eval_y)
    acc_var = np.mean(var.argmax(1) == digits.eval_y)
    assert acc_base - acc_var <= 0.02
    assert out.stat().st_size < models["mlp"].stat().st_size


def test_int8_static_on_cnn_is_per_channel_qdq(models: dict[str, Path], tmp_path: Path) -> None:
    calib = tmp_path / "cnn_calib.npz"
    np.savez(calib, input=cnn_input(32))
    out, notes = apply("int8-static", models["cnn"], tmp_path, calib)
    model = onnx.load(str(out))
    scales = [t for t in model.graph.initializer if t.name.endswith("weight_scale")]
    assert any(len(t.dims) == 1 and t.dims[0] > 1 for t in scales)  # per-channel on Conv
    assert "per-channel" in notes[-1]
    base, var = run(models["cnn"], cnn_input()), run(out, cnn_input())
    cos = np.sum(base * var, 1) / (np.linalg.norm(base, axis=1) * np.linalg.norm(var, axis=1))
    assert cos.min() > 0.98


def test_unstructured_prune_zeros_the_smallest_weights(
    models: dict[str, Path], digits: DigitsData, tmp_path: Path
) -> None:
    out, notes = apply("prune:sparsity=0.3", models["mlp"], tmp_path)
    before, after = weights(models["mlp"]), weights(out)
    assert set(before) == set(after)
    for name, w in before.items():
        pruned = after[name]
        zeroed = pruned == 0
        assert zeroed.mean() == pytest.approx(0.3, abs=1 / w.size + 1e-9)
        assert np.abs(w[zeroed]).max() <= np.abs(w[~zeroed]).min()  # the smallest went first
        np.testing.assert_array_equal(pruned[~zeroed], w[~zeroed])  # the rest untouched
    assert any("dense runtimes" in n for n in notes)
    base, var = run(models["mlp"], digits.eval_x), run(out, digits.eval_x)
    assert np.mean(base.argmax(1) == var.argmax(1)) >= 0.95


def test_structured_prune_removes_channels_through_dw_bn_and_gap(
    models: dict[str, Path], tmp_path: Path
) -> None:
    out, notes = apply("prune:sparsity=0.5,structured=true", models["cnn"], tmp_path)
    w = {k: v.shape for k, v in weights(out).items()}
    assert w["conv1.weight"] == (8, 3, 3, 3)
    assert w["dw.weight"] == (8, 1, 3, 3)  # depthwise filters follow their input channels
    assert w["pw.weight"] == (16, 8, 1, 1)
    assert w["fc.weight"] == (10, 16)  # Gemm inputs follow through GAP + Flatten
    model = onnx.load(str(out))
    assert graph.get_array(model, "bn1.scale").shape == (8,)
    dw = next(n for n in model.graph.node if n.name == "dw")
    assert graph.attr(dw, "group", 0) == 8
    y = run(out, cnn_input(4))
    assert y.shape == (4, 10)
    assert any("skipped fc" in n for n in notes)  # the head feeds the graph output


def test_structured_prune_of_dead_channels_is_exact(
    models: dict[str, Path], digits: DigitsData
) -> None:
    model = onnx.load(str(models["mlp"]))
    w1 = graph.get_array(model, "fc1.weight").copy()  # [out, in] (transB=1)
    b1 = graph.get_array(model, "fc1.bias").copy()
    dead = np.argsort(np.abs(w1).sum(1))[: w1.shape[0] // 2]
    w1[dead] = 0
    b1[dead] = 0
    graph.set_array(model, "fc1.weight", w1)
    graph.set_array(model, "fc1.bias", b1)
    before = model.SerializeToString()
    done, _ = prune_structured(model, {"fc1": 0.5}, "l1")
    assert done == [f"fc1: {w1.shape[0]} -> {w1.shape[0] // 2} channels"]
    assert graph.get_array(model, "fc2.weight").shape[0] == w1.shape[0] // 2  # next layer's inputs
    sess_a = ort.InferenceSession(before, providers=["CPUExecutionProvider"])
    sess_b = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ya = sess_a.run(None, {"input": digits.eval_x})[0]
    yb = sess_b.run(None, {"input": digits.eval_x})[0]
    np.testing.assert_allclose(yb, ya, atol=1e-5)


def test_sensitivity_prunes_only_where_output_does_not_move(
    models: dict[str, Path], digits: DigitsData
) -> None:
    model = onnx.load(str(models["mlp"]))
    w1 = graph.get_array(model, "fc1.weight").copy()
    b1 = graph.get_array(model, "fc1.bias").copy()
    dead = np.argsort(np.abs(w1).sum(1))[: w1.shape[0] // 2]
    w1[dead], b1[dead] = 0, 0
    graph.set_array(model, "fc1.weight", w1)
    graph.set_array(model, "fc1.bias", b1)
    chosen = sensitivity(
        model, ["fc1", "fc2"], 0.5, 1e-6, True, "l1", {"input": digits.eval_x[:64]}
    )
    assert chosen == {"fc1": 0.5, "fc2": 0.0}


def test_lowrank_factorisation_error_equals_discarded_energy() -> None:
    rng = np.random.default_rng(0)
    w = (
        rng.standard_normal((64, 8)) @ rng.standard_normal((8, 48))
        + 0.1 * rng.standard_normal((64, 48))
    ).astype(np.float32)
    f = factorise(w, rank_ratio=None, energy=0.9)
    assert f.energy_kept >= 0.9
    assert f.left.shape == (64, f.rank) and f.right.shape == (f.rank, 48)
    rel_err2 = np.linalg.norm(w - f.left @ f.right) ** 2 / np.linalg.norm(w) ** 2
    assert rel_err2 == pytest.approx(1 - f.energy_kept, abs=1e-4)
    assert factorise(w, rank_ratio=0.25, energy=None).rank == 12


def test_lowrank_model_layers_reproduce_originals(models: dict[str, Path], tmp_path: Path) -> None:
    # a 1x1 conv whose weight is nearly rank 4, as trained layers often are
    src = onnx.load(str(models["cnn"]))
    rng = np.random.default_rng(2)
    low = rng.standard_normal((32, 4)) @ rng.standard_normal((4, 16)) + 0.01 * rng.standard_normal(
        (32, 16)
    )
    graph.set_array(src, "pw.weight", (0.1 * low).astype(np.float32)[:, :, None, None])
    src_path = tmp_path / "cnn_lowrank.onnx"
    onnx.save(src, str(src_path))
    out, notes = apply("lowrank:energy=0.99", src_path, tmp_path)
    model = onnx.load(str(out))
    a = graph.get_array(model, "pw.weight_lr_a")[:, :, 0, 0]  # r x C
    b = graph.get_array(model, "pw.weight_lr_b")[:, :, 0, 0]  # M x r
    orig = graph.get_array(src, "pw.weight")[:, :, 0, 0]  # M x C
    rel = np.linalg.norm(b @ a - orig) / np.linalg.norm(orig)
    assert rel <= np.sqrt(1 - 0.99) + 1e-4
    assert any("skipped conv1" in n for n in notes)  # 3x3 conv is not factorised
    assert any("skipped fc" in n for n in notes)  # full-rank head: no MAC saving
    assert [n.op_type for n in model.graph.node].count("Conv") == 4
    base, var = run(src_path, cnn_input()), run(out, cnn_input())
    assert np.max(np.abs(var - base)) <= 0.1 * np.max(np.abs(base))


def test_lowrank_that_cannot_save_macs_is_an_error(models: dict[str, Path], tmp_path: Path) -> None:
    from harness.errors import CompressionError

    with pytest.raises(CompressionError, match="would not reduce MACs"):
        apply("lowrank:rank_ratio=1.0", models["mlp"], tmp_path)


def test_cluster_leaves_at_most_k_values_per_layer(
    models: dict[str, Path], digits: DigitsData, tmp_path: Path
) -> None:
    out, _ = apply("cluster:k=16", models["mlp"], tmp_path)
    before, after = weights(models["mlp"]), weights(out)
    for name, w in after.items():
        assert len(np.unique(w)) <= 16
        assert len(np.unique(before[name])) > 16
    assert graph.gzip_size(out) < 0.7 * graph.gzip_size(models["mlp"])
    base, var = run(models["mlp"], digits.eval_x), run(out, digits.eval_x)
    assert np.mean(base.argmax(1) == var.argmax(1)) >= 0.95


def test_int4_rewrites_gemm_exactly_before_quantizing(
    models: dict[str, Path], digits: DigitsData
) -> None:
    from harness.compress.int4 import gemm_to_matmul

    model = onnx.load(str(models["mlp"]))
    assert gemm_to_matmul(model) == 2
    assert "Gemm" not in {n.op_type for n in model.graph.node}
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(
        sess.run(None, {"input": digits.eval_x})[0], run(models["mlp"], digits.eval_x), atol=1e-4
    )
    assert all(numpy_helper.to_array(t).dtype == np.float32 for t in model.graph.initializer)


def test_fp16_falls_back_to_onnxruntime_converter(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxconverter_common", None)  # as if not installed
    out, notes = apply("fp16", models["cnn"], tmp_path)  # apply() runs onnx.checker
    assert "onnxruntime.transformers.float16" in notes[0]
    base, var = run(models["cnn"], cnn_input()), run(out, cnn_input())
    assert np.max(np.abs(var - base)) <= 0.01 * np.max(np.abs(base))
