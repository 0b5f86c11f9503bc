"""`harness devices setup` through a real sshd on 127.0.0.1: venv, pip, profile, check.

The "board" is this machine over SSH. No network: pip installs from a wheel directory built
here (a tiny pure-Python package, the way a user copies wheels to an offline device), with
``--no-index --find-links``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from harness.device_setup import module_name, pip_error_line, pip_hint, setup_device
from harness.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, RemoteCommandError
from harness.profiles import DeviceProfile
from harness.transport.local import LocalTransport
from tests.peers.sshd import SshdServer

FAKE = "harness_fake_runtime"


def harness(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )


def build_wheel(directory: Path, name: str = FAKE, version: str = "1.2.3") -> Path:
    """Write a valid pure-Python wheel by hand (PEP 427): the module, METADATA, WHEEL, RECORD."""
    directory.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f'__version__ = "{version}"\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(path, text)
    return wheel


def _add_board(name: str, server: SshdServer, work_dir: Path, cwd: Path) -> None:
    added = harness(
        "devices", "add", name, "--ssh", f"{server.user}@{server.host}:{server.port}",
        "--profile", "raspberry-pi-5", "--key", str(server.key_path),
        "--known-hosts", str(server.known_hosts_path), "--python", sys.executable,
        "--work-dir", str(work_dir), "--no-check", cwd=cwd,
    )  # fmt: skip
    assert added.returncode == EXIT_OK, added.stdout + added.stderr


def _profile(home: Path, name: str) -> dict[str, object]:
    data = yaml.safe_load((home / "config" / "devices" / f"{name}.yaml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.integration
def test_setup_installs_offline_wheels_and_points_the_profile_at_the_venv(
    sshd_server: SshdServer, tmp_path: Path, harness_home: Path
) -> None:
    work = tmp_path / "board work"  # a space, to prove quoting end to end
    wheels = tmp_path / "wheel house"
    build_wheel(wheels)
    _add_board("pi-setup", sshd_server, work, tmp_path)
    before = harness("devices", "check", "pi-setup", "--json", cwd=tmp_path)
    assert "onnxruntime" in [m for m, _ in json.loads(before.stdout)["runtimes"]]

    proc = harness(
        "devices", "setup", "pi-setup", "--no-index", "--find-links", str(wheels),
        "--package", FAKE, "--verify-module", "json", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    venv_python = work / "venv" / "bin" / "python"
    assert f"ok {FAKE} 1.2.3" in proc.stdout
    assert "ok json" in proc.stdout  # --verify-module checks any module
    assert f"created {work / 'venv'}" in proc.stdout
    # pip really installed it into the venv on the "device", nowhere else
    assert list((work / "venv" / "lib").glob(f"python3*/site-packages/{FAKE}/__init__.py"))
    imported = subprocess.run(
        [str(venv_python), "-c", f"import {FAKE}; print({FAKE}.__version__)"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert imported.stdout.strip() == "1.2.3"
    assert _profile(harness_home, "pi-setup")["python"] == str(venv_python)
    assert "device pi-setup" in proc.stdout  # the check table followed

    # `devices check` now runs the venv's python: it has no onnxruntime, unlike the dev venv
    after = harness("devices", "check", "pi-setup", "--json", cwd=tmp_path)
    report = json.loads(after.stdout)
    assert report["runtimes"] == []
    assert any("harness devices setup" in p for p in report["problems"])

    # A second run reuses the venv (no re-creation) and is idempotent.
    again = harness(
        "devices", "setup", "pi-setup", "--no-index", "--find-links", str(wheels),
        "--package", FAKE, cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == EXIT_OK, again.stdout + again.stderr
    assert f"reused {work / 'venv'}" in again.stdout


@pytest.mark.integration
def test_missing_package_fails_then_partial_success_installs_what_it_can(
    sshd_server: SshdServer, tmp_path: Path, harness_home: Path
) -> None:
    wheels = tmp_path / "wheels"
    build_wheel(wheels)
    work = tmp_path / "work"
    _add_board("pi-nowheel", sshd_server, work, tmp_path)
    original = _profile(harness_home, "pi-nowheel")
    offline = ["--no-index", "--find-links", str(wheels)]
    proc = harness(
        "devices", "setup", "pi-nowheel", *offline, "--package", "harness-no-such-runtime",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == EXIT_ERROR
    out = " ".join((proc.stdout + proc.stderr).split())
    assert "harness-no-such-runtime" in out
    assert "ERROR: Could not find a version that satisfies the requirement" in out
    assert "--find-links" in out  # the hint says what to do
    assert _profile(harness_home, "pi-nowheel") == original

    # One package there, one not (like ai-edge-litert on 32-bit ARM): keep what installs.
    partial = harness(
        "devices", "setup", "pi-nowheel", *offline, "--package", FAKE,
        "--package", "harness-no-such-runtime", cwd=tmp_path,
    )  # fmt: skip
    assert partial.returncode == EXIT_PARTIAL, partial.stdout + partial.stderr
    assert f"ok {FAKE} 1.2.3" in partial.stdout
    assert "unavailable harness-no-such-runtime" in " ".join(partial.stdout.split())
    assert "hint: no wheel of it" in partial.stdout
    assert _profile(harness_home, "pi-nowheel")["python"] == str(work / "venv" / "bin" / "python")


LOCAL_INDEX = Path("/opt/pypi/simple")  # a file:// package index some build machines carry


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(
    not (LOCAL_INDEX / "onnxruntime" / "index.html").is_file(),
    reason="needs a local file:// package index with numpy and onnxruntime (no network in tests)",
)
def test_bench_runs_with_the_python_of_the_set_up_venv(
    sshd_server: SshdServer, tmp_path: Path, harness_home: Path
) -> None:
    from harness.demo import demo_model_paths
    from harness.results.store import ResultStore

    work = tmp_path / "work"
    _add_board("pi-e2e", sshd_server, work, tmp_path)
    proc = harness(
        "devices", "setup", "pi-e2e", "--index-url", LOCAL_INDEX.as_uri(),
        "--package", "numpy", "--package", "onnxruntime", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    venv_python = work / "venv" / "bin" / "python"
    assert _profile(harness_home, "pi-e2e")["python"] == str(venv_python)
    db = tmp_path / "results.sqlite"
    bench = harness(
        "bench", str(demo_model_paths()["digits_mlp.onnx"]), "--device", "pi-e2e",
        "--runs", "10", "--warmup", "2", "--min-duration-s", "0.05", "--db", str(db),
        cwd=tmp_path,
    )  # fmt: skip
    assert bench.returncode == EXIT_OK, bench.stdout + bench.stderr
    store = ResultStore(f"sqlite:///{db}")
    [job] = store.load_run(store.latest_run_id() or "").jobs
    assert job.status == "ok" and len(job.samples_ms) >= 10
    # the runner ran in the venv: its onnxruntime is the one pip put there, not the dev venv's
    installed = subprocess.run(
        [str(venv_python), "-c", "import onnxruntime; print(onnxruntime.__version__)"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert job.runtime_version == installed.stdout.strip()


def test_system_site_packages_and_failures_through_the_library(tmp_path: Path) -> None:
    """The same code over the local transport: the venv flag follows the option."""
    wheels = tmp_path / "wheels"
    build_wheel(wheels)
    profile = DeviceProfile(name="here", python=sys.executable, work_dir=str(tmp_path / "w"))
    result = setup_device(
        LocalTransport(), profile, packages=[FAKE], no_index=True, find_links=str(wheels),
        system_site_packages=True,
    )  # fmt: skip
    assert result.ok and result.created_venv
    assert dict(result.installed) == {FAKE: "1.2.3"}
    cfg = (tmp_path / "w" / "venv" / "pyvenv.cfg").read_text()
    assert "include-system-site-packages = true" in cfg
    # Turning the option off reconfigures the same venv and keeps what it installed.
    again = setup_device(
        LocalTransport(), profile, packages=[FAKE], no_index=True, find_links=str(wheels)
    )
    assert again.created_venv and dict(again.installed) == {FAKE: "1.2.3"}
    assert (
        "include-system-site-packages = false"
        in (tmp_path / "w" / "venv" / "pyvenv.cfg").read_text()
    )
    with pytest.raises(RemoteCommandError) as caught:
        setup_device(LocalTransport(), profile, packages=["harness-nope"], no_index=True)
    assert "harness-nope" in caught.value.one_line()
    assert caught.value.hint and "--find-links" in caught.value.hint


def test_a_device_python_that_cannot_make_a_venv_is_a_clear_error(tmp_path: Path) -> None:
    profile = DeviceProfile(name="here", python="python-not-there", work_dir=str(tmp_path / "w"))
    with pytest.raises(RemoteCommandError) as caught:
        setup_device(LocalTransport(), profile, packages=[FAKE])
    assert "python-not-there -m venv" in caught.value.one_line()
    assert not (tmp_path / "w" / "venv" / "bin" / "python").exists()


def test_pip_output_parsing() -> None:
    assert module_name("ai-edge-litert>=1.0") == "ai_edge_litert"
    assert module_name("onnxruntime==1.20.1") == "onnxruntime"
    assert module_name("tflite-runtime") == "tflite_runtime"
    out = (
        "Looking in links: /x\n"
        "ERROR: Could not find a version that satisfies the requirement ai-edge-litert "
        "(from versions: none)\nERROR: No matching distribution found for ai-edge-litert\n"
    )
    assert pip_error_line(out).endswith("(from versions: none)")
    assert "32-bit ARM" in pip_hint(out)
    assert "32-bit ARM" not in pip_hint(out.replace("ai-edge-litert", "other-pkg"))
    offline = "WARNING: Retrying ... Failed to establish a new connection: [Errno 101]\n"
    assert "--no-index" in pip_hint(offline)
