"""`harness compress` and `harness bench --variants-of` end to end, as a user runs them.

Each command is a real subprocess (`python -m harness`) on the demo digits model, with the store
in a temporary directory: real compression, real runner on the local device, real SQLite store,
real report files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from harness.artifacts import sha256_file
from harness.compress import TECHNIQUES, read_manifest
from harness.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from harness.results.store import ResultStore
from harness.results.store_schema import artifacts_table

DEMO = Path(__file__).resolve().parents[1] / "harness" / "demo"
QUICK = ["--runs", "10", "--warmup", "2", "--min-duration-s", "0.05"]
# cheap recipes (the library tests cover every recipe); structured pruning is FLAGGED on this MLP
GOOD = ["fp16", "int8-dynamic", "prune:sparsity=0.5,structured=true"]
SLUGS = {"fp16", "int8-dynamic", "prune_sparsity-0.5_structured-true"}


def harness(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")  # wide enough that table cells are not folded
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def _recipes(recipes: list[str]) -> list[str]:
    return [arg for r in recipes for arg in ("--recipe", r)]


@pytest.fixture(scope="module")
def compressed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:  # fmt: skip
    """The demo model (copied into a work dir) compressed with three recipes and one bad one."""
    work = tmp_path_factory.mktemp("compress-cli")
    model = work / "digits_mlp.onnx"
    shutil.copy(DEMO / "digits_mlp.onnx", model)
    proc = harness(
        "compress", str(model), *_recipes([*GOOD, "prune:sparsity=1.5"]),
        "--eval", str(DEMO / "digits_eval.npz"), "--metric", "top1",
        "--db", str(work / "results.sqlite"), cwd=work,
    )  # fmt: skip
    return work, model, proc


def test_compress_makes_variants_registers_them_and_reports_the_bad_recipe(
    compressed: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    work, model, proc = compressed
    assert proc.returncode == EXIT_PARTIAL, proc.stderr
    failed = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(failed) == 1, proc.stderr  # exactly one line, for the one bad recipe
    assert "prune" in failed[0] and "sparsity" in failed[0] and "1.5" in failed[0]
    for header in ("Recipe", "Size B", "Gzip B", "× smaller", "Params", "Non-zeros", "MACs",
                   "Top-1 agree", "Cosine", "Accuracy (drop)", "Flag"):  # fmt: skip
        assert header in proc.stdout
    assert "FLAGGED" in proc.stdout and "int8-dynamic" in proc.stdout

    root = work / "variants" / model.stem  # the default --out is ./variants
    assert {p.name for p in root.iterdir()} == SLUGS
    source_sha = sha256_file(model)
    manifests = {slug: read_manifest(root / slug) for slug in SLUGS}
    for slug, manifest in manifests.items():
        assert (root / slug / "model.onnx").is_file()
        assert manifest.source_sha256 == source_sha and manifest.slug == slug
    assert manifests["prune_sparsity-0.5_structured-true"].flagged

    store = ResultStore(work / "results.sqlite")
    with store._engine.connect() as conn:
        rows = {r.sha256: r for r in conn.execute(select(artifacts_table))}
    store.close()
    assert len(rows) == 1 + len(SLUGS)  # the source and each variant, nothing for the bad recipe
    assert rows[source_sha].recipe is None
    assert rows[source_sha].accuracy == pytest.approx(0.9694, abs=0.01)
    for manifest in manifests.values():
        row = rows[manifest.variant_sha256]
        assert (row.recipe, row.parent_sha256) == (manifest.recipe, source_sha)
        assert row.accuracy == manifest.fidelity.metrics[0].variant  # type: ignore[union-attr]
        assert row.manifest["variant_sha256"] == manifest.variant_sha256
        assert row.manifest["flagged"] is manifest.flagged


def test_compress_json_and_all_failed(tmp_path: Path) -> None:
    model = str(DEMO / "digits_mlp.onnx")
    db = ["--db", str(tmp_path / "results.sqlite")]
    proc = harness("compress", model, "--recipe", "fp16", "--out", "v", *db, "--json", cwd=tmp_path)
    assert proc.returncode == EXIT_OK, proc.stderr
    payload = json.loads(proc.stdout)
    [variant] = payload["variants"]
    assert variant["recipe"] == "fp16" and payload["errors"] == []
    assert (
        Path(variant["path"]) == (tmp_path / "v" / "digits_mlp" / "fp16" / "model.onnx").resolve()
    )
    assert variant["fidelity"]["input_source"] == "random"  # no --eval, no --calib

    bad = harness("compress", model, *_recipes(["prune:sparsity=1.5", "cluster:k=0"]), *db,
                  cwd=tmp_path)  # fmt: skip
    assert bad.returncode == EXIT_ERROR
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 2 and "sparsity" in lines[0] and "'k'" not in lines[0]
    assert "cluster" in lines[1]

    missing = harness("compress", model, *db, cwd=tmp_path)
    assert missing.returncode == EXIT_ERROR and "--recipe" in missing.stderr


def test_a_tflite_recipe_on_an_onnx_model_is_that_recipes_error(tmp_path: Path) -> None:
    proc = harness("compress", str(DEMO / "digits_mlp.onnx"), *_recipes(["tflite-fp16", "fp16"]),
                   "--db", str(tmp_path / "r.sqlite"), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == EXIT_PARTIAL, proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "'tflite-fp16'" in line and "TensorFlow" in line and ".keras" in line
    assert {p.name for p in (tmp_path / "variants" / "digits_mlp").iterdir()} == {"fp16"}


def test_list_recipes_names_every_technique_and_parameter(tmp_path: Path) -> None:
    proc = harness("compress", "--list-recipes", "--json", cwd=tmp_path)
    assert proc.returncode == EXIT_OK, proc.stderr
    listed = {(r["technique"], r["parameter"]) for r in json.loads(proc.stdout)}
    expected = {(t, p) for t, params in TECHNIQUES.items() for p in params}
    assert expected <= listed and {t for t, _ in listed} == set(TECHNIQUES)
    table = harness("compress", "--list-recipes", cwd=tmp_path)
    assert table.returncode == EXIT_OK
    for technique in TECHNIQUES:
        assert technique in table.stdout


def test_bench_variants_of_joins_recipe_and_accuracy_with_latency(
    compressed: tuple[Path, Path, subprocess.CompletedProcess[str]],
) -> None:
    work, model, _ = compressed
    db = ["--db", str(work / "bench.sqlite")]  # another store: bench registers the family itself
    proc = harness(
        "bench", str(model), "--variants-of", str(model), "--eval", str(DEMO / "digits_eval.npz"),
        *QUICK, *db, "--out", str(work / "reports"), cwd=work,
    )  # fmt: skip
    assert proc.returncode == EXIT_OK, proc.stderr
    [report] = list((work / "reports").iterdir())
    rows = list(csv.DictReader((report / "results.csv").open()))
    # the model given explicitly and as --variants-of runs once: baseline + one job per variant
    assert len(rows) == 1 + len(SLUGS)
    by_recipe = {r["recipe"]: r for r in rows}
    assert set(by_recipe) == {"", *GOOD}
    source_sha = sha256_file(model)
    for recipe in GOOD:
        row = by_recipe[recipe]
        manifest = read_manifest(Path(row["model_path"]).parent)
        assert row["parent_sha256"] == source_sha and row["sha256"] == manifest.variant_sha256
        assert float(row["host_accuracy"]) == manifest.fidelity.metrics[0].variant  # type: ignore[union-attr]
        assert row["host_accuracy_metric"] == "top1"
        assert row["fidelity_flagged"] == str(manifest.flagged)
        assert float(row["median_ms"]) > 0 and int(row["size_bytes"]) == manifest.size_bytes
        # measured on the device (here: the local runner), next to the host-side number
        assert 0.5 < float(row["accuracy"]) <= 1.0
        assert abs(float(row["accuracy"]) - float(row["host_accuracy"])) < 0.05
    baseline = by_recipe[""]
    assert baseline["sha256"] == source_sha and float(baseline["host_accuracy"]) > 0.9

    html = (report / "index.html").read_text()
    assert "<th>Recipe</th>" in html and "Host accuracy" in html
    assert html.count('class="badge flagged"') == 1
    assert "<code>prune:sparsity=0.5,structured=true</code>" in html

    # the stored run brings recipe, parent and host accuracy back for `report --last`
    again = harness("report", "--last", *db, "--out", str(work / "again"), cwd=work)
    assert again.returncode == EXIT_OK, again.stderr
    [rerendered] = list((work / "again").iterdir())
    rows_again = list(csv.DictReader((rerendered / "results.csv").open()))
    keys = ("model", "recipe", "parent_sha256", "host_accuracy", "host_accuracy_metric",
            "fidelity_flagged", "accuracy", "size_bytes")  # fmt: skip
    assert [{k: r[k] for k in keys} for r in rows_again] == [{k: r[k] for k in keys} for r in rows]
    assert (rerendered / "index.html").read_text().count('class="badge flagged"') == 1


def test_bench_variants_of_without_variants_is_a_clear_error(tmp_path: Path) -> None:
    proc = harness("bench", "--variants-of", str(DEMO / "digits_mlp.onnx"), *QUICK,
                   "--db", str(tmp_path / "r.sqlite"), cwd=tmp_path)  # fmt: skip
    assert proc.returncode == EXIT_ERROR
    assert "no variants of digits_mlp.onnx" in proc.stderr and "harness compress" in proc.stderr
    assert not (tmp_path / "reports").exists()
