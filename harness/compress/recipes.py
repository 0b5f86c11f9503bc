"""Recipe text -> typed recipe, validated before any work is done.

Syntax (one ``--recipe`` value)::

    recipe   := step ( ">" step )*          # a chain, applied left to right
    step     := technique [ ":" param ( "," param )* ]
    param    := name "=" value

e.g. ``int8-static``, ``prune:sparsity=0.5,structured=true``,
``prune:sparsity=0.5,structured=true>int8-static:calibration=entropy``. Quote it in a shell
(``>`` is a redirect there). Every parameter is checked against the technique's
:data:`TECHNIQUES` table here, so an impossible value (``sparsity=1.5``, ``k=0``,
``rank_ratio=2``) is a :class:`~harness.errors.CompressionError` before a model is touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from harness.errors import CompressionError

ParamValue = bool | int | float | str
CHAIN_SEP = ">"


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a technique: its type, default, and the check its value must pass."""

    kind: type
    default: ParamValue | None
    check: Callable[[ParamValue], bool] = lambda _v: True
    rule: str = ""  # the allowed range in words, for the error message
    choices: tuple[str, ...] = ()


def _unit_open(v: ParamValue) -> bool:
    return isinstance(v, float) and 0.0 < v < 1.0


def _unit_half_open(v: ParamValue) -> bool:
    return isinstance(v, float) and 0.0 < v <= 1.0


def _between(lo: float, hi: float) -> Callable[[ParamValue], bool]:
    return lambda v: isinstance(v, int | float) and lo <= v <= hi


_CHOICE = str
TECHNIQUES: Mapping[str, Mapping[str, ParamSpec]] = MappingProxyType(
    {
        "fp16": {"keep_io_types": ParamSpec(bool, True)},
        "int8-dynamic": {
            "per_channel": ParamSpec(bool, False),
            "reduce_range": ParamSpec(bool, False),
            "weight_type": ParamSpec(_CHOICE, "int8", choices=("int8", "uint8")),
        },
        "int8-static": {
            "calibration": ParamSpec(
                _CHOICE, "minmax", choices=("minmax", "entropy", "percentile")
            ),
            # auto: per-channel weights when the model has Conv layers (depthwise filters need
            # their own scales), per-tensor for pure Gemm/MatMul models, where the per-channel
            # scale tables cost more bytes than the accuracy they buy
            "per_channel": ParamSpec(_CHOICE, "auto", choices=("auto", "true", "false")),
            "symmetric_activations": ParamSpec(bool, False),
            "reduce_range": ParamSpec(bool, False),
            "samples": ParamSpec(int, 256, _between(1, 100_000), "1..100000"),
        },
        "int4": {
            "block_size": ParamSpec(
                int, 32, lambda v: v in (16, 32, 64, 128, 256), "one of 16, 32, 64, 128, 256"
            ),
            "symmetric": ParamSpec(bool, True),
        },
        "prune": {
            "sparsity": ParamSpec(float, 0.5, _unit_open, "0 < sparsity < 1"),
            "structured": ParamSpec(bool, False),
            "criterion": ParamSpec(_CHOICE, "l1", choices=("l1", "l2")),
            "sensitivity": ParamSpec(bool, False),
            "tolerance": ParamSpec(float, 0.05, _unit_open, "0 < tolerance < 1"),
        },
        "lowrank": {
            "rank_ratio": ParamSpec(float, None, _unit_half_open, "0 < rank_ratio <= 1"),
            "energy": ParamSpec(float, None, _unit_half_open, "0 < energy <= 1"),
            "include_conv": ParamSpec(bool, True),
        },
        "distill": {
            "width": ParamSpec(int, 32, _between(1, 4096), "1..4096"),
            "layers": ParamSpec(int, 2, _between(1, 8), "1..8"),
            "epochs": ParamSpec(int, 60, _between(1, 10_000), "1..10000"),
            "alpha": ParamSpec(float, 0.5, _between(0.0, 1.0), "0 <= alpha <= 1"),
            "temperature": ParamSpec(float, 4.0, _between(0.05, 100.0), "0.05..100"),
            "lr": ParamSpec(float, 0.003, _between(1e-6, 1.0), "1e-6..1"),
            "augment": ParamSpec(int, 4, _between(0, 100), "0..100"),
            "noise": ParamSpec(float, 0.1, _between(0.0, 10.0), "0..10"),
        },
        "cluster": {
            "k": ParamSpec(int, 16, _between(2, 65536), "2 <= k <= 65536"),
            "seed": ParamSpec(int, 0, _between(0, 2**32 - 1), "0..2^32-1"),
        },
        # TFLite conversions (optional ``tf`` extra) of a SavedModel / Keras source; see
        # harness.compress.tflite. They are single-step recipes: they do not chain.
        "tflite-fp32": {},
        "tflite-fp16": {},
        "tflite-dynamic": {},
        "tflite-int8": {
            "io": ParamSpec(_CHOICE, "int8", choices=("int8", "float")),
            "samples": ParamSpec(int, 256, _between(1, 100_000), "1..100000"),
        },
        "tflite-int16x8": {
            "samples": ParamSpec(int, 256, _between(1, 100_000), "1..100000"),
        },
    }
)


