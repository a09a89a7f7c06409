"""The agent's endpoints and metrics from cycle reports given as plain data, and its CLI's
one-line errors. (tests/e2e/agent runs the loop as a process against real cgroups.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import PurePosixPath

import pytest

from unthrottle.agent.cgroupfs import BurstReason, BurstResult
from unthrottle.agent.cycle import CgroupOutcome, CycleReport, NodeFacts, PodOutcome
from unthrottle.agent.layout import CgroupVersion, Driver, QosClass
from unthrottle.agent.pods import Intent, PodTarget
from unthrottle.agent.server import AgentMetrics, AgentServer
from unthrottle.cli import main
from unthrottle.model.names import BURST_APPLIED_ANNOTATION, BURST_REASON_ANNOTATION

FACTS = NodeFacts(CgroupVersion.V1, "/sys/fs/cgroup/cpu", Driver.SYSTEMD, ("containerd",), True)
TARGET = PodTarget("shop", "web-1", "uid", QosClass.BURSTABLE, Intent.APPLY, 30000, "", (), {})


def _report(*cgroups: CgroupOutcome, facts: NodeFacts = FACTS, error: str = "") -> CycleReport:
    applied = {BURST_APPLIED_ANNOTATION: "30000", BURST_REASON_ANNOTATION: None}
    return CycleReport(facts, (PodOutcome(TARGET, cgroups, applied),), error=error)


def _cgroup(container: str, reason: BurstReason, burst: int | None) -> CgroupOutcome:
    result = BurstResult(PurePosixPath("p") / container, reason, burst_us=burst)
    return CgroupOutcome(container, "proc", result)


@pytest.fixture
def server() -> Iterator[AgentServer]:
    agent = AgentServer(AgentMetrics(), interval_s=10, port=0, bind="127.0.0.1")
    yield agent
    agent.httpd.server_close()


def test_readyz_before_the_first_cycle_and_after(server: AgentServer) -> None:
    status, _, body = server.answer("/readyz")
    assert (status, json.loads(body)) == (503, {"ready": False, "problem": "no cycle has run yet"})
    server.metrics.record(_report(_cgroup("app", BurstReason.APPLIED, 30000)))
    status, content_type, body = server.answer("/readyz")
    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {
        "ready": True,
        "cgroupVersion": "v1",
        "hierarchy": "/sys/fs/cgroup/cpu",
        "driver": "systemd",
        "runtimes": ["containerd"],
        "burstSupported": True,
        "problem": "",
    }
    assert server.answer("/healthz")[0] == 200
    assert server.answer("/nothing")[0] == 404


def test_readyz_says_why_a_node_cannot_burst(server: AgentServer) -> None:
    old = NodeFacts(
        CgroupVersion.V2, "/sys/fs/cgroup", Driver.SYSTEMD, (), False, "KernelTooOld: x"
    )
    server.metrics.record(_report(facts=old))
    status, _, body = server.answer("/readyz")
    assert status == 503
    assert json.loads(body)["problem"] == "KernelTooOld: x"
    server.metrics.record(_report(error="GET /api/v1/pods: 403 forbidden"))
    status, _, body = server.answer("/readyz?verbose")
    assert status == 503
    assert json.loads(body)["problem"] == "API server: GET /api/v1/pods: 403 forbidden"


def test_metrics_follow_the_last_cycle_and_count_errors(server: AgentServer) -> None:
    server.metrics.record(
        _report(
            _cgroup("app", BurstReason.APPLIED, 30000),
            _cgroup("side", BurstReason.WRITE_FAILED, None),
            _cgroup("", BurstReason.UNLIMITED_QUOTA, None),
        )
    )
    server.metrics.record(_report(_cgroup("side", BurstReason.WRITE_FAILED, None)))
    text = server.answer("/metrics")[2].decode()
    lines = text.splitlines()
    # The gauge is the last cycle's: app is no longer in it.
    assert not [line for line in lines if line.startswith("unthrottle_agent_burst_applied{")]
    assert 'unthrottle_agent_write_errors_total{reason="WriteFailed"} 2.0' in lines
    assert "UnlimitedQuota" not in text  # a cgroup without a quota is not an error
    assert (
        'unthrottle_agent_info{burst_supported="true",cgroup_version="v1",driver="systemd"} 1.0'
        in lines
    )
    server.metrics.record(_report(_cgroup("app", BurstReason.APPLIED, 30000)))
    lines = server.answer("/metrics")[2].decode().splitlines()
    assert (
        'unthrottle_agent_burst_applied{container="app",namespace="shop",pod="web-1"} 30000.0'
        in lines
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["agent", "--once"], "unthrottle agent: --node (or NODE_NAME) is required"),
        (
            ["agent", "--node", "n", "--interval", "0s"],
            "unthrottle agent: --interval must be between 1s and 10m, not 0s",
        ),
        (
            ["agent", "--node", "n", "--interval", "soon"],
            "unthrottle agent: --interval: not a duration",
        ),
    ],
)
def test_cli_errors_are_one_line(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NODE_NAME", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err
