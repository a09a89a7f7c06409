"""How ``unthrottle report`` scales with the number of Deployments, on a real Prometheus,
and how the code measured compares with another commit's, side by side in the same run.

What it measures, for each fleet size (default 1,000, 3,000 and 10,000 Deployments of the
simulator's scenarios, :func:`unthrottle.sim.scenarios.fleet`, ``--replicas`` 2 pods each)
and for each code measured (the working tree, and with ``--baseline REV`` that commit,
extracted by :func:`at_commit.snapshot`; the two alternate, first one then the other, so
both meet the same Prometheus, data and load):

- the report itself, in a child process (:mod:`report_measure`) that does what
  ``unthrottle report -o json`` does with ``stats=all``: wall time of the whole report and
  of the fetch alone, the HTTP queries it sent, the samples Prometheus touched (the sum of
  ``totalQueryableSamples`` over the queries, and the largest ``peakSamples``), and the
  peak RSS of the process (``ru_maxrss`` from ``wait4``, checked against its ``VmHWM``);
- the real command, ``python -m unthrottle.cli report -o json``, end to end (interpreter
  start and imports included), wall time and peak RSS;
- Prometheus' CPU time during each report (``/proc/PID/stat``) and its peak RSS, and
  the 1-minute load average before each report (the machine is shared: noise);
- the *raw samples* of the series a recommendation needs: the samples stored in the
  window of every series of the metric names a report reads (cAdvisor's under the
  report's container matchers, kube-state-metrics' whole), counted by Prometheus
  (``count_over_time``) once per size, so that samples touched can be given as a ratio;
- informative: the time to generate the OpenMetrics text, its size, the ``promtool``
  backfill time and the TSDB size.

Data: ``--hours`` (2) of history at a ``--step`` (15 s) scrape interval, rendered in the
default kube-prometheus-stack shape with ``sample_periods`` (10) periods simulated per
step, into a temporary directory on ``--tmp``. The text is deleted right after the
backfill, and each Prometheus (on 127.0.0.1, started by PID) is stopped and its data
deleted before the next size. A size whose text would not fit on the disk is skipped
(and said so). No network beyond loopback.

Results: ``bench/results/report_scale.json`` (a size measured again replaces its entry,
the others are kept when the setup is the same) and the plot ``docs/img/report_scale.png``
(``--plot-only`` redraws it from the JSON, ``--markdown`` prints its tables).
docs/performance.md explains them.

    .venv/bin/python bench/report_scale.py [--sizes 1000,3000,10000] [--repeats 3]
        [--baseline 44e54d3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from at_commit import environment, snapshot
from benchlib import code_version
from tsdb_block import write_fleet_block

from unthrottle.sandbox.prometheus import PrometheusServer, backfill, require_binaries
from unthrottle.sim.openmetrics import iter_scenario_series, write_openmetrics
from unthrottle.sim.scenarios import fleet
from unthrottle.sources.prometheus import PrometheusConfig, PrometheusSource
from unthrottle.sources.prometheus_queries import CADVISOR_ALL, KSM_ALL

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = REPO / "bench" / "results" / "report_scale.json"
PLOT = REPO / "docs" / "img" / "report_scale.png"

END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, as the integration tests: fixed data
HOUR_MS = 3_600_000
MIB = 1024 * 1024
# OpenMetrics text per pod and scrape step in the default shape (measured: ~5.7 KB), and
# what is kept free on top of the estimate for the TSDB and everything else.
TEXT_BYTES_PER_POD_STEP = 6_000
# A TSDB block written directly (--tile-hours): ~50 bytes per pod and step measured at
# 1,000 Deployments over 2 hours (46 MiB for 2,000 pods × 480 steps), with headroom.
BLOCK_BYTES_PER_POD_STEP = 80
DISK_HEADROOM_BYTES = 2 * 1024 * MIB
CHILD_TIMEOUT_S = 3_600.0
# Prometheus' own limit on one query's evaluation (default 2m) would cut the slowest
# code's queries short at 10,000 Deployments; the sample limit stays the default 50 M.
PROMETHEUS_FLAGS = ("--query.timeout=30m",)
PROMETHEUS_MAX_SAMPLES = 50_000_000
# promtool backfills 2 h blocks; Prometheus compacts many of them (a 7 d window) in the
# background after it starts, checked every minute: the reports wait until it is done.
SETTLE_QUIET_S = 75.0
PREPARED = "prepared.json"  # beside a kept TSDB: how it was built
SETTLE_MAX_S = 1_800.0
# KRR's `simple` strategy: PercentileCPULoader, MaxMemoryLoader, CPUAmountLoader and
# MemoryAmountLoader, one query each per (workload, container) (robusta-dev/krr,
# robusta_krr/strategies/simple.py); a fifth with --use_oomkill_data.
KRR_QUERIES_PER_CONTAINER = 4
# The cAdvisor selectors' container matchers (QueryBuilder's hygiene): the raw samples
# counted are those of the series a report selects.
CADVISOR_HYGIENE = 'container!="", container!="POD", pod!=""'


@dataclass(frozen=True)
class Code:
    """One code measured: ``label`` in the results, its commit, the child environment
    (None: this process' own, the working tree)."""

    label: str
    commit: str | None
    env: dict[str, str] | None


@dataclass(frozen=True)
class Target:
    """The Prometheus a size is measured on, and the window its reports read."""

    url: str
    prometheus_pid: int
    window: str
    at: float


# -- one size -----------------------------------------------------------------------------


# Runs argv[2:] and writes "wall seconds, peak RSS KiB" of it to argv[1]. A process forked
# from this one would start with this one's high-water mark (Linux carries the forked copy
# of the address space into ru_maxrss at exec), hundreds of MiB after generating a large
# fleet: the command runs as the child of this small interpreter instead.
_MEASURED_RUN = """
import os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
wall = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    out.write(f"{wall} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_child(
    command: Sequence[str], stdout_path: Path, env: dict[str, str] | None = None
) -> tuple[int, float, int]:
    """Run ``command`` to completion: (exit code, wall seconds, its peak RSS in KiB).

    Standard output goes to ``stdout_path``, standard error to the same name + ``.err``.
    """
    err_path = stdout_path.with_name(stdout_path.name + ".err")
    usage_path = stdout_path.with_name(stdout_path.name + ".usage")
    usage_path.unlink(missing_ok=True)
    wrapped = [sys.executable, "-S", "-c", _MEASURED_RUN, str(usage_path), *command]
    with stdout_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(wrapped, stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            code = process.wait(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise RuntimeError(f"{command[:4]} did not finish in {CHILD_TIMEOUT_S} s") from None
    wall, maxrss = usage_path.read_text().split()
    return code, float(wall), int(maxrss)


def _tail(stdout_path: Path) -> str:
    err = stdout_path.with_name(stdout_path.name + ".err")
    return err.read_text(errors="replace")[-2000:] if err.exists() else ""


def _proc_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def _proc_hwm_kib(pid: int) -> int | None:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return None


def _spread(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _instant(url: str, promql: str, at: float, name: str) -> float:
    """The single value of an instant query (0 for an empty answer)."""
    config = PrometheusConfig(url=url, timeout_seconds=1800, retries=0)
    with PrometheusSource(config) as source:
        answer = source.query(promql, at, name=name)
    return float(answer.rows[0][1]) if answer.rows else 0.0


def raw_samples(url: str, at: float, window: str) -> dict[str, int]:
    """Samples stored in the window ending at ``at``, per metric name a report reads:
    cAdvisor's series under the report's container matchers, kube-state-metrics' all."""
    out: dict[str, int] = {}
    for names, matchers in ((CADVISOR_ALL, CADVISOR_HYGIENE), (KSM_ALL, "")):
        for name in names:
            promql = f"sum(count_over_time({name}{{{matchers}}}[{window}]))"
            out[name] = int(_instant(url, promql, at, "raw-samples"))
    return out


def _generate(
    deployments: int, args: argparse.Namespace, workdir: Path, result: dict[str, Any]
) -> Path:
    """The OpenMetrics text of the fleet over the window, its size and time in ``result``."""
    text = workdir / "fleet.om"
    started = time.perf_counter()
    with text.open("w", encoding="utf-8") as handle:
        write_openmetrics(
            handle,
            fleet(deployments, seed=args.seed, replicas=args.replicas),
            END_MS - args.hours * HOUR_MS,
            END_MS,
            step_ms=args.step * 1000,
            sample_periods=args.sample_periods,
        )
    result["generate_seconds"] = round(time.perf_counter() - started, 2)
    result["openmetrics_mib"] = round(text.stat().st_size / MIB, 1)
    print(f"  generated {result['openmetrics_mib']} MiB", file=sys.stderr)
    return text


def serve(
    deployments: int, args: argparse.Namespace, workdir: Path, result: dict[str, Any]
) -> PrometheusServer:
    """Generate, backfill (the text deleted after) and start a Prometheus over the fleet;
    with ``--tile-hours``, write one block of the tiled window instead."""
    server = PrometheusServer(workdir / "prometheus")
    server.workdir.mkdir()
    if args.tile_hours:
        _write_tiled_block(deployments, args, server.data_dir, result)
    else:
        text = _generate(deployments, args, workdir, result)
        started = time.perf_counter()
        backfill(text, server.data_dir)
        result["backfill_seconds"] = round(time.perf_counter() - started, 2)
        text.unlink()
        print(f"  backfilled in {result['backfill_seconds']} s", file=sys.stderr)
    result["tsdb_mib"] = round(_du(server.data_dir) / MIB, 1)
    started = time.perf_counter()
    server.start(timeout=600, flags=PROMETHEUS_FLAGS)
    result["prometheus_start_seconds"] = round(time.perf_counter() - started, 2)
    result["blocks_backfilled"] = sum(1 for _ in server.data_dir.glob("*/meta.json"))
    if result["blocks_backfilled"] > 1:
        result["compaction_settle_seconds"] = _settle(server.url)
        result["blocks_served"] = int(_self_metric(server.url, "prometheus_tsdb_blocks_loaded"))
    return server


def _write_tiled_block(
    deployments: int, args: argparse.Namespace, data_dir: Path, result: dict[str, Any]
) -> None:
    """The fleet's first ``--tile-hours`` simulated, repeated over the window as one block
    (:mod:`tsdb_block`)."""
    data_dir.mkdir(parents=True)
    start_ms = END_MS - args.hours * HOUR_MS
    started = time.perf_counter()
    series = iter_scenario_series(
        fleet(deployments, seed=args.seed, replicas=args.replicas),
        start_ms,
        start_ms + args.tile_hours * HOUR_MS,
        step_ms=args.step * 1000,
        sample_periods=args.sample_periods,
    )
    meta = write_fleet_block(
        data_dir, series, start_ms, args.step * 1000, tiles=args.hours // args.tile_hours
    )
    result["block_write_seconds"] = round(time.perf_counter() - started, 2)
    result["block_stats"] = meta["stats"]
    print(f"  wrote a block in {result['block_write_seconds']} s: {meta['stats']}", file=sys.stderr)


def _self_metric(url: str, name: str) -> float:
    """One unlabelled sample of Prometheus' own ``/metrics`` (it scrapes nothing here)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise RuntimeError(f"{name} not in {url}/metrics")


def _settle(url: str) -> float:
    """Wait until Prometheus has compacted the backfilled blocks (no compaction and the same
    blocks for longer than its one-minute compaction tick), so that it does not compact
    during the reports; the seconds waited."""
    started = time.monotonic()
    seen: tuple[float, float] | None = None
    since = started
    while time.monotonic() - started < SETTLE_MAX_S:
        now = (
            _self_metric(url, "prometheus_tsdb_compactions_total"),
            _self_metric(url, "prometheus_tsdb_blocks_loaded"),
        )
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since > SETTLE_QUIET_S:
            break
        time.sleep(5)
    waited = round(time.monotonic() - started, 1)
    print(f"  compaction settled after {waited} s", file=sys.stderr)
    return waited


def _commands(code: Code, target: Target, timeout: float) -> list[list[str]]:
    """The measured report and the real command, for one code."""
    url = target.url
    common = [f"--window={target.window}", f"--at={target.at}", f"--timeout={timeout}"]
    return [
        [sys.executable, str(BENCH / "report_measure.py"), f"--url={url}", *common],
        [
            sys.executable,
            "-m",
            "unthrottle.cli",
            "report",
            f"--prometheus-url={url}",
            *common,
            "--output=json",
        ],
    ]


def run_once(code: Code, target: Target, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One measured report then one real command of ``code``, each with Prometheus' CPU."""
    measure_command, cli_command = _commands(code, target, args.timeout)
    prom_pid = target.prometheus_pid
    load = os.getloadavg()[0]
    cpu_before = _proc_cpu_seconds(prom_pid)
    status, wall, maxrss = run_child(measure_command, out, code.env)
    prom_cpu = _proc_cpu_seconds(prom_pid) - cpu_before
    if status != 0:
        raise RuntimeError(f"{code.label}: measure exited {status}: {_tail(out)}")
    run: dict[str, Any] = json.loads(out.read_text())
    run.update(process_wall_seconds=wall, wait4_maxrss_kib=maxrss, prometheus_cpu_seconds=prom_cpu)
    run["loadavg_1m_before"] = load
    run["cli_loadavg_1m_before"] = os.getloadavg()[0]
    cpu_before = _proc_cpu_seconds(prom_pid)
    status, cli_wall, cli_maxrss = run_child(cli_command, out, code.env)
    run["cli_prometheus_cpu_seconds"] = _proc_cpu_seconds(prom_pid) - cpu_before
    if status != 0:
        raise RuntimeError(f"{code.label}: unthrottle report exited {status}: {_tail(out)}")
    reported = len(json.loads(out.read_text())["workloads"])
    if reported != run["containers"]:
        raise RuntimeError(
            f"{code.label}: CLI reported {reported} rows, measure {run['containers']}"
        )
    run.update(cli_wall_seconds=cli_wall, cli_maxrss_kib=cli_maxrss)
    print(
        f"  {code.label}: report {run['total_seconds']:.2f} s "
        f"(fetch {run['fetch_seconds']:.2f} s), {run['queries']} queries, "
        f"{maxrss / 1024:.0f} MiB; CLI {cli_wall:.2f} s, {cli_maxrss / 1024:.0f} MiB "
        f"(load {load:.2f})",
        file=sys.stderr,
    )
    return run


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Medians and ranges over the runs of one code; counts from the median run."""
    middle = sorted(runs, key=lambda r: r["total_seconds"])[len(runs) // 2]

    def spread(key: str, scale: float = 1.0, digits: int = 3) -> dict[str, float]:
        return _spread([r[key] * scale for r in runs], digits)

    report = {
        key: middle[key]
        for key in (
            "queries",
            "http_requests",
            "chunks",
            "workloads",
            "containers",
            "missing_series",
            "total_queryable_samples",
            "peak_samples_max",
            "per_query",
        )
    }
    report.update(
        runs=len(runs),
        total_seconds=spread("total_seconds"),
        fetch_seconds=spread("fetch_seconds"),
        engine_seconds=spread("engine_seconds"),
        render_seconds=spread("render_seconds"),
        peak_rss_mib=spread("wait4_maxrss_kib", 1 / 1024, 1),
        vmhwm_mib=_spread([(r["vmhwm_kib"] or 0) / 1024 for r in runs], 1),
        rss_after_import_mib=round((middle["rss_after_import_kib"] or 0) / 1024, 1),
        prometheus_cpu_seconds=spread("prometheus_cpu_seconds", digits=2),
        loadavg_1m_before=spread("loadavg_1m_before", digits=2),
    )
    cli = {
        "runs": len(runs),
        "wall_seconds": spread("cli_wall_seconds"),
        "peak_rss_mib": spread("cli_maxrss_kib", 1 / 1024, 1),
        "prometheus_cpu_seconds": spread("cli_prometheus_cpu_seconds", digits=2),
        "loadavg_1m_before": spread("cli_loadavg_1m_before", digits=2),
    }
    return {"commit": None, "report": report, "cli": cli}


def _ratios(by_code: dict[str, dict[str, Any]], raw: int) -> dict[str, Any]:
    """Baseline over current (wall time), and samples touched over raw, per code."""
    out: dict[str, Any] = {
        label: {
            "samples_over_raw": round(c["report"]["total_queryable_samples"] / raw, 3)
            if raw
            else None,
            "peak_samples_over_max_samples": round(
                c["report"]["peak_samples_max"] / PROMETHEUS_MAX_SAMPLES, 4
            ),
        }
        for label, c in by_code.items()
    }
    if "baseline" in by_code:
        current, baseline = by_code["current"], by_code["baseline"]
        for key, part, field in (
            ("report", "report", "total_seconds"),
            ("cli", "cli", "wall_seconds"),
        ):
            out[f"speedup_{key}"] = round(
                baseline[part][field]["median"] / current[part][field]["median"], 2
            )
    return out


def measure_size(
    codes: Sequence[Code], target: Target, args: argparse.Namespace, out: Path
) -> dict[str, dict[str, Any]]:
    """``--repeats`` rounds; each round runs every code, in turn first (ABBA order)."""
    runs: dict[str, list[dict[str, Any]]] = {code.label: [] for code in codes}
    for repeat in range(args.repeats):
        print(f"  round {repeat + 1}/{args.repeats}", file=sys.stderr)
        order = codes if repeat % 2 == 0 else list(reversed(codes))
        for code in order:
            runs[code.label].append(run_once(code, target, args, out))
    by_code = {}
    for code in codes:
        by_code[code.label] = summarize(runs[code.label])
        by_code[code.label]["commit"] = code.commit
    return by_code


def _data_name(deployments: int, args: argparse.Namespace) -> str:
    tiled = f"-tiled{args.tile_hours}h" if args.tile_hours else ""
    return f"report-scale-{deployments}x{args.replicas}-{args.hours}h-{args.step}s{tiled}"


def _prepare(
    deployments: int, args: argparse.Namespace, result: dict[str, Any]
) -> tuple[Path, PrometheusServer | None]:
    """The working directory and a served Prometheus over the fleet: with ``--keep``, the
    TSDB kept by an earlier run of the same data is served again rather than rebuilt;
    ``(workdir, None)`` when the text would not fit on the disk."""
    kept = args.tmp / _data_name(deployments, args)
    if args.keep and (kept / "prometheus" / "data").is_dir():
        print(f"  serving the TSDB kept in {kept}", file=sys.stderr)
        server = PrometheusServer(kept / "prometheus")
        server.start(timeout=600, flags=PROMETHEUS_FLAGS)
        result["reused_tsdb"] = str(kept)
        if (kept / PREPARED).exists():  # how the data was built
            result.update(json.loads((kept / PREPARED).read_text()))
        result["tsdb_mib"] = round(_du(server.data_dir) / MIB, 1)
        return kept, server
    n_steps = args.hours * HOUR_MS // (args.step * 1000)
    if args.tile_hours:
        what, per_step = "block", BLOCK_BYTES_PER_POD_STEP
    else:
        what, per_step = "text", TEXT_BYTES_PER_POD_STEP
    estimate = deployments * args.replicas * n_steps * per_step
    free = shutil.disk_usage(args.tmp).free
    result[f"{'tsdb' if args.tile_hours else 'openmetrics'}_estimate_mib"] = round(estimate / MIB)
    if estimate + DISK_HEADROOM_BYTES > free:
        reason = f"needs ~{estimate / MIB:.0f} MiB of {what} on {args.tmp}, {free / MIB:.0f} free"
        print(f"  skipped: {reason}", file=sys.stderr)
        result["skipped"] = reason
        return kept, None
    if args.keep:
        kept.mkdir()
        workdir = kept
    else:
        workdir = Path(tempfile.mkdtemp(prefix=f"report-scale-{deployments}-", dir=args.tmp))
    server = serve(deployments, args, workdir, result)
    if args.keep:
        (workdir / PREPARED).write_text(json.dumps(result) + "\n")
    return workdir, server


def bench_size(deployments: int, codes: Sequence[Code], args: argparse.Namespace) -> dict[str, Any]:
    """Generate, backfill, serve and measure one fleet size; everything removed after
    unless ``--keep``."""
    result: dict[str, Any] = {"deployments": deployments, "pods": deployments * args.replicas}
    workdir: Path | None = None
    server: PrometheusServer | None = None
    try:
        workdir, server = _prepare(deployments, args, result)
        if server is None or args.prepare_only:
            return result
        assert server.process is not None
        at = (END_MS - 1) / 1000
        started = time.perf_counter()
        raw = raw_samples(server.url, at, f"{args.hours}h")
        result["raw_samples_seconds"] = round(time.perf_counter() - started, 2)
        result["raw_samples"] = raw
        result["raw_samples_total"] = sum(raw.values())
        result["series"] = int(_instant(server.url, 'count({__name__!=""})', at, "series"))
        target = Target(server.url, server.process.pid, f"{args.hours}h", at)
        by_code = measure_size(codes, target, args, workdir / "child")
        result["prometheus_peak_rss_mib"] = round(
            (_proc_hwm_kib(server.process.pid) or 0) / 1024, 1
        )
        result["codes"] = by_code
        result["ratios"] = _ratios(by_code, result["raw_samples_total"])
        print(f"  {result['ratios']}", file=sys.stderr)
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"  kept {workdir}", file=sys.stderr)
        elif workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


# -- the document ---------------------------------------------------------------------------


def _meminfo_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _prometheus_version() -> str:
    prometheus, _ = require_binaries()
    done = subprocess.run(
        [str(prometheus), "--version"], capture_output=True, text=True, check=False
    )
    lines = (done.stdout or done.stderr).splitlines()
    words = lines[0].removeprefix("prometheus, version ").split() if lines else []
    return words[0] if words else "?"


def plot(document: dict[str, Any], path: Path) -> None:
    """Wall time, samples touched over raw, and peak RSS against Deployments, per code."""
    try:
        import matplotlib  # noqa: PLC0415 - optional (the `bench` extra), only for the plot
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = [r for r in document["results"] if "codes" in r]
    if not rows:
        print("nothing to plot", file=sys.stderr)
        return
    x = [r["deployments"] for r in rows]
    fig, (ax_time, ax_samples, ax_rss) = plt.subplots(1, 3, figsize=(15, 4.6))
    for label, mark in (("current", "o-"), ("baseline", "s--")):
        if any(label not in r["codes"] for r in rows):
            continue
        codes = [r["codes"][label] for r in rows]
        name = label if label == "current" else f"baseline {codes[0]['commit'][:7]}"
        ax_time.plot(x, [c["cli"]["wall_seconds"]["median"] for c in codes], mark, label=name)
        ax_samples.plot(x, [r["ratios"][label]["samples_over_raw"] for r in rows], mark, label=name)
        ax_rss.plot(x, [c["cli"]["peak_rss_mib"]["median"] for c in codes], mark, label=name)
    ax_time.set_yscale("log")
    ax_time.set_ylabel("seconds (median)")
    ax_time.set_title("`unthrottle report -o json`, whole process")
    ax_samples.axhline(2.0, color="grey", linestyle=":", label="target: 2x")
    ax_samples.set_ylim(bottom=0)
    ax_samples.set_ylabel("samples touched / raw samples")
    ax_samples.set_title("Samples Prometheus read")
    ax_rss.axhline(200, color="grey", linestyle=":", label="target: 200 MiB")
    ax_rss.set_ylim(bottom=0)
    ax_rss.set_ylabel("MiB (median)")
    ax_rss.set_title("Peak RSS of the report process")
    setup = document["setup"]
    for ax in (ax_time, ax_samples, ax_rss):
        ax.set_xscale("log")
        ax.set_xlabel(f"Deployments ({setup['replicas']} pods each)")
        ax.set_xticks(x, [f"{v:,}" for v in x])
        ax.minorticks_off()
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"unthrottle report on Prometheus {document['machine']['prometheus']}: "
        f"{setup['window']} window at a {setup['data_step_seconds']} s scrape step, "
        f"{document['machine']['nproc']} cores"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cell(spread: dict[str, float], digits: int) -> str:
    median, low, high = (f"{spread[k]:,.{digits}f}" for k in ("median", "min", "max"))
    return median if low == high else f"{median} ({low}–{high})"


def markdown(document: dict[str, Any]) -> str:
    """The results as the two Markdown tables of docs/performance.md."""
    report = (
        "| Deployments (containers) | code | HTTP queries | `unthrottle report`, s "
        "| speed-up | report in-process, s | samples touched | ÷ raw | max peakSamples "
        "| peak RSS, MiB | load |\n"
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    tiled = bool(document["setup"].get("tile_hours"))
    around = (
        "| Deployments | series | raw samples | "
        + (
            "samples written | block, s "
            if tiled
            else "OpenMetrics, MiB | generate, s | backfill, s "
        )
        + "| TSDB, MiB | Prometheus peak RSS, MiB |\n"
        + "|"
        + "---:|" * (7 if tiled else 8)
        + "\n"
    )
    for r in document["results"]:
        n = f"{r['deployments']:,}"
        if "codes" not in r:
            report += f"| {n} | skipped: {r.get('skipped', '?')} ||||||||||\n"
            continue
        for label, code in r["codes"].items():
            rep, cli, ratio = code["report"], code["cli"], r["ratios"][label]
            name = label if code["commit"] is None else f"{label} `{code['commit'][:7]}`"
            speedup = f"{r['ratios']['speedup_cli']}×" if "speedup_cli" in r["ratios"] else ""
            report += (
                f"| {n} ({rep['containers']:,}) | {name} | {rep['queries']} "
                f"| {_cell(cli['wall_seconds'], 2)} | {speedup if label == 'current' else ''} "
                f"| {_cell(rep['total_seconds'], 2)} | {rep['total_queryable_samples']:,} "
                f"| {ratio['samples_over_raw']} | {rep['peak_samples_max']:,} "
                f"| {_cell(cli['peak_rss_mib'], 0)} | {_cell(cli['loadavg_1m_before'], 1)} |\n"
            )
        if tiled:
            built = f"| {r['block_stats']['numSamples']:,} | {r.get('block_write_seconds', '–')} "
        else:
            built = (
                f"| {r.get('openmetrics_mib', '–')} | {r.get('generate_seconds', '–')} "
                f"| {r.get('backfill_seconds', '–')} "
            )
        around += (
            f"| {n} | {r['series']:,} | {r['raw_samples_total']:,} {built}"
            f"| {r['tsdb_mib']} | {r['prometheus_peak_rss_mib']:.0f} |\n"
        )
    return report + "\n" + around


def _setup(args: argparse.Namespace, baseline: str | None) -> dict[str, Any]:
    return {
        "window": f"{args.hours}h",
        "data_step_seconds": args.step,
        **({"tile_hours": args.tile_hours} if args.tile_hours else {}),
        "sample_periods": args.sample_periods,
        "replicas": args.replicas,
        "seed": args.seed,
        "repeats": args.repeats,
        "shape": "default",
        "end": "2026-01-01T00:00:00Z",
        "baseline": baseline,
        "prometheus_flags": list(PROMETHEUS_FLAGS),
        "krr_queries_per_container": KRR_QUERIES_PER_CONTAINER,
    }


def _document(args: argparse.Namespace, baseline: str | None) -> dict[str, Any]:
    """The results file to add to: the existing one if its setup is this run's."""
    setup = _setup(args, baseline)
    if args.output.exists():
        existing = json.loads(args.output.read_text())
        same = {k: v for k, v in existing.get("setup", {}).items() if k != "repeats"}
        if same == {k: v for k, v in setup.items() if k != "repeats"}:
            return dict(existing)
    return {
        "benchmark": "report_scale",
        "setup": setup,
        "results": [],
    }


def _record(document: dict[str, Any], result: dict[str, Any], path: Path) -> None:
    """``result`` in place of the same size's, sizes in order, written at once."""
    kept = [r for r in document["results"] if r["deployments"] != result["deployments"]]
    if "reused_tsdb" in result:  # the data was built by the run recorded before
        for before in document["results"]:
            if before["deployments"] == result["deployments"]:
                for key in ("openmetrics_mib", "generate_seconds", "backfill_seconds"):
                    if key in before:
                        result.setdefault(key, before[key])
    document["results"] = sorted([*kept, result], key=lambda r: r["deployments"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")


def _machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": _meminfo_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "prometheus": _prometheus_version(),
    }


def run(args: argparse.Namespace, sizes: Sequence[int], baseline: tuple[str, Path] | None) -> None:
    """Every size with every code, recorded as each size is done."""
    codes = [Code("current", None, None)]
    if baseline is not None:
        sha, package_root = baseline
        codes.append(Code("baseline", sha, environment(sha, package_root)))
    document = _document(args, baseline[0] if baseline else None)
    for deployments in sizes:
        print(f"{deployments} Deployments", file=sys.stderr)
        result = bench_size(deployments, codes, args)
        if args.prepare_only:
            continue
        result["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        result["code"] = code_version()
        result["machine"] = _machine()
        document["machine"] = result["machine"]
        _record(document, result, args.output)
    plot(document, args.plot)
    print(f"wrote {args.output}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="1000,3000,10000", help="Deployments, comma-separated")
    parser.add_argument("--hours", type=int, default=2, help="hours of history (the window)")
    parser.add_argument("--step", type=int, default=15, help="scrape step of the data, seconds")
    parser.add_argument(
        "--tile-hours",
        type=int,
        metavar="H",
        help="simulate the first H hours and repeat them over --hours, written as one TSDB "
        "block without text (tsdb_block.py): how a week of a large fleet fits on a disk",
    )
    parser.add_argument("--sample-periods", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--baseline", metavar="REV", help="also measure this commit, alternating with this tree"
    )
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per query")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--plot-only", action="store_true", help="redraw from --output")
    parser.add_argument(
        "--markdown", action="store_true", help="print the tables of --output as Markdown"
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep each size's TSDB in --tmp, and serve one kept earlier instead of rebuilding",
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="with --keep: build each size's TSDB for a later run, measure nothing",
    )
    args = parser.parse_args(argv)

    if args.prepare_only and not args.keep:
        parser.error("--prepare-only needs --keep")
    if args.markdown:
        print(markdown(json.loads(args.output.read_text())))
        return 0
    if args.plot_only:
        plot(json.loads(args.output.read_text()), args.plot)
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 1 or args.repeats < 1 or args.hours < 1 or args.step < 1:
        parser.error("sizes, repeats, --hours and --step must be positive")
    if args.tile_hours is not None and (args.tile_hours < 1 or args.hours % args.tile_hours):
        parser.error("--tile-hours must be a positive divisor of --hours")
    if args.baseline is None:
        run(args, sizes, None)
        return 0
    with snapshot(args.baseline) as baseline:
        run(args, sizes, baseline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
