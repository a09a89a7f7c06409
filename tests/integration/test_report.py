"""``unthrottle report`` end to end on a real Prometheus holding the simulator's scenarios.

Each scenario of the seeds is rendered for three hours as a default kube-prometheus-stack
install keeps it (no throttled seconds, no container_spec_*) and, in a second cluster, in
the full shape; the report runs through the CLI against the real server, and the
recommendation for each scenario is checked for what it must be.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from unthrottle.cli import main
from unthrottle.cli.report import TABLE_WIDTH
from unthrottle.engine.guardrails import is_worth_rollout
from unthrottle.model.policy import PatchPolicy
from unthrottle.model.quantity import parse_bytes, parse_millicores
from unthrottle.sandbox.prometheus import PrometheusFactory, PrometheusServer, free_port
from unthrottle.sim.openmetrics import iter_openmetrics
from unthrottle.sim.scenarios import all_scenarios

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a fixed end keeps the data deterministic
START_MS = END_MS - 3 * HOUR_MS
AT = str((END_MS - 1) / 1000)


@pytest.fixture(scope="module")
def server(prometheus_factory: PrometheusFactory) -> PrometheusServer:
    scenarios = all_scenarios()
    files = {
        "default.om": iter_openmetrics(
            scenarios, START_MS, END_MS, extra_labels={"cluster": "default"}
        ),
        "full.om": iter_openmetrics(
            scenarios, START_MS, END_MS, shape="full", extra_labels={"cluster": "full"}
        ),
    }
    return prometheus_factory("report", files)


def report(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["report", "--prometheus-url", url, "--window", "3h", "--at", AT, *args])
    out, err = capsys.readouterr()
    return code, out, err


def by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {w["name"]: w for w in document["workloads"]}


@pytest.fixture(scope="module", params=["default", "full"])
def shape(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def document(
    server: PrometheusServer, shape: str, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    code, out, err = report(capsys, server.url, "--match", f"cluster={shape}", "-o", "json")
    assert code == 0, err
    assert "8 workloads" in err  # progress on stderr
    return dict(json.loads(out))


def test_every_scenario_is_reported_with_its_evidence(document: dict[str, Any], shape: str) -> None:
    workloads = by_name(document)
    assert len(workloads) == len(all_scenarios())
    for w in workloads.values():
        assert w["reason"] is None, w
        assert w["evidence"]["samples"] > 300  # 3 h at a 30 s step
        assert ("throttled-seconds" in w["evidence"]["signals"]) == (
            shape == "full" and w["evidence"]["throttleRatio"] > 0
        )
    assert document["queries"] <= 16


def test_quota_bound_gets_a_higher_limit_under_the_target(document: dict[str, Any]) -> None:
    checkout = by_name(document)["checkout"]
    assert checkout["evidence"]["throttleRatio"] > 0.9
    recommended = checkout["recommended"]
    assert parse_millicores(recommended["cpuLimit"]) > parse_millicores(
        checkout["current"]["cpuLimit"]
    )
    assert recommended["projectedThrottleRatio"] <= 0.05
    assert "quota-bound" in checkout["diagnosis"]


def test_micro_burst_gets_burst_and_a_higher_limit(document: dict[str, Any]) -> None:
    indexer = by_name(document)["indexer"]
    recommended = indexer["recommended"]
    assert recommended["cpuBurstUs"] > 0
    assert parse_millicores(recommended["cpuLimit"]) > parse_millicores(
        indexer["current"]["cpuLimit"]
    )
    assert recommended["projectedThrottleRatio"] <= 0.05
    assert "micro-bursting" in indexer["diagnosis"]


def test_over_provisioned_shrinks(document: dict[str, Any]) -> None:
    ledger = by_name(document)["ledger"]
    current, recommended = ledger["current"], ledger["recommended"]
    assert parse_millicores(recommended["cpuRequest"]) < parse_millicores(current["cpuRequest"]) / 2
    assert parse_millicores(recommended["cpuLimit"]) < parse_millicores(current["cpuLimit"])
    assert ledger["diagnosis"] == ["over-provisioned"]


def test_healthy_stays_within_hysteresis(document: dict[str, Any]) -> None:
    frontend = by_name(document)["frontend"]
    current, recommended = frontend["current"], frontend["recommended"]
    pairs = [
        (parse_millicores(current[k]), parse_millicores(recommended[k]))
        for k in ("cpuRequest", "cpuLimit")
    ] + [(parse_bytes(current["memoryLimit"]), parse_bytes(recommended["memoryLimit"]))]
    assert not is_worth_rollout(pairs, PatchPolicy()), pairs
    assert frontend["diagnosis"] == ["healthy"]


def test_gil_threads_get_workers_equal_to_cores(
    server: PrometheusServer, shape: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Prometheus does not know WEB_CONCURRENCY, so the policy names the container to manage
    # (docs/recommendations.md, section 6); the GIL scenario lives in namespace "api".
    policy = tmp_path / "policy.yaml"
    policy.write_text("spec:\n  webConcurrency:\n    enabled: true\n    containers: [app]\n")
    code, out, err = report(
        capsys,
        server.url,
        *("--match", f"cluster={shape}", "--namespace", "api", "--policy", str(policy)),
        *("-o", "json"),
    )
    assert code == 0, err
    reports = by_name(json.loads(out))["reports"]
    recommended = reports["recommended"]
    limit = parse_millicores(recommended["cpuLimit"])
    assert limit % 1000 == 0
    assert recommended["webConcurrency"] == limit // 1000
    assert "worker-oversubscription" in reports["diagnosis"]


def test_memory_diagnoses(document: dict[str, Any]) -> None:
    workloads = by_name(document)
    assert "memory-growth" in workloads["invoicer"]["diagnosis"]
    thumbnailer = workloads["thumbnailer"]
    assert "oom-killed" in thumbnailer["diagnosis"]
    assert parse_bytes(thumbnailer["recommended"]["memoryLimit"]) > parse_bytes(
        thumbnailer["current"]["memoryLimit"]
    )


def test_table_fits_a_120_column_terminal(
    server: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = report(capsys, server.url, "--match", "cluster=default")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["WORKLOAD", "CONTAINER", "THROTTLED"]
    assert len(lines) == 1 + len(all_scenarios())
    assert max(len(line) for line in lines) <= TABLE_WIDTH
    assert any("shop/checkout" in line and "→" in line for line in lines)


def test_yaml_output(server: PrometheusServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = report(capsys, server.url, "--match", "cluster=default", "-o", "yaml")
    assert code == 0
    assert "workloads:" in out and "name: checkout" in out


def test_unreachable_prometheus_names_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = report(capsys, url)
    assert code == 1
    assert url in err and out == ""


def test_missing_series_are_named(
    server: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = report(capsys, server.url, "--match", "cluster=nowhere")
    assert code == 3
    assert "container_cpu_cfs_periods_total" in err or "kube_pod_owner" in err
    assert out == ""


def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--prometheus-url", "ftp://x", "--window", "3h"]) == 2
    assert "http" in capsys.readouterr().err
    assert main(["report", "--prometheus-url", "http://x", "--window", "3 hours"]) == 2
    assert "duration" in capsys.readouterr().err


def test_a_namespace_with_no_workloads_says_so(
    server: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = report(capsys, server.url, "--match", "cluster=default", "-n", "nowhere")
    assert code == 0, err
    assert "no Deployment in scope (namespace nowhere)" in err
    assert out.startswith("WORKLOAD")


def test_a_window_longer_than_the_data_says_so_and_names_a_window_that_fits(
    server: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Three hours of data read over seven days: no container has the coverage.
    code, out, err = main_report(capsys, server.url, "--match", "cluster=default")
    assert code == 0, err
    assert "8 of 8 containers have too little history for the 7d window" in err
    assert "insufficient-data" in out
    # The window it names is one the data covers.
    window = err.rsplit("--window ", 1)[1].split()[0]
    assert window in ("2h55m", "3h")
    code, out, err = main_report(
        capsys, server.url, "--match", "cluster=default", "--window", window
    )
    assert code == 0 and "too little history" not in err
    assert "insufficient-data" not in out


def main_report(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["report", "--prometheus-url", url, "--at", AT, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_bad_window_and_policy_are_one_line_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--prometheus-url", "http://x", "--window", "3x"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "unthrottle report: --window '3x': not a Prometheus duration of at least 5m, "
        "e.g. 30m, 6h, 7d\n"
    )
    assert main(["report", "--prometheus-url", "http://x", "--window", "1m"]) == 2
    assert "--window '1m': too short" in capsys.readouterr().err
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: unthrottle.dev/v1alpha1\nkind: ThrottlePolicy\nmetadata: {name: p}\n"
        "spec:\n  throttleTarge: 0.01\n  cpu: {minRequest: 2, maxRequest: 1}\n"
    )
    assert main(["report", "--prometheus-url", "http://x", "--policy", str(policy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown field: spec.throttleTarge (did you mean throttleTarget?)" in err
    policy.write_text("spec:\n  throttleTarget: 0.9\n  cpu: {minRequest: 2, maxRequest: 1}\n")
    assert main(["report", "--prometheus-url", "http://x", "--policy", str(policy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "spec.throttleTarget: Input should be less than or equal to 0.5" in err
    assert "spec.cpu: cpu.maxRequest must not be below cpu.minRequest" in err
    policy.write_text("spec: [1\n")
    assert main(["report", "--prometheus-url", "http://x", "--policy", str(policy)]) == 2
    assert "is not JSON or YAML at line 2" in capsys.readouterr().err
    assert main(["report", "--prometheus-url", "http://x", "--policy", "/nonexistent.yaml"]) == 2
    err = capsys.readouterr().err
    assert err == "unthrottle report: cannot read /nonexistent.yaml: No such file or directory\n"


def test_a_missing_kubeconfig_says_the_file_does_not_exist(
    server: PrometheusServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = report(capsys, server.url, "--kubeconfig", "/nonexistent/kubeconfig")
    assert code == 5
    assert "kubeconfig /nonexistent/kubeconfig does not exist" in err
