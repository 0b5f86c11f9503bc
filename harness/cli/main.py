"""`harness` entry point: the typer app, and the one place errors become exit codes."""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from harness import __version__
from harness.errors import EXIT_ERROR, HarnessError

app = typer.Typer(
    name="harness",
    help="Benchmark ONNX and TFLite models on this machine, SSH boards and Android phones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
EXIT_INTERRUPTED = 130  # the shell's convention for a process stopped by SIGINT
err_console = Console(stderr=True, soft_wrap=True)  # one line, never wrapped


def _version(value: bool) -> None:
    if value:
        typer.echo(f"harness {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what harness does."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # paramiko logs its transport thread's failures (no SSH banner, reset) as ERROR with a full
    # traceback; harness reports the same failure as its own one-line error.
    logging.getLogger("paramiko").setLevel(logging.INFO if verbose else logging.CRITICAL)


def _register() -> None:
    # Imported here so `harness --help` stays one import deep per command module.
    from harness.cli import bench, compare, compress, demo, devices, report, results

    app.command("bench")(bench.bench_command)
    app.command("compare")(compare.compare_command)
    app.command("compress")(compress.compress_command)
    app.command("demo")(demo.demo_command)
    app.command("report")(report.report_command)
    app.add_typer(results.app, name="results")
    app.add_typer(devices.app, name="devices")


_register()


def _click_exception_types() -> tuple[type[Exception], ...]:
    """ClickException from click, and from the copy typer 0.2x vendors as ``typer._click``.

    Recent typer no longer depends on click, so ``import click`` may fail; usage errors must
    still be one line and exit code 2, never a traceback.
    """
    found: list[type[Exception]] = []
    for module in ("click.exceptions", "typer._click.exceptions"):
        try:
            found.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def main() -> None:
    """Run the CLI; a HarnessError becomes one line on stderr and its exit code."""
    try:
        # standalone_mode=False: click returns the exit code instead of calling sys.exit, and
        # lets our HarnessError reach this handler instead of printing a traceback.
        code = app(standalone_mode=False)
    except HarnessError as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.one_line())}", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        err_console.print("interrupted; results stored so far are kept")
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:  # click usage errors and the like
        if isinstance(exc, _click_exception_types()):
            usage: Any = exc
            usage.show()
            sys.exit(usage.exit_code)
        raise
    if code == EXIT_INTERRUPTED:  # typer turns Ctrl-C into a returned 130, not an exception
        err_console.print("interrupted; results stored so far are kept")
    sys.exit(code if isinstance(code, int) else 0)
