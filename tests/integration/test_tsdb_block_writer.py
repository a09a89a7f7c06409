"""The benchmark's TSDB block writer (bench/tsdb_block.py) against promtool and Prometheus.

The week-long benchmark data is written as a block directly, not through promtool; its
check writes the named scenarios' two hours both ways and asks a real Prometheus for every
stored sample of each, then four tiles of the window: same series, four times the
samples, the first tile's unchanged, no counter reset at the seams.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_the_block_writer_stores_what_promtool_stores(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator"), "XDG_CACHE_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "tsdb_block.py"), "--check", f"--tmp={tmp_path}"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "same as promtool: 275 series, every sample" in done.stdout
    assert "tiled ×4: 275 series, no reset of" in done.stdout
