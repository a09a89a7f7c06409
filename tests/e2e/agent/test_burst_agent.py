"""The burst agent on the real kernel, against a real API server, as its ServiceAccount.

Each test builds kubelet-shaped trees of real cgroup v1 ``cpu`` groups (both drivers,
each runtime's naming, Guaranteed and Burstable pods), puts real processes in some of
them, creates the matching Pod objects bound to a node, runs the agent's cycle, and reads
back what the kernel holds (``cpu.cfs_burst_us``, ``cpu.stat``) and what the pods say
(``unthrottle.dev/cpu-burst-applied`` / ``-reason``). Nodes are names the field selector
isolates; every test has its own.

What a kernel here cannot show (cgroup v2, a kernel without the burst file, a write the
kernel refuses) is covered on directory trees in tests/unit/test_agent_cgroupfs.py and in
:func:`test_cgroup_v2_tree_through_the_cycle`.
"""

from __future__ import annotations

import errno
import time
import uuid
from pathlib import Path, PurePosixPath

import pytest
from tests.e2e.agent.agent_harness import CPU, KubeletTree, Pods, RunningPod, burner, burst, lay_out

from unthrottle.agent.cgroupfs import CgroupFs, find_hierarchy
from unthrottle.agent.cycle import AgentConfig, CycleReport, PodOutcome, run_cycle
from unthrottle.agent.layout import CgroupVersion, Driver, QosClass, Runtime
from unthrottle.model.names import (
    BURST_ANNOTATION,
    BURST_APPLIED_ANNOTATION,
    BURST_REASON_ANNOTATION,
)
from unthrottle.sources.kubernetes import KubernetesSource

pytestmark = pytest.mark.e2e

REQUESTED = 30_000  # µs: app (500m) holds it all, side (200m) its 20 ms quota


def _node() -> str:
    return f"node-{uuid.uuid4().hex[:8]}"


def _config(tree: KubeletTree, node: str) -> AgentConfig:
    return AgentConfig(node=node, kubelet_root=tree.kubelet_root(node))


def _cpu_fs() -> CgroupFs:
    hierarchy = find_hierarchy(Path("/sys/fs/cgroup"))
    assert hierarchy is not None and hierarchy.path == CPU
    return CgroupFs(hierarchy)


def _outcome(report: CycleReport, name: str) -> PodOutcome:
    return next(p for p in report.pods if p.target.name == name)


def _vias(outcome: PodOutcome) -> dict[str, str]:
    return {c.container: c.via for c in outcome.cgroups}


LAYOUTS = [
    (driver, runtime, qos)
    for driver in Driver
    for runtime in Runtime
    for qos in (QosClass.GUARANTEED, QosClass.BURSTABLE)
]


def test_every_driver_runtime_and_qos_gets_its_burst(
    kubelet: KubeletTree, pods: Pods, agent_kube: KubernetesSource
) -> None:
    """Two containers per pod: ``app`` has a process (found through /proc), ``side`` none
    (found by the layout rules). Container bursts are capped at their quotas, the pod's at
    the sum (50 ms) under its 70 ms quota; no quota is changed."""
    nodes = {driver: _node() for driver in Driver}
    made = {}
    for driver, runtime, qos in LAYOUTS:
        name = f"{driver.value}-{runtime.value}-{qos.value}".lower()
        body = pods.create(
            name,
            nodes[driver],
            {"app": "500m", "side": "200m"},
            {BURST_ANNOTATION: str(REQUESTED)},
            guaranteed=qos is QosClass.GUARANTEED,
        )
        pod = pods.run(body, runtime)
        assert pod.qos is qos  # as the API server classified it
        lay_out(
            kubelet,
            pod,
            driver=driver,
            runtime=runtime,
            node=nodes[driver],
            quotas={"app": 50_000, "side": 20_000},
            pod_quota=70_000,
        )
        kubelet.spawn(pod.containers["app"])
        made[name] = pod
    reports = {d: run_cycle(agent_kube, _config(kubelet, n)) for d, n in nodes.items()}
    for driver, report in reports.items():
        assert report.ready, report.facts
        assert report.facts.cgroup_version is CgroupVersion.V1
        assert report.facts.driver is driver
        assert report.facts.runtimes == ("containerd", "cri-o", "docker")
        assert report.facts.burst_supported
        assert len(report.pods) == 6
    for name, pod in made.items():
        assert pod.directory is not None
        kernel = (burst(pod.containers["app"]), burst(pod.containers["side"]), burst(pod.directory))
        assert kernel == (30_000, 20_000, 50_000), name
        quotas = [
            int((p / "cpu.cfs_quota_us").read_text())
            for p in (pod.containers["app"], pod.containers["side"], pod.directory)
        ]
        assert quotas == [50_000, 20_000, 70_000], name
        annotations = pods.annotations(name)
        assert annotations[BURST_APPLIED_ANNOTATION] == "30000", name
        assert BURST_REASON_ANNOTATION not in annotations
        driver = Driver(name.split("-")[0])
        outcome = _outcome(reports[driver], name)
        assert _vias(outcome) == {"app": "proc", "side": "layout", "": "proc"}, name
        assert outcome.patched


