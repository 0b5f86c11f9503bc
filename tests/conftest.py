"""Shared fixtures. Peers (sshd, ADB) live in tests/peers/ and are registered as plugins."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

# Real peers on loopback, as pytest plugins: OpenSSH's sshd and the adbd-compatible ADB peer.
pytest_plugins = ["tests.peers.sshd", "tests.peers.adbd_fixtures"]


@pytest.fixture(autouse=True)
def harness_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own HARNESS_HOME, so no test touches the user's store or profiles."""
    home = tmp_path_factory.mktemp("harness-home")
    monkeypatch.setenv("HARNESS_HOME", str(home))
    monkeypatch.delenv("HARNESS_DB", raising=False)
    yield home
