"""AdbTransport in server mode: adbutils -> Debian's adb server -> the ADB peer."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.errors import DeviceConnectionError, DeviceFullError, DeviceTimeoutError
from harness.profiles import AdbTransportConfig
from harness.transport.adb import AdbTransport
from harness.transport.adb_state import read_android_state
from tests.peers.adbd import AdbdPeer
from tests.peers.adbd_support import AdbServer, PeerFactory, free_port

# The ADB peer fixtures (also registered in tests/conftest.py once the lead wires them).

pytestmark = pytest.mark.integration


def _dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def _server_transport(adb_server: AdbServer, peer: AdbdPeer) -> AdbTransport:
    config = AdbTransportConfig(
        kind="adb", mode="server", address=f"127.0.0.1:{peer.port}", server_port=adb_server.port
    )
    return AdbTransport(config, name="phone")


def test_run_push_pull_through_the_adb_server(
    adb_server: AdbServer, adbd_peer: AdbdPeer, tmp_path: Path
) -> None:
    phone = _server_transport(adb_server, adbd_peer)
    result = phone.run(["sh", "-c", "echo out; echo err >&2; exit 6"], timeout_s=10)
    assert (result.exit_code, result.stdout, result.stderr) == (6, "out\n", "err\n")
    quoted = phone.run(["printf", "%s\\n", "a b", "it's"], timeout_s=10)
    assert quoted.stdout.splitlines() == ["a b", "it's"]
    data = os.urandom(2 * 1024 * 1024 + 3)
    (tmp_path / "m.bin").write_bytes(data)
    progress: list[int] = []
    phone.push(
        tmp_path / "m.bin",
        "/data/local/tmp/harness/m.bin",
        timeout_s=30,
        progress=lambda done, total: progress.append(done),
    )
    assert (adbd_peer.options.root / "harness" / "m.bin").read_bytes() == data
    assert progress[-1] == len(data)
    phone.pull("/data/local/tmp/harness/m.bin", tmp_path / "back.bin", timeout_s=30)
    assert (tmp_path / "back.bin").read_bytes() == data
    assert read_android_state(phone)["model"] == "Pixel 7"
    phone.close()


def test_server_mode_timeout_and_device_full(
    adb_server: AdbServer, adbd_peer_factory: PeerFactory, tmp_path: Path
) -> None:
    peer = adbd_peer_factory(free_bytes=0)
    phone = _server_transport(adb_server, peer)
    with pytest.raises(DeviceTimeoutError, match="killed"):
        phone.run(
            ["sh", "-c", "echo $$ > me.pid; exec sleep 20"], timeout_s=1, cwd="/data/local/tmp"
        )
    pid = int((peer.options.root / "me.pid").read_text())
    deadline = time.monotonic() + 5
    while not _dead(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _dead(pid)
    (tmp_path / "m.bin").write_bytes(os.urandom(300_000))
    with pytest.raises(DeviceFullError):
        phone.push(tmp_path / "m.bin", "/data/local/tmp/m.bin", timeout_s=10)
    assert phone.run(["echo", "ok"], timeout_s=10).stdout == "ok\n"
    phone.close()


def test_server_mode_without_a_server_is_a_connection_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # a started adb server would create ~/.android
    config = AdbTransportConfig(kind="adb", mode="server", serial="x", server_port=free_port())
    with pytest.raises(DeviceConnectionError, match="no adb server at "):
        AdbTransport(config).run(["true"], timeout_s=5)
    assert not (tmp_path / ".android").exists()  # harness did not start a server itself
