"""Android phones over ADB, behind the :class:`~harness.transport.base.Transport` protocol.

Two modes, one profile key (``transport.mode``):

* ``direct`` (default): adb-shell talks to adbd itself (TCP, or USB with ``adb-shell[usb]``);
  the RSA key pair lives in ``~/.android/adbkey`` when present, else is created (0600) in
  :func:`harness.paths.user_config_dir`.
* ``server``: through a running host ``adb`` server (port 5037) with adbutils.

Exit codes: shell v2 (``shell,v2,raw:``) when the device lists ``shell_v2``; otherwise the
command is followed by ``printf '\\n__HARNESS_EXIT_<token>__:%d\\n' $?`` and that line is cut
from the output (stdout and stderr are merged there: shell v1 has one stream).

Timeouts: every command first prints ``__HARNESS_PID_<token>__:$$`` (to stderr under v2) and
then ``exec``-s the argv, so the device pid is known early. On timeout that pid, its process
group and its children are killed with ``kill -9`` from a second shell.

Dropped connections raise :class:`DeviceConnectionError`; the next call (or :meth:`reconnect`)
connects again and :attr:`AdbTransport.reconnects` counts it, so a session can retry the job
once and report it.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import shlex
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from harness.errors import (
    AuthenticationError,
    ConfigError,
    DeviceConnectionError,
    DeviceError,
    DeviceTimeoutError,
    TransferError,
)
from harness.profiles import AdbTransportConfig
from harness.transport import adb_sync
from harness.transport.adb_direct import _LINK_ERRORS, DirectLink, default_key_path
from harness.transport.adb_server import ServerLink
from harness.transport.base import CommandResult, ProgressCallback

KILL_TIMEOUT_S = 10.0
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHELL_STDIN, _SHELL_STDOUT, _SHELL_STDERR, _SHELL_EXIT, _SHELL_CLOSE_STDIN = 0, 1, 2, 3, 4


class _Stream(Protocol):
    write_size: int

    def send(self, data: bytes, deadline: float) -> None: ...
    def recv(self, deadline: float) -> bytes: ...
    def recv_or_eof(self, deadline: float) -> bytes: ...
    def has_pending(self) -> bool: ...
    def close(self, deadline: float) -> None: ...
    def abort(self) -> None: ...


class _Link(Protocol):
    features: frozenset[str]

    @property
    def where(self) -> str: ...
    def connect(self) -> None: ...
    def close(self) -> None: ...
    def open(self, service: str, deadline: float) -> _Stream: ...


def build_command(argv: Sequence[str], *, cwd: str | None, env: Mapping[str, str] | None) -> str:
    """The ``sh`` text that runs ``argv`` (each element quoted) in ``cwd`` with ``env`` added."""
    if not argv:
        raise ConfigError("cannot run an empty command on the device")
    words = [shlex.quote(str(a)) for a in argv]
    if env:
        for key in env:
            if not _ENV_NAME.match(key):
                raise ConfigError(f"invalid environment variable name for the device: {key!r}")
        words = ["env", *(shlex.quote(f"{k}={v}") for k, v in env.items()), *words]
    command = "exec " + " ".join(words)
    return f"cd {shlex.quote(cwd)} && {command}" if cwd else command


class _Output:
    """Collects a command's output and spots the pid marker as soon as it arrives."""

    def __init__(self, token: str) -> None:
        self.pid_marker = re.compile(rb"__HARNESS_PID_" + token.encode() + rb"__:(\d+)\n")
        self.exit_marker = re.compile(rb"\n__HARNESS_EXIT_" + token.encode() + rb"__:(\d+)\n\Z")
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.pid: int | None = None

    def add(self, kind: int, data: bytes) -> None:
        target = self.stderr if kind == _SHELL_STDERR else self.stdout
        target += data
        if self.pid is None:
            match = self.pid_marker.search(target)
            if match:
                self.pid = int(match.group(1))
                del target[match.start() : match.end()]

    def split_exit(self) -> int | None:
        """Cut the v1 exit sentinel from stdout; the exit code, or None when it is missing."""
        match = self.exit_marker.search(self.stdout)
        if match is None:
            return None
        code = int(match.group(1))  # read before the buffer under the match changes
        del self.stdout[match.start() :]
        return code


