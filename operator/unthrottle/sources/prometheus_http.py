"""The HTTP side of reading Prometheus: configuration, requests, retries, one error type.

This module owns how unthrottle talks to a Prometheus (or Thanos, Mimir,
VictoriaMetrics): :class:`PrometheusConfig` (where, how to authenticate, what to read),
:class:`PrometheusClient` (timeouts, bounded retries, auth, TLS), the answers it returns
(:class:`QueryAnswer` with the ``warnings`` and ``stats`` of the JSON) and
:class:`PrometheusError`. It speaks only the standard HTTP API (``/api/v1/query``,
``/api/v1/label/__name__/values`` and ``/api/v1/status/buildinfo``). The API is synchronous
and thread-safe; the operator calls it through ``asyncio.to_thread``. What is asked is
:mod:`.prometheus_queries`' business. Which series exist is asked of the index:
``/api/v1/label/__name__/values`` with ``match[]`` selectors over a time range
(:meth:`PrometheusClient.series_names`).

The client is built on ``prometheus_api_client.PrometheusConnect``, which sets up the
``requests`` session (auth, TLS verification, the adapter for the URL). Queries are sent
on that session by this module, not through ``custom_query``, because the library drops
the ``warnings`` of a partial response (Thanos with a store down, Mimir with a shard
failing) and the ``stats`` of ``stats=all`` silently; both are read here from the JSON
answer. Queries are POSTed as a form, so a long namespace regex never meets a URL length
limit. Every request has a timeout (connect ``min(5 s, timeout)``, read ``timeout``) and
the query carries ``timeout=`` for Prometheus to stop evaluating too. The library's
urllib3 retries are switched off; this module retries instead, ``retries`` times with
backoff 0.5 s, 1 s, 2 s, ... (at most 5 s), and only what a retry can fix: connection
failures and HTTP 429/502/503/504, except a 503 that says the query timed out. A read
timeout is not retried: the same query would time out again and cost Prometheus as much
each time. Every failure, whatever raised it (``requests.RequestException``, a
``ValueError`` from a body that is not JSON such as a login page,
``PrometheusApiClientException``) becomes :class:`PrometheusError` with the URL
(credentials and query string removed) and a short reason; no token or password is ever
part of a message. The health check is ``/api/v1/status/buildinfo``
(``PrometheusConnect.check_prometheus_connection`` only fetches ``/``, which a login page
passes).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit, urlunsplit

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from unthrottle.sources.prometheus_queries import (
    DEFAULT_MAX_POINTS,
    DEFAULT_MAX_SERIES_PER_QUERY,
    RESERVED_LABELS,
)
from unthrottle.sources.promql import label_name

__all__ = [
    "NamesAnswer",
    "PrometheusClient",
    "PrometheusConfig",
    "PrometheusError",
    "QueryAnswer",
    "QueryStats",
]

_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
_BACKOFF_FIRST_S: Final = 0.5
_BACKOFF_MAX_S: Final = 5.0
_CONNECT_TIMEOUT_MAX_S: Final = 5.0
_REASON_MAX_CHARS: Final = 300
_AUTH_HINTS: Final = {
    401: "the server wants credentials: a bearer token or basic auth",
    403: "the credentials given may not read this API (or this URL is not the API's base)",
}


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


@dataclass(frozen=True, slots=True)
class NamesAnswer:
    """A label-values answer: the series names, warnings, and what it cost."""

    names: frozenset[str]
    warnings: tuple[str, ...]
    stats: QueryStats
    requests: int = 1  # HTTP requests it took (1 + retries)


class PrometheusClient:
    """A synchronous, thread-safe client of one Prometheus (see the module docstring).

    Thread-safe because a lock lets one request at a time use the ``requests`` session
    (which is not documented as thread-safe); that also keeps one client's load on
    Prometheus to one query at a time. ``build_info()`` is the health check, ``query()``
    one instant query.
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
        return f"{type(self).__name__}({self.config!r})"

    @property
    def queries_made(self) -> int:
        """HTTP requests sent by this client so far (every attempt counts)."""
        return self._queries

    # -- HTTP -----------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text[:_REASON_MAX_CHARS]

    def _fail(self, reason: str) -> PrometheusError:
        return PrometheusError(self.url, self._scrub(reason))

    def _request(
        self,
        method: str,
        path: str,
        data: Mapping[str, str] | None,
        params: Sequence[tuple[str, str]] | None = None,
    ) -> tuple[Any, int]:
        """One API call with the retry policy: the decoded success answer, HTTP requests sent.

        ``data`` is a POSTed form, ``params`` the query string of a GET (repeated keys
        allowed).
        """
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
                        params=params,
                        headers=self._headers,
                        auth=self._auth,
                        timeout=(min(_CONNECT_TIMEOUT_MAX_S, timeout), timeout),
                        verify=self._verify,
                    )
                body = self._decode(response)
            except requests.exceptions.ReadTimeout:
                raise self._fail(f"no answer within {timeout:g}s (not retried)") from None
            except requests.exceptions.SSLError as exc:
                raise self._fail(_tls_reason(exc)) from None
            except requests.ConnectionError as exc:
                reason = _connect_reason(exc, self.config.url)
                continue
            except requests.exceptions.ChunkedEncodingError:
                raise self._fail(
                    "the answer was cut off: the connection closed before its end "
                    "(a proxy or Prometheus stopped mid-answer)"
                ) from None
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
        if status in _AUTH_HINTS:
            raise _AnswerError(f"HTTP {status} {response.reason}: {_AUTH_HINTS[status]}")
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

    def series_names(
        self, selectors: Sequence[str], start: float, end: float, *, name: str = "series-names"
    ) -> NamesAnswer:
        """Names of the series matching any of ``selectors`` in ``[start, end]`` (epoch s).

        ``/api/v1/label/__name__/values`` with ``match[]``, ``start`` and ``end``
        (Prometheus 2.24 and later, Thanos, Mimir, VictoriaMetrics): one request for all
        the selectors, answered from the index without reading samples. The index is
        searched per block, so a series that ended shortly before ``start`` (within the
        same TSDB block, 2 h or more) may still be named; one that existed at any time in
        the window always is.
        """
        params = [("match[]", s) for s in selectors]
        params += [("start", f"{start:.3f}"), ("end", f"{end:.3f}")]
        started = time.perf_counter()
        body, requests_sent = self._request("GET", "/api/v1/label/__name__/values", None, params)
        seconds = time.perf_counter() - started
        data = body.get("data")
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise self._fail(f"{name}: expected a list of names")
        warnings = tuple(str(w) for w in body.get("warnings") or ())
        stats = QueryStats(name=name, seconds=seconds, series=len(data))
        return NamesAnswer(frozenset(data), warnings, stats, requests_sent)

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


def _tls_reason(exc: BaseException) -> str:
    text = str(exc)
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        # The TLS handshake was answered in plain HTTP.
        return "TLS error: the server answers in plain HTTP; use an http:// URL"
    return f"TLS error: {_short(exc)}"


def _connect_reason(exc: BaseException, url: str) -> str:
    cause = _short(exc)
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if cause == "Connection refused":
        return (
            f"cannot connect: nothing listens on {parts.hostname}:{port} "
            "(check the URL's host and port, or the port-forward)"
        )
    if cause == "Name or service not known":
        return f"cannot connect: no host {parts.hostname!r} in DNS (check the URL)"
    return f"cannot connect: {cause}"


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