def test_limits_and_failures_are_per_pod_and_per_container(
    kubelet: KubeletTree, pods: Pods, agent_kube: KubernetesSource
) -> None:
    node = _node()

    def pod(name: str, limits: dict[str, str | None], annotation: str) -> RunningPod:
        body = pods.create(name, node, limits, {BURST_ANNOTATION: annotation})
        return pods.run(body, Runtime.CONTAINERD)

    def layout(pod: RunningPod, quotas: dict[str, int | None], pod_quota: int) -> RunningPod:
        return lay_out(
            kubelet,
            pod,
            driver=Driver.CGROUPFS,
            runtime=Runtime.CONTAINERD,
            node=node,
            quotas=quotas,
            pod_quota=pod_quota,
        )

    # A request above the quota: capped (the kernel's EINVAL otherwise). A container
    # without a limit leaves the pod's quota unlimited: neither of them is touched.
    capped = layout(
        pod("capped", {"app": "500m", "log": None}, "80000"), {"app": 50_000, "log": -1}, -1
    )
    # A container whose cgroup is not there; an annotation that is not a number; a pod
    # without any CPU limit.
    pod("missing", {"app": "500m"}, "30000")
    invalid = layout(pod("invalid", {"app": "500m"}, "30ms"), {"app": 50_000}, 50_000)
    pod("unlimited", {"app": None}, "30000")
    report = run_cycle(agent_kube, _config(kubelet, node))
    assert report.ready
    assert capped.directory is not None
    assert (burst(capped.containers["app"]), burst(capped.containers["log"])) == (50_000, 0)
    assert burst(capped.directory) == 0
    assert pods.annotations("capped")[BURST_APPLIED_ANNOTATION] == "50000"
    assert burst(invalid.containers["app"]) == 0
    reasons = {
        n: pods.annotations(n).get(BURST_REASON_ANNOTATION, "")
        for n in ("missing", "invalid", "unlimited")
    }
    assert reasons["missing"].startswith("CgroupNotFound: container app: no ")
    assert reasons["invalid"].startswith("InvalidAnnotation: unthrottle.dev/cpu-burst-us is '30ms'")
    assert reasons["unlimited"].startswith("NoCpuLimit: ")
    for name in reasons:
        assert BURST_APPLIED_ANNOTATION not in pods.annotations(name)


