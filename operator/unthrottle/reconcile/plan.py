"""The plan of one pass: every outcome of one policy over one snapshot, as values.

:func:`plan_pass` is pure: a :class:`~unthrottle.reconcile.snapshot.ClusterSnapshot` and
the time in, a :class:`PassPlan` out (no I/O, no clock). It reads like the pass it plans:

1. the policy failed to read (no Prometheus, bad credentials, ...) → only its status;
2. scope: the candidates this policy governs (older rivals first), and the overlaps;
3. required series missing → only the status (``MissingSeries``);
4. per container: the engine's recommendation under the policy as it applies to the
   workload (tier label); per workload (Deployment, StatefulSet, DaemonSet): the patch
   decision (:func:`unthrottle.reconcile.patch.decide`) within the rollout slots left (a
   patch that restarts no pod takes none);
5. per workload the writes: the patch or the recommendation annotation (only when it
   changed), Events (a Skipped event only when the reason's code changed), the trec
   (named by :func:`~unthrottle.reconcile.status.trec_names`);
6. trecs of Deployments the policy no longer governs are deleted; the policy's status.

Rollbacks (``unthrottle.dev/rollback: "true"``) are planned apart
(:func:`plan_rollbacks`): the pass applies them and reads the cluster again, so the same
pass recommends from, and its trec shows, the restored resources.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from unthrottle.engine.guardrails import rollout_slots
from unthrottle.engine.recommend import recommend
from unthrottle.model.names import (
    AUTO_PATCH_LABEL,
    LAST_PATCHED_ANNOTATION,
    RECOMMENDATION_ANNOTATION,
    ROLLBACK_ANNOTATION,
)
from unthrottle.model.policy import Mode, ThrottlePolicySpec
from unthrottle.model.quantity import describe_millicores
from unthrottle.model.recommendation import (
    Diagnosis,
    NoRecommendation,
    Recommendation,
    RecommendationResult,
)
from unthrottle.model.stats import ContainerStats
from unthrottle.model.status import Condition, ThrottlePolicyStatus
from unthrottle.model.workload import DeploymentInfo, WorkloadKind, WorkloadRef
from unthrottle.reconcile.patch import DeploymentDecision, PatchContext, decide, rollback_patch
from unthrottle.reconcile.schedule import parse_timestamp_ms
from unthrottle.reconcile.scope import (
    is_ignored,
    join,
    namespaces_in_scope,
    policy_for,
    selects,
    split_governed,
)
from unthrottle.reconcile.snapshot import (
    ClusterSnapshot,
    Instant,
    MetricsSnapshot,
    PassFailure,
    PolicyObject,
)
from unthrottle.reconcile.status import (
    WorkloadOutcome,
    annotation_changed,
    as_merge_patch,
    condition,
    policy_status,
    recommendation_annotation,
    trec_names,
    trec_status,
)

__all__ = [
    "MAX_OVERLAPS_LISTED",
    "PassPlan",
    "PlannedEvent",
    "RollbackPlan",
    "WorkloadPlan",
    "auto_patch_namespaces",
    "governed",
    "plan_failure",
    "plan_pass",
    "plan_rollbacks",
]

MAX_OVERLAPS_LISTED = 20


@dataclass(frozen=True)
class PlannedEvent:
    """A Kubernetes Event on a Deployment."""

    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class WorkloadPlan:
    """Everything a pass writes for one Deployment, in the order it is written."""

    deployment: DeploymentInfo
    outcome: WorkloadOutcome
    patch: dict[str, Any] | None  # strategic merge: owned fields + annotations
    annotations: dict[str, str | None] | None  # merge patch of metadata.annotations only
    events: tuple[PlannedEvent, ...]
    policy: str  # the policy whose pass planned it
    planned_at: str  # the pass's time (RFC 3339)
    name: str = ""  # the trec's name (:func:`~unthrottle.reconcile.status.trec_names`)

    # The trec is built when it is written, not held by the plan: a report of 10,000
    # workloads holds their plans at once and never writes one (4 KB each).
    @property
    def trec_spec(self) -> dict[str, Any]:
        return {
            "targetRef": {
                "apiVersion": "apps/v1",
                "kind": self.deployment.kind.value,
                "name": self.deployment.ref.name,
            },
            "policy": self.policy,
        }

    @property
    def trec_status_patch(self) -> dict[str, Any]:
        """The trec's status as a merge patch (empty strings unset)."""
        status = trec_status(self.outcome, self.policy, self.planned_at)
        patch: dict[str, Any] = as_merge_patch(status.model_dump(mode="json", by_alias=True))
        return patch


