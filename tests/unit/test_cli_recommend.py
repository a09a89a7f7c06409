"""``unthrottle recommend``: input parsing, the three output formats, errors, exit codes.

The worked example is the input of issue 2 / docs/cli.md. Its expected output, by hand
(docs/recommendations.md; τ = 0.05, production tier, 100 ms periods, every period
active since activePeriodRatio is absent):

* throttled: r = 0.6 at L = 500m. The mean usage (p50, no mean given) 100m is below
  r·L, so it is raised to r·L·1.001 = 300.3m.
* β is fitted so that E[min(D, L)] = 300.3m. At the cap β = L = 500m, ln A = ln 0.6 + 1
  = 0.4892 > 0 and E[min(D, L)] = L − β·(r − 1 − ln r) = 500 − 500 × 0.1108 = 444.6m,
  already above 300.3m, so β stays at the cap, 500m. Throttled seconds s = 350m bound β
  by s / r = 583.3m, which is looser. Unmet demand r·β = 300m.
* request = (p99 300m + 300m) × 1.5 = 900m.
* limit = 2 × 900m = 1800m.
* burst = min(β, L) × 100000 µs / 1000 = 50000 µs, i.e. 500m of one period. No pod
  reports it applied (no ``cpuBurstAppliedUs``) and ``burst.agent`` is ``Detect``, so
  it is advisory: projected = P(D > 1800) = exp(0.4892 − 1800/500) = 0.0446 ≤ 0.05,
  so 1800m stands. With the agent's report (``cpuBurstAppliedUs``) the burst counts:
  credit refills by (1800 − 600.3) × (1/0.04456 − 1) ≈ 25700m ≫ 500m, so all of it
  counts: projected = exp(0.4892 − (1800 + 500)/500) = exp(−4.1108) = 0.0164.
* memory: max RSS 320000000 × 1.4 = 448000000 B = 427.25Mi → 428Mi (request = limit).
* WEB_CONCURRENCY is not managed (the default policy) and not derived: null.
* diagnoses: r > τ and mean usage 100m < 50% of 500m → micro-bursting; 4 workers >
  max(1, 0.5 cores) → worker-oversubscription; p95 200m < 90% of 500m, so not
  quota-bound.
"""

from __future__ import annotations

import copy
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from unthrottle.cli import main

EXAMPLE: dict[str, Any] = {
    "policy": {"tier": "production", "throttleTarget": 0.05},
    "container": {
        "name": "app",
        "cpuRequest": "250m",
        "cpuLimit": "500m",
        "memoryRequest": "256Mi",
        "memoryLimit": "512Mi",
        "webConcurrency": 4,
        "threads": 8,
    },
    "cpu": {
        "usageCores": {
            "p50": 0.1,
            "p95": 0.2,
            "p99": 0.3,
            "p999": 0.35,
            "p9999": 0.4,
            "max": 0.45,
        },
        "throttledPeriodRatio": 0.6,
        "throttledSecondsPerSecond": 0.35,
        "samples": 2016,
        "windowSeconds": 604800,
    },
    "memory": {
        "rssBytes": {"p99": 300000000, "max": 320000000},
        "workingSetBytes": {"max": 350000000},
        "oomKills": 0,
    },
}

OUTPUT_KEYS = {
    "cpuRequest",
    "cpuRequestLowerBound",
    "cpuRequestUpperBound",
    "cpuLimit",
    "cpuBurstUs",
    "memoryRequest",
    "memoryLimit",
    "webConcurrency",
    "projectedThrottleRatio",
    "diagnosis",
    "explanation",
    "reason",
}


def example(**changes: Any) -> dict[str, Any]:
    """A deep copy of EXAMPLE with ``section={...}`` merged (None deletes a key)."""
    document = copy.deepcopy(EXAMPLE)
    for section, update in changes.items():
        if update is None:
            document.pop(section, None)
            continue
        for key, value in update.items():
            if value is None:
                document[section].pop(key, None)
            else:
                document[section][key] = value
    return document


