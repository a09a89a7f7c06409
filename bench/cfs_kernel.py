"""The CFS simulator and the demand model against the real kernel scheduler.

What it measures: known CPU loads run in a cgroup v1 ``cpu`` group created for the purpose
(``/sys/fs/cgroup/cpu/unthrottle-bench-<pid>``, ``cpu.cfs_period_us`` 100000, a quota and
optionally ``cpu.cfs_burst_us``), and the kernel's ``cpu.stat`` deltas (``nr_periods``,
``nr_throttled``, ``throttled_time``, ``nr_bursts``, ``burst_time``) compared with

- the simulator (:mod:`unthrottle.sim.cfs`): :func:`run_job` for one-shot jobs (the seed's
  worked examples: 200 ms of work at 40 ms per 100 ms; two threads at 1.9 CPUs) and
  :func:`simulate` fed the same demand pattern, bucketed into 100 ms periods, for longer
  loads;
- the engine's demand model (:mod:`unthrottle.engine.demand`): the model is fitted to the
  kernel's counters at one quota (with and without the throttled-time series, as with
  and without ``container_cpu_cfs_throttled_seconds_total``), its throttle ratio is
  projected at higher quotas (and with a burst allowance, and at the quota the model says
  meets a 5% target), and the kernel is then measured at those quotas.

Loads are Python worker processes (one per simulated thread, so no GIL in the way) that
burn a given CPU time (``time.thread_time_ns``) at given arrival times: one job, a steady
duty cycle, periodic bursts, or Poisson requests from a fixed seed. A worker starts outside
the cgroup, is moved in, and only then told to go, so interpreter start-up is not counted;
it exits only after the counters are read, so neither is its shutdown. Unserved work is
done late (a queue, as the simulator's ``carry_over``) until a grace
period after the load's duration. Each configuration is repeated (``--repeats``): on two
shared cores the timing is noisy, and the spread is part of the result.

Results: ``bench/results/cfs_kernel.json`` (``--markdown`` prints its tables);
docs/performance.md explains them. Must run as root with the v1 ``cpu`` controller
mounted and writable; otherwise it says so and exits 2.
The cgroup is removed at the end (any process left in it is moved back to the root group
first), and every worker it started is waited for or killed by PID.

    .venv/bin/python bench/cfs_kernel.py [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from benchlib import code_version

from unthrottle.engine.demand import (
    DemandEstimate,
    estimate_demand,
    limit_for_target,
    projected_throttle_ratio,
)
from unthrottle.model.stats import CpuStats
from unthrottle.sim.cfs import run_job, simulate

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "cfs_kernel.json"
CPU_ROOT = Path("/sys/fs/cgroup/cpu")
SLICE = Path("/proc/sys/kernel/sched_cfs_bandwidth_slice_us")
PERIOD_US = 100_000
SETTLE_S = 0.35  # before and after a run: the group's timer goes idle, the trailing period
WORKER_START_TIMEOUT_S = 30.0
TARGET = 0.05

Kind = Literal["job", "steady", "bursts", "poisson"]


# -- loads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What each of ``workers`` processes does: CPU ``cost_us`` at each arrival.

    ``job``: one arrival at 0. ``steady``: every ``every_us``. ``bursts``: every
    ``every_us``, all workers at once. ``poisson``: exponential gaps of mean ``every_us``
    (seed + worker index). Arrivals stop at ``duration_us``; late work is still done up
    to ``grace_us`` after it.
    """

    name: str
    kind: Kind
    workers: int
    cost_us: int
    every_us: int = 0
    duration_us: int = 0
    grace_us: int = 3_000_000
    seed: int = 1

    def arrivals(self, worker: int) -> list[tuple[int, int]]:
        """(arrival µs after go, CPU µs) of one worker, in time order."""
        if self.kind == "job":
            return [(0, self.cost_us)]
        if self.kind in ("steady", "bursts"):
            return [(t, self.cost_us) for t in range(0, self.duration_us, self.every_us)]
        rng = random.Random(self.seed * 1_000 + worker)
        out: list[tuple[int, int]] = []
        t = rng.expovariate(1.0 / self.every_us)
        while t < self.duration_us:
            out.append((int(t), self.cost_us))
            t += rng.expovariate(1.0 / self.every_us)
        return out

    @property
    def span_us(self) -> int:
        """Wall time the simulation covers: the load, its grace period, and a bit."""
        return max(self.duration_us, 0) + self.grace_us + 10 * PERIOD_US

    def demand_per_period(self) -> list[int]:
        """CPU µs arriving in each 100 ms period, all workers together, from time 0."""
        periods = [0] * math.ceil(self.span_us / PERIOD_US)
        for worker in range(self.workers):
            for at, cost in self.arrivals(worker):
                periods[at // PERIOD_US] += cost
        return periods

    @property
    def mean_cores(self) -> float:
        work = sum(c for w in range(self.workers) for _, c in self.arrivals(w))
        return work / self.duration_us if self.duration_us else 0.0


def _burn(cost_us: int) -> None:
    end = time.thread_time_ns() + cost_us * 1000
    while time.thread_time_ns() < end:
        pass


def worker(spec: str, index: int) -> int:
    """A load process: print ``ready``, wait for ``go``, run the arrivals, print JSON.

    It then waits for ``exit`` before exiting, so that its interpreter shutdown happens
    after the counters are read, not inside the measurement.
    """
    load = Load(**json.loads(spec))
    arrivals = load.arrivals(index)
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 1
    t0 = time.monotonic_ns()
    cpu0 = time.process_time_ns()
    stop = t0 + (load.duration_us + load.grace_us) * 1000
    done = late_max = 0
    for at_us, cost_us in arrivals:
        now = time.monotonic_ns()
        if now >= stop:
            break
        due = t0 + at_us * 1000
        if due > now:
            time.sleep((due - now) / 1e9)
        else:
            late_max = max(late_max, now - due)
        _burn(cost_us)
        done += 1
    out = {
        "wall_us": (time.monotonic_ns() - t0) // 1000,
        "cpu_us": (time.process_time_ns() - cpu0) // 1000,
        "done": done,
        "arrivals": len(arrivals),
        "late_max_us": late_max // 1000,
    }
    print(json.dumps(out), flush=True)
    sys.stdin.readline()
    return 0


# -- the cgroup ------------------------------------------------------------------------------


class Cgroup:
    """A cgroup v1 ``cpu`` group of this benchmark; :meth:`remove` at the end."""

    def __init__(self, root: Path = CPU_ROOT) -> None:
        self.root = root
        self.path = root / f"unthrottle-bench-{os.getpid()}"
        self.path.mkdir()
        self.has_burst = (self.path / "cpu.cfs_burst_us").exists()
        (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))

    def configure(self, quota_us: int, burst_us: int) -> None:
        # The kernel wants burst <= quota: clear the burst before changing the quota.
        if self.has_burst:
            (self.path / "cpu.cfs_burst_us").write_text("0")
        (self.path / "cpu.cfs_quota_us").write_text(str(quota_us))
        if burst_us:
            if not self.has_burst:
                raise RuntimeError("cpu.cfs_burst_us does not exist on this kernel")
            (self.path / "cpu.cfs_burst_us").write_text(str(burst_us))

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def stat(self) -> dict[str, int]:
        out = {}
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, value = line.split()
            out[key] = int(value)
        return out

    def remove(self) -> None:
        """Move any process left back to the root group, then rmdir (bounded retries)."""
        for _ in range(50):
            pids = (self.path / "cgroup.procs").read_text().split()
            for pid in pids:
                with suppress(OSError):  # exited meanwhile
                    (self.root / "cgroup.procs").write_text(pid)
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"could not remove {self.path}")


