"""Library side of ``harness devices setup``: a venv with the inference runtimes on a device.

Only :meth:`Transport.run` is used, so it works on any device with a POSIX shell and Python 3.
The venv goes to ``<work_dir>/venv`` (nothing is written outside the work directory); pip runs
with the device's own network, or offline from a wheel directory on the device
(``--no-index --find-links DIR``), or from a mirror (``--index-url``). Packages that install
are kept even when others fail (e.g. ``ai-edge-litert`` has no wheel for 32-bit ARM): the result
lists both, and the caller decides what to tell the user.
"""

from __future__ import annotations

import posixpath
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from harness.deploy import check_remote_path, ensure_dir, expand_home
from harness.errors import ConfigError, RemoteCommandError
from harness.profiles import DeviceProfile
from harness.transport.base import CommandResult, Transport

DEFAULT_PACKAGES = ("numpy", "onnxruntime", "ai-edge-litert")
_VENV_TIMEOUT_S = 300.0
_PROBE_TIMEOUT_S = 120.0
_TAIL_LINES = 12

# Distribution name -> import name where they differ beyond "-" vs "_".
_MODULE_NAMES = {"ai-edge-litert": "ai_edge_litert", "tflite-runtime": "tflite_runtime"}

# Prints "pip=yes|no" and "system=true|false" (include-system-site-packages of the venv).
_VENV_PROBE = r"""
import importlib.util, os, sys
print("pip=%s" % ("yes" if importlib.util.find_spec("pip") else "no"))
flag = "false"
try:
    with open(os.path.join(sys.prefix, "pyvenv.cfg")) as cfg:
        for line in cfg:
            key, _, value = line.partition("=")
            if key.strip() == "include-system-site-packages":
                flag = value.strip().lower()
except OSError:
    pass
print("system=%s" % flag)
"""

# argv[1:]: module names. One line each: "ok MODULE VERSION" or "fail MODULE ERROR".
_IMPORT_PROBE = r"""
import importlib, sys
for mod in sys.argv[1:]:
    try:
        m = importlib.import_module(mod)
    except BaseException as exc:
        print("fail %s %s: %s" % (mod, type(exc).__name__, " ".join(str(exc).split())))
        continue
    v = getattr(m, "__version__", None)
    if v is None:
        try:
            from importlib.metadata import packages_distributions, version
            v = version(packages_distributions().get(mod, [mod])[0])
        except Exception:
            v = "unknown"
    print("ok %s %s" % (mod, v))
"""

_NO_VENV_MARKERS = ("ensurepip is not available", "No module named venv", "python3-venv")
_NETWORK_MARKERS = (
    "Failed to establish a new connection",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "Could not fetch URL",
    "Max retries exceeded",
)


@dataclass(frozen=True)
class PackageFailure:
    """A package pip could not install, or a module that did not import afterwards."""

    package: str
    reason: str  # pip's relevant line, or the import error


@dataclass(frozen=True)
class SetupResult:
    """What :func:`setup_device` did on one device."""

    venv_dir: str
    python_path: str  # <venv>/bin/python: put this in the profile's ``python:``
    created_venv: bool  # False: an existing venv was reused as it was
    installed: tuple[tuple[str, str], ...]  # (module, version) that import in the venv
    failed: tuple[PackageFailure, ...]
    duration_s: float
    pip_tail: tuple[str, ...] = ()  # pip's last lines when something failed

    @property
    def ok(self) -> bool:
        """Everything asked for installed and imports."""
        return not self.failed


def module_name(package: str) -> str:
    """The import name of a pip requirement: ``ai-edge-litert>=1.0`` -> ``ai_edge_litert``."""
    name = re.split(r"[\s<>=!~;\[@]", package.strip(), maxsplit=1)[0]
    return _MODULE_NAMES.get(name.lower(), name.replace("-", "_").replace(".", "_"))


def pip_error_line(output: str) -> str:
    """The line of pip's output that says what went wrong (its last ``ERROR:`` line)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    # pip prints "Could not find a version ..." then "No matching distribution ..."; the first
    # names the versions it saw, which says more (e.g. "(from versions: none)").
    if errors:
        return errors[0]
    return lines[-1] if lines else "pip printed nothing"


def pip_hint(output: str) -> str:
    """What to do about a failed ``pip install``, guessed from pip's output."""
    if any(marker in output for marker in _NETWORK_MARKERS):
        return (
            "the device cannot reach the package index: copy wheels to the device and use "
            "--no-index --find-links DIR, or --index-url for a mirror it can reach"
        )
    if "from versions: none" in output or "No matching distribution" in output:
        if re.search(r"ai[-_]edge[-_]litert", output):
            return (
                "ai-edge-litert has no wheel for this platform (none for 32-bit ARM): "
                "use --package tflite-runtime, or a 64-bit OS"
            )
        return (
            "no wheel of it for this device's platform and Python, or it is not in the index "
            "or --find-links directory: check the name, or copy a matching wheel to the device"
        )
    return "read pip's output above; fix the package name or the index options and run again"


def _lines(values: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in values.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key.strip()] = value.strip()
    return found


def _tail(result: CommandResult) -> tuple[str, ...]:
    text = (result.stdout + "\n" + result.stderr).strip()
    return tuple(text.splitlines()[-_TAIL_LINES:])


