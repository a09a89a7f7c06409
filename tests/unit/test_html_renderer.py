"""The HTML renderer as plain data in, a string out: rows without a recommendation, names
that need escaping, and the projection drawn from the demand model."""

from __future__ import annotations

from unthrottle.cli.html_report import render_html_report
from unthrottle.cli.report import ReportRow
from unthrottle.engine.recommend import recommend
from unthrottle.model.policy import ThrottlePolicySpec, Tier
from unthrottle.model.recommendation import NoRecommendation, NoRecommendationReason
from unthrottle.model.stats import ContainerResources, ContainerStats
from unthrottle.model.workload import WorkloadRef


def _stats(name: str) -> ContainerStats:
    return ContainerStats.model_validate(
        {
            "container": {"name": name, "cpuRequest": "250m", "cpuLimit": "500m"},
            "cpu": {
                "usageCores": {"p50": 0.1, "p95": 0.2, "p99": 0.3, "max": 0.45},
                "throttledPeriodRatio": 0.15,
                "samples": 2016,
                "windowSeconds": 604_800,
            },
            "memory": {"rssBytes": {"p99": 300_000_000, "max": 320_000_000}},
        }
    )


def test_a_recommendation_and_a_missing_one() -> None:
    stats = _stats("<app>")
    ref = WorkloadRef(namespace="shop", name="a&b")
    missing = NoRecommendation(
        reason=NoRecommendationReason.MISSING_METRICS, message="no series for this container"
    )
    rows = [
        ReportRow(
            ref, Tier.PRODUCTION, stats.container, stats, recommend(stats, ThrottlePolicySpec())
        ),
        ReportRow(ref, Tier.DEV, ContainerResources(name="sidecar"), None, missing),
    ]
    page = render_html_report(rows, target=0.05, source="http://p:9090", window="7d")
    assert page.startswith("<!DOCTYPE html>") and page.count('<section class="container"') == 2
    assert "&lt;app&gt;" in page and "a&amp;b" in page and "<app>" not in page
    first, second = page.split('<section class="container"')[1:]
    assert '<path class="projection"' in first and 'data-target="0.05"' in first
    assert '<svg class="memory"' in first
    assert "<svg" not in second  # no evidence: numbers and the reason only
    assert "missing-metrics" in second and "no series for this container" in second
    assert "throttle target 5.0%" in page and "window 7d" in page
