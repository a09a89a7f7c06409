"""One container's statistics over a window: the input of the recommendation engine.

The Prometheus source builds these from the series listed in docs/install.md ("Prerequisites");
``unthrottle recommend`` reads them from JSON. Field aliases are the JSON contract of
``docs/cli.md``. CPU rates are held as integer millicores (``0.35`` cores → 350), memory
as bytes. Optional fields are the optional series: a default kube-prometheus-stack install
keeps throttled *periods* but drops ``container_cpu_cfs_throttled_seconds_total`` and the
``container_spec_*`` series, so ``throttled_seconds_per_second`` and ``cfs_period_us`` may
be absent and the engine must not need them.
"""

from __future__ import annotations

import itertools
from enum import StrEnum
from typing import Self

from pydantic import Field, model_validator

from unthrottle.model.fields import Bytes, CoresAsMillicores, FrozenApiModel, Millicores

__all__ = [
    "ConfigurationStats",
    "ContainerResources",
    "ContainerStats",
    "CpuStats",
    "MemoryStats",
    "RssBytes",
    "UsagePercentiles",
    "WebConcurrencySource",
    "WorkingSetBytes",
]


class WebConcurrencySource(StrEnum):
    """Where a container's WEB_CONCURRENCY comes from today."""

    LITERAL = "literal"  # env value: "4"
    LIMITS_CPU = "limits.cpu"  # downward API: ceil(limits.cpu), node allocatable without a limit
    REQUESTS_CPU = "requests.cpu"  # downward API: ceil(requests.cpu)


class ContainerResources(FrozenApiModel):
    """What the container is configured with now (from the Deployment or kube-state-metrics)."""

    name: str = Field(min_length=1)
    cpu_request: Millicores | None = None
    cpu_limit: Millicores | None = None
    memory_request: Bytes | None = None
    memory_limit: Bytes | None = None
    cpu_burst_us: int | None = Field(default=None, ge=0)
    # The burst the node agent reports applied on the workload's pods
    # (unthrottle.dev/cpu-burst-applied); None: no pod reports one (no agent, or not yet).
    cpu_burst_applied_us: int | None = Field(default=None, ge=0)
    web_concurrency: int | None = Field(default=None, ge=1)
    web_concurrency_from: WebConcurrencySource | None = None
    threads: int | None = Field(default=None, ge=1)


class UsagePercentiles(FrozenApiModel):
    """Percentiles of the CPU usage rate series over the window, in cores on the wire.

    ``mean`` is optional; without it the median stands in for it (docs/recommendations.md).
    """

    p50: CoresAsMillicores = Field(ge=0)
    p95: CoresAsMillicores = Field(ge=0)
    p99: CoresAsMillicores = Field(ge=0)
    p999: CoresAsMillicores | None = Field(default=None, ge=0)
    p9999: CoresAsMillicores | None = Field(default=None, ge=0)
    max: CoresAsMillicores = Field(ge=0)
    mean: CoresAsMillicores | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        chain = [("p50", self.p50), ("p95", self.p95), ("p99", self.p99)]
        chain += [(n, v) for n, v in (("p999", self.p999), ("p9999", self.p9999)) if v is not None]
        chain.append(("max", self.max))
        for (low_name, low), (high_name, high) in itertools.pairwise(chain):
            if high < low:
                raise ValueError(f"usageCores.{high_name} is below usageCores.{low_name}")
        return self

    @property
    def mean_or_median(self) -> int:
        return self.p50 if self.mean is None else self.mean


class CpuStats(FrozenApiModel):
    usage_cores: UsagePercentiles
    throttled_period_ratio: float = Field(ge=0.0, le=1.0)
    throttled_seconds_per_second: CoresAsMillicores | None = Field(default=None, ge=0)
    samples: int = Field(ge=0)
    window_seconds: int = Field(gt=0)
    step_seconds: int = Field(default=300, gt=0)
    cfs_period_us: int | None = Field(default=None, ge=1000, le=1_000_000)
    # The kernel counts a CFS period only while the cgroup has runnable work, so the
    # throttled ratio is a fraction of *active* periods: periods counted × period /
    # window. Unknown → 1 (every period active), which makes the estimate err high.
    active_period_ratio: float | None = Field(default=None, gt=0.0, le=1.0)


class RssBytes(FrozenApiModel):
    p99: Bytes = Field(ge=0)
    max: Bytes = Field(ge=0)


class WorkingSetBytes(FrozenApiModel):
    max: Bytes = Field(ge=0)


class MemoryStats(FrozenApiModel):
    rss_bytes: RssBytes
    working_set_bytes: WorkingSetBytes | None = None
    oom_kills: int = Field(default=0, ge=0)
    rss_slope_bytes_per_second: float | None = None


class ConfigurationStats(FrozenApiModel):
    """How the container behaved under an earlier configuration of the same workload.

    A configuration is the container's requests and limits as kube-state-metrics saw them
    on each pod: pods that ran with other resources (before a patch, before a user's edit)
    are judged against *their own* resources, never the current ones.
    """

    container: ContainerResources
    cpu: CpuStats
    memory: MemoryStats | None = None


class ContainerStats(FrozenApiModel):
    """Everything the engine knows about one container of one workload.

    ``container``, ``cpu`` and ``memory`` are the *current* configuration only: the pods
    that ran with the resources in ``container``. ``history`` holds the other
    configurations seen in the window, newest first, each with its own resources and
    counters; throttling seen there is never charged to the current limit.
    """

    container: ContainerResources
    cpu: CpuStats
    memory: MemoryStats | None = None
    history: tuple[ConfigurationStats, ...] = ()
    # The largest allocatable CPU of any node: a limit above it buys nothing, a request
    # above it is never scheduled. None: not known (no limit is capped by it).
    node_allocatable_cpu: Millicores | None = Field(default=None, ge=1)
