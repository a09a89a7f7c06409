"""A patch that meets someone else's write, on a real API server.

The pass's plan is made from a Deployment as read; between the read and the patch a
person (``kubectl``) writes the same Deployment. The patch carries the resourceVersion it
was planned from, so the API server refuses it (409 Conflict) and changes nothing; the
Deployment is read again and decided on again from what it is now. The metrics are plain
data (one throttled container, the shape ``tests/unit/test_plan.py`` uses): what is under
test is the write, not the reading of Prometheus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from unthrottle.model.names import AUTO_PATCH_LABEL
from unthrottle.model.quantity import parse_millicores
from unthrottle.model.stats import ContainerStats
from unthrottle.model.workload import WorkloadRef, WorkloadStats
from unthrottle.reconcile.apply import apply_plan, replanner
from unthrottle.reconcile.plan import PassPlan, plan_pass
from unthrottle.reconcile.scope import OperatorScope
from unthrottle.reconcile.snapshot import (
    ClusterSnapshot,
    Instant,
    MetricsSnapshot,
    PolicyObject,
    parse_policy,
)
from unthrottle.sandbox.kube import KubeSandbox, wait_for
from unthrottle.sources.kubeapi import KubernetesError
from unthrottle.sources.kubernetes import KubernetesSource

pytestmark = pytest.mark.e2e

NAME = "app"
RESOURCES = {
    "requests": {"cpu": "300m", "memory": "512Mi"},
    "limits": {"cpu": "300m", "memory": "512Mi"},
}


def deployment(namespace: str) -> dict[str, Any]:
    labels = {"app": NAME}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": NAME, "image": "app:1", "resources": RESOURCES}]},
            },
        },
    }


def stats() -> ContainerStats:
    # Throttled in 60% of periods at the 300m quota: the plan patches it upwards.
    return ContainerStats.model_validate(
        {
            "container": {
                "name": NAME,
                "cpuRequest": "300m",
                "cpuLimit": "300m",
                "memoryRequest": "512Mi",
                "memoryLimit": "512Mi",
            },
            "cpu": {
                "usageCores": {"p50": 0.29, "p95": 0.3, "p99": 0.3, "max": 0.3},
                "throttledPeriodRatio": 0.6,
                "samples": 2016,
                "windowSeconds": 604_800,
            },
        }
    )


@pytest.fixture
def source(kube: KubeSandbox, namespace: str) -> Iterator[KubernetesSource]:
    kube.kubectl("label", "namespace", namespace, f"{AUTO_PATCH_LABEL}=enabled")
    kube.apply_manifest(deployment(namespace))

    def rolled_out() -> bool:
        kube.mark_pods_ready(namespace)
        d = kube.get("deployment", NAME, namespace) or {}
        status = d.get("status") or {}
        return bool(
            status.get("observedGeneration") == d["metadata"]["generation"]
            and status.get("availableReplicas") == 1
            and status.get("updatedReplicas") == 1
            and status.get("replicas") == 1
        )

    wait_for(rolled_out, timeout=60, what=f"{namespace}/{NAME} rollout")
    # The pass writes the policy's status last: the policy must exist (no operator runs).
    kube.apply_manifest(policy_manifest(namespace))
    kube_source = KubernetesSource.from_kubeconfig(str(kube.kubeconfig))
    yield kube_source
    kube_source.close()
    kube.kubectl("delete", "throttlepolicy", namespace, "--wait=false", check=False)


def policy_manifest(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "unthrottle.dev/v1alpha1",
        "kind": "ThrottlePolicy",
        "metadata": {"name": namespace, "generation": 1},
        "spec": {
            "mode": "AutoPatch",
            "patch": {"cooldown": "0s"},
            "memory": {"enabled": False},
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        },
    }


def planned(source: KubernetesSource, namespace: str) -> tuple[PolicyObject, ClusterSnapshot]:
    parsed = parse_policy(policy_manifest(namespace))
    assert isinstance(parsed, PolicyObject)
    ref = WorkloadRef(namespace=namespace, name=NAME)
    info = source.deployment(ref, "WEB_CONCURRENCY")
    assert info is not None and info.resource_version
    snapshot = ClusterSnapshot(
        bounds=OperatorScope("unthrottle-system"),
        namespace_labels={
            namespace: {AUTO_PATCH_LABEL: "enabled", "kubernetes.io/metadata.name": namespace}
        },
        deployments=(info,),
        metrics=MetricsSnapshot(
            workloads=(WorkloadStats(ref=ref, containers=(stats(),), pods=1),), source="x"
        ),
    )
    return parsed, snapshot


def patch_of(plan: PassPlan) -> dict[str, Any]:
    (workload,) = plan.workloads
    assert workload.patch is not None, workload.outcome
    return workload.patch


def cpu_request(kube: KubeSandbox, namespace: str) -> int:
    d = kube.get("deployment", NAME, namespace)
    assert d is not None
    (c,) = d["spec"]["template"]["spec"]["containers"]
    return parse_millicores(c["resources"]["requests"]["cpu"])


NOW = Instant.from_ms(1_767_225_600_000)


def test_a_concurrent_edit_of_the_resources_is_decided_on_not_overwritten(
    kube: KubeSandbox, namespace: str, source: KubernetesSource
) -> None:
    policy, snapshot = planned(source, namespace)
    plan = plan_pass(policy, snapshot, NOW)
    assert (
        parse_millicores(
            patch_of(plan)["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"][
                "cpu"
            ]
        )
        > 400
    )
    # A person sets the request between the read and the write.
    kube.kubectl("set", "resources", "deployment", NAME, "-n", namespace, "--requests=cpu=250m")
    # Without a way to decide again, the stale patch is refused and nothing changes.
    with pytest.raises(KubernetesError) as refused:
        apply_plan(source, plan, NOW)
    assert refused.value.status == 409
    assert cpu_request(kube, namespace) == 250
    # Decided again from the Deployment as it is now: its pods have not run with 250m (or
    # its rollout is not done), so nothing is patched and the person's value stands.
    apply_plan(source, plan, NOW, replanner(policy, snapshot, source, NOW))
    assert cpu_request(kube, namespace) == 250
    trec = kube.get("throttlerecommendation", NAME, namespace)
    assert trec is not None
    assert trec["status"]["summary"]["action"] != "Patched", trec["status"]


def test_a_concurrent_edit_elsewhere_is_kept_and_the_patch_lands(
    kube: KubeSandbox, namespace: str, source: KubernetesSource
) -> None:
    policy, snapshot = planned(source, namespace)
    plan = plan_pass(policy, snapshot, NOW)
    kube.kubectl("label", "deployment", NAME, "-n", namespace, "team=payments")
    apply_plan(source, plan, NOW, replanner(policy, snapshot, source, NOW))
    d = kube.get("deployment", NAME, namespace)
    assert d is not None
    assert d["metadata"]["labels"]["team"] == "payments"
    assert cpu_request(kube, namespace) > 400
    previous = json.loads(d["metadata"]["annotations"]["unthrottle.dev/previous-resources"])
    assert previous["containers"][NAME]["resources"] == RESOURCES
