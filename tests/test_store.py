"""The results store on real SQLite files: round trips, no overwrite, crash safety, errors."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, create_engine, inspect, text

from harness.errors import StoreError
from harness.results import store_schema
from harness.results.records import (
    JobResult,
    JobSettings,
    JobSpec,
    ModelArtifact,
    RunRecord,
    Verdict,
)
from harness.results.schema import parse_runner_document
from harness.results.store import ResultStore
from harness.results.store_export import CSV_COLUMNS
from harness.results.summarize import failed_job_result, job_result_from_document

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parent.parent


def _golden(name: str = "runner_doc_v1.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GOLDEN / name).read_text())
    return data


def _kept(raw: Any, golden: Any) -> bool:
    if isinstance(golden, dict):
        return isinstance(raw, dict) and all(
            k in raw and _kept(raw[k], v) for k, v in golden.items()
        )
    return bool(raw == golden)


def _assert_is_golden(raw: dict[str, Any] | None, golden: dict[str, Any]) -> None:
    """Every field of the hand-written file is kept unchanged (at any depth) except the version
    it was upgraded from; fields added since (with defaults) may appear beside them, exactly as
    the current parser fills them in."""
    assert raw is not None
    assert _kept(raw, {k: v for k, v in golden.items() if k != "schema_version"})
    assert raw == parse_runner_document(golden).to_json_dict()


def _spec(job_index: int, device: str = "local", doc: dict[str, Any] | None = None) -> JobSpec:
    model = (doc or _golden())["model"]
    artifact = ModelArtifact(
        name="mobilenetv2-12",
        path="models/mobilenetv2-12.onnx",
        format="onnx",
        sha256=model["sha256"],
        size_bytes=model["size_bytes"],
    )
    settings = JobSettings(
        threads=2,
        provider="cpu",
        warmup_runs=3,
        min_runs=30,
        min_duration_s=0.1,
        max_duration_s=10.0,
        shapes=(("input", "1x3x224x224"),),
    )
    return JobSpec(job_index=job_index, model=artifact, device_name=device, settings=settings)


def _ok_job(job_index: int = 0) -> JobResult:
    doc = parse_runner_document(_golden(), origin="golden")
    return job_result_from_document(_spec(job_index), doc, accuracy=0.718, accuracy_metric="top1")


def _record(
    run_id: str = "20261130-140000-a1b2", created_at: str = "2026-11-30T14:00:00+00:00"
) -> RunRecord:
    error_doc = parse_runner_document(_golden("runner_doc_v1_error.json"))
    failed = failed_job_result(_spec(1, device="pixel-7"), "unsupported_op: custom op", error_doc)
    unreachable = failed_job_result(_spec(2, device="rpi5"), "device rpi5 unreachable")
    return RunRecord(
        run_id=run_id,
        created_at=created_at,
        command="harness bench suite.yaml",
        harness_version="0.1.0",
        host="bench-host",
        jobs=(_ok_job(0), failed, unreachable),
        notes=("first run", "governor performance"),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultStore]:
    with ResultStore.open(tmp_path / "results.sqlite") as opened:
        yield opened


def test_job_result_from_golden_document() -> None:
    golden = _golden()
    job = _ok_job()
    assert job.status == "ok" and job.validity.verdict is Verdict.VALID
    assert job.samples_ms == tuple(ns / 1e6 for ns in golden["timing"]["latencies_ns"])
    assert job.latency is not None and job.latency.count == 40
    assert (job.init_ms, job.first_inference_ms, job.peak_memory_kb) == (84.213, 7.904, 98212)
    assert (job.runtime_name, job.runtime_version) == ("onnxruntime", "1.32.0")
    assert job.device_state["cpu_model"] == "AMD EPYC 7B13"
    _assert_is_golden(job.raw_document, golden)


def test_error_document_becomes_a_failed_invalid_job() -> None:
    doc = parse_runner_document(_golden("runner_doc_v1_error.json"))
    job = job_result_from_document(_spec(0), doc)
    assert job.status == "failed" and job.latency is None and job.samples_ms == ()
    assert job.error == (
        "unsupported_op (op TFLite_Detection_PostProcess): "
        "Encountered unresolved custom op: TFLite_Detection_PostProcess."
    )
    assert job.validity.verdict is Verdict.INVALID and job.validity.reasons == (job.error,)
    assert job.runtime_name == "ai_edge_litert"
    assert job.raw_document is not None and job.raw_document["status"] == "error"


def test_save_then_load_gives_equal_records(store: ResultStore) -> None:
    record = _record()
    store.save_run(record)
    loaded = store.load_run(record.run_id)
    assert loaded == record
    _assert_is_golden(loaded.jobs[0].raw_document, _golden())


def test_raw_samples_are_stored_as_the_exact_integers(store: ResultStore, tmp_path: Path) -> None:
    store.save_run(_record())
    engine = create_engine(f"sqlite:///{tmp_path / 'results.sqlite'}")
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT latency_ns, typeof(latency_ns) FROM samples WHERE job_index = 0 ORDER BY seq"
            )
        ).all()
    engine.dispose()
    assert [ns for ns, _ in rows] == _golden()["timing"]["latencies_ns"]
    assert {kind for _, kind in rows} == {"integer"}


def test_a_run_is_never_overwritten(store: ResultStore) -> None:
    record = _record()
    store.save_run(record)
    changed = RunRecord(**{**record.__dict__, "command": "something else", "jobs": ()})
    with pytest.raises(StoreError, match="already exists"):
        store.save_run(changed)
    with pytest.raises(StoreError, match="already exists"):
        store.begin_run(record.run_id, record.created_at, "x", "0.1.0", "h")
    assert store.load_run(record.run_id) == record


def test_save_run_is_all_or_nothing(store: ResultStore) -> None:
    bad = JobResult(**{**_ok_job(1).__dict__, "raw_document": {"schema": "something-else"}})
    record = RunRecord(**{**_record().__dict__, "jobs": (_ok_job(0), bad)})
    with pytest.raises(StoreError, match="refusing to store job 1"):
        store.save_run(record)
    assert store.latest_run_id() is None
    with pytest.raises(StoreError, match="no run"):
        store.load_run(record.run_id)


_CRASHING_WRITER = """
import os, sys
from harness.results import store as store_module
from tests.test_store import _ok_job
real_insert_job = store_module.insert_job
def insert_then_die(conn, run_id, job):
    real_insert_job(conn, run_id, job)
    if job.spec.job_index == 1:
        os._exit(3)  # killed mid-transaction: job 1's rows are written but not committed
