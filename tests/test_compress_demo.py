"""The bundled demo models through every recipe; the issue's size/accuracy bar for int8-static."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from harness.compress import VariantOutcome, compress_model
from harness.compress.graph import weight_layers
from harness.paths import demo_dir

DEMO = demo_dir()
ALL_RECIPES = [
    "fp16",
    "int8-dynamic",
    "int8-static",
    "int4",
    "prune:sparsity=0.5",
    "prune:sparsity=0.5,structured=true",
    "lowrank:energy=0.95",
    "cluster:k=16",
    "prune:sparsity=0.25,structured=true>int8-static",
    # the optional torch extra; without torch it must fail cleanly (checked in test_compress_distill)
    *(["distill"] if importlib.util.find_spec("torch") else []),
]


@pytest.fixture(scope="module")
def digits_variants(tmp_path_factory: pytest.TempPathFactory) -> dict[str, VariantOutcome]:
    out = compress_model(
        DEMO / "digits_mlp.onnx",
        ALL_RECIPES,
        tmp_path_factory.mktemp("demo"),
        calib=DEMO / "digits_calib.npz",
        eval_data=DEMO / "digits_eval.npz",
        metric="top1",
    )
    return {o.recipe: o for o in out}


def test_every_recipe_makes_a_loadable_variant_of_the_demo_mlp(
    digits_variants: dict[str, VariantOutcome],
) -> None:
    x = np.load(DEMO / "digits_eval.npz")["input"][:8]
    for recipe in ALL_RECIPES:
        path, _ = digits_variants[recipe].unwrap()
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert sess.run(None, {"input": x})[0].shape == (8, 10)


def test_demo_int8_static_is_3x_smaller_within_2_points(
    digits_variants: dict[str, VariantOutcome],
) -> None:
    _, m = digits_variants["int8-static"].unwrap()
    assert m.source_size_bytes / m.size_bytes >= 3.0
    assert m.fidelity is not None
    (top1,) = m.fidelity.metrics
    assert top1.name == "top1" and top1.baseline > 0.9
    assert top1.drop <= 2.0
    assert not m.flagged


def test_demo_structured_prune_halves_the_hidden_layers(
    digits_variants: dict[str, VariantOutcome],
) -> None:
    _, m = digits_variants["prune:sparsity=0.5,structured=true"].unwrap()
    assert m.macs_per_sample is not None and m.source_macs_per_sample is not None
    assert m.macs_per_sample < 0.6 * m.source_macs_per_sample
    assert m.size_bytes < 0.6 * m.source_size_bytes


def test_demo_cnn_structured_prune_and_int8(tmp_path: Path) -> None:
    src = DEMO / "mobilenet_tiny.onnx"
    shape = [
        d.dim_value or 4 for d in onnx.load(str(src)).graph.input[0].type.tensor_type.shape.dim
    ]
    data = tmp_path / "images.npz"
    np.savez(data, input=np.random.default_rng(0).random(shape).astype(np.float32))  # 4 images
    pruned, static = compress_model(
        src,
        ["prune:sparsity=0.5,structured=true", "int8-static"],
        tmp_path,
        calib=data,
        eval_data=data,
    )
    pruned_path, pruned_m = pruned.unwrap()
    _, static_m = static.unwrap()
    before = {lay.name: lay for lay in weight_layers(onnx.load(str(src)))}
    after_model = onnx.load(str(pruned_path))
    narrower = 0
    for lay in weight_layers(after_model):
        w_after = next(t for t in after_model.graph.initializer if t.name == lay.weight)
        w_before = next(
            t for t in onnx.load(str(src)).graph.initializer if t.name == before[lay.name].weight
        )
        narrower += w_after.dims[lay.out_axis] < w_before.dims[lay.out_axis]
    assert narrower >= len(before) // 3
    assert pruned_m.macs_per_sample is not None and pruned_m.source_macs_per_sample is not None
    assert pruned_m.macs_per_sample < 0.5 * pruned_m.source_macs_per_sample
    assert pruned_m.fidelity is not None and pruned_m.fidelity.samples == shape[0]
    assert static_m.size_bytes < 0.4 * static_m.source_size_bytes
