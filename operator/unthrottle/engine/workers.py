"""Python worker counts (WEB_CONCURRENCY) and the cores they get.

Under the GIL a Python process runs one thread of Python at a time, so a pre-fork server
should run one worker per core it is given (seed 001: workers = CPU limit). The operator
sets WEB_CONCURRENCY through the downward API (``resourceFieldRef: limits.cpu``), which
Kubernetes rounds *up* to a whole number (250m → 1, 1500m → 2) and which falls back to the
node's allocatable CPU when there is no limit. Hence:

* with worker management on, the CPU limit is rounded up to whole cores, so workers equal
  cores exactly; with ``limitPolicy: Unset`` the env refers to ``requests.cpu`` and the
  count is ceil(request);
* a container whose env already reads ``limits.cpu`` changes its worker count whenever its
  limit changes, even if unthrottle does not manage the env;
* the CPU limit of such a container is never removed (it would get the node's cores);
* the count is lowered only for a reason: CPU oversubscription, i.e. throttled above the
  target with more workers than the cores of the limit. A healthy service keeps its
  workers (measured on real CFS quotas: a healthy 2-worker service cut to 1 worker at a
  1-core limit saw its p99 rise from 269 to 372 ms, unthrottled either way), and a sync,
  I/O-bound one is never collapsed to one worker. A literal WEB_CONCURRENCY is then left
  as it is; one that reads ``limits.cpu`` keeps a limit of at least its workers in cores.
"""

from __future__ import annotations

from dataclasses import dataclass

from unthrottle.model.policy import WebConcurrencyPolicy
from unthrottle.model.quantity import MILLICORES_PER_CORE, ceil_div
from unthrottle.model.stats import ContainerResources, WebConcurrencySource

__all__ = [
    "WorkerPlan",
    "current_workers",
    "downward_api_workers",
    "manages_workers",
    "oversubscribed",
]


@dataclass(frozen=True)
class WorkerPlan:
    """Worker counts before and after a recommendation, and who sets them."""

    before: int | None
    after: int | None
    managed: bool  # unthrottle writes the env
    derived: bool  # the env follows the CPU through the downward API


def downward_api_workers(millicores: int) -> int:
    """What ``resourceFieldRef`` with ``divisor: 1`` yields: whole cores, rounded up, ≥ 1."""
    return max(1, ceil_div(millicores, MILLICORES_PER_CORE))


def manages_workers(policy: WebConcurrencyPolicy, container: ContainerResources) -> bool:
    """Whether the policy manages this container's worker count.

    An empty ``containers`` list means every container that already sets the variable.
    """
    if not policy.enabled:
        return False
    if policy.containers:
        return container.name in policy.containers
    return container.web_concurrency is not None or container.web_concurrency_from is not None


def current_workers(container: ContainerResources) -> int | None:
    """The worker count the container runs with today, when it can be known."""
    source = container.web_concurrency_from
    if source is WebConcurrencySource.LIMITS_CPU and container.cpu_limit is not None:
        return downward_api_workers(container.cpu_limit)
    if source is WebConcurrencySource.REQUESTS_CPU and container.cpu_request is not None:
        return downward_api_workers(container.cpu_request)
    return container.web_concurrency


def oversubscribed(container: ContainerResources, throttle_ratio: float, target: float) -> bool:
    """Throttled above the target with more workers than the cores of the limit."""
    workers = current_workers(container)
    limit = container.cpu_limit
    return (
        throttle_ratio > target
        and workers is not None
        and limit is not None
        and workers * MILLICORES_PER_CORE > limit
    )
