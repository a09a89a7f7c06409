"""The largest and smallest node's allocatable CPU, read as the operator reads it: its own
identity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from unthrottle.model.workload import NodeCpu
from unthrottle.sandbox.kube import KubeSandbox
from unthrottle.sources.kubeapi import MERGE_PATCH, KubeApi
from unthrottle.sources.kubernetes import KubernetesSource

# (name, allocatable cpu, unschedulable): the cordoned node is the largest, and not counted.
pytestmark = pytest.mark.e2e

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"

NODES = (("e2e-small", "1500m", False), ("e2e-large", "4", False), ("e2e-cordoned", "64", True))


@pytest.fixture
def nodes(kube: KubeSandbox) -> Iterator[None]:
    api = KubeApi.from_kubeconfig(str(kube.kubeconfig))
    try:
        for name, cpu, cordoned in NODES:
            kube.apply_manifest(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": name},
                    "spec": {"unschedulable": cordoned},
                }
            )
            # What a kubelet reports, through the status subresource.
            status = {"capacity": {"cpu": cpu}, "allocatable": {"cpu": cpu}}
            api.patch(f"/api/v1/nodes/{name}/status", {"status": status}, MERGE_PATCH)
        yield
    finally:
        api.close()
        for name, _, _ in NODES:
            kube.kubectl("delete", "node", name, "--wait=false", check=False)


@pytest.mark.usefixtures("nodes")
def test_the_operator_reads_the_largest_and_smallest_schedulable_node(kube: KubeSandbox) -> None:
    kube.apply(MANIFESTS / "namespace.yaml")
    kube.apply(MANIFESTS / "rbac.yaml")
    source = KubernetesSource.from_kubeconfig(str(kube.operator_kubeconfig))
    try:
        assert source.node_cpu() == NodeCpu(largest=4000, smallest=1500)
    finally:
        source.close()
