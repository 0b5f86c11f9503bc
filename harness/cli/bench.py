"""`harness bench`: benchmark models on devices and write a report."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from harness import paths
from harness.benchmark import SettingsOverrides, load_models, plan_jobs, run_benchmark
from harness.cli.common import (
    DB_OPTION,
    JSON_OPTION,
    OUT_OPTION,
    console,
    open_store,
    parse_assignments,
    print_run,
    run_exit_code,
)
from harness.cli.compress import DEFAULT_VARIANTS_DIR
from harness.errors import ConfigError, ReportError
from harness.profiles import DeviceProfile, find_profile
from harness.results.records import JobResult, JobSpec, RunRecord
from harness.results.store import ResultStore
from harness.variants import merge_artifacts, register_family
from harness.variants import variants_of as find_variants_of


def bench_command(
    models: list[Path] | None = typer.Argument(None, help="Model files (.onnx, .tflite).",
                                               show_default=False),
    variants_of: Annotated[list[Path] | None, typer.Option(
        "--variants-of", help="Also benchmark this model's variants made by `harness compress` "
        "(variants/<model-stem>/*/model.onnx or model.tflite with a manifest; a Keras or "
        "SavedModel source itself is not run; repeatable).")] = None,
    variants_dir: Annotated[Path, typer.Option(
        "--variants-dir", help="Where `harness compress` put the variants.")] = DEFAULT_VARIANTS_DIR,
    device: list[str] = typer.Option(["local"], "--device", "-d",
                                     help="Device profile name (repeat for several devices)."),
    threads: list[int] = typer.Option([], "--threads", "-t",
                                      help="Threads (repeat to benchmark several settings)."),
    provider: list[str] = typer.Option([], "--provider", help="Provider/delegate: default, cpu, "
                                       "xnnpack, none (XNNPACK off), or an ORT provider name."),
    runs: int | None = typer.Option(None, "--runs", "-n", help="Minimum timed runs."),
    warmup: int | None = typer.Option(None, "--warmup", help="Warm-up runs."),
    min_duration_s: float | None = typer.Option(None, "--min-duration-s",
                                                help="Minimum timed duration (s)."),
    max_duration_s: float | None = typer.Option(None, "--max-duration-s",
                                                help="Start no run after this many seconds."),
    shape: list[str] = typer.Option([], "--shape", help="Input shape, NAME=1x3x224x224."),
    value: list[str] = typer.Option([], "--value", help="Input value NAME=16000 or range NAME=0:100."),
    inputs: Path | None = typer.Option(None, "--inputs", help="An .npz of inputs by name."),
    eval_file: Path | None = typer.Option(None, "--eval", help="An .npz with inputs and `labels`: "
                                          "report top-1 accuracy."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random inputs."),
    db: str | None = DB_OPTION,
    out: Path | None = OUT_OPTION,
    no_report: bool = typer.Option(False, "--no-report", help="Store results, write no report."),
    as_json: bool = JSON_OPTION,
) -> int:
    """Benchmark MODELS on each --device with every combination of --threads and --provider."""
    if runs is not None and runs < 1:
        raise ConfigError("--runs must be at least 1")
    check_settings(threads, warmup, min_duration_s, max_duration_s)
    for path in (inputs, eval_file):
        if path is not None and not path.is_file():
            raise ConfigError(f"{path} does not exist")
    if eval_file is not None:
        check_eval_file(eval_file)
    overrides = SettingsOverrides(
        threads=tuple(dict.fromkeys(threads)) or (None,),  # `-t 1 -t 1`: one job, not two
        providers=tuple(dict.fromkeys(provider)) or (None,),
        warmup_runs=warmup, min_runs=runs,
        min_duration_s=min_duration_s, max_duration_s=max_duration_s, seed=seed,
        shapes=check_shapes(parse_assignments(shape, "--shape")),
        values=check_values(parse_assignments(value, "--value")),
        inputs_file=str(inputs.resolve()) if inputs else None,
    )
    profiles = [find_profile(name) for name in dict.fromkeys(device)]
    if not models and not variants_of:
        raise ConfigError("which models? give model files or --variants-of MODEL")
    families = [find_variants_of(m, variants_dir) for m in dict.fromkeys(variants_of or [])]
    artifacts = merge_artifacts([*load_models(models or []),
                                 *(a for family in families for a in family.artifacts)])
    eval_files = {a.sha256: str(eval_file.resolve()) for a in artifacts} if eval_file else None
    jobs = plan_jobs(artifacts, profiles, overrides, eval_files=eval_files)
    store = open_store(db)
    for family in families:  # the jobs' artifacts then carry their manifests in the store
        register_family(store, family)
    record = run_with_progress(jobs, profiles, store, quiet=as_json)
    finish(record, out=out, no_report=no_report, as_json=as_json)
    return run_exit_code(record)


def check_eval_file(eval_file: Path) -> None:
    """An --eval file must hold `labels`: without them no accuracy could be reported, silently."""
    import zipfile

    try:
        with zipfile.ZipFile(eval_file) as archive:  # an .npz is a zip of NAME.npy members
            names = {Path(member).stem for member in archive.namelist()}
    except (OSError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"--eval {eval_file} is not an .npz file ({exc})") from exc
    if "labels" not in names:
        raise ConfigError(
            f"--eval {eval_file} has no `labels` array (it has: {', '.join(sorted(names))})",
            hint="save the inputs and `labels` with numpy.savez; for inputs alone use --inputs",
        )


def check_shapes(shapes: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Refuse a malformed --shape here (the runner would only refuse it on the device)."""
    for name, dims in shapes:
        parts = dims.replace(",", "x").split("x")
        if not all(part.strip().isdigit() and int(part) >= 1 for part in parts):
            raise ConfigError(f"--shape {name}: {dims!r} is not a shape like 1x3x224x224 "
                              "(dims are integers >= 1)")
    return shapes


