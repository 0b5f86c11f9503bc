"""The runner's pure pieces, imported directly: device state from a fixture sysfs/procfs tree,
the stopping rule on a real clock, seeded input generation and error-text classification."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.runner.invoke import PI5, REPO, run_runner

sys.path.insert(0, str(REPO / "runners"))

import runner_device
import runner_errors
import runner_inputs as ri
import runner_timing


@pytest.fixture
def pi5(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("HARNESS_SYSFS_ROOT", str(PI5))
    monkeypatch.setenv("HARNESS_PROCFS_ROOT", str(PI5 / "proc"))
    yield PI5


def test_cpufreq_per_cpu_from_fixture_tree(pi5: Path) -> None:
    governors, cur, top = runner_device.cpu_frequencies()
    assert governors == {
        "cpu0": "performance",
        "cpu1": "ondemand",
        "cpu2": "ondemand",
        "cpu3": "ondemand",
    }
    assert cur == {"cpu0": 1_500_000, "cpu1": 2_400_000, "cpu2": 2_400_000, "cpu3": 1_500_000}
    assert top == dict.fromkeys(("cpu0", "cpu1", "cpu2", "cpu3"), 2_400_000)


def test_thermal_zones_in_celsius_skipping_unreadable(pi5: Path) -> None:
    zones = runner_device.thermal_zones()
    assert [(z["name"], z["type"], z["temp_c"]) for z in zones] == [
        ("thermal_zone0", "cpu-thermal", 51.3),
        ("thermal_zone1", "rp1_adc", 42.15),
        ("thermal_zone10", "battery", -2.5),
    ]


def test_cpu_model_loadavg_and_peak_memory(pi5: Path) -> None:
    assert runner_device.cpu_model() == "Raspberry Pi 5 Model B Rev 1.0"
    assert runner_device.loadavg() == [0.52, 0.58, 0.59]
    assert runner_device.peak_memory() == {"peak_rss_kb": 187652, "source": "VmHWM"}


def test_without_procfs_peak_memory_falls_back_to_rusage(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HARNESS_PROCFS_ROOT", str(tmp_path))
    memory = runner_device.peak_memory()
    assert memory["source"] == "ru_maxrss" and memory["peak_rss_kb"] > 1000


def test_document_carries_fixture_device_state(tmp_path: Path) -> None:
    from tests.fixtures.runner import models

    model = models.onnx_add_relu(tmp_path / "m.onnx")
    doc = run_runner(
        "--model",
        model,
        "--no-placement-probe",
        env={"HARNESS_SYSFS_ROOT": str(PI5), "HARNESS_PROCFS_ROOT": str(PI5 / "proc")},
    ).doc
    state = doc.device_state
    assert state.cpu_model == "Raspberry Pi 5 Model B Rev 1.0"
    assert state.governors["cpu0"] == "performance" and state.max_freq_khz["cpu3"] == 2_400_000
    assert [z.temp_c for z in state.thermal_zones] == [51.3, 42.15, -2.5]
    assert state.loadavg == [0.52, 0.58, 0.59]
    assert doc.memory.peak_rss_kb == 187652


def test_stopping_rule_on_a_real_clock() -> None:
    def sleep_5ms() -> None:
        time.sleep(0.005)

    # min_runs dominates
    loop = runner_timing.timed_loop(
        lambda: None, sleep_5ms, 4, 0.0, 0.0, runner_timing.LoopResult()
    )
    assert len(loop.latencies_ns) == 4
    # min duration dominates: at least 60 ms of runs, so more than 3 runs of 5 ms
    loop = runner_timing.timed_loop(
        lambda: None, sleep_5ms, 3, 0.06, 0.0, runner_timing.LoopResult()
    )
    assert len(loop.latencies_ns) > 3 and sum(loop.latencies_ns) >= 0.06e9 * 0.9
    # max duration stops the loop long before min_runs, finishing the run in progress only
    loop = runner_timing.timed_loop(
        lambda: None, sleep_5ms, 10_000, 0.0, 0.05, runner_timing.LoopResult()
    )
    assert 2 <= len(loop.latencies_ns) < 40
    assert loop.window.clock == "CLOCK_BOOTTIME"
    assert loop.window.start_ns is not None and loop.window.end_ns is not None
    assert loop.window.end_ns - loop.window.start_ns >= sum(loop.latencies_ns)


def test_timer_overhead_is_small_and_positive() -> None:
    assert 0 < runner_timing.timer_overhead_ns() < 50_000


def _spec(name: str, dtype: str, shape: list[ri.Dim]) -> ri.TensorSpec:
    return ri.TensorSpec(name=name, dtype=dtype, declared_shape=shape)


def test_generated_data_is_seeded_and_in_range() -> None:
    def make(dtype: str, value: ri.ValueSpec | None = None, seed: int = 0) -> np.ndarray:
        return ri.make_tensor(_spec("t", dtype, [4000]), [4000], np.random.default_rng(seed), value)

    assert np.array_equal(make("float32"), make("float32"))
    assert not np.array_equal(make("float32", seed=0), make("float32", seed=1))
    ids = make("int64")
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < 100
    q = make("int8")
    assert q.min() == -128 and q.max() == 127  # quantized inputs span the whole range
    u = make("uint8")
    assert u.min() == 0 and u.max() == 255
    flags = make("bool")
    assert flags.dtype == np.bool_ and 0 < flags.sum() < 4000
    tokens = make("int64", ri.parse_values(["t=0:30522"])["t"])
    assert tokens.min() >= 0 and tokens.max() < 30522 and tokens.max() > 100
    assert (make("int64", ri.parse_values(["t=16000"])["t"]) == 16000).all()
    halves = make("float16", ri.parse_values(["t=-1.5:1.5"])["t"])
    assert halves.dtype == np.float16 and halves.min() >= -1.5 and halves.max() <= 1.5


@pytest.mark.parametrize(
    ("dtype", "text", "fragment"),
    [("int8", "t=0:300", "outside the int8 range"), ("int64", "t=0.5", "must be an integer")],
)
def test_values_that_do_not_fit_the_dtype_are_input_errors(
    dtype: str, text: str, fragment: str
) -> None:
    value = ri.parse_values([text])["t"]
    with pytest.raises(runner_errors.RunnerError) as info:
        ri.make_tensor(_spec("t", dtype, [3]), [3], np.random.default_rng(0), value)
    assert info.value.kind == "input" and fragment in info.value.message


def test_dynamic_dims_in_every_form_resolve_to_one() -> None:
    plan = ri.InputPlan()
    spec = _spec("x", "float32", ["batch", None, -1, "?", 3])
    assert ri.resolve_shape(spec, None, False, plan) == [1, 1, 1, 1, 3]
    assert ri.resolve_shape(spec, [2, 5, 6, 7, 3], False, plan) == [2, 5, 6, 7, 3]
    assert ri.parse_shapes(["a:0=1x3x640x640", "s="]) == {"a:0": [1, 3, 640, 640], "s": []}


@pytest.mark.parametrize(
    ("text", "op"),
    [
        (
            "[ONNXRuntimeError] : 1 : FAIL : Load model from m.onnx failed:Fatal error: "
            "com.example:MyCustomOp(-1) is not a registered function/op",
            "MyCustomOp",
        ),
        (
            'This is an invalid model. In Node, ("", NoSuchOp, "", -1) : ... Error No Op '
            "registered for NoSuchOp with domain_version of 17",
            "NoSuchOp",
        ),
        (
            "[ONNXRuntimeError] : 9 : NOT_IMPLEMENTED : Could not find an implementation for "
            "Add(6) node with name ''",
            "Add",
        ),
        (
            "Encountered unresolved custom op: Erfinv.\nSee instructions: "
            "https://www.tensorflow.org/lite/guide/ops_custom Node number 1 (Erfinv) failed to "
            "prepare.",
            "Erfinv",
        ),
        (
            "Didn't find op for builtin opcode 'STABLEHLO_COMPOSITE' version '1'. An older version "
            "of this builtin might be supported.",
            "STABLEHLO_COMPOSITE",
        ),
    ],
)
def test_runtime_messages_name_the_unsupported_op(text: str, op: str) -> None:
    error = runner_errors.classify_load_error(RuntimeError(text), "m")
    assert (error.kind, error.op) == ("unsupported_op", op)
    assert "\n" not in error.message


def test_other_prepare_failures_are_allocation_naming_the_node() -> None:
    error = runner_errors.classify_prepare_error(
        RuntimeError(
            "tensorflow/lite/kernels/reshape.cc:92 num_input_elements != num_output_elements (6 != 4)"
            "Node number 0 (RESHAPE) failed to prepare."
        )
    )
    assert (error.kind, error.op) == ("allocation", "RESHAPE")


def test_runner_modules_never_import_harness() -> None:
    for path in (REPO / "runners").glob("*.py"):
        text = path.read_text()
        assert "import harness" not in text and "from harness" not in text, path.name
        assert "from __future__ import annotations" in text, path.name


def test_runner_sources_parse_as_python_3_9() -> None:
    import ast

    for path in (REPO / "runners").glob("*.py"):
        ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))


def test_zero_dims_are_refused_an_empty_tensor_times_nothing() -> None:
    with pytest.raises(runner_errors.RunnerError) as info:
        ri.parse_shapes(["input=0x3x128x128"])
    assert info.value.kind == "bad_arguments" and "dims must be >= 1" in info.value.message


def test_gather_index_out_of_range_hints_at_bounding_the_ids() -> None:
    text = (
        "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status code returned while running "
        "Gather node. Name:'lookup' Status Message: indices element out of data bounds, idx=63 "
        "must be within the inclusive range [-50,49]"
    )
    error = runner_errors.classify_inference_error(RuntimeError(text))
    assert error.kind == "inference" and error.op == "Gather"
    assert "--value NAME=0:N" in error.message
    plain = runner_errors.classify_inference_error(RuntimeError("Pad reflect requires axis"))
    assert "--value" not in plain.message


def test_a_file_that_is_not_an_npz_says_so(tmp_path: Path) -> None:
    path = tmp_path / "inputs.npz"
    path.write_text("hello")
    with pytest.raises(runner_errors.RunnerError) as info:
        ri.load_npz(str(path))
    assert "not an .npz file" in info.value.message and "pickle" not in info.value.message