def run(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    document: dict[str, Any] | str,
    *extra: str,
) -> tuple[int, str, str]:
    path = tmp_path / "input.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    code = main(["recommend", "--input", str(path), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- output


def test_json_output_worked_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(tmp_path, capsys, EXAMPLE)
    assert code == 0, err
    fields = json.loads(out)
    assert set(fields) == OUTPUT_KEYS
    assert fields["reason"] is None
    assert fields["cpuRequest"] == "900m"
    # p95 and p99.9 of demand + 50%: the band a current request is kept within
    assert (fields["cpuRequestLowerBound"], fields["cpuRequestUpperBound"]) == ("750m", "980m")
    assert fields["cpuLimit"] == "1800m"
    assert fields["cpuBurstUs"] == 50000
    assert fields["memoryRequest"] == "428Mi"
    assert fields["memoryLimit"] == "428Mi"
    assert fields["webConcurrency"] is None
    assert fields["projectedThrottleRatio"] == pytest.approx(0.0446, abs=1e-4)
    assert fields["diagnosis"] == ["micro-bursting", "worker-oversubscription"]
    assert isinstance(fields["explanation"], str) and fields["explanation"]
    assert "advisory: no node agent applies it" in fields["explanation"]


@pytest.mark.parametrize(
    "changes",
    [
        {"container": {"cpuBurstAppliedUs": 50000}},
        {"policy": {"burst": {"agent": "Installed"}}},
    ],
)
def test_applied_burst_counts_in_the_projection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, Any]
) -> None:
    code, out, err = run(tmp_path, capsys, example(**changes))
    assert code == 0, err
    fields = json.loads(out)
    assert (fields["cpuLimit"], fields["cpuBurstUs"]) == ("1800m", 50000)
    assert fields["projectedThrottleRatio"] == pytest.approx(0.0164, abs=1e-4)
    assert "advisory" not in fields["explanation"]
    assert "with 50ms burst" in fields["explanation"]


def test_the_largest_node_caps_the_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1800m wanted; the biggest node has 1.5 cores (a bare number is cores, as in a manifest).
    code, out, err = run(tmp_path, capsys, {**EXAMPLE, "nodeAllocatableCpu": 1.5})
    assert code == 0, err
    fields = json.loads(out)
    assert fields["cpuLimit"] == "1500m"
    assert fields["projectedThrottleRatio"] > EXAMPLE["policy"]["throttleTarget"]
    assert "capped" in fields["diagnosis"]
    assert "capped at the node's allocatable CPU 1500m" in fields["explanation"]


def test_default_output_is_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, default, _ = run(tmp_path, capsys, EXAMPLE)
    _, explicit, _ = run(tmp_path, capsys, EXAMPLE, "--output", "json")
    assert default == explicit
    json.loads(default)


def test_yaml_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, as_json, _ = run(tmp_path, capsys, EXAMPLE, "-o", "json")
    code, as_yaml, _ = run(tmp_path, capsys, EXAMPLE, "-o", "yaml")
    assert code == 0
    assert not as_yaml.lstrip().startswith("{")  # block YAML, not JSON
    assert yaml.safe_load(as_yaml) == json.loads(as_json)


def test_table_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(tmp_path, capsys, EXAMPLE, "--output", "table")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["FIELD", "VALUE"]
    rows: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(" ")
        rows[name] = value.strip()
    assert set(rows) == OUTPUT_KEYS
    assert rows["webConcurrency"] == "" and rows["reason"] == ""  # null is an empty cell
    assert rows["cpuRequest"] == "900m"
    assert rows["cpuLimit"] == "1800m"
    assert rows["memoryLimit"] == "428Mi"
    assert json.loads(rows["diagnosis"]) == ["micro-bursting", "worker-oversubscription"]
    # The VALUE column starts at the same offset on every line (padded like kubectl).
    offset = lines[0].index("VALUE")
    assert all(line[offset - 2 : offset] == "  " for line in lines[1:] if len(line) > offset)


