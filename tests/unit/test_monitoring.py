"""manifests/monitoring/, read as files: one source of truth for the rules, and only the
series a default kube-prometheus-stack keeps.

The plain rule file must hold exactly the PrometheusRule's groups (fix: run
``scripts/monitoring-rules``); the kustomization installs the rule, the PodMonitor and the
dashboard ConfigMap (with the Grafana sidecar's label); every expression leaves out the
pause container and the pod cgroup and never names a series the chart drops.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "manifests" / "monitoring"
CADVISOR = ("container_cpu_cfs_throttled_periods_total", "container_cpu_cfs_periods_total",
            "container_cpu_usage_seconds_total")  # fmt: skip


def _rule() -> dict[str, Any]:
    data = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    assert isinstance(data, dict)
    return data


def _rules() -> list[dict[str, Any]]:
    return [rule for group in _rule()["spec"]["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((MONITORING / "dashboards" / "unthrottle.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_plain_rule_file_holds_the_prometheusrule_groups() -> None:
    plain = yaml.safe_load((MONITORING / "rules" / "unthrottle.rules.yaml").read_text())
    assert plain == {"groups": _rule()["spec"]["groups"]}, "run scripts/monitoring-rules"


def test_kustomization_installs_rule_podmonitor_and_dashboard() -> None:
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["prometheusrule.yaml", "podmonitor.yaml"]
    (generator,) = kustomization["configMapGenerator"]
    assert generator["files"] == ["dashboards/unthrottle.json"]
    assert kustomization["generatorOptions"]["labels"]["grafana_dashboard"] == "1"
    for entry in kustomization["resources"]:
        (document,) = yaml.safe_load_all((MONITORING / entry).read_text())
        assert document["metadata"]["namespace"] == "unthrottle-system"
        assert document["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    podmonitor = yaml.safe_load((MONITORING / "podmonitor.yaml").read_text())
    (endpoint,) = podmonitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "metrics" and endpoint["honorLabels"] is True


def test_every_alert_has_a_severity_and_says_what_to_do() -> None:
    alerts = [r for r in _rules() if "alert" in r]
    assert len(alerts) == 8
    for alert in alerts:
        assert alert["labels"]["severity"] in {"info", "warning", "critical"}, alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
    documented = (ROOT / "docs" / "observability.md").read_text()
    for alert in alerts:
        assert f"`{alert['alert']}`" in documented, alert["alert"]


def test_expressions_use_only_default_series_and_skip_pod_cgroups() -> None:
    exprs = [r["expr"] for r in _rules()] + _dashboard_exprs()
    for expr in exprs:
        assert "container_spec_" not in expr and "cfs_throttled_seconds" not in expr, expr
        for selector in re.findall(r"(\w+)\{([^}]*)\}", expr):
            if selector[0] in CADVISOR:
                assert 'container!=""' in selector[1] and 'container!="POD"' in selector[1], expr
