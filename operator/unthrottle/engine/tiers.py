"""The tier table (seed 002, Kubecost's rule of thumb), applied to demand instead of usage.

| tier       | CPU request               | CPU limit     |
|------------|---------------------------|---------------|
| critical   | p99.99 of demand + 100%   | 2 × request   |
| production | p99 of demand + 50%       | 2 × request   |
| dev        | p95 of demand             | 1.5 × request |
"""

from __future__ import annotations

from dataclasses import dataclass

from unthrottle.model.policy import Tier
from unthrottle.model.stats import UsagePercentiles

__all__ = ["TIER_RULES", "TierRule", "usage_percentile_for"]


@dataclass(frozen=True)
class TierRule:
    percentile: str  # the usage percentile the request is sized from
    headroom: float  # added on top of that percentile: 0.5 means +50%
    limit_ratio: float  # limit = ratio × request under limitPolicy Ratio


TIER_RULES: dict[Tier, TierRule] = {
    Tier.CRITICAL: TierRule(percentile="p9999", headroom=1.0, limit_ratio=2.0),
    Tier.PRODUCTION: TierRule(percentile="p99", headroom=0.5, limit_ratio=2.0),
    Tier.DEV: TierRule(percentile="p95", headroom=0.0, limit_ratio=1.5),
}


def usage_percentile_for(rule: TierRule, usage: UsagePercentiles) -> tuple[str, int]:
    """The usage percentile a tier asks for, in millicores, and its name.

    p99.99 is optional in the input; without it the window's maximum stands in (never a
    lower percentile: a critical tier must not be sized below what was observed).
    """
    if rule.percentile == "p9999":
        if usage.p9999 is not None:
            return "p99.99", usage.p9999
        return "max", usage.max
    if rule.percentile == "p99":
        return "p99", usage.p99
    return "p95", usage.p95
