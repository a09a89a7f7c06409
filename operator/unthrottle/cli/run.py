"""``unthrottle run``: the operator. kopf watches ThrottlePolicies cluster-wide; each pass
reads and writes Deployments in the namespaces this process may manage.

The Prometheus URL comes from ``--prometheus-url`` or ``UNTHROTTLE_PROMETHEUS_URL`` (a
policy's ``spec.prometheus.url`` wins); the operator's own namespace, excluded from every
default scope, from ``UNTHROTTLE_NAMESPACE``. A liveness endpoint (``/healthz``) and the
operator's metrics (``/metrics``) are served on their own ports.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

import kopf

from unthrottle import handlers
from unthrottle.handlers.metrics import serve
from unthrottle.handlers.policy import OperatorMemo
from unthrottle.reconcile.run import OperatorSettings
from unthrottle.sources.kubeapi import KubernetesError
from unthrottle.sources.kubernetes import KubernetesSource

__all__ = ["register", "run"]

EXIT_KUBERNETES = 5


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "run",
        help="run the operator",
        description=(
            "Run the operator: reconcile every ThrottlePolicy (annotate, report, and patch "
            "the namespaces labelled unthrottle.dev/auto-patch=enabled under AutoPatch)."
        ),
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="manage every namespace (default)"
    )
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="manage only these namespaces (repeatable)",
    )
    parser.add_argument(
        "--prometheus-url",
        default=os.environ.get("UNTHROTTLE_PROMETHEUS_URL"),
        metavar="URL",
        help="Prometheus base URL (env UNTHROTTLE_PROMETHEUS_URL; a policy's own URL wins)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        metavar="PATH",
        help="a kubeconfig (default: in-cluster, then ~/.kube/config)",
    )
    parser.add_argument(
        "--operator-namespace",
        default=os.environ.get("UNTHROTTLE_NAMESPACE", "unthrottle-system"),
        metavar="NS",
        help="the operator's own namespace, never in a default scope (env "
        "UNTHROTTLE_NAMESPACE; default %(default)s)",
    )
    parser.add_argument(
        "--health-port", type=int, default=8080, help="liveness (/healthz); default %(default)s"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=9100, help="metrics (/metrics); default %(default)s"
    )
    parser.add_argument(
        "--bind", default="0.0.0.0", help="address of the two endpoints; default %(default)s"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig  # kopf's own login reads it too
    try:
        kube = KubernetesSource.from_kubeconfig(args.kubeconfig)
    except KubernetesError as exc:
        print(f"unthrottle run: {exc}", file=sys.stderr)
        return EXIT_KUBERNETES
    settings = OperatorSettings(
        prometheus_url=args.prometheus_url,
        operator_namespace=args.operator_namespace,
        namespaces=tuple(args.namespace) or None,
    )
    serve(args.metrics_port, args.bind)
    logging.getLogger("unthrottle").info(
        "starting: namespaces %s, Prometheus %s, handlers %s",
        ",".join(settings.namespaces or ("*",)),
        settings.prometheus_url or "(per policy)",
        handlers.__name__,
    )
    kopf.run(
        clusterwide=True,
        standalone=True,
        liveness_endpoint=f"http://{args.bind}:{args.health_port}/healthz",
        memo=OperatorMemo(kube=kube, settings=settings),
    )
    return 0
