"""Unit tests of the CFS simulator, the workloads, the scenarios and the OpenMetrics writer.

The worked numbers come from seed 002 ("Throttling Explained", examples 1 to 4) and seed
001 (gunicorn 1 worker x 8 threads on a 1-core limit). Each test states the arithmetic.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from itertools import islice

import pytest

from unthrottle.model.workload import WorkloadKind
from unthrottle.sim.cfs import (
    CfsGroup,
    JobResult,
    StepStats,
    run_job,
    simulate,
    simulate_steps,
)
from unthrottle.sim.openmetrics import (
    iter_scenario_series,
    pod_identities,
    render_openmetrics,
    replicaset_name,
)
from unthrottle.sim.scenarios import Scenario, all_scenarios, fleet, scenario
from unthrottle.sim.workload import bursts, demand_iter, poisson_requests, steady, threads

MS = 1000  # µs per ms
T0 = 1_700_000_000_000  # a window start, epoch ms


def _take(source: Iterator[int], n: int) -> list[int]:
    return list(islice(source, n))


# --------------------------------------------------------------------------------------
# run_job: the seed's worked examples, exactly.


def test_seed_example_1_single_thread_at_0_4_cpu() -> None:
    # 200 ms of CPU, quota 40 ms per 100 ms: 40 ms run + 60 ms throttled in periods 1-4
    # (4 x 60 = 240 ms), then the last 40 ms in period 5 with the quota just used up:
    # done at 400 + 40 = 440 ms; the seed's cpu.stat: 5 periods, 4 throttled, 240_000 µs.
    assert run_job([200 * MS], 40 * MS) == JobResult(
        completion_us=440 * MS,
        periods=5,
        throttled_periods=4,
        throttled_time_us=240 * MS,
        usage_us=200 * MS,
    )


def test_seed_example_3_2_2_ten_threads_at_2_cpus() -> None:
    # 10 threads x 50 ms on 10 CPUs, quota 200 ms: 10 x 20 ms spend the quota at 20 ms of
    # wall time, then 80 ms throttled, twice; 10 ms each in period 3: done at 210 ms.
    # Throttled time is per runqueue: 2 periods x 10 runqueues x 80 ms = 1,600 ms.
    result = run_job([50 * MS] * 10, 200 * MS, cpus=16)
    assert result.completion_us == 210 * MS
    assert result.periods == 3
    assert result.throttled_periods == 2
    assert result.throttled_time_us == 1_600 * MS
    assert result.usage_us == 500 * MS


def test_seed_example_4_two_threads_at_1_9_cpus() -> None:
    # Two threads on two CPUs, quota 190 ms: both run 95 ms, the quota is gone, both
    # runqueues wait 5 ms: 2 x 5 = 10 ms per period, 100 ms over the first 10 periods (the
    # seed's cpu.stat). 2 x 960 ms of work: 10 x 95 ms, then 10 ms each in period 11.
    result = run_job([960 * MS, 960 * MS], 190 * MS)
    assert result == JobResult(1_010 * MS, 11, 10, 100 * MS, 1_920 * MS)


@pytest.mark.parametrize(
    ("quota_ms", "work_ms", "throttled_ms"),
    [
        # Example 2.1: 0.9 CPU, 10 periods x (100 - 90) = 100 ms.
        (90, 910, 100),
        # Example 2.2: 0.1 CPU, 10 periods x (100 - 10) = 900 ms.
        (10, 110, 900),
    ],
)
def test_seed_example_2_continuous_single_thread(
    quota_ms: int, work_ms: int, throttled_ms: int
) -> None:
    # Work for 10 full periods plus 10 ms in an 11th that is not throttled.
    result = run_job([work_ms * MS], quota_ms * MS)
    assert result.periods == 11
    assert result.throttled_periods == 10
    assert result.throttled_time_us == throttled_ms * MS


def test_run_job_without_limit_and_with_few_cpus() -> None:
    # No quota: 200 ms of work in 200 ms; the kernel counts no periods without a quota.
    assert run_job([200 * MS], None) == JobResult(200 * MS, 0, 0, 0, 200 * MS)
    # 10 x 50 ms on 2 CPUs: at most 200 ms of CPU per 100 ms, the quota is never short of
    # what the CPUs can run: 500 ms / 2 CPUs = 250 ms, never throttled.
    result = run_job([50 * MS] * 10, 200 * MS, cpus=2)
    assert result.completion_us == 250 * MS
    assert result.throttled_periods == 0


# --------------------------------------------------------------------------------------
# simulate: the per-period model.


def test_simulate_reproduces_seed_examples_per_period() -> None:
    # Example 1 as a backlog: 200 ms arrive in period 1, one thread (100 ms per period).
    stats = simulate([200 * MS, 0, 0, 0, 0], 40 * MS, max_parallel_us=100 * MS)
    assert (stats.nr_periods, stats.nr_throttled, stats.throttled_time_us) == (5, 4, 240 * MS)
    assert stats.usage_us == 200 * MS
    # Example 3.2.2: 500 ms on 10 threads (1,000 ms per period) at 200 ms of quota:
    # throttled time = C - R = 1,000 - 200 = 800 ms per throttled period, twice.
    stats = simulate([500 * MS, 0, 0], 200 * MS, max_parallel_us=1_000 * MS)
    assert (stats.nr_periods, stats.nr_throttled, stats.throttled_time_us) == (3, 2, 1_600 * MS)


def test_burst_credit_absorbs_a_burst() -> None:
    # Quota 50 ms, burst 50 ms, 4 threads. Periods 1-2 idle bank 50 ms of credit (capped at
    # B); period 3 has 100 ms for a 120 ms burst: throttled once, 400 - 100 = 300 ms; the
    # 20 ms left run in period 4. Idle periods before any activity are not counted.
    demand = [0, 0, 120 * MS, 0]
    with_burst = simulate(demand, 50 * MS, burst_us=50 * MS, max_parallel_us=400 * MS)
    assert (with_burst.nr_periods, with_burst.nr_throttled) == (2, 1)
    assert with_burst.throttled_time_us == 300 * MS
    # Without burst: 50 ms in period 3 (throttled, 350 ms), 50 of the 70 ms left in period 4
    # (throttled again, 350 ms).
    without = simulate(demand, 50 * MS, max_parallel_us=400 * MS)
    assert (without.nr_periods, without.nr_throttled) == (2, 2)
    assert without.throttled_time_us == 700 * MS


def test_burst_credit_is_capped_at_the_burst() -> None:
    # Quota 50 ms, burst 20 ms: however long the idle spell, the burst period has at most
    # 50 + 20 = 70 ms. Of the 120 ms, 70 run in period 4 (throttled) and the other 50 in
    # period 5, which has exactly 50 ms of quota and so is not throttled.
    stats = simulate(
        [0, 0, 0, 120 * MS, 0],
        50 * MS,
        burst_us=20 * MS,
        max_parallel_us=400 * MS,
        keep_periods=True,
    )
    assert list(stats.usage_per_period_us) == [0, 0, 0, 70 * MS, 50 * MS]
    assert list(stats.throttled) == [0, 0, 0, 1, 0]
    # The same cap after a busy period: 10 ms used leaves 40 ms, of which 20 carry over.
    stats = simulate(
        [10 * MS, 120 * MS, 0],
        50 * MS,
        burst_us=20 * MS,
        max_parallel_us=400 * MS,
        keep_periods=True,
    )
    assert list(stats.usage_per_period_us) == [10 * MS, 70 * MS, 50 * MS]


def test_too_few_threads_is_backlog_not_throttling() -> None:
    # One thread can use 100 ms per period; a 2-core quota (200 ms) never runs out, so
    # 300 ms of work is a backlog drained over 3 periods, never a throttle.
    stats = simulate([300 * MS, 0, 0], 200 * MS, max_parallel_us=100 * MS, keep_periods=True)
    assert list(stats.usage_per_period_us) == [100 * MS] * 3
    assert stats.nr_throttled == 0
    assert stats.throttled_time_us == 0


def test_idle_periods_count_once_after_activity() -> None:
    # The period timer fires once more after activity, then stops: periods 1 (active),
    # 2 (trailing), 4 (active), 5 (trailing) count; 3 does not.
    stats = simulate([10 * MS, 0, 0, 10 * MS, 0], 50 * MS, keep_periods=True)
    assert stats.nr_periods == 4
    assert list(stats.counted) == [1, 1, 0, 1, 1]


def test_no_limit_is_never_throttled_and_counts_no_periods() -> None:
    stats = simulate([300 * MS] * 100, None, max_parallel_us=200 * MS)
    assert stats.nr_throttled == 0
    assert stats.nr_periods == 0
    assert stats.throttled_time_us == 0
    # Two threads run 200 ms per period; the rest is backlog, not throttling.
    assert stats.usage_us == 100 * 200 * MS


def test_kept_periods_match_the_fast_path() -> None:
    demand = _take(demand_iter(bursts(0.05, 1.5, 20, 1, threads=4), seed=7), 2_000)
    fast = simulate(demand, 50 * MS, max_parallel_us=400 * MS)
    slow = simulate(demand, 50 * MS, max_parallel_us=400 * MS, keep_periods=True)
    assert (fast.nr_periods, fast.nr_throttled, fast.throttled_time_us, fast.usage_us) == (
        slow.nr_periods,
        slow.nr_throttled,
        slow.throttled_time_us,
        slow.usage_us,
    )
    assert sum(slow.throttled) == slow.nr_throttled > 0
    assert sum(slow.usage_per_period_us) == slow.usage_us


def test_simulate_steps_exact_equals_simulate() -> None:
    model = poisson_requests(12, 25 * MS, parallelism=4)
    group = CfsGroup(quota_us=50 * MS, max_parallel_us=400 * MS)
    steps = list(simulate_steps(demand_iter(model, seed=3), group, 300, 4))
    demand = _take(demand_iter(model, seed=3), 1_200)
    whole = simulate(demand, 50 * MS, max_parallel_us=400 * MS)
    assert sum(s.usage_us for s in steps) == whole.usage_us
    assert sum(s.nr_throttled for s in steps) == whole.nr_throttled
    assert sum(s.throttled_time_us for s in steps) == whole.throttled_time_us


def test_sampled_steps_scale_to_the_step() -> None:
    # A steady 0.5 cores at 300m: every period counted and throttled. Sampling 30 of 300
    # periods per step scales back to 300 periods, 300 throttled, 30 ms x 300 = 9 s used.
    group = CfsGroup(quota_us=30 * MS, max_parallel_us=200 * MS)
    steps = list(simulate_steps(demand_iter(steady(0.5), seed=1), group, 300, 3, sample_periods=30))
    assert steps == [StepStats(9_000_000, 300, 300, 300 * 170 * MS)] * 3


def test_gil_threads_burn_quota_on_every_runqueue() -> None:
    # 8 spinning threads at 0.16 cores each ask 128 ms per period against 100 ms of quota:
    # throttled every period, 8 x 100 - 100 = 700 ms of runqueue time each.
    model = threads(8, 0.16, jitter=0.0)
    demand = _take(demand_iter(model, seed=1), 10)
    assert demand == [128 * MS] * 10
    stats = simulate(demand, 100 * MS, max_parallel_us=800 * MS)
    assert stats.nr_throttled == 10
    assert stats.throttled_time_us == 10 * 700 * MS


# --------------------------------------------------------------------------------------
# Scenarios: measured over 10 minutes (6,000 periods), exact per-period model.


def _measure(s: Scenario, seconds: float = 600) -> tuple[float, float]:
    stats = s.simulate(seconds)
    return stats.throttle_ratio, stats.mean_cores(s.period_us)


def test_quota_bound_is_pinned_at_the_limit() -> None:
    # Demand ~0.5 cores > 0.3: every period ends out of quota; usage = 30 ms per period.
    ratio, usage = _measure(scenario("quota-bound"))
    assert ratio > 0.5
    assert 0.95 * 0.3 <= usage <= 0.3


def test_micro_burst_is_throttled_at_low_usage() -> None:
    # 0.04 + 1.5 / 20 = 0.115 cores mean; a 154 ms burst against 50 ms of quota takes three
    # throttled periods out of every 20: ratio ~0.15, usage ~0.23 x the 500m limit.
    ratio, usage = _measure(scenario("micro-burst"))
    assert ratio > 0.1
    assert usage < 0.3 * 0.5


def test_burst_reduces_micro_burst_throttling() -> None:
    # With 100 ms of burst the credit banked between bursts covers 150 of the 154 ms.
    s = scenario("micro-burst")
    ratio, _ = _measure(s)
    burst_ratio, _ = _measure(s.with_changes(burst_us=100 * MS))
    assert burst_ratio < ratio / 2


def test_gil_threads_match_seed_001() -> None:
    # Seed 001: ~75% of periods throttled at ~30% of the 1-core limit.
    ratio, usage = _measure(scenario("gil-threads"), seconds=1_800)
    assert 0.65 <= ratio <= 0.85
    assert 0.2 <= usage <= 0.4


def test_healthy_and_over_provisioned_are_not_throttled() -> None:
    ratio, usage = _measure(scenario("healthy"))
    assert ratio < 0.005
    assert usage == pytest.approx(0.2, abs=0.02)
    ratio, usage = _measure(scenario("over-provisioned"))
    assert ratio == 0.0
    assert usage == pytest.approx(0.05, abs=0.01)


def test_workers_mismatch_throttles_below_the_limit() -> None:
    # 0.3 cores mean under 500m, but 4 workers: three requests in a period overrun it.
    ratio, usage = _measure(scenario("workers-mismatch"))
    assert ratio > 0.1
    assert usage < 0.5


def test_no_limit_scenario_is_never_throttled() -> None:
    s = scenario("quota-bound").with_changes(cpu_limit_m=None)
    stats = s.simulate(60)
    assert stats.nr_throttled == 0
    assert stats.nr_periods == 0
    assert stats.mean_cores() == pytest.approx(0.5, abs=0.02)


def test_scenarios_are_complete() -> None:
    names = [s.name for s in all_scenarios()]
    assert names == [
        "quota-bound",
        "micro-burst",
        "gil-threads",
        "over-provisioned",
        "healthy",
        "memory-growth",
        "oom-killed",
        "workers-mismatch",
    ]
    assert scenario("workers-mismatch").web_concurrency == 4
    assert scenario("oom-killed").oom_kills > 0
    assert len({(s.namespace, s.deployment) for s in fleet(50)}) == 50


def test_simulation_is_deterministic() -> None:
    s = scenario("workers-mismatch")
    first = s.simulate(60, keep_periods=True)
    second = s.simulate(60, keep_periods=True)
    assert first == second
    assert s.simulate(60) != s.with_changes(seed=s.seed + 1).simulate(60)


# --------------------------------------------------------------------------------------
# OpenMetrics.

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+) (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _parse(
    text: str,
) -> tuple[list[tuple[str, str]], list[tuple[str, dict[str, str], float, float]]]:
    """(families as (name, type) in order, samples as (name, labels, value, timestamp))."""
    families: list[tuple[str, str]] = []
    samples: list[tuple[str, dict[str, str], float, float]] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            families.append((name, kind))
        elif line.startswith("#"):
            continue
        else:
            match = _SAMPLE.match(line)
            assert match, line
            name, labels, value, ts = match.groups()
            samples.append((name, dict(_LABEL.findall(labels or "")), float(value), float(ts)))
    return families, samples


def _family_of(sample_name: str, families: dict[str, str]) -> str:
    if sample_name in families:
        return sample_name
    base = sample_name.removesuffix("_total")
    assert families.get(base) == "counter", sample_name
    return base


def _window(scenarios: list[Scenario], shape: str = "default") -> str:
    # 10 minutes at 30 s: 20 samples per series, every period simulated.
    return render_openmetrics(
        scenarios,
        T0,
        T0 + 600_000,
        step_ms=30_000,
        shape="full" if shape == "full" else "default",
        extra_labels={"cluster": "prod"},
        sample_periods=None,
    )


def test_openmetrics_structure() -> None:
    text = _window(all_scenarios())
    assert text.endswith("# EOF\n")
    assert text.count("# EOF") == 1
    families, samples = _parse(text)
    kinds = dict(families)
    assert len(kinds) == len(families), "a family is declared twice"
    # Families are contiguous: the sample names, mapped to families, form one run each.
    runs: list[str] = []
    for name, *_ in samples:
        family = _family_of(name, kinds)
        if not runs or runs[-1] != family:
            runs.append(family)
    assert len(runs) == len(set(runs))
    # Every counter sample carries _total; no gauge does.
    for name, *_ in samples:
        assert name.endswith("_total") == (kinds[_family_of(name, kinds)] == "counter")
    # Every series: extra labels, 20 samples in time order; counters never decrease.
    series: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = defaultdict(
        list
    )
    for name, labels, value, ts in samples:
        assert labels["cluster"] == "prod"
        series[(name, tuple(sorted(labels.items())))].append((ts, value))
    for (name, _), points in series.items():
        stamps = [ts for ts, _ in points]
        assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
        if name.endswith("_total"):
            values = [v for _, v in points]
            assert values == sorted(values), name
    assert stamps[0] >= T0 / 1000


def test_openmetrics_shapes() -> None:
    default = _window([scenario("quota-bound")])
    full = _window([scenario("quota-bound")], shape="full")
    for name in (
        "container_cpu_cfs_throttled_seconds_total",
        "container_spec_cpu_quota",
        "container_spec_cpu_period",
    ):
        assert name not in default
        assert f"\n{name}{{" in full
    for name in (
        "container_cpu_usage_seconds_total",
        "container_cpu_cfs_periods_total",
        "container_cpu_cfs_throttled_periods_total",
        "container_memory_rss",
        "container_memory_working_set_bytes",
        "kube_pod_owner",
        "kube_replicaset_owner",
        "kube_pod_container_resource_requests",
        "kube_pod_container_resource_limits",
    ):
        assert f"\n{name}{{" in default


def test_openmetrics_series_and_labels() -> None:
    s = scenario("quota-bound")
    _, samples = _parse(_window([s], shape="full"))
    pods = {ident.pod for ident in pod_identities(s)}
    rs = replicaset_name(s)
    assert len(pods) == s.replicas
    assert all(re.fullmatch(rf"{rs}-[b-z2-9]{{5}}", pod) for pod in pods)
    usage_containers = {
        labels["container"]
        for name, labels, _, _ in samples
        if name == "container_cpu_usage_seconds_total"
    }
    assert usage_containers == {"app", "POD", ""}
    cadvisor = [labels for name, labels, _, _ in samples if name.startswith("container_")]
    assert all(
        labels["job"] == "kubelet" and labels["metrics_path"] == "/metrics/cadvisor"
        for labels in cadvisor
    )
    # The pod-level cgroup's usage is the sum of its containers'.
    at: dict[tuple[str, str, float], float] = {}
    for name, labels, value, ts in samples:
        if name == "container_cpu_usage_seconds_total":
            at[(labels["pod"], labels["container"], ts)] = value
    for (pod, container, ts), value in at.items():
        if container == "":
            assert value == pytest.approx(at[(pod, "app", ts)] + at[(pod, "POD", ts)])
    owners = [labels for name, labels, _, _ in samples if name == "kube_pod_owner"]
    assert {(o["owner_kind"], o["owner_name"]) for o in owners} == {("ReplicaSet", rs)}
    rs_owner = {
        (labels["replicaset"], labels["owner_kind"], labels["owner_name"])
        for name, labels, _, _ in samples
        if name == "kube_replicaset_owner"
    }
    assert rs_owner == {(rs, "Deployment", "checkout")}
    limits = {
        (labels["resource"], labels["unit"], value)
        for name, labels, value, _ in samples
        if name == "kube_pod_container_resource_limits"
    }
    assert limits == {("cpu", "core", 0.3), ("memory", "byte", 512 * 1024 * 1024)}
    assert all(
        labels["job"] == "kube-state-metrics"
        for name, labels, _, _ in samples
        if name.startswith("kube_")
    )


@pytest.mark.parametrize(
    ("kind", "pod_name"),
    [
        (WorkloadKind.STATEFULSET, r"db-[01]"),
        (WorkloadKind.DAEMONSET, r"db-[b-z2-9]{5}"),
    ],
)
def test_a_statefulsets_or_daemonsets_pods_are_owned_by_it_and_named_by_its_controller(
    kind: WorkloadKind, pod_name: str
) -> None:
    s = scenario("quota-bound").with_changes(kind=kind, deployment="db", replicas=2)
    _, samples = _parse(_window([s]))
    owners = [labels for name, labels, _, _ in samples if name == "kube_pod_owner"]
    assert {(o["owner_kind"], o["owner_name"]) for o in owners} == {(kind.value, "db")}
    pods = {o["pod"] for o in owners}
    assert len(pods) == 2 and all(re.fullmatch(pod_name, pod) for pod in pods), pods
    assert not [name for name, *_ in samples if name == "kube_replicaset_owner"]


def test_openmetrics_counters_tell_the_throttle_story() -> None:
    # Over the window, increase(throttled) / increase(periods) is the throttle ratio and
    # increase(usage) / seconds the usage: ~1.0 and 0.3 cores for quota-bound.
    _, samples = _parse(_window([scenario("quota-bound")]))
    first: dict[tuple[str, str], float] = {}
    last: dict[tuple[str, str], float] = {}
    for name, labels, value, _ in samples:
        if labels.get("container") == "app":
            key = (name, labels["pod"])
            first.setdefault(key, value)
            last[key] = value
    pod = next(iter({p for _, p in first}))

    def increase(name: str) -> float:
        return last[(name, pod)] - first[(name, pod)]

    ratio = increase("container_cpu_cfs_throttled_periods_total") / increase(
        "container_cpu_cfs_periods_total"
    )
    assert ratio > 0.95
    # 19 steps of 30 s between the first and last sample.
    assert increase("container_cpu_usage_seconds_total") / (19 * 30) == pytest.approx(0.3, rel=0.01)
    assert increase("container_cpu_cfs_periods_total") == 19 * 300


def test_openmetrics_oom_and_no_limit() -> None:
    text = _window([scenario("oom-killed"), scenario("healthy")])
    _, samples = _parse(text)
    reasons = {
        (labels["namespace"], labels["reason"], value)
        for name, labels, value, _ in samples
        if name == "kube_pod_container_status_last_terminated_reason"
    }
    assert reasons == {("media", "OOMKilled", 1.0)}
    unlimited = scenario("healthy").with_changes(cpu_limit_m=None, memory_limit_bytes=None)
    _, samples = _parse(_window([unlimited]))
    names = {name for name, *_ in samples}
    assert "container_cpu_cfs_periods_total" not in names
    assert "kube_pod_container_resource_limits" not in names
    assert "container_cpu_usage_seconds_total" in names


def test_the_series_as_values_are_the_text_sample_for_sample() -> None:
    # What a writer of another format (a TSDB block) reads is what the text says.
    families, samples = _parse(_window(all_scenarios()))
    kinds = dict(families)
    from_text: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = (
        defaultdict(list)
    )
    for name, labels, value, ts in samples:
        from_text[name, tuple(sorted(labels.items()))].append((ts, value))
    from_values: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
    for kind, (series, offset, values) in iter_scenario_series(
        all_scenarios(),
        T0,
        T0 + 600_000,
        step_ms=30_000,
        extra_labels={"cluster": "prod"},
        sample_periods=None,
    ):
        match = _SAMPLE.match(f"{series} 0 0")
        assert match, series
        name, labels = match.group(1), dict(_LABEL.findall(match.group(2)))
        assert kinds[_family_of(name, kinds)] == kind
        points = [
            ((T0 + (offset + j) * 30_000) / 1000, float(v)) for j, v in enumerate(values) if v
        ]
        from_values[name, tuple(sorted(labels.items()))] = points
    assert from_values == dict(from_text)
    assert len(from_values) > 200


def test_openmetrics_is_deterministic() -> None:
    scenarios = fleet(10, seed=5)
    assert _window(scenarios) == _window(scenarios)
    assert _window(scenarios) != _window(fleet(10, seed=6))


def test_openmetrics_rejects_bad_windows() -> None:
    s = scenario("healthy")
    with pytest.raises(ValueError):
        render_openmetrics(s, T0, T0)
    with pytest.raises(ValueError):
        render_openmetrics(s, T0, T0 + 60_000, step_ms=150)
    with pytest.raises(ValueError):
        render_openmetrics(s, T0, T0 + 60_000, extra_labels={"0bad": "x"})
    with pytest.raises(ValueError):
        render_openmetrics(s, T0, T0 + 60_000, extra_labels={"namespace": "x"})
