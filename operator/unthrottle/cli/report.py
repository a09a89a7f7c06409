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
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from unthrottle.cli.html_report import render_html_report
from unthrottle.cli.inputs import load_document
from unthrottle.cli.output import OutputFormat, render, render_table
from unthrottle.model.fields import unknown_fields, unknown_keys, validation_message
from unthrottle.model.names import SYSTEM_NAMESPACES
from unthrottle.model.policy import MIN_WINDOW_MS, Mode, ThrottlePolicySpec, Tier
from unthrottle.model.quantity import (
    QuantityError,
    format_bytes,
    format_duration,
    parse_duration_ms,
)
from unthrottle.model.recommendation import (
    NoRecommendation,
    NoRecommendationReason,
    Recommendation,
    RecommendationResult,
    output_fields,
)
from unthrottle.model.stats import ContainerResources, ContainerStats
from unthrottle.model.workload import DeploymentInfo, WorkloadRef
from unthrottle.reconcile.plan import plan_pass
from unthrottle.reconcile.read import prometheus_config
from unthrottle.reconcile.scope import OperatorScope, unusable_text
from unthrottle.reconcile.snapshot import ClusterSnapshot, Instant, MetricsSnapshot, PolicyObject
from unthrottle.reconcile.status import change, cpu_text, current_of, memory_text, ratio_text
from unthrottle.sources.kubernetes import KubernetesError, KubernetesSource
from unthrottle.sources.prometheus import (
    FetchResult,
    PrometheusConfig,
    PrometheusError,
    PrometheusSource,
)

__all__ = [
    "ReportRow",
    "build_report",
    "register",
    "render_report_table",
    "report_document",
    "report_notes",
    "run",
]

