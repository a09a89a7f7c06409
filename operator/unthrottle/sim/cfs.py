"""The kernel model: CFS bandwidth control of one cgroup, as ``cpu.stat`` reports it.

This module owns the rules by which quota, period and burst turn CPU demand into usage,
throttled periods and throttled time. Everything else in :mod:`unthrottle.sim` (workloads,
scenarios, the OpenMetrics writer) feeds demand in here and reads counters out.

The cgroup
    A quota ``Q`` µs of CPU time per period ``P`` µs (``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``, cgroup v2 ``cpu.max``; a Kubernetes limit of ``400m`` is
    ``40_000 100_000``) and an optional burst ``B`` µs (``cpu.cfs_burst_us``, v2
    ``cpu.max.burst``). At each period boundary the kernel refills the pool:
    ``runtime = min(leftover + Q, Q + B)`` (``__refill_cfs_bandwidth_runtime``), so unused
    quota accumulates as *credit* up to ``B`` and the runtime available in a period is
    ``Q + credit``. Without burst the leftover is simply lost.

The counters (cgroup v1 ``cpu.stat``; v2 has the same three under ``_usec`` names)
    ``nr_periods``
        Periods in which the period timer fired. The timer runs while the group is active
        and stops after one period without any runnable work, so a period counts if the
        group had runnable work in it *or in the period before* (one trailing idle period
        per burst of activity). Periods while the group is idle longer are not counted,
        which is why a mostly idle service can show a high throttled-period ratio.
        A group without a quota has no timer and no counters at all (cAdvisor then exports
        no ``container_cpu_cfs_*`` series).
    ``nr_throttled``
        Periods at whose end some runqueue of the group was throttled (the timer adds one
        per period while the throttled list is non-empty).
    ``throttled_time``
        Wall time spent throttled, **summed over runqueues**: the kernel throttles each
        CPU's runqueue of the group separately and, when the next period unthrottles it,
        adds ``now - throttled_clock`` for that runqueue (``unthrottle_cfs_rq``). Only a
        runqueue with runnable work of the group is throttled; an idle CPU is not. So a
        period that runs out of quota at wall time ``t`` while ``n`` runqueues still have
        runnable work adds ``n * (P - t)``. The seed's worked examples check it:
        0.4 CPU, one thread: 4 x (100 - 40) = 240 ms; 1.9 CPUs, two threads: quota gone
        at 95 ms on both CPUs, 2 x 5 = 10 ms per period, 100 ms in 10 periods; 10 threads
        at 2 CPUs: 2 periods x 10 runqueues x 80 ms = 1,600 ms (the wall clock was
        throttled for only 160 ms).

cAdvisor exports these unchanged: ``container_cpu_cfs_periods_total = nr_periods``,
``container_cpu_cfs_throttled_periods_total = nr_throttled`` and
``container_cpu_cfs_throttled_seconds_total = throttled_time / 1e9`` (v1 reports
nanoseconds, v2 ``throttled_usec``). Because of the per-runqueue sum,
``rate(container_cpu_cfs_throttled_seconds_total)`` can exceed 1: it is the average number
of runqueues waiting out a throttle, not a fraction of wall time.

Simplifications, on purpose: runtime is drawn from the pool continuously (the kernel hands
it to CPUs in 5 ms slices, which can throttle a little before the pool is empty); threads
share CPUs fairly and fluidly; and burst credit accrues in every period, idle or not (the
kernel stops refilling once its timer goes idle, which only matters when ``B > Q``).

Two entry points: :func:`run_job`, exact and event-level, for small worked examples; and
:func:`simulate` / :func:`simulate_steps`, per period, for windows of days.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import islice

__all__ = [
    "DEFAULT_PERIOD_US",
    "CfsGroup",
    "JobResult",
    "PeriodStats",
    "StepStats",
    "run_job",
    "simulate",
    "simulate_steps",
]

DEFAULT_PERIOD_US = 100_000


# --------------------------------------------------------------------------------------
# Exact, event-level: one job of runnable threads.


@dataclass(frozen=True, slots=True)
class JobResult:
    """``cpu.stat`` after one job, read at the end of the period in which it finished.

    ``periods`` counts the periods the job ran in, as the seed's worked examples read it;
    the kernel's timer would add one more (idle) period if read later.
    ``completion_us`` is rounded up to a whole microsecond.
    """

    completion_us: int
    periods: int
    throttled_periods: int
    throttled_time_us: int
    usage_us: int


def _ceil(value: Fraction) -> int:
    return -((-value.numerator) // value.denominator)


def run_job(
    work_us_per_thread: list[int],
    quota_us: int | None,
    period_us: int = DEFAULT_PERIOD_US,
    cpus: int | None = None,
    burst_us: int = 0,
) -> JobResult:
    """Run threads that are all runnable at time 0 until each has had its CPU work.

    ``work_us_per_thread[i]`` is the CPU time thread ``i`` needs. Up to ``min(threads,
    cpus)`` threads run at once (``cpus=None``: one CPU per thread); when more threads
    than CPUs are runnable they share the CPUs fairly. ``quota_us=None`` is no limit.
    Arithmetic is exact (fractions): events are a thread finishing, the period's runtime
    running out, and the period boundary.

    Seed 002, example 1: ``run_job([200_000], 40_000)`` runs 40 ms in each period and is
    throttled for the other 60 ms of the first four: done at 440 ms, 5 periods,
    4 throttled, 240 ms throttled. Example 3.2.2: ``run_job([50_000] * 10, 200_000)``
    runs 10 threads x 20 ms per period, twice throttled for 80 ms on 10 runqueues, then
    10 ms: done at 210 ms, 3 periods, 2 throttled, 1,600 ms throttled.
    """
    # One function on purpose: an event loop whose state (time, runtime left in the
    # period, each thread's work) every step reads and writes; split, it would travel
    # between the pieces as arguments.
    if period_us <= 0:
        raise ValueError("period_us must be positive")
    if quota_us is not None and quota_us <= 0:
        raise ValueError("quota_us must be positive or None")
    if burst_us < 0:
        raise ValueError("burst_us must not be negative")
    remaining = [Fraction(w) for w in work_us_per_thread if w > 0]
    if cpus is None:
        cpus = max(1, len(remaining))
    if cpus <= 0:
        raise ValueError("cpus must be positive")
    if not remaining:
        return JobResult(0, 0, 0, 0, 0)

    usage = Fraction(0)
    throttled_time = Fraction(0)
    periods = 0
    throttled_periods = 0
    credit = Fraction(0)
    completion = Fraction(0)
    period_start = Fraction(0)
    while remaining:
        period_end = period_start + period_us
        runtime = None if quota_us is None else quota_us + credit
        now = period_start
        throttled = False
        while remaining and now < period_end:
            n = len(remaining)
            width = min(n, cpus)
            # Fair sharing: each runnable thread progresses at width/n CPU-µs per µs.
            dt = min(remaining) * n / width
            dt = min(dt, period_end - now)
            if runtime is not None:
                dt = min(dt, runtime / width)
            progress = dt * width / n
            remaining = [r - progress for r in remaining if r - progress > 0]
            usage += dt * width
            now += dt
            if runtime is not None:
                runtime -= dt * width
                if runtime == 0 and remaining and now < period_end:
                    # Out of quota with work left: every runqueue that still has a runnable
                    # thread of the group waits for the boundary.
                    throttled = True
                    throttled_time += (period_end - now) * min(len(remaining), cpus)
                    break
        periods += 1
        throttled_periods += throttled
        if not remaining:
            completion = now
        if runtime is not None:
            credit = min(Fraction(burst_us), runtime)
        period_start = period_end
    return JobResult(
        completion_us=_ceil(completion),
        # Without a quota the kernel runs no period timer: no periods are counted.
        periods=periods if quota_us is not None else 0,
        throttled_periods=throttled_periods,
        throttled_time_us=_ceil(throttled_time),
        usage_us=_ceil(usage),
    )


# --------------------------------------------------------------------------------------
# Per period: demand arrives per period, for long windows.


@dataclass(slots=True)
class CfsGroup:
    """One cgroup's bandwidth settings and the state carried from period to period.

    Per period, with ``D`` = demand arriving in the period plus backlog, ``R = Q + credit``
    and ``C = max_parallel_us`` (the CPU time the group's runnable threads could use in one
    period: threads x ``P``, bounded by the node's CPUs):

    - usage ``= min(D, R, C)``;
    - throttled iff ``D > R`` and ``C > R``: the work needed more than the runtime and its
      threads were wide enough to spend the runtime before the boundary. (``D > C >= R``
      is a backlog from too few threads, not throttling.)
    - throttled time ``= C - R``: the fluid model of the module docstring with
      ``w = C / P`` runqueues busy from the start of the period, out of runtime at
      ``t = R / w``, each waiting ``P - t``: ``w * (P - R / w) = C - R``. This is an upper
      bound when fewer threads remain runnable near the end of the period.
    - ``max_parallel_us=None``: the period's work is taken to be spread over just enough
      threads to finish within it, ``w = ceil(D / P)``; no cap on usage, and throttled
      time ``w * P - R``.

    Unserved demand carries over as backlog when ``carry_over`` (capped at
    ``backlog_limit_us``: clients time out and queues are bounded), else it is dropped.
    """

    quota_us: int | None
    period_us: int = DEFAULT_PERIOD_US
    burst_us: int = 0
    max_parallel_us: int | None = None
    carry_over: bool = True
    backlog_limit_us: int | None = None
    backlog_us: int = 0
    credit_us: int = 0
    previous_active: bool = False

    def __post_init__(self) -> None:
        if self.period_us <= 0:
            raise ValueError("period_us must be positive")
        if self.quota_us is not None and self.quota_us <= 0:
            raise ValueError("quota_us must be positive or None")
        if self.burst_us < 0:
            raise ValueError("burst_us must not be negative")
        if self.max_parallel_us is not None and self.max_parallel_us <= 0:
            raise ValueError("max_parallel_us must be positive or None")

    def run(self, demand_us: Iterable[int]) -> tuple[int, int, int, int, int]:
        """Advance through one period per demand element.

        Returns ``(periods_run, usage_us, nr_periods, nr_throttled, throttled_time_us)``
        for those periods and keeps the backlog, credit and timer state for the next call.
        The loop is written for speed (locals only, no calls): 6,048,000 periods (7 days)
        take a few seconds.
        """
        # The hot loop of every simulation, kept in one frame: locals, not attributes.
        period = self.period_us
        quota = self.quota_us
        burst = self.burst_us
        cap = self.max_parallel_us
        carry = self.carry_over
        limit = self.backlog_limit_us
        backlog = self.backlog_us
        credit = self.credit_us
        previous = self.previous_active
        n = usage = counted = throttled = throttled_time = 0
        if quota is None:
            # No quota: no CFS timer, no counters; only parallelism bounds the usage.
            for d in demand_us:
                n += 1
                work = backlog + d
                serve = work if cap is None or work < cap else cap
                usage += serve
                backlog = work - serve if carry else 0
                if limit is not None and backlog > limit:
                    backlog = limit
        else:
            for d in demand_us:
                n += 1
                work = backlog + d
                runtime = quota + credit
                if work <= 0:
                    # Idle: the timer fires once more (counted) and then stops.
                    if previous:
                        counted += 1
                        previous = False
                    credit = (runtime if runtime < burst else burst) if burst else 0
                    backlog = 0
                    continue
                counted += 1
                previous = True
                if cap is None:
                    if work > runtime:
                        serve = runtime
                        throttled += 1
                        throttled_time += -(-work // period) * period - runtime
                    else:
                        serve = work
                else:
                    serve = work if work < cap else cap
                    serve = min(serve, runtime)
                    if work > runtime and cap > runtime:
                        throttled += 1
                        throttled_time += cap - runtime
                usage += serve
                if burst:
                    left = runtime - serve
                    credit = left if left < burst else burst
                backlog = work - serve if carry else 0
                if limit is not None and backlog > limit:
                    backlog = limit
        self.backlog_us = backlog
        self.credit_us = credit
        self.previous_active = previous
        return n, usage, counted, throttled, throttled_time


@dataclass(slots=True)
class PeriodStats:
    """Totals of a per-period simulation, as ``cpu.stat`` would read at the end.

    The per-period arrays are filled only with ``keep_periods=True`` (8 bytes per period
    each): ``usage_us[i]``, ``throttled[i]`` (0/1), ``throttled_time_us[i]`` and
    ``counted[i]`` (0/1: whether period ``i`` added to ``nr_periods``).
    """

    periods_simulated: int = 0
    nr_periods: int = 0
    nr_throttled: int = 0
    throttled_time_us: int = 0
    usage_us: int = 0
    usage_per_period_us: array[int] = field(default_factory=lambda: array("q"))
    throttled: array[int] = field(default_factory=lambda: array("b"))
    throttled_time_per_period_us: array[int] = field(default_factory=lambda: array("q"))
    counted: array[int] = field(default_factory=lambda: array("b"))

    @property
    def throttle_ratio(self) -> float:
        """``nr_throttled / nr_periods`` (0.0 when no period was counted)."""
        return self.nr_throttled / self.nr_periods if self.nr_periods else 0.0

    def mean_cores(self, period_us: int = DEFAULT_PERIOD_US) -> float:
        """Average usage in cores over all simulated periods."""
        if not self.periods_simulated:
            return 0.0
        return self.usage_us / (self.periods_simulated * period_us)


_CHUNK = 8192


def simulate(
    demand_us: Iterable[int],
    quota_us: int | None,
    period_us: int = DEFAULT_PERIOD_US,
    *,
    burst_us: int = 0,
    carry_over: bool = True,
    max_parallel_us: int | None = None,
    backlog_limit_us: int | None = None,
    keep_periods: bool = False,
) -> PeriodStats:
    """Simulate one period per element of ``demand_us`` (CPU µs arriving in that period).

    The rules are those of :class:`CfsGroup`. ``quota_us=None`` is no limit: never
    throttled and, as in the kernel, no periods counted. With ``keep_periods`` the result
    also holds per-period arrays (slower: a call per period).

    Seed 002 example 1 in this model: ``simulate([200_000, 0, 0, 0, 0], 40_000,
    max_parallel_us=100_000)`` serves 40 ms per period from the backlog; periods 1-4 end
    with work left (throttled, 100 - 40 = 60 ms each), period 5 uses its 40 ms exactly:
    5 periods, 4 throttled, 240 ms.
    """
    group = CfsGroup(
        quota_us=quota_us,
        period_us=period_us,
        burst_us=burst_us,
        max_parallel_us=max_parallel_us,
        carry_over=carry_over,
        backlog_limit_us=backlog_limit_us,
    )
    stats = PeriodStats()
    iterator = iter(demand_us)
    if keep_periods:
        for d in iterator:
            _, usage, counted, throttled, throttled_time = group.run((d,))
            stats.usage_per_period_us.append(usage)
            stats.throttled.append(throttled)
            stats.throttled_time_per_period_us.append(throttled_time)
            stats.counted.append(counted)
            stats.periods_simulated += 1
            stats.usage_us += usage
            stats.nr_periods += counted
            stats.nr_throttled += throttled
            stats.throttled_time_us += throttled_time
        return stats
    while True:
        chunk = list(islice(iterator, _CHUNK))
        if not chunk:
            return stats
        n, usage, counted, throttled, throttled_time = group.run(chunk)
        stats.periods_simulated += n
        stats.usage_us += usage
        stats.nr_periods += counted
        stats.nr_throttled += throttled
        stats.throttled_time_us += throttled_time


@dataclass(frozen=True, slots=True)
class StepStats:
    """Increments of the ``cpu.stat`` counters over one scrape step (integers)."""

    usage_us: int
    nr_periods: int
    nr_throttled: int
    throttled_time_us: int


def simulate_steps(
    demand_us: Iterator[int],
    group: CfsGroup,
    step_periods: int,
    n_steps: int,
    sample_periods: int | None = None,
) -> Iterator[StepStats]:
    """Counter increments per scrape step: what the OpenMetrics writer needs.

    Each step is ``step_periods`` periods (60 s at 100 ms is 600). With
    ``sample_periods=None`` every period is simulated. With ``sample_periods=k < step``,
    only ``k`` consecutive periods of the demand process are simulated per step and the
    counters are scaled by ``step / k`` (rounded to integers): a stationary process gives
    unbiased totals at ``k / step`` of the cost, with extra noise per step. Demand
    processes are consumed ``k`` periods per step, so their clock runs ``k / step`` as
    fast; the scenarios' processes are stationary, which makes that harmless.
    """
    if step_periods <= 0 or n_steps < 0:
        raise ValueError("step_periods must be positive and n_steps not negative")
    k = step_periods if sample_periods is None else min(sample_periods, step_periods)
    if k <= 0:
        raise ValueError("sample_periods must be positive")
    for _ in range(n_steps):
        _, usage, counted, throttled, throttled_time = group.run(islice(demand_us, k))
        if k == step_periods:
            yield StepStats(usage, counted, throttled, throttled_time)
        else:
            yield StepStats(
                usage * step_periods // k,
                (counted * step_periods + k // 2) // k,
                (throttled * step_periods + k // 2) // k,
                throttled_time * step_periods // k,
            )
