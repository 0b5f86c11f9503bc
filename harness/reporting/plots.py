"""The report's plots, rendered with matplotlib's Agg backend into PNG bytes.

Rendering is deterministic: figures are built without pyplot's global state, strip jitter uses a
seeded generator, and PNG metadata that would vary (the matplotlib version string) is dropped, so
the same record gives byte-identical plots on the same matplotlib and fonts.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from harness.results.records import JobResult, RunRecord

# Above this ratio between the largest and smallest median, a linear axis squashes the fast jobs.
_LOG_SCALE_RATIO = 10.0
_MAX_STRIP_POINTS = 400  # per job: enough to show the shape, few enough for a small PNG
_MAX_SERIES_POINTS = 4000  # per job in the over-the-run plot; the rolling median uses all samples
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_DPI = 100


@dataclass(frozen=True)
class Plot:
    """One rendered figure: a file-friendly name, a title and caption for the page, PNG bytes."""

    name: str
    title: str
    caption: str
    png: bytes


def _text(label: str) -> str:
    # Matplotlib treats paired '$' as mathtext; a model name is plain text.
    return label.replace("$", r"\$")


def _short_label(job: JobResult) -> str:
    settings = job.spec.settings
    threads = "default" if settings.threads is None else str(settings.threads)
    return _text(
        f"#{job.spec.job_index} {job.spec.model.name}\n"
        f"{job.spec.device_name} · t={threads} · {settings.provider}"
    )


def _timed_jobs(record: RunRecord) -> list[JobResult]:
    return [j for j in sorted(record.jobs, key=lambda j: j.spec.job_index) if j.samples_ms]


def _model_colours(jobs: Sequence[JobResult]) -> dict[str, str]:
    names: list[str] = []
    for job in jobs:
        if job.spec.model.name not in names:
            names.append(job.spec.model.name)
    return {name: _PALETTE[i % len(_PALETTE)] for i, name in enumerate(names)}


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def needs_log_scale(medians_ms: Sequence[float]) -> bool:
    """True when the medians span more than a factor of 10, so a linear axis would hide some."""
    positive = [m for m in medians_ms if m > 0]
    return len(positive) > 1 and max(positive) / min(positive) > _LOG_SCALE_RATIO


def latency_distribution(record: RunRecord) -> Plot | None:
    """Box plot plus a jittered strip of the samples, one row per job that has samples."""
    jobs = _timed_jobs(record)
    if not jobs:
        return None
    colours = _model_colours(jobs)
    rng = np.random.default_rng(0)
    fig = Figure(figsize=(12, 1.6 + 0.75 * len(jobs)), layout="constrained")
    ax = fig.add_subplot()
    data = [np.asarray(j.samples_ms) for j in jobs]
    positions = np.arange(len(jobs))[::-1]  # first job on top
    box = ax.boxplot(
        data,
        positions=positions,
        orientation="horizontal",
        widths=0.55,
        showfliers=False,
        patch_artist=True,
        medianprops={"color": "black", "linewidth": 1.6},
    )
    for patch, job in zip(box["boxes"], jobs, strict=True):
        patch.set_facecolor(colours[job.spec.model.name])
        patch.set_alpha(0.35)
    for pos, samples, job in zip(positions, data, jobs, strict=True):
        shown = samples
        if samples.size > _MAX_STRIP_POINTS:
            shown = rng.choice(samples, size=_MAX_STRIP_POINTS, replace=False)
        jitter = rng.uniform(-0.2, 0.2, size=shown.size)
        ax.scatter(shown, pos + jitter, s=5, alpha=0.45, color=colours[job.spec.model.name], lw=0)
    ax.set_yticks(positions, [_short_label(j) for j in jobs], fontsize=9)
    medians = [float(np.median(d)) for d in data]
    log = needs_log_scale(medians)
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("latency per inference (ms" + (", log scale)" if log else ")"))
    ax.grid(axis="x", which="both", alpha=0.3)
    ax.set_title("Latency distribution per job (box: quartiles, whiskers: 1.5 IQR)", fontsize=11)
    return Plot(
        name="latency_distribution",
        title="Latency distribution",
        caption="Each point is one timed inference (at most "
        f"{_MAX_STRIP_POINTS} shown per job); the box spans the quartiles."
        + (" Log scale: the medians differ by more than 10x." if log else ""),
        png=_png(fig),
    )


def _shown_indices(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of the samples to draw: all of them, or a seeded subset plus every extreme one."""
    if samples.size <= _MAX_SERIES_POINTS:
        return np.arange(samples.size)
    subset = rng.choice(samples.size, size=_MAX_SERIES_POINTS, replace=False)
    extremes = np.flatnonzero(samples > np.percentile(samples, 99.5))  # spikes must stay visible
    return np.union1d(subset, extremes)


