"""Power sources the on-device sampler can read: one class per kind, each with probe and read.

Runs on the device: Python 3.9+, standard library only. Paths, units and formats follow
docs/reference power-and-thermal (sysfs power_supply, Pixel ODPM, Pi 5 ``vcgencmd
pmic_read_adc``, hwmon INA2xx, powercap RAPL). Every sysfs path is joined under
``HARNESS_SYSFS_ROOT`` (default "/") so tests can point the sampler at a fixture tree.

A source keeps its readings column-wise in :class:`Meter` objects; values are recorded raw
(counters as counters, battery current as the driver printed it) and interpreted on the host.
"""

from __future__ import annotations

import abc
import glob
import os
import re
import shutil
import subprocess
from typing import Any

# Android fuel-gauge directories and node names, after devlib's candidate list: vendors rename
# both the power_supply directory and the files in it.
BATTERY_DIRS = (
    "battery",
    "bms",
    "Battery",
    "max170xx_battery",
    "max17042-0",
    "bq27520",
    "bq27500",
    "bq27541-0",
    "bq27441-0",
    "battery_ext",
)
CURRENT_NODES = ("current_now", "batt_current_now", "batt_current", "BatteryAverageCurrent")
VOLTAGE_NODES = ("voltage_now", "batt_vol", "batt_voltage", "voltage_avg")
INA_NAMES = (
    "ina209",
    "ina219",
    "ina220",
    "ina226",
    "ina230",
    "ina231",
    "ina233",
    "ina238",
    "ina260",
)

ODPM_HEADER = re.compile(r"^t=(\d+)\s*$")
ODPM_CHANNEL = re.compile(r"^CH(\d+)\(T=(\d+)\)\[([^\]]+)\],\s*(\d+)\s*$")
PMIC_LINE = re.compile(r"^\s*(\S+)_([AV])\s+(current|volt)\((\d+)\)=([0-9.]+)[AV]\s*$")
PMIC_VOLTAGE_ONLY = ("EXT5V", "BATT")  # input and RTC cell: voltage only, not a load rail
_VCGENCMD_TIMEOUT_S = 2.0


class SourceUnavailable(Exception):
    """The source is not on this device (or cannot be read); the message says which and why."""


def sysfs_root() -> str:
    return os.environ.get("HARNESS_SYSFS_ROOT", "/")


def sys_path(*parts: str) -> str:
    return os.path.join(sysfs_root(), *parts)


def read_text(path: str) -> str:
    """A sysfs attribute's text; OSError propagates (the caller decides what a failure means)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read().strip()


def read_int(path: str) -> int:
    return int(read_text(path))


def _readable(path: str) -> str | None:
    """None when ``path`` can be read, else why not (permission problems named as such)."""
    try:
        read_text(path)
    except PermissionError:
        return f"cannot read {path}: permission denied"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    return None


class Meter:
    """Readings of one meter kept column-wise: timestamps and one list per channel."""

    def __init__(
        self, name: str, quantity: str, channels: list[str], node: str | None = None
    ) -> None:
        self.name = name
        self.quantity = quantity
        self.node = node
        self.t_ns: list[int] = []
        self.channels: dict[str, list[float]] = {c: [] for c in channels}
        self.wrap_uj: dict[str, float] = {}
        self.timestamps = "sampler"

    def add(self, t_ns: int, values: dict[str, float]) -> None:
        self.t_ns.append(t_ns)
        for name, column in self.channels.items():
            column.append(values[name])

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "quantity": self.quantity,
            "t_ns": self.t_ns,
            "channels": self.channels,
            "wrap_uj": self.wrap_uj,
            "timestamps": self.timestamps,
            "node": self.node,
        }


class Source(abc.ABC):
    """One power source: ``read(t_ns)`` appends a reading to its meters."""

    kind = ""
    scope = ""
    method = "instantaneous"
    max_rate_hz = 10.0

    def __init__(self) -> None:
        self.meters: list[Meter] = []
        self.notes: list[str] = []

    @abc.abstractmethod
    def read(self, t_ns: int) -> None:
        ...

    def status(self) -> str | None:
        """Charging status, for sources that know it (the battery)."""
        return None

    def change_key(self) -> tuple[Any, ...] | None:
        """The last reading's values, to detect when the source actually updated."""
        values: list[Any] = []
        for meter in self.meters:
            values.extend(column[-1] if column else None for column in meter.channels.values())
        return tuple(values)


