"""Content-addressed provisioning, on the local device and over a real sshd."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from harness.deploy import (
    DeployedFile,
    bundle_sha256,
    deploy_bundle,
    deploy_file,
    ensure_dir,
    expand_home,
    file_sha256,
    remote_sha256,
)
from harness.errors import ConfigError, DeviceFullError, TransferError
from harness.transport.base import CommandResult, ProgressCallback, Transport
from harness.transport.local import LocalTransport
from harness.transport.ssh import SshTransport
from tests.peers.sshd import SshdServer


class Counting:
    """Wraps a transport and counts its calls (round trips)."""

    def __init__(self, inner: Transport, corrupt_pushes: bool = False) -> None:
        self.inner = inner
        self.description = inner.description
        self.runs = 0
        self.pushes = 0
        self.corrupt_pushes = corrupt_pushes

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        self.runs += 1
        return self.inner.run(argv, timeout_s=timeout_s, cwd=cwd, env=env)

    def push(
        self,
        local_path: Path,
        remote_path: str,
        *,
        timeout_s: float,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.pushes += 1
        self.inner.push(local_path, remote_path, timeout_s=timeout_s, progress=progress)
        if self.corrupt_pushes:  # both transports reach this machine's filesystem
            with open(remote_path, "ab") as handle:
                handle.write(b"bit rot")

    def pull(
        self,
        remote_path: str,
        local_path: Path,
        *,
        timeout_s: float,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.inner.pull(remote_path, local_path, timeout_s=timeout_s, progress=progress)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(params=["local", pytest.param("ssh", marks=pytest.mark.integration)])
def transport(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Transport]:
    if request.param == "local":
        yield LocalTransport()
        return
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    server: SshdServer = request.getfixturevalue("sshd_server")
    ssh = SshTransport(server.transport_config())
    yield ssh
    ssh.close()


def _model(tmp_path: Path, name: str = "model.onnx", size: int = 200_000) -> Path:
    path = tmp_path / "src" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


def test_unchanged_file_costs_one_round_trip(transport: Transport, tmp_path: Path) -> None:
    model = _model(tmp_path)
    work = str(tmp_path / "work dir" / "models")
    first = deploy_file(Counting(transport), model, work, timeout_s=30)
    sha = hashlib.sha256(model.read_bytes()).hexdigest()
    assert first == DeployedFile(
        f"{work}/{sha[:16]}/model.onnx", sha, 200_000, True, first.duration_s
    )
    assert Path(first.remote_path).read_bytes() == model.read_bytes()
    counting = Counting(transport)
    again = deploy_file(counting, model, work, timeout_s=30)
    assert (again.pushed, again.remote_path) == (False, first.remote_path)
    assert (counting.runs, counting.pushes) == (1, 0)
    assert not [p for p in Path(work).rglob("*.part")]


def test_changed_or_tampered_file_is_repushed(transport: Transport, tmp_path: Path) -> None:
    model = _model(tmp_path, "my model's v1.tflite")
    work = str(tmp_path / "work")
    first = deploy_file(transport, model, work, timeout_s=30)
    model.write_bytes(os.urandom(1000))
    second = deploy_file(transport, model, work, timeout_s=30)
    assert second.pushed and second.remote_path != first.remote_path
    Path(second.remote_path).write_bytes(b"tampered on the device")
    counting = Counting(transport)
    third = deploy_file(counting, model, work, timeout_s=30)
    assert third.pushed and counting.pushes == 1
    assert Path(third.remote_path).read_bytes() == model.read_bytes()


def test_corrupted_transfer_is_detected_and_cleaned(transport: Transport, tmp_path: Path) -> None:
    model = _model(tmp_path)
    work = tmp_path / "work"
    with pytest.raises(TransferError, match=r"arrived .* with sha256"):
        deploy_file(Counting(transport, corrupt_pushes=True), model, str(work), timeout_s=30)
    assert [p for p in work.rglob("*") if p.is_file()] == []


def test_remote_sha256_and_ensure_dir(transport: Transport, tmp_path: Path) -> None:
    target = tmp_path / "a dir" / "b"
    ensure_dir(transport, str(target))
    assert target.is_dir()
    (target / "f").write_bytes(b"abc")
    assert remote_sha256(transport, str(target / "f"), 10) == hashlib.sha256(b"abc").hexdigest()
    assert remote_sha256(transport, str(target / "missing"), 10) is None


def test_bundle_is_keyed_by_combined_hash(transport: Transport, tmp_path: Path) -> None:
    files = [_model(tmp_path, "runner.py", 5000), _model(tmp_path, "runner_ort.py", 3000)]
    work = str(tmp_path / "runners")
    first = deploy_bundle(transport, files, work, timeout_s=30)
    assert first.pushed and first.sha256 == bundle_sha256(files)
    assert first.remote_dir == f"{work}/{first.sha256[:16]}"
    assert sorted(p.name for p in Path(first.remote_dir).iterdir()) == [
        "runner.py",
        "runner_ort.py",
    ]
    counting = Counting(transport)
    again = deploy_bundle(counting, files, work, timeout_s=30)
    assert not again.pushed and (counting.runs, counting.pushes) == (1, 0)
    files[1].write_text("print('changed')\n")
    changed = deploy_bundle(transport, files, work, timeout_s=30)
    assert changed.pushed and changed.remote_dir != first.remote_dir


def test_paths_leaving_the_work_dir_are_rejected(tmp_path: Path) -> None:
    model = _model(tmp_path)
    for bad in ("work/../../etc", "..", "a/../b"):
        with pytest.raises(ConfigError, match=r"'\.\.'"):
            deploy_file(LocalTransport(), model, bad, timeout_s=5)
    with pytest.raises(ConfigError):
        remote_sha256(LocalTransport(), "/tmp/../etc/passwd", 5)


def test_expand_home(transport: Transport) -> None:
    home = expand_home(transport, "~/.cache/harness")
    assert home == os.path.expanduser("~/.cache/harness")
    assert expand_home(transport, "/abs/path") == "/abs/path"


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs: a real full filesystem (needs root, as in CI)."""
    mount_point = tmp_path / "tiny fs"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_full_device_raises_device_full_and_leaves_no_temp(
    transport: Transport, tmp_path: Path, tiny_tmpfs: Path
) -> None:
    model = _model(tmp_path, "big.onnx", 3 * 1024 * 1024)
    with pytest.raises(DeviceFullError, match="no space left"):
        deploy_file(transport, model, str(tiny_tmpfs / "models"), timeout_s=30)
    assert [p for p in tiny_tmpfs.rglob("*") if p.is_file()] == []
    small = _model(tmp_path, "small.onnx", 1000)  # the device works again once space is there
    assert deploy_file(transport, small, str(tiny_tmpfs / "models"), timeout_s=30).pushed


def test_local_hash_cache_never_serves_a_racy_file(tmp_path: Path) -> None:
    path = tmp_path / "m.bin"
    path.write_bytes(b"A" * 100)
    stamp = path.stat().st_mtime_ns  # just written: too recent to cache
    assert file_sha256(path) == hashlib.sha256(b"A" * 100).hexdigest()
    path.write_bytes(b"B" * 100)  # same size, and force the same mtime
    os.utime(path, ns=(stamp, stamp))
    assert file_sha256(path) == hashlib.sha256(b"B" * 100).hexdigest()
    old = stamp - 10**10
    os.utime(path, ns=(old, old))
    assert file_sha256(path) == hashlib.sha256(b"B" * 100).hexdigest()
    path.write_bytes(b"C" * 100)
    os.utime(path, ns=(old + 1, old + 1))  # any change of mtime misses the cache
    assert file_sha256(path) == hashlib.sha256(b"C" * 100).hexdigest()
