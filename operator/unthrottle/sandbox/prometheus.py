"""A real Prometheus on loopback, backfilled with OpenMetrics: for the demo and the tests.

This module owns starting and stopping Debian's ``prometheus`` with data written by
``promtool tsdb create-blocks-from openmetrics``. It installs nothing: ``scripts/test``
and ``scripts/demo`` install the ``prometheus`` package (which ships ``promtool``)
first, and a missing binary is a :class:`HarnessError` that says so.

Facts it is built on (Prometheus 2.42):

- promtool accepts any timestamps and writes 2-hour-aligned blocks; several files may be
  backfilled into one data directory (overlapping blocks are merged at query time).
- Prometheus only loads blocks at start-up, so the data is backfilled first and the
  server started after.
- Time retention counts back from the newest block, not from the wall clock, so fixed
  historical timestamps (tests use a fixed end, for determinism) are kept;
  ``--storage.tsdb.retention.time 100y`` keeps any window a test or benchmark renders.
- Backfilled series have no staleness markers: a series stays visible for
  ``--query.lookback-delta`` (5m) after its last sample. Tests evaluate queries at the
  end of the rendered window (``time=``), so "now" never matters.
- The configuration has no scrape targets: the only data is what was backfilled.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "HarnessError",
    "PrometheusFactory",
    "PrometheusServer",
    "backfill",
    "free_port",
    "require_binaries",
]

PROMETHEUS = Path(os.environ.get("UNTHROTTLE_PROMETHEUS", "/usr/bin/prometheus"))
PROMTOOL = Path(os.environ.get("UNTHROTTLE_PROMTOOL", "/usr/bin/promtool"))
_CONFIG = "global:\n  scrape_interval: 30s\n  evaluation_interval: 30s\nscrape_configs: []\n"


class HarnessError(RuntimeError):
    """The harness could not provide a Prometheus; the message says what to do."""


def require_binaries() -> tuple[Path, Path]:
    """(prometheus, promtool), or HarnessError naming what is missing and how to get it."""
    missing = [str(p) for p in (PROMETHEUS, PROMTOOL) if not os.access(p, os.X_OK)]
    if missing:
        raise HarnessError(
            f"{' and '.join(missing)} not found: the integration tests need Debian's "
            "`prometheus` package (it ships promtool). Run scripts/test, which installs it, "
            "or `apt-get install prometheus` (UNTHROTTLE_PROMETHEUS / UNTHROTTLE_PROMTOOL "
            "point elsewhere)."
        )
    return PROMETHEUS, PROMTOOL


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def backfill(openmetrics: Path, data_dir: Path) -> None:
    """``promtool tsdb create-blocks-from openmetrics FILE DATA_DIR`` (HarnessError if not)."""
    _, promtool = require_binaries()
    data_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            str(promtool),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(openmetrics),
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise HarnessError(f"promtool backfill of {openmetrics} failed:\n{done.stderr[-2000:]}")


class PrometheusServer:
    """One ``prometheus`` process on 127.0.0.1 over a data directory.

    ``PrometheusServer.with_data(workdir, [file.om, ...])`` backfills and starts; use it
    as a context manager or call :meth:`stop`.
    """

    def __init__(self, workdir: Path, data_dir: Path | None = None) -> None:
        self.workdir = workdir
        self.data_dir = data_dir or workdir / "data"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "prometheus.log"

    @classmethod
    def with_data(cls, workdir: Path, openmetrics: Iterable[Path]) -> PrometheusServer:
        """Backfill every file into a fresh data directory under ``workdir``, then start."""
        workdir.mkdir(parents=True, exist_ok=True)
        server = cls(workdir)
        for path in openmetrics:
            backfill(path, server.data_dir)
        server.start()
        return server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(
        self, timeout: float = 60.0, *, port: int | None = None, flags: Sequence[str] = ()
    ) -> None:
        """Start and wait for ``/-/ready``; HarnessError with the log's tail if it fails.

        ``port``: listen there (a restarted server keeps its URL), else on a free port.
        ``flags``: more command-line flags (e.g. ``--query.timeout=10m``).
        """
        prometheus, _ = require_binaries()
        config = self.workdir / "prometheus.yml"
        config.write_text(_CONFIG)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):  # a free port can be taken before Prometheus binds it
            self.port = port or free_port()
            with self.log_path.open("wb") as log:
                self.process = subprocess.Popen(
                    [
                        str(prometheus),
                        f"--config.file={config}",
                        f"--storage.tsdb.path={self.data_dir}",
                        "--storage.tsdb.retention.time=100y",
                        f"--web.listen-address=127.0.0.1:{self.port}",
                        "--log.level=warn",
                        *flags,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.workdir,
                )
            if self._wait_ready(timeout):
                return
            log_text = self.log_path.read_text(errors="replace")
            self.stop()
            if "address already in use" not in log_text or attempt == 2:
                raise HarnessError(
                    f"prometheus did not become ready on {self.url}; log tail:\n{log_text[-3000:]}"
                )
            if port:
                time.sleep(1.0)  # the port of a server just stopped: let it go

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        return False

    def record_rules(
        self, rules_yaml: str, start_s: float, end_s: float, interval: str = "30s"
    ) -> None:
        """Evaluate recording rules over the data served, as Prometheus would have, and
        restart with the recorded series loaded.

        ``promtool tsdb create-blocks-from rules`` queries this server for every
        ``interval`` of ``[start_s, end_s]`` and writes the results as blocks, which are
        moved into the data directory (Prometheus loads blocks at start-up only).
        """
        _, promtool = require_binaries()
        # Named relative to the working directory: the file's name is part of the group's
        # identity, from which Prometheus derives the offset of its evaluations into each
        # interval, so a fixed name gives the same instants on every run.
        rules = "recording-rules.yml"
        (self.workdir / rules).write_text(rules_yaml)
        out = self.workdir / "recorded-blocks"
        done = subprocess.run(
            [
                str(promtool),
                "tsdb",
                "create-blocks-from",
                "rules",
                f"--url={self.url}",
                f"--start={int(start_s)}",
                f"--end={int(end_s)}",
                f"--eval-interval={interval}",
                f"--output-dir={out}",
                "--quiet",
                rules,
            ],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise HarnessError(f"promtool rule backfill failed:\n{done.stderr[-2000:]}")
        self.stop()
        for block in out.iterdir():
            if block.is_dir():
                shutil.move(str(block), str(self.data_dir / block.name))
        self.start()

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after 10 s); idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def remove(self) -> None:
        """Stop and delete the data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class PrometheusFactory:
    """Named data sets → running servers, each started once (one per data set).

    ``factory("name", {"a.om": chunks, ...})`` writes the files under ``base/name``,
    backfills them into one data directory and starts a server; later calls with the same
    name return that server. :meth:`stop_all` at the end.
    """

    def __init__(self, base: Path) -> None:
        self._base = base
        self._servers: dict[str, PrometheusServer] = {}

    def __call__(self, name: str, files: Mapping[str, Iterable[str]]) -> PrometheusServer:
        if name in self._servers:
            return self._servers[name]
        workdir = self._base / name
        workdir.mkdir(parents=True)
        paths = []
        for file_name, chunks in files.items():
            path = workdir / file_name
            with path.open("w") as out:
                out.writelines(chunks)
            paths.append(path)
        server = PrometheusServer.with_data(workdir, paths)
        self._servers[name] = server
        return server

    def stop_all(self) -> None:
        for server in self._servers.values():
            server.stop()
        self._servers.clear()
