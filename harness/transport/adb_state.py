"""What an Android device is and how it is doing: read in one shell round trip.

``read_android_state`` is recorded with every run (model, SoC, Android/SDK, ABI, CPU clusters
and governors, thermal zones and status, battery, screen) and printed by ``harness devices
check``. Big cores are derived from the per-core maximum frequencies, never from a table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from harness.errors import DeviceError, HarnessError
from harness.profiles import AdbTransportConfig, DeviceProfile
from harness.transport.base import Transport

STATE_TIMEOUT_S = 30.0

# Sections are tagged so one missing file never shifts the others.
_STATE_SCRIPT = r"""
echo @@getprop; getprop
echo @@cpu
for d in /sys/devices/system/cpu/cpu[0-9]*; do
  n=${d##*/cpu}
  echo "$n $(cat $d/cpufreq/cpuinfo_max_freq 2>/dev/null || echo -) $(cat $d/cpufreq/scaling_governor 2>/dev/null || echo -) $(cat $d/cpufreq/scaling_cur_freq 2>/dev/null || echo -) $(cat $d/online 2>/dev/null || echo 1)"
done
echo @@thermal
for z in /sys/class/thermal/thermal_zone*; do
  echo "$(cat $z/type 2>/dev/null)	$(cat $z/temp 2>/dev/null)"
done
echo @@battery
b=/sys/class/power_supply/battery
for f in capacity status temp health current_now voltage_now; do echo "$f=$(cat $b/$f 2>/dev/null)"; done
echo @@power
dumpsys power 2>/dev/null | grep -E 'mWakefulness=|Display Power: state=' | head -n 2
echo @@thermalstatus
dumpsys thermalservice 2>/dev/null | grep -E '^Thermal Status:' | head -n 1
echo @@end
"""

_PROP = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")


def _sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = out.setdefault(line[2:].strip(), [])
        elif current is not None:
            current.append(line)
    return out


def _int(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _milli_to_c(value: int) -> float:
    # Most zones report millidegrees; a few old kernels report degrees.
    return value / 1000.0 if abs(value) >= 1000 else float(value)


def parse_android_state(text: str) -> dict[str, Any]:
    """Parse the output of the state script (pure; tested on fixture output)."""
    sections = _sections(text)
    props: dict[str, str] = {}
    for line in sections.get("getprop", []):
        match = _PROP.match(line)
        if match:
            props[match.group(1)] = match.group(2)

    cpus: list[dict[str, Any]] = []
    for line in sections.get("cpu", []):
        fields = line.split()
        if len(fields) != 5 or not fields[0].isdigit():
            continue
        cpus.append(
            {
                "cpu": int(fields[0]),
                "max_freq_khz": _int(fields[1]),
                "governor": None if fields[2] == "-" else fields[2],
                "cur_freq_khz": _int(fields[3]),
                "online": fields[4].strip() != "0",
            }
        )
    cpus.sort(key=lambda c: c["cpu"])
    freqs = sorted({c["max_freq_khz"] for c in cpus if c["max_freq_khz"]})
    clusters = [
        {"cpus": [c["cpu"] for c in cpus if c["max_freq_khz"] == f], "max_freq_khz": f}
        for f in freqs
    ]
    # Big cores: every core faster than the slowest cluster (all cores on a uniform CPU).
    slowest = freqs[0] if freqs else None
    big = [
        c["cpu"]
        for c in cpus
        if len(freqs) > 1 and c["max_freq_khz"] and c["max_freq_khz"] > slowest
    ]
    if not big:
        big = [c["cpu"] for c in cpus]
    prime = [c["cpu"] for c in cpus if freqs and c["max_freq_khz"] == freqs[-1]]

    zones: dict[str, float] = {}
    for line in sections.get("thermal", []):
        name, _, value = line.partition("\t")
        temp = _int(value)
        if name and temp is not None:
            zones[name] = _milli_to_c(temp)

    battery_raw = dict(line.split("=", 1) for line in sections.get("battery", []) if "=" in line)
    temp_tenths = _int(battery_raw.get("temp", ""))
    battery = {
        "level_pct": _int(battery_raw.get("capacity", "")),
        "status": battery_raw.get("status") or None,
        "health": battery_raw.get("health") or None,
        "temp_c": temp_tenths / 10.0 if temp_tenths is not None else None,
        "current_ua": _int(battery_raw.get("current_now", "")),
        "voltage_uv": _int(battery_raw.get("voltage_now", "")),
    }

    screen_on: bool | None = None
    for line in sections.get("power", []):
        if "mWakefulness=" in line:
            screen_on = line.split("=", 1)[1].strip() == "Awake"
        elif "Display Power: state=" in line:
            screen_on = line.split("=", 1)[1].strip() == "ON"
    status_lines = sections.get("thermalstatus", [])
    thermal_status = _int(status_lines[0].split(":", 1)[1]) if status_lines else None

    sdk = _int(props.get("ro.build.version.sdk", ""))
    return {
        "model": props.get("ro.product.model"),
        "manufacturer": props.get("ro.product.manufacturer"),
        "device": props.get("ro.product.device"),
        "soc": props.get("ro.soc.model")
        or props.get("ro.board.platform")
        or props.get("ro.hardware"),
        "soc_manufacturer": props.get("ro.soc.manufacturer"),
        "android_release": props.get("ro.build.version.release"),
        "sdk": sdk,
        "build_id": props.get("ro.build.id"),
        "build_fingerprint": props.get("ro.build.fingerprint"),
        "abi": props.get("ro.product.cpu.abi"),
        "abi_list": [a for a in props.get("ro.product.cpu.abilist", "").split(",") if a],
        "cpus": cpus,
        "clusters": clusters,
        "big_cores": big,
        "prime_cores": prime,
        "governors": sorted({c["governor"] for c in cpus if c["governor"]}),
        "thermal_zones_c": zones,
        "thermal_status": thermal_status,
        "battery": battery,
        "screen_on": screen_on,
    }


def read_android_state(transport: Transport) -> dict[str, Any]:
    """Read the device state through any transport (one ``sh`` round trip)."""
    result = transport.run(["sh", "-c", _STATE_SCRIPT], timeout_s=STATE_TIMEOUT_S)
    if "@@end" not in result.stdout:
        raise DeviceError(
            f"reading the Android state failed (exit code {result.exit_code}): "
            f"{(result.stderr.strip() or result.stdout.strip())[-200:]}"
        )
    return parse_android_state(result.stdout)


@dataclass(frozen=True)
class AdbDeviceCheck:
    """What ``harness devices check`` learnt about an ADB device."""

    reachable: bool
    state: dict[str, Any]
    python_version: str | None
    work_dir_writable: bool
    has_sha256sum: bool
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when the device can run jobs."""
        return self.reachable and self.work_dir_writable and not self.problems

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        s = self.state
        if not self.reachable:
            return [f"unreachable: {p}" for p in self.problems]
        battery = s.get("battery", {})
        clusters = ", ".join(
            f"{len(c['cpus'])}x {c['max_freq_khz'] / 1e6:.2f} GHz" for c in s.get("clusters", [])
        )
        out = [
            f"model: {s.get('manufacturer')} {s.get('model')} ({s.get('device')})",
            f"SoC: {s.get('soc')}  ABI: {s.get('abi')}",
            f"Android {s.get('android_release')} (SDK {s.get('sdk')}), build {s.get('build_id')}",
            f"CPU: {clusters}; big cores {s.get('big_cores')}; governors {', '.join(s.get('governors', []))}",
            f"battery: {battery.get('level_pct')}% {battery.get('status')}, {battery.get('temp_c')} °C",
            f"thermal status: {s.get('thermal_status')}; hottest zone "
            + (
                f"{max(s['thermal_zones_c'].items(), key=lambda kv: kv[1])}"
                if s.get("thermal_zones_c")
                else "n/a"
            ),
            f"screen: {'on' if s.get('screen_on') else 'off' if s.get('screen_on') is False else 'unknown'}",
            f"python: {self.python_version or 'not found'}; sha256sum: {'yes' if self.has_sha256sum else 'no'}",
            f"work dir writable: {'yes' if self.work_dir_writable else 'no'}",
        ]
        out.extend(f"problem: {p}" for p in self.problems)
        return out


def check_adb_device(profile: DeviceProfile, *, timeout_s: float = 30.0) -> AdbDeviceCheck:
    """Connect to an ADB profile's device and report what it has (for ``devices check``)."""
    from harness.transport.adb import AdbTransport

    if not isinstance(profile.transport, AdbTransportConfig):
        raise HarnessError(f"profile {profile.name!r} does not use the adb transport")
    transport = AdbTransport(profile.transport, name=profile.name)
    work_dir = profile.work_dir or "/data/local/tmp/harness"
    problems: list[str] = []
    try:
        state = read_android_state(transport)
        probe = transport.run(
            [
                "sh",
                "-c",
                'mkdir -p "$1" && touch "$1/.harness-probe" && rm "$1/.harness-probe"',
                "sh",
                work_dir,
            ],
            timeout_s=timeout_s,
        )
        py = transport.run(
            [profile.python, "-c", "import sys; print(sys.version.split()[0])"], timeout_s=timeout_s
        )
        sha = transport.run(
            ["sh", "-c", "command -v sha256sum || command -v toybox"], timeout_s=timeout_s
        )
    except HarnessError as exc:
        transport.close()
        return AdbDeviceCheck(False, {}, None, False, False, (exc.one_line(),))
    transport.close()
    if not probe.ok:
        problems.append(f"cannot write to {work_dir}: {probe.stderr.strip()[-120:]}")
    # No Python is not a problem by itself: native benchmark tools need none.
    python_version = py.stdout.strip() if py.ok else None
    return AdbDeviceCheck(True, state, python_version, probe.ok, sha.ok, tuple(problems))
