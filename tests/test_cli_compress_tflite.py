"""`harness compress` on a Keras file / SavedModel and `harness bench --variants-of` of it, end to end.

A small digits MLP is trained (seeded) in Keras once per module and saved as ``.keras`` and as a
SavedModel; every command is a real subprocess (`python -m harness`) with the store in a temporary
directory: real TFLite conversion, real ai_edge_litert runner on the local device, real SQLite.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from harness.artifacts import sha256_file
from harness.compress import read_manifest
from harness.compress.toy_models import digits_data
from harness.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, CompressionError
from harness.results.store import ResultStore
from harness.results.store_schema import artifacts_table
from harness.variants import find_variants, variants_of

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
keras = pytest.importorskip("keras", reason="the TFLite recipes are the optional tf extra")

QUICK = ["--runs", "10", "--warmup", "2", "--min-duration-s", "0.05"]
GOOD = ["tflite-fp16", "tflite-int8:io=float"]  # float I/O: the runner feeds the float eval set
SLUGS = {"tflite-fp16", "tflite-int8_io-float"}
PARAMS = 64 * 32 + 32 + 32 * 10 + 10


def harness(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")  # wide enough that table cells are not folded
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def failed_lines(stderr: str) -> list[str]:
    # TensorFlow's converter writes its own lines to stderr; harness's are the "failed:" ones
    return [line for line in stderr.splitlines() if line.startswith("failed:")]


def store_rows(db: Path) -> dict[str, Any]:
    store = ResultStore(db)
    with store._engine.connect() as conn:
        rows = {r.sha256: r for r in conn.execute(select(artifacts_table))}
    store.close()
    return rows


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A trained digits MLP as digits.keras and as a SavedModel, plus calib/eval npz files."""
    work = tmp_path_factory.mktemp("compress-tflite-cli")
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
        "work": work,
        "keras": work / "digits.keras",
        "saved_model": work / "digits_sm",
        "calib": work / "calib.npz",
        "eval": work / "eval.npz",
    }
    model.save(paths["keras"])
    model.export(str(paths["saved_model"]), format="tf_saved_model", verbose=False)
    np.savez(paths["calib"], input=data.train_x[:200])
    np.savez(paths["eval"], input=data.eval_x, labels=data.eval_y)
    return paths


