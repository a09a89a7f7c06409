"""Leader election over a ``coordination.k8s.io`` Lease, as plain data: whose turn it is.

One operator instance holds the Lease and runs; the others wait. The holder renews the
Lease every retry period; an instance that has not managed to renew for the renew
deadline stops leading (it exits, and its pod restarts as a standby). A waiting instance
takes the Lease once it has seen the same record, unchanged, for the lease duration, or
at once when the Lease is released (no holder). Expiry is measured on the waiting
instance's own clock, from when it first saw the record (as client-go does), never by
comparing the holder's ``renewTime`` with the local time: clocks of two nodes may differ.

Times are integer milliseconds of a monotonic clock; the caller reads the clock and
formats ``renewTime``/``acquireTime`` at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "LeaseRecord",
    "LeaseTimings",
    "Observation",
    "Turn",
    "decide",
    "lease_spec",
    "observe",
    "parse_lease",
    "still_leading",
]


@dataclass(frozen=True)
class LeaseTimings:
    """How long a Lease lasts unrenewed, how long the holder keeps trying to renew it,
    and how often every instance tries (seconds)."""

    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def problem(self) -> str | None:
        """Why these timings are unsafe, in one line (None: they are fine)."""
        if self.retry_period <= 0:
            return "the lease retry period must be above 0s"
        if self.renew_deadline <= self.retry_period:
            return "the lease renew deadline must be longer than the retry period"
        if self.duration <= self.renew_deadline:
            # Otherwise a standby could take a Lease whose holder is still leading.
            return "the lease duration must be longer than the renew deadline"
        if self.duration != int(self.duration):
            return "the lease duration must be whole seconds (leaseDurationSeconds)"
        return None


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease as read: its holder (None: released), duration, times and version."""

    holder: str | None
    duration_seconds: int
    resource_version: str
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0


def parse_lease(obj: dict[str, Any]) -> LeaseRecord:
    spec = obj.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or None,
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
        acquire_time=spec.get("acquireTime"),
        renew_time=spec.get("renewTime"),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


@dataclass(frozen=True)
class Observation:
    """A record and the local time (ms) it was first seen with this content."""

    record: LeaseRecord
    since_ms: int


def observe(previous: Observation | None, record: LeaseRecord, now_ms: int) -> Observation:
    """The observation after reading ``record``: its clock restarts when the record changed."""
    if previous is not None and _same(previous.record, record):
        return previous
    return Observation(record, now_ms)


def _same(a: LeaseRecord, b: LeaseRecord) -> bool:
    # Every renewal writes renewTime, so an unchanged record means an absent holder.
    return (a.holder, a.renew_time, a.resource_version) == (
        b.holder,
        b.renew_time,
        b.resource_version,
    )


class Turn(StrEnum):
    CREATE = "create"  # no Lease yet: create it, holding it
    RENEW = "renew"  # ours: write a new renewTime
    TAKE = "take"  # released or expired: write ourselves as the holder
    WAIT = "wait"  # someone else holds it and it has not expired


def decide(observation: Observation | None, me: str, now_ms: int) -> Turn:
    """What this instance does with the Lease now (``observation``: None, no Lease)."""
    if observation is None:
        return Turn.CREATE
    record = observation.record
    if record.holder == me:
        return Turn.RENEW
    if record.holder is None:
        return Turn.TAKE
    # A holder that wrote no duration still gets one retry's worth of doubt: 1 s.
    duration_ms = max(record.duration_seconds, 1) * 1000
    return Turn.TAKE if now_ms - observation.since_ms >= duration_ms else Turn.WAIT


def lease_spec(
    record: LeaseRecord | None, me: str | None, timings: LeaseTimings, now_text: str
) -> dict[str, Any]:
    """The Lease's spec after this instance's turn (``me`` None: releasing it)."""
    if me is None:
        # Released: no holder, and a one-second duration for anyone who still reads it.
        transitions = record.transitions if record else 0
        return {
            "holderIdentity": None,
            "leaseDurationSeconds": 1,
            "renewTime": now_text,
            "acquireTime": record.acquire_time if record else None,
            "leaseTransitions": transitions,
        }
    changed = record is None or record.holder != me
    transitions = 0 if record is None else record.transitions + (1 if changed else 0)
    return {
        "holderIdentity": me,
        "leaseDurationSeconds": int(timings.duration),
        "acquireTime": now_text if changed or record is None else record.acquire_time,
        "renewTime": now_text,
        "leaseTransitions": transitions,
    }


def still_leading(last_renewed_ms: int, now_ms: int, timings: LeaseTimings) -> bool:
    """Whether the holder may go on: it renewed within the renew deadline."""
    return now_ms - last_renewed_ms < timings.renew_deadline * 1000
