"""Named diagnoses and their triggers (docs/recommendations.md, "Diagnoses").

τ is the policy's throttleTarget, r the throttled-period ratio, L the current CPU limit.

| diagnosis                 | trigger                                                        |
|---------------------------|----------------------------------------------------------------|
| quota-bound               | r > τ and usage p95 ≥ 90% of L (usage pinned at the limit)     |
| micro-bursting            | r > τ and not quota-bound: throttled within periods while the  |
|                           | average stays below the limit                                  |
| worker-oversubscription   | workers > max(1, L cores); or threads > max(1, L cores) and    |
|                           | r > τ; or, concurrency unknown and usage not pinned at L,      |
|                           | r > 0.3 and mean usage < 0.5 core (seed 001's GIL alert)       |
| over-provisioned          | r ≤ τ and the recommended request < 50% of the current request |
| memory-growth             | RSS grows (:func:`.memory.grows`): slope × 7 days ≥ 25% of max |
|                           | RSS and slope × window ≥ 5% of it (a trend, not noise)         |
| oom-killed                | at least one OOMKilled termination in the window               |
| capped                    | cpu.maxLimit or the node's allocatable CPU (the largest's; a   |
|                           | DaemonSet's, the smallest's) binds below the limit the target  |
|                           | needs (the projection stays above τ)                           |
| healthy                   | none of the above                                              |
"""

from __future__ import annotations

from unthrottle.engine.memory import grows
from unthrottle.model.quantity import MILLICORES_PER_CORE
from unthrottle.model.recommendation import Diagnosis
from unthrottle.model.stats import ContainerStats

__all__ = ["diagnose"]

QUOTA_BOUND_USAGE_OF_LIMIT = 0.9
GIL_RULE_THROTTLE = 0.3  # seed 001's PossibleGILContention alert: throttled > 0.3 ...
GIL_RULE_USAGE_MILLICORES = 500  # ... while usage < 0.5 core
OVER_PROVISIONED_FRACTION = 0.5


def _oversubscribed(stats: ContainerStats, workers: int | None, target: float) -> bool:
    container, cpu = stats.container, stats.cpu
    ratio = cpu.throttled_period_ratio
    cores = None if container.cpu_limit is None else container.cpu_limit / MILLICORES_PER_CORE
    if cores is not None:
        if workers is not None and workers > max(1.0, cores):
            return True
        if container.threads is not None and container.threads > max(1.0, cores) and ratio > target:
            return True
    concurrency_unknown = workers is None and container.threads is None
    pinned = cores is not None and cpu.usage_cores.p95 >= QUOTA_BOUND_USAGE_OF_LIMIT * (
        container.cpu_limit or 0
    )
    return (
        concurrency_unknown
        and not pinned
        and ratio > GIL_RULE_THROTTLE
        and cpu.usage_cores.mean_or_median < GIL_RULE_USAGE_MILLICORES
    )


def diagnose(
    stats: ContainerStats,
    target: float,
    workers: int | None,
    recommended_request: int | None,
    *,
    capped: bool = False,
) -> tuple[Diagnosis, ...]:
    """The diagnoses that hold for a container, in a stable order; ``healthy`` if none."""
    found: list[Diagnosis] = []
    cpu, container = stats.cpu, stats.container
    ratio = cpu.throttled_period_ratio
    limit = container.cpu_limit
    if limit is not None and ratio > target:
        if cpu.usage_cores.p95 >= QUOTA_BOUND_USAGE_OF_LIMIT * limit:
            found.append(Diagnosis.QUOTA_BOUND)
        else:
            found.append(Diagnosis.MICRO_BURSTING)
    if _oversubscribed(stats, workers, target):
        found.append(Diagnosis.WORKER_OVERSUBSCRIPTION)
    if (
        ratio <= target
        and recommended_request is not None
        and container.cpu_request is not None
        and recommended_request < OVER_PROVISIONED_FRACTION * container.cpu_request
    ):
        found.append(Diagnosis.OVER_PROVISIONED)
    memory = stats.memory
    if memory is not None:
        if grows(memory, cpu.window_seconds):
            found.append(Diagnosis.MEMORY_GROWTH)
        if memory.oom_kills > 0:
            found.append(Diagnosis.OOM_KILLED)
    if capped:
        found.append(Diagnosis.CAPPED)
    return tuple(found) or (Diagnosis.HEALTHY,)