def check_cgroup() -> str | None:
    """Why the kernel benchmark cannot run here, or None."""
    if not (CPU_ROOT / "cpu.cfs_quota_us").exists():
        return f"{CPU_ROOT}/cpu.cfs_quota_us does not exist (no cgroup v1 cpu controller)"
    if not os.access(CPU_ROOT, os.W_OK):
        return f"{CPU_ROOT} is not writable (not root?)"
    return None


# -- one measured run ----------------------------------------------------------------------


@dataclass(frozen=True)
class KernelRun:
    """``cpu.stat`` deltas of one run, and what the workers saw."""

    nr_periods: int
    nr_throttled: int
    throttled_us: int
    nr_bursts: int
    burst_us: int
    usage_us: int
    wall_us: int
    late_max_us: int
    loadavg_1m: float

    @property
    def ratio(self) -> float:
        return self.nr_throttled / self.nr_periods if self.nr_periods else 0.0


@contextmanager
def _workers(load: Load) -> Iterator[list[subprocess.Popen[str]]]:
    spec = json.dumps(asdict(load))
    procs: list[subprocess.Popen[str]] = []
    try:
        for index in range(load.workers):
            procs.append(
                subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), "worker", spec, str(index)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


def _readline(proc: subprocess.Popen[str], deadline: float) -> str:
    """One line from a worker, or RuntimeError at the deadline (or if it died)."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
    line = proc.stdout.readline() if ready else ""
    if not line:
        raise RuntimeError(f"worker {proc.pid} gave no answer (exit code {proc.poll()})")
    return line


def _send(proc: subprocess.Popen[str], line: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def run_kernel(cgroup: Cgroup, load: Load, quota_us: int, burst_us: int = 0) -> KernelRun:
    """Run ``load`` in the group at this quota and burst; the counters' deltas."""
    cgroup.configure(quota_us, burst_us)
    timeout = (load.duration_us + load.grace_us) / 1e6 + 30
    with _workers(load) as procs:
        deadline = time.monotonic() + WORKER_START_TIMEOUT_S
        for proc in procs:
            if _readline(proc, deadline).strip() != "ready":
                raise RuntimeError("a worker did not start")
            cgroup.add(proc.pid)
        time.sleep(SETTLE_S)
        load_1m = os.getloadavg()[0]
        before = cgroup.stat()
        for proc in procs:
            _send(proc, "go")
        deadline = time.monotonic() + timeout
        reports = [json.loads(_readline(proc, deadline)) for proc in procs]
        time.sleep(SETTLE_S)
        after = cgroup.stat()
        for proc in procs:
            _send(proc, "exit")
            if proc.wait(timeout=30) != 0:
                raise RuntimeError(f"worker exited {proc.returncode}")
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    return KernelRun(
        nr_periods=delta["nr_periods"],
        nr_throttled=delta["nr_throttled"],
        throttled_us=delta["throttled_time"] // 1000,
        nr_bursts=delta.get("nr_bursts", 0),
        burst_us=delta.get("burst_time", 0) // 1000,
        usage_us=sum(r["cpu_us"] for r in reports),
        wall_us=max(r["wall_us"] for r in reports),
        late_max_us=max(r["late_max_us"] for r in reports),
        loadavg_1m=load_1m,
    )


