"""StatefulSets and DaemonSets on a real control plane, under the operator's RBAC.

One module fixture sets the stage: the manifests' RBAC, two Node objects (no kubelet: their
allocatable CPU is written through the status subresource, and they are deleted at the
end, since other modules read the largest node), one namespace labelled for AutoPatch with

- ``db``: a StatefulSet of two replicas, ``updateStrategy: RollingUpdate``;
- ``queue``: a StatefulSet of one, ``updateStrategy: OnDelete``;
- ``agent``: a DaemonSet (one pod per node), ``RollingUpdate`` with ``maxUnavailable: 1``;

each throttled at its 300m quota (the simulator's ``quota-bound``), their pods created by
the kube-controller-manager and marked Running and Ready, and the scenario's series
rendered for those real pod names into one Prometheus, with ``kube_pod_owner`` naming
the StatefulSet or DaemonSet itself (no ReplicaSet).

A pass is the operator's own (:func:`unthrottle.reconcile.run.reconcile_policy`): it reads
the API server as ``system:serviceaccount:unthrottle-system:unthrottle`` (so every call is
checked against the real ClusterRole) and reads the real Prometheus.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from unthrottle.model.names import (
    AUTO_PATCH_LABEL,
    PREVIOUS_RESOURCES_ANNOTATION,
    ROLLBACK_ANNOTATION,
)
from unthrottle.model.quantity import parse_millicores
from unthrottle.model.workload import WorkloadKind
from unthrottle.reconcile.run import Instant, OperatorSettings, PassResult, reconcile_policy
from unthrottle.sandbox.kube import KubeSandbox, wait_for
from unthrottle.sandbox.prometheus import PrometheusServer
from unthrottle.sim.openmetrics import write_openmetrics
from unthrottle.sim.scenarios import Scenario, deployment_manifest, scenario
from unthrottle.sources.kubeapi import MERGE_PATCH, KubeApi
from unthrottle.sources.kubernetes import KubernetesSource

pytestmark = pytest.mark.e2e

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"
NODES = ("e2e-kinds-a", "e2e-kinds-b")
STEP_MS = 30_000
HOUR_MS = 3_600_000
STS, DS = WorkloadKind.STATEFULSET, WorkloadKind.DAEMONSET


def resource(kind: WorkloadKind) -> str:
    """The kind's resource, as kubectl names it."""
    return kind.value.lower()


@dataclass(frozen=True)
class Workload:
    kind: WorkloadKind
    name: str
    replicas: int
    strategy: dict[str, Any]

    @property
    def resource(self) -> str:
        return resource(self.kind)


DB = Workload(STS, "db", 2, {"type": "RollingUpdate"})
QUEUE = Workload(STS, "queue", 1, {"type": "OnDelete"})
ROLLING_ONE_AT_A_TIME = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}}
AGENT = Workload(DS, "agent", len(NODES), ROLLING_ONE_AT_A_TIME)
WORKLOADS = (DB, QUEUE, AGENT)


@dataclass
class Stage:
    kube: KubeSandbox
    namespace: str
    prometheus: PrometheusServer

    def get(self, w: Workload) -> dict[str, Any]:
        found = self.kube.get(w.resource, w.name, self.namespace)
        assert found is not None, f"{w.resource} {w.name} is gone"
        return found

    def pods(self, w: Workload) -> list[dict[str, Any]]:
        return pods_of(self.kube, self.namespace, w)

    def cpu_request(self, w: Workload) -> int:
        (app,) = self.get(w)["spec"]["template"]["spec"]["containers"]
        return parse_millicores(app["resources"]["requests"]["cpu"])

    def policy(self, **spec: Any) -> dict[str, Any]:
        """Create or replace this module's policy; the object as the API server has it."""
        body = {
            "apiVersion": "unthrottle.dev/v1alpha1",
            "kind": "ThrottlePolicy",
            "metadata": {"name": self.namespace},
            "spec": {
                "mode": "AutoPatch",
                "window": "1h",
                "memory": {"enabled": False},
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": self.namespace}
                },
                **spec,
            },
        }
        self.kube.apply_manifest(body)
        found = self.kube.get("throttlepolicy", self.namespace)
        assert found is not None
        return found

    def run_pass(self, **spec: Any) -> PassResult:
        """One pass of the operator over the policy, as its ServiceAccount."""
        source = KubernetesSource.from_kubeconfig(str(self.kube.operator_kubeconfig))
        try:
            settings = OperatorSettings(prometheus_url=self.prometheus.url)
            now = Instant.at(datetime.now(UTC))
            result = reconcile_policy(self.policy(**spec), source, settings, now)
        finally:
            source.close()
        assert result.ok, result.message
        return result

    def trec(self, name: str) -> dict[str, Any]:
        found = self.kube.get("throttlerecommendation", name, self.namespace)
        assert found is not None, f"no ThrottleRecommendation {name}"
        return found

    def events(self, w: Workload, reason: str) -> list[str]:
        items = self.kube.kubectl_json("get", "events", "-n", self.namespace, "-o", "json")
        return [
            e["message"]
            for e in items["items"]
            if e.get("reason") == reason
            and e["involvedObject"].get("kind") == w.kind.value
            and e["involvedObject"].get("name") == w.name
        ]


