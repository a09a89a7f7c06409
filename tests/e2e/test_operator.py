"""The operator on a real control plane: ``unthrottle run`` as a process, under its RBAC.

One module fixture sets the stage once: the manifests' namespace and RBAC (the real
ClusterRole, so every call the operator makes is checked by the API server), one
namespace per test with Deployments built from the simulator's scenarios, their pods
marked Running and Ready (no kubelet runs here), the scenarios' series rendered for those
real pod names over the last two hours into one Prometheus, and one operator process
authenticated as ``system:serviceaccount:unthrottle-system:unthrottle``.

Each test then creates its own ThrottlePolicy (``window: 1h``, inside the data), selecting
its namespaces by the label ``e2e.unthrottle.dev/case``, and waits for the pass to show in
``status.observedGeneration``.

Another pass, now: :func:`next_pass` changes a harmless field of the policy's spec
(``interval``, 10m ↔ 11m). That bumps ``metadata.generation``, kopf's ``on.update``
handler runs a pass at once, and the pass writes the new generation to
``status.observedGeneration``; no waiting for the timer.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from unthrottle.model.quantity import parse_millicores
from unthrottle.sandbox.kube import KubeSandbox, wait_for
from unthrottle.sandbox.prometheus import PrometheusServer, free_port
from unthrottle.sim.openmetrics import write_openmetrics
from unthrottle.sim.scenarios import Scenario, deployment_manifest, scenario

_LOG_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
UNTHROTTLE = Path(sys.executable).with_name("unthrottle")
CASE_LABEL = "e2e.unthrottle.dev/case"
MODULE_LABEL = "e2e.unthrottle.dev/module"  # on this module's namespaces and policies
AUTO_PATCH = "unthrottle.dev/auto-patch"
API_VERSION = "unthrottle.dev/v1alpha1"
STEP_MS = 30_000
HOUR_MS = 3_600_000

RECOMMENDATION = "unthrottle.dev/recommendation"
PREVIOUS = "unthrottle.dev/previous-resources"
LAST_PATCHED = "unthrottle.dev/last-patched"
ROLLBACK = "unthrottle.dev/rollback"
BURST = "unthrottle.dev/cpu-burst-us"
REVISION = "deployment.kubernetes.io/revision"


@dataclass(frozen=True)
class Workload:
    case: str  # the value of CASE_LABEL on its namespace
    namespace: str
    scenario: str
    env: tuple[tuple[str, str], ...] = ()
    auto_patch: bool = False  # the namespace starts labelled auto-patch=enabled

    @property
    def name(self) -> str:
        return scenario(self.scenario).deployment


RECOMMEND = Workload("recommend", "op-recommend", "quota-bound")
AUTO_ON = Workload("autopatch", "op-auto-on", "quota-bound", auto_patch=True)
AUTO_OFF = Workload("autopatch", "op-auto-off", "quota-bound")
HEALTHY = Workload("hysteresis", "op-healthy", "healthy", auto_patch=True)
COOLDOWN = Workload("cooldown", "op-cooldown", "quota-bound", auto_patch=True)
WORKERS_ENV = (("LOG_LEVEL", "info"), ("WEB_CONCURRENCY", "1"), ("TZ", "UTC"))
WORKERS = Workload("workers", "op-workers", "gil-threads", WORKERS_ENV, auto_patch=True)
PROM_DOWN = Workload("promdown", "op-promdown", "quota-bound", auto_patch=True)
GC = Workload("gc", "op-gc", "quota-bound")
ROLLBACK_CASE = Workload("rollback", "op-rollback", "gil-threads", WORKERS_ENV, auto_patch=True)
WORKLOADS = (
    RECOMMEND,
    AUTO_ON,
    AUTO_OFF,
    HEALTHY,
    COOLDOWN,
    WORKERS,
    PROM_DOWN,
    GC,
    ROLLBACK_CASE,
)


def workload_manifest(w: Workload) -> dict[str, Any]:
    env = [{"name": k, "value": v} for k, v in w.env]
    return deployment_manifest(
        scenario(w.scenario).with_changes(replicas=1), namespace=w.namespace, env=env
    )


# --------------------------------------------------------------------------- the stage


@dataclass
class Operator:
    kube: KubeSandbox
    prometheus: PrometheusServer
    process: subprocess.Popen[bytes]
    log: Path
    health_port: int
    metrics_port: int

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def rolled_out(d: dict[str, Any]) -> bool:
    status = d.get("status") or {}
    replicas = d["spec"].get("replicas", 1)
    return bool(
        status.get("observedGeneration", 0) >= d["metadata"]["generation"]
        and status.get("replicas", 0) == replicas
        and status.get("updatedReplicas", 0) == replicas
        and status.get("availableReplicas", 0) == replicas
    )


def settle(kube: KubeSandbox, w: Workload, timeout: float = 60.0) -> dict[str, Any]:
    """Finish the Deployment's rollout, standing in for a kubelet; the rolled-out object."""

    def probe() -> dict[str, Any] | None:
        kube.mark_pods_ready(w.namespace)
        d = kube.get("deployment", w.name, w.namespace)
        return d if d is not None and rolled_out(d) else None

    return wait_for(probe, timeout=timeout, interval=0.5, what=f"{w.namespace}/{w.name} rollout")


