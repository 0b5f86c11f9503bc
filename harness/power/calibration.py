"""Sign and unit calibration of battery fuel gauges, and linear calibration of PMIC power.

Kernel drivers print ``current_now`` three ways: negative while discharging (the ABI since 2020),
positive while discharging, or always positive; and a few devices print mA where the ABI says
µA (reference §1.3). The procedure here follows the reference: with the battery discharging,
``sign = +1 if median(raw) > 0 else -1`` so that discharge comes out as positive power drawn
(the reference writes ``-1 if median > 0`` beside that same goal, which would turn a
positive-while-discharging driver into negative power; the stated goal wins here), and
``|median| < 5000`` means mA, ``> 20000`` means µA, anything between is decided by which reading
gives a plausible phone power (0.2-15 W). A profile can override all of it per device.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from harness.errors import ConfigError

MA_BELOW = 5_000  # |median raw current| below this: the driver prints mA
UA_ABOVE = 20_000  # above this: µA, as the ABI says
PLAUSIBLE_W = (0.2, 15.0)  # a phone's power, idle to flat out
VOLTAGE_MV_BELOW = 100_000  # a cell is ~3-4.5 V: raw below 100000 cannot be µV

CurrentUnit = Literal["uA", "mA"]
VoltageUnit = Literal["uV", "mV"]
_CURRENT_SCALE_A = {"uA": 1e-6, "mA": 1e-3}
_VOLTAGE_SCALE_V = {"uV": 1e-6, "mV": 1e-3}


@dataclass(frozen=True)
class BatteryCalibration:
    """How to turn a gauge's raw ``current_now``/``voltage_now`` into watts drawn."""

    sign: int  # multiply the raw current by this so that discharging is positive
    current_unit: CurrentUnit
    voltage_unit: VoltageUnit
    provenance: str  # "auto: ..." or "profile override"

    def power_w(self, raw_current: float, raw_voltage: float) -> float:
        """Power drawn from the battery (W); positive while discharging."""
        amps = self.sign * raw_current * _CURRENT_SCALE_A[self.current_unit]
        return amps * raw_voltage * _VOLTAGE_SCALE_V[self.voltage_unit]


@dataclass(frozen=True)
class LinearCalibration:
    """``P_real = scale * P_measured + offset_w``, e.g. Pi 5 PMIC against a USB-C meter."""

    scale: float
    offset_w: float
    provenance: str  # who fitted it, on which board, against which meter

    def apply_w(self, power_w: float) -> float:
        return self.scale * power_w + self.offset_w


@dataclass(frozen=True)
class PowerCalibration:
    """Per-device calibration from a profile (every part optional)."""

    battery: BatteryCalibration | None = None
    linear: LinearCalibration | None = None


def calibrate_battery(
    raw_currents: Sequence[float],
    raw_voltages: Sequence[float],
    *,
    override: BatteryCalibration | None = None,
) -> tuple[BatteryCalibration, tuple[str, ...]]:
    """Sign and units from idle readings taken while discharging; returns (calibration, flags).

    ``override`` (from the device profile) wins; the flags then only report disagreement with
    what the readings suggest.
    """
    if not raw_currents or not raw_voltages:
        if override is not None:
            return override, ()
        raise ValueError("no battery readings to calibrate from")
    median_i = statistics.median(raw_currents)
    median_v = statistics.median(raw_voltages)
    voltage_unit: VoltageUnit = "mV" if abs(median_v) < VOLTAGE_MV_BELOW else "uV"
    sign = 1 if median_i > 0 else -1
    flags: list[str] = []
    magnitude = abs(median_i)
    if magnitude < MA_BELOW:
        current_unit: CurrentUnit = "mA"
        why = f"|median current| {magnitude:g} < {MA_BELOW}: mA"
    elif magnitude > UA_ABOVE:
        current_unit = "uA"
        why = f"|median current| {magnitude:g} > {UA_ABOVE}: µA"
    else:
        current_unit, why = _by_plausibility(magnitude, median_v, voltage_unit)
        if not why.endswith("plausible"):
            flags.append(f"battery current unit ambiguous ({why})")
    auto = BatteryCalibration(
        sign,
        current_unit,
        voltage_unit,
        f"auto: median raw current {median_i:g} -> sign {sign:+d}, {why}; voltage in "
        f"{voltage_unit}",
    )
    chosen = override or auto
    power = chosen.power_w(median_i, median_v)
    low, high = PLAUSIBLE_W
    if not low <= power <= high:
        flags.append(
            f"battery power {power:.3g} W outside the plausible {low:g}-{high:g} W band: "
            f"check the sign/unit calibration ({chosen.provenance})"
        )
    if override is not None and (override.sign, override.current_unit) != (sign, current_unit):
        flags.append(
            f"profile battery calibration (sign {override.sign:+d}, {override.current_unit}) "
            f"differs from what the readings suggest (sign {sign:+d}, {current_unit})"
        )
    return chosen, tuple(flags)


def _by_plausibility(
    magnitude: float, median_v: float, voltage_unit: VoltageUnit
) -> tuple[CurrentUnit, str]:
    volts = abs(median_v) * _VOLTAGE_SCALE_V[voltage_unit]
    low, high = PLAUSIBLE_W
    units: tuple[CurrentUnit, ...] = ("uA", "mA")
    for unit in units:
        power = magnitude * _CURRENT_SCALE_A[unit] * volts
        if low <= power <= high:
            return unit, f"{magnitude:g} read as {unit} gives {power:.3g} W, plausible"
    return "uA", f"{magnitude:g} gives an implausible power in both µA and mA"


def calibration_from_profile(data: Mapping[str, Any] | None) -> PowerCalibration:
    """A :class:`PowerCalibration` from a profile's ``power.calibration`` mapping.

    Keys: ``battery_sign`` (+1/-1), ``battery_current_unit`` (uA|mA), ``battery_voltage_unit``
    (uV|mV), ``linear_scale``, ``linear_offset_w``, ``provenance``.
    """
    if not data:
        return PowerCalibration()
    known = {
        "battery_sign",
        "battery_current_unit",
        "battery_voltage_unit",
        "linear_scale",
        "linear_offset_w",
        "provenance",
    }
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown power calibration keys: {', '.join(unknown)}",
            hint=f"use {', '.join(sorted(known))}",
        )
    provenance = str(data.get("provenance") or "profile override")
    battery = None
    if "battery_sign" in data or "battery_current_unit" in data:
        sign = int(data.get("battery_sign", -1))
        current_unit = data.get("battery_current_unit", "uA")
        voltage_unit = data.get("battery_voltage_unit", "uV")
        if (
            sign not in (1, -1)
            or current_unit not in _CURRENT_SCALE_A
            or voltage_unit not in _VOLTAGE_SCALE_V
        ):
            raise ConfigError(
                "power calibration: battery_sign must be 1 or -1, battery_current_unit uA|mA, "
                "battery_voltage_unit uV|mV"
            )
        battery = BatteryCalibration(sign, current_unit, voltage_unit, provenance)
    linear = None
    if "linear_scale" in data or "linear_offset_w" in data:
        linear = LinearCalibration(
            float(data.get("linear_scale", 1.0)),
            float(data.get("linear_offset_w", 0.0)),
            provenance,
        )
    return PowerCalibration(battery=battery, linear=linear)
