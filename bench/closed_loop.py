"""The closed loop as a benchmark: every seed scenario in two tiers, many AutoPatch passes.

The same harness as tests/integration/test_closed_loop.py (unthrottle.sandbox.loop): the
operator's fetch and plan against a real Prometheus whose series the CFS simulator makes
for the configuration each pod runs with. Writes bench/results/closed_loop.json and prints
the table of docs/performance.md ("Closed loop").

    .venv/bin/python bench/closed_loop.py [--passes 12] [--window-hours 6 --output F]

``--window-hours`` (default: the step) longer than ``--step-hours`` keeps the pods of
earlier configurations in each pass's window, and the pass after a patch settles.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchlib import REPO, code_version

from unthrottle.sandbox.loop import loop_policy, run_loop, seed_workloads

HOUR_MS = 3_600_000
T0_MS = 1_767_225_600_000
TIERS = ("production", "dev")
TIER = "unthrottle.dev/tier"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=12)
    parser.add_argument("--step-hours", type=int, default=2, help="between passes; the cooldown")
    parser.add_argument("--window-hours", type=int, help="default: --step-hours")
    parser.add_argument(
        "--output", type=Path, default=REPO / "bench" / "results" / "closed_loop.json"
    )
    args = parser.parse_args()
    step = args.step_hours * HOUR_MS
    window_hours = args.window_hours or args.step_hours
    workloads = seed_workloads(TIERS, T0_MS - window_hours * HOUR_MS)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as workdir:
        run_loop(
            workloads,
            loop_policy(window=f"{window_hours}h", cooldown=f"{args.step_hours}h"),
            start_ms=T0_MS,
            passes=args.passes,
            step_ms=step,
            workdir=Path(workdir),
        )
    seconds = time.monotonic() - started
    rows = []
    for w in workloads:
        patches = [i for i, r in enumerate(w.records) if r.patched]
        final = w.records[-1]
        rows.append(
            {
                "workload": f"{w.scenario.name} ({w.manifest['metadata']['labels'][TIER]})",
                "patches": len(patches),
                "last_patch_pass": patches[-1] + 1 if patches else 0,
                "still_after": len(w.records) - 1 - (patches[-1] if patches else -1),
                "settling_passes": sum(r.action == "Settling" for r in w.records),
                "final_cpu_request_m": final.cpu_request,
                "final_cpu_limit_m": final.cpu_limit,
                "final_workers": final.workers,
                "final_throttle_ratio": final.throttle_ratio,
                "path": [(r.cpu_request, r.cpu_limit, r.workers) for r in w.records],
            }
        )
    document = {
        "code": code_version(),
        "passes": args.passes,
        "step_hours": args.step_hours,
        "window_hours": window_hours,
        "seconds": round(seconds, 1),
        "workloads": rows,
    }
    args.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(
        "| workload | patches | settling | still after | final request / limit | workers "
        "| final ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        ratio = row["final_throttle_ratio"]
        print(
            f"| {row['workload']} | {row['patches']} | {row['settling_passes']} | "
            f"{row['still_after']} | "
            f"{row['final_cpu_request_m']}m / {row['final_cpu_limit_m']}m | "
            f"{row['final_workers'] or '-'} | {'-' if ratio is None else f'{ratio:.1%}'} |"
        )
    print(f"\n{args.passes} passes of {len(rows)} workloads in {seconds:.1f}s")


if __name__ == "__main__":
    main()
