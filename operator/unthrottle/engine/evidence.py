"""Evidence that contradicts itself: refused before any fitting (``contradictory-evidence``).

The demand model trusts the counters; counters that cannot all be true at once (mixed
sources, a broken exporter, a kernel that throttles below the quota) would steer it
anywhere, so the container gets no recommendation and a sentence naming the contradiction
with its numbers. The rules (docs/recommendations.md, section 9.1), τ-free:

* throttled (r ≥ 10⁻⁴) without a CPU limit: CFS throttles only under a quota;
* a CPU or memory request above its limit: the API server rejects that;
* usage above the limit: mean usage > L × 1.05, or usage p99 > L × 1.25 (rates over a
  scrape interval overshoot a little at series edges; a quarter of the quota is not that);
* mean usage < half of f·r·L: every throttled period used its whole quota, so the
  wall-clock mean usage is at least f·r·L (f the active-period ratio). Without f the
  engine takes f = 1, the most a container can be active, so the bound is loose: then a
  quarter of r·L.
  Kernels before 5.4 expire per-CPU slices and strand quota on idle CPUs, which throttles
  a container far below its quota: that is this case, and the model cannot size it.
"""

from __future__ import annotations

from unthrottle.engine.demand import MIN_THROTTLE_RATIO
from unthrottle.model.quantity import describe_millicores, format_bytes
from unthrottle.model.recommendation import NoRecommendation, NoRecommendationReason
from unthrottle.model.stats import ContainerStats

__all__ = [
    "MEAN_ABOVE_LIMIT_MARGIN",
    "P99_ABOVE_LIMIT_MARGIN",
    "THROTTLED_USAGE_TOLERANCE",
    "THROTTLED_USAGE_TOLERANCE_UNKNOWN_ACTIVE",
    "check_evidence",
]

MEAN_ABOVE_LIMIT_MARGIN = 0.05
P99_ABOVE_LIMIT_MARGIN = 0.25
# Mean usage below this fraction of f·r·L contradicts the throttled ratio; between it and
# 1 the fit takes f·r·L (scrape misalignment between the usage and period counters).
THROTTLED_USAGE_TOLERANCE = 0.5
# Without f, f = 1 overstates the bound for a container idle in many periods.
THROTTLED_USAGE_TOLERANCE_UNKNOWN_ACTIVE = 0.25


def _contradiction(stats: ContainerStats) -> str | None:
    container, cpu = stats.container, stats.cpu
    limit, ratio, usage = container.cpu_limit, cpu.throttled_period_ratio, cpu.usage_cores
    if container.cpu_request is not None and limit is not None and container.cpu_request > limit:
        return (
            f"the CPU request {describe_millicores(container.cpu_request)} is above the "
            f"limit {describe_millicores(limit)}, which the API server never admits"
        )
    memory_request, memory_limit = container.memory_request, container.memory_limit
    if memory_request is not None and memory_limit is not None and memory_request > memory_limit:
        return (
            f"the memory request {format_bytes(memory_request)} is above the limit "
            f"{format_bytes(memory_limit)}, which the API server never admits"
        )
    if limit is None:
        if ratio >= MIN_THROTTLE_RATIO:
            return (
                f"throttled in {ratio:.1%} of CFS periods without a CPU limit; CFS throttles "
                "only under a quota (is kube-state-metrics' limit series missing?)"
            )
        return None
    mean = usage.mean_or_median
    if mean > limit * (1 + MEAN_ABOVE_LIMIT_MARGIN):
        return (
            f"mean usage {describe_millicores(mean)} is above the CPU limit "
            f"{describe_millicores(limit)} (by more than {MEAN_ABOVE_LIMIT_MARGIN:.0%})"
        )
    if usage.p99 > limit * (1 + P99_ABOVE_LIMIT_MARGIN):
        return (
            f"usage p99 {describe_millicores(usage.p99)} is above the CPU limit "
            f"{describe_millicores(limit)} (by more than {P99_ABOVE_LIMIT_MARGIN:.0%})"
        )
    active = cpu.active_period_ratio or 1.0
    implied = active * ratio * limit
    tolerance = (
        THROTTLED_USAGE_TOLERANCE
        if cpu.active_period_ratio is not None
        else THROTTLED_USAGE_TOLERANCE_UNKNOWN_ACTIVE
    )
    if ratio >= MIN_THROTTLE_RATIO and mean < tolerance * implied:
        return (
            f"throttled in {ratio:.1%} of CFS periods at a {describe_millicores(limit)} limit"
            f" (active in {active:.0%} of them), so at least {describe_millicores(round(implied))}"
            f" were used on average, yet mean usage is {describe_millicores(mean)}; kernels "
            "before 5.4 strand quota on idle CPUs (CFS slice expiry) and throttle far below "
            "the quota, which no limit fixes"
        )
    return None


def check_evidence(stats: ContainerStats) -> NoRecommendation | None:
    """``contradictory-evidence`` naming the first contradiction found, or None."""
    found = _contradiction(stats)
    if found is None:
        return None
    return NoRecommendation(
        reason=NoRecommendationReason.CONTRADICTORY_EVIDENCE,
        message=f"contradictory evidence, nothing is recommended: {found}",
    )
