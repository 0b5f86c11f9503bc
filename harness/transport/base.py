"""The Transport protocol: how the host talks to a device, whatever the link.

One implementation per link (``local``, ``ssh``, ``adb``). Everything above this layer
(deploy, session, power) only uses :class:`Transport`, so it works on every device kind.

Rules every implementation follows:

* ``run`` takes an argv list, never a shell string; implementations that must go through a
  shell quote each element with :func:`shlex.quote`.
* every call has a timeout; a timed-out command is killed on the device and
  :class:`~harness.errors.DeviceTimeoutError` is raised.
* ``run`` always reports the exit code; a non-zero code is *not* an exception (use
  :meth:`CommandResult.check`).
* ``push``/``pull`` raise :class:`~harness.errors.TransferError` (or ``DeviceFullError``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from harness.errors import RemoteCommandError

# Called with (bytes_done, bytes_total) while a transfer progresses.
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class CommandResult:
    """What one command on a device did."""

    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        """True when the command exited with code 0."""
        return self.exit_code == 0

    def check(self, what: str | None = None) -> CommandResult:
        """Return self, or raise :class:`RemoteCommandError` when the exit code is not 0."""
        if self.exit_code != 0:
            label = what or " ".join(self.argv[:3])
            tail = (self.stderr.strip() or self.stdout.strip()).splitlines()[-1:] or [""]
            raise RemoteCommandError(f"{label} failed with exit code {self.exit_code}: {tail[0]}")
        return self


@runtime_checkable
class Transport(Protocol):
    """A connection to one device. Not thread-safe: one job at a time per transport."""

    #: Human-readable description of the peer, e.g. ``local``, ``pi@192.168.1.40:22``.
    description: str

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv`` on the device and wait for it, at most ``timeout_s`` seconds."""
        ...

    def push(
        self,
        local_path: Path,
        remote_path: str,
        *,
        timeout_s: float,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Copy a local file to ``remote_path`` on the device (parent directories must exist)."""
        ...

    def pull(
        self,
        remote_path: str,
        local_path: Path,
        *,
        timeout_s: float,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Copy ``remote_path`` from the device to a local file."""
        ...

    def close(self) -> None:
        """Release the connection. Safe to call twice."""
        ...
