"""`harness demo`: benchmark the bundled demo models on the local device and write a report."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.benchmark import SettingsOverrides, load_models, plan_jobs
from harness.cli.bench import finish, run_with_progress
from harness.cli.common import DB_OPTION, JSON_OPTION, OUT_OPTION, open_store, run_exit_code
from harness.demo import demo_model_paths, digits_eval_path
from harness.profiles import find_profile


def demo_command(
    device: str = typer.Option("local", "--device", "-d", help="Device profile to run on."),
    quick: bool = typer.Option(False, "--quick", help="Fewer runs (for a smoke test)."),
    threads: int | None = typer.Option(None, "--threads", "-t", help="Threads (default: profile)."),
    db: str | None = DB_OPTION,
    out: Path | None = OUT_OPTION,
    as_json: bool = JSON_OPTION,
) -> int:
    """Benchmark the bundled demo models (digits MLP with its accuracy, mobilenet_tiny) as ONNX
    and TFLite, then write reports/<run-id>/index.html."""
    models = demo_model_paths()
    artifacts = load_models(list(models.values()))
    eval_path = str(digits_eval_path())
    eval_files = {a.sha256: eval_path for a in artifacts if Path(a.path).stem == "digits_mlp"}
    overrides = SettingsOverrides(
        threads=(threads,),
        warmup_runs=3 if quick else None,
        min_runs=20 if quick else None,
        min_duration_s=0.2 if quick else None,
    )
    profile = find_profile(device)
    jobs = plan_jobs(artifacts, [profile], overrides, eval_files=eval_files)
    record = run_with_progress(jobs, [profile], open_store(db), quiet=as_json)
    finish(record, out=out, no_report=False, as_json=as_json)
    return run_exit_code(record)
