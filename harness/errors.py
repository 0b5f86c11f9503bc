"""The one error tree of harness.

Every failure a user can cause or meet (bad model, unreachable device, malformed profile, ...)
is a :class:`HarnessError`. The CLI prints ``str(error)`` as one line, then the hint if there is
one, and exits with :attr:`HarnessError.exit_code`. Nothing else escapes the CLI as a traceback.
"""

from __future__ import annotations

# Exit codes, documented in README.md. Keep them stable: scripts and CI depend on them.
EXIT_OK = 0
EXIT_ERROR = 1  # a HarnessError: bad input, unreachable device, runner failure, ...
EXIT_USAGE = 2  # command-line usage error (typer/click's own code)
EXIT_REGRESSION = 3  # a comparison found a statistically significant regression
EXIT_PARTIAL = 4  # the run finished but some jobs failed; their errors are in the report


class HarnessError(Exception):
    """Base of every error harness raises on purpose.

    ``hint`` is an optional, actionable next step shown after the message.
    """

    exit_code: int = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and hint as a single line for terminals and logs."""
        text = " ".join(self.message.split())
        if self.hint:
            text = f"{text} (hint: {' '.join(self.hint.split())})"
        return text


class ConfigError(HarnessError):
    """A malformed profile, suite file or setting."""


class ProfileError(ConfigError):
    """A device profile is missing or does not validate."""


class ModelError(HarnessError):
    """A model file is missing, corrupt, of an unknown format or uses unsupported operators."""


class RuntimeMissingError(HarnessError):
    """The inference runtime needed for a model is not installed where the job runs."""


class DeviceError(HarnessError):
    """Something went wrong talking to a device."""


class DeviceTimeoutError(DeviceError):
    """A device call did not finish within its timeout."""


class DeviceConnectionError(DeviceError):
    """The device cannot be reached, or the connection dropped."""


class HostKeyError(DeviceConnectionError):
    """The device's SSH host key is unknown or does not match known_hosts."""


class AuthenticationError(DeviceConnectionError):
    """The device refused our credentials (SSH key/password, ADB RSA key)."""


class TransferError(DeviceError):
    """A push or pull failed, or the file arrived with the wrong hash."""


class DeviceFullError(TransferError):
    """The device has no space left for a file."""


class RemoteCommandError(DeviceError):
    """A command on the device exited with a non-zero code where success was required."""


class RunnerError(HarnessError):
    """The on-device runner crashed, timed out or printed a document that does not validate."""


class SchemaError(HarnessError):
    """A result document does not match any known schema version."""


class StoreError(HarnessError):
    """The results store cannot be opened, read or written."""


class ReportError(HarnessError):
    """A report cannot be rendered or written."""


class CompressionError(HarnessError):
    """A compression recipe failed or got an impossible parameter."""


class PowerError(HarnessError):
    """A power source failed or its readings are unusable."""


class IncomparableRunsError(HarnessError):
    """Two results differ in a checked setting, so comparing them would mislead."""
