"""Workload objects as the API server returns them → plain values: pure functions.

Each kind's pod template (its containers' resources, where WEB_CONCURRENCY comes from, the
burst annotation) and rollout fields (replicas, update strategy, partition, revisions, a
DaemonSet's scheduled counts) become a :class:`DeploymentInfo`; pods map to the workload
that owns them (a StatefulSet or DaemonSet directly, a Deployment through its ReplicaSet),
and the burst the node agent reports applied on them is read from their annotations.
The unit tests exercise these without a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from unthrottle.model.names import BURST_ANNOTATION, BURST_APPLIED_ANNOTATION
from unthrottle.model.quantity import parse_bytes, parse_millicores
from unthrottle.model.stats import ContainerResources, WebConcurrencySource
from unthrottle.model.workload import DeploymentInfo, WorkloadKind, WorkloadRef

__all__ = [
    "applied_bursts",
    "container_resources",
    "deployment_info",
    "pod_workload",
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


def _rollout_fields(
    kind: WorkloadKind, spec: Mapping[str, Any], status: Mapping[str, Any]
) -> dict[str, Any]:
    """Each kind's replicas, strategy and rollout status, as :class:`DeploymentInfo` names them."""
    replicas = spec.get("replicas")
    fields: dict[str, Any] = {
        "replicas": 1 if replicas is None else replicas,
        "status_replicas": status.get("replicas") or 0,
        "updated_replicas": status.get("updatedReplicas") or 0,
        "available_replicas": status.get("availableReplicas") or 0,
    }
    if kind is WorkloadKind.DEPLOYMENT:
        fields["update_strategy"] = (spec.get("strategy") or {}).get("type") or "RollingUpdate"
        return fields
    strategy = spec.get("updateStrategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    fields["update_strategy"] = strategy.get("type") or "RollingUpdate"
    if kind is WorkloadKind.STATEFULSET:
        fields["partition"] = rolling.get("partition") or 0
        fields["current_revision"] = status.get("currentRevision") or ""
        fields["update_revision"] = status.get("updateRevision") or ""
        return fields
    # A DaemonSet wants one pod per eligible node: its status says how many.
    fields.update(
        replicas=status.get("desiredNumberScheduled") or 0,
        status_replicas=status.get("currentNumberScheduled") or 0,
        updated_replicas=status.get("updatedNumberScheduled") or 0,
        available_replicas=status.get("numberAvailable") or 0,
        max_unavailable=str(rolling.get("maxUnavailable", 1)),
    )
    return fields


def deployment_info(
    deployment: Mapping[str, Any],
    env_name: str,
    kind: WorkloadKind = WorkloadKind.DEPLOYMENT,
) -> DeploymentInfo:
    """A workload of ``kind`` as the API returns it (a dictionary) → :class:`DeploymentInfo`."""
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
        ref=WorkloadRef(namespace=metadata["namespace"], kind=kind, name=metadata["name"]),
        uid=metadata.get("uid") or "",
        resource_version=metadata.get("resourceVersion") or "",
        labels=dict(metadata.get("labels") or {}),
        annotations=dict(metadata.get("annotations") or {}),
        template_annotations=template_annotations,
        containers=tuple(container_resources(c, env_name, burst) for c in containers),
        generation=metadata.get("generation") or 0,
        observed_generation=status.get("observedGeneration") or 0,
        owned=owned,
        **_rollout_fields(kind, spec, status),
    )


def pod_workload(
    pod: Mapping[str, Any], owners: Mapping[tuple[str, str], str]
) -> WorkloadRef | None:
    """The workload a pod belongs to, by its controlling ownerReference: a StatefulSet or a
    DaemonSet directly, a Deployment through its ReplicaSet (``owners``: (namespace,
    ReplicaSet) → Deployment)."""
    metadata = pod.get("metadata") or {}
    namespace = metadata.get("namespace") or ""
    for ref in metadata.get("ownerReferences") or []:
        if not ref.get("controller") or not ref.get("name") or not namespace:
            continue
        if ref.get("kind") == "ReplicaSet":
            deployment = owners.get((namespace, ref["name"]))
            return None if deployment is None else WorkloadRef(namespace=namespace, name=deployment)
        if ref.get("kind") in (WorkloadKind.STATEFULSET, WorkloadKind.DAEMONSET):
            kind = WorkloadKind(ref["kind"])
            return WorkloadRef(namespace=namespace, kind=kind, name=ref["name"])
    return None


def applied_bursts(
    pods: Iterable[Mapping[str, Any]], owners: Mapping[tuple[str, str], str]
) -> dict[WorkloadRef, int]:
    """Workload → the burst its running pods report applied (the node agent's
    ``unthrottle.dev/cpu-burst-applied``): the smallest, and only when every one of its
    running pods reports one. Pods map to workloads by :func:`pod_workload`."""
    reports: dict[WorkloadRef, list[int | None]] = {}
    for pod in pods:
        metadata = pod.get("metadata") or {}
        if (pod.get("status") or {}).get("phase") != "Running" or metadata.get("deletionTimestamp"):
            continue
        workload = pod_workload(pod, owners)
        if workload is None:
            continue
        text = str((metadata.get("annotations") or {}).get(BURST_APPLIED_ANNOTATION, ""))
        value = int(text) if text.strip().isdigit() else None
        reports.setdefault(workload, []).append(value)
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
