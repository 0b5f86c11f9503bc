"""Device preparation: operations applied before jobs and restored afterwards.

Each :class:`PrepOperation` can say whether it is available on a device, show its current state,
apply itself and restore what it changed (pyperf's "system tune" idea). A
:class:`DevicePreparation` runs the operations a profile's ``prepare:`` block asks for, and also
collects the device state that only the host can read (Android ``getprop``, ``dumpsys``),
recorded with every job.

Operations: screen off and battery unplug (Android, through ``input``/``dumpsys``), CPU
affinity (any Linux or Android device with ``taskset``) as a command prefix for the runner,
with the big/prime cores derived from the per-core maximum frequencies, never from a table, and
the cpufreq governor (:class:`harness.power.governor.GovernorFix`, where sysfs is writable).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.errors import DeviceError, HarnessError, RemoteCommandError
from harness.power.governor import GovernorFix
from harness.profiles import DeviceProfile
from harness.transport.base import CommandResult, Transport

log = logging.getLogger(__name__)

PREP_TIMEOUT_S = 30.0


class PrepOperation(Protocol):
    """One reversible change to a device (screen off, governor, affinity, ...)."""

    name: str

    def available(self, transport: Transport) -> bool:
        """Whether the device supports this operation (and we may apply it)."""
        ...

    def show(self, transport: Transport) -> str:
        """The current state, for reports and `devices check`."""
        ...

    def apply(self, transport: Transport) -> None:
        """Change the device; remember what to restore."""
        ...

    def restore(self, transport: Transport) -> None:
        """Undo :meth:`apply`. Called even when jobs failed."""
        ...


def _sh(transport: Transport, script: str) -> CommandResult:
    return transport.run(["sh", "-c", script], timeout_s=PREP_TIMEOUT_S)


def _checked(transport: Transport, argv: Sequence[str], what: str) -> CommandResult:
    result = transport.run(list(argv), timeout_s=PREP_TIMEOUT_S)
    if not result.ok:
        tail = (result.stderr.strip() or result.stdout.strip())[-160:]
        raise RemoteCommandError(f"{what} failed (exit code {result.exit_code}): {tail}")
    return result


# -- screen --------------------------------------------------------------------------------------
def parse_screen_on(dumpsys_power: str) -> bool | None:
    """Screen state from ``dumpsys power``: True (awake), False (asleep/dozing), None (unknown)."""
    state: bool | None = None
    for line in dumpsys_power.splitlines():
        line = line.strip()
        if line.startswith("mWakefulness="):
            state = line.split("=", 1)[1].strip() == "Awake"
        elif line.startswith("Display Power: state="):
            state = line.split("=", 1)[1].strip() == "ON"
    return state


class ScreenOff:
    """Turn the screen off for the run (``input keyevent KEYCODE_SLEEP``); back on if it was on."""

    name = "screen_off"

    def __init__(self) -> None:
        self.was_on: bool | None = None

    def _screen_on(self, transport: Transport) -> bool | None:
        result = transport.run(["dumpsys", "power"], timeout_s=PREP_TIMEOUT_S)
        return parse_screen_on(result.stdout) if result.ok else None

    def available(self, transport: Transport) -> bool:
        """``input`` exists and ``dumpsys power`` tells the screen state."""
        has_input = _sh(transport, "command -v input >/dev/null 2>&1").ok
        return has_input and self._screen_on(transport) is not None

    def show(self, transport: Transport) -> str:
        """``screen on``, ``screen off`` or ``screen unknown``."""
        on = self._screen_on(transport)
        return "screen " + ("unknown" if on is None else "on" if on else "off")

    def apply(self, transport: Transport) -> None:
        """Press "sleep" when the screen is on; an already dark screen is left alone."""
        self.was_on = self._screen_on(transport)
        if self.was_on:
            _checked(transport, ["input", "keyevent", "KEYCODE_SLEEP"], "turning the screen off")

    def restore(self, transport: Transport) -> None:
        """Wake the screen only when it was on before."""
        if self.was_on:
            _checked(transport, ["input", "keyevent", "KEYCODE_WAKEUP"], "turning the screen on")
        self.was_on = None


# -- battery -------------------------------------------------------------------------------------
class BatteryUnplug:
    """Make Android believe it is on battery (``dumpsys battery unplug``), then ``reset``.

    Charging heats the phone and changes its power policy; a real unplug is better, but over
    USB this is what can be done.
    """

    name = "battery_unplug"

    def _state(self, transport: Transport) -> dict[str, str]:
        result = transport.run(["dumpsys", "battery"], timeout_s=PREP_TIMEOUT_S)
        if not result.ok or "Current Battery Service state" not in result.stdout:
            return {}
        pairs = (line.strip().partition(":") for line in result.stdout.splitlines())
        return {k.strip(): v.strip() for k, sep, v in pairs if sep}

    def available(self, transport: Transport) -> bool:
        """The battery service answers ``dumpsys battery``."""
        return bool(self._state(transport))

    def show(self, transport: Transport) -> str:
        """Which power sources Android thinks are connected."""
        state = self._state(transport)
        if not state:
            return "battery service not available"
        sources = [
            k.split()[0]
            for k in ("AC powered", "USB powered", "Wireless powered")
            if state.get(k) == "true"
        ]
        return f"powered by {', '.join(sources) or 'battery'}; level {state.get('level', '?')}%"

    def apply(self, transport: Transport) -> None:
        """Pretend every charger is unplugged."""
        _checked(transport, ["dumpsys", "battery", "unplug"], "dumpsys battery unplug")

    def restore(self, transport: Transport) -> None:
        """Give the battery service back the real charger state."""
        _checked(transport, ["dumpsys", "battery", "reset"], "dumpsys battery reset")


# -- CPU affinity --------------------------------------------------------------------------------
_CORES_SCRIPT = r"""
for d in /sys/devices/system/cpu/cpu[0-9]*; do
  n=${d##*/cpu}
  echo "$n|$(cat $d/cpufreq/cpuinfo_max_freq 2>/dev/null)|$(cat $d/online 2>/dev/null || echo 1)|$(cat $d/cpufreq/related_cpus 2>/dev/null)"
done
"""


@dataclass(frozen=True)
class CoreInfo:
    """One CPU core as sysfs describes it."""

    cpu: int
    max_freq_khz: int | None
    online: bool = True
    related_cpus: tuple[int, ...] = ()  # cores sharing its frequency policy (its cluster)


def parse_cores(text: str) -> list[CoreInfo]:
    """Parse the output of the cores script: ``N|max_freq_khz|online|related cpus``."""
    cores = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        freq = parts[1].strip()
        related = tuple(int(c) for c in parts[3].split() if c.isdigit())
        cores.append(
            CoreInfo(
                int(parts[0]),
                int(freq) if freq.isdigit() else None,
                parts[2].strip() != "0",
                related,
            )
        )
    return sorted(cores, key=lambda c: c.cpu)


def clusters_of(cores: Sequence[CoreInfo]) -> list[tuple[int, tuple[int, ...]]]:
    """``(max_freq_khz, cpus)`` per cluster, slowest first.

    Clusters come from ``related_cpus`` (one cpufreq policy each) where sysfs has it, else from
    equal maximum frequencies; a cluster's frequency is the highest of its cores.
    """
    groups: dict[tuple[int, ...], int] = {}
    for core in cores:
        if core.max_freq_khz is None:
            continue
        key = core.related_cpus or tuple(
            c.cpu for c in cores if not c.related_cpus and c.max_freq_khz == core.max_freq_khz
        )
        groups[key] = max(groups.get(key, 0), core.max_freq_khz)
    return sorted(((freq, cpus) for cpus, freq in groups.items()), key=lambda fc: (fc[0], fc[1]))


def derive_cores(cores: Sequence[CoreInfo], which: str) -> list[int]:
    """The online cores of ``which``: "big" (every cluster faster than the slowest; all cores
    on a uniform CPU) or "prime" (the fastest cluster)."""
    clusters = clusters_of(cores)
    if not clusters:
        return []
    slowest, fastest = clusters[0][0], clusters[-1][0]
    if which == "prime":
        chosen = {c for freq, cpus in clusters if freq == fastest for c in cpus}
    elif which == "big":
        faster = [cpus for freq, cpus in clusters if freq > slowest]
        chosen = (
            {c for cpus in faster for c in cpus}
            if faster
            else {c for _, cpus in clusters for c in cpus}
        )
    else:
        raise ValueError(f"unknown core set {which!r}")
    online = {c.cpu for c in cores if c.online}
    return sorted(chosen & online)


def cpu_mask(cpus: Sequence[int]) -> int:
    """The affinity bit mask of ``cpus`` (cpu0 = bit 0)."""
    mask = 0
    for cpu in cpus:
        mask |= 1 << cpu
    return mask


def mask_cpus(mask: int) -> list[int]:
    """The cpus set in ``mask``."""
    return [bit for bit in range(mask.bit_length()) if mask >> bit & 1]


class Affinity:
    """Run the runner under ``taskset MASK``: "big", "prime" or an explicit hex mask."""

    name = "affinity"

    def __init__(self, choice: str) -> None:
        self.choice = choice
        self.mask: int | None = None

    def _cores(self, transport: Transport) -> list[CoreInfo]:
        return parse_cores(_sh(transport, _CORES_SCRIPT).stdout)

    def _wanted_mask(self, transport: Transport) -> int:
        cores = self._cores(transport)
        if self.choice in ("big", "prime"):
            mask = cpu_mask(derive_cores(cores, self.choice))
            if not mask:
                raise DeviceError(f"cannot tell the {self.choice} cores: no cpufreq in sysfs")
            return mask
        mask = int(self.choice.lower().removeprefix("0x"), 16)
        known = cpu_mask([c.cpu for c in cores if c.online])
        if known and not mask & known:
            raise DeviceError(f"mask {self.choice} names no online core (online: {known:#x})")
        return mask

    def available(self, transport: Transport) -> bool:
        """``taskset`` exists on the device."""
        return _sh(transport, "command -v taskset >/dev/null 2>&1").ok

    def show(self, transport: Transport) -> str:
        """The mask the runner runs under, with its cores."""
        mask = self.mask if self.mask is not None else self._wanted_mask(transport)
        return f"{self.choice} cores {mask_cpus(mask)} (mask {mask:#x})"

    def apply(self, transport: Transport) -> None:
        """Work out the mask now (after any hotplug); the runner gets it as a prefix."""
        self.mask = self._wanted_mask(transport)

    def restore(self, transport: Transport) -> None:
        """Nothing on the device changed: only the runner's own process was pinned."""
        self.mask = None

    def prefix(self) -> list[str]:
        """``taskset <hex mask>`` (no ``0x``: toybox and util-linux both take bare hex)."""
        return ["taskset", f"{self.mask:x}"] if self.mask else []


# -- the preparation of one session --------------------------------------------------------------
def operations_for(profile: DeviceProfile) -> tuple[list[PrepOperation], list[str]]:
    """The operations ``profile.prepare`` asks for, and notes for those this device kind lacks."""
    options = profile.prepare
    ops: list[PrepOperation] = []
    notes: list[str] = []
    for wanted, op in ((options.screen_off, ScreenOff), (options.battery_unplug, BatteryUnplug)):
        if not wanted:
            continue
        if profile.kind == "android":
            ops.append(op())
        else:
            notes.append(f"{op.name}: only possible on Android devices, not on {profile.name}")
    if options.affinity != "none":
        ops.append(Affinity(options.affinity))
    if options.governor != "none":  # the same sysfs root override as the runner's
        root = profile.env.get("HARNESS_SYSFS_ROOT", "")
        ops.append(GovernorFix(options.governor, sysfs_root=root))
    return ops, notes


def _why_unavailable(op: PrepOperation, transport: Transport) -> str:
    """`` (reason)`` for operations that can tell why they are unavailable, else empty."""
    why = op.why_unavailable(transport) if isinstance(op, GovernorFix) else None
    return f" ({why})" if why else ""


def show_preparation(profile: DeviceProfile, transport: Transport) -> list[str]:
    """One line per operation the profile asks for: its state now, or why it cannot run.

    For ``harness devices check``: nothing is changed on the device.
    """
    ops, lines = operations_for(profile)
    for op in ops:
        try:
            if op.available(transport):
                shown = op.show(transport)
            else:
                shown = f"not available{_why_unavailable(op, transport)}"
        except HarnessError as exc:
            shown = f"cannot apply: {exc.one_line()}"
        lines.append(f"{op.name}: {shown}")
    return lines


@dataclass
class DevicePreparation:
    """The operations for one device session, and what the host observed about the device."""

    profile: DeviceProfile
    transport: Transport
    operations: list[PrepOperation] = field(default_factory=list)
    applied: list[PrepOperation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def for_profile(cls, profile: DeviceProfile, transport: Transport) -> DevicePreparation:
        """The preparation the profile's ``prepare:`` block asks for (none by default)."""
        ops, notes = operations_for(profile)
        return cls(profile=profile, transport=transport, operations=ops, notes=notes)

    def apply(self) -> None:
        """Apply every available operation; one that fails is noted, not fatal."""
        for op in self.operations:
            try:
                if not op.available(self.transport):
                    why = _why_unavailable(op, self.transport)
                    self.notes.append(f"{op.name}: not available on {self.profile.name}{why}")
                    continue
                op.apply(self.transport)
                self.applied.append(op)
            except HarnessError as exc:
                self.notes.append(f"{op.name}: could not apply ({exc.one_line()})")

    def restore(self) -> None:
        """Restore in reverse order; failures are logged so every operation gets its turn."""
        for op in reversed(self.applied):
            try:
                op.restore(self.transport)
            except HarnessError as exc:
                log.warning(
                    "%s: could not restore %s: %s", self.profile.name, op.name, exc.one_line()
                )
        self.applied.clear()

    def command_prefix(self) -> list[str]:
        """An argv prefix for the runner (``taskset <mask>`` when affinity was applied)."""
        return [w for op in self.applied if isinstance(op, Affinity) for w in op.prefix()]

    def host_observed_state(self) -> dict[str, Any]:
        """Device state read by the host (not by the runner), recorded with each job.

        Android: :func:`~harness.transport.adb_state.read_android_state`. Every kind: what the
        applied operations show (``preparation``), so runs prepared differently stay apart.
        """
        state: dict[str, Any] = {}
        if self.profile.kind == "android":
            from harness.transport.adb_state import read_android_state

            try:
                state = read_android_state(self.transport)
            except HarnessError as exc:
                self.notes.append(f"device state not recorded: {exc.one_line()}")
        prepared: dict[str, str] = {}
        for op in self.applied:
            try:
                prepared[op.name] = op.show(self.transport)
            except HarnessError as exc:
                prepared[op.name] = f"applied (state unreadable: {exc.one_line()})"
        if prepared:
            state["preparation"] = prepared
        return state
