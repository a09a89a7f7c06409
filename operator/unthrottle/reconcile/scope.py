"""Which workloads a policy covers, under which tier, and with which configuration: pure rules.

The API server says what each Deployment is configured with (its containers' resources,
where WEB_CONCURRENCY comes from, the burst annotation, its labels); Prometheus says how
it behaved. This module joins the two for the report and for reconcile, and applies the
per-Deployment overrides of docs/policy-reference.md: the ``unthrottle.dev/tier`` label and the
``unthrottle.dev/ignore: "true"`` annotation. The join picks, among the configurations the
window holds (docs/recommendations.md, "History belongs to a configuration"), the one the
Deployment's spec runs now (:func:`configured`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from unthrottle.model.names import IGNORE_ANNOTATION, SYSTEM_NAMESPACES, TIER_LABEL
from unthrottle.model.policy import ThrottlePolicySpec, Tier
from unthrottle.model.quantity import format_bytes, format_millicores
from unthrottle.model.recommendation import NoRecommendation, NoRecommendationReason
from unthrottle.model.stats import ConfigurationStats, ContainerResources, ContainerStats
from unthrottle.model.workload import DeploymentInfo, WorkloadRef, WorkloadStats

__all__ = [
    "ContainerInScope",
    "OperatorScope",
    "Rival",
    "configured",
    "describe_configuration",
    "is_ignored",
    "join",
    "namespaces_in_scope",
    "policy_for",
    "precedence",
    "selects",
    "split_governed",
    "tier_for",
    "unusable_text",
]


def is_ignored(deployment: DeploymentInfo) -> bool:
    """Opted out with the annotation ``unthrottle.dev/ignore: "true"``."""
    return deployment.annotations.get(IGNORE_ANNOTATION, "").strip().lower() == "true"


def tier_for(deployment: DeploymentInfo, policy: ThrottlePolicySpec) -> Tier:
    """The Deployment's ``unthrottle.dev/tier`` label if it names a tier, else the policy's."""
    label = deployment.labels.get(TIER_LABEL, "").strip().lower()
    return Tier(label) if label in {t.value for t in Tier} else policy.tier


def policy_for(deployment: DeploymentInfo, policy: ThrottlePolicySpec) -> ThrottlePolicySpec:
    """The policy as it applies to one Deployment (its tier label honoured)."""
    tier = tier_for(deployment, policy)
    return policy if tier is policy.tier else policy.model_copy(update={"tier": tier})


@dataclass(frozen=True)
class ContainerInScope:
    """One container of a Deployment in scope, and its statistics or why there are none."""

    deployment: DeploymentInfo
    container: ContainerResources
    stats: ContainerStats | NoRecommendation

    @property
    def ref(self) -> WorkloadRef:
        return self.deployment.ref


_UNKNOWN = (None, None, None, None)


def _effective(resources: ContainerResources) -> tuple[int | None, ...]:
    # Kubernetes defaults an unset request to the limit: a spec with limits only runs pods
    # whose kube-state-metrics request is the limit.
    cpu_request = resources.cpu_limit if resources.cpu_request is None else resources.cpu_request
    memory_request = (
        resources.memory_limit if resources.memory_request is None else resources.memory_request
    )
    return (cpu_request, resources.cpu_limit, memory_request, resources.memory_limit)


def _pair(request: str | None, limit: str | None) -> str:
    low, high = request or "none", limit or "none"
    return low if low == high else f"{low}/{high}"


def describe_configuration(resources: ContainerResources) -> str:
    """``cpu 600m/2, memory 1Gi``: requests/limits, one value when they are equal."""
    cpu_request, cpu_limit, memory_request, memory_limit = _effective(resources)

    def cores(value: int | None) -> str | None:
        return None if value is None else format_millicores(value)

    def size(value: int | None) -> str | None:
        return None if value is None else format_bytes(value)

    return (
        f"cpu {_pair(cores(cpu_request), cores(cpu_limit))}, "
        f"memory {_pair(size(memory_request), size(memory_limit))}"
    )


def configured(
    stats: ContainerStats, spec: ContainerResources
) -> ContainerStats | NoRecommendation:
    """The statistics of the configuration the Deployment runs now, or SETTLING.

    Among the current configuration and the history, the one whose requests and limits
    equal the spec's becomes the statistics (the others its history, newest first), with
    the spec's resources (threads, which no spec holds, from the statistics). When none
    does, no pod has run with the spec yet and the earlier configurations' counters belong
    to their own limits: SETTLING. Resources that kube-state-metrics could not show at all
    (one configuration, all unknown) cannot contradict the spec and are taken as its.
    """
    seen = [
        ConfigurationStats(container=stats.container, cpu=stats.cpu, memory=stats.memory),
        *stats.history,
    ]
    wanted = _effective(spec)
    match = next((c for c in seen if _effective(c.container) == wanted), None)
    if match is None and len(seen) == 1 and _effective(seen[0].container) == _UNKNOWN:
        match = seen[0]
    if match is None:
        earlier = len(seen)
        return NoRecommendation(
            reason=NoRecommendationReason.SETTLING,
            message=(
                f"no pod has run with {describe_configuration(spec)} yet; "
                f"{earlier} earlier configuration{'' if earlier == 1 else 's'} seen"
            ),
        )
    container = spec.model_copy(update={"threads": spec.threads or stats.container.threads})
    return ContainerStats(
        container=container,
        cpu=match.cpu,
        memory=match.memory,
        history=tuple(c for c in seen if c is not match),
    )


def unusable_text(unusable: Mapping[str, int]) -> str:
    """``Prometheus answered unusable values (NaN, ±Inf or negative) of X (n), Y (m)``."""
    named = ", ".join(f"{name} ({count})" for name, count in sorted(unusable.items()))
    return f"Prometheus answered unusable values (NaN, ±Inf or negative) of {named}"


def _no_statistics(
    container: str, ref: WorkloadRef, unusable: Mapping[str, int]
) -> NoRecommendation:
    if unusable:
        # Present in the index, but what came back cannot be computed with.
        return NoRecommendation(
            reason=NoRecommendationReason.METRICS_UNAVAILABLE,
            message=f"no usable CPU statistics for container {container} of {ref}: "
            + unusable_text(unusable),
        )
    return NoRecommendation(
        reason=NoRecommendationReason.MISSING_METRICS,
        message=(
            f"no CPU series for container {container} of {ref} "
            "in the window (no pods ran, or Prometheus does not scrape them)"
        ),
    )


def join(
    deployments: Iterable[DeploymentInfo],
    workloads: Iterable[WorkloadStats],
    unusable: Mapping[str, int] | None = None,
) -> list[ContainerInScope]:
    """Every container of every Deployment not opted out, with its statistics if any.

    ``unusable``: the series Prometheus answered unusable values of (a container without
    statistics then says so, not that its series are missing)."""
    by_ref = {w.ref: w for w in workloads}
    joined: list[ContainerInScope] = []
    for deployment in sorted(deployments, key=lambda d: (d.ref.namespace, d.ref.name)):
        if is_ignored(deployment):
            continue
        workload = by_ref.get(deployment.ref)
        seen = {} if workload is None else {s.container.name: s for s in workload.containers}
        for container in deployment.containers:
            stats = seen.get(container.name)
            result: ContainerStats | NoRecommendation
            if stats is None:
                result = _no_statistics(container.name, deployment.ref, unusable or {})
            else:
                result = configured(stats, container)
            joined.append(ContainerInScope(deployment, container, result))
    return joined


@dataclass(frozen=True)
class OperatorScope:
    """What the operator process may touch: never its own namespace by default, and only
    the namespaces it was started for (None: all)."""

    operator_namespace: str
    allowed: frozenset[str] | None = None


def namespaces_in_scope(
    spec: ThrottlePolicySpec, labels: Mapping[str, Mapping[str, str]], bounds: OperatorScope
) -> list[str]:
    """The namespaces a policy covers; an empty selector leaves out the system ones."""
    default = spec.namespace_selector.is_empty()
    excluded = SYSTEM_NAMESPACES | {bounds.operator_namespace} if default else frozenset()
    return sorted(
        name
        for name, ns_labels in labels.items()
        if name not in excluded
        and (bounds.allowed is None or name in bounds.allowed)
        and spec.namespace_selector.matches(dict(ns_labels))
    )


def selects(
    spec: ThrottlePolicySpec,
    deployment: DeploymentInfo,
    labels: Mapping[str, Mapping[str, str]],
    bounds: OperatorScope,
) -> bool:
    """Whether a policy's selectors (namespaces, ``kinds``, labels) cover a workload."""
    namespace = deployment.ref.namespace
    in_namespace = namespaces_in_scope(spec, {namespace: labels.get(namespace, {})}, bounds)
    return (
        bool(in_namespace)
        and deployment.kind in spec.kinds
        and spec.selector.matches(deployment.labels)
    )


