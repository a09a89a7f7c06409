"""StatefulSets and DaemonSets beside Deployments: parsing, rollout rules, pod owners, the
patch decision and the plan, as plain data in and values out."""

from __future__ import annotations

from typing import Any

import pytest

from unthrottle.model.names import AUTO_PATCH_LABEL, LAST_PATCHED_ANNOTATION
from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.model.stats import ContainerStats
from unthrottle.model.status import ContainerAction, TargetRef
from unthrottle.model.workload import (
    ALL_KINDS,
    DeploymentInfo,
    NodeCpu,
    WorkloadKind,
    WorkloadRef,
    WorkloadStats,
)
from unthrottle.reconcile.plan import PassPlan, plan_pass
from unthrottle.reconcile.scope import OperatorScope
from unthrottle.reconcile.snapshot import (
    ClusterSnapshot,
    Instant,
    MetricsSnapshot,
    PolicyObject,
    parse_policy,
)
from unthrottle.reconcile.status import trec_names
from unthrottle.sources.kubernetes import applied_bursts, deployment_info
from unthrottle.sources.prometheus_aggregate import assemble
from unthrottle.sources.prometheus_queries import Resolution
from unthrottle.sources.prometheus_rows import Ksm, Tables

NOW = Instant.from_ms(1_767_225_600_000)
STS, DS, DEPLOY = WorkloadKind.STATEFULSET, WorkloadKind.DAEMONSET, WorkloadKind.DEPLOYMENT


def manifest(
    kind: WorkloadKind,
    name: str = "web",
    *,
    strategy: dict[str, Any] | None = None,
    status: dict[str, Any] | None = None,
    generation: int = 2,
    annotations: dict[str, str] | None = None,
    replicas: int = 3,
) -> dict[str, Any]:
    quantities = {"cpu": "300m", "memory": "512Mi"}
    app = {"name": "app", "resources": {"requests": quantities, "limits": dict(quantities)}}
    spec: dict[str, Any] = {"template": {"spec": {"containers": [app]}}}
    if kind is not DS:
        spec["replicas"] = replicas
    if strategy is not None:
        spec["strategy" if kind is DEPLOY else "updateStrategy"] = strategy
    settled: dict[str, Any] = {"observedGeneration": generation}
    if kind is DS:
        settled.update(
            desiredNumberScheduled=replicas,
            currentNumberScheduled=replicas,
            updatedNumberScheduled=replicas,
            numberAvailable=replicas,
        )
    else:
        settled.update(replicas=replicas, updatedReplicas=replicas, availableReplicas=replicas)
    if kind is STS:
        settled.update(currentRevision="web-1", updateRevision="web-1")
    settled.update(status or {})
    return {
        "metadata": {
            "namespace": "shop",
            "name": name,
            "uid": f"uid-{kind}-{name}",
            "generation": generation,
            "annotations": annotations or {},
        },
        "spec": spec,
        "status": settled,
    }


def info(kind: WorkloadKind, **changes: Any) -> Any:
    return deployment_info(manifest(kind, **changes), "WEB_CONCURRENCY", kind)


# --- what the API server says ----------------------------------------------------------


def test_each_kind_is_read_with_its_own_replicas_and_strategy() -> None:
    sts = info(STS, strategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}})
    assert (sts.ref.kind, sts.replicas, sts.update_strategy, sts.partition) == (
        STS,
        3,
        "RollingUpdate",
        1,
    )
    assert str(sts.ref) == "shop/statefulset/web"
    ds = info(DS, strategy={"rollingUpdate": {"maxUnavailable": "25%"}}, replicas=4)
    assert (ds.replicas, ds.updated_replicas, ds.max_unavailable) == (4, 4, "25%")
    assert str(info(DEPLOY).ref) == "shop/web"