def test_crun_container_subgroup_gets_the_burst_too(
    kubelet: KubeletTree, pods: Pods, agent_kube: KubernetesSource
) -> None:
    """CRI-O with crun: the process lives in the scope's ``container`` sub-cgroup, which
    has its own quota; /proc leads to the scope, and both hold the burst. CRI-O's monitor
    (conmon), in a cgroup carrying the same container ID, is not mistaken for it."""
    node = _node()
    pod = pods.run(
        pods.create("crun", node, {"app": "500m"}, {BURST_ANNOTATION: "30000"}), Runtime.CRIO
    )
    lay_out(
        kubelet,
        pod,
        driver=Driver.SYSTEMD,
        runtime=Runtime.CRIO,
        node=node,
        quotas={"app": 50_000},
        pod_quota=50_000,
    )
    scope = PurePosixPath(pod.containers["app"].relative_to(CPU))
    conmon = kubelet.cgroup(scope.parent / f"crio-conmon-{pod.ids['app']}.scope")
    kubelet.spawn(conmon)  # the first process with the container's ID in its cgroup
    sub = kubelet.cgroup(scope / "container", 40_000)
    kubelet.spawn(sub)
    report = run_cycle(agent_kube, _config(kubelet, node))
    assert (burst(pod.containers["app"]), burst(sub)) == (30_000, 30_000)
    assert burst(conmon) == 0
    assert _vias(_outcome(report, "crun"))["app"] == "proc"
    assert pods.annotations("crun")[BURST_APPLIED_ANNOTATION] == "30000"


def test_reasserted_every_cycle_and_reset_when_the_annotation_goes(
    kubelet: KubeletTree, pods: Pods, agent_kube: KubernetesSource
) -> None:
    node = _node()
    pod = pods.run(
        pods.create("web", node, {"app": "500m"}, {BURST_ANNOTATION: "30000"}), Runtime.CONTAINERD
    )
    lay_out(
        kubelet,
        pod,
        driver=Driver.SYSTEMD,
        runtime=Runtime.CONTAINERD,
        node=node,
        quotas={"app": 50_000},
        pod_quota=50_000,
    )
    app, config = pod.containers["app"], _config(kubelet, node)
    first = _outcome(run_cycle(agent_kube, config), "web")
    assert first.patched and burst(app) == 30_000
    # Nothing changed: nothing is written, to the kernel or to the pod.
    again = _outcome(run_cycle(agent_kube, config), "web")
    assert not again.patched
    assert not any(c.result.written for c in again.cgroups)
    # A runtime rewrote the bandwidth and the burst shrank: the next cycle restores it.
    (app / "cpu.cfs_burst_us").write_text("0")
    restored = _outcome(run_cycle(agent_kube, config), "web")
    assert burst(app) == 30_000
    assert [c.container for c in restored.cgroups if c.result.written] == ["app"]
    assert not restored.patched
    # The annotation goes away: back to 0, and the report goes with it.
    pods.annotate("web", {BURST_ANNOTATION: None})
    reset = _outcome(run_cycle(agent_kube, config), "web")
    assert reset.patched
    assert pod.directory is not None
    assert (burst(app), burst(pod.directory)) == (0, 0)
    annotations = pods.annotations("web")
    assert BURST_APPLIED_ANNOTATION not in annotations
    assert BURST_REASON_ANNOTATION not in annotations
    # A pod neither annotated nor reported on is not the agent's: a burst set by someone
    # else stays.
    (app / "cpu.cfs_burst_us").write_text("12345")
    assert run_cycle(agent_kube, config).pods == ()
    assert burst(app) == 12_345


