"""The full bench path through a real sshd on 127.0.0.1: add, check, push, run, pull, store, report.

The "board" is this machine reached over SSH (loopback), with its own work directory, running
the same runner with the same runtimes as the local device; so the SSH report must look like the
local one, and one unreachable device must not stop the others.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.demo import demo_model_paths, digits_eval_path
from harness.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from harness.results.store import ResultStore
from tests.peers.sshd import SshdServer, free_port

pytestmark = pytest.mark.integration
QUICK = ["--runs", "10", "--warmup", "2", "--min-duration-s", "0.05"]


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=300)


def _add_board(name: str, server: SshdServer, work_dir: Path, cwd: Path, *,
               port: int | None = None) -> subprocess.CompletedProcess[str]:
    return harness(
        "devices", "add", name, "--ssh", f"{server.user}@{server.host}:{port or server.port}",
        "--profile", "raspberry-pi-5", "--key", str(server.key_path),
        "--known-hosts", str(server.known_hosts_path), "--python", sys.executable,
        "--work-dir", str(work_dir), cwd=cwd)


def test_add_check_bench_report_over_ssh(sshd_server: SshdServer, tmp_path: Path,
                                         harness_home: Path) -> None:
    work = tmp_path / "board work dir"  # a space, to prove quoting end to end
    added = _add_board("pi-loop", sshd_server, work, tmp_path)
    assert added.returncode == EXIT_OK, added.stdout + added.stderr
    profile = yaml.safe_load((harness_home / "config" / "devices" / "pi-loop.yaml").read_text())
    assert profile["transport"]["host"] == "127.0.0.1"
    assert profile["extends"] == "raspberry-pi-5"
    assert "onnxruntime" in added.stdout  # the check ran and found the runtime

    db = ["--db", str(tmp_path / "results.sqlite")]
    model = demo_model_paths()["digits_mlp.onnx"]
    proc = harness("bench", str(model), "--device", "pi-loop", "--threads", "1",
                   "--eval", str(digits_eval_path()), *QUICK, *db, cwd=tmp_path)
    assert proc.returncode == EXIT_OK, proc.stderr
    # The model landed content-addressed inside the work dir, nothing outside it.
    assert list(work.glob("models/*/digits_mlp.onnx"))
    store = ResultStore(f"sqlite:///{tmp_path / 'results.sqlite'}")
    record = store.load_run(store.latest_run_id() or "")
    [job] = record.jobs
    assert job.status == "ok" and job.spec.device_name == "pi-loop"
    assert job.accuracy is not None and job.accuracy >= 0.95
    assert len(job.samples_ms) >= 10
    rows = list(csv.DictReader((tmp_path / "reports" / record.run_id / "results.csv").open()))
    assert rows[0]["device"] == "pi-loop"
    assert float(rows[0]["median_ms"]) > 0


def test_one_unreachable_device_does_not_stop_the_others(sshd_server: SshdServer, tmp_path: Path) -> None:
    assert _add_board("pi-up", sshd_server, tmp_path / "up", tmp_path).returncode == EXIT_OK
    dead = _add_board("pi-down", sshd_server, tmp_path / "down", tmp_path, port=free_port())
    assert dead.returncode == EXIT_ERROR  # the check says it is unreachable, the profile is kept
    db = ["--db", str(tmp_path / "results.sqlite")]
    model = demo_model_paths()["digits_mlp.tflite"]
    proc = harness("bench", str(model), "--device", "pi-up", "--device", "pi-down",
                   "--device", "local", *QUICK, *db, cwd=tmp_path)
    assert proc.returncode == EXIT_PARTIAL, proc.stderr
    store = ResultStore(f"sqlite:///{tmp_path / 'results.sqlite'}")
    record = store.load_run(store.latest_run_id() or "")
    by_device = {job.spec.device_name: job for job in record.jobs}
    assert by_device["pi-up"].status == "ok"
    assert by_device["local"].status == "ok"
    assert by_device["pi-down"].status == "failed"
    assert "pi-down" in (by_device["pi-down"].error or "")
    html = (tmp_path / "reports" / record.run_id / "index.html").read_text()
    assert "pi-down" in html and "FAILED" in html


def test_unknown_host_key_is_refused_with_the_trust_hint(sshd_server: SshdServer, tmp_path: Path) -> None:
    empty_known_hosts = tmp_path / "known_hosts"
    empty_known_hosts.write_text("")
    proc = harness("devices", "add", "stranger", "--ssh",
                   f"{sshd_server.user}@{sshd_server.host}:{sshd_server.port}",
                   "--key", str(sshd_server.key_path), "--known-hosts", str(empty_known_hosts),
                   "--python", sys.executable, cwd=tmp_path)
    assert proc.returncode == EXIT_ERROR
    assert "harness devices trust stranger" in proc.stdout + proc.stderr
    assert empty_known_hosts.read_text() == ""
    trusted = harness("devices", "trust", "stranger", cwd=tmp_path)
    assert trusted.returncode == EXIT_OK, trusted.stderr
    assert "SHA256:" in trusted.stdout
    assert harness("devices", "check", "stranger", cwd=tmp_path).returncode == EXIT_OK