class AndroidBattery(Source):
    """The fuel gauge: ``current_now`` x ``voltage_now``, raw (sign and unit are per device)."""

    kind = "android-battery"
    scope = "battery"
    max_rate_hz = 20.0

    def __init__(self) -> None:
        super().__init__()
        problems = []
        found = None
        dirs = [sys_path("sys/class/power_supply", d) for d in BATTERY_DIRS]
        # Any other supply whose type says Battery, e.g. a vendor-named gauge.
        for candidate in sorted(glob.glob(sys_path("sys/class/power_supply/*"))):
            if candidate not in dirs and _safe_read(os.path.join(candidate, "type")) == "Battery":
                dirs.append(candidate)
        for directory in dirs:
            if not os.path.isdir(directory):
                continue
            cur = _first_existing(directory, CURRENT_NODES)
            volt = _first_existing(directory, VOLTAGE_NODES)
            if cur is None or volt is None:
                problems.append(f"{directory} has no current_now/voltage_now")
                continue
            why = _readable(cur) or _readable(volt)
            if why:
                problems.append(why)
                continue
            found = (directory, cur, volt)
            break
        if found is None:
            raise SourceUnavailable(
                "; ".join(problems) or "no battery fuel gauge under sys/class/power_supply"
            )
        self.directory, self.current_path, self.voltage_path = found
        self.status_path = os.path.join(self.directory, "status")
        self.meters = [
            Meter(
                "battery",
                "battery_raw",
                [os.path.basename(self.current_path), os.path.basename(self.voltage_path)],
                node=self.directory,
            )
        ]

    def read(self, t_ns: int) -> None:
        current = read_int(self.current_path)
        voltage = read_int(self.voltage_path)
        meter = self.meters[0]
        names = list(meter.channels)
        meter.add(t_ns, {names[0]: current, names[1]: voltage})

    def status(self) -> str | None:
        return _safe_read(self.status_path)


class Odpm(Source):
    """Pixel ODPM energy counters (µWs = µJ) per rail, timestamped by the driver's own ``t=``."""

    kind = "odpm"
    scope = "rails"
    method = "counter"
    max_rate_hz = 10.0  # the driver refreshes at most every 50 ms; faster reads return the cache

    def __init__(self) -> None:
        super().__init__()
        problems = []
        self.devices: list[tuple[str, Meter]] = []
        for directory in sorted(glob.glob(sys_path("sys/bus/iio/devices/iio:device*"))):
            name = _safe_read(os.path.join(directory, "name")) or ""
            if "odpm" not in name:
                continue
            path = os.path.join(directory, "energy_value")
            try:
                _, values = parse_energy_value(read_text(path))
            except PermissionError:
                problems.append(
                    f"cannot read {path}: permission denied (ODPM sysfs usually needs root)"
                )
                continue
            except (OSError, ValueError) as exc:
                problems.append(f"cannot read {path}: {exc}")
                continue
            meter = Meter(f"{os.path.basename(directory)} {name}", "energy_uj", list(values), path)
            meter.timestamps = "device"
            self.devices.append((path, meter))
        if not self.devices:
            raise SourceUnavailable(
                "; ".join(problems) or "no iio:device* named *odpm* under sys/bus/iio/devices"
            )
        self.meters = [meter for _, meter in self.devices]

    def read(self, t_ns: int) -> None:
        for path, meter in self.devices:
            t_ms, values = parse_energy_value(read_text(path))
            device_t_ns = t_ms * 1_000_000
            if meter.t_ns and device_t_ns <= meter.t_ns[-1]:
                continue  # the driver's 50 ms cache: the same reading again
            missing = [name for name in meter.channels if name not in values]
            if missing:  # JSON has no NaN: a row with a hole is a failed read
                raise ValueError(f"{path}: rails {', '.join(missing)} missing")
            meter.add(device_t_ns, {name: values[name] for name in meter.channels})


