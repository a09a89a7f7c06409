"""The Prometheus source: every container's statistics for a whole scope in a few queries.

This module owns how unthrottle reads Prometheus: the HTTP client (timeouts, bounded
retries, auth, TLS, one error type), the PromQL of the statistics, how many queries a fetch
makes, and how per-pod series become one :class:`~unthrottle.model.stats.ContainerStats`
per (Deployment, container). It speaks only the standard HTTP API (``/api/v1/query`` and
``/api/v1/status/buildinfo``), so Thanos, Mimir and VictoriaMetrics work too. The API is
synchronous and thread-safe; the operator calls it through ``asyncio.to_thread``.

HTTP
    :class:`PrometheusSource` is built on ``prometheus_api_client.PrometheusConnect``,
    which sets up the ``requests`` session (auth, TLS verification, the adapter for the
    URL). Queries are sent on that session by this module, not through
    ``custom_query``, because the library drops the ``warnings`` of a partial response
    (Thanos with a store down, Mimir with a shard failing) and the ``stats`` of
    ``stats=all`` silently; both are read here from the JSON answer. Queries are POSTed
    as a form, so a long namespace regex never meets a URL length limit. Every request
    has a timeout (connect ``min(5 s, timeout)``, read ``timeout``) and the query carries
    ``timeout=`` for Prometheus to stop evaluating too. The library's urllib3 retries are
    switched off; this module retries instead, ``retries`` times with backoff 0.5 s, 1 s,
    2 s, ... (at most 5 s), and only what a retry can fix: connection failures and HTTP
    429/502/503/504, except a 503 that says the query timed out. A read timeout is not
    retried: the same query would time out again and cost Prometheus as much each time.
    Every failure, whatever raised it (``requests.RequestException``, a ``ValueError``
    from a body that is not JSON such as a login page, ``PrometheusApiClientException``)
    becomes :class:`PrometheusError` with the URL (credentials and query string removed)
    and a short reason; no token or password is ever part of a message. Values arrive as
    strings; each is checked with ``math.isfinite`` and for sign, and NaN, ±Inf and
    negative values are dropped and counted (``FetchResult.dropped_values``).
    The health check is ``/api/v1/status/buildinfo`` (``PrometheusConnect
    .check_prometheus_connection`` only fetches ``/``, which a login page passes).

Queries per fetch (not per Deployment)
    One kube-state-metrics query for the whole scope (owners, requests, limits, OOM
    kills, and which series exist), then five per *chunk*: CPU counters, three of CPU
    usage statistics and one of memory. Several statistics travel in one query as
    ``label_replace(<stat>, "unthrottle_stat", "<name>", "", "") or ...``: the sides
    differ in that label, so ``or`` keeps all of them, and Prometheus evaluates the sides
    one after another, so the peak of samples in memory is that of the largest side, not
    the sum (both checked with Prometheus 2.42). A scope is one chunk unless its
    kube-state-metrics rows say it has more than ``max_series_per_query`` containers
    (default 10,000): a usage subquery holds ``containers × steps`` points at once, and
    10,000 × 2,016 steps is 20 M, well under Prometheus' default ``--query.max-samples``
    of 50 M; a tagged answer is then about 1.5 MB of JSON per statistic. Larger scopes are
    split into chunks of whole namespaces (``namespace=~"a|b|..."``, regex-escaped); a
    single namespace above the threshold stays one chunk. So a scope of up to 10,000
    containers (1,000 Deployments of 3 pods × 2 containers is 6,000) costs 6 HTTP queries,
    and 3 chunks cost 16.

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

The statistics, per (namespace, pod, container) in PromQL, then per (Deployment, container)
here. ``W`` is the window, ``S`` the step, ``R`` the rate range; ``RATE`` is
``max by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{...}[R]))``
(``max`` rather than ``sum`` so that a series duplicated by a second scrape job, or the
old container's series lingering after a restart, is not added to the new one).

- Throttle ratio: Σ over the Deployment's pods of
  ``increase(container_cpu_cfs_throttled_periods_total[W])`` / Σ of
  ``increase(container_cpu_cfs_periods_total[W])`` (each summed per pod over its
  container series, so a restarted container's old and new series both count;
  ``increase`` handles counter resets). A pooled ratio: every CFS period of every pod
  weighs the same. 0 when there are no periods (no CPU limit), at most 1.
- Usage percentiles p50, p95, p99, p99.9, p99.99: per pod
  ``quantile_over_time(q, RATE[W:S])``, then the mean of the pods' values weighted by
  their sample counts, an approximation of the percentile of all the pods' samples pooled
  (exact when pods behave alike), consistent with the pooled throttle ratio. Not the
  maximum over pods: a pod that lived ten minutes, mostly start-up, would set it, and it
  grows with the number of replicas. ``max`` is the maximum over pods of
  ``max_over_time(RATE[W:S])``; ``mean`` the weighted mean of ``avg_over_time(RATE[W:S])``,
  which is the pooled mean exactly. Percentiles are then made non-decreasing.
- Samples: the number of steps of the window at which at least one pod of the Deployment
  had a usage rate, from each pod's ``count_over_time(RATE[W:S])`` and the time of its
  last one (``max_over_time(timestamp(RATE)[W:S])``), as the union of the pods' step
  ranges (at most ``W / S``). Three replicas over the last third of the window cover a
  third, not all of it.
  ``window_seconds`` and ``step_seconds`` are ``W`` and ``S``.
- Pod lives: each pod's usage sample count × ``S``, the seconds it was seen in the window.
- Throttled seconds per second (only when ``container_cpu_cfs_throttled_seconds_total``
  exists; its absence is normal, the kube-prometheus-stack chart drops it):
  Σ ``increase(..._throttled_seconds_total[W])`` / Σ pod lives, the wall-clock rate of
  ``rate()`` pooled over pods that lived through part of the window only. The kernel sums
  it over runqueues, so it can exceed 1.
- Active period ratio: Σ ``increase(container_cpu_cfs_periods_total[W])`` × the CFS period
  / Σ pod lives, at most 1 (the kernel counts a period only while the cgroup has runnable
  work); absent without CFS counters.
- CFS period: ``last_over_time(container_spec_cpu_period[W])`` (µs) when present (the
  chart drops it too), else ``cfs_period_us`` of the config (100 ms).
- RSS: p99 is the maximum over pods of ``quantile_over_time(0.99, max by (...)
  (container_memory_rss)[W:S])``, max the maximum over pods of
  ``max_over_time(container_memory_rss[W])`` (raw samples, so no peak between steps is
  missed); working set max likewise from ``container_memory_working_set_bytes``. Memory
  is per pod and the pod with most RSS is the one that is OOM-killed, hence the maximum.
  Growth: ``deriv(max by (...) (container_memory_rss)[W:S])`` per pod (bytes/s, may be
  negative), averaged over pods weighted by their RSS sample counts so that a short-lived
  pod warming up does not read as a leak.
- OOM kills: for each pod whose container had
  ``kube_pod_container_status_last_terminated_reason{reason="OOMKilled"}`` at some time in
  the window, ``max(1, increase(kube_pod_container_status_restarts_total[W]))`` rounded
  (restarts in the window of a container last killed for memory; 1 without the restarts
  series), summed over pods. kube-state-metrics keeps only the last reason, so this is an
  estimate.
- Requests and limits: ``last_over_time(kube_pod_container_resource_requests|limits{
  resource="cpu"|"memory"}[W])`` per pod, taken from the Deployment's newest pod (the
  one whose usage was seen last), so that a rollout mid-window reports the new values.
  CPU cores become millicores rounded up; memory is bytes.
- Pods to Deployments: ``kube_pod_owner{owner_kind="ReplicaSet"}`` and
  ``kube_replicaset_owner{owner_kind="Deployment"}``, each ``max_over_time`` over the
  window so that pods and ReplicaSets that came and went still map (pods of every owner
  kind are read, to size chunks; only Deployments' become workloads); a caller that knows
  more (the API server) passes ``replicaset_owners``, and a pod without a
  ``kube_pod_owner`` row is then matched to a known ReplicaSet by its name.

Required series that do not exist at the end of the window (under the extra matchers, in
any namespace) are reported in ``FetchResult.missing_series``. Two kinds are absent on a
healthy cluster and are only reported when that absence cannot be explained:
``kube_pod_container_resource_limits`` (no container has a limit) and
``kube_pod_container_status_last_terminated_reason`` (no container has terminated) are
missing only when kube-state-metrics is missing as a whole, and the CFS counters
(``container_cpu_cfs_periods_total``, ``..._throttled_periods_total``, exported only for a
cgroup with a quota) only when a container in scope has a CPU limit or kube-state-metrics
cannot tell.

A result with ``warnings`` (a partial response) is ``partial``; callers must not patch
from it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from unthrottle.model.quantity import (
    ceil_div,
    format_duration,
    parse_bytes,
    parse_cores,
    parse_duration_ms,
)
from unthrottle.model.stats import (
    ContainerResources,
    ContainerStats,
    CpuStats,
    MemoryStats,
    RssBytes,
    UsagePercentiles,
    WorkingSetBytes,
)
from unthrottle.model.workload import WorkloadRef, WorkloadStats
from unthrottle.sources.promql import (
    Matcher,
    equality_matchers,
    join_or,
    label_name,
    quote,
    regex_escape,
    selector,
    tag,
)

__all__ = [
    "KSM_SERIES",
    "OPTIONAL_SERIES",
    "REQUIRED_SERIES",
    "FetchResult",
    "PrometheusConfig",
    "PrometheusError",
    "PrometheusSource",
    "QueryAnswer",
    "QueryBuilder",
    "QueryStats",
    "Resolution",
    "plan_chunks",
]

# The series, by name (DESIGN.md, "Data it reads").
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
_CADVISOR_ALL: Final = (*CADVISOR_REQUIRED, THROTTLED_SECONDS, SPEC_PERIOD)
_KSM_ALL: Final = (*KSM_SERIES, RESTARTS)

STAT_LABEL: Final = "unthrottle_stat"
_METRIC_LABEL: Final = "unthrottle_metric"
_BY_CONTAINER: Final = "namespace, pod, container"
_MANAGED_LABELS: Final = frozenset({"namespace", "pod", "container", STAT_LABEL, _METRIC_LABEL})

DEFAULT_MAX_POINTS: Final = 2016  # 7 days at 5 minutes
DEFAULT_MAX_SERIES_PER_QUERY: Final = 10_000
_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
_BACKOFF_FIRST_S: Final = 0.5
_BACKOFF_MAX_S: Final = 5.0
_CONNECT_TIMEOUT_MAX_S: Final = 5.0
_REASON_MAX_CHARS: Final = 300

Key = tuple[str, str, str]  # (namespace, pod, container)
PodKey = tuple[str, str]  # (namespace, pod)


class PrometheusError(Exception):
    """Prometheus could not answer: the URL (without credentials) and a short reason."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"Prometheus at {url}: {reason}")


