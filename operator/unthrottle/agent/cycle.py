"""One cycle of the burst agent over its node's pods: list, resolve, assert, report.

1. List the pods bound to this node (one request, a ``spec.nodeName`` field selector) and
   find the cgroup hierarchy and the kubelet's driver (both re-read every cycle: a kubelet
   reconfigured needs no agent restart).
2. For each pod the agent acts on (:func:`~unthrottle.agent.pods.targets`), locate each
   running container's cgroup: from ``/proc/<pid>/cgroup`` of one of its processes when
   one is found, else from the layout rules (:mod:`~unthrottle.agent.layout`); the pod's
   cgroup is the parent of a container found through ``/proc``, else the layout's.
3. Assert every container's burst, then the pod's (the sum of its containers', capped at
   the pod's quota). The kernel's value is read every cycle and written only when it
   differs, so a runtime that rewrote ``cpu.max`` (older kernels then shrink
   ``cpu.max.burst``) gets it back within one interval.
4. Report on the pod: ``unthrottle.dev/cpu-burst-applied`` when every running container
   with a CPU limit (and the pod) holds its burst, else ``unthrottle.dev/cpu-burst-reason``;
   patched only when it changes. A failure is that pod's report, never the cycle's end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from unthrottle.agent.cgroupfs import BurstReason, BurstResult, CgroupFs, find_hierarchy
from unthrottle.agent.cgroupfs import proc_cgroups as read_proc_cgroups
from unthrottle.agent.layout import (
    CgroupVersion,
    Driver,
    container_candidates,
    container_leaf,
    index_by_container,
    kubepods_dir,
    names_pod,
    parse_container_id,
    pod_dir,
)
from unthrottle.agent.pods import ContainerTarget, Intent, PodTarget, targets
from unthrottle.model.names import BURST_APPLIED_ANNOTATION, BURST_REASON_ANNOTATION
from unthrottle.sources.kubeapi import KubernetesError
from unthrottle.sources.kubernetes import KubernetesSource

__all__ = [
    "AgentConfig",
    "CgroupOutcome",
    "CycleReport",
    "NodeFacts",
    "PodOutcome",
    "assert_pod",
    "run_cycle",
]

logger = logging.getLogger("unthrottle.agent")

# Not a problem for a pod: a cgroup without a quota cannot throttle, and crun's
# ``container`` sub-cgroup exists only with crun.
_HARMLESS = {BurstReason.APPLIED, BurstReason.UNLIMITED_QUOTA}


@dataclass(frozen=True)
class AgentConfig:
    """Where the agent looks: its node, the host's cgroup and proc mounts, the kubelet's
    ``--cgroup-root``, and the driver (None: detected every cycle)."""

    node: str
    cgroup_root: Path = Path("/sys/fs/cgroup")
    proc_root: Path | None = Path("/proc")
    kubelet_root: str = "/"
    driver: Driver | None = None


@dataclass(frozen=True)
class CgroupOutcome:
    """One cgroup the agent asserted: a container's (``container`` set) or the pod's."""

    container: str  # "" for the pod cgroup
    via: str  # "proc" or "layout"
    result: BurstResult

    @property
    def problem(self) -> bool:
        return self.result.reason not in _HARMLESS


@dataclass(frozen=True)
class PodOutcome:
    target: PodTarget
    cgroups: tuple[CgroupOutcome, ...]
    annotations: Mapping[str, str | None]  # the report the pod should carry
    patched: bool = False
    error: str = ""  # the report could not be written

    @property
    def applied(self) -> bool:
        return self.annotations.get(BURST_APPLIED_ANNOTATION) is not None

    @property
    def problem(self) -> bool:
        return bool(self.error) or self.annotations.get(BURST_REASON_ANNOTATION) is not None


@dataclass(frozen=True)
class NodeFacts:
    """What the agent found on its node, for ``/readyz``."""

    cgroup_version: CgroupVersion | None
    hierarchy: str
    driver: Driver | None
    runtimes: tuple[str, ...]
    burst_supported: bool
    problem: str = ""  # why the node cannot get a burst ("" when it can)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cgroupVersion": None if self.cgroup_version is None else self.cgroup_version.value,
            "hierarchy": self.hierarchy,
            "driver": None if self.driver is None else self.driver.value,
            "runtimes": list(self.runtimes),
            "burstSupported": self.burst_supported,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class CycleReport:
    facts: NodeFacts
    pods: tuple[PodOutcome, ...] = ()
    error: str = ""  # the node's pods could not be listed
    seconds: float = 0.0
    finished_at: float = field(default_factory=time.time)

    @property
    def ready(self) -> bool:
        return not self.error and not self.facts.problem


def _runtimes(pods: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    found = set()
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            parsed = parse_container_id(str(status.get("containerID") or ""))
            if parsed is not None:
                found.add(parsed[0].value)
    return tuple(sorted(found))


def _facts(
    config: AgentConfig, fs: CgroupFs | None, pods: Sequence[Mapping[str, Any]]
) -> NodeFacts:
    runtimes = _runtimes(pods)
    if fs is None:
        return NodeFacts(
            None,
            "",
            None,
            runtimes,
            False,
            f"no cgroup hierarchy with the cpu controller under {config.cgroup_root}",
        )
    driver = config.driver or fs.detect_driver(config.kubelet_root)
    top = kubepods_dir(driver or Driver.CGROUPFS, config.kubelet_root)
    supported = fs.burst_supported(top) if driver is not None else False
    problem = ""
    if driver is None or not fs.exists(top):
        where = fs.path(PurePosixPath(config.kubelet_root.strip("/") or "."))
        problem = f"no kubepods cgroup (kubepods or kubepods.slice) under {where}"
    elif not supported:
        problem = f"KernelTooOld: no {fs.files.burst} in {fs.path(top)} (Linux >= 5.14)"
    hierarchy = str(fs.hierarchy.path)
    return NodeFacts(fs.version, hierarchy, driver, runtimes, supported, problem)


class _Locator:
    """Where a pod's cgroups are: ``/proc`` first, then the layout rules."""

    def __init__(
        self,
        fs: CgroupFs,
        config: AgentConfig,
        index: Mapping[str, PurePosixPath],
        driver: Driver | None,
    ) -> None:
        self.fs, self.config, self.index = fs, config, index
        # An undetected driver: try both layouts.
        self.drivers = (driver,) if driver else (Driver.SYSTEMD, Driver.CGROUPFS)

    def container(self, pod: PodTarget, c: ContainerTarget) -> tuple[PurePosixPath, str]:
        assert c.container_id is not None and c.runtime is not None
        found = self.index.get(c.container_id)
        if found is not None and names_pod(found.parent, pod.uid):
            return found, "proc"
        candidates = [
            pod_dir(d, pod.qos, pod.uid, self.config.kubelet_root)
            / container_leaf(d, c.runtime, c.container_id)
            for d in self.drivers
        ]
        return next((p for p in candidates if self.fs.exists(p)), candidates[0]), "layout"

    def pod(self, pod: PodTarget, containers: Iterable[PurePosixPath]) -> PurePosixPath:
        for directory in containers:
            if names_pod(directory.parent, pod.uid) and self.fs.exists(directory.parent):
                return directory.parent
        candidates = [pod_dir(d, pod.qos, pod.uid, self.config.kubelet_root) for d in self.drivers]
        return next((p for p in candidates if self.fs.exists(p)), candidates[0])


