"""Guardrails: history, bounds, hysteresis, step limits, cooldown and rollout slots.

Numbers are worked by hand in the comments from the rules of engine/guardrails.py and
docs/recommendations.md ("Guardrails for patching", "No recommendation").
"""

from __future__ import annotations

from typing import Any

import pytest

from unthrottle.engine.guardrails import (
    apply_step_limit,
    check_history,
    clamp,
    cooldown_remaining_ms,
    coverage,
    is_worth_rollout,
    relative_change,
    rollout_slots,
    step,
    whole_cores_step,
)
from unthrottle.model.policy import HistoryPolicy, PatchPolicy
from unthrottle.model.recommendation import NoRecommendation, NoRecommendationReason
from unthrottle.model.stats import CpuStats

WEEK = 604_800
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def cpu(samples: int, window_seconds: int = WEEK, step_seconds: int = 300) -> CpuStats:
    return CpuStats.model_validate(
        {
            "usageCores": {"p50": 0.1, "p95": 0.2, "p99": 0.3, "max": 0.4},
            "throttledPeriodRatio": 0.0,
            "samples": samples,
            "windowSeconds": window_seconds,
            "stepSeconds": step_seconds,
        }
    )


# --------------------------------------------------------------------------- history


@pytest.mark.parametrize(
    ("samples", "window", "step", "expected"),
    [
        (2016, WEEK, 300, 1.0),  # 2016 × 300 = 604800: the whole week
        (1008, WEEK, 300, 0.5),  # 302400 / 604800
        (100, WEEK, 300, 30_000 / WEEK),  # 4.96%, the docs' example
        (5000, WEEK, 300, 1.0),  # more samples than steps: capped at 1
        (5040, WEEK, 60, 0.5),  # 5040 × 60 = 302400
        (0, WEEK, 300, 0.0),
    ],
)
def test_coverage(samples: int, window: int, step: int, expected: float) -> None:
    assert coverage(cpu(samples, window, step)) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("samples", "window", "history", "field"),
    [
        (9, 3000, {}, "history.minSamples"),  # 9 < 10 (coverage 9 × 300 / 3000 = 90%)
        (0, WEEK, {}, "history.minSamples"),
        (1000, WEEK, {}, "history.minCoverage"),  # 300000 / 604800 = 49.6% < 50%
        (100, WEEK, {}, "history.minCoverage"),  # 5% (the docs' example)
        (1500, WEEK, {"minCoverage": 0.8}, "history.minCoverage"),  # 74.4% < 80%
        (499, WEEK, {"minSamples": 500}, "history.minSamples"),
    ],
)
def test_check_history_insufficient(
    samples: int, window: int, history: dict[str, Any], field: str
) -> None:
    result = check_history(cpu(samples, window), HistoryPolicy.model_validate(history))
    assert isinstance(result, NoRecommendation)
    assert result.reason is NoRecommendationReason.INSUFFICIENT_DATA
    assert field in result.message


@pytest.mark.parametrize(
    ("samples", "window", "history"),
    [
        (10, 3000, {}),  # exactly minSamples, coverage 10 × 300 / 3000 = 100%
        (1008, WEEK, {}),  # exactly 50%: "at least", not "more than"
        (2016, WEEK, {}),
        (10, WEEK, {"minCoverage": 0.0}),  # coverage 0.5% but the policy does not ask
        (1, 300, {"minSamples": 1}),
        (1613, WEEK, {"minCoverage": 0.8}),  # 1613 × 300 / 604800 = 80.01%
    ],
)
def test_check_history_enough(samples: int, window: int, history: dict[str, Any]) -> None:
    assert check_history(cpu(samples, window), HistoryPolicy.model_validate(history)) is None


# --------------------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("value", "low", "high", "expected"),
    [
        (5, 1, 10, 5),
        (0, 1, 10, 1),
        (11, 1, 10, 10),
        (5, None, None, 5),
        (5, 7, None, 7),
        (5, None, 3, 3),
        (10, 10, 10, 10),
        (2000, 10, None, 2000),  # the default minRequest 10m and no maxRequest
    ],
)
def test_clamp(value: int, low: int | None, high: int | None, expected: int) -> None:
    assert clamp(value, low, high) == expected


