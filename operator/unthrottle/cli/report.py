"""``unthrottle report``: throttle-aware recommendations for a cluster, from its Prometheus.

Nothing is installed in the cluster: the report reads the series a kube-prometheus-stack
install keeps, runs the engine on every container of every Deployment in scope and prints
a table (for people), JSON or YAML (for tooling; documented in docs/cli.md). Progress goes
to standard error. Exit codes: 0 report printed; 1 Prometheus unreachable or failing;
2 bad arguments; 3 required series missing (each named); 5 the API server could not be
read (with ``--kubeconfig``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from unthrottle.cli.html_report import render_html_report
from unthrottle.cli.output import OutputFormat, render_table, write_document
from unthrottle.cli.reading import (
    EXIT_KUBERNETES,
    EXIT_MISSING_SERIES,
    EXIT_PROMETHEUS,
    EXIT_USAGE,
    add_reading_arguments,
    read,
)
from unthrottle.model.policy import MIN_WINDOW_MS, Mode, ThrottlePolicySpec, Tier
from unthrottle.model.quantity import format_bytes, format_duration
from unthrottle.model.recommendation import (
    NoRecommendation,
    NoRecommendationReason,
    Recommendation,
    RecommendationResult,
    output_fields,
)
from unthrottle.model.stats import ContainerResources, ContainerStats
from unthrottle.model.workload import DeploymentInfo, NodeCpu, WorkloadRef
from unthrottle.reconcile.plan import PassPlan, plan_pass
from unthrottle.reconcile.scope import OperatorScope
from unthrottle.reconcile.snapshot import ClusterSnapshot, Instant, MetricsSnapshot, PolicyObject
from unthrottle.reconcile.status import change, cpu_text, current_of, memory_text, ratio_text
from unthrottle.sources.prometheus import FetchResult

__all__ = [
    "EXIT_KUBERNETES",
    "EXIT_MISSING_SERIES",
    "EXIT_PROMETHEUS",
    "EXIT_USAGE",
    "ReportRow",
    "build_report",
    "register",
    "render_report_table",
    "report_document",
    "report_notes",
    "report_plan",
    "report_rows",
    "run",
]

TABLE_WIDTH = 120


@dataclass(frozen=True)
class ReportRow:
    """One container of one workload and what the engine made of it."""

    ref: WorkloadRef
    tier: Tier
    container: ContainerResources
    stats: ContainerStats | None
    result: RecommendationResult


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "report",
        help="recommend for every Deployment from a cluster's Prometheus (dry run)",
        description=(
            "Read a cluster's Prometheus and print throttle-aware recommendations for "
            "every container of every Deployment in scope. Changes nothing."
        ),
    )
    add_reading_arguments(parser)
    parser.add_argument(
        "--output",
        "-o",
        choices=[f.value for f in OutputFormat],
        default=OutputFormat.TABLE.value,
        help="table (default), json, yaml, or html: one self-contained page with charts",
    )
    parser.add_argument(
        "--output-file", metavar="FILE", help="write the report to FILE instead of stdout"
    )
    parser.set_defaults(run=run)


REPORT_POLICY = "report"  # the name the report's plan runs under (it writes nothing)


def report_plan(
    fetched: FetchResult,
    policy: ThrottlePolicySpec,
    deployments: list[DeploymentInfo] | None = None,
    *,
    now: Instant | None = None,
    node_cpu: NodeCpu | None = None,
) -> PassPlan:
    """The operator's own plan of a pass over what was read, in Recommend mode, so the
    report (and export) and the operator cannot disagree on a number.

    With ``deployments`` (from the API server) the scope is those Deployments, with their
    configuration, tier labels and opt-outs; without, every workload Prometheus knows,
    configured as kube-state-metrics saw its newest pods.
    """
    if deployments is None:
        deployments = [
            DeploymentInfo(ref=w.ref, containers=tuple(s.container for s in w.containers))
            for w in fetched.workloads
        ]
    snapshot = ClusterSnapshot(
        bounds=OperatorScope(""),
        namespace_labels=None,  # the scope was chosen when reading
        deployments=tuple(deployments),
        metrics=MetricsSnapshot(
            workloads=tuple(fetched.workloads),
            source="",
            warnings=tuple(fetched.warnings),
            unusable_series=fetched.unusable_series,
        ),
        node_cpu=node_cpu,
    )
    recommend_only = policy.model_copy(update={"mode": Mode.RECOMMEND})
    report = PolicyObject(REPORT_POLICY, 0, ("", REPORT_POLICY), recommend_only)
    return plan_pass(report, snapshot, now or Instant.from_ms(int(fetched.end * 1000)))


def report_rows(plan: PassPlan) -> list[ReportRow]:
    """One row per container of every workload the plan covers."""
    rows = []
    for outcome in plan.outcomes:
        configured = {c.name: c for c in outcome.containers}
        for decision in outcome.decision.containers:
            rows.append(
                ReportRow(
                    outcome.ref,
                    outcome.tier,
                    configured[decision.name],
                    outcome.stats.get(decision.name),
                    decision.result,
                )
            )
    return rows


def build_report(
    fetched: FetchResult,
    policy: ThrottlePolicySpec,
    deployments: list[DeploymentInfo] | None = None,
    *,
    now: Instant | None = None,
) -> list[ReportRow]:
    """The engine's answer for every container in scope (:func:`report_plan`)."""
    return report_rows(report_plan(fetched, policy, deployments, now=now))


