"""The ADB peer is faithful to Debian's real ``adb`` (server + client, version 29.0.6)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.peers.adbd import AdbdPeer
from tests.peers.adbd_support import AdbServer, PeerFactory

# The ADB peer fixtures (also registered in tests/conftest.py once the lead wires them).

pytestmark = pytest.mark.integration


def _connect(adb_server: AdbServer, peer: AdbdPeer) -> str:
    serial = f"127.0.0.1:{peer.port}"
    result = adb_server.run("connect", serial)
    assert result.stdout.strip() == f"connected to {serial}", result
    return serial


def test_connect_lists_the_fixture_phone(adb_server: AdbServer, adbd_peer: AdbdPeer) -> None:
    serial = _connect(adb_server, adbd_peer)
    listing = adb_server.run("devices", "-l").stdout
    line = next(line for line in listing.splitlines() if line.startswith(serial))
    assert " device " in line
    assert "product:panther" in line and "model:Pixel_7" in line and "device:panther" in line


def test_shell_exit_code_stdout_and_stderr(adb_server: AdbServer, adbd_peer: AdbdPeer) -> None:
    serial = _connect(adb_server, adbd_peer)
    assert adb_server.run("-s", serial, "shell", "exit 3").returncode == 3
    hi = adb_server.run("-s", serial, "shell", "echo", "hi")
    assert (hi.returncode, hi.stdout) == (0, "hi\n")
    both = adb_server.run("-s", serial, "shell", "echo out; echo err >&2; exit 5")
    assert (both.returncode, both.stdout, both.stderr) == (5, "out\n", "err\n")
    # The client chose shell v2 because the banner advertises it.
    assert any(s.startswith("shell,v2,") and s.endswith(":exit 3") for s in adbd_peer.services)


def test_shell_v1_and_exec_out(adb_server: AdbServer, adbd_peer: AdbdPeer) -> None:
    serial = _connect(adb_server, adbd_peer)
    v1 = adb_server.run("-s", serial, "shell", "-x", "echo v1; exit 4")
    assert (v1.returncode, v1.stdout) == (0, "v1\n")  # shell v1 has no exit code
    out = adb_server.run("-s", serial, "exec-out", "getprop ro.product.model")
    assert out.stdout == "Pixel 7\n"
    assert "shell:echo v1; exit 4" in adbd_peer.services


def test_push_pull_multi_megabyte_byte_for_byte(
    adb_server: AdbServer, adbd_peer: AdbdPeer, tmp_path: Path
) -> None:
    serial = _connect(adb_server, adbd_peer)
    data = os.urandom(6 * 1024 * 1024 + 4321)  # not a multiple of the 64 KiB DATA records
    source = tmp_path / "blob.bin"
    source.write_bytes(data)
    pushed = adb_server.run("-s", serial, "push", str(source), "/data/local/tmp/sub/blob.bin")
    assert pushed.returncode == 0, pushed.stderr
    on_device = adbd_peer.options.root / "sub" / "blob.bin"
    assert on_device.read_bytes() == data
    back = tmp_path / "back.bin"
    pulled = adb_server.run("-s", serial, "pull", "/data/local/tmp/sub/blob.bin", str(back))
    assert pulled.returncode == 0, pulled.stderr
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()
    listing = adb_server.run("-s", serial, "shell", "sha256sum /data/local/tmp/sub/blob.bin")
    assert listing.stdout.split()[0] == hashlib.sha256(data).hexdigest()


def test_pull_of_missing_file_fails_cleanly(
    adb_server: AdbServer, adbd_peer: AdbdPeer, tmp_path: Path
) -> None:
    serial = _connect(adb_server, adbd_peer)
    result = adb_server.run("-s", serial, "pull", "/data/local/tmp/nope", str(tmp_path / "x"))
    assert result.returncode != 0
    assert "No such file or directory" in result.stdout + result.stderr


def test_device_full_is_reported_by_adb_push(
    adb_server: AdbServer, adbd_peer_factory: PeerFactory, tmp_path: Path
) -> None:
    peer = adbd_peer_factory(free_bytes=100_000)
    serial = _connect(adb_server, peer)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(1024 * 1024))
    result = adb_server.run("-s", serial, "push", str(source), "/data/local/tmp/big.bin")
    assert result.returncode != 0
    assert "No space left on device" in result.stdout + result.stderr
    assert not (peer.options.root / "big.bin").exists()  # adbd removes the partial file


def test_unknown_key_is_unauthorized(
    adb_server: AdbServer, adbd_peer_factory: PeerFactory, stranger_key_pair: object
) -> None:
    peer = adbd_peer_factory(authorized_keys=[])  # the prompt stays up on the phone
    serial = f"127.0.0.1:{peer.port}"
    result = adb_server.run("connect", serial)
    assert "failed to authenticate" in result.stdout + result.stderr
    assert f"{serial}\tunauthorized" in adb_server.run("devices").stdout


def test_unknown_service_is_refused(adb_server: AdbServer, adbd_peer: AdbdPeer) -> None:
    serial = _connect(adb_server, adbd_peer)
    result = adb_server.run("-s", serial, "root")  # "root:" is not offered by the peer
    assert result.returncode != 0
    assert "closed" in result.stdout + result.stderr
    assert "root:" in adbd_peer.services
