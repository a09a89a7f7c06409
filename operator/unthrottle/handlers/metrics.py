"""The operator's own metrics (``/metrics``): reconcile duration, workloads seen,
throttled and patched per policy, and failures to reach Prometheus or the API server."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from unthrottle.reconcile.run import PassResult

__all__ = ["record_pass", "serve"]

RECONCILE_SECONDS = Histogram(
    "unthrottle_reconcile_duration_seconds",
    "Time of one pass of one ThrottlePolicy",
    ["policy"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
WORKLOADS = Gauge(
    "unthrottle_workloads", "Deployments a policy covered on its last pass", ["policy"]
)
THROTTLED = Gauge(
    "unthrottle_throttled_workloads",
    "Deployments throttled above the policy's target on its last pass",
    ["policy"],
)
PATCHED = Counter("unthrottle_patches_total", "Deployments patched", ["policy"])
PROMETHEUS_ERRORS = Counter(
    "unthrottle_prometheus_errors_total", "Passes that could not read Prometheus", ["policy"]
)
FAILED = Counter(
    "unthrottle_reconcile_failures_total", "Passes that failed on the API server", ["policy"]
)


def record_pass(policy: str, result: PassResult | None) -> None:
    if result is None:
        FAILED.labels(policy).inc()
        return
    RECONCILE_SECONDS.labels(policy).observe(result.seconds)
    WORKLOADS.labels(policy).set(result.workloads)
    THROTTLED.labels(policy).set(result.throttled)
    PATCHED.labels(policy).inc(result.patched)
    if result.prometheus_error:
        PROMETHEUS_ERRORS.labels(policy).inc()


def serve(port: int, address: str = "0.0.0.0") -> None:
    start_http_server(port, addr=address)
