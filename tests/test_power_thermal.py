"""Thermal control through the real local transport: cooldown on a fixture zone tree that cools
over time, a timeout that is recorded (not raised), the Pi throttle word from the stand-in
vcgencmd, Android thermal status parsing, and the post-run throttling rules."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.power import thermal
from harness.results.schema import PowerTrace, RunnerDocument, ThermalTrace, parse_runner_document
from harness.transport.local import LocalTransport
from tests.fixtures.power import trees
from tests.fixtures.runner.invoke import REPO

# `dumpsys thermalservice` as AOSP's ThermalManagerService prints it (abridged).
DUMPSYS_THERMAL = """\
IsStatusOverride: false
ThermalEventListeners:
\tcallbacks: 1
ThermalStatusListeners:
\tcallbacks: 1
Thermal Status: 2
Cached temperatures:
\tTemperature{mValue=41.0, mType=3, mName=VIRTUAL-SKIN, mStatus=2}
HAL Ready: true
HAL connection:
\tThermalHAL 2.0 connected: yes
Current temperatures from HAL:
\tTemperature{mValue=52.3, mType=0, mName=BIG, mStatus=0}
"""


@pytest.fixture
def zones(tmp_path: Path) -> Path:
    trees.write(tmp_path / "thermal_zone0/type", "cpu-thermal")
    trees.write(tmp_path / "thermal_zone0/temp", "58000")
    trees.write(tmp_path / "thermal_zone1/type", "battery")  # not a gated zone type
    trees.write(tmp_path / "thermal_zone1/temp", "70000")
    trees.write(tmp_path / "thermal_zone2/type", "gpu-thermal")
    (tmp_path / "thermal_zone2").mkdir(exist_ok=True)  # no temp: a zone that is off
    return tmp_path


@pytest.fixture
def cooling(zones: Path) -> Iterator[Path]:
    """A writer thread cooling the CPU zone by 1 °C every 50 ms, from 58 °C."""
    stop = threading.Event()

    def cool() -> None:
        temp = 58000
        while not stop.is_set() and temp > 30000:
            temp -= 1000
            trees.write(zones / "thermal_zone0/temp", str(temp))
            time.sleep(0.05)

    worker = threading.Thread(target=cool, daemon=True)
    worker.start()
    yield zones
    stop.set()
    worker.join()


def test_cooldown_waits_until_the_cpu_zone_is_below_threshold(cooling: Path) -> None:
    result = thermal.cooldown(
        LocalTransport(),
        zones_glob=f"{cooling}/thermal_zone*",
        threshold_c=50.0,
        timeout_s=20.0,
        poll_s=0.05,
    )
    assert result.reached and "below 50" in result.reason
    assert result.max_temp_c is not None and result.max_temp_c <= 50.0
    assert 0.2 < result.waited_s < 10.0  # 8 °C at 20 °C/s, plus polling
    assert {z.type for z in result.zones} == {"cpu-thermal", "battery"}  # the off zone skipped


def test_cooldown_timeout_is_recorded_with_the_hot_zone(zones: Path) -> None:
    result = thermal.cooldown(
        LocalTransport(),
        zones_glob=f"{zones}/thermal_zone*",
        threshold_c=40.0,
        timeout_s=0.3,
        poll_s=0.1,
    )
    assert not result.reached
    assert (
        result.reason.startswith("timeout after") and "cpu-thermal 58.0 °C > 40 °C" in result.reason
    )
    assert result.max_temp_c == 58.0  # the 70 °C battery zone is not a gate


def test_cooldown_reads_the_pi_throttle_word(zones: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = zones / "pi"
    trees.pi5(root)
    for key, value in trees.vcgencmd_path_env(root).items():
        monkeypatch.setenv(key, value)
    trees.write(root / "vcgencmd/throttled", "throttled=0x50005")  # under-voltage + throttled now
    trees.write(zones / "thermal_zone0/temp", "35000")
    blocked = thermal.cooldown(
        LocalTransport(),
        zones_glob=f"{zones}/thermal_zone*",
        threshold_c=50.0,
        timeout_s=0.2,
        poll_s=0.1,
        check_pi_throttled=True,
    )
    assert not blocked.reached and blocked.pi_throttled == 0x50005
    assert "Pi throttling now (get_throttled=0x50005)" in blocked.reason
    trees.write(root / "vcgencmd/throttled", "throttled=0x50000")  # sticky bits only
    ok = thermal.cooldown(
        LocalTransport(),
        zones_glob=f"{zones}/thermal_zone*",
        threshold_c=50.0,
        timeout_s=0.2,
        poll_s=0.1,
        check_pi_throttled=True,
    )
    assert ok.reached and ok.pi_throttled == 0x50000


def test_android_status_and_unsafe_globs() -> None:
    assert thermal.parse_thermal_status(DUMPSYS_THERMAL) == 2
    assert thermal.parse_thermal_status("Thermal HAL not ready") is None
    # no dumpsys on this host: "unavailable", not an error
    assert thermal.read_android_thermal_status(LocalTransport()) is None
    with pytest.raises(ConfigError, match="characters a shell would interpret"):
        thermal.read_zones(LocalTransport(), "/sys/class/thermal/*; rm -rf /")


def _doc_with(thermal_trace: ThermalTrace) -> RunnerDocument:
    data = json.loads((REPO / "tests/golden/runner_doc_v1.json").read_text())
    data["power"] = PowerTrace(source="none", scope="none", thermal=thermal_trace).model_dump(
        mode="json"
    )
    return parse_runner_document(data)


def test_throttled_verdict_rules() -> None:
    steady = ThermalTrace(
        t_ns=list(range(10)),
        cur_freq_khz={"policy0": [2400000] * 10, "policy4": [1800000] * 10},
        max_freq_khz={"policy0": 2400000, "policy4": 2400000},
        governors={"policy0": "performance", "policy4": "schedutil"},
        pi_throttled=[0x0] * 10,
    )
    assert thermal.throttled_verdict(_doc_with(steady)) == []
    capped = steady.model_copy(
        update={
            "cur_freq_khz": {"policy0": [2400000] * 8 + [1500000] * 2},
            "pi_throttled": [0x0] * 5 + [0x20002] * 3 + [0x20000] * 2,
        }
    )
    reasons = thermal.throttled_verdict(_doc_with(capped), android_status_after=1)
    assert reasons == [
        "policy0 ran below 90% of its max frequency in 20% of samples (governor performance)",
        "Pi throttling seen during the job (bits 0x2)",
        "Pi sticky throttle bits set during the job (0x2)",
        "Android thermal status 1 after the job",
    ]