def _display_url(url: str) -> str:
    # Credentials in the URL (user:pass@) and query strings (?token=) never reach a message.
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _frozen(labels: Mapping[str, str] | None, what: str) -> Mapping[str, str]:
    out = dict(labels or {})
    for name in out:
        label_name(name)
        if name in _MANAGED_LABELS:
            raise ValueError(f"{what}: label {name!r} is set by unthrottle itself")
    return MappingProxyType(out)


@dataclass(frozen=True, eq=False)
class PrometheusConfig:
    """How to reach one Prometheus (or Thanos, Mimir, VictoriaMetrics) and what to read.

    ``bearer_token`` and basic auth (``username``/``password``) exclude each other.
    ``ca_bundle`` is a PEM file to verify the server with; ``insecure_skip_verify``
    turns verification off and must be asked for explicitly. ``retries`` is the number
    of *extra* attempts after a failure a retry can fix (see the module docstring), so
    one query takes at most ``(retries + 1) × timeout_seconds`` plus a few seconds of
    backoff. ``cfs_period_us`` is used when ``container_spec_cpu_period`` is absent
    (the kubelet's ``cpuCFSQuotaPeriod``, 100 ms unless changed).
    """

    url: str
    bearer_token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_bundle: str | None = None
    insecure_skip_verify: bool = False
    timeout_seconds: float = 30.0
    retries: int = 2
    extra_matchers: Mapping[str, str] = field(default_factory=dict)
    cadvisor_matchers: Mapping[str, str] = field(default_factory=dict)
    kube_state_metrics_matchers: Mapping[str, str] = field(default_factory=dict)
    cfs_period_us: int = 100_000
    scrape_interval_seconds: int = 30
    max_points: int = DEFAULT_MAX_POINTS
    max_series_per_query: int = DEFAULT_MAX_SERIES_PER_QUERY
    collect_stats: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) URL: {_display_url(self.url)!r}")
        if self.bearer_token and (self.username or self.password):
            raise ValueError("give either a bearer token or basic auth, not both")
        if self.password and not self.username:
            raise ValueError("basic auth needs a username")
        if self.ca_bundle and self.insecure_skip_verify:
            raise ValueError("give either a CA bundle or insecure_skip_verify, not both")
        if not (self.timeout_seconds > 0 and math.isfinite(self.timeout_seconds)):
            raise ValueError("timeout_seconds must be positive")
        if not 0 <= self.retries <= 10:
            raise ValueError("retries must be between 0 and 10")
        if not 1000 <= self.cfs_period_us <= 1_000_000:
            raise ValueError("cfs_period_us must be between 1000 and 1000000")
        if self.scrape_interval_seconds <= 0 or self.max_points <= 0:
            raise ValueError("scrape_interval_seconds and max_points must be positive")
        if self.max_series_per_query <= 0:
            raise ValueError("max_series_per_query must be positive")
        object.__setattr__(self, "url", self.url.rstrip("/"))
        object.__setattr__(self, "extra_matchers", _frozen(self.extra_matchers, "extra"))
        object.__setattr__(self, "cadvisor_matchers", _frozen(self.cadvisor_matchers, "cadvisor"))
        object.__setattr__(
            self,
            "kube_state_metrics_matchers",
            _frozen(self.kube_state_metrics_matchers, "kube-state-metrics"),
        )

    @property
    def display_url(self) -> str:
        return _display_url(self.url)

    def __repr__(self) -> str:
        auth = "bearer" if self.bearer_token else "basic" if self.username else "none"
        return (
            f"PrometheusConfig(url={self.display_url!r}, auth={auth}, "
            f"username={self.username!r}, ca_bundle={self.ca_bundle!r}, "
            f"insecure_skip_verify={self.insecure_skip_verify}, "
            f"timeout_seconds={self.timeout_seconds}, retries={self.retries}, "
            f"extra_matchers={dict(self.extra_matchers)!r}, "
            f"cadvisor_matchers={dict(self.cadvisor_matchers)!r}, "
            f"kube_state_metrics_matchers={dict(self.kube_state_metrics_matchers)!r}, "
            f"cfs_period_us={self.cfs_period_us})"
        )

    __str__ = __repr__


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


