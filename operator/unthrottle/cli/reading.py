"""What ``report``, ``export`` and ``explain`` read, and the flags they share.

One reading for the three: the policy (``--policy`` and the overrides), Prometheus (its
URL, credentials and matchers, the operator's own configuration builder), and the API
server when a kubeconfig is given or the command needs it: the namespaces and workloads
the operator's selectors choose (``namespaceSelector``, ``selector``, with ``-n``,
``--namespace-selector`` and ``-l`` narrowing them), their configuration and applied
burst, and for ``export`` the facts its guardrails need (HPAs on CPU, the nodes' allocatable CPU).

Run as the kubectl plugin (``kubectl unthrottle``) the kubeconfig is kubectl's
(``KUBECONFIG``, else ~/.kube/config; ``--context``) and the namespace defaults to the
context's, as ``kubectl get`` does; ``-A`` reads every namespace.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from unthrottle.cli.inputs import load_document
from unthrottle.model.fields import unknown_fields, unknown_keys, validation_message
from unthrottle.model.names import SYSTEM_NAMESPACES
from unthrottle.model.policy import MIN_WINDOW_MS, ThrottlePolicySpec, Tier
from unthrottle.model.quantity import QuantityError, format_duration, parse_duration_ms
from unthrottle.model.workload import DeploymentInfo, NodeCpu, WorkloadRef
from unthrottle.reconcile.read import prometheus_config
from unthrottle.reconcile.scope import unusable_text
from unthrottle.sources.kubeapi import KubeApi
from unthrottle.sources.kubernetes import KubernetesError, KubernetesSource
from unthrottle.sources.prometheus import (
    FetchResult,
    PrometheusConfig,
    PrometheusError,
    PrometheusSource,
)

__all__ = [
    "EXIT_KUBERNETES",
    "EXIT_MISSING_SERIES",
    "EXIT_PROMETHEUS",
    "EXIT_USAGE",
    "Reading",
    "add_reading_arguments",
    "read",
]

EXIT_PROMETHEUS = 1
EXIT_USAGE = 2
EXIT_MISSING_SERIES = 3
EXIT_KUBERNETES = 5
TOKEN_ENV = "UNTHROTTLE_PROMETHEUS_TOKEN"
PASSWORD_ENV = "UNTHROTTLE_PROMETHEUS_PASSWORD"
URL_ENV = "UNTHROTTLE_PROMETHEUS_URL"
FORBIDDEN = 403


@dataclass(frozen=True)
class Reading:
    """Everything a command read: the policy, Prometheus' answer, and the cluster's facts."""

    policy: ThrottlePolicySpec
    config: PrometheusConfig
    fetched: FetchResult
    namespaces: list[str] | None
    deployments: list[DeploymentInfo] | None = None  # None: not read from the API server
    cpu_autoscaled: frozenset[WorkloadRef] = field(default_factory=frozenset)
    node_cpu: NodeCpu | None = None


# Long: one declaration per flag, in the order --help lists them, read best as one table.
def add_reading_arguments(parser: argparse.ArgumentParser, *, cluster: bool = False) -> None:
    """The flags of Prometheus, the policy and the scope (``cluster``: the API server is read
    always, with kubectl's default kubeconfig when none is given)."""
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
        help="a namespace (repeatable; default: all the policy selects, or the context's "
        "as the kubectl plugin)",
    )
    parser.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        help="every namespace the policy's namespaceSelector selects",
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        help="the API server's kubeconfig"
        + (
            " (default: in-cluster, then KUBECONFIG or ~/.kube/config)"
            if cluster
            else ": also read Deployment labels, WEB_CONCURRENCY, ReplicaSets"
        ),
    )
    parser.add_argument("--context", metavar="NAME", help="the kubeconfig context to use")
    parser.add_argument(
        "--selector",
        "-l",
        metavar="LABELS",
        help="workloads with these labels only, with the policy's selector "
        "(e.g. app=web,tier!=batch); needs the API server",
    )
    parser.add_argument(
        "--namespace-selector",
        metavar="LABELS",
        help="namespaces with these labels only, with the policy's namespaceSelector",
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
        "--compress-answers",
        action="store_const",
        const=True,
        default=None,
        help="ask Prometheus for gzip answers (a slow link; costs Prometheus CPU)",
    )
    parser.add_argument(
        "--at",
        type=float,
        default=None,
        metavar="EPOCH",
        help="evaluate at this time (epoch seconds; default now)",
    )
    parser.set_defaults(needs_cluster=cluster, kubectl=False)


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
        compress_answers=args.compress_answers,
    )


def _and(*queries: str | None) -> str:
    """Label selector queries that must all hold, as one query."""
    return ",".join(q for q in queries if q)


def kubeconfig_path(args: argparse.Namespace) -> str | None:
    """The kubeconfig to read: the flag's; as the kubectl plugin, kubectl's (KUBECONFIG,
    else ~/.kube/config, never in-cluster credentials)."""
    if args.kubeconfig or not args.kubectl:
        return str(args.kubeconfig) if args.kubeconfig else None
    return os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())


def _uses_cluster(args: argparse.Namespace) -> bool:
    return bool(args.kubeconfig or args.context or args.needs_cluster or args.kubectl)


@dataclass
class _Cluster:
    namespaces: list[str] | None
    deployments: list[DeploymentInfo]
    owners: dict[tuple[str, str], str]
    cpu_autoscaled: frozenset[WorkloadRef] = frozenset()
    node_cpu: NodeCpu | None = None


