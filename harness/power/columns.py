"""Report columns for a job's energy: plain strings, and a plain "no power source" when so."""

from __future__ import annotations

from harness.power.energy import EnergySummary

COLUMNS = (
    "power source",
    "avg power (W)",
    "energy/inf gross (mJ)",
    "energy/inf net (mJ)",
    "inferences/J",
    "idle power (W)",
    "sample rate (Hz)",
    "power quality",
)


def energy_columns(summary: EnergySummary | None) -> dict[str, str]:
    """One row of the energy table: every column of :data:`COLUMNS`, formatted.

    ``None`` (power not requested) and a summary without numbers both say so in words; no cell
    ever shows a number that was not measured.
    """
    if summary is None:
        return dict.fromkeys(COLUMNS, "") | {"power source": "not measured"}
    source = (
        "no power source" if summary.source == "none" else f"{summary.source} ({summary.scope})"
    )
    idle = _num(summary.idle_power_w, 3)
    if summary.idle_power_w is not None and summary.idle_power_std_w is not None:
        idle = f"{summary.idle_power_w:.3g} ± {summary.idle_power_std_w:.2g}"
    missing = "n/a" if summary.source != "none" else "—"
    row = {
        "power source": source,
        "avg power (W)": _num(summary.avg_power_w, 3, missing),
        "energy/inf gross (mJ)": _num(summary.gross_energy_per_inference_mj, 4, missing),
        "energy/inf net (mJ)": _num(summary.net_energy_per_inference_mj, 4, missing),
        "inferences/J": _num(summary.inferences_per_joule, 4, missing),
        "idle power (W)": idle if summary.idle_power_w is not None else missing,
        "sample rate (Hz)": _num(summary.sample_rate_hz, 3, missing),
        "power quality": "; ".join(summary.quality_flags) or "ok",
    }
    return row


def _num(value: float | None, digits: int, missing: str = "n/a") -> str:
    return missing if value is None else f"{value:.{digits}g}"


# results.csv columns, units in the names (empty when power was not measured).
CSV_COLUMNS: tuple[str, ...] = (
    "power_source",
    "avg_power_w",
    "energy_per_inference_mj",
    "net_energy_per_inference_mj",
    "inferences_per_j",
    "idle_power_w",
    "power_quality",
)


def energy_csv_values(summary: EnergySummary | None) -> dict[str, object]:
    """The energy columns of one results.csv row, as raw numbers (None when not measured)."""
    if summary is None:
        return dict.fromkeys(CSV_COLUMNS)
    return {
        "power_source": summary.source,
        "avg_power_w": summary.avg_power_w,
        "energy_per_inference_mj": summary.gross_energy_per_inference_mj,
        "net_energy_per_inference_mj": summary.net_energy_per_inference_mj,
        "inferences_per_j": summary.inferences_per_joule,
        "idle_power_w": summary.idle_power_w,
        "power_quality": "; ".join(summary.quality_flags),
    }
