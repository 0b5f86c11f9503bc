"""An adbd-compatible ADB peer on loopback: the phone the tests talk to.

It speaks the device side of the ADB wire protocol (``shared/reference/adb-protocol.md``):
CNXN with a real banner, AUTH TOKEN -> SIGNATURE -> RSAPUBLICKEY checked against configured
``adbkey.pub`` keys, OPEN/OKAY/WRTE/CLSE with one WRTE in flight per stream, ``shell:``/``exec:``
(raw, no PTY), ``shell,v2,...:`` framing with exit codes, and ``sync:``.

Device paths: commands run with the host's ``sh -c`` in ``root``, which stands for
``/data/local/tmp``. The peer rewrites path prefixes, both in sync paths and in command strings:
``/data/local/tmp`` -> ``root``; ``/sys/...`` and fixture-backed ``/proc/...`` -> the fixture
tree. ``getprop`` and ``dumpsys`` are stand-in scripts on ``PATH`` that answer from the fixture
tree. (Output of commands such as ``pwd`` shows host paths: the mapping is one way.) A ``pty``
shell runs like ``raw`` (no terminal), and a command keeps running when its stream closes (as
adbd's raw shells do), so clients must kill what they time out.

Run it alone with ``python -m tests.peers.adbd --port P --root DIR --fixtures DIR``; tests use
:class:`AdbdPeer` (it runs its event loop in a thread) through ``tests/peers/adbd_fixtures.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import rsa

from tests.peers.adbd_device import PeerDevice
from tests.peers.adbd_keys import BadPublicKey, parse_adb_public_key, same_key
from tests.peers.adbd_keys import verify_token_signature as _verify
from tests.peers.adbd_shell import serve_raw, serve_shell_v2
from tests.peers.adbd_sync import SyncService

A_CNXN, A_AUTH, A_OPEN = 0x4E584E43, 0x48545541, 0x4E45504F
A_OKAY, A_CLSE, A_WRTE = 0x59414B4F, 0x45534C43, 0x45545257
A_VERSION_MIN, A_VERSION = 0x01000000, 0x01000001
MAX_PAYLOAD = 1024 * 1024
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
TOKEN_SIZE = 20
DEFAULT_FEATURES = ("shell_v2", "cmd", "stat_v2", "ls_v2", "fixed_push_mkdir")

_HEADER = struct.Struct("<6I")

try:  # numpy makes the byte-sum checksum of 1 MiB payloads cheap; the sum is the same
    import numpy as _np

    def _checksum(data: bytes) -> int:
        return int(_np.frombuffer(data, dtype=_np.uint8).sum(dtype=_np.uint64)) & 0xFFFFFFFF

except ImportError:  # pragma: no cover

    def _checksum(data: bytes) -> int:
        return sum(data) & 0xFFFFFFFF


UnknownKeyPolicy = Literal["accept", "prompt", "close"]


@dataclass
class PeerOptions:
    """How the peer behaves. Defaults: a locked phone that knows ``authorized_keys``."""

    root: Path
    fixtures: Path | None = None
    authorized_keys: list[str] = field(default_factory=list)  # adbkey.pub texts
    require_auth: bool = True
    # Unknown key after RSAPUBLICKEY: "accept" (user taps Allow after accept_delay_s),
    # "prompt" (the dialog stays up: silence, as adbd), "close" (refuse: drop the connection).
    unknown_key: UnknownKeyPolicy = "prompt"
    accept_delay_s: float = 0.0
    features: tuple[str, ...] = DEFAULT_FEATURES
    max_payload: int = MAX_PAYLOAD
    free_bytes: int | None = None  # None: unlimited; 0: "device full" (SEND fails ENOSPC)
    drop_after_commands: int | None = None  # drop every connection once, when command N+1 opens
    drop_after_bytes: int | None = None  # drop every connection once this many bytes came in
    standins: dict[str, str] = field(default_factory=dict)  # name -> script, put on PATH
    never_answer_cnxn: bool = False


@dataclass
class _Stream:
    local_id: int
    remote_id: int
    service: str
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    inbound: asyncio.StreamReader = field(default_factory=asyncio.StreamReader)
    closed: bool = False
    task: asyncio.Task[None] | None = None


class AdbdPeer:
    """The peer server. ``start()`` runs it on a private event loop thread."""

    def __init__(self, options: PeerOptions, host: str = "127.0.0.1", port: int = 0) -> None:
        self.options = options
        self.host = host
        self.port = port
        self.services: list[str] = []  # every OPEN payload, in order (tests assert on it)
        self.connections_accepted = 0
        self.fs = PeerDevice(options)
        self._keys: list[rsa.RSAPublicKey] = [
            parse_adb_public_key(k) for k in options.authorized_keys
        ]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[_Connection] = set()
        self._procs: set[asyncio.subprocess.Process] = set()
        self._bytes_in = 0
        self._commands = 0

    # -- set-up -----------------------------------------------------------------------------
    def banner(self) -> bytes:
        """The device CNXN payload (no trailing NUL: it would eat the last feature)."""
        props = ";".join(f"{k}={v}" for k, v in self.fs.product.items())
        return f"device::{props};features={','.join(self.options.features)}".encode()

    def command_env(self) -> dict[str, str]:
        """The environment device commands run with."""
        return self.fs.command_env()

    def rewrite_command(self, command: str) -> str:
        """Map device paths in a command string to the host stand-ins."""
        return self.fs.rewrite_command(command)

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> AdbdPeer:
        """Start listening (in a background thread); ``self.port`` is then the bound port."""
        started = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._listen())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="adbd-peer", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("ADB peer did not start")
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._on_client, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Stop listening, drop every connection and kill every command still running."""
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()
        self._loop = None
        self.fs.cleanup()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        self._drop_all()
        for proc in list(self._procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 2)
        # Connection handlers end by themselves once their sockets are aborted; cancelling them
        # would make asyncio log a CancelledError from the stream protocol.
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def drop_connections(self) -> None:
        """Cut every TCP connection at once, as an unplugged cable does (keeps listening)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._drop_all)

    def _drop_all(self) -> None:
        for conn in list(self._conns):
            conn.abort()

    def authorize(self, pubkey_text: str) -> None:
        """Add a key, as "Always allow from this computer" does."""
        self._keys.append(parse_adb_public_key(pubkey_text))

    def is_authorized(self, key: rsa.RSAPublicKey) -> bool:
        return any(same_key(key, k) for k in self._keys)

    def verify(self, token: bytes, signature: bytes) -> bool:
        return any(_verify(k, token, signature) for k in self._keys)

    # -- accounting used by the connection -----------------------------------------------------
    def count_bytes(self, n: int) -> bool:
        """Add inbound bytes; True when the configured drop point is reached."""
        before, self._bytes_in = self._bytes_in, self._bytes_in + n
        limit = self.options.drop_after_bytes
        return limit is not None and before <= limit < self._bytes_in  # once, like one unplug

    def count_command(self, service: str) -> bool:
        """Record an OPEN; True when the configured drop point is reached."""
        self.services.append(service)
        if service.startswith(("shell", "exec:")):
            self._commands += 1
            limit = self.options.drop_after_commands
            return limit is not None and self._commands == limit + 1  # once: the retry works
        return False

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Connection(self, reader, writer)
        self._conns.add(conn)
        try:
            await conn.serve()
        finally:
            self._conns.discard(conn)
            conn.abort()


class _Connection:
    """One host connection: handshake, then multiplexed streams."""

    def __init__(self, peer: AdbdPeer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.online = False
        self.version = A_VERSION_MIN
        self.max_payload = 4096
        self.token = b""
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.closed = False

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        for stream in self.streams.values():
            stream.closed = True
            stream.ready.set()
            stream.inbound.feed_eof()
            if stream.task is not None:
                stream.task.cancel()
        self.streams.clear()
        transport = self.writer.transport
        if transport is not None:
            transport.abort()

    def send(self, command: int, arg0: int, arg1: int, payload: bytes = b"") -> None:
        if self.closed:
            return
        # adbd sends a zero checksum once both sides speak A_VERSION_SKIP_CHECKSUM; adb-shell
        # (0x01000000) verifies every payload sum, so it gets a real one.
        check = 0 if self.version >= A_VERSION else _checksum(payload)
        header = _HEADER.pack(command, arg0, arg1, len(payload), check, command ^ 0xFFFFFFFF)
        self.writer.write(header + payload)

    async def serve(self) -> None:
        while not self.closed:
            try:
                header = await self.reader.readexactly(24)
                command, arg0, arg1, length, _check, magic = _HEADER.unpack(header)
                if magic != command ^ 0xFFFFFFFF or length > MAX_PAYLOAD:
                    return  # adbd drops the connection on a corrupt header
                payload = await self.reader.readexactly(length) if length else b""
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                return
            if self.peer.count_bytes(24 + length):
                self.peer._drop_all()
                return
            await self.handle(command, arg0, arg1, payload)
            with contextlib.suppress(ConnectionError):
                await self.writer.drain()

    async def handle(self, command: int, arg0: int, arg1: int, payload: bytes) -> None:
        if command == A_CNXN:
            await self.on_cnxn(arg0, arg1)
        elif command == A_AUTH:
            await self.on_auth(arg0, payload)
        elif not self.online:
            return  # ignore everything else before the handshake ends
        elif command == A_OPEN:
            self.on_open(arg0, arg1, payload)
        elif command == A_OKAY:
            stream = self.streams.get(arg1)
            if stream is not None and stream.remote_id in (0, arg0):
                stream.remote_id = arg0
                stream.ready.set()
        elif command == A_WRTE:
            stream = self.streams.get(arg1)
            if stream is None:
                return  # late WRTE for a closed stream: ignore
            stream.inbound.feed_data(payload)
            self.send(A_OKAY, stream.local_id, stream.remote_id)
        elif command == A_CLSE:
            stream = self.streams.pop(arg1, None)
            if stream is not None:
                self.close_stream(stream, reply=True)

    async def on_cnxn(self, version: int, maxdata: int) -> None:
        if self.online:  # a second CNXN resets the session
            for stream in list(self.streams.values()):
                self.close_stream(stream, reply=False)
            self.online = False
        self.version = min(version, A_VERSION)
        self.max_payload = min(maxdata, self.peer.options.max_payload)
        if self.peer.options.never_answer_cnxn:
            return
        if self.peer.options.require_auth:
            self.send_token()
        else:
            self.go_online()

    def send_token(self) -> None:
        self.token = secrets.token_bytes(TOKEN_SIZE)
        self.send(A_AUTH, AUTH_TOKEN, 0, self.token)

    def go_online(self) -> None:
        self.online = True
        self.send(A_CNXN, A_VERSION, self.peer.options.max_payload, self.peer.banner())

    async def on_auth(self, kind: int, payload: bytes) -> None:
        if self.online or not self.token:
            return
        if kind == AUTH_SIGNATURE:
            if self.peer.verify(self.token, payload):
                self.go_online()
            else:
                self.send_token()  # next key, please
        elif kind == AUTH_RSAPUBLICKEY:
            try:
                key = parse_adb_public_key(payload)
            except BadPublicKey:
                return
            policy = self.peer.options.unknown_key
            if policy == "close":
                self.abort()
            elif policy == "accept":
                await asyncio.sleep(self.peer.options.accept_delay_s)
                self.peer._keys.append(key)
                self.go_online()
            # "prompt": the dialog is up on the phone; adbd says nothing.

    # -- streams ------------------------------------------------------------------------------
    def on_open(self, remote_id: int, arg1: int, payload: bytes) -> None:
        service = payload.rstrip(b"\0").decode("utf-8", "surrogateescape")
        if self.peer.count_command(service):
            self.peer._drop_all()
            return
        if arg1 != 0 or not _known_service(service):
            self.send(A_CLSE, 0, remote_id)
            return
        stream = _Stream(local_id=self.next_id, remote_id=remote_id, service=service)
        self.next_id += 1
        self.streams[stream.local_id] = stream
        self.send(A_OKAY, stream.local_id, remote_id)
        stream.ready.set()  # OPEN counts as the host's first "ready"
        stream.task = asyncio.ensure_future(self.run_service(stream))

    def close_stream(self, stream: _Stream, *, reply: bool) -> None:
        if not stream.closed:
            stream.closed = True
            stream.ready.set()
            stream.inbound.feed_eof()
            if reply:
                self.send(A_CLSE, stream.local_id, stream.remote_id)

    async def write(self, stream: _Stream, data: bytes) -> None:
        """Send ``data`` as WRTEs of at most max_payload, one in flight (waits for OKAY)."""
        view = memoryview(data)
        while view:
            await stream.ready.wait()
            if stream.closed or self.closed:
                raise ConnectionResetError("stream closed")
            stream.ready.clear()
            chunk = bytes(view[: self.max_payload])
            view = view[len(chunk) :]
            self.send(A_WRTE, stream.local_id, stream.remote_id, chunk)
            await self.writer.drain()

    async def run_service(self, stream: _Stream) -> None:
        try:
            service = stream.service

            async def write(data: bytes) -> None:
                await self.write(stream, data)

            if service.startswith("sync:"):
                await SyncService(self.peer.fs, stream.inbound, write).serve()
            elif service.startswith("shell") and service[5:6] in (",", ":"):
                args, _, command = service[5:].partition(":")
                serve = serve_shell_v2 if "v2" in args.split(",") else serve_raw
                await serve(command, stream.inbound, write, self.spawn, self.max_payload)
            elif service.startswith("exec:"):
                await serve_raw(service[5:], stream.inbound, write, self.spawn, self.max_payload)
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            if not stream.closed and not self.closed:
                await _wait_ready(stream)
                self.close_stream(stream, reply=True)
                # The host answers with its own CLSE; unknown ids are ignored, so forget it now.
                self.streams.pop(stream.local_id, None)

    async def spawn(self, command: str, merge_stderr: bool) -> asyncio.subprocess.Process:
        """Start ``sh -c command`` with device paths mapped, in the root, own session."""
        proc = await asyncio.create_subprocess_exec(
            "sh",
            "-c",
            self.peer.rewrite_command(command or "true"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
            cwd=self.peer.options.root,
            env=self.peer.command_env(),
            start_new_session=True,  # adbd's child calls setsid(); the test kills by group
        )
        self.peer._procs = {p for p in self.peer._procs if p.returncode is None}
        self.peer._procs.add(proc)
        return proc


async def _wait_ready(stream: _Stream) -> None:
    # adbd closes a stream only after its last WRTE was acknowledged.
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stream.ready.wait(), 10)


def _known_service(service: str) -> bool:
    if service.startswith(("sync:", "exec:")):
        return True
    return service.startswith("shell") and service[5:6] in (",", ":")


def main(argv: Iterable[str] | None = None) -> None:
    """Serve until interrupted: ``python -m tests.peers.adbd --port P --root DIR --fixtures DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=5555)
    parser.add_argument("--root", type=Path, required=True, help="stands for /data/local/tmp")
    parser.add_argument("--fixtures", type=Path, default=None, help="fixture tree of a phone")
    parser.add_argument(
        "--authorized-key",
        action="append",
        default=[],
        type=Path,
        help="adbkey.pub to accept (repeatable)",
    )
    parser.add_argument("--no-auth", action="store_true", help="like ro.adb.secure=0")
    parser.add_argument("--unknown-key", choices=["accept", "prompt", "close"], default="prompt")
    parser.add_argument("--free-bytes", type=int, default=None, help="0 = device full")
    args = parser.parse_args(list(argv) if argv is not None else None)
    args.root.mkdir(parents=True, exist_ok=True)
    options = PeerOptions(
        root=args.root.resolve(),
        fixtures=args.fixtures.resolve() if args.fixtures else None,
        authorized_keys=[p.read_text() for p in args.authorized_key],
        require_auth=not args.no_auth,
        unknown_key=args.unknown_key,
        free_bytes=args.free_bytes,
    )
    peer = AdbdPeer(options, port=args.port).start()
    print(f"adbd peer listening on {peer.host}:{peer.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        peer.stop()


if __name__ == "__main__":
    main()
