"""Pod runs: pods of several configurations, each simulated under its own resources."""

from __future__ import annotations

import io
import re
from collections import defaultdict

import pytest

from unthrottle.sim.openmetrics import PodRun, iter_pod_runs, write_pod_runs
from unthrottle.sim.scenarios import MI, scenario

STEP_MS = 30_000
T0 = 1_700_000_000_000 // STEP_MS * STEP_MS
MINUTE = 60_000
QUOTA_BOUND = scenario("quota-bound")  # ~0.5 cores of demand
SERIES = re.compile(r"^(\w+)(\{.*\}) (\S+) (\S+)$")

Series = dict[tuple[str, str], list[tuple[str, float]]]


def parse(text: str) -> Series:
    """(metric, labels) → [(timestamp, value)] of an OpenMetrics text."""
    out: Series = defaultdict(list)
    for line in text.splitlines():
        match = SERIES.match(line)
        if match:
            name, labels, value, ts = match.groups()
            out[(name, labels)].append((ts, float(value)))
    return dict(out)


def text(*runs: PodRun, shape: str = "default") -> str:
    handle = io.StringIO()
    write_pod_runs(handle, runs, STEP_MS, shape=shape)  # type: ignore[arg-type]
    return handle.getvalue()


def run(pod: str, start: int, end: int, **resources: object) -> PodRun:
    replicaset = pod.rsplit("-", 1)[0]
    return PodRun(QUOTA_BOUND.with_changes(**resources), replicaset, pod, start, end)


def of_pod(series: Series, pod: str, metric: str, container: str = "app") -> list[float]:
    (values,) = [
        v
        for (name, labels), v in series.items()
        if name == metric and f'pod="{pod}"' in labels and f'container="{container}"' in labels
    ]
    return [value for _, value in values]


OLD = run("checkout-old-aaaaa", T0, T0 + 20 * MINUTE, cpu_limit_m=300, cpu_request_m=300)
NEW = run("checkout-new-bbbbb", T0 + 20 * MINUTE, T0 + 30 * MINUTE, cpu_limit_m=2000)


def ratio(series: Series, pod: str) -> float:
    periods = of_pod(series, pod, "container_cpu_cfs_periods_total")
    throttled = of_pod(series, pod, "container_cpu_cfs_throttled_periods_total")
    return (throttled[-1] - throttled[0]) / (periods[-1] - periods[0])


def test_each_pod_is_throttled_under_its_own_quota() -> None:
    series = parse(text(OLD, NEW))
    assert ratio(series, OLD.pod) > 0.9
    assert ratio(series, NEW.pod) < 0.05
    usage = of_pod(series, NEW.pod, "container_cpu_usage_seconds_total")
    cores = (usage[-1] - usage[0]) / ((len(usage) - 1) * STEP_MS / 1000)
    assert cores == pytest.approx(0.5, abs=0.05)  # the demand behind the old quota
    limits = [
        values[0][1]
        for (name, labels), values in series.items()
        if name == "kube_pod_container_resource_limits" and NEW.pod in labels
    ]
    assert sorted(limits) == [2.0, 512 * MI]  # cpu in cores, memory in bytes


def test_counters_start_at_zero_and_samples_cover_the_life() -> None:
    late = run("checkout-late-ccccc", T0 + 15_000, T0 + 5 * MINUTE)  # mid-step start
    series = parse(text(late))
    usage = series[
        next(k for k in series if k[0] == "container_cpu_usage_seconds_total" and "app" in k[1])
    ]
    assert usage[0] == (str((T0 + STEP_MS) // 1000), 0.0)  # first scrape after its start
    assert len(usage) == 9  # T0+30s ... T0+4m30s
    assert of_pod(series, late.pod, "container_cpu_cfs_periods_total")[0] == 0


def test_a_pod_depends_only_on_its_run() -> None:
    alone = parse(text(NEW))
    together = parse(text(OLD, NEW))
    assert {k: v for k, v in together.items() if NEW.pod in k[1]} == {
        k: v for k, v in alone.items() if NEW.pod in k[1]
    }
    # Regenerated with a later end, the pod's series are the same with more samples.
    longer = parse(
        text(OLD, run(NEW.pod, NEW.start_ms, NEW.end_ms + 10 * MINUTE, cpu_limit_m=2000))
    )
    for key, values in alone.items():
        assert longer[key][: len(values)] == values, key
        assert len(longer[key]) == len(values) + 20


def test_one_replicaset_series_over_its_pods_lives() -> None:
    second = run("checkout-old-ddddd", T0 + 10 * MINUTE, T0 + 25 * MINUTE, cpu_limit_m=300)
    series = parse(text(second, OLD, NEW))
    owners = {
        labels: values
        for (name, labels), values in series.items()
        if name == "kube_replicaset_owner"
    }
    assert len(owners) == 2
    (old,) = [v for labels, v in owners.items() if 'replicaset="checkout-old"' in labels]
    assert (old[0][0], old[-1][0]) == (str(T0 // 1000), str((T0 + 25 * MINUTE - STEP_MS) // 1000))
    assert len(old) == 50


def test_workers_set_the_memory_and_the_width() -> None:
    roomy = {"memory_limit_bytes": 4096 * MI}
    one = parse(text(run("checkout-w1-aaaaa", T0, T0 + 5 * MINUTE, web_concurrency=1, **roomy)))
    four = parse(text(run("checkout-w4-aaaaa", T0, T0 + 5 * MINUTE, web_concurrency=4, **roomy)))
    rss_one = of_pod(one, "checkout-w1-aaaaa", "container_memory_rss")
    rss_four = of_pod(four, "checkout-w4-aaaaa", "container_memory_rss")
    assert min(rss_four) - max(rss_one) > 2 * 150 * MI * 0.9  # 3 more workers of 150 MiB
    assert (
        PodRun(QUOTA_BOUND.with_changes(web_concurrency=4), "a", "a-b", 0, 1)
        .workload()
        .demand.threads
        == 8
    )


def test_bad_runs_are_refused() -> None:
    with pytest.raises(ValueError, match="end_ms"):
        run("checkout-x-aaaaa", T0, T0)
    with pytest.raises(ValueError, match="ReplicaSet"):
        PodRun(QUOTA_BOUND, "checkout-x", "other-aaaaa", T0, T0 + MINUTE)
    with pytest.raises(ValueError, match="twice"):
        text(OLD, OLD)
    assert list(iter_pod_runs([], STEP_MS)) == [
        chunk for chunk in iter_pod_runs([], STEP_MS) if chunk.startswith("#")
    ]
