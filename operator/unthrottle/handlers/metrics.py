"""The operator's own metrics (``/metrics``): its passes, and what it recommends per container.

Per policy: reconcile duration, workloads seen, throttled and patched, failures to reach
Prometheus or the API server, and the time of the last pass and of the last successful
one with the policy's interval (so an alert can tell "no pass for 3 intervals").

Per governed container (one series per container and metric name, labelled
``policy, namespace, kind, workload, container``): the current and recommended CPU request
and limit in cores, the observed and projected throttle ratio, the action of the last pass
(``unthrottle_recommendation_action{action="Patched"} 1``) and the time of the last patch.
:func:`record_recommendations` replaces a policy's whole set on every pass, so a workload
that is gone or left the policy loses its series; :func:`forget_policy` drops them all.
The alerts and the dashboard built on these names are in ``manifests/monitoring/``
(docs/observability.md).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from unthrottle.model.names import LAST_PATCHED_ANNOTATION
from unthrottle.model.recommendation import Recommendation
from unthrottle.reconcile.plan import PassPlan
from unthrottle.reconcile.run import PASS_STEPS, PassResult
from unthrottle.reconcile.schedule import DEFAULT_INTERVAL_MS, parse_timestamp_ms
from unthrottle.reconcile.status import WorkloadOutcome

__all__ = [
    "ContainerGauge",
    "container_gauges",
    "forget_policy",
    "record_pass",
    "record_recommendations",
    "serve",
]

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
PASS_STEP_SECONDS = Histogram(
    "unthrottle_pass_step_seconds",
    "Time of each step of a pass (read, prometheus, plan, apply)",
    ["policy", "step"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
LAST_PASS = Gauge(
    "unthrottle_last_pass_timestamp_seconds",
    "When the policy's last pass ended, whatever its outcome (Unix time)",
    ["policy"],
)
LAST_SUCCESS = Gauge(
    "unthrottle_last_success_timestamp_seconds",
    "When the policy's last pass that read Prometheus and the API server ended (Unix time; "
    "the first pass's time if none has succeeded yet)",
    ["policy"],
)
INTERVAL = Gauge(
    "unthrottle_pass_interval_seconds", "The policy's spec.interval between passes", ["policy"]
)

_CONTAINER_LABELS = ["policy", "namespace", "kind", "workload", "container"]
CPU_REQUEST = Gauge("unthrottle_container_cpu_request_cores", "CPU request now", _CONTAINER_LABELS)
CPU_LIMIT = Gauge("unthrottle_container_cpu_limit_cores", "CPU limit now", _CONTAINER_LABELS)
RECOMMENDED_CPU_REQUEST = Gauge(
    "unthrottle_recommended_cpu_request_cores", "CPU request recommended", _CONTAINER_LABELS
)
RECOMMENDED_CPU_LIMIT = Gauge(
    "unthrottle_recommended_cpu_limit_cores", "CPU limit recommended", _CONTAINER_LABELS
)
OBSERVED_RATIO = Gauge(
    "unthrottle_observed_throttle_ratio",
    "Throttled-period ratio over the policy's window, under the current configuration",
    _CONTAINER_LABELS,
)
PROJECTED_RATIO = Gauge(
    "unthrottle_projected_throttle_ratio",
    "Throttled-period ratio the demand model expects at the recommendation",
    _CONTAINER_LABELS,
)
ACTION = Gauge(
    "unthrottle_recommendation_action",
    "1 for the action of the last pass (Recommended, Patched, Skipped, ...)",
    [*_CONTAINER_LABELS, "action"],
)
LAST_PATCH = Gauge(
    "unthrottle_last_patch_timestamp_seconds",
    "When the operator last patched the container's workload (Unix time)",
    _CONTAINER_LABELS,
)
# Per-container gauges whose label values are exactly ``_CONTAINER_LABELS``.
_VALUE_GAUGES = (
    CPU_REQUEST,
    CPU_LIMIT,
    RECOMMENDED_CPU_REQUEST,
    RECOMMENDED_CPU_LIMIT,
    OBSERVED_RATIO,
    PROJECTED_RATIO,
    LAST_PATCH,
)


@dataclass(frozen=True)
class ContainerGauge:
    """One governed container after a pass, as plain values (CPU in millicores)."""

    namespace: str
    kind: str
    workload: str
    container: str
    action: str
    cpu_request: int | None = None
    cpu_limit: int | None = None
    recommended_cpu_request: int | None = None
    recommended_cpu_limit: int | None = None
    throttle_ratio: float | None = None
    projected_throttle_ratio: float | None = None
    last_patched_seconds: float | None = None

    def values(self) -> tuple[float | None, ...]:
        """In the order of ``_VALUE_GAUGES``; None: no series."""

        def cores(millicores: int | None) -> float | None:
            return None if millicores is None else millicores / 1000

        return (
            cores(self.cpu_request),
            cores(self.cpu_limit),
            cores(self.recommended_cpu_request),
            cores(self.recommended_cpu_limit),
            self.throttle_ratio,
            self.projected_throttle_ratio,
            self.last_patched_seconds,
        )


# The series written for each policy: per gauge, the label values; guarded because the
# pass runs in a thread and the HTTP server reads the registry from another.
_lock = threading.Lock()
_written: dict[str, dict[Gauge, set[tuple[str, ...]]]] = {}
_seen_policies: set[str] = set()


def record_recommendations(policy: str, containers: Iterable[ContainerGauge]) -> None:
    """Replace the policy's per-container series with these (stale ones are removed)."""
    fresh: dict[Gauge, set[tuple[str, ...]]] = {}
    with _lock:
        for c in containers:
            labels = (policy, c.namespace, c.kind, c.workload, c.container)
            for gauge, value in zip(_VALUE_GAUGES, c.values(), strict=True):
                if value is not None:
                    gauge.labels(*labels).set(value)
                    fresh.setdefault(gauge, set()).add(labels)
            ACTION.labels(*labels, c.action).set(1)
            fresh.setdefault(ACTION, set()).add((*labels, c.action))
        _remove_stale(_written.get(policy, {}), fresh)
        _written[policy] = fresh


