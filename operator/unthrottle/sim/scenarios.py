"""Named workloads from the seeds, each with the Kubernetes resources it runs under.

This module owns the catalogue of test workloads: one frozen :class:`Scenario` per
diagnosis the engine must make (quota-bound, micro-bursting, GIL thread
oversubscription, over-provisioned, healthy, memory growth, OOM-killed, workers above
cores), plus :func:`fleet` to stamp out thousands of them for scale tests. A scenario
is data; simulating it (:meth:`Scenario.simulate`) and rendering it as Prometheus series
(:mod:`.openmetrics`) happen elsewhere from the same fields.

The numbers in each scenario's description were measured with :meth:`Scenario.simulate`
over 10 minutes for pod 0 (see ``tests/unit/test_sim.py`` for the checked bounds).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from unthrottle.model.quantity import format_bytes, format_millicores
from unthrottle.model.workload import WorkloadKind
from unthrottle.sim.cfs import DEFAULT_PERIOD_US, CfsGroup, PeriodStats, simulate
from unthrottle.sim.workload import (
    DemandModel,
    RssModel,
    bursts,
    max_parallel_us,
    poisson_requests,
    rss_series,
    steady,
    threads,
)

__all__ = [
    "Scenario",
    "all_scenarios",
    "deployment_manifest",
    "fleet",
    "pod_seed",
    "scenario",
]

MI = 1024 * 1024
GI = 1024 * MI
MS_PER_HOUR = 3_600_000


def pod_seed(seed: int, pod_index: int) -> int:
    """The seed of one replica's randomness: distinct per pod, fixed by the scenario's."""
    return seed * 1_000_003 + pod_index


@dataclass(frozen=True, slots=True)
class Scenario:
    """One Deployment with one application container, and how it behaves.

    CPU in millicores (``cpu_limit_m=None``: no CPU limit), memory in bytes, burst in µs
    (``cpu.cfs_burst_us``). ``web_concurrency`` is the ``WEB_CONCURRENCY`` env value (None:
    not set) and ``threads`` the threads per worker. ``oom_kills`` are the OOM kills the
    container had before the window (kube-state-metrics reports the last one); the memory
    model adds those that happen inside it. ``container_age_ms`` is the container's age at
    the start of a rendered window. ``backlog_limit_periods`` bounds the queued work (in
    periods of full demand) a throttled service carries before requests time out.
    """

    name: str
    namespace: str
    deployment: str
    container: str
    replicas: int
    cpu_request_m: int
    cpu_limit_m: int | None
    memory_request_bytes: int
    memory_limit_bytes: int | None
    web_concurrency: int | None
    threads: int
    burst_us: int
    demand: DemandModel
    memory: RssModel
    oom_kills: int = 0
    seed: int = 1
    description: str = ""
    period_us: int = DEFAULT_PERIOD_US
    node_cpus: int = 8
    container_age_ms: int = 6 * MS_PER_HOUR
    backlog_limit_periods: int = 10
    image: str = "registry.example.com/app:1.0"
    # (ReplicaSet, Pod) names of real pods to render the series for (e.g. the pods a
    # kube-controller-manager created); empty: names generated from the scenario's. For a
    # StatefulSet or DaemonSet (``kind``) the owner is the workload: (its name, Pod).
    pods: tuple[tuple[str, str], ...] = ()
    kind: WorkloadKind = WorkloadKind.DEPLOYMENT

    def __post_init__(self) -> None:
        if self.pods and len(self.pods) != self.replicas:
            raise ValueError(
                f"{self.name}: {len(self.pods)} pod names for {self.replicas} replicas"
            )
        if self.replicas < 1:
            raise ValueError(f"{self.name}: replicas must be at least 1")
        if self.cpu_request_m < 0 or (self.cpu_limit_m is not None and self.cpu_limit_m <= 0):
            raise ValueError(f"{self.name}: CPU request must be >= 0 and a limit > 0")

    @property
    def quota_us(self) -> int | None:
        """``cpu.cfs_quota_us`` the kubelet sets: limit x period / 1000 (None: no limit)."""
        if self.cpu_limit_m is None:
            return None
        # The kubelet's milliCPUToQuota: quota = milli * period / 1000, at least 1 ms.
        return max(1000, self.cpu_limit_m * self.period_us // 1000)

    def cfs_group(self) -> CfsGroup:
        """A fresh kernel model of this container's cgroup."""
        cap = max_parallel_us(self.demand, self.period_us, self.node_cpus)
        backlog_limit = max(
            self.period_us,
            round(self.backlog_limit_periods * self.demand.mean_cores * self.period_us),
        )
        return CfsGroup(
            quota_us=self.quota_us,
            period_us=self.period_us,
            burst_us=self.burst_us,
            max_parallel_us=cap,
            carry_over=True,
            backlog_limit_us=backlog_limit,
        )

    def simulate(
        self, seconds: float, pod_index: int = 0, keep_periods: bool = False
    ) -> PeriodStats:
        """Simulate every period of ``seconds`` for one replica (exact per-period model)."""
        group = self.cfs_group()
        n = round(seconds * 1_000_000 / self.period_us)
        rng = random.Random(pod_seed(self.seed, pod_index))
        source = self.demand.periods(rng, self.period_us)
        return simulate(
            islice(source, n),
            group.quota_us,
            group.period_us,
            burst_us=group.burst_us,
            carry_over=group.carry_over,
            max_parallel_us=group.max_parallel_us,
            backlog_limit_us=group.backlog_limit_us,
            keep_periods=keep_periods,
        )

    def with_changes(self, **changes: object) -> Scenario:
        """A copy with fields replaced (e.g. a larger limit, or a burst)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def _all() -> tuple[Scenario, ...]:
    # One long table on purpose: the seed scenarios side by side, each with its numbers.
    return (
        Scenario(
            name="quota-bound",
            namespace="shop",
            deployment="checkout",
            container="app",
            replicas=2,
            cpu_request_m=300,
            cpu_limit_m=300,
            memory_request_bytes=384 * MI,
            memory_limit_bytes=512 * MI,
            web_concurrency=1,
            threads=2,
            burst_us=0,
            # Wants ~0.5 cores, gets 0.3: every period runs out of quota with work left.
            demand=steady(0.5, jitter=0.2, threads=2),
            memory=rss_series(120 * MI, 150 * MI, 1),
            seed=101,
            description="steady ~0.5 cores under a 300m limit: usage pinned at 0.3, "
            "throttled ~100% of periods",
        ),
        Scenario(
            name="micro-burst",
            namespace="search",
            deployment="indexer",
            container="worker",
            replicas=2,
            cpu_request_m=250,
            cpu_limit_m=500,
            memory_request_bytes=256 * MI,
            memory_limit_bytes=512 * MI,
            web_concurrency=None,
            threads=4,
            burst_us=0,
            # 0.04 core base + one 100 ms burst of 1.5 cores every 2 s: mean 0.115 cores.
            # A burst needs 154 ms of CPU against 50 ms of quota: about three throttled
            # periods per 20, at under a quarter of the limit on average.
            demand=bursts(0.04, 1.5, burst_every_periods=20, burst_len_periods=1, threads=4),
            memory=rss_series(180 * MI, 0, 1),
            seed=202,
            description="~0.1 core average with 1.5-core bursts under a 500m limit: "
            "throttled at low usage",
        ),
        Scenario(
            name="gil-threads",
            namespace="api",
            deployment="reports",
            container="app",
            replicas=1,
            cpu_request_m=1000,
            cpu_limit_m=1000,
            memory_request_bytes=512 * MI,
            memory_limit_bytes=1 * GI,
            web_concurrency=1,
            threads=8,
            burst_us=0,
            # Seed 001: gunicorn 1 worker x 8 gthreads on a 1-core limit. While busy, the
            # 8 GIL-spinning threads are charged ~1.3 cores and burn the 100 ms quota in
            # ~12 ms of wall time; busy ~24% of the time in spells of ~5 periods.
            demand=threads(8, 0.16, busy_fraction=0.24, mean_busy_periods=5),
            memory=rss_series(150 * MI, 200 * MI, 1),
            seed=303,
            description="1 worker x 8 threads on a 1-core limit: ~75% of periods throttled "
            "at ~0.3 cores (seed 001)",
        ),
        Scenario(
            name="over-provisioned",
            namespace="batch",
            deployment="ledger",
            container="app",
            replicas=2,
            cpu_request_m=2000,
            cpu_limit_m=4000,
            memory_request_bytes=2 * GI,
            memory_limit_bytes=4 * GI,
            web_concurrency=4,
            threads=1,
            burst_us=0,
            demand=steady(0.05, jitter=0.3, threads=4),
            memory=rss_series(100 * MI, 90 * MI, 4),
            seed=404,
            description="0.05 cores used of a 2-core request and 4-core limit",
        ),
        Scenario(
            name="healthy",
            namespace="web",
            deployment="frontend",
            container="app",
            replicas=3,
            # Already right-sized: the production tier asks for p99 (≈ 0.21 cores) + 50%
            # ≈ 320m and a limit of 2x that, within the 10% hysteresis of these values.
            cpu_request_m=320,
            cpu_limit_m=640,
            memory_request_bytes=400 * MI,
            memory_limit_bytes=400 * MI,
            web_concurrency=1,
            threads=2,
            burst_us=0,
            # 40 req/s x 5 ms = 0.2 cores; 60 ms of quota is 12 requests in one period,
            # against a Poisson mean of 4: almost never throttled.
            demand=poisson_requests(40, 5_000, parallelism=2),
            memory=rss_series(120 * MI, 160 * MI, 1),
            seed=505,
            description="0.2 cores used of a 320m request and 640m limit: right-sized",
        ),
        Scenario(
            name="memory-growth",
            namespace="billing",
            deployment="invoicer",
            container="app",
            replicas=1,
            cpu_request_m=250,
            cpu_limit_m=500,
            memory_request_bytes=512 * MI,
            memory_limit_bytes=2 * GI,
            web_concurrency=1,
            threads=1,
            burst_us=0,
            demand=steady(0.1, jitter=0.2, threads=1),
            # +8 MiB/h: 400 MiB at 6 h of age, still under 2 GiB after another 7 days.
            memory=rss_series(200 * MI, 150 * MI, 1, growth_bytes_per_hour=8 * MI),
            seed=606,
            description="RSS rising steadily by 8 MiB/h",
        ),
        Scenario(
            name="oom-killed",
            namespace="media",
            deployment="thumbnailer",
            container="app",
            replicas=1,
            cpu_request_m=500,
            cpu_limit_m=1000,
            memory_request_bytes=384 * MI,
            memory_limit_bytes=512 * MI,
            web_concurrency=2,
            threads=1,
            burst_us=0,
            demand=poisson_requests(10, 20_000, parallelism=2),
            # 100 MiB + 2 x 150 MiB = 400 MiB at start, +40 MiB/h: reaches the 512 MiB
            # limit after 2.8 h and is OOM-killed, again and again.
            memory=rss_series(100 * MI, 150 * MI, 2, growth_bytes_per_hour=40 * MI),
            oom_kills=3,
            container_age_ms=2 * MS_PER_HOUR,
            seed=707,
            description="RSS reaches the 512 MiB limit every 2.8 h: OOMKilled",
        ),
        Scenario(
            name="workers-mismatch",
            namespace="shop",
            deployment="catalog",
            container="app",
            replicas=2,
            cpu_request_m=250,
            cpu_limit_m=500,
            memory_request_bytes=640 * MI,
            memory_limit_bytes=1 * GI,
            web_concurrency=4,
            threads=1,
            burst_us=0,
            # 4 workers on half a core: 12 req/s x 25 ms = 0.3 cores, but three requests
            # landing in one period (75 ms) on 4 workers overrun the 50 ms quota.
            demand=poisson_requests(12, 25_000, parallelism=4),
            memory=rss_series(100 * MI, 120 * MI, 4),
            seed=808,
            description="WEB_CONCURRENCY=4 under a 500m limit",
        ),
    )


_SCENARIOS = _all()


def all_scenarios() -> list[Scenario]:
    """The named scenarios, in a fixed order."""
    return list(_SCENARIOS)


def scenario(name: str) -> Scenario:
    """The named scenario (``KeyError`` if there is none)."""
    for item in _SCENARIOS:
        if item.name == name:
            return item
    raise KeyError(name)


def fleet(n: int, seed: int = 0, replicas: int = 1) -> list[Scenario]:
    """``n`` Deployments for scale tests: the named scenarios in turn, renamed.

    Deployment ``i`` is ``<deployment>-<i>`` in namespace ``team-<i mod 50>``, with its
    own seed, so every series is distinct and the output is fixed by ``seed``.
    """
    templates = _SCENARIOS
    out: list[Scenario] = []
    for i in range(n):
        template = templates[i % len(templates)]
        out.append(
            replace(
                template,
                name=f"{template.name}-{i:05d}",
                namespace=f"team-{i % 50:02d}",
                deployment=f"{template.deployment}-{i:05d}",
                replicas=replicas,
                seed=seed * 1_000_000_007 + template.seed * 100_003 + i,
            )
        )
    return out


def deployment_manifest(
    s: Scenario,
    *,
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    env: Sequence[Mapping[str, Any]] | None = None,
    update_strategy: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The workload a scenario runs as (a Deployment, or its ``kind``): one container with
    its resources and, unless ``env`` says otherwise, its WEB_CONCURRENCY as a literal (for
    the demo and e2e tests). ``update_strategy``: a StatefulSet's or DaemonSet's
    ``spec.updateStrategy``."""
    selector = {"app": s.deployment}
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": s.kind.value,
        "metadata": {
            "namespace": namespace or s.namespace,
            "name": s.deployment,
            "labels": {**selector, **(labels or {})},
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "replicas": s.replicas,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": selector},
                "spec": {"containers": [_container(s, env)]},
            },
        },
    }
    spec: dict[str, Any] = manifest["spec"]
    if s.kind is WorkloadKind.DAEMONSET:
        del spec["replicas"]  # one pod per node
    if s.kind is WorkloadKind.STATEFULSET:
        spec["serviceName"] = s.deployment
    if update_strategy is not None and s.kind is not WorkloadKind.DEPLOYMENT:
        spec["updateStrategy"] = dict(update_strategy)
    return manifest


def _container(s: Scenario, env: Sequence[Mapping[str, Any]] | None) -> dict[str, Any]:
    """The scenario's one container: its image, resources and environment."""
    limits: dict[str, str] = {}
    if s.cpu_limit_m is not None:
        limits["cpu"] = format_millicores(s.cpu_limit_m)
    if s.memory_limit_bytes is not None:
        limits["memory"] = format_bytes(s.memory_limit_bytes)
    if env is None:
        env = (
            []
            if s.web_concurrency is None
            else [{"name": "WEB_CONCURRENCY", "value": str(s.web_concurrency)}]
        )
    return {
        "name": s.container,
        "image": s.image,
        "env": [dict(e) for e in env],
        "resources": {
            "requests": {
                "cpu": format_millicores(s.cpu_request_m),
                "memory": format_bytes(s.memory_request_bytes),
            },
            "limits": limits,
        },
    }