ROLLOUTS = [
    (STS, {}, {"updateRevision": "web-2", "updatedReplicas": 1}, "1 of 3 pods run revision web-2"),
    (STS, {"rollingUpdate": {"partition": 2}}, {"updateRevision": "web-2", "updatedReplicas": 0},
     "0 of 1 pods at or above partition 2"),
    (DS, {}, {"updatedNumberScheduled": 2}, "2 of 3 daemon pods run the newest template"),
    (DS, {"type": "OnDelete"}, {"observedGeneration": 1}, "observed generation 1 of 2"),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "strategy", "status", "phrase"), ROLLOUTS)
def test_a_rollout_in_progress_as_kubectl_rollout_status_sees_each_kind(
    kind: WorkloadKind, strategy: dict[str, Any], status: dict[str, Any], phrase: str
) -> None:
    assert phrase in info(kind, strategy=strategy, status=status).pending_rollout()


@pytest.mark.parametrize(
    ("kind", "strategy", "status"),
    [
        # A partitioned rollout is done once the ordinals at or above it are updated.
        (STS, {"rollingUpdate": {"partition": 2}},
         {"updateRevision": "web-2", "updatedReplicas": 1}),
        # OnDelete: old pods stay until deleted; that is no rollout to wait for.
        (STS, {"type": "OnDelete"}, {"updateRevision": "web-2", "updatedReplicas": 0}),
        (DS, {"type": "OnDelete"}, {"updatedNumberScheduled": 0}),
        # Unavailable pods of the current template are not a rollout.
        (DS, {}, {"numberAvailable": 0}),
    ],
)  # fmt: skip
def test_no_rollout_in_progress(
    kind: WorkloadKind, strategy: dict[str, Any], status: dict[str, Any]
) -> None:
    assert info(kind, strategy=strategy, status=status).pending_rollout() == ""


def test_pods_a_patch_restarts_follow_the_strategy_and_the_partition() -> None:
    assert info(DEPLOY).pods_restarted() == 3
    assert info(STS).pods_restarted() == 3
    assert info(STS, strategy={"rollingUpdate": {"partition": 1}}).pods_restarted() == 2
    assert info(STS, strategy={"rollingUpdate": {"partition": 5}}).pods_restarted() == 0
    assert info(STS, strategy={"type": "OnDelete"}).pods_restarted() == 0
    assert info(DS, strategy={"type": "OnDelete"}).pods_restarted() == 0
    assert "maxUnavailable" in info(DS).rollout_semantics()


# --- Prometheus: pods to workloads -----------------------------------------------------


def test_kube_pod_owner_maps_statefulset_and_daemonset_pods_without_a_replicaset() -> None:
    tables, ksm = Tables(), Ksm()
    for pod, kind, owner in (
        ("db-0", "StatefulSet", "db"),
        ("db-1", "StatefulSet", "db"),
        ("agent-x7k2p", "DaemonSet", "agent"),
        ("web-5d8f-abcde", "ReplicaSet", "web-5d8f"),
        ("job-1-xyz", "Job", "job-1"),
    ):
        labels = {"namespace": "shop", "pod": pod, "container": "app"}
        ksm.add("pod_owner", {**labels, "owner_kind": kind, "owner_name": owner}, 1)
        for stat, value in {
            "p50": 0.1,
            "p95": 0.2,
            "p99": 0.2,
            "max": 0.2,
            "mean": 0.1,
            "count": 100,
            "periods": 1000,
            "throttled": 10,
        }.items():
            tables.add(stat, labels, value)
        tables.add("last", labels, 1_700_000_000)
    ksm.add("rs_owner", {"namespace": "shop", "replicaset": "web-5d8f", "owner_name": "web"}, 1)
    workloads, unowned = assemble(tables, ksm, ksm.owners({}), Resolution.for_window(3600), 100_000)
    found = {(w.ref.kind, w.ref.name): w.pods for w in workloads}
    assert found == {(STS, "db"): 2, (DS, "agent"): 1, (DEPLOY, "web"): 1}
    assert unowned == 1  # the Job's pod