store_module.insert_job = insert_then_die
s = store_module.ResultStore(sys.argv[1])
s.begin_run("run-crash", "2026-11-30T15:00:00+00:00", "harness bench", "0.1.0", "bench-host")
s.append_job("run-crash", _ok_job(0))
s.append_job("run-crash", _ok_job(1))
s.finish_run("run-crash")
"""


def test_jobs_appended_before_a_crash_survive(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    script = textwrap.dedent(_CRASHING_WRITER)
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], cwd=REPO, timeout=60, capture_output=True
    )
    assert done.returncode == 3, done.stderr.decode()
    with ResultStore(path) as store:
        record = store.load_run("run-crash")
        assert [job.spec.job_index for job in record.jobs] == [0]
        assert record.jobs[0] == _ok_job(0)
        [info] = store.list_runs()
        assert info.finished_at is None and info.job_count == 1
        store.append_job("run-crash", _ok_job(1))  # a resumed run can continue
        store.finish_run("run-crash")
        with pytest.raises(StoreError, match="is finished"):
            store.append_job("run-crash", _ok_job(2))
        assert len(store.load_run("run-crash").jobs) == 2


def test_append_job_refuses_unknown_runs_and_duplicate_jobs(store: ResultStore) -> None:
    with pytest.raises(StoreError, match="call begin_run first"):
        store.append_job("nope", _ok_job(0))
    store.begin_run("r", "2026-11-30T15:00:00+00:00", "harness bench", "0.1.0", "h")
    store.append_job("r", _ok_job(0))
    with pytest.raises(StoreError, match="already has a job 0"):
        store.append_job("r", _ok_job(0))


def test_golden_document_loads_through_the_store(store: ResultStore) -> None:
    golden_text = (GOLDEN / "runner_doc_v1.json").read_text()
    doc = parse_runner_document(golden_text, origin="golden file")
    job = job_result_from_document(_spec(0), doc)
    store.save_run(RunRecord("g", "2026-11-30T14:00:00+00:00", "c", "0.1.0", "h", (job,)))
    [loaded] = store.load_run("g").jobs
    _assert_is_golden(loaded.raw_document, json.loads(golden_text))
    assert loaded.latency == job.latency and loaded.validity == job.validity


def test_latest_and_list_runs_newest_first(store: ResultStore) -> None:
    assert store.latest_run_id() is None and store.list_runs() == []
    store.save_run(_record("old", "2026-11-29T10:00:00+00:00"))
    store.save_run(_record("new", "2026-11-30T10:00:00+00:00"))
    store.begin_run("empty", "2026-11-28T10:00:00+00:00", "harness bench", "0.1.0", "h")
    assert store.latest_run_id() == "new"
    runs = store.list_runs()
    assert [r.run_id for r in runs] == ["new", "old", "empty"]
    # the two failed jobs count as failed, not also as invalid (as the report counts them)
    assert (runs[0].job_count, runs[0].failed_count, runs[0].invalid_count) == (3, 2, 0)
    assert (runs[2].job_count, runs[2].finished_at) == (0, None)
    assert [r.run_id for r in store.list_runs(limit=1)] == ["new"]


def test_csv_export_has_one_row_per_job_with_summary_columns(store: ResultStore) -> None:
    record = _record()
    store.save_run(record)
    rows = list(csv.DictReader(io.StringIO(store.export_run(record.run_id, "csv"))))
    assert len(rows) == 3
    assert list(rows[0]) == CSV_COLUMNS
    for column in ("median_ms", "p90_ms", "p99_ms", "median_ci_low_ms", "verdict", "model_sha256"):
        assert column in CSV_COLUMNS
    latency = record.jobs[0].latency
    assert latency is not None
    assert float(rows[0]["median_ms"]) == latency.median_ms
    assert int(rows[0]["sample_count"]) == 40
    assert (rows[1]["status"], rows[1]["verdict"], rows[1]["median_ms"]) == (
        "failed",
        "INVALID",
        "",
    )
    assert rows[2]["reasons"] == "device rpi5 unreachable"


def test_json_and_samples_exports(store: ResultStore) -> None:
    record = _record()
    store.save_run(record)
    exported = json.loads(store.export_run(record.run_id, "json"))
    assert exported["run_id"] == record.run_id
    assert exported["jobs"][0]["validity"]["verdict"] == "VALID"
    _assert_is_golden(exported["jobs"][0]["raw_document"], _golden())
    rows = list(csv.DictReader(io.StringIO(store.export_samples_csv(record.run_id))))
    assert [int(r["latency_ns"]) for r in rows] == _golden()["timing"]["latencies_ns"]
    with pytest.raises(StoreError, match="unknown export format"):
        store.export_run(record.run_id, "xml")  # type: ignore[arg-type]


def test_register_artifact_keeps_identity_and_updates_extras(store: ResultStore) -> None:
    artifact = _spec(0).model
    store.register_artifact(artifact, recipe="int8-dynamic", recipe_params={"per_channel": True})
    store.register_artifact(artifact, accuracy=0.71)
    with store._engine.connect() as conn:
        row = conn.execute(
            store_schema.artifacts_table.select().where(
                store_schema.artifacts_table.c.sha256 == artifact.sha256
            )
        ).one()
    assert (row.recipe, row.recipe_params, row.accuracy) == (
        "int8-dynamic",
        {"per_channel": True},
        0.71,
    )
    with pytest.raises(TypeError, match="unknown artifact fields: colour"):
        store.register_artifact(artifact, colour="red")
    lying = ModelArtifact(artifact.name, artifact.path, "onnx", artifact.sha256, 1)
    with pytest.raises(StoreError, match="the hash is wrong"):
        store.register_artifact(lying)


def test_corrupt_database_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"definitely not an SQLite file\n" * 200)
    with pytest.raises(StoreError) as caught:
        ResultStore(path)
    assert str(path) in caught.value.message
    assert "not a database" in caught.value.message
    assert caught.value.hint is not None


def test_directory_instead_of_a_file_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unable to open database file") as caught:
        ResultStore(tmp_path)
    assert str(tmp_path) in caught.value.message


def test_locked_database_is_a_store_error_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    ResultStore(path).close()
    store = ResultStore(path, busy_timeout_s=0.1)
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match="locked") as caught:
            store.save_run(_record())
        assert str(path) in caught.value.message
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.latest_run_id() is None
    store.close()


def test_other_sqlite_databases_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StoreError, match="not a harness results store"):
        ResultStore(path)


def test_newer_store_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    ResultStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match="newer than this harness"):
        ResultStore(path)


def test_migrations_run_in_order_when_an_old_store_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "results.sqlite"
    current = store_schema.STORE_SCHEMA_VERSION
    with ResultStore(path) as old:
        old.save_run(_record())
        assert old.schema_version() == current

    def add_tag(conn: Connection) -> None:
        conn.execute(text("ALTER TABLE runs ADD COLUMN tag VARCHAR(32)"))

    monkeypatch.setattr(store_schema, "STORE_SCHEMA_VERSION", current + 1)
    monkeypatch.setitem(store_schema._MIGRATIONS, current, add_tag)
    with ResultStore(path) as new:
        assert new.schema_version() == current + 1
        assert new.load_run(_record().run_id) == _record()
    engine = create_engine(f"sqlite:///{path}")
    assert "tag" in {c["name"] for c in inspect(engine).get_columns("runs")}
    engine.dispose()


def _schema_of(path: Path) -> dict[str, Any]:
    engine = create_engine(f"sqlite:///{path}")
    inspector = inspect(engine)
    schema = {
        table: {
            "columns": [
                [c["name"], str(c["type"]), c["nullable"]] for c in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table)["constrained_columns"],
        }
        for table in sorted(inspector.get_table_names())
    }
    engine.dispose()
    return schema


def test_store_schema_matches_the_golden_v2(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    ResultStore(path).close()
    golden = json.loads((GOLDEN / "store_schema_v2.json").read_text())
    assert _schema_of(path) == golden, (
        "the store schema changed: bump STORE_SCHEMA_VERSION, add a migration to _MIGRATIONS, "
        "and write tests/golden/store_schema_v3.json"
    )


def test_a_v1_store_gains_the_latency_source_and_energy(tmp_path: Path) -> None:
    # a v1 store is exactly the v2 schema without jobs.latency_source and jobs.energy
    # (tests/golden/*_v1.json)
    path = tmp_path / "results.sqlite"
    with ResultStore(path) as store:
        store.save_run(_record())
    with sqlite3.connect(path) as conn:
        conn.execute("ALTER TABLE jobs DROP COLUMN latency_source")
        conn.execute("ALTER TABLE jobs DROP COLUMN energy")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    v1_schema = json.loads((GOLDEN / "store_schema_v1.json").read_text())
    assert _schema_of(path) == v1_schema
    with ResultStore(path) as store:
        assert store.schema_version() == 2
        loaded = store.load_run(_record().run_id)
    assert loaded == _record()
    summaries = [j.latency for j in loaded.jobs if j.latency is not None]
    assert summaries and all(s.source == "samples" for s in summaries)


def test_finish_run_appends_notes_gathered_during_the_run(store: ResultStore) -> None:
    store.begin_run("r", "2026-11-30T15:00:00+00:00", "harness bench", "0.1.0", "h", ["start"])
    store.append_job("r", _ok_job(0))
    store.finish_run("r", notes=["device rpi5: unreachable"])
    assert store.load_run("r").notes == ("start", "device rpi5: unreachable")
    [info] = store.list_runs()
    assert info.finished_at is not None
    with pytest.raises(StoreError, match="no run"):
        store.finish_run("missing")


def test_jobs_appended_from_several_device_threads(store: ResultStore) -> None:
    # harness.benchmark appends from one worker thread per device
    from concurrent.futures import ThreadPoolExecutor

    store.begin_run("t", "2026-11-30T15:00:00+00:00", "harness bench", "0.1.0", "h")
    jobs = [_ok_job(i) for i in range(8)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda job: store.append_job("t", job), jobs))
    store.finish_run("t")
    assert store.load_run("t").jobs == tuple(jobs)


# -- PostgreSQL: the same store code against a real server on loopback ---------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server (initdb + postgres on 127.0.0.1), stopped afterwards."""
    initdb, postgres = shutil.which("initdb"), shutil.which("postgres")
    if not initdb or not postgres:
        pytest.skip("PostgreSQL server binaries (initdb, postgres) are not installed")
    pytest.importorskip("psycopg", reason="pip install 'harness[postgres]'")
    # postgres refuses to run as root; as root, run it as the postgres system user, in a
    # directory that user can reach (pytest's tmp_path is private to root)
    user = "postgres" if os.geteuid() == 0 else None
    with tempfile.TemporaryDirectory(prefix="harness-pg-") as tmp:
        base = Path(tmp)
        if user:
            shutil.chown(base, user)
        yield from _run_postgres(initdb, postgres, base, user)


