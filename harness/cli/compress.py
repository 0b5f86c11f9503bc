"""`harness compress`: one model in, one variant per --recipe out, each measured and registered.

The model is an ONNX file (the ONNX recipes) or a TensorFlow source, a ``.keras``/``.h5`` file
or a SavedModel directory (the ``tflite-*`` recipes, with the optional tf extra).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.cli.common import DB_OPTION, JSON_OPTION, console, open_store
from harness.errors import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, ConfigError

if TYPE_CHECKING:  # the compression stack (onnx, ORT) loads only when the command runs
    from harness.compress import Manifest, VariantOutcome

DEFAULT_VARIANTS_DIR = Path("variants")  # relative: variants land next to where the user works
err_console = Console(stderr=True, soft_wrap=True)  # one line per failed recipe, never wrapped

TABLE_HEADERS: tuple[str, ...] = (
    "Recipe",
    "Size B",
    "Gzip B",
    "× smaller",
    "Params",
    "Non-zeros",
    "MACs",
    "Top-1 agree",
    "Cosine",
    "Accuracy (drop)",
    "Flag",
)


def compress_command(
    model: Annotated[
        Path | None,
        typer.Argument(
            help="The model to compress: an .onnx file, or for the tflite-* recipes a .keras/.h5 "
            "file or a SavedModel directory.",
            show_default=False,
        ),
    ] = None,
    recipe: Annotated[
        list[str] | None,
        typer.Option(
            "--recipe",
            "-r",
            help="A recipe, e.g. fp16, int8-static, prune:sparsity=0.5,structured=true, a chain "
            "'prune>int8-static' (ONNX models), or tflite-fp16, tflite-int8:io=float (Keras/"
            "SavedModel); repeat for several variants; see --list-recipes.",
        ),
    ] = None,
    calib: Annotated[
        Path | None,
        typer.Option(
            "--calib",
            help="An .npz of inputs by name for calibration (int8-static, tflite-int8, "
            "tflite-int16x8) and, without --eval, fidelity.",
        ),
    ] = None,
    eval_file: Annotated[
        Path | None,
        typer.Option(
            "--eval",
            help="An .npz with inputs and `labels`: fidelity and task accuracy of each variant.",
        ),
    ] = None,
    metric: Annotated[
        str | None, typer.Option("--metric", help="top1, top5, mse or module:function.")
    ] = None,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Variants root: writes <out>/<model-stem>/<recipe>/model.onnx (model.tflite "
            "for tflite-*) + manifest.json.",
        ),
    ] = DEFAULT_VARIANTS_DIR,
    max_drop_points: Annotated[
        float,
        typer.Option(
            "--max-drop", help="FLAG a variant whose accuracy drops by more than this many points."
        ),
    ] = 2.0,
    min_agreement: Annotated[
        float,
        typer.Option(
            "--min-agreement",
            help="FLAG a variant whose top-1 agreement with the baseline is below this.",
        ),
    ] = 0.9,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of random inputs and of seeded recipes.")
    ] = 0,
    list_recipes: Annotated[
        bool,
        typer.Option("--list-recipes", help="List every technique and its parameters, then exit."),
    ] = False,
    db: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> int:
    """Make a variant of MODEL per --recipe, compare each with MODEL, register them in the store."""
    if list_recipes:
        print_techniques(as_json=as_json)
        return EXIT_OK
    if model is None:
        raise ConfigError(
            "which model? give an .onnx file, a .keras/.h5 file or a SavedModel directory",
            hint="harness compress model.onnx --recipe fp16",
        )
    recipes = recipe or []
    if not recipes:
        raise ConfigError(
            "give at least one --recipe", hint="see `harness compress --list-recipes`"
        )
    if not model.exists():
        raise ConfigError(f"model {model} does not exist")
    from harness.compress.tflite_source import is_tf_source

    if model.suffix.lower() != ".onnx" and not is_tf_source(model):
        raise ConfigError(
            f"{model}: harness compress takes an .onnx model, a .keras/.h5 file or a "
            "SavedModel directory",
            hint="convert the model to ONNX, or give the Keras/SavedModel it was exported from",
        )
    for path, option in ((calib, "--calib"), (eval_file, "--eval")):
        if path is not None and not path.is_file():
            raise ConfigError(f"{option} {path} does not exist")
    if not 0 <= min_agreement <= 1:
        raise ConfigError(f"--min-agreement {min_agreement:g} must be between 0 and 1")

    from harness.compress import compress_model
    from harness.variants import register_outcomes

    outcomes = compress_model(
        model, recipes, out, calib=calib, eval_data=eval_file, metric=metric,
        max_drop_points=max_drop_points, min_agreement=min_agreement, seed=seed,
    )  # fmt: skip
    # Store after making: a store problem must not cost the variants already on disk.
    with open_store(db) as store:
        register_outcomes(store, model, outcomes)
    failed = [o for o in outcomes if o.error is not None]
    if as_json:
        typer.echo(json.dumps(_json_payload(model, outcomes), indent=2))
    else:
        _print_table(model, outcomes)
        console.print(f"variants: {out / model.stem}", highlight=False)
    for outcome in failed:
        assert outcome.error is not None
        err_console.print(f"[bold red]failed:[/] {escape(outcome.error.one_line())}", highlight=False)
    if not failed:
        return EXIT_OK
    return EXIT_ERROR if len(failed) == len(outcomes) else EXIT_PARTIAL


# --- output -----------------------------------------------------------------------------------


def _int(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _metric_cell(name: str, value: float, drop: float | None) -> str:
    if name == "mse":
        text = f"mse {value:.4g}"
        return text if drop is None else f"{text} ({drop:+.1f}%)"
    text = f"{name} {100 * value:.1f}%"
    return text if drop is None else f"{text} ({drop:+.1f} pt)"


def _baseline_cells(model: Path, manifests: Sequence[Manifest]) -> list[str]:
    """Size, gzip size, params, non-zeros and MACs of the source model."""
    from harness.compress.graph import gzip_size
    from harness.compress.tflite_source import is_tf_source

    if not is_tf_source(model):
        from harness.compress.stats import model_stats

        stats = model_stats(model)
        counts = (stats.parameter_count, stats.nonzero_count, stats.macs_per_sample)
        return [f"{model.stat().st_size:,}", f"{gzip_size(model):,}", *map(_int, counts)]
    # a Keras file or SavedModel has no ONNX graph to count: its manifests recorded its bytes
    # and weights (conversion neither adds nor removes weights); MACs are not counted
    known = manifests[0] if manifests else None
    size = known.source_size_bytes if known else (model.stat().st_size if model.is_file() else None)
    return [
        _int(size),
        f"{gzip_size(model):,}" if model.is_file() else "–",
        _int(known.parameter_count if known else None),
        _int(known.nonzero_count if known else None),
        "–",
    ]


def _baseline_row(model: Path, outcomes: Sequence[VariantOutcome]) -> list[str]:
    manifests = [o.manifest for o in outcomes if o.manifest is not None]
    accuracy = "–"
    for manifest in manifests:
        fid = manifest.fidelity
        if fid is not None and fid.metrics:
            accuracy = _metric_cell(fid.metrics[0].name, fid.metrics[0].baseline, None)
            break
    size, gzipped, *counts = _baseline_cells(model, manifests)
    return ["(baseline)", size, gzipped, "1.00", *counts, "", "", accuracy, ""]


def variant_row(manifest: Manifest) -> list[str]:
    """The table cells of one variant's manifest, in :data:`TABLE_HEADERS` order."""
    fid = manifest.fidelity
    ratio = manifest.source_size_bytes / manifest.size_bytes if manifest.size_bytes else 0.0
    agree = cos = acc = "–"
    if fid is not None:
        agree = "–" if fid.top1_agreement is None else f"{fid.top1_agreement:.3f}"
        cos = f"{fid.cosine_similarity:.4f}"
        if fid.metrics:
            m = fid.metrics[0]
            # drop > 0 is worse: shown as a fall in accuracy points, or a rise of the mse
            change = (m.drop if m.name == "mse" else -m.drop) + 0.0  # + 0.0: no "-0.0"
            acc = _metric_cell(m.name, m.variant, change)
    flag = "FLAGGED" if manifest.flagged else ""
    return [
        manifest.recipe,
        f"{manifest.size_bytes:,}",
        f"{manifest.gzip_size_bytes:,}",
        f"{ratio:.2f}",
        _int(manifest.parameter_count),
        _int(manifest.nonzero_count),
        _int(manifest.macs_per_sample),
        agree,
        cos,
        acc,
        flag,
    ]