def latency_over_runs(record: RunRecord) -> Plot | None:
    """Latency against run index per job, with a rolling median, to show drift or throttling."""
    jobs = _timed_jobs(record)
    if not jobs:
        return None
    colours = _model_colours(jobs)
    rng = np.random.default_rng(0)
    ncols = 1 if len(jobs) == 1 else 2
    nrows = math.ceil(len(jobs) / ncols)
    fig = Figure(figsize=(12, 0.4 + 2.3 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, job in zip(axes.flat, jobs, strict=False):
        samples = np.asarray(job.samples_ms)
        seq = np.arange(samples.size)
        # Clip the axis at the 99.5th percentile so one preemption spike does not flatten the
        # trend; clipped points stay visible as triangles on the top edge.
        top = float(np.percentile(samples, 99.5)) * 1.15
        bottom = float(samples.min()) * 0.95
        shown = _shown_indices(samples, rng)
        inside = shown[samples[shown] <= top]
        clipped = shown[samples[shown] > top]
        colour = colours[job.spec.model.name]
        ax.scatter(inside, samples[inside], s=4, alpha=0.4, color=colour, lw=0)
        if clipped.size:
            ax.scatter(clipped, np.full(clipped.size, top), marker="^", s=14, color="#d62728")
        window = max(9, samples.size // 25)
        if samples.size >= window:
            ends = np.unique(
                np.linspace(window, samples.size, num=min(400, samples.size - window + 1)).astype(
                    int
                )
            )
            rolling = np.array([np.median(samples[end - window : end]) for end in ends])
            ax.plot(
                seq[ends - 1], rolling, color="black", lw=1.2, label=f"rolling median ({window})"
            )
            ax.legend(loc="upper left", fontsize=7, frameon=False)
        ax.set_ylim(bottom, top)
        ax.set_title(_short_label(job).replace("\n", " · "), fontsize=9)
        ax.set_xlabel("run index", fontsize=8)
        ax.set_ylabel("ms", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(jobs) :]:
        ax.set_visible(False)
    return Plot(
        name="latency_over_runs",
        title="Latency over the run",
        caption="Latency of each timed inference in order. A rising rolling median suggests "
        "thermal throttling; red triangles are samples above the 99.5th percentile.",
        png=_png(fig),
    )


def size_vs_latency(record: RunRecord) -> Plot | None:
    """Model size against median latency (with its 95% CI) when the run has several models."""
    jobs = [j for j in _timed_jobs(record) if j.latency is not None and j.spec.model.size_bytes > 0]
    if len({j.spec.model.name for j in jobs}) < 2:
        return None
    colours = _model_colours(jobs)
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.add_subplot()
    for job in jobs:
        lat = job.latency
        assert lat is not None
        x = job.spec.model.size_bytes / 2**20
        low = lat.median_ci_low_ms if lat.median_ci_low_ms is not None else lat.median_ms
        high = lat.median_ci_high_ms if lat.median_ci_high_ms is not None else lat.median_ms
        ax.errorbar(
            x,
            lat.median_ms,
            yerr=[[lat.median_ms - low], [high - lat.median_ms]],
            fmt="o",
            ms=7,
            color=colours[job.spec.model.name],
            capsize=3,
        )
        ax.annotate(
            _short_label(job).replace("\n", " · "),
            (x, lat.median_ms),
            textcoords="offset points",
            xytext=(7, 4),
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.margins(x=0.35, y=0.25)
    ax.set_xlabel("model size (MiB, log scale)")
    ax.set_ylabel("median latency (ms, log scale)")
    ax.grid(which="major", alpha=0.3)
    ax.set_title("Model size vs median latency", fontsize=11)
    return Plot(
        name="size_vs_latency",
        title="Size vs latency",
        caption="Each point is one job; bars are the 95% confidence interval of the median.",
        png=_png(fig),
    )


def render_plots(record: RunRecord) -> list[Plot]:
    """Every plot that applies to ``record``, in page order."""
    from harness.reporting.energy import energy_vs_latency  # it imports this module

    makers = (latency_distribution, latency_over_runs, size_vs_latency, energy_vs_latency)
    return [plot for plot in (make(record) for make in makers) if plot is not None]