Scope = tuple[str, ...] | None  # namespaces, or None for every namespace


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

    def _present(self, names: Sequence[str], family: Iterable[Matcher]) -> str:
        regex = "|".join(regex_escape(n) for n in names)
        matchers = ", ".join(m.render() for m in (*family, *self._extra))
        inner = f"group by (__name__) ({{__name__=~{quote(regex)}, {matchers}}})"
        # Set operators ignore __name__, so the name is copied into a label of its own.
        return f'label_replace({inner}, "{_METRIC_LABEL}", "$1", "__name__", "(.+)")'

    def kube_state_metrics(self, namespaces: Scope) -> str:
        """Owners, requests, limits, OOM kills and the presence of every series."""
        w = self.resolution.window
        cadvisor_family = (m for m in self._cadvisor if m.op == "=")
        rs_owner = self.ksm(REPLICASET_OWNER, namespaces, Matcher.equal("owner_kind", "Deployment"))
        oom = (
            f"max by ({_BY_CONTAINER}) (max_over_time("
            f"{self.ksm(LAST_TERMINATED, namespaces, Matcher.equal('reason', 'OOMKilled'))}"
            f"[{w}]))"
        )
        parts = [
            tag(self._present(_CADVISOR_ALL, cadvisor_family), STAT_LABEL, "present"),
            tag(self._present(_KSM_ALL, self._ksm), STAT_LABEL, "present_ksm"),
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


@dataclass(frozen=True, slots=True)
class QueryStats:
    """What one query cost: wall time, rows, and Prometheus' own sample counts if asked."""

    name: str
    seconds: float
    series: int
    total_queryable_samples: int | None = None
    peak_samples: int | None = None


@dataclass(frozen=True, slots=True)
class QueryAnswer:
    """An instant query's answer: (labels, raw value) rows, warnings, and stats if asked."""

    rows: tuple[tuple[Mapping[str, str], str], ...]
    warnings: tuple[str, ...]
    stats: QueryStats
    requests: int = 1  # HTTP requests it took (1 + retries)


@dataclass(frozen=True)
class FetchResult:
    """Everything one fetch learnt (see the module docstring for each statistic)."""

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

    @property
    def partial(self) -> bool:
        """Prometheus said the data may be incomplete: fine to report, not to patch from."""
        return bool(self.warnings)


class PrometheusSource:
    """A synchronous, thread-safe reader of one Prometheus (see the module docstring).

    Thread-safe because a lock lets one request at a time use the ``requests`` session
    (which is not documented as thread-safe); that also keeps one source's load on
    Prometheus to one query at a time. ``build_info()`` is the health check, ``fetch()``
    the statistics of a scope, ``query()`` one instant query (for the benchmark).
    """

    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config
        self.url = config.display_url
        self._lock = threading.Lock()
        self._queries = 0
        session = requests.Session()
        # Given with every request: a session-level ``verify`` loses to REQUESTS_CA_BUNDLE
        # in the environment (requests merges the environment over the session), which
        # would drop the CA bundle or the explicit insecure flag.
        self._verify: str | bool = (
            False if config.insecure_skip_verify else config.ca_bundle or True
        )
        session.verify = self._verify
        headers = {"Accept": "application/json"}
        if config.bearer_token:
            headers["Authorization"] = f"Bearer {config.bearer_token}"
        auth = (config.username, config.password or "") if config.username else None
        self._headers = headers
        self._auth = auth
        self._secrets = tuple(
            s for s in (config.bearer_token, config.password, urlsplit(config.url).password) if s
        )
        try:
            self._client = PrometheusConnect(
                url=config.url,
                headers=headers,
                disable_ssl=config.insecure_skip_verify,
                # urllib3 retries off (this class decides what a retry can fix), and
                # read=False so that a read timeout surfaces as requests' ReadTimeout
                # rather than a ConnectionError wrapping MaxRetryError.
                retry=Retry(total=0, read=False),
                auth=auth,
                session=session,
                timeout=config.timeout_seconds,
            )
        except (TypeError, ValueError) as exc:
            raise PrometheusError(self.url, self._scrub(str(exc))) from None
        self._session = session

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrometheusSource({self.config!r})"

    @property
    def queries_made(self) -> int:
        """HTTP requests sent by this source so far (every attempt counts)."""
        return self._queries

    # -- HTTP -----------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:_REASON_MAX_CHARS]

    def _fail(self, reason: str) -> PrometheusError:
        return PrometheusError(self.url, self._scrub(reason))

    def _request(self, method: str, path: str, data: Mapping[str, str] | None) -> tuple[Any, int]:
        """One API call with the retry policy: the decoded success answer, HTTP requests sent."""
        timeout = self.config.timeout_seconds
        attempts = self.config.retries + 1
        reason = "no attempt made"
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2 ** (attempt - 1)))
            try:
                with self._lock:
                    self._queries += 1
                    response = self._session.request(
                        method,
                        self.config.url + path,
                        data=data,
                        headers=self._headers,
                        auth=self._auth,
                        timeout=(min(_CONNECT_TIMEOUT_MAX_S, timeout), timeout),
                        verify=self._verify,
                    )
                body = self._decode(response)
            except requests.exceptions.ReadTimeout:
                raise self._fail(f"no answer within {timeout:g}s (not retried)") from None
            except requests.exceptions.SSLError as exc:
                raise self._fail(f"TLS error: {_short(exc)}") from None
            except requests.ConnectionError as exc:
                reason = f"cannot connect: {_short(exc)}"
                continue
            except _RetryableError as exc:
                reason = str(exc)
                continue
            except _AnswerError as exc:
                raise self._fail(str(exc)) from None
            except (requests.RequestException, PrometheusApiClientException, ValueError) as exc:
                raise self._fail(f"{type(exc).__name__}: {_short(exc)}") from None
            return body, attempt + 1
        raise self._fail(f"{reason} (gave up after {attempts} attempts)")

    def _decode(self, response: requests.Response) -> Any:
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "status" not in body:
            if status in _RETRY_STATUSES:
                raise _RetryableError(f"HTTP {status}")
            kind = response.headers.get("Content-Type", "?").split(";")[0]
            raise _AnswerError(f"HTTP {status} with a {kind} body, not a Prometheus API answer")
        if body.get("status") != "success":
            error_type = str(body.get("errorType", "error"))
            message = f"HTTP {status}: {error_type}: {str(body.get('error', ''))[:200]}"
            if status in _RETRY_STATUSES and error_type != "timeout":
                raise _RetryableError(message)
            raise _AnswerError(message)
        if status != 200:
            raise _AnswerError(f"HTTP {status}")
        return body

    def build_info(self) -> Mapping[str, str]:
        """``/api/v1/status/buildinfo``: the health check (version, revision, ...)."""
        body, _ = self._request("GET", "/api/v1/status/buildinfo", None)
        data = body.get("data")
        if not isinstance(data, dict):
            raise self._fail("buildinfo answer without data")
        return {str(k): str(v) for k, v in data.items()}

    def query(self, promql: str, at: float, *, name: str = "query") -> QueryAnswer:
        """One instant query evaluated at ``at`` (epoch seconds); a vector answer."""
        form = {
            "query": promql,
            "time": f"{at:.3f}",
            "timeout": f"{self.config.timeout_seconds:g}",  # seconds, as every flavour parses
        }
        if self.config.collect_stats:
            form["stats"] = "all"
        started = time.perf_counter()
        body, requests_sent = self._request("POST", "/api/v1/query", form)
        seconds = time.perf_counter() - started
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            raise self._fail(f"{name}: expected a vector answer")
        result = data.get("result")
        if not isinstance(result, list):
            raise self._fail(f"{name}: answer without a result list")
        rows: list[tuple[Mapping[str, str], str]] = []
        for item in result:
            try:
                labels = item["metric"]
                value = item["value"][1]
            except (KeyError, IndexError, TypeError):
                raise self._fail(f"{name}: malformed result row") from None
            if not isinstance(labels, dict) or not isinstance(value, str):
                raise self._fail(f"{name}: malformed result row")
            rows.append((labels, value))
        warnings = tuple(str(w) for w in body.get("warnings") or ())
        samples = data.get("stats", {}).get("samples", {}) if self.config.collect_stats else {}
        stats = QueryStats(
            name=name,
            seconds=seconds,
            series=len(rows),
            total_queryable_samples=_int_or_none(samples.get("totalQueryableSamples")),
            peak_samples=_int_or_none(samples.get("peakSamples")),
        )
        return QueryAnswer(tuple(rows), warnings, stats, requests_sent)

    # -- the fetch --------------------------------------------------------------------

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
        tables = _Tables()
        for chunk in chunks:
            for name, promql in run.builder.chunk_queries(chunk):
                run.collect(name, promql, tables)
        owners = ksm.owners(replicaset_owners or {})
        workloads, unowned = _assemble(tables, ksm, owners, resolution, self.config)
        missing, optional = ksm.series_report()
        return run.result(workloads, missing, optional, len(chunks), unowned)


