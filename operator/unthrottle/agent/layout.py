"""Where a pod's and a container's CPU cgroups are, and what burst each may get: pure rules.

Paths here are relative to the root of the hierarchy that holds the ``cpu`` controller
(``/sys/fs/cgroup/cpu`` on cgroup v1, ``/sys/fs/cgroup`` on v2), as the kubelet and the
container runtimes lay them out:

=========  ==========================================================================
cgroupfs   ``kubepods/pod<uid>`` (Guaranteed), ``kubepods/burstable/pod<uid>``,
           ``kubepods/besteffort/pod<uid>``; containers ``<id>`` (containerd,
           cri-dockerd) or ``crio-<id>`` (CRI-O)
systemd    ``kubepods.slice/kubepods-pod<uid_>.slice`` (Guaranteed),
           ``kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice``
           (and ``besteffort``), the pod UID's ``-`` escaped to ``_``; containers
           ``cri-containerd-<id>.scope``, ``crio-<id>.scope``, ``docker-<id>.scope``
=========  ==========================================================================

crun (CRI-O's default runtime on cgroup v2) moves the container's processes into a
``container`` sub-cgroup of the container's cgroup, and may set the limits there: both
directories are candidates, and the burst goes where a quota is.

``/proc/<pid>/cgroup`` of a container's process names its cgroup exactly, whatever the
layout: :func:`cgroup_from_proc` reads it and :func:`container_dir_in` finds the
directory carrying a container ID, so the agent prefers it and falls back to the rules
when no process of the container is found.

The burst: the kernel refuses a burst larger than the cgroup's own quota (EINVAL), and a
pod cgroup's quota caps what its containers may use together. So a container gets
``min(requested, its quota)`` and the pod ``min(Σ container bursts, the pod's quota)``
(:func:`capped_burst`); a cgroup without a quota gets nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath

__all__ = [
    "CRUN_SUBGROUP",
    "CgroupVersion",
    "CpuFiles",
    "Driver",
    "QosClass",
    "Quota",
    "Runtime",
    "capped_burst",
    "cgroup_from_proc",
    "container_candidates",
    "container_dir_in",
    "container_leaf",
    "cpu_files",
    "escape_systemd",
    "index_by_container",
    "kubepods_dir",
    "names_pod",
    "parse_container_id",
    "parse_quota",
    "pod_dir",
]

CRUN_SUBGROUP = "container"
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
# A container's own cgroup, as some runtime names it (and not, say, CRI-O's
# ``crio-conmon-<id>.scope``, which carries the same ID but holds the monitor process).
_CONTAINER_DIR = re.compile(r"(?:(?:cri-containerd|crio|docker)-)?([0-9a-f]{64})(?:\.scope)?")


class CgroupVersion(StrEnum):
    V1 = "v1"
    V2 = "v2"


class Driver(StrEnum):
    """The kubelet's ``--cgroup-driver``."""

    CGROUPFS = "cgroupfs"
    SYSTEMD = "systemd"


class Runtime(StrEnum):
    """The container runtime, as the scheme of ``containerStatuses[].containerID`` names it."""

    CONTAINERD = "containerd"
    CRIO = "cri-o"
    DOCKER = "docker"  # cri-dockerd (and the kubelet's old dockershim)


class QosClass(StrEnum):
    GUARANTEED = "Guaranteed"
    BURSTABLE = "Burstable"
    BEST_EFFORT = "BestEffort"


@dataclass(frozen=True)
class CpuFiles:
    """The CPU bandwidth files of one cgroup version."""

    quota: str  # v1: quota alone; v2: "<quota|max> <period>"
    period: str | None  # v1 only
    burst: str


_V1_FILES = CpuFiles("cpu.cfs_quota_us", "cpu.cfs_period_us", "cpu.cfs_burst_us")
_V2_FILES = CpuFiles("cpu.max", None, "cpu.max.burst")


def cpu_files(version: CgroupVersion) -> CpuFiles:
    return _V1_FILES if version is CgroupVersion.V1 else _V2_FILES


@dataclass(frozen=True)
class Quota:
    """A finite CFS quota: ``quota_us`` of CPU time per ``period_us``."""

    quota_us: int
    period_us: int


def parse_quota(version: CgroupVersion, quota_text: str, period_text: str = "") -> Quota | None:
    """The quota from the files' contents; None when unlimited (``-1``, ``max``).

    ValueError on text that is neither (a file the agent should not write next to).
    """
    if version is CgroupVersion.V1:
        quota = int(quota_text.strip())
        return None if quota < 0 else Quota(quota, int(period_text.strip()))
    words = quota_text.split()
    if len(words) != 2:
        raise ValueError(f"cpu.max is {quota_text.strip()!r}, not '<quota|max> <period>'")
    return None if words[0] == "max" else Quota(int(words[0]), int(words[1]))


