"""Energy per inference from a runner document's power trace (reference §7.1).

Counters (ODPM, RAPL): the difference over the window, each counter interpolated at the edges.
Instantaneous sources (PMIC, INA2xx): trapezoid integration clipped to the window. Battery
gauges: sign/unit calibrated, collapsed to change points, integrated as a zero-order hold.
The idle baseline is the same integral over the idle window before the run; gross energy is
primary, net = gross - idle power x window. Nothing is invented: whatever cannot be computed is
None with a quality flag that says why.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from harness.errors import PowerError
from harness.power import integrate as ig
from harness.power.calibration import BatteryCalibration, PowerCalibration, calibrate_battery
from harness.results.schema import PowerMeter, PowerTrace, RunnerDocument

DEFAULT_WINDOW_FACTOR = 50.0
IDLE_MIN_S = 30.0  # the reference's idle baseline length
INVALID_STATUSES = ("Charging", "Full")  # USB feeds the phone: the gauge sees the charger


@dataclass(frozen=True)
class EnergySummary:
    """One job's energy, from one source, with every reason to doubt it."""

    source: str  # "odpm", "android-battery", "pi5-pmic", "hwmon", "rapl", "none", ...
    scope: str  # "rails", "battery", "pmic", "wall", "usb", "package", "none"
    method: str  # "counter", "instantaneous", "none"
    inferences: int
    window_s: float | None
    avg_power_w: float | None
    gross_energy_j: float | None
    gross_energy_per_inference_mj: float | None
    net_energy_per_inference_mj: float | None
    inferences_per_joule: float | None
    idle_power_w: float | None
    idle_power_std_w: float | None
    sample_rate_hz: float | None
    update_period_s: float | None
    per_channel_energy_j: tuple[tuple[str, float], ...] = ()
    calibration: str | None = None  # provenance of the battery sign/unit or linear calibration
    calibrated_avg_power_w: float | None = None  # after a linear (e.g. PMIC -> wall) calibration
    quality_flags: tuple[str, ...] = ()

    @property
    def available(self) -> bool:
        """True when there is an energy number to show."""
        return self.gross_energy_j is not None

    @classmethod
    def unmeasured(
        cls,
        source: str,
        scope: str,
        method: str,
        inferences: int,
        *,
        window_s: float | None = None,
        sample_rate_hz: float | None = None,
        update_period_s: float | None = None,
        quality_flags: tuple[str, ...] = (),
    ) -> EnergySummary:
        """A summary with no energy numbers: the flags say why none could be computed."""
        return cls(
            source, scope, method, inferences, window_s,
            None, None, None, None, None, None, None,
            sample_rate_hz, update_period_s, quality_flags=quality_flags,
        )  # fmt: skip


def energy_from_document(
    doc: RunnerDocument, *, calibration: PowerCalibration | None = None
) -> EnergySummary | None:
    """The energy summary of a job, or None when the job did not ask for power at all."""
    if doc.power is None:
        return None
    inferences = 0
    if doc.timing is not None:
        aggregate = doc.timing.aggregate_us
        if doc.timing.samples_kind == "aggregate_only" and aggregate is not None:
            inferences = aggregate.count or 0  # a native tool's count: no per-run samples
        else:
            inferences = len(doc.timing.latencies_ns)
    return energy_from_trace(doc.power, inferences, calibration=calibration or PowerCalibration())


