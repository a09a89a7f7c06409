"""The kernel's side of the burst: cgroup files read and written, ``/proc/<pid>/cgroup`` read.

:func:`find_hierarchy` finds the hierarchy holding the ``cpu`` controller under the host's
cgroup mount (v2 when ``cgroup.controllers`` lists ``cpu``; else v1's ``cpu`` or
``cpu,cpuacct``). :meth:`CgroupFs.assert_burst` is the one write the agent makes, with
its rules:

- the burst file must exist (``cpu.cfs_burst_us``, ``cpu.max.burst``: Linux >= 5.14):
  it is opened without ``O_CREAT``, so a missing one is reported (``KernelTooOld``) and
  never created;
- a cgroup without a quota (``-1``, ``max``) is not touched (``UnlimitedQuota``);
- the value is capped at the cgroup's quota (the kernel's EINVAL otherwise), written only
  when the kernel holds another value, and read back;
- no quota file is ever written, so a quota is never lowered.

Every failure is a :class:`BurstResult` with a reason, never an exception.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath

from unthrottle.agent.layout import (
    CgroupVersion,
    Driver,
    Quota,
    capped_burst,
    cgroup_from_proc,
    cpu_files,
    kubepods_dir,
    parse_quota,
)

__all__ = [
    "BurstReason",
    "BurstResult",
    "CgroupFs",
    "Hierarchy",
    "find_hierarchy",
    "proc_cgroups",
]


class BurstReason(StrEnum):
    """The outcome of asserting one cgroup's burst (the reason annotation's first word)."""

    APPLIED = "Applied"
    KERNEL_TOO_OLD = "KernelTooOld"  # no burst file: Linux < 5.14
    CGROUP_NOT_FOUND = "CgroupNotFound"
    UNLIMITED_QUOTA = "UnlimitedQuota"  # no CFS quota on the cgroup: nothing to burst above
    UNREADABLE = "CgroupUnreadable"  # a quota or burst file that cannot be read or parsed
    WRITE_FAILED = "WriteFailed"  # the kernel refused the write (errno in the message)
    NOT_APPLIED = "NotApplied"  # written, but the kernel reads back another value
    INVALID_ANNOTATION = "InvalidAnnotation"
    NO_CPU_LIMIT = "NoCpuLimit"


@dataclass(frozen=True)
class BurstResult:
    """One cgroup directory after :meth:`CgroupFs.assert_burst`."""

    path: PurePosixPath
    reason: BurstReason
    burst_us: int | None = None  # the kernel's value, read back (APPLIED)
    wanted_us: int | None = None  # the value capped at the quota, once the quota is known
    written: bool = False  # the kernel held another value and was written
    message: str = ""
    errno: str = ""  # WRITE_FAILED: EINVAL, EACCES, ...

    @property
    def ok(self) -> bool:
        return self.reason is BurstReason.APPLIED


@dataclass(frozen=True)
class Hierarchy:
    """The cgroup hierarchy holding the ``cpu`` controller."""

    version: CgroupVersion
    path: Path


def find_hierarchy(cgroup_root: Path) -> Hierarchy | None:
    """The ``cpu`` hierarchy under the host's cgroup mount, or None (no cpu controller)."""
    controllers = cgroup_root / "cgroup.controllers"
    try:
        if "cpu" in controllers.read_text().split():
            return Hierarchy(CgroupVersion.V2, cgroup_root)
    except OSError:
        pass
    for name in ("cpu", "cpu,cpuacct"):
        candidate = cgroup_root / name
        if (candidate / "cpu.cfs_quota_us").is_file():
            return Hierarchy(CgroupVersion.V1, candidate)
    return None


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


