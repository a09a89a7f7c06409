"""``manifests/agent/`` read as YAML, against the agent's code: no cluster.

The DaemonSet's command is parsed by the real ``unthrottle`` parser, so its flags exist
and its mounts are where the agent looks; its only volumes are the host's
``/sys/fs/cgroup`` (read-write) and ``/proc`` (read-only); ``NODE_NAME`` comes from
``spec.nodeName``; the port, probes and Prometheus annotations agree with the code; the
RBAC is pods list and patch only; the namespace enforces the ``privileged`` Pod Security
level; the image is the operator's. tests/e2e/agent/test_agent_install.py applies the
same files to a real API server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from unthrottle.cli import build_parser
from unthrottle.cli.agent import DEFAULT_PORT
from unthrottle.model import names

ROOT = Path(__file__).resolve().parents[2]
AGENT = ROOT / "manifests" / "agent"
DOCS = ROOT / "docs" / "burst-agent.md"


def _objects() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((AGENT / "kustomization.yaml").read_text())
    assert set(kustomization) == {"resources"}
    objects: list[dict[str, Any]] = []
    for entry in kustomization["resources"]:
        assert "/" not in entry and (AGENT / entry).is_file()
        objects.extend(d for d in yaml.safe_load_all((AGENT / entry).read_text()) if d)
    return objects


def _one(kind: str) -> dict[str, Any]:
    (found,) = (o for o in _objects() if o["kind"] == kind)
    return found


def _pod() -> dict[str, Any]:
    spec: dict[str, Any] = _one("DaemonSet")["spec"]["template"]["spec"]
    return spec


def _container() -> dict[str, Any]:
    (container,) = _pod()["containers"]
    assert isinstance(container, dict)
    return container


def test_the_kustomization_lists_every_file_and_namespaces_itself() -> None:
    listed = yaml.safe_load((AGENT / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(
        p.name for p in AGENT.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    namespace = _one("Namespace")["metadata"]
    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    for obj in _objects():
        if obj["kind"] in {"Namespace", "ClusterRole", "ClusterRoleBinding"}:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == namespace["name"], obj["kind"]


def test_rbac_is_list_and_patch_pods_bound_to_the_agents_service_account() -> None:
    role, binding = _one("ClusterRole"), _one("ClusterRoleBinding")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "patch"]}]
    account = _one("ServiceAccount")["metadata"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}
    ]
    assert _pod()["serviceAccountName"] == account["name"]


def test_the_command_is_the_agent_and_its_mounts_are_where_it_looks() -> None:
    container = _container()
    command = container["command"]
    assert command[:2] == ["unthrottle", "agent"]
    args = build_parser().parse_args(command[1:])
    assert args.run.__module__ == "unthrottle.cli.agent"
    volumes = {v["name"]: v for v in _pod()["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    host = {
        volumes[m["name"]]["hostPath"]["path"]: m
        for m in mounts.values()
        if "hostPath" in volumes[m["name"]]
    }
    assert set(host) == {"/sys/fs/cgroup", "/proc"}
    assert Path(host["/sys/fs/cgroup"]["mountPath"]) == args.cgroup_root
    assert not host["/sys/fs/cgroup"].get("readOnly", False)
    assert Path(host["/proc"]["mountPath"]) == args.proc
    assert host["/proc"]["readOnly"] is True
    assert not args.no_proc and args.cgroup_driver == "auto"
    assert set(volumes) == {m["name"] for m in host.values()}  # no other volume
    env = {e["name"]: e for e in container["env"]}
    assert env == {
        "NODE_NAME": {
            "name": "NODE_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
        }
    }


def test_port_probes_and_scrape_annotations_agree_with_the_code() -> None:
    container = _container()
    (port,) = container["ports"]
    assert port["containerPort"] == DEFAULT_PORT
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    annotations = _one("DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(DEFAULT_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_root_without_capabilities_and_no_host_namespaces() -> None:
    context = _container()["securityContext"]
    assert context["runAsUser"] == 0  # the cgroup files are root's
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["privileged"] is False
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not _pod().get(key, False)
    assert {t.get("operator") for t in _pod()["tolerations"]} == {"Exists"}


def test_the_image_is_the_operators() -> None:
    operator = yaml.safe_load((ROOT / "manifests" / "deployment.yaml").read_text())
    (operator_container,) = operator["spec"]["template"]["spec"]["containers"]
    assert _container()["image"] == operator_container["image"]
    labels = _one("DaemonSet")["metadata"]["labels"]
    assert (
        labels["app.kubernetes.io/version"]
        == operator["metadata"]["labels"]["app.kubernetes.io/version"]
    )


def test_docs_name_the_annotations_and_metrics_of_the_code() -> None:
    text = DOCS.read_text()
    for name in (
        names.BURST_ANNOTATION,
        names.BURST_APPLIED_ANNOTATION,
        names.BURST_REASON_ANNOTATION,
        "unthrottle_agent_burst_applied",
        "unthrottle_agent_write_errors_total",
        "kubectl apply -k manifests/agent/",
    ):
        assert name in text, name


def test_the_agent_namespace_is_out_of_every_default_scope() -> None:
    # The agent's DaemonSet is a node component, not a workload to right-size.
    assert _one("Namespace")["metadata"]["name"] == names.AGENT_NAMESPACE
    assert names.AGENT_NAMESPACE in names.SYSTEM_NAMESPACES
