"""`harness devices`: list, show, add, check and set up device profiles (local, SSH, Android)."""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from harness import paths
from harness.cli.common import JSON_OPTION, console
from harness.errors import EXIT_ERROR, EXIT_PARTIAL, ConfigError
from harness.profiles import (
    AdbTransportConfig,
    DeviceProfile,
    PrepareOptions,
    SshTransportConfig,
    find_profile,
    list_profiles,
    validation_summary,
)
from harness.session import resolve_work_dir
from harness.transport.local import LocalTransport
from harness.transport.ssh_devices import DeviceCheck

app = typer.Typer(help="Device profiles: list, show, add, check, setup.", no_args_is_help=True)


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
    adb: str | None = typer.Option(None, "--adb", help="Android over ADB TCP/Wi-Fi: host[:port]."),
    adb_serial: str | None = typer.Option(
        None, "--adb-serial", help="Android by serial (USB, or as the adb server names it)."
    ),
    adb_mode: str | None = typer.Option(
        None,
        "--adb-mode",
        help="direct (adb-shell, no adb binary; default with --adb) or "
        "server (a running adb server; default with only --adb-serial).",
    ),
    adb_key: str | None = typer.Option(
        None, "--adb-key", help="ADB private key for direct mode (default ~/.android/adbkey)."
    ),
    adb_server: str | None = typer.Option(
        None, "--adb-server", help="adb server host:port for server mode (default 127.0.0.1:5037)."
    ),
    profile: str | None = typer.Option(
        None,
        "--profile",
        "-p",
        help="Bundled profile to start from (runtime defaults; "
        "linux-arm64 for --ssh, android-generic for --adb).",
    ),
    key_file: str | None = typer.Option(None, "--key", help="SSH private key file."),
    known_hosts: str | None = typer.Option(None, "--known-hosts", help="known_hosts file to use."),
    password_env: str | None = typer.Option(
        None, "--password-env", help="Name of an environment variable holding the SSH password."
    ),
    python: str | None = typer.Option(None, "--python", help="Python interpreter on the device."),
    work_dir: str | None = typer.Option(None, "--work-dir", help="Work directory on the device."),
    check: bool = typer.Option(True, "--check/--no-check", help="Check the device after adding."),
    force: bool = typer.Option(
        False, "--force", help="Allow a name that shadows a bundled profile (e.g. local)."
    ),
) -> None:
    """Add a device: write a profile under your config dir, then check it."""
    from harness.profiles import save_user_profile
    from harness.transport.ssh_devices import make_ssh_profile

    if not force and (paths.bundled_profiles_dir() / f"{name}.yaml").is_file():
        # A user profile named like a bundled one replaces it everywhere, e.g. `local` would
        # silently send every default `harness bench` over SSH.
        raise ConfigError(
            f"{name!r} is the name of a bundled profile; adding it would shadow that profile",
            hint=f"choose another name (e.g. my-{name}), or pass --force",
        )

    if (ssh is None) == (adb is None and adb_serial is None):
        raise ConfigError(
            "say how to reach the device: --ssh user@host[:port], "
            "or --adb host[:port] / --adb-serial SERIAL for Android"
        )
    if ssh is not None:
        extra = {
            k: v
            for k, v in {
                "key_file": key_file,
                "known_hosts": known_hosts,
                "password_env": password_env,
            }.items()
            if v is not None
        }
        made = make_ssh_profile(name, ssh, find_profile(profile or "linux-arm64"), **extra)
    else:
        made = make_adb_profile(
            name,
            find_profile(profile or "android-generic"),
            address=adb,
            serial=adb_serial,
            mode=adb_mode,
            key_file=adb_key,
            server=adb_server,
        )
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