def pods_of(kube: KubeSandbox, namespace: str, w: Workload) -> list[dict[str, Any]]:
    """The workload's pods (its controller's, not terminating)."""
    items = kube.kubectl_json("get", "pods", "-n", namespace, "-o", "json")["items"]
    return [
        p
        for p in items
        if any(r["kind"] == w.kind.value and r["name"] == w.name
               for r in p["metadata"].get("ownerReferences") or [])
        and not p["metadata"].get("deletionTimestamp")
    ]  # fmt: skip


@contextmanager
def nodes(kube: KubeSandbox) -> Iterator[None]:
    """The NODES, Ready with 4 CPUs allocatable, while in the block (other modules read
    the largest node, so they are deleted after it)."""
    api = KubeApi.from_kubeconfig(str(kube.kubeconfig))
    try:
        for name in NODES:
            kube.apply_manifest({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
            status = {
                "capacity": {"cpu": "4", "pods": "110"},
                "allocatable": {"cpu": "4", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            }
            api.patch(f"/api/v1/nodes/{name}/status", {"status": status}, MERGE_PATCH)
            # Admission taints a new node not-ready until its lifecycle controller (not
            # run here) sees it Ready; a DaemonSet places no pod on it while it is.
            api.patch(f"/api/v1/nodes/{name}", {"spec": {"taints": None}}, MERGE_PATCH)
        yield
    finally:
        api.close()
        for node in NODES:
            kube.kubectl("delete", "node", node, "--wait=false", check=False)


def _scheduled(kube: KubeSandbox, namespace: str) -> None:
    """Bind the pods to the node their affinity names (no scheduler runs), and finish the
    deletion of terminating pods (no kubelet confirms it; a DaemonSet waits for it)."""
    api = KubeApi.from_kubeconfig(str(kube.kubeconfig))
    try:
        pods = kube.kubectl_json("get", "pods", "-n", namespace, "-o", "json")["items"]
        for pod in pods:
            if pod["metadata"].get("deletionTimestamp"):
                name = pod["metadata"]["name"]
                api.request(
                    "DELETE",
                    f"/api/v1/namespaces/{namespace}/pods/{name}",
                    body={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0},
                )
                continue
            if pod["spec"].get("nodeName"):
                continue
            terms = (
                pod["spec"]
                .get("affinity", {})
                .get("nodeAffinity", {})
                .get("requiredDuringSchedulingIgnoredDuringExecution", {})
                .get("nodeSelectorTerms", [])
            )
            node = next(
                (f["values"][0] for t in terms for f in t.get("matchFields") or []),
                NODES[0],
            )
            name = pod["metadata"]["name"]
            target = {"apiVersion": "v1", "kind": "Node", "name": node}
            path = f"/api/v1/namespaces/{namespace}/pods/{name}/binding"
            api.post(path, {"kind": "Binding", "metadata": {"name": name}, "target": target})
    finally:
        api.close()


def settle(kube: KubeSandbox, namespace: str, w: Workload, timeout: float = 90.0) -> None:
    """Stand in for the scheduler and the kubelet until the workload's pods all run."""

    def probe() -> bool:
        _scheduled(kube, namespace)
        kube.mark_pods_ready(namespace)
        found = kube.get(w.resource, w.name, namespace) or {}
        status = found.get("status") or {}
        if status.get("observedGeneration", 0) < found["metadata"]["generation"]:
            return False
        if w.kind is DS:
            return bool(
                status.get("desiredNumberScheduled") == w.replicas
                and status.get("updatedNumberScheduled") == w.replicas
                and status.get("numberReady") == w.replicas
            )
        return bool(status.get("readyReplicas") == w.replicas)

    wait_for(probe, timeout=timeout, interval=0.5, what=f"{namespace}/{w.name} pods")


@pytest.fixture(scope="module")
def stage(kube: KubeSandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    work = tmp_path_factory.mktemp("kinds")
    namespace = f"e2e-kinds-{uuid.uuid4().hex[:6]}"
    kube.apply(MANIFESTS / "namespace.yaml")
    kube.apply(MANIFESTS / "rbac.yaml")
    prometheus = None
    try:
        with nodes(kube):
            # (Kubernetes 1.20 does not set kubernetes.io/metadata.name itself.)
            labels = {AUTO_PATCH_LABEL: "enabled", "kubernetes.io/metadata.name": namespace}
            metadata = {"name": namespace, "labels": labels}
            kube.apply_manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})
            base = scenario("quota-bound")
            items = [
                deployment_manifest(
                    base.with_changes(kind=w.kind, deployment=w.name, replicas=w.replicas),
                    namespace=namespace,
                    update_strategy=w.strategy,
                )
                for w in WORKLOADS
            ]
            kube.kubectl(
                "create", "-f", "-",
                stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
            )  # fmt: skip
            scenarios: list[Scenario] = []
            for w in WORKLOADS:
                settle(kube, namespace, w)
                names = tuple(
                    sorted((w.name, p["metadata"]["name"]) for p in pods_of(kube, namespace, w))
                )
                scenarios.append(
                    base.with_changes(
                        kind=w.kind, deployment=w.name, namespace=namespace,
                        replicas=w.replicas, pods=names,
                    )
                )  # fmt: skip
            end = int(time.time() * 1000) // STEP_MS * STEP_MS
            data = work / "series.om"
            with data.open("w") as out:
                write_openmetrics(out, scenarios, end - 2 * HOUR_MS, end, step_ms=STEP_MS)
            prometheus = PrometheusServer.with_data(work / "prometheus", [data])
            yield Stage(kube, namespace, prometheus)
    finally:
        kube.kubectl("delete", "throttlepolicy", namespace, "--wait=false", check=False)
        kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        if prometheus is not None:
            prometheus.stop()


def test_each_kind_is_patched_by_its_own_rollout_rules(stage: Stage) -> None:
    before = {w.name: stage.cpu_request(w) for w in WORKLOADS}
    queue_pods = {p["metadata"]["uid"] for p in stage.pods(QUEUE)}

    # One slot: the DaemonSet (first by name) takes it, the RollingUpdate StatefulSet
    # waits, and the OnDelete StatefulSet is patched without one.
    first = stage.run_pass(patch={"cooldown": "0s", "maxConcurrentRollouts": 1})
    assert first.patched == 2, first.message
    assert stage.cpu_request(AGENT) > before["agent"]
    assert stage.cpu_request(QUEUE) > before["queue"]
    assert stage.cpu_request(DB) == before["db"]
    db = stage.trec("db")
    assert db["spec"]["targetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"}
    assert db["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    (db_app,) = db["status"]["containers"]
    assert db_app["reason"].startswith("max-concurrent-rollouts"), db_app
    (message,) = stage.events(AGENT, "Patched")
    assert "maxUnavailable" in message, message
    (queue_app,) = stage.trec("queue")["status"]["containers"]
    assert queue_app["action"] == "Patched" and "no pod restarts" in queue_app["reason"]
    (message,) = stage.events(QUEUE, "Patched")
    assert "OnDelete" in message, message

    # OnDelete: the controller restarts nothing; the DaemonSet rolls out node by node.
    time.sleep(2)
    assert {p["metadata"]["uid"] for p in stage.pods(QUEUE)} == queue_pods

    # The DaemonSet's rollout (as `kubectl rollout status` sees it) holds the slot.
    second = stage.run_pass(patch={"cooldown": "0s", "maxConcurrentRollouts": 1})
    assert second.patched == 0 and second.plan is not None, second.message
    skipped = {w.deployment.ref.name: w.outcome.decision.skip_reason for w in second.plan.workloads}
    assert skipped["agent"].startswith("rollout-in-progress: "), skipped
    assert "daemon pods run the newest template" in skipped["agent"], skipped
    assert skipped["db"].startswith("max-concurrent-rollouts"), skipped

    settle(stage.kube, stage.namespace, AGENT)
    third = stage.run_pass(patch={"cooldown": "0s", "maxConcurrentRollouts": 1})
    assert third.patched == 1, third.message
    assert stage.cpu_request(DB) > before["db"]

    table = stage.kube.kubectl("get", "trec", "-n", stage.namespace).stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "KIND", "TIER"], table[0]
    kinds = {line.split()[0]: line.split()[1] for line in table[1:]}
    assert kinds == {"agent": "DaemonSet", "db": "StatefulSet", "queue": "StatefulSet"}


def test_a_statefulset_rolls_back_and_kinds_narrow_the_policy(stage: Stage) -> None:
    db = stage.get(DB)
    if PREVIOUS_RESOURCES_ANNOTATION not in db["metadata"].get("annotations", {}):
        stage.run_pass(patch={"cooldown": "0s", "maxConcurrentRollouts": 3})
        db = stage.get(DB)
    recorded = json.loads(db["metadata"]["annotations"][PREVIOUS_RESOURCES_ANNOTATION])
    stage.kube.kubectl(
        "annotate", "statefulset", "db", "-n", stage.namespace, f"{ROLLBACK_ANNOTATION}=true"
    )
    stage.run_pass(patch={"cooldown": "1h"})
    (app,) = stage.get(DB)["spec"]["template"]["spec"]["containers"]
    assert app["resources"] == recorded["containers"]["app"]["resources"]
    assert ROLLBACK_ANNOTATION not in stage.get(DB)["metadata"]["annotations"]
    assert stage.events(DB, "RolledBack")

    # Deployments only: the StatefulSets and the DaemonSet are no longer this policy's.
    result = stage.run_pass(kinds=["Deployment"])
    assert result.workloads == 0
    trecs = stage.kube.kubectl_json("get", "trec", "-n", stage.namespace, "-o", "json")
    assert trecs["items"] == []
