"""What reconcile writes for people to read: trec status, the annotation, the policy status.

Pure builders. ``kubectl get trec`` prints ``current→recommended`` per column from the
summary built here, and ``unthrottle report`` prints its table with the same formatting
functions, so the two read alike.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from unthrottle.engine.guardrails import relative_change
from unthrottle.engine.workers import current_workers
from unthrottle.model.policy import Tier
from unthrottle.model.quantity import (
    format_bytes,
    format_millicores,
    parse_bytes,
    parse_millicores,
)
from unthrottle.model.recommendation import (
    NoRecommendation,
    Recommendation,
    RecommendationResult,
    output_fields,
)
from unthrottle.model.stats import ContainerResources, ContainerStats
from unthrottle.model.status import (
    Condition,
    ConditionStatus,
    ContainerAction,
    ContainerCurrent,
    ContainerEvidence,
    ContainerRecommendationStatus,
    ContainerRecommended,
    PolicyCounts,
    RecommendationSummary,
    ThrottlePolicyStatus,
    ThrottleRecommendationStatus,
    TopOffender,
)
from unthrottle.model.workload import ALL_KINDS, WorkloadRef
from unthrottle.reconcile.patch import ContainerDecision, DeploymentDecision

__all__ = [
    "TOP_OFFENDERS",
    "WorkloadOutcome",
    "annotation_changed",
    "as_merge_patch",
    "change",
    "condition",
    "cpu_text",
    "current_of",
    "keep_transition_times",
    "memory_text",
    "policy_status",
    "ratio_text",
    "recommendation_annotation",
    "trec_names",
    "trec_status",
]

TOP_OFFENDERS = 5


def as_merge_patch(value: Any, in_list: bool = False) -> Any:
    """A status as a JSON merge patch: empty strings are unset, not written.

    In an object an empty string becomes null, which a merge patch reads as "remove", so
    a message from an earlier pass does not linger; inside a list (replaced whole by a
    merge patch) the key is dropped. Kubernetes' own types omit empty strings too.
    """
    if isinstance(value, dict):
        if in_list:
            return {k: as_merge_patch(v) for k, v in value.items() if v != ""}
        return {k: None if v == "" else as_merge_patch(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_merge_patch(v, in_list=True) for v in value]
    return value


def change(before: str, after: str) -> str:
    """``before→after``, or just the value when it does not change."""
    return before if before == after else f"{before}→{after}"


def cpu_text(value: int | None) -> str:
    return "-" if value is None else format_millicores(value)


def memory_text(value: int | None) -> str:
    return "-" if value is None else format_bytes(value)


def ratio_text(value: float) -> str:
    """A throttle ratio for a column: ``60%``, ``<1%``, ``0%``."""
    return f"{value:.0%}" if value >= 0.01 or value == 0 else "<1%"


def current_of(container: ContainerResources) -> ContainerCurrent:
    """The current values as a trec shows them; workers as the pods get them (the downward
    API's reading of the limit or request, else the literal count)."""
    fields = container.model_dump(exclude={"name", "web_concurrency_from", "threads"})
    fields["web_concurrency"] = current_workers(container)
    return ContainerCurrent.model_validate(fields)


@dataclass(frozen=True)
class WorkloadOutcome:
    """One workload after a pass: its decision and the statistics behind it."""

    ref: WorkloadRef
    tier: Tier
    containers: Sequence[ContainerResources]
    stats: dict[str, ContainerStats]
    decision: DeploymentDecision

    def throttle_ratio(self, name: str) -> float | None:
        stats = self.stats.get(name)
        return None if stats is None else stats.cpu.throttled_period_ratio

    @property
    def worst(self) -> tuple[str, float]:
        """The most throttled container and its ratio (the first one when none is)."""
        ratios = [(c.name, self.throttle_ratio(c.name) or 0.0) for c in self.containers]
        return max(ratios, key=lambda item: item[1]) if ratios else ("", 0.0)


def _container_status(
    decision: ContainerDecision, current: ContainerResources
) -> ContainerRecommendationStatus:
    result = decision.result
    evidence = None
    if result.evidence is not None:
        evidence = ContainerEvidence.model_validate(
            result.evidence.model_dump(mode="json", by_alias=True, exclude={"demand_model"})
        )
    recommended = None
    if isinstance(result, Recommendation):
        recommended = ContainerRecommended.model_validate(
            result.model_dump(exclude={"diagnosis", "explanation", "evidence"})
        )
    return ContainerRecommendationStatus(
        name=decision.name,
        action=decision.action,
        reason=decision.reason,
        current=current_of(current),
        applied=None if decision.applied is None else current_of(decision.applied),
        recommended=recommended,
        evidence=evidence,
        diagnosis=result.diagnosis,
        explanation=result.message if isinstance(result, NoRecommendation) else result.explanation,
    )


def _toward(before: str, applied: str, target: str) -> str:
    """``250m→500m (target 590m)`` when a step limit cut the patch, else ``250m→590m``."""
    moved = change(before, applied)
    return moved if applied == target else f"{moved} (target {target})"


def _applied_summary(
    decision: ContainerDecision, current: ContainerResources, before: str
) -> RecommendationSummary:
    """A patched container's columns: what was written, and the target where it differs."""
    result, applied = decision.result, decision.applied
    assert isinstance(result, Recommendation) and applied is not None

    def workers(value: int | None) -> str:
        return "-" if value is None else str(value)

    now = workers(current_workers(current))
    return RecommendationSummary(
        container=decision.name,
        throttle=change(before, ratio_text(result.projected_throttle_ratio)),
        cpu_request=_toward(
            cpu_text(current.cpu_request),
            cpu_text(applied.cpu_request),
            cpu_text(result.cpu_request),
        ),
        cpu_limit=_toward(
            cpu_text(current.cpu_limit), cpu_text(applied.cpu_limit), cpu_text(result.cpu_limit)
        ),
        burst=f"{result.cpu_burst_us // 1000}ms" if result.cpu_burst_us else "-",
        memory=_toward(
            memory_text(current.memory_limit),
            memory_text(applied.memory_limit),
            memory_text(result.memory_limit),
        ),
        # The pods get the downward API's reading of the limit written, not of the target.
        workers=now
        if result.web_concurrency is None
        else _toward(now, workers(current_workers(applied)), workers(result.web_concurrency)),
        action=decision.action,
    )


def _summary(outcome: WorkloadOutcome, name: str) -> RecommendationSummary:
    decision = next(d for d in outcome.decision.containers if d.name == name)
    current = next(c for c in outcome.containers if c.name == name)
    ratio = outcome.throttle_ratio(name)
    before = "-" if ratio is None else ratio_text(ratio)
    result = decision.result
    workers = current_workers(current)
    workers_now = "-" if workers is None else str(workers)
    if decision.applied is not None and isinstance(result, Recommendation):
        return _applied_summary(decision, current, before)
    if not isinstance(result, Recommendation):
        return RecommendationSummary(
            container=name,
            throttle=before,
            cpu_request=cpu_text(current.cpu_request),
            cpu_limit=cpu_text(current.cpu_limit),
            memory=memory_text(current.memory_limit),
            workers=workers_now,
            action=decision.action,
        )
    return RecommendationSummary(
        container=name,
        throttle=change(before, ratio_text(result.projected_throttle_ratio)),
        cpu_request=change(cpu_text(current.cpu_request), cpu_text(result.cpu_request)),
        cpu_limit=change(cpu_text(current.cpu_limit), cpu_text(result.cpu_limit)),
        burst=f"{result.cpu_burst_us // 1000}ms" if result.cpu_burst_us else "-",
        memory=change(memory_text(current.memory_limit), memory_text(result.memory_limit)),
        workers=workers_now
        if result.web_concurrency is None
        else change(workers_now, str(result.web_concurrency)),
        action=decision.action,
    )


def trec_status(
    outcome: WorkloadOutcome, policy: str, now_text: str
) -> ThrottleRecommendationStatus:
    """The status of the Deployment's ThrottleRecommendation; the summary shows its worst
    container (highest throttled ratio)."""
    by_name = {c.name: c for c in outcome.containers}
    containers = tuple(_container_status(d, by_name[d.name]) for d in outcome.decision.containers)
    return ThrottleRecommendationStatus(
        observed_at=now_text,
        policy=policy,
        tier=outcome.tier,
        summary=_summary(outcome, outcome.worst[0]),
        containers=containers,
    )


# The recommendation annotation holds what is recommended, never why or when: the
# explanation, evidence and projection change with every window and live in the trec. A
# Deployment annotation change bumps metadata.generation and is copied to the ReplicaSet.
_ANNOTATION_QUANTITIES: dict[str, Callable[[Any], int]] = {
    "cpuRequest": parse_millicores,
    "cpuLimit": parse_millicores,
    "memoryRequest": parse_bytes,
    "memoryLimit": parse_bytes,
    "cpuBurstUs": int,
    "webConcurrency": int,
}
_ANNOTATION_LABELS = ("diagnosis", "reason")


def _annotation_fields(result: RecommendationResult) -> dict[str, object]:
    fields = output_fields(result)
    return {k: fields[k] for k in (*_ANNOTATION_QUANTITIES, *_ANNOTATION_LABELS)}


def recommendation_annotation(outcome: WorkloadOutcome, policy: str) -> str:
    """``unthrottle.dev/recommendation``: every container's recommended values, compact JSON."""
    document = {
        "policy": policy,
        "tier": outcome.tier.value,
        "containers": {d.name: _annotation_fields(d.result) for d in outcome.decision.containers},
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def _container_moved(before: object, after: object, min_change: float) -> bool:
    if not isinstance(before, dict) or not isinstance(after, dict):
        return True
    if set(before) != set(after):
        return True  # an older layout (with explanations) is written anew once
    if any(before[k] != after[k] for k in _ANNOTATION_LABELS):
        return True
    for key, parse in _ANNOTATION_QUANTITIES.items():
        old, new = before[key], after[key]
        if old is None or new is None:
            if old != new:
                return True
            continue
        try:
            pair = parse(old), parse(new)
        except (TypeError, ValueError):
            return True
        if pair[0] != pair[1] and relative_change(*pair) >= min_change:
            return True
    return False


def annotation_changed(current: str | None, new: str, min_change: float) -> bool:
    """Whether ``new`` differs from the annotation ``current`` beyond the hysteresis.

    Policy, tier, containers, diagnoses and reasons are compared as they are; each
    quantity moves only by at least ``patch.minChange`` (590m → 600m at 10%: not written).
    An annotation that does not parse is replaced.
    """
    if current is None:
        return True
    try:
        before = json.loads(current)
    except ValueError:
        return True
    after = json.loads(new)
    if not isinstance(before, dict) or {k: before.get(k) for k in ("policy", "tier")} != {
        k: after[k] for k in ("policy", "tier")
    }:
        return True
    old_containers = before.get("containers")
    if not isinstance(old_containers, dict) or set(old_containers) != set(after["containers"]):
        return True
    return any(
        _container_moved(old_containers[name], fields, min_change)
        for name, fields in after["containers"].items()
    )


def condition(
    kind: str, ok: bool | None, reason: str, message: str, *, now_text: str, generation: int
) -> Condition:
    """A condition; ``ok`` None is status Unknown (nothing could tell)."""
    return Condition(
        type=kind,
        status=ConditionStatus.UNKNOWN
        if ok is None
        else ConditionStatus.TRUE
        if ok
        else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        last_transition_time=now_text,
        observed_generation=generation,
    )


def keep_transition_times(
    conditions: Iterable[Condition], previous: Iterable[Condition]
) -> tuple[Condition, ...]:
    """``conditions`` with the previous lastTransitionTime of each whose status is unchanged.

    lastTransitionTime changes only when the status does: a condition that stays False
    for a month says since when, however many passes wrote it."""
    before = {c.type: c for c in previous}

    def kept(new: Condition) -> Condition:
        old = before.get(new.type)
        if old is None or old.status != new.status:
            return new
        return new.model_copy(update={"last_transition_time": old.last_transition_time})

    return tuple(kept(c) for c in conditions)


def policy_status(
    outcomes: Sequence[WorkloadOutcome],
    conditions: Sequence[Condition],
    previous: ThrottlePolicyStatus | None,
    *,
    generation: int,
    now_text: str,
    target: float,
    overlaps: Sequence[str] = (),
    message: str = "",
) -> ThrottlePolicyStatus:
    """Counts by outcome, the top offenders, the conditions of one pass."""
    actions = [[d.action for d in o.decision.containers] for o in outcomes]
    counts = PolicyCounts(
        workloads=len(outcomes),
        throttled=sum(1 for o in outcomes if o.worst[1] > target),
        recommended=sum(1 for a in actions if ContainerAction.RECOMMENDED in a),
        patched=sum(1 for o in outcomes if o.decision.patched),
        skipped=sum(1 for a in actions if ContainerAction.SKIPPED in a),
        settling=sum(1 for a in actions if ContainerAction.SETTLING in a),
    )
    offenders = sorted(
        (
            TopOffender(
                namespace=o.ref.namespace,
                kind=o.ref.kind,
                name=o.ref.name,
                container=name,
                throttle_ratio=ratio,
            )
            for o in outcomes
            for name, ratio in [o.worst]
            if ratio > 0 and name
        ),
        key=lambda t: -t.throttle_ratio,
    )[:TOP_OFFENDERS]
    return ThrottlePolicyStatus(
        observed_generation=generation,
        conditions=keep_transition_times(conditions, previous.conditions if previous else ()),
        last_run_time=now_text,
        counts=counts,
        top_offenders=tuple(offenders),
        overlaps=tuple(overlaps),
        message=message,
    )


def trec_names(refs: Iterable[WorkloadRef]) -> dict[WorkloadRef, str]:
    """Each workload's ThrottleRecommendation name: the workload's own, unless a workload of
    another kind in the namespace has it too; then the first kind in the order Deployment,
    StatefulSet, DaemonSet keeps it and the others are ``<name>-<kind>`` (``web-statefulset``)."""
    order = {kind: i for i, kind in enumerate(ALL_KINDS)}
    names: dict[WorkloadRef, str] = {}
    taken: set[tuple[str, str]] = set()
    for ref in sorted(set(refs), key=lambda r: (order[r.kind], r.namespace, r.name)):
        name = ref.name
        if (ref.namespace, name) in taken:
            name = f"{ref.name}-{ref.kind.value.lower()}"
        taken.add((ref.namespace, name))
        names[ref] = name
    return names
