"""Fixtures of the e2e tests: one real control plane for the session, a namespace per test.

``kube`` starts the loopback sandbox (``scripts/kube-sandbox.sh``: etcd, kube-apiserver and
kube-controller-manager) with the project's CRDs applied, or attaches to the cluster named
by ``UNTHROTTLE_E2E_KUBECONFIG``. A sandbox that cannot start fails the tests that need it,
with the component's log; it never skips them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from unthrottle.sandbox.kube import KubeSandbox, KubeSandboxError

ROOT = Path(__file__).resolve().parents[2]
CRD_NAMES = ("throttlepolicies.unthrottle.dev", "throttlerecommendations.unthrottle.dev")


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeSandbox]:
    sandbox = KubeSandbox.from_env(tmp_path_factory.mktemp("kube"))
    try:
        sandbox.start()
        failure = None
    except KubeSandboxError as exc:
        failure = str(exc)
    if failure is not None:  # outside the except block: no chained traceback in the report
        pytest.fail(f"the Kubernetes sandbox did not start:\n{failure}", pytrace=False)
    try:
        sandbox.apply(ROOT / "crds")
        sandbox.wait_crds_established(*CRD_NAMES)
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def namespace(kube: KubeSandbox) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    kube.kubectl("create", "namespace", name)
    yield name
    kube.kubectl("delete", "namespace", name, "--wait=false", check=False)
