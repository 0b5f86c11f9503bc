"""ADB push throughput: harness' direct mode (adb-shell) vs Debian's ``adb push``, same peer.

Both clients push the same random file into one ADB peer running as its own process
(``python -m tests.peers.adbd``), alternately, and every pushed copy is checked byte for byte.
The goal is ``harness / adb >= 0.8`` (throughput ratio of the medians).

    python bench/adb_transfer.py [--size-mb 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from harness.profiles import AdbTransportConfig  # noqa: E402
from harness.transport.adb import AdbTransport  # noqa: E402
from tests.peers.adbd_support import FIXTURES_DIR, free_port, make_key_pair  # noqa: E402


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("adb") is None:
        print("Debian's adb is needed: apt-get install adb", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="adb-bench-"))
    key = make_key_pair(work / "key")
    (work / "adbkey.pub").write_text(key.public_text)
    source = work / "payload.bin"
    with source.open("wb") as out:
        for _ in range(args.size_mb):
            out.write(os.urandom(1 << 20))
    expected = _sha256(source)
    root = work / "device"
    port = free_port()
    peer = subprocess.Popen(
        [sys.executable, "-m", "tests.peers.adbd", "--port", str(port), "--root", str(root),
         "--fixtures", str(FIXTURES_DIR), "--authorized-key", str(work / "adbkey.pub")],
        cwd=REPO, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert peer.stdout is not None
    peer.stdout.readline()

    home = work / "home"
    (home / ".android").mkdir(parents=True)
    shutil.copy(key.private_path, home / ".android" / "adbkey")
    (home / ".android" / "adbkey.pub").write_text(key.public_text)
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANDROID_ADB_SERVER_PORT": str(free_port()),
    }
    serial = f"127.0.0.1:{port}"

    def adb(*a: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["adb", *a], env=env, capture_output=True, text=True, timeout=300)

    config = AdbTransportConfig(kind="adb", address=serial, key_file=str(key.private_path))
    phone = AdbTransport(config)
    size = source.stat().st_size
    times: dict[str, list[float]] = {"harness (adb-shell direct)": [], "Debian adb push": []}
    try:
        adb("start-server")
        assert "connected" in adb("connect", serial).stdout
        phone.run(["true"], timeout_s=30)  # connect + auth outside the timing, as adb connect
        for run in range(args.runs):
            target = f"/data/local/tmp/h{run}.bin"
            started = time.perf_counter()
            phone.push(source, target, timeout_s=300)
            times["harness (adb-shell direct)"].append(time.perf_counter() - started)
            assert _sha256(root / f"h{run}.bin") == expected
            target = f"/data/local/tmp/a{run}.bin"
            started = time.perf_counter()
            result = adb("-s", serial, "push", str(source), target)
            times["Debian adb push"].append(time.perf_counter() - started)
            assert result.returncode == 0, result.stderr
            assert _sha256(root / f"a{run}.bin") == expected
            for name in (f"h{run}.bin", f"a{run}.bin"):
                (root / name).unlink()
    finally:
        phone.close()
        adb("kill-server")
        os.killpg(peer.pid, signal.SIGTERM)
        peer.wait(10)
        shutil.rmtree(work, ignore_errors=True)

    rates = {}
    print(f"push of {size / 2**20:.0f} MiB into the ADB peer, {args.runs} runs each")
    for name, values in times.items():
        rates[name] = size / statistics.median(values) / 2**20
        runs = ", ".join(f"{v:.3f}" for v in values)
        print(f"  {name:28s} median {rates[name]:7.1f} MiB/s  (runs, s: {runs})")
    ratio = rates["harness (adb-shell direct)"] / rates["Debian adb push"]
    print(
        f"  ratio harness / adb = {ratio:.2f}  (goal >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