# -- the models --------------------------------------------------------------------------------


def simulated(load: Load, quota_us: int, burst_us: int, cpus: int) -> dict[str, Any]:
    """The per-period simulator on the load's demand, bucketed into periods from go."""
    cap = min(load.workers, cpus) * PERIOD_US
    stats = simulate(
        load.demand_per_period(),
        quota_us,
        PERIOD_US,
        burst_us=burst_us,
        carry_over=True,
        max_parallel_us=cap,
    )
    return {
        "nr_periods": stats.nr_periods,
        "nr_throttled": stats.nr_throttled,
        "ratio": round(stats.throttle_ratio, 4),
        "throttled_ms": round(stats.throttled_time_us / 1000, 1),
        "usage_ms": round(stats.usage_us / 1000, 1),
    }


def fit(run: KernelRun, limit_m: int, with_seconds: bool) -> DemandEstimate:
    """The engine's demand model from one run's counters, as if they came from Prometheus.

    Usage percentiles are all set to the mean usage: the fit uses only the mean (with the
    throttled-period ratio, the active-period ratio and, if given, throttled seconds).
    """
    return estimate_demand(cpu_stats(run, with_seconds), limit_m)


def cpu_stats(run: KernelRun, with_seconds: bool) -> CpuStats:
    """One run's counters as the engine's CPU statistics (every percentile the mean)."""
    window_us = run.wall_us + PERIOD_US  # the trailing period the timer counts
    usage = run.usage_us / window_us
    cores = {"p50": usage, "p95": usage, "p99": usage, "max": usage, "mean": usage}
    document: dict[str, Any] = {
        "usageCores": cores,
        "throttledPeriodRatio": run.ratio,
        "activePeriodRatio": min(1.0, max(1e-6, run.nr_periods * PERIOD_US / window_us)),
        "samples": 1,
        "windowSeconds": max(1, math.ceil(window_us / 1e6)),
        "cfsPeriodUs": PERIOD_US,
    }
    if with_seconds:
        document["throttledSecondsPerSecond"] = run.throttled_us / window_us
    return CpuStats.model_validate(document)


