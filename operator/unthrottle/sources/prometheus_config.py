"""How to reach one Prometheus and what to read from it: :class:`PrometheusConfig`.

This module owns the configuration of a Prometheus source (where, how to authenticate,
what to read, how many queries may be in flight) and its validation; the client that
uses it is :mod:`.prometheus_http`. A configuration never shows a credential in its
``repr`` or in a message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from unthrottle.sources.prometheus_queries import (
    DEFAULT_MAX_POINTS,
    DEFAULT_MAX_SERIES_PER_QUERY,
    RESERVED_LABELS,
)
from unthrottle.sources.promql import label_name

__all__ = ["DEFAULT_CONCURRENCY", "MAX_CONCURRENCY", "PrometheusConfig", "display_url"]

DEFAULT_CONCURRENCY: Final = 4
MAX_CONCURRENCY: Final = 32


def display_url(url: str) -> str:
    # Credentials in the URL (user:pass@) and query strings (?token=) never reach a message.
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _frozen(labels: Mapping[str, str] | None, what: str) -> Mapping[str, str]:
    out = dict(labels or {})
    for name in out:
        label_name(name)
        if name in RESERVED_LABELS:
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
    (the kubelet's ``cpuCFSQuotaPeriod``, 100 ms unless changed). ``concurrency`` bounds
    the queries of one fetch in flight at once (4 by default). ``compress_answers`` asks
    for gzip-compressed answers: less to transfer, much more CPU on Prometheus' side
    (worth it only over a slow link).
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
    concurrency: int = DEFAULT_CONCURRENCY
    compress_answers: bool = False

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not an http(s) URL: {display_url(self.url)!r}")
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
        if not 1 <= self.concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be between 1 and {MAX_CONCURRENCY}")
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
        return display_url(self.url)

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
            f"cfs_period_us={self.cfs_period_us}, concurrency={self.concurrency})"
        )

    __str__ = __repr__
