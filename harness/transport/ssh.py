"""A Linux board over SSH (paramiko): commands on exec channels, files over SFTP.

One connection is opened lazily and reused for the whole session. Commands are built from argv
with :func:`shlex.join` and run by the login shell (which must be POSIX: sh, bash, dash, ash).
sshd puts every exec session in its own session and process group, with the login shell as its
leader; the wrapper prints that shell's PID (= the process group id) on stderr, then ``exec``s
the command in its place, so a timeout can kill the whole group from a second channel.
"""

from __future__ import annotations

import contextlib
import errno
import re
import select
import shlex
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import paramiko

from harness.errors import (
    ConfigError,
    DeviceConnectionError,
    DeviceFullError,
    DeviceTimeoutError,
    TransferError,
)
from harness.profiles import SshTransportConfig
from harness.transport.base import CommandResult, ProgressCallback
from harness.transport.ssh_connect import WINDOW_SIZE_BYTES, SshTarget, open_client, resolve_target

_PID_MARK = "\x1eharness-pgid="
_PID_LINE = re.compile(rb"\x1eharness-pgid=(\d+)\n")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CHUNK_BYTES = 1024 * 1024
_KILL_TIMEOUT_S = 10.0
_READ_REQUEST_BYTES = 252 * 1024


class _NotStarted(Exception):
    """The connection was gone before the command could start (safe to retry)."""


def build_command(argv: Sequence[str], cwd: str | None, env: Mapping[str, str] | None) -> str:
    """The shell command line for ``argv``: every piece quoted, nothing interpolated."""
    if not argv:
        raise ConfigError("cannot run an empty command")
    parts = [f"printf '{_PID_MARK}%s\\n' \"$$\" >&2"]
    for name, value in (env or {}).items():
        if not _ENV_NAME.match(name):
            raise ConfigError(f"invalid environment variable name {name!r}")
        parts.append(f"{name}={shlex.quote(value)}; export {name}")
    if cwd is not None:
        parts.append(f"cd -- {shlex.quote(cwd)} || exit 125")
    parts.append(f"exec {shlex.join(argv)}")
    return "; ".join(parts)


