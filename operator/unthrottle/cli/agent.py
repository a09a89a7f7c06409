"""``unthrottle agent``: the burst node agent, one per node (manifests/agent/, a DaemonSet).

Every ``--interval`` it runs one cycle (:func:`unthrottle.agent.cycle.run_cycle`) over
the pods bound to ``--node`` (``NODE_NAME``, from the downward API's ``spec.nodeName``)
and serves ``/metrics``, ``/healthz`` and ``/readyz`` on ``--port``. ``--once`` runs a
single cycle, prints what it did as JSON and exits (0 when the node is ready and no pod
has a problem, 1 otherwise). SIGTERM ends the loop after the cycle in progress; the
bursts written stay in the kernel (docs/burst-agent.md, "Uninstall").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from unthrottle.agent.cycle import AgentConfig, CycleReport, run_cycle
from unthrottle.agent.layout import Driver
from unthrottle.agent.server import AgentMetrics, AgentServer
from unthrottle.model.quantity import QuantityError, parse_duration_ms
from unthrottle.sources.kubeapi import KubernetesError
from unthrottle.sources.kubernetes import KubernetesSource

__all__ = ["DEFAULT_PORT", "register", "run"]

DEFAULT_PORT = 9101
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_KUBERNETES = 5
MIN_INTERVAL_MS, MAX_INTERVAL_MS = 1_000, 600_000
logger = logging.getLogger("unthrottle.agent")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "agent",
        help="run the burst node agent",
        description=(
            "Apply the unthrottle.dev/cpu-burst-us annotation of this node's pods as the "
            "kernel's CFS burst (cpu.cfs_burst_us / cpu.max.burst), and report it on each pod."
        ),
    )
    parser.add_argument(
        "--node", default=os.environ.get("NODE_NAME"), help="this node's name (env NODE_NAME)"
    )
    parser.add_argument("--interval", default="10s", help="time between cycles (default 10s)")
    parser.add_argument(
        "--cgroup-root",
        type=Path,
        default=Path("/sys/fs/cgroup"),
        help="the host's cgroup mount (default /sys/fs/cgroup)",
    )
    parser.add_argument(
        "--proc",
        type=Path,
        default=Path("/proc"),
        help="the host's /proc, to find a container's cgroup from its processes",
    )
    parser.add_argument(
        "--no-proc", action="store_true", help="locate cgroups by the layout rules alone"
    )
    parser.add_argument(
        "--kubelet-cgroup-root", default="/", help="the kubelet's --cgroup-root (default /)"
    )
    parser.add_argument(
        "--cgroup-driver",
        choices=["auto", *(d.value for d in Driver)],
        default="auto",
        help="the kubelet's cgroup driver (default: detected)",
    )
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="a kubeconfig (default: in-cluster, then ~/.kube/config)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="/metrics, /healthz and /readyz"
    )
    parser.add_argument("--bind", default="0.0.0.0", help="address of the endpoints")
    parser.add_argument("--once", action="store_true", help="one cycle, printed as JSON")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    parser.set_defaults(run=run)


def _summary(report: CycleReport) -> dict[str, Any]:
    return {
        "ready": report.ready,
        "error": report.error,
        "node": report.facts.as_dict(),
        "pods": [
            {
                "pod": str(p.target),
                "annotations": dict(p.annotations),
                "patched": p.patched,
                "error": p.error,
                "cgroups": [
                    {
                        "container": c.container,
                        "path": str(c.result.path),
                        "via": c.via,
                        "reason": c.result.reason.value,
                        "burstUs": c.result.burst_us,
                        "message": c.result.message,
                    }
                    for c in p.cgroups
                ],
            }
            for p in report.pods
        ],
    }


def _config(args: argparse.Namespace) -> tuple[AgentConfig, float] | str:
    """The agent's configuration and interval (s) from the flags, or what is wrong."""
    if not args.node:
        return "--node (or NODE_NAME) is required"
    try:
        interval = parse_duration_ms(args.interval)
    except QuantityError as exc:
        return f"--interval: {exc}"
    if not MIN_INTERVAL_MS <= interval <= MAX_INTERVAL_MS:
        return f"--interval must be between 1s and 10m, not {args.interval}"
    config = AgentConfig(
        node=args.node,
        cgroup_root=args.cgroup_root,
        proc_root=None if args.no_proc else args.proc,
        kubelet_root=args.kubelet_cgroup_root,
        driver=None if args.cgroup_driver == "auto" else Driver(args.cgroup_driver),
    )
    return config, interval / 1000


def _loop(
    kube: KubernetesSource, config: AgentConfig, interval_s: float, args: argparse.Namespace
) -> int:
    metrics = AgentMetrics()
    server = AgentServer(metrics, interval_s, args.port, args.bind).start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    logger.info(
        "agent on node %s: every %ss, cgroups %s, endpoints on %s:%s",
        config.node,
        interval_s,
        config.cgroup_root,
        args.bind,
        server.port,
    )
    was_ready: bool | None = None
    try:
        while not stop.is_set():
            report = run_cycle(kube, config)
            metrics.record(report)
            if report.ready != was_ready:
                facts = json.dumps(report.facts.as_dict(), sort_keys=True)
                logger.info("node %s: %s", "ready" if report.ready else "not ready", facts)
                was_ready = report.ready
            stop.wait(interval_s)
    finally:
        server.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    parsed = _config(args)
    if isinstance(parsed, str):
        print(f"unthrottle agent: {parsed}", file=sys.stderr)
        return EXIT_USAGE
    config, interval_s = parsed
    try:
        kube = KubernetesSource.from_kubeconfig(args.kubeconfig)
    except KubernetesError as exc:
        print(f"unthrottle agent: {exc}", file=sys.stderr)
        return EXIT_KUBERNETES
    try:
        if args.once:
            report = run_cycle(kube, config)
            print(json.dumps(_summary(report), indent=1, ensure_ascii=False))
            problems = any(p.problem for p in report.pods)
            return 0 if report.ready and not problems else EXIT_PROBLEM
        return _loop(kube, config, interval_s, args)
    finally:
        kube.close()
