"""The Prometheus source's HTTP behaviour under faults, against a scripted HTTP server.

The server is a few lines of ``http.server`` on loopback that answers each request from a
script (status, content type, body, delay) and records what it received: what a proxy, a
login page, an overloaded or a partial-answering Prometheus would do. The real Prometheus
is in tests/integration.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import subprocess
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from unthrottle.sandbox.prometheus import free_port
from unthrottle.sources.prometheus import PrometheusConfig, PrometheusError, PrometheusSource
from unthrottle.sources.prometheus_queries import REQUIRED_SERIES


@dataclass
class Answer:
    status: int = 200
    body: str = ""
    content_type: str = "application/json"
    delay: float = 0.0
    declared_length: int | None = None  # a Content-Length above the body's: a cut answer


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


def vector(rows: list[tuple[dict[str, str], str]], **extra: Any) -> Answer:
    result = [{"metric": labels, "value": [1700000000, value]} for labels, value in rows]
    body = {"status": "success", "data": {"resultType": "vector", "result": result}, **extra}
    return Answer(body=json.dumps(body))


def matrix(series: list[tuple[dict[str, str], list[str]]], **extra: Any) -> Answer:
    result = [
        {"metric": labels, "values": [[1700000000 + 30 * i, v] for i, v in enumerate(values)]}
        for labels, values in series
    ]
    body = {"status": "success", "data": {"resultType": "matrix", "result": result}, **extra}
    return Answer(body=json.dumps(body))


def error(status: int, error_type: str, message: str) -> Answer:
    body = {"status": "error", "errorType": error_type, "error": message}
    return Answer(status=status, body=json.dumps(body))


@dataclass
class FakePrometheus:
    script: Callable[[int, Seen], Answer]
    seen: list[Seen] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def fake() -> Iterator[Callable[[Callable[[int, Seen], Answer]], FakePrometheus]]:
    servers: list[ThreadingHTTPServer] = []

    def start(
        script: Callable[[int, Seen], Answer], cert: tuple[Path, Path] | None = None
    ) -> FakePrometheus:
        state = FakePrometheus(script)

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
                seen = Seen(self.command, self.path, dict(self.headers.items()), form)
                state.seen.append(seen)
                answer = state.script(len(state.seen) - 1, seen)
                time.sleep(answer.delay)
                payload = answer.body.encode()
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    length = answer.declared_length or len(payload)
                    self.send_header("Content-Length", str(length))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

            do_GET = _answer  # noqa: N815 - http.server's naming
            do_POST = _answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*cert)
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        scheme = "http" if cert is None else "https"
        state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
        return state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def source(url: str, **config: Any) -> PrometheusSource:
    config.setdefault("retries", 2)
    config.setdefault("timeout_seconds", 5)
    return PrometheusSource(PrometheusConfig(url=url, **config))


def test_login_page_is_not_an_answer(fake: Any) -> None:
    server = fake(lambda i, s: Answer(body="<html>Sign in</html>", content_type="text/html"))
    with source(server.url) as src, pytest.raises(PrometheusError, match="text/html") as caught:
        src.query("up", 1700000000)
    assert server.url in str(caught.value)
    assert len(server.seen) == 1


@pytest.mark.parametrize(
    ("status", "hint"), [(401, "wants credentials"), (403, "may not read this API")]
)
def test_refused_credentials_get_a_hint(fake: Any, status: int, hint: str) -> None:
    server = fake(lambda i, s: Answer(status=status, body="no", content_type="text/plain"))
    with source(server.url) as src, pytest.raises(PrometheusError) as caught:
        src.build_info()
    assert f"HTTP {status}" in str(caught.value) and hint in str(caught.value)
    assert len(server.seen) == 1


def test_https_against_a_plain_http_port_says_so(fake: Any) -> None:
    server = fake(lambda i, s: vector([]))
    url = server.url.replace("http://", "https://")
    with source(url) as src, pytest.raises(PrometheusError) as caught:
        src.build_info()
    assert str(caught.value) == (
        f"Prometheus at {url}: TLS error: the server answers in plain HTTP; use an http:// URL"
    )


def test_connection_refused_names_host_and_port() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with source(url, retries=0) as src, pytest.raises(PrometheusError) as caught:
        src.build_info()
    message = str(caught.value)
    assert f"nothing listens on 127.0.0.1:{url.rsplit(':', 1)[1]}" in message
    assert "\n" not in message


def test_a_cut_answer_is_one_sentence(fake: Any) -> None:
    server = fake(lambda i, s: Answer(body='{"status": "succ', declared_length=4096))
    with source(server.url) as src, pytest.raises(PrometheusError) as caught:
        src.query("up", 1700000000)
    message = str(caught.value)
    assert "the answer was cut off" in message
    assert "ChunkedEncodingError" not in message and "IncompleteRead" not in message


def test_unavailable_is_retried_a_bounded_number_of_times(fake: Any) -> None:
    server = fake(lambda i, s: Answer(status=503, body="overloaded", content_type="text/plain"))
    with source(server.url) as src, pytest.raises(PrometheusError, match="3 attempts"):
        src.query("up", 1700000000)
    assert len(server.seen) == 3


def test_a_retry_can_succeed(fake: Any) -> None:
    server = fake(lambda i, s: error(502, "unavailable", "bad gateway") if i == 0 else vector([]))
    with source(server.url) as src:
        assert src.query("up", 1700000000).rows == ()
    assert len(server.seen) == 2


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (error(503, "timeout", "query timed out in expression evaluation"), "timeout"),
        (error(422, "execution", "query processing would load too many samples"), "too many"),
        (error(400, "bad_data", "parse error"), "parse error"),
    ],
)
def test_errors_that_a_retry_cannot_fix_are_not_retried(
    fake: Any, answer: Answer, match: str
) -> None:
    server = fake(lambda i, s: answer)
    with source(server.url) as src, pytest.raises(PrometheusError, match=match):
        src.query("up", 1700000000)
    assert len(server.seen) == 1


def test_read_timeout_is_not_retried(fake: Any) -> None:
    server = fake(lambda i, s: Answer(body=json.dumps({"status": "success"}), delay=1.5))
    started = time.monotonic()
    with (
        source(server.url, timeout_seconds=0.3) as src,
        pytest.raises(PrometheusError, match=r"no answer within 0\.3s"),
    ):
        src.query("up", 1700000000)
    assert time.monotonic() - started < 1.2
    assert len(server.seen) == 1


def test_secrets_never_reach_a_message(fake: Any) -> None:
    def echo(i: int, seen: Seen) -> Answer:
        return error(400, "bad_data", f"refused {seen.headers.get('Authorization')}")

    server = fake(echo)
    with source(server.url, bearer_token="tok3n") as src, pytest.raises(PrometheusError) as caught:
        src.query("up", 1700000000)
    assert server.seen[0].headers["Authorization"] == "Bearer tok3n"
    assert "tok3n" not in str(caught.value)
    assert "***" in str(caught.value)


def test_basic_auth_and_the_query_form(fake: Any) -> None:
    server = fake(lambda i, s: vector([]))
    with source(server.url, username="me", password="pa55", collect_stats=True) as src:
        src.query('up{job="x"}', 1700000000.5)
    seen = server.seen[0]
    assert seen.method == "POST" and seen.path == "/api/v1/query"
    assert seen.headers["Authorization"] == "Basic " + base64.b64encode(b"me:pa55").decode()
    assert seen.form == {
        "query": 'up{job="x"}',
        "time": "1700000000.500",
        "timeout": "5",
        "stats": "all",
    }


def test_build_info(fake: Any) -> None:
    body = {"status": "success", "data": {"version": "2.42.0", "revision": "abc"}}
    server = fake(lambda i, s: Answer(body=json.dumps(body)))
    with source(server.url) as src:
        assert src.build_info()["version"] == "2.42.0"
    assert server.seen[0].method == "GET"
    assert server.seen[0].path == "/api/v1/status/buildinfo"


def test_partial_answers_and_bad_values(fake: Any) -> None:
    rows = [
        ({"unthrottle_stat": "p50", "namespace": "a", "pod": "p", "container": "c"}, "NaN"),
        ({"unthrottle_stat": "p95", "namespace": "a", "pod": "p", "container": "c"}, "+Inf"),
        ({"unthrottle_stat": "periods", "namespace": "a", "pod": "p", "container": "c"}, "-1"),
        ({"unthrottle_stat": "rss_slope", "namespace": "a", "pod": "p", "container": "c"}, "-5"),
    ]

    def answer(i: int, seen: Seen) -> Answer:
        if seen.path.startswith("/api/v1/label/__name__/values?"):
            names = {"status": "success", "data": [], "warnings": ["store eu-1 unavailable"]}
            return Answer(body=json.dumps(names))
        if seen.path == "/api/v1/query_range":
            points = ["NaN", "+Inf", "-1", "0.5"]
            labels = {"namespace": "a", "pod": "p", "container": "c"}
            return matrix([(labels, points)], warnings=["store eu-1 unavailable"])
        return vector(rows, warnings=["store eu-1 unavailable"])

    server = fake(answer)
    with source(server.url) as src:
        result = src.fetch("1h", end=1700000000)
    assert result.queries == 8 == len(server.seen)
    # Three bad rows in each of five instant answers (four of kube-state-metrics, the
    # counters), three bad points in each of two series.
    assert result.dropped_values == 3 * 5 + 3 * 2
    assert result.partial
    assert all("store eu-1 unavailable" in w for w in result.warnings)
    assert result.workloads == ()
    assert set(REQUIRED_SERIES) == result.missing_series


def test_unusable_values_are_named_by_their_series_not_missing(fake: Any) -> None:
    labels = {"namespace": "a", "pod": "p", "container": "c"}
    rows = [
        ({"unthrottle_stat": "periods", **labels}, "-1"),
        ({"unthrottle_stat": "rss_slope", **labels}, "-5"),  # a slope may be negative
    ]

    def answer(i: int, seen: Seen) -> Answer:
        if seen.path.startswith("/api/v1/label/__name__/values?"):
            names = {"status": "success", "data": list(REQUIRED_SERIES)}
            return Answer(body=json.dumps(names))
        if seen.path == "/api/v1/query_range":  # usage rates, then RSS
            return matrix([(labels, ["NaN", "+Inf", "-1", "0.5"])])
        return vector(rows)

    server = fake(answer)
    with source(server.url) as src:
        result = src.fetch("1h", end=1700000000)
    assert result.missing_series == frozenset()
    # Five instant answers (four of kube-state-metrics, the counters) carry the negative
    # periods; each range series has three unusable points.
    assert result.unusable_series == {
        "container_cpu_cfs_periods_total": 5,
        "container_cpu_usage_seconds_total": 3,
        "container_memory_rss": 3,
    }
    assert result.dropped_values == 5 + 3 + 3


@pytest.mark.parametrize("concurrency", [1, 3, 4])
def test_queries_run_concurrently_up_to_the_bound(fake: Any, concurrency: int) -> None:
    lock = threading.Lock()
    in_flight: list[int] = [0]
    most: list[int] = [0]

    def answer(i: int, seen: Seen) -> Answer:
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        time.sleep(0.15)  # long enough for every query the fetch has sent to arrive
        with lock:
            in_flight[0] -= 1
        if seen.path.startswith("/api/v1/label/__name__/values?"):
            return Answer(body=json.dumps({"status": "success", "data": []}))
        if seen.path == "/api/v1/query_range":
            return matrix([])
        return vector([])

    server = fake(answer)
    with source(server.url, concurrency=concurrency) as src:
        started = time.monotonic()
        result = src.fetch("1h", end=1700000000)
        took = time.monotonic() - started
    # The presence check and the 4 kube-state-metrics queries go together, then the
    # chunk's 3: never more than the bound in flight, and as many as it allows.
    assert result.queries == 8
    assert most[0] == concurrency
    rounds = -(-5 // concurrency) + -(-3 // concurrency)
    assert took >= rounds * 0.15


def test_series_names_are_asked_of_the_index_in_one_request(fake: Any) -> None:
    body = {"status": "success", "data": ["container_memory_rss", "kube_pod_owner"]}
    server = fake(lambda i, s: Answer(body=json.dumps(body)))
    with source(server.url) as src:
        answer = src.series_names(['{__name__=~"a|b"}', '{__name__="c", job="x"}'], 100.5, 200)
    assert answer.names == {"container_memory_rss", "kube_pod_owner"}
    (seen,) = server.seen
    path, _, query = seen.path.partition("?")
    assert (seen.method, path) == ("GET", "/api/v1/label/__name__/values")
    assert parse_qs(query) == {
        "match[]": ['{__name__=~"a|b"}', '{__name__="c", job="x"}'],
        "start": ["100.500"],
        "end": ["200.000"],
    }
    server = fake(lambda i, s: vector([]))
    with source(server.url) as src, pytest.raises(PrometheusError, match="list of names"):
        src.series_names(["{a}"], 0, 1)


def test_malformed_vector_is_an_error(fake: Any) -> None:
    body = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    server = fake(lambda i, s: Answer(body=json.dumps(body)))
    with source(server.url) as src, pytest.raises(PrometheusError, match="vector"):
        src.query("up[5m]", 1700000000)


def test_an_unverified_server_is_warned_about_once_not_per_request(
    fake: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = fake(lambda i, s: vector([]), cert=(cert, key))
    with (
        warnings.catch_warnings(record=True) as caught,
        caplog.at_level(logging.WARNING, logger="unthrottle"),
    ):
        warnings.simplefilter("always")  # as urllib3 sets for its security warnings
        for _ in range(2):
            with source(server.url, insecure_skip_verify=True) as src:
                for _ in range(3):
                    assert src.query("up", 1700000000).rows == ()
    assert len(server.seen) == 6
    assert [str(w.message) for w in caught] == []
    said = [r.getMessage() for r in caplog.records if "not verified" in r.getMessage()]
    assert said == [f"TLS certificates of {server.url} are not verified (as configured)"]
