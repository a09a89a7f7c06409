"""The plan of a pass, from snapshots built as plain data: no cluster, no Prometheus.

Each test builds a :class:`ClusterSnapshot` the way the read step would fill it and asserts
on the :class:`PassPlan`: patches, annotations, Events, trec statuses, stale trecs and the
policy's status. The last tests run two passes in a row, the second reading back what the
first wrote.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from unthrottle.cli.report import build_report
from unthrottle.model.names import (
    AUTO_PATCH_LABEL,
    LAST_PATCHED_ANNOTATION,
    PREVIOUS_RESOURCES_ANNOTATION,
    RECOMMENDATION_ANNOTATION,
    ROLLBACK_ANNOTATION,
)
from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.model.recommendation import NoRecommendation, output_fields
from unthrottle.model.stats import ContainerStats
from unthrottle.model.workload import NodeCpu, WorkloadRef, WorkloadStats
from unthrottle.reconcile.plan import PassPlan, plan_pass, plan_rollbacks
from unthrottle.reconcile.scope import OperatorScope, Rival
from unthrottle.reconcile.snapshot import (
    ClusterSnapshot,
    Instant,
    MetricsSnapshot,
    PassFailure,
    PolicyObject,
    parse_policy,
)
from unthrottle.sources.kubernetes import deployment_info
from unthrottle.sources.prometheus import FetchResult
from unthrottle.sources.prometheus_queries import Resolution

NOW = Instant.from_ms(1_767_225_600_000)  # 2026-01-01T00:00:00Z
HOUR_MS = 3_600_000
BOUNDS = OperatorScope("unthrottle-system")


def manifest(namespace: str, name: str, **metadata: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": namespace,
            "name": name,
            "uid": f"uid-{name}",
            "generation": 2,
            "labels": metadata.get("labels", {}),
            "annotations": metadata.get("annotations", {}),
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
                                "limits": {"cpu": "300m", "memory": "512Mi"},
                            },
                        }
                    ]
                }
            },
        },
        "status": {
            "observedGeneration": 2,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": 1,
        },
    }


def stats(throttled: float = 0.6, usage: float = 0.29) -> ContainerStats:
    return ContainerStats.model_validate(
        {
            "container": {
                "name": "app",
                "cpuRequest": "300m",
                "cpuLimit": "300m",
                "memoryRequest": "512Mi",
                "memoryLimit": "512Mi",
            },
            "cpu": {
                "usageCores": {"p50": usage, "p95": 0.3, "p99": 0.3, "max": 0.3},
                "throttledPeriodRatio": throttled,
                "samples": 2016,
                "windowSeconds": 604_800,
            },
            "memory": {"rssBytes": {"p99": 300e6, "max": 320e6}},
        }
    )


def policy(name: str = "p", created: str = "2026-01-01T00:00:00Z", **spec: Any) -> PolicyObject:
    parsed = parse_policy(
        {"metadata": {"name": name, "generation": 1, "creationTimestamp": created}, "spec": spec}
    )
    assert isinstance(parsed, PolicyObject)
    return parsed


def snapshot(
    manifests: list[dict[str, Any]],
    *,
    labels: dict[str, dict[str, str]] | None = None,
    throttled: float = 0.6,
    **changes: Any,
) -> ClusterSnapshot:
    deployments = tuple(deployment_info(m, "WEB_CONCURRENCY") for m in manifests)
    namespaces: dict[str, dict[str, str]] = {d.ref.namespace: {} for d in deployments}
    namespaces.update(labels or {})
    workloads = tuple(
        WorkloadStats(ref=d.ref, containers=(stats(throttled),), pods=1) for d in deployments
    )
    values: dict[str, Any] = {
        "bounds": BOUNDS,
        "namespace_labels": namespaces,
        "deployments": deployments,
        "metrics": MetricsSnapshot(workloads=workloads, source="http://prometheus:9090"),
    }
    values.update(changes)
    return ClusterSnapshot(**values)


AUTO = {"shop": {AUTO_PATCH_LABEL: "enabled"}}


def patched(plan: PassPlan) -> list[str]:
    return [str(w.deployment.ref) for w in plan.workloads if w.patch is not None]


def actions(plan: PassPlan) -> dict[str, str]:
    return {str(w.deployment.ref): w.trec_status_patch["summary"]["action"] for w in plan.workloads}


def test_recommend_mode_never_patches_but_annotates_and_writes_trecs() -> None:
    plan = plan_pass(policy(), snapshot([manifest("shop", "checkout")], labels=AUTO), NOW)
    assert plan.ok and patched(plan) == []
    (workload,) = plan.workloads
    assert workload.annotations is not None
    annotation = workload.annotations[RECOMMENDATION_ANNOTATION]
    assert annotation is not None
    document = json.loads(annotation)
    assert document["containers"]["app"]["cpuLimit"] is not None
    assert workload.trec_status_patch["summary"]["action"] == "Recommended"
    assert plan.status.counts.workloads == 1 and plan.status.counts.throttled == 1


def test_autopatch_only_in_labelled_namespaces() -> None:
    shot = snapshot(
        [manifest("shop", "checkout"), manifest("web", "frontend")],
        labels=AUTO,
    )
    plan = plan_pass(policy(mode="AutoPatch", patch={"maxConcurrentRollouts": 5}), shot, NOW)
    assert patched(plan) == ["shop/checkout"]
    assert actions(plan) == {"shop/checkout": "Patched", "web/frontend": "Recommended"}
    (event,) = plan.workloads[0].events
    assert event.reason == "Patched"
    patch = plan.workloads[0].patch
    assert patch is not None
    annotations = patch["metadata"]["annotations"]
    assert annotations[LAST_PATCHED_ANNOTATION] == NOW.text
    assert RECOMMENDATION_ANNOTATION in annotations and PREVIOUS_RESOURCES_ANNOTATION in annotations


def test_one_rollout_slot_patches_one_deployment_and_says_why_the_other_waits() -> None:
    shot = snapshot([manifest("shop", "a"), manifest("shop", "b")], labels=AUTO)
    plan = plan_pass(policy(mode="AutoPatch"), shot, NOW)
    assert patched(plan) == ["shop/a"]
    waiting = plan.workloads[1]
    assert waiting.trec_status_patch["containers"][0]["reason"].startswith(
        "max-concurrent-rollouts"
    )
    assert [e.reason for e in waiting.events] == ["Skipped"]


def test_a_rollout_the_operator_started_takes_the_slot() -> None:
    rolling = manifest("shop", "a", annotations={LAST_PATCHED_ANNOTATION: "2025-12-01T00:00:00Z"})
    rolling["status"]["updatedReplicas"] = 0  # the new template is not out yet
    plan = plan_pass(
        policy(mode="AutoPatch"), snapshot([rolling, manifest("shop", "b")], labels=AUTO), NOW
    )
    assert patched(plan) == []


def test_cooldown_and_hpa_hold_a_patch_back() -> None:
    recent = manifest(
        "shop", "recent", annotations={LAST_PATCHED_ANNOTATION: "2025-12-31T23:00:00Z"}
    )
    scaled = manifest("shop", "scaled")
    shot = snapshot(
        [recent, scaled],
        labels=AUTO,
        cpu_autoscaled=frozenset({WorkloadRef(namespace="shop", name="scaled")}),
    )
    plan = plan_pass(policy(mode="AutoPatch", patch={"maxConcurrentRollouts": 5}), shot, NOW)
    assert patched(plan) == []
    reasons = {
        str(w.deployment.ref): w.trec_status_patch["containers"][0]["reason"]
        for w in plan.workloads
    }
    assert reasons["shop/recent"].startswith("cooldown: 23h")
    assert reasons["shop/scaled"].startswith("hpa-on-cpu")


def test_skipped_event_only_when_the_reason_code_changes() -> None:
    shot = snapshot([manifest("shop", "a"), manifest("shop", "b")], labels=AUTO)
    first = plan_pass(policy(mode="AutoPatch"), shot, NOW)
    previous = {("shop", "b"): first.workloads[1].trec_status_patch}
    again = plan_pass(
        policy(mode="AutoPatch"),
        snapshot(
            [manifest("shop", "a"), manifest("shop", "b")], labels=AUTO, recommendations=previous
        ),
        NOW,
    )
    assert [e.reason for e in again.workloads[1].events] == []


def test_partial_data_patches_nothing_and_says_so() -> None:
    shot = snapshot([manifest("shop", "a")], labels=AUTO)
    assert shot.metrics is not None
    partial = ClusterSnapshot(
        **{
            **vars(shot),
            "metrics": MetricsSnapshot(
                workloads=shot.metrics.workloads, source="x", warnings=("store down",)
            ),
        }
    )
    plan = plan_pass(policy(mode="AutoPatch"), partial, NOW)
    assert patched(plan) == []
    assert plan.status.message == (
        "Prometheus warned the data may be partial (store down); nothing was patched"
    )
    reachable = {c.type: c for c in plan.status.conditions}["PrometheusReachable"]
    assert (reachable.status, reachable.reason, reachable.message) == (
        "True",
        "PartialAnswer",
        "store down",
    )


def test_prometheus_is_reachable_only_once_it_answered() -> None:
    asked_nothing = ClusterSnapshot(
        bounds=BOUNDS, metrics=MetricsSnapshot(workloads=(), source="x", answered=False)
    )
    plan = plan_pass(policy(), asked_nothing, NOW)
    reachable = {c.type: c for c in plan.status.conditions}["PrometheusReachable"]
    assert (reachable.status, reachable.reason) == ("Unknown", "NotQueried")
    answered = plan_pass(policy(), snapshot([manifest("shop", "a")]), NOW)
    reachable = {c.type: c for c in answered.status.conditions}["PrometheusReachable"]
    assert (reachable.status, reachable.reason, reachable.message) == ("True", "Answered", "")


def test_an_older_policy_governs_and_the_overlap_is_stated() -> None:
    older = Rival(("2025-01-01T00:00:00Z", "older"), ThrottlePolicySpec())
    shot = snapshot([manifest("shop", "a")], rivals=(older,))
    plan = plan_pass(policy(), shot, NOW)
    assert plan.workloads == ()
    assert plan.status.overlaps == ("shop/a: governed by older (older)",)


def test_system_and_operator_namespaces_are_left_out_by_default() -> None:
    shot = snapshot(
        [manifest("kube-system", "dns"), manifest("unthrottle-system", "op"), manifest("shop", "a")]
    )
    plan = plan_pass(policy(), shot, NOW)
    assert [str(w.deployment.ref) for w in plan.workloads] == ["shop/a"]


def test_opted_out_deployment_gets_no_trec_and_its_old_one_is_stale() -> None:
    ignored = manifest("shop", "a", annotations={"unthrottle.dev/ignore": "true"})
    shot = snapshot([ignored], recommendations={("shop", "a"): {}, ("gone", "b"): {}})
    plan = plan_pass(policy(), shot, NOW)
    assert plan.workloads == ()
    assert plan.stale_recommendations == (("gone", "b"), ("shop", "a"))


def test_failures_and_missing_series_write_only_the_status() -> None:
    failed = plan_pass(
        policy(),
        ClusterSnapshot(bounds=BOUNDS, failure=PassFailure("PrometheusUnavailable", "down", False)),
        NOW,
    )
    assert not failed.ok and failed.workloads == () and failed.prometheus_error
    conditions = {c.type: c for c in failed.status.conditions}
    assert conditions["Ready"].reason == "PrometheusUnavailable"
    assert conditions["PrometheusReachable"].status == "False"
    shot = snapshot([manifest("shop", "a")])
    assert shot.metrics is not None
    missing = ClusterSnapshot(
        **{
            **vars(shot),
            "metrics": MetricsSnapshot(
                workloads=(), source="x", missing_series=frozenset({"container_memory_rss"})
            ),
        }
    )
    plan = plan_pass(policy(), missing, NOW)
    assert not plan.ok and plan.workloads == ()
    assert "container_memory_rss" in plan.status.message


def test_invalid_policy_lists_every_violation() -> None:
    failure = parse_policy(
        {"metadata": {"name": "bad"}, "spec": {"throttleTarget": 2, "tier": "gold"}}
    )
    assert isinstance(failure, PassFailure) and failure.reason == "InvalidPolicy"
    assert "spec.throttleTarget" in failure.message and "spec.tier" in failure.message


def test_rollback_restores_what_was_recorded_or_says_it_cannot() -> None:
    before = {"containers": {"app": {"env": None, "resources": {"requests": {"cpu": "300m"}}}}}
    asked = manifest(
        "shop",
        "a",
        annotations={
            ROLLBACK_ANNOTATION: "true",
            PREVIOUS_RESOURCES_ANNOTATION: json.dumps({"burst": None, **before}),
        },
    )
    nothing = manifest("shop", "b", annotations={ROLLBACK_ANNOTATION: "true"})
    ignored = manifest(
        "shop", "c", annotations={ROLLBACK_ANNOTATION: "true", "unthrottle.dev/ignore": "true"}
    )
    rollbacks = plan_rollbacks(snapshot([asked, nothing, ignored]), NOW)
    assert [str(r.deployment.ref) for r in rollbacks] == ["shop/a", "shop/b"]
    restored, impossible = rollbacks
    assert restored.patch is not None and restored.event.reason == "RolledBack"
    (container,) = restored.patch["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"]["cpu"] == "300m"
    assert impossible.patch is None and impossible.event.warning
    assert impossible.annotations == {ROLLBACK_ANNOTATION: None}


def _apply(manifest_: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A strategic merge of the plan's patch, for what it contains: annotations, and
    containers merged by name."""
    out = copy.deepcopy(manifest_)
    out["metadata"]["annotations"].update(patch["metadata"]["annotations"])
    by_name = {c["name"]: c for c in out["spec"]["template"]["spec"]["containers"]}
    for container in patch["spec"]["template"]["spec"]["containers"]:
        target = by_name[container["name"]]
        for section, values in container["resources"].items():
            target["resources"].setdefault(section, {}).update(values)
    return out


