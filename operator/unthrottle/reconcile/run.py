"""One pass for one ThrottlePolicy, as a script: read → plan → apply.

1. *read*: the cluster (:func:`~unthrottle.reconcile.read.read_cluster`) and, once the
   policy validates and has a Prometheus, the metrics
   (:func:`~unthrottle.reconcile.read.read_metrics`) into a
   :class:`~unthrottle.reconcile.snapshot.ClusterSnapshot`;
2. rollbacks asked for are applied first and the cluster read again, so this pass
   recommends from the restored resources;
3. *plan*: :func:`~unthrottle.reconcile.plan.plan_pass`, pure;
4. *apply*: :func:`~unthrottle.reconcile.apply.apply_plan`, the plan's writes and nothing else.

Each step is timed (``PassResult.steps``: read, prometheus, plan, apply); the operator's
``/metrics`` has a histogram per step and the pass log line names them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from unthrottle.reconcile.apply import (
    PatchForbiddenError,
    Replan,
    apply_plan,
    apply_rollbacks,
    replanner,
)
from unthrottle.reconcile.plan import PassPlan, plan_failure, plan_pass, plan_rollbacks
from unthrottle.reconcile.read import (
    PrometheusFactory,
    operator_prometheus_config,
    read_cluster,
    read_metrics,
)
from unthrottle.reconcile.scope import OperatorScope
from unthrottle.reconcile.snapshot import (
    ClusterSnapshot,
    Instant,
    PassFailure,
    PolicyObject,
    parse_policy,
)
from unthrottle.sources.kubernetes import KubernetesSource
from unthrottle.sources.prometheus import PrometheusSource

__all__ = ["PASS_STEPS", "Instant", "OperatorSettings", "PassResult", "reconcile_policy"]

PASS_STEPS = ("read", "prometheus", "plan", "apply")
logger = logging.getLogger("unthrottle.reconcile")


class OperatorSettings(BaseModel):
    """How the operator was started (``unthrottle run``): its documented settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prometheus_url: str | None = Field(
        default=None,
        description="Prometheus for policies without spec.prometheus.url "
        "(--prometheus-url, env UNTHROTTLE_PROMETHEUS_URL).",
    )
    operator_namespace: str = Field(
        default="unthrottle-system",
        description="The operator's own namespace, never in a policy's default scope.",
    )
    namespaces: tuple[str, ...] | None = Field(
        default=None,
        description="The only namespaces the operator may touch (--namespace); "
        "None: every namespace (-A).",
    )

    @property
    def bounds(self) -> OperatorScope:
        allowed = None if self.namespaces is None else frozenset(self.namespaces)
        return OperatorScope(self.operator_namespace, allowed)


@dataclass
class PassResult:
    """What one pass did, for logs and the operator's metrics."""

    policy: str
    ok: bool
    workloads: int = 0
    throttled: int = 0
    patched: int = 0
    skipped: int = 0
    settling: int = 0
    prometheus_error: bool = False
    seconds: float = 0.0
    message: str = ""
    events: list[tuple[str, str]] = field(default_factory=list)
    steps: dict[str, float] = field(default_factory=dict)  # seconds per step (PASS_STEPS)
    plan: PassPlan | None = None


class _Timer:
    def __init__(self, steps: dict[str, float]) -> None:
        self.steps = steps

    def __call__(self, step: str) -> _Step:
        return _Step(self.steps, step)


class _Step:
    def __init__(self, steps: dict[str, float], name: str) -> None:
        self.steps, self.name = steps, name

    def __enter__(self) -> None:
        self.started = time.monotonic()

    def __exit__(self, *_: object) -> None:
        self.steps[self.name] = self.steps.get(self.name, 0.0) + time.monotonic() - self.started


