"""Preparation: pure parts (cores -> clusters -> masks, screen state, options) and the local host.

Core layouts are real phones' sysfs values (``cpuinfo_max_freq``, ``related_cpus``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from harness.errors import ProfileError
from harness.prepare import (
    CoreInfo,
    DevicePreparation,
    clusters_of,
    cpu_mask,
    derive_cores,
    mask_cpus,
    operations_for,
    parse_cores,
    parse_screen_on,
)
from harness.profiles import DeviceProfile, PrepareOptions, load_profile_file
from harness.reporting.tables import host_observed_rows
from harness.transport.adb_state import parse_android_state
from harness.transport.local import LocalTransport

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "android"

# Pixel 7 as the cores script prints it (no related_cpus in the fixture tree).
PIXEL7 = "\n".join(
    f"{n}|{f}|1|" for n, f in enumerate([1803000] * 4 + [2348000] * 2 + [2850000] * 2)
)
# Snapdragon 8 Gen 2: policies 0-2 (A510), 3-6 (A715 + A710), 7 (X3).
SD8G2 = "\n".join(
    [f"{n}|2016000|1|0 1 2" for n in range(3)]
    + [f"{n}|2803200|1|3 4 5 6" for n in range(3, 7)]
    + ["7|3187200|1|7"]
)


def test_parse_cores_reads_frequency_online_and_policy() -> None:
    cores = parse_cores("0|1803000|1|0 1 2 3\n4||0|\nnoise\n10|2850000|1|10 11\n")
    assert cores == [
        CoreInfo(0, 1803000, True, (0, 1, 2, 3)),
        CoreInfo(4, None, False, ()),
        CoreInfo(10, 2850000, True, (10, 11)),
    ]


@pytest.mark.parametrize(
    ("text", "big", "prime"),
    [
        (PIXEL7, 0xF0, 0xC0),  # 4x A55 1.80, 2x A78 2.35, 2x X1 2.85
        (SD8G2, 0xF8, 0x80),
        ("\n".join(f"{n}|1800000|1|" for n in range(4)), 0xF, 0xF),  # uniform: every core
    ],
)
def test_big_and_prime_masks_follow_the_frequencies(text: str, big: int, prime: int) -> None:
    cores = parse_cores(text)
    assert cpu_mask(derive_cores(cores, "big")) == big
    assert cpu_mask(derive_cores(cores, "prime")) == prime


def test_pixel7_fixture_tree_gives_the_same_clusters() -> None:
    # The same numbers read from the fixture files the ADB peer serves.
    cpu_dir = FIXTURES / "sys" / "devices" / "system" / "cpu"
    text = "\n".join(
        f"{n}|{(cpu_dir / f'cpu{n}' / 'cpufreq' / 'cpuinfo_max_freq').read_text().strip()}|1|"
        for n in range(8)
    )
    assert clusters_of(parse_cores(text)) == [
        (1803000, (0, 1, 2, 3)),
        (2348000, (4, 5)),
        (2850000, (6, 7)),
    ]


def test_related_cpus_define_clusters_when_present() -> None:
    cores = parse_cores(SD8G2)
    assert clusters_of(cores) == [
        (2016000, (0, 1, 2)),
        (2803200, (3, 4, 5, 6)),
        (3187200, (7,)),
    ]


def test_offline_cores_are_left_out_and_unknown_frequencies_give_nothing() -> None:
    cores = parse_cores(PIXEL7.replace("7|2850000|1|", "7|2850000|0|"))
    assert derive_cores(cores, "prime") == [6]
    assert derive_cores(parse_cores("0||1|\n1||1|"), "big") == []
    assert mask_cpus(0xC0) == [6, 7]


@pytest.mark.parametrize(
    ("text", "on"),
    [
        ("  mWakefulness=Awake\n", True),
        ("  mWakefulness=Asleep\n", False),
        ("  mWakefulness=Dozing\n", False),
        ("Display Power: state=OFF\n", False),
        ("nothing useful\n", None),
    ],
)
def test_screen_state_from_dumpsys_power(text: str, on: bool | None) -> None:
    assert parse_screen_on(text) is on


def test_screen_state_from_the_fixture() -> None:
    assert parse_screen_on((FIXTURES / "dumpsys" / "power.txt").read_text()) is True


@pytest.mark.parametrize("mask", ["0xzz", "0", "0x0", "", "big cores"])
def test_a_bad_affinity_is_a_profile_error(tmp_path: Path, mask: str) -> None:
    path = tmp_path / "phone.yaml"
    path.write_text(yaml.safe_dump({"kind": "android", "prepare": {"affinity": mask}}))
    with pytest.raises(ProfileError, match=r"field 'prepare\.affinity'"):
        load_profile_file(path)


def test_prepare_block_loads_and_defaults_to_nothing(tmp_path: Path) -> None:
    path = tmp_path / "phone.yaml"
    path.write_text("kind: android\nprepare:\n  screen_off: true\n  affinity: '0xF0'\n")
    options = load_profile_file(path).prepare
    assert options == PrepareOptions(screen_off=True, affinity="0xF0")
    assert DeviceProfile(name="plain").prepare == PrepareOptions()


def test_android_only_operations_on_a_board_become_notes() -> None:
    profile = DeviceProfile(
        name="pi", kind="linux", prepare=PrepareOptions(screen_off=True, affinity="big")
    )
    ops, notes = operations_for(profile)
    assert [op.name for op in ops] == ["affinity"]
    assert notes == ["screen_off: only possible on Android devices, not on pi"]


def test_affinity_prefix_pins_a_real_process_on_this_host() -> None:
    # util-linux taskset takes the same bare-hex mask as Android's toybox.
    profile = DeviceProfile(name="here", prepare=PrepareOptions(affinity="0x1"))
    prep = DevicePreparation.for_profile(profile, LocalTransport())
    prep.apply()
    assert prep.notes == [] and prep.command_prefix() == ["taskset", "1"]
    probe = [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"]
    result = LocalTransport().run([*prep.command_prefix(), *probe], timeout_s=30)
    assert result.stdout.strip() == "[0]", result.stderr
    assert prep.host_observed_state() == {"preparation": {"affinity": "0x1 cores [0] (mask 0x1)"}}
    prep.restore()
    assert prep.command_prefix() == [] and os.sched_getaffinity(0)  # this process untouched


def test_report_rows_for_the_android_state() -> None:
    script_output = "\n".join(
        [
            "@@getprop",
            (FIXTURES / "getprop.txt").read_text(),
            "@@cpu",
            *(f"{n} {f} sched_pixel {f} 1" for n, f in enumerate([1803000] * 4 + [2850000] * 4)),
            "@@battery",
            "capacity=78",
            "status=Discharging",
            "temp=291",
            "@@thermalstatus",
            "Thermal Status: 0",
            "@@end",
        ]
    )
    state = parse_android_state(script_output)
    state["preparation"] = {"affinity": "big cores [4, 5, 6, 7] (mask 0xf0)"}
    rows = dict(host_observed_rows(state))
    assert rows["Device model"].startswith("Google Pixel 7")
    assert rows["SoC"] == "GS201"
    assert "(SDK 34)" in rows["Android"]
    assert rows["Battery"] == "78% Discharging, 29.1 °C"
    assert rows["Android thermal status"] == "0"
    assert rows["CPU clusters"].startswith("4x 1.80 GHz, 4x 2.85 GHz")
    assert rows["Prepared: affinity"].endswith("(mask 0xf0)")
    assert host_observed_rows(None) == [] and host_observed_rows({}) == []
