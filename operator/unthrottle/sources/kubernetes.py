"""The Kubernetes source: Deployments, their containers and ReplicaSets, read from the API.

This module owns reading the cluster for a report or a reconcile: which namespaces and
Deployments a selector covers, each container's resources and where its WEB_CONCURRENCY
comes from (a literal, or the downward API's ``limits.cpu``/``requests.cpu``), the burst
annotation of the pod template, and which Deployment owns each ReplicaSet (so pods map to
Deployments even where kube-state-metrics' ``kube_replicaset_owner`` is missing). API
objects are turned into plain dictionaries at the edge and parsed by pure functions
(:func:`deployment_info`), which the unit tests exercise without a cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client, config

from unthrottle.model.quantity import parse_bytes, parse_millicores
from unthrottle.model.stats import ContainerResources, WebConcurrencySource
from unthrottle.model.workload import DeploymentInfo, WorkloadRef

__all__ = [
    "BURST_ANNOTATION",
    "SYSTEM_NAMESPACES",
    "KubernetesError",
    "KubernetesSource",
    "container_resources",
    "deployment_info",
]

BURST_ANNOTATION = "unthrottle.dev/cpu-burst-us"
# Never in scope by default (DESIGN.md): the control plane's own namespaces.
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-public", "kube-node-lease"})


class KubernetesError(Exception):
    """The API server could not be read; the message says what was asked and why."""


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
    return DeploymentInfo(
        ref=WorkloadRef(namespace=metadata["namespace"], name=metadata["name"]),
        uid=metadata.get("uid") or "",
        labels=dict(metadata.get("labels") or {}),
        annotations=dict(metadata.get("annotations") or {}),
        template_annotations=template_annotations,
        containers=tuple(container_resources(c, env_name, burst) for c in containers),
        replicas=spec.get("replicas", 1) if spec.get("replicas") is not None else 1,
        generation=metadata.get("generation") or 0,
        observed_generation=status.get("observedGeneration") or 0,
        updated_replicas=status.get("updatedReplicas") or 0,
        available_replicas=status.get("availableReplicas") or 0,
    )


class KubernetesSource:
    """Reads the API server with the official client (synchronous; call it off the loop)."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._api = api_client
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None) -> KubernetesSource:
        """From a kubeconfig file, else the in-cluster ServiceAccount, else ~/.kube/config."""
        configuration = client.Configuration()
        try:
            if path:
                config.load_kube_config(config_file=path, client_configuration=configuration)
            else:
                try:
                    config.load_incluster_config(client_configuration=configuration)
                except config.ConfigException:
                    config.load_kube_config(client_configuration=configuration)
        except (config.ConfigException, OSError) as exc:
            raise KubernetesError(f"cannot load a kubeconfig ({path or 'default'}): {exc}") from exc
        return cls(client.ApiClient(configuration))

    def close(self) -> None:
        self._api.close()

    def _plain(self, obj: Any) -> Any:
        return self._api.sanitize_for_serialization(obj)

    def namespaces(self, selector: str = "", exclude: Iterable[str] = ()) -> list[str]:
        """Namespace names matching ``selector``, without ``exclude``."""
        skip = set(exclude)
        try:
            listed = self._core.list_namespace(label_selector=selector)
        except client.ApiException as exc:
            raise KubernetesError(f"cannot list namespaces: {exc.status} {exc.reason}") from exc
        return sorted(n.metadata.name for n in listed.items if n.metadata.name not in skip)

    def deployments(
        self,
        namespaces: Iterable[str] | None,
        selector: str = "",
        env_name: str = "WEB_CONCURRENCY",
    ) -> list[DeploymentInfo]:
        """The Deployments matching ``selector`` in ``namespaces`` (None: every namespace)."""
        try:
            if namespaces is None:
                items = self._apps.list_deployment_for_all_namespaces(label_selector=selector).items
            else:
                items = [
                    item
                    for namespace in namespaces
                    for item in self._apps.list_namespaced_deployment(
                        namespace, label_selector=selector
                    ).items
                ]
        except client.ApiException as exc:
            raise KubernetesError(f"cannot list Deployments: {exc.status} {exc.reason}") from exc
        return [deployment_info(self._plain(item), env_name) for item in items]

    def replicaset_owners(self, namespaces: Iterable[str] | None) -> dict[tuple[str, str], str]:
        """(namespace, ReplicaSet) → the Deployment that owns it."""
        try:
            if namespaces is None:
                items = self._apps.list_replica_set_for_all_namespaces().items
            else:
                items = [
                    item
                    for namespace in namespaces
                    for item in self._apps.list_namespaced_replica_set(namespace).items
                ]
        except client.ApiException as exc:
            raise KubernetesError(f"cannot list ReplicaSets: {exc.status} {exc.reason}") from exc
        owners: dict[tuple[str, str], str] = {}
        for item in items:
            for ref in item.metadata.owner_references or []:
                if ref.kind == "Deployment" and ref.controller:
                    owners[(item.metadata.namespace, item.metadata.name)] = ref.name
        return owners
