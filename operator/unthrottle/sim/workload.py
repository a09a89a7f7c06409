"""Demand generators: how much CPU a workload asks for in each CFS period, and its RSS.

This module owns the workload side of the simulation. A CPU demand model is a frozen
dataclass describing the process; :meth:`periods` turns it, with a ``random.Random``, into
an endless iterator of the CPU time (µs) that becomes runnable in each period. Together
with ``threads`` (how many threads can run at once, which sets how fast the group can
spend its quota and how many runqueues a throttle stalls) that is all :mod:`.cfs` needs.
The memory model gives RSS over time, with OOM kills when it reaches a limit.

Every model is stationary (its statistics do not depend on the absolute time), which is
what lets :func:`unthrottle.sim.cfs.simulate_steps` sample a few periods per scrape step.
Randomness comes only from the ``random.Random`` passed in, so a seed fixes the output.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist
from typing import Protocol

from unthrottle.sim.cfs import DEFAULT_PERIOD_US

__all__ = [
    "Bursts",
    "DemandModel",
    "PoissonRequests",
    "RssModel",
    "Steady",
    "Threads",
    "bursts",
    "demand_iter",
    "max_parallel_us",
    "poisson_requests",
    "rss_series",
    "steady",
    "threads",
]

US_PER_SECOND = 1_000_000
MS_PER_HOUR = 3_600_000


class DemandModel(Protocol):
    """A CPU demand process: CPU µs arriving per period, and its parallelism."""

    @property
    def threads(self) -> int:
        """Runnable threads when the workload is busy (how wide it can run)."""
        ...

    @property
    def mean_cores(self) -> float:
        """Long-run mean demand in cores (what an unthrottled container would use)."""
        ...

    def periods(self, rng: random.Random, period_us: int = DEFAULT_PERIOD_US) -> Iterator[int]:
        """CPU µs becoming runnable in each successive period, forever."""
        ...


def demand_iter(model: DemandModel, seed: int, period_us: int = DEFAULT_PERIOD_US) -> Iterator[int]:
    """The model's per-period demand from a fresh ``random.Random(seed)``."""
    return model.periods(random.Random(seed), period_us)


def max_parallel_us(
    model: DemandModel, period_us: int = DEFAULT_PERIOD_US, cpus: int | None = None
) -> int:
    """CPU time the model's threads can use in one period: ``min(threads, cpus) x P``."""
    width = model.threads if cpus is None else min(model.threads, cpus)
    return max(1, width) * period_us


def _normal_table(size_bits: int) -> tuple[float, ...]:
    # Standard normal quantiles at evenly spaced probabilities: indexing this table with
    # ``getrandbits`` (one C call) draws noise several times faster than ``rng.gauss``,
    # and the noise only has to be roughly Gaussian.
    dist = NormalDist()
    size = 1 << size_bits
    return tuple(dist.inv_cdf((i + 0.5) / size) for i in range(size))


_NORMAL_BITS = 12
_NORMALS = _normal_table(_NORMAL_BITS)


def _jittered(rng: random.Random, mean_us: float, jitter: float) -> int:
    # Multiplicative Gaussian noise keeps the mean (clipping at 0 is negligible for the
    # jitters used here, < 0.35) and scales with the level, as real request mixes do.
    if jitter <= 0:
        return round(mean_us)
    value = round(mean_us * (1.0 + jitter * _NORMALS[rng.getrandbits(_NORMAL_BITS)]))
    return value if value > 0 else 0


@dataclass(frozen=True, slots=True)
class Steady:
    """A constant load of ``mean_cores`` with multiplicative noise per period."""

    mean_cores: float
    jitter: float = 0.2
    threads: int = 1

    def periods(self, rng: random.Random, period_us: int = DEFAULT_PERIOD_US) -> Iterator[int]:
        mean_us = self.mean_cores * period_us
        sigma = self.jitter * mean_us
        normals = _NORMALS
        bits = rng.getrandbits
        while True:
            value = round(mean_us + sigma * normals[bits(_NORMAL_BITS)])
            yield value if value > 0 else 0


def _poisson_cdf(lam: float) -> list[float]:
    # P(N <= k) for k = 0, 1, ... until the tail is below 1e-12: one uniform and a
    # bisection then draw a Poisson variate (inverse transform).
    cdf: list[float] = []
    term = math.exp(-lam)
    total = 0.0
    k = 0
    while True:
        total += term
        cdf.append(total)
        k += 1
        term *= lam / k
        if k > lam and 1.0 - total < 1e-12:
            return cdf


