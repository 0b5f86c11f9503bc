"""The ``sync:`` service of the ADB peer: STAT/STA2/LST2, LIST/LIS2, SEND, RECV, QUIT.

Requests arrive as one byte stream (they span and share WRTE payloads), so the service reads
them from an :class:`asyncio.StreamReader` fed with the stream's WRTE payloads. Layouts and the
client sequences it answers are in ``shared/reference/adb-protocol.md`` section 5.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

SYNC_DATA_MAX = 64 * 1024
MAX_PATH_BYTES = 1024

ID_STAT, ID_STA2, ID_LST2 = b"STAT", b"STA2", b"LST2"
ID_LIST, ID_LIS2 = b"LIST", b"LIS2"
ID_SEND, ID_RECV, ID_QUIT = b"SEND", b"RECV", b"QUIT"
ID_DATA, ID_DONE, ID_OKAY, ID_FAIL = b"DATA", b"DONE", b"OKAY", b"FAIL"
ID_DENT, ID_DNT2 = b"DENT", b"DNT2"

_STAT_V2 = struct.Struct("<4sIQQIIIIQqqq")  # 72 bytes
_DENT_V1 = struct.Struct("<4sIIII")  # 20 bytes


class PeerFileSystem(Protocol):
    """How the peer maps device paths to host paths and accounts for free space."""

    def to_host(self, device_path: str, *, write: bool) -> Path:
        """Host path for ``device_path``; raises ``OSError`` with an errno when not mapped."""
        ...

    def reserve(self, size_bytes: int) -> None:
        """Account ``size_bytes`` of new data; raises ``OSError(ENOSPC)`` when the device is full."""
        ...


Send = Callable[[bytes], Awaitable[None]]


def _fail(message: str) -> bytes:
    data = message.encode()
    return ID_FAIL + struct.pack("<I", len(data)) + data


def _stat_v2(record_id: bytes, st: os.stat_result | None, err: int) -> bytes:
    if st is None:
        return _STAT_V2.pack(record_id, err, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    return _STAT_V2.pack(
        record_id,
        0,
        st.st_dev,
        st.st_ino,
        st.st_mode,
        st.st_nlink,
        st.st_uid,
        st.st_gid,
        st.st_size,
        int(st.st_atime),
        int(st.st_mtime),
        int(st.st_ctime),
    )


class SyncService:
    """One ``sync:`` stream."""

    def __init__(self, fs: PeerFileSystem, reader: asyncio.StreamReader, send: Send) -> None:
        self.fs = fs
        self.reader = reader
        self.send = send

    async def serve(self) -> None:
        """Answer requests until QUIT, the host's CLSE, or an unrecoverable SEND failure."""
        while True:
            try:
                header = await self.reader.readexactly(8)
            except asyncio.IncompleteReadError:
                return  # CLSE from the host (adb-shell and adbutils never send QUIT)
            request, length = struct.unpack("<4sI", header)
            if request == ID_QUIT:
                return
            if length > MAX_PATH_BYTES:
                await self.send(_fail("path too long"))
                return
            try:
                path = (await self.reader.readexactly(length)).decode("utf-8", "surrogateescape")
            except asyncio.IncompleteReadError:
                return
            if request == ID_STAT:
                await self._stat_v1(path)
            elif request in (ID_STA2, ID_LST2):
                await self._stat2(request, path)
            elif request in (ID_LIST, ID_LIS2):
                await self._list(path, v2=request == ID_LIS2)
            elif request == ID_RECV:
                await self._recv(path)
            elif request == ID_SEND:
                if not await self._send_file(path):
                    return  # adbd closes the stream after a failed SEND
            else:
                await self.send(_fail(f"unknown command {request!r}"))
                return

    def _lstat(self, path: str, follow: bool) -> tuple[os.stat_result | None, int]:
        try:
            host = self.fs.to_host(path, write=False)
            return (host.stat() if follow else host.lstat()), 0
        except OSError as exc:
            return None, exc.errno or errno.EIO

    async def _stat_v1(self, path: str) -> None:
        st, _err = self._lstat(path, follow=False)
        if st is None:
            await self.send(struct.pack("<4sIII", ID_STAT, 0, 0, 0))  # mode 0: does not exist
        else:
            size = st.st_size & 0xFFFFFFFF
            await self.send(struct.pack("<4sIII", ID_STAT, st.st_mode, size, int(st.st_mtime)))

    async def _stat2(self, request: bytes, path: str) -> None:
        st, err = self._lstat(path, follow=request == ID_STA2)
        await self.send(_stat_v2(request, st, err))

    async def _list(self, path: str, *, v2: bool) -> None:
        out = bytearray()
        try:
            entries = sorted(os.scandir(self.fs.to_host(path, write=False)), key=lambda e: e.name)
        except OSError:
            entries = []
        for entry in entries:
            name = entry.name.encode("utf-8", "surrogateescape")
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if v2:
                out += _stat_v2(ID_DNT2, st, 0) + struct.pack("<I", len(name)) + name
            else:
                out += _DENT_V1.pack(
                    ID_DENT, st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime), len(name)
                )
                out += name
        # The end marker is a full-size, all-zero dent record with the id DONE.
        out += (
            (_stat_v2(ID_DONE, None, 0) + b"\0\0\0\0") if v2 else _DENT_V1.pack(ID_DONE, 0, 0, 0, 0)
        )
        await self.send(bytes(out))

    async def _recv(self, path: str) -> None:
        try:
            handle = self.fs.to_host(path, write=False).open("rb")
        except OSError as exc:
            await self.send(_fail(f"open failed: {os.strerror(exc.errno or errno.EIO)}"))
            return
        with handle:
            batch = bytearray()
            while chunk := handle.read(SYNC_DATA_MAX):
                batch += ID_DATA + struct.pack("<I", len(chunk)) + chunk
                if len(batch) >= 16 * SYNC_DATA_MAX:
                    await self.send(bytes(batch))
                    batch.clear()
            batch += ID_DONE + b"\0\0\0\0"
            await self.send(bytes(batch))

    async def _send_file(self, spec: str) -> bool:
        path, _, mode_text = spec.rpartition(",")
        try:
            mode = int(mode_text, 0)
        except ValueError:
            path, mode = spec, 0o644
        error: str | None = None
        host: Path | None = None
        handle = None
        try:
            if path.endswith("/"):  # open(2) of "dir/" with O_CREAT, as adbd does
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
            host = self.fs.to_host(path, write=True)
            host.parent.mkdir(parents=True, exist_ok=True)  # adbd's secure_mkdirs
            handle = host.open("wb")
        except OSError as exc:
            error = f"couldn't create file: {os.strerror(exc.errno or errno.EIO)}"
        mtime = 0
        try:
            while True:
                try:
                    header = await self.reader.readexactly(8)
                except asyncio.IncompleteReadError:
                    error = error or "connection closed"
                    break
                record, size = struct.unpack("<4sI", header)
                if record == ID_DONE:
                    mtime = size
                    break
                if record != ID_DATA or size > SYNC_DATA_MAX:
                    error = error or f"invalid data message: {record!r} size {size}"
                    break
                try:
                    data = await self.reader.readexactly(size)
                except asyncio.IncompleteReadError:
                    error = error or "connection closed"
                    break
                if error is not None or handle is None:
                    continue  # adbd reads and drops DATA until DONE once it has failed
                try:
                    self.fs.reserve(len(data))
                    handle.write(data)
                except OSError as exc:
                    error = f"write failed: {os.strerror(exc.errno or errno.EIO)}"
                    # adbd reports at once, then keeps draining DATA until DONE.
                    await self.send(_fail(error))
        except asyncio.CancelledError:  # the connection dropped mid-file
            if handle is not None:
                handle.close()
            if host is not None:
                host.unlink(missing_ok=True)
            raise
        if handle is not None:
            handle.close()
        if error is not None:
            if host is not None:
                host.unlink(missing_ok=True)  # adbd unlinks the partial file
            if "write failed" not in error:
                await self.send(_fail(error))
            return False
        assert host is not None
        os.chmod(host, stat.S_IMODE(mode) or 0o644)
        if mtime:
            os.utime(host, (mtime, mtime))
        await self.send(ID_OKAY + b"\0\0\0\0")
        return True
