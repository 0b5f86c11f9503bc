"""Open the right :class:`Transport` for a device profile."""

from __future__ import annotations

import importlib
from typing import Any

from harness.errors import ConfigError
from harness.profiles import AdbTransportConfig, DeviceProfile, SshTransportConfig
from harness.transport.base import Transport
from harness.transport.local import LocalTransport


def open_transport(profile: DeviceProfile, *, connect: bool = True) -> Transport:
    """A transport for ``profile``; SSH connects now (``connect``) so bad hosts fail early."""
    config = profile.transport
    if isinstance(config, SshTransportConfig):
        from harness.transport.ssh import SshTransport

        ssh = SshTransport(config)
        if connect:
            ssh.connect()
        return ssh
    if isinstance(config, AdbTransportConfig):
        try:
            module: Any = importlib.import_module("harness.transport.adb")
        except ImportError as exc:
            raise ConfigError("adb transport not available yet") from exc
        transport: Transport = module.AdbTransport(config)
        return transport
    return LocalTransport()