def test_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(EXAMPLE)))
    code = main(["recommend", "--input", "-"])
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads(out)["cpuLimit"] == "1800m"


def test_yaml_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, from_json, _ = run(tmp_path, capsys, EXAMPLE)
    code, from_yaml, _ = run(tmp_path, capsys, yaml.safe_dump(EXAMPLE))
    assert code == 0
    assert from_yaml == from_json


@pytest.mark.parametrize(
    ("document", "named"),
    [
        (example(policy={"throttleTarge": 0.01}), "policy.throttleTarge (did you mean"),
        (example(policy={"cpu": {"maxLimt": "2"}}), "policy.cpu.maxLimt (did you mean maxLimit?)"),
        (example(container={"image": "app:1.2"}), "container.image"),
        (example(cpu={"usageCores": {"p90": 0.2}}), "cpu.usageCores.p90"),
        ({**example(), "comment": "what-if"}, "comment"),
    ],
)
def test_unknown_fields_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict[str, Any], named: str
) -> None:
    code, out, err = run(tmp_path, capsys, document)
    assert code == 2 and out == ""
    assert "unknown field" in err and named in err
    assert err.count("\n") == 1


@pytest.mark.parametrize("absent", [True, False])
def test_throttled_seconds_absent_or_null(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], absent: bool
) -> None:
    document = example(cpu={"throttledSecondsPerSecond": None})
    if not absent:
        document["cpu"]["throttledSecondsPerSecond"] = None  # an explicit JSON null
        assert '"throttledSecondsPerSecond": null' in json.dumps(document)
    code, out, err = run(tmp_path, capsys, document)
    assert code == 0, err
    fields = json.loads(out)
    assert fields["reason"] is None
    # Periods only: the scale is fitted to usage at the quota; the limit still has to
    # rise above the 500m quota that throttles 60% of periods.
    assert fields["cpuLimit"] is not None
    assert int(fields["cpuLimit"].removesuffix("m")) > 500
    assert fields["projectedThrottleRatio"] <= 0.05


def test_absent_and_null_throttled_seconds_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, absent, _ = run(tmp_path, capsys, example(cpu={"throttledSecondsPerSecond": None}))
    document = example()
    document["cpu"]["throttledSecondsPerSecond"] = None
    _, null, _ = run(tmp_path, capsys, document)
    assert absent == null


def test_bare_numbers_are_cores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # In a manifest "cpu: 1" is one core; the CLI reads bare numbers the same way.
    # (r = 0.2 at one core: the example's 0.6 would imply 600m of use, not its 100m.)
    cpu = {"throttledPeriodRatio": 0.2}
    text = example(container={"cpuLimit": "1"}, policy={"cpu": {"minRequest": "2"}}, cpu=cpu)
    number = example(container={"cpuLimit": 1}, policy={"cpu": {"minRequest": 2}}, cpu=cpu)
    _, from_text, _ = run(tmp_path, capsys, text)
    _, from_number, _ = run(tmp_path, capsys, number)
    assert from_number == from_text
    # minRequest 2 cores binds: the request is at least 2000m ("2").
    assert json.loads(from_number)["cpuRequest"] == "2"


def test_no_policy_uses_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The example's policy is the default one (production, τ = 0.05).
    _, with_policy, _ = run(tmp_path, capsys, EXAMPLE)
    code, without, _ = run(tmp_path, capsys, example(policy=None))
    assert code == 0
    assert without == with_policy


def test_no_memory_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(tmp_path, capsys, example(memory=None))
    assert code == 0
    fields = json.loads(out)
    assert fields["memoryRequest"] is None and fields["memoryLimit"] is None
    assert fields["cpuRequest"] == "900m"


# --------------------------------------------------------------------------- no recommendation


def test_insufficient_samples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(tmp_path, capsys, example(cpu={"samples": 5}))
    assert code == 0, err
    fields = json.loads(out)
    assert set(fields) == OUTPUT_KEYS
    assert fields["reason"] == "insufficient-data"
    for key in OUTPUT_KEYS - {"reason", "explanation", "diagnosis"}:
        assert fields[key] is None, key
    assert "history.minSamples" in fields["explanation"]


