"""One container's recommendation: the steps of docs/recommendations.md, in order.

1. Enough history of the current configuration? Otherwise ``settling`` (after a change)
   or ``insufficient-data``, and nothing else is computed. Counters that contradict
   each other: ``contradictory-evidence`` (:mod:`.evidence`).
2. Fit the demand model to the throttling counters (:mod:`.demand`).
3. Tier: request = demand percentile × (1 + headroom), rounded up, within bounds; its
   band the same at the percentiles on either side (a current request inside is kept).
4. Limit per ``limitPolicy``; raised until the projected throttle ratio (with the burst
   allowance, when a node agent applies it) is at or under ``throttleTarget``; whole
   cores when workers follow it.
5. Burst, workers, memory; diagnoses; a one-paragraph explanation.

A burst counts in the limit and the projection only where the kernel gets it: under
``burst.agent: Detect`` when the container's pods report it applied
(``cpu_burst_applied_us``), always under ``Installed``. Otherwise the burst is still
recommended (the annotation is what lets an agent apply it later) but is advisory.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from unthrottle.engine.burst import burst_cores, recommend_burst_us
from unthrottle.engine.demand import (
    FIT_THROTTLED_PERIODS_CAPPED,
    FIT_THROTTLED_SECONDS,
    FIT_UNTHROTTLED,
    FIT_UNTHROTTLED_FLOOR,
    MIN_THROTTLE_RATIO,
    DemandEstimate,
    estimate_demand,
    limit_for_target,
    projected_throttle_ratio,
)
from unthrottle.engine.diagnosis import diagnose
from unthrottle.engine.evidence import check_evidence
from unthrottle.engine.guardrails import check_settling, clamp, coverage
from unthrottle.engine.memory import MemoryPlan, recommend_memory
from unthrottle.engine.tiers import TIER_RULES, usage_percentile
from unthrottle.engine.workers import (
    WorkerPlan,
    current_workers,
    downward_api_workers,
    manages_workers,
    oversubscribed,
)
from unthrottle.model.policy import BurstAgent, LimitPolicy, ThrottlePolicySpec
from unthrottle.model.quantity import (
    MILLICORES_PER_CORE,
    describe_bytes,
    describe_millicores,
    format_bytes,
    round_up,
)
from unthrottle.model.recommendation import Evidence, Recommendation, RecommendationResult
from unthrottle.model.stats import (
    ContainerResources,
    ContainerStats,
    UsagePercentiles,
    WebConcurrencySource,
)

__all__ = ["CPU_GRANULARITY", "burst_applied", "recommend"]

CPU_GRANULARITY = 10  # millicores: requests and limits are rounded up to 10m


@dataclass(frozen=True)
class _CpuPlan:
    request: int
    limit: int | None
    burst_us: int
    projected: float
    notes: tuple[str, ...]
    burst_counted: bool = True  # the projection includes burst_us (an agent applies it)
    capped: bool = False  # a cap binds below the limit the throttle target needs
    request_band: tuple[int, int] = (0, 0)  # kept within: lower ≤ request ≤ upper (always set)


def _evidence(stats: ContainerStats, estimate: DemandEstimate, demand_p99: float) -> Evidence:
    cpu = stats.cpu
    return Evidence(
        throttle_ratio=cpu.throttled_period_ratio,
        throttled_seconds_per_second=cpu.throttled_seconds_per_second,
        cpu_usage_p50=cpu.usage_cores.p50,
        cpu_usage_p99=cpu.usage_cores.p99,
        demand_mean=math.ceil(estimate.mean),
        demand_p99=math.ceil(demand_p99),
        rss_max=None if stats.memory is None else stats.memory.rss_bytes.max,
        samples=cpu.samples,
        coverage=coverage(cpu),
        signals=estimate.signals,
        demand_model=estimate.model,
    )


def _round_cpu(millicores: float) -> int:
    return round_up(max(1, math.ceil(millicores)), CPU_GRANULARITY)


def _tier_request(
    percentile: str, usage: UsagePercentiles, estimate: DemandEstimate, policy: ThrottlePolicySpec
) -> tuple[str, float, int]:
    """The request the tier sizes at one usage percentile: its name, the demand there, and
    demand × (1 + headroom) rounded up within the policy's bounds."""
    name, usage_at = usage_percentile(percentile, usage)
    demand = estimate.percentile(usage_at)
    headroom = TIER_RULES[policy.tier].headroom
    sized = _round_cpu(demand * (1.0 + headroom))
    return name, demand, clamp(sized, policy.cpu.min_request, policy.cpu.max_request)


