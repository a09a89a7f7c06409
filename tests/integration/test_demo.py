"""``unthrottle demo`` runs the whole job on this machine: simulate, backfill, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unthrottle.cli import main
from unthrottle.sim.scenarios import all_scenarios

pytestmark = pytest.mark.integration


def test_demo_reports_every_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "demo",
            "--prometheus-only",
            "--hours",
            "1",
            "--exit",
            "--workdir",
            str(tmp_path),
            "-o",
            "json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    document = json.loads(out)
    names = {w["name"] for w in document["workloads"]}
    assert names == {s.deployment for s in all_scenarios()}
    checkout = next(w for w in document["workloads"] if w["name"] == "checkout")
    assert "quota-bound" in checkout["diagnosis"]
    assert "Prometheus is up at http://127.0.0.1:" in err
    assert (tmp_path / "scenarios.om").stat().st_size > 0
    page = tmp_path / "report.html"
    assert f"the report with charts, one page: {page}" in err
    assert page.read_text().count('<section class="container"') == len(all_scenarios())
