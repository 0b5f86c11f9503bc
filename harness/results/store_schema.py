"""The results store's tables, their version and migrations, and the rows <-> records mapping.

:mod:`harness.results.store` is the API; this module is what the database looks like. Changing a
table means: bump :data:`STORE_SCHEMA_VERSION`, add ``_MIGRATIONS[old] = function(connection)``
that upgrades a store of the old version in place, and regenerate the golden
``tests/golden/store_schema_v<N>.json`` (the test that compares it fails until you do).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import RowMapping

from harness.errors import HarnessError, StoreError
from harness.power.energy import energy_from_json, energy_to_json
from harness.results.records import (
    JobResult,
    JobSettings,
    JobSpec,
    LatencySummary,
    ModelArtifact,
    Validity,
    Verdict,
)
from harness.results.schema import parse_runner_document

STORE_SCHEMA_VERSION = 2


def _add_latency_source(conn: Connection) -> None:
    """v1 -> v2: ``LatencySummary.source`` (every v1 summary was computed from samples) and
    ``JobResult.energy`` (v1 stores measured no power: NULL)."""
    conn.execute(text("ALTER TABLE jobs ADD COLUMN latency_source VARCHAR(16)"))
    conn.execute(text("UPDATE jobs SET latency_source = 'samples' WHERE sample_count IS NOT NULL"))
    conn.execute(text("ALTER TABLE jobs ADD COLUMN energy JSON"))


# version v -> function(connection) upgrading a store of version v to v + 1, run inside the
# opening transaction. Add one entry (and bump STORE_SCHEMA_VERSION) per schema change.
_MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _add_latency_source}

_JSON = JSON(none_as_null=True)
_NS = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER in SQLite, BIGINT elsewhere
SUMMARY_FIELDS = [f.name for f in dataclasses.fields(LatencySummary)]
# Summary fields that are never None: NaN there means "the native tool did not print it"
_NAN_WHEN_NULL = [f.name for f in dataclasses.fields(LatencySummary) if f.type == "float"]


def summary_column(field_name: str) -> str:
    """The column holding a LatencySummary field (``count`` is ``sample_count``, ``source`` is
    ``latency_source``)."""
    return {"count": "sample_count", "source": "latency_source"}.get(field_name, field_name)


def _summary_type(field_name: str) -> Integer | String | Float:
    return Integer() if field_name == "count" else String(16) if field_name == "source" else Float()


metadata = MetaData()
meta_table = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)  # fmt: skip
runs_table = Table(
    "runs", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("created_at", String(40), nullable=False),
    Column("finished_at", String(40)),  # NULL: the run is in progress or its process died
    Column("command", Text, nullable=False),
    Column("harness_version", String(40), nullable=False),
    Column("host", String(255), nullable=False),
    Column("notes", _JSON, nullable=False),
)  # fmt: skip
devices_table = Table(
    "devices", metadata,
    Column("name", String(255), primary_key=True),
    Column("kind", String(32)),
    Column("description", Text),
    Column("first_seen", String(40), nullable=False),
)  # fmt: skip
artifacts_table = Table(
    "artifacts", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("path", Text, nullable=False),
    Column("format", String(16), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("parent_sha256", String(64)),  # the model a compressed artifact was made from
    Column("recipe", Text),  # chains of recipes can be long
    Column("recipe_params", _JSON),
    Column("accuracy", Float),
    Column("manifest", _JSON),
    Column("first_seen", String(40), nullable=False),
)  # fmt: skip
jobs_table = Table(
    "jobs", metadata,
    Column("run_id", String(64), ForeignKey("runs.run_id"), primary_key=True),
    Column("job_index", Integer, primary_key=True),
    Column("model_sha256", String(64), ForeignKey("artifacts.sha256"), nullable=False),
    Column("model_name", String(255), nullable=False),  # as this job named it
    Column("model_path", Text, nullable=False),
    Column("device_name", String(255), ForeignKey("devices.name"), nullable=False),
    Column("settings", _JSON, nullable=False),
    Column("eval_file", Text),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("runtime_name", String(64)),
    Column("runtime_version", String(64)),
    Column("init_ms", Float),
    Column("first_inference_ms", Float),
    Column("peak_memory_kb", BigInteger),
    *(
        Column(summary_column(name), _summary_type(name))
        for name in SUMMARY_FIELDS
    ),
    Column("verdict", String(16), nullable=False),
    Column("validity_reasons", _JSON, nullable=False),
    Column("validity_warnings", _JSON, nullable=False),
    Column("accuracy", Float),
    Column("accuracy_metric", String(64)),
    Column("fallback_to_cpu", Boolean, nullable=False),
    Column("device_state", _JSON, nullable=False),
    Column("raw_document", _JSON),  # the runner JSON exactly as validated
    Column("energy", _JSON),  # harness.power.energy.EnergySummary; NULL: power not measured
)  # fmt: skip
samples_table = Table(
    "samples", metadata,
    Column("run_id", String(64), primary_key=True),
    Column("job_index", Integer, primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("latency_ns", _NS, nullable=False),
    ForeignKeyConstraint(["run_id", "job_index"], ["jobs.run_id", "jobs.job_index"]),
)  # fmt: skip


ARTIFACT_EXTRAS = ("parent_sha256", "recipe", "recipe_params", "accuracy", "manifest")


def utc_now() -> str:
    """Now, UTC, ISO 8601 to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def create_or_migrate(conn: Connection, location: str) -> None:
    """Create the tables in an empty database, or migrate an older store to the current version."""
    inspector = inspect(conn)
    if not inspector.has_table("meta"):
        others = inspector.get_table_names()
        if others:
            raise StoreError(
                f"{location} is a database but not a harness results store "
                f"(it has tables {', '.join(sorted(others)[:5])})"
            )
        metadata.create_all(conn)
        conn.execute(
            insert(meta_table).values(key="schema_version", value=str(STORE_SCHEMA_VERSION))
        )
        return
    version = read_schema_version(conn)
    if version > STORE_SCHEMA_VERSION:
        raise StoreError(
            f"{location} has store schema version {version}, newer than this harness "
            f"understands ({STORE_SCHEMA_VERSION})",
            hint="upgrade harness",
        )
    if version < 1 or any(v not in _MIGRATIONS for v in range(version, STORE_SCHEMA_VERSION)):
        raise StoreError(f"{location} has store schema version {version} with no migration path")
    while version < STORE_SCHEMA_VERSION:
        _MIGRATIONS[version](conn)
        version += 1
        conn.execute(
            update(meta_table)
            .where(meta_table.c.key == "schema_version")
            .values(value=str(version))
        )


