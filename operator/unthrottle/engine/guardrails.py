"""Guardrails: the pure rules that decide whether data is enough and a change is worth it.

A patch is a rollout of someone's service, so a recommendation reaches a Deployment only
through these: enough history, bounds, hysteresis (is the change worth a rollout), step
limits per patch, a cooldown between patches and a cap on rollouts at once. Time is an
argument (milliseconds since the epoch); nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from unthrottle.model.policy import HistoryPolicy, PatchPolicy
from unthrottle.model.quantity import MILLICORES_PER_CORE, format_duration, format_millicores
from unthrottle.model.recommendation import NoRecommendation, NoRecommendationReason
from unthrottle.model.stats import ContainerStats, CpuStats

__all__ = [
    "apply_step_limit",
    "check_history",
    "check_settling",
    "clamp",
    "cooldown_remaining_ms",
    "coverage",
    "is_worth_rollout",
    "relative_change",
    "rollout_slots",
    "whole_cores_step",
]


def coverage(cpu: CpuStats) -> float:
    """The fraction of the window the samples cover: samples × step / window (at most 1)."""
    return min(1.0, cpu.samples * cpu.step_seconds / cpu.window_seconds)


def check_history(cpu: CpuStats, history: HistoryPolicy) -> NoRecommendation | None:
    """``insufficient-data`` when there are too few samples or too little of the window."""
    covered = coverage(cpu)
    if cpu.samples < history.min_samples:
        message = (
            f"{cpu.samples} samples in the window, the policy needs at least "
            f"{history.min_samples} (history.minSamples)"
        )
    elif covered < history.min_coverage:
        message = (
            f"samples cover {covered:.0%} of the window, the policy needs "
            f"{history.min_coverage:.0%} (history.minCoverage)"
        )
    else:
        return None
    return NoRecommendation(reason=NoRecommendationReason.INSUFFICIENT_DATA, message=message)


def samples_needed(cpu: CpuStats, history: HistoryPolicy) -> int:
    """The samples the policy needs: history.minSamples, and enough to cover minCoverage."""
    for_coverage = math.ceil(history.min_coverage * cpu.window_seconds / cpu.step_seconds)
    return max(history.min_samples, for_coverage)


def check_settling(stats: ContainerStats, history: HistoryPolicy) -> NoRecommendation | None:
    """``settling`` or ``insufficient-data`` when the current configuration is too new.

    With earlier configurations in the window (a patch or an edit happened), too little
    history of the current one is *settling*: the time left is (samples needed − samples
    seen) × step. Without them it is plain ``insufficient-data``.
    """
    insufficient = check_history(stats.cpu, history)
    if insufficient is None or not stats.history:
        return insufficient
    cpu, container = stats.cpu, stats.container
    needed = samples_needed(cpu, history)
    left_ms = max(0, needed - cpu.samples) * cpu.step_seconds * 1000
    request = (
        "no request" if container.cpu_request is None else format_millicores(container.cpu_request)
    )
    limit = "no limit" if container.cpu_limit is None else format_millicores(container.cpu_limit)
    message = (
        f"the configuration applied last (cpu {request}/{limit}) has {cpu.samples} of "
        f"{needed} samples of its own; about {format_duration(left_ms)} more"
    )
    return NoRecommendation(reason=NoRecommendationReason.SETTLING, message=message)


def clamp(value: int, low: int | None, high: int | None) -> int:
    """``value`` within [low, high]; a missing bound does not bind."""
    if low is not None:
        value = max(value, low)
    if high is not None:
        value = min(value, high)
    return value


def relative_change(current: int | None, recommended: int | None) -> float:
    """|recommended − current| / current; adding or removing a value counts as 100%."""
    if current == recommended:
        return 0.0
    if current is None or recommended is None or current == 0:
        return 1.0
    return abs(recommended - current) / current


def is_worth_rollout(pairs: Iterable[tuple[int | None, int | None]], patch: PatchPolicy) -> bool:
    """Hysteresis: roll out only when some value moves by at least ``patch.minChange``.

    A value that does not move never counts, even with ``minChange: 0``.
    """
    return any(
        current != new and relative_change(current, new) >= patch.min_change
        for current, new in pairs
    )


def apply_step_limit(current: int | None, recommended: int, patch: PatchPolicy) -> int:
    """At most ×maxStepUp or ×maxStepDown of the current value in one patch.

    Example: current 300m, recommended 1080m, maxStepUp 2 → 600m this time; the next pass,
    measuring at 600m, takes the rest of the way if it is still needed.
    """
    if not current:  # no value, or 0 (a multiple of 0 is no step): nothing to step from
        return recommended
    highest = math.floor(current * patch.max_step_up)
    lowest = math.ceil(current * patch.max_step_down)
    return clamp(recommended, max(lowest, 1), max(highest, 1))


def step(
    current: int | None,
    recommended: int,
    patch: PatchPolicy,
    *,
    band: tuple[int, int] | None = None,
) -> int:
    """The value one patch writes: within the step limits, and never a small decrease.

    A decrease of at most ``patch.minChange`` is window-to-window noise: the current value
    is kept, so a patch made for another value does not drag this one down and back up
    (request 560m, recommended 530m at a 10% minChange: 560m stays). An increase is
    written whatever its size: a higher value is the safe side of noise.

    With a ``band`` (a CPU request's, from the tier's neighbouring percentiles,
    :mod:`.tiers`), a current value inside it is kept as well: the evidence still
    supports it. Dev tier, one worker of 8 threads unthrottled at 2 cores: the p95 of
    demand reads 570m, 510m and 610m in three windows, the band about 290m–640m; a
    request of 570m stays through all three instead of going 570m → 510m → 610m.
    """
    if current and band is not None and band[0] <= current <= band[1]:
        return current
    stepped = apply_step_limit(current, recommended, patch)
    if current and stepped < current and relative_change(current, stepped) <= patch.min_change:
        return current
    return stepped


def whole_cores_step(current: int | None, limit: int, floor: int, patch: PatchPolicy) -> int:
    """A stepped CPU limit in whole cores, for workers that read it (millicores).

    Up to the next core, unless that passes the step limit from ``current``; then down to
    the core below, if that still holds ``floor`` (the request) and one core. Current 600m,
    recommended 2 cores, maxStepUp 2: stepped 1200m → 1 core (2 cores would be × 3.3, and
    double the workers). Current 300m: 600m → 1 core, the least a worker count can read.
    """
    if limit % MILLICORES_PER_CORE == 0:
        return limit
    up = limit - limit % MILLICORES_PER_CORE + MILLICORES_PER_CORE
    down = up - MILLICORES_PER_CORE
    within_step = not current or up <= math.floor(current * patch.max_step_up)
    if within_step or down < max(floor, MILLICORES_PER_CORE):
        return up
    return down


def cooldown_remaining_ms(last_patched_ms: int | None, now_ms: int, cooldown_ms: int) -> int:
    """Milliseconds until a workload may be patched again (0 when it may be now)."""
    if last_patched_ms is None:
        return 0
    return max(0, last_patched_ms + cooldown_ms - now_ms)


def rollout_slots(rollouts_in_progress: int, patch: PatchPolicy) -> int:
    """How many more rollouts may start now under ``patch.maxConcurrentRollouts``."""
    return max(0, patch.max_concurrent_rollouts - rollouts_in_progress)
