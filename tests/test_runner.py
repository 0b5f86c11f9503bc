"""The on-device runner end to end on ONNX Runtime: the CLI contract, the document, the stopping
rule, inputs, evaluation output and precisely named errors. Every test runs the real script as a
subprocess on a real model and validates stdout with the host's own parser."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.runner import models
from tests.fixtures.runner.invoke import DEMO, run_runner

CPU_EP = "CPUExecutionProvider"


@pytest.fixture(scope="module")
def add_relu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.onnx_add_relu(tmp_path_factory.mktemp("m") / "add_relu.onnx")


@pytest.fixture(scope="module")
def int_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return models.onnx_int_inputs(tmp_path_factory.mktemp("m") / "ints.onnx")


def test_ok_document_describes_the_run(add_relu: Path) -> None:
    run = run_runner("--model", add_relu, "--threads", "1", "--seed", "7")
    doc = run.doc
    assert run.returncode == 0, run.stderr
    assert doc.status == "ok" and doc.error is None
    assert doc.producer.name == "harness-runner" and doc.producer.version
    assert doc.runtime is not None and doc.runtime.name == "onnxruntime"
    assert doc.model.format == "onnx"
    assert doc.model.sha256 == hashlib.sha256(add_relu.read_bytes()).hexdigest()
    assert doc.model.size_bytes == add_relu.stat().st_size
    assert doc.settings.threads == 1 and doc.settings.seed == 7 and doc.settings.min_runs == 3
    (x,) = doc.inputs
    assert (x.name, x.dtype, x.shape, x.declared_shape, x.source) == (
        "x",
        "float32",
        [1, 4],
        ["batch", 4],
        "random",
    )
    (y,) = doc.outputs
    assert (y.name, y.shape, y.source) == ("y", [1, 4], "output")
    timing = doc.timing
    assert timing is not None
    assert timing.init_ms > 0 and timing.first_inference_ms > 0
    assert len(timing.warmup_latencies_ns) == 1
    assert len(timing.latencies_ns) >= 3
    assert all(isinstance(v, int) and v > 0 for v in timing.latencies_ns)
    assert 0 < timing.timer_overhead_ns < 100_000 and timing.timer_resolution_ns > 0
    assert timing.window_clock == "CLOCK_BOOTTIME"
    assert timing.window_start_ns is not None and timing.window_end_ns is not None
    assert timing.window_end_ns - timing.window_start_ns >= sum(timing.latencies_ns)
    assert doc.memory.source == "VmHWM" and (doc.memory.peak_rss_kb or 0) > 10_000
    assert doc.device_state.python and doc.device_state.cpu_count
    assert any("dynamic dims" in note for note in doc.execution.notes)


def test_stdout_is_only_the_document(add_relu: Path) -> None:
    run = run_runner("--model", add_relu)
    assert json.loads(run.stdout)["schema"] == "harness.runner-result"
    assert run.stdout.count("\n") == 1


def test_execution_records_providers_and_node_placement(add_relu: Path) -> None:
    execution = run_runner("--model", add_relu).doc.execution
    assert execution.providers_requested == [CPU_EP]
    assert CPU_EP in execution.providers_available
    assert execution.providers_used == [CPU_EP]
    assert execution.nodes_by_provider == {CPU_EP: 2}  # Add + Relu, from ORT's verbose log
    assert execution.total_nodes == 2
    assert execution.fallback_to_cpu is False


@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "cuda"])
def test_unavailable_provider_is_flagged_as_fallback(add_relu: Path, provider: str) -> None:
    run = run_runner("--model", add_relu, "--provider", provider)
    execution = run.doc.execution
    assert run.returncode == 0
    assert execution.providers_requested == ["CUDAExecutionProvider", CPU_EP]
    assert execution.providers_used == [CPU_EP]
    assert execution.fallback_to_cpu is True
    assert execution.delegated_nodes == 0


def test_min_runs_and_min_duration_both_hold(tmp_path: Path) -> None:
    model = DEMO / "mobilenet_tiny.onnx"
    if not model.exists():
        model = models.onnx_add_relu(tmp_path / "m.onnx")
    timing = run_runner(
        "--model",
        model,
        "--min-runs",
        "5",
        "--min-duration-s",
        "0.3",
        "--no-placement-probe",
        quick=False,
    ).doc.timing
    assert timing is not None and timing.window_end_ns and timing.window_start_ns
    assert len(timing.latencies_ns) >= 5
    window_s = (timing.window_end_ns - timing.window_start_ns) / 1e9
    assert window_s >= 0.3
    assert sum(timing.latencies_ns) / 1e9 <= window_s


def test_min_runs_alone_gives_exactly_that_many_samples(add_relu: Path) -> None:
    timing = run_runner(
        "--model",
        add_relu,
        "--min-runs",
        "37",
        "--min-duration-s",
        "0",
        "--warmup-runs",
        "4",
        quick=False,
    ).doc.timing
    assert timing is not None
    assert len(timing.latencies_ns) == 37 and len(timing.warmup_latencies_ns) == 4


def test_max_duration_stops_before_min_runs(add_relu: Path) -> None:
    timing = run_runner(
        "--model",
        add_relu,
        "--min-runs",
        "100000000",
        "--min-duration-s",
        "0",
        "--max-duration-s",
        "0.2",
        quick=False,
    ).doc.timing
    assert timing is not None and timing.window_end_ns and timing.window_start_ns
    assert 0 < len(timing.latencies_ns) < 100_000_000
    window_s = (timing.window_end_ns - timing.window_start_ns) / 1e9
    assert 0.2 <= window_s < 1.0


def test_shape_override_fills_dynamic_dims(add_relu: Path) -> None:
    doc = run_runner("--model", add_relu, "--shape", "x=6x4").doc
    assert doc.status == "ok"
    assert doc.inputs[0].shape == [6, 4] and doc.outputs[0].shape == [6, 4]
    assert doc.settings.shapes == {"x": [6, 4]}


def test_shape_contradicting_a_fixed_dim_is_an_input_error(add_relu: Path) -> None:
    run = run_runner("--model", add_relu, "--shape", "x=2x5")
    assert run.returncode == 2
    assert run.doc.error is not None and run.doc.error.kind == "input"
    assert "x" in run.doc.error.message and "dim 1" in run.doc.error.message


def test_unknown_input_name_is_an_input_error(add_relu: Path) -> None:
    run = run_runner("--model", add_relu, "--value", "nosuch=3")
    assert run.returncode == 2 and run.doc.error is not None
    assert run.doc.error.kind == "input" and "'nosuch'" in run.doc.error.message


def test_values_ranges_and_int_defaults(int_model: Path, tmp_path: Path) -> None:
    doc = run_runner(
        "--model", int_model, "--shape", "ids=2x9", "--value", "flag=1", "--value", "scale=0.5"
    ).doc
    by_name = {t.name: t for t in doc.inputs}
    assert doc.status == "ok"
    assert by_name["ids"].dtype == "int64" and by_name["ids"].shape == [2, 9]
    assert by_name["ids"].declared_shape == ["batch", "seq"]
    assert by_name["ids"].source == "random"
    assert by_name["flag"].dtype == "bool" and by_name["flag"].shape == []
    assert by_name["scale"].source == "value"
    assert doc.settings.values == {"flag": "1", "scale": "0.5"}


def test_npz_inputs_are_used_and_checked(add_relu: Path, tmp_path: Path) -> None:
    good = tmp_path / "in.npz"
    np.savez(good, x=np.ones((3, 4), dtype=np.float64))  # float64 is cast safely to float32
    doc = run_runner("--model", add_relu, "--inputs", good).doc
    assert doc.status == "ok"
    assert doc.inputs[0].source == "npz" and doc.inputs[0].shape == [3, 4]
    assert doc.inputs[0].dtype == "float32" and doc.settings.inputs_file == str(good)

    wrong_shape = tmp_path / "bad.npz"
    np.savez(wrong_shape, x=np.ones((3, 5), dtype=np.float32))
    run = run_runner("--model", add_relu, "--inputs", wrong_shape)
    assert run.returncode == 2 and run.doc.error is not None
    assert run.doc.error.kind == "input" and "x" in run.doc.error.message

    wrong_key = tmp_path / "typo.npz"
    np.savez(wrong_key, x=np.ones((1, 4), np.float32), xx=np.ones((1, 4), np.float32))
    run = run_runner("--model", add_relu, "--inputs", wrong_key)
    assert run.doc.error is not None and "'xx'" in run.doc.error.message


def test_single_input_model_takes_any_one_key(add_relu: Path, tmp_path: Path) -> None:
    path = tmp_path / "one.npz"
    np.savez(path, whatever=np.zeros((2, 4), np.float32))
    doc = run_runner("--model", add_relu, "--inputs", path).doc
    assert doc.status == "ok" and doc.inputs[0].shape == [2, 4]


def test_eval_outputs_every_row_in_batches(int_model: Path, tmp_path: Path) -> None:
    ids = np.arange(35, dtype=np.int64).reshape(7, 5)
    eval_in, eval_out = tmp_path / "eval.npz", tmp_path / "out.npz"
    np.savez(eval_in, ids=ids, labels=np.arange(7))  # extra keys (labels) are ignored
    doc = run_runner(
        "--model",
        int_model,
        "--value",
        "scale=2",
        "--value",
        "flag=1",
        "--eval-inputs",
        eval_in,
        "--eval-output",
        eval_out,
        "--eval-batch",
        "3",
    ).doc
    assert doc.status == "ok", doc.error
    assert doc.eval_output is not None and doc.eval_output.rows == 7
    with np.load(eval_out) as out:
        np.testing.assert_array_equal(out["y"], ids.astype(np.float32) * 2)
        assert out["passed"].shape == (3,)  # a scalar output: one per run of 3, 3, 1 rows
        assert out["passed"].all()


def test_eval_with_fixed_batch_pads_the_last_chunk(tmp_path: Path) -> None:
    model = models.onnx_add_relu(tmp_path / "b4.onnx", batch=4)
    x = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    eval_in, eval_out = tmp_path / "e.npz", tmp_path / "o.npz"
    np.savez(eval_in, x=x)
    doc = run_runner("--model", model, "--eval-inputs", eval_in, "--eval-output", eval_out).doc
    assert doc.eval_output is not None and doc.eval_output.rows == 10
    with np.load(eval_out) as out:
        np.testing.assert_allclose(out["y"], np.maximum(x + np.arange(1, 5), 0), rtol=1e-6)


def test_eval_failure_keeps_the_timing(add_relu: Path, tmp_path: Path) -> None:
    eval_in = tmp_path / "e.npz"
    np.savez(eval_in, x=np.zeros((3, 7), np.float32))
    run = run_runner(
        "--model", add_relu, "--eval-inputs", eval_in, "--eval-output", tmp_path / "o.npz"
    )
    assert run.returncode == 2 and run.doc.error is not None and run.doc.error.kind == "input"
    assert run.doc.timing is not None and len(run.doc.timing.latencies_ns) >= 3


def test_corrupt_model_is_model_load(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 50)
    run = run_runner("--model", bad)
    assert run.returncode == 2 and run.doc.status == "error"
    assert run.doc.error is not None and run.doc.error.kind == "model_load"
    assert run.doc.timing is None
    assert run.doc.model.sha256 == hashlib.sha256(bad.read_bytes()).hexdigest()


def test_missing_model_file_is_model_load(tmp_path: Path) -> None:
    run = run_runner("--model", tmp_path / "absent.onnx")
    assert run.doc.error is not None and run.doc.error.kind == "model_load"
    assert "not found" in run.doc.error.message


def test_custom_op_is_unsupported_op_naming_it(tmp_path: Path) -> None:
    model = models.onnx_custom_op(tmp_path / "custom.onnx", op_type="FancyNorm")
    run = run_runner("--model", model)
    assert run.returncode == 2
    assert run.doc.error is not None
    assert run.doc.error.kind == "unsupported_op" and run.doc.error.op == "FancyNorm"


@pytest.mark.parametrize(
    "args",
    [
        ["--bogus"],
        ["--threads", "0"],
        ["--shape", "x=axb"],
        ["--value", "x=1:0"],
        ["--runtime", "ai_edge_litert"],
        ["--provider", "warp-drive"],
        ["--eval-inputs", "e.npz"],
    ],
)
def test_bad_arguments_exit_3_with_a_document(add_relu: Path, args: list[str]) -> None:
    run = run_runner("--model", add_relu, *args)
    assert run.returncode == 3
    assert run.doc.status == "error" and run.doc.error is not None
    assert run.doc.error.kind == "bad_arguments"


def test_help_prints_no_document() -> None:
    import subprocess
    import sys

    from tests.fixtures.runner.invoke import RUNNER

    proc = subprocess.run(
        [sys.executable, str(RUNNER), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout == "" and "--min-duration-s" in proc.stderr


def test_sigterm_during_timed_runs_prints_the_samples_so_far(add_relu: Path) -> None:
    import signal
    import subprocess
    import sys

    from harness.results.schema import parse_runner_document
    from tests.fixtures.runner.invoke import RUNNER

    proc = subprocess.Popen(
        [sys.executable, str(RUNNER), "--model", str(add_relu), "--min-duration-s", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "timed runs started" in line:
                break
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    doc = parse_runner_document(stdout)
    assert proc.returncode == 2
    assert doc.error is not None and doc.error.kind == "inference"
    assert "signal 15" in doc.error.message
    assert doc.timing is not None and len(doc.timing.latencies_ns) > 10


def test_runner_pushed_without_its_siblings_still_prints_a_document(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from harness.results.schema import parse_runner_document
    from tests.fixtures.runner.invoke import RUNNER

    alone = tmp_path / "device-dir"
    alone.mkdir()
    shutil.copy(RUNNER, alone / RUNNER.name)
    proc = subprocess.run(
        [sys.executable, str(alone / RUNNER.name), "--model", "m.tflite"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    doc = parse_runner_document(proc.stdout)
    assert proc.returncode == 2 and doc.error is not None
    assert doc.error.kind == "runtime_missing" and "runner_errors" in doc.error.message
    assert doc.model.path == "m.tflite" and doc.model.format == "tflite"


def test_an_input_from_both_npz_and_value_is_refused(add_relu: Path, tmp_path: Path) -> None:
    path = tmp_path / "in.npz"
    np.savez(path, x=np.zeros((1, 4), np.float32))
    run = run_runner("--model", add_relu, "--inputs", path, "--value", "x=1")
    assert run.returncode == 2 and run.doc.error is not None
    assert run.doc.error.kind == "input" and "both --value" in run.doc.error.message


def test_string_inputs_come_from_npz(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("text", TensorProto.STRING, ["n"])
    y = helper.make_tensor_value_info("same", TensorProto.STRING, ["n"])
    model = models.onnx_model(
        tmp_path / "s.onnx", [helper.make_node("Identity", ["text"], ["same"])], [x], [y]
    )
    run = run_runner("--model", model)
    assert run.doc.error is not None and run.doc.error.kind == "input"
    assert "text" in run.doc.error.message and "--inputs" in run.doc.error.message
    path = tmp_path / "s.npz"
    np.savez(path, text=np.array(["monday", "Tuesday", "x"]))
    doc = run_runner("--model", model, "--inputs", path).doc
    assert doc.status == "ok", doc.error
    assert doc.inputs[0].dtype == "object" and doc.inputs[0].shape == [3]
    assert doc.outputs[0].shape == [3]
