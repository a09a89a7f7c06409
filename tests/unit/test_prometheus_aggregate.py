"""Per-pod rows → per-configuration statistics, as plain data (no Prometheus)."""

from __future__ import annotations

import pytest

from unthrottle.model.workload import WorkloadStats
from unthrottle.sources.prometheus_aggregate import assemble
from unthrottle.sources.prometheus_queries import Resolution
from unthrottle.sources.prometheus_rows import Ksm, Tables

WINDOW = 3600
STEP = 30
RESOLUTION = Resolution.for_window(WINDOW)


def pod(
    tables: Tables,
    ksm: Ksm,
    name: str,
    *,
    replicaset: str,
    cpu_limit: float | None,
    minutes: int,
    ends_at_minute: int,
    throttled: float,
    listed: bool = True,
) -> None:
    """One pod of Deployment ``web`` with container ``app``: its rows as the queries give them."""
    labels = {"namespace": "shop", "pod": name, "container": "app"}
    if listed:  # kube-state-metrics knows the pod
        owner = {"owner_kind": "ReplicaSet", "owner_name": replicaset}
        ksm.add("pod_owner", {**labels, **owner}, 1)
    ksm.add("rs_owner", {"namespace": "shop", "replicaset": replicaset, "owner_name": "web"}, 1)
    if cpu_limit is not None:
        ksm.add("cpu_request", labels, cpu_limit)
        ksm.add("cpu_limit", labels, cpu_limit)
    steps = minutes * 60 // STEP
    periods = minutes * 600
    for stat, value in {
        "p50": 0.3,
        "p95": 0.3,
        "p99": 0.3,
        "max": 0.3,
        "mean": 0.3,
        "count": steps,
        "last": 1_700_000_000 - WINDOW + ends_at_minute * 60,
        "periods": periods,
        "throttled": throttled * periods,
        "rss_max": 1e8,
    }.items():
        tables.add(stat, labels, value)


def fetch(*pods: dict[str, object]) -> WorkloadStats:
    tables, ksm = Tables(), Ksm()
    for item in pods:
        pod(tables, ksm, **item)  # type: ignore[arg-type]
    workloads, unowned = assemble(tables, ksm, ksm.owners({}), RESOLUTION, 100_000)
    assert unowned == 0
    (workload,) = workloads
    return workload


OLD = {"replicaset": "web-old", "cpu_limit": 0.3, "minutes": 20, "ends_at_minute": 40}
NEW = {"replicaset": "web-new", "cpu_limit": 2.0, "minutes": 2, "ends_at_minute": 60}


def test_each_configuration_has_its_own_counters_newest_first() -> None:
    workload = fetch(
        {"name": "web-old-a", "throttled": 0.98, **OLD},
        {"name": "web-old-b", "throttled": 0.98, **OLD},
        {"name": "web-new-a", "throttled": 0.0, **NEW},
        {"name": "web-new-b", "throttled": 0.0, **NEW},
    )
    assert workload.pods == 4
    (stats,) = workload.containers
    assert (stats.container.cpu_request, stats.container.cpu_limit) == (2000, 2000)
    assert stats.cpu.throttled_period_ratio == 0.0
    assert stats.cpu.samples == 4  # its own 2 minutes, not the window's
    (previous,) = stats.history
    assert previous.container.cpu_limit == 300
    assert previous.cpu.throttled_period_ratio == 0.98
    assert previous.cpu.samples == 40


UNLISTED = {"cpu_limit": None, "listed": False}


def test_a_pod_unknown_to_kube_state_metrics_joins_its_replicaset() -> None:
    # The old ReplicaSet's pod has no kube-state-metrics rows: it is an old pod, so its
    # throttling stays with the old configuration even though it is not the newest.
    workload = fetch(
        {"name": "web-old-a", "throttled": 0.98, **OLD},
        {"name": "web-old-b", "throttled": 0.98, **{**OLD, **UNLISTED}},
        {"name": "web-new-a", "throttled": 0.0, **NEW},
    )
    (stats,) = workload.containers
    assert stats.cpu.throttled_period_ratio == 0.0
    assert stats.history[0].cpu.throttled_period_ratio == 0.98
    assert stats.history[0].cpu.samples == 40
    # Alone in its ReplicaSet, it joins the newest configuration.
    lone = fetch(
        {"name": "web-old-a", "throttled": 0.98, **OLD},
        {"name": "web-x-a", "throttled": 0.5, **{**NEW, "replicaset": "web-x", **UNLISTED}},
        {"name": "web-new-a", "throttled": 0.0, **NEW},
    )
    assert lone.containers[0].cpu.throttled_period_ratio == 0.25


def test_a_listed_pod_without_resource_rows_has_no_resources() -> None:
    # kube-state-metrics lists the old pod but no requests or limits: none were set.
    workload = fetch(
        {"name": "web-old-a", "throttled": 0.0, **{**OLD, "cpu_limit": None}},
        {"name": "web-new-a", "throttled": 0.0, **NEW},
    )
    (stats,) = workload.containers
    assert stats.container.cpu_limit == 2000
    assert [h.container.cpu_limit for h in stats.history] == [None]


def test_without_kube_state_metrics_all_pods_are_one_configuration() -> None:
    workload = fetch(
        {"name": "web-old-a", "throttled": 0.98, **{**OLD, **UNLISTED}},
        {"name": "web-new-a", "throttled": 0.0, **{**NEW, **UNLISTED}},
    )
    (stats,) = workload.containers
    assert stats.container.cpu_limit is None and stats.history == ()
    assert stats.cpu.throttled_period_ratio == pytest.approx(0.98 * 20 / 22)
