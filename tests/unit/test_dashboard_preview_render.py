"""The dashboard preview as plain data in, a string out: variables, legends, grid order."""

from __future__ import annotations

from typing import Any

from unthrottle.cli.dashboard_preview import CAPTION, grafana_expr, render_dashboard_preview


def _panel(title: str, kind: str, x: int, y: int, legend: str = "{{pod}}") -> dict[str, Any]:
    return {
        "title": title, "type": kind, "gridPos": {"x": x, "y": y, "w": 12, "h": 8},
        "fieldConfig": {"defaults": {"unit": "percentunit"}},
        "targets": [{"refId": "A", "expr": "up", "legendFormat": legend}],
    }  # fmt: skip


DASHBOARD = {
    "title": "d <&>",
    "templating": {"list": [{"name": "container", "allValue": ".+"}, {"name": "ns"}]},
    "panels": [_panel("second", "timeseries", 12, 0), _panel("first", "timeseries", 0, 0),
               _panel("last", "stat", 0, 8, "{{pod}}: {{action}}"), _panel("odd", "table", 12, 8)],
}  # fmt: skip
SERIES = [{"metric": {"pod": "a", "action": "Patched"}, "values": [[0, "0.5"], [60, "NaN"]]}]


def test_grafana_expr_substitutes_variables_and_the_rate_interval() -> None:
    expr = 'rate(x{ns="$ns", c=~"${container}", o="$other"}[$__rate_interval])'
    assert grafana_expr(expr, {"ns": "shop", "container": ".+"}) == (
        'rate(x{ns="shop", c=~".+", o="$other"}[5m])'
    )


def test_panels_in_grid_order_legends_and_variables() -> None:
    results = {t: {"A": SERIES} for t in ("first", "second", "last")}
    page = render_dashboard_preview(
        DASHBOARD, {"container": ".+", "ns": "shop"}, results, (0.0, 120.0), annotations=[60.0]
    )
    titles = [part.split('"')[0] for part in page.split('data-title="')[1:]]
    assert titles == ["first", "second", "last", "odd"]
    assert page.count('<path class="series" data-legend="a" d="M') == 2
    assert page.count('class="annotation"') == 2
    assert 'data-legend="a: Patched" data-value="0.5"' in page
    assert "table panel: not drawn here" in page
    assert "<b>container</b> All" in page and "<b>ns</b> shop" in page
    assert "d &lt;&amp;&gt;" in page and CAPTION.replace("'", "&#x27;") in page
    assert ">60%<" in page and ">80%<" not in page  # the axis ends at a round value


def test_a_panel_without_data_still_draws_its_axes() -> None:
    page = render_dashboard_preview(DASHBOARD, {}, {}, (0.0, 3600.0))
    assert 'data-series="0"' in page and "No data" in page
