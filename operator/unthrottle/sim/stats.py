"""The engine's input computed straight from a simulation, without Prometheus.

The Prometheus source computes the same statistics from the series that
:mod:`.openmetrics` renders; this module computes them from the simulator's counters
directly, so the projection of the demand model can be checked against the simulated
kernel (tests/unit/test_projection.py) and the benchmark can compare both paths. The
definitions match the Prometheus source's: usage percentiles over the per-step rate
series, throttle ratio = throttled periods / periods, active ratio = periods counted ×
period / window, unmet demand = throttled time / window (full data shape only).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from itertools import islice
from typing import Any

from unthrottle.model.stats import ContainerStats
from unthrottle.sim.cfs import StepStats, simulate_steps
from unthrottle.sim.scenarios import Scenario, pod_seed

__all__ = ["least_squares_slope", "nearest_rank", "scenario_stats"]

US_PER_SECOND = 1_000_000


def nearest_rank(sorted_values: Sequence[float], quantile: float) -> float:
    """The nearest-rank percentile of an ascending list (``quantile`` in [0, 1])."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(quantile * len(sorted_values)))
    return sorted_values[rank - 1]


def least_squares_slope(values: list[int], step: float) -> float:
    """The slope of the least-squares line through equally spaced values (per unit of step).

    What PromQL's ``deriv()`` computes over a range.
    """
    n = len(values)
    if n < 2:
        return 0.0
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    covariance = sum((i - mean_x) * (v - mean_y) for i, v in enumerate(values))
    variance = sum((i - mean_x) ** 2 for i in range(n))
    return covariance / variance / step


def scenario_stats(
    scenario: Scenario,
    seconds: int,
    *,
    step_seconds: int = 60,
    full_shape: bool = False,
    pod_index: int = 0,
) -> ContainerStats:
    """One replica's statistics over ``seconds``, sampled every ``step_seconds``."""
    group = scenario.cfs_group()
    step_periods = step_seconds * US_PER_SECOND // scenario.period_us
    n_steps = seconds // step_seconds
    rng = random.Random(pod_seed(scenario.seed, pod_index))
    demand = scenario.demand.periods(rng, scenario.period_us)
    steps = list(simulate_steps(demand, group, step_periods, n_steps))
    rss = _rss_samples(scenario, pod_index, step_seconds, n_steps)
    rss_sorted = sorted(rss)
    document = {
        "container": _container_document(scenario),
        "cpu": _cpu_document(scenario, steps, step_seconds, n_steps, full_shape=full_shape),
        "memory": {
            "rssBytes": {"p99": nearest_rank(rss_sorted, 0.99), "max": rss_sorted[-1]},
            "oomKills": scenario.oom_kills,
            "rssSlopeBytesPerSecond": least_squares_slope(rss, step_seconds),
        },
    }
    return ContainerStats.model_validate(document)


def _container_document(scenario: Scenario) -> dict[str, Any]:
    """The container's resources as the scenario configures them."""
    return {
        "name": scenario.container,
        "cpuRequest": scenario.cpu_request_m,
        "cpuLimit": scenario.cpu_limit_m,
        "memoryRequest": scenario.memory_request_bytes,
        "memoryLimit": scenario.memory_limit_bytes,
        "cpuBurstUs": scenario.burst_us,
        "webConcurrency": scenario.web_concurrency,
        "threads": scenario.threads,
    }


def _cpu_document(
    scenario: Scenario,
    steps: Sequence[StepStats],
    step_seconds: int,
    n_steps: int,
    *,
    full_shape: bool,
) -> dict[str, Any]:
    """CPU statistics from the simulated kernel's counters of every step."""
    rates = sorted(step.usage_us / (step_seconds * US_PER_SECOND) for step in steps)
    periods = sum(step.nr_periods for step in steps)
    throttled = sum(step.nr_throttled for step in steps)
    throttled_time = sum(step.throttled_time_us for step in steps)
    window_us = n_steps * step_seconds * US_PER_SECOND
    return {
        "usageCores": {
            "p50": nearest_rank(rates, 0.5),
            "p95": nearest_rank(rates, 0.95),
            "p99": nearest_rank(rates, 0.99),
            "p999": nearest_rank(rates, 0.999),
            "p9999": nearest_rank(rates, 0.9999),
            "max": rates[-1],
            "mean": sum(rates) / len(rates),
        },
        "throttledPeriodRatio": throttled / periods if periods else 0.0,
        "throttledSecondsPerSecond": throttled_time / window_us if full_shape else None,
        "activePeriodRatio": max(1e-6, min(1.0, periods * scenario.period_us / window_us)),
        "samples": len(steps),
        "windowSeconds": n_steps * step_seconds,
        "stepSeconds": step_seconds,
        "cfsPeriodUs": scenario.period_us if full_shape else None,
    }


def _rss_samples(scenario: Scenario, pod_index: int, step_seconds: int, n_steps: int) -> list[int]:
    """The replica's RSS at every step, from its own memory random stream."""
    memory_rng = random.Random(pod_seed(scenario.seed, pod_index) + 1)
    return [
        value
        for value, _ in islice(
            scenario.memory.samples(
                memory_rng,
                scenario.container_age_ms,
                step_seconds * 1000,
                scenario.memory_limit_bytes,
            ),
            n_steps,
        )
    ]
