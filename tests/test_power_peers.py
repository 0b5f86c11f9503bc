"""Fixture devices over REAL peers: a Pi 5 over OpenSSH's sshd (tests/peers/sshd.py) and a Pixel
over the ADB peer (tests/peers/adbd.py). Each: cooldown through the transport (SSH), the runner
bundle with the power sampler deployed by the transport, a timed job with ``--power-source`` run
through it while the writer replays the profile, and energy per inference computed on the host
within 1% (ODPM counters) / 3% (PMIC) of the exact integral."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import deploy, paths
from harness.power import thermal
from harness.power.energy import energy_from_document
from harness.profiles import AdbTransportConfig
from harness.results.schema import parse_runner_document
from harness.transport.adb import AdbTransport
from harness.transport.ssh import SshTransport
from tests.fixtures.power.jobs import MODEL, build_tree, device_env, live_device, runner_power_args
from tests.peers.adbd import AdbdPeer
from tests.peers.adbd_support import AdbKeyPair
from tests.peers.sshd import SshdServer

pytestmark = pytest.mark.integration


@pytest.fixture
def ssh(sshd_server: SshdServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[SshTransport]:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    transport = SshTransport(sshd_server.transport_config())
    yield transport
    transport.close()


@pytest.fixture
def board_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="harness-pi5-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_pi5_job_over_ssh_reports_energy_per_inference(ssh: SshTransport, board_root: Path) -> None:
    build_tree(board_root / "board", "pi5")
    root = board_root / "board"
    env = device_env(root, "pi5")
    with live_device(root, "pi5") as profile:
        cool = thermal.cooldown(
            ssh,
            zones_glob=f"{root}/sys/class/thermal/thermal_zone*",
            threshold_c=60.0,
            timeout_s=10.0,
            poll_s=0.2,
            check_pi_throttled=True,
            env=env,
        )
        assert cool.reached and cool.pi_throttled == 0
        assert [z.type for z in cool.zones] == ["cpu-thermal"]
        work = str(board_root / "work")
        bundle = deploy.deploy_bundle(
            ssh, sorted(paths.runners_dir().glob("*.py")), f"{work}/runner", timeout_s=60
        )
        model = deploy.deploy_file(ssh, MODEL, f"{work}/models", timeout_s=60)
        argv = [
            sys.executable,
            f"{bundle.remote_dir}/harness_runner.py",
            "--model",
            model.remote_path,
            *runner_power_args(
                "pi5-pmic", idle_s=1.0, min_window_s=2.0, window_factor=20.0, rate_hz=10.0
            ),
        ]
        result = ssh.run(argv, timeout_s=90, env=env)
    assert result.exit_code == 0, result.stderr
    doc = parse_runner_document(result.stdout, origin="runner over ssh")
    assert (Path(bundle.remote_dir) / "power_sampler.py").is_file()
    summary = energy_from_document(doc)
    assert summary is not None and summary.available, summary
    timing = doc.timing
    assert timing is not None and timing.window_start_ns and timing.window_end_ns
    exact_j = profile.energy_j(timing.window_start_ns / 1e9, timing.window_end_ns / 1e9)
    assert summary.gross_energy_j == pytest.approx(exact_j, rel=0.03)
    n = len(timing.latencies_ns)
    assert summary.gross_energy_per_inference_mj == pytest.approx(exact_j / n * 1e3, rel=0.03)
    assert (summary.source, summary.scope) == ("pi5-pmic", "pmic")
    assert summary.net_energy_per_inference_mj is not None
    assert thermal.throttled_verdict(doc) == []


def test_pixel_odpm_job_over_the_adb_peer(
    adbd_peer: AdbdPeer, adb_key_pair: AdbKeyPair, board_root: Path
) -> None:
    root = board_root / "pixel"
    build_tree(root, "pixel")
    config = AdbTransportConfig(
        kind="adb", address=f"127.0.0.1:{adbd_peer.port}", key_file=str(adb_key_pair.private_path)
    )
    phone = AdbTransport(config, name="pixel")
    try:
        with live_device(root, "pixel") as profile:
            work = "/data/local/tmp/harness"
            bundle = deploy.deploy_bundle(
                phone, sorted(paths.runners_dir().glob("*.py")), f"{work}/runner", timeout_s=60
            )
            model = deploy.deploy_file(phone, MODEL, f"{work}/models", timeout_s=60)
            argv = [
                sys.executable,  # the peer runs commands on this host: its Python has ORT
                f"{bundle.remote_dir}/harness_runner.py",
                "--model",
                model.remote_path,
                *runner_power_args(
                    "odpm", idle_s=1.0, min_window_s=2.0, window_factor=20.0, rate_hz=10.0
                ),
            ]
            result = phone.run(argv, timeout_s=90, env=device_env(root, "pixel"))
    finally:
        phone.close()
    assert result.exit_code == 0, result.stderr
    assert any(service.startswith("sync:") for service in adbd_peer.services)
    doc = parse_runner_document(result.stdout, origin="runner over adb")
    summary = energy_from_document(doc)
    assert summary is not None and summary.available, summary
    timing = doc.timing
    assert timing is not None and timing.window_start_ns and timing.window_end_ns
    exact_j = profile.energy_j(timing.window_start_ns / 1e9, timing.window_end_ns / 1e9)
    assert summary.gross_energy_j == pytest.approx(exact_j, rel=0.01)
    assert (summary.source, summary.scope, summary.method) == ("odpm", "rails", "counter")
    assert len(summary.per_channel_energy_j) == 16
