"""Writing a plan: the only module of a pass that changes the cluster.

Each write is exactly what the plan says, in its order: per Deployment the patch (or the
annotation), its Events, its ThrottleRecommendation; then the stale trecs; then the
policy's status, last, so a pass that fails half-way is retried as not done. An Event
that cannot be posted is logged and the pass goes on (it is worth less than the pass).

A patch carries the resourceVersion the Deployment was read at. When someone else wrote
the Deployment in between (the API server answers 409 Conflict and changes nothing), the
Deployment is read again and its plan made again from what it is now (``replan``, see
:func:`replanner`): their change is decided on, never overwritten. A rollback that meets
a conflict fails the pass, which is retried from a fresh read.

Under the Recommend-only RBAC (``overlays/recommend-only/``: no ``patch`` on
Deployments) the API server refuses the ``unthrottle.dev/recommendation`` annotation with
403. That is not a failure: the ThrottleRecommendation is still written, the policy's
``DeploymentAnnotations`` condition says the annotations are not written, and the log says
so once per policy, not on every pass. A resource patch refused with 403 (AutoPatch under
that RBAC) raises :class:`PatchForbiddenError`, which the pass reports as its condition.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from unthrottle.model.names import RECOMMENDATION_ANNOTATION
from unthrottle.model.status import ThrottlePolicyStatus
from unthrottle.model.workload import DeploymentInfo
from unthrottle.reconcile.plan import (
    PassPlan,
    PlannedEvent,
    RollbackPlan,
    WorkloadPlan,
    plan_pass,
)
from unthrottle.reconcile.snapshot import ClusterSnapshot, Instant, PolicyObject
from unthrottle.reconcile.status import as_merge_patch, condition, keep_transition_times
from unthrottle.sources.kubeapi import KubernetesError
from unthrottle.sources.kubernetes import KubernetesSource

__all__ = ["PatchForbiddenError", "Replan", "apply_plan", "apply_rollbacks", "replanner"]

logger = logging.getLogger("unthrottle.reconcile")
FORBIDDEN = 403
ANNOTATIONS_CONDITION = "DeploymentAnnotations"
# Policies whose annotations were refused on their last pass: logged once until it changes.
_read_only: set[str] = set()


class PatchForbiddenError(KubernetesError):
    """The operator may not patch a Deployment's resources (read-only RBAC)."""


