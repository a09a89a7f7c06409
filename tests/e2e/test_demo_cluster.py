"""``unthrottle demo`` with the control plane: scenarios as Deployments, the operator, a pass.

The README's main command runs this (``scripts/demo``); here it runs with ``--exit`` and
its own sandbox, and must print the policy and one ThrottleRecommendation per scenario,
the patched namespace's Deployment showing ``Patched``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
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


def test_running_demo_hints_work_as_printed_and_it_leaves_no_temp_dir(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "unthrottle.cli", "demo", "--hours", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    killer = threading.Timer(300, process.kill)  # a demo that never prints fails, not hangs
    killer.start()
    try:
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "the operator's log:" in line:
                break
        hints = [line.strip() for line in lines[next(
            i for i, line in enumerate(lines) if line.startswith("Try next")
        ) + 1 :]]  # fmt: skip
        commands = [h.split("   #")[0] for h in hints if not h.startswith("the operator's log")]
        patched = next(
            line.split()[:2]
            for line in lines
            if "throttlerecommendation" in line and "Patched" in line
        )
        namespace, name = patched[0], patched[1].rsplit("/", 1)[1]
        assert f"describe trec -n {namespace} {name}" in commands[0], commands
        for command in commands:
            done = subprocess.run(
                command, shell=True, capture_output=True, text=True, timeout=120, check=False
            )
            assert done.returncode == 0, (command, done.stderr[-2000:])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=60)
        finally:
            killer.cancel()
    assert "starting the local control plane" in err and "building" not in err, err[-2000:]
    assert not list(tmp_path.glob("unthrottle-demo-*")), "the demo left its temporary directory"