def _run_postgres(initdb: str, postgres: str, base: Path, user: str | None) -> Iterator[str]:
    data, port = base / "data", _free_port()
    done = subprocess.run(
        [initdb, "-D", str(data), "-A", "trust", "-U", "harness", "--no-sync", "-E", "UTF8"],
        user=user, capture_output=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    server = subprocess.Popen(
        [postgres, "-D", str(data), "-p", str(port), "-k", str(base),
         "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
        user=user, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("PostgreSQL did not start") from None
                time.sleep(0.1)
        yield f"postgresql+psycopg://harness@127.0.0.1:{port}/postgres"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.integration
def test_postgresql_round_trip(postgres_url: str) -> None:
    record = _record()
    for _attempt in range(50):  # the port opens a moment before connections are accepted
        try:
            store = ResultStore(postgres_url)
            break
        except StoreError as exc:
            if "starting up" not in exc.message and "refused" not in exc.message:
                raise
            time.sleep(0.1)
    with store:
        assert store.schema_version() == store_schema.STORE_SCHEMA_VERSION
        store.save_run(record)
        assert store.load_run(record.run_id) == record
        with pytest.raises(StoreError, match="already exists"):
            store.save_run(record)
        [info] = store.list_runs()
        assert (info.job_count, info.failed_count) == (3, 2)
        rows = list(csv.DictReader(io.StringIO(store.export_samples_csv(record.run_id))))
        assert [int(r["latency_ns"]) for r in rows] == _golden()["timing"]["latencies_ns"]
    with ResultStore(postgres_url) as reopened:  # an existing store opens without migration
        assert reopened.latest_run_id() == record.run_id


def test_tampered_samples_are_detected_on_load(store: ResultStore, tmp_path: Path) -> None:
    store.save_run(_record())
    with sqlite3.connect(tmp_path / "results.sqlite") as conn:
        conn.execute("UPDATE samples SET latency_ns = 1 WHERE job_index = 0 AND seq = 5")
    with pytest.raises(StoreError, match="samples table and the raw document disagree"):
        store.load_run(_record().run_id)


def test_in_memory_store() -> None:
    with ResultStore(":memory:") as store:
        store.save_run(_record())
        assert store.load_run(_record().run_id) == _record()


def test_unknown_run_is_a_clear_error(store: ResultStore) -> None:
    for call in (store.load_run, store.export_samples_csv, store.export_run):
        with pytest.raises(StoreError, match=r"no run missing-run in .*results\.sqlite"):
            call("missing-run")


def test_the_store_keeps_every_record_field() -> None:
    # A field added to these records must be stored too (a new column and a migration), or a
    # round trip would silently drop it. Update this list only together with the store.
    import dataclasses

    stored = {
        JobResult: {"spec", "status", "error", "runtime_name", "runtime_version", "init_ms",
                    "first_inference_ms", "peak_memory_kb", "latency", "validity", "samples_ms",
                    "accuracy", "accuracy_metric", "fallback_to_cpu", "device_state",
                    "raw_document", "energy"},
        JobSpec: {"job_index", "model", "device_name", "settings", "eval_file"},
        # recipe/parent_sha256/host_accuracy: artifact columns; host_accuracy_metric and
        # fidelity_flagged: read from the manifest registered with the artifact
        ModelArtifact: {"name", "path", "format", "sha256", "size_bytes", "recipe",
                        "parent_sha256", "host_accuracy", "host_accuracy_metric",
                        "fidelity_flagged"},
        RunRecord: {"run_id", "created_at", "command", "harness_version", "host", "jobs", "notes"},
    }  # fmt: skip
    for cls, names in stored.items():
        assert {f.name for f in dataclasses.fields(cls)} == names, cls.__name__


def test_energy_summary_round_trips(store: ResultStore) -> None:
    from harness.power.energy import EnergySummary

    energy = EnergySummary(
        source="odpm", scope="rails", method="counter", inferences=412, window_s=3.07,
        avg_power_w=2.91, gross_energy_j=8.93, gross_energy_per_inference_mj=21.7,
        net_energy_per_inference_mj=9.4, inferences_per_joule=46.1, idle_power_w=1.65,
        idle_power_std_w=0.02, sample_rate_hz=9.8, update_period_s=0.1,
        per_channel_energy_j=(("S2M_VDD_CPUCL2", 4.1), ("VSYS_PWR_DISPLAY", 0.4)),
        quality_flags=("idle baseline shorter than 30 s",),
    )  # fmt: skip
    job = dataclasses.replace(_ok_job(0), energy=energy)
    store.begin_run("e", "2026-11-30T15:00:00+00:00", "harness bench", "0.1.0", "h")
    store.append_job("e", job)
    store.finish_run("e")
    [loaded] = store.load_run("e").jobs
    assert loaded.energy == energy
    assert loaded == job
