"""The burst agent on the real kernel: a micro-bursting load at the engine's recommended
limit, with and without the burst the agent writes, against the model's projection.

1. The load (two worker processes bursting together, briefly, at a low average) runs in a
   cgroup v1 ``cpu`` group at a base quota without burst; its counters become the engine's
   CPU statistics, as Prometheus would give them (``cfs_kernel.cpu_stats``).
2. The engine recommends twice from them, in the dev tier (whose limit is the one that
   meets the throttle target, not a multiple of a large request): with ``burst.agent:
   Installed`` the burst counts (a limit L_b and a burst B); with ``Detect`` and no agent
   report it does not (a limit L_0 that meets the target alone; B is advisory).
3. The kernel runs the load at L_b with B written by the agent's own writer
   (:meth:`unthrottle.agent.cgroupfs.CgroupFs.assert_burst`, read back), at L_b without it
   (the same recommendation in a cluster without the agent), and at L_0.

Each configuration shows the engine's projected ratio there
(:func:`unthrottle.engine.demand.projected_throttle_ratio`), the simulator's
(:func:`unthrottle.sim.cfs.simulate`), and the kernel's throttled-period ratio (median and
range of ``--repeats`` runs) with ``nr_bursts`` and ``burst_time`` from ``cpu.stat``.
Workers, cgroup and cleanup are bench/cfs_kernel.py's. About 45 s; as root with the v1
``cpu`` controller (else exit 2).

    .venv/bin/python bench/burst_agent.py [--repeats 2]
    .venv/bin/python bench/burst_agent.py --markdown     # the table of docs/performance.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from typing import Any

from benchlib import code_version
from cfs_kernel import (
    PERIOD_US,
    Cgroup,
    KernelRun,
    Load,
    check_cgroup,
    cpu_stats,
    run_kernel,
    simulated,
    summarize,
)

from unthrottle.agent.cgroupfs import CgroupFs, find_hierarchy
from unthrottle.engine.burst import burst_cores
from unthrottle.engine.demand import estimate_demand, projected_throttle_ratio
from unthrottle.engine.recommend import recommend
from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.model.recommendation import Recommendation
from unthrottle.model.stats import ContainerResources, ContainerStats

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "burst_agent.json"
BASE_QUOTA_US = 20_000  # 200m: the current limit, throttled
# Both workers burn 30 ms at once every 530 ms (0.11 cores on average): 60 ms of CPU in
# one period, above a 450m quota; 530 ms is not a whole number of periods, so the bursts
# meet every phase of the period timer.
LOAD = Load(
    "microbursts-2x30ms-every-530ms", "bursts", workers=2, cost_us=30_000, every_us=530_000,
    duration_us=4_000_000, grace_us=500_000,
)  # fmt: skip


class AgentCgroup(Cgroup):
    """cfs_kernel's group, its burst written and read back by the agent's writer."""

    def __init__(self) -> None:
        super().__init__()
        hierarchy = find_hierarchy(Path("/sys/fs/cgroup"))
        if hierarchy is None:
            raise RuntimeError("no cgroup hierarchy with the cpu controller")
        self.fs = CgroupFs(hierarchy)
        self.relative = PurePosixPath(self.path.relative_to(hierarchy.path))

    def configure(self, quota_us: int, burst_us: int) -> None:
        super().configure(quota_us, 0)
        result = self.fs.assert_burst(self.relative, burst_us)
        if not result.ok or result.burst_us != burst_us:
            raise RuntimeError(f"the agent's writer did not apply {burst_us}: {result}")


def _policy(agent: str) -> ThrottlePolicySpec:
    # One run is one "sample": the history thresholds of a week-long window do not apply.
    document = {
        "tier": "dev",
        "burst": {"agent": agent},
        "history": {"minSamples": 1, "minCoverage": 0},
    }
    return ThrottlePolicySpec.model_validate(document)


def _recommend(runs: Sequence[KernelRun], agent: str) -> Recommendation:
    run = sorted(runs, key=lambda r: r.ratio)[len(runs) // 2]  # the median run
    limit = BASE_QUOTA_US * 1000 // PERIOD_US
    container = ContainerResources(name="app", cpu_request=limit, cpu_limit=limit)
    stats = ContainerStats(container=container, cpu=cpu_stats(run, with_seconds=True))
    result = recommend(stats, _policy(agent))
    if not isinstance(result, Recommendation):
        raise RuntimeError(f"no recommendation: {result.message}")
    return result


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def experiment(cgroup: AgentCgroup, repeats: int, cpus: int) -> dict[str, Any]:
    _say(f"{LOAD.name}: base {BASE_QUOTA_US} us, {repeats} runs")
    base = [run_kernel(cgroup, LOAD, BASE_QUOTA_US) for _ in range(repeats)]
    with_agent, without = _recommend(base, "Installed"), _recommend(base, "Detect")
    assert with_agent.cpu_limit is not None and without.cpu_limit is not None
    estimate = estimate_demand(
        sorted((cpu_stats(r, True) for r in base), key=lambda s: s.throttled_period_ratio)[
            len(base) // 2
        ],
        BASE_QUOTA_US * 1000 // PERIOD_US,
    )
    burst_us = with_agent.cpu_burst_us
    configs = [
        ("recommended limit + the agent's burst", with_agent.cpu_limit, burst_us),
        ("recommended limit, no agent", with_agent.cpu_limit, 0),
        ("limit sized without burst", without.cpu_limit, 0),
    ]
    rows = []
    for label, limit_m, burst in configs:
        quota_us = limit_m * PERIOD_US // 1000
        _say(f"  {label}: quota {quota_us} us, burst {burst} us")
        runs = [run_kernel(cgroup, LOAD, quota_us, burst) for _ in range(repeats)]
        projected = projected_throttle_ratio(
            estimate.model, limit_m, burst_cores(burst, PERIOD_US), estimate.mean
        )
        rows.append(
            {
                "config": label,
                "limit_m": limit_m,
                "burst_us": burst,
                "projected": round(projected, 4),
                "simulate": simulated(LOAD, quota_us, burst, cpus),
                "kernel": summarize(runs),
            }
        )
    return {
        "load": asdict(LOAD),
        "mean_cores_offered": round(LOAD.mean_cores, 4),
        "base_quota_us": BASE_QUOTA_US,
        "base_kernel": summarize(base),
        "recommendation": {
            "installed": {
                "cpu_limit_m": with_agent.cpu_limit,
                "cpu_burst_us": burst_us,
                "projected": with_agent.projected_throttle_ratio,
            },
            "detect": {
                "cpu_limit_m": without.cpu_limit,
                "cpu_burst_us": without.cpu_burst_us,
                "projected": without.projected_throttle_ratio,
            },
        },
        "results": rows,
    }


def _cell(spread: dict[str, float], fmt: str) -> str:
    median, low, high = (format(spread[k], fmt) for k in ("median", "min", "max"))
    return median if low == high else f"{median} ({low}–{high})"


def markdown(document: dict[str, Any]) -> str:
    e = document["experiment"]
    base = e["base_kernel"]
    head = (
        f"Load `{e['load']['name']}` ({e['mean_cores_offered']:.2f} cores offered), "
        f"fitted at {e['base_quota_us'] // 100}m (kernel ratio {_cell(base['ratio'], '.3f')}); "
        f"{document['repeats']} runs per row.\n\n"
    )
    table = (
        "| configuration | limit | burst | engine's projection | simulator "
        "| kernel throttle ratio | kernel bursts | burst time, ms |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|\n"
    )
    for r in e["results"]:
        k = r["kernel"]
        table += (
            f"| {r['config']} | {r['limit_m']}m | {r['burst_us'] / 1000:g} ms "
            f"| {r['projected']:.3f} | {r['simulate']['ratio']:.3f} "
            f"| {_cell(k['ratio'], '.3f')} | {_cell(k['nr_bursts'], '.0f')} "
            f"| {_cell(k['burst_ms'], '.0f')} |\n"
        )
    return head + table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--markdown", action="store_true", help="print --output's table")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.output.read_text())))
        return 0
    if not 1 <= args.repeats <= 10:
        parser.error("--repeats must be between 1 and 10")
    problem = check_cgroup()
    if problem:
        _say(f"cannot run: {problem}")
        return 2
    cpus = os.cpu_count() or 1
    cgroup = AgentCgroup()
    try:
        if not cgroup.has_burst:
            _say("cannot run: cpu.cfs_burst_us does not exist on this kernel")
            return 2
        result = experiment(cgroup, args.repeats, cpus)
    finally:
        cgroup.remove()
    document = {
        "benchmark": "burst_agent",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "code": code_version(),
        "machine": {"nproc": cpus, "kernel": platform.release(), "cgroup": "v1 cpu"},
        "period_us": PERIOD_US,
        "repeats": args.repeats,
        "experiment": result,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=1) + "\n")
    _say(f"wrote {args.output}")
    print(markdown(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