def _post_events(
    kube: KubernetesSource,
    deployment: DeploymentInfo,
    events: Iterable[PlannedEvent],
    now: Instant,
) -> list[tuple[str, str]]:
    involved = {
        "apiVersion": "apps/v1",
        "kind": deployment.kind.value,
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


Replan = Callable[[DeploymentInfo], WorkloadPlan | None]
CONFLICT = 409
MAX_ATTEMPTS = 3  # writes of one Deployment that meet a conflict before the pass gives up


def replanner(
    policy: PolicyObject, snapshot: ClusterSnapshot, kube: KubernetesSource, now: Instant
) -> Replan:
    """The plan of one Deployment read again, with the pass's metrics (None: it is gone
    or no longer this policy's)."""

    def replan(stale: DeploymentInfo) -> WorkloadPlan | None:
        fresh = kube.workload(stale.ref, policy.spec.web_concurrency.env_name)
        if fresh is None:
            return None
        again = plan_pass(
            policy, ClusterSnapshot(**{**vars(snapshot), "deployments": (fresh,)}), now
        )
        return next((w for w in again.workloads if w.deployment.ref == stale.ref), None)

    return replan


def _write_deployment(
    kube: KubernetesSource, workload: WorkloadPlan, replan: Replan | None, refused: list[str]
) -> WorkloadPlan | None:
    """The patch or the annotation of ``workload``; the plan that was written. A refused
    annotation is appended to ``refused`` (as the Deployment's name)."""
    for _ in range(MAX_ATTEMPTS):
        ref = workload.deployment.ref
        if workload.patch is None:
            if workload.annotations is not None:
                try:
                    kube.annotate_workload(ref, workload.annotations)
                except KubernetesError as exc:
                    if exc.status != FORBIDDEN:
                        raise
                    refused.append(str(ref))
            return workload
        try:
            kube.patch_workload(ref, workload.patch, workload.deployment.resource_version)
            return workload
        except KubernetesError as exc:
            if exc.status == FORBIDDEN:
                raise PatchForbiddenError(
                    f"the operator may not patch Deployment {ref} (read-only RBAC?): "
                    "set spec.mode: Recommend, or grant patch on deployments",
                    FORBIDDEN,
                ) from exc
            if exc.status != CONFLICT or replan is None:
                raise
            logger.info("%s changed since it was read: deciding again", ref)
            again = replan(workload.deployment)
            if again is None:
                return None
            workload = again
    raise KubernetesError(
        f"{workload.deployment.ref} changed {MAX_ATTEMPTS} times while being patched", CONFLICT
    )


def apply_rollbacks(
    kube: KubernetesSource, rollbacks: Iterable[RollbackPlan], now: Instant
) -> list[tuple[str, str]]:
    """Restore what the rollbacks restore; the Events posted, as (workload, reason)."""
    events = []
    for rollback in rollbacks:
        if rollback.patch is not None:
            deployment = rollback.deployment
            kube.patch_workload(deployment.ref, rollback.patch, deployment.resource_version)
        if rollback.annotations is not None:
            kube.annotate_workload(rollback.deployment.ref, rollback.annotations)
        events += _post_events(kube, rollback.deployment, [rollback.event], now)
    return events


def apply_plan(
    kube: KubernetesSource, plan: PassPlan, now: Instant, replan: Replan | None = None
) -> list[tuple[str, str]]:
    """Write every outcome of ``plan``; the Events posted, as (workload, reason).

    ``replan`` decides again for a Deployment whose patch met a conflict; without it the
    conflict is raised."""
    events = []
    refused: list[str] = []
    for planned in plan.workloads:
        workload = _write_deployment(kube, planned, replan, refused)
        if workload is None:
            continue  # gone, or no longer this policy's, since it was read
        events += _post_events(kube, workload.deployment, workload.events, now)
        kube.upsert_recommendation(
            workload.deployment,
            plan.policy,
            workload.trec_spec,
            workload.trec_status_patch,
            workload.name,
        )
    for namespace, name in plan.stale_recommendations:
        kube.delete_recommendation(namespace, name)
    status = plan.status
    if refused:
        status = _annotations_refused(plan, refused, now)
    elif plan.policy in _read_only and plan.workloads:
        _read_only.discard(plan.policy)
        logger.info("policy %s: Deployment annotations are written again", plan.policy)
    body = as_merge_patch(status.model_dump(mode="json", by_alias=True))
    kube.patch_policy_status(plan.policy, body)
    return events


def _annotations_refused(plan: PassPlan, refused: list[str], now: Instant) -> ThrottlePolicyStatus:
    """The status with a condition that says the annotations were not written."""
    message = (
        f"the {RECOMMENDATION_ANNOTATION} annotation is not written (403: read-only RBAC, "
        f"no patch on deployments) on {len(refused)} Deployment(s), e.g. {refused[0]}; "
        "the ThrottleRecommendations are"
    )
    if plan.policy not in _read_only:
        _read_only.add(plan.policy)
        logger.warning("policy %s: %s", plan.policy, message)
    status = plan.status
    generation = status.observed_generation
    (refusal,) = keep_transition_times(
        [
            condition(
                ANNOTATIONS_CONDITION,
                False,
                "Forbidden",
                message,
                now_text=now.text,
                generation=generation,
            )
        ],
        plan.previous_conditions,
    )
    others = tuple(c for c in status.conditions if c.type != ANNOTATIONS_CONDITION)
    return status.model_copy(update={"conditions": (*others, refusal)})
