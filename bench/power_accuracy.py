"""Power sampler: energy accuracy per source, and the sampler's cost on latency, side by side.

Accuracy: for each fixture device (Pixel ODPM, Pixel battery gauge, Pi 5 PMIC via the stand-in
vcgencmd, Pi 4 INA226, RAPL) run the REAL runner with ``--power-source`` while the fixture writer
replays a known sinusoidal power profile, and report the relative error of the gross energy and
of the idle power against the exact integral (goal: <= 1% counters, <= 3% instantaneous).

Cost: median latency of mobilenet_tiny with each sampler vs without it (``--power-source none``)
while the same fixture writer runs, one after the other in rounds so drift hits both alike
(goal: ratio <= 1.05 at 10 Hz).

    python bench/power_accuracy.py [--repeats 3] [--window-s 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.power.energy import energy_from_document  # noqa: E402
from tests.fixtures.power.jobs import PowerJob, run_power_job  # noqa: E402

CASES = (  # device, source, rate_hz, tolerance
    ("pixel", "odpm", 10.0, 0.01),
    ("pixel", "android-battery", 20.0, 0.03),
    ("pi5", "pi5-pmic", 10.0, 0.03),
    ("pi4", "hwmon", 10.0, 0.03),
    ("rapl", "rapl", 50.0, 0.01),
)


def _errors(job: PowerJob) -> tuple[float, float, float]:
    summary = energy_from_document(job.doc)
    trace, timing = job.doc.power, job.doc.timing
    assert summary and summary.gross_energy_j and summary.idle_power_w
    assert trace and timing and timing.window_start_ns and timing.window_end_ns
    assert trace.idle_start_ns and trace.idle_end_ns
    exact = job.profile.energy_j(timing.window_start_ns / 1e9, timing.window_end_ns / 1e9)
    idle_s = (trace.idle_end_ns - trace.idle_start_ns) / 1e9
    idle = job.profile.energy_j(trace.idle_start_ns / 1e9, trace.idle_end_ns / 1e9) / idle_s
    median_ms = statistics.median(timing.latencies_ns) / 1e6
    return summary.gross_energy_j / exact - 1, summary.idle_power_w / idle - 1, median_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window-s", type=float, default=3.0)
    args = parser.parse_args()
    # per source: median latency with the sampler, and without it under the same fixture writer
    latencies: dict[str, tuple[list[float], list[float]]] = {}
    print(f"{'source':<16}{'gross err %':>24}{'idle err %':>24}  goal")
    rows: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.repeats):
        for device, source, rate, _tol in CASES:
            with tempfile.TemporaryDirectory() as tmp:
                job = run_power_job(
                    Path(tmp), device, source, rate_hz=rate, min_window_s=args.window_s
                )
            with tempfile.TemporaryDirectory() as tmp:
                bare = run_power_job(
                    Path(tmp),
                    device,
                    "none",
                    idle_s=0.0,
                    runner_args=["--min-duration-s", str(args.window_s)],  # same window, no source
                )
            gross, idle, median_ms = _errors(job)
            rows.setdefault(source, []).append((gross, idle))
            with_s, without_s = latencies.setdefault(source, ([], []))
            with_s.append(median_ms)
            assert bare.doc.timing is not None
            without_s.append(statistics.median(bare.doc.timing.latencies_ns) / 1e6)
    failures = 0
    for _device, source, _rate, tol in CASES:
        gross_pct = [abs(g) * 100 for g, _ in rows[source]]
        idle_pct = [abs(i) * 100 for _, i in rows[source]]
        ok = max(gross_pct) <= tol * 100
        failures += not ok
        gross_text = f"max {max(gross_pct):.3f} med {statistics.median(gross_pct):.3f}"
        idle_text = f"max {max(idle_pct):.3f}"
        verdict = "ok" if ok else "MISSED"
        print(f"{source:<16}{gross_text:>24}{idle_text:>24}  <= {tol * 100:g}% {verdict}")
    print("\nmedian latency, sampler on / off (same fixture writer running):")
    for source, (with_s, without_s) in latencies.items():
        on, off = statistics.median(with_s), statistics.median(without_s)
        print(f"  {source:<16} {on:.3f} ms / {off:.3f} ms  ratio {on / off:.3f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
