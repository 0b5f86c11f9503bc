"""What every recipe step receives besides its input and output paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.compress.recipes import RecipeStep


@dataclass(frozen=True)
class StepContext:
    """Shared inputs of one recipe's steps.

    ``recipe`` is the whole recipe text (for error messages); ``calib`` the calibration npz,
    if the user gave one; ``work_dir`` a scratch directory inside the variant's folder.
    """

    recipe: str
    calib: Path | None
    work_dir: Path
    seed: int = 0


class StepFn(Protocol):
    """A technique: read the model at ``src``, write the result to ``dst``, return notes."""

    def __call__(self, src: Path, dst: Path, step: RecipeStep, ctx: StepContext) -> list[str]: ...
