"""Table-driven tests of the recommendation engine, one row per tier and per diagnosis.

Every expected number is worked by hand in the comments, from the formulas of
docs/recommendations.md; the code is not consulted for them.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from unthrottle.engine.demand import estimate_demand, survival
from unthrottle.engine.recommend import recommend
from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.model.recommendation import (
    Diagnosis,
    NoRecommendation,
    NoRecommendationReason,
    Recommendation,
)
from unthrottle.model.stats import ContainerStats
from unthrottle.sim.scenarios import all_scenarios
from unthrottle.sim.stats import scenario_stats

MI = 2**20
WEEK = 604_800
STEADY = {"p50": 0.2, "p95": 0.3, "p99": 0.35, "max": 0.45}


def stats(
    container: dict[str, Any],
    usage: dict[str, float],
    ratio: float,
    *,
    unmet: float | None = None,
    memory: dict[str, Any] | None = None,
    samples: int = 2016,
) -> ContainerStats:
    document: dict[str, Any] = {
        "container": {"name": "app", **container},
        "cpu": {
            "usageCores": usage,
            "throttledPeriodRatio": ratio,
            "throttledSecondsPerSecond": unmet,
            "samples": samples,
            "windowSeconds": WEEK,
        },
    }
    if memory is not None:
        document["memory"] = memory
    return ContainerStats.model_validate(document)


def policy(**spec: Any) -> ThrottlePolicySpec:
    return ThrottlePolicySpec.model_validate(spec)


def recommended(s: ContainerStats, p: ThrottlePolicySpec) -> Recommendation:
    result = recommend(s, p)
    assert isinstance(result, Recommendation), result
    return result


# --- tiers, on an unthrottled container (demand = usage) ------------------------------

TIER_ROWS = [
    # No throttling at the current 1000m limit. An exponential with the 200m mean would
    # throttle there (e^(−5) = 0.7% > 10⁻⁴), so the model is fitted through the detection
    # floor r = 10⁻⁴ at L = 1000m (section 2.3): A > 1, β = (L − u)/(ln(1/r) − (1 − r))
    # = 800 / 8.2104 = 97.44m, ln A = −9.2103 + 1000/97.44 = 1.0524.
    # production: request = p99 350m × 1.5 = 525 → 530m (10m steps, up); limit = 2 × 530;
    # P(D > 1060) = e^(1.0524 − 10.878) ≈ 5·10⁻⁵.
    ("production", STEADY, 530, 1060),
    # dev: request = p95 300m; limit 1.5 × 300 = 450m; P(D > 450) = e^(1.0524 − 4.618)
    # = 2.8% ≤ 5%, so 450m stands.
    ("dev", STEADY, 300, 450),
    # critical: request = p99.99 380m × 2 = 760m; limit = 2 × 760 = 1520m.
    ("critical", {**STEADY, "p9999": 0.38}, 760, 1520),
    # critical without p99.99 in the input: the maximum, 450m, stands in → 900m, 1800m.
    ("critical", STEADY, 900, 1800),
]


def test_no_limit_assumes_an_exponential_demand() -> None:
    # Without a limit nothing bounds the tail: an exponential with the 200m mean. dev:
    # request 300m, limit 450m, P(D > 450) = e^(−2.25) = 10.5% > 5%, so the limit rises
    # to 200 × ln(1/0.05) = 599.1 → 600m, where e^(−3) = 4.98%.
    s = stats({"cpuRequest": "500m"}, STEADY, 0.0)
    r = recommended(s, policy(tier="dev"))
    assert (r.cpu_request, r.cpu_limit) == (300, 600)
    assert r.projected_throttle_ratio == pytest.approx(math.exp(-3), rel=0.01)


@pytest.mark.parametrize(("tier", "usage", "cpu_request", "cpu_limit"), TIER_ROWS)
def test_tier_table_on_unthrottled_usage(
    tier: str, usage: dict[str, float], cpu_request: int, cpu_limit: int
) -> None:
    s = stats({"cpuRequest": "500m", "cpuLimit": "1"}, usage, 0.0)
    r = recommended(s, policy(tier=tier))
    assert (r.cpu_request, r.cpu_limit) == (cpu_request, cpu_limit)
    assert r.cpu_burst_us == 0  # nothing throttled, nothing to burst for
    assert r.projected_throttle_ratio <= 0.05
    assert r.diagnosis == (Diagnosis.HEALTHY,)


def test_limit_policies() -> None:
    s = stats({"cpuRequest": "500m", "cpuLimit": "1"}, STEADY, 0.0)
    guaranteed = recommended(s, policy(cpu={"limitPolicy": "Guaranteed"}))
    # request 530m; limit = request = 530m; with the floor fit of the tier rows,
    # P(D > 530) = e^(1.0524 − 5.439) = 1.2% ≤ 5%, so 530m stands.
    assert (guaranteed.cpu_request, guaranteed.cpu_limit) == (530, 530)
    unset = recommended(s, policy(cpu={"limitPolicy": "Unset"}))
    assert (unset.cpu_request, unset.cpu_limit) == (530, None)
    assert unset.projected_throttle_ratio == 0.0  # no quota, no throttling


# --- the censoring: quota-bound and micro-bursting -------------------------------------


def test_quota_bound_gets_a_higher_limit_meeting_the_target() -> None:
    # Usage pinned at a 300m limit, 60% of periods throttled, no throttled seconds (the
    # default kube-prometheus-stack shape). The shifted-exponential fit:
    #   β = (L − u) / (ln(1/r) − (1 − r)) = (300 − 290) / (0.5108 − 0.4) = 90.2m
    #   ln A = ln 0.6 + 300/90.2 = 2.814
    # unmet = r·β = 54.1m, so demand p99 = 300 + 54.1 = 354.1m;
    # request = 354.1 × 1.5 = 531.2 → 540m; limit = 1080m;
    # projection e^(2.814 − 1080/90.2) ≈ 1e-4, far under 0.05.
    s = stats(
        {"cpuRequest": "300m", "cpuLimit": "300m"},
        {"p50": 0.29, "p95": 0.3, "p99": 0.3, "max": 0.3},
        0.6,
    )
    estimate = estimate_demand(s.cpu, 300)
    assert estimate.model.scale == pytest.approx(90.2, abs=0.1)
    assert estimate.model.log_level == pytest.approx(2.814, abs=0.005)
    assert survival(estimate.model, 300) == pytest.approx(0.6)
    r = recommended(s, policy())
    assert r.cpu_limit is not None and r.cpu_limit > 300
    assert (r.cpu_request, r.cpu_limit) == (540, 1080)
    assert r.projected_throttle_ratio <= 0.05
    # burst = β × 100 ms = 9023 µs → 10 000 µs (whole ms)
    assert r.cpu_burst_us == 10_000
    assert r.diagnosis == (Diagnosis.QUOTA_BOUND,)
    assert r.evidence.signals == ("usage", "throttled-periods")


def test_guaranteed_quota_bound_meets_target_at_request() -> None:
    # As above, limit = request = 540m: e^(2.814 − 540/90.2) = e^(−3.173) = 0.042 ≤ 0.05
    # before the burst is even counted, so 540m stands.
    s = stats(
        {"cpuRequest": "300m", "cpuLimit": "300m"},
        {"p50": 0.29, "p95": 0.3, "p99": 0.3, "max": 0.3},
        0.6,
    )
    r = recommended(s, policy(cpu={"limitPolicy": "Guaranteed"}))
    assert (r.cpu_request, r.cpu_limit) == (540, 540)
    assert r.projected_throttle_ratio <= 0.05


def test_throttled_seconds_bound_the_excess() -> None:
    # 30% throttled at 500m, mean 200m: from periods alone β is capped at L = 500m (as in
    # the micro-bursting row below). Throttled seconds s = 0.06 bound the excess of a
    # throttled period: β ≤ s / r = 60 / 0.3 = 200m. So β = 200m,
    # ln A = ln 0.3 + 500/200 = 1.296; unmet = 0.3 × 200 = 60m;
    # demand p99 = 400 + 60 = 460 → request 690m, limit 1380m; burst 200m × 100 ms =
    # 20 000 µs; projection ≤ e^(1.296 − 1380/200) = 0.37%.
    usage = {"p50": 0.2, "p95": 0.3, "p99": 0.4, "max": 0.5}
    s = stats({"cpuRequest": "250m", "cpuLimit": "500m"}, usage, 0.3, unmet=0.06)
    r = recommended(s, policy())
    assert r.evidence.demand_model is not None
    assert r.evidence.demand_model.scale == pytest.approx(200.0)
    assert (r.cpu_request, r.cpu_limit, r.cpu_burst_us) == (690, 1380, 20_000)
    assert r.projected_throttle_ratio <= math.exp(1.296 - 1380 / 200) + 1e-4
    assert "throttled-seconds" in r.evidence.signals


def test_throttled_seconds_above_the_fit_change_nothing() -> None:
    # The example: 500m limit, r = 0.6, s = 0.35 cores. Usage (100m) is below
    # r·L = 300m, so it is taken as 300m, at which the fit's β runs to its cap L = 500m;
    # the bound s / r = 583.3m is looser and changes nothing. unmet = 0.6 × 500 = 300m;
    # demand p99 = 300 + 300 = 600m → request 900m, limit 1800m; burst 50 000 µs.
    s = stats(
        {"cpuRequest": "250m", "cpuLimit": "500m"},
        {"p50": 0.1, "p95": 0.2, "p99": 0.3, "p999": 0.35, "p9999": 0.4, "max": 0.45},
        0.6,
        unmet=0.35,
    )
    r = recommended(s, policy())
    assert r.evidence.demand_model is not None
    assert r.evidence.demand_model.scale == pytest.approx(500.0)
    assert (r.cpu_request, r.cpu_limit, r.cpu_burst_us) == (900, 1800, 50_000)
    assert r.projected_throttle_ratio <= 0.05


def test_micro_bursting_gets_burst_and_limit() -> None:
    # 30% throttled at 500m while the mean is 200m: the fit's β wants to exceed the
    # quota and is capped at L = 500m. unmet = 0.3 × 500 = 150m.
    # demand p99 = 400 + 150 = 550 → request 825 → 830m; limit 1660m.
    # burst = min(500, 1660) × 100 ms = 50 000 µs.
    s = stats(
        {"cpuRequest": "250m", "cpuLimit": "500m"},
        {"p50": 0.2, "p95": 0.3, "p99": 0.4, "max": 0.5},
        0.3,
    )
    r = recommended(s, policy())
    assert (r.cpu_request, r.cpu_limit, r.cpu_burst_us) == (830, 1660, 50_000)
    assert r.projected_throttle_ratio <= 0.05
    assert r.diagnosis == (Diagnosis.MICRO_BURSTING,)


def test_micro_bursting_projection_counts_burst_only_when_applied() -> None:
    # As above: ln A = ln 0.3 + 500/500 = −0.204, β = 500m, limit 1660m, burst 50 000 µs.
    # No agent report (burst.agent Detect): the projection is the quota alone,
    # P(D > 1660) = e^(−0.204 − 3.32) = 2.95%. With the agent's report, or under
    # Installed, the full 500m burst counts: P(D > 2160) = e^(−0.204 − 4.32) = 1.08%.
    usage = {"p50": 0.2, "p95": 0.3, "p99": 0.4, "max": 0.5}
    bare = stats({"cpuRequest": "250m", "cpuLimit": "500m"}, usage, 0.3)
    reported = stats(
        {"cpuRequest": "250m", "cpuLimit": "500m", "cpuBurstAppliedUs": 50_000}, usage, 0.3
    )
    advisory = recommended(bare, policy())
    applied = recommended(reported, policy())
    installed = recommended(bare, policy(burst={"agent": "Installed"}))
    assert advisory.projected_throttle_ratio == pytest.approx(math.exp(-0.204 - 3.32), rel=0.01)
    for r in (applied, installed):
        assert r.projected_throttle_ratio == pytest.approx(math.exp(-0.204 - 4.32), rel=0.01)
    for r in (advisory, applied, installed):
        assert (r.cpu_limit, r.cpu_burst_us) == (1660, 50_000)
    assert "advisory: no node agent applies it" in advisory.explanation
    assert "with 50ms burst" in applied.explanation


def test_a_throttled_limit_rises_by_a_step_worth_a_rollout() -> None:
    # 6% throttled at 1 core (τ 5%): the model is content at 1070m, +7%. Measured just
    # above the target, +10m steps would creep; the limit rises by patch.minChange (10%).
    s = stats(
        {"cpuRequest": "1", "cpuLimit": "1"}, {"p50": 0.3, "p95": 0.4, "p99": 0.5, "max": 1.0}, 0.06
    )
    r = recommended(s, policy(tier="dev"))
    assert r.cpu_limit == 1100
    assert "limit raised to 1070m to meet the throttle target" in r.explanation
    assert "limit raised 10% above the current 1 core, throttled there" in r.explanation
    wide = recommended(s, policy(tier="dev", patch={"minChange": 0.25}))
    assert wide.cpu_limit == 1250


def test_without_burst_the_limit_alone_meets_the_target() -> None:
    s = stats(
        {"cpuRequest": "250m", "cpuLimit": "500m"},
        {"p50": 0.2, "p95": 0.3, "p99": 0.4, "max": 0.5},
        0.3,
    )
    r = recommended(s, policy(burst={"enabled": False}))
    # ln A = ln 0.3 + 500/500 = −0.204; limit for τ = 0.05 is β(ln A − ln τ)
    #      = 500 × (−0.204 + 2.996) = 1395.9 → 1660m (the tier's limit) already meets it.
    assert r.cpu_burst_us == 0
    assert r.cpu_limit == 1660
    assert r.projected_throttle_ratio == pytest.approx(math.exp(-0.204 - 1660 / 500), rel=0.01)


# --- workers ---------------------------------------------------------------------------


def test_gil_threads_get_workers_equal_to_cores() -> None:
    # Seed 001: 1 worker × 8 threads on 1 core, 75% throttled at 30% usage. Usage is at
    # least r·L = 750m (every throttled period used its quota), β capped at L = 1000m,
    # unmet = 750m: demand p99 = 500 + 750 = 1250 → request 1875 → 1880m, limit 3760m,
    # rounded up to 4 cores for whole workers: WEB_CONCURRENCY 4. Memory grows with the
    # workers: 200 MB × 4/1 = 800 MB × 1.4 = 1 120 000 000 B → 1069 MiB.
    s = stats(
        {"cpuRequest": "1", "cpuLimit": "1", "webConcurrency": 1, "threads": 8},
        {"p50": 0.3, "p95": 0.45, "p99": 0.5, "max": 0.6},
        0.75,
        memory={"rssBytes": {"p99": 180_000_000, "max": 200_000_000}},
    )
    r = recommended(s, policy(webConcurrency={"enabled": True}))
    assert (r.cpu_request, r.cpu_limit, r.web_concurrency) == (1880, 4000, 4)
    assert r.memory_limit == 1069 * MI
    assert Diagnosis.WORKER_OVERSUBSCRIPTION in r.diagnosis
    assert "RSS scaled by 4/1" in r.explanation


def test_workers_above_cores_but_unthrottled_are_kept() -> None:
    # WEB_CONCURRENCY=4 at a 500m limit, never throttled: no sign of CPU oversubscription,
    # so the literal count stays (a sync, I/O-bound service is not collapsed to fewer
    # workers). The limit is sized as without worker management: 2 × 530m = 1060m.
    s = stats(
        {"cpuRequest": "250m", "cpuLimit": "500m", "webConcurrency": 4},
        STEADY,
        0.0,
        memory={"rssBytes": {"p99": 380_000_000, "max": 400_000_000}},
    )
    r = recommended(s, policy(webConcurrency={"enabled": True}))
    assert (r.cpu_limit, r.web_concurrency) == (1060, None)


def test_oversubscribed_workers_come_down_to_cores() -> None:
    # WEB_CONCURRENCY=4 at a 500m limit, throttled in 60% of periods: oversubscribed, so
    # workers follow the (whole-core) limit through the downward API, fewer than 4.
    s = stats(
        {"cpuRequest": "250m", "cpuLimit": "500m", "webConcurrency": 4},
        STEADY,
        0.6,
        memory={"rssBytes": {"p99": 380_000_000, "max": 400_000_000}},
    )
    r = recommended(s, policy(webConcurrency={"enabled": True}))
    assert r.cpu_limit is not None and r.cpu_limit % 1000 == 0
    assert r.web_concurrency == r.cpu_limit // 1000 < 4
    assert Diagnosis.WORKER_OVERSUBSCRIPTION in r.diagnosis


def test_a_healthy_service_reading_limits_cpu_keeps_its_workers() -> None:
    # 2 workers from limits.cpu at a 2-core limit, unthrottled and using little: the limit
    # the tier wants would give 1 worker; it stays at 2 cores so both workers stay.
    s = stats(
        {"cpuRequest": "500m", "cpuLimit": "2", "webConcurrencyFrom": "limits.cpu"}, STEADY, 0.0
    )
    r = recommended(s, policy(webConcurrency={"enabled": True}))
    assert (r.cpu_limit, r.web_concurrency) == (2000, 2)


def test_unset_limit_is_kept_when_workers_read_limits_cpu() -> None:
    # Removing the limit would hand the downward API the node's cores (docs/recommendations.md).
    s = stats(
        {"cpuRequest": "500m", "cpuLimit": "1", "webConcurrencyFrom": "limits.cpu"},
        STEADY,
        0.0,
    )
    r = recommended(s, policy(cpu={"limitPolicy": "Unset"}))
    assert r.cpu_limit == 1060  # the Ratio limit of the production tier
    assert r.web_concurrency == 2  # ceil(1060m) = 2 workers via the downward API
    assert "limits.cpu" in r.explanation


def test_unset_with_managed_workers_follows_requests() -> None:
    s = stats({"cpuRequest": "500m", "cpuLimit": "1", "webConcurrency": 3}, STEADY, 0.0)
    r = recommended(s, policy(cpu={"limitPolicy": "Unset"}, webConcurrency={"enabled": True}))
    assert r.cpu_limit is None
    assert r.web_concurrency is None  # 3 workers, unthrottled: the literal count stays


# --- memory and the remaining diagnoses -----------------------------------------------


def test_memory_is_rss_plus_headroom() -> None:
    # 320 000 000 B × 1.4 = 448 000 000 B = 427.25 MiB → 428 MiB; request = limit.
    s = stats({}, STEADY, 0.0, memory={"rssBytes": {"p99": 300_000_000, "max": 320_000_000}})
    r = recommended(s, policy())
    assert r.memory_limit == r.memory_request == 428 * MI


def test_oom_killed_sizes_from_the_limit() -> None:
    # RSS was cut off at the 256Mi limit: base = 268 435 456 B × 1.4 = 375 809 638.4 →
    # 358.4 MiB → 359 MiB.
    s = stats(
        {"memoryLimit": "256Mi"},
        STEADY,
        0.0,
        memory={"rssBytes": {"p99": 250_000_000, "max": 260_000_000}, "oomKills": 3},
    )
    r = recommended(s, policy())
    assert r.memory_limit == 359 * MI
    assert Diagnosis.OOM_KILLED in r.diagnosis


def test_memory_growth_is_diagnosed() -> None:
    # 100 B/s × 7 days (604 800 s) = 60.5 MB ≥ 25% of the 200 MB maximum; 80 B/s gives
    # 48.4 MB, under the 50 MB that 25% is.
    s = stats(
        {},
        STEADY,
        0.0,
        memory={"rssBytes": {"p99": 190e6, "max": 200e6}, "rssSlopeBytesPerSecond": 100.0},
    )
    assert Diagnosis.MEMORY_GROWTH in recommended(s, policy()).diagnosis
    slow = stats(
        {},
        STEADY,
        0.0,
        memory={"rssBytes": {"p99": 190e6, "max": 200e6}, "rssSlopeBytesPerSecond": 80.0},
    )
    assert Diagnosis.MEMORY_GROWTH not in recommended(slow, policy()).diagnosis
    flat = stats({}, STEADY, 0.0, memory={"rssBytes": {"p99": 190e6, "max": 200e6}})
    assert Diagnosis.MEMORY_GROWTH not in recommended(flat, policy()).diagnosis


def test_over_provisioned_shrinks() -> None:
    # p99 60m → request 90m, limit 180m (e^(−180/40) = 0.011 with the 40m mean) against a
    # 2-core request: 90 < 50% of 2000.
    s = stats(
        {"cpuRequest": "2", "cpuLimit": "4"},
        {"p50": 0.04, "p95": 0.05, "p99": 0.06, "max": 0.08},
        0.0,
    )
    r = recommended(s, policy())
    assert (r.cpu_request, r.cpu_limit) == (90, 180)
    assert r.diagnosis == (Diagnosis.OVER_PROVISIONED,)


def test_gil_alert_rule_needs_unknown_concurrency_and_unpinned_usage() -> None:
    # Seed 001's alert: throttled > 0.3 while usage < 0.5 core.
    bursty = {"p50": 0.3, "p95": 0.5, "p99": 0.6, "max": 0.9}
    unknown = stats({"cpuLimit": "1"}, bursty, 0.4)
    assert Diagnosis.WORKER_OVERSUBSCRIPTION in recommended(unknown, policy()).diagnosis
    single = stats({"cpuLimit": "1", "webConcurrency": 1, "threads": 1}, bursty, 0.4)
    assert Diagnosis.WORKER_OVERSUBSCRIPTION not in recommended(single, policy()).diagnosis


def test_bounds_are_applied() -> None:
    s = stats({"cpuRequest": "500m", "cpuLimit": "1"}, STEADY, 0.0)
    r = recommended(s, policy(cpu={"minRequest": "600m", "maxLimit": "900m"}))
    assert r.cpu_request == 600
    assert r.cpu_limit == 900
    assert "maxLimit" in r.explanation


# --- no recommendation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "phrase"),
    [(5, "5 samples"), (100, "cover 5%")],  # 100 × 300 s / 604 800 s = 4.96%
)
def test_insufficient_data_is_a_value_with_a_reason(samples: int, phrase: str) -> None:
    s = stats({"cpuLimit": "1"}, STEADY, 0.0, samples=samples)
    result = recommend(s, policy())
    assert isinstance(result, NoRecommendation)
    assert result.reason is NoRecommendationReason.INSUFFICIENT_DATA
    assert phrase in result.message
    assert result.evidence is not None and result.evidence.samples == samples


def test_active_period_ratio_scales_usage_to_active_periods() -> None:
    # The kernel counts only periods with runnable work. 100m mean usage over the window
    # while active a quarter of the time is 400m per active period. With r = 0.3 at 500m
    # the shifted fit (A > 1) gives β = (500 − 400) / (ln(1/0.3) − 0.7)
    #   = 100 / (1.2040 − 0.7) = 198.4m, ln A = ln 0.3 + 500/198.4 = 1.316;
    # the unmet demand per period of the window is f·r·β = 0.25 × 0.3 × 198.4 = 14.9m.
    # Without the fraction, 100m is below r·L = 150m and β would hit its cap of 500m.
    usage = {"p50": 0.1, "p95": 0.3, "p99": 0.4, "max": 0.5}
    document = {
        "container": {"name": "app", "cpuLimit": "500m"},
        "cpu": {
            "usageCores": usage,
            "throttledPeriodRatio": 0.3,
            "activePeriodRatio": 0.25,
            "samples": 2016,
            "windowSeconds": WEEK,
        },
    }
    active = estimate_demand(ContainerStats.model_validate(document).cpu, 500)
    assert active.model.scale == pytest.approx(198.4, abs=0.1)
    assert active.model.log_level == pytest.approx(1.316, abs=0.002)
    assert active.unmet_mean == pytest.approx(14.9, abs=0.05)
    assert survival(active.model, 500) == pytest.approx(0.3)
    del document["cpu"]["activePeriodRatio"]  # type: ignore[attr-defined]
    assumed = estimate_demand(ContainerStats.model_validate(document).cpu, 500)
    assert assumed.model.scale == pytest.approx(500)


# --- settling: the configuration applied last is judged on its own samples --------------

EARLIER = {
    "container": {"name": "app", "cpuRequest": "300m", "cpuLimit": "300m"},
    "cpu": {
        "usageCores": {"p50": 0.29, "p95": 0.3, "p99": 0.3, "max": 0.3},
        "throttledPeriodRatio": 0.6,
        "samples": 2000,
        "windowSeconds": 86_400,
    },
}


def settling_stats(samples: int, history: bool) -> ContainerStats:
    # The current configuration 600m/1200m, 150 s steps over a day: minCoverage 25% of
    # 86 400 s needs 0.25 × 86 400 / 150 = 144 samples (more than minSamples 10).
    document: dict[str, Any] = {
        "container": {"name": "app", "cpuRequest": "600m", "cpuLimit": "1200m"},
        "cpu": {
            "usageCores": {"p50": 0.3, "p95": 0.35, "p99": 0.4, "max": 0.5},
            "throttledPeriodRatio": 0.0,
            "samples": samples,
            "windowSeconds": 86_400,
            "stepSeconds": 150,
        },
        "history": [EARLIER] if history else [],
    }
    return ContainerStats.model_validate(document)


SETTLING_POLICY = {"history": {"minSamples": 10, "minCoverage": 0.25}}


def test_settling_after_a_change_says_how_long() -> None:
    # 12 of 144 samples: (144 − 12) × 150 s = 19 800 s = 5h30m.
    result = recommend(settling_stats(12, history=True), policy(**SETTLING_POLICY))
    assert isinstance(result, NoRecommendation)
    assert result.reason is NoRecommendationReason.SETTLING
    assert result.message == (
        "the configuration applied last (cpu 600m/1200m) has 12 of 144 samples of its own; "
        "about 5h30m more"
    )


def test_too_little_history_without_a_change_is_insufficient_data() -> None:
    result = recommend(settling_stats(12, history=False), policy(**SETTLING_POLICY))
    assert isinstance(result, NoRecommendation)
    assert result.reason is NoRecommendationReason.INSUFFICIENT_DATA


def test_settled_configuration_is_recommended() -> None:
    assert isinstance(
        recommend(settling_stats(144, history=True), policy(**SETTLING_POLICY)), Recommendation
    )


# --- contradictory evidence is refused before any fitting -------------------------------

CONTRADICTIONS = [
    # 97.6% throttled at 2 cores implies ≥ 0.976 × 2000 = 1952m used (f unknown: a quarter,
    # 488m, is the tolerance); 270m is far below.
    ({"cpuLimit": "2"}, {"p50": 0.27, "p95": 0.5, "p99": 0.6, "max": 0.8}, 0.976, None, "5.4"),
    # f known: 0.5 × 0.8 × 0.5 × 1000 = 200m tolerance; 150m is below it.
    ({"cpuLimit": "1"}, {"p50": 0.15, "p95": 0.5, "p99": 0.6, "max": 0.8}, 0.8, 0.5, "400m"),
    ({}, STEADY, 0.2, None, "without a CPU limit"),
    (
        {"cpuLimit": "300m"},
        {"p50": 0.35, "p95": 0.35, "p99": 0.35, "max": 0.4},
        0.0,
        None,
        "mean usage 350m is above",
    ),
    # p99 380m > 1.25 × 300m = 375m
    (
        {"cpuLimit": "300m"},
        {"p50": 0.2, "p95": 0.3, "p99": 0.38, "max": 0.4},
        0.0,
        None,
        "usage p99 380m",
    ),
    ({"cpuRequest": "2", "cpuLimit": "1"}, STEADY, 0.0, None, "CPU request 2 cores"),
    ({"memoryRequest": "1Gi", "memoryLimit": "512Mi"}, STEADY, 0.0, None, "memory request"),
]


@pytest.mark.parametrize(("container", "usage", "ratio", "active", "phrase"), CONTRADICTIONS)
def test_contradictory_evidence_is_refused(
    container: dict[str, Any],
    usage: dict[str, float],
    ratio: float,
    active: float | None,
    phrase: str,
) -> None:
    s = stats(container, usage, ratio)
    if active is not None:
        s = s.model_copy(update={"cpu": s.cpu.model_copy(update={"active_period_ratio": active})})
    result = recommend(s, policy())
    assert isinstance(result, NoRecommendation)
    assert result.reason is NoRecommendationReason.CONTRADICTORY_EVIDENCE
    assert phrase in result.message


def test_seed_scenarios_are_consistent() -> None:
    # Ten simulated minutes of each seed scenario, both data shapes: none is refused.
    for scenario, full in itertools.product(all_scenarios(), (False, True)):
        result = recommend(scenario_stats(scenario, 600, full_shape=full), policy())
        assert not (
            isinstance(result, NoRecommendation)
            and result.reason is NoRecommendationReason.CONTRADICTORY_EVIDENCE
        ), (scenario.name, result.message)


def test_first_limit_never_below_the_maximum_usage() -> None:
    # No limit, usage p95 5m, 800m at start-up: dev asks 1.5 × 10m (minRequest) for the
    # limit, which would throttle every start; the limit is kept at the maximum, 800m.
    s = stats({"cpuRequest": "500m"}, {"p50": 0.003, "p95": 0.005, "p99": 0.01, "max": 0.8}, 0.0)
    r = recommended(s, policy(tier="dev"))
    assert (r.cpu_request, r.cpu_limit) == (10, 800)
