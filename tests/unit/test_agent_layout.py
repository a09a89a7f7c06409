"""The burst agent's pure rules as plain data: cgroup paths, ``/proc`` lines, quotas, pods.

Every (driver, QoS) pod directory and every (driver, runtime) container directory is
checked against the kubelet's and the runtimes' naming; ``/proc/<pid>/cgroup`` parsing
covers v1 (separate and combined controllers), v2, and paths outside the reader's cgroup
namespace; a Pod dictionary becomes what the agent does for it. tests/e2e/test_burst_agent.py
runs the same rules against real cgroups.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest

from unthrottle.agent.layout import (
    CgroupVersion,
    Driver,
    QosClass,
    Quota,
    Runtime,
    capped_burst,
    cgroup_from_proc,
    container_candidates,
    container_dir_in,
    container_leaf,
    escape_systemd,
    index_by_container,
    kubepods_dir,
    names_pod,
    parse_container_id,
    parse_quota,
    pod_dir,
)
from unthrottle.agent.pods import Intent, pod_qos, pod_target, targets
from unthrottle.model.names import (
    BURST_ANNOTATION,
    BURST_APPLIED_ANNOTATION,
    BURST_REASON_ANNOTATION,
)

UID = "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
CID = "ab" * 32
P = PurePosixPath

POD_DIRS = {
    (Driver.CGROUPFS, QosClass.GUARANTEED): f"kubepods/pod{UID}",
    (Driver.CGROUPFS, QosClass.BURSTABLE): f"kubepods/burstable/pod{UID}",
    (Driver.CGROUPFS, QosClass.BEST_EFFORT): f"kubepods/besteffort/pod{UID}",
    (Driver.SYSTEMD, QosClass.GUARANTEED): (
        "kubepods.slice/kubepods-pod0f1e2d3c_4b5a_6978_8695_a4b3c2d1e0f9.slice"
    ),
    (Driver.SYSTEMD, QosClass.BURSTABLE): (
        "kubepods.slice/kubepods-burstable.slice/"
        "kubepods-burstable-pod0f1e2d3c_4b5a_6978_8695_a4b3c2d1e0f9.slice"
    ),
    (Driver.SYSTEMD, QosClass.BEST_EFFORT): (
        "kubepods.slice/kubepods-besteffort.slice/"
        "kubepods-besteffort-pod0f1e2d3c_4b5a_6978_8695_a4b3c2d1e0f9.slice"
    ),
}

CONTAINER_LEAVES = {
    (Driver.CGROUPFS, Runtime.CONTAINERD): CID,
    (Driver.CGROUPFS, Runtime.CRIO): f"crio-{CID}",
    (Driver.CGROUPFS, Runtime.DOCKER): CID,
    (Driver.SYSTEMD, Runtime.CONTAINERD): f"cri-containerd-{CID}.scope",
    (Driver.SYSTEMD, Runtime.CRIO): f"crio-{CID}.scope",
    (Driver.SYSTEMD, Runtime.DOCKER): f"docker-{CID}.scope",
}


@pytest.mark.parametrize(
    ("driver", "qos", "expected"),
    [pytest.param(d, q, e, id=f"{d}-{q}") for (d, q), e in POD_DIRS.items()],
)
def test_pod_directory_for_each_driver_and_qos(
    driver: Driver, qos: QosClass, expected: str
) -> None:
    assert pod_dir(driver, qos, UID) == P(expected)
    assert names_pod(P(expected), UID)
    assert pod_dir(driver, qos, UID, "/custom/root") == P("custom/root") / expected


@pytest.mark.parametrize(
    ("driver", "runtime", "expected"),
    [pytest.param(d, r, e, id=f"{d}-{r}") for (d, r), e in CONTAINER_LEAVES.items()],
)
def test_container_directory_for_each_driver_and_runtime(
    driver: Driver, runtime: Runtime, expected: str
) -> None:
    assert container_leaf(driver, runtime, CID) == expected
    # Whatever the spelling, /proc's path leads back to the container's directory.
    path = pod_dir(driver, QosClass.BURSTABLE, UID) / expected
    assert container_dir_in(path) == (CID, path)


def test_systemd_escapes_the_uid_and_kubepods_follows_the_kubelet_root() -> None:
    assert escape_systemd("a-b-c") == "a_b_c"
    assert kubepods_dir(Driver.SYSTEMD) == P("kubepods.slice")
    assert kubepods_dir(Driver.CGROUPFS, "/") == P("kubepods")
    assert kubepods_dir(Driver.CGROUPFS, "/t/") == P("t/kubepods")
    assert not names_pod(P(f"kubepods/pod{UID}x"), UID)
    assert not names_pod(P("kubepods/burstable"), UID)


def test_crun_container_subgroup_is_a_candidate_and_maps_back_to_its_container() -> None:
    scope = pod_dir(Driver.SYSTEMD, QosClass.BURSTABLE, UID) / f"crio-{CID}.scope"
    assert container_candidates(scope) == (scope, scope / "container")
    assert container_dir_in(scope / "container") == (CID, scope)
    assert container_dir_in(P("system.slice/sshd.service")) is None


def test_crio_conmon_is_not_the_container() -> None:
    # CRI-O's monitor runs in a cgroup carrying the container's ID, next to the container's.
    pod = pod_dir(Driver.SYSTEMD, QosClass.BURSTABLE, UID)
    assert container_dir_in(pod / f"crio-conmon-{CID}.scope") is None
    assert container_dir_in(P(f"kubepods/pod{UID}/crio-conmon-{CID}")) is None
    conmon, container = pod / f"crio-conmon-{CID}.scope", pod / f"crio-{CID}.scope"
    assert index_by_container([conmon, container]) == {CID: container}


@pytest.mark.parametrize(
    ("text", "runtime"),
    [
        (f"containerd://{CID}", Runtime.CONTAINERD),
        (f"cri-o://{CID}", Runtime.CRIO),
        (f"docker://{CID}", Runtime.DOCKER),
    ],
)
def test_container_ids_name_their_runtime(text: str, runtime: Runtime) -> None:
    assert parse_container_id(text) == (runtime, CID)


@pytest.mark.parametrize("text", ["", CID, f"rkt://{CID}", "containerd://abc", "containerd://"])
def test_other_container_ids_are_not_understood(text: str) -> None:
    assert parse_container_id(text) is None


V1_SEPARATE = f"""12:pids:/kubepods/burstable/pod{UID}/{CID}
4:cpuacct:/kubepods/burstable/pod{UID}/{CID}
3:cpu:/kubepods/burstable/pod{UID}/{CID}
1:name=systemd:/kubepods/burstable/pod{UID}/{CID}
0::/
"""
V1_COMBINED = f"""5:cpu,cpuacct:/kubepods.slice/kubepods-pod{UID}.slice/docker-{CID}.scope
2:memory:/other
"""
V2 = f"0::/kubepods.slice/kubepods-burstable.slice/x-pod{UID}.slice/crio-{CID}.scope/container\n"


def test_proc_cgroup_v1_separate_and_combined_controllers() -> None:
    assert cgroup_from_proc(V1_SEPARATE, CgroupVersion.V1) == P(
        f"kubepods/burstable/pod{UID}/{CID}"
    )
    assert cgroup_from_proc(V1_COMBINED, CgroupVersion.V1) == P(
        f"kubepods.slice/kubepods-pod{UID}.slice/docker-{CID}.scope"
    )
    # cpuacct alone is not cpu; a v1 file has no usable v2 line
    assert cgroup_from_proc("4:cpuacct:/a\n", CgroupVersion.V1) is None
    assert cgroup_from_proc(V1_SEPARATE, CgroupVersion.V2) is None


def test_proc_cgroup_v2_and_paths_outside_the_namespace() -> None:
    assert cgroup_from_proc(V2, CgroupVersion.V2) == P(V2.strip()[4:])
    assert cgroup_from_proc(V2, CgroupVersion.V1) is None
    # A private cgroup namespace shows other cgroups relative to the reader's: unusable.
    assert cgroup_from_proc(f"0::/../../kubepods.slice/{CID}\n", CgroupVersion.V2) is None
    assert cgroup_from_proc("0::/\n", CgroupVersion.V2) is None
    assert cgroup_from_proc("garbage\n", CgroupVersion.V2) is None


def test_index_by_container_keeps_the_container_directory() -> None:
    paths = [P(V2.strip()[4:]), P("system.slice/kubelet.service"), P(f"kubepods/pod{UID}/{CID}")]
    index = index_by_container(paths)
    assert list(index) == [CID]  # first found wins; both name the same container
    assert index[CID].name == f"crio-{CID}.scope"


@pytest.mark.parametrize(
    ("version", "quota", "period", "expected"),
    [
        (CgroupVersion.V1, "50000\n", "100000\n", Quota(50000, 100000)),
        (CgroupVersion.V1, "-1\n", "100000\n", None),
        (CgroupVersion.V2, "50000 100000\n", "", Quota(50000, 100000)),
        (CgroupVersion.V2, "max 100000\n", "", None),
    ],
)
def test_quotas(version: CgroupVersion, quota: str, period: str, expected: Quota | None) -> None:
    assert parse_quota(version, quota, period) == expected


@pytest.mark.parametrize(
    ("version", "quota"), [(CgroupVersion.V2, "50000\n"), (CgroupVersion.V1, "x")]
)
def test_malformed_quotas_are_errors(version: CgroupVersion, quota: str) -> None:
    with pytest.raises(ValueError):
        parse_quota(version, quota, "100000")


def test_burst_is_capped_at_the_quota_and_absent_without_one() -> None:
    assert capped_burst(30_000, Quota(50_000, 100_000)) == 30_000
    assert capped_burst(80_000, Quota(50_000, 100_000)) == 50_000  # the kernel's EINVAL
    assert capped_burst(0, Quota(50_000, 100_000)) == 0
    assert capped_burst(30_000, None) is None


# --- pods ---------------------------------------------------------------------------------


def pod(
    annotations: dict[str, str] | None = None,
    *,
    phase: str = "Running",
    containers: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    qos: str | None = "Burstable",
) -> dict[str, Any]:
    containers = containers or [
        {"name": "app", "resources": {"limits": {"cpu": "500m"}}},
        {"name": "side", "resources": {"requests": {"cpu": "100m"}}},
    ]
    if statuses is None:
        statuses = [
            {"name": c["name"], "containerID": f"containerd://{CID}", "state": {"running": {}}}
            for c in containers
        ]
    status: dict[str, Any] = {"phase": phase, "containerStatuses": statuses}
    if qos:
        status["qosClass"] = qos
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": UID, "annotations": annotations or {}},
        "spec": {"containers": containers},
        "status": status,
    }


def test_an_annotated_running_pod_is_applied_to_its_limited_containers() -> None:
    target = pod_target(pod({BURST_ANNOTATION: "30000"}))
    assert target.intent is Intent.APPLY
    assert target.requested_us == 30000
    assert [(c.name, c.cpu_limit, c.runtime) for c in target.containers] == [
        ("app", 500, Runtime.CONTAINERD)
    ]
    assert target.qos is QosClass.BURSTABLE


@pytest.mark.parametrize(
    ("annotations", "intent"),
    [
        ({}, Intent.IGNORE),  # nothing asked, nothing reported: someone else's burst
        ({BURST_APPLIED_ANNOTATION: "30000"}, Intent.RESET),
        ({BURST_REASON_ANNOTATION: "KernelTooOld: ..."}, Intent.RESET),
        ({BURST_ANNOTATION: "0"}, Intent.APPLY),
        ({BURST_ANNOTATION: "30ms"}, Intent.INVALID),
        ({BURST_ANNOTATION: "-5"}, Intent.INVALID),
        ({BURST_ANNOTATION: "99999999999"}, Intent.INVALID),
    ],
)
def test_intent_follows_the_annotations(annotations: dict[str, str], intent: Intent) -> None:
    target = pod_target(pod(annotations))
    assert target.intent is intent
    if intent is Intent.INVALID:
        assert BURST_ANNOTATION in target.problem


def test_pods_not_running_or_terminating_are_left_alone() -> None:
    assert pod_target(pod({BURST_ANNOTATION: "1"}, phase="Pending")).intent is Intent.IGNORE
    terminating = pod({BURST_ANNOTATION: "1"})
    terminating["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert pod_target(terminating).intent is Intent.IGNORE
    assert targets([pod(), terminating, pod({BURST_ANNOTATION: "1"})]) == [
        pod_target(pod({BURST_ANNOTATION: "1"}))
    ]


def test_containers_not_running_have_no_cgroup_yet() -> None:
    waiting = [{"name": "app", "containerID": "", "state": {"waiting": {}}}]
    target = pod_target(pod({BURST_ANNOTATION: "1"}, statuses=waiting))
    assert [c.name for c in target.containers] == ["app"]
    assert target.running == ()


def _container(name: str, requests: dict[str, str], limits: dict[str, str]) -> dict[str, Any]:
    return {"name": name, "resources": {"requests": requests, "limits": limits}}


@pytest.mark.parametrize(
    ("containers", "expected"),
    [
        ([_container("a", {}, {"cpu": "1", "memory": "1Gi"})], QosClass.GUARANTEED),
        (
            [_container("a", {"cpu": "1000m", "memory": "1024Mi"}, {"cpu": "1", "memory": "1Gi"})],
            QosClass.GUARANTEED,
        ),
        ([_container("a", {"cpu": "500m"}, {"cpu": "1", "memory": "1Gi"})], QosClass.BURSTABLE),
        ([_container("a", {}, {"cpu": "1"})], QosClass.BURSTABLE),
        ([_container("a", {}, {})], QosClass.BEST_EFFORT),
        (
            [_container("a", {}, {"cpu": "1", "memory": "1Gi"}), _container("b", {}, {})],
            QosClass.BURSTABLE,
        ),
    ],
)
def test_qos_from_the_spec_when_the_status_has_none(
    containers: list[dict[str, Any]], expected: QosClass
) -> None:
    assert pod_qos(pod(containers=containers, qos=None)) is expected


def test_qos_from_the_status_wins_and_init_containers_count() -> None:
    assert pod_qos(pod(qos="Guaranteed")) is QosClass.GUARANTEED
    spec_only = pod(containers=[_container("a", {}, {"cpu": "1", "memory": "1Gi"})], qos=None)
    spec_only["spec"]["initContainers"] = [_container("init", {}, {})]
    assert pod_qos(spec_only) is QosClass.BURSTABLE
