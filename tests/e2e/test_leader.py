"""Two operator instances on a real API server: one leads, the other waits and takes over.

Both run ``unthrottle run`` as processes with the manifests' RBAC (the leader-election
Role included: every Lease call is checked by the API server) and short lease timings
(3 s duration, 2 s renew deadline, 0.5 s retry) so the test takes seconds. Their
identities are set through ``POD_NAME``, as the Deployment's downward API does.

Prometheus is a closed port: the passes fail to read it, and that is still a pass, which
writes ``status.observedGeneration`` (what shows who reconciles). The leader is killed
with SIGKILL, so it cannot release the Lease: the standby must wait out the duration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from unthrottle.sandbox.kube import OPERATOR_NAMESPACE, KubeSandbox, wait_for
from unthrottle.sandbox.prometheus import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
UNTHROTTLE = Path(sys.executable).with_name("unthrottle")
LEASE = "unthrottle"  # the one name the Role lets the operator get and update
DURATION, RENEW_DEADLINE, RETRY = 3.0, 2.0, 0.5
MODULE_LABEL = "e2e.unthrottle.dev/module"


class Instance:
    def __init__(self, kube: KubeSandbox, name: str, work: Path) -> None:
        self.name, self.health_port = name, free_port()
        self.log = work / f"{name}.log"
        env = {**os.environ, "POD_NAME": name}
        with self.log.open("wb") as handle:
            self.process = subprocess.Popen(
                [
                    str(UNTHROTTLE),
                    "run",
                    *("--kubeconfig", str(kube.operator_kubeconfig)),
                    *("--prometheus-url", f"http://127.0.0.1:{free_port()}"),
                    *("--health-port", str(self.health_port)),
                    *("--metrics-port", str(free_port())),
                    *("--bind", "127.0.0.1"),
                    *("--lease-duration", str(DURATION)),
                    *("--lease-renew-deadline", str(RENEW_DEADLINE)),
                    *("--lease-retry-period", str(RETRY)),
                ],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=work,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def healthy(self) -> bool:
        assert self.process.poll() is None, f"{self.name} exited:\n{self.text()[-4000:]}"
        try:
            url = f"http://127.0.0.1:{self.health_port}/healthz"
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def holder(kube: KubeSandbox) -> str | None:
    lease = kube.get("lease", LEASE, OPERATOR_NAMESPACE) or {}
    return (lease.get("spec") or {}).get("holderIdentity") or None


def observed(kube: KubeSandbox, policy: str) -> bool:
    body = kube.get("throttlepolicy", policy) or {"metadata": {}}
    generation = body["metadata"].get("generation")
    return bool((body.get("status") or {}).get("observedGeneration") == generation)


@pytest.fixture
def stage(kube: KubeSandbox, tmp_path: Path) -> Iterator[dict[str, Any]]:
    kube.apply(MANIFESTS / "namespace.yaml")
    kube.apply(MANIFESTS / "rbac.yaml")
    instances: list[Instance] = []
    policy = f"leader-{uuid.uuid4().hex[:6]}"
    try:
        yield {"instances": instances, "policy": policy, "work": tmp_path}
    finally:
        kube.kubectl("delete", "throttlepolicy", policy, "--timeout=30s", check=False)
        for instance in instances:
            instance.stop()
        for instance in instances:
            print(f"--- {instance.name}:\n{instance.text()[-3000:]}")


def test_one_instance_leads_and_the_standby_takes_over(
    kube: KubeSandbox, stage: dict[str, Any]
) -> None:
    instances, policy, work = stage["instances"], stage["policy"], stage["work"]
    a = Instance(kube, "op-a", work)
    instances.append(a)
    # A previous operator of the session released the Lease; a killed one expires first.
    wait_for(lambda: (holder(kube) or "").startswith("op-a-"), timeout=30, what="op-a leads")
    wait_for(a.healthy, timeout=30, what="op-a /healthz")
    b = Instance(kube, "op-b", work)
    instances.append(b)
    wait_for(b.healthy, timeout=30, what="op-b /healthz as a standby")
    wait_for(lambda: "standby: lease unthrottle held by op-a-" in b.text(), what="op-b waits")

    body = {
        "apiVersion": "unthrottle.dev/v1alpha1",
        "kind": "ThrottlePolicy",
        "metadata": {"name": policy, "labels": {MODULE_LABEL: "leader"}},
        "spec": {"namespaceSelector": {"matchLabels": {"e2e.unthrottle.dev/case": policy}}},
    }
    kube.kubectl("create", "-f", "-", stdin=json.dumps(body))
    wait_for(lambda: observed(kube, policy), what="a pass by the leader")
    assert f"policy {policy}:" in a.text()
    time.sleep(2 * RETRY)  # the standby would have had time to join in
    assert policy not in b.text(), "the standby reconciled"
    assert b.healthy()
    assert (holder(kube) or "").startswith("op-a-")

    # The leader dies without releasing: the standby takes over once the Lease expires.
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(timeout=10)
    killed = time.monotonic()
    wait_for(lambda: (holder(kube) or "").startswith("op-b-"), timeout=15, what="op-b leads")
    takeover = time.monotonic() - killed
    print(f"takeover after {takeover:.2f}s")
    assert takeover <= DURATION + 1.2 * RETRY + 1.0, f"took over after {takeover:.1f}s"

    kube.kubectl(
        "patch", "throttlepolicy", policy, "--type=merge", "-p", '{"spec": {"interval": "11m"}}'
    )
    wait_for(lambda: observed(kube, policy), what="a pass by the new leader")
    assert f"policy {policy}:" in b.text()
    wait_for(b.healthy, timeout=30, what="op-b /healthz as the leader")


def test_a_stopped_leader_releases_the_lease(kube: KubeSandbox, stage: dict[str, Any]) -> None:
    a = Instance(kube, "op-a", stage["work"])
    stage["instances"].append(a)
    wait_for(lambda: (holder(kube) or "").startswith("op-a-"), timeout=30, what="op-a leads")
    wait_for(a.healthy, timeout=30, what="op-a /healthz")
    a.stop()
    assert a.process.returncode == 0, a.text()[-3000:]
    assert holder(kube) is None
    assert "lease unthrottle released" in a.text()
