"""The host's energy math and calibration: exact integrals on known curves, the three driver sign
conventions and mA devices, wraparound, resets, charging, and documents without power."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from harness.errors import ConfigError, PowerError
from harness.power import integrate as ig
from harness.power.calibration import (
    BatteryCalibration,
    PowerCalibration,
    calibrate_battery,
    calibration_from_profile,
)
from harness.power.energy import energy_from_document, energy_from_trace
from harness.results.schema import PowerTrace, parse_runner_document
from tests.fixtures.runner.invoke import REPO

S = 1_000_000_000  # ns per second


def test_trapezoid_is_exact_on_a_line_and_clips_to_the_window() -> None:
    t = np.arange(0, 11) * S  # P(t) = 2 + t W, sampled every second
    p = 2.0 + np.arange(0, 11)
    # ∫_{2.5}^{7.25} (2 + t) dt = 2*4.75 + (7.25² - 2.5²)/2
    exact = 2 * 4.75 + (7.25**2 - 2.5**2) / 2
    assert ig.trapezoid_energy_j(t, p, 2.5 * S, 7.25 * S) == pytest.approx(exact, rel=1e-12)


def test_window_not_covered_is_refused_not_extrapolated() -> None:
    t = np.arange(1, 5) * S
    with pytest.raises(ig.WindowNotCovered, match="start 1 s after"):
        ig.trapezoid_energy_j(t, np.ones(4), 0, 3 * S)
    with pytest.raises(ig.WindowNotCovered, match="stop 2 s before"):
        ig.trapezoid_energy_j(t, np.ones(4), 2 * S, 6 * S)


def test_hold_integrates_change_points_as_zero_order_hold() -> None:
    # a gauge updating every second: 1 W, 1 W (repeat), 3 W, 3 W, 2 W
    t = np.array([0, 1, 2, 3, 4]) * S
    t_cp, p_cp = ig.change_points(t, [1.0, 1.0, 3.0, 3.0, 2.0])
    assert list(t_cp / S) == [0, 2, 4] and list(p_cp) == [1, 3, 2]
    assert list(ig.change_points(t, [1.0] * 5)[0] / S) == [0, 4]  # the last read ends the hold
    # [0.5, 4]: 1.5 s at 1 W + 2 s at 3 W
    assert ig.hold_energy_j(t_cp, p_cp, 0.5 * S, 4 * S) == pytest.approx(7.5)


def test_counter_interpolates_at_edges_and_undoes_rapl_wraparound() -> None:
    # 5 W for 10 s into a counter of modulus 12 J, read every 0.5 s: it wraps four times
    t = np.arange(0, 21) * S / 2
    raw = (np.arange(0, 21) * 2.5e6 + 7e6) % 12e6
    assert (np.diff(raw) < 0).sum() == 4
    counter = ig.unwrap_counter(t, raw, wrap_uj=12e6)
    assert counter.resets == ()
    assert ig.counter_energy_j(counter, 1.2 * S, 8.7 * S) == pytest.approx(5 * 7.5, rel=1e-9)


def test_counter_decrease_without_modulus_is_a_reset_that_voids_its_window() -> None:
    t = np.arange(0, 10) * S
    raw = np.array([100, 200, 300, 400, 10, 110, 210, 310, 410, 510], dtype=float) * 1e6
    counter = ig.unwrap_counter(t, raw)
    assert counter.resets == ((3 * S, 4 * S),)
    with pytest.raises(PowerError, match="reset inside the window"):
        ig.counter_energy_j(counter, 2 * S, 6 * S)
    # a window after the reset is still good: 100 J/s
    assert ig.counter_energy_j(counter, 4.5 * S, 8.5 * S) == pytest.approx(400)


@pytest.mark.parametrize(
    ("convention", "unit", "scale", "expected_sign", "expected_unit"),
    [
        ("neg", "uA", 1e6, -1, "uA"),  # kernel ABI: negative while discharging
        ("pos", "uA", 1e6, 1, "uA"),  # older drivers: positive while discharging
        ("abs", "uA", 1e6, 1, "uA"),  # always positive
        ("neg", "mA", 1e3, -1, "mA"),  # a device printing mA where the ABI says µA
        ("pos", "mA", 1e3, 1, "mA"),
    ],
)
def test_battery_calibration_turns_every_convention_into_positive_watts(
    convention: str, unit: str, scale: float, expected_sign: int, expected_unit: str
) -> None:
    rng = np.random.default_rng(3)
    amps = 0.35 + 0.05 * rng.random(20)  # idle phone, 350-400 mA
    signed = -amps if convention == "neg" else amps
    raw_i = [round(a * scale) for a in signed]
    raw_v = [round(3.87e6 + 1000 * k) for k in range(20)]
    calibration, flags = calibrate_battery(raw_i, raw_v)
    assert (calibration.sign, calibration.current_unit) == (expected_sign, expected_unit)
    assert flags == ()
    watts = [calibration.power_w(i, v) for i, v in zip(raw_i, raw_v, strict=True)]
    truth = [a * v / 1e6 for a, v in zip(amps, raw_v, strict=True)]
    assert np.allclose(watts, truth, rtol=2e-3)
    assert "auto" in calibration.provenance


def test_ambiguous_current_is_decided_by_plausible_power_and_override_wins() -> None:
    # 12000 raw at 3.9 V: 12 mA (0.05 W, implausible) or 12 A (47 W)?  µA: 0.047 W; neither fits
    _cal, flags = calibrate_battery([12_000] * 5, [3_900_000] * 5)
    assert any("ambiguous" in f for f in flags)
    override = BatteryCalibration(1, "mA", "uV", "profile: pixel7 lab check")
    cal, flags = calibrate_battery([-400] * 5, [3_900_000] * 5, override=override)
    assert cal is override
    assert any("differs from what the readings suggest" in f for f in flags)
    assert any("outside the plausible" in f for f in flags)  # +1 on a negative reading


def test_profile_calibration_is_validated() -> None:
    cal = calibration_from_profile(
        {"linear_scale": 1.1451, "linear_offset_w": 0.5879, "provenance": "jfikar/RPi5-power"}
    )
    assert cal.linear is not None and cal.linear.apply_w(2.0) == pytest.approx(2.8781)
    assert cal.battery is None
    with pytest.raises(ConfigError, match="unknown power calibration keys: sign"):
        calibration_from_profile({"sign": -1})
    with pytest.raises(ConfigError, match="battery_sign must be 1 or -1"):
        calibration_from_profile({"battery_sign": 2})


def _trace(**fields: object) -> PowerTrace:
    base: dict[str, object] = {
        "source": "android-battery",
        "scope": "battery",
        "method": "instantaneous",
        "clock": "CLOCK_BOOTTIME",
        "requested_rate_hz": 10.0,
        "achieved_rate_hz": 10.0,
        "update_period_s": 0.1,
        "window_factor": 50.0,
        "idle_start_ns": 0,
        "idle_end_ns": 10 * S,
        "window_start_ns": 10 * S,
        "window_end_ns": 70 * S,
    }
    base.update(fields)
    return PowerTrace.model_validate(base)


def _battery_meter(watts: float, volts: float = 3.9) -> dict[str, object]:
    t = [int(k * S / 10) for k in range(0, 751)]
    return {
        "name": "battery",
        "quantity": "battery_raw",
        "t_ns": t,
        "channels": {
            "current_now": [-round(watts / volts * 1e6)] * len(t),
            "voltage_now": [round(volts * 1e6)] * len(t),
        },
    }


def test_battery_energy_net_of_idle_and_charging_refused() -> None:
    meter = _battery_meter(2.0)
    summary = energy_from_trace(
        _trace(meters=[meter], charging_status=[(0, "Discharging")]),
        600,
        calibration=PowerCalibration(),
    )
    assert summary.gross_energy_j == pytest.approx(120.0, rel=1e-3)
    assert summary.gross_energy_per_inference_mj == pytest.approx(200.0, rel=1e-3)
    assert summary.avg_power_w == pytest.approx(2.0, rel=1e-3)
    assert summary.idle_power_w == pytest.approx(2.0, rel=1e-3)
    assert summary.net_energy_per_inference_mj == pytest.approx(0.0, abs=0.5)
    assert summary.inferences_per_joule == pytest.approx(5.0, rel=1e-3)
    assert "window shorter" not in " ".join(summary.quality_flags)  # 60 s >= 50 x 0.1 s

    charging = energy_from_trace(
        _trace(meters=[meter], charging_status=[(0, "Discharging"), (20 * S, "Charging")]),
        600,
        calibration=PowerCalibration(),
    )
    assert charging.gross_energy_j is None and not charging.available
    assert "charging during run: battery readings invalid" in charging.quality_flags


def test_short_window_for_a_slow_gauge_is_flagged() -> None:
    summary = energy_from_trace(
        _trace(meters=[_battery_meter(1.5)], update_period_s=1.5),
        100,
        calibration=PowerCalibration(),
    )
    assert summary.available
    assert any(
        f.startswith("window shorter than 50x the gauge update period")
        for f in summary.quality_flags
    )


def test_linear_calibration_is_reported_beside_the_raw_power() -> None:
    t = [int(k * S / 10) for k in range(0, 751)]
    meter = {
        "name": "pmic",
        "quantity": "power_w",
        "t_ns": t,
        "channels": {"VDD_CORE": [1.5] * len(t), "DDR_VDD2": [0.5] * len(t)},
    }
    cal = calibration_from_profile(
        {
            "linear_scale": 1.1451,
            "linear_offset_w": 0.5879,
            "provenance": "one board vs USB-C meter",
        }
    )
    summary = energy_from_trace(
        _trace(source="pi5-pmic", scope="pmic", meters=[meter]), 10, calibration=cal
    )
    assert summary.avg_power_w == pytest.approx(2.0)
    assert summary.calibrated_avg_power_w == pytest.approx(1.1451 * 2 + 0.5879)
    assert summary.calibration == "one board vs USB-C meter"


def test_no_source_says_so_and_old_documents_have_no_energy() -> None:
    golden = json.loads((REPO / "tests/golden/runner_doc_v1.json").read_text())
    old = parse_runner_document(golden)
    assert old.power is None and energy_from_document(old) is None
    golden["power"] = {
        "source": "none",
        "scope": "none",
        "method": "none",
        "flags": ["no power source on this device (probed: rapl: absent)"],
    }
    summary = energy_from_document(parse_runner_document(golden))
    assert summary is not None and not summary.available
    assert summary.avg_power_w is None and summary.gross_energy_per_inference_mj is None
    assert summary.quality_flags[0].startswith("no power source on this device")
    assert not math.isnan(summary.inferences)


def test_energy_latency_plot_is_a_png_with_every_point() -> None:
    import io

    from matplotlib import image

    from harness.power.plots import EnergyPoint, energy_latency_png

    points = [
        EnergyPoint("mobilenet fp32", 12.0, 41.0, 30.5, "odpm"),
        EnergyPoint("mobilenet int8", 5.5, 17.2, 11.0, "odpm"),
        EnergyPoint("digits mlp", 0.05, 0.3, None, "rapl"),
    ]
    png = energy_latency_png(points)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pixels = image.imread(io.BytesIO(png), format="png")
    assert pixels.shape[:2] == (420, 640)
    assert len(set(map(tuple, pixels.reshape(-1, pixels.shape[-1])[::97].tolist()))) > 5


def test_profile_power_block_validates_and_becomes_runner_flags() -> None:
    import argparse
    import sys

    from pydantic import ValidationError

    from harness.power.settings import PowerSettings, runner_power_argv

    sys.path.insert(0, str(REPO / "runners"))
    import power_sampler

    settings = PowerSettings.model_validate(
        {"source": "odpm", "idle_s": 5, "sampler_cpu": 0, "calibration": {"battery_sign": 1}}
    )
    argv = runner_power_argv(settings)
    parser = argparse.ArgumentParser()
    power_sampler.add_arguments(parser)
    parsed = parser.parse_args(argv)  # the runner accepts exactly what the host sends
    assert (parsed.power_source, parsed.power_idle_s, parsed.power_cpu) == ("odpm", 5.0, "0")
    assert parsed.power_window_factor == 50.0 and parsed.power_rate_hz == 10.0
    assert settings.calibration_model().battery is not None
    assert runner_power_argv(PowerSettings(source="none")) == []
    with pytest.raises(ValidationError, match="unknown power calibration keys"):
        PowerSettings.model_validate({"calibration": {"sign": 1}})
    with pytest.raises(ValidationError, match="rate_hz"):
        PowerSettings.model_validate({"rate_hz": 1000})
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        PowerSettings.model_validate({"sorce": "odpm"})


def test_report_columns_never_show_an_unmeasured_number() -> None:
    from harness.power.columns import COLUMNS, energy_columns

    golden = json.loads((REPO / "tests/golden/runner_doc_v1.json").read_text())
    golden["power"] = {
        "source": "none",
        "scope": "none",
        "flags": ["no power source on this device"],
    }
    row = energy_columns(energy_from_document(parse_runner_document(golden)))
    assert list(row) == list(COLUMNS)
    assert row["power source"] == "no power source" and row["energy/inf gross (mJ)"] == "—"
    assert row["power quality"] == "no power source on this device"
    assert energy_columns(None)["power source"] == "not measured"
    summary = energy_from_trace(
        _trace(meters=[_battery_meter(2.0)]), 600, calibration=PowerCalibration()
    )
    row = energy_columns(summary)
    assert row["power source"] == "android-battery (battery)"
    assert row["energy/inf gross (mJ)"] == "200" and row["avg power (W)"] == "2"
    assert row["idle power (W)"].startswith("2 ±")
