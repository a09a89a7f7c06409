"""``unthrottle report --kubeconfig``: the API server decides the scope and the configuration.

Prometheus holds the simulator's scenarios; the control plane holds Deployments of the same
names, whose labels, annotations and env the report must honour: the tier label, the
opt-out annotation, WEB_CONCURRENCY, a label selector, and a Deployment Prometheus has no
data for.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from unthrottle.cli import main
from unthrottle.model.quantity import parse_millicores
from unthrottle.sandbox.kube import KubeSandbox
from unthrottle.sandbox.prometheus import PrometheusFactory, PrometheusServer
from unthrottle.sim.openmetrics import iter_openmetrics
from unthrottle.sim.scenarios import all_scenarios, deployment_manifest, scenario

pytestmark = pytest.mark.e2e

HOUR_MS = 3_600_000
END_MS = 1_767_225_600_000
AT = str((END_MS - 1) / 1000)


@pytest.fixture(scope="module")
def prometheus(prometheus_factory: PrometheusFactory) -> PrometheusServer:
    chunks = iter_openmetrics(all_scenarios(), END_MS - 2 * HOUR_MS, END_MS)
    return prometheus_factory("report-kubeconfig", {"all.om": chunks})


@pytest.fixture(scope="module")
def cluster(kube: KubeSandbox) -> KubeSandbox:
    checkout, reports, frontend, indexer = (
        scenario(n) for n in ("quota-bound", "gil-threads", "healthy", "micro-burst")
    )
    objects = [
        deployment_manifest(checkout),
        deployment_manifest(reports, env=[{"name": "WEB_CONCURRENCY", "value": "1"}]),
        deployment_manifest(frontend, annotations={"unthrottle.dev/ignore": "true"}),
        deployment_manifest(indexer, labels={"unthrottle.dev/tier": "critical"}),
        # a Deployment Prometheus has never seen
        deployment_manifest(checkout.with_changes(deployment="newapp")),
    ]
    for namespace in sorted({o["metadata"]["namespace"] for o in objects}):
        kube.kubectl("create", "namespace", namespace, check=False)
    kube.apply_manifest({"apiVersion": "v1", "kind": "List", "items": objects})
    return kube


def report(
    capsys: pytest.CaptureFixture[str], prometheus: PrometheusServer, kube: KubeSandbox, *extra: str
) -> tuple[int, dict[str, Any], str]:
    code = main(
        [
            "report",
            *("--prometheus-url", prometheus.url, "--window", "2h", "--at", AT),
            *("--kubeconfig", str(kube.kubeconfig), "-o", "json"),
            *extra,
        ]
    )
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else {}), err


SCENARIO_NAMESPACES = {s.namespace for s in all_scenarios()}


def ours(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of this module's namespaces (other modules share the API server)."""
    return [w for w in document["workloads"] if w["namespace"] in SCENARIO_NAMESPACES]


def test_scope_configuration_and_overrides_come_from_the_api(
    cluster: KubeSandbox,
    prometheus: PrometheusServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Any,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("spec:\n  webConcurrency:\n    enabled: true\n")
    code, document, err = report(capsys, prometheus, cluster, "--policy", str(policy))
    assert code == 0, err
    rows = {w["name"]: w for w in ours(document)}
    assert "frontend" not in rows  # unthrottle.dev/ignore: "true"
    assert "ledger" not in rows  # in Prometheus, not in the cluster: not in scope
    assert set(rows) == {"checkout", "reports", "indexer", "newapp"}
    assert rows["indexer"]["tier"] == "critical"  # the Deployment's tier label
    assert rows["checkout"]["tier"] == "production"
    # WEB_CONCURRENCY=1 read from the Deployment's env, managed: workers = cores.
    reports = rows["reports"]
    assert reports["current"]["webConcurrency"] == 1
    limit = parse_millicores(reports["recommended"]["cpuLimit"])
    assert limit % 1000 == 0
    assert reports["recommended"]["webConcurrency"] == limit // 1000
    assert rows["newapp"]["reason"] == "missing-metrics"
    assert rows["newapp"]["recommended"] is None
    assert "workloads in" in err


def test_selector_narrows_the_scope(
    cluster: KubeSandbox, prometheus: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, document, err = report(capsys, prometheus, cluster, "--selector", "app=checkout")
    assert code == 0, err
    assert [w["name"] for w in ours(document)] == ["checkout"]


def test_selector_without_kubeconfig_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["report", "--prometheus-url", "http://127.0.0.1:9", "--selector", "app=x"])
    assert code == 2
    assert "--kubeconfig" in capsys.readouterr().err


def test_unreadable_kubeconfig_exits_5(
    prometheus: PrometheusServer, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    missing = tmp_path / "nope"
    code = main(["report", "--prometheus-url", prometheus.url, "--kubeconfig", str(missing)])
    assert code == 5
    assert "kubeconfig" in capsys.readouterr().err