def _read_cluster(
    args: argparse.Namespace, policy: ThrottlePolicySpec, say: Callable[[str], None]
) -> _Cluster:
    path = kubeconfig_path(args)
    namespaces: list[str] | None = list(args.namespace) or None
    if namespaces is None and args.kubectl and not args.all_namespaces:
        namespaces = [KubeApi.context_namespace(path, args.context)]
    kube = KubernetesSource.from_kubeconfig(path, args.context)
    try:
        ns_query = _and(policy.namespace_selector.to_query(), args.namespace_selector)
        if namespaces is None or ns_query:
            found = kube.namespaces(ns_query, exclude=() if ns_query else SYSTEM_NAMESPACES)
            namespaces = found if namespaces is None else [n for n in namespaces if n in found]
        selector = _and(policy.selector.to_query(), args.selector)
        deployments = kube.workloads(
            namespaces, selector, policy.web_concurrency.env_name, policy.kinds
        )
        owners = kube.replicaset_owners(namespaces)
        try:
            deployments = kube.with_applied_bursts(deployments, owners)
        except KubernetesError as exc:
            # Pods are read only for the agent's report: without them every burst is
            # advisory, which errs on the safe side.
            say(f"cannot read pods, so no burst counts as applied: {exc}")
        cluster = _Cluster(namespaces, deployments, owners)
        if args.needs_cluster:
            cluster.cpu_autoscaled = frozenset(kube.cpu_autoscaled(namespaces))
            try:
                cluster.node_cpu = kube.node_cpu()
            except KubernetesError as exc:
                if exc.status != FORBIDDEN:
                    raise
                # A namespaced user may not list nodes: the size check is then left out.
        return cluster
    finally:
        kube.close()


def _progress(command: str) -> Callable[[str], None]:
    def progress(message: str) -> None:
        print(f"unthrottle {command}: {message}", file=sys.stderr, flush=True)

    return progress


def _fail(command: str, message: str) -> None:
    print(f"unthrottle {command}: {message}", file=sys.stderr)


def _settings(
    args: argparse.Namespace, command: str
) -> tuple[ThrottlePolicySpec, PrometheusConfig] | int:
    """The policy and the Prometheus configuration of the flags, or the usage exit code."""
    if not args.prometheus_url:
        _fail(command, f"--prometheus-url (or {URL_ENV}) is required")
        return EXIT_USAGE
    try:
        policy = _policy(args)
        config = _config(args, policy)
    except OSError as exc:
        _fail(command, f"cannot read {exc.filename}: {exc.strerror}")
        return EXIT_USAGE
    except (ValueError, QuantityError) as exc:
        _fail(command, str(exc))
        return EXIT_USAGE
    if args.namespace and args.all_namespaces:
        _fail(command, "give --namespace or --all-namespaces, not both")
        return EXIT_USAGE
    if (args.selector or args.namespace_selector) and not _uses_cluster(args):
        _fail(command, "--selector needs --kubeconfig (labels come from the API server)")
        return EXIT_USAGE
    return policy, config


def _fetch(
    config: PrometheusConfig,
    policy: ThrottlePolicySpec,
    namespaces: list[str] | None,
    cluster: _Cluster | None,
    *,
    at: float | None,
    say: Callable[[str], None],
) -> FetchResult:
    """One fetch of the policy's window over the namespaces; raises PrometheusError."""
    with PrometheusSource(config) as source:
        version = source.build_info().get("version", "?")
        window = format_duration(policy.window)
        say(f"Prometheus {version} at {config.display_url}; reading {window}")
        return source.fetch(
            policy.window,
            namespaces=namespaces,
            end=at,
            replicaset_owners=cluster.owners if cluster else {},
        )


def _say_fetched(fetched: FetchResult, started: float, say: Callable[[str], None]) -> None:
    """What the fetch found, and what Prometheus warned of or gave unusable."""
    containers = sum(len(w.containers) for w in fetched.workloads)
    say(
        f"{len(fetched.workloads)} workloads, {containers} containers in "
        f"{fetched.queries} queries ({time.monotonic() - started:.1f}s)"
    )
    if fetched.warnings:
        say("Prometheus warned the data may be partial: " + "; ".join(fetched.warnings))
    if fetched.unusable_series:
        say(unusable_text(fetched.unusable_series) + ": left out")


def read(
    args: argparse.Namespace,
    command: str,
    progress: Callable[[str], None] | None = None,
) -> Reading | int:
    """What ``command`` works from, or the exit code after a one-line error."""
    say = progress or _progress(command)
    settings = _settings(args, command)
    if isinstance(settings, int):
        return settings
    policy, config = settings
    started = time.monotonic()
    cluster: _Cluster | None = None
    namespaces: list[str] | None = list(args.namespace) or None
    if _uses_cluster(args):
        try:
            cluster = _read_cluster(args, policy, say)
        except KubernetesError as exc:
            _fail(command, str(exc))
            return EXIT_KUBERNETES
        namespaces = cluster.namespaces
        count = len(cluster.deployments)
        where = "every namespace" if namespaces is None else f"{len(namespaces)} namespaces"
        say(f"{count} workloads in {where} from the API")
    try:
        fetched = _fetch(config, policy, namespaces, cluster, at=args.at, say=say)
    except PrometheusError as exc:
        _fail(command, str(exc))
        return EXIT_PROMETHEUS
    _say_fetched(fetched, started, say)
    if fetched.missing_series:
        missing = ", ".join(sorted(fetched.missing_series))
        _fail(command, f"required series missing in {config.display_url}: {missing}")
        return EXIT_MISSING_SERIES
    if cluster is None:
        return Reading(policy, config, fetched, namespaces)
    return Reading(
        policy,
        config,
        fetched,
        namespaces,
        cluster.deployments,
        cluster.cpu_autoscaled,
        cluster.node_cpu,
    )
