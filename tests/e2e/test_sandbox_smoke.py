"""The e2e harness itself: a real API server takes our CRDs, defaults and validates them,
and the controller manager turns a Deployment into a ReplicaSet.

Starts the loopback sandbox (``scripts/kube-sandbox.sh``), or uses the cluster named by
``UNTHROTTLE_E2E_KUBECONFIG``. A sandbox that cannot start fails these tests; it never
skips them.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from unthrottle.sandbox.kube import KubeSandbox, wait_for

pytestmark = pytest.mark.e2e

CRDS = Path(__file__).resolve().parents[2] / "crds"


def _policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "unthrottle.dev/v1alpha1",
        "kind": "ThrottlePolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_minimal_policy_is_defaulted_by_the_api_server(kube: KubeSandbox) -> None:
    example = yaml.safe_load((CRDS / "examples" / "tp-minimal.yaml").read_text())
    assert example["spec"] == {}
    name = f"smoke-{uuid.uuid4().hex[:8]}"
    example["metadata"]["name"] = name
    kube.apply_manifest(example)
    try:
        stored = kube.get("throttlepolicy", name)
        assert stored is not None
        spec = stored["spec"]
        assert spec["tier"] == "production"
        assert spec["mode"] == "Recommend"
        assert spec["window"] == "7d"
        assert spec["interval"] == "10m"
        assert spec["throttleTarget"] == 0.05
        # Nested objects defaulted to {} get their own children's defaults.
        assert spec["cpu"]["limitPolicy"] == "Ratio"
        assert spec["cpu"]["minRequest"] == "10m"
    finally:
        kube.kubectl("delete", "throttlepolicy", name, check=False)


def test_invalid_tier_is_rejected_naming_the_field(kube: KubeSandbox) -> None:
    done = kube.kubectl(
        "create", "-f", "-", stdin=yaml.safe_dump(_policy("gold", {"tier": "gold"})), check=False
    )
    assert done.returncode != 0
    assert "spec.tier" in done.stderr
    assert "gold" in done.stderr
    assert kube.get("throttlepolicy", "gold") is None


def test_deployment_gets_a_replicaset(kube: KubeSandbox, namespace: str) -> None:
    kube.kubectl("create", "deployment", "web", "--image=registry.invalid/web:1", "-n", namespace)
    deployment = kube.get("deployment", "web", namespace)
    assert deployment is not None

    def owned_replicaset() -> dict[str, Any] | None:
        listed = kube.kubectl_json("get", "replicasets", "-n", namespace, "-o", "json")
        for rs in listed["items"]:
            owners = rs["metadata"].get("ownerReferences", [])
            if any(o["uid"] == deployment["metadata"]["uid"] for o in owners):
                return dict(rs)
        return None

    rs = wait_for(owned_replicaset, timeout=60, what="the Deployment's ReplicaSet")
    assert rs["spec"]["replicas"] == 1
