"""The HTTP side of reading Prometheus: configuration, requests, retries, one error type.

This module owns how unthrottle talks to a Prometheus (or Thanos, Mimir,
VictoriaMetrics): :class:`PrometheusClient` (timeouts, bounded retries, auth, TLS) and
:class:`PrometheusError`. The configuration it is given, :class:`PrometheusConfig`, is
:mod:`.prometheus_config`'s; the answers it returns (with the ``warnings`` and ``stats``
of the JSON), :mod:`.prometheus_answers`'. It speaks only the standard HTTP API (``/api/v1/query``,
``/api/v1/query_range``, ``/api/v1/label/__name__/values`` and
``/api/v1/status/buildinfo``). The API is synchronous
and thread-safe (a pool of sessions, one per request in flight); the operator calls it
through ``asyncio.to_thread``. Answers are streamed and decoded one result element at a
time (:mod:`.prometheus_stream`); a range query's series are reduced as they arrive, so
no answer is ever held whole. What is asked is
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

import queue
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Final, Self, TypeVar
from urllib.parse import urlsplit

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from urllib3.util.retry import Retry

from unthrottle.sources.prometheus_answers import (
    NamesAnswer,
    QueryAnswer,
    QueryStats,
    RangeAnswer,
    series_of,
    vector_row,
)
from unthrottle.sources.prometheus_config import PrometheusConfig
from unthrottle.sources.prometheus_stream import ResultStream
from unthrottle.sources.tls import unverified

__all__ = ["PrometheusClient", "PrometheusConfig", "PrometheusError"]

T = TypeVar("T")

_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})
_BACKOFF_FIRST_S: Final = 0.5
_BACKOFF_MAX_S: Final = 5.0
_CONNECT_TIMEOUT_MAX_S: Final = 5.0
_REASON_MAX_CHARS: Final = 300
_AUTH_HINTS: Final = {
    401: "the server wants credentials: a bearer token or basic auth",
    403: "the credentials given may not read this API (or this URL is not the API's base)",
}
_CHUNK_BYTES: Final = 1 << 18  # read size of a streamed answer


class PrometheusError(Exception):
    """Prometheus could not answer: the URL (without credentials) and a short reason."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"Prometheus at {url}: {reason}")