@dataclass(frozen=True)
class RollbackPlan:
    """A rollback asked for with ``unthrottle.dev/rollback: "true"``."""

    deployment: DeploymentInfo
    patch: dict[str, Any] | None  # strategic merge; None: nothing recorded to restore
    annotations: dict[str, str | None] | None  # when there is no patch: drop the request
    event: PlannedEvent


@dataclass(frozen=True)
class PassPlan:
    """Every outcome of one pass of one policy."""

    policy: str
    ok: bool
    status: ThrottlePolicyStatus
    workloads: tuple[WorkloadPlan, ...] = ()
    stale_recommendations: tuple[tuple[str, str], ...] = ()  # (namespace, name) to delete
    message: str = ""
    prometheus_error: bool = False
    # The conditions the policy had before this pass: a condition added when the plan is
    # written (the annotations refused) keeps its lastTransitionTime from them.
    previous_conditions: tuple[Condition, ...] = ()

    @property
    def outcomes(self) -> tuple[WorkloadOutcome, ...]:
        return tuple(w.outcome for w in self.workloads)


def _condition(
    kind: str, ok: bool | None, reason: str, message: str, *, generation: int, now: Instant
) -> Condition:
    return condition(kind, ok, reason, message, now_text=now.text, generation=generation)


def _prometheus_condition(metrics: MetricsSnapshot, *, generation: int, now: Instant) -> Condition:
    """Reachable once a query was answered; a partial answer says what Prometheus warned."""
    if not metrics.answered:
        message = "no Deployment in scope: nothing was asked of Prometheus"
        return _condition(
            "PrometheusReachable", None, "NotQueried", message, generation=generation, now=now
        )
    reason = "PartialAnswer" if metrics.partial else "Answered"
    message = "; ".join(metrics.warnings)
    return _condition("PrometheusReachable", True, reason, message, generation=generation, now=now)


def plan_failure(
    name: str,
    generation: int,
    previous: ThrottlePolicyStatus | None,
    failure: PassFailure,
    now: Instant,
) -> PassPlan:
    """No writes to workloads; the policy's status says why."""
    conditions = [
        _condition("Ready", False, failure.reason, failure.message, generation=generation, now=now)
    ]
    if failure.prometheus is not None:
        ok = failure.prometheus
        conditions.append(
            _condition(
                "PrometheusReachable",
                ok,
                "Answered" if ok else failure.reason,
                "" if ok else failure.message,
                generation=generation,
                now=now,
            )
        )
    status = policy_status(
        [],
        conditions,
        previous,
        generation=generation,
        now_text=now.text,
        target=0.0,
        message=failure.message,
    )
    return PassPlan(
        name,
        ok=False,
        status=status,
        message=f"{failure.reason}: {failure.message}",
        prometheus_error=failure.prometheus is False,
    )


def governed(
    policy: PolicyObject, snapshot: ClusterSnapshot
) -> tuple[list[DeploymentInfo], list[str]]:
    """The candidates this policy governs, and the overlaps to state in its status.

    The candidates are checked against the policy's own scope again (its namespaces and
    selector), so the plan is right whatever the read step listed.
    """
    if snapshot.namespace_labels is None:
        return [d for d in snapshot.deployments if d.kind in policy.spec.kinds], []
    labels = snapshot.namespace_labels
    mine = [d for d in snapshot.deployments if selects(policy.spec, d, labels, snapshot.bounds)]
    found, overlaps = split_governed(
        policy.precedence,
        snapshot.rivals,
        mine,
        snapshot.namespace_labels,
        snapshot.bounds,
    )
    return found, overlaps[:MAX_OVERLAPS_LISTED]


def policy_namespaces(policy: PolicyObject, snapshot: ClusterSnapshot) -> list[str]:
    """The namespaces a policy covers (the report without the API server: all it was given)."""
    if snapshot.namespace_labels is None:
        return sorted({d.ref.namespace for d in snapshot.deployments})
    return namespaces_in_scope(policy.spec, snapshot.namespace_labels, snapshot.bounds)


def auto_patch_namespaces(
    spec: ThrottlePolicySpec,
    deployments: Iterable[DeploymentInfo],
    labels: Mapping[str, Mapping[str, str]] | None,
) -> frozenset[str]:
    """Namespaces where this policy may patch: mode AutoPatch and the namespace labelled."""
    if spec.mode is not Mode.AUTO_PATCH or labels is None:
        return frozenset()
    return frozenset(
        d.ref.namespace
        for d in deployments
        if labels.get(d.ref.namespace, {}).get(AUTO_PATCH_LABEL) == "enabled"
    )


