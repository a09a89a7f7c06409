"""``manifests/agent/`` on a real API server, and ``unthrottle agent`` as a process.

``kubectl apply -k manifests/agent/`` installs (for real: the sandbox has no DaemonSet
controller, so the DaemonSet stays inert); the agent's ServiceAccount may list and patch
pods and nothing else; ``unthrottle agent --once`` and the loop (its ``/readyz``,
``/metrics``, ``/healthz``, SIGTERM) run as subprocesses against real cgroups. The
operator's side closes the loop: a Deployment's pod bound to a node, the agent's report on
it, and the operator's read of it (as the operator's ServiceAccount) giving the engine
``cpu_burst_applied_us``; ``unthrottle report`` run by an identity that may not list pods
still reports, every burst advisory.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.agent.agent_harness import (
    AgentInstall,
    KubeletTree,
    Pods,
    RunningPod,
    burst,
    lay_out,
)

from unthrottle.agent.cycle import AgentConfig, run_cycle
from unthrottle.agent.layout import Driver, Runtime
from unthrottle.cli import main
from unthrottle.engine.recommend import burst_applied
from unthrottle.model.names import BURST_ANNOTATION, BURST_APPLIED_ANNOTATION
from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.reconcile.read import read_cluster
from unthrottle.reconcile.scope import OperatorScope
from unthrottle.reconcile.snapshot import PolicyObject
from unthrottle.sandbox.kube import KubeSandbox, wait_for
from unthrottle.sandbox.prometheus import PrometheusFactory
from unthrottle.sim.openmetrics import iter_openmetrics
from unthrottle.sim.scenarios import deployment_manifest, scenario
from unthrottle.sources.kubeapi import KubeApi
from unthrottle.sources.kubernetes import KubernetesSource

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[3]


def _can_i(kube: KubeSandbox, install: AgentInstall, verb: str, resource: str) -> bool:
    args = ["auth", "can-i", verb, resource, "--as", install.user]
    if resource.endswith("/status") or resource.endswith("/eviction"):
        name, _, sub = resource.partition("/")
        args[3:4] = [name, f"--subresource={sub}"]
    if resource not in {"nodes"}:
        args.append("--all-namespaces")
    answer = kube.kubectl(*args, check=False).stdout.strip()
    assert answer in {"yes", "no"}, args
    return answer == "yes"


def test_kubectl_apply_installs_the_agent(kube: KubeSandbox, agent_install: AgentInstall) -> None:
    for expected in (
        "namespace/unthrottle-agent",
        "serviceaccount/unthrottle-agent",
        "clusterrole.rbac.authorization.k8s.io/unthrottle-agent",
        "clusterrolebinding.rbac.authorization.k8s.io/unthrottle-agent",
        "daemonset.apps/unthrottle-agent",
    ):
        assert expected in agent_install.output, agent_install.output
    namespace = kube.get("namespace", agent_install.namespace)
    assert namespace is not None
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    daemonset = kube.get("daemonset", "unthrottle-agent", agent_install.namespace)
    assert daemonset is not None
    assert daemonset["spec"]["template"]["spec"]["serviceAccountName"] == (
        agent_install.service_account
    )


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("list", "pods", True),
        ("patch", "pods", True),
        ("get", "pods", False),
        ("watch", "pods", False),
        ("update", "pods", False),
        ("delete", "pods", False),
        ("create", "pods", False),
        ("patch", "pods/status", False),
        ("create", "pods/eviction", False),
        ("get", "secrets", False),
        ("list", "nodes", False),
        ("patch", "deployments.apps", False),
        ("list", "configmaps", False),
    ],
)
def test_the_agent_may_list_and_patch_pods_and_nothing_else(
    kube: KubeSandbox, agent_install: AgentInstall, verb: str, resource: str, allowed: bool
) -> None:
    assert _can_i(kube, agent_install, verb, resource) is allowed


def _web_pod(kubelet: KubeletTree, pods: Pods, node: str) -> RunningPod:
    body = pods.create("web", node, {"app": "500m"}, {BURST_ANNOTATION: "30000"})
    pod = pods.run(body, Runtime.CONTAINERD)
    lay_out(
        kubelet,
        pod,
        driver=Driver.SYSTEMD,
        runtime=Runtime.CONTAINERD,
        node=node,
        quotas={"app": 50_000},
        pod_quota=50_000,
    )
    kubelet.spawn(pod.containers["app"])
    return pod


def _agent(kube: KubeSandbox, node: str, kubelet: KubeletTree, *args: str) -> list[str]:
    kubeconfig = kube.workdir / "kubeconfig-agent" if kube.workdir else None
    assert kubeconfig is not None and kubeconfig.exists()
    return [
        sys.executable,
        "-m",
        "unthrottle.cli",
        "agent",
        "--node",
        node,
        "--kubeconfig",
        str(kubeconfig),
        "--kubelet-cgroup-root",
        kubelet.kubelet_root(node),
        *args,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "operator")}


@pytest.mark.usefixtures("agent_kube")
def test_agent_once_prints_what_it_did(kube: KubeSandbox, kubelet: KubeletTree, pods: Pods) -> None:
    node = f"node-{uuid.uuid4().hex[:8]}"
    pod = _web_pod(kubelet, pods, node)
    done = subprocess.run(
        _agent(kube, node, kubelet, "--once"),
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ready"] is True
    assert summary["node"]["driver"] == "systemd"
    assert summary["node"]["cgroupVersion"] == "v1"
    (report,) = summary["pods"]
    assert report["annotations"][BURST_APPLIED_ANNOTATION] == "30000"
    assert [(c["container"], c["via"], c["burstUs"]) for c in report["cgroups"]] == [
        ("app", "proc", 30000),
        ("", "proc", 30000),
    ]
    assert burst(pod.containers["app"]) == 30_000


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def _ready(base: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        status, body = _get(base + "/readyz")
        return body if status == 200 else None

    return probe


@pytest.mark.usefixtures("agent_kube")
def test_agent_loop_serves_readiness_and_metrics_and_stops_on_sigterm(
    kube: KubeSandbox, kubelet: KubeletTree, pods: Pods
) -> None:
    node = f"node-{uuid.uuid4().hex[:8]}"
    _web_pod(kubelet, pods, node)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    command = _agent(kube, node, kubelet, "--interval", "1s", "--port", str(port))
    process = subprocess.Popen(
        [*command, "--bind", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        body = wait_for(_ready(base), timeout=30, what="the agent's /readyz")
        ready = json.loads(body)
        assert ready["ready"] is True
        assert (ready["cgroupVersion"], ready["driver"]) == ("v1", "systemd")
        assert ready["runtimes"] == ["containerd"] and ready["burstSupported"] is True
        assert _get(base + "/healthz")[0] == 200
        status, metrics = _get(base + "/metrics")
        assert status == 200
        labels = f'container="app",namespace="{pods.namespace}",pod="web"'
        line = f"unthrottle_agent_burst_applied{{{labels}}} 30000.0"
        assert line in metrics.splitlines(), metrics
        assert (
            'unthrottle_agent_info{burst_supported="true",cgroup_version="v1",driver="systemd"} 1.0'
            in metrics
        )
        assert "unthrottle_agent_cycle_seconds_count" in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        _, stderr = process.communicate(timeout=10)
    assert "node ready" in stderr


def _bind(api: KubeApi, namespace: str, name: str, node: str) -> None:
    # What the scheduler does: the pods/binding subresource sets spec.nodeName.
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    }
    api.post(f"/api/v1/namespaces/{namespace}/pods/{name}/binding", body)


def test_the_operator_reads_the_applied_burst_of_a_deployments_pods(
    kube: KubeSandbox,
    kubelet: KubeletTree,
    pods: Pods,
    admin_api: KubeApi,
    agent_kube: KubernetesSource,
) -> None:
    """Deployment → ReplicaSet → pod (the controller manager), bound to a node, Running;
    the agent applies the template's burst; the operator's read of a pass (its own
    ServiceAccount and RBAC) turns the report into ``cpu_burst_applied_us``, and the engine
    counts the burst."""
    kube.apply(ROOT / "manifests" / "namespace.yaml")
    kube.apply(ROOT / "manifests" / "rbac.yaml")
    namespace, node = pods.namespace, f"node-{uuid.uuid4().hex[:8]}"
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "checkout", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "checkout"}},
            "template": {
                "metadata": {
                    "labels": {"app": "checkout"},
                    "annotations": {BURST_ANNOTATION: "30000"},
                },
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "app.invalid/x:1",
                            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                        }
                    ]
                },
            },
        },
    }
    kube.apply_manifest(deployment)
    items = wait_for(
        lambda: admin_api.get(f"/api/v1/namespaces/{namespace}/pods").get("items") or None,
        timeout=60,
        what="the Deployment's pod",
    )
    name = items[0]["metadata"]["name"]
    _bind(admin_api, namespace, name, node)
    body = admin_api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    pod = pods.run(body, Runtime.CONTAINERD)
    lay_out(
        kubelet,
        pod,
        driver=Driver.CGROUPFS,
        runtime=Runtime.CONTAINERD,
        node=node,
        quotas={"app": 50_000},
        pod_quota=50_000,
    )
    policy = PolicyObject(
        "burst-e2e", 1, ("2026-01-01T00:00:00Z", "burst-e2e"), ThrottlePolicySpec()
    )
    assert policy.spec.burst.agent.value == "Detect"
    bounds = OperatorScope("unthrottle-system", frozenset({namespace}))
    operator = KubernetesSource.from_kubeconfig(str(kube.operator_kubeconfig))
    try:
        (before,) = read_cluster(policy, operator, bounds).deployments
        assert before.containers[0].cpu_burst_applied_us is None  # no agent yet
        run_cycle(agent_kube, AgentConfig(node=node, kubelet_root=kubelet.kubelet_root(node)))
        assert pods.annotations(name)[BURST_APPLIED_ANNOTATION] == "30000"
        (after,) = read_cluster(policy, operator, bounds).deployments
    finally:
        operator.close()
    container = after.containers[0]
    assert container.cpu_burst_applied_us == 30_000
    assert not burst_applied(before.containers[0], policy.spec)
    assert burst_applied(container, policy.spec)


def test_report_without_pods_access_counts_no_burst(
    kube: KubeSandbox,
    pods: Pods,
    prometheus_factory: PrometheusFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``unthrottle report --kubeconfig`` with an identity that may not list pods: the
    report still runs, every burst is advisory, and stderr says why."""
    namespace = pods.namespace
    manifest = deployment_manifest(scenario("micro-burst"), namespace=namespace)
    manifest["spec"]["template"]["metadata"]["annotations"] = {BURST_ANNOTATION: "30000"}
    kube.apply_manifest(manifest)
    reader = f"report-reader-{uuid.uuid4().hex[:6]}"
    rules = [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]},
        {
            "apiGroups": ["apps"],
            "resources": ["deployments", "replicasets", "statefulsets", "daemonsets"],
            "verbs": ["list"],
        },
    ]
    kube.apply_manifest(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": reader, "namespace": namespace},
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRole",
                    "metadata": {"name": reader},
                    "rules": rules,
                },
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": reader},
                    "roleRef": {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "ClusterRole",
                        "name": reader,
                    },
                    "subjects": [
                        {"kind": "ServiceAccount", "name": reader, "namespace": namespace}
                    ],
                },
            ],
        }
    )
    try:
        kubeconfig = kube.service_account_kubeconfig(namespace, reader, reader)
        end_ms = 1_767_225_600_000
        chunks = iter_openmetrics([scenario("micro-burst")], end_ms - 2 * 3_600_000, end_ms)
        prometheus = prometheus_factory("agent-report", {"micro.om": chunks})
        argv = [
            "report",
            *("--prometheus-url", prometheus.url, "--window", "2h", "--at", str(end_ms / 1000)),
            *("--namespace", namespace, "-o", "json"),
        ]
        assert main([*argv, "--kubeconfig", str(kubeconfig)]) == 0
        out, err = capsys.readouterr()
        assert "cannot read pods, so no burst counts as applied: GET /api/v1/namespaces/" in err
        assert [w["name"] for w in json.loads(out)["workloads"]] == ["indexer"]
        assert main([*argv, "--kubeconfig", str(kube.kubeconfig)]) == 0
        assert "cannot read pods" not in capsys.readouterr().err
    finally:
        for kind in ("clusterrolebinding", "clusterrole"):
            kube.kubectl("delete", kind, reader, "--ignore-not-found", check=False)
