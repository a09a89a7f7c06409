"""What the burst agent's tests build: kubelet-shaped real cgroups and kubelet-like pods.

- :class:`KubeletTree`: real cgroup v1 ``cpu`` groups under a unique directory of the
  host's hierarchy, laid out as a kubelet and a runtime would (:func:`lay_out`), with real
  processes in them, removed afterwards;
- :class:`Pods`: Pod objects bound to a node (``spec.nodeName``) and, since the sandbox
  has no kubelet, given the status a kubelet would write (Running, container IDs).

The fixtures in this directory's conftest.py hand them out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from unthrottle.agent.layout import Driver, QosClass, Runtime, container_leaf, pod_dir
from unthrottle.sources.kubeapi import MERGE_PATCH, KubeApi

CPU = Path("/sys/fs/cgroup/cpu")


@dataclass(frozen=True)
class AgentInstall:
    output: str  # what `kubectl apply -k` printed
    objects: list[dict[str, Any]]
    namespace: str
    service_account: str

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


# --- cgroups --------------------------------------------------------------------------------


def kernel_problem() -> str | None:
    if not (CPU / "cpu.cfs_quota_us").exists():
        return f"{CPU} is not a cgroup v1 cpu hierarchy"
    if not (CPU / "cpu.cfs_burst_us").exists():
        return f"{CPU}/cpu.cfs_burst_us does not exist (kernel < 5.14)"
    if not os.access(CPU, os.W_OK):
        return f"{CPU} is not writable (run as root)"
    return None


class KubeletTree:
    """Real cgroups laid out like a kubelet's, under ``/sys/fs/cgroup/cpu/<unique>``."""

    def __init__(self) -> None:
        self.name = f"unthrottle-test-{uuid.uuid4().hex[:10]}"
        self.root = CPU / self.name
        self.root.mkdir()
        self.processes: list[subprocess.Popen[str]] = []

    def kubelet_root(self, node: str) -> str:
        """A kubelet ``--cgroup-root`` inside the tree, one per node."""
        return f"/{self.name}/{node}"

    def cgroup(self, relative: PurePosixPath, quota_us: int | None = None) -> Path:
        """Make every directory down to ``relative``; set its quota (a 100 ms period)."""
        path = CPU
        for part in relative.parts:
            path = path / part
            if not path.exists():
                path.mkdir()
        if quota_us is not None:
            (path / "cpu.cfs_quota_us").write_text(str(quota_us))
        return path

    def spawn(self, cgroup: Path, *argv: str) -> subprocess.Popen[str]:
        """A real process, moved into ``cgroup`` (``sleep`` unless ``argv``)."""
        command = list(argv) or ["sleep", "120"]
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.processes.append(process)
        (cgroup / "cgroup.procs").write_text(str(process.pid))
        return process

    def remove(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
        directories = sorted(
            (p for p in self.root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)
        )
        for directory in [*directories, self.root]:
            for _ in range(50):
                for pid in (directory / "cgroup.procs").read_text().split():
                    with suppress(OSError):
                        (CPU / "cgroup.procs").write_text(pid)
                try:
                    directory.rmdir()
                    break
                except OSError:
                    time.sleep(0.05)


def burst(path: Path) -> int:
    return int((path / "cpu.cfs_burst_us").read_text())


# --- pods -----------------------------------------------------------------------------------


@dataclass
class RunningPod:
    """A Pod object and the cgroups made for it."""

    body: dict[str, Any]
    ids: dict[str, str]  # container → ID
    directory: Path | None = None  # the pod's cgroup
    containers: dict[str, Path] = field(default_factory=dict)

    @property
    def uid(self) -> str:
        return str(self.body["metadata"]["uid"])

    @property
    def qos(self) -> QosClass:
        return QosClass(self.body["status"]["qosClass"])


class Pods:
    """Creates Pod objects bound to a node, and writes the status a kubelet would."""

    def __init__(self, api: KubeApi, namespace: str) -> None:
        self.api, self.namespace = api, namespace

    def create(
        self,
        name: str,
        node: str,
        limits: Mapping[str, str | None],
        annotations: Mapping[str, str],
        *,
        guaranteed: bool = False,
    ) -> dict[str, Any]:
        """``limits``: container → CPU limit (None: no limit). Guaranteed: requests equal
        limits for CPU and memory."""
        containers = []
        for container, cpu in limits.items():
            resources: dict[str, Any] = {}
            if cpu is not None:
                resources["limits"] = {"cpu": cpu, "memory": "64Mi"}
                resources["requests"] = {"cpu": cpu if guaranteed else "10m", "memory": "64Mi"}
            containers.append(
                {"name": container, "image": "app.invalid/x:1", "resources": resources}
            )
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "annotations": dict(annotations)},
            "spec": {"nodeName": node, "containers": containers},
        }
        created: dict[str, Any] = self.api.post(f"/api/v1/namespaces/{self.namespace}/pods", body)
        return created

    def run(self, pod: dict[str, Any], runtime: Runtime) -> RunningPod:
        """Set the pod Running with a container ID of ``runtime`` for each container."""
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        ids = {c["name"]: uuid.uuid4().hex + uuid.uuid4().hex for c in pod["spec"]["containers"]}
        statuses = [
            {
                "name": name,
                "image": "app.invalid/x:1",
                "imageID": "",
                "ready": True,
                "started": True,
                "restartCount": 0,
                "state": {"running": {"startedAt": now}},
                "containerID": f"{runtime.value}://{ident}",
            }
            for name, ident in ids.items()
        ]
        name = pod["metadata"]["name"]
        status = {"phase": "Running", "startTime": now, "containerStatuses": statuses}
        body = self.api.patch(
            f"/api/v1/namespaces/{self.namespace}/pods/{name}/status",
            {"status": status},
            MERGE_PATCH,
        )
        return RunningPod(body, ids)

    def annotations(self, name: str) -> dict[str, str]:
        pod = self.api.get(f"/api/v1/namespaces/{self.namespace}/pods/{name}")
        return dict(pod["metadata"].get("annotations") or {})

    def annotate(self, name: str, annotations: Mapping[str, str | None]) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/pods/{name}"
        self.api.patch(path, {"metadata": {"annotations": dict(annotations)}}, MERGE_PATCH)


def lay_out(
    tree: KubeletTree,
    pod: RunningPod,
    *,
    driver: Driver,
    runtime: Runtime,
    node: str,
    quotas: Mapping[str, int | None],
    pod_quota: int | None,
) -> RunningPod:
    """Make the pod's and its containers' cgroups as the kubelet and the runtime would."""
    directory = pod_dir(driver, pod.qos, pod.uid, tree.kubelet_root(node))
    pod.directory = tree.cgroup(directory, pod_quota)
    for name, quota in quotas.items():
        leaf = container_leaf(driver, runtime, pod.ids[name])
        pod.containers[name] = tree.cgroup(directory / leaf, quota)
    return pod


BURN = """
import sys, time
print("ready", flush=True)
sys.stdin.readline()
end = time.thread_time() + float(sys.argv[1])
while time.thread_time() < end:
    pass
print("done", flush=True)
sys.stdin.readline()
"""


def burner(seconds: float) -> list[str]:
    """A process that burns ``seconds`` of CPU in one go when told to (``go``)."""
    return [sys.executable, "-c", BURN, str(seconds)]
