"""Shell services of the ADB peer: ``shell:``/``exec:`` (raw bytes) and shell protocol v2.

Commands run as host processes started by the connection (``spawn``); these functions move
bytes between the process and the ADB stream. Shell v2 packets are ``id u8, length u32 LE,
data`` in both directions (``shared/reference/adb-protocol.md`` section 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Awaitable, Callable

SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT, SHELL_CLOSE_STDIN = 0, 1, 2, 3, 4
READ_CHUNK = 64 * 1024

Write = Callable[[bytes], Awaitable[None]]
Spawn = Callable[[str, bool], Awaitable[asyncio.subprocess.Process]]


async def pump_stdin(
    inbound: asyncio.StreamReader, proc: asyncio.subprocess.Process, v2: bool
) -> None:
    """Copy the host's data (raw, or v2 stdin packets) to the process' stdin."""
    assert proc.stdin is not None
    buffer = b""
    while data := await inbound.read(65536):
        if not v2:
            proc.stdin.write(data)
            continue
        buffer += data
        while len(buffer) >= 5:
            kind, size = struct.unpack_from("<BI", buffer)
            if len(buffer) < 5 + size:
                break
            body, buffer = buffer[5 : 5 + size], buffer[5 + size :]
            if kind == SHELL_STDIN:
                proc.stdin.write(body)
            elif kind == SHELL_CLOSE_STDIN:
                proc.stdin.close()
                return
            # SHELL_WINDOW_SIZE (5) only matters for a PTY, which the peer does not allocate.
    with contextlib.suppress(Exception):
        proc.stdin.close()


async def serve_raw(
    command: str, inbound: asyncio.StreamReader, write: Write, spawn: Spawn, max_payload: int
) -> None:
    """``shell:`` v1 and ``exec:``: stdout and stderr merged, no exit code."""
    proc = await spawn(command, True)
    feeder = asyncio.ensure_future(pump_stdin(inbound, proc, v2=False))
    assert proc.stdout is not None
    try:
        while chunk := await proc.stdout.read(min(max_payload, READ_CHUNK)):
            await write(chunk)
        await proc.wait()
    finally:
        feeder.cancel()


async def serve_shell_v2(
    command: str, inbound: asyncio.StreamReader, write: Write, spawn: Spawn, max_payload: int
) -> None:
    """``shell,v2,...:``: stdout/stderr packets, then the exit packet (adbd order)."""
    proc = await spawn(command, False)
    feeder = asyncio.ensure_future(pump_stdin(inbound, proc, v2=True))
    lock = asyncio.Lock()  # one packet at a time: both pumps share the stream
    limit = min(max_payload, READ_CHUNK) - 5

    async def pump(source: asyncio.StreamReader | None, kind: int) -> None:
        assert source is not None
        while chunk := await source.read(limit):
            async with lock:
                await write(struct.pack("<BI", kind, len(chunk)) + chunk)

    try:
        await asyncio.gather(pump(proc.stdout, SHELL_STDOUT), pump(proc.stderr, SHELL_STDERR))
        code = await proc.wait()
        status = code if code >= 0 else 0x80 | -code  # killed by a signal, as adbd reports it
        await write(struct.pack("<BIB", SHELL_EXIT, 1, status & 0xFF))
    finally:
        feeder.cancel()
