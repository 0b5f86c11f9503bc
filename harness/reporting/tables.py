"""The one table of a run: a row per job, shared by the CSV, Markdown, HTML and terminal outputs.

:func:`jobs_dataframe` holds raw numbers with units in the column names (the CSV is exactly this
frame); :func:`display_row` turns one row into short human strings. Every human-facing output goes
through ``display_row`` so the numbers agree everywhere.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from harness.power.columns import CSV_COLUMNS as ENERGY_CSV_COLUMNS
from harness.power.columns import energy_csv_values
from harness.results.records import JobResult, RunRecord, Verdict

# Machine-friendly column names, in CSV order. Units are in the names.
COLUMNS: tuple[str, ...] = (
    "job_index",
    "model",
    "format",
    "device",
    "runtime",
    "runtime_version",
    "threads",
    "provider",
    "fallback_to_cpu",
    "status",
    "median_ms",
    "median_ci_low_ms",
    "median_ci_high_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "max_ms",
    "cv",
    "throughput_ips",
    "init_ms",
    "first_inference_ms",
    "peak_memory_kb",
    "accuracy",
    "accuracy_metric",
    "size_bytes",
    "recipe",
    "host_accuracy",
    "host_accuracy_metric",
    "fidelity_flagged",
    "samples",
    *ENERGY_CSV_COLUMNS,
    "verdict",
    "reasons",
    "warnings",
    "error",
    "sha256",
    "parent_sha256",
    "model_path",
)

# Nullable integer columns: pandas would otherwise turn a missing value into a float NaN.
_INT_COLUMNS = ("job_index", "threads", "peak_memory_kb", "size_bytes", "samples")

# Headers of the rows :func:`render_terminal_rows` returns, in the same order.
TERMINAL_HEADERS: tuple[str, ...] = (
    "#",
    "Model",
    "Device",
    "Runtime",
    "Threads",
    "Provider",
    "Median ms [95% CI]",
    "p90 ms",
    "p99 ms",
    "Throughput /s",
    "Peak MiB",
    "Accuracy",
    "Verdict",
)


def _job_row(job: JobResult) -> dict[str, Any]:
    spec = job.spec
    lat = job.latency
    return {
        "job_index": spec.job_index,
        "model": spec.model.name,
        "format": spec.model.format,
        "device": spec.device_name,
        "runtime": job.runtime_name,
        "runtime_version": job.runtime_version,
        "threads": spec.settings.threads,
        "provider": spec.settings.provider,
        "fallback_to_cpu": job.fallback_to_cpu,
        "status": job.status,
        "median_ms": lat.median_ms if lat else None,
        "median_ci_low_ms": lat.median_ci_low_ms if lat else None,
        "median_ci_high_ms": lat.median_ci_high_ms if lat else None,
        "p90_ms": lat.p90_ms if lat else None,
        "p99_ms": lat.p99_ms if lat else None,
        "mean_ms": lat.mean_ms if lat else None,
        "std_ms": lat.std_ms if lat else None,
        "min_ms": lat.min_ms if lat else None,
        "max_ms": lat.max_ms if lat else None,
        "cv": lat.cv if lat else None,
        "throughput_ips": lat.throughput_ips if lat else None,
        "init_ms": job.init_ms,
        "first_inference_ms": job.first_inference_ms,
        "peak_memory_kb": job.peak_memory_kb,
        "accuracy": job.accuracy,
        "accuracy_metric": job.accuracy_metric,
        "size_bytes": spec.model.size_bytes,
        "recipe": spec.model.recipe,
        "host_accuracy": spec.model.host_accuracy,
        "host_accuracy_metric": spec.model.host_accuracy_metric,
        "fidelity_flagged": spec.model.fidelity_flagged,
        "samples": lat.count if lat else len(job.samples_ms),
        **energy_csv_values(job.energy),
        "verdict": job.validity.verdict.value,
        "reasons": "; ".join(job.validity.reasons),
        "warnings": "; ".join(job.validity.warnings),
        "error": job.error or "",
        "sha256": spec.model.sha256,
        "parent_sha256": spec.model.parent_sha256,
        "model_path": spec.model.path,
    }


def jobs_dataframe(record: RunRecord) -> pd.DataFrame:
    """One row per job of ``record``, columns :data:`COLUMNS`, ordered by ``job_index``.

    Missing values (a failed job's latency, an absent accuracy) are ``NA``; integer columns use
    pandas' nullable ``Int64`` so they stay integers in the CSV.
    """
    rows = [_job_row(job) for job in sorted(record.jobs, key=lambda j: j.spec.job_index)]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    for column in _INT_COLUMNS:
        frame[column] = frame[column].astype("Int64")
    frame["fallback_to_cpu"] = frame["fallback_to_cpu"].astype(bool)
    return frame


# --- formatting -------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def fmt_ms(value: Any) -> str:
    """Milliseconds with 3 significant digits, never in exponent form.

    Sub-millisecond values keep their significant digits (``0.0123``), so a microsecond-scale
    model never shows as ``0.000``; large values are rounded to whole milliseconds.
    """
    if _missing(value):
        return "–"
    x = float(value)
    if x == 0 or not math.isfinite(x):
        return "0" if x == 0 else str(x)
    if abs(x) >= 100:
        return f"{x:.0f}"  # whole milliseconds: "1235", not "1.23e+03" or a false "1230"
    # Round to 3 significant digits first, so a carry (0.09996 -> 0.1) sets the magnitude.
    rounded = float(f"{x:.3g}")
    magnitude = math.floor(math.log10(abs(rounded)))
    return f"{rounded:.{max(0, 2 - magnitude)}f}"


def fmt_ci(low: Any, high: Any) -> str:
    """A 95% confidence interval as ``[low, high]``, or an empty string when absent."""
    if _missing(low) or _missing(high):
        return ""
    return f"[{fmt_ms(low)}, {fmt_ms(high)}]"


def fmt_bytes(value: Any) -> str:
    """A size in bytes in binary units (``1.23 MiB``)."""
    if _missing(value):
        return "–"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.3g} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def fmt_mb_from_kb(value: Any) -> str:
    """A memory amount given in KiB, shown in MiB with 3 significant digits."""
    if _missing(value):
        return "–"
    mib = float(value) / 1024
    return f"{mib:.1f}" if mib >= 100 else f"{mib:.3g}"


def fmt_rate(value: Any) -> str:
    """Inferences per second, 3 significant digits, no exponent."""
    if _missing(value):
        return "–"
    x = float(value)
    return f"{x:,.0f}" if x >= 1000 else fmt_ms(x)


def fmt_accuracy(value: Any, metric: Any = None) -> str:
    """Accuracy 0..1 as a percentage, with its metric name when known."""
    if _missing(value):
        return "–"
    text = f"{100 * float(value):.1f}%"
    return f"{text} {metric}" if not _missing(metric) and metric else text


def fmt_threads(value: Any) -> str:
    """Thread count, or ``default`` when the runtime chose."""
    return "default" if _missing(value) else str(int(value))


def verdict_text(row: pd.Series) -> str:
    """``FAILED`` for a failed job, otherwise the validity verdict."""
    return "FAILED" if row["status"] != "ok" else str(row["verdict"])


def display_row(row: pd.Series) -> dict[str, str]:
    """Human strings for one :func:`jobs_dataframe` row, keyed by the same column names.

    ``fallback_to_cpu`` is ``"fell back to CPU"`` or empty. Extra keys: ``runtime_full`` (name and version), ``mean_std_ms``, ``median_ci``,
    ``peak_memory_mb``, ``size``, ``verdict_display``, ``accuracy_value`` (without the metric),
    ``host_accuracy_value``, ``flagged`` (``"FLAGGED"`` when a variant's fidelity collapsed).
    """
    runtime = "" if _missing(row["runtime"]) else str(row["runtime"])
    version = "" if _missing(row["runtime_version"]) else str(row["runtime_version"])
    mean, std = row["mean_ms"], row["std_ms"]
    host_metric, flagged = row["host_accuracy_metric"], row["fidelity_flagged"]
    return {
        "job_index": str(row["job_index"]),
        "model": str(row["model"]),
        "format": str(row["format"]),
        "device": str(row["device"]),
        "runtime_full": f"{runtime} {version}".strip() or "–",
        "threads": fmt_threads(row["threads"]),
        "provider": str(row["provider"]),
        "fallback_to_cpu": "fell back to CPU" if bool(row["fallback_to_cpu"]) else "",
        "median_ms": fmt_ms(row["median_ms"]),
        "median_ci": fmt_ci(row["median_ci_low_ms"], row["median_ci_high_ms"]),
        "p90_ms": fmt_ms(row["p90_ms"]),
        "p99_ms": fmt_ms(row["p99_ms"]),
        "mean_std_ms": "–" if _missing(mean) else f"{fmt_ms(mean)} ± {fmt_ms(std)}",
        "throughput_ips": fmt_rate(row["throughput_ips"]),
        "init_ms": fmt_ms(row["init_ms"]),
        "first_inference_ms": fmt_ms(row["first_inference_ms"]),
        "peak_memory_mb": fmt_mb_from_kb(row["peak_memory_kb"]),
        "accuracy": fmt_accuracy(row["accuracy"], row["accuracy_metric"]),
        "accuracy_value": fmt_accuracy(row["accuracy"]),
        "accuracy_metric": "" if _missing(row["accuracy_metric"]) else str(row["accuracy_metric"]),
        "size": fmt_bytes(row["size_bytes"]),
        "size_bytes": "–" if _missing(row["size_bytes"]) else f"{int(row['size_bytes']):,}",
        "recipe": "" if _missing(row["recipe"]) else str(row["recipe"]),
        "host_accuracy": _host_accuracy(row, with_metric=True),
        "host_accuracy_value": _host_accuracy(row, with_metric=False),
        "host_accuracy_metric": "" if _missing(host_metric) else str(host_metric),
        "flagged": "FLAGGED" if not _missing(flagged) and bool(flagged) else "",
        "samples": "–" if _missing(row["samples"]) else str(row["samples"]),
        "verdict_display": verdict_text(row),
        "reasons": str(row["reasons"]),
        "warnings": str(row["warnings"]),
        "error": str(row["error"]),
    }


def _host_accuracy(row: pd.Series, *, with_metric: bool) -> str:
    """The host-side metric: accuracies (fractions) as percentages, an mse as a number."""
    value, metric = row["host_accuracy"], row["host_accuracy_metric"]
    metric = None if _missing(metric) else str(metric)
    shown = metric if with_metric else None
    if _missing(value) or metric != "mse":
        return fmt_accuracy(value, shown)
    return f"{float(value):.4g}" + (f" {shown}" if shown else "")


def has_variants(record: RunRecord) -> bool:
    """True when a job's model came from ``harness compress`` (or is the source of such)."""
    return any(
        j.spec.model.recipe is not None or j.spec.model.host_accuracy is not None
        for j in record.jobs
    )


def display_rows(record: RunRecord) -> list[dict[str, str]]:
    """:func:`display_row` for every job, in ``job_index`` order."""
    frame = jobs_dataframe(record)
    return [display_row(row) for _, row in frame.iterrows()]


def render_terminal_rows(record: RunRecord) -> list[list[str]]:
    """Rows of strings for a terminal table, one per job, columns :data:`TERMINAL_HEADERS`.

    The CLI prints them (with rich); this module does not import rich. A fallback to CPU is
    flagged in the provider cell; a failed job shows its error in the verdict cell.
    """
    rows: list[list[str]] = []
    for d in display_rows(record):
        provider = d["provider"]
        if d["fallback_to_cpu"]:
            provider = f"{provider} ({d['fallback_to_cpu']})"
        median = f"{d['median_ms']} {d['median_ci']}".strip()
        verdict = d["verdict_display"]
        if verdict == "FAILED" and d["error"]:
            verdict = f"FAILED: {d['error']}"
        elif verdict == Verdict.INVALID.value and d["reasons"]:
            verdict = f"INVALID: {d['reasons']}"
        rows.append(
            [
                d["job_index"],
                d["model"],
                d["device"],
                d["runtime_full"],
                d["threads"],
                provider,
                median,
                d["p90_ms"],
                d["p99_ms"],
                d["throughput_ips"],
                d["peak_memory_mb"],
                d["accuracy"],
                verdict,
            ]
        )
    return rows


def job_label(job: JobResult) -> str:
    """A short label naming a job in plots: ``model · device · t=N · provider``."""
    settings = job.spec.settings
    threads = "default" if settings.threads is None else str(settings.threads)
    return f"{job.spec.model.name} · {job.spec.device_name} · t={threads} · {settings.provider}"


def host_observed_rows(observed: Any) -> list[tuple[str, str]]:
    """Label/value rows for ``device_state.host_observed`` (what the host read, e.g. Android).

    Only the facts that tell runs apart are shown: model, SoC, OS build, battery, thermal
    status, screen, and the preparation that was applied.
    """
    if not isinstance(observed, dict) or not observed:
        return []
    rows: list[tuple[str, str]] = []
    model = " ".join(str(observed[k]) for k in ("manufacturer", "model") if observed.get(k))
    if model:
        device = observed.get("device")
        rows.append(("Device model", f"{model} ({device})" if device else model))
    if observed.get("soc"):
        rows.append(("SoC", str(observed["soc"])))
    if observed.get("android_release") or observed.get("sdk"):
        build = f", build {observed['build_id']}" if observed.get("build_id") else ""
        release, sdk = observed.get("android_release"), observed.get("sdk")
        rows.append(("Android", f"{release} (SDK {sdk}){build}"))
    if observed.get("abi"):
        rows.append(("ABI", str(observed["abi"])))
    clusters = [c for c in observed.get("clusters") or [] if isinstance(c, dict)]
    if clusters:
        text = ", ".join(
            f"{len(c.get('cpus') or [])}x {c['max_freq_khz'] / 1e6:.2f} GHz"
            for c in clusters
            if isinstance(c.get("max_freq_khz"), int | float)
        )
        rows.append(("CPU clusters", f"{text}; big cores {observed.get('big_cores')}"))
    if observed.get("governors"):
        rows.append(("Governors", ", ".join(map(str, observed["governors"]))))
    battery = observed.get("battery")
    if isinstance(battery, dict) and any(v is not None for v in battery.values()):
        temp = battery.get("temp_c")
        rows.append(
            (
                "Battery",
                f"{battery.get('level_pct')}% {battery.get('status') or ''}".strip()
                + (f", {temp:g} °C" if isinstance(temp, int | float) else ""),
            )
        )
    if observed.get("thermal_status") is not None:
        rows.append(("Android thermal status", str(observed["thermal_status"])))
    zones = observed.get("thermal_zones_c")
    if isinstance(zones, dict) and zones:
        name, temp = max(zones.items(), key=lambda kv: kv[1])
        rows.append(("Hottest thermal zone", f"{name} {temp:g} °C"))
    if observed.get("screen_on") is not None:
        rows.append(("Screen", "on" if observed["screen_on"] else "off"))
    for name, shown in (observed.get("preparation") or {}).items():
        rows.append((f"Prepared: {name}", str(shown)))
    return rows
