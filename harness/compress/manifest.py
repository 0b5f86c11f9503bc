"""The manifest written next to every variant: what was done, to what, and what it cost.

``manifest.json`` is the variant's identity card for the results store and the report: recipe
and resolved parameters, tool versions, source and variant hashes, bytes on disk and gzip'd,
parameter/non-zero counts, MACs, fidelity and accuracy, and the FLAGGED verdict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.compress.fidelity import Fidelity, MetricResult
from harness.errors import CompressionError

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class StepRecord:
    """One applied step: technique, every resolved parameter, and what the step reported."""

    technique: str
    params: Mapping[str, bool | int | float | str]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    """Everything known about one variant. Sizes in bytes; MACs per sample (batch 1)."""

    recipe: str
    slug: str
    steps: tuple[StepRecord, ...]
    tool_versions: Mapping[str, str]
    source_path: str
    source_sha256: str
    source_size_bytes: int
    variant_path: str
    variant_sha256: str
    size_bytes: int
    gzip_size_bytes: int
    parameter_count: int
    nonzero_count: int
    macs_per_sample: int | None
    source_macs_per_sample: int | None
    fidelity: Fidelity | None
    created_utc: str
    manifest_version: int = MANIFEST_VERSION

    @property
    def flagged(self) -> bool:
        """True when fidelity collapsed (accuracy drop or low top-1 agreement)."""
        return self.fidelity is not None and self.fidelity.flagged

    @property
    def sparsity(self) -> float:
        """Share of zero parameters."""
        return 1 - self.nonzero_count / self.parameter_count if self.parameter_count else 0.0

    def to_json(self) -> str:
        """Stable, human-readable JSON (``flagged`` included for readers that only grep)."""
        doc = asdict(self)
        doc["flagged"] = self.flagged
        return json.dumps(doc, indent=2, sort_keys=True)

    def write(self, directory: Path) -> Path:
        """Write ``manifest.json`` into ``directory``; returns its path."""
        path = directory / MANIFEST_NAME
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path


def _fidelity(doc: dict[str, Any] | None) -> Fidelity | None:
    if doc is None:
        return None
    metrics = tuple(MetricResult(**m) for m in doc.pop("metrics"))
    for key in ("flag_reasons", "notes"):
        doc[key] = tuple(doc.get(key, ()))
    return Fidelity(metrics=metrics, **doc)


def manifest_from_dict(doc: Mapping[str, Any]) -> Manifest:
    """Rebuild a :class:`Manifest` from its JSON dict (ignores the derived ``flagged``)."""
    data = dict(doc)
    data.pop("flagged", None)
    version = data.get("manifest_version")
    if version != MANIFEST_VERSION:
        raise CompressionError(
            f"manifest version {version!r} is not supported (want {MANIFEST_VERSION})"
        )
    try:
        data["steps"] = tuple(
            StepRecord(s["technique"], dict(s["params"]), tuple(s["notes"])) for s in data["steps"]
        )
        fid = data.get("fidelity")
        data["fidelity"] = _fidelity(dict(fid) if fid is not None else None)
        return Manifest(**data)
    except (KeyError, TypeError) as exc:
        raise CompressionError(f"manifest is malformed: {exc}") from exc


def read_manifest(path: Path) -> Manifest:
    """Load a ``manifest.json`` (or the one inside a variant directory)."""
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CompressionError(f"cannot read manifest {path}: {exc}") from exc
    return manifest_from_dict(doc)
