"""The Prometheus source against a real Prometheus holding simulated cluster data.

One Prometheus serves every data set, told apart by a ``cluster`` label (the extra matcher
the source adds to every selector):

- ``prod``: the named scenarios, a fleet of 50 Deployments (one per namespace
  ``team-00`` … ``team-49``) and a Deployment rolled out mid-window (two ReplicaSets);
  data shape "default" (no throttled seconds, no ``container_spec_*``).
- ``staging``: the named scenarios again, with one more replica and other seeds: it must
  never leak into ``prod``.
- ``full``: the named scenarios in the "full" shape.
- ``noksm``: the named scenarios without any kube-state-metrics series.
- ``ended``: the named scenarios until 10 minutes before the end, without
  ``container_memory_working_set_bytes``.
- ``history``: pod runs of one Deployment, 300m pods throttled heavily, then 2-core pods
  for the last 20 minutes (:func:`_history_runs`).

Two hours at 30 s steps ending at a fixed time; every query is evaluated at that end.
Expected numbers come from the rendered OpenMetrics text itself (the counters the source
must reproduce) and, loosely, from the simulator's own totals.
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
import requests

from unthrottle.model.recommendation import NoRecommendation, NoRecommendationReason
from unthrottle.model.stats import ContainerStats
from unthrottle.model.workload import WorkloadStats
from unthrottle.reconcile.scope import join
from unthrottle.sandbox import prometheus as harness
from unthrottle.sandbox.prometheus import PrometheusFactory, PrometheusServer, free_port
from unthrottle.sim.openmetrics import (
    PodRun,
    iter_openmetrics,
    iter_pod_runs,
    render_openmetrics,
    replicaset_name,
)
from unthrottle.sim.scenarios import Scenario, all_scenarios, deployment_manifest, fleet, scenario
from unthrottle.sources.kubernetes import deployment_info
from unthrottle.sources.prometheus import (
    FetchResult,
    PrometheusConfig,
    PrometheusError,
    PrometheusSource,
)
from unthrottle.sources.prometheus_queries import (
    KSM_SERIES,
    SPEC_PERIOD,
    THROTTLED_SECONDS,
    WORKING_SET,
    Resolution,
)
from unthrottle.sources.prometheus_range import parse_points, reduce_usage, rss_statistics

pytestmark = pytest.mark.integration

END_S = 1_700_002_800  # a multiple of every step used, so subquery steps line up
HOURS = 2
START_MS = (END_S - HOURS * 3600) * 1000
END_MS = END_S * 1000
MID_MS = (START_MS + END_MS) // 2
STEP_MS = 30_000
WINDOW = f"{HOURS}h"
OLD_REPLICASET = "web-5d4c3b2a19"


def _rollout() -> tuple[Scenario, Scenario]:
    old = scenario("quota-bound").with_changes(
        name="rollout", namespace="rollout", deployment="web", replicas=2
    )
    return old, old.with_changes(cpu_limit_m=600, seed=old.seed + 1)


PATCHED_MS = END_MS - 20 * 60_000
QUOTA_BOUND = scenario("quota-bound").with_changes(namespace="history")
TWO_CORES = QUOTA_BOUND.with_changes(cpu_request_m=1000, cpu_limit_m=2000)


def _history_runs() -> list[PodRun]:
    """checkout: two 300m pods until the patch, then two 2-core pods to the end."""
    old = [
        PodRun(
            QUOTA_BOUND, "checkout-6f7d8b9c4d", f"checkout-6f7d8b9c4d-o{i}", START_MS, PATCHED_MS
        )
        for i in range(2)
    ]
    new = [
        PodRun(TWO_CORES, "checkout-5b6c7d8f9g", f"checkout-5b6c7d8f9g-n{i}", PATCHED_MS, END_MS)
        for i in range(2)
    ]
    return old + new


def _staging(items: Iterable[Scenario]) -> list[Scenario]:
    return [s.with_changes(replicas=s.replicas + 1, seed=s.seed + 7) for s in items]


def _without(prefix: str, chunks: Iterable[str]) -> Iterator[str]:
    """The chunks of an OpenMetrics text but the families whose names start with ``prefix``."""
    for chunk in chunks:
        if not chunk.startswith((prefix, f"# HELP {prefix}")):
            yield chunk


_RANGE_READ = ("container_cpu_usage_seconds_total", "container_memory_rss")


def _second_job(chunks: Iterable[str]) -> Iterator[str]:
    """The series read at every step (CPU usage, RSS) again as a second scrape job would
    have them, every value halved (a smaller copy: the maximum per step is the first's)."""
    for chunk in chunks:
        if chunk.startswith("# EOF"):
            yield chunk
        elif chunk.startswith(_RANGE_READ):
            lines = []
            for line in chunk.splitlines():
                series, value, at = line.replace('job="kubelet"', 'job="kubelet-2"').rsplit(" ", 2)
                lines.append(f"{series} {float(value) / 2:f} {at}\n")
            yield "".join(lines)
        elif chunk.startswith(tuple(f"# HELP {n.removesuffix('_total')} " for n in _RANGE_READ)):
            yield chunk


@dataclass
class Data:
    server: PrometheusServer
    prod_text: str

    @cached_property
    def prod(self) -> FetchResult:
        """The whole ``prod`` cluster over the window (computed once)."""
        return self.fetch()

    @cached_property
    def prod_bounds(self) -> dict[str, dict[tuple[str, str, str], tuple[float, float]]]:
        return {
            metric: _series_bounds(self.prod_text, metric)
            for metric in (
                "container_cpu_usage_seconds_total",
                "container_cpu_cfs_periods_total",
                "container_cpu_cfs_throttled_periods_total",
            )
        }

    def source(self, cluster: str | None = "prod", **config: object) -> PrometheusSource:
        matchers = {} if cluster is None else {"cluster": cluster}
        return PrometheusSource(
            PrometheusConfig(url=self.server.url, extra_matchers=matchers, **config)  # type: ignore[arg-type]
        )

    def fetch(self, cluster: str | None = "prod", **kwargs: object) -> FetchResult:
        window = kwargs.pop("window", WINDOW)
        with self.source(cluster) as source:
            return source.fetch(window, end=END_S, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data(prometheus_factory: PrometheusFactory) -> Data:
    named = all_scenarios()
    old, new = _rollout()

    def render(items: Iterable[Scenario], cluster: str, shape: str = "default") -> Iterator[str]:
        return iter_openmetrics(
            list(items),
            START_MS,
            END_MS,
            step_ms=STEP_MS,
            shape=shape,  # type: ignore[arg-type]
            extra_labels={"cluster": cluster},
        )

    prod_text = "".join(render(named, "prod"))
    old_text = render_openmetrics(
        old, START_MS, MID_MS, step_ms=STEP_MS, extra_labels={"cluster": "prod"}
    ).replace(replicaset_name(old), OLD_REPLICASET)
    files = {
        "prod.om": [prod_text],
        "prod-fleet.om": render(fleet(50, seed=3), "prod"),
        "prod-rollout-old.om": [old_text],
        "prod-rollout-new.om": iter_openmetrics(
            new, MID_MS, END_MS, step_ms=STEP_MS, extra_labels={"cluster": "prod"}
        ),
        "staging.om": render(_staging(named), "staging"),
        "full.om": render(named, "full", shape="full"),
        "noksm.om": _without("kube_", render(named, "noksm")),
        "ended.om": _without(
            WORKING_SET,
            iter_openmetrics(
                named,
                START_MS,
                END_MS - 10 * 60_000,
                step_ms=STEP_MS,
                extra_labels={"cluster": "ended"},
            ),
        ),
        "history.om": iter_pod_runs(_history_runs(), STEP_MS, extra_labels={"cluster": "history"}),
        "one-job.om": render(named, "one-job"),
        "two-jobs.om": render(named, "two-jobs"),
        "two-jobs-second.om": _second_job(render(named, "two-jobs")),
    }
    return Data(prometheus_factory("source-clusters", files), prod_text)


# -- ground truth from the rendered text ------------------------------------------------

_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _series_bounds(text: str, metric: str) -> dict[tuple[str, str, str], tuple[float, float]]:
    """(namespace, pod, container) → (first value, last value) of ``metric``'s samples."""
    out: dict[tuple[str, str, str], tuple[float, float]] = {}
    prefix = metric + "{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels_text, value, _ = line[len(prefix) :].rsplit(" ", 2)
        labels = dict(_LABEL.findall(labels_text))
        key = (labels["namespace"], labels["pod"], labels["container"])
        number = float(value)
        first = out.get(key, (number, number))[0]
        out[key] = (first, number)
    return out


def _series_max(text: str, metric: str) -> dict[tuple[str, str, str], float]:
    out: dict[tuple[str, str, str], float] = defaultdict(float)
    prefix = metric + "{"
    for line in text.splitlines():
        if line.startswith(prefix):
            labels_text, value, _ = line[len(prefix) :].rsplit(" ", 2)
            labels = dict(_LABEL.findall(labels_text))
            key = (labels["namespace"], labels["pod"], labels["container"])
            out[key] = max(out[key], float(value))
    return out


def _of(key: tuple[str, str, str], item: Scenario) -> bool:
    namespace, pod, container = key
    return (namespace, container) == (item.namespace, item.container) and pod.startswith(
        item.deployment + "-"
    )


def _increase(bounds: dict[tuple[str, str, str], tuple[float, float]], item: Scenario) -> float:
    return sum(last - first for key, (first, last) in bounds.items() if _of(key, item))


def _workload(result: FetchResult, namespace: str, name: str) -> WorkloadStats:
    found = [w for w in result.workloads if (w.ref.namespace, w.ref.name) == (namespace, name)]
    assert len(found) == 1, f"{namespace}/{name}: {[str(w.ref) for w in result.workloads]}"
    return found[0]


def _only(workload: WorkloadStats) -> ContainerStats:
    assert len(workload.containers) == 1, [c.container.name for c in workload.containers]
    return workload.containers[0]


# -- batching ------------------------------------------------------------------------------


def test_query_count_does_not_grow_with_deployments(data: Data) -> None:
    two = data.fetch(namespaces=["team-00", "team-01"])
    fifty = data.fetch(namespaces=[f"team-{i:02d}" for i in range(50)])
    everything = data.fetch()
    assert len(two.workloads) == 2
    assert len(fifty.workloads) == 50
    assert two.queries == fifty.queries == everything.queries
    assert two.queries <= 16
    assert everything.chunks == 1


def test_chunking_by_namespace_keeps_every_workload(data: Data) -> None:
    with data.source(max_series_per_query=20) as source:
        chunked = source.fetch(WINDOW, end=END_S)
    whole = data.fetch()
    assert chunked.chunks > 1
    assert chunked.queries == 5 + 3 * chunked.chunks  # presence, 4 kube-state-metrics
    assert [w.ref for w in chunked.workloads] == [w.ref for w in whole.workloads]
    assert chunked.workloads == whole.workloads


# -- the statistics --------------------------------------------------------------------------


@pytest.mark.parametrize("item", all_scenarios(), ids=lambda s: s.name)
def test_throttle_ratio_is_the_simulated_ratio(data: Data, item: Scenario) -> None:
    stats = _only(_workload(data.prod, item.namespace, item.deployment))
    periods = _increase(data.prod_bounds["container_cpu_cfs_periods_total"], item)
    throttled = _increase(data.prod_bounds["container_cpu_cfs_throttled_periods_total"], item)
    # Exactly the counters' increase over the window, pooled over the pods ...
    assert stats.cpu.throttled_period_ratio == pytest.approx(throttled / periods, abs=1e-9)
    # ... and close to the simulator's own totals (which include the first scrape step,
    # before the window's first sample, and a start-up transient there).
    simulated = [item.simulate(HOURS * 3600, pod_index=i) for i in range(item.replicas)]
    expected = sum(s.nr_throttled for s in simulated) / sum(s.nr_periods for s in simulated)
    assert stats.cpu.throttled_period_ratio == pytest.approx(expected, abs=0.03)


def test_pause_container_and_pod_cgroup_are_not_counted(data: Data) -> None:
    result = data.prod
    usage = data.prod_bounds["container_cpu_usage_seconds_total"]
    rss = _series_max(data.prod_text, "container_memory_rss")
    seconds = (END_MS - START_MS - STEP_MS) / 1000
    for item in all_scenarios():
        workload = _workload(result, item.namespace, item.deployment)
        assert workload.pods == item.replicas
        stats = _only(workload)
        assert stats.container.name == item.container
        # The mean usage is the application container's alone (the pod-level cgroup's
        # is the same plus the pause container: counting it would double it).
        app_cores = _increase(usage, item) / seconds / item.replicas
        assert stats.cpu.usage_cores.mean is not None
        assert stats.cpu.usage_cores.mean / 1000 == pytest.approx(app_cores, rel=0.05, abs=0.003)
        assert stats.memory is not None
        app_rss = max(v for key, v in rss.items() if _of(key, item))
        assert stats.memory.rss_bytes.max == app_rss


def test_rollout_mid_window_is_one_workload_of_two_configurations(data: Data) -> None:
    old, new = _rollout()
    workload = _workload(data.fetch(namespaces=["rollout"]), "rollout", "web")
    assert workload.pods == old.replicas + new.replicas
    stats = _only(workload)
    # The current configuration is the newest pods', the ReplicaSet rolled out last ...
    assert stats.container.cpu_limit == 600
    # ... with the history of the old one, each judged against its own limit.
    assert [h.container.cpu_limit for h in stats.history] == [300]
    previous = stats.history[0]
    assert previous.cpu.throttled_period_ratio > 0.9
    assert stats.cpu.throttled_period_ratio < previous.cpu.throttled_period_ratio
    # Each half was covered by one ReplicaSet: each configuration has its own half (the
    # old pods' rate lasts a rate range past their last sample).
    half = HOURS * 3600 // 30 // 2
    assert half - 6 <= stats.cpu.samples <= half + 1
    assert half - 6 <= previous.cpu.samples <= half + 6


def test_each_configuration_is_judged_against_its_own_limit(data: Data) -> None:
    result = data.fetch("history")
    workload = _workload(result, "history", "checkout")
    assert workload.pods == 4
    stats = _only(workload)
    # The current configuration: the 2-core pods, with their own 20 minutes ...
    assert (stats.container.cpu_request, stats.container.cpu_limit) == (1000, 2000)
    assert stats.cpu.throttled_period_ratio < 0.05
    assert 36 <= stats.cpu.samples <= 40
    # ... and the 300m pods' throttling stays with the 300m configuration.
    (previous,) = stats.history
    assert (previous.container.cpu_request, previous.container.cpu_limit) == (300, 300)
    assert previous.cpu.throttled_period_ratio > 0.9
    assert 200 <= previous.cpu.samples <= 206
    assert previous.cpu.usage_cores.p50 == pytest.approx(300, abs=10)
    assert stats.cpu.usage_cores.mean == pytest.approx(500, rel=0.1)  # the demand, now met

    def joined(spec: Scenario) -> ContainerStats | NoRecommendation:
        info = deployment_info(deployment_manifest(spec), "WEB_CONCURRENCY")
        (container,) = join([info], [workload])
        return container.stats

    current = joined(TWO_CORES)
    assert isinstance(current, ContainerStats)
    assert current.cpu == stats.cpu and current.history == stats.history
    rolled_back = joined(QUOTA_BOUND)
    assert isinstance(rolled_back, ContainerStats)
    assert rolled_back.cpu == previous.cpu
    assert [h.container.cpu_limit for h in rolled_back.history] == [2000]
    third = joined(TWO_CORES.with_changes(cpu_request_m=600))
    assert isinstance(third, NoRecommendation)
    assert third.reason is NoRecommendationReason.SETTLING
    assert third.message.startswith("no pod has run with cpu 600m/2, memory 384Mi/512Mi yet")
    assert third.message.endswith("; 2 earlier configurations seen")


def test_default_shape_has_no_throttled_seconds(data: Data) -> None:
    result = data.prod
    assert THROTTLED_SECONDS not in result.optional_series
    assert SPEC_PERIOD not in result.optional_series
    assert result.missing_series == frozenset()
    for workload in result.workloads:
        for stats in workload.containers:
            assert stats.cpu.throttled_seconds_per_second is None
            assert stats.cpu.cfs_period_us is None


def test_full_shape_has_throttled_seconds(data: Data) -> None:
    result = data.fetch("full")
    assert {THROTTLED_SECONDS, SPEC_PERIOD} <= result.optional_series
    assert result.missing_series == frozenset()
    for item in all_scenarios():
        stats = _only(_workload(result, item.namespace, item.deployment))
        assert stats.cpu.cfs_period_us == item.period_us
        assert stats.cpu.throttled_seconds_per_second is not None
        assert stats.cpu.active_period_ratio is not None
        assert 0 < stats.cpu.active_period_ratio <= 1
        # The wall-clock rate of throttled time, as the simulator counted it.
        simulated = [item.simulate(HOURS * 3600, pod_index=i) for i in range(item.replicas)]
        unmet = sum(s.throttled_time_us for s in simulated) / 1e6 / (HOURS * 3600 * item.replicas)
        assert stats.cpu.throttled_seconds_per_second / 1000 == pytest.approx(
            unmet, rel=0.1, abs=0.002
        )


def test_other_cluster_is_excluded_by_the_extra_matcher(data: Data) -> None:
    prod = data.prod
    staging = data.fetch("staging")
    for item in all_scenarios():
        assert _workload(prod, item.namespace, item.deployment).pods == item.replicas
        assert _workload(staging, item.namespace, item.deployment).pods == item.replicas + 1
    assert not any(w.ref.namespace.startswith("team-") for w in staging.workloads)


def test_job_matchers_per_family(data: Data) -> None:
    with data.source(
        cadvisor_matchers={"job": "kubelet"},
        kube_state_metrics_matchers={"job": "kube-state-metrics"},
    ) as source:
        result = source.fetch(WINDOW, end=END_S, namespaces=["shop"])
    assert result.workloads == data.fetch(namespaces=["shop"]).workloads
    assert len(result.workloads) == 2


def test_a_second_scrape_job_is_the_maximum_per_step_not_a_second_container(
    data: Data,
) -> None:
    one = data.fetch("one-job")
    two = data.fetch("two-jobs")
    assert [w.model_dump() for w in two.workloads] == [w.model_dump() for w in one.workloads]
    # the containers with two series were read again, as their maximum per step
    assert two.queries == one.queries + 2


def test_memory_statistics(data: Data) -> None:
    result = data.prod
    oom = _only(_workload(result, "media", "thumbnailer"))
    assert oom.memory is not None and oom.memory.oom_kills >= 1
    growth = _only(_workload(result, "billing", "invoicer"))
    assert growth.memory is not None
    assert growth.memory.rss_slope_bytes_per_second is not None
    assert growth.memory.rss_slope_bytes_per_second > 0
    assert growth.memory.working_set_bytes is not None
    assert growth.memory.working_set_bytes.max >= growth.memory.rss_bytes.max
    healthy = _only(_workload(result, "web", "frontend"))
    assert healthy.memory is not None and healthy.memory.oom_kills == 0
    expected = scenario("healthy")
    assert healthy.container.cpu_request == expected.cpu_request_m
    assert healthy.container.cpu_limit == expected.cpu_limit_m
    assert healthy.container.memory_request == expected.memory_request_bytes
    assert healthy.container.memory_limit == expected.memory_limit_bytes


def test_five_minute_window(data: Data) -> None:
    result = data.fetch(window="5m")
    assert result.resolution.step_seconds == 30
    assert result.resolution.rate_seconds == 120
    assert len(result.workloads) == len(all_scenarios()) + 51
    for workload in result.workloads:
        for stats in workload.containers:
            assert 1 <= stats.cpu.samples <= 10
            assert stats.cpu.window_seconds == 300


def test_hostile_namespace_names_match_nothing(data: Data) -> None:
    result = data.fetch(namespaces=[".*", 'shop"}', "a\\b\nc", "shop|web"])
    assert result.workloads == ()
    assert result.dropped_values == 0


def test_no_kube_state_metrics_reports_missing_series(data: Data) -> None:
    result = data.fetch("noksm")
    assert set(KSM_SERIES) <= result.missing_series
    assert not any(name.startswith("container_") for name in result.missing_series)
    assert result.workloads == ()


def test_series_are_present_if_they_exist_anywhere_in_the_window(data: Data) -> None:
    # Every series ended 10 minutes before the end: an instant query at the end (5 minutes
    # of lookback) would find none, the index over the window finds them all; the working
    # set was never there and is missing.
    result = data.fetch("ended")
    assert result.missing_series == {WORKING_SET}
    assert result.queries == 8
    assert {(w.ref.namespace, w.ref.name) for w in result.workloads} == {
        (s.namespace, s.deployment) for s in all_scenarios()
    }
    # Over the last 5 minutes, no samples and so no workloads (the index may still name
    # the series: it is searched per TSDB block, see PrometheusClient.series_names).
    late = data.fetch("ended", window="5m")
    assert late.workloads == ()


def test_owners_from_the_api_server_replace_kube_state_metrics(data: Data) -> None:
    owners = {(s.namespace, replicaset_name(s)): s.deployment for s in all_scenarios()}
    with data.source("noksm") as source:
        result = source.fetch(WINDOW, end=END_S, replicaset_owners=owners)
    assert set(KSM_SERIES) <= result.missing_series
    for item in all_scenarios():
        workload = _workload(result, item.namespace, item.deployment)
        assert workload.pods == item.replicas
        stats = _only(workload)
        assert stats.container.cpu_limit is None  # only kube-state-metrics knows it
        expected = _only(_workload(data.prod, item.namespace, item.deployment))
        assert stats.cpu.throttled_period_ratio == expected.cpu.throttled_period_ratio


# -- failures -------------------------------------------------------------------------------


def test_unreachable_prometheus_fails_fast_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    config = PrometheusConfig(url=url, retries=2, timeout_seconds=2, bearer_token="s3cret")
    started = time.monotonic()
    with PrometheusSource(config) as source, pytest.raises(PrometheusError) as caught:
        source.fetch("5m", end=END_S)
    assert time.monotonic() - started < 10
    assert url in str(caught.value)
    assert "s3cret" not in str(caught.value)
    # The first queries (presence, kube-state-metrics' four) go out together, 4 at a time
    # (the default concurrency), 3 attempts each; nothing after them is sent.
    assert source.queries_made in (4 * 3, 5 * 3)
    with PrometheusSource(config) as source, pytest.raises(PrometheusError):
        source.build_info()


def test_build_info_is_the_health_check(data: Data) -> None:
    with data.source() as source:
        info = source.build_info()
    assert info["version"].startswith("2.")
    assert math.isfinite(float(info["version"].split(".")[1]))


def test_fractional_timeout_is_understood(data: Data) -> None:
    with data.source(timeout_seconds=7.5) as source:
        assert source.query("vector(1)", END_S).rows[0][1] == "1"


def test_harness_names_a_missing_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "PROMTOOL", Path("/nonexistent/promtool"))
    with pytest.raises(harness.HarnessError, match=r"/nonexistent/promtool.*apt-get install"):
        harness.require_binaries()


def test_compressed_answers_read_the_same(data: Data) -> None:
    # Prometheus gzips an answer when asked (compressAnswers): the same statistics.
    asked = requests.post(
        f"{data.server.url}/api/v1/query",
        data={"query": "up"},
        headers={"Accept-Encoding": "gzip"},
        timeout=30,
    )
    assert asked.headers.get("Content-Encoding") == "gzip"  # the path is really taken
    plain = data.fetch()
    with data.source(compress_answers=True) as source:
        compressed = source.fetch(WINDOW, end=END_S)
    assert compressed.workloads == plain.workloads
    assert compressed.queries == plain.queries


_SERIES = '{cluster="prod", container!="", container!="POD"}'


def test_the_client_reduces_each_series_as_prometheus_functions_would(data: Data) -> None:
    # The range queries' series are reduced in the client (sources/prometheus_range.py)
    # in place of one `*_over_time` subquery per statistic: Prometheus' own functions over
    # the same steps must give the same numbers, for every container of the cluster.
    resolution = Resolution.for_window(HOURS * 3600)
    start, end = resolution.range_bounds(END_S)
    steps = f"[{resolution.window}:{resolution.step}]"
    usage = f"rate(container_cpu_usage_seconds_total{_SERIES}[{resolution.rate}])"
    rss = f"container_memory_rss{_SERIES}"

    def key(labels: Mapping[str, str]) -> tuple[str, str, str]:
        return (labels["namespace"], labels["pod"], labels["container"])

    with data.source(cluster=None) as source:

        def promql(expression: str) -> dict[tuple[str, str, str], float]:
            return {key(labels): float(v) for labels, v in source.query(expression, END_S).rows}

        def reduced(selection: str, reduce: Any) -> dict[tuple[str, str, str], dict[str, float]]:
            answer = source.query_range(selection, start, end, resolution.step_seconds, reduce)
            return {key(labels): statistics for labels, statistics in answer.rows}

        client = reduced(usage, lambda _, raw: reduce_usage(raw)[0])
        memory = reduced(rss, lambda _, raw: rss_statistics(parse_points(raw)[0]))
        functions = {
            **{
                name: f"quantile_over_time({q}, {usage}{steps})"
                for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999))
            },
            "p9999": f"quantile_over_time(0.9999, {usage}{steps})",
            "max": f"max_over_time({usage}{steps})",
            "mean": f"avg_over_time({usage}{steps})",
            "count": f"count_over_time({usage}{steps})",
            "last": f"max_over_time(timestamp({usage}){steps})",
            "rss_p99": f"quantile_over_time(0.99, {rss}{steps})",
            "rss_count": f"count_over_time({rss}{steps})",
            "rss_slope": f"deriv({rss}{steps})",
        }
        expected = {name: promql(expression) for name, expression in functions.items()}
    assert len(client) == len(memory) >= len(all_scenarios())
    for name, values in expected.items():
        ours = memory if name.startswith("rss_") else client
        assert values.keys() == ours.keys(), name
        for k, value in values.items():
            got = ours[k][name]
            assert got == pytest.approx(value, rel=1e-9, abs=1e-9), (name, k)
    growing = [k for k, v in expected["rss_slope"].items() if v > 0]
    assert growing, "some container's RSS grows: the slope is checked on a real trend"
