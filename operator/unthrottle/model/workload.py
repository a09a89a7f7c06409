"""Workloads: which Deployment a set of containers belongs to, and their statistics together."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from unthrottle.model.fields import FrozenApiModel
from unthrottle.model.stats import ContainerResources, ContainerStats

__all__ = ["DeploymentInfo", "WorkloadRef", "WorkloadStats"]


class WorkloadRef(FrozenApiModel):
    """A Deployment (the only kind unthrottle manages so far), by namespace and name."""

    namespace: str = Field(min_length=1)
    kind: str = "Deployment"
    name: str = Field(min_length=1)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class WorkloadStats(FrozenApiModel):
    """The statistics of every container of one workload, aggregated across its pods."""

    ref: WorkloadRef
    containers: tuple[ContainerStats, ...]
    pods: int = Field(default=0, ge=0)  # distinct pods seen in the window


class DeploymentInfo(FrozenApiModel):
    """What the API server says of a Deployment: the facts reconcile decides from."""

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
    # The fields unthrottle may change, exactly as found (for the previous-resources
    # annotation and rollback): {container: {"resources": {...}, "env": entry or None}}.
    owned: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def pending_rollout(self) -> str:
        """``"rollout-in-progress: <why>"`` while a template is still being rolled out, else "".

        Only a pending template counts: the controller has not observed the newest
        generation, not every replica runs it, or old replicas remain. Unavailable pods of
        the current template are *not* a rollout: a throttled service failing its probes
        is exactly the one to fix, and waiting for it would wait forever.
        """
        if self.observed_generation < self.generation:
            return (
                f"rollout-in-progress: the controller has observed generation "
                f"{self.observed_generation} of {self.generation}"
            )
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

    @property
    def rollout_in_progress(self) -> bool:
        """Whether :meth:`pending_rollout` has a reason (for counting rollouts in progress)."""
        return bool(self.pending_rollout())

    def container(self, name: str) -> ContainerResources | None:
        return next((c for c in self.containers if c.name == name), None)