@dataclass(frozen=True)
class RecipeStep:
    """One technique with every parameter resolved (given or default)."""

    technique: str
    params: Mapping[str, ParamValue]
    given: tuple[str, ...]  # the parameter names the user wrote, in order (for the slug)

    def get(self, name: str) -> ParamValue | None:
        """The resolved value of ``name`` (``None`` only for optional parameters left unset)."""
        return self.params.get(name)

    def text(self) -> str:
        """The step as the user would write it (given parameters only)."""
        if not self.given:
            return self.technique
        args = ",".join(f"{k}={_fmt(self.params[k])}" for k in self.given)
        return f"{self.technique}:{args}"

    def slug(self) -> str:
        """A filesystem-safe name: ``prune_sparsity-0.5_structured-true``."""
        parts = [self.technique] + [f"{k}-{_fmt(self.params[k])}" for k in self.given]
        return re.sub(r"[^A-Za-z0-9._-]", "-", "_".join(parts))


@dataclass(frozen=True)
class Recipe:
    """A chain of one or more steps, applied in order."""

    steps: tuple[RecipeStep, ...]

    @property
    def text(self) -> str:
        """The canonical recipe text (round-trips through :func:`parse_recipe`)."""
        return CHAIN_SEP.join(s.text() for s in self.steps)

    @property
    def slug(self) -> str:
        """The variant's directory name; chain steps are joined by ``__``."""
        return "__".join(s.slug() for s in self.steps)

    def __str__(self) -> str:
        return self.text


def _fmt(v: ParamValue) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _convert(technique: str, name: str, raw: str, spec: ParamSpec) -> ParamValue:
    where = f"recipe {technique!r}: parameter {name}={raw!r}"
    value: ParamValue
    try:
        if spec.kind is bool:
            low = raw.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            value = low in ("true", "1", "yes")
        elif spec.kind is int:
            value = int(raw)
        elif spec.kind is float:
            value = float(raw)
        else:
            value = raw.strip().lower()
    except ValueError:
        raise CompressionError(
            f"{where} is not a {spec.kind.__name__}",
            hint=f"write e.g. {name}={_fmt(spec.default) if spec.default is not None else '...'}",
        ) from None
    if spec.choices and value not in spec.choices:
        raise CompressionError(f"{where} is not one of {', '.join(spec.choices)}")
    if not spec.check(value):
        raise CompressionError(f"{where} is impossible: it must be {spec.rule}")
    return value


def parse_step(text: str) -> RecipeStep:
    """Parse one ``technique[:k=v,...]`` step; raises CompressionError on any bad part."""
    technique, _, arg_text = text.strip().partition(":")
    technique = technique.strip().lower()
    specs = TECHNIQUES.get(technique)
    if specs is None:
        raise CompressionError(
            f"unknown compression recipe {technique!r} in {text!r}",
            hint=f"known recipes: {', '.join(TECHNIQUES)}",
        )
    params: dict[str, ParamValue] = {
        k: s.default for k, s in specs.items() if s.default is not None
    }
    given: list[str] = []
    for item in filter(None, (a.strip() for a in arg_text.split(","))):
        name, eq, raw = item.partition("=")
        name = name.strip().lower()
        if not eq or not raw.strip():
            raise CompressionError(f"recipe {technique!r}: {item!r} is not name=value")
        if name not in specs:
            raise CompressionError(
                f"recipe {technique!r} has no parameter {name!r}",
                hint=f"its parameters: {', '.join(specs) or 'none'}",
            )
        if name in given:
            raise CompressionError(f"recipe {technique!r}: parameter {name!r} given twice")
        params[name] = _convert(technique, name, raw, specs[name])
        given.append(name)
    if technique == "lowrank":
        if "rank_ratio" in params and "energy" in params:
            raise CompressionError(
                "recipe 'lowrank': give rank_ratio or energy, not both",
                hint="e.g. lowrank:energy=0.9 or lowrank:rank_ratio=0.25",
            )
        if "rank_ratio" not in params and "energy" not in params:
            params["energy"] = 0.95  # a sensible default: keep 95 % of the spectral energy
    return RecipeStep(technique, MappingProxyType(params), tuple(given))


def parse_recipe(text: str) -> Recipe:
    """Parse a recipe or chain (``a:k=v>b``) into a :class:`Recipe`; validates every parameter."""
    parts = [p for p in text.split(CHAIN_SEP)]
    if not text.strip() or any(not p.strip() for p in parts):
        raise CompressionError(
            f"empty step in recipe {text!r}", hint="chain steps with '>', e.g. prune>int8-static"
        )
    return Recipe(tuple(parse_step(p) for p in parts))