def plan_rollbacks(snapshot: ClusterSnapshot, now: Instant) -> tuple[RollbackPlan, ...]:
    """Rollbacks asked for on Deployments in scope (not opted out)."""
    plans = []
    for deployment in snapshot.deployments:
        if is_ignored(deployment):
            continue
        if deployment.annotations.get(ROLLBACK_ANNOTATION, "").lower() != "true":
            continue
        body = rollback_patch(deployment, now.text)
        if body is None:
            event = PlannedEvent(
                "RollbackImpossible", "no unthrottle.dev/previous-resources to restore", True
            )
            plans.append(RollbackPlan(deployment, None, {ROLLBACK_ANNOTATION: None}, event))
        else:
            message = "restored the resources recorded before the last patch"
            if deployment.kind is not WorkloadKind.DEPLOYMENT:
                message += f" ({deployment.rollout_semantics()})"
            event = PlannedEvent("RolledBack", message)
            plans.append(RollbackPlan(deployment, body, None, event))
    return tuple(plans)


Row = tuple[str, RecommendationResult, ContainerStats | None]


def _recommend_all(
    deployments: Sequence[DeploymentInfo], snapshot: ClusterSnapshot, spec: ThrottlePolicySpec
) -> dict[WorkloadRef, list[Row]]:
    assert snapshot.metrics is not None
    rows: dict[WorkloadRef, list[Row]] = {}
    for item in join(deployments, snapshot.metrics.workloads, snapshot.metrics.unusable_series):
        applied = policy_for(item.deployment, spec)
        if isinstance(item.stats, NoRecommendation):
            row: Row = (item.container.name, item.stats, None)
        else:
            found = item.stats
            if snapshot.node_cpu is not None:
                fits, _ = snapshot.node_cpu.for_kind(item.ref.kind)
                found = found.model_copy(update={"node_allocatable_cpu": fits})
            row = (item.container.name, recommend(found, applied), found)
        rows.setdefault(item.ref, []).append(row)
    return rows


def _skip_codes(trec: Mapping[str, Any]) -> set[str]:
    """The reason codes a trec's containers were skipped for in the last pass."""
    return {
        str(c.get("reason", "")).partition(":")[0]
        for c in trec.get("containers") or []
        if c.get("action") == "Skipped"
    }


def _capped_events(
    decision: DeploymentDecision, previous: Mapping[str, Any], target: float
) -> list[PlannedEvent]:
    """A Warning for each container newly ``capped``: told once, when it becomes so."""
    before = {
        c.get("name"): Diagnosis.CAPPED.value in (c.get("diagnosis") or ())
        for c in previous.get("containers") or []
    }
    events = []
    for container in decision.containers:
        result = container.result
        if not isinstance(result, Recommendation) or Diagnosis.CAPPED not in result.diagnosis:
            continue
        if before.get(container.name):
            continue
        assert result.cpu_limit is not None
        events.append(
            PlannedEvent(
                "Capped",
                f"{container.name}: the CPU limit is capped at "
                f"{describe_millicores(result.cpu_limit)} and still projects "
                f"{result.projected_throttle_ratio:.1%} throttled (target {target:.1%}); "
                "raise cpu.maxLimit or give it larger nodes",
                warning=True,
            )
        )
    return events


def _patched_message(outcome: WorkloadOutcome, deployment: DeploymentInfo) -> str:
    """``patched app: cpu 500m/1000m``, and for a StatefulSet or DaemonSet how the new
    template reaches its pods (its update strategy, partition, maxUnavailable)."""
    parts = []
    for decision in outcome.decision.containers:
        applied = decision.applied
        if applied is None:
            continue
        limit = "none" if applied.cpu_limit is None else f"{applied.cpu_limit}m"
        parts.append(f"{decision.name}: cpu {applied.cpu_request}m/{limit}")
    message = "patched " + "; ".join(parts)
    if deployment.kind is WorkloadKind.DEPLOYMENT:
        return message
    return f"{message} ({deployment.rollout_semantics()})"


