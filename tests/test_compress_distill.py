"""Distillation (torch extra): a smaller student that agrees with the teacher, exported to ONNX."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from harness.compress import compress_model
from harness.compress.toy_models import digits_data, digits_mlp, tiny_cnn
from harness.errors import CompressionError


def test_mlp_student_is_smaller_and_agrees(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="distillation is the optional torch extra")
    data = digits_data()
    teacher = tmp_path / "teacher.onnx"
    onnx.save(digits_mlp(data), str(teacher))
    train = tmp_path / "train.npz"
    np.savez(train, input=data.train_x[:400], labels=data.train_y[:400])
    evals = tmp_path / "eval.npz"
    np.savez(evals, input=data.eval_x, labels=data.eval_y)
    (out,) = compress_model(
        teacher,
        ["distill:width=24,epochs=25,augment=2"],
        tmp_path / "v",
        calib=train,
        eval_data=evals,
    )
    path, m = out.unwrap()
    assert m.parameter_count < 0.5 * onnx_params(teacher)
    assert any("with hard labels" in n for n in m.steps[0].notes)
    model = onnx.load(str(path))
    assert {n.op_type for n in model.graph.node} == {"Gemm", "Relu"}
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert m.fidelity is not None and m.fidelity.top1_agreement is not None
    assert m.fidelity.top1_agreement >= 0.9
    assert m.fidelity.metrics[0].drop <= 5.0  # within 5 points of the teacher's top-1


def test_cnn_student_runs_with_the_teacher_io(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="distillation is the optional torch extra")
    teacher = tmp_path / "cnn.onnx"
    onnx.save(tiny_cnn(), str(teacher))
    images = tmp_path / "images.npz"
    np.savez(images, input=np.random.default_rng(0).random((32, 3, 16, 16)).astype(np.float32))
    (out,) = compress_model(
        teacher, ["distill:width=4,epochs=3,augment=0"], tmp_path / "v", calib=images
    )
    path, m = out.unwrap()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = sess.run(None, {"input": np.zeros((2, 3, 16, 16), np.float32)})[0]
    assert y.shape == (2, 10)
    assert m.parameter_count < onnx_params(teacher)


def test_missing_torch_is_a_compression_error_with_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = tmp_path / "cnn.onnx"
    onnx.save(tiny_cnn(), str(teacher))
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    distill, fp16 = compress_model(teacher, ["distill", "fp16"], tmp_path / "v")
    assert isinstance(distill.error, CompressionError)
    assert "harness[torch]" in distill.error.one_line()
    assert fp16.ok


def onnx_params(path: Path) -> int:
    return sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)
