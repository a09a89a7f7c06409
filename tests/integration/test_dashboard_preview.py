"""The dashboard's panels drawn from its own queries, rendered by a real headless Chromium.

Every target of manifests/monitoring/dashboards/unthrottle.json, with the variables
substituted, is range-queried against the real Prometheus of test_dashboard.py (same data
set, same server); the annotation query gives the patch times. The preview page is opened
in Debian's ``chromium`` and its DOM checked: every panel in grid order, each timeseries
panel with a drawn path per series, the caption saying Grafana did not draw it. A
screenshot is kept beside the test's files (``UNTHROTTLE_SCREENSHOT_DIR``, when set, gets a
copy: that is how docs/img/dashboard-panels.png is made).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from tests.integration.test_dashboard import (
    DASHBOARD,
    END_MS,
    START_MS,
    VARIABLES,
    dashboard_data,
    query_range,
    substitute,
)

from unthrottle.cli.dashboard_preview import CAPTION, render_dashboard_preview
from unthrottle.sandbox.chromium import run_chromium
from unthrottle.sandbox.prometheus import PrometheusFactory, PrometheusServer

pytestmark = pytest.mark.integration

TIMESERIES = [p for p in DASHBOARD["panels"] if p["type"] == "timeseries"]


@pytest.fixture(scope="module")
def server(prometheus_factory: PrometheusFactory) -> PrometheusServer:
    # The same name and data as test_dashboard.py: the factory starts it once per session.
    return prometheus_factory("dashboard", dashboard_data())


@pytest.fixture(scope="module")
def page(server: PrometheusServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = {
        panel["title"]: {
            t["refId"]: query_range(server, substitute(t["expr"])) for t in panel["targets"]
        }
        for panel in DASHBOARD["panels"]
    }
    (annotation,) = DASHBOARD["annotations"]["list"]
    patched = {
        float(v) / 1000
        for s in query_range(server, substitute(annotation["expr"]))
        for _, v in s["values"]
    }
    html = render_dashboard_preview(
        DASHBOARD, VARIABLES, results, (START_MS / 1000, END_MS / 1000), annotations=sorted(patched)
    )
    path = tmp_path_factory.mktemp("dashboard-preview") / "dashboard.html"
    path.write_text(html)
    return path


@pytest.fixture(scope="module")
def dom(page: Path) -> str:
    return run_chromium(page.parent, "--dump-dom", page.as_uri())


def panels(dom: str) -> dict[str, str]:
    found = {}
    for part in dom.split('<section class="panel"')[1:]:
        match = re.search(r'data-title="([^"]+)"', part)
        assert match, part[:200]
        found[match[1].replace("&amp;", "&")] = part.split("</section>")[0]
    return found


def test_panels_in_grid_order_with_the_caption(dom: str) -> None:
    order = sorted(DASHBOARD["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    assert list(panels(dom)) == [p["title"] for p in order]
    assert CAPTION.replace("'", "&#x27;") in dom or CAPTION in dom
    assert "<script" not in dom
    # The variables as chosen, the multi-value container as Grafana names it.
    assert "<b>namespace</b> shop" in dom and "<b>workload</b> checkout" in dom
    assert "<b>container</b> All" in dom


@pytest.mark.parametrize("panel", TIMESERIES, ids=[p["title"] for p in TIMESERIES])
def test_every_timeseries_panel_draws_its_series(dom: str, panel: dict[str, object]) -> None:
    section = panels(dom)[str(panel["title"])]
    paths = re.findall(r'<path class="series" data-legend="([^"]*)" d="M([^"]+)"', section)
    assert paths, panel["title"]
    for legend, d in paths:
        assert legend and "{{" not in legend, legend
        assert len(d.split(" L")) > 100  # three hours at a 1m step: a line, not a dot
    assert 'class="annotation"' in section  # the patch at 1h30


def test_legends_come_from_the_targets(dom: str) -> None:
    found = panels(dom)
    recommended = re.findall(r'data-legend="([^"]+)"', found["Recommended CPU (unthrottle)"])
    assert sorted(recommended) == sorted(
        ["limit now app", "limit recommended app", "request now app", "request recommended app"]
    )
    stat = found["Action of the last pass"]
    assert 'data-legend="app: Patched"' in stat


def test_screenshot(page: Path, dom: str) -> None:
    shot = page.with_name("dashboard.png")
    run_chromium(page.parent, f"--screenshot={shot}", "--window-size=1240,940", page.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 40_000  # panels of lines, not a blank page
    if target := os.environ.get("UNTHROTTLE_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(target) / "dashboard-panels.png")
