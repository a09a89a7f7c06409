"""The CPU usage from kube-prometheus-stack's recording rule, and the fallback without it.

One real Prometheus holds the named scenarios twice over two hours at 30 s steps:
``cluster="rule"``, over which the rule
``node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m`` was recorded
every 30 s by ``promtool tsdb create-blocks-from rules`` (its expression is the
kubernetes-mixin's without the ``node`` join on ``kube_pod_info``, which the simulator does
not write, and it leaves out the ``batch`` namespace), and ``cluster="norule"``, the same
series without it. A 7-day window is read at a 5-minute step and a 5-minute rate range,
the rule's own, so the rule is used where it was recorded; a 2-hour window (2-minute
rates) never uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from unthrottle.model.workload import WorkloadStats
from unthrottle.sandbox.prometheus import PrometheusFactory, PrometheusServer
from unthrottle.sim.openmetrics import iter_openmetrics
from unthrottle.sim.scenarios import all_scenarios
from unthrottle.sources.prometheus import FetchResult, PrometheusConfig, PrometheusSource
from unthrottle.sources.prometheus_queries import USAGE, USAGE_RULE, QueryBuilder, Resolution

pytestmark = pytest.mark.integration

END_S = 1_700_002_800  # a multiple of 5 minutes
START_S = END_S - 2 * 3600
STEP_MS = 30_000
NOT_BATCH = sorted({s.namespace for s in all_scenarios()} - {"batch"})
RULES = f"""groups:
  - name: k8s.rules.container_cpu_usage_seconds_total
    rules:
      - record: {USAGE_RULE}
        expr: >-
          sum by (cluster, namespace, pod, container) (
            rate({USAGE}{{job="kubelet", metrics_path="/metrics/cadvisor", image!="",
            cluster="rule", namespace!="batch"}}[5m]))