@app.command("setup")
def setup_command(
    name: str = typer.Argument(..., help="Device profile name (an SSH device)."),
    package: list[str] = typer.Option(
        [],
        "--package",
        "-P",
        help="pip requirement to install (repeatable; default: "
        "numpy, onnxruntime, ai-edge-litert).",
    ),
    index_url: str | None = typer.Option(None, "--index-url", help="pip index (a mirror)."),
    find_links: str | None = typer.Option(
        None, "--find-links", help="Directory of wheels ON THE DEVICE (for offline devices)."
    ),
    no_index: bool = typer.Option(False, "--no-index", help="Do not use any package index."),
    system_site_packages: bool = typer.Option(
        False,
        "--system-site-packages",
        help="Let the venv use the system's packages (e.g. numpy from apt).",
    ),
    verify_module: list[str] = typer.Option(
        [], "--verify-module", help="Also check that this module imports (repeatable)."
    ),
    timeout_s: float = typer.Option(1800.0, "--timeout", help="Seconds allowed for pip."),
) -> None:
    """Install the runtimes into a venv in the device's work dir and point the profile at it."""
    from harness.device_setup import DEFAULT_PACKAGES, pip_hint, setup_device
    from harness.profiles import save_user_profile
    from harness.transport.factory import open_transport

    profile = find_profile(name)
    if not isinstance(profile.transport, SshTransportConfig):
        raise ConfigError(
            f"{name} is a {profile.transport.kind} device; `devices setup` is for SSH devices",
            hint="the local device runs with harness's own Python: pip install the runtimes there",
        )
    transport = open_transport(profile)
    try:
        result = setup_device(
            transport,
            profile,
            packages=tuple(package) or DEFAULT_PACKAGES,
            index_url=index_url,
            find_links=find_links,
            no_index=no_index,
            system_site_packages=system_site_packages,
            verify_modules=tuple(verify_module),
            timeout_s=timeout_s,
        )
    finally:
        transport.close()
    verb = "created" if result.created_venv else "reused"
    console.print(
        f"{verb} {result.venv_dir} in {result.duration_s:.1f} s", highlight=False, markup=False
    )
    for module, version in result.installed:
        console.print(f"  ok {module} {version}", highlight=False, markup=False)
    for failure in result.failed:
        console.print(
            f"  [yellow]unavailable[/] {failure.package}: {failure.reason}", highlight=False
        )
    if result.failed and result.pip_tail:
        hint = pip_hint("\n".join(result.pip_tail))
        console.print(f"  hint: {hint}", highlight=False, markup=False)
    if result.installed:
        updated = profile.model_copy(update={"python": result.python_path})
        path = save_user_profile(updated)
        console.print(f"python: {result.python_path} (wrote {path})", highlight=False, markup=False)
    # The check's own problems (a hot CPU, little disk) are shown but are not setup failures.
    _print_check(name)
    if result.failed:
        raise typer.Exit(EXIT_PARTIAL if result.installed else EXIT_ERROR)


@app.command("trust")
def trust_command(name: str = typer.Argument(..., help="Device profile name.")) -> None:
    """Record the SSH device's host key in known_hosts (after you compared its fingerprint)."""
    from harness.transport.ssh_connect import trust_host

    profile = find_profile(name)
    if not isinstance(profile.transport, SshTransportConfig):
        raise ConfigError(f"{name} is not an SSH device; only SSH host keys are trusted this way")
    fingerprint = trust_host(profile.transport)
    console.print(f"trusted {profile.transport.host}: {fingerprint}", highlight=False)


def make_adb_profile(
    name: str,
    base_profile: DeviceProfile,
    *,
    address: str | None = None,
    serial: str | None = None,
    mode: str | None = None,
    key_file: str | None = None,
    server: str | None = None,
) -> DeviceProfile:
    """A profile for one Android phone: ``base_profile``'s settings with this phone's ADB link.

    ``address`` is ``host[:port]`` (port 5555 by default); ``mode`` defaults to direct when an
    address is given, else to the adb server (USB phones are usually held by it).
    """
    mode = mode or ("direct" if address else "server")
    if mode not in ("direct", "server"):
        raise ConfigError(f"--adb-mode must be direct or server, not {mode!r}")
    if address is not None:
        host, sep, port = address.rpartition(":")
        if not sep:
            address = f"{address}:5555"
        elif not host or not port.isdigit():
            raise ConfigError(f"--adb {address!r} must look like HOST or HOST:PORT")
    adb: dict[str, Any] = {}
    if isinstance(base_profile.transport, AdbTransportConfig):
        # keep the base's ADB settings (auth timeout), never its device
        adb = base_profile.transport.model_dump(
            mode="json", exclude_defaults=True, exclude={"address", "serial"}
        )
    adb.update(kind="adb", mode=mode, address=address, serial=serial, key_file=key_file)
    if server is not None:
        host, _, port = server.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--adb-server {server!r} must look like HOST:PORT")
        adb.update(server_host=host, server_port=int(port))
    base = base_profile.model_dump(mode="json", exclude_defaults=True)
    data: dict[str, Any] = {
        **base,
        "name": name,
        "kind": "android",
        "transport": {k: v for k, v in adb.items() if v is not None},
        "extends": base_profile.name,
        "description": base.get("description") or f"Android device {address or serial}",
    }
    try:
        return DeviceProfile.model_validate(data)
    except ValueError as exc:
        raise ConfigError(
            f"cannot make a profile {name!r} for {address or serial!r}: {validation_summary(exc)}"
        ) from exc


