"""A range answer's series reduced in the client: the fast path agrees with the full one."""

from __future__ import annotations

import math

import pytest

from unthrottle.sources.prometheus_range import (
    parse_points,
    reduce_rss,
    reduce_usage,
    rss_statistics,
    slope,
    usage_statistics,
)

T0 = 1_700_000_000


def _series(values: list[str]) -> list[list[object]]:
    return [[T0 + 30 * i, v] for i, v in enumerate(values)]


def test_a_usable_series_reads_as_every_point_would() -> None:
    raw = _series([f"{0.1 * (i % 7) + 0.05:.6f}" for i in range(240)])
    stats, dropped = reduce_usage(raw)
    assert dropped == 0
    assert stats == usage_statistics(parse_points(raw)[0])
    assert stats["last"] == T0 + 30 * 239 and stats["count"] == 240


@pytest.mark.parametrize("bad", ["NaN", "+Inf", "-Inf", "-0.5"])
def test_unusable_values_are_dropped_and_counted(bad: str) -> None:
    good = [f"{0.2 + 0.01 * i:.3f}" for i in range(10)]
    stats, dropped = reduce_usage(_series([*good[:4], bad, *good[4:], bad]))
    assert dropped == 2
    assert stats["count"] == 10 and math.isfinite(stats["mean"])
    assert stats["max"] == pytest.approx(0.29)
    assert stats["last"] == T0 + 30 * 10  # the last usable point's time


def test_an_empty_series_has_no_statistics() -> None:
    assert reduce_usage([]) == ({}, 0)
    assert reduce_usage(_series(["NaN"])) == ({}, 1)


def test_a_malformed_point_is_an_error() -> None:
    with pytest.raises(ValueError, match="malformed point"):
        reduce_usage([[T0, "0.1"], ["x"]])


def _general_slope(times: list[float], values: list[float]) -> float:
    # The textbook least-squares slope, term by term (what ``deriv`` computes).
    n = len(values)
    mean_t, mean_v = sum(times) / n, sum(values) / n
    covariance = sum((t - mean_t) * (v - mean_v) for t, v in zip(times, values, strict=True))
    return covariance / sum((t - mean_t) ** 2 for t in times)


@pytest.mark.parametrize(
    "values",
    [
        [f"{100_000_000 + 4096 * i + (i % 5) * 777}" for i in range(240)],  # growing
        [f"{900_000_000 - 1000 * i}" for i in range(17)],  # shrinking
        ["5000", "5000", "5000"],  # flat
        ["10", "20"],  # two points
    ],
)
def test_rss_at_every_step_reads_as_every_point_would(values: list[str]) -> None:
    raw = _series(values)
    stats, dropped = reduce_rss(raw)
    assert dropped == 0
    assert stats == pytest.approx(rss_statistics(parse_points(raw)[0]), rel=1e-12)
    times = [float(T0 + 30 * i) for i in range(len(values))]
    expected = _general_slope(times, [float(v) for v in values])
    assert stats["rss_slope"] == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_rss_with_a_missing_step_or_a_bad_value_reads_every_time() -> None:
    values = [float(50_000_000 + 1000 * i * i) for i in range(12)]
    times = [float(T0 + 30 * i) for i in range(12) if i != 5]  # one step missing
    kept = [v for i, v in enumerate(values) if i != 5]
    raw = [[t, f"{v:.0f}"] for t, v in zip(times, kept, strict=True)]
    stats, dropped = reduce_rss(raw)
    assert dropped == 0
    assert stats["rss_slope"] == pytest.approx(_general_slope(times, kept), rel=1e-9)
    bad = [*raw[:3], [T0 + 9999, "NaN"], *raw[3:]]
    with_bad, dropped = reduce_rss(bad)
    assert dropped == 1
    assert with_bad == stats


def test_rss_of_one_point_has_no_slope_and_of_none_no_statistics() -> None:
    assert reduce_rss(_series(["1024"])) == ({"rss_p99": 1024.0, "rss_count": 1.0}, 0)
    assert reduce_rss([]) == ({}, 0)
    assert slope(parse_points(_series(["1"]))[0]) is None
