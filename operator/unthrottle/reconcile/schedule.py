"""When a ThrottlePolicy is due for a pass: a pure rule for the operator's timer.

A policy is due when its spec changed since the last pass (``metadata.generation`` ahead of
``status.observedGeneration``), when it never ran, or when ``spec.interval`` has passed
since ``status.lastRunTime``. The timer ticks often (every 30 s) and asks this; the pass
itself runs at most once per interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from unthrottle.model.quantity import QuantityError, parse_duration_ms

__all__ = ["DEFAULT_INTERVAL_MS", "is_due", "parse_timestamp_ms"]

DEFAULT_INTERVAL_MS = 10 * 60_000


def parse_timestamp_ms(text: str | None) -> int | None:
    """An RFC 3339 time (``2026-01-01T00:00:00Z``) as epoch milliseconds; None if unreadable."""
    if not text:
        return None
    try:
        return int(datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def is_due(policy: Mapping[str, Any], now_ms: int) -> bool:
    metadata = policy.get("metadata") or {}
    status = policy.get("status") or {}
    if (metadata.get("generation") or 0) != (status.get("observedGeneration") or 0):
        return True
    last_ms = parse_timestamp_ms(status.get("lastRunTime"))
    if last_ms is None:
        return True
    try:
        interval = parse_duration_ms(str((policy.get("spec") or {}).get("interval") or "10m"))
    except QuantityError:
        interval = DEFAULT_INTERVAL_MS  # the pass itself reports the invalid spec
    return now_ms - last_ms >= max(interval, 60_000)
