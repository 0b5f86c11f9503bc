"""The full bench path to an "Android phone": the ADB peer on 127.0.0.1, driven through the CLI.

As a user would: ``harness devices add/check``, then ``harness bench`` of the demo ONNX and
TFLite models with an evaluation set, in direct mode (adb-shell) and in server mode (Debian's
``adb`` server connected to the peer); then what goes wrong on phones: a cable pulled mid-run, a
full phone, and preparation (screen off, battery unplug, taskset on the big/prime cores).

The peer runs the runner with this venv's python (onnxruntime + LiteRT) and answers ``/sys``,
``getprop`` and ``dumpsys`` from the Pixel 7 fixture tree. ``input``, ``dumpsys battery`` and
``taskset`` (whose masks would not fit this 2-core host) are stand-ins from
``tests/peers/android_standins.py``: realistic output, and a log of what they were asked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.cli.devices import make_adb_profile
from harness.demo import demo_model_paths, digits_eval_path
from harness.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, ConfigError
from harness.profiles import AdbTransportConfig, PrepareOptions, find_profile, save_user_profile
from harness.results.records import RunRecord
from harness.results.store import ResultStore
from tests.peers.adbd import AdbdPeer
from tests.peers.adbd_support import AdbKeyPair, AdbServer, PeerFactory, free_port
from tests.test_prepare_android import android_standins, standin_log

QUICK = ["--runs", "10", "--warmup", "2", "--min-duration-s", "0.05"]
ONNX = demo_model_paths()["digits_mlp.onnx"]
TFLITE = demo_model_paths()["digits_mlp.tflite"]


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _add_direct(
    name: str, peer: AdbdPeer, key: AdbKeyPair, cwd: Path, *more: str
) -> subprocess.CompletedProcess[str]:
    return harness(
        "devices", "add", name, "--adb", f"127.0.0.1:{peer.port}",
        "--profile", "android-generic", "--adb-key", str(key.private_path), *more, cwd=cwd,
    )  # fmt: skip


def _save_direct(name: str, peer: AdbdPeer, key: AdbKeyPair, **prepare: Any) -> None:
    """What `devices add NAME --adb ... --no-check` writes, without a CLI start-up (~3 s here)."""
    made = make_adb_profile(
        name, find_profile("android-generic"), address=f"127.0.0.1:{peer.port}",
        key_file=str(key.private_path),
    )  # fmt: skip
    save_user_profile(made.model_copy(update={"prepare": PrepareOptions(**prepare)}))


def _set_prepare(harness_home: Path, name: str, prepare: dict[str, Any]) -> None:
    """Edit the user's profile as a user would: add a ``prepare:`` block."""
    path = harness_home / "config" / "devices" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    data["prepare"] = prepare
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _bench(
    cwd: Path, db: Path, device: str, *models: Path, eval_set: bool = True
) -> subprocess.CompletedProcess[str]:
    extra = ["--eval", str(digits_eval_path())] if eval_set else []
    return harness(
        "bench", *map(str, models), "--device", device, "--threads", "1", *extra, *QUICK,
        "--db", str(db), cwd=cwd,
    )  # fmt: skip


def _latest(db: Path) -> RunRecord:
    store = ResultStore(f"sqlite:///{db}")
    return store.load_run(store.latest_run_id() or "")


def _assert_ok_on_pixel(record: RunRecord, device: str, count: int) -> None:
    assert len(record.jobs) == count
    for job in record.jobs:
        assert job.status == "ok", job.error
        assert job.spec.device_name == device
        assert len(job.samples_ms) >= 10
        assert job.accuracy is not None and job.accuracy >= 0.95
        observed = job.device_state["host_observed"]
        assert (observed["model"], observed["sdk"], observed["soc"]) == ("Pixel 7", 34, "GS201")
        assert observed["battery"]["level_pct"] is not None