def test_kube_replicaset_owner_is_required_only_where_replicasets_own_pods() -> None:
    labels = {"namespace": "shop", "pod": "db-0", "container": "app"}
    ksm = Ksm()
    ksm.present.update(
        {
            "container_cpu_usage_seconds_total",
            "container_memory_rss",
            "container_memory_working_set_bytes",
            "kube_pod_owner",
            "kube_pod_container_resource_requests",
        }
    )
    ksm.add("pod_owner", {**labels, "owner_kind": "StatefulSet", "owner_name": "db"}, 1)
    assert "kube_replicaset_owner" not in ksm.series_report()[0]
    web = {**labels, "pod": "web-5d8f-abcde", "owner_kind": "ReplicaSet", "owner_name": "web-5d8f"}
    ksm.add("pod_owner", web, 1)
    assert "kube_replicaset_owner" in ksm.series_report()[0]


def test_applied_burst_of_statefulset_pods_maps_by_their_owner() -> None:
    def pod(name: str, kind: str, owner: str, applied: str) -> dict[str, Any]:
        return {
            "metadata": {
                "namespace": "shop",
                "name": name,
                "annotations": {"unthrottle.dev/cpu-burst-applied": applied},
                "ownerReferences": [{"kind": kind, "name": owner, "controller": True}],
            },
            "status": {"phase": "Running"},
        }

    pods = [pod("db-0", "StatefulSet", "db", "20000"), pod("ds-a", "DaemonSet", "ds", "5000")]
    assert applied_bursts(pods, {}) == {
        WorkloadRef(namespace="shop", kind=STS, name="db"): 20000,
        WorkloadRef(namespace="shop", kind=DS, name="ds"): 5000,
    }


# --- the plan --------------------------------------------------------------------------


def stats(workload: DeploymentInfo) -> ContainerStats:
    """Throttled in 60% of its periods at its current resources."""
    usage = {"p50": 0.29, "p95": 0.3, "p99": 0.3, "max": 0.3}
    cpu = {"usageCores": usage, "throttledPeriodRatio": 0.6, "samples": 2016}
    memory = {"rssBytes": {"p99": 300e6, "max": 320e6}}
    return ContainerStats.model_validate(
        {
            "container": workload.containers[0],
            "cpu": {**cpu, "windowSeconds": 604_800},
            "memory": memory,
        }
    )


