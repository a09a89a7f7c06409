"""How ``unthrottle report`` scales with the number of Deployments, on a real Prometheus.

What it measures, for each fleet size (default 100, 1,000 and 5,000 Deployments of the
simulator's scenarios, :func:`unthrottle.sim.scenarios.fleet`, one replica each):

- the report itself, run ``--repeats`` times in a child process (``measure`` subcommand)
  that does what ``unthrottle report -o json`` does (build info, fetch, engine, JSON
  rendering) with ``PrometheusConfig(collect_stats=True)``: wall time of the whole report
  and of the fetch alone, the HTTP queries it sent, the samples Prometheus touched
  (``stats=all``: the sum of ``totalQueryableSamples`` and the largest ``peakSamples``
  over the queries), and the peak RSS of the report process (``ru_maxrss`` from
  ``wait4``, checked against the child's own ``VmHWM``);
- the real command, ``python -m unthrottle.cli report -o json``, end to end (interpreter
  start and imports included), wall time and peak RSS, run alternately with the above;
- Prometheus' CPU time during each report (``/proc/PID/stat``) and its peak RSS, and
  the 1-minute load average before each report (the machine is shared: noise);
- informative: the time to generate the OpenMetrics text, its size, the ``promtool``
  backfill time and the TSDB size.

Data: ``--hours`` (1) of history at a ``--step`` (60 s) scrape interval, rendered in the
default kube-prometheus-stack shape with ``sample_periods`` (10) periods simulated per
step, into a temporary directory on /tmp. The text is deleted right after the backfill,
and each Prometheus (on 127.0.0.1, started by PID) is stopped and its data deleted before
the next size. No network beyond loopback.

Results: ``bench/results/report_scale.json`` and the plot ``docs/img/report_scale.png``
(``--plot-only`` redraws the plot from the JSON, ``--markdown`` prints its tables).
docs/performance.md explains them.

    .venv/bin/python bench/report_scale.py [--sizes 100,1000,5000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchlib import code_version

from unthrottle.cli.output import OutputFormat, render
from unthrottle.cli.report import build_report, report_document
from unthrottle.model.policy import ThrottlePolicySpec
from unthrottle.sandbox.prometheus import PrometheusServer, backfill, require_binaries
from unthrottle.sim.openmetrics import write_openmetrics
from unthrottle.sim.scenarios import fleet
from unthrottle.sources.prometheus import PrometheusConfig, PrometheusSource

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "report_scale.json"
PLOT = REPO / "docs" / "img" / "report_scale.png"

END_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z, as the integration tests: fixed data
HOUR_MS = 3_600_000
MIB = 1024 * 1024
# OpenMetrics text per pod and scrape step in the default shape (measured: ~5.8 KB), and
# what is kept free on top of the estimate for the TSDB and everything else.
TEXT_BYTES_PER_POD_STEP = 6_000
DISK_HEADROOM_BYTES = 2 * 1024 * MIB
CHILD_TIMEOUT_S = 1_800.0
# KRR's `simple` strategy: PercentileCPULoader, MaxMemoryLoader, CPUAmountLoader and
# MemoryAmountLoader, one query each per (workload, container) (robusta-dev/krr,
# robusta_krr/strategies/simple.py); a fifth with --use_oomkill_data.
KRR_QUERIES_PER_CONTAINER = 4


# -- the child: one report, measured from inside ------------------------------------------


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (``VmHWM``, ``VmRSS``), None if unreadable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def measure(url: str, window: str, at: float, timeout: float) -> dict[str, Any]:
    """Run the report as ``unthrottle report -o json`` does; timings, queries, samples."""
    rss_after_import = _status_kib("VmRSS")
    started = time.perf_counter()
    policy = ThrottlePolicySpec.model_validate({"window": window})
    config = PrometheusConfig(url=url, timeout_seconds=timeout, retries=0, collect_stats=True)
    with PrometheusSource(config) as source:
        version = source.build_info().get("version", "?")
        fetch_started = time.perf_counter()
        fetched = source.fetch(policy.window, end=at)
        fetch_s = time.perf_counter() - fetch_started
        http_requests = source.queries_made
    engine_started = time.perf_counter()
    rows = build_report(fetched, policy)
    engine_s = time.perf_counter() - engine_started
    render_started = time.perf_counter()
    text = render(report_document(rows, fetched, url), OutputFormat.JSON, "")
    render_s = time.perf_counter() - render_started
    total_s = time.perf_counter() - started
    stats = fetched.query_stats
    return {
        "prometheus_version": version,
        "total_seconds": total_s,
        "fetch_seconds": fetch_s,
        "engine_seconds": engine_s,
        "render_seconds": render_s,
        "queries": fetched.queries,
        "http_requests": http_requests,
        "chunks": fetched.chunks,
        "workloads": len(fetched.workloads),
        "containers": len(rows),
        "missing_series": sorted(fetched.missing_series),
        "output_bytes": len(text.encode()),
        "total_queryable_samples": sum(s.total_queryable_samples or 0 for s in stats),
        "peak_samples_max": max((s.peak_samples or 0 for s in stats), default=0),
        "per_query": [
            {
                "name": s.name,
                "seconds": round(s.seconds, 4),
                "series": s.series,
                "totalQueryableSamples": s.total_queryable_samples,
                "peakSamples": s.peak_samples,
            }
            for s in stats
        ],
        "rss_after_import_kib": rss_after_import,
        "vmhwm_kib": _status_kib("VmHWM"),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


# -- the parent ---------------------------------------------------------------------------


def run_child(command: Sequence[str], stdout_path: Path) -> tuple[int, float, int]:
    """Run ``command`` to completion: (exit code, wall seconds, peak RSS in KiB via wait4).

    Standard output goes to ``stdout_path``, standard error to the same name + ``.err``.
    """
    err_path = stdout_path.with_name(stdout_path.name + ".err")
    with stdout_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err)
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid == process.pid:
                break
            if time.monotonic() > deadline:
                os.kill(process.pid, signal.SIGKILL)
                _, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return process.returncode, wall, usage.ru_maxrss


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


def _series_count(url: str, at: float) -> int:
    config = PrometheusConfig(url=url, timeout_seconds=120, retries=0)
    with PrometheusSource(config) as source:
        answer = source.query('count({__name__!=""})', at, name="series")
    return int(float(answer.rows[0][1])) if answer.rows else 0


def bench_size(
    deployments: int, args: argparse.Namespace, base: Path, window: str
) -> dict[str, Any]:
    """Generate, backfill, serve and measure one fleet size; everything removed after."""
    step_ms = args.step * 1000
    end_ms = END_MS
    start_ms = end_ms - args.hours * HOUR_MS
    at = (end_ms - 1) / 1000
    n_steps = (end_ms - start_ms) // step_ms
    pods = deployments * args.replicas
    estimate = pods * n_steps * TEXT_BYTES_PER_POD_STEP
    free = shutil.disk_usage(base).free
    if estimate + DISK_HEADROOM_BYTES > free:
        reason = f"needs ~{estimate / MIB:.0f} MiB of text on {base}, {free / MIB:.0f} MiB free"
        print(f"  skipped: {reason}", file=sys.stderr)
        return {"deployments": deployments, "skipped": reason}
    workdir = Path(tempfile.mkdtemp(prefix=f"report-scale-{deployments}-", dir=base))
    result: dict[str, Any] = {"deployments": deployments, "pods": pods}
    server: PrometheusServer | None = None
    try:
        text = workdir / "fleet.om"
        started = time.perf_counter()
        with text.open("w", encoding="utf-8") as handle:
            write_openmetrics(
                handle,
                fleet(deployments, seed=args.seed, replicas=args.replicas),
                start_ms,
                end_ms,
                step_ms=step_ms,
                sample_periods=args.sample_periods,
            )
        result["generate_seconds"] = round(time.perf_counter() - started, 2)
        result["openmetrics_mib"] = round(text.stat().st_size / MIB, 1)
        print(f"  generated {result['openmetrics_mib']} MiB", file=sys.stderr)

        server = PrometheusServer(workdir / "prometheus")
        server.workdir.mkdir()
        started = time.perf_counter()
        backfill(text, server.data_dir)
        result["backfill_seconds"] = round(time.perf_counter() - started, 2)
        text.unlink()
        result["tsdb_mib"] = round(_du(server.data_dir) / MIB, 1)
        print(f"  backfilled in {result['backfill_seconds']} s", file=sys.stderr)

        started = time.perf_counter()
        server.start(timeout=300)
        result["prometheus_start_seconds"] = round(time.perf_counter() - started, 2)
        assert server.process is not None
        prom_pid = server.process.pid
        result["series"] = _series_count(server.url, at)

        runs: list[dict[str, Any]] = []
        prom_cpu: list[float] = []
        load: list[float] = []
        cli: list[tuple[float, int, float]] = []
        out = workdir / "child.out"
        measure_command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "measure",
            f"--url={server.url}",
            f"--window={window}",
            f"--at={at}",
            f"--timeout={args.timeout}",
        ]
        cli_command = [
            sys.executable,
            "-m",
            "unthrottle.cli",
            "report",
            f"--prometheus-url={server.url}",
            f"--window={window}",
            f"--at={at}",
            f"--timeout={args.timeout}",
            "--output=json",
        ]
        # The measured report and the real command alternate, so that both meet the same
        # conditions (other load on the machine, Prometheus compacting its blocks).
        for repeat in range(args.repeats):
            load.append(os.getloadavg()[0])
            cpu_before = _proc_cpu_seconds(prom_pid)
            code, wall, maxrss = run_child(measure_command, out)
            prom_cpu.append(_proc_cpu_seconds(prom_pid) - cpu_before)
            if code != 0:
                raise RuntimeError(f"measure exited {code}: {_tail(out)}")
            run = json.loads(out.read_text())
            run["process_wall_seconds"] = wall
            run["wait4_maxrss_kib"] = maxrss
            runs.append(run)

            cpu_before = _proc_cpu_seconds(prom_pid)
            code, cli_wall, cli_maxrss = run_child(cli_command, out)
            cli_cpu = _proc_cpu_seconds(prom_pid) - cpu_before
            if code != 0:
                raise RuntimeError(f"unthrottle report exited {code}: {_tail(out)}")
            reported = len(json.loads(out.read_text())["workloads"])
            if reported != run["containers"]:
                raise RuntimeError(f"CLI reported {reported} rows, measure {run['containers']}")
            cli.append((cli_wall, cli_maxrss, cli_cpu))
            print(
                f"  report {repeat + 1}/{args.repeats}: {run['total_seconds']:.2f} s "
                f"(fetch {run['fetch_seconds']:.2f} s), {run['queries']} queries, "
                f"{maxrss / 1024:.0f} MiB; CLI {cli_wall:.2f} s, {cli_maxrss / 1024:.0f} MiB",
                file=sys.stderr,
            )
        result["prometheus_peak_rss_mib"] = round((_proc_hwm_kib(prom_pid) or 0) / 1024, 1)
        result["prometheus_version"] = runs[0]["prometheus_version"]
        middle = sorted(runs, key=lambda r: r["total_seconds"])[len(runs) // 2]
        result["report"] = {
            "runs": len(runs),
            "total_seconds": _spread([r["total_seconds"] for r in runs]),
            "fetch_seconds": _spread([r["fetch_seconds"] for r in runs]),
            "engine_seconds": _spread([r["engine_seconds"] for r in runs]),
            "render_seconds": _spread([r["render_seconds"] for r in runs]),
            "queries": middle["queries"],
            "http_requests": middle["http_requests"],
            "chunks": middle["chunks"],
            "workloads": middle["workloads"],
            "containers": middle["containers"],
            "missing_series": middle["missing_series"],
            "total_queryable_samples": middle["total_queryable_samples"],
            "peak_samples_max": middle["peak_samples_max"],
            "peak_rss_mib": _spread([r["wait4_maxrss_kib"] / 1024 for r in runs], 1),
            "vmhwm_mib": _spread([(r["vmhwm_kib"] or 0) / 1024 for r in runs], 1),
            "rss_after_import_mib": round((middle["rss_after_import_kib"] or 0) / 1024, 1),
            "prometheus_cpu_seconds": _spread(prom_cpu, 2),
            "loadavg_1m_before": _spread(load, 2),
            "per_query": middle["per_query"],
        }
        result["cli"] = {
            "runs": len(cli),
            "wall_seconds": _spread([c[0] for c in cli]),
            "peak_rss_mib": _spread([c[1] / 1024 for c in cli], 1),
            "prometheus_cpu_seconds": _spread([c[2] for c in cli], 2),
        }
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"  kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return result


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
    """Wall time, queries and peak RSS against Deployments (log x), as a PNG."""
    import matplotlib  # noqa: PLC0415 - optional (the `bench` extra), only for the plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = [r for r in document["results"] if "report" in r]
    if not rows:
        print("nothing to plot", file=sys.stderr)
        return
    x = [r["deployments"] for r in rows]
    fig, (ax_time, ax_queries, ax_rss) = plt.subplots(1, 3, figsize=(15, 4.6))

    def median(key: str, field: str, row: dict[str, Any]) -> float:
        return float(row[key][field]["median"])

    ax_time.plot(x, [median("report", "total_seconds", r) for r in rows], "o-", label="report")
    ax_time.plot(x, [median("report", "fetch_seconds", r) for r in rows], "s--", label="fetch")
    ax_time.plot(
        x, [median("cli", "wall_seconds", r) for r in rows], "^:", label="CLI, whole process"
    )
    ax_time.set_yscale("log")
    ax_time.set_ylabel("seconds (median)")
    ax_time.set_title("Wall time (log-log: slope 1 is linear)")

    ax_queries.plot(
        x, [r["report"]["queries"] for r in rows], "o-", label="unthrottle report (measured)"
    )
    ax_queries.plot(
        x,
        [KRR_QUERIES_PER_CONTAINER * r["report"]["containers"] for r in rows],
        "x--",
        color="grey",
        label=f"{KRR_QUERIES_PER_CONTAINER} per container (KRR simple; computed)",
    )
    ax_queries.set_yscale("log")
    ax_queries.set_ylabel("HTTP queries per report")
    ax_queries.set_title("Queries")

    ax_rss.plot(x, [median("report", "peak_rss_mib", r) for r in rows], "o-", label="report")
    ax_rss.plot(
        x, [median("cli", "peak_rss_mib", r) for r in rows], "^:", label="CLI, whole process"
    )
    ax_rss.set_ylim(bottom=0)
    ax_rss.set_ylabel("MiB (median)")
    ax_rss.set_title("Peak RSS of the report process")

    for ax in (ax_time, ax_queries, ax_rss):
        ax.set_xscale("log")
        ax.set_xlabel("Deployments (1 pod, 1 container each)")
        ax.set_xticks(x, [f"{v:,}" for v in x])
        ax.minorticks_off()
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    setup = document["setup"]
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
        "| Deployments | HTTP queries | report, s | fetch alone, s | engine, s "
        "| samples touched | max peakSamples | peak RSS, MiB |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    around = (
        "| Deployments | series | Prometheus CPU per report, s | `unthrottle report`, s "
        "| its peak RSS, MiB | OpenMetrics, MiB | generate, s | backfill, s | TSDB, MiB "
        "| Prometheus peak RSS, MiB |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    for r in document["results"]:
        n = f"{r['deployments']:,}"
        if "report" not in r:
            report += f"| {n} | skipped: {r['skipped']} |||||||\n"
            continue
        rep, cli = r["report"], r["cli"]
        report += (
            f"| {n} | {rep['queries']} | {_cell(rep['total_seconds'], 2)} "
            f"| {_cell(rep['fetch_seconds'], 2)} | {_cell(rep['engine_seconds'], 2)} "
            f"| {rep['total_queryable_samples']:,} | {rep['peak_samples_max']:,} "
            f"| {_cell(rep['peak_rss_mib'], 0)} |\n"
        )
        around += (
            f"| {n} | {r['series']:,} | {_cell(rep['prometheus_cpu_seconds'], 1)} "
            f"| {_cell(cli['wall_seconds'], 2)} | {_cell(cli['peak_rss_mib'], 0)} "
            f"| {r['openmetrics_mib']:,.0f} | {r['generate_seconds']} | {r['backfill_seconds']} "
            f"| {r['tsdb_mib']} | {r['prometheus_peak_rss_mib']:.0f} |\n"
        )
    return report + "\n" + around


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command")
    child = commands.add_parser("measure", help="(internal) one measured report, JSON out")
    child.add_argument("--url", required=True)
    child.add_argument("--window", required=True)
    child.add_argument("--at", type=float, required=True)
    child.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--sizes", default="100,1000,5000", help="Deployments, comma-separated")
    parser.add_argument("--hours", type=int, default=1, help="hours of history (the window)")
    parser.add_argument("--step", type=int, default=60, help="scrape step of the data, seconds")
    parser.add_argument("--sample-periods", type=int, default=10)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per query")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--plot-only", action="store_true", help="redraw from --output")
    parser.add_argument(
        "--markdown", action="store_true", help="print the tables of --output as Markdown"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    args = parser.parse_args(argv)

    if args.command == "measure":
        print(json.dumps(measure(args.url, args.window, args.at, args.timeout)))
        return 0
    if args.markdown:
        print(markdown(json.loads(args.output.read_text())))
        return 0
    if args.plot_only:
        plot(json.loads(args.output.read_text()), args.plot)
        return 0
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or min(sizes) < 1 or args.repeats < 1 or args.hours < 1 or args.step < 30:
        parser.error("sizes and repeats must be positive, --hours >= 1, --step >= 30")
    window = f"{args.hours}h"
    document: dict[str, Any] = {
        "benchmark": "report_scale",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "code": code_version(),
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": _cpu_model(),
            "memory_gib": _meminfo_gib(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "prometheus": _prometheus_version(),
        },
        "setup": {
            "window": window,
            "data_step_seconds": args.step,
            "sample_periods": args.sample_periods,
            "replicas": args.replicas,
            "seed": args.seed,
            "repeats": args.repeats,
            "shape": "default",
            "end": "2026-01-01T00:00:00Z",
            "krr_queries_per_container": KRR_QUERIES_PER_CONTAINER,
        },
        "results": [],
    }
    for deployments in sizes:
        print(f"{deployments} Deployments", file=sys.stderr)
        document["results"].append(bench_size(deployments, args, args.tmp, window))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(document, indent=1) + "\n")
    plot(document, args.plot)
    print(f"wrote {args.output} and {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
