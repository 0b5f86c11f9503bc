"""Fix the CPU frequency governor for a run, and put each policy's own governor back afterwards.

A :class:`~harness.prepare.PrepOperation` (profile: ``prepare: {governor: performance}``): every
cpufreq policy's ``scaling_governor`` is set to the wanted governor before the jobs and restored
to what it was after them. Only where the device lets us write sysfs (Linux boards as root, rooted
phones whose shell is root); elsewhere the operation is unavailable and the run says so in a note.

Paths are relative to a sysfs root: ``/`` on a real device, the profile's ``env``
``HARNESS_SYSFS_ROOT`` when set (the same override the runner honours), so a fixture tree can
stand in for a board's cpufreq in tests.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass

from harness.errors import DeviceError
from harness.transport.base import Transport

GOVERNOR_TIMEOUT_S = 30.0
_GOVERNOR_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

# One line per policy: dir|governor|available governors|w (writable) or r. Newer kernels have
# policyN directories; older ones only cpuN/cpufreq (then cores sharing a policy repeat).
_READ_SCRIPT = r"""
root=$1
set -- "$root"/sys/devices/system/cpu/cpufreq/policy[0-9]*
[ -e "$1" ] || set -- "$root"/sys/devices/system/cpu/cpu[0-9]*/cpufreq
for d in "$@"; do
  [ -f "$d/scaling_governor" ] || continue
  if [ -w "$d/scaling_governor" ]; then w=w; else w=r; fi
  echo "$d|$(cat "$d/scaling_governor" 2>/dev/null)|$(cat "$d/scaling_available_governors" 2>/dev/null)|$w"
done
"""

# $1 is a governor, then pairs of files; each write is checked so a refusal stops the script.
_WRITE_SCRIPT = r"""
gov=$1; shift
for f in "$@"; do
  echo "$gov" > "$f" || { echo "cannot write $f" >&2; exit 1; }
done
"""


@dataclass(frozen=True)
class CpufreqPolicy:
    """One cpufreq policy as sysfs shows it."""

    path: str  # the policy directory on the device
    governor: str
    available: tuple[str, ...]  # empty when the kernel does not list them
    writable: bool

    @property
    def name(self) -> str:
        base = posixpath.basename(self.path)
        return posixpath.basename(posixpath.dirname(self.path)) if base == "cpufreq" else base


def parse_policies(text: str) -> list[CpufreqPolicy]:
    """Parse the read script's ``dir|governor|available|w`` lines."""
    policies = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 4 or not parts[1]:
            continue
        policies.append(
            CpufreqPolicy(parts[0], parts[1].strip(), tuple(parts[2].split()), parts[3] == "w")
        )
    return policies


class GovernorFix:
    """Set every cpufreq policy's governor (e.g. ``performance``); restore each one afterwards."""

    name = "governor"

    def __init__(self, governor: str, *, sysfs_root: str = "") -> None:
        if not _GOVERNOR_NAME.match(governor):
            raise ValueError(f"not a governor name: {governor!r}")
        self.governor = governor
        self.sysfs_root = sysfs_root.rstrip("/")
        self.previous: dict[str, str] = {}  # scaling_governor file -> governor to restore

    def policies(self, transport: Transport) -> list[CpufreqPolicy]:
        """The device's cpufreq policies now (empty: no cpufreq, e.g. a VM or a container)."""
        result = transport.run(
            ["sh", "-c", _READ_SCRIPT, "sh", self.sysfs_root], timeout_s=GOVERNOR_TIMEOUT_S
        )
        return parse_policies(result.stdout) if result.ok else []

    def _refusal(self, policies: Sequence[CpufreqPolicy]) -> str | None:
        """Why the governor cannot be set on these policies, or None when it can."""
        if not policies:
            return "no cpufreq policies in sysfs"
        locked = [p.name for p in policies if not p.writable]
        if locked:
            return f"scaling_governor of {', '.join(locked)} is not writable (needs root)"
        missing = [p.name for p in policies if p.available and self.governor not in p.available]
        if missing:
            return f"{', '.join(missing)} do not offer the {self.governor} governor"
        return None

    def available(self, transport: Transport) -> bool:
        """Every policy's ``scaling_governor`` is writable and offers the governor."""
        return self._refusal(self.policies(transport)) is None

    def why_unavailable(self, transport: Transport) -> str | None:
        """The reason :meth:`available` is False (for the run's notes), else None."""
        return self._refusal(self.policies(transport))

    def show(self, transport: Transport) -> str:
        """Each policy's governor, grouped: ``performance on policy0, policy4 (was schedutil)``."""
        policies = self.policies(transport)
        if not policies:
            return "no cpufreq policies"
        groups: dict[str, list[str]] = {}
        for policy in policies:
            groups.setdefault(policy.governor, []).append(policy.name)
        text = "; ".join(f"{gov} on {', '.join(names)}" for gov, names in groups.items())
        was = sorted(set(self.previous.values()))
        if was:
            text += f" (was {', '.join(was)})"
        refusal = self._refusal(policies)
        return f"{text}; cannot set: {refusal}" if refusal and not was else text

    def _write(self, transport: Transport, governor: str, files: Sequence[str], what: str) -> None:
        result = transport.run(
            ["sh", "-c", _WRITE_SCRIPT, "sh", governor, *files], timeout_s=GOVERNOR_TIMEOUT_S
        )
        if not result.ok:
            tail = (result.stderr.strip() or result.stdout.strip())[-160:]
            raise DeviceError(f"{what} failed (exit code {result.exit_code}): {tail}")

    def apply(self, transport: Transport) -> None:
        """Remember each policy's governor, then set them all; a partial change is undone."""
        policies = self.policies(transport)
        refusal = self._refusal(policies)
        if refusal:
            raise DeviceError(f"cannot set the {self.governor} governor: {refusal}")
        self.previous = {posixpath.join(p.path, "scaling_governor"): p.governor for p in policies}
        try:
            self._write(transport, self.governor, list(self.previous),
                        f"setting the {self.governor} governor")  # fmt: skip
            wrong = [p.name for p in self.policies(transport) if p.governor != self.governor]
            if wrong:  # the kernel can refuse silently (e.g. a vendor daemon resets it)
                raise DeviceError(f"{', '.join(wrong)} did not keep the {self.governor} governor")
        except DeviceError:
            self.restore(transport)
            raise

    def restore(self, transport: Transport) -> None:
        """Write every policy's own governor back (grouped by governor: one call each)."""
        by_governor: dict[str, list[str]] = {}
        for path, governor in self.previous.items():
            by_governor.setdefault(governor, []).append(path)
        try:
            for governor, files in by_governor.items():
                self._write(transport, governor, files, f"restoring the {governor} governor")
        finally:
            self.previous = {}
