#!/usr/bin/env python3
"""harness-runner: time one ONNX or TFLite model on this device and print one JSON document.

Runs ON the device: Python 3.9+, standard library + numpy + the runtime; never imports
``harness``. The host pushes every ``runners/*.py`` file into one directory and runs
``python3 harness_runner.py --model PATH ...`` (see README.md in this directory).

Stdout carries exactly one JSON document (schema "harness.runner-result", version 1); everything
else, including what runtimes print from C/C++, goes to stderr. Exit codes: 0 status ok, 2 status
error (the document says why), 3 bad arguments.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import sys
import time
import traceback
from typing import Any, NoReturn

RUNNER_VERSION = "1.0.0"
SCHEMA_NAME = "harness.runner-result"
SCHEMA_VERSION = 2
EXIT_OK, EXIT_ERROR, EXIT_BAD_ARGUMENTS = 0, 2, 3


def new_document(model_path: str) -> dict[str, Any]:
    """The document skeleton; filled in as the run goes so an error keeps what was measured."""
    return {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "producer": {"name": "harness-runner", "version": RUNNER_VERSION},
        "status": "error",
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "model": {
            "path": model_path,
            "format": "tflite" if model_path.endswith(".tflite") else "onnx",
        },
        "settings": {},
        "execution": {"notes": []},
        "inputs": [],
        "outputs": [],
        "timing": None,
        "memory": {},
        "device_state": {},
    }


def model_arg(argv: list[str]) -> str:
    """The --model path, scanned before parsing so even a bad command line's document names it."""
    model = ""
    for i, arg in enumerate(argv):
        if arg == "--model" and i + 1 < len(argv):
            model = argv[i + 1]
        elif arg.startswith("--model="):
            model = arg.split("=", 1)[1]
    return model


# Sibling modules live next to this file on the device.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    from runner_errors import (
        KIND_BAD_ARGUMENTS,
        KIND_INFERENCE,
        KIND_INTERNAL,
        KIND_MODEL_LOAD,
        KIND_RUNTIME_MISSING,
        RunnerError,
        classify_inference_error,
    )
except ImportError as _missing:
    if __name__ != "__main__":
        raise
    # Pushed without its siblings: still answer with a document, not a traceback.
    _doc = new_document(model_arg(sys.argv[1:]))
    _doc["error"] = {
        "kind": "runtime_missing",
        "message": f"{_missing}; push every runners/*.py file into the runner's directory",
        "op": None,
    }
    print(json.dumps(_doc))
    sys.exit(EXIT_ERROR)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise RunnerError(KIND_BAD_ARGUMENTS, f"bad arguments: {message}")