def check_values(values: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Refuse a malformed --value here: a number, or a range lo:hi with lo < hi."""
    for name, text in values:
        low, sep, high = text.partition(":")
        try:
            bounds = [float(low), float(high)] if sep else [float(low)]
        except ValueError:
            raise ConfigError(f"--value {name}: {text!r} is neither a number nor a range "
                              "lo:hi") from None
        if len(bounds) == 2 and not bounds[0] < bounds[1]:
            raise ConfigError(f"--value {name}: range {text!r} is empty (needs lo < hi)")
    return values


def check_settings(threads: list[int], warmup: int | None, min_duration_s: float | None,
                   max_duration_s: float | None) -> None:
    """Refuse impossible settings here, before a run is stored, not on the device."""
    if any(t < 1 for t in threads):
        raise ConfigError(f"--threads must be at least 1, got {min(threads)}")
    if warmup is not None and warmup < 0:
        raise ConfigError(f"--warmup must be at least 0, got {warmup}")
    for flag, seconds in (("--min-duration-s", min_duration_s), ("--max-duration-s", max_duration_s)):
        if seconds is not None and not seconds >= 0:  # `not >=` also refuses nan
            raise ConfigError(f"{flag} must be at least 0, got {seconds}")
    if min_duration_s is not None and max_duration_s is not None and max_duration_s < min_duration_s:
        raise ConfigError(f"--max-duration-s {max_duration_s} is below --min-duration-s "
                          f"{min_duration_s}: every job would be INVALID (window too short)")


def run_with_progress(
    jobs: list[JobSpec], profiles: list[DeviceProfile], store: ResultStore, *, quiet: bool
) -> RunRecord:
    """Run the jobs with a progress bar on the terminal."""
    command = shlex.join(["harness", *sys.argv[1:]])
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(), console=console, disable=quiet, transient=True,
    ) as progress:
        task = progress.add_task("benchmarking", total=len(jobs))

        def on_job(result: JobResult, done: int, total: int) -> None:
            status = "ok" if result.status == "ok" else "[red]failed[/]"
            progress.update(task, completed=done,
                            description=f"{result.spec.model.name} on {result.spec.device_name}: {status}")

        return run_benchmark(jobs, profiles, store, command=command, on_job=on_job)


def finish(record: RunRecord, *, out: Path | None, no_report: bool, as_json: bool) -> None:
    """Print the run and write its report."""
    print_run(record, as_json=as_json)
    if no_report:
        return
    from harness.reporting import write_report

    try:
        report = write_report(record, (out or paths.default_reports_dir()) / record.run_id)
    except ReportError as exc:  # the results are stored: say so, and how to render them again
        raise ReportError(
            exc.message,
            hint=f"run {record.run_id} is stored; `harness report {record.run_id} --out DIR` "
            "writes its report elsewhere",
        ) from exc
    if not as_json:
        console.print(f"report: {report.index_html}", highlight=False)
