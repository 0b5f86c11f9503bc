"""Android device state read through the ADB transport from the fixture phone, and profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.paths import bundled_profiles_dir
from harness.profiles import AdbTransportConfig, DeviceProfile, load_profile_file
from harness.transport.adb import AdbTransport
from harness.transport.adb_state import check_adb_device, parse_android_state, read_android_state
from tests.peers.adbd import AdbdPeer
from tests.peers.adbd_support import FIXTURES_DIR, AdbKeyPair, PeerFactory


def _config(peer: AdbdPeer, key: AdbKeyPair) -> AdbTransportConfig:
    return AdbTransportConfig(
        kind="adb", address=f"127.0.0.1:{peer.port}", key_file=str(key.private_path)
    )


@pytest.mark.integration
def test_state_from_getprop_and_sysfs(adbd_peer: AdbdPeer, adb_key_pair: AdbKeyPair) -> None:
    phone = AdbTransport(_config(adbd_peer, adb_key_pair))
    state = read_android_state(phone)
    phone.close()
    assert (state["model"], state["manufacturer"], state["device"]) == (
        "Pixel 7",
        "Google",
        "panther",
    )
    assert (state["soc"], state["android_release"], state["sdk"]) == ("GS201", "14", 34)
    assert state["abi"] == "arm64-v8a" and "armeabi-v7a" in state["abi_list"]
    assert [c["cpus"] for c in state["clusters"]] == [[0, 1, 2, 3], [4, 5], [6, 7]]
    assert [c["max_freq_khz"] for c in state["clusters"]] == [1803000, 2348000, 2850000]
    assert state["big_cores"] == [4, 5, 6, 7] and state["prime_cores"] == [6, 7]
    assert state["governors"] == ["sched_pixel"]
    assert state["thermal_zones_c"]["BIG"] == pytest.approx(41.5)
    assert state["thermal_zones_c"]["battery"] == pytest.approx(28.7)
    assert state["thermal_status"] == 0
    battery = state["battery"]
    assert (battery["level_pct"], battery["status"], battery["temp_c"]) == (78, "Discharging", 28.7)
    assert battery["current_ua"] == -412000
    assert state["screen_on"] is True


@pytest.mark.integration
def test_state_follows_the_fixture_files(
    adbd_peer_factory: PeerFactory, adb_key_pair: AdbKeyPair, tmp_path: Path
) -> None:
    import shutil

    fixtures = tmp_path / "phone"
    shutil.copytree(FIXTURES_DIR, fixtures)
    (fixtures / "sys/class/power_supply/battery/capacity").write_text("12\n")
    (fixtures / "sys/class/power_supply/battery/status").write_text("Charging\n")
    (fixtures / "sys/devices/system/cpu/cpu7/cpufreq/cpuinfo_max_freq").write_text("3000000\n")
    peer = adbd_peer_factory(fixtures=fixtures)
    phone = AdbTransport(_config(peer, adb_key_pair))
    state = read_android_state(phone)
    phone.close()
    assert (state["battery"]["level_pct"], state["battery"]["status"]) == (12, "Charging")
    assert state["prime_cores"] == [7] and len(state["clusters"]) == 4


def test_parse_uniform_cpu_and_missing_sections() -> None:
    text = "@@getprop\n[ro.product.model]: [Board]\n@@cpu\n0 1500000 schedutil - 1\n1 1500000 schedutil - 1\n@@end\n"
    state = parse_android_state(text)
    assert state["model"] == "Board" and state["big_cores"] == [0, 1]
    assert state["battery"]["level_pct"] is None and state["screen_on"] is None
    assert state["thermal_zones_c"] == {} and state["thermal_status"] is None


@pytest.mark.integration
def test_check_adb_device(adbd_peer: AdbdPeer, adb_key_pair: AdbKeyPair) -> None:
    profile = DeviceProfile(
        name="pixel7",
        kind="android",
        transport=_config(adbd_peer, adb_key_pair),
        work_dir="/data/local/tmp/harness",
        python="python3",
    )
    check = check_adb_device(profile)
    assert check.ok and check.reachable and check.work_dir_writable and check.has_sha256sum
    assert check.python_version and check.python_version[0] == "3"
    assert (adbd_peer.options.root / "harness").is_dir()
    text = "\n".join(check.lines())
    assert "Pixel 7" in text and "GS201" in text and "78%" in text


@pytest.mark.integration
def test_check_unreachable_device(adbd_peer: AdbdPeer, adb_key_pair: AdbKeyPair) -> None:
    config = _config(adbd_peer, adb_key_pair)
    adbd_peer.stop()
    check = check_adb_device(DeviceProfile(name="gone", kind="android", transport=config))
    assert not check.ok and not check.reachable
    assert "cannot reach adbd" in check.lines()[0]


def test_check_refuses_non_adb_profile() -> None:
    with pytest.raises(HarnessError, match="adb"):
        check_adb_device(DeviceProfile(name="local"))


@pytest.mark.parametrize(
    ("name", "threads"), [("android-generic", 4), ("pixel-7", 4), ("galaxy-s23", 5)]
)
def test_android_profiles_load(name: str, threads: int) -> None:
    profile = load_profile_file(bundled_profiles_dir() / f"{name}.yaml")
    assert profile.name == name and profile.kind == "android"
    assert isinstance(profile.transport, AdbTransportConfig)
    assert profile.transport.mode == "direct"
    assert profile.work_dir == "/data/local/tmp/harness"
    assert profile.runtime.provider == "xnnpack" and profile.runtime.threads == threads


def test_profile_without_address_is_a_clear_error() -> None:
    profile = load_profile_file(bundled_profiles_dir() / "android-generic.yaml")
    assert isinstance(profile.transport, AdbTransportConfig)
    with pytest.raises(HarnessError, match="address"):
        AdbTransport(profile.transport)
