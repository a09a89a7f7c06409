"""Writing a plan: the only module of a pass that changes the cluster.

Each write is exactly what the plan says, in its order: per Deployment the patch (or the
annotation), its Events, its ThrottleRecommendation; then the stale trecs; then the
policy's status, last, so a pass that fails half-way is retried as not done. An Event
that cannot be posted is logged and the pass goes on (it is worth less than the pass).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from unthrottle.model.workload import DeploymentInfo
from unthrottle.reconcile.plan import PassPlan, PlannedEvent, RollbackPlan
from unthrottle.reconcile.snapshot import Instant
from unthrottle.reconcile.status import as_merge_patch
from unthrottle.sources.kubeapi import KubernetesError
from unthrottle.sources.kubernetes import KubernetesSource

__all__ = ["apply_plan", "apply_rollbacks"]

logger = logging.getLogger("unthrottle.reconcile")


def _post_events(
    kube: KubernetesSource,
    deployment: DeploymentInfo,
    events: Iterable[PlannedEvent],
    now: Instant,
) -> list[tuple[str, str]]:
    involved = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "namespace": deployment.ref.namespace,
        "name": deployment.ref.name,
        "uid": deployment.uid,
    }
    posted = []
    for event in events:
        try:
            kube.event(
                involved, event.reason, event.message, warning=event.warning, now_text=now.text
            )
        except KubernetesError as exc:
            logger.warning("event %s on %s not posted: %s", event.reason, deployment.ref, exc)
        posted.append((str(deployment.ref), event.reason))
    return posted


def apply_rollbacks(
    kube: KubernetesSource, rollbacks: Iterable[RollbackPlan], now: Instant
) -> list[tuple[str, str]]:
    """Restore what the rollbacks restore; the Events posted, as (workload, reason)."""
    events = []
    for rollback in rollbacks:
        if rollback.patch is not None:
            kube.patch_deployment(rollback.deployment.ref, rollback.patch)
        if rollback.annotations is not None:
            kube.annotate_deployment(rollback.deployment.ref, rollback.annotations)
        events += _post_events(kube, rollback.deployment, [rollback.event], now)
    return events


def apply_plan(kube: KubernetesSource, plan: PassPlan, now: Instant) -> list[tuple[str, str]]:
    """Write every outcome of ``plan``; the Events posted, as (workload, reason)."""
    events = []
    for workload in plan.workloads:
        ref = workload.deployment.ref
        if workload.patch is not None:
            kube.patch_deployment(ref, workload.patch)
        elif workload.annotations is not None:
            kube.annotate_deployment(ref, workload.annotations)
        events += _post_events(kube, workload.deployment, workload.events, now)
        kube.upsert_recommendation(
            workload.deployment, plan.policy, workload.trec_spec, workload.trec_status
        )
    for namespace, name in plan.stale_recommendations:
        kube.delete_recommendation(namespace, name)
    body = as_merge_patch(plan.status.model_dump(mode="json", by_alias=True))
    kube.patch_policy_status(plan.policy, body)
    return events
