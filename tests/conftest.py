"""Fixtures shared by the integration and e2e tests: real Prometheus servers.

``prometheus_factory`` (session-scoped) backfills a named data set (OpenMetrics files) into
its own Prometheus on loopback the first time a test asks for it, and stops every server at
the end of the session. A missing ``prometheus`` or ``promtool`` fails the tests that need
them, with a message saying how to install them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from unthrottle.sandbox.prometheus import (
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