class SshTransport:
    """Implements :class:`harness.transport.base.Transport` over one paramiko connection."""

    def __init__(
        self,
        config: SshTransportConfig,
        *,
        ssh_config_path: Path | None = None,
        device_name: str | None = None,
        transfer_chunk_bytes: int = _CHUNK_BYTES,
    ) -> None:
        self._target: SshTarget = resolve_target(
            config, ssh_config_path=ssh_config_path, device_name=device_name
        )
        self._client: paramiko.SSHClient | None = None
        self._jumps: tuple[paramiko.SSHClient, ...] = ()
        self._sftp: paramiko.SFTPClient | None = None
        self._chunk_bytes = transfer_chunk_bytes
        #: How many times the connection was re-opened after it dropped.
        self.reconnects = 0
        self.description = self._target.hop.description

    # -- connection -------------------------------------------------------------------------

    @property
    def route(self) -> tuple[str, ...]:
        """The hops of the connection: ProxyJump hosts then the device (``user@host:port``)."""
        return (*(j.description for j in self._target.jumps), self._target.hop.description)

    def connect(self) -> None:
        """Open the connection now (it is otherwise opened by the first call)."""
        if self._client is None:
            self._client, self._jumps = open_client(self._target)

    def reconnect(self) -> None:
        """Drop the current connection (dead or alive) and open a new one."""
        self._drop()
        self.connect()
        self.reconnects += 1

    def close(self) -> None:
        """Close the connection and every ProxyJump hop. Safe to call twice."""
        self._drop()

    def _drop(self) -> None:
        for closable in (self._sftp, self._client, *reversed(self._jumps)):
            if closable is not None:
                # closing a dead connection may raise anything; it is gone either way
                with contextlib.suppress(Exception):
                    closable.close()
        self._sftp, self._client, self._jumps = None, None, ()

    def _transport(self) -> paramiko.Transport:
        self.connect()
        assert self._client is not None
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise _NotStarted()
        return transport

    def __enter__(self) -> SshTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands ---------------------------------------------------------------------------

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv`` on the device; a timeout kills its process group (DeviceTimeoutError).

        If the connection turns out to be dead before the command starts, reconnect once and
        try again; a connection lost while the command runs raises DeviceConnectionError.
        """
        command = build_command(argv, cwd, env)
        for attempt in (0, 1):
            try:
                return self._run_once(tuple(argv), command, timeout_s)
            except _NotStarted as exc:
                if attempt == 1:
                    raise DeviceConnectionError(
                        f"lost the connection to {self.description} again after reconnecting"
                    ) from exc
                self.reconnect()
        raise AssertionError("unreachable")

    def _run_once(self, argv: tuple[str, ...], command: str, timeout_s: float) -> CommandResult:
        started = time.monotonic()
        deadline = started + timeout_s
        try:
            channel = self._transport().open_session(timeout=min(timeout_s, 30.0))
            channel.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise _NotStarted() from exc
        try:
            out, err, code = self._collect(channel, deadline)
        except _Timeout as timed_out:
            self._kill_group(timed_out.stderr)
            raise DeviceTimeoutError(
                f"command {argv[0]!r} on {self.description} did not finish within {timeout_s:g} s"
                " (its process group was killed)"
            ) from None
        finally:
            channel.close()
        err, _ = _strip_pid_line(err)
        if code is None:
            raise DeviceConnectionError(
                f"the connection to {self.description} dropped while {argv[0]!r} was running",
                hint="check the device's power and network; the job can be retried",
            )
        return CommandResult(
            argv=argv,
            exit_code=code,
            stdout=out.decode("utf-8", errors="replace"),
            stderr=err.decode("utf-8", errors="replace"),
            duration_s=time.monotonic() - started,
        )

    def _collect(
        self, channel: paramiko.Channel, deadline: float
    ) -> tuple[bytes, bytes, int | None]:
        """Read stdout/stderr until the command exits; exit code None if the link dropped.

        paramiko ignores ``exit-signal``: a command killed by a signal ends with EOF and close
        but no status, and is reported with exit code -1. A channel closed without EOF means
        the connection itself went away.
        """
        out, err = bytearray(), bytearray()
        fd = channel.fileno()
        while True:
            while channel.recv_ready():
                out += channel.recv(_CHUNK_BYTES)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(_CHUNK_BYTES)
            has_status = channel.exit_status != -1  # set only by a real exit-status message
            pending = channel.recv_ready() or channel.recv_stderr_ready()
            if not pending and has_status and channel.eof_received:
                return bytes(out), bytes(err), channel.exit_status
            if not pending and channel.closed:
                if has_status:
                    return bytes(out), bytes(err), channel.exit_status
                return bytes(out), bytes(err), -1 if channel.eof_received else None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout(bytes(err))
            # The pipe behind fileno() is set on data, EOF and close, not on exit-status:
            # cap the wait so an exit status arriving alone is noticed quickly.
            select.select([fd], [], [], min(remaining, 0.05))

    def _kill_group(self, stderr: bytes) -> None:
        """Kill the timed-out command's process group through a second channel."""
        _, pgid = _strip_pid_line(stderr)
        if pgid is None:
            return  # the wrapper never ran, so nothing was started
        script = f"kill -KILL -- -{pgid} 2>/dev/null || kill -KILL {pgid} 2>/dev/null; exit 0"
        try:
            killer = self._transport().open_session(timeout=_KILL_TIMEOUT_S)
            killer.exec_command(script)
            killer.status_event.wait(_KILL_TIMEOUT_S)
            killer.close()
        except (_NotStarted, paramiko.SSHException, EOFError, OSError):
            pass  # the connection is gone; sshd kills the session's processes with it

    # -- files ------------------------------------------------------------------------------

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = paramiko.SFTPClient.from_transport(
                    self._transport(), window_size=WINDOW_SIZE_BYTES
                )
            except _NotStarted:
                self.reconnect()
                self._sftp = paramiko.SFTPClient.from_transport(
                    self._transport(), window_size=WINDOW_SIZE_BYTES
                )
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise DeviceConnectionError(
                    f"cannot start SFTP on {self.description}: {exc}",
                    hint="the device's sshd needs an sftp subsystem (Subsystem sftp ...)",
                ) from exc
            if self._sftp is None:
                raise DeviceConnectionError(f"{self.description} refused the SFTP subsystem")
        return self._sftp

    def push(
        self,
        local_path: Path,
        remote_path: str,
        *,
        timeout_s: float,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Upload a file with pipelined SFTP writes (many requests in flight)."""
        local_path = Path(local_path)
        deadline = time.monotonic() + timeout_s
        try:
            total = local_path.stat().st_size
            fin = local_path.open("rb")
        except OSError as exc:
            raise TransferError(f"cannot read {local_path}: {exc.strerror or exc}") from exc
        sftp = self._sftp_client()
        done = 0
        try:
            with fin:
                sftp.get_channel().settimeout(timeout_s)  # type: ignore[union-attr]
                with sftp.open(remote_path, "wb") as fout:
                    fout.set_pipelined(True)
                    while chunk := fin.read(self._chunk_bytes):
                        fout.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
                        if time.monotonic() > deadline:
                            raise TimeoutError()
                    _wait_for_write_acks(sftp, fout)
            size = sftp.stat(remote_path).st_size
            if size != total:
                raise TransferError(
                    f"push of {remote_path} on {self.description} stopped at {size} of {total} bytes"
                )
        except Exception as exc:
            raise self._transfer_error(exc, "push", remote_path, timeout_s) from exc

    def pull(
        self,
        remote_path: str,
        local_path: Path,
        *,
        timeout_s: float,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Download a file with SFTP read-ahead; written to ``<local>.part`` then renamed."""
        local_path = Path(local_path)
        deadline = time.monotonic() + timeout_s
        tmp = local_path.with_name(local_path.name + ".part")
        sftp = self._sftp_client()
        try:
            sftp.get_channel().settimeout(timeout_s)  # type: ignore[union-attr]
            total = sftp.stat(remote_path).st_size or 0
            done = 0
            with sftp.open(remote_path, "rb") as fin, tmp.open("wb") as fout:
                # paramiko's default 32 KiB reads cap pulls near 60 MB/s on loopback; OpenSSH
                # serves reads up to 255 KiB (larger ones are shortened, which paramiko's
                # read-ahead handles), which is ~4x faster. Unbounded read-ahead is slower.
                fin.MAX_REQUEST_SIZE = _READ_REQUEST_BYTES
                fin.prefetch(total, max_concurrent_requests=64)
                while chunk := fin.read(self._chunk_bytes):
                    fout.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
                    if time.monotonic() > deadline:
                        raise TimeoutError()
            if done != total:
                raise TransferError(f"pull of {remote_path} got {done} of {total} bytes")
            tmp.replace(local_path)
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            raise self._transfer_error(exc, "pull", remote_path, timeout_s) from exc

    def _transfer_error(
        self, exc: Exception, verb: str, remote_path: str, timeout_s: float
    ) -> Exception:
        """Map what paramiko/the OS raised during a transfer onto the HarnessError tree."""
        where = f"{remote_path} on {self.description}"
        if isinstance(exc, (TransferError, DeviceConnectionError)):
            return exc
        if isinstance(exc, (socket.timeout, TimeoutError)):
            self._drop()  # a half-finished SFTP exchange cannot be reused
            return DeviceTimeoutError(f"{verb} of {where} did not finish within {timeout_s:g} s")
        if isinstance(exc, (EOFError, paramiko.SSHException, ConnectionError)):
            self._drop()
            return DeviceConnectionError(f"the connection dropped during the {verb} of {where}")
        if isinstance(exc, OSError):
            text = str(exc.strerror or exc)
            # SFTPv3 (OpenSSH) has no "disk full" status: ENOSPC arrives as a bare "Failure".
            full = exc.errno == errno.ENOSPC or "space" in text.lower() or text == "Failure"
            if verb == "push" and full:
                return DeviceFullError(
                    f"no space left on {self.description} for {remote_path} (the device said: "
                    f"{text})",
                    hint="free space in the work directory or point work_dir at a bigger disk",
                )
            return TransferError(f"{verb} of {where} failed: {text}")
        return TransferError(f"{verb} of {where} failed: {exc}")


class _Timeout(Exception):
    """The command outlived its deadline; carries the stderr read so far (with the PID line)."""

    def __init__(self, stderr: bytes) -> None:
        super().__init__("timeout")
        self.stderr = stderr


def _wait_for_write_acks(sftp: paramiko.SFTPClient, handle: paramiko.SFTPFile) -> None:
    """Read the status of every pipelined write, raising the first error.

    paramiko only checks pipelined write acks when more than 100 are pending, and close()
    discards the rest, so without this an ENOSPC in the last writes would go unnoticed.
    """
    pending = getattr(handle, "_reqs", None)
    while pending:
        sftp._read_response(pending.popleft())  # type: ignore[attr-defined]


def _strip_pid_line(err: bytes) -> tuple[bytes, int | None]:
    match = _PID_LINE.search(err)
    if match is None:
        return err, None
    return err[: match.start()] + err[match.end() :], int(match.group(1))