def read_schema_version(conn: Connection) -> int:
    """The version in the ``meta`` table (0 if it is missing)."""
    row = conn.execute(
        select(meta_table.c.value).where(meta_table.c.key == "schema_version")
    ).first()
    return int(row[0]) if row else 0


def insert_run(
    conn: Connection,
    run_id: str,
    created_at: str,
    command: str,
    harness_version: str,
    host: str,
    notes: Sequence[str],
) -> None:
    """Insert a run row; an existing ``run_id`` raises StoreError (runs are never overwritten)."""
    exists = conn.execute(select(runs_table.c.run_id).where(runs_table.c.run_id == run_id)).first()
    if exists:
        raise StoreError(
            f"run {run_id} already exists; a stored run is never overwritten",
            hint="use a new run id",
        )
    conn.execute(
        insert(runs_table).values(
            run_id=run_id,
            created_at=created_at,
            command=command,
            harness_version=harness_version,
            host=host,
            notes=list(notes),
        )
    )


def _insert_if_absent(conn: Connection, table: Table, values: dict[str, Any]) -> None:
    """INSERT that leaves an existing row alone, so two writers registering the same device or
    artifact at once do not fail (ON CONFLICT DO NOTHING in SQLite and PostgreSQL)."""
    if conn.dialect.name == "sqlite":
        conn.execute(sqlite_insert(table).values(**values).on_conflict_do_nothing())
    elif conn.dialect.name == "postgresql":
        conn.execute(postgresql_insert(table).values(**values).on_conflict_do_nothing())
    else:
        conn.execute(insert(table).values(**values))


def ensure_device(
    conn: Connection, name: str, *, kind: str | None = None, description: str | None = None
) -> None:
    """Record a device if it is new; given kind/description replace the stored ones."""
    given = {k: v for k, v in (("kind", kind), ("description", description)) if v is not None}
    _insert_if_absent(conn, devices_table, {"name": name, "first_seen": utc_now(), **given})
    if given:
        conn.execute(update(devices_table).where(devices_table.c.name == name).values(**given))


def ensure_artifact(conn: Connection, artifact: ModelArtifact, extra: Mapping[str, Any]) -> None:
    """Record a model file if it is new (refusing a known hash with another size); given
    ``extra`` columns replace the stored ones."""
    table = artifacts_table
    given = {k: v for k, v in extra.items() if v is not None}
    _insert_if_absent(conn, table, {
        "sha256": artifact.sha256, "name": artifact.name, "path": artifact.path,
        "format": artifact.format, "size_bytes": artifact.size_bytes, "first_seen": utc_now(),
    })  # fmt: skip
    stored = conn.execute(
        select(table.c.size_bytes).where(table.c.sha256 == artifact.sha256)
    ).scalar_one()
    if stored != artifact.size_bytes:
        raise StoreError(
            f"artifact {artifact.sha256[:12]} is stored with {stored} "
            f"bytes but {artifact.path} has {artifact.size_bytes}; the hash is wrong"
        )
    if given:
        conn.execute(update(table).where(table.c.sha256 == artifact.sha256).values(**given))


