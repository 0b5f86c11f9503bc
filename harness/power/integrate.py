"""Pure numerics of energy over a window: counters, trapezoids, sample-and-hold. No I/O.

All times are integer nanoseconds on one clock (the runner's window clock); energies are joules,
powers watts. Each function raises :class:`WindowNotCovered` when the samples do not bracket
the window, rather than inventing the missing edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.errors import PowerError

# Readings as they come: a list from the document or an array already converted.
Floats = Sequence[float] | np.ndarray


class WindowNotCovered(PowerError):
    """The samples start after the window's start or end before its end."""


@dataclass(frozen=True)
class Counter:
    """A cumulative energy counter made continuous: wraps undone, resets zeroed and listed."""

    t_ns: np.ndarray  # float64 ns, strictly increasing
    energy_j: np.ndarray  # continuous cumulative energy, J
    resets: tuple[tuple[float, float], ...]  # (t_before, t_after) of every counter decrease


def unwrap_counter(t_ns: Floats, values_uj: Floats, wrap_uj: float | None = None) -> Counter:
    """Turn raw counter readings (µJ) into a continuous cumulative energy (J).

    A decrease is a wraparound when the counter has a modulus (RAPL's ``max_energy_range_uj``:
    add it once, assuming at most one wrap between reads) and a reset otherwise (an ODPM rail
    swap or a reboot); a reset interval carries no energy and is listed so a window that overlaps
    it can be refused. Repeated timestamps (a cached read) are dropped.
    """
    t = np.asarray(t_ns, dtype=np.float64)
    v = np.asarray(values_uj, dtype=np.float64)
    if t.size == 0:
        return Counter(t, v, ())
    keep = np.concatenate(([True], np.diff(t) > 0))
    t, v = t[keep], v[keep]
    deltas = np.diff(v)
    resets: list[tuple[float, float]] = []
    for i in np.flatnonzero(deltas < 0):
        if wrap_uj:
            deltas[i] += wrap_uj
        else:
            resets.append((float(t[i]), float(t[i + 1])))
            deltas[i] = 0.0
    cumulative = np.concatenate(([0.0], np.cumsum(deltas))) / 1e6
    return Counter(t, cumulative, tuple(resets))


def sum_counters(counters: Sequence[Counter]) -> Counter:
    """Channels of one meter (same timestamps) added into one counter."""
    if not counters:
        raise PowerError("no counter channels to add")
    first = counters[0]
    total = np.sum([c.energy_j for c in counters], axis=0)
    resets = tuple(r for c in counters for r in c.resets)
    return Counter(first.t_ns, total, resets)


def counter_energy_j(counter: Counter, start_ns: float, end_ns: float) -> float:
    """Energy between two instants: the counter interpolated linearly at both edges.

    Raises :class:`WindowNotCovered` if the reads do not bracket the window and
    :class:`PowerError` if the counter reset inside it.
    """
    _check_covered(counter.t_ns, start_ns, end_ns)
    for before, after in counter.resets:
        if after > start_ns and before < end_ns:
            raise PowerError("energy counter reset inside the window (rail swap or reboot)")
    edges = np.interp([start_ns, end_ns], counter.t_ns, counter.energy_j)
    return float(edges[1] - edges[0])


def interval_powers_w(counter: Counter, start_ns: float, end_ns: float) -> np.ndarray:
    """Average power of each read-to-read interval inside the window (for a spread)."""
    t, e = counter.t_ns, counter.energy_j
    inside = (t[:-1] >= start_ns) & (t[1:] <= end_ns)
    dt = np.diff(t)[inside] / 1e9
    de = np.diff(e)[inside]
    return np.asarray(de[dt > 0] / dt[dt > 0])


def trapezoid_energy_j(t_ns: Floats, power_w: Floats, start_ns: float, end_ns: float) -> float:
    """∫P dt over the window by the trapezoid rule, P interpolated at the window's edges."""
    t, p = _clip(t_ns, power_w, start_ns, end_ns)
    return float(np.sum(0.5 * (p[1:] + p[:-1]) * np.diff(t)) / 1e9)


def hold_energy_j(t_ns: Floats, power_w: Floats, start_ns: float, end_ns: float) -> float:
    """∫P dt for a sample-and-hold source: each value holds until the next change (zero-order
    hold over change points, reference §1.4)."""
    t = np.asarray(t_ns, dtype=np.float64)
    p = np.asarray(power_w, dtype=np.float64)
    _check_covered(t, start_ns, end_ns)
    edges = np.clip(np.append(t, np.inf), start_ns, end_ns)
    durations = np.diff(edges)
    return float(np.sum(p * durations) / 1e9)


def change_points(t_ns: Floats, values: Floats) -> tuple[np.ndarray, np.ndarray]:
    """Collapse runs of identical readings to the first of each run (sample-and-hold).

    The last reading is kept as well: it proves the held value lasted until then.
    """
    t = np.asarray(t_ns, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return t, v
    keep = np.concatenate(([True], v[1:] != v[:-1]))
    keep[-1] = True
    return t[keep], v[keep]


def gauge_change_points(
    t_ns: Floats, values: Floats, update_period_ns: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Change points of a polled sample-and-hold gauge, with the time each value took effect.

    A change seen at read ``i`` happened between reads ``i-1`` and ``i``: use the midpoint, which
    removes the polling delay's bias. ``current_now`` lags the load (reference §1.4), so the
    changes are moved half an update period earlier. The last reading is kept unshifted: it
    shows the last value held until then.
    """
    t = np.asarray(t_ns, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return t, v
    changed = np.flatnonzero(v[1:] != v[:-1]) + 1
    times = (t[changed - 1] + t[changed]) / 2 - (update_period_ns or 0.0) / 2
    keep_t = np.concatenate(([t[0]], times, [t[-1]]))
    keep_v = np.concatenate(([v[0]], v[changed], [v[-1]]))
    order = np.maximum.accumulate(keep_t)  # a shift must never reorder the points
    return order, keep_v


def samples_in(t_ns: Floats, values: Floats, start_ns: float, end_ns: float) -> np.ndarray:
    t = np.asarray(t_ns, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    return np.asarray(v[(t >= start_ns) & (t <= end_ns)])


def largest_gap_s(t_ns: Floats, start_ns: float, end_ns: float) -> float:
    """The longest time without a reading inside the window (edges included), in seconds."""
    t = np.asarray(t_ns, dtype=np.float64)
    inside = t[(t > start_ns) & (t < end_ns)]
    points = np.concatenate(([start_ns], inside, [end_ns]))
    return float(np.max(np.diff(points)) / 1e9) if points.size > 1 else 0.0


def _check_covered(t: np.ndarray, start_ns: float, end_ns: float) -> None:
    if t.size == 0:
        raise WindowNotCovered("no power readings at all")
    if t[0] > start_ns:
        raise WindowNotCovered(
            f"power readings start {(t[0] - start_ns) / 1e9:.3g} s after the window starts"
        )
    if t[-1] < end_ns:
        raise WindowNotCovered(
            f"power readings stop {(end_ns - t[-1]) / 1e9:.3g} s before the window ends"
        )


def _clip(
    t_ns: Floats, values: Floats, start_ns: float, end_ns: float
) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(t_ns, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    _check_covered(t, start_ns, end_ns)
    inside = (t > start_ns) & (t < end_ns)
    edge_values = np.interp([start_ns, end_ns], t, v)
    clipped_t = np.concatenate(([start_ns], t[inside], [end_ns]))
    clipped_v = np.concatenate(([edge_values[0]], v[inside], [edge_values[1]]))
    return clipped_t, clipped_v
