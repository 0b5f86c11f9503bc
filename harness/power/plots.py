"""Energy-vs-latency scatter for reports, as PNG bytes (matplotlib, imported lazily)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class EnergyPoint:
    """One job on the plot."""

    label: str  # e.g. "mobilenet_tiny/int8 @ pixel6"
    latency_ms: float  # median latency
    energy_mj: float  # gross energy per inference
    net_energy_mj: float | None = None
    source: str = ""  # power source, shown in the legend


def energy_latency_png(points: Sequence[EnergyPoint], *, title: str = "Energy vs latency") -> bytes:
    """A scatter of gross energy per inference (mJ) against median latency (ms), one marker
    per job, net energy as a hollow marker below it; log axes when values span > 30x."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    try:
        sources = sorted({p.source for p in points})
        markers = dict(zip(sources, "osD^v<>ph*", strict=False))
        for source in sources:
            chosen = [p for p in points if p.source == source]
            ax.scatter(
                [p.latency_ms for p in chosen],
                [p.energy_mj for p in chosen],
                marker=markers.get(source, "o"),
                label=f"gross ({source})" if source else "gross",
            )
            nets = [p for p in chosen if p.net_energy_mj is not None]
            if nets:
                ax.scatter(
                    [p.latency_ms for p in nets],
                    [p.net_energy_mj or 0.0 for p in nets],
                    marker=markers.get(source, "o"),
                    facecolors="none",
                    edgecolors="grey",
                    label=f"net of idle ({source})" if source else "net of idle",
                )
        for p in points:
            ax.annotate(
                p.label,
                (p.latency_ms, p.energy_mj),
                fontsize=7,
                xytext=(4, 3),
                textcoords="offset points",
            )
        for axis, values in (
            ("x", [p.latency_ms for p in points]),
            ("y", [p.energy_mj for p in points]),
        ):
            positive = [v for v in values if v > 0]
            if positive and max(positive) / min(positive) > 30:
                (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        ax.set_xlabel("median latency (ms)")
        ax.set_ylabel("energy per inference (mJ)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if points:
            ax.legend(fontsize=8)
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png")
        return buffer.getvalue()
    finally:
        plt.close(fig)
