"""One pod's simulated numbers per scrape step: CPU counters, RSS, restarts.

This module owns how a pod of a scenario is simulated for the series writers: the CFS
simulator (:func:`unthrottle.sim.cfs.simulate_steps`) runs the scenario's workload under
the pod's quota, the memory model gives its RSS, and only compact integer arrays are kept
(about 48 bytes per pod and step). Randomness comes from the seed given, so a pod's
numbers depend on nothing else.
"""

from __future__ import annotations

import random
from array import array
from dataclasses import dataclass, field

from unthrottle.sim.cfs import simulate_steps
from unthrottle.sim.scenarios import Scenario

__all__ = ["Pod", "PodIdentity", "simulate_pod"]


@dataclass(frozen=True, slots=True)
class PodIdentity:
    """Names and placement of one replica, as Kubernetes would have generated them."""

    namespace: str
    deployment: str
    replicaset: str
    pod: str
    uid: str
    node: str
    instance: str


@dataclass(slots=True)
class Pod:
    """One pod's numbers per scrape step; cumulative for counters.

    Its samples are at ``ctx.timestamps[offset:offset + len(usage_us)]``. ``rs_steps``
    is the length of its ReplicaSet's ``kube_replicaset_owner`` series when this pod
    writes it (the ReplicaSet's first pod), else 0. ``pause_base_steps`` is the pause
    container's age in steps at the pod's first sample (its usage counter starts there).
    """

    scenario: Scenario
    ident: PodIdentity
    usage_us: array[int]
    periods: array[int] | None
    throttled: array[int] | None
    throttled_us: array[int] | None
    rss: array[int]
    restarts: array[int]
    offset: int = 0
    rs_steps: int = 0
    pause_base_steps: int = 0


@dataclass(slots=True)
class _Counters:
    usage: array[int] = field(default_factory=lambda: array("q"))
    periods: array[int] = field(default_factory=lambda: array("q"))
    throttled: array[int] = field(default_factory=lambda: array("q"))
    throttled_us: array[int] = field(default_factory=lambda: array("q"))


def _cpu_counters(
    scenario: Scenario,
    seed: int,
    *,
    n_steps: int,
    step_ms: int,
    sample_periods: int | None,
    age_steps: int | None,
) -> _Counters:
    """Cumulative CPU counters at each of ``n_steps`` samples.

    ``age_steps`` None: a container starting at the first sample (counters 0 there, then
    one simulated step per sample). Else a container that old at the first sample: its
    counters start at its age in steps times the first step's increments.
    """
    group = scenario.cfs_group()
    source = scenario.demand.periods(random.Random(seed), scenario.period_us)
    simulated = n_steps if age_steps is not None else max(0, n_steps - 1)
    steps = simulate_steps(
        source, group, step_ms * 1000 // scenario.period_us, simulated, sample_periods
    )
    out = _Counters()
    u = p = t = tu = 0
    if age_steps is None and n_steps:
        for values in (out.usage, out.periods, out.throttled, out.throttled_us):
            values.append(0)
    for j, step in enumerate(steps):
        if j == 0 and age_steps is not None:
            u, p = step.usage_us * age_steps, step.nr_periods * age_steps
            t, tu = step.nr_throttled * age_steps, step.throttled_time_us * age_steps
        u += step.usage_us
        p += step.nr_periods
        t += step.nr_throttled
        tu += step.throttled_time_us
        out.usage.append(u)
        out.periods.append(p)
        out.throttled.append(t)
        out.throttled_us.append(tu)
    return out


def _memory(
    scenario: Scenario, seed: int, *, n_steps: int, step_ms: int, age_ms: int
) -> tuple[array[int], array[int]]:
    """RSS and restarts at each sample of a container ``age_ms`` old at the first."""
    # Memory draws from its own stream so that it does not shift the CPU demand.
    memory_rng = random.Random(seed ^ 0x5EED_0F_3E30)
    rss = array("q")
    restarts = array("q")
    samples = scenario.memory.samples(memory_rng, age_ms, step_ms, scenario.memory_limit_bytes)
    for _ in range(n_steps):
        value, kills = next(samples)
        rss.append(value)
        restarts.append(scenario.oom_kills + kills)
    return rss, restarts


def simulate_pod(
    scenario: Scenario,
    ident: PodIdentity,
    *,
    seed: int,
    n_steps: int,
    step_ms: int,
    sample_periods: int | None,
    age_ms: int | None,
) -> Pod:
    """One pod's series; ``age_ms`` None: the container starts at the first sample."""
    age_steps = None if age_ms is None else age_ms // step_ms
    cpu = _cpu_counters(
        scenario,
        seed,
        n_steps=n_steps,
        step_ms=step_ms,
        sample_periods=sample_periods,
        age_steps=age_steps,
    )
    rss, restarts = _memory(scenario, seed, n_steps=n_steps, step_ms=step_ms, age_ms=age_ms or 0)
    # cAdvisor exports the CFS counters only for a cgroup with a quota.
    has_quota = scenario.quota_us is not None
    return Pod(
        scenario,
        ident,
        cpu.usage,
        cpu.periods if has_quota else None,
        cpu.throttled if has_quota else None,
        cpu.throttled_us if has_quota else None,
        rss,
        restarts,
        pause_base_steps=0 if age_steps is None else age_steps + 1,
    )
