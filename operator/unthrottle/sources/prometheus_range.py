"""Statistics of one series of a range answer, computed in the client as PromQL does.

This module owns the reduction of one series of a range query (one container of one pod,
its points at every step of the window) to the statistics the aggregation reads
(:mod:`.prometheus_aggregate`), under the same names and with the same definitions as the
PromQL functions they replace, so that reading a series once and reducing it here gives
what evaluating one ``*_over_time`` subquery per statistic gave:

- ``quantile_over_time``: sort, rank ``q × (n - 1)``, linear interpolation between the two
  neighbouring values (Prometheus' ``quantile``);
- ``max_over_time``, ``avg_over_time`` (``math.fsum``: within a few ulps of Prometheus'
  Kahan sum), ``count_over_time``, and ``max_over_time(timestamp(...))`` as the time of
  the last point;
- ``deriv``: the least-squares slope in units per second, 0 for a constant series, none
  for fewer than two points.

A point whose value is not a finite number, or negative, is dropped and counted (the
series read here are rates and byte counts, never negative). Pure: values in, values out.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any, Final

__all__ = [
    "RSS_STATS",
    "USAGE_STATS",
    "Points",
    "parse_points",
    "quantile",
    "reduce_rss",
    "reduce_usage",
    "rss_statistics",
    "slope",
    "usage_statistics",
]

USAGE_QUANTILES: Final = (
    ("p50", 0.5),
    ("p95", 0.95),
    ("p99", 0.99),
    ("p999", 0.999),
    ("p9999", 0.9999),
)
USAGE_STATS: Final = (*(name for name, _ in USAGE_QUANTILES), "max", "mean", "count", "last")
RSS_STATS: Final = ("rss_p99", "rss_count", "rss_slope")


class Points:
    """One series' points: timestamps (epoch seconds) and values, in time order."""

    __slots__ = ("times", "values")

    def __init__(self, times: list[float], values: list[float]) -> None:
        self.times = times
        self.values = values


def parse_points(raw: Sequence[Any]) -> tuple[Points, int]:
    """``[[t, "v"], ...]`` of the API → (the usable points, how many were dropped).

    ``ValueError`` if a point is not a ``[number, string]`` pair.
    """
    try:  # the common case, at C speed: every point well-formed, finite and >= 0
        times = [float(t) for t, _ in raw]
        values = [float(v) for _, v in raw]
    except (TypeError, ValueError):
        pass
    else:
        if _usable(values):
            return Points(times, values), 0
    times, values = [], []
    dropped = 0
    for point in raw:
        try:
            t, text = point
            value = float(text)
            at = float(t)
        except (TypeError, ValueError):
            raise ValueError(f"malformed point {point!r:.60}") from None
        if value >= 0 and math.isfinite(value):
            times.append(at)
            values.append(value)
        else:
            dropped += 1
    return Points(times, values), dropped


def _usable(values: list[float]) -> bool:
    """Every value finite and >= 0, at C speed: a NaN or an infinity makes the sum
    non-finite (so does an overflow, which the slow path then reads correctly)."""
    return not values or (min(values) >= 0 and math.isfinite(sum(values)))


def reduce_usage(raw: Sequence[Any]) -> tuple[dict[str, float], int]:
    """:func:`usage_statistics` of ``[[t, "v"], ...]``, and how many points were dropped.

    The common case (every value usable) reads the values and only the last time."""
    try:
        values = [float(v) for _, v in raw]
        last = float(raw[-1][0]) if raw else 0.0
    except (TypeError, ValueError):
        pass
    else:
        if _usable(values):
            return _usage(values, last), 0
    points, dropped = parse_points(raw)
    return usage_statistics(points), dropped


def quantile(q: float, ordered: Sequence[float]) -> float:
    """Prometheus' ``quantile`` of values sorted ascending (at least one)."""
    rank = q * (len(ordered) - 1)
    low = max(0, math.floor(rank))
    high = min(len(ordered) - 1, low + 1)
    weight = rank - math.floor(rank)
    return ordered[low] * (1 - weight) + ordered[high] * weight


def slope(points: Points) -> float | None:
    """``deriv``: the least-squares slope per second; None below two points."""
    n = len(points.values)
    if n < 2:
        return None
    ts, ys = points.times, points.values
    step = _whole_step(ts[0], ts[1], ts[-1], n)
    if step is not None:
        return _slope_at_every_step(ys, step)
    if min(ys) == max(ys):
        return 0.0
    origin = ts[0]
    mean_x = math.fsum([t - origin for t in ts]) / n
    mean_y = math.fsum(ys) / n
    dx = [t - origin - mean_x for t in ts]
    var_x = math.fsum([d * d for d in dx])
    if var_x == 0:
        return None
    return math.fsum([d * (y - mean_y) for d, y in zip(dx, ys, strict=True)]) / var_x


def _whole_step(first: float, second: float, last: float, n: int) -> float | None:
    """The step between ``n`` points from ``first`` to ``last`` when none is missing."""
    step = second - first
    return step if step > 0 and last - first == step * (n - 1) else None


def _slope_at_every_step(ys: list[float], step: float) -> float:
    """:func:`slope` of at least two points ``step`` seconds apart, none missing (one
    pod's life at the query's step, the common case).

    With x = i·step, Σ(x - x̄)² = step²·n(n² - 1)/12 and Σ(x - x̄)(y - ȳ) =
    step·(Σ i·y - (n - 1)/2·Σ y): two sums at C speed, each exact (``fsum``).
    """
    if min(ys) == max(ys):
        return 0.0
    n = len(ys)
    centred = math.fsum(map(operator.mul, range(n), ys)) - (n - 1) / 2 * math.fsum(ys)
    return centred / (step * n * (n * n - 1) / 12)


def usage_statistics(points: Points) -> dict[str, float]:
    """The CPU usage statistics of one series of usage rates (empty without points)."""
    return _usage(points.values, points.times[-1]) if points.values else {}


def _usage(values: list[float], last: float) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    out = {name: quantile(q, ordered) for name, q in USAGE_QUANTILES}
    out["max"] = ordered[-1]
    out["mean"] = math.fsum(values) / len(values)
    out["count"] = float(len(values))
    out["last"] = last
    return out


def rss_statistics(points: Points) -> dict[str, float]:
    """RSS p99, sample count and slope of one series of RSS bytes (empty without points)."""
    if not points.values:
        return {}
    return _rss(points.values, slope(points))


def reduce_rss(raw: Sequence[Any]) -> tuple[dict[str, float], int]:
    """:func:`rss_statistics` of ``[[t, "v"], ...]``, and how many points were dropped.

    The common case (every value usable, a point at every step) reads the values and
    only the first two times and the last."""
    try:
        values = [float(v) for _, v in raw]
        step = (
            _whole_step(float(raw[0][0]), float(raw[1][0]), float(raw[-1][0]), len(raw))
            if len(raw) > 1
            else None
        )
    except (TypeError, ValueError, IndexError):
        pass
    else:
        if step is not None and _usable(values):
            return _rss(values, _slope_at_every_step(values, step)), 0
    points, dropped = parse_points(raw)
    return rss_statistics(points), dropped


def _rss(values: list[float], rate: float | None) -> dict[str, float]:
    out = {"rss_p99": quantile(0.99, sorted(values)), "rss_count": float(len(values))}
    if rate is not None:
        out["rss_slope"] = rate
    return out
