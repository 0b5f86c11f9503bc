"""Open the right :class:`Transport` for a device profile."""

from __future__ import annotations

from harness.profiles import AdbTransportConfig, DeviceProfile, SshTransportConfig
from harness.transport.base import Transport
from harness.transport.local import LocalTransport


def open_transport(profile: DeviceProfile, *, connect: bool = True) -> Transport:
    """A transport for ``profile``; SSH and ADB connect now (``connect``) so bad hosts fail early."""
    config = profile.transport
    if isinstance(config, SshTransportConfig):
        from harness.transport.ssh import SshTransport  # paramiko only for SSH users

        ssh = SshTransport(config, device_name=profile.name)
        if connect:
            ssh.connect()
        return ssh
    if isinstance(config, AdbTransportConfig):
        from harness.transport.adb import AdbTransport  # adb-shell/adbutils only for ADB users

        adb = AdbTransport(config, name=profile.name)
        if connect:
            adb.connect()
        return adb
    return LocalTransport()
