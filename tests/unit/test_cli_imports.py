"""``unthrottle report``, ``export``, ``explain`` and ``recommend`` start without kopf (and
without the official Kubernetes client until a kubeconfig is loaded).

Each check runs a fresh interpreter (the test process itself has imported everything) and
reads its ``sys.modules`` after the import or the ``--help`` of a subcommand.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

OPERATOR = Path(__file__).resolve().parents[2] / "operator"
PROBE = """
import sys
{body}
heavy = sorted(
    m for m in ("kopf", "aiohttp", "unthrottle.handlers", "kubernetes") if m in sys.modules
)
print("LOADED:" + ",".join(heavy))
"""
HELP = """
from unthrottle.cli import main
try:
    main([{command!r}, "--help"])
except SystemExit:
    pass
"""


def _loaded(body: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(OPERATOR)}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(body=body)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("LOADED:"))
    return [m for m in line.removeprefix("LOADED:").split(",") if m]


@pytest.mark.parametrize(
    "module",
    [
        "unthrottle.cli.report",
        "unthrottle.cli.recommend",
        "unthrottle.cli.export",
        "unthrottle.cli.explain",
    ],
)
def test_importing_a_cli_subcommand_loads_no_kopf(module: str) -> None:
    assert _loaded(f"import {module}") == []


@pytest.mark.parametrize("command", ["report", "recommend", "export", "explain"])
def test_running_a_subcommand_loads_no_kopf(command: str) -> None:
    assert _loaded(HELP.format(command=command)) == []


def test_the_operator_subcommand_still_loads_kopf() -> None:
    assert "kopf" in _loaded(HELP.format(command="run"))
