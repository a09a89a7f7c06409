"""Properties of ``engine.recommend.recommend`` over random containers and policies.

The statistics are built through the public JSON shape (camelCase, CPU in cores, CPU
quantities as text), so what is tested is what ``unthrottle recommend`` and the operator
hand the engine. Every property below is one docs/recommendations.md states.
"""

from __future__ import annotations

import math
import re
from typing import Any

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from unthrottle.engine.recommend import recommend
from unthrottle.engine.workers import oversubscribed
from unthrottle.model.policy import LimitPolicy, ThrottlePolicySpec, Tier
from unthrottle.model.quantity import parse_millicores
from unthrottle.model.recommendation import (
    Diagnosis,
    NoRecommendation,
    NoRecommendationReason,
    Recommendation,
    RecommendationResult,
)
from unthrottle.model.stats import ContainerStats, WebConcurrencySource
from unthrottle.reconcile.patch import _stepped

MI = 2**20
WEEK = 604_800
MIN_SAMPLES_FULL_WEEK = 2016  # 2016 × 300 s = one week: coverage 100%

PROPERTY = settings(max_examples=200, deadline=None)

# --------------------------------------------------------------------------- strategies


# Strategies are built once here: composites that build strategies per draw spend most
# of their time validating them.
MILLICORES = st.integers(0, 8000)
CPU_LIMITS = st.integers(10, 8000)
CPU_REQUESTS = st.integers(1, 8000)
WORKERS = st.integers(1, 16)
THREADS = st.integers(1, 32)
SOURCES = st.sampled_from(list(WebConcurrencySource))
MEMORY = st.integers(MI, 16 * 2**30)
RATIOS = st.floats(0.0, 1.0)
UNMET = st.integers(0, 4000)  # millicores of unmet demand (throttled seconds per second)
ACTIVE = st.floats(0.01, 1.0)  # the fraction of CFS periods with runnable work
OOM_KILLS = st.integers(0, 3)
SLOPES = st.floats(-1e4, 1e4)
FLAGS = st.booleans()


def optional(draw: st.DrawFn, flag: bool | None, values: st.SearchStrategy[Any]) -> Any:
    """A value drawn from ``values``, or None: forced by ``flag`` unless it is None."""
    if flag is None:
        flag = draw(FLAGS)
    return draw(values) if flag else None


@st.composite
def usage_percentiles(draw: st.DrawFn) -> dict[str, Any]:
    """Ordered usage percentiles in whole millicores (written as cores by build_stats)."""
    p50, p95, p99, p999, p9999, peak = sorted(draw(MILLICORES) for _ in range(6))
    usage: dict[str, Any] = {"p50": p50, "p95": p95, "p99": p99, "max": peak}
    if draw(FLAGS):
        usage["p999"] = p999
    if draw(FLAGS):
        usage["p9999"] = p9999
    if draw(FLAGS):
        usage["mean"] = min(draw(MILLICORES), peak)
    return usage


USAGE = usage_percentiles()


def as_cores(millicores: dict[str, int]) -> dict[str, float]:
    # m / 1000 has the shortest repr "0.m", which the model reads back exactly.
    return {name: value / 1000 for name, value in millicores.items()}


@st.composite
def container_stats_docs(
    draw: st.DrawFn,
    *,
    limit: bool | None = None,
    unmet: bool | None = None,
    memory: bool | None = None,
) -> dict[str, Any]:
    """A valid input document (container, cpu, memory) with usage kept in millicores.

    ``limit``, ``unmet`` (throttled seconds) and ``memory`` force a part present (True) or
    absent (False); None draws either.
    """
    container: dict[str, Any] = {"name": "app"}
    cpu_limit = optional(draw, limit, CPU_LIMITS)
    if cpu_limit is not None:
        container["cpuLimit"] = f"{cpu_limit}m"
    request = optional(draw, None, CPU_REQUESTS)
    if request is not None:
        container["cpuRequest"] = f"{request}m"
    workers = optional(draw, None, WORKERS)
    if workers is not None:
        container["webConcurrency"] = workers
    source = optional(draw, None, SOURCES)
    if source is not None:
        container["webConcurrencyFrom"] = source.value
    threads = optional(draw, None, THREADS)
    if threads is not None:
        container["threads"] = threads
    memory_limit = optional(draw, None, MEMORY)
    if memory_limit is not None:
        container["memoryLimit"] = memory_limit
        container["memoryRequest"] = memory_limit
    cpu: dict[str, Any] = {
        "usage": draw(USAGE),
        "throttledPeriodRatio": draw(RATIOS),
        "samples": MIN_SAMPLES_FULL_WEEK,
        "windowSeconds": WEEK,
    }
    seconds = optional(draw, unmet, UNMET)
    if seconds is not None:
        cpu["unmet"] = seconds
    active = optional(draw, None, ACTIVE)
    if active is not None:
        cpu["activePeriodRatio"] = active
    document: dict[str, Any] = {"container": container, "cpu": cpu}
    if memory if memory is not None else draw(FLAGS):
        rss_p99, rss_max = sorted((draw(MEMORY), draw(MEMORY)))
        memory_doc: dict[str, Any] = {
            "rssBytes": {"p99": rss_p99, "max": rss_max},
            "oomKills": draw(OOM_KILLS),
        }
        if draw(FLAGS):
            memory_doc["workingSetBytes"] = {"max": rss_max + draw(MEMORY)}
        if draw(FLAGS):
            memory_doc["rssSlopeBytesPerSecond"] = draw(SLOPES)
        document["memory"] = memory_doc
    return document