def _throttled(runs: Sequence[KernelRun]) -> bool:
    """Enough throttling in every run to fit the model to (a ratio of at least 1%)."""
    return all(r.ratio >= 0.01 for r in runs)


def _spread(values: Sequence[float], digits: int = 4) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def summarize(runs: Sequence[KernelRun]) -> dict[str, Any]:
    return {
        "repeats": len(runs),
        "ratio": _spread([r.ratio for r in runs]),
        "nr_periods": _spread([r.nr_periods for r in runs], 1),
        "nr_throttled": _spread([r.nr_throttled for r in runs], 1),
        "throttled_ms": _spread([r.throttled_us / 1000 for r in runs], 1),
        "usage_ms": _spread([r.usage_us / 1000 for r in runs], 1),
        "wall_ms": _spread([r.wall_us / 1000 for r in runs], 1),
        "nr_bursts": _spread([r.nr_bursts for r in runs], 1),
        "burst_ms": _spread([r.burst_us / 1000 for r in runs], 1),
        "late_max_ms": _spread([r.late_max_us / 1000 for r in runs], 1),
        "loadavg_1m": _spread([r.loadavg_1m for r in runs], 2),
    }


# -- experiments ---------------------------------------------------------------------------


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def job_experiment(
    cgroup: Cgroup, load: Load, quota_us: int, repeats: int, cpus: int
) -> dict[str, Any]:
    """A one-shot job: kernel vs run_job (exact, event-level) vs simulate."""
    _say(f"{load.name}: quota {quota_us} us, {repeats} runs")
    runs = [run_kernel(cgroup, load, quota_us) for _ in range(repeats)]
    job = run_job([load.cost_us] * load.workers, quota_us, PERIOD_US, cpus=cpus)
    return {
        "load": asdict(load),
        "quota_us": quota_us,
        "kernel": summarize(runs),
        "run_job": {
            "periods": job.periods,
            "throttled_periods": job.throttled_periods,
            "throttled_ms": job.throttled_time_us / 1000,
            "completion_ms": job.completion_us / 1000,
            "usage_ms": job.usage_us / 1000,
        },
        "simulate": simulated(load, quota_us, 0, cpus),
    }


