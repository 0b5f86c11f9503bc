"""Does the harness report what a bare timing loop sees? (issue 3's fidelity benchmark)

Alternates, in one run, (a) a full harness job on the local device (deploy, runner subprocess,
JSON, validation, statistics) and (b) a bare ``perf_counter_ns`` loop of the same runtime on the
same model and thread count in its own subprocess, and prints the ratio of medians.
Goal: 1.00 +/- 0.02 on a model whose inference takes >= 1 ms.

    python bench/fidelity.py [--model harness/demo/mobilenet_tiny.onnx] [--rounds 5] [--runs 200]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from harness.benchmark import SettingsOverrides, load_models, plan_jobs
from harness.profiles import find_profile
from harness.session import DeviceSession
from harness.transport.local import LocalTransport

_BARE_LOOP = r"""
import sys, time, numpy as np
path, threads, warmup, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if path.endswith(".onnx"):
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    feeds = {}
    for i in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
        feeds[i.name] = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    call = lambda: sess.run(None, feeds)
else:
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=path, num_threads=threads); it.allocate_tensors()
    for d in it.get_input_details():
        it.set_tensor(d["index"], np.random.default_rng(0).standard_normal(d["shape"]).astype(d["dtype"]))
    call = it.invoke
for _ in range(warmup):
    call()
samples = []
for _ in range(runs):
    t0 = time.perf_counter_ns(); call(); samples.append(time.perf_counter_ns() - t0)
samples.sort()
print(samples[len(samples) // 2] / 1e6)
"""


def main() -> None:
    """Alternate harness jobs and bare loops; print per-round medians and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("harness/demo/mobilenet_tiny.onnx"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    profile = find_profile("local")
    overrides = SettingsOverrides(threads=(args.threads,), warmup_runs=args.warmup,
                                  min_runs=args.runs, min_duration_s=0.0, max_duration_s=600.0)
    [job] = plan_jobs(load_models([args.model]), [profile], overrides)
    session = DeviceSession(profile, LocalTransport())
    session.prepare()
    harness_ms: list[float] = []
    bare_ms: list[float] = []
    for round_index in range(args.rounds):
        outcome = session.run_job(job, run_id=f"fidelity-{round_index}")
        if outcome.result.latency is None:
            raise SystemExit(f"harness job failed: {outcome.result.error}")
        harness_ms.append(outcome.result.latency.median_ms)
        bare = subprocess.run(
            [sys.executable, "-c", _BARE_LOOP, str(args.model), str(args.threads),
             str(args.warmup), str(args.runs)], capture_output=True, text=True, check=True)
        bare_ms.append(float(bare.stdout.strip()))
        print(f"round {round_index}: harness median {harness_ms[-1]:.4f} ms, "
              f"bare loop median {bare_ms[-1]:.4f} ms")
    ratio = statistics.median(harness_ms) / statistics.median(bare_ms)
    print(f"model {args.model.name}, threads {args.threads}, {args.rounds} rounds x {args.runs} runs")
    print(f"harness/bare median ratio: {ratio:.3f} (goal 1.00 +/- 0.02)")


if __name__ == "__main__":
    main()