def consistent(doc: dict[str, Any]) -> dict[str, Any]:
    """The document made self-consistent (engine/evidence.py): throttling only under a
    limit, usage within it, a request within it, and a mean usage of at least f·r·L."""
    container, cpu = dict(doc["container"]), dict(doc["cpu"])
    usage = dict(cpu["usage"])
    limit_text = container.get("cpuLimit")
    if limit_text is None:
        cpu["throttledPeriodRatio"] = 0.0
    else:
        limit = parse_millicores(limit_text)
        highest = limit * 105 // 100  # within the 5% a mean may exceed the limit by
        usage = {name: min(value, highest) for name, value in usage.items()}
        request = container.get("cpuRequest")
        if request is not None and parse_millicores(request) > limit:
            container["cpuRequest"] = limit_text
        implied = cpu.get("activePeriodRatio", 1.0) * cpu["throttledPeriodRatio"] * limit
        mean = usage.get("mean", usage["p50"])
        usage["mean"] = min(highest, max(mean, math.ceil(implied)))
    cpu["usage"] = usage
    return {**doc, "container": container, "cpu": cpu}


def build_stats(doc: dict[str, Any]) -> ContainerStats:
    doc = consistent(doc)
    cpu = doc["cpu"]
    wire_cpu: dict[str, Any] = {
        "usageCores": as_cores(cpu["usage"]),
        "throttledPeriodRatio": cpu["throttledPeriodRatio"],
        "samples": cpu["samples"],
        "windowSeconds": cpu["windowSeconds"],
    }
    if "activePeriodRatio" in cpu:
        wire_cpu["activePeriodRatio"] = cpu["activePeriodRatio"]
    if "unmet" in cpu:
        wire_cpu["throttledSecondsPerSecond"] = cpu["unmet"] / 1000
    wire: dict[str, Any] = {"container": doc["container"], "cpu": wire_cpu}
    if "memory" in doc:
        wire["memory"] = doc["memory"]
    return ContainerStats.model_validate(wire)


MIN_REQUESTS = st.integers(1, 2000)
MIN_LIMITS = st.integers(1, 4000)
SPANS = st.integers(0, 8000)  # how far a maximum lies above its minimum (millicores)
MEMORY_MINIMUMS = st.integers(MI, 2**30)
MEMORY_SPANS = st.integers(0, 16 * 2**30)
HEADROOMS = st.floats(0.0, 4.0)
TARGETS = st.floats(0.001, 0.5)
TIERS = st.sampled_from([tier.value for tier in Tier])
LIMIT_POLICIES = st.sampled_from([policy.value for policy in LimitPolicy])
WORKER_CONTAINERS = st.sampled_from([[], ["app"], ["sidecar"]])


@st.composite
def policy_docs(draw: st.DrawFn) -> dict[str, Any]:
    """A ThrottlePolicy spec with every tier, limitPolicy, workers and burst on or off.

    CPU bounds are drawn consistent: minRequest ≤ maxRequest, minLimit ≤ maxLimit, and
    minRequest ≤ maxLimit (an inconsistent pair cannot both hold).
    """
    cpu: dict[str, Any] = {"limitPolicy": draw(LIMIT_POLICIES)}
    min_request = optional(draw, None, MIN_REQUESTS)
    if min_request is not None:
        cpu["minRequest"] = f"{min_request}m"
    floor = min_request or 10  # the default minRequest
    max_request = optional(draw, None, SPANS)
    if max_request is not None:
        cpu["maxRequest"] = f"{floor + max_request}m"
    min_limit = optional(draw, None, MIN_LIMITS)
    if min_limit is not None:
        cpu["minLimit"] = f"{min_limit}m"
    max_limit = optional(draw, None, SPANS)
    if max_limit is not None:
        cpu["maxLimit"] = f"{max(floor, min_limit or 1) + max_limit}m"
    memory: dict[str, Any] = {"enabled": draw(FLAGS), "headroom": draw(HEADROOMS)}
    memory_min = optional(draw, None, MEMORY_MINIMUMS)
    if memory_min is not None:
        memory["minLimit"] = memory_min
    memory_max = optional(draw, None, MEMORY_SPANS)
    if memory_max is not None:
        memory["maxLimit"] = (memory_min or 32 * MI) + memory_max
    return {
        "tier": draw(TIERS),
        "throttleTarget": draw(TARGETS),
        "cpu": cpu,
        "memory": memory,
        "burst": {"enabled": draw(FLAGS)},
        "webConcurrency": {"enabled": draw(FLAGS), "containers": draw(WORKER_CONTAINERS)},
    }