def _print_table(model: Path, outcomes: Sequence[VariantOutcome]) -> None:
    table = Table(title=f"variants of {model.name}")
    for header in TABLE_HEADERS:
        numeric = header not in ("Recipe", "Accuracy (drop)", "Flag")
        table.add_column(header, justify="right" if numeric else "left", overflow="fold")
    table.add_row(*_baseline_row(model, outcomes))
    for outcome in outcomes:
        if outcome.manifest is not None:
            row = variant_row(outcome.manifest)
            table.add_row(*row, style="red" if outcome.manifest.flagged else None)
        else:
            table.add_row(outcome.recipe, *([""] * (len(TABLE_HEADERS) - 2)), "FAILED", style="red")
    console.print(table)
    for outcome in outcomes:
        fid = outcome.manifest.fidelity if outcome.manifest else None
        if fid is not None and fid.flagged:
            reasons = "; ".join(fid.flag_reasons)
            console.print(f"[yellow]FLAGGED[/] {outcome.recipe}: {reasons}", highlight=False)


def _json_payload(model: Path, outcomes: Sequence[VariantOutcome]) -> dict[str, Any]:
    variants, errors = [], []
    for o in outcomes:
        if o.manifest is not None and o.model_path is not None:
            doc = json.loads(o.manifest.to_json())
            doc["path"] = str(o.model_path.resolve())
            variants.append(doc)
        elif o.error is not None:
            errors.append({"recipe": o.recipe, "error": o.error.one_line()})
    return {"model": str(model.resolve()), "variants": variants, "errors": errors}


def print_techniques(*, as_json: bool) -> None:
    """Every technique of :data:`harness.compress.TECHNIQUES` with its parameters."""
    from harness.compress import TECHNIQUES

    rows: list[dict[str, Any]] = []
    for technique, params in TECHNIQUES.items():
        if not params:  # a technique without parameters still gets its line
            rows.append({"technique": technique, "parameter": "", "type": "", "default": None,
                         "allowed": ""})  # fmt: skip
        for name, spec in params.items():
            rows.append({
                "technique": technique, "parameter": name, "type": spec.kind.__name__,
                "default": spec.default,
                "allowed": ", ".join(spec.choices) if spec.choices else spec.rule,
            })  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(
        title="compression recipes (chain with '>', e.g. 'prune:sparsity=0.5>int8-static')"
    )
    for header in ("Technique", "Parameter", "Type", "Default", "Allowed"):
        table.add_column(header, overflow="fold")
    for r in rows:
        default = "–" if r["default"] is None else str(r["default"]).lower()
        table.add_row(r["technique"], r["parameter"], r["type"], default, r["allowed"])
    console.print(table)
