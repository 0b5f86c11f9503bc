"""One device, one job at a time: prepare -> push -> run the runner -> pull -> record.

A :class:`DeviceSession` owns one transport for its whole life (one SSH/ADB connection per
device), deploys the runner once, and turns each :class:`JobSpec` into a :class:`JobResult`.
Everything here speaks only the :class:`~harness.transport.base.Transport` protocol.
"""

from __future__ import annotations

import dataclasses
import logging
import posixpath
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness import deploy, paths
from harness.errors import (
    DeviceConnectionError,
    DeviceTimeoutError,
    HarnessError,
    ModelError,
    RunnerError,
    RuntimeMissingError,
    SchemaError,
)
from harness.native_job import native_job_result
from harness.power import thermal
from harness.power.external_job import external_meter_for
from harness.power.settings import runner_power_argv
from harness.prepare import DevicePreparation
from harness.profiles import DeviceProfile
from harness.results.records import JobResult, JobSpec
from harness.results.schema import RunnerDocument, parse_runner_document, with_host_observed
from harness.results.summarize import failed_job_result, job_result_from_document
from harness.transport.base import Transport

log = logging.getLogger(__name__)

_RUNNER_SCRIPT = "harness_runner.py"
_SMALL_CALL_TIMEOUT_S = 60.0
_TRANSFER_TIMEOUT_S = 1800.0
# Runner exit codes (runners/README.md): 0 ok, 2 error document, 3 bad arguments.
_RUNNER_DOCUMENT_EXIT_CODES = {0, 2, 3}


@dataclass(frozen=True)
class JobOutcome:
    """A finished job and what happened around it (retries)."""

    result: JobResult
    notes: tuple[str, ...] = ()


