"""AutoPatch in a closed loop: many passes of the operator's own fetch and plan against a
real Prometheus, whose series the CFS simulator makes for whatever each pod runs with.

Every seed scenario in two tiers, passes two simulated hours apart (window 2h, cooldown
2h): each workload must settle within 3 patches and then stay still, end at or under the
throttle target, and never ping-pong (a value going up, down and up again).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from unthrottle.engine.tiers import TIER_RULES, usage_percentile_for
from unthrottle.model.names import TIER_LABEL
from unthrottle.model.policy import PatchPolicy, Tier
from unthrottle.sandbox.loop import (
    LoopWorkload,
    configured_scenario,
    loop_policy,
    run_loop,
    seed_workloads,
)
from unthrottle.sim.scenarios import all_scenarios
from unthrottle.sim.stats import scenario_stats

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
STEP_MS = 2 * HOUR_MS  # between passes: one window, so a patched configuration is judged
T0_MS = 1_767_225_600_000
PASSES = 9  # up to 3 patches, then at least 5 still passes
TARGET = 0.05
TIERS = ("production", "dev")
# The simulated ratio over one window of a few pods wobbles around its mean.
RATIO_TOLERANCE = 0.01
# The final request against the true demand's tier percentile × (1 + the tier's headroom),
# the demand simulated without a quota under the final configuration. Measured: 0.96–1.52.
REQUEST_FACTOR = (0.8, 2.0)


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory) -> list[LoopWorkload]:
    workloads = seed_workloads(TIERS, T0_MS - STEP_MS)
    policy = loop_policy(window="2h", cooldown="2h", target=TARGET)
    workdir: Path = tmp_path_factory.mktemp("loop")
    run_loop(workloads, policy, start_ms=T0_MS, passes=PASSES, step_ms=STEP_MS, workdir=workdir)
    return workloads


# Loops the rules do not close yet, each with what the harness measured. strict: a rule
# that starts converging turns its case into a failure until the mark is removed.
NOT_YET: dict[str, str] = {
    "gil-threads-dev": "the request follows one pod's 2h-window noise, unthrottled at 2 cores: "
    "840 → 570 → 510 → 610m, 4 patches",
}


def _cases() -> list[Any]:
    cases: list[Any] = []
    index = 0
    for tier in TIERS:
        for s in all_scenarios():
            name = f"{s.name}-{tier}"
            marks = (
                [pytest.mark.xfail(strict=True, reason=NOT_YET[name])] if name in NOT_YET else []
            )
            cases.append(pytest.param(index, id=name, marks=marks))
            index += 1
    return cases


@pytest.mark.parametrize("index", _cases())
def test_settles_and_stays_still(loop: list[LoopWorkload], index: int) -> None:
    w = loop[index]
    patches = [i for i, r in enumerate(w.records) if r.patched]
    summary = [
        (r.action, r.cpu_request, r.cpu_limit, r.workers, r.throttle_ratio) for r in w.records
    ]
    assert len(patches) <= 3, summary
    last = patches[-1] if patches else -1
    assert len(w.records) - 1 - last >= 5, summary  # still for at least 5 passes after
    final = w.records[-1]
    if final.throttle_ratio is not None:
        assert final.throttle_ratio <= TARGET + RATIO_TOLERANCE, summary
    for values in (
        [r.cpu_limit for r in w.records],
        [r.cpu_request for r in w.records],
        [r.workers for r in w.records],
    ):
        moves = [
            b - a
            for a, b in itertools.pairwise(values)
            if a is not None and b is not None and a != b
        ]
        signs = [m > 0 for m in moves]
        assert all(x == y for x, y in itertools.pairwise(signs)), summary  # no ping-pong


def _true_request(w: LoopWorkload) -> float:
    """The tier's request for the demand itself: its percentile unthrottled, + headroom."""
    tier = Tier(w.manifest["metadata"]["labels"][TIER_LABEL])
    unthrottled = configured_scenario(w.scenario, w.manifest).with_changes(cpu_limit_m=None)
    stats = scenario_stats(unthrottled, 2 * 3600)
    rule = TIER_RULES[tier]
    _, percentile = usage_percentile_for(rule, stats.cpu.usage_cores)
    return percentile * (1.0 + rule.headroom)


@pytest.mark.parametrize("index", [pytest.param(i, id=c.id) for i, c in enumerate(_cases())])
def test_ends_near_the_true_demand_without_overshoot(loop: list[LoopWorkload], index: int) -> None:
    w = loop[index]
    final = w.records[-1]
    assert final.cpu_request is not None
    true = _true_request(w)
    low, high = REQUEST_FACTOR
    assert low * true <= final.cpu_request <= high * true, (final.cpu_request, true)
    # No overshoot: no limit or worker count on the way above both where it started and
    # the final one by more than one step up (coming down from the owner's 4 cores is not).
    step_up = PatchPolicy().max_step_up
    for start, values in (
        (w.scenario.cpu_limit_m, [r.cpu_limit for r in w.records]),
        (w.scenario.web_concurrency, [r.workers for r in w.records]),
    ):
        last = values[-1]
        if last is not None:
            peak = max(v for v in values if v is not None)
            assert peak <= max(start or 0, last * step_up), (start, values)
