"""A range answer's series reduced in the client: the fast path agrees with the full one."""

from __future__ import annotations

import math

import pytest

from unthrottle.sources.prometheus_range import parse_points, reduce_usage, usage_statistics

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