EXIT_PROMETHEUS = 1
EXIT_USAGE = 2
EXIT_MISSING_SERIES = 3
EXIT_KUBERNETES = 5
TABLE_WIDTH = 120
TOKEN_ENV = "UNTHROTTLE_PROMETHEUS_TOKEN"
PASSWORD_ENV = "UNTHROTTLE_PROMETHEUS_PASSWORD"
URL_ENV = "UNTHROTTLE_PROMETHEUS_URL"


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
    parser.add_argument(
        "--prometheus-url",
        default=os.environ.get(URL_ENV),
        metavar="URL",
        help=f"Prometheus (or Thanos, Mimir, VictoriaMetrics) base URL (env {URL_ENV})",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="a namespace to report on (repeatable; default: all)",
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="also read the API server: Deployment labels, WEB_CONCURRENCY, ReplicaSets",
    )
    parser.add_argument(
        "--selector",
        "-l",
        metavar="LABELS",
        help="Deployments with these labels only (e.g. app=web,tier!=batch); needs --kubeconfig",
    )
    parser.add_argument("--tier", choices=[t.value for t in Tier], help="override the tier")
    parser.add_argument("--window", default=None, help="e.g. 7d (default), 1d, 5m")
    parser.add_argument(
        "--policy", metavar="FILE", help="a ThrottlePolicy YAML whose spec to apply"
    )
    parser.add_argument(
        "--match",
        action="append",
        default=[],
        metavar="LABEL=VALUE",
        help="an extra label matcher on every series, e.g. cluster=prod (repeatable)",
    )
    parser.add_argument(
        "--bearer-token-file",
        metavar="FILE",
        help=f"a file holding a bearer token (or env {TOKEN_ENV})",
    )
    parser.add_argument("--username", metavar="USER", help="basic auth user")
    parser.add_argument(
        "--password-file",
        metavar="FILE",
        help=f"a file holding the basic auth password (or env {PASSWORD_ENV})",
    )
    parser.add_argument("--ca-bundle", metavar="FILE", help="PEM CA bundle to verify TLS with")
    parser.add_argument(
        "--insecure-skip-verify", action="store_true", help="do not verify TLS (explicit)"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per query")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="queries in flight at once (1-32; default the policy's prometheus.concurrency, 4)",
    )
    parser.add_argument(
        "--at",
        type=float,
        default=None,
        metavar="EPOCH",
        help="evaluate at this time (epoch seconds; default now)",
    )
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


_POLICY_OBJECT = ("apiVersion", "kind", "metadata", "spec", "status")


def _policy_spec(path: str) -> tuple[dict[str, Any], str]:
    """The spec of the ThrottlePolicy (or bare spec) in ``path``, its fields all known, and
    the path of the spec in the file (``spec`` or none) for messages."""
    document = load_document(Path(path).read_text(encoding="utf-8"), f"--policy {path}") or {}
    unknown, prefix = [], ""
    if isinstance(document, dict) and "spec" in document:
        unknown, prefix = unknown_keys(document, _POLICY_OBJECT), "spec"
        document = document["spec"] or {}
    if not isinstance(document, dict):
        raise ValueError(f"--policy {path}: not a ThrottlePolicy or a ThrottlePolicy spec")
    unknown += unknown_fields(ThrottlePolicySpec, document, prefix)
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ValueError(f"--policy {path}: unknown field{plural}: {', '.join(unknown)}")
    return dict(document), prefix


def _window_ms(text: str) -> int:
    accepted = "a Prometheus duration of at least 5m, e.g. 30m, 6h, 7d"
    try:
        window = parse_duration_ms(text)
    except QuantityError:
        raise ValueError(f"--window {text!r}: not {accepted}") from None
    if window < MIN_WINDOW_MS:
        raise ValueError(f"--window {text!r}: too short; give {accepted}")
    return window


def _policy(args: argparse.Namespace) -> ThrottlePolicySpec:
    spec, prefix = _policy_spec(args.policy) if args.policy else ({}, "")
    if args.tier:
        spec["tier"] = args.tier
    if args.window:
        spec["window"] = _window_ms(args.window)
    try:
        return ThrottlePolicySpec.model_validate(spec)
    except ValidationError as exc:
        raise ValueError(f"--policy {args.policy}: {validation_message(exc, prefix)}") from None


def _matchers(pairs: Iterable[str]) -> dict[str, str]:
    matchers: dict[str, str] = {}
    for pair in pairs:
        label, sep, value = pair.partition("=")
        if not sep or not label:
            raise ValueError(f"--match wants LABEL=VALUE, got {pair!r}")
        matchers[label] = value
    return matchers


def _config(args: argparse.Namespace, policy: ThrottlePolicySpec) -> PrometheusConfig:
    token = os.environ.get(TOKEN_ENV)
    if args.bearer_token_file:
        token = Path(args.bearer_token_file).read_text(encoding="utf-8").strip()
    password = os.environ.get(PASSWORD_ENV)
    if args.password_file:
        password = Path(args.password_file).read_text(encoding="utf-8").strip()
    return prometheus_config(
        policy,
        args.prometheus_url,
        bearer_token=token or None,
        username=args.username,
        password=password if args.username else None,
        ca_bundle=args.ca_bundle,
        insecure_skip_verify=args.insecure_skip_verify,
        timeout_seconds=args.timeout,
        extra_matchers=_matchers(args.match),
        concurrency=args.concurrency,
    )


REPORT_POLICY = "report"  # the name the report's plan runs under (it writes nothing)


def build_report(
    fetched: FetchResult,
    policy: ThrottlePolicySpec,
    deployments: list[DeploymentInfo] | None = None,
    *,
    now: Instant | None = None,
) -> list[ReportRow]:
    """The engine's answer for every container in scope: the operator's own plan of a pass,
    in Recommend mode, so the report and the operator cannot disagree on a number.

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
            unusable_series=fetched.unusable_series,
        ),
    )
    recommend_only = policy.model_copy(update={"mode": Mode.RECOMMEND})
    report = PolicyObject(REPORT_POLICY, 0, ("", REPORT_POLICY), recommend_only)
    plan = plan_pass(report, snapshot, now or Instant.from_ms(int(fetched.end * 1000)))
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
    if not args.prometheus_url:
        print(f"unthrottle report: --prometheus-url (or {URL_ENV}) is required", file=sys.stderr)
        return EXIT_USAGE
    try:
        policy = _policy(args)
        config = _config(args, policy)
    except OSError as exc:
        print(f"unthrottle report: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, QuantityError) as exc:
        print(f"unthrottle report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.selector and not args.kubeconfig:
        print(
            "unthrottle report: --selector needs --kubeconfig (Deployment labels come from "
            "the API server)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    started = time.monotonic()
    namespaces: list[str] | None = args.namespace or None
    deployments: list[DeploymentInfo] | None = None
    owners: dict[tuple[str, str], str] = {}
    if args.kubeconfig:
        try:
            kube = KubernetesSource.from_kubeconfig(args.kubeconfig)
            try:
                if namespaces is None:
                    namespaces = kube.namespaces(
                        policy.namespace_selector.to_query(),
                        exclude=SYSTEM_NAMESPACES if policy.namespace_selector.is_empty() else (),
                    )
                selector = args.selector or policy.selector.to_query()
                deployments = kube.workloads(
                    namespaces, selector, policy.web_concurrency.env_name, policy.kinds
                )
                owners = kube.replicaset_owners(namespaces)
                try:
                    deployments = kube.with_applied_bursts(deployments, owners)
                except KubernetesError as exc:
                    # Pods are read only for the agent's report: without them every
                    # burst is advisory, which errs on the safe side.
                    progress(f"cannot read pods, so no burst counts as applied: {exc}")
            finally:
                kube.close()
        except KubernetesError as exc:
            print(f"unthrottle report: {exc}", file=sys.stderr)
            return EXIT_KUBERNETES
        progress(f"{len(deployments)} workloads in {len(namespaces)} namespaces from the API")
    try:
        with PrometheusSource(config) as source:
            version = source.build_info().get("version", "?")
            window = format_duration(policy.window)
            progress(f"Prometheus {version} at {config.display_url}; reading {window}")
            fetched = source.fetch(
                policy.window, namespaces=namespaces, end=args.at, replicaset_owners=owners
            )
    except PrometheusError as exc:
        print(f"unthrottle report: {exc}", file=sys.stderr)
        return EXIT_PROMETHEUS
    containers = sum(len(w.containers) for w in fetched.workloads)
    progress(
        f"{len(fetched.workloads)} Deployments, {containers} containers in "
        f"{fetched.queries} queries ({time.monotonic() - started:.1f}s)"
    )
    if fetched.warnings:
        progress("Prometheus warned the data may be partial: " + "; ".join(fetched.warnings))
    if fetched.unusable_series:
        progress(unusable_text(fetched.unusable_series) + ": left out")
    if fetched.missing_series:
        print(
            "unthrottle report: required series missing in "
            f"{config.display_url}: {', '.join(sorted(fetched.missing_series))}",
            file=sys.stderr,
        )
        return EXIT_MISSING_SERIES
    rows = build_report(fetched, policy, deployments)
    for note in report_notes(rows, policy, namespaces):
        progress(note)
    document = report_document(rows, fetched, config.display_url)
    if args.output == OutputFormat.HTML:
        window = format_duration(policy.window)
        text = render_html_report(
            rows, target=policy.throttle_target, source=config.display_url, window=window
        )
    else:
        text = render(document, OutputFormat(args.output), render_report_table(rows))
    if args.output_file:
        Path(args.output_file).write_text(text, encoding="utf-8")
        progress(f"wrote {args.output_file}")
    else:
        sys.stdout.write(text)
    return 0
