"""External power meters on the host, and putting their samples on the device's clock.

The plug-in interface (:class:`ExternalMeter`) follows devlib's Instrument and the reference's
sketch (§5): ``probe`` -> ``start`` -> ``stop`` returning a :class:`MeterTrace` on the host's
monotonic clock. One real implementation, :class:`SerialLineMeter`, reads a meter that streams one
text line per sample over a serial port (a microcontroller with an INA219/INA226, a lab supply's
logging port): ``<meter_ms>,<volts>,<amps>``. pyserial is imported only when such a meter is used.

Alignment (§7.3): the meter's own timestamps are mapped to host time by the lower envelope of
``arrival = a + b * meter_time`` (a line arrives after it was sampled, never before), which also
corrects crystal drift. Host time is mapped to the device's clock with a Cristian-style offset
estimated over a persistent channel (:func:`estimate_clock_offset`), before and after the run.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from harness.errors import PowerError

# "<meter_ms>,<volts>,<amps>[,...]" with optional spaces; extra fields are ignored.
DEFAULT_LINE = re.compile(
    r"^\s*(?P<t_ms>[0-9.]+)\s*,\s*(?P<volts>-?[0-9.]+)\s*,\s*(?P<amps>-?[0-9.]+)"
)
DEVICE_CLOCK_SCRIPT = (
    "import sys,time\n"
    "c=getattr(time,'CLOCK_BOOTTIME',time.CLOCK_MONOTONIC)\n"
    "for _ in sys.stdin:\n"
    "    print(time.clock_gettime_ns(c),flush=True)\n"
)


@dataclass(frozen=True)
class MeterTrace:
    """Samples of an external meter; ``t_ns`` on ``clock``."""

    t_ns: tuple[int, ...]
    power_w: tuple[float, ...]
    clock: str  # "host_monotonic" or "device:<clock>" after alignment
    dropped_lines: int = 0
    alignment: str = ""  # how t_ns was obtained, e.g. "lower envelope over 500 lines"
    meter_ms: tuple[float, ...] = ()  # the meter's own timestamps, when it sends them


class ExternalMeter(Protocol):
    """A meter on the host measuring the device from outside."""

    name: str
    scope: str  # "wall", "usb", "battery" (terminals)
    method: Literal["instantaneous", "counter"]
    nominal_hz: float

    def probe(self) -> bool:
        """True when the meter is connected; no side effects."""
        ...

    def start(self) -> None:
        """Begin streaming samples into memory."""
        ...

    def stop(self) -> MeterTrace:
        """Stop and return everything sampled since :meth:`start`."""
        ...


def _import_serial() -> Any:
    try:
        import serial
    except ImportError as exc:
        raise PowerError(
            "the serial-port power meter needs pyserial, which is not installed",
            hint="pip install pyserial",
        ) from exc
    return serial


class SerialLineMeter:
    """A meter that prints ``<meter_ms>,<volts>,<amps>`` lines over a serial port."""

    method: Literal["instantaneous", "counter"] = "instantaneous"

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 115200,
        name: str = "serial-meter",
        scope: str = "usb",
        nominal_hz: float = 50.0,
        line_pattern: re.Pattern[str] = DEFAULT_LINE,
        host_clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self.name = name
        self.scope = scope
        self.nominal_hz = nominal_hz
        self.pattern = line_pattern
        self.host_clock = host_clock
        self._serial: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._rows: list[tuple[int, float, float]] = []  # (arrival_ns, meter_ms, power_w)
        self._dropped = 0
        self._error: str | None = None

    def probe(self) -> bool:
        serial = _import_serial()
        try:
            handle = serial.Serial(self.port, self.baudrate, timeout=0.2)
        except (OSError, serial.SerialException):
            return False
        handle.close()
        return True

    def start(self) -> None:
        serial = _import_serial()
        try:
            self._serial = serial.Serial(self.port, self.baudrate, timeout=0.1)
        except (OSError, serial.SerialException) as exc:
            raise PowerError(f"cannot open power meter port {self.port}: {exc}") from exc
        self._serial.reset_input_buffer()  # stale lines would have wrong arrival times
        self._thread = threading.Thread(target=self._read, name=f"{self.name}-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        partial = b""
        while not self._stop.is_set():
            try:
                chunk = self._serial.readline()
            except Exception as exc:  # the cable was pulled: keep what arrived
                self._error = f"{type(exc).__name__}: {exc}"
                return
            arrival = self.host_clock()
            if not chunk:
                continue
            partial += chunk
            if not partial.endswith(b"\n"):
                continue  # readline timed out mid-line: the arrival time is the line's end
            line, partial = partial.decode("ascii", "replace"), b""
            match = self.pattern.match(line)
            if match is None:
                self._dropped += 1
                continue
            power = float(match["volts"]) * float(match["amps"])
            self._rows.append((arrival, float(match["t_ms"]), abs(power)))

    def stop(self) -> MeterTrace:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._serial is not None:
            self._serial.close()
        rows = list(self._rows)
        if len(rows) < 2:
            raise PowerError(
                f"power meter on {self.port} sent {len(rows)} usable lines"
                + (f" ({self._error})" if self._error else ""),
                hint="check the port, the baud rate and the line format <ms>,<V>,<A>",
            )
        arrival = np.array([r[0] for r in rows], dtype=np.float64)
        meter_ms = np.array([r[1] for r in rows], dtype=np.float64)
        slope, intercept = lower_envelope_fit(meter_ms, arrival)
        t_ns = tuple(round(float(intercept + slope * m)) for m in meter_ms)
        return MeterTrace(
            t_ns=t_ns,
            power_w=tuple(r[2] for r in rows),
            clock="host_monotonic",
            dropped_lines=self._dropped,
            alignment=f"lower envelope over {len(rows)} lines (slope {slope / 1e6:.6f} ms/ms)",
            meter_ms=tuple(float(m) for m in meter_ms),
        )


def lower_envelope_fit(x: np.ndarray, y: np.ndarray, buckets: int = 16) -> tuple[float, float]:
    """``y ≈ intercept + slope * x`` along the lower envelope of the points.

    Arrivals (``y``) lag the true times by a non-negative jitter, so the line through the
    earliest arrival of each slice of ``x`` (drift: the slope) shifted down to touch the lowest
    point (offset: the intercept) is the best estimate of the true mapping.
    """
    if x.size < 2:
        raise PowerError("need at least two samples to align a meter's clock")
    edges = np.linspace(x.min(), x.max(), min(buckets, x.size) + 1)
    xs, ys = [], []
    for lo, hi in itertools.pairwise(edges):
        inside = (x >= lo) & (x <= hi)
        if inside.any():
            residual = y[inside] - x[inside] * _rough_slope(x, y)
            k = np.flatnonzero(inside)[int(np.argmin(residual))]
            xs.append(x[k])
            ys.append(y[k])
    slope = float(np.polyfit(xs, ys, 1)[0]) if len(xs) >= 2 else _rough_slope(x, y)
    intercept = float(np.min(y - slope * x))
    return slope, intercept


def _rough_slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(x, y, 1)[0])


@dataclass(frozen=True)
class ClockOffset:
    """``device_ns = host_ns + offset_ns``, good to ``± error_ns``."""

    offset_ns: float
    error_ns: float  # half the round trip of the best exchange
    host_ns: float  # when it was measured (host clock)


class PersistentClockChannel:
    """A long-lived process on the device that answers each line with its clock (ns).

    ``argv`` starts it, e.g. ``["ssh", "pi@board", "python3", "-u", "-c", DEVICE_CLOCK_SCRIPT]``
    or ``["adb", "shell", ...]``; one process for all exchanges, so spawn latency never enters
    the round trip.
    """

    def __init__(self, argv: Sequence[str], *, timeout_s: float = 10.0) -> None:
        self.argv = list(argv)
        self.timeout_s = timeout_s
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> PersistentClockChannel:
        self._proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.exchange()  # the first answer pays for start-up; never use it
        return self

    def exchange(self) -> int:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdout is None:
            raise PowerError("clock channel is not open")
        proc.stdin.write("t\n")
        proc.stdin.flush()
        timer = threading.Timer(self.timeout_s, proc.kill)
        timer.start()
        try:
            line = proc.stdout.readline()
        finally:
            timer.cancel()
        try:
            return int(line)
        except ValueError:
            raise PowerError(
                f"clock channel {self.argv[0]} answered {line!r} instead of a clock reading"
            ) from None

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            if self._proc.stdin:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def estimate_clock_offset(
    exchange: Callable[[], int],
    *,
    rounds: int = 20,
    host_clock: Callable[[], int] = time.monotonic_ns,
) -> ClockOffset:
    """Cristian's method: ``offset = d - (h0 + h1) / 2`` of the exchange with the smallest
    round trip, whose error is at most half that round trip."""
    best: tuple[float, float, float] | None = None
    for _ in range(rounds):
        h0 = host_clock()
        device = exchange()
        h1 = host_clock()
        rtt = h1 - h0
        if best is None or rtt < best[0]:
            best = (rtt, device - (h0 + h1) / 2, (h0 + h1) / 2)
    if best is None:
        raise PowerError("clock offset needs at least one exchange")
    return ClockOffset(offset_ns=best[1], error_ns=best[0] / 2, host_ns=best[2])


def to_device_clock(
    trace: MeterTrace, before: ClockOffset, after: ClockOffset | None = None, *, clock: str
) -> MeterTrace:
    """The trace on the device's clock; with two offsets the drift between them is interpolated."""
    t = np.asarray(trace.t_ns, dtype=np.float64)
    if after is None or after.host_ns == before.host_ns:
        offsets = np.full_like(t, before.offset_ns)
    else:
        offsets = np.interp(t, [before.host_ns, after.host_ns], [before.offset_ns, after.offset_ns])
    shifted = tuple(round(float(v)) for v in t + offsets)
    return MeterTrace(
        shifted,
        trace.power_w,
        f"device:{clock}",
        trace.dropped_lines,
        f"{trace.alignment}; host->device offset ±{before.error_ns / 1e6:.3g} ms",
        trace.meter_ms,
    )
