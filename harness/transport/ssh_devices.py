"""Library side of ``harness devices add/check`` for SSH boards.

:func:`make_ssh_profile` turns ``user@host[:port]`` plus a bundled profile into a device profile;
:func:`check_device` inspects any device in one round trip (python, runtimes, free disk,
temperature, Raspberry Pi throttling) and lists what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.errors import ConfigError, DeviceError
from harness.profiles import DeviceProfile, SshTransportConfig, validation_summary
from harness.transport.base import Transport
from harness.transport.ssh_connect import parse_ssh_target

_MIN_PYTHON = (3, 8)
_MIN_FREE_BYTES = 1024**3
_HOT_C = 80.0
_CHECK_TIMEOUT_S = 60.0

# Bits of `vcgencmd get_throttled` (Raspberry Pi firmware documentation).
_THROTTLE_BITS = {
    0: "under-voltage now",
    1: "ARM frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage has occurred",
    17: "ARM frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}

_PY_PROBE = r"""
import importlib, sys
print("python=%d.%d.%d" % tuple(sys.version_info[:3]))
dists = {"ai_edge_litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}
for mod in ("onnxruntime", "ai_edge_litert", "tflite_runtime"):
    try:
        m = importlib.import_module(mod)
    except Exception:
        continue
    v = getattr(m, "__version__", None)
    if v is None:
        try:
            from importlib.metadata import version
            v = version(dists.get(mod, mod))
        except Exception:
            v = "unknown"
    print("runtime=%s %s" % (mod, v))
"""

# $1: work dir (may start with ~), $2: python executable.
_CHECK_SCRIPT = (
    r"""
wd=$1; py=$2
case $wd in "~"|"~/"*) wd="$HOME${wd#\~}";; esac
echo "os=$(uname -sm 2>/dev/null)"
[ -r /proc/device-tree/model ] && echo "model=$(tr -d '\000' < /proc/device-tree/model)"
echo "cpus=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null)"
echo "workdir=$wd"
d=$wd
while [ ! -d "$d" ]; do d=$(dirname -- "$d"); done
df -Pk -- "$d" 2>/dev/null | tail -n 1 | { read -r _ _ _ avail _; echo "free_kb=$avail"; }
for z in /sys/class/thermal/thermal_zone*/temp; do [ -r "$z" ] && echo "temp_mc=$(cat "$z")"; done
command -v vcgencmd >/dev/null 2>&1 && echo "throttled=$(vcgencmd get_throttled 2>/dev/null)"
if command -v "$py" >/dev/null 2>&1; then "$py" - <<'EOF'
"""
    + _PY_PROBE
    + """EOF
