"""Transports: how the host reaches a device (local, SSH, ADB)."""

from harness.transport.base import CommandResult, ProgressCallback, Transport
from harness.transport.local import LocalTransport

__all__ = ["CommandResult", "LocalTransport", "ProgressCallback", "Transport"]