def _plan_cpu(
    stats: ContainerStats,
    policy: ThrottlePolicySpec,
    estimate: DemandEstimate,
    manage_workers: bool,
) -> _CpuPlan:
    """The request (the tier's percentile of demand), then the limit, step by step."""
    container, bounds = stats.container, policy.cpu
    rule = TIER_RULES[policy.tier]
    usage = stats.cpu.usage_cores
    percentile_name, demand, request = _tier_request(rule.percentile, usage, estimate, policy)
    lower_name, _, lower = _tier_request(rule.lower_percentile, usage, estimate, policy)
    upper_name, _, upper = _tier_request(rule.upper_percentile, usage, estimate, policy)
    notes = [
        f"{policy.tier.value} tier: request = {percentile_name} demand "
        f"{describe_millicores(math.ceil(demand))} + {rule.headroom:.0%} = "
        f"{describe_millicores(request)}"
    ]
    band_source = f"{lower_name} to {upper_name} demand + {rule.headroom:.0%}"
    limit_policy = bounds.limit_policy
    if (
        limit_policy is LimitPolicy.UNSET
        and not manage_workers
        and container.web_concurrency_from is WebConcurrencySource.LIMITS_CPU
    ):
        # Without a limit the downward API hands the worker count the node's cores.
        limit_policy = LimitPolicy.RATIO
        notes.append("the CPU limit is kept because WEB_CONCURRENCY reads limits.cpu")
    if limit_policy is LimitPolicy.UNSET:
        if manage_workers:
            notes.append("no CPU limit; WEB_CONCURRENCY follows requests.cpu")
        band = _request_band(request, lower, upper, band_source, notes)
        return _CpuPlan(request, None, 0, 0.0, tuple(notes), request_band=band)
    sizing = _LimitSizing(stats, policy, estimate, manage_workers, notes)
    limit = sizing.start(request, limit_policy is LimitPolicy.GUARANTEED)
    limit = sizing.meet_target(limit)
    limit = sizing.above_throttled(limit)
    limit = sizing.whole_cores(limit)
    limit, capped = sizing.capped(limit)
    if limit_policy is LimitPolicy.GUARANTEED:
        request = lower = upper = limit  # the request is the limit: no band
    request = min(request, limit)
    band = _request_band(request, lower, min(upper, limit), band_source, notes)
    return _CpuPlan(
        request,
        limit,
        sizing.burst_at(limit),
        sizing.projected_at(limit),
        tuple(notes),
        sizing.counted,
        capped,
        request_band=band,  # a kept request stays under the limit
    )


def _request_band(
    request: int, lower: int, upper: int, source: str, notes: list[str]
) -> tuple[int, int]:
    """The band a current request is kept within, around ``request`` (:mod:`.tiers`)."""
    band = (min(lower, request), max(upper, request))
    if band[0] < band[1]:
        notes.append(
            f"a current request from {describe_millicores(band[0])} to "
            f"{describe_millicores(band[1])} ({source}) is kept"
        )
    return band