def test_the_next_pass_reads_back_what_the_first_wrote_and_writes_nothing() -> None:
    first_manifest = manifest("shop", "a")
    first = plan_pass(policy(mode="AutoPatch"), snapshot([first_manifest], labels=AUTO), NOW)
    (workload,) = first.workloads
    assert workload.patch is not None
    after = _apply(first_manifest, workload.patch)
    later = Instant.from_ms(NOW.ms + HOUR_MS)
    second = plan_pass(
        policy(mode="AutoPatch"),
        snapshot([after], labels=AUTO, recommendations={("shop", "a"): workload.trec_status_patch}),
        later,
    )
    (again,) = second.workloads
    assert again.patch is None  # settling, then the cooldown
    assert again.trec_status_patch["summary"]["action"] in {"Settling", "Skipped"}


def test_a_pass_with_nothing_new_writes_no_annotation() -> None:
    first = plan_pass(policy(), snapshot([manifest("shop", "a")]), NOW)
    (workload,) = first.workloads
    assert workload.annotations is not None
    annotated = manifest("shop", "a", annotations=dict(workload.annotations))
    second = plan_pass(policy(), snapshot([annotated]), NOW)
    assert second.workloads[0].annotations is None
    assert second.workloads[0].patch is None


def fetch_result(workloads: tuple[WorkloadStats, ...]) -> FetchResult:
    """What a Prometheus fetch of a week returns for these workloads, complete."""
    return FetchResult(
        workloads=workloads,
        missing_series=frozenset(),
        optional_series=frozenset(),
        queries=1,
        query_stats=(),
        warnings=(),
        dropped_values=0,
        resolution=Resolution.for_window(7 * 24 * 3600),
        end=NOW.ms / 1000,
        chunks=1,
        pods_without_deployment=0,
    )


