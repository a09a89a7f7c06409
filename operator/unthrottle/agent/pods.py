"""A Pod as the API server returns it → what the burst agent must do for it: pure.

The agent acts on a running pod that carries ``unthrottle.dev/cpu-burst-us`` (apply it)
or, without it, still carries the agent's own report (``unthrottle.dev/cpu-burst-applied``
or ``-reason``): the annotation went away, so the burst goes back to 0. Every other pod
is left alone, so a burst someone else set is never touched. Only containers with a CPU
limit can have a burst (no limit, no quota); of those, only the running ones have a
cgroup (``containerStatuses[].containerID``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from unthrottle.agent.layout import QosClass, Runtime, parse_container_id
from unthrottle.model.names import (
    BURST_ANNOTATION,
    BURST_APPLIED_ANNOTATION,
    BURST_REASON_ANNOTATION,
)
from unthrottle.model.quantity import QuantityError, parse_bytes, parse_millicores

__all__ = ["ContainerTarget", "Intent", "PodTarget", "pod_qos", "pod_target", "targets"]

# The largest burst accepted from the annotation (an hour of CPU time): anything above is
# a typo, and every value is capped at the cgroup's quota anyway.
MAX_BURST_US = 3_600_000_000


class Intent(StrEnum):
    """What the agent does for a pod this cycle."""

    IGNORE = "ignore"  # not running, or neither annotated nor reported on
    APPLY = "apply"  # assert the annotation's burst
    RESET = "reset"  # the annotation went away: back to 0, then drop the report
    INVALID = "invalid"  # the annotation is not a number of µs: report, write nothing


@dataclass(frozen=True)
class ContainerTarget:
    """A container with a CPU limit; ``runtime``/``container_id`` None while not running."""

    name: str
    cpu_limit: int  # millicores
    runtime: Runtime | None
    container_id: str | None


@dataclass(frozen=True)
class PodTarget:
    namespace: str
    name: str
    uid: str
    qos: QosClass
    intent: Intent
    requested_us: int  # the annotation's burst (0 for RESET and INVALID)
    problem: str  # INVALID: what is wrong with the annotation
    containers: tuple[ContainerTarget, ...]
    reported: Mapping[str, str]  # the agent's annotations as found on the pod

    @property
    def running(self) -> tuple[ContainerTarget, ...]:
        return tuple(c for c in self.containers if c.container_id is not None)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def _resources(container: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    resources = container.get("resources") or {}
    return dict(resources.get("requests") or {}), dict(resources.get("limits") or {})


def _same_quantity(kind: str, left: Any, right: Any) -> bool:
    parse = parse_millicores if kind == "cpu" else parse_bytes
    try:
        return parse(str(left)) == parse(str(right))
    except QuantityError:
        return False


def pod_qos(pod: Mapping[str, Any]) -> QosClass:
    """``status.qosClass``, or the kubelet's rule on the spec when the status has none.

    Guaranteed: every container (init containers too) has CPU and memory limits, and its
    requests (defaulted to the limits) equal them. BestEffort: no requests or limits at
    all. Anything else is Burstable.
    """
    given = (pod.get("status") or {}).get("qosClass")
    if given in {q.value for q in QosClass}:
        return QosClass(given)
    spec = pod.get("spec") or {}
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    anything, guaranteed = False, bool(containers)
    for container in containers:
        requests, limits = _resources(container)
        for kind in ("cpu", "memory"):
            request = requests.get(kind, limits.get(kind))
            limit = limits.get(kind)
            anything = anything or request is not None or limit is not None
            if limit is None or request is None or not _same_quantity(kind, request, limit):
                guaranteed = False
    if guaranteed:
        return QosClass.GUARANTEED
    return QosClass.BURSTABLE if anything else QosClass.BEST_EFFORT


def _containers(pod: Mapping[str, Any]) -> tuple[ContainerTarget, ...]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    statuses = {s.get("name"): s for s in status.get("containerStatuses") or []}
    found = []
    for container in spec.get("containers") or []:
        _, limits = _resources(container)
        if limits.get("cpu") is None:
            continue
        try:
            limit = parse_millicores(str(limits["cpu"]))
        except QuantityError:
            continue  # the API server accepts no such pod; nothing to apply to
        state = statuses.get(container["name"]) or {}
        parsed = None
        if "running" in (state.get("state") or {}):
            parsed = parse_container_id(str(state.get("containerID") or ""))
        runtime, ident = parsed if parsed is not None else (None, None)
        found.append(ContainerTarget(container["name"], limit, runtime, ident))
    return tuple(found)


def _requested(text: str) -> tuple[int | None, str]:
    value = text.strip()
    if not value.isdigit():
        return None, f"{BURST_ANNOTATION} is {text!r}, not a whole number of microseconds"
    burst = int(value)
    if burst > MAX_BURST_US:
        return None, f"{BURST_ANNOTATION} is {burst} µs, above the {MAX_BURST_US} µs accepted"
    return burst, ""


def pod_target(pod: Mapping[str, Any]) -> PodTarget:
    """What the agent must do for ``pod`` this cycle."""
    metadata = pod.get("metadata") or {}
    annotations = dict(metadata.get("annotations") or {})
    reported = {
        k: annotations[k]
        for k in (BURST_APPLIED_ANNOTATION, BURST_REASON_ANNOTATION)
        if k in annotations
    }
    running = (pod.get("status") or {}).get("phase") == "Running"
    intent, requested, problem = Intent.IGNORE, 0, ""
    if running and not metadata.get("deletionTimestamp"):
        if BURST_ANNOTATION in annotations:
            value, problem = _requested(str(annotations[BURST_ANNOTATION]))
            intent, requested = (Intent.INVALID, 0) if value is None else (Intent.APPLY, value)
        elif reported:
            intent = Intent.RESET
    return PodTarget(
        namespace=metadata.get("namespace") or "",
        name=metadata.get("name") or "",
        uid=metadata.get("uid") or "",
        qos=pod_qos(pod),
        intent=intent,
        requested_us=requested,
        problem=problem,
        containers=_containers(pod),
        reported=reported,
    )


def targets(pods: Iterable[Mapping[str, Any]]) -> list[PodTarget]:
    """The pods the agent acts on this cycle."""
    return [t for t in map(pod_target, pods) if t.intent is not Intent.IGNORE]