@pytest.fixture(scope="module")
def stage(kube: KubeSandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    work = tmp_path_factory.mktemp("operator")
    kube.apply(MANIFESTS / "namespace.yaml")
    kube.apply(MANIFESTS / "rbac.yaml")
    started: dict[str, Any] = {}  # what to stop, as soon as it runs
    try:
        yield _start(kube, work, started)
    finally:
        # The other e2e modules share the cluster and list every namespace: leave nothing.
        # Policies first, while the operator runs (kopf's finalizer, if any, is removed).
        selector = f"{MODULE_LABEL}=operator"
        kube.kubectl("delete", "throttlepolicies", "-l", selector, "--timeout=60s", check=False)
        kube.kubectl("delete", "namespaces", "-l", selector, "--timeout=120s", check=False)
        process = started.get("operator")
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if "prometheus" in started:
            started["prometheus"].stop()


def _start(kube: KubeSandbox, work: Path, started: dict[str, Any]) -> Operator:
    for namespace in sorted({w.namespace for w in WORKLOADS}):
        case = next(w for w in WORKLOADS if w.namespace == namespace)
        labels = {CASE_LABEL: case.case, MODULE_LABEL: "operator"}
        if case.auto_patch:
            labels[AUTO_PATCH] = "enabled"
        kube.apply_manifest(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": labels},
            }
        )
    items = [workload_manifest(w) for w in WORKLOADS]
    kube.kubectl(
        "create", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
    )
    # The pods the controller-manager created, Running and Ready: Prometheus holds series
    # for exactly these names.
    scenarios: list[Scenario] = []
    for w in WORKLOADS:
        settle(kube, w, timeout=120)
        pods = kube.kubectl_json("get", "pods", "-n", w.namespace, "-o", "json")["items"]
        assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
        pod = pods[0]["metadata"]
        replicaset = next(r["name"] for r in pod["ownerReferences"] if r["kind"] == "ReplicaSet")
        scenarios.append(
            scenario(w.scenario).with_changes(
                namespace=w.namespace, replicas=1, pods=((replicaset, pod["name"]),)
            )
        )
    end = int(time.time() * 1000) // STEP_MS * STEP_MS
    data = work / "series.om"
    with data.open("w") as out:
        write_openmetrics(out, scenarios, end - 2 * HOUR_MS, end, step_ms=STEP_MS)
    prometheus = started["prometheus"] = PrometheusServer.with_data(work / "prometheus", [data])
    log = work / "operator.log"
    health_port, metrics_port = free_port(), free_port()
    with log.open("wb") as handle:
        process = subprocess.Popen(
            [
                str(UNTHROTTLE),
                "run",
                *("--kubeconfig", str(kube.operator_kubeconfig)),
                *("--prometheus-url", prometheus.url),
                *("--health-port", str(health_port)),
                *("--metrics-port", str(metrics_port)),
                *("--bind", "127.0.0.1"),
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=work,
        )
    started["operator"] = process
    operator = Operator(kube, prometheus, process, log, health_port, metrics_port)
    deadline = time.monotonic() + 60
    while _http_status(health_port, "/healthz") != 200:
        assert process.poll() is None, f"the operator exited:\n{operator.log_tail()}"
        assert time.monotonic() < deadline, f"no /healthz in 60 s:\n{operator.log_tail()}"
        time.sleep(0.2)
    return operator


@pytest.fixture
def operator(stage: Operator) -> Iterator[Operator]:
    """The module's operator. Its log is printed at teardown, which pytest shows only for
    a test that failed."""
    yield stage
    print(f"--- operator log ({stage.log}), last lines:\n{stage.log_tail()}")


def _http_status(port: int, path: str) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
            return int(answer.status)
    except OSError:
        return None


def _http_text(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
        return str(answer.read().decode())


# --------------------------------------------------------------------------- policies


def policy_manifest(name: str, case: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ThrottlePolicy",
        "metadata": {"name": name, "labels": {MODULE_LABEL: "operator"}},
        "spec": {
            "window": "1h",
            "interval": "10m",
            "namespaceSelector": {"matchLabels": {CASE_LABEL: case}},
            **spec,
        },
    }


def get_policy(kube: KubeSandbox, name: str) -> dict[str, Any]:
    policy = kube.get("throttlepolicy", name)
    assert policy is not None, f"ThrottlePolicy {name} is gone"
    return policy


def wait_pass(kube: KubeSandbox, name: str, timeout: float = 60.0) -> dict[str, Any]:
    """The policy once a pass has seen its current generation."""

    def probe() -> dict[str, Any] | None:
        policy = get_policy(kube, name)
        observed = (policy.get("status") or {}).get("observedGeneration")
        return policy if observed == policy["metadata"]["generation"] else None

    return wait_for(probe, timeout=timeout, what=f"a pass of ThrottlePolicy {name}")


def create_policy(kube: KubeSandbox, body: dict[str, Any]) -> dict[str, Any]:
    kube.kubectl("create", "-f", "-", stdin=json.dumps(body))
    return wait_pass(kube, body["metadata"]["name"])


def next_pass(kube: KubeSandbox, name: str) -> dict[str, Any]:
    """Run another pass now: a spec change (generation bump) triggers kopf's on.update."""
    interval = get_policy(kube, name)["spec"].get("interval")
    new = "11m" if interval == "10m" else "10m"
    kube.kubectl(
        "patch",
        "throttlepolicy",
        name,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"interval": new}}),
    )
    return wait_pass(kube, name)