def _remove_stale(
    old: dict[Gauge, set[tuple[str, ...]]], fresh: dict[Gauge, set[tuple[str, ...]]]
) -> None:
    for gauge, label_sets in old.items():
        for labels in label_sets - fresh.get(gauge, set()):
            gauge.remove(*labels)


def forget_policy(policy: str) -> None:
    """Drop every series of a deleted policy, its per-container ones included."""
    with _lock:
        _remove_stale(_written.pop(policy, {}), {})
        _seen_policies.discard(policy)
        per_policy: tuple[Gauge | Counter | Histogram, ...] = (
            *(WORKLOADS, THROTTLED, LAST_PASS, LAST_SUCCESS, INTERVAL),
            *(PATCHED, PROMETHEUS_ERRORS, FAILED, RECONCILE_SECONDS),
        )
        for metric in per_policy:
            with contextlib.suppress(KeyError):  # never written for this policy
                metric.remove(policy)
        for step in PASS_STEPS:
            with contextlib.suppress(KeyError):
                PASS_STEP_SECONDS.remove(policy, step)


def record_pass(
    policy: str,
    result: PassResult | None,
    *,
    interval_seconds: float | None = None,
    now: float | None = None,
) -> None:
    """Count one pass (``None``: it failed on the API server) and stamp its time.

    ``interval_seconds`` is the policy's ``spec.interval`` (default 10m when not given).
    """
    now = time.time() if now is None else now
    with _lock:
        first = policy not in _seen_policies
        _seen_policies.add(policy)
        LAST_PASS.labels(policy).set(now)
        INTERVAL.labels(policy).set(
            DEFAULT_INTERVAL_MS / 1000 if interval_seconds is None else interval_seconds
        )
        PATCHED.labels(policy).inc(0 if result is None else result.patched)
        succeeded = result is not None and result.ok and not result.prometheus_error
        if succeeded or first:
            LAST_SUCCESS.labels(policy).set(now)
    if result is None:
        FAILED.labels(policy).inc()
        return
    RECONCILE_SECONDS.labels(policy).observe(result.seconds)
    for step, seconds in result.steps.items():
        PASS_STEP_SECONDS.labels(policy, step).observe(seconds)
    if result.plan is not None and result.plan.ok:
        record_recommendations(policy, plan_gauges(result.plan))
    WORKLOADS.labels(policy).set(result.workloads)
    THROTTLED.labels(policy).set(result.throttled)
    if result.prometheus_error:
        PROMETHEUS_ERRORS.labels(policy).inc()


def container_gauges(
    outcome: WorkloadOutcome, last_patched: str | None = None
) -> list[ContainerGauge]:
    """The gauges of one Deployment after a pass: its decision, resources and statistics,
    and the time of its ``unthrottle.dev/last-patched`` annotation (RFC 3339) if any."""
    by_name = {c.name: c for c in outcome.containers}
    patched_ms = parse_timestamp_ms(last_patched)
    gauges = []
    for decision in outcome.decision.containers:
        current = by_name.get(decision.name)
        result = decision.result
        recommended = result if isinstance(result, Recommendation) else None
        gauges.append(
            ContainerGauge(
                namespace=outcome.ref.namespace,
                kind=outcome.ref.kind.value,
                workload=outcome.ref.name,
                container=decision.name,
                action=decision.action.value,
                cpu_request=None if current is None else current.cpu_request,
                cpu_limit=None if current is None else current.cpu_limit,
                recommended_cpu_request=None if recommended is None else recommended.cpu_request,
                recommended_cpu_limit=None if recommended is None else recommended.cpu_limit,
                throttle_ratio=outcome.throttle_ratio(decision.name),
                projected_throttle_ratio=None
                if recommended is None
                else recommended.projected_throttle_ratio,
                last_patched_seconds=None if patched_ms is None else patched_ms / 1000,
            )
        )
    return gauges


def plan_gauges(plan: PassPlan) -> list[ContainerGauge]:
    """The gauges of every Deployment a pass governed, as they are once its plan is written."""
    gauges: list[ContainerGauge] = []
    for workload in plan.workloads:
        annotations = (workload.patch or {}).get("metadata", {}).get("annotations", {})
        before = workload.deployment.annotations.get(LAST_PATCHED_ANNOTATION)
        last_patched = annotations.get(LAST_PATCHED_ANNOTATION) or before
        gauges += container_gauges(workload.outcome, last_patched)
    return gauges


def serve(port: int, address: str = "0.0.0.0") -> None:
    start_http_server(port, addr=address)
