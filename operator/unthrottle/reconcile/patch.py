"""Deciding whether to patch a workload (Deployment, StatefulSet, DaemonSet), and the exact
patch: pure functions. The pod template is ``spec.template`` in every kind, so the patch
is the same; the kinds differ in how a new template reaches the pods (below, 3 and 6).

A patch is a rollout of someone's service, so every one goes through the guardrails of
docs/recommendations.md (section 10) in this order, and the first that holds decides:

1. AutoPatch is on for the workload (policy mode ``AutoPatch`` and the namespace labelled
   ``unthrottle.dev/auto-patch=enabled``); otherwise the action is ``Recommended``;
2. the data is whole (Prometheus answered without partial-response warnings) and the
   container has a recommendation (otherwise ``InsufficientData`` or ``Skipped``);
3. no template is being rolled out, as ``kubectl rollout status`` sees the kind
   (:meth:`DeploymentInfo.pending_rollout`; unavailable pods of the current template do
   not count, and an OnDelete workload is never rolling out); no HorizontalPodAutoscaler
   scales the workload on CPU utilization (utilization is usage / request, so a new
   request moves the HPA);
4. the cooldown since the last patch (or rollback) has passed;
5. some value moves by at least ``patch.minChange`` after the step limits, or a container
   throttled above the target gets a higher limit (any step up counts then);
6. a rollout slot is free (``patch.maxConcurrentRollouts``), unless the patch restarts no
   pod (OnDelete, or a StatefulSet partition at or above its replicas): then it takes no
   slot, and the patched containers' reason says that nothing restarts.

``unthrottle export`` decides with ``PatchContext.rollout_guardrails`` off: its patch
lands later through Git, so 3's pending rollout, 4 and 6 do not apply.

Only the fields unthrottle owns change, by a strategic-merge patch: the target
containers' ``resources``, the WEB_CONCURRENCY env entry (downward API, replacing a
literal) and the burst annotation of the pod template; plus the workload's
``unthrottle.dev/previous-resources`` and ``unthrottle.dev/last-patched`` annotations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from unthrottle.engine.guardrails import (
    cooldown_remaining_ms,
    is_worth_rollout,
    step,
    whole_cores_step,
)
from unthrottle.engine.workers import manages_workers
from unthrottle.model.names import (
    BURST_ANNOTATION,
    LAST_PATCHED_ANNOTATION,
    PREVIOUS_RESOURCES_ANNOTATION,
    ROLLBACK_ANNOTATION,
)
from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.model.quantity import (
    MILLICORES_PER_CORE,
    describe_millicores,
    format_bytes,
    format_duration,
    format_millicores,
)
from unthrottle.model.recommendation import (
    NoRecommendation,
    NoRecommendationReason,
    Recommendation,
    RecommendationResult,
)
from unthrottle.model.stats import ContainerResources
from unthrottle.model.status import ContainerAction
from unthrottle.model.workload import DeploymentInfo, NodeCpu

__all__ = [
    "ContainerDecision",
    "DeploymentDecision",
    "PatchContext",
    "decide",
    "rollback_patch",
]


@dataclass(frozen=True)
class PatchContext:
    """What reconcile knows about a workload beyond its spec (times in epoch ms)."""

    auto_patch: bool
    now_ms: int
    now_text: str  # the same instant, RFC 3339, for the last-patched annotation
    data_partial: bool = False
    hpa_on_cpu: bool = False
    last_patched_ms: int | None = None
    rollout_slots: int = 1
    node_cpu: NodeCpu | None = None  # a pod requesting more than it can get never schedules
    # False for ``unthrottle export``: the patch lands later, through Git, so the
    # guardrails about rollouts now (a pending rollout, the cooldown, the slots) do not apply.
    rollout_guardrails: bool = True


@dataclass(frozen=True)
class ContainerDecision:
    name: str
    result: RecommendationResult
    action: ContainerAction
    reason: str = ""
    applied: ContainerResources | None = None  # the values patched, after step limits


@dataclass(frozen=True)
class DeploymentDecision:
    containers: tuple[ContainerDecision, ...]
    patch: dict[str, Any] | None = None  # a strategic-merge patch, when patching
    burst_us: int | None = None
    skip_reason: str = ""  # "<code>: <sentence>", e.g. "cooldown: 23h until the next patch"

    @property
    def skip_code(self) -> str:
        return self.skip_reason.partition(":")[0]

    @property
    def patched(self) -> bool:
        return self.patch is not None


@dataclass
class _Targets:
    values: dict[str, ContainerResources] = field(default_factory=dict)
    pairs: list[tuple[int | None, int | None]] = field(default_factory=list)
    # Throttled above the target and the limit moves up: worth a rollout whatever
    # patch.minChange says (hysteresis must not strand a throttled container).
    urgent: bool = False


def _no_recommendation_action(result: NoRecommendation) -> ContainerAction:
    if result.reason is NoRecommendationReason.INSUFFICIENT_DATA:
        return ContainerAction.INSUFFICIENT_DATA
    if result.reason is NoRecommendationReason.SETTLING:
        return ContainerAction.SETTLING
    return ContainerAction.SKIPPED


def _stepped(
    current: ContainerResources, rec: Recommendation, policy: ThrottlePolicySpec
) -> ContainerResources:
    """The recommendation within the step limits of one patch, still self-consistent."""
    patch = policy.patch
    band = (rec.cpu_request_lower_bound, rec.cpu_request_upper_bound)
    request = step(current.cpu_request, rec.cpu_request, patch, band=band)
    limit = None if rec.cpu_limit is None else step(current.cpu_limit, rec.cpu_limit, patch)
    if limit is not None:
        # The request moves within its own step limits; the limit (also a new one) is
        # raised to it rather than the request cut to the limit (500m → 20m in one step).
        limit = max(limit, request)
    if limit is not None and rec.web_concurrency is not None:
        limit = whole_cores_step(current.cpu_limit, limit, request, patch)
    memory_limit = (
        None if rec.memory_limit is None else step(current.memory_limit, rec.memory_limit, patch)
    )
    memory_request = (
        None
        if rec.memory_request is None
        else step(current.memory_request, rec.memory_request, patch)
    )
    if memory_limit is not None and memory_request is not None:
        memory_request = min(memory_request, memory_limit)
    workers = None
    if rec.web_concurrency is not None:
        workers = max(1, -(-(limit or request) // MILLICORES_PER_CORE))
    return current.model_copy(
        update={
            "cpu_request": request,
            "cpu_limit": limit,
            "memory_request": memory_request
            if memory_request is not None
            else current.memory_request,
            "memory_limit": memory_limit if memory_limit is not None else current.memory_limit,
            "web_concurrency": workers,
            "cpu_burst_us": rec.cpu_burst_us,
        }
    )


def _resources_patch(before: Mapping[str, Any], after: ContainerResources) -> dict[str, Any]:
    """The ``resources`` of one container; ``null`` removes a CPU limit (limitPolicy Unset)."""
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if after.cpu_request is not None:
        requests["cpu"] = format_millicores(after.cpu_request)
    if after.memory_request is not None:
        requests["memory"] = format_bytes(after.memory_request)
    if after.cpu_limit is not None:
        limits["cpu"] = format_millicores(after.cpu_limit)
    elif "cpu" in (before.get("limits") or {}):
        limits["cpu"] = None
    if after.memory_limit is not None:
        limits["memory"] = format_bytes(after.memory_limit)
    patch: dict[str, Any] = {"requests": requests}
    if limits:
        patch["limits"] = limits
    return patch


def _env_patch(name: str, container: str, has_limit: bool, before: Any) -> dict[str, Any]:
    """WEB_CONCURRENCY through the downward API; ``value: null`` drops a literal."""
    entry: dict[str, Any] = {
        "name": name,
        "valueFrom": {
            "resourceFieldRef": {
                "containerName": container,
                "resource": "limits.cpu" if has_limit else "requests.cpu",
                "divisor": "1",
            }
        },
    }
    if isinstance(before, Mapping) and "value" in before:
        entry["value"] = None
    return entry


def _previous(deployment: DeploymentInfo, names: Sequence[str]) -> str:
    owned = {n: deployment.owned.get(n, {}) for n in names}
    burst = deployment.template_annotations.get(BURST_ANNOTATION)
    return json.dumps({"containers": owned, "burst": burst}, sort_keys=True, separators=(",", ":"))


def _build_patch(
    deployment: DeploymentInfo,
    targets: Mapping[str, ContainerResources],
    results: Mapping[str, Recommendation],
    policy: ThrottlePolicySpec,
    context: PatchContext,
) -> tuple[dict[str, Any], int]:
    containers = []
    for name, after in targets.items():
        before = deployment.owned.get(name, {})
        entry: dict[str, Any] = {
            "name": name,
            "resources": _resources_patch(before.get("resources") or {}, after),
        }
        current = deployment.container(name)
        if (
            results[name].web_concurrency is not None
            and current is not None
            and manages_workers(policy.web_concurrency, current)
        ):
            entry["env"] = [
                _env_patch(
                    policy.web_concurrency.env_name,
                    name,
                    after.cpu_limit is not None,
                    before.get("env"),
                )
            ]
        containers.append(entry)
    burst = max((results[n].cpu_burst_us for n in targets), default=0)
    template_annotations = {BURST_ANNOTATION: str(burst)} if policy.burst.enabled else {}
    body: dict[str, Any] = {
        "metadata": {
            "annotations": {
                PREVIOUS_RESOURCES_ANNOTATION: _previous(deployment, list(targets)),
                LAST_PATCHED_ANNOTATION: context.now_text,
            }
        },
        "spec": {"template": {"spec": {"containers": containers}}},
    }
    if template_annotations:
        body["spec"]["template"]["metadata"] = {"annotations": template_annotations}
    return body, burst


def _skip_all(results: Mapping[str, RecommendationResult], reason: str) -> DeploymentDecision:
    decisions = []
    for name, result in results.items():
        if isinstance(result, NoRecommendation):
            decisions.append(
                ContainerDecision(name, result, _no_recommendation_action(result), result.message)
            )
        else:
            decisions.append(ContainerDecision(name, result, ContainerAction.SKIPPED, reason))
    return DeploymentDecision(tuple(decisions), skip_reason=reason)


def _unschedulable(
    deployment: DeploymentInfo,
    targets: Mapping[str, ContainerResources],
    node_cpu: NodeCpu | None,
) -> str:
    """Why the patched pod would not fit its node, or "" (requests are what the scheduler
    sums; a DaemonSet's pod must fit the smallest node, :class:`NodeCpu`)."""
    if node_cpu is None:
        return ""
    fits, which = node_cpu.for_kind(deployment.kind)
    requested = sum(targets.get(c.name, c).cpu_request or 0 for c in deployment.containers)
    if requested <= fits:
        return ""
    return (
        f"unschedulable: the pod would request {describe_millicores(requested)} CPU, more than "
        f"{which} allocatable {describe_millicores(fits)}"
    )


def _recommend_only(results: Mapping[str, RecommendationResult]) -> DeploymentDecision:
    """Recommend mode: every recommendation stays one."""
    return DeploymentDecision(
        tuple(
            ContainerDecision(n, r, _no_recommendation_action(r), r.message)
            if isinstance(r, NoRecommendation)
            else ContainerDecision(n, r, ContainerAction.RECOMMENDED)
            for n, r in results.items()
        )
    )


def _targets(
    deployment: DeploymentInfo,
    results: Mapping[str, RecommendationResult],
    policy: ThrottlePolicySpec,
) -> tuple[_Targets, dict[str, Recommendation]]:
    """Each recommended container's resources after one step, and its recommendation."""
    targets = _Targets()
    recommended: dict[str, Recommendation] = {}
    for name, result in results.items():
        current = deployment.container(name)
        if isinstance(result, Recommendation) and current is not None:
            after = _stepped(current, result, policy)
            targets.values[name] = after
            recommended[name] = result
            targets.pairs += [
                (current.cpu_request, after.cpu_request),
                (current.cpu_limit, after.cpu_limit),
                (current.memory_request, after.memory_request),
                (current.memory_limit, after.memory_limit),
            ]
            if (
                result.evidence.throttle_ratio > policy.throttle_target
                and current.cpu_limit is not None
                and after.cpu_limit is not None
                and after.cpu_limit > current.cpu_limit
            ):
                targets.urgent = True
    return targets, recommended


def _patched_decisions(
    results: Mapping[str, RecommendationResult], targets: _Targets, restarts: str
) -> tuple[ContainerDecision, ...]:
    """The containers of a patch: patched to their targets, or without a recommendation."""
    decisions = []
    for name, result in results.items():
        if name in targets.values:
            decisions.append(
                ContainerDecision(
                    name, result, ContainerAction.PATCHED, restarts, targets.values[name]
                )
            )
        elif isinstance(result, NoRecommendation):
            decisions.append(
                ContainerDecision(name, result, _no_recommendation_action(result), result.message)
            )
    return tuple(decisions)


def decide(
    deployment: DeploymentInfo,
    results: Mapping[str, RecommendationResult],
    policy: ThrottlePolicySpec,
    context: PatchContext,
) -> DeploymentDecision:
    """What to do with one workload, given the engine's result for each container.

    Each kind's rollout rules decide with it: a rollout in progress as its kind counts one
    (:meth:`DeploymentInfo.pending_rollout`), and a patch that restarts no pod (OnDelete,
    a StatefulSet partition at or above its replicas) needs no rollout slot."""
    if not context.auto_patch:
        return _recommend_only(results)
    if context.data_partial:
        return _skip_all(
            results,
            "partial-data: Prometheus answered with partial data; nothing is patched from it",
        )
    pending = deployment.pending_rollout() if context.rollout_guardrails else ""
    if pending:
        return _skip_all(results, pending)
    if context.hpa_on_cpu:
        return _skip_all(
            results,
            f"hpa-on-cpu: a HorizontalPodAutoscaler scales this {deployment.kind.value} on CPU "
            "utilization; a new request would move it (docs/operating.md)",
        )
    remaining = cooldown_remaining_ms(
        context.last_patched_ms, context.now_ms, policy.patch.cooldown
    )
    if remaining > 0 and context.rollout_guardrails:
        return _skip_all(results, f"cooldown: {format_duration(remaining)} until the next patch")
    targets, recommended = _targets(deployment, results, policy)
    if not targets.values:
        return _skip_all(results, "no-recommendation: no container has a recommendation")
    unschedulable = _unschedulable(deployment, targets.values, context.node_cpu)
    if unschedulable:
        return _skip_all(results, unschedulable)
    if not targets.urgent and not is_worth_rollout(targets.pairs, policy.patch):
        return _skip_all(
            results,
            "below-min-change: every change is under patch.minChange "
            f"({policy.patch.min_change:.0%})",
        )
    if (
        context.rollout_slots <= 0
        and context.rollout_guardrails
        and deployment.pods_restarted() > 0
    ):
        return _skip_all(
            results,
            f"max-concurrent-rollouts: patch.maxConcurrentRollouts "
            f"({policy.patch.max_concurrent_rollouts}) rollouts "
            "are in progress",
        )
    body, burst = _build_patch(deployment, targets.values, recommended, policy, context)
    # A patch that restarts nothing (OnDelete, a partition above every ordinal) says so.
    restarts = "" if deployment.pods_restarted() > 0 else deployment.rollout_semantics()
    decisions = _patched_decisions(results, targets, restarts)
    return DeploymentDecision(decisions, patch=body, burst_us=burst)


def rollback_patch(deployment: DeploymentInfo, now_text: str) -> dict[str, Any] | None:
    """The patch that restores the fields recorded before the last patch, or None.

    Keys the patch added are set to null and an env entry it added is deleted, so the
    container ends exactly as recorded; the rollback annotation is removed and
    last-patched set, so the cooldown keeps AutoPatch from redoing it at once.
    """
    text = deployment.annotations.get(PREVIOUS_RESOURCES_ANNOTATION)
    if not text:
        return None
    previous = json.loads(text)
    containers = []
    for name, before in (previous.get("containers") or {}).items():
        now = deployment.owned.get(name)
        if now is None:
            continue
        resources: dict[str, Any] = {}
        for section in ("requests", "limits"):
            old = (before.get("resources") or {}).get(section) or {}
            new = (now.get("resources") or {}).get(section) or {}
            merged = {key: old.get(key) for key in set(old) | set(new)}
            if merged:
                resources[section] = merged
        entry: dict[str, Any] = {"name": name, "resources": resources}
        env_before, env_now = before.get("env"), now.get("env")
        if env_before is not None:
            restored = dict(env_before)
            if "value" in env_before:
                restored["valueFrom"] = None
            elif "valueFrom" in env_before and isinstance(env_now, Mapping) and "value" in env_now:
                restored["value"] = None
            entry["env"] = [restored]
        elif isinstance(env_now, Mapping):
            entry["env"] = [{"name": env_now["name"], "$patch": "delete"}]
        containers.append(entry)
    return {
        "metadata": {"annotations": {ROLLBACK_ANNOTATION: None, LAST_PATCHED_ANNOTATION: now_text}},
        "spec": {
            "template": {
                "metadata": {"annotations": {BURST_ANNOTATION: previous.get("burst")}},
                "spec": {"containers": containers},
            }
        },
    }
