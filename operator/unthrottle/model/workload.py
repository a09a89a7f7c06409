"""Workloads: which Deployment a set of containers belongs to, and their statistics together."""

from __future__ import annotations

from pydantic import Field

from unthrottle.model.fields import FrozenApiModel
from unthrottle.model.stats import ContainerStats

__all__ = ["WorkloadRef", "WorkloadStats"]


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