def test_the_report_and_the_plan_agree_on_every_number() -> None:
    shot = snapshot([manifest("shop", "a"), manifest("web", "b")])
    assert shot.metrics is not None
    fetched = fetch_result(shot.metrics.workloads)
    rows = build_report(fetched, ThrottlePolicySpec(), list(shot.deployments))
    plan = plan_pass(policy(), shot, NOW)
    planned = {
        (str(w.deployment.ref), c["name"]): c["recommended"]
        for w in plan.workloads
        for c in w.trec_status_patch["containers"]
    }
    assert len(rows) == len(planned) == 2
    for row in rows:
        recommended = planned[(str(row.ref), row.container.name)]
        reported = output_fields(row.result)
        for name in ("cpuRequest", "cpuLimit", "memoryLimit", "webConcurrency"):
            assert reported[name] == recommended[name], name


def test_the_annotation_holds_values_not_explanations_and_moves_only_beyond_hysteresis() -> None:
    quiet = policy(burst={"enabled": False})  # patch.minChange 10%

    def annotation_after(throttled: float, annotations: dict[str, str]) -> dict[str, Any] | None:
        shot = snapshot([manifest("shop", "a", annotations=annotations)], throttled=throttled)
        return plan_pass(quiet, shot, NOW).workloads[0].annotations

    written = annotation_after(0.6, {})
    assert written is not None and written[RECOMMENDATION_ANNOTATION] is not None
    fields = json.loads(written[RECOMMENDATION_ANNOTATION])["containers"]["app"]
    assert fields["cpuLimit"] == "1080m"
    assert "explanation" not in fields and "projectedThrottleRatio" not in fields
    annotated = {RECOMMENDATION_ANNOTATION: written[RECOMMENDATION_ANNOTATION]}
    # 62% throttled: 1080m → 1100m (+2%) is within the hysteresis; the Deployment is not
    # written (the trec has the new numbers).
    assert annotation_after(0.62, annotated) is None
    # 70% throttled: 1080m → 1280m (+19%) moved beyond it.
    moved = annotation_after(0.7, annotated)
    assert moved is not None and moved[RECOMMENDATION_ANNOTATION] is not None
    assert json.loads(moved[RECOMMENDATION_ANNOTATION])["containers"]["app"]["cpuLimit"] == "1280m"


