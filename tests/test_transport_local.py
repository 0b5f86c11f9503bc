"""The local transport: exit codes, timeouts that kill the process group, copies."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.errors import DeviceTimeoutError, RemoteCommandError, TransferError
from harness.transport.local import LocalTransport


def test_exit_code_and_streams_are_kept() -> None:
    result = LocalTransport().run(["sh", "-c", "echo out; echo err >&2; exit 7"], timeout_s=10)
    assert result.exit_code == 7
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    with pytest.raises(RemoteCommandError, match="exit code 7"):
        result.check()


def test_arguments_are_not_interpreted_by_a_shell(tmp_path: Path) -> None:
    tricky = "a b; echo pwned $(id) 'q' \"dq\""
    result = LocalTransport().run(["printf", "%s", tricky], timeout_s=10)
    assert result.stdout == tricky


def test_missing_program_is_exit_127() -> None:
    assert LocalTransport().run(["/no/such/program"], timeout_s=5).exit_code == 127


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    started = time.monotonic()
    with pytest.raises(DeviceTimeoutError):
        LocalTransport().run(["sh", "-c", script], timeout_s=0.5)
    assert time.monotonic() - started < 5
    child = int(pidfile.read_text())
    time.sleep(0.2)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    # A killed orphan may linger as a zombie until init reaps it; a zombie runs nothing.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_push_pull_round_trip_with_progress(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    seen: list[tuple[int, int]] = []
    transport = LocalTransport()
    transport.push(src, str(tmp_path / "remote.bin"), timeout_s=10,
                   progress=lambda done, total: seen.append((done, total)))
    transport.pull(str(tmp_path / "remote.bin"), tmp_path / "back.bin", timeout_s=10)
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
    assert seen[-1] == (src.stat().st_size, src.stat().st_size)


def test_push_into_a_missing_directory_is_a_transfer_error(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"x")
    with pytest.raises(TransferError):
        LocalTransport().push(src, str(tmp_path / "nope" / "dst.bin"), timeout_s=5)
