"""`devices add/check` library functions, the transport factory and the bundled SSH profiles."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import onnxruntime
import pytest

from harness.errors import ConfigError
from harness.paths import bundled_profiles_dir
from harness.profiles import DeviceProfile, SshTransportConfig, load_profile_file
from harness.transport.factory import open_transport
from harness.transport.local import LocalTransport
from harness.transport.ssh import SshTransport
from harness.transport.ssh_connect import parse_ssh_target
from harness.transport.ssh_devices import (
    check_device,
    check_ssh_device,
    make_ssh_profile,
    throttle_flags,
)
from tests.peers.sshd import SshdServer


@pytest.mark.parametrize(
    ("name", "threads"),
    [("raspberry-pi-5", 4), ("raspberry-pi-4", 4), ("linux-arm64", None)],
)
def test_bundled_ssh_profiles_load(name: str, threads: int | None) -> None:
    profile = load_profile_file(bundled_profiles_dir() / f"{name}.yaml")
    assert profile.name == name and profile.kind == "linux"
    assert isinstance(profile.transport, SshTransportConfig)
    assert profile.runtime.threads == threads and profile.runtime.provider == "xnnpack"
    assert profile.work_dir == "~/.cache/harness"


def test_make_ssh_profile_from_a_bundled_one() -> None:
    base = load_profile_file(bundled_profiles_dir() / "raspberry-pi-5.yaml")
    profile = make_ssh_profile("pi5", "alice@192.168.1.40:2222", base, key_file="~/.ssh/pi")
    assert profile.name == "pi5" and profile.extends == "raspberry-pi-5"
    assert profile.transport == SshTransportConfig(
        kind="ssh", host="192.168.1.40", user="alice", port=2222, key_file="~/.ssh/pi"
    )
    assert profile.runtime == base.runtime and profile.kind == "linux"
    plain = make_ssh_profile("board", "board.local")
    assert isinstance(plain.transport, SshTransportConfig)
    assert (plain.transport.host, plain.transport.user, plain.transport.port) == (
        "board.local",
        None,
        None,
    )


@pytest.mark.parametrize("bad", ["pi@", "@host", "pi@host:port", "pi@host:99999", "a b@c d"])
def test_bad_ssh_targets_are_config_errors(bad: str) -> None:
    with pytest.raises(ConfigError):
        make_ssh_profile("x", bad)


def test_parse_ssh_target_ipv6() -> None:
    assert parse_ssh_target("pi@[fe80::1]:2200") == ("pi", "fe80::1", 2200)
    assert parse_ssh_target("fe80::1") == (None, "fe80::1", None)


def test_throttle_flags() -> None:
    assert throttle_flags("throttled=0x0") == ()
    assert throttle_flags("0x50005") == (
        "under-voltage now",
        "throttled now",
        "under-voltage has occurred",
        "throttling has occurred",
    )


def _ssh_profile(server: SshdServer, **fields: object) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {"name": "loopback", "kind": "linux", "transport": server.transport_config(), **fields}
    )


@pytest.mark.integration
def test_check_reports_python_runtimes_disk(
    sshd_server: SshdServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    profile = _ssh_profile(sshd_server, python=sys.executable, work_dir=str(tmp_path / "w"))
    check = check_ssh_device(profile)
    assert check.reachable, check.problems
    assert check.python_version == platform.python_version()
    assert ("onnxruntime", onnxruntime.__version__) in check.runtimes
    assert check.free_disk_bytes is not None and check.free_disk_bytes > 0
    assert check.work_dir == str(tmp_path / "w")
    assert check.os is not None and platform.machine() in check.os
    assert check.transport == f"{sshd_server.user}@127.0.0.1:{sshd_server.port}"


@pytest.mark.integration
def test_check_lists_what_is_missing(
    sshd_server: SshdServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    profile = _ssh_profile(sshd_server, python="python-does-not-exist")
    with SshTransport(sshd_server.transport_config()) as ssh:
        check = check_device(ssh, profile)
    assert check.reachable and not check.ok
    assert check.python_version is None
    assert any("python-does-not-exist not found" in p for p in check.problems)


@pytest.mark.integration
def test_check_unreachable_device_explains_why(
    sshd_server: SshdServer,
    tmp_path: Path,
) -> None:
    profile = _ssh_profile(sshd_server)
    untrusted = profile.model_copy(
        update={"transport": sshd_server.transport_config(known_hosts=str(tmp_path / "kh"))}
    )
    check = check_ssh_device(untrusted)
    assert not check.reachable and not check.ok
    assert "harness devices trust loopback" in check.problems[0]


@pytest.mark.integration
def test_open_transport_picks_the_implementation(
    sshd_server: SshdServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    assert isinstance(open_transport(DeviceProfile(name="here")), LocalTransport)
    ssh = open_transport(_ssh_profile(sshd_server))
    try:
        assert isinstance(ssh, SshTransport) and ssh._client is not None  # connected eagerly
    finally:
        ssh.close()
