"""A real OpenSSH ``sshd`` on 127.0.0.1 for tests and benchmarks, plus its pytest fixtures.

Register with ``pytest_plugins = ["tests.peers.sshd"]`` in ``tests/conftest.py``. Importable
without pytest fixtures too (``bench/transfer.py`` uses :class:`SshdProcess`).

Each server gets a temp directory with an ed25519 host key, a client key in
``authorized_keys``, a ``known_hosts`` already holding the host key, and an sshd_config with
``internal-sftp``, ``StrictModes no`` and ``UsePAM no``. It runs as the current user (root in
CI, hence ``PermitRootLogin``).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.profiles import SshTransportConfig

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
_START_TIMEOUT_S = 10.0


class SshdUnavailable(RuntimeError):
    """sshd is not installed or could not start."""


@dataclass(frozen=True)
class SshdServer:
    """How to reach a running test sshd."""

    host: str
    port: int
    user: str
    key_path: Path  # client private key in authorized_keys
    known_hosts_path: Path  # already holds the server's host key
    host_key_line: str  # "ssh-ed25519 AAAA..." of the server
    base_dir: Path  # the server's temp directory (logs, keys, config)

    def transport_config(self, **overrides: object) -> SshTransportConfig:
        """An ``SshTransportConfig`` for this server (``known_hosts``/``key_file`` set)."""
        data: dict[str, object] = {
            "kind": "ssh",
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "key_file": str(self.key_path),
            "known_hosts": str(self.known_hosts_path),
            "use_ssh_config": False,
            "connect_timeout_s": 5.0,
        }
        data.update(overrides)
        return SshTransportConfig.model_validate(data)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> str:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "harness-test", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    kind, blob, *_ = path.with_suffix(".pub").read_text().split()
    return f"{kind} {blob}"


class SshdProcess:
    """One sshd: :meth:`start` (again, on the same port, after :meth:`kill_all`), stop."""

    def __init__(self, base_dir: Path, port: int | None = None) -> None:
        if not SSHD.is_file():
            raise SshdUnavailable(
                f"{SSHD} not found: install Debian's openssh-server "
                "(apt-get install -y openssh-server)"
            )
        self.base_dir = base_dir
        self.port = port or free_port()
        self.user = getpass.getuser()
        base_dir.mkdir(parents=True, exist_ok=True)
        host_key = base_dir / "host_ed25519"
        client_key = base_dir / "client_ed25519"
        self.host_key_line = _keygen(host_key)
        (base_dir / "authorized_keys").write_text(_keygen(client_key) + "\n")
        known = base_dir / "known_hosts"
        known.write_text(f"[127.0.0.1]:{self.port} {self.host_key_line}\n")
        self.config_path = base_dir / "sshd_config"
        self.config_path.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"Port {self.port}",
                    f"HostKey {host_key}",
                    f"AuthorizedKeysFile {base_dir / 'authorized_keys'}",
                    f"PidFile {base_dir / 'sshd.pid'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin yes",
                    f"AllowUsers {self.user}",
                    "AllowTcpForwarding yes",
                    "MaxSessions 50",
                    "MaxStartups 50",
                    "Subsystem sftp internal-sftp",
                    "",
                ]
            )
        )
        self.server = SshdServer(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            key_path=client_key,
            known_hosts_path=known,
            host_key_line=self.host_key_line,
            base_dir=base_dir,
        )
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SshdServer:
        """Start sshd in the foreground (``-D -e``) and wait until it accepts connections."""
        if os.geteuid() == 0:
            # sshd refuses to start as root without its privilege separation directory.
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        log = (self.base_dir / "sshd.log").open("ab")
        self._proc = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(self.config_path)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise SshdUnavailable(f"sshd exited at start: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    if sock.recv(4).startswith(b"SSH-"):
                        return self.server
            except OSError:
                time.sleep(0.05)
        self.kill_all()
        raise SshdUnavailable(f"sshd did not listen on port {self.port}: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        """The end of sshd's log, for failure messages."""
        path = self.base_dir / "sshd.log"
        text = path.read_text(errors="replace") if path.is_file() else ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def kill_all(self) -> None:
        """SIGKILL the listener and every per-connection sshd: connections drop like a crash."""
        if self._proc is None:
            return
        for pid in [*_descendants(self._proc.pid), self._proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._proc.wait()
        self._proc = None

    stop = kill_all


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (sshd's per-connection children call setsid)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _start_or_fail(base_dir: Path, port: int | None = None) -> SshdProcess:
    try:
        proc = SshdProcess(base_dir, port)
        proc.start()
    except SshdUnavailable as exc:
        pytest.fail(f"cannot run the sshd test peer: {exc}", pytrace=False)
    return proc


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshdServer]:
    """A session-wide sshd on 127.0.0.1; fails (not skips) when sshd is missing."""
    base = Path(tempfile.mkdtemp(prefix="harness-sshd-"))
    proc = _start_or_fail(base)
    try:
        yield proc.server
    finally:
        proc.kill_all()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def sshd_factory() -> Iterator[Callable[..., SshdProcess]]:
    """Start private sshds a test may kill and restart; all are killed at the end."""
    started: list[SshdProcess] = []
    bases: list[Path] = []

    def start(port: int | None = None) -> SshdProcess:
        base = Path(tempfile.mkdtemp(prefix="harness-sshd-"))
        bases.append(base)
        started.append(_start_or_fail(base, port))
        return started[-1]

    try:
        yield start
    finally:
        for proc in started:
            proc.kill_all()
        for base in bases:
            shutil.rmtree(base, ignore_errors=True)
