"""The device side of the ADB peer: paths, free space, stand-in binaries, command environment.

``/data/local/tmp`` is the peer's root directory; ``/sys/...`` and fixture-backed
``/proc/...`` are the fixture tree of a real phone (read-only). The mapping applies to sync
paths and, textually, to command strings.
"""

from __future__ import annotations

import errno
import os
import re
import shlex
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.peers.adbd import PeerOptions

DEVICE_PATH_ROOT = "/data/local/tmp"


def _getprop_script() -> str:
    return (
        "#!/bin/sh\n"
        'f="$HARNESS_PEER_FIXTURES/getprop.txt"\n'
        '[ -f "$f" ] || exit 0\n'
        'if [ $# -eq 0 ]; then cat "$f"; exit 0; fi\n'
        'v=$(grep -F "[$1]: [" "$f" | head -n 1 | sed "s/^\\[[^]]*\\]: \\[\\(.*\\)\\]\\$/\\1/")\n'
        'printf "%s\\n" "$v"\n'
    )


def _dumpsys_script() -> str:
    return (
        "#!/bin/sh\n"
        'f="$HARNESS_PEER_FIXTURES/dumpsys/$1.txt"\n'
        'if [ -f "$f" ]; then cat "$f"; else echo "Can\'t find service: $1" >&2; fi\n'
    )


class PeerDevice:
    """Device path -> host path (``/data/local/tmp`` -> root; ``/sys``, ``/proc`` -> fixtures).

    Also owns the stand-in binaries put first on ``PATH`` and the banner's product props.
    """

    def __init__(self, options: PeerOptions) -> None:
        self.options = options
        self._lock = threading.Lock()
        self._bin = Path(tempfile.mkdtemp(prefix="adbd-peer-bin-"))
        self._write_standins()
        self.product = self._banner_props()

    def cleanup(self) -> None:
        """Remove the stand-in binaries."""
        shutil.rmtree(self._bin, ignore_errors=True)

    def to_host(self, device_path: str, *, write: bool) -> Path:
        """Host path for ``device_path``; ``OSError`` with an errno when it is not mapped."""
        path = os.path.normpath("/" + device_path.lstrip("/")) if device_path else "/"
        if path == DEVICE_PATH_ROOT or path.startswith(DEVICE_PATH_ROOT + "/"):
            return self.options.root / path[len(DEVICE_PATH_ROOT) :].lstrip("/")
        fixtures = self.options.fixtures
        if fixtures is not None and (path.startswith("/sys/") or path.startswith("/proc/")):
            if write:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            return fixtures / path.lstrip("/")
        raise OSError(errno.EACCES if write else errno.ENOENT, os.strerror(errno.ENOENT))

    def reserve(self, size_bytes: int) -> None:
        """Account new data; ``OSError(ENOSPC)`` when the configured free space is used up."""
        with self._lock:
            free = self.options.free_bytes
            if free is None:
                return
            if size_bytes > free:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self.options.free_bytes = free - size_bytes

    def _write_standins(self) -> None:
        # python3 is the peer's own interpreter (it has onnxruntime and LiteRT), standing in
        # for Termux's python on a phone, so the harness runner can run "on the device".
        python = f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n'
        scripts = {
            "getprop": _getprop_script(),
            "dumpsys": _dumpsys_script(),
            "python3": python,
            "python": python,
        }
        scripts.update(self.options.standins)
        for name, text in scripts.items():
            path = self._bin / name
            path.write_text(text)
            path.chmod(0o755)

    def _banner_props(self) -> dict[str, str]:
        props = {
            "ro.product.name": "peer",
            "ro.product.model": "ADB_Peer",
            "ro.product.device": "peer",
        }
        getprop = self.options.fixtures / "getprop.txt" if self.options.fixtures else None
        if getprop is not None and getprop.is_file():
            for line in getprop.read_text().splitlines():
                m = re.match(r"^\[([^\]]+)\]: \[(.*)\]$", line)
                if m and m.group(1) in props:
                    props[m.group(1)] = re.sub(r"[:;=,\s]", "_", m.group(2))
        return props

    def command_env(self) -> dict[str, str]:
        """The environment device commands run with."""
        env = {k: v for k, v in os.environ.items() if k in ("LANG", "LC_ALL", "TZ", "USER")}
        env.update(
            PATH=f"{self._bin}:/usr/local/bin:/usr/bin:/bin",
            HOME=str(self.options.root),
            TMPDIR=str(self.options.root),
            HARNESS_PEER_ROOT=str(self.options.root),
            HARNESS_PEER_FIXTURES=str(self.options.fixtures or ""),
        )
        return env

    def rewrite_command(self, command: str) -> str:
        """Map device paths in a command string to the host stand-ins."""
        command = command.replace(DEVICE_PATH_ROOT, str(self.options.root))
        fixtures = self.options.fixtures
        if fixtures is None:
            return command

        def repl(m: re.Match[str]) -> str:
            top, rest = m.group(1), m.group(2) or ""
            if top == "/proc":
                first = rest.lstrip("/").split("/", 1)[0]
                if not first or not (fixtures / "proc" / first).exists():
                    return m.group(0)
            return f"{fixtures}{top}{rest}"

        return re.sub(r"(?<![\w./-])(/sys|/proc)(/[^\s'\";|&<>()*]*)?", repl, command)
