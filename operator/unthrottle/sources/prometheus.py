"""The Prometheus source: every container's statistics for a whole scope in a few queries.

This module owns a *fetch*: the order of its queries, the values it accepts, and what it
returns (:class:`FetchResult`). The parts live beside it, one concept each:

- :mod:`.prometheus_http`: the HTTP client, retries, errors (:mod:`.prometheus_config`:
  its configuration; :mod:`.prometheus_answers`: the answers it returns).
- :mod:`.prometheus_queries`: the PromQL, the resolution of a window, chunk planning
  (on top of the safe-PromQL primitives of :mod:`.promql`).
- :mod:`.prometheus_rows`: the per-pod rows of the answers, which pod belongs to which
  workload, and which required series count as missing.
- :mod:`.prometheus_aggregate`: per-pod rows → one
  :class:`~unthrottle.model.stats.ContainerStats` per (Deployment, container).

:class:`PrometheusConfig`, :class:`PrometheusError`, :class:`PrometheusSource` and
:class:`FetchResult` are imported from here. The API is synchronous and thread-safe; the
operator calls it through ``asyncio.to_thread``.

A fetch sends the four kube-state-metrics queries once and asks the index once which
series exist over the window, together; sizes the scope from the kube-state-metrics rows;
then sends the three per-chunk queries of each chunk (a scope of up to 10,000 containers
is one chunk: 8 HTTP requests; 3 chunks cost 14), at most ``concurrency`` at once.
Values arrive as strings; each is checked with ``math.isfinite`` and for sign, and NaN,
±Inf and negative values are dropped and counted (``FetchResult.dropped_values``, and by
the series they come from in ``FetchResult.unusable_series``; only an RSS slope may be
negative). Required series that do not exist at any time in the window are reported in
``FetchResult.missing_series`` (rules in :mod:`.prometheus_rows`).

A result with ``warnings`` (a partial response) is ``partial``; callers must not patch
from it.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Final

from unthrottle.model.quantity import ceil_div, parse_duration_ms
from unthrottle.model.workload import WorkloadStats
from unthrottle.sources.prometheus_aggregate import assemble
from unthrottle.sources.prometheus_answers import NamesAnswer, QueryAnswer, QueryStats, RangeAnswer
from unthrottle.sources.prometheus_config import PrometheusConfig
from unthrottle.sources.prometheus_http import PrometheusClient, PrometheusError
from unthrottle.sources.prometheus_queries import (
    RSS,
    STAT_LABEL,
    STAT_SERIES,
    USAGE,
    USAGE_RULE,
    ChunkQuery,
    QueryBuilder,
    Resolution,
    Scope,
    plan_chunks,
)
from unthrottle.sources.prometheus_range import reduce_rss, reduce_usage
from unthrottle.sources.prometheus_rows import SIGNED_STATS, Ksm, Tables, key_of

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
    # The series the CPU usage rates came from: container_cpu_usage_seconds_total, or the
    # recording rule USAGE_RULE where it is recorded (both when it covers part of a scope).
    usage_series: tuple[str, ...] = ()

    @property
    def partial(self) -> bool:
        """Prometheus said the data may be incomplete: fine to report, not to patch from."""
        return bool(self.warnings)


class _Fetch:
    """The state of one fetch: queries made, warnings, dropped values, the tables."""

    def __init__(self, builder: QueryBuilder, at: float) -> None:
        self.builder = builder
        self.at = at
        self.queries = 0
        self.stats: list[QueryStats] = []
        self.warnings: list[str] = []
        self.dropped = 0
        self.unusable: Counter[str] = Counter()
        self.tables = Tables()
        self.usage_series: set[str] = set()

    def record(self, answer: QueryAnswer | NamesAnswer | RangeAnswer[_Reduced]) -> None:
        self.queries += answer.requests
        self.stats.append(answer.stats)
        self.warnings.extend(f"{answer.stats.name}: {w}" for w in answer.warnings)

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
        self.record(answer)
        for labels, raw in answer.rows:
            stat = labels.get(STAT_LABEL, "")
            number = self.value(raw, stat)
            if number is not None:
                yield stat, labels, number

    def collect(self, answer: QueryAnswer | RangeAnswer[_Reduced]) -> None:
        if isinstance(answer, QueryAnswer):
            for stat, labels, number in self.rows(answer):
                self.tables.add(stat, labels, number)
            return
        self.record(answer)
        # A range answer's points are usage rates or RSS (the query says which).
        series = USAGE if answer.stats.name == "cpu-usage" else RSS
        for labels, (statistics, dropped) in answer.rows:
            self.dropped += dropped
            if dropped:
                self.unusable[series] += dropped
            for stat, number in statistics.items():
                self.tables.add(stat, labels, number)

    def ksm(self, answer: QueryAnswer, out: Ksm) -> None:
        for stat, labels, number in self.rows(answer):
            out.add(stat, labels, number)

    def present(self, present: NamesAnswer, out: Ksm) -> Ksm:
        self.record(present)
        out.present = set(present.names)
        return out

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
            usage_series=tuple(sorted(self.usage_series)),
        )


_Reduced = tuple[dict[str, float], int]  # a series' statistics, and its dropped points


def _reduce_usage(_: Mapping[str, str], raw: Sequence[Any]) -> _Reduced:
    return reduce_usage(raw)


def _reduce_rss(_: Mapping[str, str], raw: Sequence[Any]) -> _Reduced:
    return reduce_rss(raw)


class PrometheusSource(PrometheusClient):
    """The client of one Prometheus, plus :meth:`fetch`: the statistics of a scope.

    ``build_info()`` is the health check, ``fetch()`` the statistics of a scope,
    ``query()`` one instant query (for the benchmark); see :class:`PrometheusClient`.
    """

    def _send(self, query: ChunkQuery, builder: QueryBuilder, at: float) -> Answer:
        if query.kind == "instant":
            return self.query(query.promql, at, name=query.name)
        start, end = builder.resolution.range_bounds(at)
        reduce = _reduce_usage if query.kind == "usage" else _reduce_rss
        return self.query_range(
            query.promql,
            start,
            end,
            builder.resolution.step_seconds,
            reduce,
            name=query.name,
            keep_labels=_KEY_LABELS,
        )

    def _read(self, query: ChunkQuery, chunk: Scope, builder: QueryBuilder, at: float) -> Answer:
        """One query of a chunk; a range query's containers with several series (each
        series was reduced alone) read again as their maximum per step, as ``RATE`` and
        RSS are defined (:meth:`QueryBuilder.chunk_queries`)."""
        answer = self._send(query, builder, at)
        if not isinstance(answer, RangeAnswer):
            return answer
        seen = Counter(key_of(labels) for labels, _ in answer.rows)
        several = {key for key, n in seen.items() if n > 1}
        if not several:
            return answer
        again = self._send(builder.aggregated(query, chunk, {k[1] for k in several}), builder, at)
        assert isinstance(again, RangeAnswer)
        rows = [row for row in answer.rows if key_of(row[0]) not in several]
        rows += [row for row in again.rows if key_of(row[0]) in several]
        stats = _added(answer.stats, again.stats, len(rows))
        warnings = answer.warnings + again.warnings
        return RangeAnswer(tuple(rows), warnings, stats, answer.requests + again.requests)

    def _fill_rule_gaps(
        self, run: _Fetch, builder: QueryBuilder, pool: _Pool, estimate: Mapping[str, int]
    ) -> None:
        """Usage from the raw counter for the containers the rule did not record.

        A container with RSS but no usage from the rule (a namespace the rule leaves out,
        a pod its join drops) is read from ``container_cpu_usage_seconds_total``: one
        more query per chunk of the namespaces concerned, only when there are any.
        """
        usage = run.tables["count"]
        gaps = {key for key in run.tables["rss_count"] if key not in usage}
        if not gaps:
            return
        namespaces = {key[0]: estimate.get(key[0], 1) for key in gaps}
        queries = [
            (next(q for q in builder.chunk_queries(chunk) if q.kind == "usage"), chunk)
            for chunk in plan_chunks(namespaces, self.config.max_series_per_query)
        ]
        sent = [pool.submit(self._read, q, chunk, builder, run.at) for q, chunk in queries]
        for future in sent:
            answer = future.result()
            assert isinstance(answer, RangeAnswer)
            rows = tuple(row for row in answer.rows if key_of(row[0]) in gaps)
            run.collect(RangeAnswer(rows, answer.warnings, answer.stats, answer.requests))
        run.usage_series.add(USAGE)

    def _read_kube_state_metrics(self, run: _Fetch, pool: _Pool, scope: Scope) -> Ksm:
        """The kube-state-metrics queries and the index's series over the window, together."""
        builder, at = run.builder, run.at
        present = pool.submit(
            self.series_names,
            builder.presence_selectors(),
            at - builder.resolution.window_seconds,
            at,
            name="series-presence",
        )
        sent = [
            pool.submit(self.query, promql, at, name=name)
            for name, promql in builder.kube_state_metrics(scope)
        ]
        sent.reverse()
        ksm = Ksm()
        while sent:  # in order, each answer dropped once its rows are in ksm
            run.ksm(sent.pop().result(), ksm)
        return run.present(present.result(), ksm)

    def _chunks(self, scope: Scope, estimate: Mapping[str, int]) -> list[Scope]:
        """The whole scope as one chunk when it fits a query, else groups of namespaces."""
        if sum(max(1, n) for n in estimate.values()) <= self.config.max_series_per_query:
            return [scope]
        return list(plan_chunks(estimate, self.config.max_series_per_query))

    def _read_chunks(
        self, run: _Fetch, pool: _Pool, chunks: list[Scope], ksm: Ksm, estimate: Mapping[str, int]
    ) -> None:
        """Every chunk's queries; usage from the recording rule when it serves this resolution,
        and from the raw counter for the containers it leaves out."""
        builder = run.builder
        rule = builder.uses_rule(ksm.present)
        sent = [
            pool.submit(self._read, query, chunk, builder, run.at)
            for chunk in chunks
            for query in builder.chunk_queries(chunk, rule)
        ]
        sent.reverse()
        while sent:  # in order, each answer dropped once its values are in the tables
            run.collect(sent.pop().result())
        if rule:
            run.usage_series.add(USAGE_RULE)
            self._fill_rule_gaps(run, builder, pool, estimate)
        else:
            run.usage_series.add(USAGE)

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
        builder = QueryBuilder(self.config, resolution)
        run = _Fetch(builder, at)
        if scope == ():
            return run.result((), frozenset(), frozenset(), 0, 0)
        with _Pool(self.config.concurrency) as pool:
            ksm = self._read_kube_state_metrics(run, pool, scope)
            estimate = ksm.containers_per_namespace()
            chunks = self._chunks(scope, estimate)
            self._read_chunks(run, pool, chunks, ksm, estimate)
        owners = ksm.owners(replicaset_owners or {})
        workloads, unowned = assemble(
            run.tables, ksm, owners, resolution, self.config.cfs_period_us
        )
        missing, optional = ksm.series_report()
        return run.result(workloads, missing, optional, len(chunks), unowned)


Answer = QueryAnswer | RangeAnswer[_Reduced]


_KEY_LABELS: Final = ("namespace", "pod", "container")


def _added(first: QueryStats, second: QueryStats, series: int) -> QueryStats:
    """One query's cost and that of its follow-up, as one."""
    total = (first.total_queryable_samples or 0) + (second.total_queryable_samples or 0)
    peak = max(first.peak_samples or 0, second.peak_samples or 0)
    measured = first.peak_samples is not None
    return QueryStats(
        name=first.name,
        seconds=first.seconds + second.seconds,
        series=series,
        total_queryable_samples=total if measured else None,
        peak_samples=peak if measured else None,
    )


class _Pool(ThreadPoolExecutor):
    """The fetch's workers: at most ``concurrency`` queries in flight; on an error the
    queries not started yet are cancelled rather than sent."""

    def __init__(self, concurrency: int) -> None:
        super().__init__(max_workers=concurrency, thread_name_prefix="prometheus-query")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.shutdown(wait=True, cancel_futures=exc_type is not None)
