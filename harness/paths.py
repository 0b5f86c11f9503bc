"""Where harness finds its bundled files and keeps user data.

Bundled files (device profiles, the runner, demo models) live at the repository root in a
checkout and under ``harness/_bundled`` in an installed wheel; both are looked up here.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_ROOT = _PACKAGE_DIR.parent


def _bundled(name: str) -> Path:
    installed = _PACKAGE_DIR / "_bundled" / name
    return installed if installed.is_dir() else _REPO_ROOT / name


def bundled_profiles_dir() -> Path:
    """The directory holding the shipped ``device_profiles/*.yaml``."""
    return _bundled("device_profiles")


def runners_dir() -> Path:
    """The directory holding the on-device runner scripts."""
    return _bundled("runners")


def demo_dir() -> Path:
    """The bundled demo models and evaluation data."""
    return _PACKAGE_DIR / "demo"


def user_data_dir() -> Path:
    """Per-user data (the default SQLite store). ``HARNESS_HOME`` overrides it."""
    override = os.environ.get("HARNESS_HOME")
    base = Path(override) if override else Path(platformdirs.user_data_dir("harness"))
    return base


def user_config_dir() -> Path:
    """Per-user config (profiles added with ``harness devices add``, keys)."""
    override = os.environ.get("HARNESS_HOME")
    return Path(override) / "config" if override else Path(platformdirs.user_config_dir("harness"))


def user_profiles_dir() -> Path:
    """Where ``harness devices add`` writes profiles; searched before the bundled ones."""
    return user_config_dir() / "devices"


def user_cache_dir() -> Path:
    """Per-user cache (the local device's work directory)."""
    override = os.environ.get("HARNESS_HOME")
    return Path(override) / "cache" if override else Path(platformdirs.user_cache_dir("harness"))


def default_db_url() -> str:
    """The SQLite store used when neither ``--db`` nor ``HARNESS_DB`` is given."""
    env = os.environ.get("HARNESS_DB")
    if env:
        return env if "://" in env else f"sqlite:///{Path(env).resolve()}"
    return f"sqlite:///{user_data_dir() / 'results.sqlite'}"


def default_reports_dir() -> Path:
    """``reports/`` in the current directory, the default output of reports."""
    return Path(os.environ.get("HARNESS_REPORTS", "reports"))
