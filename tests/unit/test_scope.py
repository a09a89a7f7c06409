"""Pure rules of scope: parsing Deployments, selectors, tier labels, opt-outs, the join."""

from __future__ import annotations

from typing import Any

from unthrottle.model.policy import LabelSelector, ThrottlePolicySpec, Tier
from unthrottle.model.recommendation import NoRecommendation, NoRecommendationReason
from unthrottle.model.stats import ContainerStats, WebConcurrencySource
from unthrottle.model.workload import WorkloadRef, WorkloadStats
from unthrottle.reconcile.scope import (
    OperatorScope,
    Rival,
    is_ignored,
    join,
    namespaces_in_scope,
    policy_for,
    split_governed,
    tier_for,
)
from unthrottle.sources.kubernetes import deployment_info


def deployment(
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    env: list[dict[str, Any]] | None = None,
    template_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": "shop",
            "name": "checkout",
            "uid": "u-1",
            "generation": 3,
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"annotations": template_annotations or {}},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "256Mi"},
                                "limits": {"cpu": 1, "memory": "1Gi"},
                            },
                            "env": env or [],
                        },
                        {"name": "sidecar"},
                    ]
                },
            },
        },
        "status": {"observedGeneration": 3, "updatedReplicas": 1},
    }


def test_deployment_info_reads_resources_and_rollout_state() -> None:
    info = deployment_info(
        deployment(template_annotations={"unthrottle.dev/cpu-burst-us": "20000"}),
        "WEB_CONCURRENCY",
    )
    assert info.ref == WorkloadRef(namespace="shop", name="checkout")
    app = info.container("app")
    assert app is not None
    # A bare number in a manifest is cores: limits.cpu 1 → 1000m.
    assert (app.cpu_request, app.cpu_limit) == (250, 1000)
    assert (app.memory_request, app.memory_limit) == (256 * 2**20, 2**30)
    assert app.cpu_burst_us == 20_000
    sidecar = info.container("sidecar")
    assert sidecar is not None and sidecar.cpu_limit is None
    assert info.rollout_in_progress  # 1 of 2 replicas updated


def test_web_concurrency_sources() -> None:
    literal = deployment_info(
        deployment(env=[{"name": "WEB_CONCURRENCY", "value": "4"}]), "WEB_CONCURRENCY"
    ).container("app")
    assert literal is not None
    assert (literal.web_concurrency, literal.web_concurrency_from) == (
        4,
        WebConcurrencySource.LITERAL,
    )
    downward = [
        {
            "name": "WORKERS",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}},
        }
    ]
    via_api = deployment_info(deployment(env=downward), "WORKERS").container("app")
    assert via_api is not None
    assert via_api.web_concurrency_from is WebConcurrencySource.LIMITS_CPU
    other_name = deployment_info(deployment(env=downward), "WEB_CONCURRENCY").container("app")
    assert other_name is not None and other_name.web_concurrency_from is None


def test_label_selector_query() -> None:
    selector = LabelSelector.model_validate(
        {
            "matchLabels": {"team": "shop", "app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "owner", "operator": "Exists"},
            ],
        }
    )
    assert selector.to_query() == ("app=web,team=shop,tier in (a,b),!canary,env notin (dev),owner")
    assert LabelSelector().to_query() == "" and LabelSelector().is_empty()


def test_tier_label_and_opt_out() -> None:
    policy = ThrottlePolicySpec()
    critical = deployment_info(deployment(labels={"unthrottle.dev/tier": "critical"}), "X")
    assert tier_for(critical, policy) is Tier.CRITICAL
    assert policy_for(critical, policy).tier is Tier.CRITICAL
    bogus = deployment_info(deployment(labels={"unthrottle.dev/tier": "gold"}), "X")
    assert tier_for(bogus, policy) is Tier.PRODUCTION
    assert is_ignored(
        deployment_info(deployment(annotations={"unthrottle.dev/ignore": "true"}), "X")
    )
    assert not is_ignored(
        deployment_info(deployment(annotations={"unthrottle.dev/ignore": "no"}), "X")
    )


def configuration(
    cpu: tuple[str | None, str | None], memory: tuple[str | None, str | None], ratio: float
) -> dict[str, Any]:
    """A configuration's statistics in the JSON form (requests, limits, throttle ratio)."""
    resources = {
        "cpuRequest": cpu[0],
        "cpuLimit": cpu[1],
        "memoryRequest": memory[0],
        "memoryLimit": memory[1],
    }
    return {
        "container": {"name": "app", **{k: v for k, v in resources.items() if v is not None}},
        "cpu": {
            "usageCores": {"p50": 0.1, "p95": 0.2, "p99": 0.3, "max": 0.4},
            "throttledPeriodRatio": ratio,
            "samples": 100,
            "windowSeconds": 3600,
        },
    }


SPEC = configuration(("250m", "1"), ("256Mi", "1Gi"), 0.01)  # the deployment() above
OLD = configuration(("300m", "300m"), ("256Mi", "1Gi"), 0.98)
CANARY = configuration(("500m", "2"), ("256Mi", "1Gi"), 0.0)


def stats_of(current: dict[str, Any], *history: dict[str, Any]) -> ContainerStats:
    return ContainerStats.model_validate({**current, "history": list(history)})