def parse_energy_value(text: str) -> tuple[int, dict[str, float]]:
    """``t=<ms>`` then ``CHn(T=<ms>)[RAIL], <µWs>`` lines -> (t_ms, {rail: µWs})."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty energy_value")
    header = ODPM_HEADER.match(lines[0])
    if header is None:
        raise ValueError(f"energy_value does not start with t=: {lines[0]!r}")
    values: dict[str, float] = {}
    for line in lines[1:]:
        match = ODPM_CHANNEL.match(line)
        if match is None:
            raise ValueError(f"unexpected energy_value line: {line!r}")
        values[match.group(3)] = float(match.group(4))
    return int(header.group(1)), values


class Pi5Pmic(Source):
    """Raspberry Pi 5 PMIC: Σ V·I over the rails from ``vcgencmd pmic_read_adc`` (W)."""

    kind = "pi5-pmic"
    scope = "pmic"
    max_rate_hz = 10.0  # each read is a process plus a mailbox round trip

    def __init__(self) -> None:
        super().__init__()
        self.vcgencmd = shutil.which("vcgencmd")
        if self.vcgencmd is None:
            raise SourceUnavailable("vcgencmd not found on PATH")
        try:
            rails = parse_pmic(self._run())
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            raise SourceUnavailable(f"vcgencmd pmic_read_adc failed: {exc}") from None
        if not rails:
            raise SourceUnavailable("vcgencmd pmic_read_adc printed no current/voltage pairs")
        self.meters = [Meter("pmic", "power_w", sorted(rails), node="vcgencmd pmic_read_adc")]

    def _run(self) -> str:
        assert self.vcgencmd is not None
        proc = subprocess.run(
            [self.vcgencmd, "pmic_read_adc"],
            capture_output=True,
            text=True,
            timeout=_VCGENCMD_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise ValueError(f"exit code {proc.returncode}: {proc.stderr.strip()[:200]}")
        return proc.stdout

    def read(self, t_ns: int) -> None:
        rails = parse_pmic(self._run())
        meter = self.meters[0]
        missing = [name for name in meter.channels if name not in rails]
        if missing:
            raise ValueError(f"pmic_read_adc printed no {', '.join(missing)}")
        meter.add(t_ns, {name: rails[name] for name in meter.channels})


def parse_pmic(text: str) -> dict[str, float]:
    """``pmic_read_adc`` output -> {rail: V·I in W} for rails with both a current and a voltage."""
    amps: dict[str, float] = {}
    volts: dict[str, float] = {}
    for line in text.splitlines():
        match = PMIC_LINE.match(line)
        if match is None:
            continue
        name, value = match.group(1), float(match.group(5))
        (amps if match.group(2) == "A" else volts)[name] = value
    return {
        name: amps[name] * volts[name]
        for name in amps
        if name in volts and name not in PMIC_VOLTAGE_ONLY
    }


class Hwmon(Source):
    """INA2xx current/power monitors bound to the hwmon driver, matched by ``name``."""

    kind = "hwmon"
    scope = "wall"

    def __init__(self, names: tuple[str, ...] = INA_NAMES) -> None:
        super().__init__()
        self.sensors: list[tuple[str, str, str | None, str | None, str | None]] = []
        problems = []
        interval_ms = []
        # hwmonN numbers change across reboots: match on name, label by the bus device instead.
        for directory in sorted(glob.glob(sys_path("sys/class/hwmon/hwmon*"))):
            name = _safe_read(os.path.join(directory, "name"))
            if name not in names:
                continue
            power = _existing(directory, "power1_input")
            volts = _existing(directory, "in1_input")
            amps = _existing(directory, "curr1_input")
            if power is None and (volts is None or amps is None):
                problems.append(f"{directory} ({name}) has neither power1_input nor in1/curr1")
                continue
            why = _readable(power) if power else (_readable(volts or "") or _readable(amps or ""))
            if why:
                problems.append(why)
                continue
            device = os.path.join(directory, "device")
            label = os.path.basename(os.path.realpath(device)) if os.path.exists(device) else ""
            channel = f"{name} {label or os.path.basename(directory)}"
            self.sensors.append((channel, directory, power, volts, amps))
            interval = _safe_int(os.path.join(directory, "update_interval"))
            if interval:
                interval_ms.append(interval)
        if not self.sensors:
            raise SourceUnavailable(
                "; ".join(problems) or f"no hwmon device named {'/'.join(names)}"
            )
        if interval_ms:
            self.max_rate_hz = min(50.0, 1000.0 / max(interval_ms))
            self.notes.append(f"INA update_interval {max(interval_ms)} ms")
        else:
            self.max_rate_hz = 50.0
        self.meters = [
            Meter("hwmon", "power_w", [s[0] for s in self.sensors], node=self.sensors[0][1])
        ]

    def read(self, t_ns: int) -> None:
        values = {}
        for channel, _, power, volts, amps in self.sensors:
            if power is not None:
                values[channel] = read_int(power) / 1e6  # µW
            else:
                assert volts is not None and amps is not None
                # bus voltage (mV) x current (mA); the sign only says which way the shunt sits
                values[channel] = abs(read_int(volts) * read_int(amps)) / 1e6
        self.meters[0].add(t_ns, values)


class Rapl(Source):
    """Intel/AMD RAPL package counters from powercap (µJ), with their wrap modulus."""

    kind = "rapl"
    scope = "package"
    method = "counter"
    max_rate_hz = 100.0  # the counter updates about every ms; faster polling perturbs the load

    def __init__(self) -> None:
        super().__init__()
        problems = []
        self.zones: list[tuple[str, str]] = []
        wraps: dict[str, float] = {}
        for directory in sorted(glob.glob(sys_path("sys/class/powercap/*-rapl:*"))):
            base = os.path.basename(directory)
            if base.count(":") != 1:
                continue  # core/uncore/dram subzones are inside the package: never sum them
            name = _safe_read(os.path.join(directory, "name")) or base
            if not name.startswith("package"):
                continue  # psys contains the package too
            path = os.path.join(directory, "energy_uj")
            why = _readable(path)
            if why:
                if "permission" in why:
                    why += (
                        " (energy_uj is root-only since kernel 5.10: run as root, or grant read"
                        " access with a udev rule)"
                    )
                problems.append(why)
                continue
            channel = f"{base} {name}"
            self.zones.append((channel, path))
            wrap = _safe_int(os.path.join(directory, "max_energy_range_uj"))
            if wrap:
                wraps[channel] = float(wrap)
        if not self.zones:
            raise SourceUnavailable(
                "; ".join(problems) or "no RAPL package zone under sys/class/powercap"
            )
        meter = Meter(
            "rapl", "energy_uj", [z[0] for z in self.zones], node=os.path.dirname(self.zones[0][1])
        )
        meter.wrap_uj = wraps
        self.meters = [meter]

    def read(self, t_ns: int) -> None:
        self.meters[0].add(t_ns, {channel: read_int(path) for channel, path in self.zones})


SOURCES = {
    "android-battery": AndroidBattery,
    "odpm": Odpm,
    "pi5-pmic": Pi5Pmic,
    "hwmon": Hwmon,
    "rapl": Rapl,
}
# Counters before gauges: ODPM sees no charging current, the battery gauge does; the Pi PMIC
# and INA sensors before RAPL, which only covers the CPU package.
AUTO_ORDER = ("odpm", "android-battery", "pi5-pmic", "hwmon", "rapl")


def open_source(kind: str, probed: list[str]) -> Source | None:
    """The source ``kind`` (or the first that works, for "auto"); None when there is none.

    Every failed probe appends "kind: why" to ``probed``. An explicit kind that is not available
    also returns None: a run without power is still a run.
    """
    kinds = AUTO_ORDER if kind == "auto" else (kind,)
    for name in kinds:
        try:
            return SOURCES[name]()
        except SourceUnavailable as exc:
            probed.append(f"{name}: {exc}")
    return None


def _safe_read(path: str) -> str | None:
    try:
        return read_text(path)
    except OSError:
        return None


def _safe_int(path: str) -> int | None:
    text = _safe_read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _existing(directory: str, name: str) -> str | None:
    path = os.path.join(directory, name)
    return path if os.path.exists(path) else None


def _first_existing(directory: str, names: tuple[str, ...]) -> str | None:
    for name in names:
        path = _existing(directory, name)
        if path is not None:
            return path
    return None