class _RetryableError(Exception):
    """An answer a retry may fix (HTTP 429/502/503/504 other than a query timeout)."""


class _AnswerError(ValueError):
    """An answer that is not a usable success (its message is the reason to report)."""


def _short(exc: BaseException) -> str:
    # requests' messages nest the urllib3 chain; its last line names the cause
    # ("Connection refused", "Read timed out") without the repetition.
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out"):
        if marker in text:
            return marker
    return text.splitlines()[-1] if text else type(exc).__name__


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class _Tables:
    """Statistic name → {key: value}, accumulated over a fetch's queries."""

    def __init__(self) -> None:
        self.values: dict[str, dict[Key, float]] = defaultdict(dict)

    def __getitem__(self, stat: str) -> dict[Key, float]:
        return self.values[stat]

    def keys(self) -> set[Key]:
        out: set[Key] = set()
        for table in self.values.values():
            out.update(table)
        return out


_SIGNED_STATS: Final = frozenset({"rss_slope"})
_CONTAINER_STATS_KSM: Final = frozenset(
    {"cpu_request", "cpu_limit", "memory_request", "memory_limit", "oom", "restarts"}
)


class _Fetch:
    """The state of one fetch: queries made, warnings, dropped values."""

    def __init__(self, source: PrometheusSource, builder: QueryBuilder, at: float) -> None:
        self.source = source
        self.builder = builder
        self.at = at
        self.queries = 0
        self.stats: list[QueryStats] = []
        self.warnings: list[str] = []
        self.dropped = 0

    def run(self, name: str, promql: str) -> QueryAnswer:
        answer = self.source.query(promql, self.at, name=name)
        self.queries += answer.requests
        self.stats.append(answer.stats)
        self.warnings.extend(f"{name}: {w}" for w in answer.warnings)
        return answer

    def value(self, raw: str, signed: bool = False) -> float | None:
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or (number < 0 and not signed):
            self.dropped += 1
            return None
        return number

    def rows(self, answer: QueryAnswer) -> Iterator[tuple[str, Mapping[str, str], float]]:
        for labels, raw in answer.rows:
            stat = labels.get(STAT_LABEL, "")
            number = self.value(raw, signed=stat in _SIGNED_STATS)
            if number is not None:
                yield stat, labels, number

    def collect(self, name: str, promql: str, tables: _Tables) -> None:
        for stat, labels, number in self.rows(self.run(name, promql)):
            key = _key(labels)
            if key is not None:
                tables[stat][key] = number

    def ksm(self, scope: Scope) -> _Ksm:
        out = _Ksm()
        for stat, labels, number in self.rows(
            self.run("kube-state-metrics", self.builder.kube_state_metrics(scope))
        ):
            if stat in ("present", "present_ksm"):
                out.present.add(labels.get(_METRIC_LABEL, ""))
            elif stat == "pod_owner":
                pod = (labels.get("namespace", ""), labels.get("pod", ""))
                if all(pod):
                    out.pods.add(pod)
                    if labels.get("owner_kind") == "ReplicaSet" and labels.get("owner_name"):
                        out.pod_replicaset[pod] = labels["owner_name"]
            elif stat == "rs_owner":
                rs = (labels.get("namespace", ""), labels.get("replicaset", ""))
                if all(rs) and labels.get("owner_name"):
                    out.replicaset_deployment[rs] = labels["owner_name"]
            elif stat in _CONTAINER_STATS_KSM:
                key = _key(labels)
                if key is not None:
                    out.tables[stat][key] = number
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
        )


