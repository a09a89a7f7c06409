"""What a Prometheus API call returns: the answers, and one result element read.

This module owns the answers :class:`~.prometheus_http.PrometheusClient` returns
(:class:`QueryAnswer` of an instant query, :class:`RangeAnswer` of a range query reduced
per series, :class:`NamesAnswer` of the index, each with its :class:`QueryStats`) and the
reading of one element of a ``data.result`` array (:func:`vector_row`, :func:`series_of`),
which raises ``ValueError`` for an element it cannot use. It is pure (no I/O).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "NamesAnswer",
    "QueryAnswer",
    "QueryStats",
    "RangeAnswer",
    "series_of",
    "vector_row",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class QueryStats:
    """What one query cost: wall time, rows, and Prometheus' own sample counts if asked."""

    name: str
    seconds: float
    series: int
    total_queryable_samples: int | None = None
    peak_samples: int | None = None


@dataclass(frozen=True, slots=True)
class QueryAnswer:
    """An instant query's answer: (labels, raw value) rows, warnings, and stats if asked."""

    rows: tuple[tuple[Mapping[str, str], str], ...]
    warnings: tuple[str, ...]
    stats: QueryStats
    requests: int = 1  # HTTP requests it took (1 + retries)


@dataclass(frozen=True, slots=True)
class RangeAnswer(Generic[T]):
    """A range query's answer: (labels, reduction) per series, warnings, stats if asked."""

    rows: tuple[tuple[Mapping[str, str], T], ...]
    warnings: tuple[str, ...]
    stats: QueryStats
    requests: int = 1  # HTTP requests it took (1 + retries)


@dataclass(frozen=True, slots=True)
class NamesAnswer:
    """A label-values answer: the series names, warnings, and what it cost."""

    names: frozenset[str]
    warnings: tuple[str, ...]
    stats: QueryStats
    requests: int = 1  # HTTP requests it took (1 + retries)


def vector_row(item: Any) -> tuple[Mapping[str, str], str]:
    """An instant query's element: its labels and raw value."""
    try:
        labels = item["metric"]
        value = item["value"][1]
    except (KeyError, IndexError, TypeError):
        raise ValueError("malformed result row") from None
    if not isinstance(labels, dict) or not isinstance(value, str):
        raise ValueError("malformed result row")
    # One string per label value rather than one per row: an answer repeats each
    # namespace, pod and container in a row per statistic (tens of thousands of rows).
    return {k: sys.intern(v) if isinstance(v, str) else v for k, v in labels.items()}, value


def series_of(item: Any) -> tuple[Mapping[str, str], Sequence[Any]]:
    """A range query's element: its labels and ``[t, "value"]`` points."""
    try:
        labels = item["metric"]
        values = item["values"]
    except (KeyError, TypeError):
        raise ValueError("malformed result series") from None
    if not isinstance(labels, dict) or not isinstance(values, list):
        raise ValueError("malformed result series")
    return labels, values