@pytest.mark.integration
def test_add_check_prepare_bench_report_direct(
    adbd_peer_factory: PeerFactory, adb_key_pair: AdbKeyPair, tmp_path: Path, harness_home: Path
) -> None:
    adbd_peer = adbd_peer_factory(standins=android_standins())
    added = _add_direct("pixel7", adbd_peer, adb_key_pair, tmp_path)
    assert added.returncode == EXIT_OK, added.stdout + added.stderr
    profile = yaml.safe_load((harness_home / "config" / "devices" / "pixel7.yaml").read_text())
    assert profile["kind"] == "android" and profile["extends"] == "android-generic"
    assert profile["transport"]["address"] == f"127.0.0.1:{adbd_peer.port}"
    assert profile["transport"]["key_file"] == str(adb_key_pair.private_path)
    prepare = {"screen_off": True, "battery_unplug": True, "affinity": "big"}
    _set_prepare(harness_home, "pixel7", prepare)
    checked = harness("devices", "check", "pixel7", cwd=tmp_path)
    assert checked.returncode == EXIT_OK, checked.stdout + checked.stderr
    assert "Google Pixel 7" in checked.stdout and "SDK 34" in checked.stdout
    assert "big cores [4, 5, 6, 7]" in checked.stdout
    # The check shows what preparation would do, and does not do it.
    assert "prepare screen_off: screen on" in checked.stdout
    assert "prepare battery_unplug: powered by USB; level 78%" in checked.stdout
    assert "prepare affinity: big cores [4, 5, 6, 7] (mask 0xf0)" in checked.stdout
    assert standin_log(adbd_peer) == ["dumpsys battery", "dumpsys battery"]  # reads only

    db = tmp_path / "results.sqlite"
    proc = _bench(tmp_path, db, "pixel7", ONNX, TFLITE)
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    record = _latest(db)
    _assert_ok_on_pixel(record, "pixel7", 2)
    assert record.notes == ()
    # Prepared once for the session, restored at its end; both runners ran under taskset f0
    # (big = the clusters faster than the 1.803 GHz one: cpu4-7, derived from the fixture).
    calls = [c for c in standin_log(adbd_peer) if c != "dumpsys battery"]
    assert calls[:2] == ["input keyevent KEYCODE_SLEEP", "dumpsys battery unplug"]
    assert calls[-2:] == ["dumpsys battery reset", "input keyevent KEYCODE_WAKEUP"]
    runs = [c for c in calls[2:-2] if "harness_runner.py" in c]
    assert len(runs) == 2 and all(c.startswith("taskset f0 python3 ") for c in runs)
    observed = record.jobs[0].device_state["host_observed"]
    assert observed["screen_on"] is False
    assert observed["preparation"]["affinity"] == "big cores [4, 5, 6, 7] (mask 0xf0)"
    # Both models landed content-addressed in the work dir (the peer's /data/local/tmp).
    root = adbd_peer.options.root
    pushed = {p.name for p in root.glob("harness/models/*/*")}
    assert {"digits_mlp.onnx", "digits_mlp.tflite"} <= pushed
    html = (tmp_path / "reports" / record.run_id / "index.html").read_text()
    for fact in ("pixel7", "Google Pixel 7", "GS201", "SDK 34", "Android thermal status", "0xf0"):
        assert fact in html

    # A second bench of the unchanged model pushes nothing: no sync: service is opened.
    model_file = next(root.glob("harness/models/*/digits_mlp.onnx"))
    inode = model_file.stat().st_ino
    syncs_before = adbd_peer.services.count("sync:")
    again = _bench(tmp_path, db, "pixel7", ONNX, eval_set=False)
    assert again.returncode == EXIT_OK, again.stdout + again.stderr
    assert adbd_peer.services.count("sync:") == syncs_before
    assert syncs_before > 0 and model_file.stat().st_ino == inode
    assert _latest(db).jobs[0].status == "ok"


@pytest.mark.integration
def test_bench_through_the_adb_server(
    adb_server: AdbServer, adbd_peer_factory: PeerFactory, tmp_path: Path, harness_home: Path
) -> None:
    peer = adbd_peer_factory(standins=android_standins())
    added = harness(
        "devices", "add", "pixel7-usb", "--adb", f"127.0.0.1:{peer.port}", "--adb-mode", "server",
        "--adb-server", f"127.0.0.1:{adb_server.port}", cwd=tmp_path,
    )  # fmt: skip
    assert added.returncode == EXIT_OK, added.stdout + added.stderr
    assert "Google Pixel 7" in added.stdout
    transport = yaml.safe_load(
        (harness_home / "config" / "devices" / "pixel7-usb.yaml").read_text()
    )["transport"]
    assert (transport["mode"], transport["server_port"]) == ("server", adb_server.port)
    _set_prepare(harness_home, "pixel7-usb", {"affinity": "prime"})
    db = tmp_path / "results.sqlite"
    proc = _bench(tmp_path, db, "pixel7-usb", ONNX, TFLITE)
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    record = _latest(db)
    _assert_ok_on_pixel(record, "pixel7-usb", 2)
    runs = [c for c in standin_log(peer) if "harness_runner.py" in c]
    assert len(runs) == 2 and all(c.startswith("taskset c0 ") for c in runs)  # cpu6-7, 2.85 GHz
    # The peer saw adb's own services too: the run really went through the server.
    assert any(s.startswith("shell,v2,raw:") for s in peer.services)
    devices = adb_server.run("devices").stdout
    assert f"127.0.0.1:{peer.port}\tdevice" in devices


