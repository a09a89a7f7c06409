"""``unthrottle run``: the operator. kopf watches ThrottlePolicies cluster-wide; each pass
reads and writes Deployments in the namespaces this process may manage.

The Prometheus URL comes from ``--prometheus-url`` or ``UNTHROTTLE_PROMETHEUS_URL`` (a
policy's ``spec.prometheus.url`` wins); the operator's own namespace, excluded from every
default scope, from ``UNTHROTTLE_NAMESPACE``. A liveness endpoint (``/healthz``) and the
operator's metrics (``/metrics``) are served on their own ports.

Leader election: before kopf starts, the instance takes the ``coordination.k8s.io`` Lease
``--lease-name`` in its own namespace (:mod:`unthrottle.handlers.leader`); until then it
waits as a standby, answering ``/healthz`` and reconciling nothing. The leader renews
the Lease while kopf runs; when it loses the Lease it exits at once (exit status 6, so a
pass in flight writes no more) and its pod restarts as a standby. On a normal stop it
releases the Lease, so a standby takes over within one retry period.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import socket
import sys
import threading
from typing import Any

import kopf

from unthrottle import handlers
from unthrottle.handlers.leader import LEADING, LeaderElector, standby_health
from unthrottle.handlers.metrics import serve
from unthrottle.handlers.policy import OperatorMemo
from unthrottle.model.lease import LeaseTimings
from unthrottle.reconcile.run import OperatorSettings
from unthrottle.sources.kubeapi import KubernetesError
from unthrottle.sources.kubernetes import KubernetesSource

__all__ = ["register", "run"]

EXIT_USAGE = 2
EXIT_KUBERNETES = 5
EXIT_LEASE_LOST = 6
DEFAULT_TIMINGS = LeaseTimings()
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
    _lease_arguments(parser)
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    parser.set_defaults(run=run)


def _lease_arguments(parser: argparse.ArgumentParser) -> None:
    lease = parser.add_argument_group(
        "leader election", "one instance leads (holds the Lease), the others wait as standbys"
    )
    lease.add_argument(
        "--lease-name",
        default="unthrottle",
        metavar="NAME",
        help="the coordination.k8s.io Lease, in --operator-namespace; default %(default)s",
    )
    timings = (
        ("duration", DEFAULT_TIMINGS.duration, "a standby takes a Lease left unrenewed this long"),
        (
            "renew-deadline",
            DEFAULT_TIMINGS.renew_deadline,
            "the leader exits when it could not renew for this long",
        ),
        (
            "retry-period",
            DEFAULT_TIMINGS.retry_period,
            "how often the leader renews and a standby tries",
        ),
    )
    for name, default, what in timings:
        lease.add_argument(
            f"--lease-{name}",
            type=float,
            default=default,
            metavar="SECONDS",
            help=f"{what}; default %(default)g",
        )
    lease.add_argument(
        "--no-leader-election",
        dest="leader_election",
        action="store_false",
        help="run at once without a Lease (only safe when no other instance ever runs)",
    )


def _identity() -> str:
    """The pod's name (POD_NAME, from the downward API) and a random suffix: a restarted
    container of the same pod is a new holder, never mistaken for the old one."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}-{secrets.token_hex(3)}"


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
    timings = LeaseTimings(args.lease_duration, args.lease_renew_deadline, args.lease_retry_period)
    if args.leader_election and (problem := timings.problem()):
        print(f"unthrottle run: {problem}", file=sys.stderr)
        return EXIT_USAGE
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
    # Stops the standby's wait (SIGTERM, Ctrl-C) and the leader's renewals. Not kopf's
    # stop_flag: kopf waits for a threading.Event in an executor thread that its loop's
    # shutdown then joins, so kopf.run would never return on a signal. kopf stops on the
    # signals itself; a lost Lease ends the process (_lease_lost).
    stop = threading.Event()
    elector = None
    if args.leader_election:
        elector = LeaderElector(
            kube.api, settings.operator_namespace, args.lease_name, _identity(), timings=timings
        )
        if not _wait_for_lease(elector, stop, args):
            return 0  # stopped (SIGTERM, Ctrl-C) while a standby
        LEADING.set(1)
        threading.Thread(
            target=elector.keep_leading, args=(stop, _lease_lost), name="lease", daemon=True
        ).start()
    try:
        kopf.run(
            clusterwide=True,
            standalone=True,
            liveness_endpoint=f"http://{args.bind}:{args.health_port}/healthz",
            memo=OperatorMemo(kube=kube, settings=settings),
        )
    finally:
        stop.set()
        if elector is not None:
            elector.release()
            LEADING.set(0)
    return 0


def _wait_for_lease(
    elector: LeaderElector, stop: threading.Event, args: argparse.Namespace
) -> bool:
    """Wait as a standby until leading (False: stopped by a signal first)."""
    handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in STOP_SIGNALS}
    try:
        with standby_health(args.bind, args.health_port):
            return elector.acquire(stop)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _lease_lost(why: str) -> None:
    """No more writes from this instance: exit now, without finishing a pass in flight
    (a standby may already lead). The pod restarts and waits as a standby."""
    logging.getLogger("unthrottle").error("stopping: %s", why)
    logging.shutdown()
    os._exit(EXIT_LEASE_LOST)
