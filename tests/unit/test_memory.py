"""Memory sizing: never below what the kernel and the kubelet count (engine/memory.py)."""

from __future__ import annotations

from unthrottle.engine.memory import grows, recommend_memory
from unthrottle.engine.workers import WorkerPlan
from unthrottle.model.policy import MemoryPolicy
from unthrottle.model.quantity import parse_bytes
from unthrottle.model.stats import ContainerResources, MemoryStats

MI = 2**20
SAME_WORKERS = WorkerPlan(None, None, managed=False, derived=False)
APP = ContainerResources(name="app")


def memory(rss: str, wss: str | None = None, slope: float | None = None) -> MemoryStats:
    doc: dict[str, object] = {"rssBytes": {"p99": parse_bytes(rss), "max": parse_bytes(rss)}}
    if wss is not None:
        doc["workingSetBytes"] = {"max": parse_bytes(wss)}
    if slope is not None:
        doc["rssSlopeBytesPerSecond"] = slope
    return MemoryStats.model_validate(doc)


def test_rss_plus_headroom_without_working_set() -> None:
    plan = recommend_memory(MemoryPolicy(), memory("200Mi"), APP, SAME_WORKERS)
    assert plan.limit == 280 * MI  # 200Mi × 1.4


def test_the_limit_covers_the_working_set() -> None:
    plan = recommend_memory(MemoryPolicy(), memory("200Mi", wss="1536Mi"), APP, SAME_WORKERS)
    assert plan.limit == 1536 * MI and plan.request == plan.limit
    assert any("working set" in note for note in plan.notes)


def test_growth_until_the_next_possible_patch() -> None:
    two_mib_an_hour = 2 * MI / 3600
    day_ms = 24 * 3600 * 1000
    growing = memory("200Mi", slope=two_mib_an_hour)
    plan = recommend_memory(MemoryPolicy(), growing, APP, SAME_WORKERS, growth_horizon_ms=day_ms)
    assert plan.limit == 348 * MI  # (200Mi + 48Mi) × 1.4 = 347.2Mi, rounded up to 348Mi
    shrinking = memory("200Mi", slope=-two_mib_an_hour)
    flat = recommend_memory(MemoryPolicy(), shrinking, APP, SAME_WORKERS, growth_horizon_ms=day_ms)
    assert flat.limit == 280 * MI


def test_an_oom_killed_container_without_a_limit_is_never_cut() -> None:
    killed = MemoryStats.model_validate(
        {"rssBytes": {"p99": 300 * MI, "max": 300 * MI}, "oomKills": 2}
    )
    requested = ContainerResources(name="app", memory_request=1024 * MI)
    plan = recommend_memory(MemoryPolicy(), killed, requested, SAME_WORKERS)
    assert plan.limit is None  # the node killed it: a new limit would kill it sooner
    assert plan.request == 1024 * MI  # not 300Mi × 1.4 = 420Mi
    unrequested = recommend_memory(MemoryPolicy(), killed, APP, SAME_WORKERS)
    assert unrequested.limit is None and unrequested.request == 420 * MI
    # With a limit, the kill was the limit's: sized from it, as before.
    limited = ContainerResources(name="app", memory_request=512 * MI, memory_limit=512 * MI)
    assert recommend_memory(MemoryPolicy(), killed, limited, SAME_WORKERS).limit == 717 * MI


def test_a_growing_containers_memory_is_never_lowered() -> None:
    # +40 MiB/h: the pods restarted by the last patch are 4 h old and read 563Mi, where
    # the limit of 1018Mi was sized at 6 h of age. Cutting it restarts them again.
    forty_mib_an_hour = 40 * MI / 3600
    six_hours, two_hours_ms = 6 * 3600, 2 * 3600 * 1000
    limited = ContainerResources(name="app", memory_request=1018 * MI, memory_limit=1018 * MI)
    young = memory("563Mi", slope=forty_mib_an_hour)
    assert grows(young, six_hours)
    plan = recommend_memory(
        MemoryPolicy(), young, limited, SAME_WORKERS, two_hours_ms, window_seconds=six_hours
    )
    assert plan.limit == plan.request == 1018 * MI  # not (563 + 80) × 1.4 = 901Mi
    assert any("growing: kept" in note for note in plan.notes)
    # Not growing (flat, or a slope that is noise over the window): sized from RSS.
    for stats in (memory("563Mi"), memory("563Mi", slope=1.0)):
        assert not grows(stats, six_hours)
        flat = recommend_memory(
            MemoryPolicy(), stats, limited, SAME_WORKERS, two_hours_ms, window_seconds=six_hours
        )
        assert flat.limit is not None and flat.limit < 1018 * MI
    # A memory.maxLimit under today's limit still binds.
    capped = recommend_memory(
        MemoryPolicy(maxLimit="900Mi"),
        young,
        limited,
        SAME_WORKERS,
        two_hours_ms,
        window_seconds=six_hours,
    )
    assert capped.limit == 900 * MI
