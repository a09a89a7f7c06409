"""PromQL building: no label value can change the query around it.

Quoted literals are checked by decoding them back (PromQL string escapes are Go's, and for
the escapes :func:`quote` emits JSON's are the same), regexes with Python's ``re`` (RE2
and ``re`` agree on escaped metacharacters), and whole queries by scanning their
selectors while honouring string literals.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unthrottle.sources.prometheus_config import PrometheusConfig
from unthrottle.sources.prometheus_queries import USAGE_RULE, QueryBuilder, Resolution, plan_chunks
from unthrottle.sources.promql import Matcher, label_name, quote, regex_escape, selector

HOSTILE = ['a"b', "c\\d", "e\nf", "x|.*", "}", '"}) or vector(1) or ({"', "\t\r\x00\x7f", ".*"]
text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40)


@given(text)
def test_quote_round_trips(value: str) -> None:
    quoted = quote(value)
    assert json.loads(quoted) == value
    assert "\n" not in quoted and "\r" not in quoted
    # The only unescaped double quotes are the two delimiters.
    assert re.sub(r"\\.", "", quoted[1:-1]).count('"') == 0


@given(text, text)
def test_regex_escape_matches_exactly_the_value(value: str, other: str) -> None:
    pattern = regex_escape(value)
    assert re.fullmatch(pattern, value, flags=re.DOTALL)
    if other != value:
        assert not re.fullmatch(pattern, other, flags=re.DOTALL)


def test_any_of_matches_only_the_names() -> None:
    matcher = Matcher.any_of("namespace", HOSTILE)
    assert matcher.op == "=~"
    pattern = json.loads(matcher.render().removeprefix("namespace=~"))
    for name in HOSTILE:
        assert re.fullmatch(pattern, name, flags=re.DOTALL)
    for name in ("shop", "", "x", "ab", 'a"', "a\\b"):
        assert not re.fullmatch(pattern, name, flags=re.DOTALL)


@pytest.mark.parametrize("name", ["", "1a", "a-b", "a b", "__name__", "__x", 'a"'])
def test_bad_label_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="label name"):
        label_name(name)
    with pytest.raises(ValueError):
        Matcher.equal(name, "x")


def test_bad_metric_names_are_refused() -> None:
    with pytest.raises(ValueError, match="metric name"):
        selector('up{job="x"} or vector(1) or up', [])


def _selectors(query: str) -> list[tuple[str, list[str]]]:
    """Each ``metric{...}`` of a query with its matchers (string literals honoured)."""
    out: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(query):
        char = query[i]
        if char == '"':
            i = _end_of_string(query, i)
            continue
        if char == "{":
            name = re.search(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?$", query[:i])
            matchers, current, i = [], "", i + 1
            while query[i] != "}":
                if query[i] == '"':
                    end = _end_of_string(query, i)
                    current += query[i:end]
                    i = end
                elif query[i] == ",":
                    matchers.append(current.strip())
                    current, i = "", i + 1
                else:
                    current += query[i]
                    i += 1
            matchers.append(current.strip())
            out.append((name.group(1) if name and name.group(1) else "", matchers))
        i += 1
    return out


def _end_of_string(query: str, start: int) -> int:
    i = start + 1
    while query[i] != '"':
        i += 2 if query[i] == "\\" else 1
    return i + 1


def _queries(builder: QueryBuilder, namespaces: tuple[str, ...] | None) -> list[str]:
    return [
        *builder.presence_selectors(),
        *(promql for _, promql in builder.kube_state_metrics(namespaces)),
        *(q.promql for q in builder.chunk_queries(namespaces)),
        *(q.promql for q in builder.chunk_queries(namespaces, rule=True) if q.kind == "usage"),
    ]


def test_every_selector_carries_scope_and_extra_matchers() -> None:
    config = PrometheusConfig(
        url="http://prometheus:9090",
        extra_matchers={"cluster": 'pr"od\n'},
        cadvisor_matchers={"job": "kubelet"},
        kube_state_metrics_matchers={"job": "kube-state-metrics"},
    )
    builder = QueryBuilder(config, Resolution.for_window(7 * 86400))
    cluster = 'cluster="pr\\"od\\n"'
    namespace = Matcher.any_of("namespace", HOSTILE).render()
    selectors = [s for q in _queries(builder, tuple(HOSTILE)) for s in _selectors(q)]
    assert len(selectors) > 20
    for metric, matchers in selectors:
        assert cluster in matchers, metric
        if metric.startswith("container_"):
            assert 'job="kubelet"' in matchers
            assert 'container!=""' in matchers and 'container!="POD"' in matchers
            assert namespace in matchers
        elif metric == USAGE_RULE:  # recorded without the cAdvisor job's labels
            assert 'container!=""' in matchers and 'container!="POD"' in matchers
            assert namespace in matchers
            assert not any(m.startswith("job") for m in matchers)
        elif metric.startswith("kube_"):
            assert 'job="kube-state-metrics"' in matchers
            assert namespace in matchers
        else:  # the presence check: every namespace, the family's job
            assert metric == ""
            assert any(m.startswith("__name__=~") for m in matchers)


def test_no_namespace_matcher_for_every_namespace() -> None:
    builder = QueryBuilder(PrometheusConfig(url="http://p:9090"), Resolution.for_window(3600))
    for query in _queries(builder, None):
        for _, matchers in _selectors(query):
            assert not any(m.startswith("namespace") for m in matchers)
            assert not any(m.startswith("job") or m.startswith("metrics_path") for m in matchers)


def test_queries_use_the_resolution() -> None:
    builder = QueryBuilder(PrometheusConfig(url="http://p:9090"), Resolution.for_window(604800))
    assert "[5m]))" in builder.usage_rate(None)
    ksm = "\n".join(promql for _, promql in builder.kube_state_metrics(None))
    assert "[7d])" in ksm
    assert ":5m]" not in ksm  # no subquery: not series × steps
    assert "[7d]" in builder.counters(None)
    start, end = builder.resolution.range_bounds(1_700_000_123.456)
    assert (start % 300, end) == (0, 1_700_000_123.456)
    assert 604_500 < end - start <= 604_800  # the steps of a [7d:5m] subquery


def test_the_recording_rule_is_read_only_where_it_is_the_same_rate() -> None:
    config = PrometheusConfig(url="http://p:9090", cadvisor_matchers={"job": "kubelet"})
    week = QueryBuilder(config, Resolution.for_window(7 * 86400))
    assert week.uses_rule({USAGE_RULE}) and not week.uses_rule({"container_memory_rss"})
    assert not QueryBuilder(config, Resolution.for_window(7200)).uses_rule({USAGE_RULE})
    assert not QueryBuilder(config, Resolution.for_window(30 * 86400)).uses_rule({USAGE_RULE})
    assert week.usage_rate(None, rule=True).startswith(
        f"max by (namespace, pod, container) ({USAGE_RULE}{{"
    )


@pytest.mark.parametrize(
    ("window", "step", "rate"),
    [
        (7 * 86400, 300, 300),
        (86400, 60, 120),
        (3600, 30, 120),
        (300, 30, 120),
        (30 * 86400, 1290, 1290),
    ],
)
def test_resolution(window: int, step: int, rate: int) -> None:
    resolution = Resolution.for_window(window)
    assert (resolution.step_seconds, resolution.rate_seconds) == (step, rate)
    assert window // resolution.step_seconds <= 2016


def test_resolution_refuses_a_window_shorter_than_two_scrapes() -> None:
    with pytest.raises(ValueError, match="shorter"):
        Resolution.for_window(45)


@pytest.mark.parametrize(("window", "text"), [(300, "5m"), (604800, "7d"), (5400, "1h30m")])
def test_resolution_durations_are_promql_text(window: int, text: str) -> None:
    # Formatted by the one duration formatter (model.quantity), which PromQL accepts.
    assert Resolution.for_window(window).window == text


def test_plan_chunks() -> None:
    assert plan_chunks({"a": 3, "b": 3, "c": 3}, 10) == [("a", "b", "c")]
    assert plan_chunks({"a": 6, "b": 6, "c": 0}, 10) == [("a",), ("b", "c")]
    assert plan_chunks({"big": 50, "small": 1}, 10) == [("big",), ("small",)]
    assert plan_chunks({}, 10) == []


def test_config_repr_hides_secrets() -> None:
    config = PrometheusConfig(
        url="https://user:urlpass@prom.example:9090/x?token=q", bearer_token="tok3n"
    )
    text = repr(config) + str(config)
    for secret in ("tok3n", "urlpass", "token=q"):
        assert secret not in text
    assert "prom.example:9090/x" in text
    basic = PrometheusConfig(url="http://p:9090", username="me", password="pa55")
    assert "pa55" not in repr(basic)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"url": "ftp://p"},
        {"url": "http://p", "bearer_token": "t", "username": "u"},
        {"url": "http://p", "password": "x"},
        {"url": "http://p", "ca_bundle": "/ca.pem", "insecure_skip_verify": True},
        {"url": "http://p", "timeout_seconds": 0},
        {"url": "http://p", "retries": -1},
        {"url": "http://p", "extra_matchers": {"bad-name": "x"}},
        {"url": "http://p", "extra_matchers": {"namespace": "x"}},
    ],
)
def test_config_refuses(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PrometheusConfig(**kwargs)  # type: ignore[arg-type]