def joined_app(stats: ContainerStats, **kwargs: Any) -> ContainerStats | NoRecommendation:
    info = deployment_info(deployment(**kwargs), "WEB_CONCURRENCY")
    app, _ = join([info], [WorkloadStats(ref=info.ref, containers=(stats,))])
    return app.stats


def test_join_takes_the_configuration_the_spec_runs_and_names_missing_metrics() -> None:
    threads = stats_of(SPEC, OLD).model_copy(
        update={"container": stats_of(SPEC).container.model_copy(update={"threads": 4})}
    )
    info = deployment_info(
        deployment(env=[{"name": "WEB_CONCURRENCY", "value": "3"}]), "WEB_CONCURRENCY"
    )
    workload = WorkloadStats(ref=info.ref, containers=(threads,))
    app, sidecar = join([info], [workload])
    assert isinstance(app.stats, ContainerStats)
    assert app.stats.container.cpu_limit == 1000
    assert app.stats.cpu.throttled_period_ratio == 0.01  # its own, not the old 98%
    assert [h.cpu.throttled_period_ratio for h in app.stats.history] == [0.98]
    assert app.stats.container.web_concurrency == 3  # from the spec
    assert app.stats.container.threads == 4  # only the statistics knew it
    assert isinstance(sidecar.stats, NoRecommendation)
    assert sidecar.stats.reason is NoRecommendationReason.MISSING_METRICS
    assert "sidecar" in sidecar.stats.message
    ignored = deployment_info(deployment(annotations={"unthrottle.dev/ignore": "true"}), "X")
    assert join([ignored], [workload]) == []


def test_join_finds_the_spec_in_the_history_newest_first() -> None:
    # The newest pods ran another configuration (a canary since rolled back): the spec's
    # is in the history; the others stay history, newest first.
    result = joined_app(stats_of(CANARY, SPEC, OLD))
    assert isinstance(result, ContainerStats)
    assert result.cpu.throttled_period_ratio == 0.01
    assert [h.container.cpu_limit for h in result.history] == [2000, 300]


def test_no_pod_of_the_spec_yet_is_settling() -> None:
    result = joined_app(stats_of(OLD))
    assert isinstance(result, NoRecommendation)
    assert result.reason is NoRecommendationReason.SETTLING
    assert result.message == (
        "no pod has run with cpu 250m/1, memory 256Mi/1Gi yet; 1 earlier configuration seen"
    )
    two = joined_app(stats_of(CANARY, OLD))
    assert isinstance(two, NoRecommendation)
    assert two.message.endswith("; 2 earlier configurations seen")


def test_a_spec_without_requests_matches_pods_whose_requests_are_the_limits() -> None:
    spec = deployment()
    resources = spec["spec"]["template"]["spec"]["containers"][0]["resources"]
    resources["requests"] = {}
    resources["limits"] = {"cpu": "2", "memory": "1Gi"}
    info = deployment_info(spec, "WEB_CONCURRENCY")
    # kube-state-metrics shows what the API server defaulted: requests = limits.
    stats = stats_of(configuration(("2", "2"), ("1Gi", "1Gi"), 0.0))
    (app, _) = join([info], [WorkloadStats(ref=info.ref, containers=(stats,))])
    assert isinstance(app.stats, ContainerStats)


def test_resources_kube_state_metrics_could_not_show_do_not_contradict_the_spec() -> None:
    unknown = configuration((None, None), (None, None), 0.2)
    result = joined_app(stats_of(unknown))
    assert isinstance(result, ContainerStats)
    assert result.container.cpu_limit == 1000  # the spec's
    assert result.cpu.throttled_period_ratio == 0.2


def test_the_oldest_policy_governs_an_overlap() -> None:
    shop = deployment_info(deployment(labels={"app": "web"}), "X")
    labels = {"shop": {"team": "shop"}, "kube-system": {}}
    bounds = OperatorScope("unthrottle-system")
    everything = ThrottlePolicySpec()
    by_team = ThrottlePolicySpec.model_validate(
        {"namespaceSelector": {"matchLabels": {"team": "shop"}}}
    )
    assert namespaces_in_scope(everything, labels, bounds) == ["shop"]  # no kube-system
    assert namespaces_in_scope(by_team, {"other": {}}, bounds) == []
    old, new = ("2026-01-01T00:00:00Z", "a-old"), ("2026-02-01T00:00:00Z", "b-new")
    # The newer policy gives the Deployment up to the older one, and says so ...
    governed, overlaps = split_governed(new, [Rival(old, everything)], [shop], labels, bounds)
    assert governed == []
    assert overlaps == ["shop/checkout: governed by a-old (older)"]
    # ... and the older one keeps it, naming the other.
    governed, overlaps = split_governed(old, [Rival(new, by_team)], [shop], labels, bounds)
    assert governed == [shop]
    assert overlaps == ["shop/checkout: also selected by b-new; this policy governs"]
    # A rival that does not select it changes nothing.
    other_team = ThrottlePolicySpec.model_validate({"selector": {"matchLabels": {"app": "api"}}})
    assert split_governed(new, [Rival(old, other_team)], [shop], labels, bounds) == ([shop], [])
    # The operator's allowed namespaces bound every policy.
    narrow = OperatorScope("unthrottle-system", frozenset({"web"}))
    assert namespaces_in_scope(everything, labels, narrow) == []