# --------------------------------------------------------------------------- hysteresis


@pytest.mark.parametrize(
    ("current", "recommended", "expected"),
    [
        (100, 110, 0.1),
        (100, 90, 0.1),  # the size of the move, up or down
        (300, 1080, 2.6),  # 780 / 300
        (2000, 100, 0.95),  # 1900 / 2000
        (1000, 1000, 0.0),
        (None, None, 0.0),
        (None, 500, 1.0),  # adding a limit is a full change
        (500, None, 1.0),  # removing one too
        (0, 5, 1.0),  # nothing to divide by
        (0, 0, 0.0),
    ],
)
def test_relative_change(current: int | None, recommended: int | None, expected: float) -> None:
    assert relative_change(current, recommended) == pytest.approx(expected)


DEFAULT_PATCH = PatchPolicy()


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([(1000, 1099)], False),  # 9.9% < 10%
        ([(1000, 1100)], True),  # exactly 10%: "at least"
        ([(1000, 901)], False),  # 9.9% down
        ([(1000, 900)], True),  # 10% down
        ([(1000, 1050), (500, 560)], True),  # 5% and 12%: one value is enough
        ([(1000, 1050), (500, 520)], False),  # 5% and 4%
        ([], False),
        ([(None, 500)], True),  # a new limit
        ([(500, None)], True),  # a removed limit
        ([(None, None), (250, 250)], False),
        ([(300, 1080)], True),  # 260%
    ],
)
def test_is_worth_rollout_default_hysteresis(
    pairs: list[tuple[int | None, int | None]], expected: bool
) -> None:
    assert DEFAULT_PATCH.min_change == pytest.approx(0.10)  # the documented default
    assert is_worth_rollout(pairs, DEFAULT_PATCH) is expected


@pytest.mark.parametrize(
    ("min_change", "pairs", "expected"),
    [
        (0.15, [(1000, 1140)], False),  # 14% < 15%
        (0.15, [(1000, 1150)], True),
        (0.0, [(1000, 1001)], True),  # any move at all
        (0.0, [(1000, 1000), (None, None)], False),  # no move is never worth a rollout
        (1.0, [(1000, 1999)], False),  # 99.9%
        (1.0, [(1000, 2000)], True),  # 100%
    ],
)
def test_is_worth_rollout_min_change(
    min_change: float, pairs: list[tuple[int | None, int | None]], expected: bool
) -> None:
    assert is_worth_rollout(pairs, PatchPolicy(min_change=min_change)) is expected


# --------------------------------------------------------------------------- step limits


@pytest.mark.parametrize(
    ("current", "recommended", "patch", "expected"),
    [
        (300, 1080, {}, 600),  # × maxStepUp 2: 300 × 2 = 600
        (2000, 100, {}, 500),  # × maxStepDown 0.25: 2000 × 0.25 = 500
        (2000, 90, {}, 500),  # the docs' example
        (300, 500, {}, 500),  # within [150, 600]: unchanged
        (300, 75, {}, 75),  # exactly a quarter is allowed
        (300, 600, {}, 600),  # exactly double is allowed
        (None, 1080, {}, 1080),  # nothing to step from
        (0, 500, {}, 500),  # requests.cpu: 0 is valid; ×2 of 0 would pin it at 1m
        (1000, 5000, {"maxStepUp": 1.5}, 1500),
        (1000, 100, {"maxStepDown": 0.75}, 750),
        (3, 1, {"maxStepDown": 0.5}, 2),  # 3 × 0.5 = 1.5, rounded up: never below it
        (5, 100, {}, 10),  # 5 × 2 = 10
        (333, 1000, {"maxStepUp": 1.5}, 499),  # 333 × 1.5 = 499.5, rounded down
        (1, 1, {}, 1),
        (536_870_912, 2**31, {}, 2**30),  # bytes too: 512Mi × 2 = 1Gi
    ],
)
def test_apply_step_limit(
    current: int | None, recommended: int, patch: dict[str, Any], expected: int
) -> None:
    assert apply_step_limit(current, recommended, PatchPolicy.model_validate(patch)) == expected


