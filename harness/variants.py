"""Compressed variants as benchmarkable artifacts: find them, describe them, register them.

``harness compress`` writes ``<root>/<model-stem>/<recipe-slug>/model.onnx`` (``model.tflite``
for the TFLite recipes of a Keras/SavedModel source) plus a ``manifest.json`` (see
:mod:`harness.compress.manifest`). This module is the bridge from there to
the rest of harness: a variant becomes a :class:`ModelArtifact` that carries its recipe, its
parent's sha256, its host-side accuracy and whether its fidelity was FLAGGED, so a benchmark job
of it reports size, host accuracy, on-device accuracy and latency side by side; and every variant
(and its source) is registered in the results store with its manifest.

A TensorFlow source (a ``.keras``/``.h5`` file or a SavedModel directory) is registered under
format ``keras`` or ``savedmodel`` with the identity its manifests recorded, but no runtime on a
device runs it: ``bench --variants-of`` benchmarks only its ``.tflite`` variants.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.artifacts import inspect_model, sha256_file
from harness.errors import CompressionError, ConfigError
from harness.results.records import ModelArtifact
from harness.results.store import ResultStore

if TYPE_CHECKING:  # the compression stack (onnx, onnxruntime) loads only where it is used
    from harness.compress import Manifest, VariantOutcome

log = logging.getLogger(__name__)
VARIANT_MODELS = ("model.onnx", "model.tflite")  # what the ONNX and the TFLite recipes write
RUNNABLE_FORMATS = ("onnx", "tflite")  # what the runners on devices can load


@dataclasses.dataclass(frozen=True)
class Variant:
    """One variant on disk: its model file and the manifest written next to it."""

    path: Path
    manifest: Manifest


def primary_metric(manifest: Manifest) -> tuple[str, float, float] | None:
    """``(name, baseline, variant)`` of the metric that decides FLAGGED, or None without labels."""
    if manifest.fidelity is None or not manifest.fidelity.metrics:
        return None
    m = manifest.fidelity.metrics[0]
    return m.name, m.baseline, m.variant


def recipe_params(manifest: Manifest) -> list[dict[str, Any]]:
    """Every step's technique and resolved parameters, for the store's ``recipe_params``."""
    return [{"technique": s.technique, "params": dict(s.params)} for s in manifest.steps]


def variant_artifact(variant: Variant, *, model_stem: str) -> ModelArtifact:
    """The variant file as an artifact named ``<stem>/<slug>`` with its manifest's facts."""
    artifact = inspect_model(variant.path, name=f"{model_stem}/{variant.manifest.slug}")
    metric = primary_metric(variant.manifest)
    return dataclasses.replace(
        artifact,
        recipe=variant.manifest.recipe,
        parent_sha256=variant.manifest.source_sha256,
        host_accuracy=metric[2] if metric else None,
        host_accuracy_metric=metric[0] if metric else None,
        fidelity_flagged=variant.manifest.flagged,
    )


def is_tf_source(path: Path) -> bool:
    """True for a source only the TFLite recipes take: a SavedModel directory or Keras file."""
    from harness.compress.tflite_source import is_tf_source as tf_source

    return tf_source(path)


def tf_source_format(path: Path) -> str:
    """The store's format of a TensorFlow source: ``savedmodel`` (a directory) or ``keras``."""
    return "savedmodel" if path.is_dir() else "keras"


def source_sha256(model_path: Path) -> str:
    """The hash manifests record for ``model_path``: its file's, or for a SavedModel directory
    the hash of its files (the one the TFLite recipes compute)."""
    if not model_path.exists():
        raise ConfigError(f"model {model_path} does not exist")
    if not is_tf_source(model_path):
        return sha256_file(model_path)
    # the TFLite recipes' own identity function: the same bytes must give the same hash
    from harness.compress.tflite import source_identity

    return source_identity(model_path)[0]


