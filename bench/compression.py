"""Benchmark: baseline vs structured-prune-50 % vs int8-static on the demo models, side by side.

Makes the variants with :func:`harness.compress.compress_model`, then times the three models
with onnxruntime on the same input and the same thread count, *alternating* between them in
rounds (so drift in CPU clock or load hits all three alike), and prints the median latency,
its ratio to the baseline, the file size and the fidelity of each.

    /work/venv/bin/python bench/compression.py [--threads 1] [--rounds 30] [--runs-per-round 20]

mobilenet_tiny has no calibration set in the demo; it is calibrated and evaluated on seeded
uniform [-1, 1] images (its weights are untrained, so only latency and size mean anything).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.compress import Manifest, compress_model
from harness.compress.graph import gzip_size
from harness.paths import demo_dir

PRUNE = "prune:sparsity=0.5,structured=true"
INT8 = "int8-static"


@dataclass(frozen=True)
class Timed:
    """Median and quartiles of one model's per-inference latency."""

    label: str
    median_ms: float
    p25_ms: float
    p75_ms: float


def session(path: Path, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def time_alternating(
    models: dict[str, Path], feed: dict[str, np.ndarray], threads: int, rounds: int, per_round: int
) -> dict[str, Timed]:
    """Per-inference latency of each model, rounds interleaved and the order rotated."""
    sessions = {k: session(p, threads) for k, p in models.items()}
    for s in sessions.values():  # warm-up: allocations, kernel selection
        for _ in range(max(5, per_round // 2)):
            s.run(None, feed)
    samples: dict[str, list[float]] = {k: [] for k in models}
    labels = list(models)
    for r in range(rounds):
        order = labels[r % len(labels) :] + labels[: r % len(labels)]
        for label in order:
            run = sessions[label].run
            for _ in range(per_round):
                t0 = time.perf_counter_ns()
                run(None, feed)
                samples[label].append((time.perf_counter_ns() - t0) / 1e6)
    out = {}
    for label, xs in samples.items():
        q = statistics.quantiles(xs, n=4)
        out[label] = Timed(label, statistics.median(xs), q[0], q[2])
    return out


def describe(m: Manifest | None) -> str:
    if m is None or m.fidelity is None:
        return ""
    f = m.fidelity
    parts = [f"agree {f.top1_agreement:.3f}" if f.top1_agreement is not None else ""]
    parts += [f"cos {f.cosine_similarity:.4f}"]
    parts += [f"{x.name} {x.variant:.3f} ({-x.drop:+.1f} pt)" for x in f.metrics[:1]]
    parts += ["FLAGGED" if m.flagged else ""]
    return "  ".join(p for p in parts if p)


def bench_model(name: str, out_root: Path, args: argparse.Namespace) -> None:
    demo = demo_dir()
    src = demo / f"{name}.onnx"
    if name == "digits_mlp":
        calib, eval_data = demo / "digits_calib.npz", demo / "digits_eval.npz"
        feed_x = np.load(eval_data)["input"][:1]
    else:
        rng = np.random.default_rng(0)
        images = rng.uniform(-1, 1, (32, 3, 128, 128)).astype(np.float32)
        calib = eval_data = out_root / f"{name}_images.npz"
        np.savez(calib, input=images)
        feed_x = images[:1]
    t0 = time.perf_counter()
    outcomes = compress_model(src, [PRUNE, INT8], out_root, calib=calib, eval_data=eval_data)
    made = time.perf_counter() - t0
    manifests: dict[str, Manifest | None] = {"baseline": None}
    models = {"baseline": src}
    for o in outcomes:
        if not o.ok:
            print(f"  {o.recipe}: FAILED {o.error.one_line() if o.error else ''}")
            continue
        path, made_manifest = o.unwrap()
        models[o.recipe] = path
        manifests[o.recipe] = made_manifest
    timed = time_alternating(
        models, {"input": feed_x}, args.threads, args.rounds, args.runs_per_round
    )
    base = timed["baseline"].median_ms
    print(f"\n{name}  (variants made in {made:.2f} s; batch 1, {args.threads} thread(s), "
          f"{args.rounds} alternating rounds x {args.runs_per_round} runs)")  # fmt: skip
    print(f"  {'variant':<38} {'bytes':>9} {'gzip':>9} {'MACs':>11} {'median ms':>10} "
          f"{'IQR ms':>15} {'ratio':>6}  fidelity")  # fmt: skip
    for label, t in timed.items():
        m = manifests.get(label)
        size = models[label].stat().st_size
        gz = m.gzip_size_bytes if m else gzip_size(models[label])
        macs = m.macs_per_sample if m else next(
            (x.source_macs_per_sample for x in manifests.values() if x), None
        )  # fmt: skip
        print(
            f"  {label:<38} {size:>9,} {gz:>9,} {macs or '-':>11} "
            f"{t.median_ms:>10.4f} {f'{t.p25_ms:.4f}-{t.p75_ms:.4f}':>15} "
            f"{t.median_ms / base:>6.2f}  {describe(m)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--runs-per-round", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=["digits_mlp", "mobilenet_tiny"])
    parser.add_argument("--out", type=Path, default=None, help="keep the variants here")
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}, numpy {np.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        out_root = args.out or Path(tmp)
        for name in args.models:
            bench_model(name, out_root, args)


if __name__ == "__main__":
    main()