def _plan_workload(
    policy: PolicyObject,
    *,
    deployment: DeploymentInfo,
    rows: list[Row],
    context: PatchContext,
    previous: Mapping[str, Any],
    now: Instant,
    trec_name: str = "",
) -> WorkloadPlan:
    applied = policy_for(deployment, policy.spec)
    decision = decide(deployment, {n: r for n, r, _ in rows}, applied, context)
    outcome = WorkloadOutcome(
        ref=deployment.ref,
        tier=applied.tier,
        containers=deployment.containers,
        stats={n: s for n, _, s in rows if s is not None},
        decision=decision,
    )
    annotation = recommendation_annotation(outcome, policy.name)
    events: list[PlannedEvent] = []
    patch: dict[str, Any] | None = None
    annotations: dict[str, str | None] | None = None
    if decision.patch is not None:
        patch = decision.patch
        patch["metadata"]["annotations"][RECOMMENDATION_ANNOTATION] = annotation
        events.append(PlannedEvent("Patched", _patched_message(outcome, deployment)))
    elif annotation_changed(
        deployment.annotations.get(RECOMMENDATION_ANNOTATION), annotation, applied.patch.min_change
    ):
        annotations = {RECOMMENDATION_ANNOTATION: annotation}
    events += _capped_events(decision, previous, applied.throttle_target)
    summary = previous.get("summary") or {}
    if (
        context.auto_patch
        and decision.skip_reason
        and (summary.get("action") != "Skipped" or decision.skip_code not in _skip_codes(previous))
    ):
        events.append(PlannedEvent("Skipped", decision.skip_reason))
    return WorkloadPlan(
        deployment=deployment,
        outcome=outcome,
        patch=patch,
        annotations=annotations,
        events=tuple(events),
        policy=policy.name,
        planned_at=now.text,
        name=trec_name or deployment.ref.name,
    )


def plan_pass(policy: PolicyObject, snapshot: ClusterSnapshot, now: Instant) -> PassPlan:
    """Every outcome of one pass of ``policy`` over ``snapshot`` at ``now``."""
    if snapshot.failure is not None:
        return plan_failure(policy.name, policy.generation, policy.previous, snapshot.failure, now)
    metrics = snapshot.metrics
    assert metrics is not None, "a snapshot without a failure has metrics"
    deployments, overlaps = governed(policy, snapshot)
    if metrics.missing_series and deployments:
        missing = ", ".join(sorted(metrics.missing_series))
        failure = PassFailure(
            "MissingSeries", f"required series missing in {metrics.source}: {missing}", True
        )
        return plan_failure(policy.name, policy.generation, policy.previous, failure, now)
    spec = policy.spec
    auto = auto_patch_namespaces(spec, deployments, snapshot.namespace_labels)
    # Rollouts the operator started and that are still going take slots.
    in_progress = sum(
        1
        for d in deployments
        if d.ref.namespace in auto
        and d.rollout_in_progress
        and d.pods_restarted() > 0
        and LAST_PATCHED_ANNOTATION in d.annotations
    )
    names = trec_names(d.ref for d in deployments)
    slots = rollout_slots(in_progress, spec.patch)
    rows = _recommend_all(deployments, snapshot, spec)
    plans: list[WorkloadPlan] = []
    for deployment in sorted(deployments, key=lambda d: (d.ref.namespace, d.ref.name)):
        if deployment.ref not in rows:
            continue  # opted out
        context = PatchContext(
            auto_patch=deployment.ref.namespace in auto,
            now_ms=now.ms,
            now_text=now.text,
            data_partial=metrics.partial,
            hpa_on_cpu=deployment.ref in snapshot.cpu_autoscaled,
            last_patched_ms=parse_timestamp_ms(deployment.annotations.get(LAST_PATCHED_ANNOTATION)),
            rollout_slots=slots,
            node_cpu=snapshot.node_cpu,
        )
        key = (deployment.ref.namespace, names[deployment.ref])
        plan = _plan_workload(
            policy,
            deployment=deployment,
            rows=rows[deployment.ref],
            context=context,
            previous=snapshot.recommendations.get(key, {}),
            now=now,
            trec_name=key[1],
        )
        if plan.patch is not None and deployment.pods_restarted() > 0:
            slots -= 1
        plans.append(plan)
    kept = {(p.deployment.ref.namespace, p.name) for p in plans}
    stale = tuple(sorted(key for key in snapshot.recommendations if key not in kept))
    status = _reconciled_status(policy, plans, metrics, overlaps, now)
    return PassPlan(
        policy.name,
        True,
        status,
        tuple(plans),
        stale,
        status.message,
        previous_conditions=policy.previous.conditions if policy.previous else (),
    )


def _reconciled_status(
    policy: PolicyObject,
    plans: Sequence[WorkloadPlan],
    metrics: MetricsSnapshot,
    overlaps: Sequence[str],
    now: Instant,
) -> ThrottlePolicyStatus:
    """The policy's status after a pass that planned ``plans``."""
    conditions = [
        _condition(
            "Ready",
            True,
            "Reconciled",
            f"{len(plans)} workloads",
            generation=policy.generation,
            now=now,
        ),
        _prometheus_condition(metrics, generation=policy.generation, now=now),
    ]
    return policy_status(
        [p.outcome for p in plans],
        conditions,
        policy.previous,
        generation=policy.generation,
        now_text=now.text,
        target=policy.spec.throttle_target,
        overlaps=overlaps,
        message=f"Prometheus warned the data may be partial ({'; '.join(metrics.warnings)}); "
        "nothing was patched"
        if metrics.partial
        else "",
    )
