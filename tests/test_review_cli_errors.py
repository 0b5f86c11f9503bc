"""Bad input and interruptions as a user meets them: `python -m harness` as a subprocess.

Each case found in review: a usage error must exit 2 without a traceback, impossible settings
must be refused before a run is stored, an unreachable device must print one line, errors must
name the user's files (not their cached copies), and Ctrl-C must stop a run promptly while
keeping what was measured.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import harness.demo
from harness.errors import EXIT_ERROR, StoreError
from harness.results.store import ResultStore

FIXTURES = Path(__file__).parent / "fixtures" / "models"
QUICK = ["--runs", "5", "--warmup", "1", "--min-duration-s", "0.05", "--no-report"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HARNESS_HOME"] = str(tmp_path / "home")
    return env


def _harness(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness", *args, "--db", str(tmp_path / "r.sqlite")],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
    )


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m harness ARGS` for commands without a store (`devices ...`)."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=120,
    )


def _digits_onnx() -> str:
    return str(Path(harness.demo.__file__).parent / "digits_mlp.onnx")


@pytest.mark.parametrize("args", [["--bogus"], ["--runs", "abc"]])
def test_usage_errors_exit_2_without_a_traceback(tmp_path: Path, args: list[str]) -> None:
    proc = _harness(tmp_path, "bench", _digits_onnx(), *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Error:" in proc.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--threads", "0"], "--threads must be at least 1"),
        (["--warmup", "-1"], "--warmup must be at least 0"),
        (["--min-duration-s", "-1"], "--min-duration-s must be at least 0"),
        (["--min-duration-s", "1", "--max-duration-s", "0.5"], "is below --min-duration-s"),
    ],
)
def test_impossible_settings_are_refused_before_a_run_is_stored(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    proc = _harness(tmp_path, "bench", _digits_onnx(), *args, "--no-report")
    assert proc.returncode == EXIT_ERROR
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert "is stored" not in proc.stderr  # refused on the host: no failed run in the store
    assert ResultStore.open(tmp_path / "r.sqlite").list_runs() == []


def test_unreachable_ssh_device_is_one_line_on_stderr(tmp_path: Path) -> None:
    profile = tmp_path / "closed.yaml"
    profile.write_text(
        "name: closed\nkind: linux\ntransport: {kind: ssh, host: 127.0.0.1, port: 1, user: nobody}\n"
    )
    proc = _harness(tmp_path, "bench", _digits_onnx(), "--device", str(profile), *QUICK)
    assert proc.returncode == EXIT_ERROR
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cannot connect" in lines[0] and "127.0.0.1:1" in lines[0]


def test_runner_errors_name_the_users_files_not_their_cached_copies(tmp_path: Path) -> None:
    corrupt = FIXTURES / "corrupt.tflite"
    proc = _harness(tmp_path, "bench", str(corrupt), *QUICK)
    assert proc.returncode == EXIT_ERROR
    assert str(corrupt) in proc.stderr
    assert str(tmp_path / "home") not in proc.stderr

    not_npz = tmp_path / "inputs.npz"
    not_npz.write_text("hello")
    proc = _harness(tmp_path, "bench", _digits_onnx(), "--inputs", str(not_npz), *QUICK)
    assert proc.returncode == EXIT_ERROR
    assert f"cannot read inputs file {not_npz}: not an .npz file" in proc.stderr


def test_ctrl_c_stops_the_run_promptly_and_keeps_finished_jobs(tmp_path: Path) -> None:
    # Four jobs of >= 1.5 s each; Ctrl-C after the first has finished.
    db = tmp_path / "r.sqlite"
    argv = [sys.executable, "-m", "harness", "bench", _digits_onnx(), "--db", str(db),
            "--min-duration-s", "1.5", "--no-report"]
    for threads in ("1", "2", "3", "4"):
        argv += ["--threads", threads]
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            runs = ResultStore.open(db).list_runs() if db.exists() else []
        except StoreError:
            # The bench process is still creating the store (SQLite runs its DDL outside one
            # atomic transaction), so a concurrent reader can see it half made: poll again.
            runs = []
        if runs and runs[0].job_count >= 1:
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the first job never reached the store")
    interrupted_at = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    waited_s = time.monotonic() - interrupted_at
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    # At most the job running at Ctrl-C finishes (~1.5 s); the remaining ones never start.
    assert waited_s < 4.0
    (run,) = ResultStore.open(db).list_runs()
    assert 1 <= run.job_count < 4
    assert run.finished_at is None  # shown as "(unfinished)" by `harness results list`
    report = _harness(tmp_path, "report", "--last", "--out", str(tmp_path / "reports"))
    assert report.returncode == 0, report.stderr
    index = (tmp_path / "reports" / run.run_id / "index.html").read_text()
    assert "unfinished run: interrupted, crashed or still running" in index


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        # rich took "[postgres]" for a style tag and ate it: messages are printed escaped
        ("mysql://u@h/db", "pip install 'harness[postgres]'"),
        ("foo://bar", "use a file path, sqlite:///FILE or postgresql+psycopg://"),
    ],
)
def test_store_url_errors_keep_their_brackets_and_a_fitting_hint(
    tmp_path: Path, url: str, fragment: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "results", "list", "--db", url],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == EXIT_ERROR
    assert fragment in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_a_file_that_is_not_a_store_points_at_the_db_option(tmp_path: Path) -> None:
    (tmp_path / "r.sqlite").write_text("garbage")
    proc = _harness(tmp_path, "results", "list")
    assert proc.returncode == EXIT_ERROR
    assert "point --db at another file" in proc.stderr


def test_a_run_failing_on_guessed_dynamic_dims_says_which_dims_were_guessed(
    tmp_path: Path,
) -> None:
    import onnx
    from onnx import TensorProto, helper

    # y = reshape(x, [2, -1]): fine for an even length, fails for the guessed length 1.
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "reshape_pairs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, None])],
        initializer=[helper.make_tensor("shape", TensorProto.INT64, [2], [2, -1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "pairs.onnx"
    onnx.save(model, path)

    proc = _harness(tmp_path, "bench", str(path), *QUICK)
    assert proc.returncode == EXIT_ERROR
    assert "input x: dynamic dims ['n'] set to [1] (use --shape to choose)" in proc.stderr
    ok = _harness(tmp_path, "bench", str(path), "--shape", "x=4", *QUICK)
    assert ok.returncode == 0, ok.stderr


def test_an_unwritable_report_dir_keeps_the_run_and_says_how_to_render_it(
    tmp_path: Path,
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    args = [*QUICK[:-1], "--out", str(not_a_dir)]  # QUICK without --no-report
    proc = _harness(tmp_path, "bench", _digits_onnx(), *args)
    assert proc.returncode == EXIT_ERROR
    (run,) = ResultStore.open(tmp_path / "r.sqlite").list_runs()
    assert run.job_count == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"harness report {run.run_id} --out DIR" in lines[0]

    # `results export -o` into a directory: one line, no traceback
    export = _harness(tmp_path, "results", "export", "--last", "-o", str(tmp_path))
    assert export.returncode == EXIT_ERROR
    assert "Traceback" not in export.stderr
    assert f"cannot write {tmp_path}: Is a directory" in export.stderr


def test_an_eval_file_without_labels_is_refused_not_silently_ignored(tmp_path: Path) -> None:
    import numpy as np

    no_labels = tmp_path / "eval.npz"
    np.savez(no_labels, input=np.zeros((4, 64), np.float32))
    proc = _harness(tmp_path, "bench", _digits_onnx(), "--eval", str(no_labels), *QUICK)
    assert proc.returncode == EXIT_ERROR
    assert "has no `labels` array (it has: input)" in proc.stderr
    assert not (tmp_path / "r.sqlite").exists() or not ResultStore.open(
        tmp_path / "r.sqlite"
    ).list_runs()


def test_a_directory_given_as_a_model_is_named_as_such(tmp_path: Path) -> None:
    proc = _harness(tmp_path, "bench", str(tmp_path), *QUICK)
    assert proc.returncode == EXIT_ERROR
    assert f"{tmp_path} is a directory, not a model file" in proc.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--shape", "input=1xax3"], "is not a shape like 1x3x224x224"),
        (["--shape", "input=0x64"], "is not a shape like 1x3x224x224"),
        (["--value", "input=abc"], "is neither a number nor a range"),
        (["--value", "input=5:1"], "is empty (needs lo < hi)"),
    ],
)
def test_malformed_input_options_are_refused_on_the_host(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    proc = _harness(tmp_path, "bench", _digits_onnx(), *args, *QUICK)
    assert proc.returncode == EXIT_ERROR
    assert fragment in proc.stderr and "is stored" not in proc.stderr


def test_an_ssh_peer_that_sends_no_banner_is_one_line_without_paramikos_traceback(
    tmp_path: Path,
) -> None:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]

    def accept_and_hang_up() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=accept_and_hang_up, daemon=True).start()
    profile = tmp_path / "mute.yaml"
    profile.write_text(
        f"name: mute\nkind: linux\ntransport: {{kind: ssh, host: 127.0.0.1, port: {port}, "
        "user: nobody}\n"
    )
    try:
        proc = _cli(tmp_path, "devices", "check", str(profile))
    finally:
        server.close()
    assert proc.returncode == EXIT_ERROR
    assert "Traceback" not in proc.stderr and "paramiko" not in proc.stderr, proc.stderr
    assert "cannot connect" in proc.stdout + proc.stderr


def test_an_invalid_device_name_is_one_short_line(tmp_path: Path) -> None:
    proc = _cli(tmp_path, "devices", "add", "../evil", "--ssh", "a@b")
    assert proc.returncode == EXIT_ERROR
    assert "field 'name': must be a non-empty name without spaces or slashes" in proc.stderr
    assert "pydantic" not in proc.stderr


def test_repeated_settings_make_one_job_and_compare_refuses_runs_with_nothing_in_common(
    tmp_path: Path,
) -> None:
    first = _harness(tmp_path, "bench", _digits_onnx(), "-t", "1", "-t", "1", *QUICK)
    assert first.returncode == 0, first.stderr
    (run,) = ResultStore.open(tmp_path / "r.sqlite").list_runs()
    assert run.job_count == 1
    second = _harness(tmp_path, "bench", _digits_onnx(), "-t", "2", *QUICK)
    assert second.returncode == 0, second.stderr

    # threads differ, so no job pairs: "no regression" would be a false pass for a CI gate
    proc = _harness(tmp_path, "compare", "--last")
    assert proc.returncode == EXIT_ERROR
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no job in common" in lines[0]


def test_devices_add_refuses_to_shadow_a_bundled_profile(tmp_path: Path, harness_home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "devices", "add", "local", "--ssh", "pi@127.0.0.1:1",
         "--no-check"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "bundled profile" in lines[0] and "--force" in lines[0]
    assert not (harness_home / "config" / "devices" / "local.yaml").exists()
