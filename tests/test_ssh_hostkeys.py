"""Host key verification and `trust_host` against a real sshd: nothing is trusted silently."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.errors import AuthenticationError, HostKeyError
from harness.transport.ssh import SshTransport
from harness.transport.ssh_connect import trust_host
from tests.peers.sshd import SshdServer

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _no_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


def _openssh_fingerprint(server: SshdServer) -> str:
    pub = server.base_dir / "host_ed25519.pub"
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(pub)], capture_output=True, text=True, check=True
    )
    return out.stdout.split()[1]


def test_unknown_host_is_refused_and_known_hosts_untouched(
    sshd_server: SshdServer,
    tmp_path: Path,
) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("# nothing yet\n")
    ssh = SshTransport(sshd_server.transport_config(known_hosts=str(known)))
    with pytest.raises(HostKeyError, match="unknown SSH host key") as info:
        ssh.run(["true"], timeout_s=10)
    assert info.value.hint is not None and "harness devices trust" in info.value.hint
    assert _openssh_fingerprint(sshd_server) in str(info.value)
    assert known.read_text() == "# nothing yet\n"
    missing = tmp_path / "absent_known_hosts"
    with pytest.raises(HostKeyError):
        SshTransport(sshd_server.transport_config(known_hosts=str(missing))).connect()
    assert not missing.exists()


@pytest.mark.parametrize("hashed", [True, False])
def test_trust_host_then_connect(
    sshd_server: SshdServer,
    tmp_path: Path,
    hashed: bool,
) -> None:
    known = tmp_path / "ssh" / "known_hosts"
    config = sshd_server.transport_config(known_hosts=str(known))
    fp = trust_host(config, hashed=hashed)
    assert fp == _openssh_fingerprint(sshd_server)
    line = known.read_text()
    assert line.startswith("|1|") if hashed else line.startswith(f"[127.0.0.1]:{sshd_server.port} ")
    # OpenSSH itself finds the entry (hashed or not)
    found = subprocess.run(
        ["ssh-keygen", "-F", f"[127.0.0.1]:{sshd_server.port}", "-f", str(known)],
        capture_output=True,
        text=True,
    )
    assert found.returncode == 0 and "ssh-ed25519" in found.stdout
    with SshTransport(config) as ssh:
        assert ssh.run(["echo", "trusted"], timeout_s=10).stdout == "trusted\n"
    assert trust_host(config, hashed=hashed) == fp  # idempotent
    assert known.read_text() == line


def test_changed_host_key_is_a_loud_error(
    sshd_server: SshdServer,
    tmp_path: Path,
) -> None:
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, blob = other.with_suffix(".pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd_server.port} {kind} {blob}\n")
    before = known.read_bytes()
    config = sshd_server.transport_config(known_hosts=str(known))
    with pytest.raises(HostKeyError, match="HOST KEY CHANGED") as info:
        SshTransport(config).connect()
    assert info.value.hint is not None and "ssh-keygen -R" in info.value.hint
    with pytest.raises(HostKeyError, match="DIFFERENT"):
        trust_host(config)
    assert known.read_bytes() == before


def test_wrong_client_key_is_refused(
    sshd_server: SshdServer,
    tmp_path: Path,
) -> None:
    wrong = tmp_path / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    ssh = SshTransport(sshd_server.transport_config(key_file=str(wrong)))
    with pytest.raises(AuthenticationError, match="refused our credentials") as info:
        ssh.run(["true"], timeout_s=10)
    assert str(wrong) in str(info.value)
