"""What the engine answers for one container: a recommendation, or no recommendation with a reason.

"No recommendation" is a value (:class:`NoRecommendation`) carrying a machine-readable
reason and a sentence for people, never ``None`` and a log line. Both carry the evidence
the engine looked at, so a report or a ThrottleRecommendation can always say why.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from unthrottle.model.types import Bytes, CoresAsMillicores, FrozenApiModel, Millicores

__all__ = [
    "DemandModel",
    "Diagnosis",
    "Evidence",
    "NoRecommendation",
    "NoRecommendationReason",
    "Recommendation",
    "RecommendationResult",
]


class Diagnosis(StrEnum):
    """Named findings; each trigger is documented in docs/recommendations.md."""

    QUOTA_BOUND = "quota-bound"
    MICRO_BURSTING = "micro-bursting"
    WORKER_OVERSUBSCRIPTION = "worker-oversubscription"
    OVER_PROVISIONED = "over-provisioned"
    MEMORY_GROWTH = "memory-growth"
    OOM_KILLED = "oom-killed"
    HEALTHY = "healthy"


class NoRecommendationReason(StrEnum):
    INSUFFICIENT_DATA = "insufficient-data"  # too few samples or too little of the window covered
    MISSING_METRICS = "missing-metrics"  # a required series was absent for this container
    METRICS_UNAVAILABLE = "metrics-unavailable"  # Prometheus failed or answered garbage
    INVALID_POLICY = "invalid-policy"  # the policy covering the workload does not validate


class DemandModel(FrozenApiModel):
    """Per-period CPU demand D in cores: P(D > x) = min(1, A·exp(-x/β)).

    ``scale`` is β (millicores) and ``level`` is A; ``fit`` names how they were obtained.
    """

    level: float = Field(gt=0.0)
    scale: Millicores = Field(ge=1)
    fit: str


class Evidence(FrozenApiModel):
    """The numbers a recommendation was made from, as shown in reports and trecs."""

    throttle_ratio: float = Field(ge=0.0, le=1.0)
    throttled_seconds_per_second: CoresAsMillicores | None = None
    cpu_usage_p50: CoresAsMillicores
    cpu_usage_p99: CoresAsMillicores
    demand_mean: CoresAsMillicores
    demand_p99: CoresAsMillicores
    rss_max: Bytes | None = None
    samples: int = Field(ge=0)
    coverage: float = Field(ge=0.0)
    signals: tuple[str, ...] = ()
    demand_model: DemandModel | None = None


class Recommendation(FrozenApiModel):
    """Recommended resources for one container, with the projection and the reasons."""

    cpu_request: Millicores = Field(ge=1)
    cpu_limit: Millicores | None = Field(default=None, ge=1)
    cpu_burst_us: int = Field(ge=0)
    memory_request: Bytes | None = Field(default=None, ge=1)
    memory_limit: Bytes | None = Field(default=None, ge=1)
    web_concurrency: int | None = Field(default=None, ge=1)
    projected_throttle_ratio: float = Field(ge=0.0, le=1.0)
    diagnosis: tuple[Diagnosis, ...]
    explanation: str
    evidence: Evidence


class NoRecommendation(FrozenApiModel):
    """Why there is no recommendation for a container; nothing is patched from this."""

    reason: NoRecommendationReason
    message: str
    diagnosis: tuple[Diagnosis, ...] = ()
    evidence: Evidence | None = None


RecommendationResult = Recommendation | NoRecommendation
