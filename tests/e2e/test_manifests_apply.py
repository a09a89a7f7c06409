"""``manifests/`` against a real API server: it installs, and its RBAC is least privilege.

The server accepts the whole kustomization (``kubectl apply --dry-run=server -k``, through
the kustomize embedded in the harness's kubectl), and, once applied, the operator's
ServiceAccount may make exactly the operator's API calls: every one is allowed, a sample of
others is denied, and ``kubectl auth can-i --list`` shows nothing beyond the table of
``tests/unit/test_manifests.py`` (plus what every ServiceAccount of its namespace gets).

The namespace, ServiceAccount, CRDs and RBAC stay applied after these tests: the other e2e
tests of the session run the operator with the same identity and the same RBAC, and
applying them again is a no-op. The Deployment is only dry-run (no scheduler or kubelet in
the sandbox, and no image to pull on an attached cluster). The optional Secret role is
applied for one test and removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from unthrottle.sandbox.kube import OPERATOR_NAMESPACE, KubeSandbox

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
OPTIONAL_SECRET_ROLE = MANIFESTS / "optional" / "prometheus-credentials-rbac.yaml"
# Another identity in the operator's namespace: what every ServiceAccount there may do.
BASELINE_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:unthrottle-e2e-baseline"

# kubectl's name for each resource -> whether it is namespaced -> verbs the operator uses.
ALLOWED: dict[str, tuple[bool, frozenset[str]]] = {
    "throttlepolicies.unthrottle.dev": (False, frozenset({"get", "list", "watch", "patch"})),
    "throttlepolicies.unthrottle.dev/status": (False, frozenset({"get", "patch"})),
    "throttlerecommendations.unthrottle.dev": (
        True,
        frozenset({"get", "list", "watch", "create", "patch", "delete"}),
    ),
    "throttlerecommendations.unthrottle.dev/status": (True, frozenset({"get", "patch"})),
    "deployments.apps": (True, frozenset({"get", "list", "watch", "patch"})),
    "statefulsets.apps": (True, frozenset({"get", "list", "patch"})),
    "daemonsets.apps": (True, frozenset({"get", "list", "patch"})),
    "replicasets.apps": (True, frozenset({"get", "list"})),
    "pods": (True, frozenset({"list"})),
    "namespaces": (False, frozenset({"get", "list", "watch"})),
    "nodes": (False, frozenset({"list"})),
    "events": (True, frozenset({"create", "patch"})),
    "events.events.k8s.io": (True, frozenset({"create", "patch"})),
    "horizontalpodautoscalers.autoscaling": (True, frozenset({"get", "list"})),
    "customresourcedefinitions.apiextensions.k8s.io": (False, frozenset({"get", "list", "watch"})),
}

DENIED: list[tuple[str, str, bool]] = [
    ("get", "secrets", True),
    ("list", "secrets", True),
    ("get", "secrets/prometheus-token", True),
    ("delete", "deployments.apps", True),
    ("create", "deployments.apps", True),
    ("update", "deployments.apps", True),
    ("get", "pods", True),
    ("watch", "pods", True),
    ("patch", "pods", True),
    ("delete", "pods", True),
    ("get", "configmaps", True),
    ("delete", "throttlepolicies.unthrottle.dev", False),
    ("create", "throttlepolicies.unthrottle.dev", False),
    ("update", "throttlerecommendations.unthrottle.dev", True),
    ("delete", "replicasets.apps", True),
    ("watch", "statefulsets.apps", True),
    ("delete", "statefulsets.apps", True),
    ("update", "daemonsets.apps", True),
    ("delete", "daemonsets.apps", True),
    ("patch", "namespaces", False),
    ("get", "nodes", False),
    ("patch", "nodes", False),
    ("patch", "horizontalpodautoscalers.autoscaling", True),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io", False),
    ("get", "events", True),
]

_LIST_ROW = re.compile(r"^\s*(?:(\S+)\s+)?\[([^\]]*)\]\s+\[([^\]]*)\]\s+\[([^\]]*)\]\s*$")

Row = tuple[str, str, str]  # (resource, non-resource URLs, resource names)


def _can_i(
    kube: KubeSandbox,
    verb: str,
    resource: str,
    *,
    namespace: str | None,
    user: str | None = None,
) -> bool:
    # "throttlepolicies.unthrottle.dev/status" is a subresource; "secrets/NAME" one object.
    args = ["auth", "can-i", verb, resource]
    if resource.endswith("/status"):
        args[-1:] = [resource.removesuffix("/status"), "--subresource=status"]
    if namespace:
        args += ["-n", namespace]
    args += ["--as", user or kube.operator_user]
    done = kube.kubectl(*args, check=False)
    answer = done.stdout.strip()
    assert answer in {"yes", "no"}, f"kubectl {' '.join(args)}: {done.stderr.strip()}"
    return answer == "yes"


def _rules(
    kube: KubeSandbox, namespace: str, *, user: str | None = None, own: bool = False
) -> dict[Row, frozenset[str]]:
    """``kubectl auth can-i --list`` as a table: impersonating ``user``, or with ``own``
    as the operator kubeconfig's own identity (a SelfSubjectRulesReview)."""
    args = ["auth", "can-i", "--list", "-n", namespace]
    if own:
        done = kube.kubectl(*args, kubeconfig=kube.operator_kubeconfig)
    else:
        done = kube.kubectl(*args, "--as", user or kube.operator_user)
    lines = done.stdout.splitlines()
    assert lines and lines[0].split()[0] == "Resources", done.stdout
    table: dict[Row, set[str]] = {}
    for line in lines[1:]:
        match = _LIST_ROW.match(line)
        assert match, f"unparsed `can-i --list` row: {line!r}"
        resource, urls, names, verbs = match.groups()
        table.setdefault((resource or "", urls, names), set()).update(verbs.split())
    return {row: frozenset(verbs) for row, verbs in table.items()}