def test_an_annotation_with_explanations_is_written_anew_once() -> None:
    first = plan_pass(policy(), snapshot([manifest("shop", "a")]), NOW)
    written = first.workloads[0].annotations
    assert written is not None and written[RECOMMENDATION_ANNOTATION] is not None
    document = json.loads(written[RECOMMENDATION_ANNOTATION])
    document["containers"]["app"]["explanation"] = "an older layout"
    older = manifest("shop", "a", annotations={RECOMMENDATION_ANNOTATION: json.dumps(document)})
    again = plan_pass(policy(), snapshot([older]), NOW)
    assert again.workloads[0].annotations == written


def test_a_skip_is_told_once_when_the_first_container_has_no_recommendation() -> None:
    def two_containers(name: str) -> dict[str, Any]:
        body = manifest("shop", name)
        containers = body["spec"]["template"]["spec"]["containers"]
        containers.insert(0, {**copy.deepcopy(containers[0]), "name": "sidecar"})
        return body

    def pass_with(previous: dict[tuple[str, str], Any]) -> PassPlan:
        # Only "app" has series: the sidecar has no recommendation, listed first.
        return plan_pass(
            policy(mode="AutoPatch"),
            snapshot(
                [two_containers("a"), two_containers("b")], labels=AUTO, recommendations=previous
            ),
            NOW,
        )

    first = pass_with({})
    waiting = first.workloads[1]
    assert waiting.trec_status_patch["containers"][0]["name"] == "sidecar"
    assert [e.reason for e in waiting.events] == ["Skipped"]
    again = pass_with({("shop", "b"): waiting.trec_status_patch})
    assert [e.reason for e in again.workloads[1].events] == []


