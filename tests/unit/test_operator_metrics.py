"""The operator's ``/metrics``: per-container recommendation gauges and pass timestamps.

Read through the real prometheus_client registry as the exposition text, from the real
HTTP server ``unthrottle run`` starts (``handlers.metrics.serve``): a second pass replaces
the first pass's set (stale containers disappear), and a deleted policy leaves nothing.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from unthrottle.engine.recommend import recommend
from unthrottle.handlers.metrics import (
    ContainerGauge,
    container_gauges,
    forget_policy,
    record_pass,
    record_recommendations,
    serve,
)
from unthrottle.model.policy import ThrottlePolicySpec, Tier
from unthrottle.model.stats import ContainerStats
from unthrottle.model.status import ContainerAction
from unthrottle.model.workload import WorkloadRef
from unthrottle.reconcile.patch import ContainerDecision, DeploymentDecision
from unthrottle.reconcile.run import PASS_STEPS, PassResult
from unthrottle.reconcile.status import WorkloadOutcome
from unthrottle.sandbox.prometheus import free_port

Sample = tuple[str, dict[str, str], float]


@pytest.fixture(scope="module")
def metrics_url() -> str:
    port = free_port()
    serve(port, "127.0.0.1")
    return f"http://127.0.0.1:{port}/metrics"


@pytest.fixture
def policy_name(request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"test-{request.node.name}"
    yield name
    forget_policy(name)


def scrape(url: str, policy: str) -> list[Sample]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        text = answer.read().decode()
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("policy") == policy
    ]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [v for n, ls, v in samples if n == name and labels.items() <= ls.items()]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def gauge(workload: str, action: str = "Recommended", **values: float | int) -> ContainerGauge:
    return ContainerGauge(
        namespace="shop", kind="Deployment", workload=workload, container="app", action=action,
        **values,  # type: ignore[arg-type]
    )  # fmt: skip


def test_recommendations_are_exported_in_cores(metrics_url: str, policy_name: str) -> None:
    record_recommendations(
        policy_name,
        [
            gauge(
                "checkout",
                "Patched",
                cpu_request=300,
                cpu_limit=300,
                recommended_cpu_request=900,
                recommended_cpu_limit=1800,
                throttle_ratio=0.97,
                projected_throttle_ratio=0.004,
                last_patched_seconds=1_767_225_000.0,
            )
        ],
    )
    samples = scrape(metrics_url, policy_name)
    labels = {"namespace": "shop", "kind": "Deployment", "workload": "checkout", "container": "app"}
    assert value(samples, "unthrottle_container_cpu_request_cores", **labels) == 0.3
    assert value(samples, "unthrottle_container_cpu_limit_cores", **labels) == 0.3
    assert value(samples, "unthrottle_recommended_cpu_request_cores", **labels) == 0.9
    assert value(samples, "unthrottle_recommended_cpu_limit_cores", **labels) == 1.8
    assert value(samples, "unthrottle_observed_throttle_ratio", **labels) == 0.97
    assert value(samples, "unthrottle_projected_throttle_ratio", **labels) == 0.004
    assert value(samples, "unthrottle_last_patch_timestamp_seconds", **labels) == 1_767_225_000
    assert value(samples, "unthrottle_recommendation_action", action="Patched", **labels) == 1


def test_a_pass_replaces_the_previous_set(metrics_url: str, policy_name: str) -> None:
    record_recommendations(
        policy_name,
        [gauge("checkout", cpu_limit=300), gauge("catalog", "Skipped", cpu_limit=500)],
    )
    assert len(scrape(metrics_url, policy_name)) == 4  # two limits, two actions
    # Next pass: catalog left the policy; checkout was patched and has no limit any more.
    record_recommendations(policy_name, [gauge("checkout", "Patched", cpu_request=900)])
    samples = scrape(metrics_url, policy_name)
    assert {(n, ls["workload"], ls.get("action")) for n, ls, _ in samples} == {
        ("unthrottle_container_cpu_request_cores", "checkout", None),
        ("unthrottle_recommendation_action", "checkout", "Patched"),
    }
    record_recommendations(policy_name, [])
    assert scrape(metrics_url, policy_name) == []


def test_policies_do_not_touch_each_other(metrics_url: str, policy_name: str) -> None:
    other = policy_name + "-other"
    try:
        record_recommendations(policy_name, [gauge("checkout", cpu_limit=300)])
        record_recommendations(other, [gauge("ledger", cpu_limit=4000)])
        record_recommendations(policy_name, [])
        assert scrape(metrics_url, policy_name) == []
        assert value(scrape(metrics_url, other), "unthrottle_container_cpu_limit_cores") == 4
    finally:
        forget_policy(other)


def test_pass_timestamps_and_forget(metrics_url: str, policy_name: str) -> None:
    ok = PassResult(policy=policy_name, ok=True, workloads=3, throttled=1, patched=1, seconds=0.5)
    record_pass(policy_name, ok, interval_seconds=300, now=1000.0)
    record_pass(policy_name, None, interval_seconds=300, now=1300.0)  # the API server failed
    unreachable = PassResult(policy=policy_name, ok=False, prometheus_error=True)
    record_pass(policy_name, unreachable, interval_seconds=300, now=1600.0)
    samples = scrape(metrics_url, policy_name)
    assert value(samples, "unthrottle_last_pass_timestamp_seconds") == 1600
    assert value(samples, "unthrottle_last_success_timestamp_seconds") == 1000
    assert value(samples, "unthrottle_pass_interval_seconds") == 300
    assert value(samples, "unthrottle_reconcile_failures_total") == 1
    assert value(samples, "unthrottle_prometheus_errors_total") == 1
    assert value(samples, "unthrottle_patches_total") == 1
    record_recommendations(policy_name, [gauge("checkout", cpu_limit=300)])
    forget_policy(policy_name)
    assert scrape(metrics_url, policy_name) == []


def test_each_step_of_a_pass_is_timed_on_metrics(metrics_url: str, policy_name: str) -> None:
    steps = {"read": 0.03, "prometheus": 2.5, "plan": 0.2, "apply": 0.75}
    for _ in range(2):
        done = PassResult(policy=policy_name, ok=True, seconds=3.48, steps=dict(steps))
        record_pass(policy_name, done, now=1000.0)
    samples = scrape(metrics_url, policy_name)
    for step in PASS_STEPS:
        timed = [(n, v) for n, labels, v in samples if labels.get("step") == step]
        assert ("unthrottle_pass_step_seconds_count", 2.0) in timed, step
        total = dict(timed)["unthrottle_pass_step_seconds_sum"]
        assert total == pytest.approx(2 * steps[step]), step
    # the buckets say where the time goes: the Prometheus step above 2 s, planning below 0.5 s
    prometheus = {
        labels["le"]: v
        for n, labels, v in samples
        if n == "unthrottle_pass_step_seconds_bucket" and labels["step"] == "prometheus"
    }
    assert prometheus["2.0"] == 0 and prometheus["5.0"] == 2
    assert value(samples, "unthrottle_reconcile_duration_seconds_count") == 2
    forget_policy(policy_name)
    assert scrape(metrics_url, policy_name) == []


def test_a_first_failing_pass_starts_the_success_clock(metrics_url: str, policy_name: str) -> None:
    record_pass(policy_name, None, now=500.0)
    samples = scrape(metrics_url, policy_name)
    assert value(samples, "unthrottle_last_success_timestamp_seconds") == 500
    assert value(samples, "unthrottle_pass_interval_seconds") == 600  # the default 10m


def test_container_gauges_from_a_pass_outcome() -> None:
    stats = ContainerStats.model_validate(
        {
            "container": {"name": "app", "cpuRequest": "300m", "cpuLimit": "300m"},
            "cpu": {
                "usageCores": {"p50": 0.29, "p95": 0.3, "p99": 0.3, "max": 0.3},
                "throttledPeriodRatio": 0.95,
                "samples": 2016,
                "windowSeconds": 604_800,
            },
        }
    )
    result = recommend(stats, ThrottlePolicySpec())
    outcome = WorkloadOutcome(
        ref=WorkloadRef(namespace="shop", name="checkout"),
        tier=Tier.PRODUCTION,
        containers=[stats.container],
        stats={"app": stats},
        decision=DeploymentDecision(
            containers=(ContainerDecision("app", result, ContainerAction.PATCHED),)
        ),
    )
    (only,) = container_gauges(outcome, "2026-01-01T00:00:00Z")
    assert (only.namespace, only.kind, only.workload, only.container) == (
        "shop", "Deployment", "checkout", "app",
    )  # fmt: skip
    assert only.action == "Patched"
    assert (only.cpu_request, only.cpu_limit, only.throttle_ratio) == (300, 300, 0.95)
    assert only.recommended_cpu_limit is not None and only.recommended_cpu_limit > 300
    assert only.projected_throttle_ratio is not None and only.projected_throttle_ratio < 0.05
    assert only.last_patched_seconds == 1_767_225_600
    (unpatched,) = container_gauges(outcome)
    assert unpatched.last_patched_seconds is None
