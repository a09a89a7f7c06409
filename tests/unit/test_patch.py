"""The patch decision and the patch itself: guardrails in order, only owned fields, rollback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from unthrottle.engine.recommend import recommend
from unthrottle.model.names import (
    LAST_PATCHED_ANNOTATION,
    PREVIOUS_RESOURCES_ANNOTATION,
    ROLLBACK_ANNOTATION,
)
from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.model.recommendation import NoRecommendation, NoRecommendationReason
from unthrottle.model.stats import ContainerStats
from unthrottle.model.status import ContainerAction
from unthrottle.model.workload import DeploymentInfo
from unthrottle.reconcile.patch import (
    PatchContext,
    decide,
    rollback_patch,
)
from unthrottle.reconcile.schedule import is_due
from unthrottle.reconcile.status import as_merge_patch
from unthrottle.sources.kubernetes import deployment_info

NOW_MS = 1_767_225_600_000
NOW = "2026-01-01T00:00:00Z"
HOUR_MS = 3_600_000


def deployment(
    *,
    env: list[dict[str, Any]] | None = None,
    annotations: dict[str, str] | None = None,
    ready: bool = True,
    limits: dict[str, str] | None = None,
    status_changes: dict[str, int] | None = None,
) -> DeploymentInfo:
    status = {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1}
    status["availableReplicas"] = 1 if ready else 0
    status.update(status_changes or {})
    return deployment_info(
        {
            "metadata": {
                "namespace": "shop",
                "name": "checkout",
                "uid": "u",
                "generation": 2,
                "annotations": annotations or {},
            },
            "spec": {
                "replicas": 1,
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "resources": {
                                    "requests": {"cpu": "300m", "memory": "512Mi"},
                                    "limits": limits
                                    if limits is not None
                                    else {"cpu": "300m", "memory": "512Mi"},
                                },
                                "env": env or [],
                            }
                        ]
                    }
                },
            },
            "status": status,
        },
        "WEB_CONCURRENCY",
    )


def quota_bound(container: dict[str, Any]) -> ContainerStats:
    return ContainerStats.model_validate(
        {
            "container": {"name": "app", **container},
            "cpu": {
                "usageCores": {"p50": 0.29, "p95": 0.3, "p99": 0.3, "max": 0.3},
                "throttledPeriodRatio": 0.6,
                "samples": 2016,
                "windowSeconds": 604_800,
            },
            "memory": {"rssBytes": {"p99": 300e6, "max": 320e6}},
        }
    )


def context(**changes: Any) -> PatchContext:
    values: dict[str, Any] = {"auto_patch": True, "now_ms": NOW_MS, "now_text": NOW}
    values.update(changes)
    return PatchContext(**values)


def test_recommend_mode_never_patches() -> None:
    d = deployment()
    result = recommend(quota_bound(d.containers[0].model_dump()), ThrottlePolicySpec())
    decision = decide(d, {"app": result}, ThrottlePolicySpec(), context(auto_patch=False))
    assert decision.patch is None
    assert decision.containers[0].action is ContainerAction.RECOMMENDED


def test_patch_is_stepped_and_touches_only_owned_fields() -> None:
    d = deployment()
    policy = ThrottlePolicySpec()
    result = recommend(quota_bound(d.containers[0].model_dump()), policy)
    # The engine asks for 540m/1080m (docs/recommendations.md, the quota-bound example);
    # maxStepUp 2 allows 600m at most from 300m, so request 540m and limit 600m.
    decision = decide(d, {"app": result}, policy, context())
    assert decision.patch is not None
    body = decision.patch
    assert set(body) == {"metadata", "spec"}
    assert set(body["metadata"]) == {"annotations"}
    assert set(body["spec"]) == {"template"}
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert set(container) == {"name", "resources"}  # no env: workers not managed
    assert container["resources"]["requests"]["cpu"] == "540m"
    assert container["resources"]["limits"]["cpu"] == "600m"
    annotations = body["metadata"]["annotations"]
    assert annotations[LAST_PATCHED_ANNOTATION] == NOW
    previous = json.loads(annotations[PREVIOUS_RESOURCES_ANNOTATION])
    assert previous["containers"]["app"]["resources"]["limits"]["cpu"] == "300m"
    assert body["spec"]["template"]["metadata"]["annotations"] == {
        "unthrottle.dev/cpu-burst-us": "10000"
    }
    assert decision.containers[0].action is ContainerAction.PATCHED


@pytest.mark.parametrize(
    ("changes", "ready", "phrase"),
    [
        ({"data_partial": True}, True, "partial"),
        ({"hpa_on_cpu": True}, True, "HorizontalPodAutoscaler"),
        ({"last_patched_ms": NOW_MS - HOUR_MS}, True, "cooldown: 23h"),
        ({"rollout_slots": 0}, True, "maxConcurrentRollouts"),
    ],
)
def test_guardrails_skip_with_a_reason(changes: dict[str, Any], ready: bool, phrase: str) -> None:
    d = deployment(ready=ready)
    result = recommend(quota_bound(d.containers[0].model_dump()), ThrottlePolicySpec())
    decision = decide(d, {"app": result}, ThrottlePolicySpec(), context(**changes))
    assert decision.patch is None
    assert decision.containers[0].action is ContainerAction.SKIPPED
    assert phrase in decision.skip_reason


def test_cooldown_over_allows_a_patch() -> None:
    d = deployment()
    result = recommend(quota_bound(d.containers[0].model_dump()), ThrottlePolicySpec())
    decision = decide(
        d, {"app": result}, ThrottlePolicySpec(), context(last_patched_ms=NOW_MS - 25 * HOUR_MS)
    )
    assert decision.patch is not None


def test_hysteresis_skips_small_changes() -> None:
    d = deployment()
    # Unthrottled at 300m with usage 200m: the engine asks for 300m → 450m and so on.
    calm = quota_bound(d.containers[0].model_dump())
    calm = calm.model_copy(
        update={"cpu": calm.cpu.model_copy(update={"throttled_period_ratio": 0.0})}
    )
    result = recommend(calm, ThrottlePolicySpec())
    policy = ThrottlePolicySpec.model_validate({"patch": {"minChange": 1.0, "maxStepUp": 1.5}})
    # with steps capped at +50% nothing reaches minChange 100%.
    decision = decide(d, {"app": result}, policy, context())
    assert decision.patch is None and "minChange" in decision.skip_reason


def test_hysteresis_never_strands_a_throttled_container() -> None:
    # Throttled in 60% of periods at 300m: a step of +50% (under minChange 100%) is still
    # rolled out, since the limit moves up for a container throttled above the target.
    d = deployment()
    result = recommend(quota_bound(d.containers[0].model_dump()), ThrottlePolicySpec())
    policy = ThrottlePolicySpec.model_validate({"patch": {"minChange": 1.0, "maxStepUp": 1.5}})
    decision = decide(d, {"app": result}, policy, context())
    assert decision.patch is not None
    container = decision.patch["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["cpu"] == "450m"


PENDING_ROLLOUTS = [
    ({"observedGeneration": 1}, "the controller has observed generation 1 of 2"),
    ({"replicas": 3, "updatedReplicas": 2}, "1 of 3 replicas still run the old template"),
]


@pytest.mark.parametrize(("status", "phrase"), PENDING_ROLLOUTS)
def test_a_pending_template_holds_the_patch_back(status: dict[str, int], phrase: str) -> None:
    d = deployment(status_changes=status)
    result = recommend(quota_bound(d.containers[0].model_dump()), ThrottlePolicySpec())
    decision = decide(d, {"app": result}, ThrottlePolicySpec(), context())
    assert decision.patch is None
    assert decision.skip_reason == f"rollout-in-progress: {phrase}"
    assert d.rollout_in_progress


def test_unavailable_pods_of_the_current_template_are_patched() -> None:
    # A throttled service failing its probes is not rolling out: it is the one to fix.
    d = deployment(ready=False)
    assert d.pending_rollout() == "" and not d.rollout_in_progress
    result = recommend(quota_bound(d.containers[0].model_dump()), ThrottlePolicySpec())
    assert decide(d, {"app": result}, ThrottlePolicySpec(), context()).patch is not None


def test_one_patch_never_cuts_the_request_past_its_step() -> None:
    # Request 500m, no CPU limit, nearly idle: the engine asks for a small request and a
    # limit; the request steps down to 250m at most (× 0.5), and the new limit is never
    # below the stepped request (not 20m/20m in one patch).
    d = deployment(limits={"memory": "512Mi"})
    d = d.model_copy(
        update={"containers": (d.containers[0].model_copy(update={"cpu_request": 500}),)}
    )
    idle = ContainerStats.model_validate(
        {
            "container": {"name": "app", "cpuRequest": "500m"},
            "cpu": {
                "usageCores": {"p50": 0.001, "p95": 0.002, "p99": 0.003, "max": 0.005},
                "throttledPeriodRatio": 0.0,
                "samples": 2016,
                "windowSeconds": 604_800,
            },
        }
    )
    result = recommend(idle, ThrottlePolicySpec())
    decision = decide(d, {"app": result}, ThrottlePolicySpec(), context())
    applied = decision.containers[0].applied
    assert applied is not None and applied.cpu_request == 125  # 500m × maxStepDown 0.25
    assert applied.cpu_limit is not None and applied.cpu_limit >= 125


def test_insufficient_data_is_never_patched() -> None:
    d = deployment()
    missing = NoRecommendation(reason=NoRecommendationReason.INSUFFICIENT_DATA, message="few")
    decision = decide(d, {"app": missing}, ThrottlePolicySpec(), context())
    assert decision.patch is None
    assert decision.containers[0].action is ContainerAction.INSUFFICIENT_DATA


def test_web_concurrency_goes_through_the_downward_api() -> None:
    d = deployment(env=[{"name": "WEB_CONCURRENCY", "value": "4"}])
    policy = ThrottlePolicySpec.model_validate({"webConcurrency": {"enabled": True}})
    result = recommend(quota_bound(d.containers[0].model_dump()), policy)
    decision = decide(d, {"app": result}, policy, context())
    assert decision.patch is not None
    container = decision.patch["spec"]["template"]["spec"]["containers"][0]
    # The engine's 1080m rounds to 2 cores; one step from 300m allows 600m, rounded up to
    # 1000m so that the workers still equal whole cores.
    assert container["resources"]["limits"]["cpu"] == "1"
    assert container["env"] == [
        {
            "name": "WEB_CONCURRENCY",
            "value": None,  # strategic merge: drop the literal
            "valueFrom": {
                "resourceFieldRef": {
                    "containerName": "app",
                    "resource": "limits.cpu",
                    "divisor": "1",
                }
            },
        }
    ]


def test_unset_limit_removes_it_and_workers_follow_requests() -> None:
    d = deployment(env=[{"name": "WEB_CONCURRENCY", "value": "4"}])
    policy = ThrottlePolicySpec.model_validate(
        {"webConcurrency": {"enabled": True}, "cpu": {"limitPolicy": "Unset"}}
    )
    result = recommend(quota_bound(d.containers[0].model_dump()), policy)
    decision = decide(d, {"app": result}, policy, context())
    assert decision.patch is not None
    container = decision.patch["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["cpu"] is None
    ref = container["env"][0]["valueFrom"]["resourceFieldRef"]
    assert ref["resource"] == "requests.cpu"


def test_rollback_restores_exactly_what_was_recorded() -> None:
    before = [{"name": "WEB_CONCURRENCY", "value": "4"}]
    original = deployment(env=before, limits={"cpu": "300m"})
    policy = ThrottlePolicySpec.model_validate({"webConcurrency": {"enabled": True}})
    result = recommend(quota_bound(original.containers[0].model_dump()), policy)
    patch = decide(original, {"app": result}, policy, context()).patch
    assert patch is not None
    # The Deployment as it is after that patch (what the API server would return).
    after = deployment(
        env=[
            {
                "name": "WEB_CONCURRENCY",
                "valueFrom": {
                    "resourceFieldRef": {"containerName": "app", "resource": "limits.cpu"}
                },
            }
        ],
        limits={"cpu": "1", "memory": "428Mi"},
        annotations={
            **patch["metadata"]["annotations"],
            ROLLBACK_ANNOTATION: "true",
        },
    )
    body = rollback_patch(after, "2026-01-02T00:00:00Z")
    assert body is not None
    container = body["spec"]["template"]["spec"]["containers"][0]
    # memory had no limit before: null removes the one the patch added
    assert container["resources"]["limits"] == {"cpu": "300m", "memory": None}
    assert container["env"] == [{"name": "WEB_CONCURRENCY", "value": "4", "valueFrom": None}]
    assert body["metadata"]["annotations"][ROLLBACK_ANNOTATION] is None
    assert body["metadata"]["annotations"][LAST_PATCHED_ANNOTATION] == "2026-01-02T00:00:00Z"
    assert rollback_patch(original, NOW) is None  # nothing recorded, nothing to restore


def test_is_due() -> None:
    policy: dict[str, Any] = {"metadata": {"generation": 2}, "spec": {"interval": "10m"}}
    assert is_due(policy, NOW_MS)  # never ran
    policy["status"] = {"observedGeneration": 2, "lastRunTime": NOW}
    assert not is_due(policy, NOW_MS + 9 * 60_000)
    assert is_due(policy, NOW_MS + 10 * 60_000)
    policy["metadata"]["generation"] = 3  # the spec changed
    assert is_due(policy, NOW_MS)


def test_status_merge_patch_unsets_empty_strings() -> None:
    status = {"message": "", "conditions": [{"type": "Ready", "message": ""}], "n": 0}
    assert as_merge_patch(status) == {"message": None, "conditions": [{"type": "Ready"}], "n": 0}


def test_settling_is_never_patched() -> None:
    d = deployment()
    settling = NoRecommendation(reason=NoRecommendationReason.SETTLING, message="about 5h more")
    decision = decide(d, {"app": settling}, ThrottlePolicySpec(), context())
    assert decision.patch is None
    assert decision.containers[0].action is ContainerAction.SETTLING
    assert decision.containers[0].reason == "about 5h more"