def _assert_container(fs: CgroupFs, directory: PurePosixPath, requested: int) -> BurstResult:
    """The container's cgroup and, where crun made one, its ``container`` sub-cgroup: the
    burst goes wherever a quota is; the container's is the smaller of the two."""
    main, sub = container_candidates(directory)
    results = [fs.assert_burst(main, requested)]
    if fs.exists(sub):
        results.append(fs.assert_burst(sub, requested))
    failed = [r for r in results if r.reason not in _HARMLESS]
    applied = [r for r in results if r.ok]
    if failed or not applied:
        return (failed or results)[0]
    return min(applied, key=lambda r: r.burst_us or 0)


def _reason(outcome: CgroupOutcome, doing: str = "") -> str:
    where = f"container {outcome.container}" if outcome.container else "pod cgroup"
    return f"{outcome.result.reason.value}: {doing}{where}: {outcome.result.message}"


def _report(target: PodTarget, cgroups: Sequence[CgroupOutcome]) -> dict[str, str | None]:
    problems = [o for o in cgroups if o.problem]
    if not problems:
        applied = None
        if target.intent is Intent.APPLY:
            # The largest burst a container holds: each holds min(requested, its quota).
            held = (o.result.burst_us or 0 for o in cgroups if o.container)
            applied = str(max(held, default=0))
        return {BURST_APPLIED_ANNOTATION: applied, BURST_REASON_ANNOTATION: None}
    doing = "setting the burst back to 0: " if target.intent is Intent.RESET else ""
    text = _reason(problems[0], doing)
    if len(problems) > 1:
        text += f" (and {len(problems) - 1} more)"
    return {BURST_APPLIED_ANNOTATION: None, BURST_REASON_ANNOTATION: text}


