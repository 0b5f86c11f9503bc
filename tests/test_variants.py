"""Variants as artifacts: found on disk, checked against their manifests, registered in the store,
carried through a stored run, and shown side by side (size, host and device accuracy) in reports.

Real compress_model runs on the demo digits model make the variants; the store is real SQLite.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from harness.artifacts import inspect_model, sha256_file
from harness.compress import VariantOutcome, compress_model
from harness.errors import CompressionError, ConfigError
from harness.reporting import write_report
from harness.reporting.tables import display_rows, has_variants, jobs_dataframe
from harness.results.records import (
    JobResult,
    JobSettings,
    JobSpec,
    ModelArtifact,
    RunRecord,
    Validity,
    Verdict,
)
from harness.results.store import ResultStore
from harness.results.store_schema import artifacts_table
from harness.variants import (
    find_variants,
    merge_artifacts,
    register_family,
    register_outcomes,
    variants_of,
)

DEMO = Path(__file__).resolve().parents[1] / "harness" / "demo"
MODEL = DEMO / "digits_mlp.onnx"
# cheap recipes; structured pruning at 50% collapses this small MLP's accuracy, so it is FLAGGED
RECIPES = ["fp16", "int8-dynamic", "prune:sparsity=0.5,structured=true", "prune:sparsity=1.5"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[VariantOutcome]]:
    root = tmp_path_factory.mktemp("variants-lib")
    model = root / MODEL.name
    shutil.copy(MODEL, model)
    outcomes = compress_model(
        model, RECIPES, root / "variants", eval_data=DEMO / "digits_eval.npz", metric="top1"
    )
    return model, root / "variants", outcomes


def _failed_job(index: int, model: ModelArtifact) -> JobResult:
    settings = JobSettings(None, "cpu", 1, 1, 0.1, 1.0)
    return JobResult(
        spec=JobSpec(index, model, "local", settings),
        status="failed",
        error="not run: this test stores records, not measurements",
        runtime_name=None,
        runtime_version=None,
        init_ms=None,
        first_inference_ms=None,
        peak_memory_kb=None,
        latency=None,
        validity=Validity(Verdict.INVALID, ("job failed",)),
        samples_ms=(),
    )


def test_variants_become_artifacts_with_their_manifest_facts(
    made: tuple[Path, Path, list[VariantOutcome]],
) -> None:
    model, root, outcomes = made
    family = variants_of(model, root)
    source_sha = sha256_file(model)
    ok = {o.recipe: o for o in outcomes if o.ok}
    assert len(family.variants) == len(ok) == 3
    assert family.artifacts[0] == family.source and family.source.sha256 == source_sha
    assert family.source.recipe is None and family.source.parent_sha256 is None
    baseline_top1 = next(iter(ok.values())).manifest.fidelity.metrics[0].baseline  # type: ignore[union-attr]
    assert family.source.host_accuracy == pytest.approx(baseline_top1)
    assert family.source.host_accuracy_metric == "top1"
    for artifact, manifest in family.variants:
        assert artifact.recipe == manifest.recipe and artifact.recipe in ok
        assert artifact.name == f"{model.stem}/{manifest.slug}"
        assert artifact.parent_sha256 == source_sha
        assert artifact.sha256 == manifest.variant_sha256 == sha256_file(Path(artifact.path))
        assert artifact.size_bytes == manifest.size_bytes
        metric = manifest.fidelity.metrics[0]  # type: ignore[union-attr]
        assert (artifact.host_accuracy, artifact.host_accuracy_metric) == (metric.variant, "top1")
        assert artifact.fidelity_flagged is manifest.flagged
    flagged = {a.recipe for a, m in family.variants if a.fidelity_flagged}
    assert flagged == {"prune:sparsity=0.5,structured=true"}


def test_unfinished_stale_and_tampered_variants(
    made: tuple[Path, Path, list[VariantOutcome]], tmp_path: Path
) -> None:
    model, root, _ = made
    with pytest.raises(ConfigError, match=r"no variants of digits_mlp\.onnx"):
        find_variants(model, tmp_path / "nowhere")
    copy = tmp_path / "variants"
    shutil.copytree(root, copy)
    half = copy / model.stem / "half-made"
    half.mkdir()
    shutil.copy(model, half / "model.onnx")  # a model without a manifest is not a variant
    assert len(find_variants(model, copy)) == 3

    fp16 = copy / model.stem / "fp16" / "model.onnx"
    fp16.write_bytes(fp16.read_bytes() + b"\0")
    with pytest.raises(CompressionError, match="no longer matches its manifest"):
        find_variants(model, copy)

    other = tmp_path / model.name
    other.write_bytes(model.read_bytes() + b"\0")  # same name, different file
    with pytest.raises(CompressionError, match=r"made from another version of digits_mlp\.onnx"):
        find_variants(other, root)


def test_a_variant_is_the_model_file_its_manifest_names(
    made: tuple[Path, Path, list[VariantOutcome]], tmp_path: Path
) -> None:
    model, root, _ = made
    copy = tmp_path / "variants"
    shutil.copytree(root, copy)
    fp16 = copy / model.stem / "fp16"
    shutil.copy(DEMO / "digits_mlp.tflite", fp16 / "model.tflite")  # a stray file next to it
    by_recipe = {v.manifest.recipe: v.path for v in find_variants(model, copy)}
    assert by_recipe["fp16"] == fp16 / "model.onnx"
    (fp16 / "model.onnx").rename(fp16 / "stale.onnx")  # only a .tflite left: it must match
    with pytest.raises(CompressionError, match=r"model\.tflite no longer matches its manifest"):
        find_variants(model, copy)
    (fp16 / "model.tflite").unlink()  # no model file at all: an unfinished variant, skipped
    assert {v.manifest.recipe for v in find_variants(model, copy)} == set(by_recipe) - {"fp16"}


def test_registration_and_a_stored_run_keep_recipe_parent_and_host_accuracy(
    made: tuple[Path, Path, list[VariantOutcome]], tmp_path: Path
) -> None:
    model, root, outcomes = made
    store = ResultStore(tmp_path / "results.sqlite")
    registered = register_outcomes(store, model, outcomes)
    assert len(registered) == 1 + sum(o.ok for o in outcomes)
    with store._engine.connect() as conn:  # the columns themselves, as other tools would see them
        rows = {r.sha256: r for r in conn.execute(select(artifacts_table))}
    source_sha = sha256_file(model)
    assert rows[source_sha].parent_sha256 is None and rows[source_sha].accuracy is not None
    for outcome in (o for o in outcomes if o.ok):
        assert outcome.manifest is not None
        row = rows[outcome.manifest.variant_sha256]
        assert (row.recipe, row.parent_sha256) == (outcome.recipe, source_sha)
        assert row.manifest == json.loads(outcome.manifest.to_json())
        assert row.recipe_params == [
            {"technique": s.technique, "params": dict(s.params)} for s in outcome.manifest.steps
        ]
        assert row.accuracy == outcome.manifest.fidelity.metrics[0].variant  # type: ignore[union-attr]

    family = variants_of(model, root)
    register_family(store, family)  # idempotent: registering again changes nothing
    jobs = tuple(_failed_job(i, a) for i, a in enumerate(family.artifacts))
    record = RunRecord("r1", "2026-11-30T15:00:00+00:00", "harness bench", "0.1.0", "h", jobs)
    store.save_run(record)
    loaded = store.load_run("r1")
    assert loaded == record  # every artifact field, the metric name and flag from the manifests
    store.close()


def test_a_plain_model_round_trips_without_compression_fields(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.sqlite")
    plain = inspect_model(MODEL)
    record = RunRecord(
        "p", "2026-11-30T15:00:00+00:00", "c", "0.1.0", "h", (_failed_job(0, plain),)
    )
    store.save_run(record)
    [job] = store.load_run("p").jobs
    assert job.spec.model == plain
    assert (job.spec.model.recipe, job.spec.model.host_accuracy) == (None, None)
    store.close()


def test_merge_keeps_one_artifact_per_file_and_prefers_the_richer(
    made: tuple[Path, Path, list[VariantOutcome]],
) -> None:
    model, root, _ = made
    family = variants_of(model, root)
    plain = inspect_model(model)
    merged = merge_artifacts([plain, *family.artifacts, family.artifacts[1]])
    assert [a.sha256 for a in merged] == [a.sha256 for a in family.artifacts]
    assert merged[0].host_accuracy == family.source.host_accuracy  # the richer duplicate won
    assert merged[0].name == plain.name
    other = dataclasses.replace(plain, sha256="0" * 64, path=str(model.with_suffix(".tflite")))
    names = [a.name for a in merge_artifacts([plain, other])]
    assert names == ["digits_mlp.onnx", "digits_mlp.tflite"]  # same stem: named by file


def test_report_shows_size_host_and_device_accuracy_recipe_and_flag(
    made: tuple[Path, Path, list[VariantOutcome]], tmp_path: Path
) -> None:
    model, root, _ = made
    family = variants_of(model, root)
    jobs = tuple(_failed_job(i, a) for i, a in enumerate(family.artifacts))
    record = RunRecord("v", "2026-11-30T15:00:00+00:00", "c", "0.1.0", "h", jobs)
    assert has_variants(record)
    frame = jobs_dataframe(record)
    assert list(frame["recipe"].fillna("")) == [""] + [a.recipe for a, _ in family.variants]
    assert list(frame["parent_sha256"].iloc[1:]) == [family.source.sha256] * 3
    rows = display_rows(record)
    flagged = [r["recipe"] for r in rows if r["flagged"] == "FLAGGED"]
    assert flagged == ["prune:sparsity=0.5,structured=true"]
    assert rows[0]["host_accuracy"].endswith("% top1")

    paths = write_report(record, tmp_path / "report")
    html = paths.index_html.read_text()
    assert "<th>Recipe</th>" in html and "Host accuracy" in html
    assert html.count('class="badge flagged"') == 1
    assert "<code>prune:sparsity=0.5,structured=true</code>" in html
    summary = paths.summary_md.read_text()
    assert "| Recipe | Size B | Host acc |" in summary
    assert summary.count("⚑ FLAGGED") == 1
    csv_rows = list(csv.DictReader(paths.results_csv.open()))
    assert [r["recipe"] for r in csv_rows][1:] == [a.recipe for a, _ in family.variants]
    assert float(csv_rows[1]["host_accuracy"]) == family.variants[0][0].host_accuracy

    plain = RunRecord("q", "2026-11-30T15:00:00+00:00", "c", "0.1.0", "h",
                      (_failed_job(0, inspect_model(MODEL)),))  # fmt: skip
    assert not has_variants(plain)
    plain_html = write_report(plain, tmp_path / "plain").index_html.read_text()
    assert "<th>Recipe</th>" not in plain_html and "badge flagged" not in plain_html
    assert "Recipe" not in (tmp_path / "plain" / "summary.md").read_text()