def test_the_largest_node_caps_the_limit_and_a_capped_container_is_warned_once() -> None:
    def one_pass(previous: dict[tuple[str, str], Any]) -> PassPlan:
        shot = snapshot(
            [manifest("shop", "a")],
            labels=AUTO,
            node_cpu=NodeCpu(largest=500, smallest=500),
            recommendations=previous,
        )
        return plan_pass(policy(mode="AutoPatch"), shot, NOW)

    first = one_pass({})
    (workload,) = first.workloads
    (container,) = workload.trec_status_patch["containers"]
    # 60% throttled at 300m wants 1080m; no node has more than 500m to give.
    assert container["recommended"]["cpuLimit"] == "500m"
    assert "capped" in container["diagnosis"]
    assert "the node's allocatable CPU" in container["explanation"]
    assert [(e.reason, e.warning) for e in workload.events] == [
        ("Patched", False),
        ("Capped", True),
    ]
    again = one_pass({("shop", "a"): workload.trec_status_patch})
    assert "Capped" not in [e.reason for e in again.workloads[0].events]


def test_a_throttled_limit_above_cpu_max_limit_is_kept_not_lowered() -> None:
    plan = plan_pass(
        policy(mode="AutoPatch", cpu={"maxLimit": "200m"}),
        snapshot([manifest("shop", "a")], labels=AUTO),
        NOW,
    )
    (container,) = plan.workloads[0].trec_status_patch["containers"]
    assert container["recommended"]["cpuLimit"] == "300m"  # today's, not maxLimit's 200m
    assert "capped" in container["diagnosis"]


