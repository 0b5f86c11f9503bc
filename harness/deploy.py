"""Idempotent, content-addressed provisioning of files on a device (any transport).

A model goes to ``<remote_dir>/<sha256[:16]>/<filename>``. Checking whether it is already there
with the right content costs one ``run`` (one round trip); otherwise it is pushed to a temp
name, its sha256 is verified *on the device*, and it is renamed into place, so a half-pushed or
corrupted file is never used. The runner scripts go as one bundle keyed by their combined hash.

Only :meth:`Transport.run` and :meth:`Transport.push` are used; every helper script is passed
to ``sh -c`` with the paths as positional arguments, so no path is ever parsed by a shell.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigError, TransferError
from harness.transport.base import ProgressCallback, Transport

_HASH_CHUNK_BYTES = 1024 * 1024
_SHORT_TIMEOUT_S = 60.0
_RACY_NS = 2_000_000_000

# sha256 of "$1" or nothing: coreutils, then toybox (Android), then BSD/macOS, then python3.
_SHA_FN = r"""
h() {
  { sha256sum "$1" || toybox sha256sum "$1" || shasum -a 256 "$1" ||
    python3 -c 'import hashlib,sys
d=hashlib.sha256()
with open(sys.argv[1],"rb") as f:
    for b in iter(lambda: f.read(1<<20), b""): d.update(b)
print(d.hexdigest())' "$1"; } 2>/dev/null | { read -r s _; printf '%s\n' "$s"; }
}
"""

# $1: directory to create; then pairs "path sha256". One line per pair: ok | missing | bad | nohash
_CHECK_SCRIPT = (
    _SHA_FN
    + r"""
mkdir -p -- "$1" || exit 2
shift
while [ "$#" -ge 2 ]; do
  if [ ! -f "$1" ]; then echo missing
  else
    got=$(h "$1")
    if [ -z "$got" ]; then echo nohash
    elif [ "$got" = "$2" ]; then echo ok
    else echo bad; fi
  fi
  shift 2
done
"""
)

# triples "tmp dest sha256": verify each tmp, then rename all; on a mismatch remove the temps.
_COMMIT_SCRIPT = (
    _SHA_FN
    + r"""
i=0
n=$(($# / 3))
while [ "$i" -lt "$n" ]; do
  i=$((i + 1))
  got=$(h "$1")
  if [ "$got" != "$3" ]; then
    echo "mismatch $2 ${got:-nohash}"
    exit 3
  fi
  set -- "$@" "$1" "$2"
  shift 3
done
while [ "$#" -ge 2 ]; do mv -f -- "$1" "$2" || exit 4; shift 2; done
echo committed
"""
)


@dataclass(frozen=True)
class DeployedFile:
    """One file known to be on the device with the right content."""

    remote_path: str
    sha256: str
    size_bytes: int
    pushed: bool  # False: it was already there, only checked
    duration_s: float


@dataclass(frozen=True)
class DeployedBundle:
    """A set of files (the runner) in one directory keyed by their combined hash."""

    remote_dir: str
    sha256: str  # over the sorted (name, file sha256) pairs
    files: tuple[DeployedFile, ...]
    pushed: bool
    duration_s: float


# (resolved path, size, mtime_ns, inode) -> sha256: a session deploys the same model many times.
_local_hashes: dict[tuple[str, int, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """The hex sha256 of a local file (cached per process while size and mtime are unchanged)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    cached = _local_hashes.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_HASH_CHUNK_BYTES), b""):
            digest.update(block)
    sha = digest.hexdigest()
    # Like git's "racy clean" rule: a file modified within the mtime granularity could change
    # again without its (size, mtime) changing, so only cache files that have been still a while.
    if time.time_ns() - stat.st_mtime_ns > _RACY_NS:
        _local_hashes[key] = sha
    return sha


def check_remote_path(path: str) -> str:
    """Reject remote paths that could leave the work directory (``..``) or are empty."""
    if not path or "\x00" in path or "\n" in path:
        raise ConfigError(f"invalid remote path {path!r}")
    if ".." in path.split("/"):
        raise ConfigError(f"remote path {path!r} must not contain '..' components")
    return path


def _check_name(name: str) -> str:
    if name in {"", ".", ".."} or "/" in name:
        raise ConfigError(f"invalid file name {name!r} for the device")
    return name


def _sh(transport: Transport, script: str, args: Sequence[str], timeout_s: float) -> list[str]:
    result = transport.run(["sh", "-c", script, "sh", *args], timeout_s=timeout_s)
    if not result.ok:
        tail = (result.stdout.strip() or result.stderr.strip()).splitlines()[-1:] or [""]
        if result.exit_code == 3 and tail[0].startswith("mismatch"):
            _, where, got = tail[0].split(" ", 2)
            raise TransferError(
                f"{where} arrived on {transport.description} with sha256 {got}, not the one sent",
                hint="the transfer was corrupted; run again, and check the device's storage",
            )
        raise TransferError(
            f"provisioning on {transport.description} failed (exit {result.exit_code}): "
            f"{tail[0] or result.stderr.strip()}"
        )
    return result.stdout.split()


def remote_sha256(
    transport: Transport, path: str, timeout_s: float = _SHORT_TIMEOUT_S
) -> str | None:
    """The sha256 of a file on the device, or None when the file does not exist.

    Uses ``sha256sum``, then ``toybox sha256sum``, ``shasum -a 256``, then ``python3``; raises
    TransferError when the device has none of them.
    """
    check_remote_path(path)
    script = (
        _SHA_FN + '[ -f "$1" ] || { echo missing; exit 0; }; got=$(h "$1"); echo "${got:-nohash}"'
    )
    words = _sh(transport, script, [path], timeout_s)
    value = words[0] if words else "nohash"
    if value == "missing":
        return None
    if value == "nohash":
        raise TransferError(
            f"{transport.description} has no sha256 tool (sha256sum, toybox, shasum, python3)",
            hint="install coreutils or python3 on the device",
        )
    return value


def expand_home(transport: Transport, path: str, *, timeout_s: float = _SHORT_TIMEOUT_S) -> str:
    """Replace a leading ``~`` by the device user's home (quoted paths are never expanded)."""
    if path != "~" and not path.startswith("~/"):
        return check_remote_path(path)
    result = transport.run(["sh", "-c", 'printf "%s" "$HOME"'], timeout_s=timeout_s)
    home = result.check("reading $HOME").stdout.strip()
    if not home.startswith("/"):
        raise TransferError(f"{transport.description} has no usable $HOME ({home!r})")
    return check_remote_path(home.rstrip("/") + path[1:])


def ensure_dir(transport: Transport, path: str, *, timeout_s: float = _SHORT_TIMEOUT_S) -> None:
    """``mkdir -p`` a directory on the device."""
    check_remote_path(path)
    transport.run(["mkdir", "-p", "--", path], timeout_s=timeout_s).check(f"mkdir -p {path}")


def _verdicts(words: list[str], count: int, transport: Transport) -> list[str]:
    if len(words) != count:
        raise TransferError(f"unexpected answer from {transport.description}: {' '.join(words)}")
    if "nohash" in words:
        raise TransferError(
            f"{transport.description} has no sha256 tool (sha256sum, toybox, shasum, python3)",
            hint="install coreutils or python3 on the device",
        )
    return words


def _push_and_commit(
    transport: Transport,
    items: Sequence[tuple[Path, str, str]],
    *,
    timeout_s: float,
    progress: ProgressCallback | None,
) -> None:
    """Push each (local, dest, sha) to a temp name, verify all on the device, rename all."""
    token = secrets.token_hex(4)
    triples: list[str] = []
    temps: list[str] = []
    try:
        for local, dest, sha in items:
            tmp = posixpath.join(
                posixpath.dirname(dest), f".{posixpath.basename(dest)}.{token}.part"
            )
            temps.append(tmp)
            transport.push(local, tmp, timeout_s=timeout_s, progress=progress)
            triples += [tmp, dest, sha]
        _sh(transport, _COMMIT_SCRIPT, triples, _SHORT_TIMEOUT_S)
    except BaseException:
        # Best effort: leave no half-written temp files behind (the device may be full).
        with contextlib.suppress(Exception):  # the original error is the one to report
            transport.run(["rm", "-f", "--", *temps], timeout_s=_SHORT_TIMEOUT_S)
        raise


def deploy_file(
    transport: Transport,
    local: Path,
    remote_dir: str,
    *,
    timeout_s: float,
    progress: ProgressCallback | None = None,
) -> DeployedFile:
    """Make ``local`` present at ``<remote_dir>/<sha256[:16]>/<name>``; push only if needed."""
    started = time.monotonic()
    local = Path(local)
    name = _check_name(local.name)
    remote_dir = check_remote_path(remote_dir.rstrip("/") or "/")
    try:
        sha, size = file_sha256(local), local.stat().st_size
    except OSError as exc:
        raise TransferError(f"cannot read {local}: {exc.strerror or exc}") from exc
    dest_dir = posixpath.join(remote_dir, sha[:16])
    dest = posixpath.join(dest_dir, name)
    words = _sh(transport, _CHECK_SCRIPT, [dest_dir, dest, sha], timeout_s=_SHORT_TIMEOUT_S)
    if _verdicts(words, 1, transport)[0] != "ok":
        _push_and_commit(transport, [(local, dest, sha)], timeout_s=timeout_s, progress=progress)
        pushed = True
    else:
        pushed = False
    return DeployedFile(dest, sha, size, pushed, time.monotonic() - started)


def _combined_sha256(names: Sequence[str], shas: Sequence[str]) -> str:
    lines = sorted(f"{n}\0{s}\n" for n, s in zip(names, shas, strict=True))
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def bundle_sha256(files: Sequence[Path]) -> str:
    """The combined hash of a set of files: sha256 over sorted ``name\\0sha256\\n`` lines."""
    return _combined_sha256([Path(f).name for f in files], [file_sha256(Path(f)) for f in files])


def deploy_bundle(
    transport: Transport,
    files: Sequence[Path],
    remote_dir: str,
    *,
    timeout_s: float,
    progress: ProgressCallback | None = None,
) -> DeployedBundle:
    """Put ``files`` together in ``<remote_dir>/<combined sha256[:16]>/``; one check round trip."""
    started = time.monotonic()
    paths = [Path(f) for f in files]
    names = [_check_name(p.name) for p in paths]
    if not paths or len(set(names)) != len(names):
        raise ConfigError("a bundle needs at least one file and unique file names")
    remote_dir = check_remote_path(remote_dir.rstrip("/") or "/")
    try:
        shas = [file_sha256(p) for p in paths]
        sizes = [p.stat().st_size for p in paths]
    except OSError as exc:
        raise TransferError(f"cannot read a bundle file: {exc}") from exc
    combined = _combined_sha256(names, shas)
    bundle_dir = posixpath.join(remote_dir, combined[:16])
    dests = [posixpath.join(bundle_dir, n) for n in names]
    args = [bundle_dir]
    for dest, sha in zip(dests, shas, strict=True):
        args += [dest, sha]
    verdicts = _verdicts(
        _sh(transport, _CHECK_SCRIPT, args, _SHORT_TIMEOUT_S), len(paths), transport
    )
    todo = [(p, d, s) for p, d, s, v in zip(paths, dests, shas, verdicts, strict=True) if v != "ok"]
    if todo:
        _push_and_commit(transport, todo, timeout_s=timeout_s, progress=progress)
    deployed = tuple(
        DeployedFile(d, s, z, v != "ok", 0.0)
        for d, s, z, v in zip(dests, shas, sizes, verdicts, strict=True)
    )
    return DeployedBundle(bundle_dir, combined, deployed, bool(todo), time.monotonic() - started)
