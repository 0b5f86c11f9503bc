"""Recipe parsing: typed parameters, chains, and impossible values refused before any work."""

from __future__ import annotations

import pytest

from harness.compress.recipes import parse_recipe
from harness.errors import CompressionError


def test_parse_typed_params_and_defaults() -> None:
    r = parse_recipe("prune:sparsity=0.5,structured=true")
    (step,) = r.steps
    assert step.technique == "prune"
    assert step.get("sparsity") == 0.5 and isinstance(step.get("sparsity"), float)
    assert step.get("structured") is True
    assert step.get("criterion") == "l1"  # default filled in
    assert r.text == "prune:sparsity=0.5,structured=true"
    assert r.slug == "prune_sparsity-0.5_structured-true"


def test_chain_keeps_order_and_round_trips() -> None:
    r = parse_recipe("prune:sparsity=0.3,structured=true>int8-static:calibration=entropy")
    assert [s.technique for s in r.steps] == ["prune", "int8-static"]
    assert r.steps[1].get("calibration") == "entropy"
    assert parse_recipe(r.text) == r
    assert "__" in r.slug and "/" not in r.slug


def test_lowrank_energy_default_and_exclusive() -> None:
    assert parse_recipe("lowrank").steps[0].get("energy") == 0.95
    assert parse_recipe("lowrank:rank_ratio=0.25").steps[0].get("energy") is None
    with pytest.raises(CompressionError, match="not both"):
        parse_recipe("lowrank:rank_ratio=0.25,energy=0.9")


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("prune:sparsity=1.5", "sparsity"),
        ("prune:sparsity=0", "sparsity"),
        ("cluster:k=0", "k"),
        ("lowrank:rank_ratio=1.5", "rank_ratio"),
        ("lowrank:energy=-0.1", "energy"),
        ("int4:block_size=33", "block_size"),
        ("prune:sparsity=half", "not a float"),
        ("prune:structured=maybe", "not a bool"),
        ("int8-static:calibration=magic", "minmax"),
        ("prune:sparsty=0.5", "no parameter 'sparsty'"),
        ("quantum", "unknown compression recipe"),
        ("prune>", "empty step"),
        ("prune:sparsity", "name=value"),
        ("prune:sparsity=0.2,sparsity=0.3", "twice"),
    ],
)
def test_bad_recipes_are_refused_with_the_culprit_named(text: str, needle: str) -> None:
    with pytest.raises(CompressionError) as info:
        parse_recipe(text)
    assert needle in info.value.one_line()
