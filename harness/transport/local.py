"""The host itself as a device: subprocesses and file copies."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.errors import DeviceError, DeviceFullError, DeviceTimeoutError, TransferError
from harness.transport.base import CommandResult, ProgressCallback

_COPY_CHUNK_BYTES = 4 * 1024 * 1024


class LocalTransport:
    """Runs commands with :mod:`subprocess` in their own process group."""

    description = "local"

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Run ``argv``; on timeout kill its whole process group and raise DeviceTimeoutError."""
        full_env = None
        if env is not None:
            full_env = dict(os.environ)
            full_env.update(env)
        started = time.monotonic()
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # own process group, so a timeout kills children too
            )
        except FileNotFoundError as exc:
            return CommandResult(tuple(argv), 127, "", f"{exc}", time.monotonic() - started)
        except OSError as exc:
            raise DeviceError(f"cannot start {argv[0]!r} on the local device: {exc}") from exc
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired as exc:
            _kill_group(proc)
            proc.communicate()
            raise DeviceTimeoutError(
                f"command {argv[0]!r} on the local device did not finish within {timeout_s:g} s"
            ) from exc
        return CommandResult(
            argv=tuple(argv),
            exit_code=proc.returncode,
            stdout=out.decode("utf-8", errors="replace"),
            stderr=err.decode("utf-8", errors="replace"),
            duration_s=time.monotonic() - started,
        )

    def push(
        self,
        local_path: Path,
        remote_path: str,
        *,
        timeout_s: float,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Copy a file into the local work directory."""
        _copy(Path(local_path), Path(remote_path), timeout_s, progress)

    def pull(
        self,
        remote_path: str,
        local_path: Path,
        *,
        timeout_s: float,
        progress: ProgressCallback | None = None,
    ) -> None:
        """Copy a file out of the local work directory."""
        _copy(Path(remote_path), Path(local_path), timeout_s, progress)

    def close(self) -> None:
        """Nothing to release."""


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone: nothing to kill
        os.killpg(proc.pid, signal.SIGKILL)


def _copy(src: Path, dst: Path, timeout_s: float, progress: ProgressCallback | None) -> None:
    deadline = time.monotonic() + timeout_s
    tmp = dst.with_name(dst.name + ".part")
    try:
        total = src.stat().st_size
        done = 0
        with src.open("rb") as fin, tmp.open("wb") as fout:
            while chunk := fin.read(_COPY_CHUNK_BYTES):
                fout.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
                if time.monotonic() > deadline:
                    raise DeviceTimeoutError(f"copying {src} did not finish within {timeout_s:g} s")
        os.replace(tmp, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise DeviceFullError(f"no space left on the local device for {dst}") from exc
        raise TransferError(f"cannot copy {src} to {dst}: {exc.strerror or exc}") from exc
    except DeviceTimeoutError:
        tmp.unlink(missing_ok=True)
        raise