def test_insufficient_coverage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 100 × 300 s / 604800 s = 5% of the window < 50%.
    code, out, _ = run(tmp_path, capsys, example(cpu={"samples": 100}))
    assert code == 0
    fields = json.loads(out)
    assert fields["reason"] == "insufficient-data"
    assert "history.minCoverage" in fields["explanation"]


# --------------------------------------------------------------------------- invalid input


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (example(container={"cpuLimit": "5x"}), "container.cpuLimit"),
        (example(container={"memoryLimit": "lots"}), "container.memoryLimit"),
        (example(container={"cpuRequest": "-250m"}), "container.cpuRequest"),
        # Out of range: once a decimal.Overflow traceback (exit 1), once an
        # OverflowError deep in the engine.
        (example(container={"cpuLimit": "1e999999999"}), "container.cpuLimit"),
        (example(container={"cpuLimit": "1e5000"}), "container.cpuLimit"),
        (example(container={"name": None}), "container.name"),
        (example(cpu={"throttledPeriodRatio": 1.6}), "cpu.throttledPeriodRatio"),
        (example(cpu={"throttledPeriodRatio": -0.1}), "cpu.throttledPeriodRatio"),
        (example(cpu={"throttledSecondsPerSecond": -1}), "cpu.throttledSecondsPerSecond"),
        (example(cpu={"samples": None}), "cpu.samples"),
        (example(cpu={"windowSeconds": 0}), "cpu.windowSeconds"),
        (example(cpu={"usageCores": {"p50": 0.5, "p95": 0.2, "p99": 0.3, "max": 1}}), "cpu"),
        (example(cpu=None), "cpu"),
        (example(container=None), "container"),
        (example(memory={"rssBytes": {"p99": 1}}), "memory.rssBytes.max"),
        (example(policy={"tier": "gold"}), "policy.tier"),
        (example(policy={"throttleTarget": 0.9}), "policy.throttleTarget"),
        (example(policy={"cpu": {"limitPolicy": "Sometimes"}}), "policy.cpu.limitPolicy"),
        (example(policy={"cpu": {"minRequest": "1", "maxRequest": "500m"}}), "policy.cpu"),
        (example(policy={"memory": {"headroom": "lots"}}), "policy.memory.headroom"),
    ],
)
def test_invalid_input_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], document: dict[str, Any], field: str
) -> None:
    code, out, err = run(tmp_path, capsys, document)
    assert code == 2
    assert out == ""
    assert "invalid input" in err
    assert field in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON or YAML"),
        ('{"container": ', "not JSON or YAML"),
        ("just a sentence", "must be an object"),
        ("[1, 2, 3]", "must be an object"),
        ("", "must be an object"),
    ],
)
def test_not_a_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    code, out, err = run(tmp_path, capsys, text)
    assert code == 2
    assert out == ""
    assert message in err


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["recommend", "--input", str(tmp_path / "absent.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot read" in err and "absent.json" in err


@pytest.mark.parametrize(
    "argv",
    [["recommend"], ["recommend", "--input", "x.json", "--output", "xml"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


# --------------------------------------------------------------------------- console script


def console_script() -> str:
    beside = Path(sys.executable).parent / "unthrottle"
    if beside.exists():
        return str(beside)
    found = shutil.which("unthrottle")
    assert found is not None, "the unthrottle console script is not installed"
    return found


def test_console_script(tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text(json.dumps(EXAMPLE))
    done = subprocess.run(
        [console_script(), "recommend", "--input", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    fields = json.loads(done.stdout)
    assert set(fields) == OUTPUT_KEYS
    assert fields["cpuLimit"] == "1800m"


def test_console_script_invalid_input_exit_code(tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text(json.dumps(example(cpu={"throttledPeriodRatio": 1.6})))
    done = subprocess.run(
        [console_script(), "recommend", "--input", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "cpu.throttledPeriodRatio" in done.stderr