def _tf_source_artifact(model_path: Path, manifests: Sequence[Manifest]) -> ModelArtifact:
    # no runtime loads a Keras file or SavedModel, so its identity comes from its manifests
    # (hashed when the variants were made) rather than from inspect_model
    if manifests:
        sha, size = manifests[0].source_sha256, manifests[0].source_size_bytes
    else:  # every recipe failed: still register the source, hashed as the recipes would
        from harness.compress.tflite import source_identity

        sha, size = source_identity(model_path)
    return ModelArtifact(
        name=model_path.stem,
        path=str(model_path.resolve()),
        format=tf_source_format(model_path),
        sha256=sha,
        size_bytes=size,
    )


def source_artifact(model_path: Path, manifests: Iterable[Manifest]) -> ModelArtifact:
    """The source model as an artifact, with its own host accuracy taken from the variants'
    manifests (each records the baseline's value on the same eval data). A TensorFlow source
    gets format ``keras``/``savedmodel`` and the sha256 and bytes its manifests recorded."""
    manifests = list(manifests)
    if is_tf_source(model_path):
        artifact = _tf_source_artifact(model_path, manifests)
    else:
        artifact = inspect_model(model_path)
    for manifest in manifests:
        metric = primary_metric(manifest)
        if metric is not None and manifest.source_sha256 == artifact.sha256:
            return dataclasses.replace(
                artifact, host_accuracy=metric[1], host_accuracy_metric=metric[0]
            )
    return artifact


def _manifest_json(manifest: Manifest) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(manifest.to_json())
    return doc


def register_variant(store: ResultStore, artifact: ModelArtifact, manifest: Manifest) -> None:
    """Record a variant in the store: recipe, parameters, parent, host accuracy, manifest."""
    store.register_artifact(
        artifact,
        parent_sha256=manifest.source_sha256,
        recipe=manifest.recipe,
        recipe_params=recipe_params(manifest),
        accuracy=artifact.host_accuracy,
        manifest=_manifest_json(manifest),
    )


def register_source(store: ResultStore, artifact: ModelArtifact) -> None:
    """Record the model variants were made from, with its host accuracy when known."""
    store.register_artifact(artifact, accuracy=artifact.host_accuracy)


def register_outcomes(
    store: ResultStore, model_path: Path, outcomes: Sequence[VariantOutcome]
) -> list[ModelArtifact]:
    """Register the source and every variant made by ``compress_model``; returns the
    artifacts registered, source first. Failed recipes have nothing to register."""
    made = [
        Variant(o.model_path, o.manifest)
        for o in outcomes
        if o.model_path is not None and o.manifest is not None
    ]
    source = source_artifact(model_path, (v.manifest for v in made))
    register_source(store, source)
    artifacts = [source]
    for variant in made:
        artifact = variant_artifact(variant, model_stem=model_path.stem)
        register_variant(store, artifact, variant.manifest)
        artifacts.append(artifact)
    return artifacts


def _variant_file(directory: Path, manifest: Manifest) -> Path | None:
    """The finished model file of a variant directory: ``model.onnx`` or ``model.tflite``
    (the one its manifest names, should both be there)."""
    present = [directory / name for name in VARIANT_MODELS if (directory / name).is_file()]
    named = [p for p in present if p.name == Path(manifest.variant_path).name]
    return next(iter(named or present), None)


