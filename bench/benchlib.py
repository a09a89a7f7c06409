"""Shared by the benchmark scripts: which unthrottle a run measured."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import unthrottle

REPO = Path(__file__).resolve().parents[1]


def code_version() -> dict[str, Any]:
    """Which ``unthrottle`` was measured: its path, the commit, uncommitted changes."""
    package = Path(unthrottle.__file__).resolve().parent
    commit = os.environ.get("UNTHROTTLE_BENCH_COMMIT")
    if commit:  # bench/at_commit.py: a clean snapshot of that commit
        return {"commit": commit, "snapshot": True, "package": str(package)}
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "operator"],
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        "commit": head.stdout.strip() or None,
        "snapshot": False,
        "operator_has_uncommitted_changes": bool(dirty.stdout.strip()),
        "package": str(package),
    }
