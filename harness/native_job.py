"""One benchmark job run by a vendor's native binary instead of the Python runner.

The profile names the tool (``benchmark_model`` or ``onnxruntime_perf_test``) and a host path
to the binary the user built for the device; it is pushed content-addressed (like a model),
made executable, run with a command line built from the job's settings, and its text output is
parsed into the same :class:`~harness.results.schema.RunnerDocument` the Python runner prints.
The tools print aggregates, so the documents are usually ``aggregate_only`` (schema v2).

Settings a tool cannot honour (``onnxruntime_perf_test`` runs exactly one warm-up; neither tool
takes ``--value`` or an inputs file) raise :class:`~harness.errors.ConfigError` rather than
being changed silently. Accuracy evaluation needs the outputs, which the tools do not give.
"""

from __future__ import annotations

import functools
import posixpath
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import deploy
from harness.errors import ConfigError, DeviceTimeoutError, RunnerError
from harness.native.benchmark_model import build_benchmark_model_argv, parse_benchmark_model_output
from harness.native.common import NativeOutputError, NativeToolError, run_native_benchmark
from harness.native.ort_perf_test import build_ort_perf_test_argv, parse_ort_perf_test_output
from harness.profiles import DeviceProfile, NativeToolConfig
from harness.results.records import JobResult, JobSettings, JobSpec
from harness.results.schema import (
    RUNNER_SCHEMA_NAME,
    RUNNER_SCHEMA_VERSION,
    ErrorInfo,
    ModelInfo,
    Producer,
    RunnerDocument,
    RuntimeInfo,
    Settings,
    with_host_observed,
)
from harness.results.summarize import failed_job_result, job_result_from_document
from harness.transport.base import Transport