def precedence(policy: Mapping[str, Any]) -> tuple[str, str]:
    """Older first (creation time), then by name: the order in which policies govern."""
    metadata = policy.get("metadata") or {}
    return (metadata.get("creationTimestamp") or "", metadata.get("name") or "")


class Rival(NamedTuple):
    """Another valid policy: its precedence key and spec."""

    key: tuple[str, str]
    spec: ThrottlePolicySpec


def split_governed(
    me: tuple[str, str],
    rivals: Iterable[Rival],
    candidates: Iterable[DeploymentInfo],
    labels: Mapping[str, Mapping[str, str]],
    bounds: OperatorScope,
) -> tuple[list[DeploymentInfo], list[str]]:
    """The candidates a policy governs (no older rival selects them), and one line per
    overlap for its status: "ns/name: governed by X (older)" or "... this policy governs"."""
    others = list(rivals)
    governed, overlaps = [], []
    for deployment in candidates:
        selecting = [r.key for r in others if selects(r.spec, deployment, labels, bounds)]
        first = min(selecting, default=None)
        if first is not None and first < me:
            overlaps.append(f"{deployment.ref}: governed by {first[1]} (older)")
            continue
        if selecting:
            names = ", ".join(sorted(key[1] for key in selecting))
            overlaps.append(f"{deployment.ref}: also selected by {names}; this policy governs")
        governed.append(deployment)
    return governed, overlaps