@pytest.fixture(scope="module")
def compressed(source: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    """digits.keras compressed with two TFLite recipes and one ONNX recipe it cannot take."""
    recipes = [arg for r in [*GOOD, "fp16"] for arg in ("--recipe", r)]
    return harness(
        "compress", str(source["keras"]), *recipes, "--calib", str(source["calib"]),
        "--eval", str(source["eval"]), "--db", str(source["work"] / "results.sqlite"),
        cwd=source["work"],
    )  # fmt: skip


def test_compress_keras_makes_tflite_variants_and_reports_the_onnx_recipe(
    source: dict[str, Path], compressed: subprocess.CompletedProcess[str]
) -> None:
    proc = compressed
    assert proc.returncode == EXIT_PARTIAL, proc.stderr
    [failed] = failed_lines(proc.stderr)  # exactly one line, for the one bad recipe
    assert "'fp16'" in failed and "ONNX" in failed and "tflite-fp16" in failed  # the hint
    keras_file = source["keras"]
    size = keras_file.stat().st_size
    [baseline] = [line for line in proc.stdout.splitlines() if "(baseline)" in line]
    # the baseline row comes from the manifests: the .keras bytes and its weight count
    assert f"{size:,}" in baseline and f"{PARAMS:,}" in baseline and "top1" in baseline
    assert "FAILED" in proc.stdout

    root = source["work"] / "variants" / keras_file.stem  # the default --out is ./variants
    assert {p.name for p in root.iterdir()} == SLUGS
    source_sha = sha256_file(keras_file)
    manifests = {slug: read_manifest(root / slug) for slug in SLUGS}
    for slug, manifest in manifests.items():
        model = root / slug / "model.tflite"
        assert model.read_bytes()[4:8] == b"TFL3"
        assert manifest.variant_sha256 == sha256_file(model)
        assert (manifest.source_sha256, manifest.source_size_bytes) == (source_sha, size)
        assert manifest.parameter_count == PARAMS and not manifest.flagged

    rows = store_rows(source["work"] / "results.sqlite")
    assert len(rows) == 1 + len(SLUGS)  # the source and each variant, nothing for fp16
    src = rows[source_sha]
    assert (src.format, src.size_bytes, src.parent_sha256) == ("keras", size, None)
    baseline_top1 = manifests["tflite-fp16"].fidelity.metrics[0].baseline  # type: ignore[union-attr]
    assert src.accuracy == pytest.approx(baseline_top1) and baseline_top1 > 0.9
    for manifest in manifests.values():
        row = rows[manifest.variant_sha256]
        assert (row.format, row.recipe, row.parent_sha256) == (
            "tflite",
            manifest.recipe,
            source_sha,
        )
        assert row.accuracy == manifest.fidelity.metrics[0].variant  # type: ignore[union-attr]
        assert row.manifest["variant_sha256"] == manifest.variant_sha256


def test_bench_variants_of_keras_benchmarks_each_tflite_variant(
    source: dict[str, Path], compressed: subprocess.CompletedProcess[str]
) -> None:
    assert compressed.returncode == EXIT_PARTIAL, compressed.stderr
    work, keras_file = source["work"], source["keras"]
    db = work / "bench.sqlite"  # another store: bench registers the family itself
    proc = harness(
        "bench", "--variants-of", str(keras_file), "--device", "local",
        "--eval", str(source["eval"]), *QUICK, "--db", str(db), "--out", str(work / "reports"),
        cwd=work,
    )  # fmt: skip
    assert proc.returncode == EXIT_OK, proc.stderr
    [note] = [line for line in proc.stderr.splitlines() if "runs on no device" in line]
    assert "digits.keras (keras)" in note and "only its 2 .tflite variant(s)" in note

    [report] = list((work / "reports").iterdir())
    rows = list(csv.DictReader((report / "results.csv").open()))
    assert sorted(r["recipe"] for r in rows) == sorted(GOOD)  # one job per variant, no baseline
    source_sha = sha256_file(keras_file)
    for row in rows:
        manifest = read_manifest(Path(row["model_path"]).parent)
        assert row["format"] == "tflite" and row["status"] == "ok"
        assert row["parent_sha256"] == source_sha and row["sha256"] == manifest.variant_sha256
        assert float(row["host_accuracy"]) == manifest.fidelity.metrics[0].variant  # type: ignore[union-attr]
        assert row["host_accuracy_metric"] == "top1" and float(row["median_ms"]) > 0
        # measured by the runner on the device (here: ai_edge_litert locally) on the eval set
        assert row["accuracy_metric"] == "top1" and float(row["accuracy"]) > 0.9
        assert abs(float(row["accuracy"]) - float(row["host_accuracy"])) < 0.02

    stored = store_rows(db)  # the source is registered for the parent link, never run
    assert stored[source_sha].format == "keras"
    family = variants_of(keras_file, work / "variants")
    assert not family.source_runnable and family.source.sha256 == source_sha
    assert [a.sha256 for a in family.artifacts] == [a.sha256 for a, _ in family.variants]


def test_compress_saved_model_directory(source: dict[str, Path], tmp_path: Path) -> None:
    saved_model = tmp_path / "digits_sm"
    shutil.copytree(source["saved_model"], saved_model)
    db = tmp_path / "results.sqlite"
    proc = harness("compress", f"{saved_model}/", "--recipe", "tflite-dynamic", "--out", "v",
                   "--db", str(db), "--json", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == EXIT_OK, proc.stderr
    payload = json.loads(proc.stdout)
    [variant] = payload["variants"]
    assert payload["errors"] == [] and variant["recipe"] == "tflite-dynamic"
    assert Path(variant["path"]) == (tmp_path / "v/digits_sm/tflite-dynamic/model.tflite").resolve()
    rows = store_rows(db)
    src = rows[variant["source_sha256"]]
    assert (src.format, src.size_bytes) == ("savedmodel", variant["source_size_bytes"])
    assert src.path == str(saved_model.resolve())
    assert rows[variant["variant_sha256"]].parent_sha256 == variant["source_sha256"]

    # the directory's hash pins its variants: found as they are, refused once it changes
    [found] = find_variants(saved_model, tmp_path / "v")
    assert found.path.name == "model.tflite" and found.manifest.recipe == "tflite-dynamic"
    (saved_model / "assets" / "extra.txt").write_text("changed")
    with pytest.raises(CompressionError, match="made from another version of digits_sm"):
        find_variants(saved_model, tmp_path / "v")


def test_compress_refuses_what_no_recipe_takes(source: dict[str, Path], tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "r.sqlite")]
    tflite = tmp_path / "m.tflite"
    tflite.write_bytes(b"\0\0\0\0TFL3" + bytes(64))
    proc = harness("compress", str(tflite), "--recipe", "tflite-fp16", *db, cwd=tmp_path)
    assert proc.returncode == EXIT_ERROR
    assert "takes an .onnx model, a .keras/.h5 file or a SavedModel directory" in proc.stderr
    missing = harness("compress", str(tmp_path / "gone_sm"), "--recipe", "tflite-fp16", *db,
                      cwd=tmp_path)  # fmt: skip
    assert missing.returncode == EXIT_ERROR and "gone_sm does not exist" in missing.stderr
    assert not (tmp_path / "variants").exists() and not (tmp_path / "r.sqlite").exists()