@pytest.mark.integration
def test_connection_dropped_mid_job_is_retried_once(
    adbd_peer_factory: PeerFactory, adb_key_pair: AdbKeyPair, tmp_path: Path, harness_home: Path
) -> None:
    # A fresh bench with screen_off opens 10 shell commands before the runner (mkdir, `command
    # -v input`, state, sha checks, commits, ...): the cable goes when the runner's command
    # opens, and the job runs again on a new connection. (This peer has no `input`: screen_off
    # becomes a note, not a failure.)
    peer = adbd_peer_factory(drop_after_commands=10)
    _save_direct("flaky", peer, adb_key_pair, screen_off=True)
    db = tmp_path / "results.sqlite"
    proc = _bench(tmp_path, db, "flaky", TFLITE)
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    [job] = _latest(db).jobs
    assert job.status == "ok" and job.accuracy is not None and job.accuracy >= 0.95
    notes = _latest(db).notes
    assert any(n.startswith("job 0: connection dropped") and "retried once" in n for n in notes)
    assert "device flaky: screen_off: not available on flaky" in notes
    assert peer.connections_accepted >= 2
    runner_opens = [s for s in peer.services if "/harness_runner.py --model" in s]
    assert len(runner_opens) == 2  # the dropped one, then the retry
    assert "connection dropped" in proc.stdout  # the CLI prints the run's notes


@pytest.mark.integration
def test_full_phone_fails_the_job_and_keeps_earlier_runs(
    adbd_peer_factory: PeerFactory, adb_key_pair: AdbKeyPair, tmp_path: Path
) -> None:
    good = adbd_peer_factory()
    full = adbd_peer_factory(free_bytes=0)
    _save_direct("roomy", good, adb_key_pair)
    _save_direct("full", full, adb_key_pair)
    db = tmp_path / "results.sqlite"
    first = _bench(tmp_path, db, "roomy", TFLITE, eval_set=False)
    assert first.returncode == EXIT_OK, first.stdout + first.stderr
    earlier = _latest(db)

    proc = _bench(tmp_path, db, "full", TFLITE, eval_set=False)
    assert proc.returncode in (EXIT_ERROR, EXIT_PARTIAL)
    assert "the device is full" in proc.stderr and "No space left on device" in proc.stderr
    [job] = _latest(db).jobs
    assert job.status == "failed" and "the device is full" in (job.error or "")
    assert not list(full.options.root.glob("harness/**/*.py"))  # nothing half-written kept
    store = ResultStore(f"sqlite:///{db}")
    assert len(store.list_runs()) == 2
    kept = store.load_run(earlier.run_id)
    assert [j.status for j in kept.jobs] == ["ok"]
    assert kept.jobs[0].samples_ms == earlier.jobs[0].samples_ms


@pytest.mark.integration
def test_check_of_an_unreachable_phone_exits_1(adb_key_pair: AdbKeyPair, tmp_path: Path) -> None:
    made = make_adb_profile(
        "gone", find_profile("android-generic"), address=f"127.0.0.1:{free_port()}",
        key_file=str(adb_key_pair.private_path),
    )  # fmt: skip
    save_user_profile(made)
    proc = harness("devices", "check", "gone", cwd=tmp_path)
    assert proc.returncode == EXIT_ERROR
    assert "unreachable" in proc.stdout and "127.0.0.1" in proc.stdout


def test_adb_profiles_from_the_command_line_options() -> None:
    base = find_profile("android-generic")
    wifi = make_adb_profile("p", base, address="192.168.1.50")
    assert (wifi.kind, wifi.extends, wifi.transport.kind) == ("android", "android-generic", "adb")
    assert isinstance(wifi.transport, AdbTransportConfig)
    assert (wifi.transport.mode, wifi.transport.address) == ("direct", "192.168.1.50:5555")
    assert wifi.transport.auth_timeout_s == 30  # kept from the bundled profile
    assert wifi.runtime == base.runtime and wifi.work_dir == "/data/local/tmp/harness"
    usb = make_adb_profile("u", base, serial="28161FDH2000QK", server="127.0.0.1:5038")
    assert isinstance(usb.transport, AdbTransportConfig)
    assert (usb.transport.mode, usb.transport.serial, usb.transport.server_port) == (
        "server", "28161FDH2000QK", 5038,
    )  # fmt: skip
    for bad in ({"address": "host:port"}, {"address": "h:1", "mode": "wifi"},
                {"serial": "s", "server": "5037"}):  # fmt: skip
        with pytest.raises(ConfigError):
            make_adb_profile("x", base, **bad)
