"""A benchmark run: models x devices x settings, as one run id in the store.

Jobs on one device run one at a time; different devices run concurrently, and a failing device
never stops the others (its error is recorded on its jobs). Every finished job is written to the
store at once, so a crash later in the run loses nothing already measured.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import secrets
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from harness import __version__
from harness.artifacts import inspect_model
from harness.errors import HarnessError
from harness.profiles import DeviceProfile
from harness.results.records import JobResult, JobSettings, JobSpec, ModelArtifact, RunRecord
from harness.results.store import ResultStore
from harness.results.summarize import failed_job_result
from harness.session import DeviceSession
from harness.transport.factory import open_transport

log = logging.getLogger(__name__)

# Called after each job: (job result, jobs done, jobs total).
JobCallback = Callable[[JobResult, int, int], None]


@dataclass(frozen=True)
class SettingsOverrides:
    """Command-line settings; None means "take the device profile's default"."""

    threads: tuple[int | None, ...] = (None,)
    providers: tuple[str | None, ...] = (None,)
    warmup_runs: int | None = None
    min_runs: int | None = None
    min_duration_s: float | None = None
    max_duration_s: float | None = None
    seed: int = 0
    shapes: tuple[tuple[str, str], ...] = ()
    values: tuple[tuple[str, str], ...] = ()
    inputs_file: str | None = None


def new_run_id() -> str:
    """A sortable, unique run id: UTC timestamp plus 4 random hex digits."""
    now = dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def plan_jobs(
    models: Sequence[ModelArtifact],
    profiles: Sequence[DeviceProfile],
    overrides: SettingsOverrides,
    *,
    eval_files: dict[str, str] | None = None,
) -> list[JobSpec]:
    """The product of settings x devices x models, models innermost so they interleave.

    Interleaving models (m1, m2, m1, m2, ...) rather than grouping them keeps slow drift of the
    device (temperature, background load) from landing on one model only.
    """
    jobs: list[JobSpec] = []
    eval_files = eval_files or {}
    for threads, provider in itertools.product(overrides.threads, overrides.providers):
        for profile in profiles:
            settings = _settings_for(profile, overrides, threads, provider)
            for model in models:
                jobs.append(JobSpec(
                    job_index=len(jobs), model=model, device_name=profile.name,
                    settings=settings, eval_file=eval_files.get(model.sha256),
                ))
    return jobs


def _settings_for(
    profile: DeviceProfile, o: SettingsOverrides, threads: int | None, provider: str | None
) -> JobSettings:
    bench = profile.bench
    return JobSettings(
        threads=threads if threads is not None else profile.runtime.threads,
        provider=provider or profile.runtime.provider,
        warmup_runs=o.warmup_runs if o.warmup_runs is not None else bench.warmup_runs,
        min_runs=o.min_runs if o.min_runs is not None else bench.min_runs,
        min_duration_s=o.min_duration_s if o.min_duration_s is not None else bench.min_duration_s,
        max_duration_s=o.max_duration_s if o.max_duration_s is not None else bench.max_duration_s,
        seed=o.seed,
        shapes=o.shapes,
        values=o.values,
        inputs_file=o.inputs_file,
    )


def load_models(model_paths: Sequence[Path]) -> list[ModelArtifact]:
    """Inspect every model up front so a corrupt file fails before any device work."""
    artifacts = [inspect_model(Path(p)) for p in model_paths]
    # Same stems (model.onnx + model.tflite, or two folders): disambiguate by file name, then
    # by parent folder, so every job in a report has a distinct, recognisable name.
    for rename in (lambda a: Path(a.path).name, lambda a: f"{Path(a.path).parent.name}/{Path(a.path).name}"):
        names = [a.name for a in artifacts]
        if len(set(names)) == len(names):
            break
        artifacts = [replace(a, name=rename(a)) if names.count(a.name) > 1 else a for a in artifacts]
    return artifacts


def run_benchmark(
    jobs: Sequence[JobSpec],
    profiles: Sequence[DeviceProfile],
    store: ResultStore,
    *,
    command: str,
    run_id: str | None = None,
    on_job: JobCallback | None = None,
) -> RunRecord:
    """Run every job, devices in parallel, and persist each result as it finishes."""
    run_id = run_id or new_run_id()
    created_at = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    host = socket.gethostname()
    store.begin_run(run_id, created_at=created_at, command=command,
                    harness_version=__version__, host=host)
    for profile in profiles:
        store.register_device(profile.name, kind=profile.kind, description=profile.description)
    for job in jobs:
        store.register_artifact(job.model)

    lock = threading.Lock()
    stopping = threading.Event()  # set on Ctrl-C: no job starts after it
    results: dict[int, JobResult] = {}
    notes: list[str] = []
    done = [0]

    def record(result: JobResult) -> None:
        with lock:
            store.append_job(run_id, result)
            results[result.spec.job_index] = result
            done[0] += 1
            if on_job is not None:
                on_job(result, done[0], len(jobs))

    by_device = {p.name: [j for j in jobs if j.device_name == p.name] for p in profiles}
    profile_of = {p.name: p for p in profiles}

    def run_device(name: str) -> None:
        device_jobs = by_device[name]
        profile = profile_of[name]
        session: DeviceSession | None = None
        try:
            session = DeviceSession(profile, open_transport(profile),
                                    reopen=lambda: open_transport(profile))
            session.prepare()
            for job in device_jobs:
                if stopping.is_set():
                    break
                outcome = session.run_job(job, run_id=run_id)
                if outcome.notes:
                    with lock:
                        notes.extend(outcome.notes)
                record(outcome.result)
            with lock:
                notes.extend(f"device {name}: {note}" for note in session.notes)
        except HarnessError as exc:
            # The device is gone or unusable: every job not yet run fails with this error.
            message = f"device {name}: {exc.one_line()}"
            log.info("%s", message)  # the CLI prints it once, from the run's results
            with lock:
                notes.append(message)
            for job in device_jobs:
                if job.job_index not in results:
                    record(failed_job_result(job, message))
        finally:
            if session is not None:
                session.close()

    workers = max(1, len(by_device))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="device")
    try:
        list(pool.map(run_device, list(by_device)))
    except KeyboardInterrupt:
        # Ctrl-C: start no further job; the ones running finish and are stored, the run stays
        # unfinished in the store (no finish_run) so `harness results list` shows it as such.
        stopping.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()

    store.finish_run(run_id, notes=notes)
    ordered = tuple(results[j.job_index] for j in jobs if j.job_index in results)
    return RunRecord(run_id=run_id, created_at=created_at, command=command,
                     harness_version=__version__, host=host, jobs=ordered, notes=tuple(notes))