def conditions(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (policy.get("status") or {}).get("conditions") or []}


def deployment(kube: KubeSandbox, w: Workload) -> dict[str, Any]:
    d = kube.get("deployment", w.name, w.namespace)
    assert d is not None, f"Deployment {w.namespace}/{w.name} is gone"
    return d


def trec(kube: KubeSandbox, w: Workload) -> dict[str, Any]:
    t = kube.get("throttlerecommendation", w.name, w.namespace)
    assert t is not None, f"no ThrottleRecommendation {w.namespace}/{w.name}"
    return t


def container(d: dict[str, Any], name: str) -> dict[str, Any]:
    containers = d["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def events(kube: KubeSandbox, w: Workload, reason: str) -> list[dict[str, Any]]:
    items = kube.kubectl_json("get", "events", "-n", w.namespace, "-o", "json")["items"]
    return [
        e
        for e in items
        if e.get("reason") == reason
        and e["involvedObject"].get("kind") == "Deployment"
        and e["involvedObject"].get("name") == w.name
    ]


def without_owned_fields(d: dict[str, Any]) -> dict[str, Any]:
    """The Deployment without what unthrottle may change (and what the server bumps)."""
    d = copy.deepcopy(d)
    d.pop("status", None)
    metadata = d["metadata"]
    for key in ("resourceVersion", "generation", "managedFields"):
        metadata.pop(key, None)
    annotations = metadata.get("annotations") or {}
    for key in (RECOMMENDATION, PREVIOUS, LAST_PATCHED, REVISION):
        annotations.pop(key, None)
    if not annotations:
        metadata.pop("annotations", None)
    template = d["spec"]["template"]
    template_annotations = (template.get("metadata") or {}).get("annotations") or {}
    template_annotations.pop(BURST, None)
    if not template_annotations:
        (template.get("metadata") or {}).pop("annotations", None)
    for c in template["spec"]["containers"]:
        c.pop("resources", None)
        c["env"] = [e for e in c.get("env") or [] if e["name"] != "WEB_CONCURRENCY"]
        if not c["env"]:
            c.pop("env")
    return d


# --------------------------------------------------------------------------- 1. Recommend


def test_recommend_mode_annotates_and_writes_trec(operator: Operator) -> None:
    kube, w = operator.kube, RECOMMEND
    before = deployment(kube, w)
    policy = create_policy(kube, policy_manifest("e2e-recommend", w.case, mode="Recommend"))

    d = deployment(kube, w)
    # (A Deployment's generation counts annotation changes too: compare the spec.)
    assert d["spec"] == before["spec"]
    annotation = json.loads(d["metadata"]["annotations"][RECOMMENDATION])
    assert annotation["policy"] == "e2e-recommend"
    assert annotation["tier"] == "production"
    app = annotation["containers"]["app"]
    assert app["reason"] is None
    assert parse_millicores(app["cpuRequest"]) > 300  # quota-bound at 300m wants more
    assert parse_millicores(app["cpuLimit"]) >= parse_millicores(app["cpuRequest"])
    assert {"memoryRequest", "memoryLimit", "cpuBurstUs", "webConcurrency"} <= set(app)
    # What is recommended, not why: the explanation and projection live in the trec.
    assert not {"explanation", "projectedThrottleRatio"} & set(app)
    assert "quota-bound" in app["diagnosis"]

    t = trec(kube, w)
    (owner,) = t["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (
        "Deployment",
        w.name,
        d["metadata"]["uid"],
    )
    assert owner["controller"] is True
    summary = t["status"]["summary"]
    assert summary["action"] == "Recommended"
    assert summary["container"] == "app"
    assert summary["cpuRequest"] == f"300m→{app['cpuRequest']}"
    assert summary["cpuLimit"] == f"300m→{app['cpuLimit']}"
    assert "→" in summary["throttle"]
    assert t["status"]["policy"] == "e2e-recommend"
    assert t["spec"]["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": w.name}

    table = kube.kubectl("get", "trec", "-A").stdout.splitlines()
    columns = "NAMESPACE NAME KIND TIER THROTTLE CPU REQ CPU LIMIT BURST MEMORY WORKERS ACTION AGE"
    assert table[0].split() == columns.split(), table[0]
    row = next(line for line in table if line.split()[:2] == [w.namespace, w.name])
    assert "production" in row and "Recommended" in row and "→" in row, row
    assert f"300m→{app['cpuRequest']}" in row, row

    tp = kube.kubectl("get", "tp", "e2e-recommend").stdout.splitlines()
    header = "NAME MODE TIER READY REASON WORKLOADS THROTTLED PATCHED AGE"
    assert tp[0].split() == header.split(), tp[0]
    assert tp[1].split()[:8] == [
        *("e2e-recommend", "Recommend", "production", "True", "Reconciled"),
        *("1", "1", "0"),
    ]

    status = policy["status"]
    assert status["observedGeneration"] == policy["metadata"]["generation"]
    cond = conditions(policy)
    assert cond["Ready"]["status"] == "True", cond
    assert cond["PrometheusReachable"]["status"] == "True", cond
    assert status["counts"] == {
        "workloads": 1,
        "throttled": 1,
        "recommended": 1,
        "patched": 0,
        "skipped": 0,
        "settling": 0,
    }
    (top,) = status["topOffenders"]
    assert (top["namespace"], top["name"], top["container"]) == (w.namespace, w.name, "app")
    assert top["throttleRatio"] > 0.5


# --------------------------------------------------------------------------- 2. AutoPatch


def test_autopatch_only_labelled_namespaces_and_only_owned_fields(operator: Operator) -> None:
    kube = operator.kube
    on_before, off_before = deployment(kube, AUTO_ON), deployment(kube, AUTO_OFF)
    name = "e2e-autopatch"
    # cooldown 0s: only settling holds the next pass below.
    policy = create_policy(
        kube, policy_manifest(name, AUTO_ON.case, mode="AutoPatch", patch={"cooldown": "0s"})
    )
    assert policy["status"]["counts"]["patched"] == 1, policy["status"]

    on = deployment(kube, AUTO_ON)
    off = deployment(kube, AUTO_OFF)
    # The unlabelled namespace: annotated, nothing else.
    assert off["spec"] == off_before["spec"]
    assert RECOMMENDATION in off["metadata"]["annotations"]
    assert PREVIOUS not in off["metadata"]["annotations"]
    assert trec(kube, AUTO_OFF)["status"]["summary"]["action"] == "Recommended"
    # The labelled one: patched, and only unthrottle's fields differ.
    assert on["spec"]["template"] != on_before["spec"]["template"]
    assert without_owned_fields(on) == without_owned_fields(on_before)
    was, now = container(on_before, "app"), container(on, "app")
    assert now["resources"] != was["resources"]
    assert parse_millicores(now["resources"]["requests"]["cpu"]) > 300
    annotations = on["metadata"]["annotations"]
    assert json.loads(annotations[PREVIOUS]) == {
        "burst": None,
        "containers": {"app": {"env": None, "resources": was["resources"]}},
    }
    assert annotations[LAST_PATCHED].endswith("Z")
    assert on["spec"]["template"]["metadata"]["annotations"][BURST].isdigit()
    assert not any(k.startswith("kopf") or "last-handled" in k for k in annotations)
    assert trec(kube, AUTO_ON)["status"]["summary"]["action"] == "Patched"
    assert events(kube, AUTO_ON, "Patched"), "no Patched event on the Deployment"

    # The next pass reads the same window: no pod has run with the patched resources yet,
    # so the old pods' throttling is not charged to them and nothing more is patched.
    patched = settle(kube, AUTO_ON)
    policy = next_pass(kube, name)
    assert deployment(kube, AUTO_ON)["spec"] == patched["spec"]
    assert policy["status"]["counts"]["patched"] == 0
    (settling,) = trec(kube, AUTO_ON)["status"]["containers"]
    assert settling["action"] == "Settling"
    assert settling["reason"].startswith("no pod has run with cpu "), settling["reason"]
    assert settling["reason"].endswith("; 1 earlier configuration seen"), settling["reason"]


# --------------------------------------------------------------------------- 3. guardrails


def test_hysteresis_leaves_a_right_sized_deployment_alone(operator: Operator) -> None:
    kube, w = operator.kube, HEALTHY
    before = deployment(kube, w)
    policy = create_policy(kube, policy_manifest("e2e-hysteresis", w.case, mode="AutoPatch"))
    after = deployment(kube, w)
    assert after["spec"] == before["spec"]
    status = trec(kube, w)["status"]
    assert status["summary"]["action"] == "Skipped"
    (c,) = status["containers"]
    assert c["action"] == "Skipped"
    assert "minChange" in c["reason"], c["reason"]
    assert policy["status"]["counts"]["patched"] == 0
    assert policy["status"]["counts"]["skipped"] == 1
    assert events(kube, w, "Skipped"), "no Skipped event on the Deployment"


def test_the_pass_after_a_patch_waits_for_pods_of_the_new_configuration(
    operator: Operator,
) -> None:
    # Cooldown 24h (the default) and a window holding only the pods from before the patch:
    # settling is what holds the next pass, before the cooldown is even consulted.
    kube, w = operator.kube, COOLDOWN
    policy = create_policy(kube, policy_manifest("e2e-cooldown", w.case, mode="AutoPatch"))
    assert policy["status"]["counts"]["patched"] == 1, policy["status"]
    patched = settle(kube, w)  # no rollout in progress
    policy = next_pass(kube, "e2e-cooldown")
    after = deployment(kube, w)
    assert after["spec"] == patched["spec"]
    status = trec(kube, w)["status"]
    assert status["summary"]["action"] == "Settling"
    reason = status["containers"][0]["reason"]
    assert reason.startswith("no pod has run with"), reason
    assert policy["status"]["counts"]["patched"] == 0
    assert policy["status"]["counts"]["recommended"] == 0


# --------------------------------------------------------------------------- 4. workers


def test_web_concurrency_comes_from_the_downward_api(operator: Operator) -> None:
    kube, w = operator.kube, WORKERS
    whole_before = deployment(kube, w)
    before = container(whole_before, "app")
    policy = create_policy(
        kube,
        policy_manifest("e2e-workers", w.case, mode="AutoPatch", webConcurrency={"enabled": True}),
    )
    assert policy["status"]["counts"]["patched"] == 1, policy["status"]
    whole_after = deployment(kube, w)
    assert without_owned_fields(whole_after) == without_owned_fields(whole_before)
    after = container(whole_after, "app")
    assert after["env"] == [
        {"name": "LOG_LEVEL", "value": "info"},
        {
            "name": "WEB_CONCURRENCY",
            "valueFrom": {
                "resourceFieldRef": {
                    "containerName": "app",
                    "resource": "limits.cpu",
                    "divisor": "1",
                }
            },
        },
        {"name": "TZ", "value": "UTC"},
    ]
    limit = parse_millicores(after["resources"]["limits"]["cpu"])
    assert limit % 1000 == 0 and limit > parse_millicores(before["resources"]["limits"]["cpu"])
    assert parse_millicores(after["resources"]["requests"]["cpu"]) <= limit
    workers = trec(kube, w)["status"]["containers"][0]
    assert workers["action"] == "Patched"


# --------------------------------------------------------------------------- 5. invalid


def test_invalid_policies_are_rejected_or_reported(operator: Operator) -> None:
    kube = operator.kube
    gold = policy_manifest("e2e-gold", "nothing", tier="gold")
    done = kube.kubectl("create", "-f", "-", stdin=json.dumps(gold), check=False)
    assert done.returncode != 0
    assert "spec.tier" in done.stderr and "Unsupported value" in done.stderr, done.stderr
    assert kube.get("throttlepolicy", "e2e-gold") is None

    bounds = policy_manifest("e2e-bounds", "nothing", cpu={"minRequest": "2", "maxRequest": "500m"})
    policy = create_policy(kube, bounds)
    ready = conditions(policy)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidPolicy"), ready
    assert ready["message"].startswith("spec.cpu: "), ready
    assert "cpu.maxRequest" in ready["message"], ready

    short = policy_manifest("e2e-short-window", "nothing", window="1m")
    policy = create_policy(kube, short)
    ready = conditions(policy)["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "InvalidPolicy"), ready
    assert ready["message"] == "spec: window must be at least 5m", ready
    row = kube.kubectl("get", "tp", "e2e-short-window").stdout.splitlines()[1].split()
    assert row[3:5] == ["False", "InvalidPolicy"], row


def test_prometheus_is_not_called_reachable_before_it_answered(operator: Operator) -> None:
    # No namespace carries the case label: nothing in scope, nothing asked of Prometheus.
    url = f"http://127.0.0.1:{free_port()}"  # and nothing would answer there
    policy = create_policy(
        operator.kube, policy_manifest("e2e-nothing-asked", "nothing", prometheus={"url": url})
    )
    cond = conditions(policy)
    assert (cond["Ready"]["status"], cond["Ready"]["reason"]) == ("True", "Reconciled"), cond
    reachable = cond["PrometheusReachable"]
    assert (reachable["status"], reachable["reason"]) == ("Unknown", "NotQueried"), reachable
    assert reachable["message"] == "no Deployment in scope: nothing was asked of Prometheus"


# --------------------------------------------------------------------------- 6. no Prometheus


def test_prometheus_down_patches_nothing(operator: Operator) -> None:
    kube, w = operator.kube, PROM_DOWN
    before = deployment(kube, w)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    policy = create_policy(
        kube,
        policy_manifest(
            "e2e-promdown", w.case, mode="AutoPatch", prometheus={"url": url, "timeout": "2s"}
        ),
    )
    cond = conditions(policy)
    assert cond["PrometheusReachable"]["status"] == "False", cond
    assert url in cond["PrometheusReachable"]["message"], cond
    assert cond["Ready"]["status"] == "False", cond
    after = deployment(kube, w)
    after["metadata"].pop("managedFields", None)
    before["metadata"].pop("managedFields", None)
    assert after["metadata"] == before["metadata"]
    assert after["spec"] == before["spec"]
    assert kube.get("throttlerecommendation", w.name, w.namespace) is None


# --------------------------------------------------------------------------- 7. GC


def test_deleting_a_deployment_removes_its_trec(operator: Operator) -> None:
    kube, w = operator.kube, GC
    create_policy(kube, policy_manifest("e2e-gc", w.case))
    uid = deployment(kube, w)["metadata"]["uid"]
    assert trec(kube, w)["metadata"]["ownerReferences"][0]["uid"] == uid
    kube.kubectl("delete", "deployment", w.name, "-n", w.namespace, "--wait=false")
    # The garbage collector, not the operator (no pass runs): up to ~30 s after a CRD is new.
    wait_for(
        lambda: kube.get("throttlerecommendation", w.name, w.namespace) is None,
        timeout=90,
        interval=1,
        what="the garbage collector to delete the trec",
    )


# --------------------------------------------------------------------------- 8. rollback


def test_rollback_restores_the_previous_resources(operator: Operator) -> None:
    kube, w = operator.kube, ROLLBACK_CASE
    name = "e2e-rollback"
    before = deployment(kube, w)
    policy = create_policy(
        kube, policy_manifest(name, w.case, mode="AutoPatch", webConcurrency={"enabled": True})
    )
    assert policy["status"]["counts"]["patched"] == 1, policy["status"]
    patched = settle(kube, w)
    assert container(patched, "app") != container(before, "app")
    first = patched["metadata"]["annotations"][LAST_PATCHED]
    time.sleep(1.1)  # last-patched has a resolution of a second
    kube.kubectl("annotate", "deployment", w.name, "-n", w.namespace, f"{ROLLBACK}=true")
    next_pass(kube, name)
    after = deployment(kube, w)
    assert container(after, "app") == container(before, "app")
    assert after["spec"]["template"] == before["spec"]["template"]
    annotations = after["metadata"]["annotations"]
    assert ROLLBACK not in annotations
    assert annotations[LAST_PATCHED] > first
    assert events(kube, w, "RolledBack"), "no RolledBack event on the Deployment"
    # The same pass recommends from, and its trec shows, the restored resources.
    (status,) = trec(kube, w)["status"]["containers"]
    restored = container(before, "app")["resources"]
    assert status["current"]["cpuRequest"] == restored["requests"]["cpu"]
    assert status["current"]["cpuLimit"] == restored["limits"]["cpu"]
    assert status["current"]["webConcurrency"] == 1
    assert (
        json.loads(annotations[RECOMMENDATION])["containers"]["app"]["cpuRequest"]
        == (status["recommended"]["cpuRequest"])
    )


# --------------------------------------------------------------------------- 9. endpoints


def test_health_and_metrics_endpoints(operator: Operator) -> None:
    assert _http_status(operator.health_port, "/healthz") == 200
    metrics = _http_text(operator.metrics_port, "/metrics")
    assert "unthrottle_reconcile_duration_seconds" in metrics
    assert 'unthrottle_reconcile_duration_seconds_count{policy="e2e-recommend"}' in metrics
    assert 'unthrottle_prometheus_errors_total{policy="e2e-promdown"}' in metrics


def test_the_operator_was_never_forbidden(operator: Operator) -> None:
    # Every call above ran under manifests/rbac.yaml; a 403 anywhere is a gap in it.
    log = operator.log.read_text(errors="replace")
    assert operator.process.poll() is None, "the operator exited"
    # The timestamp's milliseconds can read 403: match only the message after it.
    messages = [_LOG_TIMESTAMP.sub("", line) for line in log.splitlines()]
    forbidden = [m for m in messages if re.search(r"\b403\b", m) or "orbidden" in m]
    assert not forbidden, "\n".join(forbidden[:20])
