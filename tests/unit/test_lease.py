"""Whose turn the Lease is, as plain data: records and local times in, turns and specs out."""

from __future__ import annotations

import pytest

from unthrottle.model.lease import (
    LeaseRecord,
    LeaseTimings,
    Observation,
    Turn,
    decide,
    lease_spec,
    observe,
    parse_lease,
    still_leading,
)

TIMINGS = LeaseTimings(duration=15, renew_deadline=10, retry_period=2)


def record(holder: str | None, version: str = "1", renew: str = "t1") -> LeaseRecord:
    return LeaseRecord(holder, 15, version, acquire_time="t0", renew_time=renew, transitions=3)


def test_no_lease_is_created() -> None:
    assert decide(None, "b", 0) is Turn.CREATE


def test_own_lease_is_renewed() -> None:
    assert decide(Observation(record("b"), 0), "b", 999_999) is Turn.RENEW


def test_released_lease_is_taken_at_once() -> None:
    assert decide(Observation(record(None), 1000), "b", 1000) is Turn.TAKE


def test_held_lease_waits_until_unchanged_for_the_duration() -> None:
    seen = Observation(record("a"), 10_000)
    assert decide(seen, "b", 10_000) is Turn.WAIT
    assert decide(seen, "b", 24_999) is Turn.WAIT
    assert decide(seen, "b", 25_000) is Turn.TAKE


def test_expiry_counts_from_local_observation_not_from_renew_time() -> None:
    # A renewTime from a skewed clock says nothing: the first sighting starts the clock.
    first = observe(None, record("a", renew="1999-01-01T00:00:00.000000Z"), 50_000)
    assert first.since_ms == 50_000
    assert decide(first, "b", 60_000) is Turn.WAIT


def test_a_renewal_restarts_the_clock_an_unchanged_record_does_not() -> None:
    first = observe(None, record("a", "1", "t1"), 0)
    same = observe(first, record("a", "1", "t1"), 14_000)
    assert same is first
    renewed = observe(same, record("a", "2", "t2"), 14_000)
    assert renewed.since_ms == 14_000
    assert decide(renewed, "b", 16_000) is Turn.WAIT
    assert decide(renewed, "b", 29_000) is Turn.TAKE


def test_a_holder_without_duration_gets_one_second() -> None:
    seen = Observation(LeaseRecord("a", 0, "1"), 0)
    assert decide(seen, "b", 999) is Turn.WAIT
    assert decide(seen, "b", 1000) is Turn.TAKE


def test_taking_counts_a_transition_and_sets_acquire_time() -> None:
    spec = lease_spec(record("a"), "b", TIMINGS, "now")
    assert spec == {
        "holderIdentity": "b",
        "leaseDurationSeconds": 15,
        "acquireTime": "now",
        "renewTime": "now",
        "leaseTransitions": 4,
    }


def test_renewing_keeps_acquire_time_and_transitions() -> None:
    spec = lease_spec(record("b"), "b", TIMINGS, "now")
    assert spec["acquireTime"] == "t0"
    assert spec["renewTime"] == "now"
    assert spec["leaseTransitions"] == 3


def test_creating_starts_at_zero_transitions() -> None:
    spec = lease_spec(None, "b", TIMINGS, "now")
    assert (spec["holderIdentity"], spec["leaseTransitions"], spec["acquireTime"]) == (
        "b",
        0,
        "now",
    )


def test_releasing_clears_the_holder() -> None:
    spec = lease_spec(record("b"), None, TIMINGS, "now")
    assert spec["holderIdentity"] is None
    assert spec["leaseDurationSeconds"] == 1
    assert spec["leaseTransitions"] == 3


def test_leader_stops_at_the_renew_deadline() -> None:
    assert still_leading(0, 9_999, TIMINGS)
    assert not still_leading(0, 10_000, TIMINGS)


def test_parse_lease_reads_the_api_object() -> None:
    obj = {
        "metadata": {"name": "unthrottle", "resourceVersion": "42"},
        "spec": {
            "holderIdentity": "pod-a-1f2e3d",
            "leaseDurationSeconds": 15,
            "renewTime": "2024-01-01T00:00:00.000000Z",
            "leaseTransitions": 2,
        },
    }
    assert parse_lease(obj) == LeaseRecord(
        "pod-a-1f2e3d", 15, "42", renew_time="2024-01-01T00:00:00.000000Z", transitions=2
    )
    assert parse_lease({"metadata": {}, "spec": {"holderIdentity": ""}}).holder is None


@pytest.mark.parametrize(
    ("timings", "problem"),
    [
        (LeaseTimings(15, 10, 2), None),
        (LeaseTimings(15, 10, 0), "the lease retry period must be above 0s"),
        (LeaseTimings(15, 2, 2), "the lease renew deadline must be longer than the retry period"),
        (LeaseTimings(10, 10, 2), "the lease duration must be longer than the renew deadline"),
        (
            LeaseTimings(12.5, 10, 2),
            "the lease duration must be whole seconds (leaseDurationSeconds)",
        ),
    ],
)
def test_unsafe_timings_are_refused(timings: LeaseTimings, problem: str | None) -> None:
    assert timings.problem() == problem