def test_a_pod_no_node_can_hold_is_not_patched() -> None:
    # No limit (limitPolicy Unset): the request 540m is the pod's, and no node has it.
    shot = snapshot(
        [manifest("shop", "a")], labels=AUTO, node_cpu=NodeCpu(largest=500, smallest=500)
    )
    plan = plan_pass(policy(mode="AutoPatch", cpu={"limitPolicy": "Unset"}), shot, NOW)
    assert patched(plan) == []
    reason = plan.workloads[0].trec_status_patch["containers"][0]["reason"]
    assert reason.startswith("unschedulable: the pod would request 540m CPU")
    assert [e.reason for e in plan.workloads[0].events] == ["Skipped"]


def test_unusable_values_are_named_not_reported_as_missing_series() -> None:
    shot = snapshot([manifest("shop", "a")])
    unusable = MetricsSnapshot(
        workloads=(), source="x", unusable_series={"container_cpu_usage_seconds_total": 3}
    )
    plan = plan_pass(policy(), ClusterSnapshot(**{**vars(shot), "metrics": unusable}), NOW)
    assert plan.ok
    (result,) = [c.result for c in plan.outcomes[0].decision.containers]
    assert isinstance(result, NoRecommendation)
    assert result.reason.value == "metrics-unavailable"
    assert result.message == (
        "no usable CPU statistics for container app of shop/a: Prometheus answered unusable "
        "values (NaN, ±Inf or negative) of container_cpu_usage_seconds_total (3)"
    )
    # Without unusable values, the same container's series are missing.
    missing = MetricsSnapshot(workloads=(), source="x")
    plan = plan_pass(policy(), ClusterSnapshot(**{**vars(shot), "metrics": missing}), NOW)
    (result,) = [c.result for c in plan.outcomes[0].decision.containers]
    assert isinstance(result, NoRecommendation)
    assert result.reason.value == "missing-metrics"


def test_the_trec_shows_the_workers_the_downward_api_gives() -> None:
    body = manifest("shop", "a")
    container = body["spec"]["template"]["spec"]["containers"][0]
    container["resources"]["limits"]["cpu"] = "1500m"
    container["env"] = [
        {
            "name": "WEB_CONCURRENCY",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1"}},
        }
    ]
    plan = plan_pass(policy(), snapshot([body]), NOW)
    (current,) = [c["current"] for c in plan.workloads[0].trec_status_patch["containers"]]
    assert current["webConcurrency"] == 2  # limits.cpu 1500m, rounded up by the kubelet
    assert plan.workloads[0].trec_status_patch["summary"]["workers"].startswith("2")


def test_a_step_limited_patch_shows_what_was_applied_and_the_target() -> None:
    plan = plan_pass(policy(mode="AutoPatch"), snapshot([manifest("shop", "a")], labels=AUTO), NOW)
    (workload,) = plan.workloads
    assert workload.patch is not None
    (container,) = workload.trec_status_patch["containers"]
    # 60% throttled at 300m: 540m/1080m recommended; maxStepUp 2 writes the limit 600m.
    assert container["recommended"]["cpuLimit"] == "1080m"
    assert container["applied"]["cpuLimit"] == "600m"
    assert container["applied"]["cpuRequest"] == "540m"
    summary = workload.trec_status_patch["summary"]
    assert summary["cpuLimit"] == "300m→600m (target 1080m)"
    assert summary["cpuRequest"] == "300m→540m"  # written whole: no target shown
