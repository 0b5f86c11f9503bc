"""Clocks and the timed loop.

Runs on the device: standard library only. Every sample is an integer number of nanoseconds from
``time.perf_counter_ns()``, so a microsecond model never rounds to zero.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

_OVERHEAD_PAIRS = 2001


@dataclass
class Window:
    """The timed window on a clock a power sampler can share (CLOCK_BOOTTIME on Linux)."""

    clock: str | None = None
    start_ns: int | None = None
    end_ns: int | None = None


@dataclass
class LoopResult:
    latencies_ns: list[int] = field(default_factory=list)
    window: Window = field(default_factory=Window)


def window_clock() -> tuple[str | None, Callable[[], int] | None]:
    """The clock shared with power samplers: CLOCK_BOOTTIME (counts suspend, the one Android and
    sysfs power logs use), else CLOCK_MONOTONIC, else none."""
    for name in ("CLOCK_BOOTTIME", "CLOCK_MONOTONIC"):
        clock_id = getattr(time, name, None)
        if clock_id is None:
            continue
        try:
            time.clock_gettime_ns(clock_id)
        except OSError:
            continue

        def read(clock_id: int = clock_id) -> int:
            return time.clock_gettime_ns(clock_id)

        return name, read
    return None, None


def timer_resolution_ns() -> float:
    """The resolution perf_counter claims, in ns."""
    return float(time.get_clock_info("perf_counter").resolution) * 1e9


def timer_overhead_ns(pairs: int = _OVERHEAD_PAIRS) -> float:
    """Median cost of one back-to-back ``perf_counter_ns()`` pair: the floor under every sample."""
    clock = time.perf_counter_ns
    costs = []
    for _ in range(pairs):
        start = clock()
        end = clock()
        costs.append(end - start)
    costs.sort()
    return float(costs[len(costs) // 2])


def timed_once(bind: Callable[[], None], invoke: Callable[[], object]) -> int:
    """One inference: inputs bound outside the timer, then ``invoke`` timed, in ns."""
    bind()
    start = time.perf_counter_ns()
    invoke()
    return time.perf_counter_ns() - start


def timed_loop(
    bind: Callable[[], None],
    invoke: Callable[[], object],
    min_runs: int,
    min_duration_s: float,
    max_duration_s: float,
    result: LoopResult,
) -> LoopResult:
    """Run until at least ``min_runs`` runs AND ``min_duration_s`` have passed, never starting a
    run after ``max_duration_s`` (0 = no limit); benchmark_model's stopping rule.

    Samples go into ``result`` as they are taken, so a failure part way keeps what was measured.
    """
    clock = time.perf_counter_ns
    name, boot = window_clock()
    result.window.clock = name
    latencies = result.latencies_ns
    start = clock()
    if boot is not None:
        result.window.start_ns = boot()
    min_finish = start + int(min_duration_s * 1e9)
    max_finish = start + int(max_duration_s * 1e9) if max_duration_s > 0 else None
    now = start
    while (len(latencies) < min_runs or now < min_finish) and (
        max_finish is None or now <= max_finish
    ):
        bind()
        t0 = clock()
        invoke()
        now = clock()
        latencies.append(now - t0)
    if boot is not None:
        result.window.end_ns = boot()
    return result
