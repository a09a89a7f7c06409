"""``unthrottle demo`` with the control plane: scenarios as Deployments, the operator, a pass.

The README's main command runs this (``scripts/demo``); here it runs with ``--exit`` and
its own sandbox, and must print the policy and one ThrottleRecommendation per scenario
after each pass: the patched namespace's Deployment showing ``Patched`` after the first,
and, once the loop closed, a pass that patches nothing with throttling gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
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
    # One table per pass: the first patches, the next ones follow the rollouts until a
    # pass patches nothing.
    n = len(all_scenarios())
    assert len(trecs) % n == 0 and len(trecs) > n, done.stdout
    passes = [trecs[i : i + n] for i in range(0, len(trecs), n)]
    assert any(line.startswith("shop ") and "Patched" in line for line in passes[0])
    last = passes[-1]
    assert not any("Patched" in line for line in last), done.stdout
    header = next(line for line in lines if line.startswith("NAMESPACE ")).split()
    throttle = header.index("THROTTLE")  # the columns before it hold no spaces
    for line in (line for line in last if line.startswith("shop ")):
        # The loop closed: every patched Deployment runs unthrottled now (THROTTLE
        # column: measured under the current resources → projected).
        measured = line.split()[throttle].split("→")[0]
        assert measured in {"0%", "<1%"} or int(measured.rstrip("%")) <= 5, line
    assert "time compressed" in done.stderr
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
        # The hints rolled the Deployment back and ran a pass: the running demo follows
        # the new template (its pods get series of their own) within a few polls.
        time.sleep(30)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=60)
        finally:
            killer.cancel()
    assert "starting the local control plane" in err and "building" not in err, err[-2000:]
    assert f"{namespace}/{name} rolled out; the window simulated anew up to now" in err, err[-2000:]
    assert not list(tmp_path.glob("unthrottle-demo-*")), "the demo left its temporary directory"
