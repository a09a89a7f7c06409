"""Fixtures of the integration tests: real Prometheus servers started by the harness.

``prometheus_factory`` (session-scoped) backfills a named data set (OpenMetrics files) into
its own Prometheus on loopback the first time a test asks for it, and stops every server at
the end of the session. A missing ``prometheus`` or ``promtool`` fails the tests that need
them, with a message saying how to install them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The harness lives in tests/harness; pytest puts only this directory on sys.path.
_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.harness.prometheus import (  # noqa: E402
    HarnessError,
    PrometheusFactory,
    require_binaries,
)


@pytest.fixture(scope="session")
def prometheus_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusFactory]:
    try:
        require_binaries()
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    factory = PrometheusFactory(tmp_path_factory.mktemp("prometheus"))
    yield factory
    factory.stop_all()