@dataclass(frozen=True, slots=True)
class PoissonRequests:
    """Requests arriving as a Poisson process, each costing ``cost_us`` of CPU.

    ``parallelism`` is how many requests can run at once (workers x threads): a period with
    many arrivals can spend the quota that many times faster than one thread.
    """

    rate_per_s: float
    cost_us: int
    parallelism: int = 1

    @property
    def threads(self) -> int:
        return self.parallelism

    @property
    def mean_cores(self) -> float:
        return self.rate_per_s * self.cost_us / US_PER_SECOND

    def periods(self, rng: random.Random, period_us: int = DEFAULT_PERIOD_US) -> Iterator[int]:
        lam = self.rate_per_s * period_us / US_PER_SECOND
        cost = self.cost_us
        if lam <= 0:
            while True:
                yield 0
        if lam > 500:
            # Normal approximation: the CDF table would be long and the shape is Gaussian.
            sd = math.sqrt(lam)
            while True:
                k = round(lam + sd * _NORMALS[rng.getrandbits(_NORMAL_BITS)])
                yield (k if k > 0 else 0) * cost
        cdf = _poisson_cdf(lam)
        last = len(cdf) - 1
        uniform = rng.random
        while True:
            k = bisect_right(cdf, uniform())
            yield (k if k < last else last) * cost


@dataclass(frozen=True, slots=True)
class Bursts:
    """A low base load plus a burst of ``burst_cores`` once every ``burst_every_periods``.

    Each cycle of ``burst_every_periods`` periods holds one burst of ``burst_len_periods``
    periods starting at a random offset (a cron tick, a GC, a fan-out request): on
    average it is cheap, but inside the burst it needs several cores for a moment.
    """

    base_cores: float
    burst_cores: float
    burst_every_periods: int
    burst_len_periods: int = 1
    threads: int = 4
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.burst_len_periods <= self.burst_every_periods:
            raise ValueError("need 0 < burst_len_periods <= burst_every_periods")

    @property
    def mean_cores(self) -> float:
        return self.base_cores + self.burst_cores * self.burst_len_periods / (
            self.burst_every_periods
        )

    def periods(self, rng: random.Random, period_us: int = DEFAULT_PERIOD_US) -> Iterator[int]:
        base_us = self.base_cores * period_us
        burst_us = round(self.burst_cores * period_us)
        sigma = self.jitter * base_us
        every = self.burst_every_periods
        length = self.burst_len_periods
        normals = _NORMALS
        bits = rng.getrandbits
        while True:
            start = rng.randrange(every - length + 1)
            for i in range(every):
                value = round(base_us + sigma * normals[bits(_NORMAL_BITS)])
                value = value if value > 0 else 0
                if start <= i < start + length:
                    value += burst_us
                yield value


@dataclass(frozen=True, slots=True)
class Threads:
    """``n_threads`` runnable threads, each wanting ``per_thread_cores`` while busy.

    Models a GIL-bound process (seed 001): only one thread runs Python at a time, but the
    others are runnable, get scheduled, spin on the GIL and are charged for it, so CFS sees
    ``n_threads x per_thread_cores`` of demand on ``n_threads`` runqueues while busy. The
    process alternates between busy and idle spells (a two-state Markov chain): busy for
    ``mean_busy_periods`` on average, busy a fraction ``busy_fraction`` of the time. Idle
    spells are why such a process can show ~75% throttled periods at ~30% usage of a
    1-core limit: the kernel only counts the periods in which the group was active.
    """

    n_threads: int
    per_thread_cores: float
    busy_fraction: float = 1.0
    mean_busy_periods: float = 1.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.n_threads <= 0:
            raise ValueError("n_threads must be positive")
        if not 0 < self.busy_fraction <= 1:
            raise ValueError("busy_fraction must be in (0, 1]")
        if self.mean_busy_periods < 1:
            raise ValueError("mean_busy_periods must be at least 1")

    @property
    def threads(self) -> int:
        return self.n_threads

    @property
    def mean_cores(self) -> float:
        return self.n_threads * self.per_thread_cores * self.busy_fraction

    def periods(self, rng: random.Random, period_us: int = DEFAULT_PERIOD_US) -> Iterator[int]:
        busy_us = self.n_threads * self.per_thread_cores * period_us
        if self.busy_fraction >= 1:
            while True:
                yield _jittered(rng, busy_us, self.jitter)
        # Busy -> idle with p = 1/L; idle -> busy with q chosen so that the stationary
        # busy fraction q / (p + q) equals busy_fraction.
        p_end = 1.0 / self.mean_busy_periods
        q_start = min(1.0, p_end * self.busy_fraction / (1.0 - self.busy_fraction))
        busy = rng.random() < self.busy_fraction
        while True:
            if busy:
                yield _jittered(rng, busy_us, self.jitter)
                busy = rng.random() >= p_end
            else:
                yield 0
                busy = rng.random() < q_start


