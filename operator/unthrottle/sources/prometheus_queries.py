"""The PromQL of a fetch: which series, at which resolution, in how many queries.

This module owns the text unthrottle sends to Prometheus (:class:`QueryBuilder`), the
subquery step and rate range of a window (:class:`Resolution`), and how a large scope is
split into chunks of whole namespaces (:func:`plan_chunks`). It is pure: text in, text
out (unit-tested, printed by the benchmark). Label values become PromQL only through the
safe primitives of :mod:`unthrottle.sources.promql`. What each statistic means once it is
aggregated over a workload's pods is in :mod:`unthrottle.sources.prometheus_aggregate`.

Queries per fetch (not per Deployment)
    One request to the index for which series exist over the window
    (:meth:`QueryBuilder.presence_selectors`, every namespace), one kube-state-metrics
    query for the whole scope (owners, requests, limits, OOM kills), then five per *chunk*:
    CPU counters, three of CPU usage statistics and one of memory. Several statistics
    travel in one query, each as ``label_replace(<stat>, "unthrottle_stat", "<name>", "",
    "")``, joined with ``or``: the sides differ in that label, so ``or`` keeps all of them,
    and Prometheus evaluates the sides one after another, so the peak of samples in memory
    is that of the largest side, not the sum (both checked with Prometheus 2.42). A scope
    is one chunk unless its kube-state-metrics rows say it has more than
    ``max_series_per_query`` containers (default 10,000): a usage subquery holds
    ``containers × steps`` points at once, and 10,000 × 2,016 steps is 20 M, well under
    Prometheus' default ``--query.max-samples`` of 50 M; a tagged answer is then about 1.5
    MB of JSON per statistic. Larger scopes are split into chunks of whole namespaces
    (``namespace=~"a|b|..."``, regex-escaped); a single namespace above the threshold stays
    one chunk. So a scope of up to 10,000 containers (1,000 Deployments of 3 pods × 2
    containers is 6,000) costs 7 HTTP requests, and 3 chunks cost 17.

Label hygiene
    cAdvisor selectors exclude the pause container (``container="POD"``) and the pod-level
    cgroup (``container=""``, whose usage is the sum of the pod's containers), require a
    ``pod``, and never require ``job`` or ``metrics_path``. ``extra_matchers`` (e.g.
    ``cluster="prod"``) are added to every selector; ``cadvisor_matchers`` and
    ``kube_state_metrics_matchers`` to one family only (``job="kubelet"`` must not be
    applied to kube-state-metrics series). All are equality matchers with escaped values.

Resolution (:class:`Resolution`)
    The subquery step is ``max(scrape, window / 2016)`` rounded up to a multiple of the
    scrape interval (30 s by default): 7d → 5m, 1d → 1m, 1h and 5m → 30 s. The rate range
    is ``max(step, 4 × scrape)``, at least the step so that consecutive rates cover every
    sample and at least four scrapes so that a missed scrape does not lose a point: 7d →
    5m, 5m → 2m.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from unthrottle.model.quantity import ceil_div, format_duration
from unthrottle.sources.promql import (
    Matcher,
    equality_matchers,
    join_or,
    quote,
    regex_escape,
    selector,
    tag,
)

if TYPE_CHECKING:
    from unthrottle.sources.prometheus_http import PrometheusConfig

__all__ = [
    "DEFAULT_MAX_POINTS",
    "DEFAULT_MAX_SERIES_PER_QUERY",
    "KSM_SERIES",
    "OPTIONAL_SERIES",
    "REQUIRED_SERIES",
    "RESERVED_LABELS",
    "STAT_LABEL",
    "STAT_SERIES",
    "QueryBuilder",
    "Resolution",
    "Scope",
    "plan_chunks",
]

# The series, by name (docs/install.md, "Prerequisites").
USAGE: Final = "container_cpu_usage_seconds_total"
PERIODS: Final = "container_cpu_cfs_periods_total"
THROTTLED_PERIODS: Final = "container_cpu_cfs_throttled_periods_total"
THROTTLED_SECONDS: Final = "container_cpu_cfs_throttled_seconds_total"
SPEC_PERIOD: Final = "container_spec_cpu_period"
RSS: Final = "container_memory_rss"
WORKING_SET: Final = "container_memory_working_set_bytes"
POD_OWNER: Final = "kube_pod_owner"
REPLICASET_OWNER: Final = "kube_replicaset_owner"
REQUESTS: Final = "kube_pod_container_resource_requests"
LIMITS: Final = "kube_pod_container_resource_limits"
LAST_TERMINATED: Final = "kube_pod_container_status_last_terminated_reason"
RESTARTS: Final = "kube_pod_container_status_restarts_total"

CADVISOR_REQUIRED: Final = (USAGE, PERIODS, THROTTLED_PERIODS, RSS, WORKING_SET)
KSM_SERIES: Final = (POD_OWNER, REPLICASET_OWNER, REQUESTS, LIMITS, LAST_TERMINATED)
REQUIRED_SERIES: Final = (*CADVISOR_REQUIRED, *KSM_SERIES)
OPTIONAL_SERIES: Final = (THROTTLED_SECONDS, SPEC_PERIOD, RESTARTS)
CADVISOR_ALL: Final = (*CADVISOR_REQUIRED, THROTTLED_SECONDS, SPEC_PERIOD)
KSM_ALL: Final = (*KSM_SERIES, RESTARTS)

# Every answer row carries the statistic it is in this label (see ``tag``).
STAT_LABEL: Final = "unthrottle_stat"
# The series each statistic is computed from, to name it when its values are unusable.
STAT_SERIES: Final[Mapping[str, str]] = MappingProxyType(
    {
        **dict.fromkeys(("p50", "p95", "p99", "p999", "p9999", "max", "mean", "count"), USAGE),
        "last": USAGE,
        "periods": PERIODS,
        "throttled": THROTTLED_PERIODS,
        "throttled_seconds": THROTTLED_SECONDS,
        "cfs_period_us": SPEC_PERIOD,
        **dict.fromkeys(("rss_p99", "rss_count", "rss_slope", "rss_max"), RSS),
        "wss_max": WORKING_SET,
        "pod_owner": POD_OWNER,
        "rs_owner": REPLICASET_OWNER,
        "cpu_request": REQUESTS,
        "memory_request": REQUESTS,
        "cpu_limit": LIMITS,
        "memory_limit": LIMITS,
        "oom": LAST_TERMINATED,
        "restarts": RESTARTS,
    }
)
_BY_CONTAINER: Final = "namespace, pod, container"
# Labels the queries group by or set: a configured matcher may not use them.
RESERVED_LABELS: Final = frozenset({"namespace", "pod", "container", STAT_LABEL})

DEFAULT_MAX_POINTS: Final = 2016  # 7 days at 5 minutes
DEFAULT_MAX_SERIES_PER_QUERY: Final = 10_000

Scope = tuple[str, ...] | None  # namespaces, or None for every namespace


@dataclass(frozen=True, slots=True)
class Resolution:
    """Window, subquery step and rate range of a fetch, in whole seconds."""

    window_seconds: int
    step_seconds: int
    rate_seconds: int

    @classmethod
    def for_window(
        cls,
        window_seconds: int,
        scrape_interval_seconds: int = 30,
        max_points: int = DEFAULT_MAX_POINTS,
    ) -> Resolution:
        """The step and rate range for a window (see the module docstring)."""
        if window_seconds < 2 * scrape_interval_seconds:
            raise ValueError(
                f"window of {window_seconds}s is shorter than two scrape intervals "
                f"({scrape_interval_seconds}s)"
            )
        per_point = ceil_div(window_seconds, max_points)
        step = max(1, ceil_div(per_point, scrape_interval_seconds)) * scrape_interval_seconds
        return cls(window_seconds, step, max(step, 4 * scrape_interval_seconds))

    @property
    def window(self) -> str:
        return format_duration(self.window_seconds * 1000)

    @property
    def step(self) -> str:
        return format_duration(self.step_seconds * 1000)

    @property
    def rate(self) -> str:
        return format_duration(self.rate_seconds * 1000)


def plan_chunks(containers_per_namespace: Mapping[str, int], limit: int) -> list[tuple[str, ...]]:
    """Namespaces packed, in name order, into chunks of at most ``limit`` containers.

    A namespace counts at least 1; one above ``limit`` is a chunk of its own.
    """
    chunks: list[tuple[str, ...]] = []
    current: list[str] = []
    size = 0
    for namespace in sorted(containers_per_namespace):
        n = max(1, containers_per_namespace[namespace])
        if current and size + n > limit:
            chunks.append(tuple(current))
            current, size = [], 0
        current.append(namespace)
        size += n
    if current:
        chunks.append(tuple(current))
    return chunks


class QueryBuilder:
    """The PromQL of a fetch. Pure: text in, text out (unit-tested, printed by the bench)."""

    def __init__(self, config: PrometheusConfig, resolution: Resolution) -> None:
        self._extra = equality_matchers(config.extra_matchers)
        self._cadvisor = (
            Matcher("container", "!=", ""),
            Matcher("container", "!=", "POD"),
            Matcher("pod", "!=", ""),
            *equality_matchers(config.cadvisor_matchers),
        )
        self._ksm = equality_matchers(config.kube_state_metrics_matchers)
        self.resolution = resolution

    @staticmethod
    def _scope(namespaces: Scope) -> tuple[Matcher, ...]:
        return () if namespaces is None else (Matcher.any_of("namespace", namespaces),)

    def cadvisor(self, metric: str, namespaces: Scope) -> str:
        """A cAdvisor selector: scope, hygiene and the configured matchers."""
        return selector(metric, (*self._scope(namespaces), *self._cadvisor, *self._extra))

    def ksm(self, metric: str, namespaces: Scope, *matchers: Matcher) -> str:
        """A kube-state-metrics selector."""
        return selector(metric, (*matchers, *self._scope(namespaces), *self._ksm, *self._extra))

    def _present(self, names: Iterable[str], family: Iterable[Matcher]) -> str:
        regex = "|".join(regex_escape(n) for n in names)
        matchers = ", ".join(m.render() for m in (*family, *self._extra))
        return f"{{__name__=~{quote(regex)}, {matchers}}}"

    def presence_selectors(self) -> tuple[str, str]:
        """Selectors (``match[]``) of every series a fetch reads, in any namespace.

        cAdvisor's under that family's equality matchers only (the hygiene matchers narrow
        which containers count, not whether the series exist), kube-state-metrics' under
        its own; the extra matchers apply to both.
        """
        cadvisor_family = (m for m in self._cadvisor if m.op == "=")
        return (self._present(CADVISOR_ALL, cadvisor_family), self._present(KSM_ALL, self._ksm))

    def kube_state_metrics(self, namespaces: Scope) -> str:
        """Owners, requests, limits and OOM kills over the window."""
        w = self.resolution.window
        rs_owner = self.ksm(REPLICASET_OWNER, namespaces, Matcher.equal("owner_kind", "Deployment"))
        oom = (
            f"max by ({_BY_CONTAINER}) (max_over_time("
            f"{self.ksm(LAST_TERMINATED, namespaces, Matcher.equal('reason', 'OOMKilled'))}"
            f"[{w}]))"
        )
        parts = [
            tag(
                f"max by (namespace, pod, owner_kind, owner_name) "
                f"(max_over_time({self.ksm(POD_OWNER, namespaces)}[{w}]))",
                STAT_LABEL,
                "pod_owner",
            ),
            tag(
                f"max by (namespace, replicaset, owner_name) (max_over_time({rs_owner}[{w}]))",
                STAT_LABEL,
                "rs_owner",
            ),
        ]
        for stat, metric, resource in (
            ("cpu_request", REQUESTS, "cpu"),
            ("cpu_limit", LIMITS, "cpu"),
            ("memory_request", REQUESTS, "memory"),
            ("memory_limit", LIMITS, "memory"),
        ):
            sel = self.ksm(metric, namespaces, Matcher.equal("resource", resource))
            parts.append(
                tag(f"max by ({_BY_CONTAINER}) (last_over_time({sel}[{w}]))", STAT_LABEL, stat)
            )
        parts.append(tag(oom, STAT_LABEL, "oom"))
        restarts = (
            f"max by ({_BY_CONTAINER}) (increase({self.ksm(RESTARTS, namespaces)}[{w}]))"
            f" and on ({_BY_CONTAINER}) ({oom})"
        )
        parts.append(tag(restarts, STAT_LABEL, "restarts"))
        return join_or(parts)

    def cpu_counters(self, namespaces: Scope) -> str:
        """Increases of the CFS counters over the window, and the CFS period."""
        w = self.resolution.window
        parts = [
            tag(
                f"sum by ({_BY_CONTAINER}) (increase({self.cadvisor(metric, namespaces)}[{w}]))",
                STAT_LABEL,
                stat,
            )
            for stat, metric in (
                ("periods", PERIODS),
                ("throttled", THROTTLED_PERIODS),
                ("throttled_seconds", THROTTLED_SECONDS),
            )
        ]
        spec = self.cadvisor(SPEC_PERIOD, namespaces)
        period = f"max by ({_BY_CONTAINER}) (last_over_time({spec}[{w}]))"
        parts.append(tag(period, STAT_LABEL, "cfs_period_us"))
        return join_or(parts)

    def usage_rate(self, namespaces: Scope) -> str:
        """``RATE``: the CPU usage rate per container of a pod, one series per container."""
        sel = self.cadvisor(USAGE, namespaces)
        return f"max by ({_BY_CONTAINER}) (rate({sel}[{self.resolution.rate}]))"

    def cpu_usage(self, namespaces: Scope) -> tuple[str, str, str]:
        """Three queries of usage statistics over the rate subquery."""
        sub = f"{self.usage_rate(namespaces)}[{self.resolution.window}:{self.resolution.step}]"

        def quantile(stat: str, q: str) -> str:
            return tag(f"quantile_over_time({q}, {sub})", STAT_LABEL, stat)

        ts_sub = (
            f"timestamp({self.usage_rate(namespaces)})"
            f"[{self.resolution.window}:{self.resolution.step}]"
        )
        return (
            join_or([quantile("p50", "0.5"), quantile("p95", "0.95"), quantile("p99", "0.99")]),
            join_or(
                [
                    quantile("p999", "0.999"),
                    quantile("p9999", "0.9999"),
                    tag(f"max_over_time({sub})", STAT_LABEL, "max"),
                ]
            ),
            join_or(
                [
                    tag(f"avg_over_time({sub})", STAT_LABEL, "mean"),
                    tag(f"count_over_time({sub})", STAT_LABEL, "count"),
                    tag(f"max_over_time({ts_sub})", STAT_LABEL, "last"),
                ]
            ),
        )

    def memory(self, namespaces: Scope) -> str:
        """RSS percentiles, maxima, sample count and slope; working-set maximum."""
        w, s = self.resolution.window, self.resolution.step
        rss, wss = self.cadvisor(RSS, namespaces), self.cadvisor(WORKING_SET, namespaces)
        rss_sub = f"max by ({_BY_CONTAINER}) ({rss})[{w}:{s}]"
        return join_or(
            [
                tag(f"quantile_over_time(0.99, {rss_sub})", STAT_LABEL, "rss_p99"),
                tag(f"count_over_time({rss_sub})", STAT_LABEL, "rss_count"),
                tag(f"deriv({rss_sub})", STAT_LABEL, "rss_slope"),
                tag(f"max by ({_BY_CONTAINER}) (max_over_time({rss}[{w}]))", STAT_LABEL, "rss_max"),
                tag(f"max by ({_BY_CONTAINER}) (max_over_time({wss}[{w}]))", STAT_LABEL, "wss_max"),
            ]
        )

    def chunk_queries(self, namespaces: Scope) -> list[tuple[str, str]]:
        """(name, PromQL) of the per-chunk queries, in the order they are sent."""
        u1, u2, u3 = self.cpu_usage(namespaces)
        return [
            ("cpu-counters", self.cpu_counters(namespaces)),
            ("cpu-usage-percentiles", u1),
            ("cpu-usage-tail", u2),
            ("cpu-usage-coverage", u3),
            ("memory", self.memory(namespaces)),
        ]
