"""The agent's HTTP endpoints and metrics: ``/metrics``, ``/healthz``, ``/readyz`` on one port.

- ``/healthz`` (liveness): 200 while cycles keep finishing (the last one less than three
  intervals ago, or the agent just started), else 503.
- ``/readyz`` (readiness): 200 when the node can get a burst: a ``cpu`` hierarchy, the
  kubelet's kubepods cgroup, the burst file in it, and the API server answering; else 503.
  Both answers are the JSON of what was found: ``cgroupVersion``, ``hierarchy``,
  ``driver``, ``runtimes`` (from the node's container IDs), ``burstSupported``,
  ``problem``.
- ``/metrics``: ``unthrottle_agent_burst_applied`` (µs the kernel holds, per namespace,
  pod and container; ``container=""`` is the pod cgroup, as cAdvisor names it), rebuilt
  from each cycle so a pod that is gone loses its series;
  ``unthrottle_agent_write_errors_total{reason}`` (every cgroup a cycle could not give its
  burst, by :class:`~unthrottle.agent.cgroupfs.BurstReason`);
  ``unthrottle_agent_cycle_seconds``; ``unthrottle_agent_last_cycle_timestamp_seconds``;
  ``unthrottle_agent_info{cgroup_version,driver,burst_supported}``.

The metrics live in their own registry, so an agent and an operator in one process (the
tests) do not collide.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from unthrottle.agent.cycle import CycleReport

__all__ = ["AgentMetrics", "AgentServer"]

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _LastCycle(Collector):
    """The gauges of the last cycle, built from its report at scrape time."""

    def __init__(self) -> None:
        self.report: CycleReport | None = None

    def collect(self) -> Iterator[Metric]:
        report = self.report
        applied = GaugeMetricFamily(
            "unthrottle_agent_burst_applied",
            "The CFS burst (µs) the kernel holds, as the agent last read it back",
            labels=["namespace", "pod", "container"],
        )
        info = GaugeMetricFamily(
            "unthrottle_agent_info",
            "What the agent found on its node (1)",
            labels=["cgroup_version", "driver", "burst_supported"],
        )
        last = GaugeMetricFamily(
            "unthrottle_agent_last_cycle_timestamp_seconds",
            "When the agent's last cycle ended (Unix time)",
        )
        if report is not None:
            for pod in report.pods:
                for cgroup in pod.cgroups:
                    if cgroup.result.burst_us is not None:
                        labels = [pod.target.namespace, pod.target.name, cgroup.container]
                        applied.add_metric(labels, cgroup.result.burst_us)
            facts = report.facts
            version = "" if facts.cgroup_version is None else facts.cgroup_version.value
            driver = "" if facts.driver is None else facts.driver.value
            info.add_metric([version, driver, str(facts.burst_supported).lower()], 1)
            last.add_metric([], report.finished_at)
        yield applied
        yield info
        yield last


class AgentMetrics:
    """The agent's metrics, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._last = _LastCycle()
        self.registry.register(self._last)
        self.errors = Counter(
            "unthrottle_agent_write_errors",
            "Cgroups a cycle could not give their burst, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.cycle_seconds = Histogram(
            "unthrottle_agent_cycle_seconds",
            "Time of one agent cycle (list pods, assert bursts, report)",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=self.registry,
        )

    def record(self, report: CycleReport) -> None:
        self._last.report = report
        self.cycle_seconds.observe(report.seconds)
        for pod in report.pods:
            for cgroup in pod.cgroups:
                if cgroup.problem:
                    self.errors.labels(cgroup.result.reason.value).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    @property
    def last(self) -> CycleReport | None:
        return self._last.report


class AgentServer:
    """``/metrics``, ``/healthz``, ``/readyz`` in a daemon thread."""

    def __init__(self, metrics: AgentMetrics, interval_s: float, port: int, bind: str) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self.started = time.time()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, content_type, body = server.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # probes every few seconds: not worth a log line

        self.httpd = ThreadingHTTPServer((bind, port), Handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> AgentServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of ``path``."""
        route = path.split("?", 1)[0]
        if route == "/metrics":
            return 200, _CONTENT_TYPE, self.metrics.exposition()
        report = self.metrics.last
        if route == "/healthz":
            seen = report.finished_at if report is not None else self.started
            alive = time.time() - seen < max(3 * self.interval_s, 60.0)
            return (200 if alive else 503), "text/plain", b"ok\n" if alive else b"stalled\n"
        if route == "/readyz":
            if report is None:
                document: dict[str, Any] = {"ready": False, "problem": "no cycle has run yet"}
            else:
                document = {**report.facts.as_dict(), "ready": report.ready}
                if report.error:
                    document["problem"] = f"API server: {report.error}"
            body = (json.dumps(document, sort_keys=True) + "\n").encode()
            return (200 if document["ready"] else 503), "application/json", body
        return 404, "text/plain", b"not found\n"
