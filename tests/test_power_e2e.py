"""Issue 7's "Done means", through the user's own path: ``harness devices add``, a profile edited
by hand (``power:``, ``env:``, ``prepare:``), ``harness bench``, the store, ``results.csv`` and the
HTML report.

Devices: a Pi 5 over the real sshd (tests/peers/sshd.py) and a Pixel over the ADB peer
(tests/peers/adbd.py), each with a fixture sysfs tree that the writer process keeps moving
(tests/fixtures/power/writer.py) with a known power profile; the stored energy per inference must
match that profile's exact integral over the runner's timed window. Plus: the local demo on this
VM (no power source) and the governor preparation on a fixture cpufreq tree.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import EXIT_OK, DeviceError
from harness.power.governor import GovernorFix
from harness.prepare import DevicePreparation, show_preparation
from harness.profiles import DeviceProfile, PrepareOptions, find_profile
from harness.results.records import JobResult, RunRecord
from harness.results.schema import RunnerDocument, parse_runner_document
from harness.results.store import ResultStore
from harness.transport.base import CommandResult
from harness.transport.factory import open_transport
from harness.transport.local import LocalTransport
from tests.fixtures.power import trees
from tests.fixtures.power.jobs import MODEL, build_tree, device_env, live_device
from tests.fixtures.power.profile import SineProfile
from tests.peers.adbd_support import AdbKeyPair, PeerFactory
from tests.peers.sshd import SshdServer

QUICK = ["--runs", "20", "--warmup", "1", "--min-duration-s", "0", "--threads", "1"]
POWER = {"idle_s": 1, "rate_hz": 10, "window_factor": 20, "min_window_s": 2}


def harness(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd,
                          env=env if env is not None else dict(os.environ),
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def edit_profile(home: Path, name: str, **blocks: Any) -> None:
    """Edit the user's profile YAML as a user would: add top-level blocks."""
    path = home / "config" / "devices" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text())
    data.update(blocks)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def latest(db: Path) -> RunRecord:
    store = ResultStore(f"sqlite:///{db}")
    return store.load_run(store.latest_run_id() or "")


def runner_doc(job: JobResult) -> RunnerDocument:
    assert job.raw_document is not None
    return parse_runner_document(json.dumps(job.raw_document), origin="stored job")


def exact_mj_per_inference(job: JobResult, profile: SineProfile) -> float:
    """The profile's exact integral over the runner's timed window, per inference (mJ)."""
    timing = runner_doc(job).timing
    assert timing is not None and timing.window_start_ns and timing.window_end_ns
    exact_j = profile.energy_j(timing.window_start_ns / 1e9, timing.window_end_ns / 1e9)
    return exact_j / len(timing.latencies_ns) * 1e3


def assert_report_has_energy(cwd: Path, record: RunRecord, device: str, expected_mj: float,
                             rel: float) -> None:  # fmt: skip
    report = cwd / "reports" / record.run_id
    [row] = list(csv.DictReader((report / "results.csv").open()))
    assert row["device"] == device
    assert float(row["energy_per_inference_mj"]) == pytest.approx(expected_mj, rel=rel)
    html = (report / "index.html").read_text()
    assert 'id="energy-table"' in html
    assert "energy_vs_latency" in html and "Energy vs latency" in html
    assert (report / "plots" / "energy_vs_latency.png").stat().st_size > 1000


@pytest.fixture
def board_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="harness-e2e-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def add_pi(name: str, server: SshdServer, work: Path, cwd: Path) -> None:
    added = harness(
        "devices", "add", name, "--ssh", f"{server.user}@{server.host}:{server.port}",
        "--profile", "raspberry-pi-5", "--key", str(server.key_path),
        "--known-hosts", str(server.known_hosts_path), "--python", sys.executable,
        "--work-dir", str(work), "--no-check", cwd=cwd)  # fmt: skip
    assert added.returncode == EXIT_OK, added.stdout + added.stderr


