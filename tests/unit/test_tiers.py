"""The tier table's percentiles and the request band (engine/tiers.py)."""

from __future__ import annotations

import pytest

from unthrottle.engine.tiers import TIER_RULES, usage_percentile
from unthrottle.model.policy import Tier
from unthrottle.model.stats import UsagePercentiles

FULL = UsagePercentiles.model_validate(
    {"p50": 0.1, "p95": 0.2, "p99": 0.3, "p999": 0.35, "p9999": 0.4, "max": 0.45}
)
NO_TAIL = UsagePercentiles.model_validate({"p50": 0.1, "p95": 0.2, "p99": 0.3, "max": 0.45})


@pytest.mark.parametrize(
    ("name", "usage", "expected"),
    [
        ("p50", FULL, ("p50", 100)),
        ("p999", FULL, ("p99.9", 350)),
        ("p9999", FULL, ("p99.99", 400)),
        ("max", FULL, ("max", 450)),
        # A missing tail percentile: the next one up stands in, never a lower one.
        ("p999", NO_TAIL, ("max", 450)),
        ("p9999", NO_TAIL, ("max", 450)),
        (
            "p999",
            UsagePercentiles.model_validate(
                {"p50": 0.1, "p95": 0.2, "p99": 0.3, "p9999": 0.4, "max": 0.45}
            ),
            ("p99.99", 400),
        ),
    ],
)
def test_usage_percentile(name: str, usage: UsagePercentiles, expected: tuple[str, int]) -> None:
    assert usage_percentile(name, usage) == expected


ORDER = ("p50", "p95", "p99", "p999", "p9999", "max")


@pytest.mark.parametrize("tier", list(Tier))
def test_the_band_is_around_the_request_percentile(tier: Tier) -> None:
    rule = TIER_RULES[tier]
    low, own, high = (
        ORDER.index(p) for p in (rule.lower_percentile, rule.percentile, rule.upper_percentile)
    )
    assert low < own < high