def energy_from_trace(
    trace: PowerTrace, inferences: int, *, calibration: PowerCalibration
) -> EnergySummary:
    """Gross/net energy per inference over ``trace``'s window for ``inferences`` runs."""
    flags: list[str] = list(trace.flags)
    start, end = trace.window_start_ns, trace.window_end_ns
    window_s = (end - start) / 1e9 if start is not None and end is not None else None
    empty = EnergySummary.unmeasured(
        trace.source, trace.scope, trace.method, inferences, window_s=window_s,
        sample_rate_hz=trace.achieved_rate_hz, update_period_s=trace.update_period_s,
    )  # fmt: skip
    if not trace.meters:
        if not flags:
            flags.append("no power source on this device")
        return replace(empty, quality_flags=tuple(flags))
    flags.extend(_trace_flags(trace, window_s))
    if trace.source == "android-battery" and _charging(trace):
        flags.append("charging during run: battery readings invalid")
        return replace(empty, quality_flags=tuple(_unique(flags)))
    if start is None or end is None or end <= start or inferences == 0:
        flags.append("no timed window: energy per inference not computed")
        return replace(empty, quality_flags=tuple(_unique(flags)))

    try:
        series = [_MeterSeries.build(m, trace, calibration, flags) for m in trace.meters]
    except (PowerError, ValueError) as exc:
        flags.append(f"power readings unusable: {exc}")
        return replace(empty, quality_flags=tuple(_unique(flags)))
    provenance = next((s.provenance for s in series if s.provenance), None)
    try:
        gross_j = sum(s.energy_j(start, end) for s in series)
    except PowerError as exc:
        why = str(exc)
        if isinstance(exc, ig.WindowNotCovered) and trace.read_error_count:
            why = f"power source stopped answering during the window ({why})"
        flags.append(f"energy not computed: {why}")
        return replace(empty, calibration=provenance, quality_flags=tuple(_unique(flags)))
    per_channel: list[tuple[str, float]] = []
    for s in series:
        per_channel.extend(s.channel_energies(start, end))
    for s in series:
        gap = ig.largest_gap_s(s.t_ns, start, end)
        if window_s and gap > max(0.5, 0.1 * window_s):
            flags.append(f"{gap:.2g} s without power readings inside the window ({s.name})")

    idle_w, idle_std_w = _idle(series, trace, flags)
    avg_w = gross_j / window_s if window_s else None
    net_mj = None
    if idle_w is not None and window_s:
        net_mj = (gross_j - idle_w * window_s) / inferences * 1e3
    calibrated = None
    if calibration.linear is not None and avg_w is not None:
        calibrated = calibration.linear.apply_w(avg_w)
        provenance = calibration.linear.provenance
    return EnergySummary(
        source=trace.source,
        scope=trace.scope,
        method=trace.method,
        inferences=inferences,
        window_s=window_s,
        avg_power_w=avg_w,
        gross_energy_j=gross_j,
        gross_energy_per_inference_mj=gross_j / inferences * 1e3,
        net_energy_per_inference_mj=net_mj,
        inferences_per_joule=inferences / gross_j if gross_j > 0 else None,
        idle_power_w=idle_w,
        idle_power_std_w=idle_std_w,
        sample_rate_hz=trace.achieved_rate_hz,
        update_period_s=trace.update_period_s,
        per_channel_energy_j=tuple(per_channel),
        calibration=provenance,
        calibrated_avg_power_w=calibrated,
        quality_flags=tuple(_unique(flags)),
    )


@dataclass(frozen=True)
class _MeterSeries:
    """One meter made integrable: a counter, or power samples with their integration rule."""

    name: str
    t_ns: np.ndarray
    counter: ig.Counter | None
    channel_counters: tuple[tuple[str, ig.Counter], ...]
    power_w: np.ndarray | None
    hold: bool  # sample-and-hold gauge: zero-order hold over change points
    provenance: str | None

    @classmethod
    def build(
        cls,
        meter: PowerMeter,
        trace: PowerTrace,
        calibration: PowerCalibration,
        flags: list[str],
    ) -> _MeterSeries:
        t = np.asarray(meter.t_ns, dtype=np.float64)
        if meter.quantity == "energy_uj":
            channels = tuple(
                (name, ig.unwrap_counter(meter.t_ns, values, meter.wrap_uj.get(name)))
                for name, values in meter.channels.items()
            )
            total = ig.sum_counters([c for _, c in channels])
            if total.resets:
                flags.append(f"energy counter reset detected on {meter.name}")
            return cls(meter.name, total.t_ns, total, channels, None, False, None)
        if meter.quantity == "power_w":
            power = np.sum(
                [np.asarray(v, dtype=np.float64) for v in meter.channels.values()], axis=0
            )
            return cls(meter.name, t, None, (), power, False, None)
        currents, voltages = list(meter.channels.values())[:2]
        battery, cal_flags = _battery_calibration(meter, trace, calibration.battery)
        flags.extend(cal_flags)
        power = np.array([battery.power_w(i, v) for i, v in zip(currents, voltages, strict=True)])
        period_ns = trace.update_period_s * 1e9 if trace.update_period_s else None
        t_cp, p_cp = ig.gauge_change_points(t, power, period_ns)
        return cls(meter.name, t_cp, None, (), p_cp, True, battery.provenance)

    def energy_j(self, start: float, end: float) -> float:
        if self.counter is not None:
            return ig.counter_energy_j(self.counter, start, end)
        assert self.power_w is not None
        if self.hold:
            return ig.hold_energy_j(self.t_ns, self.power_w, start, end)
        return ig.trapezoid_energy_j(self.t_ns, self.power_w, start, end)

    def channel_energies(self, start: float, end: float) -> list[tuple[str, float]]:
        out = []
        for name, counter in self.channel_counters:
            try:
                out.append((name, ig.counter_energy_j(counter, start, end)))
            except PowerError:
                continue
        return out

    def idle_power(self, start: float, end: float) -> tuple[float, float | None]:
        duration_s = (end - start) / 1e9
        mean_w = self.energy_j(start, end) / duration_s
        if self.counter is not None:
            spread = ig.interval_powers_w(self.counter, start, end)
        else:
            assert self.power_w is not None
            spread = ig.samples_in(self.t_ns, self.power_w, start, end)
            if self.hold:  # the value already held when the window opened counts too
                held = self.power_w[self.t_ns <= start]
                spread = np.concatenate((held[-1:], spread))
                if spread.size == 1:
                    return mean_w, 0.0  # the gauge never changed: no spread to see
        std = float(np.std(spread, ddof=1)) if spread.size >= 2 else None
        return mean_w, std


