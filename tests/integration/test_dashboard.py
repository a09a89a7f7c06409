"""The Grafana dashboard's queries, evaluated by a real Prometheus.

The seed scenarios (cAdvisor and kube-state-metrics series as a default
kube-prometheus-stack keeps them) and the operator's per-container gauges (written here as
OpenMetrics, with a patch in the middle of the window) are backfilled into one
Prometheus; every variable query, panel target and annotation of
manifests/monitoring/dashboards/unthrottle.json, with the template variables substituted
as Grafana would, must return series.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from unthrottle.cli.dashboard_preview import grafana_expr
from unthrottle.sandbox.prometheus import PrometheusFactory, PrometheusServer
from unthrottle.sim.openmetrics import iter_openmetrics
from unthrottle.sim.scenarios import all_scenarios

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "manifests/monitoring/dashboards/unthrottle.json").read_text())
HOUR_MS = 3_600_000
END_MS = 1_767_225_600_000
START_MS = END_MS - 3 * HOUR_MS
STEP_MS = 30_000
PATCHED_MS = START_MS + 90 * 60_000
VARIABLES = {"namespace": "shop", "workload": "checkout", "container": ".+"}


def operator_metrics() -> str:
    """The operator's gauges for shop/checkout, scraped every 30 s, patched at 1h30."""
    labels = (
        'policy="production",namespace="shop",kind="Deployment",workload="checkout",'
        'container="app",job="unthrottle-system/unthrottle"'
    )
    gauges = {
        "unthrottle_container_cpu_request_cores": (0.3, 0.9),
        "unthrottle_container_cpu_limit_cores": (0.3, 1.8),
        "unthrottle_recommended_cpu_request_cores": (0.9, 0.9),
        "unthrottle_recommended_cpu_limit_cores": (1.8, 1.8),
        "unthrottle_observed_throttle_ratio": (0.97, 0.01),
        "unthrottle_projected_throttle_ratio": (0.004, 0.004),
    }
    times = range(START_MS, END_MS, STEP_MS)
    lines = []
    for name, (before, after) in gauges.items():
        lines.append(f"# TYPE {name} gauge\n")
        lines += [
            f"{name}{{{labels}}} {before if t < PATCHED_MS else after} {t / 1000:.0f}\n"
            for t in times
        ]
    lines.append("# TYPE unthrottle_last_patch_timestamp_seconds gauge\n")
    lines += [
        f"unthrottle_last_patch_timestamp_seconds{{{labels}}} {PATCHED_MS / 1000:.0f} "
        f"{t / 1000:.0f}\n"
        for t in times
        if t >= PATCHED_MS
    ]
    lines.append("# TYPE unthrottle_recommendation_action gauge\n")
    for action, keep in (("Skipped", lambda t: t < PATCHED_MS), ("Patched", lambda t: True)):
        lines += [
            f'unthrottle_recommendation_action{{{labels},action="{action}"}} 1 {t / 1000:.0f}\n'
            for t in times
            if keep(t) and (action == "Skipped" or t >= PATCHED_MS)
        ]
    lines.append("# EOF\n")
    return "".join(lines)


def dashboard_data() -> dict[str, Iterable[str]]:
    """The files of the "dashboard" data set: the seed scenarios and the operator's gauges."""
    return {
        "cluster.om": iter_openmetrics(all_scenarios(), START_MS, END_MS),
        "operator.om": [operator_metrics()],
    }


@pytest.fixture(scope="module")
def server(prometheus_factory: PrometheusFactory) -> PrometheusServer:
    return prometheus_factory("dashboard", dashboard_data())


def substitute(expr: str) -> str:
    return grafana_expr(expr, VARIABLES)


def query_range(server: PrometheusServer, expr: str) -> list[dict[str, Any]]:
    params = urllib.parse.urlencode(
        {"query": expr, "start": START_MS / 1000, "end": END_MS / 1000, "step": "60"}
    )
    with urllib.request.urlopen(f"{server.url}/api/v1/query_range?{params}", timeout=30) as r:
        answer = json.load(r)
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def label_values(server: PrometheusServer, query: str) -> set[str]:
    match = re.fullmatch(r"label_values\((.+), (\w+)\)", substitute(query))
    assert match, query
    series = query_range(server, f"group by ({match[2]}) ({match[1]})")
    return {s["metric"][match[2]] for s in series}


def test_variables_have_values(server: PrometheusServer) -> None:
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert "shop" in label_values(server, variables["namespace"]["query"]["query"])
    assert "checkout" in label_values(server, variables["workload"]["query"]["query"])
    assert label_values(server, variables["container"]["query"]["query"]) == {"app"}


@pytest.mark.parametrize(
    "panel", DASHBOARD["panels"], ids=[p["title"] for p in DASHBOARD["panels"]]
)
def test_every_panel_target_returns_series(server: PrometheusServer, panel: dict[str, Any]) -> None:
    assert panel["datasource"]["uid"] == "${datasource}"
    for target in panel["targets"]:
        expr = target["expr"]
        assert "container_spec_" not in expr and "throttled_seconds" not in expr
        series = query_range(server, substitute(expr))
        assert series, (panel["title"], target["refId"])
        # Only the workload's own containers: no pause container, no pod cgroup, no
        # other Deployment.
        for s in series:
            assert s["metric"].get("container") not in ("POD", ""), s["metric"]
            assert s["metric"].get("pod", "checkout-").startswith("checkout-"), s["metric"]


def test_patches_are_annotated_at_their_time(server: PrometheusServer) -> None:
    # Grafana draws the annotation at the series' value (useValueForTime, milliseconds):
    # the time of the patch, from its first scrape on.
    (annotation,) = DASHBOARD["annotations"]["list"]
    assert annotation["useValueForTime"] is True
    series = query_range(server, substitute(annotation["expr"]))
    assert len(series) == 1
    assert {float(v) for _, v in series[0]["values"]} == {PATCHED_MS}
    assert min(float(t) for t, _ in series[0]["values"]) >= PATCHED_MS / 1000
