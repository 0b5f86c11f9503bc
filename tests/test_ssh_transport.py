"""SshTransport against a real OpenSSH sshd on 127.0.0.1 (tests/peers/sshd.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.errors import (
    AuthenticationError,
    DeviceConnectionError,
    DeviceFullError,
    DeviceTimeoutError,
    TransferError,
)
from harness.transport.base import Transport
from harness.transport.ssh import SshTransport
from tests.peers.sshd import SshdProcess, SshdServer

pytestmark = pytest.mark.integration


@pytest.fixture
def ssh(sshd_server: SshdServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[SshTransport]:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    transport = SshTransport(sshd_server.transport_config())
    yield transport
    transport.close()


def _processes_with(marker: str) -> list[int]:
    """PIDs whose command line contains ``marker`` (the sshd runs on this machine)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline and str(os.getpid()) != entry.name:
                found.append(int(entry.name))
    return found


def _wait_until(predicate: Callable[[], bool], timeout_s: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_is_a_transport(ssh: SshTransport) -> None:
    assert isinstance(ssh, Transport)
    assert ssh.description.endswith(f"@127.0.0.1:{ssh.route[-1].rsplit(':', 1)[1]}")


def test_run_captures_exit_code_stdout_stderr(ssh: SshTransport) -> None:
    result = ssh.run(["sh", "-c", "echo out; echo err >&2; exit 7"], timeout_s=10)
    assert (result.exit_code, result.stdout, result.stderr) == (7, "out\n", "err\n")
    assert result.argv == ("sh", "-c", "echo out; echo err >&2; exit 7")
    assert not result.ok
    assert ssh.run(["true"], timeout_s=10).ok


def test_arguments_arrive_literally(ssh: SshTransport) -> None:
    nasty = ["a b", "it's", '"dq"', "$(touch /tmp/harness-pwned)", "x;y", "`id`", "*", "$HOME", ""]
    result = ssh.run(["printf", r"[%s]\n", *nasty], timeout_s=10)
    assert result.stdout.splitlines() == [f"[{a}]" for a in nasty]
    assert not Path("/tmp/harness-pwned").exists()


def test_cwd_and_env_are_quoted(ssh: SshTransport, tmp_path: Path) -> None:
    work = tmp_path / "dir with 'quote' and space"
    work.mkdir()
    result = ssh.run(
        ["sh", "-c", 'pwd; printf "%s\\n" "$HARNESS_X"'],
        timeout_s=10,
        cwd=str(work),
        env={"HARNESS_X": "v a l; $(echo no)"},
    )
    assert result.stdout == f"{work}\nv a l; $(echo no)\n"
    missing = ssh.run(["true"], timeout_s=10, cwd=str(tmp_path / "missing"))
    assert missing.exit_code == 125


def test_one_connection_is_reused(ssh: SshTransport) -> None:
    ssh.run(["true"], timeout_s=10)
    client = ssh._client
    for _ in range(3):
        ssh.run(["true"], timeout_s=10)
    assert ssh._client is client and ssh.reconnects == 0


def test_push_pull_round_trip_byte_exact(ssh: SshTransport, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    remote = tmp_path / "remote dir"
    remote.mkdir()
    seen: list[tuple[int, int]] = []
    ssh.push(
        src, str(remote / "m o'del.bin"), timeout_s=30, progress=lambda d, t: seen.append((d, t))
    )
    assert (remote / "m o'del.bin").read_bytes() == data
    assert seen[-1] == (len(data), len(data)) and len(seen) > 1
    back = tmp_path / "back.bin"
    ssh.pull(str(remote / "m o'del.bin"), back, timeout_s=30)
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_push_into_missing_directory_is_a_transfer_error(ssh: SshTransport, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    with pytest.raises(TransferError) as info:
        ssh.push(src, str(tmp_path / "nope" / "f"), timeout_s=10)
    assert not isinstance(info.value, DeviceFullError)


def test_pull_missing_file_is_a_transfer_error(ssh: SshTransport, tmp_path: Path) -> None:
    with pytest.raises(TransferError):
        ssh.pull(str(tmp_path / "absent"), tmp_path / "out", timeout_s=10)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.part").exists()


def test_push_to_a_full_device_is_device_full(ssh: SshTransport, tmp_path: Path) -> None:
    # /dev/full fails every write with ENOSPC: the kernel's own "disk full", through sshd's
    # sftp server, which reports it as a bare SSH_FX_FAILURE.
    src = tmp_path / "big"
    src.write_bytes(os.urandom(256 * 1024))
    with pytest.raises(DeviceFullError, match="no space left"):
        ssh.push(src, "/dev/full", timeout_s=10)
    assert ssh.run(["true"], timeout_s=10).ok  # the connection survives


def test_transfer_timeout(ssh: SshTransport, tmp_path: Path) -> None:
    src = tmp_path / "big"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    with pytest.raises(DeviceTimeoutError, match=r"push of .* did not finish"):
        ssh.push(src, str(tmp_path / "dst"), timeout_s=1e-6)
    assert ssh.run(["echo", "usable"], timeout_s=10).stdout == "usable\n"


def test_timeout_kills_the_remote_process_group(ssh: SshTransport) -> None:
    marker = "31.4159"
    started = time.monotonic()
    with pytest.raises(DeviceTimeoutError, match="did not finish within 1 s"):
        ssh.run(["sh", "-c", f"sleep {marker}1 & sleep {marker}2; wait"], timeout_s=1)
    assert time.monotonic() - started < 4
    assert _wait_until(lambda: not _processes_with(marker)), _processes_with(marker)
    assert ssh.run(["echo", "alive"], timeout_s=10).stdout == "alive\n"


def test_sshd_killed_mid_command_then_reconnect(
    sshd_factory: Callable[..., SshdProcess],
) -> None:
    proc = sshd_factory()
    ssh = SshTransport(proc.server.transport_config())
    try:
        ssh.connect()
        killer = threading.Timer(0.5, proc.kill_all)
        killer.start()
        started = time.monotonic()
        with pytest.raises(DeviceConnectionError, match="dropped while 'sleep' was running"):
            ssh.run(["sleep", "20.5"], timeout_s=30)
        assert time.monotonic() - started < 5
        killer.join()
        proc.start()  # a new sshd on the same port with the same host key
        ssh.reconnect()
        assert ssh.run(["echo", "back"], timeout_s=10).stdout == "back\n"
        assert ssh.reconnects == 1
    finally:
        ssh.close()


def test_dropped_idle_connection_is_retried_once(
    sshd_factory: Callable[..., SshdProcess],
) -> None:
    proc = sshd_factory()
    ssh = SshTransport(proc.server.transport_config())
    try:
        assert ssh.run(["true"], timeout_s=10).ok
        proc.kill_all()
        proc.start()
        result = ssh.run(["echo", "again"], timeout_s=10)  # reconnects by itself
        assert result.stdout == "again\n" and ssh.reconnects == 1
        proc.kill_all()  # now nobody listens: one reconnect attempt, then a clear error
        started = time.monotonic()
        with pytest.raises(DeviceConnectionError, match="cannot connect"):
            ssh.run(["true"], timeout_s=10)
        assert time.monotonic() - started < 5
    finally:
        ssh.close()


def test_ssh_config_alias_and_proxyjump(
    sshd_server: SshdServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host mypi\n  HostName 127.0.0.1\n  Port {sshd_server.port}\n  User {sshd_server.user}\n"
        f"  IdentityFile {sshd_server.key_path}\n"
        f"Host behind\n  HostName 127.0.0.1\n  Port {sshd_server.port}\n"
        f"  IdentityFile {sshd_server.key_path}\n  ProxyJump mypi\n"
    )
    from harness.profiles import SshTransportConfig

    known = str(sshd_server.known_hosts_path)
    direct = SshTransport(
        SshTransportConfig(kind="ssh", host="mypi", known_hosts=known), ssh_config_path=config
    )
    jumped = SshTransport(
        SshTransportConfig(kind="ssh", host="behind", known_hosts=known), ssh_config_path=config
    )
    try:
        assert direct.run(["echo", "direct"], timeout_s=10).stdout == "direct\n"
        assert direct.route == (f"{sshd_server.user}@127.0.0.1:{sshd_server.port}",)
        assert jumped.run(["echo", "jumped"], timeout_s=10).stdout == "jumped\n"
        assert len(jumped.route) == 2 and len(jumped._jumps) == 1
    finally:
        direct.close()
        jumped.close()


def test_ssh_agent_key(
    sshd_server: SshdServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        assert _wait_until(sock.exists)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sshd_server.key_path)], env=env, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/id_* to fall back on
        ssh = SshTransport(sshd_server.transport_config(key_file=None))
        try:
            assert ssh.run(["echo", "agent"], timeout_s=10).stdout == "agent\n"
        finally:
            ssh.close()
        monkeypatch.delenv("SSH_AUTH_SOCK")
        with pytest.raises(AuthenticationError):
            SshTransport(sshd_server.transport_config(key_file=None)).connect()
    finally:
        agent.terminate()
        agent.wait()


def test_password_env_must_be_set(
    sshd_server: SshdServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HARNESS_TEST_SSH_PASSWORD", raising=False)
    config = sshd_server.transport_config(password_env="HARNESS_TEST_SSH_PASSWORD")
    with pytest.raises(AuthenticationError, match=r"\$HARNESS_TEST_SSH_PASSWORD"):
        SshTransport(config).connect()


def test_missing_sshd_is_a_clear_failure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import tests.peers.sshd as peer

    monkeypatch.setattr(peer, "SSHD", tmp_path / "no-sshd")
    with pytest.raises(peer.SshdUnavailable, match="apt-get install -y openssh-server"):
        peer.SshdProcess(tmp_path / "base")
    with pytest.raises(pytest.fail.Exception, match="cannot run the sshd test peer"):
        peer._start_or_fail(tmp_path / "base")
