"""Device state, peak memory and model identity, read best-effort from procfs/sysfs.

Runs on the device: standard library only. Nothing here may fail a run: every reader returns
what it could read. ``HARNESS_SYSFS_ROOT`` (default "/") and ``HARNESS_PROCFS_ROOT`` (default
"/proc") point the readers at a fixture tree in tests.
"""

from __future__ import annotations

import glob
import hashlib
import os
import platform
import re
import socket
import sys
from typing import Any


def sysfs_root() -> str:
    return os.environ.get("HARNESS_SYSFS_ROOT", "/")


def procfs_root() -> str:
    return os.environ.get("HARNESS_PROCFS_ROOT", "/proc")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read().strip()
    except OSError:
        return None


def _read_int(path: str) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _cpu_sort_key(path: str) -> int:
    match = re.search(r"cpu(\d+)$", path)
    return int(match.group(1)) if match else -1


def cpu_frequencies() -> tuple[dict[str, str], dict[str, int], dict[str, int]]:
    """Per-cpu governor, current and max frequency (kHz) from cpufreq."""
    governors: dict[str, str] = {}
    cur: dict[str, int] = {}
    top: dict[str, int] = {}
    pattern = os.path.join(sysfs_root(), "sys/devices/system/cpu/cpu[0-9]*")
    for cpu_dir in sorted(glob.glob(pattern), key=_cpu_sort_key):
        name = os.path.basename(cpu_dir)
        freq_dir = os.path.join(cpu_dir, "cpufreq")
        governor = _read(os.path.join(freq_dir, "scaling_governor"))
        if governor:
            governors[name] = governor
        cur_khz = _read_int(os.path.join(freq_dir, "scaling_cur_freq"))
        if cur_khz is None:
            cur_khz = _read_int(os.path.join(freq_dir, "cpuinfo_cur_freq"))
        if cur_khz is not None:
            cur[name] = cur_khz
        max_khz = _read_int(os.path.join(freq_dir, "cpuinfo_max_freq"))
        if max_khz is not None:
            top[name] = max_khz
    return governors, cur, top


def thermal_zones() -> list[dict[str, Any]]:
    """Thermal zones with their type and temperature in °C (sysfs gives millidegrees)."""
    zones = []
    pattern = os.path.join(sysfs_root(), "sys/class/thermal/thermal_zone[0-9]*")
    for zone_dir in sorted(
        glob.glob(pattern), key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)) or 0)
    ):
        raw = _read_int(os.path.join(zone_dir, "temp"))
        if raw is None:
            continue  # zones that are off or need privileges read as EINVAL/EACCES
        # A few (old vendor) drivers report whole degrees; no real sensor reads within 0.2 °C of
        # zero in millidegrees often enough to matter, and none reads 200 °C.
        temp_c = float(raw) if abs(raw) < 200 else raw / 1000.0
        zones.append(
            {
                "name": os.path.basename(zone_dir),
                "type": _read(os.path.join(zone_dir, "type")) or "unknown",
                "temp_c": round(temp_c, 3),
            }
        )
    return zones


def cpu_model() -> str | None:
    """The CPU's name: x86 "model name", else the ARM board "Model" or SoC "Hardware" line, else
    platform.processor()."""
    text = _read(os.path.join(procfs_root(), "cpuinfo")) or ""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and value.strip() and key not in found:
            found[key] = value.strip()
    for key in ("model name", "Model", "Hardware", "cpu model", "Processor"):
        if key in found:
            return found[key]
    return platform.processor() or None


def loadavg() -> list[float]:
    text = _read(os.path.join(procfs_root(), "loadavg"))
    if text:
        try:
            return [float(x) for x in text.split()[:3]]
        except ValueError:
            pass
    try:
        return list(os.getloadavg())
    except (OSError, AttributeError):
        return []


def os_name() -> str:
    """OS with distribution or Android release when known, e.g. 'Linux (Debian 12)'."""
    if os.environ.get("ANDROID_ROOT") or os.path.exists("/system/build.prop"):
        return "Android"
    release = _read("/etc/os-release") or ""
    for line in release.splitlines():
        if line.startswith("PRETTY_NAME="):
            return f"{platform.system()} ({line.split('=', 1)[1].strip(chr(34))})"
    return platform.system()


def device_state() -> dict[str, Any]:
    """Everything about the device that can change a measurement; never raises."""
    state: dict[str, Any] = {}
    readers = (
        ("hostname", socket.gethostname),
        ("os", os_name),
        ("kernel", platform.release),
        ("machine", platform.machine),
        ("python", platform.python_version),
        ("cpu_model", cpu_model),
        ("cpu_count", os.cpu_count),
        ("thermal_zones", thermal_zones),
        ("loadavg", loadavg),
    )
    for key, reader in readers:
        try:
            state[key] = reader()
        except Exception as exc:  # best effort: a broken reader costs one field, not the run
            print(f"harness-runner: reading {key} failed: {exc}", file=sys.stderr)
    try:
        state["governors"], state["cur_freq_khz"], state["max_freq_khz"] = cpu_frequencies()
    except Exception as exc:
        print(f"harness-runner: reading cpufreq failed: {exc}", file=sys.stderr)
    return state


def peak_memory() -> dict[str, Any]:
    """Peak resident set size in kB: VmHWM from /proc/self/status, else getrusage."""
    status = _read(os.path.join(procfs_root(), "self/status")) or ""
    match = re.search(r"^VmHWM:\s+(\d+)\s*kB", status, re.MULTILINE)
    if match:
        return {"peak_rss_kb": int(match.group(1)), "source": "VmHWM"}
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):
        return {}
    # ru_maxrss is kB on Linux but bytes on macOS.
    if sys.platform == "darwin":
        peak //= 1024
    return {"peak_rss_kb": int(peak), "source": "ru_maxrss"}


def model_info(path: str, fmt: str) -> dict[str, Any]:
    """Path, format, sha256 and size of the model file (hash/size omitted if unreadable)."""
    info: dict[str, Any] = {"path": path, "format": fmt}
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        info["sha256"] = digest.hexdigest()
        info["size_bytes"] = os.path.getsize(path)
    except OSError:
        pass
    return info
