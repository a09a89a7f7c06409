"""Per-pod answers → one ``ContainerStats`` per (Deployment, container): the aggregation.

This module owns how the rows of a fetch's queries (each per namespace, pod and container)
become a workload's statistics: how its pods are grouped by configuration and how their
values are pooled. It is pure (no I/O). The rows, which pod belongs to which workload and
which series count as missing are kept by :mod:`.prometheus_rows`; the queries that
produce the rows are in :mod:`.prometheus_queries`.

The statistics, per (namespace, pod, container) in PromQL, then per configuration of a
(Deployment, container) here ("the Deployment's pods" below: those of one
configuration). ``W`` is the window, ``S`` the step, ``R`` the rate range; ``RATE`` is
``max by (namespace, pod, container) (rate(container_cpu_usage_seconds_total{...}[R]))``
(``max`` rather than ``sum`` so that a series duplicated by a second scrape job, or the
old container's series lingering after a restart, is not added to the new one).

- Throttle ratio: Σ over the Deployment's pods of
  ``increase(container_cpu_cfs_throttled_periods_total[W])`` / Σ of
  ``increase(container_cpu_cfs_periods_total[W])`` (each summed per pod over its
  container series, so a restarted container's old and new series both count;
  ``increase`` handles counter resets). A pooled ratio: every CFS period of every pod
  weighs the same. 0 when there are no periods (no CPU limit), at most 1.
- Usage percentiles p50, p95, p99, p99.9, p99.99: per pod
  ``quantile_over_time(q, RATE[W:S])``, then the mean of the pods' values weighted by
  their sample counts, an approximation of the percentile of all the pods' samples pooled
  (exact when pods behave alike), consistent with the pooled throttle ratio. Not the
  maximum over pods: a pod that lived ten minutes, mostly start-up, would set it, and it
  grows with the number of replicas. ``max`` is the maximum over pods of
  ``max_over_time(RATE[W:S])``; ``mean`` the weighted mean of ``avg_over_time(RATE[W:S])``,
  which is the pooled mean exactly. Percentiles are then made non-decreasing.
- Samples: the number of steps of the window at which at least one pod of the Deployment
  had a usage rate, from each pod's ``count_over_time(RATE[W:S])`` and the time of its
  last one (``max_over_time(timestamp(RATE)[W:S])``), as the union of the pods' step
  ranges (at most ``W / S``). Three replicas over the last third of the window cover a
  third, not all of it.
  ``window_seconds`` and ``step_seconds`` are ``W`` and ``S``.
- Pod lives: each pod's usage sample count × ``S``, the seconds it was seen in the window.
- Throttled seconds per second (only when ``container_cpu_cfs_throttled_seconds_total``
  exists; its absence is normal, the kube-prometheus-stack chart drops it):
  Σ ``increase(..._throttled_seconds_total[W])`` / Σ pod lives, the wall-clock rate of
  ``rate()`` pooled over pods that lived through part of the window only. The kernel sums
  it over runqueues, so it can exceed 1.
- Active period ratio: Σ ``increase(container_cpu_cfs_periods_total[W])`` × the CFS period
  / Σ pod lives, at most 1 (the kernel counts a period only while the cgroup has runnable
  work); absent without CFS counters.
- CFS period: ``last_over_time(container_spec_cpu_period[W])`` (µs) when present (the
  chart drops it too), else ``cfs_period_us`` of the config (100 ms).
- RSS: p99 is the maximum over pods of ``quantile_over_time(0.99, max by (...)
  (container_memory_rss)[W:S])``, max the maximum over pods of
  ``max_over_time(container_memory_rss[W])`` (raw samples, so no peak between steps is
  missed); working set max likewise from ``container_memory_working_set_bytes``. Memory
  is per pod and the pod with most RSS is the one that is OOM-killed, hence the maximum.
  Growth: ``deriv(max by (...) (container_memory_rss)[W:S])`` per pod (bytes/s, may be
  negative), averaged over pods weighted by their RSS sample counts so that a short-lived
  pod warming up does not read as a leak.
- OOM kills: for each pod whose container had
  ``kube_pod_container_status_last_terminated_reason{reason="OOMKilled"}`` at some time in
  the window, ``max(1, increase(kube_pod_container_status_restarts_total[W]))`` rounded
  (restarts in the window of a container last killed for memory; 1 without the restarts
  series), summed over pods. kube-state-metrics keeps only the last reason, so this is an
  estimate.
- Requests and limits: ``last_over_time(kube_pod_container_resource_requests|limits{
  resource="cpu"|"memory"}[W])`` per pod: the resources *that pod* ran with (its
  configuration, below). CPU cores become millicores rounded up; memory is bytes.

Which pod belongs to which workload, and which required series count as missing, are the
rules of :mod:`.prometheus_rows`.

History belongs to a configuration
    A window may hold pods that ran with different requests and limits (before and after
    a patch, a user's edit). A *configuration* of a (Deployment, container) is a pod's
    (cpu request, cpu limit, memory request, memory limit) for that container, as
    kube-state-metrics last reported it in the window. The pods are grouped by it and
    every statistic above is computed over one configuration's pods only: its throttle
    ratio pools its own pods' periods, its samples are the union of its own pods' step
    ranges, its memory its own pods'. The ``ContainerStats`` of the container is the
    *newest* configuration (the one whose pods' usage was seen last) with its own
    resources; ``history`` holds the others, newest first, each a ``ConfigurationStats``
    with its own resources. Throttling under an old limit is never charged to the new one:
    300m pods throttled in 98% of their periods for 20 minutes, then 2-core pods
    unthrottled for 2 minutes, give a current configuration of 2 cores with its own 2
    minutes of samples and ratio, and a history of one configuration, 300m at 98%.
    A pod kube-state-metrics lists (``kube_pod_owner``) without resource rows has no
    requests or limits: that is its configuration. A pod it does not know at all (a gap,
    a pod not listed yet) joins the configuration its ReplicaSet's other pods have (the
    most common, if they differ), else the newest; when kube-state-metrics knows no pod,
    the pods form one configuration of unknown resources (all None). A configuration
    without usage series is left out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from unthrottle.model.quantity import parse_bytes, parse_cores
from unthrottle.model.stats import (
    ConfigurationStats,
    ContainerResources,
    ContainerStats,
    CpuStats,
    MemoryStats,
    RssBytes,
    UsagePercentiles,
    WorkingSetBytes,
)
from unthrottle.model.workload import WorkloadRef, WorkloadStats
from unthrottle.sources.prometheus_queries import Resolution
from unthrottle.sources.prometheus_rows import RESOURCE_STATS, Key, Ksm, Owners, PodKey, Tables

__all__ = ["assemble"]

# (cpu request, cpu limit, memory request, memory limit): millicores and bytes.
Configuration = tuple[int | None, int | None, int | None, int | None]
_UNKNOWN: Final[Configuration] = (None, None, None, None)


def _weighted_mean(pairs: Iterable[tuple[float, float]]) -> float | None:
    total = weight = 0.0
    for value, w in pairs:
        total += value * w
        weight += w
    return total / weight if weight > 0 else None


def _non_decreasing(values: list[float | None]) -> list[float | None]:
    out: list[float | None] = []
    floor = 0.0
    for v in values:
        if v is None:
            out.append(None)
            continue
        floor = max(floor, v)
        out.append(floor)
    return out


def _covered_steps(intervals: list[tuple[int, int]]) -> int:
    covered = 0
    current: tuple[int, int] | None = None
    for low, high in sorted(intervals):
        if current is None or low > current[1] + 1:
            if current is not None:
                covered += current[1] - current[0] + 1
            current = (low, high)
        else:
            current = (current[0], max(current[1], high))
    if current is not None:
        covered += current[1] - current[0] + 1
    return covered


def assemble(
    tables: Tables,
    ksm: Ksm,
    owners: Owners,
    resolution: Resolution,
    cfs_period_us: int,
) -> tuple[list[WorkloadStats], int]:
    """Per-pod tables → one WorkloadStats per workload; also the count of unowned pods.

    ``cfs_period_us`` is the period assumed where ``container_spec_cpu_period`` is absent.
    """
    groups: dict[WorkloadRef, dict[str, list[Key]]] = defaultdict(lambda: defaultdict(list))
    unowned: set[PodKey] = set()
    for key in sorted(tables.keys() | ksm.tables.keys()):
        namespace, pod, container = key
        workload = owners.workload(namespace, pod)
        if workload is None:
            if key in tables["count"]:
                unowned.add((namespace, pod))
            continue
        groups[workload][container].append(key)
    pods_data = _Pods(tables, ksm.tables, resolution, cfs_period_us, owners, frozenset(ksm.pods))
    workloads: list[WorkloadStats] = []
    for ref, containers in sorted(groups.items(), key=lambda g: (g[0].namespace, g[0].name)):
        stats: list[ContainerStats] = []
        pods: set[str] = set()
        for container, keys in sorted(containers.items()):
            built = pods_data.container_stats(container, keys)
            if built is not None:
                stats.append(built)
                pods.update(k[1] for k in keys if tables["count"].get(k, 0) > 0)
        if stats:
            workloads.append(WorkloadStats(ref=ref, containers=tuple(stats), pods=len(pods)))
    return workloads, len(unowned)


@dataclass(frozen=True, slots=True)
class _Pods:
    """The per-pod tables of a fetch, and the statistics of a set of pods' containers."""

    t: Tables  # cAdvisor statistics
    k: Tables  # kube-state-metrics statistics
    resolution: Resolution
    cfs_period_us: int
    owners: Owners
    listed: frozenset[PodKey]  # pods kube-state-metrics has a kube_pod_owner row of

    def weights(self, keys: Iterable[Key]) -> dict[Key, float]:
        """Usage sample counts of the keys that have any."""
        count = self.t["count"]
        return {key: count[key] for key in keys if count.get(key, 0) > 0}

    def recency(self, key: Key) -> tuple[float, float]:
        """Sort key of "seen last": the last usage sample, then the later start."""
        last = self.t["last"].get(key, -math.inf)
        return (last, last - self.t["count"].get(key, 0) * self.resolution.step_seconds)

    def configuration(self, key: Key) -> Configuration | None:
        """The pod's requests and limits for the container; None when kube-state-metrics
        knows nothing of the pod (a pod it lists without resource rows has none set)."""
        cpu_request, cpu_limit, memory_request, memory_limit = (
            self.k[stat].get(key) for stat in RESOURCE_STATS
        )
        unset = (cpu_request, cpu_limit, memory_request, memory_limit) == _UNKNOWN
        if unset and (key[0], key[1]) not in self.listed:
            return None
        return (
            None if cpu_request is None else parse_cores(cpu_request),
            None if cpu_limit is None else parse_cores(cpu_limit),
            None if memory_request is None else parse_bytes(memory_request),
            None if memory_limit is None else parse_bytes(memory_limit),
        )

    def configurations(self, keys: list[Key]) -> list[tuple[Configuration, list[Key]]]:
        """The container's pods grouped by configuration, newest (seen last) first.

        A pod without resource rows joins the configuration of its ReplicaSet's other
        pods, else the newest one; without any row at all, every pod is one configuration
        of unknown resources (see the module docstring).
        """
        known: dict[Configuration, list[Key]] = defaultdict(list)
        per_replicaset: dict[str | None, dict[Configuration, int]] = defaultdict(dict)
        orphans: list[Key] = []
        for key in keys:
            configuration = self.configuration(key)
            if configuration is None:
                orphans.append(key)
                continue
            known[configuration].append(key)
            seen = per_replicaset[self.owners.replicaset(key[0], key[1])]
            seen[configuration] = seen.get(configuration, 0) + 1
        if not known:
            return [(_UNKNOWN, keys)] if keys else []

        def recency(configuration: Configuration) -> tuple[float, float]:
            return max(self.recency(key) for key in known[configuration])

        ordered = sorted(known, key=recency, reverse=True)
        for key in orphans:
            siblings = per_replicaset.get(self.owners.replicaset(key[0], key[1]))
            # Pods of one ReplicaSet share a template: the most common of its siblings'.
            home = max(siblings, key=lambda c: siblings[c]) if siblings else ordered[0]
            known[home].append(key)
        return sorted(
            ((c, known[c]) for c in known), key=lambda item: recency(item[0]), reverse=True
        )

    def container_stats(self, name: str, keys: list[Key]) -> ContainerStats | None:
        """The newest configuration's statistics, with the older ones as history.

        None when no configuration has usage series (nothing to size from).
        """
        built: list[ConfigurationStats] = []
        for configuration, group in self.configurations(keys):
            cpu = self.cpu(group)
            if cpu is not None:
                cpu_request, cpu_limit, memory_request, memory_limit = configuration
                resources = ContainerResources(
                    name=name,
                    cpu_request=cpu_request,
                    cpu_limit=cpu_limit,
                    memory_request=memory_request,
                    memory_limit=memory_limit,
                )
                built.append(
                    ConfigurationStats(container=resources, cpu=cpu, memory=self.memory(group))
                )
        if not built:
            return None
        current, *history = built
        return ContainerStats(
            container=current.container,
            cpu=current.cpu,
            memory=current.memory,
            history=tuple(history),
        )

    def usage(self, keys: list[Key], weights: Mapping[Key, float]) -> UsagePercentiles | None:
        t = self.t

        def mean_of(stat: str) -> float | None:
            return _weighted_mean((t[stat][key], w) for key, w in weights.items() if key in t[stat])

        tops = [t["max"][key] for key in keys if key in t["max"]]
        p50, p95, p99, p999, p9999, top = _non_decreasing(
            [
                mean_of("p50"),
                mean_of("p95"),
                mean_of("p99"),
                mean_of("p999"),
                mean_of("p9999"),
                max(tops) if tops else None,
            ]
        )
        if p50 is None or p95 is None or p99 is None or top is None:
            return None
        return UsagePercentiles(
            p50=p50, p95=p95, p99=p99, p999=p999, p9999=p9999, max=top, mean=mean_of("mean")
        )

    def samples(self, weights: Mapping[Key, float]) -> int:
        """Coverage: the union of the pods' step ranges [last - count + 1, last]."""
        step = self.resolution.step_seconds
        intervals: list[tuple[int, int]] = []
        loose = 0
        for key, count in weights.items():
            n = round(count)
            last = self.t["last"].get(key)
            if last is None:
                loose += n
            else:
                high = round(last / step)
                intervals.append((high - n + 1, high))
        return min(_covered_steps(intervals) + loose, self.resolution.window_seconds // step)

    def cpu(self, keys: list[Key]) -> CpuStats | None:
        t, step = self.t, self.resolution.step_seconds
        weights = self.weights(keys)
        usage = self.usage(keys, weights) if weights else None
        if usage is None:
            return None  # no usage series: nothing to size from
        counted = [key for key in keys if key in t["periods"] and key in t["throttled"]]
        periods = sum(t["periods"][key] for key in counted)
        throttled = sum(t["throttled"][key] for key in counted)
        ratio = min(1.0, throttled / periods) if periods > 0 else 0.0
        spec = [
            round(t["cfs_period_us"][key])
            for key in keys
            if key in t["cfs_period_us"] and 1000 <= t["cfs_period_us"][key] <= 1_000_000
        ]
        cfs_period_us = max(spec) if spec else None
        # Per wall-clock second of the pods' lives (count × step each), like rate().
        lives = {key: count * step for key, count in weights.items()}
        alive = [key for key in counted if key in lives]
        period_s = (cfs_period_us or self.cfs_period_us) / 1e6
        alive_seconds = sum(lives[key] for key in alive)
        alive_periods = sum(t["periods"][key] for key in alive)
        active = min(1.0, alive_periods * period_s / alive_seconds) if alive_seconds > 0 else 0.0
        with_seconds = [key for key in alive if key in t["throttled_seconds"]]
        throttled_per_second: float | None = None
        if with_seconds:
            seconds = sum(lives[key] for key in with_seconds)
            unmet = sum(t["throttled_seconds"][key] for key in with_seconds)
            throttled_per_second = unmet / seconds if seconds > 0 else 0.0
        return CpuStats(
            usage_cores=usage,
            throttled_period_ratio=ratio,
            throttled_seconds_per_second=throttled_per_second,
            samples=self.samples(weights),
            window_seconds=self.resolution.window_seconds,
            step_seconds=step,
            cfs_period_us=cfs_period_us,
            active_period_ratio=active if active > 0 else None,
        )

    def memory(self, keys: list[Key]) -> MemoryStats | None:
        t, k = self.t, self.k
        p99_values = [t["rss_p99"][key] for key in keys if key in t["rss_p99"]]
        max_values = [t["rss_max"][key] for key in keys if key in t["rss_max"]]
        if not p99_values and not max_values:
            return None
        rss_p99 = max(p99_values) if p99_values else max(max_values)
        rss_max = max([*max_values, rss_p99])
        wss = [t["wss_max"][key] for key in keys if key in t["wss_max"]]
        slope = _weighted_mean(
            (t["rss_slope"][key], t["rss_count"].get(key, 0.0))
            for key in keys
            if key in t["rss_slope"]
        )
        oom_kills = sum(
            max(1, round(k["restarts"].get(key, 0.0))) for key in keys if k["oom"].get(key, 0) > 0
        )
        return MemoryStats(
            rss_bytes=RssBytes(p99=parse_bytes(rss_p99), max=parse_bytes(rss_max)),
            working_set_bytes=WorkingSetBytes(max=parse_bytes(max(wss))) if wss else None,
            oom_kills=oom_kills,
            rss_slope_bytes_per_second=slope,
        )
