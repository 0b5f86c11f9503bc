"""The ADB ``sync:`` file protocol (push/pull) over any byte pipe.

Both connection modes use this: ``direct`` carries the bytes in WRTE packets of an adb-shell
stream, ``server`` over the socket the host ``adb`` server hands us after ``sync:``. Only sync v1
requests are used (STAT, SEND, RECV, QUIT): every adbd since Android 1 answers them.

Why not adb-shell's or adbutils' own push: adb-shell drops a FAIL that adbd sends while the host
is still writing (a full disk is reported that way) and then hangs until its read timeout, and
neither enforces an overall deadline.
"""

from __future__ import annotations

import os
import stat
import struct
import time
from pathlib import Path
from typing import Protocol

from harness.errors import DeviceFullError, DeviceTimeoutError, TransferError
from harness.transport.base import ProgressCallback

SYNC_DATA_MAX = 64 * 1024  # SYNC_DATA_MAX: adbd rejects bigger DATA records
_ENOSPC_TEXT = "No space left on device"


class SyncPipe(Protocol):
    """A bidirectional byte stream to the device's sync service."""

    #: how many bytes one ``send`` should carry for good throughput
    write_size: int

    def send(self, data: bytes, deadline: float) -> None:
        """Send all of ``data``; raise DeviceTimeoutError past ``deadline`` (time.monotonic)."""
        ...

    def recv(self, deadline: float) -> bytes:
        """Some bytes (never empty); DeviceConnectionError when the stream ends."""
        ...

    def has_pending(self) -> bool:
        """True when the device already sent something we have not read (e.g. an early FAIL)."""
        ...


class _Reader:
    """Exact-size reads on top of a pipe's arbitrary chunks."""

    def __init__(self, pipe: SyncPipe, deadline: float) -> None:
        self.pipe = pipe
        self.deadline = deadline
        self.buffer = bytearray()

    def read(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.buffer += self.pipe.recv(self.deadline)
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data


def _request(request_id: bytes, path: str) -> bytes:
    encoded = path.encode("utf-8")
    if len(encoded) > 1024:
        raise TransferError(f"device path is longer than 1024 bytes: {path[:60]}...")
    return request_id + struct.pack("<I", len(encoded)) + encoded


def _failure(reader: _Reader, what: str) -> TransferError:
    (length,) = struct.unpack("<I", reader.read(4))
    message = reader.read(length).decode("utf-8", "replace")
    if _ENOSPC_TEXT.lower() in message.lower():
        return DeviceFullError(
            f"{what}: the device is full ({message})",
            hint="free space on the phone (e.g. delete old files under the work directory)",
        )
    return TransferError(f"{what}: the device said: {message}")


def _check_deadline(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise DeviceTimeoutError(f"{what} did not finish in time")


def sync_stat(pipe: SyncPipe, remote_path: str, deadline: float) -> tuple[int, int, int]:
    """``(mode, size_bytes, mtime)`` of a device path; mode 0 means it does not exist."""
    pipe.send(_request(b"STAT", remote_path), deadline)
    reader = _Reader(pipe, deadline)
    record_id, mode, size, mtime = struct.unpack("<4sIII", reader.read(16))
    if record_id != b"STAT":
        raise TransferError(f"unexpected answer {record_id!r} to STAT {remote_path}")
    return mode, size, mtime


def sync_push(
    pipe: SyncPipe,
    local_path: Path,
    remote_path: str,
    *,
    deadline: float,
    progress: ProgressCallback | None = None,
) -> int:
    """Send a file with SEND/DATA/DONE; return the bytes sent. Raises DeviceFullError on ENOSPC."""
    what = f"push of {local_path.name} to {remote_path}"
    try:
        st = local_path.stat()
        handle = local_path.open("rb")
    except OSError as exc:
        raise TransferError(f"cannot read {local_path}: {exc.strerror or exc}") from exc
    mode = stat.S_IFREG | (stat.S_IMODE(st.st_mode) or 0o644)
    total, done = st.st_size, 0
    reader = _Reader(pipe, deadline)
    # Records are gathered as parts and joined once per send: fewer copies of 1 MiB buffers.
    parts: list[bytes] = [_request(b"SEND", f"{remote_path},{mode}")]
    queued = len(parts[0])
    with handle:
        while True:
            chunk = handle.read(SYNC_DATA_MAX)
            header = (
                b"DATA" + struct.pack("<I", len(chunk))
                if chunk
                else b"DONE" + struct.pack("<I", int(st.st_mtime))
            )
            # Fill each send up to write_size (one WRTE of maxdata) without going over it.
            if queued + len(header) + len(chunk) > pipe.write_size:
                _check_deadline(deadline, what)
                pipe.send(b"".join(parts), deadline)
                parts.clear()
                queued = 0
                if progress is not None:
                    progress(done, total)  # the data up to the previous chunk is out
                # adbd reports a failed write at once and then drains our DATA: stop early.
                if pipe.has_pending():
                    break
            parts += (header, chunk)
            queued += len(header) + len(chunk)
            done += len(chunk)
            if not chunk:
                pipe.send(b"".join(parts), deadline)
                if progress is not None:
                    progress(done, total)
                break
    record_id = reader.read(4)
    if record_id == b"OKAY":
        reader.read(4)
        return done
    if record_id == b"FAIL":
        raise _failure(reader, what)
    raise TransferError(f"{what}: unexpected answer {record_id!r}")


def sync_pull(
    pipe: SyncPipe,
    remote_path: str,
    local_path: Path,
    *,
    deadline: float,
    progress: ProgressCallback | None = None,
) -> int:
    """Receive a file with STAT then RECV into ``local_path`` (atomically); return its size."""
    what = f"pull of {remote_path}"
    mode, total, _mtime = sync_stat(pipe, remote_path, deadline)
    if mode == 0:
        raise TransferError(f"{what}: no such file on the device")
    if stat.S_ISDIR(mode):
        raise TransferError(f"{what}: it is a directory, not a file")
    pipe.send(_request(b"RECV", remote_path), deadline)
    reader = _Reader(pipe, deadline)
    partial = local_path.with_name(local_path.name + ".part")
    done = 0
    try:
        with partial.open("wb") as out:
            while True:
                record_id = reader.read(4)
                if record_id == b"DONE":
                    reader.read(4)
                    break
                if record_id == b"FAIL":
                    raise _failure(reader, what)
                if record_id != b"DATA":
                    raise TransferError(f"{what}: unexpected record {record_id!r}")
                (size,) = struct.unpack("<I", reader.read(4))
                out.write(reader.read(size))
                done += size
                if progress is not None:
                    progress(done, max(total, done))
                _check_deadline(deadline, what)
        os.replace(partial, local_path)
    except OSError as exc:
        raise TransferError(f"cannot write {local_path}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return done
