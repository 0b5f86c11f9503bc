"""Power, energy and thermal: energy per inference from the runner's power trace.

The on-device sampler lives in ``runners/power_sampler.py`` (stdlib only); this package is the
host side: :mod:`energy` (energy per inference), :mod:`calibration` (battery sign/unit, linear
PMIC calibration), :mod:`thermal` (cooldown, throttling verdict), :mod:`external` (host meters
and clock alignment), :mod:`plots` (energy vs latency).
"""

from harness.power.energy import EnergySummary, energy_from_document

__all__ = ["EnergySummary", "energy_from_document"]
