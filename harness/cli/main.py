"""`harness` entry point: the typer app, and the one place errors become exit codes."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from harness import __version__
from harness.errors import EXIT_ERROR, HarnessError

app = typer.Typer(
    name="harness",
    help="Benchmark ONNX and TFLite models on this machine, SSH boards and Android phones.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
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


def main() -> None:
    """Run the CLI; a HarnessError becomes one line on stderr and its exit code."""
    try:
        # standalone_mode=False: click returns the exit code instead of calling sys.exit, and
        # lets our HarnessError reach this handler instead of printing a traceback.
        code = app(standalone_mode=False)
    except HarnessError as exc:
        err_console.print(f"[bold red]error:[/] {exc.one_line()}", highlight=False)
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        err_console.print("interrupted; results stored so far are kept")
        sys.exit(130)
    except Exception as exc:  # click usage errors and the like
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
