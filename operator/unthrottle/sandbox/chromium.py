"""Debian's headless ``chromium`` run on local pages: for the tests that render HTML.

This module owns the command line: headless, no sandbox (tests may run as root in a
container), no GPU, no QUIC and no background networking, syncing or component updates, a
profile directory of its own. It installs nothing: ``scripts/test`` installs the
``chromium`` package, ``UNTHROTTLE_CHROMIUM`` points elsewhere, and a missing binary or a
failed run is a :class:`ChromiumError` that says so.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["ChromiumError", "chromium_binary", "run_chromium"]

DEFAULT_BINARY = "/usr/bin/chromium"


class ChromiumError(RuntimeError):
    """Chromium is missing, or a run failed (the message carries the end of its stderr)."""


def chromium_binary() -> str:
    binary = os.environ.get("UNTHROTTLE_CHROMIUM", DEFAULT_BINARY)
    if not os.access(binary, os.X_OK):
        raise ChromiumError(f"{binary} not found: scripts/test installs chromium")
    return binary


def run_chromium(workdir: Path, *args: str, timeout: float = 120) -> str:
    """Run headless Chromium with ``args`` (e.g. ``--dump-dom URL``); its stdout."""
    profile = workdir / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            chromium_binary(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", *args,
        ],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise ChromiumError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout
