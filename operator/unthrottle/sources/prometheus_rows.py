"""The rows of a fetch's answers, kept per (namespace, pod, container), and their owners.

This module owns what the queries said before any aggregation: the cAdvisor statistics
(:class:`Tables`), the kube-state-metrics rows and which series exist at all
(:class:`Ksm`, with the rules of what counts as missing), and which pod belongs to which
workload (:class:`Owners`). It is pure (no I/O); how the rows of one workload's pods
become its statistics is in :mod:`.prometheus_aggregate`, the queries in
:mod:`.prometheus_queries`.

Pods to workloads: ``kube_pod_owner{owner_kind="ReplicaSet"}`` and
``kube_replicaset_owner{owner_kind="Deployment"}`` for a Deployment's pods;
``kube_pod_owner{owner_kind="StatefulSet"|"DaemonSet"}`` alone for those kinds (no
ReplicaSet in between); each ``max_over_time`` over the window so that pods and
ReplicaSets that came and went still map (pods of every owner kind are read, to size
chunks; only these three kinds' become workloads); a caller that knows more (the API
server) passes ``replicaset_owners``, and a pod without a ``kube_pod_owner`` row is then
matched to a known ReplicaSet by its name.

Required series that do not exist at any time in the window (under the extra matchers,
in any namespace; asked of the index, see :mod:`.prometheus_http`) are reported as
missing (:meth:`Ksm.series_report`). Two kinds are absent on a healthy cluster and are
only reported when that absence cannot be explained (and ``kube_replicaset_owner`` only
when some pod is owned by a ReplicaSet, or kube-state-metrics is missing: a namespace of
StatefulSets and DaemonSets has none):
``kube_pod_container_resource_limits`` (no container has a limit) and
``kube_pod_container_status_last_terminated_reason`` (no container has terminated) are
missing only when kube-state-metrics is missing as a whole, and the CFS counters
(``container_cpu_cfs_periods_total``, ``..._throttled_periods_total``, exported only for a
cgroup with a quota) only when a container in scope has a CPU limit or kube-state-metrics
cannot tell.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from unthrottle.model.workload import WorkloadKind, WorkloadRef
from unthrottle.sources.prometheus_queries import (
    LAST_TERMINATED,
    LIMITS,
    OPTIONAL_SERIES,
    PERIODS,
    POD_OWNER,
    REPLICASET_OWNER,
    REQUESTS,
    RSS,
    THROTTLED_PERIODS,
    USAGE,
    WORKING_SET,
)

__all__ = [
    "RESOURCE_STATS",
    "SIGNED_STATS",
    "Key",
    "Ksm",
    "Owners",
    "PodKey",
    "Tables",
    "key_of",
]

_DIRECT_KINDS = frozenset({WorkloadKind.STATEFULSET.value, WorkloadKind.DAEMONSET.value})

Key = tuple[str, str, str]  # (namespace, pod, container)
PodKey = tuple[str, str]  # (namespace, pod)

# Statistics that may be negative (every other negative value is dropped as garbage).
SIGNED_STATS: Final = frozenset({"rss_slope"})
RESOURCE_STATS: Final = ("cpu_request", "cpu_limit", "memory_request", "memory_limit")
_CONTAINER_STATS_KSM: Final = frozenset({*RESOURCE_STATS, "oom", "restarts"})


def key_of(labels: Mapping[str, str]) -> Key:
    """A row's (namespace, pod, container); a missing label is the empty string."""
    return (labels.get("namespace", ""), labels.get("pod", ""), labels.get("container", ""))


def _key(labels: Mapping[str, str]) -> Key | None:
    key = key_of(labels)
    return key if all(key) else None


class Tables:
    """Statistic name → {key: value}, accumulated over a fetch's queries."""

    def __init__(self) -> None:
        self.values: dict[str, dict[Key, float]] = defaultdict(dict)
        # One tuple per key for every statistic (tens of thousands of containers, ~20
        # statistics each), rather than one per answer row.
        self._keys: dict[Key, Key] = {}

    def __getitem__(self, stat: str) -> dict[Key, float]:
        return self.values[stat]

    def add(self, stat: str, labels: Mapping[str, str], number: float) -> None:
        """One answer row; rows without a namespace, pod and container are ignored."""
        key = _key(labels)
        if key is not None:
            self.values[stat][self._keys.setdefault(key, key)] = number

    def keys(self) -> set[Key]:
        out: set[Key] = set()
        for table in self.values.values():
            out.update(table)
        return out


class Ksm:
    """What the kube-state-metrics queries said, and which series exist (``present``)."""

    def __init__(self) -> None:
        self.present: set[str] = set()
        self.pods: set[PodKey] = set()
        self.pod_replicaset: dict[PodKey, str] = {}
        self.pod_workload: dict[PodKey, tuple[WorkloadKind, str]] = {}
        self.replicaset_deployment: dict[PodKey, str] = {}
        self.tables = Tables()

    def add(self, stat: str, labels: Mapping[str, str], number: float) -> None:
        """One row of a kube-state-metrics query."""
        if stat == "pod_owner":
            pod = (labels.get("namespace", ""), labels.get("pod", ""))
            if all(pod):
                self.pods.add(pod)
                kind, owner = labels.get("owner_kind"), labels.get("owner_name")
                if kind == "ReplicaSet" and owner:
                    self.pod_replicaset[pod] = owner
                elif kind in _DIRECT_KINDS and owner:
                    # No ReplicaSet in between: the pod names its workload.
                    self.pod_workload[pod] = (WorkloadKind(kind), owner)
        elif stat == "rs_owner":
            rs = (labels.get("namespace", ""), labels.get("replicaset", ""))
            if all(rs) and labels.get("owner_name"):
                self.replicaset_deployment[rs] = labels["owner_name"]
        elif stat in _CONTAINER_STATS_KSM:
            self.tables.add(stat, labels, number)

    def containers_per_namespace(self) -> dict[str, int]:
        """Estimated container series per namespace: each pod's containers, at least 1."""
        per_pod: dict[PodKey, set[str]] = defaultdict(set)
        for key in self.tables.keys():  # noqa: SIM118 - Tables is not a dict
            per_pod[(key[0], key[1])].add(key[2])
        out: dict[str, int] = defaultdict(int)
        for pod in self.pods | set(per_pod):
            out[pod[0]] += max(1, len(per_pod.get(pod, ())))
        return dict(out)

    def owners(self, replicaset_owners: Mapping[tuple[str, str], str]) -> Owners:
        deployments = {**self.replicaset_deployment, **replicaset_owners}
        return Owners(dict(self.pod_replicaset), deployments, dict(self.pod_workload))

    def series_report(self) -> tuple[frozenset[str], frozenset[str]]:
        """(missing required series, optional series seen); rules in the module docstring."""
        present = self.present
        missing = {
            name for name in (USAGE, RSS, WORKING_SET, POD_OWNER, REQUESTS) if name not in present
        }
        ksm_up = POD_OWNER in present
        # Only ReplicaSets' pods need it: StatefulSets and DaemonSets own their pods.
        if REPLICASET_OWNER not in present and (self.pod_replicaset or not ksm_up):
            missing.add(REPLICASET_OWNER)
        if not ksm_up:
            missing.update(n for n in (LIMITS, LAST_TERMINATED) if n not in present)
        cpu_limited = bool(self.tables["cpu_limit"]) or not ksm_up
        if cpu_limited:
            missing.update(n for n in (PERIODS, THROTTLED_PERIODS) if n not in present)
        optional = frozenset(n for n in OPTIONAL_SERIES if n in present)
        return frozenset(missing), optional


@dataclass(frozen=True, slots=True)
class Owners:
    """Pods to ReplicaSets to Deployments; pods straight to StatefulSets and DaemonSets."""

    pod_replicaset: Mapping[PodKey, str]
    replicaset_deployment: Mapping[PodKey, str]
    pod_workload: Mapping[PodKey, tuple[WorkloadKind, str]] = field(default_factory=dict)

    def replicaset(self, namespace: str, pod: str) -> str | None:
        """The pod's controller: its ReplicaSet, or its StatefulSet or DaemonSet (the pods
        that share a template, for a pod whose configuration is unknown)."""
        direct = self.pod_workload.get((namespace, pod))
        if direct is not None:
            return f"{direct[0].value}/{direct[1]}"
        rs = self.pod_replicaset.get((namespace, pod))
        if rs is None:
            # No kube_pod_owner row: a Deployment's pod is named "<replicaset>-<suffix>".
            prefix = pod.rsplit("-", 1)[0]
            if (namespace, prefix) in self.replicaset_deployment:
                rs = prefix
        return rs

    def workload(self, namespace: str, pod: str) -> WorkloadRef | None:
        """The workload the pod belongs to, or None."""
        direct = self.pod_workload.get((namespace, pod))
        if direct is not None:
            return WorkloadRef(namespace=namespace, kind=direct[0], name=direct[1])
        rs = self.replicaset(namespace, pod)
        name = None if rs is None else self.replicaset_deployment.get((namespace, rs))
        return None if name is None else WorkloadRef(namespace=namespace, name=name)
