"""The Prometheus source: every container's statistics for a whole scope in a few queries.

This module owns a *fetch*: the order of its queries, the values it accepts, and what it
returns (:class:`FetchResult`). The parts live beside it, one concept each:

- :mod:`.prometheus_http`: configuration, the HTTP client, retries, errors, answers.
- :mod:`.prometheus_queries`: the PromQL, the resolution of a window, chunk planning
  (on top of the safe-PromQL primitives of :mod:`.promql`).
- :mod:`.prometheus_aggregate`: per-pod rows → one
  :class:`~unthrottle.model.stats.ContainerStats` per (Deployment, container), and which
  required series count as missing.

:class:`PrometheusConfig`, :class:`PrometheusError`, :class:`PrometheusSource` and
:class:`FetchResult` are imported from here. The API is synchronous and thread-safe; the
operator calls it through ``asyncio.to_thread``.

A fetch sends the kube-state-metrics query once, asks the index once which series exist
over the window, sizes the scope from the kube-state-metrics rows, then sends the five
per-chunk queries of each chunk (a scope of up to 10,000 containers is one chunk: 7 HTTP
requests; 3 chunks cost 17). Values arrive as strings; each is checked with
``math.isfinite`` and for sign, and NaN, ±Inf and negative values are dropped and counted
(``FetchResult.dropped_values``, and by the series they come from in
``FetchResult.unusable_series``; only an RSS slope may be negative). Required series that
do not exist at any time in the window are reported in ``FetchResult.missing_series``
(rules in :mod:`.prometheus_aggregate`).

A result with ``warnings`` (a partial response) is ``partial``; callers must not patch
from it.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from unthrottle.model.quantity import ceil_div, parse_duration_ms
from unthrottle.model.workload import WorkloadStats
from unthrottle.sources.prometheus_aggregate import SIGNED_STATS, Ksm, Tables, assemble
from unthrottle.sources.prometheus_http import (
    PrometheusClient,
    PrometheusConfig,
    PrometheusError,
    QueryAnswer,
    QueryStats,
)
from unthrottle.sources.prometheus_queries import (
    STAT_LABEL,
    STAT_SERIES,
    QueryBuilder,
    Resolution,
    Scope,
    plan_chunks,
)

__all__ = [
    "FetchResult",
    "PrometheusConfig",
    "PrometheusError",
    "PrometheusSource",
]


@dataclass(frozen=True)
class FetchResult:
    """Everything one fetch learnt (see :mod:`.prometheus_aggregate` for each statistic)."""

    workloads: tuple[WorkloadStats, ...]
    missing_series: frozenset[str]
    optional_series: frozenset[str]
    queries: int
    query_stats: tuple[QueryStats, ...]
    warnings: tuple[str, ...]
    dropped_values: int
    resolution: Resolution
    end: float
    chunks: int
    pods_without_deployment: int  # pods with usage series but no Deployment owner found
    # The series whose values were unusable (NaN, ±Inf, negative): name → values dropped.
    unusable_series: Mapping[str, int] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        """Prometheus said the data may be incomplete: fine to report, not to patch from."""
        return bool(self.warnings)


class _Fetch:
    """The state of one fetch: queries made, warnings, dropped values."""

    def __init__(self, client: PrometheusClient, builder: QueryBuilder, at: float) -> None:
        self.client = client
        self.builder = builder
        self.at = at
        self.queries = 0
        self.stats: list[QueryStats] = []
        self.warnings: list[str] = []
        self.dropped = 0
        self.unusable: Counter[str] = Counter()

    def run(self, name: str, promql: str) -> QueryAnswer:
        answer = self.client.query(promql, self.at, name=name)
        self.queries += answer.requests
        self.stats.append(answer.stats)
        self.warnings.extend(f"{name}: {w}" for w in answer.warnings)
        return answer

    def value(self, raw: str, stat: str) -> float | None:
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or (number < 0 and stat not in SIGNED_STATS):
            self.dropped += 1
            self.unusable[STAT_SERIES.get(stat, stat)] += 1
            return None
        return number

    def rows(self, answer: QueryAnswer) -> Iterator[tuple[str, Mapping[str, str], float]]:
        for labels, raw in answer.rows:
            stat = labels.get(STAT_LABEL, "")
            number = self.value(raw, stat)
            if number is not None:
                yield stat, labels, number

    def collect(self, name: str, promql: str, tables: Tables) -> None:
        for stat, labels, number in self.rows(self.run(name, promql)):
            tables.add(stat, labels, number)

    def ksm(self, scope: Scope) -> Ksm:
        out = Ksm()
        answer = self.run("kube-state-metrics", self.builder.kube_state_metrics(scope))
        for stat, labels, number in self.rows(answer):
            out.add(stat, labels, number)
        out.present = set(self.present())
        return out

    def present(self) -> frozenset[str]:
        """The names of the series a fetch reads that exist at some time in the window."""
        name = "series-presence"
        start = self.at - self.builder.resolution.window_seconds
        answer = self.client.series_names(
            self.builder.presence_selectors(), start, self.at, name=name
        )
        self.queries += answer.requests
        self.stats.append(answer.stats)
        self.warnings.extend(f"{name}: {w}" for w in answer.warnings)
        return answer.names

    def result(
        self,
        workloads: Sequence[WorkloadStats],
        missing: frozenset[str],
        optional: frozenset[str],
        chunks: int,
        unowned: int,
    ) -> FetchResult:
        return FetchResult(
            workloads=tuple(workloads),
            missing_series=missing,
            optional_series=optional,
            queries=self.queries,
            query_stats=tuple(self.stats),
            warnings=tuple(self.warnings),
            dropped_values=self.dropped,
            resolution=self.builder.resolution,
            end=self.at,
            chunks=chunks,
            pods_without_deployment=unowned,
            unusable_series=dict(self.unusable),
        )


class PrometheusSource(PrometheusClient):
    """The client of one Prometheus, plus :meth:`fetch`: the statistics of a scope.

    ``build_info()`` is the health check, ``fetch()`` the statistics of a scope,
    ``query()`` one instant query (for the benchmark); see :class:`PrometheusClient`.
    """

    def fetch(
        self,
        window: str | int,
        *,
        namespaces: Iterable[str] | None = None,
        end: float | None = None,
        replicaset_owners: Mapping[tuple[str, str], str] | None = None,
    ) -> FetchResult:
        """Statistics of every Deployment's containers in scope, over ``window`` to ``end``.

        ``window`` is a Prometheus duration (``"7d"``, ``"5m"``) or milliseconds;
        ``namespaces`` None means every namespace; ``end`` is epoch seconds (default now);
        ``replicaset_owners`` maps (namespace, ReplicaSet) to its Deployment and takes
        precedence over ``kube_replicaset_owner``. Raises :class:`PrometheusError` when
        Prometheus cannot answer, ``ValueError`` for a window shorter than two scrape
        intervals. Without kube-state-metrics (or ``replicaset_owners``) no pod maps to a
        Deployment and ``workloads`` is empty, with the series in ``missing_series``.
        """
        window_ms = parse_duration_ms(window) if isinstance(window, str) else window
        resolution = Resolution.for_window(
            ceil_div(window_ms, 1000), self.config.scrape_interval_seconds, self.config.max_points
        )
        at = time.time() if end is None else float(end)
        scope: Scope = None if namespaces is None else tuple(sorted(set(namespaces)))
        run = _Fetch(self, QueryBuilder(self.config, resolution), at)
        if scope == ():
            return run.result((), frozenset(), frozenset(), 0, 0)
        ksm = run.ksm(scope)
        chunks: list[Scope]
        estimate = ksm.containers_per_namespace()
        if sum(max(1, n) for n in estimate.values()) <= self.config.max_series_per_query:
            chunks = [scope]
        else:
            chunks = list(plan_chunks(estimate, self.config.max_series_per_query))
        tables = Tables()
        for chunk in chunks:
            for name, promql in run.builder.chunk_queries(chunk):
                run.collect(name, promql, tables)
        owners = ksm.owners(replicaset_owners or {})
        workloads, unowned = assemble(tables, ksm, owners, resolution, self.config.cfs_period_us)
        missing, optional = ksm.series_report()
        return run.result(workloads, missing, optional, len(chunks), unowned)