def capped_burst(requested_us: int, quota: Quota | None) -> int | None:
    """The burst a cgroup with ``quota`` may have: at most its quota; None without one."""
    if quota is None:
        return None
    return max(0, min(requested_us, quota.quota_us))


def parse_container_id(container_id: str) -> tuple[Runtime, str] | None:
    """``containerd://<64 hex>`` → (runtime, id); None for another scheme or an empty ID."""
    scheme, sep, ident = container_id.partition("://")
    if not sep or not _CONTAINER_ID.fullmatch(ident):
        return None
    try:
        return Runtime(scheme), ident
    except ValueError:
        return None


def escape_systemd(uid: str) -> str:
    """A pod UID as the kubelet's systemd driver writes it in a slice name."""
    return uid.replace("-", "_")


def kubepods_dir(driver: Driver, kubelet_root: str = "/") -> PurePosixPath:
    """The kubelet's top cgroup (under its ``--cgroup-root``, ``/`` by default)."""
    root = PurePosixPath(kubelet_root.strip("/") or ".")
    return root / ("kubepods.slice" if driver is Driver.SYSTEMD else "kubepods")


def pod_dir(driver: Driver, qos: QosClass, uid: str, kubelet_root: str = "/") -> PurePosixPath:
    """The pod's cgroup: Guaranteed directly under kubepods, the others under their class."""
    top = kubepods_dir(driver, kubelet_root)
    level = "" if qos is QosClass.GUARANTEED else qos.value.lower()
    if driver is Driver.CGROUPFS:
        return (top / level if level else top) / f"pod{uid}"
    prefix = f"kubepods-{level}" if level else "kubepods"
    parent = top / f"{prefix}.slice" if level else top
    return parent / f"{prefix}-pod{escape_systemd(uid)}.slice"


def container_leaf(driver: Driver, runtime: Runtime, container_id: str) -> str:
    """The container's cgroup directory name inside its pod's."""
    if driver is Driver.SYSTEMD:
        prefix = {
            Runtime.CONTAINERD: "cri-containerd",
            Runtime.CRIO: "crio",
            Runtime.DOCKER: "docker",
        }[runtime]
        return f"{prefix}-{container_id}.scope"
    return f"crio-{container_id}" if runtime is Runtime.CRIO else container_id


def container_candidates(container: PurePosixPath) -> tuple[PurePosixPath, PurePosixPath]:
    """The container's cgroup and crun's ``container`` sub-cgroup of it (which may not exist)."""
    return container, container / CRUN_SUBGROUP


def cgroup_from_proc(text: str, version: CgroupVersion) -> PurePosixPath | None:
    """The ``cpu`` cgroup in a ``/proc/<pid>/cgroup``, relative; None if absent or outside.

    v1 lines are ``<n>:<controllers>:<path>`` (the one listing ``cpu``); v2 has
    ``0::<path>``. A path with ``..`` lies outside the reader's cgroup namespace and says
    nothing usable about the host's tree.
    """
    for line in text.splitlines():
        number, _, rest = line.partition(":")
        controllers, sep, path = rest.partition(":")
        if not sep:
            continue
        if version is CgroupVersion.V1:
            if "cpu" not in controllers.split(","):
                continue
        elif number != "0" or controllers:
            continue
        parts = PurePosixPath(path).parts
        if not path.startswith("/") or ".." in parts:
            return None
        return PurePosixPath(*parts[1:]) if len(parts) > 1 else None
    return None


def container_dir_in(path: PurePosixPath) -> tuple[str, PurePosixPath] | None:
    """(container ID, its directory) for a process's cgroup path, None if none is in it.

    The deepest component named like a container's cgroup (:func:`container_leaf`'s
    spellings) is the container's; anything below it (crun's ``container``) is the
    runtime's own nesting.
    """
    parts = path.parts
    for index in range(len(parts) - 1, -1, -1):
        found = _CONTAINER_DIR.fullmatch(parts[index])
        if found:
            return found.group(1), PurePosixPath(*parts[: index + 1])
    return None


def names_pod(directory: PurePosixPath, uid: str) -> bool:
    """Whether a directory's name is the pod's cgroup (either driver's spelling)."""
    name = directory.name
    return name == f"pod{uid}" or name.endswith(f"-pod{escape_systemd(uid)}.slice")


def index_by_container(paths: Iterable[PurePosixPath]) -> dict[str, PurePosixPath]:
    """Container ID → its cgroup directory, from processes' cgroup paths."""
    index: dict[str, PurePosixPath] = {}
    for path in paths:
        found = container_dir_in(path)
        if found is not None:
            index.setdefault(found[0], found[1])
    return index