def _snapshot(
    policy: PolicyObject,
    *,
    kube: KubernetesSource,
    settings: OperatorSettings,
    now: Instant,
    prometheus: PrometheusFactory,
    timed: _Timer,
) -> ClusterSnapshot:
    config = operator_prometheus_config(policy.spec, kube, settings.prometheus_url)
    with timed("read"):
        cluster = read_cluster(policy, kube, settings.bounds)
    if isinstance(config, PassFailure):
        return ClusterSnapshot(bounds=settings.bounds, failure=config)
    with timed("prometheus"):
        metrics = read_metrics(policy, cluster, config, now, kube=kube, prometheus=prometheus)
    if isinstance(metrics, PassFailure):
        return ClusterSnapshot(bounds=settings.bounds, failure=metrics)
    snapshot = ClusterSnapshot(**{**vars(cluster), "metrics": metrics[0]})
    return snapshot


def _run(
    body: Mapping[str, Any],
    *,
    kube: KubernetesSource,
    settings: OperatorSettings,
    now: Instant,
    prometheus: PrometheusFactory,
    result: PassResult,
) -> tuple[PassPlan, Replan | None]:
    timed = _Timer(result.steps)
    policy = parse_policy(body)
    if isinstance(policy, PassFailure):
        metadata = body.get("metadata") or {}
        generation = metadata.get("generation") or 0
        return plan_failure(metadata["name"], generation, None, policy, now), None
    snapshot = _snapshot(
        policy, kube=kube, settings=settings, now=now, prometheus=prometheus, timed=timed
    )
    if snapshot.failure is None:
        # Like every other write to a Deployment, only once Prometheus answered.
        rollbacks = plan_rollbacks(snapshot, now)
        if rollbacks:
            with timed("apply"):
                result.events += apply_rollbacks(kube, rollbacks, now)
            with timed("read"):
                cluster = read_cluster(policy, kube, settings.bounds)
            snapshot = ClusterSnapshot(**{**vars(cluster), "metrics": snapshot.metrics})
    with timed("plan"):
        return plan_pass(policy, snapshot, now), replanner(policy, snapshot, kube, now)


def reconcile_policy(
    policy: Mapping[str, Any],
    kube: KubernetesSource,
    settings: OperatorSettings,
    now: Instant,
    prometheus: PrometheusFactory = PrometheusSource,
) -> PassResult:
    """One pass of one ThrottlePolicy (the object as the API server returns it)."""
    started = time.monotonic()
    result = PassResult(policy["metadata"]["name"], ok=False)
    plan, replan = _run(
        policy, kube=kube, settings=settings, now=now, prometheus=prometheus, result=result
    )
    with _Timer(result.steps)("apply"):
        try:
            result.events += apply_plan(kube, plan, now, replan)
        except PatchForbiddenError as exc:
            # AutoPatch under the Recommend-only RBAC: the policy's status says so.
            generation = plan.status.observed_generation
            failure = PassFailure("PatchForbidden", str(exc))
            plan = plan_failure(plan.policy, generation, None, failure, now)
            apply_plan(kube, plan, now)
    counts = plan.status.counts
    result.ok, result.message, result.plan = plan.ok, plan.message, plan
    result.prometheus_error = plan.prometheus_error
    result.workloads, result.throttled = counts.workloads, counts.throttled
    result.patched, result.skipped = counts.patched, counts.skipped
    result.settling = counts.settling
    result.seconds = time.monotonic() - started
    steps = ", ".join(f"{s} {result.steps[s]:.2f}s" for s in PASS_STEPS if s in result.steps)
    if not plan.ok:
        logger.warning("policy %s: %s", result.policy, plan.message)
    logger.info(
        "policy %s: %s workloads, %s throttled, %s patched, %s skipped, %s settling "
        "in %.1fs (%s)%s",
        result.policy,
        result.workloads,
        result.throttled,
        result.patched,
        result.skipped,
        result.settling,
        result.seconds,
        steps,
        f" ({result.message})" if result.message else "",
    )
    return result
