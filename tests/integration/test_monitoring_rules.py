"""The alerts and recording rules of manifests/monitoring/, run by the real ``promtool``.

``promtool check rules`` on the plain rule file, then ``promtool test rules`` with input
series that must fire each alert and series that must not: the pause container and pod
cgroup (``container="POD"``, ``""``), a healthy container, a small difference between
recommendation and configuration, a recommendation applied after two days, a healthy
operator. Only series a default kube-prometheus-stack keeps appear in the inputs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from unthrottle.sandbox.prometheus import require_binaries

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "manifests" / "monitoring" / "rules" / "unthrottle.rules.yaml"
RATIO = "namespace_pod_container:unthrottle_cpu_cfs_throttled_periods:ratio_rate5m"
USAGE_TO_LIMIT = "namespace_pod_container:unthrottle_cpu_usage_to_limit:ratio_rate5m"
OPERATOR = {"job": "unthrottle-system/unthrottle", "instance": "10.0.0.9:9100"}


def _labels(**labels: str) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _container(
    pod: str, container: str, *, throttled_per_min: int, usage_per_min: float, limit: str | None
) -> list[dict[str, str]]:
    """cAdvisor and kube-state-metrics series of one container for 30 minutes at 1m: 600
    CFS periods a minute (100 ms), ``throttled_per_min`` of them throttled."""
    where = _labels(namespace="shop", pod=pod, container=container, job="kubelet")
    series = [
        {"series": f"container_cpu_cfs_periods_total{where}", "values": "0+600x30"},
        {
            "series": f"container_cpu_cfs_throttled_periods_total{where}",
            "values": f"0+{throttled_per_min}x30",
        },
        {"series": f"container_cpu_usage_seconds_total{where}", "values": f"0+{usage_per_min}x30"},
    ]
    if limit is not None:
        ksm = _labels(
            namespace="shop",
            pod=pod,
            container=container,
            resource="cpu",
            unit="core",
            job="kube-state-metrics",
        )
        series.append(
            {"series": f"kube_pod_container_resource_limits{ksm}", "values": f"{limit}x30"}
        )
    return series


def _throttling_case() -> dict[str, Any]:
    series = [
        # checkout: quota-bound, 60% of periods throttled at 95% of a 1-core limit.
        *_container("checkout-1", "app", throttled_per_min=360, usage_per_min=57, limit="1"),
        # Its pause container and pod cgroup: must never be reported.
        *_container("checkout-1", "POD", throttled_per_min=360, usage_per_min=0.01, limit=None),
        *_container("checkout-1", "", throttled_per_min=360, usage_per_min=57, limit=None),
        # reports: throttled 20% at 10% of its limit (GIL threads bursting).
        *_container("reports-1", "app", throttled_per_min=120, usage_per_min=12, limit="2"),
        # frontend: 1% throttled at 40% of its limit.
        *_container("frontend-1", "app", throttled_per_min=6, usage_per_min=24, limit="1"),
        # indexer: 30% throttled at 45%: throttled, but not the low-usage signature.
        *_container("indexer-1", "app", throttled_per_min=180, usage_per_min=13.5, limit="0.5"),
    ]

    def alert(pod: str, severity: str) -> dict[str, Any]:
        return {
            "exp_labels": {
                "severity": severity,
                "namespace": "shop",
                "pod": pod,
                "container": "app",
            }
        }

    return {
        "interval": "1m",
        "input_series": series,
        "promql_expr_test": [
            {
                "expr": RATIO + '{pod="checkout-1"}',
                "eval_time": "20m",
                "exp_samples": [
                    {
                        "labels": RATIO
                        + _labels(namespace="shop", pod="checkout-1", container="app"),
                        "value": 0.6,
                    }
                ],
            },
            {
                "expr": USAGE_TO_LIMIT + '{pod="reports-1"}',
                "eval_time": "20m",
                "exp_samples": [
                    {
                        "labels": USAGE_TO_LIMIT
                        + _labels(namespace="shop", pod="reports-1", container="app"),
                        "value": 0.1,
                    }
                ],
            },
        ],
        "alert_rule_test": [
            # Pending before 10 minutes of throttling, firing after.
            {"eval_time": "8m", "alertname": "UnthrottleCPUThrottled", "exp_alerts": []},
            {
                "eval_time": "20m",
                "alertname": "UnthrottleCPUThrottled",
                "exp_alerts": [alert("checkout-1", "warning"), alert("indexer-1", "warning")],
            },
            {
                "eval_time": "20m",
                "alertname": "UnthrottleCPUThrottledCritical",
                "exp_alerts": [alert("checkout-1", "critical")],
            },
            {
                "eval_time": "25m",
                "alertname": "UnthrottleThrottledAtLowUsage",
                "exp_alerts": [alert("reports-1", "warning")],
            },
        ],
    }


def _recommendation_case() -> dict[str, Any]:
    def gauges(workload: str, current: str, recommended: str) -> list[dict[str, str]]:
        where = _labels(
            policy="production",
            namespace="shop",
            kind="Deployment",
            workload=workload,
            container="app",
            **OPERATOR,
        )
        return [
            {"series": f"unthrottle_container_cpu_limit_cores{where}", "values": current},
            {"series": f"unthrottle_recommended_cpu_limit_cores{where}", "values": recommended},
        ]

    return {
        # Scraped every minute for 81 hours (a gap longer than the lookback would reset
        # the 3-day `for`).
        "interval": "1m",
        "input_series": [
            *gauges("checkout", "0.3x4860", "1.8x4860"),  # never applied
            *gauges("frontend", "0.3x4860", "0.32x4860"),  # within 10%: nothing to apply
            *gauges("catalog", "0.5x2880 2x1980", "2x4860"),  # applied after two days
        ],
        "alert_rule_test": [
            {
                "eval_time": "70h",
                "alertname": "UnthrottleRecommendationNotApplied",
                "exp_alerts": [],
            },
            {
                "eval_time": "80h",
                "alertname": "UnthrottleRecommendationNotApplied",
                "exp_alerts": [
                    {
                        "exp_labels": {
                            "severity": "info",
                            "policy": "production",
                            "namespace": "shop",
                            "kind": "Deployment",
                            "workload": "checkout",
                            "container": "app",
                            **OPERATOR,
                        }
                    }
                ],
            },
        ],
    }


def _operator_case() -> dict[str, Any]:
    """Four policies, passes due every minute: healthy, stalled since 20m, Prometheus
    unreachable since 20m, and failing on the API server since 20m."""

    def policy(name: str, last_pass: str, last_success: str, errors: str) -> list[dict[str, str]]:
        where = _labels(policy=name, **OPERATOR)
        return [
            {"series": f"unthrottle_pass_interval_seconds{where}", "values": "60x60"},
            {"series": f"unthrottle_last_pass_timestamp_seconds{where}", "values": last_pass},
            {"series": f"unthrottle_last_success_timestamp_seconds{where}", "values": last_success},
            {"series": f"unthrottle_prometheus_errors_total{where}", "values": errors},
        ]

    running, stuck = "0+60x60", "0+60x20 1200x40"

    def fired(name: str) -> list[dict[str, Any]]:
        return [{"exp_labels": {"severity": "warning", "policy": name, **OPERATOR}}]

    return {
        "interval": "1m",
        "input_series": [
            *policy("healthy", running, running, "0x60"),
            *policy("stalled", stuck, stuck, "0x60"),
            *policy("unreachable", running, stuck, "0x20 1+1x40"),
            *policy("failing", running, stuck, "0x60"),
            {"series": "up" + _labels(**OPERATOR), "values": "1x20 0x40"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "40m",
                "alertname": "UnthrottleOperatorStalled",
                "exp_alerts": fired("stalled"),
            },
            {
                "eval_time": "40m",
                "alertname": "UnthrottlePrometheusUnreachable",
                "exp_alerts": fired("unreachable"),
            },
            {
                "eval_time": "40m",
                "alertname": "UnthrottlePassesFailing",
                "exp_alerts": fired("failing"),
            },
            {"eval_time": "20m", "alertname": "UnthrottleOperatorDown", "exp_alerts": []},
            {
                "eval_time": "40m",
                "alertname": "UnthrottleOperatorDown",
                "exp_alerts": [{"exp_labels": {"severity": "warning"}}],
            },
        ],
    }


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    _, promtool = require_binaries()
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_rules() -> None:
    checked = _promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 11 rules found" in checked.stdout


@pytest.mark.parametrize(
    "case", [_throttling_case, _recommendation_case, _operator_case], ids=lambda f: f.__name__
)
def test_promtool_rule_tests(case: Any, tmp_path: Path) -> None:
    # The expressions as they are; annotations (templates that promtool check validated
    # above) are left out, so the expected alerts name labels only.
    document = yaml.safe_load(RULES.read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules = tmp_path / "unthrottle.rules.yaml"
    rules.write_text(yaml.safe_dump(document))
    tests = tmp_path / "unthrottle_test.yaml"
    tests.write_text(
        yaml.safe_dump({"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [case()]})
    )
    tested = _promtool("test", "rules", str(tests))
    assert tested.returncode == 0, tested.stdout + tested.stderr
