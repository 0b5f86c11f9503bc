"""One job measured by an external meter on the host (profile ``power: {external: ...}``).

The session starts the meter right before the runner, stops it right after, and takes the job's
:class:`~harness.power.energy.EnergySummary` from the meter's trace over the runner's timed
window. The window is on the device's clock (``timing.window_clock``), the meter's samples on the
host's monotonic clock (after :func:`~harness.power.external.lower_envelope_fit`); the
host->device offset is estimated before and after the job with Cristian's method over the
job's own transport, and the drift between the two estimates is interpolated.

The exchanges are one-shot commands (the :class:`~harness.transport.base.Transport` protocol has
no persistent channel), so each round trip includes a process start on the device; the smallest
of ``clock_rounds`` exchanges bounds the error, which is recorded in the summary's flags.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np

from harness.errors import PowerError
from harness.power import external
from harness.power import integrate as ig
from harness.power.energy import EnergySummary
from harness.power.settings import ExternalMeterSettings
from harness.profiles import DeviceProfile, LocalTransportConfig, SshTransportConfig
from harness.results.schema import RunnerDocument
from harness.transport.base import Transport

log = logging.getLogger(__name__)

CLOCK_TIMEOUT_S = 10.0
# -S -I: no site, no user paths: the clock is read as soon as the interpreter is up.
_CLOCK_CODE = (
    "import time;print(time.clock_gettime_ns(getattr(time,'CLOCK_BOOTTIME',time.CLOCK_MONOTONIC)))"
)
DEVICE_CLOCK = "CLOCK_BOOTTIME"


def meter_from_settings(settings: ExternalMeterSettings) -> external.ExternalMeter:
    """The meter the ``external:`` block describes."""
    if settings.kind == "serial":
        return external.SerialLineMeter(
            settings.port,
            baudrate=settings.baud,
            name=settings.name,
            scope=settings.scope,
            nominal_hz=settings.nominal_hz,
        )
    raise PowerError(f"unknown external meter kind {settings.kind!r}")  # pragma: no cover


def transport_clock_exchange(
    transport: Transport, python: str, env: Mapping[str, str] | None = None
) -> Callable[[], int]:
    """One device clock reading (ns, CLOCK_BOOTTIME) per call, through ``transport``."""

    def exchange() -> int:
        result = transport.run(
            [python, "-S", "-I", "-c", _CLOCK_CODE], timeout_s=CLOCK_TIMEOUT_S, env=env
        )
        try:
            return int(result.stdout.strip())
        except ValueError:
            tail = (result.stderr.strip() or result.stdout.strip())[-160:]
            raise PowerError(
                f"cannot read the device clock for the external meter: {tail}"
            ) from None

    return exchange


def persistent_clock_argv(profile: DeviceProfile, python: str) -> list[str] | None:
    """A command that keeps a clock process open on the device (see
    :class:`~harness.power.external.PersistentClockChannel`), or None when there is no such
    route and one-shot exchanges must do.

    Local: this host's Python. SSH: the OpenSSH client with the profile's key, port and
    known_hosts (host key checked strictly, never added; no password prompts).
    """
    config = profile.transport
    if isinstance(config, LocalTransportConfig):
        return [sys.executable, "-u", "-c", external.DEVICE_CLOCK_SCRIPT]
    if isinstance(config, SshTransportConfig) and shutil.which("ssh") and not config.password_env:
        argv = ["ssh", "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"ConnectTimeout={max(1, round(config.connect_timeout_s))}"]  # fmt: skip
        if not config.use_ssh_config:
            argv += ["-F", "/dev/null"]
        if config.port:
            argv += ["-p", str(config.port)]
        if config.key_file:
            argv += ["-i", os.path.expanduser(config.key_file), "-o", "IdentitiesOnly=yes"]
        if config.known_hosts:
            argv += ["-o", f"UserKnownHostsFile={os.path.expanduser(config.known_hosts)}"]
        target = f"{config.user}@{config.host}" if config.user else config.host
        return [*argv, target, shlex.join([python, "-u", "-c", external.DEVICE_CLOCK_SCRIPT])]
    return None  # ADB: no persistent route through the Transport protocol yet


@dataclass
class ExternalJobMeter:
    """Start before the runner, :meth:`finish` with its document after.

    ``clock_argv`` (a persistent clock process, round trips of a millisecond or less) is tried
    first; ``exchange`` (one-shot commands, whose round trip includes a process start) is the
    fallback.
    """

    settings: ExternalMeterSettings
    exchange: Callable[[], int]
    clock_argv: list[str] | None = None
    meter: external.ExternalMeter | None = None
    before: external.ClockOffset | None = None
    clock_route: str = ""
    start_error: str | None = None

    def _offset(self) -> external.ClockOffset:
        rounds = self.settings.clock_rounds
        if self.clock_argv:
            try:
                with external.PersistentClockChannel(self.clock_argv) as channel:
                    offset = external.estimate_clock_offset(channel.exchange, rounds=rounds)
                self.clock_route = "persistent channel"
                return offset
            except (PowerError, OSError) as exc:
                log.warning("clock channel %s failed (%s); one-shot exchanges instead",
                            self.clock_argv[0], exc)  # fmt: skip
                self.clock_argv = None
        self.clock_route = "one-shot commands"
        return external.estimate_clock_offset(self.exchange, rounds=rounds)

    def start(self) -> None:
        """Estimate the clock offset, then open the meter and start streaming.

        Never raises for the meter's sake: a meter that cannot start is a flag on the job's
        energy (see :meth:`finish`), the job itself still runs and keeps its latencies.
        """
        try:
            self.before = self._offset()
            self.meter = self.meter or meter_from_settings(self.settings)
            self.meter.start()
        except PowerError as exc:
            self.start_error = exc.one_line()
            log.warning("external meter not started: %s", self.start_error)

    def abort(self) -> None:
        """Stop the meter without a result (the job failed); errors are swallowed."""
        if self.meter is not None:
            with contextlib.suppress(PowerError):
                self.meter.stop()

    def finish(self, doc: RunnerDocument) -> EnergySummary:
        """Stop the meter and compute the job's energy over the runner's timed window."""
        timing = doc.timing
        inferences = len(timing.latencies_ns) if timing is not None else 0
        if self.meter is None or self.before is None or self.start_error:
            why = self.start_error or "it was never started"
            return _not_measured(self.settings, inferences, f"external meter not started: {why}")
        try:
            trace = self.meter.stop()
            after = self._offset()
        except PowerError as exc:
            return _not_measured(self.settings, inferences, f"external meter: {exc.one_line()}")
        start = timing.window_start_ns if timing is not None else None
        end = timing.window_end_ns if timing is not None else None
        clock = (timing.window_clock if timing is not None else None) or DEVICE_CLOCK
        on_device = external.to_device_clock(trace, self.before, after, clock=clock)
        error_ms = max(self.before.error_ns, after.error_ns) / 1e6
        flags = [
            f"external meter aligned to the device clock ±{error_ms:.3g} ms ({self.clock_route})"
        ]
        if trace.dropped_lines:
            flags.append(f"{trace.dropped_lines} unparsable meter lines skipped")
        if clock != DEVICE_CLOCK:
            flags.append(
                f"the runner's window is on {clock}, the offset was read on {DEVICE_CLOCK}"
            )
        empty = EnergySummary.unmeasured(
            self.meter.name, self.meter.scope, self.meter.method, inferences,
            window_s=(end - start) / 1e9 if start and end else None,
            update_period_s=1 / self.meter.nominal_hz,
        )  # fmt: skip
        if not start or not end or end <= start or inferences == 0:
            flags.append("no timed window: energy per inference not computed")
            return _with_flags(empty, flags)
        t = np.asarray(on_device.t_ns, dtype=np.float64)
        try:
            gross_j = ig.trapezoid_energy_j(t, on_device.power_w, start, end)
        except PowerError as exc:
            flags.append(f"energy not computed: {exc}")
            return _with_flags(empty, flags)
        window_s = (end - start) / 1e9
        inside = int(np.count_nonzero((t >= start) & (t <= end)))
        flags.append("no idle baseline: the external meter measures the job's window only")
        return EnergySummary(
            source=self.meter.name,
            scope=self.meter.scope,
            method=self.meter.method,
            inferences=inferences,
            window_s=window_s,
            avg_power_w=gross_j / window_s,
            gross_energy_j=gross_j,
            gross_energy_per_inference_mj=gross_j / inferences * 1e3,
            net_energy_per_inference_mj=None,
            inferences_per_joule=inferences / gross_j if gross_j > 0 else None,
            idle_power_w=None,
            idle_power_std_w=None,
            sample_rate_hz=inside / window_s,
            update_period_s=1 / self.meter.nominal_hz,
            quality_flags=tuple(flags),
        )


def external_meter_for(
    profile: DeviceProfile, transport: Transport, python: str
) -> ExternalJobMeter | None:
    """The external meter of ``profile.power.external`` for one job on ``transport``, or None."""
    settings = profile.power.external
    if settings is None:
        return None
    env = profile.env or None
    return ExternalJobMeter(
        settings,
        transport_clock_exchange(transport, python, env),
        clock_argv=persistent_clock_argv(profile, python),
    )


def _not_measured(settings: ExternalMeterSettings, inferences: int, flag: str) -> EnergySummary:
    return EnergySummary.unmeasured(
        settings.name, settings.scope, "instantaneous", inferences,
        update_period_s=1 / settings.nominal_hz, quality_flags=(flag,),
    )  # fmt: skip


def _with_flags(summary: EnergySummary, flags: list[str]) -> EnergySummary:
    return replace(summary, quality_flags=tuple(flags))
