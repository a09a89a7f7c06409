"""What the engine answers for one container: a recommendation, or no recommendation with a reason.

"No recommendation" is a value (:class:`NoRecommendation`) carrying a machine-readable
reason and a sentence for people, never ``None`` and a log line. Both carry the evidence
the engine looked at, so a report or a ThrottleRecommendation can always say why.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from unthrottle.model.fields import Bytes, FrozenApiModel, Millicores, MillicoresAsCores

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
    # cpu.maxLimit (or the node: the largest, a DaemonSet's smallest) binds below the limit
    # the throttle target needs.
    CAPPED = "capped"
    HEALTHY = "healthy"


class NoRecommendationReason(StrEnum):
    INSUFFICIENT_DATA = "insufficient-data"  # too few samples or too little of the window covered
    MISSING_METRICS = "missing-metrics"  # a required series was absent for this container
    METRICS_UNAVAILABLE = "metrics-unavailable"  # Prometheus failed or answered garbage
    INVALID_POLICY = "invalid-policy"  # the policy covering the workload does not validate
    # The current configuration (the resources last applied) has too little history of
    # its own; older configurations' counters belong to their own limits.
    SETTLING = "settling"
    # The evidence contradicts itself (e.g. throttled without a limit): nothing is patched.
    CONTRADICTORY_EVIDENCE = "contradictory-evidence"


class DemandModel(FrozenApiModel):
    """Per-period CPU demand D: P(D > x) = min(1, A·exp(-x/β)), x and β in millicores.

    ``log_level`` is ln A (A can be astronomically large for a steady load pinned at its
    quota, so its logarithm is kept); ``scale`` is β; ``fit`` names how they were obtained.
    See docs/recommendations.md, "The demand model".
    """

    log_level: float
    scale: float = Field(gt=0.0)
    fit: str


class Evidence(FrozenApiModel):
    """The numbers a recommendation was made from, as shown in reports and trecs."""

    throttle_ratio: float = Field(ge=0.0, le=1.0)
    throttled_seconds_per_second: MillicoresAsCores | None = None
    cpu_usage_p50: MillicoresAsCores
    cpu_usage_p99: MillicoresAsCores
    demand_mean: MillicoresAsCores
    demand_p99: MillicoresAsCores
    rss_max: Bytes | None = None
    samples: int = Field(ge=0)
    coverage: float = Field(ge=0.0)
    signals: tuple[str, ...] = ()
    demand_model: DemandModel | None = None


class Recommendation(FrozenApiModel):
    """Recommended resources for one container, with the projection and the reasons."""

    cpu_request: Millicores = Field(ge=1)
    # VPA's lowerBound and upperBound: a current request between them is kept.
    cpu_request_lower_bound: Millicores = Field(ge=1)
    cpu_request_upper_bound: Millicores = Field(ge=1)
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


def output_fields(result: RecommendationResult) -> dict[str, object]:
    """The JSON fields of ``unthrottle recommend`` (docs/cli.md), for any result.

    Quantities are Kubernetes strings; with no recommendation every value is null and
    ``reason`` says why; ``explanation`` is always a sentence for people.
    """
    if isinstance(result, NoRecommendation):
        return {
            "cpuRequest": None,
            "cpuRequestLowerBound": None,
            "cpuRequestUpperBound": None,
            "cpuLimit": None,
            "cpuBurstUs": None,
            "memoryRequest": None,
            "memoryLimit": None,
            "webConcurrency": None,
            "projectedThrottleRatio": None,
            "diagnosis": [d.value for d in result.diagnosis],
            "explanation": result.message,
            "reason": result.reason.value,
        }
    fields = result.model_dump(mode="json", by_alias=True, exclude={"evidence"})
    fields["projectedThrottleRatio"] = round(result.projected_throttle_ratio, 4)
    fields["reason"] = None
    return fields
