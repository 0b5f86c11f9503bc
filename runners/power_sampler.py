"""The power sampler: a thread beside the inference loop, on the runner's window clock.

Runs on the device: Python 3.9+, standard library only; never imports ``harness``. The runner
calls, in order::

    power = PowerSession.from_args(args)       # None without --power-source
    power.start()                              # probe the source, start the sampler thread
    power.idle()                               # idle baseline, sampler running
    min_s, max_s = power.extend(min_s, max_s)  # window >= factor x detected update period
    ... timed loop ...
    doc["power"] = power.finish(window_start_ns, window_end_ns)

The document's ``power`` field (``harness.results.schema.PowerTrace`` on the host) carries the raw
trace: readings are recorded as the device gives them and the energy is computed on the host.
Nothing here raises into the runner: a source that fails mid-run costs its readings, never the
latency results.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import threading
import time
from typing import Any, Callable

import power_sources as ps
from runner_timing import window_clock

KINDS = ("auto", "none", *ps.SOURCES)
_MAX_ERRORS_KEPT = 20
_FIRST_SAMPLE_TIMEOUT_S = 2.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The power flags of harness_runner.py."""
    group = parser.add_argument_group("power")
    group.add_argument("--power-source", default=None, choices=KINDS, help="sample power")
    group.add_argument("--power-rate-hz", type=float, default=10.0, help="sampling rate bound")
    group.add_argument(
        "--power-idle-s", type=float, default=5.0, help="idle baseline before the window"
    )
    group.add_argument(
        "--power-min-window-s", type=float, default=0.0, help="shortest timed window"
    )
    group.add_argument(
        "--power-window-factor",
        type=float,
        default=50.0,
        help="window >= this x the detected update period (0 = off)",
    )
    group.add_argument("--power-thermal-rate-hz", type=float, default=2.0)
    group.add_argument(
        "--power-cpu",
        default="auto",
        help="pin the sampler thread: a CPU number, 'auto' (the slowest allowed core) or 'none'",
    )


class Thermal:
    """Thermal zones (°C), cpufreq policies (kHz) and the Pi throttle word, sampled slowly."""

    def __init__(self) -> None:
        self.zones: list[tuple[str, str]] = []
        self.zone_types: dict[str, str] = {}
        zone_glob = ps.sys_path("sys/class/thermal/thermal_zone*")
        for zone in sorted(glob.glob(zone_glob), key=_number):
            name = os.path.basename(zone)
            self.zones.append((name, os.path.join(zone, "temp")))
            self.zone_types[name] = ps._safe_read(os.path.join(zone, "type")) or "unknown"
        self.policies: list[tuple[str, str]] = []
        self.max_freq_khz: dict[str, int] = {}
        self.governors: dict[str, str] = {}
        policy_dirs = glob.glob(ps.sys_path("sys/devices/system/cpu/cpufreq/policy*"))
        if not policy_dirs:
            policy_dirs = glob.glob(ps.sys_path("sys/devices/system/cpu/cpu[0-9]*/cpufreq"))
        for policy in sorted(policy_dirs, key=_number):
            name = os.path.basename(policy)
            if name == "cpufreq":
                name = os.path.basename(os.path.dirname(policy))
            self.policies.append((name, os.path.join(policy, "scaling_cur_freq")))
            top = ps._safe_int(os.path.join(policy, "scaling_max_freq"))
            if top is None:
                top = ps._safe_int(os.path.join(policy, "cpuinfo_max_freq"))
            if top is not None:
                self.max_freq_khz[name] = top
            governor = ps._safe_read(os.path.join(policy, "scaling_governor"))
            if governor:
                self.governors[name] = governor
        self.vcgencmd = shutil.which("vcgencmd")
        self.t_ns: list[int] = []
        self.temps: dict[str, list[float | None]] = {name: [] for name, _ in self.zones}
        self.freqs: dict[str, list[int | None]] = {name: [] for name, _ in self.policies}
        self.throttled: list[int | None] = []

    def sample(self, t_ns: int) -> None:
        self.t_ns.append(t_ns)
        for name, path in self.zones:
            raw = ps._safe_int(path)
            self.temps[name].append(None if raw is None else raw / 1000.0)
        for name, path in self.policies:
            self.freqs[name].append(ps._safe_int(path))
        if self.vcgencmd:
            self.throttled.append(_get_throttled(self.vcgencmd))

    def to_doc(self) -> dict[str, Any]:
        return {
            "t_ns": self.t_ns,
            "zones_c": self.temps,
            "zone_types": self.zone_types,
            "cur_freq_khz": self.freqs,
            "max_freq_khz": self.max_freq_khz,
            "governors": self.governors,
            "pi_throttled": self.throttled if self.vcgencmd else None,
        }