def build_policy(doc: dict[str, Any]) -> ThrottlePolicySpec:
    return ThrottlePolicySpec.model_validate(doc)


def managed_workers(policy: ThrottlePolicySpec, stats: ContainerStats) -> bool:
    """The documented rule: enabled, and named in containers or (none named) already set."""
    web = policy.web_concurrency
    if not web.enabled:
        return False
    if web.containers:
        return stats.container.name in web.containers
    container = stats.container
    return container.web_concurrency is not None or container.web_concurrency_from is not None


def recommendation(stats: ContainerStats, policy: ThrottlePolicySpec) -> Recommendation:
    result = recommend(stats, policy)
    assert isinstance(result, Recommendation), result
    return result


def finite_numbers(value: object) -> bool:
    """No NaN or infinity anywhere in a model_dump."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_numbers(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite_numbers(v) for v in value)
    return True


def with_usage_scaled(doc: dict[str, Any], factor: float) -> dict[str, Any]:
    cpu = doc["cpu"]
    usage = {name: math.ceil(value * factor) for name, value in cpu["usage"].items()}
    return {**doc, "cpu": {**cpu, "usage": usage}}


def with_cpu(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**doc, "cpu": {**doc["cpu"], **changes}}


# --------------------------------------------------------------------------- invariants


@PROPERTY
@given(container_stats_docs(), policy_docs())
def test_values_are_valid(doc: dict[str, Any], policy_doc: dict[str, Any]) -> None:
    stats, policy = build_stats(doc), build_policy(policy_doc)
    rec = recommendation(stats, policy)
    assert rec.cpu_request >= 1
    if rec.cpu_limit is not None:
        assert rec.cpu_limit >= rec.cpu_request
    assert rec.cpu_burst_us >= 0
    if rec.cpu_limit is None:
        assert rec.cpu_burst_us == 0  # no quota, nothing to burst above
    else:
        # The kernel refuses a burst above one period's quota: limit × 100 ms.
        assert rec.cpu_burst_us <= rec.cpu_limit * 100
    for value in (rec.memory_request, rec.memory_limit, rec.web_concurrency):
        assert value is None or value > 0
    assert 0.0 <= rec.projected_throttle_ratio <= 1.0
    dumped = rec.model_dump()
    assert finite_numbers(dumped)
    # A NaN clamped into [0, 1] would hide in the number but show in the prose.
    assert not re.search(r"\b(nan|inf)\b", rec.explanation, re.IGNORECASE), rec.explanation
    assert rec.diagnosis
    assert rec.explanation


@PROPERTY
@given(container_stats_docs(), policy_docs())
def test_same_input_same_output(doc: dict[str, Any], policy_doc: dict[str, Any]) -> None:
    first = recommend(build_stats(doc), build_policy(policy_doc))
    second = recommend(build_stats(doc), build_policy(policy_doc))
    # model_dump compares every float too; a NaN anywhere would make this fail (nan != nan).
    assert first.model_dump() == second.model_dump()


# --------------------------------------------------------------------------- bounds


@PROPERTY
@given(container_stats_docs(), policy_docs())
def test_bounds_respected(doc: dict[str, Any], policy_doc: dict[str, Any]) -> None:
    stats, policy = build_stats(doc), build_policy(policy_doc)
    rec = recommendation(stats, policy)
    bounds = policy.cpu
    assert rec.cpu_request >= bounds.min_request
    if bounds.max_request is not None and bounds.limit_policy is not LimitPolicy.GUARANTEED:
        # Guaranteed sets request = limit, and the limit may have to rise above maxRequest
        # to meet the throttle target; every other policy keeps the request within it.
        assert rec.cpu_request <= bounds.max_request
    if rec.cpu_limit is not None:
        if bounds.min_limit is not None:
            assert rec.cpu_limit >= bounds.min_limit
        if bounds.max_limit is not None:
            current = stats.container.cpu_limit
            if rec.cpu_limit > bounds.max_limit:
                # Only a throttled container over a lower maxLimit: its limit is kept.
                throttled = stats.cpu.throttled_period_ratio > policy.throttle_target
                assert throttled and rec.cpu_limit == current
                assert Diagnosis.CAPPED in rec.diagnosis


@PROPERTY
@given(container_stats_docs(), policy_docs())
def test_a_throttled_limit_is_never_lowered(
    doc: dict[str, Any], policy_doc: dict[str, Any]
) -> None:
    stats, policy = build_stats(doc), build_policy(policy_doc)
    rec = recommendation(stats, policy)
    current = stats.container.cpu_limit
    throttled = stats.cpu.throttled_period_ratio > policy.throttle_target
    if current is None or not throttled or rec.cpu_limit is None:
        return
    assert rec.cpu_limit >= current
    if rec.projected_throttle_ratio > policy.throttle_target:
        # The limit the target needs was not reached: a cap bound, and it says so.
        assert Diagnosis.CAPPED in rec.diagnosis


@PROPERTY
@given(container_stats_docs(memory=True), policy_docs())
def test_memory_bounds(doc: dict[str, Any], policy_doc: dict[str, Any]) -> None:
    stats, policy = build_stats(doc), build_policy(policy_doc)
    rec = recommendation(stats, policy)
    if not policy.memory.enabled:
        assert rec.memory_limit is None and rec.memory_request is None
        return
    assert stats.memory is not None
    rss_max = stats.memory.rss_bytes.max
    assert rec.memory_request is not None
    if stats.memory.oom_kills and stats.container.memory_limit is None:
        # The node's OOM killer chose it: no limit is added, the request is not lowered.
        assert rec.memory_limit is None
        assert rec.memory_request >= (stats.container.memory_request or 0)
        assert rec.memory_request >= rss_max
        return
    assert rec.memory_limit is not None
    assert rec.memory_limit >= rss_max  # the guardrail: never below the observed RSS
    rss_max_mib = -(-rss_max // MI) * MI  # rounded up to a whole MiB
    wss = stats.memory.working_set_bytes
    wss_mib = 0 if wss is None else -(-wss.max // MI) * MI
    assert rec.memory_limit >= wss_mib  # the kubelet evicts on the working set
    max_limit = policy.memory.max_limit
    # RSS + headroom, unless memory.maxLimit caps it (never below the RSS, see below).
    assert (
        rec.memory_limit >= rss_max * (1 + policy.memory.headroom)
        or (max_limit is not None and rec.memory_limit in (max_limit, rss_max_mib, wss_mib))
        or rec.memory_limit == wss_mib
    )
    assert rec.memory_request == rec.memory_limit  # memory is not compressible
    # Whole MiB, unless a bound the policy wrote in bytes is the answer.
    assert rec.memory_limit % MI == 0 or rec.memory_limit in (max_limit, policy.memory.min_limit)
    assert rec.memory_limit >= policy.memory.min_limit
    if max_limit is not None and max_limit >= max(rss_max_mib, wss_mib):
        # memory.maxLimit binds unless it is below the observed RSS (rounded up to a MiB),
        # which would OOM-kill the container at once: then it is deliberately not applied.
        assert rec.memory_limit <= max_limit


@PROPERTY
@given(container_stats_docs(), policy_docs())
def test_throttle_target_met(doc: dict[str, Any], policy_doc: dict[str, Any]) -> None:
    policy_doc = {**policy_doc, "cpu": {k: v for k, v in policy_doc["cpu"].items()}}
    policy_doc["cpu"].pop("maxLimit", None)
    stats, policy = build_stats(doc), build_policy(policy_doc)
    rec = recommendation(stats, policy)
    if rec.cpu_limit is not None:
        assert rec.projected_throttle_ratio <= policy.throttle_target
    else:
        assert rec.projected_throttle_ratio == 0.0  # no quota, no throttling


@PROPERTY
@given(container_stats_docs(limit=True), policy_docs(), st.sampled_from(["Ratio", "Guaranteed"]))
def test_throttled_container_gets_a_higher_limit(
    doc: dict[str, Any], policy_doc: dict[str, Any], limit_policy: str
) -> None:
    # Throttled above the target at its current limit, a container must get more quota
    # (issue 2: a quota-bound container at 300m gets a limit above 300m), unless
    # cpu.maxLimit forbids it or the policy removes the limit.
    cpu_policy = {k: v for k, v in policy_doc["cpu"].items() if k != "maxLimit"}
    cpu_policy["limitPolicy"] = limit_policy
    stats, policy = build_stats(doc), build_policy({**policy_doc, "cpu": cpu_policy})
    assume(stats.cpu.throttled_period_ratio > policy.throttle_target)
    rec = recommendation(stats, policy)
    assert stats.container.cpu_limit is not None and rec.cpu_limit is not None
    assert rec.cpu_limit > stats.container.cpu_limit
    assert rec.projected_throttle_ratio <= policy.throttle_target


# --------------------------------------------------------------------------- workers


_WORKERS_FROM_REQUEST_POLICY: dict[str, Any] = {
    "tier": "critical",
    "throttleTarget": 0.5,
    "cpu": {"limitPolicy": "Ratio"},
    "memory": {"enabled": False, "headroom": 0.0},
    "burst": {"enabled": False},
    "webConcurrency": {"enabled": False, "containers": []},
}


def _workers_from_request(workers: int, max_usage: int) -> dict[str, Any]:
    """An idle container whose WEB_CONCURRENCY reads requests.cpu."""
    return {
        "container": {
            "name": "app",
            "webConcurrency": workers,
            "webConcurrencyFrom": "requests.cpu",
        },
        "cpu": {
            "usage": {"p50": 0, "p95": 0, "p99": 0, "max": max_usage},
            "throttledPeriodRatio": 0.0,
            "samples": 2016,
            "windowSeconds": 604800,
        },
    }


@PROPERTY
@given(container_stats_docs(), policy_docs())
@example(_workers_from_request(3, 251), _WORKERS_FROM_REQUEST_POLICY)
@example(_workers_from_request(2, 0), _WORKERS_FROM_REQUEST_POLICY)
@example(
    {
        **_workers_from_request(2, 0),
        "container": {"name": "app", "webConcurrency": 2, "webConcurrencyFrom": "limits.cpu"},
    },
    {**_WORKERS_FROM_REQUEST_POLICY, "cpu": {"limitPolicy": "Ratio", "maxLimit": "1001m"}},
)
def test_managed_workers_equal_whole_limit_cores(
    doc: dict[str, Any], policy_doc: dict[str, Any]
) -> None:
    policy_doc = {**policy_doc, "webConcurrency": {"enabled": True, "containers": ["app"]}}
    stats, policy = build_stats(doc), build_policy(policy_doc)
    rec = recommendation(stats, policy)
    if rec.web_concurrency is None:
        # The count is left as it is: lowering it needs CPU oversubscription.
        target = policy.throttle_target
        assert not oversubscribed(stats.container, stats.cpu.throttled_period_ratio, target)
        return
    if rec.cpu_limit is not None:
        # WEB_CONCURRENCY from limits.cpu through the downward API: ceil(limit cores).
        assert rec.web_concurrency == max(1, -(-rec.cpu_limit // 1000))
        bounds = policy.cpu
        floor = max(1000, bounds.min_request, bounds.min_limit or 0)
        # A throttled limit above cpu.maxLimit is kept as it is (never lowered): capped.
        kept = Diagnosis.CAPPED in rec.diagnosis and rec.cpu_limit == stats.container.cpu_limit
        if not kept and (bounds.max_limit is None or bounds.max_limit // 1000 * 1000 >= floor):
            # Whole cores whenever the bounds leave room for some: rounded up, or down
            # under cpu.maxLimit (1500m → 1 core, not 2 workers on 1.5 cores).
            assert rec.cpu_limit % 1000 == 0
            assert rec.web_concurrency == rec.cpu_limit // 1000
    else:
        # limitPolicy Unset: WEB_CONCURRENCY follows requests.cpu, ceil(request cores).
        assert policy.cpu.limit_policy is LimitPolicy.UNSET
        assert rec.web_concurrency == max(1, -(-rec.cpu_request // 1000))


@PROPERTY
@given(container_stats_docs(), policy_docs())
def test_unset_keeps_limit_when_workers_read_limits_cpu(
    doc: dict[str, Any], policy_doc: dict[str, Any]
) -> None:
    doc = {**doc, "container": {**doc["container"], "webConcurrencyFrom": "limits.cpu"}}
    policy_doc = {
        **policy_doc,
        "cpu": {**policy_doc["cpu"], "limitPolicy": "Unset"},
        "webConcurrency": {"enabled": False},
    }
    stats, policy = build_stats(doc), build_policy(policy_doc)
    rec = recommendation(stats, policy)
    # Without a limit the downward API would hand WEB_CONCURRENCY the node's cores.
    assert rec.cpu_limit is not None
    assert rec.web_concurrency == -(-rec.cpu_limit // 1000)  # ceil(limit cores)


@PROPERTY
@given(container_stats_docs(), policy_docs())
def test_unset_removes_limit_otherwise(doc: dict[str, Any], policy_doc: dict[str, Any]) -> None:
    policy_doc = {**policy_doc, "cpu": {**policy_doc["cpu"], "limitPolicy": "Unset"}}
    stats, policy = build_stats(doc), build_policy(policy_doc)
    reads_limit = stats.container.web_concurrency_from is WebConcurrencySource.LIMITS_CPU
    assume(not reads_limit or managed_workers(policy, stats))
    rec = recommendation(stats, policy)
    assert rec.cpu_limit is None
    assert rec.cpu_burst_us == 0


# --------------------------------------------------------------------------- monotone in demand


@PROPERTY
@given(container_stats_docs(), policy_docs(), st.floats(1.0, 4.0))
def test_more_usage_never_lowers_request(
    doc: dict[str, Any], policy_doc: dict[str, Any], factor: float
) -> None:
    # Unthrottled containers (no limit, or r below 1e-4): demand is usage. For throttled
    # ones the scale β is fitted to the mean usage at the quota and falls as it rises
    # (throttled seconds only bound β from above), so more usage can lower the request:
    # see test_more_usage_periods_only_fit below.
    stats = build_stats(doc)
    assume(stats.container.cpu_limit is None or stats.cpu.throttled_period_ratio < 1e-4)
    policy = build_policy(policy_doc)
    before = recommendation(stats, policy)
    after = recommendation(build_stats(with_usage_scaled(doc, factor)), policy)
    assert after.cpu_request >= before.cpu_request


@PROPERTY
@given(container_stats_docs(unmet=True), policy_docs(), st.integers(0, 4000))
def test_more_throttled_seconds_never_lower_request_or_limit(
    doc: dict[str, Any], policy_doc: dict[str, Any], extra: int
) -> None:
    # More unmet demand at the same throttled ratio is more demand. The limit follows it
    # while the container is over its target (r > τ): the limit that meets τ is then
    # L + β·ln(r/τ), rising with β (which s/r bounds). Under its target (r < τ) that limit
    # lies below the quota, where a wider tail lowers it; Guaranteed carries the limit to
    # the request. Burst is off: with a burst b = β that is all usable the quota that meets
    # τ is L + β·(ln(r/τ) − 1), which *falls* as β grows when τ < r < e·τ. Quota plus burst
    # still grows; the quota alone need not, and that is by design.
    assume(doc["cpu"]["unmet"] > 0)
    policy_doc = {**policy_doc, "burst": {"enabled": False}}
    stats, policy = build_stats(doc), build_policy(policy_doc)
    before = recommendation(stats, policy)
    more = with_cpu(doc, unmet=doc["cpu"]["unmet"] + extra)
    after = recommendation(build_stats(more), policy)
    over_target = stats.cpu.throttled_period_ratio > policy.throttle_target
    if policy.cpu.limit_policy is not LimitPolicy.GUARANTEED or over_target:
        assert after.cpu_request >= before.cpu_request
    if before.cpu_limit is not None and over_target:
        assert after.cpu_limit is not None
        assert after.cpu_limit >= before.cpu_limit


@PROPERTY
@given(
    container_stats_docs(limit=True, unmet=False),
    policy_docs(),
    st.lists(st.floats(1e-4, 1.0), min_size=2, max_size=2),
)
def test_higher_throttle_ratio_never_lowers_limit(
    doc: dict[str, Any], policy_doc: dict[str, Any], ratios: list[float]
) -> None:
    # Without throttled seconds, a higher throttled ratio at the same usage is more demand.
    # (With throttled seconds fixed it need not be: their bound s / r on β falls as r
    # rises, the same stalled time over more periods. And from no throttling at all to
    # some it is not: see test_first_throttling_never_lowers_limit.)
    # Both ratios from 1e-4: below it the engine treats the container as unthrottled.
    # Both over the target: under it (r < τ) the limit that meets τ lies below the quota,
    # L + β·ln(r/τ) with ln(r/τ) < 0, and a higher r fits a wider tail (a larger β) to
    # the same usage, which lowers it (L = 511m, u = 233m, τ = 0.5: r = 0.125 → β = 231m,
    # 200m; r = 0.25 → β = 464m, 190m). Burst off, as in the throttled-seconds property.
    lower, higher = sorted(ratios)
    policy = build_policy({**policy_doc, "burst": {"enabled": False}})
    assume(lower > policy.throttle_target)
    before = recommendation(build_stats(with_cpu(doc, throttledPeriodRatio=lower)), policy)
    after = recommendation(build_stats(with_cpu(doc, throttledPeriodRatio=higher)), policy)
    assert after.cpu_request >= before.cpu_request
    if before.cpu_limit is not None:
        assert after.cpu_limit is not None
        assert after.cpu_limit >= before.cpu_limit


# --------------------------------------------------------------------------- no recommendation


@PROPERTY
@given(container_stats_docs(), policy_docs(), st.integers(0, 2016), st.integers(1, 2000))
def test_insufficient_samples(
    doc: dict[str, Any], policy_doc: dict[str, Any], samples: int, missing: int
) -> None:
    # One sample short or more, whatever the coverage.
    history = {"minSamples": samples + missing, "minCoverage": 0.0}
    policy_doc = {**policy_doc, "history": history}
    result: RecommendationResult = recommend(
        build_stats(with_cpu(doc, samples=samples)), build_policy(policy_doc)
    )
    assert isinstance(result, NoRecommendation)
    assert result.reason is NoRecommendationReason.INSUFFICIENT_DATA


@PROPERTY
@given(container_stats_docs(), policy_docs(), st.integers(1, 1007))
def test_insufficient_coverage(doc: dict[str, Any], policy_doc: dict[str, Any], n: int) -> None:
    # 1007 × 300 s = 302100 s < half of 604800 s; the default minCoverage is 50%.
    policy_doc = {**policy_doc, "history": {"minSamples": 1}}
    result = recommend(build_stats(with_cpu(doc, samples=n)), build_policy(policy_doc))
    assert isinstance(result, NoRecommendation)
    assert result.reason is NoRecommendationReason.INSUFFICIENT_DATA


# --------------------------------------------------------------------------- worked examples


def test_managed_workers_under_a_fractional_max_limit() -> None:
    # Production, workers managed, cpu.maxLimit 1500m. L = 1000m, r = 0.3, mean usage
    # 500m, p99 1000m. At the cap β = L: ln A = ln 0.3 + 1 = −0.204, so A = 0.8155 and
    # E[min(D, L)] = A·β·(1 − e^-1) = 515.5m ≥ 500m: β stays at 1000m, unmet r·β = 300m.
    # request = (1000 + 300) × 1.5 = 1950m; limit 2 × 1950 = 3900m → 4 cores for the
    # workers → capped at 1500m → down to 1 whole core (2 workers on 1.5 cores is the
    # oversubscription worker management exists to avoid); request = min(1950, 1000).
    doc = {
        "container": {"name": "app", "cpuLimit": "1", "webConcurrency": 2},
        "cpu": {
            "usage": {"p50": 500, "p95": 900, "p99": 1000, "max": 1000},
            "throttledPeriodRatio": 0.3,
            "samples": MIN_SAMPLES_FULL_WEEK,
            "windowSeconds": WEEK,
        },
    }
    policy = build_policy({"cpu": {"maxLimit": "1500m"}, "webConcurrency": {"enabled": True}})
    rec = recommendation(build_stats(doc), policy)
    assert rec.cpu_limit == 1000
    assert rec.cpu_request == 1000
    assert rec.web_concurrency == 1


def test_more_usage_saturated_periods_fit() -> None:
    # Throttled in r = 0.9 of periods at L = 1000m, no throttled seconds, production tier.
    # Fitting β to the mean usage would be ill-conditioned here:
    #   E[min(D, L)] = L − β·(r − 1 − ln r),  r − 1 − ln r = 0.9 − 1 + 0.10536 = 0.0053605
    #   u = 995m would give β = 5 / 0.0053605 = 932.7m, u = 999m β = 186.5m,
    # so 0.4% more usage would lower the request by 1000m. At r ≥ 0.9 the counters are
    # saturated and β takes its cap L = 1000m: unmet r·β = 900m, and
    #   u = 995m: request = (1000 + 900) × 1.5 = 2850m
    #   u = 999m: request = (1004 + 900) × 1.5 = 2856 → 2860m
    policy = build_policy({})

    def at(usage: dict[str, int]) -> Recommendation:
        doc = {
            "container": {"name": "app", "cpuLimit": "1"},
            "cpu": {
                "usage": usage,
                "throttledPeriodRatio": 0.9,
                "samples": MIN_SAMPLES_FULL_WEEK,
                "windowSeconds": WEEK,
            },
        }
        return recommendation(build_stats(doc), policy)

    before = at({"p50": 995, "p95": 1000, "p99": 1000, "max": 1000})
    after = at({"p50": 999, "p95": 1004, "p99": 1004, "max": 1004})
    assert (before.cpu_request, after.cpu_request) == (2850, 2860)


def test_first_throttling_never_lowers_limit() -> None:
    # Dev tier, τ = 0.05, L = 1000m, usage p50 (the mean) 500m, p95 600m; no seconds.
    #   r = 0: an exponential with the mean (β = 500m) would put P(D > 1000m) at
    #          e^-2 = 13.5%, yet no period was throttled there; so the model is fitted
    #          through the detection floor r = 1e-4 at L instead (A > 1):
    #          β = (L − u)/(r − 1 − ln r) = 500 / 8.2104 = 60.9m, ln A = −9.2103 + 16.42
    #          = 7.21; request = p95 = 600m, limit 1.5 × 600 = 900m,
    #          P(D > 900) = exp(7.21 − 14.78) ≈ 0.0005 ≤ 0.05: 900m stands.
    #   r = 0.01: the periods fit, A > 1: β = (L − u)/(r − 1 − ln r) = 500 / 3.615 = 138.3m,
    #          unmet 1.4m, request 601.4 → 610m, limit 1.5 × 610 = 915 → 920m; burst 14 ms
    #          (140m), P(D > 1060) = exp(2.625 − 1060/138.3) = 0.0065 ≤ 0.05: 920m stands.
    # (Before the floor fit, r = 0 gave 500 × ln 20 → 1500m: more than with throttling.)
    policy = build_policy({"tier": "dev"})

    def at(ratio: float) -> Recommendation:
        doc = {
            "container": {"name": "app", "cpuLimit": "1"},
            "cpu": {
                "usage": {"p50": 500, "p95": 600, "p99": 700, "max": 900},
                "throttledPeriodRatio": ratio,
                "samples": MIN_SAMPLES_FULL_WEEK,
                "windowSeconds": WEEK,
            },
        }
        return recommendation(build_stats(doc), policy)

    unthrottled, throttled = at(0.0), at(0.01)
    assert (unthrottled.cpu_limit, throttled.cpu_limit) == (900, 920)


@PROPERTY
@given(container_stats_docs(limit=False), policy_docs(), st.floats(1e-4, 1.0))
def test_throttled_without_a_limit_is_refused(
    doc: dict[str, Any], policy_doc: dict[str, Any], ratio: float
) -> None:
    # Built without the consistency repair: CFS throttles only under a quota.
    stats = build_stats(doc).model_copy(update={"cpu": None})
    stats = ContainerStats.model_validate(
        {
            **stats.model_dump(by_alias=True, exclude={"cpu"}),
            "cpu": {
                **build_stats(doc).cpu.model_dump(by_alias=True),
                "throttledPeriodRatio": ratio,
            },
        }
    )
    result = recommend(stats, build_policy(policy_doc))
    assert isinstance(result, NoRecommendation)
    assert result.reason is NoRecommendationReason.CONTRADICTORY_EVIDENCE


@PROPERTY
@given(container_stats_docs(), policy_docs())
def test_unthrottled_limit_never_below_max_usage(
    doc: dict[str, Any], policy_doc: dict[str, Any]
) -> None:
    # No throttling seen (or no limit at all): the window's maximum usage ran without a
    # quota in its way, so no recommended limit cuts it, unless cpu.maxLimit says so.
    stats, policy = build_stats(doc), build_policy(policy_doc)
    assume(stats.container.cpu_limit is None or stats.cpu.throttled_period_ratio < 1e-4)
    rec = recommendation(stats, policy)
    if rec.cpu_limit is not None and policy.cpu.max_limit is None:
        assert rec.cpu_limit >= stats.cpu.usage_cores.max


@PROPERTY
@given(container_stats_docs(), policy_docs())
def test_stepped_patch_stays_within_the_step_limits(
    doc: dict[str, Any], policy_doc: dict[str, Any]
) -> None:
    # The request of one patch moves at most × maxStepUp / × maxStepDown, and the CPU
    # limit is never below the stepped request.
    stats, policy = build_stats(doc), build_policy(policy_doc)
    assume(stats.container.cpu_request is not None)
    rec = recommendation(stats, policy)
    after = _stepped(stats.container, rec, policy)
    current = stats.container.cpu_request
    assert current is not None and after.cpu_request is not None
    assert math.ceil(current * policy.patch.max_step_down) <= after.cpu_request or (
        after.cpu_request == rec.cpu_request
    )
    assert after.cpu_request <= max(1, math.floor(current * policy.patch.max_step_up))
    if after.cpu_limit is not None:
        assert after.cpu_limit >= after.cpu_request
