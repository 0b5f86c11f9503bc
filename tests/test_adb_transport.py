"""AdbTransport in direct mode (adb-shell) against the ADB peer."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.errors import (
    AuthenticationError,
    DeviceConnectionError,
    DeviceFullError,
    DeviceTimeoutError,
    TransferError,
)
from harness.profiles import AdbTransportConfig
from harness.transport.adb import AdbTransport
from harness.transport.base import Transport
from tests.peers.adbd import AdbdPeer
from tests.peers.adbd_support import AdbKeyPair, PeerFactory

# The ADB peer fixtures (also registered in tests/conftest.py once the lead wires them).

pytestmark = pytest.mark.integration


def _transport(peer: AdbdPeer, key: AdbKeyPair, **extra: Any) -> AdbTransport:
    config = AdbTransportConfig(
        kind="adb", address=f"127.0.0.1:{peer.port}", key_file=str(key.private_path), **extra
    )
    return AdbTransport(config, name="phone")


@pytest.fixture
def phone(adbd_peer: AdbdPeer, adb_key_pair: AdbKeyPair) -> Iterator[AdbTransport]:
    transport = _transport(adbd_peer, adb_key_pair)
    yield transport
    transport.close()


def test_is_a_transport(phone: AdbTransport) -> None:
    assert isinstance(phone, Transport)


def test_exit_code_stdout_stderr_with_shell_v2(phone: AdbTransport, adbd_peer: AdbdPeer) -> None:
    result = phone.run(["sh", "-c", "echo out; echo err >&2; exit 7"], timeout_s=10)
    assert (result.exit_code, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert "shell_v2" in phone.features
    assert adbd_peer.services[-1].startswith("shell,v2,raw:")


def test_sentinel_exit_code_without_shell_v2(
    adbd_peer_factory: PeerFactory, adb_key_pair: AdbKeyPair
) -> None:
    peer = adbd_peer_factory(features=("cmd",))  # an old phone: shell v1 only
    phone = _transport(peer, adb_key_pair)
    result = phone.run(["sh", "-c", "printf 'no newline'; exit 3"], timeout_s=10)
    assert (result.exit_code, result.stdout) == (3, "no newline")
    ok = phone.run(["echo", "fine"], timeout_s=10)
    assert (ok.exit_code, ok.stdout) == (0, "fine\n")
    assert peer.services[-1].startswith("shell:")
    phone.close()


def test_arguments_with_spaces_quotes_and_env(phone: AdbTransport) -> None:
    args = ["a b", "it's", 'say "hi"', "$HOME", "back\\slash", "semi;colon"]
    result = phone.run(["printf", "%s\\n", *args], timeout_s=10)
    assert result.stdout.splitlines() == args
    env = phone.run(["sh", "-c", 'echo "$GREETING"'], timeout_s=10, env={"GREETING": "x y 'z'"})
    assert env.stdout == "x y 'z'\n"
    cwd = phone.run(["ls"], timeout_s=10, cwd="/data/local/tmp/nope")
    assert cwd.exit_code != 0 and "nope" in cwd.stderr


def _dead(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return True
    return fields[0] == "Z"


def test_timeout_kills_the_command_on_the_device(phone: AdbTransport, adbd_peer: AdbdPeer) -> None:
    script = "echo $$ > me.pid; sleep 30 & echo $! > child.pid; wait"
    started = time.monotonic()
    with pytest.raises(DeviceTimeoutError, match="killed"):
        phone.run(["sh", "-c", script], timeout_s=1, cwd="/data/local/tmp")
    assert time.monotonic() - started < 5
    root = adbd_peer.options.root
    pids = [int((root / name).read_text()) for name in ("me.pid", "child.pid")]
    deadline = time.monotonic() + 5
    while not all(_dead(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_dead(p) for p in pids), pids
    assert phone.run(["echo", "still usable"], timeout_s=10).stdout == "still usable\n"
    assert phone.reconnects == 0  # a timeout is not a dropped connection


def test_push_pull_round_trip_with_progress(
    phone: AdbTransport, adbd_peer: AdbdPeer, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    source = tmp_path / "model.bin"
    source.write_bytes(data)
    seen: list[tuple[int, int]] = []
    remote = '/data/local/tmp/harness/dir with space/it\'s "q".bin'
    phone.push(
        source, remote, timeout_s=30, progress=lambda done, total: seen.append((done, total))
    )
    assert seen[-1] == (len(data), len(data))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    digest = phone.run(["sha256sum", remote], timeout_s=10)
    assert digest.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    back = tmp_path / "back.bin"
    pulled: list[int] = []
    phone.pull(remote, back, timeout_s=30, progress=lambda done, total: pulled.append(done))
    assert back.read_bytes() == data
    assert pulled[-1] == len(data)


def test_pull_missing_file_is_a_transfer_error(phone: AdbTransport, tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="no such file"):
        phone.pull("/data/local/tmp/missing.json", tmp_path / "x.json", timeout_s=10)
    assert not (tmp_path / "x.json").exists()
    assert phone.run(["true"], timeout_s=10).exit_code == 0


@pytest.mark.parametrize("free_bytes", [0, 200_000])
def test_device_full_is_device_full_error(
    adbd_peer_factory: PeerFactory, adb_key_pair: AdbKeyPair, tmp_path: Path, free_bytes: int
) -> None:
    peer = adbd_peer_factory(free_bytes=free_bytes)
    phone = _transport(peer, adb_key_pair)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(2 * 1024 * 1024))
    started = time.monotonic()
    with pytest.raises(DeviceFullError, match="No space left on device"):
        phone.push(source, "/data/local/tmp/big.bin", timeout_s=30)
    assert time.monotonic() - started < 5  # reported promptly, not after a read timeout
    partial = peer.options.root / "big.bin"
    deadline = time.monotonic() + 2  # adbd unlinks the partial file once the stream ends
    while partial.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not partial.exists()
    assert phone.run(["echo", "ok"], timeout_s=10).stdout == "ok\n"
    phone.close()


def test_unknown_key_refused(adbd_peer_factory: PeerFactory, stranger_key_pair: AdbKeyPair) -> None:
    peer = adbd_peer_factory(unknown_key="close")
    phone = _transport(peer, stranger_key_pair)
    with pytest.raises(AuthenticationError, match="refused our ADB key"):
        phone.run(["true"], timeout_s=10)


def test_auth_timeout_tells_the_user_to_accept_the_prompt(
    adbd_peer_factory: PeerFactory, stranger_key_pair: AdbKeyPair
) -> None:
    peer = adbd_peer_factory(unknown_key="prompt")
    phone = _transport(peer, stranger_key_pair, auth_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match="accept the RSA prompt on the phone"):
        phone.run(["true"], timeout_s=10)
    assert time.monotonic() - started < 4


def test_accepted_prompt_then_signature_works(
    adbd_peer_factory: PeerFactory, stranger_key_pair: AdbKeyPair
) -> None:
    peer = adbd_peer_factory(unknown_key="accept", accept_delay_s=0.3)
    first = _transport(peer, stranger_key_pair, auth_timeout_s=5.0)
    assert first.run(["echo", "1"], timeout_s=10).stdout == "1\n"
    first.close()
    second = _transport(peer, stranger_key_pair, auth_timeout_s=0.2)  # no prompt this time
    assert second.run(["echo", "2"], timeout_s=10).stdout == "2\n"
    second.close()


def test_connection_dropped_mid_command_then_reconnect(
    phone: AdbTransport, adbd_peer: AdbdPeer
) -> None:
    assert phone.run(["true"], timeout_s=10).ok
    threading.Timer(0.3, adbd_peer.drop_connections).start()
    started = time.monotonic()
    with pytest.raises(DeviceConnectionError, match="lost the ADB connection"):
        phone.run(["sleep", "5"], timeout_s=10)
    assert time.monotonic() - started < 3
    assert phone.run(["echo", "back"], timeout_s=10).stdout == "back\n"
    assert phone.reconnects == 1
    phone.reconnect()
    assert phone.reconnects == 2


def test_peer_gone_is_a_connection_error(adbd_peer: AdbdPeer, adb_key_pair: AdbKeyPair) -> None:
    phone = _transport(adbd_peer, adb_key_pair)
    assert phone.run(["true"], timeout_s=10).ok
    adbd_peer.stop()
    with pytest.raises(DeviceConnectionError):
        phone.run(["true"], timeout_s=10)
    with pytest.raises(DeviceConnectionError, match="cannot reach adbd"):
        phone.run(["true"], timeout_s=10)


def test_dropped_mid_push(
    adbd_peer_factory: PeerFactory, adb_key_pair: AdbKeyPair, tmp_path: Path
) -> None:
    peer = adbd_peer_factory(drop_after_bytes=1024 * 1024)  # the cable goes at 1 MiB
    phone = _transport(peer, adb_key_pair)
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(4 * 1024 * 1024))
    with pytest.raises(DeviceConnectionError):
        phone.push(source, "/data/local/tmp/big.bin", timeout_s=30)
    partial = peer.options.root / "big.bin"
    deadline = time.monotonic() + 2
    while partial.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not partial.exists()  # no half file left to be mistaken for a model


def test_key_created_on_first_use_with_mode_0600(
    adbd_peer_factory: PeerFactory,
    harness_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.android/adbkey here
    peer = adbd_peer_factory(unknown_key="accept")
    phone = AdbTransport(AdbTransportConfig(kind="adb", address=f"127.0.0.1:{peer.port}"))
    assert phone.run(["true"], timeout_s=10).ok
    phone.close()
    key = harness_home / "config" / "adbkey"
    assert key.is_file() and (harness_home / "config" / "adbkey.pub").is_file()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")


def test_existing_android_key_is_reused(
    adbd_peer_factory: PeerFactory,
    adb_key_pair: AdbKeyPair,
    harness_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    (home / ".android").mkdir(parents=True)
    (home / ".android" / "adbkey").write_bytes(adb_key_pair.private_path.read_bytes())
    monkeypatch.setenv("HOME", str(home))
    peer = adbd_peer_factory(unknown_key="close")  # only the already-trusted key can get in
    phone = AdbTransport(AdbTransportConfig(kind="adb", address=f"127.0.0.1:{peer.port}"))
    assert phone.run(["echo", "trusted"], timeout_s=10).stdout == "trusted\n"
    phone.close()
    assert not (harness_home / "config" / "adbkey").exists()


def test_peer_process_killed_mid_command(adb_key_pair: AdbKeyPair, tmp_path: Path) -> None:
    """The peer as its own process (``python -m tests.peers.adbd``), killed with SIGKILL."""
    import signal
    import subprocess
    import sys

    from tests.peers.adbd_support import FIXTURES_DIR, free_port

    port = free_port()
    pub = tmp_path / "adbkey.pub"
    pub.write_text(adb_key_pair.public_text)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.peers.adbd",
            "--port",
            str(port),
            "--root",
            str(tmp_path / "dev"),
            "--fixtures",
            str(FIXTURES_DIR),
            "--authorized-key",
            str(pub),
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        assert f"listening on 127.0.0.1:{port}" in proc.stdout.readline()
        config = AdbTransportConfig(
            kind="adb", address=f"127.0.0.1:{port}", key_file=str(adb_key_pair.private_path)
        )
        phone = AdbTransport(config)
        assert phone.run(["getprop", "ro.product.model"], timeout_s=10).stdout == "Pixel 7\n"
        threading.Timer(0.3, lambda: os.killpg(proc.pid, signal.SIGKILL)).start()
        with pytest.raises(DeviceConnectionError, match="lost the ADB connection"):
            phone.run(["sleep", "5"], timeout_s=10)
        with pytest.raises(DeviceConnectionError, match="cannot reach adbd"):
            phone.reconnect()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_drop_after_commands_then_one_retry_succeeds(
    adbd_peer_factory: PeerFactory, adb_key_pair: AdbKeyPair
) -> None:
    peer = adbd_peer_factory(drop_after_commands=1)  # unplugged when the 2nd command starts
    phone = _transport(peer, adb_key_pair)
    assert phone.run(["echo", "first"], timeout_s=10).stdout == "first\n"
    with pytest.raises(DeviceConnectionError):
        phone.run(["echo", "second"], timeout_s=10)
    phone.reconnect()
    assert phone.run(["echo", "retried"], timeout_s=10).stdout == "retried\n"
    assert phone.reconnects == 1
    phone.close()


def test_standin_binary_serves_recorded_output(
    adbd_peer_factory: PeerFactory, adb_key_pair: AdbKeyPair
) -> None:
    recorded = "INFO: Inference timings in us: Init: 41023, First inference: 9812, Warmup (avg): 7311.2, Inference (avg): 7002.5\n"
    script = f"#!/bin/sh\necho \"args: $*\" >&2\ncat <<'EOF'\n{recorded}EOF\n"
    peer = adbd_peer_factory(standins={"benchmark_model": script})
    phone = _transport(peer, adb_key_pair)
    result = phone.run(
        ["benchmark_model", "--graph=/data/local/tmp/harness/m.tflite", "--num_threads=4"],
        timeout_s=10,
    )
    assert result.stdout == recorded
    assert result.stderr == f"args: --graph={peer.options.root}/harness/m.tflite --num_threads=4\n"
    phone.close()


def test_phone_without_auth_accepts_any_key(
    adbd_peer_factory: PeerFactory, stranger_key_pair: AdbKeyPair
) -> None:
    peer = adbd_peer_factory(require_auth=False)  # ro.adb.secure=0, e.g. a dev board
    phone = _transport(peer, stranger_key_pair)
    assert phone.run(["getprop", "ro.build.version.sdk"], timeout_s=10).stdout == "34\n"
    phone.close()