@pytest.mark.parametrize(
    ("current", "recommended", "expected"),
    [
        (560, 530, 560),  # −5.4% at minChange 10%: noise, kept
        (100, 90, 100),  # exactly −10%: kept
        (100, 89, 89),  # −11%: written
        (500, 560, 560),  # an increase is written whatever its size
        (500, 505, 505),
        (2000, 90, 500),  # a big decrease still within the step limit
        (None, 90, 90),  # nothing to keep
    ],
)
def test_step_keeps_small_decreases(current: int | None, recommended: int, expected: int) -> None:
    assert step(current, recommended, PatchPolicy()) == expected


@pytest.mark.parametrize(
    ("current", "recommended", "expected"),
    [
        (570, 510, 570),  # the next window's p95 is lower: inside the band, kept
        (570, 610, 570),  # ... or higher: kept too (no 510m → 610m ping-pong)
        (280, 610, 280),  # the band's bottom is inside
        (640, 510, 640),  # and its top
        (270, 610, 540),  # under the band: moves, within the step limits (× 2)
        (2000, 510, 510),  # above it: cut to the request
        (690, 630, 690),  # above it, but a decrease within minChange is still noise
        (None, 510, 510),  # nothing to keep
    ],
)
def test_a_request_inside_its_band_is_kept(
    current: int | None, recommended: int, expected: int
) -> None:
    assert step(current, recommended, PatchPolicy(), band=(280, 640)) == expected


# --------------------------------------------------------------------------- cooldown, slots


@pytest.mark.parametrize(
    ("last", "now", "cooldown", "expected"),
    [
        (None, 10_000, DAY_MS, 0),  # never patched
        (1000, 1500, 1000, 500),  # 1000 + 1000 − 1500
        (1000, 2000, 1000, 0),  # exactly over
        (1000, 5000, 1000, 0),  # long over: 0, not negative
        (0, HOUR_MS, DAY_MS, 23 * HOUR_MS),  # the default 24h, one hour in
        (5000, 5000, 0, 0),  # no cooldown
        (5000, 4000, 1000, 2000),  # a clock behind the last patch still waits
    ],
)
def test_cooldown_remaining_ms(last: int | None, now: int, cooldown: int, expected: int) -> None:
    assert cooldown_remaining_ms(last, now, cooldown) == expected


def test_default_cooldown_is_a_day() -> None:
    assert PatchPolicy().cooldown == DAY_MS  # "24h" → 86400000 ms


@pytest.mark.parametrize(
    ("in_progress", "max_concurrent", "expected"),
    [
        (0, 1, 1),  # the default: one rollout at a time
        (1, 1, 0),
        (3, 1, 0),  # over the cap (the policy was lowered): 0, not negative
        (1, 3, 2),
        (0, 100, 100),
    ],
)
def test_rollout_slots(in_progress: int, max_concurrent: int, expected: int) -> None:
    patch = PatchPolicy(max_concurrent_rollouts=max_concurrent)
    assert rollout_slots(in_progress, patch) == expected


@pytest.mark.parametrize(
    ("current", "limit", "floor", "expected"),
    [
        (600, 1200, 300, 1000),  # 2 cores would be × 3.3 of 600m: the core below
        (300, 600, 300, 1000),  # one core is the least workers can read, whatever the step
        (1300, 2600, 500, 2000),  # 3 cores: × 2.3
        (1500, 3000, 500, 3000),  # already whole
        (1200, 1800, 1500, 2000),  # the core below would be under the request
        (None, 1080, 300, 2000),  # a new limit: nothing to step from, up
        (4000, 2500, 500, 3000),  # a decrease: up is within the step, the smaller move
    ],
)
def test_whole_cores_step(current: int | None, limit: int, floor: int, expected: int) -> None:
    assert whole_cores_step(current, limit, floor, PatchPolicy()) == expected
