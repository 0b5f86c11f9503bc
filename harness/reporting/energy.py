"""The report's energy section: one row per job and the energy-vs-latency plot.

The cells come from :func:`harness.power.columns.energy_columns`, which says "no power source"
or "not measured" in words; the report never shows an energy number that was not measured.
"""

from __future__ import annotations

from typing import Any

from harness.power.columns import COLUMNS as ENERGY_COLUMNS
from harness.power.columns import energy_columns
from harness.power.plots import EnergyPoint, energy_latency_png
from harness.reporting.plots import Plot
from harness.reporting.tables import job_label
from harness.results.records import RunRecord


def energy_table(record: RunRecord) -> dict[str, Any] | None:
    """Headers and rows for the page's energy section; None when the run has no jobs."""
    jobs = sorted(record.jobs, key=lambda j: j.spec.job_index)
    if not jobs:
        return None
    rows = []
    for job in jobs:
        cells = energy_columns(job.energy) if job.status == "ok" else {}
        rows.append({
            "job_index": job.spec.job_index,
            "label": job_label(job),
            "cells": [cells.get(column, "") for column in ENERGY_COLUMNS],
        })
    measured = any(job.energy is not None for job in jobs)
    return {"headers": list(ENERGY_COLUMNS), "rows": rows, "measured": measured}


def energy_vs_latency(record: RunRecord) -> Plot | None:
    """Gross (and net) energy per inference against median latency, for jobs with energy."""
    points = [
        EnergyPoint(
            label=job_label(job),
            latency_ms=job.latency.median_ms,
            energy_mj=job.energy.gross_energy_per_inference_mj,
            net_energy_mj=job.energy.net_energy_per_inference_mj,
            source=job.energy.source,
        )
        for job in record.jobs
        if job.latency is not None
        and job.energy is not None
        and job.energy.gross_energy_per_inference_mj is not None
    ]
    if not points:
        return None
    return Plot(
        name="energy_vs_latency",
        title="Energy vs latency",
        caption="Gross energy per inference (filled) and net of the idle baseline (hollow) "
        "against median latency; one point per job with a power source.",
        png=energy_latency_png(points),
    )
