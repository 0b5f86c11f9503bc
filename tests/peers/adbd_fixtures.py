"""pytest fixtures for the ADB peer and an isolated Debian ``adb`` server.

Register with ``pytest_plugins = ["tests.peers.adbd_fixtures"]`` in ``tests/conftest.py``, or
import the fixtures into a test module.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.adbd import AdbdPeer, PeerOptions
from tests.peers.adbd_support import (
    FIXTURES_DIR,
    AdbKeyPair,
    AdbServer,
    PeerFactory,
    free_port,
    make_key_pair,
)


@pytest.fixture(scope="session")
def adb_key_pair(tmp_path_factory: pytest.TempPathFactory) -> AdbKeyPair:
    """A key pair the default peer trusts (one per test session: RSA generation is slow)."""
    return make_key_pair(tmp_path_factory.mktemp("adbkey"))


@pytest.fixture(scope="session")
def stranger_key_pair(tmp_path_factory: pytest.TempPathFactory) -> AdbKeyPair:
    """A key pair no peer trusts unless told to."""
    return make_key_pair(tmp_path_factory.mktemp("strangerkey"))


@pytest.fixture
def adbd_peer_factory(tmp_path: Path, adb_key_pair: AdbKeyPair) -> Iterator[PeerFactory]:
    """``make(**PeerOptions fields) -> started AdbdPeer``; all are stopped after the test.

    Defaults: root ``tmp_path/device`` (stands for /data/local/tmp), the Pixel 7 fixture tree,
    and ``adb_key_pair`` authorized.
    """
    peers: list[AdbdPeer] = []

    def make(**overrides: Any) -> AdbdPeer:
        root = tmp_path / f"device{len(peers)}"
        root.mkdir()
        options: dict[str, Any] = {
            "root": root,
            "fixtures": FIXTURES_DIR,
            "authorized_keys": [adb_key_pair.public_text],
        }
        options.update(overrides)
        peer = AdbdPeer(PeerOptions(**options)).start()
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.stop()


@pytest.fixture
def adbd_peer(adbd_peer_factory: PeerFactory) -> AdbdPeer:
    """A default peer (auth on, Pixel 7 fixtures, ``adb_key_pair`` trusted)."""
    return adbd_peer_factory()


@pytest.fixture
def adb_server(tmp_path: Path, adb_key_pair: AdbKeyPair) -> Iterator[AdbServer]:
    """A private ``adb`` server using ``adb_key_pair``; killed after the test."""
    if shutil.which("adb") is None:
        pytest.fail("Debian's adb is required for these tests: apt-get install adb")
    home = tmp_path / "adb-home"
    (home / ".android").mkdir(parents=True)
    shutil.copy(adb_key_pair.private_path, home / ".android" / "adbkey")
    (home / ".android" / "adbkey.pub").write_text(adb_key_pair.public_text)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TERM")}
    env.update(HOME=str(home), ANDROID_ADB_SERVER_PORT=str(free_port()), ADB_MDNS="0")
    server = AdbServer(port=int(env["ANDROID_ADB_SERVER_PORT"]), env=env)
    server.run("start-server", check=True)
    try:
        yield server
    finally:
        server.run("kill-server")
