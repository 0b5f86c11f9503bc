"""The ``power:`` block of a device profile, and the runner flags it turns into.

Meant to be embedded in :class:`harness.profiles.DeviceProfile` as
``power: PowerSettings = Field(default_factory=PowerSettings)``; the session then appends
:func:`runner_power_argv` to the runner's command line and passes
:meth:`PowerSettings.calibration_model` to :func:`harness.power.energy.energy_from_document`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.errors import ConfigError
from harness.power.calibration import PowerCalibration, calibration_from_profile
from harness.power.thermal import DEFAULT_ZONES_GLOB

PowerSourceKind = Literal["none", "auto", "android-battery", "odpm", "pi5-pmic", "hwmon", "rapl"]


class _Model(BaseModel):
    # as in harness.profiles: a typo in a profile is an error, never silently ignored
    model_config = ConfigDict(extra="forbid", frozen=True)


class CooldownSettings(_Model):
    """Cool down before each job (reference §6.3); off unless enabled."""

    enabled: bool = False
    threshold_c: float = 45.0
    timeout_s: float = Field(default=300.0, gt=0)
    poll_s: float = Field(default=1.0, gt=0)
    zones_glob: str = DEFAULT_ZONES_GLOB
    check_pi_throttled: bool = False  # Raspberry Pi: no "now" bit of get_throttled set
    check_android_status: bool = False  # Android: dumpsys thermalservice status 0


class ExternalMeterSettings(_Model):
    """A meter on the host measuring the device from outside (``power: {external: ...}``).

    When set, the job's energy comes from this meter over the runner's timed window (aligned to
    the device's clock), not from the device's own power source; see
    :mod:`harness.power.external_job`.
    """

    kind: Literal["serial"] = "serial"  # <meter_ms>,<volts>,<amps> lines over a serial port
    port: str
    baud: int = Field(default=115200, gt=0)
    scope: Literal["wall", "usb", "battery"] = "usb"  # where the meter sits
    nominal_hz: float = Field(default=50.0, gt=0)
    name: str = "serial-meter"
    clock_rounds: int = Field(default=10, ge=1, le=100)  # host<->device clock exchanges


class PowerSettings(_Model):
    """Power measurement on a device: which source, how fast, how long."""

    source: PowerSourceKind = "auto"  # "auto" probes; none found -> "no power source" in reports
    rate_hz: float = Field(default=10.0, gt=0, le=100)  # capped per source on the device
    idle_s: float = Field(default=30.0, ge=0)  # idle baseline right before the timed window
    min_window_s: float = Field(default=0.0, ge=0)
    window_factor: float = Field(default=50.0, ge=0)  # window >= factor x update period
    thermal_rate_hz: float = Field(default=2.0, gt=0, le=20)
    # pin the sampler thread: a CPU number, "auto" (the slowest allowed core) or "none"
    sampler_cpu: int | Literal["auto", "none"] = "auto"
    calibration: dict[str, Any] = Field(default_factory=dict)  # see calibration_from_profile
    cooldown: CooldownSettings = Field(default_factory=CooldownSettings)
    external: ExternalMeterSettings | None = None  # a host-side meter; None: the device's own

    @field_validator("calibration")
    @classmethod
    def _calibration_is_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            calibration_from_profile(value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value

    def calibration_model(self) -> PowerCalibration:
        """The per-device calibration for :func:`energy_from_document`."""
        return calibration_from_profile(self.calibration)


def runner_power_argv(settings: PowerSettings) -> list[str]:
    """The harness_runner.py flags for ``settings`` (none when power is off)."""
    if settings.source == "none":
        return []
    argv = [
        "--power-source",
        settings.source,
        "--power-rate-hz",
        repr(settings.rate_hz),
        "--power-idle-s",
        repr(settings.idle_s),
        "--power-min-window-s",
        repr(settings.min_window_s),
        "--power-window-factor",
        repr(settings.window_factor),
        "--power-thermal-rate-hz",
        repr(settings.thermal_rate_hz),
    ]
    return [*argv, "--power-cpu", str(settings.sampler_cpu)]