def report_document(rows: list[ReportRow], fetched: FetchResult, url: str) -> dict[str, Any]:
    """The JSON/YAML report (docs/cli.md, ``unthrottle report``)."""
    workloads = []
    for row in rows:
        evidence = row.result.evidence
        workloads.append(
            {
                "namespace": row.ref.namespace,
                "kind": row.ref.kind.value,
                "name": row.ref.name,
                "container": row.container.name,
                "tier": row.tier.value,
                "current": current_of(row.container).model_dump(mode="json", by_alias=True),
                "recommended": None
                if isinstance(row.result, NoRecommendation)
                else output_fields(row.result),
                "evidence": None
                if evidence is None
                else {
                    "throttleRatio": evidence.throttle_ratio,
                    "cpuUsageP99": evidence.cpu_usage_p99 / 1000,
                    "demandP99": evidence.demand_p99 / 1000,
                    "rssMax": None if evidence.rss_max is None else format_bytes(evidence.rss_max),
                    "samples": evidence.samples,
                    "signals": list(evidence.signals),
                },
                "diagnosis": [d.value for d in row.result.diagnosis],
                "reason": row.result.reason.value
                if isinstance(row.result, NoRecommendation)
                else None,
            }
        )
    return {
        "prometheus": url,
        "window": fetched.resolution.window,
        "step": fetched.resolution.step,
        "queries": fetched.queries,
        "usageSeries": list(fetched.usage_series),
        "optionalSeries": sorted(fetched.optional_series),
        "partial": fetched.partial,
        "workloads": workloads,
    }


def render_report_table(rows: list[ReportRow]) -> str:
    """The report for a terminal of 120 columns: current→recommended per container."""
    headers = [
        "WORKLOAD",
        "CONTAINER",
        "THROTTLED",
        "CPU REQ",
        "CPU LIMIT",
        "BURST",
        "MEMORY",
        "WORKERS",
        "DIAGNOSIS",
    ]
    table: list[list[str]] = []
    for row in rows:
        c, r = row.container, row.result
        before = "-" if row.stats is None else ratio_text(row.stats.cpu.throttled_period_ratio)
        workers_now = "-" if c.web_concurrency is None else str(c.web_concurrency)
        if isinstance(r, Recommendation):
            more = f" +{len(r.diagnosis) - 1}" if len(r.diagnosis) > 1 else ""
            cells = [
                change(before, ratio_text(r.projected_throttle_ratio)),
                change(cpu_text(c.cpu_request), cpu_text(r.cpu_request)),
                change(cpu_text(c.cpu_limit), cpu_text(r.cpu_limit)),
                f"{r.cpu_burst_us // 1000}ms" if r.cpu_burst_us else "-",
                change(memory_text(c.memory_limit), memory_text(r.memory_limit)),
                workers_now
                if r.web_concurrency is None
                else change(workers_now, str(r.web_concurrency)),
                r.diagnosis[0].value + more,
            ]
        else:
            cells = [
                before,
                cpu_text(c.cpu_request),
                cpu_text(c.cpu_limit),
                "-",
                memory_text(c.memory_limit),
                workers_now,
                r.reason.value,
            ]
        table.append([str(row.ref), c.name, *cells])
    return render_table(headers, table, max_width=TABLE_WIDTH)


def report_notes(
    rows: list[ReportRow], policy: ThrottlePolicySpec, namespaces: list[str] | None
) -> list[str]:
    """What a person must know about a report that says little: nothing in scope, or
    containers without the history the window asks for (and a window their data covers)."""
    if not rows:
        where = f" (namespace {', '.join(namespaces)})" if namespaces else ""
        return [f"no Deployment in scope{where} has series in the window: nothing to report"]
    short = [
        row
        for row in rows
        if isinstance(row.result, NoRecommendation)
        and row.result.reason is NoRecommendationReason.INSUFFICIENT_DATA
    ]
    if not short:
        return []
    note = (
        f"{len(short)} of {len(rows)} containers have too little history for the "
        f"{format_duration(policy.window)} window (history.minSamples, history.minCoverage)"
    )
    covered = max(
        (r.stats.cpu.samples * r.stats.cpu.step_seconds for r in short if r.stats), default=0
    )
    if covered * 1000 >= MIN_WINDOW_MS:
        note += f"; their data covers at most --window {format_duration(covered * 1000)}"
    return [note]


def _progress(message: str) -> None:
    print(f"unthrottle report: {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, progress: Callable[[str], None] = _progress) -> int:
    reading = read(args, "report", progress)
    if isinstance(reading, int):
        return reading
    policy, fetched, config = reading.policy, reading.fetched, reading.config
    rows = build_report(fetched, policy, reading.deployments)
    for note in report_notes(rows, policy, reading.namespaces):
        progress(note)
    fmt = OutputFormat(args.output)
    with _destination(args.output_file) as stream:
        if fmt in (OutputFormat.JSON, OutputFormat.YAML):
            write_document(report_document(rows, fetched, config.display_url), fmt, stream)
        elif fmt is OutputFormat.HTML:
            window = format_duration(policy.window)
            stream.write(
                render_html_report(
                    rows, target=policy.throttle_target, source=config.display_url, window=window
                )
            )
        else:
            stream.write(render_report_table(rows))
    if args.output_file:
        progress(f"wrote {args.output_file}")
    return 0


@contextlib.contextmanager
def _destination(path: str | None) -> Iterator[TextIO]:
    """The output file (written whole or not at all), or standard output."""
    if not path:
        yield sys.stdout
        return
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as stream:
            yield stream
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