else echo "python=missing"; fi
exit 0
"""
)


@dataclass(frozen=True)
class DeviceCheck:
    """What ``harness devices check`` found on one device."""

    name: str
    transport: str  # e.g. pi@192.168.1.40:22
    reachable: bool
    os: str | None = None  # uname -sm
    model: str | None = None  # /proc/device-tree/model, e.g. "Raspberry Pi 5 Model B Rev 1.0"
    cpu_count: int | None = None
    python_version: str | None = None
    runtimes: tuple[tuple[str, str], ...] = ()  # (module, version)
    work_dir: str | None = None
    free_disk_bytes: int | None = None
    cpu_temp_c: float | None = None  # the hottest thermal zone
    throttled: str | None = None  # raw `vcgencmd get_throttled` value, e.g. "0x50000"
    throttle_flags: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # each says what is wrong and what to do

    @property
    def ok(self) -> bool:
        """Reachable and nothing to fix."""
        return self.reachable and not self.problems


def _parse(lines: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in lines.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def _first(values: dict[str, list[str]], key: str) -> str | None:
    found = values.get(key)
    return found[0] if found and found[0] else None


def throttle_flags(raw: str) -> tuple[str, ...]:
    """Decode ``throttled=0x50005`` (or ``0x50005``) into readable flags."""
    text = raw.split("=", 1)[-1].strip()
    try:
        bits = int(text, 16)
    except ValueError:
        return ()
    return tuple(label for bit, label in _THROTTLE_BITS.items() if bits & (1 << bit))


def check_device(
    transport: Transport, profile: DeviceProfile, *, timeout_s: float = _CHECK_TIMEOUT_S
) -> DeviceCheck:
    """Inspect a reachable device in one round trip and list the problems to fix."""
    work_dir = profile.work_dir or "~/.cache/harness"
    result = transport.run(
        ["sh", "-c", _CHECK_SCRIPT, "sh", work_dir, profile.python], timeout_s=timeout_s
    )
    values = _parse(result.stdout)
    problems: list[str] = []
    python = _first(values, "python")
    if python in (None, "missing"):
        problems.append(
            f"{profile.python} not found on the device: install Python 3 (sudo apt install python3)"
        )
        python = None
    elif tuple(int(p) for p in python.split(".")[:2]) < _MIN_PYTHON:
        problems.append(f"Python {python} is too old: the runner needs 3.8 or newer")
    runtimes = tuple(
        (mod, version)
        for mod, _, version in (entry.partition(" ") for entry in values.get("runtime", []))
    )
    if python is not None and not runtimes:
        problems.append(
            "no inference runtime: `pip install onnxruntime ai-edge-litert` on the device "
            "(or `harness devices setup`)"
        )
    free_kb = _first(values, "free_kb")
    free_bytes = int(free_kb) * 1024 if free_kb and free_kb.isdigit() else None
    if free_bytes is not None and free_bytes < _MIN_FREE_BYTES:
        problems.append(
            f"only {free_bytes / 1024**2:.0f} MiB free for the work dir: free space or move work_dir"
        )
    temps = [int(t) / 1000.0 for t in values.get("temp_mc", []) if t.lstrip("-").isdigit()]
    temp_c = max(temps) if temps else None
    if temp_c is not None and temp_c >= _HOT_C:
        problems.append(f"CPU at {temp_c:.0f} °C: add cooling or let it cool before benchmarking")
    throttled = _first(values, "throttled")
    flags = throttle_flags(throttled) if throttled else ()
    if any(f.startswith("under-voltage") for f in flags):
        problems.append("under-voltage reported by the firmware: use the official power supply")
    elif any(f.endswith("now") for f in flags):
        problems.append(f"the SoC is throttled now ({', '.join(flags)}): improve cooling")
    cpus = _first(values, "cpus")
    return DeviceCheck(
        name=profile.name,
        transport=transport.description,
        reachable=True,
        os=_first(values, "os"),
        model=_first(values, "model"),
        cpu_count=int(cpus) if cpus and cpus.isdigit() else None,
        python_version=python,
        runtimes=runtimes,
        work_dir=_first(values, "workdir"),
        free_disk_bytes=free_bytes,
        cpu_temp_c=temp_c,
        throttled=throttled.split("=", 1)[-1] if throttled else None,
        throttle_flags=flags,
        problems=tuple(problems),
    )


def check_ssh_device(profile: DeviceProfile, *, timeout_s: float = _CHECK_TIMEOUT_S) -> DeviceCheck:
    """Connect to the profile's device and :func:`check_device` it; never raises DeviceError.

    An unreachable device (refused host key, bad credentials, no route) is reported as
    ``reachable=False`` with the error and its hint in ``problems``.
    """
    from harness.transport.factory import open_transport

    description: str = profile.transport.kind
    if isinstance(profile.transport, SshTransportConfig):
        description = f"ssh {profile.transport.host}"
    try:
        transport = open_transport(profile)
    except DeviceError as exc:
        return DeviceCheck(profile.name, description, False, problems=(exc.one_line(),))
    try:
        return check_device(transport, profile, timeout_s=timeout_s)
    except DeviceError as exc:
        return DeviceCheck(profile.name, transport.description, False, problems=(exc.one_line(),))
    finally:
        transport.close()


def make_ssh_profile(
    name: str, target: str, base_profile: DeviceProfile | None = None, **transport: Any
) -> DeviceProfile:
    """A profile for one SSH device: ``base_profile``'s settings with this host's transport.

    Extra keyword arguments (``key_file``, ``known_hosts``, ``password_env``, ...) go into the
    :class:`SshTransportConfig`.
    """
    user, host, port = parse_ssh_target(target)
    ssh: dict[str, Any] = {"kind": "ssh", "host": host, "user": user, "port": port}
    base: dict[str, Any] = {}
    if base_profile is not None:
        base = base_profile.model_dump(mode="json", exclude_defaults=True)
        old = base_profile.transport
        if isinstance(old, SshTransportConfig):
            # keep the base's ssh settings (timeouts, keepalive), but never its host
            ssh = {**old.model_dump(mode="json", exclude_defaults=True), **ssh}
    ssh.update(transport)
    data: dict[str, Any] = {
        **base,
        "name": name,
        "kind": base.get("kind", "linux") if base.get("kind") != "local" else "linux",
        "transport": {k: v for k, v in ssh.items() if v is not None},
        "extends": base_profile.name if base_profile is not None else None,
        "description": base.get("description", f"SSH device {target}"),
    }
    try:
        return DeviceProfile.model_validate(data)
    except ValueError as exc:
        raise ConfigError(
            f"cannot make a profile {name!r} for {target!r}: {validation_summary(exc)}"
        ) from exc