def test_the_kernel_bursts_where_the_agent_applied_it(
    kubelet: KubeletTree, pods: Pods, agent_kube: KubernetesSource
) -> None:
    """cpu.stat: 60 ms of CPU in one go at a 20 ms quota. With the agent's 20 ms burst,
    banked while idle, the kernel counts bursts; without it, none."""
    node = _node()
    stats = {}
    runs = {}
    for name, asked in (("bursty", {BURST_ANNOTATION: "20000"}), ("plain", {})):
        pod = pods.run(pods.create(name, node, {"app": "200m"}, asked), Runtime.CONTAINERD)
        lay_out(
            kubelet,
            pod,
            driver=Driver.CGROUPFS,
            runtime=Runtime.CONTAINERD,
            node=node,
            quotas={"app": 20_000},
            pod_quota=20_000,
        )
        process = kubelet.spawn(pod.containers["app"], *burner(0.06))
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        runs[name] = (pod, process)
    report = run_cycle(agent_kube, _config(kubelet, node))
    assert [p.target.name for p in report.pods] == ["bursty"]
    fs = _cpu_fs()
    time.sleep(0.35)  # idle periods bank unused quota, up to the burst
    for name, (pod, process) in runs.items():
        relative = PurePosixPath(pod.containers["app"].relative_to(CPU))
        before = fs.stat(relative)
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write("go\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "done"
        time.sleep(0.15)
        after = fs.stat(relative)
        stats[name] = {k: after[k] - before.get(k, 0) for k in after}
    assert burst(runs["bursty"][0].containers["app"]) == 20_000
    assert stats["bursty"]["nr_bursts"] >= 1
    assert stats["bursty"]["burst_time"] > 0
    assert stats["plain"]["nr_bursts"] == 0
    assert stats["plain"]["burst_time"] == 0
    assert stats["plain"]["nr_throttled"] >= 1


def test_the_kernel_refuses_a_burst_above_the_quota(kubelet: KubeletTree) -> None:
    """Why every burst is capped: the kernel's EINVAL for burst > quota (and no change)."""
    group = kubelet.cgroup(PurePosixPath(kubelet.name) / "g", 20_000)
    fs = _cpu_fs()
    relative = PurePosixPath(kubelet.name) / "g"
    with pytest.raises(OSError) as refused:
        fs.write_burst(relative, 20_001)
    assert refused.value.errno == errno.EINVAL
    assert burst(group) == 0
    assert fs.assert_burst(relative, 20_001).burst_us == 20_000


def test_cgroup_v2_tree_through_the_cycle(
    tmp_path: Path, pods: Pods, agent_kube: KubernetesSource
) -> None:
    """cgroup v2 is not mounted here: its layout and file names on a directory tree, with
    the real API server. systemd, CRI-O with crun's ``container`` sub-cgroup holding the
    quota, and a second node whose kernel has no ``cpu.max.burst``."""
    node, old = _node(), _node()
    for root, name, with_burst in (
        (tmp_path / "new", "v2-crun", True),
        (tmp_path / "old", "v2-old", False),
    ):
        root.mkdir()
        (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
        pod = pods.run(
            pods.create(
                name, node if with_burst else old, {"app": "500m"}, {BURST_ANNOTATION: "30000"}
            ),
            Runtime.CRIO,
        )
        uid = pod.uid.replace("-", "_")
        slice_ = (
            root / "kubepods.slice/kubepods-burstable.slice" / f"kubepods-burstable-pod{uid}.slice"
        )
        scope = slice_ / f"crio-{pod.ids['app']}.scope"
        (scope / "container").mkdir(parents=True)
        for directory, cpu_max in (
            (root / "kubepods.slice", "max 100000"),
            (slice_, "50000 100000"),
            (scope, "max 100000"),
            (scope / "container", "50000 100000"),
        ):
            (directory / "cpu.max").write_text(cpu_max + "\n")
            if with_burst:
                (directory / "cpu.max.burst").write_text("0\n")
    new = run_cycle(
        agent_kube, AgentConfig(node=node, cgroup_root=tmp_path / "new", proc_root=None)
    )
    assert new.ready and new.facts.cgroup_version is CgroupVersion.V2
    assert new.facts.driver is Driver.SYSTEMD
    scope_burst = next((tmp_path / "new").rglob("crio-*.scope"))
    assert (scope_burst / "cpu.max.burst").read_text() == "0\n"  # no quota: untouched
    assert (scope_burst / "container/cpu.max.burst").read_text() == "30000\n"
    assert (scope_burst.parent / "cpu.max.burst").read_text() == "30000\n"
    assert pods.annotations("v2-crun")[BURST_APPLIED_ANNOTATION] == "30000"
    stale = run_cycle(
        agent_kube, AgentConfig(node=old, cgroup_root=tmp_path / "old", proc_root=None)
    )
    assert not stale.ready
    assert stale.facts.problem.startswith("KernelTooOld: no cpu.max.burst")
    assert pods.annotations("v2-old")[BURST_REASON_ANNOTATION].startswith("KernelTooOld: ")
    assert not list((tmp_path / "old").rglob("cpu.max.burst"))  # never created
