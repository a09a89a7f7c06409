"""Fixtures of the burst agent's tests: the real kernel's cgroups and a real API server.

- ``agent_install``: ``kubectl apply -k manifests/agent/`` for real (the DaemonSet stays
  inert: the sandbox runs no DaemonSet controller and no kubelet);
- ``agent_kube``: the API as the agent's ServiceAccount, with the RBAC just applied;
- ``kubelet``: a :class:`~agent_harness.KubeletTree`, removed after the test;
- ``pods``: :class:`~agent_harness.Pods` in the test's namespace.

A machine without a writable v1 ``cpu`` hierarchy with ``cpu.cfs_burst_us`` fails the
kernel tests with that reason; they are never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.e2e.agent.agent_harness import AgentInstall, KubeletTree, Pods, kernel_problem

from unthrottle.sandbox.kube import KubeSandbox
from unthrottle.sources.kubeapi import KubeApi
from unthrottle.sources.kubernetes import KubernetesSource

AGENT_MANIFESTS = Path(__file__).resolve().parents[3] / "manifests" / "agent"


@pytest.fixture(scope="session")
def agent_install(kube: KubeSandbox) -> AgentInstall:
    built = kube.kubectl("kustomize", str(AGENT_MANIFESTS)).stdout
    objects = [d for d in yaml.safe_load_all(built) if d]
    # The namespace first: a plain apply creates it before the objects in it.
    (namespace,) = (o["metadata"]["name"] for o in objects if o["kind"] == "Namespace")
    (account,) = (o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount")
    kube.apply(AGENT_MANIFESTS / "namespace.yaml")
    output = kube.kubectl("apply", "-k", str(AGENT_MANIFESTS)).stdout
    return AgentInstall(output, objects, namespace, account)


@pytest.fixture(scope="session")
def agent_kube(kube: KubeSandbox, agent_install: AgentInstall) -> Iterator[KubernetesSource]:
    path = kube.service_account_kubeconfig(
        agent_install.namespace, agent_install.service_account, "agent"
    )
    source = KubernetesSource.from_kubeconfig(str(path))
    yield source
    source.close()


@pytest.fixture(scope="session")
def admin_api(kube: KubeSandbox) -> Iterator[KubeApi]:
    api = KubeApi.from_kubeconfig(str(kube.kubeconfig))
    yield api
    api.close()


@pytest.fixture
def kubelet() -> Iterator[KubeletTree]:
    problem = kernel_problem()
    if problem:
        pytest.fail(f"the burst agent's kernel tests need it: {problem}", pytrace=False)
    tree = KubeletTree()
    try:
        yield tree
    finally:
        tree.remove()


@pytest.fixture
def pods(admin_api: KubeApi, namespace: str) -> Pods:
    return Pods(admin_api, namespace)
