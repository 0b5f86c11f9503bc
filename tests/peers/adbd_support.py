"""Helpers shared by the ADB peer fixtures and the tests: keys, the fixture tree, adb server."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.peers.adbd import AdbdPeer

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "android"


@dataclass(frozen=True)
class AdbKeyPair:
    """An adb key pair on disk, in adb's own formats."""

    private_path: Path
    public_text: str


def make_key_pair(directory: Path) -> AdbKeyPair:
    """Write ``adbkey`` + ``adbkey.pub`` into ``directory`` (as ``adb keygen`` does)."""
    from harness.transport.adb_direct import _create_key

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "adbkey"
    _create_key(path)
    return AdbKeyPair(path, (directory / "adbkey.pub").read_text())


PeerFactory = Callable[..., AdbdPeer]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class AdbServer:
    """An isolated Debian ``adb`` server (own port, own HOME with our key in ~/.android)."""

    port: int
    env: dict[str, str]

    def run(
        self, *args: str, timeout_s: float = 30, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``adb ARGS`` against this server."""
        return subprocess.run(
            ["adb", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=check,
        )