def artifact_extras(artifact: ModelArtifact) -> dict[str, Any]:
    """The compression fields a job's artifact carries, as artifact columns (None: not set)."""
    return {
        "recipe": artifact.recipe,
        "parent_sha256": artifact.parent_sha256,
        "accuracy": artifact.host_accuracy,
    }


def insert_job(conn: Connection, run_id: str, job: JobResult) -> None:
    """Insert a job, its artifact and device if new, and its raw samples (integer ns).

    The raw document is validated first, so whatever is stored re-validates when loaded.
    """
    spec = job.spec
    if job.raw_document is not None:
        try:
            parse_runner_document(job.raw_document, origin=f"job {spec.job_index}")
        except HarnessError as exc:
            raise StoreError(
                f"refusing to store job {spec.job_index} of run {run_id}: {exc.message}"
            ) from exc
    taken = conn.execute(
        select(jobs_table.c.job_index).where(
            jobs_table.c.run_id == run_id, jobs_table.c.job_index == spec.job_index
        )
    ).first()
    if taken:
        raise StoreError(f"run {run_id} already has a job {spec.job_index}")
    ensure_artifact(conn, spec.model, artifact_extras(spec.model))
    ensure_device(conn, spec.device_name)
    conn.execute(insert(jobs_table).values(**_job_row(run_id, job)))
    if job.samples_ms:
        # Stored at nanosecond resolution: ms values made from integer ns round-trip exactly.
        conn.execute(
            insert(samples_table),
            [
                {
                    "run_id": run_id,
                    "job_index": spec.job_index,
                    "seq": i,
                    "latency_ns": round(ms * 1_000_000),
                }
                for i, ms in enumerate(job.samples_ms)
            ],
        )


def _job_row(run_id: str, job: JobResult) -> dict[str, Any]:
    spec = job.spec
    latency = dataclasses.asdict(job.latency) if job.latency else {}
    return {
        "run_id": run_id,
        "job_index": spec.job_index,
        "model_sha256": spec.model.sha256,
        "model_name": spec.model.name,
        "model_path": spec.model.path,
        "device_name": spec.device_name,
        "settings": jsonable(dataclasses.asdict(spec.settings)),
        "eval_file": spec.eval_file,
        "status": job.status,
        "error": job.error,
        "runtime_name": job.runtime_name,
        "runtime_version": job.runtime_version,
        "init_ms": job.init_ms,
        "first_inference_ms": job.first_inference_ms,
        "peak_memory_kb": job.peak_memory_kb,
        **{summary_column(name): latency.get(name) for name in SUMMARY_FIELDS},
        "verdict": job.validity.verdict.value,
        "validity_reasons": list(job.validity.reasons),
        "validity_warnings": list(job.validity.warnings),
        "accuracy": job.accuracy,
        "accuracy_metric": job.accuracy_metric,
        "fallback_to_cpu": job.fallback_to_cpu,
        "device_state": jsonable(job.device_state),
        "raw_document": job.raw_document,
        "energy": jsonable(energy_to_json(job.energy)) if job.energy is not None else None,
    }


def samples_by_job(conn: Connection, run_id: str) -> dict[int, list[int]]:
    """A run's raw samples in nanoseconds, by job_index, in the order they were measured."""
    rows = conn.execute(
        select(samples_table.c.job_index, samples_table.c.latency_ns)
        .where(samples_table.c.run_id == run_id)
        .order_by(samples_table.c.job_index, samples_table.c.seq)
    )
    grouped: dict[int, list[int]] = {}
    for job_index, ns in rows:
        grouped.setdefault(job_index, []).append(int(ns))
    return grouped


