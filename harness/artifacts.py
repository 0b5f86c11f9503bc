"""Model identity: format, sha256, size, and a cheap host-side sanity check.

The check catches what would otherwise fail late on a device (a missing file, a truncated
download, a file that is not a model) and names the file in one line.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness.errors import ModelError
from harness.results.records import ModelArtifact

_TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier at bytes 4..8
_HASH_CHUNK_BYTES = 1024 * 1024


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def model_format(path: Path) -> str:
    """``onnx`` or ``tflite`` from the file name, or a ModelError."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".tflite":
        return "tflite"
    raise ModelError(f"{path}: unsupported model format {suffix or '(no extension)'!r}",
                     hint="harness runs .onnx and .tflite files")


def inspect_model(path: Path, *, name: str | None = None) -> ModelArtifact:
    """Identify a model file and check it looks like what its extension says.

    ONNX files are parsed with ``onnx`` (weights stored externally are not loaded);
    TFLite files must carry the ``TFL3`` flatbuffer identifier.
    """
    path = Path(path)
    if path.is_dir():
        raise ModelError(f"{path} is a directory, not a model file (.onnx or .tflite)")
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    fmt = model_format(path)
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"model file {path} is empty")
    if fmt == "tflite":
        with path.open("rb") as handle:
            head = handle.read(8)
        if len(head) < 8 or head[4:8] != _TFLITE_IDENTIFIER:
            raise ModelError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier); "
                             "the file is corrupt or not a .tflite model")
    else:
        _check_onnx(path)
    return ModelArtifact(
        name=name or path.stem,
        path=str(path.resolve()),
        format=fmt,
        sha256=sha256_file(path),
        size_bytes=size,
    )


def _check_onnx(path: Path) -> None:
    import onnx  # imported here: only ONNX users pay for it

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, ... for corrupt files
        raise ModelError(f"{path} is not a valid ONNX model: {type(exc).__name__}: {exc}") from exc
    if not model.graph.node and not model.graph.output:
        raise ModelError(f"{path} is not a valid ONNX model: it has an empty graph")
