"""The on-device source readers on their own: the reference's verbatim formats, vendor node
names, matching by name (never by number), and probes that say why a source is absent."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from harness.power import integrate as ig
from tests.fixtures.power import trees
from tests.fixtures.runner.invoke import REPO

sys.path.insert(0, str(REPO / "runners"))
import power_sources as ps

# Verbatim from the reference (§2.1, §3.1).
ODPM_SAMPLE = "t=349894\nCH0(T=349894)[S10M_VDD_TPU], 5578756\nCH1(T=349894)[VSYS_PWR_MODEM], 12\n"
PMIC_SAMPLE = """\
 3V7_WL_SW_A current(0)=0.00195186A
   VDD_CORE_A current(7)=0.56259000A
      HDMI_A current(22)=0.02551890A
   VDD_CORE_V volt(15)=0.76798460V
     EXT5V_V volt(24)=5.14158000V
      BATT_V volt(25)=3.28033900V
"""


@pytest.fixture
def sysfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_SYSFS_ROOT", str(tmp_path))
    return tmp_path


def test_parsers_read_the_reference_formats() -> None:
    assert ps.parse_energy_value(ODPM_SAMPLE) == (
        349894,
        {"S10M_VDD_TPU": 5578756.0, "VSYS_PWR_MODEM": 12.0},
    )
    with pytest.raises(ValueError, match="does not start with t="):
        ps.parse_energy_value("CH0(T=1)[X], 5\n")
    rails = ps.parse_pmic(PMIC_SAMPLE)
    # only VDD_CORE has both I and V here; EXT5V and BATT are voltage-only inputs
    assert rails == {"VDD_CORE": pytest.approx(0.56259 * 0.7679846)}


def test_battery_probe_finds_vendor_node_names(sysfs: Path) -> None:
    bms = sysfs / "sys/class/power_supply/bms"
    trees.write(bms / "type", "BMS")
    trees.write(bms / "batt_current_now", "-512")  # mA, vendor-named
    trees.write(bms / "batt_vol", "3912000")
    source = ps.AndroidBattery()
    assert source.current_path.endswith("bms/batt_current_now")
    source.read(123)
    (meter,) = source.meters
    assert meter.t_ns == [123] and meter.channels == {
        "batt_current_now": [-512],
        "batt_vol": [3912000],
    }


def test_battery_found_by_type_under_any_name(sysfs: Path) -> None:
    gauge = sysfs / "sys/class/power_supply/sm5714-fuelgauge"
    trees.write(gauge / "type", "Battery")
    trees.write(gauge / "current_now", "-400000")
    trees.write(gauge / "voltage_now", "3850000")
    trees.write(gauge / "status", "Not charging")
    source = ps.AndroidBattery()
    assert source.directory.endswith("sm5714-fuelgauge") and source.status() == "Not charging"


def test_hwmon_is_matched_by_name_and_labelled_by_bus_device(sysfs: Path) -> None:
    trees.pi4_ina226(sysfs)
    trees.write(sysfs / "sys/class/hwmon/hwmon3/power1_input", "3250000")
    source = ps.Hwmon()
    assert [s[0] for s in source.sensors] == ["ina226 1-0040"]
    assert source.max_rate_hz == pytest.approx(1000 / 35)  # the INA's update_interval
    source.read(1)
    assert source.meters[0].channels == {"ina226 1-0040": [3.25]}


def test_probes_say_why_nothing_was_found(sysfs: Path) -> None:
    probed: list[str] = []
    assert ps.open_source("auto", probed) is None
    assert [p.split(":")[0] for p in probed] == list(ps.AUTO_ORDER)
    trees.write(sysfs / "sys/bus/iio/devices/iio:device0/name", "s2mpg10-odpm")
    (sysfs / "sys/bus/iio/devices/iio:device0/energy_value").mkdir()  # unreadable as a file
    probed = []
    assert ps.open_source("odpm", probed) is None
    assert probed[0].startswith("odpm: cannot read") and "energy_value" in probed[0]


def test_rapl_skips_subzones_and_psys(sysfs: Path) -> None:
    trees.rapl(sysfs, 262_143_328_850)
    trees.write(sysfs / "sys/class/powercap/intel-rapl:0/energy_uj", "42")
    source = ps.Rapl()
    assert [z[0] for z in source.zones] == ["intel-rapl:0 package-0"]
    assert source.meters[0].wrap_uj == {"intel-rapl:0 package-0": 262_143_328_850.0}


def test_gauge_change_points_remove_polling_delay_and_lag() -> None:
    s = 1_000_000_000
    # polled every 0.25 s; the gauge changed somewhere in (0.5, 0.75] and in (1.25, 1.5]
    t = np.array([0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]) * s
    v = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 3.0, 3.0]
    t_cp, v_cp = ig.gauge_change_points(t, v, update_period_ns=0.5 * s)
    assert list(v_cp) == [1.0, 2.0, 3.0, 3.0]
    # midpoints 0.625 and 1.375, moved half an update period (0.25 s) earlier; last read kept
    assert list(t_cp / s) == [0.0, 0.375, 1.125, 1.75]
