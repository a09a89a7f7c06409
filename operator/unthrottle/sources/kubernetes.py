"""The Kubernetes source: Deployments, their containers and ReplicaSets, read from the API.

This module owns reading the cluster for a report or a reconcile: which namespaces and
Deployments a selector covers, each container's resources and where its WEB_CONCURRENCY
comes from (a literal, or the downward API's ``limits.cpu``/``requests.cpu``), the burst
annotation of the pod template and the burst the node agent reports applied on its pods,
and which Deployment owns each ReplicaSet (so pods map to Deployments even where
kube-state-metrics' ``kube_replicaset_owner`` is missing). It also serves the node agent:
the pods of one node, and the agent's report annotations on them. API
objects are turned into plain dictionaries at the edge and parsed by pure functions
(:func:`deployment_info`), which the unit tests exercise without a cluster.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from unthrottle.model.names import (
    BURST_ANNOTATION,
    BURST_APPLIED_ANNOTATION,
    GROUP,
    POLICY_LABEL,
    VERSION,
)
from unthrottle.model.quantity import parse_bytes, parse_millicores
from unthrottle.model.stats import ContainerResources, WebConcurrencySource
from unthrottle.model.workload import DeploymentInfo, WorkloadRef
from unthrottle.sources.kubeapi import (
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    KubeApi,
    KubernetesError,
)

__all__ = [
    "KubernetesError",
    "KubernetesSource",
    "applied_bursts",
    "container_resources",
    "deployment_info",
    "with_applied_burst",
]


def _web_concurrency(
    env: Iterable[Mapping[str, Any]], env_name: str
) -> tuple[int | None, WebConcurrencySource | None]:
    for entry in env:
        if entry.get("name") != env_name:
            continue
        if "value" in entry and entry["value"] is not None:
            try:
                return int(str(entry["value"]).strip()), WebConcurrencySource.LITERAL
            except ValueError:
                return None, WebConcurrencySource.LITERAL
        field_ref = (entry.get("valueFrom") or {}).get("resourceFieldRef") or {}
        resource = field_ref.get("resource")
        if resource == "limits.cpu":
            return None, WebConcurrencySource.LIMITS_CPU
        if resource == "requests.cpu":
            return None, WebConcurrencySource.REQUESTS_CPU
        return None, None
    return None, None


def container_resources(
    container: Mapping[str, Any], env_name: str, burst_us: int | None = None
) -> ContainerResources:
    """One container of a pod template, as the engine sees its current configuration."""
    resources = container.get("resources") or {}
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    workers, source = _web_concurrency(container.get("env") or [], env_name)

    def cpu(values: Mapping[str, Any]) -> int | None:
        return None if values.get("cpu") is None else parse_millicores(str(values["cpu"]))

    def memory(values: Mapping[str, Any]) -> int | None:
        return None if values.get("memory") is None else parse_bytes(str(values["memory"]))

    return ContainerResources(
        name=container["name"],
        cpu_request=cpu(requests),
        cpu_limit=cpu(limits),
        memory_request=memory(requests),
        memory_limit=memory(limits),
        cpu_burst_us=burst_us,
        web_concurrency=workers if workers is not None and workers >= 1 else None,
        web_concurrency_from=source,
    )


def deployment_info(deployment: Mapping[str, Any], env_name: str) -> DeploymentInfo:
    """A Deployment as the API returns it (a dictionary) → :class:`DeploymentInfo`."""
    metadata = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    template = spec.get("template") or {}
    template_annotations = dict((template.get("metadata") or {}).get("annotations") or {})
    burst_text = template_annotations.get(BURST_ANNOTATION)
    burst = int(burst_text) if burst_text and burst_text.isdigit() else None
    containers = (template.get("spec") or {}).get("containers") or []
    owned = {
        c["name"]: {
            "resources": c.get("resources") or {},
            "env": next((e for e in c.get("env") or [] if e.get("name") == env_name), None),
        }
        for c in containers
    }
    return DeploymentInfo(
        ref=WorkloadRef(namespace=metadata["namespace"], name=metadata["name"]),
        uid=metadata.get("uid") or "",
        resource_version=metadata.get("resourceVersion") or "",
        labels=dict(metadata.get("labels") or {}),
        annotations=dict(metadata.get("annotations") or {}),
        template_annotations=template_annotations,
        containers=tuple(container_resources(c, env_name, burst) for c in containers),
        replicas=spec.get("replicas", 1) if spec.get("replicas") is not None else 1,
        generation=metadata.get("generation") or 0,
        observed_generation=status.get("observedGeneration") or 0,
        status_replicas=status.get("replicas") or 0,
        updated_replicas=status.get("updatedReplicas") or 0,
        available_replicas=status.get("availableReplicas") or 0,
        owned=owned,
    )


def applied_bursts(
    pods: Iterable[Mapping[str, Any]], owners: Mapping[tuple[str, str], str]
) -> dict[tuple[str, str], int]:
    """(namespace, Deployment) → the burst its running pods report applied (the node
    agent's ``unthrottle.dev/cpu-burst-applied``): the smallest, and only when every one
    of its running pods reports one. Pods map to Deployments through their controlling
    ReplicaSet (``owners``: (namespace, ReplicaSet) → Deployment)."""
    reports: dict[tuple[str, str], list[int | None]] = {}
    for pod in pods:
        metadata = pod.get("metadata") or {}
        if (pod.get("status") or {}).get("phase") != "Running" or metadata.get("deletionTimestamp"):
            continue
        namespace = metadata.get("namespace") or ""
        replicaset = next(
            (
                ref.get("name")
                for ref in metadata.get("ownerReferences") or []
                if ref.get("kind") == "ReplicaSet" and ref.get("controller")
            ),
            None,
        )
        deployment = owners.get((namespace, replicaset or ""))
        if deployment is None:
            continue
        text = str((metadata.get("annotations") or {}).get(BURST_APPLIED_ANNOTATION, ""))
        value = int(text) if text.strip().isdigit() else None
        reports.setdefault((namespace, deployment), []).append(value)
    return {
        key: min(v for v in values if v is not None)
        for key, values in reports.items()
        if all(v is not None for v in values)
    }


def with_applied_burst(deployment: DeploymentInfo, burst_us: int | None) -> DeploymentInfo:
    """The Deployment with the applied burst on each container that has a CPU limit."""
    containers = tuple(
        c.model_copy(update={"cpu_burst_applied_us": burst_us if c.cpu_limit else None})
        for c in deployment.containers
    )
    return deployment.model_copy(update={"containers": containers})


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

    def largest_node_cpu(self) -> int | None:
        """The largest allocatable CPU of any schedulable node, in millicores (None: no node)."""
        sizes = [
            parse_millicores(str(cpu))
            for node in self._items("/api/v1/nodes")
            if not (node.get("spec") or {}).get("unschedulable")
            and (cpu := ((node.get("status") or {}).get("allocatable") or {}).get("cpu"))
            is not None
        ]
        return max(sizes, default=None)

    def namespaces(self, selector: str = "", exclude: Iterable[str] = ()) -> list[str]:
        """Namespace names matching ``selector``, without ``exclude``."""
        skip = set(exclude)
        names = (n["metadata"]["name"] for n in self._items("/api/v1/namespaces", selector))
        return sorted(n for n in names if n not in skip)

    def deployments(
        self,
        namespaces: Iterable[str] | None,
        selector: str = "",
        env_name: str = "WEB_CONCURRENCY",
    ) -> list[DeploymentInfo]:
        """The Deployments matching ``selector`` in ``namespaces`` (None: every namespace)."""
        if namespaces is None:
            items = self._items("/apis/apps/v1/deployments", selector)
        else:
            items = [
                item
                for namespace in namespaces
                for item in self._items(
                    f"/apis/apps/v1/namespaces/{namespace}/deployments", selector
                )
            ]
        return [deployment_info(item, env_name) for item in items]

    def deployment(self, ref: WorkloadRef, env_name: str) -> DeploymentInfo | None:
        """One Deployment read again (None: it is gone)."""
        path = f"/apis/apps/v1/namespaces/{ref.namespace}/deployments/{ref.name}"
        try:
            return deployment_info(self.api.get(path), env_name)
        except KubernetesError as exc:
            if exc.status == 404:
                return None
            raise

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

    def cpu_autoscaled(self, namespaces: Iterable[str]) -> set[tuple[str, str]]:
        """(namespace, Deployment) pairs a HorizontalPodAutoscaler scales on CPU utilization.

        Read through ``autoscaling/v1``, where an HPA of any version that has a CPU
        utilization target shows ``targetCPUUtilizationPercentage``.
        """
        scaled = set()
        for namespace in namespaces:
            path = f"/apis/autoscaling/v1/namespaces/{namespace}/horizontalpodautoscalers"
            for hpa in self._items(path):
                spec = hpa.get("spec") or {}
                target = spec.get("scaleTargetRef") or {}
                if target.get("kind") == "Deployment" and spec.get(
                    "targetCPUUtilizationPercentage"
                ):
                    scaled.add((namespace, target["name"]))
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

        Pods are read only in the namespaces of Deployments whose template carries the
        burst annotation (no annotation, nothing for an agent to apply): one list of the
        Deployments' pods (``pod-template-hash``) per namespace, and the ReplicaSets there
        unless ``owners`` are given.
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
            for item in self._items(f"/api/v1/namespaces/{namespace}/pods", "pod-template-hash")
        ]
        applied = applied_bursts(pods, owners)
        return [with_applied_burst(d, applied.get((d.ref.namespace, d.ref.name))) for d in found]

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

    def patch_deployment(
        self, ref: WorkloadRef, body: Mapping[str, Any], resource_version: str = ""
    ) -> None:
        """A strategic-merge patch (lists of containers and env merge by name).

        With ``resource_version`` the API server applies it only to that version of the
        object: after anyone else's write it answers 409 Conflict (:class:`KubernetesError`
        with ``status`` 409) and changes nothing.
        """
        path = f"/apis/apps/v1/namespaces/{ref.namespace}/deployments/{ref.name}"
        if resource_version:
            metadata = {**(body.get("metadata") or {}), "resourceVersion": resource_version}
            body = {**body, "metadata": metadata}
        self.api.patch(path, body, STRATEGIC_MERGE_PATCH)

    def annotate_deployment(self, ref: WorkloadRef, annotations: Mapping[str, str | None]) -> None:
        """A merge patch of metadata.annotations only (None removes one)."""
        path = f"/apis/apps/v1/namespaces/{ref.namespace}/deployments/{ref.name}"
        self.api.patch(path, {"metadata": {"annotations": dict(annotations)}}, MERGE_PATCH)

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
    ) -> None:
        """Create the Deployment's ThrottleRecommendation if missing, then set its status.

        It has the Deployment's name, a controller ownerReference to it (so the garbage
        collector deletes it with the Deployment) and the label of the policy that wrote it.
        """
        ref = deployment.ref
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{ref.namespace}/throttlerecommendations"
        metadata = {
            "name": ref.name,
            "namespace": ref.namespace,
            "labels": {POLICY_LABEL: policy},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": ref.name,
                    "uid": deployment.uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
        }
        try:
            self.api.patch(f"{base}/{ref.name}", {"metadata": metadata, "spec": dict(spec)})
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
        self.api.patch(f"{base}/{ref.name}/status", {"status": dict(status)})

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
