"""`harness devices`: list, show, add and check device profiles."""

from __future__ import annotations

import dataclasses
import json
import sys

import typer
import yaml
from rich.table import Table

from harness.cli.common import JSON_OPTION, console
from harness.errors import EXIT_ERROR, ConfigError
from harness.profiles import DeviceProfile, SshTransportConfig, find_profile, list_profiles
from harness.session import resolve_work_dir
from harness.transport.local import LocalTransport
from harness.transport.ssh_devices import DeviceCheck

app = typer.Typer(help="Device profiles: list, show, add, check.", no_args_is_help=True)


@app.command("list")
def list_command(as_json: bool = JSON_OPTION) -> None:
    """List known device profiles (yours first, then the bundled ones)."""
    profiles = list_profiles()
    if as_json:
        typer.echo(json.dumps([p.model_dump(mode="json") for p in profiles], indent=2))
        return
    table = Table(title="device profiles")
    for column in ("name", "kind", "transport", "description"):
        table.add_column(column)
    for p in profiles:
        table.add_row(p.name, p.kind, p.transport.kind, p.description)
    console.print(table)


@app.command("show")
def show_command(name: str = typer.Argument(..., help="Profile name.")) -> None:
    """Print one profile, validated, with every default filled in."""
    profile = find_profile(name)
    typer.echo(yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False))


@app.command("add")
def add_command(
    name: str = typer.Argument(..., help="A name for the device, e.g. pi5."),
    ssh: str | None = typer.Option(None, "--ssh", help="SSH target user@host[:port]."),
    profile: str = typer.Option("linux-arm64", "--profile", "-p",
                                help="Bundled profile to start from (runtime defaults)."),
    key_file: str | None = typer.Option(None, "--key", help="SSH private key file."),
    known_hosts: str | None = typer.Option(None, "--known-hosts", help="known_hosts file to use."),
    password_env: str | None = typer.Option(
        None, "--password-env", help="Name of an environment variable holding the SSH password."),
    python: str | None = typer.Option(None, "--python", help="Python interpreter on the device."),
    work_dir: str | None = typer.Option(None, "--work-dir", help="Work directory on the device."),
    check: bool = typer.Option(True, "--check/--no-check", help="Check the device after adding."),
) -> None:
    """Add a device: write a profile under your config dir, then check it."""
    from harness.profiles import save_user_profile
    from harness.transport.ssh_devices import make_ssh_profile

    if ssh is None:
        raise ConfigError("say how to reach the device: --ssh user@host[:port]")
    extra = {k: v for k, v in {"key_file": key_file, "known_hosts": known_hosts,
                                "password_env": password_env}.items() if v is not None}
    made = make_ssh_profile(name, ssh, find_profile(profile), **extra)
    updates = {k: v for k, v in {"python": python, "work_dir": work_dir}.items() if v is not None}
    if updates:
        made = made.model_copy(update=updates)
    path = save_user_profile(made)
    console.print(f"wrote {path}", highlight=False)
    if check:
        code = _print_check(made.name)
        if code:
            raise typer.Exit(code)


@app.command("check")
def check_command(
    name: str = typer.Argument(..., help="Device profile name."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Is the device reachable, and does it have python, a runtime, disk space, a cool CPU?"""
    code = _print_check(name, as_json=as_json)
    if code:
        raise typer.Exit(code)


@app.command("trust")
def trust_command(name: str = typer.Argument(..., help="Device profile name.")) -> None:
    """Record the SSH device's host key in known_hosts (after you compared its fingerprint)."""
    from harness.transport.ssh_connect import trust_host

    profile = find_profile(name)
    if not isinstance(profile.transport, SshTransportConfig):
        raise ConfigError(f"{name} is not an SSH device; only SSH host keys are trusted this way")
    fingerprint = trust_host(profile.transport)
    console.print(f"trusted {profile.transport.host}: {fingerprint}", highlight=False)


def _print_check(name: str, *, as_json: bool = False) -> int:
    check = run_check(find_profile(name))
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(check), indent=2))
    else:
        table = Table(title=f"device {check.name} ({check.transport})", show_header=False)
        table.add_column("what")
        table.add_column("value")
        rows = [
            ("reachable", "yes" if check.reachable else "[red]no[/]"),
            ("os", check.os), ("model", check.model), ("cpus", check.cpu_count),
            ("python", check.python_version),
            ("runtimes", ", ".join(f"{m} {v}" for m, v in check.runtimes) or "none"),
            ("work dir", check.work_dir),
            ("free disk", f"{check.free_disk_bytes / 1e9:.1f} GB" if check.free_disk_bytes else None),
            ("cpu temperature", f"{check.cpu_temp_c:.1f} °C" if check.cpu_temp_c else None),
            ("throttling", ", ".join(check.throttle_flags) or check.throttled),
        ]
        for label, value in rows:
            if value is not None:
                table.add_row(label, str(value))
        console.print(table)
        for problem in check.problems:
            console.print(f"[yellow]problem:[/] {problem}", highlight=False)
    return 0 if check.ok else EXIT_ERROR


def run_check(profile: DeviceProfile) -> DeviceCheck:
    """Check any device: SSH via its own connection, the local device in-process."""
    from harness.transport.ssh_devices import check_device, check_ssh_device

    if isinstance(profile.transport, SshTransportConfig):
        return check_ssh_device(profile)
    if profile.transport.kind == "local":
        local = profile.model_copy(update={"python": sys.executable,
                                           "work_dir": profile.work_dir or str(resolve_work_dir(profile))})
        return check_device(LocalTransport(), local)
    raise ConfigError(f"checking {profile.transport.kind} devices is not supported yet")
