"""One container's recommendation: the steps of docs/recommendations.md, in order.

1. Enough history of the current configuration? Otherwise ``settling`` (after a change)
   or ``insufficient-data``, and nothing else is computed. Counters that contradict
   each other: ``contradictory-evidence`` (:mod:`.evidence`).
2. Fit the demand model to the throttling counters (:mod:`.demand`).
3. Tier: request = demand percentile × (1 + headroom), rounded up, within bounds.
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
from unthrottle.engine.tiers import TIER_RULES, usage_percentile_for
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
from unthrottle.model.stats import ContainerResources, ContainerStats, WebConcurrencySource

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


def _plan_cpu(
    stats: ContainerStats,
    policy: ThrottlePolicySpec,
    estimate: DemandEstimate,
    manage_workers: bool,
) -> _CpuPlan:
    container, cpu, bounds = stats.container, stats.cpu, policy.cpu
    rule = TIER_RULES[policy.tier]
    percentile_name, usage_at_percentile = usage_percentile_for(rule, cpu.usage_cores)
    demand = estimate.percentile(usage_at_percentile)
    request = clamp(
        _round_cpu(demand * (1.0 + rule.headroom)), bounds.min_request, bounds.max_request
    )
    notes = [
        f"{policy.tier.value} tier: request = {percentile_name} demand "
        f"{describe_millicores(math.ceil(demand))} + {rule.headroom:.0%} = "
        f"{describe_millicores(request)}"
    ]
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
        return _CpuPlan(request, None, 0, 0.0, tuple(notes))

    period_us = cpu.cfs_period_us or policy.cpu.cfs_period * 1000
    model, ratio, target = estimate.model, cpu.throttled_period_ratio, policy.throttle_target

    counted = burst_applied(container, policy)

    def burst_at(limit: int) -> int:
        if not policy.burst.enabled:
            return 0
        return recommend_burst_us(model, ratio, limit, period_us)

    def projected_at(limit: int) -> float:
        # A burst no agent applies is not in the kernel: project the quota alone.
        extra = burst_cores(burst_at(limit), period_us) if counted else 0.0
        return projected_throttle_ratio(model, limit, extra, estimate.mean)

    if limit_policy is LimitPolicy.GUARANTEED:
        limit = request
        notes.append("limit = request (Guaranteed)")
    else:
        limit = _round_cpu(request * rule.limit_ratio)
        notes.append(f"limit = {rule.limit_ratio:g} × request = {describe_millicores(limit)}")
    limit = clamp(limit, bounds.min_limit, None)
    peak = _round_cpu(cpu.usage_cores.max)
    if (container.cpu_limit is None or ratio < MIN_THROTTLE_RATIO) and limit < peak:
        # No quota or no throttling: the window's maximum (start-up bursts included) ran
        # unthrottled, so a first limit never goes below it.
        limit = peak
        notes.append(f"limit kept at the observed maximum usage {describe_millicores(peak)}")
    if projected_at(limit) > target:
        # The smallest limit, in 10m steps, that meets the target: a binary search, since
        # the projection falls as the limit (and the burst it allows) grows.
        low = limit // CPU_GRANULARITY
        high = max(low, _round_cpu(limit_for_target(model, target)) // CPU_GRANULARITY)
        while low < high:
            middle = (low + high) // 2
            if projected_at(middle * CPU_GRANULARITY) <= target:
                high = middle
            else:
                low = middle + 1
        limit = high * CPU_GRANULARITY
        while projected_at(limit) > target:  # floating-point ties at the boundary
            limit += CPU_GRANULARITY
        notes.append(f"limit raised to {describe_millicores(limit)} to meet the throttle target")
    current = container.cpu_limit
    if current is not None and ratio > target:
        # Throttled above the target at the current limit: whatever the model says (a
        # burst allowance can make it content with the same quota), never keep or lower
        # it, and raise it by at least a step worth a rollout (patch.minChange): +10m at
        # a time creeps up while the measured ratio hovers at the target.
        least = max(
            _round_cpu(current * (1.0 + policy.patch.min_change)),
            round_up(current + 1, CPU_GRANULARITY),
        )
        if limit < least:
            limit = least
            notes.append(
                f"limit raised {policy.patch.min_change:.0%} above the current "
                f"{describe_millicores(current)}, throttled there"
            )
    if manage_workers and limit % MILLICORES_PER_CORE:
        limit = round_up(limit, MILLICORES_PER_CORE)
        notes.append(f"limit rounded up to {describe_millicores(limit)}: workers equal whole cores")
    cap, cap_name = _limit_cap(stats, policy)
    capped = False
    if cap is not None and limit > cap:
        limit = cap
        whole = limit - limit % MILLICORES_PER_CORE  # workers equal cores only when whole
        floor = max(MILLICORES_PER_CORE, bounds.min_request, bounds.min_limit or 0)
        if manage_workers and whole >= floor:
            limit = whole
        notes.append(f"limit capped at {cap_name} {describe_millicores(limit)}")
        throttled_at_cap = current is not None and ratio > target and limit <= current
        capped = throttled_at_cap or projected_at(limit) > target
        if current is not None and throttled_at_cap and limit < current:
            # A cap below today's limit never lowers the limit of a throttled container.
            limit = current
            notes.append(f"limit kept at the current {describe_millicores(current)}, throttled")
    if limit_policy is LimitPolicy.GUARANTEED:
        request = limit
    request = min(request, limit)
    return _CpuPlan(
        request, limit, burst_at(limit), projected_at(limit), tuple(notes), counted, capped
    )


def _limit_cap(stats: ContainerStats, policy: ThrottlePolicySpec) -> tuple[int | None, str]:
    """The lower of cpu.maxLimit and the largest node's allocatable CPU, and its name."""
    caps = [
        (cap, name)
        for cap, name in (
            (policy.cpu.max_limit, "cpu.maxLimit"),
            (stats.node_allocatable_cpu, "the largest node's allocatable CPU"),
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
    return _CpuPlan(plan.request, limit, plan.burst_us, plan.projected, (*plan.notes, note)), manage


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
            policy.memory, stats.memory, stats.container, workers, policy.patch.cooldown
        )
    diagnosis = diagnose(
        stats, policy.throttle_target, workers.before, plan.request, capped=plan.capped
    )
    return Recommendation(
        cpu_request=plan.request,
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