@pytest.mark.integration
def test_pi5_over_ssh_bench_stores_and_reports_energy(
    sshd_server: SshdServer, tmp_path: Path, harness_home: Path, board_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    root = board_root / "pi5"
    build_tree(root, "pi5")
    add_pi("pi5", sshd_server, board_root / "work", tmp_path)
    edit_profile(harness_home, "pi5", power={"source": "pi5-pmic", **POWER},
                 env=device_env(root, "pi5"))  # fmt: skip
    db = tmp_path / "results.sqlite"
    with live_device(root, "pi5") as profile:
        proc = harness(
            "bench", str(MODEL), "--device", "pi5", "--db", str(db), *QUICK, cwd=tmp_path
        )
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    record = latest(db)
    [job] = record.jobs
    assert job.status == "ok", job.error
    assert job.energy is not None and job.energy.available, job.energy
    assert (job.energy.source, job.energy.scope) == ("pi5-pmic", "pmic")
    expected = exact_mj_per_inference(job, profile)
    assert job.energy.gross_energy_per_inference_mj == pytest.approx(expected, rel=0.03)
    assert job.energy.net_energy_per_inference_mj is not None
    assert_report_has_energy(tmp_path, record, "pi5", expected, rel=0.03)


@pytest.mark.integration
def test_pixel_over_adb_bench_stores_and_reports_odpm_energy(
    adbd_peer_factory: PeerFactory, adb_key_pair: AdbKeyPair, tmp_path: Path,
    harness_home: Path, board_root: Path,
) -> None:  # fmt: skip
    peer = adbd_peer_factory()
    root = board_root / "pixel"
    build_tree(root, "pixel")
    added = harness("devices", "add", "pixel", "--adb", f"127.0.0.1:{peer.port}",
                    "--profile", "android-generic", "--adb-key", str(adb_key_pair.private_path),
                    "--no-check", cwd=tmp_path)  # fmt: skip
    assert added.returncode == EXIT_OK, added.stdout + added.stderr
    edit_profile(harness_home, "pixel", power={"source": "odpm", **POWER},
                 env=device_env(root, "pixel"))  # fmt: skip
    db = tmp_path / "results.sqlite"
    with live_device(root, "pixel") as profile:
        proc = harness("bench", str(MODEL), "--device", "pixel", "--db", str(db), *QUICK,
                       cwd=tmp_path)  # fmt: skip
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    record = latest(db)
    [job] = record.jobs
    assert job.status == "ok", job.error
    assert job.energy is not None and job.energy.available, job.energy
    assert (job.energy.source, job.energy.scope, job.energy.method) == ("odpm", "rails", "counter")
    expected = exact_mj_per_inference(job, profile)
    assert job.energy.gross_energy_per_inference_mj == pytest.approx(expected, rel=0.01)
    assert_report_has_energy(tmp_path, record, "pixel", expected, rel=0.01)


@pytest.mark.integration
def test_local_demo_on_this_vm_says_no_power_source(tmp_path: Path) -> None:
    if Path("/sys/class/powercap").exists() or shutil.which("vcgencmd"):
        pytest.skip("this host has a power source; the case is a VM without one")
    env = {k: v for k, v in os.environ.items() if k != "HARNESS_SYSFS_ROOT"}
    db = tmp_path / "results.sqlite"
    proc = harness("demo", "--quick", "--db", str(db), cwd=tmp_path, env=env)
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    record = latest(db)
    assert record.jobs and all(job.status == "ok" for job in record.jobs)
    for job in record.jobs:  # probed and said so: not a silent "not measured"
        assert job.energy is not None and not job.energy.available
        assert job.energy.quality_flags[0].startswith("no power source on this device (probed:")
    report = tmp_path / "reports" / record.run_id
    rows = list(csv.DictReader((report / "results.csv").open()))
    assert {row["power_source"] for row in rows} == {"none"}
    assert all(row["energy_per_inference_mj"] == "" for row in rows)
    html = (report / "index.html").read_text()
    assert 'id="energy-table"' in html and "no power source" in html
    assert not (report / "plots" / "energy_vs_latency.png").exists()


# -- governor ------------------------------------------------------------------------------------
ALL_GOVERNORS = "conservative ondemand userspace powersave performance schedutil"


def cpufreq_tree(root: Path, governors: dict[str, str], *, offered: str = ALL_GOVERNORS) -> None:
    """A board's cpufreq: two policies of two cores each, with cpuN/cpufreq -> policyM links."""
    for policy, cpus in (("policy0", (0, 1)), ("policy2", (2, 3))):
        d = root / "sys/devices/system/cpu/cpufreq" / policy
        trees.write(d / "scaling_governor", governors[policy])
        trees.write(d / "scaling_available_governors", offered)
        trees.write(d / "scaling_cur_freq", "1500000")
        trees.write(d / "cpuinfo_max_freq", "2400000")
        trees.write(d / "related_cpus", " ".join(map(str, cpus)))
        for cpu in cpus:
            (root / f"sys/devices/system/cpu/cpu{cpu}").mkdir(parents=True, exist_ok=True)
            os.symlink(f"../cpufreq/{policy}", root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq")


def governors_now(root: Path) -> dict[str, str]:
    base = root / "sys/devices/system/cpu/cpufreq"
    return {p.name: (p / "scaling_governor").read_text().strip() for p in sorted(base.iterdir())}


@pytest.mark.integration
def test_governor_performance_during_the_job_restored_after_over_ssh(
    sshd_server: SshdServer, tmp_path: Path, harness_home: Path, board_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    root = board_root / "board"
    before = {"policy0": "schedutil", "policy2": "ondemand"}  # each policy gets its own back
    cpufreq_tree(root, before)
    add_pi("pi-gov", sshd_server, board_root / "work", tmp_path)
    edit_profile(
        harness_home,
        "pi-gov",
        power={"source": "none"},
        prepare={"governor": "performance"},
        env={"HARNESS_SYSFS_ROOT": str(root)},
    )
    profile = find_profile("pi-gov")
    transport = open_transport(profile)
    try:  # what `devices check` shows: the state now, nothing changed
        shown = show_preparation(profile, transport)
    finally:
        transport.close()
    assert shown == ["governor: schedutil on policy0; ondemand on policy2"]
    assert governors_now(root) == before  # the check only reads
    db = tmp_path / "results.sqlite"
    proc = harness("bench", str(MODEL), "--device", "pi-gov", "--db", str(db), *QUICK, cwd=tmp_path)
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    record = latest(db)
    [job] = record.jobs
    assert job.status == "ok", job.error
    # What the runner itself read from cpufreq while it ran: every core on performance.
    state = runner_doc(job).device_state
    assert state is not None
    assert state.governors == {f"cpu{n}": "performance" for n in range(4)}
    prepared = job.device_state["host_observed"]["preparation"]["governor"]
    assert prepared == "performance on policy0, policy2 (was ondemand, schedutil)"
    assert record.notes == ()
    assert governors_now(root) == before


def _prepared(root: Path, governor: str) -> DevicePreparation:
    profile = DeviceProfile(name="board", kind="linux", env={"HARNESS_SYSFS_ROOT": str(root)},
                            prepare=PrepareOptions(governor=governor))  # fmt: skip
    prep = DevicePreparation.for_profile(profile, LocalTransport())
    prep.apply()
    return prep


def test_governor_not_offered_is_a_note_and_nothing_changes(tmp_path: Path) -> None:
    before = {"policy0": "schedutil", "policy2": "schedutil"}
    cpufreq_tree(tmp_path, before, offered="schedutil powersave")
    prep = _prepared(tmp_path, "performance")
    assert prep.applied == []
    assert prep.notes == [
        "governor: not available on board (policy0, policy2 do not offer the performance governor)"
    ]
    assert governors_now(tmp_path) == before


def test_no_cpufreq_is_a_note(tmp_path: Path) -> None:
    trees.vm(tmp_path)
    prep = _prepared(tmp_path, "performance")
    assert prep.applied == []
    assert prep.notes == ["governor: not available on board (no cpufreq policies in sysfs)"]


class RevertingDaemon(LocalTransport):
    """This host, plus a vendor daemon that puts policy2 back to schedutil after each write."""

    def __init__(self, node: Path) -> None:
        super().__init__()
        self.node = node

    def run(self, argv: Sequence[str], **kwargs: Any) -> CommandResult:
        result = super().run(argv, **kwargs)
        if "performance" in argv:
            trees.write(self.node, "schedutil")
        return result


def test_a_governor_that_does_not_stick_is_undone(tmp_path: Path) -> None:
    cpufreq_tree(tmp_path, {"policy0": "schedutil", "policy2": "schedutil"})
    node = tmp_path / "sys/devices/system/cpu/cpufreq/policy2/scaling_governor"
    op = GovernorFix("performance", sysfs_root=str(tmp_path))
    with pytest.raises(DeviceError, match="policy2 did not keep the performance governor"):
        op.apply(RevertingDaemon(node))
    assert governors_now(tmp_path) == {"policy0": "schedutil", "policy2": "schedutil"}
    assert op.previous == {}


def test_governor_names_are_validated() -> None:
    with pytest.raises(ValueError, match="governor name"):
        PrepareOptions(governor="performance; reboot")
    assert PrepareOptions().governor == "none"


# -- external meter ------------------------------------------------------------------------------
@pytest.mark.integration
def test_external_serial_meter_gives_the_jobs_energy_over_ssh(
    sshd_server: SshdServer, board_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pty stands for the meter's USB-serial port; the "board" is this host over the sshd, so
    its CLOCK_BOOTTIME - host monotonic offset is known exactly, and so is the true energy."""
    from harness import deploy, paths
    from harness.power.external import estimate_clock_offset
    from harness.power.external_job import (
        ExternalJobMeter,
        persistent_clock_argv,
        transport_clock_exchange,
    )
    from harness.power.settings import ExternalMeterSettings, PowerSettings
    from harness.transport.ssh import SshTransport
    from tests.test_power_external import StreamingMeter

    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    master, slave = os.openpty()
    source = StreamingMeter(master, SineProfile(base_w=2.5, amp_w=0.8, period_s=0.9))
    source.thread.start()
    settings = ExternalMeterSettings(port=os.ttyname(slave), clock_rounds=8)
    assert PowerSettings.model_validate({"external": {"port": "/dev/ttyUSB0"}}).external
    ssh = SshTransport(sshd_server.transport_config())
    try:
        work = str(board_root / "work")
        bundle = deploy.deploy_bundle(
            ssh, sorted(paths.runners_dir().glob("*.py")), f"{work}/runner", timeout_s=60
        )
        model = deploy.deploy_file(ssh, MODEL, f"{work}/models", timeout_s=60)
        board = DeviceProfile(name="pi", kind="linux", transport=sshd_server.transport_config())
        one_shot = transport_clock_exchange(ssh, sys.executable)
        job = ExternalJobMeter(
            settings, one_shot, clock_argv=persistent_clock_argv(board, sys.executable)
        )
        job.start()
        argv = [sys.executable, f"{bundle.remote_dir}/harness_runner.py", "--model",
                model.remote_path, "--warmup-runs", "1", "--min-runs", "3",
                "--min-duration-s", "2"]  # fmt: skip
        result = ssh.run(argv, timeout_s=90)
        assert result.exit_code == 0, result.stderr
        doc = parse_runner_document(result.stdout, origin="runner over ssh")
        summary = job.finish(doc)
    finally:
        ssh.close()
        source.stop.set()
        source.thread.join(timeout=2)
        os.close(master)
        os.close(slave)
    assert job.before is not None and job.clock_route == "persistent channel"
    truth_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
    assert abs(job.before.offset_ns - truth_ns) <= job.before.error_ns + 0.2e6
    assert job.before.error_ns < 5e6  # over the OpenSSH channel: a few ms at most
    # The fallback (one-shot commands through the transport) is honest about its larger error.
    fallback = SshTransport(sshd_server.transport_config())
    try:
        rough = estimate_clock_offset(transport_clock_exchange(fallback, sys.executable), rounds=3)
    finally:
        fallback.close()
    assert abs(rough.offset_ns - truth_ns) <= rough.error_ns + 0.2e6
    timing = doc.timing
    assert timing is not None and timing.window_start_ns and timing.window_end_ns
    assert timing.window_clock == "CLOCK_BOOTTIME"
    # The meter replays the profile on host monotonic time: shift the device window back.
    exact_j = source.profile.energy_j(
        (timing.window_start_ns - truth_ns) / 1e9, (timing.window_end_ns - truth_ns) / 1e9
    )
    assert summary.available, summary.quality_flags
    assert (summary.source, summary.scope, summary.method) == (
        "serial-meter", "usb", "instantaneous")  # fmt: skip
    assert summary.gross_energy_j == pytest.approx(exact_j, rel=0.01)
    n = len(timing.latencies_ns)
    assert summary.gross_energy_per_inference_mj == pytest.approx(exact_j / n * 1e3, rel=0.01)
    assert summary.sample_rate_hz is not None and summary.sample_rate_hz > 50

    assert summary.quality_flags[0].startswith("external meter aligned to the device clock ±")


def _session_wires_external_meters() -> bool:
    import harness.session

    return hasattr(harness.session, "external_meter_for")


@pytest.mark.integration
@pytest.mark.skipif(
    not _session_wires_external_meters(),
    reason="harness/session.py does not call harness.power.external_job yet (see issue 7 notes)",
)
def test_bench_with_an_external_meter_in_the_profile_over_ssh(
    sshd_server: SshdServer, tmp_path: Path, harness_home: Path, board_root: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """The user path: `power: {external: {port: ...}}` in the profile, `harness bench`, and the
    stored job's energy comes from the meter on the host, aligned to the board's clock."""
    from tests.test_power_external import StreamingMeter

    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    master, slave = os.openpty()
    source = StreamingMeter(master, SineProfile(base_w=2.5, amp_w=0.8, period_s=0.9))
    source.thread.start()
    try:
        add_pi("pi-meter", sshd_server, board_root / "work", tmp_path)
        external = {"kind": "serial", "port": os.ttyname(slave), "baud": 115200, "scope": "wall"}
        edit_profile(harness_home, "pi-meter", power={"source": "none", "external": external})
        db = tmp_path / "results.sqlite"
        proc = harness("bench", str(MODEL), "--device", "pi-meter", "--db", str(db),
                       *QUICK[:-2], "--min-duration-s", "2", cwd=tmp_path)  # fmt: skip
    finally:
        source.stop.set()
        source.thread.join(timeout=2)
        os.close(master)
        os.close(slave)
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    record = latest(db)
    [job] = record.jobs
    assert job.status == "ok", job.error
    assert job.energy is not None and job.energy.available, job.energy
    assert (job.energy.source, job.energy.scope) == ("serial-meter", "wall")
    assert "persistent channel" in job.energy.quality_flags[0]
    timing = runner_doc(job).timing
    assert timing is not None and timing.window_start_ns and timing.window_end_ns
    truth_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
    exact_j = source.profile.energy_j(
        (timing.window_start_ns - truth_ns) / 1e9, (timing.window_end_ns - truth_ns) / 1e9
    )
    expected = exact_j / len(timing.latencies_ns) * 1e3
    assert job.energy.gross_energy_per_inference_mj == pytest.approx(expected, rel=0.01)
    assert_report_has_energy(tmp_path, record, "pi-meter", expected, rel=0.01)


def test_an_external_meter_that_cannot_start_leaves_a_flag_not_a_failed_job(
    tmp_path: Path,
) -> None:
    from harness.power.external_job import ExternalJobMeter, persistent_clock_argv
    from harness.power.settings import ExternalMeterSettings

    golden = Path(__file__).parent / "golden" / "runner_doc_v1.json"
    doc = parse_runner_document(golden.read_text(), origin="golden")
    local = DeviceProfile(name="local")
    argv = persistent_clock_argv(local, sys.executable)
    assert argv is not None and argv[0] == sys.executable

    def no_one_shots() -> int:
        raise AssertionError("the persistent channel is the route on the local device")

    meter = ExternalJobMeter(
        ExternalMeterSettings(port=str(tmp_path / "ttyNOPE"), clock_rounds=3),
        no_one_shots,
        clock_argv=argv,
    )
    meter.start()  # does not raise: the job must still run and keep its latencies
    assert meter.start_error is not None and "cannot open power meter port" in meter.start_error
    summary = meter.finish(doc)
    assert not summary.available
    assert summary.quality_flags[0].startswith("external meter not started: cannot open")
    assert doc.timing is not None and summary.inferences == len(doc.timing.latencies_ns)
