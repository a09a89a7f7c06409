"""``unthrottle report -o html`` on a real Prometheus, rendered by a real headless Chromium.

The seed scenarios (three hours, as a default kube-prometheus-stack keeps them) go into a
real Prometheus; the report is written as HTML through the CLI, opened in Debian's
``chromium`` with no network, and the rendered DOM is checked: one section per container,
the projection curve and target line in each, and the numbers of the JSON report. A
screenshot is kept beside the test's files (``UNTHROTTLE_SCREENSHOT_DIR``, when set, gets a
copy: that is how docs/img/html-report.png is made).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from unthrottle.cli import main
from unthrottle.sandbox.chromium import run_chromium
from unthrottle.sandbox.prometheus import PrometheusFactory, PrometheusServer
from unthrottle.sim.openmetrics import iter_openmetrics
from unthrottle.sim.scenarios import all_scenarios

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
END_MS = 1_767_225_600_000  # fixed, for deterministic data
START_MS = END_MS - 3 * HOUR_MS
AT = str((END_MS - 1) / 1000)


@pytest.fixture(scope="module")
def server(prometheus_factory: PrometheusFactory) -> PrometheusServer:
    return prometheus_factory(
        "html-report", {"default.om": iter_openmetrics(all_scenarios(), START_MS, END_MS)}
    )


@pytest.fixture(scope="module")
def rendered(
    server: PrometheusServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("html-report")
    page, data = tmp / "report.html", tmp / "report.json"
    common = ["report", "--prometheus-url", server.url, "--window", "3h", "--at", AT]
    assert main([*common, "-o", "html", "--output-file", str(page)]) == 0
    assert main([*common, "-o", "json", "--output-file", str(data)]) == 0
    dom = run_chromium(tmp, "--dump-dom", page.as_uri())
    return page, dom, json.loads(data.read_text())


def sections(dom: str) -> dict[str, str]:
    parts = dom.split('<section class="container"')[1:]
    found = {}
    for part in parts:
        match = re.search(r'data-workload="([^"]+)" data-container="([^"]+)"', part)
        assert match, part[:200]
        found[f"{match[1]}/{match[2]}"] = part.split("</section>")[0]
    return found


def test_the_page_needs_no_network(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    page, _, _ = rendered
    text = page.read_text()
    assert "<script" not in text
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)


def test_one_section_per_container_with_its_numbers(
    rendered: tuple[Path, str, dict[str, Any]],
) -> None:
    _, dom, document = rendered
    found = sections(dom)
    expected = {f"{w['namespace']}/{w['name']}/{w['container']}": w for w in document["workloads"]}
    assert set(found) == set(expected)
    for key, workload in expected.items():
        section = found[key]
        recommended = workload["recommended"]
        assert f'class="rec">{recommended["cpuLimit"]}<' in section, key
        assert f'class="now">{workload["current"]["cpuLimit"]}<' in section, key
        for diagnosis in workload["diagnosis"]:
            assert f">{diagnosis}</span>" in section
        assert recommended["explanation"][:60] in section.replace("&gt;", ">")


def test_every_section_draws_the_projection_and_the_target(
    rendered: tuple[Path, str, dict[str, Any]],
) -> None:
    _, dom, _ = rendered
    for key, section in sections(dom).items():
        assert '<svg class="throttle-curve"' in section and 'data-target="0.05"' in section, key
        path = re.search(r'<path class="projection" d="M([^"]+)"', section)
        assert path, key
        assert len(path[1].split(" L")) > 100  # a curve, not a segment
        assert 'class="target"' in section and "target 5.0%" in section
        assert 'class="recommended-limit"' in section
        assert '<svg class="usage"' in section and 'data-name="demand p99"' in section
        assert '<svg class="memory"' in section


def test_burst_recommendations_draw_the_burst_curve(
    rendered: tuple[Path, str, dict[str, Any]],
) -> None:
    _, dom, document = rendered
    found = sections(dom)
    for w in document["workloads"]:
        section = found[f"{w['namespace']}/{w['name']}/{w['container']}"]
        assert ('class="projection-burst"' in section) == bool(w["recommended"]["cpuBurstUs"])


def test_screenshot(rendered: tuple[Path, str, dict[str, Any]]) -> None:
    page, _, _ = rendered
    shot = page.with_name("report.png")
    run_chromium(page.parent, f"--screenshot={shot}", "--window-size=1240,1500", page.as_uri())
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a page of charts, not a blank one
    if target := os.environ.get("UNTHROTTLE_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(target) / "html-report.png")