def steady(mean_cores: float, jitter: float = 0.2, threads: int = 1) -> Steady:
    """A steady load of ``mean_cores`` (per-period noise ``jitter``) on ``threads``."""
    return Steady(mean_cores, jitter, threads)


def poisson_requests(rate_per_s: float, cost_us: int, parallelism: int = 1) -> PoissonRequests:
    """Poisson arrivals at ``rate_per_s``, ``cost_us`` of CPU each, ``parallelism`` wide."""
    return PoissonRequests(rate_per_s, cost_us, parallelism)


def bursts(
    base_cores: float,
    burst_cores: float,
    burst_every_periods: int,
    burst_len_periods: int = 1,
    *,
    threads: int = 4,
    jitter: float = 0.2,
) -> Bursts:
    """A base load with a ``burst_cores`` burst of ``burst_len_periods`` per cycle."""
    return Bursts(base_cores, burst_cores, burst_every_periods, burst_len_periods, threads, jitter)


def threads(
    n_threads: int,
    per_thread_cores: float,
    busy_fraction: float = 1.0,
    mean_busy_periods: float = 1.0,
    jitter: float = 0.1,
) -> Threads:
    """``n_threads`` runnable (GIL-spinning) threads of ``per_thread_cores`` each."""
    return Threads(n_threads, per_thread_cores, busy_fraction, mean_busy_periods, jitter)


# --------------------------------------------------------------------------------------
# Memory.


@dataclass(frozen=True, slots=True)
class RssModel:
    """Resident set size of a (pre-fork) Python server over its container's lifetime.

    ``rss = base + per_worker x workers + growth x hours since start``, plus a little
    noise. A pre-fork server's RSS grows with its worker count (each worker has its own
    heap). With a memory limit, a container whose RSS reaches it is OOM-killed and
    restarted: the RSS starts again from the base and the kill is counted.
    """

    base_bytes: int
    per_worker_bytes: int
    workers: int
    growth_bytes_per_hour: int = 0
    jitter_fraction: float = 0.01

    def rss_at(self, age_ms: int) -> int:
        """Noise-free RSS ``age_ms`` after the container started."""
        return (
            self.base_bytes
            + self.per_worker_bytes * self.workers
            + self.growth_bytes_per_hour * age_ms // MS_PER_HOUR
        )

    def lifetime_ms(self, limit_bytes: int | None) -> int | None:
        """How long a container lives before its RSS reaches ``limit_bytes`` (None: ever)."""
        if limit_bytes is None or self.growth_bytes_per_hour <= 0:
            return None
        headroom = limit_bytes - self.rss_at(0)
        if headroom <= 0:
            return 1
        return max(1, -(-headroom * MS_PER_HOUR // self.growth_bytes_per_hour))

    def samples(
        self,
        rng: random.Random,
        start_age_ms: int,
        step_ms: int,
        limit_bytes: int | None = None,
    ) -> Iterator[tuple[int, int]]:
        """``(rss_bytes, oom_kills_so_far)`` every ``step_ms``, from a container of age
        ``start_age_ms``. RSS never exceeds the limit: reaching it is the kill."""
        lifetime = self.lifetime_ms(limit_bytes)
        age = start_age_ms
        kills = 0
        if lifetime is not None:
            # A container older than its lifetime has already been killed and restarted.
            age = start_age_ms % lifetime
        while True:
            if lifetime is not None and age >= lifetime:
                age -= lifetime
                kills += 1
            rss = self.rss_at(age)
            noisy = rss + round(
                rss * self.jitter_fraction * _NORMALS[rng.getrandbits(_NORMAL_BITS)]
            )
            if limit_bytes is not None and noisy >= limit_bytes:
                noisy = limit_bytes - 4096
            yield max(0, noisy), kills
            age += step_ms


def rss_series(
    base_bytes: int,
    per_worker_bytes: int,
    workers: int,
    growth_bytes_per_hour: int = 0,
) -> RssModel:
    """RSS of ``workers`` worker processes over a ``base_bytes`` master, growing steadily."""
    return RssModel(base_bytes, per_worker_bytes, workers, growth_bytes_per_hour)