class CgroupFs:
    """Reads and writes the CPU bandwidth files of one hierarchy."""

    def __init__(self, hierarchy: Hierarchy) -> None:
        self.hierarchy = hierarchy
        self.version = hierarchy.version
        self.files = cpu_files(hierarchy.version)

    def path(self, relative: PurePosixPath) -> Path:
        return self.hierarchy.path / relative

    def exists(self, relative: PurePosixPath) -> bool:
        return self.path(relative).is_dir()

    def detect_driver(self, kubelet_root: str = "/") -> Driver | None:
        """The kubelet's cgroup driver, from which of its top cgroups exists."""
        for driver in (Driver.SYSTEMD, Driver.CGROUPFS):
            if self.exists(kubepods_dir(driver, kubelet_root)):
                return driver
        return None

    def burst_supported(self, relative: PurePosixPath) -> bool:
        """Whether the kernel has the burst file in this cgroup."""
        return (self.path(relative) / self.files.burst).exists()

    def quota(self, relative: PurePosixPath) -> Quota | None:
        """The cgroup's quota (None: unlimited); OSError/ValueError when unreadable."""
        directory = self.path(relative)
        quota_text = (directory / self.files.quota).read_text()
        period_text = (directory / self.files.period).read_text() if self.files.period else ""
        return parse_quota(self.version, quota_text, period_text)

    def read_burst(self, relative: PurePosixPath) -> int:
        return int((self.path(relative) / self.files.burst).read_text().strip())

    def write_burst(self, relative: PurePosixPath, value: int) -> None:
        """Write the burst file; never creates it (no O_CREAT)."""
        fd = os.open(self.path(relative) / self.files.burst, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, f"{value}\n".encode())
        finally:
            os.close(fd)

    def stat(self, relative: PurePosixPath) -> dict[str, int]:
        """``cpu.stat`` as numbers (nr_periods, nr_throttled, nr_bursts, burst_time, ...)."""
        counters = {}
        for line in (self.path(relative) / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                counters[key] = int(value)
        return counters

    def assert_burst(self, relative: PurePosixPath, requested_us: int) -> BurstResult:
        """Make the kernel hold ``min(requested, quota)`` as this cgroup's burst."""
        name = f"{relative}/{self.files.burst}"
        if not self.exists(relative):
            return BurstResult(relative, BurstReason.CGROUP_NOT_FOUND, message=f"no {relative}")
        if not self.burst_supported(relative):
            return BurstResult(
                relative,
                BurstReason.KERNEL_TOO_OLD,
                message=f"no {name} (the kernel has CFS burst from Linux 5.14)",
            )
        try:
            quota = self.quota(relative)
            current = self.read_burst(relative)
        except (OSError, ValueError) as exc:
            return BurstResult(relative, BurstReason.UNREADABLE, message=f"{relative}: {exc}")
        wanted = capped_burst(requested_us, quota)
        if wanted is None:
            return BurstResult(
                relative, BurstReason.UNLIMITED_QUOTA, message=f"{relative} has no CFS quota"
            )
        written = current != wanted
        if written:
            try:
                self.write_burst(relative, wanted)
            except OSError as exc:
                code = _errno_name(exc)
                return BurstResult(
                    relative,
                    BurstReason.WRITE_FAILED,
                    wanted_us=wanted,
                    message=f"writing {wanted} to {name}: {code} ({exc.strerror})",
                    errno=code,
                )
        try:
            after = self.read_burst(relative)
        except (OSError, ValueError) as exc:
            return BurstResult(
                relative, BurstReason.UNREADABLE, wanted_us=wanted, message=f"{name}: {exc}"
            )
        if after != wanted:
            return BurstResult(
                relative,
                BurstReason.NOT_APPLIED,
                wanted_us=wanted,
                message=f"wrote {wanted} to {name}, the kernel reads back {after}",
            )
        return BurstResult(
            relative, BurstReason.APPLIED, burst_us=after, wanted_us=wanted, written=written
        )


def proc_cgroups(proc_root: Path, version: CgroupVersion) -> Iterator[PurePosixPath]:
    """The ``cpu`` cgroup of every process in ``proc_root`` (processes that exit are skipped)."""
    try:
        entries = list(os.scandir(proc_root))
    except OSError:
        return
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            text = Path(entry.path, "cgroup").read_text()
        except OSError:
            continue
        path = cgroup_from_proc(text, version)
        if path is not None:
            yield path