"""


@dataclass
class Data:
    server: PrometheusServer

    def fetch(self, cluster: str, window: str = "7d", **kwargs: object) -> FetchResult:
        config = PrometheusConfig(
            url=self.server.url, extra_matchers={"cluster": cluster}, collect_stats=True
        )
        with PrometheusSource(config) as source:
            return source.fetch(window, end=END_S, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def data(prometheus_factory: PrometheusFactory) -> Data:
    files = {
        f"{cluster}.om": iter_openmetrics(
            all_scenarios(),
            START_S * 1000,
            END_S * 1000,
            step_ms=STEP_MS,
            extra_labels={"cluster": cluster},
        )
        for cluster in ("rule", "norule")
    }
    server = prometheus_factory("source-rule", files)
    if not (server.data_dir / "recorded").exists():
        server.record_rules(RULES, START_S, END_S)
        (server.data_dir / "recorded").touch()
    return Data(server)


def _by_ref(result: FetchResult) -> dict[tuple[str, str], WorkloadStats]:
    return {(w.ref.namespace, w.ref.name): w for w in result.workloads}


def _usage_samples(result: FetchResult) -> int:
    return sum(s.total_queryable_samples or 0 for s in result.query_stats if s.name == "cpu-usage")


def _series(data: Data, promql: str, shift: float = 0.0) -> dict[tuple[str, ...], Sequence[Any]]:
    with PrometheusSource(PrometheusConfig(url=data.server.url)) as source:
        answer = source.query_range(
            promql, START_S - shift, END_S - shift, 300, lambda _, points: points
        )
    return {(m["namespace"], m["pod"], m["container"]): v for m, v in answer.rows}


def test_at_each_step_the_rule_is_the_5m_rate_of_its_last_evaluation(data: Data) -> None:
    config = PrometheusConfig(url=data.server.url, extra_matchers={"cluster": "rule"})
    builder = QueryBuilder(config, Resolution.for_window(7 * 86400))
    recorded = _series(data, builder.usage_rate(None, rule=True))
    # When, at each step, the rule was last evaluated. Prometheus (and promtool) evaluate a
    # group at a fixed offset into each interval, so this is usually the step less that
    # offset; promtool skips an evaluation that falls in the last second before one of the
    # blocks it writes (its query ranges end on whole seconds), and the step then sees the
    # evaluation one interval earlier.
    evaluated = _series(data, f'timestamp({USAGE_RULE}{{cluster="rule"}})')
    raw_rate = builder.usage_rate(None).replace('cluster="rule"', 'cluster="norule"')
    assert len(recorded) == 12  # the scenarios' pods outside batch
    raw_at: dict[float, dict[tuple[str, ...], str]] = {}
    lags: dict[float, set[float]] = {}
    with PrometheusSource(PrometheusConfig(url=data.server.url)) as source:
        for key, points in recorded.items():
            assert len(points) >= 23, key
            stamps = {t: float(v) for t, v in evaluated[key]}
            for t, value in points:
                at = stamps[t]
                lags.setdefault(t, set()).add(round(t - at, 3))  # ms timestamps
                if at not in raw_at:
                    rows = source.query(raw_rate, at).rows
                    raw_at[at] = {(m["namespace"], m["pod"], m["container"]): v for m, v in rows}
                assert float(value) == pytest.approx(float(raw_at[at][key]), rel=1e-9), (key, t)
    # One group, one offset: every container was evaluated at the same instants, less than
    # one interval before each step but at most one step (the window crosses one block
    # boundary), where the evaluation before was used.
    assert all(len(lag) == 1 for lag in lags.values()), lags
    by_step = sorted((t, lag.pop()) for t, lag in lags.items())
    offset = min(lag for _, lag in by_step)
    assert 0 <= offset < 30
    skipped = [t for t, lag in by_step if lag != offset]
    assert len(skipped) <= 1, by_step
    for t in skipped:
        assert dict(by_step)[t] == offset + 30, by_step
        assert 7200 - 1 < (t - offset) % 7200 < 7200, by_step  # promtool writes 2-hour blocks


def test_the_rule_gives_the_statistics_of_the_raw_counter_reading_a_tenth(data: Data) -> None:
    recorded = data.fetch("rule", namespaces=NOT_BATCH)
    raw = data.fetch("norule", namespaces=NOT_BATCH)
    assert recorded.usage_series == (USAGE_RULE,)
    assert raw.usage_series == (USAGE,)
    rule_workloads, raw_workloads = _by_ref(recorded), _by_ref(raw)
    assert set(rule_workloads) == set(raw_workloads) and len(raw_workloads) == 7
    for ref, workload in rule_workloads.items():
        for mine, theirs in zip(workload.containers, raw_workloads[ref].containers, strict=True):
            # The same statistics over rates shifted by the rule's evaluation offset (under
            # one interval): close, not equal, over the 24 steps of two hours.
            a, b = mine.cpu.usage_cores, theirs.cpu.usage_cores
            seen = {n: (getattr(a, n), getattr(b, n)) for n in ("p50", "p95", "mean", "max")}
            assert a.mean == pytest.approx(b.mean, rel=0.05, abs=3), (ref, seen)
            assert a.p50 == pytest.approx(b.p50, rel=0.10, abs=3), (ref, seen)
            assert a.p95 == pytest.approx(b.p95, rel=0.15, abs=3), (ref, seen)
            assert abs(mine.cpu.samples - theirs.cpu.samples) <= 1
            assert mine.cpu.throttled_period_ratio == theirs.cpu.throttled_period_ratio
    # The rule's series: one sample per container and step; the counter: every scrape of
    # each 5-minute rate range (10 at 30 s), once.
    assert 0 < _usage_samples(recorded) * 5 < _usage_samples(raw)


def test_what_the_rule_does_not_cover_is_read_from_the_raw_counter(data: Data) -> None:
    whole = data.fetch("rule")
    raw = data.fetch("norule")
    assert whole.usage_series == (USAGE, USAGE_RULE)
    assert whole.queries == raw.queries + 1  # the counter's usage for the batch namespace
    assert len(whole.workloads) == len(raw.workloads) == 8
    batch = [w.containers for w in whole.workloads if w.ref.namespace == "batch"]
    assert batch == [w.containers for w in raw.workloads if w.ref.namespace == "batch"]
    uncovered = data.fetch("rule", namespaces=["batch"])
    assert uncovered.usage_series == (USAGE, USAGE_RULE)  # asked the rule, then the counter
    assert [w.containers for w in uncovered.workloads] == batch


def test_other_rate_ranges_never_read_the_rule(data: Data) -> None:
    two_hours = data.fetch("rule", window="2h")
    assert two_hours.usage_series == (USAGE,)
    assert len(two_hours.workloads) == 8
