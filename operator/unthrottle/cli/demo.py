"""``unthrottle demo``: the whole job on an embedded default, on this machine.

It renders the simulator's scenarios from the seeds (quota-bound, micro-bursting, GIL
threads, over-provisioned, healthy, memory growth, OOM-killed, workers above cores) as
the cAdvisor and kube-state-metrics series of a default kube-prometheus-stack install,
backfills them into a real Prometheus started on loopback, and runs ``unthrottle report``
against it. The Prometheus stays up (until Ctrl-C) so that the report can be run again
with other flags; ``--exit`` stops it after the report.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from unthrottle.cli import report
from unthrottle.sandbox.prometheus import HarnessError, PrometheusServer
from unthrottle.sim.openmetrics import write_openmetrics
from unthrottle.sim.scenarios import all_scenarios

__all__ = ["register", "run"]

EXIT_SANDBOX = 4
STEP_MS = 30_000
MS_PER_HOUR = 3_600_000


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="simulated throttled workloads in a local Prometheus, and the report on them",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument(
        "--hours", type=int, default=6, help="hours of simulated history (default 6)"
    )
    parser.add_argument("--workdir", type=Path, help="where to keep the data (default: a temp dir)")
    parser.add_argument(
        "--exit", action="store_true", help="stop Prometheus after printing the report"
    )
    parser.add_argument("--output", "-o", choices=["table", "json", "yaml"], default="table")
    parser.set_defaults(run=run)


def _say(message: str) -> None:
    print(f"unthrottle demo: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    if args.hours < 1:
        _say("--hours must be at least 1")
        return report.EXIT_USAGE
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="unthrottle-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    end_ms = int(time.time() * 1000) // STEP_MS * STEP_MS
    start_ms = end_ms - args.hours * MS_PER_HOUR
    scenarios = all_scenarios()
    series = workdir / "scenarios.om"
    _say(f"simulating {len(scenarios)} workloads over {args.hours}h into {series}")
    with series.open("w", encoding="utf-8") as handle:
        write_openmetrics(handle, scenarios, start_ms, end_ms, step_ms=STEP_MS)
    try:
        _say("backfilling and starting Prometheus on loopback")
        server = PrometheusServer.with_data(workdir / "prometheus", [series])
    except HarnessError as exc:
        _say(str(exc))
        return EXIT_SANDBOX
    try:
        _say(f"Prometheus is up at {server.url}")
        # The report's own argument parser, so the demo runs exactly what a user would.
        parser = argparse.ArgumentParser(prog="unthrottle")
        report.register(parser.add_subparsers())
        report_args = parser.parse_args(
            [
                *("report", "--prometheus-url", server.url, "--window", f"{args.hours}h"),
                *("--at", str((end_ms - 1) / 1000), "--output", args.output),
            ]
        )
        code = report.run(report_args)
        if code != 0 or args.exit:
            return code
        print(
            "\nTry next (Prometheus keeps running until Ctrl-C):\n"
            f"  unthrottle report --prometheus-url {server.url} --window {args.hours}h -o json\n"
            f"  unthrottle report --prometheus-url {server.url} --window {args.hours}h "
            "--tier critical\n"
            "  unthrottle recommend --input FILE   (one container, what-if; see docs/cli.md)\n"
            f"  the raw series: {server.url}/graph?g0.expr="
            "container_cpu_cfs_throttled_periods_total\n",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while server.process is not None and server.process.poll() is None:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        server.stop()
