"""Model identity and the host-side sanity check of model files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from harness.artifacts import inspect_model
from harness.errors import ModelError


def _tiny_onnx(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_identity_of_a_valid_onnx_model(tmp_path: Path) -> None:
    path = _tiny_onnx(tmp_path / "relu.onnx")
    art = inspect_model(path)
    assert art.format == "onnx"
    assert art.name == "relu"
    assert art.size_bytes == path.stat().st_size
    assert art.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("missing.onnx", None, "does not exist"),
        ("empty.onnx", b"", "is empty"),
        ("garbage.onnx", b"\x08\x07not-a-protobuf\xff\xff\xff", "not a valid ONNX model"),
        ("garbage.tflite", b"\x00" * 64, "not a TFLite flatbuffer"),
        ("model.pt", b"pytorch", "unsupported model format"),
    ],
)
def test_bad_model_files_fail_with_one_clear_line(
    tmp_path: Path, filename: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / filename
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=message) as info:
        inspect_model(path)
    assert "\n" not in info.value.one_line()
