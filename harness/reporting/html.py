"""The self-contained HTML page of a run, rendered from a Jinja2 template with autoescaping on.

Everything the page needs is inline (CSS in the template, plots as base64 PNG data URIs) because
reports are opened on machines without internet access and attached to CI runs as one file.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from harness.reporting.energy import energy_table
from harness.reporting.plots import Plot
from harness.reporting.tables import display_rows, fmt_ms, has_variants, host_observed_rows
from harness.results.records import JobResult, RunRecord

_TEMPLATES = Path(__file__).resolve().parent / "templates"


def _environment() -> Environment:
    # autoescape=True for every template: model names, errors and device strings come from
    # user files and devices, and must never become markup.
    return Environment(
        loader=FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _mhz(khz: Any) -> str:
    return f"{khz / 1000:.0f}" if isinstance(khz, int | float) else str(khz)


def _range_text(values: Sequence[float], unit: str) -> str:
    if not values:
        return "–"
    low, high = min(values), max(values)
    return f"{low:g} {unit}" if low == high else f"{low:g}–{high:g} {unit}"


def _grouped(mapping: dict[str, Any], fmt: Any = str) -> str:
    """``{"cpu0": "performance", "cpu1": "performance"}`` -> ``performance (cpu0, cpu1)``."""
    groups: dict[str, list[str]] = {}
    for key, value in mapping.items():
        groups.setdefault(fmt(value), []).append(str(key))
    return "; ".join(f"{value} ({', '.join(keys)})" for value, keys in groups.items())


def _device_sections(record: RunRecord) -> list[dict[str, Any]]:
    """Per device: the state from its first job that reported one, plus per-job temperatures."""
    by_device: dict[str, list[JobResult]] = {}
    for job in sorted(record.jobs, key=lambda j: j.spec.job_index):
        by_device.setdefault(job.spec.device_name, []).append(job)
    sections = []
    for device, jobs in by_device.items():
        state = next((j.device_state for j in jobs if j.device_state), {})
        rows: list[tuple[str, str]] = []
        for key, label in (
            ("cpu_model", "CPU model"),
            ("cpu_count", "Cores"),
            ("machine", "Architecture"),
            ("os", "OS"),
            ("kernel", "Kernel"),
            ("hostname", "Hostname"),
            ("python", "Python"),
        ):
            if state.get(key) not in (None, ""):
                rows.append((label, str(state[key])))
        if state.get("governors"):
            rows.append(("Governor", _grouped(state["governors"])))
        if state.get("cur_freq_khz"):
            rows.append(("Current frequency (MHz)", _grouped(state["cur_freq_khz"], _mhz)))
        if state.get("max_freq_khz"):
            rows.append(("Max frequency (MHz)", _grouped(state["max_freq_khz"], _mhz)))
        for zone in state.get("thermal_zones") or []:
            if isinstance(zone, dict) and isinstance(zone.get("temp_c"), int | float):
                name = zone.get("type") or zone.get("name") or "zone"
                rows.append((f"Temperature {name}", f"{zone['temp_c']:g} °C"))
        if state.get("loadavg"):
            rows.append(
                ("Load average (1/5/15 min)", " / ".join(f"{x:g}" for x in state["loadavg"]))
            )
        rows.extend(host_observed_rows(state.get("host_observed")))
        known = {
            "cpu_model",
            "cpu_count",
            "machine",
            "os",
            "kernel",
            "hostname",
            "python",
            "governors",
            "cur_freq_khz",
            "max_freq_khz",
            "thermal_zones",
            "loadavg",
        }
        for key, value in state.items():
            # Extra keys a newer runner or another producer added: show the simple ones as-is.
            if key not in known and isinstance(value, str | int | float | bool):
                rows.append((key, str(value)))
        temps = [
            float(z["temp_c"])
            for j in jobs
            for z in (j.device_state.get("thermal_zones") or [])
            if isinstance(z, dict) and isinstance(z.get("temp_c"), int | float)
        ]
        sections.append(
            {
                "device": device,
                "rows": rows,
                "jobs": ", ".join(f"#{j.spec.job_index}" for j in jobs),
                "temp_range": _range_text(temps, "°C") if len(jobs) > 1 else "",
            }
        )
    return sections


def _settings_rows(record: RunRecord) -> list[dict[str, str]]:
    rows = []
    for job in sorted(record.jobs, key=lambda j: j.spec.job_index):
        s = job.spec.settings
        execution = (job.raw_document or {}).get("execution") or {}
        rows.append(
            {
                "job_index": str(job.spec.job_index),
                "model": job.spec.model.name,
                "device": job.spec.device_name,
                "threads": "default" if s.threads is None else str(s.threads),
                "provider": s.provider,
                "providers_used": ", ".join(execution.get("providers_used") or []) or "–",
                "warmup_runs": str(s.warmup_runs),
                "min_runs": str(s.min_runs),
                "duration": f"{s.min_duration_s:g}–{s.max_duration_s:g} s",
                "seed": str(s.seed),
                "shapes": ", ".join(f"{k}={v}" for k, v in s.shapes) or "–",
                "values": ", ".join(f"{k}={v}" for k, v in s.values) or "–",
                "inputs": s.inputs_file or job.spec.eval_file or "random",
                "path": job.spec.model.path,
                "sha256": job.spec.model.sha256[:12],
                "notes": "; ".join(execution.get("notes") or []),
            }
        )
    return rows


def _job_extras(record: RunRecord) -> dict[str, dict[str, Any]]:
    """Per job index: the validity lists (not flattened) and the first inference's ratio."""
    extras = {}
    parents = {j.spec.model.parent_sha256 for j in record.jobs}
    for job in record.jobs:
        ratio = ""
        if job.latency and job.first_inference_ms and job.latency.median_ms > 0:
            ratio = f"{job.first_inference_ms / job.latency.median_ms:.1f}×"
        extras[str(job.spec.job_index)] = {
            "reasons": list(job.validity.reasons),
            "warnings": list(job.validity.warnings),
            "first_ratio": ratio,
            "baseline": job.spec.model.sha256 in parents,  # the model variants were made from
            "min_max": f"{fmt_ms(job.latency.min_ms)} – {fmt_ms(job.latency.max_ms)}"
            if job.latency
            else "–",
        }
    return extras


def render_html(record: RunRecord, plots: Sequence[Plot]) -> str:
    """The report page for ``record`` with ``plots`` embedded as PNG data URIs."""
    rows = display_rows(record)
    counts = {
        "jobs": len(rows),
        "valid": sum(r["verdict_display"] == "VALID" for r in rows),
        "invalid": sum(r["verdict_display"] == "INVALID" for r in rows),
        "failed": sum(r["verdict_display"] == "FAILED" for r in rows),
        "fallback": sum(bool(r["fallback_to_cpu"]) for r in rows),
    }
    template = _environment().get_template("index.html.j2")
    return template.render(
        run=record,
        rows=rows,
        extras=_job_extras(record),
        counts=counts,
        plots=[
            {
                "name": p.name,
                "title": p.title,
                "caption": p.caption,
                "src": "data:image/png;base64," + base64.b64encode(p.png).decode("ascii"),
            }
            for p in plots
        ],
        devices=_device_sections(record),
        energy=energy_table(record),
        variants=has_variants(record),
        settings=_settings_rows(record),
    )
