"""The simulator's OpenMetrics output is accepted by the real ``promtool`` backfill.

Runs ``promtool tsdb create-blocks-from openmetrics`` (Debian package ``prometheus``) on
every named scenario in the ``full`` shape, then ``promtool tsdb list``, and checks that
every sample line of the file landed in a block. Fails, rather than skips, without
promtool: the integration suite is meant to run with the real parts installed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from unthrottle.sim.openmetrics import render_openmetrics
from unthrottle.sim.scenarios import all_scenarios

T0 = 1_700_000_000_000  # epoch ms
THREE_HOURS_MS = 3 * 3_600_000


def _promtool() -> str:
    found = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(found).is_file(), "promtool not found: install Debian's `prometheus` package"
    return found


@pytest.mark.integration
def test_promtool_backfills_every_scenario(tmp_path: Path) -> None:
    promtool = _promtool()
    text = render_openmetrics(
        all_scenarios(),
        T0,
        T0 + THREE_HOURS_MS,
        step_ms=60_000,
        shape="full",
        extra_labels={"cluster": "prod"},
    )
    data = tmp_path / "scenarios.om"
    data.write_text(text, encoding="utf-8")
    sample_lines = sum(1 for line in text.splitlines() if not line.startswith("#"))
    blocks = tmp_path / "tsdb"

    created = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(data), str(blocks)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert created.returncode == 0, created.stderr

    listed = subprocess.run(
        [promtool, "tsdb", "list", str(blocks)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = [line.split() for line in listed.stdout.splitlines()[1:] if line.strip()]
    # Columns: ULID, min time, max time, duration, samples, chunks, series, size. Three
    # hours cross at least one 2-hour block boundary.
    assert len(rows) >= 2
    assert sum(int(row[4]) for row in rows) == sample_lines
    assert min(int(row[1]) for row in rows) == T0