class DeviceSession:
    """A live connection to one device, ready to run jobs."""

    def __init__(
        self,
        profile: DeviceProfile,
        transport: Transport,
        *,
        reopen: Callable[[], Transport] | None = None,
    ) -> None:
        self.profile = profile
        self.transport = transport
        self._reopen = reopen
        self._runner_dir: str | None = None
        self._prep: DevicePreparation | None = None
        self._host_state: dict[str, Any] = {}
        self.work_dir = resolve_work_dir(profile)
        self.python = sys.executable if profile.transport.kind == "local" else profile.python

    def prepare(self) -> None:
        """Create the work directory and push the runner (only when its hash changed)."""
        # `~` is never expanded inside quoted arguments, so resolve it once per connection.
        self.work_dir = deploy.expand_home(self.transport, self.work_dir,
                                           timeout_s=_SMALL_CALL_TIMEOUT_S)
        deploy.ensure_dir(self.transport, self.work_dir, timeout_s=_SMALL_CALL_TIMEOUT_S)
        if self._prep is None:
            self._prep = DevicePreparation.for_profile(self.profile, self.transport)
            self._prep.apply()
            self._host_state = self._prep.host_observed_state()
        runner_files = sorted(paths.runners_dir().glob("*.py"))
        if not runner_files:
            raise RunnerError(f"no runner scripts found in {paths.runners_dir()}")
        bundle = deploy.deploy_bundle(
            self.transport,
            runner_files,
            posixpath.join(self.work_dir, "runner"),
            timeout_s=_TRANSFER_TIMEOUT_S,
        )
        self._runner_dir = bundle.remote_dir

    def close(self) -> None:
        """Restore what preparation changed, then close the transport."""
        try:
            if self._prep is not None:
                self._prep.restore()
        finally:
            self.transport.close()

    @property
    def notes(self) -> list[str]:
        """What preparation could not do, for the run's notes."""
        return list(self._prep.notes) if self._prep is not None else []

    def run_job(self, spec: JobSpec, *, run_id: str) -> JobOutcome:
        """Run one job; a dropped connection is reconnected once and the job retried.

        Errors of the job itself (bad model, runner crash) come back as a failed JobResult;
        only an unreachable device raises.
        """
        cooled = self._cooldown(spec)
        try:
            return JobOutcome(self._run_job_once(spec, run_id), cooled)
        except DeviceConnectionError as first:
            if self._reopen is None:
                raise
            log.warning("connection to %s dropped (%s); reconnecting and retrying the job once",
                        self.profile.name, first.one_line())
            self.transport.close()
            self.transport = self._reopen()
            self._runner_dir = None
            if self._prep is not None:
                self._prep.transport = self.transport
            self.prepare()
            note = f"job {spec.job_index}: connection dropped ({first.one_line()}); retried once"
            return JobOutcome(self._run_job_once(spec, run_id), (*cooled, note))

    def _cooldown(self, spec: JobSpec) -> tuple[str, ...]:
        """Wait until the device is cool (when the profile asks); the outcome is a run note."""
        settings = self.profile.power.cooldown
        if not settings.enabled:
            return ()
        result = thermal.cooldown(
            self.transport, zones_glob=settings.zones_glob, threshold_c=settings.threshold_c,
            timeout_s=settings.timeout_s, poll_s=settings.poll_s,
            check_pi_throttled=settings.check_pi_throttled,
            check_android_status=settings.check_android_status,
        )
        state = "cool" if result.reached else "NOT cool (timed out)"
        return (f"job {spec.job_index}: cooldown on {self.profile.name}: {state}, {result.reason}",)

    def _run_job_once(self, spec: JobSpec, run_id: str) -> JobResult:
        if self._runner_dir is None:
            self.prepare()
        assert self._runner_dir is not None
        try:
            model = deploy.deploy_file(
                self.transport, Path(spec.model.path),
                posixpath.join(self.work_dir, "models"), timeout_s=_TRANSFER_TIMEOUT_S,
            )
            if self.profile.runner == "native":  # the vendor's binary; no accuracy evaluation
                return native_job_result(
                    self.transport, self.profile, spec, work_dir=self.work_dir,
                    remote_model=model.remote_path,
                    command_prefix=self._prep.command_prefix() if self._prep else (),
                    host_state=self._host_state,
                )
            job_dir = posixpath.join(self.work_dir, "jobs", f"{run_id}-{spec.job_index}")
            deploy.ensure_dir(self.transport, job_dir, timeout_s=_SMALL_CALL_TIMEOUT_S)
            argv = self._runner_argv(spec, model.remote_path, job_dir)
            # A host-side meter (profile power.external) brackets the runner; its energy
            # replaces the device's own over the runner's timed window.
            meter = external_meter_for(self.profile, self.transport, self.python)
            if meter is not None:
                meter.start()
            try:
                doc = self._run_runner(argv, spec)
            except BaseException:
                if meter is not None:
                    meter.abort()
                raise
            external_energy = meter.finish(doc) if meter is not None else None
            if doc.status != "ok":
                err = doc.error
                message = err.message if err else "runner reported an error"
                if err and err.op:
                    message = f"{message} (operator: {err.op})"
                message = _with_host_paths(message, argv, spec, model.remote_path)
                if err and err.kind in ("allocation", "inference"):
                    # A run that fails on inputs the user never chose: say which dims were guessed.
                    guessed = [n for n in doc.execution.notes if "dynamic dims" in n]
                    message += "".join(f" ({note})" for note in guessed)
                return failed_job_result(spec, f"{err.kind if err else 'error'}: {message}", doc)
            accuracy = None
            if spec.eval_file and doc.eval_output is not None:
                # Pull the path we gave the runner: the one it echoes may be another view of it.
                eval_path = posixpath.join(job_dir, "eval_outputs.npz")
                accuracy = self._pull_accuracy(eval_path, Path(spec.eval_file))
            self.transport.run(["rm", "-rf", job_dir], timeout_s=_SMALL_CALL_TIMEOUT_S)
            result = job_result_from_document(
                spec, doc, accuracy=accuracy,
                accuracy_metric="top1" if accuracy is not None else None,
                calibration=self.profile.power.calibration_model(),
            )
            if external_energy is not None and result.status == "ok":
                result = dataclasses.replace(result, energy=external_energy)
            return result
        except DeviceConnectionError:
            raise
        except HarnessError as exc:
            return failed_job_result(spec, exc.one_line())

    def _runner_argv(self, spec: JobSpec, remote_model: str, job_dir: str) -> list[str]:
        assert self._runner_dir is not None
        s = spec.settings
        prefix = self._prep.command_prefix() if self._prep is not None else []
        argv = [
            *prefix,
            self.python, posixpath.join(self._runner_dir, _RUNNER_SCRIPT),
            "--model", remote_model,
            "--provider", s.provider,
            "--warmup-runs", str(s.warmup_runs),
            "--min-runs", str(s.min_runs),
            "--min-duration-s", repr(s.min_duration_s),
            "--max-duration-s", repr(s.max_duration_s),
            "--seed", str(s.seed),
        ]
        if s.threads is not None:
            argv += ["--threads", str(s.threads)]
        for name, shape in s.shapes:
            argv += ["--shape", f"{name}={shape}"]
        for name, value in s.values:
            argv += ["--value", f"{name}={value}"]
        if s.inputs_file:
            remote_inputs = deploy.deploy_file(
                self.transport, Path(s.inputs_file), posixpath.join(self.work_dir, "data"),
                timeout_s=_TRANSFER_TIMEOUT_S,
            )
            argv += ["--inputs", remote_inputs.remote_path]
        argv += runner_power_argv(self.profile.power)
        if spec.eval_file:
            remote_eval = deploy.deploy_file(
                self.transport, Path(spec.eval_file), posixpath.join(self.work_dir, "data"),
                timeout_s=_TRANSFER_TIMEOUT_S,
            )
            argv += ["--eval-inputs", remote_eval.remote_path,
                     "--eval-output", posixpath.join(job_dir, "eval_outputs.npz")]
        return argv

    def _run_runner(self, argv: list[str], spec: JobSpec) -> RunnerDocument:
        # The idle power baseline is measured inside the runner, before the timed window.
        power = self.profile.power
        timeout_s = self.profile.bench.timeout_s + (power.idle_s if power.source != "none" else 0.0)
        try:
            result = self.transport.run(argv, timeout_s=timeout_s, env=self.profile.env or None)
        except DeviceTimeoutError as exc:
            raise RunnerError(
                f"runner for {spec.model.name} on {self.profile.name} did not finish within "
                f"{timeout_s:g} s and was killed",
                hint="lower --runs/--max-duration-s or raise bench.timeout_s in the profile",
            ) from exc
        origin = f"runner on {self.profile.name}"
        if result.exit_code not in _RUNNER_DOCUMENT_EXIT_CODES or not result.stdout.strip():
            tail = " | ".join(result.stderr.strip().splitlines()[-3:]) or "no output"
            if result.exit_code == 127 or ("No such file" in tail and self.python in tail):
                raise RuntimeMissingError(
                    f"python interpreter {self.python!r} not found on {self.profile.name}",
                    hint="set `python:` in the device profile",
                )
            raise RunnerError(
                f"runner for {spec.model.name} on {self.profile.name} crashed "
                f"(exit code {result.exit_code}): {tail}"
            )
        try:
            doc = parse_runner_document(result.stdout, origin=origin)
        except SchemaError as exc:
            raise RunnerError(exc.message) from exc
        return with_host_observed(doc, self._host_state)

    def _pull_accuracy(self, remote_path: str, eval_file: Path) -> float | None:
        with np.load(eval_file) as data:
            if "labels" not in data.files:
                return None
            labels = np.asarray(data["labels"])
        with tempfile.TemporaryDirectory(prefix="harness-eval-") as tmp:
            local = Path(tmp) / "eval_outputs.npz"
            self.transport.pull(remote_path, local, timeout_s=_TRANSFER_TIMEOUT_S)
            with np.load(local) as outputs:
                if not outputs.files:
                    raise ModelError("the runner wrote no evaluation outputs")
                logits = np.asarray(outputs[outputs.files[0]])
        return top1_accuracy(logits, labels)


