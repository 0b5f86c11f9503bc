"""Preparation on an "Android phone" (the ADB peer): screen off, battery unplug, CPU affinity.

The peer cannot run Android's ``input`` or the battery service, and this 2-core host cannot run
``taskset f0``; :func:`android_standins` gives the peer stand-ins with the real tools' output
(Android 14) that log every call to ``standins.log`` in the peer's ``/data/local/tmp``, so tests
assert that each change was applied *and* restored. ``tests/test_bench_adb.py`` uses them too.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.prepare import BatteryUnplug, DevicePreparation, ScreenOff
from harness.profiles import AdbTransportConfig, DeviceProfile, PrepareOptions
from harness.transport.adb import AdbTransport
from tests.peers.adbd import AdbdPeer
from tests.peers.adbd_support import AdbKeyPair, PeerFactory

pytestmark = pytest.mark.integration
LOG = "standins.log"

# `input`: KEYCODE_SLEEP/WAKEUP/POWER change the wakefulness that `dumpsys power` reports.
_INPUT = r"""#!/bin/sh
echo "input $*" >> "$HARNESS_PEER_ROOT/standins.log"
state="$HARNESS_PEER_ROOT/.wakefulness"
now=$(cat "$state" 2>/dev/null || echo Awake)
[ "$1" = keyevent ] || { echo "Error: Unknown command: $1" >&2; exit 1; }
case "$2" in
  KEYCODE_SLEEP|223) echo Asleep > "$state" ;;
  KEYCODE_WAKEUP|224) echo Awake > "$state" ;;
  KEYCODE_POWER|26) if [ "$now" = Awake ]; then echo Asleep; else echo Awake; fi > "$state" ;;
  *) ;;
esac
"""

# `dumpsys`: power and battery follow the stand-in state; other services come from fixtures.
_DUMPSYS = r"""#!/bin/sh
root=$HARNESS_PEER_ROOT
f="$HARNESS_PEER_FIXTURES/dumpsys/$1.txt"
case "$1" in
  power)
    w=$(cat "$root/.wakefulness" 2>/dev/null || echo Awake)
    sed "s/^  mWakefulness=.*/  mWakefulness=$w/" "$f"
    exit 0 ;;
  battery)
    echo "dumpsys $*" >> "$root/standins.log"
    case "$2" in
      unplug) echo stopped > "$root/.battery"; exit 0 ;;
      reset) rm -f "$root/.battery"; exit 0 ;;
      "") ;;
      *) echo "Unknown option: $2" >&2; exit 255 ;;
    esac
    usb=true; [ -f "$root/.battery" ] && usb=false
    echo "Current Battery Service state:"
    [ -f "$root/.battery" ] && echo "  (UPDATES STOPPED -- use 'reset' to restart)"
    cat <<EOF
  AC powered: false
  USB powered: $usb
  Wireless powered: false
  Dock powered: false
  Max charging current: 500000
  Max charging voltage: 5000000
  Charge counter: 3266000
  status: 2
  health: 2
  present: true
  level: 78
  scale: 100
  voltage: 4160
  temperature: 291
  technology: Li-ion
  Charging state: 1
  Charging policy: 1
  Capacity level: 3
EOF
    exit 0 ;;