def assert_pod(fs: CgroupFs, locate: _Locator, target: PodTarget) -> PodOutcome | None:
    """Assert one pod's bursts; None when nothing runs yet (no change to its report)."""
    reason: str | None = None
    if target.intent is Intent.INVALID:
        reason = f"{BurstReason.INVALID_ANNOTATION.value}: {target.problem}"
    elif not target.containers and target.intent is Intent.APPLY:
        reason = f"{BurstReason.NO_CPU_LIMIT.value}: no container has a CPU limit to burst above"
    if reason is not None or not target.containers:
        report = {BURST_APPLIED_ANNOTATION: None, BURST_REASON_ANNOTATION: reason}
        return PodOutcome(target, (), report)
    if not target.running:
        return None
    outcomes = []
    directories = []
    for container in target.running:
        directory, via = locate.container(target, container)
        directories.append(directory)
        result = _assert_container(fs, directory, target.requested_us)
        outcomes.append(CgroupOutcome(container.name, via, result))
    total = sum(o.result.wanted_us or 0 for o in outcomes)
    pod_directory = locate.pod(target, directories)
    pod_via = "proc" if any(o.via == "proc" for o in outcomes) else "layout"
    outcomes.append(CgroupOutcome("", pod_via, fs.assert_burst(pod_directory, total)))
    return PodOutcome(target, tuple(outcomes), _report(target, outcomes))


def _publish(kube: KubernetesSource, outcome: PodOutcome) -> PodOutcome:
    """Patch the pod's report when it differs from what the pod carries."""
    target = outcome.target
    change = {k: v for k, v in outcome.annotations.items() if target.reported.get(k) != v}
    if not change:
        return outcome
    try:
        kube.annotate_pod(target.namespace, target.name, change)
    except KubernetesError as exc:
        logger.warning("pod %s: cannot write its burst report: %s", target, exc)
        return PodOutcome(target, outcome.cgroups, outcome.annotations, error=str(exc))
    applied = outcome.annotations.get(BURST_APPLIED_ANNOTATION)
    reason = outcome.annotations.get(BURST_REASON_ANNOTATION)
    if reason:
        logger.warning("pod %s: %s", target, reason)
    else:
        logger.info("pod %s: burst %s", target, f"{applied} µs applied" if applied else "reset")
    return PodOutcome(target, outcome.cgroups, outcome.annotations, patched=True)


def run_cycle(kube: KubernetesSource, config: AgentConfig) -> CycleReport:
    """One cycle over the node's pods (never raises for a pod's or the API's failure)."""
    started = time.monotonic()
    hierarchy = find_hierarchy(config.cgroup_root)
    fs = None if hierarchy is None else CgroupFs(hierarchy)
    try:
        pods = kube.node_pods(config.node)
    except KubernetesError as exc:
        logger.warning("cannot list the pods of node %s: %s", config.node, exc)
        facts = _facts(config, fs, [])
        return CycleReport(facts, error=str(exc), seconds=time.monotonic() - started)
    facts = _facts(config, fs, pods)
    work = targets(pods)
    outcomes: list[PodOutcome] = []
    if fs is None:
        reason = f"{BurstReason.CGROUP_NOT_FOUND.value}: {facts.problem}"
        report = {BURST_APPLIED_ANNOTATION: None, BURST_REASON_ANNOTATION: reason}
        outcomes = [_publish(kube, PodOutcome(t, (), report)) for t in work]
    elif work:
        index: dict[str, PurePosixPath] = {}
        if config.proc_root is not None:
            index = index_by_container(read_proc_cgroups(config.proc_root, fs.version))
        locate = _Locator(fs, config, index, facts.driver)
        for target in work:
            outcome = assert_pod(fs, locate, target)
            if outcome is not None:
                outcomes.append(_publish(kube, outcome))
    return CycleReport(facts, tuple(outcomes), seconds=time.monotonic() - started)
