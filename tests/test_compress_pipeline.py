"""compress_model end to end: variants + manifests, fidelity and flags, errors isolated per recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

from harness.compress import compress_model, read_manifest
from harness.compress.graph import sha256_file
from harness.compress.toy_models import DigitsData, digits_data, digits_mlp
from harness.errors import CompressionError


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    data: DigitsData = digits_data()
    root = tmp_path_factory.mktemp("pipe")
    paths = {
        "model": root / "digits.onnx",
        "calib": root / "calib.npz",
        "eval": root / "eval.npz",
        "bad_calib": root / "bad_calib.npz",
        "f64_calib": root / "f64_calib.npz",
    }
    onnx.save(digits_mlp(data), str(paths["model"]))
    np.savez(paths["calib"], input=data.train_x[:128])
    np.savez(paths["eval"], input=data.eval_x, labels=data.eval_y)
    np.savez(paths["bad_calib"], pixels=data.train_x[:64])  # wrong input name
    np.savez(paths["f64_calib"], input=data.train_x[:64].astype(np.float64))
    return paths


def test_variants_manifests_and_isolated_errors(setup: dict[str, Path], tmp_path: Path) -> None:
    outcomes = compress_model(
        setup["model"],
        [
            "prune:sparsity=1.5",
            "fp16",
            "int8-static",
            "prune:sparsity=0.5,structured=true>int8-static",
        ],
        tmp_path,
        calib=setup["bad_calib"],
        eval_data=setup["eval"],
    )
    bad_param, fp16, static, chain = outcomes
    assert not bad_param.ok and "sparsity" in bad_param.error.one_line()  # type: ignore[union-attr]
    assert not static.ok and "'input'" in static.error.one_line()  # type: ignore[union-attr]
    assert "pixels" in static.error.one_line()  # type: ignore[union-attr]
    assert not chain.ok
    assert not (tmp_path / "digits" / "int8-static" / "model.onnx").exists()
    assert fp16.ok and fp16.model_path == tmp_path / "digits" / "fp16" / "model.onnx"
    assert fp16.model_path.is_file()
    m = read_manifest(fp16.model_path.parent)
    assert m == fp16.manifest
    assert m.variant_sha256 == sha256_file(fp16.model_path)
    assert m.source_sha256 == sha256_file(setup["model"])
    assert m.size_bytes == fp16.model_path.stat().st_size
    assert 0 < m.gzip_size_bytes < m.size_bytes
    assert m.size_bytes < 0.6 * m.source_size_bytes
    assert m.parameter_count == 64 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10
    assert m.macs_per_sample == m.source_macs_per_sample == 64 * 64 + 64 * 32 + 32 * 10
    assert set(m.tool_versions) >= {"onnx", "onnxruntime", "numpy"}
    assert m.steps[0].params == {"keep_io_types": True}
    fid = m.fidelity
    assert fid is not None and fid.input_source == "eval" and fid.samples == 450
    assert fid.top1_agreement == 1.0 and fid.cosine_similarity > 0.9999
    assert [x.name for x in fid.metrics] == ["top1", "top5"]
    assert fid.metrics[0].baseline > 0.9 and abs(fid.metrics[0].drop) <= 0.5
    assert not m.flagged


def test_chain_and_good_calibration(setup: dict[str, Path], tmp_path: Path) -> None:
    (chain,) = compress_model(
        setup["model"],
        ["prune:sparsity=0.25,structured=true>int8-static"],
        tmp_path,
        calib=setup["calib"],
        eval_data=setup["eval"],
    )
    path, m = chain.unwrap()
    assert [s.technique for s in m.steps] == ["prune", "int8-static"]
    assert m.macs_per_sample is not None and m.source_macs_per_sample is not None
    assert m.macs_per_sample < m.source_macs_per_sample
    model = onnx.load(str(path))
    assert "QuantizeLinear" in {n.op_type for n in model.graph.node}
    assert path.parent.name == "prune_sparsity-0.25_structured-true__int8-static"
    assert not (path.parent / ".work").exists()


def test_collapsed_variant_is_flagged_not_hidden(setup: dict[str, Path], tmp_path: Path) -> None:
    (lr,) = compress_model(
        setup["model"], ["lowrank:rank_ratio=0.1"], tmp_path, eval_data=setup["eval"]
    )
    path, manifest = lr.unwrap()
    assert manifest.flagged and manifest.fidelity is not None
    assert any("top1 dropped" in r for r in manifest.fidelity.flag_reasons)
    doc = json.loads((path.parent / "manifest.json").read_text())
    assert doc["flagged"] is True


def test_dtype_mismatch_is_named_and_random_inputs_are_the_fallback(
    setup: dict[str, Path], tmp_path: Path
) -> None:
    fp16, static = compress_model(
        setup["model"], ["fp16", "int8-static"], tmp_path, calib=setup["f64_calib"]
    )
    assert not static.ok
    assert "float64" in static.error.one_line() and "float32" in static.error.one_line()  # type: ignore[union-attr]
    fid = fp16.manifest.fidelity  # type: ignore[union-attr]
    assert fid is not None and fid.input_source == "random" and fid.metrics == ()
    assert any("random" in n for n in fid.notes)


def test_user_metric(
    setup: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "my_metrics.py").write_text(
        "import numpy as np\n"
        "def balanced(outputs, labels):\n"
        "    pred = outputs.argmax(-1)\n"
        "    return float(np.mean([np.mean(pred[labels == c] == c) for c in np.unique(labels)]))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (out,) = compress_model(
        setup["model"],
        ["cluster:k=8"],
        tmp_path / "v",
        eval_data=setup["eval"],
        metric="my_metrics:balanced",
    )
    assert out.ok
    (metric,) = out.manifest.fidelity.metrics  # type: ignore[union-attr]
    assert metric.name == "my_metrics:balanced" and 0.8 < metric.baseline <= 1.0
    with pytest.raises(CompressionError, match="cannot be loaded"):
        compress_model(setup["model"], ["fp16"], tmp_path / "w", metric="my_metrics:nope")


def test_model_failing_checker_is_a_compression_error(tmp_path: Path) -> None:
    node = helper.make_node("Relu", ["missing"], ["y"])
    graph = helper.make_graph(
        [node], "broken",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
    )  # fmt: skip
    bad = tmp_path / "broken.onnx"
    onnx.save(helper.make_model(graph), str(bad))
    with pytest.raises(CompressionError, match="not a valid ONNX model"):
        compress_model(bad, ["fp16"], tmp_path / "out")
    with pytest.raises(CompressionError, match="does not exist"):
        compress_model(tmp_path / "nope.onnx", ["fp16"], tmp_path / "out")


def test_unsupported_model_for_recipe_is_reported(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "relu_only",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 4])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "relu.onnx"
    onnx.save(model, str(path))
    prune, int4, fp16 = compress_model(path, ["prune", "int4", "fp16"], tmp_path / "out")
    assert not prune.ok and "no Conv/Gemm/MatMul" in prune.error.one_line()  # type: ignore[union-attr]
    assert not int4.ok and "no MatMul/Gemm" in int4.error.one_line()  # type: ignore[union-attr]
    assert fp16.ok