class AdbTransport:
    """One Android device over ADB. Not thread-safe: one job at a time per transport."""

    def __init__(self, config: AdbTransportConfig, *, name: str | None = None) -> None:
        if config.mode == "direct" and not (config.address or config.serial):
            raise ConfigError(
                "an ADB direct profile needs transport.address (host:port) or transport.serial",
                hint="e.g. `harness devices add pixel7 --adb 192.168.1.50:5555`",
            )
        self.config = config
        self.reconnects = 0
        self._link: _Link | None = None
        self._dropped = False
        target = config.address or config.serial or "default device"
        self.description = f"{name + ' ' if name else ''}adb:{target}" + (
            " via adb server" if config.mode == "server" else ""
        )

    # -- connection ----------------------------------------------------------------------------
    def _new_link(self) -> _Link:
        cfg = self.config
        if cfg.mode == "server":
            return ServerLink(
                host=cfg.server_host, port=cfg.server_port, serial=cfg.serial, address=cfg.address
            )
        key = Path(cfg.key_file).expanduser() if cfg.key_file else default_key_path()
        return DirectLink(
            address=cfg.address, serial=cfg.serial, key_path=key, auth_timeout_s=cfg.auth_timeout_s
        )

    def connect(self) -> None:
        """Connect now (otherwise the first call does). Counts a reconnect after a drop."""
        if self._link is not None:
            return
        link = self._new_link()
        link.connect()
        self._link = link
        if self._dropped:
            self.reconnects += 1
            self._dropped = False

    def reconnect(self) -> None:
        """Drop the current connection (if any) and connect again; counted in ``reconnects``."""
        self._close_link()
        self._dropped = True
        self.connect()

    @property
    def features(self) -> frozenset[str]:
        """Features the device advertised (``shell_v2``, ``stat_v2``, ...)."""
        self.connect()
        assert self._link is not None
        return self._link.features

    def _close_link(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Map link failures to DeviceConnectionError and forget the broken connection."""
        try:
            yield
        except AuthenticationError:
            raise
        except DeviceConnectionError as exc:
            self._close_link()
            self._dropped = True
            raise DeviceConnectionError(
                f"lost the ADB connection to {self.description} during {what}: {exc.message}",
                hint="check the cable or Wi-Fi; harness reconnects on the next call",
            ) from exc
        except _LINK_ERRORS as exc:
            self._close_link()
            self._dropped = True
            raise DeviceConnectionError(
                f"lost the ADB connection to {self.description} during {what}: {exc}",
                hint="check the cable or Wi-Fi; harness reconnects on the next call",
            ) from exc

    def _open(self, service: str, deadline: float) -> _Stream:
        self.connect()
        assert self._link is not None
        return self._link.open(service, deadline)

    # -- commands ------------------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv`` on the phone and return its exit code, stdout and stderr."""
        return self._run_script(
            tuple(str(a) for a in argv), build_command(argv, cwd=cwd, env=env), timeout_s
        )

    def _run_script(self, argv: tuple[str, ...], command: str, timeout_s: float) -> CommandResult:
        started = time.monotonic()
        deadline = started + timeout_s
        token = secrets.token_hex(8)
        output = _Output(token)
        what = f"{argv[0]!r}"
        self.connect()  # connection failures are reported as such, not as "lost during"
        with self._guard(what):
            v2 = "shell_v2" in self.features
            if v2:
                script = f"echo __HARNESS_PID_{token}__:$$ >&2; {command}"
                service = f"shell,v2,raw:{script}"
            else:
                script = (
                    f"echo __HARNESS_PID_{token}__:$$; ({command}); "
                    f"printf '\\n__HARNESS_EXIT_{token}__:%d\\n' $?"
                )
                service = f"shell:{script}"
            stream: _Stream | None = None
            try:
                stream = self._open(service, deadline)
                code = self._collect(stream, output, v2, deadline)
                stream.close(deadline)
            except DeviceTimeoutError as exc:
                if stream is not None:
                    stream.abort()
                self._kill_after_timeout(output.pid)
                raise DeviceTimeoutError(
                    f"command {what} on {self.description} did not finish within "
                    f"{timeout_s:g} s; it was killed on the device"
                ) from exc
        stderr = output.stderr.decode("utf-8", "replace")
        if code is None:
            code = 255  # like modern adb when no exit status arrives
            stderr += "\n(harness: no exit status received from the device)"
        return CommandResult(
            argv=argv,
            exit_code=code,
            stdout=output.stdout.decode("utf-8", "replace"),
            stderr=stderr,
            duration_s=time.monotonic() - started,
        )

    def _collect(self, stream: _Stream, output: _Output, v2: bool, deadline: float) -> int | None:
        if not v2:
            while data := stream.recv_or_eof(deadline):
                output.add(_SHELL_STDOUT, data)
            return output.split_exit()
        stream.send(struct.pack("<BI", _SHELL_CLOSE_STDIN, 0), deadline)  # no stdin: EOF now
        buffer = bytearray()
        code: int | None = None
        while data := stream.recv_or_eof(deadline):
            buffer += data
            while len(buffer) >= 5:
                kind, size = struct.unpack_from("<BI", buffer)
                if len(buffer) < 5 + size:
                    break
                body = bytes(buffer[5 : 5 + size])
                del buffer[: 5 + size]
                if kind == _SHELL_EXIT and body:
                    code = body[0]
                elif kind in (_SHELL_STDOUT, _SHELL_STDERR):
                    output.add(kind, body)
        return code

    def _kill_after_timeout(self, pid: int | None) -> None:
        # The timed-out stream may be mid-packet: start from a fresh connection (not a
        # "reconnect": nothing dropped), then kill the process group, children and pid.
        self._close_link()
        if pid is None:
            return
        script = f"kill -9 -{pid} 2>/dev/null; pkill -9 -P {pid} 2>/dev/null; kill -9 {pid} 2>/dev/null; true"
        with contextlib.suppress(DeviceError):
            self._run_script(("kill",), script, KILL_TIMEOUT_S)

    # -- files -----------------------------------------------------------------------------------
    def push(
        self,
        local_path: Path,
        remote_path: str,
        *,
        timeout_s: float,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Copy a local file to ``remote_path``; DeviceFullError when the phone is out of space."""
        local_path = Path(local_path)
        if not local_path.is_file():
            raise TransferError(f"cannot push {local_path}: not a file")
        self._transfer(
            f"push of {local_path.name}",
            timeout_s,
            lambda stream, deadline: adb_sync.sync_push(
                stream, local_path, remote_path, deadline=deadline, progress=progress
            ),
        )

    def pull(
        self,
        remote_path: str,
        local_path: Path,
        *,
        timeout_s: float,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Copy ``remote_path`` from the phone to ``local_path`` (written atomically)."""
        self._transfer(
            f"pull of {remote_path}",
            timeout_s,
            lambda stream, deadline: adb_sync.sync_pull(
                stream, remote_path, Path(local_path), deadline=deadline, progress=progress
            ),
        )

    def _transfer(self, what: str, timeout_s: float, body: Callable[[_Stream, float], int]) -> None:
        deadline = time.monotonic() + timeout_s
        self.connect()
        with self._guard(what):
            stream = self._open("sync:", deadline)
            try:
                body(stream, deadline)
            except DeviceTimeoutError as exc:
                stream.abort()
                self._close_link()  # the stream is mid-transfer: start clean next time
                raise DeviceTimeoutError(
                    f"{what} on {self.description} did not finish within {timeout_s:g} s"
                ) from exc
            except TransferError:
                stream.close(time.monotonic() + 5)
                raise
            stream.close(time.monotonic() + 5)

    def close(self) -> None:
        """Release the connection. Safe to call twice."""
        self._close_link()