@pytest.fixture(scope="module")
def operator_namespace(kube: KubeSandbox) -> str:
    # Server-side dry run does not create a namespace for the objects that follow it in
    # the same apply, so the namespace must exist (kubectl apply -k would create it first).
    kube.apply(MANIFESTS / "namespace.yaml")
    return OPERATOR_NAMESPACE


@pytest.fixture(scope="module")
def installed(kube: KubeSandbox, operator_namespace: str) -> None:
    """Everything ``kubectl apply -k manifests/`` installs, but the Deployment."""
    built = _for_this_server(kube, kube.kubectl("kustomize", str(MANIFESTS)).stdout)
    objects = [d for d in yaml.safe_load_all(built) if d]
    kinds = [o["kind"] for o in objects]
    assert kinds.count("Deployment") == 1
    rest = [o for o in objects if o["kind"] != "Deployment"]
    kube.apply_manifest(yaml.safe_dump_all(rest))


def _for_this_server(kube: KubeSandbox, built: str) -> str:
    """The built kustomization, its PodDisruptionBudget as policy/v1beta1 when the server
    predates policy/v1 (Kubernetes 1.20, the sandbox's): the same spec, validated still."""
    if "policy/v1" in kube.kubectl("api-versions").stdout.split():
        return built
    objects = [d for d in yaml.safe_load_all(built) if d]
    for obj in objects:
        if obj["kind"] == "PodDisruptionBudget":
            assert obj["apiVersion"] == "policy/v1"
            obj["apiVersion"] = "policy/v1beta1"
    return yaml.safe_dump_all(objects)