_SMALL_CALL_TIMEOUT_S = 60.0
_TRANSFER_TIMEOUT_S = 1800.0
_FORMAT_OF_TOOL = {"benchmark_model": "tflite", "onnxruntime_perf_test": "onnx"}
_RUNTIME_OF_TOOL = {"benchmark_model": "tflite", "onnxruntime_perf_test": "onnxruntime"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NO_EVAL_NOTE = "accuracy evaluation is not available with native tools: the eval set was not run"


def native_settings(settings: JobSettings) -> Settings:
    """The document's settings for a job, refusing what no native tool can take."""
    if settings.values or settings.inputs_file:
        raise ConfigError(
            "native benchmark tools generate their own inputs: --value and --inputs are not "
            "supported with `runner: native`",
            hint="drop them, or use the Python runner for this profile",
        )
    return Settings(
        threads=settings.threads,
        provider=settings.provider,
        warmup_runs=settings.warmup_runs,
        min_runs=settings.min_runs,
        min_duration_s=settings.min_duration_s,
        max_duration_s=settings.max_duration_s,
        seed=settings.seed,
        shapes={name: _dims(name, text) for name, text in settings.shapes},
    )


def _dims(name: str, text: str) -> list[int]:
    # the runner's shape syntax: 1x3x224x224 (or 1,3,224,224); empty is a scalar
    parts = text.replace(",", "x").split("x") if text else []
    if not all(p.isdigit() for p in parts):
        raise ConfigError(f"shape of input {name!r}: {text!r} is not like 1x3x224x224")
    return [int(p) for p in parts]


def build_native_argv(
    config: NativeToolConfig, binary: str, remote_model: str, settings: Settings
) -> list[str]:
    """The tool's command line for ``settings`` (see the builders in :mod:`harness.native`)."""
    if config.tool == "benchmark_model":
        return build_benchmark_model_argv(
            binary,
            remote_model,
            threads=settings.threads,
            provider=settings.provider,
            warmup_runs=settings.warmup_runs,
            min_runs=settings.min_runs,
            min_duration_s=settings.min_duration_s,
            max_duration_s=settings.max_duration_s,
            shapes=settings.shapes or None,
            extra_args=config.extra_args,
        )
    return build_ort_perf_test_argv(
        binary,
        remote_model,
        threads=settings.threads,
        provider=settings.provider,
        warmup_runs=settings.warmup_runs,
        min_runs=settings.min_runs,
        min_duration_s=settings.min_duration_s,
        seed=settings.seed,
        shapes=settings.shapes or None,
        extra_args=config.extra_args,
    )


def _config(profile: DeviceProfile, spec: JobSpec) -> NativeToolConfig:
    config = profile.native
    if config is None:
        raise ConfigError(f"profile {profile.name} has no `native:` section (tool and binary)")
    wanted = _FORMAT_OF_TOOL[config.tool]
    if spec.model.format != wanted:
        raise ConfigError(
            f"{config.tool} runs {wanted} models, not {spec.model.name} ({spec.model.format})",
            hint="benchmark_model takes .tflite, onnxruntime_perf_test takes .onnx",
        )
    bad = [name for name in config.env if not _ENV_NAME.match(name)]
    if bad:
        raise ConfigError(f"profile {profile.name}: invalid environment variable name {bad[0]!r}")
    return config


def _deploy_binary(transport: Transport, config: NativeToolConfig, work_dir: str) -> str:
    local = Path(config.binary).expanduser()
    if not local.is_file():
        raise ConfigError(
            f"native tool binary {local} does not exist on this host",
            hint="build it for the device and set `native.binary` in the profile",
        )
    deployed = deploy.deploy_file(
        transport, local, posixpath.join(work_dir, "bin"), timeout_s=_TRANSFER_TIMEOUT_S
    )
    transport.run(["chmod", "+x", deployed.remote_path], timeout_s=_SMALL_CALL_TIMEOUT_S).check(
        f"chmod +x {deployed.remote_path}"
    )
    return deployed.remote_path


def run_native_job(
    transport: Transport,
    profile: DeviceProfile,
    spec: JobSpec,
    *,
    work_dir: str,
    remote_model: str,
    command_prefix: Sequence[str] = (),
) -> RunnerDocument:
    """Run ``spec`` with the profile's native tool on ``remote_model``; the parsed document.

    ``command_prefix`` goes before the tool's argv (e.g. ``taskset f0`` from device
    preparation, as the tool's README advises on big.LITTLE phones).

    The model identity (sha256, size) is the job's: ``remote_model`` is the content-addressed
    copy whose sha256 :func:`harness.deploy.deploy_file` verified on the device. Raises
    :class:`ConfigError` for settings the tool cannot take, :class:`NativeToolError` when it
    exits non-zero, :class:`NativeOutputError` for text it cannot parse (both keep the raw
    output), and :class:`RunnerError` when it outlives ``profile.bench.timeout_s``.
    """
    config = _config(profile, spec)
    settings = native_settings(spec.settings)
    binary = _deploy_binary(transport, config, work_dir)
    argv = [*command_prefix, *build_native_argv(config, binary, remote_model, settings)]
    model = ModelInfo(
        path=remote_model,
        format="tflite" if config.tool == "benchmark_model" else "onnx",
        sha256=spec.model.sha256,
        size_bytes=spec.model.size_bytes,
    )
    started_at = datetime.now(timezone.utc).isoformat()
    parser = (
        parse_benchmark_model_output
        if config.tool == "benchmark_model"
        else parse_ort_perf_test_output
    )
    parse: Callable[[str], RunnerDocument] = functools.partial(
        parser, model=model, settings=settings, started_at=started_at
    )
    timeout_s = profile.bench.timeout_s
    try:
        doc = run_native_benchmark(
            transport,
            argv,
            timeout_s=timeout_s,
            parse=parse,
            env={**profile.env, **config.env} or None,
            tool_name=config.tool,
        )
    except DeviceTimeoutError as exc:
        raise RunnerError(
            f"{config.tool} for {spec.model.name} on {profile.name} did not finish within "
            f"{timeout_s:g} s and was killed",
            hint="lower the runs/durations or raise bench.timeout_s in the profile",
        ) from exc
    return _finish(doc, config, spec)


def _finish(doc: RunnerDocument, config: NativeToolConfig, spec: JobSpec) -> RunnerDocument:
    """Fill in what the job knows and the tool does not print (runtime, notes)."""
    notes = list(doc.execution.notes)
    if spec.eval_file:
        notes.append(NO_EVAL_NOTE)
    runtime = doc.runtime or RuntimeInfo(
        name=_RUNTIME_OF_TOOL[config.tool],
        version=doc.producer.version,  # the tool's version when it printed one, else "unknown"
    )
    return doc.model_copy(
        update={"runtime": runtime, "execution": doc.execution.model_copy(update={"notes": notes})}
    )


def native_job_result(
    transport: Transport,
    profile: DeviceProfile,
    spec: JobSpec,
    *,
    work_dir: str,
    remote_model: str,
    command_prefix: Sequence[str] = (),
    host_state: dict[str, Any] | None = None,
) -> JobResult:
    """:func:`run_native_job` as a job result; a tool failure keeps the tool's raw output.

    ``host_state`` (what the host observed about the device) is added to the document's
    device state, as for the Python runner.

    A non-zero exit or unparseable text becomes a failed result whose raw document is an
    ``error`` document carrying ``raw_output``, so what the tool printed is stored, not lost.
    Other errors propagate (the session records them as it does for the Python runner).
    """
    try:
        doc = run_native_job(
            transport,
            profile,
            spec,
            work_dir=work_dir,
            remote_model=remote_model,
            command_prefix=command_prefix,
        )
    except (NativeToolError, NativeOutputError) as exc:
        kind = "inference" if isinstance(exc, NativeToolError) else "output_format"
        error_doc = _error_document(profile, spec, exc, kind, remote_model)
        return failed_job_result(spec, exc.one_line(), error_doc)
    return job_result_from_document(spec, with_host_observed(doc, host_state or {}))


def _error_document(
    profile: DeviceProfile,
    spec: JobSpec,
    exc: NativeToolError | NativeOutputError,
    kind: str,
    remote_model: str,
) -> RunnerDocument:
    assert profile.native is not None  # run_native_job checked it before running anything
    return RunnerDocument.model_validate(
        {
            "schema": RUNNER_SCHEMA_NAME,
            "schema_version": RUNNER_SCHEMA_VERSION,
            "producer": Producer(name=profile.native.tool, version="unknown"),
            "status": "error",
            "started_at": datetime.now(timezone.utc).isoformat(),
            "error": ErrorInfo(kind=kind, message=exc.message),
            "model": ModelInfo(
                path=remote_model,
                format="tflite" if spec.model.format == "tflite" else "onnx",
                sha256=spec.model.sha256,
                size_bytes=spec.model.size_bytes,
            ),
            "settings": native_settings(spec.settings),
            "raw_output": exc.raw_output,
        }
    )