def _ensure_venv(
    transport: Transport, base_python: str, venv: str, *, system_site_packages: bool
) -> bool:
    """Create ``venv`` unless a usable one with the same site-packages setting is there."""
    vpy = posixpath.join(venv, "bin", "python")
    probe = transport.run([vpy, "-c", _VENV_PROBE], timeout_s=_PROBE_TIMEOUT_S)
    state = _lines(probe.stdout) if probe.ok else {}
    wanted = "true" if system_site_packages else "false"
    if state.get("pip") == "yes" and state.get("system") == wanted:
        return False
    # Without --clear: an existing venv keeps its packages, only its configuration changes.
    argv = [base_python, "-m", "venv"]
    if system_site_packages:
        argv.append("--system-site-packages")
    made = transport.run([*argv, venv], timeout_s=_VENV_TIMEOUT_S)
    if not made.ok:
        output = made.stdout + made.stderr
        line = pip_error_line(output)
        if any(marker in output for marker in _NO_VENV_MARKERS):
            raise RemoteCommandError(
                f"{base_python} on {transport.description} cannot create a venv: {line}",
                hint="install the Debian package python3-venv (sudo apt install python3-venv), "
                "then run `harness devices setup` again",
            )
        raise RemoteCommandError(
            f"`{base_python} -m venv {venv}` failed on {transport.description} "
            f"(exit {made.exit_code}): {line}",
            hint="check that the profile's python is Python 3 and the work dir is writable",
        )
    return True


def _pip_install(
    transport: Transport,
    vpy: str,
    packages: Sequence[str],
    options: Sequence[str],
    timeout_s: float,
) -> CommandResult:
    argv = [vpy, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    return transport.run([*argv, *options, *packages], timeout_s=timeout_s)


def _verify(transport: Transport, vpy: str, modules: Sequence[str]) -> dict[str, tuple[bool, str]]:
    if not modules:
        return {}
    result = transport.run([vpy, "-c", _IMPORT_PROBE, *modules], timeout_s=_PROBE_TIMEOUT_S)
    found: dict[str, tuple[bool, str]] = {}
    for line in result.stdout.splitlines():
        verdict, _, rest = line.partition(" ")
        mod, _, detail = rest.partition(" ")
        if verdict in ("ok", "fail") and mod:
            found[mod] = (verdict == "ok", detail)
    for mod in modules:  # a crash of the interpreter itself (e.g. illegal instruction)
        found.setdefault(mod, (False, f"the import check exited {result.exit_code}"))
    return found


def setup_device(
    transport: Transport,
    profile: DeviceProfile,
    *,
    packages: Sequence[str] = DEFAULT_PACKAGES,
    index_url: str | None = None,
    find_links: str | None = None,
    no_index: bool = False,
    system_site_packages: bool = False,
    verify_modules: Sequence[str] = (),
    base_python: str | None = None,
    timeout_s: float = 1800.0,
) -> SetupResult:
    """Install ``packages`` into ``<work_dir>/venv`` on the device and check they import.

    ``verify_modules`` are imported too (beyond each package's own module). Raises
    :class:`RemoteCommandError` when the venv cannot be made or *nothing* installed; a partial
    success returns with ``failed`` filled in.
    """
    started = time.monotonic()
    if not packages:
        raise ConfigError("devices setup needs at least one package to install")
    work_dir = expand_home(transport, profile.work_dir or "~/.cache/harness")
    venv = posixpath.join(work_dir.rstrip("/") or "/", "venv")
    vpy = posixpath.join(venv, "bin", "python")
    ensure_dir(transport, work_dir)
    base = base_python or profile.python
    if base == vpy:  # the profile already points at this venv: rebuild from the system python
        base = "python3"
    created = _ensure_venv(transport, base, venv, system_site_packages=system_site_packages)

    options: list[str] = []
    if index_url:
        options += ["--index-url", index_url]
    if find_links:
        options += ["--find-links", expand_home(transport, check_remote_path(find_links))]
    if no_index:
        options.append("--no-index")
    failures: list[PackageFailure] = []
    tail: tuple[str, ...] = ()
    together = _pip_install(transport, vpy, packages, options, timeout_s)
    if together.ok:
        good = list(packages)
    else:
        # One resolve for all failed: try each alone, so what can install does.
        tail = _tail(together)
        good = []
        for package in packages:
            alone = (
                together
                if len(packages) == 1
                else _pip_install(transport, vpy, [package], options, timeout_s)
            )
            if alone.ok:
                good.append(package)
            else:
                output = alone.stdout + "\n" + alone.stderr
                failures.append(PackageFailure(package, pip_error_line(output)))
        if not good:
            output = together.stdout + "\n" + together.stderr
            raise RemoteCommandError(
                f"pip could not install {', '.join(packages)} on {transport.description}: "
                f"{pip_error_line(output)}",
                hint=pip_hint(output),
            )

    modules = list(dict.fromkeys([*(module_name(p) for p in good), *verify_modules]))
    installed: list[tuple[str, str]] = []
    for mod, (ok, detail) in _verify(transport, vpy, modules).items():
        if ok:
            installed.append((mod, detail))
        else:
            failures.append(PackageFailure(mod, f"installed but does not import: {detail}"))
    return SetupResult(
        venv_dir=venv,
        python_path=vpy,
        created_venv=created,
        installed=tuple(installed),
        failed=tuple(failures),
        duration_s=time.monotonic() - started,
        pip_tail=tail,
    )
