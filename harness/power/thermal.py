"""Thermal control around a job: cool down before it, judge throttling after it (reference §6.3).

:func:`cooldown` polls the device through the :class:`~harness.transport.base.Transport`
protocol, so it works the same on the local host, over SSH and over ADB. :func:`throttled_verdict`
reads the thermal trace the runner's sampler recorded beside the power source.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from harness.errors import ConfigError
from harness.power.throttle import PI_NOW_BITS, throttled_verdict
from harness.transport.base import Transport

DEFAULT_ZONES_GLOB = "/sys/class/thermal/thermal_zone*"
# Zone types that stand for the CPU/SoC/skin temperature (substring match on `type`).
DEFAULT_ZONE_TYPES = ("cpu", "soc", "skin", "pkg", "cluster", "big", "little", "mid", "tsens")
_SAFE_GLOB = re.compile(r"^[A-Za-z0-9_./*:\-\[\]]+$")
_CALL_TIMEOUT_S = 15.0
_THERMAL_STATUS = re.compile(r"Thermal Status:\s*(\d+)")
_THROTTLED = re.compile(r"throttled=(0x[0-9a-fA-F]+)")


@dataclass(frozen=True)
class ZoneTemp:
    name: str
    type: str
    temp_c: float


@dataclass(frozen=True)
class CooldownResult:
    """How the cooldown before a job ended."""

    reached: bool  # every gate open before the timeout
    waited_s: float
    max_temp_c: float | None  # of the gated zones, at the last poll
    zones: tuple[ZoneTemp, ...]
    pi_throttled: int | None  # the get_throttled word at the last poll, when checked
    android_thermal_status: int | None  # 0 NONE .. 6 SHUTDOWN, when checked
    reason: str  # why it ended, e.g. "timeout after 120 s: cpu-thermal 61.2 °C > 50 °C"


def read_zones(
    transport: Transport,
    zones_glob: str = DEFAULT_ZONES_GLOB,
    *,
    timeout_s: float = _CALL_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
) -> list[ZoneTemp]:
    """Every readable thermal zone under ``zones_glob`` (°C; sysfs gives millidegrees)."""
    if not _SAFE_GLOB.match(zones_glob):
        raise ConfigError(
            f"thermal zones glob {zones_glob!r} has characters a shell would interpret",
            hint="use a plain path pattern such as /sys/class/thermal/thermal_zone*",
        )
    # The glob must reach the shell unquoted to expand; _SAFE_GLOB keeps it inert otherwise.
    script = (
        f'for z in {zones_glob}; do t=$(cat "$z/temp" 2>/dev/null) || continue; '
        'printf "%s\\t%s\\t%s\\n" "${z##*/}" "$(cat "$z/type" 2>/dev/null)" "$t"; done'
    )
    result = transport.run(["sh", "-c", script], timeout_s=timeout_s, env=env)
    zones = []
    for line in result.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        try:
            raw = int(parts[2])
        except ValueError:
            continue
        zones.append(ZoneTemp(parts[0], parts[1] or "unknown", raw / 1000.0))
    return zones


def read_pi_throttled(
    transport: Transport,
    *,
    timeout_s: float = _CALL_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
) -> int | None:
    """The Pi's ``vcgencmd get_throttled`` word, None where there is no vcgencmd."""
    result = transport.run(["vcgencmd", "get_throttled"], timeout_s=timeout_s, env=env)
    match = _THROTTLED.search(result.stdout)
    return int(match.group(1), 16) if result.ok and match else None


def read_android_thermal_status(
    transport: Transport,
    *,
    timeout_s: float = _CALL_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
) -> int | None:
    """``Thermal Status: N`` from ``dumpsys thermalservice``, None where unavailable."""
    result = transport.run(["dumpsys", "thermalservice"], timeout_s=timeout_s, env=env)
    return parse_thermal_status(result.stdout) if result.ok else None


def parse_thermal_status(text: str) -> int | None:
    match = _THERMAL_STATUS.search(text)
    return int(match.group(1)) if match else None


def cooldown(
    transport: Transport,
    *,
    zones_glob: str = DEFAULT_ZONES_GLOB,
    threshold_c: float = 45.0,
    timeout_s: float = 300.0,
    poll_s: float = 1.0,
    zone_types: Sequence[str] = DEFAULT_ZONE_TYPES,
    check_pi_throttled: bool = False,
    check_android_status: bool = False,
    env: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> CooldownResult:
    """Wait until the CPU/SoC/skin zones are at or below ``threshold_c``, no Pi "now" throttle
    bit is set and the Android thermal status is 0, or ``timeout_s`` passes (recorded, not
    raised: the job still runs and carries the result). ``env`` is passed to every device
    command (e.g. a PATH reaching vcgencmd)."""
    started = clock()
    while True:
        zones = read_zones(transport, zones_glob, env=env)
        gated = [z for z in zones if any(t in z.type.lower() for t in zone_types)] or zones
        hottest = max(gated, key=lambda z: z.temp_c, default=None)
        pi_word = read_pi_throttled(transport, env=env) if check_pi_throttled else None
        status = read_android_thermal_status(transport, env=env) if check_android_status else None
        blockers = []
        if hottest is not None and hottest.temp_c > threshold_c:
            blockers.append(f"{hottest.type} {hottest.temp_c:.1f} °C > {threshold_c:g} °C")
        if pi_word is not None and pi_word & PI_NOW_BITS:
            blockers.append(f"Pi throttling now (get_throttled=0x{pi_word:x})")
        if status:
            blockers.append(f"Android thermal status {status}")
        waited = clock() - started
        if not blockers or waited >= timeout_s:
            if blockers:
                reason = f"timeout after {waited:.0f} s: {'; '.join(blockers)}"
            elif hottest is None:
                reason = "no readable thermal zones; other gates open"
            else:
                reason = f"below {threshold_c:g} °C after {waited:.1f} s"
            return CooldownResult(
                reached=not blockers,
                waited_s=waited,
                max_temp_c=hottest.temp_c if hottest else None,
                zones=tuple(zones),
                pi_throttled=pi_word,
                android_thermal_status=status,
                reason=reason,
            )
        sleep(min(poll_s, max(0.0, timeout_s - waited)))


__all__ = ["CooldownResult", "cooldown", "throttled_verdict"]