def _print_adb_check(profile: DeviceProfile, *, as_json: bool) -> int:
    from harness.transport.adb_state import check_adb_device

    check = check_adb_device(profile)
    if as_json:
        typer.echo(
            json.dumps(
                {"name": profile.name, "ok": check.ok, **dataclasses.asdict(check)}, indent=2
            )
        )
    else:
        console.print(
            f"device {profile.name} ({profile.transport.kind}, "
            f"{'reachable' if check.reachable else 'unreachable'})",
            highlight=False,
        )
        for line in check.lines():
            console.print(f"  {line}", highlight=False, markup=False)
    return 0 if check.ok else EXIT_ERROR


def _preparation_lines(profile: DeviceProfile) -> list[str]:
    """What the profile's ``prepare:`` block would do on the device now (changes nothing)."""
    from harness.prepare import show_preparation
    from harness.transport.factory import open_transport

    if profile.prepare == PrepareOptions():
        return []
    transport = open_transport(profile)
    try:
        return show_preparation(profile, transport)
    finally:
        transport.close()


def _print_check(name: str, *, as_json: bool = False) -> int:
    profile = find_profile(name)
    if isinstance(profile.transport, AdbTransportConfig):
        code = _print_adb_check(profile, as_json=as_json)
        if code == 0 and not as_json:
            for line in _preparation_lines(profile):
                console.print(f"  prepare {line}", highlight=False, markup=False)
        return code
    check = run_check(profile)
    if as_json:
        typer.echo(json.dumps(dataclasses.asdict(check), indent=2))
    else:
        table = Table(title=f"device {check.name} ({check.transport})", show_header=False)
        table.add_column("what")
        table.add_column("value")
        rows = [
            ("reachable", "yes" if check.reachable else "[red]no[/]"),
            ("os", check.os),
            ("model", check.model),
            ("cpus", check.cpu_count),
            ("python", check.python_version),
            ("runtimes", ", ".join(f"{m} {v}" for m, v in check.runtimes) or "none"),
            ("work dir", check.work_dir),
            (
                "free disk",
                f"{check.free_disk_bytes / 1e9:.1f} GB" if check.free_disk_bytes else None,
            ),
            ("cpu temperature", f"{check.cpu_temp_c:.1f} °C" if check.cpu_temp_c else None),
            ("throttling", ", ".join(check.throttle_flags) or check.throttled),
        ]
        for label, value in rows:
            if value is not None:
                table.add_row(label, str(value))
        console.print(table)
        for problem in check.problems:
            console.print(f"[yellow]problem:[/] {escape(problem)}", highlight=False)
        if check.reachable:
            for line in _preparation_lines(profile):
                console.print(f"  prepare {line}", highlight=False, markup=False)
    return 0 if check.ok else EXIT_ERROR


def run_check(profile: DeviceProfile) -> DeviceCheck:
    """Check any device: SSH via its own connection, the local device in-process."""
    from harness.transport.ssh_devices import check_device, check_ssh_device

    if isinstance(profile.transport, SshTransportConfig):
        return check_ssh_device(profile)
    if profile.transport.kind == "local":
        local = profile.model_copy(
            update={
                "python": sys.executable,
                "work_dir": profile.work_dir or str(resolve_work_dir(profile)),
            }
        )
        return check_device(LocalTransport(), local)
    raise ConfigError(f"checking {profile.transport.kind} devices is not supported yet")
