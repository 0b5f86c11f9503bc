"""The CLI end to end on the local device: real runner, real runtimes, real store and report.

Each command runs as a subprocess (`python -m harness`), so exit codes and what reaches the
terminal are tested exactly as a user sees them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.demo import demo_model_paths, digits_eval_path
from harness.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from harness.results.store import ResultStore

QUICK = ["--runs", "10", "--warmup", "2", "--min-duration-s", "0.05"]


def harness(*args: str, cwd: Path, env_extra: dict[str, str] | None = None,
            timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    return tmp_path


def _db(workdir: Path) -> list[str]:
    return ["--db", str(workdir / "results.sqlite")]


def test_demo_writes_a_report_with_accuracy_for_both_formats(workdir: Path) -> None:
    proc = harness("demo", "--quick", *_db(workdir), cwd=workdir)
    assert proc.returncode == EXIT_OK, proc.stderr
    reports = list((workdir / "reports").iterdir())
    assert len(reports) == 1
    index = reports[0] / "index.html"
    assert index.is_file()
    rows = list(csv.DictReader((reports[0] / "results.csv").open()))
    assert {r["model"] for r in rows} == {
        "digits_mlp.onnx", "digits_mlp.tflite", "mobilenet_tiny.onnx", "mobilenet_tiny.tflite"}
    digits = [r for r in rows if "digits_mlp" in r["model"]]
    assert {r["format"] for r in digits} == {"onnx", "tflite"}
    for row in digits:
        assert float(row["accuracy"]) >= 0.95
        assert float(row["median_ms"]) > 0
        assert float(row["init_ms"]) > 0
        assert float(row["peak_memory_kb"]) > 0


def test_bench_settings_product_report_and_export(workdir: Path) -> None:
    model = str(demo_model_paths()["digits_mlp.onnx"])
    proc = harness("bench", model, "--threads", "1", "--threads", "2", *QUICK, *_db(workdir),
                   "--json", cwd=workdir)
    assert proc.returncode == EXIT_OK, proc.stderr
    payload = json.loads(proc.stdout)
    assert sorted(job["threads"] for job in payload["jobs"]) == [1, 2]

    store = ResultStore(f"sqlite:///{workdir / 'results.sqlite'}")
    run_id = store.latest_run_id()
    assert run_id == payload["run_id"]
    record = store.load_run(run_id)
    assert all(len(job.samples_ms) >= 10 for job in record.jobs)

    report = harness("report", "--last", *_db(workdir), "--out", str(workdir / "again"), cwd=workdir)
    assert report.returncode == EXIT_OK, report.stderr
    assert (workdir / "again" / run_id / "index.html").is_file()

    export = harness("results", "export", "--last", "--format", "csv", *_db(workdir), cwd=workdir)
    assert export.returncode == EXIT_OK, export.stderr
    rows = list(csv.DictReader(io.StringIO(export.stdout)))
    assert len(rows) == 2


def test_corrupt_model_is_one_line_exit_1_and_keeps_stored_runs(workdir: Path) -> None:
    good = harness("bench", str(demo_model_paths()["digits_mlp.tflite"]), *QUICK, *_db(workdir),
                   "--no-report", cwd=workdir)
    assert good.returncode == EXIT_OK, good.stderr
    corrupt = workdir / "broken.onnx"
    corrupt.write_bytes(b"\x08\x01garbage" * 10)
    proc = harness("bench", str(corrupt), *_db(workdir), cwd=workdir)
    assert proc.returncode == EXIT_ERROR
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "broken.onnx" in lines[0]
    store = ResultStore(f"sqlite:///{workdir / 'results.sqlite'}")
    assert len(store.list_runs()) == 1


def test_malformed_profile_names_file_and_field(workdir: Path, harness_home: Path) -> None:
    devices = harness_home / "config" / "devices"
    devices.mkdir(parents=True)
    (devices / "oops.yaml").write_text("name: oops\ntransport:\n  kind: carrier-pigeon\n")
    proc = harness("bench", str(demo_model_paths()["digits_mlp.onnx"]), "--device", "oops",
                   *_db(workdir), cwd=workdir)
    assert proc.returncode == EXIT_ERROR
    assert "oops.yaml" in proc.stderr and "transport" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_runner_timeout_is_reported_and_the_run_kept(workdir: Path, harness_home: Path) -> None:
    devices = harness_home / "config" / "devices"
    devices.mkdir(parents=True)
    (devices / "impatient.yaml").write_text(
        "name: impatient\nbench:\n  timeout_s: 2\npower:\n  source: none\n")
    model = str(demo_model_paths()["digits_mlp.onnx"])
    proc = harness("bench", model, "--device", "impatient", "--min-duration-s", "30",
                   "--max-duration-s", "60", *_db(workdir), cwd=workdir)
    assert proc.returncode == EXIT_ERROR
    assert "did not finish within 2 s" in proc.stderr
    store = ResultStore(f"sqlite:///{workdir / 'results.sqlite'}")
    record = store.load_run(store.latest_run_id() or "")
    assert [job.status for job in record.jobs] == ["failed"]


def test_one_bad_model_fails_its_job_and_the_others_are_kept(workdir: Path) -> None:
    custom = Path(__file__).parent / "fixtures" / "models" / "custom_op.onnx"
    good = str(demo_model_paths()["digits_mlp.onnx"])
    proc = harness("bench", good, str(custom), *QUICK, *_db(workdir), cwd=workdir)
    assert proc.returncode == EXIT_PARTIAL, proc.stderr
    store = ResultStore(f"sqlite:///{workdir / 'results.sqlite'}")
    record = store.load_run(store.latest_run_id() or "")
    status = {job.spec.model.name: job for job in record.jobs}
    assert status["digits_mlp"].status == "ok"
    assert status["custom_op"].status == "failed"
    assert "MyCustomOp" in (status["custom_op"].error or "")
    html = next((workdir / "reports").iterdir()) / "index.html"
    assert "MyCustomOp" in html.read_text()


def test_eval_file_must_exist(workdir: Path) -> None:
    proc = harness("bench", str(demo_model_paths()["digits_mlp.onnx"]), "--eval",
                   str(workdir / "nope.npz"), *_db(workdir), cwd=workdir)
    assert proc.returncode == EXIT_ERROR
    assert "nope.npz" in proc.stderr


def test_eval_path_is_bundled() -> None:
    assert digits_eval_path().is_file()
