"""Device preparation: operations applied before jobs and restored afterwards.

Each :class:`PrepOperation` can say whether it is available on a device, show its current state,
apply itself and restore what it changed (pyperf's "system tune" idea). A
:class:`DevicePreparation` runs the operations a profile asks for, and also collects the device
state that only the host can read (e.g. Android ``getprop``), recorded with every job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.errors import HarnessError
from harness.profiles import DeviceProfile
from harness.transport.base import Transport

log = logging.getLogger(__name__)


class PrepOperation(Protocol):
    """One reversible change to a device (screen off, governor, affinity, ...)."""

    name: str

    def available(self, transport: Transport) -> bool:
        """Whether the device supports this operation (and we may apply it)."""
        ...

    def show(self, transport: Transport) -> str:
        """The current state, for reports and `devices check`."""
        ...

    def apply(self, transport: Transport) -> None:
        """Change the device; remember what to restore."""
        ...

    def restore(self, transport: Transport) -> None:
        """Undo :meth:`apply`. Called even when jobs failed."""
        ...


@dataclass
class DevicePreparation:
    """The operations for one device session, and what the host observed about the device."""

    profile: DeviceProfile
    transport: Transport
    operations: list[PrepOperation] = field(default_factory=list)
    applied: list[PrepOperation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def for_profile(cls, profile: DeviceProfile, transport: Transport) -> DevicePreparation:
        """The preparation the profile asks for (none by default)."""
        return cls(profile=profile, transport=transport, operations=[])

    def apply(self) -> None:
        """Apply every available operation; one that fails is noted, not fatal."""
        for op in self.operations:
            try:
                if not op.available(self.transport):
                    self.notes.append(f"{op.name}: not available on {self.profile.name}")
                    continue
                op.apply(self.transport)
                self.applied.append(op)
            except HarnessError as exc:
                self.notes.append(f"{op.name}: could not apply ({exc.one_line()})")

    def restore(self) -> None:
        """Restore in reverse order; failures are logged so every operation gets its turn."""
        for op in reversed(self.applied):
            try:
                op.restore(self.transport)
            except HarnessError as exc:
                log.warning("%s: could not restore %s: %s", self.profile.name, op.name,
                            exc.one_line())
        self.applied.clear()

    def command_prefix(self) -> list[str]:
        """An argv prefix for the runner (e.g. ``taskset <mask>``); empty by default."""
        return []

    def host_observed_state(self) -> dict[str, Any]:
        """Device state read by the host (not by the runner), recorded with each job."""
        return {}
