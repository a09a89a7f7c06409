"""What the operator writes: ThrottlePolicy status, ThrottleRecommendation spec and status.

These models are the mirror of the ``status`` schemas of ``crds/throttlepolicy.yaml`` and
``crds/throttlerecommendation.yaml`` and of the ThrottleRecommendation ``spec``. Field
names (camelCase aliases), required fields, enums, bounds and nullability agree with the
CRDs; ``tests/unit/test_crds.py`` walks both and fails on any difference.

Times are RFC 3339 strings (``"2024-05-01T12:00:00Z"``): this layer is pure and does not
read or represent the clock; the reconcile layer formats the time it writes. Quantities
use the shared types of :mod:`unthrottle.model.fields`, so a status holds integer
millicores and bytes in Python and canonical Kubernetes text (``"250m"``, ``"512Mi"``)
on the wire. Evidence rates are plain floats in cores, as measured.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from unthrottle.model.fields import Bytes, FrozenApiModel, Millicores
from unthrottle.model.policy import Tier
from unthrottle.model.recommendation import Diagnosis
from unthrottle.model.workload import WorkloadKind

__all__ = [
    "RFC3339_PATTERN",
    "Condition",
    "ConditionStatus",
    "ContainerAction",
    "ContainerCurrent",
    "ContainerEvidence",
    "ContainerRecommendationStatus",
    "ContainerRecommended",
    "PolicyCounts",
    "RecommendationSummary",
    "TargetRef",
    "ThrottlePolicyStatus",
    "ThrottleRecommendationSpec",
    "ThrottleRecommendationStatus",
    "Timestamp",
    "TopOffender",
]

RFC3339_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"

Timestamp = Annotated[str, Field(pattern=RFC3339_PATTERN)]
"""An RFC 3339 time as the Kubernetes API writes it (``format: date-time`` in the CRDs)."""


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ContainerAction(StrEnum):
    """What the operator did for one container on its last run."""

    RECOMMENDED = "Recommended"  # recommendation written (Recommend mode, or nothing to patch)
    PATCHED = "Patched"  # the Deployment was patched with the recommendation
    SKIPPED = "Skipped"  # a recommendation exists but was not applied; ``reason`` says why
    INSUFFICIENT_DATA = "InsufficientData"  # too little history: no recommendation
    SETTLING = "Settling"  # the current configuration is too new to judge; ``reason``: time left


class Condition(FrozenApiModel):
    """A status condition in the shape of ``metav1.Condition`` (``Ready``, ...)."""

    type: str = Field(min_length=1)
    status: ConditionStatus
    reason: str = ""
    message: str = ""
    last_transition_time: Timestamp
    observed_generation: int | None = Field(default=None, ge=0)


class PolicyCounts(FrozenApiModel):
    """Workloads a policy covered on its last run, by outcome."""

    workloads: int = Field(default=0, ge=0)
    throttled: int = Field(default=0, ge=0)
    recommended: int = Field(default=0, ge=0)
    patched: int = Field(default=0, ge=0)
    skipped: int = Field(default=0, ge=0)
    settling: int = Field(default=0, ge=0)  # patched earlier, waiting for the new pods' history


class TopOffender(FrozenApiModel):
    """One of the most throttled containers a policy covers."""

    namespace: str = Field(min_length=1)
    kind: WorkloadKind = WorkloadKind.DEPLOYMENT
    name: str = Field(min_length=1)
    container: str = Field(min_length=1)
    throttle_ratio: float = Field(ge=0.0, le=1.0)


class ThrottlePolicyStatus(FrozenApiModel):
    observed_generation: int = Field(default=0, ge=0)
    conditions: tuple[Condition, ...] = ()
    last_run_time: Timestamp | None = None
    counts: PolicyCounts = Field(default_factory=PolicyCounts)
    top_offenders: tuple[TopOffender, ...] = ()
    overlaps: tuple[str, ...] = ()
    message: str = ""


class TargetRef(FrozenApiModel):
    """The workload a ThrottleRecommendation is about (same namespace)."""

    api_version: str = Field(default="apps/v1", min_length=1)
    kind: WorkloadKind = WorkloadKind.DEPLOYMENT
    name: str = Field(min_length=1)


class ThrottleRecommendationSpec(FrozenApiModel):
    target_ref: TargetRef
    policy: str = Field(min_length=1)


class RecommendationSummary(FrozenApiModel):
    """One display line for ``kubectl get trec``: ``current→recommended`` per column."""

    container: str = Field(min_length=1)
    throttle: str = ""
    cpu_request: str = ""
    cpu_limit: str = ""
    burst: str = ""
    memory: str = ""
    workers: str = ""
    action: ContainerAction


class ContainerCurrent(FrozenApiModel):
    """A container's resources as the Deployment has them now; null where unset."""

    cpu_request: Millicores | None = None
    cpu_limit: Millicores | None = None
    memory_request: Bytes | None = None
    memory_limit: Bytes | None = None
    cpu_burst_us: int | None = Field(default=None, ge=0)
    web_concurrency: int | None = Field(default=None, ge=1)


class ContainerRecommended(FrozenApiModel):
    """The engine's recommendation; ``cpuLimit`` is null with ``limitPolicy: Unset``."""

    cpu_request: Millicores = Field(ge=1)
    cpu_limit: Millicores | None = Field(default=None, ge=1)
    cpu_burst_us: int = Field(ge=0)
    memory_request: Bytes | None = Field(default=None, ge=1)
    memory_limit: Bytes | None = Field(default=None, ge=1)
    web_concurrency: int | None = Field(default=None, ge=1)
    projected_throttle_ratio: float = Field(ge=0.0, le=1.0)


class ContainerEvidence(FrozenApiModel):
    """The measurements a recommendation was made from; CPU figures in cores."""

    throttle_ratio: float = Field(ge=0.0, le=1.0)
    throttled_seconds_per_second: float | None = Field(default=None, ge=0.0)
    cpu_usage_p50: float = Field(ge=0.0)
    cpu_usage_p99: float = Field(ge=0.0)
    demand_mean: float = Field(ge=0.0)
    demand_p99: float = Field(ge=0.0)
    rss_max: Bytes | None = None
    samples: int = Field(ge=0)
    coverage: float = Field(ge=0.0)
    signals: tuple[str, ...] = ()


class ContainerRecommendationStatus(FrozenApiModel):
    name: str = Field(min_length=1)
    action: ContainerAction
    reason: str = ""
    current: ContainerCurrent = Field(default_factory=ContainerCurrent)
    # What a patch wrote, after the step limits: the recommendation is the target.
    applied: ContainerCurrent | None = None
    recommended: ContainerRecommended | None = None
    evidence: ContainerEvidence | None = None
    diagnosis: tuple[Diagnosis, ...] = ()
    explanation: str = ""


class ThrottleRecommendationStatus(FrozenApiModel):
    observed_at: Timestamp
    policy: str = Field(min_length=1)
    tier: Tier
    summary: RecommendationSummary
    containers: tuple[ContainerRecommendationStatus, ...] = ()
    conditions: tuple[Condition, ...] = ()
