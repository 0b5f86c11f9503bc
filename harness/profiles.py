"""Device profiles: ``device_profiles/*.yaml``, validated with pydantic and looked up by name.

A profile says how to reach a device (transport), where to work on it, which Python and runtime
options to use, and the default benchmark settings. User profiles (``harness devices add``) live in
:func:`harness.paths.user_profiles_dir` and shadow bundled ones of the same name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness import paths
from harness.errors import ProfileError
from harness.power.settings import PowerSettings

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Model(BaseModel):
    # Unknown keys are errors: a typo in a profile must not be silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalTransportConfig(_Model):
    kind: Literal["local"] = "local"


class SshTransportConfig(_Model):
    kind: Literal["ssh"]
    host: str
    user: str | None = None
    port: int | None = None
    key_file: str | None = None
    password_env: str | None = None  # name of an env var holding the password; never the password
    known_hosts: str | None = None  # default ~/.ssh/known_hosts
    use_ssh_config: bool = True
    connect_timeout_s: float = 10.0
    keepalive_s: float = 15.0


class AdbTransportConfig(_Model):
    kind: Literal["adb"]
    mode: Literal["direct", "server"] = "direct"
    address: str | None = None  # host:port for TCP (direct) or Wi-Fi
    serial: str | None = None  # USB serial / adb server serial
    key_file: str | None = None
    server_host: str = "127.0.0.1"
    server_port: int = 5037
    auth_timeout_s: float = 30.0


TransportConfig = Annotated[
    LocalTransportConfig | SshTransportConfig | AdbTransportConfig, Field(discriminator="kind")
]


class RuntimeOptions(_Model):
    """Inference runtime settings for jobs on this device."""

    threads: int | None = Field(default=None, ge=1)  # None: the runtime's default
    provider: str = "default"  # "default", "cpu", "xnnpack", "none", or an ORT provider name
    onnx_runtime: str = "onnxruntime"
    tflite_runtime: str = "auto"  # "auto": ai_edge_litert, then tflite_runtime, then tensorflow


class BenchDefaults(_Model):
    """How long and how often to measure, following benchmark_model's stopping rule."""

    warmup_runs: int = Field(default=10, ge=0)
    min_runs: int = Field(default=50, ge=1)
    min_duration_s: float = Field(default=1.0, ge=0)
    max_duration_s: float = Field(default=60.0, gt=0)
    timeout_s: float = Field(default=600.0, gt=0)  # for the whole runner process on the device


class PrepareOptions(_Model):
    """Device preparation before jobs (restored afterwards); see :mod:`harness.prepare`."""

    screen_off: bool = False  # Android: turn the screen off, back on afterwards if it was on
    battery_unplug: bool = False  # Android: `dumpsys battery unplug`, then `reset`
    # Pin the runner: "big"/"prime" cores derived from per-core max frequencies, or a hex mask.
    affinity: Literal["none", "big", "prime"] | str = "none"
    # Linux boards as root / rooted phones: every cpufreq policy's scaling_governor for the run
    # (e.g. "performance"), each policy's own governor restored afterwards; "none" leaves it.
    governor: str = "none"

    @field_validator("governor")
    @classmethod
    def _governor_is_a_name(cls, value: str) -> str:
        if not re.match(r"^[a-z][a-z0-9_]*$", value):
            raise ValueError("must be none or a cpufreq governor name such as performance")
        return value

    @field_validator("affinity")
    @classmethod
    def _affinity_is_known(cls, value: str) -> str:
        if value in ("none", "big", "prime"):
            return value
        digits = value.lower().removeprefix("0x")
        if not digits or any(c not in "0123456789abcdef" for c in digits) or int(digits, 16) == 0:
            raise ValueError("must be none, big, prime or a non-zero hex CPU mask such as 0xf0")
        return value


class NativeToolConfig(_Model):
    """A vendor benchmark binary the user built for the device (never downloaded by harness)."""

    tool: Literal["benchmark_model", "onnxruntime_perf_test"]
    binary: str  # path on the host; pushed content-addressed to the device's work directory
    extra_args: list[str] = Field(default_factory=list)  # appended to the built command line
    env: dict[str, str] = Field(default_factory=dict)  # e.g. LD_LIBRARY_PATH for the tool's libs


