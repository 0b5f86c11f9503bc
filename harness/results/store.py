"""The results store: every run, job and raw sample, in SQLite by default (PostgreSQL by URL).

Rules it keeps:

* A run is never overwritten: saving a run id that exists raises :class:`StoreError`.
* Results already measured are never lost: a long run calls :meth:`ResultStore.begin_run`, then
  :meth:`ResultStore.append_job` as each job finishes (one transaction per job), then
  :meth:`ResultStore.finish_run`. If the process dies, the jobs appended so far are there and the
  run simply has no ``finished_at``. :meth:`ResultStore.save_run` writes a whole run in one
  transaction, so a failure leaves nothing half-written.
* The runner document is the source of truth: it is stored exactly as validated and re-validated
  with :func:`parse_runner_document` (the same code as the device boundary) when loaded.
* The store's own schema is versioned in the ``meta`` table; ``_MIGRATIONS`` upgrades an older
  store one version at a time when it is opened (the asv ``update_to_N`` idea).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Engine, and_, case, create_engine, event, func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from harness.errors import HarnessError, StoreError
from harness.results.records import JobResult, ModelArtifact, RunRecord, Verdict
from harness.results.store_export import csv_text, run_to_csv, run_to_json
from harness.results.store_schema import (
    _MIGRATIONS,
    ARTIFACT_EXTRAS,
    STORE_SCHEMA_VERSION,
    create_or_migrate,
    ensure_artifact,
    ensure_device,
    insert_job,
    insert_run,
    jobs_table,
    load_jobs,
    read_schema_version,
    runs_table,
    samples_by_job,
    utc_now,
)

__all__ = ["STORE_SCHEMA_VERSION", "_MIGRATIONS", "ResultStore", "StoredRun"]

_RUN_INFO_COLUMNS = ("run_id", "created_at", "finished_at", "command", "host", "harness_version")


@dataclasses.dataclass(frozen=True)
class StoredRun:
    """One line of :meth:`ResultStore.list_runs`."""

    run_id: str
    created_at: str
    finished_at: str | None  # None: in progress, or the process died before finish_run
    command: str
    host: str
    harness_version: str
    job_count: int
    failed_count: int
    invalid_count: int


def _to_url(url_or_path: str | Path) -> str:
    text = str(url_or_path)
    if text == ":memory:":
        return "sqlite://"
    if isinstance(url_or_path, Path) or "://" not in text:
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    return text


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")  # SQLite leaves them off unless asked per connection
    cursor.close()


def _failure_hint(message: str) -> str | None:
    lowered = message.lower()
    if "not a database" in lowered or "malformed" in lowered:
        return "the file is not a harness results store; point --db at another file"
    if "locked" in lowered or "busy" in lowered:
        return "another process is writing to the store; wait for it or use another store"
    if "unable to open" in lowered:
        return "check that the path is a writable file, not a directory"
    return None


class ResultStore:
    """Runs, jobs, artifacts and raw samples in a SQLAlchemy database."""

    def __init__(self, url: str | Path, *, busy_timeout_s: float = 5.0) -> None:
        """Open (and create or migrate) the store at a SQLAlchemy URL or a SQLite file path."""
        try:
            parsed = make_url(_to_url(url))
        except ArgumentError as exc:
            raise StoreError(f"not a database URL: {url!r}") from exc
        self._sqlite = parsed.get_backend_name() == "sqlite"
        database = parsed.database or ""
        # where the store is, for messages: the file, or the URL without its password
        self.location = database if self._sqlite else parsed.render_as_string(hide_password=True)
        connect_args: dict[str, Any] = {"timeout": busy_timeout_s} if self._sqlite else {}
        if self._sqlite and database not in ("", ":memory:") and not database.startswith("file:"):
            self._make_parent(Path(database))
        try:
            self._engine: Engine = create_engine(parsed, connect_args=connect_args)
        except (ArgumentError, ImportError) as exc:  # unknown dialect or driver not installed
            unknown_scheme = "Can't load plugin" in str(exc)
            raise StoreError(
                f"cannot use the store {self.location}: {exc}",
                hint="use a file path, sqlite:///FILE or postgresql+psycopg://USER@HOST/DB"
                if unknown_scheme
                else "for PostgreSQL: pip install 'harness[postgres]'",
            ) from exc
        if self._sqlite:
            event.listen(self._engine, "connect", _sqlite_pragmas)
        try:
            self._ensure_schema()
        except StoreError:
            self._engine.dispose()
            raise

    @classmethod
    def open(cls, url: str | Path) -> ResultStore:
        """Open the store at ``url`` (a SQLAlchemy URL, or a path meaning a SQLite file)."""
        return cls(url)

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _make_parent(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the directory for the store {path}: {exc}") from exc

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        """Turn database failures into a one-line StoreError naming the store."""
        try:
            yield
        except HarnessError:
            raise
        except SQLAlchemyError as exc:
            orig = getattr(exc, "orig", None)
            message = str(orig if orig is not None else exc).splitlines()[0]
            raise StoreError(
                f"cannot {action}: {self.location}: {message}", hint=_failure_hint(message)
            ) from exc

    def _ensure_schema(self) -> None:
        with self._guard("open the results store"), self._engine.begin() as conn:
            create_or_migrate(conn, self.location)

    def schema_version(self) -> int:
        """The store schema version recorded in the ``meta`` table."""
        with self._guard("read the store version"), self._engine.connect() as conn:
            return read_schema_version(conn)

    # -- writing -----------------------------------------------------------------------------

    def begin_run(
        self,
        run_id: str,
        created_at: str,
        command: str,
        harness_version: str,
        host: str,
        notes: Sequence[str] = (),
    ) -> None:
        """Record the start of a run; raises StoreError if ``run_id`` already exists."""
        with self._guard(f"start run {run_id}"), self._engine.begin() as conn:
            insert_run(conn, run_id, created_at, command, harness_version, host, notes)

    def append_job(self, run_id: str, job: JobResult) -> None:
        """Persist one finished job of an open run, in its own transaction."""
        with (
            self._guard(f"save job {job.spec.job_index} of run {run_id}"),
            self._engine.begin() as conn,
        ):
            run = conn.execute(
                select(runs_table.c.finished_at).where(runs_table.c.run_id == run_id)
            ).first()
            if run is None:
                raise StoreError(f"no run {run_id} in {self.location}; call begin_run first")
            if run.finished_at is not None:
                raise StoreError(f"run {run_id} is finished; its jobs can no longer change")
            insert_job(conn, run_id, job)

    def finish_run(
        self, run_id: str, finished_at: str | None = None, *, notes: Sequence[str] = ()
    ) -> None:
        """Mark a run finished (``finished_at`` defaults to now, UTC), appending ``notes``
        gathered during the run to those given to :meth:`begin_run`."""
        with self._guard(f"finish run {run_id}"), self._engine.begin() as conn:
            stored = conn.execute(
                select(runs_table.c.notes).where(runs_table.c.run_id == run_id)
            ).first()
            if stored is None:
                raise StoreError(f"no run {run_id} in {self.location}")
            conn.execute(
                update(runs_table)
                .where(runs_table.c.run_id == run_id)
                .values(finished_at=finished_at or utc_now(), notes=[*stored.notes, *notes])
            )

    def save_run(self, record: RunRecord) -> None:
        """Write a whole run in one transaction; an existing ``run_id`` raises StoreError."""
        with self._guard(f"save run {record.run_id}"), self._engine.begin() as conn:
            insert_run(
                conn,
                record.run_id,
                record.created_at,
                record.command,
                record.harness_version,
                record.host,
                record.notes,
            )
            for job in record.jobs:
                insert_job(conn, record.run_id, job)
            conn.execute(
                update(runs_table)
                .where(runs_table.c.run_id == record.run_id)
                .values(finished_at=utc_now())
            )

    def register_artifact(self, artifact: ModelArtifact, **extra: Any) -> None:
        """Record a model file; ``extra`` sets any of parent_sha256, recipe, recipe_params,
        accuracy, manifest (given values replace stored ones; the first name/path are kept)."""
        unknown = sorted(set(extra) - set(ARTIFACT_EXTRAS))
        if unknown:
            raise TypeError(f"unknown artifact fields: {', '.join(unknown)}")
        with self._guard(f"register artifact {artifact.sha256[:12]}"), self._engine.begin() as conn:
            ensure_artifact(conn, artifact, extra)

    def register_device(
        self, name: str, kind: str | None = None, description: str | None = None
    ) -> None:
        """Record a device (kind: "local", "ssh", "adb"); given values replace stored ones."""
        with self._guard(f"register device {name}"), self._engine.begin() as conn:
            ensure_device(conn, name, kind=kind, description=description)

    # -- reading -----------------------------------------------------------------------------

    def load_run(self, run_id: str) -> RunRecord:
        """Rebuild a run; each stored runner document is re-validated on the way."""
        with self._guard(f"load run {run_id}"), self._engine.connect() as conn:
            run = conn.execute(select(runs_table).where(runs_table.c.run_id == run_id)).first()
            if run is None:
                raise StoreError(
                    f"no run {run_id} in {self.location}",
                    hint="list the stored runs with `harness results list`",
                )
            jobs = load_jobs(conn, run_id)
        notes = tuple(run.notes)
        if run.finished_at is None:  # a report of 1 job of 4 must not look like a whole run
            notes += (
                f"unfinished run: interrupted, crashed or still running; {len(jobs)} "
                f"job{'s' if len(jobs) != 1 else ''} stored so far",
            )
        return RunRecord(
            run_id=run.run_id,
            created_at=run.created_at,
            command=run.command,
            harness_version=run.harness_version,
            host=run.host,
            jobs=jobs,
            notes=notes,
        )

    def latest_run_id(self) -> str | None:
        """The most recently created run's id, or None for an empty store."""
        with self._guard("find the latest run"), self._engine.connect() as conn:
            return conn.execute(
                select(runs_table.c.run_id)
                .order_by(runs_table.c.created_at.desc(), runs_table.c.run_id.desc())
                .limit(1)
            ).scalar()

    def list_runs(self, limit: int = 20) -> list[StoredRun]:
        """The newest ``limit`` runs with their job counts, newest first."""
        jobs = jobs_table.c
        query = (
            select(
                *(runs_table.c[name] for name in _RUN_INFO_COLUMNS),
                func.count(jobs.job_index).label("job_count"),
                func.coalesce(func.sum(case((jobs.status != "ok", 1), else_=0)), 0).label(
                    "failed_count"
                ),
                # a failed job is counted as failed only, as in the report ("0 invalid, 1 failed")
                func.coalesce(
                    func.sum(
                        case(
                            (and_(jobs.status == "ok", jobs.verdict == Verdict.INVALID.value), 1),
                            else_=0,
                        )
                    ),
                    0,
                ).label("invalid_count"),
            )
            .outerjoin(jobs_table, jobs.run_id == runs_table.c.run_id)
            .group_by(runs_table.c.run_id)
            .order_by(runs_table.c.created_at.desc(), runs_table.c.run_id.desc())
            .limit(limit)
        )
        with self._guard("list runs"), self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            StoredRun(**{f.name: row[f.name] for f in dataclasses.fields(StoredRun)})
            for row in rows
        ]

    def export_run(self, run_id: str, fmt: Literal["csv", "json"] = "csv") -> str:
        """The run as CSV (one row per job, the columns of ``store_export.CSV_COLUMNS``) or as
        one JSON document with every job, sample and raw runner document."""
        record = self.load_run(run_id)
        if fmt == "json":
            return run_to_json(record)
        if fmt == "csv":
            return run_to_csv(record)
        raise StoreError(f"unknown export format {fmt!r}", hint="use csv or json")

    def export_samples_csv(self, run_id: str) -> str:
        """Every raw sample of a run: run_id, job_index, seq, latency_ns, latency_ms."""
        with self._guard(f"export samples of run {run_id}"), self._engine.connect() as conn:
            known = conn.execute(select(runs_table.c.run_id).where(runs_table.c.run_id == run_id))
            if known.first() is None:
                raise StoreError(f"no run {run_id} in {self.location}")
            samples = samples_by_job(conn, run_id)
        rows = [
            [run_id, job_index, seq, ns, ns / 1_000_000]
            for job_index, values in sorted(samples.items())
            for seq, ns in enumerate(values)
        ]
        return csv_text(["run_id", "job_index", "seq", "latency_ns", "latency_ms"], rows)