def find_variants(model_path: Path, variants_dir: Path) -> list[Variant]:
    """Every variant of ``model_path`` under ``variants_dir/<stem>/*/``, sorted by directory.

    A variant is ``model.onnx`` or ``model.tflite`` with its ``manifest.json``; a directory with
    a model but no manifest is not a finished variant and is skipped. A variant made from
    another version of the model, or whose file no longer matches its manifest, is an error:
    benchmarking it would pin the wrong recipe and accuracy on a measured latency.
    """
    model_dir = variants_dir / model_path.stem
    if not model_dir.is_dir():
        raise ConfigError(
            f"no variants of {model_path.name} in {model_dir}",
            hint=f"make them with `harness compress {model_path} --recipe ... --out {variants_dir}`",
        )
    from harness.compress.manifest import MANIFEST_NAME, read_manifest

    source_sha = source_sha256(model_path)
    found = []
    for directory in sorted(p for p in model_dir.iterdir() if p.is_dir()):
        manifest_path = directory / MANIFEST_NAME
        if not manifest_path.is_file():
            continue
        manifest = read_manifest(manifest_path)
        path = _variant_file(directory, manifest)
        if path is None:
            continue
        if manifest.source_sha256 != source_sha:
            raise CompressionError(
                f"variant {directory} was made from another version of {model_path.name} "
                f"(source sha256 {manifest.source_sha256[:12]}, the file is {source_sha[:12]})",
                hint=f"re-run `harness compress {model_path}` or delete {directory}",
            )
        if sha256_file(path) != manifest.variant_sha256:
            raise CompressionError(
                f"variant {path} no longer matches its manifest (sha256 differs)",
                hint=f"re-run `harness compress` for recipe {manifest.recipe!r}",
            )
        found.append(Variant(path, manifest))
    if not found:
        raise ConfigError(
            f"{model_dir} holds no finished variants (model.onnx or model.tflite with "
            "manifest.json)",
            hint=f"make them with `harness compress {model_path} --recipe ...`",
        )
    return found


@dataclasses.dataclass(frozen=True)
class Family:
    """A source model and the variants found for it, each as a benchmarkable artifact."""

    source: ModelArtifact
    variants: tuple[tuple[ModelArtifact, Manifest], ...]

    @property
    def source_runnable(self) -> bool:
        """False for a Keras/SavedModel source: no runtime on a device loads it."""
        return self.source.format in RUNNABLE_FORMATS

    @property
    def artifacts(self) -> list[ModelArtifact]:
        """What to benchmark: the baseline first (unless it is not runnable), then every
        variant."""
        source = [self.source] if self.source_runnable else []
        return [*source, *(artifact for artifact, _ in self.variants)]


def variants_of(model_path: Path, variants_dir: Path) -> Family:
    """The baseline and each variant of ``model_path`` found under ``variants_dir``, for
    ``harness bench --variants-of``. A TensorFlow source is in the family (for the store)
    but not in its :attr:`Family.artifacts`; one warning says only its variants will run."""
    found = find_variants(model_path, variants_dir)
    family = Family(
        source=source_artifact(model_path, (v.manifest for v in found)),
        variants=tuple(
            (variant_artifact(v, model_stem=model_path.stem), v.manifest) for v in found
        ),
    )
    if not family.source_runnable:
        log.warning(
            "%s (%s) runs on no device: benchmarking only its %d .tflite variant(s)",
            model_path.name, family.source.format, len(family.variants),
        )  # fmt: skip
    return family


def register_family(store: ResultStore, family: Family) -> None:
    """Register (again) a family in ``store``, so a run's jobs join their manifests there."""
    register_source(store, family.source)
    for artifact, manifest in family.variants:
        register_variant(store, artifact, manifest)


def merge_artifacts(artifacts: Iterable[ModelArtifact]) -> list[ModelArtifact]:
    """One artifact per file hash, in first-seen order; a duplicate that knows more (recipe or
    host accuracy) replaces the plain one, so ``bench m.onnx --variants-of m.onnx`` runs m once."""
    merged: dict[str, ModelArtifact] = {}
    for artifact in artifacts:
        known = merged.get(artifact.sha256)
        richer = artifact.recipe is not None or artifact.host_accuracy is not None
        if known is None or (richer and known.recipe is None and known.host_accuracy is None):
            merged[artifact.sha256] = (
                artifact if known is None else dataclasses.replace(artifact, name=known.name)
            )
    result = list(merged.values())
    names = [a.name for a in result]
    # a plain model named like a baseline (m.tflite next to m.onnx): name it by its file
    return [
        dataclasses.replace(a, name=Path(a.path).name) if names.count(a.name) > 1 else a
        for a in result
    ]