def test_server_dry_run_accepts_the_kustomization(
    kube: KubeSandbox, operator_namespace: str
) -> None:
    built = _for_this_server(kube, kube.kubectl("kustomize", str(MANIFESTS)).stdout)
    done = kube.kubectl("apply", "--dry-run=server", "-f", "-", stdin=built, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    for expected in (
        f"namespace/{OPERATOR_NAMESPACE}",
        "customresourcedefinition.apiextensions.k8s.io/throttlepolicies.unthrottle.dev",
        "customresourcedefinition.apiextensions.k8s.io/throttlerecommendations.unthrottle.dev",
        "serviceaccount/unthrottle",
        "clusterrole.rbac.authorization.k8s.io/unthrottle",
        "clusterrolebinding.rbac.authorization.k8s.io/unthrottle",
        "role.rbac.authorization.k8s.io/unthrottle-leader-election",
        "rolebinding.rbac.authorization.k8s.io/unthrottle-leader-election",
        "deployment.apps/unthrottle",
        "poddisruptionbudget.policy/unthrottle",
    ):
        assert any(line.startswith(expected + " ") for line in lines), (expected, lines)
    assert all(line.endswith("(server dry run)") for line in lines), lines


def test_server_dry_run_accepts_the_example_policies(kube: KubeSandbox) -> None:
    done = kube.kubectl("apply", "--dry-run=server", "-k", str(MANIFESTS / "examples"))
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 3
    assert all(line.startswith("throttlepolicy.unthrottle.dev/") for line in lines), lines


@pytest.mark.usefixtures("installed")
def test_service_account_may_make_every_operator_call(kube: KubeSandbox, namespace: str) -> None:
    refused = [
        f"{verb} {resource}"
        for resource, (namespaced, verbs) in ALLOWED.items()
        for verb in sorted(verbs)
        if not _can_i(kube, verb, resource, namespace=namespace if namespaced else None)
    ]
    assert not refused, f"{kube.operator_user} may not: {refused}"


@pytest.mark.usefixtures("installed")
def test_service_account_may_not_do_anything_else(kube: KubeSandbox, namespace: str) -> None:
    allowed = [
        f"{verb} {resource}"
        for verb, resource, namespaced in DENIED
        if _can_i(kube, verb, resource, namespace=namespace if namespaced else None)
    ]
    assert not allowed, f"{kube.operator_user} may: {allowed}"


@pytest.mark.usefixtures("installed")
def test_rules_beyond_the_namespace_baseline_are_exactly_the_table(
    kube: KubeSandbox, namespace: str
) -> None:
    operator = _rules(kube, namespace)
    baseline = _rules(kube, namespace, user=BASELINE_USER)
    extra = {row: verbs - baseline.get(row, frozenset()) for row, verbs in operator.items()}
    extra = {row: verbs for row, verbs in extra.items() if verbs}
    expected = {(resource, "", ""): verbs for resource, (_, verbs) in ALLOWED.items()}
    assert extra == expected


@pytest.mark.usefixtures("installed")
def test_operator_kubeconfig_is_the_same_identity(kube: KubeSandbox, namespace: str) -> None:
    # The e2e tests run the operator with kube.operator_kubeconfig; its permissions are the
    # ServiceAccount's that these manifests bind.
    assert _rules(kube, namespace, own=True) == _rules(kube, namespace)


@pytest.mark.usefixtures("installed")
def test_leader_election_may_use_only_its_lease(
    kube: KubeSandbox, operator_namespace: str, namespace: str
) -> None:
    ns = operator_namespace
    assert _can_i(kube, "get", "leases.coordination.k8s.io/unthrottle", namespace=ns)
    assert _can_i(kube, "update", "leases.coordination.k8s.io/unthrottle", namespace=ns)
    assert _can_i(kube, "create", "leases.coordination.k8s.io", namespace=ns)
    for verb, resource in [
        ("get", "leases.coordination.k8s.io/other"),
        ("update", "leases.coordination.k8s.io/other"),
        ("patch", "leases.coordination.k8s.io/unthrottle"),
        ("delete", "leases.coordination.k8s.io/unthrottle"),
        ("list", "leases.coordination.k8s.io"),
        ("watch", "leases.coordination.k8s.io"),
    ]:
        assert not _can_i(kube, verb, resource, namespace=ns), f"{verb} {resource}"
    for verb in ("get", "create"):
        assert not _can_i(kube, verb, "leases.coordination.k8s.io/unthrottle", namespace=namespace)


@pytest.fixture
def secret_role(kube: KubeSandbox, operator_namespace: str) -> Iterator[None]:
    kube.apply(OPTIONAL_SECRET_ROLE)
    try:
        yield
    finally:
        kube.kubectl("delete", "-f", str(OPTIONAL_SECRET_ROLE), "--ignore-not-found", check=False)


@pytest.mark.usefixtures("installed", "secret_role")
def test_optional_role_reads_only_the_named_secrets(
    kube: KubeSandbox, operator_namespace: str, namespace: str
) -> None:
    ns = operator_namespace
    assert _can_i(kube, "get", "secrets/prometheus-token", namespace=ns)
    assert _can_i(kube, "get", "secrets/prometheus-ca", namespace=ns)
    assert not _can_i(kube, "get", "secrets/other", namespace=ns)
    assert not _can_i(kube, "list", "secrets", namespace=ns)
    assert not _can_i(kube, "watch", "secrets", namespace=ns)
    assert not _can_i(kube, "update", "secrets/prometheus-token", namespace=ns)
    assert not _can_i(kube, "get", "secrets/prometheus-token", namespace=namespace)


def test_monitoring_kustomization_builds_with_the_embedded_kustomize(kube: KubeSandbox) -> None:
    # kubectl 1.20's kustomize v2.0.3 must build manifests/monitoring/: the rule, the
    # PodMonitor, and the dashboard ConfigMap generated with the Grafana sidecar's label.
    # (No dry run: the sandbox has no Prometheus Operator CRDs.)
    monitoring = MANIFESTS / "monitoring"
    built = [d for d in yaml.safe_load_all(kube.kubectl("kustomize", str(monitoring)).stdout) if d]
    by_kind = {o["kind"]: o for o in built}
    assert sorted(by_kind) == ["ConfigMap", "PodMonitor", "PrometheusRule"]
    config_map = by_kind["ConfigMap"]
    assert config_map["metadata"]["name"] == "unthrottle-dashboard"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = (monitoring / "dashboards" / "unthrottle.json").read_text()
    assert config_map["data"]["unthrottle.json"] == dashboard
    assert all(o["metadata"]["namespace"] == OPERATOR_NAMESPACE for o in built)
