"""External meters: a real serial line (a pty pair) streaming a meter's own clock and V/A lines,
aligned to host time by the lower envelope; the host<->device clock offset over a real persistent
process; and the energy of the aligned trace against the exact integral."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from harness.errors import PowerError
from harness.power import external
from harness.power import integrate as ig
from tests.fixtures.power.profile import SineProfile

pytest.importorskip("serial", reason="pyserial is needed for the serial-port meter")

METER_RATE_HZ = 100
DRIFT = 1.0002  # the meter's crystal runs 200 ppm fast
METER_EPOCH_MS = 123_456.0  # the meter's clock started long before the test


class StreamingMeter:
    """The microcontroller side: writes ``<meter_ms>,<V>,<A>`` lines into the pty master."""

    def __init__(self, fd: int, profile: SineProfile) -> None:
        self.fd = fd
        self.profile = profile
        self.stop = threading.Event()
        self.host_start_ns = time.monotonic_ns()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def meter_ms(self, host_ns: int) -> float:
        return METER_EPOCH_MS + (host_ns - self.host_start_ns) / 1e6 * DRIFT

    def host_ns(self, meter_ms: float) -> float:
        return self.host_start_ns + (meter_ms - METER_EPOCH_MS) / DRIFT * 1e6

    def run(self) -> None:
        k = 0
        while not self.stop.is_set():
            now = time.monotonic_ns()
            power = self.profile.power_w(now / 1e9)
            volts = 5.1
            line = f"{self.meter_ms(now):.3f},{volts:.4f},{power / volts:.5f}\r\n"
            if k % 97 == 50:
                os.write(self.fd, b"# meter: range auto\r\n")  # chatter a parser must skip
            os.write(self.fd, line.encode())
            k += 1
            # irregular transmit delays, as a USB-serial bridge batches bytes
            time.sleep(1 / METER_RATE_HZ + (0.004 if k % 7 == 0 else 0.0))


@pytest.fixture
def pty_meter() -> Iterator[tuple[str, StreamingMeter]]:
    master, slave = os.openpty()
    port = os.ttyname(slave)
    meter = StreamingMeter(master, SineProfile(base_w=2.5, amp_w=0.8, period_s=0.9))
    meter.thread.start()
    try:
        yield port, meter
    finally:
        meter.stop.set()
        meter.thread.join(timeout=2)
        os.close(master)
        os.close(slave)


def test_serial_meter_aligns_its_clock_and_integrates_to_the_exact_energy(
    pty_meter: tuple[str, StreamingMeter],
) -> None:
    port, source = pty_meter
    meter = external.SerialLineMeter(port, baudrate=115200, scope="usb")
    assert meter.probe()
    meter.start()
    time.sleep(2.2)
    trace = meter.stop()
    assert trace.clock == "host_monotonic" and trace.dropped_lines >= 1
    assert len(trace.t_ns) > 150
    # Each aligned timestamp must land on the host time the meter sampled at (a few ms); the
    # meter's clock law (epoch, drift) is known only to the test.
    truth = np.array([source.host_ns(m) for m in trace.meter_ms])
    errors_ms = (np.array(trace.t_ns) - truth) / 1e6
    assert np.max(np.abs(errors_ms)) < 8.0, errors_ms
    start, end = trace.t_ns[10], trace.t_ns[-10]
    energy = ig.trapezoid_energy_j(trace.t_ns, trace.power_w, start, end)
    exact = source.profile.energy_j(start / 1e9, end / 1e9)
    assert energy == pytest.approx(exact, rel=0.03)


def test_missing_port_and_garbage_are_clear_errors(tmp_path: os.PathLike[str]) -> None:
    meter = external.SerialLineMeter(os.path.join(tmp_path, "ttyNOPE"))
    assert not meter.probe()
    with pytest.raises(PowerError, match="cannot open power meter port"):
        meter.start()
    master, slave = os.openpty()
    try:
        meter = external.SerialLineMeter(os.ttyname(slave))
        meter.start()
        os.write(master, b"hello\r\nnot a sample\r\n")
        time.sleep(0.3)
        with pytest.raises(PowerError, match="sent 0 usable lines"):
            meter.stop()
    finally:
        os.close(master)
        os.close(slave)


def test_lower_envelope_recovers_offset_and_drift_under_one_sided_jitter() -> None:
    rng = np.random.default_rng(0)
    meter_ms = np.arange(0, 5000, 10.0)
    true_ns = 7e9 + meter_ms * 1e6 * 0.9995
    arrival = true_ns + rng.exponential(2e6, meter_ms.size)  # lags only, never leads
    slope, intercept = external.lower_envelope_fit(meter_ms, arrival)
    assert slope == pytest.approx(0.9995e6, rel=2e-5)
    fitted = intercept + slope * meter_ms
    assert np.max(np.abs(fitted - true_ns)) < 0.5e6  # under half a millisecond


def test_clock_offset_over_a_persistent_channel_matches_the_device_clock() -> None:
    argv = [sys.executable, "-u", "-c", external.DEVICE_CLOCK_SCRIPT]
    with external.PersistentClockChannel(argv) as channel:
        offset = external.estimate_clock_offset(channel.exchange, rounds=20)
    # The "device" here is this machine: BOOTTIME - MONOTONIC is known exactly.
    truth = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
    assert abs(offset.offset_ns - truth) <= offset.error_ns + 200_000
    assert 0 < offset.error_ns < 5e6
    trace = external.MeterTrace((1_000, 2_000), (1.0, 1.0), "host_monotonic")
    later = external.ClockOffset(offset.offset_ns + 1000, offset.error_ns, offset.host_ns + 1e9)
    on_device = external.to_device_clock(trace, offset, later, clock="CLOCK_BOOTTIME")
    assert on_device.clock == "device:CLOCK_BOOTTIME"
    assert on_device.t_ns[0] - trace.t_ns[0] == pytest.approx(offset.offset_ns, abs=2)
