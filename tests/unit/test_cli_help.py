"""What the command line prints when a person asks it for help or gives it nothing."""

from __future__ import annotations

import pytest

from unthrottle.cli import kubectl_main, main


def test_no_arguments_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    for command in ("recommend", "report", "export", "explain", "run", "demo"):
        assert f"\n    {command}" in err, command
    assert "required" not in err


def test_run_help_shows_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps to the terminal
    assert "(/healthz); default 8080" in out
    assert "(/metrics); default 9100" in out
    assert "default 0.0.0.0" in out
    assert "default unthrottle-system" in out
    assert "UNTHROTTLE_PROMETHEUS_URL" in out


def test_run_with_a_missing_kubeconfig_says_the_file_does_not_exist(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)  # restored: run sets it for kopf
    assert main(["run", "--kubeconfig", "/nonexistent/kubeconfig"]) == 5
    err = capsys.readouterr().err
    assert err == (
        "unthrottle run: kubeconfig /nonexistent/kubeconfig does not exist "
        "(give --kubeconfig PATH)\n"
    )


def test_the_kubectl_plugin_lists_only_the_read_only_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert kubectl_main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: kubectl unthrottle")
    for command in ("report", "export", "explain"):
        assert f"\n    {command}" in err, command
    for command in ("run", "agent", "demo", "recommend"):
        assert f"\n    {command}" not in err, command
