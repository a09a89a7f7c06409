"""``unthrottle demo`` with the control plane: scenarios as Deployments, the operator, a pass.

The README's main command runs this (``scripts/demo``); here it runs with ``--exit`` and
its own sandbox, and must print the policy and one ThrottleRecommendation per scenario,
the patched namespace's Deployment showing ``Patched``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from unthrottle.sim.scenarios import all_scenarios

pytestmark = pytest.mark.e2e


def test_demo_brings_up_everything_and_prints_the_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "unthrottle.cli", "demo", "--exit", "--hours", "2",
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    trecs = [line for line in lines if "throttlerecommendation.unthrottle.dev/" in line]
    assert len(trecs) == len(all_scenarios()), done.stdout
    assert any(line.startswith("shop ") and "Patched" in line for line in trecs), done.stdout
    assert any(
        "throttlepolicy.unthrottle.dev/demo" in line and "AutoPatch" in line for line in lines
    )
    assert (tmp_path / "operator.log").exists()