def _key(labels: Mapping[str, str]) -> Key | None:
    key = (labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", ""))
    return key if all(key) else None


class _Ksm:
    """What the kube-state-metrics query said."""

    def __init__(self) -> None:
        self.present: set[str] = set()
        self.pods: set[PodKey] = set()
        self.pod_replicaset: dict[PodKey, str] = {}
        self.replicaset_deployment: dict[PodKey, str] = {}
        self.tables = _Tables()

    def containers_per_namespace(self) -> dict[str, int]:
        """Estimated container series per namespace: each pod's containers, at least 1."""
        per_pod: dict[PodKey, set[str]] = defaultdict(set)
        for key in self.tables.keys():  # noqa: SIM118 - _Tables is not a dict
            per_pod[(key[0], key[1])].add(key[2])
        out: dict[str, int] = defaultdict(int)
        for pod in self.pods | set(per_pod):
            out[pod[0]] += max(1, len(per_pod.get(pod, ())))
        return dict(out)

    def owners(self, replicaset_owners: Mapping[tuple[str, str], str]) -> _Owners:
        deployments = {**self.replicaset_deployment, **replicaset_owners}
        return _Owners(dict(self.pod_replicaset), deployments)

    def series_report(self) -> tuple[frozenset[str], frozenset[str]]:
        """(missing required series, optional series seen); rules in the module docstring."""
        present = self.present
        missing = {
            name
            for name in (USAGE, RSS, WORKING_SET, POD_OWNER, REPLICASET_OWNER, REQUESTS)
            if name not in present
        }
        ksm_up = POD_OWNER in present
        if not ksm_up:
            missing.update(n for n in (LIMITS, LAST_TERMINATED) if n not in present)
        cpu_limited = bool(self.tables["cpu_limit"]) or not ksm_up
        if cpu_limited:
            missing.update(n for n in (PERIODS, THROTTLED_PERIODS) if n not in present)
        optional = frozenset(n for n in OPTIONAL_SERIES if n in present)
        return frozenset(missing), optional


@dataclass(frozen=True, slots=True)
class _Owners:
    pod_replicaset: Mapping[PodKey, str]
    replicaset_deployment: Mapping[PodKey, str]

    def deployment(self, namespace: str, pod: str) -> str | None:
        rs = self.pod_replicaset.get((namespace, pod))
        if rs is None:
            # No kube_pod_owner row: a Deployment's pod is named "<replicaset>-<suffix>".
            prefix = pod.rsplit("-", 1)[0]
            if (namespace, prefix) in self.replicaset_deployment:
                rs = prefix
        return None if rs is None else self.replicaset_deployment.get((namespace, rs))


def _weighted_mean(pairs: Iterable[tuple[float, float]]) -> float | None:
    total = weight = 0.0
    for value, w in pairs:
        total += value * w
        weight += w
    return total / weight if weight > 0 else None


def _non_decreasing(values: list[float | None]) -> list[float | None]:
    out: list[float | None] = []
    floor = 0.0
    for v in values:
        if v is None:
            out.append(None)
            continue
        floor = max(floor, v)
        out.append(floor)
    return out


def _covered_steps(intervals: list[tuple[int, int]]) -> int:
    covered = 0
    current: tuple[int, int] | None = None
    for low, high in sorted(intervals):
        if current is None or low > current[1] + 1:
            if current is not None:
                covered += current[1] - current[0] + 1
            current = (low, high)
        else:
            current = (current[0], max(current[1], high))
    if current is not None:
        covered += current[1] - current[0] + 1
    return covered


def _assemble(
    tables: _Tables,
    ksm: _Ksm,
    owners: _Owners,
    resolution: Resolution,
    config: PrometheusConfig,
) -> tuple[list[WorkloadStats], int]:
    """Per-pod tables → one WorkloadStats per Deployment; also the count of unowned pods."""
    groups: dict[tuple[str, str], dict[str, list[Key]]] = defaultdict(lambda: defaultdict(list))
    unowned: set[PodKey] = set()
    for key in sorted(tables.keys() | ksm.tables.keys()):
        namespace, pod, container = key
        deployment = owners.deployment(namespace, pod)
        if deployment is None:
            if key in tables["count"]:
                unowned.add((namespace, pod))
            continue
        groups[(namespace, deployment)][container].append(key)
    workloads: list[WorkloadStats] = []
    for (namespace, deployment), containers in sorted(groups.items()):
        stats: list[ContainerStats] = []
        pods: set[str] = set()
        for container, keys in sorted(containers.items()):
            built = _container_stats(
                container, keys, t=tables, k=ksm.tables, resolution=resolution, config=config
            )
            if built is not None:
                stats.append(built)
                pods.update(k[1] for k in keys if tables["count"].get(k, 0) > 0)
        if stats:
            ref = WorkloadRef(namespace=namespace, name=deployment)
            workloads.append(WorkloadStats(ref=ref, containers=tuple(stats), pods=len(pods)))
    return workloads, len(unowned)


def _container_stats(
    name: str,
    keys: list[Key],
    *,
    t: _Tables,
    k: _Tables,
    resolution: Resolution,
    config: PrometheusConfig,
) -> ContainerStats | None:
    step = resolution.step_seconds
    weights = {key: t["count"][key] for key in keys if t["count"].get(key, 0) > 0}
    if not weights:
        return None  # no usage series: nothing to size from

    def mean_of(stat: str) -> float | None:
        return _weighted_mean((t[stat][key], w) for key, w in weights.items() if key in t[stat])

    def max_of(table: Mapping[Key, float]) -> float | None:
        values = [table[key] for key in keys if key in table]
        return max(values) if values else None

    p50, p95, p99, p999, p9999, top = _non_decreasing(
        [
            mean_of("p50"),
            mean_of("p95"),
            mean_of("p99"),
            mean_of("p999"),
            mean_of("p9999"),
            max_of(t["max"]),
        ]
    )
    if p50 is None or p95 is None or p99 is None or top is None:
        return None

    # Coverage: the union of the pods' step ranges [last - count + 1, last].
    intervals: list[tuple[int, int]] = []
    loose = 0
    for key, count in weights.items():
        n = round(count)
        last = t["last"].get(key)
        if last is None:
            loose += n
        else:
            high = round(last / step)
            intervals.append((high - n + 1, high))
    samples = min(_covered_steps(intervals) + loose, resolution.window_seconds // step)

    counted = [key for key in keys if key in t["periods"] and key in t["throttled"]]
    periods = sum(t["periods"][key] for key in counted)
    throttled = sum(t["throttled"][key] for key in counted)
    ratio = min(1.0, throttled / periods) if periods > 0 else 0.0
    spec = [
        round(t["cfs_period_us"][key])
        for key in keys
        if key in t["cfs_period_us"] and 1000 <= t["cfs_period_us"][key] <= 1_000_000
    ]
    cfs_period_us = max(spec) if spec else None
    # Per wall-clock second of the pods' lives (count × step each), like rate().
    lives = {key: count * step for key, count in weights.items()}
    alive = [key for key in counted if key in lives]
    period_s = (cfs_period_us or config.cfs_period_us) / 1e6
    alive_seconds = sum(lives[key] for key in alive)
    alive_periods = sum(t["periods"][key] for key in alive)
    active = min(1.0, alive_periods * period_s / alive_seconds) if alive_seconds > 0 else 0.0
    with_seconds = [key for key in alive if key in t["throttled_seconds"]]
    throttled_per_second: float | None = None
    if with_seconds:
        seconds = sum(lives[key] for key in with_seconds)
        unmet = sum(t["throttled_seconds"][key] for key in with_seconds)
        throttled_per_second = unmet / seconds if seconds > 0 else 0.0

    # Current resources: from the newest pod, the one whose usage was seen last.
    def recency(key: Key) -> tuple[float, float]:
        last = t["last"].get(key, -math.inf)
        return (last, last - weights.get(key, 0) * step)

    ordered = sorted(keys, key=recency, reverse=True)

    def newest(stat: str) -> float | None:
        return next((k[stat][key] for key in ordered if key in k[stat]), None)

    cpu_request, cpu_limit = newest("cpu_request"), newest("cpu_limit")
    memory_request, memory_limit = newest("memory_request"), newest("memory_limit")
    resources = ContainerResources(
        name=name,
        cpu_request=None if cpu_request is None else parse_cores(cpu_request),
        cpu_limit=None if cpu_limit is None else parse_cores(cpu_limit),
        memory_request=None if memory_request is None else parse_bytes(memory_request),
        memory_limit=None if memory_limit is None else parse_bytes(memory_limit),
    )
    cpu = CpuStats(
        usage_cores=UsagePercentiles(
            p50=p50, p95=p95, p99=p99, p999=p999, p9999=p9999, max=top, mean=mean_of("mean")
        ),
        throttled_period_ratio=ratio,
        throttled_seconds_per_second=throttled_per_second,
        samples=samples,
        window_seconds=resolution.window_seconds,
        step_seconds=step,
        cfs_period_us=cfs_period_us,
        active_period_ratio=active if active > 0 else None,
    )
    return ContainerStats(container=resources, cpu=cpu, memory=_memory(keys, t, k))


def _memory(keys: list[Key], t: _Tables, k: _Tables) -> MemoryStats | None:
    p99_values = [t["rss_p99"][key] for key in keys if key in t["rss_p99"]]
    max_values = [t["rss_max"][key] for key in keys if key in t["rss_max"]]
    if not p99_values and not max_values:
        return None
    rss_p99 = max(p99_values) if p99_values else max(max_values)
    rss_max = max([*max_values, rss_p99])
    wss = [t["wss_max"][key] for key in keys if key in t["wss_max"]]
    slope = _weighted_mean(
        (t["rss_slope"][key], t["rss_count"].get(key, 0.0)) for key in keys if key in t["rss_slope"]
    )
    oom_kills = sum(
        max(1, round(k["restarts"].get(key, 0.0))) for key in keys if k["oom"].get(key, 0) > 0
    )
    return MemoryStats(
        rss_bytes=RssBytes(p99=parse_bytes(rss_p99), max=parse_bytes(rss_max)),
        working_set_bytes=WorkingSetBytes(max=parse_bytes(max(wss))) if wss else None,
        oom_kills=oom_kills,
        rss_slope_bytes_per_second=slope,
    )