def build_parser() -> argparse.ArgumentParser:
    """The command line contract (documented in runners/README.md)."""
    p = _Parser(prog="harness_runner.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="path to a .onnx or .tflite model")
    p.add_argument(
        "--runtime",
        default="auto",
        choices=["auto", "onnxruntime", "ai_edge_litert", "tflite_runtime", "tensorflow"],
    )
    p.add_argument(
        "--threads", type=int, default=None, help="intra-op threads (default: runtime's)"
    )
    p.add_argument(
        "--provider",
        default="default",
        help="default|cpu|xnnpack|none|<OrtProviderName> (TFLite: none = XNNPACK off)",
    )
    p.add_argument("--warmup-runs", type=int, default=3)
    p.add_argument("--min-runs", type=int, default=20)
    p.add_argument("--min-duration-s", type=float, default=1.0)
    p.add_argument("--max-duration-s", type=float, default=150.0, help="0 = no limit")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shape", action="append", default=[], metavar="NAME=1x3x224x224")
    p.add_argument("--value", action="append", default=[], metavar="NAME=V|NAME=LO:HI")
    p.add_argument("--inputs", default=None, metavar="INPUTS.npz")
    p.add_argument("--eval-inputs", default=None, metavar="EVAL.npz")
    p.add_argument("--eval-output", default=None, metavar="OUT.npz")
    p.add_argument(
        "--eval-batch",
        type=int,
        default=None,
        help="rows per eval run for a dynamic batch dim (default: the timed batch)",
    )
    p.add_argument(
        "--no-placement-probe",
        action="store_true",
        help="ORT: skip the second, verbose session that counts nodes per provider",
    )
    import power_sampler  # the power sampler's flags (runners/power_sampler.py)

    power_sampler.add_arguments(p)
    return p


def _check_args(args: argparse.Namespace) -> None:
    for flag in ("warmup_runs", "min_runs"):
        if getattr(args, flag) < 0:
            raise RunnerError(KIND_BAD_ARGUMENTS, f"--{flag.replace('_', '-')} must be >= 0")
    if args.min_duration_s < 0 or args.max_duration_s < 0:
        raise RunnerError(KIND_BAD_ARGUMENTS, "durations must be >= 0")
    if args.threads is not None and args.threads < 1:
        raise RunnerError(KIND_BAD_ARGUMENTS, "--threads must be >= 1")
    if bool(args.eval_inputs) != bool(args.eval_output):
        raise RunnerError(KIND_BAD_ARGUMENTS, "--eval-inputs and --eval-output go together")
    if args.eval_batch is not None and args.eval_batch < 1:
        raise RunnerError(KIND_BAD_ARGUMENTS, "--eval-batch must be >= 1")


def _settings(args: argparse.Namespace, shapes: dict[str, list[int]]) -> dict[str, Any]:
    values: dict[str, str] = {}
    for text in args.value:
        name, _, value = text.rpartition("=")
        values[name] = value
    return {
        "threads": args.threads,
        "provider": args.provider,
        "warmup_runs": args.warmup_runs,
        "min_runs": args.min_runs,
        "min_duration_s": args.min_duration_s,
        "max_duration_s": args.max_duration_s,
        "seed": args.seed,
        "shapes": shapes,
        "values": values,
        "inputs_file": args.inputs,
    }


class _Interrupted(RunnerError):
    pass


def _on_signal(signum: int, _frame: Any) -> None:
    raise _Interrupted(
        KIND_INFERENCE,
        f"runner interrupted by signal {signum}; the samples taken so far are in the document",
    )


def run(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    """One benchmark job; fills ``doc`` step by step and raises RunnerError on failure."""
    import runner_device
    import runner_inputs as ri
    import runner_timing as rt
    from runner_backends import choose_runtime, make_backend, model_format

    shapes_arg = ri.parse_shapes(args.shape)
    values = ri.parse_values(args.value)
    doc["settings"] = _settings(args, shapes_arg)
    fmt = model_format(args.model)
    doc["model"] = {"path": args.model, "format": fmt}
    if not os.path.isfile(args.model):
        raise RunnerError(KIND_MODEL_LOAD, f"model file not found: {args.model}")
    runtime, module = choose_runtime(args.runtime, fmt)
    backend = make_backend(runtime, module, args.model, args.threads, args.provider)
    doc["runtime"] = {"name": backend.runtime_name, "version": backend.runtime_version}
    npz = ri.load_npz(args.inputs) if args.inputs else {}

    doc["device_state"] = runner_device.device_state()
    timing: dict[str, Any] = {
        "timer_resolution_ns": rt.timer_resolution_ns(),
        "timer_overhead_ns": rt.timer_overhead_ns(),
    }

    # Init: load + session/interpreter + (TFLite) resize + allocate_tensors.
    t0 = time.perf_counter_ns()
    backend.load()
    specs = backend.input_specs()
    shapes_by = ri.by_input(specs, shapes_arg, "--shape")
    values_by = ri.by_input(specs, values, "--value")
    from_file = ri.match_npz(specs, npz, args.inputs, strict=True) if args.inputs else {}
    plan = ri.plan_inputs(
        specs, shapes_by, values_by, from_file, args.inputs, backend.allow_fixed_override
    )
    backend.prepare(plan.shapes)
    timing["init_ms"] = (time.perf_counter_ns() - t0) / 1e6
    doc["execution"]["notes"].extend(plan.notes)

    feeds = ri.make_feeds(specs, plan, values_by, from_file, args.inputs, args.seed)
    for spec in specs:
        doc["inputs"].append(_tensor_info(spec, feeds[spec.name], plan.sources[spec.name]))
    _measure(backend, feeds, args, timing, doc)
    doc["memory"] = runner_device.peak_memory()
    doc["device_state"]["thermal_zones_after"] = runner_device.thermal_zones()

    execution = backend.describe_execution()
    execution["notes"] = doc["execution"]["notes"] + execution.get("notes", [])
    doc["execution"] = execution
    if not args.no_placement_probe:
        backend.probe(execution)

    if args.eval_inputs:
        from runner_eval import run_eval

        arrays = ri.match_npz(specs, ri.load_npz(args.eval_inputs), args.eval_inputs, strict=False)
        first = plan.shapes[specs[0].name]
        batch = args.eval_batch or (first[0] if first else 1)
        rows = run_eval(
            backend, specs, arrays, feeds, plan.shapes, batch, args.eval_inputs, args.eval_output
        )
        doc["eval_output"] = {"path": args.eval_output, "rows": rows}


def _measure(
    backend: Any,
    feeds: dict[str, Any],
    args: argparse.Namespace,
    timing: dict[str, Any],
    doc: dict[str, Any],
) -> None:
    """First inference, warm-up and the timed loop; samples land in ``doc`` as they are taken."""
    import power_sampler
    import runner_timing as rt

    def bind() -> None:
        backend.bind(feeds)

    power = None
    loop = rt.LoopResult()

    try:
        timing["first_inference_ms"] = rt.timed_once(bind, backend.invoke) / 1e6
        outputs = backend.outputs()
        for spec, value in zip(backend.output_specs(), outputs):
            doc["outputs"].append(_tensor_info(spec, value, "output"))
        timing["warmup_latencies_ns"] = []
        for _ in range(args.warmup_runs):
            timing["warmup_latencies_ns"].append(rt.timed_once(bind, backend.invoke))
        # Power: start the sampler, take the idle baseline, lengthen the window for the source.
        power = power_sampler.PowerSession.from_args(args)
        if power is not None:
            power.start()
            power.idle()
            args.min_duration_s, args.max_duration_s = power.extend(
                args.min_duration_s, args.max_duration_s
            )
        loop = rt.LoopResult()
        timing["latencies_ns"] = loop.latencies_ns  # shared list: partial samples survive errors
        doc["timing"] = timing
        print("harness-runner: timed runs started", file=sys.stderr, flush=True)
        rt.timed_loop(
            bind, backend.invoke, args.min_runs, args.min_duration_s, args.max_duration_s, loop
        )
    except RunnerError:
        raise
    except Exception as exc:
        raise classify_inference_error(exc) from None
    finally:
        if "latencies_ns" in timing:
            timing.update(
                {
                    "window_clock": loop.window.clock,
                    "window_start_ns": loop.window.start_ns,
                    "window_end_ns": loop.window.end_ns,
                }
            )
        if power is not None:  # stop the sampler; its trace survives a failed loop too
            doc["power"] = power.finish(loop.window.start_ns, loop.window.end_ns)


def _tensor_info(spec: Any, value: Any, source: str) -> dict[str, Any]:
    info = {
        "name": spec.name,
        "dtype": value.dtype.name,
        "shape": list(value.shape),
        "declared_shape": spec.declared_shape,
        "source": source,
        "quantization": spec.quantization,
    }
    if spec.alias:
        info["tensor_name"] = spec.alias  # TFLite: the tensor's own name behind a signature name
    return info


def _claim_stdout() -> Any:
    """Keep the real stdout for the document; point fd 1 and sys.stdout at stderr so nothing a
    runtime prints (even from C) can corrupt the JSON."""
    sys.stdout.flush()
    real = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return real


def main(argv: list[str] | None = None) -> int:
    """Parse, run, print the document; return the exit code."""
    real_stdout = _claim_stdout()
    argv = sys.argv[1:] if argv is None else argv
    doc = new_document(model_arg(argv))
    code = EXIT_ERROR
    _set_signal_handlers(_on_signal)
    try:
        args = build_parser().parse_args(argv)
        _check_args(args)
        run(args, doc)
        doc["status"] = "ok"
        code = EXIT_OK
    except RunnerError as exc:
        doc["error"] = {"kind": exc.kind, "message": exc.message, "op": exc.op}
        code = EXIT_BAD_ARGUMENTS if exc.kind == KIND_BAD_ARGUMENTS else EXIT_ERROR
        print(f"harness-runner: {exc.kind}: {exc.message}", file=sys.stderr)
    except SystemExit as exc:  # --help / --version print to stderr and print no document
        if exc.code in (0, None):
            doc = {}
            code = EXIT_OK
        else:
            doc["error"] = {"kind": KIND_BAD_ARGUMENTS, "message": str(exc), "op": None}
            code = EXIT_BAD_ARGUMENTS
    except ImportError as exc:  # numpy, or a sibling module that was not pushed
        if exc.name == "numpy":
            message = f"{exc}; install it with: pip install numpy"
        else:
            message = f"{exc}; push every runners/*.py file into the runner's directory"
        doc["error"] = {"kind": KIND_RUNTIME_MISSING, "message": message, "op": None}
    except Exception as exc:
        traceback.print_exc(file=sys.stderr)
        doc["error"] = {
            "kind": KIND_INTERNAL,
            "message": f"{type(exc).__name__}: {exc}",
            "op": None,
        }
    finally:
        _set_signal_handlers(signal.SIG_DFL)
        if doc:
            _finish(doc)
            real_stdout.write(json.dumps(doc, allow_nan=False, default=_jsonable) + "\n")
            real_stdout.flush()
    return code


def _set_signal_handlers(handler: Any) -> None:
    # SIGTERM/SIGINT become an error document that keeps the samples; only the main thread may
    # install handlers (main() called from another thread just goes without).
    try:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, handler)
    except ValueError:
        pass


def _finish(doc: dict[str, Any]) -> None:
    """Fill what every document carries, even an error one (best effort)."""
    try:
        import runner_device

        if doc["model"].get("path"):
            doc["model"].update(
                runner_device.model_info(doc["model"]["path"], doc["model"]["format"])
            )
        if not doc["memory"]:
            doc["memory"] = runner_device.peak_memory()
        if not doc["device_state"]:
            doc["device_state"] = runner_device.device_state()
    except Exception as exc:
        print(f"harness-runner: finishing the document failed: {exc}", file=sys.stderr)
    if doc["status"] == "ok":
        doc.pop("error", None)


def _jsonable(value: Any) -> Any:
    # numpy scalars and arrays that slipped into the document
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
