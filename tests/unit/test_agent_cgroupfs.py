"""The agent's file rules on plain directory trees: cgroup v2's names, and the failures.

cgroup v2 is not mounted on the machines these tests run on, so its layout and file names
(``cgroup.controllers``, ``cpu.max``, ``cpu.max.burst``) are checked on a directory tree
shaped like it; the same code runs against the real v1 kernel in
tests/e2e/test_burst_agent.py. A plain tree also gives the failures a real kernel here
cannot: a kernel without the burst file (never created), a burst path the kernel refuses
to write, a quota file that cannot be parsed.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from unthrottle.agent.cgroupfs import BurstReason, CgroupFs, find_hierarchy, proc_cgroups
from unthrottle.agent.layout import CgroupVersion, Driver

P = PurePosixPath


def v2_tree(root: Path, cgroups: dict[str, str | None], *, burst: bool = True) -> CgroupFs:
    """A v2-shaped tree: ``cgroups`` maps a relative path to its cpu.max (None: none)."""
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    for relative, cpu_max in cgroups.items():
        directory = root / relative
        directory.mkdir(parents=True, exist_ok=True)
        if cpu_max is not None:
            (directory / "cpu.max").write_text(cpu_max + "\n")
            if burst:
                (directory / "cpu.max.burst").write_text("0\n")
    hierarchy = find_hierarchy(root)
    assert hierarchy is not None and hierarchy.version is CgroupVersion.V2
    return CgroupFs(hierarchy)


def test_v2_burst_is_capped_at_cpu_max_and_read_back(tmp_path: Path) -> None:
    fs = v2_tree(tmp_path, {"kubepods.slice": "max 100000", "kubepods.slice/a": "50000 100000"})
    result = fs.assert_burst(P("kubepods.slice/a"), 80_000)
    assert result.reason is BurstReason.APPLIED
    assert (result.burst_us, result.wanted_us, result.written) == (50_000, 50_000, True)
    assert (tmp_path / "kubepods.slice/a/cpu.max.burst").read_text() == "50000\n"
    # Asserted again: the kernel already holds it, nothing is written.
    assert not fs.assert_burst(P("kubepods.slice/a"), 80_000).written
    assert fs.detect_driver() is Driver.SYSTEMD


def test_v2_unlimited_cgroup_is_not_touched(tmp_path: Path) -> None:
    fs = v2_tree(tmp_path, {"kubepods": "max 100000"})
    burst = tmp_path / "kubepods/cpu.max.burst"
    burst.write_text("7\n")
    result = fs.assert_burst(P("kubepods"), 30_000)
    assert result.reason is BurstReason.UNLIMITED_QUOTA
    assert burst.read_text() == "7\n"
    assert (tmp_path / "kubepods/cpu.max").read_text() == "max 100000\n"  # quota untouched
    assert fs.detect_driver() is Driver.CGROUPFS


def test_a_kernel_without_the_burst_file_is_reported_and_the_file_never_created(
    tmp_path: Path,
) -> None:
    fs = v2_tree(tmp_path, {"kubepods.slice/a": "50000 100000"}, burst=False)
    result = fs.assert_burst(P("kubepods.slice/a"), 30_000)
    assert result.reason is BurstReason.KERNEL_TOO_OLD
    assert "cpu.max.burst" in result.message and "5.14" in result.message
    assert not (tmp_path / "kubepods.slice/a/cpu.max.burst").exists()
    assert not fs.burst_supported(P("kubepods.slice"))


def test_even_a_direct_write_never_creates_the_burst_file(tmp_path: Path) -> None:
    fs = v2_tree(tmp_path, {"a": "50000 100000"}, burst=False)
    with pytest.raises(FileNotFoundError):
        fs.write_burst(P("a"), 1)
    assert not (tmp_path / "a/cpu.max.burst").exists()


# A read-only sysctl: readable digits, and a write the kernel refuses even to root.
READ_ONLY_NUMBER = Path("/proc/sys/kernel/ngroups_max")


def test_a_refused_write_is_a_result_with_its_errno(tmp_path: Path) -> None:
    fs = v2_tree(tmp_path, {"a": "50000 100000", "b": "50000 100000"}, burst=False)
    (tmp_path / "a/cpu.max.burst").symlink_to(READ_ONLY_NUMBER)
    (tmp_path / "b/cpu.max.burst").mkdir()  # neither readable nor writable as a number
    result = fs.assert_burst(P("a"), 30_000)
    assert (result.reason, result.errno) == (BurstReason.WRITE_FAILED, "EACCES")
    assert "writing 30000 to a/cpu.max.burst: EACCES" in result.message
    assert fs.assert_burst(P("b"), 30_000).reason is BurstReason.UNREADABLE


def test_missing_and_malformed_cgroups(tmp_path: Path) -> None:
    fs = v2_tree(tmp_path, {"a": "garbage"})
    assert fs.assert_burst(P("nowhere"), 1).reason is BurstReason.CGROUP_NOT_FOUND
    result = fs.assert_burst(P("a"), 1)
    assert result.reason is BurstReason.UNREADABLE
    assert (tmp_path / "a/cpu.max.burst").read_text() == "0\n"


def test_no_cpu_controller_is_no_hierarchy(tmp_path: Path) -> None:
    (tmp_path / "cgroup.controllers").write_text("memory pids\n")
    assert find_hierarchy(tmp_path) is None
    (tmp_path / "cpu,cpuacct").mkdir()
    (tmp_path / "cpu,cpuacct/cpu.cfs_quota_us").write_text("-1\n")
    hierarchy = find_hierarchy(tmp_path)
    assert hierarchy is not None
    assert (hierarchy.version, hierarchy.path.name) == (CgroupVersion.V1, "cpu,cpuacct")


def test_proc_cgroups_reads_every_process_and_skips_the_rest(tmp_path: Path) -> None:
    for pid, text in {"1": "0::/init.scope\n", "42": "0::/kubepods/pod1/abc\n"}.items():
        (tmp_path / pid).mkdir()
        (tmp_path / pid / "cgroup").write_text(text)
    (tmp_path / "self").mkdir()
    (tmp_path / "77").mkdir()  # exited: no cgroup file
    found = sorted(map(str, proc_cgroups(tmp_path, CgroupVersion.V2)))
    assert found == ["init.scope", "kubepods/pod1/abc"]
    assert list(proc_cgroups(tmp_path / "absent", CgroupVersion.V2)) == []
