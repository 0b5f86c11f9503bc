"""Was a job throttled? Pure rules over the thermal trace in a runner document (no I/O).

Kept apart from :mod:`harness.power.thermal` (which talks to devices) so validity judgements in
:mod:`harness.analysis` can use them without importing a transport.
"""

from __future__ import annotations

from harness.results.schema import RunnerDocument

PI_NOW_BITS = 0xF  # under-voltage, frequency capped, throttled, soft temp limit: right now
PI_STICKY_SHIFT = 16
FREQ_FRACTION = 0.9  # below 90% of scaling_max_freq counts as throttled ...
FREQ_SAMPLES = 0.1  # ... in more than 10% of the samples
LOCKED_GOVERNORS = ("performance", "userspace")


def throttled_verdict(doc: RunnerDocument, *, android_status_after: int | None = None) -> list[str]:
    """Reasons to mark a job throttled (reference §6.3 post-run rules); empty when none apply.

    * a cpufreq policy ran below 90% of ``scaling_max_freq`` in more than 10% of the samples
      while its governor was performance/userspace (a locked clock that did not hold);
    * a Pi "now" throttle bit was seen, or a sticky bit went 0 -> 1 during the job;
    * the Android thermal status after the job was >= 1.
    """
    reasons: list[str] = []
    thermal = doc.power.thermal if doc.power else None
    if thermal is not None:
        for policy, samples in thermal.cur_freq_khz.items():
            top = thermal.max_freq_khz.get(policy)
            governor = thermal.governors.get(policy, "")
            values = [v for v in samples if v is not None]
            if not top or not values or governor not in LOCKED_GOVERNORS:
                continue
            low = sum(1 for v in values if v < FREQ_FRACTION * top) / len(values)
            if low > FREQ_SAMPLES:
                reasons.append(
                    f"{policy} ran below {FREQ_FRACTION:.0%} of its max frequency in {low:.0%} "
                    f"of samples (governor {governor})"
                )
        words = [w for w in thermal.pi_throttled or [] if w is not None]
        if words:
            now = 0
            for word in words:
                now |= word & PI_NOW_BITS
            if now:
                reasons.append(f"Pi throttling seen during the job (bits 0x{now:x})")
            new_sticky = (words[-1] & ~words[0]) >> PI_STICKY_SHIFT
            if new_sticky:
                reasons.append(f"Pi sticky throttle bits set during the job (0x{new_sticky:x})")
    if android_status_after:
        reasons.append(f"Android thermal status {android_status_after} after the job")
    return reasons
