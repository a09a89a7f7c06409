"""The Recommend-only RBAC variant (``overlays/recommend-only/``) on a real API server.

Its ClusterRole, as the embedded kustomize builds it, is bound (under another name, so the
session's operator RBAC stays as it is) to a ServiceAccount of its own; ``kubectl auth
can-i`` shows it may read Deployments and not patch them. A pass written as that identity
(the plan from plain data, as in ``test_conflict.py``) writes the ThrottleRecommendation,
is refused the annotation (403) and says so in the policy's condition; an AutoPatch pass
is refused (:class:`PatchForbiddenError`, which the pass reports as ``PatchForbidden``)
and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.e2e.test_conflict import NAME, NOW, deployment, planned, policy_manifest

from unthrottle.model.names import RECOMMENDATION_ANNOTATION
from unthrottle.reconcile.apply import PatchForbiddenError, apply_plan
from unthrottle.reconcile.plan import plan_pass
from unthrottle.reconcile.snapshot import Instant, PolicyObject, parse_policy
from unthrottle.sandbox.kube import OPERATOR_NAMESPACE, KubeSandbox, wait_for
from unthrottle.sources.kubernetes import KubernetesSource

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
VARIANT = ROOT / "overlays" / "recommend-only"
ACCOUNT = "unthrottle-recommend-only-e2e"
USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{ACCOUNT}"


def _variant_role(kube: KubeSandbox) -> dict[str, Any]:
    built = [d for d in yaml.safe_load_all(kube.kubectl("kustomize", str(VARIANT)).stdout) if d]
    (role,) = [o for o in built if o["kind"] == "ClusterRole"]
    return dict(role)


@pytest.fixture(scope="module")
def identity(kube: KubeSandbox) -> Iterator[Path]:
    kube.apply(ROOT / "manifests" / "namespace.yaml")
    role = _variant_role(kube)
    role["metadata"] = {"name": ACCOUNT}
    account = {"name": ACCOUNT, "namespace": OPERATOR_NAMESPACE}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": ACCOUNT},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": ACCOUNT,
        },
        "subjects": [{"kind": "ServiceAccount", **account}],
    }
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": account}
    kube.apply_manifest(yaml.safe_dump_all([sa, role, binding]))
    try:
        yield kube.service_account_kubeconfig(OPERATOR_NAMESPACE, ACCOUNT, "recommend-only")
    finally:
        kube.kubectl("delete", "clusterrolebinding,clusterrole", ACCOUNT, check=False)
        kube.kubectl("delete", "sa", ACCOUNT, "-n", OPERATOR_NAMESPACE, check=False)


def can_i(kube: KubeSandbox, verb: str, resource: str, namespace: str) -> bool:
    done = kube.kubectl("auth", "can-i", verb, resource, "-n", namespace, "--as", USER, check=False)
    return done.stdout.strip() == "yes"


@pytest.fixture
def source(kube: KubeSandbox, namespace: str, identity: Path) -> Iterator[KubernetesSource]:
    kube.apply_manifest(deployment(namespace))
    wait_for(lambda: kube.get("deployment", NAME, namespace), what="the Deployment")
    kube.apply_manifest(policy_manifest(namespace))
    read_only = KubernetesSource.from_kubeconfig(str(identity))
    yield read_only
    read_only.close()
    kube.kubectl("delete", "throttlepolicy", namespace, "--wait=false", check=False)
    # Gone before the next module lists every namespace's Deployments (the namespace's
    # own deletion is not waited for).
    kube.kubectl("delete", "deployment", NAME, "-n", namespace, "--timeout=30s", check=False)


def test_variant_may_read_workloads_and_not_patch_them(
    kube: KubeSandbox, identity: Path, namespace: str
) -> None:
    for verb in ("get", "list", "watch"):
        assert can_i(kube, verb, "deployments.apps", namespace), verb
    for verb in ("patch", "update", "create", "delete"):
        assert not can_i(kube, verb, "deployments.apps", namespace), verb
    for kind in ("statefulsets.apps", "daemonsets.apps"):
        assert can_i(kube, "get", kind, namespace), kind
        for verb in ("patch", "update", "create", "delete"):
            assert not can_i(kube, verb, kind, namespace), (kind, verb)
    # Everything else of the operator is as in the default install.
    assert can_i(kube, "create", "throttlerecommendations.unthrottle.dev", namespace)
    assert can_i(kube, "patch", "throttlerecommendations.unthrottle.dev", namespace)


def _conditions(kube: KubeSandbox, name: str) -> dict[str, dict[str, Any]]:
    policy = kube.get("throttlepolicy", name) or {}
    return {c["type"]: c for c in (policy.get("status") or {}).get("conditions") or []}


def test_recommend_writes_the_trec_and_says_the_annotation_is_not_written(
    kube: KubeSandbox, namespace: str, source: KubernetesSource
) -> None:
    policy, snapshot = planned(source, namespace)
    policy = type(policy)(
        **{**vars(policy), "spec": policy.spec.model_copy(update={"mode": "Recommend"})}
    )
    plan = plan_pass(policy, snapshot, NOW)
    (workload,) = plan.workloads
    assert workload.patch is None and workload.annotations, workload.outcome
    apply_plan(source, plan, NOW)
    trec = kube.get("throttlerecommendation", NAME, namespace)
    assert trec is not None and trec["status"]["summary"]["action"] == "Recommended"
    d = kube.get("deployment", NAME, namespace) or {}
    assert RECOMMENDATION_ANNOTATION not in (d["metadata"].get("annotations") or {})
    condition = _conditions(kube, namespace)["DeploymentAnnotations"]
    assert (condition["status"], condition["reason"]) == ("False", "Forbidden")
    assert f"{namespace}/{NAME}" in condition["message"]
    assert condition["lastTransitionTime"] == NOW.text

    # The next pass, an hour later, reads the policy as written and is refused again: the
    # condition still says since when (its status has not changed), the pass's time moves.
    later = Instant.from_ms(NOW.ms + 3_600_000)
    again = parse_policy(kube.get("throttlepolicy", namespace) or {})
    assert isinstance(again, PolicyObject) and again.previous is not None
    again = type(again)(
        **{**vars(again), "spec": again.spec.model_copy(update={"mode": "Recommend"})}
    )
    apply_plan(source, plan_pass(again, snapshot, later), later)
    status = (kube.get("throttlepolicy", namespace) or {})["status"]
    kept = _conditions(kube, namespace)["DeploymentAnnotations"]
    assert (kept["status"], kept["lastTransitionTime"]) == ("False", NOW.text)
    assert status["lastRunTime"] == later.text


def test_autopatch_under_the_variant_is_refused_and_changes_nothing(
    kube: KubeSandbox, namespace: str, source: KubernetesSource
) -> None:
    policy, snapshot = planned(source, namespace)
    plan = plan_pass(policy, snapshot, NOW)
    assert plan.workloads[0].patch is not None
    with pytest.raises(PatchForbiddenError) as refused:
        apply_plan(source, plan, NOW)
    assert refused.value.status == 403
    assert "set spec.mode: Recommend" in str(refused.value)
    d = kube.get("deployment", NAME, namespace) or {}
    (c,) = d["spec"]["template"]["spec"]["containers"]
    assert c["resources"]["requests"]["cpu"] == "300m"
    assert "unthrottle.dev/previous-resources" not in (d["metadata"].get("annotations") or {})
