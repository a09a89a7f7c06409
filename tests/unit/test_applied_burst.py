"""The operator's read of the node agent's report: pods → the burst applied per Deployment.

A Deployment's containers carry ``cpu_burst_applied_us`` only when every running pod of it
reports ``unthrottle.dev/cpu-burst-applied`` (the smallest value), so the engine counts a
burst only where the kernel holds it on all of them.
"""

from __future__ import annotations

from typing import Any

from unthrottle.model.names import BURST_APPLIED_ANNOTATION, BURST_REASON_ANNOTATION
from unthrottle.model.stats import ContainerResources
from unthrottle.model.workload import DeploymentInfo, WorkloadRef
from unthrottle.sources.kubernetes import applied_bursts, with_applied_burst

OWNERS = {("shop", "checkout-7d9f"): "checkout", ("shop", "cart-55b"): "cart"}


def pod(
    replicaset: str, annotations: dict[str, str], *, phase: str = "Running", ns: str = "shop"
) -> dict[str, Any]:
    return {
        "metadata": {
            "namespace": ns,
            "name": f"{replicaset}-x",
            "annotations": annotations,
            "ownerReferences": [{"kind": "ReplicaSet", "name": replicaset, "controller": True}],
        },
        "status": {"phase": phase},
    }


def test_every_running_pod_reports_the_smallest_counts() -> None:
    pods = [
        pod("checkout-7d9f", {BURST_APPLIED_ANNOTATION: "30000"}),
        pod("checkout-7d9f", {BURST_APPLIED_ANNOTATION: "20000"}),
        pod("checkout-7d9f", {}, phase="Pending"),  # not running: no cgroup yet
        pod("cart-55b", {BURST_APPLIED_ANNOTATION: "10000"}),
        pod("cart-55b", {BURST_REASON_ANNOTATION: "KernelTooOld: no cpu.cfs_burst_us"}),
    ]
    assert applied_bursts(pods, OWNERS) == {WorkloadRef(namespace="shop", name="checkout"): 20000}


def test_pods_of_unknown_replicasets_or_being_deleted_do_not_count() -> None:
    deleted = pod("checkout-7d9f", {})
    deleted["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    pods = [
        pod("checkout-7d9f", {BURST_APPLIED_ANNOTATION: "5000"}),
        deleted,
        pod("other-1", {}),
        pod("checkout-7d9f", {}, ns="elsewhere"),
        {"metadata": {"namespace": "shop", "annotations": {}}, "status": {"phase": "Running"}},
    ]
    assert applied_bursts(pods, OWNERS) == {WorkloadRef(namespace="shop", name="checkout"): 5000}


def test_a_malformed_report_is_no_report() -> None:
    pods = [pod("checkout-7d9f", {BURST_APPLIED_ANNOTATION: "lots"})]
    assert applied_bursts(pods, OWNERS) == {}


def test_with_applied_burst_marks_only_containers_with_a_cpu_limit() -> None:
    deployment = DeploymentInfo(
        ref=WorkloadRef(namespace="shop", name="checkout"),
        containers=(
            ContainerResources(name="app", cpu_request=250, cpu_limit=500),
            ContainerResources(name="log", cpu_request=10),
        ),
    )
    marked = with_applied_burst(deployment, 20000)
    assert [c.cpu_burst_applied_us for c in marked.containers] == [20000, None]
    assert [c.cpu_burst_applied_us for c in with_applied_burst(marked, None).containers] == [
        None,
        None,
    ]