def _battery_calibration(
    meter: PowerMeter, trace: PowerTrace, override: BatteryCalibration | None
) -> tuple[BatteryCalibration, tuple[str, ...]]:
    """Calibrate on idle readings (discharging, no inference load), else on all readings."""
    currents, voltages = list(meter.channels.values())[:2]
    lo, hi = trace.idle_start_ns, trace.idle_end_ns
    picked = [
        (i, v)
        for t, i, v in zip(meter.t_ns, currents, voltages, strict=True)
        if lo is not None and hi is not None and lo <= t <= hi
    ]
    if len(picked) < 3:
        picked = list(zip(currents, voltages, strict=True))
    return calibrate_battery([p[0] for p in picked], [p[1] for p in picked], override=override)


def _idle(
    series: list[_MeterSeries], trace: PowerTrace, flags: list[str]
) -> tuple[float | None, float | None]:
    lo, hi = trace.idle_start_ns, trace.idle_end_ns
    if lo is None or hi is None or hi <= lo:
        flags.append("no idle baseline measured: net energy not computed")
        return None, None
    try:
        parts = [s.idle_power(lo, hi) for s in series]
    except PowerError as exc:
        flags.append(f"idle baseline not computed: {exc}")
        return None, None
    mean_w = sum(p[0] for p in parts)
    stds = [p[1] for p in parts]
    # Meters are independent sensors: their spreads add in quadrature.
    known = [s for s in stds if s is not None]
    std_w = math.sqrt(sum(s * s for s in known)) if len(known) == len(stds) else None
    idle_s = (hi - lo) / 1e9
    if idle_s < IDLE_MIN_S:
        flags.append(f"idle baseline {idle_s:.3g} s is shorter than {IDLE_MIN_S:g} s")
    if trace.update_period_s and idle_s < 10 * trace.update_period_s:
        flags.append("idle baseline shorter than 10x the update period")
    return mean_w, std_w


def _trace_flags(trace: PowerTrace, window_s: float | None) -> list[str]:
    flags = []
    factor = trace.window_factor or DEFAULT_WINDOW_FACTOR
    period = trace.update_period_s
    # 1% slack: the runner stops at the first run past the required length, never before it
    if window_s is not None and period and window_s < 0.99 * factor * period:
        flags.append(
            f"window shorter than {factor:g}x the gauge update period "
            f"({window_s:.3g} s < {factor:g} x {period:.3g} s)"
        )
    if trace.update_period_s is None and trace.meters:
        flags.append("update period of the power source not detected")
    target = trace.requested_rate_hz
    if trace.achieved_rate_hz is not None and target and trace.achieved_rate_hz < 0.7 * target:
        flags.append(
            f"sampler achieved {trace.achieved_rate_hz:.3g} Hz of the {target:g} Hz requested"
        )
    if trace.read_error_count:
        first = trace.read_errors[0].message if trace.read_errors else "?"
        flags.append(f"{trace.read_error_count} power reads failed (first: {first})")
    statuses = {status for _, status in trace.charging_status}
    if trace.source == "android-battery" and "Not charging" in statuses:
        flags.append("USB power connected ('Not charging'): the gauge may not see the whole load")
    return flags


def _charging(trace: PowerTrace) -> bool:
    return any(status in INVALID_STATUSES for _, status in trace.charging_status)


def _unique(flags: list[str]) -> list[str]:
    return list(dict.fromkeys(flags))


def energy_to_json(summary: EnergySummary) -> dict[str, Any]:
    """The summary as plain JSON types, for the results store."""
    return dataclasses.asdict(summary)


def energy_from_json(data: dict[str, Any]) -> EnergySummary:
    """Rebuild a summary stored with :func:`energy_to_json`."""
    values = dict(data)
    values["per_channel_energy_j"] = tuple(
        (str(name), float(joules)) for name, joules in values.get("per_channel_energy_j", ())
    )
    values["quality_flags"] = tuple(values.get("quality_flags", ()))
    return EnergySummary(**values)
