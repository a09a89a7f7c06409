"""``unthrottle explain NS/[KIND/]NAME``: one workload's recommendation, as a person reads it.

The same reading and plan as ``report`` and ``export`` (the operator's), narrowed to one
workload: per container what runs now, what is recommended, the evidence behind it (the
throttling, the usage and the demand the engine modelled, the memory), the diagnosis and
the engine's own sentence; then what ``export`` (AutoPatch without the rollout state)
would change, or why nothing. Exit code 4: no such workload in scope.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

from unthrottle.cli.export import change_text, export_decisions, exported
from unthrottle.cli.reading import EXIT_USAGE, add_reading_arguments, read
from unthrottle.cli.report import report_plan
from unthrottle.model.quantity import describe_bytes, format_duration
from unthrottle.model.recommendation import NoRecommendation, Recommendation, RecommendationResult
from unthrottle.model.stats import ContainerResources
from unthrottle.model.workload import WorkloadKind
from unthrottle.reconcile.snapshot import Instant
from unthrottle.reconcile.status import WorkloadOutcome, cpu_text, memory_text

__all__ = ["Target", "explain_text", "parse_target", "register", "run"]

EXIT_NOT_FOUND = 4


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "explain",
        help="one workload's recommendation with its evidence and reasoning",
        description="Explain the recommendation for one workload (NS/NAME, or NAME with -n).",
    )
    parser.add_argument(
        "target",
        metavar="NS/NAME",
        help="the workload, e.g. shop/checkout, or with its kind: shop/statefulset/db",
    )
    add_reading_arguments(parser, cluster=True)
    parser.set_defaults(run=run)


def _cores(millicores: int) -> str:
    return f"{millicores / 1000:.2f}"


def _resources(c: ContainerResources | Recommendation, burst: int | None = None) -> str:
    parts = [f"cpu request {cpu_text(c.cpu_request)}", f"cpu limit {cpu_text(c.cpu_limit)}"]
    if burst:
        parts.append(f"burst {burst // 1000}ms")
    parts += [
        f"memory request {memory_text(c.memory_request)}",
        f"memory limit {memory_text(c.memory_limit)}",
    ]
    if c.web_concurrency is not None:
        parts.append(f"workers {c.web_concurrency}")
    return ", ".join(parts)


def _evidence_lines(result: RecommendationResult, window_ms: int) -> list[str]:
    e = result.evidence
    if e is None:
        return []
    lines = [
        f"  throttled    in {e.throttle_ratio:.1%} of CFS periods over "
        f"{format_duration(window_ms)} ({e.samples} samples, {e.coverage:.0%} of the window)",
        f"  CPU use      p50 {_cores(e.cpu_usage_p50)}, p99 {_cores(e.cpu_usage_p99)} cores; "
        f"demand mean {_cores(e.demand_mean)}, p99 {_cores(e.demand_p99)} cores",
    ]
    if e.rss_max is not None:
        lines.append(f"  memory       RSS at most {describe_bytes(e.rss_max)}")
    if e.signals:
        lines.append(f"  signals      {', '.join(e.signals)}")
    return lines


def _container_lines(outcome: WorkloadOutcome, target: float, window_ms: int) -> list[str]:
    lines = []
    configured = {c.name: c for c in outcome.containers}
    for decision in outcome.decision.containers:
        result, now = decision.result, configured[decision.name]
        lines += ["", f"container {decision.name}", f"  now          {_resources(now)}"]
        if isinstance(result, NoRecommendation):
            lines.append(f"  no recommendation ({result.reason.value}): {result.message}")
        else:
            lines.append(f"  recommended  {_resources(result, result.cpu_burst_us)}")
        lines += _evidence_lines(result, window_ms)
        if isinstance(result, Recommendation):
            lines += [
                f"  diagnosis    {', '.join(d.value for d in result.diagnosis)}",
                f"  projected    {result.evidence.throttle_ratio:.1%} → "
                f"{result.projected_throttle_ratio:.1%} throttled (target {target:.1%})",
                f"  why          {result.explanation}",
            ]
    return lines


def explain_text(outcome: WorkloadOutcome, export_line: str, target: float, window: int) -> str:
    """The explanation of one workload (``export_line``: what export would do)."""
    ref = outcome.ref  # its kind first, so not as str(ref) names a StatefulSet's
    head = f"{ref.kind.value} {ref.namespace}/{ref.name}  (tier {outcome.tier.value})"
    lines = [head, *_container_lines(outcome, target, window), "", export_line]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Target:
    """The workload asked for: ``NS/NAME``, ``NS/KIND/NAME`` or ``NAME`` (namespace "")."""

    namespace: str
    kind: WorkloadKind | None  # None: any kind of that name
    name: str


def parse_target(text: str) -> Target | str:
    """``shop/checkout``, ``shop/statefulset/db`` (as export's summary prints it; kubectl's
    kind names and short names), or ``checkout``; else the one-line error."""
    parts = text.split("/")
    kind: WorkloadKind | None = None
    if len(parts) == 3:
        kind = WorkloadKind.from_kubectl(parts[1])
        if kind is None:
            return (
                f"{parts[1]!r} in {text!r} is not a workload kind "
                "(deployment, statefulset or daemonset)"
            )
        parts = [parts[0], parts[2]]
    if len(parts) > 2 or not all(parts):
        return f"give NS/NAME, NS/KIND/NAME, or NAME with one -n NS (got {text!r})"
    return Target(parts[0] if len(parts) == 2 else "", kind, parts[-1])


def run(args: argparse.Namespace) -> int:
    target = parse_target(args.target)
    no_namespace = not isinstance(target, str) and not target.namespace
    if no_namespace and len(args.namespace) != 1 and not args.kubectl:
        target = f"give NS/NAME, or NAME with one -n NS (got {args.target!r})"
    if isinstance(target, str):
        print(f"unthrottle explain: {target}", file=sys.stderr)
        return EXIT_USAGE
    namespace, name = target.namespace, target.name
    if namespace:
        args.namespace, args.all_namespaces = [namespace], False
    reading = read(args, "explain")
    if isinstance(reading, int):
        return reading
    mine = [
        d for d in reading.deployments or () if d.ref.name == name and target.kind in (None, d.kind)
    ]
    now = Instant.from_ms(int(reading.fetched.end * 1000))
    plan = report_plan(reading.fetched, reading.policy, mine, now=now, node_cpu=reading.node_cpu)
    if not plan.workloads:
        where = namespace or ", ".join(reading.namespaces or ())
        print(
            f"unthrottle explain: no {target.kind or 'workload'} {name} in scope in "
            f"namespace {where} "
            "(absent, opted out, or not selected by the policy)",
            file=sys.stderr,
        )
        return EXIT_NOT_FOUND
    decided = export_decisions(plan, reading, now)
    for workload, decision in decided:
        patches, unchanged = exported([(workload, decision)])
        if patches:
            # Within the step limits of one patch, so it can differ from "recommended".
            line = f"export / AutoPatch would change {change_text(patches[0].changes)}"
        else:
            line = f"export / AutoPatch would change nothing: {unchanged[0][1]}"
        text = explain_text(
            workload.outcome, line, reading.policy.throttle_target, reading.policy.window
        )
        sys.stdout.write(text)
    return 0