class DeviceProfile(_Model):
    """One device kind, or one concrete device added by the user."""

    name: str
    description: str = ""
    kind: Literal["local", "linux", "android"] = "local"
    transport: TransportConfig = Field(default_factory=LocalTransportConfig)
    work_dir: str | None = None  # None: a per-user cache dir (local), ~/.cache/harness (ssh)
    python: str = "python3"  # interpreter on the device; the local device uses the host's own
    # environment for the runner on the device, e.g. LD_LIBRARY_PATH or OMP_NUM_THREADS
    env: dict[str, str] = Field(default_factory=dict)
    runtime: RuntimeOptions = Field(default_factory=RuntimeOptions)
    bench: BenchDefaults = Field(default_factory=BenchDefaults)
    # "native": jobs run `native.tool` instead of the Python runner (no accuracy evaluation)
    runner: Literal["python", "native"] = "python"
    native: NativeToolConfig | None = None
    prepare: PrepareOptions = Field(default_factory=PrepareOptions)
    # power source, sampling, idle baseline, calibration and cooldown (harness/power/settings.py)
    power: PowerSettings = Field(default_factory=PowerSettings)
    extends: str | None = None  # informational: the bundled profile this one was made from
    extra: dict[str, Any] = Field(default_factory=dict)  # room for device-kind specific settings

    @field_validator("env")
    @classmethod
    def _env_names_are_valid(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [name for name in value if not _ENV_NAME.match(name)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not a valid environment variable name")
        return value

    @field_validator("name")
    @classmethod
    def _name_is_simple(cls, value: str) -> str:
        if not value or any(c in value for c in "/\\ \t\n"):
            raise ValueError("must be a non-empty name without spaces or slashes")
        return value

    @model_validator(mode="after")
    def _native_runner_has_a_tool(self) -> DeviceProfile:
        if self.runner == "native" and self.native is None:
            raise ValueError("runner: native needs a `native:` section (tool and binary)")
        return self


def load_profile_file(path: Path) -> DeviceProfile:
    """Load and validate one profile file; errors name the file and the field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProfileError(f"cannot read device profile {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise ProfileError(f"device profile {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ProfileError(f"device profile {path} must be a mapping of settings")
    data.setdefault("name", path.stem)
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
        raise ProfileError(
            f"device profile {path}: field '{where}': {first['msg']}",
            hint="fix the field, or compare with the bundled profiles in device_profiles/",
        ) from exc


def validation_summary(exc: ValueError) -> str:
    """A pydantic error as one short line, ``field 'x': message``; other errors as their text."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-"))
        message = str(first["msg"]).removeprefix("Value error, ")
        return f"field '{where}': {message}" if where else message
    return str(exc)


def profile_search_path() -> list[Path]:
    """Directories searched for profiles, first match wins."""
    return [paths.user_profiles_dir(), paths.bundled_profiles_dir()]


def find_profile(name: str) -> DeviceProfile:
    """Look a profile up by name (or by a path to a YAML file)."""
    candidate = Path(name)
    if candidate.suffix in {".yaml", ".yml"} and candidate.is_file():
        return load_profile_file(candidate)
    for directory in profile_search_path():
        for suffix in (".yaml", ".yml"):
            path = directory / f"{name}{suffix}"
            if path.is_file():
                return load_profile_file(path)
    known = ", ".join(sorted(p.name for p in list_profiles())) or "none"
    raise ProfileError(f"no device profile named {name!r} (known: {known})",
                       hint="add one with `harness devices add` or pass a path to a YAML file")


def list_profiles() -> list[DeviceProfile]:
    """Every valid profile on the search path (user ones shadow bundled ones)."""
    seen: dict[str, DeviceProfile] = {}
    for directory in profile_search_path():
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.y*ml")):
            if path.stem in seen:
                continue
            try:
                seen[path.stem] = load_profile_file(path)
            except ProfileError:
                continue  # `harness devices list` reports broken files separately
    return list(seen.values())


def save_user_profile(profile: DeviceProfile) -> Path:
    """Write a profile to the user's profile directory and return its path."""
    directory = paths.user_profiles_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{profile.name}.yaml"
    data = profile.model_dump(mode="json", exclude_defaults=True)
    data["name"] = profile.name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