class PrometheusClient:
    """A synchronous, thread-safe client of one Prometheus (see the module docstring).

    Thread-safe because every request borrows a ``requests`` session (which is not
    documented as thread-safe) from a pool, so ``config.concurrency`` threads (the fetch's
    workers) can each have one query in flight. ``build_info()`` is the health check,
    ``query()`` one instant query, ``query_range()`` one range query reduced per series.
    """

    def __init__(self, config: PrometheusConfig) -> None:
        self.config = config
        self.url = config.display_url
        self._count_lock = threading.Lock()
        self._queries = 0
        # Given with every request: a session-level ``verify`` loses to REQUESTS_CA_BUNDLE
        # in the environment (requests merges the environment over the session), which
        # would drop the CA bundle or the explicit insecure flag.
        self._verify: str | bool = (
            False if config.insecure_skip_verify else config.ca_bundle or True
        )
        # Uncompressed unless asked: Prometheus gzips a large answer at a few tens of MB/s
        # of one core, ten times what evaluating a range query costs it (a 6 MB matrix:
        # 0.9 s against 0.08 s on 2.42), so only a slow link is worth it.
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip" if config.compress_answers else "identity",
        }
        if config.bearer_token:
            headers["Authorization"] = f"Bearer {config.bearer_token}"
        auth = (config.username, config.password or "") if config.username else None
        self._headers = headers
        self._auth = auth
        self._secrets = tuple(
            s for s in (config.bearer_token, config.password, urlsplit(config.url).password) if s
        )
        if config.insecure_skip_verify:
            unverified(self.url)
        self._clients: list[PrometheusConnect] = []
        self._idle: queue.SimpleQueue[requests.Session] = queue.SimpleQueue()
        self._idle.put(self._new_session())

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.verify = self._verify
        try:
            client = PrometheusConnect(
                url=self.config.url,
                headers=self._headers,
                disable_ssl=self.config.insecure_skip_verify,
                # urllib3 retries off (this class decides what a retry can fix), and
                # read=False so that a read timeout surfaces as requests' ReadTimeout
                # rather than a ConnectionError wrapping MaxRetryError.
                retry=Retry(total=0, read=False),
                auth=self._auth,
                session=session,
                timeout=self.config.timeout_seconds,
            )
        except (TypeError, ValueError) as exc:
            raise PrometheusError(self.url, self._scrub(str(exc))) from None
        with self._count_lock:
            self._clients.append(client)
        return session

    @contextmanager
    def _session(self) -> Iterator[requests.Session]:
        try:
            session = self._idle.get_nowait()
        except queue.Empty:
            session = self._new_session()
        try:
            yield session
        finally:
            self._idle.put(session)

    # -- lifecycle ------------------------------------------------------------------

    def close(self) -> None:
        with self._count_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

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
        element: Callable[[Any], T] | None = None,
    ) -> tuple[Any, list[T], int]:
        """One API call with the retry policy: the decoded success answer without its
        ``data.result``, each result element passed through ``element`` (as it arrives),
        and the HTTP requests sent.

        ``data`` is a POSTed form, ``params`` the query string of a GET (repeated keys
        allowed). ``element`` raises ``ValueError`` for an element it cannot use.
        """
        timeout = self.config.timeout_seconds
        attempts = self.config.retries + 1
        reason = "no attempt made"
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2 ** (attempt - 1)))
            try:
                body, kept = self._attempt(method, path, data, params, element)
            except requests.exceptions.ReadTimeout:
                raise self._fail(f"no answer within {timeout:g}s (not retried)") from None
            except requests.exceptions.SSLError as exc:
                raise self._fail(_tls_reason(exc)) from None
            except requests.ConnectionError as exc:
                reason = _connect_reason(exc, self.config.url)
                continue
            except requests.exceptions.ChunkedEncodingError as exc:
                if "Read timed out" in str(exc):  # while streaming the body
                    raise self._fail(f"no answer within {timeout:g}s (not retried)") from None
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
            return body, kept, attempt + 1
        raise self._fail(f"{reason} (gave up after {attempts} attempts)")

    def _attempt(
        self,
        method: str,
        path: str,
        data: Mapping[str, str] | None,
        params: Sequence[tuple[str, str]] | None,
        element: Callable[[Any], T] | None,
    ) -> tuple[Any, list[T]]:
        """One HTTP request, counted, on an idle session; its errors are the caller's."""
        timeout = self.config.timeout_seconds
        with self._count_lock:
            self._queries += 1
        with (
            self._session() as session,
            session.request(
                method,
                self.config.url + path,
                data=data,
                params=params,
                headers=self._headers,
                auth=self._auth,
                timeout=(min(_CONNECT_TIMEOUT_MAX_S, timeout), timeout),
                verify=self._verify,
                stream=True,
            ) as response,
        ):
            return self._decode(response, element)

    def _decode(
        self, response: requests.Response, element: Callable[[Any], T] | None
    ) -> tuple[Any, list[T]]:
        status = response.status_code
        if status in _AUTH_HINTS:
            raise _AnswerError(f"HTTP {status} {response.reason}: {_AUTH_HINTS[status]}")
        stream = ResultStream(response.iter_content(chunk_size=_CHUNK_BYTES))
        kept: list[T] = []
        body: Any
        try:
            for item in stream.elements():
                if element is None or status != 200:
                    raise _AnswerError(f"HTTP {status}: unexpected result array")
                try:
                    kept.append(element(item))
                except ValueError as exc:
                    raise _AnswerError(str(exc)) from None
            body = stream.envelope
        except _AnswerError:
            raise
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
        return body, kept

    def build_info(self) -> Mapping[str, str]:
        """``/api/v1/status/buildinfo``: the health check (version, revision, ...)."""
        body, _, _ = self._request("GET", "/api/v1/status/buildinfo", None)
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
        body, _, sent = self._request("GET", "/api/v1/label/__name__/values", None, params)
        seconds = time.perf_counter() - started
        data = body.get("data")
        if not isinstance(data, list) or not all(isinstance(v, str) for v in data):
            raise self._fail(f"{name}: expected a list of names")
        warnings = tuple(str(w) for w in body.get("warnings") or ())
        stats = QueryStats(name=name, seconds=seconds, series=len(data))
        return NamesAnswer(frozenset(data), warnings, stats, sent)

    def _evaluate(
        self, path: str, form: dict[str, str], kind: str, name: str, element: Callable[[Any], T]
    ) -> tuple[list[T], tuple[str, ...], QueryStats, int]:
        form["timeout"] = f"{self.config.timeout_seconds:g}"  # seconds, as every flavour parses
        if self.config.collect_stats:
            form["stats"] = "all"
        started = time.perf_counter()
        body, kept, sent = self._request("POST", path, form, element=element)
        seconds = time.perf_counter() - started
        data = body.get("data")
        if not isinstance(data, dict) or data.get("resultType") != kind:
            raise self._fail(f"{name}: expected a {kind} answer")
        if not isinstance(data.get("result"), list):
            raise self._fail(f"{name}: answer without a result list")
        warnings = tuple(str(w) for w in body.get("warnings") or ())
        samples = data.get("stats", {}).get("samples", {}) if self.config.collect_stats else {}
        stats = QueryStats(
            name=name,
            seconds=seconds,
            series=len(kept),
            total_queryable_samples=_int_or_none(samples.get("totalQueryableSamples")),
            peak_samples=_int_or_none(samples.get("peakSamples")),
        )
        return kept, warnings, stats, sent

    def query(self, promql: str, at: float, *, name: str = "query") -> QueryAnswer:
        """One instant query evaluated at ``at`` (epoch seconds); a vector answer."""
        form = {"query": promql, "time": f"{at:.3f}"}
        rows, warnings, stats, sent = self._evaluate(
            "/api/v1/query", form, "vector", name, vector_row
        )
        return QueryAnswer(tuple(rows), warnings, stats, sent)

    def query_range(
        self,
        promql: str,
        start: float,
        end: float,
        step_seconds: int,
        reduce: Callable[[Mapping[str, str], Sequence[Any]], T],
        *,
        name: str = "query-range",
        keep_labels: Collection[str] | None = None,
    ) -> RangeAnswer[T]:
        """One range query; each series reduced by ``reduce(labels, points)`` as it arrives.

        ``points`` are the API's ``[t, "value"]`` pairs; only the reductions are kept, so
        the answer is never held whole (:mod:`.prometheus_stream`). ``reduce`` raises
        ``ValueError`` for points it cannot use (the query then fails). ``keep_labels``:
        the label names a row keeps (None: all of the series').
        """
        form = {
            "query": promql,
            "start": f"{start:.3f}",
            "end": f"{end:.3f}",
            "step": str(step_seconds),
        }

        def element(item: Any) -> tuple[Mapping[str, str], T]:
            labels, values = series_of(item)
            reduced = reduce(labels, values)
            if keep_labels is not None:
                labels = {k: labels[k] for k in keep_labels if k in labels}
            return labels, reduced

        rows, warnings, stats, sent = self._evaluate(
            "/api/v1/query_range", form, "matrix", name, element
        )
        return RangeAnswer(tuple(rows), warnings, stats, sent)


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
