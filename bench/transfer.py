"""SFTP push throughput vs scp, and the cost of re-deploying an unchanged model.

Starts a real sshd on 127.0.0.1 (tests/peers/sshd.py), then, alternating to share any drift:
pushes a random file with :class:`SshTransport` (pipelined SFTP) and with OpenSSH's ``scp`` to
the same server. Prints MB/s for both, the ratio (goal >= 0.8), then the time of
``deploy_file`` for an unchanged file (goal: one round trip, i.e. about one ``run``).

    python bench/transfer.py [--size-mb 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

_REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_REPO))

from harness.deploy import deploy_file, file_sha256  # noqa: E402
from harness.transport.base import CommandResult, ProgressCallback  # noqa: E402
from harness.transport.ssh import SshTransport  # noqa: E402
from tests.peers.sshd import SshdProcess, SshdServer  # noqa: E402


def _scp(server: SshdServer, local: Path, remote: str, *extra: str, pull: bool = False) -> None:
    where = f"{server.user}@{server.host}:{remote}"
    subprocess.run(
        [
            "scp",
            "-q",
            *extra,
            "-P",
            str(server.port),
            "-i",
            str(server.key_path),
            "-o",
            f"UserKnownHostsFile={server.known_hosts_path}",
            "-o",
            "BatchMode=yes",
            *((where, str(local)) if pull else (str(local), where)),
        ],
        check=True,
    )


def _write_random(path: Path, size_bytes: int) -> None:
    with path.open("wb") as out:
        left = size_bytes
        while left:
            block = os.urandom(min(left, 4 * 1024 * 1024))
            out.write(block)
            left -= len(block)


class _CountingRuns:
    """Counts ``run`` calls made through a transport (round trips)."""

    def __init__(self, inner: SshTransport) -> None:
        self.inner = inner
        self.description = inner.description
        self.runs = 0

    def run(
        self,
        argv: Sequence[str],
        *,
        timeout_s: float,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        self.runs += 1
        return self.inner.run(argv, timeout_s=timeout_s, cwd=cwd, env=env)

    def push(
        self,
        local_path: Path,
        remote_path: str,
        *,
        timeout_s: float,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.inner.push(local_path, remote_path, timeout_s=timeout_s, progress=progress)

    def pull(
        self,
        remote_path: str,
        local_path: Path,
        *,
        timeout_s: float,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.inner.pull(remote_path, local_path, timeout_s=timeout_s, progress=progress)

    def close(self) -> None:
        self.inner.close()


def main() -> int:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mb * 1000 * 1000
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp_text:
        tmp = Path(tmp_text)
        sshd = SshdProcess(tmp / "sshd")
        server = sshd.start()
        ssh = SshTransport(server.transport_config())
        try:
            model = tmp / "model.bin"
            _write_random(model, size)
            remote = tmp / "remote"
            remote.mkdir()
            ssh.connect()
            sftp_s: list[float] = []
            scp_s: list[float] = []
            scp_gcm_s: list[float] = []
            runs = (("sftp", sftp_s), ("scp", scp_s), ("scp-gcm", scp_gcm_s))
            for i in range(args.repeats):
                for label, times in runs[:: 1 if i % 2 == 0 else -1]:
                    target = remote / f"{label}.bin"
                    target.unlink(missing_ok=True)
                    started = time.perf_counter()
                    if label == "sftp":
                        ssh.push(model, str(target), timeout_s=600)
                    elif label == "scp":
                        _scp(server, model, str(target))
                    else:
                        _scp(server, model, str(target), "-c", "aes128-gcm@openssh.com")
                    times.append(time.perf_counter() - started)
                    if target.stat().st_size != size:
                        raise SystemExit(f"{label} push is incomplete")
            empty = tmp / "empty.bin"
            empty.touch()
            setup_s: list[float] = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                _scp(server, empty, str(remote / "empty.bin"))
                setup_s.append(time.perf_counter() - started)
            if file_sha256(remote / "sftp.bin") != file_sha256(model):
                raise SystemExit("the SFTP copy differs from the original")
            mb = size / 1e6
            sftp_rate = mb / statistics.median(sftp_s)
            scp_rate = mb / statistics.median(scp_s)
            print(f"file: {args.size_mb} MB random, {args.repeats} pushes each, alternating")
            print(f"sftp (SshTransport.push): {sftp_rate:7.1f} MB/s  runs: {_rates(mb, sftp_s)}")
            print(f"scp (OpenSSH):            {scp_rate:7.1f} MB/s  runs: {_rates(mb, scp_s)}")
            gcm_rate = mb / statistics.median(scp_gcm_s)
            print(f"scp -c aes128-gcm:        {gcm_rate:7.1f} MB/s  runs: {_rates(mb, scp_gcm_s)}")
            print(f"ratio sftp/scp: {sftp_rate / scp_rate:.2f} (goal >= 0.8)")
            setup = statistics.median(setup_s)
            scp_net = mb / max(statistics.median(scp_s) - setup, 1e-9)
            print(
                f"scp without its connection setup ({setup * 1000:.0f} ms, timed with an empty "
                f"file): {scp_net:.1f} MB/s, ratio {sftp_rate / scp_net:.2f}"
            )
            print(
                f"ratio sftp/scp with the same cipher (aes128-gcm): {sftp_rate / gcm_rate:.2f}"
                " (paramiko negotiates aes128-gcm; scp's default is chacha20-poly1305)"
            )

            pull_sftp_s: list[float] = []
            pull_scp_s: list[float] = []
            back = tmp / "back.bin"
            for i in range(args.repeats):
                for label in ("sftp", "scp")[:: 1 if i % 2 == 0 else -1]:
                    back.unlink(missing_ok=True)
                    started = time.perf_counter()
                    if label == "sftp":
                        ssh.pull(str(remote / "sftp.bin"), back, timeout_s=600)
                        pull_sftp_s.append(time.perf_counter() - started)
                    else:
                        _scp(server, back, str(remote / "sftp.bin"), pull=True)
                        pull_scp_s.append(time.perf_counter() - started)
                    if back.stat().st_size != size:
                        raise SystemExit(f"{label} pull is incomplete")
            pull_rate = mb / statistics.median(pull_sftp_s)
            pull_scp = mb / statistics.median(pull_scp_s)
            print(
                f"pull: sftp {pull_rate:.1f} MB/s, scp {pull_scp:.1f} MB/s, "
                f"ratio {pull_rate / pull_scp:.2f}"
            )

            deploy_file(ssh, model, str(remote / "models"), timeout_s=600)
            counting = _CountingRuns(ssh)
            started = time.perf_counter()
            again = deploy_file(counting, model, str(remote / "models"), timeout_s=600)
            repush_s = time.perf_counter() - started
            rtt = []
            for _ in range(5):
                t0 = time.perf_counter()
                ssh.run(["true"], timeout_s=30)
                rtt.append(time.perf_counter() - t0)
            print(
                f"re-deploy of the unchanged file: {repush_s * 1000:.0f} ms, pushed={again.pushed}, "
                f"round trips={counting.runs} (one `true` command: "
                f"{statistics.median(rtt) * 1000:.0f} ms; the rest is sha256 of "
                f"{args.size_mb} MB on the device, the local hash is cached)"
            )
        finally:
            ssh.close()
            sshd.kill_all()
    return 0


def _rates(mb: float, seconds: list[float]) -> str:
    return ", ".join(f"{mb / s:.0f}" for s in seconds)


if __name__ == "__main__":
    raise SystemExit(main())