def projection_experiment(
    cgroup: Cgroup,
    load: Load,
    *,
    base_quota_us: int,
    quotas_us: Sequence[int],
    bursts: Sequence[tuple[int, int]],
    repeats: int,
    cpus: int,
) -> dict[str, Any]:
    """Fit at ``base_quota_us``, project at other quotas (and burst), measure them there."""
    _say(f"{load.name}: base quota {base_quota_us} us, {repeats} runs")
    base_runs = [run_kernel(cgroup, load, base_quota_us) for _ in range(repeats)]
    base_m = base_quota_us // 100
    fits = {
        "periods": [fit(r, base_m, with_seconds=False) for r in base_runs],
        "periods+seconds": [fit(r, base_m, with_seconds=True) for r in base_runs],
    }
    target_quotas = sorted(
        max(1000, math.ceil(limit_for_target(e.model, TARGET) * 100)) for e in fits["periods"]
    )
    configs = [(q, 0) for q in quotas_us] + list(bursts)
    target_quota = target_quotas[len(target_quotas) // 2]
    if (target_quota, 0) not in configs:
        configs.append((target_quota, 0))
    runs_by_config: dict[tuple[int, int], list[KernelRun]] = {(base_quota_us, 0): base_runs}
    for quota_us, burst_us in sorted(configs):
        if (quota_us, burst_us) not in runs_by_config:
            _say(f"  quota {quota_us} us, burst {burst_us} us")
            runs_by_config[quota_us, burst_us] = [
                run_kernel(cgroup, load, quota_us, burst_us) for _ in range(repeats)
            ]
    results: list[dict[str, Any]] = []
    for (quota_us, burst_us), runs in sorted(runs_by_config.items()):
        entry: dict[str, Any] = {
            "quota_us": quota_us,
            "burst_us": burst_us,
            "kernel": summarize(runs),
            "simulate": simulated(load, quota_us, burst_us, cpus),
            "target_quota": quota_us == target_quota and burst_us == 0,
        }
        # Projected from the fits at the base quota, and from those at every lower quota
        # without burst that throttled (the model can be fitted from any throttled run).
        sources = {
            q: rs
            for (q, b), rs in runs_by_config.items()
            if b == 0 and q < quota_us + (1 if burst_us else 0) and _throttled(rs)
        }
        entry["projected_from"] = {
            str(q): {
                name: _spread(
                    [
                        projected_throttle_ratio(e.model, quota_us // 100, burst_us / 100, e.mean)
                        for e in (fit(r, q // 100, name == "periods+seconds") for r in rs)
                    ]
                )
                for name in ("periods", "periods+seconds")
            }
            for q, rs in sorted(sources.items())
            if (q, 0) != (quota_us, burst_us)
        }
        results.append(entry)
    return {
        "load": asdict(load),
        "mean_cores_offered": round(load.mean_cores, 4),
        "base_quota_us": base_quota_us,
        "fits": {
            name: [
                {
                    "log_level": round(e.model.log_level, 4),
                    "scale_m": round(e.model.scale, 2),
                    "fit": e.model.fit,
                    "demand_mean_m": round(e.mean, 1),
                }
                for e in estimates
            ]
            for name, estimates in fits.items()
        },
        "quota_for_5pct_us": target_quotas,
        "results": results,
    }


def _cell(spread: dict[str, float], fmt: str) -> str:
    median, low, high = (format(spread[k], fmt) for k in ("median", "min", "max"))
    return median if low == high else f"{median} ({low}–{high})"


def _config(quota_us: int, burst_us: int) -> str:
    text = f"{quota_us / 1000:.4g} ms"
    return text + (f" + {burst_us / 1000:g} ms burst" if burst_us else "")


def markdown(document: dict[str, Any]) -> str:
    """The results as the Markdown tables of docs/performance.md."""
    jobs = (
        "| job | quota | | kernel: median (min–max) | `run_job` | `simulate` |\n"
        "|---|---|---|---:|---:|---:|\n"
    )
    loads = (
        "| load | quota | kernel throttle ratio | `simulate` ratio "
        "| kernel throttled ms | `simulate` throttled ms | periods kernel / `simulate` |\n"
        "|---|---|---:|---:|---:|---:|---:|\n"
    )
    engine = (
        "| load | fitted at | projected at | projected ratio | kernel ratio there |\n"
        "|---|---|---|---:|---:|\n"
    )
    for e in document["experiments"]:
        name = e["load"]["name"]
        if "run_job" in e:
            k, job, sim = e["kernel"], e["run_job"], e["simulate"]
            rows = [
                ("periods", _cell(k["nr_periods"], ".0f"), job["periods"], sim["nr_periods"]),
                (
                    "throttled periods",
                    _cell(k["nr_throttled"], ".0f"),
                    job["throttled_periods"],
                    sim["nr_throttled"],
                ),
                (
                    "throttled time, ms",
                    _cell(k["throttled_ms"], ".0f"),
                    f"{job['throttled_ms']:g}",
                    f"{sim['throttled_ms']:g}",
                ),
                ("done after, ms", _cell(k["wall_ms"], ".0f"), f"{job['completion_ms']:g}", "-"),
            ]
            quota = _config(e["quota_us"], 0)
            for label, kernel, exact, per_period in rows:
                jobs += f"| {name} | {quota} | {label} | {kernel} | {exact} | {per_period} |\n"
            continue
        for r in e["results"]:
            k, sim = r["kernel"], r["simulate"]
            config = _config(r["quota_us"], r["burst_us"])
            loads += (
                f"| {name} | {config} | {_cell(k['ratio'], '.3f')} | {sim['ratio']:.3f} "
                f"| {_cell(k['throttled_ms'], '.0f')} | {sim['throttled_ms']:.0f} "
                f"| {k['nr_periods']['median']:.0f} / {sim['nr_periods']} |\n"
            )
            for source, projections in r.get("projected_from", {}).items():
                mark = " (the quota for 5%)" if r["target_quota"] else ""
                engine += (
                    f"| {name} | {_config(int(source), 0)} | {config}{mark} "
                    f"| {_cell(projections['periods'], '.3f')} | {_cell(k['ratio'], '.3f')} |\n"
                )
    return jobs + "\n" + loads + "\n" + engine


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command")
    child = commands.add_parser("worker", help="(internal) one load process")
    child.add_argument("spec")
    child.add_argument("index", type=int)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="short loads, for a smoke test")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--markdown", action="store_true", help="print the tables of --output as Markdown"
    )
    args = parser.parse_args(argv)
    if args.command == "worker":
        return worker(args.spec, args.index)
    if args.markdown:
        print(markdown(json.loads(args.output.read_text())))
        return 0
    if not 1 <= args.repeats <= 20:
        parser.error("--repeats must be between 1 and 20")
    problem = check_cgroup()
    if problem:
        _say(f"cannot run: {problem}")
        return 2
    cpus = os.cpu_count() or 1
    seconds = 2_000_000 if args.quick else 10_000_000
    job = Load("seed-002-job", "job", workers=1, cost_us=200_000, grace_us=2_000_000)
    two = Load("two-threads-1.9-cpus", "job", workers=2, cost_us=950_000, grace_us=3_000_000)
    steady = Load("steady-0.6", "steady", 1, cost_us=6_000, every_us=10_000, duration_us=seconds)
    # 530 ms is not a whole number of periods, so the bursts meet every phase of the
    # kernel's period timer within one run.
    bursts = Load(
        "bursts-2x30ms-every-530ms", "bursts", 2, cost_us=30_000, every_us=530_000,
        duration_us=seconds,
    )  # fmt: skip
    poisson = Load(
        "poisson-2x12rps-12ms", "poisson", 2, cost_us=12_000, every_us=83_333,
        duration_us=2 * seconds, seed=7,
    )  # fmt: skip
    document: dict[str, Any] = {
        "benchmark": "cfs_kernel",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
        "code": code_version(),
        "machine": {
            "nproc": cpus,
            "kernel": platform.release(),
            "python": platform.python_version(),
            "cfs_bandwidth_slice_us": _read_int(SLICE),
            "cgroup": "v1 cpu",
        },
        "period_us": PERIOD_US,
        "target": TARGET,
        "experiments": [],
    }
    cgroup = Cgroup()
    document["machine"]["cfs_burst_us_available"] = cgroup.has_burst
    experiments: list[dict[str, Any]] = document["experiments"]
    try:
        experiments.append(job_experiment(cgroup, job, 40_000, max(args.repeats, 20), cpus))
        experiments.append(job_experiment(cgroup, two, 190_000, max(args.repeats, 10), cpus))
        experiments.append(
            projection_experiment(
                cgroup,
                steady,
                base_quota_us=40_000,
                quotas_us=[70_000, 80_000],
                bursts=[],
                repeats=args.repeats,
                cpus=cpus,
            )
        )
        burst_configs = [(40_000, 40_000)] if cgroup.has_burst else []
        experiments.append(
            projection_experiment(
                cgroup,
                bursts,
                base_quota_us=40_000,
                quotas_us=[50_000, 80_000],
                bursts=burst_configs,
                repeats=args.repeats,
                cpus=cpus,
            )
        )
        experiments.append(
            projection_experiment(
                cgroup,
                poisson,
                base_quota_us=40_000,
                quotas_us=[50_000, 60_000, 80_000],
                bursts=[],
                repeats=args.repeats,
                cpus=cpus,
            )
        )
    finally:
        cgroup.remove()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=1) + "\n")
    _say(f"wrote {args.output}")
    return 0


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())
