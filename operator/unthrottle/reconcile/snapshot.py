"""What one pass knows: the policy, the cluster and the metrics, as immutable values.

A pass reads everything it decides from into a :class:`ClusterSnapshot` first
(:mod:`unthrottle.reconcile.read`), then plans from the snapshot alone
(:mod:`unthrottle.reconcile.plan`), then writes the plan (:mod:`unthrottle.reconcile.apply`).
The snapshot is plain data, so a test, the report, or a many-pass harness can build one
without a cluster. Nothing here reads a clock: the time of a pass is an :class:`Instant`
given by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from unthrottle.model.fields import validation_message as one_line
from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.model.status import ThrottlePolicyStatus
from unthrottle.model.workload import DeploymentInfo, NodeCpu, WorkloadRef, WorkloadStats
from unthrottle.reconcile.scope import OperatorScope, Rival, precedence

__all__ = [
    "ClusterSnapshot",
    "Instant",
    "MetricsSnapshot",
    "PassFailure",
    "PolicyObject",
    "parse_policy",
    "validation_message",
]


@dataclass(frozen=True)
class Instant:
    """The time of a pass, given by the caller (a pass reads no clock of its own)."""

    ms: int
    text: str

    @classmethod
    def at(cls, moment: datetime) -> Instant:
        moment = moment.astimezone(UTC).replace(microsecond=0)
        return cls(int(moment.timestamp() * 1000), moment.strftime("%Y-%m-%dT%H:%M:%SZ"))

    @classmethod
    def from_ms(cls, ms: int) -> Instant:
        return cls.at(datetime.fromtimestamp(ms / 1000, UTC))


@dataclass(frozen=True)
class PassFailure:
    """Why a pass cannot decide anything: a condition reason and a sentence.

    ``prometheus`` is the ``PrometheusReachable`` condition the failure implies (None when
    the failure says nothing about Prometheus, e.g. an invalid policy).
    """

    reason: str
    message: str
    prometheus: bool | None = None


@dataclass(frozen=True)
class PolicyObject:
    """A ThrottlePolicy as a pass sees it: its name, generation, precedence and spec."""

    name: str
    generation: int
    precedence: tuple[str, str]  # (creationTimestamp, name): older policies govern
    spec: ThrottlePolicySpec
    previous: ThrottlePolicyStatus | None = None


def validation_message(error: ValidationError) -> str:
    """Every violation, with its path from the object's root as the API server names it."""
    return one_line(error, "spec")


def parse_policy(body: Mapping[str, Any]) -> PolicyObject | PassFailure:
    """The policy object as the API server returns it → a :class:`PolicyObject`, or why not."""
    metadata = body.get("metadata") or {}
    previous = None
    if body.get("status"):
        try:
            previous = ThrottlePolicyStatus.model_validate(body["status"])
        except ValidationError:
            previous = None  # an unreadable old status is replaced, not fatal
    try:
        spec = ThrottlePolicySpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        return PassFailure("InvalidPolicy", validation_message(exc))
    return PolicyObject(
        name=metadata["name"],
        generation=metadata.get("generation") or 0,
        precedence=precedence(body),
        spec=spec,
        previous=previous,
    )


@dataclass(frozen=True)
class MetricsSnapshot:
    """What Prometheus said for the policy's scope, as plain values."""

    workloads: tuple[WorkloadStats, ...]
    source: str  # the Prometheus URL, without credentials
    missing_series: frozenset[str] = frozenset()
    warnings: tuple[str, ...] = ()  # a partial answer's warnings (Thanos, Mimir)
    # False when nothing was asked (no Deployment in scope): reachability is then unknown.
    answered: bool = True
    # Series whose values Prometheus answered as NaN, ±Inf or negative: name → values.
    unusable_series: Mapping[str, int] = field(default_factory=dict)

    @property
    def partial(self) -> bool:
        return bool(self.warnings)


@dataclass(frozen=True)
class ClusterSnapshot:
    """Everything one pass of one policy decides from.

    ``namespace_labels`` is None when the namespaces' labels are unknown (the report
    reading Prometheus alone): then every namespace of the workloads is in scope.
    ``deployments`` are the candidates: in the policy's namespaces and matching its
    selector; which of them this policy governs is a rule of the plan (older rivals
    govern first). ``recommendations`` are the trec statuses this policy wrote, by
    (namespace, name), in every namespace. ``failure`` is set when reading could not
    finish (no Prometheus, bad credentials, Prometheus down): nothing is decided then.
    ``node_cpu`` caps every limit and holds back a pod that would not fit.
    """

    bounds: OperatorScope
    namespace_labels: Mapping[str, Mapping[str, str]] | None = None
    deployments: tuple[DeploymentInfo, ...] = ()
    rivals: tuple[Rival, ...] = ()
    cpu_autoscaled: frozenset[WorkloadRef] = frozenset()
    node_cpu: NodeCpu | None = None  # the nodes' allocatable CPU; None: unknown, no cap
    recommendations: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    metrics: MetricsSnapshot | None = None
    failure: PassFailure | None = None
