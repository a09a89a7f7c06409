"""The tier table (seed 002, Kubecost's rule of thumb), applied to demand instead of usage.

| tier       | CPU request             | CPU limit     | a current request is kept within |
|------------|-------------------------|---------------|----------------------------------|
| critical   | p99.99 of demand + 100% | 2 × request   | p99.9 … max of demand + 100%     |
| production | p99 of demand + 50%     | 2 × request   | p95 … p99.9 of demand + 50%      |
| dev        | p95 of demand           | 1.5 × request | p50 … p99 of demand              |

The last column is the request's band (VPA's ``lowerBound`` … ``upperBound``): the
percentiles on either side of the request's own, with the same headroom. A current request
inside it is in line with the evidence and is kept; one outside it moves to the request.
One window's percentile of a bursty service moves by more than ``patch.minChange`` from
one window to the next (one worker of 8 threads, dev tier: p95 of demand 570m, 510m,
610m in three windows); the neighbouring percentiles are where a request is plainly more,
or less, than the service uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from unthrottle.model.policy import Tier
from unthrottle.model.stats import UsagePercentiles

__all__ = ["TIER_RULES", "TierRule", "usage_percentile"]


@dataclass(frozen=True)
class TierRule:
    percentile: str  # the usage percentile the request is sized from
    headroom: float  # added on top of that percentile: 0.5 means +50%
    limit_ratio: float  # limit = ratio × request under limitPolicy Ratio
    lower_percentile: str  # the band a current request is kept within
    upper_percentile: str


TIER_RULES: dict[Tier, TierRule] = {
    Tier.CRITICAL: TierRule("p9999", 1.0, 2.0, lower_percentile="p999", upper_percentile="max"),
    Tier.PRODUCTION: TierRule("p99", 0.5, 2.0, lower_percentile="p95", upper_percentile="p999"),
    Tier.DEV: TierRule("p95", 0.0, 1.5, lower_percentile="p50", upper_percentile="p99"),
}

_NAMES = {"p50": "p50", "p95": "p95", "p99": "p99", "p999": "p99.9", "p9999": "p99.99"}


def usage_percentile(name: str, usage: UsagePercentiles) -> tuple[str, int]:
    """A usage percentile in millicores, and its name as people read it.

    p99.9 and p99.99 are optional in the input. A missing one is stood in for by the next
    one up (p99.99, then the window's maximum), never a lower one: a tier must not be
    sized below what was observed.
    """
    chain = ("p999", "p9999", "max")
    for candidate in chain[chain.index(name) :] if name in chain else (name,):
        value: int | None = getattr(usage, candidate)
        if value is not None:
            return _NAMES.get(candidate, candidate), value
    raise AssertionError("the window's maximum is always known")