def _job_from_row(row: RowMapping, samples_ns: list[int], metric: str | None) -> JobResult:
    where = f"stored job {row['run_id']}/{row['job_index']}"
    raw = row["raw_document"]
    if raw is not None:
        try:
            raw = parse_runner_document(raw, origin=where).to_json_dict()
        except HarnessError as exc:
            raise StoreError(f"{where} no longer validates: {exc.message}", hint=exc.hint) from exc
    timing = (raw or {}).get("timing") or {}
    # aggregate-only documents (native tools, runner schema v2) have no per-run samples; their
    # labelled single runs (min/max, first/last) stay in the document, not the samples table
    per_run = timing.get("samples_kind", "per_run") == "per_run"
    if row["status"] == "ok" and (timing.get("latencies_ns") if per_run else []) != samples_ns:
        raise StoreError(f"{where}: the samples table and the raw document disagree")
    settings = dict(row["settings"])
    settings["shapes"] = tuple(tuple(pair) for pair in settings.get("shapes", ()))
    settings["values"] = tuple(tuple(pair) for pair in settings.get("values", ()))
    manifest = row["model_manifest"] if isinstance(row["model_manifest"], Mapping) else {}
    flagged = manifest.get("flagged")
    model = ModelArtifact(
        name=row["model_name"],
        path=row["model_path"],
        format=row["model_format"],
        sha256=row["model_sha256"],
        size_bytes=row["model_size_bytes"],
        recipe=row["model_recipe"],
        parent_sha256=row["model_parent_sha256"],
        host_accuracy=row["model_accuracy"],
        host_accuracy_metric=metric,
        fidelity_flagged=flagged if isinstance(flagged, bool) else None,
    )
    spec = JobSpec(
        job_index=row["job_index"],
        model=model,
        device_name=row["device_name"],
        settings=JobSettings(**settings),
        eval_file=row["eval_file"],
    )
    latency = None
    if row["sample_count"] is not None:
        values = {name: row[summary_column(name)] for name in SUMMARY_FIELDS}
        for name in _NAN_WHEN_NULL:  # SQLite stores NaN (a statistic not printed) as NULL
            if values[name] is None:
                values[name] = math.nan
        latency = LatencySummary(**values)
    return JobResult(
        spec=spec,
        status=row["status"],
        error=row["error"],
        runtime_name=row["runtime_name"],
        runtime_version=row["runtime_version"],
        init_ms=row["init_ms"],
        first_inference_ms=row["first_inference_ms"],
        peak_memory_kb=row["peak_memory_kb"],
        latency=latency,
        validity=Validity(
            Verdict(row["verdict"]),
            reasons=tuple(row["validity_reasons"]),
            warnings=tuple(row["validity_warnings"]),
        ),
        samples_ms=tuple(ns / 1_000_000 for ns in samples_ns),
        accuracy=row["accuracy"],
        accuracy_metric=row["accuracy_metric"],
        fallback_to_cpu=bool(row["fallback_to_cpu"]),
        device_state=dict(row["device_state"]),
        raw_document=raw,
        energy=energy_from_json(row["energy"]) if row["energy"] is not None else None,
    )


def _manifest_metric(manifest: Any) -> str | None:
    """The primary task metric's name in a variant manifest (``fidelity.metrics[0].name``)."""
    fidelity = manifest.get("fidelity") if isinstance(manifest, Mapping) else None
    metrics = fidelity.get("metrics") if isinstance(fidelity, Mapping) else None
    if metrics and isinstance(metrics[0], Mapping) and isinstance(metrics[0].get("name"), str):
        return str(metrics[0]["name"])
    return None


def _host_metrics(conn: Connection, rows: Sequence[RowMapping]) -> dict[str, str | None]:
    """Per model sha256: the name of its host-side metric. A variant's is in its own manifest;
    a source model has none, so it is taken from a variant made from it (same eval, same metric)."""
    names = {row["model_sha256"]: _manifest_metric(row["model_manifest"]) for row in rows}
    sources = sorted(
        {r["model_sha256"] for r in rows if names[r["model_sha256"]] is None}
        & {r["model_sha256"] for r in rows if r["model_accuracy"] is not None}
    )
    if sources:
        children = conn.execute(
            select(artifacts_table.c.parent_sha256, artifacts_table.c.manifest).where(
                artifacts_table.c.parent_sha256.in_(sources)
            )
        )
        for parent, manifest in children:
            names[parent] = names[parent] or _manifest_metric(manifest)
    return names


def load_jobs(conn: Connection, run_id: str) -> tuple[JobResult, ...]:
    """Every job of a run in job_index order, documents re-validated."""
    art = artifacts_table.c
    query = (
        select(
            jobs_table,
            art.format.label("model_format"),
            art.size_bytes.label("model_size_bytes"),
            art.recipe.label("model_recipe"),
            art.parent_sha256.label("model_parent_sha256"),
            art.accuracy.label("model_accuracy"),
            art.manifest.label("model_manifest"),
        )
        .join(artifacts_table, art.sha256 == jobs_table.c.model_sha256)
        .where(jobs_table.c.run_id == run_id)
        .order_by(jobs_table.c.job_index)
    )
    rows = conn.execute(query).mappings().all()
    samples_ns = samples_by_job(conn, run_id)
    metrics = _host_metrics(conn, rows)
    return tuple(
        _job_from_row(row, samples_ns.get(row["job_index"], []), metrics[row["model_sha256"]])
        for row in rows
    )


def jsonable(value: Any) -> Any:
    """Plain JSON types: enums by value, tuples as lists, non-finite floats as null."""
    if isinstance(value, Verdict):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