def plan(
    manifests: list[tuple[WorkloadKind, dict[str, Any]]],
    node_cpu: NodeCpu | None = None,
    **spec: Any,
) -> PassPlan:
    parsed = parse_policy(
        {
            "metadata": {"name": "p", "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"mode": "AutoPatch", **spec},
        }
    )
    assert isinstance(parsed, PolicyObject)
    found = tuple(deployment_info(m, "WEB_CONCURRENCY", kind) for kind, m in manifests)
    metrics = MetricsSnapshot(
        workloads=tuple(WorkloadStats(ref=d.ref, containers=(stats(d),), pods=3) for d in found),
        source="http://prometheus:9090",
    )
    shot = ClusterSnapshot(
        bounds=OperatorScope("unthrottle-system"),
        namespace_labels={"shop": {AUTO_PATCH_LABEL: "enabled"}},
        deployments=found,
        metrics=metrics,
        node_cpu=node_cpu,
    )
    return plan_pass(parsed, shot, NOW)


def test_the_policy_covers_all_three_kinds_by_default_and_kinds_narrows_it() -> None:
    assert ThrottlePolicySpec().kinds == ALL_KINDS
    everything = [(k, manifest(k)) for k in ALL_KINDS]
    kinds = {w.deployment.kind for w in plan(everything).workloads}
    assert kinds == set(ALL_KINDS)
    only = plan(everything, kinds=["StatefulSet"])
    assert [w.deployment.kind for w in only.workloads] == [STS]


def test_a_statefulset_and_a_daemonset_are_patched_and_their_trecs_name_their_kind() -> None:
    result = plan([(STS, manifest(STS, "db")), (DS, manifest(DS, "agent"))],
                  patch={"maxConcurrentRollouts": 2})  # fmt: skip
    by_kind = {w.deployment.kind: w for w in result.workloads}
    for kind, name in ((STS, "db"), (DS, "agent")):
        workload = by_kind[kind]
        assert workload.patch is not None
        assert workload.patch["spec"]["template"]["spec"]["containers"][0]["name"] == "app"
        target = TargetRef.model_validate(workload.trec_spec["targetRef"])
        assert (target.kind, target.name, workload.name) == (kind, name, name)
    (event,) = (e for e in by_kind[DS].events if e.reason == "Patched")
    assert "maxUnavailable" in event.message


def test_a_daemonset_pod_must_fit_the_smallest_node_and_others_the_largest() -> None:
    # No limit (limitPolicy Unset): each pod asks 540m. A DaemonSet runs one on every
    # node, the 500m one too; a Deployment's pod lands on one node, the 4-core one fits.
    nodes = NodeCpu(largest=4000, smallest=500)
    result = plan(
        [(DS, manifest(DS, "agent")), (DEPLOY, manifest(DEPLOY, "web"))],
        nodes,
        cpu={"limitPolicy": "Unset"},
        patch={"maxConcurrentRollouts": 2},
    )
    by_kind = {w.deployment.kind: w for w in result.workloads}
    assert by_kind[DEPLOY].patch is not None
    assert by_kind[DS].patch is None
    (container,) = by_kind[DS].outcome.decision.containers
    assert container.reason == (
        "unschedulable: the pod would request 540m CPU, more than the smallest node's "
        "allocatable 500m"
    )
    # With a limit, the DaemonSet's is capped at the smallest node, the Deployment's not.
    capped = plan(
        [(DS, manifest(DS, "agent")), (DEPLOY, manifest(DEPLOY, "web"))],
        nodes,
        patch={"maxConcurrentRollouts": 2},
    )
    limits = {
        w.deployment.kind: w.trec_status_patch["containers"][0]["recommended"]["cpuLimit"]
        for w in capped.workloads
    }
    assert limits[DS] == "500m" and limits[DEPLOY] != "500m"


def test_on_delete_takes_no_rollout_slot_and_says_nothing_restarts() -> None:
    on_delete = manifest(STS, "db", strategy={"type": "OnDelete"})
    result = plan([(STS, on_delete), (DEPLOY, manifest(DEPLOY, "web"))])
    assert all(w.patch is not None for w in result.workloads)  # one slot, both patched
    (db,) = (w for w in result.workloads if w.deployment.kind is STS)
    (container,) = db.outcome.decision.containers
    assert container.action is ContainerAction.PATCHED
    assert "no pod restarts" in container.reason
    (event,) = (e for e in db.events if e.reason == "Patched")
    assert "OnDelete" in event.message


def test_a_statefulset_rolling_out_after_a_patch_takes_the_slot() -> None:
    rolling = manifest(
        STS,
        "db",
        annotations={LAST_PATCHED_ANNOTATION: "2025-12-01T00:00:00Z"},
        status={"updateRevision": "db-2", "updatedReplicas": 1},
    )
    result = plan([(STS, rolling), (DEPLOY, manifest(DEPLOY, "web"))])
    reasons = {w.deployment.kind: w.outcome.decision.skip_code for w in result.workloads}
    assert reasons == {STS: "rollout-in-progress", DEPLOY: "max-concurrent-rollouts"}


def test_trec_names_are_the_workloads_unless_two_kinds_share_one() -> None:
    refs = [
        WorkloadRef(namespace="shop", kind=STS, name="web"),
        WorkloadRef(namespace="shop", kind=DEPLOY, name="web"),
        WorkloadRef(namespace="shop", kind=DS, name="agent"),
        WorkloadRef(namespace="other", kind=STS, name="web"),
    ]
    assert sorted(trec_names(refs).values()) == ["agent", "web", "web", "web-statefulset"]
    assert trec_names(refs)[refs[1]] == "web"
