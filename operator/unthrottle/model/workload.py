"""Workloads: which Deployment, StatefulSet or DaemonSet a set of containers belongs to,
their statistics together, and what the API server says of each (its rollout rules)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import Field

from unthrottle.model.fields import FrozenApiModel
from unthrottle.model.stats import ContainerResources, ContainerStats

__all__ = [
    "ALL_KINDS",
    "DeploymentInfo",
    "NodeCpu",
    "WorkloadInfo",
    "WorkloadKind",
    "WorkloadRef",
    "WorkloadStats",
]


class WorkloadKind(StrEnum):
    """The kinds unthrottle right-sizes: each has its pod template at ``spec.template``."""

    DEPLOYMENT = "Deployment"
    STATEFULSET = "StatefulSet"
    DAEMONSET = "DaemonSet"

    @property
    def resource(self) -> str:
        """The plural of the ``apps/v1`` API path: ``deployments``, ``statefulsets``, ..."""
        return f"{self.value.lower()}s"

    @classmethod
    def from_kubectl(cls, text: str) -> WorkloadKind | None:
        """The kind a kubectl user writes, in any case: ``deployment``, ``deployments``,
        ``deploy``, ``statefulset``, ``sts``, ``daemonset``, ``ds``, ... (None: not one)."""
        short = {"deploy": cls.DEPLOYMENT, "sts": cls.STATEFULSET, "ds": cls.DAEMONSET}
        word = text.lower()
        for kind in cls:
            if word in (kind.value.lower(), kind.resource):
                return kind
        return short.get(word)


ALL_KINDS: tuple[WorkloadKind, ...] = tuple(WorkloadKind)


@dataclass(frozen=True)
class NodeCpu:
    """The allocatable CPU of the schedulable nodes, in millicores: what one pod can get.

    A Deployment's or StatefulSet's pod lands on one node, so it must fit the largest; a
    DaemonSet runs a pod on every node, so it must fit the smallest (its node selector is
    not read: the smallest of all is the safe side).
    """

    largest: int
    smallest: int

    def for_kind(self, kind: WorkloadKind) -> tuple[int, str]:
        """The most one pod of ``kind`` can get, and which node that is."""
        if kind is WorkloadKind.DAEMONSET:
            return self.smallest, "the smallest node's"
        return self.largest, "the largest node's"


class WorkloadRef(FrozenApiModel):
    """A workload by namespace, kind and name."""

    namespace: str = Field(min_length=1)
    kind: WorkloadKind = WorkloadKind.DEPLOYMENT
    name: str = Field(min_length=1)

    def __str__(self) -> str:
        # A Deployment reads as it always has; other kinds as kubectl names them.
        if self.kind is WorkloadKind.DEPLOYMENT:
            return f"{self.namespace}/{self.name}"
        return f"{self.namespace}/{self.kind.value.lower()}/{self.name}"


class WorkloadStats(FrozenApiModel):
    """The statistics of every container of one workload, aggregated across its pods."""

    ref: WorkloadRef
    containers: tuple[ContainerStats, ...]
    pods: int = Field(default=0, ge=0)  # distinct pods seen in the window


ROLLING_UPDATE = "RollingUpdate"
ON_DELETE = "OnDelete"


class DeploymentInfo(FrozenApiModel):
    """What the API server says of a workload (any kind): the facts reconcile decides from.

    ``replicas`` is the pods the workload wants: ``spec.replicas``, or for a DaemonSet
    ``status.desiredNumberScheduled``; ``updated_replicas`` those running the newest
    template (a DaemonSet's ``updatedNumberScheduled``). ``update_strategy`` is
    ``spec.strategy.type`` (Deployment) or ``spec.updateStrategy.type``; ``partition`` a
    StatefulSet's ``rollingUpdate.partition``; ``max_unavailable`` a DaemonSet's as
    written (``1``, ``10%``).
    """

    ref: WorkloadRef
    uid: str = ""
    # metadata.resourceVersion as read: a patch carries it, so that a write by anyone
    # else in between fails (HTTP 409) instead of being overwritten.
    resource_version: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    template_annotations: dict[str, str] = Field(default_factory=dict)
    containers: tuple[ContainerResources, ...] = ()
    replicas: int = Field(default=1, ge=0)
    generation: int = 0
    observed_generation: int = 0
    status_replicas: int = 0  # pods of every ReplicaSet of the Deployment
    updated_replicas: int = 0
    available_replicas: int = 0
    update_strategy: str = ROLLING_UPDATE
    partition: int = Field(default=0, ge=0)
    current_revision: str = ""
    update_revision: str = ""
    max_unavailable: str = "1"
    # The fields unthrottle may change, exactly as found (for the previous-resources
    # annotation and rollback): {container: {"resources": {...}, "env": entry or None}}.
    owned: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def kind(self) -> WorkloadKind:
        return self.ref.kind

    def pods_restarted(self) -> int:
        """How many pods a change of the template restarts by itself.

        OnDelete (StatefulSet, DaemonSet) restarts none: pods take a new template only
        when someone deletes them. A StatefulSet's partition keeps the ordinals below it.
        """
        if self.kind is not WorkloadKind.DEPLOYMENT and self.update_strategy == ON_DELETE:
            return 0
        if self.kind is WorkloadKind.STATEFULSET:
            return max(0, self.replicas - self.partition)
        return self.replicas

    def rollout_semantics(self) -> str:
        """How a patch of the template reaches the pods, in a sentence for Events and trecs."""
        if self.kind is WorkloadKind.DEPLOYMENT:
            return "rolling out as the Deployment's strategy says"
        if self.update_strategy == ON_DELETE:
            return (
                "updateStrategy OnDelete: no pod restarts; each pod takes the new resources "
                "when it is deleted"
            )
        if self.kind is WorkloadKind.DAEMONSET:
            return (
                f"rolling out node by node, at most {self.max_unavailable} of "
                f"{self.replicas} pods unavailable at a time (maxUnavailable)"
            )
        if self.partition >= self.replicas and self.replicas > 0:
            return (
                f"partition {self.partition}: no pod restarts (every ordinal is below it); "
                "pods take the new resources when the partition is lowered"
            )
        kept = f"; ordinals below {self.partition} keep the old resources" if self.partition else ""
        return f"rolling out one pod at a time, highest ordinal first{kept}"

    def pending_rollout(self) -> str:
        """``"rollout-in-progress: <why>"`` while a template is still being rolled out, else "".

        As ``kubectl rollout status`` sees each kind, but only a pending template counts:
        unavailable pods of the current template are *not* a rollout (a throttled service
        failing its probes is exactly the one to fix, and waiting for it would wait
        forever). An OnDelete workload is never rolling out once its controller has seen
        the newest generation: its pods change only when deleted.
        """
        if self.observed_generation < self.generation:
            return (
                f"rollout-in-progress: the controller has observed generation "
                f"{self.observed_generation} of {self.generation}"
            )
        if self.kind is WorkloadKind.DEPLOYMENT:
            return self._deployment_rollout()
        if self.update_strategy == ON_DELETE:
            return ""
        if self.kind is WorkloadKind.STATEFULSET:
            return self._statefulset_rollout()
        if self.updated_replicas < self.replicas:
            return (
                f"rollout-in-progress: {self.updated_replicas} of {self.replicas} daemon pods "
                "run the newest template"
            )
        return ""

    def _deployment_rollout(self) -> str:
        if self.updated_replicas < self.replicas:
            return (
                f"rollout-in-progress: {self.updated_replicas} of {self.replicas} replicas run "
                "the newest template"
            )
        old = self.status_replicas - self.updated_replicas
        if old > 0:
            return (
                f"rollout-in-progress: {old} of {self.status_replicas} replicas still run the "
                "old template"
            )
        return ""

    def _statefulset_rollout(self) -> str:
        if self.partition > 0:
            # A partitioned rollout is done once every ordinal at or above it is updated.
            wanted = max(0, self.replicas - self.partition)
            if self.updated_replicas < wanted:
                return (
                    f"rollout-in-progress: {self.updated_replicas} of {wanted} pods at or "
                    f"above partition {self.partition} run the newest template"
                )
            return ""
        if self.update_revision and self.current_revision != self.update_revision:
            return (
                f"rollout-in-progress: {self.updated_replicas} of {self.replicas} pods run "
                f"revision {self.update_revision}"
            )
        return ""

    @property
    def rollout_in_progress(self) -> bool:
        """Whether :meth:`pending_rollout` has a reason (for counting rollouts in progress)."""
        return bool(self.pending_rollout())

    def container(self, name: str) -> ContainerResources | None:
        return next((c for c in self.containers if c.name == name), None)


WorkloadInfo = DeploymentInfo