def _get_throttled(vcgencmd: str) -> int | None:
    try:
        proc = subprocess.run(
            [vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=2.0, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"throttled=(0x[0-9a-fA-F]+)", proc.stdout)
    return int(match.group(1), 16) if match else None


def _max_freq_khz(cpu: int) -> int:
    """cpuinfo_max_freq of a CPU (0 when unknown, so unknown CPUs tie)."""
    path = ps.sys_path(f"sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq")
    return ps._safe_int(path) or 0


def _number(path: str) -> int:
    digits = re.findall(r"\d+", os.path.basename(path.rstrip("/")))
    return int(digits[-1]) if digits else -1


class PowerSession:
    """One job's power sampling: probe, sampler thread, idle baseline, window, trace."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.kind = args.power_source
        self.requested_rate_hz = max(0.1, args.power_rate_hz)
        self.idle_s = max(0.0, args.power_idle_s)
        self.min_window_s = max(0.0, args.power_min_window_s)
        self.factor = max(0.0, args.power_window_factor)
        self.thermal_rate_hz = max(0.1, args.power_thermal_rate_hz)
        self.cpu = args.power_cpu
        # The runner's own window clock, so power samples and the timed window line up.
        self.clock_name, read = window_clock()
        self.clock: Callable[[], int] = read or time.monotonic_ns
        self.source: ps.Source | None = None
        self.thermal: Thermal | None = None
        self.probed: list[str] = []
        self.flags: list[str] = []
        self.notes: list[str] = []
        self.errors: list[dict[str, Any]] = []
        self.error_count = 0
        self.reads = 0
        self._first_read_ns: int | None = None
        self._last_read_ns = 0
        self.changes: list[int] = []  # timestamps at which the source's values changed
        self.status: list[tuple[int, str]] = []
        self.idle_bounds: tuple[int | None, int | None] = (None, None)
        self.required_window_s: float | None = None
        self.period_at_extend: float | None = None  # the period the window was sized for
        self._last_key: tuple[Any, ...] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.rate_hz = self.requested_rate_hz

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PowerSession | None:
        return cls(args) if getattr(args, "power_source", None) else None

    def start(self) -> None:
        """Probe the source and start the sampler; waits for the first reading."""
        if self.kind != "none":
            try:
                self.source = ps.open_source(self.kind, self.probed)
            except Exception as exc:  # a broken probe must not fail the run
                self.probed.append(f"{self.kind}: {type(exc).__name__}: {exc}")
        if self.source is None and self.kind not in ("none", "auto"):
            self.flags.append(
                f"power source {self.kind} unavailable: {'; '.join(self.probed) or 'not found'}"
            )
        if self.source is not None:
            self.rate_hz = min(self.requested_rate_hz, self.source.max_rate_hz)
            if self.rate_hz < self.requested_rate_hz:
                self.notes.append(
                    f"sampling capped at {self.rate_hz:g} Hz for {self.source.kind}"
                    f" (requested {self.requested_rate_hz:g} Hz)"
                )
            self.notes.extend(self.source.notes)
        try:
            self.thermal = Thermal()
        except Exception as exc:
            self.notes.append(f"thermal sampling off: {exc}")
        self._thread = threading.Thread(target=self._loop, name="power-sampler", daemon=True)
        self._thread.start()
        if self.source is not None:
            self._wait_until(
                lambda: self._all_meters(lambda m: bool(m.t_ns)), _FIRST_SAMPLE_TIMEOUT_S
            )

    def idle(self) -> None:
        """The idle baseline: sleep ``idle_s`` with the sampler running (no source: no wait)."""
        if self.idle_s <= 0 or self.source is None:
            return
        start = self.clock()
        time.sleep(self.idle_s)
        self.idle_bounds = (start, self.clock())

    def update_period_s(self) -> float | None:
        """Median interval between value changes: the source's real update period."""
        times = sorted(set(self.changes))
        gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
        if len(gaps) < 2:
            return None
        gaps.sort()
        return gaps[len(gaps) // 2] / 1e9

    def extend(self, min_duration_s: float, max_duration_s: float) -> tuple[float, float]:
        """(min, max) timed duration so the window is >= factor x update period and >= the
        configured minimum; the maximum is raised to match rather than cutting the window."""
        if self.source is None:
            return min_duration_s, max_duration_s
        period = self.update_period_s()
        self.period_at_extend = period
        required = self.min_window_s
        if period is not None and self.factor > 0:
            required = max(required, self.factor * period)
        elif period is None and self.factor > 0:
            self.flags.append(
                f"update period not detected: {self.source.kind} did not change during the"
                f" {self.idle_s:g} s idle window"
            )
        self.required_window_s = required
        if required > min_duration_s:
            self.notes.append(
                f"timed window extended from {min_duration_s:g} s to {required:.3g} s for the"
                f" power source"
            )
            min_duration_s = required
        if max_duration_s > 0 and max_duration_s < min_duration_s:
            max_duration_s = min_duration_s
        return min_duration_s, max_duration_s

    def finish(self, window_start_ns: int | None, window_end_ns: int | None) -> dict[str, Any]:
        """Stop sampling (after a reading past the window's end) and return the trace."""
        if self.source is not None and window_end_ns is not None:
            self._wait_until(
                lambda: self._all_meters(lambda m: bool(m.t_ns) and m.t_ns[-1] >= window_end_ns),
                max(1.0, 3.0 / self.rate_hz),
            )
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        return self._document(window_start_ns, window_end_ns)

    # -- internals ---------------------------------------------------------------------------

    def _all_meters(self, test: Callable[[ps.Meter], bool]) -> bool:
        assert self.source is not None
        return all(test(m) for m in self.source.meters)

    def _wait_until(self, done: Callable[[], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            if self._thread is not None and not self._thread.is_alive():
                return
            time.sleep(0.005)

    def _loop(self) -> None:
        self._pin()
        period_s = 1.0 / self.rate_hz
        thermal_every_s = 1.0 / self.thermal_rate_hz
        next_thermal = 0.0
        next_tick = time.monotonic()
        while not self._stop.is_set():
            if self.source is not None:
                self._read_source()
            now = time.monotonic()
            if now >= next_thermal:
                next_thermal = now + thermal_every_s
                self._read_slow()
            next_tick += period_s if self.source is not None else thermal_every_s
            delay = next_tick - time.monotonic()
            if delay < 0:  # fell behind: skip the missed ticks rather than burst
                next_tick = time.monotonic()
                delay = 0.0
            self._stop.wait(delay)

    def _pin(self) -> None:
        """Keep the sampler off the busiest cores: on big.LITTLE the slowest allowed core (the
        reference's "a little core different from the inference threads")."""
        if self.cpu in (None, "none"):
            return
        try:
            allowed = sorted(os.sched_getaffinity(0))
            if self.cpu == "auto":
                if len(allowed) < 2:
                    return
                cpu = min(reversed(allowed), key=_max_freq_khz)
            else:
                cpu = int(self.cpu)
            os.sched_setaffinity(threading.get_native_id(), {cpu})
        except (AttributeError, OSError, ValueError) as exc:
            self.notes.append(f"could not pin the sampler to cpu {self.cpu}: {exc}")
            return
        self.notes.append(f"sampler pinned to cpu{cpu}")

    def _read_source(self) -> None:
        assert self.source is not None
        before = [len(m.t_ns) for m in self.source.meters]
        t0 = self.clock()
        try:
            self.source.read(t0)
        except Exception as exc:  # a vanished node or a garbled line: record, keep going
            self.error_count += 1
            if len(self.errors) < _MAX_ERRORS_KEPT:
                self.errors.append({"t_ns": t0, "message": f"{type(exc).__name__}: {exc}"})
            # Keep the meters rectangular: drop a partial row a failing read may have left.
            for meter, count in zip(self.source.meters, before):
                del meter.t_ns[count:]
                for column in meter.channels.values():
                    del column[count:]
            return
        t1 = self.clock()
        self.reads += 1
        if self._first_read_ns is None:
            self._first_read_ns = t0
        self._last_read_ns = t0
        mid = (t0 + t1) // 2
        for meter, count in zip(self.source.meters, before):
            if meter.timestamps == "sampler" and len(meter.t_ns) > count:
                meter.t_ns[-1] = mid  # a subprocess read takes ms: stamp its middle
        key = self.source.change_key()
        if key != self._last_key:
            newest = max((m.t_ns[-1] for m in self.source.meters if m.t_ns), default=mid)
            if self._last_key is not None:
                self.changes.append(newest)
            self._last_key = key

    def _read_slow(self) -> None:
        t_ns = self.clock()
        if self.thermal is not None:
            try:
                self.thermal.sample(t_ns)
            except Exception as exc:
                self.notes.append(f"thermal sampling stopped: {exc}")
                self.thermal = None
        if self.source is not None:
            status = self.source.status()
            if status is not None and (not self.status or self.status[-1][1] != status):
                self.status.append((t_ns, status))

    def _document(self, window_start_ns: int | None, window_end_ns: int | None) -> dict[str, Any]:
        source = self.source
        first = self._first_read_ns
        elapsed_s = (self._last_read_ns - first) / 1e9 if first is not None else 0.0
        doc: dict[str, Any] = {
            "source": source.kind if source else (self.kind if self.kind != "auto" else "none"),
            "scope": source.scope if source else "none",
            "method": source.method if source else "none",
            "clock": self.clock_name,
            "requested_rate_hz": self.rate_hz,  # after the source's cap (see notes)
            "achieved_rate_hz": (self.reads - 1) / elapsed_s if source and elapsed_s > 0 else None,
            "update_period_s": (self.period_at_extend or self.update_period_s())
            if source
            else None,
            "window_factor": self.factor,
            "required_window_s": self.required_window_s,
            "idle_start_ns": self.idle_bounds[0],
            "idle_end_ns": self.idle_bounds[1],
            "window_start_ns": window_start_ns,
            "window_end_ns": window_end_ns,
            "meters": [m.to_doc() for m in source.meters] if source else [],
            "charging_status": self.status,
            "thermal": self.thermal.to_doc() if self.thermal else None,
            "read_errors": self.errors,
            "read_error_count": self.error_count,
            "flags": self.flags,
            "notes": self.notes,
            "probed": self.probed,
        }
        if source is None and not self.flags:
            self.flags.append(
                "no power source on this device"
                + (f" (probed: {'; '.join(self.probed)})" if self.probed else "")
            )
        return doc
