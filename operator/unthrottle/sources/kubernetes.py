"""The Kubernetes source: Deployments, StatefulSets, DaemonSets, their ReplicaSets, pods,
nodes, HPAs and unthrottle's own objects, read from and written to the API.

This module owns the calls: which namespaces and workloads a selector covers (one list
per namespace and kind), which Deployment owns each ReplicaSet (so pods map to
Deployments even where kube-state-metrics' ``kube_replicaset_owner`` is missing;
StatefulSets' and DaemonSets' pods name their workload directly), the burst the node
agent reports applied on a workload's pods, and the writes (patches, annotations, trecs,
Events, policy status). It also serves the node agent: the pods of one node, and the
agent's report annotations on them. API objects are plain dictionaries at the edge,
parsed by the pure functions of :mod:`.workload_objects`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from unthrottle.model.names import BURST_ANNOTATION, GROUP, POLICY_LABEL, VERSION
from unthrottle.model.quantity import parse_millicores
from unthrottle.model.workload import (
    ALL_KINDS,
    DeploymentInfo,
    NodeCpu,
    WorkloadKind,
    WorkloadRef,
)
from unthrottle.sources.kubeapi import (
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    KubeApi,
    KubernetesError,
)
from unthrottle.sources.workload_objects import (
    applied_bursts,
    container_resources,
    deployment_info,
    with_applied_burst,
)

__all__ = [
    "KubernetesError",
    "KubernetesSource",
    "applied_bursts",
    "container_resources",
    "deployment_info",
    "with_applied_burst",
]


def _path(ref: WorkloadRef) -> str:
    return f"/apis/apps/v1/namespaces/{ref.namespace}/{ref.kind.resource}/{ref.name}"


class KubernetesSource:
    """Reads and writes the cluster for unthrottle (synchronous; call it off the event loop)."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    @classmethod
    def from_kubeconfig(
        cls, path: str | None = None, context: str | None = None
    ) -> KubernetesSource:
        return cls(KubeApi.from_kubeconfig(path, context))

    def close(self) -> None:
        self.api.close()

    # --- reading ---------------------------------------------------------------------

    def _items(self, path: str, selector: str = "", fields: str = "") -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else {}
        if fields:
            params["fieldSelector"] = fields
        items: list[dict[str, Any]] = self.api.get(path, params or None).get("items") or []
        return items

    def namespace_labels(self) -> dict[str, dict[str, str]]:
        """Every namespace's labels, by name."""
        return {
            n["metadata"]["name"]: dict(n["metadata"].get("labels") or {})
            for n in self._items("/api/v1/namespaces")
        }

    def node_cpu(self) -> NodeCpu | None:
        """The largest and smallest allocatable CPU of the schedulable nodes (None: no node)."""
        sizes = [
            parse_millicores(str(cpu))
            for node in self._items("/api/v1/nodes")
            if not (node.get("spec") or {}).get("unschedulable")
            and (cpu := ((node.get("status") or {}).get("allocatable") or {}).get("cpu"))
            is not None
        ]
        return NodeCpu(largest=max(sizes), smallest=min(sizes)) if sizes else None

    def namespaces(self, selector: str = "", exclude: Iterable[str] = ()) -> list[str]:
        """Namespace names matching ``selector``, without ``exclude``."""
        skip = set(exclude)
        names = (n["metadata"]["name"] for n in self._items("/api/v1/namespaces", selector))
        return sorted(n for n in names if n not in skip)

    def workloads(
        self,
        namespaces: Iterable[str] | None,
        selector: str = "",
        env_name: str = "WEB_CONCURRENCY",
        kinds: Iterable[WorkloadKind] = ALL_KINDS,
    ) -> list[DeploymentInfo]:
        """The workloads of ``kinds`` matching ``selector`` in ``namespaces`` (None: every
        namespace): one list per kind and namespace."""
        found = []
        for kind in dict.fromkeys(kinds):
            if namespaces is None:
                items = self._items(f"/apis/apps/v1/{kind.resource}", selector)
            else:
                items = [
                    item
                    for namespace in namespaces
                    for item in self._items(
                        f"/apis/apps/v1/namespaces/{namespace}/{kind.resource}", selector
                    )
                ]
            found += [deployment_info(item, env_name, kind) for item in items]
        return found

    def deployments(
        self,
        namespaces: Iterable[str] | None,
        selector: str = "",
        env_name: str = "WEB_CONCURRENCY",
    ) -> list[DeploymentInfo]:
        """The Deployments matching ``selector`` in ``namespaces`` (None: every namespace)."""
        return self.workloads(namespaces, selector, env_name, (WorkloadKind.DEPLOYMENT,))

    def workload(self, ref: WorkloadRef, env_name: str) -> DeploymentInfo | None:
        """One workload read again (None: it is gone)."""
        try:
            return deployment_info(self.api.get(_path(ref)), env_name, ref.kind)
        except KubernetesError as exc:
            if exc.status == 404:
                return None
            raise

    deployment = workload

    def replicaset_owners(self, namespaces: Iterable[str] | None) -> dict[tuple[str, str], str]:
        """(namespace, ReplicaSet) → the Deployment that owns it."""
        if namespaces is None:
            items = self._items("/apis/apps/v1/replicasets")
        else:
            items = [
                item
                for namespace in namespaces
                for item in self._items(f"/apis/apps/v1/namespaces/{namespace}/replicasets")
            ]
        owners: dict[tuple[str, str], str] = {}
        for item in items:
            metadata = item["metadata"]
            for ref in metadata.get("ownerReferences") or []:
                if ref.get("kind") == "Deployment" and ref.get("controller"):
                    owners[(metadata["namespace"], metadata["name"])] = ref["name"]
        return owners

    def cpu_autoscaled(self, namespaces: Iterable[str]) -> set[WorkloadRef]:
        """The workloads a HorizontalPodAutoscaler scales on CPU utilization.

        Read through ``autoscaling/v1``, where an HPA of any version that has a CPU
        utilization target shows ``targetCPUUtilizationPercentage``.
        """
        scaled = set()
        for namespace in namespaces:
            path = f"/apis/autoscaling/v1/namespaces/{namespace}/horizontalpodautoscalers"
            for hpa in self._items(path):
                spec = hpa.get("spec") or {}
                target = spec.get("scaleTargetRef") or {}
                kind = target.get("kind")
                if (
                    kind in set(WorkloadKind)
                    and target.get("name")
                    and spec.get("targetCPUUtilizationPercentage")
                ):
                    scaled.add(
                        WorkloadRef(
                            namespace=namespace, kind=WorkloadKind(kind), name=target["name"]
                        )
                    )
        return scaled

    def node_pods(self, node: str) -> list[dict[str, Any]]:
        """Every pod bound to ``node``: the API server filters (``spec.nodeName``)."""
        return self._items("/api/v1/pods", fields=f"spec.nodeName={node}")

    def with_applied_bursts(
        self,
        deployments: Iterable[DeploymentInfo],
        owners: Mapping[tuple[str, str], str] | None = None,
    ) -> list[DeploymentInfo]:
        """The Deployments with the burst their pods report applied (:func:`applied_bursts`).

        Pods are read only in the namespaces of workloads whose template carries the
        burst annotation (no annotation, nothing for an agent to apply): one list of pods
        per namespace, and the ReplicaSets there unless ``owners`` are given.
        """
        found = list(deployments)
        namespaces = sorted(
            {d.ref.namespace for d in found if BURST_ANNOTATION in d.template_annotations}
        )
        if not namespaces:
            return found
        if owners is None:
            owners = self.replicaset_owners(namespaces)
        pods = [
            item
            for namespace in namespaces
            for item in self._items(f"/api/v1/namespaces/{namespace}/pods")
        ]
        applied = applied_bursts(pods, owners)
        return [with_applied_burst(d, applied.get(d.ref)) for d in found]

    def policies(self) -> list[dict[str, Any]]:
        """Every ThrottlePolicy, as the API server returns it."""
        return self._items(f"/apis/{GROUP}/{VERSION}/throttlepolicies")

    def recommendations(
        self, namespaces: Iterable[str] | None, policy: str
    ) -> list[dict[str, Any]]:
        """The ThrottleRecommendations a policy wrote, in ``namespaces`` (None: all)."""
        selector = f"{POLICY_LABEL}={policy}"
        if namespaces is None:
            return self._items(f"/apis/{GROUP}/{VERSION}/throttlerecommendations", selector)
        return [
            item
            for namespace in namespaces
            for item in self._items(
                f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/throttlerecommendations",
                selector,
            )
        ]

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret, decoded (never logged)."""
        secret = self.api.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        encoded = (secret.get("data") or {}).get(key)
        if encoded is None:
            raise KubernetesError(f"Secret {namespace}/{name} has no key {key!r}")
        return base64.b64decode(encoded).decode("utf-8").strip()

    # --- writing ---------------------------------------------------------------------

    def patch_workload(
        self, ref: WorkloadRef, body: Mapping[str, Any], resource_version: str = ""
    ) -> None:
        """A strategic-merge patch (lists of containers and env merge by name).

        With ``resource_version`` the API server applies it only to that version of the
        object: after anyone else's write it answers 409 Conflict (:class:`KubernetesError`
        with ``status`` 409) and changes nothing.
        """
        path = _path(ref)
        if resource_version:
            metadata = {**(body.get("metadata") or {}), "resourceVersion": resource_version}
            body = {**body, "metadata": metadata}
        self.api.patch(path, body, STRATEGIC_MERGE_PATCH)

    def annotate_workload(self, ref: WorkloadRef, annotations: Mapping[str, str | None]) -> None:
        """A merge patch of metadata.annotations only (None removes one)."""
        self.api.patch(_path(ref), {"metadata": {"annotations": dict(annotations)}}, MERGE_PATCH)

    patch_deployment = patch_workload
    annotate_deployment = annotate_workload

    def annotate_pod(
        self, namespace: str, name: str, annotations: Mapping[str, str | None]
    ) -> None:
        """A merge patch of a pod's metadata.annotations only (None removes one)."""
        path = f"/api/v1/namespaces/{namespace}/pods/{name}"
        self.api.patch(path, {"metadata": {"annotations": dict(annotations)}}, MERGE_PATCH)

    def upsert_recommendation(
        self,
        deployment: DeploymentInfo,
        policy: str,
        spec: Mapping[str, Any],
        status: Mapping[str, Any],
        name: str = "",
    ) -> None:
        """Create the workload's ThrottleRecommendation if missing, then set its status.

        It is named ``name`` (default: the workload's name), has a controller
        ownerReference to the workload (so the garbage collector deletes it with the
        workload) and the label of the policy that wrote it.
        """
        ref = deployment.ref
        name = name or ref.name
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{ref.namespace}/throttlerecommendations"
        metadata = {
            "name": name,
            "namespace": ref.namespace,
            "labels": {POLICY_LABEL: policy},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": ref.kind.value,
                    "name": ref.name,
                    "uid": deployment.uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        }
        try:
            self.api.patch(f"{base}/{name}", {"metadata": metadata, "spec": dict(spec)})
        except KubernetesError as exc:
            if exc.status != 404:
                raise
            self.api.post(
                base,
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "ThrottleRecommendation",
                    "metadata": metadata,
                    "spec": dict(spec),
                },
            )
        self.api.patch(f"{base}/{name}/status", {"status": dict(status)})

    def delete_recommendation(self, namespace: str, name: str) -> None:
        path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/throttlerecommendations/{name}"
        try:
            self.api.delete(path)
        except KubernetesError as exc:
            if exc.status != 404:
                raise

    def patch_policy_status(self, name: str, status: Mapping[str, Any]) -> None:
        path = f"/apis/{GROUP}/{VERSION}/throttlepolicies/{name}/status"
        self.api.patch(path, {"status": dict(status)})

    def event(
        self,
        involved: Mapping[str, str],
        reason: str,
        message: str,
        *,
        warning: bool = False,
        now_text: str,
    ) -> None:
        """A core/v1 Event about ``involved`` (apiVersion, kind, namespace, name, uid)."""
        namespace = involved.get("namespace") or "default"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{involved['name']}.", "namespace": namespace},
            "involvedObject": dict(involved),
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "unthrottle"},
            "firstTimestamp": now_text,
            "lastTimestamp": now_text,
            "count": 1,
            "reportingComponent": "unthrottle",
            "reportingInstance": "unthrottle",
        }
        self.api.post(f"/api/v1/namespaces/{namespace}/events", body)