def top1_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose arg-max equals the label."""
    flat = logits.reshape(logits.shape[0], -1)
    if flat.shape[0] != labels.shape[0]:
        raise ModelError(f"evaluation produced {flat.shape[0]} rows for {labels.shape[0]} labels")
    return float(np.mean(np.argmax(flat, axis=1) == labels.reshape(-1)))


def resolve_work_dir(profile: DeviceProfile) -> str:
    """The device's work directory: the profile's, or a per-kind default."""
    if profile.work_dir:
        if profile.transport.kind == "local":
            return str(Path(profile.work_dir).expanduser())
        return profile.work_dir
    if profile.transport.kind == "local":
        return str(paths.user_cache_dir() / "work")
    if profile.transport.kind == "adb":
        return "/data/local/tmp/harness"
    return "~/.cache/harness"  # expanded on the device by DeviceSession.prepare


def _with_host_paths(message: str, argv: list[str], spec: JobSpec, remote_model: str) -> str:
    """The runner's error text with the user's file paths, not their copies on the device.

    The runner only knows the content-addressed copies in the device's work dir; the user acts
    on the files they gave (``corrupt.tflite``, ``--inputs x.npz``), so name those.
    """
    copies = {remote_model: spec.model.path}
    for flag, host_path in (("--inputs", spec.settings.inputs_file), ("--eval-inputs", spec.eval_file)):
        if host_path and flag in argv:
            copies[argv[argv.index(flag) + 1]] = host_path
    for remote, host in copies.items():
        message = message.replace(remote, host)
    return message
