"""The PromQL of a fetch: which series, at which resolution, in how many queries.

This module owns the text unthrottle sends to Prometheus (:class:`QueryBuilder`), the
subquery step and rate range of a window (:class:`Resolution`), and how a large scope is
split into chunks of whole namespaces (:func:`plan_chunks`). It is pure: text in, text
out (unit-tested, printed by the benchmark). Label values become PromQL only through the
safe primitives of :mod:`unthrottle.sources.promql`. What each statistic means once it is
aggregated over a workload's pods is in :mod:`unthrottle.sources.prometheus_aggregate`.

Queries per fetch (not per Deployment)
    One request to the index for which series exist over the window
    (:meth:`QueryBuilder.presence_selectors`, every namespace), four kube-state-metrics
    queries for the whole scope (owners, requests, limits, OOM kills; apart so that
    Prometheus evaluates them in parallel), then three per
    *chunk*: an instant query of the CPU counters and memory maxima, and two range queries
    over the window at the step, of the CPU usage rate and of RSS, whose series the client
    reduces (:mod:`.prometheus_range`); one more per range query when some container has
    several series (:meth:`QueryBuilder.chunk_queries`). Several statistics travel in one
    instant query, each as ``label_replace(<stat>, "unthrottle_stat", "<name>", "",
    "")``, joined with ``or``: the sides differ in that label, so ``or`` keeps all of them,
    and Prometheus evaluates the sides one after another, so the peak of samples in memory
    is that of the largest side, not the sum (both checked with Prometheus 2.42). A scope
    is one chunk unless its kube-state-metrics rows say it has more than
    ``max_series_per_query`` containers (default 10,000): a range query holds
    ``series × steps`` points at once, and 10,000 × 2,016 steps is 20 M, well under
    Prometheus' default ``--query.max-samples`` of 50 M. Larger scopes are split into
    chunks of whole namespaces (``namespace=~"a|b|..."``, regex-escaped); a single
    namespace above the threshold stays one chunk. So a scope of up to 10,000 containers
    (1,000 Deployments of 3 pods × 2 containers is 6,000) costs 5 HTTP requests, and 3
    chunks cost 11.

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
from typing import TYPE_CHECKING, Final, Literal

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
    from unthrottle.sources.prometheus_config import PrometheusConfig

__all__ = [
    "DEFAULT_MAX_POINTS",
    "DEFAULT_MAX_SERIES_PER_QUERY",
    "KSM_SERIES",
    "OPTIONAL_SERIES",
    "REQUIRED_SERIES",
    "RESERVED_LABELS",
    "STAT_LABEL",
    "STAT_SERIES",
    "USAGE_RULE",
    "ChunkQuery",
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
# kube-prometheus-stack's recording rule (kubernetes-mixin): per container, the sum of
# rate(container_cpu_usage_seconds_total[5m]) over its series, recorded every evaluation
# interval. Read instead of the raw counter when a fetch's rate range is 5m as well.
USAGE_RULE: Final = "node_namespace_pod_container:container_cpu_usage_seconds_total:sum_rate5m"
USAGE_RULE_RATE_SECONDS: Final = 300

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

    def range_bounds(self, at: float) -> tuple[float, float]:
        """(start, end) in epoch seconds of the range query over the window ending at
        ``at``: the steps of a subquery ``[W:S]`` evaluated at ``at`` (multiples of the
        step from ``at - W`` on, up to ``at``), so both read the same points."""
        step_ms = self.step_seconds * 1000
        end_ms = round(at * 1000)
        start_ms = -(-(end_ms - self.window_seconds * 1000) // step_ms) * step_ms
        return start_ms / 1000, end_ms / 1000

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
        self._hygiene = (
            Matcher("container", "!=", ""),
            Matcher("container", "!=", "POD"),
            Matcher("pod", "!=", ""),
        )
        self._cadvisor = (*self._hygiene, *equality_matchers(config.cadvisor_matchers))
        self._ksm = equality_matchers(config.kube_state_metrics_matchers)
        self.resolution = resolution

    @staticmethod
    def _scope(namespaces: Scope) -> tuple[Matcher, ...]:
        return () if namespaces is None else (Matcher.any_of("namespace", namespaces),)

    def cadvisor(self, metric: str, namespaces: Scope, *matchers: Matcher) -> str:
        """A cAdvisor selector: scope, hygiene and the configured matchers."""
        return selector(
            metric, (*matchers, *self._scope(namespaces), *self._cadvisor, *self._extra)
        )

    def ksm(self, metric: str, namespaces: Scope, *matchers: Matcher) -> str:
        """A kube-state-metrics selector."""
        return selector(metric, (*matchers, *self._scope(namespaces), *self._ksm, *self._extra))

    def _present(self, names: Iterable[str], family: Iterable[Matcher]) -> str:
        regex = "|".join(regex_escape(n) for n in names)
        matchers = ", ".join(m.render() for m in (*family, *self._extra))
        return f"{{__name__=~{quote(regex)}, {matchers}}}"

    def presence_selectors(self) -> tuple[str, str, str]:
        """Selectors (``match[]``) of every series a fetch may read, in any namespace.

        cAdvisor's under that family's equality matchers only (the hygiene matchers narrow
        which containers count, not whether the series exist), kube-state-metrics' under
        its own, the usage recording rule under none of them; the extra matchers apply to
        all three.
        """
        cadvisor_family = (m for m in self._cadvisor if m.op == "=")
        return (
            self._present(CADVISOR_ALL, cadvisor_family),
            self._present(KSM_ALL, self._ksm),
            self._present((USAGE_RULE,), ()),
        )

    def _over_window(self, function: str, sel: str) -> str:
        """``function(sel[W])``: over the raw samples of the window.

        Not over a subquery at the step (``sel[W:S]``), which reads fewer samples when the
        scrape interval is shorter than the step but materialises every series at every
        step: its peak is ``series × steps`` (40 M for 20,000 pods at 7 days, against
        the default ``--query.max-samples`` of 50 M, in a query that is not chunked),
        where a range function holds one series' samples at a time, and it is slower
        (2.42: 0.08 s against 0.06 s for 1,000 pods over 2 hours).
        """
        return f"{function}({sel}[{self.resolution.window}])"

    def kube_state_metrics(self, namespaces: Scope) -> list[tuple[str, str]]:
        """Owners, requests, limits and OOM kills over the window: four queries
        ``(name, PromQL)`` meant to be sent at once.

        Not one query joined with ``or``: Prometheus evaluates one query in one thread,
        part after part, and the join costs a fifth more (2.42, 20,000 pods over 2 hours:
        5.8 s as one query; owners, requests, limits and terminations 0.9 to 1.5 s each).
        """
        w = self.resolution.window
        rs_owner = self.ksm(REPLICASET_OWNER, namespaces, Matcher.equal("owner_kind", "Deployment"))
        owners = [
            tag(
                f"max by (namespace, pod, owner_kind, owner_name) "
                f"({self._over_window('max_over_time', self.ksm(POD_OWNER, namespaces))})",
                STAT_LABEL,
                "pod_owner",
            ),
            tag(
                f"max by (namespace, replicaset, owner_name) "
                f"({self._over_window('max_over_time', rs_owner)})",
                STAT_LABEL,
                "rs_owner",
            ),
        ]
        resources: dict[str, list[str]] = {REQUESTS: [], LIMITS: []}
        for stat, metric, resource in (
            ("cpu_request", REQUESTS, "cpu"),
            ("memory_request", REQUESTS, "memory"),
            ("cpu_limit", LIMITS, "cpu"),
            ("memory_limit", LIMITS, "memory"),
        ):
            sel = self.ksm(metric, namespaces, Matcher.equal("resource", resource))
            last = self._over_window("last_over_time", sel)
            resources[metric].append(tag(f"max by ({_BY_CONTAINER}) ({last})", STAT_LABEL, stat))
        last_terminated = self.ksm(
            LAST_TERMINATED, namespaces, Matcher.equal("reason", "OOMKilled")
        )
        oom = f"max by ({_BY_CONTAINER}) ({self._over_window('max_over_time', last_terminated)})"
        restarts = (
            f"max by ({_BY_CONTAINER}) (increase({self.ksm(RESTARTS, namespaces)}[{w}]))"
            f" and on ({_BY_CONTAINER}) ({oom})"
        )
        terminations = [tag(oom, STAT_LABEL, "oom"), tag(restarts, STAT_LABEL, "restarts")]
        return [
            ("kube-state-metrics owners", join_or(owners)),
            ("kube-state-metrics requests", join_or(resources[REQUESTS])),
            ("kube-state-metrics limits", join_or(resources[LIMITS])),
            ("kube-state-metrics terminations", join_or(terminations)),
        ]

    def counters(self, namespaces: Scope) -> str:
        """Over the window's raw samples: increases of the CFS counters, the CFS period,
        and the maxima of RSS and working set (no peak between steps is missed)."""
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
        for stat, metric in (("rss_max", RSS), ("wss_max", WORKING_SET)):
            sel = self.cadvisor(metric, namespaces)
            top = f"max by ({_BY_CONTAINER}) (max_over_time({sel}[{w}]))"
            parts.append(tag(top, STAT_LABEL, stat))
        return join_or(parts)

    def uses_rule(self, present: Iterable[str]) -> bool:
        """Whether to read :data:`USAGE_RULE`: it exists, and it is the rate a fetch at this
        resolution computes (a 5m range), so that the statistics stay the same."""
        return USAGE_RULE in present and self.resolution.rate_seconds == USAGE_RULE_RATE_SECONDS

    @staticmethod
    def _pods(pods: Iterable[str] | None) -> tuple[Matcher, ...]:
        return () if pods is None else (Matcher.any_of("pod", sorted(set(pods))),)

    def usage_series(self, namespaces: Scope, rule: bool = False, *matchers: Matcher) -> str:
        """The CPU usage rate of every series, from the raw counter or, with ``rule``, from
        the recording rule (which carries no ``job`` or ``metrics_path``: the cAdvisor
        family's matchers do not apply)."""
        if rule:
            scope = (*matchers, *self._scope(namespaces), *self._hygiene, *self._extra)
            return selector(USAGE_RULE, scope)
        return f"rate({self.cadvisor(USAGE, namespaces, *matchers)}[{self.resolution.rate}])"

    def usage_rate(
        self, namespaces: Scope, rule: bool = False, pods: Iterable[str] | None = None
    ) -> str:
        """``RATE``: the CPU usage rate per container of a pod, one series per container
        (the maximum of its series at each step), of ``pods`` only if given."""
        return (
            f"max by ({_BY_CONTAINER}) ({self.usage_series(namespaces, rule, *self._pods(pods))})"
        )

    def rss_series(self, namespaces: Scope, *matchers: Matcher) -> str:
        """RSS of every series (read at every step)."""
        return self.cadvisor(RSS, namespaces, *matchers)

    def rss(self, namespaces: Scope, pods: Iterable[str] | None = None) -> str:
        """RSS per container of a pod, one series per container (the maximum of its
        series at each step), of ``pods`` only if given."""
        return f"max by ({_BY_CONTAINER}) ({self.rss_series(namespaces, *self._pods(pods))})"

    def chunk_queries(self, namespaces: Scope, rule: bool = False) -> list[ChunkQuery]:
        """The per-chunk queries: one instant query of raw-sample aggregates, and the two
        range queries whose series the client reduces (:mod:`.prometheus_range`).

        The range queries select the series themselves, not ``max by (namespace, pod,
        container)`` of them: Prometheus evaluates an aggregation again at every step of
        a range query, ten to twenty times the cost of the selection (2.42, 1,000 series
        over 240 steps: 0.39 s against 0.02-0.05 s). A container with one series (the
        rule everywhere) needs no aggregation; the few with several (a second scrape job,
        a restarted container's old series) are read again with it
        (:meth:`aggregated`).
        """
        return [
            ChunkQuery("counters", self.counters(namespaces), "instant"),
            ChunkQuery("cpu-usage", self.usage_series(namespaces, rule), "usage", rule),
            ChunkQuery("memory", self.rss_series(namespaces), "rss"),
        ]

    def aggregated(self, query: ChunkQuery, namespaces: Scope, pods: Iterable[str]) -> ChunkQuery:
        """``query`` (a range query) as ``RATE`` or RSS per container, of ``pods`` only."""
        promql = (
            self.usage_rate(namespaces, query.rule, pods)
            if query.kind == "usage"
            else self.rss(namespaces, pods)
        )
        return ChunkQuery(query.name, promql, query.kind, query.rule)


@dataclass(frozen=True, slots=True)
class ChunkQuery:
    """One query of a chunk: its name, its PromQL, and how its answer is read.

    ``instant``: an instant query whose rows are tagged statistics; ``usage`` and
    ``rss``: a range query over the window at the step, each series reduced in the
    client to the usage or RSS statistics.
    """

    name: str
    promql: str
    kind: Literal["instant", "usage", "rss"]
    rule: bool = False  # usage from USAGE_RULE
