"""The install manifests in ``manifests/``, read as YAML: no cluster.

What ``kubectl apply -k manifests/`` installs must be least-privilege and hardened: the
ClusterRole grants exactly the table below (the operator's API calls, nothing on Secrets),
the Deployment runs non-root on a read-only root filesystem with probes and resources,
and every object agrees on the namespace and ServiceAccount the e2e harness authenticates
as. ``tests/e2e/test_manifests_apply.py`` checks the same against a real API server.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from unthrottle.sandbox.kube import ASSETS, OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
CRDS = ROOT / "crds"

IMAGE_REPOSITORY = "ghcr.io/unthrottle/unthrottle"
OPERATOR_UID = 10001

# (apiGroup, resource) -> verbs: every API call the operator makes, and nothing else.
EXPECTED_RULES: dict[tuple[str, str], frozenset[str]] = {
    ("unthrottle.dev", "throttlepolicies"): frozenset({"get", "list", "watch", "patch"}),
    ("unthrottle.dev", "throttlepolicies/status"): frozenset({"get", "patch"}),
    ("unthrottle.dev", "throttlerecommendations"): frozenset(
        {"get", "list", "watch", "create", "patch", "delete"}
    ),
    ("unthrottle.dev", "throttlerecommendations/status"): frozenset({"get", "patch"}),
    ("apps", "deployments"): frozenset({"get", "list", "watch", "patch"}),
    ("apps", "statefulsets"): frozenset({"get", "list", "patch"}),
    ("apps", "daemonsets"): frozenset({"get", "list", "patch"}),
    ("apps", "replicasets"): frozenset({"get", "list"}),
    ("", "pods"): frozenset({"list"}),
    ("", "namespaces"): frozenset({"get", "list", "watch"}),
    ("", "nodes"): frozenset({"list"}),
    ("", "events"): frozenset({"create", "patch"}),
    ("events.k8s.io", "events"): frozenset({"create", "patch"}),
    ("autoscaling", "horizontalpodautoscalers"): frozenset({"get", "list"}),
    ("apiextensions.k8s.io", "customresourcedefinitions"): frozenset({"get", "list", "watch"}),
}

# The leader-election Role in the operator's namespace: the one Lease, by name, and create
# (which cannot be limited by name).
LEASE_RULES = [
    {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["unthrottle"],
        "verbs": ["get", "update"],
    },
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
]

CLUSTER_SCOPED_KINDS = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
}


def _docs(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert all(isinstance(d, dict) for d in docs), path
    return docs


def _kustomization(directory: Path) -> dict[str, Any]:
    data = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _installed() -> list[dict[str, Any]]:
    """The objects ``kubectl apply -k manifests/`` creates, in kustomization order."""
    objects: list[dict[str, Any]] = []
    for entry in _kustomization(MANIFESTS)["resources"]:
        objects.extend(_docs(MANIFESTS / entry))
    return objects


def _one(kind: str, objects: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    found = [o for o in (objects if objects is not None else _installed()) if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _rules_table(rules: list[dict[str, Any]]) -> dict[tuple[str, str], frozenset[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, (
            f"unexpected keys in {rule} (resourceNames, nonResourceURLs)"
        )
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return {key: frozenset(verbs) for key, verbs in table.items()}


def _container() -> dict[str, Any]:
    containers = _one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container = containers[0]
    assert isinstance(container, dict)
    return container


def _project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        version = tomllib.load(f)["project"]["version"]
    assert isinstance(version, str)
    return version


# --- the kustomization -------------------------------------------------------------------


def test_kustomization_is_a_plain_resources_list_inside_its_root() -> None:
    # kubectl 1.20 embeds kustomize v2.0.3: `resources:` must be files in or below the
    # kustomization root (no ../, no directories, no newer fields).
    kustomization = _kustomization(MANIFESTS)
    assert set(kustomization) == {"resources"}
    resources = kustomization["resources"]
    assert resources == [
        "namespace.yaml",
        "crds/throttlepolicy.yaml",
        "crds/throttlerecommendation.yaml",
        "rbac.yaml",
        "deployment.yaml",
        "pdb.yaml",
    ]
    for entry in resources:
        path = MANIFESTS / entry
        assert ".." not in Path(entry).parts
        assert path.is_file() and not path.is_symlink(), entry


@pytest.mark.parametrize("name", ["throttlepolicy.yaml", "throttlerecommendation.yaml"])
def test_crd_copies_are_identical_to_crds(name: str) -> None:
    copy = (MANIFESTS / "crds" / name).read_bytes()
    assert copy == (CRDS / name).read_bytes(), (
        f"manifests/crds/{name} differs from crds/{name}; crds/ is the source: "
        "cp crds/throttlepolicy.yaml crds/throttlerecommendation.yaml manifests/crds/"
    )


def test_examples_are_identical_copies_listed_in_their_kustomization() -> None:
    examples = MANIFESTS / "examples"
    listed = _kustomization(examples)["resources"]
    present = sorted(p.name for p in examples.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == present
    assert 2 <= len(listed) <= 3
    for name in listed:
        assert (examples / name).read_bytes() == (CRDS / "examples" / name).read_bytes(), (
            f"manifests/examples/{name} differs from crds/examples/{name}"
        )
        (policy,) = _docs(examples / name)
        assert policy["kind"] == "ThrottlePolicy"
        assert "namespace" not in policy["metadata"]  # cluster-scoped


def test_examples_are_not_installed_by_default() -> None:
    assert not any(o["kind"] == "ThrottlePolicy" for o in _installed())


# --- namespace and identity --------------------------------------------------------------


def test_objects_agree_on_the_namespace_and_service_account() -> None:
    objects = _installed()
    assert _one("Namespace", objects)["metadata"]["name"] == OPERATOR_NAMESPACE
    for obj in objects:
        if obj["kind"] in CLUSTER_SCOPED_KINDS:
            assert "namespace" not in obj["metadata"], obj["kind"]
        else:
            assert obj["metadata"].get("namespace") == OPERATOR_NAMESPACE, obj["kind"]
    assert _one("ServiceAccount", objects)["metadata"]["name"] == OPERATOR_SERVICE_ACCOUNT
    pod = _one("Deployment", objects)["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == OPERATOR_SERVICE_ACCOUNT
    assert pod["automountServiceAccountToken"] is True


def test_installed_crds_are_the_two_unthrottle_crds() -> None:
    names = {o["metadata"]["name"] for o in _installed() if o["kind"] == "CustomResourceDefinition"}
    assert names == {"throttlepolicies.unthrottle.dev", "throttlerecommendations.unthrottle.dev"}


# --- RBAC --------------------------------------------------------------------------------


def test_cluster_role_grants_exactly_the_operators_api_calls() -> None:
    role = _one("ClusterRole")
    assert role["metadata"]["name"] == "unthrottle"
    assert "aggregationRule" not in role
    assert _rules_table(role["rules"]) == EXPECTED_RULES


def test_no_wildcards_and_nothing_on_secrets_in_the_base_install() -> None:
    for obj in _installed():
        for rule in obj.get("rules", []):
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(key, []), rule
            assert "secrets" not in rule["resources"], rule
    kinds = [o["kind"] for o in _installed()]
    assert "Secret" not in kinds
    assert kinds.count("Role") == kinds.count("RoleBinding") == 1  # the leader election's


def test_leader_election_role_is_the_one_lease_in_the_operator_namespace() -> None:
    role, binding = _one("Role"), _one("RoleBinding")
    assert role["metadata"]["namespace"] == OPERATOR_NAMESPACE
    assert binding["metadata"]["namespace"] == OPERATOR_NAMESPACE
    assert role["rules"] == LEASE_RULES
    _assert_binds_the_service_account(binding, role)


def _assert_binds_the_service_account(binding: dict[str, Any], role: dict[str, Any]) -> None:
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": role["kind"],
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": OPERATOR_SERVICE_ACCOUNT,
            "namespace": OPERATOR_NAMESPACE,
        }
    ]


def test_cluster_role_binding_binds_the_service_account() -> None:
    _assert_binds_the_service_account(_one("ClusterRoleBinding"), _one("ClusterRole"))


def test_optional_secret_role_reads_only_the_named_prometheus_secrets() -> None:
    objects = _docs(MANIFESTS / "optional" / "prometheus-credentials-rbac.yaml")
    role, binding = _one("Role", objects), _one("RoleBinding", objects)
    assert role["metadata"]["namespace"] == OPERATOR_NAMESPACE
    assert binding["metadata"]["namespace"] == OPERATOR_NAMESPACE
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["prometheus-token", "prometheus-ca"],
            "verbs": ["get"],
        }
    ]
    _assert_binds_the_service_account(binding, role)
    # The names match the Secrets the auth example policy refers to.
    (policy,) = _docs(CRDS / "examples" / "tp-prometheus-auth.yaml")
    refs = [v for k, v in policy["spec"]["prometheus"].items() if k.endswith("SecretRef")]
    assert {r["name"] for r in refs} == set(role["rules"][0]["resourceNames"])
    assert {r["namespace"] for r in refs} == {OPERATOR_NAMESPACE}


# --- the Deployment ----------------------------------------------------------------------


def test_deployment_runs_two_replicas_with_a_disruption_budget() -> None:
    spec = _one("Deployment")["spec"]
    # Leader election: only the Lease holder reconciles, so two pods (and a rolling
    # update's overlap) are safe.
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    selector = spec["selector"]["matchLabels"]
    labels = spec["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    budget = _one("PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1"
    assert budget["metadata"]["namespace"] == OPERATOR_NAMESPACE
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}


def test_image_is_pinned_to_the_project_version() -> None:
    image = _container()["image"]
    repository, sep, tag = image.rpartition(":")
    assert sep and "/" not in tag, f"{image}: no tag"
    assert tag != "latest"
    assert repository == IMAGE_REPOSITORY
    assert tag == _project_version()
    labels = _one("Deployment")["metadata"]["labels"]
    assert labels["app.kubernetes.io/version"] == _project_version()


def test_command_and_environment() -> None:
    container = _container()
    assert container["command"] == ["unthrottle", "run", "-A"]
    assert "args" not in container
    env = {e["name"]: e for e in container["env"]}
    assert set(env) == {"UNTHROTTLE_PROMETHEUS_URL", "UNTHROTTLE_NAMESPACE", "POD_NAME"}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["UNTHROTTLE_PROMETHEUS_URL"]["value"].startswith("http")
    assert env["UNTHROTTLE_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }


def test_container_security_context() -> None:
    context = _container()["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == OPERATOR_UID
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context.get("privileged", False) is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}


def test_pod_security_context() -> None:
    pod = _one("Deployment")["spec"]["template"]["spec"]
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == OPERATOR_UID
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key, False)


def test_tmp_is_the_writable_emptydir() -> None:
    pod = _one("Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in _container()["volumeMounts"]}
    assert set(mounts) == {"/tmp"}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert all(set(v) <= {"name", "emptyDir"} for v in volumes.values()), "only emptyDirs"


def test_ports_and_probes() -> None:
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"healthz": 8080, "metrics": 9100}
    for probe_name in ("livenessProbe", "readinessProbe"):
        probe = container[probe_name]
        get = probe["httpGet"]
        assert get["path"] == "/healthz"
        port = get["port"]
        assert (ports[port] if isinstance(port, str) else port) == 8080
        assert get.get("scheme", "HTTP") == "HTTP"
        assert probe["timeoutSeconds"] >= 1
        assert probe["periodSeconds"] >= probe["timeoutSeconds"]


def test_resources() -> None:
    resources = _container()["resources"]
    assert resources["requests"] == {"cpu": "100m", "memory": "128Mi"}
    # Memory: a hard limit. CPU: one whole core (deployment.yaml and manifests/README.md
    # say why not 500m).
    assert resources["limits"] == {"cpu": "1", "memory": "256Mi"}


@pytest.mark.parametrize(
    ("asset", "source"),
    [
        ("lib.sh", "scripts/lib.sh"),
        ("crds/throttlepolicy.yaml", "crds/throttlepolicy.yaml"),
        ("crds/throttlerecommendation.yaml", "crds/throttlerecommendation.yaml"),
        ("namespace.yaml", "manifests/namespace.yaml"),
        ("rbac.yaml", "manifests/rbac.yaml"),
    ],
)
def test_sandbox_assets_are_copies_of_the_checkout(asset: str, source: str) -> None:
    # The package carries what the demo installs, so it runs from a wheel; the checkout's
    # files stay the source.
    shipped = (ASSETS / asset).read_bytes()
    assert shipped == (ROOT / source).read_bytes(), f"cp {source} {ASSETS / asset}"


def test_the_wheel_ships_the_sandbox_assets() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["unthrottle"]
    package = ASSETS.parents[1]
    shipped = {p for pattern in patterns for p in package.glob(pattern)}
    assert {p for p in ASSETS.rglob("*") if p.is_file()} <= shipped
