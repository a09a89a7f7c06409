"""The recommended CFS burst allowance (cgroup ``cpu.cfs_burst_us`` / ``cpu.max.burst``).

Burst lets a cgroup bank quota it did not use and spend it in a later period, which is the
right tool for micro-bursts: short spikes above the quota at a low average. The allowance
recommended is the mean excess demand of a throttled period, β of the demand model,
converted to CPU time per period and capped at one period's quota (the kernel refuses a
burst larger than the quota):

    burst_us = min(β, L) × period_us / 1000      (β and L in millicores)

rounded up to a whole millisecond. Example: β = 583m, L = 1000m, period 100 ms →
min(583, 1000) × 100000 / 1000 = 58300 µs → 59000 µs. No throttling, no burst.
"""

from __future__ import annotations

import math

from unthrottle.engine.demand import MIN_THROTTLE_RATIO
from unthrottle.model.quantity import MILLICORES_PER_CORE, round_up
from unthrottle.model.recommendation import DemandModel

__all__ = ["BURST_GRANULARITY_US", "burst_cores", "recommend_burst_us"]

BURST_GRANULARITY_US = 1000


def recommend_burst_us(
    model: DemandModel, throttle_ratio: float, limit: int | None, period_us: int
) -> int:
    """The burst allowance in µs for a container with quota ``limit`` millicores."""
    if limit is None or throttle_ratio < MIN_THROTTLE_RATIO:
        return 0
    excess = min(model.scale, float(limit))
    burst = math.ceil(excess * period_us / MILLICORES_PER_CORE)
    return min(round_up(burst, BURST_GRANULARITY_US), limit * period_us // MILLICORES_PER_CORE)


def burst_cores(burst_us: int, period_us: int) -> float:
    """A burst allowance in µs as millicores of one period (the demand model's unit)."""
    return burst_us * MILLICORES_PER_CORE / period_us