esac
if [ -f "$f" ]; then cat "$f"; else echo "Can't find service: $1" >&2; fi
"""

# toybox `taskset [-ap] MASK COMMAND...`: log the mask, run the command unpinned.
_TASKSET = r"""#!/bin/sh
echo "taskset $*" >> "$HARNESS_PEER_ROOT/standins.log"
case "$1" in ""|*[!0-9a-fA-Fx]*) echo "taskset: bad mask '$1'" >&2; exit 1 ;; esac
shift
exec "$@"
"""


def android_standins() -> dict[str, str]:
    """``PeerOptions.standins`` for ``input``, ``dumpsys`` (power/battery) and ``taskset``."""
    return {"input": _INPUT, "dumpsys": _DUMPSYS, "taskset": _TASKSET}


def standin_log(peer: AdbdPeer) -> list[str]:
    """What the stand-ins were asked, in order."""
    path = peer.options.root / LOG
    return path.read_text().splitlines() if path.exists() else []


def _phone(peer: AdbdPeer, key: AdbKeyPair, **prepare: Any) -> tuple[DeviceProfile, AdbTransport]:
    config = AdbTransportConfig(
        kind="adb", address=f"127.0.0.1:{peer.port}", key_file=str(key.private_path)
    )
    profile = DeviceProfile(
        name="phone", kind="android", transport=config, prepare=PrepareOptions(**prepare)
    )
    return profile, AdbTransport(config, name="phone")


def test_screen_off_and_battery_unplug_are_applied_and_restored(
    adbd_peer_factory: PeerFactory, adb_key_pair: AdbKeyPair
) -> None:
    peer = adbd_peer_factory(standins=android_standins())
    profile, phone = _phone(peer, adb_key_pair, screen_off=True, battery_unplug=True)
    prep = DevicePreparation.for_profile(profile, phone)
    assert ScreenOff().show(phone) == "screen on"
    assert BatteryUnplug().show(phone) == "powered by USB; level 78%"
    prep.apply()
    assert prep.notes == []
    state = prep.host_observed_state()
    assert state["screen_on"] is False  # read after preparation: what the jobs ran with
    assert state["preparation"] == {
        "screen_off": "screen off",
        "battery_unplug": "powered by battery; level 78%",
    }
    assert standin_log(peer)[-1] == "dumpsys battery"  # the show() above
    prep.restore()
    writes = [line for line in standin_log(peer) if line != "dumpsys battery"]
    assert writes == [
        "input keyevent KEYCODE_SLEEP",
        "dumpsys battery unplug",
        "dumpsys battery reset",  # restored in reverse order
        "input keyevent KEYCODE_WAKEUP",
    ]
    assert ScreenOff().show(phone) == "screen on"
    phone.close()


def test_a_dark_screen_is_left_dark(
    adbd_peer_factory: PeerFactory, adb_key_pair: AdbKeyPair
) -> None:
    peer = adbd_peer_factory(standins=android_standins())
    (peer.options.root / ".wakefulness").write_text("Asleep\n")
    profile, phone = _phone(peer, adb_key_pair, screen_off=True)
    prep = DevicePreparation.for_profile(profile, phone)
    prep.apply()
    prep.restore()
    assert standin_log(peer) == []  # neither slept nor woken
    assert ScreenOff().show(phone) == "screen off"
    phone.close()


@pytest.mark.parametrize(("choice", "mask"), [("big", "f0"), ("prime", "c0"), ("0x3", "3")])
def test_affinity_mask_from_the_phone_s_frequencies(
    adbd_peer_factory: PeerFactory, adb_key_pair: AdbKeyPair, choice: str, mask: str
) -> None:
    # Fixture: cpu0-3 1.803 GHz, cpu4-5 2.348 GHz, cpu6-7 2.85 GHz.
    peer = adbd_peer_factory(standins=android_standins())
    profile, phone = _phone(peer, adb_key_pair, affinity=choice)
    prep = DevicePreparation.for_profile(profile, phone)
    assert prep.command_prefix() == []  # nothing before apply
    prep.apply()
    assert prep.command_prefix() == ["taskset", mask]
    result = phone.run([*prep.command_prefix(), "echo", "pinned"], timeout_s=10)
    assert result.stdout == "pinned\n"
    assert standin_log(peer) == [f"taskset {mask} echo pinned"]
    assert prep.host_observed_state()["preparation"]["affinity"].endswith(f"(mask 0x{mask})")
    prep.restore()
    assert prep.command_prefix() == []
    phone.close()


def test_unavailable_operations_become_notes(adbd_peer: AdbdPeer, adb_key_pair: AdbKeyPair) -> None:
    # The plain peer has no `input` and no battery service (dumpsys: "Can't find service").
    profile, phone = _phone(adbd_peer, adb_key_pair, screen_off=True, battery_unplug=True)
    prep = DevicePreparation.for_profile(profile, phone)
    prep.apply()
    assert prep.notes == [
        "screen_off: not available on phone",
        "battery_unplug: not available on phone",
    ]
    assert prep.applied == []
    assert "preparation" not in prep.host_observed_state()
    phone.close()


def test_mask_naming_no_online_core_is_noted(
    adbd_peer_factory: PeerFactory, adb_key_pair: AdbKeyPair
) -> None:
    peer = adbd_peer_factory(standins=android_standins())
    profile, phone = _phone(peer, adb_key_pair, affinity="0x100")  # cpu8: the Pixel 7 has 8
    prep = DevicePreparation.for_profile(profile, phone)
    prep.apply()
    [note] = prep.notes
    assert (
        note.startswith("affinity: could not apply") and "mask 0x100 names no online core" in note
    )
    assert prep.command_prefix() == []
    phone.close()
