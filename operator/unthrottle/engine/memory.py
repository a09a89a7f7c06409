"""Memory sizing from RSS (seed 000), and the link between worker count and memory.

Kubernetes OOM-kills on RSS, and Python's arenas keep RSS above what the code holds, so
the limit is the window's maximum RSS plus headroom (40% by default):

    limit = max RSS × (1 + headroom), rounded up to a MiB; request = limit

Example: max RSS 320 000 000 B × 1.4 = 448 000 000 B → 428 MiB (448 790 528 B).

Memory is not compressible, so the request equals the limit. Six corrections:

* OOM-killed: the observed RSS was cut off by the limit, like CPU usage by the quota, so
  the base is at least the current limit;
* workers grow: a pre-fork server's RSS scales with its worker count (each worker has its
  own heap), so the base is RSS × new workers / old workers (4 → 6 workers: × 1.5);
* never below the observed maximum RSS (the guardrail), so fewer workers lower memory
  only after a later window has seen the smaller RSS;
* growing (positive RSS slope): the base grows by slope × the time until the next patch
  can correct it (``patch.cooldown``). Example: +2 MiB/h with a 24 h cooldown adds 48 MiB;
* never below the maximum working set: the kubelet evicts on working set (RSS plus
  active page cache), so a 200 MiB RSS with a 1.5 GiB working set gets at least 1.5 GiB
  (rounded up to a MiB), not 280 MiB;
* OOM-killed without a memory limit: the node's OOM killer chose it, so its RSS was cut
  off at no known value. Nothing is cut: no limit is added, and the request is at least
  today's (1Gi requested, 300Mi RSS seen before the kill: the request stays 1Gi);
* growing: a growing container's memory is never lowered. Every patch restarts its pods,
  so the pods since the last one are younger and their smaller RSS is their age, not a
  smaller need (+40 MiB/h: a limit of 1018Mi sized at 6 h of age reads 902Mi at 4 h;
  cutting it would restart the pods again and grow back to 1018Mi: a patch every
  cooldown). Growing is a trend, not noise: slope × 7 days ≥ 25% of the maximum RSS and
  slope × window ≥ 5% of it (the ``memory-growth`` diagnosis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from unthrottle.engine.workers import WorkerPlan
from unthrottle.model.policy import MemoryPolicy
from unthrottle.model.quantity import describe_bytes, round_up
from unthrottle.model.stats import ContainerResources, MemoryStats

__all__ = ["MEMORY_GRANULARITY", "MemoryPlan", "grows", "recommend_memory"]

MEMORY_GRANULARITY = 2**20
GROWTH_HORIZON_SECONDS = 7 * 86_400  # a week at this rate ...
GROWTH_OF_MAX = 0.25  # ... adds a quarter of the maximum RSS
GROWTH_IN_WINDOW_OF_MAX = 0.05  # and the window itself saw 5% of it: a trend, not noise


def grows(memory: MemoryStats, window_seconds: int) -> bool:
    """Whether RSS grows as a trend (docstring above): the ``memory-growth`` rule."""
    slope = memory.rss_slope_bytes_per_second
    rss_max = memory.rss_bytes.max
    return (
        slope is not None
        and slope > 0
        and slope * GROWTH_HORIZON_SECONDS >= GROWTH_OF_MAX * rss_max
        and slope * window_seconds >= GROWTH_IN_WINDOW_OF_MAX * rss_max
    )


@dataclass(frozen=True)
class MemoryPlan:
    request: int
    limit: int | None  # None: no memory limit (none is added to an OOM-killed container)
    base: int  # the RSS the headroom was added to
    notes: tuple[str, ...]


def _base(
    memory: MemoryStats,
    container: ContainerResources,
    workers: WorkerPlan,
    growth_horizon_ms: int,
    notes: list[str],
) -> int:
    """The RSS the headroom is added to: the maximum, corrected for OOM kills, a new
    worker count and growth until the next possible patch."""
    base = memory.rss_bytes.max
    if memory.oom_kills > 0 and container.memory_limit is not None:
        base = max(base, container.memory_limit)
        notes.append(
            f"OOM-killed {memory.oom_kills}× so RSS was cut off at the current limit; "
            "sized from the limit instead"
        )
    if workers.before and workers.after and workers.after != workers.before:
        scaled = math.ceil(base * workers.after / workers.before)
        if scaled > base:
            notes.append(
                f"workers {workers.before} → {workers.after}: RSS scaled by "
                f"{workers.after}/{workers.before} (each worker has its own heap)"
            )
            base = scaled
        else:
            notes.append(
                f"workers {workers.before} → {workers.after}: memory kept at the observed "
                "RSS until a window with fewer workers shows the smaller footprint"
            )
    slope = memory.rss_slope_bytes_per_second or 0.0
    if slope > 0 and growth_horizon_ms > 0:
        growth = math.ceil(slope * growth_horizon_ms / 1000)
        base += growth
        notes.append(f"growing: + {describe_bytes(growth)} until the next possible patch")
    return base


def _floors(
    limit: int,
    policy: MemoryPolicy,
    memory: MemoryStats,
    container: ContainerResources,
    *,
    window_seconds: int,
    notes: list[str],
) -> int:
    """The limit never below the observed RSS, the working set, or (growing) today's."""
    rss_max = memory.rss_bytes.max
    limit = max(limit, round_up(rss_max, MEMORY_GRANULARITY))
    wss = memory.working_set_bytes
    if wss is not None and round_up(wss.max, MEMORY_GRANULARITY) > limit:
        limit = round_up(wss.max, MEMORY_GRANULARITY)
        notes.append(
            f"raised to the maximum working set {describe_bytes(wss.max)} (kubelet evicts on it)"
        )
    current = container.memory_limit
    if (
        current is not None
        and current > limit
        and (policy.max_limit is None or current <= policy.max_limit)
        and grows(memory, window_seconds)
    ):
        limit = current
        notes.append(
            f"growing: kept at today's {describe_bytes(current)} (the pods since the last "
            "patch are younger; their smaller RSS is their age)"
        )
    return limit


def recommend_memory(
    policy: MemoryPolicy,
    memory: MemoryStats,
    container: ContainerResources,
    workers: WorkerPlan,
    growth_horizon_ms: int = 0,
    *,
    window_seconds: int = 0,
) -> MemoryPlan:
    """The memory of one container: the base, its headroom and bounds, then the floors."""
    notes: list[str] = []
    base = _base(memory, container, workers, growth_horizon_ms, notes)
    limit = round_up(math.ceil(base * (1.0 + policy.headroom)), MEMORY_GRANULARITY)
    limit = max(limit, policy.min_limit)
    if policy.max_limit is not None and limit > policy.max_limit:
        if policy.max_limit >= memory.rss_bytes.max:
            limit = policy.max_limit
            notes.append("capped at memory.maxLimit")
        else:
            notes.append("memory.maxLimit is below the observed RSS and was not applied")
    limit = _floors(limit, policy, memory, container, window_seconds=window_seconds, notes=notes)
    if memory.oom_kills > 0 and container.memory_limit is None:
        request = max(limit, container.memory_request or 0)
        notes.append(
            f"OOM-killed {memory.oom_kills}× without a memory limit (the node's OOM killer): "
            "no limit is added and the request is not lowered"
        )
        return MemoryPlan(request=request, limit=None, base=base, notes=tuple(notes))
    return MemoryPlan(request=limit, limit=limit, base=base, notes=tuple(notes))