class _LimitSizing:
    """The CPU limit of one container: the steps of docs/recommendations.md §4, in order.

    Each step takes the limit so far and returns the next, adding a note when it moved.
    """

    def __init__(
        self,
        stats: ContainerStats,
        policy: ThrottlePolicySpec,
        estimate: DemandEstimate,
        manage_workers: bool,
        notes: list[str],
    ) -> None:
        self.stats, self.policy, self.estimate = stats, policy, estimate
        self.manage_workers, self.notes = manage_workers, notes
        self.current = stats.container.cpu_limit
        self.ratio, self.target = stats.cpu.throttled_period_ratio, policy.throttle_target
        self.period_us = stats.cpu.cfs_period_us or policy.cpu.cfs_period * 1000
        self.counted = burst_applied(stats.container, policy)

    def burst_at(self, limit: int) -> int:
        if not self.policy.burst.enabled:
            return 0
        return recommend_burst_us(self.estimate.model, self.ratio, limit, self.period_us)

    def projected_at(self, limit: int) -> float:
        # A burst no agent applies is not in the kernel: project the quota alone.
        extra = burst_cores(self.burst_at(limit), self.period_us) if self.counted else 0.0
        return projected_throttle_ratio(self.estimate.model, limit, extra, self.estimate.mean)

    def start(self, request: int, guaranteed: bool) -> int:
        """1. The limit policy's starting point, over cpu.minLimit and the observed peak."""
        rule = TIER_RULES[self.policy.tier]
        if guaranteed:
            limit = request
            self.notes.append("limit = request (Guaranteed)")
        else:
            limit = _round_cpu(request * rule.limit_ratio)
            self.notes.append(
                f"limit = {rule.limit_ratio:g} × request = {describe_millicores(limit)}"
            )
        limit = clamp(limit, self.policy.cpu.min_limit, None)
        peak = _round_cpu(self.stats.cpu.usage_cores.max)
        if (self.current is None or self.ratio < MIN_THROTTLE_RATIO) and limit < peak:
            # No quota or no throttling: the window's maximum (start-up bursts included)
            # ran unthrottled, so a first limit never goes below it.
            limit = peak
            self.notes.append(
                f"limit kept at the observed maximum usage {describe_millicores(peak)}"
            )
        return limit

    def meet_target(self, limit: int) -> int:
        """2. The smallest limit, in 10m steps, the model projects at or under the target."""
        if self.projected_at(limit) <= self.target:
            return limit
        # A binary search: the projection falls as the limit (and the burst it allows) grows.
        low = limit // CPU_GRANULARITY
        target_limit = limit_for_target(self.estimate.model, self.target)
        high = max(low, _round_cpu(target_limit) // CPU_GRANULARITY)
        while low < high:
            middle = (low + high) // 2
            if self.projected_at(middle * CPU_GRANULARITY) <= self.target:
                high = middle
            else:
                low = middle + 1
        limit = high * CPU_GRANULARITY
        while self.projected_at(limit) > self.target:  # floating-point ties at the boundary
            limit += CPU_GRANULARITY
        self.notes.append(
            f"limit raised to {describe_millicores(limit)} to meet the throttle target"
        )
        return limit

    def above_throttled(self, limit: int) -> int:
        """3. Throttled above the target at the current limit: at least minChange above it."""
        current = self.current
        if current is None or self.ratio <= self.target:
            return limit
        # Whatever the model says (a burst allowance can make it content with the same
        # quota), never keep or lower it, and raise it by a step worth a rollout: +10m at
        # a time creeps up while the measured ratio hovers at the target.
        min_change = self.policy.patch.min_change
        least = max(
            _round_cpu(current * (1.0 + min_change)), round_up(current + 1, CPU_GRANULARITY)
        )
        if limit >= least:
            return limit
        self.notes.append(
            f"limit raised {min_change:.0%} above the current "
            f"{describe_millicores(current)}, throttled there"
        )
        return least

    def whole_cores(self, limit: int) -> int:
        """4. Rounded up to whole cores when the workers follow the limit."""
        if not self.manage_workers or not limit % MILLICORES_PER_CORE:
            return limit
        limit = round_up(limit, MILLICORES_PER_CORE)
        self.notes.append(
            f"limit rounded up to {describe_millicores(limit)}: workers equal whole cores"
        )
        return limit

    def capped(self, limit: int) -> tuple[int, bool]:
        """5–6. At most the cap (never lowering a throttled limit); whether the cap binds."""
        cap, cap_name = _limit_cap(self.stats, self.policy)
        if cap is None or limit <= cap:
            return limit, False
        bounds, current = self.policy.cpu, self.current
        limit = cap
        whole = limit - limit % MILLICORES_PER_CORE  # workers equal cores only when whole
        if self.manage_workers and whole >= max(
            MILLICORES_PER_CORE, bounds.min_request, bounds.min_limit or 0
        ):
            limit = whole
        self.notes.append(f"limit capped at {cap_name} {describe_millicores(limit)}")
        throttled_at_cap = current is not None and self.ratio > self.target and limit <= current
        if current is not None and throttled_at_cap and limit < current:
            # A cap below today's limit never lowers the limit of a throttled container.
            limit = current
            self.notes.append(
                f"limit kept at the current {describe_millicores(current)}, throttled"
            )
        return limit, throttled_at_cap or self.projected_at(limit) > self.target


def _limit_cap(stats: ContainerStats, policy: ThrottlePolicySpec) -> tuple[int | None, str]:
    """The lower of cpu.maxLimit and the node's allocatable CPU, and its name (the node: the
    largest, or for a DaemonSet the smallest, :class:`~unthrottle.model.workload.NodeCpu`)."""
    caps = [
        (cap, name)
        for cap, name in (
            (policy.cpu.max_limit, "cpu.maxLimit"),
            (stats.node_allocatable_cpu, "the node's allocatable CPU"),
        )
        if cap is not None
    ]
    return min(caps, default=(None, ""))


def burst_applied(container: ContainerResources, policy: ThrottlePolicySpec) -> bool:
    """Whether the kernel gets this container's burst: the projection may count it."""
    if not policy.burst.enabled:
        return False
    if policy.burst.agent is BurstAgent.INSTALLED:
        return True
    return container.cpu_burst_applied_us is not None


def _plan_workers(
    stats: ContainerStats, manage_workers: bool, request: int, limit: int | None
) -> WorkerPlan:
    container = stats.container
    before = current_workers(container)
    source = container.web_concurrency_from
    if manage_workers:
        return WorkerPlan(before, downward_api_workers(limit or request), True, False)
    if source is WebConcurrencySource.LIMITS_CPU and limit is not None:
        return WorkerPlan(before, downward_api_workers(limit), False, True)
    if source is WebConcurrencySource.REQUESTS_CPU:
        return WorkerPlan(before, downward_api_workers(request), False, True)
    return WorkerPlan(before, before, False, False)


def _describe_data(stats: ContainerStats, estimate: DemandEstimate) -> str:
    cpu = stats.cpu
    usage = cpu.usage_cores
    mean, p99 = describe_millicores(usage.mean_or_median), describe_millicores(usage.p99)
    seen = f"mean usage {mean}, p99 {p99}"
    if estimate.model.fit in (FIT_UNTHROTTLED, FIT_UNTHROTTLED_FLOOR):
        return (
            f"No throttling ({cpu.throttled_period_ratio:.1%} of periods): {seen}; demand is usage."
        )
    limit = stats.container.cpu_limit or 0
    how = {
        FIT_THROTTLED_SECONDS: "throttled seconds bound",
        FIT_THROTTLED_PERIODS_CAPPED: "the counters cannot see past the quota, so the model caps",
    }.get(estimate.model.fit, "the demand model fitted to usage at the quota puts")
    return (
        f"Throttled in {cpu.throttled_period_ratio:.1%} of CFS periods at a "
        f"{describe_millicores(limit)} limit ({seen}); {how} the mean excess of a throttled "
        f"period at {describe_millicores(math.ceil(estimate.model.scale))}, so demand is "
        f"usage + {describe_millicores(math.ceil(estimate.unmet_mean))} "
        f"(mean {describe_millicores(math.ceil(estimate.mean))})."
    )


def _explain(
    stats: ContainerStats,
    *,
    policy: ThrottlePolicySpec,
    estimate: DemandEstimate,
    plan: _CpuPlan,
    workers: WorkerPlan,
    memory: MemoryPlan | None,
) -> str:
    parts = [_describe_data(stats, estimate), "; ".join(plan.notes) + "."]
    if plan.limit is None:
        parts.append("No CPU limit, so no CFS throttling.")
    else:
        counted = plan.burst_us and plan.burst_counted
        burst = f" with {plan.burst_us // 1000}ms burst" if counted else ""
        parts.append(
            f"Projected throttled ratio at {describe_millicores(plan.limit)}{burst}: "
            f"{plan.projected:.1%} (target {policy.throttle_target:.1%})."
        )
        if plan.burst_us and not plan.burst_counted:
            parts.append(
                f"Burst {plan.burst_us // 1000}ms (advisory: no node agent applies it) "
                "is counted in neither the limit nor the projection."
            )
    if workers.managed or workers.derived:
        how = "set by unthrottle" if workers.managed else "via the downward API"
        parts.append(f"Workers {workers.before or '?'} → {workers.after} ({how}).")
    if memory is not None:
        assert stats.memory is not None
        memory_line = (
            f"Memory: RSS max {describe_bytes(stats.memory.rss_bytes.max)}, base "
            f"{describe_bytes(memory.base)} + {policy.memory.headroom:.0%} = "
            f"{format_bytes(memory.request if memory.limit is None else memory.limit)}"
        )
        parts.append(memory_line + "".join(f"; {note}" for note in memory.notes) + ".")
    return " ".join(parts)


def _fewer_workers_without_reason(
    stats: ContainerStats, policy: ThrottlePolicySpec, workers: WorkerPlan
) -> bool:
    return (
        workers.before is not None
        and workers.after is not None
        and workers.after < workers.before
        and not oversubscribed(
            stats.container, stats.cpu.throttled_period_ratio, policy.throttle_target
        )
    )


def _keep_workers(
    stats: ContainerStats,
    policy: ThrottlePolicySpec,
    estimate: DemandEstimate,
    plan: _CpuPlan,
    manage: bool,
) -> tuple[_CpuPlan, bool]:
    """The plan that keeps today's worker count (docs/recommendations.md, "Workers")."""
    container = stats.container
    before = current_workers(container)
    assert before is not None
    source = container.web_concurrency_from
    if source is WebConcurrencySource.REQUESTS_CPU:
        # A downward-API count the operator manages: it moves to limits.cpu, whole cores.
        return plan, manage
    if source is not WebConcurrencySource.LIMITS_CPU:
        # A literal count: leave the env as it is.
        return _plan_cpu(stats, policy, estimate, False), False
    if plan.limit is None:
        return plan, manage  # limitPolicy Unset: the count follows requests.cpu by choice
    # The env reads limits.cpu: a limit of at least the workers in cores keeps them. A
    # higher limit throttles less, so the projection at the lower one still holds.
    limit = max(plan.limit, before * MILLICORES_PER_CORE)
    if policy.cpu.max_limit is not None:
        # The bound wins, in whole cores: the workers read the limit rounded up.
        whole = policy.cpu.max_limit - policy.cpu.max_limit % MILLICORES_PER_CORE
        limit = min(limit, max(plan.limit, whole))
    note = (
        f"limit kept at {describe_millicores(limit)} so the {before} workers stay "
        "(no CPU oversubscription)"
    )
    return dataclasses.replace(plan, limit=limit, notes=(*plan.notes, note)), manage


def recommend(stats: ContainerStats, policy: ThrottlePolicySpec) -> RecommendationResult:
    """The recommendation for one container under ``policy``, or why there is none."""
    estimate = estimate_demand(stats.cpu, stats.container.cpu_limit)
    demand_p99 = estimate.percentile(stats.cpu.usage_cores.p99)
    evidence = _evidence(stats, estimate, demand_p99)
    insufficient = check_settling(stats, policy.history)
    if insufficient is not None:
        return insufficient.model_copy(update={"evidence": evidence})
    contradiction = check_evidence(stats)
    if contradiction is not None:
        return contradiction.model_copy(update={"evidence": evidence})
    manage = manages_workers(policy.web_concurrency, stats.container)
    plan = _plan_cpu(stats, policy, estimate, manage)
    workers = _plan_workers(stats, manage, plan.request, plan.limit)
    if _fewer_workers_without_reason(stats, policy, workers):
        plan, manage = _keep_workers(stats, policy, estimate, plan, manage)
        workers = _plan_workers(stats, manage, plan.request, plan.limit)
    memory = None
    if policy.memory.enabled and stats.memory is not None:
        memory = recommend_memory(
            policy.memory,
            stats.memory,
            stats.container,
            workers,
            policy.patch.cooldown,
            window_seconds=stats.cpu.window_seconds,
        )
    diagnosis = diagnose(
        stats, policy.throttle_target, workers.before, plan.request, capped=plan.capped
    )
    return Recommendation(
        cpu_request=plan.request,
        cpu_request_lower_bound=plan.request_band[0],
        cpu_request_upper_bound=plan.request_band[1],
        cpu_limit=plan.limit,
        cpu_burst_us=plan.burst_us,
        memory_request=None if memory is None else memory.request,
        memory_limit=None if memory is None else memory.limit,
        web_concurrency=workers.after if workers.managed or workers.derived else None,
        projected_throttle_ratio=min(1.0, max(0.0, plan.projected)),
        diagnosis=diagnosis,
        explanation=_explain(
            stats, policy=policy, estimate=estimate, plan=plan, workers=workers, memory=memory
        ),
        evidence=evidence,
    )
